#!/usr/bin/env bash
#
# bench.sh
#	  Benchmarks of pg_ai_resilience against the gateway simulator, from a
#	  fresh Debian 12 machine, as root: installs missing packages, builds the
#	  extension, the simulator and the plain client, then, holding the
#	  machine's install lock, installs the extension, starts the simulator
#	  and a throwaway cluster (pg_virtualenv) and runs the chosen benchmarks.
#	  Results go to test/bench/out/results.txt (and are printed); raw
#	  per-run figures to test/bench/out/<benchmark>_runs.tsv.
#
#	  usage: bench.sh [all|b1 ...]          (default: all)
#	  env:   N (5000) calls per run, RUNS (5), WARMUP (100) untimed calls
#
#	  B1  per-call time of ai_chat vs a plain libcurl client, simulator at
#	      zero latency (see README.md)
#
# Adding a benchmark Bn: write a function bn that runs inside the cluster
# (psql works, AI_SIM_URL is the simulator), appends its rows to the table
# with result_row and its notes with result_note; add it to BENCHMARKS and
# to the list above.  Packages it needs go in PACKAGES.
#
set -euo pipefail
cd "$(dirname "$0")/../.."
top=$(pwd)
bench_dir=$top/test/bench
out=$bench_dir/out

N=${N:-5000}
RUNS=${RUNS:-5}
WARMUP=${WARMUP:-100}
LOCK=/tmp/pg_ai_resilience.lock

# every benchmark, in the order "all" runs them
BENCHMARKS=(b1)
# what the benchmarks need beyond test/scripts/install-deps.sh
PACKAGES=(util-linux)

#---- helpers ----

# median of numbers given one per line on stdin
median() {
	sort -g | awk '{ v[NR] = $1 } END {
		if (NR == 0) exit 1
		if (NR % 2) m = v[(NR + 1) / 2]; else m = (v[NR / 2] + v[NR / 2 + 1]) / 2
		printf "%.2f\n", m }'
}

# psql on the benchmark database, quiet, unaligned, stopping at the first error
bpsql() {
	psql -X -q -At -v ON_ERROR_STOP=1 -d bench "$@"
}

# one row of the results table: benchmark | plain µs | ai_chat µs | ratio
result_row() {
	printf '%-34s | %10s | %10s | %6s\n' "$@" >> "$out/table.txt"
}

# a line printed under the results table
result_note() {
	echo "$*" >> "$out/notes.txt"
}

#---- B1: per-call time, ai_chat vs plain libcurl ----

# per-request µs of the plain client over N requests: "mean median"
b1_plain_run() {
	local line
	line=$("$bench_dir/plain_client" "$AI_SIM_URL/v1/chat/completions" sk-bench "$N" "$WARMUP")
	awk '{ print $6, $4 }' <<< "$line"
}

