/*-------------------------------------------------------------------------
 *
 * openai_wire.c
 *	  The OpenAI chat-completions JSON: building requests, reading answers;
 *	  and the model list of GET /models.
 *
 * Requests are written as UTF-8 JSON whatever the server encoding.
 *
 * Responses come from the network and may be anything: truncated, hostile,
 * deeply nested, not UTF-8.  They are read with PostgreSQL's own JSON parser
 * (pg_parse_json), which reports syntax errors as return codes instead of
 * raising them, and a semantic-action walker picks out the few fields we
 * need.  A body nested deeper than MAX_JSON_DEPTH is refused before parsing,
 * since the parser recurses and would otherwise hit the stack depth check,
 * an ERROR unrelated to the attempt.  Numbers that jsonb could not store
 * (an exponent beyond +-1000, a literal over 1000 characters) make the
 * response unusable for the same reason.  The only error this file can
 * raise is a failed conversion of valid UTF-8 into a non-UTF-8 server
 * encoding.
 *
 * A model list ({"data": [{"id": ...}, ...]}, what GET /models answers) is
 * read by the same walker, which then has no content path and collects the
 * ids instead.
 *
 * Streams (Server-Sent Events) are assembled as bytes arrive: complete
 * events are taken from the front of the buffer, their data parsed as
 * chunks, and only the joined content is kept.  A UTF-8 byte order mark
 * before the first event is skipped, as the SSE standard asks.
 *
 * Memory: a response is held about twice at most, as its bytes and as the
 * decoded answer text.  The scan of a stream's buffer resumes where the
 * previous read left it, so one large event costs linear time.  An event's
 * data lines are joined in place, in the buffer they came in, and parsed
 * there.  The parser decodes every string into one buffer; the answer
 * text's buffer is taken over at once (take_content), not copied, and when
 * it is a stream's first text it becomes the assembled content.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>
#include <limits.h>

#include "common/jsonapi.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/json.h"
#include "utils/memutils.h"

#include "openai_wire.h"

/* Bytes of a body that is not JSON kept as its error text. */
#define BODY_EXCERPT_LEN	200

/* Deepest nesting accepted in a response; OpenAI's answers use about 5. */
#define MAX_JSON_DEPTH	64

/* Longest dotted path we track, e.g. "choices.0.message.content". */
#define MAX_PATH_LEN	128

/* Largest exponent and longest literal of a number jsonb can surely store. */
#define MAX_JSON_EXPONENT	1000
#define MAX_NUMBER_LEN		1000

/* A UTF-8 byte order mark. */
#define UTF8_BOM		"\xEF\xBB\xBF"
#define UTF8_BOM_LEN	3

/* Where the answer's text is in a whole response and in a stream chunk. */
#define MESSAGE_CONTENT_PATH	"choices.0.message.content"
#define DELTA_CONTENT_PATH		"choices.0.delta.content"

/* One open object or array while walking a response. */
typedef struct WalkLevel
{
	bool		is_array;
	int			index;			/* current element of an array */
	char	   *key;			/* current field of an object */
	int			path_len;		/* length of this container's own path */
} WalkLevel;

/* The walker's state: where it is, and what it found. */
typedef struct ResponseWalk
{
	ChatAnswer *answer;
	const char *content_path;	/* where the text is; NULL: nowhere */
	JsonLexContext *lex;		/* the parse under way */
	MemoryContext strings_memory;	/* where decoded strings are made */
	StringInfoData content;		/* the text taken from the parser, or
								 * data NULL */
	int			depth;			/* open containers */
	WalkLevel	levels[MAX_JSON_DEPTH];
	char		container_path[MAX_PATH_LEN + 1];	/* innermost container's */
	bool		root_is_object;
	int			nchoices;
	bool		content_seen;
	bool		content_wrong_type;
	bool		number_out_of_range;
	bool		data_is_array;	/* a model list: "data" is an array */
	List	   *model_ids;		/* a model list: data.N.id strings */
} ResponseWalk;

static bool nesting_within(const char *body, size_t len, int max_depth);
static void value_path(ResponseWalk *walk, char *path);
static void walk_container_start(ResponseWalk *walk, bool is_array);
static void walk_object_start(void *state);
static void walk_array_start(void *state);
static void walk_container_end(void *state);
static void walk_field_start(void *state, char *fname, bool isnull);
static void walk_element_start(void *state, bool isnull);
static void walk_scalar(void *state, char *token, JsonTokenType tokentype);
static void parse_json(const char *body, size_t len, const char *content_path,
					   MemoryContext strings_memory, ChatAnswer *answer,
					   ResponseWalk *walk);
