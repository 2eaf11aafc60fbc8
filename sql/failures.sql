-- Every failure class of the simulator, and calls where every route fails.
TRUNCATE ai_call_log;
SELECT use_gateways('v1');
SET client_min_messages = error;

-- client errors are never retried on the same route; each moves on
SELECT ai_chat('p', ARRAY['status-401', 'status-403', 'missing', 'status-404', 'context',
                          'status-400', 'contentpolicy', 'status-413', 'status-422', 'status-418'],
               on_error => 'null') IS NULL AS failed;
SELECT ai_flush_log() AS flushed;
SELECT * FROM attempts;

-- malformed answers are retried bad_response attempts, never a crash
TRUNCATE ai_call_log;
SET ai_resilience.max_retries = 1;
SELECT ai_chat('p', ARRAY['malformed', 'empty', 'wrongtype', 'nullcontent', 'cut'],
               on_error => 'null') IS NULL AS failed;
SELECT ai_flush_log() AS flushed;
SELECT attempt, model, code, error_class, outcome, error FROM ai_call_log ORDER BY id;

-- a response over max_response_bytes fails without retry on that route
TRUNCATE ai_call_log;
SET ai_resilience.max_response_bytes = '4kB';
SELECT ai_chat('p', ARRAY['bigreply-100000', 'ok']);
SELECT ai_flush_log() AS flushed;
SELECT attempt, model, code, error_class, outcome, error FROM ai_call_log ORDER BY id;
RESET ai_resilience.max_response_bytes;

-- a hanging gateway times out per attempt (request_timeout)
TRUNCATE ai_call_log;
SET ai_resilience.request_timeout = '200ms';
SELECT ai_chat('p', ARRAY['hang', 'ok']);
SELECT ai_flush_log() AS flushed;
SELECT * FROM attempts;
-- a 524 after a delay is a timeout with its code
TRUNCATE ai_call_log;
SELECT ai_chat('p', ARRAY['status-524+latency-30', 'ok']);
SELECT ai_flush_log() AS flushed;
SELECT * FROM attempts;
RESET ai_resilience.request_timeout;
RESET ai_resilience.max_retries;

-- every route fails: an error summing up the attempts (SQLSTATE RA001)
SET client_min_messages = notice;
SELECT try_chat('p', ARRAY['status-502', 'status-401']);
SET ai_resilience.request_timeout = '100ms';
SELECT try_chat('p', ARRAY['status-502', 'hang']);
RESET ai_resilience.request_timeout;
SELECT try_chat('p', ARRAY['status-403']);

-- on_error => 'null': NULL and a WARNING, and the rows stay (a gateway on
-- port 1 refuses connections and keeps the message free of a random port)
SELECT ai_flush_log() AS flushed;
TRUNCATE ai_call_log;
SET ai_resilience.endpoints = 'http://127.0.0.1:1/v1';
\set VERBOSITY terse
SELECT ai_chat('p', ARRAY['ok'], on_error => 'null') IS NULL AS is_null;
\set VERBOSITY default
SELECT ai_flush_log() AS flushed;
SELECT count(*) AS rows, array_agg(outcome ORDER BY id) AS outcomes FROM ai_call_log;
SELECT use_gateways('v1');

-- the key a gateway echoes back is redacted in the log and in errors (two
-- rows: the failed try_chat's row survives its rolled-back exception block)
TRUNCATE ai_call_log;
SELECT try_chat('p', ARRAY['status-401']);
SET client_min_messages = error;
SELECT ai_chat('p', ARRAY['status-401'], on_error => 'null') IS NULL AS failed;
SELECT ai_flush_log() AS flushed;
SELECT error FROM ai_call_log;
SELECT count(*) AS leaks FROM ai_call_log l
WHERE l::text LIKE '%sk-test-secret%';
