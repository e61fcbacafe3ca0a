/* test_decide.c -- proxy_decide, the one decision about a body: its bytes, its strict parse,
 * its shapes, the policy, the route and the outbound body, with the status and sentence
 * each refusal gives. */
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "harness.h"
#include "proxy/decide.h"
#include "proxy/outbound.h"

static const char *yaml =
    "listen: [{address: \"127.0.0.1:1\"}]\n"
    "providers:\n"
    "  oai: {type: openai, base_url: \"http://127.0.0.1:2/v1\", api_key: k1}\n"
    "  ant: {type: anthropic, base_url: \"http://127.0.0.1:3\", api_key: k2}\n"
    "models:\n"
    "  - {name: gpt-4o, provider: oai, upstream_model: gpt-4o-2024-08-06}\n"
    "  - {name: gpt-4.5-preview, provider: oai}\n"
    "  - {name: claude, provider: ant, upstream_model: claude-x}\n"
    "detectors:\n  - {name: staff_email, regex: '[a-z.]+@acme\\.example'}\n"
    "rules:\n"
    "  - {name: no-secrets, if: {detected: [secrets]}, then: {action: block}}\n"
    "  - {name: no-staff, if: {detected: [staff_email]}, then: {action: block}}\n"
    "  - {name: no-gpt45, if: {model: [\"gpt-4.5*\"]}, then: {action: block}}\n"
    "  - {name: iban-to-claude, if: {detected: [iban]}, then: {action: route, model: claude}}\n"
    "  - {name: mask-email, if: {detected: [email]}, then: {action: redact, detectors: [email]}}\n"
    "  - {name: default, then: {action: allow}}\n";

static struct config *cfg;
static struct policy *pol;

/* decide -- proxy_decide on a NUL-terminated body, as key "k" of team "t" */
static int decide(enum policy_api api, const char *body, struct proxy_decision *d)
{
    return proxy_decide(cfg, pol, api, body, strlen(body), "k", "t", d);
}

/* refused -- body is refused with `status` and an error holding each of want[0..n) */
static int refused(enum policy_api api, const char *body, int status, const char *want1,
                   const char *want2)
{
    struct proxy_decision d;
    int ok;

    ok = decide(api, body, &d) == -1 && d.status == status && d.outbound == NULL &&
         (!want1 || strstr(d.error, want1)) && (!want2 || strstr(d.error, want2));
    if (!ok)
        fprintf(stderr, "  body %s: status %d, error \"%s\"\n", body, d.status, d.error);
    proxy_decision_deinit(&d);
    return ok;
}

static void test_duplicate_member_names_member_and_path(void)
{
    CHECK(refused(POLICY_API_OPENAI, "{\"model\":\"gpt-4o\",\"model\":\"claude\",\"messages\":[]}",
                  400, "\"model\" twice", "at the top level"));
    CHECK(refused(POLICY_API_OPENAI,
                  "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"a\","
                  "\"content\":\"b\"}]}",
                  400, "\"content\" twice", "messages[0]"));
    /* decoded names compare equal: the escaped spelling is the same member */
    CHECK(refused(POLICY_API_ANTHROPIC,
                  "{\"model\":\"claude\",\"\\u006dodel\":\"gpt-4o\",\"max_tokens\":5,"
                  "\"messages\":[]}",
                  400, "\"model\" twice", NULL));
    /* the sentence starts with a capital */
    struct proxy_decision d;
    CHECK(decide(POLICY_API_OPENAI, "{\"a\":1,\"a\":2}", &d) == -1);
    CHECK(d.error[0] == 'T');
    CHECK_EQ_STR(proxy_decision_verdict(&d), "none");
    proxy_decision_deinit(&d);
}

static void test_nul_and_bad_utf8_refused(void)
{
    static const char bad_utf8[] = "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\","
                                   "\"content\":\"\xc3\x28\"}]}";
    static const char overlong[] = "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\","
                                   "\"content\":\"\xc0\xaf\"}]}";
    static const char raw_nul[] = "{\"model\":\"gpt-4o\",\"messages\":[]}\0";
    struct proxy_decision d;

    CHECK(refused(POLICY_API_OPENAI, "{\"model\":\"gpt-4o\",\"messages\":[],\"a\\u0000b\":1}", 400,
                  "\\u0000", NULL));
    CHECK(refused(POLICY_API_OPENAI,
                  "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":"
                  "\"x\\ud800\"}]}",
                  400, "surrogate", NULL));
    CHECK(refused(POLICY_API_OPENAI, bad_utf8, 400, "not valid UTF-8", NULL));
    CHECK(refused(POLICY_API_OPENAI, overlong, 400, "not valid UTF-8", NULL));
    /* a NUL byte after the JSON: the length is the body's, not strlen's */
    CHECK(proxy_decide(cfg, pol, POLICY_API_OPENAI, raw_nul, sizeof(raw_nul) - 1, "k", "t", &d) ==
          -1);
    CHECK_EQ_INT(d.status, 400);
    proxy_decision_deinit(&d);
}

