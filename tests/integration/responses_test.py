"""responses_test.py -- POST /v1/responses and /v1/responses/compact (SPEC §3, issue 14).

A Responses body is decided like every prompt: instructions, input (a string or items:
messages, function calls and their outputs, reasoning) and tools are scanned; a secret is
refused (403, nothing leaves); an e-mail is redacted and its placeholder restored in every
place an answer carries text -- response.output_text.delta split one character per event,
function_call_arguments.delta, reasoning summaries, the *.done events, the items, and the
response object of response.completed -- and whole in a non-streamed answer; the client's
deltas add up to the done texts. An OpenAI provider gets the body at its /v1/responses
(model renamed, no stream_options), usage (cached and reasoning tokens) is priced from
response.completed. The built-in engine answers in the Responses format, streamed or not;
on a local route previous_response_id, hosted tools and background are refused with 400.
A route to an Anthropic provider is translated when text-only. A WebSocket upgrade gets
426; /v1/responses/compact is decided as a response and passed through; openai-beta is
forwarded. Every stream the gateway sends is checked against the Responses event grammar
(event names, type, consecutive sequence numbers, the final response object). The audit
holds the four byte streams; /metrics counts both endpoints."""
import json
import os
import socket
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
RESP = "/v1/responses"
COMPACT = "/v1/responses/compact"


def config(port, mock_port):
    return """listen: [{address: "127.0.0.1:%d"}]
keys:
  - {name: alice, team: red, key: "%s"}
  - {name: carol, team: green, key: "%s", budget_usd_per_day: 0.01}
providers:
  oai: {type: openai, base_url: "http://127.0.0.1:%d/v1", api_key: "${MOCK_OPENAI_KEY}"}
  ant: {type: anthropic, base_url: "http://127.0.0.1:%d", api_key: "%s"}
  local: {type: builtin, model: "%s", context: 512}
models:
  - {name: gpt-5, provider: oai, upstream_model: gpt-5-2025-08-07, price: {input_per_mtok: 1.25, output_per_mtok: 10, cached_input_per_mtok: 0.125}}
  - {name: claude-3-5-haiku, provider: ant, upstream_model: claude-3-5-haiku-20241022, price: {input_per_mtok: 0.8, output_per_mtok: 4}}
  - {name: local-small, provider: local}
rules:
  - {name: no-secrets, if: {detected: [secrets]}, then: {action: block}}
  - {name: cards-stay-home, if: {detected: [credit_card]}, then: {action: route, provider: local, model: local-small}}
  - {name: mask-emails, if: {detected: [email]}, then: {action: redact, detectors: [email]}}
  - {name: default, then: {action: allow}}
audit: {dir: ./audit}
""" % (port, ALICE, CAROL, mock_port, mock_port, ANTHROPIC_REAL, MODEL)


def resp(inp, model="gpt-5", **kw):
    b = {"model": model, "input": inp}
    b.update(kw)
    return b


def post(port, path, b, **kw):
    raw = json.dumps(b).encode()
    return raw, request(port, "POST", path, raw, **kw)


def err_msg(r):
    return ((r.json() or {}).get("error") or {}).get("message", "")


# ---- the client's side: the Responses event grammar, as the openai SDK and Codex read it

DELTAS = {
    "response.output_text.delta": ("response.output_text.done", "text", "content_index"),
    "response.refusal.delta": ("response.refusal.done", "refusal", "content_index"),
    "response.function_call_arguments.delta": ("response.function_call_arguments.done", "arguments", None),
    "response.reasoning_summary_text.delta": ("response.reasoning_summary_text.done", "text", "summary_index"),
    "response.reasoning_text.delta": ("response.reasoning_text.done", "text", "content_index"),
}
TERMINAL = ("response.completed", "response.incomplete", "response.failed")


