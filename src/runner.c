/*-------------------------------------------------------------------------
 *
 * runner.c
 *	  Drive chat calls through their routes: attempts, retries, fallbacks.
 *
 * A run takes calls from a source, keeps up to max_in_flight attempts in
 * flight through the transport, and hands each finished call to a sink.
 * For every finished attempt it asks the policy what follows (success,
 * retry after a wait, fallback to the next route, failure), records the
 * attempt in the call log, and schedules the call accordingly.  A call
 * waiting out its backoff holds no transfer slot: the single wait in
 * transport_wait covers transfers, backoff timers and interrupts at once.
 *
 * Route health (route_health.c, issue 10): before each attempt the call
 * skips the routes whose breaker is open, and after it the attempt counts in
 * its route's health; a retry beyond the endpoint's retry budget becomes a
 * fallback.  The hooks are in the section "route health" below.
 *
 * Streams: after every wait, what streaming attempts in flight received is
 * assembled (openai_wire.c) and dropped from the transfer's buffer, so a
 * long stream holds only its text.  A stream is complete at its [DONE]:
 * the transfer is ended there, whatever the server does with the
 * connection afterwards.
 *
 * Memory: each call has its own context, in which the source fills it in
 * and the sink sees it; the context is reset once the sink has returned and
 * reused for the next call (one spare is kept; others are deleted with
 * their struct).  An attempt's response and stream live in a child context
 * reset before the call's next attempt; a prompt's plain response body is
 * freed once parsed.  So a run holds at most max_active calls, whatever the
 * number of calls; a source or sink keeps what outlives its call in a
 * context of its own.
 *
 * Errors: an error raised anywhere in a run (cancel, statement_timeout, a
 * failed log insert) aborts every transfer in flight before it propagates.
 * The attempts it cuts short are logged as cancelled, since the gateway may
 * have received and billed them; so are those in flight when the session
 * ends (pg_terminate_backend: a FATAL exits without unwinding to our
 * PG_CATCH), from a before_shmem_exit callback that finds the run through
 * current_run.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <time.h>

#include "common/pg_prng.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "utils/acl.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "call_log.h"
#include "gateway_text.h"
#include "guc.h"
#include "route_health.h"
#include "runner.h"
#include "secrets.h"

/* Calls in progress (in flight or waiting to retry) per transfer slot. */
#define ACTIVE_PER_SLOT	32

/* Finished transfers taken from the transport in one go. */
#define FINISHED_BATCH	64

/* Consecutive attempts of a call on one route that failed alike. */
typedef struct AttemptGroup
{
	int			route_index;
	char		label[16];		/* HTTP status, or error class */
	int			count;
} AttemptGroup;

/* The state of one run over many calls. */
typedef struct RunState
{
	const CallSettings *settings;
	const ChatPrompt *common;
	CallSink	sink;
	void	   *sink_arg;
	MemoryContext caller_memory;	/* current between calls */
	MemoryContext memory;		/* the run's calls */
	dlist_head	active;			/* calls admitted and not finished */
	int			nactive;
	int			in_flight;		/* calls with a transfer under way */
	ChatCall   *spare;			/* a finished call's struct, for reuse */
} RunState;

/* The run under way in this backend, for the exit callback; NULL: none. */
static RunState *current_run = NULL;

static ChatCall *admit_call(RunState *run, CallSource source, void *source_arg,
							TimestampTz now);
static void start_attempt(RunState *run, ChatCall *call, TimestampTz now);
static bool skip_open_routes(RunState *run, ChatCall *call, TimestampTz now,
							 long ms_left);
static char *route_state_text(const CallSettings *settings, int route_index);
static void apply_retry_budget(const CallSettings *settings, ChatCall *call,
							   RetryDecision *decision, TimestampTz now);
static void record_route_health(const CallSettings *settings, ChatCall *call,
								const TransportRequest *request,
								AttemptClass cls, int retry_after_ms,
								TimestampTz now);
static bool is_event_stream(const TransportRequest *request);
static void feed_stream(ChatCall *call, bool at_end);
static void read_answer(ChatCall *call, ChatAnswer *answer, AttemptFacts *facts);
static void complete_attempt(RunState *run, ChatCall *call);
static void finish_call(RunState *run, ChatCall *call, bool succeeded,
						int sqlstate, const char *last_error);
static void summary_add(ChatCall *call, int route_index, const char *label);
static char *summary_text(const CallSettings *settings, const ChatCall *call);
static char *attempt_error_text(const CallSettings *settings,
								const TransportRequest *request,
								const ChatAnswer *answer, AttemptClass cls);
