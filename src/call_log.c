/*-------------------------------------------------------------------------
 *
 * call_log.c
 *	  One ai_call_log row per HTTP attempt, written by a background writer.
 *
 * Every write goes through calllog_append (or, in error cleanup,
 * calllog_append_in_cleanup).  The attempt is packed into a fixed-size
 * record and put in the shared-memory queue (log_queue.c); a log writer
 * (log_writer.c) inserts it into the database's ai_call_log in a
 * transaction of its own, as the table's owner.  So a row survives the
 * caller's ERROR, ROLLBACK or termination, callers need no privilege on the
 * log, and they cannot forge rows through it.
 *
 * A record has LOG_SLOT_SIZE bytes: each string is cut to its own limit
 * below (at a character boundary); the strings packed last, skipped_routes
 * and then the prompt, get the room that is left, so a long prompt is
 * stored truncated.  Who called (roles, application_name, tag) is taken
 * by the calling backend when its call starts (runner.c), never by the
 * writer.
 *
 * When the database's share of the queue is full a record waits for room
 * up to ai_resilience.log_queue_wait; past that it is lost and counted.
 * After a loss the rest of the transaction does not wait again, so that a
 * blocked writer costs one wait per transaction, not one per attempt.  The
 * losses are reported by one WARNING per statement, with their number:
 * when the outermost executor run ends (so a query calling ai_chat for
 * many rows, or a function doing so, warns once), or else when the
 * transaction ends.
 *
 * A route's change of state (route_health.c) goes the same way, as a
 * record of its own kind, to the database's ai_route_events.
 *
 * LOCKING RULES: none here; see log_queue.c.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/executor.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/proc.h"

#include "call_log.h"
#include "gateway_text.h"
#include "guc.h"
#include "log_queue.h"

/* A record's worth of bytes, aligned for a LogRecord. */
typedef union RecordBuffer
{
	char		bytes[LOG_SLOT_SIZE];
	int64		align_int;
	double		align_double;
} RecordBuffer;

/*
 * Most bytes kept of each string.  Strings are packed in LogString order,
 * and the last two, skipped_routes and the prompt, get what room is left.
 */
#define LIMIT_MODEL			256
#define LIMIT_ENDPOINT		256
#define LIMIT_ROLE			NAMEDATALEN
#define LIMIT_APP_NAME		NAMEDATALEN /* PostgreSQL cuts it shorter */
#define LIMIT_REQUEST_ID	128
#define LIMIT_FINISH_REASON	64

static const int string_limit[LOG_NSTRINGS] = {
	[LOG_STR_MODEL] = LIMIT_MODEL,
	[LOG_STR_ENDPOINT] = LIMIT_ENDPOINT,
	[LOG_STR_ROLE_NAME] = LIMIT_ROLE,
	[LOG_STR_SESSION_ROLE] = LIMIT_ROLE,
	[LOG_STR_APPLICATION_NAME] = LIMIT_APP_NAME,
	[LOG_STR_TAG] = AIR_TAG_MAX_BYTES,
	[LOG_STR_REQUEST_ID] = LIMIT_REQUEST_ID,
	[LOG_STR_PROVIDER_REQUEST_ID] = LIMIT_REQUEST_ID,
	[LOG_STR_MODEL_RETURNED] = LIMIT_MODEL,
	[LOG_STR_FINISH_REASON] = LIMIT_FINISH_REASON,
	[LOG_STR_ERROR] = CALLLOG_ERROR_MAX_BYTES,
	[LOG_STR_SKIPPED_ROUTES] = 512,
	[LOG_STR_PROMPT] = LOG_SLOT_SIZE,
};

/*
 * Every string before skipped_routes fits whole at its limit, with its NUL
 * (LOG_STR_SKIPPED_ROUTES of them), and leaves the last two at least
 * MIN_ROOM_LEFT bytes between them, NULs included (README: "The call log").
 */
