/*-------------------------------------------------------------------------
 *
 * runner.h
 *	  Drive chat calls through their routes: attempts, retries, fallbacks.
 *
 *-------------------------------------------------------------------------
 */
#ifndef AIR_RUNNER_H
#define AIR_RUNNER_H

#include "datatype/timestamp.h"
#include "lib/ilist.h"
#include "nodes/pg_list.h"
#include "utils/jsonb.h"
#include "utils/uuid.h"

#include "openai_wire.h"
#include "policy.h"
#include "transport.h"

/* Every route failed; the message sums up the attempts. */
#define ERRCODE_AI_CALL_FAILED		MAKE_SQLSTATE('R','A','0','0','1')
/* ai_resilience.deadline passed before a route answered. */
#define ERRCODE_AI_DEADLINE			MAKE_SQLSTATE('R','A','0','0','2')

/* One endpoint from ai_resilience.endpoints. */
typedef struct Endpoint
{
	char	   *url;			/* as set: may hold credentials */
	char	   *display;		/* for logs and messages: no credentials */
	char	   *chat_url;		/* path + "/chat/completions" + query */
	char	   *api_key;		/* NULL: no Authorization header */
	List	   *extra_headers;	/* "Name: value" strings */
} Endpoint;

/* Everything a run needs, read from the settings when it starts. */
typedef struct CallSettings
{
	char	  **models;
	int			nmodels;
	Endpoint   *endpoints;
	int			nendpoints;
	List	   *keys;			/* every API key, to redact */
	RetrySettings retry;
	int			connect_timeout_ms;
	int			request_timeout_ms;
	int			deadline_ms;
	size_t		max_response_bytes;
	bool		log_prompts;
	bool		stream;			/* first attempts on a route stream */
	bool		stream_on_timeout;	/* stream after a 524 or first-byte timeout */
	int			first_byte_timeout_ms;
	int			stream_idle_timeout_ms;
	int			max_in_flight;
	int			max_active;		/* calls in flight or waiting to retry */
	char	   *role_name;		/* current_user */
	char	   *session_role;	/* session_user */
	char	   *application_name;	/* the session's, when the run starts */
	char	   *tag;			/* ai_resilience.tag then; NULL: unset */
} CallSettings;

/* One prompt's journey through the routes. */
typedef struct ChatCall
{
	/* input, set by the source: a prompt, or a whole request */
	const char *prompt;			/* server encoding */
	Jsonb	   *request_json;	/* a chat-completions request, or NULL */
	int64		ordinal;		/* the caller's number for it */

	/* result, set when the sink sees it; valid until the sink returns */
	bool		succeeded;
	char	   *content;		/* the answer's text (prompt calls) */
	char	   *response_json;	/* the whole response (request calls) */
	int			sqlstate;		/* failure: ERRCODE_AI_CALL_FAILED or _DEADLINE */
	char	   *failure;		/* failure: a summary of the attempts */
	char	   *last_error;		/* failure: the last attempt's error */

	/* private to runner.c */
	dlist_node	node;
	MemoryContext memory;		/* everything of this call */
	MemoryContext attempt_memory;	/* the current attempt's; reset per attempt */
	pg_uuid_t	call_id;
	int			attempts;
	int			route_index;
	int			retries_on_route;
	TimestampTz deadline_at;
	TimestampTz ready_at;		/* when its next attempt may start */
	TimestampTz attempt_started_at;
	TransportRequest *request;	/* in flight, or NULL */
	char	   *body;			/* request body for body_model */
	size_t		body_len;
	int			body_model;		/* model index of body; -1: none */
	bool		body_streams;	/* body asks for a stream */
	bool		stream_on_route;	/* attempts on this route stream */
	bool		streaming;		/* the current attempt streams */
	StreamAssembly stream;		/* its answer so far */
	TimestampTz first_token_at; /* when its first content arrived; 0: not yet */
	List	   *summary;		/* AttemptGroup list, for the failure text */
	int			probes;			/* route health probes the attempt holds */
	char	   *skipped_routes; /* open routes passed over before the
								 * current attempt, for its log row; NULL:
								 * none */
} ChatCall;

/*
 * Fills in the next call's input; returns false when there is none.  It
 * runs in the call's own memory context, where the input may be allocated;
 * that context is reset when the call is over, so whatever a source keeps
 * longer goes to a context it names.
 */
typedef bool (*CallSource) (void *arg, ChatCall *call);
/*
 * Receives a finished call.  It runs in the call's memory context, reset as
 * soon as it returns: it copies what it keeps to a context it names.
 */
typedef void (*CallSink) (void *arg, ChatCall *call);

extern void runner_load_settings(CallSettings *settings, List *models,
								 int max_in_flight);
extern void runner_new_call_id(pg_uuid_t *call_id);
extern void runner_run(const CallSettings *settings, const ChatPrompt *common,
					   CallSource source, CallSink sink, void *arg);

#endif							/* AIR_RUNNER_H */
