/* fuzz_answer.c -- libFuzzer driver for the answer path (proxy/answer.c and the wire
 * formats, proxy/openai_chat.c and proxy/anthropic_messages.c): a provider's answer, whole
 * or streamed, relayed to a client of the same API or translated into the other one, with
 * and without placeholders to restore.
 *
 * Input: two bytes of choices, then the provider's body.
 *
 *   byte 0  bit 0    the client's API (0 OpenAI Chat, 1 Anthropic Messages)
 *           bit 1    the provider's API (0 OpenAI, 1 Anthropic: models "om" / "am")
 *           bit 2    the request streams
 *           bit 3    the prompt holds an e-mail address the policy redacts (a restorer)
 *           bit 4    an OpenAI client asked for the usage chunk itself
 *           bits 5-7 the provider's status: 200 200 200 200 400 401 429 529
 *   byte 1  bits 0-3 piece size of the body: 0 whole, else a changing step from it
 *           bit 4    the provider's content type contradicts the request's stream option
 *           bits 5-6 3: the upstream fails (proxy_answer_upstream_failed) instead of ending
 *           bit 7    that failure is a timeout
 *
 * The request is made by proxy_req_new over a stand-in connection that is detached at
 * once (r->conn NULL, as after a client left), under a stand-in proxy (no audit, no event
 * loop) and a real config snapshot and policy; its decision is proxy_decide's over a small
 * request body, so the outbound flags, the stream option and the restorer are real (its
 * placeholders' suffix is fixed: randomness is zeros). With r->record set every byte
 * written for the client lands in r->client_bytes.
 *
 * Invariants (abort on violation): the request is finished and holds no reference but
 * its own; the client's bytes are valid UTF-8 when the provider's were; a streamed answer
 * reads as SSE events, and nothing follows the client's terminating or error event; a
 * translated stream always has one; a well-formed provider stream (its terminating event
 * last and only once) ends with the client's. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "common/utf8.h"
#include "proxy/proxy_int.h"

#include "fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char YAML[] =
    "providers:\n"
    "  o: {type: openai, zone: external, base_url: \"https://o.example/v1\"}\n"
    "  a: {type: anthropic, zone: external, base_url: \"https://a.example\"}\n"
    "models:\n"
    "  - {name: om, provider: o, upstream_model: gpt-x, price: {input_per_mtok: 1, "
    "output_per_mtok: 2}}\n"
    "  - {name: am, provider: a, price: {input_per_mtok: 3, output_per_mtok: 4}}\n"
    "rules:\n"
    "  - name: mask\n"
    "    if: {detected: [pii]}\n"
    "    then: {action: redact, detectors: [pii]}\n"
    "  - name: rest\n"
    "    then: {action: allow}\n";

static const int STATUSES[8] = {200, 200, 200, 200, 400, 401, 429, 529};

static struct proxy px;
static struct proxy_snap snap;

/* what the client was sent so far, printed when an invariant breaks */
static const char *shown;
static size_t shown_len;

static void check(int ok, const char *what)
{
    if (!ok)
        fuzz_fail("fuzz_answer", what, "client bytes", shown, shown_len);
}

static void setup(void)
{
    struct config_errors errs;

    fuzz_zero_random();
    if (sodium_init() < 0)
        abort();
    memset(&errs, 0, sizeof(errs));
    if (config_load_text("fuzz.yaml", YAML, sizeof(YAML) - 1, NULL, &snap.cfg, &errs) < 0 ||
        policy_new(snap.cfg, &snap.policy, &errs) < 0)
        abort();
    snap.refs = 1; /* the harness's: cfg and policy live for the whole run */
    snap.px = &px;
    px.snap = &snap;
}

/* ---- reading SSE back ---- */

/* 1: the event ends a stream in API `anthropic`'s format (its terminator or an error) */
static int terminal(int anthropic, const char *ev, size_t elen, const char *data, size_t dlen)
{
    if (anthropic)
        return (elen == 12 && memcmp(ev, "message_stop", 12) == 0) ||
               (elen == 5 && memcmp(ev, "error", 5) == 0);
    if (dlen == 6 && memcmp(data, "[DONE]", 6) == 0)
        return 1;
    if (dlen && data[0] == '{') {
        cJSON *j = cJSON_ParseWithLength(data, dlen);
        int e = cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(j, "error"));
        cJSON_Delete(j);
        return e;
    }
    return 0;
}

