/*-------------------------------------------------------------------------
 *
 * breaker.c
 *	  Pure circuit-breaker decisions for one route or one endpoint.
 *
 * A breaker is closed until breaker_failures consecutive attempts fail
 * (LiteLLM's allowed_fails is 3), or at once on a 429 that says how long to
 * wait.  It then stays open for a cooldown: 5 s (LiteLLM's cooldown) times
 * the number of opens in a row (Envoy multiplies its ejection time by the
 * number of ejections), capped at 60 s (resilience4j's open period), or the
 * Retry-After.  A breaker that stays closed for a whole cap starts its
 * count of opens afresh.  When the cooldown has passed, the first call to
 * ask becomes the probe (half-open) and every other call skips the route
 * until the probe's outcome is known: a success closes, a failure opens
 * again.  A probe whose backend never reports (it died) is presumed lost
 * when its lease runs out, and the next call probes.
 *
 * A sliding window (a minute, as LiteLLM's) counts attempts, failures and
 * retries.  It gives a second reason to open, for failures that come
 * between successes: breaker_failure_rate % (50 %, LiteLLM and
 * resilience4j) of at least breaker_min_requests attempts.  And it bounds
 * retries (the retry budget): a transient error is retried on the same
 * route only while the retries in the window stay under a share of its
 * attempts (Envoy's 20 %) or a small floor, so that many sessions cannot
 * multiply the load on a struggling gateway.
 *
 * This file includes no PostgreSQL header: it is compiled into the
 * extension and, unchanged, into test/unit/test_breaker.
 *
 *-------------------------------------------------------------------------
 */
#include <string.h>

#include "breaker.h"

static void breaker_open(Breaker *breaker, int retry_after_ms, int64_t now,
						 const BreakerSettings *settings);
static void breaker_close(Breaker *breaker, int64_t now);
static int64_t retry_after_us(int retry_after_ms,
							  const BreakerSettings *settings);
static void window_roll(BreakerWindow *window, int64_t now,
						const BreakerSettings *settings);
static double window_weight(const BreakerWindow *window, int64_t now,
							const BreakerSettings *settings);

/* Names of the changes in the route history, indexed by BreakerChange. */
static const char *const change_names[] = {
	[CHANGE_NONE] = NULL,
	[CHANGE_OPENED_FAILURES] = "consecutive failures",
	[CHANGE_OPENED_RATE] = "failure rate",
	[CHANGE_OPENED_RETRY_AFTER] = "retry-after",
	[CHANGE_PROBE_STARTED] = "probe started",
	[CHANGE_PROBE_FAILED] = "probe failed",
	[CHANGE_PROBE_INCONCLUSIVE] = "probe inconclusive",
	[CHANGE_CLOSED] = "success",
	[CHANGE_OPENED_BY_HAND] = "opened by hand",
	[CHANGE_CLOSED_BY_HAND] = "closed by hand",
};

/* Names shown by ai_route_health, indexed by BreakerState. */
static const char *const state_names[] = {
	[BREAKER_CLOSED] = "closed",
	[BREAKER_OPEN] = "open",
	[BREAKER_HALF_OPEN] = "half-open",
};

/*
 * What an attempt of class cls says about its route.  Failures of the
 * route (5xx, timeouts, resets, broken answers) and answers that will not
 * change within seconds (401/403 wrong key, 404 unknown model, a billing
 * 429) count; errors about the request itself (400, context length,
 * content policy, an answer over our size limit) and our own deadline or
 * cancel do not.  A failure to connect is the endpoint's, not the model's.
 */
BreakerVerdict
breaker_verdict(AttemptClass cls, TransportFailure transport)
{
	switch (cls)
	{
		case CLASS_SUCCESS:
			return VERDICT_SUCCESS;
		case CLASS_CONNECT:
		case CLASS_CONNECT_TIMEOUT:
			return VERDICT_ENDPOINT_FAILURE;
		case CLASS_FIRST_BYTE_TIMEOUT:
		case CLASS_IDLE_TIMEOUT:
		case CLASS_TIMEOUT:
		case CLASS_RESET:
		case CLASS_TRANSPORT:
		case CLASS_HTTP_5XX:
		case CLASS_RATE_LIMITED:
		case CLASS_QUOTA:
		case CLASS_AUTH:
		case CLASS_NOT_FOUND:
		case CLASS_STREAM_ERROR:
		case CLASS_STREAM_CUT:
			return VERDICT_ROUTE_FAILURE;
		case CLASS_BAD_RESPONSE:
			/* too large is about this request's answer, not the route */
			return transport == TRANSPORT_TOO_LARGE ?
				VERDICT_NEUTRAL : VERDICT_ROUTE_FAILURE;
		case CLASS_BAD_REQUEST:
		case CLASS_CONTEXT_LENGTH:
		case CLASS_CONTENT_POLICY:
		case CLASS_HTTP_4XX:
		case CLASS_DEADLINE:
		case CLASS_CANCELLED:
			return VERDICT_NEUTRAL;
	}
	return VERDICT_NEUTRAL;
}

