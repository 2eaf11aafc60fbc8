/*-------------------------------------------------------------------------
 *
 * policy.c
 *	  Pure retry and fallback decisions.
 *
 * One rule holds it together: a retry goes to the same route and only after
 * a transient error; a fallback goes to the next route after any error.  The
 * defaults follow the OpenAI SDKs (2 retries, backoff 0.5 s doubling to 8 s
 * with up to 25 % jitter, Retry-After honoured up to a cap) and LiteLLM
 * (client errors are never retried on the same route; a billing 429 is not a
 * rate limit).
 *
 * This file deliberately includes no PostgreSQL or libcurl header: it is
 * compiled into the extension and, unchanged, into test/unit/test_policy.
 *
 *-------------------------------------------------------------------------
 */
#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "policy.h"

static bool text_contains_nocase(const char *haystack, const char *needle);
static bool is_billing_code(const char *code);
static bool code_rewritten(const char *code);
static bool decimal_number(const char *text, bool allow_fraction,
						   double *value);
static int	month_number(const char *name);
static int64_t parse_http_date(const char *text, time_t now);

/* Names stored in ai_call_log.error_class, indexed by AttemptClass. */
static const char *const class_names[] = {
	[CLASS_SUCCESS] = NULL,
	[CLASS_CONNECT] = "connect",
	[CLASS_CONNECT_TIMEOUT] = "connect_timeout",
	[CLASS_FIRST_BYTE_TIMEOUT] = "first_byte_timeout",
	[CLASS_IDLE_TIMEOUT] = "idle_timeout",
	[CLASS_TIMEOUT] = "timeout",
	[CLASS_RESET] = "reset",
	[CLASS_TRANSPORT] = "transport",
	[CLASS_HTTP_5XX] = "http_5xx",
	[CLASS_RATE_LIMITED] = "rate_limited",
	[CLASS_QUOTA] = "quota",
	[CLASS_AUTH] = "auth",
	[CLASS_BAD_REQUEST] = "bad_request",
	[CLASS_NOT_FOUND] = "not_found",
	[CLASS_CONTEXT_LENGTH] = "context_length",
	[CLASS_CONTENT_POLICY] = "content_policy",
	[CLASS_HTTP_4XX] = "http_4xx",
	[CLASS_BAD_RESPONSE] = "bad_response",
	[CLASS_STREAM_ERROR] = "stream_error",
	[CLASS_STREAM_CUT] = "stream_cut",
	[CLASS_DEADLINE] = "deadline",
	[CLASS_CANCELLED] = "cancelled",
};

/* Names stored in ai_call_log.outcome, indexed by AttemptOutcome. */
static const char *const outcome_names[] = {
	[OUTCOME_SUCCESS] = "success",
	[OUTCOME_RETRY] = "retry",
	[OUTCOME_FALLBACK] = "fallback",
	[OUTCOME_FAILED] = "failed",
};

/*
 * Which of an attempt's timers fired, given that libcurl reported a timeout
 * and whether the connection was up by then.  Before that, every bound runs
 * (libcurl counts name resolution and the TLS handshake as connecting);
 * after it, the connect timer no longer does.  On a tie the deadline wins:
 * the call has no time left, whatever else also ran out.
 */
TransportFailure
policy_timer_fired(const AttemptTimers *timers, bool connected)
{
	long		other = timers->attempt_ms;

	if (!connected && timers->connect_ms < other)
		other = timers->connect_ms;
	if (timers->deadline_ms <= other)
		return TRANSPORT_DEADLINE;
	if (!connected && timers->connect_ms <= timers->attempt_ms)
		return TRANSPORT_CONNECT_TIMEOUT;
	return TRANSPORT_TIMEOUT;
}

/*
 * Classify a finished attempt, and say whether the same route may be tried
 * again.  An x-should-retry header from the server overrides the status rule
 * both ways, as in the OpenAI SDKs.  A gateway that rewrites errors (LiteLLM
 * puts the status in error.code and nulls error.type) leaves the meaning in
 * the message only: when the code is missing or a number, the message's
 * words decide between a rate limit and an empty account, and find a
 * content-policy refusal, LiteLLM's exception names included.
 */
