/* test_detectors.c -- each built-in detector and validator: true hits with exact spans, and
 * the look-alikes that must not fire (Luhn failures, bad IBAN check digits, reserved SSNs,
 * UUIDs, git hashes, versions, dates), and issue 13's families: national phone forms,
 * labels before bare numbers, PGP keys, credentials in URIs and connection strings,
 * references and placeholders, counters, file names, IBAN-shaped runs, document numbers,
 * and values glued to letters or split by other separators (cards, IBANs, AWS key ids,
 * GitHub tokens, SSNs, labelled phones, e-mail addresses), each with its look-alikes. */
#include <cJSON.h>

#include "config/config.h"
#include "harness.h"
#include "policy/policy.h"
#include "policy/policy_int.h"

static struct config *cfg;
static struct policy *pol;

static const char *YAML =
    "providers:\n"
    "  openai: {type: openai, zone: external, base_url: \"https://api.openai.com/v1\", api_key: "
    "x}\n"
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
    struct policy_input in = {
        .api = POLICY_API_OPENAI, .body = body, .len = strlen(body), .model = "gpt-4o"};
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
    CHECK(hit("write to bob.smith+tag@mail.example.co.uk today", "email",
              "bob.smith+tag@mail.example.co.uk"));
    CHECK(hit("<alice@example.org>.", "email", "alice@example.org"));
    CHECK(miss("user@localhost is not an address", "email"));
    CHECK(miss("a@b.c and x@-bad.com and y@bad-.com", "email"));
    CHECK(miss("version 1.2@3.4", "email"));
    CHECK(hit("name..dots@example.com", "email", "dots@example.com")); /* after the ".." */
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
    CHECK(hit("FR14 2004 1010 0505 0001 3M02 606 and more", "iban",
              "FR14 2004 1010 0505 0001 3M02 606"));
    CHECK(miss("DE88 3704 0044 0532 0130 00", "iban")); /* check digits */
    CHECK(miss("DE89 3704 0044 0532 0130 0", "iban"));  /* length */
    CHECK(miss("XX89 3704 0044 0532 0130 00", "iban")); /* country */
    CHECK(miss("DE89370400440532013000123", "iban"));   /* too long for DE */
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
    const char *k = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END "
                    "OPENSSH PRIVATE KEY-----";
    char buf[256];
    snprintf(buf, sizeof(buf), "key: %s trailing", k);
    size_t s, e;
    CHECK(scan(buf, "private_key", &s, &e) == 1);
    CHECK(hit("-----BEGIN RSA PRIVATE KEY-----\nMIIE", "private_key",
              "-----BEGIN RSA PRIVATE KEY-----\nMIIE"));
    CHECK(scan("-----BEGIN ENCRYPTED PRIVATE KEY-----\nabc\n-----END ENCRYPTED PRIVATE KEY-----",
               "private_key", NULL, NULL) == 1);
    CHECK(scan("-----BEGIN EC PRIVATE KEY-----\nabc\n-----END EC PRIVATE KEY-----", "private_key",
               NULL, NULL) == 1);
    CHECK(miss("-----BEGIN PUBLIC KEY-----\nabc\n-----END PUBLIC KEY-----", "private_key"));
    CHECK(miss("-----BEGIN CERTIFICATE-----", NULL));
}

static void test_tokens(void)
{
    CHECK(hit("aws AKIAIOSFODNN7EXAMPLE x", "aws_access_key", "AKIAIOSFODNN7EXAMPLE"));
    CHECK(hit("ASIAY34FZKBOKMUTVV7A", "aws_access_key", "ASIAY34FZKBOKMUTVV7A"));
    CHECK(hit("AKIAIOSFODNN7EXAMPLEXX", "aws_access_key", "AKIAIOSFODNN7EXAMPLE")); /* split */
    CHECK(miss("AKIAAAAAAAAAAAAAAAAA", "aws_access_key"));
    CHECK(hit("gh ghp_R2d2C3poLuke0123456789abcdefGHIJKLmn done", "github_token",
              "ghp_R2d2C3poLuke0123456789abcdefGHIJKLmn"));
    CHECK(miss("ghp_short123", "github_token"));
    CHECK(hit("github_pat_11ABCDEFG0123456789abc_"
              "0123456789abcdefghijABCDEFGHIJ0123456789abcdefghijABCDEFGHI",
              "github_token",
              "github_pat_11ABCDEFG0123456789abc_"
              "0123456789abcdefghijABCDEFGHIJ0123456789abcdefghijABCDEFGHI"));
    CHECK(hit("key sk-proj-Ab3dEf0123456789AbCdEf0123456789xyzXYZ_-q", "openai_key",
              "sk-proj-Ab3dEf0123456789AbCdEf0123456789xyzXYZ_-q"));
    CHECK(hit("sk-T3BlbkFJabcdefghij0123456789ABCDEFGHIJKLmnopqr", "openai_key",
              "sk-T3BlbkFJabcdefghij0123456789ABCDEFGHIJKLmnopqr"));
    CHECK(hit("sk-svcacct-Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2Rr1Qq0PpOoNnMm", "openai_key",
              "sk-svcacct-Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2Rr1Qq0PpOoNnMm"));
    CHECK(miss("pip install sk-learn-classification-model-v2-for-everyone", "openai_key"));
    CHECK(miss("sk-ant-api03-Ab3dEf0123456789AbCdEf0123456789xyzXYZ", "openai_key"));
    CHECK(hit("x sk-ant-api03-Ab3dEf0123456789AbCdEf0123456789xyzXYZ-_AAA y", "anthropic_key",
              "sk-ant-api03-Ab3dEf0123456789AbCdEf0123456789xyzXYZ-_AAA"));
    CHECK(hit("sk-ant-admin01-Ab3dEf0123456789AbCdEf0123456789xyzXYZ", "anthropic_key",
              "sk-ant-admin01-Ab3dEf0123456789AbCdEf0123456789xyzXYZ"));
    CHECK(miss("sk-ant-api03-short", "anthropic_key"));
}

