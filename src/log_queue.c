/*-------------------------------------------------------------------------
 *
 * log_queue.c
 *	  The shared-memory queue of attempt records waiting for a log writer.
 *
 * Backends put one record per HTTP attempt into a bounded array of
 * fixed-size slots (ai_resilience.log_queue_size of them); a log writer
 * (log_writer.c) takes one database's records in order, inserts them into
 * that database's ai_call_log in its own transaction, and only then gives
 * their slots back.  So a record leaves the queue once it is committed or
 * counted lost, and a writer killed mid-batch leaves its batch for the next
 * writer.
 *
 * Free slots form one list; each database with records has its own FIFO
 * list of slots (an entry of databases[]).  A database holds at most
 * 1/LOG_DATABASE_SHARE of the slots: a database whose writer is blocked
 * (a user's lock on its ai_call_log) fills its own share and then loses its
 * own records, while up to LOG_DATABASE_SHARE - 1 such databases leave the
 * others room.  Records carry a queue-wide sequence number and the queuing
 * backend's MyBackendId and pid; done_seq[backend id] is the highest number
 * written or lost of the backend that holds that id now (done_pid), and
 * done_lsn[backend id] the end of the commit that wrote it, which is all
 * ai_flush_log needs (it waits for done_seq, then flushes WAL up to
 * done_lsn) because a backend's records all go to one database and are
 * handled in order.  Records of an earlier holder of the id, perhaps for
 * another database, do not move them.
 *
 * Writers are ai_resilience.log_writers static background workers,
 * registered at server start (log_writer.c): so they hold
 * max_worker_processes slots that no parallel query or other dynamic worker
 * can take.  A worker not serving a database is unconnected and sleeps on
 * its latch, listed in writers[] as idle.  A backend that queues a record
 * for a database without a writer assigns it an idle writer and sets its
 * latch; with none idle the database waits (waiting_since), and the next
 * writer to become free takes the database that has waited longest.  A
 * writer connects to its database, writes until the database has been idle
 * a while, or until it has served it for a time slice while another
 * database waits, and then exits with code 1, which has the postmaster
 * start it again at once, unconnected (a process connects to one database
 * in its life).  A running writer is woken by setting its latch, by the
 * record that makes its database's list non-empty (a writer sleeps only
 * when its list is empty).  Backends waiting for room sleep on room_cv,
 * ai_flush_log on done_cv; a writer broadcasts both when it gives slots
 * back.
 *
 * LOCKING RULES: every field of LogQueueShared, the slot links, done_seq,
 * done_lsn and done_pid are read and changed under the queue's LWLock
 * (exclusive to change, shared to read).  A slot's record is written before
 * it is linked into a database's list, and is not changed while it is in
 * the list, so its writer reads it without the lock until it releases it.
 * Nothing is allocated, and no error is raised, while the lock is held.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xlog.h"
#include "miscadmin.h"
#include "storage/condition_variable.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "guc.h"
#include "log_queue.h"

/*
 * A database whose writers died this many times in a row without writing
 * has its records counted lost, so that records a writer cannot survive do
 * not make it crash-loop (writers are restarted at once).
 */
#define WRITER_MAX_FAILURES	3

/* Name of the shared memory area and of the LWLock tranche. */
#define LOGQ_SHMEM_NAME		"pg_ai_resilience log queue"
#define LOGQ_TRANCHE_NAME	"pg_ai_resilience"

/* A database with records queued or a writer. */
typedef struct LogDatabase
{
	Oid			dboid;			/* InvalidOid: entry never used */
	int			head;			/* first queued slot; -1: none */
	int			tail;			/* last queued slot; -1: none */
	int			count;			/* slots in the list */
	int			writer;			/* index into writers[]; -1: none */
	TimestampTz waiting_since;	/* with records and no writer: since when */
	int			failures;		/* writers that died since the last release */
} LogDatabase;

/* A log writer process, whether it serves a database or is idle. */
typedef struct LogWriter
{
	int			procno;			/* its PGPROC; -1: not running */
	int			db_index;		/* the database it serves; -1: idle */
} LogWriter;

