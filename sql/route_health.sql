-- Route health (issue 10): a circuit breaker per route and per endpoint,
-- shared by every session.  setup.sql turns it off for the other tests.
TRUNCATE ai_call_log;
TRUNCATE ai_route_events;
SELECT clock_timestamp() AS t0 \gset
SET ai_resilience.breaker = on;
-- the retry budget is tested on its own at the end
SET ai_resilience.retry_budget = -1;
SELECT use_gateways('v1');

-- The breakers, without times or the simulator's port.
CREATE FUNCTION health(pattern text) RETURNS TABLE (
    endpoint text, model text, state text, failures integer, times_opened bigint,
    last_class text, last_code integer, opened boolean, probe_in_s integer,
    succeeded boolean)
LANGUAGE sql AS $$
    SELECT replace(h.endpoint, s.url, 'SIM'), h.model, h.state,
           h.consecutive_failures, h.times_opened, h.last_error_class,
           h.last_error_code, h.opened_at IS NOT NULL,
           round(extract(epoch FROM h.next_probe_at - h.opened_at))::integer,
           h.last_success_at IS NOT NULL
    FROM ai_route_health h, sim s
    WHERE h.model LIKE pattern OR (h.model IS NULL AND pattern = 'endpoint')
    ORDER BY 1, 2;
$$;

-- Run ai_chat and show its result or its error, without times or the port.
CREATE FUNCTION try_chat_at(prompt text, models text[]) RETURNS text
LANGUAGE sql AS $$
    SELECT regexp_replace(try_chat(prompt, models),
                          '\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?[+-]\d\d', 'T', 'g');
$$;

-- The routes an attempt's call skipped just before it, without times or the port.
CREATE VIEW skipped AS
SELECT l.attempt, l.model,
       regexp_replace(replace(l.skipped_routes, s.url, 'SIM'),
                      '\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?[+-]\d\d', 'T', 'g') AS skipped_routes
FROM ai_call_log l, sim s
ORDER BY l.id;

-- three consecutive 502s open the route; the call falls back as before
SELECT try_chat_at('a', ARRAY['status-502+rh', 'ok']);
SELECT * FROM health('%+rh');
-- connected and answered: the endpoint itself is healthy
SELECT state, failures, succeeded FROM health('endpoint') WHERE endpoint = 'SIM/v1';

-- the next call skips the open route without an attempt
SELECT try_chat_at('b', ARRAY['status-502+rh', 'ok']);
SELECT ai_flush_log() AS flushed;
SELECT model, count(*) FROM attempts GROUP BY model ORDER BY model;
-- its one attempt row names the route it skipped, and its state
SELECT * FROM skipped;

-- every route open: the call fails at once with RA003, naming each route
SELECT try_chat_at('c', ARRAY['status-502+rh']);
SELECT try_chat_at('c', ARRAY['status-502+rh', 'status-502+rh']);
SELECT ai_flush_log() AS flushed;
SELECT model, count(*) FROM attempts GROUP BY model ORDER BY model;
-- with on_error => 'null' it returns NULL (and a WARNING, not shown: it has a time)
SET client_min_messages = error;
SELECT ai_chat('d', ARRAY['status-502+rh'], on_error => 'null') IS NULL AS is_null;
RESET client_min_messages;

-- a route that failed after some attempts: RA001, the open route in the summary
SELECT try_chat_at('e', ARRAY['status-503+rh', 'status-502+rh']);

-- skipped_routes keeps at most 512 bytes: six open routes with long names
SELECT count(ai_route_set((SELECT url FROM sim) || '/v1', repeat('x', 100) || i || '+long', true, '1h'))
FROM generate_series(1, 6) i;
SELECT try_chat_at('u', ARRAY(SELECT repeat('x', 100) || i || '+long' FROM generate_series(1, 6) i) || 'ok'::text);
SELECT ai_flush_log() AS flushed;
SELECT model, octet_length(skipped_routes) FROM ai_call_log WHERE skipped_routes LIKE 'xxx%';