static void test_bad_grammar_refused(void)
{
    CHECK(refused(POLICY_API_OPENAI, "{\"model\":\"gpt-4o\",\"messages\":[", 400, "not valid JSON",
                  NULL));
    CHECK(refused(POLICY_API_OPENAI, "{\"model\":\"gpt-4o\",\"messages\":[]} x", 400,
                  "trailing data", NULL));
    CHECK(refused(POLICY_API_OPENAI, "", 400, NULL, NULL));
}

static void test_shapes_refused(void)
{
    CHECK(refused(POLICY_API_OPENAI, "[1,2]", 400, "not a JSON object", NULL));
    CHECK(refused(POLICY_API_OPENAI, "\"model\"", 400, "not a JSON object", NULL));
    CHECK(refused(POLICY_API_OPENAI, "{\"messages\":[]}", 400, "no 'model' string", NULL));
    CHECK(refused(POLICY_API_OPENAI, "{\"model\":\"\",\"messages\":[]}", 400, "no 'model' string",
                  NULL));
    CHECK(refused(POLICY_API_OPENAI, "{\"model\":4,\"messages\":[]}", 400, "no 'model' string",
                  NULL));
    CHECK(refused(POLICY_API_OPENAI, "{\"model\":\"gpt-4o\"}", 400, "no 'messages' array", NULL));
    CHECK(refused(POLICY_API_ANTHROPIC, "{\"model\":\"claude\",\"messages\":{}}", 400,
                  "no 'messages' array", NULL));
    CHECK(refused(POLICY_API_OPENAI, "{\"model\":\"gpt-4o\",\"messages\":[],\"stream\":\"yes\"}",
                  400, "'stream' must be true or false", NULL));
    CHECK(refused(POLICY_API_OPENAI, "{\"model\":\"gpt-4o\",\"messages\":[],\"stream\":1}", 400,
                  "'stream' must be true or false", NULL));
    CHECK(refused(POLICY_API_OPENAI,
                  "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":"
                  "[{\"type\":\"text\",\"text\":\"a\"},{\"text\":\"b\"}]}]}",
                  400, "messages[0].content[1] must be an object with a 'type'", NULL));
    CHECK(refused(POLICY_API_OPENAI,
                  "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"},"
                  "{\"role\":\"user\",\"content\":[\"b\"]}]}",
                  400, "messages[1].content[0]", NULL));
    CHECK(refused(POLICY_API_OPENAI, "{\"model\":\"gpt-4o\",\"messages\":[{\"content\":\"a\"}]}",
                  400, "messages[0] must be an object with a string 'role'", NULL));
    CHECK(refused(POLICY_API_OPENAI, "{\"model\":\"gpt-4o\",\"messages\":[3]}", 400,
                  "messages[0] must be an object", NULL));
    CHECK(refused(POLICY_API_OPENAI,
                  "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":7}]}", 400,
                  "messages[0].content must be a string or an array", NULL));
    /* Anthropic: content is required, and system blocks are typed too */
    CHECK(refused(POLICY_API_ANTHROPIC,
                  "{\"model\":\"claude\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\"}]}", 400,
                  "messages[0].content must be", NULL));
    CHECK(refused(POLICY_API_ANTHROPIC,
                  "{\"model\":\"claude\",\"max_tokens\":5,\"system\":[{\"text\":\"s\"}],"
                  "\"messages\":[]}",
                  400, "system[0] must be an object with a 'type'", NULL));
    CHECK(refused(POLICY_API_ANTHROPIC,
                  "{\"model\":\"claude\",\"max_tokens\":5,\"system\":5,\"messages\":[]}", 400,
                  "'system' must be a string or an array", NULL));
}

/* OpenAI: an assistant turn with tool calls has no content, and that shape is allowed */
static void test_openai_null_content_allowed(void)
{
    struct proxy_decision d;

    CHECK(decide(POLICY_API_OPENAI,
                 "{\"model\":\"gpt-4o\",\"stream\":null,\"messages\":[{\"role\":\"assistant\","
                 "\"content\":null},{\"role\":\"user\",\"content\":\"hi\"}]}",
                 &d) == 0);
    CHECK_EQ_INT(d.stream, 0);
    CHECK_EQ_STR(proxy_decision_verdict(&d), "allow");
    proxy_decision_deinit(&d);
}

