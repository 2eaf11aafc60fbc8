-- ai_enrich: fill a column from a prompt over a table in slices that each
-- commit.  The simulator's model "ok" answers "echo: <prompt>"; a prompt
-- that starts with "sim:<behaviour> " picks its own behaviour, so one table
-- mixes rows that answer and rows that fail.
SELECT ai_flush_log() AS flushed;
TRUNCATE ai_call_log;
SELECT use_gateways('v1');
SET ai_resilience.max_concurrency = 4;
SET ai_resilience.log_prompts = on;
-- errors without the PL/pgSQL context lines; psql keeps the SQLSTATE
\set SHOW_CONTEXT never

CREATE TABLE items (id integer PRIMARY KEY, body text, summary text);
INSERT INTO items SELECT i, 'item ' || i FROM generate_series(1, 11) i;
-- rows 3 and 7 fail on every attempt; rows 9 and 11 have nothing to ask
-- (a NULL and an empty prompt) and are left alone
UPDATE items SET body = 'sim:status-500 item ' || id WHERE id IN (3, 7);
UPDATE items SET body = NULL WHERE id = 9;
UPDATE items SET body = '' WHERE id = 11;

-- slices of 4 rows: each commits, and says so
CALL ai_enrich('items', 'id', 'body', 'summary', ARRAY['ok'], slice_rows => 4, failure_threshold => 5);
SELECT id, summary FROM items ORDER BY id;
SELECT key, tries, given_up, replace(last_error, (SELECT substr(url, 8) FROM sim), 'SIM') AS last_error,
       last_call_id IS NOT NULL AS has_call_id
FROM ai_enrich_failures ORDER BY key;
SELECT run_id, target, result_column, status, slices, rows_filled, rows_failed, rows_given_up, message,
       ended_at IS NOT NULL AS ended
FROM ai_enrich_runs ORDER BY run_id;
-- the failure's call_id leads to its attempts in the log
SELECT ai_flush_log() AS flushed;
SELECT f.key, count(*) AS attempts, min(l.code) AS code, bool_and(l.prompt = i.body) AS same_prompt
FROM ai_enrich_failures f JOIN ai_call_log l ON l.call_id = f.last_call_id JOIN items i ON i.id::text = f.key
GROUP BY f.key ORDER BY f.key;
-- one successful call per filled row
SELECT count(*) AS successes, count(DISTINCT prompt) AS prompts FROM ai_call_log WHERE outcome = 'success';