-- closed by hand, the route is tried again; opened by hand, it is skipped
SELECT ai_route_set((SELECT url FROM sim) || '/v1', 'status-502+rh', false);
SELECT * FROM health('status-502+rh');
SELECT ai_flush_log() AS flushed;
TRUNCATE ai_call_log;
SELECT try_chat_at('f', ARRAY['status-502+rh', 'ok']);
SELECT ai_route_set((SELECT url FROM sim) || '/v1', 'ok+rh', true, '1h');
SELECT try_chat_at('g', ARRAY['ok+rh', 'ok']);
SELECT ai_flush_log() AS flushed;
SELECT model, count(*) FROM attempts GROUP BY model ORDER BY model;
SELECT model, state, probe_in_s FROM health('ok+rh');
SELECT ai_route_set((SELECT url FROM sim) || '/v1', 'ok+rh', false);
SELECT try_chat_at('h', ARRAY['ok+rh']);

-- errors about the request do not count: 400, context length, content policy
SELECT try_chat_at('i', ARRAY['status-400+rh']) IS NOT NULL AS failed FROM generate_series(1, 4);
SELECT try_chat_at('i', ARRAY['context+rh']) IS NOT NULL AS failed FROM generate_series(1, 4);
SELECT model, state, failures FROM health('%') WHERE model IN ('status-400+rh', 'context+rh');

-- 401 and 404 do: a wrong key or model will not fix itself in seconds
SELECT try_chat_at('j', ARRAY['status-401+rh']) IS NOT NULL FROM generate_series(1, 3);
SELECT model, state, failures, last_code FROM health('status-401+rh');

-- a 429 with Retry-After opens the route at once, until then
SET ai_resilience.retry_after_max = '1s';
SELECT try_chat_at('k', ARRAY['ratelimit-30+rh', 'ok']);
SELECT model, state, failures, probe_in_s FROM health('ratelimit-30+rh');
RESET ai_resilience.retry_after_max;

-- failures between successes: the failure rate (50 % of at least 10
-- attempts in the window) opens the route, never 3 in a row.  flaky-1
-- fails each new prompt's first attempt, and its retry succeeds.
SELECT try_chat_at('q' || i, ARRAY['flaky-1+rate', 'ok']) FROM generate_series(1, 6) i;
SELECT model, state, consecutive_failures, window_requests, window_failures
FROM ai_route_health WHERE model = 'flaky-1+rate';

-- connect failures open the endpoint: every route of it is skipped
SELECT set_config('ai_resilience.endpoints',
                  'http://127.0.0.1:1/v1,' || (SELECT url FROM sim) || '/v1', false) IS NOT NULL AS set;
SELECT ai_flush_log() AS flushed;
TRUNCATE ai_call_log;
SELECT try_chat_at('l', ARRAY['ok+rha', 'ok+rhb']);
SELECT endpoint, model, state, failures, last_class FROM health('endpoint')
WHERE endpoint LIKE '%:1/v1';
SELECT try_chat_at('m', ARRAY['ok+rhb', 'ok+rha']);
SELECT ai_flush_log() AS flushed;
SELECT attempt, route, model, endpoint, error_class, outcome FROM attempts;
-- the endpoint's open state is named for each of its routes skipped
SELECT * FROM skipped;

-- a long model name is kept cut on a character boundary, and found again
SELECT try_chat_at('t' || i, ARRAY[repeat('é', 200)]) IS NOT NULL FROM generate_series(1, 2) i;
SELECT octet_length(model), char_length(model), window_requests
FROM ai_route_health WHERE model LIKE 'é%';

-- off: every route is tried, open or not, and nothing is counted
SET ai_resilience.breaker = off;
SELECT use_gateways('v1');
SELECT ai_flush_log() AS flushed;
TRUNCATE ai_call_log;
SELECT try_chat_at('n', ARRAY['status-502+rh', 'ok']);
SELECT ai_flush_log() AS flushed;
SELECT model, count(*) FROM attempts GROUP BY model ORDER BY model;
SELECT model, failures FROM health('status-502+rh');
SET ai_resilience.breaker = on;

