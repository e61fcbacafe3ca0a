/* test_outbound.c -- the exact body that leaves: splices, usage request, translation. */
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "harness.h"
#include "proxy/outbound.h"
#include "proxy/proxy_int.h"

static const char *yaml =
    "listen: [{address: \"127.0.0.1:1\"}]\n"
    "providers:\n"
    "  oai: {type: openai, base_url: \"http://127.0.0.1:2/v1\", api_key: k1}\n"
    "  ant: {type: anthropic, base_url: \"http://127.0.0.1:3\", api_key: k2}\n"
    "models:\n"
    "  - {name: same, provider: oai}\n"
    "  - {name: renamed, provider: oai, upstream_model: gpt-4o-2024-08-06}\n"
    "  - {name: claude, provider: ant, upstream_model: claude-x}\n"
    "rules:\n"
    "  - {name: all, then: {action: allow}}\n";

static struct config *load(void)
{
    struct config *cfg = NULL;
    struct config_errors errs;

    memset(&errs, 0, sizeof(errs));
    if (config_load_text("t.yaml", yaml, strlen(yaml), NULL, &cfg, &errs) != 0) {
        char buf[2048];
        config_errors_format(&errs, buf, sizeof(buf));
        fprintf(stderr, "%s", buf);
        return NULL;
    }
    return cfg;
}

static int build(const struct config *cfg, enum policy_api api, const char *model, const char *body,
                 char **out, size_t *out_len, int *flags)
{
    struct policy_decision d;
    struct json_doc doc = {0};
    char err[256];
    int rc;

    memset(&d, 0, sizeof(d));
    d.verdict = POLICY_ALLOW;
    d.model = model;
    rc = json_parse(&doc, body, strlen(body), err, sizeof(err));
    if (rc == 0)
        rc = proxy_outbound_build(cfg, api, &doc, &d, out, out_len, flags, err, sizeof(err));
    if (rc < 0)
        fprintf(stderr, "  outbound: %s\n", err);
    json_doc_deinit(&doc);
    return rc;
}

static void test_unchanged_body_is_byte_identical(void)
{
    struct config *cfg = load();
    const char *body =
        "{ \"model\" : \"same\",\n  \"messages\":[{\"role\":\"user\",\"content\":\"h\\u00e9\"}],"
        "\"temperature\":0.70000}";
    char *out = NULL;
    size_t n = 0;
    int flags = -1;

    REQUIRE(cfg);
    CHECK(build(cfg, POLICY_API_OPENAI, "same", body, &out, &n, &flags) == 0);
    CHECK(out && n == strlen(body) && memcmp(out, body, n) == 0);
    CHECK_EQ_INT(flags, 0);
    free(out);
    config_unref(cfg);
}

static void test_model_renamed_rest_untouched(void)
{
    struct config *cfg = load();
    const char *body = "{\"messages\":[{\"role\":\"user\",\"content\":\"model\"}], "
                       "\"model\":\"renamed\",\"x\":1.50}";
    const char *want = "{\"messages\":[{\"role\":\"user\",\"content\":\"model\"}], "
                       "\"model\":\"gpt-4o-2024-08-06\",\"x\":1.50}";
    char *out = NULL;
    size_t n = 0;

    REQUIRE(cfg);
    CHECK(build(cfg, POLICY_API_OPENAI, "renamed", body, &out, &n, NULL) == 0);
    CHECK_EQ_STR(out, want);
    CHECK_EQ_INT(n, strlen(want));
    free(out);
    config_unref(cfg);
}

