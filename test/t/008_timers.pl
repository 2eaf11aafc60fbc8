# Which timer ended an attempt, against three kinds of first endpoint: an
# unreachable one (the simulator's listener whose accept queue is full, so a
# connect neither succeeds nor fails), a hung one (prefix /hang: connected,
# never a byte) and a slow one (prefix options: a late first byte, a slow
# trickle of a stream).  Each timer that fires gives its own error_class;
# all of them but the deadline fall back to the second endpoint, which
# answers; the deadline ends the call with RA002.  A timer that does not
# apply (connect once connected, idle before a first byte) never fires.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use AirCluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $sim = sim_url();
my $unreachable_port = `curl -s $sim/unreachable-port`;
like($unreachable_port, qr/^[0-9]+$/, 'the simulator has an unreachable port');

my %first_endpoint = (
	unreachable => "http://127.0.0.1:$unreachable_port/v1",
	hung => "$sim/hang/v1",
	'slow first byte' => "$sim/ok+latency-3000/v1",
	'slow stream' => "$sim/ok+tokens-10+chunkdelay-100/v1",);

my $node = new_air_cluster('timers', conf => "ai_resilience.max_retries = 0\n");

# first endpoint, timer, settings, stream, class of the first attempt:
# a timeout class falls back, deadline fails the call, '-' is a success
my @cases = (
	[ 'unreachable', 'connect', 'connect_timeout = 300ms, deadline = 30s', 0, 'connect_timeout' ],
	[ 'unreachable', 'first byte', 'first_byte_timeout = 300ms', 0, 'first_byte_timeout' ],
	[ 'unreachable', 'idle (not before a first byte)',
		'stream_idle_timeout = 100ms, connect_timeout = 400ms', 1, 'connect_timeout' ],
	[ 'unreachable', 'whole attempt', 'request_timeout = 300ms', 0, 'timeout' ],
	[ 'unreachable', 'deadline', 'deadline = 400ms', 0, 'deadline' ],
	[ 'hung', 'connect (over once connected)',
		'connect_timeout = 200ms, request_timeout = 600ms', 0, 'timeout' ],
	[ 'hung', 'first byte', 'first_byte_timeout = 300ms', 0, 'first_byte_timeout' ],
	[ 'hung', 'idle (not before a first byte)',
		'stream_idle_timeout = 100ms, request_timeout = 600ms', 1, 'timeout' ],
	[ 'hung', 'whole attempt', 'request_timeout = 300ms', 0, 'timeout' ],
	[ 'hung', 'deadline', 'deadline = 400ms', 0, 'deadline' ],
	[ 'slow stream', 'connect and idle (a steady trickle)',
		'connect_timeout = 200ms, stream_idle_timeout = 1s', 1, '-' ],
	[ 'slow first byte', 'first byte', 'first_byte_timeout = 300ms', 0, 'first_byte_timeout' ],
	[ 'slow stream', 'idle', 'stream_idle_timeout = 50ms', 1, 'idle_timeout' ],
	[ 'slow stream', 'whole attempt', 'request_timeout = 500ms', 1, 'timeout' ],
	[ 'slow stream', 'deadline', 'deadline = 500ms', 1, 'deadline' ],);

foreach my $case (@cases)
{
	my ($kind, $timer, $settings, $stream, $class) = @$case;
	my $rows =
	    $class eq '-'        ? '0 - success'
	  : $class eq 'deadline' ? '0 deadline failed'
	  :                        "0 $class fallback|1 - success";
	my $sets = join '',
	  map { my ($name, $value) = split / = /; "SET ai_resilience.$name = '$value';\n" }
	  split /, /, $settings;
	my $stream_arg = $stream ? 'true' : 'false';

	$node->safe_psql('postgres', 'SELECT ai_flush_log(); TRUNCATE ai_call_log');
	my ($out, $err) = ('', '');
	$node->psql(
		'postgres', qq{\\set VERBOSITY sqlstate
SET ai_resilience.endpoints = '$first_endpoint{$kind},$sim/v1';
$sets
SELECT ai_chat('p', ARRAY['ok'], stream => $stream_arg);},
		stdout => \$out,
		stderr => \$err);
	$node->safe_psql('postgres', 'SELECT ai_flush_log()');
	my $log = $node->safe_psql(
		'postgres', q{SELECT string_agg(route_index || ' ' ||
			coalesce(error_class, '-') || ' ' || outcome, '|' ORDER BY id)
		  FROM ai_call_log});

	is($log, $rows, "$kind endpoint, $timer timer: attempts logged as '$rows'");
	if ($class eq 'deadline')
	{
		like($err, qr/ERROR:  RA002/, "$kind endpoint, $timer timer: the call fails with RA002");
	}
	else
	{
		like($out, qr/^echo: p( w1 .* w10)?$/, "$kind endpoint, $timer timer: the call gets its answer");
	}
}

# the error text says what did not happen in time, without libcurl's
# varying count of milliseconds
$node->safe_psql('postgres', 'SELECT ai_flush_log(); TRUNCATE ai_call_log');
$node->psql(
	'postgres', qq{SET ai_resilience.endpoints = '$first_endpoint{unreachable},$sim/v1';
SET ai_resilience.connect_timeout = '300ms';
SET ai_resilience.deadline = '30s';
SELECT ai_chat('p', ARRAY['ok']);});
$node->safe_psql('postgres', 'SELECT ai_flush_log()');
is( $node->safe_psql(
		'postgres', q{SELECT error FROM ai_call_log WHERE route_index = 0}),
	'no connection within 300 ms',
	'a connect timeout says no connection came within connect_timeout');

$node->stop;
done_testing();
