/*-------------------------------------------------------------------------
 *
 * log_writer.c
 *	  The background workers that write the queued attempts.
 *
 * Writers are ai_resilience.log_writers static background workers,
 * registered at server start (logwriter_register): the max_worker_processes
 * slots they hold cannot be taken by parallel queries or any other dynamic
 * worker a user can start, so a writer is always there.  (A reserve checked
 * when a dynamic worker starts would not be a guarantee: parallel workers
 * may already hold every slot.)  A worker waits unconnected until the queue
 * (log_queue.c) gives it a database, connects to it, takes up to
 * WRITER_BATCH records at a time, inserts them into ai_call_log in one
 * transaction of its own, as the table's owner, and then gives them back to
 * the queue as written; under load it pauses ai_resilience.log_writer_delay
 * between batches.  It sleeps on its latch, which backends set when they
 * queue a record.  It leaves its database once it has been idle for
 * WRITER_IDLE_EXIT_MS, or when it has served it for WRITER_SLICE_MS while
 * another database waits for a writer, by exiting with code 1: the
 * postmaster starts it again at once (bgw_restart_time 0), unconnected,
 * since a process connects to one database in its life.  The idle exit is
 * short so that DROP DATABASE, which waits 5 s for other sessions to
 * leave, is not refused because of us.
 *
 * Records are of two kinds (LogRecordKind): attempts go to ai_call_log,
 * routes' changes of state to ai_route_events.  Each kind has a target
 * (log_targets: table, columns, types, how a record gives its values), so
 * both are inserted, secured and trimmed by the same code; a batch inserts
 * each kind present in one statement.  An older extension (before ALTER
 * EXTENSION UPDATE) lacks ai_route_events, and the last columns of
 * ai_call_log: route changes are then counted lost, and the columns the
 * table has are filled.
 *
 * Failures: a batch that fails is written again row by row, each row in a
 * subtransaction, so that one row a user's constraint refuses does not
 * take the others with it; the rows that still fail, and every row of a
 * database where the table or extension is missing or the commit fails
 * (a full disk), are counted lost and given back.  Records are never
 * retried forever and an error never ends the worker: errors go to the
 * server log, at most one every ERROR_LOG_INTERVAL_MS for all writers
 * together (the count of those left out is kept in shared memory, so it
 * outlives the writer), and the last one to ai_log_stats().  A writer that
 * cannot connect to its database (dropped) exits and the database's
 * records are counted lost; so are they when writers died
 * (pg_terminate_backend, a FATAL error) three times in a row without
 * writing, so that the restart at once cannot become a crash loop.
 *
 * Commits are asynchronous (synchronous_commit off): ai_flush_log, not the
 * writer, waits for the WAL flush of the commits that wrote its records.
 *
 * Security: the table's owner is usually a superuser, and a database owner
 * must not be able to run code as it.  So every statement runs the way
 * VACUUM runs code as a table owner: as a SECURITY_RESTRICTED_OPERATION,
 * under search_path = pg_catalog, pg_temp and the writer's lock_timeout
 * (pinned in a GUC nest level, so the owner's code cannot change them for
 * later statements), with every function and operator qualified and
 * computed values passed as parameters.  Settings a database owner can
 * attach to the database (ALTER DATABASE ... SET), which the writer's
 * connection picks up, are overridden where they would stop the writer.
 *
 * Retention: rows of both tables older than ai_resilience.log_retention
 * are deleted, RETENTION_BATCH rows per table per transaction, on a timer
 * of their own (every retention_interval_ms) checked between batches, so
 * steady load does not hold it off; a pass that deleted a full batch is
 * followed by another after the next batch of inserts.  A configuration
 * reload (SIGHUP) is likewise taken between batches, or while a writer
 * waits for a database; after one, writer 0 warns about settings that
 * cannot work together (as it sees them: with the settings of the
 * database it serves, if any).
 *
 * SIGTERM (shutdown, or pg_terminate_backend): a writer waiting for a lock
 * dies at once, as a backend would (die()), leaving its batch queued for
 * the next writer; otherwise it finishes the batch in hand, writes what is
 * queued for its database, and exits.
 *
 * LOCKING RULES: none of its own; the queue's are in log_queue.c.  Queued
 * records are read without a lock between logq_writer_take and
 * logq_writer_release.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "breaker.h"
#include "guc.h"
#include "log_queue.h"
#include "log_writer.h"
#include "policy.h"
#include "secrets.h"

/* Records inserted per transaction. */
#define WRITER_BATCH			1000

/* A writer with nothing to do for this long leaves its database. */
#define WRITER_IDLE_EXIT_MS		2000

/* A writer serves a database this long before another waiting may have it. */
#define WRITER_SLICE_MS			1000

/* Rows deleted per transaction by ai_resilience.log_retention. */
#define RETENTION_BATCH			1000

/* Longest time between two retention passes (shorter for a short retention). */
#define RETENTION_INTERVAL_MS	60000

/* At most one error in the server log per this many ms. */
#define ERROR_LOG_INTERVAL_MS	10000

/*
 * Longest wait for a lock on ai_call_log.  A conflicting lock (LOCK TABLE,
 * VACUUM FULL, ALTER TABLE) would otherwise stop the writer while its
 * database's records fill the queue every database shares; past this the
 * batch is counted lost, with the reason, and the writer goes on.
 */
