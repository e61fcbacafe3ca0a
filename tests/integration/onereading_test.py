"""onereading_test.py -- one strict reading of every body, end to end (issue "One request
model"): repeated member names at any depth, NUL-suffixed names and lone surrogates are
refused with 400 and never reach the provider; an escaped member name is the same name for
routing, policy and the rewrite; and `airlock policy test` prints byte for byte the body
the gateway sends, on the policy corpus sent both ways (each API, same-format and
translated, streamed and not) through the mock."""
import json
import re
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from itest import (AIRLOCK, ANTHROPIC_HEADERS, OPENAI_REAL, Airlock, Mock, Suite,  # noqa: E402
                   base_config, free_port, gateway_missing, request)

RULES = """
  - {name: no-secrets, if: {detected: [secrets]}, then: {action: block}}
  - {name: no-preview, if: {model: ["gpt-4.5*"]}, then: {action: block}}
  - {name: iban-to-claude, if: {detected: [iban]}, then: {action: route, provider: ant, model: claude-3-5-haiku}}
  - {name: mask-emails, if: {detected: [email, phone]}, then: {action: redact, detectors: [email, phone]}}
  - {name: default, then: {action: allow}}"""

EXTRA_MODELS = "  - {name: gpt-4.5-preview, provider: oai, price: {input_per_mtok: 75, output_per_mtok: 150}}\n"


def post(gw, path, raw, anthropic=False):
    return request(gw.port, "POST", path, raw.encode() if isinstance(raw, str) else raw,
                   headers=ANTHROPIC_HEADERS if anthropic else None)


def t_repeats_refused(s, gw, mock):
    before = mock.stats()["requests"]
    cases = [
        ("top-level model", '{"model":"gpt-4o-mini","model":"gpt-4.5-preview","messages":[{"role":"user","content":"hi"}]}',
         '"model" twice', "at the top level"),
        ("escaped repeat", '{"model":"gpt-4o-mini","\\u006dodel":"gpt-4.5-preview","messages":[]}',
         '"model" twice', "top level"),
        ("content repeated in a message", '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi",'
         '"content":{"text":"AKIAQFAKE7EXAMPLE2XY"}}]}', '"content" twice', "messages[0]"),
        ("deep in a tool schema", '{"model":"gpt-4o-mini","messages":[],"tools":[{"type":"function","function":'
         '{"name":"f","parameters":{"type":"object","properties":{"a":{},"a":{}}}}}]}', '"a" twice',
         "tools[0].function.parameters.properties"),
        ("stream options", '{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":false,'
         '"include_usage":true},"messages":[]}', '"include_usage" twice', "stream_options"),
    ]
    for name, body, what, where in cases:
        r = post(gw, "/v1/chat/completions", body)
        msg = ((r.json() or {}).get("error") or {}).get("message", "")
        s.check("repeat refused 400: " + name, r.status == 400 and what in msg and where in msg, r)
    r = post(gw, "/v1/messages", '{"model":"claude-3-5-haiku","max_tokens":5,"system":"a","system":"b",'
             '"messages":[]}', anthropic=True)
    msg = ((r.json() or {}).get("error") or {}).get("message", "")
    s.check("repeat refused 400 in the Anthropic shape", r.status == 400 and '"system" twice' in msg
            and (r.json() or {}).get("type") == "error", r)
    s.check("no refused body reached the provider", mock.stats()["requests"] == before)


def t_nul_and_surrogates(s, gw, mock):
    before = mock.stats()["requests"]
    # the NUL-suffixed name: once skipped by the scanner and read as "content" by the
    # translation (cJSON cuts names at NUL) -- sent to a model of the other format
    body = ('{"model":"claude-3-5-haiku","messages":[{"role":"user","content\\u0000":"AKIAQFAKE7EXAMPLE2XY",'
            '"content":"hi"}]}')
    r = post(gw, "/v1/chat/completions", body)
    s.check("NUL in a member name: 400", r.status == 400 and "NUL" in r.body.decode(errors="replace"), r)
    r = post(gw, "/v1/chat/completions", '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"a\\u0000b"}]}')
    s.check("NUL in a value: 400", r.status == 400, r)
    r = post(gw, "/v1/chat/completions", '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"\\ud800x"}]}')
    s.check("lone surrogate: 400", r.status == 400 and "surrogate" in r.body.decode(errors="replace"), r)
    r = post(gw, "/v1/chat/completions", b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"\xc3("}]}')
    s.check("invalid UTF-8: 400", r.status == 400, r)
    s.check("none of them reached the provider", mock.stats()["requests"] == before)


def t_escaped_names_one_meaning(s, gw, mock):
    # routing, policy and the rewrite all read "\u006dodel" as "model"
    r = post(gw, "/v1/chat/completions", '{"\\u006dodel":"gpt-renamed","messages":[{"role":"user","content":"hi"}]}')
    up = json.loads(mock.last_body() or b"{}") if r.status == 200 else {}
    s.check("escaped model name: routed and renamed upstream",
            r.status == 200 and up.get("model") == "gpt-4o-2024-08-06", (r, up))
    r = post(gw, "/v1/chat/completions", '{"\\u006dodel":"gpt-4.5-preview","messages":[{"role":"user","content":"hi"}]}')
    s.check("escaped model name: a model rule fires", r.status == 403 and "no-preview" in r.body.decode(), r)
    # "str\u0065am": the gateway asks for usage, and bills the stream
    before = mock.stats()["requests"]
    r = post(gw, "/v1/chat/completions", '{"model":"gpt-4o-mini","str\\u0065am":true,'
             '"messages":[{"role":"user","content":"hi"}]}')
    up = json.loads(mock.last_body() or b"{}") if mock.stats()["requests"] > before else {}
    s.check("escaped stream name: streamed with usage asked for",
            r.status == 200 and (up.get("stream_options") or {}).get("include_usage") is True
            and b"data: " in r.body, (r, up))
    s.check("escaped stream name: the usage chunk the client did not ask for is not relayed",
            b'"usage":{' not in r.body.replace(b'"usage":null', b""), r.body[-400:])


