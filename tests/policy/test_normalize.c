/* test_normalize.c -- detector evasion by spelling (issue 13, family 5): each value below is
 * written the way an attacker or a foreign keyboard writes it, and must still be found,
 * its finding must cover the whole original spelling (invisible characters included), and
 * redaction must give back the value as the client wrote it. Plus the normaliser's table
 * (policy_norm_cp) on its own. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "policy/policy.h"
#include "policy/policy_int.h"
#include "tests/harness.h"

static const char *YAML =
    "providers:\n  p: {type: openai, zone: external, base_url: \"https://a.example/v1\"}\n"
    "models:\n  - {name: m, provider: p, price: {input_per_mtok: 1, output_per_mtok: 1}}\n"
    "rules:\n  - {name: mask, then: {action: redact, detectors: [pii, secrets]}}\n";
static struct config *cfg;
static struct policy *pol;

/* the body {"model":"m","messages":[{"role":"user","content":"<raw>"}]}, with raw written
 * into the JSON string as is (escapes and all) */
static int found(const char *raw, const char *det, const char *want_span)
{
    char body[1024];
    struct policy_decision d;
    int ok = 0;
    snprintf(body, sizeof(body),
             "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"see %s now\"}]}",
             raw);
    struct policy_input in = {
        .api = POLICY_API_OPENAI, .body = body, .len = strlen(body), .model = "m"};
    if (policy_decide(pol, &in, &d) < 0) {
        fprintf(stderr, "  %s: %s\n", raw, d.error);
        policy_decision_deinit(&d);
        return 0;
    }
    for (size_t i = 0; i < d.n_findings; i++) {
        const struct policy_finding *f = &d.findings[i];
        if (strcmp(f->detector, det) == 0 && f->end - f->start == strlen(want_span) &&
            memcmp(body + f->start, want_span, f->end - f->start) == 0)
            ok = 1;
    }
    if (!ok) {
        fprintf(stderr, "  %s: wanted %s over '%s'; findings:", raw, det, want_span);
        for (size_t i = 0; i < d.n_findings; i++)
            fprintf(stderr, " %s[%.*s]", d.findings[i].detector,
                    (int)(d.findings[i].end - d.findings[i].start), body + d.findings[i].start);
        fprintf(stderr, "\n");
    }
    /* redacted: none of the original spelling is left in what would leave */
    if (ok && (!d.body || strstr(d.body, want_span))) {
        fprintf(stderr, "  %s: still in the redacted body\n", raw);
        ok = 0;
    }
    /* and the restorer gives the value back as written (escapes decoded) */
    if (ok) {
        const char *ph = strchr(d.body + 40, '[');
        char *out = NULL;
        size_t out_len = 0;
        const char *close = ph ? strchr(ph, ']') : NULL;
        if (!ph || !close ||
            policy_restore_feed(d.restorer, 0, ph, (size_t)(close - ph + 1), &out, &out_len) < 0 ||
            policy_restore_flush(d.restorer, 0, &out, &out_len) < 0)
            ok = 0;
        else {
            size_t wl = 0;
            char *want = policy_extract_original(
                body, (size_t)(strstr(body, want_span) - body),
                (size_t)(strstr(body, want_span) - body) + strlen(want_span), &wl);
            if (!want || out_len != wl || memcmp(out, want, wl) != 0) {
                fprintf(stderr, "  %s: restored '%.*s'\n", raw, (int)out_len, out ? out : "");
                ok = 0;
            }
            free(want);
        }
        free(out);
    }
    policy_decision_deinit(&d);
    return ok;
}

static void test_invisible_characters_inside_values(void)
{
    CHECK(found("AKIA\\u200bQFAKE7EXAMPLE2XY", "aws_access_key", "AKIA\\u200bQFAKE7EXAMPLE2XY"));
    CHECK(found("AKIA\xe2\x80\x8bQFAKE7EXAMPLE2XY", "aws_access_key",
                "AKIA\xe2\x80\x8bQFAKE7EXAMPLE2XY"));
    CHECK(found("AKIAQF\\u2060AKE7EXAMPLE2XY", "aws_access_key", "AKIAQF\\u2060AKE7EXAMPLE2XY"));
    CHECK(found("AKIAQFAKE7\xc2\xad"
                "EXAMPLE2XY",
                "aws_access_key",
                "AKIAQFAKE7\xc2\xad"
                "EXAMPLE2XY"));
    CHECK(found("jane.doe\\ufeff@example.com", "email", "jane.doe\\ufeff@example.com"));
}

