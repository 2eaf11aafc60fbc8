# Helpers shared by the TAP tests: a cluster with pg_ai_resilience preloaded
# and pointed at the gateway simulator (AI_SIM_URL, started by test.sh).
package AirCluster;

use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Exporter 'import';

our @EXPORT = qw(new_air_cluster skip_if_sanitized sim_url journal_reset journal_count log_stats
  start_session waiting_pid sim_control wait_log_written);

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

# Run statements in a background psql (verbose errors: SQLSTATEs shown);
# returns its handle and references to its stdout and stderr.
sub start_session
{
	my ($node, @statements) = @_;
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(
		[
			'psql', '-XAtq', '-v', 'VERBOSITY=verbose',
			'-d', $node->connstr('postgres'),
			map { ('-c', $_) } @statements
		],
		'>', \$out, '2>', \$err);
	return ($h, \$out, \$err);
}

# Wait until the statement matching $like waits on the gateway; its pid.
sub waiting_pid
{
	my ($node, $like) = @_;
	my $query = qq{SELECT pid FROM pg_stat_activity
		WHERE query LIKE '$like' AND wait_event_type = 'Extension'};
	ok($node->poll_query_until('postgres',
			"SELECT count(*) = 1 FROM ($query) w"),
		"pg_stat_activity shows the call waiting (wait_event_type Extension)");
	return $node->safe_psql('postgres', $query);
}

# Take a model or prefix down on the simulator, or bring it back:
# sim_control('down?model=m'), sim_control('up').
sub sim_control
{
	my ($what) = @_;
	my $url = sim_url();
	system('curl', '-s', '-f', '-X', 'POST', "$url/control/$what") == 0
	  or die "control $what failed";
}

# Wait until every attempt queued by any session is in ai_call_log.
sub wait_log_written
{
	my ($node) = @_;
	ok($node->poll_query_until('postgres',
			'SELECT queued = written + lost AND in_queue = 0 FROM ai_log_stats()'),
		'every attempt queued is written to ai_call_log');
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

# Under AddressSanitizer freed memory waits in a quarantine, which peak
# memory counts: a test of peak memory has nothing to measure there, so it
# stops the node and skips.
sub skip_if_sanitized
{
	my ($node) = @_;
	return
	  unless $node->safe_psql('postgres',
		q{SELECT pg_read_file('/proc/self/maps') ~ 'lib[at]san'}) eq 't';
	$node->stop;
	plan skip_all => 'a sanitizer keeps freed memory: peak memory says nothing';
}

1;
