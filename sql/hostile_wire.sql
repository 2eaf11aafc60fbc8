-- What a gateway's streams and numbers may do to us: a stream that stays
-- open after [DONE], a byte order mark, one giant event, events on several
-- data lines, token counts that are no counts, a number no numeric type can
-- hold, and a route that went streaming after a 524 and then got an error.
SELECT ai_flush_log() AS flushed;
TRUNCATE ai_call_log;
SELECT use_gateways('v1');
CREATE VIEW wire_attempts AS
SELECT attempt, model, code, error_class, outcome, streaming, response_bytes,
       prompt_tokens, completion_tokens
FROM ai_call_log ORDER BY id;

-- [DONE], then the connection stays open: the answer is complete, at once;
-- the idle timeout never fires
SET ai_resilience.stream_idle_timeout = '300ms';
SELECT ai_chat('done but open', ARRAY['ok+doneopen'], stream => true);
SELECT ai_flush_log() AS flushed;
SELECT * FROM wire_attempts;
RESET ai_resilience.stream_idle_timeout;

-- a UTF-8 byte order mark before the first event is skipped, so the first
-- event (with the answer's first words) counts
SELECT ai_chat('with a bom', ARRAY['ok+bom'], stream => true);
SELECT ai_chat('with a bom', ARRAY['ok+bom+crlf'], stream => true);

-- one 3 MB event arriving in 16 kB pieces, and events split over two data
-- lines, come back whole
SELECT length(s) AS length,
       md5(s) = md5(ai_chat('big', ARRAY['bigreply-3000000'])) AS same_as_plain
FROM ai_chat('big', ARRAY['bigreply-3000000+oneevent+trickle'], stream => true) s;
SELECT ai_chat('two lines each', ARRAY['ok+multiline'], stream => true);
SELECT ai_chat('two lines each', ARRAY['ok+multiline+crlf'], stream => true);

-- token counts that are no counts are unknown (NULL): a negative count, and
-- counts beyond int4; plain and streamed
SELECT ai_flush_log() AS flushed;
TRUNCATE ai_call_log;
SELECT ai_chat('counts', ARRAY['ok+usage-negative']);
SELECT ai_chat('counts', ARRAY['ok+usage-overflow']);
SELECT ai_chat('counts', ARRAY['ok+usage-negative'], stream => true);
SELECT ai_chat('counts', ARRAY['ok+usage-overflow'], stream => true);
SELECT ai_chat('counts', ARRAY['ok+usage-max'], stream => true);
SELECT ai_flush_log() AS flushed;
SELECT * FROM wire_attempts;
-- two counts of 2^31 - 1 add up without overflowing
SELECT ai_chat_complete('{"messages": [{"role": "user", "content": "sum"}]}',
                        ARRAY['ok+usage-max'], stream => true) -> 'usage' AS usage;

-- a number no numeric type can hold makes a bad response, inside the
-- attempt: retried, then the next route; logged as such, never a success
SELECT ai_flush_log() AS flushed;
TRUNCATE ai_call_log;
SELECT ai_chat_complete('{"messages": [{"role": "user", "content": "n"}]}',
                        ARRAY['ok+hugenumber', 'ok']) #>> '{choices,0,message,content}' AS content;
SELECT ai_flush_log() AS flushed;
SELECT attempt, model, error_class, outcome, error FROM ai_call_log ORDER BY id;
-- and on_error => 'null' applies to it (its WARNING names the port)
SET client_min_messages = error;
SELECT ai_chat_complete('{"messages": [{"role": "user", "content": "n"}]}',
                        ARRAY['ok+hugenumber'], on_error => 'null') IS NULL AS is_null;
SELECT ai_chat('n', ARRAY['ok+hugenumber'], on_error => 'null') IS NULL AS is_null;
RESET client_min_messages;

-- a 524 makes the retry stream; when that streamed retry gets an HTTP
-- error (no event at all), the next retry goes back to not streaming
SELECT ai_flush_log() AS flushed;
TRUNCATE ai_call_log;
SELECT ai_chat('p', ARRAY['twostep-524-500']);
SELECT ai_flush_log() AS flushed;
SELECT * FROM wire_attempts;
-- with ai_resilience.stream on, the route keeps streaming
SELECT ai_flush_log() AS flushed;
TRUNCATE ai_call_log;
SELECT ai_chat('q', ARRAY['twostep-524-500'], stream => true);
SELECT ai_flush_log() AS flushed;
SELECT * FROM wire_attempts;
DROP VIEW wire_attempts;
