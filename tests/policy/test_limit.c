/* test_limit.c -- limits.max_body_values on the decide path: a body of more JSON values than
 * the limit is refused (policy_decide: -1 and too_large; proxy_decide: 413 naming the limit,
 * nothing to send) on every endpoint's body, one at the limit is decided as usual; and a body
 * of many small parts, each with a finding and a value split across every junction, keeps
 * its findings exact now that the junctions are scanned together. */
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "config/config.h"
#include "harness.h"
#include "policy/policy.h"
#include "proxy/decide.h"

/* 13 values: the object, "model", "m", "messages", the array, one message (object, "role",
 * "user", "content", "hi") ... counted by json_parse below rather than by hand */
#define LIMIT 200

static const char *yaml =
    "listen: [{address: \"127.0.0.1:1\"}]\n"
    "providers:\n"
    "  oai: {type: openai, base_url: \"http://127.0.0.1:2/v1\", api_key: k1}\n"
    "  ant: {type: anthropic, base_url: \"http://127.0.0.1:3\", api_key: k2}\n"
    "models:\n"
    "  - {name: m, provider: oai}\n"
    "  - {name: c, provider: ant}\n"
    "limits:\n"
    "  max_body_values: 200\n"
    "rules:\n"
    "  - {name: no-secrets, if: {detected: [secrets]}, then: {action: block}}\n"
    "  - {name: default, then: {action: allow}}\n";

static struct config *cfg;
static struct policy *pol;

struct buf {
    char s[65536];
    size_t n;
};

static void put(struct buf *b, const char *s)
{
    size_t l = strlen(s);
    if (b->n + l < sizeof(b->s)) {
        memcpy(b->s + b->n, s, l + 1);
        b->n += l;
    }
}

/* values -- how many JSON values (nodes of the one parse) body has */
static size_t values(const char *body)
{
    struct json_doc d = {0};
    char err[256];
    size_t n = 0;

    if (json_parse(&d, body, strlen(body), err, sizeof(err)) == 0)
        n = d.n;
    json_doc_deinit(&d);
    return n;
}

/* chat_parts -- a chat body whose one message has `parts` text parts "ab", padded with
 * `pad` one-letter strings in "metadata" so that the total is exact */
static void chat_parts(struct buf *b, int parts, int pad)
{
    b->n = 0;
    b->s[0] = '\0';
    put(b, "{\"model\":\"m\",\"metadata\":[");
    for (int i = 0; i < pad; i++)
        put(b, i ? ",\"x\"" : "\"x\"");
    put(b, "],\"messages\":[{\"role\":\"user\",\"content\":[");
    for (int i = 0; i < parts; i++)
        put(b, i ? ",{\"type\":\"text\",\"text\":\"ab\"}" : "{\"type\":\"text\",\"text\":\"ab\"}");
    put(b, "]}]}");
}

/* a body of exactly `n` values (n large enough for the shell): parts of 5 values each,
 * padded with one-value strings */
static void chat_of(struct buf *b, size_t n)
{
    size_t shell;

    chat_parts(b, 0, 0);
    shell = values(b->s); /* the object, its names, "m", the arrays, the message */
    chat_parts(b, (int)((n - shell) / 5), (int)((n - shell) % 5));
}

static int policy_refuses(const char *body)
{
    struct policy_input in = {
        .api = POLICY_API_OPENAI, .body = body, .len = strlen(body), .model = "m"};
    struct policy_decision d;
    int rc = policy_decide(pol, &in, &d);
    int ok = rc == -1 && d.too_large && d.verdict == POLICY_BLOCK &&
             strstr(d.error, "limit of 200 JSON values") &&
             strstr(d.error, "limits.max_body_values");
    if (!ok)
        fprintf(stderr, "  policy_decide: rc %d too_large %d: %s\n", rc, d.too_large, d.error);
    policy_decision_deinit(&d);
    return ok;
}

static int policy_allows(const char *body)
{
    struct policy_input in = {
        .api = POLICY_API_OPENAI, .body = body, .len = strlen(body), .model = "m"};
    struct policy_decision d;
    int rc = policy_decide(pol, &in, &d);
    int ok = rc == 0 && !d.too_large && d.verdict == POLICY_ALLOW;
    if (!ok)
        fprintf(stderr, "  policy_decide: rc %d verdict %d: %s\n", rc, d.verdict, d.error);
    policy_decision_deinit(&d);
    return ok;
}

/* gateway -- proxy_decide_body's status for body (0: it goes on); the refusal must leave
 * nothing to send and name the limit */
static int gateway(enum policy_api api, enum proxy_body kind, const char *body)
{
    struct proxy_decision d;
    int rc = proxy_decide_body(cfg, pol, api, kind, body, strlen(body), "k", "t", &d), st;

    st = rc == 0 ? 0 : d.status;
    if (rc != 0 && st == 413 &&
        (d.outbound || !strstr(d.error, "limit of 200 JSON values") ||
         !strstr(d.error, "limits.max_body_values")))
        st = -1;
    if (rc == 0 && !d.outbound)
        st = -2;
    if (st != 0 && st != 413)
        fprintf(stderr, "  proxy_decide: %d: %s\n", d.status, d.error);
    proxy_decision_deinit(&d);
    return st;
}

