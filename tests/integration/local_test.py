"""local_test.py -- provider type builtin through the gateway.

Uses the tiny random-weight Llama-3-style test model from ../shared/models (its
answers are gibberish, but tokens, usage, framing and routing are real). Also: the
event loop is not blocked while the engine tokenizes a multi-megabyte prompt (a /healthz
sent meanwhile on another connection is answered first), and a prompt too long for the
context on a streaming request is a plain 400 in the API's error shape, not a 200 stream.
"""
import json
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from itest import (ALICE, ANTHROPIC_HEADERS, Airlock, Mock, Suite, anthropic_stream_text,  # noqa: E402
                   free_port, gateway_missing, openai_stream_text, request, sse_events)

SHARED = os.environ.get("AIRLOCK_SHARED") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared")
MODEL = os.path.join(SHARED, "models", "tiny-llama3-q8_0.gguf")
# the slowest tokenizer of the test models (byte-level BPE, Qwen2 pre-tokenizer): a 4 MB
# prompt takes a few hundred milliseconds to tokenize
SLOW_MODEL = os.path.join(SHARED, "models", "tiny-qwen2-f32.gguf")


def config(port, mock_port):
    return """listen: [{address: "127.0.0.1:%d"}]
keys: [{name: alice, team: red, key: "%s"}]
providers:
  oai: {type: openai, base_url: "http://127.0.0.1:%d/v1", api_key: "x"}
  local: {type: builtin, model: "%s", context: 256}
models:
  - {name: gpt-4o-mini, provider: oai}
  - {name: local-small, provider: local}
rules:
  - {name: cards-stay-home, if: {detected: [credit_card]}, then: {action: route, provider: local, model: local-small}}
  - {name: default, then: {action: allow}}
audit: {dir: ./audit}
""" % (port, ALICE, mock_port, MODEL)