static void test_compatibility_forms(void)
{
    /* full-width digits and ideographic spaces */
    CHECK(found("\xef\xbc\x94\xef\xbc\x91\xef\xbc\x91\xef\xbc\x91 "
                "\xef\xbc\x91\xef\xbc\x91\xef\xbc\x91\xef\xbc\x91 "
                "\xef\xbc\x91\xef\xbc\x91\xef\xbc\x91\xef\xbc\x91 "
                "\xef\xbc\x91\xef\xbc\x91\xef\xbc\x91\xef\xbc\x91",
                "credit_card",
                "\xef\xbc\x94\xef\xbc\x91\xef\xbc\x91\xef\xbc\x91 "
                "\xef\xbc\x91\xef\xbc\x91\xef\xbc\x91\xef\xbc\x91 "
                "\xef\xbc\x91\xef\xbc\x91\xef\xbc\x91\xef\xbc\x91 "
                "\xef\xbc\x91\xef\xbc\x91\xef\xbc\x91\xef\xbc\x91"));
    /* a no-break space between the groups of a card */
    CHECK(found("4111\xc2\xa0"
                "1111\xc2\xa0"
                "1111\xc2\xa0"
                "1111",
                "credit_card",
                "4111\xc2\xa0"
                "1111\xc2\xa0"
                "1111\xc2\xa0"
                "1111"));
    /* full-width and small-form commercial at */
    CHECK(found("jane.doe\xef\xbc\xa0"
                "example.com",
                "email",
                "jane.doe\xef\xbc\xa0"
                "example.com"));
    CHECK(found("jane.doe\xef\xb9\xab"
                "example.com",
                "email",
                "jane.doe\xef\xb9\xab"
                "example.com"));
    /* Arabic-Indic digits in an SSN-shaped run */
    CHECK(found("SSN \xd9\xa1\xd9\xa2\xd9\xa3-\xd9\xa4\xd9\xa5-\xd9\xa6\xd9\xa7\xd9\xa8\xd9\xa9",
                "us_ssn",
                "\xd9\xa1\xd9\xa2\xd9\xa3-\xd9\xa4\xd9\xa5-\xd9\xa6\xd9\xa7\xd9\xa8\xd9\xa9"));
    /* an en dash between the groups of a card */
    CHECK(found("4111\xe2\x80\x93"
                "1111\xe2\x80\x93"
                "1111\xe2\x80\x93"
                "1111",
                "credit_card",
                "4111\xe2\x80\x93"
                "1111\xe2\x80\x93"
                "1111\xe2\x80\x93"
                "1111"));
}

/* the separators normalisation yields between the groups of a card or an IBAN (thin and
 * ideographic spaces, en dashes, line separators), and a letter glued on through an
 * invisible character: each still found, its span the whole original spelling */
static void test_separator_kinds(void)
{
    CHECK(found("4111\\u2009 1111\\u2009 1111\\u2009 1111", "credit_card",
                "4111\\u2009 1111\\u2009 1111\\u2009 1111"));
    CHECK(found("4111\\u20281111\\u20281111\\u20281111", "credit_card",
                "4111\\u20281111\\u20281111\\u20281111"));
    CHECK(found("4111\\u30001111\\u30001111\\u30001111", "credit_card",
                "4111\\u30001111\\u30001111\\u30001111"));
    CHECK(found("DE89\\u20133704\\u20130044\\u20130532\\u20130130\\u201300", "iban",
                "DE89\\u20133704\\u20130044\\u20130532\\u20130130\\u201300"));
    CHECK(found("DE89\\u00a0\\u00a03704\\u00a0\\u00a00044\\u00a0\\u00a00532\\u00a0\\u00a00130"
                "\\u00a0\\u00a000",
                "iban",
                "DE89\\u00a0\\u00a03704\\u00a0\\u00a00044\\u00a0\\u00a00532\\u00a0\\u00a00130"
                "\\u00a0\\u00a000"));
    CHECK(found("IBAN\\u200bDE89370400440532013000", "iban", "DE89370400440532013000"));
    CHECK(found("card\\u200d4111111111111111", "credit_card", "4111111111111111"));
    CHECK(found("x\\u00adAKIAQFAKE7EXAMPLE2XY\\u00adx", "aws_access_key", "AKIAQFAKE7EXAMPLE2XY"));
}

static void test_confusables(void)
{
    /* a Cyrillic A and a Greek O in an access key id */
    CHECK(found("\xd0\x90KIAQFAKE7EXAMPLE2XY", "aws_access_key", "\xd0\x90KIAQFAKE7EXAMPLE2XY"));
    CHECK(found("AKIAQFAKE7EXAMPLE2XY", "aws_access_key", "AKIAQFAKE7EXAMPLE2XY"));
    CHECK(found("AKIAQFAKE7EXAMPLE2X\xce\x9f", "aws_access_key", "AKIAQFAKE7EXAMPLE2X\xce\x9f"));
}

static void test_escaped_at_signs(void)
{
    CHECK(found("jane.doe%40example.com", "email", "jane.doe%40example.com"));
    CHECK(found("jane.doe&#64;example.com", "email", "jane.doe&#64;example.com"));
    CHECK(found("jane.doe&#x40;example.com", "email", "jane.doe&#x40;example.com"));
    CHECK(found("jane.doe&commat;example.com", "email", "jane.doe&commat;example.com"));
    /* a backslash-u escape written out in the text (JSON "\\u0040") */
    CHECK(found("jane.doe\\\\u0040example.com", "email", "jane.doe\\\\u0040example.com"));
}