#define WRITER_LOCK_TIMEOUT		"5s"

/* How the writer runs SQL as the table's owner (see the file header). */
#define OWNER_SEC_CONTEXT	(SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION)

/* Most columns of a log table: ai_call_log's at 0.3.0. */
#define LOG_MAX_COLUMNS			31

/* A table the writer fills: one per LogRecordKind. */
typedef struct LogTarget
{
	const char *table;			/* in the extension's schema */
	const char *time_column;	/* what ai_resilience.log_retention compares */
	int			ncolumns;
	const char *const *column_names;
	const Oid  *column_types;	/* in the order of column_names */
	void		(*values) (const LogRecord *r, Datum *values, bool *nulls);
} LogTarget;

/* Where a log table is, in the current transaction. */
typedef struct LogTable
{
	Oid			relid;			/* InvalidOid: missing */
	Oid			owner;
	char	   *schema;			/* quoted */
	int			ncolumns;		/* of its target's, the ones it has */
} LogTable;

/* A target's prepared INSERTs (a row, a batch), and the table they are for. */
typedef struct InsertPlans
{
	SPIPlanPtr	row;
	SPIPlanPtr	batch;
	Oid			relid;
	int			ncolumns;
} InsertPlans;

static volatile sig_atomic_t got_sigterm = false;
static int	writer_index = -1;		/* in the queue's writers[] */
static int	writer_db_index = -1;	/* the database served */
static bool writer_connecting = false;	/* connecting, or failed to */
static bool writer_done = false;	/* exits on purpose, not by an error */
static MemoryContext batch_memory = NULL;

static InsertPlans insert_plans[LOG_NKINDS];

/* The tables open_log_tables found, until close_log_tables. */
static LogTable log_tables[LOG_NKINDS];

/* The GUC nest level of pin_settings, from open_log_tables to close_log_tables. */
static int	log_table_nestlevel = 0;

static void writer_sigterm(SIGNAL_ARGS);
static void writer_on_exit(int code, Datum arg);
static void reload_configuration(void);
static void serve_database(void);
static void pause_between_batches(void);
static long retention_interval_ms(void);
static int	write_queued(int max_records);
static int	insert_batch(LogRecord **records, int n);
static int	insert_row_by_row(LogRecord **records, int n);
static bool insert_in_subtransaction(const LogRecord *record);
static void open_log_tables(LogRecord **records, int n);
static void close_log_tables(void);
static void override_database_settings(void);
static int	pin_settings(void);
static void switch_to_owner(Oid owner, Oid *saved_user, int *saved_context);
static bool find_log_table(LogRecordKind kind, LogTable *table, bool missing_ok);
static void prepare_insert(LogRecordKind kind);
static void attempt_values(const LogRecord *r, Datum *values, bool *nulls);
static void route_change_values(const LogRecord *r, Datum *values, bool *nulls);
static void insert_record(const LogRecord *record);
static void insert_records(LogRecordKind kind, LogRecord **records, int n);
static bool apply_retention(void);
static void report_error(const char *what, int lost, bool abort_transaction);
static long ms_since(TimestampTz then);
static Oid	extension_namespace(Oid extension);

/* The columns of ai_call_log the writer fills, in the order of their types. */
static const char *const attempt_columns[] = {
	"call_id", "attempt", "route_index", "route_attempt", "started_at",
	"latency_ms", "model", "endpoint", "code", "error_class", "error",
	"streaming", "retry_after_ms", "backoff_ms", "outcome", "request_id",
	"model_returned", "finish_reason", "prompt_tokens", "completion_tokens",
	"new_connection", "role_name", "backend_pid", "prompt", "ttft_ms",
	"response_bytes", "session_role", "skipped_routes", "application_name",
	"tag", "provider_request_id"
};

static const Oid attempt_types[] = {
	UUIDOID, INT4OID, INT4OID, INT4OID, TIMESTAMPTZOID, FLOAT8OID,
	TEXTOID, TEXTOID, INT4OID, TEXTOID, TEXTOID, BOOLOID, INT4OID,
	INT4OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, INT4OID, INT4OID,
	BOOLOID, TEXTOID, INT4OID, TEXTOID, FLOAT8OID, INT4OID, TEXTOID,
	TEXTOID, TEXTOID, TEXTOID, TEXTOID
};

/* The columns of ai_route_events, in the order of their types. */
static const char *const route_change_columns[] = {
	"at", "endpoint", "model", "from_state", "to_state", "reason",
	"consecutive_failures", "window_requests", "window_failures",
	"next_probe_at", "error_class", "error_code", "backend_pid"
};

static const Oid route_change_types[] = {
	TIMESTAMPTZOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID,
	INT4OID, INT4OID, INT4OID, TIMESTAMPTZOID, TEXTOID, INT4OID, INT4OID
};

StaticAssertDecl(lengthof(attempt_columns) == lengthof(attempt_types) &&
				 lengthof(attempt_columns) == LOG_MAX_COLUMNS,
				 "ai_call_log's columns and types differ");
StaticAssertDecl(lengthof(route_change_columns) == lengthof(route_change_types) &&
				 lengthof(route_change_columns) <= LOG_MAX_COLUMNS,
				 "ai_route_events's columns and types differ");

