/* test_detectors.c -- each built-in detector and validator: true hits with exact spans, and
 * the look-alikes that must not fire (Luhn failures, bad IBAN check digits, reserved SSNs,
 * UUIDs, git hashes, versions, dates). */
#include <cJSON.h>

#include "harness.h"
#include "config/config.h"
#include "policy/policy.h"
#include "policy/policy_int.h"

static struct config *cfg;
static struct policy *pol;

static const char *YAML =
    "providers:\n"
    "  openai: {type: openai, zone: external, base_url: \"https://api.openai.com/v1\", api_key: x}\n"
    "models:\n"
    "  - {name: gpt-4o, provider: openai, price: {input_per_mtok: 1, output_per_mtok: 1}}\n"
    "detectors:\n"
    "  - {name: project, keywords: [Bluebird, \"c++ core\"]}\n"
    "  - {name: ticket, regex: \"TCK-[0-9]{4}\"}\n"
    "rules:\n"
    "  - name: all\n"
    "    then: {action: allow}\n";

/* Scan `text` as one user message; returns the findings of `det` (or all when NULL),
 * with spans relative to the start of the JSON-escaped text. */
static size_t scan(const char *text, const char *det, size_t *s, size_t *e)
{
    cJSON *str = cJSON_CreateString(text);
    char *q = cJSON_PrintUnformatted(str);
    cJSON_Delete(str);
    const char *pre = "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":";
    size_t plen = strlen(pre) + 1, n = 0;
    char *body = malloc(strlen(pre) + strlen(q) + 8);
    sprintf(body, "%s%s}]}", pre, q);
    struct policy_input in = {.api = POLICY_API_OPENAI, .body = body, .len = strlen(body),
                              .model = "gpt-4o"};
    struct policy_decision d;
    if (policy_decide(pol, &in, &d) == 0) {
        for (size_t i = 0; i < d.n_findings; i++) {
            if (det && strcmp(d.findings[i].detector, det) != 0)
                continue;
            if (n == 0 && s) {
                *s = d.findings[i].start - plen;
                *e = d.findings[i].end - plen;
            }
            n++;
        }
    } else {
        fprintf(stderr, "  decide failed: %s\n", d.error);
    }
    policy_decision_deinit(&d);
    free(body);
    cJSON_free(q);
    return n;
}

/* text contains exactly one `det` finding and it covers `want`. */
static int hit(const char *text, const char *det, const char *want)
{
    size_t s = 0, e = 0;
    size_t n = scan(text, det, &s, &e);
    /* spans are in the body, where the text is JSON-escaped */
    cJSON *a = cJSON_CreateString(text), *b = cJSON_CreateString(want);
    char *qa = cJSON_PrintUnformatted(a), *qb = cJSON_PrintUnformatted(b);
    qb[strlen(qb) - 1] = 0;
    const char *w = strstr(qa + 1, qb + 1);
    size_t ws = w ? (size_t)(w - qa - 1) : 0, wl = strlen(qb + 1);
    cJSON_free(qa);
    cJSON_free(qb);
    cJSON_Delete(a);
    cJSON_Delete(b);
    if (n != 1 || !w || s != ws || e != ws + wl) {
        fprintf(stderr, "  hit(%s, \"%s\"): n=%zu span=[%zu,%zu)\n", det, text, n, s, e);
        return 0;
    }
    return 1;
}

static int miss(const char *text, const char *det)
{
    size_t n = scan(text, det, NULL, NULL);
    if (n)
        fprintf(stderr, "  miss(%s, \"%s\"): %zu findings\n", det ? det : "*", text, n);
    return n == 0;
}

static void test_email(void)
{
    CHECK(hit("write to bob.smith+tag@mail.example.co.uk today", "email", "bob.smith+tag@mail.example.co.uk"));
    CHECK(hit("<alice@example.org>.", "email", "alice@example.org"));
    CHECK(miss("user@localhost is not an address", "email"));
    CHECK(miss("a@b.c and x@-bad.com and y@bad-.com", "email"));
    CHECK(miss("version 1.2@3.4", "email"));
    CHECK(miss("name..dots@example.com", "email"));
    CHECK(miss("@handle on twitter", "email"));
}

