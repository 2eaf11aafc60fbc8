/*
 * pg_ai_resilience install script; the version is in pg_ai_resilience.control.
 *
 * Written to PostgreSQL's "Security Considerations for Extension Scripts":
 * a database owner may have planted functions and operators in the schema
 * the extension is created in, so every object is named with @extschema@
 * and every function and operator with pg_catalog (an unknown-typed
 * literal would otherwise prefer a planted f(text)).  Every change to the
 * objects below also goes into an upgrade script in src/sql/.
 */

\echo Use "CREATE EXTENSION pg_ai_resilience" to load this file. \quit

CREATE SEQUENCE @extschema@.ai_call_log_id_seq;

-- One row per HTTP attempt.
CREATE TABLE @extschema@.ai_call_log (
    id                bigint PRIMARY KEY
                      DEFAULT pg_catalog.nextval('@extschema@.ai_call_log_id_seq'::pg_catalog.regclass),
    call_id           uuid NOT NULL,
    attempt           integer NOT NULL,
    route_index       integer NOT NULL,
    route_attempt     integer NOT NULL,
    started_at        timestamptz NOT NULL,
    latency_ms        double precision,
    model             text NOT NULL,
    endpoint          text NOT NULL,
    code              integer,
    error_class       text,
    error             text,
    streaming         boolean NOT NULL DEFAULT false,
    retry_after_ms    integer,
    backoff_ms        integer,
    outcome           text NOT NULL,
    request_id        text,
    model_returned    text,
    finish_reason     text,
    prompt_tokens     integer,
    completion_tokens integer,
    new_connection    boolean,
    role_name         name NOT NULL,
    backend_pid       integer NOT NULL,
    prompt            text,
    ttft_ms           double precision,
    response_bytes    integer,
    session_role      name,
    skipped_routes    text,
    application_name  text,
    tag               text,
    provider_request_id text
);
ALTER SEQUENCE @extschema@.ai_call_log_id_seq OWNED BY @extschema@.ai_call_log.id;

CREATE INDEX ai_call_log_started_at_idx ON @extschema@.ai_call_log (started_at);
CREATE INDEX ai_call_log_call_id_idx ON @extschema@.ai_call_log (call_id);
CREATE INDEX ai_call_log_route_idx ON @extschema@.ai_call_log (model, endpoint, started_at);

COMMENT ON TABLE @extschema@.ai_call_log IS 'One row per HTTP attempt made by pg_ai_resilience';
COMMENT ON COLUMN @extschema@.ai_call_log.role_name IS
    'current_user of the call: inside a SECURITY DEFINER function, the function''s owner';
COMMENT ON COLUMN @extschema@.ai_call_log.session_role IS
    'session_user of the call: the role that logged in (or SET SESSION AUTHORIZATION); NULL in rows from version 0.1.0';
COMMENT ON COLUMN @extschema@.ai_call_log.skipped_routes IS
    'The open routes the call passed over, without a request, just before this attempt, with their state';
COMMENT ON COLUMN @extschema@.ai_call_log.application_name IS
    'application_name of the calling session at call time; NULL in rows from versions before 0.3.0';
COMMENT ON COLUMN @extschema@.ai_call_log.tag IS
    'ai_resilience.tag of the calling session at call time (NULL when unset)';
COMMENT ON COLUMN @extschema@.ai_call_log.provider_request_id IS
    'The upstream provider''s request id a gateway forwards (LiteLLM: llm_provider-x-request-id); request_id is the gateway''s own';

-- pg_dump keeps the log and the sequence's position.
SELECT pg_catalog.pg_extension_config_dump('@extschema@.ai_call_log'::pg_catalog.regclass, '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.ai_call_log_id_seq'::pg_catalog.regclass, '');

-- Readers are granted by the administrator; rows are written by the
-- extension's log writer as the table's owner, so callers need no privilege
-- on it.
REVOKE ALL ON @extschema@.ai_call_log FROM PUBLIC;

/*
 * The calling functions: COST 10000 (units of cpu_operator_cost) because one
 * call is an HTTP round trip, milliseconds to minutes, where a built-in
 * function costs 1 and a PL function 100; the planner then evaluates every
 * cheaper condition of a WHERE clause first, and calls only for the rows
 * that pass them.  EXECUTE is revoked from PUBLIC at the end of the script.
 */
