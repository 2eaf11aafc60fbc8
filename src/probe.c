/*-------------------------------------------------------------------------
 *
 * probe.c
 *	  ai_probe(): check the configuration and every endpoint, one row per
 *	  check, without spending tokens unless asked to.
 *
 * This file owns the SQL function ai_probe and its checks, in this order:
 *
 *	settings	the settings as a whole (secrets_settings_problems: keys
 *				that do not match the endpoints, a header line for an
 *				endpoint not listed, a key file that cannot be used), and
 *				whether there is a model to check.  When they cannot work,
 *				every other check is skipped: no call could be made.
 *	dns, connect, tls, models	per endpoint, from one GET <endpoint>/models
 *				on a connection of its own (transport.c measures its name
 *				resolution, TCP and TLS set-up); a check after the one that
 *				failed is skipped.  The GET carries what a chat carries
 *				(key, extra headers) under the same timeouts.
 *	model		per endpoint and model: is the model in the endpoint's list?
 *				Not listed is a warning, not a failure: gateways accept
 *				aliases they do not list.
 *	chat		with chat => true only: one chat per endpoint and model,
 *				max_tokens 1, through the runner as any call (one route, no
 *				retry), so it is logged and counted in route health as one.
 *
 * The GET is logged in ai_call_log as an attempt of a call of its own:
 * model '(models)', its endpoint, code and error class as for a chat,
 * outcome success or failed, streaming false, no tokens (0).  A cancel or
 * statement_timeout during the GET logs it as cancelled, as the runner does,
 * and raises the standard error (57014).
 *
 * Text from a gateway (its error message, the ids in its list) goes through
 * gateway_text.c (valid UTF-8, keys redacted) before it reaches a row or the
 * log.  Data flows one way: ai_probe -> runner (chats) -> transport ->
 * policy (the GET's class) -> call log.
 *
 * Memory: each endpoint's checks run in a context of their own, reset after
 * the endpoint; rows go to the function's tuplestore at once.  The settings
 * of the run live in the function's memory.
 *
 * Locking: none of its own; the call log's queue has its own rules.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "call_log.h"
#include "gateway_text.h"
#include "guc.h"
#include "openai_wire.h"
#include "route_health.h"
#include "runner.h"
#include "secrets.h"
#include "sql_api.h"

PG_FUNCTION_INFO_V1(ai_probe);

/* Columns of a row of ai_probe. */
#define PROBE_COLUMNS		7

/* Longest text of a gateway shown in a row or logged, in bytes. */
#define MAX_PROBE_TEXT_LEN	300

/* The model of a GET /models attempt in ai_call_log. */
#define MODELS_LOG_MODEL	"(models)"

/* What a chat probe asks: one token's worth. */
#define PROBE_PROMPT		"Reply with the single word: ok"

/* Where the probe writes its rows. */
typedef struct ProbeOutput
{
	Tuplestorestate *store;
	TupleDesc	desc;
} ProbeOutput;

/* The checks of one endpoint, in order; one that fails skips the rest. */
typedef enum EndpointCheck
{
	CHECK_DNS = 0,
	CHECK_CONNECT,
	CHECK_TLS,
	CHECK_MODELS,
	CHECK_MODEL,				/* one per model */
	CHECK_CHAT					/* one per model, with chat => true */
} EndpointCheck;

static const char *const check_names[] = {
	"dns", "connect", "tls", "models", "model", "chat"
};

/* What a chat probe's sink keeps of its call. */
typedef struct ChatProbe
{
	bool		taken;			/* the source gave its one call */
	bool		succeeded;
	int			sqlstate;
	MemoryContext memory;		/* the caller's, for detail */
	char	   *detail;			/* what failed */
} ChatProbe;

static void emit(ProbeOutput *out, const char *endpoint, const char *model,
				 EndpointCheck check, const char *verdict, double elapsed_ms,
				 const char *detail, const char *hint);
static void emit_row(ProbeOutput *out, const char *endpoint, const char *model,
					 const char *check, const char *verdict, double elapsed_ms,
					 const char *detail, const char *hint);