#define MIN_ROOM_LEFT		180
StaticAssertDecl(2 * LIMIT_MODEL + LIMIT_ENDPOINT + 2 * LIMIT_ROLE +
				 LIMIT_APP_NAME + AIR_TAG_MAX_BYTES + 2 * LIMIT_REQUEST_ID +
				 LIMIT_FINISH_REASON + CALLLOG_ERROR_MAX_BYTES +
				 LOG_STR_SKIPPED_ROUTES + MIN_ROOM_LEFT <= LOG_DATA_SIZE,
				 "a log record has no room for its strings");

/*
 * The strings that come from the gateway: they are packed through the
 * boundary of gateway_text.c, which validates and redacts them.
 */
static const bool string_from_gateway[LOG_NSTRINGS] = {
	[LOG_STR_REQUEST_ID] = true,
	[LOG_STR_PROVIDER_REQUEST_ID] = true,
	[LOG_STR_MODEL_RETURNED] = true,
	[LOG_STR_FINISH_REASON] = true,
	[LOG_STR_ERROR] = true,
};

/* The transaction in which a record was lost to a full queue. */
static LocalTransactionId lost_in_lxid = InvalidLocalTransactionId;

static bool warned_recovery = false;

/* Records lost and not reported yet, by reason. */
static int	lost_full = 0;
static int	lost_no_database = 0;

/* Executor runs under way, so that only the outermost one reports losses. */
static int	executor_depth = 0;

static ExecutorRun_hook_type prev_ExecutorRun = NULL;
static ExecutorFinish_hook_type prev_ExecutorFinish = NULL;
static ExecutorEnd_hook_type prev_ExecutorEnd = NULL;

static void calllog_ExecutorRun(QueryDesc *queryDesc, ScanDirection direction,
								uint64 count, bool execute_once);
static void calllog_ExecutorFinish(QueryDesc *queryDesc);
static void calllog_ExecutorEnd(QueryDesc *queryDesc);
static void calllog_xact_callback(XactEvent event, void *arg);
static void report_lost(void);
static void queue_record(LogRecord *record);
static void pack_attempt(const CallAttempt *a, LogRecord *record);
static void pack_string(LogRecord *record, LogString which, const char *value,
						const List *keys, int *used);

/* Raise an error unless the library was loaded by shared_preload_libraries. */
void
calllog_require_loaded(void)
{
	if (!logq_is_ready())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pg_ai_resilience must be loaded via shared_preload_libraries"),
				 errhint("Add pg_ai_resilience to shared_preload_libraries in postgresql.conf and restart the server.")));
}

/*
 * Install the hooks that report lost records once per statement; from
 * _PG_init, when preloaded.
 */
void
calllog_install_hooks(void)
{
	prev_ExecutorRun = ExecutorRun_hook;
	ExecutorRun_hook = calllog_ExecutorRun;
	prev_ExecutorFinish = ExecutorFinish_hook;
	ExecutorFinish_hook = calllog_ExecutorFinish;
	prev_ExecutorEnd = ExecutorEnd_hook;
	ExecutorEnd_hook = calllog_ExecutorEnd;
	RegisterXactCallback(calllog_xact_callback, NULL);
}

/*
 * Queue one attempt for the log, waiting for room if the database's share
 * of the queue is full; a record that cannot be queued is counted lost, and
 * reported at the end of the statement.
 */
void
calllog_append(const CallAttempt *a)
{
	RecordBuffer buffer;
	LogRecord  *record = (LogRecord *) buffer.bytes;

	if (!air_log_attempts)
		return;
	calllog_require_loaded();
	pack_attempt(a, record);
	queue_record(record);
}

/*
 * Queue one attempt from error cleanup (PG_CATCH): never waits, raises no
 * error and allocates nothing.  A full queue counts the record lost.
 */
void
calllog_append_in_cleanup(const CallAttempt *a)
{
	RecordBuffer buffer;
	LogRecord  *record = (LogRecord *) buffer.bytes;

	if (!air_log_attempts || !logq_is_ready())
		return;
	pack_attempt(a, record);
	(void) logq_enqueue(record, 0);
}