static void test_secret_blocked_names_rule_and_detector(void)
{
    const char *body = "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":"
                       "\"key AKIAIOSFODNN7EXAMPLE and again AKIAIOSFODNN7EXAMPLE\"}]}";
    struct proxy_decision d;

    CHECK(decide(POLICY_API_OPENAI, body, &d) == -1);
    CHECK_EQ_INT(d.status, 403);
    CHECK(strstr(d.error, "'no-secrets'") != NULL);
    CHECK(strstr(d.error, "aws_access_key") != NULL);
    /* each detector named once, and the value itself never echoed */
    CHECK(strstr(d.error, "aws_access_key, aws_access_key") == NULL);
    CHECK(strstr(d.error, "AKIAIOSFODNN7EXAMPLE") == NULL);
    CHECK(d.outbound == NULL && d.outbound_len == 0);
    CHECK(d.has_policy);
    CHECK_EQ_STR(proxy_decision_verdict(&d), "block");
    proxy_decision_deinit(&d);
}

/* the 403 names the detector the rule was written for, even when a built-in one's finding
 * took the span (a staff address is an e-mail too): "contains email" would send the reader
 * to the wrong rule */
static void test_block_names_the_rules_detector(void)
{
    struct proxy_decision d;

    CHECK(decide(POLICY_API_OPENAI,
                 "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":"
                 "\"ask jane.doe@acme.example today\"}]}",
                 &d) == -1);
    CHECK_EQ_INT(d.status, 403);
    CHECK_EQ_STR(d.error, "Refused by policy rule 'no-staff': the prompt contains staff_email.");
    CHECK(d.policy.n_findings == 1 && strcmp(d.policy.findings[0].detector, "email") == 0);
    proxy_decision_deinit(&d);
}

static void test_model_rule_blocks_without_detector(void)
{
    struct proxy_decision d;

    CHECK(decide(POLICY_API_OPENAI,
                 "{\"model\":\"gpt-4.5-preview\",\"messages\":[{\"role\":\"user\",\"content\":"
                 "\"hello\"}]}",
                 &d) == -1);
    CHECK_EQ_INT(d.status, 403);
    CHECK_EQ_STR(d.error, "Refused by policy rule 'no-gpt45'.");
    CHECK_EQ_STR(proxy_decision_verdict(&d), "block");
    proxy_decision_deinit(&d);
}

static void test_unknown_model_404(void)
{
    struct proxy_decision d;

    CHECK(decide(POLICY_API_OPENAI,
                 "{\"model\":\"no-such\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
                 &d) == -1);
    CHECK_EQ_INT(d.status, 404);
    CHECK(strstr(d.error, "'no-such'") != NULL);
    CHECK(d.model == NULL && d.outbound == NULL);
    /* the policy ran (allow): the verdict is what it said */
    CHECK_EQ_STR(proxy_decision_verdict(&d), "allow");
    proxy_decision_deinit(&d);
}

static void test_allow_renames_model_only(void)
{
    const char *body = "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":"
                       "\"hello\"}],\"temperature\":0.50}";
    struct proxy_decision d;

    REQUIRE(decide(POLICY_API_OPENAI, body, &d) == 0);
    CHECK_EQ_STR(d.model_name, "gpt-4o");
    CHECK(d.model && strcmp(d.model->name, "gpt-4o") == 0);
    CHECK(d.prov && d.prov->type == CONFIG_PROVIDER_OPENAI);
    CHECK(d.prov == &cfg->providers[d.prov_index]);
    CHECK_EQ_STR(d.outbound, "{\"model\":\"gpt-4o-2024-08-06\",\"messages\":[{\"role\":\"user\","
                             "\"content\":\"hello\"}],\"temperature\":0.50}");
    CHECK_EQ_INT(d.outbound_len, strlen(d.outbound ? d.outbound : ""));
    CHECK_EQ_INT(d.outbound_flags, 0);
    CHECK_EQ_INT(d.stream, 0);
    CHECK_EQ_INT(d.include_usage_asked, 0);
    proxy_decision_deinit(&d);
}

