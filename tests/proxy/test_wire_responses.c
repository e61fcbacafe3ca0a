/* test_wire_responses.c -- the Responses surface (openai_responses.c): requests read into
 * the canonical chat, usage and answers read, the events the gateway writes (the engine's
 * stream, whole answers, a failure), a provider's stream relayed with placeholders restored
 * in every event that carries text -- each placeholder split one character per event -- and
 * the decisions of proxy_decide_body for responses and compactions. The relay writes into
 * the request's audit copy of the client's bytes (no connection: server.c keeps the copy
 * and sends nothing), which is read back here as a client would. */
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "harness.h"
#include "proxy/decide.h"
#include "proxy/outbound.h"
#include "proxy/proxy_int.h"
#include "proxy/wire.h"

static const struct proxy_wire *const rsp = &proxy_wire_openai_responses;

static const char *yaml =
    "listen: [{address: \"127.0.0.1:1\"}]\n"
    "providers:\n"
    "  oai: {type: openai, base_url: \"http://127.0.0.1:2/v1\", api_key: k1}\n"
    "  ant: {type: anthropic, base_url: \"http://127.0.0.1:3\", api_key: k2}\n"
    "  local: {type: builtin, model: \"/nonexistent/m.gguf\"}\n"
    "models:\n"
    "  - {name: gpt, provider: oai, upstream_model: gpt-5-2025}\n"
    "  - {name: claude, provider: ant}\n"
    "  - {name: small, provider: local}\n"
    "detectors:\n"
    "  - {name: grammar_words, keywords: [summary_text, previous_response_id, in_progress]}\n"
    "rules:\n"
    "  - {name: no-secrets, if: {detected: [secrets]}, then: {action: block}}\n"
    "  - {name: words, if: {detected: [grammar_words]}, then: {action: block}}\n"
    "  - {name: mask-email, if: {detected: [email]}, then: {action: redact, detectors: [email]}}\n"
    "  - {name: default, then: {action: allow}}\n";

static struct config *cfg;
static struct policy *pol;

static const char *EMAIL = "jane.doe@example.com";

static const char *str_at(const cJSON *o, const char *k)
{
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, k));
}

static double num_at(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : -12345;
}

/* ---- requests ---- */

static int read_req(const char *json, struct proxy_chat *c, char *err, size_t errlen)
{
    cJSON *t = cJSON_Parse(json);
    int rc;

    proxy_chat_init(c);
    err[0] = '\0';
    if (!t)
        return -2;
    rc = rsp->read_request(t, c, err, errlen);
    cJSON_Delete(t);
    return rc;
}

static void test_read_request(void)
{
    struct proxy_chat c;
    char err[256];

    CHECK(read_req("{\"instructions\":\"Be brief.\",\"input\":\"Hello\",\"max_output_tokens\":9,"
                   "\"temperature\":0.5,\"top_p\":0.9,\"stream\":true}",
                   &c, err, sizeof(err)) == 0);
    REQUIRE(c.n == 2);
    CHECK(strcmp(c.msgs[0].role, "system") == 0 && strcmp(c.msgs[0].text, "Be brief.") == 0);
    CHECK(strcmp(c.msgs[1].role, "user") == 0 && strcmp(c.msgs[1].text, "Hello") == 0);
    CHECK(c.max_tokens == 9 && c.temperature == 0.5 && c.top_p == 0.9 && c.stream == 1);
    proxy_chat_deinit(&c);
    /* items: messages with a string or input_text/output_text parts, developer = system */
    CHECK(read_req("{\"input\":[{\"role\":\"developer\",\"content\":\"rules\"},"
                   "{\"type\":\"message\",\"role\":\"user\",\"content\":[{\"type\":\"input_text\","
                   "\"text\":\"a\"},{\"type\":\"input_text\",\"text\":\"b\"}]},"
                   "{\"type\":\"message\",\"role\":\"assistant\",\"content\":[{\"type\":"
                   "\"output_text\",\"text\":\"c\"}]}]}",
                   &c, err, sizeof(err)) == 0);
    REQUIRE(c.n == 3);
    CHECK(strcmp(c.msgs[0].role, "system") == 0 && strcmp(c.msgs[1].text, "ab") == 0 &&
          strcmp(c.msgs[2].role, "assistant") == 0 && strcmp(c.msgs[2].text, "c") == 0);
    CHECK(c.max_tokens < 0 && c.stream == 0);
    proxy_chat_deinit(&c);
    /* what the chat cannot carry */
    CHECK(read_req("{\"input\":[{\"type\":\"function_call_output\",\"call_id\":\"c\","
                   "\"output\":\"x\"}]}",
                   &c, err, sizeof(err)) == -1);
    CHECK(strstr(err, "text messages") != NULL &&
          strstr(err, "input[0] is a 'function_call_output'"));
    proxy_chat_deinit(&c);
    CHECK(read_req("{\"input\":[]}", &c, err, sizeof(err)) == -1);
    CHECK(strstr(err, "nothing to answer") != NULL);
    proxy_chat_deinit(&c);
    CHECK(read_req("{\"instructions\":\"only this\"}", &c, err, sizeof(err)) == 0 && c.n == 1);
    proxy_chat_deinit(&c);
    CHECK(read_req("{\"input\":[{\"type\":\"reasoning\",\"summary\":[]}]}", &c, err, sizeof(err)) ==
          -1);
    proxy_chat_deinit(&c);
    CHECK(read_req("{\"input\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_image\","
                   "\"image_url\":\"https://x/y.png\"}]}]}",
                   &c, err, sizeof(err)) == -1);
    proxy_chat_deinit(&c);
    CHECK(read_req("{\"input\":\"x\",\"previous_response_id\":\"resp_1\"}", &c, err, sizeof(err)) ==
          -1);
    CHECK(strstr(err, "previous_response_id") != NULL);
    proxy_chat_deinit(&c);
    CHECK(read_req("{\"input\":\"x\",\"text\":{\"format\":{\"type\":\"json_schema\"}}}", &c, err,
                   sizeof(err)) == -1);
    proxy_chat_deinit(&c);
    CHECK(read_req("{\"input\":\"x\",\"text\":{\"format\":{\"type\":\"text\"}},"
                   "\"previous_response_id\":null}",
                   &c, err, sizeof(err)) == 0);
    proxy_chat_deinit(&c);
    /* nothing is translated into Responses */
    CHECK(rsp->build_request == NULL);
    CHECK_EQ_STR(rsp->up_path, "/responses");
    CHECK_EQ_STR(proxy_wire_openai_responses_compact.up_path, "/responses/compact");
    CHECK_EQ_STR(rsp->id_prefix, "resp_");
}

