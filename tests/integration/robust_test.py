"""robust_test.py -- load, size, framing and audit-exactness cases for build/airlock + the
mock: concurrent streams, big bodies and answers, a client that reads slowly, HTTP/1.0,
request smuggling attempts, deeply nested JSON, upstream framing variants, and the audit
compared byte for byte with what the provider actually received."""
import base64
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from itest import (AIRLOCK, ALICE, ANTHROPIC_HEADERS, ANTHROPIC_REAL, BOB, OPENAI_REAL, Airlock, Mock,  # noqa: E402
                   Suite, anthropic_stream_text, base_config, chat, free_port, gateway_missing, messages,
                   openai_stream_text, raw_exchange, request, sse_events)


def words(n):
    return " ".join("word%d" % i for i in range(1, n + 1))


def t_concurrent_streams(s, gw, mock):
    results = [None] * 40

    def one(i):
        try:
            if i % 2:
                r = request(gw.port, "POST", "/v1/chat/completions",
                            chat("c%d MOCK:delay=5 MOCK:words=%d" % (i, 20 + i), stream=True), timeout=30)
                results[i] = (r.status, openai_stream_text(r.body)[0])
            else:
                r = request(gw.port, "POST", "/v1/messages",
                            messages("c%d MOCK:delay=5 MOCK:words=%d" % (i, 20 + i), stream=True),
                            headers=ANTHROPIC_HEADERS, timeout=30)
                results[i] = (r.status, anthropic_stream_text(r.body)[0])
        except Exception as e:  # noqa: BLE001
            results[i] = (0, repr(e))
    ths = [threading.Thread(target=one, args=(i,)) for i in range(len(results))]
    for t in ths:
        t.start()
    for t in ths:
        t.join(60)
    bad = [(i, r) for i, r in enumerate(results) if r != (200, words(20 + i))]
    s.check("40 concurrent streams (both APIs) each get exactly their own answer", not bad, bad[:3])


def t_big(s, gw, mock):
    r = request(gw.port, "POST", "/v1/chat/completions", chat("MOCK:words=20000", stream=True), timeout=30)
    text, _, _, _ = openai_stream_text(r.body)
    s.check("20,000-delta stream relayed intact", r.status == 200 and text == words(20000), len(text))
    body = chat("MOCK:echo " + "é漢🙂" * 12000)  # ~ 100 KB of multi-byte UTF-8
    r = request(gw.port, "POST", "/v1/chat/completions", body, timeout=30)
    j = r.json() or {}
    text = (j.get("choices") or [{}])[0].get("message", {}).get("content", "")
    s.check("100 KB multi-byte body forwarded and echoed byte for byte",
            r.status == 200 and text.encode() == mock.last_body(), (r.status, len(text)))


def t_slow_reader(s, gw, mock):
    """Backpressure: the client stops reading while a large stream is produced; nothing may
    be lost or reordered when it resumes."""
    body = json.dumps(chat("MOCK:words=60000", stream=True)).encode()
    sock = socket.create_connection(("127.0.0.1", gw.port), timeout=30)
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + ALICE.encode()
                 + b"\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(body)
                 + body)
    time.sleep(2.0)
    parts = []
    while True:
        d = sock.recv(1 << 20)
        if not d:
            break
        parts.append(d)
    sock.close()
    got = b"".join(parts)
    head, _, rest = got.partition(b"\r\n\r\n")
    # undo chunked framing
    pieces, i = [], 0
    if b"chunked" in head.lower():
        while True:
            j = rest.find(b"\r\n", i)
            n = int(rest[i:j].split(b";")[0], 16) if j > i else 0
            if n == 0:
                break
            pieces.append(rest[j + 2:j + 2 + n])
            i = j + 2 + n + 2
    else:
        pieces.append(rest)
    out = b"".join(pieces)
    text, _, _, _ = openai_stream_text(out)
    s.check("slow reader: a 60,000-delta stream arrives complete and in order", text == words(60000),
            (len(text), head[:200]))


def t_http10(s, gw, mock):
    b = json.dumps(chat("MOCK:words=2")).encode()
    got, closed = raw_exchange(gw.port, b"POST /v1/chat/completions HTTP/1.0\r\nAuthorization: Bearer " + ALICE.encode()
                               + b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(b) + b,
                               timeout=10)
    s.check("HTTP/1.0 request answered and closed", b" 200 " in got.split(b"\r\n")[0] and b"word1 word2" in got
            and closed, got[:200])


