"""proxy_test.py -- the HTTP surface of SPEC §3 and the bad input of §7, end to end:
build/airlock between a raw client and the mock provider, on loopback."""
import json
import os
import resource
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from itest import (ALICE, ANTHROPIC_HEADERS, ANTHROPIC_REAL, BOB, OPENAI_REAL, Airlock, Mock,  # noqa: E402
                   Suite, anthropic_stream_text, base_config, chat, free_port, gateway_missing,
                   messages, openai_stream_text, raw_exchange, request, sse_events)

CAROL = "sk-test-carol-0123456789"
PRIVATE_KEY = ("-----BEGIN RSA PRIVATE KEY-----\n"
               "MIIEowIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM9Oi6Z1kJKZ4fl1rBfX7rHnLDEyqE\n"
               "k2Fq8Jw4v8vJm2JcQxY7wq9H3tH6fXJ8Q0cTgZ3mQ9bYyL9a0v2VfTHsm6R1pXq\n"
               "-----END RSA PRIVATE KEY-----")
DEFAULT_ANSWER = "Hello from the mock provider, a deterministic answer."

RULES = """
  - {name: no-secrets, if: {detected: [secrets]}, then: {action: block}}
  - {name: alice-not-bob-only, if: {key: [alice], model: [bob-only]}, then: {action: block}}
  - {name: iban-to-claude, if: {detected: [iban]}, then: {action: route, provider: ant, model: claude-3-5-haiku}}
  - {name: mask-emails, if: {detected: [email]}, then: {action: redact, detectors: [email]}}
  - {name: default, then: {action: allow}}"""


def shape_openai(r):
    j = r.json()
    return (isinstance(j, dict) and isinstance(j.get("error"), dict)
            and isinstance(j["error"].get("message"), str) and "type" in j["error"]
            and "code" in j["error"])


def shape_anthropic(r):
    j = r.json()
    return (isinstance(j, dict) and j.get("type") == "error" and isinstance(j.get("error"), dict)
            and isinstance(j["error"].get("type"), str) and isinstance(j["error"].get("message"), str))


# ---------------------------------------------------------------- endpoints

def t_healthz(s, gw, mock):
    r = request(gw.port, "GET", "/healthz", key=None)
    s.check("healthz 200 ok", r.status == 200 and r.body.strip() == b"ok", r)
    s.check("healthz has x-airlock-request-id", bool(r.headers.get("x-airlock-request-id")), r)


