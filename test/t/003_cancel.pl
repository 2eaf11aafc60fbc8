# Query cancel (pg_cancel_backend from another session) while ai_chat and
# ai_chat_batch wait on a gateway that never answers: the standard error
# (57014) comes at once, pg_stat_activity shows the wait, the attempts cut
# short are logged as cancelled, and the session's connection pool still
# works afterwards.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use AirCluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $node = new_air_cluster('cancel');

foreach my $case (
	[ 'ai_chat', q{SELECT ai_chat('cancel me', ARRAY['hang'])}, 1 ],
	[ 'ai_chat_batch', q{SELECT count(*) FROM ai_chat_batch(
		ARRAY['sim:hang a', 'sim:hang b', 'sim:hang c'], ARRAY['ok'])}, 3 ])
{
	my ($name, $statement, $in_flight) = @$case;

	$node->safe_psql('postgres', 'SELECT ai_flush_log(); TRUNCATE ai_call_log');
	my ($h, $out, $err) = start_session(
		$node, $statement,
		q{SELECT ai_flush_log()},
		q{SELECT error_class || ' ' || outcome || ' ' || count(*)
		  FROM ai_call_log GROUP BY error_class, outcome},
		q{SELECT ai_chat('after the cancel', ARRAY['ok'])});

	my $pid = waiting_pid($node, "%hang%");
	my $t0 = time();
	$node->safe_psql('postgres', "SELECT pg_cancel_backend($pid)");
	$h->finish;
	my $elapsed = time() - $t0;

	like($$err, qr/ERROR:  57014: canceling statement due to user request/,
		"$name: query cancel gives SQLSTATE 57014");
	cmp_ok($elapsed, '<', 2, "$name: the session answered the cancel promptly");
	like($$out, qr/^cancelled failed $in_flight$/m,
		"$name: the $in_flight attempt(s) cut short are logged as cancelled");
	like($$out, qr/^echo: after the cancel$/m,
		"$name: the session calls the gateway again after the cancel");
}

$node->stop;
done_testing();
