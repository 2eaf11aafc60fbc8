# One user cannot make others' log rows be lost: a database whose writer is
# blocked by a lock on its ai_call_log fills only its own share of the queue
# (a quarter) and loses only its own records, reported by one WARNING per
# statement; parallel workers holding every free worker slot do not keep
# the log writers from writing; with fewer writers than busy databases the
# databases take turns.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use AirCluster;

# worker slots: the logical replication launcher, 2 log writers, and 2 that
# any user's parallel query can take
my $node = new_air_cluster('sharing', conf => q{
ai_resilience.log_queue_size = 16
ai_resilience.log_queue_wait = '200ms'
ai_resilience.log_writers = 2
max_worker_processes = 5
max_parallel_workers = 4
max_parallel_workers_per_gather = 4
});
$node->safe_psql('postgres', 'CREATE DATABASE other');
$node->safe_psql('other', 'CREATE EXTENSION pg_ai_resilience');

# database postgres: its writer waits for a user's lock (kept short: the
# writer's lock_timeout would end the wait)
my $locker = $node->background_psql('postgres');
$locker->query_safe('BEGIN; LOCK TABLE ai_call_log IN ACCESS EXCLUSIVE MODE');
my $before = log_stats($node);
my ($ret, $out, $err) = $node->psql('postgres',
	q{SELECT count(ai_chat('blocked ' || i, ARRAY['ok'])) FROM generate_series(1, 20) i});
is($out, 20, 'the calls in the blocked database succeed');
my $after = log_stats($node);
is($after->{in_queue}, 4, 'the blocked database holds its share: 4 of 16 slots');
is($after->{lost} - $before->{lost}, 16, 'its other 16 records are lost');
my @warnings = ($err =~ /WARNING/g);
is(scalar @warnings, 1, 'one WARNING for the statement');
like($err, qr/WARNING:  16 ai_call_log records were lost/,
	'it gives the number of records lost');
like($err, qr/share of the log queue \(4 records\)/, 'and the share');

# a loss in a function called per row is reported once, by the outer statement
$node->safe_psql('postgres', q{
	CREATE FUNCTION call_once(i int) RETURNS text LANGUAGE plpgsql AS
	$$ BEGIN RETURN ai_chat('fn ' || i, ARRAY['ok']); END $$});
($ret, $out, $err) = $node->psql('postgres',
	q{SELECT count(call_once(i)) FROM generate_series(1, 5) i});
is($out, 5, 'the calls through a function succeed');
@warnings = ($err =~ /WARNING/g);
is(scalar @warnings, 1, 'one WARNING for the outer statement');
like($err, qr/WARNING:  5 ai_call_log records were lost/, 'counting all 5');

# database other: every row arrives while postgres's writer is blocked
is($node->safe_psql('other', q{
	SELECT count(ai_chat('other ' || i, ARRAY['ok'])) FROM generate_series(1, 30) i;
	SELECT ai_flush_log('10s')}), "30\nt", 'the other database flushes its 30 calls');
is($node->safe_psql('other', 'SELECT count(*) FROM ai_call_log'), 30,
	'and has all 30 rows');

$locker->query_safe('COMMIT');
$locker->quit;
ok($node->poll_query_until('postgres', q{SELECT in_queue = 0 FROM ai_log_stats()}),
	'the lock gone, the queued records are handled');
$node->safe_psql('postgres', 'TRUNCATE ai_call_log');

# parallel workers take every worker slot the writers do not hold (rows
# 2 kB wide, so that the workers share the pages to scan)
$node->safe_psql('postgres', q{
	CREATE TABLE slow AS SELECT i, repeat('x', 2000) AS filler FROM generate_series(1, 300) i;
	ALTER TABLE slow SET (parallel_workers = 4);
	ANALYZE slow});
ok($node->poll_query_until('postgres',
		q{SELECT count(*) = 0 FROM pg_stat_activity
		  WHERE backend_type = 'pg_ai_resilience log writer'}),
	'the writers have left their databases');
my ($hog_out, $hog_err) = ('', '');
my $hog = IPC::Run::start(
	[
		'psql', '-XAtq', '-d', $node->connstr('postgres'),
		'-c', q{SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0;
		        SET min_parallel_table_scan_size = 0;
		        SELECT count(pg_sleep(0.05)) FROM slow}
	],
	'>', \$hog_out, '2>', \$hog_err);
ok($node->poll_query_until('postgres',
		q{SELECT count(*) >= 2 FROM pg_stat_activity WHERE backend_type = 'parallel worker'}),
	'a parallel query holds every free worker slot');
is($node->safe_psql('postgres', q{
	SELECT count(ai_chat('while parallel ' || i, ARRAY['ok'])) FROM generate_series(1, 3) i;
	SELECT ai_flush_log('5s')}), "3\nt", 'calls made meanwhile are flushed');
is($node->safe_psql('postgres', q{SELECT count(*) FROM ai_call_log}), 3,
	'their rows are written');
is($node->safe_psql('postgres',
		q{SELECT count(*) >= 2 FROM pg_stat_activity WHERE backend_type = 'parallel worker'}), 't',
	'while the parallel workers still run');
$hog->finish;
chomp $hog_out;
is($hog_out, 300, 'the parallel query completes');

$node->stop;

# one writer, two busy databases: they take turns (a writer leaves a
# database after 1 s when another waits), so neither starves
my $turns = new_air_cluster('turns', conf => "ai_resilience.log_writers = 1\n");
$turns->safe_psql('postgres', 'CREATE DATABASE other');
$turns->safe_psql('other', 'CREATE EXTENSION pg_ai_resilience');
my ($busy_out, $busy_err) = ('', '');
my $busy = IPC::Run::start(
	[
		'psql', '-XAtq', '-d', $turns->connstr('postgres'),
		'-c', q{SELECT count(ai_chat('busy ' || i, ARRAY['ok'])), count(pg_sleep(0.02))
		        FROM generate_series(1, 250) i},
		'-c', q{SELECT ai_flush_log('10s')}
	],
	'>', \$busy_out, '2>', \$busy_err);
ok($turns->poll_query_until('postgres',
		q{SELECT count(*) > 20 FROM ai_call_log}),
	'database postgres keeps the one writer busy');
is($turns->safe_psql('other', q{
	SELECT count(ai_chat('other ' || i, ARRAY['ok'])) FROM generate_series(1, 10) i;
	SELECT ai_flush_log('5s')}), "10\nt", 'database other gets the writer in turn');
is($turns->safe_psql('postgres',
		q{SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%busy %' AND state = 'active'
		  AND pid <> pg_backend_pid()}), 1,
	'while postgres is still busy');
$busy->finish;
chomp $busy_out;
is($busy_out, "250|250\nt", 'postgres gets all its rows too');
is($turns->safe_psql('postgres', 'SELECT count(*) FROM ai_call_log'), 250,
	'250 rows');
$turns->stop;
done_testing();
