# Memory is bounded in the number of prompts: for every path (batches with
# small, 4 kB, streamed and out-of-order answers, row-by-row ai_chat plain and
# streamed) the backend's peak memory (VmHWM) after N prompts and after 4N
# differs by less than 3 MB.  Each case runs in a fresh session, after one
# warm-up call, so both sizes start from the same point.  Also: one plain
# answer near max_response_bytes takes under 3.5 times its size at its peak.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use AirCluster;
use PostgreSQL::Test::Utils;
use Test::More;

# A small log queue, and a small work_mem for the result's and the waiting
# rows' spill: each size of a case fills all of both, so the shared memory a
# backend touches and the part of the result held in memory are the same.
# JIT is off: the calling functions' COST makes the planner compile the 4N
# statements and not the N ones, and LLVM's memory is not ours to measure.
my $node = new_air_cluster('memory', conf => q{
ai_resilience.log_queue_size = 256
work_mem = '64kB'
jit = off
});

skip_if_sanitized($node);

# The backend's peak resident memory, in kB, after running $sql.
sub peak_kb
{
	my ($sql) = @_;
	my $out = $node->safe_psql('postgres', qq{
		SELECT ai_chat('warm up', ARRAY['ok']);
		$sql;
		SELECT (regexp_match(pg_read_file('/proc/self/status'),
		                     'VmHWM:\\s+(\\d+)'))[1]});
	return (split /\n/, $out)[-1];
}

# [name, statement with :n for the number of prompts, N]
my @cases = (
	[ 'ai_chat_batch, short answers',
	  q{SELECT count(*) FROM ai_chat_batch(
		  ARRAY(SELECT 'p' || i FROM generate_series(1, :n) i), ARRAY['ok'])},
	  5000 ],
	[ 'ai_chat_batch, 4 kB answers',
	  q{SELECT count(*) FROM ai_chat_batch(
		  ARRAY(SELECT 'p' || i FROM generate_series(1, :n) i), ARRAY['bigreply-4096'])},
	  2500 ],
	[ 'ai_chat_batch behind a slow first prompt (rows wait for it)',
	  q{SELECT count(*) FROM ai_chat_batch(ARRAY['sim:ok+latency-300 slow'] ||
		  ARRAY(SELECT 'p' || i FROM generate_series(1, :n) i) ||
		  array_fill(NULL::text, ARRAY[:n]), ARRAY['ok'])},
	  5000 ],
	[ 'ai_chat_batch_keyed, streamed',
	  q{SELECT count(*) FROM ai_chat_batch_keyed(
		  ARRAY(SELECT i::bigint FROM generate_series(1, :n) i),
		  ARRAY(SELECT 'p' || i FROM generate_series(1, :n) i), ARRAY['ok'],
		  stream => true)},
	  2500 ],
	[ 'ai_chat row by row',
	  q{SELECT count(ai_chat('p' || i, ARRAY['ok'])) FROM generate_series(1, :n) i},
	  2500 ],
	[ 'ai_chat row by row, streamed',
	  q{SELECT count(ai_chat('p' || i, ARRAY['ok'], stream => true))
		FROM generate_series(1, :n) i},
	  2500 ]);

foreach my $case (@cases)
{
	my ($name, $sql, $n) = @$case;
	my ($small, $large) = map {
		my $count = $_;
		(my $statement = $sql) =~ s/:n/$count/g;
		peak_kb($statement);
	} ($n, 4 * $n);

	cmp_ok($large - $small, '<', 3 * 1024,
		"$name: peak memory at $n and " . 4 * $n
		  . " prompts within 3 MB ($small kB, $large kB)");
}

# One plain answer of 24 MB under a 32 MB limit: its body, the JSON
# lexer's copy of the content and the answer's text, not more.
my $size = 24 * 1024 * 1024;
my $growth = $node->safe_psql('postgres', qq{
	SET ai_resilience.max_response_bytes = '32MB';
	SELECT ai_chat('warm up', ARRAY['ok']);
	SELECT (regexp_match(pg_read_file('/proc/self/status'),
	                     'VmHWM:\\s+(\\d+)'))[1] AS before \\gset
	SELECT length(ai_chat('big', ARRAY['bigreply-$size']));
	SELECT (regexp_match(pg_read_file('/proc/self/status'),
	                     'VmHWM:\\s+(\\d+)'))[1]::int - :before});
$growth = (split /\n/, $growth)[-1];
cmp_ok($growth * 1024, '<', 3.5 * $size,
	"one plain $size-byte answer: peak memory grows by $growth kB, under 3.5 times its size");

# The configuration file is the administrator's: a value there over its
# ceiling is not refused (calls use the ceiling: sql/memory_limits.sql).
$node->safe_psql('postgres', q{
	ALTER SYSTEM SET ai_resilience.max_concurrency = 300;
	SELECT pg_reload_conf()});
$node->poll_query_until('postgres',
	q{SELECT current_setting('ai_resilience.max_concurrency') = '300'});
is($node->safe_psql('postgres', q{SHOW ai_resilience.max_concurrency}), '300',
	'a value in the configuration file over its ceiling is taken');
$node->safe_psql('postgres', q{
	ALTER SYSTEM RESET ai_resilience.max_concurrency;
	SELECT pg_reload_conf()});

$node->stop;
done_testing();