/* The queue's shared state; the arrays follow it in shared memory. */
typedef struct LogQueueShared
{
	LWLock	   *lock;
	ConditionVariable room_cv;	/* slots were given back */
	ConditionVariable done_cv;	/* records were written or lost */
	int			nslots;
	int			free_head;		/* first free slot; -1: none */
	int			nfree;
	uint64		next_seq;		/* number of the next record queued */
	uint64		queued;			/* records queued since start */
	uint64		written;		/* records committed */
	uint64		lost;			/* records dropped, queued or not */
	uint64		queue_waits;	/* records that had to wait for room */
	char		last_error[256];	/* a writer's last error; "" if none */
	TimestampTz last_error_at;
	TimestampTz error_logged_at;	/* a writer's last error in the server log */
	int			errors_not_logged;	/* errors since, not in the server log */
	LogDatabase databases[LOG_MAX_DATABASES];
	LogWriter	writers[LOG_MAX_WRITERS];
} LogQueueShared;

/*---- shared state and this backend's view of it ----*/

static LogQueueShared *logq = NULL;
static uint64 *logq_done_seq = NULL;	/* [MaxBackends + 1] */
static XLogRecPtr *logq_done_lsn = NULL;	/* [MaxBackends + 1] */
static int *logq_done_pid = NULL;	/* [MaxBackends + 1]: done_seq's owner */
static int *logq_next = NULL;	/* [nslots]: next slot in its list */
static char *logq_slots = NULL; /* nslots * LOG_SLOT_SIZE */

/* The number of this backend's last queued record; 0: none. */
static uint64 my_last_seq = 0;

static Size logq_shmem_size(void);
static LogRecord *slot_record(int slot);
static LogDatabase *find_database(Oid dboid);
static int	database_share(void);
static int	assign_writer(LogDatabase *db, TimestampTz now);
static int	longest_waiting(void);
static void wake_writer(int procno);
static void release_head_slot(LogDatabase *db, XLogRecPtr commit_lsn);
static void drop_records(LogDatabase *db);
static long ms_left(TimestampTz deadline);

/* Bytes of shared memory the queue needs. */
static Size
logq_shmem_size(void)
{
	Size		size = MAXALIGN(sizeof(LogQueueShared));

	size = add_size(size, MAXALIGN(mul_size(MaxBackends + 1, sizeof(uint64))));
	size = add_size(size, MAXALIGN(mul_size(MaxBackends + 1, sizeof(XLogRecPtr))));
	size = add_size(size, MAXALIGN(mul_size(MaxBackends + 1, sizeof(int))));
	size = add_size(size, MAXALIGN(mul_size(air_log_queue_size, sizeof(int))));
	size = add_size(size, mul_size(air_log_queue_size, LOG_SLOT_SIZE));
	return size;
}

/* Ask for the queue's shared memory and lock (shmem_request_hook). */
void
logq_request_shmem(void)
{
	RequestAddinShmemSpace(logq_shmem_size());
	RequestNamedLWLockTranche(LOGQ_TRANCHE_NAME, 1);
}

/* Attach to the queue, creating it if needed (shmem_startup_hook). */
void
logq_init_shmem(void)
{
	bool		found;
	char	   *next;
	int			i;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	logq = ShmemInitStruct(LOGQ_SHMEM_NAME, logq_shmem_size(), &found);
	next = (char *) logq + MAXALIGN(sizeof(LogQueueShared));
	logq_done_seq = (uint64 *) next;
	next += MAXALIGN(sizeof(uint64) * (MaxBackends + 1));
	logq_done_lsn = (XLogRecPtr *) next;
	next += MAXALIGN(sizeof(XLogRecPtr) * (MaxBackends + 1));
	logq_done_pid = (int *) next;
	next += MAXALIGN(sizeof(int) * (MaxBackends + 1));
	logq_next = (int *) next;
	next += MAXALIGN(sizeof(int) * air_log_queue_size);
	logq_slots = next;

	if (!found)
	{
		memset(logq, 0, sizeof(LogQueueShared));
		logq->lock = &(GetNamedLWLockTranche(LOGQ_TRANCHE_NAME))->lock;
		ConditionVariableInit(&logq->room_cv);
		ConditionVariableInit(&logq->done_cv);
		logq->nslots = air_log_queue_size;
		logq->nfree = air_log_queue_size;
		logq->free_head = 0;
		for (i = 0; i < air_log_queue_size; i++)
			logq_next[i] = i + 1 < air_log_queue_size ? i + 1 : -1;
		logq->next_seq = 1;
		for (i = 0; i < LOG_MAX_DATABASES; i++)
		{
			logq->databases[i].head = logq->databases[i].tail = -1;
			logq->databases[i].writer = -1;
		}
		for (i = 0; i < LOG_MAX_WRITERS; i++)
			logq->writers[i].procno = logq->writers[i].db_index = -1;
		memset(logq_done_seq, 0, sizeof(uint64) * (MaxBackends + 1));
		memset(logq_done_lsn, 0, sizeof(XLogRecPtr) * (MaxBackends + 1));
		memset(logq_done_pid, 0, sizeof(int) * (MaxBackends + 1));
	}
	LWLockRelease(AddinShmemInitLock);
}