def main():
    s = Suite("local")
    why = gateway_missing()
    if why:
        s.bail(why)
    if not os.path.exists(MODEL):
        s.bail("test model %s not found" % MODEL)
    mock = Mock(s)
    port = free_port()
    Airlock(s, config(port, mock.port), port)

    body = {"model": "local-small", "max_tokens": 12, "messages": [{"role": "user", "content": "hello"}]}
    r = request(port, "POST", "/v1/chat/completions", body)
    j = r.json() or {}
    s.check("openai, not streamed: 200", r.status == 200, r)
    s.check("openai: model names the local model", j.get("model") == "local-small", j)
    u = j.get("usage", {})
    s.check("openai: real usage (prompt tokens of the formatted chat, 12 completion)",
            u.get("prompt_tokens", 0) > 5 and u.get("completion_tokens") == 12
            and u.get("total_tokens") == u.get("prompt_tokens", 0) + 12, u)
    s.check("openai: finish_reason length", j.get("choices", [{}])[0].get("finish_reason") == "length", j)
    s.check("route header names the builtin provider", r.headers.get("x-airlock-route") == "local/local-small", r.headers)

    # the same request twice is deterministic (greedy by default)
    r2 = request(port, "POST", "/v1/chat/completions", body)
    s.check("greedy default: same answer twice",
            (r2.json() or {}).get("choices") == j.get("choices"), (r2.body[:200], r.body[:200]))

    body_s = dict(body, stream=True, stream_options={"include_usage": True})
    r = request(port, "POST", "/v1/chat/completions", body_s)
    text, _, done, usage = openai_stream_text(r.body)
    s.check("openai stream: text equals the non-streamed answer",
            text == j.get("choices", [{}])[0].get("message", {}).get("content"), (text, j))
    s.check("openai stream: [DONE] and usage chunk", b"data: [DONE]" in r.body and b'"completion_tokens":12' in r.body, r.body[-300:])

    ab = {"model": "local-small", "max_tokens": 12, "system": "be brief", "messages": [{"role": "user", "content": "hello"}]}
    r = request(port, "POST", "/v1/messages", ab, headers=ANTHROPIC_HEADERS, auth="x-api-key")
    j = r.json() or {}
    s.check("anthropic, not streamed: message shape", r.status == 200 and j.get("type") == "message"
            and j.get("content", [{}])[0].get("type") == "text", r)
    s.check("anthropic: usage and stop_reason", j.get("usage", {}).get("output_tokens") == 12
            and j.get("stop_reason") == "max_tokens", j)
    r = request(port, "POST", "/v1/messages", dict(ab, stream=True), headers=ANTHROPIC_HEADERS, auth="x-api-key")
    names = [e for e, _ in sse_events(r.body)]
    s.check("anthropic stream: named events in order",
            names[:2] == ["message_start", "content_block_start"] and names[-3:] == ["content_block_stop", "message_delta", "message_stop"], names)
    s.check("anthropic stream: text equals the non-streamed answer",
            anthropic_stream_text(r.body)[0] == j.get("content", [{}])[0].get("text"), r.body[:300])

    # a card in a prompt for a remote model is answered locally: nothing leaves
    before = mock.stats().get("requests", 0)
    r = request(port, "POST", "/v1/chat/completions",
                {"model": "gpt-4o-mini", "max_tokens": 4, "messages": [{"role": "user", "content": "card 4111 1111 1111 1111"}]})
    s.check("policy route to builtin: 200 from the local model", r.status == 200
            and r.headers.get("x-airlock-route") == "local/local-small" and (r.json() or {}).get("model") == "local-small", r)
    s.check("policy route to builtin: the provider saw nothing", mock.stats().get("requests", 0) == before)

    # text parts are read; anything else is refused rather than silently dropped
    r = request(port, "POST", "/v1/messages", {"model": "local-small", "max_tokens": 4, "messages": [
        {"role": "user", "content": [{"type": "text", "text": "hel"}, {"type": "text", "text": "lo"}]}]},
        headers=ANTHROPIC_HEADERS, auth="x-api-key")
    s.check("text blocks: answered", r.status == 200, r)
    r = request(port, "POST", "/v1/chat/completions", {"model": "local-small", "messages": [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}}]}]})
    msg = ((r.json() or {}).get("error") or {}).get("message", "")
    s.check("image for the local model: 400 that says text only", r.status == 400 and "text only" in msg, r)
    r = request(port, "POST", "/v1/chat/completions", {"model": "local-small", "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "1", "type": "function",
                                                               "function": {"name": "f", "arguments": "{}"}}]}]})
    s.check("tool calls for the local model: 400", r.status == 400, r)

    # a prompt longer than the context (256) is a clear 400
    long = " ".join("word%d" % i for i in range(600))
    r = request(port, "POST", "/v1/chat/completions", {"model": "local-small", "messages": [{"role": "user", "content": long}]})
    msg = ((r.json() or {}).get("error") or {}).get("message", "")
    s.check("prompt over the context: 400 that says so", r.status == 400 and "context" in msg, r)

    # a client that disconnects mid-generation: the gateway keeps serving
    sock = socket.create_connection(("127.0.0.1", port))
    payload = json.dumps({"model": "local-small", "max_tokens": 200, "stream": True,
                          "messages": [{"role": "user", "content": "go"}]}).encode()
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                 b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (ALICE.encode(), len(payload)) + payload)
    sock.recv(200)
    sock.close()
    time.sleep(0.3)
    r = request(port, "POST", "/v1/chat/completions", body)
    s.check("after a disconnect mid-generation: still serving", r.status == 200, r)
    t_stream_refused(s, port, long)
    t_max_tokens(s, mock)
    t_queue_full(s, mock)
    t_loop_not_blocked(s)
    s.done()


