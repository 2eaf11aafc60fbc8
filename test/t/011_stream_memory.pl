# Memory of one streamed answer: a single SSE event of 12 MB, near
# ai_resilience.max_response_bytes, raises the backend's peak resident memory
# (VmHWM, read from /proc by the backend itself) by less than three times its
# size: the raw event and the decoded text, not the several copies the parser
# used to make (about five times).
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use AirCluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $size = 12_000_000;
my $node = new_air_cluster('stream_memory');
skip_if_sanitized($node);

# One session: warm up (library, connection), read the peak, make the call,
# read the peak again.
my $peak = q{SELECT substring(pg_read_file('/proc/self/status')
	from 'VmHWM:\s*(\d+) kB')};
my ($out, $err) = ('', '');
$node->psql(
	'postgres', undef,
	stdout => \$out,
	stderr => \$err,
	extra_params => [
		'-c', q{SET ai_resilience.max_response_bytes = '13MB'},
		'-c', q{SELECT length(ai_chat('warm up', ARRAY['ok'], stream => true))},
		'-c', $peak,
		'-c', qq{SELECT length(ai_chat('big', ARRAY['bigreply-$size+oneevent'], stream => true))},
		'-c', $peak ]);
my ($warm, $before, $length, $after) = split /\n/, $out;

is($length, $size, "the ${size}-byte single-event answer came back whole")
  or diag($err);
my $grown = ($after - $before) * 1024;
cmp_ok($grown, '<', 3 * $size,
	"peak memory grew by less than 3x the event ($grown bytes)");

done_testing();