/* Whether the queue exists: the library was preloaded. */
bool
logq_is_ready(void)
{
	return logq != NULL;
}

/* The record in a slot. */
static LogRecord *
slot_record(int slot)
{
	return (LogRecord *) (logq_slots + (Size) slot * LOG_SLOT_SIZE);
}

/*
 * Queue a record for this backend's database, waiting up to wait_ms for
 * room in the database's share (cancellable); 0 never waits.  Raises no
 * error of its own, and allocates nothing, so that error cleanup and exit
 * callbacks may call it with wait_ms 0.  record->data must hold its
 * strings; the fields saying who queued it are filled in here.
 */
LogEnqueueResult
logq_enqueue(LogRecord *record, int wait_ms)
{
	TimestampTz deadline = 0;
	bool		waited = false;

	record->dboid = MyDatabaseId;
	record->backend_id = MyBackendId;
	record->backend_pid = MyProcPid;

	if (RecoveryInProgress())
	{
		LWLockAcquire(logq->lock, LW_EXCLUSIVE);
		logq->lost++;
		LWLockRelease(logq->lock);
		return LOGQ_LOST_RECOVERY;
	}

	for (;;)
	{
		LogDatabase *db;
		bool		give_up;
		bool		was_empty;
		int			wake_procno = -1;
		int			slot;

		LWLockAcquire(logq->lock, LW_EXCLUSIVE);
		db = find_database(MyDatabaseId);
		if (db == NULL)
		{
			logq->lost++;
			LWLockRelease(logq->lock);
			if (waited)
				ConditionVariableCancelSleep();
			return LOGQ_LOST_NO_DATABASE;
		}
		was_empty = db->count == 0;
		if (logq->nfree > 0 && db->count < database_share())
		{
			slot = logq->free_head;
			logq->free_head = logq_next[slot];
			logq->nfree--;
			record->seq = logq->next_seq++;
			memcpy(slot_record(slot), record, LOG_SLOT_SIZE);
			logq_next[slot] = -1;
			if (db->tail >= 0)
				logq_next[db->tail] = slot;
			else
				db->head = slot;
			db->tail = slot;
			db->count++;
			logq->queued++;
			my_last_seq = record->seq;

			/*
			 * The first record of this backend claims its done counter: a
			 * previous backend with the same id, whose records may still be
			 * queued for another database, no longer moves it.
			 */
			if (logq_done_pid[MyBackendId] != MyProcPid)
			{
				logq_done_pid[MyBackendId] = MyProcPid;
				logq_done_seq[MyBackendId] = 0;
				logq_done_lsn[MyBackendId] = InvalidXLogRecPtr;
			}
		}
		else
			slot = -1;

		/*
		 * A writer sleeps only after finding its list empty, and a record
		 * stays in the list until written: so only the first record after
		 * an empty spell needs to wake it.
		 */
		if (db->writer >= 0)
		{
			if (slot >= 0 && was_empty)
				wake_procno = logq->writers[db->writer].procno;
		}
		else if (db->count > 0)
			wake_procno = assign_writer(db, GetCurrentTimestamp());
		give_up = slot < 0 &&
			(wait_ms <= 0 || (waited && ms_left(deadline) <= 0));
		if (give_up)
			logq->lost++;
		else if (slot < 0 && !waited)
			logq->queue_waits++;
		LWLockRelease(logq->lock);

		wake_writer(wake_procno);

		if (slot >= 0)
		{
			if (waited)
				ConditionVariableCancelSleep();
			return waited ? LOGQ_QUEUED_AFTER_WAIT : LOGQ_QUEUED;
		}
		if (give_up)
		{
			if (waited)
				ConditionVariableCancelSleep();
			return LOGQ_LOST_FULL;
		}
		if (!waited)
		{
			deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), wait_ms);
			waited = true;
		}
		/* the first call only prepares the sleep; either way, look again */
		ConditionVariableTimedSleep(&logq->room_cv, ms_left(deadline),
									PG_WAIT_EXTENSION);
	}
}