def t_max_tokens(s, mock):
    """A request that names no limit runs to the end of the model or of its context, as
    the providers' APIs do (no hidden cap: a Responses answer cut short is 'incomplete',
    which agents such as Codex treat as a failure); a builtin provider's max_tokens lowers
    what any request gets; a limit below 1 or not whole is a 400, not the engine's 'none'."""
    port = free_port()
    Airlock(s, """listen: [{address: "127.0.0.1:%d"}]
keys: [{name: alice, team: red, key: "%s"}]
providers:
  local: {type: builtin, model: "%s", context: 256}
  capped: {type: builtin, model: "%s", context: 256, max_tokens: 7}
models:
  - {name: local-small, provider: local}
  - {name: local-capped, provider: capped}
rules:
  - {name: default, then: {action: allow}}
audit: {dir: ./audit-max}
""" % (port, ALICE, MODEL, MODEL), port)

    def ask(model, path="/v1/chat/completions", **extra):
        if path == "/v1/responses":
            body = dict({"model": model, "input": "tell me a long story"}, **extra)
        else:
            body = dict({"model": model, "messages": [{"role": "user", "content": "tell me a long story"}]}, **extra)
        r = request(port, "POST", path, body, timeout=120)
        return r, r.json() or {}

    r, j = ask("local-small")
    u = j.get("usage", {})
    # (the last token is sampled from the last position's logits and never needs one of
    # its own: a 256-token context holds prompt + answer - 1)
    s.check("no max_tokens: the answer runs to the end of the context (256 positions), not a hidden cap",
            r.status == 200 and u.get("total_tokens") == 257 and u.get("completion_tokens", 0) > 200
            and j.get("choices", [{}])[0].get("finish_reason") == "length", (r.status, u))
    r, j = ask("local-small", "/v1/responses")
    u = j.get("usage", {})
    s.check("responses, no max_output_tokens: runs to the context's end too",
            r.status == 200 and u.get("total_tokens") == 257 and u.get("output_tokens", 0) > 200
            and j.get("status") == "incomplete", (r.status, u, j.get("status")))
    r, j = ask("local-capped", max_tokens=100)
    s.check("provider max_tokens 7: a request for 100 gets 7, finish_reason length",
            r.status == 200 and j.get("usage", {}).get("completion_tokens") == 7
            and j.get("choices", [{}])[0].get("finish_reason") == "length", (r.status, j.get("usage")))
    r, j = ask("local-capped")
    s.check("provider max_tokens 7: a request naming none gets 7",
            r.status == 200 and j.get("usage", {}).get("completion_tokens") == 7, (r.status, j.get("usage")))
    r, j = ask("local-capped", max_tokens=3)
    s.check("provider max_tokens 7: a request for 3 gets 3",
            r.status == 200 and j.get("usage", {}).get("completion_tokens") == 3, (r.status, j.get("usage")))
    for bad in (0, 2.5, -4, -1, "5", True, [], {}):
        r, j = ask("local-small", max_tokens=bad)
        msg = (j.get("error") or {}).get("message", "")
        s.check("max_tokens %r: 400 that says what is wrong" % bad,
                r.status == 400 and "max_tokens" in msg, (r.status, j))


