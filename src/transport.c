/*-------------------------------------------------------------------------
 *
 * transport.c
 *	  HTTP requests over libcurl's multi interface, waited on with the latch.
 *
 * Requests are the chat POSTs and, for ai_probe (probe.c), a GET of an
 * endpoint's model list on a connection of its own, whose set-up times
 * (name resolution, TCP, TLS) are reported.
 *
 * Each backend has one CURLM handle for its whole life: its connection cache
 * keeps connections alive between calls, and any number of requests can be
 * in flight at once.  Easy handles are pooled and reset between requests.
 *
 * Waiting: libcurl tells us, through its socket callback, which sockets it
 * wants watched; we keep them in a private epoll set.  That epoll descriptor,
 * the process latch and postmaster death form one WaitEventSet built once, so
 * one WaitEventSetWait sleeps until a socket is ready, curl's timer is due,
 * the caller's own timeout passes, or an interrupt arrives.  Query cancel and
 * statement_timeout set the latch, and CHECK_FOR_INTERRUPTS then raises the
 * standard error (57014) from our own code, never from inside libcurl.
 *
 * Timers: a request has five, and one that ends by a timer says which as
 * its failure: connect (name resolution and TLS included), first byte,
 * idle, the whole attempt, and the caller's deadline.  libcurl enforces the
 * connect and whole-attempt timeouts, each cut to the deadline; when it
 * reports a timeout, policy_timer_fired tells from the bounds which one it
 * was.  The first-byte and idle timeouts are ours: every wait is bounded by
 * the nearest of them, and a request past one is taken out of the multi
 * handle and returned as finished with that failure.
 *
 * Name resolution runs in libcurl's resolver thread (checked at first use)
 * under the connect timeout.  Removing a handle whose resolution is still
 * under way would wait for that thread, that is for the system resolver's
 * own timeout (tens of seconds against a name server that never answers),
 * whether the removal follows a timeout, a cancel or an error; with
 * CURLOPT_QUICK_EXIT libcurl leaves the thread to finish and free itself
 * instead, so every bound and every cancel holds during resolution too.
 * libcurl starts those threads inside curl_multi_socket_action, which runs
 * with every signal blocked so that the threads inherit a full mask: a
 * PostgreSQL signal handler (SIGALRM's timeout code above all) must run in
 * the backend's own thread, never beside it.
 *
 * Streaming: a caller may read a request's body while it is in flight
 * (between two transport_wait calls) and drop what it has used with
 * transport_consume, so a long stream never holds its whole body, and may
 * end it with transport_finish_early once it has all it needs.
 *
 * Callback rules: libcurl calls back into this file (socket, timer, write,
 * header) from inside curl_multi_socket_action.  Those callbacks never
 * ereport, never palloc without MCXT_ALLOC_NO_OOM, and record failures in
 * plain variables that transport_wait reports afterwards.  libcurl allocates
 * with malloc, as it does by default.
 *
 * Errors: a caller that catches an error while requests are in flight must
 * call transport_abort_all before the requests' memory goes away.
 *
 * Linux only: the socket set is an epoll instance.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <pthread.h>
#include <signal.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <curl/curl.h>

#include "libpq/pqsignal.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "transport.h"

StaticAssertDecl(TRANSPORT_ERROR_SIZE >= CURL_ERROR_SIZE,
				 "error buffer smaller than libcurl requires");

/* Most socket readiness events taken from epoll in one go. */
#define EPOLL_BATCH		64

/* A response buffer larger than this is freed once it is empty. */
#define TRANSPORT_KEEP_BUFFER	(64 * 1024)

/* User-Agent sent with every request. */
#define AIR_USER_AGENT	"pg_ai_resilience/" PGAIR_VERSION

/*---- Per-backend state ----*/

static CURLM *air_multi = NULL;
static int	air_epoll_fd = -1;
static WaitEventSet *air_wait_set = NULL;

/* Requests added to air_multi and not yet finished or aborted. */
static dlist_head air_in_flight = DLIST_STATIC_INIT(air_in_flight);
static int	air_in_flight_count = 0;

/* Easy handles ready for reuse. */
static CURL **air_idle_handles = NULL;
static int	air_idle_count = 0;
static int	air_idle_capacity = 0;

