-- Connections are kept alive between calls of a session.
TRUNCATE ai_call_log;
SELECT use_gateways('v1');
\! curl -s -X POST "$AI_SIM_URL/journal/reset"
SELECT ai_chat('call ' || i, ARRAY['ok']) FROM generate_series(1, 5) i;
-- retries and fallbacks reuse the connection too
SELECT ai_chat('p', ARRAY['status-502', 'ok']);
TRUNCATE journal;
\copy journal FROM PROGRAM 'curl -s "$AI_SIM_URL/journal"'
SELECT count(*) AS requests, count(DISTINCT conn) AS connections FROM journal;
SELECT ai_flush_log() AS flushed;
SELECT count(*) FILTER (WHERE new_connection) AS opened,
       count(*) FILTER (WHERE NOT new_connection) AS reused
FROM ai_call_log;