def t_openai_plain(s, gw, mock):
    before = mock.stats()["requests"]
    r = request(gw.port, "POST", "/v1/chat/completions", chat("hello there"))
    j = r.json() or {}
    s.check("openai: 200 chat.completion", r.status == 200 and j.get("object") == "chat.completion", r)
    s.check("openai: answer text relayed",
            (j.get("choices") or [{}])[0].get("message", {}).get("content") == DEFAULT_ANSWER, r)
    s.check("openai: model field", j.get("model") == "gpt-4o-mini", j.get("model"))
    up = mock.last_body()
    usage = j.get("usage") or {}
    s.check("openai: usage relayed (prompt = upstream bytes/4, completion = words)",
            usage.get("prompt_tokens") == len(up) // 4 and usage.get("completion_tokens") == 8, (usage, len(up)))
    s.check("openai: one upstream request", mock.stats()["requests"] == before + 1)
    s.check("openai: x-airlock-route oai/gpt-4o-mini", r.headers.get("x-airlock-route") == "oai/gpt-4o-mini", r.headers)
    s.check("openai: x-airlock-rule default", r.headers.get("x-airlock-rule") == "default", r.headers)
    s.check("openai: x-airlock-request-id", bool(r.headers.get("x-airlock-request-id")), r.headers)
    head = mock.last_head()
    s.check("openai: upstream gets the real provider key",
            ("Bearer " + OPENAI_REAL).lower() in head.lower(), head)
    s.check("openai: upstream never sees the client's key", ALICE not in head and ALICE.encode() not in up, head)
    s.check("openai: upstream path /v1/chat/completions", head.startswith("POST /v1/chat/completions "), head[:80])


def t_header_hygiene(s, gw, mock):
    extra = {"x-api-key": ALICE, "Cookie": "session=abc", "X-Forwarded-For": "10.9.8.7",
             "OpenAI-Organization": "org-client"}
    r = request(gw.port, "POST", "/v1/chat/completions", chat("hi"), headers=extra)
    head = mock.last_head().lower()
    s.check("client headers (cookie, x-api-key, forwarded-for, org) not passed upstream",
            r.status == 200 and ALICE.lower() not in head and "session=abc" not in head
            and "10.9.8.7" not in head and "org-client" not in head, head)
    s.check("provider response headers (request ids, org ids) not passed to the client",
            "x-request-id" not in r.headers and "openai-processing-ms" not in r.headers, r.headers)
    h = dict(ANTHROPIC_HEADERS)
    h.update(extra)
    r = request(gw.port, "POST", "/v1/messages", messages("hi"), headers=h)
    head = mock.last_head().lower()
    s.check("anthropic: only the gateway's key goes upstream", r.status == 200 and head.count("x-api-key:") == 1
            and ALICE.lower() not in head and "anthropic-organization-id" not in r.headers, (head, r.headers))


def t_openai_echo(s, gw, mock):
    body = chat("prove what left MOCK:echo", temperature=0.25, max_tokens=77, user="u1")
    r = request(gw.port, "POST", "/v1/chat/completions", body)
    j = r.json() or {}
    text = (j.get("choices") or [{}])[0].get("message", {}).get("content", "")
    up = mock.last_body()
    s.check("echo: answer equals the bytes that reached the provider", text.encode() == up, (text[:200], up[:200]))
    try:
        sent = json.loads(up)
    except ValueError:
        sent = None
    s.check("echo: allowed request forwarded with its parameters intact", sent == body, (sent, body))


def t_rename(s, gw, mock):
    r = request(gw.port, "POST", "/v1/chat/completions", chat("hi", model="gpt-renamed"))
    up = json.loads(mock.last_body() or b"{}")
    s.check("rename: upstream_model sent upstream", up.get("model") == "gpt-4o-2024-08-06", up.get("model"))
    j = r.json() or {}
    s.check("rename: answer names the model that answered", j.get("model") == "gpt-4o-2024-08-06", j.get("model"))
    s.check("rename: x-airlock-route oai/gpt-renamed", r.headers.get("x-airlock-route") == "oai/gpt-renamed", r.headers)


def t_openai_stream(s, gw, mock):
    r = request(gw.port, "POST", "/v1/chat/completions", chat("MOCK:words=12", stream=True))
    s.check("openai stream: 200 text/event-stream",
            r.status == 200 and r.headers.get("content-type", "").startswith("text/event-stream"), r)
    text, usage, model, finish = openai_stream_text(r.body)
    s.check("openai stream: all deltas relayed", text == " ".join("word%d" % i for i in range(1, 13)), text)
    s.check("openai stream: finish_reason stop", finish == "stop", finish)
    s.check("openai stream: ends with data: [DONE]", r.body.rstrip().endswith(b"data: [DONE]"), r.body[-80:])
    up = json.loads(mock.last_body() or b"{}")
    s.check("openai stream: usage asked upstream (stream_options.include_usage)",
            (up.get("stream_options") or {}).get("include_usage") is True, up)
    s.check("openai stream: usage chunk the client did not ask for is stripped", usage is None, usage)
    r = request(gw.port, "POST", "/v1/chat/completions",
                chat("MOCK:words=3", stream=True, stream_options={"include_usage": True}))
    text, usage, model, finish = openai_stream_text(r.body)
    s.check("openai stream: usage chunk kept when asked",
            usage is not None and usage.get("completion_tokens") == 3, (usage, r.body[-400:]))
    s.check("openai stream: x-airlock-route/rule", r.headers.get("x-airlock-route") == "oai/gpt-4o-mini"
            and r.headers.get("x-airlock-rule") == "default", r.headers)


def t_anthropic_plain(s, gw, mock):
    r = request(gw.port, "POST", "/v1/messages", messages("hello"), auth="x-api-key", headers=ANTHROPIC_HEADERS)
    j = r.json() or {}
    s.check("anthropic: 200 message", r.status == 200 and j.get("type") == "message", r)
    s.check("anthropic: text relayed", (j.get("content") or [{}])[0].get("text") == DEFAULT_ANSWER, j)
    s.check("anthropic: model field names upstream model", j.get("model") == "claude-3-5-haiku-20241022", j.get("model"))
    up = mock.last_body()
    s.check("anthropic: usage relayed",
            (j.get("usage") or {}).get("input_tokens") == len(up) // 4 and j["usage"].get("output_tokens") == 8, j.get("usage"))
    head = mock.last_head().lower()
    s.check("anthropic: upstream gets real x-api-key and anthropic-version",
            ("x-api-key: " + ANTHROPIC_REAL).lower() in head and "anthropic-version:" in head, head)
    s.check("anthropic: client key not forwarded", ALICE.lower() not in head, head)
    s.check("anthropic: headers", r.headers.get("x-airlock-route") == "ant/claude-3-5-haiku"
            and r.headers.get("x-airlock-rule") == "default" and r.headers.get("x-airlock-request-id"), r.headers)
    r = request(gw.port, "POST", "/v1/messages", messages("hello bearer"), headers=ANTHROPIC_HEADERS)
    s.check("anthropic: Authorization: Bearer also accepted", r.status == 200, r)


def t_anthropic_stream(s, gw, mock):
    r = request(gw.port, "POST", "/v1/messages", messages("MOCK:words=7", stream=True), auth="x-api-key",
                headers=ANTHROPIC_HEADERS)
    s.check("anthropic stream: 200 text/event-stream",
            r.status == 200 and r.headers.get("content-type", "").startswith("text/event-stream"), r)
    names = [e for e, _ in sse_events(r.body)]
    expect = ["message_start", "content_block_start", "ping"] + ["content_block_delta"] * 7 + \
        ["content_block_stop", "message_delta", "message_stop"]
    s.check("anthropic stream: event sequence relayed exactly", names == expect, names)
    text, usage, model, stop = anthropic_stream_text(r.body)
    s.check("anthropic stream: text", text == " ".join("word%d" % i for i in range(1, 8)), text)
    s.check("anthropic stream: usage and stop", usage.get("output_tokens") == 7 and stop == "end_turn", (usage, stop))


def t_cross_format(s, gw, mock):
    r = request(gw.port, "POST", "/v1/chat/completions", chat("cross MOCK:words=4", model="claude-3-5-haiku"))
    j = r.json() or {}
    head = mock.last_head()
    s.check("openai->anthropic: upstream is /v1/messages", head.startswith("POST /v1/messages "), head[:60])
    s.check("openai->anthropic: answered in OpenAI format",
            r.status == 200 and j.get("object") == "chat.completion"
            and (j.get("choices") or [{}])[0].get("message", {}).get("content") == "word1 word2 word3 word4", r)
    s.check("openai->anthropic: model is the one that answered", j.get("model") == "claude-3-5-haiku-20241022", j.get("model"))
    r = request(gw.port, "POST", "/v1/chat/completions",
                chat("cross MOCK:words=4", model="claude-3-5-haiku", stream=True))
    text, usage, model, finish = openai_stream_text(r.body)
    s.check("openai->anthropic stream: OpenAI chunks", r.status == 200 and text == "word1 word2 word3 word4"
            and r.body.rstrip().endswith(b"[DONE]"), r.body[:300])
    r = request(gw.port, "POST", "/v1/messages", messages("cross MOCK:words=3", model="gpt-4o-mini", stream=True),
                headers=ANTHROPIC_HEADERS)
    text, usage, model, stop = anthropic_stream_text(r.body)
    s.check("anthropic->openai stream: Anthropic events", r.status == 200 and text == "word1 word2 word3"
            and [e for e, _ in sse_events(r.body)][-1] == "message_stop", r.body[:300])


def t_models(s, gw, mock):
    r = request(gw.port, "GET", "/v1/models")
    j = r.json() or {}
    ids = [m.get("id") for m in j.get("data", [])]
    s.check("models: OpenAI list format", r.status == 200 and j.get("object") == "list"
            and all(m.get("object") == "model" for m in j.get("data", [])), r)
    s.check("models: alice sees her models, not bob-only", "gpt-4o-mini" in ids and "claude-3-5-haiku" in ids
            and "bob-only" not in ids, ids)
    r = request(gw.port, "GET", "/v1/models", key=BOB)
    ids = [m.get("id") for m in (r.json() or {}).get("data", [])]
    s.check("models: bob sees bob-only", "bob-only" in ids, ids)
    r = request(gw.port, "GET", "/v1/models", key="sk-nobody")
    s.check("models: unknown key 401", r.status == 401, r)


def t_metrics(s, gw, mock):
    r = request(gw.port, "GET", "/metrics", key=None)
    text = r.body.decode("utf-8", "replace")
    s.check("metrics: 200 text/plain", r.status == 200 and r.headers.get("content-type", "").startswith("text/plain"), r.headers)
    bad = []
    import re
    sample = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*",?)*\})? -?[0-9.eE+-]+|[+-]Inf|NaN$')
    for line in text.splitlines():
        if not line or line.startswith("# HELP ") or line.startswith("# TYPE "):
            continue
        if not sample.match(line):
            bad.append(line)
    s.check("metrics: every line is Prometheus text format", text and not bad, bad[:5])
    s.check("metrics: request counters and latency histogram",
            "_bucket{" in text and 'le="+Inf"' in text and re.search(r"request", text), text[:500])
    s.check("metrics: request counter labelled by status", re.search(r'status="200"', text), text[:800])
    s.check("metrics: requests by route, verdict and status (SPEC §3)",
            re.search(r'requests_total\{[^}]*route="oai/gpt-4o-mini"', text) and re.search(r'verdict="block"', text)
            and re.search(r'status="403"', text), text[:800])
    for what in ("bytes", "tokens", "cost", "audit_queue"):
        s.check("metrics: has %s" % what, re.search(r"^airlock_\w*%s\w* " % what, text, re.M)
                or re.search(r"^\w*%s\w*[{ ]" % what, text, re.M), what)


# ---------------------------------------------------------------- errors

def t_400(s, gw, mock):
    before = mock.stats()["requests"]
    r = request(gw.port, "POST", "/v1/chat/completions", b'{"model": "gpt-4o-mini", "messages": [')
    s.check("400 malformed JSON (openai shape)", r.status == 400 and shape_openai(r), r)
    s.check("400 has x-airlock-request-id", bool(r.headers.get("x-airlock-request-id")), r.headers)
    r = request(gw.port, "POST", "/v1/messages", b'{"model": nope}', headers=ANTHROPIC_HEADERS)
    s.check("400 malformed JSON (anthropic shape)", r.status == 400 and shape_anthropic(r), r)
    r = request(gw.port, "POST", "/v1/chat/completions", {"model": "gpt-4o-mini", "messages": "hi"})
    s.check("400 messages not a list", r.status == 400 and shape_openai(r), r)
    r = request(gw.port, "POST", "/v1/chat/completions", {"model": 5, "messages": []})
    s.check("400 model not a string", r.status == 400 and shape_openai(r), r)
    r = request(gw.port, "POST", "/v1/chat/completions", {"model": "gpt-4o-mini", "stream": "yes",
                                                          "messages": [{"role": "user", "content": "hi"}]})
    s.check("400 stream not a boolean", r.status == 400 and shape_openai(r), r)
    r = request(gw.port, "POST", "/v1/chat/completions", [1, 2])
    s.check("400 body not an object", r.status == 400 and shape_openai(r), r)
    r = request(gw.port, "POST", "/v1/chat/completions",
                b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"bad \xff\xfe utf8"}]}')
    s.check("400 invalid UTF-8", r.status == 400 and shape_openai(r), r)
    s.check("400s never reach the provider", mock.stats()["requests"] == before)