/* ---- answers from a provider ---- */

static void test_usage_and_answer(void)
{
    struct proxy_usage u = {0};
    struct proxy_answer a;
    cJSON *j = cJSON_Parse(
        "{\"id\":\"resp_9\",\"object\":\"response\",\"model\":\"gpt-5-2025\",\"status\":"
        "\"completed\",\"output\":[{\"type\":\"reasoning\",\"summary\":[]},{\"type\":\"message\","
        "\"role\":\"assistant\",\"content\":[{\"type\":\"output_text\",\"text\":\"Hel\"},"
        "{\"type\":\"output_text\",\"text\":\"lo\"}]}],\"usage\":{\"input_tokens\":100,"
        "\"input_tokens_details\":{\"cached_tokens\":60},\"output_tokens\":30,"
        "\"output_tokens_details\":{\"reasoning_tokens\":20},\"total_tokens\":130}}");

    REQUIRE(j);
    memset(&a, 0, sizeof(a));
    CHECK(rsp->read_answer(j, &a, &u) == 0);
    CHECK_EQ_STR(a.text, "Hello");
    CHECK_EQ_STR(a.id, "resp_9");
    CHECK_EQ_STR(a.model, "gpt-5-2025");
    CHECK_EQ_INT(a.stop, PROXY_STOP_END);
    /* output counts the reasoning tokens; cached input is priced apart */
    CHECK(u.seen && u.input == 100 && u.cached == 60 && u.output == 30);
    free(a.text);
    cJSON_Delete(j);
    j = cJSON_Parse("{\"status\":\"incomplete\",\"incomplete_details\":{\"reason\":"
                    "\"max_output_tokens\"},\"output\":[]}");
    memset(&a, 0, sizeof(a));
    CHECK(rsp->read_answer(j, &a, &u) == 0 && a.stop == PROXY_STOP_LENGTH);
    free(a.text);
    cJSON_Delete(j);
    j = cJSON_Parse("{\"status\":\"completed\",\"output\":[{\"type\":\"function_call\","
                    "\"arguments\":\"{}\",\"name\":\"f\",\"call_id\":\"c\"}]}");
    memset(&a, 0, sizeof(a));
    CHECK(rsp->read_answer(j, &a, &u) == 0 && a.stop == PROXY_STOP_TOOL);
    free(a.text);
    cJSON_Delete(j);
}

/* ---- the client's side of a stream ---- */

struct ev {
    char name[96];
    cJSON *j;
};

/* the SSE events of the bytes the client was sent (each with its `event:` line) */
static size_t client_events(struct proxy_req *r, struct ev *out, size_t cap)
{
    size_t len = evbuffer_get_length(r->client_bytes), n = 0;
    char *all = malloc(len + 1), *p;

    if (!all)
        return 0;
    evbuffer_copyout(r->client_bytes, all, len);
    all[len] = '\0';
    for (p = all; p && *p && n < cap;) {
        char *end = strstr(p, "\n\n"), *nl;
        if (!end)
            break;
        *end = '\0';
        out[n].name[0] = '\0';
        out[n].j = NULL;
        for (char *line = p; line && *line; line = nl) {
            nl = strchr(line, '\n');
            if (nl)
                *nl++ = '\0';
            if (strncmp(line, "event: ", 7) == 0)
                snprintf(out[n].name, sizeof(out[n].name), "%s", line + 7);
            else if (strncmp(line, "data: ", 6) == 0)
                out[n].j = cJSON_Parse(line + 6);
        }
        n++;
        p = end + 2;
    }
    free(all);
    return n;
}

static void events_free(struct ev *e, size_t n)
{
    for (size_t i = 0; i < n; i++)
        cJSON_Delete(e[i].j);
}

/* every event has a type equal to its event line, and sequence numbers run 0, 1, 2, ... */
static int well_numbered(const struct ev *e, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!e[i].j || !str_at(e[i].j, "type") || strcmp(str_at(e[i].j, "type"), e[i].name) != 0 ||
            num_at(e[i].j, "sequence_number") != (double)i) {
            fprintf(stderr, "  event %zu (%s) out of grammar or order\n", i, e[i].name);
            return 0;
        }
    return 1;
}

/* the deltas of events named `type` (at output_index oi) joined */
static char *joined(const struct ev *e, size_t n, const char *type, int oi)
{
    size_t len = 0;
    char *s = calloc(1, 4096);

    for (size_t i = 0; s && i < n; i++) {
        const char *d = str_at(e[i].j, "delta");
        if (strcmp(e[i].name, type) == 0 && d && num_at(e[i].j, "output_index") == oi &&
            len + strlen(d) < 4095) {
            memcpy(s + len, d, strlen(d) + 1);
            len += strlen(d);
        }
    }
    return s;
}

static const cJSON *first(const struct ev *e, size_t n, const char *type)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(e[i].name, type) == 0)
            return e[i].j;
    return NULL;
}

static struct proxy_req *req_new(void)
{
    struct proxy_req *r = calloc(1, sizeof(*r));

    if (!r)
        return NULL;
    snprintf(r->id, sizeof(r->id), "0123abcd");
    r->wire = rsp;
    r->record = 1;
    r->client_bytes = evbuffer_new();
    snprintf(r->tr_model, sizeof(r->tr_model), "small");
    return r;
}

static void req_free(struct proxy_req *r)
{
    proxy_decision_deinit(&r->d);
    cJSON_Delete(r->json);
    free(r->engine_text);
    evbuffer_free(r->client_bytes);
    free(r);
}

/* ---- the gateway's own stream (the engine's, or a translated provider's) ---- */

