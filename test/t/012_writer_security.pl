# A database owner attacks the log writer, which runs SQL as the log
# table's owner (a superuser): functions and operators planted in public
# for every name the install script and the writer's statements use (one
# before CREATE EXTENSION), the database's search_path set to find them
# first, a read-only default, a lock held on the log, and a trigger that
# tries to leave a temporary object in the writer's session.  None of the
# planted code ever runs, the owner stays a plain role, rows are written
# and old rows deleted.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use AirCluster;

my $node = new_air_cluster('security',
	conf => "ai_resilience.log_retention = '1d'\n");
my $chat_signature =
  'ai_chat(text, text[], text, integer, double precision, text, boolean)';

# SQL as the superuser in database owned, immune to the owner's search_path
sub admin_sql
{
	my ($sql) = @_;
	return $node->safe_psql('owned',
		"SET search_path = pg_catalog, public;\n$sql");
}

# SQL as the database owner in database owned
sub owner_sql
{
	my ($sql) = @_;
	return $node->safe_psql('owned', $sql, extra_params => [ '-U', 'dbowner' ]);
}

# Wait until database owned has no log writer (it reads the database's
# settings when it connects).
sub no_writer
{
	return $node->poll_query_until('postgres', q{
		SELECT count(*) = 0 FROM pg_stat_activity
		WHERE backend_type = 'pg_ai_resilience log writer'
		  AND datname = 'owned'});
}

$node->safe_psql('postgres', q{
	CREATE ROLE dbowner LOGIN;
	CREATE DATABASE owned OWNER dbowner;
});

# A function planted by the database owner: it records that it ran, and as
# whom (public.pwn, which also tries to make the owner a superuser), then
# does what the real one does.
sub planted
{
	my ($signature, $returns, $label, $return) = @_;
	return qq{
	CREATE FUNCTION public.$signature RETURNS $returns
	LANGUAGE plpgsql AS \$\$
	BEGIN
		PERFORM public.pwn('$label');
		$return;
	END \$\$;};
}

owner_sql(q{
	CREATE TABLE public.planted_calls (name text, ran_as name);
	GRANT INSERT ON public.planted_calls TO PUBLIC;
	CREATE FUNCTION public.pwn(what text) RETURNS void
	LANGUAGE plpgsql AS $$
	BEGIN
		INSERT INTO public.planted_calls VALUES (what, current_user);
		IF (SELECT r.rolsuper FROM pg_catalog.pg_roles r
			WHERE r.rolname OPERATOR(pg_catalog.=) current_user) THEN
			ALTER ROLE dbowner SUPERUSER;
		END IF;
	END $$;
}
	. planted('nextval(text)', 'bigint', 'nextval(text)',
		'RETURN pg_catalog.nextval($1::pg_catalog.regclass)'));

# the extension, created by the superuser in the owner's database
$node->safe_psql('owned', qq{
	CREATE EXTENSION pg_ai_resilience;
	GRANT EXECUTE ON FUNCTION $chat_signature TO dbowner;
});

# the retention DELETE's names, and the batch INSERT's unnest
owner_sql(
	planted('now()', 'timestamptz', 'now()', 'RETURN pg_catalog.now()')
	  . planted('make_interval(secs integer)', 'interval', 'make_interval(integer)',
		'RETURN pg_catalog.make_interval(secs => secs::double precision)')
	  . planted('unnest(uuid[])', 'SETOF uuid', 'unnest(uuid[])',
		'RETURN QUERY SELECT pg_catalog.unnest($1)')
	  . planted('lt(timestamptz, timestamptz)', 'boolean', '<',
		'RETURN pg_catalog.timestamptz_lt($1, $2)')
	  . planted('minus(timestamptz, interval)', 'timestamptz', '-',
		'RETURN pg_catalog.timestamptz_mi_interval($1, $2)')
	  . planted('eq(bigint, bigint)', 'boolean', '=',
		'RETURN pg_catalog.int8eq($1, $2)')
	  . q{
	CREATE OPERATOR public.< (FUNCTION = public.lt,
		LEFTARG = timestamptz, RIGHTARG = timestamptz);
	CREATE OPERATOR public.- (FUNCTION = public.minus,
		LEFTARG = timestamptz, RIGHTARG = interval);
	CREATE OPERATOR public.= (FUNCTION = public.eq,
		LEFTARG = bigint, RIGHTARG = bigint);
	ALTER DATABASE owned SET search_path = public, pg_catalog;
});

# calls: rows written, the planted nextval never ran
is(owner_sql(q{
	SELECT count(ai_chat('attack ' || i, ARRAY['ok'])) FROM generate_series(1, 4) i;
	SELECT ai_flush_log()}), "4\nt", 'the owner makes 4 calls');
