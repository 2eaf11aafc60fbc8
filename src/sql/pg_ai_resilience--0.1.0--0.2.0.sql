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

-- Route health (shared by every session): the breaker's state, its history,
-- and opening or closing a route by hand.

CREATE FUNCTION @extschema@.ai_route_health(
    OUT endpoint             text,
    OUT model                text,
    OUT state                text,
    OUT consecutive_failures integer,
    OUT window_requests      integer,
    OUT window_failures      integer,
    OUT window_retries       integer,
    OUT opened_at            timestamptz,
    OUT next_probe_at        timestamptz,
    OUT times_opened         bigint,
    OUT last_error_class     text,
    OUT last_error_code      integer,
    OUT last_failure_at      timestamptz,
    OUT last_success_at      timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'ai_route_health'
LANGUAGE C STRICT VOLATILE PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@.ai_route_health() IS
    'The circuit breaker of every route (endpoint, model) and endpoint (model NULL), shared by all sessions';

CREATE VIEW @extschema@.ai_route_health AS SELECT * FROM @extschema@.ai_route_health();

CREATE FUNCTION @extschema@.ai_route_history(
    OUT at                   timestamptz,
    OUT endpoint             text,
    OUT model                text,
    OUT state                text,
    OUT reason               text,
    OUT consecutive_failures integer,
    OUT window_requests      integer,
    OUT window_failures      integer,
    OUT next_probe_at        timestamptz,
    OUT error_class          text,
    OUT error_code           integer,
    OUT backend_pid          integer)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'ai_route_history'
LANGUAGE C STRICT VOLATILE PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@.ai_route_history() IS
    'The last 1024 changes of state of the routes and endpoints since server start, oldest first';

CREATE VIEW @extschema@.ai_route_history AS SELECT * FROM @extschema@.ai_route_history();

CREATE FUNCTION @extschema@.ai_route_set(
    endpoint text,
    model    text,
    open     boolean,
    hold     interval DEFAULT '60s')
RETURNS void
AS 'MODULE_PATHNAME', 'ai_route_set'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.ai_route_set(text, text, boolean, interval) IS
    'Open a route (model NULL: every route of the endpoint) for hold, or close it, by hand';

-- Route health names the models and endpoints in use: for monitoring roles
-- only.  Opening or closing a route steers every session: superuser, or a
-- role the administrator grants it to.
REVOKE ALL ON FUNCTION @extschema@.ai_route_health() FROM PUBLIC;
REVOKE ALL ON @extschema@.ai_route_health FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.ai_route_health() TO pg_read_all_stats;
GRANT SELECT ON @extschema@.ai_route_health TO pg_read_all_stats;
REVOKE ALL ON FUNCTION @extschema@.ai_route_history() FROM PUBLIC;
REVOKE ALL ON @extschema@.ai_route_history FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.ai_route_history() TO pg_read_all_stats;
GRANT SELECT ON @extschema@.ai_route_history TO pg_read_all_stats;
REVOKE ALL ON FUNCTION @extschema@.ai_route_set(text, text, boolean, interval) FROM PUBLIC;

-- The open routes a call passed over before an attempt.
ALTER TABLE @extschema@.ai_call_log ADD COLUMN skipped_routes text;
COMMENT ON COLUMN @extschema@.ai_call_log.skipped_routes IS
    'The open routes the call passed over, without a request, just before this attempt, with their state';

-- Every change of state of a route's breaker, one row each, written by the
-- log writer of the database whose session made it (ai_route_history()
-- keeps the server's last 1024 since start; this table keeps them all, up
-- to ai_resilience.log_retention).
CREATE SEQUENCE @extschema@.ai_route_events_id_seq;

CREATE TABLE @extschema@.ai_route_events (
    id                   bigint PRIMARY KEY
                         DEFAULT pg_catalog.nextval('@extschema@.ai_route_events_id_seq'::pg_catalog.regclass),
    at                   timestamptz NOT NULL,
    endpoint             text NOT NULL,
    model                text,
    from_state           text NOT NULL,
    to_state             text NOT NULL,
    reason               text NOT NULL,
    consecutive_failures integer NOT NULL,
    window_requests      integer NOT NULL,
    window_failures      integer NOT NULL,
    next_probe_at        timestamptz,
    error_class          text,
    error_code           integer,
    backend_pid          integer NOT NULL
);
ALTER SEQUENCE @extschema@.ai_route_events_id_seq OWNED BY @extschema@.ai_route_events.id;

CREATE INDEX ai_route_events_at_idx ON @extschema@.ai_route_events (at);

COMMENT ON TABLE @extschema@.ai_route_events IS
    'One row per change of state of a route''s (endpoint, model) or endpoint''s (model NULL) circuit breaker';

SELECT pg_catalog.pg_extension_config_dump('@extschema@.ai_route_events'::pg_catalog.regclass, '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.ai_route_events_id_seq'::pg_catalog.regclass, '');

REVOKE ALL ON @extschema@.ai_route_events FROM PUBLIC;
GRANT SELECT ON @extschema@.ai_route_events TO pg_read_all_stats;
