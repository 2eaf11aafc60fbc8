# Failures around the log writer: the writer killed, a backend killed with
# SIGKILL mid-call, a full queue, and a log table users broke.  The cluster
# never restarts because of the writer, and no record is retried forever.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use AirCluster;

my $node = new_air_cluster('failures',
	conf => "ai_resilience.log_queue_size = 32\nai_resilience.log_queue_wait = '500ms'\n");
my $writers = q{SELECT pid FROM pg_stat_activity
                WHERE backend_type = 'pg_ai_resilience log writer'};

# the writer killed: the next record starts a new one
$node->safe_psql('postgres',
	q{SELECT ai_chat('one', ARRAY['ok']); SELECT ai_flush_log()});
my $pid = $node->safe_psql('postgres', $writers);
like($pid, qr/^\d+$/, 'a writer runs');
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
ok($node->poll_query_until('postgres', "SELECT count(*) = 0 FROM ($writers) w"),
	'the writer is gone');
is($node->safe_psql('postgres',
		q{SELECT ai_chat('two', ARRAY['ok']) IS NOT NULL AND ai_flush_log()}),
	't', 'the next record is written');
my $pid2 = $node->safe_psql('postgres', $writers);
isnt($pid2, $pid, 'by a new writer');
is($node->safe_psql('postgres', 'SELECT count(*) FROM ai_call_log'), 2,
	'both rows are there');

# a full queue: the writer waits for a lock, 8 records fit (the database's
# share: a quarter of 32), the ninth waits log_queue_wait, then it and the
# rest of the transaction are lost
my $locker = $node->background_psql('postgres');
$locker->query_safe('BEGIN; LOCK TABLE ai_call_log IN ACCESS EXCLUSIVE MODE');
my $before = log_stats($node);
my ($ret, $out, $err) = $node->psql('postgres',
	q{SELECT count(ai_chat('full ' || i, ARRAY['ok'])) FROM generate_series(1, 12) i});
is($out, 12, 'the calls themselves succeed');
my @warnings = ($err =~ /WARNING/g);
is(scalar @warnings, 1, 'one WARNING for the statement');
like($err, qr/4 ai_call_log records were lost/, 'for its 4 lost records');
my $after = log_stats($node);
is($after->{lost} - $before->{lost}, 4, '4 records counted lost');
is($after->{queue_waits} - $before->{queue_waits}, 1, 'one wait for room');
is($after->{in_queue}, 8, 'the queue holds 8');

# a wait that ends when room is made: the record gets in
my $waiter = $node->background_psql('postgres');
$waiter->query_safe(q{SET ai_resilience.log_queue_wait = '20s'});
$waiter->query_until(qr/started/, q{\echo started
SELECT ai_chat('waits', ARRAY['ok']) IS NOT NULL AND ai_flush_log('20s') AS ok;
\echo done
});
sleep 1;
$locker->query_safe('COMMIT');
$locker->quit;
my $result = $waiter->query_safe('SELECT 1');
$waiter->quit;
$after = log_stats($node);
is($after->{lost} - $before->{lost}, 4, 'the waiting record was not lost');
ok($after->{queue_waits} - $before->{queue_waits} >= 2, 'it waited');
is($node->safe_psql('postgres',
		q{SELECT count(*) FROM ai_call_log WHERE prompt IS NULL AND model = 'ok'}),
	2 + 8 + 1, 'the 8 queued records and the waiting one are written');

# kill -9 of a backend in the middle of a call: the cluster restarts and
# the log works again
my $victim = $node->background_psql('postgres', on_error_stop => 0);
$victim->query_until(qr/calling/, q{\echo calling
SELECT ai_chat('hang', ARRAY['hang']);
});
ok($node->poll_query_until('postgres',
		q{SELECT count(*) = 1 FROM pg_stat_activity WHERE query LIKE '%ARRAY[''hang'']%'
		  AND pid <> pg_backend_pid()}),
	'the call is under way');
my $vpid = $node->safe_psql('postgres',
	q{SELECT pid FROM pg_stat_activity WHERE query LIKE '%ARRAY[''hang'']%'
	  AND pid <> pg_backend_pid()});
kill 'KILL', $vpid;
eval { $victim->quit; };
ok($node->poll_query_until('postgres', 'SELECT 1', '1'), 'the cluster is back');
is($node->safe_psql('postgres',
		q{SELECT ai_chat('after crash', ARRAY['ok']) IS NOT NULL AND ai_flush_log()}),
	't', 'calls are logged after the restart');
is($node->safe_psql('postgres',
		q{SELECT count(*) FROM ai_call_log WHERE outcome = 'success' AND endpoint LIKE 'http%'
		  AND call_id IN (SELECT call_id FROM ai_call_log ORDER BY id DESC LIMIT 1)}),
	1, 'its row is there');