def t_401(s, gw, mock):
    r = request(gw.port, "POST", "/v1/chat/completions", chat("hi"), key="sk-unknown")
    s.check("401 unknown key (openai shape)", r.status == 401 and shape_openai(r), r)
    r = request(gw.port, "POST", "/v1/chat/completions", chat("hi"), key=None)
    s.check("401 missing key", r.status == 401 and shape_openai(r), r)
    r = request(gw.port, "POST", "/v1/messages", messages("hi"), key="sk-unknown", auth="x-api-key",
                headers=ANTHROPIC_HEADERS)
    s.check("401 unknown key (anthropic shape)", r.status == 401 and shape_anthropic(r)
            and r.json()["error"]["type"] == "authentication_error", r)
    r = request(gw.port, "POST", "/v1/chat/completions", chat("hi"), key=OPENAI_REAL)
    s.check("401 the provider's real key is not a client key", r.status == 401, r)


def t_403(s, gw, mock):
    before = mock.stats()["requests"]
    r = request(gw.port, "POST", "/v1/chat/completions", chat("please store this:\n" + PRIVATE_KEY))
    msg = ((r.json() or {}).get("error") or {}).get("message", "")
    s.check("403 secret blocked (openai shape)", r.status == 403 and shape_openai(r), r)
    s.check("403 message names rule and detector", "no-secrets" in msg and "private_key" in msg, msg)
    s.check("403 message never contains the secret", "MIIEow" not in r.body.decode("latin-1"), msg)
    s.check("403 x-airlock-rule header", r.headers.get("x-airlock-rule") == "no-secrets", r.headers)
    r = request(gw.port, "POST", "/v1/messages", messages("key:\n" + PRIVATE_KEY), auth="x-api-key",
                headers=ANTHROPIC_HEADERS)
    s.check("403 secret blocked (anthropic shape, permission_error)", r.status == 403 and shape_anthropic(r)
            and r.json()["error"]["type"] == "permission_error" and "no-secrets" in r.json()["error"]["message"], r)
    r = request(gw.port, "POST", "/v1/messages", messages("ok", system="sys " + PRIVATE_KEY), headers=ANTHROPIC_HEADERS)
    s.check("403 secret in the system prompt", r.status == 403, r)
    r = request(gw.port, "POST", "/v1/chat/completions", chat("hi", model="bob-only"))
    s.check("403 rule on key+model", r.status == 403 and "alice-not-bob-only" in r.body.decode(), r)
    s.check("blocked requests never reach the provider", mock.stats()["requests"] == before)


