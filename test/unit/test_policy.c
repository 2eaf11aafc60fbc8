/*-------------------------------------------------------------------------
 *
 * test_policy.c
 *	  Unit tests of the pure retry and fallback decisions in src/policy.c.
 *
 * Runs without a server or a network.  Prints TAP lines and a closing
 * "N passed, M failed" line; exits non-zero when a check fails.
 *
 *-------------------------------------------------------------------------
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "policy.h"
#include "unit_check.h"


/* Classify an HTTP response with an optional error code and header. */
static AttemptClass
classify_http(int status, const char *error_code, const char *message,
			  const char *should_retry, bool *retryable)
{
	AttemptFacts facts;

	memset(&facts, 0, sizeof(facts));
	facts.transport = TRANSPORT_OK;
	facts.http_status = status;
	facts.answer_ok = status == 200;
	facts.error_code = error_code;
	facts.error_message = message;
	facts.should_retry = should_retry;
	return policy_classify(&facts, retryable);
}

/* Classify a transfer that ended below HTTP. */
static AttemptClass
classify_transport(TransportFailure failure, bool *retryable)
{
	AttemptFacts facts;

	memset(&facts, 0, sizeof(facts));
	facts.transport = failure;
	return policy_classify(&facts, retryable);
}

/* Which timer fired, for bounds given in milliseconds. */
static TransportFailure
timer_fired(long connect_ms, long attempt_ms, long deadline_ms, bool connected)
{
	AttemptTimers timers;

	timers.connect_ms = connect_ms;
	timers.attempt_ms = attempt_ms;
	timers.deadline_ms = deadline_ms;
	return policy_timer_fired(&timers, connected);
}

