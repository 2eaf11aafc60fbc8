-- Secrecy of the API key and of endpoint credentials, and text from a
-- hostile gateway (test/gateway/README.md, "Hostile answers").  The key is
-- 'sk-test-secret-0123456789' (setup.sql).
SELECT use_gateways('v1');
TRUNCATE ai_call_log;

-- Rows and messages must not hold the key, in any case, even with control
-- characters taken out of it.
CREATE FUNCTION holds_key(t text) RETURNS boolean LANGUAGE sql AS $$
    SELECT regexp_replace(t, '[[:cntrl:]]', '', 'g') ILIKE '%sk-test-secret-0123456789%';
$$;

-- a gateway that echoes the key in x-request-id, the model, the
-- finish_reason, upper-cased in an error, with a control character inside
SELECT ai_chat('p', ARRAY['echokey-requestid']) AS answer;
SELECT ai_chat('p', ARRAY['echokey-model']) AS answer;
SELECT ai_chat('p', ARRAY['echokey-finish']) AS answer;
SELECT try_chat('p', ARRAY['echokey-upper']);
SELECT try_chat('p', ARRAY['echokey-ctrl']);
SELECT holds_key(try_chat('p', ARRAY['echokey-upper', 'echokey-ctrl'])) AS message_holds_key;
SELECT ai_flush_log() AS flushed;
SELECT model, regexp_replace(request_id, '^req-[0-9]+$', 'req-N') AS request_id,
       model_returned, finish_reason, error
FROM ai_call_log ORDER BY id;
SELECT count(*) AS rows_holding_key FROM ai_call_log l WHERE holds_key(l::text);
TRUNCATE ai_call_log;

-- a key shorter than 8 bytes is refused before any call, without quoting it
-- (the old redaction looped forever on 'ACT' once an answer echoed it)
SET ai_resilience.api_key = 'ACT';
SELECT try_chat('p', ARRAY['ok']);
SET ai_resilience.api_key = 'sk-test-secret-0123456789,ACT';
SELECT use_gateways('v1', 'gw2/v1');
SELECT try_chat('p', ARRAY['ok']);
SET ai_resilience.api_key = E'sk-test-secret-\u00e9';
SELECT try_chat('p', ARRAY['ok']);
RESET ai_resilience.api_key;

-- Nobody sees the key in the settings: a pg_monitor member (who may read
-- superuser-only settings) sees it masked; so does the superuser.
CREATE ROLE ai_monitor IN ROLE pg_monitor;
SET ROLE ai_monitor;
SHOW ai_resilience.api_key;
SELECT current_setting('ai_resilience.api_key');
SELECT name, setting, reset_val, boot_val FROM pg_settings
WHERE name LIKE 'ai\_resilience.api\_key%' ORDER BY name;
RESET ROLE;
SHOW ai_resilience.api_key;
SET ai_resilience.api_key = '';
SHOW ai_resilience.api_key;
RESET ai_resilience.api_key;
DROP ROLE ai_monitor;

-- Endpoint credentials (user:password@, a query string) are shown to no
-- one, logged nowhere, and still sent: the call works.
SELECT set_config('ai_resilience.endpoints',
                  replace(url, 'http://', 'http://user:p%40ss@') || '/v1/?api_key=secret123,' ||
                  replace(url, 'http://', 'https://u2:p@ss@') || '/gw2/v1#frag',
                  false) IS NOT NULL AS set
FROM sim;
SELECT substr(url, 8) AS hostport FROM sim \gset
SELECT replace(current_setting('ai_resilience.endpoints'), :'hostport', 'HOST') AS endpoints;
CREATE ROLE ai_reader;
SET ROLE ai_reader;
SELECT replace(current_setting('ai_resilience.endpoints'), :'hostport', 'HOST') AS shown;
SELECT replace(setting, :'hostport', 'HOST') AS setting,
       replace(reset_val, :'hostport', 'HOST') AS reset_val
FROM pg_settings WHERE name = 'ai_resilience.endpoints';
RESET ROLE;
DROP ROLE ai_reader;
-- SET LOCAL shows its endpoints without credentials and ends with the
-- transaction; the value stored is '' throughout (see guc.c)
BEGIN;
SET LOCAL ai_resilience.endpoints = 'http://user:local-pw@gw.example/local/v1?api_key=localsecret';
SHOW ai_resilience.endpoints;
SELECT setting, reset_val, boot_val FROM pg_settings WHERE name = 'ai_resilience.endpoints';
COMMIT;
SELECT replace(current_setting('ai_resilience.endpoints'), :'hostport', 'HOST') AS after_commit;
SELECT ai_chat('p', ARRAY['ok']) AS answer;
SET ai_resilience.max_retries = 0;
SELECT try_chat('p', ARRAY['status-502']);
RESET ai_resilience.max_retries;
SELECT ai_flush_log() AS flushed;
SELECT replace(endpoint, :'hostport', 'HOST') AS endpoint, code, error_class
FROM ai_call_log ORDER BY id;
SELECT count(*) AS rows_with_credentials FROM ai_call_log l
WHERE l::text ~ '(p%40ss|secret123|u2:|frag)';
-- a rejected value is not quoted with its credentials
SET ai_resilience.endpoints = 'http://user:pw@gw.example/v1?api_key=secret123,ftp://u:pw@gw.example/x';
SELECT replace(current_setting('ai_resilience.endpoints'), :'hostport', 'HOST') AS unchanged;
RESET ai_resilience.endpoints;
SELECT replace(current_setting('ai_resilience.endpoints'), :'hostport', 'HOST') AS after_reset;
TRUNCATE ai_call_log;

-- Invalid UTF-8 from the gateway (a JSON syntax error quoting its bytes, an
-- error message, a content) stays out of rows and messages.
SELECT use_gateways('v1');
SELECT try_chat('p', ARRAY['badutf8-json']);
SELECT try_chat('p', ARRAY['badutf8-error']);
SELECT try_chat('p', ARRAY['badutf8-content']);
SELECT ai_flush_log() AS flushed;
SELECT error, convert_from(convert_to(error, 'UTF8'), 'UTF8') = error AS valid
FROM ai_call_log ORDER BY id;
-- an error sent to a LATIN1 client keeps its SQLSTATE
SET client_encoding = LATIN1;
\set VERBOSITY sqlstate
SELECT ai_chat('p', ARRAY['badutf8-json']);
-- so does one whose gateway text has characters LATIN1 lacks ("The model
-- `<model>` does not exist"), and a WARNING does not become an ERROR
SELECT ai_chat('sim:missing p', ARRAY[E'\u65e5\u672c']);
SELECT ai_chat('sim:missing p', ARRAY[E'\u65e5\u672c'], on_error => 'null') IS NULL AS failed;
\set VERBOSITY default
RESET client_encoding;
TRUNCATE ai_call_log;
DROP FUNCTION holds_key(text);
