/*
 * pg_ai_resilience upgrade from 0.2.0 to 0.3.0.
 *
 * Brings a 0.2.0 installation to the objects of src/pg_ai_resilience.sql
 * at 0.3.0 (test: sql/upgrade.sql compares the two); the log's rows stay.
 * Written to the same rules as the install script: every name qualified.
 */

\echo Use "ALTER EXTENSION pg_ai_resilience UPDATE TO '0.3.0'" to load this file. \quit

-- Attribution: who called (application_name, ai_resilience.tag, captured by
-- the calling backend) and the upstream provider's request id a gateway
-- forwards.  NULL in the rows written before.
ALTER TABLE @extschema@.ai_call_log
    ADD COLUMN application_name text,
    ADD COLUMN tag text,
    ADD COLUMN provider_request_id text;
COMMENT ON COLUMN @extschema@.ai_call_log.application_name IS
    'application_name of the calling session at call time; NULL in rows from versions before 0.3.0';
COMMENT ON COLUMN @extschema@.ai_call_log.tag IS
    'ai_resilience.tag of the calling session at call time (NULL when unset)';
COMMENT ON COLUMN @extschema@.ai_call_log.provider_request_id IS
    'The upstream provider''s request id a gateway forwards (LiteLLM: llm_provider-x-request-id); request_id is the gateway''s own';

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
                                 coalesce(pg_catalog.current_setting('ai_resilience.' || s, true), '(not set)'));
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

/*
 * ai_enrich: fill a column of a table from a prompt over its rows, in
 * slices that each commit, so that a paid answer is never rolled back.
 *
 * A slice takes up to slice_rows rows whose result column is NULL with
 * FOR UPDATE SKIP LOCKED (overlapping runs never call twice for a row, and
 * a concurrent UPDATE of a row being enriched waits for the slice instead
 * of re-running a call), sends their prompts through ai_chat_batch (its
 * rows come in prompt order, matched to the rows' ctids, stable while the
 * rows are locked), writes the answers and records the failures, then
 * commits.  Every argument of ai_chat_batch is given, with its exact type:
 * a function a database owner plants in the extension's schema can then
 * neither outrank it (an exact match would outrank ai_chat_batch_keyed's
 * anyarray, a shorter signature one that fills defaults) nor share its
 * signature.  Rows never tried come first, then
 * rows that failed in earlier runs; a run tries a row at most once, and a
 * row that failed max_tries runs is given up (skipped and listed) until its
 * entry in ai_enrich_failures is deleted.  When the run's failed rows pass
 * failure_threshold the run stops taking slices and ends in ERROR RA004,
 * after its successes are committed, so a scheduler shows the outage.
 *
 * SECURITY INVOKER, and a procedure cannot pin search_path (SET forbids
 * COMMIT), so every object, function and operator below is qualified: a
 * caller's search_path cannot substitute its own.  The prompt expression
 * is the caller's own SQL, run with the caller's rights.
 */

-- Per row of a target that failed: how often, why, and whether ai_enrich
-- gave up on it.  Deleting an entry makes its row eligible again.
CREATE TABLE @extschema@.ai_enrich_failures (
    target          regclass NOT NULL,
    result_column   name NOT NULL,
    key             text NOT NULL,
    tries           integer NOT NULL,
    given_up        boolean NOT NULL,
    last_error      text,
    last_call_id    uuid,
    first_failed_at timestamptz NOT NULL,
    last_failed_at  timestamptz NOT NULL,
    last_run_id     bigint NOT NULL,
    PRIMARY KEY (target, result_column, key)
);

COMMENT ON TABLE @extschema@.ai_enrich_failures IS
    'One row per row of an ai_enrich target whose call failed; given_up rows are skipped until their entry is deleted';

-- One row per run of ai_enrich, updated after every slice.
CREATE SEQUENCE @extschema@.ai_enrich_runs_run_id_seq;