/* The tables, by LogRecordKind. */
static const LogTarget log_targets[LOG_NKINDS] = {
	[LOG_RECORD_ATTEMPT] = {"ai_call_log", "started_at",
		lengthof(attempt_columns), attempt_columns, attempt_types,
	attempt_values},
	[LOG_RECORD_ROUTE_CHANGE] = {"ai_route_events", "at",
		lengthof(route_change_columns), route_change_columns,
	route_change_types, route_change_values},
};

/*
 * Register the ai_resilience.log_writers static writers; from _PG_init,
 * while shared_preload_libraries is processed.
 */
void
logwriter_register(void)
{
	BackgroundWorker worker;
	int			i;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	/* exit code 1 after serving a database: start again at once */
	worker.bgw_restart_time = 0;
	strlcpy(worker.bgw_library_name, "pg_ai_resilience", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "air_log_writer_main", BGW_MAXLEN);
	strlcpy(worker.bgw_type, "pg_ai_resilience log writer", BGW_MAXLEN);
	worker.bgw_notify_pid = 0;
	for (i = 0; i < air_log_writers; i++)
	{
		snprintf(worker.bgw_name, BGW_MAXLEN,
				 "pg_ai_resilience log writer %d", i + 1);
		worker.bgw_main_arg = Int32GetDatum(i);
		RegisterBackgroundWorker(&worker);
	}
}

/*
 * Entry point of log writer number main_arg: wait for a database to serve,
 * serve it, and exit with code 1 to be started again (also after SIGTERM:
 * during a shutdown the postmaster restarts no worker).
 */
void
air_log_writer_main(Datum main_arg)
{
	Oid			dboid;

	writer_index = DatumGetInt32(main_arg);
	before_shmem_exit(writer_on_exit, (Datum) 0);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, writer_sigterm);
	BackgroundWorkerUnblockSignals();

	while ((writer_db_index = logq_writer_claim(writer_index, &dboid)) < 0)
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_EXIT_ON_PM_DEATH, -1L,
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		if (ConfigReloadPending)
			reload_configuration();
		if (got_sigterm)
		{
			writer_done = true;
			proc_exit(1);
		}
	}

	writer_connecting = true;
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	writer_connecting = false;

	/*
	 * Commits need not wait for their WAL flush, which would slow every
	 * batch: ai_flush_log waits for it when a caller needs the rows durable.
	 */
	SetConfigOption("synchronous_commit", "off", PGC_SUSET, PGC_S_OVERRIDE);
	override_database_settings();
	pgstat_report_appname("pg_ai_resilience log writer");
	batch_memory = AllocSetContextCreate(TopMemoryContext,
										 "pg_ai_resilience log writer",
										 ALLOCSET_DEFAULT_SIZES);
	serve_database();

	/* SIGTERM: the queue may hold more than a batch; write it all once */
	if (got_sigterm)
		(void) write_queued(air_log_queue_size);
	pgstat_report_stat(true);

	/* code 0 would unregister the worker; during shutdown none restarts */
	writer_done = true;
	proc_exit(1);
}

/*
 * Take a reload of the configuration (SIGHUP).  Writer 0 then warns in the
 * server log about settings that cannot work together (secrets.c), which a
 * reload accepts one by one: one process to say it once, after the whole
 * file is read.
 */
static void
reload_configuration(void)
{
	ConfigReloadPending = false;
	ProcessConfigFile(PGC_SIGHUP);
	if (writer_index == 0)
		secrets_warn_problems();
}

/*
 * Write the database's records until the writer should leave it (idle, or
 * its slice is over while another database waits) or SIGTERM comes; apply
 * the retention on its own timer in between.
 */
static void
serve_database(void)
{
	TimestampTz served_since = GetCurrentTimestamp();
	TimestampTz idle_since = served_since;
	TimestampTz retention_at = 0;
	bool		more_retention = false;

	for (;;)
	{
		TimestampTz now;
		long		timeout_ms;
		int			written;

		if (ConfigReloadPending)
			reload_configuration();
		if (got_sigterm)
			return;

		written = write_queued(WRITER_BATCH);
		now = GetCurrentTimestamp();
		if (written > 0)
			idle_since = now;

		if (air_log_retention_s > 0 &&
			(more_retention ||
			 TimestampDifferenceExceeds(retention_at, now,
										retention_interval_ms())))
		{
			more_retention = apply_retention();
			retention_at = now;
		}

		/* so that autovacuum sees our inserts and deletes soon */
		pgstat_report_stat(written == 0);

		if (logq_writer_leave(writer_index,
							  TimestampDifferenceExceeds(idle_since, now,
														 WRITER_IDLE_EXIT_MS),
							  TimestampDifferenceExceeds(served_since, now,
														 WRITER_SLICE_MS)))
			return;

		/*
		 * Under load, pause between batches so that records gather: one
		 * commit per log_writer_delay instead of one per few records.  The
		 * first record after an idle spell goes at once.
		 */
		if (written > 0 || more_retention)
		{
			if (written > 0)
				pause_between_batches();
			continue;
		}
		timeout_ms = Max(10, WRITER_IDLE_EXIT_MS - ms_since(idle_since));
		if (air_log_retention_s > 0)
			timeout_ms = Min(timeout_ms,
							 Max(10, retention_interval_ms() - ms_since(retention_at)));
		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 timeout_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * Sleep ai_resilience.log_writer_delay, unless SIGTERM comes: the latch
 * that backends set for new records does not cut the pause short, since
 * the writer looks at the queue right after it anyway.
 */
static void
pause_between_batches(void)
{
	TimestampTz end = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
												  air_log_writer_delay_ms);
	long		left_ms;

	while (!got_sigterm &&
		   (left_ms = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), end)) > 0)
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 left_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

