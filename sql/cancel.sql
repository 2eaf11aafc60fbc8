-- Waits answer statement_timeout and the deadline promptly, with the
-- standard SQLSTATE, and leave the connection pool usable.
SELECT use_gateways('v1');
\set VERBOSITY sqlstate

-- a hanging gateway: statement_timeout cancels the transfer (57014)
SELECT ai_flush_log() AS flushed;
TRUNCATE ai_call_log;
SET statement_timeout = '300ms';
SELECT clock_timestamp() AS t0 \gset
SELECT ai_chat('p', ARRAY['hang']);
SELECT clock_timestamp() - :'t0' < interval '2 s' AS prompt;
RESET statement_timeout;
-- the attempt cut by the cancel is logged, and survives the rollback
SELECT ai_flush_log() AS flushed;
SELECT model, code, error_class, outcome, latency_ms >= 250 AS waited FROM ai_call_log;
SET statement_timeout = '300ms';

-- a long backoff is cancelled too
SET ai_resilience.backoff_base = '30s';
SET ai_resilience.backoff_max = '30s';
SELECT clock_timestamp() AS t0 \gset
SELECT ai_chat('p', ARRAY['status-500']);
SELECT clock_timestamp() - :'t0' < interval '2 s' AS prompt;
-- and a Retry-After wait
SELECT clock_timestamp() AS t0 \gset
SELECT ai_chat('p', ARRAY['ratelimit-20']);
SELECT clock_timestamp() - :'t0' < interval '2 s' AS prompt;
RESET ai_resilience.backoff_base;
RESET ai_resilience.backoff_max;
RESET statement_timeout;

-- the pool still works after a cancelled transfer
\set VERBOSITY default
SELECT ai_chat('after cancel', ARRAY['ok']);

-- ai_resilience.deadline bounds the whole call (RA002)
SET ai_resilience.deadline = '300ms';
SELECT clock_timestamp() AS t0 \gset
SELECT try_chat('p', ARRAY['hang', 'hang']);
SELECT clock_timestamp() - :'t0' < interval '2 s' AS prompt;
-- a backoff that would pass the deadline is not taken: the next route is
SELECT ai_flush_log() AS flushed;
TRUNCATE ai_call_log;
SET ai_resilience.backoff_base = '10s';
SET ai_resilience.backoff_max = '10s';
SELECT ai_chat('p', ARRAY['status-500', 'ok']);
SELECT ai_flush_log() AS flushed;
SELECT * FROM attempts;