/* The status rules, transport failures and x-should-retry. */
static void
test_classify(void)
{
	static const struct
	{
		int			status;
		const char *code;
		const char *message;
		AttemptClass cls;
		bool		retryable;
	}			cases[] = {
		{200, NULL, NULL, CLASS_SUCCESS, false},
		{500, NULL, NULL, CLASS_HTTP_5XX, true},
		{502, NULL, NULL, CLASS_HTTP_5XX, true},
		{503, NULL, NULL, CLASS_HTTP_5XX, true},
		{504, NULL, NULL, CLASS_TIMEOUT, true},
		{524, NULL, NULL, CLASS_TIMEOUT, true},
		{408, NULL, NULL, CLASS_TIMEOUT, true},
		{409, NULL, NULL, CLASS_HTTP_4XX, true},
		{429, "rate_limit_exceeded", NULL, CLASS_RATE_LIMITED, true},
		{429, "insufficient_quota", NULL, CLASS_QUOTA, false},
		{429, "billing_hard_limit_reached", NULL, CLASS_QUOTA, false},
		{402, NULL, NULL, CLASS_QUOTA, false},
		{401, "invalid_api_key", NULL, CLASS_AUTH, false},
		{403, NULL, NULL, CLASS_AUTH, false},
		{404, "model_not_found", NULL, CLASS_NOT_FOUND, false},
		{400, NULL, NULL, CLASS_BAD_REQUEST, false},
		{400, "context_length_exceeded", NULL, CLASS_CONTEXT_LENGTH, false},
		{400, NULL, "This model's maximum context length is 8192 tokens", CLASS_CONTEXT_LENGTH, false},
		{400, "content_policy_violation", NULL, CLASS_CONTENT_POLICY, false},
		{413, NULL, NULL, CLASS_BAD_REQUEST, false},
		{422, NULL, NULL, CLASS_BAD_REQUEST, false},
		{418, NULL, NULL, CLASS_HTTP_4XX, false},
		{302, NULL, NULL, CLASS_BAD_RESPONSE, false},
	};
	size_t		i;
	bool		retryable;
	AttemptFacts facts;
	char		description[160];

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		AttemptClass cls = classify_http(cases[i].status, cases[i].code,
										 cases[i].message, NULL, &retryable);

		snprintf(description, sizeof(description),
				 "HTTP %d %s is %s, %sretryable", cases[i].status,
				 cases[i].code ? cases[i].code : "",
				 policy_class_name(cases[i].cls) ? policy_class_name(cases[i].cls) : "success",
				 cases[i].retryable ? "" : "not ");
		check(cls == cases[i].cls && retryable == cases[i].retryable,
			  description);
	}

	check(classify_http(500, NULL, NULL, "false", &retryable) == CLASS_HTTP_5XX &&
		  !retryable, "x-should-retry: false stops a 500 from retrying");
	check(classify_http(400, NULL, NULL, "true", &retryable) == CLASS_BAD_REQUEST &&
		  retryable, "x-should-retry: true makes a 400 retryable");
	check(classify_http(500, NULL, NULL, "maybe", &retryable) == CLASS_HTTP_5XX &&
		  retryable, "an unknown x-should-retry value is ignored");

	memset(&facts, 0, sizeof(facts));
	facts.http_status = 200;
	facts.answer_ok = false;
	check(policy_classify(&facts, &retryable) == CLASS_BAD_RESPONSE && retryable,
		  "a 200 without a usable answer is a retryable bad_response");

	check(classify_transport(TRANSPORT_CONNECT, &retryable) == CLASS_CONNECT &&
		  retryable, "connection refused is a retryable connect");
	check(classify_transport(TRANSPORT_CONNECT_TIMEOUT, &retryable) == CLASS_CONNECT_TIMEOUT &&
		  retryable, "connect timeout is a retryable connect_timeout");
	check(classify_transport(TRANSPORT_FIRST_BYTE_TIMEOUT, &retryable) == CLASS_FIRST_BYTE_TIMEOUT &&
		  retryable, "no first byte in time is a retryable first_byte_timeout");
	check(classify_transport(TRANSPORT_IDLE_TIMEOUT, &retryable) == CLASS_IDLE_TIMEOUT &&
		  retryable, "a stalled stream is a retryable idle_timeout");
	check(classify_transport(TRANSPORT_TIMEOUT, &retryable) == CLASS_TIMEOUT &&
		  retryable, "a transfer timeout is a retryable timeout");
	check(classify_transport(TRANSPORT_DEADLINE, &retryable) == CLASS_DEADLINE &&
		  !retryable, "the deadline's timer is a deadline, not retried");
	check(classify_transport(TRANSPORT_RESET, &retryable) == CLASS_RESET &&
		  retryable, "a dropped connection is a retryable reset");
	check(classify_transport(TRANSPORT_TOO_LARGE, &retryable) == CLASS_BAD_RESPONSE &&
		  !retryable, "an oversized body is not retried on the same route");

	memset(&facts, 0, sizeof(facts));
	facts.transport = TRANSPORT_RESET;
	facts.streaming = true;
	facts.http_status = 200;
	check(policy_classify(&facts, &retryable) == CLASS_STREAM_CUT && retryable,
		  "a stream that broke off after a 200 is a retryable stream_cut");
	facts.streaming = false;
	check(policy_classify(&facts, &retryable) == CLASS_RESET && retryable,
		  "a plain body that broke off is a reset");

	memset(&facts, 0, sizeof(facts));
	facts.http_status = 200;
	facts.streaming = true;
	facts.stream_failure = STREAM_ERROR_EVENT;
	check(policy_classify(&facts, &retryable) == CLASS_STREAM_ERROR && retryable,
		  "an error event in a stream is a retryable stream_error");
	facts.stream_failure = STREAM_CUT;
	check(policy_classify(&facts, &retryable) == CLASS_STREAM_CUT && retryable,
		  "a stream without [DONE] is a retryable stream_cut");
	facts.stream_failure = STREAM_BAD_CHUNK;
	check(policy_classify(&facts, &retryable) == CLASS_BAD_RESPONSE && retryable,
		  "an unparsable chunk is a retryable bad_response");
}

/*
 * Errors as gateways rewrite them: LiteLLM 1.44 puts the status in
 * error.code and nulls error.type (the messages are its own, with the
 * upstream error quoted inside); Portkey's own errors have no error object.
 */
