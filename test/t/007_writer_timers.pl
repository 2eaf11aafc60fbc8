# The log writer's timers and signals under load: retention and a
# configuration reload are taken between batches, so calls every 200 ms do
# not hold them off; pg_terminate_backend ends a writer waiting for a lock
# at once, and its batch is written by the next writer (after three such
# deaths in a row the records are lost, not retried forever); SIGTERM in the
# pause between batches, or a clean shutdown, writes what is queued first;
# the count of writer errors left out of the server log outlives the
# writer.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(time usleep);
use AirCluster;

# a writer delay longer than the time between calls: the writer always
# finds records after its pause, and never goes idle
my $node = new_air_cluster('timers', conf => "ai_resilience.log_writer_delay = '500ms'\n");
my $writers = q{SELECT pid FROM pg_stat_activity
                WHERE backend_type = 'pg_ai_resilience log writer'};

# retention under steady load, turned on by a reload during the load
$node->safe_psql('postgres', q{
	SELECT count(ai_chat('old ' || i, ARRAY['ok'])) FROM generate_series(1, 20) i;
	SELECT ai_flush_log()});
$node->safe_psql('postgres',
	q{UPDATE ai_call_log SET started_at = now() - interval '1 day'});
my ($load_out, $load_err) = ('', '');
my $load = IPC::Run::start(
	[
		'psql', '-XAtq', '-d', $node->connstr('postgres'),
		'-c', q{SELECT count(ai_chat('load ' || i, ARRAY['ok'])), count(pg_sleep(0.2))
		        FROM generate_series(1, 60) i}
	],
	'>', \$load_out, '2>', \$load_err);
ok($node->poll_query_until('postgres',
		q{SELECT count(*) >= 5 FROM ai_call_log WHERE started_at > now() - interval '1 hour'}),
	'the load is being written');
$node->safe_psql('postgres', q{ALTER SYSTEM SET ai_resilience.log_retention = '2s'});
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
ok($node->poll_query_until('postgres',
		q{SELECT count(*) = 0 FROM ai_call_log WHERE started_at < now() - interval '1 hour'}),
	'the old rows are deleted');
is($node->safe_psql('postgres',
		q{SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%load %' AND state = 'active'
		  AND pid <> pg_backend_pid()}), 1,
	'while the load still runs');
ok($node->poll_query_until('postgres',
		q{SELECT count(*) = 0 FROM ai_call_log WHERE started_at < now() - interval '4 s'}),
	'rows older than the retention go under load too');
$load->finish;
chomp $load_out;
is($load_out, '60|60', 'the load completes');
$node->safe_psql('postgres', q{ALTER SYSTEM RESET ai_resilience.log_retention});
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');

# pg_terminate_backend of a writer waiting for a lock
my $locker = $node->background_psql('postgres');
$locker->query_safe('BEGIN; LOCK TABLE ai_call_log IN ACCESS EXCLUSIVE MODE');
my $caller = $node->background_psql('postgres');
my $caller_pid = $caller->query_safe('SELECT pg_backend_pid()');
$caller->query_safe(q{SELECT ai_chat('behind a lock', ARRAY['ok'])});
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM ($writers) w JOIN pg_stat_activity a USING (pid)
		 WHERE a.wait_event_type = 'Lock'"),
	'the writer waits for the lock');
