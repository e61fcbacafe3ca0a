"""tls_test.py -- TLS on both sides, with a throwaway CA made by openssl: the gateway's TLS
listener, upstream TLS verified against ca_file, and upstreams whose certificate is not
signed by that CA or does not name the host (both must fail with 502, never be trusted)."""
import os
import socket
import ssl
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from itest import (ALICE, OPENAI_REAL, Airlock, Mock, Suite, chat, free_port, gateway_missing,  # noqa: E402
                   make_ca, openai_stream_text, raw_exchange, request)


def config(port, tls, ports, ca):
    return """listen: [{address: "127.0.0.1:%d", tls: {cert: "%s", key: "%s"}}]
keys:
  - {name: alice, team: red, key: "%s"}
providers:
  good: {type: openai, base_url: "https://127.0.0.1:%d/v1", api_key: "%s", ca_file: "%s"}
  wrongca: {type: openai, base_url: "https://127.0.0.1:%d/v1", api_key: "%s", ca_file: "%s"}
  wrongname: {type: openai, base_url: "https://127.0.0.1:%d/v1", api_key: "%s", ca_file: "%s"}
  systemca: {type: openai, base_url: "https://127.0.0.1:%d/v1", api_key: "%s"}
models:
  - {name: m-good, provider: good, price: {input_per_mtok: 1, output_per_mtok: 1}}
  - {name: m-wrongca, provider: wrongca, price: {input_per_mtok: 1, output_per_mtok: 1}}
  - {name: m-wrongname, provider: wrongname, price: {input_per_mtok: 1, output_per_mtok: 1}}
  - {name: m-systemca, provider: systemca, price: {input_per_mtok: 1, output_per_mtok: 1}}
rules:
  - {name: default, then: {action: allow}}
limits: {upstream_timeout_ms: 3000, header_timeout_ms: 1000}
""" % (port, tls[1], tls[2], ALICE, ports[0], OPENAI_REAL, ca, ports[1], OPENAI_REAL, ca,
       ports[2], OPENAI_REAL, ca, ports[0], OPENAI_REAL)