static void test_engine_stream(void)
{
    struct proxy_req *r = req_new();
    struct ev e[32];
    const cJSON *fin, *resp, *u, *item;
    size_t n;

    REQUIRE(r);
    r->json = cJSON_Parse("{\"max_output_tokens\":50}");
    r->usage.input = 11;
    r->usage.output = 3;
    rsp->stream_open(r);
    rsp->stream_text(r, "Hel");
    rsp->stream_text(r, "");
    rsp->stream_text(r, "lo!");
    r->tr_stop = PROXY_STOP_END;
    rsp->stream_close(r);
    rsp->stream_close(r); /* once */
    n = client_events(r, e, 32);
    CHECK_EQ_INT((int)n, 10);
    CHECK(well_numbered(e, n));
    {
        static const char *const want[] = {
            "response.created",           "response.in_progress",
            "response.output_item.added", "response.content_part.added",
            "response.output_text.delta", "response.output_text.delta",
            "response.output_text.done",  "response.content_part.done",
            "response.output_item.done",  "response.completed"};
        for (size_t i = 0; i < 10 && i < n; i++)
            CHECK_EQ_STR(e[i].name, want[i]);
    }
    resp = cJSON_GetObjectItemCaseSensitive(first(e, n, "response.created"), "response");
    CHECK_EQ_STR(str_at(resp, "id"), "resp_0123abcd");
    CHECK_EQ_STR(str_at(resp, "status"), "in_progress");
    CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(resp, "usage")));
    CHECK_EQ_STR(str_at(first(e, n, "response.output_text.delta"), "item_id"), "msg_0123abcd");
    CHECK(num_at(first(e, n, "response.output_text.delta"), "content_index") == 0);
    CHECK_EQ_STR(str_at(first(e, n, "response.output_text.done"), "text"), "Hello!");
    item = cJSON_GetObjectItemCaseSensitive(first(e, n, "response.output_item.done"), "item");
    CHECK_EQ_STR(str_at(item, "status"), "completed");
    CHECK_EQ_STR(str_at(cJSON_GetArrayItem(cJSON_GetObjectItem(item, "content"), 0), "text"),
                 "Hello!");
    fin = first(e, n, "response.completed");
    resp = cJSON_GetObjectItemCaseSensitive(fin, "response");
    CHECK_EQ_STR(str_at(resp, "object"), "response");
    CHECK_EQ_STR(str_at(resp, "status"), "completed");
    CHECK_EQ_STR(str_at(resp, "model"), "small");
    CHECK(num_at(resp, "max_output_tokens") == 50 && num_at(resp, "created_at") > 0);
    u = cJSON_GetObjectItemCaseSensitive(resp, "usage");
    CHECK(num_at(u, "input_tokens") == 11 && num_at(u, "output_tokens") == 3 &&
          num_at(u, "total_tokens") == 14);
    CHECK(num_at(cJSON_GetObjectItem(u, "input_tokens_details"), "cached_tokens") == 0);
    CHECK(num_at(cJSON_GetObjectItem(u, "output_tokens_details"), "reasoning_tokens") == 0);
    events_free(e, n);
    req_free(r);

    /* stopped by the length limit: response.incomplete */
    r = req_new();
    REQUIRE(r);
    rsp->stream_text(r, "abc");
    r->tr_stop = PROXY_STOP_LENGTH;
    rsp->stream_close(r);
    n = client_events(r, e, 32);
    CHECK(n > 0 && strcmp(e[n - 1].name, "response.incomplete") == 0 && well_numbered(e, n));
    resp = n ? cJSON_GetObjectItemCaseSensitive(e[n - 1].j, "response") : NULL;
    CHECK_EQ_STR(str_at(cJSON_GetObjectItem(resp, "incomplete_details"), "reason"),
                 "max_output_tokens");
    events_free(e, n);
    req_free(r);

    /* failing once started: response.failed, numbered on, with the message */
    r = req_new();
    REQUIRE(r);
    rsp->stream_text(r, "ab");
    rsp->stream_fail(r, 500, "The local model failed.");
    n = client_events(r, e, 32);
    CHECK(n > 0 && strcmp(e[n - 1].name, "response.failed") == 0 && well_numbered(e, n));
    resp = n ? cJSON_GetObjectItemCaseSensitive(e[n - 1].j, "response") : NULL;
    CHECK_EQ_STR(str_at(resp, "status"), "failed");
    CHECK_EQ_STR(str_at(cJSON_GetObjectItem(resp, "error"), "message"), "The local model failed.");
    events_free(e, n);
    req_free(r);
}

static void test_write_answer(void)
{
    struct proxy_req *r = req_new();
    struct proxy_answer a = {.text = "whole answer", .stop = PROXY_STOP_END};
    cJSON *j, *it;
    char *s;

    REQUIRE(r);
    r->usage.input = 5;
    r->usage.output = 2;
    r->usage.cached = 1;
    snprintf(a.id, sizeof(a.id), "msg_from_anthropic");
    snprintf(a.model, sizeof(a.model), "claude-x");
    s = rsp->write_answer(r, &a);
    REQUIRE(s);
    j = cJSON_Parse(s);
    free(s);
    REQUIRE(j);
    /* the id is the gateway's (a response id), the model the one that answered */
    CHECK_EQ_STR(str_at(j, "id"), "resp_0123abcd");
    CHECK_EQ_STR(str_at(j, "model"), "claude-x");
    CHECK_EQ_STR(str_at(j, "status"), "completed");
    it = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "output"), 0);
    CHECK_EQ_STR(str_at(it, "type"), "message");
    CHECK_EQ_STR(str_at(it, "role"), "assistant");
    CHECK_EQ_STR(str_at(cJSON_GetArrayItem(cJSON_GetObjectItem(it, "content"), 0), "type"),
                 "output_text");
    CHECK_EQ_STR(str_at(cJSON_GetArrayItem(cJSON_GetObjectItem(it, "content"), 0), "text"),
                 "whole answer");
    CHECK(num_at(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "usage"), "input_tokens_details"),
                 "cached_tokens") == 1);
    cJSON_Delete(j);
    a.stop = PROXY_STOP_LENGTH;
    s = rsp->write_answer(r, &a);
    j = s ? cJSON_Parse(s) : NULL;
    free(s);
    CHECK_EQ_STR(str_at(j, "status"), "incomplete");
    cJSON_Delete(j);
    req_free(r);
}

