#!/usr/bin/env bash
# Runs the local stack behind `make run`: the metadata-server emulator, the sample BCSP and
# Envoy with bcsp-guard (top-level envoy.yaml), waits until a request goes all the way
# through, prints how to use it, and stops everything on Ctrl-C.
#
#   ENVOY=/abs/path/to/envoy scripts/run.sh
#
# Expects the binaries `make run` builds first:
#   target/release/metadata-emulator, target/release/sample-bcsp,
#   target/wasm32-wasip1/release/bcsp_guard.wasm
# READY_TIMEOUT (seconds, default 20) bounds the wait for the stack to come up.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# These match envoy.yaml; change both together.
LISTENER_PORT=10000
ADMIN_PORT=9901
BCSP_PORT=8080
METADATA_PORT=8081
BASE_PATH=/botconnector
KEY_ID=demo-genesys
KEY_HEADER=x-bcsp-key
KEY_SECRET=demo-secret-change-me

READY_TIMEOUT=${READY_TIMEOUT:-20}
RUN_DIR=.run
METADATA_BIN=target/release/metadata-emulator
BCSP_BIN=target/release/sample-bcsp
WASM=target/wasm32-wasip1/release/bcsp_guard.wasm
LISTENER="http://127.0.0.1:${LISTENER_PORT}"

die() {
    echo "run.sh: $*" >&2
    exit 1
}

# ---- preflight ------------------------------------------------------------------------

[[ -n "${ENVOY:-}" ]] || die "ENVOY is not set; run 'make run', or ENVOY=/abs/path/to/envoy $0"
[[ -x "$ENVOY" ]] || die "ENVOY=$ENVOY is not an executable file (try 'make envoy')"
command -v curl >/dev/null || die "curl is needed to check that the stack is up"
[[ "$READY_TIMEOUT" =~ ^[0-9]+$ ]] || die "READY_TIMEOUT must be a number of seconds"
for f in "$METADATA_BIN" "$BCSP_BIN" "$WASM" envoy.yaml; do
    [[ -e "$f" ]] || die "$f is missing; 'make run' builds it (or see the Makefile's run target)"
done

# True when something listens on 127.0.0.1:$1 (or on every address, which includes it).
port_in_use() {
    local port=$1
    if command -v ss >/dev/null 2>&1; then
        [[ -n "$(ss -Hltn "sport = :${port}" 2>/dev/null)" ]] && return 0
    fi
    # Fallback, and catches what ss cannot see from a container: try to connect.
    if command -v timeout >/dev/null 2>&1; then
        timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/${port}" 2>/dev/null
    else
        (exec 3<>"/dev/tcp/127.0.0.1/${port}") 2>/dev/null
    fi
}

