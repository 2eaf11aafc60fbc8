/*-------------------------------------------------------------------------
 *
 * pg_ai_resilience.c
 *	  Module entry point: registers the settings.
 *
 * The code is split by concern, and data flows one way through it:
 *	  sql_api.c		 SQL functions: validate input, build calls
 *	  runner.c		 drive calls: start attempts, apply decisions, wait
 *	  policy.c		 pure decisions: classify, backoff, next route
 *	  openai_wire.c	 the OpenAI chat-completions JSON, both directions
 *	  transport.c	 libcurl multi transfers waited on with the latch
 *	  call_log.c	 one ai_call_log row per HTTP attempt
 *	  guc.c			 the ai_resilience.* settings
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"

#include "guc.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/* Module load: define the settings. */
void
_PG_init(void)
{
	air_define_gucs();
}
