-- Demo: enrich a table through a failing gateway, then read the story from
-- ai_call_log.  AI_SIM_URL is the simulator, exported by demo.sh.
\getenv sim AI_SIM_URL
\pset footer off
CREATE EXTENSION pg_ai_resilience;

-- two gateways in front of the same models; two models in preference order
SELECT set_config('ai_resilience.endpoints',
                  :'sim' || '/gw-primary/v1,' || :'sim' || '/gw-secondary/v1', false) IS NOT NULL AS configured \gset
SET ai_resilience.api_key = 'sk-demo-not-a-real-key';
SET ai_resilience.max_retries = 1;
SET ai_resilience.backoff_base = '50ms';

CREATE TABLE products (id int PRIMARY KEY, description text, summary text);
INSERT INTO products (id, description)
SELECT i, 'Product ' || i || ': a ' ||
       (ARRAY['sturdy', 'light', 'waterproof', 'compact', 'quiet'])[1 + i % 5] || ' ' ||
       (ARRAY['backpack', 'lamp', 'kettle', 'chair', 'speaker', 'tent'])[1 + i % 6] ||
       ' with a ' || (ARRAY['two-year warranty', 'recycled frame', 'USB-C port', 'spare parts kit'])[1 + i % 4]
FROM generate_series(1, 40) i;

\echo
\echo '== UPDATE products SET summary = ai_chat(...) over 40 rows'
\timing on
UPDATE products
SET summary = ai_chat('Summarize in five words: ' || description,
                      ARRAY['gpt-main', 'gpt-backup'],
                      system_prompt => 'You write product catalog blurbs.',
                      max_tokens => 30);
\timing off

\echo
\echo '== the same 40 rows with ai_chat_batch_keyed: 16 requests in flight, each row with its own retries'
UPDATE products SET summary = NULL;
\timing on
UPDATE products p
SET summary = b.response
FROM (SELECT array_agg(id) AS ids,
             array_agg('Summarize in five words: ' || description) AS prompts
      FROM products) src,
     LATERAL ai_chat_batch_keyed(src.ids, src.prompts, ARRAY['gpt-main', 'gpt-backup'],
                                 system_prompt => 'You write product catalog blurbs.',
                                 max_tokens => 30) b
WHERE p.id = b.key;
\timing off

\echo
\echo '== every row got its answer'
SELECT count(*) AS rows, count(summary) AS summarized FROM products;
SELECT id, summary FROM products ORDER BY id LIMIT 3;

-- the log writer inserts attempts in its own transactions; wait for ours
SELECT ai_flush_log() AS flushed \gset

\echo
\echo '== what happened to the 80 calls (40 row by row, 40 in the batch): attempts per call'
SELECT attempts, count(*) AS calls
FROM (SELECT call_id, count(*) AS attempts FROM ai_call_log GROUP BY call_id) c
GROUP BY attempts ORDER BY attempts;

\echo
\echo '== every attempt by outcome and error class'
SELECT outcome, coalesce(error_class, '-') AS error_class, code, count(*) AS attempts,
       sum(backoff_ms) AS total_backoff_ms
FROM ai_call_log GROUP BY 1, 2, 3 ORDER BY 1, 4 DESC;

\echo
\echo '== by route (model @ endpoint): which route answered, latency'
SELECT model, regexp_replace(endpoint, '^.*/(gw-[a-z]+)/v1$', '\1') AS gateway,
       count(*) AS attempts, count(*) FILTER (WHERE outcome = 'success') AS answered,
       count(*) FILTER (WHERE error_class IS NOT NULL) AS failed,
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms)::numeric, 1) AS p50_ms,
       round(max(latency_ms)::numeric, 1) AS max_ms
FROM ai_call_log GROUP BY 1, 2 ORDER BY 1 DESC, 2 DESC;

\echo
\echo '== the longest call, attempt by attempt'
SELECT attempt, model, regexp_replace(endpoint, '^.*/(gw-[a-z]+)/v1$', '\1') AS gateway,
       code, coalesce(error_class, '-') AS error_class, outcome, retry_after_ms, backoff_ms,
       round(latency_ms::numeric, 1) AS latency_ms
FROM ai_call_log
WHERE call_id = (SELECT call_id FROM ai_call_log GROUP BY call_id ORDER BY count(*) DESC, min(id) LIMIT 1)
ORDER BY attempt;