def t_expect_continue(s, gw, mock):
    b = json.dumps(chat("MOCK:words=2")).encode()
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + ALICE.encode()
            + b"\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n")
    x = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
    x.sendall(head % len(b))
    interim = x.recv(100)
    x.sendall(b)
    x.settimeout(5)
    final = b""
    while b"word2" not in final:
        d = x.recv(4096)
        if not d:
            break
        final += d
    x.close()
    s.check("Expect: 100-continue gets 100 Continue, then the answer",
            interim.startswith(b"HTTP/1.1 100") and final.startswith(b"HTTP/1.1 200") and b"word1 word2" in final,
            (interim, final[:80]))
    got, _ = raw_exchange(gw.port, head % 99999999, timeout=5, read_until_close=False)
    s.check("Expect: 100-continue with a body over the limit: 413 at once, no 100",
            got.startswith(b"HTTP/1.1 413"), got[:80])


def t_smuggling(s, gw, mock):
    before = mock.stats()["requests"]
    b = json.dumps(chat("hi")).encode()
    auth = b"Authorization: Bearer " + ALICE.encode() + b"\r\n"
    cl_te = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n" + auth + b"Content-Length: %d\r\n"
             b"Transfer-Encoding: chunked\r\n\r\n" % len(b) + b"%x\r\n" % len(b) + b + b"\r\n0\r\n\r\n")
    got, _ = raw_exchange(gw.port, cl_te, timeout=5)
    ok1 = got.startswith(b"HTTP/1.1 400") or got == b""
    two_cl = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n" + auth + b"Content-Length: %d\r\n"
              b"Content-Length: %d\r\n\r\n" % (len(b), len(b) + 5) + b + b"GET /healthz HTTP/1.1\r\n\r\n")
    got2, _ = raw_exchange(gw.port, two_cl, timeout=5)
    ok2 = got2.startswith(b"HTTP/1.1 400") or got2 == b""
    s.check("Content-Length with Transfer-Encoding refused (400 or closed)", ok1, got[:120])
    s.check("two different Content-Lengths refused (400 or closed)", ok2, got2[:120])
    s.check("smuggling attempts never reach the provider", mock.stats()["requests"] == before)


def t_deep_json(s, gw, mock):
    deep = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":' + b"[" * 50000 + b"]" * 50000 + b"}]}"
    r = request(gw.port, "POST", "/v1/chat/completions", deep, timeout=10)
    s.check("50,000-deep JSON nesting: 400, no crash", r.status == 400, r)
    many = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "m%d" % i} for i in range(3000)]}
    r = request(gw.port, "POST", "/v1/chat/completions", many, timeout=10)
    s.check("3,000 messages: answered", r.status == 200, r)
    r = request(gw.port, "POST", "/v1/chat/completions",
                {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": [
                    {"type": "text", "text": "part one"}, {"type": "image_url", "image_url": {"url": "data:x"}},
                    {"type": "text", "text": "MOCK:words=2"}]}]})
    s.check("content parts array accepted", r.status == 200, r)
    r = request(gw.port, "GET", "/healthz", key=None)
    s.check("gateway alive after hostile JSON", r.status == 200, r)


def t_upstream_framing(s, gw, mock):
    r = request(gw.port, "POST", "/v1/chat/completions", chat("MOCK:eof_body MOCK:words=3"))
    j = r.json() or {}
    s.check("upstream body delimited by close (no length): relayed",
            r.status == 200 and (j.get("choices") or [{}])[0].get("message", {}).get("content") == words(3), r)
    r = request(gw.port, "POST", "/v1/chat/completions", chat("MOCK:eof_body MOCK:words=3", stream=True))
    s.check("upstream stream delimited by close: relayed", r.status == 200 and openai_stream_text(r.body)[0] == words(3), r)
    r = request(gw.port, "POST", "/v1/messages", messages("MOCK:error_mid MOCK:words=9", stream=True),
                headers=ANTHROPIC_HEADERS, timeout=15)
    evs = [e for e, _ in sse_events(r.body)]
    s.check("anthropic in-stream error event relayed to the client", "error" in evs and "message_stop" not in evs, evs)
    r = request(gw.port, "POST", "/v1/chat/completions", chat("MOCK:status_429", stream=True))
    s.check("upstream 429 on a stream request: 429 JSON error, not SSE",
            r.status == 429 and r.headers.get("content-type", "").startswith("application/json"), r)


def t_upstream_wrong_key(s, mock):
    port = free_port()
    cfg = base_config(port, mock.port).replace('api_key: "%s"' % ANTHROPIC_REAL, 'api_key: "sk-ant-stale"')
    gw = Airlock(s, cfg, port, name="wrongkey")
    r = request(port, "POST", "/v1/messages", messages("hi"), headers=ANTHROPIC_HEADERS)
    s.check("provider rejects the gateway's key: the client is not told its own key is bad (not 401)",
            r.status != 401 and r.status >= 500, r)
    s.check("...and the provider key is not echoed", b"sk-ant-stale" not in r.body, r)
    gw.stop()


