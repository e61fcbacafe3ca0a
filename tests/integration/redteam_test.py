"""redteam_test.py -- attacks on what landed with issues 13-15, each a check that failed
before its fix or that pins a refusal the red team found holding (docs/security.md has the
findings table).

Gateway listener: forwarded provider headers (openai-beta, anthropic-beta) carrying a
secret are refused and never reach the provider; a `data:` URL that is not base64 image
data is text and is scanned wherever it sits (metadata, an input_image, an Anthropic
base64 source that is not an image), while real image data still passes as an unscanned
image; query strings never reach the provider; request-smuggling shapes (two
Content-Lengths, Content-Length with Transfer-Encoding, a TE list, obs-fold, bare LF) are
400 with nothing upstream. Forward listener: every path an intercepted host serves that
airlock cannot read is 403 for every method, with nothing upstream; absolute-form plain
HTTP sends the URL's host, never the client's Host header; CONNECT targets in alternative
spellings of loopback (decimal, hex, octal, short forms, v4-mapped and NAT64 IPv6,
trailing dot) are refused and connect nowhere."""
import gzip
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from itest import (AIRLOCK, ALICE, BOB, OPENAI_REAL, Airlock, Mock, Suite, base_config,  # noqa: E402
                   chat, free_port, gateway_missing, make_ca, messages, request, wait_port)
from egress_test import (Listener, basic, config, connect_raw, org_ca, read_all,  # noqa: E402
                         via_proxy)

SECRET = "AKIAIOSFODNN7EXAMPLQ"
# a 1x1 PNG: real image data, which the detectors cannot read (an unscanned image)
PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")


def sent(mock, before):
    """whether a request reached the mock since `before` and the secret was in it"""
    return mock.stats()["requests"] > before and (SECRET.encode() in mock.last_body()
                                                  or SECRET in mock.last_head())


def test_headers(s, gw, mock):
    """issue 13: the values of every forwarded header are scanned (finding F1)"""
    cases = [
        ("anthropic-beta", "/v1/messages", messages("hi"), {"anthropic-beta": "tools-2024-04-04," + SECRET}),
        ("anthropic-beta on count_tokens", "/v1/messages/count_tokens", messages("hi"),
         {"anthropic-beta": SECRET}),
        ("openai-beta name=value", "/v1/chat/completions", chat("hi"), {"openai-beta": "x=" + SECRET}),
        ("openai-beta on /v1/responses", "/v1/responses", {"model": "gpt-4o-mini", "input": "hi"},
         {"openai-beta": "responses=experimental, " + SECRET}),
        ("openai-beta on /v1/responses/compact", "/v1/responses/compact",
         {"model": "gpt-4o-mini", "input": "hi"}, {"openai-beta": SECRET}),
        ("openai-beta on /v1/embeddings", "/v1/embeddings", {"model": "gpt-4o-mini", "input": "hi"},
         {"openai-beta": SECRET}),
    ]
    for name, path, body, hd in cases:
        before = mock.stats()["requests"]
        key = {"x-api-key": ALICE} if path.startswith("/v1/messages") else {}
        hd = dict(hd, **key)
        r = request(gw, "POST", path, body, headers=hd, key=None if key else ALICE)
        s.check("%s holding a secret: 403 naming the detector, nothing leaves" % name,
                r.status == 403 and b"aws_access_key" in r.body and SECRET.encode() not in r.body
                and not sent(mock, before), (r, sent(mock, before)))
    # clean values still go, unchanged
    r = request(gw, "POST", "/v1/messages", messages("hi"), key=None,
                headers={"x-api-key": ALICE, "anthropic-beta": "prompt-caching-2024-07-31,context-1m-2025-08-07"})
    s.check("a clean anthropic-beta is forwarded unchanged",
            r.status == 200 and "anthropic-beta: prompt-caching-2024-07-31,context-1m-2025-08-07" in mock.last_head(),
            (r, mock.last_head()[:400]))
    r = request(gw, "POST", "/v1/responses", {"model": "gpt-4o-mini", "input": "hi"},
                headers={"openai-beta": "responses=experimental"})
    s.check("a clean openai-beta is forwarded unchanged",
            r.status == 200 and "openai-beta: responses=experimental" in mock.last_head(), (r, mock.last_head()[:400]))