static void describe_attempt(const CallSettings *settings, const ChatCall *call,
							 const TransportRequest *request,
							 CallAttempt *attempt);
static void log_interrupted_attempts(RunState *run, const char *why);
static void log_attempts_at_exit(int code, Datum arg);

/*
 * Read the settings for a run: endpoints, keys, limits, the models to try
 * (the caller's list, already validated), and how many attempts may be in
 * flight at once.  Raises a clear error for a configuration that cannot
 * work, before any HTTP call.
 */
void
runner_load_settings(CallSettings *settings, List *models, int max_in_flight)
{
	List	   *urls = air_split_list("ai_resilience.endpoints", air_endpoints_value);
	List	   *keys = secrets_api_keys();
	char	   *count_problem;
	ListCell   *lc;
	int			i;

	memset(settings, 0, sizeof(*settings));

	if (urls == NIL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("no AI endpoint is configured"),
				 errhint("Set ai_resilience.endpoints, e.g. to 'http://127.0.0.1:8080/v1'.")));
	count_problem = secrets_key_count_problem(list_length(keys),
											  list_length(urls));
	if (count_problem)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg_internal("%s", count_problem),
				 errhint(SECRETS_KEY_COUNT_HINT)));

	settings->keys = keys;
	settings->nendpoints = list_length(urls);
	settings->endpoints = palloc0(sizeof(Endpoint) * settings->nendpoints);
	i = 0;
	foreach(lc, urls)
	{
		Endpoint   *endpoint = &settings->endpoints[i];
		const char *url = lfirst(lc);

		endpoint->url = (char *) url;
		endpoint->chat_url = secrets_resource_url(url, "chat/completions");
		endpoint->display = palloc(strlen(url) + 1);
		secrets_url_display(url, endpoint->display);
		if (keys != NIL)
			endpoint->api_key = list_nth(keys, list_length(keys) == 1 ? 0 : i);
		endpoint->extra_headers = secrets_extra_headers(i, settings->nendpoints);
		i++;
	}

	settings->nmodels = list_length(models);
	settings->models = palloc(sizeof(char *) * settings->nmodels);
	i = 0;
	foreach(lc, models)
		settings->models[i++] = lfirst(lc);

	settings->retry.max_retries = air_max_retries;
	settings->retry.backoff_base_ms = air_backoff_base_ms;
	settings->retry.backoff_max_ms = air_backoff_max_ms;
	settings->retry.retry_after_max_ms = air_retry_after_max_ms;
	settings->connect_timeout_ms = air_connect_timeout_ms;
	settings->request_timeout_ms = air_request_timeout_ms;
	settings->deadline_ms = air_deadline_ms;
	/* a ceiling lowered after the session set its value still caps it */
	settings->max_response_bytes = Min(air_max_response_bytes,
									   air_max_response_bytes_limit);
	settings->log_prompts = air_log_prompts;
	settings->stream = air_stream;
	settings->stream_on_timeout = air_stream_on_timeout;
	settings->first_byte_timeout_ms = air_first_byte_timeout_ms;
	settings->stream_idle_timeout_ms = air_stream_idle_timeout_ms;
	settings->max_in_flight = max_in_flight;
	/* calls waiting out a backoff hold memory, not slots: bound them too */
	settings->max_active = max_in_flight * ACTIVE_PER_SLOT;
	settings->role_name = GetUserNameFromId(GetUserId(), false);
	settings->session_role = GetUserNameFromId(GetSessionUserId(), false);
	/* the caller's own, now: the log writer cannot know them */
	settings->application_name = pstrdup(application_name);
	settings->tag = air_tag && air_tag[0] ? pstrdup(air_tag) : NULL;
}

/*
 * A new call id: a version 4, variant 1 UUID from the backend's PRNG (seeded
 * from a strong source at backend start): an identifier, not a secret, and
 * a strong random source per call costs more than the rest of a call's
 * bookkeeping.
 */
void
runner_new_call_id(pg_uuid_t *call_id)
{
	uint64		high = pg_prng_uint64(&pg_global_prng_state);
	uint64		low = pg_prng_uint64(&pg_global_prng_state);

	memcpy(call_id->data, &high, sizeof(high));
	memcpy(call_id->data + sizeof(high), &low, sizeof(low));
	call_id->data[6] = (call_id->data[6] & 0x0f) | 0x40;
	call_id->data[8] = (call_id->data[8] & 0x3f) | 0x80;
}

/*
 * Run calls from source until it has no more and every call has finished,
 * handing each finished call to sink.
 */