/* When libcurl wants curl_multi_socket_action(CURL_SOCKET_TIMEOUT). */
static bool air_timer_armed = false;
static TimestampTz air_timer_due = 0;

/* errno of an epoll_ctl that failed inside the socket callback, or 0. */
static int	air_callback_errno = 0;

static void transport_init(void);
static TimestampTz stall_time(const TransportRequest *request);
static long ms_until_next_stall(TimestampTz now);
static int	expire_stalled(TransportRequest **finished, int max_finished);
static CURL *take_easy_handle(void);
static void release_easy_handle(TransportRequest *request);
static void finish_request(TransportRequest *request, CURLcode result);
static void note_timer_fired(TransportRequest *request, bool connected,
							 bool resolved);
static int	collect_finished(TransportRequest **finished, int max_finished);
static void drive_ready_sockets(void);
static void socket_action(curl_socket_t sock, int flags);
static int	on_socket(CURL *easy, curl_socket_t sock, int what, void *multi_data,
					  void *socket_data);
static int	on_timer(CURLM *multi, long timeout_ms, void *data);
static size_t on_body(char *data, size_t size, size_t nmemb, void *userdata);
static size_t on_header(char *data, size_t size, size_t nmemb, void *userdata);
static void copy_header_value(char *dest, const char *value, size_t len);

/*
 * Start a POST, or a GET when request->body is NULL.  It runs as the caller
 * calls transport_wait, which hands it back when it is done.
 */
void
transport_start(TransportRequest *request)
{
	struct curl_slist *headers = NULL;
	struct curl_slist *grown;
	const char *const fixed_headers[] = {
		request->stream ? "Accept: text/event-stream" : "Accept: application/json",
		/* the rest describe a body: a GET has none */
		"Content-Type: application/json",
		/* a large body must not wait a second for "100 Continue" */
		"Expect:"
	};
	size_t		nfixed = request->body ? lengthof(fixed_headers) : 1;
	CURL	   *easy;
	CURLMcode	mrc;
	bool		out_of_memory = false;
	size_t		i;

	Assert(request->deadline_ms > 0);
	transport_init();
	request->node.next = request->node.prev = NULL;
	request->easy = NULL;

	for (i = 0; i < nfixed && !out_of_memory; i++)
	{
		grown = curl_slist_append(headers, fixed_headers[i]);
		if (grown == NULL)
			out_of_memory = true;
		else
			headers = grown;
	}
	if (!out_of_memory && request->api_key && *request->api_key)
	{
		char	   *auth = psprintf("Authorization: Bearer %s", request->api_key);

		grown = curl_slist_append(headers, auth);
		explicit_bzero(auth, strlen(auth));
		pfree(auth);
		if (grown == NULL)
			out_of_memory = true;
		else
			headers = grown;
	}
	if (!out_of_memory && request->extra_headers != NIL)
	{
		ListCell   *lc;

		foreach(lc, request->extra_headers)
		{
			grown = curl_slist_append(headers, lfirst(lc));
			if (grown == NULL)
			{
				out_of_memory = true;
				break;
			}
			headers = grown;
		}
	}
	if (out_of_memory)
	{
		curl_slist_free_all(headers);
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory building HTTP headers")));
	}

	easy = take_easy_handle();

	request->failure = TRANSPORT_OK;
	request->http_status = 0;
	request->error[0] = '\0';
	request->response = NULL;
	request->response_len = 0;
	request->response_capacity = 0;
	request->response_too_large = false;
	request->new_connection = false;
	request->elapsed_us = 0;
	request->unresolved = false;
	request->namelookup_us = 0;
	request->connect_us = 0;
	request->appconnect_us = 0;
	request->remote_ip[0] = '\0';
	request->retry_after[0] = '\0';
	request->retry_after_ms[0] = '\0';
	request->should_retry[0] = '\0';
	request->request_id[0] = '\0';
	request->litellm_call_id[0] = '\0';
	request->portkey_trace_id[0] = '\0';
	request->provider_request_id[0] = '\0';
	request->content_type[0] = '\0';
	request->status_seen = 0;
	request->started_at = GetCurrentTimestamp();
	request->first_byte_at = 0;
	request->last_byte_at = 0;
	request->easy = easy;
	request->header_list = headers;

	curl_easy_setopt(easy, CURLOPT_URL, request->url);
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
	if (request->body)
	{
		curl_easy_setopt(easy, CURLOPT_POST, 1L);
		curl_easy_setopt(easy, CURLOPT_POSTFIELDS, request->body);
		curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE,
						 (curl_off_t) request->body_len);
	}
	else
		curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L);
	if (request->fresh_connection)
	{
		curl_easy_setopt(easy, CURLOPT_FRESH_CONNECT, 1L);
		curl_easy_setopt(easy, CURLOPT_FORBID_REUSE, 1L);
	}
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(easy, CURLOPT_USERAGENT, AIR_USER_AGENT);
	curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS,
					 Min(request->connect_timeout_ms, request->deadline_ms));
	curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS,
					 Min(request->timeout_ms, request->deadline_ms));
	/* never SIGALRM: PostgreSQL owns the process's signals and timers */
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	/* never wait for a resolver thread on removal: see the file header */
	curl_easy_setopt(easy, CURLOPT_QUICK_EXIT, 1L);
	/*
	 * No CURLOPT_PIPEWAIT: it makes a transfer wait for a connection still
	 * being set up in case it can multiplex, which over HTTP/1.1 queues
	 * requests behind each other.  An established HTTP/2 connection is
	 * multiplexed anyway.
	 */
	curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(easy, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, request->error);
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, request);
	curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(easy, CURLOPT_HEADERDATA, request);
	curl_easy_setopt(easy, CURLOPT_PRIVATE, request);

	mrc = curl_multi_add_handle(air_multi, easy);
	if (mrc != CURLM_OK)
	{
		release_easy_handle(request);
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not start HTTP request: %s",
						curl_multi_strerror(mrc))));
	}
	dlist_push_tail(&air_in_flight, &request->node);
	air_in_flight_count++;

	/* send now rather than one wait later, when curl's 0 ms timer fires */
	air_timer_armed = false;
	socket_action(CURL_SOCKET_TIMEOUT, 0);
}

