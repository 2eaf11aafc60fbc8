/*-------------------------------------------------------------------------
 *
 * guc.c
 *	  Definition and validation of the ai_resilience.* settings.
 *
 * Settings that choose where prompts go and with which credentials
 * (endpoints, api_key, log_prompts) are PGC_SUSET: an administrator decides
 * them, as whether and how attempts are logged (log_*): a user must not be
 * able to keep his calls out of the log.  The size of the shared log queue
 * is PGC_POSTMASTER.  The rest tune one session's retries, timeouts and
 * limits and are PGC_USERSET.  Times are in milliseconds (GUC_UNIT_MS)
 * except the log retention (seconds, as it is counted in days), sizes in
 * bytes.
 *
 * The API key has no check hook on purpose: PostgreSQL quotes a rejected
 * value in its error message, which would put the key in the server log.
 * It is validated where it is used instead (runner.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>
#include <strings.h>

#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "utils/guc.h"
#include "utils/varlena.h"

#include "guc.h"

/*---- GUC variables ----*/

char	   *air_endpoints = NULL;
char	   *air_api_key = NULL;
char	   *air_models = NULL;
int			air_max_retries = 2;
int			air_backoff_base_ms = 500;
int			air_backoff_max_ms = 8000;
int			air_retry_after_max_ms = 60000;
int			air_connect_timeout_ms = 5000;
int			air_request_timeout_ms = 120000;
int			air_deadline_ms = 600000;
int			air_max_prompt_bytes = 1024 * 1024;
int			air_max_response_bytes = 16 * 1024 * 1024;
bool		air_log_prompts = false;
int			air_max_concurrency = 16;
bool		air_progress = false;
bool		air_stream = false;
bool		air_stream_on_timeout = true;
int			air_first_byte_timeout_ms = 100000;
int			air_stream_idle_timeout_ms = 60000;
bool		air_log_attempts = true;
int			air_log_queue_size = 4096;
int			air_log_queue_wait_ms = 5000;
int			air_log_retention_s = 0;
int			air_log_writer_delay_ms = 10;

/* An hour: no single wait of ours is meant to be longer. */
#define AIR_MAX_WAIT_MS		(3600 * 1000)

static bool check_endpoints(char **newval, void **extra, GucSource source);
static bool check_models(char **newval, void **extra, GucSource source);

