#!/bin/sh
# proxy.sh -- how much airlock costs on the wire: throughput and latency of a 1 KB chat
# request against (a) the mock provider directly, (b) nginx as a plain keep-alive reverse
# proxy in front of it, (c) airlock in front of it with the audit on (sync batch), on with
# sync none, and off; each repeated and the median printed. Then an open-loop run at a
# fixed rate (default 1,000 req/s) for p50/p99 added latency vs direct, and airlock's RSS.
#
#   sh bench/proxy.sh            (env: AIRLOCK_BUILD, BENCH_SECONDS=10, BENCH_REPEAT=3,
#                                 BENCH_CONNS=32, BENCH_THREADS=2, BENCH_RATE=1000,
#                                 BENCH_RATE_SECONDS=5)
# Needs wrk and nginx (installed with apt-get when missing) and python3.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${AIRLOCK_BUILD:-$ROOT/build}
SECS=${BENCH_SECONDS:-10}
REPEAT=${BENCH_REPEAT:-3}
CONNS=${BENCH_CONNS:-32}
THREADS=${BENCH_THREADS:-2}
RATE=${BENCH_RATE:-1000}
RATE_SECS=${BENCH_RATE_SECONDS:-5}
REAL_KEY=sk-bench-real-0123456789
CLIENT_KEY=sk-bench-client-0123456789

need() { command -v "$1" >/dev/null 2>&1; }
if ! need wrk || ! need nginx; then
    echo "bench: installing wrk/nginx" >&2
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq >&2 || true
    need wrk || $SUDO apt-get install -y -qq wrk >&2
    need nginx || $SUDO apt-get install -y -qq nginx-light >&2 || $SUDO apt-get install -y -qq nginx >&2
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
for b in "$BUILD/airlock" "$BUILD/mock_provider"; do
    [ -x "$b" ] || { echo "bench: $b not built (make first)" >&2; exit 1; }
done

TMP=$(mktemp -d /tmp/airlock-bench.XXXXXX)
PIDS=""
cleanup() {
    for p in $PIDS; do kill "$p" 2>/dev/null; done
    sleep 0.2
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
    python3 - "$1" <<'EOF'
import socket, sys, time
end = time.time() + 15
while time.time() < end:
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=0.5).close(); sys.exit(0)
    except OSError:
        time.sleep(0.05)
sys.exit(1)
EOF
}

# ---- the 1 KB request body (exactly 1024 bytes), no PII or secrets in it
python3 - "$TMP/body.json" <<'EOF'
import json, sys
filler = ("The quick brown fox jumps over the lazy dog while the committee reviews "
          "the quarterly roadmap and drafts a summary for the weekly meeting. ") * 20
b = {"model": "gpt-4o-mini", "max_tokens": 64,
     "messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": ""}]}
base = len(json.dumps(b, separators=(",", ":")))
b["messages"][1]["content"] = filler[:1024 - base]
open(sys.argv[1], "w").write(json.dumps(b, separators=(",", ":")))
EOF
cat >"$TMP/req.lua" <<EOF
local f = io.open("$TMP/body.json", "rb")
wrk.method = "POST"
wrk.path = "/v1/chat/completions"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_KEY")
EOF

# ---- mock
"$BUILD/mock_provider" --port 0 --openai-key "$REAL_KEY" >"$TMP/mock.out" 2>"$TMP/mock.err" &
PIDS="$PIDS $!"
sleep 0.3
MOCK_PORT=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$TMP/mock.out")
[ -n "$MOCK_PORT" ] || { echo "bench: mock did not start" >&2; exit 1; }

