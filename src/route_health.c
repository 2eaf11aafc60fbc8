/*-------------------------------------------------------------------------
 *
 * route_health.c
 *	  Route health shared by every backend: a circuit breaker per route
 *	  (endpoint, model) and per endpoint, in shared memory.
 *
 * Every attempt of every backend, row-by-row or batched, is counted here
 * after it ends (rh_record), and every attempt asks first whether its route
 * may be used (rh_admit), so the failures of one session make the others
 * skip the route at once.  The decisions themselves (what counts, when a
 * breaker opens, for how long, who probes) are breaker.c's; this file
 * keeps the breakers, finds them, and shows them in SQL.
 *
 * The table holds ai_resilience.breaker_routes slots, each a route or an
 * endpoint (model ""), found by a hash of the endpoint as displayed (no
 * credentials) and the model, through a dense array of the slots' hashes.
 * A route seen for the first time takes a free slot, or else the slot least
 * recently used: the table is never full, and a route evicted starts again
 * closed.  Failures to connect are counted on the endpoint's slot and open
 * every route of that endpoint at once; an answer of any kind from the
 * endpoint counts as the endpoint's success.  The retry budget is the
 * endpoint slot's (rh_grant_retry).  Shared memory is created at server
 * start, so a restart resets it all.  The breaker* and retry_budget*
 * settings are defined here, next to their only user.
 *
 * Every change of state is kept twice: in a ring of the last
 * RH_HISTORY_SIZE changes of the server, for ai_route_history(), and as a
 * row of ai_route_events in the database of the backend that made it,
 * queued for the log writer like an attempt (call_log.c) once the lock is
 * released.
 *
 * LOCKING RULES: the slots are read under the table's LWLock in shared
 * mode and changed in exclusive mode.  rh_admit decides under the shared
 * lock when the route is closed (the common case) and takes the exclusive
 * lock only to start a probe.  Nothing is allocated, and no error is
 * raised, while the lock is held.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>
#include <math.h>

#include "common/hashfn.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "breaker.h"
#include "call_log.h"
#include "route_health.h"

/* Name of the shared memory area and of the LWLock tranche. */
#define RH_SHMEM_NAME		"pg_ai_resilience route health"
#define RH_TRANCHE_NAME		"pg_ai_resilience route health"

/* Bytes of an endpoint and a model name kept; longer ones are cut. */
#define RH_ENDPOINT_LEN		256
#define RH_MODEL_LEN		128

/* Longest cooldown accepted: an hour, as for every wait of ours. */
#define RH_MAX_COOLDOWN_MS	(3600 * 1000)

/* Columns of ai_route_health() and ai_route_history(). */
#define RH_COLUMNS			14
#define RH_HISTORY_COLUMNS	12

/* State changes kept for ai_route_history(), the latest first to go. */
#define RH_HISTORY_SIZE		1024

/* State changes one lock holding may make before they are logged. */
#define RH_PENDING_SIZE		16

/* One route, or one endpoint (model ""). */
typedef struct RouteSlot
{
	uint64		hash;			/* of endpoint and model; 0: slot free */
	bool		is_endpoint;	/* the endpoint's own breaker */
	char		endpoint[RH_ENDPOINT_LEN];	/* as displayed, cut */
	char		model[RH_MODEL_LEN];	/* cut; "" for an endpoint */
	TimestampTz last_used;		/* last attempt counted: for eviction */
	Breaker		breaker;
	AttemptClass last_class;	/* class of the last counted failure */
	int			last_code;		/* its HTTP status; 0: none */
	TimestampTz last_failure_at;	/* 0: never */
	TimestampTz last_success_at;	/* 0: never */
} RouteSlot;

/* A change of state of a route or endpoint, for ai_route_history(). */
typedef struct RouteEvent
{
	TimestampTz at;
	char		endpoint[RH_ENDPOINT_LEN];
	char		model[RH_MODEL_LEN];	/* "" for an endpoint */
	bool		is_endpoint;
	BreakerState from_state;
	BreakerState state;			/* the new state */
	BreakerChange change;		/* why */
	int			consecutive_failures;
	int			window_requests;	/* rounded */
	int			window_failures;
	TimestampTz next_probe_at;	/* open: when a call may probe */
	AttemptClass failure_class; /* a failure that opened it; else success */
	int			failure_code;
	int			pid;			/* the backend that changed it */
} RouteEvent;