/*
 * Time between two retention passes: RETENTION_INTERVAL_MS, or half the
 * retention when that is shorter, so that rows live at most 1.5 times the
 * retention.
 */
static long
retention_interval_ms(void)
{
	return Min((long) RETENTION_INTERVAL_MS, (long) air_log_retention_s * 500L);
}

/*
 * SIGTERM: a writer waiting for a lock (a user's LOCK on ai_call_log) dies
 * at once, as a backend would; otherwise it finishes the work in hand.
 */
static void
writer_sigterm(SIGNAL_ARGS)
{
	int			save_errno = errno;

	got_sigterm = true;
	if (MyProc != NULL && ((volatile PGPROC *) MyProc)->waitLock != NULL)
		die(postgres_signal_arg);
	SetLatch(MyLatch);
	errno = save_errno;
}

/* However the writer ends, its database must find it gone. */
static void
writer_on_exit(int code, Datum arg)
{
	logq_writer_exit(writer_index, writer_connecting, !writer_done);
}

/*
 * Write up to max_records of the database's queued records, in batches;
 * returns how many were handled (written or lost).
 */
static int
write_queued(int max_records)
{
	LogRecord  *records[WRITER_BATCH];
	int			done = 0;

	while (done < max_records)
	{
		int			n = logq_writer_take(writer_db_index, records,
										 Min(WRITER_BATCH, max_records - done));
		int			written;

		if (n == 0)
			break;
		pgstat_report_activity(STATE_RUNNING, "writing ai_call_log");
		written = insert_batch(records, n);
		if (written < 0)
			written = insert_row_by_row(records, n);

		/*
		 * The batch is committed: give it back before anything can stop us,
		 * or the next writer would write it again.
		 */
		logq_writer_release(writer_db_index, n, written, XactLastCommitEnd);
		done += n;
		MemoryContextReset(batch_memory);
	}
	if (done > 0)
		pgstat_report_activity(STATE_IDLE, NULL);
	return done;
}

/*
 * Insert records in one transaction.  Returns n, 0 when they cannot be
 * written at all (no table, failed commit), or -1 when the batch failed in
 * a way that writing row by row may get round.
 */
static int
insert_batch(LogRecord **records, int n)
{
	MemoryContext old_context = MemoryContextSwitchTo(batch_memory);
	volatile bool table_found = false;
	volatile bool rows_inserted = false;
	int			result;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PG_TRY();
	{
		LogRecord **group = palloc(sizeof(LogRecord *) * n);
		int			missing = 0;
		int			kind;

		open_log_tables(records, n);
		table_found = true;
		/* one statement per kind of record, in the queue's order */
		for (kind = 0; kind < LOG_NKINDS; kind++)
		{
			int			m = 0;
			int			i;

			for (i = 0; i < n; i++)
				if (records[i]->kind == kind)
					group[m++] = records[i];
			if (m == 0)
				continue;
			if (!OidIsValid(log_tables[kind].relid))
				missing += m;
			else
				insert_records((LogRecordKind) kind, group, m);
		}
		rows_inserted = true;
		close_log_tables();
		CommitTransactionCommand();
		result = n - missing;
	}
	PG_CATCH();
	{
		/* rows that went in but were not committed may go in one by one */
		bool		retry = table_found && rows_inserted == false;

		MemoryContextSwitchTo(batch_memory);
		report_error(psprintf("could not write %d records to ai_call_log%s",
							  n, retry ? ", retrying row by row" : ""),
					 retry ? 0 : n, true);
		result = retry ? -1 : 0;
	}
	PG_END_TRY();

	MemoryContextSwitchTo(old_context);
	return result;
}

/*
 * Insert records one by one, each in a subtransaction of one transaction;
 * returns how many were committed.
 */
static int
insert_row_by_row(LogRecord **records, int n)
{
	MemoryContext old_context = MemoryContextSwitchTo(batch_memory);
	volatile int inserted = 0;
	int			result;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PG_TRY();
	{
		int			i;

		open_log_tables(records, n);
		for (i = 0; i < n; i++)
			if (insert_in_subtransaction(records[i]))
				inserted++;
		close_log_tables();
		CommitTransactionCommand();
		result = inserted;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(batch_memory);
		report_error(psprintf("could not write %d records to ai_call_log", n),
					 n, true);
		result = 0;
	}
	PG_END_TRY();

	MemoryContextSwitchTo(old_context);
	return result;
}

/*
 * In a new transaction, get ready to insert records: SPI, the pinned
 * settings, a snapshot, and for each kind of record among them its table
 * (locked) and prepared INSERTs.  ai_call_log must exist; an
 * ai_route_events that does not yet (the library is newer than the
 * extension's objects, until ALTER EXTENSION UPDATE) is left invalid in
 * log_tables, and its records are lost.
 */
