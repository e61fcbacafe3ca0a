"""keymask_test.py -- a provider key never reaches a client or the audit (SPEC §5): a
provider that echoes the credential it was sent (OpenAI's 401 does: "Incorrect API key
provided: sk-...") has every occurrence masked before the answer is relayed (whole, or
event by event in a stream, in the client's format or translated) and before the
upstream and client bytes are recorded. The one deliberate change to the byte-exact
streams; everything else in those answers is unchanged."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gateway_test import audit_records, blob  # noqa: E402
from itest import (ANTHROPIC_HEADERS, ANTHROPIC_REAL, OPENAI_REAL, Airlock, Mock, Suite,  # noqa: E402
                   base_config, chat, free_port, gateway_missing, messages, request)


def main():
    s = Suite("keymask")
    why = gateway_missing()
    if why:
        s.bail(why)
    mock = Mock(s)
    port = free_port()
    gw = Airlock(s, base_config(port, mock.port), port)
    keys = (OPENAI_REAL.encode(), ANTHROPIC_REAL.encode())
    cases = [
        ("openai 401 echo", "/v1/chat/completions", chat("MOCK:echo_key hi"), None, OPENAI_REAL),
        ("openai stream echo", "/v1/chat/completions", chat("MOCK:echo_key hi", stream=True), None, OPENAI_REAL),
        ("anthropic stream echo", "/v1/messages", messages("MOCK:echo_key hi", stream=True), ANTHROPIC_HEADERS,
         ANTHROPIC_REAL),
        ("translated stream echo", "/v1/chat/completions",
         chat("MOCK:echo_key hi", model="claude-3-5-haiku", stream=True), None, ANTHROPIC_REAL),
    ]
    ids = []
    for name, path, body, headers, key in cases:
        r = request(port, "POST", path, body, headers=headers)
        ids.append((name, r.headers.get("x-airlock-request-id"), key))
        s.check("%s: the key is not in the client's answer" % name,
                all(k not in r.body for k in keys) and b"*" * 8 in r.body, (r.status, r.body[:300]))
    r = request(port, "POST", "/v1/chat/completions", chat("MOCK:echo_key hi"))
    s.check("the provider's 401 is still a 502 naming the provider, the key masked",
            r.status == 502 and b"Incorrect API key provided: ****" in r.body, r)
    gw.stop()
    rc, recs = audit_records(os.path.join(gw.dir, "audit"))
    for name, rid, key in ids:
        resp = next((x for x in recs if x.get("type") == "response" and (x.get("meta") or {}).get("id") == rid), None)
        up, cl = (blob(resp, "upstream"), blob(resp, "client")) if resp else (None, None)
        s.check("%s: the audit's upstream and client bytes hold no key" % name,
                up is not None and cl is not None and all(k not in up and k not in cl for k in keys)
                and b"*" * len(key) in up, (up or b"")[:200])
    s.done()


if __name__ == "__main__":
    main()