/* ---- a provider's stream relayed, placeholders restored ---- */

/* feed one provider event (type and members as JSON text without braces) to relay_event */
static void feed(struct proxy_req *r, long *seq, const char *type, const char *members)
{
    char data[4096], raw[4200];
    int dn = snprintf(data, sizeof(data), "{\"type\":\"%s\",\"sequence_number\":%ld%s%s}", type,
                      (*seq)++, members && *members ? "," : "", members ? members : "");
    int rn = snprintf(raw, sizeof(raw), "event: %s\ndata: %s\n\n", type, data);

    CHECK(rsp->relay_event(r, raw, (size_t)rn, type, strlen(type), data, (size_t)dn) == 0);
}

/* a delta per character of text, `at` the members that place it */
static void feed_chars(struct proxy_req *r, long *seq, const char *type, const char *at,
                       const char *text)
{
    char m[512];

    for (const char *p = text; *p; p++) {
        snprintf(m, sizeof(m), "%s,\"delta\":\"%c\"", at, *p);
        feed(r, seq, type, m);
    }
}

static void test_relay_restores_everywhere(void)
{
    struct proxy_req *r = req_new();
    char body[256], ph[64], said[128], args[128], m[2048], want[128], want_args[128];
    const char *p, *q;
    struct ev e[512];
    const cJSON *o, *resp, *out;
    long seq = 0;
    size_t n;

    REQUIRE(r);
    snprintf(body, sizeof(body), "{\"model\":\"gpt\",\"input\":\"write to %s\",\"stream\":true}",
             EMAIL);
    REQUIRE(proxy_decide_body(cfg, pol, POLICY_API_OPENAI, PROXY_BODY_RESPONSE, body, strlen(body),
                              "k", "t", &r->d) == 0);
    REQUIRE(r->d.outbound && (p = strstr(r->d.outbound, "[EMAIL_1_")) != NULL);
    CHECK(strstr(r->d.outbound, "stream_options") == NULL);
    CHECK(strstr(r->d.outbound, "\"gpt-5-2025\"") != NULL);
    q = strchr(p, ']');
    REQUIRE(q && (size_t)(q - p + 1) < sizeof(ph));
    snprintf(ph, sizeof(ph), "%.*s", (int)(q - p + 1), p);
    r->up_wire = rsp;
    snprintf(said, sizeof(said), "I think %s!", ph);             /* the model's words */
    snprintf(want, sizeof(want), "I think %s!", EMAIL);          /* restored */
    snprintf(args, sizeof(args), "{\\\"to\\\":\\\"%s\\\"}", ph); /* JSON in a JSON string */
    snprintf(want_args, sizeof(want_args), "{\"to\":\"%s\"}", EMAIL);

    feed(r, &seq, "response.created",
         "\"response\":{\"id\":\"resp_up\",\"object\":\"response\",\"created_at\":1,\"status\":"
         "\"in_progress\",\"model\":\"gpt-5-2025\",\"output\":[]}");
    /* output 0: reasoning, its summary streamed */
    feed(r, &seq, "response.output_item.added",
         "\"output_index\":0,\"item\":{\"id\":\"rs_1\",\"type\":\"reasoning\",\"summary\":[]}");
    feed_chars(r, &seq, "response.reasoning_summary_text.delta",
               "\"item_id\":\"rs_1\",\"output_index\":0,\"summary_index\":0", said);
    snprintf(m, sizeof(m),
             "\"item_id\":\"rs_1\",\"output_index\":0,\"summary_index\":0,"
             "\"text\":\"%s\"",
             said);
    feed(r, &seq, "response.reasoning_summary_text.done", m);
    snprintf(m, sizeof(m),
             "\"item_id\":\"rs_1\",\"output_index\":0,\"summary_index\":0,"
             "\"part\":{\"type\":\"summary_text\",\"text\":\"%s\"}",
             said);
    feed(r, &seq, "response.reasoning_summary_part.done", m);
    /* output 1: a message whose text ends in a placeholder cut short (held, then added) */
    feed(r, &seq, "response.output_item.added",
         "\"output_index\":1,\"item\":{\"id\":\"msg_1\",\"type\":\"message\",\"status\":"
         "\"in_progress\",\"role\":\"assistant\",\"content\":[]}");
    feed(r, &seq, "response.content_part.added",
         "\"item_id\":\"msg_1\",\"output_index\":1,\"content_index\":0,\"part\":{\"type\":"
         "\"output_text\",\"text\":\"\"}");
    feed_chars(r, &seq, "response.output_text.delta",
               "\"item_id\":\"msg_1\",\"output_index\":1,\"content_index\":0", said);
    feed_chars(r, &seq, "response.output_text.delta",
               "\"item_id\":\"msg_1\",\"output_index\":1,\"content_index\":0", " [EMAIL_");
    snprintf(m, sizeof(m),
             "\"item_id\":\"msg_1\",\"output_index\":1,\"content_index\":0,"
             "\"text\":\"%s [EMAIL_\"",
             said);
    feed(r, &seq, "response.output_text.done", m);
    snprintf(m, sizeof(m),
             "\"item_id\":\"msg_1\",\"output_index\":1,\"content_index\":0,"
             "\"part\":{\"type\":\"output_text\",\"text\":\"%s [EMAIL_\"}",
             said);
    feed(r, &seq, "response.content_part.done", m);
    snprintf(m, sizeof(m),
             "\"output_index\":1,\"item\":{\"id\":\"msg_1\",\"type\":\"message\","
             "\"status\":\"completed\",\"role\":\"assistant\",\"content\":[{\"type\":"
             "\"output_text\",\"text\":\"%s [EMAIL_\"}]}",
             said);
    feed(r, &seq, "response.output_item.done", m);
    /* output 2: a function call, its arguments streamed (escaped quotes one per event) */
    feed(r, &seq, "response.output_item.added",
         "\"output_index\":2,\"item\":{\"id\":\"fc_1\",\"type\":\"function_call\",\"arguments\":"
         "\"\",\"call_id\":\"c1\",\"name\":\"send\"}");
    {
        const char *a = args;
        while (*a) {
            int k = a[0] == '\\' ? 2 : 1;
            snprintf(m, sizeof(m), "\"item_id\":\"fc_1\",\"output_index\":2,\"delta\":\"%.*s\"", k,
                     a);
            feed(r, &seq, "response.function_call_arguments.delta", m);
            a += k;
        }
    }
    snprintf(m, sizeof(m), "\"item_id\":\"fc_1\",\"output_index\":2,\"arguments\":\"%s\"", args);
    feed(r, &seq, "response.function_call_arguments.done", m);
    snprintf(m, sizeof(m),
             "\"output_index\":2,\"item\":{\"id\":\"fc_1\",\"type\":\"function_call\","
             "\"arguments\":\"%s\",\"call_id\":\"c1\",\"name\":\"send\"}",
             args);
    feed(r, &seq, "response.output_item.done", m);
    snprintf(
        m, sizeof(m),
        "\"response\":{\"id\":\"resp_up\",\"object\":\"response\","
        "\"created_at\":1,\"status\":\"completed\",\"model\":\"gpt-5-2025\",\"output\":["
        "{\"type\":\"reasoning\",\"summary\":[{\"type\":\"summary_text\",\"text\":\"%s\"}]},"
        "{\"type\":\"message\",\"content\":[{\"type\":\"output_text\",\"text\":\"%s [EMAIL_\"}]},"
        "{\"type\":\"function_call\",\"arguments\":\"%s\"}],\"usage\":{\"input_tokens\":40,"
        "\"input_tokens_details\":{\"cached_tokens\":8},\"output_tokens\":12,"
        "\"output_tokens_details\":{\"reasoning_tokens\":5},\"total_tokens\":52}}",
        said, said, args);
    feed(r, &seq, "response.completed", m);
    CHECK(r->stream_state == PROXY_STREAM_CLOSED);
    CHECK(r->usage.input == 40 && r->usage.cached == 8 && r->usage.output == 12);

    n = client_events(r, e, 512);
    CHECK((long)n == seq + 1); /* one event added: the held rest of the message's text */
    CHECK(well_numbered(e, n));
    {
        size_t len = evbuffer_get_length(r->client_bytes);
        char *all = malloc(len + 1);
        REQUIRE(all);
        evbuffer_copyout(r->client_bytes, all, len);
        all[len] = '\0';
        CHECK(strstr(all, ph) == NULL); /* no placeholder anywhere the client reads */
        free(all);
    }
    {
        char *s = joined(e, n, "response.reasoning_summary_text.delta", 0);
        CHECK_EQ_STR(s, want);
        free(s);
        CHECK_EQ_STR(str_at(first(e, n, "response.reasoning_summary_text.done"), "text"), want);
        o = cJSON_GetObjectItem(first(e, n, "response.reasoning_summary_part.done"), "part");
        CHECK_EQ_STR(str_at(o, "text"), want);
    }
    {
        char w2[300];
        char *s = joined(e, n, "response.output_text.delta", 1);
        snprintf(w2, sizeof(w2), "%s [EMAIL_", want);
        CHECK_EQ_STR(s, w2); /* the deltas add up to the done text */
        free(s);
        CHECK_EQ_STR(str_at(first(e, n, "response.output_text.done"), "text"), w2);
        o = cJSON_GetObjectItem(first(e, n, "response.content_part.done"), "part");
        CHECK_EQ_STR(str_at(o, "text"), w2);
    }
    {
        char *s = joined(e, n, "response.function_call_arguments.delta", 2);
        CHECK_EQ_STR(s, want_args);
        free(s);
        CHECK_EQ_STR(str_at(first(e, n, "response.function_call_arguments.done"), "arguments"),
                     want_args);
    }
    resp = cJSON_GetObjectItem(e[n - 1].j, "response");
    out = cJSON_GetObjectItem(resp, "output");
    CHECK_EQ_STR(e[n - 1].name, "response.completed");
    CHECK_EQ_STR(
        str_at(cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetArrayItem(out, 0), "summary"), 0),
               "text"),
        want);
    CHECK_EQ_STR(str_at(cJSON_GetArrayItem(out, 2), "arguments"), want_args);
    CHECK_EQ_STR(str_at(resp, "id"), "resp_up"); /* the provider's, relayed */
    events_free(e, n);

    /* a whole answer: every text of its output restored */
    {
        char whole[1024];
        cJSON *j;
        snprintf(whole, sizeof(whole),
                 "{\"id\":\"resp_w\",\"output\":[{\"type\":\"message\",\"content\":[{\"type\":"
                 "\"output_text\",\"text\":\"%s\"}]},{\"type\":\"function_call\",\"arguments\":"
                 "\"%s\"}],\"usage\":{\"input_tokens\":1,\"output_tokens\":1}}",
                 said, args);
        j = cJSON_Parse(whole);
        REQUIRE(j);
        rsp->restore_answer(r, j);
        out = cJSON_GetObjectItem(j, "output");
        CHECK_EQ_STR(str_at(cJSON_GetArrayItem(
                                cJSON_GetObjectItem(cJSON_GetArrayItem(out, 0), "content"), 0),
                            "text"),
                     want);
        CHECK_EQ_STR(str_at(cJSON_GetArrayItem(out, 1), "arguments"), want_args);
        cJSON_Delete(j);
    }
    req_free(r);
}