def t_404(s, gw, mock):
    r = request(gw.port, "POST", "/v1/chat/completions", chat("hi", model="gpt-nope"))
    s.check("404 unknown model (openai shape)", r.status == 404 and shape_openai(r), r)
    r = request(gw.port, "POST", "/v1/messages", messages("hi", model="claude-nope"), headers=ANTHROPIC_HEADERS)
    s.check("404 unknown model (anthropic shape)", r.status == 404 and shape_anthropic(r), r)


def t_413(s, gw, mock):
    big = chat("x" * 70000)
    r = request(gw.port, "POST", "/v1/chat/completions", big)
    s.check("413 body over max_body_bytes", r.status == 413 and shape_openai(r), r)
    # a huge declared Content-Length: refused once the limit is passed, not read to the end
    got, _ = raw_exchange(gw.port, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                          + ALICE.encode() + b"\r\nContent-Length: 99999999\r\n\r\n" + b"x" * 70000, timeout=5)
    s.check("413 on a huge Content-Length once the limit is passed", got.startswith(b"HTTP/1.1 413"), got[:100])
    chunks = b"".join(b"%x\r\n" % 10000 + b" " * 10000 + b"\r\n" for _ in range(7)) + b"0\r\n\r\n"
    got, _ = raw_exchange(gw.port, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                          + ALICE.encode() + b"\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks, timeout=5)
    s.check("413 on a chunked body over the limit", got.startswith(b"HTTP/1.1 413"), got[:100])


def t_upstream_errors(s, gw, mock):
    r = request(gw.port, "POST", "/v1/chat/completions", chat("MOCK:status_429"))
    s.check("429 from upstream passed on (openai shape)", r.status == 429 and shape_openai(r), r)
    r = request(gw.port, "POST", "/v1/messages", messages("MOCK:status_429"), headers=ANTHROPIC_HEADERS)
    s.check("429 from upstream passed on (anthropic shape)", r.status == 429 and shape_anthropic(r), r)
    r = request(gw.port, "POST", "/v1/chat/completions", chat("MOCK:status_500"))
    s.check("upstream 500 -> 5xx in openai shape", r.status in (500, 502) and shape_openai(r), r)
    for mode in ("reset_before", "garbage_before"):
        for stream in (False, True):
            r = request(gw.port, "POST", "/v1/chat/completions", chat("MOCK:" + mode, stream=stream))
            s.check("502 upstream %s (stream=%s)" % (mode, stream), r.status == 502 and shape_openai(r), r)
    s.check("502 still names the route and rule it was decided on",
            r.headers.get("x-airlock-route") == "oai/gpt-4o-mini" and r.headers.get("x-airlock-rule") == "default",
            r.headers)
    r = request(gw.port, "POST", "/v1/messages", messages("MOCK:reset_before"), headers=ANTHROPIC_HEADERS)
    s.check("502 upstream reset (anthropic shape)", r.status == 502 and shape_anthropic(r), r)
    r = request(gw.port, "POST", "/v1/chat/completions", chat("MOCK:garbage_mid"))
    s.check("502 upstream non-JSON body", r.status == 502 and shape_openai(r), r)
    t0 = time.time()
    r = request(gw.port, "POST", "/v1/chat/completions", chat("MOCK:stall_before"), timeout=20)
    s.check("504 upstream stall (openai shape)", r.status == 504 and shape_openai(r), r)
    r = request(gw.port, "POST", "/v1/messages", messages("MOCK:stall_before", stream=True),
                headers=ANTHROPIC_HEADERS, timeout=20)
    s.check("504 upstream stall (anthropic shape, stream)", r.status == 504 and shape_anthropic(r), r)
    del t0


def t_midstream(s, gw, mock):
    for mode in ("reset_mid", "garbage_mid", "stall_mid"):
        t0 = time.time()
        try:
            r = request(gw.port, "POST", "/v1/chat/completions", chat("MOCK:%s MOCK:words=20" % mode, stream=True),
                        timeout=20)
            body, status = r.body, r.status
        except Exception as e:  # http.client raises IncompleteRead on a cut chunked body
            body = getattr(e, "partial", b"") or b""
            status = 200
        text, _, _, _ = openai_stream_text(body)
        s.check("mid-stream %s: client got the first deltas then the stream ended" % mode,
                status == 200 and "word1" in text
                and time.time() - t0 < 15, (status, body[:300]))
        s.check("mid-stream %s: no fake success ([DONE] or finish_reason)" % mode,
                b'"finish_reason":"stop"' not in body.replace(b" ", b""), body[-300:])
        s.check("mid-stream %s: the stream ends with an OpenAI error event" % mode,
                sse_events(body) and sse_events(body)[-1][1].startswith('{"error":'), body[-200:])
        try:
            r = request(gw.port, "POST", "/v1/messages", messages("MOCK:%s MOCK:words=20" % mode, stream=True),
                        headers=ANTHROPIC_HEADERS, timeout=20)
            evs = sse_events(r.body)
        except Exception as e:  # noqa: BLE001
            evs = [("exception", repr(e))]
        s.check("mid-stream %s (anthropic): ends with event: error, well framed" % mode,
                evs and evs[-1][0] == "error" and "message_stop" not in [e for e, _ in evs], evs[-2:])
    r = request(gw.port, "GET", "/healthz", key=None)
    s.check("gateway still serving after upstream faults", r.status == 200, r)


def t_slow_but_alive_stream(s, gw, mock):
    # upstream_timeout_ms 1500 bounds every gap between bytes, not the whole answer
    r = request(gw.port, "POST", "/v1/chat/completions", chat("MOCK:delay=400 MOCK:words=6", stream=True), timeout=20)
    s.check("a stream slower in total than the upstream timeout, with short gaps, completes",
            r.status == 200 and openai_stream_text(r.body)[0] == "word1 word2 word3 word4 word5 word6", r.body[-200:])


def t_redact(s, gw, mock):
    email = "jane.doe@example.com"
    r = request(gw.port, "POST", "/v1/chat/completions", chat("mail %s now MOCK:user_split" % email))
    up = mock.last_body().decode("utf-8", "replace")
    s.check("redact: the email never leaves", email not in up and "[EMAIL_1_" in up, up)
    j = r.json() or {}
    text = (j.get("choices") or [{}])[0].get("message", {}).get("content", "")
    s.check("redact: original restored in the answer", email in text and "[EMAIL_1" not in text, text)
    s.check("redact: x-airlock-rule mask-emails", r.headers.get("x-airlock-rule") == "mask-emails", r.headers)
    r = request(gw.port, "POST", "/v1/chat/completions", chat("mail %s now MOCK:user_split" % email, stream=True))
    text, _, _, _ = openai_stream_text(r.body)
    s.check("redact: restored across one-char deltas (stream)", email in text and "[EMAIL_" not in text, text)
    r = request(gw.port, "POST", "/v1/chat/completions",
                chat("mail %s MOCK:fragment=11 MOCK:user_split" % email, stream=True))
    text, _, _, _ = openai_stream_text(r.body)
    s.check("redact: restored when the provider's bytes arrive in 11-byte pieces", email in text
            and "[EMAIL_" not in text, text)
    r = request(gw.port, "POST", "/v1/messages", messages("mail %s now MOCK:user_split" % email, stream=True),
                headers=ANTHROPIC_HEADERS)
    text, _, _, _ = anthropic_stream_text(r.body)
    s.check("redact: restored across one-char deltas (anthropic stream)", email in text and "[EMAIL_" not in text, text)


def t_redact_everywhere(s, gw, mock):
    email = "jane.doe@example.com"
    # a repeated member is refused outright now (the one strict reading): nothing leaves
    before = mock.stats()["requests"]
    r = request(gw.port, "POST", "/v1/chat/completions",
                ('{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi","content":"mail %s"}]}'
                 % email).encode())
    s.check("redact: duplicate content keys refused (400), nothing left",
            r.status == 400 and "twice" in r.body.decode() and mock.stats()["requests"] == before, r)
    cases = [
        ("a \\u0040 escape", "/v1/chat/completions",
         b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"mail jane.doe\\u0040example.com now"}]}'),
        ("tool call arguments and results", "/v1/chat/completions",
         {"model": "gpt-4o-mini", "messages": [
             {"role": "user", "content": "hi"},
             {"role": "assistant", "content": None, "tool_calls": [{"id": "c", "type": "function", "function": {
                 "name": "f", "arguments": json.dumps({"to": email})}}]},
             {"role": "tool", "tool_call_id": "c", "content": "sent to " + email}]}),
        ("Anthropic tool_use input and tool_result", "/v1/messages",
         {"model": "claude-3-5-haiku", "max_tokens": 5, "messages": [
             {"role": "user", "content": "hi"},
             {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {"to": email}}]},
             {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "sent to " + email}]}]}),
    ]
    for name, path, body in cases:
        r = request(gw.port, "POST", path, body, headers=ANTHROPIC_HEADERS)
        up = mock.last_body()
        s.check("redact: email in %s masked before leaving" % name,
                r.status == 200 and b"[EMAIL_1_" in up and b"jane.doe@" not in up and b"jane.doe\\u0040" not in up,
                (r.status, up[:300]))


