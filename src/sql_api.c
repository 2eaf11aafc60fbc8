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
 * ai_chat is a run of one call.  ai_chat_batch and ai_chat_batch_keyed run
 * many calls at once and return one row per prompt, in the prompts' order,
 * without holding every answer in memory and without letting one slow
 * prompt hold up the others: a finished row goes to the result tuplestore
 * (which spills to disk beyond work_mem) as soon as every earlier row has
 * gone; until then it waits in a ring of BATCH_WINDOW_FACTOR *
 * max_concurrency rows; a row finished further ahead than that (behind a
 * prompt in a long backoff) goes to a tuplesort (which spills too), merged
 * in order at the end.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "catalog/pg_operator_d.h"
#include "executor/tuptable.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/tuplesort.h"
#include "utils/tuplestore.h"

#include "call_log.h"
#include "gateway_text.h"
#include "guc.h"
#include "log_queue.h"
#include "runner.h"

PG_FUNCTION_INFO_V1(ai_chat);
PG_FUNCTION_INFO_V1(ai_chat_complete);
PG_FUNCTION_INFO_V1(ai_chat_batch);
PG_FUNCTION_INFO_V1(ai_chat_batch_keyed);
PG_FUNCTION_INFO_V1(ai_flush_log);
PG_FUNCTION_INFO_V1(ai_log_stats);

#define LOG_STATS_COLUMNS	8

/* Rows a batch holds in memory ahead of the first unreturned row, per slot. */
#define BATCH_WINDOW_FACTOR		8

/* Columns of a batch row. */
#define BATCH_COLUMNS			5

/* Progress NOTICEs come every 100 / PROGRESS_STEPS percent. */
#define PROGRESS_STEPS			20

/* What to do when every route of a call fails. */
typedef enum OnError
{
	ON_ERROR_RAISE,
	ON_ERROR_NULL
} OnError;

/* The arguments the prompt functions share, from 'models' on. */
typedef struct ChatArguments
{
	List	   *models;
	ChatPrompt	common;
	OnError		on_error;
	bool		stream;
} ChatArguments;

/* The one call of ai_chat or ai_chat_complete, as source and sink of a run. */
typedef struct SingleCall
{
	const char *prompt;
	Jsonb	   *request_json;
	bool		taken;			/* the source has handed it out */
	bool		succeeded;
	char	   *content;		/* copied out of the run */
	char	   *response_json;
	int			sqlstate;
	char	   *failure;
	char	   *last_error;
} SingleCall;

/* A batch row that is finished and waits for the rows before it. */
typedef struct BatchRow
{
	bool		finished;
	bool		called;			/* false for a NULL prompt */
	pg_uuid_t	call_id;
	int			attempts;
	char	   *response;		/* NULL when the call failed */
	char	   *error;			/* why it failed */
} BatchRow;

/* A batch, as source and sink of a run. */
typedef struct Batch
{
	Datum	   *prompts;
	bool	   *prompt_nulls;
	int			nprompts;
	Datum	   *keys;			/* NULL: rows carry ord instead */
	bool	   *key_nulls;
	OnError		on_error;
	int			next;			/* next prompt to hand out */
	int			returned;		/* rows put in the tuplestore */
	int			failed;			/* calls that failed */
	int			window;			/* size of rows[] */
	BatchRow   *rows;			/* ring: row i at rows[i % window] */
	MemoryContext row_memory;	/* what rows[] points to */
	Tuplesortstate *overflow;	/* rows finished beyond the ring, or NULL */
	TupleDesc	overflow_desc;	/* (ordinal, the row's columns) */
	TupleTableSlot *overflow_slot;
	ReturnSetInfo *rsinfo;
	int			progress_step;	/* last progress step reported */
} Batch;

static void read_chat_arguments(FunctionCallInfo fcinfo, int models_argno,
								ChatArguments *args);