/* nothing to restore: relayed byte for byte, usage still read from the last event */
static void test_relay_plain(void)
{
    struct proxy_req *r = req_new();
    long seq = 0;
    size_t len;
    char *all;

    REQUIRE(r);
    r->up_wire = rsp;
    feed(r, &seq, "response.created",
         "\"response\":{\"id\":\"resp_p\",\"object\":\"response\",\"model\":\"m\",\"output\":[]}");
    feed(r, &seq, "response.output_text.delta",
         "\"item_id\":\"m\",\"output_index\":0,\"content_index\":0,\"delta\":\"hi [X_1_ab]\"");
    feed(r, &seq, "response.completed",
         "\"response\":{\"id\":\"resp_p\",\"usage\":{\"input_tokens\":7,\"output_tokens\":2,"
         "\"input_tokens_details\":{\"cached_tokens\":3}}}");
    CHECK(r->usage.input == 7 && r->usage.output == 2 && r->usage.cached == 3);
    CHECK(r->wire_seq == 3 && r->stream_state == PROXY_STREAM_CLOSED);
    CHECK_EQ_STR(r->tr_id, "resp_p");
    len = evbuffer_get_length(r->client_bytes);
    all = malloc(len + 1);
    REQUIRE(all);
    evbuffer_copyout(r->client_bytes, all, len);
    all[len] = '\0';
    CHECK(strstr(all, "event: response.output_text.delta\ndata: {\"type\":\"response.output_text."
                      "delta\",\"sequence_number\":1,\"item_id\":\"m\"") != NULL);
    free(all);
    /* the gateway's failure after it: numbered on, the provider's response id */
    rsp->stream_fail(r, 502, "gone");
    {
        struct ev e[8];
        size_t n = client_events(r, e, 8);
        CHECK(n == 4 && strcmp(e[3].name, "response.failed") == 0 &&
              num_at(e[3].j, "sequence_number") == 3);
        CHECK_EQ_STR(str_at(cJSON_GetObjectItem(e[n - 1].j, "response"), "id"), "resp_p");
        events_free(e, n);
    }
    req_free(r);
}

