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
 * many calls at once and return one row per prompt, in the prompts' order
 * (batch_order.c puts them back in order), into the result tuplestore,
 * which spills to disk beyond work_mem.  The prompts and keys are read from
 * their arrays one at a time, so a batch allocates nothing per prompt.
 *
 * Memory: a run's sources and sinks run in a call's memory, reset as soon
 * as the call is over; what they keep goes explicitly to a context that
 * outlives the run: the SQL function's (SingleCall.memory), or the batch
 * order's.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"
#include "utils/uuid.h"

#include "batch_order.h"
#include "call_log.h"
#include "gateway_text.h"
#include "guc.h"
#include "log_queue.h"
#include "runner.h"
#include "sql_api.h"

PG_FUNCTION_INFO_V1(ai_chat);
PG_FUNCTION_INFO_V1(ai_chat_complete);
PG_FUNCTION_INFO_V1(ai_chat_batch);
PG_FUNCTION_INFO_V1(ai_chat_batch_keyed);
PG_FUNCTION_INFO_V1(ai_flush_log);
PG_FUNCTION_INFO_V1(ai_log_stats);
PG_FUNCTION_INFO_V1(ai_enrich_require_top_level);

#define LOG_STATS_COLUMNS	8

/* Rows the ordering ring holds ahead of the first row not yet out, per slot. */
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
	MemoryContext memory;		/* the SQL function's: the outcome goes here */
	const char *prompt;
	Jsonb	   *request_json;
	bool		taken;			/* the source has handed it out */
	bool		succeeded;
	text	   *content;		/* the answer, ready to return */
	char	   *response_json;
	int			sqlstate;
	char	   *failure;
	char	   *last_error;
	pg_uuid_t	call_id;		/* for the failure's DETAIL */
} SingleCall;

/* A batch, as source and sink of a run. */
typedef struct Batch
{
	ArrayIterator prompts;		/* hands out the next prompt */
	int			nprompts;
	int			next;			/* the next prompt's index */
	ArrayIterator keys;			/* the next row's key; NULL: ord instead */
	OnError		on_error;
	int			finished;		/* rows finished */
	int			failed;			/* calls that failed */
	BatchOrder *order;
	Tuplestorestate *result;
	TupleDesc	result_desc;
	int			progress_step;	/* last progress step reported */
} Batch;

static void read_chat_arguments(FunctionCallInfo fcinfo, int models_argno,
								ChatArguments *args);
static OnError on_error_argument(FunctionCallInfo fcinfo, int argno);
static bool stream_argument(FunctionCallInfo fcinfo, int argno);
static void check_prompt(const char *argname, size_t len);
static bool single_source(void *arg, ChatCall *call);
static void single_sink(void *arg, ChatCall *call);
static Datum run_batch(FunctionCallInfo fcinfo, int prompts_argno, bool keyed);
static bool batch_source(void *arg, ChatCall *call);
static void batch_sink(void *arg, ChatCall *call);
static void batch_finish_row(Batch *batch, int ordinal, const BatchRow *row);
static void batch_emit(void *arg, int ordinal, const BatchRow *row);
static const char *batch_name(const Batch *batch);
static void raise_call_failure(int elevel, const pg_uuid_t *call_id,
							   int sqlstate, const char *failure,
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
	single.memory = CurrentMemoryContext;
	single.prompt = text_to_cstring(PG_GETARG_TEXT_PP(0));
	check_prompt("prompt", strlen(single.prompt));
	read_chat_arguments(fcinfo, 1, &args);

	runner_load_settings(&settings, args.models, 1);
	settings.stream = args.stream;
	runner_run(&settings, &args.common, single_source, single_sink, &single);

	if (single.succeeded)
		PG_RETURN_TEXT_P(single.content);

	raise_call_failure(args.on_error == ON_ERROR_RAISE ? ERROR : WARNING,
					   &single.call_id, single.sqlstate, single.failure,
					   single.last_error);
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
	single.memory = CurrentMemoryContext;
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
					   &single.call_id, single.sqlstate, single.failure,
					   single.last_error);
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
List *
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

/*
 * Sink of a one-call run: copy the outcome out of the call's memory into
 * the function's.
 */