static void test_jwt(void)
{
    const char *jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
                      "eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ."
                      "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
    char buf[512];
    snprintf(buf, sizeof(buf), "Authorization: Bearer %s", jwt);
    CHECK(hit(buf, "jwt", jwt));
    CHECK(miss(buf, "generic_secret")); /* same span: jwt wins the tie */
    /* header without alg */
    CHECK(miss("eyJ0eXAiOiJKV1QifQ.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV",
               "jwt"));
    /* header not JSON */
    CHECK(miss("eyJhbGciOiJIUzI1NiIsInR5cCI.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
               "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV",
               "jwt"));
}

static void test_generic_secret(void)
{
    CHECK(hit("password: Xk9#mQ2vLp8Rt5wZ3 ok", "generic_secret", "Xk9#mQ2vLp8Rt5wZ3"));
    CHECK(hit("export API_KEY=AbC123dEf456GhI789jKl", "generic_secret", "AbC123dEf456GhI789jKl"));
    CHECK(hit("{\"client_secret\": \"9fK2mQ7xLp3Rt8wZ5vB1\"}", "generic_secret",
              "9fK2mQ7xLp3Rt8wZ5vB1"));
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
    CHECK(miss("uuid 123e4567-e89b-12d3-a456-426614174000 and sha "
               "3f786850e387550fdab836ed7e6dc881de23001b",
               NULL));
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
    CHECK(miss("git clone https://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@github.com/acme/app.git",
               "email"));
    /* a log line: "auth ... user=EMAIL" is an email */
    CHECK(hit("12:00:01 auth ok user=amelie_ivanova52@example.org", "email",
              "amelie_ivanova52@example.org"));
    CHECK(miss("12:00:01 auth ok user=amelie_ivanova52@example.org", "generic_secret"));
    /* a JWT in a query string beats the generic secret */
    CHECK(hit("callback?token=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0."
              "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c&state=xyz",
              "jwt",
              "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"));
    /* a card-like run inside a valid IBAN is the IBAN */
    CHECK(hit("IBAN CH73 6564 6083 9680 0877 4 ok", "iban", "CH73 6564 6083 9680 0877 4"));
    CHECK(miss("IBAN CH73 6564 6083 9680 0877 4 ok", "credit_card"));
    /* digits glued to other digits are not a phone; an SSN shape is not a phone */
    CHECK(miss("The bank rejected IBAN IT58 P368 7904 9361 0766 7895 348 as invalid.", NULL));
    CHECK(miss("Reference 3707 022288 38220 appears on the statement", NULL));
    CHECK(miss("Our validator rejects 011-00-8127; is that pattern issued?", NULL));
    /* a card followed by its CVV */
    CHECK(hit("card 4111 1111 1111 1111 123 exp 09/27", "credit_card", "4111 1111 1111 1111"));
    CHECK(hit("-----BEGIN PRIVATE KEY-----\nMIIEvQ", "private_key",
              "-----BEGIN PRIVATE KEY-----\nMIIEvQ"));
    CHECK(hit("an SSN 078-05-1120 in a cluster 12 34", "us_ssn", "078-05-1120"));
}

/* ---- issue 13: recall and precision on real prompts ---- */

static void test_phone_national_forms(void)
{
    /* French dotted and international */
    CHECK(hit("Rappelez-moi au 04.72.10.33.58 ce soir", "phone", "04.72.10.33.58"));
    CHECK(hit("bureau +33 4 72 10 33 58", "phone", "+33 4 72 10 33 58"));
    CHECK(hit("standard +33 (0)4 72 10 33 58.", "phone", "+33 (0)4 72 10 33 58"));
    /* German area code / subscriber */
    CHECK(hit("Zentrale 0221/4711000", "phone", "0221/4711000"));
    CHECK(hit("Handy 0160/987 6543 abends", "phone", "0160/987 6543"));
    CHECK(hit("(030/12345678)", "phone", "030/12345678"));
    /* Indian 5 + 5, with and without +91 */
    CHECK(hit("ring 70123 45678 please", "phone", "70123 45678"));
    CHECK(hit("office +91 80123 45678", "phone", "+91 80123 45678"));
    /* a 12-digit national number with its trunk 0 */
    CHECK(hit("neu: 0176 23456789", "phone", "0176 23456789"));
    /* look-alikes */
    CHECK(miss("dates 01/02/2024 and 2024/01/02", "phone"));
    CHECK(miss("ratio 0815/4711", "phone"));
    CHECK(miss("path 030/12/34567", "phone"));
    CHECK(miss("groups 70123 45678 90123", "phone"));
    CHECK(miss("stamp 01.02.2024 and 1.2.3.4.5", "phone"));
    CHECK(miss("dotted 12.34.56.78.90", "phone"));
    CHECK(miss("5 + 5 but a 1: 12345 67890", "phone"));
}

