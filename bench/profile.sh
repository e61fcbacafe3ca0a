#!/bin/sh
# profile.sh -- where a request's microseconds go. airlock (audit off by default) in front
# of nginx answering `return 200` with a canned chat completion, under wrk load (1 KB
# chat request, -c32 -t2, keep-alive, 127.0.0.1 only). Three phases, each its own wrk run:
#   1. plain: requests/s and airlock's CPU time per request (all its threads, from
#      /proc/PID/stat, requests from its /metrics), no profiler attached
#   2. perf stat on syscall tracepoints: system calls per request, by call
#   3. perf record -F PROFILE_FREQ --call-graph dwarf on airlock's process: each sample
#      is put in the stage of the innermost airlock function on its stack (parse, policy,
#      outbound build, upstream send, upstream response, relay, finish, audit; a stack
#      with no airlock function is libevent's own work: deferred socket writes, socket
#      reads, epoll); stage share x CPU per request (phase 1) = microseconds per request.
#      Then the top symbols by self time and some cross-cutting totals.
#
#   sh bench/profile.sh
#   PROFILE_AUDIT=batch PROFILE_OUT=/tmp/prof sh bench/profile.sh
# env: AIRLOCK_BUILD (default ./build), PROFILE_AUDIT=off|batch|none, PROFILE_SECONDS=5,
#      PROFILE_FREQ=997, BENCH_CONNS=32, PROFILE_OUT (keep perf.data and the perf script
#      text there). Needs perf (linux-perf, installed with apt-get when missing) with
#      permission to profile the process (root, or kernel.perf_event_paranoid <= 1), wrk,
#      nginx, python3, curl. A VM without hardware counters is fine: perf falls back to
#      cpu-clock. Without perf, or without the permission, it says "skipped" and exits 0.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${AIRLOCK_BUILD:-$ROOT/build}
AUDIT=${PROFILE_AUDIT:-off}
SECS=${PROFILE_SECONDS:-5}
FREQ=${PROFILE_FREQ:-997}
CONNS=${BENCH_CONNS:-32}
OUT=${PROFILE_OUT:-}
CLIENT_KEY=sk-bench-client-0123456789

. "$ROOT/bench/lib.sh"
bench_need_wrk || exit 1
bench_need_nginx || exit 1
if ! command -v perf >/dev/null 2>&1; then
    (DEBIAN_FRONTEND=noninteractive apt-get install -y linux-perf >/dev/null 2>&1 ||
        sudo -n apt-get install -y linux-perf >/dev/null 2>&1) || true
fi
command -v perf >/dev/null 2>&1 || { echo "skipped: perf is not installed (apt-get install linux-perf)"; exit 0; }
[ -x "$BUILD/airlock" ] || { echo "bench: $BUILD/airlock not built (make first)" >&2; exit 1; }
case $AUDIT in
    off) AUDIT_YAML="" ;;
    batch | none | always) AUDIT_YAML="audit: {dir: ./audit, sync: $AUDIT}" ;;
    *) echo "bench: PROFILE_AUDIT must be off, batch, none or always" >&2; exit 2 ;;
esac

TMP=$(mktemp -d "${TMPDIR:-/tmp}/airlock-profile.XXXXXX")
PIDS=""
cleanup() {
    for p in $PIDS; do kill "$p" 2>/dev/null; done
    for p in $PIDS; do wait "$p" 2>/dev/null; done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
[ -n "$OUT" ] && mkdir -p "$OUT"
DATA=${OUT:-$TMP}

wait_port() {
    i=0
    until curl -s -o /dev/null "http://127.0.0.1:$1/" 2>/dev/null; do
        i=$((i + 1)); [ $i -gt 150 ] && return 1
        sleep 0.1
    done
}

# the same request and canned answer as bench/proxy.sh
python3 - "$TMP/body.json" "$TMP/answer.json" <<'EOF'
import json, sys
filler = ("The quick brown fox jumps over the lazy dog while the committee reviews "
          "the quarterly roadmap and drafts a summary for the weekly meeting. ") * 20
b = {"model": "gpt-4o-mini", "max_tokens": 64,
     "messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": ""}]}
