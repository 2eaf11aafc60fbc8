#!/usr/bin/env bash
# The demo, from a fresh Debian 12 machine, as root: installs packages,
# builds and installs the extension and the gateway simulator, starts a
# throwaway cluster (pg_virtualenv) and a simulator that injects a seeded
# mix of failures (25 % HTTP 500, 5 % HTTP 429 with Retry-After), enriches a
# sample table with ai_chat, and shows what ai_call_log recorded.
set -euo pipefail
cd "$(dirname "$0")/../.."

bash test/scripts/install-deps.sh
exec 9>/tmp/pg_ai_resilience.lock
flock 9
make -s >/dev/null
make -s install >/dev/null
make -s -C test/gateway >/dev/null

source test/scripts/sim.sh
start_sim --fault-5xx 0.25 --fault-429 0.05 --fault-retry-after 1 --seed 7 --latency-ms 20
echo "gateway simulator at $AI_SIM_URL (25 % 500, 5 % 429 with Retry-After: 1, 20 ms latency)"

pg_virtualenv -t -c '--locale=C.UTF-8' -o 'shared_preload_libraries=pg_ai_resilience' psql -X -q -v ON_ERROR_STOP=1 -f test/scripts/demo.sql