/*
 * The table's head.  The slots' hashes are also kept in one dense array,
 * so that finding a route scans a few kB, not every slot; the slots
 * follow it in shared memory.
 */
typedef struct RouteHealthShared
{
	LWLock	   *lock;
	int			nslots;
	uint64		nevents;		/* changes since start; the ring holds the last */
	uint64		hashes[FLEXIBLE_ARRAY_MEMBER];	/* slots[i].hash */
} RouteHealthShared;

/* A slot's key, computed before the lock is taken. */
typedef struct RouteKey
{
	uint64		hash;
	bool		is_endpoint;
	const char *endpoint;
	const char *model;
	int			endpoint_len;	/* bytes kept: cut on a character boundary */
	int			model_len;
} RouteKey;

/*---- GUC variables ----*/

bool		air_breaker = true;
static int	rh_failures = 3;
static int	rh_cooldown_ms = 5000;
static int	rh_cooldown_max_ms = 60000;
static int	rh_routes = 256;
static int	rh_window_ms = 60000;
static int	rh_failure_rate = 50;
static int	rh_min_requests = 10;
static int	rh_retry_budget = 20;
static int	rh_retry_budget_min = 3;

static RouteHealthShared *rh = NULL;
static RouteSlot *rh_slots = NULL;	/* [nslots], after rh's hashes */
static RouteEvent *rh_events = NULL;	/* [RH_HISTORY_SIZE], after the slots */

/*
 * This backend's changes not yet queued for ai_route_events: kept under the
 * lock, queued once it is released (log_changes).
 */
static RouteEvent rh_pending[RH_PENDING_SIZE];
static int	rh_npending = 0;

PG_FUNCTION_INFO_V1(ai_route_health);
PG_FUNCTION_INFO_V1(ai_route_set);
PG_FUNCTION_INFO_V1(ai_route_history);

static Size rh_shmem_size(void);
static void make_key(RouteKey *key, const char *endpoint, const char *model,
					 bool is_endpoint);
static RouteSlot *find_slot(const RouteKey *key);
static RouteSlot *claim_slot(const RouteKey *key, const RouteSlot *keep,
							 TimestampTz now);
static BreakerAdmission admission(const RouteKey *route, const RouteKey *endpoint,
								  TimestampTz now);
static void breaker_settings(BreakerSettings *settings);
static void log_changes(bool in_cleanup);
static void note_change(const RouteSlot *slot, BreakerState from,
						BreakerChange change,
						TimestampTz now, const BreakerSettings *settings);

