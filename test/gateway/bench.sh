#!/usr/bin/env bash
#
# bench.sh
#	  Throughput of ai-gateway-sim for small "ok" chat completions over
#	  keep-alive: starts the simulator on an ephemeral port, runs wrk three
#	  times, prints the median requests/s, stops the simulator.
#
#	  usage: bench.sh [on|off|both]      journal on, off, or both (default)
#	  env:   DURATION (10s) THREADS (2) CONNS (16) SIM (path to the binary)
#
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
SIM=${SIM:-$HERE/ai-gateway-sim}
DURATION=${DURATION:-10s}
THREADS=${THREADS:-2}
CONNS=${CONNS:-16}
MODE=${1:-both}
TMP=$(mktemp -d)
SIM_PID=

cleanup() {
	if [ -n "$SIM_PID" ]; then
		kill -TERM "$SIM_PID" 2>/dev/null || true
		wait "$SIM_PID" 2>/dev/null || true
	fi
	rm -rf "$TMP"
}
trap cleanup EXIT

command -v wrk >/dev/null || { echo "bench.sh: wrk not found" >&2; exit 2; }
[ -x "$SIM" ] || make -s -C "$HERE"

# run_mode LABEL [SIM ARGS...]: three wrk runs against a fresh simulator
run_mode() {
	local label=$1
	shift
	rm -f "$TMP/port"
	"$SIM" --port 0 --port-file "$TMP/port" --quiet "$@" &
	SIM_PID=$!
	for _ in $(seq 100); do
		[ -s "$TMP/port" ] && break
		sleep 0.05
	done
	local url="http://127.0.0.1:$(cat "$TMP/port")/v1/chat/completions"
	local rates=()
	for run in 1 2 3; do
		local r
		r=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" -s "$HERE/bench_post.lua" "$url" |
			awk '/^Requests\/sec:/ {print $2}')
		echo "journal $label run $run: $r requests/s"
		rates+=("$r")
	done
	kill -TERM "$SIM_PID"
	wait "$SIM_PID" || true
	SIM_PID=
	echo "journal $label median: $(printf '%s\n' "${rates[@]}" | sort -g | sed -n 2p) requests/s" \
		"(wrk -t$THREADS -c$CONNS -d$DURATION, $(nproc) cores)"
}

case "$MODE" in
	on) run_mode on ;;
	off) run_mode off --no-journal ;;
	both) run_mode on; run_mode off --no-journal ;;
	*) echo "usage: bench.sh [on|off|both]" >&2; exit 2 ;;
esac
