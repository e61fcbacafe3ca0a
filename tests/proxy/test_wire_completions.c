/* test_wire_completions.c -- the legacy Completions and Embeddings surfaces: their wire
 * formats (openai_completions.c, openai_embeddings.c: the engine's prompt, answers and
 * stream events, usage) and their decisions (proxy_decide_body: shapes, token arrays,
 * redaction of the body that leaves, the routes each may take). The parts that write to a
 * client connection are completions_test.py's. */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "proxy/decide.h"
#include "proxy/outbound.h"
#include "proxy/proxy_int.h"
#include "proxy/wire.h"

static const struct proxy_wire *const cmp = &proxy_wire_openai_completions;
static const struct proxy_wire *const emb = &proxy_wire_openai_embeddings;

static const char *yaml =
    "listen: [{address: \"127.0.0.1:1\"}]\n"
    "providers:\n"
    "  oai: {type: openai, base_url: \"http://127.0.0.1:2/v1\", api_key: k1}\n"
    "  ant: {type: anthropic, base_url: \"http://127.0.0.1:3\", api_key: k2}\n"
    "  local: {type: builtin, model: \"/nonexistent/m.gguf\"}\n"
    "models:\n"
    "  - {name: instruct, provider: oai, upstream_model: instruct-0914}\n"
    "  - {name: embed, provider: oai}\n"
    "  - {name: claude, provider: ant}\n"
    "  - {name: small, provider: local}\n"
    "rules:\n"
    "  - {name: no-secrets, if: {detected: [secrets]}, then: {action: block}}\n"
    "  - {name: iban-to-claude, if: {detected: [iban]}, then: {action: route, model: claude}}\n"
    "  - {name: mask-email, if: {detected: [email]}, then: {action: redact, detectors: [email]}}\n"
    "  - {name: default, then: {action: allow}}\n";

static struct config *cfg;
static struct policy *pol;

static const char *str_at(const cJSON *o, const char *k)
{
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, k));
}

static double num_at(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : -12345;
}

/* ---- the wire formats ---- */

static int read_req(const char *json, struct proxy_chat *c, char *err, size_t errlen)
{
    cJSON *t = cJSON_Parse(json);
    int rc;

    proxy_chat_init(c);
    err[0] = '\0';
    if (!t)
        return -2;
    rc = cmp->read_request(t, c, err, errlen);
    /* the chat borrows stop strings from the tree: check them before it goes */
    if (rc == 0 && c->n_stop)
        CHECK_EQ_STR(c->stop[0], "\n\n");
    cJSON_Delete(t);
    return rc;
}

static void test_completions_read_request(void)
{
    struct proxy_chat c;
    char err[256];

    CHECK(read_req("{\"prompt\":\"Once upon\",\"max_tokens\":7,\"temperature\":0.5,\"stop\":"
                   "\"\\n\\n\",\"stream\":true}",
                   &c, err, sizeof(err)) == 0);
    CHECK_EQ_INT(c.n, 1);
    CHECK_EQ_STR(c.msgs[0].text, "Once upon");
    CHECK(c.max_tokens == 7 && c.temperature == 0.5 && c.stream == 1 && c.n_stop == 1);
    proxy_chat_deinit(&c);
    /* an array of one prompt is that prompt */
    CHECK(read_req("{\"prompt\":[\"only\"]}", &c, err, sizeof(err)) == 0);
    CHECK(c.n == 1 && strcmp(c.msgs[0].text, "only") == 0 && c.max_tokens < 0);
    proxy_chat_deinit(&c);
    /* the engine answers one prompt, one choice */
    CHECK(read_req("{\"prompt\":[\"a\",\"b\"]}", &c, err, sizeof(err)) == -1);
    CHECK(strstr(err, "one prompt") != NULL);
    proxy_chat_deinit(&c);
    CHECK(read_req("{\"prompt\":\"a\",\"n\":2}", &c, err, sizeof(err)) == -1);
    CHECK(strstr(err, "'n'") != NULL);
    proxy_chat_deinit(&c);
    /* what it cannot do is refused, not ignored */
    CHECK(read_req("{\"prompt\":\"a\",\"suffix\":\"}\"}", &c, err, sizeof(err)) == -1);
    CHECK(strstr(err, "suffix") != NULL);
    proxy_chat_deinit(&c);
    CHECK(read_req("{\"prompt\":\"a\",\"echo\":true}", &c, err, sizeof(err)) == -1);
    proxy_chat_deinit(&c);
    CHECK(read_req("{\"prompt\":\"a\",\"logprobs\":2}", &c, err, sizeof(err)) == -1);
    proxy_chat_deinit(&c);
    CHECK(read_req("{\"prompt\":\"a\",\"best_of\":3}", &c, err, sizeof(err)) == -1);
    proxy_chat_deinit(&c);
    /* their neutral values are fine */
    CHECK(read_req("{\"prompt\":\"a\",\"suffix\":\"\",\"echo\":false,\"logprobs\":null,"
                   "\"best_of\":1,\"n\":1}",
                   &c, err, sizeof(err)) == 0);
    proxy_chat_deinit(&c);
    /* no translation into either format */
    CHECK(cmp->build_request == NULL && emb->build_request == NULL);
    {
        cJSON *in =
            cJSON_Parse("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}");
        char *out = NULL;
        size_t out_len = 0;
        int flags = 0;
        CHECK(proxy_wire_translate_request(&proxy_wire_openai_chat, cmp, NULL, in, &out, &out_len,
                                           &flags, err, sizeof(err)) == -1);
        CHECK(out == NULL && strstr(err, "cannot be translated into the") != NULL);
        cJSON_Delete(in);
    }
    CHECK(emb->read_request(NULL, &c, err, sizeof(err)) == -1);
}

