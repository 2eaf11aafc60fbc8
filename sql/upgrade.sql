-- Upgrades: versions 0.1.0 and 0.2.0 created, given log rows, then updated with
-- ALTER EXTENSION ... UPDATE has the same objects as a fresh install of the
-- current version (compared in the catalogs, line by line), and keeps its
-- rows.  Each installation gets a database of its own: an extension exists
-- once per database.
\getenv sim AI_SIM_URL
SELECT current_database() AS regress_db \gset

-- One line per property of the extension's objects: what each is, its
-- columns, defaults, indexes, constraints, functions (signature, result,
-- cost, volatility, privileges), views, comments, sequence, row-level
-- security policies and pg_dump configuration.  Privileges are expanded, the owner shown as OWNER.
SELECT $describe$
WITH ext AS (
    SELECT oid, extnamespace FROM pg_extension WHERE extname = 'pg_ai_resilience'
), members AS (
    SELECT d.classid, d.objid FROM pg_depend d, ext
    WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e'
), rels AS (
    SELECT c.* FROM pg_class c JOIN members m ON m.classid = 'pg_class'::regclass AND m.objid = c.oid
), funcs AS (
    SELECT p.* FROM pg_proc p JOIN members m ON m.classid = 'pg_proc'::regclass AND m.objid = p.oid
), grants AS (
    SELECT r.relname::text AS object, r.relowner AS owner, a.grantee, a.privilege_type
    FROM rels r, aclexplode(coalesce(r.relacl, acldefault(CASE r.relkind WHEN 'S' THEN 's' ELSE 'r' END::"char", r.relowner))) a
    UNION ALL
    SELECT f.oid::regprocedure::text, f.proowner, a.grantee, a.privilege_type
    FROM funcs f, aclexplode(coalesce(f.proacl, acldefault('f'::"char", f.proowner))) a
)
SELECT 'extension' AS kind, format('version %s, relocatable %s, schema %s', extversion, extrelocatable,
                                   extnamespace::regnamespace) AS line
FROM pg_extension WHERE extname = 'pg_ai_resilience'
UNION ALL
SELECT 'member', pg_describe_object(classid, objid, 0) FROM members
UNION ALL
SELECT 'column', format('%s.%s #%s %s%s%s', r.relname, a.attname, a.attnum,
                        format_type(a.atttypid, a.atttypmod),
                        CASE WHEN a.attnotnull THEN ' not null' ELSE '' END,
                        ' default ' || pg_get_expr(d.adbin, d.adrelid))
FROM rels r JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
UNION ALL
SELECT 'comment', format('%s: %s', pg_describe_object(c.classoid, c.objoid, c.objsubid), c.description)
FROM pg_description c JOIN members m ON m.classid = c.classoid AND m.objid = c.objoid
UNION ALL
SELECT 'index', pg_get_indexdef(i.indexrelid)
FROM rels r JOIN pg_index i ON i.indrelid = r.oid
UNION ALL
SELECT 'constraint', format('%s %s: %s', r.relname, c.conname, pg_get_constraintdef(c.oid))
FROM rels r JOIN pg_constraint c ON c.conrelid = r.oid
UNION ALL
-- (one line per function: the newlines of an SQL or PL/pgSQL body as \n)
SELECT 'function', format('%s returns %s: %s %s, cost %s, rows %s, %s, strict %s, security definer %s, %s %s',
                          f.oid::regprocedure, pg_get_function_result(f.oid), l.lanname,
                          f.provolatile, f.procost, f.prorows, f.proparallel, f.proisstrict,
                          f.prosecdef, f.probin,
                          -- a PL body spans lines: its digest keeps it one line
                          CASE WHEN l.lanname = 'c' THEN f.prosrc ELSE 'source md5 ' || md5(f.prosrc) END)
FROM funcs f JOIN pg_language l ON l.oid = f.prolang
UNION ALL
SELECT 'function', format('%s arguments: %s', f.oid::regprocedure, pg_get_function_arguments(f.oid))
FROM funcs f
UNION ALL
SELECT 'view', format('%s: %s', r.relname, regexp_replace(pg_get_viewdef(r.oid), '\s+', ' ', 'g'))
FROM rels r WHERE r.relkind = 'v'
UNION ALL
SELECT 'sequence', format('%s: %s start %s, increment %s, cache %s, cycle %s, owned by %s',
                          r.relname, format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement,
                          s.seqcache, s.seqcycle,
                          (SELECT pg_describe_object(d.refclassid, d.refobjid, d.refobjsubid)
                           FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                             AND d.objid = r.oid AND d.deptype = 'a'))
FROM rels r JOIN pg_sequence s ON s.seqrelid = r.oid
UNION ALL
SELECT 'policy', format('%s %s: %s %s, using %s, check %s', r.relname, p.polname, p.polcmd,
                        CASE WHEN r.relrowsecurity THEN 'enabled' ELSE 'disabled' END,
                        pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid))
FROM rels r JOIN pg_policy p ON p.polrelid = r.oid
UNION ALL
SELECT 'pg_dump', format('%s where %L', c::regclass, w)
FROM pg_extension e, unnest(e.extconfig, e.extcondition) AS u(c, w)
WHERE e.extname = 'pg_ai_resilience'
UNION ALL
SELECT 'grant', format('%s to %s: %s', object,
                       CASE WHEN grantee = 0 THEN 'PUBLIC' WHEN grantee = owner THEN 'OWNER'
                            ELSE grantee::regrole::text END,
                       string_agg(privilege_type, ', ' ORDER BY privilege_type))
