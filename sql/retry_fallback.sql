-- Retries on the same route, backoff, Retry-After, fallback across models
-- and endpoints, and the route order.
TRUNCATE ai_call_log;
SELECT use_gateways('v1');

-- the acceptance case: 3 attempts on the 502 model, then the ok model
SELECT ai_chat('hi', ARRAY['status-502', 'ok']);
SELECT ai_flush_log() AS flushed;
SELECT * FROM attempts;
SELECT count(DISTINCT call_id) AS calls FROM ai_call_log;

-- transient failures that clear: the same route answers on its third try
TRUNCATE ai_call_log;
SELECT ai_chat('flaky prompt', ARRAY['flaky-2', 'ok']);
SELECT ai_flush_log() AS flushed;
SELECT * FROM attempts;

-- every retryable status is retried max_retries times
TRUNCATE ai_call_log;
SELECT ai_chat('p', ARRAY['status-500', 'status-503', 'status-524', 'status-408', 'status-409', 'ok']);
SELECT ai_flush_log() AS flushed;
SELECT model, array_agg(code ORDER BY attempt) AS codes,
       array_agg(error_class ORDER BY attempt) AS classes,
       array_agg(outcome ORDER BY attempt) AS outcomes
FROM attempts GROUP BY model ORDER BY min(attempt);

-- max_retries = 0: fall back at once
TRUNCATE ai_call_log;
SET ai_resilience.max_retries = 0;
SELECT ai_chat('p', ARRAY['status-500', 'ok']);
SELECT ai_flush_log() AS flushed;
SELECT * FROM attempts;
RESET ai_resilience.max_retries;

-- x-should-retry: false is obeyed; x-should-retry: true retries a 400
TRUNCATE ai_call_log;
SELECT ai_chat('p', ARRAY['noretry', 'forceretry']);
SELECT ai_flush_log() AS flushed;
SELECT * FROM attempts;

-- retry-after-ms is honoured: the backoff is the server's wait
TRUNCATE ai_call_log;
SET ai_resilience.max_retries = 1;
SELECT ai_chat('p', ARRAY['ratelimitms-40', 'ok']);
SELECT ai_flush_log() AS flushed;
SELECT attempt, model, code, error_class, outcome, retry_after_ms, backoff_ms FROM ai_call_log ORDER BY id;
-- Retry-After in seconds, within retry_after_max
TRUNCATE ai_call_log;
SELECT ai_chat('p', ARRAY['ratelimit-1', 'ok']);
SELECT ai_flush_log() AS flushed;
SELECT attempt, model, code, error_class, outcome, retry_after_ms, backoff_ms FROM ai_call_log ORDER BY id;
RESET ai_resilience.max_retries;

-- a Retry-After beyond retry_after_max is not waited for: next route at once
TRUNCATE ai_call_log;
SELECT ai_chat('p', ARRAY['ratelimit-120', 'ok']);
SELECT ai_flush_log() AS flushed;
SELECT attempt, model, code, error_class, outcome, retry_after_ms, backoff_ms FROM ai_call_log ORDER BY id;
-- the same with an HTTP date
TRUNCATE ai_call_log;
SELECT ai_chat('p', ARRAY['ratelimitdate-300', 'ok']);
SELECT ai_flush_log() AS flushed;
SELECT attempt, model, code, outcome, retry_after_ms BETWEEN 298000 AND 300000 AS about_300s, backoff_ms
FROM ai_call_log ORDER BY id;
-- a plain 429 without Retry-After is retried with backoff
TRUNCATE ai_call_log;
SELECT ai_chat('p', ARRAY['status-429', 'ok']);
SELECT ai_flush_log() AS flushed;
SELECT * FROM attempts;

-- a billing 429 is not retried: it needs another route
TRUNCATE ai_call_log;
SELECT ai_chat('p', ARRAY['quota', 'ok']);
SELECT ai_flush_log() AS flushed;
SELECT * FROM attempts;

-- endpoint fallback: the first gateway is down (every answer 502)
TRUNCATE ai_call_log;
SELECT use_gateways('status-502/v1', 'gw2/v1');
SELECT ai_chat('p', ARRAY['ok']);
SELECT ai_flush_log() AS flushed;
SELECT * FROM attempts;

-- route order is model by model, each model on every endpoint in order
TRUNCATE ai_call_log;
SET ai_resilience.max_retries = 0;
SELECT use_gateways('status-401/v1', 'gw2/v1');
SELECT ai_chat('p', ARRAY['status-404', 'ok']);
SELECT ai_flush_log() AS flushed;
SELECT * FROM attempts;

-- a gateway that refuses connections is a retried connect error
TRUNCATE ai_call_log;
SET ai_resilience.max_retries = 1;
SELECT set_config('ai_resilience.endpoints',
                  'http://127.0.0.1:1/v1,' || (SELECT url FROM sim) || '/v1', false) IS NOT NULL AS set;
SELECT ai_chat('p', ARRAY['ok']);
SELECT ai_flush_log() AS flushed;
SELECT * FROM attempts;
SELECT error LIKE '%127.0.0.1%' AS error_names_host FROM ai_call_log WHERE code IS NULL LIMIT 1;
RESET ai_resilience.max_retries;

-- backoff doubles and stops at backoff_max; jitter takes up to 25 % off,
-- so with base 10 ms and max 70 ms the four waits fall in disjoint bands
TRUNCATE ai_call_log;
SELECT use_gateways('v1');
SET ai_resilience.max_retries = 4;
SET ai_resilience.backoff_base = '10ms';
SET ai_resilience.backoff_max = '70ms';
SELECT ai_chat('p', ARRAY['flaky-4', 'ok']);
SELECT ai_flush_log() AS flushed;
SELECT attempt, outcome,
       CASE WHEN backoff_ms BETWEEN 8 AND 10 THEN 'base'
            WHEN backoff_ms BETWEEN 15 AND 20 THEN '2x base'
            WHEN backoff_ms BETWEEN 30 AND 40 THEN '4x base'
            WHEN backoff_ms BETWEEN 53 AND 70 THEN 'max'
            ELSE backoff_ms::text END AS backoff
FROM ai_call_log ORDER BY id;