/*
 * Wait until every record this backend queued is written or counted lost,
 * then until the WAL of the commits that wrote them is flushed (writers
 * commit asynchronously), so that a crash cannot lose them.  False when
 * timeout_ms passes first.  Cancellable.
 */
bool
logq_flush(long timeout_ms)
{
	TimestampTz deadline;

	if (my_last_seq == 0 || MyBackendId == InvalidBackendId)
		return true;
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);

	for (;;)
	{
		XLogRecPtr	commit_lsn = InvalidXLogRecPtr;
		bool		done;
		int			wake_procno = -1;

		LWLockAcquire(logq->lock, LW_EXCLUSIVE);
		done = logq_done_pid[MyBackendId] == MyProcPid &&
			logq_done_seq[MyBackendId] >= my_last_seq;
		if (done)
			commit_lsn = logq_done_lsn[MyBackendId];
		else
		{
			/* a writer that died leaves its records: assign another */
			LogDatabase *db = find_database(MyDatabaseId);

			if (db != NULL && db->count > 0 && db->writer < 0)
				wake_procno = assign_writer(db, GetCurrentTimestamp());
		}
		LWLockRelease(logq->lock);

		wake_writer(wake_procno);
		if (done)
		{
			ConditionVariableCancelSleep();
			if (!XLogRecPtrIsInvalid(commit_lsn))
				XLogFlush(commit_lsn);
			return true;
		}
		if (ms_left(deadline) <= 0)
		{
			ConditionVariableCancelSleep();
			return false;
		}
		ConditionVariableTimedSleep(&logq->done_cv, ms_left(deadline),
									PG_WAIT_EXTENSION);
	}
}

/* A snapshot of the queue's counters. */
void
logq_get_stats(LogQueueStats *stats)
{
	int			i;

	memset(stats, 0, sizeof(*stats));
	LWLockAcquire(logq->lock, LW_SHARED);
	stats->queued = logq->queued;
	stats->written = logq->written;
	stats->lost = logq->lost;
	stats->queue_waits = logq->queue_waits;
	stats->in_queue = logq->nslots - logq->nfree;
	for (i = 0; i < LOG_MAX_WRITERS; i++)
		if (logq->writers[i].db_index >= 0)
			stats->writers++;
	strlcpy(stats->last_error, logq->last_error, sizeof(stats->last_error));
	stats->last_error_at = logq->last_error_at;
	LWLockRelease(logq->lock);
}

/*
 * Called by writers[writer] while it is not connected: list it as running,
 * and return the database it is to serve (its entry, and its OID in
 * *dboid), or -1 when there is none yet (the caller sleeps on its latch,
 * which a backend sets when it assigns a database).  With no database
 * assigned it takes the one that has waited longest for a writer.
 */
int
logq_writer_claim(int writer, Oid *dboid)
{
	LogWriter  *w = &logq->writers[writer];
	int			db_index;

	LWLockAcquire(logq->lock, LW_EXCLUSIVE);
	w->procno = MyProc->pgprocno;
	if (w->db_index < 0)
	{
		db_index = longest_waiting();
		if (db_index >= 0)
		{
			w->db_index = db_index;
			logq->databases[db_index].writer = writer;
		}
	}
	db_index = w->db_index;
	*dboid = db_index >= 0 ? logq->databases[db_index].dboid : InvalidOid;
	LWLockRelease(logq->lock);
	return db_index;
}

/*
 * Point records[] at up to max of the database's oldest records; they stay
 * queued, unchanged, until logq_writer_release.  Returns how many.
 */
int
logq_writer_take(int db_index, LogRecord **records, int max)
{
	LogDatabase *db = &logq->databases[db_index];
	int			n = 0;
	int			slot;

	LWLockAcquire(logq->lock, LW_SHARED);
	for (slot = db->head; slot >= 0 && n < max && n < db->count;
		 slot = logq_next[slot])
		records[n++] = slot_record(slot);
	LWLockRelease(logq->lock);
	return n;
}