static List *models_argument(FunctionCallInfo fcinfo, int argno);
static OnError on_error_argument(FunctionCallInfo fcinfo, int argno);
static bool stream_argument(FunctionCallInfo fcinfo, int argno);
static void check_prompt(const char *argname, size_t len);
static bool single_source(void *arg, ChatCall *call);
static void single_sink(void *arg, ChatCall *call);
static Datum run_batch(FunctionCallInfo fcinfo, int prompts_argno, bool keyed);
static bool batch_source(void *arg, ChatCall *call);
static void batch_sink(void *arg, ChatCall *call);
static void batch_finish_row(Batch *batch, int ordinal, BatchRow *row);
static void batch_row_values(Batch *batch, int ordinal, BatchRow *row,
							 Datum *values, bool *nulls);
static void batch_return_row(Batch *batch, Datum *values, bool *nulls);
static void batch_overflow_row(Batch *batch, int ordinal, BatchRow *row);
static void batch_return_overflow(Batch *batch);
static void raise_call_failure(int elevel, int sqlstate, const char *failure,
							   const char *last_error);

/*
 * ai_chat(prompt, models, system_prompt, max_tokens, temperature, on_error)
 * returns the first answer any route gives.
 */
Datum
ai_chat(PG_FUNCTION_ARGS)
{
	SingleCall	single;
	ChatArguments args;
	CallSettings settings;

	calllog_require_loaded();
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();

	memset(&single, 0, sizeof(single));
	single.prompt = text_to_cstring(PG_GETARG_TEXT_PP(0));
	check_prompt("prompt", strlen(single.prompt));
	read_chat_arguments(fcinfo, 1, &args);

	runner_load_settings(&settings, args.models, 1);
	settings.stream = args.stream;
	runner_run(&settings, &args.common, single_source, single_sink, &single);

	if (single.succeeded)
		PG_RETURN_TEXT_P(cstring_to_text(single.content));

	raise_call_failure(args.on_error == ON_ERROR_RAISE ? ERROR : WARNING,
					   single.sqlstate, single.failure, single.last_error);
	PG_RETURN_NULL();
}

/*
 * ai_chat_complete(request, models, on_error, stream) sends a whole
 * chat-completions request (messages, response_format, tools, any provider
 * field) with "model" set per route, and returns the whole response; for a
 * streamed call, the equivalent response assembled from the stream.
 */
Datum
ai_chat_complete(PG_FUNCTION_ARGS)
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
	single.request_json = PG_GETARG_JSONB_P(0);
	if (!JB_ROOT_IS_OBJECT(single.request_json) ||
		JB_ROOT_IS_SCALAR(single.request_json))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("request must be a JSON object"),
				 errhint("Pass a chat-completions request such as '{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}'.")));
	if (VARSIZE(single.request_json) > (Size) air_max_prompt_bytes)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("request is over ai_resilience.max_prompt_bytes (%d)",
						air_max_prompt_bytes)));
	models = models_argument(fcinfo, 1);
	on_error = on_error_argument(fcinfo, 2);

	runner_load_settings(&settings, models, 1);
	settings.stream = stream_argument(fcinfo, 3);
	runner_run(&settings, &common, single_source, single_sink, &single);

	if (single.succeeded)
		PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in,
											CStringGetDatum(single.response_json)));

	raise_call_failure(on_error == ON_ERROR_RAISE ? ERROR : WARNING,
					   single.sqlstate, single.failure, single.last_error);
	PG_RETURN_NULL();
}

/*
 * ai_chat_batch(prompts, models, system_prompt, max_tokens, temperature,
 * on_error) returns (ord, response, call_id, attempts, error) per prompt,
 * in the prompts' order, running up to max_concurrency calls at once.
 */
Datum
ai_chat_batch(PG_FUNCTION_ARGS)
{
	return run_batch(fcinfo, 0, false);
}

/*
 * ai_chat_batch_keyed(keys, prompts, models, ...) is ai_chat_batch with the
 * caller's key in place of ord, so results join back to rows.
 */
Datum
ai_chat_batch_keyed(PG_FUNCTION_ARGS)
{
	return run_batch(fcinfo, 1, true);
}

/*
 * Read models, system_prompt, max_tokens, temperature and on_error, which
 * every chat function takes in that order from models_argno on.
 */
