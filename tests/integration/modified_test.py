"""modified_test.py -- the caller and the auditor can see what the gateway changed (issue 14).

`x-airlock-modified` (SPEC §3, docs/gateway.md) on every answer whose request was changed
before it left -- redaction counts per detector, a model rename, the usage option injected
into an OpenAI stream, a translation -- never a value, also on a 502 after the request
left; none on a request that left unchanged or was refused. The request record holds the
same line as "modified", and `airlock policy test` prints it. `airlock audit show --id ID
--diff` shows the redaction as -/+ lines of the pretty-printed bodies and the restoration in
the answer; on a sealed log without the key only positions (which are the value's bytes in
the body sent) and lengths, with the key the values."""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gateway_test import audit_records  # noqa: E402
from itest import (AIRLOCK, OPENAI_REAL, Airlock, Mock, Suite, base_config, chat, free_port,  # noqa: E402
                   gateway_missing, request)

EMAIL1 = "alice@example.com"
EMAIL2 = "bob@example.org"
PHONE = "+1 212-555-0134"
RULES = """
  - {name: no-secrets, if: {detected: [secrets]}, then: {action: block}}
  - {name: mask, if: {detected: [email, phone]}, then: {action: redact, detectors: [email, phone]}}
  - {name: default, then: {action: allow}}"""
CHAT = "/v1/chat/completions"


def post(port, body, **kw):
    raw = json.dumps(body).encode()
    return raw, request(port, "POST", CHAT, raw, **kw)


def no_value(r, values):
    """no header of r holds any of values"""
    heads = "\n".join("%s: %s" % kv for kv in r.headers.items())
    return not any(v in heads for v in values)


def diff(audit_dir, rid, key=None):
    argv = [AIRLOCK, "audit", "show", audit_dir, "--id", rid, "--diff"]
    if key:
        argv += ["--key", key]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    return p.returncode, p.stdout, p.stderr


def headers_tests(s, mock, port, gw):
    ids = {}
    text = "MOCK:echo mail %s and %s, call %s" % (EMAIL1, EMAIL2, PHONE)
    raw, r = post(port, chat(text))
    up = mock.last_body()
    s.check("redacted: 200, x-airlock-modified counts per detector",
            r.status == 200 and r.headers.get("x-airlock-modified") == "redacted=email:2,phone:1", r)
    s.check("redacted: no header holds a value", no_value(r, [EMAIL1, EMAIL2, "555-0134", "example"]),
            r.headers)
    s.check("redacted: the provider got placeholders", EMAIL1.encode() not in up and b"[EMAIL_2_" in up, up)
    ids["redact"] = (r.headers.get("x-airlock-request-id"), raw)

    raw, r = post(port, chat("hello", model="gpt-renamed"))
    s.check("renamed: model=A->B",
            r.status == 200 and r.headers.get("x-airlock-modified") == "model=gpt-renamed->gpt-4o-2024-08-06", r)
    ids["renamed"] = (r.headers.get("x-airlock-request-id"), raw)

    raw, r = post(port, chat("hello", stream=True))
    up = json.loads(mock.last_body())
    s.check("stream: options=stream_options.include_usage",
            r.status == 200 and r.headers.get("x-airlock-modified") == "options=stream_options.include_usage"
            and up.get("stream_options") == {"include_usage": True}, (r, up))

    raw, r = post(port, chat("hello", stream=True, stream_options={"include_usage": True}))
    s.check("stream that asked for usage itself: no x-airlock-modified",
            r.status == 200 and "x-airlock-modified" not in r.headers, r)

    raw, r = post(port, chat("hello"))
    s.check("unchanged: no x-airlock-modified, the body left byte for byte",
            r.status == 200 and "x-airlock-modified" not in r.headers and mock.last_body() == raw, r)
    ids["plain"] = (r.headers.get("x-airlock-request-id"), raw)

    raw, r = post(port, chat("hello %s" % EMAIL1, model="claude-3-5-haiku", stream=True))
    s.check("translated stream: redaction, rename and translation in order",
            r.status == 200 and r.headers.get("x-airlock-modified")
            == "redacted=email:1; model=claude-3-5-haiku->claude-3-5-haiku-20241022; "
               "translated=openai-chat->anthropic-messages", r)

    r = request(port, "POST", "/v1/responses", {"model": "gpt-renamed", "input": "mail %s" % EMAIL1})
    s.check("responses: redaction and rename, no value",
            r.status == 200 and r.headers.get("x-airlock-modified")
            == "redacted=email:1; model=gpt-renamed->gpt-4o-2024-08-06" and no_value(r, [EMAIL1]), r)

    raw, r = post(port, chat("MOCK:reset_before hello", model="gpt-renamed"))
    s.check("an error after the request left (502) still says what was changed",
            r.status == 502 and r.headers.get("x-airlock-modified") == "model=gpt-renamed->gpt-4o-2024-08-06", r)

    raw, r = post(port, chat("deploy with AKIAIOSFODNN7EXAMPLQ now", model="gpt-renamed"))
    s.check("refused (403): nothing left, no x-airlock-modified",
            r.status == 403 and "x-airlock-modified" not in r.headers, r)
    raw, r = post(port, chat("hello", model="nope"))
    s.check("unknown model (404): no x-airlock-modified", r.status == 404 and "x-airlock-modified" not in r.headers, r)
    return ids


