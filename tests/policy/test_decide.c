/* test_decide.c -- rules (each condition, first match, default deny), targets, fail-closed
 * errors, and redaction: placeholders, numbering, and byte-exactness outside the spans. */
#include <pthread.h>

#include "config/config.h"
#include "harness.h"
#include "policy/policy.h"

static const char *YAML =
    "keys:\n"
    "  - {name: alice, team: eng, key: k-alice}\n"
    "  - {name: bob, team: sales, key: k-bob}\n"
    "providers:\n"
    "  openai: {type: openai, zone: external, base_url: \"https://api.openai.com/v1\", api_key: "
    "x}\n"
    "  anth: {type: anthropic, zone: external, base_url: \"https://api.anthropic.com\", api_key: "
    "y}\n"
    "  corp: {type: openai-compatible, zone: internal, base_url: \"https://llm.corp.example/v1\"}\n"
    "models:\n"
    "  - {name: gpt-4o, provider: openai, price: {input_per_mtok: 1, output_per_mtok: 1}}\n"
    "  - {name: gpt-4o-mini, provider: openai, price: {input_per_mtok: 1, output_per_mtok: 1}}\n"
    "  - {name: claude-x, provider: anth, price: {input_per_mtok: 1, output_per_mtok: 1}}\n"
    "  - {name: corp-llm, provider: corp, price: {input_per_mtok: 0, output_per_mtok: 0}}\n"
    "detectors:\n"
    "  - {name: codename, keywords: [bluebird]}\n"
    "rules:\n"
    "  - name: no-secrets-out\n"
    "    if: {detected: [secrets]}\n"
    "    then: {action: block}\n"
    "  - name: sales-cards-home\n"
    "    if: {detected: [credit_card], team: [sales]}\n"
    "    then: {action: route, model: corp-llm}\n"
    "  - name: alice-cards-redact\n"
    "    if: {detected: [credit_card], key: [alice]}\n"
    "    then: {action: redact, detectors: [credit_card, email]}\n"
    "  - name: mini-blocks-codename\n"
    "    if: {detected: [codename], model: [\"gpt-4o-*\"]}\n"
    "    then: {action: block}\n"
    "  - name: codename-internal-ok\n"
    "    if: {detected: [codename], zone: internal}\n"
    "    then: {action: allow}\n"
    "  - name: codename-elsewhere\n"
    "    if: {detected: [codename]}\n"
    "    then: {action: redact, detectors: [codename], model: corp-llm}\n"
    "  - name: mask-pii\n"
    "    if: {detected: [pii]}\n"
    "    then: {action: redact, detectors: [pii]}\n"
    "  - name: external-ok\n"
    "    if: {zone: external}\n"
    "    then: {action: allow}\n";

static struct config *cfg;
static struct policy *pol;

struct res {
    int rc;
    struct policy_decision d;
    char body[4096];
};

static void decide(struct res *r, enum policy_api api, const char *model, const char *key,
                   const char *team, const char *text)
{
    if (api == POLICY_API_OPENAI)
        snprintf(r->body, sizeof(r->body),
                 "{\"model\":\"%s\",\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}]}", model,
                 text);
    else
        snprintf(r->body, sizeof(r->body),
                 "{\"model\":\"%s\",\"max_tokens\":10,\"messages\":[{\"role\":\"user\",\"content\":"
                 "\"%s\"}]}",
                 model, text);
    struct policy_input in = {.api = api,
                              .body = r->body,
                              .len = strlen(r->body),
                              .model = model,
                              .key_name = key,
                              .team = team};
    r->rc = policy_decide(pol, &in, &r->d);
}