static void test_stream_asks_for_usage(void)
{
    struct config *cfg = load();
    const char *body = "{\"model\":\"same\",\"stream\":true,\"messages\":[]}";
    const char *body2 = "{\"model\":\"same\",\"stream\":true,\"stream_options\":{\"include_usage\":"
                        "true},\"messages\":[]}";
    char *out = NULL;
    size_t n = 0;
    int flags = 0;

    REQUIRE(cfg);
    CHECK(build(cfg, POLICY_API_OPENAI, "same", body, &out, &n, &flags) == 0);
    CHECK_EQ_STR(out, "{\"stream_options\":{\"include_usage\":true},\"model\":\"same\",\"stream\":"
                      "true,\"messages\":[]}");
    CHECK(flags & PROXY_OUTBOUND_ADDED_USAGE);
    free(out);
    /* the client asked itself: nothing added, nothing to strip */
    flags = 0;
    CHECK(build(cfg, POLICY_API_OPENAI, "same", body2, &out, &n, &flags) == 0);
    CHECK_EQ_STR(out, body2);
    CHECK_EQ_INT(flags, 0);
    free(out);
    config_unref(cfg);
}

static void test_block_sends_nothing(void)
{
    struct config *cfg = load();
    struct policy_decision d;
    char *out = (char *)1;
    size_t n = 9;
    char err[64];

    struct json_doc doc = {0};

    REQUIRE(cfg);
    REQUIRE(json_parse(&doc, "{}", 2, err, sizeof(err)) == 0);
    memset(&d, 0, sizeof(d));
    d.verdict = POLICY_BLOCK;
    CHECK(proxy_outbound_build(cfg, POLICY_API_OPENAI, &doc, &d, &out, &n, NULL, err,
                               sizeof(err)) == 0);
    CHECK(out == NULL && n == 0);
    json_doc_deinit(&doc);
    config_unref(cfg);
}

static void test_openai_to_anthropic(void)
{
    struct config *cfg = load();
    const char *body = "{\"model\":\"claude\",\"max_tokens\":50,\"stop\":\"END\",\"messages\":["
                       "{\"role\":\"system\",\"content\":\"sys\"},"
                       "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},{"
                       "\"type\":\"text\",\"text\":\"b\"}]}]}";
    char *out = NULL;
    size_t n = 0;
    cJSON *j;

    REQUIRE(cfg);
    CHECK(build(cfg, POLICY_API_OPENAI, "claude", body, &out, &n, NULL) == 0);
    j = cJSON_Parse(out);
    REQUIRE(j);
    CHECK_EQ_STR(cJSON_GetObjectItem(j, "model")->valuestring, "claude-x");
    CHECK_EQ_STR(cJSON_GetObjectItem(j, "system")->valuestring, "sys");
    CHECK_EQ_INT(cJSON_GetObjectItem(j, "max_tokens")->valueint, 50);
    CHECK_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItem(j, "messages")), 1);
    CHECK_EQ_STR(
        cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "messages"), 0), "content")
            ->valuestring,
        "ab");
    CHECK_EQ_STR(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "stop_sequences"), 0)->valuestring,
                 "END");
    cJSON_Delete(j);
    free(out);
    config_unref(cfg);
}

static void test_anthropic_to_openai_stream(void)
{
    struct config *cfg = load();
    const char *body = "{\"model\":\"same\",\"max_tokens\":9,\"stream\":true,\"system\":\"s\","
                       "\"messages\":[{\"role\":\"user\",\"content\":\"q\"}]}";
    char *out = NULL;
    size_t n = 0;
    int flags = 0;
    cJSON *j, *m;

    REQUIRE(cfg);
    CHECK(build(cfg, POLICY_API_ANTHROPIC, "same", body, &out, &n, &flags) == 0);
    j = cJSON_Parse(out);
    REQUIRE(j);
    m = cJSON_GetObjectItem(j, "messages");
    CHECK_EQ_INT(cJSON_GetArraySize(m), 2);
    CHECK_EQ_STR(cJSON_GetObjectItem(cJSON_GetArrayItem(m, 0), "role")->valuestring, "system");
    CHECK(cJSON_IsTrue(
        cJSON_GetObjectItem(cJSON_GetObjectItem(j, "stream_options"), "include_usage")));
    CHECK(flags & PROXY_OUTBOUND_ADDED_USAGE);
    cJSON_Delete(j);
    free(out);
    config_unref(cfg);
}