-- the retry budget: past it, a transient error falls back at once.  A fresh
-- endpoint, a budget of 0 % and a floor of 2 retries per window.
SELECT use_gateways('budget/v1');
SET ai_resilience.retry_budget = 0;
SET ai_resilience.retry_budget_min = 2;
SET ai_resilience.breaker_failures = 10;
SELECT ai_flush_log() AS flushed;
TRUNCATE ai_call_log;
SELECT try_chat_at('o', ARRAY['status-500+budget', 'ok']);
SELECT try_chat_at('p', ARRAY['status-500+budget', 'ok']);
SELECT ai_flush_log() AS flushed;
SELECT attempt, route, try, model, code, outcome FROM attempts;
SELECT model, window_requests, window_failures, window_retries
FROM ai_route_health WHERE endpoint LIKE '%/budget/v1' ORDER BY model NULLS FIRST;
RESET ai_resilience.retry_budget;
RESET ai_resilience.retry_budget_min;
RESET ai_resilience.breaker_failures;

-- every change of state, once, in order: why, the counts, the failure
SELECT replace(endpoint, (SELECT url FROM sim), 'SIM') AS endpoint, model, state, reason,
       consecutive_failures AS failures, window_requests AS requests,
       window_failures AS failed, error_class, error_code
FROM ai_route_history
WHERE model IN ('status-502+rh', 'ok+rh', 'status-401+rh', 'ratelimit-30+rh', 'flaky-1+rate')
   OR (model IS NULL AND endpoint LIKE '%:1/v1');

-- ai_route_events has the same changes, each once, in order, with the
-- state each left
SELECT ai_flush_log() AS flushed;
SELECT replace(endpoint, (SELECT url FROM sim), 'SIM') AS endpoint, model, from_state,
       to_state, reason, consecutive_failures AS failures, window_requests AS requests,
       window_failures AS failed, next_probe_at IS NOT NULL AS probe_at, error_class,
       error_code, backend_pid = pg_backend_pid() AS this_backend
FROM ai_route_events
WHERE model IN ('status-502+rh', 'ok+rh', 'status-401+rh', 'ratelimit-30+rh', 'flaky-1+rate')
   OR (model IS NULL AND endpoint LIKE '%:1/v1')
ORDER BY id;
-- and every change this test made, none left out
SELECT (SELECT count(*) FROM ai_route_events) =
       (SELECT count(*) FROM ai_route_history WHERE at >= :'t0') AS same_count;

-- the history keeps the last 1024 changes, oldest first
SELECT count(ai_route_set((SELECT url FROM sim) || '/v1', 'ring+rh', i % 2 = 1))
FROM generate_series(1, 1100) i;
SELECT count(*), count(*) FILTER (WHERE model = 'ring+rh') AS ring,
       (SELECT state FROM ai_route_history LIMIT 1) AS first,
       (SELECT state FROM ai_route_history OFFSET 1023) AS last
FROM ai_route_history;
-- the table keeps them all
SELECT ai_flush_log() AS flushed;
SELECT count(*) FROM ai_route_events WHERE model = 'ring+rh';

-- monitoring roles may read the health, nobody else; opening is not public
SELECT has_function_privilege('pg_read_all_stats', 'ai_route_health()', 'execute') AS stats_reads,
       has_function_privilege('public', 'ai_route_health()', 'execute') AS public_reads,
       has_function_privilege('pg_read_all_stats', 'ai_route_history()', 'execute') AS stats_history,
       has_function_privilege('public', 'ai_route_history()', 'execute') AS public_history,
       has_function_privilege('public', 'ai_route_set(text, text, boolean, interval)', 'execute') AS public_sets,
       has_table_privilege('pg_read_all_stats', 'ai_route_events', 'select') AS stats_events,
       has_table_privilege('public', 'ai_route_events', 'select') AS public_events;