void
runner_run(const CallSettings *settings, const ChatPrompt *common,
		   CallSource source, CallSink sink, void *arg)
{
	static bool exit_callback_registered = false;
	RunState	run;
	RunState   *outer_run = current_run;

	if (!exit_callback_registered)
	{
		before_shmem_exit(log_attempts_at_exit, (Datum) 0);
		exit_callback_registered = true;
	}
	memset(&run, 0, sizeof(run));
	run.settings = settings;
	run.common = common;
	run.sink = sink;
	run.sink_arg = arg;
	run.caller_memory = CurrentMemoryContext;
	run.memory = AllocSetContextCreate(CurrentMemoryContext,
									   "ai_resilience run",
									   ALLOCSET_DEFAULT_SIZES);
	dlist_init(&run.active);
	current_run = &run;

	PG_TRY();
	{
		bool		source_done = false;

		for (;;)
		{
			TimestampTz now = GetCurrentTimestamp();
			TimestampTz next_ready = 0;
			TransportRequest *finished[FINISHED_BATCH];
			dlist_mutable_iter iter;
			long		timeout_ms;
			int			nfinished;
			int			i;

			/* calls whose backoff is over go before new calls */
			dlist_foreach_modify(iter, &run.active)
			{
				ChatCall   *call = dlist_container(ChatCall, node, iter.cur);

				if (call->request != NULL)
					continue;
				if (call->ready_at > now)
				{
					if (next_ready == 0 || call->ready_at < next_ready)
						next_ready = call->ready_at;
				}
				else if (run.in_flight < settings->max_in_flight)
					start_attempt(&run, call, now);
			}

			while (!source_done && run.in_flight < settings->max_in_flight &&
				   run.nactive < settings->max_active)
			{
				ChatCall   *call = admit_call(&run, source, arg, now);

				if (call == NULL)
					source_done = true;
				else
					start_attempt(&run, call, now);
			}

			if (source_done && dlist_is_empty(&run.active))
				break;

			/* sleep until a transfer ends or the next backoff is over */
			timeout_ms = next_ready ?
				TimestampDifferenceMilliseconds(now, next_ready) : 60 * 1000L;
			nfinished = transport_wait(timeout_ms, finished, FINISHED_BATCH);
			for (i = 0; i < nfinished; i++)
				complete_attempt(&run, (ChatCall *) finished[i]->caller_data);

			/*
			 * Take in what streams in flight have received so far.  After
			 * [DONE] the answer is whole, whether the server closes the
			 * connection or not.
			 */
			dlist_foreach_modify(iter, &run.active)
			{
				ChatCall   *call = dlist_container(ChatCall, node, iter.cur);

				if (call->request == NULL || !call->streaming)
					continue;
				feed_stream(call, false);
				if (call->stream.done)
				{
					transport_finish_early(call->request);
					complete_attempt(&run, call);
				}
			}
		}
	}
	PG_CATCH();
	{
		current_run = outer_run;
		log_interrupted_attempts(&run,
								 "the statement ended (cancel, timeout or error) during the attempt");
		rh_release_probes();
		transport_abort_all();
		PG_RE_THROW();
	}
	PG_END_TRY();

	current_run = outer_run;
	MemoryContextDelete(run.memory);
}

/* Take the next call from the source and prepare it; NULL when none. */
static ChatCall *
admit_call(RunState *run, CallSource source, void *source_arg, TimestampTz now)
{
	ChatCall   *call = run->spare;
	MemoryContext memory;
	MemoryContext old_context;
	bool		found;

	/* a spare call keeps its (reset) memory context for the next one */
	if (call == NULL)
	{
		call = MemoryContextAlloc(run->memory, sizeof(ChatCall));
		memory = AllocSetContextCreate(run->memory, "ai_resilience call",
									   ALLOCSET_DEFAULT_SIZES);
	}
	else
		memory = call->memory;
	run->spare = NULL;
	memset(call, 0, sizeof(ChatCall));
	call->memory = memory;

	old_context = MemoryContextSwitchTo(call->memory);
	found = source(source_arg, call);
	MemoryContextSwitchTo(old_context);

	if (!found)
	{
		MemoryContextReset(call->memory);
		run->spare = call;
		return NULL;
	}

	runner_new_call_id(&call->call_id);
	call->deadline_at = TimestampTzPlusMilliseconds(now, run->settings->deadline_ms);
	call->ready_at = now;
	call->body_model = -1;
	call->stream_on_route = run->settings->stream;
	dlist_push_tail(&run->active, &call->node);
	run->nactive++;
	return call;
}