base = len(json.dumps(b, separators=(",", ":")))
b["messages"][1]["content"] = filler[:1024 - base]
open(sys.argv[1], "w").write(json.dumps(b, separators=(",", ":")))
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
open(sys.argv[2], "w").write(json.dumps(a, separators=(",", ":")))
EOF
cat >"$TMP/req.lua" <<EOF
local f = io.open("$TMP/body.json", "rb")
wrk.method = "POST"
wrk.path = "/v1/chat/completions"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $CLIENT_KEY"
EOF

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
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    client_body_temp_path $TMP/nginx/tmp/body;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location = /v1/chat/completions { default_type application/json; return 200 '$(cat "$TMP/answer.json")'; }
        location / { return 404; }
    }
}
EOF
"$NGINX" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" 2>"$TMP/nginx/stderr" &
PIDS="$PIDS $!"
wait_port "$NGINX_PORT" || { echo "bench: nginx did not start: $(cat "$TMP/nginx/stderr")" >&2; exit 1; }

AL_PORT=$(free_port)
mkdir -p "$TMP/al"
cat >"$TMP/al/airlock.yaml" <<EOF
listen: [{address: "127.0.0.1:$AL_PORT"}]
keys: [{name: bench, team: bench, key: "$CLIENT_KEY"}]
providers:
  oai: {type: openai, base_url: "http://127.0.0.1:$NGINX_PORT/v1", api_key: "sk-bench-real-0123456789"}
models:
  - {name: gpt-4o-mini, provider: oai, price: {input_per_mtok: 0.15, output_per_mtok: 0.6}}
rules:
  - {name: no-secrets, if: {detected: [secrets]}, then: {action: block}}
  - {name: default, then: {action: allow}}
$AUDIT_YAML
EOF
(cd "$TMP/al" && exec "$BUILD/airlock" serve -c "$TMP/al/airlock.yaml" 2>"$TMP/al/stderr.log") &
AL_PID=$!
PIDS="$PIDS $AL_PID"
wait_port "$AL_PORT" || { echo "bench: airlock did not start: $(tail -5 "$TMP/al/stderr.log")" >&2; exit 1; }
code=$(curl -s -o "$TMP/sanity" -w '%{http_code}' -H "Authorization: Bearer $CLIENT_KEY" \
    --data-binary @"$TMP/body.json" "http://127.0.0.1:$AL_PORT/v1/chat/completions")
[ "$code" = 200 ] || { echo "bench: airlock answered $code: $(head -c 300 "$TMP/sanity")" >&2; exit 1; }

served_cmd() { # a command that prints how many requests airlock has answered so far
    echo "curl -s http://127.0.0.1:$AL_PORT/metrics | awk '/^airlock_requests_total/ {n += \$2} END {print n + 0}'"
}
served() { sh -c "$(served_cmd)"; }
ticks() { awk '{print $14 + $15}' "/proc/$AL_PID/stat"; }
load_wrk() { # seconds -> wrk in the background (WRK_PID), output in $TMP/wrk.$1
    wrk -t2 -c"$CONNS" -d"$1s" -s "$TMP/req.lua" "http://127.0.0.1:$AL_PORT" >"$TMP/wrk.$1.$2" 2>&1 &
    WRK_PID=$!
    sleep 1 # warm: every connection open, the upstream pool full
}

echo "airlock request-path profile, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(uptime | sed 's/^ *//')"
echo "  airlock $BUILD/airlock (commit $(git -C "$BUILD" rev-parse --short HEAD 2>/dev/null || echo '?')), audit $AUDIT;"
echo "  upstream $("$NGINX" -v 2>&1 | sed 's/.*: //') 'return 200', 1 worker; wrk -t2 -c$CONNS, 1 KB chat request"

