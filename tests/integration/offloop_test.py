"""offloop_test.py -- big bodies are decided off the event loop (proxy/decider.c).

A body of 16 KiB or more is decided on the decider thread. The gateway runs with the test
hook AIRLOCK_DECIDER_FAULT_HOLD=FILE: each such decision waits until FILE exists (it logs
"holding a decision" as it starts waiting), so the suite can see, without a single timing,
what the loop does while a body is being decided:
- a GET /healthz on another connection is answered while a ~4 MiB body of ~100,000 e-mails
  under a redact rule is decided, and the big request then gets its answer, with the
  e-mails redacted in what reached the provider (order of answers: healthz, then big);
- a client that sends a big body and leaves at once: the gateway keeps serving, and the
  request is recorded once (one request record, one 499 response record);
- big + small pipelined on one connection are answered in order;
- a reload (SIGHUP) during a decision: the decision uses the snapshot it started on, the
  next request the new one;
- SIGTERM during a decision: the drain waits for it and the answer still comes; a second
  SIGTERM during a decision exits at once, cleanly (no crash, no sanitizer report).
Had the decision run on the loop, the hold would stop the loop: healthz would never be
answered while it holds, and every check below that asks for it fails."""
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from itest import (AIRLOCK, ALICE, Airlock, Mock, Suite, base_config, free_port,  # noqa: E402
                   gateway_missing, request)

RULES = """
  - {name: no-secrets, if: {detected: [secrets]}, then: {action: block}}
  - {name: mask-emails, if: {detected: [email]}, then: {action: redact, detectors: [email]}}
  - {name: default, then: {action: allow}}"""
RULES_BLOCK = """
  - {name: no-emails, if: {detected: [email]}, then: {action: block}}
  - {name: default, then: {action: allow}}"""
LIMITS = ("{max_body_bytes: 8388608, header_timeout_ms: 5000, body_timeout_ms: 60000, "
          "upstream_timeout_ms: 60000, idle_timeout_ms: 120000}")
N_MAILS = 100000


def big_body(tag):
    """~4 MiB: 100,000 e-mails in one user message, `tag` to tell the bodies apart"""
    text = tag + " " + "".join("write to user%06d@example.com about the notes here. " % i
                               for i in range(N_MAILS))
    return json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}).encode()


def post_bytes(path, body, extra=b""):
    return (b"POST " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
            ALICE.encode() + b"\r\nContent-Type: application/json\r\nContent-Length: " +
            str(len(body)).encode() + b"\r\n\r\n" + body + extra)


def read_response(f):
    """one HTTP/1.1 response from a socket file: (status, headers, body)"""
    line = f.readline()
    if not line:
        return None
    status = int(line.split()[1])
    headers = {}
    while True:
        h = f.readline()
        if h in (b"\r\n", b"\n", b""):
            break
        k, _, v = h.decode("latin-1").partition(":")
        headers[k.strip().lower()] = v.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            n = int(f.readline().split(b";")[0], 16)
            if n == 0:
                f.readline()
                break
            body += f.read(n)
            f.readline()
    else:
        body = f.read(int(headers.get("content-length", "0")))
    return status, headers, body


class Gateway:
    def __init__(self, s, mock, name):
        self.s = s
        self.port = free_port()
        self.release = os.path.join(s.tmp, name + "-release")
        self.cfg_text = base_config(self.port, mock.port, rules=RULES, limits=LIMITS)
        self.gw = Airlock(s, self.cfg_text, self.port, name=name,
                          env={"AIRLOCK_DECIDER_FAULT_HOLD": self.release})

    def held(self):
        return self.gw.stderr().count("holding a decision")

    def wait_log(self, what, count, timeout=60):
        """waits until the gateway's log says `what` `count` times (a bound, never asserted)"""
        end = time.time() + timeout
        while time.time() < end:
            if self.gw.stderr().count(what) >= count:
                return True
            if self.gw.proc.poll() is not None:
                return False
            time.sleep(0.02)
        return False

    def hold(self):
        if os.path.exists(self.release):
            os.unlink(self.release)

    def let_go(self):
        """lets the held decision go, and waits until the decider has seen it: the next
        hold() could otherwise take the file away before it looked"""
        n = self.gw.stderr().count("released a decision")
        open(self.release, "w").close()
        self.wait_log("released a decision", n + 1)


def send_big(port, body, order, name, results):
    """one big request on its own connection; appends `name` to `order` when answered"""
    try:
        c = socket.create_connection(("127.0.0.1", port), timeout=120)
        c.sendall(post_bytes("/v1/chat/completions", body))
        results[name] = read_response(c.makefile("rb"))
        c.close()
    except OSError as e:
        results[name] = e
    order.append(name)