static void test_first_match_and_conditions(void)
{
    struct res r;
    decide(&r, POLICY_API_OPENAI, "gpt-4o", "bob", "sales",
           "token AKIAIOSFODNN7EXAMPLE and 4111111111111111");
    CHECK(r.rc == 0 && r.d.verdict == POLICY_BLOCK);
    CHECK_EQ_STR(r.d.rule, "no-secrets-out");
    CHECK(r.d.provider == NULL && r.d.model == NULL && r.d.body == NULL);
    policy_decision_deinit(&r.d);

    decide(&r, POLICY_API_OPENAI, "gpt-4o", "bob", "sales", "card 4111111111111111");
    CHECK(r.rc == 0 && r.d.verdict == POLICY_ROUTE);
    CHECK_EQ_STR(r.d.rule, "sales-cards-home");
    CHECK_EQ_STR(r.d.provider, "corp");
    CHECK_EQ_STR(r.d.model, "corp-llm");
    CHECK(r.d.body == NULL && r.d.restorer == NULL);
    policy_decision_deinit(&r.d);

    /* team condition fails for alice; key condition matches */
    decide(&r, POLICY_API_OPENAI, "gpt-4o", "alice", "eng", "card 4111111111111111");
    CHECK(r.rc == 0 && r.d.verdict == POLICY_REDACT);
    CHECK_EQ_STR(r.d.rule, "alice-cards-redact");
    CHECK_EQ_STR(r.d.provider, "openai");
    CHECK_EQ_STR(r.d.model, "gpt-4o");
    policy_decision_deinit(&r.d);

    /* no key: neither key nor team rules; card is pii -> mask-pii */
    decide(&r, POLICY_API_OPENAI, "gpt-4o", NULL, NULL, "card 4111111111111111");
    CHECK_EQ_STR(r.d.rule, "mask-pii");
    policy_decision_deinit(&r.d);

    /* model glob */
    decide(&r, POLICY_API_OPENAI, "gpt-4o-mini", NULL, NULL, "the Bluebird plan");
    CHECK_EQ_STR(r.d.rule, "mini-blocks-codename");
    CHECK(r.d.verdict == POLICY_BLOCK);
    policy_decision_deinit(&r.d);
    /* zone of the requested model */
    decide(&r, POLICY_API_OPENAI, "corp-llm", NULL, NULL, "the Bluebird plan");
    CHECK_EQ_STR(r.d.rule, "codename-internal-ok");
    CHECK(r.d.verdict == POLICY_ALLOW);
    CHECK_EQ_STR(r.d.provider, "corp");
    policy_decision_deinit(&r.d);
    decide(&r, POLICY_API_ANTHROPIC, "claude-x", NULL, NULL, "the Bluebird plan");
    CHECK_EQ_STR(r.d.rule, "codename-elsewhere");
    CHECK(r.d.verdict == POLICY_REDACT);
    CHECK_EQ_STR(r.d.model, "corp-llm");
    CHECK_EQ_STR(r.d.provider, "corp");
    policy_decision_deinit(&r.d);

    /* nothing found, external model -> allow as requested */
    decide(&r, POLICY_API_ANTHROPIC, "claude-x", NULL, NULL, "hello");
    CHECK_EQ_STR(r.d.rule, "external-ok");
    CHECK(r.d.verdict == POLICY_ALLOW && r.d.n_findings == 0 && r.d.body == NULL);
    CHECK_EQ_STR(r.d.provider, "anth");
    CHECK_EQ_STR(r.d.model, "claude-x");
    policy_decision_deinit(&r.d);

    /* unknown model: zone does not match -> default deny */
    decide(&r, POLICY_API_OPENAI, "no-such-model", NULL, NULL, "hello");
    CHECK(r.rc == 0 && r.d.verdict == POLICY_BLOCK);
    CHECK_EQ_STR(r.d.rule, "default-deny");
    policy_decision_deinit(&r.d);
    /* internal model without findings: no rule -> default deny */
    decide(&r, POLICY_API_OPENAI, "corp-llm", NULL, NULL, "hello");
    CHECK_EQ_STR(r.d.rule, "default-deny");
    policy_decision_deinit(&r.d);
}

static void test_allow_unknown_model(void)
{
    const char *y =
        "providers:\n  p: {type: openai, zone: external, base_url: \"https://a.example/v1\"}\n"
        "models:\n  - {name: m, provider: p, price: {input_per_mtok: 1, output_per_mtok: 1}}\n"
        "rules:\n  - name: any\n    then: {action: allow}\n";
    struct config *c = NULL;
    struct policy *p = NULL;
    struct config_errors errs = {0};
    REQUIRE(config_load_text("u.yaml", y, strlen(y), NULL, &c, &errs) == 0);
    REQUIRE(policy_new(c, &p, &errs) == 0);
    const char *b = "{\"model\":\"x\",\"messages\":[]}";
    struct policy_input in = {.api = POLICY_API_OPENAI, .body = b, .len = strlen(b), .model = "x"};
    struct policy_decision d;
    CHECK(policy_decide(p, &in, &d) == 0);
    CHECK(d.verdict == POLICY_ALLOW && d.provider == NULL && d.model == NULL);
    policy_decision_deinit(&d);
    policy_free(p);
    config_unref(c);
}

/* a custom detector whose span a built-in one claims (a staff address is also an
 * e-mail) must still trigger the rules written for it */