static void
read_chat_arguments(FunctionCallInfo fcinfo, int models_argno,
					ChatArguments *args)
{
	int			argno = models_argno;

	memset(args, 0, sizeof(*args));
	args->models = models_argument(fcinfo, argno++);
	if (!PG_ARGISNULL(argno))
	{
		char	   *system_prompt = text_to_cstring(PG_GETARG_TEXT_PP(argno));

		check_prompt("system_prompt", strlen(system_prompt));
		args->common.system_prompt = system_prompt;
	}
	argno++;
	if (!PG_ARGISNULL(argno))
	{
		args->common.max_tokens = PG_GETARG_INT32(argno);
		if (args->common.max_tokens <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("max_tokens must be positive")));
	}
	argno++;
	if (!PG_ARGISNULL(argno))
	{
		double		temperature = PG_GETARG_FLOAT8(argno);

		if (isnan(temperature) || isinf(temperature) || temperature < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("temperature must be a finite number at least 0")));
		args->common.temperature = temperature;
		args->common.has_temperature = true;
	}
	argno++;
	args->on_error = on_error_argument(fcinfo, argno++);
	args->stream = stream_argument(fcinfo, argno);
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
		/* a writer's message holds no key, but may have been cut anywhere */
		values[6] = CStringGetTextDatum(gateway_text_copy(stats.last_error,
														  sizeof(stats.last_error) - 1,
														  NIL));
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

/* The on_error argument: 'raise' or 'null'; NULL means 'raise'. */
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

/* The stream argument; NULL means ai_resilience.stream. */
static bool
stream_argument(FunctionCallInfo fcinfo, int argno)
{
	return PG_ARGISNULL(argno) ? air_stream : PG_GETARG_BOOL(argno);
}

/* A prompt must be non-empty and within ai_resilience.max_prompt_bytes. */
static void
check_prompt(const char *argname, size_t len)
{
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
	call->request_json = single->request_json;
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
	single->response_json = call->response_json ? pstrdup(call->response_json) : NULL;
	single->sqlstate = call->sqlstate;
	single->failure = call->failure ? pstrdup(call->failure) : NULL;
	single->last_error = call->last_error ? pstrdup(call->last_error) : NULL;
}

/*
 * The body of ai_chat_batch and ai_chat_batch_keyed: check every prompt,
 * then run them and return their rows in order.
 */
static Datum
run_batch(FunctionCallInfo fcinfo, int prompts_argno, bool keyed)
{
	Batch		batch;
	ChatArguments args;
	CallSettings settings;
	int			i;

	calllog_require_loaded();
	InitMaterializedSRF(fcinfo, 0);
	memset(&batch, 0, sizeof(batch));
	batch.rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	if (PG_ARGISNULL(prompts_argno))
		PG_RETURN_NULL();
	deconstruct_array(PG_GETARG_ARRAYTYPE_P(prompts_argno), TEXTOID, -1, false,
					  TYPALIGN_INT, &batch.prompts, &batch.prompt_nulls,
					  &batch.nprompts);

	if (keyed)
	{
		Oid			key_type;
		int16		typlen;
		bool		typbyval;
		char		typalign;
		int			nkeys = 0;

		if (!PG_ARGISNULL(0))
		{
			key_type = ARR_ELEMTYPE(PG_GETARG_ARRAYTYPE_P(0));
			get_typlenbyvalalign(key_type, &typlen, &typbyval, &typalign);
			deconstruct_array(PG_GETARG_ARRAYTYPE_P(0), key_type, typlen,
							  typbyval, typalign, &batch.keys, &batch.key_nulls,
							  &nkeys);
		}
		if (nkeys != batch.nprompts)
			ereport(ERROR,
					(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
					 errmsg("keys has %d elements but prompts has %d",
							nkeys, batch.nprompts)));
	}

	/* every prompt is checked before the first call goes out */
	for (i = 0; i < batch.nprompts; i++)
	{
		char		argname[32];

		if (batch.prompt_nulls[i])
			continue;
		snprintf(argname, sizeof(argname), "prompts[%d]", i + 1);
		check_prompt(argname,
					 VARSIZE_ANY_EXHDR(DatumGetPointer(batch.prompts[i])));
	}
	read_chat_arguments(fcinfo, prompts_argno + 1, &args);
	batch.on_error = args.on_error;

	if (batch.nprompts == 0)
		PG_RETURN_NULL();

	runner_load_settings(&settings, args.models, air_max_concurrency);
	settings.stream = args.stream;
	batch.window = Min(batch.nprompts,
					   BATCH_WINDOW_FACTOR * settings.max_in_flight);
	batch.rows = palloc0(sizeof(BatchRow) * batch.window);
	batch.row_memory = AllocSetContextCreate(CurrentMemoryContext,
											 "ai_chat_batch rows",
											 ALLOCSET_DEFAULT_SIZES);

	runner_run(&settings, &args.common, batch_source, batch_sink, &batch);
	batch_return_overflow(&batch);

	if (batch.failed > 0)
		ereport(WARNING,
				(errcode(ERRCODE_AI_CALL_FAILED),
				 errmsg("%s: %d of %d prompts failed",
						batch.keys ? "ai_chat_batch_keyed" : "ai_chat_batch",
						batch.failed, batch.nprompts),
				 errhint("The error column says why; every attempt is in ai_call_log.")));
	MemoryContextDelete(batch.row_memory);
	PG_RETURN_NULL();
}