static void take_content(ResponseWalk *walk);
static bool is_model_id_path(const char *path);
static bool number_storable(const char *token);
static int	token_count(const char *token);
static void take_event(StreamAssembly *stream, const char *data, size_t len);
static char *copy_or_null(const char *value);
static char *utf8_to_server(char *utf8);
static char *body_excerpt(const char *body, size_t len);

/*
 * Build the JSON body of a chat-completions request for one model.  The
 * prompt and system prompt are in the server encoding; the result is UTF-8.
 */
char *
wire_build_chat_request(const ChatPrompt *common, const char *prompt,
						const char *model, bool stream, size_t *len)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"model\":");
	escape_json(&buf, pg_server_to_any(model, strlen(model), PG_UTF8));
	appendStringInfoString(&buf, ",\"messages\":[");
	if (common->system_prompt)
	{
		appendStringInfoString(&buf, "{\"role\":\"system\",\"content\":");
		escape_json(&buf, pg_server_to_any(common->system_prompt,
										   strlen(common->system_prompt),
										   PG_UTF8));
		appendStringInfoString(&buf, "},");
	}
	appendStringInfoString(&buf, "{\"role\":\"user\",\"content\":");
	escape_json(&buf, pg_server_to_any(prompt, strlen(prompt), PG_UTF8));
	appendStringInfoString(&buf, "}]");
	if (common->max_tokens > 0)
		appendStringInfo(&buf, ",\"max_tokens\":%d", common->max_tokens);
	if (common->has_temperature)
		appendStringInfo(&buf, ",\"temperature\":%.17g", common->temperature);
	if (stream)
		appendStringInfoString(&buf, ",\"stream\":true,\"stream_options\":{\"include_usage\":true}");
	appendStringInfoChar(&buf, '}');

	*len = buf.len;
	return buf.data;
}

/*
 * Build the JSON body for a caller's whole chat-completions request: the
 * request as given, with "model" set to this route's model and "stream" /
 * "stream_options" set by our own choice to stream.  Every other field
 * passes through untouched.  The result is UTF-8.
 */
char *
wire_build_full_request(Jsonb *request, const char *model, bool stream,
						size_t *len)
{
	StringInfoData ours;
	Datum		body = JsonbPGetDatum(request);
	Jsonb	   *result;
	char	   *text;

	body = DirectFunctionCall2(jsonb_delete, body, CStringGetTextDatum("stream"));
	body = DirectFunctionCall2(jsonb_delete, body,
							   CStringGetTextDatum("stream_options"));

	initStringInfo(&ours);
	appendStringInfoString(&ours, "{\"model\":");
	escape_json(&ours, model);
	if (stream)
		appendStringInfoString(&ours, ",\"stream\":true,\"stream_options\":{\"include_usage\":true}");
	appendStringInfoChar(&ours, '}');
	body = DirectFunctionCall2(jsonb_concat, body,
							   DirectFunctionCall1(jsonb_in,
												   CStringGetDatum(ours.data)));

	result = DatumGetJsonbP(body);
	text = JsonbToCString(NULL, &result->root, VARSIZE(result));
	text = pg_server_to_any(text, strlen(text), PG_UTF8);
	*len = strlen(text);
	return text;
}

/*
 * Read a chat-completions response body (success or error).  Never raises
 * on malformed input: answer->problem says what makes it unusable as a
 * response, answer->content_problem what makes its content unusable as text
 * (a tool call has no text, yet is a usable response).
 */
void
wire_parse_chat_response(const char *body, size_t len, ChatAnswer *answer)
{
	ResponseWalk walk;

	parse_json(body, len, MESSAGE_CONTENT_PATH, CurrentMemoryContext, answer,
			   &walk);
	if (!walk.root_is_object && answer->error_message == NULL)
		answer->other_message = body_excerpt(body, len);
	if (answer->problem == NULL && walk.nchoices == 0)
		answer->problem = "response has no choices";
	if (answer->problem)
		return;
	if (walk.content_wrong_type)
		answer->content_problem = "message content is not a string";
	else if (!walk.content_seen)
		answer->content_problem = "message content is missing or null";
	else if (answer->content == NULL)
		answer->content_problem = "message content is not valid UTF-8";
}

