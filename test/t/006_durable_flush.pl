# ai_flush_log() returning true means the rows survive a crash: the writers
# commit asynchronously, so the flush waits for the WAL of those commits.
# Three trials of: calls, ai_flush_log() -> true, kill -9 of a backend (a
# crash restart), then every flushed row is there.  wal_writer_delay is at
# its longest so that nothing else flushes the WAL for us.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use AirCluster;

my $node = new_air_cluster('durable', conf => q{
wal_writer_delay = '10s'
ai_resilience.log_prompts = on
});

for my $trial (1 .. 3)
{
	my $victim = $node->background_psql('postgres', on_error_stop => 0);
	my $vpid = $victim->query_safe('SELECT pg_backend_pid()');
	is($node->safe_psql('postgres', qq{
		SELECT count(ai_chat('trial$trial ' || i, ARRAY['ok'])) FROM generate_series(1, 200) i;
		SELECT ai_flush_log('10s')}), "200\nt", "trial $trial: 200 calls flushed");
	kill 'KILL', $vpid;
	eval { $victim->quit; };
	ok($node->poll_query_until('postgres', 'SELECT 1', '1'),
		"trial $trial: the cluster is back after the crash");
	is($node->safe_psql('postgres',
			qq{SELECT count(*) FROM ai_call_log WHERE prompt LIKE 'trial$trial %'}),
		200, "trial $trial: every flushed row survived");
}
my @restarts = (slurp_file($node->logfile) =~ /all server processes terminated; reinitializing/g);
is(scalar @restarts, 3, 'each trial crashed the cluster once');

$node->stop;
done_testing();
