#!/bin/sh
# proxy.sh -- how much airlock costs on the wire. A 1 KB request (wrk, keep-alive, -c32 -t2)
# of each kind in BENCH_KINDS -- chat (POST /v1/chat/completions), chat-stream (the same,
# stream: true), responses (POST /v1/responses), responses-stream -- against:
#   nginx              the upstream alone: nginx answering `return 200` with a canned
#                      chat-completions body (UPSTREAM=nginx, the default), so the reference
#                      is about as fast as an HTTP server gets on this machine
#   nginx-proxy        a second nginx (one worker) as a keep-alive reverse proxy in front of
#                      that upstream: what a proxy that only proxies costs here
#                      (BENCH_NGINX_PROXY=0 leaves it out)
#   airlock-off        airlock, audit off, in front of that upstream
#   airlock-batch      airlock, audit `sync: batch`, in front of it
#   airlock-none       airlock, audit `sync: none` (only with BENCH_NOSYNC=1)
#   before-off/-batch  the same two with a second binary, AIRLOCK_BEFORE (before/after in
#                      one session)
# With UPSTREAM=mock the upstream is our C mock provider (tests/mock) instead, and the
# targets are `mock` (directly), `nginx` (one worker as a keep-alive reverse proxy in front
# of the mock) and the airlock ones in front of the mock.
#
# Targets run alternately: each round runs every target once (the starting target rotates
# from round to round), so load that comes and goes on a shared machine falls on all of
# them; BENCH_REPEAT rounds. Printed: medians over rounds of requests/s, p50, p99 (wrk
# --latency), and of the per-round ratio to nginx (target / nginx of the same round). Each
# run also records the 1-minute load average and the "foreign" CPU: what every other
# process (not wrk, not the benchmark's servers, not kernel threads) used during the run,
# as a share of all cores (other people's compiles). Then an open-loop run at a fixed rate (BENCH_RATE req/s; 0
# skips it), alternated the same way, for p50/p99 latency added over the upstream alone.
#
# Each (target, kind) pair is one job; a round runs every job once. After the table, each
# Responses kind's latency added over the upstream is set beside its Chat Completions
# counterpart's (responses vs chat, responses-stream vs chat-stream), same run, same rounds.
#
#   sh bench/proxy.sh
#   BENCH_KINDS="chat responses" sh bench/proxy.sh
#   AIRLOCK_BEFORE=/tmp/airlock-before/build/airlock sh bench/proxy.sh
#   UPSTREAM=mock BENCH_NOSYNC=1 sh bench/proxy.sh
# env: AIRLOCK_BUILD (dir with airlock [and mock_provider]; default ./build),
#      AIRLOCK_BEFORE (a second airlock binary), UPSTREAM=nginx|mock, BENCH_SECONDS=5,
#      BENCH_REPEAT=3, BENCH_CONNS=32, BENCH_THREADS=2, BENCH_NOSYNC=0, BENCH_RATE=1000,
#      BENCH_RATE_SECONDS=5, BENCH_KINDS="chat chat-stream responses responses-stream", TMPDIR (where the audit logs go: its file system sets the
#      fsync cost). Everything listens on 127.0.0.1 only; nginx is a throw-away instance
#      with its own prefix and config in the temporary folder, never the system service.
# Needs wrk and nginx (installed with apt-get when missing, bench/lib.sh), python3, curl.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${AIRLOCK_BUILD:-$ROOT/build}
BEFORE=${AIRLOCK_BEFORE:-}
UPSTREAM=${UPSTREAM:-nginx}
SECS=${BENCH_SECONDS:-5}
REPEAT=${BENCH_REPEAT:-3}
CONNS=${BENCH_CONNS:-32}
THREADS=${BENCH_THREADS:-2}
NOSYNC=${BENCH_NOSYNC:-0}
RATE=${BENCH_RATE:-1000}
RATE_SECS=${BENCH_RATE_SECONDS:-5}
KINDS=${BENCH_KINDS:-chat chat-stream responses responses-stream}
REAL_KEY=sk-bench-real-0123456789
CLIENT_KEY=sk-bench-client-0123456789