/* May a call use the breaker's route now?  Changes nothing. */
BreakerAdmission
breaker_admission(const Breaker *breaker, int64_t now)
{
	switch (breaker->state)
	{
		case BREAKER_CLOSED:
			return ADMIT_PASS;
		case BREAKER_OPEN:
			return now >= breaker->next_probe_at ? ADMIT_PROBE : ADMIT_SKIP;
		case BREAKER_HALF_OPEN:
			/* a probe never reported is lost: the next call probes */
			return now >= breaker->probe_expires_at ? ADMIT_PROBE : ADMIT_SKIP;
	}
	return ADMIT_SKIP;
}

/*
 * Make pid's call the probe, for at most lease_us.  A probe taken over
 * from a lost one is no change of state.
 */
BreakerChange
breaker_start_probe(Breaker *breaker, int pid, int64_t now, int64_t lease_us)
{
	BreakerState old = breaker->state;

	breaker->state = BREAKER_HALF_OPEN;
	breaker->probe_pid = pid;
	breaker->probe_expires_at = now + lease_us;
	return old == BREAKER_HALF_OPEN ? CHANGE_NONE : CHANGE_PROBE_STARTED;
}

/*
 * Count an attempt's verdict.  was_probe says the attempt was started as
 * the probe by backend pid; it decides the half-open state only if that
 * probe still holds it (its lease may have passed to another).
 * retry_after_ms is the server's requested wait for a counted failure, or
 * -1.  Returns the change of state it made, if any.
 */
BreakerChange
breaker_record(Breaker *breaker, BreakerVerdict verdict, bool was_probe,
			   int pid, int retry_after_ms, int64_t now,
			   const BreakerSettings *settings)
{
	bool		is_probe = was_probe && breaker->state == BREAKER_HALF_OPEN &&
		breaker->probe_pid == pid;
	double		requests;
	double		failures;
	double		retries;

	window_roll(&breaker->window, now, settings);
	breaker->window.requests++;
	if (verdict == VERDICT_ROUTE_FAILURE || verdict == VERDICT_ENDPOINT_FAILURE)
		breaker->window.failures++;
	breaker_window_counts(breaker, now, settings, &requests, &failures, &retries);

	switch (verdict)
	{
		case VERDICT_SUCCESS:
			breaker->consecutive_failures = 0;
			if (breaker->state == BREAKER_CLOSED)
				return CHANGE_NONE;
			/* any success proves the route works, a probe's or not */
			breaker_close(breaker, now);
			return CHANGE_CLOSED;

		case VERDICT_ROUTE_FAILURE:
		case VERDICT_ENDPOINT_FAILURE:
			breaker->consecutive_failures++;
			if (is_probe)
			{
				breaker_open(breaker, retry_after_ms, now, settings);
				return CHANGE_PROBE_FAILED;
			}
			if (breaker->state == BREAKER_CLOSED)
			{
				BreakerChange change = CHANGE_NONE;

				if (retry_after_ms > 0)
					change = CHANGE_OPENED_RETRY_AFTER;
				else if (breaker->consecutive_failures >= settings->failures)
					change = CHANGE_OPENED_FAILURES;
				else if (settings->failure_rate > 0 &&
						 requests >= settings->min_requests &&
						 failures * 100 >= requests * settings->failure_rate)
					change = CHANGE_OPENED_RATE;
				if (change != CHANGE_NONE)
					breaker_open(breaker, retry_after_ms, now, settings);
				return change;
			}
			/* an open route told to wait longer waits longer */
			if (breaker->state == BREAKER_OPEN && retry_after_ms > 0)
			{
				int64_t		until = now + retry_after_us(retry_after_ms, settings);

				if (until > breaker->next_probe_at)
					breaker->next_probe_at = until;
			}
			return CHANGE_NONE;

		case VERDICT_NEUTRAL:
			/* the probe learnt nothing: the next call probes at once */
			if (!is_probe)
				return CHANGE_NONE;
			breaker->state = BREAKER_OPEN;
			breaker->next_probe_at = now;
			breaker->probe_pid = 0;
			return CHANGE_PROBE_INCONCLUSIVE;
	}
	return CHANGE_NONE;
}

/*
 * May a call retry on this route (or endpoint) now?  The retry budget:
 * retries granted over the window stay within retry_budget % of its
 * attempts, or retry_budget_min, whichever is more (Envoy's budget is 20 %
 * with a minimum of 3).  A granted retry is counted.
 */
bool
breaker_grant_retry(Breaker *breaker, int64_t now,
					const BreakerSettings *settings)
{
	double		requests;
	double		failures;
	double		retries;
	double		allowed;

	if (settings->retry_budget < 0)
		return true;
	window_roll(&breaker->window, now, settings);
	breaker_window_counts(breaker, now, settings, &requests, &failures, &retries);
	allowed = requests * settings->retry_budget / 100.0;
	if (allowed < settings->retry_budget_min)
		allowed = settings->retry_budget_min;
	if (retries + 1 > allowed)
		return false;
	breaker->window.retries++;
	return true;
}