static void test_phone_labels(void)
{
    CHECK(hit("Phone: 3125550147", "phone", "3125550147"));
    CHECK(hit("Tel. 02071234567", "phone", "02071234567"));
    CHECK(hit("Handy: 015112345678", "phone", "015112345678"));
    CHECK(hit("mon portable : 0612345678", "phone", "0612345678"));
    CHECK(hit("mi m\xc3\xb3vil es 612345678", "phone", "612345678"));
    CHECK(hit("il mio cellulare \xc3\xa8 3471234567", "phone", "3471234567"));
    CHECK(hit("\xe6\x90\xba\xe5\xb8\xaf\xef\xbc\x9a"
              "08012345678",
              "phone", "08012345678"));
    CHECK(hit("\xe0\xa4\xae\xe0\xa5\x8b\xe0\xa4\xac\xe0\xa4\xbe\xe0\xa4\x87\xe0\xa4\xb2 9123456789",
              "phone", "9123456789"));
    CHECK(hit("mera number 9123456789 hai", "phone", "9123456789"));
    CHECK(hit("PHONE NUMBER ON FILE: 3125550147", "phone", "3125550147"));
    CHECK(miss("Phone: 1712345678 (that is Unix time)", "phone"));
    CHECK(miss("Hotel 3125550147", "phone"));
    CHECK(miss("telling 3125550147", "phone"));
    CHECK(miss("phone 15, ticket 3125550147", "phone"));
    CHECK(miss("the mobile app build 3125550147", "phone"));
    CHECK(hit("Phone: 3125550147x", "phone", "3125550147")); /* a glued letter hides nothing */
    CHECK(miss("Phone: 5555555555", "phone"));
    CHECK(miss("3125550147 with no label", "phone"));
    CHECK(miss("Phone: ok; order 3125550147", "phone"));
}

static void test_ssn_labels(void)
{
    CHECK(hit("SSN: 536220873", "us_ssn", "536220873"));
    CHECK(hit("my social security number is 536220873.", "us_ssn", "536220873"));
    CHECK(hit("Sozialversicherungsnummer 536220873", "us_ssn", "536220873"));
    CHECK(hit("\xe7\xa4\xbe\xe4\xbc\x9a\xe4\xbf\x9d\xe9\x9a\x9c\xe7\x95\xaa\xe5\x8f\xb7 536220873",
              "us_ssn", "536220873"));
    CHECK(hit("SS#536220873", "us_ssn", "536220873"));
    CHECK(miss("SSN 000220873", "us_ssn"));
    CHECK(miss("SSN 666220873", "us_ssn"));
    CHECK(miss("SSN 936220873", "us_ssn"));
    CHECK(miss("SSN 536000873", "us_ssn"));
    CHECK(miss("SSN 536220000", "us_ssn"));
    CHECK(miss("536220873 has no label", "us_ssn"));
    CHECK(miss("SSN form; invoice 536220873", "us_ssn"));
    CHECK(miss("SSN 5362208731", NULL));
    CHECK(miss("SSN routing 536220873", "us_ssn"));
}

static void test_pgp_private_key(void)
{
    const char *pgp = "-----BEGIN PGP PRIVATE KEY BLOCK-----\nVersion: GnuPG v2\nComment: test\n\n"
                      "lQVYBGXkZ8kBDADd3s9Qm0r7f2kT1yq1u0m8W2Zr\n=Xq3k\n"
                      "-----END PGP PRIVATE KEY BLOCK-----";
    char buf[512];
    snprintf(buf, sizeof(buf), "import this: %s please", pgp);
    CHECK(hit(buf, "private_key", pgp));
    /* no armour headers, CRLF, cut off before its END line */
    CHECK(hit("-----BEGIN PGP PRIVATE KEY BLOCK-----\r\n\r\nlQOYBF1234abcdEFGH", "private_key",
              "-----BEGIN PGP PRIVATE KEY BLOCK-----\r\n\r\nlQOYBF1234abcdEFGH"));
    /* a PEM key with its newlines written as \n inside quoted JSON */
    CHECK(hit(
        "{\"key\": \"-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADAN\\n-----END PRIVATE KEY-----\"}",
        "private_key", "-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADAN\\n-----END PRIVATE KEY-----"));
    /* on one line, newlines turned into spaces */
    CHECK(hit("KEY=-----BEGIN RSA PRIVATE KEY----- MIIEowIBAAKCAQEAx4fQ2mZk9s8Lr1tV0wYp3eHn7uJqB5 "
              "-----END RSA PRIVATE KEY-----",
              "private_key",
              "-----BEGIN RSA PRIVATE KEY----- MIIEowIBAAKCAQEAx4fQ2mZk9s8Lr1tV0wYp3eHn7uJqB5 "
              "-----END RSA PRIVATE KEY-----"));
    /* a header named in a sentence, placeholders, public keys */
    CHECK(
        miss("The file begins with -----BEGIN OPENSSH PRIVATE KEY----- and ends with the END line.",
             "private_key"));
    CHECK(miss("Look for -----BEGIN PGP PRIVATE KEY BLOCK-----", "private_key"));
    CHECK(
        miss("-----BEGIN RSA PRIVATE KEY-----\n...\n-----END RSA PRIVATE KEY-----", "private_key"));
    CHECK(miss("-----BEGIN PRIVATE KEY-----\n<your key here>\n-----END PRIVATE KEY-----", NULL));
    CHECK(miss("-----BEGIN PRIVATE KEY-----\nthen the base64 body follows", "private_key"));
    CHECK(miss("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQENBF1234abcd\n-----END PGP PUBLIC KEY "
               "BLOCK-----",
               NULL));
}