/* Start the call's next attempt on its current route. */
static void
start_attempt(RunState *run, ChatCall *call, TimestampTz now)
{
	const CallSettings *settings = run->settings;
	long		ms_left = TimestampDifferenceMilliseconds(now, call->deadline_at);
	TransportRequest *request;
	MemoryContext old_context;
	int			model_index;
	int			endpoint_index;

	if (ms_left <= 0)
	{
		finish_call(run, call, false, ERRCODE_AI_DEADLINE, NULL);
		return;
	}
	if (!skip_open_routes(run, call, now, ms_left))
		return;

	policy_route_at(call->route_index, settings->nendpoints,
					&model_index, &endpoint_index);
	call->streaming = call->stream_on_route;

	/* the body depends on the model and on streaming, not on the endpoint */
	old_context = MemoryContextSwitchTo(call->memory);
	if (call->body_model != model_index || call->body_streams != call->streaming)
	{
		const char *model = settings->models[model_index];

		if (call->body)
			pfree(call->body);
		if (call->request_json)
			call->body = wire_build_full_request(call->request_json, model,
												 call->streaming,
												 &call->body_len);
		else
			call->body = wire_build_chat_request(run->common, call->prompt,
												 model, call->streaming,
												 &call->body_len);
		call->body_model = model_index;
		call->body_streams = call->streaming;
	}

	/* what the last attempt received goes before this one starts */
	if (call->attempt_memory == NULL)
		call->attempt_memory = AllocSetContextCreate(call->memory,
													 "ai_resilience attempt",
													 ALLOCSET_DEFAULT_SIZES);
	else
		MemoryContextReset(call->attempt_memory);
	MemoryContextSwitchTo(call->attempt_memory);
	wire_stream_init(&call->stream, settings->max_response_bytes);
	call->first_token_at = 0;

	request = palloc0(sizeof(TransportRequest));
	request->url = settings->endpoints[endpoint_index].chat_url;
	request->body = call->body;
	request->body_len = call->body_len;
	request->api_key = settings->endpoints[endpoint_index].api_key;
	request->extra_headers = settings->endpoints[endpoint_index].extra_headers;
	request->stream = call->streaming;
	request->connect_timeout_ms = settings->connect_timeout_ms;
	request->first_byte_timeout_ms = settings->first_byte_timeout_ms;
	request->idle_timeout_ms = call->streaming ?
		settings->stream_idle_timeout_ms : 0;
	request->timeout_ms = settings->request_timeout_ms;
	request->deadline_ms = ms_left;
	request->max_response_bytes = settings->max_response_bytes;
	request->memory = call->attempt_memory;
	request->caller_data = call;
	MemoryContextSwitchTo(old_context);

	call->attempts++;
	call->attempt_started_at = now;
	transport_start(request);
	call->request = request;
	run->in_flight++;
}

/*---- route health (issue 10) ----*/

/*
 * Move the call past the routes whose breaker is open (route_health.c),
 * without waiting: each skipped route counts in the call's summary as
 * "open", and is named with its state in the log row of the attempt that
 * follows (skipped_routes).  Returns false when no route is left and the
 * call has failed: a call that made no attempt fails with
 * ERRCODE_AI_ROUTES_OPEN, naming each route and when it will be probed.
 */
static bool
skip_open_routes(RunState *run, ChatCall *call, TimestampTz now, long ms_left)
{
	const CallSettings *settings = run->settings;
	int			nroutes = settings->nmodels * settings->nendpoints;
	long		lease_ms = settings->connect_timeout_ms +
		Min(settings->request_timeout_ms, ms_left);
	StringInfoData routes;
	int			model_index;
	int			endpoint_index;
	int			i;

	/* the previous attempt's row has them already */
	call->skipped_routes = NULL;
	for (; call->route_index < nroutes; call->route_index++)
	{
		MemoryContext old_context;
		char	   *state;

		policy_route_at(call->route_index, settings->nendpoints,
						&model_index, &endpoint_index);
		if (rh_admit(settings->endpoints[endpoint_index].display,
					 settings->models[model_index], now, lease_ms,
					 &call->probes))
			return true;
		old_context = MemoryContextSwitchTo(call->memory);
		state = route_state_text(settings, call->route_index);
		call->skipped_routes = call->skipped_routes == NULL ? state :
			psprintf("%s; %s", call->skipped_routes, state);
		MemoryContextSwitchTo(old_context);
		summary_add(call, call->route_index, "open");
		call->retries_on_route = 0;
		call->stream_on_route = settings->stream;
	}

	if (call->attempts > 0)
	{
		finish_call(run, call, false, ERRCODE_AI_CALL_FAILED, NULL);
		return false;
	}
	initStringInfo(&routes);
	for (i = 0; i < nroutes; i++)
		appendStringInfo(&routes, "%s%s", i ? "; " : "",
						 route_state_text(settings, i));
	finish_call(run, call, false, ERRCODE_AI_ROUTES_OPEN, routes.data);
	return false;
}

