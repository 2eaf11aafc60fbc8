-- Attribution: every attempt's log row says who called, as the calling
-- backend saw it when the call started (application_name and
-- ai_resilience.tag), and the upstream provider's request id a gateway
-- forwards; a failed call's error and WARNING name its call_id.
SELECT use_gateways('v1');
TRUNCATE ai_call_log;

-- ai_resilience.tag is checked when set: at most 64 bytes, valid text, no
-- control characters; a refused value leaves the tag as it was
CREATE FUNCTION try_tag(value text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    detail text;
BEGIN
    PERFORM set_config('ai_resilience.tag', value, false);
    RETURN 'accepted';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
    RETURN SQLSTATE || ': ' || detail;
END;
$$;
SET ai_resilience.tag = 'before';
SELECT label, octet_length(value) AS bytes, try_tag(value) AS result,
       current_setting('ai_resilience.tag') AS tag_now
FROM (VALUES (1, '64 bytes', repeat('x', 64)),
             (2, '65 bytes', repeat('x', 65)),
             (3, '32 two-byte characters', repeat(E'\u00e9', 32)),
             (4, '33 two-byte characters', repeat(E'\u00e9', 33)),
             (5, 'a newline', E'two\nlines'),
             (6, 'a tab', E'a\tb'),
             (7, 'DEL', E'del\x7f'),
             (8, 'C1 control U+0085', E'next\u0085line'),
             (9, 'spaces and punctuation', 'nightly summaries #3 (eu-west)'),
             (10, 'empty', '')) AS v(n, label, value)
ORDER BY n;
SET ai_resilience.tag = 'before';
SET ai_resilience.tag = 'a tag of more than sixty-four bytes, which is more than a label needs';
SHOW ai_resilience.tag;
RESET ai_resilience.tag;
SHOW ai_resilience.tag;

-- Calls under different settings: each attempt's row carries the values in
-- force when its call started.  A retried call's every attempt has them.
-- (The prompts are logged to tell the calls apart.)
SET ai_resilience.log_prompts = on;
SET application_name = 'attrib-app';
SELECT ai_chat('no tag', ARRAY['ok']);
SET ai_resilience.tag = 'nightly-summaries';
SELECT ai_chat('tagged', ARRAY['status-502', 'ok']);
BEGIN;
SET LOCAL ai_resilience.tag = 'set-local';
SET LOCAL application_name = 'attrib-local';
SELECT ai_chat('in a transaction', ARRAY['ok']);
COMMIT;
SELECT ai_chat('after the transaction', ARRAY['ok']);
RESET ai_resilience.tag;
SELECT ai_chat('after RESET', ARRAY['ok']);
-- the batch path: every prompt's attempts (one at a time, for the order
-- of the rows)
SET ai_resilience.tag = 'batch';
SET application_name = 'attrib-batch';
SET ai_resilience.max_concurrency = 1;
SELECT ord, response, attempts FROM ai_chat_batch(ARRAY['b1', 'b2', 'sim:status-502 b3'], ARRAY['ok']);
SELECT key, response FROM ai_chat_batch_keyed(ARRAY[10, 20], ARRAY['k1', 'k2'], ARRAY['ok']);
RESET ai_resilience.max_concurrency;

-- SECURITY DEFINER functions owned by another role: the owner is the
-- role_name, who logged in the session_role; the application_name and the
-- tag are the session's, or the tag of the function's SET clause
CREATE ROLE air_attrib_owner;
GRANT EXECUTE ON FUNCTION ai_chat(text, text[], text, integer, double precision, text, boolean)
TO air_attrib_owner;
CREATE FUNCTION summarise(body text) RETURNS text
LANGUAGE sql SECURITY DEFINER
AS $$ SELECT ai_chat('definer ' || body, ARRAY['ok']) $$;
CREATE FUNCTION summarise_tagged(body text) RETURNS text
LANGUAGE sql SECURITY DEFINER SET ai_resilience.tag = 'definer'
AS $$ SELECT ai_chat('tagged definer ' || body, ARRAY['ok']) $$;
ALTER FUNCTION summarise(text) OWNER TO air_attrib_owner;
ALTER FUNCTION summarise_tagged(text) OWNER TO air_attrib_owner;
SET application_name = 'attrib-definer';
SELECT summarise('x');
SELECT summarise_tagged('y');
SHOW ai_resilience.tag;

-- captured at call time: changing them before the writer writes changes
-- nothing
SET application_name = 'changed later';
SET ai_resilience.tag = 'changed later';
SELECT ai_flush_log() AS flushed;
SELECT prompt, application_name, tag, count(*) AS attempts,
       string_agg(DISTINCT CASE role_name WHEN current_user THEN 'CALLER' ELSE role_name END, ', ')
           AS role_name,
       bool_and(session_role = session_user) AS session_role