/*
 * Queue a route's change of state for this database's ai_route_events, as
 * calllog_append queues an attempt (or, in_cleanup, as
 * calllog_append_in_cleanup does).  Not subject to log_attempts: changes
 * are few, and an analyst needs all of them.
 */
void
calllog_append_route_change(const RouteChange *c, bool in_cleanup)
{
	RecordBuffer buffer;
	LogRecord  *record = (LogRecord *) buffer.bytes;
	int			used = 0;
	int			i;

	if (!logq_is_ready())
		return;
	memset(record, 0, offsetof(LogRecord, data));
	record->kind = LOG_RECORD_ROUTE_CHANGE;
	record->started_at = c->at;
	record->from_state = c->from_state;
	record->to_state = c->to_state;
	record->change = c->change;
	record->consecutive_failures = c->consecutive_failures;
	record->window_requests = c->window_requests;
	record->window_failures = c->window_failures;
	record->next_probe_at = c->next_probe_at;
	record->error_class = (int32) c->error_class;
	record->http_status = c->error_code;
	for (i = 0; i < LOG_NSTRINGS; i++)
		pack_string(record, (LogString) i,
					i == LOG_STR_MODEL ? c->model :
					i == LOG_STR_ENDPOINT ? c->endpoint : NULL,
					NIL, &used);
	if (in_cleanup)
		(void) logq_enqueue(record, 0);
	else
		queue_record(record);
}

/*
 * Put a packed record in the queue, waiting for room unless a record of
 * this transaction was lost already; count a loss for report_lost.
 */
static void
queue_record(LogRecord *record)
{
	bool		lost_already = lost_in_lxid == MyProc->lxid;

	switch (logq_enqueue(record, lost_already ? 0 : air_log_queue_wait_ms))
	{
		case LOGQ_QUEUED:
		case LOGQ_QUEUED_AFTER_WAIT:
			break;
		case LOGQ_LOST_FULL:
			lost_in_lxid = MyProc->lxid;
			lost_full++;
			break;
		case LOGQ_LOST_NO_DATABASE:
			lost_no_database++;
			break;
		case LOGQ_LOST_RECOVERY:
			if (!warned_recovery)
				ereport(WARNING,
						(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
						 errmsg("attempts are not logged in ai_call_log while the server is in recovery")));
			warned_recovery = true;
			break;
	}
}

/* ExecutorRun hook: count the nesting. */
static void
calllog_ExecutorRun(QueryDesc *queryDesc, ScanDirection direction,
					uint64 count, bool execute_once)
{
	executor_depth++;
	PG_TRY();
	{
		if (prev_ExecutorRun)
			prev_ExecutorRun(queryDesc, direction, count, execute_once);
		else
			standard_ExecutorRun(queryDesc, direction, count, execute_once);
	}
	PG_FINALLY();
	{
		executor_depth--;
	}
	PG_END_TRY();
}

/* ExecutorFinish hook: count the nesting (AFTER triggers run here). */
static void
calllog_ExecutorFinish(QueryDesc *queryDesc)
{
	executor_depth++;
	PG_TRY();
	{
		if (prev_ExecutorFinish)
			prev_ExecutorFinish(queryDesc);
		else
			standard_ExecutorFinish(queryDesc);
	}
	PG_FINALLY();
	{
		executor_depth--;
	}
	PG_END_TRY();
}

/* ExecutorEnd hook: the outermost statement reports its losses. */
static void
calllog_ExecutorEnd(QueryDesc *queryDesc)
{
	if (prev_ExecutorEnd)
		prev_ExecutorEnd(queryDesc);
	else
		standard_ExecutorEnd(queryDesc);
	if (executor_depth == 0)
		report_lost();
}

/* End of transaction: report losses no executor end reported (an error). */
static void
calllog_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT)
	{
		executor_depth = 0;
		report_lost();
	}
}

