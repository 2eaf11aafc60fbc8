/*-------------------------------------------------------------------------
 *
 * openai_wire.h
 *	  The OpenAI chat-completions JSON: building requests, reading answers;
 *	  and the model list of GET /models.
 *
 *-------------------------------------------------------------------------
 */
#ifndef AIR_OPENAI_WIRE_H
#define AIR_OPENAI_WIRE_H

#include "lib/stringinfo.h"
#include "nodes/pg_list.h"
#include "utils/jsonb.h"

/* The parts of a chat request that are the same for every route. */
typedef struct ChatPrompt
{
	const char *system_prompt;	/* NULL: no system message */
	int			max_tokens;		/* 0: not sent */
	bool		has_temperature;
	double		temperature;
} ChatPrompt;

/*
 * What a response body says.  Strings are palloc'd in the current memory
 * context, converted to the server encoding, and NULL when absent.
 */
typedef struct ChatAnswer
{
	char	   *content;		/* choices[0].message.content */
	char	   *finish_reason;	/* choices[0].finish_reason */
	char	   *model;			/* the model that answered */
	int			prompt_tokens;	/* usage; -1 when absent or not a count */
	int			completion_tokens;
	char	   *error_message;	/* error.message (or error as a string) */
	char	   *error_type;		/* error.type */
	char	   *error_code;		/* error.code */
	char	   *other_message;	/* no error object: a top-level message or
								 * detail string, or the start of a body that
								 * is not JSON (a gateway's own error) */
	const char *problem;		/* why it is not a usable response, or NULL */
	const char *content_problem;	/* why content is not usable text, or NULL */
} ChatAnswer;

/*
 * A streamed answer, assembled event by event.  Strings are in the server
 * encoding.
 */
typedef struct StreamAssembly
{
	StringInfoData content;		/* choices[0].delta.content, joined */
	size_t		max_content;	/* content beyond this is a problem */
	char	   *finish_reason;
	char	   *model;
	int			prompt_tokens;	/* from the usage chunk; -1 when absent */
	int			completion_tokens;
	bool		done;			/* "data: [DONE]" arrived */
	bool		started;		/* the stream's first bytes were looked at */
	size_t		scanned;		/* bytes of the unfinished event scanned */
	size_t		line_scanned;	/* of which in its unfinished line */
	size_t		data_len;		/* its data so far, joined at its start */
	bool		has_data;		/* it has a data line */
	char	   *error_message;	/* an event carried an error */
	char	   *error_type;
	char	   *error_code;
	const char *problem;		/* the first unusable event, or NULL */
	MemoryContext memory;		/* where the assembly lives */
	MemoryContext event_memory; /* one event's parse; reset after each */
} StreamAssembly;

extern char *wire_build_chat_request(const ChatPrompt *common,
									 const char *prompt, const char *model,
									 bool stream, size_t *len);
extern char *wire_build_full_request(Jsonb *request, const char *model,
									 bool stream, size_t *len);
extern void wire_parse_chat_response(const char *body, size_t len,
									 ChatAnswer *answer);
extern void wire_stream_init(StreamAssembly *stream, size_t max_content);
extern size_t wire_stream_feed(StreamAssembly *stream, char *buf,
							   size_t len, bool at_end);
extern char *wire_stream_response(const StreamAssembly *stream);
extern char *wire_response_text(const char *body, size_t len);
extern List *wire_parse_model_list(const char *body, size_t len,
								   ChatAnswer *answer);

#endif							/* AIR_OPENAI_WIRE_H */
