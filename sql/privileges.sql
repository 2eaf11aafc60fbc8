-- Calling spends money and sends data out: EXECUTE on the calling functions
-- is not granted to PUBLIC, the planner knows a call is costly, and the log
-- says who called, also through a SECURITY DEFINER function.
SELECT use_gateways('v1');

-- the functions, their cost and whether every role may run them
SELECT p.oid::regprocedure AS function, p.procost AS cost,
       has_function_privilege('public', p.oid, 'EXECUTE') AS public_may_run
FROM pg_proc p
JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_ai_resilience'
ORDER BY 1::text;

-- a role not granted EXECUTE gets 42501 from each calling function
CREATE ROLE ai_caller;
GRANT SELECT ON sim TO ai_caller;
SET ROLE ai_caller;
\set VERBOSITY sqlstate
SELECT ai_chat('not granted', ARRAY['ok']);
SELECT * FROM ai_chat_batch(ARRAY['not granted'], ARRAY['ok']);
SELECT * FROM ai_chat_batch_keyed(ARRAY[1], ARRAY['not granted'], ARRAY['ok']);
SELECT ai_chat_complete('{"messages": [{"role": "user", "content": "not granted"}]}', ARRAY['ok']);
\set VERBOSITY default
RESET ROLE;

-- the GRANT of the README's Getting started
GRANT EXECUTE ON FUNCTION
    ai_chat(text, text[], text, integer, double precision, text, boolean),
    ai_chat_batch(text[], text[], text, integer, double precision, text, boolean),
    ai_chat_batch_keyed(anyarray, text[], text[], text, integer, double precision, text, boolean),
    ai_chat_complete(jsonb, text[], text, boolean)
TO ai_caller;
SET ROLE ai_caller;
SELECT ai_chat('granted', ARRAY['ok']);
SELECT ord, response, attempts FROM ai_chat_batch(ARRAY['granted'], ARRAY['ok']);
SELECT key, response FROM ai_chat_batch_keyed(ARRAY[7], ARRAY['granted'], ARRAY['ok']);
SELECT ai_chat_complete('{"messages": [{"role": "user", "content": "granted"}]}', ARRAY['ok'])
       -> 'choices' -> 0 -> 'message' ->> 'content' AS content;
RESET ROLE;

-- COST: a WHERE clause's cheaper conditions run first, so only the rows
-- that pass them are sent (one call here, not four)
CREATE TABLE cost_prompts (p text);
INSERT INTO cost_prompts VALUES ('cost a'), ('cost b'), ('cost c'), ('cost d');
SET ai_resilience.log_prompts = on;
SELECT p FROM cost_prompts WHERE ai_chat(p, ARRAY['ok']) IS NOT NULL AND lower(p) = 'cost b';
RESET ai_resilience.log_prompts;
SELECT ai_flush_log() AS flushed;
SELECT prompt AS sent FROM ai_call_log WHERE prompt LIKE 'cost %' ORDER BY id;
DROP TABLE cost_prompts;

-- role_name is current_user (the owner inside a SECURITY DEFINER
-- function), session_role is session_user (who logged in)
CREATE ROLE ai_definer;
GRANT EXECUTE ON FUNCTION ai_chat(text, text[], text, integer, double precision, text, boolean)
    TO ai_definer;
CREATE FUNCTION definer_chat(prompt text) RETURNS text
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp
AS $$ SELECT ai_chat(prompt, ARRAY['ok']) $$;
ALTER FUNCTION definer_chat(text) OWNER TO ai_definer;
SET SESSION AUTHORIZATION ai_caller;
SELECT definer_chat('through a wrapper');
SELECT ai_chat('directly', ARRAY['ok']);
RESET SESSION AUTHORIZATION;
SELECT ai_flush_log() AS flushed;
SELECT role_name, session_role FROM ai_call_log ORDER BY id DESC LIMIT 2;

DROP FUNCTION definer_chat(text);
REVOKE ALL ON FUNCTION ai_chat(text, text[], text, integer, double precision, text, boolean)
    FROM ai_definer, ai_caller;
REVOKE ALL ON FUNCTION
    ai_chat_batch(text[], text[], text, integer, double precision, text, boolean),
    ai_chat_batch_keyed(anyarray, text[], text[], text, integer, double precision, text, boolean),
    ai_chat_complete(jsonb, text[], text, boolean)
FROM ai_caller;
REVOKE ALL ON sim FROM ai_caller;
DROP ROLE ai_definer;
DROP ROLE ai_caller;