my $pid = $node->safe_psql('postgres', $writers);
my $t0 = time();
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
my $gone = 0;
for (1 .. 50)
{
	$gone = $node->safe_psql('postgres',
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $pid") eq 't';
	last if $gone;
	usleep(100_000);
}
ok($gone, 'the writer is gone');
cmp_ok(time() - $t0, '<', 3, 'promptly, though the lock is still held');
$locker->query_safe('COMMIT');
$locker->quit;
is($caller->query_safe(q{SELECT ai_flush_log('10s')}), 't',
	'the lock gone, the caller flushes its record');
$caller->quit;
is($node->safe_psql('postgres',
		"SELECT count(*) FROM ai_call_log WHERE backend_pid = $caller_pid"),
	1, 'its record was written by the next writer');

# writers terminated three times in a row without writing: the records
# are counted lost, not retried by a writer restarted at once forever
$locker = $node->background_psql('postgres');
$locker->query_safe('BEGIN; LOCK TABLE ai_call_log IN ACCESS EXCLUSIVE MODE');
my $lost_before = log_stats($node)->{lost};
$node->safe_psql('postgres', q{SELECT ai_chat('doomed', ARRAY['ok'])});
for my $n (1 .. 3)
{
	ok($node->poll_query_until('postgres',
			"SELECT count(*) = 1 FROM ($writers) w JOIN pg_stat_activity a USING (pid)
			 WHERE a.wait_event_type = 'Lock'"),
		"writer $n waits for the lock");
	$pid = $node->safe_psql('postgres', $writers);
	$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
	ok($node->poll_query_until('postgres',
			"SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $pid"),
		"writer $n is gone");
}
ok($node->poll_query_until('postgres', 'SELECT in_queue = 0 FROM ai_log_stats()'),
	'after the third, the record leaves the queue');
my $stats = log_stats($node);
is($stats->{lost} - $lost_before, 1, 'counted lost');
like($stats->{last_error}, qr/died 3 times in a row: 1 queued records lost/, 'with the reason');
$locker->query_safe('COMMIT');
$locker->quit;

# SIGTERM during the pause between batches: the writer writes what is
# queued and exits at once; so does a clean shutdown
$node->safe_psql('postgres', q{ALTER SYSTEM SET ai_resilience.log_writer_delay = '10s'});
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
$node->safe_psql('postgres', 'TRUNCATE ai_call_log');
$node->safe_psql('postgres', q{SELECT ai_chat('first', ARRAY['ok']); SELECT ai_flush_log()});
$node->safe_psql('postgres',
	q{SELECT count(ai_chat('paused ' || i, ARRAY['ok'])) FROM generate_series(1, 10) i});
is($node->safe_psql('postgres', 'SELECT count(*) FROM ai_call_log'), 1,
	'the writer pauses after its first batch');
$pid = $node->safe_psql('postgres', $writers);
$t0 = time();
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
ok($node->poll_query_until('postgres', 'SELECT count(*) = 11 FROM ai_call_log'),
	'terminated in its pause, the writer writes what is queued');
cmp_ok(time() - $t0, '<', 3, 'at once, not after the pause');
$node->safe_psql('postgres', q{SELECT ai_chat('first again', ARRAY['ok']); SELECT ai_flush_log()});
$node->safe_psql('postgres',
	q{SELECT count(ai_chat('shutdown ' || i, ARRAY['ok'])) FROM generate_series(1, 10) i});
$node->stop('fast');
$node->start;
is($node->safe_psql('postgres', q{SELECT count(*) FROM ai_call_log WHERE model = 'ok'}), 22,
	'a clean shutdown writes what is queued first');
$node->safe_psql('postgres', q{ALTER SYSTEM RESET ai_resilience.log_writer_delay});
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');

# errors left out of the server log are counted across writers
$node->safe_psql('postgres', 'ALTER TABLE ai_call_log RENAME TO ai_call_log_away');
my $log_offset = -s $node->logfile;
$node->safe_psql('postgres', q{SELECT ai_chat('lost 1', ARRAY['ok']); SELECT ai_flush_log()});
my $t_logged = time();
$node->safe_psql('postgres', q{SELECT ai_chat('lost 2', ARRAY['ok']); SELECT ai_flush_log()});
ok($node->poll_query_until('postgres', "SELECT count(*) = 0 FROM ($writers) w"),
	'the writer leaves when idle');
my $wait = 10.5 - (time() - $t_logged);
usleep($wait * 1e6) if $wait > 0;
$node->safe_psql('postgres', q{SELECT ai_chat('lost 3', ARRAY['ok']); SELECT ai_flush_log()});
my $log = substr(slurp_file($node->logfile), $log_offset);
my @logged = ($log =~ /pg_ai_resilience log writer: could not write/g);
is(scalar @logged, 2, 'two of the three errors are in the server log');
like($log, qr/HINT:  1 similar errors in the last 10 s were not logged/,
	'the second says one was left out, though another writer left it out');
$node->safe_psql('postgres', 'ALTER TABLE ai_call_log_away RENAME TO ai_call_log');

$node->stop;
done_testing();