is(admin_sql('SELECT count(*) FROM public.ai_call_log'), 4, 'their 4 rows are written');
is(admin_sql('SELECT count(*) FROM public.planted_calls'), 0,
	'the column default did not call the planted nextval(text)');

# retention: two rows made old, deleted by the next writer
admin_sql(q{UPDATE public.ai_call_log SET started_at = now() - interval '2 days'
            WHERE id IN (SELECT id FROM public.ai_call_log ORDER BY id LIMIT 2)});
ok(no_writer(), 'the writer is gone');
owner_sql(q{SELECT ai_chat('wake', ARRAY['ok']); SELECT ai_flush_log()});
ok($node->poll_query_until('owned', q{
		SELECT pg_catalog.count(*) OPERATOR(pg_catalog.=) 0 FROM public.ai_call_log
		WHERE started_at OPERATOR(pg_catalog.<)
		      (pg_catalog.now() OPERATOR(pg_catalog.-) interval '1 day')}),
	'retention deleted the old rows');
is(admin_sql('SELECT count(*) FROM public.ai_call_log'), 3, 'and only those');
is(admin_sql(q{SELECT coalesce(string_agg(DISTINCT name || ' as ' || ran_as, ', '), 'none')
               FROM public.planted_calls}),
	'none', 'no planted function or operator ran');
is(admin_sql(q{SELECT rolsuper FROM pg_roles WHERE rolname = 'dbowner'}), 'f',
	'the database owner is not a superuser');

# a read-only default for the database (and a lock wait without end, and
# serializable): the writer still writes
owner_sql(q{
	ALTER DATABASE owned SET default_transaction_read_only = on;
	ALTER DATABASE owned SET lock_timeout = 0;
	ALTER DATABASE owned SET default_transaction_isolation = serializable;
});
ok(no_writer(), 'the writer is gone');
my $before = log_stats($node, 'owned');
is(owner_sql(q{
	SELECT count(ai_chat('read-only ' || i, ARRAY['ok'])) FROM generate_series(1, 2) i;
	SELECT ai_flush_log()}), "2\nt", 'the owner makes 2 calls');
my $after = log_stats($node, 'owned');
is($after->{written} - $before->{written}, 2,
	'a new writer writes them despite default_transaction_read_only');
is($after->{lost} - $before->{lost}, 0, 'none is lost');
is(admin_sql(q{SELECT count(*) FROM public.ai_call_log WHERE prompt IS NULL}), 5,
	'the rows are there');
owner_sql(q{SET default_transaction_read_only = off;
             ALTER DATABASE owned RESET default_transaction_read_only});

# a lock held on the log: the writer gives up after its own lock_timeout
# (5 s; the database's setting is 0, wait forever) and counts the batch
# lost, instead of waiting with the records queued

my $locker = $node->background_psql('owned');
$locker->query_safe('BEGIN; LOCK TABLE public.ai_call_log IN ACCESS EXCLUSIVE MODE');
$before = log_stats($node, 'owned');
is(owner_sql(q{SELECT ai_chat('blocked', ARRAY['ok']) IS NOT NULL;
               SELECT ai_flush_log('60s')}), "t\nt",
	'the record is handled while the lock is held');
$after = log_stats($node, 'owned');
is($after->{lost} - $before->{lost}, 1, 'it is counted lost');
like($after->{last_error}, qr/lock timeout/, 'because of the lock timeout');
$locker->query_safe('COMMIT');
$locker->quit;

# A table owner's code runs as a security-restricted operation: a trigger
# of an owner that is not a superuser cannot create a temporary object,
# which would outlive the statement in the superuser's session.
admin_sql(q{ALTER TABLE public.ai_call_log OWNER TO dbowner});
owner_sql(q{
	CREATE FUNCTION public.leave_temp() RETURNS trigger
	LANGUAGE plpgsql AS $$
	BEGIN
		CREATE TEMP TABLE IF NOT EXISTS left_behind (x int);
		RETURN NEW;
	END $$;
	CREATE TRIGGER leave_temp BEFORE INSERT ON public.ai_call_log
	FOR EACH STATEMENT EXECUTE FUNCTION public.leave_temp();
});
$before = log_stats($node, 'owned');
is(owner_sql(q{SELECT ai_chat('restricted', ARRAY['ok']) IS NOT NULL;
               SELECT ai_flush_log()}), "t\nt", 'one more call');
$after = log_stats($node, 'owned');
is($after->{lost} - $before->{lost}, 1, 'the trigger failed the insert');
like($after->{last_error}, qr/security-restricted operation/,
	'because it ran as a security-restricted operation');

$node->stop;
done_testing();