AttemptClass
policy_classify(const AttemptFacts *facts, bool *retryable)
{
	AttemptClass cls;
	int			status = facts->http_status;

	*retryable = false;

	switch (facts->transport)
	{
		case TRANSPORT_OK:
			break;
		case TRANSPORT_CONNECT:
			*retryable = true;
			return CLASS_CONNECT;
		case TRANSPORT_CONNECT_TIMEOUT:
			*retryable = true;
			return CLASS_CONNECT_TIMEOUT;
		case TRANSPORT_TIMEOUT:
			*retryable = true;
			return CLASS_TIMEOUT;
		case TRANSPORT_DEADLINE:
			/* the call's time is up: neither a retry nor a fallback */
			return CLASS_DEADLINE;
		case TRANSPORT_FIRST_BYTE_TIMEOUT:
			*retryable = true;
			return CLASS_FIRST_BYTE_TIMEOUT;
		case TRANSPORT_IDLE_TIMEOUT:
			*retryable = true;
			return CLASS_IDLE_TIMEOUT;
		case TRANSPORT_RESET:
			*retryable = true;
			/* a stream that began well and broke off is a cut stream */
			if (facts->streaming && status >= 200 && status < 300)
				return CLASS_STREAM_CUT;
			return CLASS_RESET;
		case TRANSPORT_TOO_LARGE:
			/* the same request would bring the same oversized answer */
			return CLASS_BAD_RESPONSE;
		case TRANSPORT_OTHER:
			*retryable = true;
			return CLASS_TRANSPORT;
	}

	if (status >= 200 && status < 300)
	{
		if (facts->answer_ok)
			return CLASS_SUCCESS;
		/* a broken stream or body: an upstream failure, worth another try */
		if (facts->stream_failure == STREAM_ERROR_EVENT)
			cls = CLASS_STREAM_ERROR;
		else if (facts->stream_failure == STREAM_CUT)
			cls = CLASS_STREAM_CUT;
		else
			cls = CLASS_BAD_RESPONSE;
		*retryable = true;
	}
	else if (status == 408 || status == 504 || status == 524)
	{
		/* 524: Cloudflare got no response byte from the origin in 100 s */
		cls = CLASS_TIMEOUT;
		*retryable = true;
	}
	else if (status == 429)
	{
		if (is_billing_code(facts->error_code) ||
			is_billing_code(facts->error_type) ||
			(code_rewritten(facts->error_code) &&
			 (text_contains_nocase(facts->error_message, "exceeded your current quota") ||
			  text_contains_nocase(facts->error_message, "insufficient_quota"))))
			cls = CLASS_QUOTA;
		else
		{
			cls = CLASS_RATE_LIMITED;
			*retryable = true;
		}
	}
	else if (status >= 500)
	{
		cls = CLASS_HTTP_5XX;
		*retryable = true;
	}
	else if (status == 401 || status == 403)
		cls = CLASS_AUTH;
	else if (status == 402)
		cls = CLASS_QUOTA;
	else if (status == 404)
		cls = CLASS_NOT_FOUND;
	else if (status == 409)
	{
		/* a conflict (e.g. a lock upstream) clears by itself */
		cls = CLASS_HTTP_4XX;
		*retryable = true;
	}
	else if (status == 400 || status == 413 || status == 422)
	{
		if ((facts->error_code &&
			 strcmp(facts->error_code, "context_length_exceeded") == 0) ||
			text_contains_nocase(facts->error_message, "context length") ||
			text_contains_nocase(facts->error_message, "prompt is too long") ||
			text_contains_nocase(facts->error_message, "ContextWindowExceededError"))
			cls = CLASS_CONTEXT_LENGTH;
		else if ((facts->error_code &&
				  (strcmp(facts->error_code, "content_policy_violation") == 0 ||
				   strcmp(facts->error_code, "content_filter") == 0)) ||
				 (code_rewritten(facts->error_code) &&
				  (text_contains_nocase(facts->error_message, "ContentPolicyViolationError") ||
				   text_contains_nocase(facts->error_message, "content_policy_violation") ||
				   text_contains_nocase(facts->error_message, "content management policy"))))
			cls = CLASS_CONTENT_POLICY;
		else
			cls = CLASS_BAD_REQUEST;
	}
	else if (status >= 400)
		cls = CLASS_HTTP_4XX;
	else
	{
		/* 1xx final, 3xx: nothing we can use; redirects are not followed */
		cls = CLASS_BAD_RESPONSE;
	}

	if (facts->should_retry)
	{
		if (strcmp(facts->should_retry, "true") == 0)
			*retryable = true;
		else if (strcmp(facts->should_retry, "false") == 0)
			*retryable = false;
	}
	return cls;
}

