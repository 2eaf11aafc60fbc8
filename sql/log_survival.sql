-- Log rows are written by the log writer, outside the caller's transaction:
-- they survive an ERROR, a ROLLBACK and a rollback to a savepoint.
SELECT ai_flush_log() AS flushed;
TRUNCATE ai_call_log;
SELECT use_gateways('v1');
SET ai_resilience.max_retries = 0;
\set VERBOSITY sqlstate

-- a statement ending in ERROR keeps its attempts
SELECT ai_chat('fails', ARRAY['status-401']);
SELECT ai_flush_log() AS flushed;
SELECT model, code, outcome FROM ai_call_log ORDER BY id;

-- an UPDATE over rows that fails at its fourth row keeps all four calls
TRUNCATE ai_call_log;
CREATE TABLE items (id int PRIMARY KEY, model text, summary text);
INSERT INTO items SELECT i, CASE WHEN i = 4 THEN 'status-403' ELSE 'ok' END
FROM generate_series(1, 6) i;
UPDATE items SET summary = ai_chat('item ' || id, ARRAY[model]);
SELECT count(*) FILTER (WHERE summary IS NOT NULL) AS summarized FROM items;
SELECT ai_flush_log() AS flushed;
SELECT count(*) AS attempts, count(*) FILTER (WHERE outcome = 'failed') AS failed
FROM ai_call_log;

\set VERBOSITY terse
-- an explicit ROLLBACK
TRUNCATE ai_call_log;
BEGIN;
SELECT ai_chat('rolled back', ARRAY['ok']);
ROLLBACK;
SELECT ai_flush_log() AS flushed;
SELECT model, outcome FROM ai_call_log;

-- ROLLBACK TO SAVEPOINT, and an error caught by an exception block
TRUNCATE ai_call_log;
BEGIN;
SAVEPOINT s;
SELECT ai_chat('to savepoint', ARRAY['status-500', 'ok']);
ROLLBACK TO SAVEPOINT s;
SELECT try_chat('caught', ARRAY['status-404']);
COMMIT;
SELECT ai_flush_log() AS flushed;
SELECT * FROM attempts;

-- ai_flush_log returns at once when everything is written; its timeout
-- must not be negative
SELECT ai_flush_log('0') AS flushed;
SELECT ai_flush_log('-1 s');
SELECT ai_flush_log(NULL) IS NULL AS null_timeout;

-- a long prompt is stored truncated to fit the queue's 2 kB records, at a
-- character boundary
TRUNCATE ai_call_log;
SET ai_resilience.log_prompts = on;
SELECT length(ai_chat(repeat('é', 5000), ARRAY['ok'])) > 0 AS answered;
SELECT ai_flush_log() AS flushed;
SELECT length(prompt) BETWEEN 100 AND 1000 AS truncated,
       prompt = repeat('é', length(prompt)) AS whole_characters
FROM ai_call_log;
RESET ai_resilience.log_prompts;

-- log_attempts = off writes nothing
TRUNCATE ai_call_log;
SET ai_resilience.log_attempts = off;
SELECT ai_chat('not logged', ARRAY['ok']);
SELECT ai_flush_log() AS flushed;
SELECT count(*) AS rows FROM ai_call_log;
RESET ai_resilience.log_attempts;

-- only a superuser may turn the log off
CREATE ROLE ai_log_user;
SET ROLE ai_log_user;
SET ai_resilience.log_attempts = off;
SET ai_resilience.log_queue_wait = 0;
-- and ai_log_stats is for monitoring roles
SELECT * FROM ai_log_stats;
RESET ROLE;
DROP ROLE ai_log_user;

-- ai_log_stats: one row of counters since server start
SELECT * FROM ai_log_stats() WHERE false;
SELECT queued >= written + lost AS consistent, written > 0 AS wrote,
       lost, in_queue, writers BETWEEN 0 AND 1 AS writers, last_error
FROM ai_log_stats;
DROP TABLE items;