CREATE TABLE @extschema@.ai_enrich_runs (
    run_id        bigint PRIMARY KEY
                  DEFAULT pg_catalog.nextval('@extschema@.ai_enrich_runs_run_id_seq'::pg_catalog.regclass),
    target        regclass NOT NULL,
    result_column name NOT NULL,
    role_name     name NOT NULL,
    backend_pid   integer NOT NULL,
    started_at    timestamptz NOT NULL,
    ended_at      timestamptz,
    status        text NOT NULL,
    slices        integer NOT NULL DEFAULT 0,
    rows_filled   bigint NOT NULL DEFAULT 0,
    rows_failed   bigint NOT NULL DEFAULT 0,
    rows_given_up bigint NOT NULL DEFAULT 0,
    message       text
);

ALTER SEQUENCE @extschema@.ai_enrich_runs_run_id_seq OWNED BY @extschema@.ai_enrich_runs.run_id;

CREATE INDEX ai_enrich_runs_target_idx ON @extschema@.ai_enrich_runs (target, result_column, started_at);

COMMENT ON TABLE @extschema@.ai_enrich_runs IS
    'One row per run of ai_enrich; status running, completed (nothing left to try), stopped (time_budget or max_rows), failed (the ERROR in message) or interrupted (its backend ended)';

SELECT pg_catalog.pg_extension_config_dump('@extschema@.ai_enrich_failures'::pg_catalog.regclass, '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.ai_enrich_runs'::pg_catalog.regclass, '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.ai_enrich_runs_run_id_seq'::pg_catalog.regclass, '');

-- Several roles may enrich their own tables: a role sees the rows of the
-- targets whose result column it may read, and writes those of the targets
-- whose result column it may update (as pg_cron's job_run_details, the
-- tables are open to PUBLIC and row-level security does the filtering).
--
-- The policies look the column up by name and test it by number: a
-- column dropped or renamed by its table's owner makes its entries
-- invisible, where has_column_privilege(table, name, ...) would raise an
-- error for every role reading these tables (pg_regress enrich).
CREATE FUNCTION @extschema@.ai_enrich_may(target regclass, result_column name, privilege text)
RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT COALESCE(
        (SELECT pg_catalog.has_column_privilege(target, a.attnum, privilege)
         FROM pg_catalog.pg_attribute a
         WHERE a.attrelid OPERATOR(pg_catalog.=) target
           AND a.attname OPERATOR(pg_catalog.=) result_column
           AND NOT a.attisdropped),
        false)
$$;

COMMENT ON FUNCTION @extschema@.ai_enrich_may(regclass, name, text) IS
    'Whether the current role has privilege on a target''s result column (false when the column is gone); the row-level security of the ai_enrich tables';

ALTER TABLE @extschema@.ai_enrich_failures ENABLE ROW LEVEL SECURITY;
ALTER TABLE @extschema@.ai_enrich_runs ENABLE ROW LEVEL SECURITY;
CREATE POLICY ai_enrich_failures_read ON @extschema@.ai_enrich_failures FOR SELECT
    USING (@extschema@.ai_enrich_may(target, result_column, 'SELECT'));
CREATE POLICY ai_enrich_failures_write ON @extschema@.ai_enrich_failures
    USING (@extschema@.ai_enrich_may(target, result_column, 'UPDATE'))
    WITH CHECK (@extschema@.ai_enrich_may(target, result_column, 'UPDATE'));
CREATE POLICY ai_enrich_runs_read ON @extschema@.ai_enrich_runs FOR SELECT
    USING (@extschema@.ai_enrich_may(target, result_column, 'SELECT'));
CREATE POLICY ai_enrich_runs_write ON @extschema@.ai_enrich_runs
    USING (@extschema@.ai_enrich_may(target, result_column, 'UPDATE'))
    WITH CHECK (@extschema@.ai_enrich_may(target, result_column, 'UPDATE'));
GRANT SELECT, INSERT, UPDATE, DELETE ON @extschema@.ai_enrich_failures, @extschema@.ai_enrich_runs TO PUBLIC;
GRANT USAGE ON SEQUENCE @extschema@.ai_enrich_runs_run_id_seq TO PUBLIC;

-- Errors unless called outside a transaction block (ai_enrich commits).
-- EXECUTE stays with PUBLIC: it reads and changes nothing, and every role
-- granted ai_enrich needs it.
CREATE FUNCTION @extschema@.ai_enrich_require_top_level(caller text)
RETURNS void
AS 'MODULE_PATHNAME', 'ai_enrich_require_top_level'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.ai_enrich_require_top_level(text) IS
    'Raise 25001 when called inside a transaction block (used by ai_enrich, which commits between slices)';

