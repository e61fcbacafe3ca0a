"""count_tokens_test.py -- POST /v1/messages/count_tokens (SPEC §3): its body is a prompt and
leaves the network like one, so the policy decides it exactly as the same body on
/v1/messages. A secret is refused (403, nothing leaves); an e-mail is redacted and the
redacted body is what the provider counts (the mock counts received bytes / 4); a request
routed to the built-in engine is counted with the local tokenizer after the chat template,
the same number the engine reports as prompt tokens for that body on /v1/messages; a route
to an OpenAI-type provider is a 400 that names it. The audit holds both records with every
byte stream, nothing is charged, a spent budget does not stop a count, and /metrics counts
the endpoint by name."""
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gateway_test import audit_records, blob  # noqa: E402
from itest import (ALICE, ANTHROPIC_HEADERS, ANTHROPIC_REAL, Airlock, Mock, Suite,  # noqa: E402
                   free_port, gateway_missing, request)

SHARED = os.environ.get("AIRLOCK_SHARED") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared")
MODEL = os.path.join(SHARED, "models", "tiny-llama3-q8_0.gguf")
CAROL = "sk-test-carol-0123456789"
SECRET = "deploy with AKIAIOSFODNN7EXAMPLQ and go"
EMAIL = "someone.with.a.rather.long.address@example-company.org"
CARD = "card 4111 1111 1111 1111"
PATH = "/v1/messages/count_tokens"


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
  - {name: gpt-4o-mini, provider: oai, price: {input_per_mtok: 0.15, output_per_mtok: 0.6}}
  - {name: claude-3-5-haiku, provider: ant, upstream_model: claude-3-5-haiku-20241022, price: {input_per_mtok: 0.8, output_per_mtok: 4}}
  - {name: local-small, provider: local}
detectors:
  - {name: codename, keywords: [bluebird]}
rules:
  - {name: no-secrets, if: {detected: [secrets]}, then: {action: block}}
  - {name: cards-stay-home, if: {detected: [credit_card]}, then: {action: route, provider: local, model: local-small}}
  - {name: codenames-to-oai, if: {detected: [codename]}, then: {action: route, provider: oai, model: gpt-4o-mini}}
  - {name: mask-emails, if: {detected: [email]}, then: {action: redact, detectors: [email]}}
  - {name: default, then: {action: allow}}