def t_fragmented(s, gw, mock):
    """The provider's bytes arrive cut at arbitrary points (MOCK:fragment=N writes N bytes at
    a time, 1 ms apart) or with CRLF line ends: the relay must reassemble events."""
    for mode in ("MOCK:fragment=5", "MOCK:crlf", "MOCK:crlf MOCK:fragment=3"):
        r = request(gw.port, "POST", "/v1/chat/completions", chat(mode + " MOCK:words=4", stream=True))
        s.check("openai stream with %s: relayed whole" % mode,
                r.status == 200 and openai_stream_text(r.body)[0] == words(4), r.body[-200:])
        r = request(gw.port, "POST", "/v1/messages", messages(mode + " MOCK:words=4", stream=True),
                    headers=ANTHROPIC_HEADERS)
        s.check("anthropic stream with %s: relayed whole" % mode,
                r.status == 200 and anthropic_stream_text(r.body)[0] == words(4)
                and anthropic_stream_text(r.body)[1].get("output_tokens") == 4, r.body[-200:])
    r = request(gw.port, "POST", "/v1/chat/completions", chat("MOCK:fragment=9 MOCK:words=4"))
    j = r.json() or {}
    s.check("non-stream body in 9-byte pieces: relayed whole",
            r.status == 200 and (j.get("choices") or [{}])[0].get("message", {}).get("content") == words(4), r)
    r = request(gw.port, "POST", "/v1/chat/completions",
                chat("MOCK:fragment=5 MOCK:words=4", model="claude-3-5-haiku", stream=True))
    s.check("translated stream (anthropic -> openai) from 5-byte pieces",
            r.status == 200 and openai_stream_text(r.body)[0] == words(4), r.body[-200:])


def t_cross_format_limits(s, gw, mock):
    """docs/gateway.md: across formats only text translates; tool calls, tool results and
    images are refused with a 400 that says so, never forwarded with parts dropped."""
    tools_oai = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    refused = [
        ("OpenAI tool_calls/tool message -> Anthropic", "/v1/chat/completions",
         {"model": "claude-3-5-haiku", "messages": [
             {"role": "user", "content": "hi"},
             {"role": "assistant", "content": None, "tool_calls": [{"id": "c", "type": "function", "function": {
                 "name": "f", "arguments": "{}"}}]}, {"role": "tool", "tool_call_id": "c", "content": "r"}]}),
        ("OpenAI image part -> Anthropic", "/v1/chat/completions",
         {"model": "claude-3-5-haiku", "messages": [{"role": "user", "content": [
             {"type": "text", "text": "see"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}}]}]}),
        ("Anthropic tool_use/tool_result -> OpenAI", "/v1/messages",
         {"model": "gpt-4o-mini", "max_tokens": 5, "messages": [
             {"role": "user", "content": "hi"},
             {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]},
             {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "r"}]}]}),
        ("Anthropic image -> OpenAI", "/v1/messages",
         {"model": "gpt-4o-mini", "max_tokens": 5, "messages": [{"role": "user", "content": [
             {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}},
             {"type": "text", "text": "see"}]}]}),
    ]
    for name, path, body in refused:
        b0 = mock.stats()["requests"]
        r = request(gw.port, "POST", path, body, headers=ANTHROPIC_HEADERS)
        s.check("cross-format %s: 400, not forwarded" % name,
                r.status == 400 and mock.stats()["requests"] == b0, (r.status, r.body[:120]))
    dropped = [
        ("OpenAI tools -> Anthropic", "/v1/chat/completions",
         {"model": "claude-3-5-haiku", "messages": [{"role": "user", "content": "hi"}], "tools": tools_oai}),
        ("OpenAI tool_choice -> Anthropic", "/v1/chat/completions",
         {"model": "claude-3-5-haiku", "messages": [{"role": "user", "content": "hi"}], "tools": tools_oai,
          "tool_choice": "required"}),
        ("Anthropic tools -> OpenAI", "/v1/messages",
         {"model": "gpt-4o-mini", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}],
          "tools": [{"name": "f", "input_schema": {"type": "object"}}]}),
        ("OpenAI n=2 -> Anthropic", "/v1/chat/completions",
         {"model": "claude-3-5-haiku", "messages": [{"role": "user", "content": "hi"}], "n": 2}),
        ("OpenAI response_format -> Anthropic", "/v1/chat/completions",
         {"model": "claude-3-5-haiku", "messages": [{"role": "user", "content": "hi"}],
          "response_format": {"type": "json_object"}}),
        ("Anthropic thinking -> OpenAI", "/v1/messages",
         {"model": "gpt-4o-mini", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}],
          "thinking": {"type": "enabled", "budget_tokens": 1024}}),
    ]
    for name, path, body in dropped:
        b0 = mock.stats()["requests"]
        r = request(gw.port, "POST", path, body, headers=ANTHROPIC_HEADERS)
        s.check("cross-format %s: 400, not forwarded with it dropped" % name,
                r.status == 400 and mock.stats()["requests"] == b0, (r.status, mock.last_body()[:100]))