def check_grammar(body):
    """Parse a Responses SSE body as a strict client would. Returns (problems, events, texts):
    texts maps (kind, output_index, sub) to (concatenated deltas, done text)."""
    problems, events, texts = [], [], {}
    for ev, data in sse_events(body):
        try:
            j = json.loads(data)
        except ValueError:
            problems.append("not JSON: %r" % data[:80])
            continue
        events.append(j)
        t = j.get("type")
        if not isinstance(t, str):
            problems.append("no type: %r" % data[:80])
            continue
        if ev != t:
            problems.append("event line %r differs from type %r" % (ev, t))
        if not isinstance(j.get("sequence_number"), int):
            problems.append("%s has no sequence_number" % t)
        if t in DELTAS:
            done, field, sub = DELTAS[t]
            if not isinstance(j.get("delta"), str) or not isinstance(j.get("output_index"), int) \
                    or (sub and not isinstance(j.get(sub), int)) or not isinstance(j.get("item_id"), str):
                problems.append("%s lacks delta/item_id/output_index/%s" % (t, sub))
                continue
            k = (done, j["output_index"], j.get(sub) if sub else 0)
            texts.setdefault(k, ["", None])[0] += j["delta"]
        for d, (done, field, sub) in DELTAS.items():
            if t == done:
                k = (done, j.get("output_index"), j.get(sub) if sub else 0)
                texts.setdefault(k, ["", None])[1] = j.get(field)
        if t in ("response.output_item.added", "response.output_item.done") and not isinstance(j.get("item"), dict):
            problems.append("%s without item" % t)
        if t.startswith("response.") and t in TERMINAL + ("response.created", "response.in_progress"):
            r = j.get("response") or {}
            if not (isinstance(r.get("id"), str) and r.get("object") == "response"
                    and isinstance(r.get("created_at"), (int, float)) and isinstance(r.get("output"), list)
                    and isinstance(r.get("model"), str)):
                problems.append("%s: response object malformed: %r" % (t, r))
    seqs = [e.get("sequence_number") for e in events]
    if seqs != list(range(len(seqs))):
        problems.append("sequence numbers not 0..n-1: %r" % seqs)
    if not events or events[0].get("type") != "response.created":
        problems.append("first event is not response.created")
    if events and events[-1].get("type") not in TERMINAL and events[-1].get("type") != "error":
        problems.append("last event %r is not terminal" % events[-1].get("type"))
    for k, (deltas, done) in texts.items():
        if done is not None and deltas != done:
            problems.append("%s[%s]: deltas %r != done %r" % (k[0], k[1], deltas, done))
    if events and events[-1].get("type") == "response.completed":
        u = (events[-1].get("response") or {}).get("usage") or {}
        for f in ("input_tokens", "output_tokens", "total_tokens"):
            if not isinstance(u.get(f), int):
                problems.append("completed usage lacks %s: %r" % (f, u))
        if not isinstance((u.get("input_tokens_details") or {}).get("cached_tokens"), int) or \
                not isinstance((u.get("output_tokens_details") or {}).get("reasoning_tokens"), int):
            problems.append("completed usage lacks details: %r" % u)
    return problems, events, {k: v for k, v in texts.items()}


def by_type(events, t):
    return [e for e in events if e.get("type") == t]


def final_text(resp_obj):
    """the output_text of a response object, as the SDK's convenience property has it"""
    out = ""
    for it in resp_obj.get("output") or []:
        if it.get("type") == "message":
            for p in it.get("content") or []:
                if p.get("type") == "output_text":
                    out += p.get("text", "")
    return out


