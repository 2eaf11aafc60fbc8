# Source this file to start gateway simulators.  Extra arguments go to the
# simulator (load-mode options).
#   launch_sim: start one on a free port; sets SIM_PID and SIM_URL.
#   start_sim:  the simulator of a test run: exports AI_SIM_URL and
#               AI_SIM_PID, and stops it when the calling shell exits.

launch_sim() {
    local dir port_file
    dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/../gateway" && pwd)
    port_file=$(mktemp -u /tmp/ai-sim-port.XXXXXX)
    # 9>&-: not the install lock's descriptor (test.sh and bench.sh hold it
    # on fd 9), or a simulator left behind by a killed run holds the lock
    "$dir/ai-gateway-sim" --port 0 --port-file "$port_file" --quiet "$@" 9>&- &
    SIM_PID=$!
    for _ in $(seq 1 100); do
        [ -s "$port_file" ] && break
        sleep 0.05
    done
    [ -s "$port_file" ] || { echo "the simulator ($*) did not start" >&2; return 1; }
    SIM_URL="http://127.0.0.1:$(cat "$port_file")"
    rm -f "$port_file"
}

start_sim() {
    launch_sim "$@" || return 1
    AI_SIM_PID=$SIM_PID
    AI_SIM_URL=$SIM_URL
    trap 'kill $AI_SIM_PID 2>/dev/null; wait $AI_SIM_PID 2>/dev/null' EXIT
    export AI_SIM_URL AI_SIM_PID
}
