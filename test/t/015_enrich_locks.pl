# ai_enrich and concurrency (issue 11): two overlapping runs on one table
# never call twice for a row (FOR UPDATE SKIP LOCKED), and an UPDATE of a
# row while its slice waits on the gateway waits for the slice's commit
# instead of making PostgreSQL re-run the call, as it does for the UPDATE
# idiom (EvalPlanQual re-evaluates ai_chat on the new row version).
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use AirCluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = new_air_cluster('enrich_locks', conf => q{
ai_resilience.log_prompts = on
ai_resilience.max_concurrency = 4
});

$node->safe_psql('postgres', q{
CREATE TABLE t (id integer PRIMARY KEY, body text, summary text);
INSERT INTO t SELECT i, 'row ' || i FROM generate_series(1, 40) i;
CREATE TABLE u (id integer PRIMARY KEY, body text, summary text, other integer);
INSERT INTO u VALUES (1, 'slow row', NULL, 0);
CREATE TABLE v (id integer PRIMARY KEY, body text, summary text, other integer);
INSERT INTO v VALUES (1, 'old idiom row', NULL, 0);
});

# two runs at once, slices of 8 rows that take 300 ms per call
my $call = q{CALL ai_enrich('t', 'id', 'body', 'summary', ARRAY['ok+latency-300'], slice_rows => 8)};
my ($h1, $out1, $err1) = start_session($node, $call);
my ($h2, $out2, $err2) = start_session($node, $call);
$h1->finish;
$h2->finish;
is($node->safe_psql('postgres', q{SELECT count(*) FROM t WHERE summary = 'echo: ' || body}),
	'40', 'two overlapping runs fill every row');
is($node->safe_psql('postgres',
		q{SELECT count(*) || ' ' || bool_and(rows_filled > 0) || ' ' || sum(rows_filled)
		  FROM ai_enrich_runs WHERE status = 'completed'}),
	'2 true 40', 'both runs took rows, 40 in all');
wait_log_written($node);
is($node->safe_psql('postgres',
		q{SELECT count(*) || ' ' || count(DISTINCT prompt) FROM ai_call_log WHERE model = 'ok+latency-300'}),
	'40 40', 'one call per row: SKIP LOCKED kept the runs apart');

# an UPDATE of a row being enriched waits for the slice, and no call is repeated
my ($he, $oute, $erre) = start_session($node,
	q{CALL ai_enrich('u', 'id', 'body', 'summary', ARRAY['ok+latency-1500'])});
waiting_pid($node, 'CALL ai_enrich%');
my ($hu, $outu, $erru) = start_session($node, q{UPDATE u SET other = other + 1 WHERE id = 1});
ok($node->poll_query_until('postgres', q{SELECT count(*) = 1 FROM pg_stat_activity
		WHERE query LIKE 'UPDATE u%' AND wait_event_type = 'Lock'}),
	'the concurrent UPDATE waits for the slice\'s row lock');
$he->finish;
$hu->finish;
is($node->safe_psql('postgres', q{SELECT summary || ' ' || other FROM u}),
	'echo: slow row 1', 'the row keeps both the answer and the concurrent update');
wait_log_written($node);
is($node->safe_psql('postgres', q{SELECT count(*) FROM ai_call_log WHERE prompt = 'slow row'}),
	'1', 'the row was called once');

# the same with the UPDATE idiom: the concurrent update commits first, and
# PostgreSQL re-runs ai_chat on the new row version: paid twice
my ($hi, $outi, $erri) = start_session($node, q{BEGIN},
	q{UPDATE v SET other = other + 1 WHERE id = 1}, q{SELECT pg_sleep(2)}, q{COMMIT});
ok($node->poll_query_until('postgres',
		q{SELECT count(*) = 1 FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(2)'}),
	'the concurrent update holds the row');
my ($ho, $outo, $erro) = start_session($node,
	q{UPDATE v SET summary = ai_chat(body, ARRAY['ok']) WHERE summary IS NULL});
$hi->finish;
$ho->finish;
wait_log_written($node);
is($node->safe_psql('postgres', q{SELECT count(*) FROM ai_call_log WHERE prompt = 'old idiom row'}),
	'2', 'the UPDATE idiom called twice for the row updated concurrently');

$node->stop;
done_testing();
