/*-------------------------------------------------------------------------
 *
 * secrets.c
 *	  API keys and endpoint credentials: where they are read, how they hide.
 *
 * The API keys come from ai_resilience.api_key (a comma-separated list) or,
 * better, from the file named by ai_resilience.api_key_file (one key per
 * line).  Either way the key never shows in a view of the settings: guc.c
 * keeps the setting's value empty and the key in its check hook's "extra".
 * Endpoint URLs may carry credentials (user:password@host, a query such as
 * ?api_key=...); what is shown or logged of an endpoint is its display
 * form, scheme, host, port and path only.
 *
 * The key file is checked as PostgreSQL checks ssl_key_file: it must belong
 * to the server's user (then no access for group or others) or to root
 * (then at most read access for the group).  It is read at the first call
 * and again whenever it changes (another inode, size, modification or
 * status change time); its permissions are checked at every call.  Its text
 * is cached in TopMemoryContext and wiped before it is freed.  No error
 * message quotes a key or a line of the file, only line numbers.
 *
 * ai_resilience.extra_headers holds "Name: value" lines sent with every
 * request (Portkey, say, wants x-portkey-provider), or with one endpoint's
 * when the line starts with "N>" (its 1-based place in
 * ai_resilience.endpoints).  A value may be a gateway's own key, so it is
 * hidden as the key is and no error quotes it; an error names the line
 * number, and for a refused header its name, which is one of a fixed list.
 *
 * Settings that cannot work together (more keys than one, but not one per
 * endpoint; a header line for an endpoint that is not listed) fail every
 * call, which finds them only when it reads the settings.  So they are also
 * looked for as a whole (secrets_settings_problems): by ai_probe, and for a
 * WARNING when a session SETs one of the settings (guc.c) or the
 * configuration is reloaded (log_writer.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "storage/fd.h"
#include "utils/memutils.h"

#include "guc.h"
#include "secrets.h"

/* Largest key file read; a few hundred keys fit. */
#define MAX_KEY_FILE_SIZE	(64 * 1024)

/* The settings secrets_settings_problems reads, each as a List. */
typedef enum SettingsReader
{
	READ_ENDPOINTS,				/* ai_resilience.endpoints */
	READ_KEYS,					/* the API keys, from either setting */
	READ_HEADERS				/* ai_resilience.extra_headers */
} SettingsReader;

/* The key file as last read. */
static char *key_file_path = NULL;	/* TopMemoryContext; NULL: none read */
static char *key_file_text = NULL;	/* TopMemoryContext */
static struct stat key_file_stat;

static const char *read_key_file(const char *path);
static bool same_file_version(const struct stat *a, const struct stat *b);
static void check_key(const char *key, const char *setting, int line);
static char *parse_header_line(char *line, int lineno, int nendpoints,
							   int *endpoint);
static List *drop_header(List *headers, const char *line);
static int	header_name_len(const char *line);
static bool read_setting(SettingsReader reader, int nendpoints,
						 List **result, List **problems);
static void add_caught_problem(List **problems, MemoryContext memory);

/* Headers that ai_resilience.extra_headers may not set: ours, or framing. */
static const char *const reserved_headers[] = {
	"Authorization", "Content-Length", "Content-Type", "Host",
	"Transfer-Encoding"
};

/*
 * Find the parts of a URL: the authority after "scheme://", the host after
 * any user:password@ (the last '@': a password may contain one), the path,
 * the query and the fragment.
 */
void
secrets_split_url(const char *url, UrlParts *parts)
{
	const char *scheme_end = strstr(url, "://");
	int			i;

	parts->authority = scheme_end ? scheme_end + 3 - url : 0;
	parts->path = parts->authority + strcspn(url + parts->authority, "/?#");
	parts->host = parts->authority;
	for (i = parts->authority; i < parts->path; i++)
		if (url[i] == '@')
			parts->host = i + 1;
	parts->query = parts->path + strcspn(url + parts->path, "?#");
	parts->fragment = parts->query + strcspn(url + parts->query, "#");
}