def t_route(s, gw, mock):
    r = request(gw.port, "POST", "/v1/chat/completions", chat("pay DE89370400440532013000 MOCK:words=2"))
    head = mock.last_head()
    j = r.json() or {}
    s.check("route: IBAN request goes to the anthropic provider", head.startswith("POST /v1/messages "), head[:60])
    s.check("route: answered in the client's (OpenAI) format naming the real model",
            j.get("object") == "chat.completion" and j.get("model") == "claude-3-5-haiku-20241022", r)
    s.check("route: headers", r.headers.get("x-airlock-route") == "ant/claude-3-5-haiku"
            and r.headers.get("x-airlock-rule") == "iban-to-claude", r.headers)


def t_budget(s, gw, mock):
    r = request(gw.port, "POST", "/v1/chat/completions", chat("MOCK:usage=1000000,1000000"), key=CAROL)
    s.check("budget: first request within budget", r.status == 200, r)
    r = request(gw.port, "POST", "/v1/chat/completions", chat("again"), key=CAROL)
    s.check("budget: 429 once the day's budget is spent", r.status == 429 and shape_openai(r), r)
    r = request(gw.port, "POST", "/v1/chat/completions", chat("alice unaffected"))
    s.check("budget: other keys unaffected", r.status == 200, r)