/*
 * Give back the ntaken records of the last take, of which nwritten were
 * committed by the commit ending at commit_lsn and the rest are lost, and
 * wake whoever waits for them.
 */
void
logq_writer_release(int db_index, int ntaken, int nwritten,
					XLogRecPtr commit_lsn)
{
	LogDatabase *db = &logq->databases[db_index];
	int			i;

	LWLockAcquire(logq->lock, LW_EXCLUSIVE);
	for (i = 0; i < ntaken && db->head >= 0; i++)
		release_head_slot(db, commit_lsn);
	db->failures = 0;
	logq->written += nwritten;
	logq->lost += ntaken - nwritten;
	LWLockRelease(logq->lock);

	ConditionVariableBroadcast(&logq->room_cv);
	ConditionVariableBroadcast(&logq->done_cv);
}

/*
 * Whether writers[writer] should stop serving its database: it has nothing
 * queued and idle_long says it has been idle long enough, or served_long
 * says its time slice is over and another database waits for a writer.  If
 * so the database is left without a writer (its records, if any, go to the
 * next free writer) and true is returned: the caller exits.
 */
bool
logq_writer_leave(int writer, bool idle_long, bool served_long)
{
	LogWriter  *w = &logq->writers[writer];
	LogDatabase *db = &logq->databases[w->db_index];
	bool		leave;
	int			wake_procno = -1;

	LWLockAcquire(logq->lock, LW_EXCLUSIVE);
	leave = (idle_long && db->count == 0) ||
		(served_long && longest_waiting() >= 0);
	if (leave)
	{
		/* not idle either: it exits, and comes back through claim */
		db->writer = -1;
		w->db_index = -1;
		w->procno = -1;
		if (db->count > 0)
			wake_procno = assign_writer(db, GetCurrentTimestamp());
	}
	LWLockRelease(logq->lock);
	wake_writer(wake_procno);
	return leave;
}

/*
 * writers[writer] exits, however it ends: its database is left without a
 * writer.  When it could not connect to the database (dropped), the
 * database's records are counted lost: they could never be written; so
 * are they when writers died (failed: a FATAL error, a terminate)
 * WRITER_MAX_FAILURES times in a row.
 */
void
logq_writer_exit(int writer, bool connect_failed, bool failed)
{
	LogWriter  *w = &logq->writers[writer];
	int			wake_procno = -1;

	if (MyProc == NULL)
		return;
	LWLockAcquire(logq->lock, LW_EXCLUSIVE);
	if (w->db_index >= 0)
	{
		LogDatabase *db = &logq->databases[w->db_index];

		db->writer = -1;
		w->db_index = -1;
		if (failed)
			db->failures++;
		if (connect_failed && db->count > 0)
		{
			snprintf(logq->last_error, sizeof(logq->last_error),
					 "could not connect to database %u: %d queued records lost",
					 db->dboid, db->count);
			logq->last_error_at = GetCurrentTimestamp();
			drop_records(db);
		}
		else if (db->failures >= WRITER_MAX_FAILURES && db->count > 0)
		{
			snprintf(logq->last_error, sizeof(logq->last_error),
					 "the log writers of database %u died %d times in a row: %d queued records lost",
					 db->dboid, db->failures, db->count);
			logq->last_error_at = GetCurrentTimestamp();
			drop_records(db);
			db->failures = 0;
		}
		else if (db->count > 0)
			wake_procno = assign_writer(db, GetCurrentTimestamp());
	}
	w->procno = -1;
	LWLockRelease(logq->lock);
	wake_writer(wake_procno);
	ConditionVariableBroadcast(&logq->room_cv);
	ConditionVariableBroadcast(&logq->done_cv);
}

/*
 * Keep a writer's error for ai_log_stats(), and say whether it should go to
 * the server log: not when another did less than interval_ms ago, in which
 * case it is counted.  *not_logged is how many were not logged before this
 * one.  The count is shared by every writer and outlives them.
 */
