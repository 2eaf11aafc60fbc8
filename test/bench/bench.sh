#!/usr/bin/env bash
#
# bench.sh
#	  Benchmarks of pg_ai_resilience against the gateway simulator, from a
#	  fresh Debian 12 machine, as root: installs missing packages, builds the
#	  extension, the simulator and the plain client, then, holding the
#	  machine's install lock, installs the extension, starts the simulator
#	  and a throwaway cluster (pg_virtualenv) and runs the chosen benchmarks.
#	  Results go to test/bench/out/results.txt (and are printed): the latest
#	  figures of every benchmark that has run, so that benchmarks run one by
#	  one add up; raw per-run figures to test/bench/out/<benchmark>_runs.tsv.
#
#	  usage: bench.sh [all|b1|b2|b3|b4|b5 ...]       (default: all)
#	  env:   RUNS runs of each side (5 for B1, 3 for B2-B5); see each
#	         benchmark for its own (N, WARMUP, B2_N, B4_N, ...)
#
#	  B1  per-call time of ai_chat vs a plain libcurl client, simulator at
#	      zero latency (see README.md)
#	  B2  ai_chat_batch throughput, 10,000 prompts at concurrency 64 and
#	      100 ms latency; row-by-row ai_chat; sweep over concurrency (chart)
#	  B3  B2 with faults (20 % 500, 5 % 429 with Retry-After 1 s), retries on
#	  B4  a 2,000-token answer streamed vs not, zero latency
#	  B5  route health: outages (a dead model, a hung endpoint, every route
#	      dead) row by row and in a batch, and the breaker's cost per call
#
#	  A full "all" takes about 10 minutes: on a shared machine, run the
#	  benchmarks one per invocation (each under 4 minutes).
#
# Adding a benchmark Bn: write a function bn that runs inside the cluster
# (psql works, AI_SIM_URL is the zero-latency simulator, sim_up starts
# others), starts its table with result_table, appends its rows with
# result_row and its notes with result_note; add it to BENCHMARKS and to the
# list above.  Packages it needs go in PACKAGES.
#
set -euo pipefail
cd "$(dirname "$0")/../.."
top=$(pwd)
bench_dir=$top/test/bench
out=$bench_dir/out

RUNS=${RUNS:-}
LOCK=/tmp/pg_ai_resilience.lock

# every benchmark, in the order "all" runs them
BENCHMARKS=(b1 b2 b3 b4 b5)
# what the benchmarks need beyond test/scripts/install-deps.sh
PACKAGES=(util-linux gnuplot-nox)

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

# start the results table of the running benchmark ($CUR):
# result_table HEADER_FORMAT ROW_FORMAT HEADER...; the header's own format
# lets a column title with a two-byte "µ" be one byte wider
result_table() {
	local header_fmt=$1
	ROW_FMT=$2
	shift 2
	# shellcheck disable=SC2059
	printf "$header_fmt" "$@" > "$out/$CUR.table"
	separator_line "$#" >> "$out/$CUR.table"
}

# the dashed line under a header of $1 columns, from ROW_FMT with empty cells
separator_line() {
	local cells=() i
	for ((i = 0; i < $1; i++)); do cells+=(""); done
	# shellcheck disable=SC2059
	printf "$ROW_FMT" "${cells[@]}" | sed 's/ | /-|-/g' | tr ' ' '-'
}

# one row of the running benchmark's results table, in its ROW_FORMAT
result_row() {
	# shellcheck disable=SC2059
	printf "$ROW_FMT" "$@" >> "$out/$CUR.table"
}

# a line printed under the running benchmark's results table
result_note() {
	echo "$*" >> "$out/$CUR.notes"
}

# awk arithmetic on the arguments: calc 'a / b' a=1 b=2 -> 0.50 (or FORMAT
# given as --fmt %.1f)
calc() {
	local fmt=%.2f expr v vars=()
	if [ "$1" = --fmt ]; then fmt=$2; shift 2; fi
	expr=$1
	shift
	for v in "$@"; do vars+=(-v "$v"); done
	awk "${vars[@]}" "BEGIN { printf \"$fmt\\n\", $expr }"
}

# column $2 (1-based) of the tsv $1, less its header line, as a median
col_median() {
	cut -f"$2" "$1" | tail -n +2 | median
}

# CPU seconds (user + system) a process has used so far, all its threads,
# dead ones included (in clock ticks of 10 ms).  The backend's own CPU time
# is read in ns from /proc/<pid>/schedstat instead (one thread).
cpu_seconds() {
	awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f\n", ($14 + $15) / hz }' "/proc/$1/stat"
}

#---- extra simulators ----

SIM_PIDS=()
# launch_sim and start_sim
source "$top/test/scripts/sim.sh"

# start a simulator with the given options on a free port (launch_sim of
# test/scripts/sim.sh); sets SIM_PID and SIM_URL (so do not call it in
# $(...)); sim_down or the exit stops it
sim_up() {
	launch_sim "$@" || return 1
	SIM_PIDS+=("$SIM_PID")
}

