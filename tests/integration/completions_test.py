"""completions_test.py -- POST /v1/completions and POST /v1/embeddings (SPEC §3).

Completions (`prompt` a string or an array of strings) are decided like every prompt: a
secret is refused (403, nothing leaves), an e-mail is redacted and its placeholder restored
in `choices[].text`, whole and streamed (a placeholder split one character per chunk); the
request goes to an OpenAI-type provider's /v1/completions (model renamed, include_usage
asked for and its chunk kept from a client that did not ask), usage is priced and a spent
budget stops the next request; a route to the built-in engine is answered natively in the
text_completion format (the prompt as raw text), streaming included; an Anthropic route
is a 400 naming it. Embeddings (`input` a string or an array of strings): the redacted text
is what is embedded, the answer is relayed unchanged, usage is priced, a route to the
built-in engine or to Anthropic is a 400. Token arrays are refused with 400 on both.
The audit holds both records with every byte stream; /metrics counts each endpoint."""
import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gateway_test import audit_records, blob  # noqa: E402
from itest import (AIRLOCK, ALICE, ANTHROPIC_REAL, OPENAI_REAL, Airlock, Mock, Suite,  # noqa: E402
                   free_port, gateway_missing, request, sse_events)

SHARED = os.environ.get("AIRLOCK_SHARED") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared")
MODEL = os.path.join(SHARED, "models", "tiny-llama3-q8_0.gguf")
CAROL = "sk-test-carol-0123456789"
SECRET = "deploy with AKIAIOSFODNN7EXAMPLQ and go"
EMAIL = "someone.with.a.rather.long.address@example-company.org"
CARD = "card 4111 1111 1111 1111"
CMPL = "/v1/completions"
EMB = "/v1/embeddings"


def config(port, mock_port):
    return """listen: [{address: "127.0.0.1:%d"}]
keys:
  - {name: alice, team: red, key: "%s"}
  - {name: carol, team: green, key: "%s", budget_usd_per_day: 0.01}
providers:
  oai: {type: openai, base_url: "http://127.0.0.1:%d/v1", api_key: "${MOCK_OPENAI_KEY}"}
  ant: {type: anthropic, base_url: "http://127.0.0.1:%d", api_key: "%s"}
  local: {type: builtin, model: "%s", context: 256}
models:
  - {name: gpt-3.5-turbo-instruct, provider: oai, upstream_model: gpt-3.5-turbo-instruct-0914, price: {input_per_mtok: 1.5, output_per_mtok: 2}}
  - {name: text-embedding-3-small, provider: oai, price: {input_per_mtok: 20, output_per_mtok: 0}}
  - {name: claude-3-5-haiku, provider: ant, price: {input_per_mtok: 0.8, output_per_mtok: 4}}
  - {name: local-small, provider: local}
detectors:
  - {name: codename, keywords: [bluebird]}
rules:
  - {name: no-secrets, if: {detected: [secrets]}, then: {action: block}}
  - {name: cards-stay-home, if: {detected: [credit_card]}, then: {action: route, provider: local, model: local-small}}
  - {name: codenames-to-ant, if: {detected: [codename]}, then: {action: route, provider: ant, model: claude-3-5-haiku}}
  - {name: mask-emails, if: {detected: [email]}, then: {action: redact, detectors: [email]}}
  - {name: default, then: {action: allow}}
audit: {dir: ./audit}
""" % (port, ALICE, CAROL, mock_port, mock_port, ANTHROPIC_REAL, MODEL)


def cmpl(prompt, model="gpt-3.5-turbo-instruct", **kw):
    b = {"model": model, "prompt": prompt}
    b.update(kw)
    return b


def emb(inp, model="text-embedding-3-small", **kw):
    b = {"model": model, "input": inp}
    b.update(kw)
    return b


def post(port, path, b, **kw):
    raw = json.dumps(b).encode()
    return raw, request(port, "POST", path, raw, **kw)


def err_msg(r):
    return ((r.json() or {}).get("error") or {}).get("message", "")