static void test_custom_overlapping_builtin_fires(void)
{
    const char *y =
        "providers:\n  p: {type: openai, base_url: \"https://a.example/v1\"}\n"
        "models:\n  - {name: m, provider: p}\n"
        "detectors:\n  - {name: staff_email, regex: '[a-z.]+@acme\\.example'}\n"
        "rules:\n  - {name: no-staff, if: {detected: [staff_email]}, then: {action: block}}\n"
        "  - {name: mask, if: {detected: [email]}, then: {action: redact, detectors: [email]}}\n"
        "  - {name: any, then: {action: allow}}\n";
    struct config *c = NULL;
    struct policy *p = NULL;
    struct config_errors errs = {0};
    REQUIRE(config_load_text("s.yaml", y, strlen(y), NULL, &c, &errs) == 0);
    REQUIRE(policy_new(c, &p, &errs) == 0);
    const char *b = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"ask "
                    "jane.doe@acme.example today\"}]}";
    struct policy_input in = {.api = POLICY_API_OPENAI, .body = b, .len = strlen(b), .model = "m"};
    struct policy_decision d;
    CHECK(policy_decide(p, &in, &d) == 0);
    CHECK(d.verdict == POLICY_BLOCK);
    CHECK_EQ_STR(d.rule, "no-staff");
    /* the finding is the built-in's, the reason the rule's detector */
    CHECK(d.n_findings == 1 && strcmp(d.findings[0].detector, "email") == 0);
    CHECK_EQ_STR(d.because, "staff_email");
    policy_decision_deinit(&d);
    /* another domain is only an e-mail: redacted, not blocked */
    const char *b2 = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"ask "
                     "jane.doe@other.example today\"}]}";
    in.body = b2;
    in.len = strlen(b2);
    CHECK(policy_decide(p, &in, &d) == 0);
    CHECK(d.verdict == POLICY_REDACT);
    CHECK_EQ_STR(d.rule, "mask");
    CHECK_EQ_STR(d.because, "email");
    policy_decision_deinit(&d);
    /* a rule without a `detected` condition has no reason of that kind */
    const char *b3 = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}]}";
    in.body = b3;
    in.len = strlen(b3);
    CHECK(policy_decide(p, &in, &d) == 0);
    CHECK_EQ_STR(d.rule, "any");
    CHECK_EQ_STR(d.because, "");
    policy_decision_deinit(&d);
    policy_free(p);
    config_unref(c);
}

/* a rule that redacts a custom detector redacts its values even where a built-in finding
 * took the span (red team: the rule fired, redacted nothing, and the staff address left),
 * and the redaction covers all the custom finding held when it reaches past the built-in
 * one's */
static void test_custom_overlapping_builtin_redacted(void)
{
    const char *y = "providers:\n  p: {type: openai, base_url: \"https://a.example/v1\"}\n"
                    "models:\n  - {name: m, provider: p}\n"
                    "detectors:\n  - {name: staff_email, regex: '[a-z.]+@acme\\.example'}\n"
                    "  - {name: tail, regex: '@beta\\.example today'}\n"
                    "rules:\n  - {name: mask-staff, if: {detected: [staff_email, tail]}, then: "
                    "{action: redact, detectors: [staff_email, tail]}}\n"
                    "  - {name: any, then: {action: allow}}\n";
    struct config *c = NULL;
    struct policy *p = NULL;
    struct config_errors errs = {0};
    REQUIRE(config_load_text("s.yaml", y, strlen(y), NULL, &c, &errs) == 0);
    REQUIRE(policy_new(c, &p, &errs) == 0);
    const char *b = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"ask "
                    "jane.doe@acme.example now\"}]}";
    struct policy_input in = {.api = POLICY_API_OPENAI, .body = b, .len = strlen(b), .model = "m"};
    struct policy_decision d;
    CHECK(policy_decide(p, &in, &d) == 0);
    CHECK(d.verdict == POLICY_REDACT);
    CHECK_EQ_STR(d.because, "staff_email");
    REQUIRE(d.body);
    CHECK(strstr(d.body, "jane.doe") == NULL && strstr(d.body, "acme") == NULL);
    CHECK(strstr(d.body, "ask [EMAIL_1] now") != NULL);
    policy_decision_deinit(&d);
    /* the custom finding reaches past the e-mail: the union goes */
    const char *b2 = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"ask "
                     "joe@beta.example today please\"}]}";
    in.body = b2;
    in.len = strlen(b2);
    CHECK(policy_decide(p, &in, &d) == 0);
    CHECK(d.verdict == POLICY_REDACT);
    CHECK_EQ_STR(d.because, "tail");
    REQUIRE(d.body);
    CHECK(strstr(d.body, "ask [EMAIL_1] please") != NULL);
    CHECK(d.n_findings == 1 &&
          d.findings[0].end - d.findings[0].start == strlen("joe@beta.example today"));
    policy_decision_deinit(&d);
    policy_free(p);
    config_unref(c);
}

/* exempt values are no findings: they fire no rule and are not redacted, matched whole and
 * case-insensitively; every other value of the detector still is one, and what another
 * detector finds inside an exempt value still counts */