static void test_credential_uri(void)
{
    CHECK(hit("DATABASE_URL=mysql://shop:Kw7pZ2rQ@db.internal:3306/shop", "credential_uri",
              "Kw7pZ2rQ"));
    CHECK(hit("postgres://u:k@h/db", "credential_uri", "k"));
    CHECK(hit("redis://:Tiger1999+@cache.internal:6379/0", "credential_uri", "Tiger1999+"));
    CHECK(hit("mongodb+srv://app:n0t-s0-s3cret@cluster0.ab1cd.mongodb.net/prod?w=majority",
              "credential_uri", "n0t-s0-s3cret"));
    CHECK(hit("redis://:p@ss@cache.internal", "credential_uri", "p@ss"));
    CHECK(hit("Server=db01;Database=app;User Id=sa;Password=Summer2024!;Encrypt=true",
              "credential_uri", "Summer2024!"));
    CHECK(
        hit("Driver={ODBC Driver 18};Server=db01;Uid=rep;PWD={a;b c};", "credential_uri", "a;b c"));
    CHECK(hit("Password=\"Tr0ub4dor\";Server=db01", "credential_uri", "Tr0ub4dor"));
    CHECK(hit(
        "AccountName=acme;AccountKey=Zm9vYmFyYmF6cXV4+/Zm9vYmFy==;EndpointSuffix=core.windows.net",
        "credential_uri", "Zm9vYmFyYmF6cXV4+/Zm9vYmFy=="));
    CHECK(hit("jdbc:postgresql://db:5432/app?user=app&password=hunter22&ssl=true", "credential_uri",
              "hunter22"));
    /* the password is the finding: no e-mail address made of its tail */
    CHECK(miss("postgres://app:Xk9fQ2@db.example.com/app", "email"));
    CHECK(miss("postgres://app@db.example.com/app", "email"));
    /* placeholders, no password, other '@'s, other keys */
    CHECK(miss("postgresql://user:password@localhost:5432/mydb", "credential_uri"));
    CHECK(miss("mysql://root:<password>@db/app", "credential_uri"));
    CHECK(miss("redis://:${REDIS_PASSWORD}@cache:6379", "credential_uri"));
    CHECK(miss("postgres://app:****@db/app", "credential_uri"));
    CHECK(miss("mongodb+srv://<user>:<pass>@cluster0.mongodb.net", "credential_uri"));
    CHECK(miss("https://example.com:8443/@team", "credential_uri"));
    CHECK(miss("https://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@github.com/a.git",
               "credential_uri"));
    CHECK(miss("Server=db01;Password=;Integrated Security=true", "credential_uri"));
    CHECK(miss("Server=db01;Password=your_password;", "credential_uri"));
    CHECK(miss("DB_PASSWORD=hunter22", "credential_uri"));
    CHECK(miss("mysql --password=hunter22 -h db", "credential_uri"));
    CHECK(miss("/account?password_reset=true", "credential_uri"));
    CHECK(miss("Password=hunter22 in prose", "credential_uri"));
    /* a token in the password place is the token */
    CHECK(hit("https://x-access-token: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@github.com/a.git",
              "github_token", "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"));
    CHECK(miss("https://x-access-token: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@github.com/a.git",
               "credential_uri"));
}

static void test_secret_references(void)
{
    CHECK(miss("password: ${{ secrets.PROD_DB_PASSWORD_V2 }}", NULL));
    CHECK(miss("token: ${{ secrets.GITHUB_TOKEN }}", NULL));
    CHECK(miss("const secret = process.env.STRIPE_SECRET_KEY;", NULL));
    CHECK(miss("api_key = process.env.OPENAI_API_KEY_PROD_2024", NULL));
    CHECK(miss("secret = os.environ[\"DJANGO_SECRET_KEY_2024_V2\"]", NULL));
    CHECK(miss("password = os.getenv(\"PG_PASSWORD_REPLICA_02\")", NULL));
    CHECK(miss("token = ENV['SLACK_BOT_TOKEN_2024_Q3']", NULL));
    CHECK(miss("headers = {\"Authorization\": f\"Bearer {settings.API_TOKEN_V2}\"}", NULL));
    CHECK(miss("password: {{ .Values.postgresql.auth.password }}", NULL));
    CHECK(miss("api_key: <YOUR_API_KEY>", NULL));
    CHECK(miss("OPENAI_API_KEY=YOUR_OPENAI_API_KEY_HERE_123", NULL));
    CHECK(miss("client_secret: xxxxxxxxxxxxxxxxxxxxxxxx1", NULL));
    CHECK(miss("export API_KEY=$API_KEY_FROM_VAULT_2024", NULL));
    CHECK(miss("{\"api_key\": \"REPLACE_ME_WITH_A_REAL_KEY_1234\"}", NULL));
    /* a literal after the reference is a value */
    CHECK(hit("const secret = process.env.SESSION_SECRET || \"q8Lw2VxR7tZp4Yk9Ns3B\";",
              "generic_secret", "q8Lw2VxR7tZp4Yk9Ns3B"));
    CHECK(hit("password = os.environ.get(\"DB_PASSWORD\", \"q8Lw2VxR7tZp4Yk9Ns3B\")",
              "generic_secret", "q8Lw2VxR7tZp4Yk9Ns3B"));
    /* a JSON key's value that is a reference */
    CHECK(miss("{\"client_secret\": \"process.env.CLIENT_SECRET_2\"}", NULL));
}

static void test_secret_counters(void)
{
    CHECK(miss("token_count=1532 model=gpt-4o-2024-08-06", NULL));
    CHECK(miss("key_count: 12, token_count: 4096 (model gpt-4o-mini-2024-07-18)", NULL));
    CHECK(miss("max_tokens: 4096 model: claude-3-5-sonnet-20241022", NULL));
    CHECK(miss(
        "{\"prompt_tokens\": 812, \"completion_tokens\": 97, \"model\": \"gpt-4o-2024-08-06\"}",
        NULL));
    CHECK(miss("maxTokens: 2048, modelVersion: gemini-1.5-pro-002", NULL));
    CHECK(miss("api_key_file: /etc/airlock/keys/prod-3f9a1c2b7d4e-2024.pem", NULL));
    CHECK(miss("secret_version: v2-IGDq7DNuWNTg-2024", NULL));
    CHECK(miss("auth: 2 steps, model claude-3-5-sonnet-20241022", NULL));
    /* a secret-like name that is not a counter still works */
    CHECK(hit("secret_key: q8Lw2VxR7tZp4Yk9Ns3B", "generic_secret", "q8Lw2VxR7tZp4Yk9Ns3B"));
}

