# pg_terminate_backend of a session while its attempts are in flight: the
# gateway received the requests, so each is logged (class cancelled,
# outcome failed, error "the session ended ..."), though a FATAL exit never
# reaches the run's error handler.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use AirCluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;

my $node = new_air_cluster('terminate');

foreach my $case (
	[ 'ai_chat', q{SELECT ai_chat('terminate me', ARRAY['hang'])}, 1 ],
	[ 'ai_chat_batch', q{SELECT count(*) FROM ai_chat_batch(
		ARRAY['sim:hang a', 'sim:hang b', 'sim:hang c'], ARRAY['ok'])}, 3 ])
{
	my ($name, $statement, $in_flight) = @$case;

	$node->safe_psql('postgres', 'TRUNCATE ai_call_log');
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(
		[ 'psql', '-XAtq', '-d', $node->connstr('postgres'), '-c', $statement ],
		'>', \$out, '2>', \$err);
	my $waiting = q{SELECT pid FROM pg_stat_activity
		WHERE query LIKE '%hang%' AND wait_event_type = 'Extension'
		  AND pid <> pg_backend_pid()};
	ok($node->poll_query_until('postgres', "SELECT count(*) = 1 FROM ($waiting) w"),
		"$name: the call waits on the gateway");
	my $pid = $node->safe_psql('postgres', $waiting);
	$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
	$h->finish;
	like($err, qr/terminating connection due to administrator command/,
		"$name: the session is terminated");
	ok($node->poll_query_until('postgres',
			qq{SELECT count(*) = $in_flight FROM ai_call_log
			   WHERE error_class = 'cancelled' AND outcome = 'failed'
			     AND error LIKE 'the session ended%' AND backend_pid = $pid}),
		"$name: the $in_flight attempt(s) in flight are logged as cancelled");
}

$node->stop;
done_testing();
