/* fuzz_responses.c -- libFuzzer driver for the Responses answer path (proxy/answer.c with
 * proxy/openai_responses.c): a provider's answer to a POST /v1/responses, whole or
 * streamed, relayed from an OpenAI provider or translated from an Anthropic one, with and
 * without placeholders to restore.
 *
 * Input: two bytes of choices, then the provider's body.
 *
 *   byte 0  bit 0    the provider's API (0 OpenAI Responses, 1 Anthropic: models "om"/"am")
 *           bit 1    the request streams
 *           bit 2    the prompt holds e-mail addresses the policy redacts (a restorer)
 *           bits 3-4 the provider's status: 200 200 400 529
 *           bit 5    the provider's content type contradicts the request's stream option
 *           bit 6    the upstream fails (proxy_answer_upstream_failed) instead of ending
 *           bit 7    that failure is a timeout
 *   byte 1  bits 0-3 piece size of the body: 0 whole, else a changing step from it
 *
 * The request is made as in fuzz_answer.c (proxy_req_new over a stand-in connection that
 * is detached at once, a real config snapshot and policy, randomness all zeros so the
 * placeholders are [EMAIL_1_aaaaaa] and [EMAIL_2_aaaaaa]); every byte written for the
 * client lands in r->client_bytes.
 *
 * Invariants (abort on violation): the request is finished and holds no reference but its
 * own; the client's bytes are valid UTF-8 when the provider's were; a whole answer the
 * gateway wrote is one JSON value; a started stream reads as SSE events with nothing cut
 * short; a stream the gateway wrote itself (translated, or ended by its own failure) is in
 * the Responses grammar: each event a JSON object whose `type` is its event name, sequence
 * numbers 0, 1, 2, ... and one ending event (completed, incomplete, failed), last; and
 * when the provider's stream is itself that well formed (numbered from 0, one ending event,
 * last), so is the client's, and the output_text deltas the client got add up to each
 * output_text.done text. */
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
    "output_per_mtok: 2, cached_input_per_mtok: 0.5}}\n"
    "  - {name: am, provider: a, price: {input_per_mtok: 3, output_per_mtok: 4}}\n"
    "rules:\n"
    "  - name: mask\n"
    "    if: {detected: [pii]}\n"
    "    then: {action: redact, detectors: [pii]}\n"
    "  - name: rest\n"
    "    then: {action: allow}\n";

static const int STATUSES[4] = {200, 200, 400, 529};

static struct proxy px;
static struct proxy_snap snap;

static const char *shown;
static size_t shown_len;

static void check(int ok, const char *what)
{
    if (!ok)
        fuzz_fail("fuzz_responses", what, "client bytes", shown, shown_len);
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
    snap.refs = 1;
    snap.px = &px;
    px.snap = &snap;
}

/* ---- reading a Responses stream back ---- */

#define MAX_TEXTS 8

struct events {
    int grammar;    /* every event so far: JSON object, type = event name, numbered */
    size_t n;       /* events */
    size_t n_end;   /* ending events (completed, incomplete, failed) */
    int last_end;   /* the last event is one */
    int from_zero;  /* the first event is numbered 0 */
    size_t n_texts; /* output_text texts seen (by output_index and content_index) */
    long oi[MAX_TEXTS], ci[MAX_TEXTS];
    char *deltas[MAX_TEXTS]; /* their deltas joined */
    int sums_ok;             /* every done text equals its deltas */
};

static int ends(const char *ev, size_t elen)
{
    return (elen == 18 && memcmp(ev, "response.completed", 18) == 0) ||
           (elen == 19 && memcmp(ev, "response.incomplete", 19) == 0) ||
           (elen == 15 && memcmp(ev, "response.failed", 15) == 0);
}

