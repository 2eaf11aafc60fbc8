-- route health (issue 10)

CREATE FUNCTION ai_route_health(
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

COMMENT ON FUNCTION ai_route_health() IS
    'The circuit breaker of every route (endpoint, model) and endpoint (model NULL), shared by all sessions';

CREATE VIEW ai_route_health AS SELECT * FROM ai_route_health();

CREATE FUNCTION ai_route_history(
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

COMMENT ON FUNCTION ai_route_history() IS
    'The last 1024 changes of state of the routes and endpoints since server start, oldest first';

CREATE VIEW ai_route_history AS SELECT * FROM ai_route_history();

CREATE FUNCTION ai_route_set(
    endpoint text,
    model    text,
    open     boolean,
    hold     interval DEFAULT '60s')
RETURNS void
AS 'MODULE_PATHNAME', 'ai_route_set'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION ai_route_set(text, text, boolean, interval) IS
    'Open a route (model NULL: every route of the endpoint) for hold, or close it, by hand';

-- Route health names the models and endpoints in use: for monitoring roles
-- only.  Opening or closing a route steers every session: superuser, or a
-- role the administrator grants it to.
REVOKE ALL ON FUNCTION ai_route_health() FROM PUBLIC;
REVOKE ALL ON ai_route_health FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ai_route_health() TO pg_read_all_stats;
GRANT SELECT ON ai_route_health TO pg_read_all_stats;
REVOKE ALL ON FUNCTION ai_route_history() FROM PUBLIC;
REVOKE ALL ON ai_route_history FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ai_route_history() TO pg_read_all_stats;
GRANT SELECT ON ai_route_history TO pg_read_all_stats;
REVOKE ALL ON FUNCTION ai_route_set(text, text, boolean, interval) FROM PUBLIC;

-- end of route health (issue 10)
