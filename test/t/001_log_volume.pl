# Volume: every attempt of many calls, from one or many sessions and from
# two databases, reaches the right ai_call_log; nothing is lost.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use AirCluster;

my $node = new_air_cluster('volume');

# 1,000 failing calls, three attempts each (two retries), all logged
journal_reset();
$node->safe_psql('postgres', q{
	SET client_min_messages = error;
	SELECT count(ai_chat('p' || i, ARRAY['status-500'], on_error => 'null'))
	FROM generate_series(1, 1000) i;
	SELECT ai_flush_log('60s');
});
my $rows = $node->safe_psql('postgres', 'SELECT count(*) FROM ai_call_log');
is($rows, 3000, '1,000 failing calls give 3,000 attempt rows');
is(journal_count(), $rows, 'as many rows as requests the gateway saw');
is($node->safe_psql('postgres',
		q{SELECT count(DISTINCT call_id) FROM ai_call_log}), 1000,
	'one call id per call');

# 16 concurrent sessions, each 100 calls of two attempts
$node->safe_psql('postgres', 'TRUNCATE ai_call_log');
journal_reset();
my @sessions;
for my $s (1 .. 16)
{
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(
		[
			'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1',
			'-d', $node->connstr('postgres'),
			'-c', qq{SELECT count(ai_chat('s$s ' || i, ARRAY['status-503', 'ok']))
			         FROM generate_series(1, 100) i},
			'-c', 'SELECT ai_flush_log(\'60s\')'
		],
		'>', \$out, '2>', \$err);
	push @sessions, [ $h, \$out, \$err ];
}
my $flushed = 0;
for my $s (@sessions)
{
	$s->[0]->finish;
	$flushed++ if ${ $s->[1] } =~ /^100\nt$/;
}
is($flushed, 16, 'all 16 sessions made their calls and flushed');
is($node->safe_psql('postgres', 'SELECT count(*) FROM ai_call_log'),
	16 * 100 * 4, '16 sessions: every attempt logged (4 per call)');
is(journal_count(), 16 * 100 * 4, 'as many rows as requests');
my $stats = log_stats($node);
is($stats->{lost}, 0, 'nothing lost');
is($stats->{in_queue}, 0, 'queue empty');

# two databases: each gets its own rows
$node->safe_psql('postgres', 'CREATE DATABASE other');
$node->safe_psql('other', 'CREATE EXTENSION pg_ai_resilience');
$node->safe_psql('postgres', 'TRUNCATE ai_call_log');
my $h1 = IPC::Run::start(
	[
		'psql', '-XAtq', '-d', $node->connstr('postgres'),
		'-c', q{SELECT count(ai_chat('in postgres', ARRAY['ok'])) FROM generate_series(1, 50)},
		'-c', q{SELECT ai_flush_log()}
	]);
$node->safe_psql('other', q{
	SELECT count(ai_chat('in other', ARRAY['ok'])) FROM generate_series(1, 30);
	SELECT ai_flush_log();
});
$h1->finish;
is($node->safe_psql('postgres',
		q{SELECT count(*) FILTER (WHERE model = 'ok'), count(*) FROM ai_call_log}),
	'50|50', 'database postgres has its 50 rows only');
is($node->safe_psql('other', q{SELECT count(*) FROM ai_call_log}),
	30, 'database other has its 30 rows');
is($node->safe_psql('other', q{SELECT count(DISTINCT backend_pid) FROM ai_call_log}),
	1, 'written from the other database\'s session');

# writers go away when idle
ok($node->poll_query_until('postgres',
		q{SELECT count(*) = 0 FROM pg_stat_activity
		  WHERE backend_type = 'pg_ai_resilience log writer'}),
	'idle writers exit');

$node->stop;
done_testing();