bool
logq_report_error(const char *message, int *not_logged, int interval_ms)
{
	TimestampTz now = GetCurrentTimestamp();
	bool		log_it;

	LWLockAcquire(logq->lock, LW_EXCLUSIVE);
	strlcpy(logq->last_error, message, sizeof(logq->last_error));
	logq->last_error_at = now;
	log_it = logq->error_logged_at == 0 ||
		TimestampDifferenceExceeds(logq->error_logged_at, now, interval_ms);
	*not_logged = logq->errors_not_logged;
	if (log_it)
	{
		logq->error_logged_at = now;
		logq->errors_not_logged = 0;
	}
	else
		logq->errors_not_logged++;
	LWLockRelease(logq->lock);
	return log_it;
}

/*
 * The entry of a database, taking an unused one if it has none; NULL when
 * every entry is busy.  Lock held exclusively.
 */
static LogDatabase *
find_database(Oid dboid)
{
	LogDatabase *spare = NULL;
	int			i;

	for (i = 0; i < LOG_MAX_DATABASES; i++)
	{
		LogDatabase *db = &logq->databases[i];

		if (db->dboid == dboid)
			return db;
		if (spare == NULL && db->count == 0 && db->writer < 0)
			spare = db;
	}
	if (spare != NULL)
	{
		spare->dboid = dboid;
		spare->head = spare->tail = -1;
		spare->waiting_since = 0;
		spare->failures = 0;
	}
	return spare;
}

/* Most records one database may hold. */
static int
database_share(void)
{
	return Max(1, logq->nslots / LOG_DATABASE_SHARE);
}

/*
 * Give a database with records and no writer an idle writer, and return
 * the PGPROC number whose latch the caller sets after releasing the lock;
 * -1 when no writer is idle: the database then waits for the next writer to
 * become free.  Lock held exclusively.
 */
static int
assign_writer(LogDatabase *db, TimestampTz now)
{
	int			i;

	for (i = 0; i < LOG_MAX_WRITERS; i++)
	{
		LogWriter  *w = &logq->writers[i];

		if (w->procno >= 0 && w->db_index < 0)
		{
			w->db_index = db - logq->databases;
			db->writer = i;
			db->waiting_since = 0;
			return w->procno;
		}
	}
	if (db->waiting_since == 0)
		db->waiting_since = now;
	return -1;
}

/*
 * The database that has waited longest for a writer, or -1 when none
 * waits.  Lock held.
 */
static int
longest_waiting(void)
{
	int			best = -1;
	int			i;

	for (i = 0; i < LOG_MAX_DATABASES; i++)
	{
		LogDatabase *db = &logq->databases[i];

		if (db->count > 0 && db->writer < 0 &&
			(best < 0 || db->waiting_since < logq->databases[best].waiting_since))
			best = i;
	}
	return best;
}

/* Set a writer's latch; -1: none to wake. */
static void
wake_writer(int procno)
{
	if (procno >= 0)
		SetLatch(&ProcGlobal->allProcs[procno].procLatch);
}

/*
 * Take a database's first record off its list: it is done for its backend
 * (written by the commit ending at commit_lsn, or lost), and its slot is
 * free again.  Lock held.
 */
static void
release_head_slot(LogDatabase *db, XLogRecPtr commit_lsn)
{
	int			slot = db->head;
	LogRecord  *record = slot_record(slot);

	if (record->backend_id > 0 && record->backend_id <= MaxBackends &&
		logq_done_pid[record->backend_id] == record->backend_pid &&
		logq_done_seq[record->backend_id] < record->seq)
	{
		logq_done_seq[record->backend_id] = record->seq;
		if (commit_lsn > logq_done_lsn[record->backend_id])
			logq_done_lsn[record->backend_id] = commit_lsn;
	}
	db->head = logq_next[slot];
	if (db->head < 0)
		db->tail = -1;
	db->count--;
	logq_next[slot] = logq->free_head;
	logq->free_head = slot;
	logq->nfree++;
}

/* Count every record of a database lost and free their slots.  Lock held. */
static void
drop_records(LogDatabase *db)
{
	while (db->head >= 0)
	{
		release_head_slot(db, InvalidXLogRecPtr);
		logq->lost++;
	}
}

/* Milliseconds until deadline, at least 0. */
static long
ms_left(TimestampTz deadline)
{
	TimestampTz now = GetCurrentTimestamp();

	if (deadline <= now)
		return 0;
	return (long) ((deadline - now + 999) / 1000);
}