def t_stream_refused(s, port, long):
    """The engine finds a prompt too long on its prep thread, after the request was handed
    to it; a streaming request still gets the refusal as a plain answer (400, the API's JSON
    error), since the stream's head waits for the first piece of text."""
    cases = [
        ("chat", "/v1/chat/completions", {"model": "local-small", "max_tokens": 8, "stream": True,
                                          "messages": [{"role": "user", "content": long}]}, False),
        ("messages", "/v1/messages", {"model": "local-small", "max_tokens": 8, "stream": True,
                                      "messages": [{"role": "user", "content": long}]}, True),
        ("completions", "/v1/completions", {"model": "local-small", "max_tokens": 8, "stream": True,
                                            "prompt": long}, False),
        ("responses", "/v1/responses", {"model": "local-small", "max_output_tokens": 8, "stream": True,
                                        "input": long}, False),
    ]
    for name, path, body, anthropic in cases:
        r = request(port, "POST", path, body, headers=ANTHROPIC_HEADERS if anthropic else None,
                    auth="x-api-key" if anthropic else "bearer")
        j = r.json() or {}
        err = j.get("error") if isinstance(j.get("error"), dict) else {}
        shape = (j.get("type") == "error" and err.get("type") == "invalid_request_error") if anthropic \
            else (err.get("type") == "invalid_request_error" and "message" in err)
        s.check("%s, streamed, prompt over the context: plain 400 (not a 200 stream)" % name,
                r.status == 400 and r.headers.get("content-type", "").startswith("application/json")
                and b"event:" not in r.body and b"data:" not in r.body, r)
        s.check("%s, streamed, prompt over the context: the API's error shape, says context" % name,
                shape and "context holds 256" in err.get("message", ""), j)
        # a prompt that fits still streams (the head comes with the first piece)
        ok = dict(body)
        if "messages" in ok:
            ok["messages"] = [{"role": "user", "content": "hello"}]
        elif "prompt" in ok:
            ok["prompt"] = "Once upon a time"
        else:
            ok["input"] = "hello"
        r = request(port, "POST", path, ok, headers=ANTHROPIC_HEADERS if anthropic else None,
                    auth="x-api-key" if anthropic else "bearer")
        s.check("%s, streamed, a prompt that fits: 200 event stream" % name,
                r.status == 200 and r.headers.get("content-type", "").startswith("text/event-stream")
                and len(sse_events(r.body)) >= 3, r)


def t_loop_not_blocked(s):
    """While the engine tokenizes a 4 MB prompt routed local (a count: a chat that long is
    refused by its bytes, untokenized), a GET /healthz sent on another connection is answered
    before it: the tokenizing happens on the engine's prep thread, not on the event loop.
    Only the order of the two answers is asserted."""
    if not os.path.exists(SLOW_MODEL):
        s.check("loop not blocked: model %s present" % SLOW_MODEL, False)
        return
    port = free_port()
    cfg = """listen: [{address: "127.0.0.1:%d"}]
keys: [{name: alice, team: red, key: "%s"}]
providers:
  local: {type: builtin, model: "%s", context: 256}
models:
  - {name: local-small, provider: local}
rules:
  - {name: default, then: {action: allow}}
audit: {dir: ./audit}
limits: {max_body_bytes: 16777216}
""" % (port, ALICE, SLOW_MODEL)
    Airlock(s, cfg, port, name="loop")
    text = " ".join("word%d" % (i % 5000) for i in range(520000))[:4000000]

    def raw(path, payload):
        return (b"POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                b"anthropic-version: 2023-06-01\r\nContent-Type: application/json\r\n"
                b"Connection: close\r\nContent-Length: %d\r\n\r\n"
                % (path, ALICE.encode(), len(payload)) + payload)

    def read_all(c):
        data = b""
        while True:
            d = c.recv(1 << 20)
            if not d:
                return data
            data += d

    # a chat of it is refused without tokenizing: its bytes alone prove it too long for the
    # context (no token of the model spans more than its longest text)
    r = request(port, "POST", "/v1/chat/completions",
                {"model": "local-small", "max_tokens": 4, "messages": [{"role": "user", "content": text}]}, timeout=60)
    msg = ((r.json() or {}).get("error") or {}).get("message", "")
    s.check("chat of a 4 MB prompt for a 256-token context: 400, refused by its length in bytes",
            r.status == 400 and "at least" in msg and "context holds 256" in msg, (r.status, msg))
    for name, path, payload, want in (
            ("count_tokens", b"/v1/messages/count_tokens",
             {"model": "local-small", "messages": [{"role": "user", "content": text}]}, 200),):
        order, firsts, statuses = [], 0, []
        for _ in range(3):
            big = socket.create_connection(("127.0.0.1", port))
            big.settimeout(60)
            got = {}
            sent = threading.Event()

            def send_big(c=big, g=got, ev=sent, req=raw(path, json.dumps(payload).encode())):
                c.sendall(req)
                ev.set()
                g["data"] = read_all(c)
                order.append("big")
            t = threading.Thread(target=send_big)
            t.start()
            sent.wait(60)
            time.sleep(0.05)  # the body is parsed and scanned; the engine has it
            h = request(port, "GET", "/healthz", key=None, timeout=60)
            order.append("healthz")
            t.join(60)
            big.close()
            statuses.append((h.status, got.get("data", b"")[:12]))
            firsts += order[-2:] == ["healthz", "big"]
        s.check("loop not blocked (%s of a 4 MB prompt): /healthz answered first, 3 of 3" % name,
                firsts == 3, order)
        s.check("loop not blocked (%s): both answered (healthz 200, %s %d)" % (name, name, want),
                all(hs == 200 and bs.startswith(b"HTTP/1.1 %d" % want) for hs, bs in statuses), statuses)


