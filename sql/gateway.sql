-- Running behind a gateway (README "Running behind a gateway"): extra
-- headers, errors rewritten by LiteLLM and Portkey, their request ids.
\set reset_journal '\\! curl -s -X POST "$AI_SIM_URL/journal/reset"'
\set load_journal 'TRUNCATE journal; \\copy journal FROM PROGRAM ''curl -s "$AI_SIM_URL/journal"'''
TRUNCATE ai_call_log;

-- ai_resilience.extra_headers: the lines for every endpoint go to each,
-- an "N>" line to the N-th only, replacing a header of the same name.
-- The first endpoint is down (a 502 prefix): the call falls back to gw2.
SELECT use_gateways('status-502/v1', 'gw2/v1');
SET ai_resilience.max_retries = 0;
SET ai_resilience.extra_headers = E'x-portkey-provider: openai\n# a comment\n\n  2> x-portkey-provider: anthropic \r\n1>x-only-first: 1\nX-Trace-Id: t-7';
:reset_journal
SELECT ai_chat('headers', ARRAY['ok']) AS answer;
:load_journal
SELECT prefix, status, x_headers FROM journal ORDER BY seq;

-- Nobody sees the headers in the settings: they may hold a gateway's key.
SHOW ai_resilience.extra_headers;
SELECT count(*) AS listed FROM pg_settings WHERE name = 'ai_resilience.extra_headers';
CREATE ROLE ai_headers_monitor IN ROLE pg_monitor;
CREATE ROLE ai_headers_user;
SET ROLE ai_headers_monitor;
SHOW ai_resilience.extra_headers;
SELECT name, setting, reset_val FROM pg_settings WHERE name = 'ai_resilience.extra_headers';
SET ROLE ai_headers_user;
SHOW ai_resilience.extra_headers;
SET ai_resilience.extra_headers = 'x-a: b';
RESET ROLE;
DROP ROLE ai_headers_monitor;
DROP ROLE ai_headers_user;

-- A line that cannot be sent is refused at the call, by its line number,
-- never quoting its value; nothing is sent.
SELECT use_gateways('v1');
:reset_journal
SET ai_resilience.extra_headers = E'x-ok: 1\nAuthorization: Bearer sk-other-secret';
SELECT try_chat('p', ARRAY['ok']);
SET ai_resilience.extra_headers = 'content-length: 5';
SELECT try_chat('p', ARRAY['ok']);
SET ai_resilience.extra_headers = 'Host: evil';
SELECT try_chat('p', ARRAY['ok']);
SET ai_resilience.extra_headers = 'Transfer-Encoding: chunked';
SELECT try_chat('p', ARRAY['ok']);
SELECT set_config('ai_resilience.extra_headers',
                  'x-a: secret-value' || chr(13) || 'Injected: 1', false) = '********' AS hidden;
SELECT try_chat('p', ARRAY['ok']);
SELECT set_config('ai_resilience.extra_headers', 'x-a: secret' || chr(1), false) = '********' AS hidden;
SELECT try_chat('p', ARRAY['ok']);
SET ai_resilience.extra_headers = 'x a: secret-value';
SELECT try_chat('p', ARRAY['ok']);
SET ai_resilience.extra_headers = 'no-colon-secret-value';
SELECT try_chat('p', ARRAY['ok']);
SET ai_resilience.extra_headers = 'x-empty:  ';
SELECT try_chat('p', ARRAY['ok']);
SET ai_resilience.extra_headers = '2> x-a: b';
SELECT try_chat('p', ARRAY['ok']);
SET ai_resilience.extra_headers = '2 x-a: b';
SELECT try_chat('p', ARRAY['ok']);
:load_journal
SELECT count(*) AS requests_sent FROM journal;
RESET ai_resilience.extra_headers;
RESET ai_resilience.max_retries;
SELECT ai_flush_log() AS flushed;
SELECT count(*) AS rows_holding_values FROM ai_call_log l
WHERE l::text ~ '(secret-value|anthropic|t-7)';
TRUNCATE ai_call_log;

-- Errors as LiteLLM rewrites them (code "429"/"400", type null) are
-- classified from their message: a quota 429 is not retried; its router's
-- "Try again in 1 seconds" is a Retry-After (here over retry_after_max, so
-- the call fails at once); Portkey's own error keeps its text.
SELECT use_gateways('v1');
SET ai_resilience.retry_after_max = '500ms';
SELECT try_chat('p', ARRAY['litellm-quota']);
SELECT try_chat('p', ARRAY['litellm-content']);
SELECT try_chat('p', ARRAY['litellm-context']);
SELECT try_chat('p', ARRAY['litellm-nodeploy-1']);
SELECT try_chat('p', ARRAY['portkey-failure']);
SELECT ai_flush_log() AS flushed;
SELECT model, code, error_class, outcome, retry_after_ms, error FROM ai_call_log ORDER BY id;
TRUNCATE ai_call_log;
RESET ai_resilience.retry_after_max;

-- request_id: x-request-id, else LiteLLM's call id, else Portkey's trace id.
SELECT ai_chat('p', ARRAY['ok+litellm']) AS answer;
SELECT ai_chat('p', ARRAY['ok+portkey']) AS answer;
SELECT ai_chat('p', ARRAY['ok+portkey+norequestid']) AS answer;
SELECT ai_chat('p', ARRAY['ok']) AS answer;
SELECT ai_flush_log() AS flushed;
SELECT model, regexp_replace(request_id, '[0-9]+$', 'N') AS request_id
FROM ai_call_log ORDER BY id;
TRUNCATE ai_call_log;