/* "model@endpoint <its breaker's state>", for route route_index. */
static char *
route_state_text(const CallSettings *settings, int route_index)
{
	int			model_index;
	int			endpoint_index;
	const char *display;

	policy_route_at(route_index, settings->nendpoints, &model_index,
					&endpoint_index);
	display = settings->endpoints[endpoint_index].display;
	return psprintf("%s@%s %s", settings->models[model_index], display,
					rh_describe(display, settings->models[model_index]));
}

/* Count a finished attempt in its route's health, for every session. */
static void
record_route_health(const CallSettings *settings, ChatCall *call,
					const TransportRequest *request, AttemptClass cls,
					int retry_after_ms, TimestampTz now)
{
	int			model_index;
	int			endpoint_index;

	policy_route_at(call->route_index, settings->nendpoints,
					&model_index, &endpoint_index);
	rh_record(settings->endpoints[endpoint_index].display,
			  settings->models[model_index], cls, request->failure,
			  (int) request->http_status, retry_after_ms, call->probes, now);
	call->probes = 0;
}

/*
 * A retry the endpoint's retry budget does not allow becomes a fallback (a
 * failure on the last route) at once: retries past the budget would
 * multiply the load on a struggling gateway.
 */
static void
apply_retry_budget(const CallSettings *settings, ChatCall *call,
				   RetryDecision *decision, TimestampTz now)
{
	int			model_index;
	int			endpoint_index;

	policy_route_at(call->route_index, settings->nendpoints,
					&model_index, &endpoint_index);
	if (rh_grant_retry(settings->endpoints[endpoint_index].display, now))
		return;
	decision->outcome = call->route_index + 1 <
		settings->nmodels * settings->nendpoints ?
		OUTCOME_FALLBACK : OUTCOME_FAILED;
	decision->wait_ms = 0;
	decision->honoured_retry_after = false;
}

/*---- end of route health ----*/

/* Is the request's answer a 2xx event stream (so far as it has come)? */
static bool
is_event_stream(const TransportRequest *request)
{
	return request->status_seen >= 200 && request->status_seen < 300 &&
		pg_strncasecmp(request->content_type, "text/event-stream", 17) == 0;
}

/*
 * Take what a streaming attempt has received into its assembly, and drop the
 * bytes used.  Only a 2xx event stream is assembled; anything else (an error
 * status, a server that ignored "stream") is read whole at the end.
 */
static void
feed_stream(ChatCall *call, bool at_end)
{
	TransportRequest *request = call->request;
	MemoryContext old_context;
	size_t		used;

	if (!is_event_stream(request))
		return;

	old_context = MemoryContextSwitchTo(call->attempt_memory);
	used = wire_stream_feed(&call->stream, request->response,
							request->response_len, at_end);
	transport_consume(request, used);
	if (call->first_token_at == 0 && call->stream.content.len > 0)
		call->first_token_at = GetCurrentTimestamp();
	MemoryContextSwitchTo(old_context);
}

/*
 * Read a finished attempt's answer into answer and facts: a whole body, or
 * what the stream assembled.
 */
static void
read_answer(ChatCall *call, ChatAnswer *answer, AttemptFacts *facts)
{
	TransportRequest *request = call->request;
	StreamAssembly *stream = &call->stream;

	memset(answer, 0, sizeof(*answer));
	answer->prompt_tokens = answer->completion_tokens = -1;
	facts->streaming = call->streaming;

	/* a stream that broke off still counts what it delivered: it is billed */
	if (call->streaming && is_event_stream(request))
		feed_stream(call, true);

	/*
	 * Once [DONE] has come the answer is whole: what the connection did
	 * afterwards (went quiet, broke, sent too much) is not the attempt's
	 * failure.
	 */
	if (call->stream.done)
	{
		request->failure = TRANSPORT_OK;
		request->error[0] = '\0';
	}
	if (request->failure != TRANSPORT_OK)
		return;

	if (!call->streaming || !is_event_stream(request))
	{
		wire_parse_chat_response(request->response, request->response_len,
								 answer);
		facts->answer_ok = answer->problem == NULL &&
			(call->request_json != NULL || answer->content_problem == NULL);
		/* a prompt's answer is parsed out: the body goes before it is copied */
		if (call->request_json == NULL)
			transport_release_response(request);
		else if (facts->answer_ok)
		{
			call->response_json = wire_response_text(request->response,
													 request->response_len);
			if (call->response_json == NULL)
			{
				answer->problem = "response is not valid UTF-8";
				facts->answer_ok = false;
			}
		}
		return;
	}

	answer->content = stream->content.data;
	answer->finish_reason = stream->finish_reason;
	answer->model = stream->model;
	answer->prompt_tokens = stream->prompt_tokens;
	answer->completion_tokens = stream->completion_tokens;
	answer->error_message = stream->error_message;
	answer->error_type = stream->error_type;
	answer->error_code = stream->error_code;
	if (stream->error_message || stream->error_type || stream->error_code)
	{
		facts->stream_failure = STREAM_ERROR_EVENT;
		answer->problem = "the stream carried an error";
	}
	else if (stream->problem)
	{
		facts->stream_failure = STREAM_BAD_CHUNK;
		answer->problem = stream->problem;
	}
	else if (!stream->done)
	{
		facts->stream_failure = STREAM_CUT;
		answer->problem = "the stream ended before [DONE]";
	}
	else if (stream->finish_reason == NULL)
	{
		facts->stream_failure = STREAM_CUT;
		answer->problem = "the stream ended without a finish_reason";
	}
	else
	{
		facts->answer_ok = true;
		if (call->request_json)
			call->response_json = wire_stream_response(stream);
	}
}