def t_nonstream_faults(s, gw, mock):
    r = request(gw.port, "POST", "/v1/chat/completions", chat("MOCK:reset_mid"), timeout=20)
    s.check("non-stream: upstream reset after half a body -> 502", r.status == 502, r)
    r = request(gw.port, "POST", "/v1/chat/completions", chat("MOCK:stall_mid"), timeout=20)
    s.check("non-stream: upstream stall after half a body -> 504 (or 502)", r.status in (504, 502), r)
    r = request(gw.port, "POST", "/v1/messages", messages("MOCK:garbage_mid"), headers=ANTHROPIC_HEADERS, timeout=20)
    s.check("non-stream: upstream body not JSON -> 502 (anthropic shape)", r.status == 502
            and (r.json() or {}).get("type") == "error", r)


def t_disconnect_before_answer(s, gw, mock):
    a0 = mock.stats()["aborted"]
    body = json.dumps(chat("MOCK:stall_before")).encode()
    sock = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + ALICE.encode()
                 + b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    end = time.time() + 3
    while mock.stats()["active"] == 0 and time.time() < end:
        time.sleep(0.02)
    sock.close()
    seen = False
    end = time.time() + 3
    while time.time() < end:
        if mock.stats()["aborted"] > a0:
            seen = True
            break
        time.sleep(0.05)
    s.check("client leaves before the provider answers: upstream request cancelled", seen, mock.stats())


def t_headers(s, gw, mock):
    r = request(gw.port, "POST", "/v1/chat/completions", chat("hi"), key=None,
                headers={"aUtHoRiZaTiOn": "Bearer " + ALICE})
    s.check("header names are case-insensitive", r.status == 200, r)
    got, _ = raw_exchange(gw.port, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40000
                          + b"\r\n\r\n", timeout=5)
    s.check("a head over max_header_bytes is refused (431/400)",
            got.startswith(b"HTTP/1.1 431") or got.startswith(b"HTTP/1.1 400"), got[:100])
    # A client that writes its whole request before reading (as SDKs do) must still be
    # able to read that answer: the gateway has to drain what follows for a moment
    # (a lingering close) instead of closing with unread bytes, which sends a TCP RST.
    seen = []
    for big in ({"X-Big": "a" * 40000}, None):
        for _ in range(5):
            try:
                if big:
                    r = request(gw.port, "POST", "/v1/chat/completions", chat("hi"), headers=big)
                else:
                    r = request(gw.port, "POST", "/v1/chat/completions", chat("y" * 5000000), timeout=20)
                seen.append(r.status)
            except (ConnectionResetError, BrokenPipeError) as e:
                seen.append(type(e).__name__)
    s.check("oversized head/body: a write-then-read client reads the 431/413 (no RST)",
            seen == [431] * 5 + [413] * 5, seen)
    r = request(gw.port, "GET", "/healthz", key=None)
    s.check("still serving after an oversized head", r.status == 200, r)


def t_max_connections(s, mock):
    port = free_port()
    gw = Airlock(s, base_config(port, mock.port, limits="{max_connections: 5}"), port, name="maxconns")
    time.sleep(0.3)  # let the start-up probe's close be seen
    held = []
    for _ in range(5):
        x = socket.create_connection(("127.0.0.1", port))
        x.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        held.append(x)
    time.sleep(0.3)
    got, closed = raw_exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", timeout=2)
    s.check("max_connections: one connection over the limit is refused", got == b"" and closed, got[:80])
    answers = []
    for x in held:
        x.sendall(b"\r\n")
        x.settimeout(3)
        try:
            answers.append(x.recv(100)[:15])
        except OSError as e:
            answers.append(repr(e))
        x.close()
    s.check("max_connections: the connections within the limit are served", answers == [b"HTTP/1.1 200 OK"] * 5,
            answers)
    time.sleep(0.3)
    r = request(port, "GET", "/healthz", key=None)
    s.check("max_connections: new connections accepted again once below the limit", r.status == 200, r)
    gw.stop()


def t_stale_pool(s, mock_unused):
    """The provider closes idle keep-alive connections (as load balancers do) and is even
    restarted between requests: the next request must still be answered."""
    mport = free_port()
    m1 = Mock(s, extra=["--port", str(mport), "--idle-close", "150"])
    port = free_port()
    gw = Airlock(s, base_config(port, mport), port, name="stalepool")
    r1 = request(port, "POST", "/v1/chat/completions", chat("one"))
    time.sleep(0.5)
    r2 = request(port, "POST", "/v1/chat/completions", chat("two"))
    s.check("pooled connection closed by the provider while idle: next request answered",
            r1.status == 200 and r2.status == 200, (r1, r2))
    m1.stop()
    m2 = Mock(s, extra=["--port", str(mport)])
    r3 = request(port, "POST", "/v1/chat/completions", chat("three"))
    s.check("provider restarted: next request answered (dead pooled connection not used)", r3.status == 200, r3)
    r4 = request(port, "POST", "/v1/messages", messages("four"), headers=ANTHROPIC_HEADERS)
    s.check("...and on the other provider too", r4.status == 200, r4)
    del m2
    gw.stop()