def t_queue_full(s, mock):
    """engine_queue: 1 -- 8 sequences decode together and one waits; a burst of 30
    requests sent at once gets 429s in each API's error shape for the rest, never a hang,
    and the local model serves again once the burst is over."""
    port = free_port()
    cfg = config(port, mock.port).replace("audit: {dir: ./audit}", "audit: {dir: ./audit}\nlimits: {engine_queue: 1}")
    Airlock(s, cfg, port, name="queue")
    socks = []
    for i in range(30):
        anthropic = i % 2 == 1
        payload = json.dumps({"model": "local-small", "max_tokens": 200,
                              "messages": [{"role": "user", "content": "tell me a long story %d" % i}]}).encode()
        path = b"/v1/messages" if anthropic else b"/v1/chat/completions"
        extra = b"anthropic-version: 2023-06-01\r\n" if anthropic else b""
        c = socket.create_connection(("127.0.0.1", port))
        c.settimeout(60)
        socks.append((anthropic, c, b"POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n%s"
                      b"Content-Type: application/json\r\nConnection: close\r\nContent-Length: %d\r\n\r\n"
                      % (path, ALICE.encode(), extra, len(payload)) + payload))
    for _, c, req in socks:  # all sent before any answer is read
        c.sendall(req)
    results = []
    for anthropic, c, _ in socks:
        data = b""
        while True:
            d = c.recv(65536)
            if not d:
                break
            data += d
        c.close()
        head, _, body = data.partition(b"\r\n\r\n")
        status = int(head.split(b" ")[1]) if head.startswith(b"HTTP/1.1 ") else 0
        results.append((anthropic, status, body))
    statuses = [st for _, st, _ in results]
    busy = [(a, b) for a, st, b in results if st == 429]
    s.check("queue full: every request answered 200 or 429, none lost",
            len(results) == 30 and all(st in (200, 429) for st in statuses), statuses)
    s.check("queue full: at least the 9 that fit are served, the rest get 429",
            statuses.count(200) >= 9 and len(busy) >= 1, statuses)

    def shape_ok(anthropic, body):
        try:
            j = json.loads(body)
        except ValueError:
            return False
        if anthropic:
            return j.get("type") == "error" and "queue is full" in j.get("error", {}).get("message", "")
        return "queue is full" in j.get("error", {}).get("message", "")
    s.check("queue full: 429 bodies in the caller's API error shape",
            all(shape_ok(a, b) for a, b in busy), busy[:2])
    body = {"model": "local-small", "max_tokens": 8, "messages": [{"role": "user", "content": "again"}]}
    r = request(port, "POST", "/v1/chat/completions", body, timeout=60)
    s.check("after the burst: the local model serves again", r.status == 200, r)


if __name__ == "__main__":
    main()