static void
test_gateway_errors(void)
{
	static const char litellm_quota[] =
		"litellm.RateLimitError: RateLimitError: OpenAIException - Error code: 429 - "
		"{'error': {'message': 'You exceeded your current quota, please check your plan and "
		"billing details.', 'type': 'insufficient_quota', 'param': None, 'code': 'insufficient_quota'}}";
	static const char litellm_rate[] =
		"litellm.RateLimitError: RateLimitError: OpenAIException - Error code: 429 - "
		"{'error': {'message': 'Rate limit reached for gpt-4o-mini on requests per min (RPM): "
		"Limit 3, Used 3, Requested 1. Please try again in 20s.', 'type': 'requests', "
		"'param': None, 'code': 'rate_limit_exceeded'}}";
	static const char litellm_no_deployments[] =
		"No deployments available for selected model, Try again in 60 seconds. Passed "
		"model=gpt-4o. pre-call-checks=False, allowed_model_region=n/a, cooldown_list=[]";
	static const char litellm_content[] =
		"litellm.ContentPolicyViolationError: litellm.ContentPolicyViolationError: "
		"OpenAIException - Your request was rejected as a result of our safety system.";
	static const char litellm_context[] =
		"litellm.ContextWindowExceededError: litellm.BadRequestError: OpenAIException - "
		"Error code: 400 - This request exceeds the model's window.";
	static const char portkey_failure[] =
		"Either x-portkey-config or x-portkey-provider header is required";
	bool		retryable;

	check(classify_http(429, "429", litellm_quota, NULL, &retryable) == CLASS_QUOTA &&
		  !retryable, "LiteLLM's quota 429 (code \"429\") is quota, not retried");
	check(classify_http(429, NULL, litellm_quota, NULL, &retryable) == CLASS_QUOTA &&
		  !retryable, "a quota 429 without a code is quota, not retried");
	check(classify_http(429, "rate_limit_exceeded", "You exceeded your current quota",
						NULL, &retryable) == CLASS_RATE_LIMITED && retryable,
		  "a named code wins over the message");
	check(classify_http(429, "429", litellm_rate, NULL, &retryable) == CLASS_RATE_LIMITED &&
		  retryable, "LiteLLM's rate-limit 429 stays a retryable rate_limited");
	check(classify_http(429, "429", litellm_no_deployments, NULL, &retryable) ==
		  CLASS_RATE_LIMITED && retryable,
		  "LiteLLM's no-deployments 429 is a retryable rate_limited");
	check(classify_http(400, "400", litellm_content, NULL, &retryable) ==
		  CLASS_CONTENT_POLICY && !retryable,
		  "LiteLLM's ContentPolicyViolationError is content_policy");
	check(classify_http(400, "invalid_request", litellm_content, NULL, &retryable) ==
		  CLASS_BAD_REQUEST, "a named code keeps a 400 bad_request whatever the message");
	check(classify_http(400, "400", litellm_context, NULL, &retryable) ==
		  CLASS_CONTEXT_LENGTH && !retryable,
		  "LiteLLM's ContextWindowExceededError is context_length");
	check(classify_http(400, NULL, portkey_failure, NULL, &retryable) ==
		  CLASS_BAD_REQUEST && !retryable,
		  "Portkey's own failure is a bad_request");

	check(policy_retry_after_in_message(429, litellm_no_deployments) == 60000,
		  "\"Try again in 60 seconds\" asks for 60 s");
	check(policy_retry_after_in_message(429, litellm_rate) == 20000,
		  "\"try again in 20s.\" asks for 20 s");
	check(policy_retry_after_in_message(429, "Please try again in 1.5s") == 1500,
		  "fractions of seconds count");
	check(policy_retry_after_in_message(429, "Please try again in 20ms") == 20,
		  "milliseconds count");
	check(policy_retry_after_in_message(429, "try again in 5 minutes") == -1,
		  "minutes are not read");
	check(policy_retry_after_in_message(429, "try again in 0 seconds") == -1,
		  "zero is no wait");
	check(policy_retry_after_in_message(429, "try again in later") == -1,
		  "no number, no wait");
	check(policy_retry_after_in_message(503, litellm_no_deployments) == -1,
		  "only a 429's message is read");
	check(policy_retry_after_in_message(429, NULL) == -1, "no message, no wait");
	check(policy_retry_after_in_message(429, "try again in 99999999999999999999999 seconds") ==
		  INT_MAX, "a huge wait saturates (retry_after_max then refuses it)");
}