static void test_norm_table(void)
{
    CHECK_EQ_INT(policy_norm_cp('a'), 'a');
    CHECK_EQ_INT(policy_norm_cp(0xFF21), 'A');  /* full-width A */
    CHECK_EQ_INT(policy_norm_cp(0xFF10), '0');  /* full-width 0 */
    CHECK_EQ_INT(policy_norm_cp(0x0669), '9');  /* Arabic-Indic nine */
    CHECK_EQ_INT(policy_norm_cp(0x096A), '4');  /* Devanagari four */
    CHECK_EQ_INT(policy_norm_cp(0x1D7CE), '0'); /* mathematical bold zero */
    CHECK_EQ_INT(policy_norm_cp(0x1D400), 'A'); /* mathematical bold A */
    CHECK_EQ_INT(policy_norm_cp(0x1D41A), 'a'); /* mathematical bold a */
    CHECK_EQ_INT(policy_norm_cp(0x200B), POLICY_NORM_DROP);
    CHECK_EQ_INT(policy_norm_cp(0xE0041), POLICY_NORM_DROP); /* tag A */
    CHECK_EQ_INT(policy_norm_cp(0x00A0), ' ');
    CHECK_EQ_INT(policy_norm_cp(0x2013), '-');
    CHECK_EQ_INT(policy_norm_cp(0xFE6B), '@');
    CHECK_EQ_INT(policy_norm_cp(0x0430), 'a');              /* Cyrillic a */
    CHECK_EQ_INT(policy_norm_cp(0x00E9), POLICY_NORM_KEEP); /* é stays é */
    CHECK_EQ_INT(policy_norm_cp(0x4E2D), POLICY_NORM_KEEP); /* a CJK ideograph */
}

/* benign text in other scripts is not turned into findings by the mapping */
static void test_benign_scripts(void)
{
    static const char *texts[] = {
        "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82, \xd0\xba\xd0\xb0\xd0\xba "
        "\xd0\xb4\xd0\xb5\xd0\xbb\xd0\xb0?",
        "\xce\x9a\xce\xb1\xce\xbb\xce\xb7\xce\xbc\xce\xad\xcf\x81\xce\xb1 \xcf\x83\xce\xb5 "
        "\xcf\x8c\xce\xbb\xce\xbf\xcf\x85\xcf\x82",
        "\xe4\xbb\x8a\xe6\x97\xa5\xe3\x81\xaf\xef\xbc\x91\xef\xbc\x92\xe6\x97\xa5\xe3\x81\xa7\xe3"
        "\x81\x99",
    };
    for (size_t i = 0; i < sizeof(texts) / sizeof(*texts); i++) {
        char body[512];
        struct policy_decision d;
        snprintf(body, sizeof(body),
                 "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}]}",
                 texts[i]);
        struct policy_input in = {
            .api = POLICY_API_OPENAI, .body = body, .len = strlen(body), .model = "m"};
        CHECK(policy_decide(pol, &in, &d) == 0);
        CHECK_EQ_INT(d.n_findings, 0);
        policy_decision_deinit(&d);
    }
}

/* what the egress fuzzer found (fuzz/fuzz_egress.c): escapes one level down (tool arguments
 * are JSON inside a JSON string), '@' spelt with escapes inside its spelling or with
 * leading zeros, rarer look-alike letters */
static void test_fuzzer_families(void)
{
    /* \u0041 written inside the text, as in a tool call's arguments */
    CHECK(found("key \\\\u0041KIAQFAKE7EXAMPLE2XY", "aws_access_key",
                "\\\\u0041KIAQFAKE7EXAMPLE2XY"));
    CHECK(found("jane.doe%4\\u0030example.com", "email", "jane.doe%4\\u0030example.com"));
    CHECK(found("jane.doe&#6\\u0034;example.com", "email", "jane.doe&#6\\u0034;example.com"));
    CHECK(found("jane.doe&#064;example.com", "email", "jane.doe&#064;example.com"));
    CHECK(found("jane.doe&#x0040;example.com", "email", "jane.doe&#x0040;example.com"));
    CHECK(found("AKIAQFAKE7EXAMPLE2X\xd2\xae", "aws_access_key", "AKIAQFAKE7EXAMPLE2X\xd2\xae"));
}

int main(void)
{
    struct config_errors errs = {0};
    if (config_load_text("n.yaml", YAML, strlen(YAML), NULL, &cfg, &errs) < 0 ||
        policy_new(cfg, &pol, &errs) < 0) {
        fprintf(stderr, "setup: %s\n", errs.n ? errs.items[0].message : "?");
        return 1;
    }
    RUN(test_norm_table);
    RUN(test_invisible_characters_inside_values);
    RUN(test_compatibility_forms);
    RUN(test_separator_kinds);
    RUN(test_confusables);
    RUN(test_escaped_at_signs);
    RUN(test_benign_scripts);
    RUN(test_fuzzer_families);
    policy_free(pol);
    config_unref(cfg);
    return harness_done();
}
