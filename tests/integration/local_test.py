"""local_test.py -- provider type builtin through the gateway.

Uses the tiny random-weight Llama-3-style test model from ../shared/models (its
answers are gibberish, but tokens, usage, framing and routing are real).
"""
import json
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from itest import (ALICE, ANTHROPIC_HEADERS, Airlock, Mock, Suite, anthropic_stream_text,  # noqa: E402
                   free_port, gateway_missing, openai_stream_text, request, sse_events)

SHARED = os.environ.get("AIRLOCK_SHARED") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared")
MODEL = os.path.join(SHARED, "models", "tiny-llama3-q8_0.gguf")


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
    t_queue_full(s, mock)
    s.done()


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