class RawUpstream:
    """A provider that answers every request with the bytes `reply(body)` returns,
    written as fast as the socket takes them, then closes: for answers the mock cannot
    produce (bodies and events past the gateway's limits)."""

    def __init__(self, reply):
        self.reply = reply
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.sent = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(c,), daemon=True).start()

    def _one(self, c):
        buf = b""
        try:
            while b"\r\n\r\n" not in buf:
                d = c.recv(65536)
                if not d:
                    return
                buf += d
            head, body = buf.split(b"\r\n\r\n", 1)
            n = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))
            while len(body) < n:
                d = c.recv(65536)
                if not d:
                    return
                body += d
            total = 0
            for piece in self.reply(body):
                c.sendall(piece)
                total += len(piece)
            self.sent.append(total)
        except OSError:
            pass  # the gateway hung up on us: what the limit is for
        finally:
            c.close()

    def stop(self):
        self.sock.close()


def _huge_json_answer(body):
    """A 200 non-streamed answer of 65 MiB (the gateway keeps at most 64 MiB)."""
    size = 65 << 20
    yield (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % size)
    prefix = b'{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"'
    yield prefix
    left = size - len(prefix)
    chunk = b"a" * (1 << 20)
    while left > 0:
        yield chunk[:left]
        left -= min(left, len(chunk))


def _huge_event_answer(body):
    """A stream whose second event is 9 MiB (the gateway takes events up to 8 MiB)."""
    yield b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    first = (b'data: {"id":"x","object":"chat.completion.chunk","model":"gpt-4o-mini","choices":'
             b'[{"index":0,"delta":{"role":"assistant","content":"hello"},"finish_reason":null}]}\n\n')
    yield b"%x\r\n%s\r\n" % (len(first), first)
    chunk = b"data: " + b"b" * ((1 << 20) - 6)
    for _ in range(9):
        yield b"%x\r\n%s\r\n" % (len(chunk), chunk)
        chunk = b"b" * (1 << 20)
    yield b"0\r\n\r\n"


def t_upstream_limits(s, mock):
    """Answers past the gateway's limits: a 65 MiB non-streamed body and a 9 MiB SSE
    event. Each is cut off with a clear error in the client's format, the provider
    connection is dropped (not read to the end), the audit keeps a response record, and
    the gateway goes on serving."""
    big = RawUpstream(_huge_json_answer)
    ev = RawUpstream(_huge_event_answer)
    port = free_port()
    extra = """
  big: {type: openai, base_url: "http://127.0.0.1:%d/v1", api_key: "sk-big-0123456789"}
  ev: {type: openai, base_url: "http://127.0.0.1:%d/v1", api_key: "sk-ev-0123456789"}
models:
  - {name: big-model, provider: big, price: {input_per_mtok: 1, output_per_mtok: 1}}
  - {name: ev-model, provider: ev, price: {input_per_mtok: 1, output_per_mtok: 1}}
  - {name: gpt-4o-mini, provider: oai, price: {input_per_mtok: 0.15, output_per_mtok: 0.6}}
""" % (big.port, ev.port)
    cfg = base_config(port, mock.port, limits="{upstream_timeout_ms: 20000}")
    cfg = re.sub(r"\nmodels:\n(  - .*\n)+", extra, cfg)
    gw = Airlock(s, cfg, port, name="limits")
    r = request(port, "POST", "/v1/chat/completions", chat("hi", model="big-model"), timeout=60)
    err = (r.json() or {}).get("error", {})
    s.check("a 65 MiB upstream body: 502 in the OpenAI error shape naming the limit",
            r.status == 502 and "larger than the limit" in err.get("message", ""), r)
    r = request(port, "POST", "/v1/chat/completions", chat("hi", model="ev-model", stream=True), timeout=60)
    events = sse_events(r.body)
    datas = [d for _, d in events]
    s.check("a 9 MiB SSE event: the stream ends with an error event after what came before it",
            r.status == 200 and any("hello" in d for d in datas) and '"error"' in (datas[-1] if datas else "")
            and "[DONE]" not in datas, datas[:1] + datas[-1:])
    s.check("...and the client did not get the oversized event", len(r.body) < (1 << 20), len(r.body))
    r = request(port, "POST", "/v1/chat/completions", chat("still there?"))
    s.check("the gateway serves on after both", r.status == 200, r)
    rc = gw.stop()
    show = subprocess.run([AIRLOCK, "audit", "show", os.path.join(gw.dir, "audit")], capture_output=True,
                          text=True, timeout=60)
    recs = [json.loads(l) for l in show.stdout.splitlines() if l.strip()]
    resp = [x for x in recs if x["type"] == "response"]
    bad = [x for x in resp if x["meta"].get("status") == 502 or x["meta"].get("error")]
    s.check("both cut-off answers have response records with the error", rc == 0 and len(bad) >= 2,
            [x["meta"] for x in resp])
    big.stop()
    ev.stop()