busy=0
for entry in "${LISTENER_PORT}:Envoy listener" "${ADMIN_PORT}:Envoy admin" \
    "${BCSP_PORT}:sample BCSP" "${METADATA_PORT}:metadata emulator"; do
    port=${entry%%:*}
    what=${entry#*:}
    if port_in_use "$port"; then
        echo "run.sh: port ${port} (${what}) is already in use on 127.0.0.1." >&2
        echo "        Find the process with:  ss -ltnp 'sport = :${port}'   or   lsof -nP -iTCP:${port} -sTCP:LISTEN" >&2
        busy=1
    fi
done
if ((busy)); then
    echo "run.sh: stop what holds the port(s) above (another 'make run'?) and try again." >&2
    exit 1
fi

# ---- start and stop -------------------------------------------------------------------

mkdir -p "$RUN_DIR"
PIDS=()
NAMES=()
LOGS=()
STOPPED=0

# Starts "$@" in its own session (so its whole process group can be signalled) with
# stdout and stderr in $2's log. Usage: start NAME LOG CMD...
start() {
    local name=$1 log=$2
    shift 2
    : >"$log"
    setsid "$@" >>"$log" 2>&1 </dev/null &
    PIDS+=("$!")
    NAMES+=("$name")
    LOGS+=("$log")
}

alive() {
    kill -0 "$1" 2>/dev/null
}

stop_all() {
    ((STOPPED)) && return 0
    STOPPED=1
    local i pid deadline
    for pid in "${PIDS[@]}"; do
        # setsid made each child a process-group leader: signal the group.
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    done
    deadline=$((SECONDS + 5))
    for i in "${!PIDS[@]}"; do
        pid=${PIDS[$i]}
        while alive "$pid" && ((SECONDS < deadline)); do
            sleep 0.1
        done
        if alive "$pid"; then
            echo "run.sh: ${NAMES[$i]} (pid $pid) ignored SIGTERM; killing it" >&2
            kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
}

on_signal() {
    trap - INT TERM HUP
    echo
    echo "run.sh: stopping ${NAMES[*]:-nothing} ..."
    stop_all
    echo "run.sh: stopped."
    exit 0
}

on_exit() {
    local rc=$?
    stop_all
    exit "$rc"
}

trap on_signal INT TERM HUP
trap on_exit EXIT

# Prints the tail of child $1's log(s).
show_log() {
    local i=$1 log
    for log in "${LOGS[$i]}" ${2:-}; do
        [[ -s "$log" ]] || continue
        echo "---- last lines of $log ----" >&2
        tail -n 25 "$log" >&2
    done
}

# Exits 1 if any child has died, showing its log.
check_children() {
    local i
    for i in "${!PIDS[@]}"; do
        if ! alive "${PIDS[$i]}"; then
            local rc=0
            wait "${PIDS[$i]}" 2>/dev/null || rc=$?
            echo "run.sh: ${NAMES[$i]} exited (status $rc)." >&2
            if [[ ${NAMES[$i]} == envoy ]]; then
                show_log "$i" "$RUN_DIR/envoy.log"
            else
                show_log "$i"
            fi
            exit 1
        fi
    done
}

# HTTP status of a GET (000 when nothing answers). Usage: status URL [CURL ARGS...]
status_of() {
    local url=$1
    shift
    curl -s -o /dev/null -w '%{http_code}' --connect-timeout 1 --max-time 2 "$@" "$url" || true
}

DEADLINE=$((SECONDS + READY_TIMEOUT))

# Waits until `status_of URL ARGS...` is 200. Usage: wait_for WHAT URL [CURL ARGS...]
wait_for() {
    local what=$1 url=$2 code=000
    shift 2
    while :; do
        check_children
        code=$(status_of "$url" "$@")
        [[ $code == 200 ]] && return 0
        if ((SECONDS >= DEADLINE)); then
            echo "run.sh: ${what} not ready after ${READY_TIMEOUT}s (last status ${code} from ${url})." >&2
            echo "        Logs: $RUN_DIR/metadata-emulator.log $RUN_DIR/sample-bcsp.log $RUN_DIR/envoy.log $RUN_DIR/access.log" >&2
            if [[ $code != 000 ]]; then
                echo "---- last answer from ${url} ----" >&2
                curl -s -i --connect-timeout 1 --max-time 2 "$@" "$url" 2>&1 | head -c 2000 >&2 || true
                echo >&2
            fi
            [[ -s "$RUN_DIR/envoy.log" ]] && {
                echo "---- last lines of $RUN_DIR/envoy.log ----" >&2
                tail -n 25 "$RUN_DIR/envoy.log" >&2
            }
            exit 1
        fi
        sleep 0.2
    done
}

echo "run.sh: starting the metadata emulator, the sample BCSP and Envoy (logs in $RUN_DIR/)"
start metadata-emulator "$RUN_DIR/metadata-emulator.log" \
    "$METADATA_BIN" --listen "127.0.0.1:${METADATA_PORT}" --lifetime 3600
start sample-bcsp "$RUN_DIR/sample-bcsp.log" \
    "$BCSP_BIN" --listen "127.0.0.1:${BCSP_PORT}" --base-path "$BASE_PATH"
: >"$RUN_DIR/envoy.log"
# --disable-hot-restart: no shared-memory base id, so this Envoy never clashes with another
# one on the machine (e.g. the test suite's). Envoy's stdout is its JSON access log (envoy.yaml);
# written out every 500 ms, not every 10 s (Envoy's default), so `tail -f` follows the requests.
start envoy "$RUN_DIR/access.log" \
    "$ENVOY" -c envoy.yaml --concurrency 2 --disable-hot-restart --log-path "$RUN_DIR/envoy.log" \
    --file-flush-interval-msec 500

wait_for "the metadata emulator" "http://127.0.0.1:${METADATA_PORT}/healthz"
wait_for "the sample BCSP" "http://127.0.0.1:${BCSP_PORT}/healthz"
wait_for "Envoy" "http://127.0.0.1:${ADMIN_PORT}/ready"
# Admitted once the filter holds its first identity token (503 until then).
wait_for "a request through Envoy and bcsp-guard" "${LISTENER}${BASE_PATH}/bots" \
    -H "${KEY_HEADER}: ${KEY_SECRET}"

MESSAGE='{"botId":"demo-bot","botVersion":"1","botSessionId":"session-1","messageId":"m-1","inputMessage":{"type":"Text","text":"hello"},"languageCode":"en-us"}'

cat <<EOF

bcsp-guard is running in Envoy in front of the sample BCSP.

  Listener (point Genesys here)  ${LISTENER}${BASE_PATH}
  Demo key                       id ${KEY_ID}, header ${KEY_HEADER}: ${KEY_SECRET}
  Behind it                      sample BCSP 127.0.0.1:${BCSP_PORT}, metadata emulator 127.0.0.1:${METADATA_PORT}
  Envoy admin (loopback only)    http://127.0.0.1:${ADMIN_PORT}/stats?filter=bcsp_guard
  Access log (JSON, one line per request, with bcsp-guard's decision)
                                 $RUN_DIR/access.log   (tail -f $RUN_DIR/access.log)

List the bots (admitted, 200):
  curl -s -H '${KEY_HEADER}: ${KEY_SECRET}' ${LISTENER}${BASE_PATH}/bots

Send a message (admitted, 200; the reply's "caller" shows what the BCSP received):
  curl -s -H '${KEY_HEADER}: ${KEY_SECRET}' -H 'content-type: application/json' \\
    -d '${MESSAGE}' \\
    ${LISTENER}${BASE_PATH}/messages

Without the key (refused, 401):
  curl -si ${LISTENER}${BASE_PATH}/bots

A scripted conversation: make demo (in another terminal)
Logs: $RUN_DIR/envoy.log  $RUN_DIR/access.log  $RUN_DIR/sample-bcsp.log  $RUN_DIR/metadata-emulator.log
Ctrl-C stops everything.
EOF

# Run until Ctrl-C; a child dying on its own ends the stack with its log.
while :; do
    check_children
    sleep 1
done