. "$ROOT/bench/lib.sh"
case $UPSTREAM in nginx | mock) ;; *) echo "bench: UPSTREAM must be nginx or mock" >&2; exit 2 ;; esac
bench_need_wrk || exit 1
bench_need_nginx || exit 1
[ -x "$BUILD/airlock" ] || { echo "bench: $BUILD/airlock not built (make first)" >&2; exit 1; }
[ "$UPSTREAM" = nginx ] || [ -x "$BUILD/mock_provider" ] ||
    { echo "bench: $BUILD/mock_provider not built (make first)" >&2; exit 1; }
[ -z "$BEFORE" ] || [ -x "$BEFORE" ] || { echo "bench: AIRLOCK_BEFORE=$BEFORE is not an executable" >&2; exit 1; }
for k in $KINDS; do
    case $k in chat | chat-stream | responses | responses-stream) ;;
    *) echo "bench: BENCH_KINDS: unknown kind '$k'" >&2; exit 2 ;; esac
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/airlock-bench.XXXXXX")
PIDS=""
cleanup() {
    for p in $PIDS; do kill "$p" 2>/dev/null; done
    for p in $PIDS; do wait "$p" 2>/dev/null; done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

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

# a binary and where it came from: commit of the tree it sits in, and when it was built
describe_bin() {
    d=$(dirname "$1")
    c=$(git -C "$d" rev-parse --short HEAD 2>/dev/null || echo "no git")
    dirty=""
    [ -n "$(git -C "$d" status --porcelain -uno 2>/dev/null | head -1)" ] && dirty=", tree has uncommitted changes"
    echo "$1 (commit $c$dirty; built $(date -u -r "$1" '+%Y-%m-%d %H:%M UTC'))"
}

# ---- the 1 KB request bodies (exactly 1024 bytes each), no PII or secrets in them; the
# canned answers (the mock's own, byte for byte but for dates and ids): a chat.completion,
# its SSE chunks (usage chunk and [DONE] included, as asked by the gateway), a response
# object, and its Responses event stream
python3 - "$TMP" <<'EOF'
import json, sys
filler = ("The quick brown fox jumps over the lazy dog while the committee reviews "
          "the quarterly roadmap and drafts a summary for the weekly meeting. ") * 20
tmp = sys.argv[1]
def dump(o):
    return json.dumps(o, separators=(",", ":"))
def sized(b, setter):
    setter(b, "")
    setter(b, filler[:1024 - len(dump(b))])
    assert len(dump(b)) == 1024
    return dump(b)
def chat_body(stream):
    b = {"model": "gpt-4o-mini", "max_tokens": 64,
         "messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": ""}]}
    if stream:
        b["stream"] = True
    return sized(b, lambda b, t: b["messages"][1].__setitem__("content", t))
def resp_body(stream):
    b = {"model": "gpt-4o-mini", "max_output_tokens": 64, "instructions": "You are terse.",
         "input": [{"role": "user", "content": [{"type": "input_text", "text": ""}]}]}
    if stream:
        b["stream"] = True
    return sized(b, lambda b, t: b["input"][0]["content"][0].__setitem__("text", t))
open(tmp + "/body-chat.json", "w").write(chat_body(False))
open(tmp + "/body-chat-stream.json", "w").write(chat_body(True))
open(tmp + "/body-responses.json", "w").write(resp_body(False))
open(tmp + "/body-responses-stream.json", "w").write(resp_body(True))
a = {"id": "chatcmpl-mock000001", "object": "chat.completion", "created": 1796578781,
     "model": "gpt-4o-mini",
     "choices": [{"index": 0, "message": {"role": "assistant",
                  "content": "Hello from the mock provider, a deterministic answer.",
                  "refusal": None, "annotations": []}, "logprobs": None, "finish_reason": "stop"}],
     "usage": {"prompt_tokens": 16, "completion_tokens": 8, "total_tokens": 24,
               "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
               "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                             "accepted_prediction_tokens": 0,
                                             "rejected_prediction_tokens": 0}},
     "service_tier": "default", "system_fingerprint": "fp_mock0001"}