static void test_phone(void)
{
    CHECK(hit("call +1 212-555-0134 now", "phone", "+1 212-555-0134"));
    CHECK(hit("call (212) 555-0134.", "phone", "(212) 555-0134"));
    CHECK(hit("office 212.555.0134", "phone", "212.555.0134"));
    CHECK(hit("uk 020 7946 0958 ok", "phone", "020 7946 0958"));
    CHECK(hit("de +49 30 12345678", "phone", "+49 30 12345678"));
    CHECK(hit("fr 01 23 45 67 89", "phone", "01 23 45 67 89"));
    CHECK(miss("on 2024-01-15 at 10:30", "phone"));
    CHECK(miss("date 15/01/2024 and 03-04-2024", "phone"));
    CHECK(miss("release 10.2.3.4 and 1.22.333", "phone"));
    CHECK(miss("host 192.168.100.200", "phone"));
    CHECK(miss("order 1234567890 shipped", "phone"));
    CHECK(miss("id 123e4567-e89b-12d3-a456-426614174000", "phone"));
    CHECK(miss("area code 112 555 0134", "phone")); /* NANP area starts 2-9 */
    CHECK(hit("tel:+1 (212) 555-0134;", "phone", "+1 (212) 555-0134"));
    CHECK(hit("ring +44 (0)20 7946 0958 today", "phone", "+44 (0)20 7946 0958"));
    CHECK(hit("compact +4915112345678.", "phone", "+4915112345678"));
    CHECK(miss("score +12 points", "phone"));
}

static void test_credit_card(void)
{
    CHECK(hit("visa 4111 1111 1111 1111 exp", "credit_card", "4111 1111 1111 1111"));
    CHECK(hit("mc 5500-0000-0000-0004", "credit_card", "5500-0000-0000-0004"));
    CHECK(hit("amex 378282246310005.", "credit_card", "378282246310005"));
    CHECK(hit("amex 3782 822463 10005", "credit_card", "3782 822463 10005"));
    CHECK(hit("disc 6011111111111117", "credit_card", "6011111111111117"));
    CHECK(hit("first 1234 then 4111111111111111", "credit_card", "4111111111111111"));
    CHECK(miss("luhn fails 4111 1111 1111 1112", "credit_card"));
    CHECK(miss("bad iin 1234 5678 9012 3452", "credit_card"));
    CHECK(miss("all same 4444444444444444", "credit_card"));
    CHECK(miss("mixed seps 4111-1111 1111 1111", "credit_card"));
    CHECK(miss("too long 41111111111111111111111", "credit_card"));
    CHECK(miss("ts 1700000000000", "credit_card"));
}

static void test_iban(void)
{
    CHECK(hit("pay DE89 3704 0044 0532 0130 00 now", "iban", "DE89 3704 0044 0532 0130 00"));
    CHECK(hit("GB82WEST12345698765432", "iban", "GB82WEST12345698765432"));
    CHECK(hit("FR14 2004 1010 0505 0001 3M02 606 and more", "iban", "FR14 2004 1010 0505 0001 3M02 606"));
    CHECK(miss("DE88 3704 0044 0532 0130 00", "iban"));   /* check digits */
    CHECK(miss("DE89 3704 0044 0532 0130 0", "iban"));    /* length */
    CHECK(miss("XX89 3704 0044 0532 0130 00", "iban"));   /* country */
    CHECK(miss("DE89370400440532013000123", "iban"));     /* too long for DE */
    CHECK(policy_iban_check("NL91ABNA0417164300", 18));
    CHECK(!policy_iban_check("NL92ABNA0417164300", 18));
}