# ---- 1. plain
load_wrk $((SECS + 2)) plain
n0=$(served); t0=$(ticks); w0=$(date +%s.%N)
sleep "$SECS"
n1=$(served); t1=$(ticks); w1=$(date +%s.%N)
wait "$WRK_PID"
HZ=$(getconf CLK_TCK)
CPU_US=$(awk -v n="$((n1 - n0))" -v t="$((t1 - t0))" -v hz="$HZ" 'BEGIN {printf "%.1f", (n > 0) ? t / hz * 1e6 / n : 0}')
RPS=$(awk -v n="$((n1 - n0))" -v a="$w0" -v b="$w1" 'BEGIN {printf "%.0f", n / (b - a)}')
UTIL=$(awk -v t="$((t1 - t0))" -v hz="$HZ" -v a="$w0" -v b="$w1" 'BEGIN {printf "%.0f", 100 * t / hz / (b - a)}')
echo
echo "1. no profiler: $RPS req/s; airlock CPU $CPU_US us per request (all threads; $UTIL% of one core)"

# ---- 2. system calls per request
SC="read readv recvfrom recvmsg write writev sendto sendmsg epoll_wait epoll_ctl ioctl getrandom accept4 close connect setsockopt getsockopt futex pwritev pwrite64 fdatasync openat mmap munmap brk madvise clock_gettime"
EV=$(for s in $SC; do printf 'syscalls:sys_enter_%s,' "$s"; done | sed 's/,$//')
load_wrk $((SECS + 2)) stat
# the requests are counted inside perf's run (the counters are on by then)
if perf stat -x, -e "$EV" -p "$AL_PID" -o "$TMP/stat.csv" -- \
    sh -c "$(served_cmd) >$TMP/n0; sleep $SECS; $(served_cmd) >$TMP/n1" 2>"$TMP/stat.err"; then
    n=$(( $(cat "$TMP/n1") - $(cat "$TMP/n0") ))
    echo
    echo "2. system calls per request (perf stat -e syscalls:sys_enter_<call> -p PID, $n requests):"
    awk -F, -v n="$n" '$3 ~ /syscalls:sys_enter_/ && $1 + 0 > 0 {
        sub("syscalls:sys_enter_", "", $3); printf "%s %.2f\n", $3, $1 / n; tot += $1 / n }
        END {printf "TOTAL %.2f\n", tot}' "$TMP/stat.csv" | sort -k2 -rn |
        awk '{printf "   %-12s %6s\n", $1, $2}'
else
    echo "2. perf stat on syscall tracepoints not permitted here: $(head -3 "$TMP/stat.err")"
fi
wait "$WRK_PID"

# ---- 3. sampled call stacks
load_wrk $((SECS + 2)) record
if ! perf record -F "$FREQ" --call-graph dwarf,16384 -p "$AL_PID" -o "$DATA/perf.data" -- \
    sh -c "$(served_cmd) >$TMP/n0; sleep $SECS; $(served_cmd) >$TMP/n1" >"$TMP/rec.out" 2>&1; then
    wait "$WRK_PID"
    echo "3. skipped: perf record is not permitted here (perf_event_paranoid=$(cat /proc/sys/kernel/perf_event_paranoid)):"
    head -5 "$TMP/rec.out"
    exit 0
fi
n0=$(cat "$TMP/n0"); n1=$(cat "$TMP/n1")
wait "$WRK_PID"
REC_RPS=$(awk -v n="$((n1 - n0))" -v s="$SECS" 'BEGIN {printf "%.0f", n / s}')
perf script -i "$DATA/perf.data" -F tid,ip,sym,dso --inline >"$DATA/perf.script" 2>/dev/null
nm -l --defined-only "$BUILD/airlock" >"$TMP/syms" 2>/dev/null
echo
echo "3. perf record -F $FREQ --call-graph dwarf -p PID -- sleep $SECS (under it: $REC_RPS req/s; the"
echo "   shares are of airlock's own CPU, turned into us with the $CPU_US us/request of phase 1)"
python3 - "$DATA/perf.script" "$AL_PID" "$CPU_US" "$TMP/syms" <<'EOF'
import re, sys, collections
path, pid, cpu_us, symfile = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
# airlock's functions -> their source file (nm -l), for what the names below do not cover
src = {}
for l in open(symfile, errors="replace"):
    f = l.split()
    if len(f) >= 4 and f[1] in "tTwW":
        src[f[2]] = f[3].rsplit(":", 1)[0]