/*
 * Wait at most timeout_ms for requests to finish, and return up to
 * max_finished of them in finished[].  Returns 0 when the time passed
 * without one finishing.  Raises the standard error on query cancel,
 * statement_timeout and termination.
 */
int
transport_wait(long timeout_ms, TransportRequest **finished, int max_finished)
{
	int			nfinished;
	long		wait_ms = Max(timeout_ms, 0);
	bool		sockets_ready = true;	/* unless a wait says otherwise */

	CHECK_FOR_INTERRUPTS();
	transport_init();

	nfinished = collect_finished(finished, max_finished);
	if (nfinished > 0)
		return nfinished;

	if (air_timer_armed)
		wait_ms = Min(wait_ms, TimestampDifferenceMilliseconds(GetCurrentTimestamp(),
															   air_timer_due));
	wait_ms = Min(wait_ms, ms_until_next_stall(GetCurrentTimestamp()));

	if (wait_ms > 0)
	{
		WaitEvent	events[3];
		int			nevents;
		int			i;

		nevents = WaitEventSetWait(air_wait_set, wait_ms, events,
								   lengthof(events), PG_WAIT_EXTENSION);
		sockets_ready = false;
		for (i = 0; i < nevents; i++)
		{
			if (events[i].events & WL_LATCH_SET)
			{
				ResetLatch(MyLatch);
				CHECK_FOR_INTERRUPTS();
			}
			if (events[i].events & WL_SOCKET_READABLE)
				sockets_ready = true;
		}
	}

	if (sockets_ready)
		drive_ready_sockets();

	if (air_timer_armed && GetCurrentTimestamp() >= air_timer_due)
	{
		air_timer_armed = false;
		socket_action(CURL_SOCKET_TIMEOUT, 0);
	}

	if (air_callback_errno != 0)
	{
		int			saved_errno = air_callback_errno;

		air_callback_errno = 0;
		errno = saved_errno;
		ereport(ERROR,
				(errcode_for_socket_access(),
				 errmsg("could not watch an HTTP connection: %m")));
	}

	nfinished = collect_finished(finished, max_finished);
	return nfinished + expire_stalled(finished + nfinished,
									  max_finished - nfinished);
}