/* One WARNING for the records lost since the last report, if any. */
static void
report_lost(void)
{
	int			full = lost_full;
	int			no_database = lost_no_database;

	if (full + no_database == 0)
		return;
	lost_full = lost_no_database = 0;
	ereport(WARNING,
			(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
			 errmsg_plural("%d ai_call_log record was lost",
						   "%d ai_call_log records were lost",
						   full + no_database, full + no_database),
			 full > 0 ?
			 errdetail("This database's share of the log queue (%d records) stayed full for ai_resilience.log_queue_wait (%d ms).",
					   Max(1, air_log_queue_size / LOG_DATABASE_SHARE),
					   air_log_queue_wait_ms) :
			 errdetail("More than %d databases had records queued.",
					   LOG_MAX_DATABASES),
			 full > 0 ?
			 errhint("The log writer is behind or blocked (a lock on ai_call_log?); see ai_log_stats().") : 0));
}

/* Copy an attempt into a record; strings are cut to fit. */
static void
pack_attempt(const CallAttempt *a, LogRecord *record)
{
	int			used = 0;

	memset(record, 0, offsetof(LogRecord, data));
	record->kind = LOG_RECORD_ATTEMPT;
	record->call_id = a->call_id;
	record->attempt = a->attempt;
	record->route_index = a->route_index;
	record->route_attempt = a->route_attempt;
	record->started_at = a->started_at;
	record->latency_ms = a->latency_ms;
	record->http_status = a->http_status;
	record->error_class = (int32) a->error_class;
	record->outcome = (int32) a->outcome;
	record->retry_after_ms = a->retry_after_ms;
	record->backoff_ms = a->backoff_ms;
	record->prompt_tokens = a->prompt_tokens;
	record->completion_tokens = a->completion_tokens;
	record->ttft_ms = a->ttft_ms;
	record->response_bytes = a->response_bytes;
	record->streaming = a->streaming;
	record->new_connection = a->new_connection;

	/* in LogString order: the last strings get what room is left */
	pack_string(record, LOG_STR_MODEL, a->model, a->keys, &used);
	pack_string(record, LOG_STR_ENDPOINT, a->endpoint, a->keys, &used);
	pack_string(record, LOG_STR_ROLE_NAME, a->role_name, a->keys, &used);
	pack_string(record, LOG_STR_SESSION_ROLE, a->session_role, a->keys, &used);
	pack_string(record, LOG_STR_APPLICATION_NAME, a->application_name, a->keys, &used);
	pack_string(record, LOG_STR_TAG, a->tag, a->keys, &used);
	pack_string(record, LOG_STR_REQUEST_ID, a->request_id, a->keys, &used);
	pack_string(record, LOG_STR_PROVIDER_REQUEST_ID, a->provider_request_id, a->keys, &used);
	pack_string(record, LOG_STR_MODEL_RETURNED, a->model_returned, a->keys, &used);
	pack_string(record, LOG_STR_FINISH_REASON, a->finish_reason, a->keys, &used);
	pack_string(record, LOG_STR_ERROR, a->error, a->keys, &used);
	pack_string(record, LOG_STR_SKIPPED_ROUTES, a->skipped_routes, a->keys, &used);
	pack_string(record, LOG_STR_PROMPT, a->prompt, a->keys, &used);
}

/*
 * Append a string to the record's data, cut at a character boundary to its
 * limit and to the room left (keeping a NUL); a string from the gateway is
 * also made valid and redacted of the keys.
 */
static void
pack_string(LogRecord *record, LogString which, const char *value,
			const List *keys, int *used)
{
	int			room = Max(Min(string_limit[which], (int) LOG_DATA_SIZE - *used - 1), 0);
	char	   *dest = record->data + *used;
	int			len;

	if (value == NULL)
	{
		record->str_offset[which] = 0;
		record->str_len[which] = LOG_STR_NULL;
		return;
	}
	if (string_from_gateway[which])
		len = gateway_text(dest, room + 1, value, keys);
	else
	{
		len = strnlen(value, room + 1);
		if (len > room)
			len = pg_mbcliplen(value, len, room);
		memcpy(dest, value, len);
		dest[len] = '\0';
	}
	record->str_offset[which] = *used;
	record->str_len[which] = len;
	*used += len + 1;
}