PRIVATE_KEY = ("-----BEGIN RSA PRIVATE KEY-----\n"
               "MIIEowIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM9Oi6Z1kJKZ4fl1rBfX7rHnLDEyqE\n"
               "k2Fq8Jw4v8vJm2JcQxY7wq9H3tH6fXJ8Q0cTgZ3mQ9bYyL9a0v2VfTHsm6R1pXq\n"
               "-----END RSA PRIVATE KEY-----")


def t_scan_everywhere(s, gw, mock):
    """SPEC §4: every text the model would see is scanned -- whatever JSON spelling or
    message part it hides in. Each of these must be refused before anything leaves."""
    before = mock.stats()["requests"]
    escaped = json.dumps(chat("key: " + PRIVATE_KEY)).replace("-----BEGIN", "\\u002d\\u002d\\u002d\\u002d\\u002dBEGIN")
    cases = [
        ("OpenAI body with \\u escapes", "/v1/chat/completions", escaped.encode()),
        ("OpenAI system message", "/v1/chat/completions",
         {"model": "gpt-4o-mini", "messages": [{"role": "system", "content": PRIVATE_KEY},
                                              {"role": "user", "content": "hi"}]}),
        ("OpenAI text content part", "/v1/chat/completions",
         {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": [
             {"type": "text", "text": "see"}, {"type": "text", "text": PRIVATE_KEY}]}]}),
        ("OpenAI tool call arguments", "/v1/chat/completions",
         {"model": "gpt-4o-mini", "messages": [
             {"role": "user", "content": "hi"},
             {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {
                 "name": "store", "arguments": json.dumps({"pem": PRIVATE_KEY})}}]},
             {"role": "tool", "tool_call_id": "call_1", "content": "ok"}]}),
        ("OpenAI tool result", "/v1/chat/completions",
         {"model": "gpt-4o-mini", "messages": [
             {"role": "user", "content": "hi"},
             {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {
                 "name": "read", "arguments": "{}"}}]},
             {"role": "tool", "tool_call_id": "call_1", "content": PRIVATE_KEY}]}),
        ("Anthropic system blocks", "/v1/messages",
         {"model": "claude-3-5-haiku", "max_tokens": 10, "system": [{"type": "text", "text": PRIVATE_KEY}],
          "messages": [{"role": "user", "content": "hi"}]}),
        ("Anthropic tool_use input", "/v1/messages",
         {"model": "claude-3-5-haiku", "max_tokens": 10, "messages": [
             {"role": "user", "content": "hi"},
             {"role": "assistant", "content": [{"type": "tool_use", "id": "tu_1", "name": "store",
                                                "input": {"pem": PRIVATE_KEY}}]},
             {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "tu_1", "content": "ok"}]}]}),
        ("Anthropic tool_result content", "/v1/messages",
         {"model": "claude-3-5-haiku", "max_tokens": 10, "messages": [
             {"role": "user", "content": "hi"},
             {"role": "assistant", "content": [{"type": "tool_use", "id": "tu_1", "name": "read", "input": {}}]},
             {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "tu_1",
                                           "content": [{"type": "text", "text": PRIVATE_KEY}]}]}]}),
    ]
    pk = json.dumps(PRIVATE_KEY)
    # parser differentials (providers' JSON parsers keep the last duplicate key; C strings end
    # at NUL): refused as unreadable (400) before the policy runs, so nothing leaves
    differentials = [
        ("a duplicate content key", "/v1/chat/completions",
         ('{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi","content":%s}]}' % pk).encode()),
        ("a duplicate messages key", "/v1/chat/completions",
         ('{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"messages":[{"role":"user",'
          '"content":%s}]}' % pk).encode()),
        ("a duplicate Anthropic system key", "/v1/messages",
         ('{"model":"claude-3-5-haiku","max_tokens":5,"system":"x","system":%s,"messages":[{"role":"user",'
          '"content":"hi"}]}' % pk).encode()),
        ("text after a NUL (\\u0000)", "/v1/chat/completions",
         {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi\u0000" + PRIVATE_KEY}]}),
    ]
    for name, path, body in differentials:
        r = request(gw.port, "POST", path, body, headers=ANTHROPIC_HEADERS if path == "/v1/messages" else None)
        s.check("secret in %s: 400, the body cannot be read one way" % name,
                r.status == 400 and ("twice" in r.body.decode() or "NUL" in r.body.decode()), r)
    cases += [
        ("a developer message", "/v1/chat/completions",
         {"model": "gpt-4o-mini", "messages": [{"role": "developer", "content": PRIVATE_KEY},
                                              {"role": "user", "content": "hi"}]}),
        ("the tail of a 3 MB message", "/v1/chat/completions",
         {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "a " * 1500000 + PRIVATE_KEY}]}),
    ]
    for name, path, body in cases:
        r = request(gw.port, "POST", path, body, headers=ANTHROPIC_HEADERS if path == "/v1/messages" else None,
                    timeout=30)
        s.check("secret in %s: 403" % name, r.status == 403 and "no-secrets" in r.body.decode("utf-8", "replace"), r)
    s.check("none of them reached the provider", mock.stats()["requests"] == before, mock.stats())
    # Anthropic plain-text documents are text the model reads (SPEC §4)
    b0 = mock.stats()["requests"]
    r = request(gw.port, "POST", "/v1/messages", {
        "model": "claude-3-5-haiku", "max_tokens": 10, "messages": [{"role": "user", "content": [
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": PRIVATE_KEY}},
            {"type": "text", "text": "summarize this"}]}]}, headers=ANTHROPIC_HEADERS)
    s.check("secret in an Anthropic document block (text source): 403, never sent",
            r.status == 403 and mock.stats()["requests"] == b0, (r.status, r.body[:100]))
    b0 = mock.stats()["requests"]
    r = request(gw.port, "POST", "/v1/messages", {
        "model": "claude-3-5-haiku", "max_tokens": 10, "messages": [{"role": "user", "content": [
            {"type": "document", "source": {"type": "content", "content": [{"type": "text", "text": PRIVATE_KEY}]},
             "title": "notes"}, {"type": "text", "text": "summarize this"}]}]}, headers=ANTHROPIC_HEADERS)
    s.check("secret in an Anthropic document block (content source): 403, never sent",
            r.status == 403 and mock.stats()["requests"] == b0, (r.status, r.body[:100]))