static void
open_log_tables(LogRecord **records, int n)
{
	bool		present[LOG_NKINDS] = {false};
	int			kind;
	int			i;

	for (i = 0; i < n; i++)
		present[records[i]->kind] = true;
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	log_table_nestlevel = pin_settings();
	PushActiveSnapshot(GetTransactionSnapshot());
	for (kind = 0; kind < LOG_NKINDS; kind++)
	{
		log_tables[kind].relid = InvalidOid;
		if (present[kind] &&
			find_log_table((LogRecordKind) kind, &log_tables[kind],
						   kind != LOG_RECORD_ATTEMPT))
			prepare_insert((LogRecordKind) kind);
	}
}

/* Undo open_log_tables before the commit. */
static void
close_log_tables(void)
{
	AtEOXact_GUC(false, log_table_nestlevel);
	PopActiveSnapshot();
	SPI_finish();
}

/*
 * Override what a database owner could attach to the database and would
 * stop the writer: a read-only default refuses every insert, serializable
 * adds failures.  search_path and lock_timeout are pinned per transaction
 * (pin_settings); statement_timeout and idle_in_transaction_session_timeout
 * are never armed in a background worker.
 */
static void
override_database_settings(void)
{
	SetConfigOption("default_transaction_read_only", "off",
					PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("default_transaction_isolation", "read committed",
					PGC_SUSET, PGC_S_OVERRIDE);
}

/*
 * Pin search_path and lock_timeout for the statements that follow, in a
 * new GUC nest level (so that whatever the table owner's code sets is
 * undone with it); returns the level for AtEOXact_GUC.  An abort undoes it
 * too.
 */
static int
pin_settings(void)
{
	int			nestlevel = NewGUCNestLevel();

	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("lock_timeout", WRITER_LOCK_TIMEOUT,
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	return nestlevel;
}

/*
 * Become the table's owner for the statements that follow, as a restricted
 * operation; saved_user and saved_context are what to restore.
 */
static void
switch_to_owner(Oid owner, Oid *saved_user, int *saved_context)
{
	GetUserIdAndSecContext(saved_user, saved_context);
	SetUserIdAndSecContext(owner, *saved_context | OWNER_SEC_CONTEXT);
}

/*
 * Insert one record in a subtransaction; false if it failed, or if its
 * table is missing.
 */
static bool
insert_in_subtransaction(const LogRecord *record)
{
	MemoryContext context = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	volatile bool inserted = true;

	if (!OidIsValid(log_tables[record->kind].relid))
		return false;
	BeginInternalSubTransaction(NULL);
	PG_TRY();
	{
		insert_record(record);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(context);
		report_error(psprintf("could not write a record to %s",
							  log_targets[record->kind].table), 1, false);
		RollbackAndReleaseCurrentSubTransaction();
		inserted = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(context);
	CurrentResourceOwner = owner;
	return inserted;
}

/*
 * Find this database's table for records of kind, lock it for writing
 * (waiting at most lock_timeout) and get its owner.  When missing: an
 * error, or false with missing_ok.
 */
static bool
find_log_table(LogRecordKind kind, LogTable *table, bool missing_ok)
{
	const LogTarget *target = &log_targets[kind];
	Oid			extension;
	Oid			namespace;
	char	   *schema_name;
	HeapTuple	tuple;

	extension = get_extension_oid("pg_ai_resilience", true);
	if (!OidIsValid(extension))
	{
		if (missing_ok)
			return false;
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"pg_ai_resilience\" is not installed in database \"%s\"",
						get_database_name(MyDatabaseId))));
	}
	namespace = extension_namespace(extension);
	schema_name = get_namespace_name(namespace);
	table->relid = InvalidOid;
	if (schema_name != NULL)
		table->relid = RangeVarGetRelidExtended(makeRangeVar(schema_name,
															 (char *) target->table,
															 -1),
												RowExclusiveLock,
												RVR_MISSING_OK, NULL, NULL);
	if (!OidIsValid(table->relid))
	{
		if (missing_ok)
			return false;
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("table \"%s\" of extension \"pg_ai_resilience\" is missing",
						target->table)));
	}
	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(table->relid));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for relation %u", table->relid);
	table->owner = ((Form_pg_class) GETSTRUCT(tuple))->relowner;
	ReleaseSysCache(tuple);
	table->schema = (char *) quote_identifier(schema_name);

	/*
	 * A table of an older version lacks the last columns, between the
	 * library's upgrade and ALTER EXTENSION UPDATE: fill the ones it has.
	 */
	table->ncolumns = target->ncolumns;
	while (table->ncolumns > 1 &&
		   get_attnum(table->relid,
					  target->column_names[table->ncolumns - 1]) == InvalidAttrNumber)
		table->ncolumns--;
	return true;
}

/*
 * Prepare the INSERTs for the table of kind, unless they are prepared
 * already: one that takes a row, for rows written one by one, and one that
 * takes an array per column and inserts a whole batch in one statement
 * (one executor run instead of one per row).  They fill the table's first
 * ncolumns columns.
 */
