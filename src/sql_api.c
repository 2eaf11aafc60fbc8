/*-------------------------------------------------------------------------
 *
 * sql_api.c
 *	  SQL-callable functions: check the arguments, run the calls, answer.
 *
 * Arguments are checked here, before any HTTP call, so that bad input gets
 * a clear error and costs nothing upstream.  A NULL prompt gives NULL
 * without a call, as a strict function would, so that an UPDATE over rows
 * with NULL bodies goes on.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "call_log.h"
#include "guc.h"
#include "log_queue.h"
#include "runner.h"

PG_FUNCTION_INFO_V1(ai_chat);
PG_FUNCTION_INFO_V1(ai_flush_log);
PG_FUNCTION_INFO_V1(ai_log_stats);

#define LOG_STATS_COLUMNS	8

/* What to do when every route fails. */
typedef enum OnError
{
	ON_ERROR_RAISE,
	ON_ERROR_NULL
} OnError;

/* The one call of ai_chat, as source and sink of a run. */
typedef struct SingleCall
{
	const char *prompt;
	bool		taken;			/* the source has handed it out */
	bool		succeeded;
	char	   *content;		/* copied out of the run */
	int			sqlstate;
	char	   *failure;
	char	   *last_error;
} SingleCall;

static List *models_argument(FunctionCallInfo fcinfo, int argno);
static OnError on_error_argument(FunctionCallInfo fcinfo, int argno);
static void check_prompt(const char *prompt, const char *argname);
static bool single_source(void *arg, ChatCall *call);
static void single_sink(void *arg, ChatCall *call);

/*
 * ai_chat(prompt, models, system_prompt, max_tokens, temperature, on_error)
 * returns the first answer any route gives.
 */
Datum
ai_chat(PG_FUNCTION_ARGS)
{
	SingleCall	single;
	ChatPrompt	common;
	CallSettings settings;
	List	   *models;
	OnError		on_error;

	calllog_require_loaded();
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();

	memset(&single, 0, sizeof(single));
	memset(&common, 0, sizeof(common));
	single.prompt = text_to_cstring(PG_GETARG_TEXT_PP(0));
	check_prompt(single.prompt, "prompt");

	models = models_argument(fcinfo, 1);
	if (!PG_ARGISNULL(2))
	{
		common.system_prompt = text_to_cstring(PG_GETARG_TEXT_PP(2));
		check_prompt(common.system_prompt, "system_prompt");
	}
	if (!PG_ARGISNULL(3))
	{
		common.max_tokens = PG_GETARG_INT32(3);
		if (common.max_tokens <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("max_tokens must be positive")));
	}
	if (!PG_ARGISNULL(4))
	{
		common.temperature = PG_GETARG_FLOAT8(4);
		common.has_temperature = true;
		if (isnan(common.temperature) || common.temperature < 0 ||
			isinf(common.temperature))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("temperature must be a finite number at least 0")));
	}
	on_error = on_error_argument(fcinfo, 5);

	runner_load_settings(&settings, models);
	runner_run(&settings, &common, single_source, single_sink, &single);

	if (single.succeeded)
		PG_RETURN_TEXT_P(cstring_to_text(single.content));

	ereport(on_error == ON_ERROR_RAISE ? ERROR : WARNING,
			(errcode(single.sqlstate),
			 errmsg("ai_chat: %s", single.failure),
			 single.last_error ? errdetail("Last error: %s", single.last_error) : 0,
			 errhint("Every attempt is in ai_call_log.")));
	PG_RETURN_NULL();
}

/*
 * ai_flush_log(timeout interval) waits until every attempt this session has
 * queued is in ai_call_log (or counted lost); false if timeout passes first.
 */
Datum
ai_flush_log(PG_FUNCTION_ARGS)
{
	Interval   *timeout = PG_GETARG_INTERVAL_P(0);
	double		timeout_ms;

	calllog_require_loaded();
	timeout_ms = (timeout->time +
				  (timeout->day + (double) timeout->month * DAYS_PER_MONTH) *
				  (double) USECS_PER_DAY) / 1000.0;
	if (timeout_ms < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("timeout must not be negative")));
	PG_RETURN_BOOL(logq_flush((long) Min(timeout_ms, (double) LONG_MAX / 2)));
}

