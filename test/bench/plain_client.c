/*-------------------------------------------------------------------------
 *
 * plain_client.c
 *	  The baseline of benchmark B1: the same chat POSTs that ai_chat sends,
 *	  from a plain libcurl program, so that what ai_chat adds per call can be
 *	  told apart from what HTTP and the simulator cost anyway.
 *
 * One easy handle is reused for every request, so libcurl keeps the
 * connection alive, as the extension's per-backend multi handle does.  The
 * requests match the extension's (src/transport.c and src/openai_wire.c):
 * the same URL, headers, User-Agent, Accept-Encoding and body,
 *
 *	  {"model":"ok","messages":[{"role":"user","content":"bench prompt N"}]}
 *
 * for N = 1..count, the body the SQL side builds for 'bench prompt ' || i.
 * Each response is read whole into a buffer and must be a 200.
 *
 * usage: plain_client URL API_KEY COUNT [WARMUP]
 *	  URL	  the chat-completions URL, e.g. http://127.0.0.1:PORT/v1/chat/completions
 *	  WARMUP  untimed requests sent first (default 100), which open the
 *			  connection as the SQL side's warm-up does
 *
 * Prints one line:
 *	  n COUNT median_us M mean_us A total_ms T
 * where M and A are the median and mean wall time of one request, from
 * before curl_easy_perform to after it returned with the whole body.
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#ifndef PGAIR_VERSION
#define PGAIR_VERSION "unknown"
#endif

/* A response body, grown as libcurl hands it over. */
typedef struct Body
{
	char	   *data;
	size_t		len;
	size_t		capacity;
} Body;

static size_t on_body(char *data, size_t size, size_t nmemb, void *userdata);
static double now_us(void);
static int	compare_doubles(const void *a, const void *b);
static void die(const char *what, const char *detail);

int
main(int argc, char **argv)
{
	const char *url;
	const char *api_key;
	long		count;
	long		warmup = 100;
	char		auth[512];
	char		body[256];
	struct curl_slist *headers = NULL;
	CURL	   *easy;
	Body		response = {NULL, 0, 0};
	double	   *times;
	double		sum = 0;
	double		median;
	long		i;

	if (argc < 4 || argc > 5)
	{
		fprintf(stderr, "usage: %s URL API_KEY COUNT [WARMUP]\n", argv[0]);
		return 2;
	}
	url = argv[1];
	api_key = argv[2];
	count = strtol(argv[3], NULL, 10);
	if (argc == 5)
		warmup = strtol(argv[4], NULL, 10);
	if (count < 1 || warmup < 0)
		die("bad arguments", "COUNT must be at least 1, WARMUP at least 0");

	times = malloc(sizeof(double) * count);
	if (times == NULL)
		die("out of memory", "");

	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		die("curl_global_init failed", "");
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", api_key);
	headers = curl_slist_append(headers, "Content-Type: application/json");
	headers = curl_slist_append(headers, "Accept: application/json");
	/* as the extension: no waiting for "100 Continue" */
	headers = curl_slist_append(headers, "Expect:");
	headers = curl_slist_append(headers, auth);
	easy = curl_easy_init();
	if (headers == NULL || easy == NULL)
		die("could not set up libcurl", "");

	/* the options src/transport.c sets, less its per-request reset */
	curl_easy_setopt(easy, CURLOPT_URL, url);
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(easy, CURLOPT_POST, 1L);
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(easy, CURLOPT_USERAGENT, "pg_ai_resilience/" PGAIR_VERSION);
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(easy, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, &response);

	for (i = -warmup; i < count; i++)
	{
		/* warm-up requests reuse the numbers of the timed ones */
		long		n = (i < 0 ? i + warmup : i) + 1;
		int			len;
		long		status = 0;
		double		start;
		CURLcode	rc;

		len = snprintf(body, sizeof(body),
					   "{\"model\":\"ok\",\"messages\":[{\"role\":\"user\","
					   "\"content\":\"bench prompt %ld\"}]}", n);
		curl_easy_setopt(easy, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) len);
		response.len = 0;

		start = now_us();
		rc = curl_easy_perform(easy);
		if (i >= 0)
			times[i] = now_us() - start;

		if (rc != CURLE_OK)
			die("request failed", curl_easy_strerror(rc));
		curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
		if (status != 200 || response.len == 0)
		{
			fprintf(stderr, "plain_client: HTTP %ld: %.*s\n", status,
					(int) response.len, response.data ? response.data : "");
			return 1;
		}
	}

	for (i = 0; i < count; i++)
		sum += times[i];
	qsort(times, count, sizeof(double), compare_doubles);
	median = count % 2 ? times[count / 2] :
		(times[count / 2 - 1] + times[count / 2]) / 2;
	printf("n %ld median_us %.2f mean_us %.2f total_ms %.2f\n",
		   count, median, sum / count, sum / 1000);

	curl_easy_cleanup(easy);
	curl_slist_free_all(headers);
	curl_global_cleanup();
	free(response.data);
	free(times);
	return 0;
}

/* libcurl callback: append response bytes to the Body. */
static size_t
on_body(char *data, size_t size, size_t nmemb, void *userdata)
{
	Body	   *body = userdata;
	size_t		len = size * nmemb;

	if (body->len + len > body->capacity)
	{
		size_t		capacity = body->capacity ? body->capacity : 4096;
		char	   *grown;

		while (capacity < body->len + len)
			capacity *= 2;
		grown = realloc(body->data, capacity);
		if (grown == NULL)
			return 0;			/* makes libcurl fail the transfer */
		body->data = grown;
		body->capacity = capacity;
	}
	memcpy(body->data + body->len, data, len);
	body->len += len;
	return len;
}

/* Monotonic clock in microseconds. */
static double
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

/* qsort comparator for doubles, ascending. */
static int
compare_doubles(const void *a, const void *b)
{
	double		x = *(const double *) a;
	double		y = *(const double *) b;

	return (x > y) - (x < y);
}

/* Print an error and exit. */
static void
die(const char *what, const char *detail)
{
	fprintf(stderr, "plain_client: %s%s%s\n", what, *detail ? ": " : "", detail);
	exit(1);
}