static void test_redact_email(void)
{
    const char *body = "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":"
                       "\"mail bob@example.com now\"}]}";
    struct proxy_decision d;

    REQUIRE(decide(POLICY_API_OPENAI, body, &d) == 0);
    CHECK_EQ_STR(proxy_decision_verdict(&d), "redact");
    REQUIRE(d.outbound);
    const char *ph = strstr(d.outbound, "mail [EMAIL_1_");
    CHECK(ph != NULL && strncmp(ph + 20, "] now", 5) == 0 && strlen(d.nonce) == 6 &&
          strncmp(ph + 14, d.nonce, 6) == 0);
    CHECK(strstr(d.outbound, "bob@example.com") == NULL);
    CHECK(strstr(d.outbound, "\"model\":\"gpt-4o-2024-08-06\"") != NULL);
    /* the body itself is borrowed and left as it came */
    CHECK(strstr(body, "bob@example.com") != NULL);
    proxy_decision_deinit(&d);
}

static void test_escaped_names_read_as_model_and_stream(void)
{
    const char *body = "{\"\\u006dodel\":\"gpt-4o\",\"str\\u0065am\":true,\"messages\":[{\"role\":"
                       "\"user\",\"content\":\"hi\"}]}";
    struct proxy_decision d;
    cJSON *j;

    REQUIRE(decide(POLICY_API_OPENAI, body, &d) == 0);
    CHECK_EQ_STR(d.model_name, "gpt-4o");
    CHECK_EQ_INT(d.stream, 1);
    CHECK_EQ_INT(d.include_usage_asked, 0);
    CHECK(d.outbound_flags & PROXY_OUTBOUND_ADDED_USAGE);
    REQUIRE(d.outbound);
    j = cJSON_ParseWithLength(d.outbound, d.outbound_len);
    REQUIRE(j);
    CHECK_EQ_STR(cJSON_GetStringValue(cJSON_GetObjectItem(j, "model")), "gpt-4o-2024-08-06");
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(j, "stream")));
    CHECK(cJSON_IsTrue(
        cJSON_GetObjectItem(cJSON_GetObjectItem(j, "stream_options"), "include_usage")));
    cJSON_Delete(j);
    proxy_decision_deinit(&d);
}

static void test_include_usage_asked(void)
{
    const char *body =
        "{\"model\":\"gpt-4o\",\"stream\":true,\"stream_options\":{\"include_usage\":"
        "true},\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    struct proxy_decision d;

    REQUIRE(decide(POLICY_API_OPENAI, body, &d) == 0);
    CHECK_EQ_INT(d.stream, 1);
    CHECK_EQ_INT(d.include_usage_asked, 1);
    /* the client asked: nothing added, so nothing is to be stripped on the way back */
    CHECK_EQ_INT(d.outbound_flags & PROXY_OUTBOUND_ADDED_USAGE, 0);
    proxy_decision_deinit(&d);
    /* false is not asking */
    REQUIRE(decide(POLICY_API_OPENAI,
                   "{\"model\":\"gpt-4o\",\"stream\":true,\"stream_options\":{\"include_usage\":"
                   "false},\"messages\":[]}",
                   &d) == 0);
    CHECK_EQ_INT(d.include_usage_asked, 0);
    CHECK(d.outbound_flags & PROXY_OUTBOUND_ADDED_USAGE);
    proxy_decision_deinit(&d);
}

static void test_iban_routes_to_anthropic_translated(void)
{
    const char *body = "{\"model\":\"gpt-4o\",\"max_completion_tokens\":77,\"messages\":["
                       "{\"role\":\"system\",\"content\":\"be brief\"},"
                       "{\"role\":\"user\",\"content\":\"pay GB82WEST12345698765432 today\"}]}";
    struct proxy_decision d;
    cJSON *j, *m;

    REQUIRE(decide(POLICY_API_OPENAI, body, &d) == 0);
    CHECK_EQ_STR(proxy_decision_verdict(&d), "route");
    CHECK_EQ_STR(d.model_name, "gpt-4o"); /* what was asked, not where it went */
    REQUIRE(d.model);
    CHECK_EQ_STR(d.model->name, "claude");
    REQUIRE(d.prov);
    CHECK(d.prov->type == CONFIG_PROVIDER_ANTHROPIC);
    REQUIRE(d.outbound);
    j = cJSON_ParseWithLength(d.outbound, d.outbound_len);
    REQUIRE(j);
    CHECK_EQ_STR(cJSON_GetStringValue(cJSON_GetObjectItem(j, "model")), "claude-x");
    CHECK_EQ_INT(cJSON_GetNumberValue(cJSON_GetObjectItem(j, "max_tokens")), 77);
    CHECK_EQ_STR(cJSON_GetStringValue(cJSON_GetObjectItem(j, "system")), "be brief");
    CHECK(cJSON_GetObjectItem(j, "max_completion_tokens") == NULL);
    m = cJSON_GetObjectItem(j, "messages");
    CHECK_EQ_INT(cJSON_GetArraySize(m), 1);
    CHECK_EQ_STR(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetArrayItem(m, 0), "role")),
                 "user");
    cJSON_Delete(j);
    proxy_decision_deinit(&d);
}