open(tmp + "/answer-chat.json", "w").write(dump(a))
words = ["Hello", " from", " the", " mock", " provider,", " a", " deterministic", " answer."]
text = "".join(words)
ev = []
def chunk(delta, finish=None, usage=None):
    c = {"id": "chatcmpl-mock000001", "object": "chat.completion.chunk", "created": 1796578781,
         "model": "gpt-4o-mini", "service_tier": "default", "system_fingerprint": "fp_mock0001",
         "choices": [] if usage else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
    if usage:
        c["usage"] = usage
    return "data: " + dump(c) + "\n\n"
ev.append(chunk({"role": "assistant", "content": "", "refusal": None}))
ev += [chunk({"content": w}) for w in words]
ev.append(chunk({}, "stop"))
ev.append(chunk(None, usage=a["usage"]))
ev.append("data: [DONE]\n\n")
open(tmp + "/answer-chat-stream.sse", "w").write("".join(ev))
usage = {"input_tokens": 256, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 8,
         "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 264}
def resp(status, output, u):
    return {"id": "resp_mock000001", "object": "response", "created_at": 1796578781, "status": status,
            "background": False, "error": None, "incomplete_details": None, "instructions": None,
            "max_output_tokens": 64, "model": "gpt-4o-mini", "output": output, "parallel_tool_calls": True,
            "previous_response_id": None, "reasoning": {"effort": None, "summary": None},
            "service_tier": "default", "store": False, "temperature": 1, "text": {"format": {"type": "text"}},
            "tool_choice": "auto", "tools": [], "top_p": 1, "truncation": "disabled", "usage": u, "metadata": {}}
def part(t):
    return {"type": "output_text", "annotations": [], "logprobs": [], "text": t}
def item(t):
    if t is None:
        return {"id": "msg_mock000001", "type": "message", "status": "in_progress", "content": [], "role": "assistant"}
    return {"id": "msg_mock000001", "type": "message", "status": "completed", "content": [part(t)], "role": "assistant"}
open(tmp + "/answer-responses.json", "w").write(dump(resp("completed", [item(text)], usage)))
seq = [0]
def rev(t, **m):
    e = {"type": t, "sequence_number": seq[0]}
    e.update(m)
    seq[0] += 1
    return "event: %s\ndata: %s\n\n" % (t, dump(e))
at = {"item_id": "msg_mock000001", "output_index": 0, "content_index": 0}
ev = [rev("response.created", response=resp("in_progress", [], None)),
      rev("response.in_progress", response=resp("in_progress", [], None)),
      rev("response.output_item.added", output_index=0, item=item(None)),
      rev("response.content_part.added", part=part(""), **at)]
ev += [rev("response.output_text.delta", delta=w, logprobs=[], **at) for w in words]
ev += [rev("response.output_text.done", text=text, logprobs=[], **at),
       rev("response.content_part.done", part=part(text), **at),
       rev("response.output_item.done", output_index=0, item=item(text)),
       rev("response.completed", response=resp("completed", [item(text)], usage))]
open(tmp + "/answer-responses-stream.sse", "w").write("".join(ev))
EOF
# the path of a kind, and how its right answer is recognised
kind_path() { case $1 in chat*) echo /v1/chat/completions ;; *) echo /v1/responses ;; esac; }
kind_check() { case $1 in *-stream) echo 'deterministic' ;; *) echo 'a deterministic answer' ;; esac; }
for k in $KINDS; do
    cat >"$TMP/req-$k.lua" <<EOF
local f = io.open("$TMP/body-$k.json", "rb")
wrk.method = "POST"
wrk.path = "$(kind_path "$k")"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_KEY")
EOF
done

# ---- upstream and nginx: one nginx worker (airlock serves from one event loop)
if [ "$UPSTREAM" = mock ]; then
    "$BUILD/mock_provider" --port 0 --openai-key "$REAL_KEY" >"$TMP/mock.out" 2>"$TMP/mock.err" &
    MOCK_PID=$!
    PIDS="$PIDS $MOCK_PID"
    i=0
    until MOCK_PORT=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$TMP/mock.out") && [ -n "$MOCK_PORT" ]; do
        i=$((i + 1)); [ $i -gt 50 ] && { echo "bench: mock did not start" >&2; exit 1; }
        sleep 0.1
    done
