/*-------------------------------------------------------------------------
 *
 * transport.h
 *	  HTTP requests over libcurl's multi interface, waited on with the latch.
 *
 *-------------------------------------------------------------------------
 */
#ifndef AIR_TRANSPORT_H
#define AIR_TRANSPORT_H

#include "datatype/timestamp.h"
#include "lib/ilist.h"
#include "nodes/pg_list.h"

#include "policy.h"

/* Sizes of the response header values kept; longer values are truncated. */
#define TRANSPORT_HEADER_VALUE_SIZE	128
/* Size of the error text kept for a failed transfer (CURL_ERROR_SIZE). */
#define TRANSPORT_ERROR_SIZE		256

/*
 * One HTTP request: a POST of body, or a GET when body is NULL.  The caller
 * fills the inputs, keeps them valid until the request is done, and reads
 * the outputs once transport_wait has returned it.  Everything the transfer
 * allocates lives in 'memory'.
 */
typedef struct TransportRequest
{
	/* inputs */
	const char *url;
	const char *body;			/* NULL: a GET */
	size_t		body_len;
	const char *api_key;		/* NULL or "" sends no Authorization */
	const List *extra_headers;	/* "Name: value" strings, checked */
	bool		stream;			/* ask for text/event-stream */
	bool		fresh_connection;	/* open a connection of its own and close
									 * it after: its set-up times are measured */
	long		connect_timeout_ms; /* name resolution, TCP and TLS */
	long		first_byte_timeout_ms;	/* 0: none */
	long		idle_timeout_ms;	/* after the first byte; 0: none */
	long		timeout_ms;		/* the whole attempt */
	long		deadline_ms;	/* what is left of the caller's deadline */
	size_t		max_response_bytes; /* of the body not yet consumed */
	MemoryContext memory;		/* holds the response body */
	void	   *caller_data;	/* for the caller to find its own state */

	/* outputs */
	TransportFailure failure;	/* for a timeout, which timer fired */
	long		http_status;	/* 0 when no status line arrived */
	char		error[TRANSPORT_ERROR_SIZE];	/* what went wrong, for the log */
	char	   *response;		/* body, NUL-terminated; NULL if empty */
	size_t		response_len;
	bool		response_too_large; /* body passed max_response_bytes */
	bool		new_connection; /* a connection was opened for it */
	int64		elapsed_us;		/* from start to the end of the transfer */
	bool		unresolved;		/* failed, or timed out, resolving the name */
	int64		namelookup_us;	/* from start to the name resolved */
	int64		connect_us;		/* to the TCP connection up; 0: not */
	int64		appconnect_us;	/* to the TLS handshake done; 0: not, or no TLS */
	char		remote_ip[TRANSPORT_HEADER_VALUE_SIZE];	/* connected to; "": none */
	char		retry_after[TRANSPORT_HEADER_VALUE_SIZE];
	char		retry_after_ms[TRANSPORT_HEADER_VALUE_SIZE];
	char		should_retry[TRANSPORT_HEADER_VALUE_SIZE];
	char		request_id[TRANSPORT_HEADER_VALUE_SIZE];	/* x-request-id */
	char		litellm_call_id[TRANSPORT_HEADER_VALUE_SIZE];
	char		portkey_trace_id[TRANSPORT_HEADER_VALUE_SIZE];
	char		provider_request_id[TRANSPORT_HEADER_VALUE_SIZE];	/* LiteLLM's
																	 * llm_provider-x-request-id */
	char		content_type[TRANSPORT_HEADER_VALUE_SIZE];
	int			status_seen;	/* status line's code, as soon as it arrives */
	TimestampTz started_at;
	TimestampTz first_byte_at;	/* 0 until a response byte arrives */
	TimestampTz last_byte_at;

	/* private to transport.c */
	void	   *easy;			/* the CURL handle while in flight */
	void	   *header_list;	/* its struct curl_slist */
	size_t		response_capacity;
	dlist_node	node;			/* in the list of requests in flight */
} TransportRequest;

extern void transport_start(TransportRequest *request);
extern int	transport_wait(long timeout_ms, TransportRequest **finished,
						   int max_finished);
extern void transport_consume(TransportRequest *request, size_t len);
extern void transport_release_response(TransportRequest *request);
extern void transport_finish_early(TransportRequest *request);
extern void transport_abort_all(void);
extern int	transport_in_flight(void);

#endif							/* AIR_TRANSPORT_H */
