#!/usr/bin/perl
#
# check_docs.pl: run every ```sql block of Markdown pages and compare the
# output the page shows, so that the examples of docs/*.md cannot rot.
#
#   check_docs.pl PAGE.md...
#
# Runs against the server the PG* environment names (pg_virtualenv's
# superuser), with the simulators AI_SIM_URL and AI_SIM_URL2 running
# (test/docs/run.sh starts them, two fresh ones per page).  Prints one
# "ok - PAGE" or "not ok - PAGE" line per page, the reason as "#" lines;
# exits 1 when a page fails.
#
# The rules a page follows:
#
# - Each page gets a fresh database, docs_<page> (docs/cookbook.md:
#   docs_cookbook), and its blocks run in page order, each in a new psql
#   session (psql -X -q: query results, NOTICE, WARNING and ERROR lines, no
#   command tags).  A page does its own setup, as a reader would:
#   CREATE EXTENSION, ALTER SYSTEM SET ai_resilience.endpoints, roles, tables.
# - A block runs as the superuser unless a leading comment line says
#   "-- role: NAME": it then runs as that role (SET SESSION AUTHORIZATION),
#   which an earlier block of the page created and granted what it needs.
# - A block fails the page when it raises an ERROR, unless a leading comment
#   line says "-- expect error: SQLSTATE": then it must raise exactly one
#   ERROR, with that SQLSTATE.
# - A ```text block right after a ```sql block (only blank lines between) is
#   the output psql prints for it, compared exactly, except that trailing
#   spaces of each line and blank lines at the start and end are ignored.
#   So a page shows only deterministic output (the simulator's answers, counts,
#   codes), never timings, ids or timestamps.
# - Endpoints: http://gateway.example is replaced by AI_SIM_URL and
#   http://standby.example by AI_SIM_URL2 in the SQL, and back in the output.
#   Both names are 22 characters long like http://127.0.0.1:NNNNN (ports of
#   5 digits: Linux's ephemeral range), so psql's column widths stay the same.
# - "<!-- check: POST URL -->" in the page sends that request (same
#   substitution) when the blocks before it have run: the simulator's
#   /control/down and /control/up, to stage an outage the page then reads.
# - After each block the checker waits, in the block's session, until the
#   rows of the attempts it made are in the log (ai_flush_log()), as a reader
#   typing the next query a moment later would find them.
# - When the page is done its database and the roles it created are dropped
#   and ALTER SYSTEM settings are reset.
#
use strict;
use warnings;
use File::Basename qw(basename);
use File::Temp qw(tempfile);

my %sim = (
	'http://gateway.example' => $ENV{AI_SIM_URL},
	'http://standby.example' => $ENV{AI_SIM_URL2},
);
for my $name (sort keys %sim)
{
	my $url = $sim{$name};
	die "AI_SIM_URL and AI_SIM_URL2 must name running simulators\n" unless defined $url;
	die "$url: not as long as $name (a port of 5 digits?)\n"
	  unless length($url) == length($name);
}

# How long one block may run; a hung example fails instead of hanging.
my $block_timeout = 300;
my $sentinel = '@@docs-check@@';

# Replace the documented endpoints by the simulators' addresses.
sub to_sim
{
	my ($text) = @_;
	$text =~ s/\Q$_\E/$sim{$_}/g for keys %sim;
	return $text;
}

# Replace the simulators' addresses by the documented endpoints.
sub from_sim
{
	my ($text) = @_;
	$text =~ s/\Q$sim{$_}\E/$_/g for keys %sim;
	return $text;
}

# Run psql input in database $db; returns psql's stdout and stderr, merged.
sub psql
{
	my ($db, $input) = @_;
	my ($fh, $file) = tempfile('docs-check-XXXXXX', TMPDIR => 1, UNLINK => 1);
	print $fh $input;
	close $fh;
	my $out = qx{timeout $block_timeout psql -X -q -d '$db' < '$file' 2>&1};
	unlink $file;
	return $out;
}

# Run superuser SQL that must succeed, in database "postgres".
sub admin
{
	my ($sql) = @_;
	my $out = psql('postgres', "\\set ON_ERROR_STOP 1\n$sql\n");
	die "setup failed: $sql\n$out" if $? != 0;
	return $out;
}

# The page as a list of steps: sql blocks (with the output shown after them)
# and check directives, in order.
sub parse_page
{
	my ($path) = @_;
	open my $fh, '<', $path or die "$path: $!\n";
	my @lines = <$fh>;
	close $fh;

	my @steps;
	my $last_sql;		# the sql step a text block would belong to
	my $i = 0;
	while ($i < @lines)
	{
		my $line = $lines[$i++];
		if ($line =~ /^<!--\s*check:\s*(.*?)\s*-->\s*$/)
		{
			push @steps, { kind => 'directive', text => $1, line => $i };
			undef $last_sql;
		}
		elsif ($line =~ /^```(\w*)\s*$/)
		{
			my ($lang, $start) = ($1, $i);
			my $body = '';
			$body .= $lines[$i++] while $i < @lines && $lines[$i] !~ /^```\s*$/;
			die "$path:$start: unclosed code block\n" if $i++ >= @lines;
			if ($lang eq 'sql')
			{
				$last_sql = { kind => 'sql', text => $body, line => $start };
				push @steps, $last_sql;
				next;
			}
			$last_sql->{expected} = $body if $lang eq 'text' && $last_sql;
			undef $last_sql;
		}
		elsif ($line !~ /^\s*$/)
		{
			undef $last_sql;
		}
	}
	return @steps;
}