/* When the next attempt on a route streams. */
static void
test_stream_next(void)
{
	/* arguments: class, status, was streaming, streams by default, on timeout */
	check(policy_stream_next(CLASS_TIMEOUT, 524, false, false, true),
		  "a 524 makes the next attempt stream");
	check(policy_stream_next(CLASS_FIRST_BYTE_TIMEOUT, 0, false, false, true),
		  "a first-byte timeout makes the next attempt stream");
	check(!policy_stream_next(CLASS_TIMEOUT, 0, false, false, true),
		  "a plain transfer timeout does not");
	check(!policy_stream_next(CLASS_HTTP_5XX, 502, false, false, true),
		  "a 502 does not");
	check(!policy_stream_next(CLASS_TIMEOUT, 524, false, false, false),
		  "stream_on_timeout off: a 524 does not");
	check(policy_stream_next(CLASS_HTTP_5XX, 500, true, true, false),
		  "a route that streams by default keeps streaming after a 500");
	check(!policy_stream_next(CLASS_HTTP_5XX, 500, true, false, true),
		  "a stream started by a 524 that gets a 500 goes back to not streaming");
	check(!policy_stream_next(CLASS_RATE_LIMITED, 429, true, false, true),
		  "likewise after a 429");
	check(policy_stream_next(CLASS_TIMEOUT, 524, true, false, true),
		  "a streamed attempt that gets a 524 again keeps streaming");
	check(policy_stream_next(CLASS_STREAM_CUT, 200, true, false, true),
		  "a stream that broke off after its 200 keeps streaming");
	check(policy_stream_next(CLASS_RESET, 0, true, false, true),
		  "a streamed attempt without any status keeps streaming");
	check(policy_stream_next(CLASS_TIMEOUT, 408, false, false, true),
		  "a 408 (LiteLLM's rewrite of a 524) switches to streaming");
	check(!policy_stream_next(CLASS_TIMEOUT, 408, false, false, false),
		  "not without stream_on_timeout");
}

/* Backoff doubling, its cap, and the jitter's range. */
static void
test_backoff(void)
{
	RetrySettings settings = {2, 500, 8000, 60000};

	check(policy_backoff_ms(&settings, 0, 0.0) == 500, "first backoff is the base");
	check(policy_backoff_ms(&settings, 1, 0.0) == 1000, "second backoff doubles");
	check(policy_backoff_ms(&settings, 3, 0.0) == 4000, "fourth backoff is 8x base");
	check(policy_backoff_ms(&settings, 4, 0.0) == 8000, "fifth backoff reaches the cap");
	check(policy_backoff_ms(&settings, 30, 0.0) == 8000, "backoff stays at the cap");
	check(policy_backoff_ms(&settings, 0, 0.999999) == 375,
		  "full jitter takes 25 % off");
	check(policy_backoff_ms(&settings, 1, 0.5) == 875, "half jitter takes 12.5 % off");
	settings.backoff_base_ms = 0;
	check(policy_backoff_ms(&settings, 3, 0.3) == 0, "a zero base never waits");
}