/* ---- property: any split of any text, in any text-carrying event kind ---- */

static unsigned long long prop_state = 0x9e3779b97f4a7c15ULL;

static unsigned prop_rand(unsigned n) /* xorshift64*: the same draws on every run */
{
    prop_state ^= prop_state >> 12;
    prop_state ^= prop_state << 25;
    prop_state ^= prop_state >> 27;
    return (unsigned)((prop_state * 0x2545f4914f6cdd1dULL) >> 33) % n;
}

/* one provider event from a cJSON object (consumed): type and the next sequence number
 * set, framed as SSE and relayed */
static void feed_obj(struct proxy_req *r, long *seq, const char *type, cJSON *e)
{
    char *data, *raw;
    size_t dn, rn;

    cJSON_AddStringToObject(e, "type", type);
    cJSON_AddNumberToObject(e, "sequence_number", (double)(*seq)++);
    data = cJSON_PrintUnformatted(e);
    REQUIRE(data);
    dn = strlen(data);
    raw = malloc(dn + strlen(type) + 32);
    REQUIRE(raw);
    rn = (size_t)sprintf(raw, "event: %s\ndata: %s\n\n", type, data);
    CHECK(rsp->relay_event(r, raw, rn, type, strlen(type), data, dn) == 0);
    free(raw);
    free(data);
    cJSON_Delete(e);
}

/* the placeholders of a decision's outbound body, in order (at most 2) */
static int placeholders(const char *out, char ph[2][64])
{
    int n = 0;

    for (const char *p = out; n < 2 && (p = strstr(p, "[EMAIL_")) != NULL; p++) {
        const char *q = strchr(p, ']');
        if (!q || (size_t)(q - p + 1) >= 64)
            break;
        snprintf(ph[n], 64, "%.*s", (int)(q - p + 1), p);
        n++;
    }
    return n;
}

static void test_relay_property(void)
{
    static const char *const emails[2] = {"ann.lee@example.com", "bo@example.org"};
    static const char *const kinds[3][4] = {
        /* delta event, done event, its text member, index member */
        {"response.output_text.delta", "response.output_text.done", "text", "content_index"},
        {"response.function_call_arguments.delta", "response.function_call_arguments.done",
         "arguments", NULL},
        {"response.reasoning_summary_text.delta", "response.reasoning_summary_text.done", "text",
         "summary_index"},
    };
    int trials = 300, bad = 0;

    for (int t = 0; t < trials; t++) {
        struct proxy_req *r = req_new();
        char body[512], ph[2][64], said[1024] = "", want[1024] = "";
        size_t k = prop_rand(3), len, at = 0, n;
        long seq = 0;
        struct ev *e = calloc(600, sizeof(*e));
        cJSON *o;

        REQUIRE(r && e);
        snprintf(body, sizeof(body),
                 "{\"model\":\"gpt\",\"input\":\"to %s and %s\",\"stream\":true}", emails[0],
                 emails[1]);
        REQUIRE(proxy_decide_body(cfg, pol, POLICY_API_OPENAI, PROXY_BODY_RESPONSE, body,
                                  strlen(body), "k", "t", &r->d) == 0);
        REQUIRE(placeholders(r->d.outbound, ph) == 2);
        r->up_wire = rsp;
        /* the model's text: words, both placeholders, and prefixes of placeholders that
         * are not one (cut short, or a '[' alone), in any order */
        for (int piece = 0, np = 1 + (int)prop_rand(8); piece < np; piece++) {
            const char *s, *w;
            char cut[64];
            switch (prop_rand(5)) {
            case 0:
            case 1:
                s = ph[prop_rand(2)];
                w = strcmp(s, ph[0]) == 0 ? emails[0] : emails[1];
                break;
            case 2:
                snprintf(cut, sizeof(cut), "%.*s", 1 + (int)prop_rand((unsigned)strlen(ph[0]) - 1),
                         ph[prop_rand(2)]);
                s = w = cut;
                break;
            case 3:
                s = w = " [x] ";
                break;
            default:
                s = w = prop_rand(2) ? " word" : ", and";
                break;
            }
            strncat(said, s, sizeof(said) - strlen(said) - 1);
            strncat(want, w, sizeof(want) - strlen(want) - 1);
        }
        /* a text ending in a placeholder's prefix is what it says (nothing to restore) */
        o = cJSON_CreateObject();
        cJSON_AddItemToObject(o, "response",
                              cJSON_Parse("{\"id\":\"resp_p\",\"object\":"
                                          "\"response\",\"output\":[]}"));
        feed_obj(r, &seq, "response.created", o);
        len = strlen(said);
        while (at < len) {
            size_t step = 1 + prop_rand(6);
            char piece[16];
            if (step > len - at)
                step = len - at;
            snprintf(piece, sizeof(piece), "%.*s", (int)step, said + at);
            o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "item_id", "it_1");
            cJSON_AddNumberToObject(o, "output_index", 0);
            if (kinds[k][3])
                cJSON_AddNumberToObject(o, kinds[k][3], 0);
            cJSON_AddStringToObject(o, "delta", piece);
            feed_obj(r, &seq, kinds[k][0], o);
            at += step;
        }
        o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "item_id", "it_1");
        cJSON_AddNumberToObject(o, "output_index", 0);
        if (kinds[k][3])
            cJSON_AddNumberToObject(o, kinds[k][3], 0);
        cJSON_AddStringToObject(o, kinds[k][2], said);
        feed_obj(r, &seq, kinds[k][1], o);
        o = cJSON_CreateObject();
        {
            cJSON *resp = cJSON_AddObjectToObject(o, "response"), *out, *it;
            cJSON_AddStringToObject(resp, "id", "resp_p");
            cJSON_AddStringToObject(resp, "object", "response");
            out = cJSON_AddArrayToObject(resp, "output");
            it = cJSON_CreateObject();
            cJSON_AddStringToObject(it, "type", "function_call");
            cJSON_AddStringToObject(it, "arguments", said);
            cJSON_AddItemToArray(out, it);
        }
        feed_obj(r, &seq, "response.completed", o);

        n = client_events(r, e, 600);
        {
            char *got = joined(e, n, kinds[k][0], 0);
            const cJSON *done = first(e, n, kinds[k][1]);
            const cJSON *fin = cJSON_GetArrayItem(
                cJSON_GetObjectItem(cJSON_GetObjectItem(e[n ? n - 1 : 0].j, "response"), "output"),
                0);
            int ok = n > 0 && well_numbered(e, n) && got && strcmp(got, want) == 0 &&
                     strcmp(str_at(done, kinds[k][2]), want) == 0 &&
                     strcmp(str_at(fin, "arguments"), want) == 0;
            if (!ok && bad++ < 3)
                fprintf(stderr, "  trial %d (%s): said \"%s\", want \"%s\", deltas \"%s\"\n", t,
                        kinds[k][0], said, want, got ? got : "?");
            free(got);
        }
        events_free(e, n);
        free(e);
        req_free(r);
    }
    CHECK_EQ_INT(bad, 0);
}

