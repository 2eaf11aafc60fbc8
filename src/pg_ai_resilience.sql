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
