#!/usr/bin/env bash
# Benchmark of the call log (by hand, not in CI), as root:
#   1. per-call time of ai_chat with ai_resilience.log_attempts on vs off,
#      against the simulator at zero latency (target: at most 5 % extra),
#      and on with the writer held back by a lock (the backend's own cost);
#   2. the log writer's sustained rows/s (target: at least 20,000): records
#      are queued while a session holds a lock on ai_call_log, then the lock
#      goes and the time until every record is written is measured.
# Prints each run and the medians.  Usage: test/bench/log_bench.sh [runs]
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ "${1:-}" = "--inside" ]; then
    runs=$2
    calls=${CALLS:-5000}
    # a database holds at most a quarter of the queue (65536 below), and
    # the records of the run before may still be queued
    records=${RECORDS:-10000}
    psql_() { psql -XAtq -v ON_ERROR_STOP=1 "$@"; }
    psql_ -c "CREATE EXTENSION pg_ai_resilience"
    psql_ -c "ALTER SYSTEM SET ai_resilience.endpoints = '$AI_SIM_URL/v1'" -c "SELECT pg_reload_conf()" >/dev/null
    median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

    # per-call microseconds of a run of $calls successful calls with
    # ai_resilience.log_attempts = $1
    timed_calls() {
        psql_ -c "SET ai_resilience.log_attempts = $1" -c "
            DO \$\$
            DECLARE t0 timestamptz := clock_timestamp();
            BEGIN
                PERFORM count(ai_chat('bench ' || i, ARRAY['ok'])) FROM generate_series(1, $calls) i;
                RAISE NOTICE '%', round(extract(epoch FROM clock_timestamp() - t0) * 1e6 / $calls, 1);
            END \$\$" 2>&1 >/dev/null | sed 's/.*NOTICE: *//'
    }
    # the same, then wait until the log writer has written it all
    per_call() {
        timed_calls "$1"
        psql_ -c "SELECT ai_flush_log('60s')" >/dev/null
    }
    # the same with the log on while a lock holds the writer back: what the
    # queue costs a backend, without the writer's CPU competing with it
    per_call_writer_paused() {
        psql_ -c "BEGIN" -c "LOCK TABLE ai_call_log IN ACCESS EXCLUSIVE MODE" \
              -c "SELECT pg_sleep(600)" >/dev/null 2>&1 &
        sleep 0.3
        timed_calls on
        psql_ -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                  WHERE query LIKE 'SELECT pg_sleep(600)%'" >/dev/null
        wait || true
        psql_ -c "SELECT ai_flush_log('60s')" >/dev/null
    }
    per_call on >/dev/null    # warm up: connections, the writer
    : > /tmp/log_bench_on; : > /tmp/log_bench_off; : > /tmp/log_bench_paused
    for r in $(seq 1 "$runs"); do
        off=$(per_call off); on=$(per_call on); paused=$(per_call_writer_paused)
        echo "run $r: per call ${off} us with the log off, ${on} us with it on, ${paused} us on with the writer paused"
        echo "$off" >> /tmp/log_bench_off; echo "$on" >> /tmp/log_bench_on; echo "$paused" >> /tmp/log_bench_paused
    done
    moff=$(median < /tmp/log_bench_off); mon=$(median < /tmp/log_bench_on); mpaused=$(median < /tmp/log_bench_paused)
    extra() { awk "BEGIN {printf \"%.1f\", ($1 - $moff) * 100 / $moff}"; }
    echo "median per call: off ${moff} us, on ${mon} us (extra $(extra "$mon") %), on with the writer paused ${mpaused} us (extra $(extra "$mpaused") %)"

    : > /tmp/log_bench_rate
    for r in $(seq 1 "$runs"); do
        psql_ -c "TRUNCATE ai_call_log" -c "VACUUM ai_call_log"
        psql_ -c "BEGIN" -c "LOCK TABLE ai_call_log IN ACCESS EXCLUSIVE MODE" \
              -c "SELECT pg_sleep(600)" >/dev/null 2>&1 &
        sleep 0.5
        # breaker off: an open route would make no attempt, and log nothing
        psql_ -c "SET client_min_messages = error" -c "SET ai_resilience.max_retries = 0" \
              -c "SET ai_resilience.breaker = off" \
              -c "SELECT count(ai_chat('r' || i, ARRAY['status-500'], on_error => 'null'))
                  FROM generate_series(1, $records) i" >/dev/null
        rate=$(psql_ -c "
            DO \$\$
            DECLARE
                -- every record queued so far; in_queue would miss the
                -- batch a writer holds while it waits for the lock
                target bigint := (SELECT queued - lost FROM ai_log_stats());
                t0 timestamptz;
            BEGIN
                PERFORM pg_terminate_backend(pid) FROM pg_stat_activity
                WHERE query LIKE 'SELECT pg_sleep(600)%';
                t0 := clock_timestamp();
                WHILE (SELECT written FROM ai_log_stats()) < target LOOP
                    PERFORM pg_sleep(0.002);
                END LOOP;
                RAISE NOTICE '%', round($records / extract(epoch FROM clock_timestamp() - t0));
            END \$\$" 2>&1 | sed 's/.*NOTICE: *//')
        wait || true
        echo "run $r: writer wrote $records rows at $rate rows/s"
        echo "$rate" >> /tmp/log_bench_rate
    done
    echo "median writer rate: $(median < /tmp/log_bench_rate) rows/s"
    psql_ -c "SELECT * FROM ai_log_stats()"
    exit 0
fi

runs=${1:-5}
exec 9>/tmp/pg_ai_resilience.lock
flock 9
make -s >/dev/null && make -s install >/dev/null
make -s -C test/gateway >/dev/null
source test/scripts/sim.sh
start_sim --latency-ms 0 --no-journal || exit 1
pg_virtualenv -t -c '--locale=C.UTF-8' -o 'shared_preload_libraries=pg_ai_resilience' \
    -o 'ai_resilience.log_queue_size=65536' \
    bash "$0" --inside "$runs"
