/*-------------------------------------------------------------------------
 *
 * test_breaker.c
 *	  Unit tests of the pure circuit-breaker decisions in src/breaker.c.
 *
 * Runs without a server or a network.  Prints TAP lines and a closing
 * "N passed, M failed" line; exits non-zero when a check fails.
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <string.h>

#include "breaker.h"
#include "unit_check.h"

#define SEC		((int64_t) 1000000)


/* consecutive failures only: the window's rate and retry budget off */
static const BreakerSettings settings = {3, 5000, 60000, 60000, 0, 10, -1, 3};
/* the defaults */
static const BreakerSettings defaults = {3, 5000, 60000, 60000, 50, 10, 20, 3};

/* Record n failures of one kind, none a probe. */
static void
fail_times(Breaker *breaker, int n, int64_t now)
{
	while (n-- > 0)
		breaker_record(breaker, VERDICT_ROUTE_FAILURE, false, 1, -1, now,
					   &settings);
}

/* Which classes count, and how. */
static void
test_verdicts(void)
{
	static const AttemptClass route_failures[] = {
		CLASS_FIRST_BYTE_TIMEOUT, CLASS_IDLE_TIMEOUT, CLASS_TIMEOUT,
		CLASS_RESET, CLASS_TRANSPORT, CLASS_HTTP_5XX, CLASS_RATE_LIMITED,
		CLASS_QUOTA, CLASS_AUTH, CLASS_NOT_FOUND, CLASS_STREAM_ERROR,
		CLASS_STREAM_CUT, CLASS_BAD_RESPONSE
	};
	static const AttemptClass neutral[] = {
		CLASS_BAD_REQUEST, CLASS_CONTEXT_LENGTH, CLASS_CONTENT_POLICY,
		CLASS_HTTP_4XX, CLASS_DEADLINE, CLASS_CANCELLED
	};
	size_t		i;
	int			ok = 1;

	check(breaker_verdict(CLASS_SUCCESS, TRANSPORT_OK) == VERDICT_SUCCESS,
		  "a success is a success");
	check(breaker_verdict(CLASS_CONNECT, TRANSPORT_CONNECT) == VERDICT_ENDPOINT_FAILURE &&
		  breaker_verdict(CLASS_CONNECT_TIMEOUT, TRANSPORT_CONNECT_TIMEOUT) == VERDICT_ENDPOINT_FAILURE,
		  "connect errors and connect timeouts are the endpoint's");
	for (i = 0; i < sizeof(route_failures) / sizeof(route_failures[0]); i++)
		ok &= breaker_verdict(route_failures[i], TRANSPORT_OK) == VERDICT_ROUTE_FAILURE;
	check(ok, "timeouts, resets, 5xx, 429, billing 429, 401/403, 404, broken answers count");
	ok = 1;
	for (i = 0; i < sizeof(neutral) / sizeof(neutral[0]); i++)
		ok &= breaker_verdict(neutral[i], TRANSPORT_OK) == VERDICT_NEUTRAL;
	check(ok, "400, context length, content policy, other 4xx, deadline, cancel do not");
	check(breaker_verdict(CLASS_BAD_RESPONSE, TRANSPORT_TOO_LARGE) == VERDICT_NEUTRAL,
		  "an answer over max_response_bytes does not count");
}