static void test_email_file_names(void)
{
    CHECK(miss("Use logo@2x.png and icon@3x.webp for retina.", NULL));
    CHECK(miss("app-icon@1.5x.svg and left-pad@1.3.0.tgz", NULL));
    CHECK(hit("mail sales@example.com about logo@2x.png", "email", "sales@example.com"));
}

static void test_iban_shaped_card_window(void)
{
    /* a Luhn-valid 16-digit window inside a longer IBAN-shaped token is no card */
    CHECK(miss("IBAN XY12 4111 1111 1111 1111 00 is not valid", NULL));
    CHECK(miss("DE00 4111 1111 1111 1111 00", NULL));
    CHECK(miss("GB00 WEST 4111 1111 1111 1111 00", NULL));
    CHECK(miss("Konto QZ994111111111111111", NULL));
    /* the card on its own still is */
    CHECK(hit("Karte 4111 1111 1111 1111, IBAN folgt", "credit_card", "4111 1111 1111 1111"));
    CHECK(hit("VISA 4111 1111 1111 1111", "credit_card", "4111 1111 1111 1111"));
}

static void test_document_numbers(void)
{
    /* 基礎年金番号 (basic pension number), マイナンバー, 法人番号 (a Luhn-valid 13 digits) */
    CHECK(
        miss("\xe5\x9f\xba\xe7\xa4\x8e\xe5\xb9\xb4\xe9\x87\x91\xe7\x95\xaa\xe5\x8f\xb7\xe3\x81\xaf"
             "0123-456789\xe3\x81\xa7\xe3\x81\x99",
             NULL));
    CHECK(
        miss("\xe3\x83\x9e\xe3\x82\xa4\xe3\x83\x8a\xe3\x83\xb3\xe3\x83\x90\xe3\x83\xbc\xef\xbc\x9a"
             "0123 4567 8901",
             NULL));
    CHECK(miss("\xe6\xb3\x95\xe4\xba\xba\xe7\x95\xaa\xe5\x8f\xb7\xef\xbc\x9a"
               "4222222222222",
               NULL));
    CHECK(miss("Passport 012 345 6789 expires in May", NULL));
    /* the same digits as a phone or a card when the label says so */
    CHECK(hit("\xe9\x9b\xbb\xe8\xa9\xb1\xef\xbc\x9a"
              "0123-456789",
              "phone", "0123-456789"));
    CHECK(hit("card 4222222222222", "credit_card", "4222222222222"));
}

static void test_secret_words_multilingual(void)
{
    CHECK(hit("Passwort: q8Lw2VxR7tZp4Yk9Ns3B", "generic_secret", "q8Lw2VxR7tZp4Yk9Ns3B"));
    CHECK(hit("Mot de passe : q8Lw2VxR7tZp4Yk9Ns3B", "generic_secret", "q8Lw2VxR7tZp4Yk9Ns3B"));
    CHECK(hit("contrase\xc3\xb1"
              "a=q8Lw2VxR7tZp4Yk9Ns3B",
              "generic_secret", "q8Lw2VxR7tZp4Yk9Ns3B"));
    CHECK(hit("\xe3\x83\x91\xe3\x82\xb9\xe3\x83\xaf\xe3\x83\xbc\xe3\x83\x89\xe3\x81\xaf "
              "q8Lw2VxR7tZp4Yk9Ns3B \xe3\x81\xa7\xe3\x81\x99",
              "generic_secret", "q8Lw2VxR7tZp4Yk9Ns3B"));
    CHECK(
        hit("\xe0\xa4\xaa\xe0\xa4\xbe\xe0\xa4\xb8\xe0\xa4\xb5\xe0\xa4\xb0\xe0\xa5\x8d\xe0\xa4\xa1: "
            "q8Lw2VxR7tZp4Yk9Ns3B",
            "generic_secret", "q8Lw2VxR7tZp4Yk9Ns3B"));
    CHECK(miss("Das Passwort muss zw\xc3\xb6lf Zeichen haben.", NULL));
    CHECK(miss("autoclave q8Lw2VxR7tZp4Yk9Ns3B", "generic_secret"));
}

/* ---- issue 13: boundaries -- a glued letter hides no value; validators keep precision ---- */

static void test_glued_cards(void)
{
    CHECK(hit("cardx4111111111111111x", "credit_card", "4111111111111111"));
    CHECK(hit("Mi tarjeta es la VISA4111111111111111, vence", "credit_card", "4111111111111111"));
    CHECK(hit("payment_method=card_5500000000000004_default", "credit_card", "5500000000000004"));
    CHECK(hit("Kreditkarte378282246310005bitte", "credit_card", "378282246310005"));
    CHECK(hit("Karte4111 1111 1111 1111x", "credit_card", "4111 1111 1111 1111"));
    CHECK(hit("CC:6011111111111117exp0927", "credit_card", "6011111111111117"));
    /* glued: a common brand and length only (an EAN-13, a Maestro-range or 19-digit id) */
    CHECK(hit("card 4222222222222", "credit_card", "4222222222222"));
    CHECK(miss("SKU4222222222222 out of stock", NULL));
    CHECK(hit("card 6304000000000000", "credit_card", "6304000000000000"));
    CHECK(miss("id6304000000000000x", NULL));
    CHECK(miss("ts4434349769133159480", NULL));
    /* a window of a hex digest, a fraction, a longer digit run */
    CHECK(
        miss("sha256:abcdefab4111111111111111cdefabcdefabcdefabcdefabcdefabcdefabcdefab ok", NULL));
    CHECK(miss("ratio 0.4111111111111111", "credit_card"));
    CHECK(miss("x41111111111111111x", "credit_card"));
    CHECK(miss("ORD4111111111111112x", NULL)); /* Luhn */
}