static void test_policy_at_and_over_the_limit(void)
{
    struct buf *b = malloc(sizeof(*b));
    REQUIRE(b);
    chat_of(b, LIMIT);
    CHECK_EQ_INT(values(b->s), LIMIT);
    CHECK(policy_allows(b->s));
    chat_of(b, LIMIT + 1);
    CHECK_EQ_INT(values(b->s), LIMIT + 1);
    CHECK(policy_refuses(b->s));
    /* a body the caller parsed: the same limit on its parse */
    struct json_doc doc = {0};
    char err[256];
    REQUIRE(json_parse(&doc, b->s, b->n, err, sizeof(err)) == 0);
    struct policy_input in = {
        .api = POLICY_API_OPENAI, .body = b->s, .len = b->n, .doc = &doc, .model = "m"};
    struct policy_decision d;
    CHECK(policy_decide(pol, &in, &d) == -1 && d.too_large);
    policy_decision_deinit(&d);
    json_doc_deinit(&doc);
    free(b);
}

/* every value counts, not only strings: 2,000,000 numbers cost 45 ms to decide */
static void test_numbers_and_empty_containers_count(void)
{
    struct buf *b = malloc(sizeof(*b));
    REQUIRE(b);
    b->n = 0;
    put(b, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"metadata\":[");
    for (int i = 0; i < LIMIT; i++)
        put(b, i ? ",0" : "0");
    put(b, "]}");
    CHECK(policy_refuses(b->s));
    CHECK_EQ_INT(gateway(POLICY_API_OPENAI, PROXY_BODY_CHAT, b->s), 413);
    b->n = 0;
    put(b, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"metadata\":[");
    for (int i = 0; i < LIMIT; i++)
        put(b, i ? ",[]" : "{}");
    put(b, "]}");
    CHECK(policy_refuses(b->s));
    free(b);
}

/* the 413 on each endpoint's body, before its shape or the policy is read; at the limit each
 * goes on */
static void test_gateway_every_endpoint(void)
{
    struct buf *b = malloc(sizeof(*b));
    REQUIRE(b);
    static const struct {
        enum policy_api api;
        enum proxy_body kind;
        const char *head, *item, *tail;
        const char *model;
    } eps[] = {
        {POLICY_API_OPENAI, PROXY_BODY_CHAT, "{\"model\":\"m\",\"messages\":[",
         "{\"role\":\"user\",\"content\":\"a\"}", "]}", "m"},
        {POLICY_API_ANTHROPIC, PROXY_BODY_CHAT, "{\"model\":\"c\",\"max_tokens\":5,\"messages\":[",
         "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"}]}", "]}", "c"},
        {POLICY_API_OPENAI, PROXY_BODY_RESPONSE, "{\"model\":\"m\",\"input\":[",
         "{\"role\":\"user\",\"content\":[{\"type\":\"input_text\",\"text\":\"a\"}]}", "]}", "m"},
        {POLICY_API_OPENAI, PROXY_BODY_COMPLETION, "{\"model\":\"m\",\"prompt\":[", "\"a\"", "]}",
         "m"},
        {POLICY_API_OPENAI, PROXY_BODY_EMBEDDING, "{\"model\":\"m\",\"input\":[", "\"a\"", "]}",
         "m"},
    };
    for (size_t e = 0; e < sizeof(eps) / sizeof(*eps); e++) {
        int items = 1, over = 0, at = 0;
        /* grow item by item: the last body at or under the limit goes on, the first over it
         * is refused */
        for (;; items++) {
            b->n = 0;
            b->s[0] = '\0';
            put(b, eps[e].head);
            for (int i = 0; i < items; i++) {
                if (i)
                    put(b, ",");
                put(b, eps[e].item);
            }
            put(b, eps[e].tail);
            size_t n = values(b->s);
            int st = gateway(eps[e].api, eps[e].kind, b->s);
            if (n <= LIMIT) {
                at += st == 0;
                if (st != 0)
                    fprintf(stderr, "  endpoint %zu: %zu values refused %d\n", e, n, st);
            } else {
                over = st == 413;
                break;
            }
        }
        CHECK(at == items - 1);
        CHECK(over);
    }
    free(b);
}

/* the gateway counts values before it parses: every kind of token, strings with escaped
 * quotes and backslashes, whitespace anywhere; exact, so a body at the limit goes on and one
 * more value is refused */