static void test_tool_calls_refused_across_formats(void)
{
    struct config *cfg = load();
    const char *body =
        "{\"model\":\"claude\",\"messages\":[{\"role\":\"assistant\",\"content\":null,"
        "\"tool_calls\":[{\"id\":\"1\",\"type\":\"function\",\"function\":{\"name\":\"f\","
        "\"arguments\":\"{}\"}}]}]}";
    char *out = NULL;
    size_t n = 0;

    REQUIRE(cfg);
    CHECK(build(cfg, POLICY_API_OPENAI, "claude", body, &out, &n, NULL) == -1);
    CHECK(out == NULL);
    config_unref(cfg);
}

static void test_tools_refused_across_formats(void)
{
    struct config *cfg = load();
    const char *b1 =
        "{\"model\":\"claude\",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}],"
        "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    const char *b2 =
        "{\"model\":\"same\",\"max_tokens\":5,\"tools\":[{\"name\":\"f\",\"input_schema\":{}}],"
        "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    const char *b3 =
        "{\"model\":\"claude\",\"tools\":[],\"n\":1,\"response_format\":{\"type\":\"text\"},"
        "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    char *out = NULL;
    size_t n = 0;

    REQUIRE(cfg);
    CHECK(build(cfg, POLICY_API_OPENAI, "claude", b1, &out, &n, NULL) == -1);
    CHECK(build(cfg, POLICY_API_ANTHROPIC, "same", b2, &out, &n, NULL) == -1);
    /* empty or neutral values translate */
    CHECK(build(cfg, POLICY_API_OPENAI, "claude", b3, &out, &n, NULL) == 0);
    free(out);
    config_unref(cfg);
}

static void test_cost(void)
{
    struct config_model m;
    struct proxy_usage u = {.input = 1000000, .output = 500000, .cached = 200000, .seen = 1};

    memset(&m, 0, sizeof(m));
    m.input_per_mtok = 2.0;
    m.output_per_mtok = 10.0;
    m.cached_input_per_mtok = 0.5;
    /* 0.8M uncached * 2 + 0.2M cached * 0.5 + 0.5M out * 10 */
    CHECK(proxy_cost(&m, &u) > 6.699999 && proxy_cost(&m, &u) < 6.700001);
    m.cached_input_per_mtok = -1; /* unset: cached at the input price */
    CHECK(proxy_cost(&m, &u) > 6.999999 && proxy_cost(&m, &u) < 7.000001);
}

/* the model member's name escaped is still the one renamed (the loose scanner this
 * replaced looked for the literal bytes "model") */
static void test_escaped_model_name_renamed(void)
{
    struct config *cfg = load();
    const char *body = "{\"\\u006dodel\":\"renamed\",\"messages\":[]}";
    char *out = NULL;
    size_t n = 0;

    REQUIRE(cfg);
    CHECK(build(cfg, POLICY_API_OPENAI, "renamed", body, &out, &n, NULL) == 0);
    CHECK_EQ_STR(out, "{\"\\u006dodel\":\"gpt-4o-2024-08-06\",\"messages\":[]}");
    free(out);
    config_unref(cfg);
}