/*
 * Write the display form of url (scheme, host, port and path without a
 * trailing '/') into dest, which may be url itself and must have room for
 * strlen(url) + 1 bytes; returns its length.
 */
int
secrets_url_display(const char *url, char *dest)
{
	UrlParts	parts;
	int			path_len;
	int			len;

	secrets_split_url(url, &parts);
	path_len = parts.query - parts.path;
	while (path_len > 0 && url[parts.path + path_len - 1] == '/')
		path_len--;
	/* every part moves left or stays: memmove in order is safe in place */
	memmove(dest, url, parts.authority);
	len = parts.authority;
	memmove(dest + len, url + parts.host, parts.path - parts.host);
	len += parts.path - parts.host;
	memmove(dest + len, url + parts.path, path_len);
	len += path_len;
	dest[len] = '\0';
	return len;
}

/*
 * The URL of an endpoint's resource (e.g. "chat/completions", "models"):
 * its path (without a trailing '/') + "/" + resource, then its query, if
 * any.  Palloc'd.
 */
char *
secrets_resource_url(const char *url, const char *resource)
{
	UrlParts	parts;
	int			base_len;

	secrets_split_url(url, &parts);
	base_len = parts.query;
	while (base_len > parts.path && url[base_len - 1] == '/')
		base_len--;
	return psprintf("%.*s/%s%.*s", base_len, url, resource,
					parts.fragment - parts.query, url + parts.query);
}

/*
 * The API keys as a List of palloc'd strings, in the order of the
 * endpoints they belong to; NIL when none is configured.  Raises an error
 * for a key that cannot be used, or when both settings are set.
 */
List *
secrets_api_keys(void)
{
	List	   *keys = NIL;
	ListCell   *lc;

	if (air_api_key_file[0] == '\0')
	{
		keys = air_split_list("ai_resilience.api_key", air_api_key_value);
		foreach(lc, keys)
			check_key(lfirst(lc), "ai_resilience.api_key", 0);
	}
	else
	{
		char	   *text;
		char	   *line;
		char	   *next;
		int			lineno = 0;

		if (air_api_key_value[0] != '\0')
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("ai_resilience.api_key and ai_resilience.api_key_file are both set"),
					 errhint("Keep the key in the file and reset ai_resilience.api_key.")));
		text = pstrdup(read_key_file(air_api_key_file));
		for (line = text; line != NULL; line = next)
		{
			char	   *end;

			lineno++;
			next = strchr(line, '\n');
			if (next != NULL)
				*next++ = '\0';
			while (*line == ' ' || *line == '\t')
				line++;
			end = line + strlen(line);
			while (end > line && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
				*--end = '\0';
			if (*line == '\0' || *line == '#')
				continue;
			check_key(line, "ai_resilience.api_key_file", lineno);
			keys = lappend(keys, line);
		}
		if (keys == NIL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("ai_resilience.api_key_file \"%s\" holds no key",
							air_api_key_file)));
	}
	return keys;
}

/*
 * The text of the key file at path, read again if the file changed since
 * it was last read.  Refuses a file others may read, or one too large.
 */
