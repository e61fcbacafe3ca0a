"""lifecycle_test.py -- check-config, SIGHUP reload, SIGTERM drain and the audit left behind
(SPEC §1, §2, §5), with build/airlock and the mock provider on loopback."""
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from itest import (AIRLOCK, ALICE, Airlock, Mock, OPENAI_REAL, Suite, base_config, chat,  # noqa: E402
                   free_port, gateway_missing, openai_stream_text, request)

DAVE = "sk-test-dave-0123456789"


def check_config(path, env=None):
    e = dict(os.environ)
    e["MOCK_OPENAI_KEY"] = OPENAI_REAL
    e.pop("AIRLOCK_IT_UNSET_VAR", None)
    e.update(env or {})
    return subprocess.run([AIRLOCK, "check-config", "-c", path], capture_output=True, text=True, timeout=20, env=e)


def t_check_config(s, mock):
    d = os.path.join(s.tmp, "cc")
    os.makedirs(d)
    good = os.path.join(d, "good.yaml")
    with open(good, "w") as f:
        f.write(base_config(18080, mock.port))
    r = check_config(good)
    s.check("check-config: valid file exits 0", r.returncode == 0, (r.returncode, r.stdout, r.stderr))
    s.check("check-config: valid file prints no FILE:LINE:COL problem",
            not re.search(r":\d+:\d+: ", r.stdout + r.stderr), r.stdout + r.stderr)

    typo = os.path.join(d, "typo.yaml")
    with open(typo, "w") as f:
        f.write(base_config(18080, mock.port) + "teams:\n  - {name: red, budget_usd_per_day: 5}\n")
    r = check_config(typo)
    out = r.stdout + r.stderr
    s.check("check-config: a key's team missing from `teams` is a warning, exit 0",
            r.returncode == 0 and re.search(r"typo\.yaml:4:\d+: warning: key 'bob' names team 'blue'", out)
            and "1 warning(s)" in out, (r.returncode, out))

    bad = os.path.join(d, "bad.yaml")
    with open(bad, "w") as f:
        f.write('listen:\n  - {adress: "127.0.0.1:8080"}\n'
                'providers:\n  oai: {type: openai, base_url: "http://127.0.0.1:1/v1", api_key: "${AIRLOCK_IT_UNSET_VAR}"}\n'
                'rules:\n  - {name: r, then: {action: allow}}\n')
    r = check_config(bad)
    out = r.stdout + r.stderr
    lines = [ln for ln in out.splitlines() if re.match(re.escape(bad) + r":\d+:\d+: ", ln)
             or re.match(r"(.*/)?bad\.yaml:\d+:\d+: ", ln)]
    s.check("check-config: invalid file exits 2", r.returncode == 2, (r.returncode, out))
    s.check("check-config: FILE:LINE:COL: message lines", len(lines) >= 2, out)
    s.check("check-config: unknown key reported at its line", any(":2:" in ln and "adress" in ln for ln in lines), out)
    s.check("check-config: unset variable reported at its line",
            any(":4:" in ln and "AIRLOCK_IT_UNSET_VAR" in ln for ln in lines), out)

    yamlerr = os.path.join(d, "syntax.yaml")
    with open(yamlerr, "w") as f:
        f.write("listen: [\n  oops: : :\n")
    r = check_config(yamlerr)
    s.check("check-config: YAML syntax error exits 2 with a position",
            r.returncode == 2 and re.search(r"syntax\.yaml:\d+:\d+: ", r.stdout + r.stderr), r.stdout + r.stderr)
    r = check_config(os.path.join(d, "missing.yaml"))
    s.check("check-config: missing file exits 2 with one clear line",
            r.returncode == 2 and "missing.yaml" in (r.stdout + r.stderr)
            and len((r.stdout + r.stderr).strip().splitlines()) <= 2, r.stdout + r.stderr)
    r = subprocess.run([AIRLOCK, "check-config"], capture_output=True, text=True, timeout=10)
    s.check("check-config: no -c is a usage error (2)", r.returncode == 2 and "usage" in r.stderr.lower(), r.stderr)

    # SPEC §2: plain HTTP only on loopback; no keys only when every listener is loopback
    for name, text, want in (
            ("plain-public.yaml", 'listen: [{address: "0.0.0.0:18099"}]\nkeys: [{name: a, key: "k"}]\n'
             'rules: [{name: d, then: {action: allow}}]\n', 2),
            ("nokeys-public.yaml", 'listen: [{address: "0.0.0.0:18099", tls: {cert: c.pem, key: k.pem}}]\n'
             'rules: [{name: d, then: {action: allow}}]\n', 2),
            ("nokeys-loopback.yaml", 'listen: [{address: "127.0.0.1:18099"}]\n'
             'rules: [{name: d, then: {action: allow}}]\n', 0)):
        f = os.path.join(d, name)
        with open(f, "w") as fh:
            fh.write(text)
        r = check_config(f)
        out = r.stdout + r.stderr
        ok = r.returncode == want and (want == 0 or re.search(re.escape(name) + r":1:\d+: .*loopback", out))
        s.check("check-config: %s exits %d%s" % (name, want, " naming the loopback rule" if want else ""), ok,
                (r.returncode, out))

    port = free_port()
    r = subprocess.run([AIRLOCK, "serve", "-c", bad], capture_output=True, text=True, timeout=20)
    s.check("serve: bad config exits 2 with the problems", r.returncode == 2 and "adress" in r.stderr, r.stderr)
    del port