/* Closed, open after n failures, probe, close or re-open. */
static void
test_cycle(void)
{
	Breaker		b;
	int64_t		t = 1000 * SEC;

	memset(&b, 0, sizeof(b));
	check(breaker_admission(&b, t) == ADMIT_PASS, "a new breaker passes");
	fail_times(&b, 2, t);
	check(b.state == BREAKER_CLOSED && breaker_admission(&b, t) == ADMIT_PASS,
		  "two failures keep it closed");
	breaker_record(&b, VERDICT_SUCCESS, false, 1, -1, t, &settings);
	fail_times(&b, 2, t);
	check(b.state == BREAKER_CLOSED, "a success resets the consecutive count");
	check(breaker_record(&b, VERDICT_ROUTE_FAILURE, false, 1, -1, t, &settings) ==
		  CHANGE_OPENED_FAILURES &&
		  b.state == BREAKER_OPEN && b.times_opened == 1,
		  "the third consecutive failure opens");
	check(b.next_probe_at == t + 5 * SEC, "the first cooldown is 5 s");
	check(breaker_admission(&b, t + 5 * SEC - 1) == ADMIT_SKIP,
		  "open: calls skip until the cooldown has passed");
	check(breaker_admission(&b, t + 5 * SEC) == ADMIT_PROBE,
		  "then a call may probe");
	check(breaker_start_probe(&b, 7, t + 5 * SEC, 10 * SEC) == CHANGE_PROBE_STARTED,
		  "the probe starts: half-open");
	check(b.state == BREAKER_HALF_OPEN &&
		  breaker_admission(&b, t + 6 * SEC) == ADMIT_SKIP,
		  "half-open: every other call skips");
	check(breaker_admission(&b, t + 15 * SEC) == ADMIT_PROBE,
		  "a probe lost past its lease lets the next call probe");
	check(breaker_record(&b, VERDICT_ROUTE_FAILURE, true, 7, -1, t + 6 * SEC, &settings) ==
		  CHANGE_PROBE_FAILED && b.state == BREAKER_OPEN && b.next_probe_at == t + 16 * SEC &&
		  b.times_opened == 2,
		  "a failed probe re-opens for twice the cooldown");
	breaker_start_probe(&b, 8, t + 16 * SEC, 10 * SEC);
	check(!breaker_record(&b, VERDICT_ROUTE_FAILURE, true, 7, -1, t + 17 * SEC, &settings) &&
		  b.state == BREAKER_HALF_OPEN,
		  "a failure of a probe that lost its lease does not decide");
	check(breaker_record(&b, VERDICT_SUCCESS, true, 8, -1, t + 17 * SEC, &settings) ==
		  CHANGE_CLOSED && b.state == BREAKER_CLOSED && b.consecutive_failures == 0,
		  "a successful probe closes");
	fail_times(&b, 3, t + 20 * SEC);
	check(b.next_probe_at == t + 20 * SEC + 15 * SEC,
		  "re-opened soon after closing: the cooldown keeps growing");
	breaker_record(&b, VERDICT_SUCCESS, false, 1, -1, t + 21 * SEC, &settings);
	fail_times(&b, 3, t + 81 * SEC);
	check(b.next_probe_at == t + 86 * SEC,
		  "closed for the whole cap: the cooldown starts again at 5 s");
}

/* Cooldown growth, its cap, Retry-After, neutral probes, forcing. */
static void
test_cooldowns(void)
{
	Breaker		b;
	int64_t		t = 1000 * SEC;

	check(breaker_cooldown_us(1, &settings) == 5 * SEC &&
		  breaker_cooldown_us(4, &settings) == 20 * SEC &&
		  breaker_cooldown_us(13, &settings) == 60 * SEC,
		  "cooldown is 5 s x opens in a row, capped at 60 s");

	memset(&b, 0, sizeof(b));
	check(breaker_record(&b, VERDICT_ROUTE_FAILURE, false, 1, 2500, t, &settings) ==
		  CHANGE_OPENED_RETRY_AFTER && b.state == BREAKER_OPEN && b.next_probe_at == t + 2500 * 1000,
		  "a 429 with Retry-After opens at once until then");
	breaker_record(&b, VERDICT_ROUTE_FAILURE, false, 1, 9000, t, &settings);
	check(b.next_probe_at == t + 9 * SEC, "a longer Retry-After while open extends it");
	breaker_record(&b, VERDICT_ROUTE_FAILURE, false, 1, 1000, t, &settings);
	check(b.next_probe_at == t + 9 * SEC, "a shorter one does not shorten it");

	memset(&b, 0, sizeof(b));
	breaker_record(&b, VERDICT_ROUTE_FAILURE, false, 1, 3600 * 1000, t, &settings);
	check(b.next_probe_at == t + 60 * SEC, "Retry-After is capped like a cooldown");

	breaker_start_probe(&b, 3, t + 60 * SEC, 10 * SEC);
	check(breaker_record(&b, VERDICT_NEUTRAL, true, 3, -1, t + 61 * SEC, &settings) ==
		  CHANGE_PROBE_INCONCLUSIVE && b.state == BREAKER_OPEN &&
		  breaker_admission(&b, t + 61 * SEC) == ADMIT_PROBE,
		  "a probe that learnt nothing lets the next call probe at once");
	check(!breaker_record(&b, VERDICT_NEUTRAL, false, 1, -1, t, &settings),
		  "a neutral attempt changes nothing");

	check(breaker_force(&b, false, t, 0) == CHANGE_CLOSED_BY_HAND &&
		  b.state == BREAKER_CLOSED && breaker_admission(&b, t) == ADMIT_PASS,
		  "closed by hand");
	check(breaker_force(&b, true, t, 30 * SEC) == CHANGE_OPENED_BY_HAND &&
		  b.state == BREAKER_OPEN && breaker_admission(&b, t + 29 * SEC) == ADMIT_SKIP &&
		  breaker_admission(&b, t + 30 * SEC) == ADMIT_PROBE,
		  "opened by hand for a given time");
	check(strcmp(breaker_state_name(BREAKER_HALF_OPEN), "half-open") == 0 &&
		  strcmp(breaker_change_name(CHANGE_OPENED_RATE), "failure rate") == 0 &&
		  breaker_change_name(CHANGE_NONE) == NULL,
		  "state and change names");
}