static void test_exempt(void)
{
    const char *y = "providers:\n  p: {type: openai, base_url: \"https://a.example/v1\"}\n"
                    "models:\n  - {name: m, provider: p}\n"
                    "detectors:\n  - {name: ticket, regex: 'TCK-[0-9]{6}'}\n"
                    "exempt:\n  - {detector: email, values: [noreply@anthropic.com, "
                    "'*@users.noreply.github.com']}\n"
                    "  - {detector: ticket, values: [TCK-000000]}\n"
                    "rules:\n  - {name: no-cards, if: {detected: [credit_card]}, then: {action: "
                    "block}}\n"
                    "  - {name: no-tickets, if: {detected: [ticket]}, then: {action: block}}\n"
                    "  - {name: mask, if: {detected: [email]}, then: {action: redact, detectors: "
                    "[email]}}\n"
                    "  - {name: any, then: {action: allow}}\n";
    static const struct {
        const char *text;
        int verdict;
        size_t findings;
    } cases[] = {
        {"Co-Authored-By: Claude <noreply@anthropic.com>", POLICY_ALLOW, 0},
        {"Co-Authored-By: Claude <NoReply@Anthropic.COM>", POLICY_ALLOW, 0},
        {"by 4242+octo@users.noreply.github.com", POLICY_ALLOW, 0},
        {"xnoreply@anthropic.com", POLICY_REDACT, 1}, /* whole values only */
        {"noreply@anthropic.com.evil.example", POLICY_REDACT, 1},
        {"noreply@anthropic.com and jane@corp.example", POLICY_REDACT, 1},
        {"4111111111111111@users.noreply.github.com", POLICY_BLOCK, 1}, /* the card counts */
        {"see TCK-000000", POLICY_ALLOW, 0},
        {"see TCK-000001", POLICY_BLOCK, 1},
    };
    struct config *c = NULL;
    struct policy *p = NULL;
    struct config_errors errs = {0};
    REQUIRE(config_load_text("s.yaml", y, strlen(y), NULL, &c, &errs) == 0);
    REQUIRE(policy_new(c, &p, &errs) == 0);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char b[512];
        snprintf(b, sizeof(b),
                 "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}]}",
                 cases[i].text);
        struct policy_input in = {
            .api = POLICY_API_OPENAI, .body = b, .len = strlen(b), .model = "m"};
        struct policy_decision d;
        CHECK(policy_decide(p, &in, &d) == 0);
        if ((int)d.verdict != cases[i].verdict || d.n_findings != cases[i].findings)
            fprintf(stderr, "  case %zu '%s': verdict %d, %zu findings\n", i, cases[i].text,
                    (int)d.verdict, d.n_findings);
        CHECK_EQ_INT((int)d.verdict, cases[i].verdict);
        CHECK(d.n_findings == cases[i].findings);
        if (cases[i].verdict == POLICY_REDACT)
            CHECK(d.body && strstr(d.body, "jane@") == NULL);
        policy_decision_deinit(&d);
    }
    policy_free(p);
    config_unref(c);
}

static void test_fail_closed(void)
{
    struct policy_decision d;
    const char *b = "{\"model\":\"gpt-4o\",\"messages\":[{\"content\":\"\\ud800\"}]}";
    struct policy_input in = {
        .api = POLICY_API_OPENAI, .body = b, .len = strlen(b), .model = "gpt-4o"};
    CHECK(policy_decide(pol, &in, &d) == -1);
    CHECK(d.verdict == POLICY_BLOCK && d.error[0] && strchr(d.error, '.'));
    CHECK(d.provider == NULL && d.body == NULL);
    policy_decision_deinit(&d);
    in.body = "{\"messages\":";
    in.len = strlen(in.body);
    CHECK(policy_decide(pol, &in, &d) == -1);
    policy_decision_deinit(&d);
}

static void test_redact_bytes(void)
{
    struct res r;
    /* two emails, one repeated (once escaped), one card, one phone; the rest must be kept */
    decide(&r, POLICY_API_OPENAI, "gpt-4o", NULL, NULL,
           "Hi a@x.org, b@y.org\\nand a\\u0040x.org; pay 4111 1111 1111 1111, call +1 212 555 0134 "
           "\\u00e9");
    REQUIRE(r.rc == 0 && r.d.verdict == POLICY_REDACT);
    CHECK_EQ_STR(r.d.rule, "mask-pii");
    REQUIRE(r.d.body != NULL && r.d.restorer != NULL);
    const char *want = "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"Hi "
                       "[EMAIL_1], [EMAIL_2]\\nand "
                       "[EMAIL_1]; pay [CREDIT_CARD_1], call [PHONE_1] \\u00e9\"}]}";
    CHECK_EQ_INT(r.d.body_len, strlen(want));
    CHECK_EQ_STR(r.d.body, want);
    CHECK_EQ_INT(r.d.n_findings, 5);
    /* the escaped duplicate maps to its raw bytes */
    CHECK(r.d.n_findings >= 3 && r.d.findings[2].end - r.d.findings[2].start == 12 &&
          memcmp(r.body + r.d.findings[2].start, "a\\u0040x.org", 12) == 0);
    /* restoring the placeholders gives back decoded originals */
    char *out = NULL;
    size_t ol = 0;
    const char *ans = "Sure [EMAIL_1] and [EMAIL_2], card [CREDIT_CARD_1]";
    CHECK(policy_restore_feed(r.d.restorer, 0, ans, strlen(ans), &out, &ol) == 0);
    CHECK(policy_restore_flush(r.d.restorer, 0, &out, &ol) == 0);
    CHECK_EQ_STR(out, "Sure a@x.org and b@y.org, card 4111 1111 1111 1111");
    free(out);
    policy_decision_deinit(&r.d);
}