# ---- nginx: one worker (airlock serves from one event loop), keep-alive upstream
NGINX_PORT=$(free_port)
mkdir -p "$TMP/nginx/logs" "$TMP/nginx/tmp"
cat >"$TMP/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $TMP/nginx/tmp/body;
    proxy_temp_path $TMP/nginx/tmp/proxy;
    fastcgi_temp_path $TMP/nginx/tmp/fcgi;
    uwsgi_temp_path $TMP/nginx/tmp/uwsgi;
    scgi_temp_path $TMP/nginx/tmp/scgi;
    upstream mock { server 127.0.0.1:$MOCK_PORT; keepalive 64; }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }
    }
}
EOF
"$NGINX" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" 2>"$TMP/nginx/stderr" &
PIDS="$PIDS $!"
wait_port "$NGINX_PORT" || { echo "bench: nginx did not start: $(cat "$TMP/nginx/stderr")" >&2; exit 1; }

# ---- airlock, audit on and off
start_airlock() { # name audit-yaml -> sets AL_PORT AL_PID
    d="$TMP/$1"; mkdir -p "$d"
    AL_PORT=$(free_port)
    cat >"$d/airlock.yaml" <<EOF
listen: [{address: "127.0.0.1:$AL_PORT"}]
keys: [{name: bench, team: bench, key: "$CLIENT_KEY"}]
providers:
  oai: {type: openai, base_url: "http://127.0.0.1:$MOCK_PORT/v1", api_key: "$REAL_KEY"}
models:
  - {name: gpt-4o-mini, provider: oai, price: {input_per_mtok: 0.15, output_per_mtok: 0.6}}
rules:
  - {name: no-secrets, if: {detected: [secrets]}, then: {action: block}}
  - {name: default, then: {action: allow}}
$2
EOF
    (cd "$d" && exec "$BUILD/airlock" serve -c "$d/airlock.yaml" 2>"$d/stderr.log") &
    AL_PID=$!
    PIDS="$PIDS $AL_PID"
    wait_port "$AL_PORT" || { echo "bench: airlock ($1) did not start: $(tail -5 "$d/stderr.log")" >&2; exit 1; }
}
start_airlock audit_on "audit: {dir: ./audit}"
AON_PORT=$AL_PORT; AON_PID=$AL_PID
start_airlock audit_off ""
AOFF_PORT=$AL_PORT; AOFF_PID=$AL_PID
start_airlock audit_nosync "audit: {dir: ./audit, sync: none}"
ANS_PORT=$AL_PORT; ANS_PID=$AL_PID

# sanity: every target answers 200 before measuring
for t in "$MOCK_PORT $REAL_KEY" "$NGINX_PORT $REAL_KEY" "$AON_PORT $CLIENT_KEY" "$AOFF_PORT $CLIENT_KEY" \
         "$ANS_PORT $CLIENT_KEY"; do
    set -- $t
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $2" -H 'Content-Type: application/json' \
        --data-binary @"$TMP/body.json" "http://127.0.0.1:$1/v1/chat/completions")
    [ "$code" = 200 ] || { echo "bench: port $1 answered $code, not 200" >&2; exit 1; }
done

# wrk output -> "rps p50_ms p99_ms non2xx"
run_wrk() { # port key
    BENCH_KEY=$2 wrk -t"$THREADS" -c"$CONNS" -d"${SECS}s" --latency -s "$TMP/req.lua" "http://127.0.0.1:$1" 2>&1 |
        python3 -c '
import re, sys
t = sys.stdin.read()
def ms(v):
    m = re.match(r"([0-9.]+)(us|ms|s)", v)
    return float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)]
rps = re.search(r"Requests/sec:\s+([0-9.]+)", t)
p50 = re.search(r"^\s+50%\s+(\S+)", t, re.M)
p99 = re.search(r"^\s+99%\s+(\S+)", t, re.M)
bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", t)
err = re.search(r"Socket errors: (.*)", t)
if not (rps and p50 and p99):
    print("0 0 0 parse-error"); sys.exit()