CREATE FUNCTION @extschema@.ai_chat(
    prompt        text,
    models        text[] DEFAULT NULL,
    system_prompt text DEFAULT NULL,
    max_tokens    integer DEFAULT NULL,
    temperature   double precision DEFAULT NULL,
    on_error      text DEFAULT 'raise',
    stream        boolean DEFAULT NULL)
RETURNS text
AS 'MODULE_PATHNAME', 'ai_chat'
LANGUAGE C VOLATILE PARALLEL UNSAFE COST 10000;

COMMENT ON FUNCTION @extschema@.ai_chat(text, text[], text, integer, double precision, text, boolean) IS
    'Send one prompt to the first route that answers, with retries and fallback; every attempt is logged in ai_call_log';

CREATE FUNCTION @extschema@.ai_chat_batch(
    prompts       text[],
    models        text[] DEFAULT NULL,
    system_prompt text DEFAULT NULL,
    max_tokens    integer DEFAULT NULL,
    temperature   double precision DEFAULT NULL,
    on_error      text DEFAULT 'null',
    stream        boolean DEFAULT NULL)
RETURNS TABLE (ord integer, response text, call_id uuid, attempts integer, error text)
AS 'MODULE_PATHNAME', 'ai_chat_batch'
LANGUAGE C VOLATILE PARALLEL UNSAFE COST 10000;

COMMENT ON FUNCTION @extschema@.ai_chat_batch(text[], text[], text, integer, double precision, text, boolean) IS
    'Send many prompts at once (up to ai_resilience.max_concurrency in flight), each with the full retry and fallback policy; one row per prompt, in order';

CREATE FUNCTION @extschema@.ai_chat_batch_keyed(
    keys          anyarray,
    prompts       text[],
    models        text[] DEFAULT NULL,
    system_prompt text DEFAULT NULL,
    max_tokens    integer DEFAULT NULL,
    temperature   double precision DEFAULT NULL,
    on_error      text DEFAULT 'null',
    stream        boolean DEFAULT NULL)
RETURNS TABLE (key anyelement, response text, call_id uuid, attempts integer, error text)
AS 'MODULE_PATHNAME', 'ai_chat_batch_keyed'
LANGUAGE C VOLATILE PARALLEL UNSAFE COST 10000;

COMMENT ON FUNCTION @extschema@.ai_chat_batch_keyed(anyarray, text[], text[], text, integer, double precision, text, boolean) IS
    'ai_chat_batch that returns the caller''s key with each row, so results join back to the rows they came from';

CREATE FUNCTION @extschema@.ai_chat_complete(
    request  jsonb,
    models   text[] DEFAULT NULL,
    on_error text DEFAULT 'raise',
    stream   boolean DEFAULT NULL)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'ai_chat_complete'
LANGUAGE C VOLATILE PARALLEL UNSAFE COST 10000;

COMMENT ON FUNCTION @extschema@.ai_chat_complete(jsonb, text[], text, boolean) IS
    'Send a whole chat-completions request (model set per route) with retries and fallback; returns the whole response';

CREATE FUNCTION @extschema@.ai_flush_log(timeout interval DEFAULT '10s')
RETURNS boolean
AS 'MODULE_PATHNAME', 'ai_flush_log'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.ai_flush_log(interval) IS
    'Wait until every attempt this session has made is in ai_call_log (or counted lost); false on timeout';

CREATE FUNCTION @extschema@.ai_log_stats(
    OUT queued        bigint,
    OUT written       bigint,
    OUT lost          bigint,
    OUT queue_waits   bigint,
    OUT in_queue      integer,
    OUT writers       integer,
    OUT last_error    text,
    OUT last_error_at timestamptz)
RETURNS record
AS 'MODULE_PATHNAME', 'ai_log_stats'
LANGUAGE C STRICT VOLATILE PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@.ai_log_stats() IS
    'Counters of the ai_call_log queue and writers since server start';

CREATE VIEW @extschema@.ai_log_stats AS SELECT * FROM @extschema@.ai_log_stats();