static void test_redact_in_tools(void)
{
    /* OpenAI tool arguments are a JSON string inside the JSON: the placeholder keeps both valid */
    const char *b =
        "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"c\","
        "\"type\":\"function\",\"function\":{\"name\":\"send\",\"arguments\":"
        "\"{\\\"to\\\":\\\"bob@x.org\\\",\\\"cc\\\":\\\"bob\\\\u0040x.org\\\"}\"}}]}]}";
    const char *want =
        "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"c\","
        "\"type\":\"function\",\"function\":{\"name\":\"send\",\"arguments\":"
        "\"{\\\"to\\\":\\\"[EMAIL_1]\\\",\\\"cc\\\":\\\"[EMAIL_1]\\\"}\"}}]}]}";
    struct policy_input in = {
        .api = POLICY_API_OPENAI, .body = b, .len = strlen(b), .model = "gpt-4o"};
    struct policy_decision d;
    REQUIRE(policy_decide(pol, &in, &d) == 0);
    /* "bob\\u0040x.org" decodes to the text bob\u0040x.org, an '@' written as an escape one
     * level down: understood as the same address (issue 13), and given the same placeholder */
    CHECK_EQ_INT(d.n_findings, 2);
    CHECK(d.verdict == POLICY_REDACT && d.body && strcmp(d.body, want) == 0);
    policy_decision_deinit(&d);

    const char *a =
        "{\"model\":\"claude-x\",\"messages\":[{\"role\":\"assistant\",\"content\":[{\"type\":"
        "\"tool_use\",\"id\":\"t\",\"name\":\"n\",\"input\":{\"to\":[\"a@x.org\",\"b@x.org\"],"
        "\"n\":1}}]}]}";
    const char *aw =
        "{\"model\":\"claude-x\",\"messages\":[{\"role\":\"assistant\",\"content\":[{\"type\":"
        "\"tool_use\",\"id\":\"t\",\"name\":\"n\",\"input\":{\"to\":[\"[EMAIL_1]\",\"[EMAIL_2]\"],"
        "\"n\":1}}]}]}";
    struct policy_input ia = {
        .api = POLICY_API_ANTHROPIC, .body = a, .len = strlen(a), .model = "claude-x"};
    REQUIRE(policy_decide(pol, &ia, &d) == 0);
    CHECK(d.verdict == POLICY_REDACT && d.body && strcmp(d.body, aw) == 0);
    policy_decision_deinit(&d);
}

static void test_redact_only_listed(void)
{
    struct res r;
    /* alice: redact credit_card and email, not the phone */
    decide(&r, POLICY_API_ANTHROPIC, "claude-x", "alice", "eng",
           "4111111111111111 me@corp.example.com +44 20 7946 0958");
    REQUIRE(r.rc == 0 && r.d.verdict == POLICY_REDACT);
    CHECK(strstr(r.d.body, "[CREDIT_CARD_1] [EMAIL_1] +44 20 7946 0958") != NULL);
    CHECK_EQ_INT(r.d.n_findings, 3);
    policy_decision_deinit(&r.d);
}

static void test_locations_both_apis(void)
{
    /* a secret in each place the model reads blocks the request */
    const char *k = "AKIAIOSFODNN7EXAMPLE";
    const char *oa[] = {
        "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"system\",\"content\":\"%s\"}]}",
        "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\","
        "\"text\":\"%s\"}]}]}",
        "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"type\":"
        "\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"k\\\":\\\"%s\\\"}\"}}]}]}",
        "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"tool\",\"tool_call_id\":\"x\",\"content\":"
        "\"%s\"}]}",
    };
    const char *an[] = {
        "{\"model\":\"claude-x\",\"system\":\"%s\",\"messages\":[]}",
        "{\"model\":\"claude-x\",\"system\":[{\"type\":\"text\",\"text\":\"%s\"}],\"messages\":[]}",
        "{\"model\":\"claude-x\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\","
        "\"text\":\"%s\"}]}]}",
        "{\"model\":\"claude-x\",\"messages\":[{\"role\":\"assistant\",\"content\":[{\"type\":"
        "\"tool_use\",\"id\":\"t\",\"name\":\"n\",\"input\":{\"deep\":[{\"k\":\"%s\"}]}}]}]}",
        "{\"model\":\"claude-x\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"tool_"
        "result\",\"tool_use_id\":\"t\",\"content\":\"%s\"}]}]}",
        "{\"model\":\"claude-x\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"tool_"
        "result\",\"tool_use_id\":\"t\",\"content\":[{\"type\":\"text\",\"text\":\"%s\"}]}]}]}",
    };
    for (int api = 0; api < 2; api++) {
        const char **v = api ? an : oa;
        size_t n = api ? sizeof(an) / sizeof(*an) : sizeof(oa) / sizeof(*oa);
        for (size_t i = 0; i < n; i++) {
            char body[1024];
            snprintf(body, sizeof(body), v[i], k);
            struct policy_input in = {.api = api ? POLICY_API_ANTHROPIC : POLICY_API_OPENAI,
                                      .body = body,
                                      .len = strlen(body),
                                      .model = api ? "claude-x" : "gpt-4o"};
            struct policy_decision d;
            CHECK(policy_decide(pol, &in, &d) == 0);
            CHECK(d.verdict == POLICY_BLOCK && d.n_findings == 1);
            if (d.n_findings == 1) {
                CHECK(memcmp(body + d.findings[0].start, k, strlen(k)) == 0);
                CHECK_EQ_INT(d.findings[0].end - d.findings[0].start, strlen(k));
                CHECK_EQ_INT(d.findings[0].message, api && strstr(v[i], "\"system\"") ? -1 : 0);
            }
            policy_decision_deinit(&d);
        }
    }
}

