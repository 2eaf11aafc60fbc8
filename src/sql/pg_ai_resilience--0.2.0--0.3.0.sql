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

-- ai_probe (0.3.0): check the configuration and every endpoint, one row
-- per check (settings, dns, connect, tls, models, model, chat).  It reveals
-- the endpoints and, with chat => true, spends tokens: not for PUBLIC.
CREATE FUNCTION @extschema@.ai_probe(
    models text[] DEFAULT NULL,
    chat   boolean DEFAULT false)
RETURNS TABLE (endpoint text, model text, check_name text, verdict text,
               elapsed_ms double precision, detail text, hint text)
AS 'MODULE_PATHNAME', 'ai_probe'
LANGUAGE C VOLATILE PARALLEL UNSAFE COST 10000;

COMMENT ON FUNCTION @extschema@.ai_probe(text[], boolean) IS
    'Check the settings and every endpoint (name, connection, TLS, GET /models, the models listed) without spending tokens; chat => true also sends one tiny chat per endpoint and model';

REVOKE ALL ON FUNCTION @extschema@.ai_probe(text[], boolean) FROM PUBLIC;