def test_data_urls(s, gw, mock):
    """a data: URL is image data only when it is base64 image data (finding F2)"""
    cases = [
        ("/v1/responses metadata.url data:,SECRET", "/v1/responses",
         {"model": "gpt-4o-mini", "input": "hi", "metadata": {"url": "data:," + SECRET}}),
        ("/v1/responses input_image data:text/plain", "/v1/responses",
         {"model": "gpt-4o-mini", "input": [{"role": "user", "content": [
             {"type": "input_image", "image_url": "data:text/plain," + SECRET}]}]}),
        ("/v1/chat/completions metadata.image_url data:x", "/v1/chat/completions",
         dict(chat("hi"), metadata={"image_url": "data:x," + SECRET})),
        ("chat image_url part with a non-base64 image payload", "/v1/chat/completions",
         {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": [
             {"type": "image_url", "image_url": {"url": "data:image/png;base64,#" + SECRET}}]}]}),
        ("chat image_url part without ;base64", "/v1/chat/completions",
         {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": [
             {"type": "image_url", "image_url": {"url": "data:image/svg+xml," + SECRET}}]}]}),
        ("a base64 'source' in metadata that is no image", "/v1/responses",
         {"model": "gpt-4o-mini", "input": "hi", "metadata": {"type": "base64", "data": SECRET}}),
    ]
    for name, path, body in cases:
        before = mock.stats()["requests"]
        r = request(gw, "POST", path, body)
        s.check("%s: scanned as text (403), nothing leaves" % name,
                r.status == 403 and not sent(mock, before), (r, sent(mock, before)))
    before = mock.stats()["requests"]
    r = request(gw, "POST", "/v1/messages", {"model": "claude-3-5-haiku", "max_tokens": 16, "messages": [
        {"role": "user", "content": [{"type": "image", "source": {"type": "base64", "media_type": "text/x-secret",
                                                                   "data": SECRET}}, {"type": "text", "text": "hi"}]}]},
                key=None, headers={"x-api-key": ALICE})
    s.check("Anthropic base64 source whose media_type is not image/*: scanned (403), nothing leaves",
            r.status == 403 and not sent(mock, before), (r, sent(mock, before)))
    # real image data is still an (unscanned) image, in every place an image goes
    for name, path, body, hd in [
        ("chat image_url", "/v1/chat/completions", {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "what is this"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64," + PNG}}]}]}, None),
        ("Responses input_image", "/v1/responses", {"model": "gpt-4o-mini", "input": [{"role": "user", "content": [
            {"type": "input_text", "text": "what is this"},
            {"type": "input_image", "image_url": "data:image/png;base64," + PNG}]}]}, None),
        ("Anthropic image block", "/v1/messages", {"model": "claude-3-5-haiku", "max_tokens": 16, "messages": [
            {"role": "user", "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                                      "data": PNG}},
                                         {"type": "text", "text": "what is this"}]}]}, {"x-api-key": ALICE}),
    ]:
        r = request(gw, "POST", path, body, headers=hd, key=None if hd else ALICE)
        s.check("real base64 image data in a %s still passes (200)" % name, r.status == 200, r)
    # PHP's json_encode writes "\/": still image data
    raw = ('{"model":"gpt-4o-mini","messages":[{"role":"user","content":[{"type":"image_url","image_url":'
           '{"url":"data:image/png;base64,%s"}}]}]}' % PNG.replace("/", "\\/"))
    r = request(gw, "POST", "/v1/chat/completions", raw)
    s.check("image data with JSON-escaped slashes still passes (200)", r.status == 200, r)


def parts(api, texts):
    if api == "chat":
        return "/v1/chat/completions", {"model": "gpt-4o-mini", "messages": [
            {"role": "user", "content": [{"type": "text", "text": t} for t in texts]}]}, None
    if api == "responses":
        return "/v1/responses", {"model": "gpt-4o-mini", "input": [
            {"role": "user", "content": [{"type": "input_text", "text": t} for t in texts]}]}, None
    return "/v1/messages", {"model": "claude-3-5-haiku", "max_tokens": 16, "messages": [
        {"role": "user", "content": [{"type": "text", "text": t} for t in texts]}]}, {"x-api-key": ALICE}


def test_split_parts(s, mock):
    """a value split between two text parts of one message, which the model reads as one
    text (finding F9): blocked when its rule blocks, refused when its rule would redact
    (it has no one span to replace), and parts that only meet harmlessly still pass"""
    gw = free_port()
    rules = """
  - {name: no-secrets, if: {detected: [secrets]}, then: {action: block}}
  - {name: mask-emails, if: {detected: [email]}, then: {action: redact, detectors: [email]}}
  - {name: default, then: {action: allow}}"""
    Airlock(s, base_config(gw, mock.port, rules=rules), gw, name="redteam-split")
    for api in ("chat", "responses", "anthropic"):
        before = mock.stats()["requests"]
        path, body, hd = parts(api, ["deploy with AKIAIOSF", "ODNN7EXAMPLQ today"])
        r = request(gw, "POST", path, body, headers=hd, key=None if hd else ALICE)
        s.check("%s: an access key split across two text parts is blocked (403 naming it), nothing leaves" % api,
                r.status == 403 and b"aws_access_key" in r.body and mock.stats()["requests"] == before, r)
        path, body, hd = parts(api, ["write to jane.doe@corp-mail", ".example.com please"])
        r = request(gw, "POST", path, body, headers=hd, key=None if hd else ALICE)
        s.check("%s: an e-mail split across two text parts cannot be redacted in place: 400, nothing leaves" % api,
                r.status == 400 and b"split" in r.body and mock.stats()["requests"] == before, r)
        path, body, hd = parts(api, ["write to jane.doe@corp-mail.example.com", "then AKIA is a word", "ok"])
        r = request(gw, "POST", path, body, headers=hd, key=None if hd else ALICE)
        up = mock.last_body()
        s.check("%s: a whole e-mail in one part is still redacted; harmless junctions pass" % api,
                r.status == 200 and b"jane.doe" not in up and b"[EMAIL_1" in up, (r, up[:300]))
    # the model does not read a message's parts and the next message as one text
    before = mock.stats()["requests"]
    r = request(gw, "POST", "/v1/chat/completions", {"model": "gpt-4o-mini", "messages": [
        {"role": "user", "content": [{"type": "text", "text": "AKIAIOSF"}]},
        {"role": "assistant", "content": "ODNN7EXAMPLQ"}]})
    s.check("two messages are not joined: 200", r.status == 200 and mock.stats()["requests"] == before + 1, r)


def test_query_and_smuggling(s, gw, mock):
    before = mock.stats()["requests"]
    r = request(gw, "POST", "/v1/chat/completions?leak=" + SECRET, chat("hi"))
    s.check("a query string never reaches the provider", r.status == 200 and SECRET not in mock.last_head()
            and mock.stats()["requests"] == before + 1, (r, mock.last_head()[:200]))
    auth = b"Authorization: Bearer " + ALICE.encode() + b"\r\n"
    body = json.dumps(chat("hi")).encode()
    shapes = [
        ("two Content-Lengths", b"Content-Length: %d\r\nContent-Length: %d\r\n\r\n" % (len(body), len(body) + 1)
         + body),
        ("Content-Length and Transfer-Encoding", b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n"
         % len(body) + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n"),
        ("Transfer-Encoding: chunked, identity", b"Transfer-Encoding: chunked, identity\r\n\r\n" +
         b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n"),
    ]
    for name, tail in shapes:
        before = mock.stats()["requests"]
        c = socket.create_connection(("127.0.0.1", gw), timeout=5)
        c.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n" + auth + tail)
        got = read_all(c, 3)
        c.close()
        s.check("smuggling shape (%s): 400, nothing upstream" % name,
                got.startswith(b"HTTP/1.1 400") and mock.stats()["requests"] == before, got[:120])
    # obs-fold and bare LF are read as RFC 9112 allows (a fold is one space, LF ends a
    # line); the gateway is the only parser of the client's bytes (it frames what it sends
    # itself), so a trailing request hidden behind them is answered as a second request of
    # its own, never smuggled into the first
    for name, head in [("obs-fold", b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n" + auth +
                        b"Content-Length: %d\r\n\r\n" % len(body)),
                       ("bare LF", b"POST /v1/chat/completions HTTP/1.1\nHost: x\n" + auth.replace(b"\r\n", b"\n") +
                        b"Content-Length: %d\n\n" % len(body))]:
        before = mock.stats()["requests"]
        c = socket.create_connection(("127.0.0.1", gw), timeout=5)
        c.sendall(head + body + b"GET /v1/files HTTP/1.1\r\nHost: x\r\n\r\n")
        got = read_all(c, 3)
        c.close()
        s.check("%s request head: the request is answered, exactly one request upstream, the trailing "
                "GET /v1/files answered by the gateway (404), not forwarded" % name,
                got.startswith(b"HTTP/1.1 200") and b"HTTP/1.1 404" in got and
                mock.stats()["requests"] == before + 1, got[:120])

UNREAD = ["/v1/files", "/v1/files/file-1/content", "/v1/uploads", "/v1/batches", "/v1/audio/speech",
          "/v1/audio/transcriptions", "/v1/audio/translations", "/v1/images/generations", "/v1/images/edits",
          "/v1/realtime", "/v1/realtime/sessions", "/v1/assistants", "/v1/threads", "/v1/threads/runs",
          "/v1/vector_stores", "/v1/fine_tuning/jobs", "/v1/moderations", "/v1/messages/batches",
          "/v1/conversations", "/v1/containers", "/v1/evals", "/v1/responses/resp_1",
          "/v1/responses/resp_1/input_items", "/v1/responses/resp_1/cancel", "/v1/responses/input_tokens",
          "/v1/chat/completions/chatcmpl-1", "/v1/models/gpt-4o-mini", "/v1//responses",
          "/v1/responses/../files", "/v1%2Fresponses", "/v1/responses/", "/v1/chat/completions;x",
          "/V1/RESPONSES", "/v1/responses/compact/", "/./v1/responses", "/v1/messages/count_tokens/",
          "/organization/usage", "/v1/organization/admin_api_keys"]


def test_intercept_paths(s, fw, mock, org_crt):
    """issue 15: a path airlock cannot read on an intercepted host is refused (403) for
    every method, never tunnelled, never forwarded"""
    a = {"Authorization": "Bearer " + ALICE}
    bad = []
    for host in ("api.openai.com", "api.anthropic.com"):
        for p in UNREAD:
            for m in ("GET", "POST", "DELETE"):
                before = mock.stats()["requests"]
                try:
                    st, _, b = via_proxy(fw, org_crt, host, m, p,
                                         body=b'{"model":"gpt-4o-mini","input":"x"}' if m == "POST" else None,
                                         headers=dict(a, **{"x-api-key": ALICE}))
                except OSError as e:
                    st, b = repr(e), b""
                if st != 403 or mock.stats()["requests"] != before:
                    bad.append((host, m, p, st, b[:80]))
    s.check("intercepted: %d unreadable paths x 3 methods x 2 hosts are all 403, none forwarded" % len(UNREAD),
            not bad, bad[:6])
    bad = []
    for p in ("/v1/chat/completions", "/v1/responses", "/v1/responses/compact", "/v1/messages",
              "/v1/embeddings", "/v1/completions", "/v1/messages/count_tokens"):
        for m in ("GET", "PUT", "DELETE", "PATCH", "OPTIONS"):
            before = mock.stats()["requests"]
            st, _, b = via_proxy(fw, org_crt, "api.openai.com", m, p, headers=a)
            if st != 405 or mock.stats()["requests"] != before:
                bad.append((m, p, st, b[:80]))
    s.check("intercepted: API paths with a method other than POST are 405, none forwarded", not bad, bad[:6])


def inside(fw, org_crt, payload, wait=4):
    """raw bytes inside an intercepted TLS connection to api.openai.com; what comes back"""
    sock, st, _, _ = connect_raw(fw, b"api.openai.com:443", proxy_auth=basic(ALICE))
    t = ssl.create_default_context(cafile=org_crt).wrap_socket(sock, server_hostname="api.openai.com")
    t.sendall(payload)
    t.settimeout(wait)
    out = b""
    try:
        while True:
            d = t.recv(65536)
            if not d:
                break
            out += d
    except (OSError, ssl.SSLError):
        pass
    t.close()
    return out


def test_inside_intercept(s, fw, mock, org_crt, ports):
    """what a client sends inside an intercepted connection is a gateway request, never a
    proxy request: no CONNECT, no absolute-form, each pipelined request decided alone"""
    far = Listener(ports["far"])
    a = b"Authorization: Bearer " + ALICE.encode() + b"\r\n"
    before = mock.stats()["requests"]
    out = inside(fw, org_crt, b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: x\r\n%s\r\n" % (ports["far"], a))
    s.check("CONNECT inside an intercepted connection: 403, nothing connected",
            out.startswith(b"HTTP/1.1 403") and far.accepted() == 0, out[:120])
    out = inside(fw, org_crt, b"GET http://127.0.0.1:%d/ HTTP/1.1\r\nHost: x\r\n%s\r\n" % (ports["far"], a))
    s.check("absolute-form inside an intercepted connection: 403, nothing connected",
            out.startswith(b"HTTP/1.1 403") and far.accepted() == 0, out[:120])
    b1, b2 = json.dumps(chat("hello")).encode(), json.dumps(chat("deploy with %s now" % SECRET)).encode()
    out = inside(fw, org_crt, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n%sContent-Length: %d\r\n\r\n%s"
                 b"POST /v1/chat/completions HTTP/1.1\r\nHost: evil.example\r\n%sContent-Length: %d\r\n"
                 b"Connection: close\r\n\r\n%s" % (a, len(b1), b1, a, len(b2), b2))
    s.check("two pipelined requests inside TLS: the clean one 200, the one with a secret 403; one upstream",
            out.startswith(b"HTTP/1.1 200") and b"HTTP/1.1 403" in out and mock.stats()["requests"] == before + 1
            and SECRET.encode() not in mock.last_body(), out[:80])
    st, h, b = via_proxy(fw, org_crt, "api.openai.com", "POST", "/v1/chat/completions", chat("hi"),
                         headers={"Authorization": "Bearer " + ALICE, "Host": "evil.example"})
    s.check("a Host header naming another host inside the TLS: the request still goes to the provider's base_url",
            st == 200 and "evil.example" not in mock.last_head(), (st, mock.last_head()[:200]))


def test_header_route(s, fw, mock, org_crt):
    """a card number in anthropic-beta, where the rule for cards routes to the built-in
    engine: with a clean body the request goes to the provider, so the header cannot go
    (400, nothing upstream); with the card in the body too, the request stays local and
    no header leaves (200)"""
    from egress_test import MODEL
    if not os.path.exists(MODEL):
        s.skip("a header finding on a local route", "test model %s missing" % MODEL)
        return
    hd = {"x-api-key": ALICE, "anthropic-version": "2023-06-01", "anthropic-beta": "x-4111111111111111"}
    before = mock.stats()["requests"]
    st, h, b = via_proxy(fw, org_crt, "api.anthropic.com", "POST", "/v1/messages", messages("hi"), headers=hd)
    s.check("a card in anthropic-beta with a clean body (the rule routes cards local): 400, nothing upstream",
            st == 400 and b"credit_card" in b and mock.stats()["requests"] == before, (st, b[:200]))
    st, h, b = via_proxy(fw, org_crt, "api.anthropic.com", "POST", "/v1/messages",
                         messages("my card is 4111 1111 1111 1111", max_tokens=4), headers=hd)
    s.check("the same header with the card in the body: kept local (200), nothing upstream",
            st == 200 and h.get("x-airlock-route", "").startswith("local/") and mock.stats()["requests"] == before,
            (st, h, b[:200]))


def test_slow_inside(s, fw, org_crt):
    """a request head dripped a byte at a time inside an intercepted connection is cut by
    header_timeout_ms (2 s in this config), whatever the drip rate"""
    sock, st, _, _ = connect_raw(fw, b"api.openai.com:443", proxy_auth=basic(ALICE))
    t = ssl.create_default_context(cafile=org_crt).wrap_socket(sock, server_hostname="api.openai.com")
    t.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    t0 = time.time()
    cut = None
    t.settimeout(0.25)
    for _ in range(40):  # up to 10 s
        try:
            t.sendall(b"a")
            d = t.recv(4096)
            if not d or d.startswith(b"HTTP/1.1 408") or d.startswith(b"HTTP/1.1 4"):
                cut = time.time() - t0
                break
        except socket.timeout:
            continue
        except (OSError, ssl.SSLError):
            cut = time.time() - t0
            break
    t.close()
    s.check("slowloris head inside an intercepted connection: cut by header_timeout_ms",
            cut is not None and cut < 4.5, cut)


def test_budget(s, mock):
    """costs cannot be talked down: negative usage is no credit, and a stream the client
    drops before its usage event is charged an estimate (finding F10)"""
    gw = free_port()
    cfg = base_config(gw, mock.port).replace('{name: bob, team: blue, key: "%s"}' % BOB,
                                             '{name: bob, team: blue, key: "%s", budget_usd_per_day: 0.5}' % BOB)
    a = Airlock(s, cfg, gw, name="redteam-budget")
    for path, body in [("/v1/responses", {"model": "gpt-4o-mini", "input": "MOCK:usage=-100000000,-5 hi"}),
                       ("/v1/chat/completions", chat("MOCK:usage=-100000000,-5 hi", stream=True))]:
        request(gw, "POST", path, body, key=BOB)
    # 4M input tokens at $0.15/Mtok = $0.60 > $0.50
    r = request(gw, "POST", "/v1/chat/completions", chat("MOCK:usage=4000000,1 hi"), key=BOB)
    r = request(gw, "POST", "/v1/chat/completions", chat("hi"), key=BOB)
    s.check("negative usage is no credit: after $0.60 of a $0.50 budget the next request is 429",
            r.status == 429, r)
    # streams that end without their usage event: broken by the provider on each streaming
    # API, and one the client leaves while the provider stalls
    pad = " ".join(["word"] * 200)
    for path, body in [("/v1/responses", {"model": "gpt-4o-mini", "input": "MOCK:reset_mid " + pad, "stream": True}),
                       ("/v1/chat/completions", chat("MOCK:reset_mid " + pad, stream=True)),
                       ("/v1/completions", {"model": "gpt-4o-mini", "prompt": "MOCK:reset_mid " + pad,
                                            "stream": True})]:
        request(gw, "POST", path, body)
    c = socket.create_connection(("127.0.0.1", gw), timeout=10)
    b = json.dumps(chat("MOCK:stall_mid " + pad, stream=True)).encode()
    c.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
              b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (ALICE.encode(), len(b)) + b)
    got = b""
    while b"delta" not in got:
        d = c.recv(4096)
        if not d:
            break
        got += d
    c.close()
    # a whole request the provider got and has not answered: the client leaves; it times out
    c = socket.create_connection(("127.0.0.1", gw), timeout=10)
    b = json.dumps(chat("MOCK:stall_before " + pad)).encode()
    c.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
              b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (ALICE.encode(), len(b)) + b)
    time.sleep(0.5)
    c.close()
    r = request(gw, "POST", "/v1/chat/completions", chat("MOCK:stall_before " + pad))
    s.check("a provider that never answers: 504", r.status == 504, r)
    time.sleep(0.5)
    a.stop()
    out = subprocess.run([AIRLOCK, "audit", "show", os.path.join(a.dir, "audit")], capture_output=True, text=True)
    ends, reqs = [], {}
    for line in out.stdout.splitlines():
        try:
            j = json.loads(line)
        except ValueError:
            continue
        m = j.get("meta") or {}
        if j.get("type") == "request":
            reqs[m.get("id")] = m.get("endpoint")
        elif j.get("type") == "response" and m.get("key") == "alice":
            ends.append((reqs.get(m.get("id")), m))
    s.check("6 answers without usage (3 streams broken mid-way on responses, chat, completions; a stream "
            "and a whole request left by the client; a 504): each charged an estimate (usage marked "
            "estimated, input > 200 tokens, cost > 0)",
            len(ends) == 6 and {e for e, _ in ends} == {"/v1/responses", "/v1/chat/completions", "/v1/completions"}
            and all(m["usage"].get("estimated") is True and m["usage"]["input_tokens"] > 200 and m["cost_usd"] > 0
                    for _, m in ends), [(e, m.get("usage"), m.get("cost_usd"), m.get("error")) for e, m in ends])


def test_absolute_host(s, fw, ports):
    """absolute-form: the server gets the URL's host, not the client's Host (finding F3)"""
    seen = {}
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", ports["web"]))
    srv.listen(4)

    def web():
        c, _ = srv.accept()
        c.settimeout(5)
        data = b""
        while b"\r\n\r\n" not in data:
            d = c.recv(4096)
            if not d:
                break
            data += d
        seen["head"] = data
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        c.close()
    t = threading.Thread(target=web, daemon=True)
    t.start()
    c = socket.create_connection(("127.0.0.1", fw), timeout=5)
    c.sendall(b"GET http://127.0.0.1:%d/x HTTP/1.1\r\nHost: internal.corp.example\r\nX-A: a\r\n Injected: yes\r\n"
              b"X-B: b\nX-C: c\r\nProxy-Authorization: %s\r\n\r\n" % (ports["web"], basic(ALICE).encode()))
    got = read_all(c, 5)
    c.close()
    t.join(5)
    srv.close()
    head = seen.get("head", b"").lower()
    s.check("absolute-form: the answer is relayed", got.startswith(b"HTTP/1.1 200"), got[:100])
    s.check("absolute-form: an obs-fold reaches the server as one line, a bare LF as CRLF (no header injected)",
            b"\r\nx-a: a injected: yes\r\n" in head and b"\r\ninjected:" not in head
            and b"\r\nx-b: b\r\nx-c: c\r\n" in head, head)
    s.check("absolute-form: the server's Host is the URL's authority, not the client's Host header",
            b"host: 127.0.0.1:%d\r\n" % ports["web"] in head and b"internal.corp" not in head
            and head.count(b"\r\nhost:") == 1, head)


def test_connect_spellings(s, fw, ports):
    """loopback in every spelling a resolver or a kernel accepts is refused, and nothing
    connects (the policy reads one canonical form)"""
    lst = Listener(ports["deny"])
    p = ports["deny"]
    targets = [b"2130706433", b"0x7f000001", b"0x7f.1", b"0177.0.0.1", b"127.1", b"127.0.1", b"127.000.000.001",
               b"localhost", b"LOCALHOST", b"localhost.", b"[::1]", b"[::ffff:127.0.0.1]", b"[::ffff:7f00:1]",
               b"[64:ff9b::7f00:1]", b"[::127.0.0.1]", b"[0:0:0:0:0:0:0:1]", b"[::1%25lo]", b"[fe80::1%lo]",
               b"0", b"0.0.0.0", b"[::]", b"127.0.0.1.", b"%31%32%37.0.0.1", b"xn--localhost",
               b"api.openai.com.", b"API.OPENAI.COM:443@127.0.0.1"]
    bad = []
    for t in targets:
        target = t if b":" in t.split(b"]")[-1] else t + b":%d" % p
        sock, st, h, _ = connect_raw(fw, target, proxy_auth=basic(ALICE), timeout=8)
        sock.close()
        if st not in (400, 403):
            bad.append((target, st, h[:80]))
    s.check("CONNECT to loopback in %d spellings: all 400/403" % len(targets), not bad, bad)
    time.sleep(0.2)
    s.check("... and none of them connected anywhere", lst.accepted() == 0)
    # an absolute-form URL with the same spellings
    bad = []
    for t in (b"2130706433", b"0x7f000001", b"127.1", b"[::ffff:127.0.0.1]", b"localhost"):
        c = socket.create_connection(("127.0.0.1", fw), timeout=5)
        c.sendall(b"GET http://%s:%d/ HTTP/1.1\r\nHost: x\r\nProxy-Authorization: %s\r\n\r\n"
                  % (t, p, basic(ALICE).encode()))
        got = read_all(c, 3)
        c.close()
        if not (got.startswith(b"HTTP/1.1 400") or got.startswith(b"HTTP/1.1 403")):
            bad.append((t, got[:80]))
    s.check("absolute-form to loopback spellings: all 400/403, nothing connected",
            not bad and lst.accepted() == 0, bad)


class GzipProvider:
    """An OpenAI-shaped provider that compresses its answers whatever it was asked (and
    echoes its key in them, and bills a million tokens): what the gateway cannot read it
    must not relay (finding F5)"""

    def __init__(self):
        self.heads = []
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.loop, daemon=True).start()

    def loop(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.one, args=(c,), daemon=True).start()

    def one(self, c):
        c.settimeout(5)
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                d = c.recv(65536)
                if not d:
                    return
                data += d
            head, _, body = data.partition(b"\r\n\r\n")
            n = int([x.split(b":")[1] for x in head.lower().split(b"\r\n") if x.startswith(b"content-length:")][0])
            while len(body) < n:
                body += c.recv(65536)
            self.heads.append(head.decode("latin-1"))
            text = "key %s" % OPENAI_REAL
            usage = {"prompt_tokens": 1000000, "completion_tokens": 1000000, "total_tokens": 2000000}
            if b'"stream": true' in body:
                ctype = b"text/event-stream"
                raw = ("data: %s\n\ndata: %s\n\ndata: [DONE]\n\n" % (
                    json.dumps({"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
                                "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}),
                    json.dumps({"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
                                "choices": [], "usage": usage}))).encode()
            else:
                ctype = b"application/json"
                raw = json.dumps({"id": "x", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
                                  "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                               "finish_reason": "stop"}], "usage": usage}).encode()
            z = gzip.compress(raw)
            c.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: %s\r\nContent-Encoding:  GZIP \r\ncontent-length: %d\r\n\r\n"
                      % (ctype, len(z)) + z)
        except (OSError, IndexError, ValueError):
            pass
        finally:
            c.close()


def test_compressed(s):
    up = GzipProvider()
    gw = free_port()
    Airlock(s, base_config(gw, up.port), gw, name="redteam-gzip")
    for stream in (False, True):
        r = request(gw, "POST", "/v1/chat/completions", chat("hi", stream=stream))
        s.check("a compressed answer (Content-Encoding: gzip, stream=%s) is refused 502, never relayed" % stream,
                r.status == 502 and b"compressed" in r.body and OPENAI_REAL.encode() not in r.body, r)
    s.check("the gateway asks providers for accept-encoding: identity",
            up.heads and all("\r\naccept-encoding: identity\r\n" in h.lower() + "\r\n" for h in up.heads),
            up.heads[:1])


def main():
    s = Suite("redteam")
    why = gateway_missing()
    if why:
        s.bail(why)
    mock = Mock(s)
    gw = free_port()
    Airlock(s, base_config(gw, mock.port), gw, name="redteam")
    s.run(test_headers, gw, mock)
    s.run(test_data_urls, gw, mock)
    s.run(test_query_and_smuggling, gw, mock)
    s.run(test_compressed)
    s.run(test_split_parts, mock)
    s.run(test_budget, mock)

    d = os.path.join(s.tmp, "pki")
    os.makedirs(d)
    test_ca, cert, key = make_ca(d)
    org = org_ca(d)
    tmock = Mock(s, tls=(cert, key))
    egw, fw = free_port(), free_port()
    ports = {k: free_port() for k in ("tls", "far", "web", "lh", "deny")}
    Airlock(s, config(egw, fw, tmock.port, test_ca, org, ports), egw, name="redteam-egress")
    if not wait_port(fw, 5):
        s.bail("the forward listener did not open")
    s.run(test_intercept_paths, fw, tmock, org[0])
    s.run(test_inside_intercept, fw, tmock, org[0], ports)
    s.run(test_slow_inside, fw, org[0])
    s.run(test_header_route, fw, tmock, org[0])
    s.run(test_absolute_host, fw, ports)
    s.run(test_connect_spellings, fw, ports)
    s.done()


if __name__ == "__main__":
    main()
