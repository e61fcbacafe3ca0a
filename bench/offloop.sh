#!/bin/sh
# offloop.sh -- how long a GET /healthz waits while the gateway decides a big body.
#
#   sh bench/offloop.sh            (env: BUILD=build dir, default build; AIRLOCK=binary to
#                                   time, default $BUILD/airlock; RUNS=7)
#
# One gateway (AIRLOCK) in front of the mock provider, with a rule that redacts e-mails.
# Each run sends one ~4 MiB chat body holding 100,000 e-mails on one connection and, from
# the moment its last byte is written until its answer is back, GET /healthz one after
# another on a second connection. It prints, per run, the slowest healthz of the run and
# the big request's own time, then the medians. With the body decided on the event loop the
# slowest healthz waits about as long as the decision; decided on the decider thread
# (proxy/decider.c) it waits for the loop's other work only. Compare binaries by naming
# them in AIRLOCK (e.g. one built from the commit before). Not part of `make test`.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 2
BUILD=${BUILD:-build}
AIRLOCK=${AIRLOCK:-$BUILD/airlock}
RUNS=${RUNS:-7}
[ -x "$AIRLOCK" ] && [ -x "$BUILD/mock_provider" ] || {
    echo "offloop.sh: build $AIRLOCK and $BUILD/mock_provider first"; exit 1; }
AIRLOCK=$(cd "$(dirname "$AIRLOCK")" && pwd)/$(basename "$AIRLOCK")
exec python3 - "$AIRLOCK" "$BUILD/mock_provider" "$RUNS" <<'EOF'
import json, os, socket, statistics, subprocess, sys, tempfile, threading, time

airlock, mock, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
tmp = tempfile.mkdtemp(prefix="offloop-bench-")
m = subprocess.Popen([mock, "--port", "0", "--openai-key", "sk-real"], stdout=subprocess.PIPE,
                     stderr=subprocess.DEVNULL, text=True)
g = None


def stop():
    for p in (g, m):
        if p and p.poll() is None:
            p.terminate()
            p.wait()


import atexit  # noqa: E402
atexit.register(stop)
mport = int(m.stdout.readline().split(":")[-1].split()[0])
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
cfg = os.path.join(tmp, "airlock.yaml")
with open(cfg, "w") as f:
    f.write("""listen: [{address: "127.0.0.1:%d"}]
keys: [{name: alice, key: "sk-test-alice-0123456789"}]
providers: {oai: {type: openai, base_url: "http://127.0.0.1:%d/v1", api_key: "sk-real"}}
models: [{name: gpt-4o-mini, provider: oai}]
rules:
  - {name: mask-emails, if: {detected: [email]}, then: {action: redact, detectors: [email]}}
  - {name: default, then: {action: allow}}
limits: {max_body_bytes: 8388608, upstream_timeout_ms: 60000}
""" % (port, mport))
g = subprocess.Popen([airlock, "serve", "-c", cfg], cwd=tmp, stdout=subprocess.DEVNULL,
                     stderr=open(os.path.join(tmp, "stderr.log"), "w"))
for _ in range(200):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        break
    except OSError:
        time.sleep(0.05)
text = "".join("write to user%06d@example.com about the notes here. " % i for i in range(100000))
body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}).encode()
req = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-test-alice-0123456789\r\n"
       b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)) + body
HZ = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"


def answer(c):
    """reads one response (content-length or chunked: enough to see its end)"""
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += c.recv(65536)
    head, _, rest = buf.partition(b"\r\n\r\n")
    n = None
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            n = int(line.split(b":")[1])
    while (n is not None and len(rest) < n) or (n is None and not rest.endswith(b"0\r\n\r\n")):
        rest += c.recv(65536)
    return head.split(b" ")[1]


worst, bigs = [], []
for run in range(runs + 1):
    hz = socket.create_connection(("127.0.0.1", port))
    big = socket.create_connection(("127.0.0.1", port))
    done = threading.Event()
    status = []

    def waiter():
        status.append(answer(big))
        done.set()
    big.sendall(req)
    t0 = time.perf_counter()
    th = threading.Thread(target=waiter)
    th.start()
    lat = []
    while not done.is_set():
        a = time.perf_counter()
        hz.sendall(HZ)
        answer(hz)
        lat.append(time.perf_counter() - a)
    th.join()
    tbig = time.perf_counter() - t0
    hz.close(); big.close()
    if run == 0:
        continue  # warm-up
    worst.append(max(lat) * 1000)
    bigs.append(tbig * 1000)
    print("run %d: big request %s in %.1f ms; %d healthz meanwhile, slowest %.2f ms, median %.3f ms"
          % (run, status[0].decode(), tbig * 1000, len(lat), max(lat) * 1000,
             statistics.median(lat) * 1000), flush=True)
print("%s: median over %d runs: slowest healthz during a big decide %.2f ms; big request %.1f ms"
      % (airlock, runs, statistics.median(worst), statistics.median(bigs)))
EOF