/*
 * Backoff before retry number retries_taken + 1 on a route:
 * min(base * 2^retries_taken, max), reduced by up to 25 % of jitter.
 * random_fraction is uniform in [0, 1).
 */
int
policy_backoff_ms(const RetrySettings *settings, int retries_taken,
				  double random_fraction)
{
	double		wait = settings->backoff_base_ms;
	int			i;

	for (i = 0; i < retries_taken && wait < settings->backoff_max_ms; i++)
		wait *= 2;
	if (wait > settings->backoff_max_ms)
		wait = settings->backoff_max_ms;
	wait *= 1.0 - 0.25 * random_fraction;
	return (int) lround(wait);
}

/*
 * The server's requested wait in milliseconds, or -1 when it asked for none.
 * retry-after-ms (float milliseconds) wins over Retry-After (seconds or an
 * HTTP date).  Zero, negative and unparsable values are ignored, and the
 * next header is read: unlike the OpenAI SDKs, which stop at a zero
 * retry-after-ms and back off, "retry-after-ms: 0" with "Retry-After: 2"
 * waits 2 s (README, "Where we differ from the OpenAI SDKs").  Only decimal
 * notation counts as a number: strtod alone would also read "0x2", "inf"
 * or " 2".
 */
int
policy_retry_after_ms(const char *retry_after_ms_header,
					  const char *retry_after_header, time_t now)
{
	double		value;

	if (retry_after_ms_header &&
		decimal_number(retry_after_ms_header, true, &value) && value > 0)
		return value >= INT_MAX ? INT_MAX : (int) ceil(value);

	if (retry_after_header && *retry_after_header)
	{
		int64_t		when;

		/* delay-seconds is 1*DIGIT (RFC 9110 section 10.2.3) */
		if (decimal_number(retry_after_header, false, &value))
		{
			if (value > 0)
				return value >= INT_MAX / 1000.0 ? INT_MAX :
					(int) ceil(value * 1000.0);
			return -1;
		}
		when = parse_http_date(retry_after_header, now);
		if (when > (int64_t) now)
		{
			int64_t		ms = (when - (int64_t) now) * 1000;

			return ms >= INT_MAX ? INT_MAX : (int) ms;
		}
	}
	return -1;
}

/*
 * The wait a 429's message asks for, in milliseconds, or -1: LiteLLM's
 * router says "No deployments available ... Try again in 60 seconds" and
 * sends no Retry-After.  Read only when no header asked for a wait; the
 * result is capped by retry_after_max as a header's would be.  Understood:
 * "try again in N" followed by "ms", "s", "sec" or "second(s)".
 */
int
policy_retry_after_in_message(int http_status, const char *message)
{
	static const char phrase[] = "try again in ";
	const char *p;
	const char *number;
	char		digits[32];
	double		value;
	size_t		len;

	if (http_status != 429 || message == NULL)
		return -1;
	for (p = message; *p; p++)
		if (strncasecmp(p, phrase, sizeof(phrase) - 1) == 0)
			break;
	if (*p == '\0')
		return -1;
	number = p + sizeof(phrase) - 1;
	len = strspn(number, "0123456789.");
	if (len == 0 || len >= sizeof(digits))
		return -1;
	memcpy(digits, number, len);
	digits[len] = '\0';
	if (!decimal_number(digits, true, &value) || value <= 0)
		return -1;
	p = number + len;
	while (*p == ' ')
		p++;
	if (strncasecmp(p, "ms", 2) == 0)
		return value >= INT_MAX ? INT_MAX : (int) ceil(value);
	if (strncasecmp(p, "s", 1) == 0)
		return value >= INT_MAX / 1000.0 ? INT_MAX : (int) ceil(value * 1000.0);
	return -1;
}

/*
 * Read text as a number written in decimal: digits, and with
 * allow_fraction an optional fraction and exponent ("12.5", "1e3").  No
 * sign, no white space, no hexadecimal, infinity or NaN.  Returns whether
 * all of text is such a number, and its value in *value.
 */