/* Define every ai_resilience.* setting and reserve the prefix. */
void
air_define_gucs(void)
{
	DefineCustomStringVariable("ai_resilience.endpoints",
							   "Comma-separated base URLs of OpenAI-compatible endpoints, tried in order.",
							   "Each is an http:// or https:// URL such as http://127.0.0.1:8080/v1; "
							   "requests go to <endpoint>/chat/completions.",
							   &air_endpoints,
							   "",
							   PGC_SUSET,
							   0,
							   check_endpoints, NULL, NULL);

	DefineCustomStringVariable("ai_resilience.api_key",
							   "Bearer token(s) sent to the endpoints.",
							   "One key for every endpoint, or a comma-separated list with one key per "
							   "endpoint in the order of ai_resilience.endpoints. Empty sends no "
							   "Authorization header.",
							   &air_api_key,
							   "",
							   PGC_SUSET,
							   GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("ai_resilience.models",
							   "Comma-separated models tried in order when a call passes no models.",
							   NULL,
							   &air_models,
							   "",
							   PGC_USERSET,
							   0,
							   check_models, NULL, NULL);

	DefineCustomIntVariable("ai_resilience.max_retries",
							"Retries on the same route after a transient error (the first try not counted).",
							"0 disables retries; the call still falls back to the next route.",
							&air_max_retries,
							2,
							0, 10,
							PGC_USERSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("ai_resilience.backoff_base",
							"Backoff before the first retry; it doubles with each retry.",
							"Up to 25 % jitter is taken off each backoff.",
							&air_backoff_base_ms,
							500,
							0, AIR_MAX_WAIT_MS,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("ai_resilience.backoff_max",
							"Longest backoff between two retries.",
							NULL,
							&air_backoff_max_ms,
							8000,
							0, AIR_MAX_WAIT_MS,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("ai_resilience.retry_after_max",
							"Longest Retry-After wait honoured before a retry.",
							"A longer requested wait is not taken: the call moves to the next route. "
							"0 never waits for Retry-After.",
							&air_retry_after_max_ms,
							60000,
							0, AIR_MAX_WAIT_MS,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("ai_resilience.connect_timeout",
							"Time allowed to open a connection to an endpoint.",
							NULL,
							&air_connect_timeout_ms,
							5000,
							1, AIR_MAX_WAIT_MS,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("ai_resilience.request_timeout",
							"Time allowed for one attempt, from connecting to the last byte of the answer.",
							"Bounded in turn by what is left of ai_resilience.deadline.",
							&air_request_timeout_ms,
							120000,
							1, INT_MAX,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("ai_resilience.deadline",
							"Time allowed for a whole call: every attempt, retry and backoff.",
							NULL,
							&air_deadline_ms,
							600000,
							1, INT_MAX,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("ai_resilience.max_prompt_bytes",
							"Largest prompt, system prompt or ai_chat_complete request accepted; a larger one is refused before any call.",
							NULL,
							&air_max_prompt_bytes,
							1024 * 1024,
							1, 256 * 1024 * 1024,
							PGC_USERSET,
							GUC_UNIT_BYTE,
							NULL, NULL, NULL);

	DefineCustomIntVariable("ai_resilience.max_response_bytes",
							"Largest response body accepted; a larger one fails the attempt.",
							NULL,
							&air_max_response_bytes,
							16 * 1024 * 1024,
							1024, 512 * 1024 * 1024,
							PGC_USERSET,
							GUC_UNIT_BYTE,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("ai_resilience.log_prompts",
							 "Store each call's prompt in ai_call_log.",
							 NULL,
							 &air_log_prompts,
							 false,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("ai_resilience.max_concurrency",
							"Most requests a batch keeps in flight at once.",
							"A prompt waiting out its backoff does not count.",
							&air_max_concurrency,
							16,
							1, 1024,
							PGC_USERSET,
							0,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("ai_resilience.progress",
							 "Report a batch's progress as NOTICEs, every 5 % of its prompts.",
							 NULL,
							 &air_progress,
							 false,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomBoolVariable("ai_resilience.stream",
							 "Stream answers (Server-Sent Events) unless a call says otherwise.",
							 NULL,
							 &air_stream,
							 false,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomBoolVariable("ai_resilience.stream_on_timeout",
							 "After a 524 or a first-byte timeout, stream the next attempt on that route.",
							 "A long generation behind a proxy with a read timeout gets through when bytes flow.",
							 &air_stream_on_timeout,
							 true,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("ai_resilience.first_byte_timeout",
							"Time allowed from the start of an attempt to the first response byte.",
							"0 disables it. Cloudflare's proxy gives up after 100 s (HTTP 524).",
							&air_first_byte_timeout_ms,
							100000,
							0, INT_MAX,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("ai_resilience.stream_idle_timeout",
							"Longest gap allowed between two pieces of a streamed answer.",
							"0 disables it. Keep-alive comments count as data.",
							&air_stream_idle_timeout_ms,
							60000,
							0, INT_MAX,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("ai_resilience.log_attempts",
							 "Record every HTTP attempt in ai_call_log.",
							 "Off: calls are not logged at all.",
							 &air_log_attempts,
							 true,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	/* PostgreSQL allows a POSTMASTER setting only in a preloaded library */
	if (process_shared_preload_libraries_in_progress)
		DefineCustomIntVariable("ai_resilience.log_queue_size",
								"Attempt records the shared log queue holds until a log writer inserts them.",
								"Each takes 2 kB of shared memory. A crash loses at most this many records.",
								&air_log_queue_size,
								4096,
								1, 262144,
								PGC_POSTMASTER,
								0,
								NULL, NULL, NULL);

	DefineCustomIntVariable("ai_resilience.log_queue_wait",
							"Longest wait for room in a full log queue before an attempt record is lost.",
							"0 never waits. A lost record is counted in ai_log_stats() and reported by a WARNING.",
							&air_log_queue_wait_ms,
							5000,
							0, AIR_MAX_WAIT_MS,
							PGC_SUSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("ai_resilience.log_writer_delay",
							"Pause of a busy log writer between two batches, so that records gather.",
							"0 writes every batch at once: more commits, more CPU per record. "
							"The first record after an idle spell is written at once.",
							&air_log_writer_delay_ms,
							10,
							0, 10000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("ai_resilience.log_retention",
							"Age after which the log writer deletes ai_call_log rows.",
							"0 keeps every row. Applied by the running log writer when idle, 1000 rows per transaction.",
							&air_log_retention_s,
							0,
							0, INT_MAX,
							PGC_SUSET,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("ai_resilience");
}

/*
 * Split the comma-separated setting 'name' into a List of palloc'd strings,
 * trimmed of white space; NIL when empty.  A malformed value (one the check
 * hooks let through, such as an API key with a space) is an error that does
 * not quote the value, which may be a secret.
 */
List *
air_split_list(const char *name, const char *raw)
{
	char	   *copy = pstrdup(raw ? raw : "");
	List	   *items = NIL;

	if (!SplitGUCList(copy, ',', &items))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is not a valid comma-separated list", name),
				 errhint("Items may not contain white space or commas.")));
	return items;
}

/* Every endpoint must be an absolute http(s) URL. */
static bool
check_endpoints(char **newval, void **extra, GucSource source)
{
	char	   *copy = pstrdup(*newval);
	List	   *items = NIL;
	ListCell   *lc;

	if (!SplitGUCList(copy, ',', &items))
	{
		GUC_check_errdetail("List syntax is invalid.");
		return false;
	}
	foreach(lc, items)
	{
		const char *url = lfirst(lc);
		size_t		prefix;

		if (strncasecmp(url, "http://", 7) == 0)
			prefix = 7;
		else if (strncasecmp(url, "https://", 8) == 0)
			prefix = 8;
		else
		{
			GUC_check_errdetail("Endpoint \"%s\" is not an http:// or https:// URL.", url);
			return false;
		}
		if (url[prefix] == '\0' || url[prefix] == '/')
		{
			GUC_check_errdetail("Endpoint \"%s\" has no host.", url);
			return false;
		}
	}
	list_free(items);
	pfree(copy);
	return true;
}

/* Model names must be a valid list without empty names. */
static bool
check_models(char **newval, void **extra, GucSource source)
{
	char	   *copy = pstrdup(*newval);
	List	   *items = NIL;
	ListCell   *lc;

	if (!SplitGUCList(copy, ',', &items))
	{
		GUC_check_errdetail("List syntax is invalid.");
		return false;
	}
	foreach(lc, items)
	{
		if (*(const char *) lfirst(lc) == '\0')
		{
			GUC_check_errdetail("A model name is empty.");
			return false;
		}
	}
	list_free(items);
	pfree(copy);
	return true;
}
