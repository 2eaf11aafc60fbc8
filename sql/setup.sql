-- Shared setup for the regression suite.  Every test file runs in its own
-- session, so settings are stored on the database.  AI_SIM_URL is the
-- running simulator (http://127.0.0.1:PORT), exported by the test runner.
\getenv sim AI_SIM_URL
SELECT current_database() AS db \gset

CREATE EXTENSION pg_ai_resilience;

ALTER DATABASE :"db" SET ai_resilience.api_key = 'sk-test-secret-0123456789';
ALTER DATABASE :"db" SET ai_resilience.backoff_base = '2ms';
ALTER DATABASE :"db" SET ai_resilience.backoff_max = '10ms';
-- Route health is shared by every session: the tests that repeat failing
-- routes expect every attempt; route_health.sql turns it on.
ALTER DATABASE :"db" SET ai_resilience.breaker = off;

-- The simulator's address, for tests to build endpoints from.
CREATE TABLE sim (url text NOT NULL);
INSERT INTO sim VALUES (:'sim');

-- Point ai_resilience.endpoints at simulator prefixes, e.g. use_gateways('v1').
CREATE FUNCTION use_gateways(VARIADIC paths text[]) RETURNS void
LANGUAGE sql AS $$
    SELECT set_config('ai_resilience.endpoints',
                      (SELECT string_agg(s.url || '/' || p, ',') FROM sim s, unnest(paths) p),
                      false);
$$;

-- The attempts of the log, without timings, ids or the simulator's port.
CREATE VIEW attempts AS
SELECT l.attempt, l.route_index AS route, l.route_attempt AS try, l.model,
       replace(l.endpoint, s.url, 'SIM') AS endpoint, l.code, l.error_class,
       l.outcome, l.backoff_ms IS NOT NULL AS waited, l.retry_after_ms
FROM ai_call_log l, sim s
ORDER BY l.id;

-- Run ai_chat and show its result or its error (SQLSTATE, message and
-- detail), with the simulator's port and the call's random call_id removed
-- (attribution.sql checks the call_id).  The failed call's log rows stay:
-- the log writer inserts them outside this transaction.
CREATE FUNCTION try_chat(prompt text, models text[]) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    detail text;
BEGIN
    RETURN ai_chat(prompt, models);
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
    detail = regexp_replace(detail, '^call_id [0-9a-f-]{36}', 'call_id <call_id>');
    RETURN replace('ERROR ' || SQLSTATE || ': ' || SQLERRM ||
                   coalesce(' (' || nullif(detail, '') || ')', ''),
                   (SELECT substr(url, 8) FROM sim), 'SIM');
END;
$$;

-- What the simulator received, loaded by load_journal.
CREATE TABLE journal (
    seq integer, prefix text, method text, path text, model text,
    attempt integer, status integer, stream boolean, body_bytes integer,
    conn integer, auth text, x_headers text
);