fi
NGINX_PORT=$(free_port)
mkdir -p "$TMP/nginx/logs" "$TMP/nginx/tmp"
if [ "$UPSTREAM" = nginx ]; then
    UP_PORT=$NGINX_PORT
    # a stream is told by the Accept the gateway sends for one (text/event-stream); the
    # streams are static files (longer than a `return` may be), which nginx's worker
    # (nobody, when started as root) may read: the folder can be crossed, not listed; a
    # POST for a static file is answered 405, turned back into the file by error_page
    mkdir -p "$TMP/nginx/sse"
    cp "$TMP/answer-chat-stream.sse" "$TMP/answer-responses-stream.sse" "$TMP/nginx/sse/"
    chmod 711 "$TMP" "$TMP/nginx"
    chmod 755 "$TMP/nginx/sse"
    chmod 644 "$TMP/nginx/sse/"*.sse
    SERVE="location = /v1/chat/completions { default_type application/json;
            if (\$http_accept = text/event-stream) { rewrite ^ /sse/chat last; }
            return 200 '$(cat "$TMP/answer-chat.json")'; }
        location = /v1/responses { default_type application/json;
            if (\$http_accept = text/event-stream) { rewrite ^ /sse/responses last; }
            return 200 '$(cat "$TMP/answer-responses.json")'; }
        location = /sse/chat { default_type text/event-stream; error_page 405 =200 \$uri; alias $TMP/nginx/sse/answer-chat-stream.sse; }
        location = /sse/responses { default_type text/event-stream; error_page 405 =200 \$uri; alias $TMP/nginx/sse/answer-responses-stream.sse; }
        location / { return 404; }"
    UPBLOCK=""
else
    UP_PORT=$MOCK_PORT
    SERVE="location / { proxy_pass http://mock; proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_buffering off; }"
    UPBLOCK="upstream mock { server 127.0.0.1:$MOCK_PORT; keepalive 64; keepalive_requests 1000000; }"
fi
cat >"$TMP/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    client_body_temp_path $TMP/nginx/tmp/body;
    proxy_temp_path $TMP/nginx/tmp/proxy;
    fastcgi_temp_path $TMP/nginx/tmp/fcgi;
    uwsgi_temp_path $TMP/nginx/tmp/uwsgi;
    scgi_temp_path $TMP/nginx/tmp/scgi;
    $UPBLOCK
    server {
        listen 127.0.0.1:$NGINX_PORT;
        $SERVE
    }
}
EOF
"$NGINX" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" 2>"$TMP/nginx/stderr" &
NGINX_PID=$!
PIDS="$PIDS $NGINX_PID"
wait_port "$NGINX_PORT" || { echo "bench: nginx did not start: $(cat "$TMP/nginx/stderr")" >&2; exit 1; }

# ---- nginx as a reverse proxy in front of the same upstream (UPSTREAM=nginx,
# BENCH_NGINX_PROXY=1, the default): a proxy that does nothing but proxy, one worker, keep-
# alive both ways, unbuffered -- the reference for what any proxy in this path costs on
# this machine, beside the upstream alone
NPX_PID=""
if [ "$UPSTREAM" = nginx ] && [ "${BENCH_NGINX_PROXY:-1}" = 1 ]; then
    NPX_PORT=$(free_port)
    mkdir -p "$TMP/nginx-proxy/logs" "$TMP/nginx-proxy/tmp"
    cat >"$TMP/nginx-proxy/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $TMP/nginx-proxy/nginx.pid;
error_log $TMP/nginx-proxy/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    client_body_temp_path $TMP/nginx-proxy/tmp/body;
    proxy_temp_path $TMP/nginx-proxy/tmp/proxy;
    fastcgi_temp_path $TMP/nginx-proxy/tmp/fcgi;
    uwsgi_temp_path $TMP/nginx-proxy/tmp/uwsgi;
    scgi_temp_path $TMP/nginx-proxy/tmp/scgi;
    upstream up { server 127.0.0.1:$NGINX_PORT; keepalive 64; keepalive_requests 1000000; }
    server {
        listen 127.0.0.1:$NPX_PORT;
        location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering off; }
    }
}
EOF
    "$NGINX" -p "$TMP/nginx-proxy" -c "$TMP/nginx-proxy/nginx.conf" 2>"$TMP/nginx-proxy/stderr" &
    NPX_PID=$!
    PIDS="$PIDS $NPX_PID"
    wait_port "$NPX_PORT" || { echo "bench: nginx (proxy) did not start: $(cat "$TMP/nginx-proxy/stderr")" >&2; exit 1; }
fi