/* ai_log_stats() returns the log queue's counters since server start. */
Datum
ai_log_stats(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	LogQueueStats stats;
	Datum		values[LOG_STATS_COLUMNS];
	bool		nulls[LOG_STATS_COLUMNS];

	calllog_require_loaded();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	logq_get_stats(&stats);

	memset(nulls, 0, sizeof(nulls));
	values[0] = Int64GetDatum((int64) stats.queued);
	values[1] = Int64GetDatum((int64) stats.written);
	values[2] = Int64GetDatum((int64) stats.lost);
	values[3] = Int64GetDatum((int64) stats.queue_waits);
	values[4] = Int32GetDatum(stats.in_queue);
	values[5] = Int32GetDatum(stats.writers);
	if (stats.last_error[0] == '\0')
		nulls[6] = nulls[7] = true;
	else
	{
		values[6] = CStringGetTextDatum(stats.last_error);
		values[7] = TimestampTzGetDatum(stats.last_error_at);
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/*
 * The models argument as a List of names, or ai_resilience.models when the
 * argument is NULL.  Refuses an empty list, NULL and empty names.
 */
static List *
models_argument(FunctionCallInfo fcinfo, int argno)
{
	List	   *models = NIL;
	Datum	   *elems;
	bool	   *nulls;
	int			nelems;
	int			i;

	if (PG_ARGISNULL(argno))
	{
		models = air_split_list("ai_resilience.models", air_models);
		if (models == NIL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("no model given"),
					 errhint("Pass models, or set ai_resilience.models.")));
		return models;
	}

	deconstruct_array(PG_GETARG_ARRAYTYPE_P(argno), TEXTOID, -1, false,
					  TYPALIGN_INT, &elems, &nulls, &nelems);
	if (nelems == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("models must not be empty")));
	for (i = 0; i < nelems; i++)
	{
		char	   *name;

		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("models must not contain NULL")));
		name = TextDatumGetCString(elems[i]);
		if (*name == '\0')
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("models must not contain an empty name")));
		models = lappend(models, name);
	}
	return models;
}

/* The on_error argument: 'raise' (also for NULL) or 'null'. */
static OnError
on_error_argument(FunctionCallInfo fcinfo, int argno)
{
	char	   *value;

	if (PG_ARGISNULL(argno))
		return ON_ERROR_RAISE;
	value = text_to_cstring(PG_GETARG_TEXT_PP(argno));
	if (strcmp(value, "raise") == 0)
		return ON_ERROR_RAISE;
	if (strcmp(value, "null") == 0)
		return ON_ERROR_NULL;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("on_error must be 'raise' or 'null', not \"%s\"", value)));
	return ON_ERROR_RAISE;		/* keep the compiler quiet */
}

/* A prompt must be non-empty and within ai_resilience.max_prompt_bytes. */
static void
check_prompt(const char *prompt, const char *argname)
{
	size_t		len = strlen(prompt);

	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be empty", argname)));
	if (len > (size_t) air_max_prompt_bytes)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%s is %zu bytes, over ai_resilience.max_prompt_bytes (%d)",
						argname, len, air_max_prompt_bytes)));
}

/* Source of a one-call run. */
static bool
single_source(void *arg, ChatCall *call)
{
	SingleCall *single = arg;

	if (single->taken)
		return false;
	single->taken = true;
	call->prompt = single->prompt;
	call->ordinal = 1;
	return true;
}

/* Sink of a one-call run: copy the outcome out of the call's memory. */
static void
single_sink(void *arg, ChatCall *call)
{
	SingleCall *single = arg;

	single->succeeded = call->succeeded;
	single->content = call->content ? pstrdup(call->content) : NULL;
	single->sqlstate = call->sqlstate;
	single->failure = call->failure ? pstrdup(call->failure) : NULL;
	single->last_error = call->last_error ? pstrdup(call->last_error) : NULL;
}
