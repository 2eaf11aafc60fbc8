# ai_enrich as a pg_cron job (issue 11), side by side with the UPDATE idiom
# it replaces: real pg_cron 1.4 (minute schedules, so this test takes about
# five minutes), a job every minute on each of two copies of a 300-row
# table, an outage of the model between the first and the second run, then
# recovery.  Every 40th row fails its first call (flaky-3: three failed
# attempts) and answers the next.
#
# ai_enrich must fill every row exactly once (one successful call per row,
# no paid answer thrown away), and cron.job_run_details must show succeeded
# before the outage, failed during it, succeeded after.  The idiom's
# statuses and the answers it threw away are printed for comparison.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use AirCluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(sleep);

my $node = new_air_cluster('enrich_cron', conf => q{
ai_resilience.log_prompts = on
ai_resilience.max_concurrency = 4
cron.database_name = 'postgres'
});
skip_if_sanitized($node);
# pg_cron runs each job over a libpq connection to cron.host
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'pg_cron,pg_ai_resilience'\n"
	  . "cron.host = '" . $node->host . "'\n");
$node->restart;
$node->safe_psql('postgres', 'CREATE EXTENSION pg_cron');
sim_control('up');

$node->safe_psql('postgres', q{
CREATE TABLE items_new (id integer PRIMARY KEY, body text NOT NULL, summary text);
INSERT INTO items_new
SELECT i, CASE WHEN i % 40 = 0 THEN 'sim:flaky-3 ' ELSE '' END || 'item ' || i || ' needs a summary'
FROM generate_series(1, 300) i;
CREATE TABLE items_old (LIKE items_new INCLUDING ALL);
INSERT INTO items_old SELECT * FROM items_new;
});

my $enrich = $node->safe_psql('postgres', q{
SELECT cron.schedule('* * * * *', $$CALL ai_enrich('items_new', 'id', 'body', 'summary', ARRAY['cron-new'],
    slice_rows => 25, max_rows => 150, failure_threshold => 5)$$)});
my $idiom = $node->safe_psql('postgres', q{
SELECT cron.schedule('* * * * *', $$UPDATE items_old SET summary = ai_chat(body, ARRAY['cron-old'])
    WHERE summary IS NULL$$)});

# Wait (up to 150 s: a minute boundary, then the run) until both jobs have
# finished n runs.
sub wait_runs
{
	my ($n) = @_;
	for (1 .. 1500)
	{
		my $done = $node->safe_psql('postgres', qq{
			SELECT count(*) FILTER (WHERE jobid = $enrich) >= $n AND count(*) FILTER (WHERE jobid = $idiom) >= $n
			FROM cron.job_run_details WHERE status IN ('succeeded', 'failed')});
		return 1 if $done eq 't';
		sleep(0.1);
	}
	return 0;
}

# Statuses of a job's first n runs, in order.
sub statuses
{
	my ($job, $n) = @_;
	return $node->safe_psql('postgres', qq{
		SELECT string_agg(status, ' ' ORDER BY start_time)
		FROM (SELECT status, start_time FROM cron.job_run_details WHERE jobid = $job
		      ORDER BY start_time LIMIT $n) r});
}

ok(wait_runs(1), 'first run of both jobs, before the outage');
sim_control('down?model=cron-new');
sim_control('down?model=cron-old');
ok(wait_runs(2), 'second run, during the outage');
sim_control('up');
ok(wait_runs(4), 'two more runs after the outage');
$node->safe_psql('postgres', "SELECT cron.unschedule($enrich), cron.unschedule($idiom)");
wait_log_written($node);

is(statuses($enrich, 4), 'succeeded failed succeeded succeeded',
	'ai_enrich: succeeded before the outage, failed during it, succeeded after');
like($node->safe_psql('postgres', qq{
		SELECT return_message FROM cron.job_run_details WHERE jobid = $enrich AND status = 'failed'}),
	qr/^ERROR:  ai_enrich: 25 rows of public\.items_new failed in run \d+, over failure_threshold 5; 0 rows filled/,
	'the failed run says why in job_run_details');
is($node->safe_psql('postgres', q{SELECT count(*) FROM items_new WHERE summary = 'echo: ' || body}),
	'300', 'ai_enrich filled every row');

# one successful call per row, and every paid answer is in the table
is($node->safe_psql('postgres', q{
		SELECT count(*) || ' ' || count(DISTINCT prompt) FROM ai_call_log
		WHERE model = 'cron-new' AND outcome = 'success'}),
	'300 300', 'ai_enrich: exactly one successful call per row');

# Answers paid for but not in the table, and their tokens: for each prompt,
# every success but the one whose answer the row holds.
sub wasted
{
	my ($model, $table) = @_;
	return $node->safe_psql('postgres', qq{
		SELECT count(*) || ' ' || coalesce(sum(s.prompt_tokens + s.completion_tokens), 0)
		FROM (SELECT l.*, row_number() OVER (PARTITION BY prompt ORDER BY id DESC) AS n
		      FROM ai_call_log l WHERE model = '$model' AND outcome = 'success') s
		LEFT JOIN $table t ON t.body = s.prompt AND t.summary = 'echo: ' || s.prompt AND s.n = 1
		WHERE t.id IS NULL});
}
is(wasted('cron-new', 'items_new'), '0 0', 'ai_enrich: no paid answer discarded (0 answers, 0 tokens)');
is($node->safe_psql('postgres', q{SELECT count(*) FROM ai_enrich_failures}),
	'0', 'ai_enrich: no failure left once every row is filled');

my $runs = $node->safe_psql('postgres', q{
	SELECT string_agg(format('%s %s/%s/%s', status, rows_filled, rows_failed, rows_given_up), ', ' ORDER BY run_id)
	FROM ai_enrich_runs});
diag("ai_enrich runs (status filled/failed/given up): $runs");
my ($old_wasted, $old_tokens) = split / /, wasted('cron-old', 'items_old');
cmp_ok($old_wasted, '>', 0, 'the UPDATE idiom threw paid answers away (rolled back with its failed runs)');
diag('UPDATE idiom: statuses ' . statuses($idiom, 4)
	  . ', rows filled ' . $node->safe_psql('postgres', 'SELECT count(summary) FROM items_old') . ' of 300'
	  . ", paid answers thrown away $old_wasted ($old_tokens tokens)");
diag('ai_enrich: statuses ' . statuses($enrich, 4) . ', rows filled 300 of 300, paid answers thrown away '
	  . wasted('cron-new', 'items_new'));

$node->stop;
done_testing();