static void test_ssn(void)
{
    CHECK(hit("ssn 123-45-6789.", "us_ssn", "123-45-6789"));
    CHECK(hit("ssn 123 45 6789", "us_ssn", "123 45 6789"));
    CHECK(miss("000-12-3456", "us_ssn"));
    CHECK(miss("666-12-3456", "us_ssn"));
    CHECK(miss("912-12-3456", "us_ssn"));
    CHECK(miss("123-00-4567", "us_ssn"));
    CHECK(miss("123-45-0000", "us_ssn"));
    CHECK(miss("1-123-45-6789-2", "us_ssn"));
    CHECK(miss("123456789", "us_ssn"));
}

static void test_ipv4(void)
{
    CHECK(hit("ssh to 10.20.30.40:22", "ipv4", "10.20.30.40"));
    CHECK(hit("(255.255.255.0)", "ipv4", "255.255.255.0"));
    CHECK(miss("bad 10.0.0.256", "ipv4"));
    CHECK(miss("lead 10.01.0.1", "ipv4"));
    CHECK(miss("v1.2.3.4", "ipv4"));
    CHECK(miss("version 1.2.3.4", "ipv4"));
    CHECK(miss("ver. 1.2.3.4", "ipv4"));
    CHECK(miss("oid 1.2.3.4.5", "ipv4"));
}

static void test_private_key(void)
{
    const char *k = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----";
    char buf[256];
    snprintf(buf, sizeof(buf), "key: %s trailing", k);
    size_t s, e;
    CHECK(scan(buf, "private_key", &s, &e) == 1);
    CHECK(hit("-----BEGIN RSA PRIVATE KEY-----\nMIIE", "private_key", "-----BEGIN RSA PRIVATE KEY-----\nMIIE"));
    CHECK(scan("-----BEGIN ENCRYPTED PRIVATE KEY-----\nabc\n-----END ENCRYPTED PRIVATE KEY-----", "private_key", NULL, NULL) == 1);
    CHECK(scan("-----BEGIN EC PRIVATE KEY-----\nabc\n-----END EC PRIVATE KEY-----", "private_key", NULL, NULL) == 1);
    CHECK(miss("-----BEGIN PUBLIC KEY-----\nabc\n-----END PUBLIC KEY-----", "private_key"));
    CHECK(miss("-----BEGIN CERTIFICATE-----", NULL));
}

static void test_tokens(void)
{
    CHECK(hit("aws AKIAIOSFODNN7EXAMPLE x", "aws_access_key", "AKIAIOSFODNN7EXAMPLE"));
    CHECK(hit("ASIAY34FZKBOKMUTVV7A", "aws_access_key", "ASIAY34FZKBOKMUTVV7A"));
    CHECK(miss("AKIAIOSFODNN7EXAMPLEXX", "aws_access_key"));
    CHECK(miss("AKIAAAAAAAAAAAAAAAAA", "aws_access_key"));
    CHECK(hit("gh ghp_R2d2C3poLuke0123456789abcdefGHIJKLmn done", "github_token", "ghp_R2d2C3poLuke0123456789abcdefGHIJKLmn"));
    CHECK(miss("ghp_short123", "github_token"));
    CHECK(hit("github_pat_11ABCDEFG0123456789abc_0123456789abcdefghijABCDEFGHIJ0123456789abcdefghijABCDEFGHI",
              "github_token", "github_pat_11ABCDEFG0123456789abc_0123456789abcdefghijABCDEFGHIJ0123456789abcdefghijABCDEFGHI"));
    CHECK(hit("key sk-proj-Ab3dEf0123456789AbCdEf0123456789xyzXYZ_-q", "openai_key", "sk-proj-Ab3dEf0123456789AbCdEf0123456789xyzXYZ_-q"));
    CHECK(hit("sk-T3BlbkFJabcdefghij0123456789ABCDEFGHIJKLmnopqr", "openai_key", "sk-T3BlbkFJabcdefghij0123456789ABCDEFGHIJKLmnopqr"));
    CHECK(hit("sk-svcacct-Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2Rr1Qq0PpOoNnMm", "openai_key", "sk-svcacct-Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2Rr1Qq0PpOoNnMm"));
    CHECK(miss("pip install sk-learn-classification-model-v2-for-everyone", "openai_key"));
    CHECK(miss("sk-ant-api03-Ab3dEf0123456789AbCdEf0123456789xyzXYZ", "openai_key"));
    CHECK(hit("x sk-ant-api03-Ab3dEf0123456789AbCdEf0123456789xyzXYZ-_AAA y", "anthropic_key", "sk-ant-api03-Ab3dEf0123456789AbCdEf0123456789xyzXYZ-_AAA"));
    CHECK(hit("sk-ant-admin01-Ab3dEf0123456789AbCdEf0123456789xyzXYZ", "anthropic_key", "sk-ant-admin01-Ab3dEf0123456789AbCdEf0123456789xyzXYZ"));
    CHECK(miss("sk-ant-api03-short", "anthropic_key"));
}

