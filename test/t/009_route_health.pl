# Route health shared by every session (issue 10): one session's failures
# make the others skip a route, 16 sessions during an outage send one probe
# per cooldown, recovery closes the breaker, a 429's Retry-After holds for
# everyone, every route open fails at once, a batch stops sending to a
# route once it opens, more routes than slots, and a restart resets it all.
# Outages are set on the simulator while it runs (POST /control/down).
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use AirCluster;

my $url = sim_url();
my $node = new_air_cluster('route_health', conf => q{
ai_resilience.breaker = on
ai_resilience.breaker_routes = 16
ai_resilience.breaker_cooldown = '1s'
ai_resilience.breaker_cooldown_max = '5s'
max_connections = 40
});

# Take a model down or bring it back on the simulator.
sub control
{
	my ($what) = @_;
	system('curl', '-s', '-f', '-X', 'POST', "$url/control/$what") == 0
	  or die "control $what failed";
}

# Requests the simulator received for model since the last journal reset.
sub requests_for
{
	my ($model) = @_;
	my @lines = grep { (split /\t/)[4] eq $model } `curl -s $url/journal`;
	return scalar @lines;
}

# The state of a route of the simulator's endpoint.
sub state_of
{
	my ($model) = @_;
	return $node->safe_psql('postgres',
		"SELECT state FROM ai_route_health WHERE model = '$model'");
}

# Start psql running sql in the background; returns the harness and
# references to its stdout and stderr.
sub start_psql
{
	my ($sql) = @_;
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(
		[ 'psql', '-X', '-qAt', '-d', $node->connstr('postgres'), '-c', $sql ],
		'>', \$out, '2>', \$err);
	return ($h, \$out, \$err);
}

# Run sql in 16 sessions at once, "SESSION" replaced by each one's number;
# returns when all are done.
sub in_16_sessions
{
	my ($sql) = @_;
	my @sessions;
	for my $i (1 .. 16)
	{
		(my $mine = $sql) =~ s/SESSION/$i/g;
		push @sessions, (start_psql($mine))[0];
	}
	$_->finish for @sessions;
}

journal_reset();
control('down?model=tap-a');

# session A opens the route; session B skips it without a request.  The
# session whose failure opens a route sets its cooldown: 30 s here, so that
# session B comes within it however slow the machine.
$node->safe_psql('postgres',
	q{SET ai_resilience.breaker_cooldown = '30s'; SELECT ai_chat('a', ARRAY['tap-a', 'ok'])});
is(requests_for('tap-a'), 3, 'session A: three attempts on the dead model');
is(state_of('tap-a'), 'open', 'after which its route is open');
is($node->safe_psql('postgres', q{SELECT ai_chat('b', ARRAY['tap-a', 'ok'])}),
	'echo: b', 'session B gets its answer from the next route');
is(requests_for('tap-a'), 3, 'session B sent nothing to the open route');

# 16 sessions during the outage: at most one probe per cooldown (1 s, then
# growing); the route is made due for a probe first
$node->safe_psql('postgres', qq{SELECT ai_route_set('$url/v1', 'tap-a', true, '0s')});
my $started = time();
in_16_sessions(q{SELECT count(ai_chat('sSESSION ' || i, ARRAY['tap-a', 'ok+latency-20']))
                 FROM generate_series(1, 100) i});
my $elapsed = time() - $started;
my $probes = requests_for('tap-a') - 3;
cmp_ok($probes, '>=', 1, "the route was probed during the outage ($probes probes in ${elapsed}s)");
cmp_ok($probes, '<=', int($elapsed) + 1,
	'at most one probe per cooldown across 16 sessions');
is($node->safe_psql('postgres',
		q{SELECT count(*) FILTER (WHERE reason = 'probe started') || '|' ||
		         count(*) FILTER (WHERE reason = 'probe failed')
		  FROM ai_route_history WHERE model = 'tap-a'}),
	"$probes|$probes", 'the history has each probe and its failure once');