static void test_secret_json_key(void)
{
    /* a tool input whose key says secret: the value is a generic secret */
    const char *b =
        "{\"model\":\"claude-x\",\"messages\":[{\"role\":\"assistant\",\"content\":[{\"type\":"
        "\"tool_use\",\"id\":\"t\",\"name\":\"login\",\"input\":{\"user\":\"bob\",\"db_password\":"
        "\"Zq8!rT2#mW5xLp9v\"}}]}]}";
    struct policy_input in = {
        .api = POLICY_API_ANTHROPIC, .body = b, .len = strlen(b), .model = "claude-x"};
    struct policy_decision d;
    CHECK(policy_decide(pol, &in, &d) == 0);
    CHECK(d.n_findings == 1 && strcmp(d.findings[0].detector, "generic_secret") == 0);
    CHECK(d.verdict == POLICY_BLOCK);
    policy_decision_deinit(&d);
}

/* a value split between two text parts of one message, which the model reads as one text:
 * found at the junction (its finding is the part in the first segment), blocked by a
 * blocking rule, refused (-1) by a redacting one; parts of two messages are not joined */
static void test_split_parts(void)
{
    const char *b = "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
                    "\"text\",\"text\":\"key AKIAIOSF\"},{\"type\":\"text\",\"t\\u0065xt\":"
                    "\"ODNN7EXAMPLQ ok\"}]}]}";
    struct policy_input in = {
        .api = POLICY_API_OPENAI, .body = b, .len = strlen(b), .model = "gpt-4o"};
    struct policy_decision d;
    CHECK(policy_decide(pol, &in, &d) == 0);
    CHECK(d.verdict == POLICY_BLOCK && strcmp(d.rule, "no-secrets-out") == 0);
    CHECK(d.n_findings == 1 && strcmp(d.findings[0].detector, "aws_access_key") == 0);
    CHECK(d.n_findings == 1 && d.findings[0].end - d.findings[0].start == 8 &&
          memcmp(b + d.findings[0].start, "AKIAIOSF", 8) == 0);
    policy_decision_deinit(&d);

    /* an e-mail (pii: mask-pii redacts) split: cannot be redacted in place */
    b = "{\"model\":\"claude-x\",\"max_tokens\":9,\"messages\":[{\"role\":\"user\",\"content\":["
        "{\"type\":\"text\",\"text\":\"mail jane.doe@exa\"},{\"type\":\"text\",\"text\":"
        "\"mple.com now\"}]}]}";
    in = (struct policy_input){
        .api = POLICY_API_ANTHROPIC, .body = b, .len = strlen(b), .model = "claude-x"};
    CHECK(policy_decide(pol, &in, &d) == -1 && strstr(d.error, "split across two text parts"));
    policy_decision_deinit(&d);

    /* a whole e-mail in the first part, glued to the next part's word: the whole-part
     * finding is redacted as before, no split finding */
    b = "{\"model\":\"claude-x\",\"max_tokens\":9,\"messages\":[{\"role\":\"user\",\"content\":["
        "{\"type\":\"text\",\"text\":\"mail jane.doe@example.com\"},{\"type\":\"text\",\"text\":"
        "\"then\"}]}]}";
    in.body = b;
    in.len = strlen(b);
    CHECK(policy_decide(pol, &in, &d) == 0 && d.verdict == POLICY_REDACT && d.n_findings == 1);
    policy_decision_deinit(&d);

    /* two messages are two texts */
    b = "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
        "\"text\",\"text\":\"key AKIAIOSF\"}]},{\"role\":\"user\",\"content\":[{\"type\":\"text\","
        "\"text\":\"ODNN7EXAMPLQ ok\"}]}]}";
    in = (struct policy_input){
        .api = POLICY_API_OPENAI, .body = b, .len = strlen(b), .model = "gpt-4o"};
    CHECK(policy_decide(pol, &in, &d) == 0 && d.verdict == POLICY_ALLOW && d.n_findings == 0);
    policy_decision_deinit(&d);
}

