#!/bin/sh
# egress.sh -- what the egress proxy (SPEC §8, proxy/forward.c) costs. One airlock with a
# gateway listener and a forward listener in front of the C mock provider (plain HTTP), and
# these figures, each a median over BENCH_REPEAT rounds whose targets alternate (the
# starting one rotates), so load that comes and goes on a shared machine falls on both:
#
#   latency      one keep-alive connection sending the same 1 KB chat request at a fixed
#                rate (BENCH_RATE/s for BENCH_SECONDS): on the gateway listener, and
#                intercepted (CONNECT api.openai.com:443, TLS with the minted certificate,
#                the same request inside). p50/p99 of each, and the per-round delta
#                intercepted - gateway (target: p99 within +0.5 ms); and the CPU airlock's
#                event loop spends per request on each (/proc/PID/schedstat), which the
#                machine's load moves less than latency
#   handshakes   new connections per second, each a CONNECT + a full TLS handshake with
#                the cached certificate (two client processes, BENCH_SECONDS)
#   first mint   a host's first CONNECT + handshake minus its second (the certificate is
#                then cached): the mint, BENCH_MINTS hosts per round
#   throughput   BENCH_MB MiB sent (sendfile) to a sink, directly and through a tunnel,
#                BENCH_PAIRS pairs per round (order alternating); the ratio tunnel / direct
#                of each pair (target >= 0.8x), its median and range, and the CPU airlock
#                spends per GiB tunnelled (its event loop's schedstat: the load on the
#                machine moves it less than the ratio)
#   idle RSS     airlock's RSS before and with 1,000 idle tunnels open
#
# The clients are Python (stdlib ssl and http.client), the same for both sides of each
# comparison; their own cost is in every figure. Each round records the 1-minute load
# average: on a 2-core machine shared with other work the figures move with it.
#
# On a small VM the throughput ratio depends mostly on where the scheduler puts the three
# processes (sender, airlock, sink): a wake-up on another CPU is an IPI, which costs a VM
# far more than the copy. BENCH_PIN=1 fixes the placement: sender and sink share CPU 0 (as
# the scheduler places them for the direct transfer), airlock runs on the last CPU.
#
#   sh bench/egress.sh
# env: AIRLOCK_BUILD (dir with airlock and mock_provider; default ./build),
#      BENCH_SECONDS=5, BENCH_REPEAT=3, BENCH_RATE=200, BENCH_MB=256, BENCH_PAIRS=3,
#      BENCH_MINTS=20, BENCH_TUNNELS=1000, BENCH_PIN=0, TMPDIR (audit logs and the payload
#      file).
# Everything listens on 127.0.0.1 only.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${AIRLOCK_BUILD:-$ROOT/build}
SECS=${BENCH_SECONDS:-5}
REPEAT=${BENCH_REPEAT:-3}
RATE=${BENCH_RATE:-200}
MB=${BENCH_MB:-256}
PAIRS=${BENCH_PAIRS:-3}
PIN=${BENCH_PIN:-0}
MINTS=${BENCH_MINTS:-20}
TUNNELS=${BENCH_TUNNELS:-1000}
REAL_KEY=sk-bench-real-0123456789