/*
 * Walk one JSON document, filling answer with the fields we know (content
 * from content_path) and walk with what was seen.  answer->problem is set
 * when the document is not a usable JSON object without an error.  The
 * content's buffer, walk->content, is made in strings_memory; the caller
 * owns it.
 */
static void
parse_json(const char *body, size_t len, const char *content_path,
		   MemoryContext strings_memory, ChatAnswer *answer,
		   ResponseWalk *walk)
{
	JsonLexContext *lex;
	JsonSemAction sem;
	JsonParseErrorType result;
	MemoryContext old_context;

	memset(answer, 0, sizeof(*answer));
	answer->prompt_tokens = -1;
	answer->completion_tokens = -1;
	memset(walk, 0, sizeof(*walk));
	walk->answer = answer;
	walk->content_path = content_path;
	walk->strings_memory = strings_memory;

	if (body == NULL || len == 0)
	{
		answer->problem = "empty response body";
		return;
	}
	if (len > INT_MAX)
	{
		answer->problem = "response body too large to parse";
		return;
	}
	if (!nesting_within(body, len, MAX_JSON_DEPTH))
	{
		answer->problem = "response JSON nested too deeply";
		return;
	}

	memset(&sem, 0, sizeof(sem));
	sem.semstate = walk;
	sem.object_start = walk_object_start;
	sem.object_end = walk_container_end;
	sem.array_start = walk_array_start;
	sem.array_end = walk_container_end;
	sem.object_field_start = walk_field_start;
	sem.array_element_start = walk_element_start;
	sem.scalar = walk_scalar;

	/*
	 * Escapes are decoded to UTF-8; utf8_to_server validates the result.
	 * Strings are decoded into strval, which is ours (jsonapi.h): made in
	 * strings_memory so that take_content can keep its buffer, and freed
	 * after the parse.
	 */
	lex = makeJsonLexContextCstringLen((char *) body, (int) len, PG_UTF8, true);
	pfree(lex->strval->data);
	old_context = MemoryContextSwitchTo(strings_memory);
	initStringInfo(lex->strval);
	MemoryContextSwitchTo(old_context);
	walk->lex = lex;
	result = pg_parse_json(lex, &sem);

	if (result != JSON_SUCCESS)
		answer->problem = psprintf("malformed JSON: %s",
								   json_errdetail(result, lex));
	else if (!walk->root_is_object)
		answer->problem = "response is not a JSON object";
	else if (walk->number_out_of_range)
		answer->problem = "response has a number out of range";
	else if (answer->error_message || answer->error_type || answer->error_code)
		answer->problem = "response carries an error";
	pfree(lex->strval->data);
}

/*
 * Is the body nested at most max_depth deep?  A linear scan that knows
 * strings and escapes; it does not validate anything else.
 */
static bool
nesting_within(const char *body, size_t len, int max_depth)
{
	int			depth = 0;
	bool		in_string = false;
	size_t		i;

	for (i = 0; i < len; i++)
	{
		char		c = body[i];

		if (in_string)
		{
			if (c == '\\')
				i++;
			else if (c == '"')
				in_string = false;
		}
		else if (c == '"')
			in_string = true;
		else if (c == '{' || c == '[')
		{
			if (++depth > max_depth)
				return false;
		}
		else if (c == '}' || c == ']')
			depth--;
	}
	return true;
}

/*
 * The dotted path of the value about to be read, e.g. "choices.0.delta":
 * the innermost container's path, kept as containers open and close, plus
 * the current field or index.  Empty for the root.  Paths longer than
 * MAX_PATH_LEN are cut, which only makes them match nothing.
 */
static void
value_path(ResponseWalk *walk, char *path)
{
	WalkLevel  *level;
	int			len;

	if (walk->depth == 0)
	{
		path[0] = '\0';
		return;
	}
	level = &walk->levels[walk->depth - 1];
	len = level->path_len;
	memcpy(path, walk->container_path, len);
	if (level->is_array)
		snprintf(path + len, MAX_PATH_LEN + 1 - len, "%s%d",
				 len ? "." : "", level->index);
	else
		snprintf(path + len, MAX_PATH_LEN + 1 - len, "%s%s",
				 len ? "." : "", level->key ? level->key : "");
}

