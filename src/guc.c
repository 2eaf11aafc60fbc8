/*-------------------------------------------------------------------------
 *
 * guc.c
 *	  Definition and validation of the ai_resilience.* settings.
 *
 * Settings that choose where prompts go and with which credentials
 * (endpoints, api_key, log_prompts) are PGC_SUSET, the key file PGC_SIGHUP
 * (set in the configuration files only): an administrator decides
 * them, as whether and how attempts are logged (log_*): a user must not be
 * able to keep his calls out of the log.  The size of the shared log queue
 * is PGC_POSTMASTER.  The rest tune one session's retries, timeouts and
 * limits, or label its calls in the log (tag), and are PGC_USERSET.  Times
 * are in milliseconds (GUC_UNIT_MS) except the log retention (seconds, as
 * it is counted in days), sizes in bytes.
 *
 * Memory ceilings: max_response_bytes and max_concurrency multiply into a
 * backend's memory, so a superuser caps what any role may set with
 * max_response_bytes_limit and max_concurrency_limit (PGC_SUSET).  A value
 * over its ceiling is refused when a session, a role or a database sets it;
 * the configuration file and the command line are the administrator's own
 * and are not checked against a ceiling read in the same pass (its order in
 * the file would decide).  Calls use the smaller of a value and its
 * ceiling, so a ceiling lowered later caps sessions that set more before.
 *
 * Secrets never show in a view of the settings (SHOW, current_setting,
 * pg_settings, including its reset_val and boot_val), not even to members
 * of pg_read_all_settings, nor in the server log: the check hooks of
 * ai_resilience.api_key, ai_resilience.extra_headers (which may carry a
 * gateway's own key) and ai_resilience.endpoints (whose URLs may carry
 * user:password@ or ?api_key=) keep the value as set in their "extra"
 * (malloc'd and freed by PostgreSQL's GUC code, which calls the assign hook
 * whenever the active one changes) and rewrite the value itself in place to
 * '', always.  A show hook displays '********' for a key or headers that
 * are set, the endpoints without credentials (their display form, kept in
 * extra too).  The value must be a constant: at a reload, PostgreSQL logs
 * "parameter ... changed to ..." whenever the value differs from the one
 * before, and what it quotes is the raw text of the configuration file, not
 * the value; a value that followed the endpoints' display form would log
 * their credentials whenever a host or path changes.  So a reload never
 * logs that the endpoints changed (SHOW tells).  A check hook never rejects
 * the key or the headers (PostgreSQL would quote the rejected value); they
 * are validated where they are used (secrets.c).  It may reject endpoints,
 * which it first rewrites to their display form, the value PostgreSQL
 * quotes.  A SET of the endpoints, the key or the headers that makes
 * them misfit each other warns at once (warn_if_conflicting).  Parallel
 * workers receive the rewritten values, so no function that calls a
 * gateway may be parallel safe.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "access/parallel.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "utils/guc.h"
#include "utils/varlena.h"

#include "guc.h"
#include "log_queue.h"
#include "secrets.h"

/*---- GUC variables ----*/

char	   *air_endpoints = NULL;
const char *air_endpoints_value = "";
char	   *air_api_key = NULL;
const char *air_api_key_value = "";
char	   *air_api_key_file = NULL;
char	   *air_extra_headers = NULL;
const char *air_extra_headers_value = "";
char	   *air_models = NULL;
int			air_max_retries = 2;
int			air_backoff_base_ms = 500;
int			air_backoff_max_ms = 8000;
int			air_retry_after_max_ms = 60000;
int			air_connect_timeout_ms = 5000;
int			air_request_timeout_ms = 120000;
int			air_deadline_ms = 600000;
int			air_max_prompt_bytes = 1024 * 1024;
int			air_max_response_bytes = 16 * 1024 * 1024;
int			air_max_response_bytes_limit = 64 * 1024 * 1024;
bool		air_log_prompts = false;
int			air_max_concurrency = 16;
int			air_max_concurrency_limit = 256;
bool		air_progress = false;
bool		air_stream = false;
bool		air_stream_on_timeout = true;
int			air_first_byte_timeout_ms = 100000;
int			air_stream_idle_timeout_ms = 60000;
bool		air_log_attempts = true;
int			air_log_queue_size = 4096;
int			air_log_writers = 2;
int			air_log_queue_wait_ms = 5000;
int			air_log_retention_s = 0;
int			air_log_writer_delay_ms = 10;
char	   *air_tag = NULL;

