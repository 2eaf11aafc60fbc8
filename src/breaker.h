/*-------------------------------------------------------------------------
 *
 * breaker.h
 *	  Pure circuit-breaker decisions for one route or one endpoint: which
 *	  attempts count, when it opens, how long it stays open, who probes.
 *
 * Like policy.c, nothing here does I/O, allocates, locks or depends on
 * PostgreSQL: route_health.c keeps one Breaker per route and per endpoint
 * in shared memory and calls these functions under its lock, and
 * test/unit/test_breaker.c tests them without a server.  Times are int64
 * microseconds on any epoch (route_health.c passes TimestampTz values).
 *
 *-------------------------------------------------------------------------
 */
#ifndef AIR_BREAKER_H
#define AIR_BREAKER_H

#include <stdbool.h>
#include <stdint.h>

#include "policy.h"

/* What an attempt's outcome says about the health of its route. */
typedef enum BreakerVerdict
{
	VERDICT_NEUTRAL = 0,		/* about the request, or ours: counts nothing */
	VERDICT_SUCCESS,			/* the route answered well */
	VERDICT_ROUTE_FAILURE,		/* the route failed; the endpoint answered */
	VERDICT_ENDPOINT_FAILURE	/* the endpoint could not be reached */
} BreakerVerdict;

/* The state shown by ai_route_health. */
typedef enum BreakerState
{
	BREAKER_CLOSED = 0,			/* traffic flows */
	BREAKER_OPEN,				/* skipped until next_probe_at */
	BREAKER_HALF_OPEN			/* one probe is in flight; others skip */
} BreakerState;

/* Whether a call may use a route now. */
typedef enum BreakerAdmission
{
	ADMIT_PASS = 0,				/* closed: go */
	ADMIT_PROBE,				/* open and due: the caller may be the probe */
	ADMIT_SKIP					/* open, or another probe is in flight */
} BreakerAdmission;

/* Why a breaker changed state; kept in the route history. */
typedef enum BreakerChange
{
	CHANGE_NONE = 0,			/* no change of state */
	CHANGE_OPENED_FAILURES,		/* closed -> open: consecutive failures */
	CHANGE_OPENED_RATE,			/* closed -> open: the window's failure rate */
	CHANGE_OPENED_RETRY_AFTER,	/* closed -> open: a 429 said how long */
	CHANGE_PROBE_STARTED,		/* open -> half-open */
	CHANGE_PROBE_FAILED,		/* half-open -> open, for longer */
	CHANGE_PROBE_INCONCLUSIVE,	/* half-open -> open, the next call probes */
	CHANGE_CLOSED,				/* -> closed: an attempt succeeded */
	CHANGE_OPENED_BY_HAND,		/* -> open: ai_route_set */
	CHANGE_CLOSED_BY_HAND		/* -> closed: ai_route_set */
} BreakerChange;

/* The breaker settings, as the recording session has them. */
typedef struct BreakerSettings
{
	int			failures;		/* consecutive failures that open */
	int			cooldown_ms;	/* first open period */
	int			cooldown_max_ms;	/* cap on the open period */
	int			window_ms;		/* span of the sliding window */
	int			failure_rate;	/* % of failures in the window that opens; 0: never */
	int			min_requests;	/* fewer attempts in the window never open */
	int			retry_budget;	/* retries as % of attempts in the window; -1: no cap */
	int			retry_budget_min;	/* retries always allowed per window */
} BreakerSettings;

/*
 * Counts over a sliding window: the current span and the one before, whose
 * counts are weighted by how much of it the window still covers.
 */
typedef struct BreakerWindow
{
	int64_t		started_at;		/* start of the current span; 0: never */
	int			requests;		/* attempts counted in the current span */
	int			failures;		/* of which failures */
	int			retries;		/* retries granted in the current span */
	int			prev_requests;	/* the same for the span before */
	int			prev_failures;
	int			prev_retries;
} BreakerWindow;

/* One breaker.  All zero is a closed breaker that has seen nothing. */
typedef struct Breaker
{
	BreakerState state;
	int			consecutive_failures;
	int			open_streak;	/* opens since it last stayed closed a while */
	int64_t		times_opened;	/* since server start */
	int64_t		opened_at;		/* last open; 0: never */
	int64_t		closed_at;		/* last close; 0: never opened */
	int64_t		next_probe_at;	/* open: when a probe may go */
	int			probe_pid;		/* half-open: the probing backend */
	int64_t		probe_expires_at;	/* half-open: the probe is presumed lost then */
	BreakerWindow window;		/* attempts, failures and retries of late */
} Breaker;

extern BreakerVerdict breaker_verdict(AttemptClass cls,
									  TransportFailure transport);
extern BreakerAdmission breaker_admission(const Breaker *breaker, int64_t now);
extern BreakerChange breaker_start_probe(Breaker *breaker, int pid,
										 int64_t now, int64_t lease_us);
extern BreakerChange breaker_record(Breaker *breaker, BreakerVerdict verdict,
						   bool was_probe, int pid, int retry_after_ms,
						   int64_t now, const BreakerSettings *settings);
extern bool breaker_grant_retry(Breaker *breaker, int64_t now,
								const BreakerSettings *settings);
extern void breaker_window_counts(const Breaker *breaker, int64_t now,
								  const BreakerSettings *settings,
								  double *requests, double *failures,
								  double *retries);
extern BreakerChange breaker_force(Breaker *breaker, bool open, int64_t now,
								   int64_t open_us);
extern int64_t breaker_cooldown_us(int open_streak,
								   const BreakerSettings *settings);
extern const char *breaker_state_name(BreakerState state);
extern const char *breaker_change_name(BreakerChange change);

#endif							/* AIR_BREAKER_H */
