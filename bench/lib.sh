# lib.sh -- what the gateway benchmarks (audit.sh, policy.sh) share: wrk, a temporary
# folder cleaned up on exit, the mock provider, a free port, a gateway started from a
# config and waited for. Sourced, not run; expects BUILD and sets TMP, MOCK_PORT,
# GW_PID. Functions that cannot do their part print why and return non-zero: the
# caller skips the gateway part of its benchmark.

# bench_need_wrk -- wrk on PATH, installed from Debian's packages when it is not
bench_need_wrk() {
    if ! command -v wrk >/dev/null 2>&1; then
        (apt-get install -y wrk >/dev/null 2>&1 || sudo -n apt-get install -y wrk >/dev/null 2>&1) || true
    fi
    command -v wrk >/dev/null 2>&1 && return 0
    echo "skipped: wrk is not installed and could not be installed (apt-get install wrk)"
    return 1
}

# bench_start_mock -- TMP (removed on exit, with the mock and any gateway still up) and
# the mock provider on a free port (MOCK_PORT)
bench_start_mock() {
    TMP=$(mktemp -d)
    MOCK_PID=""; GW_PID=""
    trap bench_cleanup EXIT INT TERM
    "$BUILD/mock_provider" --port 0 >"$TMP/mock.out" 2>&1 &
    MOCK_PID=$!
    i=0
    while ! grep -q 'listening on' "$TMP/mock.out" 2>/dev/null; do
        i=$((i + 1)); [ $i -gt 50 ] && { echo "skipped: mock_provider did not start"; return 1; }
        sleep 0.1
    done
    MOCK_PORT=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$TMP/mock.out" | head -1)
}

bench_cleanup() {
    [ -n "$GW_PID" ] && kill "$GW_PID" 2>/dev/null && wait "$GW_PID" 2>/dev/null
    [ -n "$MOCK_PID" ] && kill "$MOCK_PID" 2>/dev/null && wait "$MOCK_PID" 2>/dev/null
    rm -rf "$TMP"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# bench_mock_config FILE GW_PORT EXTRA -- a gateway config: listen on GW_PORT, the mock
# as provider "mock" with model gpt-4o (priced), then EXTRA (rules, audit) verbatim
bench_mock_config() {
    cat >"$1" <<EOC
listen:
  - address: 127.0.0.1:$2
providers:
  mock:
    type: openai-compatible
    zone: external
    base_url: http://127.0.0.1:$MOCK_PORT/v1
    api_key: bench-not-a-key
models:
  - name: gpt-4o
    provider: mock
    price: {input_per_mtok: 2.5, output_per_mtok: 10}
$3
EOC
}

# bench_start_gateway NAME PORT -- serve $TMP/NAME.yaml (log in $TMP/NAME.log) and wait
# until /healthz answers on PORT; GW_PID is its pid
bench_start_gateway() {
    "$BUILD/airlock" serve -c "$TMP/$1.yaml" >"$TMP/$1.log" 2>&1 &
    GW_PID=$!
    i=0
    until curl -fs "http://127.0.0.1:$2/healthz" >/dev/null 2>&1; do
        i=$((i + 1))
        if [ $i -gt 100 ] || ! kill -0 "$GW_PID" 2>/dev/null; then
            echo "gateway did not start ($1):" >&2; tail -5 "$TMP/$1.log" >&2; GW_PID=""; return 1
        fi
        sleep 0.1
    done
}

bench_stop_gateway() {
    kill "$GW_PID"; wait "$GW_PID" 2>/dev/null; GW_PID=""
}

# bench_wrk_body JSON -- $TMP/body.json holds JSON, and $TMP/post.lua makes wrk POST it
bench_wrk_body() {
    printf '%s' "$1" >"$TMP/body.json"
    cat >"$TMP/post.lua" <<EOL
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("$TMP/body.json", "rb"); wrk.body = f:read("*a"); f:close()
EOL
}