[ -x "$BUILD/airlock" ] || { echo "bench: $BUILD/airlock not built (make first)" >&2; exit 1; }
[ -x "$BUILD/mock_provider" ] || { echo "bench: $BUILD/mock_provider not built (make first)" >&2; exit 1; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/airlock-egress-bench.XXXXXX")
PIDS=""
cleanup() {
    for p in $PIDS; do kill "$p" 2>/dev/null; done
    for p in $PIDS; do wait "$p" 2>/dev/null; done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

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

"$BUILD/mock_provider" --port 0 --openai-key "$REAL_KEY" >"$TMP/mock.out" 2>"$TMP/mock.err" &
PIDS="$PIDS $!"
i=0
until MOCK_PORT=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$TMP/mock.out") && [ -n "$MOCK_PORT" ]; do
    i=$((i + 1)); [ $i -gt 50 ] && { echo "bench: mock did not start" >&2; exit 1; }
    sleep 0.1
done

# the org CA, from airlock itself
"$BUILD/airlock" ca init --out "$TMP/org-ca" >/dev/null 2>"$TMP/ca.err" ||
    { echo "bench: airlock ca init failed: $(cat "$TMP/ca.err")" >&2; exit 1; }

GW=$(free_port); FW=$(free_port); SINK=$(free_port); IDLE=$(free_port)
HOSTS=""
n=1
while [ $n -le $((MINTS * REPEAT + MINTS)) ]; do
    HOSTS="$HOSTS    - {host: m$n.bench.example, provider: mock}
"
    n=$((n + 1))
done
cat >"$TMP/airlock.yaml" <<EOF
listen:
  - {address: "127.0.0.1:$GW"}
  - {address: "127.0.0.1:$FW", mode: forward}
providers:
  mock: {type: openai, base_url: "http://127.0.0.1:$MOCK_PORT/v1", api_key: "$REAL_KEY"}
models:
  - {name: gpt-4o-mini, provider: mock, price: {input_per_mtok: 0.15, output_per_mtok: 0.6}}
rules:
  - {name: no-secrets, if: {detected: [secrets]}, then: {action: block}}
  - {name: default, then: {action: allow}}
egress:
  ca: {cert: "$TMP/org-ca.crt", key: "$TMP/org-ca.key"}
  intercept:
    - {host: api.openai.com, provider: mock}
$HOSTS  tunnel: ["127.0.0.1:$SINK", "127.0.0.1:$IDLE"]
  default: deny
  max_tunnels: $((TUNNELS + 100))
  tunnel_idle_ms: 600000
audit: {dir: "$TMP/audit", sync: batch}
limits: {max_connections: $((TUNNELS + 1000))}
EOF
(cd "$TMP" && exec "$BUILD/airlock" serve -c "$TMP/airlock.yaml" 2>"$TMP/airlock.err") &
AL_PID=$!
PIDS="$PIDS $AL_PID"
wait_port "$GW" || { echo "bench: airlock did not start: $(tail -5 "$TMP/airlock.err")" >&2; exit 1; }
if [ "$PIN" = 1 ]; then
    command -v taskset >/dev/null || { echo "bench: BENCH_PIN=1 needs taskset" >&2; exit 1; }
fi

echo "egress bench: $BUILD/airlock (commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)), $(nproc) cores,"
echo "  ${SECS}s per run, $REPEAT rounds, $RATE req/s, $PAIRS x $MB MiB transfers per round and way,"
echo "  audit sync: batch, placement: $([ "$PIN" = 1 ] && echo "pinned (clients CPU 0, airlock CPU $(($(nproc) - 1)))" || echo "the scheduler's")"
python3 - "$GW" "$FW" "$SINK" "$IDLE" "$AL_PID" "$TMP" "$SECS" "$REPEAT" "$RATE" "$MB" "$MINTS" "$TUNNELS" "$PAIRS" "$PIN" <<'EOF'
import http.client, json, multiprocessing, os, socket, ssl, statistics, subprocess, sys, threading, time
GW, FW, SINK, IDLE, PID = (int(a) for a in sys.argv[1:6])
TMP = sys.argv[6]
SECS, REPEAT, RATE, MB, MINTS, TUNNELS, PAIRS, PIN = (float(sys.argv[7]),) + tuple(int(a) for a in sys.argv[8:15])
CA = os.path.join(TMP, "org-ca.crt")
filler = ("The quick brown fox jumps over the lazy dog while the committee reviews "
          "the quarterly roadmap and drafts a summary for the weekly meeting. ") * 20
b = {"model": "gpt-4o-mini", "max_tokens": 64,
     "messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": ""}]}
b["messages"][1]["content"] = filler[:1024 - len(json.dumps(b, separators=(",", ":")))]
BODY = json.dumps(b, separators=(",", ":")).encode()
HDRS = {"Content-Type": "application/json"}


def load1():
    return os.getloadavg()[0]


def rss():
    with open("/proc/%d/status" % PID) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def cpu_s():
    """CPU seconds airlock's event loop (its main thread) has run so far, from
    /proc/PID/schedstat (nanoseconds; /proc/PID/stat counts in 10 ms ticks)"""
    with open("/proc/%d/schedstat" % PID) as f:
        return int(f.read().split()[0]) / 1e9


def conn(kind):
    if kind == "gateway":
        return http.client.HTTPConnection("127.0.0.1", GW, timeout=10)
    c = http.client.HTTPSConnection("127.0.0.1", FW, timeout=10, context=ssl.create_default_context(cafile=CA))
    c.set_tunnel("api.openai.com", 443)
    return c


