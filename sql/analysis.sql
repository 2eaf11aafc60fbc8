-- Analysing the log (README "Analysing the log"): the views ai_calls,
-- ai_route_hourly and ai_token_usage over deterministic calls through the
-- simulator (retries, fallback, failures), the price table, the support
-- bundle (no secret in it) and who may read them.  Calls are told apart
-- by their prompts (log_prompts); times, ids and the port are masked.
SELECT use_gateways('v1');
TRUNCATE ai_call_log;
SET ai_resilience.log_prompts = on;
SET ai_resilience.max_retries = 1;
SELECT ai_chat('one answer', ARRAY['ok']) AS answer;
SELECT ai_chat('two retries', ARRAY['flaky-1']) AS answer;
SELECT try_chat('three fallback', ARRAY['status-502', 'ok+tokens-5']) AS answer;
SELECT try_chat('four fails', ARRAY['status-500']) AS answer;
SELECT try_chat('five too long', ARRAY['context', 'ok']) AS answer;
SELECT ai_chat('six streamed', ARRAY['ok'], stream => true) AS answer;
RESET ai_resilience.max_retries;
RESET ai_resilience.log_prompts;
SELECT ai_flush_log() AS flushed;
-- the calls' tags, as ai_resilience.tag would have set them
UPDATE ai_call_log SET tag = CASE WHEN prompt IN ('one answer', 'four fails') THEN 'nightly' ELSE 'chat' END;
-- moved together to the start of this hour, so that no hour or day
-- boundary falls between them
UPDATE ai_call_log SET started_at = date_bin('1 hour', now(), '2000-01-01 00:00:00+00') +
                                    (started_at - (SELECT min(started_at) FROM ai_call_log));

-- The prompt of each call, from its first attempt.
CREATE VIEW call_prompts AS
SELECT call_id, prompt FROM ai_call_log WHERE attempt = 1;

-- ai_calls: one row per call, without DISTINCT ON.
SELECT p.prompt, c.attempts, c.routes, c.outcome, c.model,
       replace(c.endpoint, s.url, 'SIM') AS endpoint, c.model_returned,
       c.prompt_tokens, c.completion_tokens, c.tag, c.role_name,
       c.last_error_class, c.last_code
FROM ai_calls c JOIN call_prompts p USING (call_id), sim s
ORDER BY c.started_at;

-- its times: the first attempt's start, the last attempt's end, and the
-- end-to-end latency between them
SELECT p.prompt,
       c.started_at = (SELECT min(started_at) FROM ai_call_log l WHERE l.call_id = c.call_id) AS starts_first,
       c.ended_at = (SELECT started_at + latency_ms * interval '1 ms' FROM ai_call_log l
                     WHERE l.call_id = c.call_id ORDER BY attempt DESC LIMIT 1) AS ends_last,
       abs(c.latency_ms - extract(epoch FROM c.ended_at - c.started_at) * 1000) < 0.001 AS latency_between,
       c.latency_ms >= (SELECT sum(latency_ms) FROM ai_call_log l WHERE l.call_id = c.call_id) - 0.001 AS latency_covers_attempts
FROM ai_calls c JOIN call_prompts p USING (call_id)
ORDER BY c.started_at;

-- README: call-level failure rate by tag over the last day
SELECT tag, count(*) AS calls,
       count(*) FILTER (WHERE outcome <> 'success') AS failed,
       round(100.0 * count(*) FILTER (WHERE outcome <> 'success') / count(*), 1) AS failed_pct
FROM ai_calls
WHERE started_at > now() - interval '1 day'
GROUP BY tag ORDER BY failed_pct DESC;

-- README: end-to-end latency of the calls answered over the last day
SELECT count(*) AS answered,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) >= min(latency_ms) AS p95_known
FROM ai_calls
WHERE started_at > now() - interval '1 day' AND outcome = 'success';

-- a call that is unfinished in the log (its last row says retry), a
-- cancelled one and one past its deadline
INSERT INTO ai_call_log (call_id, attempt, route_index, route_attempt, started_at, latency_ms, model,
                         endpoint, code, error_class, outcome, role_name, backend_pid)
VALUES ('00000000-0000-0000-0000-000000000001', 1, 0, 1, now(), 5, 'm', 'e', 502, 'http_5xx', 'retry', 'r', 1),
       ('00000000-0000-0000-0000-000000000002', 1, 0, 1, now(), 5, 'm', 'e', NULL, 'cancelled', 'failed', 'r', 1),
       ('00000000-0000-0000-0000-000000000003', 1, 0, 1, now(), 5, 'm', 'e', NULL, 'deadline', 'failed', 'r', 1);