struct events {
    int anthropic;
    size_t n;              /* events */
    size_t n_terminal;     /* of which terminal */
    size_t first_terminal; /* index of the first terminal event */
    int last_terminal;     /* the last event is terminal */
};

static int on_event(void *ud, const char *raw, size_t raw_len, const char *ev, size_t elen,
                    const char *data, size_t dlen)
{
    struct events *s = ud;
    int t = terminal(s->anthropic, ev, elen, data, dlen);

    (void)raw;
    (void)raw_len;
    if (t && s->n_terminal++ == 0)
        s->first_terminal = s->n;
    s->last_terminal = t;
    s->n++;
    return 0;
}

/* the events of b[0..n) in API `anthropic`'s format; *partial: bytes after the last
 * event other than line ends (an event cut short) */
static void read_events(int anthropic, const char *b, size_t n, struct events *s, size_t *partial)
{
    struct proxy_sse p = {0};

    memset(s, 0, sizeof(*s));
    s->anthropic = anthropic;
    check(proxy_sse_feed(&p, b, n, on_event, s) == 0, "SSE read back");
    *partial = 0;
    for (size_t i = 0; i < p.len; i++)
        *partial += p.buf[i] != '\n' && p.buf[i] != '\r';
    proxy_sse_deinit(&p);
}

/* ---- one request ---- */

/* the client's request: the model routes to the provider's API, the e-mail is redacted */
static size_t request_body(char *buf, size_t cap, int client_anthropic, int prov_anthropic,
                           int stream, int redact, int usage_asked)
{
    const char *model = prov_anthropic ? "am" : "om";
    const char *text =
        redact ? "Write to bob@example.com and carol@example.org, please." : "Say hello, please.";
    int n;

    if (client_anthropic)
        n = snprintf(buf, cap,
                     "{\"model\":\"%s\",\"max_tokens\":64,\"stream\":%s,"
                     "\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}]}",
                     model, stream ? "true" : "false", text);
    else
        n = snprintf(buf, cap,
                     "{\"model\":\"%s\",\"stream\":%s%s,"
                     "\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}]}",
                     model, stream ? "true" : "false",
                     stream && usage_asked ? ",\"stream_options\":{\"include_usage\":true}" : "",
                     text);
    check(n > 0 && (size_t)n < cap, "request body fits");
    return (size_t)n;
}

static struct proxy_req *request_new(const char *body, size_t len, int client_anthropic)
{
    struct proxy_conn c;
    struct proxy_req *r;

    /* proxy_req_new reads px, peer and the body from its connection, nothing more */
    memset(&c, 0, sizeof(c));
    c.px = &px;
    snprintf(c.peer, sizeof(c.peer), "127.0.0.1:1");
    c.body = evbuffer_new();
    check(c.body && evbuffer_add(c.body, body, len) == 0, "stand-in body");
    r = proxy_req_new(&c);
    evbuffer_free(c.body);
    check(r != NULL, "proxy_req_new");
    r->conn = NULL; /* detached: writes go to r->client_bytes only */
    r->record = 1;  /* as with the audit on: every byte for the client is kept */
    r->api = client_anthropic ? PROXY_API_ANTHROPIC : PROXY_API_OPENAI;
    r->wire = client_anthropic ? &proxy_wire_anthropic_messages : &proxy_wire_openai_chat;
    snprintf(r->endpoint, sizeof(r->endpoint), "%s",
             client_anthropic ? "/v1/messages" : "/v1/chat/completions");
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char req_body[512];
    size_t req_len, pos, step, n, rest;
    int client_anth, prov_anth, stream, redact, usage_asked, status, ctype_flip, fail, timeout;
    int sse_answer, translating, up_valid;
    const char *body, *cb;
    struct proxy_req *r;
    struct events up_ev, cl_ev;

