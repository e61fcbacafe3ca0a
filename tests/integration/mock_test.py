"""mock_test.py -- the mock provider itself, spoken to directly: its wire formats, auth
checks, fault controls and bookkeeping must stay exactly as docs/testing.md says, since
every gateway suite trusts it. Needs only build/mock_provider."""
import json
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from itest import (ANTHROPIC_REAL, MOCK, OPENAI_REAL, Mock, Suite, anthropic_stream_text, chat,  # noqa: E402
                   messages, openai_stream_text, raw_exchange, request, sse_events)

AH = {"anthropic-version": "2023-06-01"}


def main():
    s = Suite("mock")
    if not os.access(MOCK, os.X_OK):
        s.bail("%s not built" % MOCK)
    rec = os.path.join(s.tmp, "rec")
    os.makedirs(rec)
    m = Mock(s, record=rec)
    P = m.port

    r = request(P, "POST", "/v1/chat/completions", chat("hi"), key=OPENAI_REAL)
    j = r.json() or {}
    s.check("openai: chat.completion shape", r.status == 200 and j.get("object") == "chat.completion"
            and j["choices"][0]["message"]["role"] == "assistant" and j["choices"][0]["finish_reason"] == "stop"
            and j["id"].startswith("chatcmpl-") and set(j["usage"]) >= {"prompt_tokens", "completion_tokens",
                                                                      "total_tokens", "prompt_tokens_details"}, j)
    s.check("openai: deterministic usage (bytes/4, words)", j["usage"]["prompt_tokens"] == len(json.dumps(chat("hi"))) // 4
            and j["usage"]["completion_tokens"] == 8, j["usage"])
    r = request(P, "POST", "/chat/completions", chat("hi"), key=OPENAI_REAL)
    s.check("openai: path without /v1 also served", r.status == 200, r)
    r = request(P, "POST", "/v1/chat/completions", chat("hi"), key="sk-wrong")
    s.check("openai: wrong key 401 invalid_api_key", r.status == 401 and r.json()["error"]["code"] == "invalid_api_key", r)

    r = request(P, "POST", "/v1/chat/completions", chat("MOCK:words=4", stream=True,
                                                          stream_options={"include_usage": True}), key=OPENAI_REAL)
    evs = sse_events(r.body)
    first = json.loads(evs[0][1])
    s.check("openai stream: first delta role+empty content", first["choices"][0]["delta"] ==
            {"role": "assistant", "content": "", "refusal": None}, first)
    s.check("openai stream: usage chunk with choices [] then [DONE]", evs[-1][1] == "[DONE]"
            and json.loads(evs[-2][1])["choices"] == [] and json.loads(evs[-2][1])["usage"]["completion_tokens"] == 4,
            evs[-2:])
    s.check("openai stream: text/event-stream + chunked", r.headers.get("content-type", "").startswith("text/event-stream")
            and r.headers.get("transfer-encoding") == "chunked", r.headers)
    r = request(P, "POST", "/v1/chat/completions", chat("MOCK:words=4", stream=True), key=OPENAI_REAL)
    s.check("openai stream: no usage chunk unless asked", openai_stream_text(r.body)[1] is None, r.body[-200:])

    r = request(P, "POST", "/v1/messages", messages("MOCK:words=3", stream=True), key=ANTHROPIC_REAL,
                auth="x-api-key", headers=AH)
    names = [e for e, _ in sse_events(r.body)]
    s.check("anthropic stream: exact event sequence", names == ["message_start", "content_block_start", "ping"]
            + ["content_block_delta"] * 3 + ["content_block_stop", "message_delta", "message_stop"], names)
    s.check("anthropic stream: text and usage", anthropic_stream_text(r.body)[0] == "word1 word2 word3"
            and anthropic_stream_text(r.body)[1].get("output_tokens") == 3, r.body[-300:])
    r = request(P, "POST", "/v1/messages", messages("hi"), key=ANTHROPIC_REAL, auth="x-api-key")
    s.check("anthropic: anthropic-version required", r.status == 400, r)
    r = request(P, "POST", "/v1/messages", {"model": "c", "messages": [{"role": "user", "content": "x"}]},
                key=ANTHROPIC_REAL, auth="x-api-key", headers=AH)
    s.check("anthropic: max_tokens required", r.status == 400 and r.json()["error"]["type"] == "invalid_request_error", r)
    r = request(P, "POST", "/v1/messages", messages("hi"), key="sk-wrong", auth="x-api-key", headers=AH)
    s.check("anthropic: wrong key 401 authentication_error", r.status == 401
            and r.json() == {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}, r)
    r = request(P, "POST", "/v1/messages", messages("MOCK:status_429"), key=ANTHROPIC_REAL, auth="x-api-key", headers=AH)
    s.check("anthropic: status_429 rate_limit_error + retry-after", r.status == 429
            and r.json()["error"]["type"] == "rate_limit_error" and r.headers.get("retry-after") == "1", r)

    cb = {"model": "c", "messages": [{"role": "user", "content": "count me"}]}
    r = request(P, "POST", "/v1/messages/count_tokens", cb, key=ANTHROPIC_REAL, auth="x-api-key", headers=AH)
    s.check("count_tokens: {input_tokens: body bytes / 4}, no max_tokens needed",
            r.status == 200 and r.body == b'{"input_tokens":%d}' % (len(json.dumps(cb)) // 4), r)
    r = request(P, "POST", "/v1/messages/count_tokens", dict(cb, max_tokens=5), key=ANTHROPIC_REAL,
                auth="x-api-key", headers=AH)
    s.check("count_tokens: max_tokens refused as upstream", r.status == 400, r)
    r = request(P, "POST", "/v1/messages/count_tokens", cb, key="sk-wrong", auth="x-api-key", headers=AH)
    s.check("count_tokens: wrong key 401", r.status == 401, r)

    cp = {"model": "i", "prompt": ["MOCK:usage=3,2 a", "b"]}
    r = request(P, "POST", "/v1/completions", cp, key=OPENAI_REAL)
    j = r.json() or {}
    s.check("completions: text_completion, one choice per prompt, usage",
            r.status == 200 and j.get("object") == "text_completion" and len(j["choices"]) == 2
            and j["choices"][1]["index"] == 1 and j["usage"]["prompt_tokens"] == 3, r)
    r = request(P, "POST", "/v1/completions", dict(cp, stream=True, stream_options={"include_usage": True}),
                key=OPENAI_REAL)
    ev = [d for _, d in sse_events(r.body)]
    s.check("completions stream: text_completion chunks, a usage chunk with no choices, [DONE]",
            r.status == 200 and ev[-1] == "[DONE]" and json.loads(ev[-2])["choices"] == []
            and json.loads(ev[-2])["usage"]["completion_tokens"] == 2
            and all(json.loads(d)["object"] == "text_completion" for d in ev[:-1]), ev[-3:])
    r = request(P, "POST", "/v1/completions", {"model": "i", "prompt": [1, 2]}, key=OPENAI_REAL)
    s.check("completions: token prompt 400", r.status == 400, r)
    r = request(P, "POST", "/v1/embeddings", {"model": "e", "input": ["ab", "c"]}, key=OPENAI_REAL)
    j = r.json() or {}
    s.check("embeddings: a list of embeddings, vectors from the text, usage",
            r.status == 200 and j.get("object") == "list" and j["data"][0]["embedding"] == [2, 195, 97, 98]
            and j["data"][1]["index"] == 1 and j["usage"]["total_tokens"] == j["usage"]["prompt_tokens"] > 0, r)
    r = request(P, "POST", "/v1/embeddings", {"model": "e", "input": [[1]]}, key=OPENAI_REAL)
    s.check("embeddings: token input 400", r.status == 400, r)

    r = request(P, "POST", "/v1/chat/completions", chat("MOCK:echo é"), key=OPENAI_REAL)
    s.check("echo: answer is the body as received", r.json()["choices"][0]["message"]["content"].encode()
            == m.last_body() == json.dumps(chat("MOCK:echo é")).encode(), r.body[:200])
    r = request(P, "POST", "/v1/chat/completions", chat("x MOCK:split=a[B]c", stream=True), key=OPENAI_REAL)
    deltas = [json.loads(d)["choices"][0]["delta"].get("content") for _, d in sse_events(r.body)[1:-2]]
    s.check("split: one character per delta", deltas == ["a", "[", "B", "]", "c"], deltas)
    r = request(P, "POST", "/v1/chat/completions", chat("MOCK:usage=1000,7"), key=OPENAI_REAL)
    s.check("usage override", r.json()["usage"]["prompt_tokens"] == 1000 and r.json()["usage"]["completion_tokens"] == 7, r)
    r = request(P, "POST", "/v1/chat/completions", chat("MOCK:words=10", max_tokens=4), key=OPENAI_REAL)
    s.check("max_tokens cuts words (finish length)", r.json()["choices"][0]["message"]["content"] == "word1 word2 word3 word4"
            and r.json()["choices"][0]["finish_reason"] == "length", r)

    for mode, expect_reset in (("reset_before", True), ("reset_mid", True), ("garbage_before", False),
                               ("stall_mid", False)):
        b = json.dumps(chat("MOCK:" + mode, stream=True)).encode()
        sock = socket.create_connection(("127.0.0.1", P), timeout=1.0)
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + OPENAI_REAL.encode()
                     + b"\r\nContent-Length: %d\r\n\r\n" % len(b) + b)
        got, how = b"", "eof"
        try:
            while True:
                d = sock.recv(65536)
                if not d:
                    break
                got += d
        except ConnectionResetError:
            how = "rst"
        except (socket.timeout, TimeoutError):
            how = "timeout"
        sock.close()
        if mode == "reset_before":
            ok = how == "rst" and got == b""
        elif mode == "reset_mid":
            ok = how == "rst" and b"word" not in got and b"Hello" in got and b"[DONE]" not in got
        elif mode == "garbage_before":
            ok = how == "eof" and not got.startswith(b"HTTP/")
        else:
            ok = how == "timeout" and b" from" in got and b"[DONE]" not in got
        s.check("fault %s" % mode, ok and expect_reset == (how == "rst"), (how, got[-120:]))
    time.sleep(0.2)
    st = m.stats()
    s.check("stats: aborted counts the stalled stream the client left", st["aborted"] >= 1, st)

    b1 = json.dumps(chat("MOCK:words=1")).encode()
    one = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + OPENAI_REAL.encode()
           + b"\r\nContent-Length: %d\r\n\r\n" % len(b1) + b1)
    got, closed = raw_exchange(P, one + one.replace(b"Host: x", b"Host: x\r\nConnection: close"), timeout=5)
    s.check("pipelining and Connection: close", got.count(b"HTTP/1.1 200") == 2 and closed, got[:200])
    m.get("/mock/reset")
    for _ in range(3):
        request(P, "POST", "/v1/chat/completions", chat("x"), key=OPENAI_REAL)
    st = m.stats()
    s.check("stats: requests and connections count provider traffic", st["requests"] == 3 and st["connections"] == 3, st)
    files = sorted(os.listdir(rec))
    last_req = open(os.path.join(rec, [f for f in files if f.endswith(".req")][-1]), "rb").read()
    s.check("--record: NNNN.req holds head and body as received", last_req.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
            and last_req.endswith(json.dumps(chat("x")).encode()), last_req[:100])
    for junk in (b"\x00" * 70000, b"GET / HTTP/1.1\r\nContent-Length: zz\r\n\r\n", b"POST / HTTP/1.1\r\n\r\n"):
        raw_exchange(P, junk, timeout=1)
    s.check("mock survives junk", m.proc.poll() is None and request(P, "GET", "/mock/stats", key=None).status == 200)
    s.done()


if __name__ == "__main__":
    main()