SELECT call_id, attempts, outcome, model, last_error_class FROM ai_calls
WHERE call_id IN ('00000000-0000-0000-0000-000000000001', '00000000-0000-0000-0000-000000000002',
                  '00000000-0000-0000-0000-000000000003')
ORDER BY call_id;
DELETE FROM ai_call_log WHERE model = 'm';

-- ai_route_hourly: per endpoint, model and hour; errors count every error,
-- failures only the route's own (not a 400 about the request)
SELECT r.hour = (SELECT min(started_at) FROM ai_call_log) AS this_hour,
       replace(r.endpoint, s.url, 'SIM') AS endpoint, r.model, r.attempts, r.calls, r.errors,
       r.failures, r.failure_rate, r.p50_ms <= r.p95_ms AS p50_le_p95, r.prompt_tokens, r.completion_tokens
FROM ai_route_hourly r, sim s
ORDER BY r.model;

-- README: the worst routes by hour over the last 24 hours
SELECT model, attempts, failure_rate
FROM ai_route_hourly
WHERE hour > now() - interval '24 hours'
ORDER BY failure_rate DESC, attempts DESC, model LIMIT 10;

-- ai_token_usage: tokens per day (UTC) and model; cost only with a price
SELECT day = (SELECT (min(started_at) AT TIME ZONE 'UTC')::date FROM ai_call_log) AS today, model, calls, attempts,
       prompt_tokens, completion_tokens, cost, currency
FROM ai_token_usage ORDER BY model;
INSERT INTO ai_model_prices (model, input_per_million, output_per_million, currency)
VALUES ('ok', 2.50, 10.00, 'USD'), ('ok+tokens-5', 1000000, 2000000, 'EUR');
INSERT INTO ai_model_prices (model, input_per_million, output_per_million) VALUES ('neg', -1, 0);
-- README: tokens and cost by model per day over the last week
SELECT model, calls, prompt_tokens, completion_tokens, cost, currency
FROM ai_token_usage
WHERE day > current_date - 7
ORDER BY model;
SELECT model, prompt_tokens * 2.50 / 1e6 + completion_tokens * 10.00 / 1e6 = cost AS cost_checks
FROM ai_token_usage WHERE model = 'ok';

-- The filters of the README's questions reach the log's indexes: on
-- started_at and call_id through ai_calls, on the hour and day bins
-- through the grouped views.
SET enable_seqscan = off;
SET enable_bitmapscan = off;
CREATE FUNCTION plan_indexes(query text) RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
    line text;
BEGIN
    FOR line IN EXECUTE 'EXPLAIN (COSTS OFF) ' || query LOOP
        IF line ~ 'Scan' THEN
            RETURN NEXT regexp_replace(line, '^[ ->]*(.*Scan[^ ]*)( Backward)?( using [a-z_]+)? on ([a-z_]+).*$', '\1\3 on \4');
        END IF;
    END LOOP;
END;
$$;
SELECT plan_indexes($$SELECT tag, count(*) FROM ai_calls WHERE started_at > now() - interval '1 day' GROUP BY tag$$);
SELECT plan_indexes($$SELECT * FROM ai_calls WHERE call_id = '00000000-0000-0000-0000-000000000001'$$);
SELECT plan_indexes($$SELECT * FROM ai_route_hourly WHERE hour > now() - interval '24 hours'$$);
SELECT plan_indexes($$SELECT * FROM ai_token_usage WHERE day > current_date - 7$$);
RESET enable_seqscan;
RESET enable_bitmapscan;

-- ai_versions: this library's version, libcurl's (with its TLS library),
-- the server's
SELECT v.extension = e.extversion AS extension_version,
       v.libcurl ~ '^[0-9]+\.[0-9]+\.[0-9]+ ' AS libcurl_version,
       v.postgresql = 'PostgreSQL ' || current_setting('server_version') AS server_version
FROM ai_versions() v, pg_extension e WHERE e.extname = 'pg_ai_resilience';

-- The support bundle: a key set, extra headers and an endpoint with
-- user:password; the 401 echoes the key it was sent.
SELECT set_config('ai_resilience.endpoints',
                  (SELECT replace(url, 'http://', 'http://bob:hunter2-pw@') || '/v1' FROM sim), false) IS NOT NULL AS set;