static void
prepare_insert(LogRecordKind kind)
{
	const LogTarget *target = &log_targets[kind];
	const LogTable *table = &log_tables[kind];
	InsertPlans *plans = &insert_plans[kind];
	int			ncolumns = table->ncolumns;
	Oid			array_types[LOG_MAX_COLUMNS];
	StringInfoData columns;
	StringInfoData params;
	StringInfoData unnest;
	SPIPlanPtr	row_plan;
	SPIPlanPtr	batch_plan;
	Oid			saved_user;
	int			saved_context;
	int			i;

	if (plans->row != NULL && plans->relid == table->relid &&
		plans->ncolumns == ncolumns)
		return;

	initStringInfo(&columns);
	initStringInfo(&params);
	initStringInfo(&unnest);
	for (i = 0; i < ncolumns; i++)
	{
		const char *sep = i ? ", " : "";

		appendStringInfo(&columns, "%s%s", sep, target->column_names[i]);
		appendStringInfo(&params, "%s$%d", sep, i + 1);
		appendStringInfo(&unnest, "%spg_catalog.unnest($%d)", sep, i + 1);
		array_types[i] = get_array_type(target->column_types[i]);
	}

	switch_to_owner(table->owner, &saved_user, &saved_context);
	row_plan = SPI_prepare(psprintf("INSERT INTO %s.%s (%s) VALUES (%s)",
									table->schema, target->table,
									columns.data, params.data),
						   ncolumns, (Oid *) target->column_types);
	batch_plan = SPI_prepare(psprintf("INSERT INTO %s.%s (%s)"
									  " SELECT * FROM ROWS FROM (%s)",
									  table->schema, target->table,
									  columns.data, unnest.data),
							 ncolumns, array_types);
	SetUserIdAndSecContext(saved_user, saved_context);
	if (row_plan == NULL || batch_plan == NULL)
		elog(ERROR, "could not prepare the %s insert: %s",
			 target->table, SPI_result_code_string(SPI_result));
	if (SPI_keepplan(row_plan) != 0 || SPI_keepplan(batch_plan) != 0)
		elog(ERROR, "could not keep the %s insert plans", target->table);
	if (plans->row != NULL)
		SPI_freeplan(plans->row);
	if (plans->batch != NULL)
		SPI_freeplan(plans->batch);
	plans->row = row_plan;
	plans->batch = batch_plan;
	plans->relid = table->relid;
	plans->ncolumns = ncolumns;
}

#define SET_VALUE(datum) (values[i++] = (datum))
#define SET_NULLABLE(isnull, datum) \
	(nulls[i] = (isnull), values[i] = (isnull) ? (Datum) 0 : (datum), i++)
#define STRING_IS_NULL(s) (r->str_len[s] == LOG_STR_NULL)
#define STRING_DATUM(s) \
	(STRING_IS_NULL(s) ? (Datum) 0 : \
	 PointerGetDatum(cstring_to_text_with_len(r->data + r->str_offset[s], r->str_len[s])))

/* The ai_call_log values of an attempt, in the order of attempt_types. */
static void
attempt_values(const LogRecord *r, Datum *values, bool *nulls)
{
	const char *class_name = policy_class_name((AttemptClass) r->error_class);
	int			i = 0;

	memset(nulls, 0, sizeof(bool) * LOG_MAX_COLUMNS);
	SET_VALUE(UUIDPGetDatum(&r->call_id));
	SET_VALUE(Int32GetDatum(r->attempt));
	SET_VALUE(Int32GetDatum(r->route_index));
	SET_VALUE(Int32GetDatum(r->route_attempt));
	SET_VALUE(TimestampTzGetDatum(r->started_at));
	SET_VALUE(Float8GetDatum(r->latency_ms));
	SET_VALUE(STRING_DATUM(LOG_STR_MODEL));
	SET_VALUE(STRING_DATUM(LOG_STR_ENDPOINT));
	SET_NULLABLE(r->http_status == 0, Int32GetDatum(r->http_status));
	SET_NULLABLE(class_name == NULL, CStringGetTextDatum(class_name));
	SET_NULLABLE(STRING_IS_NULL(LOG_STR_ERROR), STRING_DATUM(LOG_STR_ERROR));
	SET_VALUE(BoolGetDatum(r->streaming));
	SET_NULLABLE(r->retry_after_ms < 0, Int32GetDatum(r->retry_after_ms));
	SET_NULLABLE(r->backoff_ms < 0, Int32GetDatum(r->backoff_ms));
	SET_VALUE(CStringGetTextDatum(policy_outcome_name((AttemptOutcome) r->outcome)));
	SET_NULLABLE(STRING_IS_NULL(LOG_STR_REQUEST_ID), STRING_DATUM(LOG_STR_REQUEST_ID));
	SET_NULLABLE(STRING_IS_NULL(LOG_STR_MODEL_RETURNED), STRING_DATUM(LOG_STR_MODEL_RETURNED));
	SET_NULLABLE(STRING_IS_NULL(LOG_STR_FINISH_REASON), STRING_DATUM(LOG_STR_FINISH_REASON));
	SET_NULLABLE(r->prompt_tokens < 0, Int32GetDatum(r->prompt_tokens));
	SET_NULLABLE(r->completion_tokens < 0, Int32GetDatum(r->completion_tokens));
	SET_VALUE(BoolGetDatum(r->new_connection));
	SET_VALUE(STRING_DATUM(LOG_STR_ROLE_NAME));
	SET_VALUE(Int32GetDatum(r->backend_pid));
	SET_NULLABLE(STRING_IS_NULL(LOG_STR_PROMPT), STRING_DATUM(LOG_STR_PROMPT));
	SET_NULLABLE(r->ttft_ms < 0, Float8GetDatum(r->ttft_ms));
	SET_NULLABLE(r->response_bytes < 0, Int32GetDatum(r->response_bytes));
	SET_NULLABLE(STRING_IS_NULL(LOG_STR_SESSION_ROLE), STRING_DATUM(LOG_STR_SESSION_ROLE));
	SET_NULLABLE(STRING_IS_NULL(LOG_STR_SKIPPED_ROUTES), STRING_DATUM(LOG_STR_SKIPPED_ROUTES));
	SET_NULLABLE(STRING_IS_NULL(LOG_STR_APPLICATION_NAME), STRING_DATUM(LOG_STR_APPLICATION_NAME));
	SET_NULLABLE(STRING_IS_NULL(LOG_STR_TAG), STRING_DATUM(LOG_STR_TAG));
	SET_NULLABLE(STRING_IS_NULL(LOG_STR_PROVIDER_REQUEST_ID), STRING_DATUM(LOG_STR_PROVIDER_REQUEST_ID));
	Assert(i == lengthof(attempt_types));
}

