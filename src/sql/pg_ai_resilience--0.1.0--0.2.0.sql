/*
 * pg_ai_resilience upgrade from 0.1.0 to 0.2.0.
 *
 * Brings a 0.1.0 installation to the objects of src/pg_ai_resilience.sql
 * at 0.2.0 (test: sql/upgrade.sql compares the two); the log's rows stay.
 * Written to the same rules as the install script: every name qualified.
 */

\echo Use "ALTER EXTENSION pg_ai_resilience UPDATE TO '0.2.0'" to load this file. \quit

-- 0.1.0's default, nextval('ai_call_log_id_seq'), bound to whatever
-- nextval(text) the search_path offered at CREATE EXTENSION: a function a
-- database owner planted ran as the log writer (the table owner).
ALTER TABLE @extschema@.ai_call_log ALTER COLUMN id
    SET DEFAULT pg_catalog.nextval('@extschema@.ai_call_log_id_seq'::pg_catalog.regclass);

-- Who logged in, next to role_name (current_user, the owner inside a
-- SECURITY DEFINER function).  NULL in the rows written before.
ALTER TABLE @extschema@.ai_call_log ADD COLUMN session_role name;
COMMENT ON COLUMN @extschema@.ai_call_log.role_name IS
    'current_user of the call: inside a SECURITY DEFINER function, the function''s owner';
COMMENT ON COLUMN @extschema@.ai_call_log.session_role IS
    'session_user of the call: the role that logged in (or SET SESSION AUTHORIZATION); NULL in rows from version 0.1.0';

-- One call is an HTTP round trip: see the install script.
ALTER FUNCTION @extschema@.ai_chat(text, text[], text, integer, double precision, text, boolean) COST 10000;
ALTER FUNCTION @extschema@.ai_chat_batch(text[], text[], text, integer, double precision, text, boolean) COST 10000;
ALTER FUNCTION @extschema@.ai_chat_batch_keyed(anyarray, text[], text[], text, integer, double precision, text, boolean) COST 10000;
ALTER FUNCTION @extschema@.ai_chat_complete(jsonb, text[], text, boolean) COST 10000;

-- Calling spends money and sends data out: no longer granted to PUBLIC.
-- Roles that call must now be granted EXECUTE (README, Upgrading).
REVOKE ALL ON FUNCTION @extschema@.ai_chat(text, text[], text, integer, double precision, text, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.ai_chat_batch(text[], text[], text, integer, double precision, text, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.ai_chat_batch_keyed(anyarray, text[], text[], text, integer, double precision, text, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.ai_chat_complete(jsonb, text[], text, boolean) FROM PUBLIC;