static bool check_settings(ProbeOutput *out, List *models, bool models_given,
						   List **urls);
static void skip_checks(ProbeOutput *out, const char *endpoint, List *models,
						bool chat, EndpointCheck from, const char *why);
static void probe_endpoint(ProbeOutput *out, const CallSettings *settings,
						   int endpoint_index, List *models, bool chat);
static void get_models(const CallSettings *settings, const Endpoint *endpoint,
					   TransportRequest *request);
static char *gateway_detail(const CallSettings *settings,
							const TransportRequest *request,
							const ChatAnswer *answer);
static void log_models_attempt(const CallSettings *settings,
							   const Endpoint *endpoint,
							   const TransportRequest *request,
							   AttemptClass cls, const char *error);
static void probe_chat(ProbeOutput *out, const CallSettings *settings,
					   int endpoint_index, int model_index);
static bool chat_source(void *arg, ChatCall *call);
static void chat_sink(void *arg, ChatCall *call);

/*
 * ai_probe(models text[] DEFAULT NULL, chat boolean DEFAULT false): the
 * settings check, then every endpoint's checks; see the file header.
 */
Datum
ai_probe(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	bool		models_given = !PG_ARGISNULL(0);
	bool		chat = !PG_ARGISNULL(1) && PG_GETARG_BOOL(1);
	ProbeOutput out;
	List	   *models;
	List	   *urls;
	CallSettings settings;
	MemoryContext endpoint_memory;
	MemoryContext old_context;
	int			i;

	calllog_require_loaded();
	InitMaterializedSRF(fcinfo, 0);
	out.store = rsinfo->setResult;
	out.desc = rsinfo->setDesc;

	/* without models, the endpoints are still worth checking */
	models = models_given ? models_argument(fcinfo, 0) :
		air_split_list("ai_resilience.models", air_models);

	if (!check_settings(&out, models, models_given, &urls))
	{
		ListCell   *lc;

		foreach(lc, urls)
		{
			char	   *display = pstrdup(lfirst(lc));

			secrets_url_display(display, display);
			skip_checks(&out, display, models, chat, CHECK_DNS,
						"the settings cannot work (see the settings row)");
		}
		return (Datum) 0;
	}

	runner_load_settings(&settings, models, 1);
	/* a probe is one attempt: a retry would hide what failed */
	settings.retry.max_retries = 0;

	endpoint_memory = AllocSetContextCreate(CurrentMemoryContext,
											"ai_probe endpoint",
											ALLOCSET_DEFAULT_SIZES);
	for (i = 0; i < settings.nendpoints; i++)
	{
		old_context = MemoryContextSwitchTo(endpoint_memory);
		probe_endpoint(&out, &settings, i, models, chat);
		MemoryContextSwitchTo(old_context);
		MemoryContextReset(endpoint_memory);
	}
	MemoryContextDelete(endpoint_memory);
	return (Datum) 0;
}

/* Write one row of an endpoint's check; elapsed_ms < 0 is NULL. */
static void
emit(ProbeOutput *out, const char *endpoint, const char *model,
	 EndpointCheck check, const char *verdict, double elapsed_ms,
	 const char *detail, const char *hint)
{
	emit_row(out, endpoint, model, check_names[check], verdict, elapsed_ms,
			 detail, hint);
}

/* Write one row; NULL strings and a negative elapsed_ms are NULL. */
static void
emit_row(ProbeOutput *out, const char *endpoint, const char *model,
		 const char *check, const char *verdict, double elapsed_ms,
		 const char *detail, const char *hint)
{
	Datum		values[PROBE_COLUMNS];
	bool		nulls[PROBE_COLUMNS];
	const char *texts[PROBE_COLUMNS] = {
		endpoint, model, check, verdict, NULL, detail, hint
	};
	int			i;

	for (i = 0; i < PROBE_COLUMNS; i++)
	{
		nulls[i] = texts[i] == NULL;
		values[i] = nulls[i] ? (Datum) 0 : CStringGetTextDatum(texts[i]);
	}
	nulls[4] = elapsed_ms < 0;
	values[4] = Float8GetDatum(nulls[4] ? 0 : elapsed_ms);
	tuplestore_putvalues(out->store, out->desc, values, nulls);
}