static size_t text_at(struct events *s, long oi, long ci)
{
    for (size_t i = 0; i < s->n_texts; i++)
        if (s->oi[i] == oi && s->ci[i] == ci)
            return i;
    if (s->n_texts == MAX_TEXTS)
        return MAX_TEXTS;
    s->oi[s->n_texts] = oi;
    s->ci[s->n_texts] = ci;
    s->deltas[s->n_texts] = calloc(1, 1);
    return s->n_texts++;
}

static int on_event(void *ud, const char *raw, size_t raw_len, const char *ev, size_t elen,
                    const char *data, size_t dlen)
{
    struct events *s = ud;
    cJSON *j = cJSON_ParseWithLength(data, dlen);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "type");
    const cJSON *sq = cJSON_GetObjectItemCaseSensitive(j, "sequence_number");

    (void)raw;
    (void)raw_len;
    if (!cJSON_IsString(t) || strlen(t->valuestring) != elen ||
        memcmp(t->valuestring, ev, elen) != 0 || !cJSON_IsNumber(sq) ||
        sq->valuedouble != (double)s->n)
        s->grammar = 0;
    if (s->n == 0)
        s->from_zero = cJSON_IsNumber(sq) && sq->valuedouble == 0;
    s->last_end = ends(ev, elen);
    s->n_end += (size_t)s->last_end;
    if (cJSON_IsString(t) && (strcmp(t->valuestring, "response.output_text.delta") == 0 ||
                              strcmp(t->valuestring, "response.output_text.done") == 0)) {
        long oi = proxy_wire_num(j, "output_index"), ci = proxy_wire_num(j, "content_index");
        int delta = strcmp(t->valuestring, "response.output_text.delta") == 0;
        const char *v =
            cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, delta ? "delta" : "text"));
        size_t k = text_at(s, oi, ci);
        if (k < MAX_TEXTS && v && s->deltas[k]) {
            if (delta) {
                size_t a = strlen(s->deltas[k]), b = strlen(v);
                char *nd = realloc(s->deltas[k], a + b + 1);
                if (nd) {
                    memcpy(nd + a, v, b + 1);
                    s->deltas[k] = nd;
                }
            } else if (strcmp(s->deltas[k], v) != 0) {
                s->sums_ok = 0;
            }
        }
    }
    cJSON_Delete(j);
    s->n++;
    return 0;
}

static void read_events(const char *b, size_t n, struct events *s, size_t *partial)
{
    struct proxy_sse p = {0};

    memset(s, 0, sizeof(*s));
    s->grammar = s->sums_ok = 1;
    check(proxy_sse_feed(&p, b, n, on_event, s) == 0, "SSE read back");
    *partial = 0;
    for (size_t i = 0; i < p.len; i++)
        *partial += p.buf[i] != '\n' && p.buf[i] != '\r';
    proxy_sse_deinit(&p);
}

static void events_deinit(struct events *s)
{
    for (size_t i = 0; i < s->n_texts; i++)
        free(s->deltas[i]);
}

/* ---- one request ---- */

static struct proxy_req *request_new(const char *body, size_t len)
{
    struct proxy_conn c;
    struct proxy_req *r;

    memset(&c, 0, sizeof(c));
    c.px = &px;
    snprintf(c.peer, sizeof(c.peer), "127.0.0.1:1");
    c.body = evbuffer_new();
    check(c.body && evbuffer_add(c.body, body, len) == 0, "stand-in body");
    r = proxy_req_new(&c);
    evbuffer_free(c.body);
    check(r != NULL, "proxy_req_new");
    r->conn = NULL;
    r->record = 1;
    r->api = PROXY_API_OPENAI;
    r->wire = &proxy_wire_openai_responses;
    snprintf(r->endpoint, sizeof(r->endpoint), "/v1/responses");
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char req_body[512];
    size_t pos, step, n, rest;
    int prov_anth, stream, redact, status, ctype_flip, fail, timeout, sse_answer, translating;
    const char *body, *cb;
    struct proxy_req *r;
    struct events up_ev, cl_ev;
    int req_len;