/* The sliding window: failure rate and retry budget. */
static void
test_window(void)
{
	Breaker		b;
	int64_t		t = 1000 * SEC;
	double		requests,
				failures,
				retries;
	int			i;
	int			granted = 0;

	memset(&b, 0, sizeof(b));
	/* alternate failures and successes: never 3 in a row */
	for (i = 0; i < 8; i++)
		breaker_record(&b, i % 2 ? VERDICT_SUCCESS : VERDICT_ROUTE_FAILURE,
					   false, 1, -1, t + i, &defaults);
	check(b.state == BREAKER_CLOSED, "50 % failures in 8 attempts: under min_requests");
	breaker_record(&b, VERDICT_ROUTE_FAILURE, false, 1, -1, t + 8, &defaults);
	check(b.state == BREAKER_CLOSED, "5 of 9 failed: still under min_requests");
	check(breaker_record(&b, VERDICT_ROUTE_FAILURE, false, 1, -1, t + 9, &defaults) ==
		  CHANGE_OPENED_RATE &&
		  b.state == BREAKER_OPEN && b.consecutive_failures == 2,
		  "6 of 10 failed: the failure rate opens it before 3 in a row");
	breaker_record(&b, VERDICT_SUCCESS, false, 1, -1, t + 10, &defaults);
	check(breaker_record(&b, VERDICT_ROUTE_FAILURE, false, 1, -1, t + 11, &defaults) ==
		  CHANGE_NONE && b.state == BREAKER_CLOSED,
		  "closed again, the failures that opened it no longer count");

	memset(&b, 0, sizeof(b));
	for (i = 0; i < 10; i++)
		breaker_record(&b, i % 3 ? VERDICT_SUCCESS : VERDICT_ROUTE_FAILURE,
					   false, 1, -1, t + i, &defaults);
	check(b.state == BREAKER_CLOSED, "4 of 10 failed: under 50 %, closed");
	breaker_window_counts(&b, t + 30 * SEC, &defaults, &requests, &failures, &retries);
	check(requests == 10 && failures == 4, "the window counts attempts and failures");
	breaker_window_counts(&b, t + 90 * SEC, &defaults, &requests, &failures, &retries);
	check(requests > 4.9 && requests < 5.1,
		  "half a window later the span before counts half");
	breaker_window_counts(&b, t + 121 * SEC, &defaults, &requests, &failures, &retries);
	check(requests == 0, "two windows later nothing counts");

	memset(&b, 0, sizeof(b));
	for (i = 0; i < 3; i++)
		granted += breaker_grant_retry(&b, t, &defaults);
	check(granted == 3 && !breaker_grant_retry(&b, t, &defaults),
		  "with no traffic, the floor of 3 retries per window");
	for (i = 0; i < 100; i++)
		breaker_record(&b, VERDICT_ROUTE_FAILURE, false, 1, -1, t, &settings);
	granted = 3;
	while (breaker_grant_retry(&b, t, &defaults))
		granted++;
	check(granted == 20, "100 attempts: 20 % of them may be retries");
	check(breaker_grant_retry(&b, t + 125 * SEC, &defaults),
		  "the budget refills as the window slides");
	check(breaker_grant_retry(&b, t, &settings), "retry_budget -1: no cap");
}

int
main(void)
{
	test_verdicts();
	test_cycle();
	test_cooldowns();
	test_window();
	return checks_done();
}