# per-call µs of ai_chat over N calls in one session (elapsed/N, psql
# \timing), then the rows the timed statement left in ai_call_log and how
# many of them are not 'success': "per_call rows not_success"
b1_ai_chat_run() {
	local output ms count rows bad
	output=$(bpsql -v n="$N" -v warmup="$WARMUP" -v ep="$AI_SIM_URL/v1" <<-'SQL'
		SET ai_resilience.endpoints = :'ep';
		SET ai_resilience.api_key = 'sk-bench';
		-- warm-up: loads the library, opens the connection, prepares the log insert
		SELECT count(ai_chat('bench prompt ' || i, ARRAY['ok'])) FROM generate_series(1, :warmup) i \g /dev/null
		TRUNCATE ai_call_log;
		\timing on
		SELECT count(ai_chat('bench prompt ' || i, ARRAY['ok'])) FROM generate_series(1, :n) i;
		\timing off
		SELECT count(*), count(*) FILTER (WHERE outcome <> 'success') FROM ai_call_log;
	SQL
	)
	count=$(sed -n 1p <<< "$output")
	ms=$(sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' <<< "$output")
	read -r rows bad < <(sed -n 3p <<< "$output" | tr '|' ' ')
	[ "$count" = "$N" ] && [ -n "$ms" ] || { echo "b1: ai_chat run failed: $output" >&2; return 1; }
	awk -v ms="$ms" -v n="$N" -v rows="$rows" -v bad="$bad" \
		'BEGIN { printf "%.2f %d %d\n", ms * 1000 / n, rows, bad }'
}

# per-row µs of N single-row INSERTs into ai_call_log from PL/pgSQL with
# values like those of a successful call: about what calllog_append's SPI
# insert costs ai_chat per call (without SPI_connect/SPI_finish)
b1_log_insert_run() {
	bpsql -v n="$N" -v warmup="$WARMUP" -v ep="$AI_SIM_URL/v1" <<-'SQL'
		SELECT bench_log_insert(:warmup, :'ep') \g /dev/null
		TRUNCATE ai_call_log;
		SELECT round(bench_log_insert(:n, :'ep')::numeric, 2);
		TRUNCATE ai_call_log;
	SQL
}

b1() {
	local runs=$out/b1_runs.tsv run line plain plain_median ai rows bad insert
	echo "== B1: per-call time, ai_chat vs plain libcurl (N=$N, $RUNS runs, simulator at zero latency)"
	bpsql <<-'SQL'
		CREATE OR REPLACE FUNCTION bench_log_insert(n integer, ep text)
		RETURNS double precision LANGUAGE plpgsql AS $$
		DECLARE
		    t0 timestamptz := clock_timestamp();
		BEGIN
		    FOR i IN 1..n LOOP
		        INSERT INTO ai_call_log (call_id, attempt, route_index, route_attempt,
		            started_at, latency_ms, model, endpoint, code, error_class, error,
		            streaming, retry_after_ms, backoff_ms, outcome, request_id,
		            model_returned, finish_reason, prompt_tokens, completion_tokens,
		            new_connection, role_name, backend_pid, prompt)
		        VALUES (gen_random_uuid(), 1, 0, 1, clock_timestamp(), 0.1, 'ok', ep,
		            200, NULL, NULL, false, NULL, NULL, 'success', 'req-' || i,
		            'ok', 'stop', 3, 6, false, current_user, pg_backend_pid(), NULL);
		    END LOOP;
		    RETURN extract(epoch FROM clock_timestamp() - t0) * 1e6 / n;
		END;
		$$;
	SQL
	printf 'run\tplain_us\tplain_median_us\tai_chat_us\tlog_rows\tlog_not_success\tlog_insert_us\n' > "$runs"
	for run in $(seq 1 "$RUNS"); do
		# set -e stops the script if a run fails
		line=$(b1_plain_run)
		read -r plain plain_median <<< "$line"
		line=$(b1_ai_chat_run)
		read -r ai rows bad <<< "$line"
		insert=$(b1_log_insert_run)
		printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$run" "$plain" "$plain_median" "$ai" "$rows" "$bad" "$insert" >> "$runs"
		printf 'run %s: plain %s µs (median request %s µs), ai_chat %s µs (%s log rows, %s not success), log insert %s µs\n' \
			"$run" "$plain" "$plain_median" "$ai" "$rows" "$bad" "$insert"
	done

	plain=$(cut -f2 "$runs" | tail -n +2 | median)
	plain_median=$(cut -f3 "$runs" | tail -n +2 | median)
	ai=$(cut -f4 "$runs" | tail -n +2 | median)
	insert=$(cut -f7 "$runs" | tail -n +2 | median)
	result_row "B1 per call (N=$N)" "$plain" "$ai" "$(awk -v a="$ai" -v p="$plain" 'BEGIN { printf "%.2f", a / p }')"
	result_row "B1 ai_chat less log insert" "$plain" \
		"$(awk -v a="$ai" -v i="$insert" 'BEGIN { printf "%.2f", a - i }')" \
		"$(awk -v a="$ai" -v i="$insert" -v p="$plain" 'BEGIN { printf "%.2f", (a - i) / p }')"
	result_note "B1: per call = elapsed/N, median of $RUNS alternating runs (plain, then ai_chat, then the log insert replay)."
	result_note "B1: plain client's median single request: $plain_median µs (median of the runs' medians)."
	result_note "B1: ai_call_log: $(cut -f5 "$runs" | tail -n +2 | sort -u | tr '\n' ' ')rows per run of $N calls, $(cut -f6 "$runs" | tail -n +2 | sort -u | tr '\n' ' ')not 'success' (one row per attempt)."
	result_note "B1: log insert (PL/pgSQL replay of the same row, N single-row INSERTs): $insert µs per row, subtracted in the second row."
}

#---- inside the cluster ----

# run the benchmarks named in the arguments; pg_virtualenv has set PG*
in_cluster() {
	local b
	psql -X -q -v ON_ERROR_STOP=1 -d postgres -c 'CREATE DATABASE bench'
	bpsql -c 'CREATE EXTENSION pg_ai_resilience'
	for b in "$@"; do
		"$b"
	done
}

#---- outside: packages, build, lock, simulator, cluster ----

if [ "${1:-}" = "--in-cluster" ]; then
	shift
	in_cluster "$@"
	exit
fi

selected=()
for arg in "${@:-all}"; do
	case "$arg" in
		all) selected+=("${BENCHMARKS[@]}") ;;
		*)
			if [[ " ${BENCHMARKS[*]} " == *" $arg "* ]]; then
				selected+=("$arg")
			else
				echo "usage: bench.sh [all|${BENCHMARKS[*]// /|}] ..." >&2
				exit 2
			fi ;;
	esac
done

bash test/scripts/install-deps.sh
missing=()
for p in "${PACKAGES[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "installing: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

make -s >/dev/null
make -s -C test/gateway >/dev/null
make -s -C test/bench >/dev/null

mkdir -p "$out"
rm -f "$out/table.txt" "$out/notes.txt"

# one install-and-benchmark at a time on a machine: the extension goes into
# the one PostgreSQL library directory, and other runs would skew the timings
# (so do not wrap bench.sh in flock: it would wait for itself)
exec 9>"$LOCK"
flock -n 9 || { echo "waiting for $LOCK"; flock 9; }
make -s install >/dev/null

source test/scripts/sim.sh
start_sim --no-journal
pg_virtualenv -c '--locale=C.UTF-8' bash "$bench_dir/bench.sh" --in-cluster "${selected[@]}"

{
	echo "pg_ai_resilience benchmarks, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD)"
	echo "machine: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)," \
		"$(. /etc/os-release; echo "$PRETTY_NAME"), $(pg_config --version)," \
		"$(curl-config --version), load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "simulator: --no-journal, zero latency; N=$N calls per run, $RUNS runs, $WARMUP warm-up calls"
	echo
	# "µ" is two bytes: one more byte of width keeps the columns aligned
	printf '%-34s | %11s | %11s | %6s\n' benchmark "plain µs" "ai_chat µs" ratio
	printf '%-34s-|-%10s-|-%10s-|-%6s\n' "" "" "" "" | tr ' ' '-'
	cat "$out/table.txt"
	echo
	cat "$out/notes.txt"
} > "$out/results.txt"
echo
cat "$out/results.txt"
