# Source this file: start_sim starts the gateway simulator on a free port
# and exports AI_SIM_URL; it is stopped when the calling shell exits.
# Extra arguments go to the simulator (load-mode options).

start_sim() {
    local dir port_file
    dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/../gateway" && pwd)
    port_file=$(mktemp -u /tmp/ai-sim-port.XXXXXX)
    "$dir/ai-gateway-sim" --port 0 --port-file "$port_file" --quiet "$@" &
    AI_SIM_PID=$!
    trap 'kill $AI_SIM_PID 2>/dev/null; wait $AI_SIM_PID 2>/dev/null' EXIT
    for _ in $(seq 1 100); do
        [ -s "$port_file" ] && break
        sleep 0.05
    done
    [ -s "$port_file" ] || { echo "the simulator did not start" >&2; return 1; }
    AI_SIM_URL="http://127.0.0.1:$(cat "$port_file")"
    rm -f "$port_file"
    export AI_SIM_URL AI_SIM_PID
}
