/* test_modified.c -- proxy_modified_summary through proxy_decide: the x-airlock-modified
 * line for each change the gateway makes to a request on its way out (redaction counts per
 * detector, a model rename, the usage option, a translation, the built-in engine), none
 * for a request that leaves unchanged or not at all, names percent-encoded, never a value. */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "proxy/decide.h"

static const char *yaml =
    "listen: [{address: \"127.0.0.1:1\"}]\n"
    "providers:\n"
    "  oai: {type: openai, base_url: \"http://127.0.0.1:2/v1\", api_key: k1}\n"
    "  ant: {type: anthropic, base_url: \"http://127.0.0.1:3\", api_key: k2}\n"
    "  local: {type: builtin, model: \"/nonexistent/m.gguf\"}\n"
    "models:\n"
    "  - {name: plain, provider: oai}\n"
    "  - {name: renamed, provider: oai, upstream_model: renamed-2024-07-18}\n"
    "  - {name: claude, provider: ant, upstream_model: claude-x}\n"
    "  - {name: here, provider: local}\n"
    "rules:\n"
    "  - {name: no-secrets, if: {detected: [secrets]}, then: {action: block}}\n"
    "  - {name: odd-to-plain, if: {model: [\"odd*\"]}, then: {action: route, model: plain}}\n"
    "  - {name: mask, if: {detected: [email, phone]}, then: {action: redact, detectors: [email, "
    "phone]}}\n"
    "  - {name: default, then: {action: allow}}\n";

static struct config *cfg;
static struct policy *pol;

/* summary -- the decision's modified line for body (kind `kind`), "" for none, "REFUSED"
 * when proxy_decide refused it; static storage */
static const char *summary(enum policy_api api, enum proxy_body kind, const char *body)
{
    static char buf[1024];
    struct proxy_decision d;

    if (proxy_decide_body(cfg, pol, api, kind, body, strlen(body), "k", "t", &d) < 0) {
        snprintf(buf, sizeof(buf), "REFUSED");
        if (d.modified)
            snprintf(buf, sizeof(buf), "REFUSED WITH %s", d.modified);
    } else {
        snprintf(buf, sizeof(buf), "%s", d.modified ? d.modified : "");
    }
    proxy_decision_deinit(&d);
    return buf;
}

static const char *chat(const char *body)
{
    return summary(POLICY_API_OPENAI, PROXY_BODY_CHAT, body);
}

static void test_unchanged_has_none(void)
{
    CHECK_EQ_STR(
        chat("{\"model\":\"plain\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}"), "");
    /* a stream whose client asked for usage itself: nothing added */
    CHECK_EQ_STR(chat("{\"model\":\"plain\",\"stream\":true,\"stream_options\":{\"include_usage\":"
                      "true},\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}"),
                 "");
    /* an Anthropic body to an Anthropic provider under its own name */
    CHECK_EQ_STR(summary(POLICY_API_ANTHROPIC, PROXY_BODY_CHAT,
                         "{\"model\":\"claude-x\",\"max_tokens\":5,\"messages\":[{\"role\":"
                         "\"user\",\"content\":\"hi\"}]}"),
                 "REFUSED"); /* (claude-x is no model here: 404, nothing said) */
}

static void test_redaction_counts_per_detector_never_a_value(void)
{
    const char *s = chat("{\"model\":\"plain\",\"messages\":[{\"role\":\"user\",\"content\":"
                         "\"mail alice@example.com or bob@example.org, call +1 212-555-0134, "
                         "again alice@example.com\"}]}");

    /* three e-mail spans (two of them the same value, one placeholder) and one phone */
    CHECK_EQ_STR(s, "redacted=email:3,phone:1");
    CHECK(!strstr(s, "alice") && !strstr(s, "example") && !strstr(s, "555"));
}

static void test_model_rename(void)
{
    CHECK_EQ_STR(
        chat("{\"model\":\"renamed\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}"),
        "model=renamed->renamed-2024-07-18");
}

static void test_usage_option_added(void)
{
    const char *want = "options=stream_options.include_usage";

    CHECK_EQ_STR(chat("{\"model\":\"plain\",\"stream\":true,\"messages\":[{\"role\":\"user\","
                      "\"content\":\"hi\"}]}"),
                 want);
    /* asked for false: turned to true, which is a change too */
    CHECK_EQ_STR(chat("{\"model\":\"plain\",\"stream\":true,\"stream_options\":{\"include_usage\":"
                      "false},\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}"),
                 want);
    CHECK_EQ_STR(summary(POLICY_API_OPENAI, PROXY_BODY_COMPLETION,
                         "{\"model\":\"plain\",\"stream\":true,\"prompt\":\"hi\"}"),
                 want);
    CHECK_EQ_STR(summary(POLICY_API_OPENAI, PROXY_BODY_EMBEDDING,
                         "{\"model\":\"renamed\",\"input\":[\"a\",\"b\"]}"),
                 "model=renamed->renamed-2024-07-18");
}

static void test_all_together_in_order(void)
{
    CHECK_EQ_STR(chat("{\"model\":\"renamed\",\"stream\":true,\"messages\":[{\"role\":\"user\","
                      "\"content\":\"call (212) 555-0134 or mail a@example.com\"}]}"),
                 "redacted=email:1,phone:1; model=renamed->renamed-2024-07-18; "
                 "options=stream_options.include_usage");
}