/*
 * A call's transfer has ended: read the answer, classify the attempt, log
 * it, and apply the policy's decision.
 */
static void
complete_attempt(RunState *run, ChatCall *call)
{
	const CallSettings *settings = run->settings;
	TransportRequest *request = call->request;
	TimestampTz now = GetCurrentTimestamp();
	MemoryContext old_context = MemoryContextSwitchTo(call->attempt_memory);
	ChatAnswer	answer;
	AttemptFacts facts;
	AttemptClass cls;
	bool		retryable;
	int			retry_after_ms;
	RetryDecision decision;
	CallAttempt attempt;
	char	   *error_text;
	char		label[16];

	run->in_flight--;

	memset(&facts, 0, sizeof(facts));
	read_answer(call, &answer, &facts);
	call->request = NULL;

	/* for a timeout, the transport says which timer fired */
	facts.transport = request->failure;
	facts.http_status = (int) request->http_status;
	facts.error_code = answer.error_code;
	facts.error_type = answer.error_type;
	facts.error_message = answer.error_message;
	facts.should_retry = request->should_retry[0] ? request->should_retry : NULL;

	cls = policy_classify(&facts, &retryable);
	retry_after_ms = policy_retry_after_ms(request->retry_after_ms,
										   request->retry_after, time(NULL));
	if (retry_after_ms < 0)
		retry_after_ms = policy_retry_after_in_message(facts.http_status,
													   facts.error_message);
	record_route_health(settings, call, request, cls, retry_after_ms, now);
	decision = policy_decide(cls, retryable, call->retries_on_route,
							 retry_after_ms, &settings->retry,
							 pg_prng_double(&pg_global_prng_state),
							 TimestampDifferenceMilliseconds(now, call->deadline_at),
							 call->route_index + 1 <
							 settings->nmodels * settings->nendpoints);
	if (decision.outcome == OUTCOME_RETRY)
		apply_retry_budget(settings, call, &decision, now);

	error_text = attempt_error_text(settings, request, &answer, cls);

	describe_attempt(settings, call, request, &attempt);
	attempt.latency_ms = request->elapsed_us / 1000.0;
	attempt.http_status = (int) request->http_status;
	attempt.error_class = cls;
	attempt.error = error_text;
	attempt.retry_after_ms = retry_after_ms;
	attempt.backoff_ms = decision.outcome == OUTCOME_RETRY ? decision.wait_ms : -1;
	attempt.outcome = decision.outcome;
	attempt.model_returned = answer.model;
	attempt.finish_reason = answer.finish_reason;
	attempt.prompt_tokens = answer.prompt_tokens;
	attempt.completion_tokens = answer.completion_tokens;
	if (call->streaming && call->first_token_at != 0)
		attempt.ttft_ms = (call->first_token_at - request->started_at) / 1000.0;
	else if (!call->streaming && request->first_byte_at != 0)
		attempt.ttft_ms = (request->first_byte_at - request->started_at) / 1000.0;
	attempt.response_bytes = call->streaming ? (int) call->stream.content.len :
		answer.content ? (int) strlen(answer.content) : -1;
	calllog_append(&attempt);

	/* the summary names a failure by its status, or (after none or a 2xx) its class */
	if (request->http_status > 0 &&
		(request->http_status < 200 || request->http_status >= 300))
		snprintf(label, sizeof(label), "%ld", request->http_status);
	else
		strlcpy(label, policy_class_name(cls) ? policy_class_name(cls) : "ok",
				sizeof(label));
	summary_add(call, call->route_index, label);

	switch (decision.outcome)
	{
		case OUTCOME_SUCCESS:
			call->content = answer.content;
			finish_call(run, call, true, 0, NULL);
			break;
		case OUTCOME_RETRY:
			call->retries_on_route++;
			call->ready_at = TimestampTzPlusMilliseconds(now, decision.wait_ms);
			call->stream_on_route = policy_stream_next(cls, (int) request->http_status,
													   call->streaming,
													   settings->stream,
													   settings->stream_on_timeout);
			break;
		case OUTCOME_FALLBACK:
			call->route_index++;
			call->retries_on_route = 0;
			call->ready_at = now;
			call->stream_on_route = settings->stream;
			break;
		case OUTCOME_FAILED:
			finish_call(run, call, false,
						cls == CLASS_DEADLINE ? ERRCODE_AI_DEADLINE :
						ERRCODE_AI_CALL_FAILED, error_text);
			break;
	}
	MemoryContextSwitchTo(old_context);
}