# ---- airlock instances, all in front of the upstream, started once for the whole run
start_airlock() { # name binary audit-yaml -> AL_PORT, AL_PID
    d="$TMP/$1"; mkdir -p "$d"
    AL_PORT=$(free_port)
    cat >"$d/airlock.yaml" <<EOF
listen: [{address: "127.0.0.1:$AL_PORT"}]
keys: [{name: bench, team: bench, key: "$CLIENT_KEY"}]
providers:
  oai: {type: openai, base_url: "http://127.0.0.1:$UP_PORT/v1", api_key: "$REAL_KEY"}
models:
  - {name: gpt-4o-mini, provider: oai, price: {input_per_mtok: 0.15, output_per_mtok: 0.6}}
rules:
  - {name: no-secrets, if: {detected: [secrets]}, then: {action: block}}
  - {name: default, then: {action: allow}}
$3
EOF
    (cd "$d" && exec "$2" serve -c "$d/airlock.yaml" 2>"$d/stderr.log") &
    AL_PID=$!
    PIDS="$PIDS $AL_PID"
    wait_port "$AL_PORT" || { echo "bench: airlock ($1) did not start: $(tail -5 "$d/stderr.log")" >&2; exit 1; }
    echo "$1:$AL_PORT:$CLIENT_KEY" >>"$TMP/targets"
    echo "$1 $AL_PID" >>"$TMP/airlock_pids"
}
: >"$TMP/targets"; : >"$TMP/airlock_pids"
if [ "$UPSTREAM" = mock ]; then
    echo "mock:$MOCK_PORT:$REAL_KEY" >>"$TMP/targets"
fi
echo "nginx:$NGINX_PORT:$REAL_KEY" >>"$TMP/targets"
[ -n "$NPX_PID" ] && echo "nginx-proxy:$NPX_PORT:$REAL_KEY" >>"$TMP/targets"
start_airlock airlock-off "$BUILD/airlock" ""
start_airlock airlock-batch "$BUILD/airlock" "audit: {dir: ./audit, sync: batch}"
[ "$NOSYNC" = 1 ] && start_airlock airlock-none "$BUILD/airlock" "audit: {dir: ./audit, sync: none}"
if [ -n "$BEFORE" ]; then
    start_airlock before-off "$BEFORE" ""
    start_airlock before-batch "$BEFORE" "audit: {dir: ./audit, sync: batch}"
    [ "$NOSYNC" = 1 ] && start_airlock before-none "$BEFORE" "audit: {dir: ./audit, sync: none}"
fi
NT=$(wc -l <"$TMP/targets")

# the jobs: every target with every kind ("target/kind:port:key:kind"); a stream asked of
# the upstream directly says so in Accept, as the gateway does
: >"$TMP/jobs"
for k in $KINDS; do
    while IFS=: read -r name port key; do
        echo "$name/$k:$port:$key:$k" >>"$TMP/jobs"
    done <"$TMP/targets"
done
NJ=$(wc -l <"$TMP/jobs")
for k in $KINDS; do
    case $k in *-stream) echo 'wrk.headers["Accept"] = "text/event-stream"' >>"$TMP/req-$k.lua" ;; esac
done

# sanity: every job answers 200 with the canned answer before measuring
while IFS=: read -r name port key kind; do
    accept="application/json"
    case $kind in *-stream) accept="text/event-stream" ;; esac
    code=$(curl -s -o "$TMP/sanity.out" -w '%{http_code}' -H "Authorization: Bearer $key" \
        -H 'Content-Type: application/json' -H "Accept: $accept" --data-binary @"$TMP/body-$kind.json" \
        "http://127.0.0.1:$port$(kind_path "$kind")")
    [ "$code" = 200 ] && grep -q "$(kind_check "$kind")" "$TMP/sanity.out" ||
        { echo "bench: $name (port $port) answered $code: $(head -c 300 "$TMP/sanity.out")" >&2; exit 1; }
done <"$TMP/jobs"

# our own processes (their CPU is not "foreign"): nginx's master and worker, the mock, airlocks
OUR_PIDS="$PIDS $(cat "/proc/$NGINX_PID/task/$NGINX_PID/children" 2>/dev/null)"
[ -n "$NPX_PID" ] && OUR_PIDS="$OUR_PIDS $(cat "/proc/$NPX_PID/task/$NPX_PID/children" 2>/dev/null)"

