/*-------------------------------------------------------------------------
 *
 * log_queue.c
 *	  The shared-memory queue of attempt records waiting for a log writer.
 *
 * Backends put one record per HTTP attempt into a bounded array of
 * fixed-size slots (ai_resilience.log_queue_size of them); a log writer per
 * database (log_writer.c) takes its database's records in order, inserts
 * them into that database's ai_call_log in its own transaction, and only
 * then gives their slots back.  So a record leaves the queue once it is
 * committed or counted lost, and a writer killed mid-batch leaves its batch
 * for the next writer.
 *
 * Free slots form one list; each database with records has its own FIFO
 * list of slots (an entry of databases[]), so one database's slow writer
 * only delays another database by the room its records take.  Records
 * carry a queue-wide sequence number and the queuing backend's
 * MyBackendId and pid; done_seq[backend id] is the highest number written
 * or lost of the backend that holds that id now (done_pid), which is all
 * ai_flush_log needs because a backend's records all go to one database and
 * are handled in order.  Records of an earlier holder of the id, perhaps
 * for another database, do not move it.
 *
 * A backend starts its database's writer when it queues a record and none
 * runs (log_writer.c registers a dynamic background worker); a running
 * writer is woken by setting its latch, by the record that makes its
 * database's list non-empty (a writer sleeps only when its list is empty).  Backends waiting for room sleep on
 * room_cv, ai_flush_log on done_cv; the writer broadcasts both when it gives
 * slots back.
 *
 * LOCKING RULES: every field of LogQueueShared, the slot links, done_seq
 * and done_pid are read and changed under the queue's LWLock (exclusive to
 * change, shared to read).  A slot's record is written before it is linked
 * into a database's list, and is not changed while it is in the list, so
 * its writer reads it without the lock until it releases it.  Nothing is
 * allocated, and no error is raised, while the lock is held.
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
#include "log_writer.h"

/* A start request older than this is taken to have failed. */
#define WRITER_START_TIMEOUT_MS	30000

/* Name of the shared memory area and of the LWLock tranche. */
#define LOGQ_SHMEM_NAME		"pg_ai_resilience log queue"
#define LOGQ_TRANCHE_NAME	"pg_ai_resilience"

/* Whether a database's writer runs. */
typedef enum WriterState
{
	WRITER_NONE,				/* none: the next record starts one */
	WRITER_STARTING,			/* registered, not attached yet */
	WRITER_RUNNING				/* attached: wake it by its latch */
} WriterState;

/* A database with records queued or a writer. */
typedef struct LogDatabase
{
	Oid			dboid;			/* InvalidOid: entry never used */
	int			head;			/* first queued slot; -1: none */
	int			tail;			/* last queued slot; -1: none */
	int			count;			/* slots in the list */
	WriterState writer;
	int			writer_procno;	/* with WRITER_RUNNING: its PGPROC */
	TimestampTz start_requested_at; /* with WRITER_STARTING */
} LogDatabase;

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
	LogDatabase databases[LOG_MAX_DATABASES];
} LogQueueShared;

/*---- shared state and this backend's view of it ----*/

static LogQueueShared *logq = NULL;
static uint64 *logq_done_seq = NULL;	/* [MaxBackends + 1] */
static int *logq_done_pid = NULL;	/* [MaxBackends + 1]: done_seq's owner */
static int *logq_next = NULL;	/* [nslots]: next slot in its list */
static char *logq_slots = NULL; /* nslots * LOG_SLOT_SIZE */

/* The number of this backend's last queued record; 0: none. */
static uint64 my_last_seq = 0;

static Size logq_shmem_size(void);
static LogRecord *slot_record(int slot);
static LogDatabase *find_database(Oid dboid);
static bool writer_needed(LogDatabase *db, TimestampTz now);
static void start_writer(LogDatabase *db);
static void wake_writer(int procno);
static void release_head_slot(LogDatabase *db);
static void drop_records(LogDatabase *db);
static long ms_left(TimestampTz deadline);