/* The window's counts at now: the current span plus the weighted one before. */
void
breaker_window_counts(const Breaker *breaker, int64_t now,
					  const BreakerSettings *settings, double *requests,
					  double *failures, double *retries)
{
	BreakerWindow w = breaker->window;
	double		weight;

	/* a window not rolled for a while holds stale counts */
	window_roll(&w, now, settings);
	weight = window_weight(&w, now, settings);
	*requests = w.requests + w.prev_requests * weight;
	*failures = w.failures + w.prev_failures * weight;
	*retries = w.retries + w.prev_retries * weight;
}

/* Open or close a breaker by hand; an open one stays so for open_us. */
BreakerChange
breaker_force(Breaker *breaker, bool open, int64_t now, int64_t open_us)
{
	breaker->probe_pid = 0;
	if (open)
	{
		breaker->state = BREAKER_OPEN;
		breaker->opened_at = now;
		breaker->next_probe_at = now + open_us;
		breaker->times_opened++;
		return CHANGE_OPENED_BY_HAND;
	}
	breaker_close(breaker, now);
	return CHANGE_CLOSED_BY_HAND;
}

/* The cooldown after open_streak opens in a row: base x streak, capped. */
int64_t
breaker_cooldown_us(int open_streak, const BreakerSettings *settings)
{
	int64_t		ms = (int64_t) settings->cooldown_ms * (open_streak > 1 ? open_streak : 1);

	if (ms > settings->cooldown_max_ms)
		ms = settings->cooldown_max_ms;
	return ms * 1000;
}

/* The name of a change of state; NULL for none. */
const char *
breaker_change_name(BreakerChange change)
{
	return change_names[change];
}

/* The name of a state. */
const char *
breaker_state_name(BreakerState state)
{
	return state_names[state];
}

/*
 * Open the breaker for its cooldown, or for the server's Retry-After
 * (capped like a cooldown).  The streak of opens restarts when the breaker
 * was last closed longer ago than the cap.
 */
static void
breaker_open(Breaker *breaker, int retry_after_ms, int64_t now,
			 const BreakerSettings *settings)
{
	if (breaker->times_opened == 0 ||
		(breaker->state == BREAKER_CLOSED &&
		 now - breaker->closed_at >= (int64_t) settings->cooldown_max_ms * 1000))
		breaker->open_streak = 1;
	else
		breaker->open_streak++;

	breaker->state = BREAKER_OPEN;
	breaker->opened_at = now;
	breaker->times_opened++;
	breaker->probe_pid = 0;
	if (retry_after_ms > 0)
		breaker->next_probe_at = now + retry_after_us(retry_after_ms, settings);
	else
		breaker->next_probe_at = now + breaker_cooldown_us(breaker->open_streak,
														   settings);
}

/*
 * Close the breaker.  The failures that opened it leave the window: the
 * failure rate starts again from the attempts that follow, as resilience4j
 * starts a new window.
 */
static void
breaker_close(Breaker *breaker, int64_t now)
{
	breaker->state = BREAKER_CLOSED;
	breaker->consecutive_failures = 0;
	breaker->closed_at = now;
	breaker->probe_pid = 0;
	breaker->window.failures = 0;
	breaker->window.prev_failures = 0;
}

/* A server's requested wait, capped like a cooldown, in microseconds. */
static int64_t
retry_after_us(int retry_after_ms, const BreakerSettings *settings)
{
	int			ms = retry_after_ms < settings->cooldown_max_ms ?
		retry_after_ms : settings->cooldown_max_ms;

	return (int64_t) ms * 1000;
}

/*
 * Start a new span when the current one is over, aligned on the spans
 * before it; a silence of two spans or more clears both.
 */
static void
window_roll(BreakerWindow *window, int64_t now, const BreakerSettings *settings)
{
	int64_t		span = (int64_t) settings->window_ms * 1000;
	int64_t		spans;

	if (window->started_at == 0)
	{
		memset(window, 0, sizeof(BreakerWindow));
		window->started_at = now;
		return;
	}
	spans = (now - window->started_at) / span;
	if (spans <= 0)
		return;
	if (spans == 1)
	{
		window->prev_requests = window->requests;
		window->prev_failures = window->failures;
		window->prev_retries = window->retries;
	}
	else
		window->prev_requests = window->prev_failures = window->prev_retries = 0;
	window->requests = window->failures = window->retries = 0;
	window->started_at += spans * span;
}

/* How much of the span before the window still covers at now, 0 to 1. */
static double
window_weight(const BreakerWindow *window, int64_t now,
			  const BreakerSettings *settings)
{
	double		span = (double) settings->window_ms * 1000;
	double		into = (double) (now - window->started_at);

	if (window->started_at == 0 || into >= span)
		return 0;
	return into <= 0 ? 1 : 1 - into / span;
}