/*
 * The ai_route_events values of a route's change of state, in the order of
 * route_change_types.
 */
static void
route_change_values(const LogRecord *r, Datum *values, bool *nulls)
{
	const char *class_name = policy_class_name((AttemptClass) r->error_class);
	int			i = 0;

	memset(nulls, 0, sizeof(bool) * LOG_MAX_COLUMNS);
	SET_VALUE(TimestampTzGetDatum(r->started_at));
	SET_VALUE(STRING_DATUM(LOG_STR_ENDPOINT));
	SET_NULLABLE(STRING_IS_NULL(LOG_STR_MODEL), STRING_DATUM(LOG_STR_MODEL));
	SET_VALUE(CStringGetTextDatum(breaker_state_name((BreakerState) r->from_state)));
	SET_VALUE(CStringGetTextDatum(breaker_state_name((BreakerState) r->to_state)));
	SET_VALUE(CStringGetTextDatum(breaker_change_name((BreakerChange) r->change)));
	SET_VALUE(Int32GetDatum(r->consecutive_failures));
	SET_VALUE(Int32GetDatum(r->window_requests));
	SET_VALUE(Int32GetDatum(r->window_failures));
	SET_NULLABLE(r->next_probe_at == 0, TimestampTzGetDatum(r->next_probe_at));
	SET_NULLABLE(class_name == NULL, CStringGetTextDatum(class_name));
	SET_NULLABLE(r->http_status == 0, Int32GetDatum(r->http_status));
	SET_VALUE(Int32GetDatum(r->backend_pid));
	Assert(i == lengthof(route_change_types));
}

#undef SET_VALUE
#undef SET_NULLABLE
#undef STRING_IS_NULL
#undef STRING_DATUM

/* Insert one record with its table's prepared row plan, as the table's owner. */
static void
insert_record(const LogRecord *record)
{
	const LogTarget *target = &log_targets[record->kind];
	Datum		values[LOG_MAX_COLUMNS];
	bool		nulls[LOG_MAX_COLUMNS];
	char		spi_nulls[LOG_MAX_COLUMNS];
	Oid			saved_user;
	int			saved_context;
	int			rc;
	int			i;

	target->values(record, values, nulls);
	for (i = 0; i < LOG_MAX_COLUMNS; i++)
		spi_nulls[i] = nulls[i] ? 'n' : ' ';
	switch_to_owner(log_tables[record->kind].owner, &saved_user, &saved_context);
	rc = SPI_execute_plan(insert_plans[record->kind].row, values, spi_nulls,
						  false, 0);
	SetUserIdAndSecContext(saved_user, saved_context);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "could not insert into %s: %s", target->table,
			 SPI_result_code_string(rc));
}

/*
 * Insert n records of kind in one statement, an array per column, as the
 * table's owner.
 */
static void
insert_records(LogRecordKind kind, LogRecord **records, int n)
{
	const LogTarget *target = &log_targets[kind];
	int			ncolumns = insert_plans[kind].ncolumns;
	Datum	   *column_values[LOG_MAX_COLUMNS];
	bool	   *column_nulls[LOG_MAX_COLUMNS];
	Datum		arrays[LOG_MAX_COLUMNS];
	Datum		row_values[LOG_MAX_COLUMNS];
	bool		row_nulls[LOG_MAX_COLUMNS];
	int			dims[1] = {n};
	int			lbs[1] = {1};
	Oid			saved_user;
	int			saved_context;
	int			rc;
	int			c;
	int			i;

	for (c = 0; c < ncolumns; c++)
	{
		column_values[c] = palloc(sizeof(Datum) * n);
		column_nulls[c] = palloc(sizeof(bool) * n);
	}
	for (i = 0; i < n; i++)
	{
		target->values(records[i], row_values, row_nulls);
		for (c = 0; c < ncolumns; c++)
		{
			column_values[c][i] = row_values[c];
			column_nulls[c][i] = row_nulls[c];
		}
	}
	for (c = 0; c < ncolumns; c++)
	{
		int16		typlen;
		bool		typbyval;
		char		typalign;

		get_typlenbyvalalign(target->column_types[c], &typlen, &typbyval,
							 &typalign);
		arrays[c] = PointerGetDatum(construct_md_array(column_values[c],
													   column_nulls[c], 1,
													   dims, lbs,
													   target->column_types[c],
													   typlen, typbyval,
													   typalign));
	}
	switch_to_owner(log_tables[kind].owner, &saved_user, &saved_context);
	rc = SPI_execute_plan(insert_plans[kind].batch, arrays, NULL, false, 0);
	SetUserIdAndSecContext(saved_user, saved_context);
	if (rc != SPI_OK_INSERT || SPI_processed != (uint64) n)
		elog(ERROR, "could not insert into %s: %s", target->table,
			 SPI_result_code_string(rc));
}