/* retry-after-ms, Retry-After in seconds and as an HTTP date. */
static void
test_retry_after(void)
{
	/* Wed, 25 Nov 2026 01:00:00 GMT */
	time_t		now = 1795568400;

	check(policy_retry_after_ms(NULL, NULL, now) == -1, "no header: no wait");
	check(policy_retry_after_ms("1500", NULL, now) == 1500, "retry-after-ms in ms");
	check(policy_retry_after_ms("12.2", NULL, now) == 13, "fractional ms round up");
	check(policy_retry_after_ms("250", "9", now) == 250, "retry-after-ms wins over Retry-After");
	check(policy_retry_after_ms(NULL, "3", now) == 3000, "Retry-After in seconds");
	check(policy_retry_after_ms(NULL, "0", now) == -1, "zero is ignored");
	check(policy_retry_after_ms(NULL, "-5", now) == -1, "negative is ignored");
	check(policy_retry_after_ms("abc", "soon", now) == -1, "garbage is ignored");
	check(policy_retry_after_ms("0", "2", now) == 2000,
		  "a zero retry-after-ms falls through to Retry-After");
	check(policy_retry_after_ms(NULL, "Wed, 25 Nov 2026 01:00:07 GMT", now) == 7000,
		  "Retry-After as an HTTP date");
	check(policy_retry_after_ms(NULL, "Wed, 25 Nov 2026 00:59:00 GMT", now) == -1,
		  "an HTTP date in the past is ignored");
	check(policy_retry_after_ms(NULL, "Wed, 25 Nov 2026 01:00:07 PST", now) == -1,
		  "an HTTP date not in GMT is refused");
	check(policy_retry_after_ms(NULL, "Sun, 29 Feb 2032 00:00:00 GMT", now) ==
		  2147483647, "a far HTTP date saturates instead of overflowing");
	check(policy_retry_after_ms("1e300", NULL, now) == 2147483647,
		  "a huge retry-after-ms saturates");
	check(policy_retry_after_ms(NULL, "0x2", now) == -1,
		  "a hexadecimal Retry-After is refused");
	check(policy_retry_after_ms(NULL, "2.5", now) == -1,
		  "a fractional Retry-After is refused (delay-seconds is digits)");
	check(policy_retry_after_ms(NULL, "+2", now) == -1 &&
		  policy_retry_after_ms(NULL, " 2", now) == -1 &&
		  policy_retry_after_ms(NULL, "2s", now) == -1,
		  "a sign, a space or a unit is refused");
	check(policy_retry_after_ms(NULL, "inf", now) == -1 &&
		  policy_retry_after_ms(NULL, "nan", now) == -1,
		  "infinity and NaN are refused");
	check(policy_retry_after_ms(NULL, "0004", now) == 4000,
		  "leading zeros are still decimal");
	check(policy_retry_after_ms("0x10", "3", now) == 3000 &&
		  policy_retry_after_ms("inf", NULL, now) == -1 &&
		  policy_retry_after_ms("1.5e3", NULL, now) == 1500 &&
		  policy_retry_after_ms("-1", NULL, now) == -1,
		  "retry-after-ms takes decimal notation only");
	check(policy_retry_after_ms(NULL, "Wednesday, 25-Nov-26 01:00:09 GMT", now) == 9000,
		  "Retry-After as an RFC 850 date");
	check(policy_retry_after_ms(NULL, "Thursday, 01-Jan-76 00:00:00 GMT", now) == 2147483647,
		  "an RFC 850 year up to 50 years ahead is in this century");
	check(policy_retry_after_ms(NULL, "Friday, 01-Jan-77 00:00:00 GMT", now) == -1,
		  "an RFC 850 year more than 50 years ahead is in the last century");
	check(policy_retry_after_ms(NULL, "Wed Nov 25 01:00:05 2026", now) == 5000,
		  "Retry-After as an asctime date");
	check(policy_retry_after_ms(NULL, "Wed Nov  4 01:00:05 2026", now) == -1 &&
		  policy_retry_after_ms(NULL, "Fri Dec  4 01:00:05 2026", now) == 777605000,
		  "asctime pads a one-digit day with a space");
	check(policy_retry_after_ms(NULL, "Wed, 25-Nov-26 01:00:09 GMT", now) == -1 &&
		  policy_retry_after_ms(NULL, "Wednesday, 25 Nov 2026 01:00:09 GMT", now) == -1 &&
		  policy_retry_after_ms(NULL, "Wed Nov 25 01:00:05 2026 GMT", now) == -1,
		  "mixed date forms are refused");
}

/* What follows an attempt. */
static void
test_decide(void)
{
	RetrySettings settings = {2, 500, 8000, 60000};
	RetryDecision d;

	d = policy_decide(CLASS_SUCCESS, false, 0, -1, &settings, 0.0, 1000, true);
	check(d.outcome == OUTCOME_SUCCESS, "success ends the call");

	d = policy_decide(CLASS_HTTP_5XX, true, 0, -1, &settings, 0.0, 600000, true);
	check(d.outcome == OUTCOME_RETRY && d.wait_ms == 500, "first 5xx retries after the base");
	d = policy_decide(CLASS_HTTP_5XX, true, 1, -1, &settings, 0.0, 600000, true);
	check(d.outcome == OUTCOME_RETRY && d.wait_ms == 1000, "second 5xx retries after 2x base");
	d = policy_decide(CLASS_HTTP_5XX, true, 2, -1, &settings, 0.0, 600000, true);
	check(d.outcome == OUTCOME_FALLBACK, "retries used up: fall back");
	d = policy_decide(CLASS_HTTP_5XX, true, 2, -1, &settings, 0.0, 600000, false);
	check(d.outcome == OUTCOME_FAILED, "retries used up on the last route: fail");

	d = policy_decide(CLASS_AUTH, false, 0, -1, &settings, 0.0, 600000, true);
	check(d.outcome == OUTCOME_FALLBACK, "auth falls back at once");
	d = policy_decide(CLASS_CONTEXT_LENGTH, false, 0, -1, &settings, 0.0, 600000, false);
	check(d.outcome == OUTCOME_FAILED, "context length on the last route fails");

	d = policy_decide(CLASS_RATE_LIMITED, true, 0, 3000, &settings, 0.0, 600000, true);
	check(d.outcome == OUTCOME_RETRY && d.wait_ms == 3000 && d.honoured_retry_after,
		  "Retry-After within the cap is honoured");
	d = policy_decide(CLASS_RATE_LIMITED, true, 0, 61000, &settings, 0.0, 600000, true);
	check(d.outcome == OUTCOME_FALLBACK && !d.honoured_retry_after,
		  "Retry-After over the cap moves to the next route without waiting");
	d = policy_decide(CLASS_RATE_LIMITED, true, 0, 5000, &settings, 0.0, 4000, true);
	check(d.outcome == OUTCOME_FALLBACK, "a wait past the deadline is not taken");
	d = policy_decide(CLASS_HTTP_5XX, true, 0, -1, &settings, 0.0, 400, false);
	check(d.outcome == OUTCOME_FAILED, "a backoff past the deadline on the last route fails");
	d = policy_decide(CLASS_HTTP_5XX, true, 0, -1, &settings, 0.0, 0, true);
	check(d.outcome == OUTCOME_FAILED, "no time left: fail even with routes left");
	d = policy_decide(CLASS_DEADLINE, false, 0, -1, &settings, 0.0, 10, true);
	check(d.outcome == OUTCOME_FAILED, "a deadline attempt ends the call");

	settings.max_retries = 0;
	d = policy_decide(CLASS_HTTP_5XX, true, 0, -1, &settings, 0.0, 600000, true);
	check(d.outcome == OUTCOME_FALLBACK, "max_retries 0 falls back at once");
	settings.max_retries = 2;
	settings.retry_after_max_ms = 0;
	d = policy_decide(CLASS_RATE_LIMITED, true, 0, 1000, &settings, 0.0, 600000, true);
	check(d.outcome == OUTCOME_FALLBACK, "retry_after_max 0 never waits for Retry-After");
}