/*
 * The settings rows: one per problem, or one 'ok'.  Returns false when the
 * settings cannot work, so that no endpoint can be probed.  *urls gets the
 * endpoints as set (NIL when their list cannot be read).
 */
static bool
check_settings(ProbeOutput *out, List *models, bool models_given, List **urls)
{
	List	   *problems = secrets_settings_problems(urls);
	ListCell   *lc;

	foreach(lc, problems)
	{
		SettingsProblem *problem = lfirst(lc);

		emit_row(out, NULL, NULL, "settings", "failed", -1, problem->message,
				 problem->hint);
	}
	if (problems != NIL)
		return false;

	if (models == NIL)
		emit_row(out, NULL, NULL, "settings", "warning", -1,
				 "ai_resilience.models is empty: no model is checked, and every call must name its models",
				 "Set ai_resilience.models, or pass models to ai_probe.");
	else
	{
		int			nendpoints = list_length(*urls);
		List	   *keys = secrets_api_keys();
		const char *keys_text = keys == NIL ? "no API key" :
			list_length(keys) == 1 ? "one API key for every endpoint" :
			"one API key per endpoint";

		emit_row(out, NULL, NULL, "settings", "ok", -1,
				 psprintf("%d endpoint%s, %s, %d model%s%s",
						  nendpoints, nendpoints == 1 ? "" : "s",
						  keys_text, list_length(models),
						  list_length(models) == 1 ? "" : "s",
						  models_given ? " (given)" : " (ai_resilience.models)"),
				 NULL);
	}
	return true;
}

/*
 * Write the endpoint's checks from 'from' on as skipped, why.  The model
 * and chat checks have a row per model.
 */
static void
skip_checks(ProbeOutput *out, const char *endpoint, List *models, bool chat,
			EndpointCheck from, const char *why)
{
	EndpointCheck check;
	ListCell   *lc;

	for (check = from; check <= CHECK_CHAT; check++)
	{
		if (check < CHECK_MODEL)
			emit(out, endpoint, NULL, check, "skipped", -1, why, NULL);
		else if (check == CHECK_MODEL || chat)
			foreach(lc, models)
				emit(out, endpoint, lfirst(lc), check, "skipped", -1, why, NULL);
	}
}