-- A writer's last error may quote log data: for monitoring roles only.
REVOKE ALL ON FUNCTION @extschema@.ai_log_stats() FROM PUBLIC;
REVOKE ALL ON @extschema@.ai_log_stats FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.ai_log_stats() TO pg_read_all_stats;
GRANT SELECT ON @extschema@.ai_log_stats TO pg_read_all_stats;

-- Calling spends money and sends data out of the server: the administrator
-- grants EXECUTE on these to the roles that may (see README, Getting started).
REVOKE ALL ON FUNCTION @extschema@.ai_chat(text, text[], text, integer, double precision, text, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.ai_chat_batch(text[], text[], text, integer, double precision, text, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.ai_chat_batch_keyed(anyarray, text[], text[], text, integer, double precision, text, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.ai_chat_complete(jsonb, text[], text, boolean) FROM PUBLIC;

-- Route health: the breaker of every route, shared by all sessions.

CREATE FUNCTION @extschema@.ai_route_health(
    OUT endpoint             text,
    OUT model                text,
    OUT state                text,
    OUT consecutive_failures integer,
    OUT window_requests      integer,
    OUT window_failures      integer,
    OUT window_retries       integer,
    OUT opened_at            timestamptz,
    OUT next_probe_at        timestamptz,
    OUT times_opened         bigint,
    OUT last_error_class     text,
    OUT last_error_code      integer,
    OUT last_failure_at      timestamptz,
    OUT last_success_at      timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'ai_route_health'
LANGUAGE C STRICT VOLATILE PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@.ai_route_health() IS
    'The circuit breaker of every route (endpoint, model) and endpoint (model NULL), shared by all sessions';

CREATE VIEW @extschema@.ai_route_health AS SELECT * FROM @extschema@.ai_route_health();

CREATE FUNCTION @extschema@.ai_route_history(
    OUT at                   timestamptz,
    OUT endpoint             text,
    OUT model                text,
    OUT state                text,
    OUT reason               text,
    OUT consecutive_failures integer,
    OUT window_requests      integer,
    OUT window_failures      integer,
    OUT next_probe_at        timestamptz,
    OUT error_class          text,
    OUT error_code           integer,
    OUT backend_pid          integer)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'ai_route_history'
LANGUAGE C STRICT VOLATILE PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@.ai_route_history() IS
    'The last 1024 changes of state of the routes and endpoints since server start, oldest first';

CREATE VIEW @extschema@.ai_route_history AS SELECT * FROM @extschema@.ai_route_history();

CREATE FUNCTION @extschema@.ai_route_set(
    endpoint text,
    model    text,
    open     boolean,
    hold     interval DEFAULT '60s')
RETURNS void
AS 'MODULE_PATHNAME', 'ai_route_set'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.ai_route_set(text, text, boolean, interval) IS
    'Open a route (model NULL: every route of the endpoint) for hold, or close it, by hand';

-- Route health names the models and endpoints in use: for monitoring roles
-- only.  Opening or closing a route steers every session: superuser, or a
-- role the administrator grants it to.
REVOKE ALL ON FUNCTION @extschema@.ai_route_health() FROM PUBLIC;
REVOKE ALL ON @extschema@.ai_route_health FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.ai_route_health() TO pg_read_all_stats;
GRANT SELECT ON @extschema@.ai_route_health TO pg_read_all_stats;
REVOKE ALL ON FUNCTION @extschema@.ai_route_history() FROM PUBLIC;
REVOKE ALL ON @extschema@.ai_route_history FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.ai_route_history() TO pg_read_all_stats;
GRANT SELECT ON @extschema@.ai_route_history TO pg_read_all_stats;
REVOKE ALL ON FUNCTION @extschema@.ai_route_set(text, text, boolean, interval) FROM PUBLIC;

-- Every change of state of a route's breaker, one row each, written by the
-- log writer of the database whose session made it (ai_route_history()
-- keeps the server's last 1024 since start; this table keeps them all, up
-- to ai_resilience.log_retention).
CREATE SEQUENCE @extschema@.ai_route_events_id_seq;

CREATE TABLE @extschema@.ai_route_events (
    id                   bigint PRIMARY KEY
                         DEFAULT pg_catalog.nextval('@extschema@.ai_route_events_id_seq'::pg_catalog.regclass),
    at                   timestamptz NOT NULL,
    endpoint             text NOT NULL,
    model                text,
    from_state           text NOT NULL,
    to_state             text NOT NULL,
    reason               text NOT NULL,
    consecutive_failures integer NOT NULL,
    window_requests      integer NOT NULL,
    window_failures      integer NOT NULL,
    next_probe_at        timestamptz,
    error_class          text,
    error_code           integer,
    backend_pid          integer NOT NULL
);
ALTER SEQUENCE @extschema@.ai_route_events_id_seq OWNED BY @extschema@.ai_route_events.id;

CREATE INDEX ai_route_events_at_idx ON @extschema@.ai_route_events (at);

COMMENT ON TABLE @extschema@.ai_route_events IS
    'One row per change of state of a route''s (endpoint, model) or endpoint''s (model NULL) circuit breaker';

SELECT pg_catalog.pg_extension_config_dump('@extschema@.ai_route_events'::pg_catalog.regclass, '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.ai_route_events_id_seq'::pg_catalog.regclass, '');

REVOKE ALL ON @extschema@.ai_route_events FROM PUBLIC;
GRANT SELECT ON @extschema@.ai_route_events TO pg_read_all_stats;


/*
 * Analysing the log (0.3.0): views an analyst reads without knowing how
 * attempts make up a call, a price table, and a support ticket's text.
 *
 * They run with the rights of the role that reads them (security_invoker),
 * so granting one gives nothing more than SELECT on ai_call_log gives: the
 * reader needs both (README, "Analysing the log").  Each is shaped so that
 * a filter on its time column (or on call_id) reaches an index of
 * ai_call_log: ai_calls is not a GROUP BY over the log but one row per
 * first attempt (its started_at and call_id are the row's own columns, so
 * their filters use the started_at and call_id indexes), with the call's
 * other attempts read per call through the call_id index; the grouped
 * views group by an immutable expression of started_at that an index of
 * its own covers, since a filter on a grouping column is pushed below the
 * GROUP BY.  Times are binned in UTC.
 */

CREATE INDEX ai_call_log_hour_idx ON @extschema@.ai_call_log
    (pg_catalog.date_bin('01:00:00'::pg_catalog.interval, started_at,
                         '2000-01-01 00:00:00+00'::pg_catalog.timestamptz));
CREATE INDEX ai_call_log_day_idx ON @extschema@.ai_call_log
    (((pg_catalog.timezone('UTC'::pg_catalog.text, started_at))::pg_catalog.date));

-- One row per call, from its first attempt (a call whose first attempt's
-- row is missing is not shown).
CREATE VIEW @extschema@.ai_calls WITH (security_invoker = true) AS
SELECT f.call_id,
       f.started_at,
       l.ended_at,
       (pg_catalog.date_part('epoch'::pg_catalog.text,
                             l.ended_at OPERATOR(pg_catalog.-) f.started_at)
        OPERATOR(pg_catalog.*) 1000::pg_catalog.float8) AS latency_ms,
       l.attempt AS attempts,
       l.routes,
       CASE
           WHEN l.outcome OPERATOR(pg_catalog.=) 'success'::pg_catalog.text THEN 'success'::pg_catalog.text
           WHEN l.outcome OPERATOR(pg_catalog.<>) 'failed'::pg_catalog.text THEN 'incomplete'::pg_catalog.text
           WHEN l.error_class OPERATOR(pg_catalog.=) ANY ('{cancelled,deadline}'::pg_catalog.text[]) THEN l.error_class
           ELSE 'failed'::pg_catalog.text
       END AS outcome,
       CASE WHEN l.outcome OPERATOR(pg_catalog.=) 'success'::pg_catalog.text THEN l.model END AS model,
       CASE WHEN l.outcome OPERATOR(pg_catalog.=) 'success'::pg_catalog.text THEN l.endpoint END AS endpoint,
       CASE WHEN l.outcome OPERATOR(pg_catalog.=) 'success'::pg_catalog.text THEN l.model_returned END AS model_returned,
       l.prompt_tokens,
       l.completion_tokens,
       f.tag,
       f.application_name,
       f.role_name,
       f.session_role,
       f.backend_pid,
       l.error_class AS last_error_class,
       l.code AS last_code,
       l.error AS last_error
FROM @extschema@.ai_call_log f
CROSS JOIN LATERAL (
    SELECT a.attempt, a.outcome, a.model, a.endpoint, a.model_returned,
           a.error_class, a.code, a.error,
           a.started_at OPERATOR(pg_catalog.+)
               pg_catalog.make_interval(secs => a.latency_ms OPERATOR(pg_catalog./) 1000::pg_catalog.float8) AS ended_at,
           -- every route tried has exactly one first try
           pg_catalog.count(*) FILTER (WHERE a.route_attempt OPERATOR(pg_catalog.=) 1) OVER () AS routes,
           pg_catalog.sum(a.prompt_tokens) OVER () AS prompt_tokens,
           pg_catalog.sum(a.completion_tokens) OVER () AS completion_tokens
    FROM @extschema@.ai_call_log a
    WHERE a.call_id OPERATOR(pg_catalog.=) f.call_id
    ORDER BY a.attempt DESC
    LIMIT 1) l
WHERE f.attempt OPERATOR(pg_catalog.=) 1;

COMMENT ON VIEW @extschema@.ai_calls IS
    'One row per call: its first attempt''s start, its last attempt''s end and outcome, attempts, routes, tokens; filters on started_at and call_id use the log''s indexes';

-- Route health over time: one row per hour (UTC), endpoint and model.
CREATE VIEW @extschema@.ai_route_hourly WITH (security_invoker = true) AS
SELECT pg_catalog.date_bin('01:00:00'::pg_catalog.interval, l.started_at,
                           '2000-01-01 00:00:00+00'::pg_catalog.timestamptz) AS hour,
       l.endpoint,
       l.model,
       pg_catalog.count(*) AS attempts,
       pg_catalog.count(*) FILTER (WHERE l.route_attempt OPERATOR(pg_catalog.=) 1) AS calls,
       pg_catalog.count(l.error_class) AS errors,
       pg_catalog.count(*) FILTER (WHERE NOT l.error_class OPERATOR(pg_catalog.=) ANY (
           '{bad_request,context_length,content_policy,http_4xx,deadline,cancelled}'::pg_catalog.text[])) AS failures,
       pg_catalog.round(pg_catalog.count(*) FILTER (WHERE NOT l.error_class OPERATOR(pg_catalog.=) ANY (
           '{bad_request,context_length,content_policy,http_4xx,deadline,cancelled}'::pg_catalog.text[]))::pg_catalog.numeric
           OPERATOR(pg_catalog./) pg_catalog.count(*)::pg_catalog.numeric, 4) AS failure_rate,
       pg_catalog.percentile_cont(0.5::pg_catalog.float8) WITHIN GROUP (ORDER BY l.latency_ms) AS p50_ms,
       pg_catalog.percentile_cont(0.95::pg_catalog.float8) WITHIN GROUP (ORDER BY l.latency_ms) AS p95_ms,
       pg_catalog.sum(l.prompt_tokens) AS prompt_tokens,
       pg_catalog.sum(l.completion_tokens) AS completion_tokens
FROM @extschema@.ai_call_log l
GROUP BY 1, 2, 3;

COMMENT ON VIEW @extschema@.ai_route_hourly IS
    'Per hour (UTC), endpoint and model: attempts, calls, errors, the route''s failures and failure rate, p50/p95 attempt latency; filter on hour to use ai_call_log_hour_idx';

-- Prices of the models, in a currency per million tokens, kept by the
-- administrator or a role granted it; a model without a row has no cost.
CREATE TABLE @extschema@.ai_model_prices (
    model              text PRIMARY KEY,
    input_per_million  numeric NOT NULL CHECK (input_per_million OPERATOR(pg_catalog.>=) 0),
    output_per_million numeric NOT NULL CHECK (output_per_million OPERATOR(pg_catalog.>=) 0),
    currency           text NOT NULL DEFAULT 'USD',
    note               text
);

COMMENT ON TABLE @extschema@.ai_model_prices IS
    'Price per million prompt (input) and completion (output) tokens of a model, as named in ai_call_log.model; user-editable';

SELECT pg_catalog.pg_extension_config_dump('@extschema@.ai_model_prices'::pg_catalog.regclass, '');

-- Tokens and their cost per day (UTC) and model requested.
CREATE VIEW @extschema@.ai_token_usage WITH (security_invoker = true) AS
SELECT u.day,
       u.model,
       u.calls,
       u.attempts,
       u.prompt_tokens,
       u.completion_tokens,
       -- OPERATOR() binds left to right, hence every parenthesis
       (((COALESCE(u.prompt_tokens, 0::pg_catalog.int8)::pg_catalog.numeric
              OPERATOR(pg_catalog.*) p.input_per_million)
         OPERATOR(pg_catalog.+)
         (COALESCE(u.completion_tokens, 0::pg_catalog.int8)::pg_catalog.numeric
              OPERATOR(pg_catalog.*) p.output_per_million))
        OPERATOR(pg_catalog./) 1000000::pg_catalog.numeric) AS cost,
       p.currency
FROM (SELECT (pg_catalog.timezone('UTC'::pg_catalog.text, l.started_at))::pg_catalog.date AS day,
             l.model,
             pg_catalog.count(*) FILTER (WHERE l.outcome OPERATOR(pg_catalog.=) 'success'::pg_catalog.text) AS calls,
             pg_catalog.count(*) AS attempts,
             pg_catalog.sum(l.prompt_tokens) AS prompt_tokens,
             pg_catalog.sum(l.completion_tokens) AS completion_tokens
      FROM @extschema@.ai_call_log l
      GROUP BY 1, 2) u
LEFT JOIN @extschema@.ai_model_prices p ON p.model OPERATOR(pg_catalog.=) u.model;

COMMENT ON VIEW @extschema@.ai_token_usage IS
    'Per day (UTC) and model: calls answered, attempts, prompt and completion tokens, and their cost from ai_model_prices (NULL without a price); filter on day to use ai_call_log_day_idx';

-- Readers and price keepers are granted by the administrator.
REVOKE ALL ON @extschema@.ai_calls FROM PUBLIC;
REVOKE ALL ON @extschema@.ai_route_hourly FROM PUBLIC;
REVOKE ALL ON @extschema@.ai_token_usage FROM PUBLIC;
REVOKE ALL ON @extschema@.ai_model_prices FROM PUBLIC;

CREATE FUNCTION @extschema@.ai_versions(
    OUT extension  text,
    OUT libcurl    text,
    OUT postgresql text)
RETURNS record
AS 'MODULE_PATHNAME', 'ai_versions'
LANGUAGE C STRICT STABLE PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@.ai_versions() IS
    'The versions of the extension, of the libcurl loaded (with its TLS library) and of the running server';

/*
 * The text of a support ticket for one call: what a gateway vendor asks
 * for, from the log, the versions and the current retry and timeout
 * settings.  Its secrets stay out by construction: it reads only the log
 * (whose endpoints carry no credentials and whose gateway text has the
 * keys redacted) and the settings named in its list, which holds neither
 * the key, the key file, the extra headers nor the endpoints.  It runs
 * with the caller's rights: reading it needs SELECT on ai_call_log.
 */
CREATE FUNCTION @extschema@.ai_support_bundle(call_id uuid)
RETURNS text
LANGUAGE plpgsql STRICT STABLE
SET search_path = pg_catalog, pg_temp
AS $bundle$
DECLARE
    settings CONSTANT text[] := ARRAY[
        'max_retries', 'backoff_base', 'backoff_max', 'retry_after_max',
        'connect_timeout', 'first_byte_timeout', 'request_timeout', 'stream_idle_timeout',
        'deadline', 'stream', 'stream_on_timeout', 'max_response_bytes',
        'breaker', 'breaker_failures', 'breaker_cooldown', 'breaker_cooldown_max',
        'breaker_window', 'breaker_failure_rate', 'breaker_min_requests',
        'retry_budget', 'retry_budget_min'];
    lines text[];
    c record;
    a record;
    ver record;
    s text;
BEGIN
    SELECT * INTO c FROM @extschema@.ai_calls x WHERE x.call_id = ai_support_bundle.call_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'call % is not in ai_call_log', call_id
            USING ERRCODE = 'no_data_found',
                  HINT = 'Its rows may not be written yet (ai_flush_log()), purged by ai_resilience.log_retention, or in another database.';
    END IF;
    ver := @extschema@.ai_versions();

    lines := ARRAY[
        format('pg_ai_resilience support bundle for call %s', call_id),
        format('versions: pg_ai_resilience %s, libcurl %s, %s', ver.extension, ver.libcurl, ver.postgresql),
        format('call: %s after %s attempt(s) on %s route(s), %s UTC to %s UTC (%s ms end to end)',
                  c.outcome, c.attempts, c.routes, to_char(c.started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS'),
                  to_char(c.ended_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS'), round(c.latency_ms::numeric, 1)),
        format('caller: application_name %s, tag %s', coalesce(c.application_name, '(none)'), coalesce(c.tag, '(none)'))];

    FOR a IN
        SELECT l.* FROM @extschema@.ai_call_log l
        WHERE l.call_id = ai_support_bundle.call_id ORDER BY l.attempt, l.id
    LOOP
        lines := lines || ARRAY[
            '',
            format('attempt %s: %s UTC, %s ms, route %s try %s, model %s, endpoint %s, streaming %s',
                      a.attempt, to_char(a.started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS'),
                      round(a.latency_ms::numeric, 1), a.route_index, a.route_attempt, a.model, a.endpoint,
                      CASE WHEN a.streaming THEN 'yes' ELSE 'no' END),
            format('  result: HTTP %s, error class %s, outcome %s%s%s',
                      coalesce(a.code::text, '(no response)'), coalesce(a.error_class, '(none)'), a.outcome,
                      ', retry-after ' || a.retry_after_ms || ' ms', ', waited ' || a.backoff_ms || ' ms before the next'),
            format('  request_id %s, provider_request_id %s',
                      coalesce(a.request_id, '(none)'), coalesce(a.provider_request_id, '(none)'))];
        IF a.error IS NOT NULL THEN
            lines := lines || format('  error: %s', a.error);
        END IF;
        IF a.model_returned IS NOT NULL OR a.finish_reason IS NOT NULL OR a.prompt_tokens IS NOT NULL THEN
            lines := lines || format('  answer: model %s, finish_reason %s, tokens %s prompt + %s completion',
                                     coalesce(a.model_returned, '(none)'), coalesce(a.finish_reason, '(none)'),
                                     coalesce(a.prompt_tokens::text, '?'), coalesce(a.completion_tokens::text, '?'));
        END IF;
        IF a.skipped_routes IS NOT NULL THEN
            lines := lines || format('  skipped before it: %s', a.skipped_routes);
        END IF;
    END LOOP;

    lines := lines || ARRAY['', 'settings (the current ones of this session, not necessarily those of the call):'];
    FOREACH s IN ARRAY settings LOOP
        lines := lines || format('  ai_resilience.%s = %s', s,
                                 coalesce(current_setting('ai_resilience.' || s, true), '(not set)'));
    END LOOP;
    RETURN array_to_string(lines, E'\n') || E'\n';
END;
$bundle$;

COMMENT ON FUNCTION @extschema@.ai_support_bundle(uuid) IS
    'The text of a support ticket for one call: every attempt (UTC times, model, endpoint, code, error, request ids), the versions and the current retry and timeout settings; no secret';

REVOKE ALL ON FUNCTION @extschema@.ai_versions() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.ai_support_bundle(uuid) FROM PUBLIC;

-- ai_probe (0.3.0): check the configuration and every endpoint, one row
-- per check (settings, dns, connect, tls, models, model, chat).  It reveals
-- the endpoints and, with chat => true, spends tokens: not for PUBLIC.
CREATE FUNCTION @extschema@.ai_probe(
    models text[] DEFAULT NULL,
    chat   boolean DEFAULT false)
RETURNS TABLE (endpoint text, model text, check_name text, verdict text,
               elapsed_ms double precision, detail text, hint text)
AS 'MODULE_PATHNAME', 'ai_probe'
LANGUAGE C VOLATILE PARALLEL UNSAFE COST 10000;

COMMENT ON FUNCTION @extschema@.ai_probe(text[], boolean) IS
    'Check the settings and every endpoint (name, connection, TLS, GET /models, the models listed) without spending tokens; chat => true also sends one tiny chat per endpoint and model';

REVOKE ALL ON FUNCTION @extschema@.ai_probe(text[], boolean) FROM PUBLIC;