static void
single_sink(void *arg, ChatCall *call)
{
	SingleCall *single = arg;
	MemoryContext old_context = MemoryContextSwitchTo(single->memory);

	single->succeeded = call->succeeded;
	/* ai_chat returns the text as it is: one copy, not two */
	single->content = call->content ? cstring_to_text(call->content) : NULL;
	single->response_json = call->response_json ? pstrdup(call->response_json) : NULL;
	single->sqlstate = call->sqlstate;
	single->failure = call->failure ? pstrdup(call->failure) : NULL;
	single->last_error = call->last_error ? pstrdup(call->last_error) : NULL;
	single->call_id = call->call_id;
	MemoryContextSwitchTo(old_context);
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
	ArrayType  *prompts;
	ArrayIterator check;
	Datum		prompt;
	bool		isnull;
	int			i;

	calllog_require_loaded();
	InitMaterializedSRF(fcinfo, 0);
	memset(&batch, 0, sizeof(batch));
	batch.result = ((ReturnSetInfo *) fcinfo->resultinfo)->setResult;
	batch.result_desc = ((ReturnSetInfo *) fcinfo->resultinfo)->setDesc;

	if (PG_ARGISNULL(prompts_argno))
		PG_RETURN_NULL();
	prompts = PG_GETARG_ARRAYTYPE_P(prompts_argno);
	batch.nprompts = ArrayGetNItems(ARR_NDIM(prompts), ARR_DIMS(prompts));

	if (keyed)
	{
		ArrayType  *keys = PG_ARGISNULL(0) ? NULL : PG_GETARG_ARRAYTYPE_P(0);
		int			nkeys = keys ?
			ArrayGetNItems(ARR_NDIM(keys), ARR_DIMS(keys)) : 0;

		if (nkeys != batch.nprompts)
			ereport(ERROR,
					(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
					 errmsg("keys has %d elements but prompts has %d",
							nkeys, batch.nprompts)));
		if (keys)
			batch.keys = array_create_iterator(keys, 0, NULL);
	}

	/* every prompt is checked before the first call goes out */
	check = array_create_iterator(prompts, 0, NULL);
	for (i = 0; array_iterate(check, &prompt, &isnull); i++)
	{
		char		argname[32];

		if (isnull)
			continue;
		snprintf(argname, sizeof(argname), "prompts[%d]", i + 1);
		check_prompt(argname, VARSIZE_ANY_EXHDR(DatumGetPointer(prompt)));
	}
	array_free_iterator(check);
	read_chat_arguments(fcinfo, prompts_argno + 1, &args);
	batch.on_error = args.on_error;

	if (batch.nprompts == 0)
		PG_RETURN_NULL();

	runner_load_settings(&settings, args.models,
						 Min(air_max_concurrency, air_max_concurrency_limit));
	settings.stream = args.stream;
	batch.prompts = array_create_iterator(prompts, 0, NULL);
	batch.order = batch_order_begin(batch.nprompts,
									BATCH_WINDOW_FACTOR *
									settings.max_in_flight,
									batch_emit, &batch);

	runner_run(&settings, &args.common, batch_source, batch_sink, &batch);
	batch_order_end(batch.order);

	if (batch.failed > 0)
		ereport(WARNING,
				(errcode(ERRCODE_AI_CALL_FAILED),
				 errmsg("%s: %d of %d prompts failed",
						batch_name(&batch), batch.failed, batch.nprompts),
				 errhint("The error column says why; every attempt is in ai_call_log.")));
	PG_RETURN_NULL();
}

/* Source of a batch: the next non-NULL prompt; a NULL prompt is a row at once. */
static bool
batch_source(void *arg, ChatCall *call)
{
	Batch	   *batch = arg;
	Datum		prompt;
	bool		isnull;

	while (batch->next < batch->nprompts)
	{
		int			i = batch->next++;

		if (!array_iterate(batch->prompts, &prompt, &isnull))
			elog(ERROR, "prompts array ended early");
		if (isnull)
		{
			BatchRow	row;

			memset(&row, 0, sizeof(row));
			batch_finish_row(batch, i, &row);
			continue;
		}
		call->prompt = TextDatumGetCString(prompt);
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
		raise_call_failure(ERROR, &call->call_id, call->sqlstate,
						   call->failure, call->last_error);

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

/* A row is finished: hand it to the ordering, and report progress. */
static void
batch_finish_row(Batch *batch, int ordinal, const BatchRow *row)
{
	int			step;

	batch_order_add(batch->order, ordinal, row);
	batch->finished++;

	step = (int) ((int64) batch->finished * PROGRESS_STEPS / batch->nprompts);
	if (air_progress && step > batch->progress_step)
	{
		batch->progress_step = step;
		ereport(NOTICE,
				(errmsg("%s: %d of %d prompts done (%d%%), %d failed",
						batch_name(batch), batch->finished, batch->nprompts,
						step * (100 / PROGRESS_STEPS), batch->failed)));
	}
}

/*
 * Put the next row in order into the result: ord or key, response,
 * call_id, attempts, error.  Runs in batch_order's scratch memory.
 */
static void
batch_emit(void *arg, int ordinal, const BatchRow *row)
{
	Batch	   *batch = arg;
	Datum		values[BATCH_COLUMNS];
	bool		nulls[BATCH_COLUMNS];

	memset(nulls, 0, sizeof(nulls));
	if (batch->keys)
	{
		if (!array_iterate(batch->keys, &values[0], &nulls[0]))
			elog(ERROR, "keys array ended early");
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
	tuplestore_putvalues(batch->result, batch->result_desc, values, nulls);
}

/* The SQL function's name, for messages. */
static const char *
batch_name(const Batch *batch)
{
	return batch->keys ? "ai_chat_batch_keyed" : "ai_chat_batch";
}

/*
 * Report a call whose every route failed, at elevel, in words the client
 * encoding can show (see gateway_text.c).  The DETAIL starts with the
 * call's call_id, so that a handler (GET STACKED DIAGNOSTICS ... =
 * PG_EXCEPTION_DETAIL) or a reader of the server log finds its attempts.
 */
static void
raise_call_failure(int elevel, const pg_uuid_t *call_id, int sqlstate,
				   const char *failure, const char *last_error)
{
	char	   *id = DatumGetCString(DirectFunctionCall1(uuid_out,
														 UUIDPGetDatum(call_id)));

	ereport(elevel,
			(errcode(sqlstate),
			 errmsg("ai_chat: %s", gateway_text_for_client(failure)),
			 last_error ?
			 errdetail("call_id %s; last error: %s", id,
					   gateway_text_for_client(last_error)) :
			 errdetail("call_id %s", id),
			 errhint("Every attempt is in ai_call_log.")));
}

/*
 * ai_enrich_require_top_level(caller text) raises 25001 inside a transaction
 * block: the procedure ai_enrich commits after every slice, which only a
 * CALL outside a block may do, and says so before it takes any row.
 */
Datum
ai_enrich_require_top_level(PG_FUNCTION_ARGS)
{
	if (IsTransactionBlock())
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("%s cannot run inside a transaction block",
						text_to_cstring(PG_GETARG_TEXT_PP(0))),
				 errhint("CALL it on its own: it commits after every slice.")));
	PG_RETURN_VOID();
}
