-- The settings: defaults, units, prefix reservation, privileges.
LOAD 'pg_ai_resilience';
SELECT name, setting, unit, context, vartype, min_val, max_val
FROM pg_settings WHERE name LIKE 'ai\_resilience.%' ORDER BY name;

SET ai_resilience.backoff_base = '1.5s';
SHOW ai_resilience.backoff_base;
SET ai_resilience.max_response_bytes = '2MB';
SHOW ai_resilience.max_response_bytes;
SET ai_resilience.max_retries = 11;
SET ai_resilience.deadline = 0;
SET ai_resilience.no_such_setting = 1;

-- a non-superuser granted ai_chat can call it, but can neither read nor set
-- the key or the endpoints, nor read the log
CREATE ROLE ai_user;
GRANT SELECT ON sim TO ai_user;
GRANT EXECUTE ON FUNCTION ai_chat(text, text[], text, integer, double precision, text, boolean) TO ai_user;
SELECT use_gateways('v1');
SET ROLE ai_user;
SHOW ai_resilience.api_key;
SELECT current_setting('ai_resilience.api_key');
SET ai_resilience.api_key = 'stolen';
SET ai_resilience.endpoints = 'http://evil.example/v1';
SET ai_resilience.max_retries = 1;
SELECT count(*) FROM pg_settings WHERE name = 'ai_resilience.api_key';
SELECT ai_chat('from a plain user', ARRAY['ok']);
SELECT ai_flush_log() AS flushed;
SELECT count(*) FROM ai_call_log;
RESET ROLE;
SELECT role_name FROM ai_call_log ORDER BY id DESC LIMIT 1;
REVOKE ALL ON sim FROM ai_user;
REVOKE ALL ON FUNCTION ai_chat(text, text[], text, integer, double precision, text, boolean) FROM ai_user;
DROP ROLE ai_user;

-- max_prompt_bytes limits each prompt (and an ai_chat_complete request), not
-- the request body sent
SELECT short_desc FROM pg_settings WHERE name = 'ai_resilience.max_prompt_bytes';