    if (!snap.cfg)
        setup();
    if (size < 2)
        return 0;
    client_anth = data[0] & 1;
    prov_anth = (data[0] >> 1) & 1;
    stream = (data[0] >> 2) & 1;
    redact = (data[0] >> 3) & 1;
    usage_asked = (data[0] >> 4) & 1;
    status = STATUSES[data[0] >> 5];
    step = data[1] & 15;
    ctype_flip = (data[1] >> 4) & 1;
    fail = ((data[1] >> 5) & 3) == 3;
    timeout = data[1] >> 7;
    body = (const char *)data + 2;
    size -= 2;

    req_len = request_body(req_body, sizeof(req_body), client_anth, prov_anth, stream, redact,
                           usage_asked);
    r = request_new(req_body, req_len, client_anth);
    check(proxy_decide(snap.cfg, snap.policy,
                       client_anth ? POLICY_API_ANTHROPIC : POLICY_API_OPENAI, r->body, r->body_len,
                       NULL, NULL, &r->d) == 0,
          "the request is decided");
    check(r->d.stream == stream && r->d.prov && r->d.model, "the decision routes");
    check(!redact || (r->d.has_policy && r->d.policy.restorer), "a redaction has a restorer");
    r->up_wire = prov_anth ? &proxy_wire_anthropic_messages : &proxy_wire_openai_chat;
    translating = client_anth != prov_anth;
    check(proxy_translating(r) == translating, "proxy_translating");
    proxy_req_advance(r, REQ_DECIDED);
    proxy_req_advance(r, REQ_DISPATCHED);

    sse_answer = stream != ctype_flip;
    proxy_answer_upstream_head(r, status, sse_answer ? "text/event-stream" : "application/json");
    for (pos = 0; pos < size && r->state < REQ_LOGGED; pos += n) {
        n = step ? step : size;
        if (n > size - pos)
            n = size - pos;
        proxy_answer_upstream_body(r, body + pos, n);
        if (step)
            step = step * 5 % 23 + 1;
    }
    if (fail)
        proxy_answer_upstream_failed(r, timeout, "connection reset by peer");
    else
        proxy_answer_upstream_done(r);

    check(r->state == REQ_LOGGED, "the request is finished");
    check(r->refs == 1, "no reference is left but the request's own");
    check(r->status >= 200 && r->status <= 599, "the client has a status");
    n = evbuffer_get_length(r->client_bytes);
    cb = n ? (const char *)evbuffer_pullup(r->client_bytes, -1) : "";
    shown = cb;
    shown_len = n;
    up_valid = utf8_valid((const unsigned char *)body, size);
    check(!up_valid || utf8_valid((const unsigned char *)cb, n),
          "the client's bytes are UTF-8 when the provider's were");

    if (stream && status == 200 && sse_answer) {
        /* a stream was started: the client reads events in its own format */
        check(r->status == 200, "a started stream answers 200");
        read_events(client_anth, cb, n, &cl_ev, &rest);
        check(rest == 0, "the client's stream does not end in an event cut short");
        if (r->stream_state == PROXY_STREAM_FAILED || fail)
            check(cl_ev.last_terminal, "the gateway's error event ends the stream");
        if (translating)
            check(cl_ev.n_terminal > 0 && cl_ev.first_terminal + 1 == cl_ev.n,
                  "a translated stream has one ending event, last");
        read_events(prov_anth, body, size, &up_ev, &rest);
        if (up_ev.n_terminal == 1 && up_ev.last_terminal)
            check(cl_ev.last_terminal, "a well-formed stream ends with the client's ending event");
    } else {
        /* a whole answer: the gateway's own JSON, or the provider's relayed as it came */
        if (translating || status != 200 || fail || redact) {
            char *z = malloc(n + 1);
            cJSON *j;
            check(z != NULL, "memory");
            memcpy(z, cb, n);
            z[n] = '\0';
            j = cJSON_ParseWithOpts(z, NULL, 1); /* nothing after the value */
            check(j != NULL, "a whole answer the gateway wrote is one JSON value");
            cJSON_Delete(j);
            free(z);
        }
    }

    shown = NULL;
    shown_len = 0;
    proxy_req_unref(r);
    proxy_metrics_deinit(&px.metrics);
    memset(&px.metrics, 0, sizeof(px.metrics));
    check(px.n_reqs == 0, "the request is freed");
    return 0;
}