def main():
    s = Suite("tls")
    why = gateway_missing()
    if why:
        s.bail(why)
    d = os.path.join(s.tmp, "pki")
    os.makedirs(d)
    ca1, cert1, key1 = make_ca(d, prefix="one")
    ca2, cert2, key2 = make_ca(d, prefix="two")
    # signed by CA one, but for a name that is not 127.0.0.1
    _, cert3, key3 = make_ca(d, names=("other.example",), prefix="three")
    # re-sign "three" with CA one so only the name is wrong
    import subprocess
    subprocess.run(["openssl", "x509", "-in", cert3, "-out", cert3 + ".pub"], check=True, capture_output=True)
    csr3 = os.path.join(d, "three-server.csr")
    subprocess.run(["openssl", "x509", "-req", "-in", csr3, "-CA", ca1, "-CAkey", os.path.join(d, "one-ca.key"),
                    "-CAcreateserial", "-out", cert3, "-days", "2", "-extfile", os.path.join(d, "three-ext.cnf")],
                   check=True, capture_output=True)

    good = Mock(s, tls=(cert1, key1))
    wrongca = Mock(s, tls=(cert2, key2))
    wrongname = Mock(s, tls=(cert3, key3))
    port = free_port()
    gw = Airlock(s, config(port, (ca1, cert1, key1), (good.port, wrongca.port, wrongname.port), ca1), port,
                 name="tls")
    ctx = ssl.create_default_context(cafile=ca1)

    r = request(port, "GET", "/healthz", key=None, tls_ctx=ctx, host="127.0.0.1")
    s.check("TLS listener: healthz over https, cert verified by the test CA (IP SAN)", r.status == 200, r)
    r = request(port, "GET", "/healthz", key=None, tls_ctx=ctx, host="localhost")
    s.check("TLS listener: cert verified for localhost", r.status == 200, r)

    r = request(port, "POST", "/v1/chat/completions", chat("hi over tls", model="m-good"), tls_ctx=ctx)
    s.check("upstream TLS with ca_file: 200", r.status == 200 and (r.json() or {}).get("object") == "chat.completion", r)
    r = request(port, "POST", "/v1/chat/completions", chat("MOCK:words=6", model="m-good", stream=True), tls_ctx=ctx)
    text, _, _, _ = openai_stream_text(r.body)
    s.check("upstream TLS streaming relayed", r.status == 200 and text == "word1 word2 word3 word4 word5 word6", r)

    before = wrongca.stats()["requests"]
    r = request(port, "POST", "/v1/chat/completions", chat("hi", model="m-wrongca"), tls_ctx=ctx)
    s.check("upstream cert not signed by ca_file: 502", r.status == 502, r)
    s.check("upstream with wrong CA never received the request", wrongca.stats()["requests"] == before)
    before = wrongname.stats()["requests"]
    r = request(port, "POST", "/v1/chat/completions", chat("hi", model="m-wrongname"), tls_ctx=ctx)
    s.check("upstream cert for another host name: 502", r.status == 502, r)
    s.check("upstream with wrong name never received the request", wrongname.stats()["requests"] == before)
    r = request(port, "POST", "/v1/chat/completions", chat("hi", model="m-systemca"), tls_ctx=ctx)
    s.check("upstream test cert not trusted by the system store: 502", r.status == 502, r)

    got, _ = raw_exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", timeout=3)
    s.check("plain HTTP to the TLS listener gets no HTTP answer", not got.startswith(b"HTTP/1.1 200"), got[:80])
    bad = ssl.create_default_context(cafile=ca2)
    try:
        request(port, "GET", "/healthz", key=None, tls_ctx=bad)
        trusted = True
    except ssl.SSLError:
        trusted = False
    s.check("client with another CA rejects the listener's cert", not trusted)
    r = request(port, "GET", "/healthz", key=None, tls_ctx=ctx)
    s.check("TLS listener still serving after bad handshakes", r.status == 200, r)
    alpn = ssl.create_default_context(cafile=ca1)
    alpn.set_alpn_protocols(["h2", "http/1.1"])
    sock = alpn.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5), server_hostname="localhost")
    chosen = sock.selected_alpn_protocol()
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    got = b""
    try:
        while True:
            d = sock.recv(4096)
            if not d:
                break
            got += d
    except (ssl.SSLError, OSError):
        pass
    sock.close()
    s.check("ALPN: a client offering h2 is not told h2 (the gateway speaks HTTP/1.1)",
            chosen in (None, "http/1.1") and got.startswith(b"HTTP/1.1 200"), (chosen, got[:60]))
    # a client that connects and never starts the TLS handshake is let go
    silent = socket.create_connection(("127.0.0.1", port), timeout=4)  # header timeout 1 s
    t0 = time.time()
    try:
        closed = silent.recv(1) == b""
    except (socket.timeout, TimeoutError):
        closed = False
    except OSError:
        closed = True
    silent.close()
    s.check("TLS: a connection that never sends a ClientHello is closed by the header timeout", closed,
            time.time() - t0)
    half = socket.create_connection(("127.0.0.1", port), timeout=4)
    half.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # the start of a ClientHello
    try:
        closed = half.recv(1) == b""
    except (socket.timeout, TimeoutError):
        closed = False
    except OSError:
        closed = True
    half.close()
    s.check("TLS: a half-sent ClientHello is closed by the header timeout", closed)
    r = request(port, "GET", "/healthz", key=None, tls_ctx=ctx)
    s.check("TLS listener serving after slow handshakes", r.status == 200, r)
    rc = gw.stop()
    s.check("SIGTERM: exit 0", rc == 0, (rc, gw.stderr()[-400:]))
    s.done()


if __name__ == "__main__":
    main()