static const char *
read_key_file(const char *path)
{
	struct stat st;
	int			fd;
	int			save_errno;
	char	   *text;
	ssize_t		nread;

	fd = OpenTransientFile(path, O_RDONLY | PG_BINARY);
	if (fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open ai_resilience.api_key_file \"%s\": %m", path)));
	if (fstat(fd, &st) < 0)
	{
		save_errno = errno;
		CloseTransientFile(fd);
		errno = save_errno;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not stat ai_resilience.api_key_file \"%s\": %m", path)));
	}
	if (!S_ISREG(st.st_mode) || (st.st_uid != geteuid() && st.st_uid != 0))
	{
		CloseTransientFile(fd);
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("ai_resilience.api_key_file \"%s\" must be a regular file owned by the database user or root",
						path)));
	}
	if ((st.st_uid == geteuid() && (st.st_mode & (S_IRWXG | S_IRWXO))) ||
		(st.st_uid == 0 && (st.st_mode & (S_IWGRP | S_IXGRP | S_IRWXO))))
	{
		CloseTransientFile(fd);
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("ai_resilience.api_key_file \"%s\" has group or world access", path),
				 errdetail("The file must have permissions u=rw (0600) or less if owned by the database user, or permissions u=rw,g=r (0640) or less if owned by root.")));
	}
	if (key_file_path != NULL && strcmp(key_file_path, path) == 0 &&
		same_file_version(&st, &key_file_stat))
	{
		CloseTransientFile(fd);
		return key_file_text;
	}
	if (st.st_size > MAX_KEY_FILE_SIZE)
	{
		CloseTransientFile(fd);
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("ai_resilience.api_key_file \"%s\" is larger than %d bytes",
						path, MAX_KEY_FILE_SIZE)));
	}

	text = MemoryContextAlloc(TopMemoryContext, st.st_size + 1);
	nread = read(fd, text, st.st_size);
	save_errno = errno;
	CloseTransientFile(fd);
	if (nread != st.st_size)
	{
		explicit_bzero(text, st.st_size + 1);
		pfree(text);
		errno = save_errno;
		if (nread < 0)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not read ai_resilience.api_key_file \"%s\": %m", path)));
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("ai_resilience.api_key_file \"%s\" changed while it was read", path)));
	}
	text[nread] = '\0';
	if (memchr(text, '\0', nread) != NULL)
	{
		explicit_bzero(text, nread);
		pfree(text);
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("ai_resilience.api_key_file \"%s\" contains a NUL byte", path)));
	}

	if (key_file_text != NULL)
	{
		explicit_bzero(key_file_text, strlen(key_file_text));
		pfree(key_file_text);
		pfree(key_file_path);
	}
	key_file_text = text;
	key_file_path = MemoryContextStrdup(TopMemoryContext, path);
	key_file_stat = st;
	return key_file_text;
}

/* Are a and b the same version of the same file? */
static bool
same_file_version(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino &&
		a->st_size == b->st_size &&
		a->st_mtim.tv_sec == b->st_mtim.tv_sec &&
		a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
		a->st_ctim.tv_sec == b->st_ctim.tv_sec &&
		a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/*
 * Refuse a key that is not printable ASCII (it goes into an HTTP header,
 * and redaction relies on it) or shorter than MIN_API_KEY_LEN (a short key
 * would be found, and redacted, all over the log).  The message says where
 * the key is (a setting, a line of the key file), never what it is.
 */
static void
check_key(const char *key, const char *setting, int line)
{
	const char *c;
	char		where[64] = "";

	if (line > 0)
		snprintf(where, sizeof(where), " (line %d)", line);
	for (c = key; *c; c++)
		if ((unsigned char) *c <= ' ' || (unsigned char) *c >= 0x7f)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("an API key in %s%s contains white space, a control character or a non-ASCII byte",
							setting, where)));
	if (c - key < MIN_API_KEY_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("an API key in %s%s is shorter than %d bytes",
						setting, where, MIN_API_KEY_LEN)));
}

/*
 * The extra headers for the endpoint at 0-based place 'endpoint' of
 * 'nendpoints', as a List of palloc'd "Name: value" strings: the lines for
 * every endpoint, then the endpoint's own lines, each of which replaces an
 * earlier header of the same name.  Raises an error for a line that cannot
 * be sent, naming its line number, never its value.
 */
List *
secrets_extra_headers(int endpoint, int nendpoints)
{
	char	   *text = pstrdup(air_extra_headers_value);
	char	   *line;
	char	   *next;
	int			lineno = 0;
	List	   *common = NIL;
	List	   *own = NIL;
	ListCell   *lc;

	for (line = text; line != NULL; line = next)
	{
		int			target;
		char	   *header;

		lineno++;
		next = strchr(line, '\n');
		if (next != NULL)
			*next++ = '\0';
		header = parse_header_line(line, lineno, nendpoints, &target);
		if (header == NULL)
			continue;
		if (target < 0)
			common = lappend(common, header);
		else if (target == endpoint)
			own = lappend(own, header);
	}
	foreach(lc, own)
		common = drop_header(common, lfirst(lc));
	return list_concat(common, own);
}