/*
 * Delete up to RETENTION_BATCH rows older than ai_resilience.log_retention,
 * as the table's owner.  True when there may be more to delete.  The cutoff
 * is computed here and passed in, so the statement calls no function and
 * names its operators.
 */
static bool
apply_retention(void)
{
	MemoryContext old_context = MemoryContextSwitchTo(batch_memory);
	volatile bool more = false;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PG_TRY();
	{
		int			nestlevel;
		int			kind;

		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		nestlevel = pin_settings();
		PushActiveSnapshot(GetTransactionSnapshot());
		for (kind = 0; kind < LOG_NKINDS; kind++)
		{
			const LogTarget *target = &log_targets[kind];
			LogTable	table;
			Oid			argtypes[1] = {TIMESTAMPTZOID};
			Datum		args[1];
			Oid			saved_user;
			int			saved_context;
			char	   *sql;
			int			rc;

			if (!find_log_table((LogRecordKind) kind, &table, true))
				continue;
			pgstat_report_activity(STATE_RUNNING, "deleting old log rows");
			args[0] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp() -
										  (TimestampTz) air_log_retention_s * USECS_PER_SEC);
			sql = psprintf("DELETE FROM %s.%s WHERE id OPERATOR(pg_catalog.=) ANY"
						   " (SELECT id FROM %s.%s"
						   " WHERE %s OPERATOR(pg_catalog.<) $1"
						   " ORDER BY %s LIMIT %d)",
						   table.schema, target->table, table.schema,
						   target->table, target->time_column,
						   target->time_column, RETENTION_BATCH);
			switch_to_owner(table.owner, &saved_user, &saved_context);
			rc = SPI_execute_with_args(sql, 1, argtypes, args, NULL, false, 0);
			SetUserIdAndSecContext(saved_user, saved_context);
			if (rc != SPI_OK_DELETE)
				elog(ERROR, "could not delete old %s rows: %s",
					 target->table, SPI_result_code_string(rc));
			if (SPI_processed == RETENTION_BATCH)
				more = true;
		}
		PopActiveSnapshot();
		AtEOXact_GUC(false, nestlevel);
		SPI_finish();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(batch_memory);
		report_error("could not apply ai_resilience.log_retention", 0, true);
		more = false;
	}
	PG_END_TRY();

	pgstat_report_activity(STATE_IDLE, NULL);
	MemoryContextSwitchTo(old_context);
	MemoryContextReset(batch_memory);
	return more;
}

/*
 * Handle the error being thrown, in a PG_CATCH block: abort every
 * transaction level if asked (a subtransaction is the caller's to roll
 * back), keep the message for ai_log_stats(), and log it unless another was
 * logged less than ERROR_LOG_INTERVAL_MS ago.  The DETAIL is left out: for
 * a refused row it holds the row, prompt included.
 */
static void
report_error(const char *what, int lost, bool abort_transaction)
{
	ErrorData  *edata = CopyErrorData();
	char		message[256];
	int			not_logged;

	FlushErrorState();
	if (abort_transaction)
		AbortOutOfAnyTransaction();

	snprintf(message, sizeof(message), "%s: %s", what, edata->message);
	if (logq_report_error(message, &not_logged, ERROR_LOG_INTERVAL_MS))
		ereport(WARNING,
				(errcode(edata->sqlerrcode),
				 errmsg("pg_ai_resilience log writer: %s", message),
				 lost > 0 ? errdetail("%d attempt records are lost.", lost) : 0,
				 not_logged > 0 ?
				 errhint("%d similar errors in the last %d s were not logged; see ai_log_stats().",
						 not_logged, ERROR_LOG_INTERVAL_MS / 1000) : 0));
	FreeErrorData(edata);
}

/* The schema an extension was installed in (PostgreSQL 15 has no export). */
static Oid
extension_namespace(Oid extension)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;
	Oid			namespace = InvalidOid;

	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_oid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(extension));
	scan = systable_beginscan(rel, ExtensionOidIndexId, true, NULL, 1, &key);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
		namespace = ((Form_pg_extension) GETSTRUCT(tuple))->extnamespace;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return namespace;
}

/* Milliseconds since a past time. */
static long
ms_since(TimestampTz then)
{
	return (long) ((GetCurrentTimestamp() - then) / 1000);
}