static void test_gateway_count_is_exact(void)
{
    static const char *const items[] = {
        "\"a\\\"b\"", /* "a\"b": an escaped quote */
        "\"\\\\\"",   /* "\\": a backslash, then the closing quote */
        " -1.5e+10 ",
        "true",
        "null",
        "false",
        "[ ]",
        "{}",
        "{\"k\\\"\" : [1, 2 ,3]}", /* a name with an escaped quote */
        "\"x,y:[{\"",              /* structure inside a string */
        "\"\\u0022\"",             /* an escaped quote as \u0022 */
        "[[0],[\"\\\\\\\"\"]]",    /* "\\\"": backslash, quote */
    };
    struct buf *b = malloc(sizeof(*b));
    REQUIRE(b);
    for (size_t it = 0; it < sizeof(items) / sizeof(*items); it++) {
        int ok_at = 1, over = 0;
        for (int k = 1;; k++) {
            b->n = 0;
            b->s[0] = '\0';
            put(b, "{ \"model\" : \"m\",\n \"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
                   "\"metadata\": [");
            for (int i = 0; i < k; i++) {
                if (i)
                    put(b, " ,\t");
                put(b, items[it]);
            }
            put(b, "] }");
            size_t n = values(b->s);
            REQUIRE(n > 0);
            int st = gateway(POLICY_API_OPENAI, PROXY_BODY_CHAT, b->s);
            if (n <= LIMIT) {
                if (st != 0) {
                    fprintf(stderr, "  item %zu: %zu values refused %d\n", it, n, st);
                    ok_at = 0;
                }
            } else {
                over = st == 413;
                break;
            }
        }
        CHECK(ok_at);
        CHECK(over);
    }
    free(b);
}

/* many parts, a finding inside each and an AWS key split across each junction: the split
 * keys are found at every junction, none where a whole-part finding already covers the
 * span (the junctions are scanned in one pass and checked by binary search) */
static void test_many_split_values(void)
{
    const char *y = "providers:\n"
                    "  oai: {type: openai, base_url: \"http://127.0.0.1:2/v1\", api_key: k1}\n"
                    "models:\n"
                    "  - {name: m, provider: oai}\n"
                    "rules:\n"
                    "  - {name: default, then: {action: allow}}\n";
    struct config *c = NULL;
    struct policy *p = NULL;
    struct config_errors errs = {0};
    struct buf *b = malloc(sizeof(*b));
    REQUIRE(b);
    REQUIRE(config_load_text("s.yaml", y, strlen(y), NULL, &c, &errs) == 0);
    REQUIRE(policy_new(c, &p, &errs) == 0);
    enum { PARTS = 300 };
    b->n = 0;
    put(b, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[");
    for (int i = 0; i < PARTS; i++) {
        char part[160];
        /* each part: the end of the previous part's key, an address, the start of a key;
         * every tenth part ends with a whole e-mail instead and the next starts "then":
         * that junction's match ("a@b.comthen") overlaps a finding and is not added */
        snprintf(part, sizeof(part), "%s{\"type\":\"text\",\"text\":\"%s host 10.0.%d.%d %s\"}",
                 i ? "," : "",
                 i == 0        ? "start"
                 : i % 10 == 0 ? "then"
                               : "ODNN7EXAMPLQ",
                 i / 200, i % 200 + 1, i % 10 == 9 ? "mail a@b.com" : "key AKIAIOSF");
        put(b, part);
    }
    put(b, "]}]}");
    struct policy_input in = {.api = POLICY_API_OPENAI, .body = b->s, .len = b->n, .model = "m"};
    struct policy_decision d;
    REQUIRE(policy_decide(p, &in, &d) == 0);
    size_t aws = 0, ip = 0, mail = 0;
    for (size_t i = 0; i < d.n_findings; i++) {
        aws += strcmp(d.findings[i].detector, "aws_access_key") == 0;
        ip += strcmp(d.findings[i].detector, "ipv4") == 0;
        mail += strcmp(d.findings[i].detector, "email") == 0;
        if (i)
            CHECK(d.findings[i - 1].end <= d.findings[i].start);
    }
    CHECK_EQ_INT(ip, PARTS);
    CHECK_EQ_INT(mail, PARTS / 10);
    /* a key at every junction but the 29 after an e-mail */
    CHECK_EQ_INT(aws, PARTS - 1 - (PARTS / 10 - 1));
    policy_decision_deinit(&d);
    policy_free(p);
    config_unref(c);
    free(b);
}

int main(void)
{
    struct config_errors errs = {0};
    if (config_load_text("limit.yaml", yaml, strlen(yaml), NULL, &cfg, &errs) != 0 ||
        policy_new(cfg, &pol, &errs) != 0) {
        fprintf(stderr, "cannot load the test config\n");
        return 1;
    }
    RUN(test_policy_at_and_over_the_limit);
    RUN(test_numbers_and_empty_containers_count);
    RUN(test_gateway_every_endpoint);
    RUN(test_gateway_count_is_exact);
    RUN(test_many_split_values);
    policy_free(pol);
    config_unref(cfg);
    return harness_done();
}
