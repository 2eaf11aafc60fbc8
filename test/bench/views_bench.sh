#!/usr/bin/env bash
# Benchmark of the analyst views (README "Analysing the log"), by hand, not
# in CI, as root.  Builds and installs the extension, starts a scratch
# cluster of its own (the machine's lock is held only for the install, the
# server's start and CREATE EXTENSION), fills ai_call_log with ROWS
# synthetic attempts over 30 days (generate_series: about 1.2 attempts per
# call, retries and fallbacks, 3 % of calls failing, four models, three
# endpoints, five tags), then runs each question of the README with
# EXPLAIN (ANALYZE, BUFFERS): one untimed run, then RUNS timed ones.
# Prints per question the median execution time, the indexes its plan
# uses and the buffers of its last run.
#   test/bench/views_bench.sh                # 10,000,000 rows, 3 runs
#   ROWS=1000000 RUNS=5 test/bench/views_bench.sh
# Filling 10 million rows takes about 7 minutes on 2 cores, the questions
# seconds.  KEEP=1 leaves the cluster running (its directory is printed).
set -euo pipefail
cd "$(dirname "$0")/../.."
rows=${ROWS:-10000000}
runs=${RUNS:-3}
dir=$(mktemp -d /tmp/views_bench.XXXXXX)
port=$((20000 + RANDOM % 20000))
bin=$(pg_config --bindir)
chown postgres: "$dir"
as_pg() { runuser -u postgres -- "$@"; }
psql_() { as_pg psql -XAtq -v ON_ERROR_STOP=1 -h "$dir" -p "$port" -d postgres "$@"; }
stop() { as_pg "$bin/pg_ctl" -D "$dir/data" -m fast stop >/dev/null 2>&1 || true; rm -rf "$dir"; }
[ "${KEEP:-0}" = 1 ] || trap stop EXIT

as_pg "$bin/initdb" -D "$dir/data" --locale=C.UTF-8 >/dev/null 2>&1
(
    flock 9
    make -s >/dev/null && make -s install >/dev/null
    as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
        -o "-p $port -k $dir -c listen_addresses='' -c shared_preload_libraries=pg_ai_resilience -c shared_buffers=1GB -c max_wal_size=8GB -c synchronous_commit=off" \
        start >/dev/null
    psql_ -c "CREATE EXTENSION pg_ai_resilience"
) 9>/tmp/pg_ai_resilience.lock

echo "filling ai_call_log with $rows attempts"
t0=$(date +%s)
psql_ -v rows="$rows" <<'SQL'
-- calls evenly over the 30 days before now, in time order as the writer
-- appends them; per call 1 to 4 attempts (85 %, 10 %, 4 %, 1 %): up to
-- three on the first route, the fourth a fallback to the next model
-- and endpoint; 3 % of calls fail; tokens on answers
WITH params AS (
    SELECT (:rows / 1.21)::bigint AS ncalls, now() - interval '30 days' AS t0
), calls AS (
    SELECT c, p.t0 + interval '30 days' * (c::float8 / p.ncalls) AS start,
           CASE WHEN abs(hashint8(c)) % 1000 < 850 THEN 1 WHEN abs(hashint8(c)) % 1000 < 950 THEN 2
                WHEN abs(hashint8(c)) % 1000 < 990 THEN 3 ELSE 4 END AS n,
           abs(hashint8(-c)) % 1000 < 30 AS fails
    FROM params p, generate_series(1, (SELECT ncalls FROM params)) c
)
INSERT INTO ai_call_log (call_id, attempt, route_index, route_attempt, started_at, latency_ms, model, endpoint,
                         code, error_class, error, streaming, backoff_ms, outcome, request_id, provider_request_id,
                         model_returned, finish_reason, prompt_tokens, completion_tokens, new_connection,
                         role_name, session_role, backend_pid, tag, application_name)
