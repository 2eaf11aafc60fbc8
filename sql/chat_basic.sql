-- A plain successful call, its log row, and what reached the gateway.
\set reset_journal '\\! curl -s -X POST "$AI_SIM_URL/journal/reset"'
\set load_journal 'TRUNCATE journal; \\copy journal FROM PROGRAM ''curl -s "$AI_SIM_URL/journal"'''
TRUNCATE ai_call_log;
:reset_journal
SELECT use_gateways('v1');

SELECT ai_chat('Summarize: the cat sat on the mat', ARRAY['ok']);

-- one attempt, one row; usage and request id from the response
SELECT ai_flush_log() AS flushed;
SELECT attempt, route_index, route_attempt, model, code, error_class, outcome,
       streaming, backoff_ms, retry_after_ms, error, model_returned,
       finish_reason, prompt_tokens, completion_tokens,
       request_id LIKE 'req-%' AS has_request_id, role_name = current_user AS role_ok,
       backend_pid = pg_backend_pid() AS pid_ok, latency_ms > 0 AS timed,
       prompt IS NULL AS prompt_not_logged
FROM ai_call_log;

-- the key went out as a bearer token; the simulator saw one request
:load_journal
SELECT prefix, method, path, model, attempt, status, stream, auth FROM journal;

-- system prompt, max_tokens and temperature reach the request: the
-- simulator counts the system prompt's words in prompt_tokens
TRUNCATE ai_call_log;
SELECT ai_chat('one two three', ARRAY['ok'], system_prompt => 'be brief please',
               max_tokens => 50, temperature => 0.2);
SELECT ai_flush_log() AS flushed;
SELECT prompt_tokens, completion_tokens FROM ai_call_log;

-- NULL models means ai_resilience.models, in order
TRUNCATE ai_call_log;
SET ai_resilience.models = 'status-404, ok';
SELECT ai_chat('hello');
SELECT ai_flush_log() AS flushed;
SELECT * FROM attempts;
RESET ai_resilience.models;

-- a NULL prompt is NULL, without a call
TRUNCATE ai_call_log;
SELECT ai_chat(NULL, ARRAY['ok']) IS NULL AS is_null;
SELECT ai_flush_log() AS flushed;
SELECT count(*) FROM ai_call_log;

-- an UPDATE over rows, NULL bodies included
CREATE TABLE items (id int PRIMARY KEY, body text, summary text);
INSERT INTO items VALUES (1, 'first'), (2, NULL), (3, 'third');
UPDATE items SET summary = ai_chat(body, ARRAY['ok']);
SELECT id, summary FROM items ORDER BY id;
SELECT ai_flush_log() AS flushed;
SELECT count(*) AS attempts, count(DISTINCT call_id) AS calls FROM ai_call_log;

-- log_prompts stores the prompt
TRUNCATE ai_call_log;
SET ai_resilience.log_prompts = on;
SELECT ai_chat('remember me', ARRAY['ok']);
SELECT ai_flush_log() AS flushed;
SELECT prompt FROM ai_call_log;
RESET ai_resilience.log_prompts;

-- multibyte text round-trips
SELECT ai_chat('héllo wörld 日本語 😀', ARRAY['ok']);
DROP TABLE items;
SELECT ai_flush_log() AS flushed;