/* every shape of stream_options ends with include_usage true, the rest untouched */
static void test_usage_option_shapes(void)
{
    struct config *cfg = load();
    static const struct {
        const char *in, *out;
        int added;
    } cases[] = {
        {"{\"model\":\"same\",\"stream\":true,\"stream_options\":{},\"messages\":[]}",
         "{\"model\":\"same\",\"stream\":true,\"stream_options\":{\"include_usage\":true},"
         "\"messages\":[]}",
         1},
        {"{\"model\":\"same\",\"stream\":true,\"stream_options\":{\"include_usage\":false},"
         "\"messages\":[]}",
         "{\"model\":\"same\",\"stream\":true,\"stream_options\":{\"include_usage\":true},"
         "\"messages\":[]}",
         1},
        {"{\"model\":\"same\",\"stream\":true,\"stream_options\":{\"x\":1},\"messages\":[]}",
         "{\"model\":\"same\",\"stream\":true,\"stream_options\":{\"include_usage\":true,\"x\":1},"
         "\"messages\":[]}",
         1},
        {"{\"model\":\"same\",\"stream\":true,\"stream_options\":null,\"messages\":[]}",
         "{\"model\":\"same\",\"stream\":true,\"stream_options\":{\"include_usage\":true},"
         "\"messages\":[]}",
         1},
        /* "str\u0065am" is "stream": the escaped spelling asks for usage too */
        {"{\"model\":\"same\",\"str\\u0065am\":true,\"messages\":[]}",
         "{\"stream_options\":{\"include_usage\":true},\"model\":\"same\",\"str\\u0065am\":true,"
         "\"messages\":[]}",
         1},
        {"{\"model\":\"same\",\"stream\":false,\"messages\":[]}",
         "{\"model\":\"same\",\"stream\":false,\"messages\":[]}", 0},
    };
    REQUIRE(cfg);
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        char *out = NULL;
        size_t n = 0;
        int flags = 0;
        CHECK(build(cfg, POLICY_API_OPENAI, "same", cases[i].in, &out, &n, &flags) == 0);
        CHECK_EQ_STR(out, cases[i].out);
        CHECK_EQ_INT(!!(flags & PROXY_OUTBOUND_ADDED_USAGE), cases[i].added);
        free(out);
    }
    config_unref(cfg);
}

/* redaction's splices and the model rename are made together on the original spans */
static void test_redaction_and_rename_in_one_pass(void)
{
    struct config *cfg = load();
    const char *body = "{\"messages\":[{\"role\":\"user\",\"content\":\"mail a@b.io now\"}],"
                       "\"model\":\"renamed\"}";
    const char *at = strstr(body, "a@b.io");
    struct policy_edit ed = {(size_t)(at - body), (size_t)(at - body) + 6, "[EMAIL_1]", 9};
    struct policy_decision d;
    struct json_doc doc = {0};
    char err[256], *out = NULL;
    size_t n = 0;

    REQUIRE(cfg);
    REQUIRE(json_parse(&doc, body, strlen(body), err, sizeof(err)) == 0);
    memset(&d, 0, sizeof(d));
    d.verdict = POLICY_REDACT;
    d.model = "renamed";
    d.edits = &ed;
    d.n_edits = 1;
    CHECK(proxy_outbound_build(cfg, POLICY_API_OPENAI, &doc, &d, &out, &n, NULL, err,
                               sizeof(err)) == 0);
    CHECK_EQ_STR(out, "{\"messages\":[{\"role\":\"user\",\"content\":\"mail [EMAIL_1] now\"}],"
                      "\"model\":\"gpt-4o-2024-08-06\"}");
    free(out);
    /* translated: the placeholder reaches the other format too, the value does not */
    d.model = "claude";
    CHECK(proxy_outbound_build(cfg, POLICY_API_OPENAI, &doc, &d, &out, &n, NULL, err,
                               sizeof(err)) == 0);
    CHECK(out && strstr(out, "[EMAIL_1]") && !strstr(out, "a@b.io"));
    free(out);
    json_doc_deinit(&doc);
    config_unref(cfg);
}

int main(void)
{
    RUN(test_unchanged_body_is_byte_identical);
    RUN(test_model_renamed_rest_untouched);
    RUN(test_stream_asks_for_usage);
    RUN(test_block_sends_nothing);
    RUN(test_openai_to_anthropic);
    RUN(test_anthropic_to_openai_stream);
    RUN(test_tool_calls_refused_across_formats);
    RUN(test_tools_refused_across_formats);
    RUN(test_cost);
    RUN(test_escaped_model_name_renamed);
    RUN(test_usage_option_shapes);
    RUN(test_redaction_and_rename_in_one_pass);
    return harness_done();
}