SELECT md5(s.c::text)::uuid, x.a, x.route, CASE WHEN x.route = 0 THEN x.a ELSE x.a - 3 END,
       s.start + (x.a - 1) * interval '800 ms',
       CASE WHEN x.ok THEN 150 + (s.c * 37) % 4000 WHEN x.ek = 2 THEN 30000 ELSE 20 + s.c % 80 END,
       (ARRAY['gpt-4o', 'gpt-4o-mini', 'claude-sonnet', 'llama-70b'])[1 + (s.c + x.route) % 4],
       (ARRAY['https://gw-a.example.com/v1', 'https://gw-b.example.com/v1', 'http://10.0.0.7:4000/v1'])[1 + (s.c / 4 + x.route) % 3],
       CASE WHEN x.ok THEN 200 ELSE (ARRAY[502, 429, NULL, 500])[1 + x.ek] END,
       CASE WHEN NOT x.ok THEN (ARRAY['http_5xx', 'rate_limited', 'timeout', 'http_5xx'])[1 + x.ek] END,
       CASE WHEN NOT x.ok THEN (ARRAY['Bad Gateway', 'Rate limit reached', 'no answer within request_timeout',
                                      'The server had an error'])[1 + x.ek] END,
       s.c % 5 = 0,
       CASE WHEN NOT x.last AND x.a < 3 THEN 500 * 2 ^ (x.a - 1) END,
       CASE WHEN x.ok THEN 'success' WHEN x.last THEN 'failed' WHEN x.a = 3 THEN 'fallback' ELSE 'retry' END,
       'req-' || s.c || '-' || x.a, CASE WHEN s.c % 3 = 0 THEN 'prov-' || s.c || '-' || x.a END,
       CASE WHEN x.ok THEN 'returned' END, CASE WHEN x.ok THEN 'stop' END,
       CASE WHEN x.ok THEN 50 + s.c % 950 END, CASE WHEN x.ok THEN 10 + s.c % 490 END,
       x.a = 1 AND s.c % 20 = 0, 'app', 'app', 1000 + s.c % 50,
       (ARRAY[NULL, 'nightly-summaries', 'chatbot', 'classify', 'reports'])[1 + s.c % 5],
       (ARRAY['pg_cron', 'psql', 'app-server'])[1 + s.c % 3]
FROM calls s,
     LATERAL (SELECT a, a = s.n AS last, a = s.n AND NOT s.fails AS ok,
                     CASE WHEN a <= 3 THEN 0 ELSE 1 END AS route, (s.c + a) % 4 AS ek
              FROM generate_series(1, s.n) a) x
ORDER BY s.start, x.a;
INSERT INTO ai_model_prices VALUES ('gpt-4o', 2.50, 10.00, 'USD'), ('gpt-4o-mini', 0.15, 0.60, 'USD'),
                                   ('claude-sonnet', 3.00, 15.00, 'USD');
VACUUM ANALYZE ai_call_log;
SQL
echo "filled in $(( $(date +%s) - t0 )) s: $(psql_ -c "SELECT pg_size_pretty(pg_total_relation_size('ai_call_log'))") with indexes"
call=$(psql_ -c "SELECT call_id FROM ai_call_log WHERE attempt = 4 ORDER BY id DESC LIMIT 1")

# The README's questions, as there.
questions=(
"failure rate by tag|SELECT tag, count(*) AS calls,
       count(*) FILTER (WHERE outcome <> 'success') AS failed,
       round(100.0 * count(*) FILTER (WHERE outcome <> 'success') / count(*), 1) AS failed_pct
FROM ai_calls
WHERE started_at > now() - interval '1 day'
GROUP BY tag ORDER BY failed_pct DESC"
"end-to-end p50/p95|SELECT count(*) AS answered,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) AS p50_ms,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) AS p95_ms
FROM ai_calls
WHERE started_at > now() - interval '1 day' AND outcome = 'success'"
"worst routes by hour|SELECT hour, endpoint, model, attempts, failure_rate, p95_ms
FROM ai_route_hourly
WHERE hour > now() - interval '24 hours'
ORDER BY failure_rate DESC, attempts DESC, model LIMIT 10"
"tokens and cost per day|SELECT day, model, calls, prompt_tokens, completion_tokens, cost, currency
FROM ai_token_usage
WHERE day > current_date - 7
ORDER BY day, model"
"one call|SELECT * FROM ai_calls WHERE call_id = '$call'"
"support bundle (its plans are inside the function)|SELECT ai_support_bundle('$call')"
)
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
printf '%-30s %10s  %-52s %s\n' question "median ms" "indexes used" "buffers (last run)"
for q in "${questions[@]}"; do
    name=${q%%|*}; sql=${q#*|}
    psql_ -c "$sql" >/dev/null    # untimed
    : > "$dir/times"
    for r in $(seq 1 "$runs"); do
        psql_ -c "EXPLAIN (ANALYZE, BUFFERS) $sql" > "$dir/plan"
        sed -n 's/^Execution Time: \([0-9.]*\) ms$/\1/p' "$dir/plan" >> "$dir/times"
    done
    indexes=$(grep -o 'Index Scan using [a-z_]*' "$dir/plan" | sed 's/Index Scan using //' | sort -u | paste -sd, -) || true
    buffers=$(grep -m1 -o 'Buffers: .*' "$dir/plan" | sed 's/Buffers: //') || true
    printf '%-30s %10s  %-52s %s\n' "$name" "$(median < "$dir/times")" "${indexes:-none}" "$buffers"
done
[ "${KEEP:-0}" = 1 ] && echo "cluster left running: psql -h $dir -p $port -U postgres"
exit 0