audit: {dir: ./audit}
""" % (port, ALICE, CAROL, mock_port, mock_port, ANTHROPIC_REAL, MODEL)


def body(text, model="claude-3-5-haiku", **kw):
    b = {"model": model, "messages": [{"role": "user", "content": text}]}
    b.update(kw)
    return b


def count(port, b, path=PATH, **kw):
    raw = json.dumps(b).encode() if isinstance(b, dict) else b
    h = dict(ANTHROPIC_HEADERS)
    h.update(kw.pop("headers", {}))
    return raw, request(port, "POST", path, raw, headers=h, auth=kw.pop("auth", "x-api-key"), **kw)


def err_msg(r):
    j = r.json() or {}
    return j.get("type") == "error" and (j.get("error") or {}).get("message", "") or ""


def main():
    s = Suite("count_tokens")
    why = gateway_missing()
    if why:
        s.bail(why)
    local = os.path.exists(MODEL)
    mock = Mock(s)
    port = free_port()
    gw = Airlock(s, config(port, mock.port), port)
    ids = {}

    # -- a remote Anthropic provider counts the outbound body
    raw, r = count(port, body("How many tokens is this?"), headers={"anthropic-beta": "token-counting-2024-11-01"})
    up = mock.last_body()
    head = mock.last_head()
    s.check("remote: 200 with the provider's count, relayed as it sent it",
            r.status == 200 and r.body == b'{"input_tokens":%d}' % (len(up) // 4), (r, len(up)))
    s.check("remote: the provider was asked on its /v1/messages/count_tokens",
            head.startswith("POST /v1/messages/count_tokens HTTP/1.1\r\n"), head[:200])
    s.check("remote: the provider's key went up, never the client's",
            ("x-api-key: %s" % ANTHROPIC_REAL) in head and ALICE not in head, head)
    s.check("remote: anthropic-version and anthropic-beta forwarded unchanged",
            "anthropic-version: 2023-06-01" in head and "anthropic-beta: token-counting-2024-11-01" in head, head)
    s.check("remote: the model renamed to its upstream name, the rest byte for byte",
            up == raw.replace(b'"claude-3-5-haiku"', b'"claude-3-5-haiku-20241022"'), up)
    s.check("remote: x-airlock-route and x-airlock-rule",
            r.headers.get("x-airlock-route") == "ant/claude-3-5-haiku" and r.headers.get("x-airlock-rule") == "default",
            r.headers)
    ids["remote"] = (r.headers.get("x-airlock-request-id"), raw, r, up)

    # -- Claude Code's query string names the same endpoint; Bearer auth works as well
    raw, r = count(port, body("with a query"), path=PATH + "?beta=true", auth="bearer")
    head = mock.last_head()
    s.check("?beta=true: the same endpoint (200, counted upstream)",
            r.status == 200 and (r.json() or {}).get("input_tokens") == len(mock.last_body()) // 4, r)
    s.check("?beta=true: the query string is not what decides the provider's path",
            head.startswith("POST /v1/messages/count_tokens HTTP/1.1\r\n"), head[:100])

    # -- a secret: 403 in Anthropic's shape, nothing leaves
    before = mock.stats()["requests"]
    raw, r = count(port, body(SECRET))
    j = r.json() or {}
    s.check("secret: 403 in Anthropic's error shape naming the rule, not the value",
            r.status == 403 and j.get("type") == "error" and "no-secrets" in err_msg(r)
            and "AKIAIOSFODNN7EXAMPLQ" not in r.body.decode(), r)
    s.check("secret: nothing reached the provider", mock.stats()["requests"] == before)
    ids["secret"] = (r.headers.get("x-airlock-request-id"), raw, r, None)

    # -- an e-mail: the redacted body is the one counted
    raw, r = count(port, body("write to %s about the invoice" % EMAIL))
    up = mock.last_body()
    n = (r.json() or {}).get("input_tokens")
    plain = raw.replace(b'"claude-3-5-haiku"', b'"claude-3-5-haiku-20241022"')
    s.check("email: 200, rule mask-emails", r.status == 200 and r.headers.get("x-airlock-rule") == "mask-emails", r)
    s.check("email: the provider received the placeholder, not the address",
            EMAIL.encode() not in up and b"[EMAIL_1_" in up, up)
    s.check("email: the count is of the redacted body, not of the original",
            n == len(up) // 4 and n != len(plain) // 4, (n, len(up), len(plain)))
    s.check("email: the count is relayed unchanged (nothing to restore)",
            r.body == b'{"input_tokens":%d}' % (len(up) // 4), r.body)
    ids["email"] = (r.headers.get("x-airlock-request-id"), raw, r, up)

    # -- routes to an OpenAI-type provider cannot be counted
    before = mock.stats()["requests"]
    raw, r = count(port, body("hello", model="gpt-4o-mini"))
    s.check("openai model: 400 naming the route", r.status == 400 and "oai/gpt-4o-mini" in err_msg(r)
            and "OpenAI" in err_msg(r), r)
    raw, r = count(port, body("the bluebird project"))
    s.check("policy route to an openai provider: 400 naming the route",
            r.status == 400 and "oai/gpt-4o-mini" in err_msg(r), r)
    s.check("openai routes: nothing reached the provider", mock.stats()["requests"] == before)

    # -- what the count has not got, and ordinary request errors
    raw, r = count(port, body("hi", stream=True))
    s.check("stream: 400, nothing left", r.status == 400 and "stream" in err_msg(r)
            and mock.stats()["requests"] == before, r)
    raw, r = count(port, body("hi", model="no-such-model"))
    s.check("unknown model: 404 as on /v1/messages", r.status == 404, r)
    raw, r = count(port, {"model": "claude-3-5-haiku"})
    s.check("no messages: 400", r.status == 400, r)
    r = request(port, "GET", PATH)
    s.check("GET: 405", r.status == 405, r)
    raw, r = count(port, body("hi"), key="")
    s.check("no key: 401", r.status == 401, r)
    raw, r = count(port, body("MOCK:status_429"))
    s.check("the provider's 429 is passed on", r.status == 429, r)

    # -- the decision is /v1/messages's for the same body
    cases = [("plain", "just text"), ("secret", SECRET), ("email", "mail " + EMAIL),
             ("codename", "bluebird"), ("unknown model", None)]
    if local:
        cases.append(("card", CARD))
    for name, text in cases:
        b = body(text) if text is not None else body("x", model="no-such-model")
        _, rc = count(port, b)
        rm = request(port, "POST", "/v1/messages", dict(b, max_tokens=4), headers=ANTHROPIC_HEADERS, auth="x-api-key")
        same = (rc.headers.get("x-airlock-rule") == rm.headers.get("x-airlock-rule")
                and rc.headers.get("x-airlock-route") == rm.headers.get("x-airlock-route"))
        # statuses agree except where only a count is refused (an OpenAI route)
        if name != "codename":
            same = same and rc.status == rm.status
        s.check("decided as /v1/messages: %s" % name, same,
                (rc.status, rm.status, rc.headers.get("x-airlock-rule"), rm.headers.get("x-airlock-rule")))

    # -- kept local: the local tokenizer's count after the chat template
    if not local:
        s.skip("builtin route", "test model %s not found" % MODEL)
    else:
        before = mock.stats()["requests"]
        lb = body(CARD, system="be brief")
        raw, r = count(port, lb)
        n = (r.json() or {}).get("input_tokens")
        rm = request(port, "POST", "/v1/messages", dict(lb, max_tokens=1), headers=ANTHROPIC_HEADERS, auth="x-api-key")
        engine_n = ((rm.json() or {}).get("usage") or {}).get("input_tokens")
        s.check("builtin route: 200 from the local model", r.status == 200
                and r.headers.get("x-airlock-route") == "local/local-small"
                and r.headers.get("x-airlock-rule") == "cards-stay-home", r)
        s.check("builtin route: the count equals the engine's prompt tokens for the same body",
                isinstance(n, int) and n > 5 and n == engine_n, (n, engine_n, rm.body[:300]))
        s.check("builtin route: the answer is just the count", r.body == b'{"input_tokens":%d}' % (n or 0), r.body)
        s.check("builtin route: nothing reached the provider", mock.stats()["requests"] == before)
        ids["local"] = (r.headers.get("x-airlock-request-id"), raw, r, None)
        # the template counts: more turns, more tokens, each matching the engine
        conv = {"model": "local-small", "system": "s", "messages": [
            {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
            {"role": "user", "content": [{"type": "text", "text": "and "}, {"type": "text", "text": "now?"}]}]}
        _, r = count(port, conv)
        rm = request(port, "POST", "/v1/messages", dict(conv, max_tokens=1), headers=ANTHROPIC_HEADERS, auth="x-api-key")
        s.check("builtin: a conversation's count equals the engine's prompt tokens",
                r.status == 200 and (r.json() or {}).get("input_tokens")
                == ((rm.json() or {}).get("usage") or {}).get("input_tokens"), (r, rm.body[:200]))
        # a prompt longer than the local context is still counted (it could not be run)
        long_text = " ".join("word%d" % i for i in range(400))
        _, r = count(port, body(long_text, model="local-small"))
        s.check("builtin: a prompt over the context is counted, not refused",
                r.status == 200 and (r.json() or {}).get("input_tokens", 0) > 256, r)
        _, r = count(port, {"model": "local-small", "messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}}]}]})
        s.check("builtin: non-text content is a 400 (text only)", r.status == 400 and "text only" in err_msg(r), r)

    # -- budgets: counting is free, so a spent budget does not refuse it
    r = request(port, "POST", "/v1/messages", dict(body("MOCK:usage=1000000,1000000"), max_tokens=8),
                headers=ANTHROPIC_HEADERS, key=CAROL, auth="x-api-key")
    s.check("budget: carol spends hers", r.status == 200, r)
    r = request(port, "POST", "/v1/messages", dict(body("again"), max_tokens=8), headers=ANTHROPIC_HEADERS,
                key=CAROL, auth="x-api-key")
    s.check("budget: her next message gets 429", r.status == 429, r)
    _, r = count(port, body("how long is this?"), key=CAROL)
    s.check("budget: her count is still answered (counting costs nothing)", r.status == 200, r)

    # -- /metrics counts the endpoint by name
    m = request(port, "GET", "/metrics", key=None).body.decode()

    def metric(endpoint, status):
        total = 0
        for line in m.splitlines():
            if line.startswith("airlock_requests_total{") and ('endpoint="%s"' % endpoint) in line \
                    and ('status="%d"' % status) in line:
                total += int(line.rsplit(" ", 1)[1])
        return total
    s.check("metrics: requests_total has an endpoint label for count_tokens",
            metric(PATH, 200) >= 4 and metric(PATH, 403) >= 1 and metric(PATH, 400) >= 2,
            [ln for ln in m.splitlines() if "count_tokens" in ln])
    s.check("metrics: /v1/messages counted apart", metric("/v1/messages", 200) >= 1
            and all('endpoint="' in ln for ln in m.splitlines() if ln.startswith("airlock_requests_total{")),
            [ln for ln in m.splitlines() if ln.startswith("airlock_requests_total{")][:6])
    cost0 = re.search(r"\nairlock_cost_usd_total ([0-9.]+)", m)
    count(port, body("one more count"))
    if local:
        count(port, body(CARD))
    cost1 = re.search(r"\nairlock_cost_usd_total ([0-9.]+)", request(port, "GET", "/metrics", key=None).body.decode())
    s.check("metrics: counts add no cost", cost0 and cost1 and float(cost0.group(1)) > 0
            and cost0.group(1) == cost1.group(1), (cost0 and cost0.group(1), cost1 and cost1.group(1)))
    gw.stop()

    # -- the audit: both records, all four byte streams, no cost
    rc, recs = audit_records(os.path.join(gw.dir, "audit"))
    by = {}
    for rec in recs:
        mm = rec.get("meta") or {}
        by.setdefault(mm.get("id"), {})[rec.get("type")] = rec
    for name in ("remote", "email", "secret", "local"):
        if name not in ids:
            continue
        rid, raw, r, up = ids[name]
        req, resp = by.get(rid, {}).get("request"), by.get(rid, {}).get("response")
        rm, pm = (req or {}).get("meta") or {}, (resp or {}).get("meta") or {}
        s.check("audit %s: a request record for the endpoint with the inbound bytes" % name,
                req is not None and rm.get("endpoint") == PATH and rm.get("api") == "anthropic"
                and blob(req, "inbound") == raw, rm)
        if up is not None:
            s.check("audit %s: the outbound bytes are what the provider received" % name,
                    blob(req, "outbound") == up, (blob(req, "outbound"), up))
            s.check("audit %s: the upstream and client bytes are the count" % name,
                    blob(resp, "upstream") == r.body and blob(resp, "client") == r.body, resp)
        else:
            s.check("audit %s: no outbound bytes (nothing left)" % name, req is not None and blob(req, "outbound") is None, req)
            s.check("audit %s: the client bytes are what the client got" % name,
                    resp is not None and blob(resp, "client") == r.body, resp)
        s.check("audit %s: the response record has the status and no cost" % name,
                pm.get("status") == r.status and pm.get("cost_usd", 1) == 0, pm)
    m = (by.get(ids["email"][0], {}).get("request") or {}).get("meta") or {}
    s.check("audit email: the record names the redaction, not the address",
            m.get("verdict") == "redact" and any(f.get("detector") == "email" for f in m.get("findings", []))
            and EMAIL not in json.dumps(m), m)
    s.done()


if __name__ == "__main__":
    main()