/*
 * Drop the first len bytes of a request's body, which the caller has used.
 * The request may be in flight.  A large buffer left empty is freed: after
 * a big event its memory is better used for what the caller makes of it.
 */
void
transport_consume(TransportRequest *request, size_t len)
{
	Assert(len <= request->response_len);
	if (len == request->response_len &&
		request->response_capacity > TRANSPORT_KEEP_BUFFER)
	{
		pfree(request->response);
		request->response = NULL;
		request->response_capacity = 0;
		request->response_len = 0;
		return;
	}
	if (len < request->response_len)
		memmove(request->response, request->response + len,
				request->response_len - len);
	request->response_len -= len;
	if (request->response)
		request->response[request->response_len] = '\0';
}

/* Free a finished request's body, which the caller has read. */
void
transport_release_response(TransportRequest *request)
{
	if (request->response)
		pfree(request->response);
	request->response = NULL;
	request->response_len = 0;
	request->response_capacity = 0;
}

/*
 * End a request in flight of which the caller needs nothing more (a stream
 * whose last event has come while the server keeps the connection open),
 * as finished without failure.  Its connection is closed: the response on
 * it is unfinished.
 */
void
transport_finish_early(TransportRequest *request)
{
	long		connects = 0;

	curl_easy_getinfo(request->easy, CURLINFO_NUM_CONNECTS, &connects);
	request->failure = TRANSPORT_OK;
	request->http_status = request->status_seen;
	request->new_connection = connects > 0;
	request->elapsed_us = GetCurrentTimestamp() - request->started_at;
	curl_multi_remove_handle(air_multi, request->easy);
	release_easy_handle(request);
	air_in_flight_count--;
}

/*
 * Drop every request in flight, closing their connections.  Safe to call
 * from an error handler: nothing here raises an error.
 */
void
transport_abort_all(void)
{
	dlist_mutable_iter iter;

	dlist_foreach_modify(iter, &air_in_flight)
	{
		TransportRequest *request = dlist_container(TransportRequest, node,
													iter.cur);

		curl_multi_remove_handle(air_multi, request->easy);
		release_easy_handle(request);
	}
	air_in_flight_count = 0;
}

/* How many requests are in flight. */
int
transport_in_flight(void)
{
	return air_in_flight_count;
}

/* When a request stalls if no byte comes: 0 when it has no such timer. */
static TimestampTz
stall_time(const TransportRequest *request)
{
	if (request->first_byte_at == 0)
		return request->first_byte_timeout_ms > 0 ?
			TimestampTzPlusMilliseconds(request->started_at,
										request->first_byte_timeout_ms) : 0;
	return request->idle_timeout_ms > 0 ?
		TimestampTzPlusMilliseconds(request->last_byte_at,
									request->idle_timeout_ms) : 0;
}

/* Milliseconds until the first request in flight stalls; LONG_MAX if none. */
static long
ms_until_next_stall(TimestampTz now)
{
	dlist_iter	iter;
	long		wait_ms = LONG_MAX;

	dlist_foreach(iter, &air_in_flight)
	{
		TransportRequest *request = dlist_container(TransportRequest, node,
													iter.cur);
		TimestampTz stall = stall_time(request);

		if (stall != 0)
			wait_ms = Min(wait_ms, TimestampDifferenceMilliseconds(now, stall));
	}
	return wait_ms;
}

/*
 * Take requests past their first-byte or idle timeout out of the multi
 * handle, and return up to max_finished of them in finished[].
 */