-- a second run tries only the failed rows, once each; with failure_threshold
-- 1 two failures end it in ERROR RA004 (terse: the DETAIL, the last error,
-- names the simulator's port)
\set VERBOSITY terse
CALL ai_enrich('items', 'id', 'body', 'summary', ARRAY['ok'], slice_rows => 4, failure_threshold => 1);
\set VERBOSITY default
\echo :LAST_ERROR_SQLSTATE
SELECT key, tries, given_up FROM ai_enrich_failures ORDER BY key;
-- the third failure of a row gives it up (max_tries 3): listed in a WARNING
CALL ai_enrich('items', 'id', 'body', 'summary', ARRAY['ok'], failure_threshold => 5);
SELECT key, tries, given_up FROM ai_enrich_failures ORDER BY key;
-- given-up rows are not tried again, but listed at every run
SELECT ai_flush_log() AS flushed;
SELECT count(*) AS attempts_before FROM ai_call_log \gset
CALL ai_enrich('items', 'id', 'body', 'summary', ARRAY['ok']);
SELECT ai_flush_log() AS flushed;
SELECT count(*) - :attempts_before AS new_attempts FROM ai_call_log;
-- fixed and its entry deleted, a row is tried again; its success clears it
UPDATE items SET body = 'item 3 fixed' WHERE id = 3;
DELETE FROM ai_enrich_failures WHERE key = '3';
CALL ai_enrich('items', 'id', 'body', 'summary', ARRAY['ok']);
SELECT id, summary FROM items WHERE id IN (3, 7) ORDER BY id;
SELECT key, tries, given_up FROM ai_enrich_failures ORDER BY key;
SELECT run_id, status, slices, rows_filled, rows_failed, rows_given_up, message FROM ai_enrich_runs ORDER BY run_id;

-- the threshold ends the run in ERROR after every success is committed:
-- rows 1-3 answer, rows 4-6 fail
CREATE TABLE outage (id integer PRIMARY KEY, body text, summary text);
INSERT INTO outage SELECT i, CASE WHEN i > 3 THEN 'sim:status-502 ' ELSE '' END || 'o' || i FROM generate_series(1, 6) i;
\set VERBOSITY terse
CALL ai_enrich('outage', 'id', 'body', 'summary', ARRAY['ok'], slice_rows => 3, failure_threshold => 2);
\set VERBOSITY default
\echo :LAST_ERROR_SQLSTATE
SELECT id, summary FROM outage ORDER BY id;
SELECT status, slices, rows_filled, rows_failed, message FROM ai_enrich_runs WHERE target = 'outage'::regclass;

-- a failed row is retried after the rows never tried, one try per run:
-- a 3-row slice after the outage takes the three new rows first
INSERT INTO outage SELECT i, 'o' || i FROM generate_series(7, 9) i;
UPDATE outage SET body = 'o' || id WHERE id > 3;
CALL ai_enrich('outage', 'id', 'body', 'summary', ARRAY['ok'], slice_rows => 3, max_rows => 3);
SELECT id, summary IS NOT NULL AS filled FROM outage ORDER BY id;
CALL ai_enrich('outage', 'id', 'body', 'summary', ARRAY['ok'], slice_rows => 3);
SELECT count(*) AS unfilled FROM outage WHERE summary IS NULL;
SELECT count(*) AS failures_left FROM ai_enrich_failures WHERE target = 'outage'::regclass;

-- max_rows and time_budget stop a run that has rows left
CREATE TABLE many (id bigint PRIMARY KEY, body text NOT NULL, summary varchar);
INSERT INTO many SELECT i, 'm' || i FROM generate_series(1, 10) i;
CALL ai_enrich('many', 'id', $$format('Say %s', body)$$, 'summary', ARRAY['ok'], slice_rows => 3, max_rows => 4);
SELECT count(summary) AS filled, min(summary) AS example FROM many;
CALL ai_enrich('many', 'id', 'body', 'summary', ARRAY['ok'], time_budget => '1 microsecond');
SELECT status, slices, rows_filled, message FROM ai_enrich_runs WHERE target = 'many'::regclass ORDER BY run_id;

-- a run cancelled (here by statement_timeout) cannot record its end: the
-- next run marks it interrupted; the cancelled slice's rows are still to do
SET statement_timeout = '300ms';
CALL ai_enrich('many', 'id', 'body', 'summary', ARRAY['ok+latency-3000']);
RESET statement_timeout;
CALL ai_enrich('many', 'id', 'body', 'summary', ARRAY['ok'], max_rows => 1);
SELECT status, slices, rows_filled, message FROM ai_enrich_runs WHERE target = 'many'::regclass ORDER BY run_id;
SELECT count(summary) AS filled FROM many;

-- a prompt over max_prompt_bytes would refuse its slice: it is given up at once
UPDATE many SET body = repeat('x', 200) WHERE id = 8;
SET ai_resilience.max_prompt_bytes = 100;
CALL ai_enrich('many', 'id', 'body', 'summary', ARRAY['ok'], failure_threshold => 1);
RESET ai_resilience.max_prompt_bytes;
SELECT key, tries, given_up, last_error FROM ai_enrich_failures WHERE target = 'many'::regclass;
SELECT count(summary) AS filled FROM many;

-- bad arguments: a clear error before any call and before any run is recorded
SELECT ai_flush_log() AS flushed;
SELECT count(*) AS attempts_before FROM ai_call_log \gset
SELECT count(*) AS runs_before FROM ai_enrich_runs \gset
CREATE TABLE nokey (id integer, body text, summary text, n integer);
CREATE VIEW items_view AS SELECT * FROM items;
CREATE PROCEDURE try_enrich(statement text) LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE statement;
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE '% %', SQLSTATE, SQLERRM;
END $$;
CALL try_enrich($$CALL ai_enrich(NULL, 'id', 'body', 'summary')$$);
CALL try_enrich($$CALL ai_enrich('items', 'id', NULL, 'summary')$$);
CALL try_enrich($$CALL ai_enrich('nosuchtable', 'id', 'body', 'summary')$$);
CALL try_enrich($$CALL ai_enrich('items_view', 'id', 'body', 'summary')$$);
CALL try_enrich($$CALL ai_enrich('items', 'nosuch', 'body', 'summary')$$);
CALL try_enrich($$CALL ai_enrich('items', 'id', 'body', 'nosuch')$$);
CALL try_enrich($$CALL ai_enrich('nokey', 'id', 'body', 'summary')$$);
CALL try_enrich($$CALL ai_enrich('nokey', 'body', 'body', 'summary')$$);
CALL try_enrich($$CALL ai_enrich('items', 'id', 'body', 'id')$$);
CALL try_enrich($$CALL ai_enrich('items', 'id', 'body', 'summary')$$);
ALTER TABLE items ADD COLUMN n integer;
CALL try_enrich($$CALL ai_enrich('items', 'id', 'body', 'n')$$);
CALL try_enrich($$CALL ai_enrich('items', 'id', 'bdy', 'summary')$$);
CALL try_enrich($$CALL ai_enrich('items', 'id', 'body ||', 'summary')$$);
CALL try_enrich($$CALL ai_enrich('items', 'id', 'body', 'summary', slice_rows => 0)$$);
CALL try_enrich($$CALL ai_enrich('items', 'id', 'body', 'summary', max_tries => NULL)$$);
CALL try_enrich($$CALL ai_enrich('items', 'id', 'body', 'summary', failure_threshold => -1)$$);
CALL try_enrich($$CALL ai_enrich('items', 'id', 'body', 'summary', max_rows => 0)$$);
CALL try_enrich($$CALL ai_enrich('items', 'id', 'body', 'summary', time_budget => '-1s')$$);
CALL try_enrich($$CALL ai_enrich('items', 'id', 'body', 'summary', ARRAY[]::text[])$$);
CALL try_enrich($$CALL ai_enrich('items', 'id', 'body', 'summary', ARRAY['ok'], max_tokens => 0)$$);
-- it commits: not inside a transaction block
BEGIN;
CALL ai_enrich('items', 'id', 'body', 'summary', ARRAY['ok']);
ROLLBACK;
SELECT ai_flush_log() AS flushed;
SELECT count(*) - :attempts_before AS new_attempts FROM ai_call_log;
SELECT count(*) - :runs_before AS new_runs FROM ai_enrich_runs;
DROP PROCEDURE try_enrich(text);
DROP VIEW items_view;
DROP TABLE nokey;

-- several roles: each sees and writes the failures and runs of the tables
-- whose result column it may read / update, not the others'
CREATE ROLE enrich_a;
CREATE ROLE enrich_b;
GRANT EXECUTE ON PROCEDURE ai_enrich(regclass, name, text, name, text[], text, integer, double precision,
                                     integer, bigint, interval, integer, integer) TO enrich_a, enrich_b;
GRANT EXECUTE ON FUNCTION
    ai_chat_batch(text[], text[], text, integer, double precision, text, boolean),
    ai_chat_batch_keyed(anyarray, text[], text[], text, integer, double precision, text, boolean)
TO enrich_a, enrich_b;
CREATE TABLE a_items (id integer PRIMARY KEY, body text, summary text);
CREATE TABLE b_items (id integer PRIMARY KEY, body text, summary text);
INSERT INTO a_items VALUES (1, 'a1'), (2, 'sim:status-400 a2');
INSERT INTO b_items VALUES (1, 'b1'), (2, 'sim:status-400 b2');
ALTER TABLE a_items OWNER TO enrich_a;
ALTER TABLE b_items OWNER TO enrich_b;
SET ROLE enrich_a;
CALL ai_enrich('a_items', 'id', 'body', 'summary', ARRAY['ok'], failure_threshold => 1);
SELECT target, key, tries FROM ai_enrich_failures;
SELECT target, status, rows_filled, rows_failed FROM ai_enrich_runs;
-- enrich_b's table is not enrich_a's to enrich
CALL ai_enrich('b_items', 'id', 'body', 'summary', ARRAY['ok']);
SET ROLE enrich_b;
CALL ai_enrich('b_items', 'id', 'body', 'summary', ARRAY['ok'], failure_threshold => 1);
SELECT target, key, tries FROM ai_enrich_failures;
-- nor can it see, change or forge enrich_a's entries
WITH u AS (UPDATE ai_enrich_failures SET given_up = true WHERE target = 'a_items'::regclass RETURNING 1)
SELECT count(*) AS updated FROM u;
WITH d AS (DELETE FROM ai_enrich_runs WHERE target = 'a_items'::regclass RETURNING 1)
SELECT count(*) AS deleted FROM d;
INSERT INTO ai_enrich_failures VALUES ('a_items', 'summary', '1', 9, true, NULL, NULL, now(), now(), 0);
-- a role granted SELECT on a table's column sees its entries, but cannot change them
RESET ROLE;
GRANT SELECT ON a_items TO enrich_b;
SET ROLE enrich_b;
SELECT target, key, tries FROM ai_enrich_failures ORDER BY target::text;
WITH d AS (DELETE FROM ai_enrich_failures WHERE target = 'a_items'::regclass RETURNING 1)
SELECT count(*) AS deleted FROM d;
RESET ROLE;
SELECT target, key, tries, given_up FROM ai_enrich_failures WHERE target IN ('a_items'::regclass, 'b_items'::regclass)
ORDER BY target::text;
-- enrich_a drops (or renames) its result column: its entries disappear
-- from view, and the tables stay readable and writable for enrich_b
SET ROLE enrich_a;
ALTER TABLE a_items DROP COLUMN summary;
SELECT target, key, tries FROM ai_enrich_failures;
SET ROLE enrich_b;
SELECT target, key, tries FROM ai_enrich_failures ORDER BY target::text;
SELECT target, status FROM ai_enrich_runs ORDER BY target::text, run_id;
UPDATE b_items SET body = 'b2' WHERE id = 2;
CALL ai_enrich('b_items', 'id', 'body', 'summary', ARRAY['ok'], failure_threshold => 1);
SELECT id, summary FROM b_items ORDER BY id;
RESET ROLE;
DROP TABLE a_items, b_items;
DELETE FROM ai_enrich_failures WHERE target::oid NOT IN (SELECT oid FROM pg_class);
DELETE FROM ai_enrich_runs WHERE target::oid NOT IN (SELECT oid FROM pg_class);
REVOKE ALL ON PROCEDURE ai_enrich(regclass, name, text, name, text[], text, integer, double precision,
                                  integer, bigint, interval, integer, integer) FROM enrich_a, enrich_b;
REVOKE ALL ON FUNCTION
    ai_chat_batch(text[], text[], text, integer, double precision, text, boolean),
    ai_chat_batch_keyed(anyarray, text[], text[], text, integer, double precision, text, boolean)
FROM enrich_a, enrich_b;
DROP ROLE enrich_a;
DROP ROLE enrich_b;

-- functions a database owner planted in the extension's schema (public
-- here) that would outrank the batch function ai_enrich calls, or make its
-- call ambiguous: ai_enrich calls neither, and runs
CREATE TABLE planted_calls (fn text);
CREATE FUNCTION public.ai_chat_batch_keyed(keys tid[], prompts text[], models text[], system_prompt text,
                                           max_tokens integer, temperature double precision, on_error text)
