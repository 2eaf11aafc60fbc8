/*-------------------------------------------------------------------------
 *
 * log_queue.h
 *	  The shared-memory queue of log records (attempts, route changes)
 *	  waiting for a log writer.
 *
 *-------------------------------------------------------------------------
 */
#ifndef AIR_LOG_QUEUE_H
#define AIR_LOG_QUEUE_H

#include "access/xlogdefs.h"
#include "datatype/timestamp.h"
#include "utils/uuid.h"

/* Bytes of one queue slot: a record and its strings. */
#define LOG_SLOT_SIZE		2048

/* Databases that may have records queued, or a writer, at one time. */
#define LOG_MAX_DATABASES	64

/*
 * A database may hold at most 1/LOG_DATABASE_SHARE of the queue's slots (at
 * least one): so up to LOG_DATABASE_SHARE - 1 databases whose writers are
 * blocked leave the others at least that share.
 */
#define LOG_DATABASE_SHARE	4

/* Most log writers (ai_resilience.log_writers). */
#define LOG_MAX_WRITERS		16

/*
 * The strings of a record, in the order they are packed: those packed last
 * get what room is left (see call_log.c).
 */
typedef enum LogString
{
	LOG_STR_MODEL,
	LOG_STR_ENDPOINT,
	LOG_STR_ROLE_NAME,
	LOG_STR_SESSION_ROLE,
	LOG_STR_APPLICATION_NAME,
	LOG_STR_TAG,
	LOG_STR_REQUEST_ID,
	LOG_STR_PROVIDER_REQUEST_ID,
	LOG_STR_MODEL_RETURNED,
	LOG_STR_FINISH_REASON,
	LOG_STR_ERROR,
	LOG_STR_SKIPPED_ROUTES,
	LOG_STR_PROMPT,
	LOG_NSTRINGS
} LogString;

/* A string's length when it is NULL. */
#define LOG_STR_NULL		0xFFFF

/* What a record holds, and so the table it goes to. */
typedef enum LogRecordKind
{
	LOG_RECORD_ATTEMPT,			/* an HTTP attempt: ai_call_log */
	LOG_RECORD_ROUTE_CHANGE,	/* a route's change of state: ai_route_events */
	LOG_NKINDS
} LogRecordKind;

/*
 * One attempt, as queued: the fields of a CallAttempt, with its strings
 * packed into data (each NUL-terminated, possibly truncated), and who
 * queued it.  A route's change of state (a RouteChange) uses started_at
 * for its time, the model and endpoint strings (model NULL for an
 * endpoint), error_class and http_status for the failure that caused it,
 * and the fields of its own below.
 */
typedef struct LogRecord
{
	Oid			dboid;			/* the database whose log gets it */
	int			backend_id;		/* the queuing backend's MyBackendId */
	uint64		seq;			/* queue-wide number, set when queued */
	int			backend_pid;
	int32		kind;			/* a LogRecordKind */
	pg_uuid_t	call_id;
	int32		attempt;
	int32		route_index;
	int32		route_attempt;
	TimestampTz started_at;
	double		latency_ms;
	int32		http_status;	/* 0: none */
	int32		error_class;	/* an AttemptClass */
	int32		outcome;		/* an AttemptOutcome */
	int32		retry_after_ms; /* -1: none */
	int32		backoff_ms;		/* -1: none */
	int32		prompt_tokens;	/* -1: unknown */
	int32		completion_tokens;	/* -1: unknown */
	double		ttft_ms;		/* -1: none */
	int32		response_bytes; /* -1: none */
	bool		streaming;
	bool		new_connection;
	/* a route's change of state only */
	int32		from_state;		/* a BreakerState */
	int32		to_state;
	int32		change;			/* a BreakerChange: why */
	int32		consecutive_failures;
	int32		window_requests;
	int32		window_failures;
	TimestampTz next_probe_at;	/* 0: none */
	uint16		str_offset[LOG_NSTRINGS];	/* into data */
	uint16		str_len[LOG_NSTRINGS];	/* LOG_STR_NULL: NULL */
	char		data[FLEXIBLE_ARRAY_MEMBER];
} LogRecord;

/* Bytes of a record's data area. */
#define LOG_DATA_SIZE		(LOG_SLOT_SIZE - offsetof(LogRecord, data))

/* What logq_enqueue did with a record. */
typedef enum LogEnqueueResult
{
	LOGQ_QUEUED,				/* in the queue */
	LOGQ_QUEUED_AFTER_WAIT,		/* in the queue, after waiting for room */
	LOGQ_LOST_FULL,				/* the database's share of the queue stayed
								 * full: lost */
	LOGQ_LOST_NO_DATABASE,		/* too many databases with records: lost */
	LOGQ_LOST_RECOVERY			/* a server in recovery cannot write: lost */
} LogEnqueueResult;

/* The counters shown by ai_log_stats(), since server start. */
typedef struct LogQueueStats
{
	uint64		queued;
	uint64		written;
	uint64		lost;
	uint64		queue_waits;
	int			in_queue;
	int			writers;
	char		last_error[256];	/* empty: none */
	TimestampTz last_error_at;
} LogQueueStats;

extern void logq_request_shmem(void);
extern void logq_init_shmem(void);
extern bool logq_is_ready(void);

/* backends */
extern LogEnqueueResult logq_enqueue(LogRecord *record, int wait_ms);
extern bool logq_flush(long timeout_ms);
extern void logq_get_stats(LogQueueStats *stats);

/* log writers */
extern int	logq_writer_claim(int writer, Oid *dboid);
extern int	logq_writer_take(int db_index, LogRecord **records, int max);
extern void logq_writer_release(int db_index, int ntaken, int nwritten,
								XLogRecPtr commit_lsn);
extern bool logq_writer_leave(int writer, bool idle_long, bool served_long);
extern void logq_writer_exit(int writer, bool connect_failed, bool failed);
extern bool logq_report_error(const char *message, int *not_logged,
							  int interval_ms);

#endif							/* AIR_LOG_QUEUE_H */