static void test_card_separators(void)
{
    CHECK(hit("card 4111,1111,1111,1111", "credit_card", "4111,1111,1111,1111"));
    CHECK(hit("card 4111  1111  1111  1111 ok", "credit_card", "4111  1111  1111  1111"));
    CHECK(hit("card:\n4111\n1111\n1111\n1111\nthanks", "credit_card", "4111\n1111\n1111\n1111"));
    CHECK(
        hit("card\r\n4111\r\n1111\r\n1111\r\n1111", "credit_card", "4111\r\n1111\r\n1111\r\n1111"));
    CHECK(hit("card\t4111\t1111\t1111\t1111\tvisa", "credit_card", "4111\t1111\t1111\t1111"));
    CHECK(hit("wrapped 4111 1111\n1111 1111 here", "credit_card", "4111 1111\n1111 1111"));
    CHECK(hit("amex 3782  822463  10005", "credit_card", "3782  822463  10005"));
    CHECK(hit("card 4111 1111 1111 1111\n5555 then", "credit_card", "4111 1111 1111 1111"));
    /* one kind of separator; a list's separators: the card must be the whole list */
    CHECK(miss("mixed 4111-1111,1111 1111", "credit_card"));
    CHECK(miss("4111, 1111, 1111, 1111", "credit_card"));
    CHECK(miss("ports\n5432\n4111\n1111\n1111\n1111", "credit_card"));
    CHECK(miss("4111,1111,1111,1111,2024", "credit_card"));
    CHECK(miss("2019,4111,1111,1111,1111", "credit_card"));
    CHECK(miss("PINs  4111  1111  1111  1111  0038", "credit_card"));
    CHECK(miss("6304\n0000\n0000\n0000", "credit_card")); /* Maestro range in a list */
}

static void test_glued_iban(void)
{
    CHECK(hit("ibanDE89370400440532013000x", "iban", "DE89370400440532013000"));
    CHECK(hit("IBAN:DE89370400440532013000BIC:COBADEFFXXX", "iban", "DE89370400440532013000"));
    CHECK(hit("IBANGB82WEST12345698765432", "iban", "GB82WEST12345698765432"));
    CHECK(hit("KontoDE89 3704 0044 0532 0130 00bitte", "iban", "DE89 3704 0044 0532 0130 00"));
    CHECK(miss("ibanDE88370400440532013000x", "iban"));       /* check digits */
    CHECK(miss("DE893704004405320130001 is longer", "iban")); /* a digit glued on */
    /* a BBAN of mostly letters is valid on its own, but glued it is a window of some
     * base32 or base36 text */
    CHECK(hit("account XK37QWERTYUIOP123456 ok", "iban", "XK37QWERTYUIOP123456"));
    CHECK(miss("ZZXK37QWERTYUIOP123456ZZ", "iban"));
    CHECK(hit("ZZXK030000QWERTY123456ZZ", "iban", "XK030000QWERTY123456"));
    /* the card-shaped digits of an IBAN-shaped token glued to letters are the token's */
    CHECK(miss("ibanXY12 4111 1111 1111 1111 00 is invalid", NULL));
    CHECK(miss("ibanGB00 WEST 4111 1111 1111 1111 00", NULL));
}

static void test_iban_separators(void)
{
    CHECK(hit("IBAN DE89-3704-0044-0532-0130-00 ok", "iban", "DE89-3704-0044-0532-0130-00"));
    CHECK(hit("IBAN DE89/3704/0044/0532/0130/00", "iban", "DE89/3704/0044/0532/0130/00"));
    CHECK(hit("IBAN DE89.3704.0044.0532.0130.00.", "iban", "DE89.3704.0044.0532.0130.00"));
    CHECK(hit("IBAN DE89  3704  0044  0532  0130  00", "iban", "DE89  3704  0044  0532  0130  00"));
    CHECK(
        hit("IBAN:\nDE89 3704 0044\n0532 0130 00\nDanke", "iban", "DE89 3704 0044\n0532 0130 00"));
    CHECK(hit("IBAN DE89,3704,0044,0532,0130,00", "iban", "DE89,3704,0044,0532,0130,00"));
    CHECK(miss("IBAN DE89-3704 0044-0532 0130-00", "iban")); /* mixed */
    CHECK(miss("IBAN DE89 - 3704 - 0044 - 0532 - 0130 - 00", "iban"));
}

static void test_glued_aws(void)
{
    CHECK(hit("xAKIAQFAKE7EXAMPLE2XYx", "aws_access_key", "AKIAQFAKE7EXAMPLE2XY"));
    CHECK(hit("AccessKeyIdAKIAQFAKE7EXAMPLE2XYSecretAccessKey", "aws_access_key",
              "AKIAQFAKE7EXAMPLE2XY"));
    CHECK(hit("Der Schl\xc3\xbcssel lautetASIAQFAKE7EXAMPLE2XYund", "aws_access_key",
              "ASIAQFAKE7EXAMPLE2XY"));
    /* glued, the 16 must be base32 (A-Z, 2-7) with a digit: upper-case words are not keys */
    CHECK(miss("The EURASIAPACIFIC2024REPORTSQ3 deck", "aws_access_key"));
    CHECK(miss("xAKIAQFAKEXEXAMPLEXXYx", "aws_access_key"));
    CHECK(miss("xAKIAQFAKE0EXAMPLE2XYx", "aws_access_key"));
    CHECK(hit("id AKIAQFAKEXEXAMPLEXXY ok", "aws_access_key", "AKIAQFAKEXEXAMPLEXXY"));
    CHECK(miss("AKIAIOSFODNN is short", "aws_access_key"));
}