FROM ai_call_log
GROUP BY call_id, prompt, application_name, tag
ORDER BY min(id);
RESET ai_resilience.tag;
RESET ai_resilience.log_prompts;
TRUNCATE ai_call_log;

-- The gateway's own request id and the upstream provider's: LiteLLM sends
-- x-litellm-call-id and llm_provider-x-request-id (the simulator numbers
-- both alike); others have no provider id
SELECT ai_chat('p', ARRAY['ok+litellm']) AS answer;
SELECT ai_chat('p', ARRAY['ok']) AS answer;
SELECT ai_chat('p', ARRAY['ok+portkey']) AS answer;
SELECT try_chat('p', ARRAY['litellm-quota+litellm']);
SELECT ai_flush_log() AS flushed;
SELECT model, regexp_replace(request_id, '[0-9]+$', 'N') AS request_id,
       regexp_replace(provider_request_id, '[0-9]+$', 'N') AS provider_request_id,
       substring(request_id from '[0-9]+$') = substring(provider_request_id from '[0-9]+$')
           AS same_request
FROM ai_call_log ORDER BY id;
TRUNCATE ai_call_log;

-- The call_id in the DETAIL of RA001, RA002 and RA003, as a PL/pgSQL
-- handler reads it (the function and query of README "Errors"), is the one
-- of the call's log rows.
CREATE TABLE failed_calls (call_id uuid, sqlstate text, detail text);
CREATE FUNCTION chat_or_record(prompt text, models text[]) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    state text;
    detail text;
BEGIN
    RETURN ai_chat(prompt, models);
EXCEPTION WHEN SQLSTATE 'RA001' OR SQLSTATE 'RA002' OR SQLSTATE 'RA003' THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, detail = PG_EXCEPTION_DETAIL;
    INSERT INTO failed_calls
    VALUES (substring(detail from '^call_id ([0-9a-f-]{36})')::uuid, state, detail);
    RETURN NULL;
END;
$$;
SELECT chat_or_record('p', ARRAY['status-401', 'status-403']);
SET ai_resilience.deadline = '300ms';
SELECT chat_or_record('p', ARRAY['hang', 'hang']);
RESET ai_resilience.deadline;
-- a batch that on_error => 'raise' ends names its failed prompt's call
DO $$
DECLARE
    detail text;
BEGIN
    PERFORM * FROM ai_chat_batch(ARRAY['sim:status-403 p'], ARRAY['ok'], on_error => 'raise');
EXCEPTION WHEN SQLSTATE 'RA001' THEN
    GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
    INSERT INTO failed_calls
    VALUES (substring(detail from '^call_id ([0-9a-f-]{36})')::uuid, 'RA001 batch', detail);
END;
$$;
SELECT ai_chat('p', ARRAY['ok']) AS answer;
SELECT ai_flush_log() AS flushed;
SELECT f.sqlstate, regexp_replace(f.detail, '[0-9a-f-]{36}', '<call_id>') AS detail,
       count(l.id) AS attempts, string_agg(l.model || ' ' || l.error_class, ', ' ORDER BY l.id) AS rows
FROM failed_calls f LEFT JOIN ai_call_log l USING (call_id)
GROUP BY f.sqlstate, f.detail ORDER BY f.sqlstate;
-- the README's query: every attempt of the failed calls
SELECT f.sqlstate, l.attempt, l.model, l.code, l.error_class, l.error
FROM failed_calls f JOIN ai_call_log l USING (call_id)
ORDER BY l.id;
-- every row of the log but the successful call's belongs to one of them
SELECT count(*) AS other_rows FROM ai_call_log
WHERE call_id NOT IN (SELECT call_id FROM failed_calls) AND outcome <> 'success';
TRUNCATE failed_calls;
TRUNCATE ai_call_log;

-- RA003 (every route open, no attempt made) names a call_id too, with no
-- row under it
SET ai_resilience.breaker = on;
SELECT ai_route_set((SELECT url FROM sim) || '/v1', 'ok+attrib', true, '1h');
SELECT chat_or_record('p', ARRAY['ok+attrib']);
SELECT ai_route_set((SELECT url FROM sim) || '/v1', 'ok+attrib', false);
RESET ai_resilience.breaker;
SELECT ai_flush_log() AS flushed;
SELECT f.sqlstate, regexp_replace(f.detail, '[0-9a-f-]{36}', '<call_id>') AS detail,
       (SELECT count(*) FROM ai_call_log l WHERE l.call_id = f.call_id) AS attempts
FROM failed_calls f ORDER BY f.sqlstate;

DROP FUNCTION summarise(text);
DROP FUNCTION summarise_tagged(text);
REVOKE EXECUTE ON FUNCTION ai_chat(text, text[], text, integer, double precision, text, boolean)
FROM air_attrib_owner;
DROP ROLE air_attrib_owner;
TRUNCATE ai_call_log;