def t_forwarded_headers(s, gw, mock):
    """The provider headers the gateway forwards leave the network too: each must fit its
    grammar, or the request is refused (nothing is forwarded unread)."""
    beta = "claude-code-20250219,oauth-2025-04-20,interleaved-thinking-2025-05-14, fine-grained-tool-streaming-2025-05-14"
    body = json.dumps({"model": "claude-3-5-haiku", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
    r = request(gw.port, "POST", "/v1/messages", body, headers={"anthropic-version": "2023-06-01", "anthropic-beta": beta})
    head = mock.last_head()
    s.check("anthropic-beta: a feature list is forwarded unchanged",
            r.status == 200 and ("anthropic-beta: " + beta) in head, (r.status, head[:400]))
    before = mock.stats()["requests"]
    for name, hdrs in [("an email in anthropic-beta", {"anthropic-version": "2023-06-01",
                                                       "anthropic-beta": "tools-2024, jane.doe@example.com"}),
                       ("a secret in anthropic-beta", {"anthropic-version": "2023-06-01",
                                                       "anthropic-beta": "x;AKIAQFAKE7EXAMPLE2XY"}),
                       ("anthropic-version not a date", {"anthropic-version": "2023-06-01 AKIAQFAKE7EXAMPLE2XY"})]:
        r = request(gw.port, "POST", "/v1/messages", body, headers=hdrs)
        s.check("%s: 400 in the Anthropic shape" % name,
                r.status == 400 and (r.json() or {}).get("type") == "error", r)
    s.check("no refused header reached the provider", mock.stats()["requests"] == before)


def bodies(corpus, n):
    """Request bodies built from the policy corpus, in both APIs, with models that keep the
    format, rename it, or translate it, streamed and not."""
    out = []
    for i, e in enumerate(corpus[:n]):
        stream = i % 3 == 0
        if i % 2 == 0:
            model = ("gpt-4o-mini", "gpt-renamed", "claude-3-5-haiku")[i % 3]
            b = {"model": model, "messages": [{"role": "system", "content": "You help."},
                                              {"role": "user", "content": e["text"]}]}
            if stream:
                b["stream"] = True
            out.append(("openai", "/v1/chat/completions", json.dumps(b, ensure_ascii=i % 4 == 0)))
        else:
            model = ("claude-3-5-haiku", "gpt-4o-mini")[i % 4 == 1]
            b = {"model": model, "max_tokens": 64, "system": "You help.",
                 "messages": [{"role": "user", "content": [{"type": "text", "text": e["text"]}]}]}
            if stream:
                b["stream"] = True
            out.append(("anthropic", "/v1/messages", json.dumps(b, ensure_ascii=i % 4 == 1)))
    return out


def t_policy_test_is_the_gateway(s, gw, mock):
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "..", "policy", "corpus", "corpus.jsonl")) as f:
        corpus = [json.loads(l) for l in f if l.strip()]
    env = dict(os.environ, MOCK_OPENAI_KEY=OPENAI_REAL)
    compared = sent = refused = 0
    mismatches = []
    for api, path, body in bodies(corpus, 120):
        p = subprocess.run([AIRLOCK, "policy", "test", "-c", gw.config, "--api", api, "--key", "alice", "-"],
                           input=body.encode(), capture_output=True, timeout=30, env=env)
        if p.returncode != 0:
            mismatches.append(("policy test failed", p.stderr[:200]))
            continue
        dec = json.loads(p.stdout)
        before = mock.stats()["requests"]
        r = post(gw, path, body, anthropic=api == "anthropic")
        left = mock.stats()["requests"] > before
        compared += 1
        if dec["outbound"] is None:
            refused += 1
            if left or (dec["verdict"] == "block" and r.status != 403):
                mismatches.append(("nothing should leave", dec["verdict"], r.status))
            continue
        sent += 1
        got = mock.last_body() if left else None
        # each request draws its own placeholder suffix: compare with it set aside
        norm = lambda b: re.sub(rb"(\[[A-Z0-9_]+_[0-9]+)_[a-z2-7]{6}\]", rb"\1_*]", b or b"")
        if r.status != 200 or norm(got) != norm(dec["outbound"].encode()):
            mismatches.append((api, r.status, (got or b"")[:120], dec["outbound"][:120]))
    s.check("policy test's outbound == the bytes the gateway sent (%d bodies, %d sent, %d kept home)"
            % (compared, sent, refused), not mismatches and sent > 40 and refused > 5, mismatches[:3])


def main():
    s = Suite("onereading")
    why = gateway_missing()
    if why:
        s.bail(why)
    mock = Mock(s)
    port = free_port()
    cfg = base_config(port, mock.port, rules=RULES)
    cfg = cfg.replace("rules:", EXTRA_MODELS + "rules:", 1)
    gw = Airlock(s, cfg, port)
    for t in (t_repeats_refused, t_nul_and_surrogates, t_escaped_names_one_meaning,
              t_forwarded_headers, t_policy_test_is_the_gateway):
        s.run(t, gw, mock)
    s.check("gateway alive after the suite", gw.proc.poll() is None, gw.stderr()[-500:])
    gw.stop()
    s.done()


if __name__ == "__main__":
    main()
