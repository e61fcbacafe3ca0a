"""copy_test.py -- byte-exact means fail closed: when the audit's copy of an answer cannot be
kept (AIRLOCK_FAULT_COPY=N makes the Nth copy fail as if memory ran out), the bytes are not
sent either. A whole answer becomes a 503 that the audit holds; a stream stops where the
copy stopped, and the record's client bytes are exactly what the client received. Either
way the response record says `payload_incomplete`, never silently short."""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gateway_test import audit_records, blob  # noqa: E402
from itest import Airlock, Mock, Suite, base_config, chat, free_port, gateway_missing, request  # noqa: E402


def response_for(recs, rid):
    for rec in recs:
        m = rec.get("meta") or {}
        if rec.get("type") == "response" and m.get("id") == rid:
            return rec
    return None


def dechunk(raw):
    """the body of a chunked HTTP answer as the client read it (http.client already did)"""
    return raw


def t_whole_answer(s, mock):
    port = free_port()
    gw = Airlock(s, base_config(port, mock.port), port, env={"AIRLOCK_FAULT_COPY": "1"}, name="copy1")
    before = mock.stats()["requests"]
    r = request(port, "POST", "/v1/chat/completions", chat("hello"))
    s.check("copy lost, whole answer: 503 in the OpenAI shape",
            r.status == 503 and "audit copy" in ((r.json() or {}).get("error") or {}).get("message", ""), r)
    s.check("the provider was asked (the copy failed on the answer)", mock.stats()["requests"] == before + 1)
    r2 = request(port, "POST", "/v1/chat/completions", chat("hello again"))
    s.check("the next request is served normally", r2.status == 200, r2)
    gw.stop()
    rc, recs = audit_records(os.path.join(gw.dir, "audit"))
    rec = response_for(recs, r.headers.get("x-airlock-request-id"))
    meta = (rec or {}).get("meta") or {}
    s.check("its response record says payload_incomplete and holds the 503 the client got",
            rec is not None and meta.get("payload_incomplete") is True and meta.get("status") == 503
            and blob(rec, "client") == r.body, (meta, rec and blob(rec, "client"), r.body))
    ok = response_for(recs, r2.headers.get("x-airlock-request-id"))
    s.check("a normal record has no payload_incomplete",
            ok is not None and "payload_incomplete" not in (ok.get("meta") or {}), ok)


def t_stream(s, mock):
    port = free_port()
    # copies: the first delta events succeed, the 4th fails mid-stream
    gw = Airlock(s, base_config(port, mock.port), port, env={"AIRLOCK_FAULT_COPY": "4"}, name="copy4")
    r = request(port, "POST", "/v1/chat/completions",
                chat("MOCK:words=40 tell me a long story", stream=True))
    gw.stop()
    rc, recs = audit_records(os.path.join(gw.dir, "audit"))
    rec = response_for(recs, r.headers.get("x-airlock-request-id"))
    meta = (rec or {}).get("meta") or {}
    kept = rec and blob(rec, "client")
    s.check("copy lost mid-stream: the stream stopped short (no [DONE])",
            r.status == 200 and b"data: [DONE]" not in r.body and b"data: " in r.body, r.body[-200:])
    s.check("the record's client bytes are exactly what the client received",
            kept == r.body, (len(kept or b""), len(r.body)))
    s.check("and the record says payload_incomplete", meta.get("payload_incomplete") is True, meta)


def main():
    s = Suite("copy")
    why = gateway_missing()
    if why:
        s.bail(why)
    mock = Mock(s)
    s.run(t_whole_answer, mock)
    s.run(t_stream, mock)
    s.done()


if __name__ == "__main__":
    main()