# one wrk run -> "rps p50_ms p99_ms errors load1 foreign_cpu_pct"
cat >"$TMP/run_wrk.py" <<'EOF'
import os, re, subprocess, sys, time
port, key, secs, conns, threads, lua = sys.argv[1:7]
ours = [p for p in sys.argv[7:] if p.isdigit()]
hz = os.sysconf("SC_CLK_TCK"); ncpu = os.cpu_count(); me = str(os.getpid())
def others():
    # CPU of every process that is not ours (nor a kernel thread): own time plus that of
    # children it has reaped, so a compiler that starts and ends during the run still counts
    t = 0
    for p in os.listdir("/proc"):
        if not p.isdigit() or p == me or p in ours:
            continue
        try:
            s = open("/proc/%s/stat" % p).read(); s = s[s.rindex(")") + 2:].split()
        except (OSError, ValueError):
            continue
        if int(s[6]) & 0x00200000 or s[1] == "2" or s[1] in ours:  # kernel thread, or our nginx worker
            continue
        t += int(s[11]) + int(s[12]) + int(s[13]) + int(s[14])
    return t
load = open("/proc/loadavg").read().split()[0]
f0, w0 = others(), time.time()
t = subprocess.run(["wrk", "-t" + threads, "-c" + conns, "-d" + secs + "s", "--latency", "-s", lua,
                    "http://127.0.0.1:" + port], env=dict(os.environ, BENCH_KEY=key),
                   capture_output=True, text=True).stdout
f1, w1 = others(), time.time()
foreign_pct = max(0.0, 100.0 * (f1 - f0) / hz / ((w1 - w0) * ncpu))
def ms(v):
    m = re.match(r"([0-9.]+)(us|ms|s)", v)
    return float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)]
rps = re.search(r"Requests/sec:\s+([0-9.]+)", t)
p50 = re.search(r"^\s+50%\s+(\S+)", t, re.M)
p99 = re.search(r"^\s+99%\s+(\S+)", t, re.M)
bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", t)
err = re.search(r"Socket errors: (.*)", t)
if not (rps and p50 and p99):
    print("0 0 0 parse-error %s %.0f" % (load, foreign_pct)); sys.exit()
print("%s %.3f %.3f %s %s %.0f" % (rps.group(1), ms(p50.group(1)), ms(p99.group(1)),
      (bad.group(1) if bad else "0") + ("/" + err.group(1).replace(" ", "") if err else ""),
      load, foreign_pct))
EOF

# rounds: every job once per round, the first one rotating
rotated() { # round -> the jobs, starting at (round-1) mod NJ
    off=$(( ($1 - 1) % NJ ))
    awk -v s="$off" 'NR > s' "$TMP/jobs"; awk -v s="$off" 'NR <= s' "$TMP/jobs"
}

echo "airlock proxy benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, start: $(uptime | sed 's/^ *//')"
echo "  requests: 1024-byte JSON bodies, kinds: $KINDS; wrk -t$THREADS -c$CONNS -d${SECS}s --latency, keep-alive"
if [ "$UPSTREAM" = nginx ]; then
    echo "  upstream: $("$NGINX" -v 2>&1 | sed 's/.*: //'), 1 worker, canned answers: chat.completion $(wc -c <"$TMP/answer-chat.json") B and response $(wc -c <"$TMP/answer-responses.json") B ('return 200'), chat SSE $(wc -c <"$TMP/answer-chat-stream.sse") B and Responses SSE $(wc -c <"$TMP/answer-responses-stream.sse") B (static files)"
else
    echo "  upstream: mock_provider (tests/mock); nginx = $("$NGINX" -v 2>&1 | sed 's/.*: //'), 1 worker, keep-alive reverse proxy to it"
fi
echo "  airlock: rules no-secrets (block on detected secrets) + default allow; audit in $TMP"
echo "  after:  $(describe_bin "$BUILD/airlock")"
[ -n "$BEFORE" ] && echo "  before: $(describe_bin "$BEFORE")"
echo "  $REPEAT rounds, each runs every target once (start rotates); medians over rounds;"
echo "  'x nginx' = median over rounds of (target / nginx in the same round); load = 1-min load"
echo "  average at the run's start; foreign = CPU used by others during the run, % of all cores"
: >"$TMP/runs"
r=1
while [ $r -le "$REPEAT" ]; do
    rotated $r >"$TMP/order"
    while IFS=: read -r name port key kind; do
        res=$(python3 "$TMP/run_wrk.py" "$port" "$key" "$SECS" "$CONNS" "$THREADS" "$TMP/req-$kind.lua" $OUR_PIDS </dev/null)
        echo "$r $name $res" >>"$TMP/runs"
        set -- $res
        printf '  round %d %-30s %9s req/s  p50 %6s ms  p99 %6s ms  errors %s  load %s  foreign %s%%\n' \
            "$r" "$name" "$1" "$2" "$3" "$4" "$5" "$6"
    done <"$TMP/order"
    r=$((r + 1))