FROM grants GROUP BY object, owner, grantee
$describe$ AS describe \gset

-- 0.1.0, with a row written by the current library's log writer (the
-- library is upgraded before ALTER EXTENSION UPDATE runs), then updated.
-- A nextval(text) planted before CREATE EXTENSION, as a database owner
-- could, is what 0.1.0's column default calls; after the update it is not.
CREATE DATABASE air_upgrade_old;
\c air_upgrade_old
CREATE TABLE planted_calls (called_at timestamptz);
CREATE FUNCTION public.nextval(text) RETURNS bigint LANGUAGE sql AS $$
    INSERT INTO public.planted_calls VALUES (pg_catalog.now());
    SELECT pg_catalog.nextval(pg_catalog.concat('public.', $1)::pg_catalog.regclass);
$$;
SET client_min_messages = warning;
CREATE EXTENSION pg_ai_resilience VERSION '0.1.0';
RESET client_min_messages;
SELECT extversion FROM pg_extension WHERE extname = 'pg_ai_resilience';
SELECT set_config('ai_resilience.endpoints', :'sim' || '/v1', false) IS NOT NULL AS set;
SELECT ai_chat('before the update', ARRAY['ok']);
SELECT ai_flush_log() AS flushed;
INSERT INTO ai_call_log (call_id, attempt, route_index, route_attempt, started_at, model,
                         endpoint, outcome, role_name, backend_pid)
VALUES ('00000000-0000-0000-0000-000000000001', 1, 0, 1, '2026-11-25 12:00+00', 'by hand',
        'http://old.example/v1', 'success', 'someone', 1);
SELECT id, model, outcome, role_name = current_user OR role_name = 'someone' AS role
FROM ai_call_log ORDER BY id;
SELECT count(*) AS planted_calls FROM planted_calls;
ALTER EXTENSION pg_ai_resilience UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'pg_ai_resilience';
-- the rows are kept; new rows continue the ids and fill session_role
SELECT id, model, outcome, session_role IS NULL AS no_session_role FROM ai_call_log ORDER BY id;
SELECT ai_chat('after the update', ARRAY['ok']);
SELECT ai_flush_log() AS flushed;
SELECT id, model, session_role = session_user AS session_role FROM ai_call_log ORDER BY id;
SELECT count(*) AS planted_calls FROM planted_calls;
SELECT string_agg(kind || ': ' || line, E'\n' ORDER BY kind, line) AS upgraded
FROM (:describe) d \gset

-- 0.2.0 (installed through 0.1.0's script and the 0.1.0--0.2.0 update, as
-- PostgreSQL does when a version has no install script of its own), then
-- updated to the current version.
CREATE DATABASE air_upgrade_mid;
\c air_upgrade_mid
SET client_min_messages = warning;
CREATE EXTENSION pg_ai_resilience VERSION '0.2.0';
RESET client_min_messages;
SELECT extversion FROM pg_extension WHERE extname = 'pg_ai_resilience';
SELECT set_config('ai_resilience.endpoints', :'sim' || '/v1', false) IS NOT NULL AS set;
SELECT ai_chat('before the update', ARRAY['ok']);
SELECT ai_flush_log() AS flushed;
ALTER EXTENSION pg_ai_resilience UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'pg_ai_resilience';
-- the row written into the 0.2.0 table is kept; new rows fill the columns
-- of 0.3.0 (attribution.sql tests their values)
SET application_name = 'upgraded';
SET ai_resilience.tag = 'upgraded';
SELECT ai_chat('after the update', ARRAY['ok+litellm']);
SELECT ai_flush_log() AS flushed;
SELECT id, model, outcome, session_role = session_user AS session_role,
       application_name, tag, provider_request_id IS NOT NULL AS provider_request_id
FROM ai_call_log ORDER BY id;
RESET ai_resilience.tag;
RESET application_name;
SELECT string_agg(kind || ': ' || line, E'\n' ORDER BY kind, line) AS upgraded_mid
FROM (:describe) d \gset

-- a fresh install of the current version
CREATE DATABASE air_upgrade_new;
\c air_upgrade_new
CREATE EXTENSION pg_ai_resilience;
\pset format unaligned
\pset tuples_only on
SELECT kind || ': ' || line FROM (:describe) d ORDER BY kind, line;
\pset format aligned
\pset tuples_only off

-- the same, line by line: nothing only in one of them
SELECT u AS only_after_update
FROM regexp_split_to_table(:'upgraded', E'\n') u
EXCEPT SELECT kind || ': ' || line FROM (:describe) d;
SELECT kind || ': ' || line AS only_in_fresh_install FROM (:describe) d
EXCEPT SELECT regexp_split_to_table(:'upgraded', E'\n');
SELECT u AS only_after_update_from_0_2_0
FROM regexp_split_to_table(:'upgraded_mid', E'\n') u
EXCEPT SELECT kind || ': ' || line FROM (:describe) d;
SELECT kind || ': ' || line AS only_in_fresh_install_not_0_2_0 FROM (:describe) d
EXCEPT SELECT regexp_split_to_table(:'upgraded_mid', E'\n');

\c :regress_db
DROP DATABASE air_upgrade_old WITH (FORCE);
DROP DATABASE air_upgrade_mid WITH (FORCE);
DROP DATABASE air_upgrade_new WITH (FORCE);