/* Open a container, noting the root's type and content of the wrong type. */
static void
walk_container_start(ResponseWalk *walk, bool is_array)
{
	char		path[MAX_PATH_LEN + 1];

	value_path(walk, path);
	if (walk->depth == 0)
		walk->root_is_object = !is_array;
	else if (walk->content_path && strcmp(path, walk->content_path) == 0)
		walk->content_wrong_type = true;
	else if (walk->depth == 1 && is_array && strcmp(path, "data") == 0)
		walk->data_is_array = true;

	/* nesting_within() bounded the depth before parsing began */
	Assert(walk->depth < MAX_JSON_DEPTH);
	walk->levels[walk->depth].is_array = is_array;
	walk->levels[walk->depth].index = -1;
	walk->levels[walk->depth].key = NULL;
	walk->levels[walk->depth].path_len = strlen(path);
	memcpy(walk->container_path, path, strlen(path) + 1);
	walk->depth++;
}

/* Semantic action: an object begins. */
static void
walk_object_start(void *state)
{
	walk_container_start((ResponseWalk *) state, false);
}

/* Semantic action: an array begins. */
static void
walk_array_start(void *state)
{
	walk_container_start((ResponseWalk *) state, true);
}

/*
 * Semantic action: an object or array ends.  container_path needs no
 * change: the parent's path is a prefix of it, path_len long.
 */
static void
walk_container_end(void *state)
{
	ResponseWalk *walk = (ResponseWalk *) state;

	walk->depth--;
}

/*
 * Semantic action: a field of the innermost object begins.  The lexer has
 * already decoded its value when that is a string.
 */
static void
walk_field_start(void *state, char *fname, bool isnull)
{
	ResponseWalk *walk = (ResponseWalk *) state;
	char		path[MAX_PATH_LEN + 1];

	walk->levels[walk->depth - 1].key = fname;
	if (walk->lex->token_type != JSON_TOKEN_STRING)
		return;
	value_path(walk, path);
	if (walk->content_path && strcmp(path, walk->content_path) == 0)
		take_content(walk);
}

/*
 * Take the string the lexer has just decoded, the value at the content
 * path, out of the lexer: its buffer becomes walk->content and the lexer
 * starts a new one, so the answer's text is not copied.  (The scalar
 * action then sees an empty string.)
 */
static void
take_content(ResponseWalk *walk)
{
	StringInfo	strval = walk->lex->strval;
	MemoryContext old_context;

	/* of a repeated key the last value counts, as in jsonb */
	if (walk->content.data)
		pfree(walk->content.data);
	walk->content = *strval;
	old_context = MemoryContextSwitchTo(walk->strings_memory);
	initStringInfo(strval);
	MemoryContextSwitchTo(old_context);
}

/* Semantic action: an element of the innermost array begins. */
static void
walk_element_start(void *state, bool isnull)
{
	ResponseWalk *walk = (ResponseWalk *) state;
	WalkLevel  *level = &walk->levels[walk->depth - 1];

	level->index++;
	if (walk->depth == 2 && !walk->levels[0].is_array &&
		walk->levels[0].key && strcmp(walk->levels[0].key, "choices") == 0)
		walk->nchoices++;
}

/* Semantic action: a scalar; keep it when it is one we want. */
static void
walk_scalar(void *state, char *token, JsonTokenType tokentype)
{
	ResponseWalk *walk = (ResponseWalk *) state;
	ChatAnswer *answer = walk->answer;
	char		path[MAX_PATH_LEN + 1];
	bool		is_string = tokentype == JSON_TOKEN_STRING;
	bool		is_null = tokentype == JSON_TOKEN_NULL;

	value_path(walk, path);

	if (tokentype == JSON_TOKEN_NUMBER && !number_storable(token))
		walk->number_out_of_range = true;

	if (walk->content_path && strcmp(path, walk->content_path) == 0)
	{
		if (is_string)
		{
			/* walk_field_start took the text */
			Assert(walk->content.data != NULL);
			walk->content_seen = true;
			answer->content = utf8_to_server(walk->content.data);
		}
		else if (!is_null)
			walk->content_wrong_type = true;
	}
	else if (strcmp(path, "choices.0.finish_reason") == 0 && is_string)
		answer->finish_reason = utf8_to_server(token);
	else if (strcmp(path, "model") == 0 && is_string)
		answer->model = utf8_to_server(token);
	else if (strcmp(path, "usage.prompt_tokens") == 0 &&
			 tokentype == JSON_TOKEN_NUMBER)
		answer->prompt_tokens = token_count(token);
	else if (strcmp(path, "usage.completion_tokens") == 0 &&
			 tokentype == JSON_TOKEN_NUMBER)
		answer->completion_tokens = token_count(token);
	else if ((strcmp(path, "error.message") == 0 ||
			  strcmp(path, "error") == 0) && is_string)
		answer->error_message = utf8_to_server(token);
	else if ((strcmp(path, "message") == 0 || strcmp(path, "detail") == 0) &&
			 is_string)
		answer->other_message = utf8_to_server(token);
	else if (strcmp(path, "error.type") == 0 && is_string)
		answer->error_type = utf8_to_server(token);
	else if (strcmp(path, "error.code") == 0 && !is_null)
		answer->error_code = utf8_to_server(token);
	else if (walk->content_path == NULL && is_string && is_model_id_path(path))
	{
		char	   *id = utf8_to_server(token);

		if (id != NULL)
			walk->model_ids = lappend(walk->model_ids, id);
	}
}

