"""mailbox_test.py -- worker threads' results reach the event loop when memory runs out.

AIRLOCK_MAILBOX_FAULT_ALLOC=N makes the Nth copying post to the mailbox fail (N+: that
one and every later one), as a failed malloc would. Only the built-in engine's text
pieces are copied; the results that end a piece of work (an audit record's sync, an
engine job's end, a reload's snapshot) travel in nodes of their own objects and cannot
fail. Checked here: a local answer that loses a piece ends promptly with a clear error
(500, or an error event in a stream) and is audited; remote requests with sync: always
audit records, and SIGHUP reloads, keep working while every copying post fails; a
single lost piece spoils only its own request; the gateway exits cleanly (sanitizer
builds: no leak, no memory error).
"""
import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from itest import (AIRLOCK, ALICE, ANTHROPIC_HEADERS, Airlock, Mock, Suite, free_port,  # noqa: E402
                   gateway_missing, openai_stream_text, request, sse_events)

SHARED = os.environ.get("AIRLOCK_SHARED") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared")
MODEL = os.path.join(SHARED, "models", "tiny-llama3-q8_0.gguf")
DEFAULT_ANSWER = "Hello from the mock provider, a deterministic answer."
LOST = "ran out of memory while relaying the local model's answer"


def config(port, mock_port, extra_model=""):
    return """listen: [{address: "127.0.0.1:%d"}]
keys: [{name: alice, team: red, key: "%s"}]
providers:
  oai: {type: openai, base_url: "http://127.0.0.1:%d/v1", api_key: "${MOCK_OPENAI_KEY}"}
  local: {type: builtin, model: "%s", context: 256, threads: 1}
models:
  - {name: gpt-4o-mini, provider: oai}
  - {name: local-small, provider: local}
%srules:
  - {name: default, then: {action: allow}}
audit: {dir: ./audit, sync: always}
""" % (port, ALICE, mock_port, MODEL, extra_model)


def local(port, stream=False, api="openai", n=12):
    msgs = [{"role": "user", "content": "hello"}]
    if api == "anthropic":
        return request(port, "POST", "/v1/messages",
                       {"model": "local-small", "max_tokens": n, "stream": stream, "messages": msgs},
                       headers=ANTHROPIC_HEADERS, auth="x-api-key", timeout=15)
    return request(port, "POST", "/v1/chat/completions",
                   {"model": "local-small", "max_tokens": n, "stream": stream, "messages": msgs},
                   timeout=15)


def remote(port, model="gpt-4o-mini"):
    return request(port, "POST", "/v1/chat/completions",
                   {"model": model, "messages": [{"role": "user", "content": "hi"}]}, timeout=15)


def error_message(r):
    j = r.json() or {}
    return (j.get("error") or {}).get("message", "")


def audit_types(audit_dir):
    show = subprocess.run([AIRLOCK, "audit", "show", audit_dir], capture_output=True, text=True,
                          timeout=60)
    have = {}
    for line in show.stdout.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        mid = (rec.get("meta") or {}).get("id")
        if mid:
            have.setdefault(mid, {})[rec.get("type")] = rec.get("meta") or {}
    return have


def wait_for(fn, timeout=10.0):
    end = time.time() + timeout
    while time.time() < end:
        if fn():
            return True
        time.sleep(0.05)
    return False