/*
 * Check one line of ai_resilience.extra_headers and return its header as
 * "Name: value" (in place, trimmed), or NULL for an empty or comment line.
 * *endpoint is the 0-based endpoint of an "N>" line, else -1.
 */
static char *
parse_header_line(char *line, int lineno, int nendpoints, int *endpoint)
{
	char	   *end;
	char	   *c;
	int			name_len;
	size_t		i;

	*endpoint = -1;
	while (*line == ' ' || *line == '\t')
		line++;
	end = line + strlen(line);
	while (end > line && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
		*--end = '\0';
	if (*line == '\0' || *line == '#')
		return NULL;
	if (isdigit((unsigned char) *line))
	{
		long		n = strtol(line, &c, 10);

		if (*c != '>')
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("line %d of ai_resilience.extra_headers is not \"Name: value\" or \"N> Name: value\"",
							lineno)));
		if (n < 1 || n > nendpoints)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("line %d of ai_resilience.extra_headers is for endpoint %ld, but ai_resilience.endpoints lists %d",
							lineno, n, nendpoints)));
		*endpoint = n - 1;
		line = c + 1;
		while (*line == ' ' || *line == '\t')
			line++;
	}
	name_len = header_name_len(line);
	if (name_len == 0 || line[name_len] != ':')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("line %d of ai_resilience.extra_headers is not \"Name: value\"",
						lineno),
				 errdetail("A header name is made of letters, digits and !#$%%&'*+-.^_`|~ and ends with a colon.")));
	for (i = 0; i < lengthof(reserved_headers); i++)
		if (strlen(reserved_headers[i]) == (size_t) name_len &&
			pg_strncasecmp(line, reserved_headers[i], name_len) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("line %d of ai_resilience.extra_headers sets %s, which the extension sets itself",
							lineno, reserved_headers[i]),
					 errhint("The bearer token goes in ai_resilience.api_key_file.")));
	c = line + name_len + 1;
	while (*c == ' ' || *c == '\t')
		c++;
	/* libcurl reads an empty value as "remove this header": not ours to do */
	if (*c == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("line %d of ai_resilience.extra_headers has an empty value",
						lineno)));
	for (; *c; c++)
		if (((unsigned char) *c < ' ' && *c != '\t') || *c == 0x7f)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("line %d of ai_resilience.extra_headers has a control character in its value",
							lineno)));
	return line;
}

/*
 * Length of the header name (RFC 9110 token characters) at the start of
 * line; 0 if none.
 */
static int
header_name_len(const char *line)
{
	int			len = 0;

	while (isalnum((unsigned char) line[len]) ||
		   (line[len] != '\0' && strchr("!#$%&'*+-.^_`|~", line[len]) != NULL))
		len++;
	return len;
}

/* headers without the ones named as line's header. */
static List *
drop_header(List *headers, const char *line)
{
	int			name_len = header_name_len(line);
	ListCell   *lc;

	foreach(lc, headers)
	{
		const char *other = lfirst(lc);

		if (header_name_len(other) == name_len &&
			pg_strncasecmp(other, line, name_len + 1) == 0)
			headers = foreach_delete_current(headers, lc);
	}
	return headers;
}

/*
 * The message for nkeys keys that fit nendpoints endpoints neither as one
 * key for all nor as one key each; NULL when they fit.  Palloc'd.
 */
char *
secrets_key_count_problem(int nkeys, int nendpoints)
{
	if (nkeys <= 1 || nkeys == nendpoints)
		return NULL;
	return psprintf("%s lists %d keys for %d endpoint%s",
					air_api_key_file[0] ? "ai_resilience.api_key_file" :
					"ai_resilience.api_key", nkeys, nendpoints,
					nendpoints == 1 ? "" : "s");
}

/*
 * What in ai_resilience.endpoints, the keys and ai_resilience.extra_headers
 * would make a call fail before it sends anything, as a List of
 * SettingsProblem (NIL: none), palloc'd.  *endpoints, unless NULL, gets the
 * endpoint URLs as set (NIL when the list cannot be read).
 */