# stop the simulator of pid $1
sim_down() {
	kill "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}

sims_down() {
	local pid
	for pid in "${SIM_PIDS[@]}"; do
		sim_down "$pid"
	done
}

#---- B1: per-call time, ai_chat vs plain libcurl ----

# per-request µs of the plain client over N requests: "mean median"
b1_plain_run() {
	local line
	line=$("$bench_dir/plain_client" "$AI_SIM_URL/v1/chat/completions" sk-bench "$N" "$WARMUP")
	awk '{ print $6, $4 }' <<< "$line"
}

# per-call µs of ai_chat over N calls in one session (elapsed/N, psql
# \timing) with ai_resilience.log_attempts = $1 (on/off), then the rows the
# timed statement left in ai_call_log and how many of them are not
# 'success': "per_call rows not_success"
b1_ai_chat_run() {
	local output ms count rows bad
	output=$(bpsql -v n="$N" -v warmup="$WARMUP" -v ep="$AI_SIM_URL/v1" -v log="$1" <<-'SQL'
		SET ai_resilience.endpoints = :'ep';
		SET ai_resilience.api_key = 'sk-bench';
		SET ai_resilience.log_attempts = :log;
		-- warm-up: loads the library, opens the connection, starts the log writer
		SELECT count(ai_chat('bench prompt ' || i, ARRAY['ok'])) FROM generate_series(1, :warmup) i \g /dev/null
		SELECT ai_flush_log() \g /dev/null
		TRUNCATE ai_call_log;
		\timing on
		SELECT count(ai_chat('bench prompt ' || i, ARRAY['ok'])) FROM generate_series(1, :n) i;
		\timing off
		SELECT ai_flush_log() \g /dev/null
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

b1() {
	local runs=$out/b1_runs.tsv run line plain plain_median ai rows bad nolog
	# N calls per run, RUNS runs, WARMUP untimed calls before each
	local N=${N:-5000} RUNS=${RUNS:-5} WARMUP=${WARMUP:-100}
	echo "== B1: per-call time, ai_chat vs plain libcurl (N=$N, $RUNS runs, simulator at zero latency)"
	printf 'run\tplain_us\tplain_median_us\tai_chat_us\tlog_rows\tlog_not_success\tai_chat_nolog_us\n' > "$runs"
	for run in $(seq 1 "$RUNS"); do
		# set -e stops the script if a run fails
		line=$(b1_plain_run)
		read -r plain plain_median <<< "$line"
		line=$(b1_ai_chat_run on)
		read -r ai rows bad <<< "$line"
		line=$(b1_ai_chat_run off)
		read -r nolog _ _ <<< "$line"
		printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$run" "$plain" "$plain_median" "$ai" "$rows" "$bad" "$nolog" >> "$runs"
		printf 'run %s: plain %s µs (median request %s µs), ai_chat %s µs (%s log rows, %s not success), ai_chat with the log off %s µs\n' \
			"$run" "$plain" "$plain_median" "$ai" "$rows" "$bad" "$nolog"
	done

	plain=$(cut -f2 "$runs" | tail -n +2 | median)
	plain_median=$(cut -f3 "$runs" | tail -n +2 | median)
	ai=$(cut -f4 "$runs" | tail -n +2 | median)
	nolog=$(cut -f7 "$runs" | tail -n +2 | median)
	result_table '%-34s | %11s | %11s | %6s\n' '%-34s | %10s | %10s | %6s\n' \
		B1 "plain µs" "ai_chat µs" ratio
	result_row "B1 per call (N=$N)" "$plain" "$ai" "$(awk -v a="$ai" -v p="$plain" 'BEGIN { printf "%.2f", a / p }')"
	result_row "B1 ai_chat, log_attempts off" "$plain" "$nolog" \
		"$(awk -v a="$nolog" -v p="$plain" 'BEGIN { printf "%.2f", a / p }')"
	result_note "B1: simulator --no-journal, zero latency; N=$N calls per run, $RUNS runs, $WARMUP warm-up calls."
	result_note "B1: per call = elapsed/N, median of $RUNS alternating runs (plain, then ai_chat, then ai_chat with the log off)."
	result_note "B1: plain client's median single request: $plain_median µs (median of the runs' medians)."
	result_note "B1: ai_call_log: $(cut -f5 "$runs" | tail -n +2 | sort -u | tr '\n' ' ')rows per run of $N calls, $(cut -f6 "$runs" | tail -n +2 | sort -u | tr '\n' ' ')not 'success' (one row per attempt)."
	result_note "B1: the log's cost per call: $(awk -v a="$ai" -v n="$nolog" 'BEGIN { printf "%.2f µs (%.1f %%)", a - n, 100 * (a - n) / n }') (log on vs off)."
}

#---- B2-B4 helpers ----

# per-run figures of the timed statement in a psql output: the "Time:" line
# of \timing in ms
psql_ms() {
	sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' <<< "$1"
}

# one timed ai_chat_batch of $2 prompts 'p1'..'pn' with model ok at
# concurrency $3 and max_retries $4, against the simulator at $1 whose pid is
# $5; prints "ms rows answered log_rows calls backend_cpu_s sim_cpu_s
# in_flight": the elapsed time, the rows and non-NULL responses the batch
# returned, the ai_call_log rows (attempts) and distinct call_ids it left,
# the CPU seconds the backend and the simulator used meanwhile, and the mean
# number of requests in flight (the attempts' summed latency_ms / elapsed)
batch_run() {
	local url=$1 n=$2 c=$3 retries=$4 sim_pid=$5 output ms cpu_file s0 s1
	local rows answered log calls busy
	cpu_file=$(mktemp /tmp/bench-cpu.XXXXXX)
	s0=$(cpu_seconds "$sim_pid")
	output=$(CPU_FILE=$cpu_file bpsql -v ep="$url/v1" -v n="$n" -v c="$c" -v r="$retries" <<-'SQL'
		SET ai_resilience.endpoints = :'ep';
		SET ai_resilience.api_key = 'sk-bench';
		SET ai_resilience.max_concurrency = :c;
		SET ai_resilience.max_retries = :r;
		-- failed prompts are counted below; no WARNING on stderr
		SET client_min_messages = error;
		-- warm-up: loads the library, prepares the log insert
		SELECT count(*) FROM ai_chat_batch(ARRAY['warm-up'], ARRAY['ok']) \g /dev/null
		SELECT ai_flush_log() \g /dev/null
		TRUNCATE ai_call_log;
		SELECT pg_backend_pid() AS bpid \gset
		\setenv BPID :bpid
		\! awk '{ printf "%.6f\n", $1 / 1e9 }' /proc/$BPID/schedstat > "$CPU_FILE"
		\timing on
		SELECT count(*), count(response) FROM ai_chat_batch(ARRAY(SELECT 'p' || i FROM generate_series(1, :n) i), ARRAY['ok']);
		\timing off
		\! awk '{ printf "%.6f\n", $1 / 1e9 }' /proc/$BPID/schedstat >> "$CPU_FILE"
		SELECT ai_flush_log() \g /dev/null
		SELECT count(*), count(DISTINCT call_id), sum(latency_ms) FROM ai_call_log;
	SQL
	)
	s1=$(cpu_seconds "$sim_pid")
	ms=$(psql_ms "$output")
	read -r rows answered < <(grep '|' <<< "$output" | sed -n 1p | tr '|' ' ')
	read -r log calls busy < <(grep '|' <<< "$output" | sed -n 2p | tr '|' ' ')
	[ "$rows" = "$n" ] && [ -n "$ms" ] || { echo "batch run failed: $output" >&2; rm -f "$cpu_file"; return 1; }
	echo "$ms $rows $answered $log $calls" \
		"$(awk 'NR == 1 { a = $1 } NR == 2 { printf "%.4f", $1 - a }' "$cpu_file")" \
		"$(calc 's1 - s0' s1="$s1" s0="$s0")" "$(calc --fmt %.1f 'b / ms' b="$busy" ms="$ms")"
	rm -f "$cpu_file"
}

#---- B2: ai_chat_batch throughput at 100 ms latency ----

# ms per call of $2 sequential ai_chat calls (model ok) against $1
seq_run() {
	local output ms
	output=$(bpsql -v ep="$1/v1" -v n="$2" <<-'SQL'
		SET ai_resilience.endpoints = :'ep';
		SET ai_resilience.api_key = 'sk-bench';
		SELECT ai_chat('warm-up', ARRAY['ok']) \g /dev/null
		SELECT ai_flush_log() \g /dev/null
		TRUNCATE ai_call_log;
		\timing on
		SELECT count(ai_chat('p' || i, ARRAY['ok'])) FROM generate_series(1, :n) i;
		\timing off
	SQL
	)
	ms=$(psql_ms "$output")
	[ "$(sed -n 1p <<< "$output")" = "$2" ] && [ -n "$ms" ] || { echo "b2: row-by-row run failed: $output" >&2; return 1; }
	calc 'ms / n' ms="$ms" n="$2"
}

b2() {
	# B2_N prompts at concurrency B2_C, simulator latency B2_LATENCY ms;
	# B2_SEQ row-by-row calls; B2_SWEEP concurrencies of the sweep
	local RUNS=${RUNS:-3} n=${B2_N:-10000} c=${B2_C:-64} lat=${B2_LATENCY:-100} seqn=${B2_SEQ:-50}
	local sweep
	read -r -a sweep <<< "${B2_SWEEP:-1 4 16 64 128}"
	local runs=$out/b2_runs.tsv sweep_runs=$out/b2_sweep_runs.tsv chart_data=$out/b2_concurrency.tsv
	local url pid run ms rows answered log calls bcpu scpu fly rps seq cc pn ideal
	echo "== B2: ai_chat_batch, $n prompts at concurrency $c, simulator --latency-ms $lat ($RUNS runs)"
	sim_up --latency-ms "$lat" --no-journal
	url=$SIM_URL
	pid=$SIM_PID
	ideal=$(calc --fmt %.1f 'c * 1000 / lat' c="$c" lat="$lat")
	printf 'run\tms\treq_s\tanswered\tlog_rows\tbackend_cpu_s\tsim_cpu_s\tseq_call_ms\tin_flight\n' > "$runs"
	printf 'run\tconcurrency\tprompts\tms\treq_s\tbackend_cpu_s\tsim_cpu_s\n' > "$sweep_runs"
	for run in $(seq 1 "$RUNS"); do
		read -r ms rows answered log calls bcpu scpu fly < <(batch_run "$url" "$n" "$c" 2 "$pid")
		[ "$answered" = "$n" ] || { echo "b2: only $answered of $n prompts answered" >&2; return 1; }
		rps=$(calc 'n * 1000 / ms' n="$n" ms="$ms")
		seq=$(seq_run "$url" "$seqn")
		printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$run" "$ms" "$rps" "$answered" "$log" "$bcpu" "$scpu" "$seq" "$fly" >> "$runs"
		printf 'run %s: batch %s ms = %s req/s (%s answered, %s log rows, CPU backend %s s, simulator %s s, %s in flight); row-by-row %s ms per call\n' \
			"$run" "$ms" "$rps" "$answered" "$log" "$bcpu" "$scpu" "$fly" "$seq"
		for cc in "${sweep[@]}"; do
			pn=$(( 40 * cc > 200 ? 40 * cc : 200 ))
			pn=$(( pn > n ? n : pn ))
			read -r ms rows answered log calls bcpu scpu < <(batch_run "$url" "$pn" "$cc" 2 "$pid")
			rps=$(calc 'n * 1000 / ms' n="$pn" ms="$ms")
			printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$run" "$cc" "$pn" "$ms" "$rps" "$bcpu" "$scpu" >> "$sweep_runs"
			printf '  concurrency %s: %s prompts, %s ms = %s req/s\n' "$cc" "$pn" "$ms" "$rps"
		done
	done
	sim_down "$pid"

	local ms_m rps_m seq_m rowrate bcpu_m scpu_m
	ms_m=$(col_median "$runs" 2)
	rps_m=$(col_median "$runs" 3)
	seq_m=$(col_median "$runs" 8)
	bcpu_m=$(col_median "$runs" 6)
	scpu_m=$(col_median "$runs" 7)
	rowrate=$(calc '1000 / s' s="$seq_m")
	result_table '%-46s | %10s | %-20s\n' '%-46s | %10s | %-20s\n' \
		"B2 ($n prompts, concurrency $c, ${lat} ms)" value "target / ideal"
	result_row "batch time, s" "$(calc 'ms / 1000' ms="$ms_m")" "ideal $(calc 'n / i' n="$n" i="$ideal")"
	result_row "requests/s" "$rps_m" "ideal $ideal"
	result_row "% of ideal" "$(calc --fmt %.1f '100 * r / i' r="$rps_m" i="$ideal")" ">= 90"
	result_row "row-by-row ai_chat, ms per call ($seqn calls)" "$seq_m" "ideal $lat"
	result_row "row-by-row ai_chat, rows/s" "$rowrate" "ideal $(calc '1000 / l' l="$lat")"
	result_row "speed-up, batch / row-by-row" "$(calc --fmt %.1fx 'r / s' r="$rps_m" s="$rowrate")" "ideal ${c}x"
	result_row "backend CPU during the batch, % of a core" "$(calc --fmt %.1f '100 * c / ms * 1000' c="$bcpu_m" ms="$ms_m")" ""
	result_row "simulator CPU during the batch, % of a core" "$(calc --fmt %.1f '100 * c / ms * 1000' c="$scpu_m" ms="$ms_m")" ""
	result_row "mean requests in flight" "$(col_median "$runs" 9)" "max_concurrency $c"
	result_row "backend CPU per prompt, microseconds" "$(calc --fmt %.0f 'c * 1e6 / n' c="$bcpu_m" n="$n")" ""

	printf 'concurrency\tprompts\treq_s\tideal_req_s\n' > "$chart_data"
	for cc in "${sweep[@]}"; do
		pn=$(awk -F'\t' -v c="$cc" '$2 == c { print $3; exit }' "$sweep_runs")
		rps=$(awk -F'\t' -v c="$cc" '$2 == c { print $5 }' "$sweep_runs" | median)
		ideal=$(calc --fmt %.1f 'c * 1000 / lat' c="$cc" lat="$lat")
		printf '%s\t%s\t%s\t%s\n' "$cc" "$pn" "$rps" "$ideal" >> "$chart_data"
		result_row "sweep: concurrency $cc ($pn prompts), req/s" "$rps" \
			"ideal $ideal ($(calc --fmt %.1f '100 * r / i' r="$rps" i="$ideal") %)"
	done
	b2_chart "$chart_data" "$lat"

	result_note "B2: simulator --latency-ms $lat --no-journal, a simulator of its own; medians of $RUNS runs; each run: the batch, then $seqn row-by-row calls, then the sweep."
	result_note "B2: ideal = concurrency × 1000 / latency ms; time = \\timing of SELECT count(*), count(response) FROM ai_chat_batch(ARRAY(SELECT 'p' || i FROM generate_series(1, $n) i), ARRAY['ok']), after a one-prompt warm-up."
	result_note "B2: every run answered all $n prompts with $(cut -f5 "$runs" | tail -n +2 | sort -u | tr '\n' ' ')log rows (one attempt each)."
	result_note "B2: CPU over the batch: backend from /proc/<pid>/schedstat (ns), simulator utime + stime of all its threads from /proc/<pid>/stat (10 ms ticks); the machine has $(nproc) cores."
	result_note "B2: sweep prompts = max(200, 40 × concurrency) capped at $n; chart: out/b2_concurrency.tsv -> out/b2_concurrency.png."
}

# the sweep chart: x concurrency, y requests/s, both log scale (so the ideal
# c × 1000 / latency is a straight line, as are the measured segments)
b2_chart() {
	gnuplot <<-EOF_PLOT
		set terminal pngcairo size 800,500 font "sans,10" noenhanced
		set output "$out/b2_concurrency.png"
		set title "B2: ai_chat_batch throughput vs max_concurrency (simulator latency $2 ms, $(date -u +%Y-%m-%d))"
		set xlabel "ai_resilience.max_concurrency"
		set ylabel "requests/s"
		set logscale x 2
		set logscale y 10
		set xrange [0.8:160]
		set yrange [5:2000]
		set key top left
		set grid
		plot x * 1000 / $2 title "ideal: concurrency × 1000 / $2 ms" with lines dashtype 2 lw 1.5, \\
		     "$1" using 1:3 skip 1 title "measured (median of $RUNS runs)" with linespoints pt 7 ps 1.2 lw 2, \\
		     "$1" using 1:3:(sprintf("%.0f", \$3)) skip 1 notitle with labels offset 0,1.2
	EOF_PLOT
}

#---- B3: ai_chat_batch with faults ----

b3() {
	# B3_N prompts at concurrency B3_C, latency B3_LATENCY ms, with faults;
	# RUNS batches with max_retries 2, B3_RUNS5 with max_retries 5 (its
	# backoffs reach 8 s, so a batch takes minutes), one fault-free batch
	local RUNS=${RUNS:-3} runs5=${B3_RUNS5:-1} n=${B3_N:-10000} c=${B3_C:-64} lat=${B3_LATENCY:-100}
	local faults=(--fault-5xx 0.2 --fault-429 0.05 --fault-retry-after 1 --seed 42)
	local runs=$out/b3_runs.tsv run r ms rows answered log calls bcpu scpu fly base base_fly
	echo "== B3: ai_chat_batch, $n prompts at concurrency $c, --latency-ms $lat ${faults[*]} ($RUNS runs with max_retries 2, $runs5 with 5)"
	sim_up --latency-ms "$lat" --no-journal
	read -r base rows answered log calls bcpu scpu base_fly < <(batch_run "$SIM_URL" "$n" "$c" 2 "$SIM_PID")
	sim_down "$SIM_PID"
	echo "fault-free: $base ms, $answered answered, $base_fly in flight"
	printf 'max_retries\trun\tms\tanswered\tattempts\tcalls\tin_flight\n' > "$runs"
	printf '0\t1\t%s\t%s\t%s\t%s\t%s\n' "$base" "$answered" "$log" "$calls" "$base_fly" >> "$runs"
	for r in 2 5; do
		for run in $(seq 1 "$([ "$r" = 2 ] && echo "$RUNS" || echo "$runs5")"); do
			# a new simulator for every batch: the fault draws start again from the seed
			sim_up --latency-ms "$lat" "${faults[@]}" --no-journal
			read -r ms rows answered log calls bcpu scpu fly < <(batch_run "$SIM_URL" "$n" "$c" "$r" "$SIM_PID")
			sim_down "$SIM_PID"
			printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$run" "$ms" "$answered" "$log" "$calls" "$fly" >> "$runs"
			printf 'max_retries %s, run %s: %s ms, %s answered, %s attempts for %s calls, %s in flight\n' \
				"$r" "$run" "$ms" "$answered" "$log" "$calls" "$fly"
		done
	done

	local r2 r5
	# median over the runs of column $2 for max_retries $1
	b3_med() { awk -F'\t' -v r="$1" -v col="$2" 'NR > 1 && $1 == r { print $col }' "$runs" | median; }
	b3_min() { awk -F'\t' -v r="$1" 'NR > 1 && $1 == r { print $4 }' "$runs" | sort -n | head -1; }
	b3_apc() { awk -F'\t' -v r="$1" 'NR > 1 && $1 == r { print $5 / $6 }' "$runs" | median; }
	r2=$(b3_med 2 3)
	r5=$(b3_med 5 3)
	result_table '%-42s | %14s | %14s | %-13s\n' '%-42s | %14s | %14s | %-13s\n' \
		"B3 ($n prompts, concurrency $c, ${lat} ms)" "max_retries 2" "max_retries 5" target
	result_row "runs" "$RUNS" "$runs5" ""
	result_row "answered (non-NULL), median" "$(b3_med 2 4 | cut -d. -f1) / $n" "$(b3_med 5 4 | cut -d. -f1) / $n" "$n / $n"
	result_row "answered, worst run" "$(b3_min 2) / $n" "$(b3_min 5) / $n" ""
	result_row "batch time, s" "$(calc 'ms / 1000' ms="$r2")" "$(calc 'ms / 1000' ms="$r5")" ""
	result_row "fault-free batch time, s" "$(calc 'ms / 1000' ms="$base")" "$(calc 'ms / 1000' ms="$base")" ""
	result_row "ratio to fault-free" "$(calc 'a / b' a="$r2" b="$base")x" "$(calc 'a / b' a="$r5" b="$base")x" "<= 1.5x"
	result_row "attempts per prompt (ai_call_log)" "$(b3_apc 2)" "$(b3_apc 5)" ""
	result_row "attempts/s" "$(calc --fmt %.0f 'a * n * 1000 / ms' a="$(b3_apc 2)" n="$n" ms="$r2")" \
		"$(calc --fmt %.0f 'a * n * 1000 / ms' a="$(b3_apc 5)" n="$n" ms="$r5")" "$(calc --fmt %.0f 'c * 1000 / l' c="$c" l="$lat") max"
	result_row "mean requests in flight (fault-free $base_fly)" "$(b3_med 2 7)" "$(b3_med 5 7)" "$c max"
	result_note "B3: simulator --latency-ms $lat ${faults[*]} --no-journal, a new one for each batch (the draws start from the seed each time); default backoff_base 500ms, backoff_max 8s, retry_after_max 60s."
	result_note "B3: the fault-free batch (simulator --latency-ms $lat, no faults) runs once, first; then $RUNS batches with max_retries 2 and $runs5 with max_retries 5; medians."
	result_note "B3: attempts per prompt = count(*) / count(DISTINCT call_id) of ai_call_log after the batch (one row per attempt); requests in flight = sum(latency_ms) of the attempts / elapsed."
}

#---- B4: streamed vs plain answers ----

# one timed run of $3 calls to ai_chat with model $2 and stream => $1 against
# the zero-latency simulator; prints "us_per_call backend_cpu_us sim_cpu_us
# response_bytes not_success streamed_attempts" (CPU per call)
stream_run() {
	local output ms line cpu_file s0 s1 bcpu
	cpu_file=$(mktemp /tmp/bench-cpu.XXXXXX)
	s0=$(cpu_seconds "$AI_SIM_PID")
	output=$(CPU_FILE=$cpu_file bpsql -v ep="$AI_SIM_URL/v1" -v s="$1" -v m="$2" -v n="$3" <<-'SQL'
		SET ai_resilience.endpoints = :'ep';
		SET ai_resilience.api_key = 'sk-bench';
		SELECT count(ai_chat('warm-up ' || i, ARRAY[:'m'], stream => :s)) FROM generate_series(1, 20) i \g /dev/null
		SELECT ai_flush_log() \g /dev/null
		TRUNCATE ai_call_log;
		SELECT pg_backend_pid() AS bpid \gset
		\setenv BPID :bpid
		\! awk '{ printf "%.6f\n", $1 / 1e9 }' /proc/$BPID/schedstat > "$CPU_FILE"
		\timing on
		SELECT count(ai_chat('p' || i, ARRAY[:'m'], stream => :s)) FROM generate_series(1, :n) i;
		\timing off
		\! awk '{ printf "%.6f\n", $1 / 1e9 }' /proc/$BPID/schedstat >> "$CPU_FILE"
		SELECT ai_flush_log() \g /dev/null
		SELECT sum(response_bytes), count(*) FILTER (WHERE outcome <> 'success'), count(*) FILTER (WHERE streaming) FROM ai_call_log;
	SQL
	)
	ms=$(psql_ms "$output")
	line=$(grep '|' <<< "$output" | tail -1 | tr '|' ' ')
	s1=$(cpu_seconds "$AI_SIM_PID")
	bcpu=$(awk 'NR == 1 { a = $1 } NR == 2 { printf "%.4f", $1 - a }' "$cpu_file")
	rm -f "$cpu_file"
	[ "$(sed -n 1p <<< "$output")" = "$3" ] && [ -n "$ms" ] || { echo "b4: run failed: $output" >&2; return 1; }
	echo "$(calc 'ms * 1000 / n' ms="$ms" n="$3")" "$(calc --fmt %.1f 'c * 1e6 / n' c="$bcpu" n="$3")" \
		"$(calc --fmt %.1f '(b - a) * 1e6 / n' a="$s0" b="$s1" n="$3")" "$line"
}

b4() {
	# B4_N calls per run and side, for each model of B4_MODELS
	local RUNS=${RUNS:-3} n=${B4_N:-500} models
	read -r -a models <<< "${B4_MODELS:-ok+tokens-2000 ok+tokens-60 ok}"
	local runs=$out/b4_runs.tsv run m plain pbytes pbad pstreamed stream sbytes sbad sstreamed
	local pb ps sb ss
	echo "== B4: ai_chat streamed vs not, $n calls per run, zero latency ($RUNS runs)"
	printf 'run\tmodel\tplain_us\tplain_bytes\tstream_us\tstream_bytes\tstreamed_attempts\tplain_backend_cpu_us\tplain_sim_cpu_us\tstream_backend_cpu_us\tstream_sim_cpu_us\n' > "$runs"
	for run in $(seq 1 "$RUNS"); do
		for m in "${models[@]}"; do
			read -r plain pb ps pbytes pbad pstreamed < <(stream_run false "$m" "$n")
			read -r stream sb ss sbytes sbad sstreamed < <(stream_run true "$m" "$n")
			[ "$pbad" = 0 ] && [ "$sbad" = 0 ] && [ "$pstreamed" = 0 ] && [ "$sstreamed" = "$n" ] && [ "$pbytes" = "$sbytes" ] || {
				echo "b4: $m: plain $pbytes bytes, $pbad failed, $pstreamed streamed; stream $sbytes bytes, $sbad failed, $sstreamed streamed" >&2
				return 1; }
			printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$run" "$m" "$plain" "$pbytes" "$stream" "$sbytes" "$sstreamed" \
				"$pb" "$ps" "$sb" "$ss" >> "$runs"
			printf 'run %s, %s: plain %s µs (CPU backend %s, simulator %s), streamed %s µs (CPU %s, %s) per call (%s answer bytes per run, both)\n' \
				"$run" "$m" "$plain" "$pb" "$ps" "$stream" "$sb" "$ss" "$pbytes"
		done
	done

	result_table '%-28s | %11s | %13s | %6s | %-6s | %13s | %13s\n' '%-28s | %10s | %12s | %6s | %-6s | %13s | %13s\n' \
		"B4 ($n calls, zero latency)" "plain µs" "streamed µs" ratio target "plain CPU" "strm CPU"
	for m in "${models[@]}"; do
		plain=$(awk -F'\t' -v m="$m" '$2 == m { print $3 }' "$runs" | median)
		stream=$(awk -F'\t' -v m="$m" '$2 == m { print $5 }' "$runs" | median)
		pbytes=$(awk -F'\t' -v m="$m" '$2 == m { print $4; exit }' "$runs")
		pb=$(awk -F'\t' -v m="$m" '$2 == m { print $8 }' "$runs" | median)
		ps=$(awk -F'\t' -v m="$m" '$2 == m { print $9 }' "$runs" | median)
		sb=$(awk -F'\t' -v m="$m" '$2 == m { print $10 }' "$runs" | median)
		ss=$(awk -F'\t' -v m="$m" '$2 == m { print $11 }' "$runs" | median)
		result_row "$m" "$plain" "$stream" "$(calc 'a / b' a="$stream" b="$plain")" \
			"$([ "$m" = ok+tokens-2000 ] && echo '<= 1.2' || echo '')" "$pb/$ps" "$sb/$ss"
		result_note "B4: $m: $(calc --fmt %.0f 'b / n' b="$pbytes" n="$n") answer bytes per call; streamed - plain = $(calc 's - p' s="$stream" p="$plain") µs per call."
	done
	result_note "B4: CPU columns: µs of CPU per call, backend (/proc/<pid>/schedstat, ns) / simulator (utime + stime of /proc/<pid>/stat, 10 ms ticks: ±20 µs per call at N=500)."
	result_note "B4: simulator at zero latency, --no-journal; per call = elapsed/N after 20 warm-up calls; each run: plain, then streamed, for each model; medians of $RUNS runs."
	result_note "B4: the simulator sends a stream as at most 64 content events (a real provider sends one per token, ~2000 here); ok+tokens-60 gives 62 one-word events, ok (prompt 'pN') 2 ("echo: ", "pN")."
}

#---- B5: route health during outages ----

# one timed statement: "ms dead_attempts answered" for $1 = row (row-by-row
# ai_chat over $2 calls with models $4) or batch (ai_chat_batch of $2
# prompts at concurrency 64), against the simulator at $3 (endpoints, comma
# separated); dead_attempts are the log's attempts on model $5.  $6: extra
# settings.
b5_run() {
	local kind=$1 n=$2 eps=$3 models=$4 dead=$5 extra=${6:-} output ms stmt
	if [ "$kind" = row ]; then
		stmt="SELECT count(ai_chat('p' || i, $models, on_error => 'null')) FROM generate_series(1, :n) i;"
	else
		stmt="SELECT count(response) FROM ai_chat_batch(ARRAY(SELECT 'p' || i FROM generate_series(1, :n) i), $models);"
	fi
	output=$(bpsql -v eps="$eps" -v n="$n" -v dead="$dead" <<-SQL
		SET ai_resilience.endpoints = :'eps';
		SET ai_resilience.api_key = 'sk-bench';
		SET ai_resilience.max_concurrency = 64;
		SET client_min_messages = error;
		$extra
		SELECT ai_flush_log() \g /dev/null
		TRUNCATE ai_call_log;
		\timing on
		$stmt
		\timing off
		SELECT ai_flush_log() \g /dev/null
		SELECT count(*) FROM ai_call_log WHERE model = :'dead';
	SQL
	)
	ms=$(psql_ms "$output")
	[ -n "$ms" ] || { echo "b5: run failed: $output" >&2; return 1; }
	echo "$ms $(tail -1 <<< "$output") $(head -1 <<< "$output")"
}

# the breaker's cost per call at zero latency: in one session, $2 calls of
# ai_chat on the zero-latency simulator with the breaker off, then on, $1
# times; prints "cpu_on cpu_off wall_on wall_off", the medians of the
# backend's CPU µs and of the elapsed µs per call
b5_hot() {
	local reps=$1 n=$2 cpu_file script rep side output
	cpu_file=$(mktemp /tmp/bench-cpu.XXXXXX)
	script="SET ai_resilience.endpoints = '$AI_SIM_URL/v1';
		SET ai_resilience.api_key = 'sk-bench';
		SELECT count(ai_chat('warm-up ' || i, ARRAY['ok'])) FROM generate_series(1, 200) i \\g /dev/null
		SELECT pg_backend_pid() AS bpid \\gset
		\\setenv BPID :bpid"
	for rep in $(seq 1 "$reps"); do
		for side in off on; do
			script+="
			SET ai_resilience.breaker = $side;
			\\! awk '{ printf \"$side %.3f\\n\", \$1 / 1e3 }' /proc/\$BPID/schedstat >> $cpu_file
			\\timing on
			SELECT count(ai_chat('p' || i, ARRAY['ok'])) FROM generate_series(1, $n) i;
			\\timing off
			\\! awk '{ printf \"$side %.3f\\n\", \$1 / 1e3 }' /proc/\$BPID/schedstat >> $cpu_file"
		done
	done
	output=$(bpsql <<< "$script")
	# the timed statements alternate off, on: their Time lines in order
	psql_ms "$output" | awk -v n="$n" '{ print (NR % 2 ? "off" : "on"), $1 * 1000 / n }' > "$cpu_file.wall"
	awk -v n="$n" '{ if (NR % 2) a = $2; else print $1, ($2 - a) / n }' "$cpu_file" > "$cpu_file.cpu"
	echo "$(awk '$1 == "on" { print $2 }' "$cpu_file.cpu" | median)" \
		"$(awk '$1 == "off" { print $2 }' "$cpu_file.cpu" | median)" \
		"$(awk '$1 == "on" { print $2 }' "$cpu_file.wall" | median)" \
		"$(awk '$1 == "off" { print $2 }' "$cpu_file.wall" | median)"
	rm -f "$cpu_file" "$cpu_file.cpu" "$cpu_file.wall"
}

# take model or prefix $2 down on the simulator at $1 (query string of
# /control/down), or bring everything up ($2 empty)
b5_control() {
	if [ -n "$2" ]; then
		curl -s -f -X POST "$1/control/down?$2" >/dev/null
	else
		curl -s -f -X POST "$1/control/up" >/dev/null
	fi
}

b5() {
	# B5_N row-by-row calls at B5_LATENCY ms; B5_BATCH prompts at 100 ms;
	# B5_TOTAL calls in the total outage; B5_HOT calls for the hot path
	local RUNS=${RUNS:-3} n=${B5_N:-2000} lat=${B5_LATENCY:-20} bn=${B5_BATCH:-10000}
	local tn=${B5_TOTAL:-10000} hn=${B5_HOT:-5000} hreps=${B5_HOT_REPS:-7}
	local runs=$out/b5_runs.tsv run url bat dead free out_ms out_dead hung_ms hung_dead
	local bfree bout bout_dead total_ms total_answered hot_on hot_off cpu_on cpu_off
	echo "== B5: route health, $n row-by-row calls at $lat ms, batch of $bn at 100 ms, total outage of $tn calls ($RUNS runs)"
	sim_up --latency-ms "$lat"
	url=$SIM_URL
	sim_up --latency-ms 100 --no-journal
	bat=$SIM_URL
	printf 'run\tfree_ms\tdead_ms\tdead_attempts\thung_ms\thung_attempts\tbatch_free_ms\tbatch_dead_ms\tbatch_dead_attempts\ttotal_ms\ttotal_answered\n' > "$runs"
	for run in $(seq 1 "$RUNS"); do
		# a dead model of its own per run: the breaker remembers the last one
		dead=dead-$run-$$
		read -r free _ _ < <(b5_run row "$n" "$url/v1" "ARRAY['ok']" none)
		b5_control "$url" "model=$dead"
		read -r out_ms out_dead _ < <(b5_run row "$n" "$url/v1" "ARRAY['$dead', 'ok']" "$dead")
		# the first endpoint accepts connections and never answers
		b5_control "$url" "prefix=/hung-$run&behaviour=hang"
		read -r hung_ms hung_dead _ < <(b5_run row "$n" "$url/hung-$run/v1,$url/v1" "ARRAY['ok']" ok \
			"SET ai_resilience.first_byte_timeout = '2s';")
		hung_dead=$(bpsql -c "SELECT count(*) FROM ai_call_log WHERE endpoint LIKE '%/hung-$run/v1'")
		read -r bfree _ _ < <(b5_run batch "$bn" "$bat/v1" "ARRAY['ok']" none)
		b5_control "$bat" "model=$dead"
		read -r bout bout_dead _ < <(b5_run batch "$bn" "$bat/v1" "ARRAY['$dead', 'ok']" "$dead")
		# every route dead
		b5_control "$url" "model=$dead-total"
		read -r total_ms _ total_answered < <(b5_run row "$tn" "$url/v1" "ARRAY['$dead-total']" "$dead-total")
		b5_control "$url" ""
		b5_control "$bat" ""
		printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$run" "$free" "$out_ms" "$out_dead" "$hung_ms" "$hung_dead" \
			"$bfree" "$bout" "$bout_dead" "$total_ms" "$total_answered" >> "$runs"
		printf 'run %s: row-by-row %s ms, first model dead %s ms (%s attempts on it), first endpoint hung %s ms (%s attempts on it); batch %s ms, first model dead %s ms (%s attempts on it); total outage %s ms (%s answered)\n' \
			"$run" "$free" "$out_ms" "$out_dead" "$hung_ms" "$hung_dead" "$bfree" "$bout" "$bout_dead" "$total_ms" "$total_answered"
	done
	sims_down
	read -r cpu_on cpu_off hot_on hot_off < <(b5_hot "$hreps" "$hn")
	echo "per call at zero latency: breaker on $hot_on µs ($cpu_on µs CPU), off $hot_off µs ($cpu_off µs CPU)"

	local m_free m_out m_hung m_bfree m_bout m_total
	m_free=$(col_median "$runs" 2)
	m_out=$(col_median "$runs" 3)
	m_hung=$(col_median "$runs" 5)
	m_bfree=$(col_median "$runs" 7)
	m_bout=$(col_median "$runs" 8)
	m_total=$(col_median "$runs" 10)
	result_table '%-50s | %17s | %-26s\n' '%-50s | %17s | %-26s\n' "B5 (route health)" value target
	result_row "row by row, $n calls at $lat ms, no outage, s" "$(calc 'ms / 1000' ms="$m_free")" ""
	result_row "first model dead, s" "$(calc 'ms / 1000' ms="$m_out")" "<= 1.5x: $(calc 'a / b' a="$m_out" b="$m_free")x"
	result_row "first model dead, requests to it (max of runs)" "$(cut -f4 "$runs" | tail -n +2 | sort -n | tail -1)" "<= 10"
	result_row "first endpoint hung (first_byte_timeout 2s), s" "$(calc 'ms / 1000' ms="$m_hung")" "free + first call's waits + 10 %"
	result_row "first endpoint hung, requests to it (max of runs)" "$(cut -f6 "$runs" | tail -n +2 | sort -n | tail -1)" ""
	result_row "batch, $bn prompts at 100 ms, c 64, no outage, s" "$(calc 'ms / 1000' ms="$m_bfree")" ""
	result_row "batch, first model dead, s" "$(calc 'ms / 1000' ms="$m_bout")" "<= 1.2x: $(calc 'a / b' a="$m_bout" b="$m_bfree")x"
	result_row "batch, first model dead, requests to it (max)" "$(cut -f9 "$runs" | tail -n +2 | sort -n | tail -1)" ""
	result_row "total outage, $tn calls (on_error null), s" "$(calc 'ms / 1000' ms="$m_total")" "<= 10"
	result_row "per call at zero latency, breaker on / off, µs" "$hot_on / $hot_off" ""
	result_row "breaker cost per call (elapsed), %" "$(calc --fmt %.1f '100 * (a - b) / b' a="$hot_on" b="$hot_off")" "<= 2"
	result_row "backend CPU per call, breaker on / off, µs" "$cpu_on / $cpu_off" ""
	result_row "breaker cost per call (backend CPU), %" "$(calc --fmt %.1f '100 * (a - b) / b' a="$cpu_on" b="$cpu_off")" "<= 2"
	result_note "B5: default settings except the endpoints (and first_byte_timeout 2s for the hung endpoint); medians of $RUNS runs."
	result_note "B5: the dead model answers 502 (POST /control/down of the simulator), a new one each run; the hung endpoint accepts and never answers; in the total outage the only model is dead."
	result_note "B5: requests to the dead model or hung endpoint = ai_call_log rows for it (one per attempt)."
	result_note "B5: per call at zero latency: one session, $hn calls of ai_chat('p' || i, ARRAY['ok']) on the zero-latency simulator with the breaker off, then on, $hreps times; medians; CPU from /proc/<pid>/schedstat."
}

#---- inside the cluster ----

# run the benchmarks named in the arguments; pg_virtualenv has set PG*.
# Each leaves $out/<b>.table, .notes and .stamp for results.txt.
in_cluster() {
	local b
	trap sims_down EXIT
	psql -X -q -v ON_ERROR_STOP=1 -d postgres -c 'CREATE DATABASE bench'
	bpsql -c 'CREATE EXTENSION pg_ai_resilience'
	for b in "$@"; do
		CUR=$b
		rm -f "$out/$b.table" "$out/$b.notes" "$out/$b.stamp"
		"$b"
		echo "$(date -u '+%Y-%m-%d %H:%M UTC'), commit $BENCH_COMMIT, load average after: $(cut -d' ' -f1-3 /proc/loadavg)" > "$out/$b.stamp"
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

bash test/scripts/install-deps.sh "${PACKAGES[@]}"

make -s >/dev/null
make -s -C test/gateway >/dev/null
make -s -C test/bench >/dev/null

mkdir -p "$out"

# one install-and-benchmark at a time on a machine: the extension goes into
# the one PostgreSQL library directory, and other runs would skew the timings
# (so do not wrap bench.sh in flock: it would wait for itself)
exec 9>"$LOCK"
flock -n 9 || { echo "waiting for $LOCK"; flock 9; }
make -s install >/dev/null

BENCH_COMMIT=$(git rev-parse --short HEAD)
export BENCH_COMMIT
start_sim --no-journal
pg_virtualenv -t -c '--locale=C.UTF-8' -o 'shared_preload_libraries=pg_ai_resilience' bash "$bench_dir/bench.sh" --in-cluster "${selected[@]}"

# the latest figures of every benchmark, whichever invocation ran it
{
	echo "pg_ai_resilience benchmarks, the latest run of each"
	echo "machine: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)," \
		"$(. /etc/os-release; echo "$PRETTY_NAME"), $(pg_config --version)," \
		"$(curl-config --version)"
	for b in "${BENCHMARKS[@]}"; do
		[ -s "$out/$b.table" ] || continue
		echo
		echo "${b^^}: $(cat "$out/$b.stamp" 2>/dev/null)"
		echo
		cat "$out/$b.table"
		if [ -s "$out/$b.notes" ]; then
			echo
			cat "$out/$b.notes"
		fi
	done
} > "$out/results.txt"
echo
cat "$out/results.txt"