def latency_run(kind):
    c = conn(kind)
    for _ in range(50):  # warm: connection, TLS, pools
        c.request("POST", "/v1/chat/completions", BODY, HDRS)
        r = c.getresponse(); r.read()
        assert r.status == 200, (kind, r.status)
    lat = []
    cpu0 = cpu_s()
    gap = 1.0 / RATE
    nxt = time.perf_counter()
    end = nxt + SECS
    while nxt < end:
        now = time.perf_counter()
        if now < nxt:
            time.sleep(nxt - now)
        t0 = time.perf_counter()
        c.request("POST", "/v1/chat/completions", BODY, HDRS)
        r = c.getresponse(); r.read()
        lat.append(time.perf_counter() - t0)
        nxt += gap
    cpu = (cpu_s() - cpu0) / len(lat) * 1e6
    c.close()
    lat.sort()
    return lat[len(lat) // 2] * 1e3, lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e3, cpu


def connect_tls(host, ctx):
    s = socket.create_connection(("127.0.0.1", FW), timeout=10)
    s.sendall(b"CONNECT %s:443 HTTP/1.1\r\nHost: %s:443\r\n\r\n" % (host.encode(), host.encode()))
    got = b""
    while b"\r\n\r\n" not in got:
        d = s.recv(4096)
        if not d:
            raise RuntimeError("CONNECT closed")
        got += d
    assert got.startswith(b"HTTP/1.1 200"), got[:80]
    t = ctx.wrap_socket(s, server_hostname=host)
    t.close()


def handshaker(secs, q):
    ctx = ssl.create_default_context(cafile=CA)
    n = 0
    end = time.perf_counter() + secs
    while time.perf_counter() < end:
        connect_tls("api.openai.com", ctx)
        n += 1
    q.put(n)


def handshakes_run():
    q = multiprocessing.Queue()
    ps = [multiprocessing.Process(target=handshaker, args=(SECS, q)) for _ in range(2)]
    t0 = time.perf_counter()
    for p in ps:
        p.start()
    total = sum(q.get() for _ in ps)
    for p in ps:
        p.join()
    return total / (time.perf_counter() - t0)


def mint_run(first_host):
    ctx = ssl.create_default_context(cafile=CA)
    out = []
    for i in range(first_host, first_host + MINTS):
        h = "m%d.bench.example" % i
        t0 = time.perf_counter(); connect_tls(h, ctx); t1 = time.perf_counter()
        connect_tls(h, ctx); t2 = time.perf_counter()
        out.append(((t1 - t0) - (t2 - t1)) * 1e3)
    return statistics.median(out)


PAYLOAD = os.path.join(TMP, "payload.bin")
with open(PAYLOAD, "wb") as f:
    blk = os.urandom(1 << 20)
    for _ in range(MB):
        f.write(blk)
SIZE = MB << 20


def sink_server(port, ready, results):
    if PIN:
        os.sched_setaffinity(0, {0})
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(64)
    ready.set()
    buf = bytearray(1 << 20)
    mv = memoryview(buf)
    while True:
        c, _ = srv.accept()
        got = 0
        while got < SIZE:
            n = c.recv_into(mv)
            if n == 0:
                break
            got += n
        results.put((got, time.perf_counter()))
        c.close()


def transfer(kind, results):
    s = socket.create_connection(("127.0.0.1", SINK if kind == "direct" else FW), timeout=30)
    if kind == "tunnel":
        s.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: x\r\n\r\n" % SINK)
        got = b""
        while b"\r\n\r\n" not in got:
            got += s.recv(1)
        assert got.startswith(b"HTTP/1.1 200"), got
    s.setblocking(True)
    c0 = cpu_s()
    t0 = time.perf_counter()
    with open(PAYLOAD, "rb") as f:
        off = 0
        while off < SIZE:
            off += os.sendfile(s.fileno(), f.fileno(), off, SIZE - off)
    n, t1 = results.get(timeout=120)
    c1 = cpu_s()
    s.close()
    assert n == SIZE, (kind, n)
    if kind == "tunnel":
        tcpu.append((c1 - c0) / (SIZE / (1 << 30)))
    return SIZE / (t1 - t0) / (1 << 20)


def med(xs):
    return statistics.median(xs)


ALL_CPUS = os.sched_getaffinity(0)


def place(pinned):
    """BENCH_PIN=1: during the transfers only, this process (the sender) on CPU 0 and
    airlock (all its threads) on the last CPU; everything else runs where it likes"""
    if not PIN:
        return
    last = max(ALL_CPUS)
    os.sched_setaffinity(0, {0} if pinned else ALL_CPUS)
    subprocess.run(["taskset", "-a", "-p", "-c", str(last) if pinned else ",".join(map(str, sorted(ALL_CPUS))),
                    str(PID)], stdout=subprocess.DEVNULL, check=True)


tcpu = []
results = multiprocessing.Queue()
ready = multiprocessing.Event()
sp = multiprocessing.Process(target=sink_server, args=(SINK, ready, results), daemon=True)
sp.start()
ready.wait(10)

lat = {"gateway": [], "intercept": []}
delta50, delta99, cpud, hs, mint, tput, ratio, loads = [], [], [], [], [], [], [], []
connect_tls("m%d.bench.example" % (MINTS * REPEAT + 1), ssl.create_default_context(cafile=CA))  # CA loaded
for rnd in range(REPEAT):
    loads.append(load1())
    order = ["gateway", "intercept"] if rnd % 2 == 0 else ["intercept", "gateway"]
    got = {k: latency_run(k) for k in order}
    for k in got:
        lat[k].append(got[k])
    delta50.append(got["intercept"][0] - got["gateway"][0])
    delta99.append(got["intercept"][1] - got["gateway"][1])
    cpud.append(got["intercept"][2] - got["gateway"][2])
    hs.append(handshakes_run())
    mint.append(mint_run(1 + rnd * MINTS))
    rr = []
    place(True)
    for pair in range(PAIRS):
        order = ["direct", "tunnel"] if (rnd * PAIRS + pair) % 2 == 0 else ["tunnel", "direct"]
        t = {k: transfer(k, results) for k in order}
        tput.append(t)
        ratio.append(t["tunnel"] / t["direct"])
        rr.append(ratio[-1])
    place(False)
    print("round %d (load %.2f): gateway p50/p99 %.3f/%.3f ms %.0f us CPU, intercepted %.3f/%.3f ms %.0f us CPU; "
          "%.0f handshakes/s; mint %.2f ms; direct %.0f MiB/s, tunnel %.0f MiB/s, tunnel/direct %s" % (
              rnd + 1, loads[-1], got["gateway"][0], got["gateway"][1], got["gateway"][2], got["intercept"][0],
              got["intercept"][1], got["intercept"][2], hs[-1], mint[-1], med([x["direct"] for x in tput[-PAIRS:]]),
              med([x["tunnel"] for x in tput[-PAIRS:]]), " ".join("%.2f" % x for x in rr)), flush=True)

# 1,000 idle tunnels
acc = socket.socket()
acc.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
acc.bind(("127.0.0.1", IDLE))
acc.listen(4096)
held = []


def acceptor():
    while True:
        try:
            c, _ = acc.accept()
        except OSError:
            return
        held.append(c)


threading.Thread(target=acceptor, daemon=True).start()
time.sleep(0.5)
r0 = rss()
socks = []
for i in range(TUNNELS):
    s = socket.create_connection(("127.0.0.1", FW), timeout=10)
    s.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: x\r\n\r\n" % IDLE)
    got = b""
    while b"\r\n\r\n" not in got:
        got += s.recv(1)
    assert got.startswith(b"HTTP/1.1 200"), got
    socks.append(s)
time.sleep(1.0)
r1 = rss()
for s in socks:
    s.close()

print()
print("figure                                          median over %d rounds (%d transfer pairs)" % (REPEAT, len(ratio)))
print("gateway listener p50 / p99 (ms)                 %.3f / %.3f" % (med([x[0] for x in lat["gateway"]]),
                                                                       med([x[1] for x in lat["gateway"]])))
print("intercepted p50 / p99 (ms)                      %.3f / %.3f" % (med([x[0] for x in lat["intercept"]]),
                                                                       med([x[1] for x in lat["intercept"]])))
print("added by interception p50 / p99 (ms)            %+.3f / %+.3f   (target p99 <= +0.5)" % (med(delta50), med(delta99)))
print("airlock CPU per request, gateway / intercepted  %.1f / %.1f us   (added %+.1f us)" % (
    med([x[2] for x in lat["gateway"]]), med([x[2] for x in lat["intercept"]]), med(cpud)))
print("CONNECT + TLS handshakes/s (cached cert)        %.0f" % med(hs))
print("first mint of a host certificate (ms)           %.2f" % med(mint))
print("direct / tunnel throughput (MiB/s)              %.0f / %.0f" % (med([t["direct"] for t in tput]),
                                                                       med([t["tunnel"] for t in tput])))
print("tunnel / direct, %2d pairs                       %.2fx   (target >= 0.8x; range %.2f-%.2f)" % (
    len(ratio), med(ratio), min(ratio), max(ratio)))
print("airlock CPU per GiB tunnelled (ms)              %.0f" % (med(tcpu) * 1e3))
print("RSS idle / with %d idle tunnels (MiB)         %.1f / %.1f   (%.1f KiB per tunnel)" % (
    TUNNELS, r0 / 1048576, r1 / 1048576, (r1 - r0) / TUNNELS / 1024))
print("1-minute load average during the rounds         %s" % " ".join("%.2f" % x for x in loads))
EOF
