-- Streaming (Server-Sent Events), the timeouts that go with it, and the
-- whole chat-completions request through ai_chat_complete.
SELECT ai_flush_log() AS flushed;
TRUNCATE ai_call_log;
SELECT use_gateways('v1');
SET ai_resilience.max_retries = 1;
CREATE VIEW stream_attempts AS
SELECT attempt, model, code, error_class, outcome, streaming, response_bytes
FROM ai_call_log ORDER BY id;

-- a streamed answer is the plain answer's text; the usage chunk fills the
-- token columns; the log says it streamed
SELECT ai_chat('stream me please', ARRAY['ok'], stream => true);
SELECT ai_flush_log() AS flushed;
SELECT attempt, code, error_class, outcome, streaming, finish_reason, model_returned,
       prompt_tokens, completion_tokens, response_bytes, ttft_ms >= 0 AS has_ttft
FROM ai_call_log;
SELECT ai_chat('stream me please', ARRAY['ok'], stream => true) =
       ai_chat('stream me please', ARRAY['ok'], stream => false) AS same_text;

-- ai_resilience.stream streams by default; stream => false overrides it
SELECT ai_flush_log() AS flushed;
TRUNCATE ai_call_log;
SET ai_resilience.stream = on;
SELECT ai_chat('by default', ARRAY['ok']);
SELECT ai_chat('not this one', ARRAY['ok'], stream => false);
RESET ai_resilience.stream;
SELECT ai_flush_log() AS flushed;
SELECT streaming FROM ai_call_log ORDER BY id;

-- steady slow chunks within the idle timeout succeed
SELECT ai_flush_log() AS flushed;
TRUNCATE ai_call_log;
SET ai_resilience.stream_idle_timeout = '300ms';
SELECT ai_chat('one two three', ARRAY['ok+chunkdelay-60'], stream => true);
SELECT ai_flush_log() AS flushed;
SELECT * FROM stream_attempts;

-- a stall past the idle timeout fails fast, is retried, then falls back;
-- the partial answer's length is logged (it is billed)
SELECT ai_flush_log() AS flushed;
TRUNCATE ai_call_log;
SELECT clock_timestamp() AS t0 \gset
SELECT ai_chat('p', ARRAY['streamstall-5000', 'ok'], stream => true);
SELECT clock_timestamp() - :'t0' < interval '3 s' AS fast;
SELECT ai_flush_log() AS flushed;
SELECT * FROM stream_attempts;
RESET ai_resilience.stream_idle_timeout;

-- a cut stream and a mid-stream error are retried, then fall back
SELECT ai_flush_log() AS flushed;
TRUNCATE ai_call_log;
SELECT ai_chat('p', ARRAY['streamcut', 'streamerror', 'ok'], stream => true);
SELECT ai_flush_log() AS flushed;
SELECT * FROM stream_attempts;
SELECT ai_flush_log() AS flushed;
SELECT DISTINCT error FROM ai_call_log WHERE error_class = 'stream_error';

-- a 5 MB streamed answer returns intact
SELECT length(s) AS length, md5(s) = md5(ai_chat('big', ARRAY['bigreply-5000000'], stream => false)) AS same_as_plain
FROM ai_chat('big', ARRAY['bigreply-5000000'], stream => true) s;

-- multibyte UTF-8 split across reads comes back intact; CRLF line endings
SELECT ai_chat('x', ARRAY['ok+utf8'], stream => true);
SELECT ai_chat('x', ARRAY['ok+utf8'], stream => true) = ai_chat('x', ARRAY['ok+utf8']) AS same_text;
SELECT ai_chat('crlf please', ARRAY['ok+crlf'], stream => true);

-- no first byte in time: a first_byte_timeout; stream_on_timeout makes the
-- next attempt on that route stream
SELECT ai_flush_log() AS flushed;
TRUNCATE ai_call_log;
SET ai_resilience.first_byte_timeout = '200ms';
SELECT ai_chat('p', ARRAY['ok+latency-1000', 'ok']);
SELECT ai_flush_log() AS flushed;
SELECT * FROM stream_attempts;
RESET ai_resilience.first_byte_timeout;
-- a 524 (the gateway's timeout) makes the retry stream, and it gets through
SELECT ai_flush_log() AS flushed;
TRUNCATE ai_call_log;
SELECT ai_chat('p', ARRAY['flaky-1-524']);
SELECT ai_flush_log() AS flushed;
SELECT * FROM stream_attempts;
-- unless stream_on_timeout is off
SELECT ai_flush_log() AS flushed;
TRUNCATE ai_call_log;
SET ai_resilience.stream_on_timeout = off;
SELECT ai_chat('q', ARRAY['flaky-1-524']);
SELECT ai_flush_log() AS flushed;
SELECT * FROM stream_attempts;
RESET ai_resilience.stream_on_timeout;

-- batches stream too
SELECT ord, response FROM ai_chat_batch(ARRAY['s1', 's2', 's3'], ARRAY['ok+chunkdelay-5'], stream => true);

-- ai_chat_complete: a two-turn conversation; "model" is replaced per route
\! curl -s -X POST "$AI_SIM_URL/journal/reset"
SELECT ai_chat_complete('{"model": "ignored", "messages": [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "hello"},
    {"role": "assistant", "content": "hi!"},
    {"role": "user", "content": "how are you"}]}', ARRAY['ok']) #> '{choices,0,message}' AS message;
-- every other field passes through untouched: the body the simulator got is
-- the request with only "model" (and "stream") set by us
SELECT r #> '{choices,0,message,content}' AS content, r -> 'usage' AS usage,
       r ->> 'object' AS object
FROM ai_chat_complete('{"messages": [{"role": "user", "content": "give json"}],
                        "response_format": {"type": "json_object"},
                        "stream": true, "seed": 7, "x_provider_field": [1, 2]}',
                      ARRAY['status-503', 'ok']) r;
TRUNCATE journal;
\copy journal FROM PROGRAM 'curl -s "$AI_SIM_URL/journal"'
SELECT j.model, j.status, j.stream,
       j.body_bytes = octet_length(('{"messages": [{"role": "user", "content": "give json"}],
                        "response_format": {"type": "json_object"},
                        "seed": 7, "x_provider_field": [1, 2]}'::jsonb
                      || jsonb_build_object('model', j.model))::text) AS body_untouched
FROM journal j WHERE j.seq > (SELECT min(seq) FROM journal) ORDER BY j.seq;
-- streamed: the response assembled from the stream
SELECT ai_chat_complete('{"messages": [{"role": "user", "content": "stream it"}]}',
                        ARRAY['ok'], stream => true);
-- a tool-call style answer (content null) is an answer here, not for ai_chat
SELECT ai_chat_complete('{"messages": [{"role": "user", "content": "x"}]}',
                        ARRAY['nullcontent']) #> '{choices,0,message,content}' AS content;
-- bad requests
SELECT ai_chat_complete('[1, 2]', ARRAY['ok']);
SELECT ai_chat_complete('"hello"', ARRAY['ok']);
SELECT ai_chat_complete(NULL, ARRAY['ok']) IS NULL AS is_null;
DROP VIEW stream_attempts;
