-- Many prompts from one statement, each with its own retries and fallback.
-- A prompt starting with "sim:<behaviour> " picks its own behaviour in the
-- simulator, so one batch can mix answers, failures and latencies.
SELECT ai_flush_log() AS flushed;
TRUNCATE ai_call_log;
SELECT use_gateways('v1');
SET ai_resilience.max_concurrency = 4;
SET ai_resilience.log_prompts = on;

-- rows come in the prompts' order although later prompts finish first
SELECT ord, response, attempts, error
FROM ai_chat_batch(ARRAY['sim:ok+latency-150 a', 'b', 'sim:ok+latency-60 c', 'd', 'e'], ARRAY['ok']);
-- the log is in completion order: the slow prompts finished last
SELECT ai_flush_log() AS flushed;
SELECT prompt FROM ai_call_log ORDER BY id DESC LIMIT 2;

-- more prompts than max_concurrency; every row in order
SELECT count(*) AS rows, bool_and(response = 'echo: p' || ord) AS answers_match,
       bool_and(ord = n) AS in_order
FROM (SELECT b.*, row_number() OVER () AS n
      FROM ai_chat_batch(ARRAY(SELECT 'p' || i FROM generate_series(1, 50) i), ARRAY['ok']) b) s;

-- the batch really runs max_concurrency requests at once: 8 prompts of
-- 200 ms each take about 400 ms over 4 connections, not 1600 ms
\! curl -s -X POST "$AI_SIM_URL/journal/reset"
SELECT clock_timestamp() AS t0 \gset
SELECT count(*) FROM ai_chat_batch(ARRAY(SELECT 'sim:ok+latency-200 q' || i FROM generate_series(1, 8) i), ARRAY['ok']);
SELECT clock_timestamp() - :'t0' < interval '1200 ms' AS concurrent;
TRUNCATE journal;
\copy journal FROM PROGRAM 'curl -s "$AI_SIM_URL/journal"'
SELECT count(*) AS requests, count(DISTINCT conn) AS connections FROM journal;

-- a slow prompt holds up no other: the 60 prompts after it finish first,
-- more than the 8 x max_concurrency rows kept in memory, and the rows still
-- come in order (those finished too far ahead wait in a sort)
SELECT ai_flush_log() AS flushed;
TRUNCATE ai_call_log;
SET ai_resilience.max_concurrency = 2;
SELECT count(*) AS rows, bool_and(ord = n) AS in_order,
       bool_and(response = 'echo: ' || CASE WHEN ord = 1 THEN 'sim:ok+latency-400 first' ELSE 'q' || (ord - 1) END) AS answers_match
FROM (SELECT b.*, row_number() OVER () AS n
      FROM ai_chat_batch(ARRAY['sim:ok+latency-400 first'] || ARRAY(SELECT 'q' || i FROM generate_series(1, 60) i),
                         ARRAY['ok']) b) s;
SELECT ai_flush_log() AS flushed;
SELECT prompt AS finished_last FROM ai_call_log ORDER BY id DESC LIMIT 1;
SET ai_resilience.max_concurrency = 4;