def area(sym):
    m = re.search(r"/(policy|audit|proxy|config|common|engine)/[^/]+$", src.get(sym.split(".")[0], ""))
    return m.group(1) if m else ""
# innermost airlock function on the stack -> stage (names from proxy/, policy/, audit/);
# helpers that any stage calls (common/, config/ lookups, reference counts, PLT stubs) are
# passed over to their caller
STAGE = [
    ("policy scan (policy_decide)", lambda f: f.startswith("policy_")),
    ("audit (metadata, record write)", lambda f: f.startswith("audit_") or f in (
        "request_meta", "response_meta", "response_durable", "response_durable_loop", "meta_common")
        or f.startswith("jbuf_")),
    ("outbound body build", lambda f: f in ("proxy_outbound_build", "find_top_key", "splice",
                                            "skip_value", "skip_string", "skip_ws", "json_quote")),
    ("upstream request: pick conn, build head, queue", lambda f: f in (
        "proxy_upstream_send", "up_send", "up_new", "dispatch", "pool_remove")),
    ("auth (key lookup)", lambda f: f in ("authenticate", "presented_key", "config_key_find_sha256")),
    ("request JSON parse + validation", lambda f: f in (
        "handle_api", "proxy_decide", "shapes", "parts", "utf8_valid", "validate_shapes",
        "over_budget", "refuse") or f.startswith("validate_parts")),
    ("response to client: answer, usage, reply", lambda f: f.startswith("proxy_answer_") or f in (
        "proxy_conn_reply", "write_head", "usage_openai", "usage_anthropic", "restore_field",
        "proxy_cost", "status_text")),
    ("upstream response: parse, pool release", lambda f: f.startswith("up_") or f in (
        "idle_read_cb", "idle_event_cb")),
    ("request finish: metrics, free", lambda f: f in (
        "proxy_req_finish", "req_complete", "proxy_metrics_request", "proxy_metrics_upstream_latency",
        "proxy_conn_request_done", "proxy_req_advance", "proxy_req_answer_status", "conn_reset_request",
        "proxy_req_elapsed", "spend_add_name", "proxy_conn_flush_held")
        or f.startswith("proxy_req_unref") or f.startswith("proxy_spend")),
    ("inbound HTTP: parse, route, new request", lambda f: f in (
        "conn_read_cb", "conn_process", "conn_dispatch", "proxy_req_handle", "proxy_req_new",
        "on_message_begin", "on_url", "on_header_field", "on_header_value", "on_headers_complete",
        "on_body", "on_message_complete", "str_append", "iso_time", "proxy_conn_header")),
    ("client connection: write/event callbacks", lambda f: f in (
        "conn_write_cb", "conn_event_cb", "accept_cb", "conn_free", "header_timeout_cb")),
]
samples = []  # (tid, [(sym, dso)] leaf first)
cur = None
for line in open(path, errors="replace"):
    if not line.strip():
        continue
    if not line.startswith("\t"):  # a sample: "  TID", then its frames, tab-indented
        cur = (line.split()[0], []); samples.append(cur); continue
    m = re.match(r"\s*([0-9a-f]+) (.*) \((.*)\)\s*$", line)
    if m and cur is not None:
        cur[1].append([m.group(1), m.group(2).replace(" (inlined)", "").split("+")[0], m.group(3)])
for _, fr in samples:  # an inlined frame belongs to the object of the frame that holds it
    for i in range(len(fr) - 2, -1, -1):
        if fr[i][2] == "inlined" and fr[i + 1][0] == fr[i][0]:
            fr[i][2] = fr[i + 1][2]
    fr[:] = [(sym, dso) for _, sym, dso in fr]
N = len(samples)
if not N:
    print("   no samples"); sys.exit()