static void test_completions_answers(void)
{
    struct proxy_req *r = calloc(1, sizeof(*r));
    struct proxy_answer a;
    struct proxy_usage u = {0};
    struct proxy_piece p;
    cJSON *j, *c;
    char *s;
    const char *ev;

    REQUIRE(r);
    j = cJSON_Parse("{\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"model\":\"m\","
                    "\"choices\":[{\"text\":\"hello\",\"index\":0,\"logprobs\":null,"
                    "\"finish_reason\":\"length\"}],\"usage\":{\"prompt_tokens\":5,"
                    "\"completion_tokens\":2,\"total_tokens\":7}}");
    REQUIRE(j);
    memset(&a, 0, sizeof(a));
    CHECK(cmp->read_answer(j, &a, &u) == 0);
    CHECK_EQ_STR(a.text, "hello");
    CHECK_EQ_INT(a.stop, PROXY_STOP_LENGTH);
    CHECK_EQ_STR(a.id, "cmpl-1");
    CHECK(u.seen && u.input == 5 && u.output == 2);
    free(a.text);
    cJSON_Delete(j);

    ev = "{\"id\":\"cmpl-2\",\"object\":\"text_completion\",\"choices\":[{\"text\":\"Hi\","
         "\"index\":0,\"finish_reason\":null}]}";
    j = cJSON_Parse(ev);
    cmp->read_event(r, "", 0, ev, strlen(ev), j, &p);
    CHECK(p.open && p.text && strcmp(p.text, "Hi") == 0 && !p.has_stop);
    cJSON_Delete(j);
    cmp->read_event(r, "", 0, "[DONE]", 6, NULL, &p);
    CHECK(p.end);

    /* the engine's answer: a text_completion with usage */
    snprintf(r->id, sizeof(r->id), "req-1");
    r->usage.input = 3;
    r->usage.output = 4;
    memset(&a, 0, sizeof(a));
    a.text = "the rest";
    a.stop = PROXY_STOP_END;
    snprintf(a.id, sizeof(a.id), "cmpl-req-1");
    snprintf(a.model, sizeof(a.model), "small");
    s = cmp->write_answer(r, &a);
    REQUIRE(s);
    j = cJSON_Parse(s);
    free(s);
    REQUIRE(j);
    CHECK_EQ_STR(str_at(j, "object"), "text_completion");
    CHECK_EQ_STR(str_at(j, "id"), "cmpl-req-1");
    CHECK_EQ_STR(str_at(j, "model"), "small");
    c = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 0);
    CHECK_EQ_STR(str_at(c, "text"), "the rest");
    CHECK_EQ_STR(str_at(c, "finish_reason"), "stop");
    CHECK(num_at(c, "index") == 0 && cJSON_IsNull(cJSON_GetObjectItem(c, "logprobs")));
    CHECK(num_at(cJSON_GetObjectItem(j, "usage"), "total_tokens") == 7);
    cJSON_Delete(j);
    CHECK_EQ_STR(cmp->up_path, "/completions");
    CHECK_EQ_STR(cmp->id_prefix, "cmpl-");
    free(r);
}