static int
expire_stalled(TransportRequest **finished, int max_finished)
{
	TimestampTz now = GetCurrentTimestamp();
	dlist_mutable_iter iter;
	int			nexpired = 0;

	dlist_foreach_modify(iter, &air_in_flight)
	{
		TransportRequest *request = dlist_container(TransportRequest, node,
													iter.cur);
		TimestampTz stall = stall_time(request);

		if (nexpired == max_finished)
			break;
		if (stall == 0 || stall > now)
			continue;

		if (request->first_byte_at == 0)
		{
			request->failure = TRANSPORT_FIRST_BYTE_TIMEOUT;
			snprintf(request->error, sizeof(request->error),
					 "no response byte within %ld ms",
					 request->first_byte_timeout_ms);
		}
		else
		{
			request->failure = TRANSPORT_IDLE_TIMEOUT;
			snprintf(request->error, sizeof(request->error),
					 "no data for %ld ms", request->idle_timeout_ms);
		}
		request->http_status = request->status_seen;
		request->elapsed_us = now - request->started_at;
		curl_multi_remove_handle(air_multi, request->easy);
		release_easy_handle(request);
		air_in_flight_count--;
		finished[nexpired++] = request;
	}
	return nexpired;
}


/* Create the multi handle, the epoll set and the wait set on first use. */
static void
transport_init(void)
{
	static bool curl_ready = false;

	if (air_wait_set != NULL)
		return;

	if (!curl_ready)
	{
		const curl_version_info_data *info = curl_version_info(CURLVERSION_NOW);

		/*
		 * A resolver that blocks the backend ignores every timeout and
		 * cancel; one that is a thread needs CURLOPT_QUICK_EXIT (7.87.0).
		 */
		if (!(info->features & CURL_VERSION_ASYNCHDNS) ||
			(info->ares == NULL && info->version_num < 0x075700))
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("libcurl %s cannot resolve names within a timeout",
							info->version),
					 errhint("pg_ai_resilience needs libcurl 7.87.0 or later with its threaded resolver, or libcurl built with c-ares.")));
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("could not initialize libcurl")));
		curl_ready = true;
	}
	if (air_multi == NULL)
	{
		air_multi = curl_multi_init();
		if (air_multi == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("could not create a libcurl multi handle")));
		curl_multi_setopt(air_multi, CURLMOPT_SOCKETFUNCTION, on_socket);
		curl_multi_setopt(air_multi, CURLMOPT_TIMERFUNCTION, on_timer);
	}
	if (air_epoll_fd < 0)
	{
		air_epoll_fd = epoll_create1(EPOLL_CLOEXEC);
		if (air_epoll_fd < 0)
			ereport(ERROR,
					(errcode_for_socket_access(),
					 errmsg("could not create an epoll set: %m")));
	}

	air_wait_set = CreateWaitEventSet(TopMemoryContext, 3);
	AddWaitEventToSet(air_wait_set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(air_wait_set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	AddWaitEventToSet(air_wait_set, WL_SOCKET_READABLE, air_epoll_fd, NULL, NULL);
}

/* A pooled easy handle, reset to defaults, or a new one. */
static CURL *
take_easy_handle(void)
{
	CURL	   *easy;

	if (air_idle_count > 0)
	{
		easy = air_idle_handles[--air_idle_count];
		curl_easy_reset(easy);
		return easy;
	}
	easy = curl_easy_init();
	if (easy == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not create a libcurl handle")));
	return easy;
}

/*
 * Return a request's easy handle to the pool and free its header list.
 * Raises no error: the pool grows ahead of need in take_easy_handle's
 * callers, and a handle that finds no room is simply closed.
 */
static void
release_easy_handle(TransportRequest *request)
{
	CURL	   *easy = request->easy;

	if (request->node.next != NULL)
		dlist_delete(&request->node);
	request->node.next = request->node.prev = NULL;
	curl_slist_free_all(request->header_list);
	request->header_list = NULL;
	request->easy = NULL;
	if (easy == NULL)
		return;

	if (air_idle_count == air_idle_capacity)
	{
		int			capacity = Max(16, air_idle_capacity * 2);
		CURL	  **grown;

		grown = MemoryContextAllocExtended(TopMemoryContext,
										   capacity * sizeof(CURL *),
										   MCXT_ALLOC_NO_OOM);
		if (grown == NULL)
		{
			curl_easy_cleanup(easy);
			return;
		}
		if (air_idle_count > 0)
			memcpy(grown, air_idle_handles, air_idle_count * sizeof(CURL *));
		if (air_idle_handles)
			pfree(air_idle_handles);
		air_idle_handles = grown;
		air_idle_capacity = capacity;
	}
	air_idle_handles[air_idle_count++] = easy;
}

/* Fill a finished request's outputs and take it out of the multi handle. */
static void
finish_request(TransportRequest *request, CURLcode result)
{
	CURL	   *easy = request->easy;
	long		status = 0;
	long		connects = 0;
	curl_off_t	total_us = 0;
	curl_off_t	pretransfer_us = 0;
	curl_off_t	namelookup_us = 0;
	curl_off_t	connect_us = 0;
	curl_off_t	appconnect_us = 0;
	char	   *remote_ip = NULL;

	curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_getinfo(easy, CURLINFO_NUM_CONNECTS, &connects);
	curl_easy_getinfo(easy, CURLINFO_TOTAL_TIME_T, &total_us);
	curl_easy_getinfo(easy, CURLINFO_PRETRANSFER_TIME_T, &pretransfer_us);
	curl_easy_getinfo(easy, CURLINFO_NAMELOOKUP_TIME_T, &namelookup_us);
	curl_easy_getinfo(easy, CURLINFO_CONNECT_TIME_T, &connect_us);
	curl_easy_getinfo(easy, CURLINFO_APPCONNECT_TIME_T, &appconnect_us);

	request->http_status = status;
	request->new_connection = connects > 0;
	request->elapsed_us = total_us;
	request->namelookup_us = namelookup_us;
	request->connect_us = connect_us;
	request->appconnect_us = appconnect_us;
	request->unresolved = result == CURLE_COULDNT_RESOLVE_HOST ||
		result == CURLE_COULDNT_RESOLVE_PROXY ||
		(result == CURLE_OPERATION_TIMEDOUT && namelookup_us == 0);
	if (curl_easy_getinfo(easy, CURLINFO_PRIMARY_IP, &remote_ip) == CURLE_OK &&
		remote_ip != NULL)
		strlcpy(request->remote_ip, remote_ip, sizeof(request->remote_ip));

	switch (result)
	{
		case CURLE_OK:
			request->failure = TRANSPORT_OK;
			break;
		case CURLE_COULDNT_RESOLVE_HOST:
		case CURLE_COULDNT_RESOLVE_PROXY:
		case CURLE_COULDNT_CONNECT:
		case CURLE_SSL_CONNECT_ERROR:
		case CURLE_PEER_FAILED_VERIFICATION:
			request->failure = TRANSPORT_CONNECT;
			break;
		case CURLE_OPERATION_TIMEDOUT:
			/* no request was sent if the connection never came up */
			note_timer_fired(request, pretransfer_us != 0 || status != 0,
							 namelookup_us != 0);
			break;
		case CURLE_WRITE_ERROR:
			request->failure = request->response_too_large ?
				TRANSPORT_TOO_LARGE : TRANSPORT_OTHER;
			break;
		case CURLE_GOT_NOTHING:
		case CURLE_RECV_ERROR:
		case CURLE_SEND_ERROR:
		case CURLE_PARTIAL_FILE:
		case CURLE_HTTP2:
		case CURLE_HTTP2_STREAM:
			request->failure = TRANSPORT_RESET;
			break;
		default:
			request->failure = TRANSPORT_OTHER;
			break;
	}
	if (result != CURLE_OK && request->error[0] == '\0')
		strlcpy(request->error, curl_easy_strerror(result),
				sizeof(request->error));

	curl_multi_remove_handle(air_multi, easy);
	release_easy_handle(request);
	air_in_flight_count--;
}

/*
 * Set the failure of a request that libcurl timed out to the timer that
 * fired, and say in its error what did not happen in time.  libcurl's own
 * message would do, but for its varying count of milliseconds.
 */
static void
note_timer_fired(TransportRequest *request, bool connected, bool resolved)
{
	AttemptTimers timers;

	timers.connect_ms = request->connect_timeout_ms;
	timers.attempt_ms = request->timeout_ms;
	timers.deadline_ms = request->deadline_ms;
	request->failure = policy_timer_fired(&timers, connected);

	if (connected)
		snprintf(request->error, sizeof(request->error),
				 "no complete response within %ld ms",
				 Min(timers.attempt_ms, timers.deadline_ms));
	else
		snprintf(request->error, sizeof(request->error),
				 "no connection within %ld ms%s",
				 Min(Min(timers.connect_ms, timers.attempt_ms),
					 timers.deadline_ms),
				 resolved ? "" : " (name resolution did not finish)");
}

/* Take up to max_finished finished requests off libcurl's message queue. */
static int
collect_finished(TransportRequest **finished, int max_finished)
{
	int			nfinished = 0;
	int			queued;
	CURLMsg    *message;

	while (nfinished < max_finished &&
		   (message = curl_multi_info_read(air_multi, &queued)) != NULL)
	{
		TransportRequest *request = NULL;

		if (message->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(message->easy_handle, CURLINFO_PRIVATE, &request);
		finish_request(request, message->data.result);
		finished[nfinished++] = request;
	}
	return nfinished;
}

/* Let libcurl act on every socket the epoll set reports ready. */
static void
drive_ready_sockets(void)
{
	struct epoll_event ready[EPOLL_BATCH];
	int			nready;
	int			i;

	nready = epoll_wait(air_epoll_fd, ready, EPOLL_BATCH, 0);
	for (i = 0; i < nready; i++)
	{
		int			flags = 0;

		if (ready[i].events & (EPOLLIN | EPOLLHUP))
			flags |= CURL_CSELECT_IN;
		if (ready[i].events & EPOLLOUT)
			flags |= CURL_CSELECT_OUT;
		if (ready[i].events & EPOLLERR)
			flags |= CURL_CSELECT_ERR;
		socket_action(ready[i].data.fd, flags);
	}
}

/*
 * Let libcurl act on a socket (or on its timer: CURL_SOCKET_TIMEOUT) with
 * every signal blocked, so that a resolver thread it starts blocks them all
 * for its whole life.  Signals that arrive meanwhile wait the few
 * microseconds until the mask is restored.
 */
static void
socket_action(curl_socket_t sock, int flags)
{
	sigset_t	saved;
	int			running;

	pthread_sigmask(SIG_SETMASK, &BlockSig, &saved);
	curl_multi_socket_action(air_multi, sock, flags, &running);
	pthread_sigmask(SIG_SETMASK, &saved, NULL);
}

/* libcurl callback: watch sock for what it asks, or stop watching it. */
static int
on_socket(CURL *easy, curl_socket_t sock, int what, void *multi_data,
		  void *socket_data)
{
	struct epoll_event event;

	if (what == CURL_POLL_REMOVE)
	{
		if (epoll_ctl(air_epoll_fd, EPOLL_CTL_DEL, sock, NULL) != 0 &&
			errno != ENOENT && errno != EBADF)
			air_callback_errno = errno;
		return 0;
	}

	memset(&event, 0, sizeof(event));
	event.data.fd = sock;
	if (what & CURL_POLL_IN)
		event.events |= EPOLLIN;
	if (what & CURL_POLL_OUT)
		event.events |= EPOLLOUT;
	if (epoll_ctl(air_epoll_fd, EPOLL_CTL_MOD, sock, &event) != 0)
	{
		if (errno != ENOENT ||
			epoll_ctl(air_epoll_fd, EPOLL_CTL_ADD, sock, &event) != 0)
			air_callback_errno = errno;
	}
	return 0;
}

/* libcurl callback: it wants a timeout action in timeout_ms (-1: never). */
static int
on_timer(CURLM *multi, long timeout_ms, void *data)
{
	if (timeout_ms < 0)
		air_timer_armed = false;
	else
	{
		air_timer_armed = true;
		air_timer_due = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													timeout_ms);
	}
	return 0;
}

/*
 * libcurl callback: append response bytes.  Returning a short count makes
 * libcurl fail the transfer, which is how an oversized or unstorable body
 * ends it without an ereport here.
 *
 * The buffer is sized from Content-Length when the server sends one (a
 * compressed body may still grow past it), and otherwise doubles, never
 * past max_response_bytes + 1: so a body near the limit takes about the
 * limit, and at most 1.5 times it while the last doubling copies.  A
 * Content-Length over the limit fails the transfer before its body is read.
 */
static size_t
on_body(char *data, size_t size, size_t nmemb, void *userdata)
{
	TransportRequest *request = userdata;
	size_t		len = size * nmemb;
	size_t		needed = request->response_len + len + 1;

	request->last_byte_at = GetCurrentTimestamp();

	if (request->response_capacity == 0)
	{
		curl_off_t	announced = -1;

		curl_easy_getinfo(request->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T,
						  &announced);
		if (announced > (curl_off_t) request->max_response_bytes)
		{
			request->response_too_large = true;
			return 0;
		}
		if (announced > 0)
			needed = Max(needed, (size_t) announced + 1);
	}
	if (request->response_len + len > request->max_response_bytes)
	{
		request->response_too_large = true;
		return 0;
	}
	if (needed > request->response_capacity)
	{
		size_t		capacity = Max(needed, Max(request->response_capacity * 2, 4096));
		char	   *grown;

		capacity = Min(capacity, request->max_response_bytes + 1);
		grown = MemoryContextAllocExtended(request->memory, capacity,
										   MCXT_ALLOC_NO_OOM);
		if (grown == NULL)
			return 0;
		if (request->response_len > 0)
			memcpy(grown, request->response, request->response_len);
		if (request->response)
			pfree(request->response);
		request->response = grown;
		request->response_capacity = capacity;
	}
	memcpy(request->response + request->response_len, data, len);
	request->response_len += len;
	request->response[request->response_len] = '\0';
	return len;
}

/*
 * libcurl callback: keep the response headers the policy and the log need.
 * A status line starts a new header block (after a 100 Continue, say), so
 * it clears what an earlier block set.
 */
static size_t
on_header(char *data, size_t size, size_t nmemb, void *userdata)
{
	TransportRequest *request = userdata;
	size_t		len = size * nmemb;
	static const struct
	{
		const char *name;
		size_t		offset;
	}			wanted[] = {
		{"retry-after", offsetof(TransportRequest, retry_after)},
		{"retry-after-ms", offsetof(TransportRequest, retry_after_ms)},
		{"x-should-retry", offsetof(TransportRequest, should_retry)},
		{"x-request-id", offsetof(TransportRequest, request_id)},
		{"x-litellm-call-id", offsetof(TransportRequest, litellm_call_id)},
		{"x-portkey-trace-id", offsetof(TransportRequest, portkey_trace_id)},
		{"llm_provider-x-request-id", offsetof(TransportRequest, provider_request_id)},
		{"content-type", offsetof(TransportRequest, content_type)},
	};
	const char *colon;
	size_t		name_len;
	size_t		i;

	request->last_byte_at = GetCurrentTimestamp();
	if (request->first_byte_at == 0)
		request->first_byte_at = request->last_byte_at;

	if (len >= 5 && memcmp(data, "HTTP/", 5) == 0)
	{
		const char *space = memchr(data, ' ', len);

		for (i = 0; i < lengthof(wanted); i++)
			((char *) request + wanted[i].offset)[0] = '\0';
		/* "HTTP/1.1 200 OK": the code, for readers of a body in flight */
		request->status_seen = space ? atoi(space + 1) : 0;
		return len;
	}

	colon = memchr(data, ':', len);
	if (colon == NULL)
		return len;
	name_len = colon - data;
	for (i = 0; i < lengthof(wanted); i++)
	{
		if (strlen(wanted[i].name) == name_len &&
			pg_strncasecmp(data, wanted[i].name, name_len) == 0)
		{
			copy_header_value((char *) request + wanted[i].offset, colon + 1,
							  len - name_len - 1);
			break;
		}
	}
	return len;
}

/*
 * Copy a header value, trimmed of surrounding white space, keeping only
 * printable ASCII so that nothing a server sends can break a log line.
 */
static void
copy_header_value(char *dest, const char *value, size_t len)
{
	size_t		out = 0;

	while (len > 0 && (*value == ' ' || *value == '\t'))
		value++, len--;
	while (len > 0 && (value[len - 1] == '\r' || value[len - 1] == '\n' ||
					   value[len - 1] == ' ' || value[len - 1] == '\t'))
		len--;
	for (; len > 0 && out < TRANSPORT_HEADER_VALUE_SIZE - 1; value++, len--)
		if (*value >= 0x20 && *value < 0x7f)
			dest[out++] = *value;
	dest[out] = '\0';
}
