/*
 * pg_ai_resilience upgrade from 0.2.0 to 0.3.0.
 *
 * Brings a 0.2.0 installation to the objects of src/pg_ai_resilience.sql
 * at 0.3.0 (test: sql/upgrade.sql compares the two); the log's rows stay.
 * Written to the same rules as the install script: every name qualified.
 */

\echo Use "ALTER EXTENSION pg_ai_resilience UPDATE TO '0.3.0'" to load this file. \quit

-- Attribution: who called (application_name, ai_resilience.tag, captured by
-- the calling backend) and the upstream provider's request id a gateway
-- forwards.  NULL in the rows written before.
ALTER TABLE @extschema@.ai_call_log
    ADD COLUMN application_name text,
    ADD COLUMN tag text,
    ADD COLUMN provider_request_id text;
COMMENT ON COLUMN @extschema@.ai_call_log.application_name IS
    'application_name of the calling session at call time; NULL in rows from versions before 0.3.0';
COMMENT ON COLUMN @extschema@.ai_call_log.tag IS
    'ai_resilience.tag of the calling session at call time (NULL when unset)';
COMMENT ON COLUMN @extschema@.ai_call_log.provider_request_id IS
    'The upstream provider''s request id a gateway forwards (LiteLLM: llm_provider-x-request-id); request_id is the gateway''s own';