static bool
decimal_number(const char *text, bool allow_fraction, double *value)
{
	const char *p = text;

	if (!isdigit((unsigned char) *p))
		return false;
	while (isdigit((unsigned char) *p))
		p++;
	if (allow_fraction && *p == '.')
	{
		p++;
		while (isdigit((unsigned char) *p))
			p++;
	}
	if (allow_fraction && (*p == 'e' || *p == 'E'))
	{
		p++;
		if (*p == '+' || *p == '-')
			p++;
		if (!isdigit((unsigned char) *p))
			return false;
		while (isdigit((unsigned char) *p))
			p++;
	}
	if (*p != '\0')
		return false;
	*value = strtod(text, NULL);
	return true;
}

/*
 * Decide what follows an attempt of class cls.
 *
 * retries_taken counts the retries already made on this route; retry_after_ms
 * is -1 or the server's requested wait; ms_left is what remains of the
 * call's deadline; route_left says whether another route follows.  A wait the
 * server asks for beyond retry_after_max_ms, or any wait that would pass the
 * deadline, is not taken: the call moves to the next route at once.
 */
RetryDecision
policy_decide(AttemptClass cls, bool retryable, int retries_taken,
			  int retry_after_ms, const RetrySettings *settings,
			  double random_fraction, int64_t ms_left, bool route_left)
{
	RetryDecision decision = {OUTCOME_FAILED, 0, false};

	if (cls == CLASS_SUCCESS)
	{
		decision.outcome = OUTCOME_SUCCESS;
		return decision;
	}
	if (cls == CLASS_DEADLINE || cls == CLASS_CANCELLED || ms_left <= 0)
		return decision;

	if (retryable && retries_taken < settings->max_retries)
	{
		int			wait;

		if (retry_after_ms > 0)
		{
			wait = retry_after_ms;
			decision.honoured_retry_after = true;
			if (wait > settings->retry_after_max_ms)
				wait = -1;
		}
		else
			wait = policy_backoff_ms(settings, retries_taken, random_fraction);

		if (wait >= 0 && wait < ms_left)
		{
			decision.outcome = OUTCOME_RETRY;
			decision.wait_ms = wait;
			return decision;
		}
		decision.honoured_retry_after = false;
	}

	decision.outcome = route_left ? OUTCOME_FALLBACK : OUTCOME_FAILED;
	return decision;
}

/*
 * Should the next attempt on a route stream?  A non-streaming attempt that
 * got no response in time (a gateway's 524, or our first-byte timeout) is
 * likely a long generation cut by a proxy's read timeout; streaming keeps
 * bytes flowing through it.  A 408 counts as a 524: LiteLLM turns the
 * upstream's 524 into one, and an OpenAI-compatible server has no other
 * reason to time out a request it has read whole.  A streamed attempt that such a switch started
 * and that got an HTTP error status (so no event at all) goes back to the
 * route's default: the error is not the stream's doing, and the route may
 * not stream well.  Otherwise the attempt's own choice stands.
 */
bool
policy_stream_next(AttemptClass cls, int http_status, bool was_streaming,
				   bool stream_by_default, bool stream_on_timeout)
{
	if (stream_on_timeout &&
		(cls == CLASS_FIRST_BYTE_TIMEOUT ||
		 (cls == CLASS_TIMEOUT && (http_status == 524 || http_status == 408))))
		return true;
	if (was_streaming && http_status > 0 &&
		(http_status < 200 || http_status >= 300))
		return stream_by_default;
	return was_streaming;
}

/*
 * Map a route index to (model, endpoint).  Routes go model by model in the
 * caller's order, and within a model endpoint by endpoint in the order of
 * ai_resilience.endpoints: the preferred model is tried on every gateway
 * before a lesser model is.
 */
void
policy_route_at(int route_index, int nendpoints, int *model_index,
				int *endpoint_index)
{
	*model_index = route_index / nendpoints;
	*endpoint_index = route_index % nendpoints;
}

/* The name of an error class, or NULL for success. */
const char *
policy_class_name(AttemptClass cls)
{
	return class_names[cls];
}

/* The name of an outcome. */
const char *
policy_outcome_name(AttemptOutcome outcome)
{
	return outcome_names[outcome];
}