static void test_translated(void)
{
    CHECK_EQ_STR(
        chat("{\"model\":\"claude\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}"),
        "model=claude->claude-x; translated=openai-chat->anthropic-messages");
    CHECK_EQ_STR(summary(POLICY_API_ANTHROPIC, PROXY_BODY_CHAT,
                         "{\"model\":\"plain\",\"max_tokens\":5,\"stream\":true,\"messages\":[{"
                         "\"role\":\"user\",\"content\":\"x@example.com\"}]}"),
                 "redacted=email:1; options=stream_options.include_usage; "
                 "translated=anthropic-messages->openai-chat");
}

static void test_builtin_engine(void)
{
    /* nothing leaves, but the request is not what the engine reads: a chat template; the
     * redaction is not applied there (the body stays local), so it is not listed */
    CHECK_EQ_STR(chat("{\"model\":\"here\",\"messages\":[{\"role\":\"user\",\"content\":"
                      "\"a@example.com\"}]}"),
                 "translated=openai-chat->builtin");
    CHECK_EQ_STR(summary(POLICY_API_ANTHROPIC, PROXY_BODY_CHAT,
                         "{\"model\":\"here\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\","
                         "\"content\":\"hi\"}]}"),
                 "translated=anthropic-messages->builtin");
    CHECK_EQ_STR(
        summary(POLICY_API_OPENAI, PROXY_BODY_COMPLETION, "{\"model\":\"here\",\"prompt\":\"hi\"}"),
        "translated=openai-completions->builtin");
}

static void test_responses(void)
{
    const char *s = summary(POLICY_API_OPENAI, PROXY_BODY_RESPONSE,
                            "{\"model\":\"renamed\",\"stream\":true,\"instructions\":\"mail "
                            "a@example.com\",\"input\":\"or b@example.com\"}");

    /* no stream_options on this API: nothing injected */
    CHECK_EQ_STR(s, "redacted=email:2; model=renamed->renamed-2024-07-18");
    CHECK_EQ_STR(
        summary(POLICY_API_OPENAI, PROXY_BODY_RESPONSE, "{\"model\":\"plain\",\"input\":\"hi\"}"),
        "");
    CHECK_EQ_STR(
        summary(POLICY_API_OPENAI, PROXY_BODY_RESPONSE, "{\"model\":\"claude\",\"input\":\"hi\"}"),
        "model=claude->claude-x; translated=openai-responses->anthropic-messages");
    CHECK_EQ_STR(
        summary(POLICY_API_OPENAI, PROXY_BODY_RESPONSE, "{\"model\":\"here\",\"input\":\"hi\"}"),
        "translated=openai-responses->builtin");
    CHECK_EQ_STR(
        summary(POLICY_API_OPENAI, PROXY_BODY_COMPACT, "{\"model\":\"renamed\",\"input\":\"hi\"}"),
        "model=renamed->renamed-2024-07-18");
    /* a compaction cannot be translated: refused, so nothing is said */
    CHECK_EQ_STR(
        summary(POLICY_API_OPENAI, PROXY_BODY_COMPACT, "{\"model\":\"claude\",\"input\":\"hi\"}"),
        "REFUSED");
}

static void test_refused_has_none(void)
{
    CHECK_EQ_STR(chat("{\"model\":\"plain\",\"messages\":[{\"role\":\"user\",\"content\":"
                      "\"AKIAIOSFODNN7EXAMPLE\"}]}"),
                 "REFUSED");
    CHECK_EQ_STR(chat("{\"model\":\"nope\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}"),
                 "REFUSED");
}

static void test_names_percent_encoded(void)
{
    /* the client's model name is routed by a rule, so it can be anything: the grammar's
     * separators and non-ASCII never appear raw in the line */
    CHECK_EQ_STR(chat("{\"model\":\"odd; x=1,\\u00e9->y\\r\\nz\",\"messages\":[{\"role\":\"user\","
                      "\"content\":\"hi\"}]}"),
                 "model=odd%3B%20x%3D1%2C%C3%A9-%3Ey%0D%0Az->plain");
}

static void test_respelt_model_is_rewritten(void)
{
    /* the same name with an escape is re-spelt on the way out: a change with no other word */
    CHECK_EQ_STR(chat("{\"model\":\"pl\\u0061in\",\"messages\":[{\"role\":\"user\",\"content\":"
                      "\"hi\"}]}"),
                 "rewritten");
}

static void test_api_names(void)
{
    CHECK_EQ_STR(proxy_modified_api_name(POLICY_API_OPENAI, PROXY_BODY_CHAT), "openai-chat");
    CHECK_EQ_STR(proxy_modified_api_name(POLICY_API_ANTHROPIC, PROXY_BODY_CHAT),
                 "anthropic-messages");
    CHECK_EQ_STR(proxy_modified_api_name(POLICY_API_OPENAI, PROXY_BODY_EMBEDDING),
                 "openai-embeddings");
    CHECK_EQ_STR(proxy_modified_api_name(POLICY_API_OPENAI, PROXY_BODY_COMPLETION),
                 "openai-completions");
    CHECK_EQ_STR(proxy_modified_api_name(POLICY_API_OPENAI, PROXY_BODY_RESPONSE),
                 "openai-responses");
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
    RUN(test_unchanged_has_none);
    RUN(test_redaction_counts_per_detector_never_a_value);
    RUN(test_model_rename);
    RUN(test_usage_option_added);
    RUN(test_all_together_in_order);
    RUN(test_translated);
    RUN(test_builtin_engine);
    RUN(test_responses);
    RUN(test_refused_has_none);
    RUN(test_names_percent_encoded);
    RUN(test_respelt_model_is_rewritten);
    RUN(test_api_names);
    policy_free(pol);
    config_unref(cfg);
    return harness_done();
}
