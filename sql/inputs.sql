-- Bad input is refused with a clear error before any HTTP call.
TRUNCATE ai_call_log;
SELECT use_gateways('v1');

SELECT ai_chat('', ARRAY['ok']);
SELECT ai_chat('p', ARRAY[]::text[]);
SELECT ai_chat('p', ARRAY['ok', NULL]);
SELECT ai_chat('p', ARRAY['']);
SELECT ai_chat('p');
SELECT ai_chat('p', ARRAY['ok'], system_prompt => '');
SELECT ai_chat('p', ARRAY['ok'], max_tokens => 0);
SELECT ai_chat('p', ARRAY['ok'], temperature => -1);
SELECT ai_chat('p', ARRAY['ok'], temperature => 'NaN');
SELECT ai_chat('p', ARRAY['ok'], on_error => 'ignore');
SET ai_resilience.max_prompt_bytes = 10;
SELECT ai_chat('this prompt is too long', ARRAY['ok']);
RESET ai_resilience.max_prompt_bytes;

-- configuration that cannot work
SET ai_resilience.endpoints = '';
SELECT ai_chat('p', ARRAY['ok']);
SET ai_resilience.endpoints = 'ftp://example.com/v1';
SET ai_resilience.endpoints = 'http://';
SET ai_resilience.endpoints = '127.0.0.1:8080/v1';
SET ai_resilience.models = 'a,,b';
SELECT use_gateways('v1', 'gw2/v1');
SET ai_resilience.api_key = 'key-one-1111,key-two-2222,key-three-3333';
SELECT ai_chat('p', ARRAY['ok']);
SET ai_resilience.api_key = 'bad key';
SELECT ai_chat('p', ARRAY['ok']);
SET ai_resilience.api_key = E'bad\001key';
SELECT ai_chat('p', ARRAY['ok']);
RESET ai_resilience.api_key;

-- none of the refused calls reached the gateway
SELECT ai_flush_log() AS flushed;
SELECT count(*) AS attempts FROM ai_call_log;
TRUNCATE ai_call_log;

-- one key per endpoint: each endpoint gets its own
\! curl -s -X POST "$AI_SIM_URL/journal/reset"
SET ai_resilience.api_key = 'key-one-1111,key-two-2222';
SELECT use_gateways('status-502/v1', 'gw2/v1');
SET ai_resilience.max_retries = 0;
SELECT ai_chat('p', ARRAY['ok']);
TRUNCATE journal;
\copy journal FROM PROGRAM 'curl -s "$AI_SIM_URL/journal"'
SELECT prefix, status, auth FROM journal ORDER BY seq;
RESET ai_resilience.api_key;
RESET ai_resilience.max_retries;

-- a large prompt within the limit goes through whole
SELECT use_gateways('v1');
SELECT length(ai_chat(repeat('x', 500000), ARRAY['ok'])) AS answer_length;

-- an endpoint URL with credentials never shows them in the log
SELECT ai_flush_log() AS flushed;
TRUNCATE ai_call_log;
SELECT set_config('ai_resilience.endpoints',
                  replace((SELECT url FROM sim), 'http://', 'http://user:pw@') || '/v1', false) IS NOT NULL AS set;
SELECT ai_chat('p', ARRAY['ok']);
SELECT ai_flush_log() AS flushed;
SELECT endpoint LIKE '%pw%' AS leaks_password, endpoint LIKE 'http://127.0.0.1:%/v1' AS shape FROM ai_call_log;