def main():
    s = Suite("offloop")
    why = gateway_missing()
    if why:
        s.bail(why)
    mock = Mock(s)
    g = Gateway(s, mock, "offloop")
    port = g.port
    body = big_body("first")

    # 1. healthz on another connection is answered while the big body is decided
    g.hold()
    n = g.held()
    order, results = [], {}
    t = threading.Thread(target=send_big, args=(port, body, order, "big", results))
    t.start()
    s.check("a 4 MiB body is handed to the decider (it holds)", g.wait_log("holding a decision", n + 1))
    r = request(port, "GET", "/healthz", timeout=60)
    order.append("healthz")
    s.check("healthz on another connection answered while the big body is being decided",
            r.status == 200 and r.body == b"ok\n", r)
    before = mock.stats()["requests"]
    g.let_go()
    t.join(300)
    s.check("the answers come in order: healthz, then the big request", order == ["healthz", "big"], order)
    res = results.get("big")
    s.check("the big request is answered 200", isinstance(res, tuple) and res[0] == 200, res and str(res)[:300])
    up = mock.last_body()
    s.check("it reached the provider once", mock.stats()["requests"] == before + 1)
    s.check("the provider saw the e-mails redacted (placeholders, not one address)",
            b"user000000@example.com" not in up and b"user099999@example.com" not in up
            and up.count(b"[EMAIL") >= N_MAILS // 2 and b"first write to" in up, up[:200])
    s.check("the answer says what was redacted (x-airlock-modified)",
            isinstance(res, tuple) and "redacted=email" in res[1].get("x-airlock-modified", ""),
            isinstance(res, tuple) and res[1])

    # 2. a client that sends a big body and leaves at once
    g.hold()
    n = g.held()
    gone_body = big_body("leaving")
    c = socket.create_connection(("127.0.0.1", port), timeout=60)
    c.sendall(post_bytes("/v1/chat/completions", gone_body))
    held = g.wait_log("holding a decision", n + 1)
    c.close()
    s.check("a big body whose client leaves is held in the decider", held)
    before = mock.stats()["requests"]
    r = request(port, "GET", "/healthz", timeout=60)
    s.check("the gateway keeps serving after the client left mid-decision", r.status == 200, r)
    g.let_go()
    r = request(port, "POST", "/v1/chat/completions",
                {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "after"}]})
    s.check("and answers an API request after the left one was decided", r.status == 200, r)
    s.check("nothing of the left request reached the provider", mock.stats()["requests"] == before + 1)

    # 3. big and small pipelined on one connection: answered in order
    g.hold()
    n = g.held()
    c = socket.create_connection(("127.0.0.1", port), timeout=120)
    c.sendall(post_bytes("/v1/chat/completions", big_body("piped")) +
              b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    s.check("pipelined: the big body is held in the decider", g.wait_log("holding a decision", n + 1))
    c.setblocking(False)
    try:
        early = c.recv(1)
    except BlockingIOError:
        early = None
    s.check("pipelined: nothing is answered on that connection while the big one is decided",
            early is None, early)
    r = request(port, "GET", "/healthz", timeout=60)
    s.check("pipelined: another connection is answered meanwhile", r.status == 200, r)
    g.let_go()
    c.setblocking(True)
    f = c.makefile("rb")
    first, second = read_response(f), read_response(f)
    c.close()
    s.check("pipelined: the big request is answered first (the chat completion)",
            first and first[0] == 200 and b"chat.completion" in first[2], first and str(first)[:300])
    s.check("pipelined: then the small one (healthz)", second and second[0] == 200 and second[2] == b"ok\n",
            second)

    # 4. SIGHUP during a decision: it decides under the snapshot it started on
    g.hold()
    n = g.held()
    order, results = [], {}
    t = threading.Thread(target=send_big, args=(port, big_body("reload"), order, "big", results))
    t.start()
    s.check("reload: the big body is held in the decider", g.wait_log("holding a decision", n + 1))
    with open(g.gw.config, "w") as cf:
        cf.write(g.cfg_text.replace(RULES, RULES_BLOCK))
    nr = g.gw.stderr().count("reloaded ")
    g.gw.signal(signal.SIGHUP)
    s.check("reload: SIGHUP is applied while the decision is in flight", g.wait_log("reloaded ", nr + 1))
    r = request(port, "POST", "/v1/chat/completions",
                {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "mail a@example.com"}]})
    s.check("reload: a new request is decided under the new rules (e-mails blocked: 403)", r.status == 403, r)
    g.let_go()
    t.join(300)
    res = results.get("big")
    up = mock.last_body()
    s.check("reload: the request in flight is decided under the rules it started with (redacted, 200)",
            isinstance(res, tuple) and res[0] == 200 and b"reload write to" in up
            and b"user000001@example.com" not in up, res and str(res)[:300])

    # 5. SIGTERM during a decision: the drain waits for it; the answer comes
    g.hold()
    n = g.held()
    order, results = [], {}
    t = threading.Thread(target=send_big, args=(port, big_body("draining"), order, "big", results))
    t.start()
    s.check("drain: the big body is held in the decider", g.wait_log("holding a decision", n + 1))
    g.gw.signal(signal.SIGTERM)
    s.check("drain: SIGTERM starts the drain", g.wait_log("draining", 1))
    s.check("drain: the gateway waits for the decision in flight", g.gw.proc.poll() is None)
    g.let_go()
    t.join(300)
    res = results.get("big")
    s.check("drain: the request decided during the drain is answered (403 under the reloaded rules)",
            isinstance(res, tuple) and res[0] == 403, res and str(res)[:300])
    try:
        rc = g.gw.proc.wait(60)
    except subprocess.TimeoutExpired:
        rc = None
    s.check("drain: the gateway then exits 0", rc == 0, rc)
    err = g.gw.stderr()
    s.check("no sanitizer report", "Sanitizer" not in err and "runtime error" not in err, err[-1500:])

    # the left request (2) is recorded once: one request record, one 499 response record
    out = subprocess.run([AIRLOCK, "audit", "show", os.path.join(g.gw.dir, "audit")],
                         capture_output=True, timeout=120).stdout.decode("utf-8", "replace")
    recs = []
    for line in out.splitlines():
        try:
            recs.append(json.loads(line))
        except ValueError:
            pass
    def inbound_starts(x, tag):
        for b in x.get("blobs", []):
            if b.get("name") == "inbound":
                return tag in (b.get("text") or "")[:200]
        return False
    reqs = [x for x in recs if x.get("type") == "request" and inbound_starts(x, "leaving write to")]
    ids = [(x.get("meta") or {}).get("id") for x in reqs]
    resps = [x for x in recs if x.get("type") == "response" and (x.get("meta") or {}).get("id") in ids]
    s.check("left: its request is recorded once", len(reqs) == 1, len(reqs))
    s.check("left: with the decision made (verdict redact), and nothing sent",
            len(reqs) == 1 and (reqs[0].get("meta") or {}).get("verdict") == "redact"
            and not any(b.get("name") == "outbound" for b in reqs[0].get("blobs", [])),
            reqs and reqs[0].get("meta"))
    s.check("left: one response record, status 499",
            len(resps) == 1 and (resps[0].get("meta") or {}).get("status") == 499,
            [(x.get("meta") or {}).get("status") for x in resps])

    # 6. a second SIGTERM during a decision: exit at once, cleanly
    g2 = Gateway(s, mock, "offloop2")
    g2.hold()
    order, results = [], {}
    t = threading.Thread(target=send_big, args=(g2.port, big_body("quit"), order, "big", results))
    t.start()
    s.check("quit: the big body is held in the decider", g2.wait_log("holding a decision", 1))
    g2.gw.signal(signal.SIGTERM)
    g2.wait_log("draining", 1)
    g2.gw.signal(signal.SIGTERM)
    try:
        rc = g2.gw.proc.wait(120)
    except subprocess.TimeoutExpired:
        rc = None
    t.join(60)
    s.check("quit: a second SIGTERM exits with a decision in flight, rc 0", rc == 0, rc)
    err = g2.gw.stderr()
    s.check("quit: no crash and no sanitizer report", "Sanitizer" not in err and "runtime error" not in err,
            err[-1500:])
    s.check("quit: the client's connection was closed without an answer",
            order == ["big"] and (results.get("big") is None or isinstance(results.get("big"), OSError)),
            results.get("big"))
    # ... and the request is still in the audit: a request record (nothing sent) and a 499,
    # written before the audit log is closed, as for a request in flight to a provider
    out = subprocess.run([AIRLOCK, "audit", "show", os.path.join(g2.gw.dir, "audit")],
                         capture_output=True, timeout=120).stdout.decode("utf-8", "replace")
    recs = []
    for line in out.splitlines():
        try:
            recs.append(json.loads(line))
        except ValueError:
            pass
    reqs = [x for x in recs if x.get("type") == "request" and inbound_starts(x, "quit write to")]
    ids = [(x.get("meta") or {}).get("id") for x in reqs]
    resps = [x for x in recs if x.get("type") == "response" and (x.get("meta") or {}).get("id") in ids]
    s.check("quit: the request in the decider at exit is recorded once, nothing sent",
            len(reqs) == 1 and not any(b.get("name") == "outbound" for b in reqs[0].get("blobs", [])),
            len(reqs))
    s.check("quit: with one response record, status 499",
            len(resps) == 1 and (resps[0].get("meta") or {}).get("status") == 499,
            [(x.get("meta") or {}).get("status") for x in resps])
    s.done()


if __name__ == "__main__":
    main()
