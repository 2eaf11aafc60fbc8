# Who can read the key and the endpoint credentials: pg_monitor members see
# them masked, a reload that changes the key or the endpoints (or is refused
# an invalid endpoints value) does not write them into the server log,
# WARNINGs are redacted, and ai_resilience.api_key_file is
# checked and read like ssl_key_file.  The server log is searched for every
# secret at the end.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use AirCluster;

my $url = sim_url();
(my $hostport = $url) =~ s{^http://}{};
# log_statement would log every statement that holds a key, as the README
# says: the test cluster's 'all' is turned off
my $node = new_air_cluster('secrets', conf => qq{
log_statement = none
ai_resilience.api_key = 'sk-conf-secret-0001'
ai_resilience.endpoints = 'http://tapuser:tap-pass\@$hostport/v1?api_key=tapquery-secret'
});
my @secrets = qw(sk-conf-secret-0001 sk-altered-secret-0002 sk-altered-secret-0003
  sk-file-secret-0004 sk-file-secret-0005 sk-file-secret-0006 sk-final-secret-0007
  sk-final-secret-0008 tap-pass tapquery-secret tap2user tap-pass-2 tapquery-secret-2
  tapquery-secret-3 bad-pass-9 badquery-secret);

# The Authorization header of the simulator's last request.
sub last_auth
{
	my @lines = split /\n/, `curl -s $url/journal`;
	return (split /\t/, $lines[-1])[10];
}

# Change settings by ALTER SYSTEM, reload, and wait until new sessions see
# them (log_writer_delay, a visible setting, changes with each reload).
my $reloads = 0;
sub alter_system
{
	my @statements = @_;
	$reloads++;
	$node->safe_psql('postgres', join(";\n", @statements,
			"ALTER SYSTEM SET ai_resilience.log_writer_delay = '${\ (20 + $reloads)}ms'",
			'SELECT pg_reload_conf()'));
	$node->poll_query_until('postgres',
		"SELECT current_setting('ai_resilience.log_writer_delay') = '${\ (20 + $reloads)}ms'")
	  or die 'the reload was not seen';
}

# credentials in the endpoint are sent, and so is the key
is($node->safe_psql('postgres', q{SELECT ai_chat('p', ARRAY['ok'])}), 'echo: p',
	'a call with credentials in the endpoint works');
is(last_auth(), 'Bearer sk-conf-secret-0001', 'the key from postgresql.conf is sent');
is($node->safe_psql('postgres', q{SELECT ai_flush_log(); SELECT endpoint FROM ai_call_log}),
	"t\nhttp://$hostport/v1", 'the log keeps scheme, host, port and path only');

# a pg_monitor member may read superuser-only settings: it sees masks
$node->safe_psql('postgres', 'CREATE ROLE mon LOGIN IN ROLE pg_monitor');
my $as_mon = sub {
	return $node->safe_psql('postgres', shift, extra_params => [ '-U', 'mon' ]);
};
is($as_mon->('SHOW ai_resilience.api_key'), '********', 'SHOW masks the key');
is($as_mon->(q{SELECT current_setting('ai_resilience.api_key')}), '********',
	'current_setting masks the key');
is($as_mon->(q{SHOW ai_resilience.endpoints}), "http://$hostport/v1",
	'SHOW shows the endpoints without credentials');
is($as_mon->(q{SELECT setting || '|' || reset_val || '|' || boot_val FROM pg_settings
               WHERE name = 'ai_resilience.endpoints'}),
	"http://$hostport/v1||",
	'pg_settings shows them without credentials, reset_val and boot_val empty');

my ($ret, $out, $err) = $node->psql('postgres', 'SELECT count(*) FROM pg_file_settings',
	extra_params => [ '-U', 'mon' ]);
like($err, qr/permission denied/, 'pg_file_settings is for the superuser only');

# an invalid endpoints value with credentials, in postgresql.conf, is
# refused by a reload that quotes it without them; then it is fixed (before
# any ALTER SYSTEM of the endpoints, which would hide postgresql.conf's)
my $log_offset = -s $node->logfile;
$node->append_conf('postgresql.conf',
	"ai_resilience.endpoints = 'http://tapuser:tap-pass\@$hostport/v1?api_key=tapquery-secret,"
	  . "ftp://baduser:bad-pass-9\@gw.example/x?api_key=badquery-secret'\n");
$node->reload;
ok($node->wait_for_log(
		qr{invalid value for parameter "ai_resilience.endpoints": "http://\Q$hostport\E/v1,ftp://gw.example/x"},
		$log_offset),
	'a reload refuses an invalid endpoints value, quoted without credentials');
$node->append_conf('postgresql.conf',
	"ai_resilience.endpoints = 'http://tapuser:tap-pass\@$hostport/v1?api_key=tapquery-secret'\n");

# ALTER SYSTEM + reload of the endpoints with credentials, then with a key
# in the query only: the calls go there, SHOW has no credential, the log
# none either
alter_system(qq{ALTER SYSTEM SET ai_resilience.endpoints =
	'http://tap2user:tap-pass-2\@$hostport/gw2/v1/?api_key=tapquery-secret-2'});
is($as_mon->(q{SHOW ai_resilience.endpoints}), "http://$hostport/gw2/v1",
	'SHOW shows the endpoints set by ALTER SYSTEM without credentials');
is($node->safe_psql('postgres', q{SELECT ai_chat('p', ARRAY['ok'])}), 'echo: p',
	'a call goes to the endpoints set by ALTER SYSTEM');
is((split /\t/, (split /\n/, `curl -s $url/journal`)[-1])[1], '/gw2',
	'(the simulator saw it at /gw2)');
alter_system(qq{ALTER SYSTEM SET ai_resilience.endpoints =
	'http://$hostport/v1?api_key=tapquery-secret-3'});
is($as_mon->(q{SELECT current_setting('ai_resilience.endpoints')}), "http://$hostport/v1",
	'current_setting shows them without the query');
alter_system(q{ALTER SYSTEM RESET ai_resilience.endpoints});
is($as_mon->(q{SHOW ai_resilience.endpoints}), "http://$hostport/v1",
	'ALTER SYSTEM RESET brings back the endpoints of postgresql.conf');

# ALTER SYSTEM + reload, twice: the calls use the new key, the log has none
alter_system(q{ALTER SYSTEM SET ai_resilience.api_key = 'sk-altered-secret-0002'});
$node->safe_psql('postgres', q{SELECT ai_chat('p', ARRAY['ok'])});
is(last_auth(), 'Bearer sk-altered-secret-0002', 'the key set by ALTER SYSTEM is sent');
alter_system(q{ALTER SYSTEM SET ai_resilience.api_key = 'sk-altered-secret-0003'});
$node->safe_psql('postgres', q{SELECT ai_chat('p', ARRAY['ok'])});
is(last_auth(), 'Bearer sk-altered-secret-0003', 'and so is the next one');

# a failure reported as a WARNING is redacted too
($ret, $out, $err) = $node->psql('postgres',
	q{SELECT ai_chat('p', ARRAY['echokey-upper', 'echokey-ctrl'], on_error => 'null')});
like($err, qr/WARNING:.*\n.*last error: Incorrect API key provided: \[REDACTED\]/,
	'the WARNING shows the echo redacted');

# the key file: refused while others may read it, then read, then re-read
# when it changes; api_key and api_key_file are not both set
my $key_file = $node->basedir . '/ai_keys';
append_to_file($key_file, "# the gateway's key\n\nsk-file-secret-0004\n");
chmod 0644, $key_file;
alter_system(q{ALTER SYSTEM SET ai_resilience.api_key = ''},
	"ALTER SYSTEM SET ai_resilience.api_key_file = '$key_file'");
($ret, $out, $err) = $node->psql('postgres', q{SELECT ai_chat('p', ARRAY['ok'])});
like($err, qr/ai_resilience.api_key_file ".*" has group or world access/,
	'a key file others may read is refused');
chmod 0600, $key_file;
$node->safe_psql('postgres', q{SELECT ai_chat('p', ARRAY['ok'])});
is(last_auth(), 'Bearer sk-file-secret-0004', 'the key from the file is sent');
is($as_mon->('SHOW ai_resilience.api_key'), '', 'SHOW says no key is set');

open(my $fh, '>', $key_file) or die;
print $fh "sk-file-secret-0005\r\nsk-file-secret-0006\n";
close $fh;
$node->safe_psql('postgres', qq{
	SET ai_resilience.endpoints = '$url/status-502/v1,$url/gw2/v1';
	SET ai_resilience.max_retries = 0;
	SELECT ai_chat('p', ARRAY['ok'])});
my @journal = split /\n/, `curl -s $url/journal`;
is(join(',', map { (split /\t/)[10] } @journal[-2, -1]),
	'Bearer sk-file-secret-0005,Bearer sk-file-secret-0006',
	'a changed file is read again, one key per line for each endpoint');

($ret, $out, $err) = $node->psql('postgres', q{
	SET ai_resilience.api_key = 'sk-not-a-secret-9999';
	SELECT ai_chat('p', ARRAY['ok'])});
like($err, qr/ai_resilience.api_key and ai_resilience.api_key_file are both set/,
	'api_key and api_key_file are not used together');

open($fh, '>', $key_file) or die;
print $fh "# no key yet\n\n";
close $fh;
($ret, $out, $err) = $node->psql('postgres', q{SELECT ai_chat('p', ARRAY['ok'])});
like($err, qr/ai_resilience.api_key_file ".*" holds no key/, 'a file without a key is refused');

open($fh, '>', $key_file) or die;
print $fh "sk-file-secret-0004\nshort\n";
close $fh;
($ret, $out, $err) = $node->psql('postgres', q{SELECT ai_chat('p', ARRAY['ok'])});
like($err, qr/an API key in ai_resilience.api_key_file \(line 2\) is shorter than 8 bytes/,
	'a short key in the file is refused by its line number');

# from no key to a key by ALTER SYSTEM: still nothing logged
alter_system(q{ALTER SYSTEM RESET ai_resilience.api_key_file},
	q{ALTER SYSTEM SET ai_resilience.api_key = 'sk-final-secret-0007'});
$node->safe_psql('postgres', q{SELECT ai_chat('p', ARRAY['ok'])});
is(last_auth(), 'Bearer sk-final-secret-0007', 'a key set where there was none is sent');

# settings that cannot work together (two keys for the one endpoint) are
# accepted by a reload, which warns in the server log; ai_probe says the same
$log_offset = -s $node->logfile;
alter_system(q{ALTER SYSTEM SET ai_resilience.api_key = 'sk-final-secret-0007,sk-final-secret-0008'});
ok($node->wait_for_log(
		qr/WARNING:  ai_resilience settings cannot work: ai_resilience.api_key lists 2 keys for 1 endpoint/,
		$log_offset),
	'a reload with two keys for one endpoint warns in the server log');
is($node->safe_psql('postgres',
		q{SELECT verdict || ': ' || detail FROM ai_probe() WHERE check_name = 'settings'}),
	'failed: ai_resilience.api_key lists 2 keys for 1 endpoint',
	'ai_probe reports the same');
alter_system(q{ALTER SYSTEM SET ai_resilience.api_key = 'sk-final-secret-0007'});

# no secret in the server log, in any case
my $server_log = slurp_file($node->logfile);
my @found = grep { $server_log =~ /\Q$_\E/i } @secrets;
is("@found", '', 'the server log holds no key and no endpoint credential');
like($server_log, qr/Incorrect API key provided: \[REDACTED\]/,
	'(the server log has the redacted echoes)');

$node->stop;
done_testing();