def main():
    s = Suite("responses")
    why = gateway_missing()
    if why:
        s.bail(why)
    local = os.path.exists(MODEL)
    mock = Mock(s)
    port = free_port()
    gw = Airlock(s, config(port, mock.port), port)
    ids = {}

    # -- plain, whole: passed through to the provider's /v1/responses
    raw, r = post(port, RESP, resp("Say hello", instructions="Be brief."))
    up, head = mock.last_body(), mock.last_head()
    j = r.json() or {}
    s.check("plain: 200, a response object with an output_text message and usage",
            r.status == 200 and j.get("object") == "response" and j.get("status") == "completed"
            and final_text(j).startswith("Hello from the mock") and j["usage"]["input_tokens"] == len(up) // 4, r)
    s.check("plain: asked at the provider's /v1/responses with the provider's key",
            head.startswith("POST /v1/responses HTTP/1.1\r\n") and ALICE not in head
            and "authorization: Bearer %s" % OPENAI_REAL in head, head[:300])
    s.check("plain: the model renamed, the rest byte for byte",
            up == raw.replace(b'"gpt-5"', b'"gpt-5-2025-08-07"'), up)
    s.check("plain: x-airlock-route and rule",
            r.headers.get("x-airlock-route") == "oai/gpt-5" and r.headers.get("x-airlock-rule") == "default", r.headers)
    ids["plain"] = (r.headers.get("x-airlock-request-id"), raw, r, up, RESP)

    # -- a query string does not change the endpoint; openai-beta forwarded
    raw, r = post(port, RESP + "?x=1", resp("hi"), headers={"openai-beta": "responses=experimental"})
    head = mock.last_head()
    s.check("query string ignored; openai-beta forwarded unchanged",
            r.status == 200 and head.startswith("POST /v1/responses HTTP") and "openai-beta: responses=experimental\r\n" in head, head[:300])
    raw, r = post(port, RESP, resp("hi"), headers={"openai-beta": "tools;drop"})
    s.check("openai-beta outside its grammar: 400", r.status == 400 and "openai-beta" in err_msg(r), r)

    # -- streamed: the provider's events relayed, no stream_options asked
    raw, r = post(port, RESP, resp("Say hello", stream=True))
    up = json.loads(mock.last_body())
    probs, evs, texts = check_grammar(r.body)
    done = by_type(evs, "response.completed")
    s.check("stream: 200 SSE in the Responses grammar", r.status == 200 and "text/event-stream" in
            r.headers.get("content-type", "") and not probs, probs or r.body[:300])
    s.check("stream: no stream_options sent (Responses has none)", "stream_options" not in up, up)
    s.check("stream: text deltas, done text and completed output agree",
            done and final_text(done[0]["response"]).startswith("Hello from the mock")
            and texts[("response.output_text.done", 0, 0)][0] == final_text(done[0]["response"]), texts)
    ids["stream"] = (r.headers.get("x-airlock-request-id"), raw, r, mock.last_body(), RESP)

    # -- redaction: whole, and streamed one character per event in every text-carrying event
    p = "write to %s MOCK:split=Dear %%PH%%, thanks." % EMAIL
    want = "Dear %s, thanks." % EMAIL
    raw, r = post(port, RESP, resp([{"role": "user", "content": [{"type": "input_text", "text": p}]}]))
    up = mock.last_body()
    j = r.json() or {}
    s.check("redact: the provider received the placeholder, not the address",
            EMAIL.encode() not in up and b"[EMAIL_1_" in up, up)
    s.check("redact: restored in the whole response's output_text",
            r.status == 200 and final_text(j) == want and b"[EMAIL_" not in r.body
            and r.headers.get("x-airlock-rule") == "mask-emails", r)
    ids["email"] = (r.headers.get("x-airlock-request-id"), raw, r, up, RESP)

    raw, r = post(port, RESP, resp(p, stream=True))
    probs, evs, texts = check_grammar(r.body)
    deltas = by_type(evs, "response.output_text.delta")
    done = by_type(evs, "response.completed")
    s.check("redact stream: split one character per event, restored, grammar intact",
            r.status == 200 and not probs and len(deltas) > 20 and b"[EMAIL_" not in r.body
            and "".join(d["delta"] for d in deltas) == want, probs or r.body[:400])
    s.check("redact stream: output_text.done, content_part.done, output_item.done, completed restored",
            by_type(evs, "response.output_text.done")[0]["text"] == want
            and by_type(evs, "response.content_part.done")[0]["part"]["text"] == want
            and by_type(evs, "response.output_item.done")[0]["item"]["content"][0]["text"] == want
            and done and final_text(done[0]["response"]) == want, evs[-4:])
    ids["email_stream"] = (r.headers.get("x-airlock-request-id"), raw, r, mock.last_body(), RESP)

    # a placeholder cut at the very end of a text: the rest goes out as an added delta, and
    # the events after it are renumbered
    p2 = "write to %s MOCK:split=to %%PH%%" % EMAIL
    raw, r = post(port, RESP, resp(p2, stream=True))
    probs, evs, texts = check_grammar(r.body)
    s.check("redact stream ending in a placeholder: restored, numbering consecutive",
            r.status == 200 and not probs and by_type(evs, "response.output_text.done")[0]["text"] == "to " + EMAIL, probs)

    raw, r = post(port, RESP, resp("mail %s MOCK:function_call MOCK:split={\"to\":\"%%PH%%\"}" % EMAIL, stream=True))
    probs, evs, texts = check_grammar(r.body)
    args = "".join(d["delta"] for d in by_type(evs, "response.function_call_arguments.delta"))
    item = (by_type(evs, "response.output_item.done") or [{}])[0].get("item") or {}
    fin = ((by_type(evs, "response.completed") or [{}])[0].get("response") or {}).get("output") or [{}]
    s.check("redact stream: function_call_arguments.delta (one character each) and .done restored",
            r.status == 200 and not probs and args == '{"to":"%s"}' % EMAIL
            and by_type(evs, "response.function_call_arguments.done")[0]["arguments"] == args, probs or args)
    s.check("redact stream: the function_call item and the completed output restored",
            item.get("arguments") == args and fin[0].get("arguments") == args and b"[EMAIL_" not in r.body, item)
    raw, r = post(port, RESP, resp("mail %s MOCK:function_call MOCK:split={\"to\":\"%%PH%%\"}" % EMAIL))
    j = r.json() or {}
    s.check("redact whole: function_call arguments restored",
            r.status == 200 and (j.get("output") or [{}])[0].get("arguments") == '{"to":"%s"}' % EMAIL, r)

    raw, r = post(port, RESP, resp("mail %s MOCK:think MOCK:split=I saw %%PH%% here" % EMAIL, stream=True))
    probs, evs, texts = check_grammar(r.body)
    summ = "".join(d["delta"] for d in by_type(evs, "response.reasoning_summary_text.delta"))
    sp = by_type(evs, "response.reasoning_summary_part.done")
    s.check("redact stream: reasoning summary deltas, summary done and part done restored",
            r.status == 200 and not probs and summ == "I saw %s here" % EMAIL
            and by_type(evs, "response.reasoning_summary_text.done")[0]["text"] == summ
            and sp and sp[0]["part"]["text"] == summ and b"[EMAIL_" not in r.body, probs or summ)

    # -- the request's own texts are all scanned: instructions, items, tools
    before = mock.stats()["requests"]
    cases = (
        ("instructions", resp("hi", instructions=SECRET)),
        ("input string", resp(SECRET)),
        ("input_text part", resp([{"role": "user", "content": [{"type": "input_text", "text": SECRET}]}])),
        ("function_call arguments", resp([{"type": "function_call", "call_id": "c1", "name": "f",
                                           "arguments": json.dumps({"cmd": SECRET})}])),
        ("function_call_output", resp([{"type": "function_call_output", "call_id": "c1", "output": SECRET}])),
        ("reasoning summary", resp([{"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": SECRET}]}])),
        ("tool description", resp("hi", tools=[{"type": "function", "name": "f", "description": SECRET,
                                                "parameters": {"type": "object", "properties": {}}}])),
    )
    for name, b in cases:
        raw, r = post(port, RESP, b)
        s.check("secret in %s: 403 naming the rule, not the value" % name,
                r.status == 403 and "no-secrets" in err_msg(r) and "AKIAIOSFODNN7EXAMPLQ" not in r.body.decode(), r)
    raw, r = post(port, RESP, resp(SECRET, stream=True))
    ids["secret"] = (r.headers.get("x-airlock-request-id"), raw, r, None, RESP)
    s.check("secret streamed: 403 too", r.status == 403, r)
    s.check("secrets: nothing reached the provider", mock.stats()["requests"] == before)
    raw, r = post(port, RESP, resp([{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "ok"}]},
                                    {"type": "function_call_output", "call_id": "c1", "output": "fine"}],
                                   tools=[{"type": "function", "name": "f", "parameters": {"type": "object", "properties": {}}}],
                                   reasoning={"effort": "low", "summary": "auto"}, store=False,
                                   include=["reasoning.encrypted_content"], max_output_tokens=100))
    s.check("the API's own vocabulary (input_text, function_call_output, reasoning, include, ...) is not a finding",
            r.status == 200 and r.headers.get("x-airlock-rule") == "default", r)
    raw, r = post(port, RESP, resp([{"role": "user", "content": [
        {"type": "input_text", "text": "read this"},
        {"type": "input_file", "filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0xLjQK"}]}]))
    s.check("an input_file with a document's bytes: 400 (cannot be scanned)", r.status == 400 and "input_file" in err_msg(r), r)
    raw, r = post(port, RESP, resp([{"role": "user", "content": [
        {"type": "input_text", "text": "what is this"},
        {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgoAAAANSUhEUg=="}]}]))
    s.check("an input_image data: URL goes out as an image (not scanned as text)", r.status == 200, r)
    ids["image"] = (r.headers.get("x-airlock-request-id"), raw, r, mock.last_body(), RESP)
    for name, b in (("input a number", resp(7)), ("item not an object", resp(["x"])),
                    ("part without type", resp([{"role": "user", "content": [{"text": "x"}]}])),
                    ("instructions an object", resp("x", instructions={"a": 1}))):
        raw, r = post(port, RESP, b)
        s.check("shape %s: 400" % name, r.status == 400, r)

    # -- usage from response.completed: cached input priced at the cached rate, reasoning in output
    raw, r = post(port, RESP, resp("MOCK:usage=100000,10000 MOCK:cached=80000 MOCK:reasoning=500", stream=True), key=CAROL)
    probs, evs, texts = check_grammar(r.body)
    s.check("cost: carol's streamed response priced from response.completed", r.status == 200 and not probs, probs)
    ids["cost"] = (r.headers.get("x-airlock-request-id"), raw, r, mock.last_body(), RESP)
    raw, r = post(port, RESP, resp("again"), key=CAROL)
    s.check("budget: her next response gets 429 before anything leaves", r.status == 429, r)

    # -- the provider failing mid-stream
    raw, r = post(port, RESP, resp("one two three four five MOCK:reset_mid", stream=True))
    probs, evs, texts = check_grammar(r.body)
    last = evs[-1] if evs else {}
    s.check("provider reset mid-stream: the events so far, then response.failed (numbered on)",
            r.status == 200 and not probs and last.get("type") == "response.failed"
            and ((last.get("response") or {}).get("error") or {}).get("message")
            and last["response"]["id"] == evs[0]["response"]["id"], probs or evs[-2:])
    raw, r = post(port, RESP, resp("one two three four five MOCK:error_mid", stream=True))
    probs, evs, texts = check_grammar(r.body)
    s.check("provider error mid-stream: its error and response.failed relayed",
            r.status == 200 and not probs and [e["type"] for e in evs[-2:]] == ["error", "response.failed"], probs or evs[-2:])

    # -- WebSocket upgrade: 426, so clients fall back to HTTP
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(("GET /v1/responses HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                  "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  "Authorization: Bearer %s\r\n\r\n" % ALICE).encode())
    got = b""
    try:
        while True:
            c = sock.recv(4096)
            if not c:
                break
            got += c
    except socket.timeout:
        pass
    sock.close()
    head, _, body = got.partition(b"\r\n\r\n")
    s.check("websocket upgrade: 426 with an OpenAI error, connection closed",
            head.startswith(b"HTTP/1.1 426") and b'"error"' in body and b"WebSocket" in body, got[:300])
    r = request(port, "POST", RESP, json.dumps(resp("hi")), headers={"Upgrade": "websocket", "Connection": "Upgrade"})
    s.check("websocket upgrade on POST: 426 too", r.status == 426, r)

    # -- compact: decided like a response, passed through
    before = mock.stats()["requests"]
    raw, r = post(port, COMPACT, resp([{"role": "user", "content": SECRET}], instructions="x"))
    s.check("compact secret: 403, nothing left", r.status == 403 and mock.stats()["requests"] == before, r)
    raw, r = post(port, COMPACT, resp([{"role": "user", "content": "MOCK:user_split notes for %s" % EMAIL}], instructions="x"))
    up, head = mock.last_body(), mock.last_head()
    j = r.json() or {}
    out = json.dumps(j.get("output"))
    s.check("compact redact: sent to /v1/responses/compact with the placeholder",
            head.startswith("POST /v1/responses/compact HTTP/1.1") and EMAIL.encode() not in up and b"[EMAIL_1_" in up, up)
    s.check("compact redact: the output items restored", r.status == 200 and EMAIL in out and "[EMAIL_" not in out, r)
    ids["compact"] = (r.headers.get("x-airlock-request-id"), raw, r, up, COMPACT)
    raw, r = post(port, COMPACT, resp("x", stream=True))
    s.check("compact stream: 400", r.status == 400, r)
    raw, r = post(port, COMPACT, resp("x", model="local-small"))
    s.check("compact on the local model: 400", r.status == 400 and "compact" in err_msg(r), r)
    raw, r = post(port, COMPACT, resp("x", model="claude-3-5-haiku"))
    s.check("compact to anthropic: 400 naming the route", r.status == 400 and "ant/claude-3-5-haiku" in err_msg(r), r)

    # -- an Anthropic route: translated when text-only
    raw, r = post(port, RESP, resp([{"role": "user", "content": "Say hello"}], model="claude-3-5-haiku", instructions="Be brief."))
    up, head = json.loads(mock.last_body()), mock.last_head()
    j = r.json() or {}
    s.check("anthropic route: sent as Messages (system from instructions), answered as a response",
            r.status == 200 and head.startswith("POST /v1/messages HTTP") and up.get("system") == "Be brief."
            and j.get("object") == "response" and final_text(j).startswith("Hello from the mock")
            and j.get("model") == "claude-3-5-haiku-20241022", (up, r))
    raw, r = post(port, RESP, resp("Say hello", model="claude-3-5-haiku", stream=True, max_output_tokens=50))
    probs, evs, texts = check_grammar(r.body)
    s.check("anthropic route streamed: the Responses grammar, text and usage",
            r.status == 200 and not probs and final_text(by_type(evs, "response.completed")[0]["response"]).startswith("Hello")
            and by_type(evs, "response.completed")[0]["response"]["usage"]["output_tokens"] > 0, probs or r.body[:300])
    raw, r = post(port, RESP, resp("hi", model="claude-3-5-haiku", tools=[{"type": "function", "name": "f", "parameters": {}}]))
    s.check("anthropic route with tools: 400 (cannot be translated)", r.status == 400 and "tools" in err_msg(r), r)
    raw, r = post(port, RESP, resp([{"type": "function_call_output", "call_id": "c", "output": "x"}], model="claude-3-5-haiku"))
    s.check("anthropic route with a function_call_output: 400", r.status == 400, r)

    # -- `airlock policy test --api responses`
    env = dict(os.environ, MOCK_OPENAI_KEY=OPENAI_REAL)

    def cli(api, b):
        p = subprocess.run([AIRLOCK, "policy", "test", "-c", gw.config, "--api", api, "--key", "alice", "-"],
                           input=json.dumps(b).encode(), capture_output=True, timeout=30, env=env)
        return p.returncode, (json.loads(p.stdout) if p.returncode == 0 else p.stderr.decode())
    rc_, dec = cli("responses", resp("mail %s" % EMAIL, stream=True))
    outb = json.dumps(dec.get("outbound")) if isinstance(dec, dict) else ""
    s.check("policy test --api responses: redact, the placeholder outbound, no stream_options",
            rc_ == 0 and dec["verdict"] == "redact" and EMAIL not in outb and "[EMAIL_1_" in outb
            and "stream_options" not in outb and "gpt-5-2025-08-07" in outb, dec)
    rc_, dec = cli("responses", resp("hi", model="local-small", previous_response_id="resp_1"))
    s.check("policy test --api responses: previous_response_id on a local route refused",
            rc_ != 0 and "previous_response_id" in str(dec), dec)

    # -- the built-in engine answers in the Responses format
    if not local:
        s.skip("builtin route", "test model %s not found" % MODEL)
    else:
        before = mock.stats()["requests"]
        raw, r = post(port, RESP, resp("Once upon a time", model="local-small", instructions="Tell a story.", max_output_tokens=8))
        j = r.json() or {}
        u = j.get("usage") or {}
        s.check("builtin: 200, a response object from the local model",
                r.status == 200 and j.get("object") == "response" and j.get("model") == "local-small"
                and j["id"].startswith("resp_") and j["output"][0]["type"] == "message"
                and isinstance(final_text(j), str) and j["status"] in ("completed", "incomplete"), r)
        s.check("builtin: usage in the Responses shape",
                u.get("input_tokens", 0) > 0 and 0 < u.get("output_tokens", 0) <= 8
                and u.get("total_tokens") == u["input_tokens"] + u["output_tokens"]
                and "cached_tokens" in (u.get("input_tokens_details") or {}), u)
        ids["local"] = (r.headers.get("x-airlock-request-id"), raw, r, None, RESP)
        raw, r = post(port, RESP, resp([{"role": "user", "content": [{"type": "input_text", "text": CARD}]}],
                                       max_output_tokens=6, stream=True))
        probs, evs, texts = check_grammar(r.body)
        types = [e["type"] for e in evs]
        fin = evs[-1] if evs else {}
        s.check("builtin stream (policy route): the full event sequence in the Responses grammar",
                r.status == 200 and r.headers.get("x-airlock-route") == "local/local-small" and not probs
                and types[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                                  "response.content_part.added"]
                and types[-4:-1] == ["response.output_text.done", "response.content_part.done", "response.output_item.done"]
                and fin.get("type") in ("response.completed", "response.incomplete"), probs or types)
        s.check("builtin stream: the final response has the text of the deltas, the model and usage",
                final_text(fin.get("response") or {}) == "".join(e["delta"] for e in by_type(evs, "response.output_text.delta"))
                and fin["response"]["model"] == "local-small" and fin["response"]["usage"]["output_tokens"] > 0, fin)
        ids["local_stream"] = (r.headers.get("x-airlock-request-id"), raw, r, None, RESP)
        for name, b, word in (
                ("previous_response_id", resp("hi", model="local-small", previous_response_id="resp_abc"), "previous_response_id"),
                ("hosted tool", resp("hi", model="local-small", tools=[{"type": "web_search"}]), "web_search"),
                ("background", resp("hi", model="local-small", background=True), "background")):
            raw, r = post(port, RESP, b)
            s.check("builtin: %s is a 400 naming it" % name, r.status == 400 and word in err_msg(r), r)
        raw, r = post(port, RESP, resp("hi", model="local-small", max_output_tokens=4,
                                       tools=[{"type": "function", "name": "f", "parameters": {"type": "object"}}]))
        s.check("builtin: function tools are ignored as on chat (answered)", r.status == 200, r)
        raw, r = post(port, RESP, resp([{"type": "function_call_output", "call_id": "c", "output": "x"}], model="local-small"))
        s.check("builtin: a function_call_output item is a 400 naming it (text only)",
                r.status == 400 and "input[0] is a 'function_call_output' item" in err_msg(r), r)
        raw, r = post(port, RESP, resp([], model="local-small"))
        s.check("builtin: nothing to answer is a 400 saying so", r.status == 400 and "nothing to answer" in err_msg(r), r)
        s.check("builtin: nothing reached the provider", mock.stats()["requests"] == before)

    # -- /metrics by endpoint
    m = request(port, "GET", "/metrics", key=None).body.decode()

    def metric(endpoint, status):
        return sum(int(ln.rsplit(" ", 1)[1]) for ln in m.splitlines()
                   if ln.startswith("airlock_requests_total{") and ('endpoint="%s"' % endpoint) in ln
                   and ('status="%d"' % status) in ln)
    s.check("metrics: /v1/responses counted by endpoint", metric(RESP, 200) >= 10 and metric(RESP, 403) >= 7
            and metric(RESP, 400) >= 4 and metric(RESP, 426) >= 1, [ln for ln in m.splitlines() if "responses" in ln])
    s.check("metrics: /v1/responses/compact counted by endpoint", metric(COMPACT, 200) >= 1 and metric(COMPACT, 403) >= 1,
            [ln for ln in m.splitlines() if "compact" in ln])
    gw.stop()

    # -- the audit: both records, all four byte streams, cost from usage
    rc, recs = audit_records(os.path.join(gw.dir, "audit"))
    by = {}
    for rec in recs:
        mm = rec.get("meta") or {}
        by.setdefault(mm.get("id"), {})[rec.get("type")] = rec
    for name, (rid, raw, r, up, path) in ids.items():
        req, rsp = by.get(rid, {}).get("request"), by.get(rid, {}).get("response")
        rm, pm = (req or {}).get("meta") or {}, (rsp or {}).get("meta") or {}
        s.check("audit %s: a request record for %s with the inbound bytes" % (name, path),
                req is not None and rm.get("endpoint") == path and blob(req, "inbound") == raw, rm)
        if up is not None:
            s.check("audit %s: outbound is what the provider received" % name, blob(req, "outbound") == up,
                    (blob(req, "outbound"), up))
            s.check("audit %s: upstream bytes kept, client bytes are what the client got" % name,
                    rsp is not None and len(blob(rsp, "upstream") or b"") > 0 and blob(rsp, "client") == r.body, pm)
        else:
            s.check("audit %s: nothing left, client bytes kept" % name,
                    req is not None and blob(req, "outbound") is None and rsp is not None
                    and blob(rsp, "client") == r.body, req)
        s.check("audit %s: status recorded" % name, pm.get("status") == r.status, pm)
    rm = ((by.get(ids["image"][0]) or {}).get("request") or {}).get("meta") or {}
    s.check("audit: the image is recorded as unscanned content", rm.get("unscanned") == ["image"], rm)
    pm = ((by.get(ids["cost"][0]) or {}).get("response") or {}).get("meta") or {}
    # 20000 uncached * 1.25 + 80000 cached * 0.125 + 10000 output * 10, per million
    s.check("audit: cost from response.completed usage, cached input at the cached price",
            abs(pm.get("cost_usd", 0) - 0.135) < 1e-9 and (pm.get("usage") or {}).get("cached_input_tokens") == 80000
            and (pm.get("usage") or {}).get("output_tokens") == 10000, pm)
    s.done()


if __name__ == "__main__":
    main()