static void test_glued_github(void)
{
    /* gh?_ + 30 + the base62 CRC-32 of the 30 */
    CHECK(hit("token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x", "github_token",
              "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"));
    CHECK(hit("GITHUB_TOKEN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 in env", "github_token",
              "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"));
    CHECK(
        hit("xgithub_pat_11ABCDEFG0123456789abc_0123456789abcdefghijABCDEFGHIJ0123456789abcdefghij"
            "ABCDEFGHIx",
            "github_token",
            "github_pat_11ABCDEFG0123456789abc_0123456789abcdefghijABCDEFGHIJ0123456789abcdefghij"
            "ABCDEFGHI"));
    /* glued without its checksum: an identifier that holds "ghs_", or a hand-made token */
    CHECK(miss("Charts: highs_Q3Revenue2024VersusForecastAndBudget attached", NULL));
    CHECK(miss("xghp_R2d2C3poLuke0123456789abcdefGHIJKLmnx", "github_token"));
    CHECK(miss("tokenghp_R2d2C3poLukeFAKE0123456789abcd1oV5lMx", "github_token"));
}

static void test_glued_ssn(void)
{
    CHECK(hit("abc123-45-6789 ssn", "us_ssn", "123-45-6789"));
    CHECK(hit("SSN123-45-6789x", "us_ssn", "123-45-6789"));
    CHECK(hit("ssn536220873", "us_ssn", "536220873"));
    CHECK(hit("Social security number:536220873x", "us_ssn", "536220873"));
    CHECK(hit("ssn123 45 6789", "us_ssn", "123 45 6789"));
    CHECK(miss("abc123 45 6789", "us_ssn")); /* spaced and glued: only after its label */
    CHECK(miss("x000-12-3456 and ver666-12-3456", "us_ssn"));
    CHECK(miss("1123-45-6789", "us_ssn"));
    CHECK(miss("A1-123-45-6789-2", "us_ssn"));
    CHECK(miss("abc536220873", "us_ssn"));
}

static void test_glued_phone(void)
{
    CHECK(hit("tel4155550132x", "phone", "4155550132"));
    CHECK(hit("Phone:4155550132ext12", "phone", "4155550132"));
    CHECK(hit("Tel.0301234567 (B\xc3\xbcro)", "phone", "0301234567"));
    CHECK(hit("Handynummer01711234567bitte", "phone", "01711234567"));
    CHECK(hit("tel+14155550132", "phone", "+14155550132"));
    CHECK(hit("Tel.030 1234 5678", "phone", "030 1234 5678"));
    /* no label: bare numbers and shapes keep their boundaries */
    CHECK(miss("ref4155550132x", "phone"));
    CHECK(miss("3125550147x with no label", "phone"));
    CHECK(miss("hotel4155550132", "phone"));
    CHECK(miss("Phone model SM4155550132x", "phone"));
    CHECK(miss("x+14155550132", "phone"));
    CHECK(miss("x212-555-0134x", "phone"));
}

/* '+'-prefixed numbers whose groups are split by '/', ',', a tab or a line break, and
 * international numbers grouped to be read out with a letter glued on */
static void test_phone_wide_separators(void)
{
    CHECK(hit("call +1/415/555/0132 now", "phone", "+1/415/555/0132"));
    CHECK(hit("call +1,415,555,0132", "phone", "+1,415,555,0132"));
    CHECK(hit("call +1\t415\t555\t0132.", "phone", "+1\t415\t555\t0132"));
    CHECK(hit("call +1\n415\n555\n0132", "phone", "+1\n415\n555\n0132"));
    CHECK(hit("call +1\r\n415\r\n555\r\n0132", "phone", "+1\r\n415\r\n555\r\n0132"));
    CHECK(hit("tel +44/20/7946/0958", "phone", "+44/20/7946/0958"));
    CHECK(hit("q+1 415 555 0132", "phone", "+1 415 555 0132"));
    CHECK(hit("+1 415 555 0132q", "phone", "+1 415 555 0132"));
    CHECK(hit("x+49-30-1234567y", "phone", "+49-30-1234567"));
    CHECK(hit("q+1 415-555-0132", "phone", "+1 415-555-0132"));
    CHECK(hit("+1  415  555  0132q", "phone", "+1  415  555  0132"));
    /* not phones: no '+', mixed separators, NANP rules, a list of small numbers, too
     * long, a digit glued on */
    CHECK(miss("ratio 1/415/555/0132", "phone"));
    CHECK(miss("+1,415/555,0132", "phone"));
    CHECK(miss("+1/015/555/0132", "phone"));
    CHECK(miss("scores +3,4,5,6", "phone"));
    CHECK(miss("+1,2,3,4,5,6,7,8", "phone"));
    CHECK(miss("+44,20,7946,0958,1234,5678", "phone"));
    CHECK(miss("+1,415,555,01329", "phone"));
    CHECK(miss("x+14155550132", "phone")); /* ungrouped and glued: an identifier */
}

/* keys and tokens glued on the left: a typed or marked OpenAI key, any Anthropic key, a
 * JWT whose header still decodes; a word ending in "sk-" is not a key */