static void test_embeddings_usage(void)
{
    struct proxy_usage u = {0};
    cJSON *j = cJSON_Parse("{\"prompt_tokens\":9,\"total_tokens\":9}");

    emb->read_usage(&u, j);
    CHECK(u.seen && u.input == 9 && u.output == 0);
    cJSON_Delete(j);
    CHECK(emb->restore_answer == NULL); /* vectors: relayed as received */
    CHECK_EQ_STR(emb->up_path, "/embeddings");
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

static void test_shapes(void)
{
    const enum proxy_body C = PROXY_BODY_COMPLETION, E = PROXY_BODY_EMBEDDING;

    CHECK(refused(C, "{\"model\":\"instruct\"}", 400, "'prompt'"));
    CHECK(refused(C, "{\"model\":\"instruct\",\"prompt\":[]}", 400, "'prompt'"));
    CHECK(refused(C, "{\"model\":\"instruct\",\"prompt\":[1,2,3]}", 400, "tokens"));
    CHECK(refused(C, "{\"model\":\"instruct\",\"prompt\":[[1],[2]]}", 400, "tokens"));
    CHECK(refused(C, "{\"model\":\"instruct\",\"prompt\":[\"a\",null]}", 400, "prompt[1]"));
    CHECK(refused(C, "{\"model\":\"instruct\",\"prompt\":\"a\",\"stream\":1}", 400, "stream"));
    CHECK(refused(E, "{\"model\":\"embed\",\"input\":[5,6]}", 400, "tokens"));
    CHECK(refused(E, "{\"model\":\"embed\",\"input\":{}}", 400, "'input'"));
    CHECK(refused(E, "{\"model\":\"embed\",\"input\":\"a\",\"stream\":true}", 400, "stream"));
    /* a chat body is not a completion: no `messages` needed, `prompt` is */
    CHECK(refused(C, "{\"model\":\"instruct\",\"messages\":[]}", 400, "'prompt'"));
    CHECK(refused(PROXY_BODY_CHAT, "{\"model\":\"instruct\",\"prompt\":\"a\"}", 400, "'messages'"));
}

static void test_policy_and_routes(void)
{
    const enum proxy_body C = PROXY_BODY_COMPLETION, E = PROXY_BODY_EMBEDDING;
    struct proxy_decision d;

    /* scanned everywhere: the prompt array, and members beside it */
    CHECK(refused(C, "{\"model\":\"instruct\",\"prompt\":[\"ok\",\"AKIAIOSFODNN7EXAMPLQ\"]}", 403,
                  "no-secrets"));
    CHECK(refused(C,
                  "{\"model\":\"instruct\",\"prompt\":\"ok\",\"suffix\":\"AKIAIOSFODNN7EXAMPLQ\"}",
                  403, "no-secrets"));
    CHECK(refused(E, "{\"model\":\"embed\",\"input\":\"AKIAIOSFODNN7EXAMPLQ\"}", 403, NULL));
    /* the redacted text is what leaves; the model renamed; usage asked for a stream */
    REQUIRE(decide(E, "{\"model\":\"embed\",\"input\":[\"mail a.b@example.com\"]}", &d) == 0);
    CHECK(d.outbound && strstr(d.outbound, "a.b@example.com") == NULL &&
          strstr(d.outbound, "[EMAIL_1_") != NULL);
    proxy_decision_deinit(&d);
    REQUIRE(decide(C, "{\"model\":\"instruct\",\"prompt\":\"hi\",\"stream\":true}", &d) == 0);
    CHECK(d.stream && d.outbound && strstr(d.outbound, "\"instruct-0914\"") &&
          strstr(d.outbound, "\"include_usage\":true"));
    CHECK(d.outbound_flags & PROXY_OUTBOUND_ADDED_USAGE);
    proxy_decision_deinit(&d);
    /* no Anthropic counterpart, and the engine makes no embeddings */
    CHECK(refused(C, "{\"model\":\"claude\",\"prompt\":\"hi\"}", 400, "ant/claude"));
    CHECK(refused(E, "{\"model\":\"embed\",\"input\":\"DE89370400440532013000\"}", 400,
                  "ant/claude"));
    CHECK(refused(E, "{\"model\":\"small\",\"input\":\"hi\"}", 400, "cannot produce embeddings"));
    /* a completion may stay local: nothing leaves */
    REQUIRE(decide(C, "{\"model\":\"small\",\"prompt\":\"hi\"}", &d) == 0);
    CHECK(d.outbound == NULL && d.prov->type == CONFIG_PROVIDER_BUILTIN);
    proxy_decision_deinit(&d);
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
    RUN(test_completions_read_request);
    RUN(test_completions_answers);
    RUN(test_embeddings_usage);
    RUN(test_shapes);
    RUN(test_policy_and_routes);
    policy_free(pol);
    config_unref(cfg);
    return harness_done();
}
