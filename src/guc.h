/*-------------------------------------------------------------------------
 *
 * guc.h
 *	  The ai_resilience.* settings.
 *
 *-------------------------------------------------------------------------
 */
#ifndef AIR_GUC_H
#define AIR_GUC_H

#include "nodes/pg_list.h"

extern char *air_endpoints;		/* always empty */
extern const char *air_endpoints_value;	/* as set */
extern char *air_api_key;		/* always empty */
extern const char *air_api_key_value;	/* as set */
extern char *air_api_key_file;
extern char *air_extra_headers;	/* always empty */
extern const char *air_extra_headers_value; /* as set */
extern char *air_models;
extern int	air_max_retries;
extern int	air_backoff_base_ms;
extern int	air_backoff_max_ms;
extern int	air_retry_after_max_ms;
extern int	air_connect_timeout_ms;
extern int	air_request_timeout_ms;
extern int	air_deadline_ms;
extern int	air_max_prompt_bytes;
extern int	air_max_response_bytes;
extern int	air_max_response_bytes_limit;
extern bool air_log_prompts;
extern int	air_max_concurrency;
extern int	air_max_concurrency_limit;
extern bool air_progress;
extern bool air_stream;
extern bool air_stream_on_timeout;
extern int	air_first_byte_timeout_ms;
extern int	air_stream_idle_timeout_ms;
extern bool air_log_attempts;
extern int	air_log_queue_size;
extern int	air_log_writers;
extern int	air_log_queue_wait_ms;
extern int	air_log_retention_s;
extern int	air_log_writer_delay_ms;
extern char *air_tag;

/* Longest ai_resilience.tag, in bytes. */
#define AIR_TAG_MAX_BYTES	64

extern void air_define_gucs(void);
extern List *air_split_list(const char *name, const char *raw);

#endif							/* AIR_GUC_H */