static void test_glued_left_keys(void)
{
    CHECK(hit("keysk-proj-Ab3dEf0123456789AbCdEf0123456789xyzXYZ_-q", "openai_key",
              "sk-proj-Ab3dEf0123456789AbCdEf0123456789xyzXYZ_-q"));
    CHECK(hit("x-sk-T3BlbkFJabcdefghij0123456789ABCDEFGHIJKLmnopqr", "openai_key",
              "sk-T3BlbkFJabcdefghij0123456789ABCDEFGHIJKLmnopqr"));
    CHECK(miss("risk-Ab3dEf0123456789AbCdEf0123456789xyzXYZq", "openai_key"));
    CHECK(miss("task-Assessment2024ReviewQuarterlyFinalVersion", "openai_key"));
    CHECK(hit("apikeysk-ant-api03-Ab3dEf0123456789AbCdEf0123456789xyzXYZ-_AAA", "anthropic_key",
              "sk-ant-api03-Ab3dEf0123456789AbCdEf0123456789xyzXYZ-_AAA"));
    CHECK(hit(
        "tokeneyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
        "jwt", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"));
    CHECK(miss("xeyJ0eXAiOiJKV1QifQ.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV",
               "jwt")); /* glued, but no algorithm: still not a JWT */
}

static void test_glued_email(void)
{
    CHECK(hit("a..jane@example.com", "email", "jane@example.com"));
    CHECK(hit("write to jane@example.com-1 today", "email", "jane@example.com"));
    CHECK(hit("jane@example.com2", "email", "jane@example.com"));
    CHECK(hit(
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxjane@example.com",
        "email",
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxjane@example.com"));
    CHECK(hit("an j\xc3\xbcrgen.m\xc3\xbcller@example.de", "email",
              "j\xc3\xbcrgen.m\xc3\xbcller@example.de"));
    CHECK(hit("mail user@example.xn--p1ai now", "email", "user@example.xn--p1ai"));
    CHECK(miss("npm left-pad@1.3.0-1 and icon@2x.png2", "email"));
    CHECK(miss("ssh admin@localhost-1; a..b@c", "email"));
    CHECK(miss("x@y.z1", "email"));
    /* a one-letter label glued on after the address is not its TLD */
    CHECK(hit("jane.doe@example.com.x", "email", "jane.doe@example.com"));
    CHECK(hit("mail bob@mail.example.org.q now", "email", "bob@mail.example.org"));
    CHECK(miss("a@b.c", "email"));
    CHECK(miss("x@y.z.w", "email"));
}

static void test_context_tables(void)
{
    const char *t;
    t = "Tel.: 1";
    CHECK(policy_context_label(t, strlen(t), 6) == POLICY_CTX_PHONE);
    t = "Telefonnummer 1";
    CHECK(policy_context_label(t, strlen(t), 14) == POLICY_CTX_PHONE);
    t = "hotel 1";
    CHECK(policy_context_label(t, strlen(t), 6) == POLICY_CTX_NONE);
    t = "phone 7, x 1";
    CHECK(policy_context_label(t, strlen(t), 11) == POLICY_CTX_NONE);
    t = "phone\nx 1";
    CHECK(policy_context_label(t, strlen(t), 8) == POLICY_CTX_NONE);
    t = "Phone number on file should be 1";
    CHECK(policy_context_label(t, strlen(t), 31) == POLICY_CTX_PHONE);
    t = "phone, and then a long way off, more than 32 bytes 1";
    CHECK(policy_context_label(t, strlen(t), strlen(t) - 1) == POLICY_CTX_NONE);
    t = "Order no. 1";
    CHECK(policy_context_label(t, strlen(t), 10) == POLICY_CTX_DOCNUM);
    t = "Phone: mobile app build 1";
    CHECK(policy_context_label(t, strlen(t), 24) == POLICY_CTX_OTHER);
    t = "ssn 1";
    CHECK(policy_context_label(t, strlen(t), 4) == POLICY_CTX_SSN);
    CHECK(policy_value_placeholder("YOUR_KEY_123", 12));
    CHECK(policy_value_placeholder("password", 8));
    CHECK(policy_value_placeholder("%s", 2));
    CHECK(policy_value_placeholder("[EMAIL_1]", 9));
    CHECK(!policy_value_placeholder("%40secret9", 10));
    CHECK(!policy_value_placeholder("Summer2024!", 11));
    CHECK(policy_value_reference("process.env.X", 13));
    CHECK(policy_value_reference("config.stripeSecretKey", 22));
    CHECK(!policy_value_reference("ya29.A0ARrdaM", 13));
    CHECK(!policy_value_reference("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0", 36));
    CHECK(policy_context_counter_name("token_count", 11));
    CHECK(policy_context_counter_name("maxTokens", 9));
    CHECK(!policy_context_counter_name("AWS_SECRET_ACCESS_KEY", 21));
    CHECK(!policy_secret_key_like("max_tokens", 10));
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
    RUN(test_phone_national_forms);
    RUN(test_phone_labels);
    RUN(test_ssn_labels);
    RUN(test_pgp_private_key);
    RUN(test_credential_uri);
    RUN(test_secret_references);
    RUN(test_secret_counters);
    RUN(test_email_file_names);
    RUN(test_iban_shaped_card_window);
    RUN(test_document_numbers);
    RUN(test_secret_words_multilingual);
    RUN(test_glued_cards);
    RUN(test_card_separators);
    RUN(test_glued_iban);
    RUN(test_iban_separators);
    RUN(test_glued_aws);
    RUN(test_glued_github);
    RUN(test_glued_ssn);
    RUN(test_glued_phone);
    RUN(test_phone_wide_separators);
    RUN(test_glued_left_keys);
    RUN(test_glued_email);
    RUN(test_context_tables);
    RUN(test_helpers);
    policy_free(pol);
    config_unref(cfg);
    return harness_done();
}