/* Source of a batch: the next non-NULL prompt; a NULL prompt is a row at once. */
static bool
batch_source(void *arg, ChatCall *call)
{
	Batch	   *batch = arg;

	while (batch->next < batch->nprompts)
	{
		int			i = batch->next++;

		if (batch->prompt_nulls[i])
		{
			BatchRow	row;

			memset(&row, 0, sizeof(row));
			batch_finish_row(batch, i, &row);
			continue;
		}
		call->prompt = TextDatumGetCString(batch->prompts[i]);
		call->ordinal = i;
		return true;
	}
	return false;
}

/* Sink of a batch: the call's row, unless on_error => 'raise' ends it all. */
static void
batch_sink(void *arg, ChatCall *call)
{
	Batch	   *batch = arg;
	BatchRow	row;

	if (!call->succeeded && batch->on_error == ON_ERROR_RAISE)
		raise_call_failure(ERROR, call->sqlstate, call->failure,
						   call->last_error);

	memset(&row, 0, sizeof(row));
	row.called = true;
	row.call_id = call->call_id;
	row.attempts = call->attempts;
	if (call->succeeded)
		row.response = call->content;
	else
	{
		row.error = call->failure;
		batch->failed++;
	}
	batch_finish_row(batch, (int) call->ordinal, &row);
}

/*
 * A row is finished: return it now if every earlier row is out, else keep
 * it in the ring, or in the overflow sort when it is too far ahead.  The
 * row's strings are copied; the caller's may go away.
 */
static void
batch_finish_row(Batch *batch, int ordinal, BatchRow *row)
{
	BatchRow   *slot;
	Datum		values[BATCH_COLUMNS];
	bool		nulls[BATCH_COLUMNS];

	if (ordinal >= batch->returned + batch->window)
	{
		batch_overflow_row(batch, ordinal, row);
		return;
	}

	slot = &batch->rows[ordinal % batch->window];
	*slot = *row;
	slot->finished = true;
	if (row->response)
		slot->response = MemoryContextStrdup(batch->row_memory, row->response);
	if (row->error)
		slot->error = MemoryContextStrdup(batch->row_memory, row->error);

	while (batch->rows[batch->returned % batch->window].finished)
	{
		slot = &batch->rows[batch->returned % batch->window];
		batch_row_values(batch, batch->returned, slot, values, nulls);
		batch_return_row(batch, values, nulls);
		if (slot->response)
			pfree(slot->response);
		if (slot->error)
			pfree(slot->error);
		memset(slot, 0, sizeof(BatchRow));
	}
}

/* The result columns of a row: ord or key, response, call_id, attempts, error. */
static void
batch_row_values(Batch *batch, int ordinal, BatchRow *row, Datum *values,
				 bool *nulls)
{
	memset(nulls, 0, sizeof(bool) * BATCH_COLUMNS);
	if (batch->keys)
	{
		values[0] = batch->keys[ordinal];
		nulls[0] = batch->key_nulls[ordinal];
	}
	else
		values[0] = Int32GetDatum(ordinal + 1);
	nulls[1] = row->response == NULL;
	if (row->response)
		values[1] = CStringGetTextDatum(row->response);
	nulls[2] = !row->called;
	values[2] = UUIDPGetDatum(&row->call_id);
	values[3] = Int32GetDatum(row->attempts);
	nulls[4] = row->error == NULL;
	if (row->error)
		values[4] = CStringGetTextDatum(row->error);
}