/* Every check of one endpoint, from its GET /models on. */
static void
probe_endpoint(ProbeOutput *out, const CallSettings *settings,
			   int endpoint_index, List *models, bool chat)
{
	const Endpoint *endpoint = &settings->endpoints[endpoint_index];
	const char *display = endpoint->display;
	bool		tls = pg_strncasecmp(endpoint->url, "https://", 8) == 0;
	TransportRequest request;
	ChatAnswer	answer;
	AttemptFacts facts;
	AttemptClass cls;
	bool		retryable;
	bool		set_up_failed;
	List	   *ids = NIL;
	bool		listed = false;
	char	   *detail;
	ListCell   *lc;
	int			i;

	get_models(settings, endpoint, &request);

	memset(&answer, 0, sizeof(answer));
	memset(&facts, 0, sizeof(facts));
	if (request.failure == TRANSPORT_OK)
	{
		ids = wire_parse_model_list(request.response, request.response_len,
									&answer);
		listed = answer.problem == NULL;
	}
	facts.transport = request.failure;
	facts.http_status = (int) request.http_status;
	facts.answer_ok = listed;
	facts.error_code = answer.error_code;
	facts.error_type = answer.error_type;
	facts.error_message = answer.error_message;
	cls = policy_classify(&facts, &retryable);
	detail = gateway_detail(settings, &request, &answer);
	log_models_attempt(settings, endpoint, &request, cls,
					   cls == CLASS_SUCCESS ? NULL : detail);

	/* which step of the set-up failed: the first one not reached */
	set_up_failed = request.failure == TRANSPORT_CONNECT ||
		request.failure == TRANSPORT_CONNECT_TIMEOUT ||
		(request.failure != TRANSPORT_OK && request.connect_us == 0);
	if (request.unresolved)
	{
		emit(out, display, NULL, CHECK_DNS, "failed", -1, detail,
			 "Check the host name in ai_resilience.endpoints and the server's name resolution (/etc/resolv.conf); ai_resilience.connect_timeout bounds it.");
		skip_checks(out, display, models, chat, CHECK_CONNECT,
					"the name did not resolve");
		return;
	}
	emit(out, display, NULL, CHECK_DNS, "ok", request.namelookup_us / 1000.0,
		 "the host name resolved", NULL);
	if (set_up_failed && request.connect_us == 0)
	{
		emit(out, display, NULL, CHECK_CONNECT, "failed", -1, detail,
			 "Is the gateway running and listening on that address and port, and does no firewall drop the connection? ai_resilience.connect_timeout bounds the wait.");
		skip_checks(out, display, models, chat, CHECK_TLS,
					"no connection was made");
		return;
	}
	emit(out, display, NULL, CHECK_CONNECT, "ok",
		 (request.connect_us - request.namelookup_us) / 1000.0,
		 psprintf("connected to %s", request.remote_ip), NULL);
	if (!tls)
		emit(out, display, NULL, CHECK_TLS, "skipped", -1,
			 "the endpoint is http://: no TLS", NULL);
	else if (set_up_failed && request.appconnect_us == 0)
	{
		emit(out, display, NULL, CHECK_TLS, "failed", -1, detail,
			 "Check the gateway's certificate: its chain must lead to a CA the server trusts, and its name must match the endpoint's host.");
		skip_checks(out, display, models, chat, CHECK_MODELS,
					"the TLS handshake failed");
		return;
	}
	else
		emit(out, display, NULL, CHECK_TLS, "ok",
			 (request.appconnect_us - request.connect_us) / 1000.0,
			 "the TLS handshake succeeded", NULL);

	/* the model list */
	if (listed && ids == NIL)
		emit(out, display, NULL, CHECK_MODELS, "warning",
			 request.elapsed_us / 1000.0, "the endpoint lists no model",
			 "The key may have access to no model, or the gateway routes none yet; ai_probe(chat => true) tries a chat.");
	else if (listed)
		emit(out, display, NULL, CHECK_MODELS, "ok", request.elapsed_us / 1000.0,
			 psprintf("the endpoint lists %d model%s", list_length(ids),
					  list_length(ids) == 1 ? "" : "s"), NULL);
	else if (request.http_status == 401 || request.http_status == 403)
		emit(out, display, NULL, CHECK_MODELS, "failed",
			 request.elapsed_us / 1000.0,
			 psprintf("the key was refused (HTTP %ld): %s",
					  request.http_status, detail),
			 "Check this endpoint's key: ai_resilience.api_key_file (one line per endpoint, or one for all) or ai_resilience.api_key; a gateway may also want ai_resilience.extra_headers.");
	else if (request.http_status == 404 || request.http_status == 405)
		emit(out, display, NULL, CHECK_MODELS, "warning",
			 request.elapsed_us / 1000.0,
			 psprintf("the endpoint does not list its models (HTTP %ld): %s",
					  request.http_status, detail),
			 "Some gateways do not serve GET /models; if chats fail too, check the endpoint's path (it ends before /chat/completions, e.g. .../v1). ai_probe(chat => true) tries a chat.");
	else if (request.failure == TRANSPORT_OK && request.http_status >= 200 &&
			 request.http_status < 300)
		emit(out, display, NULL, CHECK_MODELS, "warning",
			 request.elapsed_us / 1000.0,
			 psprintf("the model list cannot be read: %s", detail),
			 "The endpoint may not be OpenAI-compatible; ai_probe(chat => true) tries a chat.");
	else
		emit(out, display, NULL, CHECK_MODELS, "failed",
			 request.elapsed_us / 1000.0,
			 request.http_status > 0 ?
			 psprintf("HTTP %ld: %s", request.http_status, detail) : detail,
			 "See ai_call_log for this attempt; a timeout is bounded by ai_resilience.request_timeout and ai_resilience.deadline.");

	/* is each model listed? */
	foreach(lc, models)
	{
		const char *model = lfirst(lc);
		ListCell   *id;
		bool		found = false;

		if (!listed)
		{
			emit(out, display, model, CHECK_MODEL, "skipped", -1,
				 "the endpoint's model list could not be read", NULL);
			continue;
		}
		foreach(id, ids)
			if (strcmp(lfirst(id), model) == 0)
				found = true;
		if (found)
			emit(out, display, model, CHECK_MODEL, "ok", -1,
				 "listed by the endpoint", NULL);
		else
			emit(out, display, model, CHECK_MODEL, "warning", -1,
				 psprintf("not among the %d models the endpoint lists",
						  list_length(ids)),
				 "Check the model's name (ai_resilience.models, or the models argument); a gateway may accept names it does not list: ai_probe(chat => true) tries it.");
	}

	if (chat)
		for (i = 0; i < settings->nmodels; i++)
			probe_chat(out, settings, endpoint_index, i);
}