-- NULL prompts behind a slow one: the rows they give at once wait in the
-- ordering, whose memory must outlive the call that handed them out (this
-- crashed the backend when the overflow sort lived in that call's memory)
SELECT ai_flush_log() AS flushed;
TRUNCATE ai_call_log;
SET ai_resilience.max_concurrency = 2;
SELECT count(*) AS rows, count(response) AS answered, bool_and(ord = n) AS in_order,
       count(*) FILTER (WHERE call_id IS NULL AND attempts = 0 AND error IS NULL) AS null_rows
FROM (SELECT b.*, row_number() OVER () AS n
      FROM ai_chat_batch(ARRAY['sim:ok+latency-300 slow'] || array_fill(NULL::text, ARRAY[300]),
                         ARRAY['ok']) b) s;
-- the same with answers among the NULLs, and keys
SELECT key, response
FROM ai_chat_batch_keyed(ARRAY(SELECT i * 10 FROM generate_series(1, 304) i),
                         ARRAY['sim:ok+latency-300 slow', NULL, 'x'] || array_fill(NULL::text, ARRAY[300]) || ARRAY['y'],
                         ARRAY['ok'])
WHERE response IS NOT NULL OR key IN (20, 3030);
-- only NULLs: every row at once, no call
SELECT count(*) AS rows, count(call_id) AS calls, sum(attempts) AS attempts
FROM ai_chat_batch(array_fill(NULL::text, ARRAY[1000]), ARRAY['ok']);
-- a huge array: 200,000 NULLs, then answers that finish before the slow
-- one ahead of them; with a small work_mem the waiting rows spill to disk
SET work_mem = '64kB';
SELECT count(*) AS rows, count(response) AS answered, bool_and(ord = n) AS in_order,
       bool_and(response = 'echo: p' || (ord - 200001)) FILTER (WHERE ord > 200001) AS answers_match
FROM (SELECT b.*, row_number() OVER () AS n
      FROM ai_chat_batch(array_fill(NULL::text, ARRAY[200000]) || ARRAY['sim:ok+latency-300 slow'] ||
                         ARRAY(SELECT 'p' || i FROM generate_series(1, 300) i), ARRAY['ok']) b) s;
-- rows of 8 kB fill the ring's work_mem before its 16 places: the rest wait in the sort
SELECT count(*) AS rows, bool_and(ord = n) AS in_order, min(length(response)) AS shortest,
       bool_and(response LIKE 'echo: ' || CASE WHEN ord = 1 THEN 'sim:bigreply-8192+latency-300 slow' ELSE 'q' || ord END || ' %')
         AS answers_match
FROM (SELECT b.*, row_number() OVER () AS n
      FROM ai_chat_batch(ARRAY['sim:bigreply-8192+latency-300 slow'] || ARRAY(SELECT 'q' || i FROM generate_series(2, 60) i),
                         ARRAY['bigreply-8192']) b) s;
RESET work_mem;
SELECT ai_flush_log() AS flushed;
SELECT count(*) AS attempts FROM ai_call_log;
SET ai_resilience.max_concurrency = 4;

-- an empty array: no rows, no call
SELECT ai_flush_log() AS flushed;
TRUNCATE ai_call_log;
SELECT count(*) FROM ai_chat_batch(ARRAY[]::text[], ARRAY['ok']);
-- NULL prompts: a NULL row without a call
SELECT ord, response, call_id IS NULL AS no_call, attempts, error
FROM ai_chat_batch(ARRAY['x', NULL, 'y', NULL], ARRAY['ok']);
SELECT ai_flush_log() AS flushed;
SELECT count(*) AS attempts FROM ai_call_log;

-- mixed failures: NULL exactly where a prompt failed, one WARNING for the
-- batch, and each prompt's own attempts in the log
SELECT ai_flush_log() AS flushed;
TRUNCATE ai_call_log;
SET ai_resilience.max_retries = 1;
SELECT ord, response, attempts, regexp_replace(error, '127\.0\.0\.1:[0-9]+', 'SIM', 'g') AS error
FROM ai_chat_batch(ARRAY['fine 1', 'sim:status-500 broken', 'sim:flaky-1 recovers',
                         'sim:status-401 denied', 'fine 2'], ARRAY['ok']);
SELECT ai_flush_log() AS flushed;
SELECT prompt, array_agg(code ORDER BY attempt) AS codes, array_agg(outcome ORDER BY attempt) AS outcomes,
       count(DISTINCT call_id) AS calls
FROM ai_call_log GROUP BY prompt ORDER BY prompt;

-- fallback per prompt: a failing prompt moves to the next model on its own
SELECT ai_flush_log() AS flushed;
TRUNCATE ai_call_log;
SELECT ord, response FROM ai_chat_batch(ARRAY['one', 'two'], ARRAY['status-503', 'ok']);
SELECT ai_flush_log() AS flushed;
SELECT model, count(*) AS attempts FROM ai_call_log GROUP BY model ORDER BY model;
RESET ai_resilience.max_retries;

-- on_error => 'raise': the first failure stops the whole batch
\set VERBOSITY sqlstate
SELECT * FROM ai_chat_batch(ARRAY['a', 'sim:status-403 b', 'c'], ARRAY['ok'], on_error => 'raise');
\set VERBOSITY default

-- the keyed form joins results back to rows: UPDATE ... FROM
CREATE TABLE docs (id bigint PRIMARY KEY, body text, summary text);
INSERT INTO docs SELECT i, CASE WHEN i % 5 = 0 THEN NULL ELSE 'doc ' || i END FROM generate_series(1, 20) i;
UPDATE docs d SET summary = b.response
FROM (SELECT array_agg(id) AS ids, array_agg(body) AS bodies FROM docs) src,
     LATERAL ai_chat_batch_keyed(src.ids, src.bodies, ARRAY['ok']) b
WHERE d.id = b.key;
SELECT count(*) FILTER (WHERE summary = 'echo: ' || body) AS answered,
       count(*) FILTER (WHERE body IS NULL AND summary IS NULL) AS null_bodies_untouched
FROM docs;
-- and INSERT ... SELECT
CREATE TABLE doc_summaries (doc_id bigint, summary text);
INSERT INTO doc_summaries (doc_id, summary)
SELECT b.key, b.response
FROM (SELECT array_agg(id) AS ids, array_agg(body) AS bodies FROM docs WHERE body IS NOT NULL) src,
     LATERAL ai_chat_batch_keyed(src.ids, src.bodies, ARRAY['ok']) b;
SELECT count(*), bool_and(s.summary = 'echo: ' || d.body) AS matched
FROM doc_summaries s JOIN docs d ON d.id = s.doc_id;
-- text keys
SELECT key, response FROM ai_chat_batch_keyed(ARRAY['k1', 'k2'], ARRAY['a', 'b'], ARRAY['ok']);
-- keys and prompts must pair up
SELECT * FROM ai_chat_batch_keyed(ARRAY[1, 2], ARRAY['a'], ARRAY['ok']);
DROP TABLE docs, doc_summaries;

-- progress NOTICEs every 5 %
SET ai_resilience.progress = on;
SELECT count(*) FROM ai_chat_batch(ARRAY(SELECT 'p' || i FROM generate_series(1, 20) i), ARRAY['ok']);
RESET ai_resilience.progress;

-- one bad prompt refuses the whole batch before any call
SELECT ai_flush_log() AS flushed;
TRUNCATE ai_call_log;
SELECT * FROM ai_chat_batch(ARRAY['fine', ''], ARRAY['ok']);
SET ai_resilience.max_prompt_bytes = 8;
SELECT * FROM ai_chat_batch(ARRAY['fine', 'far too long'], ARRAY['ok']);
RESET ai_resilience.max_prompt_bytes;
SELECT * FROM ai_chat_batch(ARRAY['fine'], ARRAY[]::text[]);
SELECT ai_flush_log() AS flushed;
SELECT count(*) AS attempts FROM ai_call_log;

-- statement_timeout stops everything in flight promptly (57014) and the
-- pool is usable afterwards
SET statement_timeout = '300ms';
\set VERBOSITY sqlstate
SELECT clock_timestamp() AS t0 \gset
SELECT count(*) FROM ai_chat_batch(ARRAY['sim:hang a', 'sim:hang b', 'c', 'sim:hang d', 'e', 'f'], ARRAY['ok']);
\set VERBOSITY default
RESET statement_timeout;
SELECT clock_timestamp() - :'t0' < interval '2 s' AS prompt;
SELECT ord, response FROM ai_chat_batch(ARRAY['after', 'cancel'], ARRAY['ok']);
RESET ai_resilience.log_prompts;
