"""refused_test.py -- every request gets a request record, refused ones included (SPEC
§5.1): a 401, a 400 (a repeated member), a 403 (a secret), a 404 (an unknown model) and a
429 (a spent budget) each leave a request record with the inbound bytes exactly as sent
and what was decided (verdict, rule, findings; no outbound bytes: nothing left), and a
response record with the answer the client got. And budgets hold for streams: a stream is
billed from its parsed usage however the provider spaces it, and the usage chunk the
gateway asked for reaches only a client that asked for it."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gateway_test import audit_records, blob  # noqa: E402
from itest import (Airlock, Mock, Suite, base_config, chat, free_port, gateway_missing,  # noqa: E402
                   request)

CAROL = "sk-test-carol-0123456789"
DAVE = "sk-test-dave-0123456789"
SECRET = "deploy with AKIAIOSFODNN7EXAMPLQ and go"


def main():
    s = Suite("refused")
    why = gateway_missing()
    if why:
        s.bail(why)
    mock = Mock(s)
    port = free_port()
    cfg = base_config(port, mock.port)
    cfg = cfg.replace("keys:\n", 'keys:\n  - {name: carol, team: green, key: "%s", budget_usd_per_day: 0.01}\n'
                      '  - {name: dave, team: green, key: "%s", budget_usd_per_day: 0.00001}\n' % (CAROL, DAVE), 1)
    gw = Airlock(s, cfg, port)
    sent = {}

    def go(name, body, key=None, want=None):
        raw = json.dumps(body).encode() if isinstance(body, dict) else body
        kw = {} if key is None else {"key": key}
        r = request(port, "POST", "/v1/chat/completions", raw, **kw)
        s.check("%s: %d" % (name, want), r.status == want, r)
        sent[name] = (r.headers.get("x-airlock-request-id"), raw, r)

    go("no key", chat("hello"), key="", want=401)
    go("repeated member", b'{"model":"gpt-4o-mini","model":"bob-only","messages":[]}', want=400)
    go("secret", chat(SECRET), want=403)
    go("unknown model", chat("hi", model="no-such-model"), want=404)
    r = request(port, "POST", "/v1/chat/completions", chat("MOCK:usage=1000000,1000000"), key=CAROL)
    s.check("spend the budget: 200", r.status == 200, r)
    go("spent budget", chat("again"), key=CAROL, want=429)
    before = mock.stats()["requests"]
    s.check("the provider saw only the one request that was allowed", before == 1, before)

    # streams are billed from their parsed usage, however the provider spaces it, so a
    # budget holds for them too; the usage chunk the gateway asked for never reaches a
    # client that did not ask for it
    statuses = []
    for i in range(4):
        r = request(port, "POST", "/v1/chat/completions", chat("MOCK:spaced story %d" % i, stream=True), key=DAVE)
        statuses.append(r.status)
        if i == 0:
            s.check("stream: the usage chunk the client did not ask for is not relayed",
                    r.status == 200 and b'"usage": {' not in r.body and b'"usage":{' not in r.body
                    and b"data: [DONE]" in r.body, r.body[-300:])
    s.check("stream: billed from its spaced usage, so the tiny budget stops the next ones (429)",
            statuses[0] == 200 and statuses[1:] == [429, 429, 429], statuses)
    r = request(port, "POST", "/v1/chat/completions",
                chat("MOCK:spaced asked", stream=True, stream_options={"include_usage": True}))
    s.check("stream: a client that asked for usage gets the provider's usage chunk",
            b'"usage": {' in r.body and b'"prompt_tokens": ' in r.body, r.body[-400:])
    gw.stop()

    rc, recs = audit_records(os.path.join(gw.dir, "audit"))
    by = {}
    for rec in recs:
        m = rec.get("meta") or {}
        by.setdefault(m.get("id"), {})[rec.get("type")] = rec
    for name, (rid, raw, r) in sent.items():
        req, resp = by.get(rid, {}).get("request"), by.get(rid, {}).get("response")
        s.check("%s: a request record with the inbound bytes exactly" % name,
                req is not None and blob(req, "inbound") == raw, (rid, req and blob(req, "inbound")))
        s.check("%s: no outbound bytes recorded (nothing left)" % name,
                req is not None and blob(req, "outbound") is None, req)
        s.check("%s: a response record with the status and answer the client got" % name,
                resp is not None and (resp.get("meta") or {}).get("status") == r.status
                and blob(resp, "client") == r.body, resp and resp.get("meta"))
    m = (by.get(sent["secret"][0], {}).get("request") or {}).get("meta") or {}
    s.check("403: the record names verdict, rule and findings (not the value)",
            m.get("verdict") == "block" and m.get("rule") == "no-secrets"
            and any(f.get("detector") == "aws_access_key" for f in m.get("findings", []))
            and "AKIAIOSFODNN7EXAMPLQ" not in json.dumps(m), m)
    m = (by.get(sent["spent budget"][0], {}).get("request") or {}).get("meta") or {}
    s.check("429: the record names the key and the allow it was decided", m.get("key") == "carol"
            and m.get("verdict") == "allow", m)
    s.done()


if __name__ == "__main__":
    main()