static void test_jwt(void)
{
    const char *jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
    char buf[512];
    snprintf(buf, sizeof(buf), "Authorization: Bearer %s", jwt);
    CHECK(hit(buf, "jwt", jwt));
    CHECK(miss(buf, "generic_secret")); /* same span: jwt wins the tie */
    /* header without alg */
    CHECK(miss("eyJ0eXAiOiJKV1QifQ.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV", "jwt"));
    /* header not JSON */
    CHECK(miss("eyJhbGciOiJIUzI1NiIsInR5cCI.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV", "jwt"));
}

static void test_generic_secret(void)
{
    CHECK(hit("password: Xk9#mQ2vLp8Rt5wZ3 ok", "generic_secret", "Xk9#mQ2vLp8Rt5wZ3"));
    CHECK(hit("export API_KEY=AbC123dEf456GhI789jKl", "generic_secret", "AbC123dEf456GhI789jKl"));
    CHECK(hit("{\"client_secret\": \"9fK2mQ7xLp3Rt8wZ5vB1\"}", "generic_secret", "9fK2mQ7xLp3Rt8wZ5vB1"));
    CHECK(hit("db_password='Tr0ub4dor&3xkcdHorse'", "generic_secret", "Tr0ub4dor&3xkcdHorse"));
    CHECK(miss("my password is hunter2", "generic_secret"));
    CHECK(miss("password: aaaaaaaaaaaaaaaaaaaaaaaa", "generic_secret"));
    CHECK(miss("the token count was 1234567890123456 today", "generic_secret"));
    CHECK(miss("the author: JohnSmithTheThird1234x", "generic_secret"));
    CHECK(miss("the secretary badge Xk9mQ2vLp8Rt5wZ3aa", "generic_secret"));
    CHECK(miss("tokenizer vocab file Xk9mQ2vLp8Rt5wZ3aa", "generic_secret"));
    CHECK(miss("request token 123e4567-e89b-12d3-a456-426614174000", "generic_secret"));
    CHECK(miss("Xk9#mQ2vLp8Rt5wZ3 with no word nearby", "generic_secret"));
    CHECK(miss("password\nXk9#mQ2vLp8Rt5wZ3", "generic_secret"));
    CHECK(miss("commit 3f786850e387550fdab836ed7e6dc881de23001b", NULL));
}

static void test_custom(void)
{
    CHECK(hit("the bluebird launch", "project", "bluebird"));
    CHECK(miss("bluebirds are birds", "project"));
    CHECK(hit("see C++ Core notes", "project", "C++ Core"));
    CHECK(hit("ticket TCK-1234 open", "ticket", "TCK-1234"));
    CHECK(miss("TCK-12 only", "ticket"));
}