# ---------------------------------------------------------------- connections

def t_streaming_incremental(s, gw, mock):
    body = json.dumps(chat("MOCK:slow MOCK:words=8", stream=True)).encode()
    req = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + ALICE.encode()
           + b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
    sock = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    sock.sendall(req)
    arrivals = []  # (time, cumulative words seen)
    got = b""
    while True:
        d = sock.recv(65536)
        if not d:
            break
        got += d
        arrivals.append((time.time(), got.count(b'"content":"') + got.count(b'"content": "')))
    sock.close()
    distinct = len(set(n for _, n in arrivals))
    # the mock spaces the 8 deltas 50 ms apart: a relay that buffers shows them in one or two reads
    s.check("stream relayed chunk by chunk (deltas arrive in separate reads)", distinct >= 5,
            [(round(t - arrivals[0][0], 3), n) for t, n in arrivals])
    if len(arrivals) > 1:
        spread = arrivals[-1][0] - arrivals[0][0]
        s.check("stream arrival spread reflects upstream pacing", spread > 0.2, spread)


def t_upstream_keepalive(s, gw, mock):
    st0 = mock.stats()
    for i in range(10):
        request(gw.port, "POST", "/v1/chat/completions", chat("ka %d" % i))
    st1 = mock.stats()
    reqs = st1["requests"] - st0["requests"]
    conns = st1["connections"] - st0["connections"]
    s.check("upstream keep-alive: connections reused (%d requests, %d new connections)" % (reqs, conns),
            reqs == 10 and conns < reqs, (st0, st1))