/* Put the next row in order into the result, and report progress. */
static void
batch_return_row(Batch *batch, Datum *values, bool *nulls)
{
	ReturnSetInfo *rsinfo = batch->rsinfo;
	int			step;

	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	batch->returned++;

	step = (int) ((int64) batch->returned * PROGRESS_STEPS / batch->nprompts);
	if (air_progress && step > batch->progress_step)
	{
		batch->progress_step = step;
		ereport(NOTICE,
				(errmsg("%s: %d of %d prompts done (%d%%), %d failed",
						batch->keys ? "ai_chat_batch_keyed" : "ai_chat_batch",
						batch->returned, batch->nprompts,
						step * (100 / PROGRESS_STEPS), batch->failed)));
	}
}

/* Keep a row finished too far ahead in the overflow sort, by ordinal. */
static void
batch_overflow_row(Batch *batch, int ordinal, BatchRow *row)
{
	TupleTableSlot *slot;

	if (batch->overflow == NULL)
	{
		TupleDesc	result_desc = batch->rsinfo->setDesc;
		AttrNumber	sort_column = 1;
		Oid			sort_operator = Int4LessOperator;
		Oid			sort_collation = InvalidOid;
		bool		nulls_first = false;
		int			i;

		batch->overflow_desc = CreateTemplateTupleDesc(BATCH_COLUMNS + 1);
		TupleDescInitEntry(batch->overflow_desc, 1, "ordinal", INT4OID, -1, 0);
		for (i = 0; i < BATCH_COLUMNS; i++)
			TupleDescCopyEntry(batch->overflow_desc, i + 2, result_desc, i + 1);
		batch->overflow = tuplesort_begin_heap(batch->overflow_desc, 1,
											   &sort_column, &sort_operator,
											   &sort_collation, &nulls_first,
											   work_mem, NULL, TUPLESORT_NONE);
		batch->overflow_slot = MakeSingleTupleTableSlot(batch->overflow_desc,
														&TTSOpsVirtual);
	}

	slot = batch->overflow_slot;
	ExecClearTuple(slot);
	slot->tts_values[0] = Int32GetDatum(ordinal);
	slot->tts_isnull[0] = false;
	batch_row_values(batch, ordinal, row, slot->tts_values + 1,
					 slot->tts_isnull + 1);
	ExecStoreVirtualTuple(slot);
	tuplesort_puttupleslot(batch->overflow, slot);
}

/*
 * At the end of a batch, return the rows still waiting: those in the ring
 * join the overflow sort, and all come out in order.
 */
static void
batch_return_overflow(Batch *batch)
{
	TupleTableSlot *slot;
	int			i;

	if (batch->overflow == NULL)
		return;
	for (i = batch->returned;
		 i < Min(batch->nprompts, batch->returned + batch->window); i++)
	{
		BatchRow   *row = &batch->rows[i % batch->window];

		if (row->finished)
			batch_overflow_row(batch, i, row);
	}

	tuplesort_performsort(batch->overflow);
	slot = MakeSingleTupleTableSlot(batch->overflow_desc, &TTSOpsMinimalTuple);
	while (tuplesort_gettupleslot(batch->overflow, true, false, slot, NULL))
	{
		slot_getallattrs(slot);
		batch_return_row(batch, slot->tts_values + 1, slot->tts_isnull + 1);
	}
	ExecDropSingleTupleTableSlot(slot);
	ExecDropSingleTupleTableSlot(batch->overflow_slot);
	tuplesort_end(batch->overflow);
}

/*
 * Report a call whose every route failed, at elevel, in words the client
 * encoding can show (see gateway_text.c).
 */
static void
raise_call_failure(int elevel, int sqlstate, const char *failure,
				   const char *last_error)
{
	ereport(elevel,
			(errcode(sqlstate),
			 errmsg("ai_chat: %s", gateway_text_for_client(failure)),
			 last_error ? errdetail("Last error: %s",
									gateway_text_for_client(last_error)) : 0,
			 errhint("Every attempt is in ai_call_log.")));
}