static void test_benign(void)
{
    CHECK(miss("Hello! Please summarise the attached meeting notes in three bullets.", NULL));
    CHECK(miss("uuid 123e4567-e89b-12d3-a456-426614174000 and sha 3f786850e387550fdab836ed7e6dc881de23001b", NULL));
    CHECK(miss("python 3.11.4 released 2023-06-06, build 20230606.1", NULL));
    CHECK(miss("the total is 1,234,567.89 USD on 12/31/2024", NULL));
}

static void test_overlap(void)
{
    /* a card number is not also a phone; findings come sorted and disjoint */
    size_t s, e;
    CHECK(scan("4111 1111 1111 1111", NULL, &s, &e) == 1);
    CHECK(scan("a bob@example.com b 4111111111111111 c 10.0.0.1", NULL, NULL, NULL) == 3);
}

static void test_corpus_regressions(void)
{
    /* a token in a URL's user@host is the token, not an email or a generic secret */
    CHECK(hit("git clone https://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@github.com/acme/app.git",
              "github_token", "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"));
    CHECK(miss("git clone https://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@github.com/acme/app.git", "email"));
    /* a log line: "auth ... user=EMAIL" is an email */
    CHECK(hit("12:00:01 auth ok user=amelie_ivanova52@example.org", "email", "amelie_ivanova52@example.org"));
    CHECK(miss("12:00:01 auth ok user=amelie_ivanova52@example.org", "generic_secret"));
    /* a JWT in a query string beats the generic secret */
    CHECK(hit("callback?token=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c&state=xyz",
              "jwt", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"));
    /* a card-like run inside a valid IBAN is the IBAN */
    CHECK(hit("IBAN CH73 6564 6083 9680 0877 4 ok", "iban", "CH73 6564 6083 9680 0877 4"));
    CHECK(miss("IBAN CH73 6564 6083 9680 0877 4 ok", "credit_card"));
    /* digits glued to other digits are not a phone; an SSN shape is not a phone */
    CHECK(miss("The bank rejected IBAN IT58 P368 7904 9361 0766 7895 348 as invalid.", NULL));
    CHECK(miss("Reference 3707 022288 38220 appears on the statement", NULL));
    CHECK(miss("Our validator rejects 011-00-8127; is that pattern issued?", NULL));
    /* a card followed by its CVV */
    CHECK(hit("card 4111 1111 1111 1111 123 exp 09/27", "credit_card", "4111 1111 1111 1111"));
    CHECK(hit("-----BEGIN PRIVATE KEY-----\nMIIEvQ", "private_key", "-----BEGIN PRIVATE KEY-----\nMIIEvQ"));
    CHECK(hit("an SSN 078-05-1120 in a cluster 12 34", "us_ssn", "078-05-1120"));
}

static void test_helpers(void)
{
    CHECK(policy_luhn("79927398713", 11));
    CHECK(!policy_luhn("79927398710", 11));
    CHECK(policy_entropy("aaaa", 4) == 0);
    CHECK(policy_entropy("abcd", 4) > 1.99 && policy_entropy("abcd", 4) < 2.01);
    CHECK(policy_secret_key_like("db_password", 11));
    CHECK(!policy_secret_key_like("author", 6));
    CHECK(policy_detector_known(cfg, "project"));
    CHECK(policy_detector_known(cfg, "pii"));
    CHECK(policy_detector_known(cfg, "iban"));
    CHECK(!policy_detector_known(cfg, "nope"));
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
    RUN(test_email);
    RUN(test_phone);
    RUN(test_credit_card);
    RUN(test_iban);
    RUN(test_ssn);
    RUN(test_ipv4);
    RUN(test_private_key);
    RUN(test_tokens);
    RUN(test_jwt);
    RUN(test_generic_secret);
    RUN(test_custom);
    RUN(test_benign);
    RUN(test_overlap);
    RUN(test_corpus_regressions);
    RUN(test_helpers);
    policy_free(pol);
    config_unref(cfg);
    return harness_done();
}