def stream_text(body):
    """text, usage, finish, objects, chunks of a Completions stream"""
    text, usage, finish, objs, n, done = "", None, None, set(), 0, False
    for _, data in sse_events(body):
        if data == "[DONE]":
            done = True
            continue
        j = json.loads(data)
        n += 1
        objs.add(j.get("object"))
        if j.get("usage"):
            usage = j["usage"]
        for ch in j.get("choices", []):
            text += ch.get("text") or ""
            finish = ch.get("finish_reason") or finish
    return text, usage, finish, objs, n, done


def vec(text):
    t = text.encode()
    return [len(t), sum(t), t[0] if t else 0, t[-1] if t else 0]


def main():
    s = Suite("completions")
    why = gateway_missing()
    if why:
        s.bail(why)
    local = os.path.exists(MODEL)
    mock = Mock(s)
    port = free_port()
    gw = Airlock(s, config(port, mock.port), port)
    ids = {}

    # -- completions: plain, whole
    raw, r = post(port, CMPL, cmpl("Say hello"))
    up, head = mock.last_body(), mock.last_head()
    j = r.json() or {}
    s.check("plain: 200, a text_completion with text and usage",
            r.status == 200 and j.get("object") == "text_completion"
            and j["choices"][0]["text"].startswith("Hello from the mock") and j["usage"]["prompt_tokens"] == len(up) // 4, r)
    s.check("plain: the provider was asked at its /v1/completions with the provider's key",
            head.startswith("POST /v1/completions HTTP/1.1\r\n") and ALICE not in head, head[:200])
    s.check("plain: the model renamed, the rest byte for byte",
            up == raw.replace(b'"gpt-3.5-turbo-instruct"', b'"gpt-3.5-turbo-instruct-0914"'), up)
    s.check("plain: x-airlock-route and rule",
            r.headers.get("x-airlock-route") == "oai/gpt-3.5-turbo-instruct" and r.headers.get("x-airlock-rule") == "default", r.headers)
    ids["plain"] = (r.headers.get("x-airlock-request-id"), raw, r, up, CMPL)

    raw, r = post(port, CMPL, cmpl(["one", "two"]))
    j = r.json() or {}
    s.check("prompt array: 200 with one choice per prompt", r.status == 200 and len(j.get("choices", [])) == 2, r)

    # -- completions: streamed, usage asked for and its chunk kept from the client
    raw, r = post(port, CMPL, cmpl("Say hello", stream=True))
    up = json.loads(mock.last_body())
    text, usage, finish, objs, n, done = stream_text(r.body)
    s.check("stream: 200 SSE, text_completion chunks, [DONE]",
            r.status == 200 and "text/event-stream" in r.headers.get("content-type", "")
            and objs == {"text_completion"} and done and text.startswith("Hello from the mock") and finish == "stop", r)
    s.check("stream: include_usage asked of the provider", (up.get("stream_options") or {}).get("include_usage") is True, up)
    s.check("stream: the usage chunk the client did not ask for is not relayed", usage is None, r.body[-400:])
    raw, r = post(port, CMPL, cmpl("Say hello", stream=True, stream_options={"include_usage": True}))
    text, usage, finish, objs, n, done = stream_text(r.body)
    s.check("stream: a client that asked gets the usage chunk", usage and usage.get("prompt_tokens", 0) > 0, r.body[-400:])
    ids["stream"] = (r.headers.get("x-airlock-request-id"), raw, r, mock.last_body(), CMPL)

    # -- redaction: restored whole and streamed (split one character per chunk)
    p = "write to %s MOCK:split=Dear %%PH%%, thanks." % EMAIL
    raw, r = post(port, CMPL, cmpl(p))
    up = mock.last_body()
    j = r.json() or {}
    s.check("redact: the provider received the placeholder, not the address",
            EMAIL.encode() not in up and b"[EMAIL_1_" in up, up)
    s.check("redact: the address restored in choices[].text",
            r.status == 200 and j["choices"][0]["text"] == "Dear %s, thanks." % EMAIL
            and r.headers.get("x-airlock-rule") == "mask-emails", r)
    ids["email"] = (r.headers.get("x-airlock-request-id"), raw, r, up, CMPL)
    raw, r = post(port, CMPL, cmpl(p, stream=True))
    text, usage, finish, objs, n, done = stream_text(r.body)
    s.check("redact stream: a placeholder split across chunks is restored whole",
            r.status == 200 and text == "Dear %s, thanks." % EMAIL and done and n > 10 and b"[EMAIL_" not in r.body,
            (text, r.body[:300]))

    # -- the provider failing mid-stream: an OpenAI error event ends the client's stream
    raw, r = post(port, CMPL, cmpl("MOCK:reset_mid", stream=True))
    ev = [d for _, d in sse_events(r.body)]
    last = json.loads(ev[-1]) if ev and ev[-1].startswith("{") else {}
    s.check("provider reset mid-stream: the chunks so far, then an OpenAI error event",
            r.status == 200 and len(ev) >= 3 and json.loads(ev[0]).get("object") == "text_completion"
            and (last.get("error") or {}).get("code") == "502", ev[-2:])

    # -- a secret: 403, nothing leaves
    before = mock.stats()["requests"]
    raw, r = post(port, CMPL, cmpl(["fine", SECRET]))
    s.check("secret: 403 naming the rule, not the value",
            r.status == 403 and "no-secrets" in err_msg(r) and "AKIAIOSFODNN7EXAMPLQ" not in r.body.decode(), r)
    s.check("secret: nothing reached the provider", mock.stats()["requests"] == before)
    ids["secret"] = (r.headers.get("x-airlock-request-id"), raw, r, None, CMPL)
    raw, r = post(port, CMPL, cmpl("x", suffix="and " + SECRET))
    s.check("secret in another member (suffix): 403", r.status == 403, r)

    # -- tokens cannot be scanned
    for name, prompt in (("token array", [1, 2, 3]), ("token arrays", [[1, 2], [3]]), ("empty", []), ("number", 7)):
        raw, r = post(port, CMPL, cmpl(prompt))
        s.check("completions %s: 400" % name, r.status == 400 and ("tokens" in err_msg(r) or "prompt" in err_msg(r)), r)
    raw, r = post(port, CMPL, {"model": "gpt-3.5-turbo-instruct"})
    s.check("no prompt: 400", r.status == 400 and "prompt" in err_msg(r), r)
    s.check("refused shapes: nothing reached the provider", mock.stats()["requests"] == before)

    # -- an Anthropic route: 400 naming it
    raw, r = post(port, CMPL, cmpl("hi", model="claude-3-5-haiku"))
    s.check("anthropic model: 400 naming the route", r.status == 400 and "ant/claude-3-5-haiku" in err_msg(r), r)
    raw, r = post(port, CMPL, cmpl("the bluebird project"))
    s.check("policy route to anthropic: 400 naming the route", r.status == 400 and "ant/claude-3-5-haiku" in err_msg(r), r)
    s.check("anthropic routes: nothing left", mock.stats()["requests"] == before)

    # -- embeddings
    raw, r = post(port, EMB, emb("the quick brown fox"))
    up, head = mock.last_body(), mock.last_head()
    j = r.json() or {}
    s.check("embeddings: 200, relayed unchanged", r.status == 200 and j.get("object") == "list"
            and j["data"][0]["embedding"] == vec("the quick brown fox"), r)
    s.check("embeddings: asked at the provider's /v1/embeddings, body byte for byte",
            head.startswith("POST /v1/embeddings HTTP/1.1\r\n") and up == raw, (head[:100], up))
    ids["emb"] = (r.headers.get("x-airlock-request-id"), raw, r, up, EMB)
    raw, r = post(port, EMB, emb(["a", "write to %s" % EMAIL]))
    up = mock.last_body()
    j = r.json() or {}
    sent = json.loads(up)["input"][1]
    s.check("embeddings redact: the redacted text is what was embedded",
            r.status == 200 and EMAIL not in sent and "[EMAIL_1_" in sent and j["data"][1]["embedding"] == vec(sent), (sent, r))
    s.check("embeddings redact: vectors only in the answer (nothing to restore)",
            b"[EMAIL" not in r.body and EMAIL.encode() not in r.body, r)
    ids["emb_email"] = (r.headers.get("x-airlock-request-id"), raw, r, up, EMB)
    before = mock.stats()["requests"]
    raw, r = post(port, EMB, emb(["ok", SECRET]))
    s.check("embeddings secret: 403, nothing left", r.status == 403 and mock.stats()["requests"] == before, r)
    for name, inp in (("token array", [1, 2]), ("token arrays", [[1], [2]]), ("mixed", ["a", 1])):
        raw, r = post(port, EMB, emb(inp))
        s.check("embeddings %s: 400" % name, r.status == 400, r)
    raw, r = post(port, EMB, emb("hi", model="local-small"))
    s.check("embeddings on the local model: 400 (it cannot produce embeddings)",
            r.status == 400 and "cannot produce embeddings" in err_msg(r), r)
    raw, r = post(port, EMB, emb("hi", model="claude-3-5-haiku"))
    s.check("embeddings to anthropic: 400 naming the route", r.status == 400 and "ant/claude-3-5-haiku" in err_msg(r), r)
    raw, r = post(port, EMB, emb("hi", stream=True))
    s.check("embeddings stream: 400", r.status == 400, r)
    s.check("embeddings refusals: nothing left", mock.stats()["requests"] == before)
    if local:
        raw, r = post(port, EMB, emb(CARD))
        s.check("embeddings routed local by policy: 400", r.status == 400 and "cannot produce embeddings" in err_msg(r), r)

    # -- `airlock policy test` decides these bodies as the gateway does
    env = dict(os.environ, MOCK_OPENAI_KEY=OPENAI_REAL)

    def cli(api, b):
        p = subprocess.run([AIRLOCK, "policy", "test", "-c", gw.config, "--api", api, "--key", "alice", "-"],
                           input=json.dumps(b).encode(), capture_output=True, timeout=30, env=env)
        return p.returncode, (json.loads(p.stdout) if p.returncode == 0 else p.stderr.decode())
    rc_, dec = cli("embeddings", emb(["mail %s" % EMAIL]))
    s.check("policy test --api embeddings: redact, the placeholder in the outbound input",
            rc_ == 0 and dec["verdict"] == "redact" and EMAIL not in json.dumps(dec["outbound"])
            and "[EMAIL_1_" in json.dumps(dec["outbound"]), dec)
    rc_, dec = cli("completions", cmpl("hi"))
    s.check("policy test --api completions: allowed, the model renamed",
            rc_ == 0 and dec["verdict"] == "allow" and "gpt-3.5-turbo-instruct-0914" in json.dumps(dec["outbound"]), dec)
    rc_, dec = cli("completions", cmpl([1, 2]))
    s.check("policy test --api completions: token prompt refused as malformed", rc_ != 0 and "tokens" in dec, dec)

    # -- the built-in engine answers completions natively
    if not local:
        s.skip("builtin route", "test model %s not found" % MODEL)
    else:
        before = mock.stats()["requests"]
        raw, r = post(port, CMPL, cmpl("Once upon a time", model="local-small", max_tokens=8))
        j = r.json() or {}
        u = j.get("usage") or {}
        s.check("builtin: 200 text_completion from the local model",
                r.status == 200 and j.get("object") == "text_completion" and j.get("model") == "local-small"
                and j["id"].startswith("cmpl-") and isinstance(j["choices"][0]["text"], str)
                and j["choices"][0]["finish_reason"] in ("stop", "length"), r)
        s.check("builtin: usage (the raw prompt's tokens, no chat template)",
                0 < u.get("prompt_tokens", 0) < 12 and 0 < u.get("completion_tokens", 0) <= 8, u)
        ids["local"] = (r.headers.get("x-airlock-request-id"), raw, r, None, CMPL)
        raw, r = post(port, CMPL, cmpl(CARD, max_tokens=6, stream=True, stream_options={"include_usage": True}))
        text, usage, finish, objs, n, done = stream_text(r.body)
        s.check("builtin stream (policy route): text_completion chunks, usage, [DONE]",
                r.status == 200 and r.headers.get("x-airlock-route") == "local/local-small"
                and objs == {"text_completion"} and done and usage and usage.get("completion_tokens", 0) > 0
                and finish in ("stop", "length"), r.body[:400])
        raw, r = post(port, CMPL, cmpl(["a", "b"], model="local-small"))
        s.check("builtin: several prompts are a 400", r.status == 400 and "one prompt" in err_msg(r), r)
        raw, r = post(port, CMPL, cmpl("def f(", model="local-small", suffix="):\n    pass"))
        s.check("builtin: suffix (fill in the middle) is a 400, not ignored", r.status == 400 and "suffix" in err_msg(r), r)
        s.check("builtin: nothing reached the provider", mock.stats()["requests"] == before)

    # -- cost and budgets
    raw, r = post(port, CMPL, cmpl("MOCK:usage=100000,1000000"), key=CAROL)
    s.check("budget: carol's completion is priced from usage (0.15 + 2 USD)", r.status == 200, r)
    ids["cost"] = (r.headers.get("x-airlock-request-id"), raw, r, mock.last_body(), CMPL)
    raw, r = post(port, CMPL, cmpl("again"), key=CAROL)
    s.check("budget: her next completion gets 429", r.status == 429, r)
    raw, r = post(port, EMB, emb("again"), key=CAROL)
    s.check("budget: her next embedding gets 429", r.status == 429, r)
    raw, r = post(port, EMB, emb("MOCK:usage=500,0"))
    ids["emb_cost"] = (r.headers.get("x-airlock-request-id"), raw, r, mock.last_body(), EMB)

    # -- /metrics by endpoint
    m = request(port, "GET", "/metrics", key=None).body.decode()

    def metric(endpoint, status):
        return sum(int(ln.rsplit(" ", 1)[1]) for ln in m.splitlines()
                   if ln.startswith("airlock_requests_total{") and ('endpoint="%s"' % endpoint) in ln
                   and ('status="%d"' % status) in ln)
    s.check("metrics: /v1/completions counted by endpoint", metric(CMPL, 200) >= 6 and metric(CMPL, 403) >= 1
            and metric(CMPL, 400) >= 4, [ln for ln in m.splitlines() if "completions" in ln])
    s.check("metrics: /v1/embeddings counted by endpoint", metric(EMB, 200) >= 2 and metric(EMB, 400) >= 3,
            [ln for ln in m.splitlines() if "embeddings" in ln])
    gw.stop()

    # -- the audit: both records, all four byte streams, cost from usage
    rc, recs = audit_records(os.path.join(gw.dir, "audit"))
    by = {}
    for rec in recs:
        mm = rec.get("meta") or {}
        by.setdefault(mm.get("id"), {})[rec.get("type")] = rec
    for name, (rid, raw, r, up, path) in ids.items():
        req, resp = by.get(rid, {}).get("request"), by.get(rid, {}).get("response")
        rm, pm = (req or {}).get("meta") or {}, (resp or {}).get("meta") or {}
        s.check("audit %s: a request record for %s with the inbound bytes" % (name, path),
                req is not None and rm.get("endpoint") == path and blob(req, "inbound") == raw, rm)
        if up is not None:
            s.check("audit %s: outbound is what the provider received" % name, blob(req, "outbound") == up,
                    (blob(req, "outbound"), up))
            s.check("audit %s: upstream bytes kept, client bytes are what the client got" % name,
                    resp is not None and len(blob(resp, "upstream") or b"") > 0 and blob(resp, "client") == r.body, pm)
        else:
            s.check("audit %s: nothing left, client bytes kept" % name,
                    req is not None and blob(req, "outbound") is None and resp is not None
                    and blob(resp, "client") == r.body, req)
        s.check("audit %s: status recorded" % name, pm.get("status") == r.status, pm)
    pm = ((by.get(ids["cost"][0]) or {}).get("response") or {}).get("meta") or {}
    s.check("audit: completion cost from usage", abs(pm.get("cost_usd", 0) - 2.15) < 1e-6, pm)
    pm = ((by.get(ids["emb_cost"][0]) or {}).get("response") or {}).get("meta") or {}
    s.check("audit: embedding cost from prompt_tokens", abs(pm.get("cost_usd", 0) - 0.01) < 1e-9
            and (pm.get("usage") or {}).get("input_tokens") == 500, pm)
    s.done()


if __name__ == "__main__":
    main()