CREATE PROCEDURE @extschema@.ai_enrich(
    target            regclass,
    key_column        name,
    prompt            text,
    result_column     name,
    models            text[] DEFAULT NULL,
    system_prompt     text DEFAULT NULL,
    max_tokens        integer DEFAULT NULL,
    temperature       double precision DEFAULT NULL,
    slice_rows        integer DEFAULT 100,
    max_rows          bigint DEFAULT NULL,
    time_budget       interval DEFAULT NULL,
    max_tries         integer DEFAULT 3,
    failure_threshold integer DEFAULT 0)
LANGUAGE plpgsql
AS $body$
#variable_conflict use_column
DECLARE
    rel_alias    text;          -- the target's name, as alias in every query
    relation     text;          -- schema.table, quoted
    rel_kind     "char";
    key_attnum   smallint;
    result_type  oid;
    take_sql     text;          -- rows to try, from rows never tried (%6$s NOT EXISTS) or failed before
    fresh_sql    text;
    retry_sql    text;
    update_sql   text;
    max_bytes    bigint;
    this_run     bigint;
    started      timestamptz := pg_catalog.clock_timestamp();
    run_status   text;
    run_message  text;
    err_state    text;
    err_detail   text;
    err_hint     text;
    want         bigint;
    row_ids      tid[];
    keys         text[];
    prompts      text[];
    more_ids     tid[];
    more_keys    text[];
    more_prompts text[];
    answers      text[];
    call_ids     uuid[];
    errors       text[];
    refusals     text[];
    n_taken      integer;
    n_filled     integer;
    n_failed     integer;
    n_given_up   integer;
    last_error   text;
    run_taken    bigint := 0;
    run_filled   bigint := 0;
    run_failed   bigint := 0;
    run_given_up bigint := 0;
    run_slices   integer := 0;
    given_up_all bigint;
    given_up_keys text;