def t_reload(s, mock):
    port = free_port()
    gw = Airlock(s, base_config(port, mock.port), port, name="reload")
    r = request(port, "POST", "/v1/chat/completions", chat("hi"), key=DAVE)
    s.check("reload: unknown key refused before reload", r.status == 401, r)
    with open(gw.config) as f:
        original = f.read()
    new = original.replace("keys:\n", 'keys:\n  - {name: dave, team: red, key: "%s"}\n' % DAVE, 1)
    new = new.replace("rules:\n", "rules:\n  - {name: no-renamed, if: {model: [gpt-renamed]}, then: {action: block}}\n", 1)
    with open(gw.config, "w") as f:
        f.write(new)
    gw.signal(signal.SIGHUP)
    ok = False
    end = time.time() + 5
    while time.time() < end:
        if request(port, "POST", "/v1/chat/completions", chat("hi"), key=DAVE).status == 200:
            ok = True
            break
        time.sleep(0.1)
    s.check("reload: valid config takes effect (new key accepted)", ok)
    r = request(port, "POST", "/v1/chat/completions", chat("hi", model="gpt-renamed"))
    s.check("reload: new rule applies", r.status == 403 and "no-renamed" in r.body.decode(), r)

    # in flight under the old snapshot while an invalid file is offered
    result = {}

    def slow():
        try:
            result["r"] = request(port, "POST", "/v1/chat/completions",
                                  chat("MOCK:slow MOCK:words=20", stream=True), key=DAVE, timeout=20)
        except Exception as e:  # noqa: BLE001
            result["e"] = e
    th = threading.Thread(target=slow)
    th.start()
    time.sleep(0.3)
    with open(gw.config, "w") as f:
        f.write(new.replace("rules:\n", "rules:\n  - {name: broken, iff: {}, then: {action: allow}}\n", 1))
    gw.signal(signal.SIGHUP)
    time.sleep(1.0)
    r = request(port, "POST", "/v1/chat/completions", chat("still?"), key=DAVE)
    s.check("reload: invalid config rejected, old one keeps serving", r.status == 200, r)
    s.check("reload: invalid config logged with FILE:LINE:COL",
            re.search(r"airlock\.yaml:\d+:\d+: .*iff", gw.stderr()) is not None, gw.stderr()[-600:])
    th.join(25)
    rr = result.get("r")
    text, _, _, _ = openai_stream_text(rr.body if rr else b"")
    s.check("reload: in-flight stream completes across reloads", rr is not None and rr.status == 200
            and text == " ".join("word%d" % i for i in range(1, 21)), result)

    # a valid reload that removes dave: in flight keeps going, new requests refused
    th = threading.Thread(target=slow)
    result.clear()
    th.start()
    time.sleep(0.3)
    with open(gw.config, "w") as f:
        f.write(original)
    gw.signal(signal.SIGHUP)
    gone = False
    end = time.time() + 5
    while time.time() < end:
        if request(port, "POST", "/v1/chat/completions", chat("hi"), key=DAVE).status == 401:
            gone = True
            break
        time.sleep(0.1)
    th.join(25)
    rr = result.get("r")
    text2, _, _, _ = openai_stream_text(rr.body if rr else b"")
    s.check("reload: removed key refused for new requests", gone)
    s.check("reload: request in flight finishes on the snapshot it started with",
            rr is not None and rr.status == 200 and text2.endswith("word20"), result)
    s.check("reload: gateway still alive", gw.proc.poll() is None, gw.stderr()[-400:])
    gw.stop()