def policy_tests(s, gw, ids):
    def decide(raw):
        env = dict(os.environ, MOCK_OPENAI_KEY=OPENAI_REAL)
        p = subprocess.run([AIRLOCK, "policy", "test", "-c", gw.config, "--key", "alice", "-"],
                           input=raw, capture_output=True, timeout=30, env=env)
        try:
            return json.loads(p.stdout)
        except ValueError:
            return {"rc": p.returncode, "err": p.stderr}
    d = decide(ids["redact"][1])
    s.check("policy test: the same modified line as the header", d.get("modified") == "redacted=email:2,phone:1", d)
    d = decide(ids["renamed"][1])
    s.check("policy test: model rename", d.get("modified") == "model=gpt-renamed->gpt-4o-2024-08-06", d)
    d = decide(ids["plain"][1])
    s.check("policy test: unchanged is null", "modified" in d and d["modified"] is None, d)


def audit_tests(s, gw, ids):
    gw.stop()
    audit_dir = os.path.join(gw.dir, "audit")
    _, recs = audit_records(audit_dir)
    rid, raw = ids["redact"]
    req = next((x for x in recs if x.get("type") == "request" and (x.get("meta") or {}).get("id") == rid), {})
    s.check("audit: the request record's modified", (req.get("meta") or {}).get("modified") == "redacted=email:2,phone:1", req)
    pid = ids["plain"][0]
    preq = next((x for x in recs if x.get("type") == "request" and (x.get("meta") or {}).get("id") == pid), {})
    s.check("audit: an unchanged request has no modified", preq and "modified" not in preq.get("meta", {}), preq)

    rc, out, err = diff(audit_dir, rid)
    s.check("diff: exit 0, one request, its modified line",
            rc == 0 and out.count("=== request ") == 1 and "modified: redacted=email:2,phone:1\n" in out, (rc, out, err))
    lines = out.splitlines()
    minus = [x for x in lines if x.startswith("-") and not x.startswith("---")]
    plus = [x for x in lines if x.startswith("+") and not x.startswith("+++")]
    s.check("diff: inbound -> outbound as -/+ lines: the value out, its placeholder in",
            "--- inbound (received, %d bytes)" % len(raw) in out
            and any('"content": "MOCK:echo mail %s' % EMAIL1 in x for x in minus)
            and any('"content": "MOCK:echo mail [EMAIL_1_' in x for x in plus), out)
    s.check("diff: upstream -> client: the placeholder restored in the answer",
            "--- upstream (received," in out and any("[EMAIL_1_" in x for x in minus)
            and any(EMAIL1 in x for x in plus), out)
    rc, out, err = diff(audit_dir, pid)
    s.check("diff: unchanged request says so on one line per pair",
            rc == 0 and "modified: nothing\n" in out and "inbound -> outbound: unchanged (" in out
            and "@@" not in out.split("upstream ->")[0], out)


