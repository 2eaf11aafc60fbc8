-- Memory ceilings: a superuser caps max_response_bytes and max_concurrency
-- for every role.  A value over its ceiling is refused when a session or a
-- role sets it; a ceiling lowered later caps what a session set before.
SELECT use_gateways('v1');
CREATE ROLE ai_limited;
GRANT SELECT ON sim TO ai_limited;

SET ROLE ai_limited;
SHOW ai_resilience.max_response_bytes_limit;
SHOW ai_resilience.max_concurrency_limit;
SET ai_resilience.max_response_bytes = '512MB';
SET ai_resilience.max_concurrency = 1024;
SET ai_resilience.max_response_bytes = '64MB';
SET ai_resilience.max_concurrency = 256;
SHOW ai_resilience.max_response_bytes;
SHOW ai_resilience.max_concurrency;
-- only a superuser moves a ceiling
SET ai_resilience.max_response_bytes_limit = '512MB';
SET ai_resilience.max_concurrency_limit = 1024;
SELECT set_config('ai_resilience.max_concurrency', '300', false);
RESET ROLE;

-- a role's and a database's stored settings are checked too
SELECT current_database() AS db \gset
ALTER ROLE ai_limited SET ai_resilience.max_concurrency = 1000;
ALTER DATABASE :"db" SET ai_resilience.max_response_bytes = '100MB';
ALTER ROLE ai_limited SET ai_resilience.max_concurrency = 100;
ALTER ROLE ai_limited RESET ALL;

-- the ceiling binds a superuser as well, who may raise it first
SET ai_resilience.max_response_bytes = '100MB';
SET ai_resilience.max_response_bytes_limit = '128MB';
SET ai_resilience.max_response_bytes = '100MB';
SHOW ai_resilience.max_response_bytes;
RESET ai_resilience.max_response_bytes;
RESET ai_resilience.max_response_bytes_limit;

-- a ceiling lowered after a session set more caps the calls: a 3 kB answer
-- fails under a 2 kB ceiling though max_response_bytes says 64 kB
SET ai_resilience.max_response_bytes = '64kB';
SELECT length(ai_chat('fits', ARRAY['bigreply-3000']));
SET ai_resilience.max_response_bytes_limit = '2kB';
SELECT try_chat('too large', ARRAY['bigreply-3000']);
RESET ai_resilience.max_response_bytes_limit;
RESET ai_resilience.max_response_bytes;

-- and a lowered concurrency ceiling caps a batch: 4 overlapping prompts go
-- over one connection, one after the other
SET ai_resilience.max_concurrency = 4;
SET ai_resilience.max_concurrency_limit = 1;
\! curl -s -X POST "$AI_SIM_URL/journal/reset"
SELECT count(*) FROM ai_chat_batch(ARRAY(SELECT 'sim:ok+latency-100 c' || i FROM generate_series(1, 4) i), ARRAY['ok']);
TRUNCATE journal;
\copy journal FROM PROGRAM 'curl -s "$AI_SIM_URL/journal"'
SELECT count(*) AS requests, count(DISTINCT conn) AS connections FROM journal;
RESET ai_resilience.max_concurrency_limit;
RESET ai_resilience.max_concurrency;

REVOKE ALL ON sim FROM ai_limited;
DROP ROLE ai_limited;