stage = collections.Counter(); kern = collections.Counter(); calls = collections.Counter()
def syscall_of(fr):  # the system call a sample is in: the libc wrapper above entry_SYSCALL
    for i, (sym, dso) in enumerate(fr):
        if sym.startswith("entry_SYSCALL"):
            for w, _ in fr[i + 1:]:
                if "kernel" not in _:
                    w = re.sub(r"^(__GI_+|__libc_|__)", "", w)
                    return w.split("@")[0]
            return "?"
    return None
for tid, fr in samples:
    is_k = bool(fr) and "kernel" in fr[0][1]
    st = None
    if tid != pid:
        st = "other threads (audit syncer, ...)"
    else:
        first = None
        for sym, dso in fr:
            if not dso.endswith("/airlock") or sym in ("proxy_run", "cmd_serve", "main", "[unknown]"):
                continue
            first = first or sym
            for name, test in STAGE:
                if test(sym):
                    st = name; break
            if st is None and area(sym) == "policy":
                st = "policy scan (policy_decide)"
            if st is None and area(sym) == "audit":
                st = "audit (metadata, record write)"
            if st:
                break
        if st is None and first:
            st = "other airlock: " + first
    call = syscall_of(fr)
    if st is None:  # libevent's own work, by the system call it was in
        st = {"writev": "libevent: deferred socket writes (client + upstream)",
              "readv": "libevent: socket reads + FIONREAD (client + upstream)",
              "ioctl": "libevent: socket reads + FIONREAD (client + upstream)",
              "epoll_wait": "libevent: epoll_wait", "epoll_ctl": "libevent: epoll_ctl"}.get(
                  call, "libevent: user space (loop, evbuffers, timers)")
    calls[call or "(user space)"] += 1
    stage[st] += 1
    if is_k:
        kern[st] += 1
print("   %-52s %6s %8s %8s" % ("stage (innermost airlock function on the stack)", "share", "us/req", "kernel"))
for st, c in stage.most_common():
    print("   %-52s %5.1f%% %8.2f %7.0f%%" % (st[:52], 100.0 * c / N, cpu_us * c / N, 100.0 * kern[st] / c))
print("   %-52s %5.1f%% %8.2f   (%d samples)" % ("total", 100.0, cpu_us, N))
print()
def share(test):
    return 100.0 * sum(1 for _, fr in samples if test(fr)) / N
leaf = lambda fr, names: bool(fr) and any(fr[0][0].startswith(n) for n in names)
print("   by system call (wrapper and kernel time, all stages):", ", ".join(
    "%s %.1f%% (%.2f us)" % (k, 100.0 * v / N, cpu_us * v / N) for k, v in calls.most_common()))
print("   across stages: epoll_ctl %.1f%%; malloc/free (leaf) %.1f%%; printf family %.1f%%; cJSON %.1f%%; http_parser %.1f%%"
      % (share(lambda fr: any("epoll_ctl" in s for s, _ in fr)),
         share(lambda fr: leaf(fr, ("malloc", "_int_malloc", "_int_free", "free", "cfree", "calloc",
                                     "realloc", "_int_realloc", "malloc_consolidate", "unlink_chunk",
                                     "tcache", "__GI___libc_free", "__libc_calloc", "__GI___libc_malloc"))),
         share(lambda fr: any("vfprintf" in s or "printf_positional" in s for s, _ in fr)),
         share(lambda fr: any(s.startswith("cJSON") for s, _ in fr)),
         share(lambda fr: any(s.startswith("http_parser") for s, _ in fr))))
self_ = collections.Counter((fr[0][0], fr[0][1].split("/")[-1]) for _, fr in samples if fr)
print()
print("   top symbols by self time:")
for (s, d), c in self_.most_common(25):
    print("   %5.1f%%  %-40s %s" % (100.0 * c / N, s[:40], d))
EOF
echo
echo "$(uptime | sed 's/^ *//')"
[ -n "$OUT" ] && echo "kept: $OUT/perf.data, $OUT/perf.script (perf report -i $OUT/perf.data --children)"
exit 0