# the 16 sessions' changes are rows of ai_route_events, each once, in the
# history's order, each starting from the state the one before left
$node->safe_psql('postgres', 'SELECT ai_flush_log()');
is($node->safe_psql('postgres',
		q{SELECT string_agg(to_state || ':' || reason, ',' ORDER BY id)
		  FROM ai_route_events WHERE model = 'tap-a'}),
	$node->safe_psql('postgres',
		q{SELECT string_agg(state || ':' || reason, ',' ORDER BY n)
		  FROM ai_route_history() WITH ORDINALITY
		       AS h(at, endpoint, model, state, reason, f, wr, wf, np, ec, code, pid, n)
		  WHERE model = 'tap-a'}),
	'ai_route_events has the changes of the 16 sessions once each, in order');
is($node->safe_psql('postgres',
		q{SELECT count(*) FROM (SELECT from_state, lag(to_state) OVER (ORDER BY id) AS prev
		                        FROM ai_route_events WHERE model = 'tap-a') e
		  WHERE from_state <> prev}),
	'0', 'each change of ai_route_events starts from the state the one before left');

# exactly one probe at a time: while a probe hangs, 16 sessions skip the route
control('down?model=tap-p&behaviour=hang');
$node->safe_psql('postgres', qq{SELECT ai_route_set('$url/v1', 'tap-p', true, '0s')});
my ($prober, $probe_out, $probe_err) = start_psql(
	q{SET application_name = 'prober'; SELECT ai_chat('probe', ARRAY['tap-p', 'ok'])});
ok($node->poll_query_until('postgres',
		q{SELECT state = 'half-open' FROM ai_route_health WHERE model = 'tap-p'}),
	'a call took the probe');
in_16_sessions(q{SELECT count(ai_chat('qSESSION ' || i, ARRAY['tap-p', 'ok']))
                 FROM generate_series(1, 20) i});
is(requests_for('tap-p'), 1, '320 calls of 16 sessions skipped the route while its probe was in flight');
$node->safe_psql('postgres',
	q{SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'prober'});
$prober->finish;
like($$probe_err, qr/canceling statement due to user request/, 'then the probe was cancelled');
control('up?model=tap-p');

# recovery: the next probe succeeds, the route closes, traffic returns
control('up?model=tap-a');
ok($node->poll_query_until('postgres',
		q{SELECT ai_chat('r', ARRAY['tap-a', 'ok']) IS NOT NULL
		  AND (SELECT state FROM ai_route_health WHERE model = 'tap-a') = 'closed'}),
	'a successful probe closes the route');
my $before = requests_for('tap-a');
$node->safe_psql('postgres',
	q{SELECT count(ai_chat('r' || i, ARRAY['tap-a', 'ok'])) FROM generate_series(1, 5) i});
is(requests_for('tap-a') - $before, 5, 'and every call uses it again');

# a 429 with Retry-After: 30 s for every session, longer than the cooldown
$node->safe_psql('postgres',
	q{SET ai_resilience.retry_after_max = '1s';
	  SET ai_resilience.breaker_cooldown_max = '1min';
	  SELECT ai_chat('t', ARRAY['ratelimit-30', 'ok'])});
is($node->safe_psql('postgres',
		q{SELECT state, round(extract(epoch FROM next_probe_at - opened_at))
		  FROM ai_route_health WHERE model = 'ratelimit-30'}),
	'open|30', 'the 429 opened the route until its Retry-After');
sleep 1.5;
$node->safe_psql('postgres', q{SELECT ai_chat('u', ARRAY['ratelimit-30', 'ok'])});
is(requests_for('ratelimit-30'), 1,
	'another session skips it past the cooldown, until the Retry-After');

my ($ret, $out, $err);

# a probe cut by statement_timeout is given up: the next call probes at once
control('down?model=tap-h&behaviour=hang');
$node->safe_psql('postgres', qq{SELECT ai_route_set('$url/v1', 'tap-h', true, '0s')});
($ret, $out, $err) = $node->psql('postgres',
	q{SET statement_timeout = '1s'; SELECT ai_chat('h', ARRAY['tap-h'])});
like($err, qr/canceling statement due to statement timeout/, 'the probe hung and was cancelled');
is($node->safe_psql('postgres',
		q{SELECT state, next_probe_at <= now() FROM ai_route_health WHERE model = 'tap-h'}),
	'open|t', 'its probe was given up: open, due for a probe at once');