RETURNS TABLE (key tid, response text, call_id uuid, attempts integer, error text)
LANGUAGE sql AS $$
    INSERT INTO public.planted_calls VALUES ('keyed') RETURNING NULL::tid, 'planted', NULL::uuid, 0, NULL::text
$$;
CREATE FUNCTION public.ai_chat_batch(prompts text[], models text[], system_prompt text, max_tokens integer,
                                     temperature double precision)
RETURNS TABLE (ord integer, response text, call_id uuid, attempts integer, error text)
LANGUAGE sql AS $$
    INSERT INTO public.planted_calls VALUES ('batch') RETURNING 0, 'planted', NULL::uuid, 0, NULL::text
$$;
CREATE TABLE planted_items (id integer PRIMARY KEY, body text, summary text);
INSERT INTO planted_items VALUES (1, 'p1'), (2, 'p2');
CALL ai_enrich('planted_items', 'id', 'body', 'summary', ARRAY['ok']);
SELECT id, summary FROM planted_items ORDER BY id;
SELECT count(*) AS planted_calls FROM planted_calls;
DROP FUNCTION public.ai_chat_batch_keyed(tid[], text[], text[], text, integer, double precision, text);
DROP FUNCTION public.ai_chat_batch(text[], text[], text, integer, double precision);
DROP TABLE planted_calls, planted_items;

-- EXECUTE is not granted to PUBLIC
SELECT has_function_privilege('public', p.oid, 'EXECUTE') AS public_may_call
FROM pg_proc p WHERE p.proname = 'ai_enrich';
DROP TABLE items, outage, many;