/* a route whose translation cannot carry the body is refused before anything leaves */
static void test_route_untranslatable_400(void)
{
    CHECK(refused(POLICY_API_OPENAI,
                  "{\"model\":\"gpt-4o\",\"tools\":[{\"type\":\"function\",\"function\":{"
                  "\"name\":\"f\"}}],\"messages\":[{\"role\":\"user\",\"content\":"
                  "\"GB82WEST12345698765432\"}]}",
                  400, "'tools' cannot be translated", NULL));
}

static void test_anthropic_body_allowed(void)
{
    const char *body = "{\"model\":\"claude\",\"max_tokens\":5,\"system\":[{\"type\":\"text\","
                       "\"text\":\"s\"}],\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
                       "\"text\",\"text\":\"hi\"}]}],\"stream\":true}";
    struct proxy_decision d;

    REQUIRE(decide(POLICY_API_ANTHROPIC, body, &d) == 0);
    CHECK(d.api == POLICY_API_ANTHROPIC);
    CHECK_EQ_INT(d.stream, 1);
    /* no usage option is added to an Anthropic body */
    CHECK_EQ_INT(d.outbound_flags, 0);
    REQUIRE(d.outbound);
    CHECK(strstr(d.outbound, "stream_options") == NULL);
    CHECK(strstr(d.outbound, "\"model\":\"claude-x\"") != NULL);
    proxy_decision_deinit(&d);
}

static void test_verdict_names(void)
{
    struct proxy_decision d;

    memset(&d, 0, sizeof(d));
    CHECK_EQ_STR(proxy_decision_verdict(&d), "none");
    d.has_policy = 1;
    d.policy.verdict = POLICY_BLOCK;
    CHECK_EQ_STR(proxy_decision_verdict(&d), "block");
    d.policy.verdict = POLICY_ROUTE;
    CHECK_EQ_STR(proxy_decision_verdict(&d), "route");
    d.policy.verdict = POLICY_REDACT;
    CHECK_EQ_STR(proxy_decision_verdict(&d), "redact");
    d.policy.verdict = POLICY_ALLOW;
    CHECK_EQ_STR(proxy_decision_verdict(&d), "allow");
}

static void test_deinit_zeroed_and_twice(void)
{
    struct proxy_decision d;

    memset(&d, 0, sizeof(d));
    proxy_decision_deinit(&d);
    proxy_decision_deinit(&d);
    CHECK(d.outbound == NULL && d.model_name == NULL && !d.has_policy);
    REQUIRE(decide(POLICY_API_OPENAI,
                   "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":"
                   "\"a@b.io\"}]}",
                   &d) == 0);
    CHECK(d.outbound != NULL);
    proxy_decision_deinit(&d);
    CHECK(d.outbound == NULL && d.outbound_len == 0 && d.model_name == NULL && !d.has_policy);
    proxy_decision_deinit(&d);
    CHECK_EQ_STR(proxy_decision_verdict(&d), "none");
    /* and after a refusal, twice */
    CHECK(decide(POLICY_API_OPENAI, "{", &d) == -1);
    proxy_decision_deinit(&d);
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
    RUN(test_duplicate_member_names_member_and_path);
    RUN(test_nul_and_bad_utf8_refused);
    RUN(test_bad_grammar_refused);
    RUN(test_shapes_refused);
    RUN(test_openai_null_content_allowed);
    RUN(test_secret_blocked_names_rule_and_detector);
    RUN(test_model_rule_blocks_without_detector);
    RUN(test_block_names_the_rules_detector);
    RUN(test_unknown_model_404);
    RUN(test_allow_renames_model_only);
    RUN(test_redact_email);
    RUN(test_escaped_names_read_as_model_and_stream);
    RUN(test_include_usage_asked);
    RUN(test_iban_routes_to_anthropic_translated);
    RUN(test_route_untranslatable_400);
    RUN(test_anthropic_body_allowed);
    RUN(test_verdict_names);
    RUN(test_deinit_zeroed_and_twice);
    policy_free(pol);
    config_unref(cfg);
    return harness_done();
}
