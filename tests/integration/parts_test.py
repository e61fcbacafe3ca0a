"""parts_test.py -- limits.max_body_values through a real listener: a body of more JSON
values than the limit (many tiny text parts, a long array of one-letter strings, a
metadata object of many members, many numbers) is answered 413 in the endpoint's own error
format, naming the limit, on every endpoint (chat, Anthropic messages and count_tokens,
responses, completions, embeddings), and nothing reaches the provider; a body at the limit
goes through. Deciding a body costs the event loop time for every value however small, so
the limit is what bounds it (docs/security.md, "Costs and observations")."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from itest import (ANTHROPIC_HEADERS, Airlock, Mock, Suite, base_config, free_port,  # noqa: E402
                   gateway_missing, request)

LIMIT = 1000


def nvalues(v):
    """JSON values as the gateway counts them: every value, and every member name."""
    if isinstance(v, dict):
        return 1 + sum(1 + nvalues(x) for x in v.values())
    if isinstance(v, list):
        return 1 + sum(nvalues(x) for x in v)
    return 1


def grow(make, target):
    """make(n) for the largest n with nvalues <= target, and the smallest with more"""
    n = 1
    while nvalues(make(n + 1)) <= target:
        n += 1
    return make(n), make(n + 1)


def openai_error(r):
    j = r.json() or {}
    e = j.get("error") or {}
    return e.get("type") == "invalid_request_error" and e.get("message", "")


def anthropic_error(r):
    j = r.json() or {}
    e = j.get("error") or {}
    return j.get("type") == "error" and e.get("type") == "request_too_large" and e.get("message", "")


def main():
    s = Suite("parts")
    why = gateway_missing()
    if why:
        s.bail(why)
    mock = Mock(s)
    port = free_port()
    cfg = base_config(port, mock.port,
                      limits="{max_body_bytes: 262144, max_body_values: %d, header_timeout_ms: 2000, "
                             "body_timeout_ms: 5000, upstream_timeout_ms: 5000}" % LIMIT)
    Airlock(s, cfg, port)

    def upstream():
        return mock.stats()["requests"]

    text = {"type": "text", "text": "a"}
    cases = [
        # (name, path, auth, error reader, body maker)
        ("chat: tiny text parts", "/v1/chat/completions", "bearer", openai_error,
         lambda n: {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": [text] * n}]}),
        ("chat: an array of one-letter strings in tools", "/v1/chat/completions", "bearer", openai_error,
         lambda n: {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}],
                    "tools": [{"type": "function", "function": {"name": "f", "parameters": {
                        "type": "object", "properties": {"x": {"type": "string", "enum": ["a"] * n}}}}}]}),
        ("chat: metadata of many members", "/v1/chat/completions", "bearer", openai_error,
         lambda n: {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}],
                    "metadata": {"k%d" % i: "v" for i in range(n)}}),
        ("chat: many numbers", "/v1/chat/completions", "bearer", openai_error,
         lambda n: {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}],
                    "metadata": {"x": [0] * n}}),
        ("messages: tiny text blocks", "/v1/messages", "x-api-key", anthropic_error,
         lambda n: {"model": "claude-3-5-haiku", "max_tokens": 16,
                    "messages": [{"role": "user", "content": [text] * n}]}),
        ("count_tokens: tiny text blocks", "/v1/messages/count_tokens", "x-api-key", anthropic_error,
         lambda n: {"model": "claude-3-5-haiku",
                    "messages": [{"role": "user", "content": [text] * n}]}),
        ("responses: tiny input_text parts", "/v1/responses", "bearer", openai_error,
         lambda n: {"model": "gpt-4o-mini", "input": [{"role": "user", "content": [
             {"type": "input_text", "text": "a"}] * n}]}),
        ("completions: a prompt of one-letter strings", "/v1/completions", "bearer", openai_error,
         lambda n: {"model": "gpt-4o-mini", "prompt": ["a"] * n}),
        ("embeddings: an input of one-letter strings", "/v1/embeddings", "bearer", openai_error,
         lambda n: {"model": "gpt-4o-mini", "input": ["a"] * n}),
    ]
    for name, path, auth, err, make in cases:
        at, over = grow(make, LIMIT)
        headers = ANTHROPIC_HEADERS if auth == "x-api-key" else None
        before = upstream()
        r = request(port, "POST", path, json.dumps(over), auth=auth, headers=headers)
        msg = err(r) or ""
        s.check("%s, %d values: 413 in the API's error format naming the limit" % (name, nvalues(over)),
                r.status == 413 and "limit of %d JSON values" % LIMIT in msg
                and "limits.max_body_values" in msg, r)
        s.check("%s: nothing reached the provider" % name, upstream() == before, (before, upstream()))
        r = request(port, "POST", path, json.dumps(at), auth=auth, headers=headers)
        s.check("%s, %d values (the most within the limit): not refused for its size (%d)" % (name, nvalues(at), r.status),
                r.status == 200 and upstream() == before + 1, r)

    # the same body twice over: the limit is per body, and the connection is answered
    body = json.dumps(cases[0][4](LIMIT))
    r = request(port, "POST", "/v1/chat/completions", body)
    s.check("a second body over the limit: 413 again", r.status == 413, r)
    s.done()


if __name__ == "__main__":
    main()