/* Define the ai_resilience.breaker* settings. */
void
rh_define_gucs(void)
{
	DefineCustomBoolVariable("ai_resilience.breaker",
							 "Skip routes whose recent attempts failed, as every session sees them.",
							 "off: every call tries every route, as in version 0.1.0.",
							 &air_breaker,
							 true,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("ai_resilience.breaker_failures",
							"Consecutive failed attempts on a route that open its breaker.",
							"Connect failures count on the endpoint and open all its routes.",
							&rh_failures,
							3,
							1, 1000,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("ai_resilience.breaker_cooldown",
							"How long a route stays open the first time, before one call probes it.",
							"Each re-open without a spell closed multiplies it: 1x, 2x, 3x ... up to breaker_cooldown_max.",
							&rh_cooldown_ms,
							5000,
							1, RH_MAX_COOLDOWN_MS,
							PGC_SUSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("ai_resilience.breaker_cooldown_max",
							"Longest time a route stays open before a probe, Retry-After included.",
							NULL,
							&rh_cooldown_max_ms,
							60000,
							1, RH_MAX_COOLDOWN_MS,
							PGC_SUSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("ai_resilience.breaker_window",
							"Span of the sliding window over which failure rates and retries are counted.",
							NULL,
							&rh_window_ms,
							60000,
							1000, RH_MAX_COOLDOWN_MS,
							PGC_SUSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("ai_resilience.breaker_failure_rate",
							"Percentage of failed attempts in the window that opens a route.",
							"0 opens on consecutive failures only.",
							&rh_failure_rate,
							50,
							0, 100,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("ai_resilience.breaker_min_requests",
							"Attempts in the window below which the failure rate does not open a route.",
							NULL,
							&rh_min_requests,
							10,
							1, INT_MAX,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("ai_resilience.retry_budget",
							"Retries on the same route, as a percentage of an endpoint's attempts in the window.",
							"Past it, a transient error falls back at once. -1 removes the cap.",
							&rh_retry_budget,
							20,
							-1, 100,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("ai_resilience.retry_budget_min",
							"Retries per endpoint and window always allowed, whatever the budget.",
							NULL,
							&rh_retry_budget_min,
							3,
							0, INT_MAX,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

	/* PostgreSQL allows a POSTMASTER setting only in a preloaded library */
	if (process_shared_preload_libraries_in_progress)
		DefineCustomIntVariable("ai_resilience.breaker_routes",
								"Routes and endpoints whose health shared memory holds.",
								"Each takes about 500 bytes. When all are used, the least recently used is reused.",
								&rh_routes,
								256,
								16, 100000,
								PGC_POSTMASTER,
								0,
								NULL, NULL, NULL);
}

/* Bytes of shared memory the table needs. */
static Size
rh_shmem_size(void)
{
	Size		size = MAXALIGN(add_size(offsetof(RouteHealthShared, hashes),
										 mul_size(rh_routes, sizeof(uint64))));

	size = add_size(size, MAXALIGN(mul_size(rh_routes, sizeof(RouteSlot))));
	return add_size(size, mul_size(RH_HISTORY_SIZE, sizeof(RouteEvent)));
}

/* Ask for the table's shared memory and lock (shmem_request_hook). */
void
rh_request_shmem(void)
{
	RequestAddinShmemSpace(rh_shmem_size());
	RequestNamedLWLockTranche(RH_TRANCHE_NAME, 1);
}

/* Attach to the table, creating it if needed (shmem_startup_hook). */
void
rh_init_shmem(void)
{
	bool		found;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	rh = ShmemInitStruct(RH_SHMEM_NAME, rh_shmem_size(), &found);
	rh_slots = (RouteSlot *) ((char *) rh +
							  MAXALIGN(offsetof(RouteHealthShared, hashes) +
									   sizeof(uint64) * rh_routes));
	rh_events = (RouteEvent *) ((char *) rh_slots +
								MAXALIGN(sizeof(RouteSlot) * rh_routes));
	if (!found)
	{
		memset(rh, 0, rh_shmem_size());
		rh->lock = &(GetNamedLWLockTranche(RH_TRANCHE_NAME))->lock;
		rh->nslots = rh_routes;
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * May a call try model on endpoint now?  True for a closed route, and for
 * an open one whose cooldown has passed and that no other call probes: the
 * call is then the probe, and *probes says of what (RH_PROBE_*), to be
 * given back to rh_record.  lease_ms bounds the probe: past it, another call
 * may probe.  Always true when the breaker is off.
 */
bool
rh_admit(const char *endpoint, const char *model, TimestampTz now,
		 long lease_ms, int *probes)
{
	RouteKey	keys[2];
	BreakerAdmission verdict;
	BreakerSettings settings;
	int			i;

	*probes = 0;
	if (!air_breaker || rh == NULL)
		return true;
	make_key(&keys[0], endpoint, "", true);
	make_key(&keys[1], endpoint, model, false);

	LWLockAcquire(rh->lock, LW_SHARED);
	verdict = admission(&keys[1], &keys[0], now);
	LWLockRelease(rh->lock);
	if (verdict != ADMIT_PROBE)
		return verdict == ADMIT_PASS;

	/* another call may have started the probe meanwhile: decide again */
	breaker_settings(&settings);
	LWLockAcquire(rh->lock, LW_EXCLUSIVE);
	verdict = admission(&keys[1], &keys[0], now);
	for (i = 0; i < 2 && verdict == ADMIT_PROBE; i++)
	{
		RouteSlot  *slot = find_slot(&keys[i]);
		BreakerState from;

		if (slot == NULL || breaker_admission(&slot->breaker, now) != ADMIT_PROBE)
			continue;
		from = slot->breaker.state;
		note_change(slot, from,
					breaker_start_probe(&slot->breaker, MyProcPid, now,
										lease_ms * 1000),
					now, &settings);
		*probes |= i == 0 ? RH_PROBE_ENDPOINT : RH_PROBE_ROUTE;
	}
	LWLockRelease(rh->lock);
	log_changes(false);
	return verdict != ADMIT_SKIP;
}

/*
 * Count a finished attempt of model on endpoint: on the route, and on the
 * endpoint, for which any answer at all is a success.  probes are those
 * rh_admit gave the attempt; retry_after_ms is the server's requested wait,
 * or -1.
 */
void
rh_record(const char *endpoint, const char *model, AttemptClass cls,
		  TransportFailure transport, int http_status, int retry_after_ms,
		  int probes, TimestampTz now)
{
	BreakerVerdict verdict = breaker_verdict(cls, transport);
	BreakerVerdict verdicts[2] = {verdict, verdict};	/* endpoint, route */
	BreakerSettings settings;
	RouteKey	keys[2];
	RouteSlot  *slots[2] = {NULL, NULL};
	int			i;

	if (!air_breaker || rh == NULL)
		return;
	/* a model is not to blame for an endpoint that cannot be reached */
	if (verdict == VERDICT_ENDPOINT_FAILURE)
		verdicts[1] = VERDICT_NEUTRAL;
	else if (verdict == VERDICT_ROUTE_FAILURE)
		verdicts[0] = VERDICT_SUCCESS;
	breaker_settings(&settings);
	make_key(&keys[0], endpoint, "", true);
	make_key(&keys[1], endpoint, model, false);

	LWLockAcquire(rh->lock, LW_EXCLUSIVE);
	for (i = 0; i < 2; i++)
	{
		/* claiming the route's slot must not evict the endpoint's */
		RouteSlot  *slot = claim_slot(&keys[i], slots[0], now);
		int			probe_flag = i == 0 ? RH_PROBE_ENDPOINT : RH_PROBE_ROUTE;
		int			wait_ms = i == 1 && cls == CLASS_RATE_LIMITED ?
			retry_after_ms : -1;
		BreakerState from = slot->breaker.state;

		slots[i] = slot;
		slot->last_used = now;
		if (verdicts[i] == VERDICT_SUCCESS)
			slot->last_success_at = now;
		else if (verdicts[i] != VERDICT_NEUTRAL)
		{
			slot->last_failure_at = now;
			slot->last_class = cls;
			slot->last_code = http_status;
		}
		note_change(slot, from,
					breaker_record(&slot->breaker, verdicts[i],
								   (probes & probe_flag) != 0, MyProcPid,
								   wait_ms, now, &settings),
					now, &settings);
	}
	LWLockRelease(rh->lock);
	log_changes(false);
}

/*
 * May a call retry on a route of endpoint, within the endpoint's retry
 * budget?  A granted retry is counted.  Always true when the breaker is
 * off.
 */
bool
rh_grant_retry(const char *endpoint, TimestampTz now)
{
	BreakerSettings settings;
	RouteKey	ep;
	RouteSlot  *slot;
	bool		granted;

	if (!air_breaker || rh == NULL)
		return true;
	breaker_settings(&settings);
	make_key(&ep, endpoint, "", true);
	LWLockAcquire(rh->lock, LW_EXCLUSIVE);
	slot = claim_slot(&ep, NULL, now);
	granted = breaker_grant_retry(&slot->breaker, now, &settings);
	LWLockRelease(rh->lock);
	return granted;
}

/*
 * Why a call may not use model on endpoint now, for its error message:
 * "open after 3 failures (http_5xx 502), next probe at <time>".
 */
char *
rh_describe(const char *endpoint, const char *model)
{
	RouteKey	keys[2];
	Breaker		breakers[2];
	AttemptClass classes[2];
	int			codes[2];
	bool		found[2];
	int			i;

	make_key(&keys[0], endpoint, "", true);
	make_key(&keys[1], endpoint, model, false);
	if (rh == NULL)
		return pstrdup("closed");
	LWLockAcquire(rh->lock, LW_SHARED);
	for (i = 0; i < 2; i++)
	{
		RouteSlot  *slot = find_slot(&keys[i]);

		found[i] = slot != NULL;
		if (slot)
		{
			breakers[i] = slot->breaker;
			classes[i] = slot->last_class;
			codes[i] = slot->last_code;
		}
	}
	LWLockRelease(rh->lock);

	/* the endpoint's state wins: it closes every route of it */
	for (i = 0; i < 2; i++)
	{
		const char *what = i == 0 ? "endpoint " : "";

		if (!found[i] || breakers[i].state == BREAKER_CLOSED)
			continue;
		if (breakers[i].state == BREAKER_HALF_OPEN)
			return psprintf("%shalf-open, a probe is in flight", what);
		return psprintf("%sopen after %d failure%s (%s%s%.0d), next probe at %s",
						what, breakers[i].consecutive_failures,
						breakers[i].consecutive_failures == 1 ? "" : "s",
						policy_class_name(classes[i]) ? policy_class_name(classes[i]) : "ok",
						codes[i] ? " " : "", codes[i],
						timestamptz_to_str(breakers[i].next_probe_at));
	}
	return pstrdup("closed");
}

/*
 * Give up the probes this backend holds, so that the next call probes at
 * once: its statement ended (an error, a cancel) with the probe in flight.
 * Runs in error cleanup: allocates nothing.
 */
void
rh_release_probes(void)
{
	BreakerSettings settings;
	TimestampTz now = GetCurrentTimestamp();
	int			i;

	if (rh == NULL)
		return;
	breaker_settings(&settings);
	LWLockAcquire(rh->lock, LW_EXCLUSIVE);
	for (i = 0; i < rh->nslots; i++)
	{
		Breaker    *breaker = &rh_slots[i].breaker;

		/* a batch may hold many probes: log what the lock has gathered */
		if (rh_npending == RH_PENDING_SIZE)
		{
			LWLockRelease(rh->lock);
			log_changes(true);
			LWLockAcquire(rh->lock, LW_EXCLUSIVE);
		}
		/* the probe learnt nothing, as after a request error */
		if (rh->hashes[i] != 0 && breaker->state == BREAKER_HALF_OPEN &&
			breaker->probe_pid == MyProcPid)
			note_change(&rh_slots[i], BREAKER_HALF_OPEN,
						breaker_record(breaker, VERDICT_NEUTRAL, true, MyProcPid,
									   -1, now, &settings),
						now, &settings);
	}
	LWLockRelease(rh->lock);
	log_changes(true);
}

/* The key of a route, or of an endpoint's own breaker. */
static void
make_key(RouteKey *key, const char *endpoint, const char *model,
		 bool is_endpoint)
{
	uint64		hash = hash_bytes_extended((const unsigned char *) endpoint,
										   strlen(endpoint), is_endpoint);

	hash = hash_combine64(hash,
						  hash_bytes_extended((const unsigned char *) model,
											  strlen(model), 0));
	/* 0 marks a free slot */
	key->hash = hash ? hash : 1;
	key->is_endpoint = is_endpoint;
	key->endpoint = endpoint;
	key->model = model;
	key->endpoint_len = pg_mbcliplen(endpoint, strlen(endpoint), RH_ENDPOINT_LEN - 1);
	key->model_len = pg_mbcliplen(model, strlen(model), RH_MODEL_LEN - 1);
}

/* The slot of key, or NULL.  Caller holds the lock. */
static RouteSlot *
find_slot(const RouteKey *key)
{
	int			i;

	for (i = 0; i < rh->nslots; i++)
	{
		RouteSlot  *slot = &rh_slots[i];

		if (rh->hashes[i] != key->hash)
			continue;
		if (slot->is_endpoint == key->is_endpoint &&
			strncmp(slot->endpoint, key->endpoint, key->endpoint_len) == 0 &&
			slot->endpoint[key->endpoint_len] == '\0' &&
			strncmp(slot->model, key->model, key->model_len) == 0 &&
			slot->model[key->model_len] == '\0')
			return slot;
	}
	return NULL;
}

/*
 * The slot of key, taking a free one, or else the least recently used one
 * other than keep, for a new key.  Caller holds the lock exclusively.
 */
static RouteSlot *
claim_slot(const RouteKey *key, const RouteSlot *keep, TimestampTz now)
{
	RouteSlot  *slot = find_slot(key);
	RouteSlot  *victim = NULL;
	int			i;

	if (slot != NULL)
		return slot;
	for (i = 0; i < rh->nslots; i++)
	{
		if (rh->hashes[i] == 0)
		{
			victim = &rh_slots[i];
			break;
		}
	}
	if (victim == NULL)
	{
		for (i = 0; i < rh->nslots; i++)
		{
			slot = &rh_slots[i];
			if (slot != keep &&
				(victim == NULL || slot->last_used < victim->last_used))
				victim = slot;
		}
	}
	memset(victim, 0, sizeof(RouteSlot));
	victim->hash = key->hash;
	rh->hashes[victim - rh_slots] = key->hash;
	victim->is_endpoint = key->is_endpoint;
	memcpy(victim->endpoint, key->endpoint, key->endpoint_len);
	memcpy(victim->model, key->model, key->model_len);
	victim->last_used = now;
	return victim;
}

/*
 * May a call use route now, given its endpoint's breaker too?  SKIP if
 * either says so, PROBE if either is due for one.  Caller holds the lock.
 */
static BreakerAdmission
admission(const RouteKey *route, const RouteKey *endpoint, TimestampTz now)
{
	RouteSlot  *ep_slot = find_slot(endpoint);
	RouteSlot  *route_slot = find_slot(route);
	BreakerAdmission ep = ep_slot ? breaker_admission(&ep_slot->breaker, now) : ADMIT_PASS;
	BreakerAdmission rt = route_slot ? breaker_admission(&route_slot->breaker, now) : ADMIT_PASS;

	if (ep == ADMIT_SKIP || rt == ADMIT_SKIP)
		return ADMIT_SKIP;
	return ep == ADMIT_PROBE || rt == ADMIT_PROBE ? ADMIT_PROBE : ADMIT_PASS;
}

/*
 * Keep a change of slot's state (from the state from) in the history ring,
 * over the oldest, and among this backend's changes for log_changes.
 * Caller holds the lock exclusively, and calls log_changes once it has
 * released it.
 */
static void
note_change(const RouteSlot *slot, BreakerState from, BreakerChange change,
			TimestampTz now, const BreakerSettings *settings)
{
	RouteEvent *event;
	double		requests;
	double		failures;
	double		retries;

	if (change == CHANGE_NONE)
		return;
	event = &rh_events[rh->nevents++ % RH_HISTORY_SIZE];
	breaker_window_counts(&slot->breaker, now, settings, &requests, &failures,
						  &retries);
	event->at = now;
	memcpy(event->endpoint, slot->endpoint, RH_ENDPOINT_LEN);
	memcpy(event->model, slot->model, RH_MODEL_LEN);
	event->is_endpoint = slot->is_endpoint;
	event->from_state = from;
	event->state = slot->breaker.state;
	event->change = change;
	event->consecutive_failures = slot->breaker.consecutive_failures;
	event->window_requests = (int) rint(requests);
	event->window_failures = (int) rint(failures);
	event->next_probe_at = slot->breaker.next_probe_at;
	/* only an attempt's failure opens a route by itself */
	if (change == CHANGE_OPENED_FAILURES || change == CHANGE_OPENED_RATE ||
		change == CHANGE_OPENED_RETRY_AFTER || change == CHANGE_PROBE_FAILED)
	{
		event->failure_class = slot->last_class;
		event->failure_code = slot->last_code;
	}
	else
	{
		event->failure_class = CLASS_SUCCESS;
		event->failure_code = 0;
	}
	event->pid = MyProcPid;
	/* more than one holding of the lock makes is never expected */
	if (rh_npending < RH_PENDING_SIZE)
		rh_pending[rh_npending++] = *event;
}

/*
 * Queue this backend's pending changes for its database's ai_route_events
 * (in_cleanup: without waiting or allocating, from error cleanup).  Called
 * without the lock: the log queue may wait for room.
 */
static void
log_changes(bool in_cleanup)
{
	int			n = rh_npending;
	int			i;

	rh_npending = 0;
	for (i = 0; i < n; i++)
	{
		const RouteEvent *event = &rh_pending[i];
		RouteChange change;

		change.at = event->at;
		change.endpoint = event->endpoint;
		change.model = event->is_endpoint ? NULL : event->model;
		change.from_state = event->from_state;
		change.to_state = event->state;
		change.change = event->change;
		change.consecutive_failures = event->consecutive_failures;
		change.window_requests = event->window_requests;
		change.window_failures = event->window_failures;
		change.next_probe_at = event->state == BREAKER_OPEN ?
			event->next_probe_at : 0;
		change.error_class = event->failure_class;
		change.error_code = event->failure_code;
		calllog_append_route_change(&change, in_cleanup);
	}
}

/* The breaker settings of this session. */
static void
breaker_settings(BreakerSettings *settings)
{
	settings->failures = rh_failures;
	settings->cooldown_ms = rh_cooldown_ms;
	settings->cooldown_max_ms = Max(rh_cooldown_max_ms, rh_cooldown_ms);
	settings->window_ms = rh_window_ms;
	settings->failure_rate = rh_failure_rate;
	settings->min_requests = rh_min_requests;
	settings->retry_budget = rh_retry_budget;
	settings->retry_budget_min = rh_retry_budget_min;
}

/*
 * ai_route_health() returns one row per route and endpoint in the table:
 * state, counts, times, the last failure.
 */
Datum
ai_route_health(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	RouteSlot  *copy;
	BreakerSettings settings;
	TimestampTz now = GetCurrentTimestamp();
	int			nslots;
	int			i;

	calllog_require_loaded();
	breaker_settings(&settings);
	InitMaterializedSRF(fcinfo, 0);

	/* copy the table, so that no row is built under the lock */
	nslots = rh->nslots;
	copy = palloc(sizeof(RouteSlot) * nslots);
	LWLockAcquire(rh->lock, LW_SHARED);
	memcpy(copy, rh_slots, sizeof(RouteSlot) * nslots);
	LWLockRelease(rh->lock);

	for (i = 0; i < nslots; i++)
	{
		RouteSlot  *slot = &copy[i];
		Breaker    *b = &slot->breaker;
		Datum		values[RH_COLUMNS];
		bool		nulls[RH_COLUMNS];
		int			col = 0;
		double		requests;
		double		failures;
		double		retries;

		if (slot->hash == 0)
			continue;
		memset(nulls, 0, sizeof(nulls));
		values[col++] = CStringGetTextDatum(slot->endpoint);
		nulls[col] = slot->is_endpoint;
		values[col++] = CStringGetTextDatum(slot->model);
		values[col++] = CStringGetTextDatum(breaker_state_name(b->state));
		values[col++] = Int32GetDatum(b->consecutive_failures);
		breaker_window_counts(b, now, &settings, &requests, &failures, &retries);
		values[col++] = Int32GetDatum((int32) rint(requests));
		values[col++] = Int32GetDatum((int32) rint(failures));
		values[col++] = Int32GetDatum((int32) rint(retries));
		nulls[col] = b->opened_at == 0;
		values[col++] = TimestampTzGetDatum(b->opened_at);
		nulls[col] = b->state == BREAKER_CLOSED;
		values[col++] = TimestampTzGetDatum(b->state == BREAKER_HALF_OPEN ?
											b->probe_expires_at : b->next_probe_at);
		values[col++] = Int64GetDatum(b->times_opened);
		nulls[col] = slot->last_failure_at == 0;
		values[col++] = CStringGetTextDatum(slot->last_failure_at ?
											policy_class_name(slot->last_class) : "");
		nulls[col] = slot->last_code == 0;
		values[col++] = Int32GetDatum(slot->last_code);
		nulls[col] = slot->last_failure_at == 0;
		values[col++] = TimestampTzGetDatum(slot->last_failure_at);
		nulls[col] = slot->last_success_at == 0;
		values[col++] = TimestampTzGetDatum(slot->last_success_at);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * ai_route_set(endpoint, model, open, hold) opens a route (model NULL: the
 * endpoint, so all its routes) for hold, or closes it.  EXECUTE is granted
 * by the administrator; it is revoked from PUBLIC.
 */
Datum
ai_route_set(PG_FUNCTION_ARGS)
{
	char	   *endpoint;
	char	   *model;
	bool		open;
	Interval   *hold;
	int64		hold_us;
	RouteKey	key;
	RouteSlot  *slot;
	BreakerSettings settings;
	BreakerState from;
	TimestampTz now = GetCurrentTimestamp();

	calllog_require_loaded();
	if (PG_ARGISNULL(0) || PG_ARGISNULL(2) || PG_ARGISNULL(3))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("endpoint, open and hold must not be NULL")));
	endpoint = text_to_cstring(PG_GETARG_TEXT_PP(0));
	model = PG_ARGISNULL(1) ? "" : text_to_cstring(PG_GETARG_TEXT_PP(1));
	open = PG_GETARG_BOOL(2);
	hold = PG_GETARG_INTERVAL_P(3);
	hold_us = hold->time + (hold->day + (int64) hold->month * DAYS_PER_MONTH) *
		USECS_PER_DAY;
	if (hold_us < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("hold must not be negative")));

	make_key(&key, endpoint, model, PG_ARGISNULL(1));
	breaker_settings(&settings);
	LWLockAcquire(rh->lock, LW_EXCLUSIVE);
	slot = claim_slot(&key, NULL, now);
	from = slot->breaker.state;
	note_change(slot, from, breaker_force(&slot->breaker, open, now, hold_us),
				now, &settings);
	slot->last_used = now;
	LWLockRelease(rh->lock);
	log_changes(false);
	PG_RETURN_VOID();
}

/*
 * ai_route_history() returns the last RH_HISTORY_SIZE changes of state of
 * the routes and endpoints since server start, oldest first.
 */
Datum
ai_route_history(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	RouteEvent *copy;
	uint64		nevents;
	uint64		first;
	uint64		n;

	calllog_require_loaded();
	InitMaterializedSRF(fcinfo, 0);

	/* copy the ring, so that no row is built under the lock */
	copy = palloc(sizeof(RouteEvent) * RH_HISTORY_SIZE);
	LWLockAcquire(rh->lock, LW_SHARED);
	memcpy(copy, rh_events, sizeof(RouteEvent) * RH_HISTORY_SIZE);
	nevents = rh->nevents;
	LWLockRelease(rh->lock);

	first = nevents > RH_HISTORY_SIZE ? nevents - RH_HISTORY_SIZE : 0;
	for (n = first; n < nevents; n++)
	{
		RouteEvent *event = &copy[n % RH_HISTORY_SIZE];
		Datum		values[RH_HISTORY_COLUMNS];
		bool		nulls[RH_HISTORY_COLUMNS];
		int			col = 0;

		memset(nulls, 0, sizeof(nulls));
		values[col++] = TimestampTzGetDatum(event->at);
		values[col++] = CStringGetTextDatum(event->endpoint);
		nulls[col] = event->is_endpoint;
		values[col++] = CStringGetTextDatum(event->model);
		values[col++] = CStringGetTextDatum(breaker_state_name(event->state));
		values[col++] = CStringGetTextDatum(breaker_change_name(event->change));
		values[col++] = Int32GetDatum(event->consecutive_failures);
		values[col++] = Int32GetDatum(event->window_requests);
		values[col++] = Int32GetDatum(event->window_failures);
		nulls[col] = event->state != BREAKER_OPEN;
		values[col++] = TimestampTzGetDatum(event->next_probe_at);
		nulls[col] = event->failure_class == CLASS_SUCCESS;
		values[col++] = CStringGetTextDatum(event->failure_class == CLASS_SUCCESS ? "" :
											policy_class_name(event->failure_class));
		nulls[col] = event->failure_code == 0;
		values[col++] = Int32GetDatum(event->failure_code);
		values[col++] = Int32GetDatum(event->pid);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
