/*-------------------------------------------------------------------------
 *
 * openai_wire.c
 *	  The OpenAI chat-completions JSON: building requests, reading answers.
 *
 * Requests are written as UTF-8 JSON whatever the server encoding.
 *
 * Responses come from the network and may be anything: truncated, hostile,
 * deeply nested, not UTF-8.  They are read with PostgreSQL's own JSON parser
 * (pg_parse_json), which reports syntax errors as return codes instead of
 * raising them, and a semantic-action walker picks out the few fields we
 * need.  A body nested deeper than MAX_JSON_DEPTH is refused before parsing,
 * since the parser recurses and would otherwise hit the stack depth check,
 * an ERROR unrelated to the attempt.  The only error this file can raise is
 * a failed conversion of valid UTF-8 into a non-UTF-8 server encoding.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "common/jsonapi.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "utils/json.h"

#include "openai_wire.h"

/* Deepest nesting accepted in a response; OpenAI's answers use about 5. */
#define MAX_JSON_DEPTH	64

/* Longest dotted path we track, e.g. "choices.0.message.content". */
#define MAX_PATH_LEN	128

/* One open object or array while walking a response. */
typedef struct WalkLevel
{
	bool		is_array;
	int			index;			/* current element of an array */
	char	   *key;			/* current field of an object */
} WalkLevel;

/* The walker's state: where it is, and what it found. */
typedef struct ResponseWalk
{
	ChatAnswer *answer;
	int			depth;			/* open containers */
	WalkLevel	levels[MAX_JSON_DEPTH];
	bool		root_is_object;
	int			nchoices;
	bool		content_seen;
	bool		content_wrong_type;
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
static char *utf8_to_server(char *utf8);

/*
 * Build the JSON body of a chat-completions request for one model.  The
 * prompt and system prompt are in the server encoding; the result is UTF-8.
 */
char *
wire_build_chat_request(const ChatPrompt *common, const char *prompt,
						const char *model, size_t *len)
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
	appendStringInfoChar(&buf, '}');

	*len = buf.len;
	return buf.data;
}

/*
 * Read a chat-completions response body (success or error).  Never raises
 * on malformed input: answer->problem says what is wrong, and is NULL only
 * when choices[0].message.content is a string.
 */
void
wire_parse_chat_response(const char *body, size_t len, ChatAnswer *answer)
{
	ResponseWalk *walk;
	JsonLexContext *lex;
	JsonSemAction sem;
	JsonParseErrorType result;

	memset(answer, 0, sizeof(*answer));
	answer->prompt_tokens = -1;
	answer->completion_tokens = -1;

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

	walk = palloc0(sizeof(ResponseWalk));
	walk->answer = answer;

	memset(&sem, 0, sizeof(sem));
	sem.semstate = walk;
	sem.object_start = walk_object_start;
	sem.object_end = walk_container_end;
	sem.array_start = walk_array_start;
	sem.array_end = walk_container_end;
	sem.object_field_start = walk_field_start;
	sem.array_element_start = walk_element_start;
	sem.scalar = walk_scalar;

	/* escapes are decoded to UTF-8; utf8_to_server validates the result */
	lex = makeJsonLexContextCstringLen((char *) body, (int) len, PG_UTF8, true);
	result = pg_parse_json(lex, &sem);

	if (result != JSON_SUCCESS)
		answer->problem = psprintf("malformed JSON: %s",
								   json_errdetail(result, lex));
	else if (!walk->root_is_object)
		answer->problem = "response is not a JSON object";
	else if (answer->error_message || answer->error_type || answer->error_code)
		answer->problem = "response carries an error";
	else if (walk->nchoices == 0)
		answer->problem = "response has no choices";
	else if (walk->content_wrong_type)
		answer->problem = "message content is not a string";
	else if (!walk->content_seen)
		answer->problem = "message content is missing or null";
	else if (answer->content == NULL)
		answer->problem = "message content is not valid UTF-8";
	pfree(walk);
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
 * The dotted path of the value about to be read, e.g. "choices.0.delta";
 * empty for the root.  Paths longer than MAX_PATH_LEN are cut, which only
 * makes them match nothing.
 */
static void
value_path(ResponseWalk *walk, char *path)
{
	int			used = 0;
	int			i;

	path[0] = '\0';
	for (i = 0; i < walk->depth && used < MAX_PATH_LEN; i++)
	{
		WalkLevel  *level = &walk->levels[i];

		if (level->is_array)
			used += snprintf(path + used, MAX_PATH_LEN - used, "%s%d",
							 i ? "." : "", level->index);
		else
			used += snprintf(path + used, MAX_PATH_LEN - used, "%s%s",
							 i ? "." : "", level->key ? level->key : "");
	}
}

/* Open a container, noting the root's type and content of the wrong type. */
static void
walk_container_start(ResponseWalk *walk, bool is_array)
{
	char		path[MAX_PATH_LEN + 1];

	value_path(walk, path);
	if (walk->depth == 0)
		walk->root_is_object = !is_array;
	else if (strcmp(path, "choices.0.message.content") == 0)
		walk->content_wrong_type = true;

	/* nesting_within() bounded the depth before parsing began */
	Assert(walk->depth < MAX_JSON_DEPTH);
	walk->levels[walk->depth].is_array = is_array;
	walk->levels[walk->depth].index = -1;
	walk->levels[walk->depth].key = NULL;
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

/* Semantic action: an object or array ends. */
static void
walk_container_end(void *state)
{
	ResponseWalk *walk = (ResponseWalk *) state;

	walk->depth--;
}

/* Semantic action: a field of the innermost object begins. */
static void
walk_field_start(void *state, char *fname, bool isnull)
{
	ResponseWalk *walk = (ResponseWalk *) state;

	walk->levels[walk->depth - 1].key = fname;
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

	if (strcmp(path, "choices.0.message.content") == 0)
	{
		if (is_string)
		{
			walk->content_seen = true;
			answer->content = utf8_to_server(token);
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
		answer->prompt_tokens = (int) Min(strtol(token, NULL, 10), INT_MAX);
	else if (strcmp(path, "usage.completion_tokens") == 0 &&
			 tokentype == JSON_TOKEN_NUMBER)
		answer->completion_tokens = (int) Min(strtol(token, NULL, 10), INT_MAX);
	else if ((strcmp(path, "error.message") == 0 ||
			  strcmp(path, "error") == 0) && is_string)
		answer->error_message = utf8_to_server(token);
	else if (strcmp(path, "error.type") == 0 && is_string)
		answer->error_type = utf8_to_server(token);
	else if (strcmp(path, "error.code") == 0 && !is_null)
		answer->error_code = utf8_to_server(token);
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