/* Bytes of shared memory the queue needs. */
static Size
logq_shmem_size(void)
{
	Size		size = MAXALIGN(sizeof(LogQueueShared));

	size = add_size(size, MAXALIGN(mul_size(MaxBackends + 1, sizeof(uint64))));
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
			logq->databases[i].writer_procno = -1;
		}
		memset(logq_done_seq, 0, sizeof(uint64) * (MaxBackends + 1));
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
 * room (cancellable); 0 never waits.  Raises no error of its own, and
 * allocates nothing, so that error cleanup may call it with wait_ms 0.
 * record->data must hold its strings; the fields saying who queued it are
 * filled in here.
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
		bool		start = false;
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
		if (logq->nfree > 0)
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
			}
		}
		else
			slot = -1;

		/*
		 * A writer sleeps only after finding its list empty, and a record
		 * stays in the list until written: so only the first record after
		 * an empty spell needs to wake it.
		 */
		if (db->writer == WRITER_RUNNING)
		{
			if (slot >= 0 && was_empty)
				wake_procno = db->writer_procno;
		}
		else if (db->count > 0)
			start = writer_needed(db, GetCurrentTimestamp());
		give_up = slot < 0 &&
			(wait_ms <= 0 || (waited && ms_left(deadline) <= 0));
		if (give_up)
			logq->lost++;
		else if (slot < 0 && !waited)
			logq->queue_waits++;
		LWLockRelease(logq->lock);

		if (start)
			start_writer(db);
		else if (wake_procno >= 0)
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
 * Wait until every record this backend queued is written or counted lost.
 * False when timeout_ms passes first.  Cancellable.
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
		LogDatabase *db;
		bool		done;
		bool		start = false;

		LWLockAcquire(logq->lock, LW_EXCLUSIVE);
		done = logq_done_pid[MyBackendId] == MyProcPid &&
			logq_done_seq[MyBackendId] >= my_last_seq;
		/* a writer that died leaves its records: start a new one */
		db = done ? NULL : find_database(MyDatabaseId);
		if (db != NULL && db->count > 0)
			start = writer_needed(db, GetCurrentTimestamp());
		LWLockRelease(logq->lock);

		if (start)
			start_writer(db);
		if (done || ms_left(deadline) <= 0)
		{
			ConditionVariableCancelSleep();
			return done;
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
	for (i = 0; i < LOG_MAX_DATABASES; i++)
		if (logq->databases[i].writer == WRITER_RUNNING)
			stats->writers++;
	strlcpy(stats->last_error, logq->last_error, sizeof(stats->last_error));
	stats->last_error_at = logq->last_error_at;
	LWLockRelease(logq->lock);
}

/*
 * Register this process as the writer of databases[db_index]; returns the
 * database, or InvalidOid when another writer already runs for it.
 */