# The markers in the leading comment lines of a block.
sub block_markers
{
	my ($text) = @_;
	my %m;
	for my $line (split /\n/, $text)
	{
		last unless $line =~ /^\s*--/;
		$m{role} = $1 if $line =~ /^\s*--\s*role:\s*(\S+)\s*$/;
		$m{expect_error} = $1 if $line =~ /^\s*--\s*expect error:\s*([0-9A-Z]{5})\s*$/;
	}
	return %m;
}

# Lines without trailing spaces, without blank lines at either end.
sub normalise
{
	my ($text) = @_;
	my @l = map { s/\s+$//r } split /\n/, $text;
	shift @l while @l && $l[0] eq '';
	pop @l while @l && $l[-1] eq '';
	return join("\n", @l) . "\n";
}

# Run one sql step in $db; returns the reason it failed, or undef.
sub run_block
{
	my ($db, $step) = @_;
	my %m = block_markers($step->{text});
	my $input = '';
	$input .= "SET SESSION AUTHORIZATION \"$m{role}\";\n" if $m{role};
	$input .= to_sim($step->{text});
	$input .= "\n\\echo $sentinel :LAST_ERROR_SQLSTATE\n";
	# wait for this session's log rows, if the extension is there
	$input .= <<'EOF';
\o /dev/null
SELECT e.extnamespace::pg_catalog.regnamespace AS docs_check_schema
  FROM pg_catalog.pg_extension e WHERE e.extname = 'pg_ai_resilience' \gset
\if :{?docs_check_schema}
SELECT :docs_check_schema.ai_flush_log();
\endif
EOF
	my $out = psql($db, $input);
	return "psql failed (exit $?):\n$out" unless $out =~ /^\Q$sentinel\E (\S+)$/m;
	my $sqlstate = $1;
	$out =~ s/^\Q$sentinel\E .*//ms;
	$out = from_sim($out);
	my $errors = () = $out =~ /^ERROR:  /mg;

	if (defined $m{expect_error})
	{
		return "expected one ERROR $m{expect_error}, got $errors (last SQLSTATE $sqlstate):\n$out"
		  unless $errors == 1 && $sqlstate eq $m{expect_error};
	}
	elsif ($errors > 0 || $sqlstate ne '00000')
	{
		return "unexpected ERROR (SQLSTATE $sqlstate):\n$out";
	}

	if (defined $step->{expected} && normalise($out) ne normalise($step->{expected}))
	{
		return "the output differs from the page's:\n--- page\n"
		  . normalise($step->{expected}) . "+++ psql\n" . normalise($out);
	}
	return undef;
}

# Perform a check directive; returns the reason it failed, or undef.
sub run_directive
{
	my ($step) = @_;
	return "unknown directive \"$step->{text}\""
	  unless $step->{text} =~ m{^POST\s+(http://\S+)$};
	my $url = to_sim($1);
	my $out = qx{curl -sS -f -X POST '$url' 2>&1};
	return $? == 0 ? undef : "POST $url failed: $out";
}

# Check one page; returns the reason it failed, or undef.
sub check_page
{
	my ($path) = @_;
	my $slug = lc(basename($path, '.md'));
	$slug =~ s/[^a-z0-9]+/_/g;
	my $db = "docs_$slug";
	my @steps = parse_page($path);
	my $roles_before = admin("SELECT rolname FROM pg_roles \\g (tuples_only=on format=unaligned)");
	my %existing = map { $_ => 1 } split /\n/, $roles_before;

	admin("DROP DATABASE IF EXISTS $db WITH (FORCE);\nCREATE DATABASE $db;");
	my $failure;
	for my $step (@steps)
	{
		my $why = $step->{kind} eq 'sql' ? run_block($db, $step) : run_directive($step);
		if (defined $why)
		{
			$failure = "$path:$step->{line}: $why";
			last;
		}
	}

	# leave the cluster as the page found it
	my @new_roles = grep { !$existing{$_} }
	  split /\n/, admin("SELECT rolname FROM pg_roles \\g (tuples_only=on format=unaligned)");
	admin("DROP DATABASE $db WITH (FORCE);\n"
		  . join('', map { "DROP ROLE \"$_\";\n" } @new_roles)
		  . "ALTER SYSTEM RESET ALL;\nSELECT pg_reload_conf();");
	return $failure;
}

die "usage: $0 PAGE.md...\n" unless @ARGV;
my $failed = 0;
for my $page (@ARGV)
{
	my $why = check_page($page);
	if (defined $why)
	{
		$failed++;
		print "not ok - $page\n";
		print map { "# $_\n" } split /\n/, $why;
	}
	else
	{
		print "ok - $page\n";
	}
}
exit($failed ? 1 : 0);