/*
 * Send GET <endpoint>/models on a connection of its own, with the key and
 * headers a chat sends and under the same timeouts, and wait for it.  A
 * cancel logs it as cancelled and goes on.
 */
static void
get_models(const CallSettings *settings, const Endpoint *endpoint,
		   TransportRequest *request)
{
	TransportRequest *finished;

	memset(request, 0, sizeof(*request));
	request->url = secrets_resource_url(endpoint->url, "models");
	request->api_key = endpoint->api_key;
	request->extra_headers = endpoint->extra_headers;
	request->fresh_connection = true;
	request->connect_timeout_ms = settings->connect_timeout_ms;
	request->first_byte_timeout_ms = settings->first_byte_timeout_ms;
	request->timeout_ms = settings->request_timeout_ms;
	request->deadline_ms = settings->deadline_ms;
	request->max_response_bytes = settings->max_response_bytes;
	request->memory = CurrentMemoryContext;

	transport_start(request);
	PG_TRY();
	{
		while (transport_wait(60 * 1000L, &finished, 1) == 0)
			;
	}
	PG_CATCH();
	{
		TimestampTz now = GetCurrentTimestamp();

		request->http_status = request->status_seen;
		request->elapsed_us = now - request->started_at;
		log_models_attempt(settings, endpoint, request, CLASS_CANCELLED,
						   "the statement ended (cancel, timeout or error) during the attempt");
		transport_abort_all();
		PG_RE_THROW();
	}
	PG_END_TRY();
	Assert(finished == request);
}

/*
 * What went wrong with the GET, through the gateway text boundary; for a
 * success, NULL.
 */
static char *
gateway_detail(const CallSettings *settings, const TransportRequest *request,
			   const ChatAnswer *answer)
{
	const char *text;

	if (request->failure == TRANSPORT_TOO_LARGE)
		return psprintf("response larger than ai_resilience.max_response_bytes (%zu bytes)",
						request->max_response_bytes);
	if (request->failure != TRANSPORT_OK)
		text = request->error;
	else if (answer->error_message)
		text = answer->error_message;
	else if (answer->other_message)
		text = answer->other_message;
	else if (answer->problem)
		text = answer->problem;
	else
		return NULL;
	return gateway_text_copy(text, MAX_PROBE_TEXT_LEN, settings->keys);
}

/*
 * Log a GET /models attempt (see the file header for its row).  Allocates
 * nothing, so that error cleanup can use it.
 */
