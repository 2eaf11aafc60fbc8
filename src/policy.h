/*-------------------------------------------------------------------------
 *
 * policy.h
 *	  Pure retry and fallback decisions: classify an attempt, compute the
 *	  backoff, read Retry-After, order the routes.
 *
 * Nothing here does I/O, allocates, or depends on PostgreSQL or libcurl, so
 * the rules can be read in one place and unit-tested without a server
 * (test/unit/test_policy.c).  Randomness and the clock are arguments.
 *
 *-------------------------------------------------------------------------
 */
#ifndef AIR_POLICY_H
#define AIR_POLICY_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

/*
 * How a transfer ended below HTTP.  The transport maps its library's codes
 * to these so that the policy does not know about libcurl.
 */
typedef enum TransportFailure
{
	TRANSPORT_OK = 0,			/* a whole HTTP response arrived */
	TRANSPORT_CONNECT,			/* refused, unresolvable, TLS handshake */
	TRANSPORT_CONNECT_TIMEOUT,	/* the connect timer fired (name resolution
								 * included) */
	TRANSPORT_FIRST_BYTE_TIMEOUT,	/* the first-byte timer fired */
	TRANSPORT_IDLE_TIMEOUT,		/* the idle timer fired (a stream went quiet) */
	TRANSPORT_TIMEOUT,			/* the whole-attempt timer fired */
	TRANSPORT_DEADLINE,			/* the caller's deadline fired */
	TRANSPORT_RESET,			/* connection dropped mid-response */
	TRANSPORT_TOO_LARGE,		/* response over max_response_bytes */
	TRANSPORT_OTHER				/* any other transport error */
} TransportFailure;

/* The error class of one attempt, as stored in ai_call_log.error_class. */
typedef enum AttemptClass
{
	CLASS_SUCCESS = 0,
	CLASS_CONNECT,
	CLASS_CONNECT_TIMEOUT,
	CLASS_FIRST_BYTE_TIMEOUT,
	CLASS_IDLE_TIMEOUT,
	CLASS_TIMEOUT,
	CLASS_RESET,
	CLASS_TRANSPORT,
	CLASS_HTTP_5XX,
	CLASS_RATE_LIMITED,
	CLASS_QUOTA,
	CLASS_AUTH,
	CLASS_BAD_REQUEST,
	CLASS_NOT_FOUND,
	CLASS_CONTEXT_LENGTH,
	CLASS_CONTENT_POLICY,
	CLASS_HTTP_4XX,
	CLASS_BAD_RESPONSE,
	CLASS_STREAM_ERROR,
	CLASS_STREAM_CUT,
	CLASS_DEADLINE,
	CLASS_CANCELLED
} AttemptClass;

/* The decision taken after an attempt, as stored in ai_call_log.outcome. */
typedef enum AttemptOutcome
{
	OUTCOME_SUCCESS = 0,		/* the call has its answer */
	OUTCOME_RETRY,				/* same route again, after wait_ms */
	OUTCOME_FALLBACK,			/* next route, at once */
	OUTCOME_FAILED				/* no route left: the call fails */
} AttemptOutcome;

/* How a stream that began with a 2xx ended, when it did not end well. */
typedef enum StreamFailure
{
	STREAM_OK = 0,				/* not streamed, or ended with [DONE] */
	STREAM_ERROR_EVENT,			/* an event carried an error */
	STREAM_CUT,					/* ended before [DONE] or a finish_reason */
	STREAM_BAD_CHUNK			/* an event was not a usable chunk */
} StreamFailure;

/* What the policy needs to know about one finished attempt. */
typedef struct AttemptFacts
{
	TransportFailure transport;	/* how the transfer ended: which timer fired */
	int			http_status;	/* 0 when no response arrived */
	bool		answer_ok;		/* a 2xx body with a usable answer */
	bool		streaming;		/* the attempt asked for a stream */
	StreamFailure stream_failure;	/* how a streamed 2xx answer failed */
	const char *error_code;		/* upstream error.code, or NULL */
	const char *error_type;		/* upstream error.type, or NULL */
	const char *error_message;	/* upstream error.message, or NULL */
	const char *should_retry;	/* x-should-retry header, or NULL */
} AttemptFacts;

/*
 * The bounds libcurl enforces on one attempt, in milliseconds from its start.
 * The transport hands libcurl the least of them and, when libcurl reports a
 * timeout, asks policy_timer_fired which one it was.
 */
typedef struct AttemptTimers
{
	long		connect_ms;		/* connect_timeout: name, TCP and TLS */
	long		attempt_ms;		/* request_timeout: the whole attempt */
	long		deadline_ms;	/* what was left of the call's deadline */
} AttemptTimers;

/* Retry settings, a snapshot of the GUCs taken when a call starts. */
typedef struct RetrySettings
{
	int			max_retries;	/* retries per route after the first try */
	int			backoff_base_ms;	/* first backoff */
	int			backoff_max_ms; /* cap on one backoff */
	int			retry_after_max_ms; /* longest Retry-After honoured */
} RetrySettings;

/* The decision after an attempt. */
typedef struct RetryDecision
{
	AttemptOutcome outcome;
	int			wait_ms;		/* with OUTCOME_RETRY: how long to wait */
	bool		honoured_retry_after;	/* wait_ms came from the server */
} RetryDecision;

extern TransportFailure policy_timer_fired(const AttemptTimers *timers,
										   bool connected);
extern AttemptClass policy_classify(const AttemptFacts *facts, bool *retryable);
extern int	policy_backoff_ms(const RetrySettings *settings, int retries_taken,
							  double random_fraction);
extern int	policy_retry_after_ms(const char *retry_after_ms_header,
								  const char *retry_after_header, time_t now);
extern RetryDecision policy_decide(AttemptClass cls, bool retryable,
								   int retries_taken, int retry_after_ms,
								   const RetrySettings *settings,
								   double random_fraction, int64_t ms_left,
								   bool route_left);
extern int	policy_retry_after_in_message(int http_status,
										  const char *message);
extern bool policy_stream_next(AttemptClass cls, int http_status,
							   bool was_streaming, bool stream_by_default,
							   bool stream_on_timeout);
extern void policy_route_at(int route_index, int nendpoints,
							int *model_index, int *endpoint_index);
extern const char *policy_class_name(AttemptClass cls);
extern const char *policy_outcome_name(AttemptOutcome outcome);

#endif							/* AIR_POLICY_H */