    if (!snap.cfg)
        setup();
    if (size < 2)
        return 0;
    prov_anth = data[0] & 1;
    stream = (data[0] >> 1) & 1;
    redact = (data[0] >> 2) & 1;
    status = STATUSES[(data[0] >> 3) & 3];
    ctype_flip = (data[0] >> 5) & 1;
    fail = (data[0] >> 6) & 1;
    timeout = data[0] >> 7;
    step = data[1] & 15;
    body = (const char *)data + 2;
    size -= 2;

    req_len = snprintf(req_body, sizeof(req_body),
                       "{\"model\":\"%s\",\"stream\":%s,\"instructions\":\"Be brief.\","
                       "\"input\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_text\","
                       "\"text\":\"%s\"}]}]}",
                       prov_anth ? "am" : "om", stream ? "true" : "false",
                       redact ? "Write to bob@example.com and carol@example.org, please."
                              : "Say hello, please.");
    check(req_len > 0 && (size_t)req_len < sizeof(req_body), "request body fits");
    r = request_new(req_body, (size_t)req_len);
    check(proxy_decide_body(snap.cfg, snap.policy, POLICY_API_OPENAI, PROXY_BODY_RESPONSE, r->body,
                            r->body_len, NULL, NULL, &r->d) == 0,
          "the request is decided");
    check(r->d.stream == stream && r->d.prov && r->d.model, "the decision routes");
    check(!redact || (r->d.has_policy && r->d.policy.restorer), "a redaction has a restorer");
    r->up_wire = prov_anth ? &proxy_wire_anthropic_messages : &proxy_wire_openai_responses;
    translating = prov_anth;
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
    check(!utf8_valid((const unsigned char *)body, size) ||
              utf8_valid((const unsigned char *)cb, n),
          "the client's bytes are UTF-8 when the provider's were");

    if (stream && status == 200 && sse_answer) {
        check(r->status == 200, "a started stream answers 200");
        read_events(cb, n, &cl_ev, &rest);
        check(rest == 0, "the client's stream does not end in an event cut short");
        read_events(body, size, &up_ev, &rest);
        if (translating || (r->stream_state == PROXY_STREAM_FAILED && cl_ev.n_end)) {
            if (translating) {
                check(cl_ev.grammar, "the gateway's stream is in the Responses grammar");
                check(cl_ev.n_end == 1 && cl_ev.last_end, "one ending event, last");
                check(cl_ev.sums_ok, "the deltas add up to the done text");
            }
        }
        if (!translating && up_ev.grammar && up_ev.from_zero && up_ev.n_end == 1 &&
            up_ev.last_end && rest == 0) {
            check(cl_ev.grammar, "a well-formed stream relayed stays in the grammar");
            check(cl_ev.n_end == 1 && cl_ev.last_end, "and ends with its ending event");
            if (up_ev.sums_ok)
                check(cl_ev.sums_ok, "and its deltas still add up to the done texts");
        }
        if (fail && r->stream_state == PROXY_STREAM_FAILED)
            check(cl_ev.last_end, "the gateway's failure event ends the stream");
        events_deinit(&cl_ev);
        events_deinit(&up_ev);
    } else if (translating || status != 200 || fail || redact) {
        char *z = malloc(n + 1);
        cJSON *j;
        check(z != NULL, "memory");
        memcpy(z, cb, n);
        z[n] = '\0';
        j = cJSON_ParseWithOpts(z, NULL, 1);
        check(j != NULL, "a whole answer the gateway wrote is one JSON value");
        cJSON_Delete(j);
        free(z);
    }

    shown = NULL;
    shown_len = 0;
    proxy_req_unref(r);
    proxy_metrics_deinit(&px.metrics);
    memset(&px.metrics, 0, sizeof(px.metrics));
    check(px.n_reqs == 0, "the request is freed");
    return 0;
}