print("%s %.3f %.3f %s" % (rps.group(1), ms(p50.group(1)), ms(p99.group(1)),
      (bad.group(1) if bad else "0") + ("/" + err.group(1).replace(" ", "") if err else "")))'
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "airlock proxy benchmark: 1 KB chat request, wrk -t$THREADS -c$CONNS -d${SECS}s, median of $REPEAT"
echo "machine: $(nproc) cores; nginx 1 worker, keepalive upstream; airlock rules: no-secrets + default allow"
printf '%-22s %12s %10s %10s  %s\n' target "req/s" "p50 ms" "p99 ms" "non-2xx/errors per run"
for t in "direct:$MOCK_PORT:$REAL_KEY" "nginx:$NGINX_PORT:$REAL_KEY" "airlock-audit-on:$AON_PORT:$CLIENT_KEY" \
         "airlock-audit-nosync:$ANS_PORT:$CLIENT_KEY" "airlock-audit-off:$AOFF_PORT:$CLIENT_KEY"; do
    name=${t%%:*}; rest=${t#*:}; port=${rest%%:*}; key=${rest#*:}
    : >"$TMP/res.$name"
    i=0
    while [ $i -lt "$REPEAT" ]; do
        run_wrk "$port" "$key" >>"$TMP/res.$name"
        i=$((i + 1))
    done
    rps=$(cut -d' ' -f1 "$TMP/res.$name" | median)
    p50=$(cut -d' ' -f2 "$TMP/res.$name" | median)
    p99=$(cut -d' ' -f3 "$TMP/res.$name" | median)
    errs=$(cut -d' ' -f4 "$TMP/res.$name" | tr '\n' ' ')
    printf '%-22s %12s %10s %10s  %s\n' "$name" "$rps" "$p50" "$p99" "$errs"
    eval "RPS_$(echo "$name" | tr '-' '_')=$rps"
done
python3 -c "
n=float('$RPS_nginx'); on=float('$RPS_airlock_audit_on'); ns=float('$RPS_airlock_audit_nosync'); off=float('$RPS_airlock_audit_off')
print('airlock/nginx throughput: audit on (sync batch) %.2f, audit sync none %.2f, audit off %.2f' % (on/n if n else 0, ns/n if n else 0, off/n if n else 0))"
for p in "on:$AON_PID" "sync-none:$ANS_PID" "off:$AOFF_PID"; do
    pid=${p#*:}
    echo "airlock (audit ${p%%:*}) memory: $(grep -E 'VmRSS|VmHWM' /proc/"$pid"/status 2>/dev/null | tr -s ' \t' ' ' | tr '\n' ' ')"
done

# ---- open loop at a fixed rate: latency from the scheduled send time (no coordinated omission)
cat >"$TMP/fixed_rate.py" <<'EOF'
import selectors, socket, sys, time
port, key, rate, secs, conns = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
body = open(sys.argv[6], "rb").read()
req = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
       b"Authorization: Bearer " + key.encode() + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
sel = selectors.DefaultSelector()
idle, lat = [], []
errors = reconnects = 0
class C:
    def __init__(self):
        self.s = socket.create_connection(("127.0.0.1", port)); self.s.setblocking(False)
        self.buf = b""; self.t = None
        sel.register(self.s, selectors.EVENT_READ, self)
    def drop(self):
        sel.unregister(self.s); self.s.close()
    def done(self):
        # a whole response: head plus Content-Length or a terminated chunked body
        i = self.buf.find(b"\r\n\r\n")
        if i < 0: return None
        head = self.buf[:i].lower()
        if b"content-length:" in head:
            n = int(head.split(b"content-length:")[1].split(b"\r\n")[0])
            if len(self.buf) - i - 4 < n: return None
            return i + 4 + n
        j = self.buf.find(b"\r\n0\r\n\r\n", i)
        return None if j < 0 else j + 7
for _ in range(conns): idle.append(C())
n_total = int(rate * secs); start = time.perf_counter() + 0.1; sent = 0; pending = []
while len(lat) + errors < n_total:
    now = time.perf_counter()
    while sent < n_total and start + sent / rate <= now:
        pending.append(start + sent / rate); sent += 1
    while pending and idle:
        c = idle.pop(); c.t = pending.pop(0)
        try: c.s.sendall(req)
        except OSError:
            # the server had closed this idle connection: send the request on a fresh one
            pending.insert(0, c.t); c.drop(); reconnects += 1; idle.append(C())
    nxt = start + sent / rate if sent < n_total else now + 0.05
    for k, _ in sel.select(max(0, min(nxt - time.perf_counter(), 0.05))):
        c = k.data
        try: d = c.s.recv(65536)
        except (BlockingIOError, InterruptedError): continue
        except OSError: d = b""
        if not d:
            if c.t is not None: errors += 1  # the request in flight is lost
            elif c in idle: idle.remove(c)
            c.drop(); reconnects += 1; idle.append(C()); continue
        c.buf += d
        end = c.done()
        if end is not None:
            ok = c.buf.startswith(b"HTTP/1.1 200")
            c.buf = c.buf[end:]
            if ok: lat.append((time.perf_counter() - c.t) * 1000)
            else: errors += 1
            c.t = None
            idle.append(c)
    if time.perf_counter() > start + secs + 30: break
lat.sort()
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] if lat else float("nan")
print("%.3f %.3f %.3f %d %d %d" % (q(0.5), q(0.99), q(0.999), len(lat), errors, reconnects))
EOF
echo
echo "open loop at $RATE req/s for ${RATE_SECS}s over $CONNS connections (latency from scheduled send), median of $REPEAT"
printf '%-22s %10s %10s %10s %8s %7s %10s\n' target "p50 ms" "p99 ms" "p99.9 ms" "ok" "errors" "reconnects"
for t in "direct:$MOCK_PORT:$REAL_KEY" "nginx:$NGINX_PORT:$REAL_KEY" "airlock-audit-on:$AON_PORT:$CLIENT_KEY" \
         "airlock-audit-nosync:$ANS_PORT:$CLIENT_KEY" "airlock-audit-off:$AOFF_PORT:$CLIENT_KEY"; do
    name=${t%%:*}; rest=${t#*:}; port=${rest%%:*}; key=${rest#*:}
    : >"$TMP/fr.$name"
    i=0
    while [ $i -lt "$REPEAT" ]; do
        python3 "$TMP/fixed_rate.py" "$port" "$key" "$RATE" "$RATE_SECS" "$CONNS" "$TMP/body.json" >>"$TMP/fr.$name"
        i=$((i + 1))
    done
    p50=$(cut -d' ' -f1 "$TMP/fr.$name" | median)
    p99=$(cut -d' ' -f2 "$TMP/fr.$name" | median)
    p999=$(cut -d' ' -f3 "$TMP/fr.$name" | median)
    okc=$(cut -d' ' -f4 "$TMP/fr.$name" | median)
    errc=$(cut -d' ' -f5 "$TMP/fr.$name" | median)
    recc=$(cut -d' ' -f6 "$TMP/fr.$name" | median)
    printf '%-22s %10s %10s %10s %8s %7s %10s\n' "$name" "$p50" "$p99" "$p999" "$okc" "$errc" "$recc"
    eval "P99_$(echo "$name" | tr '-' '_')=$p99; P50_$(echo "$name" | tr '-' '_')=$p50"
done
python3 -c "
d=float('$P99_direct'); d50=float('$P50_direct')
for n,v,v50 in (('nginx',$P99_nginx,$P50_nginx),('airlock audit on',$P99_airlock_audit_on,$P50_airlock_audit_on),('airlock sync none',$P99_airlock_audit_nosync,$P50_airlock_audit_nosync),('airlock audit off',$P99_airlock_audit_off,$P50_airlock_audit_off)):
    print('added latency vs direct, %-18s p50 %+.3f ms, p99 %+.3f ms' % (n, v50-d50, v-d))"
for p in "on:$AON_PID" "sync-none:$ANS_PID" "off:$AOFF_PID"; do
    pid=${p#*:}
    echo "airlock (audit ${p%%:*}) memory after all runs: $(grep -E 'VmRSS|VmHWM' /proc/"$pid"/status 2>/dev/null | tr -s ' \t' ' ' | tr '\n' ' ')"
done