def t_unscannable_shapes(s, gw, mock):
    """Content in a shape the gateway does not understand cannot be scanned, so it must not
    leave either (SPEC §3: 400 malformed request); the provider would reject it anyway, but
    by then the bytes are outside."""
    shapes = [
        ("OpenAI content is an object", "/v1/chat/completions",
         {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": {"type": "text", "text": PRIVATE_KEY}}]}),
        ("OpenAI content is a number", "/v1/chat/completions",
         {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": 42}]}),
        ("Anthropic content is an object", "/v1/messages",
         {"model": "claude-3-5-haiku", "max_tokens": 5, "messages": [{"role": "user", "content":
                                                                     {"type": "text", "text": PRIVATE_KEY}}]}),
        ("Anthropic content is a number", "/v1/messages",
         {"model": "claude-3-5-haiku", "max_tokens": 5, "messages": [{"role": "user", "content": 42}]}),
    ]
    for name, path, body in shapes:
        b0 = mock.stats()["requests"]
        r = request(gw.port, "POST", path, body, headers=ANTHROPIC_HEADERS if path == "/v1/messages" else None)
        s.check("%s: refused (400/403), never forwarded" % name,
                r.status in (400, 403) and mock.stats()["requests"] == b0, (r.status, r.body[:80]))
    # an unscannable block in Anthropic's system: the 400 names the block, not just "system"
    b0 = mock.stats()["requests"]
    r = request(gw.port, "POST", "/v1/messages",
                {"model": "claude-3-5-haiku", "max_tokens": 5,
                 "system": [{"type": "text", "text": "be terse"},
                            {"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                                            "data": "JVBERi0xLjQK"}}],
                 "messages": [{"role": "user", "content": "hi"}]}, headers=ANTHROPIC_HEADERS)
    msg = ((r.json() or {}).get("error") or {}).get("message", "")
    s.check("a base64 document in Anthropic's system: 400 naming system[1], never forwarded",
            r.status == 400 and "system[1]" in msg and "cannot scan" in msg and mock.stats()["requests"] == b0,
            (r.status, r.body[:200]))


def metric_sum(text, name_re, label_re=""):
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$", line)
        if m and re.search(name_re, m.group(1)) and re.search(label_re, m.group(2) or ""):
            total += float(m.group(3))
    return total


def t_metrics_counts(s, gw, mock):
    m0 = request(gw.port, "GET", "/metrics", key=None).body.decode()
    for _ in range(3):
        request(gw.port, "POST", "/v1/chat/completions", chat("count me"))
    request(gw.port, "POST", "/v1/chat/completions", chat("x", model="nope"))
    m1 = request(gw.port, "GET", "/metrics", key=None).body.decode()
    ok200 = metric_sum(m1, r"requests_total$", r'status="200"') - metric_sum(m0, r"requests_total$", r'status="200"')
    n404 = metric_sum(m1, r"requests_total$", r'status="404"') - metric_sum(m0, r"requests_total$", r'status="404"')
    s.check("metrics: *requests_total{status=200} grows by exactly 3", ok200 == 3, (ok200, m1[:600]))
    s.check("metrics: *requests_total{status=404} grows by exactly 1", n404 == 1, n404)
    tok = metric_sum(m1, r"tokens") - metric_sum(m0, r"tokens")
    s.check("metrics: token counters grow", tok > 0, tok)
    # one request with known usage: 1M in + 1M out at 0.15 / 0.60 USD per Mtok = 0.75 USD
    body = json.dumps(chat("MOCK:usage=1000000,1000000")).encode()
    m0 = request(gw.port, "GET", "/metrics", key=None).body.decode()
    r = request(gw.port, "POST", "/v1/chat/completions", body)
    up = len(mock.last_body())
    m1 = request(gw.port, "GET", "/metrics", key=None).body.decode()
    d = lambda name: metric_sum(m1, name) - metric_sum(m0, name)  # noqa: E731
    s.check("metrics: cost of a request with known usage is 0.75 USD",
            r.status == 200 and abs(d(r"cost_usd_total$") - 0.75) < 1e-9, d(r"cost_usd_total$"))
    s.check("metrics: input/output tokens grow by the provider's usage",
            d(r"tokens_input_total$") == 1000000 and d(r"tokens_output_total$") == 1000000,
            (d(r"tokens_input_total$"), d(r"tokens_output_total$")))
    s.check("metrics: client bytes received / upstream bytes sent grow by the body sizes",
            d(r"client_bytes_received_total$") == len(body) and d(r"upstream_bytes_sent_total$") == up,
            (d(r"client_bytes_received_total$"), len(body), d(r"upstream_bytes_sent_total$"), up))
    # the first /metrics answer itself is counted once it has been sent
    s.check("metrics: client bytes sent grow by the answer sizes",
            d(r"client_bytes_sent_total$") == len(r.body) + len(m0.encode()),
            (d(r"client_bytes_sent_total$"), len(r.body), len(m0.encode())))


def audit_records(gw):
    r = subprocess.run([AIRLOCK, "audit", "show", os.path.join(gw.dir, "audit")], capture_output=True, timeout=60)
    recs = []
    for line in r.stdout.decode("utf-8", "replace").splitlines():
        try:
            recs.append(json.loads(line))
        except ValueError:
            pass
    return r.returncode, recs


def blob_bytes(b):
    if "text" in b:
        return b["text"].encode("utf-8")
    for k in ("base64", "b64", "data"):
        if k in b:
            return base64.b64decode(b[k])
    return None


def t_audit_exact(s, gw, mock, rec):
    rc, recs = audit_records(gw)
    outbound = [blob_bytes(b) for r in recs if r.get("type") == "request"
                for b in r.get("blobs") or [] if b.get("name") == "outbound"]
    sent = [open(os.path.join(rec, f), "rb").read() for f in sorted(os.listdir(rec)) if f.endswith(".body")]
    missing = [b[:120] for b in sent if b not in outbound]
    s.check("audit: every body the provider received is in the log byte for byte (%d bodies)" % len(sent),
            rc == 0 and sent and not missing, (rc, missing[:3]))
    raw = b""
    for root, _, files in os.walk(os.path.join(gw.dir, "audit")):
        for f in files:
            if f.endswith(".alog"):
                raw += open(os.path.join(root, f), "rb").read()
    leaked = [k for k in (ALICE, BOB, OPENAI_REAL, ANTHROPIC_REAL) if k.encode() in raw]
    s.check("audit files hold no client key and no provider key", raw and not leaked, leaked)
    ids = {(r.get("meta") or {}).get("id") for r in recs if r.get("type") == "request"}
    s.check("audit: x-airlock-request-id of a served request is the audit record id",
            gw.last_id in ids, (gw.last_id, list(ids)[:3]))


def main():
    s = Suite("robust")
    why = gateway_missing()
    if why:
        s.bail(why)
    rec = os.path.join(s.tmp, "rec")
    os.makedirs(rec)
    mock = Mock(s, record=rec)
    port = free_port()
    gw = Airlock(s, base_config(port, mock.port, limits="{max_body_bytes: 4194304, upstream_timeout_ms: 5000}"),
                 port)
    for t in (t_concurrent_streams, t_big, t_slow_reader, t_http10, t_expect_continue, t_smuggling, t_deep_json,
              t_upstream_framing, t_fragmented, t_cross_format_limits, t_scan_everywhere, t_unscannable_shapes, t_nonstream_faults, t_disconnect_before_answer, t_headers, t_metrics_counts):
        s.run(t, gw, mock)
    r = request(port, "POST", "/v1/chat/completions", chat("the last one"))
    gw.last_id = r.headers.get("x-airlock-request-id")
    rc = gw.stop()
    s.check("SIGTERM after the load: exit 0", rc == 0, (rc, gw.stderr()[-400:]))
    s.run(t_audit_exact, gw, mock, rec)
    s.run(t_upstream_wrong_key, mock)
    s.run(t_stale_pool, mock)
    s.run(t_max_connections, mock)
    s.run(t_upstream_limits, mock)
    s.done()


if __name__ == "__main__":
    main()