def every_post_fails(s, mock):
    port = free_port()
    gw = Airlock(s, config(port, mock.port), port, env={"AIRLOCK_MAILBOX_FAULT_ALLOC": "1+"},
                 name="mailbox-all")
    ids = []

    r = local(port)
    s.check("every post fails: a local answer ends with a 500 at once (not a hang)",
            r.status == 500 and r.elapsed < 10, r)
    s.check("... whose message says the answer was cut short", LOST in error_message(r), r)
    ids.append(r.headers.get("x-airlock-request-id"))

    r = local(port, api="anthropic")
    j = r.json() or {}
    s.check("anthropic: the same, in Anthropic's error shape",
            r.status == 500 and j.get("type") == "error" and LOST in (j.get("error") or {}).get("message", ""), r)
    ids.append(r.headers.get("x-airlock-request-id"))

    r = local(port, stream=True)
    evs = [json.loads(d) for _, d in sse_events(r.body) if d and d != "[DONE]"]
    errs = [e for e in evs if "error" in e]
    s.check("streamed: the stream ends with an error event naming the loss",
            r.status == 200 and errs and LOST in errs[-1]["error"].get("message", ""), r)
    s.check("streamed: no text after the hole", not openai_stream_text(r.body)[0], r)
    s.check("streamed: the error event carries the gateway's 500, as the unstreamed answer does",
            errs and str(errs[-1]["error"].get("code")) == "500", r)
    ids.append(r.headers.get("x-airlock-request-id"))

    r = local(port, stream=True, api="anthropic")
    evs = sse_events(r.body)
    s.check("anthropic streamed: an error event",
            r.status == 200 and any(ev == "error" and LOST in d for ev, d in evs), r)
    ids.append(r.headers.get("x-airlock-request-id"))

    # the audit callbacks (sync: always) need no allocation
    for i in range(3):
        r = remote(port)
        j = r.json() or {}
        s.check("remote request %d answered with its records synced" % i,
                r.status == 200 and (j.get("choices") or [{}])[0].get("message", {}).get("content")
                == DEFAULT_ANSWER, r)
        ids.append(r.headers.get("x-airlock-request-id"))

    # reloads: the thread's result needs no allocation, and one reload does not block the next
    for i in range(3):
        with open(gw.config, "w") as f:
            f.write(config(port, mock.port, extra_model="  - {name: extra-%d, provider: oai}\n" % i))
        gw.signal(signal.SIGHUP)
        s.check("reload %d applies while every post fails" % i,
                wait_for(lambda: remote(port, "extra-%d" % i).status == 200), gw.stderr()[-600:])
    s.check("three reloads logged", gw.stderr().count("reloaded ") == 3, gw.stderr()[-600:])

    r = local(port)
    s.check("after the reloads, local answers still end with the clear error", r.status == 500
            and LOST in error_message(r), r)
    s.check("gateway exits cleanly", gw.stop() == 0, gw.stderr()[-800:])
    have = audit_types(os.path.join(gw.dir, "audit"))
    missing = [i for i in ids if set(have.get(i, {})) != {"request", "response"}]
    s.check("every request has its request and response records", not missing, missing)
    statuses = [have.get(i, {}).get("response", {}).get("status") for i in ids[:4]]
    s.check("the cut-short answers are recorded as failed", all(st and st != 200 for st in statuses[:2]),
            statuses)


def one_post_fails(s, mock):
    port = free_port()
    gw = Airlock(s, config(port, mock.port), port, env={"AIRLOCK_MAILBOX_FAULT_ALLOC": "3"},
                 name="mailbox-one")
    r = local(port)
    s.check("the 3rd post fails: the request it belonged to gets the 500", r.status == 500
            and LOST in error_message(r), r)
    r = local(port)
    u = (r.json() or {}).get("usage", {})
    s.check("the next local request is answered in full", r.status == 200
            and u.get("completion_tokens") == 12, r)
    r = local(port, stream=True)
    text = openai_stream_text(r.body)[0]
    s.check("and a streamed one too", r.status == 200 and text and b"error" not in r.body, r)
    s.check("the loss was logged", "was lost (out of memory)" in gw.stderr(), gw.stderr()[-600:])
    s.check("gateway exits cleanly", gw.stop() == 0, gw.stderr()[-800:])


def main():
    s = Suite("mailbox")
    why = gateway_missing()
    if why:
        s.bail(why)
    if not os.path.exists(MODEL):
        s.bail("test model %s not found" % MODEL)
    mock = Mock(s)
    every_post_fails(s, mock)
    one_post_fails(s, mock)
    s.done()


if __name__ == "__main__":
    main()