/* Hand a finished call to the sink, then free it; leaves the caller's memory current. */
static void
finish_call(RunState *run, ChatCall *call, bool succeeded, int sqlstate,
			const char *last_error)
{
	MemoryContextSwitchTo(call->memory);
	call->succeeded = succeeded;
	if (!succeeded)
	{
		char	   *summary = summary_text(run->settings, call);

		call->sqlstate = sqlstate;
		call->last_error = (char *) last_error;
		if (sqlstate == ERRCODE_AI_DEADLINE)
			call->failure = psprintf("ai_resilience.deadline (%d ms) passed after %d attempt%s: %s",
									 run->settings->deadline_ms, call->attempts,
									 call->attempts == 1 ? "" : "s",
									 summary);
		else if (sqlstate == ERRCODE_AI_ROUTES_OPEN)
		{
			/* last_error describes the open routes: it is the message */
			call->failure = psprintf("every route is open, no attempt was made: %s",
									 last_error);
			call->last_error = NULL;
		}
		else if (call->attempts == 1)
			call->failure = psprintf("the only attempt failed: %s", summary);
		else
			call->failure = psprintf("all %d attempts failed: %s",
									 call->attempts, summary);
	}

	/*
	 * The sink runs in the call's memory, which goes away when it returns:
	 * what it keeps, it copies to memory of its own.
	 */
	run->sink(run->sink_arg, call);
	MemoryContextSwitchTo(run->caller_memory);

	dlist_delete(&call->node);
	run->nactive--;
	if (run->spare == NULL)
	{
		MemoryContextReset(call->memory);
		run->spare = call;
	}
	else
	{
		MemoryContextDelete(call->memory);
		pfree(call);
	}
}

/*
 * Count an attempt in the call's summary: consecutive attempts on one route
 * with one label form a group.  The summary outlives the attempt, so it
 * lives in the call's memory.
 */
static void
summary_add(ChatCall *call, int route_index, const char *label)
{
	AttemptGroup *group = call->summary ? llast(call->summary) : NULL;
	MemoryContext old_context;

	if (group && group->route_index == route_index &&
		strcmp(group->label, label) == 0)
	{
		group->count++;
		return;
	}
	old_context = MemoryContextSwitchTo(call->memory);
	group = palloc(sizeof(AttemptGroup));
	group->route_index = route_index;
	strlcpy(group->label, label, sizeof(group->label));
	group->count = 1;
	call->summary = lappend(call->summary, group);
	MemoryContextSwitchTo(old_context);
}

/* The summary as text: "m1@gw1 502 x3; m2@gw1 timeout". */
static char *
summary_text(const CallSettings *settings, const ChatCall *call)
{
	StringInfoData out;
	ListCell   *lc;

	initStringInfo(&out);
	foreach(lc, call->summary)
	{
		AttemptGroup *group = lfirst(lc);
		const char *display;
		int			model_index;
		int			endpoint_index;

		policy_route_at(group->route_index, settings->nendpoints,
						&model_index, &endpoint_index);
		display = settings->endpoints[endpoint_index].display;
		if (strstr(display, "://"))
			display = strstr(display, "://") + 3;
		appendStringInfo(&out, "%s%s@%s %s", out.len ? "; " : "",
						 settings->models[model_index], display, group->label);
		if (group->count > 1)
			appendStringInfo(&out, " x%d", group->count);
	}
	if (out.len == 0)
		appendStringInfoString(&out, "no attempt was made");
	return out.data;
}

/*
 * The short error text of an attempt, for the log and the error message;
 * NULL on success.  What the gateway said passes through the boundary of
 * gateway_text.c.
 */