def t_client_keepalive(s, gw, mock):
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
    statuses, socks = [], set()
    for i in range(3):
        c.request("POST", "/v1/chat/completions", body=json.dumps(chat("k%d" % i)),
                  headers={"Authorization": "Bearer " + ALICE, "Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        statuses.append(r.status)
        socks.add(id(c.sock))
    c.close()
    s.check("client keep-alive: three requests on one connection", statuses == [200, 200, 200] and len(socks) == 1,
            (statuses, socks))


def t_pipelining(s, gw, mock):
    def one(words, close=False):
        b = json.dumps(chat("MOCK:words=%d" % words)).encode()
        return (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + ALICE.encode()
                + b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n" % (
                    len(b), b"Connection: close\r\n" if close else b"") + b)
    got, closed = raw_exchange(gw.port, one(1) + one(2) + one(3, close=True), timeout=10)
    n = got.count(b"HTTP/1.1 200")
    i1, i2, i3 = got.find(b'"word1"'), got.find(b'"word1 word2"'), got.find(b'"word1 word2 word3"')
    s.check("pipelining: three requests in one write, answered in order",
            n == 3 and 0 <= i1 < i2 < i3, (n, i1, i2, i3, got[:300]))


def t_slowloris(s, gw, mock):
    sock = socket.create_connection(("127.0.0.1", gw.port), timeout=8)
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    t0 = time.time()
    closed = False
    try:
        while time.time() - t0 < 8:
            sock.sendall(b"a")  # a byte at a time, never finishing the head
            sock.settimeout(0.3)
            try:
                d = sock.recv(4096)
                if not d or d.startswith(b"HTTP/1.1 408"):
                    closed = True
                    break
            except (socket.timeout, TimeoutError):
                pass
    except (BrokenPipeError, ConnectionResetError):
        closed = True
    sock.close()
    s.check("slowloris: header timeout closes a connection that never finishes its head", closed,
            time.time() - t0)


def t_body_drip(s, gw, mock):
    """A body dripped a byte at a time resets the idle timer with every byte; it must still
    arrive whole within body_timeout_ms (3000 here) or get a 408, and nothing leaves."""
    before = mock.stats()["requests"]
    sock = socket.create_connection(("127.0.0.1", gw.port), timeout=8)
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                 b"Content-Type: application/json\r\nContent-Length: 200\r\n\r\n" % ALICE.encode())
    t0 = time.time()
    got = b""
    try:
        while time.time() - t0 < 10 and not got:
            sock.sendall(b" ")  # one byte every 0.2 s: never idle, never done
            sock.settimeout(0.2)
            try:
                got = sock.recv(4096) or b"EOF"
            except (socket.timeout, TimeoutError):
                pass
    except (BrokenPipeError, ConnectionResetError):
        got = b"reset"
    took = time.time() - t0
    sock.close()
    s.check("body drip: 408 once body_timeout_ms has passed, whatever the drip rate",
            got.startswith(b"HTTP/1.1 408") and b"body took too long" in got and 2.5 < took < 6,
            (took, got[:200]))
    s.check("body drip: nothing reached the provider", mock.stats()["requests"] == before)


def t_silent_client(s, gw, mock):
    # header_timeout_ms is 1000 here: 4 s is ample
    sock = socket.create_connection(("127.0.0.1", gw.port), timeout=4)
    t0 = time.time()
    try:
        sock.recv(1)  # EOF, or the first byte of a 408: either way it was let go
        closed = True
    except (socket.timeout, TimeoutError):
        closed = False
    except OSError:
        closed = True
    sock.close()
    s.check("a client that connects and sends nothing is closed by the header timeout", closed,
            time.time() - t0)


def t_half_open(s, gw, mock):
    socks = [socket.create_connection(("127.0.0.1", gw.port)) for _ in range(20)]
    r = request(gw.port, "GET", "/healthz", key=None)
    s.check("idle half-open connections do not block others", r.status == 200, r)
    for x in socks:
        x.close()


def t_client_disconnect(s, gw, mock):
    a0 = mock.stats()["aborted"]
    body = json.dumps(chat("MOCK:stall_mid MOCK:words=20", stream=True)).encode()
    sock = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + ALICE.encode()
                 + b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    got = b""
    end = time.time() + 5
    while b"word2" not in got and time.time() < end:
        try:
            got += sock.recv(65536)
        except (socket.timeout, TimeoutError):
            break
    sock.close()
    seen = False
    end = time.time() + 5
    while time.time() < end:
        if mock.stats()["aborted"] > a0:
            seen = True
            break
        time.sleep(0.05)
    s.check("client disconnect mid-stream closes the upstream request", b"word2" in got and seen,
            (got[-200:], mock.stats()))


