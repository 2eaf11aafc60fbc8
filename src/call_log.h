/*-------------------------------------------------------------------------
 *
 * call_log.h
 *	  One ai_call_log row per HTTP attempt, written by a background writer.
 *
 *-------------------------------------------------------------------------
 */
#ifndef AIR_CALL_LOG_H
#define AIR_CALL_LOG_H

#include "datatype/timestamp.h"
#include "nodes/pg_list.h"
#include "utils/uuid.h"

#include "policy.h"

/*
 * Longest error text of an attempt, in bytes: what the log keeps, and what
 * the runner cuts an error to.
 */
#define CALLLOG_ERROR_MAX_BYTES	300

/* Everything recorded about one HTTP attempt. */
typedef struct CallAttempt
{
	pg_uuid_t	call_id;		/* shared by every attempt of a call */
	int			attempt;		/* 1..n within the call */
	int			route_index;	/* 0-based position in the route order */
	int			route_attempt;	/* 1..n on this route */
	TimestampTz started_at;
	double		latency_ms;
	const char *model;
	const char *endpoint;		/* base URL, credentials removed */
	int			http_status;	/* 0: no response */
	AttemptClass error_class;
	const char *error;			/* short; NULL on success */
	bool		streaming;
	int			retry_after_ms; /* -1: none asked */
	int			backoff_ms;		/* wait before the next attempt; -1: none */
	AttemptOutcome outcome;
	const char *request_id;		/* the gateway's x-request-id */
	const char *provider_request_id;	/* the upstream's id a gateway forwards */
	const char *model_returned;
	const char *finish_reason;
	int			prompt_tokens;	/* -1: unknown */
	int			completion_tokens;	/* -1: unknown */
	bool		new_connection; /* a connection was opened for it */
	const char *role_name;		/* current_user: the owner in a SECURITY DEFINER function */
	const char *session_role;	/* session_user: who logged in */
	const char *application_name;	/* the caller's, at call time */
	const char *tag;			/* ai_resilience.tag at call time; NULL: unset */
	const char *prompt;			/* only with ai_resilience.log_prompts */
	double		ttft_ms;		/* time to first token (streams) or first byte; -1: none */
	int			response_bytes; /* answer text received, partial or whole; -1: none */
	const List *keys;			/* API keys, redacted from the gateway's strings */
	const char *skipped_routes; /* open routes the call passed over before it; NULL: none */
} CallAttempt;

/* A change of state of a route's breaker, for ai_route_events. */
typedef struct RouteChange
{
	TimestampTz at;
	const char *endpoint;		/* as displayed: no credentials */
	const char *model;			/* NULL: the endpoint's own breaker */
	int			from_state;		/* BreakerStates */
	int			to_state;
	int			change;			/* a BreakerChange: why */
	int			consecutive_failures;
	int			window_requests;
	int			window_failures;
	TimestampTz next_probe_at;	/* 0: none */
	AttemptClass error_class;	/* the failure that caused it; CLASS_SUCCESS: none */
	int			error_code;		/* its HTTP status; 0: none */
} RouteChange;

extern void calllog_install_hooks(void);
extern void calllog_require_loaded(void);
extern void calllog_append(const CallAttempt *attempt);
extern void calllog_append_in_cleanup(const CallAttempt *attempt);
extern void calllog_append_route_change(const RouteChange *change,
										bool in_cleanup);

#endif							/* AIR_CALL_LOG_H */