static char *
attempt_error_text(const CallSettings *settings,
				   const TransportRequest *request, const ChatAnswer *answer,
				   AttemptClass cls)
{
	char	   *text;

	if (cls == CLASS_SUCCESS)
		return NULL;
	if (request->failure == TRANSPORT_TOO_LARGE)
		text = psprintf("response larger than ai_resilience.max_response_bytes (%zu bytes)",
						request->max_response_bytes);
	else if (request->failure != TRANSPORT_OK)
		text = pstrdup(request->error);
	else if (answer->error_message)
		text = pstrdup(answer->error_message);
	else if (request->http_status >= 200 && request->http_status < 300)
		text = pstrdup(answer->problem ? answer->problem :
					   answer->content_problem ? answer->content_problem :
					   "unusable answer");
	else if (answer->other_message)
		text = pstrdup(answer->other_message);
	else
		text = psprintf("HTTP %ld without an error message", request->http_status);

	return gateway_text_copy(text, CALLLOG_ERROR_MAX_BYTES, settings->keys);
}

/*
 * Fill in what is known of a call's current attempt before its outcome: who,
 * where, which try; the numbers it has not got yet are -1.  Allocates
 * nothing, so that error cleanup can use it.
 */
static void
describe_attempt(const CallSettings *settings, const ChatCall *call,
				 const TransportRequest *request, CallAttempt *attempt)
{
	int			model_index;
	int			endpoint_index;

	policy_route_at(call->route_index, settings->nendpoints,
					&model_index, &endpoint_index);
	memset(attempt, 0, sizeof(CallAttempt));
	attempt->call_id = call->call_id;
	attempt->attempt = call->attempts;
	attempt->route_index = call->route_index;
	attempt->route_attempt = call->retries_on_route + 1;
	attempt->started_at = call->attempt_started_at;
	attempt->model = settings->models[model_index];
	attempt->endpoint = settings->endpoints[endpoint_index].display;
	attempt->streaming = call->streaming;
	attempt->retry_after_ms = -1;
	attempt->backoff_ms = -1;
	/* the upstream's id, else a gateway's own: LiteLLM and Portkey name theirs */
	attempt->request_id = request->request_id[0] ? request->request_id :
		request->litellm_call_id[0] ? request->litellm_call_id :
		request->portkey_trace_id[0] ? request->portkey_trace_id : NULL;
	/* LiteLLM forwards the upstream's id under a name of its own */
	attempt->provider_request_id = request->provider_request_id[0] ?
		request->provider_request_id : NULL;
	attempt->prompt_tokens = attempt->completion_tokens = -1;
	attempt->new_connection = request->new_connection;
	attempt->role_name = settings->role_name;
	attempt->session_role = settings->session_role;
	attempt->application_name = settings->application_name;
	attempt->tag = settings->tag;
	attempt->keys = settings->keys;
	attempt->prompt = settings->log_prompts ? call->prompt : NULL;
	attempt->ttft_ms = -1;
	attempt->response_bytes = -1;
	attempt->skipped_routes = call->skipped_routes;
}

/*
 * Record every attempt still in flight when an error (a cancel, a
 * statement_timeout, anything) or the session's end stops the run, as
 * class cancelled, with why as its error: it may have been billed.  Runs in
 * an error handler or an exit callback, so it allocates nothing and cannot
 * fail; the log writer keeps the rows through the rollback.
 */
static void
log_interrupted_attempts(RunState *run, const char *why)
{
	const CallSettings *settings = run->settings;
	TimestampTz now = GetCurrentTimestamp();
	dlist_iter	iter;

	dlist_foreach(iter, &run->active)
	{
		ChatCall   *call = dlist_container(ChatCall, node, iter.cur);
		TransportRequest *request = call->request;
		CallAttempt attempt;

		if (request == NULL)
			continue;
		describe_attempt(settings, call, request, &attempt);
		attempt.latency_ms = (now - request->started_at) / 1000.0;
		attempt.http_status = request->status_seen;
		attempt.error_class = CLASS_CANCELLED;
		attempt.error = why;
		attempt.outcome = OUTCOME_FAILED;
		attempt.response_bytes = call->streaming ? (int) call->stream.content.len : -1;
		calllog_append_in_cleanup(&attempt);
	}
}

/*
 * before_shmem_exit callback: the session ends (FATAL, as from
 * pg_terminate_backend) while a run is under way; log its attempts in
 * flight.  The queue is in shared memory, so this neither waits nor
 * allocates.
 */
static void
log_attempts_at_exit(int code, Datum arg)
{
	RunState   *run = current_run;

	current_run = NULL;
	if (run != NULL)
		log_interrupted_attempts(run,
								 "the session ended (pg_terminate_backend or shutdown) during the attempt");
}