/* ---- decisions ---- */

static int decide(enum proxy_body kind, const char *body, struct proxy_decision *d)
{
    return proxy_decide_body(cfg, pol, POLICY_API_OPENAI, kind, body, strlen(body), "k", "t", d);
}

static int refused(enum proxy_body kind, const char *body, int status, const char *want)
{
    struct proxy_decision d;
    int ok = decide(kind, body, &d) == -1 && d.status == status && d.outbound == NULL &&
             (!want || strstr(d.error, want));

    if (!ok)
        fprintf(stderr, "  body %s: status %d, error \"%s\"\n", body, d.status, d.error);
    proxy_decision_deinit(&d);
    return ok;
}

static void test_decisions(void)
{
    const enum proxy_body R = PROXY_BODY_RESPONSE, K = PROXY_BODY_COMPACT;
    struct proxy_decision d;

    /* shapes */
    CHECK(refused(R, "{\"model\":\"gpt\",\"input\":7}", 400, "'input'"));
    CHECK(refused(R, "{\"model\":\"gpt\",\"input\":[\"x\"]}", 400, "input[0]"));
    CHECK(refused(R, "{\"model\":\"gpt\",\"input\":[{\"role\":\"user\",\"content\":[{}]}]}", 400,
                  "input[0].content[0]"));
    CHECK(refused(R, "{\"model\":\"gpt\",\"input\":[{\"role\":\"user\",\"content\":5}]}", 400,
                  "input[0].content"));
    CHECK(refused(R, "{\"model\":\"gpt\",\"input\":\"x\",\"instructions\":[]}", 400,
                  "'instructions'"));
    CHECK(refused(K, "{\"model\":\"gpt\",\"input\":\"x\",\"stream\":true}", 400, "compact"));
    /* scanned everywhere */
    CHECK(refused(R, "{\"model\":\"gpt\",\"instructions\":\"AKIAIOSFODNN7EXAMPLQ\"}", 403,
                  "no-secrets"));
    CHECK(refused(R,
                  "{\"model\":\"gpt\",\"input\":[{\"type\":\"function_call\",\"call_id\":\"c\","
                  "\"name\":\"f\",\"arguments\":\"{\\\"k\\\":\\\"AKIAIOSFODNN7EXAMPLQ\\\"}\"}]}",
                  403, "no-secrets"));
    CHECK(refused(R,
                  "{\"model\":\"gpt\",\"input\":[{\"type\":\"function_call_output\",\"call_id\":"
                  "\"c\",\"output\":\"AKIAIOSFODNN7EXAMPLQ\"}]}",
                  403, NULL));
    CHECK(refused(K,
                  "{\"model\":\"gpt\",\"input\":[{\"type\":\"reasoning\",\"summary\":[{"
                  "\"type\":\"summary_text\",\"text\":\"AKIAIOSFODNN7EXAMPLQ\"}]}]}",
                  403, NULL));
    /* the API's own names and enum values are grammar, not text; the same words as a
     * client's values are scanned (a keyword detector of those words here) */
    REQUIRE(decide(R,
                   "{\"model\":\"gpt\",\"previous_response_id\":null,\"input\":[{\"type\":"
                   "\"reasoning\",\"status\":\"in_progress\",\"summary\":[{\"type\":"
                   "\"summary_text\",\"text\":\"x\"}]},{\"type\":\"compaction_trigger\"}]}",
                   &d) == 0);
    CHECK(d.policy.n_findings == 0);
    proxy_decision_deinit(&d);
    CHECK(refused(R, "{\"model\":\"gpt\",\"input\":\"summary_text\"}", 403, "words"));
    CHECK(refused(R,
                  "{\"model\":\"gpt\",\"input\":\"x\",\"metadata\":{\"note\":"
                  "\"previous_response_id\"}}",
                  403, "words"));
    CHECK(refused(R,
                  "{\"model\":\"gpt\",\"input\":[{\"role\":\"user\",\"content\":"
                  "\"x\",\"in_progress\":1}]}",
                  403, "words"));
    /* a document's bytes cannot be scanned; an image is not text (recorded as unscanned) */
    CHECK(refused(R,
                  "{\"model\":\"gpt\",\"input\":[{\"role\":\"user\",\"content\":[{\"type\":"
                  "\"input_file\",\"filename\":\"a.pdf\",\"file_data\":\"data:application/pdf;"
                  "base64,JVBERi0=\"}]}]}",
                  400, "input_file"));
    REQUIRE(decide(R,
                   "{\"model\":\"gpt\",\"input\":[{\"role\":\"user\",\"content\":[{\"type\":"
                   "\"input_image\",\"image_url\":\"data:image/png;base64,iVBORw0KGgo=\"}]}]}",
                   &d) == 0);
    CHECK(d.policy.unscanned != 0);
    proxy_decision_deinit(&d);
    /* a finding in an input item names the item, as one in messages[] names the message */
    REQUIRE(decide(R,
                   "{\"model\":\"gpt\",\"instructions\":\"mail a.b@example.com\",\"input\":[{"
                   "\"role\":\"user\",\"content\":\"hi\"},{\"type\":\"function_call_output\","
                   "\"call_id\":\"c\",\"output\":\"c.d@example.com\"}]}",
                   &d) == 0);
    CHECK(d.policy.n_findings == 2 && d.policy.findings[0].message == -1 &&
          d.policy.findings[1].message == 1);
    proxy_decision_deinit(&d);
    /* local routes: what only a provider can honour */
    CHECK(refused(R, "{\"model\":\"small\",\"input\":\"x\",\"previous_response_id\":\"resp_1\"}",
                  400, "previous_response_id"));
    CHECK(refused(R, "{\"model\":\"small\",\"input\":\"x\",\"conversation\":\"conv_1\"}", 400,
                  "'conversation'"));
    CHECK(refused(R, "{\"model\":\"claude\",\"input\":\"x\",\"prompt\":{\"id\":\"pmpt_1\"}}", 400,
                  "'prompt'"));
    CHECK(
        refused(R, "{\"model\":\"small\",\"input\":\"x\",\"background\":true}", 400, "background"));
    CHECK(refused(R,
                  "{\"model\":\"small\",\"input\":\"x\",\"tools\":[{\"type\":\"function\","
                  "\"name\":\"f\"},{\"type\":\"file_search\"}]}",
                  400, "tools[1] ('file_search')"));
    CHECK(refused(K, "{\"model\":\"small\",\"input\":\"x\"}", 400, "compact"));
    CHECK(refused(K, "{\"model\":\"claude\",\"input\":\"x\"}", 400, "ant/claude"));
    REQUIRE(decide(R,
                   "{\"model\":\"small\",\"input\":\"x\",\"previous_response_id\":null,"
                   "\"background\":false,\"store\":true,\"tools\":[{\"type\":\"function\","
                   "\"name\":\"f\"}]}",
                   &d) == 0);
    CHECK(d.outbound == NULL && d.prov->type == CONFIG_PROVIDER_BUILTIN);
    proxy_decision_deinit(&d);
    /* to OpenAI: the body as sent, the model renamed, nothing added to a stream */
    REQUIRE(decide(R,
                   "{\"model\":\"gpt\",\"input\":\"x\",\"stream\":true,"
                   "\"previous_response_id\":\"resp_1\",\"tools\":[{\"type\":\"web_search\"}]}",
                   &d) == 0);
    CHECK(d.outbound && strcmp(d.outbound, "{\"model\":\"gpt-5-2025\",\"input\":\"x\",\"stream\":"
                                           "true,\"previous_response_id\":\"resp_1\",\"tools\":[{"
                                           "\"type\":\"web_search\"}]}") == 0);
    CHECK(d.outbound_flags == 0);
    proxy_decision_deinit(&d);
    /* to Anthropic: translated when text-only */
    REQUIRE(decide(R,
                   "{\"model\":\"claude\",\"instructions\":\"sys\",\"input\":[{\"role\":\"user\","
                   "\"content\":[{\"type\":\"input_text\",\"text\":\"hi\"}]}],"
                   "\"max_output_tokens\":20}",
                   &d) == 0);
    CHECK(d.outbound && strstr(d.outbound, "\"system\":\"sys\"") &&
          strstr(d.outbound, "\"max_tokens\":20") && strstr(d.outbound, "\"content\":\"hi\""));
    proxy_decision_deinit(&d);
    CHECK(refused(R,
                  "{\"model\":\"claude\",\"input\":\"x\",\"tools\":[{\"type\":\"function\","
                  "\"name\":\"f\"}]}",
                  400, "'tools'"));
    CHECK(refused(R,
                  "{\"model\":\"claude\",\"input\":[{\"type\":\"function_call_output\","
                  "\"call_id\":\"c\",\"output\":\"x\"}]}",
                  400, NULL));
}

int main(void)
{
    struct config_errors errs;

    memset(&errs, 0, sizeof(errs));
    if (config_load_text("t.yaml", yaml, strlen(yaml), NULL, &cfg, &errs) != 0) {
        char buf[2048];
        config_errors_format(&errs, buf, sizeof(buf));
        fprintf(stderr, "%s", buf);
        return 1;
    }
    memset(&errs, 0, sizeof(errs));
    if (policy_new(cfg, &pol, &errs) != 0) {
        char buf[2048];
        config_errors_format(&errs, buf, sizeof(buf));
        fprintf(stderr, "%s", buf);
        config_unref(cfg);
        return 1;
    }
    RUN(test_read_request);
    RUN(test_usage_and_answer);
    RUN(test_engine_stream);
    RUN(test_write_answer);
    RUN(test_relay_restores_everywhere);
    RUN(test_relay_plain);
    RUN(test_relay_property);
    RUN(test_decisions);
    policy_free(pol);
    config_unref(cfg);
    return harness_done();
}