static void test_walk_order_not_body_order(void)
{
    /* "text" is read before "content" in a block, but appears after it in the body */
    const char *b =
        "{\"model\":\"claude-x\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
        "\"tool_result\",\"content\":\"z@z.org\",\"text\":\"a@a.org\"}]}]}";
    const char *want =
        "{\"model\":\"claude-x\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
        "\"tool_result\",\"content\":\"[EMAIL_1]\",\"text\":\"[EMAIL_2]\"}]}]}";
    struct policy_input in = {
        .api = POLICY_API_ANTHROPIC, .body = b, .len = strlen(b), .model = "claude-x"};
    struct policy_decision d;
    CHECK(policy_decide(pol, &in, &d) == 0);
    CHECK(d.n_findings == 2 && d.findings[0].start < d.findings[1].start);
    CHECK(d.verdict == POLICY_REDACT && d.body && strcmp(d.body, want) == 0);
    policy_decision_deinit(&d);
}

/* Concurrent callers share one policy (scratch comes from a locked pool). */
static void *worker(void *arg)
{
    long bad = 0;
    (void)arg;
    for (int i = 0; i < 300; i++) {
        struct res r;
        decide(&r, POLICY_API_OPENAI, "gpt-4o", NULL, NULL,
               "mail a@x.org and 4111111111111111 now");
        if (r.rc != 0 || r.d.verdict != POLICY_REDACT || r.d.n_findings != 2 || !r.d.body ||
            !strstr(r.d.body, "[EMAIL_1] and [CREDIT_CARD_1]"))
            bad++;
        policy_decision_deinit(&r.d);
    }
    return (void *)bad;
}

static void test_threads(void)
{
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        REQUIRE(pthread_create(&th[i], NULL, worker, NULL) == 0);
    long total = 0;
    for (int i = 0; i < 4; i++) {
        void *rv;
        pthread_join(th[i], &rv);
        total += (long)rv;
    }
    CHECK_EQ_INT(total, 0);
}