def t_garbage_requests(s, gw, mock):
    cases = [b"GARBAGE\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n", b"\x00\x01\x02\xff" * 100 + b"\r\n\r\n",
             b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
             b"POST /v1/chat/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
             b"GET /" + b"a" * 100000 + b" HTTP/1.1\r\n\r\n"]
    ok = True
    for c in cases:
        got, _ = raw_exchange(gw.port, c, timeout=3)
        if got and not got.startswith(b"HTTP/1.1 4"):
            ok = False
    r = request(gw.port, "GET", "/healthz", key=None)
    s.check("malformed HTTP answered 4xx or closed, gateway keeps serving", ok and r.status == 200, r)


def t_unknown_path(s, gw, mock):
    r = request(gw.port, "GET", "/v1/nothing")
    s.check("unknown path 404 with request id", r.status == 404 and r.headers.get("x-airlock-request-id"), r)
    ids = set()
    for _ in range(3):
        ids.add(request(gw.port, "GET", "/healthz", key=None).headers.get("x-airlock-request-id"))
    s.check("request ids are unique", len(ids) == 3, ids)


def t_audit_503(s, mock):
    """Audit unavailable: the gateway's files are capped (RLIMIT_FSIZE, SIGXFSZ ignored), so the
    first big record cannot be written; the request must be refused, not sent."""
    port = free_port()

    def cap():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (48 * 1024, 48 * 1024))
    cfg = base_config(port, mock.port, limits="{max_body_bytes: 1048576, upstream_timeout_ms: 3000}")
    try:
        gw = Airlock(s, cfg, port, preexec=cap, name="audit503")
    except RuntimeError as e:
        s.check("503 audit unavailable: gateway starts with a file-size cap", False, e)
        return
    before = mock.stats()["requests"]
    statuses = []
    for i in range(4):
        r = request(gw.port, "POST", "/v1/chat/completions", chat("big %d " % i + "y" * 30000), timeout=15)
        statuses.append(r.status)
        if r.status == 503:
            s.check("503 audit unavailable (openai shape)", shape_openai(r), r)
            break
    s.check("503 when the audit cannot be written (fail closed)", 503 in statuses, statuses)
    sent = mock.stats()["requests"] - before
    s.check("503: the refused request never left", sent == statuses.count(200), (sent, statuses))
    gw.stop()

    port = free_port()
    cfg = base_config(port, mock.port, limits="{max_body_bytes: 1048576, upstream_timeout_ms: 3000}",
                      audit="{dir: ./audit, on_failure: allow}")
    gw = Airlock(s, cfg, port, preexec=cap, name="auditallow")
    statuses = [request(port, "POST", "/v1/chat/completions", chat("big %d " % i + "y" * 30000), timeout=15).status
                for i in range(4)]
    s.check("on_failure: allow keeps serving when the audit cannot be written", statuses == [200] * 4, statuses)
    gw.stop()


def main():
    s = Suite("proxy")
    why = gateway_missing()
    if why:
        s.bail(why)
    rec = os.path.join(s.tmp, "rec")
    os.makedirs(rec)
    mock = Mock(s, record=rec)
    port = free_port()
    cfg = base_config(port, mock.port, rules=RULES)
    cfg = cfg.replace("keys:\n", 'keys:\n  - {name: carol, team: green, key: "%s", budget_usd_per_day: 0.01}\n' % CAROL, 1)
    for attempt in range(3):
        try:
            gw = Airlock(s, cfg, port)
            break
        except RuntimeError as e:
            if attempt == 2:
                s.check("gateway starts with the integration config", False, e)
                s.done()
            port = free_port()
            cfg = base_config(port, mock.port, rules=RULES)
    for t in (t_healthz, t_openai_plain, t_header_hygiene, t_openai_echo, t_rename, t_openai_stream, t_anthropic_plain,
              t_anthropic_stream, t_cross_format, t_models, t_400, t_401, t_403, t_404, t_413,
              t_upstream_errors, t_midstream, t_slow_but_alive_stream, t_redact, t_redact_everywhere, t_route, t_budget, t_streaming_incremental,
              t_upstream_keepalive, t_client_keepalive, t_pipelining, t_slowloris, t_body_drip, t_silent_client,
              t_half_open,
              t_client_disconnect, t_garbage_requests, t_unknown_path, t_metrics):
        s.run(t, gw, mock)
    heads = "".join(open(os.path.join(rec, f), "rb").read().decode("latin-1")
                    for f in sorted(os.listdir(rec)) if f.endswith(".req"))
    s.check("no client key ever reached the provider (all %d recorded requests)" % len(os.listdir(rec)),
            ALICE not in heads and BOB not in heads and CAROL not in heads)
    s.check("gateway alive after the whole suite", gw.proc.poll() is None, gw.stderr()[-500:])
    rc = gw.stop()
    s.check("SIGTERM: exit 0", rc == 0, (rc, gw.stderr()[-500:]))
    s.run(t_audit_503, mock)
    s.done()


if __name__ == "__main__":
    main()
