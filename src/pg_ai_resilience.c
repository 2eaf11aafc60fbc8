/*-------------------------------------------------------------------------
 *
 * pg_ai_resilience.c
 *	  Module entry point: registers the settings and the shared memory.
 *
 * The code is split by concern, and data flows one way through it:
 *	  sql_api.c		 SQL functions: validate input, build calls
 *	  runner.c		 drive calls: start attempts, apply decisions, wait
 *	  policy.c		 pure decisions: classify, backoff, next route
 *	  openai_wire.c	 the OpenAI chat-completions JSON, both directions
 *	  transport.c	 libcurl multi transfers waited on with the latch
 *	  call_log.c	 one ai_call_log record per HTTP attempt, queued
 *	  log_queue.c	 the shared-memory queue of records
 *	  log_writer.c	 background workers inserting the records
 *	  breaker.c		 pure decisions of a route's circuit breaker
 *	  route_health.c the breakers of every route, in shared memory
 *	  guc.c			 the ai_resilience.* settings
 *
 * The library must be in shared_preload_libraries: the log queue lives in
 * shared memory.  Loaded otherwise it only defines the settings, and the
 * SQL functions refuse to run (calllog_require_loaded).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "storage/ipc.h"

#include "call_log.h"
#include "guc.h"
#include "log_queue.h"
#include "log_writer.h"
#include "route_health.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void air_shmem_request(void);
static void air_shmem_startup(void);

/*
 * Module load: define the settings; when preloaded, set up shared memory,
 * the log writers and the statement hooks of the call log.
 */
void
_PG_init(void)
{
	rh_define_gucs();
	air_define_gucs();
	if (!process_shared_preload_libraries_in_progress)
		return;

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = air_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = air_shmem_startup;
	logwriter_register();
	calllog_install_hooks();
}

/* Ask for the log queue's and the route health's shared memory. */
static void
air_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	logq_request_shmem();
	rh_request_shmem();
}

/* Create or attach to the log queue and the route health table. */
static void
air_shmem_startup(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	logq_init_shmem();
	rh_init_shmem();
}