def sealed_tests(s, mock):
    port = free_port()
    keys = os.path.join(s.tmp, "auditor")
    k = subprocess.run([AIRLOCK, "keygen", "--out", keys], capture_output=True, text=True, timeout=30)
    s.check("sealed: keygen", k.returncode == 0, k.stderr)
    gw = Airlock(s, base_config(port, mock.port, rules=RULES,
                                audit="{dir: ./audit, seal_to: %s.seal.pub}" % keys), port, name="sealed")
    raw, r = post(port, chat("MOCK:echo mail %s please" % EMAIL1))
    rid = r.headers.get("x-airlock-request-id")
    s.check("sealed: redacted", r.status == 200 and r.headers.get("x-airlock-modified") == "redacted=email:1", r)
    gw.stop()
    audit_dir = os.path.join(gw.dir, "audit")
    rc, out, err = diff(audit_dir, rid)
    s.check("sealed, no key: exit 0, no value, no placeholder, no hunk",
            rc == 0 and EMAIL1 not in out and "EMAIL_1" not in out and "@@" not in out
            and "payloads are sealed and no key was given" in out, (rc, out, err))
    spans = []
    for ln in out.splitlines():
        parts = ln.split()
        if len(parts) >= 2 and parts[0] == "email" and ".." in parts[1]:
            a, b = parts[1].split("..")
            spans.append((int(a), int(b)))
    s.check("sealed, no key: the finding's position is the value's bytes in the body sent",
            len(spans) == 1 and raw[spans[0][0]:spans[0][1]] == EMAIL1.encode(), (spans, out))
    s.check("sealed, no key: the lengths of both pairs",
            "inbound -> outbound: sealed, %d -> " % len(raw) in out and "upstream -> client: sealed, " in out, out)
    rc, out, err = diff(audit_dir, rid, keys + ".seal.key")
    s.check("sealed, with the key: the values as -/+ lines",
            rc == 0 and any(x.startswith("-") and EMAIL1 in x for x in out.splitlines())
            and any(x.startswith("+") and "[EMAIL_1_" in x for x in out.splitlines())
            and "payloads are sealed" not in out, (rc, out, err))


def local_tests(s, mock):
    """the built-in engine: nothing leaves, but the request is read as a chat prompt"""
    shared = os.environ.get("AIRLOCK_SHARED") or os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared")
    model = os.path.join(shared, "models", "tiny-llama3-q8_0.gguf")
    if not os.path.exists(model):
        s.skip("local: the built-in engine says translated=...->builtin", "%s missing" % model)
        return
    port = free_port()
    cfg = """listen: [{address: "127.0.0.1:%d"}]
providers:
  oai: {type: openai, base_url: "http://127.0.0.1:%d/v1", api_key: "${MOCK_OPENAI_KEY}"}
  local: {type: builtin, model: "%s", context: 256}
models:
  - {name: gpt-4o-mini, provider: oai}
  - {name: local-small, provider: local}
rules:
  - {name: cards-stay-home, if: {detected: [credit_card]}, then: {action: route, provider: local, model: local-small}}
  - {name: default, then: {action: allow}}
""" % (port, mock.port, model)
    gw = Airlock(s, cfg, port, name="local")
    raw, r = post(port, chat("card 4111 1111 1111 1111, say hi", max_tokens=4), key=None)
    s.check("local: a card routed to the engine: model and translated=openai-chat->builtin, no value",
            r.status == 200 and r.headers.get("x-airlock-modified")
            == "model=gpt-4o-mini->local-small; translated=openai-chat->builtin"
            and no_value(r, ["4111"]), r)
    raw, r = post(port, chat("hello", max_tokens=4), key=None)
    s.check("local: the same gateway's plain request to the provider has none",
            r.status == 200 and "x-airlock-modified" not in r.headers, r)
    gw.stop()


def main():
    s = Suite("modified")
    why = gateway_missing()
    if why:
        s.bail(why)
    mock = Mock(s)
    port = free_port()
    gw = Airlock(s, base_config(port, mock.port, rules=RULES), port)
    ids = headers_tests(s, mock, port, gw)
    policy_tests(s, gw, ids)
    audit_tests(s, gw, ids)
    sealed_tests(s, mock)
    local_tests(s, mock)
    s.done()


if __name__ == "__main__":
    main()