# a constraint a user added refuses some rows: only those are lost
$node->safe_psql('postgres',
	q{ALTER TABLE ai_call_log ADD CONSTRAINT no_403 CHECK (code IS DISTINCT FROM 403) NOT VALID});
$before = log_stats($node);
$node->safe_psql('postgres', q{
	SET client_min_messages = error;
	SET ai_resilience.max_retries = 0;
	SELECT count(ai_chat('c' || i, CASE WHEN i % 2 = 0 THEN ARRAY['status-403'] ELSE ARRAY['ok'] END,
	                     on_error => 'null')) FROM generate_series(1, 6) i;
	SELECT ai_flush_log();
});
$after = log_stats($node);
is($after->{lost} - $before->{lost}, 3, 'the 3 refused rows are lost');
is($after->{written} - $before->{written}, 3, 'the 3 others are written');
like($after->{last_error}, qr/no_403/, 'the error is in ai_log_stats');
$node->safe_psql('postgres', 'ALTER TABLE ai_call_log DROP CONSTRAINT no_403');

# the table renamed away (as good as dropped): records are lost, not retried
$node->safe_psql('postgres', 'ALTER TABLE ai_call_log RENAME TO ai_call_log_away');
$before = log_stats($node);
is($node->safe_psql('postgres',
		q{SELECT ai_chat('nowhere', ARRAY['ok']) IS NOT NULL AND ai_flush_log()}),
	't', 'ai_flush_log returns once the record is reported lost');
$after = log_stats($node);
is($after->{lost} - $before->{lost}, 1, 'the record is counted lost');
like($after->{last_error}, qr/ai_call_log.*missing/, 'with the reason');
$node->safe_psql('postgres', 'ALTER TABLE ai_call_log_away RENAME TO ai_call_log');
is($node->safe_psql('postgres',
		q{SELECT ai_chat('back', ARRAY['ok']) IS NOT NULL AND ai_flush_log()}),
	't', 'the table back, records are written again');
is($node->safe_psql('postgres', q{SELECT count(*) FROM ai_call_log WHERE model = 'ok'
                                  AND id = (SELECT max(id) FROM ai_call_log)}),
	1, 'its row is there');

# none of this restarted the cluster or left a crash-looping writer
my $server_log = slurp_file($node->logfile);
my @restarts = ($server_log =~ /all server processes terminated; reinitializing/g);
is(scalar @restarts, 1, 'the only restart was the one kill -9 caused');
my @exits = ($server_log =~ /pg_ai_resilience log writer.*(?:exited with exit code [^1]|terminated by signal)/g);
is(scalar @exits, 0, 'no writer exited with an error (code 1 is how a writer leaves a database)');
like($server_log, qr/pg_ai_resilience log writer: could not write/,
	'writer errors are in the server log');

# retention: rows older than log_retention are deleted by the writer
my $old = $node->safe_psql('postgres', q{
	WITH aged AS (UPDATE ai_call_log SET started_at = now() - interval '2 days'
	              WHERE id % 2 = 0 RETURNING 1)
	SELECT count(*) FROM aged});
ok($old > 0, 'some rows are made old');
# and two route events (ai_route_events has the same retention)
$node->safe_psql('postgres', q{
	SELECT ai_route_set('http://127.0.0.1:9/v1', 'retention', open)
	FROM (VALUES (true), (false)) v(open);
	SELECT ai_flush_log()});
is($node->safe_psql('postgres', q{
	WITH aged AS (UPDATE ai_route_events SET at = now() - interval '2 days'
	              WHERE model = 'retention' RETURNING 1)
	SELECT count(*) FROM aged}), '2', 'two route events are made old');
$node->safe_psql('postgres', q{ALTER SYSTEM SET ai_resilience.log_retention = '1d'});
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
$node->safe_psql('postgres', q{SELECT ai_chat('wake', ARRAY['ok']); SELECT ai_flush_log()});
ok($node->poll_query_until('postgres',
		q{SELECT count(*) = 0 FROM ai_call_log WHERE started_at < now() - interval '1 day'}),
	'old rows are deleted');
ok($node->poll_query_until('postgres',
		q{SELECT count(*) = 0 FROM ai_route_events WHERE at < now() - interval '1 day'}),
	'old route events are deleted');

$node->stop;

# without shared_preload_libraries the functions refuse with SQLSTATE 55000
my $plain = PostgreSQL::Test::Cluster->new('plain');
$plain->init;
$plain->start;
$plain->safe_psql('postgres', 'CREATE EXTENSION pg_ai_resilience');
for my $sql (q{SELECT ai_chat('p', ARRAY['ok'])}, 'SELECT ai_flush_log()',
	'SELECT * FROM ai_log_stats()')
{
	($ret, $out, $err) = $plain->psql('postgres', "\\set VERBOSITY verbose\n$sql");
	like($err, qr/55000: pg_ai_resilience must be loaded via shared_preload_libraries/,
		"$sql: not preloaded");
}
$plain->stop;

done_testing();