control('up?model=tap-h');

# every route open: RA003 at once, naming each route, its state, its probe
control('down?model=tap-b');
$node->safe_psql('postgres', q{SELECT ai_chat('v', ARRAY['tap-b'], on_error => 'null')});
# held open for an hour, so that no call of the test becomes its probe
$node->safe_psql('postgres', qq{SELECT ai_route_set('$url/v1', 'tap-b', true, '1h')});
my $sent = requests_for('tap-b');
($ret, $out, $err) = $node->psql('postgres',
	q{\set VERBOSITY verbose
	  SELECT ai_chat('w', ARRAY['tap-b', 'tap-b'])});
like($err, qr/ERROR:  RA003: ai_chat: every route is open, no attempt was made: tap-b\@\Q$url\E\/v1 open after 3 failures \(http_5xx 502\), next probe at \d{4}-\d\d-\d\d [\d:.]+\+00; tap-b\@/,
	'all routes open: RA003 and a message naming each route and its probe time');
is(requests_for('tap-b'), $sent, 'the call failed at once, without a request');
($ret, $out, $err) = $node->psql('postgres',
	q{SELECT ai_chat('x', ARRAY['tap-b'], on_error => 'null') IS NULL});
is($out, 't', "with on_error => 'null': NULL");
like($err, qr/WARNING:  ai_chat: every route is open/, 'and a WARNING');

# a batch stops sending to a route once it opens
control('down?model=tap-c');
is($node->safe_psql('postgres',
		q{SET ai_resilience.max_concurrency = 4;
		  SET ai_resilience.breaker_cooldown = '1min';
		  SELECT count(response) FROM ai_chat_batch(
		      (SELECT array_agg('p' || i) FROM generate_series(1, 50) i),
		      ARRAY['tap-c', 'ok'])}),
	50, 'every prompt of the batch is answered');
cmp_ok(requests_for('tap-c'), '<=', 8,
	'by the second route once the first opened (at most two waves of 4)');
control('up');

# the retry budget under a 16-session storm: a model that always answers
# 502, the breaker kept closed, on an endpoint of its own.  Without the
# budget every call would retry twice (640 retries for 320 calls); with it,
# retries stay within 20 % of the endpoint's attempts, or the floor of 3.
$node->safe_psql('postgres', q{
	ALTER SYSTEM SET ai_resilience.breaker_failures = 1000;
	ALTER SYSTEM SET ai_resilience.breaker_failure_rate = 0;
	SELECT pg_reload_conf()});
control('down?model=tap-storm');
journal_reset();
in_16_sessions(qq{SET ai_resilience.endpoints = '$url/storm/v1';
                  SELECT count(ai_chat('stSESSION ' || i, ARRAY['tap-storm', 'ok']))
                  FROM generate_series(1, 20) i});
my $storm = requests_for('tap-storm');
my $answered = requests_for('ok');
my $retries = $storm - 320;
cmp_ok($retries, '>=', 3, "retries were made ($retries)");
is($answered, 320, 'every call was answered by the second route');
cmp_ok($retries, '<=', 0.2 * ($storm + $answered) + 3,
	"retries stay within 20 % of the endpoint's $storm + $answered attempts");
control('up');
$node->safe_psql('postgres', q{
	ALTER SYSTEM RESET ALL;
	SELECT pg_reload_conf()});

# more routes than slots: never an error, the table keeps 16
is($node->safe_psql('postgres',
		q{SELECT count(ai_chat('m', ARRAY['slot-' || i])) FROM generate_series(1, 40) i}),
	40, 'calls on 40 routes with 16 slots all succeed');
is($node->safe_psql('postgres', 'SELECT count(*) FROM ai_route_health'), 16,
	'the least recently used entries were reused');

# a restart resets route health
$node->safe_psql('postgres',
	qq{SELECT ai_route_set('$url/v1', 'tap-d', true, '1h')});
is(state_of('tap-d'), 'open', 'a route opened by hand');
$node->restart;
is($node->safe_psql('postgres', 'SELECT count(*) FROM ai_route_health'), 0,
	'a restart forgets every route');

$node->stop;
done_testing();