/* Is path that of a model list entry's id, "data.<index>.id"? */
static bool
is_model_id_path(const char *path)
{
	const char *c;

	if (strncmp(path, "data.", 5) != 0 || !isdigit((unsigned char) path[5]))
		return false;
	for (c = path + 5; isdigit((unsigned char) *c); c++)
		;
	return strcmp(c, ".id") == 0;
}

/*
 * Can jsonb store this number literal without an error?  An exponent
 * beyond what strtol can hold saturates at LONG_MIN or LONG_MAX, which is
 * out of range too.
 */
static bool
number_storable(const char *token)
{
	const char *exponent = strpbrk(token, "eE");
	long		value;

	if (strlen(token) > MAX_NUMBER_LEN)
		return false;
	if (exponent == NULL)
		return true;
	value = strtol(exponent + 1, NULL, 10);
	return value >= -MAX_JSON_EXPONENT && value <= MAX_JSON_EXPONENT;
}

/*
 * A token count from the usage object, or -1 (unknown) when the number is
 * not a count: negative, fractional, in exponent form, or beyond int.
 */
static int
token_count(const char *token)
{
	const char *p;
	long		value;

	for (p = token; *p; p++)
		if (!isdigit((unsigned char) *p))
			return -1;
	errno = 0;
	value = strtol(token, NULL, 10);
	if (errno != 0 || value > INT_MAX)
		return -1;
	return (int) value;
}

/* Start assembling a stream whose content may grow to max_content bytes. */
void
wire_stream_init(StreamAssembly *stream, size_t max_content)
{
	memset(stream, 0, sizeof(*stream));
	initStringInfo(&stream->content);
	stream->max_content = max_content;
	stream->memory = CurrentMemoryContext;
	stream->event_memory = AllocSetContextCreate(CurrentMemoryContext,
												 "ai_resilience stream event",
												 ALLOCSET_SMALL_SIZES);
	stream->prompt_tokens = -1;
	stream->completion_tokens = -1;
}

/*
 * Take every complete event from the front of buf into the assembly and
 * return how many bytes were used; the caller drops them, and passes the
 * rest again, with more bytes after it, on the next call.  An event ends
 * with a blank line; lines end with "\n", "\r\n" or "\r".  With at_end the
 * stream is over, so a last event without its blank line counts too.
 * Comment lines (":" keep-alives) and fields other than data are skipped.
 *
 * The bytes of the unfinished event are rewritten: its data lines are
 * joined at its start as they complete.  The assembly remembers how far
 * the scan went, so no byte is looked at twice.
 */