static void
log_models_attempt(const CallSettings *settings, const Endpoint *endpoint,
				   const TransportRequest *request, AttemptClass cls,
				   const char *error)
{
	CallAttempt attempt;

	memset(&attempt, 0, sizeof(attempt));
	runner_new_call_id(&attempt.call_id);
	attempt.attempt = 1;
	attempt.route_index = 0;
	attempt.route_attempt = 1;
	attempt.started_at = request->started_at;
	attempt.latency_ms = request->elapsed_us / 1000.0;
	attempt.model = MODELS_LOG_MODEL;
	attempt.endpoint = endpoint->display;
	attempt.http_status = (int) request->http_status;
	attempt.error_class = cls;
	attempt.error = error;
	attempt.retry_after_ms = -1;
	attempt.backoff_ms = -1;
	attempt.outcome = cls == CLASS_SUCCESS ? OUTCOME_SUCCESS : OUTCOME_FAILED;
	attempt.request_id = request->request_id[0] ? request->request_id : NULL;
	attempt.provider_request_id = request->provider_request_id[0] ?
		request->provider_request_id : NULL;
	/* a model list costs no token */
	attempt.prompt_tokens = 0;
	attempt.completion_tokens = 0;
	attempt.new_connection = request->new_connection;
	attempt.role_name = settings->role_name;
	attempt.session_role = settings->session_role;
	attempt.application_name = settings->application_name;
	attempt.tag = settings->tag;
	attempt.ttft_ms = request->first_byte_at != 0 ?
		(request->first_byte_at - request->started_at) / 1000.0 : -1;
	attempt.response_bytes = -1;
	attempt.keys = settings->keys;
	if (cls == CLASS_CANCELLED)
		calllog_append_in_cleanup(&attempt);
	else
		calllog_append(&attempt);
}

/*
 * One chat of max_tokens 1 on one route (endpoint, model), through the
 * runner as any call, and its row.
 */
static void
probe_chat(ProbeOutput *out, const CallSettings *settings, int endpoint_index,
		   int model_index)
{
	const Endpoint *endpoint = &settings->endpoints[endpoint_index];
	const char *model = settings->models[model_index];
	CallSettings route = *settings;
	ChatPrompt	prompt;
	ChatProbe	probe;
	TimestampTz started_at;
	double		elapsed_ms;

	route.endpoints = &settings->endpoints[endpoint_index];
	route.nendpoints = 1;
	route.models = &settings->models[model_index];
	route.nmodels = 1;
	memset(&prompt, 0, sizeof(prompt));
	prompt.max_tokens = 1;
	memset(&probe, 0, sizeof(probe));
	probe.memory = CurrentMemoryContext;

	started_at = GetCurrentTimestamp();
	runner_run(&route, &prompt, chat_source, chat_sink, &probe);
	elapsed_ms = (GetCurrentTimestamp() - started_at) / 1000.0;

	if (probe.succeeded)
		emit(out, endpoint->display, model, CHECK_CHAT, "ok", elapsed_ms,
			 "the model answered", NULL);
	else if (probe.sqlstate == ERRCODE_AI_ROUTES_OPEN)
		emit(out, endpoint->display, model, CHECK_CHAT, "skipped", -1,
			 probe.detail,
			 "The route's circuit breaker is open (ai_route_health); ai_route_set can close it.");
	else
		emit(out, endpoint->display, model, CHECK_CHAT, "failed", elapsed_ms,
			 probe.detail,
			 "See the attempt in ai_call_log (model and endpoint) for its code and error class.");
}

/* CallSource of a chat probe: its one prompt. */
static bool
chat_source(void *arg, ChatCall *call)
{
	ChatProbe  *probe = arg;

	if (probe->taken)
		return false;
	probe->taken = true;
	call->prompt = PROBE_PROMPT;
	return true;
}

/*
 * CallSink of a chat probe: keep the outcome, and the failure's text in the
 * caller's memory (the call's goes away when this returns).
 */
static void
chat_sink(void *arg, ChatCall *call)
{
	ChatProbe  *probe = arg;

	probe->succeeded = call->succeeded;
	probe->sqlstate = call->sqlstate;
	if (!call->succeeded)
		probe->detail = MemoryContextStrdup(probe->memory,
											call->last_error ? call->last_error :
											call->failure);
}
