# Name resolution obeys the same bounds and cancel as everything else.
# test.sh runs this through test/scripts/blackhole_dns.sh, where every DNS
# query goes to a name server that never answers and the system resolver
# waits 30 s per query.  connect_timeout, the deadline, statement_timeout
# and pg_cancel_backend each end the wait within seconds; the attempt is a
# connect_timeout (its error says the name did not resolve) and the next
# endpoint answers; the session works on afterwards.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/..";
use AirCluster;
use POSIX qw(WNOHANG);
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

plan skip_all => 'needs the name server of test/scripts/blackhole_dns.sh'
  unless slurp_file('/etc/resolv.conf') =~ /^nameserver 127\.0\.0\.153$/m;

# Loose enough never to be flaky, far below the resolver's 30 s.
my $bound = 5;
my $sim = sim_url();
my $unresolvable = 'http://gateway.blackhole.test:8080/v1';

# the system resolver itself must still be waiting when the test is over
my $getent = open(my $getent_out, '-|', 'getent', 'hosts', 'gateway.blackhole.test')
  or die "getent: $!";
my $t_start = time();

my $node = new_air_cluster('dns', conf => "ai_resilience.max_retries = 0\n");

# Run SQL in a fresh session; its stdout, stderr and seconds taken.
sub timed_psql
{
	my ($sql) = @_;
	my ($out, $err) = ('', '');
	my $t0 = time();
	$node->psql('postgres', "\\set VERBOSITY sqlstate\n$sql",
		stdout => \$out, stderr => \$err);
	my $took = time() - $t0;
	note(sprintf('took %.2f s', $took));
	return ($out, $err, $took);
}

# The attempts of the last call: "route class outcome|...".
sub logged_attempts
{
	$node->safe_psql('postgres', 'SELECT ai_flush_log()');
	my $log = $node->safe_psql(
		'postgres', q{SELECT string_agg(route_index || ' ' ||
			coalesce(error_class, '-') || ' ' || outcome, '|' ORDER BY id)
		  FROM ai_call_log});
	$node->safe_psql('postgres', 'TRUNCATE ai_call_log');
	return $log;
}

# connect_timeout bounds the name's resolution, and the call falls back
my ($out, $err, $took) = timed_psql(qq{
SET ai_resilience.endpoints = '$unresolvable,$sim/v1';
SET ai_resilience.connect_timeout = '1s';
SET ai_resilience.deadline = '3s';
SELECT ai_chat('p', ARRAY['ok']);});
is($out, 'echo: p', 'connect_timeout 1s: the call falls back and gets its answer');
cmp_ok($took, '<', $bound, "connect_timeout 1s: done in under $bound s");
is(logged_attempts(), '0 connect_timeout fallback|1 - success',
	'connect_timeout 1s: a connect_timeout, then the next endpoint');

($out, $err, $took) = timed_psql(qq{
SET ai_resilience.endpoints = '$unresolvable';
SET ai_resilience.connect_timeout = '1s';
SELECT ai_chat('p', ARRAY['ok'], on_error => 'null');});
$node->safe_psql('postgres', 'SELECT ai_flush_log()');
is($node->safe_psql('postgres', 'SELECT error FROM ai_call_log'),
	'no connection within 1000 ms (name resolution did not finish)',
	'the error says the name did not resolve in time');
logged_attempts();

# the deadline bounds it
($out, $err, $took) = timed_psql(qq{
SET ai_resilience.endpoints = '$unresolvable';
SET ai_resilience.connect_timeout = '60s';
SET ai_resilience.deadline = '2s';
SELECT ai_chat('p', ARRAY['ok']);});
like($err, qr/ERROR:  RA002/, 'deadline 2s: RA002');
cmp_ok($took, '<', $bound, "deadline 2s: done in under $bound s");
is(logged_attempts(), '0 deadline failed', 'deadline 2s: the attempt is a deadline');

# statement_timeout bounds it
($out, $err, $took) = timed_psql(qq{
SET ai_resilience.endpoints = '$unresolvable';
SET ai_resilience.connect_timeout = '60s';
SET statement_timeout = '1s';
SELECT ai_chat('p', ARRAY['ok']);});
like($err, qr/ERROR:  57014/, 'statement_timeout 1s: 57014');
cmp_ok($took, '<', $bound, "statement_timeout 1s: done in under $bound s");
is(logged_attempts(), '0 cancelled failed',
	'statement_timeout 1s: the attempt is logged as cancelled');

# and so does a cancel; the session then calls the gateway again
my ($h, $session_out, $session_err) = start_session(
	$node,
	"SET ai_resilience.endpoints = '$unresolvable'",
	'SET ai_resilience.connect_timeout = 60000',
	q{SELECT ai_chat('cancel me', ARRAY['ok'])},
	"SET ai_resilience.endpoints = '$sim/v1'",
	q{SELECT ai_chat('after the cancel', ARRAY['ok'])});
my $pid = waiting_pid($node, '%cancel me%');
my $t0 = time();
$node->safe_psql('postgres', "SELECT pg_cancel_backend($pid)");
$h->finish;
$took = time() - $t0;
note(sprintf('took %.2f s', $took));
like($$session_err, qr/ERROR:  57014: canceling statement due to user request/,
	'pg_cancel_backend: 57014');
cmp_ok($took, '<', $bound, "pg_cancel_backend: done in under $bound s");
like($$session_out, qr/^echo: after the cancel$/m,
	'the session calls the gateway again after the cancel');

# every call above was bounded by us, not by the resolver
is(waitpid($getent, WNOHANG), 0,
	sprintf('the system resolver is still waiting after %.0f s', time() - $t_start));
kill 'TERM', $getent;
close $getent_out;

$node->stop;
done_testing();
