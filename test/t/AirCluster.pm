# Helpers shared by the TAP tests: a cluster with pg_ai_resilience preloaded
# and pointed at the gateway simulator (AI_SIM_URL, started by test.sh).
package AirCluster;

use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Exporter 'import';

our @EXPORT = qw(new_air_cluster sim_url journal_reset journal_count log_stats);

# The simulator's base URL; the tests cannot run without it.
sub sim_url
{
	my $url = $ENV{AI_SIM_URL};
	BAIL_OUT('AI_SIM_URL is not set: run the TAP tests through test/scripts/test.sh')
	  unless $url;
	return $url;
}

# A started cluster with the extension created in database postgres;
# extra lines go to postgresql.conf.
sub new_air_cluster
{
	my ($name, %opts) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	my $url = sim_url();

	$node->init;
	$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'pg_ai_resilience'
ai_resilience.endpoints = '$url/v1'
ai_resilience.backoff_base = 0
ai_resilience.backoff_max = 0
max_worker_processes = 16
ai_resilience.breaker = off
restart_after_crash = on
});
	$node->append_conf('postgresql.conf', $opts{conf}) if $opts{conf};
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION pg_ai_resilience');
	return $node;
}

# Clear the simulator's journal.
sub journal_reset
{
	my $url = sim_url();
	system('curl', '-s', '-X', 'POST', "$url/journal/reset") == 0
	  or die "journal reset failed";
}

# Requests the simulator has received since the last reset.
sub journal_count
{
	my $url = sim_url();
	my $lines = `curl -s $url/journal | wc -l`;
	chomp $lines;
	return $lines + 0;
}

# ai_log_stats() as a hash.
sub log_stats
{
	my ($node, $db) = @_;
	my $row = $node->safe_psql($db // 'postgres',
		q{SELECT queued, written, lost, queue_waits, in_queue, writers,
		         coalesce(last_error, '') FROM ai_log_stats()});
	my @f = split /\|/, $row, 7;
	my %s;
	@s{qw(queued written lost queue_waits in_queue writers last_error)} = @f;
	return \%s;
}

1;