def t_reload_switch_upstream(s, mock):
    """A reload that points a provider at another host: new requests go there, and no pooled
    connection to the old one is reused for them."""
    other = Mock(s)
    port = free_port()
    gw = Airlock(s, base_config(port, mock.port), port, name="switch")
    request(port, "POST", "/v1/chat/completions", chat("warm the pool"))
    with open(gw.config) as f:
        text = f.read()
    with open(gw.config, "w") as f:
        f.write(text.replace("127.0.0.1:%d/v1" % mock.port, "127.0.0.1:%d/v1" % other.port))
    b_old, b_new = mock.stats()["requests"], other.stats()["requests"]
    gw.signal(signal.SIGHUP)
    moved = False
    end = time.time() + 5
    while time.time() < end and not moved:
        request(port, "POST", "/v1/chat/completions", chat("where do I go"))
        moved = other.stats()["requests"] > b_new
        if not moved:
            time.sleep(0.1)
    b_old = mock.stats()["requests"]
    for _ in range(3):
        request(port, "POST", "/v1/chat/completions", chat("after reload"))
    s.check("reload: a provider's new base_url takes effect, old pooled connections unused",
            moved and mock.stats()["requests"] == b_old, (mock.stats(), other.stats()))
    gw.stop()


def t_reload_under_load(s, mock):
    port = free_port()
    # a reload runs on the event loop (slow under sanitizers): a generous gap timeout, and
    # each SIGHUP waits for the previous reload, so this checks snapshot safety, not speed
    gw = Airlock(s, base_config(port, mock.port, limits="{upstream_timeout_ms: 10000}"), port, name="hupload")
    results = []

    def one(i):
        try:
            r = request(port, "POST", "/v1/chat/completions", chat("MOCK:delay=10 MOCK:words=40", stream=True),
                        timeout=30)
            results.append(openai_stream_text(r.body)[0] == " ".join("word%d" % k for k in range(1, 41)))
        except Exception:  # noqa: BLE001
            results.append(False)
    ths = [threading.Thread(target=one, args=(i,)) for i in range(16)]
    for t in ths:
        t.start()
    for i in range(10):
        gw.signal(signal.SIGHUP)
        end = time.time() + 10
        while gw.stderr().count("reloaded") <= i and time.time() < end:
            time.sleep(0.02)
    for t in ths:
        t.join(40)
    s.check("10 reloads during 16 streams: every stream complete", results.count(True) == 16, results)
    r = request(port, "GET", "/healthz", key=None)
    s.check("...and the gateway still serves", r.status == 200 and gw.proc.poll() is None, gw.stderr()[-300:])
    rc = gw.stop()
    s.check("...and exits 0 on SIGTERM", rc == 0, rc)


def t_drain_edges(s, mock):
    """SIGTERM with an idle keep-alive client and an upstream that never answers: the drain
    is bounded (the stalled request ends with the upstream timeout) and the exit is 0."""
    import http.client
    port = free_port()
    gw = Airlock(s, base_config(port, mock.port), port, name="drainedge")
    idle = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    idle.request("GET", "/healthz")
    idle.getresponse().read()
    result = {}

    def stalled():
        try:
            result["r"] = request(port, "POST", "/v1/chat/completions", chat("MOCK:stall_before"), timeout=30)
        except Exception as e:  # noqa: BLE001
            result["e"] = e
    th = threading.Thread(target=stalled)
    th.start()
    time.sleep(0.3)
    gw.signal(signal.SIGTERM)
    try:
        rc = gw.proc.wait(25)
    except subprocess.TimeoutExpired:
        rc = None
    th.join(30)
    r = result.get("r")
    s.check("SIGTERM with an idle keep-alive client and a stalled upstream: exits 0", rc == 0,
            (rc, gw.stderr()[-400:]))
    s.check("...the stalled request still got an answer (504)", r is not None and r.status == 504, result)
    idle.close()