/* Case-insensitive substring test; a NULL haystack contains nothing. */
static bool
text_contains_nocase(const char *haystack, const char *needle)
{
	size_t		n = strlen(needle);

	if (haystack == NULL)
		return false;
	for (; *haystack; haystack++)
		if (strncasecmp(haystack, needle, n) == 0)
			return true;
	return false;
}

/* Is this an error code or type meaning "no money left", not "slow down"? */
static bool
is_billing_code(const char *code)
{
	static const char *const billing_codes[] = {
		"insufficient_quota", "billing_hard_limit_reached",
		"billing_not_active", "quota_exceeded"
	};
	size_t		i;

	if (code == NULL)
		return false;
	for (i = 0; i < sizeof(billing_codes) / sizeof(billing_codes[0]); i++)
		if (strcmp(code, billing_codes[i]) == 0)
			return true;
	return false;
}

/*
 * Is an error code missing, or only a number (a gateway's rewrite of the
 * status), so that it says nothing of the error's kind?
 */
static bool
code_rewritten(const char *code)
{
	if (code == NULL || *code == '\0')
		return true;
	for (; *code; code++)
		if (!isdigit((unsigned char) *code))
			return false;
	return true;
}

/* The number (1-12) of an English month abbreviation, or 0. */
static int
month_number(const char *name)
{
	static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
	const char *found;

	if (strlen(name) != 3)
		return 0;
	found = strstr(months, name);
	if (found == NULL || (found - months) % 3 != 0)
		return 0;
	return (int) (found - months) / 3 + 1;
}

/*
 * Parse an HTTP-date into seconds since the epoch; -1 if malformed.  RFC
 * 9110 section 5.6.7 has recipients accept three forms:
 *	IMF-fixdate	"Sun, 06 Nov 1994 08:49:37 GMT" (what senders must use)
 *	RFC 850		"Sunday, 06-Nov-94 08:49:37 GMT"
 *	asctime		"Sun Nov  6 08:49:37 1994"
 * An RFC 850 two-digit year more than 50 years after now's year is taken
 * from the century before, as the RFC asks.
 */
static int64_t
parse_http_date(const char *text, time_t now)
{
	char		weekday[10],
				month[4],
				zone[4];
	int			day,
				year,
				hour,
				minute,
				second,
				consumed = 0;
	int			m;
	int64_t		y,
				era,
				yoe,
				doy,
				doe,
				days;

	if (sscanf(text, "%3[A-Za-z], %2d %3s %4d %2d:%2d:%2d %3s%n", weekday,
			   &day, month, &year, &hour, &minute, &second, zone,
			   &consumed) == 8 && text[consumed] == '\0' &&
		strlen(weekday) == 3)
	{
		/* IMF-fixdate: nothing more to do */
	}
	else if (sscanf(text, "%9[A-Za-z], %2d-%3[A-Za-z]-%2d %2d:%2d:%2d %3s%n",
					weekday, &day, month, &year, &hour, &minute, &second,
					zone, &consumed) == 8 && text[consumed] == '\0' &&
			 strlen(weekday) >= 6)
	{
		/* RFC 850: the year has two digits */
		struct tm	today;
		int			century;

		if (gmtime_r(&now, &today) == NULL)
			return -1;
		century = (today.tm_year + 1900) / 100 * 100;
		year += century;
		if (year > today.tm_year + 1900 + 50)
			year -= 100;
	}
	else if (sscanf(text, "%3[A-Za-z] %3[A-Za-z] %2d %2d:%2d:%2d %4d%n",
					weekday, month, &day, &hour, &minute, &second, &year,
					&consumed) == 7 && text[consumed] == '\0' &&
			 strlen(weekday) == 3)
		strcpy(zone, "GMT");	/* asctime: always GMT */
	else
		return -1;

	m = month_number(month);
	if (m == 0 || strcmp(zone, "GMT") != 0 ||
		day < 1 || day > 31 || hour < 0 || hour > 23 || minute < 0 ||
		minute > 59 || second < 0 || second > 60 || year < 1970)
		return -1;

	/* days since 1970-01-01 of a proleptic Gregorian date */
	y = year - (m <= 2);
	era = y / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + day - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	days = era * 146097 + doe - 719468;
	return days * 86400 + hour * 3600 + minute * 60 + second;
}
