-- ai_probe: the settings, then per endpoint its name, connection, TLS,
-- GET /models and the models listed; with chat => true one tiny chat per
-- endpoint and model.  Timings vary: only verdicts and texts are shown.
\set reset_journal '\\! curl -s -X POST "$AI_SIM_URL/journal/reset"'
\set load_journal 'TRUNCATE journal; \\copy journal FROM PROGRAM ''curl -s "$AI_SIM_URL/journal"'''
TRUNCATE ai_call_log;

-- The rows without timings or the simulator's port.
CREATE FUNCTION probe(models text[] DEFAULT NULL, chat boolean DEFAULT false)
RETURNS TABLE (endpoint text, model text, check_name text, verdict text,
               timed boolean, detail text, hint boolean)
LANGUAGE sql AS $$
    SELECT replace(p.endpoint, s.url, 'SIM'), p.model, p.check_name, p.verdict,
           p.elapsed_ms IS NOT NULL,
           regexp_replace(replace(p.detail, substr(s.url, 8), 'SIM'),
                          'connected to [0-9.]+', 'connected to IP'),
           p.hint IS NOT NULL
    FROM ai_probe(models, chat) p, sim s
$$;

-- A healthy endpoint: every check ok; 'missing' is listed by the simulator,
-- 'nosuch' is not (a warning: a gateway may accept names it does not list).
SELECT use_gateways('v1');
SET ai_resilience.extra_headers = 'x-probe: 1';
:reset_journal
SELECT * FROM probe(ARRAY['ok', 'nosuch']);
-- The GET carried the key and headers of a chat; nothing was sent to
-- chat/completions.
:load_journal
SELECT method, path, status, auth, x_headers FROM journal ORDER BY seq;
RESET ai_resilience.extra_headers;

-- ai_resilience.models is the default list.
SET ai_resilience.models = 'ok';
SELECT check_name, model, verdict FROM probe();
RESET ai_resilience.models;
-- Without any model, the endpoints are still checked.
SELECT check_name, model, verdict, detail FROM probe() WHERE check_name = 'settings';

-- A refused key (HTTP 401), a gateway without /models (404), one that
-- fails (500), and an empty list (every model is a warning): the checks
-- after a failure say why they are skipped.
SELECT use_gateways('status-401/v1', 'status-404/v1', 'status-500/v1', 'gw+emptylist/v1');
SELECT * FROM probe(ARRAY['ok']);

-- An endpoint whose port is closed, and one that never accepts (the
-- simulator's unreachable port, within ai_resilience.connect_timeout): the
-- connection fails and the rest is skipped; a name that does not resolve
-- fails at dns.
\set unreachable `curl -s "$AI_SIM_URL/unreachable-port"`
SET ai_resilience.connect_timeout = '300ms';
SELECT set_config('ai_resilience.endpoints',
                  'http://127.0.0.1:1/v1,http://127.0.0.1:' || :'unreachable' ||
                  '/v1,http://ai-probe-test.invalid/v1', false) IS NOT NULL AS set;
SELECT regexp_replace(endpoint, ':[0-9]{3,}/', ':PORT/') AS endpoint, model,
       check_name, verdict, hint, detail LIKE 'no connection within 300 ms%' AS timed_out
FROM probe(ARRAY['ok']);
RESET ai_resilience.connect_timeout;

-- A gateway that never answers: the GET ends at ai_resilience.request_timeout.
SELECT use_gateways('hang/v1');
SET ai_resilience.request_timeout = '300ms';
SELECT check_name, verdict, detail FROM probe(ARRAY['ok']) WHERE check_name IN ('connect', 'models');
RESET ai_resilience.request_timeout;
-- and at ai_resilience.deadline, when that comes first
SET ai_resilience.deadline = '400ms';
SELECT check_name, verdict, detail FROM probe(ARRAY['ok']) WHERE check_name = 'models';
RESET ai_resilience.deadline;
-- statement_timeout cancels the probe with the standard error (57014), and
-- the GET it cut short is logged as cancelled.  (The rows so far are
-- written first: the writer inserts outside this session.)
SELECT ai_flush_log() AS flushed;
TRUNCATE ai_call_log;
SET statement_timeout = '300ms';
\set VERBOSITY sqlstate
SELECT * FROM ai_probe(ARRAY['ok']);
\set VERBOSITY default
RESET statement_timeout;
SELECT ai_flush_log() AS flushed;
SELECT model, code, error_class, outcome, error FROM ai_call_log;

-- chat => true: one chat of max_tokens 1 per endpoint and model, through
-- the normal path (logged); a model the endpoint refuses fails its chat,
-- and one that fails (500) is tried once, not retried.
SELECT use_gateways('v1');
:reset_journal
SELECT * FROM probe(ARRAY['ok', 'missing', 'status-500'], true);
:load_journal
SELECT method, path, model, status FROM journal ORDER BY seq;

-- The probe's attempts are logged: a GET /models is a call of its own with
-- model '(models)', no tokens, outcome success or failed.
SELECT ai_flush_log() AS flushed;
TRUNCATE ai_call_log;
SELECT use_gateways('v1', 'status-401/v1');
SELECT count(*) AS rows FROM ai_probe(ARRAY['ok'], true);
SELECT ai_flush_log() AS flushed;
SELECT model, replace(endpoint, s.url, 'SIM') AS endpoint, code, error_class,
       outcome, streaming, prompt_tokens, completion_tokens, error
FROM ai_call_log, sim s ORDER BY id;
SELECT count(DISTINCT call_id) AS calls FROM ai_call_log;

-- Settings that cannot work together: a SET that makes them misfit warns at
-- once, and ai_probe reports it and probes nothing.
SELECT use_gateways('v1', 'gw2/v1', 'gw3/v1');
SET ai_resilience.api_key = 'sk-first-0123456789,sk-second-0123456789';
SELECT * FROM probe(ARRAY['ok']);
-- a key for every endpoint fixes it, without a warning
SET ai_resilience.api_key = 'sk-first-0123456789,sk-second-0123456789,sk-third-0123456789';
SELECT check_name, verdict FROM probe(ARRAY['ok']) WHERE check_name = 'settings';
-- a change of the endpoints (set_config too) warns the same way
SELECT use_gateways('v1', 'gw2/v1');
SET ai_resilience.api_key = 'sk-first-0123456789,sk-second-0123456789';
-- a header line for an endpoint that is not listed
SET ai_resilience.extra_headers = '3> x-third: 1';
SELECT check_name, verdict, detail FROM probe(ARRAY['ok']) WHERE check_name = 'settings';
RESET ai_resilience.extra_headers;
RESET ai_resilience.api_key;

-- Not for PUBLIC: it shows the endpoints and may spend tokens.
CREATE ROLE ai_probe_user;
SET ROLE ai_probe_user;
SELECT * FROM ai_probe();
RESET ROLE;
DROP ROLE ai_probe_user;