def t_noauth(s, mock):
    """No keys section on a loopback listener: no authentication (SPEC §2)."""
    port = free_port()
    cfg = re.sub(r"keys:\n(  - .*\n)+", "", base_config(port, mock.port))
    gw = Airlock(s, cfg, port, name="noauth")
    r = request(port, "POST", "/v1/chat/completions", chat("MOCK:words=2"), key=None)
    s.check("no keys section: requests without a key are served", r.status == 200, (r, cfg[:300]))
    r = request(port, "POST", "/v1/chat/completions", chat("hi", model="gpt-renamed"), key="sk-anything")
    s.check("no keys section: any presented key is accepted", r.status == 200, r)
    gw.stop()


def t_drain(s, mock):
    port = free_port()
    gw = Airlock(s, base_config(port, mock.port), port, name="drain")
    for i in range(3):
        request(port, "POST", "/v1/chat/completions", chat("record %d" % i))
    result = {}

    def slow():
        try:
            result["r"] = request(port, "POST", "/v1/chat/completions",
                                  chat("MOCK:slow MOCK:words=30", stream=True), timeout=20)
        except Exception as e:  # noqa: BLE001
            result["e"] = e
    th = threading.Thread(target=slow)
    th.start()
    time.sleep(0.4)
    gw.signal(signal.SIGTERM)
    th.join(25)
    try:
        rc = gw.proc.wait(15)
    except subprocess.TimeoutExpired:
        rc = None
    rr = result.get("r")
    text, _, _, _ = openai_stream_text(rr.body if rr else b"")
    s.check("SIGTERM: in-flight stream completes", rr is not None and text.endswith("word30")
            and rr.body.rstrip().endswith(b"[DONE]"), result)
    s.check("SIGTERM: exits 0 after draining", rc == 0, (rc, gw.stderr()[-500:]))
    audit = os.path.join(gw.dir, "audit")
    if not os.path.isdir(audit):
        s.check("audit: directory written", False, os.listdir(gw.dir))
        return
    r = subprocess.run([AIRLOCK, "audit", "verify", audit], capture_output=True, text=True, timeout=30)
    s.check("audit verify after shutdown: intact (exit 0)", r.returncode == 0, (r.returncode, r.stdout, r.stderr))
    r = subprocess.run([AIRLOCK, "audit", "show", audit], capture_output=True, text=True, timeout=30)
    s.check("audit show: exit 0, no client or provider keys in the output",
            r.returncode == 0 and ALICE not in r.stdout and OPENAI_REAL not in r.stdout,
            (r.returncode, r.stdout[:300], r.stderr[:300]))
    reqs, resps = {}, {}
    for line in r.stdout.splitlines():
        try:
            j = json.loads(line)
        except ValueError:
            continue
        meta = j.get("meta") or {}
        blobs = {b.get("name"): b for b in j.get("blobs") or []}
        if j.get("type") == "request" and meta.get("id"):
            reqs[meta["id"]] = (meta, blobs)
        elif j.get("type") == "response" and meta.get("id"):
            resps[meta["id"]] = (meta, blobs)
    s.check("audit show: a request and a response record per request (4)",
            len(reqs) == 4 and set(reqs) == set(resps), (len(reqs), len(resps)))
    inbound = sorted((b.get("inbound") or {}).get("text", "") for _, b in reqs.values())
    s.check("audit: inbound bodies byte-exact", json.dumps(chat("record 0")) in inbound
            and json.dumps(chat("MOCK:slow MOCK:words=30", stream=True)) in inbound, inbound)
    streamed = [b for m, b in resps.values() if "word30" in (b.get("client") or {}).get("text", "")]
    s.check("audit: streamed answer recorded with its SSE framing (upstream and client)",
            len(streamed) == 1 and "data: [DONE]" in streamed[0].get("upstream", {}).get("text", "")
            and "data: [DONE]" in streamed[0].get("client", {}).get("text", ""), streamed[:1])
    s.check("audit: key name, usage and cost in the metadata",
            all(m.get("key") == "alice" and (m.get("usage") or {}).get("output_tokens", 0) > 0
                and m.get("cost_usd", 0) > 0 for m, _ in resps.values()), [m for m, _ in resps.values()][:2])


def main():
    s = Suite("lifecycle")
    why = gateway_missing()
    if why:
        s.bail(why)
    mock = Mock(s)
    for t in (t_check_config, t_reload, t_reload_switch_upstream, t_reload_under_load, t_noauth, t_drain,
              t_drain_edges):
        s.run(t, mock)
    s.done()


if __name__ == "__main__":
    main()