/* Many findings, most repeated: numbering stays per distinct value. */
static void test_many_duplicates(void)
{
    size_t n = 20000;
    char *b = malloc(n * 24 + 128);
    size_t len =
        (size_t)sprintf(b, "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"");
    for (size_t i = 0; i < n; i++)
        len += (size_t)sprintf(b + len, "u%zu@x.org ", i % 3);
    len += (size_t)sprintf(b + len, "\"}]}");
    struct policy_input in = {.api = POLICY_API_OPENAI, .body = b, .len = len, .model = "gpt-4o"};
    struct policy_decision d;
    REQUIRE(policy_decide(pol, &in, &d) == 0);
    CHECK(d.verdict == POLICY_REDACT && d.n_findings == n);
    CHECK(d.body && strstr(d.body, "[EMAIL_1] [EMAIL_2] [EMAIL_3] [EMAIL_1] ") != NULL);
    CHECK(d.body && !strstr(d.body, "[EMAIL_4]"));
    policy_decision_deinit(&d);
    free(b);
}

/* Repetitive hostile bodies: every one is decided or refused with a reason (these were
 * quadratic once: long digit clusters, long dotted runs, repeated PEM armour). */
static void test_hostile_repetition(void)
{
    static const char *const units[] = {"1 ",
                                        "4111 ",
                                        "1.1.1.1.",
                                        "(1",
                                        "+1 ",
                                        "a@b.co ",
                                        "--BEGIN PRIVATE KEY-----",
                                        "AB12 ",
                                        "x@",
                                        "\\n",
                                        "password ",
                                        "eyJhbGciOiJIUzI1NiJ9.eyJ."};
    size_t target = 256 * 1024;
    char *b = malloc(target + 128);
    REQUIRE(b);
    for (size_t u = 0; u < sizeof(units) / sizeof(*units); u++) {
        size_t ul = strlen(units[u]);
        size_t n = (size_t)sprintf(
            b, "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"");
        while (n + ul < target) {
            memcpy(b + n, units[u], ul);
            n += ul;
        }
        n += (size_t)sprintf(b + n, "\"}]}");
        struct policy_input in = {.api = POLICY_API_OPENAI, .body = b, .len = n, .model = "gpt-4o"};
        struct policy_decision d;
        int rc = policy_decide(pol, &in, &d);
        CHECK(rc == 0 || (rc == -1 && d.error[0] && d.verdict == POLICY_BLOCK));
        for (size_t i = 1; i < d.n_findings; i++)
            CHECK(d.findings[i - 1].end <= d.findings[i].start);
        policy_decision_deinit(&d);
    }
    free(b);
}

static void test_bad_custom_regex(void)
{
    const char *y =
        "providers:\n  p: {type: openai, zone: external, base_url: \"https://a.example/v1\"}\n"
        "models:\n  - {name: m, provider: p, price: {input_per_mtok: 1, output_per_mtok: 1}}\n"
        "detectors:\n  - {name: broken, regex: \"a(b\"}\n"
        "rules:\n  - name: any\n    then: {action: allow}\n";
    struct config *c = NULL;
    struct policy *p = NULL;
    struct config_errors errs = {0};
    REQUIRE(config_load_text("b.yaml", y, strlen(y), NULL, &c, &errs) == 0);
    CHECK(policy_new(c, &p, &errs) == -1);
    CHECK(errs.n == 1 && errs.items[0].line == 6 && strstr(errs.items[0].message, "broken"));
    policy_free(p);
    config_unref(c);
}

/* issue 13: a rule can match content the scanner could not read (`unscanned: [image]`):
 * images kept home, blocked or allowed to named providers; without such a rule they pass
 * as before. An unknown kind is a config error with its position. */
static void test_unscanned_condition(void)
{
    const char *y =
        "providers:\n  p: {type: openai, zone: external, base_url: \"https://a.example/v1\"}\n"
        "  corp: {type: openai-compatible, zone: internal, base_url: "
        "\"https://llm.corp.example/v1\"}\n"
        "models:\n  - {name: m, provider: p, price: {input_per_mtok: 1, output_per_mtok: 1}}\n"
        "  - {name: corp-llm, provider: corp, price: {input_per_mtok: 0, output_per_mtok: 0}}\n"
        "rules:\n  - {name: images-home, if: {unscanned: [image]}, then: {action: route, model: "
        "corp-llm}}\n"
        "  - {name: any, then: {action: allow}}\n";
    const char *img =
        "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\","
        "\"image_url\":{\"url\":\"data:image/"
        "png;base64,iVBORw0KGgo=\"}},{\"type\":\"text\",\"text\":\"what?\"}]}]}";
    const char *txt = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"what?\"}]}";
    struct config *c = NULL;
    struct policy *p = NULL;
    struct config_errors errs = {0};
    struct policy_decision d;
    REQUIRE(config_load_text("u.yaml", y, strlen(y), NULL, &c, &errs) == 0);
    REQUIRE(policy_new(c, &p, &errs) == 0);
    struct policy_input in = {
        .api = POLICY_API_OPENAI, .body = img, .len = strlen(img), .model = "m"};
    CHECK(policy_decide(p, &in, &d) == 0);
    CHECK(d.verdict == POLICY_ROUTE && strcmp(d.rule, "images-home") == 0 &&
          (d.unscanned & POLICY_UNSCANNED_IMAGE) && strcmp(d.model, "corp-llm") == 0);
    policy_decision_deinit(&d);
    in.body = txt;
    in.len = strlen(txt);
    CHECK(policy_decide(p, &in, &d) == 0);
    CHECK(d.verdict == POLICY_ALLOW && strcmp(d.rule, "any") == 0 && d.unscanned == 0);
    policy_decision_deinit(&d);
    policy_free(p);
    config_unref(c);
    const char *bad =
        "providers:\n  p: {type: openai, zone: external, base_url: \"https://a.example/v1\"}\n"
        "models:\n  - {name: m, provider: p, price: {input_per_mtok: 1, output_per_mtok: 1}}\n"
        "rules:\n  - {name: r, if: {unscanned: [video]}, then: {action: block}}\n";
    struct config_errors e2 = {0};
    c = NULL;
    CHECK(config_load_text("v.yaml", bad, strlen(bad), NULL, &c, &e2) < 0);
    CHECK(e2.n >= 1 && e2.items[0].line == 6 &&
          strstr(e2.items[0].message, "unknown kind 'video'"));
    if (c)
        config_unref(c);
}

int main(void)
{
    struct config_errors errs = {0};
    if (config_load_text("t.yaml", YAML, strlen(YAML), NULL, &cfg, &errs) < 0) {
        char buf[4096];
        config_errors_format(&errs, buf, sizeof(buf));
        fprintf(stderr, "%s", buf);
        return 1;
    }
    if (policy_new(cfg, &pol, &errs) < 0) {
        fprintf(stderr, "policy_new: %s\n", errs.n ? errs.items[0].message : "?");
        return 1;
    }
    RUN(test_first_match_and_conditions);
    RUN(test_allow_unknown_model);
    RUN(test_fail_closed);
    RUN(test_redact_bytes);
    RUN(test_redact_in_tools);
    RUN(test_redact_only_listed);
    RUN(test_locations_both_apis);
    RUN(test_secret_json_key);
    RUN(test_walk_order_not_body_order);
    RUN(test_threads);
    RUN(test_many_duplicates);
    RUN(test_hostile_repetition);
    RUN(test_bad_custom_regex);
    RUN(test_custom_overlapping_builtin_fires);
    RUN(test_custom_overlapping_builtin_redacted);
    RUN(test_exempt);
    RUN(test_unscanned_condition);
    RUN(test_split_parts);
    policy_free(pol);
    config_unref(cfg);
    return harness_done();
}