SET ai_resilience.extra_headers = 'x-gateway-secret: hdr-secret-42';
SET ai_resilience.max_retries = 1;
SET ai_resilience.request_timeout = '45s';
TRUNCATE ai_call_log;
SELECT try_chat('ticket', ARRAY['status-401', 'flaky-1']) AS answer;
SELECT ai_flush_log() AS flushed;
SELECT call_id AS ticket_call FROM ai_call_log WHERE attempt = 1 \gset
-- its lines, with times, durations, versions and the port masked
-- (and the caller's application_name, which pg_regress sets)
SELECT regexp_replace(regexp_replace(regexp_replace(regexp_replace(regexp_replace(regexp_replace(regexp_replace(
           ai_support_bundle(:'ticket_call'),
           :'ticket_call', 'CALL_ID'),
           '[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:.]{12} UTC', 'TIME UTC', 'g'),
           '(, |\(|waited )[0-9.]+ ms', '\1N ms', 'g'),
           'versions: [^\n]*', 'versions: MASKED'),
           'application_name [^,]*', 'application_name MASKED'),
           '127\.0\.0\.1:[0-9]+', 'SIM', 'g'),
           'req-[0-9]+', 'req-N', 'g') AS bundle;
-- no secret in it: neither the key, nor a header's value, nor the
-- endpoint's credentials
SELECT position('sk-test-secret' IN b) AS key_at, position('hdr-secret' IN b) AS header_at,
       position('hunter2' IN b) AS password_at, position('bob' IN b) AS user_at
FROM ai_support_bundle(:'ticket_call') b;
SELECT count(*) AS log_rows_with_credentials FROM ai_call_log l
WHERE l::text ~ '(sk-test-secret|hdr-secret|hunter2|bob)';
RESET ai_resilience.extra_headers;
RESET ai_resilience.max_retries;
RESET ai_resilience.request_timeout;
SELECT use_gateways('v1');

-- an unknown call is an error, NULL gives NULL
\set VERBOSITY sqlstate
SELECT ai_support_bundle('00000000-0000-0000-0000-000000000000');
\set VERBOSITY default
SELECT ai_support_bundle('00000000-0000-0000-0000-000000000000');
SELECT ai_support_bundle(NULL) IS NULL AS null_for_null;

-- Privileges: nothing for PUBLIC; the views run with the reader's rights,
-- so granting a view without ai_call_log reads nothing.
SELECT c.relname, has_table_privilege('public', c.oid, 'SELECT') AS public_select
FROM pg_class c WHERE c.relname IN ('ai_calls', 'ai_route_hourly', 'ai_token_usage', 'ai_model_prices')
ORDER BY 1;
CREATE ROLE ai_analyst;
SET ROLE ai_analyst;
\set VERBOSITY sqlstate
SELECT count(*) FROM ai_calls;
\set VERBOSITY default
RESET ROLE;
GRANT SELECT ON ai_calls, ai_route_hourly, ai_token_usage, ai_model_prices TO ai_analyst;
GRANT EXECUTE ON FUNCTION ai_support_bundle(uuid), ai_versions() TO ai_analyst;
SET ROLE ai_analyst;
SELECT count(*) FROM ai_calls;
SELECT count(*) FROM ai_route_hourly;
SELECT count(*) FROM ai_token_usage;
SELECT ai_support_bundle(:'ticket_call') IS NOT NULL AS bundle;
RESET ROLE;
-- the README's grant: the log too
GRANT SELECT ON ai_call_log TO ai_analyst;
SET ROLE ai_analyst;
SELECT count(*) AS calls FROM ai_calls;
SELECT sum(attempts) AS attempts FROM ai_route_hourly;
SELECT sum(attempts) AS attempts FROM ai_token_usage;
SELECT ai_support_bundle(:'ticket_call') IS NOT NULL AS bundle;
-- prices are edited by the roles granted it
INSERT INTO ai_model_prices VALUES ('x', 1, 1, 'USD');
RESET ROLE;
GRANT INSERT, UPDATE, DELETE ON ai_model_prices TO ai_analyst;
SET ROLE ai_analyst;
INSERT INTO ai_model_prices VALUES ('x', 1, 1, 'USD');
UPDATE ai_model_prices SET output_per_million = 4 WHERE model = 'x';
SELECT * FROM ai_model_prices WHERE model = 'x';
RESET ROLE;
REVOKE ALL ON ai_calls, ai_route_hourly, ai_token_usage, ai_model_prices, ai_call_log FROM ai_analyst;
REVOKE ALL ON FUNCTION ai_support_bundle(uuid), ai_versions() FROM ai_analyst;
DROP ROLE ai_analyst;
DROP FUNCTION plan_indexes(text);
DROP VIEW call_prompts;
TRUNCATE ai_call_log, ai_model_prices;
