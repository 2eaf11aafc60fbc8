# The WARNING of on_error => 'null' carries the failed call's call_id in its
# DETAIL, as the errors do (sql/attribution.sql tests those): a WARNING
# cannot be caught in SQL, so it is read here from psql's stderr, and the
# call_id it names is the one of the call's rows in ai_call_log.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use AirCluster;

my $node = new_air_cluster('attribution');
my $uuid = qr/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/;

# ai_chat and ai_chat_complete: two attempts, two rows, one call_id
foreach my $call (
	q{SELECT ai_chat('p', ARRAY['status-401', 'status-403'], on_error => 'null') IS NULL},
	q{SELECT ai_chat_complete('{"messages": [{"role": "user", "content": "p"}]}',
	                          ARRAY['status-401', 'status-403'], 'null') IS NULL})
{
	$node->safe_psql('postgres', 'TRUNCATE ai_call_log');
	my ($ret, $out, $err) = $node->psql('postgres', $call);
	is($out, 't', 'the call returns NULL');
	like($err,
		qr/WARNING:  ai_chat: all 2 attempts failed: .*\nDETAIL:  call_id $uuid; last error: You are not allowed to perform this request\./,
		'the WARNING has the DETAIL of the error');
	my ($call_id) = $err =~ /DETAIL:  call_id ($uuid)/;
	is( $node->safe_psql(
			'postgres', qq{SELECT ai_flush_log();
			SELECT string_agg(model, ' ' ORDER BY attempt) FROM ai_call_log WHERE call_id = '$call_id';
			SELECT count(*) FROM ai_call_log WHERE call_id <> '$call_id'}),
		"t\nstatus-401 status-403\n0",
		'its call_id is the one of the call\'s log rows, and of no other');
}

$node->stop;
done_testing();