done

python3 - "$TMP/runs" "$TMP/jobs" <<'EOF'
import sys, statistics as st
runs = [l.split() for l in open(sys.argv[1]) if l.strip()]
names = [l.split(":")[0] for l in open(sys.argv[2]) if l.strip()]
by = {}  # (round, name) -> (rps, p50, p99, err, load, foreign)
for r, n, rps, p50, p99, err, load, fg in runs:
    by[(r, n)] = (float(rps), float(p50), float(p99), err, float(load), float(fg))
rounds = sorted({k[0] for k in by}, key=int)
def med(xs): return st.median(xs) if xs else float("nan")
def ratio(n, ref, i):
    return med([by[(r, n)][i] / by[(r, ref)][i] for r in rounds
                if (r, n) in by and (r, ref) in by and by[(r, ref)][i] > 0])
def added(n, ref, i):  # median over rounds of (n - ref), each pair from the same round
    return med([by[(r, n)][i] - by[(r, ref)][i] for r in rounds if (r, n) in by and (r, ref) in by])
def tgt(n): return n.split("/")[0]
def kind(n): return n.split("/")[1]
print()
print("%-30s %10s %8s %9s %8s %9s %8s %6s %8s  %s" % ("target/kind", "req/s", "x nginx", "p50 ms", "x nginx",
      "p99 ms", "x nginx", "load", "foreign", "errors per run"))
for n in names:
    v = [by[(r, n)] for r in rounds if (r, n) in by]
    ref = "nginx/" + kind(n)
    print("%-30s %10.0f %8.3f %9.3f %8.2f %9.3f %8.2f %6.2f %7.0f%%  %s" % (
        n, med([x[0] for x in v]), ratio(n, ref, 0), med([x[1] for x in v]), ratio(n, ref, 1),
        med([x[2] for x in v]), ratio(n, ref, 2), med([x[4] for x in v]), med([x[5] for x in v]),
        " ".join(x[3] for x in v)))
kinds = []
for n in names:
    if kind(n) not in kinds:
        kinds.append(kind(n))
for k in kinds:
    for a in ("off", "batch", "none"):
        an, bn = "airlock-%s/%s" % (a, k), "before-%s/%s" % (a, k)
        if an in names and bn in names:
            print("%s after/before, audit %-5s: req/s %.3fx, p50 %.2fx, p99 %.2fx (medians of per-round ratios)" % (
                k, a, ratio(an, bn, 0), ratio(an, bn, 1), ratio(an, bn, 2)))
    if "nginx-proxy/" + k in names:
        for a in ("off", "batch", "none"):
            an = "airlock-%s/%s" % (a, k)
            if an in names:
                print("%s airlock audit %-5s / nginx as a proxy: req/s %.3fx, p50 %.2fx, p99 %.2fx (medians of per-round ratios)" % (
                    k, a, ratio(an, "nginx-proxy/" + k, 0), ratio(an, "nginx-proxy/" + k, 1), ratio(an, "nginx-proxy/" + k, 2)))
    if "airlock-off/" + k in names and "airlock-batch/" + k in names:
        print("%s audit sync batch / audit off: req/s %.3fx" % (k, ratio("airlock-batch/" + k, "airlock-off/" + k, 0)))
# Responses beside Chat Completions: what airlock adds over the upstream alone, per kind
up = "mock" if any(tgt(n) == "mock" for n in names) else "nginx"
print()
print("Responses beside Chat Completions (closed loop): p50 airlock adds over %s alone (median over" % up)
print("rounds of target - %s in the same round), and requests/s as a share of %s's:" % (up, up))
for r_k, c_k in (("responses", "chat"), ("responses-stream", "chat-stream")):
    for a in ("off", "batch", "none"):
        rn, cn = "airlock-%s/%s" % (a, r_k), "airlock-%s/%s" % (a, c_k)
        if rn in names and cn in names:
            ar, ac = added(rn, "%s/%s" % (up, r_k), 1), added(cn, "%s/%s" % (up, c_k), 1)
            print("  audit %-5s %-16s +p50 %.3f ms vs %-11s +p50 %.3f ms: %.2fx;  req/s x %s %.3f vs %.3f" % (
                a, r_k, ar, c_k, ac, ar / ac if ac > 0 else float("nan"), up,
                ratio(rn, "%s/%s" % (up, r_k), 0), ratio(cn, "%s/%s" % (up, c_k), 0)))