/* Which timer a libcurl timeout was, from the attempt's bounds. */
static void
test_timer_fired(void)
{
	RetrySettings settings = {2, 500, 8000, 60000};
	bool		retryable;
	AttemptClass cls;
	RetryDecision d;

	check(timer_fired(1000, 120000, 30000, false) == TRANSPORT_CONNECT_TIMEOUT,
		  "connect 1 s, deadline 30 s, not connected: the connect timer fired");
	cls = classify_transport(timer_fired(1000, 120000, 30000, false), &retryable);
	d = policy_decide(cls, retryable, 2, -1, &settings, 0.0, 29000, true);
	check(cls == CLASS_CONNECT_TIMEOUT && d.outcome == OUTCOME_FALLBACK,
		  "a connect timeout well within the deadline falls back once retries are used");
	check(timer_fired(5000, 120000, 300, false) == TRANSPORT_DEADLINE,
		  "deadline shorter than connect_timeout: the deadline fired while connecting");
	check(timer_fired(5000, 200, 30000, false) == TRANSPORT_TIMEOUT,
		  "request_timeout shorter than connect_timeout: the attempt's timer fired while connecting");
	check(timer_fired(1000, 1000, 30000, false) == TRANSPORT_CONNECT_TIMEOUT,
		  "connect and attempt timers equal while connecting: a connect timeout");
	check(timer_fired(1000, 20000, 30000, true) == TRANSPORT_TIMEOUT,
		  "connected: the connect timer is over, the attempt's fired");
	check(timer_fired(1000, 120000, 300, true) == TRANSPORT_DEADLINE,
		  "connected, deadline sooner than request_timeout: the deadline fired");
	check(timer_fired(1000, 30000, 30000, true) == TRANSPORT_DEADLINE &&
		  timer_fired(1000, 1000, 1000, false) == TRANSPORT_DEADLINE,
		  "on a tie the deadline wins: the call has no time left");
}

/* Route order: model by model, endpoint by endpoint. */
static void
test_routes(void)
{
	int			model,
				endpoint;

	policy_route_at(0, 2, &model, &endpoint);
	check(model == 0 && endpoint == 0, "route 0 is model 1 on endpoint 1");
	policy_route_at(1, 2, &model, &endpoint);
	check(model == 0 && endpoint == 1, "route 1 is model 1 on endpoint 2");
	policy_route_at(2, 2, &model, &endpoint);
	check(model == 1 && endpoint == 0, "route 2 is model 2 on endpoint 1");
	check(strcmp(policy_outcome_name(OUTCOME_FALLBACK), "fallback") == 0 &&
		  strcmp(policy_class_name(CLASS_RATE_LIMITED), "rate_limited") == 0 &&
		  policy_class_name(CLASS_SUCCESS) == NULL,
		  "names of outcomes and classes");
}

int
main(void)
{
	test_classify();
	test_timer_fired();
	test_backoff();
	test_retry_after();
	test_decide();
	test_stream_next();
	test_gateway_errors();
	test_routes();
	return checks_done();
}