List *
secrets_settings_problems(List **endpoints)
{
	List	   *problems = NIL;
	List	   *urls = NIL;
	List	   *keys = NIL;
	List	   *headers;
	char	   *count_problem = NULL;

	if (read_setting(READ_ENDPOINTS, 0, &urls, &problems) && urls == NIL)
	{
		SettingsProblem *problem = palloc(sizeof(SettingsProblem));

		problem->message = pstrdup("no AI endpoint is configured");
		problem->hint = "Set ai_resilience.endpoints, e.g. to 'http://127.0.0.1:8080/v1'.";
		problem->unset = true;
		problems = lappend(problems, problem);
	}
	if (read_setting(READ_KEYS, 0, &keys, &problems) && urls != NIL)
		count_problem = secrets_key_count_problem(list_length(keys),
												  list_length(urls));
	if (count_problem)
	{
		SettingsProblem *problem = palloc(sizeof(SettingsProblem));

		problem->message = count_problem;
		problem->hint = SECRETS_KEY_COUNT_HINT;
		problem->unset = false;
		problems = lappend(problems, problem);
	}
	/* every line is checked, whichever endpoint's headers are asked for */
	if (read_setting(READ_HEADERS, list_length(urls), &headers, &problems))
		list_free(headers);
	if (endpoints)
		*endpoints = urls;
	return problems;
}

/*
 * Read one setting into *result; an error it raises becomes a problem on
 * *problems instead, and the result is false.  The readers hold no
 * resource when they raise (the key file is closed first), so going on
 * after catching their error is safe.
 */
static bool
read_setting(SettingsReader reader, int nendpoints, List **result,
			 List **problems)
{
	MemoryContext memory = CurrentMemoryContext;
	volatile bool read = false;

	PG_TRY();
	{
		switch (reader)
		{
			case READ_ENDPOINTS:
				*result = air_split_list("ai_resilience.endpoints",
										 air_endpoints_value);
				break;
			case READ_KEYS:
				*result = secrets_api_keys();
				break;
			case READ_HEADERS:
				*result = secrets_extra_headers(0, nendpoints);
				break;
		}
		read = true;
	}
	PG_CATCH();
	{
		add_caught_problem(problems, memory);
	}
	PG_END_TRY();
	return read;
}

/*
 * Raise a WARNING for every problem of the settings (see
 * secrets_settings_problems), but for endpoints not set yet: a key may
 * well be set before them.
 */
void
secrets_warn_problems(void)
{
	MemoryContext memory = AllocSetContextCreate(CurrentMemoryContext,
												 "ai_resilience settings check",
												 ALLOCSET_SMALL_SIZES);
	MemoryContext old_context = MemoryContextSwitchTo(memory);
	ListCell   *lc;

	foreach(lc, secrets_settings_problems(NULL))
	{
		SettingsProblem *problem = lfirst(lc);

		if (problem->unset)
			continue;
		ereport(WARNING,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("ai_resilience settings cannot work: %s",
						problem->message),
				 errdetail("Every call fails until the settings are fixed."),
				 problem->hint ? errhint("%s", problem->hint) : 0));
	}
	MemoryContextSwitchTo(old_context);
	MemoryContextDelete(memory);
}

/*
 * In a PG_CATCH block: turn the error being handled into a problem on
 * *problems, made in memory.  Cancels and anything worse than an ERROR go
 * on.
 */
static void
add_caught_problem(List **problems, MemoryContext memory)
{
	ErrorData  *edata;
	SettingsProblem *problem;

	MemoryContextSwitchTo(memory);
	edata = CopyErrorData();
	if (edata->elevel > ERROR ||
		edata->sqlerrcode == ERRCODE_QUERY_CANCELED ||
		edata->sqlerrcode == ERRCODE_OUT_OF_MEMORY)
	{
		FreeErrorData(edata);
		PG_RE_THROW();
	}
	FlushErrorState();
	problem = palloc(sizeof(SettingsProblem));
	problem->message = edata->message;
	problem->hint = edata->hint;
	problem->unset = false;
	*problems = lappend(*problems, problem);
}