EOF
while read -r name pid; do
    echo "$name memory: $(grep -E 'VmRSS|VmHWM' /proc/"$pid"/status 2>/dev/null | tr -s ' \t' ' ' | tr '\n' ' ')"
done <"$TMP/airlock_pids"
echo "end: $(uptime | sed 's/^ *//')"

[ "$RATE" -gt 0 ] 2>/dev/null || exit 0

# ---- open loop at a fixed rate: latency from the scheduled send time (no coordinated omission)
cat >"$TMP/fixed_rate.py" <<'EOF'
import selectors, socket, sys, time
port, key, rate, secs, conns = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
body = open(sys.argv[6], "rb").read()
path, accept = sys.argv[7].encode(), sys.argv[8].encode()
req = (b"POST " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
       b"Accept: " + accept + b"\r\n"
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
echo "open loop at $RATE req/s for ${RATE_SECS}s over $CONNS connections (latency from each request's"
echo "scheduled send), alternated the same way, medians of $REPEAT; added = target - $UPSTREAM alone, per round"
: >"$TMP/fr"
r=1
while [ $r -le "$REPEAT" ]; do
    rotated $r >"$TMP/order"
    while IFS=: read -r name port key kind; do
        [ "$UPSTREAM" = mock ] && [ "${name%%/*}" = nginx ] && continue
        accept="application/json"
        case $kind in *-stream) accept="text/event-stream" ;; esac
        echo "$r $name $(python3 "$TMP/fixed_rate.py" "$port" "$key" "$RATE" "$RATE_SECS" "$CONNS" "$TMP/body-$kind.json" "$(kind_path "$kind")" "$accept" </dev/null) $(cut -d' ' -f1 /proc/loadavg)" >>"$TMP/fr"
    done <"$TMP/order"
    r=$((r + 1))
done
python3 - "$TMP/fr" "$TMP/jobs" "$UPSTREAM" <<'EOF'
import sys, statistics as st
up = sys.argv[3]
names = [l.split(":")[0] for l in open(sys.argv[2]) if l.strip()]
by = {}
for l in open(sys.argv[1]):
    f = l.split()
    if len(f) == 9:
        by[(f[0], f[1])] = [float(x) for x in f[2:]]
rounds = sorted({k[0] for k in by}, key=int)
med = lambda xs: st.median(xs) if xs else float("nan")
print("%-30s %9s %9s %9s %9s %9s %6s %6s %6s" % ("target/kind", "p50 ms", "p99 ms", "p99.9 ms", "+p50 ms",
      "+p99 ms", "ok", "errors", "load"))
adds = {}
for n in names:
    v = [by[(r, n)] for r in rounds if (r, n) in by]
    if not v: continue
    ref = up + "/" + n.split("/")[1]
    add = lambda i: med([by[(r, n)][i] - by[(r, ref)][i] for r in rounds if (r, n) in by and (r, ref) in by])
    adds[n] = (add(0), add(1))
    print("%-30s %9.3f %9.3f %9.3f %+9.3f %+9.3f %6.0f %6.0f %6.2f" % (
        n, med([x[0] for x in v]), med([x[1] for x in v]), med([x[2] for x in v]), add(0), add(1),
        med([x[3] for x in v]), med([x[4] for x in v]), med([x[6] for x in v])))
print("Responses beside Chat Completions (open loop): latency added over %s alone" % up)
for r_k, c_k in (("responses", "chat"), ("responses-stream", "chat-stream")):
    for a in ("off", "batch", "none"):
        rn, cn = "airlock-%s/%s" % (a, r_k), "airlock-%s/%s" % (a, c_k)
        if rn in adds and cn in adds:
            print("  audit %-5s %-16s +p50 %.3f ms vs %-11s +p50 %.3f ms: %.2fx;  +p99 %.3f vs %.3f ms" % (
                a, r_k, adds[rn][0], c_k, adds[cn][0], adds[rn][0] / adds[cn][0] if adds[cn][0] > 0 else float("nan"),
                adds[rn][1], adds[cn][1]))
EOF