BEGIN
    -- the arguments, all checked before any call
    IF ai_enrich.target IS NULL OR ai_enrich.key_column IS NULL OR ai_enrich.prompt IS NULL
       OR ai_enrich.result_column IS NULL THEN
        RAISE EXCEPTION 'ai_enrich: target, key_column, prompt and result_column must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF ai_enrich.slice_rows IS NULL OR ai_enrich.slice_rows OPERATOR(pg_catalog.<) 1 THEN
        RAISE EXCEPTION 'ai_enrich: slice_rows must be at least 1' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF ai_enrich.max_tries IS NULL OR ai_enrich.max_tries OPERATOR(pg_catalog.<) 1 THEN
        RAISE EXCEPTION 'ai_enrich: max_tries must be at least 1' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF ai_enrich.failure_threshold IS NULL OR ai_enrich.failure_threshold OPERATOR(pg_catalog.<) 0 THEN
        RAISE EXCEPTION 'ai_enrich: failure_threshold must be at least 0' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF ai_enrich.max_rows OPERATOR(pg_catalog.<) 1 THEN
        RAISE EXCEPTION 'ai_enrich: max_rows must be at least 1 (NULL: no limit)' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF ai_enrich.time_budget OPERATOR(pg_catalog.<=) '0'::pg_catalog.interval THEN
        RAISE EXCEPTION 'ai_enrich: time_budget must be positive (NULL: no limit)' USING ERRCODE = 'invalid_parameter_value';
    END IF;

    SELECT pg_catalog.quote_ident(c.relname), pg_catalog.format('%I.%I', n.nspname, c.relname), c.relkind
      INTO rel_alias, relation, rel_kind
      FROM pg_catalog.pg_class c
      JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
     WHERE c.oid OPERATOR(pg_catalog.=) ai_enrich.target;
    IF rel_kind IS NULL OR rel_kind OPERATOR(pg_catalog.<>) 'r' THEN
        RAISE EXCEPTION 'ai_enrich: % is not a table', ai_enrich.target USING ERRCODE = 'wrong_object_type',
            HINT = 'Enrich an ordinary table, or each partition of a partitioned one.';
    END IF;

    SELECT a.attnum INTO key_attnum
      FROM pg_catalog.pg_attribute a
     WHERE a.attrelid OPERATOR(pg_catalog.=) ai_enrich.target AND a.attname OPERATOR(pg_catalog.=) ai_enrich.key_column
       AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped;
    IF key_attnum IS NULL THEN
        RAISE EXCEPTION 'ai_enrich: column "%" of % does not exist', ai_enrich.key_column, relation
            USING ERRCODE = 'undefined_column';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_index i
                    WHERE i.indrelid OPERATOR(pg_catalog.=) ai_enrich.target AND i.indisunique AND i.indisvalid
                      AND i.indnkeyatts OPERATOR(pg_catalog.=) 1 AND i.indkey[0] OPERATOR(pg_catalog.=) key_attnum
                      AND i.indpred IS NULL AND i.indexprs IS NULL) THEN
        RAISE EXCEPTION 'ai_enrich: key column "%" of % has no unique index', ai_enrich.key_column, relation
            USING ERRCODE = 'invalid_column_reference',
                  HINT = 'The key identifies a row across runs: use the primary key or a column with a unique index.';
    END IF;

    SELECT a.atttypid INTO result_type
      FROM pg_catalog.pg_attribute a
     WHERE a.attrelid OPERATOR(pg_catalog.=) ai_enrich.target AND a.attname OPERATOR(pg_catalog.=) ai_enrich.result_column
       AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped;
    IF result_type IS NULL THEN
        RAISE EXCEPTION 'ai_enrich: column "%" of % does not exist', ai_enrich.result_column, relation
            USING ERRCODE = 'undefined_column';
    END IF;
    IF ai_enrich.result_column OPERATOR(pg_catalog.=) ai_enrich.key_column THEN
        RAISE EXCEPTION 'ai_enrich: result_column and key_column must differ' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF result_type OPERATOR(pg_catalog.<>) ALL (ARRAY['pg_catalog.text'::pg_catalog.regtype,
                                                      'pg_catalog.varchar'::pg_catalog.regtype]::pg_catalog.oid[]) THEN
        RAISE EXCEPTION 'ai_enrich: result column "%" of % is of type %, not text', ai_enrich.result_column, relation,
            result_type::pg_catalog.regtype USING ERRCODE = 'datatype_mismatch';
    END IF;
    IF NOT pg_catalog.has_column_privilege(ai_enrich.target, ai_enrich.result_column, 'UPDATE') THEN
        RAISE EXCEPTION 'ai_enrich: permission denied to update column "%" of %', ai_enrich.result_column, relation
            USING ERRCODE = 'insufficient_privilege';
    END IF;

    -- the prompt must be an expression over the table's rows
    BEGIN
        EXECUTE pg_catalog.format('SELECT (%s)::pg_catalog.text FROM %s AS %s LIMIT 0',
                                  ai_enrich.prompt, relation, rel_alias);
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS err_state = RETURNED_SQLSTATE;
        RAISE EXCEPTION 'ai_enrich: prompt is not an expression over the rows of %: %', relation, SQLERRM
            USING ERRCODE = err_state;
    END;
    -- models, system_prompt, max_tokens and temperature, checked as a batch checks them
    PERFORM FROM @extschema@.ai_chat_batch('{}'::pg_catalog.text[], ai_enrich.models, ai_enrich.system_prompt,
                                           ai_enrich.max_tokens, ai_enrich.temperature,
                                           'null'::pg_catalog.text, NULL::pg_catalog.bool);

    -- A prompt over max_prompt_bytes would refuse its whole slice: such a
    -- row is given up at once instead.  A NULL or empty prompt has nothing
    -- to ask: its row is left alone.
    SELECT s.setting::bigint INTO max_bytes
      FROM pg_catalog.pg_settings s WHERE s.name OPERATOR(pg_catalog.=) 'ai_resilience.max_prompt_bytes';
    -- rows never tried, and rows that failed in earlier runs
    take_sql := '
        SELECT pg_catalog.array_agg(s.row_id), pg_catalog.array_agg(s.k), pg_catalog.array_agg(s.p)
        FROM (SELECT %2$s.ctid AS row_id, %2$s.%3$I::pg_catalog.text AS k, (%5$s)::pg_catalog.text AS p
              FROM %1$s AS %2$s
              WHERE %2$s.%4$I IS NULL AND %2$s.%3$I IS NOT NULL
                AND (%5$s) IS NOT NULL AND (%5$s)::pg_catalog.text OPERATOR(pg_catalog.<>) ''''
                AND %6$s (SELECT FROM @extschema@.ai_enrich_failures ai_enrich_failure
                          WHERE ai_enrich_failure.target OPERATOR(pg_catalog.=) $1
                            AND ai_enrich_failure.result_column OPERATOR(pg_catalog.=) $2
                            AND ai_enrich_failure.key OPERATOR(pg_catalog.=) %2$s.%3$I::pg_catalog.text %7$s)
              LIMIT $3 FOR UPDATE OF %2$s SKIP LOCKED) s';
    fresh_sql := pg_catalog.format(take_sql, relation, rel_alias, ai_enrich.key_column, ai_enrich.result_column,
                                   ai_enrich.prompt, 'NOT EXISTS', '');
    retry_sql := pg_catalog.format(take_sql, relation, rel_alias, ai_enrich.key_column, ai_enrich.result_column,
                                   ai_enrich.prompt, 'EXISTS',
                                   'AND NOT ai_enrich_failure.given_up
                                    AND ai_enrich_failure.last_run_id OPERATOR(pg_catalog.<>) $4');
    update_sql := pg_catalog.format(
        'UPDATE %1$s AS %2$s SET %3$I = a.answer '
        'FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2)) AS a(row_id, answer) '
        'WHERE %2$s.ctid OPERATOR(pg_catalog.=) ANY ($1) AND %2$s.ctid OPERATOR(pg_catalog.=) a.row_id '
        '  AND a.answer IS NOT NULL',
        relation, rel_alias, ai_enrich.result_column);

    -- it commits after every slice
    PERFORM @extschema@.ai_enrich_require_top_level('ai_enrich'::pg_catalog.text);

    -- runs still 'running' whose backend is gone, or is this one, ended in
    -- an error they could not record (cancel, statement_timeout, a crash)
    UPDATE @extschema@.ai_enrich_runs r
       SET status = 'interrupted', ended_at = pg_catalog.clock_timestamp()
     WHERE r.target OPERATOR(pg_catalog.=) ai_enrich.target
       AND r.result_column OPERATOR(pg_catalog.=) ai_enrich.result_column
       AND r.status OPERATOR(pg_catalog.=) 'running'
       AND (r.backend_pid OPERATOR(pg_catalog.=) pg_catalog.pg_backend_pid()
            OR NOT EXISTS (SELECT FROM pg_catalog.pg_stat_activity a
                            WHERE a.pid OPERATOR(pg_catalog.=) r.backend_pid));
    INSERT INTO @extschema@.ai_enrich_runs (target, result_column, role_name, backend_pid, started_at, status)
    VALUES (ai_enrich.target, ai_enrich.result_column, CURRENT_USER, pg_catalog.pg_backend_pid(), started, 'running')
    RETURNING run_id INTO this_run;
    COMMIT;

    <<slices>>
    LOOP
        IF run_taken OPERATOR(pg_catalog.>=) ai_enrich.max_rows THEN
            run_status := 'stopped';
            run_message := pg_catalog.format('max_rows %s reached', ai_enrich.max_rows);
            EXIT;
        END IF;
        IF (pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) started) OPERATOR(pg_catalog.>=) ai_enrich.time_budget THEN
            run_status := 'stopped';
            run_message := pg_catalog.format('time_budget %s spent', ai_enrich.time_budget);
            EXIT;
        END IF;
        want := LEAST(ai_enrich.slice_rows, ai_enrich.max_rows OPERATOR(pg_catalog.-) run_taken);
        n_taken := 0;

        BEGIN
            -- rows never tried first, then rows that failed in earlier runs
            EXECUTE fresh_sql
               INTO row_ids, keys, prompts
              USING ai_enrich.target, ai_enrich.result_column, want;
            n_taken := COALESCE(pg_catalog.array_length(keys, 1), 0);
            IF n_taken OPERATOR(pg_catalog.<) want THEN
                EXECUTE retry_sql
                   INTO more_ids, more_keys, more_prompts
                  USING ai_enrich.target, ai_enrich.result_column, want OPERATOR(pg_catalog.-) n_taken, this_run;
                row_ids := pg_catalog.array_cat(row_ids, more_ids);
                keys := pg_catalog.array_cat(keys, more_keys);
                prompts := pg_catalog.array_cat(prompts, more_prompts);
                n_taken := COALESCE(pg_catalog.array_length(keys, 1), 0);
            END IF;
            IF n_taken OPERATOR(pg_catalog.=) 0 THEN
                run_status := 'completed';
                EXIT slices;
            END IF;

            -- a prompt over max_prompt_bytes would refuse the whole batch: its
            -- row gets no call and is given up at once
            SELECT pg_catalog.array_agg(CASE WHEN u.too_big THEN NULL ELSE u.prompt END ORDER BY u.n),
                   pg_catalog.array_agg(CASE WHEN u.too_big
                                        THEN pg_catalog.format('prompt of %s bytes, over ai_resilience.max_prompt_bytes (%s)',
                                                               pg_catalog.octet_length(u.prompt), max_bytes) END
                                        ORDER BY u.n)
              INTO prompts, refusals
              FROM (SELECT q.prompt, q.n,
                           pg_catalog.octet_length(q.prompt) OPERATOR(pg_catalog.>) max_bytes AS too_big
                      FROM pg_catalog.unnest(prompts) WITH ORDINALITY AS q(prompt, n)) u;

            SELECT pg_catalog.array_agg(b.response ORDER BY b.n),
                   pg_catalog.array_agg(b.call_id ORDER BY b.n),
                   pg_catalog.array_agg(b.error ORDER BY b.n)
              INTO answers, call_ids, errors
              FROM @extschema@.ai_chat_batch(prompts, ai_enrich.models, ai_enrich.system_prompt,
                                             ai_enrich.max_tokens, ai_enrich.temperature,
                                             'null'::pg_catalog.text, NULL::pg_catalog.bool)
                   WITH ORDINALITY AS b(ord, response, call_id, attempts, error, n);

            EXECUTE update_sql USING row_ids, answers;
            GET DIAGNOSTICS n_filled = ROW_COUNT;

            DELETE FROM @extschema@.ai_enrich_failures f
             WHERE f.target OPERATOR(pg_catalog.=) ai_enrich.target
               AND f.result_column OPERATOR(pg_catalog.=) ai_enrich.result_column
               AND f.key OPERATOR(pg_catalog.=) ANY (SELECT a.key FROM ROWS FROM (pg_catalog.unnest(keys), pg_catalog.unnest(answers)) AS a(key, answer)
                                                      WHERE a.answer IS NOT NULL);

            WITH failure AS (
                INSERT INTO @extschema@.ai_enrich_failures AS f
                       (target, result_column, key, tries, given_up, last_error, last_call_id,
                        first_failed_at, last_failed_at, last_run_id)
                SELECT ai_enrich.target, ai_enrich.result_column, a.key,
                       CASE WHEN a.refusal IS NULL THEN 1 ELSE ai_enrich.max_tries END,
                       a.refusal IS NOT NULL OR ai_enrich.max_tries OPERATOR(pg_catalog.=) 1,
                       COALESCE(a.refusal, a.error), a.call_id,
                       pg_catalog.clock_timestamp(), pg_catalog.clock_timestamp(), this_run
                  FROM ROWS FROM (pg_catalog.unnest(keys), pg_catalog.unnest(answers), pg_catalog.unnest(call_ids),
                                  pg_catalog.unnest(errors), pg_catalog.unnest(refusals))
                       AS a(key, answer, call_id, error, refusal)
                 WHERE a.answer IS NULL
                ON CONFLICT (target, result_column, key) DO UPDATE
                   SET tries = f.tries OPERATOR(pg_catalog.+) 1,
                       given_up = excluded.given_up
                                  OR (f.tries OPERATOR(pg_catalog.+) 1) OPERATOR(pg_catalog.>=) ai_enrich.max_tries,
                       last_error = excluded.last_error,
                       last_call_id = excluded.last_call_id,
                       last_failed_at = excluded.last_failed_at,
                       last_run_id = excluded.last_run_id
                RETURNING f.given_up, f.last_error)
            SELECT pg_catalog.count(*), pg_catalog.count(*) FILTER (WHERE failure.given_up),
                   pg_catalog.max(failure.last_error)
              INTO n_failed, n_given_up, last_error
              FROM failure;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS err_state = RETURNED_SQLSTATE, run_message = MESSAGE_TEXT,
                                    err_detail = PG_EXCEPTION_DETAIL, err_hint = PG_EXCEPTION_HINT;
            run_status := 'failed';
            EXIT slices;
        END;

        run_slices := run_slices OPERATOR(pg_catalog.+) 1;
        run_taken := run_taken OPERATOR(pg_catalog.+) n_taken;
        run_filled := run_filled OPERATOR(pg_catalog.+) n_filled;
        run_failed := run_failed OPERATOR(pg_catalog.+) n_failed;
        run_given_up := run_given_up OPERATOR(pg_catalog.+) n_given_up;
        UPDATE @extschema@.ai_enrich_runs r
           SET slices = run_slices, rows_filled = run_filled, rows_failed = run_failed, rows_given_up = run_given_up
         WHERE r.run_id OPERATOR(pg_catalog.=) this_run;
        COMMIT;
        RAISE NOTICE 'ai_enrich run %: slice %: % rows, % filled, % failed; % filled and % failed in this run',
            this_run, run_slices, n_taken, n_filled, n_failed, run_filled, run_failed;

        IF run_failed OPERATOR(pg_catalog.>) ai_enrich.failure_threshold THEN
            run_status := 'failed';
            err_state := 'RA004';
            run_message := pg_catalog.format(
                'ai_enrich: %s rows of %s failed in run %s, over failure_threshold %s; %s rows filled and committed',
                run_failed, relation, this_run, ai_enrich.failure_threshold, run_filled);
            err_detail := 'last error: ' OPERATOR(pg_catalog.||) COALESCE(last_error, 'none');
            err_hint := 'The failed rows are in ai_enrich_failures; the next run tries them again.';
            EXIT;
        END IF;
    END LOOP;

    UPDATE @extschema@.ai_enrich_runs r
       SET ended_at = pg_catalog.clock_timestamp(), status = run_status, message = run_message
     WHERE r.run_id OPERATOR(pg_catalog.=) this_run;
    COMMIT;

    -- the rows given up so far are listed at every run, until dealt with
    SELECT pg_catalog.max(g.total),
           pg_catalog.string_agg(g.key, ', ' ORDER BY g.n) FILTER (WHERE g.n OPERATOR(pg_catalog.<=) 10)
      INTO given_up_all, given_up_keys
      FROM (SELECT f.key,
                   pg_catalog.row_number() OVER (ORDER BY f.last_failed_at, f.key) AS n,
                   pg_catalog.count(*) OVER () AS total
              FROM @extschema@.ai_enrich_failures f
             WHERE f.target OPERATOR(pg_catalog.=) ai_enrich.target
               AND f.result_column OPERATOR(pg_catalog.=) ai_enrich.result_column
               AND f.given_up) g;
    IF given_up_all IS NOT NULL THEN
        RAISE WARNING 'ai_enrich: % rows of % are given up, keys: %', given_up_all, relation,
            given_up_keys OPERATOR(pg_catalog.||) CASE WHEN given_up_all OPERATOR(pg_catalog.>) 10 THEN ', ...' ELSE '' END
            USING HINT = 'Their errors are in ai_enrich_failures; delete their entries there to try them again.';
    END IF;

    IF run_status OPERATOR(pg_catalog.=) 'failed' THEN
        RAISE EXCEPTION USING ERRCODE = err_state, MESSAGE = run_message,
            DETAIL = err_detail, HINT = err_hint;
    END IF;
    RAISE NOTICE 'ai_enrich run % %: % rows filled, % failed, % given up, in % slices',
        this_run, run_status, run_filled, run_failed, run_given_up, run_slices;
END
$body$;

COMMENT ON PROCEDURE @extschema@.ai_enrich(regclass, name, text, name, text[], text, integer, double precision,
                                           integer, bigint, interval, integer, integer) IS
    'Fill result_column of the rows where it is NULL with the answer to prompt, an expression over the row, in slices that each commit; failures are kept in ai_enrich_failures, runs in ai_enrich_runs';

REVOKE ALL ON PROCEDURE @extschema@.ai_enrich(regclass, name, text, name, text[], text, integer, double precision,
                                              integer, bigint, interval, integer, integer) FROM PUBLIC;
