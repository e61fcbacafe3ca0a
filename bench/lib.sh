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

# bench_need_nginx -- nginx on PATH (or /usr/sbin), installed from Debian's packages
# (nginx-light, else nginx) when it is not; NGINX is its path. Only the binary is used:
# the benchmarks run their own instance from a config in a temporary folder, never the
# system service.
bench_need_nginx() {
    NGINX=$(command -v nginx 2>/dev/null || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; })
    if [ -z "$NGINX" ]; then
        for sudo in "" "sudo -n"; do
            DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y nginx-light >/dev/null 2>&1 ||
                DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y nginx >/dev/null 2>&1 || {
                $sudo apt-get update >/dev/null 2>&1 &&
                    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y nginx-light >/dev/null 2>&1; } &&
                break
        done
        NGINX=$(command -v nginx 2>/dev/null || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; })
    fi
    [ -n "$NGINX" ] && return 0
    echo "skipped: nginx is not installed and could not be installed (apt-get install nginx-light)"
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
    [ -n "${BENCH_ALSO_REMOVE:-}" ] && rm -rf "$BENCH_ALSO_REMOVE"
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

# bench_allow_config NAME AUDIT -- $TMP/NAME.yaml: the mock config with one rule that
# allows everything, then AUDIT (an audit block, or empty for none); GW_PORT is its port
bench_allow_config() {
    GW_PORT=$(free_port)
    bench_mock_config "$TMP/$1.yaml" "$GW_PORT" "rules:
  - name: default
    then: {action: allow}
$2"
}

# The chat request the audit benchmarks send: one user message, 0.4 KB of JSON
BENCH_CHAT_BODY='{"model":"gpt-4o","messages":[{"role":"user","content":"Summarise the incident: the worker pool stalled at 09:21 after the deploy; the retry loop backed off correctly but the queue depth grew to 4096 and latency p99 reached 880 ms for about twelve minutes before the rollback."}]}'

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

# The gateway's CPU, the machine's CPU and the audit's fdatasyncs around one wrk run.
# Expect TMP, GW_PORT, SECS, CONNS and $TMP/post.lua (bench_wrk_body).
bench_cpu_ticks() { # utime + stime of a process, in clock ticks
    awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0
}

bench_machine_busy() { # busy clock ticks of the whole machine (all but idle and iowait)
    awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9; exit}' /proc/stat
}

bench_measure() { # $1 config name -> "req/s gateway-CPU-us/request machine-CPU-us/request requests/fsync"
    bench_start_gateway "$1" "$GW_PORT" || return 1
    f0=$(bench_fsyncs)
    t0=$(bench_cpu_ticks "$GW_PID"); m0=$(bench_machine_busy)
    wrk -t2 -c"$CONNS" -d"${SECS}s" -s "$TMP/post.lua" "http://127.0.0.1:$GW_PORT/v1/chat/completions" >"$TMP/$1.wrk" 2>&1
    t1=$(bench_cpu_ticks "$GW_PID"); m1=$(bench_machine_busy)
    f1=$(bench_fsyncs)
    bench_stop_gateway
    non2xx=$(sed -n 's/.*Non-2xx or 3xx responses: *\([0-9]*\).*/\1/p' "$TMP/$1.wrk")
    [ -n "$non2xx" ] && echo "warning ($1): $non2xx non-2xx responses" >&2
    rps=$(sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p' "$TMP/$1.wrk")
    # the gateway's CPU time (all its threads) per request: steadier than req/s on a
    # shared machine, and it shows what the audit costs in work rather than in waiting
    # and the whole machine's busy CPU per request (wrk, the mock and the kernel too: on a
    # machine whose cores are all busy, that is what sets the ratio), and requests per
    # fdatasync (the group-commit factor; 0 when the audit is off or sync is none)
    echo "$rps $(awk -v t="$((t1 - t0))" -v m="$((m1 - m0))" -v f="$((f1 - f0))" -v r="$rps" \
        -v s="$SECS" -v hz="$(getconf CLK_TCK)" \
        'BEGIN { n = r * s; if (n <= 0) n = 1;
                 printf "%.1f %.1f %.1f", t / hz * 1e6 / n, m / hz * 1e6 / n, (f > 0) ? n / f : 0 }')"
}

bench_fsyncs() { # the gateway's airlock_audit_fsyncs_total (0 when it has none)
    curl -fs "http://127.0.0.1:$GW_PORT/metrics" 2>/dev/null |
        awk '$1 == "airlock_audit_fsyncs_total" {print int($2); f = 1} END {if (!f) print 0}'
}