size_t
wire_stream_feed(StreamAssembly *stream, char *buf, size_t len, bool at_end)
{
	size_t		used = 0;		/* bytes of the events taken */
	size_t		pos;			/* start of the next line */

	if (len == 0 && !at_end)
		return 0;
	if (!stream->started)
	{
		size_t		n = Min(len, UTF8_BOM_LEN);

		/* what may yet be a byte order mark waits for its other bytes */
		if (n < UTF8_BOM_LEN && !at_end && memcmp(buf, UTF8_BOM, n) == 0)
			return 0;
		if (n == UTF8_BOM_LEN && memcmp(buf, UTF8_BOM, n) == 0)
			used = UTF8_BOM_LEN;
		stream->started = true;
	}

	pos = used + stream->scanned;
	for (;;)
	{
		char	   *line = buf + pos;
		size_t		line_len = stream->line_scanned;
		size_t		end_len = 0;
		bool		last = false;

		while (pos + line_len < len && line[line_len] != '\n' &&
			   line[line_len] != '\r')
			line_len++;
		stream->line_scanned = line_len;
		if (pos + line_len == len)
		{
			/* no line end yet: wait for more, unless the stream is over */
			if (!at_end)
				break;
			last = true;
		}
		else if (line[line_len] == '\n')
			end_len = 1;
		else if (pos + line_len + 1 < len)
			end_len = line[line_len + 1] == '\n' ? 2 : 1;
		else if (at_end)
			end_len = 1;
		else
			break;				/* a "\r" whose "\n" may still come */

		if (line_len >= 5 && memcmp(line, "data:", 5) == 0)
		{
			size_t		skip = (line_len > 5 && line[5] == ' ') ? 6 : 5;
			char	   *joined = buf + used + stream->data_len;

			/* the joined data never overtakes the line being read */
			if (stream->has_data)
			{
				*joined++ = '\n';
				stream->data_len++;
			}
			memmove(joined, line + skip, line_len - skip);
			stream->data_len += line_len - skip;
			stream->has_data = true;
		}
		pos += line_len + end_len;
		stream->line_scanned = 0;

		/* a blank line, or the end of the stream, ends the event */
		if (line_len == 0 || last)
		{
			if (stream->has_data)
				take_event(stream, buf + used, stream->data_len);
			stream->has_data = false;
			stream->data_len = 0;
			used = pos;
		}
		if (last || pos == len)
			break;
	}
	stream->scanned = pos - used;

	/* a stream that is over ends its last event, blank line or not */
	if (at_end)
	{
		if (stream->has_data)
			take_event(stream, buf + used, stream->data_len);
		stream->has_data = false;
		stream->data_len = 0;
		stream->scanned = 0;
		stream->line_scanned = 0;
		used = len;
	}
	return used;
}

/*
 * Fold one event's data into the assembly.  The event is parsed in its own
 * memory, reset afterwards, so a long stream does not grow with its events;
 * what the assembly keeps is copied out, except the text, whose buffer
 * becomes the assembled content when it is the first text.
 */
static void
take_event(StreamAssembly *stream, const char *data, size_t len)
{
	MemoryContext old_context;
	ChatAnswer	chunk;
	ResponseWalk walk;

	if (stream->done || stream->problem || stream->error_message ||
		stream->error_type || stream->error_code)
		return;					/* nothing after these counts */
	if (len == 6 && memcmp(data, "[DONE]", 6) == 0)
	{
		stream->done = true;
		return;
	}

	old_context = MemoryContextSwitchTo(stream->event_memory);
	parse_json(data, len, DELTA_CONTENT_PATH, stream->memory, &chunk, &walk);
	MemoryContextSwitchTo(stream->memory);
	if (chunk.error_message || chunk.error_type || chunk.error_code)
	{
		stream->error_message = copy_or_null(chunk.error_message);
		stream->error_type = copy_or_null(chunk.error_type);
		stream->error_code = copy_or_null(chunk.error_code);
	}
	else if (chunk.problem)
		stream->problem = pstrdup(chunk.problem);
	else if (walk.content_wrong_type || (walk.content_seen && chunk.content == NULL))
		stream->problem = "a chunk's delta content is not a UTF-8 string";
	else if (chunk.content &&
			 stream->content.len + strlen(chunk.content) > stream->max_content)
		stream->problem = "streamed content larger than ai_resilience.max_response_bytes";
	else
	{
		if (chunk.content && stream->content.len == 0 &&
			chunk.content == walk.content.data)
		{
			/* the first text: keep its buffer rather than copy it */
			pfree(stream->content.data);
			stream->content = walk.content;
			walk.content.data = NULL;
		}
		else if (chunk.content)
			appendStringInfoString(&stream->content, chunk.content);
		if (chunk.finish_reason)
			stream->finish_reason = pstrdup(chunk.finish_reason);
		if (chunk.model && (stream->model == NULL ||
							strcmp(stream->model, chunk.model) != 0))
			stream->model = pstrdup(chunk.model);
		if (chunk.prompt_tokens >= 0)
			stream->prompt_tokens = chunk.prompt_tokens;
		if (chunk.completion_tokens >= 0)
			stream->completion_tokens = chunk.completion_tokens;
	}
	if (walk.content.data)
		pfree(walk.content.data);
	MemoryContextSwitchTo(old_context);
	MemoryContextReset(stream->event_memory);
}