/* An hour: no single wait of ours is meant to be longer. */
#define AIR_MAX_WAIT_MS		(3600 * 1000)

static bool check_endpoints(char **newval, void **extra, GucSource source);
static void assign_endpoints(const char *newval, void *extra);
static const char *show_endpoints(void);
static bool check_secret(char **newval, void **extra, GucSource source);
static bool check_api_key(char **newval, void **extra, GucSource source);
static bool check_extra_headers(char **newval, void **extra,
								GucSource source);
static void warn_if_conflicting(GucSource source, const char **value_variable,
								const char *newval);
static void assign_api_key(const char *newval, void *extra);
static const char *show_api_key(void);
static void assign_extra_headers(const char *newval, void *extra);
static const char *show_extra_headers(void);
static bool check_models(char **newval, void **extra, GucSource source);
static bool check_tag(char **newval, void **extra, GucSource source);
static bool check_max_response_bytes(int *newval, void **extra,
									 GucSource source);
static bool check_max_concurrency(int *newval, void **extra, GucSource source);
static bool within_ceiling(const char *name, int value, int ceiling,
						   const char *unit, GucSource source);

/* Define every ai_resilience.* setting and reserve the prefix. */
void
air_define_gucs(void)
{
	DefineCustomStringVariable("ai_resilience.endpoints",
							   "Comma-separated base URLs of OpenAI-compatible endpoints, tried in order.",
							   "Each is an http:// or https:// URL such as http://127.0.0.1:8080/v1; "
							   "requests go to <endpoint>/chat/completions. Shown without credentials "
							   "(user:password@, query).",
							   &air_endpoints,
							   "",
							   PGC_SUSET,
							   0,
							   check_endpoints, assign_endpoints, show_endpoints);

	DefineCustomStringVariable("ai_resilience.api_key",
							   "Bearer token(s) sent to the endpoints.",
							   "One key for every endpoint, or a comma-separated list with one key per "
							   "endpoint in the order of ai_resilience.endpoints. Empty sends no "
							   "Authorization header. Shown as ******** when set; prefer "
							   "ai_resilience.api_key_file.",
							   &air_api_key,
							   "",
							   PGC_SUSET,
							   GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE,
							   check_api_key, assign_api_key, show_api_key);

	DefineCustomStringVariable("ai_resilience.extra_headers",
							   "HTTP headers added to every request, one \"Name: value\" per line.",
							   "A line \"N> Name: value\" is sent to the N-th endpoint only and "
							   "replaces a header of the same name set for every endpoint. Empty lines "
							   "and lines starting with # are skipped. Authorization, Content-Length, "
							   "Content-Type, Host and Transfer-Encoding may not be set. Shown as "
							   "******** when set.",
							   &air_extra_headers,
							   "",
							   PGC_SUSET,
							   GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE,
							   check_extra_headers, assign_extra_headers, show_extra_headers);

	DefineCustomStringVariable("ai_resilience.api_key_file",
							   "File holding the bearer token(s) sent to the endpoints.",
							   "One key for every endpoint, or one key per line in the order of "
							   "ai_resilience.endpoints; empty lines and lines starting with # are "
							   "skipped. Mode 0600 (0640 if owned by root). Read at the first call and "
							   "whenever it changes. Empty: ai_resilience.api_key is used.",
							   &air_api_key_file,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("ai_resilience.models",
							   "Comma-separated models tried in order when a call passes no models.",
							   NULL,
							   &air_models,
							   "",
							   PGC_USERSET,
							   0,
							   check_models, NULL, NULL);

	DefineCustomIntVariable("ai_resilience.max_retries",
							"Retries on the same route after a transient error (the first try not counted).",
							"0 disables retries; the call still falls back to the next route.",
							&air_max_retries,
							2,
							0, 10,
							PGC_USERSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("ai_resilience.backoff_base",
							"Backoff before the first retry; it doubles with each retry.",
							"Up to 25 % jitter is taken off each backoff.",
							&air_backoff_base_ms,
							500,
							0, AIR_MAX_WAIT_MS,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("ai_resilience.backoff_max",
							"Longest backoff between two retries.",
							NULL,
							&air_backoff_max_ms,
							8000,
							0, AIR_MAX_WAIT_MS,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("ai_resilience.retry_after_max",
							"Longest Retry-After wait honoured before a retry.",
							"A longer requested wait is not taken: the call moves to the next route. "
							"0 never waits for Retry-After.",
							&air_retry_after_max_ms,
							60000,
							0, AIR_MAX_WAIT_MS,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("ai_resilience.connect_timeout",
							"Time allowed to resolve an endpoint's name and connect to it, TLS included.",
							NULL,
							&air_connect_timeout_ms,
							5000,
							1, AIR_MAX_WAIT_MS,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("ai_resilience.request_timeout",
							"Time allowed for one attempt, from connecting to the last byte of the answer.",
							"Bounded in turn by what is left of ai_resilience.deadline.",
							&air_request_timeout_ms,
							120000,
							1, INT_MAX,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("ai_resilience.deadline",
							"Time allowed for a whole call: every attempt, retry and backoff.",
							NULL,
							&air_deadline_ms,
							600000,
							1, INT_MAX,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("ai_resilience.max_prompt_bytes",
							"Largest prompt, system prompt or ai_chat_complete request accepted; a larger one is refused before any call.",
							NULL,
							&air_max_prompt_bytes,
							1024 * 1024,
							1, 256 * 1024 * 1024,
							PGC_USERSET,
							GUC_UNIT_BYTE,
							NULL, NULL, NULL);

	DefineCustomIntVariable("ai_resilience.max_response_bytes",
							"Largest response body accepted; a larger one fails the attempt.",
							"At most ai_resilience.max_response_bytes_limit.",
							&air_max_response_bytes,
							16 * 1024 * 1024,
							1024, 512 * 1024 * 1024,
							PGC_USERSET,
							GUC_UNIT_BYTE,
							check_max_response_bytes, NULL, NULL);

	DefineCustomIntVariable("ai_resilience.max_response_bytes_limit",
							"Ceiling on ai_resilience.max_response_bytes for every role.",
							"A higher value set by a session, role or database is refused; "
							"calls use the smaller of the two.",
							&air_max_response_bytes_limit,
							64 * 1024 * 1024,
							1024, 512 * 1024 * 1024,
							PGC_SUSET,
							GUC_UNIT_BYTE,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("ai_resilience.log_prompts",
							 "Store each call's prompt in ai_call_log.",
							 NULL,
							 &air_log_prompts,
							 false,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("ai_resilience.max_concurrency",
							"Most requests a batch keeps in flight at once.",
							"A prompt waiting out its backoff does not count. "
							"At most ai_resilience.max_concurrency_limit.",
							&air_max_concurrency,
							16,
							1, 1024,
							PGC_USERSET,
							0,
							check_max_concurrency, NULL, NULL);

	DefineCustomIntVariable("ai_resilience.max_concurrency_limit",
							"Ceiling on ai_resilience.max_concurrency for every role.",
							"A higher value set by a session, role or database is refused; "
							"calls use the smaller of the two.",
							&air_max_concurrency_limit,
							256,
							1, 1024,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("ai_resilience.progress",
							 "Report a batch's progress as NOTICEs, every 5 % of its prompts.",
							 NULL,
							 &air_progress,
							 false,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomBoolVariable("ai_resilience.stream",
							 "Stream answers (Server-Sent Events) unless a call says otherwise.",
							 NULL,
							 &air_stream,
							 false,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomBoolVariable("ai_resilience.stream_on_timeout",
							 "After a 524 or a first-byte timeout, stream the next attempt on that route.",
							 "A long generation behind a proxy with a read timeout gets through when bytes flow.",
							 &air_stream_on_timeout,
							 true,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("ai_resilience.first_byte_timeout",
							"Time allowed from the start of an attempt to the first response byte.",
							"0 disables it. Cloudflare's proxy gives up after 100 s (HTTP 524).",
							&air_first_byte_timeout_ms,
							100000,
							0, INT_MAX,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("ai_resilience.stream_idle_timeout",
							"Longest gap allowed between two pieces of a streamed answer.",
							"0 disables it. Keep-alive comments count as data.",
							&air_stream_idle_timeout_ms,
							60000,
							0, INT_MAX,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomStringVariable("ai_resilience.tag",
							   "A label recorded in the tag column of ai_call_log for the session's calls.",
							   "Set it per job (SET or SET LOCAL) to find the job's attempts in the log. "
							   "At most " CppAsString2(AIR_TAG_MAX_BYTES) " bytes, no control characters. "
							   "Empty: the tag is NULL.",
							   &air_tag,
							   "",
							   PGC_USERSET,
							   0,
							   check_tag, NULL, NULL);

	DefineCustomBoolVariable("ai_resilience.log_attempts",
							 "Record every HTTP attempt in ai_call_log.",
							 "Off: calls are not logged at all.",
							 &air_log_attempts,
							 true,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	/* PostgreSQL allows a POSTMASTER setting only in a preloaded library */
	if (process_shared_preload_libraries_in_progress)
		DefineCustomIntVariable("ai_resilience.log_queue_size",
								"Attempt records the shared log queue holds until a log writer inserts them.",
								"Each takes 2 kB of shared memory. One database holds at most a quarter of them. A crash loses at most this many records.",
								&air_log_queue_size,
								4096,
								1, 262144,
								PGC_POSTMASTER,
								0,
								NULL, NULL, NULL);

	if (process_shared_preload_libraries_in_progress)
		DefineCustomIntVariable("ai_resilience.log_writers",
								"Log writer background workers, started with the server.",
								"Each holds a max_worker_processes slot for good, so that no parallel query can keep the log from being written. "
								"A writer serves one database at a time.",
								&air_log_writers,
								2,
								1, LOG_MAX_WRITERS,
								PGC_POSTMASTER,
								0,
								NULL, NULL, NULL);

	DefineCustomIntVariable("ai_resilience.log_queue_wait",
							"Longest wait for room in a full log queue before an attempt record is lost.",
							"0 never waits. A lost record is counted in ai_log_stats() and reported by a WARNING.",
							&air_log_queue_wait_ms,
							5000,
							0, AIR_MAX_WAIT_MS,
							PGC_SUSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("ai_resilience.log_writer_delay",
							"Pause of a busy log writer between two batches, so that records gather.",
							"0 writes every batch at once: more commits, more CPU per record. "
							"The first record after an idle spell is written at once.",
							&air_log_writer_delay_ms,
							10,
							0, 10000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("ai_resilience.log_retention",
							"Age after which the log writer deletes ai_call_log rows.",
							"0 keeps every row. Applied by the log writer serving the database, between batches, every half retention (at most every minute), 1000 rows per transaction.",
							&air_log_retention_s,
							0,
							0, INT_MAX,
							PGC_SUSET,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("ai_resilience");
}

/*
 * Split the comma-separated setting 'name' into a List of palloc'd strings,
 * trimmed of white space; NIL when empty.  A malformed value (one the check
 * hooks let through, such as an API key with a space) is an error that does
 * not quote the value, which may be a secret.
 */
List *
air_split_list(const char *name, const char *raw)
{
	char	   *copy = pstrdup(raw ? raw : "");
	List	   *items = NIL;

	if (!SplitGUCList(copy, ',', &items))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is not a valid comma-separated list", name),
				 errhint("Items may not contain white space or commas.")));
	return items;
}

/*
 * Every endpoint must be an absolute http(s) URL with a host.  The value as
 * set and the endpoints' display forms ("value\0display") go to extra; the
 * value itself is rewritten to the display forms before any check can fail,
 * since PostgreSQL quotes a rejected value, and to '' once it is accepted
 * (see the header).
 */
static bool
check_endpoints(char **newval, void **extra, GucSource source)
{
	char	   *copy = pstrdup(*newval);
	char	   *value = pstrdup(*newval);
	char	   *shown = *newval;
	List	   *items = NIL;
	ListCell   *lc;
	size_t		value_size;
	char	   *both;

	if (!SplitGUCList(copy, ',', &items))
	{
		shown[0] = '\0';
		GUC_check_errdetail("List syntax is invalid.");
		return false;
	}
	foreach(lc, items)
	{
		const char *url = lfirst(lc);
		UrlParts	parts;

		if (shown > *newval)
			*shown++ = ',';
		secrets_split_url(url, &parts);
		if (pg_strncasecmp(url, "http://", 7) != 0 &&
			pg_strncasecmp(url, "https://", 8) != 0)
		{
			secrets_url_display(url, shown);
			GUC_check_errdetail("Endpoint \"%s\" is not an http:// or https:// URL.", shown);
			return false;
		}
		if (parts.host == parts.path)
		{
			secrets_url_display(url, shown);
			GUC_check_errdetail("Endpoint \"%s\" has no host.", shown);
			return false;
		}
		shown += secrets_url_display(url, shown);
	}
	*shown = '\0';
	list_free(items);
	pfree(copy);

	value_size = strlen(value) + 1;
	both = malloc(value_size + strlen(*newval) + 1);
	if (both == NULL)
	{
		GUC_check_errcode(ERRCODE_OUT_OF_MEMORY);
		GUC_check_errmsg("out of memory");
		return false;
	}
	memcpy(both, value, value_size);
	strcpy(both + value_size, *newval);
	pfree(value);
	(*newval)[0] = '\0';
	*extra = both;
	warn_if_conflicting(source, &air_endpoints_value, both);
	return true;
}

/* Make the endpoints as set available to the runner. */
static void
assign_endpoints(const char *newval, void *extra)
{
	air_endpoints_value = extra ? extra : "";
}

/* Show the endpoints without credentials: the display form after the value. */
static const char *
show_endpoints(void)
{
	/* before the first assignment the value is a bare "" */
	if (air_endpoints_value[0] == '\0')
		return "";
	return air_endpoints_value + strlen(air_endpoints_value) + 1;
}

/*
 * Keep a secret setting's value (the key, the extra headers) in extra and
 * leave the value empty (see the header).  Never rejects a value: the
 * checks come at call time (secrets.c).
 */
static bool
check_secret(char **newval, void **extra, GucSource source)
{
	char	   *key = strdup(*newval);

	(*newval)[0] = '\0';
	if (key == NULL)
	{
		GUC_check_errcode(ERRCODE_OUT_OF_MEMORY);
		GUC_check_errmsg("out of memory");
		return false;
	}
	*extra = key;
	return true;
}

/* ai_resilience.api_key: a secret (check_secret); warn at SET if it misfits. */
static bool
check_api_key(char **newval, void **extra, GucSource source)
{
	if (!check_secret(newval, extra, source))
		return false;
	warn_if_conflicting(source, &air_api_key_value, *extra);
	return true;
}

/* ai_resilience.extra_headers: as check_api_key. */
static bool
check_extra_headers(char **newval, void **extra, GucSource source)
{
	if (!check_secret(newval, extra, source))
		return false;
	warn_if_conflicting(source, &air_extra_headers_value, *extra);
	return true;
}

/*
 * At SET (or set_config), warn when the new value of a setting read by
 * secrets.c (newval, as set, for *value_variable) cannot work with the
 * others: every call would fail until they are fixed, and the caller
 * should know at once.  The value is tried in place and put back.  Not at
 * a reload, which sets the settings one by one (log_writer.c checks them
 * once it is over), nor when a parallel worker takes the leader's values.
 */
static void
warn_if_conflicting(GucSource source, const char **value_variable,
					const char *newval)
{
	const char *saved = *value_variable;

	if (source != PGC_S_SESSION || InitializingParallelWorker)
		return;
	*value_variable = newval;
	PG_TRY();
	{
		secrets_warn_problems();
	}
	PG_FINALLY();
	{
		*value_variable = saved;
	}
	PG_END_TRY();
}

/* Make the key as set available to secrets.c. */
static void
assign_api_key(const char *newval, void *extra)
{
	air_api_key_value = extra ? extra : "";
}

/* Show whether a key is set, never the key. */
static const char *
show_api_key(void)
{
	return air_api_key_value[0] != '\0' ? "********" : "";
}

/* Make the extra headers as set available to secrets.c. */
static void
assign_extra_headers(const char *newval, void *extra)
{
	air_extra_headers_value = extra ? extra : "";
}

/* Show whether extra headers are set, never their values. */
static const char *
show_extra_headers(void)
{
	return air_extra_headers_value[0] != '\0' ? "********" : "";
}

/* Model names must be a valid list without empty names. */
static bool
check_models(char **newval, void **extra, GucSource source)
{
	char	   *copy = pstrdup(*newval);
	List	   *items = NIL;
	ListCell   *lc;

	if (!SplitGUCList(copy, ',', &items))
	{
		GUC_check_errdetail("List syntax is invalid.");
		return false;
	}
	foreach(lc, items)
	{
		if (*(const char *) lfirst(lc) == '\0')
		{
			GUC_check_errdetail("A model name is empty.");
			return false;
		}
	}
	list_free(items);
	pfree(copy);
	return true;
}

/*
 * A tag is valid text of at most AIR_TAG_MAX_BYTES bytes without control
 * characters, so that it reads well in the log and in a report.  The
 * encoding and the C1 controls can be checked only once the database's
 * encoding is known (not while the postmaster reads the configuration).
 */
static bool
check_tag(char **newval, void **extra, GucSource source)
{
	const unsigned char *c = (const unsigned char *) *newval;
	size_t		len = strlen(*newval);

	if (len > AIR_TAG_MAX_BYTES)
	{
		GUC_check_errdetail("A tag has at most %d bytes; this one has %zu.",
							AIR_TAG_MAX_BYTES, len);
		return false;
	}
	if (!pg_verifymbstr(*newval, len, true))
	{
		GUC_check_errdetail("A tag must be valid in the server encoding.");
		return false;
	}
	for (; *c; c++)
	{
		/* U+0080..U+009F are C1 controls: 0xC2 0x80..0x9F in UTF-8 */
		if (*c < 0x20 || *c == 0x7f ||
			(GetDatabaseEncoding() == PG_UTF8 && c[0] == 0xc2 &&
			 c[1] >= 0x80 && c[1] <= 0x9f))
		{
			GUC_check_errdetail("A tag may not contain control characters.");
			return false;
		}
	}
	return true;
}

/* max_response_bytes may not pass its ceiling. */
static bool
check_max_response_bytes(int *newval, void **extra, GucSource source)
{
	return within_ceiling("ai_resilience.max_response_bytes", *newval,
						  air_max_response_bytes_limit, " bytes", source);
}

/* max_concurrency may not pass its ceiling. */
static bool
check_max_concurrency(int *newval, void **extra, GucSource source)
{
	return within_ceiling("ai_resilience.max_concurrency", *newval,
						  air_max_concurrency_limit, "", source);
}

/*
 * Is a value within its ceiling?  Only values a session, role or database
 * sets are checked: see the file header.
 */
static bool
within_ceiling(const char *name, int value, int ceiling, const char *unit,
			   GucSource source)
{
	if (source <= PGC_S_ARGV || value <= ceiling)
		return true;
	GUC_check_errmsg("%s may not exceed %s_limit (%d%s)", name, name, ceiling,
					 unit);
	GUC_check_errhint("A superuser sets %s_limit.", name);
	return false;
}