Oid
logq_writer_attach(int db_index)
{
	LogDatabase *db = &logq->databases[db_index];
	Oid			dboid = InvalidOid;

	LWLockAcquire(logq->lock, LW_EXCLUSIVE);
	if (db->writer != WRITER_RUNNING && OidIsValid(db->dboid))
	{
		db->writer = WRITER_RUNNING;
		db->writer_procno = MyProc->pgprocno;
		dboid = db->dboid;
	}
	LWLockRelease(logq->lock);
	return dboid;
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
 * committed and the rest are lost, and wake whoever waits for them.
 */
void
logq_writer_release(int db_index, int ntaken, int nwritten)
{
	LogDatabase *db = &logq->databases[db_index];
	int			i;

	LWLockAcquire(logq->lock, LW_EXCLUSIVE);
	for (i = 0; i < ntaken && db->head >= 0; i++)
		release_head_slot(db);
	logq->written += nwritten;
	logq->lost += ntaken - nwritten;
	LWLockRelease(logq->lock);

	ConditionVariableBroadcast(&logq->room_cv);
	ConditionVariableBroadcast(&logq->done_cv);
}

/*
 * The writer may go when its database has nothing queued: it is then
 * marked gone, so the next record starts a new one.  True if it may go.
 */
bool
logq_writer_detach_if_idle(int db_index)
{
	LogDatabase *db = &logq->databases[db_index];
	bool		idle;

	LWLockAcquire(logq->lock, LW_EXCLUSIVE);
	idle = db->count == 0;
	if (idle && db->writer_procno == MyProc->pgprocno)
	{
		db->writer = WRITER_NONE;
		db->writer_procno = -1;
	}
	LWLockRelease(logq->lock);
	return idle;
}

/*
 * The writer exits, however it ends.  A writer that could not connect to
 * its database drops the database's records as lost: they could never be
 * written.
 */
void
logq_writer_exit(int db_index, bool connected)
{
	LogDatabase *db = &logq->databases[db_index];

	if (MyProc == NULL)
		return;
	LWLockAcquire(logq->lock, LW_EXCLUSIVE);
	if (db->writer == WRITER_RUNNING && db->writer_procno == MyProc->pgprocno)
	{
		db->writer = WRITER_NONE;
		db->writer_procno = -1;
		if (!connected && db->count > 0)
		{
			snprintf(logq->last_error, sizeof(logq->last_error),
					 "could not connect to database %u: %d queued records lost",
					 db->dboid, db->count);
			logq->last_error_at = GetCurrentTimestamp();
			drop_records(db);
		}
	}
	LWLockRelease(logq->lock);
	ConditionVariableBroadcast(&logq->room_cv);
	ConditionVariableBroadcast(&logq->done_cv);
}

/* Keep a writer's error for ai_log_stats(). */
void
logq_report_error(const char *message)
{
	LWLockAcquire(logq->lock, LW_EXCLUSIVE);
	strlcpy(logq->last_error, message, sizeof(logq->last_error));
	logq->last_error_at = GetCurrentTimestamp();
	LWLockRelease(logq->lock);
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
		if (spare == NULL && db->count == 0 && db->writer == WRITER_NONE)
			spare = db;
	}
	if (spare != NULL)
	{
		spare->dboid = dboid;
		spare->head = spare->tail = -1;
	}
	return spare;
}

/*
 * Whether a writer must be started for a database with records: none runs,
 * or an earlier start request seems to have failed.  If so it is marked
 * starting, and the caller starts it after releasing the lock.
 */
static bool
writer_needed(LogDatabase *db, TimestampTz now)
{
	if (db->writer == WRITER_RUNNING)
		return false;
	if (db->writer == WRITER_STARTING &&
		!TimestampDifferenceExceeds(db->start_requested_at, now,
									WRITER_START_TIMEOUT_MS))
		return false;
	db->writer = WRITER_STARTING;
	db->start_requested_at = now;
	return true;
}

/*
 * Start the writer of a database marked starting; when no worker slot is
 * free, mark it not running again, so that a later record retries.
 */
static void
start_writer(LogDatabase *db)
{
	int			db_index = db - logq->databases;

	if (logwriter_launch(db_index, db->dboid))
		return;
	LWLockAcquire(logq->lock, LW_EXCLUSIVE);
	if (db->writer == WRITER_STARTING)
		db->writer = WRITER_NONE;
	strlcpy(logq->last_error,
			"could not start a log writer: no free background worker slot (max_worker_processes)",
			sizeof(logq->last_error));
	logq->last_error_at = GetCurrentTimestamp();
	LWLockRelease(logq->lock);
}

/* Set a running writer's latch. */
static void
wake_writer(int procno)
{
	SetLatch(&ProcGlobal->allProcs[procno].procLatch);
}

/*
 * Take a database's first record off its list: it is done for its backend
 * (written or lost), and its slot is free again.  Lock held.
 */
static void
release_head_slot(LogDatabase *db)
{
	int			slot = db->head;
	LogRecord  *record = slot_record(slot);

	if (record->backend_id > 0 && record->backend_id <= MaxBackends &&
		logq_done_pid[record->backend_id] == record->backend_pid &&
		logq_done_seq[record->backend_id] < record->seq)
		logq_done_seq[record->backend_id] = record->seq;
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
		release_head_slot(db);
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