/* A copy of a string in the current memory context, or NULL. */
static char *
copy_or_null(const char *value)
{
	return value ? pstrdup(value) : NULL;
}

/*
 * The whole chat.completion response equivalent to an assembled stream, as
 * JSON text in the server encoding: the model, one choice with the content
 * and finish_reason, and the usage when the stream carried it.
 */
char *
wire_stream_response(const StreamAssembly *stream)
{
	StringInfoData out;

	initStringInfo(&out);
	appendStringInfoString(&out, "{\"object\":\"chat.completion\",\"model\":");
	if (stream->model)
		escape_json(&out, stream->model);
	else
		appendStringInfoString(&out, "null");
	appendStringInfoString(&out, ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":");
	escape_json(&out, stream->content.data);
	appendStringInfoString(&out, "},\"finish_reason\":");
	if (stream->finish_reason)
		escape_json(&out, stream->finish_reason);
	else
		appendStringInfoString(&out, "null");
	appendStringInfoString(&out, "}]");
	/* each count fits in int, their sum may not */
	if (stream->prompt_tokens >= 0 && stream->completion_tokens >= 0)
		appendStringInfo(&out, ",\"usage\":{\"prompt_tokens\":%d,\"completion_tokens\":%d,\"total_tokens\":" INT64_FORMAT "}",
						 stream->prompt_tokens, stream->completion_tokens,
						 (int64) stream->prompt_tokens + stream->completion_tokens);
	appendStringInfoChar(&out, '}');
	return out.data;
}

/*
 * A whole response body as text in the server encoding, or NULL when it is
 * not valid UTF-8.
 */
char *
wire_response_text(const char *body, size_t len)
{
	if (!pg_verify_mbstr(PG_UTF8, body, len, true))
		return NULL;
	return pg_any_to_server(body, len, PG_UTF8);
}

/*
 * The model ids of a GET /models body, in its order, as palloc'd strings in
 * the server encoding (an id that is not valid UTF-8 is left out).  answer
 * tells what else the body says: answer->problem is set when it is no
 * usable list (not JSON, an error, no "data" array), with the gateway's
 * error fields as for a chat response.
 */
List *
wire_parse_model_list(const char *body, size_t len, ChatAnswer *answer)
{
	ResponseWalk walk;

	parse_json(body, len, NULL, CurrentMemoryContext, answer, &walk);
	if (!walk.root_is_object && answer->error_message == NULL)
		answer->other_message = body_excerpt(body, len);
	if (answer->problem == NULL && !walk.data_is_array)
		answer->problem = "response has no \"data\" array";
	return walk.model_ids;
}

/*
 * The first BODY_EXCERPT_LEN bytes of a body that is not JSON, cut at a
 * character boundary, in the server encoding; NULL for an empty body, an
 * HTML page (a proxy's generic page: its status says as much) or one that
 * is not UTF-8.  Control characters and keys are dealt with by
 * gateway_text.c on the way to the log.
 */
static char *
body_excerpt(const char *body, size_t len)
{
	size_t		n;

	while (len > 0 && isspace((unsigned char) *body))
		body++, len--;
	if (len == 0 || *body == '<')
		return NULL;
	n = Min(len, BODY_EXCERPT_LEN);
	/* a UTF-8 continuation byte is no place to cut */
	while (n < len && n > 0 && ((unsigned char) body[n] & 0xC0) == 0x80)
		n--;
	if (!pg_verify_mbstr(PG_UTF8, body, (int) n, true))
		return NULL;
	/* without a conversion to do, pg_any_to_server returns what it got */
	return pg_any_to_server(pnstrdup(body, n), (int) n, PG_UTF8);
}

/*
 * A string from the response in the server encoding, or NULL when it is not
 * valid UTF-8.
 */
static char *
utf8_to_server(char *utf8)
{
	int			len = strlen(utf8);

	if (!pg_verify_mbstr(PG_UTF8, utf8, len, true))
		return NULL;
	return pg_any_to_server(utf8, len, PG_UTF8);
}
