/* test_diff.c -- `audit show --diff` (audit/diff.c): the pretty printer keeps each value's
 * bytes, the line diff is a shortest edit script (checked against an LCS table on random
 * inputs) printed as unified hunks, its bound falls back to whole removal and addition, and
 * audit_diff on real logs shows the redaction as -/+ lines, says "unchanged", and on a
 * sealed log without the key gives positions and lengths and no value. */
#include "../../audit/diff.c"

#include "audit_test_util.h"
#include "common/log.h"
#include "harness.h"

static void test_pretty_keeps_bytes_and_order(void)
{
    const char *body = "{\"z\":1.50,\"a\":[true,null,\"x\\ny\"],\"c\":{},\"d\":[],"
                       "\"e\":\"\\u0041\",\"f\":{\"g\":-0}}";
    const char *want = "{\n"
                       "  \"z\": 1.50,\n"
                       "  \"a\": [\n"
                       "    true,\n"
                       "    null,\n"
                       "    \"x\\n\n"
                       "      y\"\n"
                       "  ],\n"
                       "  \"c\": {},\n"
                       "  \"d\": [],\n"
                       "  \"e\": \"\\u0041\",\n"
                       "  \"f\": {\n"
                       "    \"g\": -0\n"
                       "  }\n"
                       "}\n";
    char *out = NULL;
    size_t len = 0;

    REQUIRE(audit_diff_pretty(body, strlen(body), &out, &len) == 0);
    CHECK_EQ_STR(out, want);
    CHECK_EQ_INT(len, strlen(want));
    free(out);
    /* a \n at the very end of a string does not break the line; an escaped backslash
     * before an n is no \n */
    REQUIRE(audit_diff_pretty("[\"a\\n\",\"b\\\\nc\"]", 15, &out, &len) == 0);
    CHECK_EQ_STR(out, "[\n  \"a\\n\",\n  \"b\\\\nc\"\n]\n");
    free(out);
    /* not JSON (an SSE stream, a duplicate member): 1, the caller diffs raw lines */
    CHECK_EQ_INT(audit_diff_pretty("data: {}\n\n", 10, &out, &len), 1);
    CHECK(out == NULL);
    CHECK_EQ_INT(audit_diff_pretty("{\"a\":1,\"a\":2}", 13, &out, &len), 1);
    CHECK_EQ_INT(audit_diff_pretty("", 0, &out, &len), 1);
}

static void test_view_of_a_stream(void)
{
    const char *sse = "event: a\ndata: {\"x\":[1,2]}\n\ndata: [DONE]\ndata:{}\n: note\n";
    char *out = NULL;
    size_t len = 0;

    REQUIRE(view(sse, strlen(sse), &out, &len) == 0);
    CHECK_EQ_STR(out, "event: a\ndata: {\n  \"x\": [\n    1,\n    2\n  ]\n}\n\ndata: [DONE]\n"
                      "data: {}\n: note\n");
    CHECK_EQ_INT(len, strlen(out));
    free(out);
}

static char *difft(const char *a, const char *b)
{
    char *out = NULL;
    size_t len = 0;

    if (audit_diff_text(a, strlen(a), b, strlen(b), "A", "B", &out, &len) < 0)
        return NULL;
    return out;
}

static void test_unified_hunks(void)
{
    char *d;

    d = difft("1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n", "1\n2\n3\n4\nfive\n6\n7\n8\n9\n10\n");
    CHECK_EQ_STR(d, "--- A\n+++ B\n@@ -2,7 +2,7 @@\n 2\n 3\n 4\n-5\n+five\n 6\n 7\n 8\n");
    free(d);
    /* equal: headers only */
    d = difft("a\nb\n", "a\nb\n");
    CHECK_EQ_STR(d, "--- A\n+++ B\n");
    free(d);
    /* from nothing, to nothing; a last line without its newline is a line */
    d = difft("", "x\ny");
    CHECK_EQ_STR(d, "--- A\n+++ B\n@@ -0,0 +1,2 @@\n+x\n+y\n");
    free(d);
    d = difft("x\n", "");
    CHECK_EQ_STR(d, "--- A\n+++ B\n@@ -1,1 +0,0 @@\n-x\n");
    free(d);
    /* changes 8 equal lines apart are two hunks; 6 apart, one */
    d = difft("a\n1\n2\n3\n4\n5\n6\n7\n8\nb\n", "A\n1\n2\n3\n4\n5\n6\n7\n8\nB\n");
    CHECK_EQ_STR(d, "--- A\n+++ B\n@@ -1,4 +1,4 @@\n-a\n+A\n 1\n 2\n 3\n"
                    "@@ -7,4 +7,4 @@\n 6\n 7\n 8\n-b\n+B\n");
    free(d);
    d = difft("a\n1\n2\n3\n4\n5\n6\nb\n", "A\n1\n2\n3\n4\n5\n6\nB\n");
    CHECK_EQ_STR(d, "--- A\n+++ B\n@@ -1,8 +1,8 @@\n-a\n+A\n 1\n 2\n 3\n 4\n 5\n 6\n-b\n+B\n");
    free(d);
    /* a control byte from an answer is shown, not sent to the terminal */
    d = difft("ok\n", "o\x1b[2Jk\n");
    CHECK(d && strstr(d, "+o\\x1b[2Jk\n") && !strchr(d, 0x1b));
    free(d);
    /* so is a C1 control as UTF-8 (U+009B is CSI to terminals that read C1 controls in
     * UTF-8: VTE, xterm): JSON lets a string hold it raw (red team) */
    d = difft("ok\n", "o\xc2\x9b"
                      "2J\xc2\x9d"
                      "0;t\x07k \xc2\xa0\xc3\xa9\n");
    CHECK(d && strstr(d, "+o\\u009b2J\\u009d0;t\\x07k \xc2\xa0\xc3\xa9\n") &&
          !strstr(d, "\xc2\x9b") && !strstr(d, "\xc2\x9d"));
    free(d);
}

/* lcs -- the length of a longest common subsequence of a and b (the table) */
static size_t lcs(const struct line *a, size_t n, const struct line *b, size_t m)
{
    size_t *t = calloc((n + 1) * (m + 1), sizeof(*t)), r;

    for (size_t i = n; i-- > 0;)
        for (size_t j = m; j-- > 0;)
            t[i * (m + 1) + j] =
                line_eq(&a[i], &b[j])
                    ? 1 + t[(i + 1) * (m + 1) + j + 1]
                    : (t[(i + 1) * (m + 1) + j] > t[i * (m + 1) + j + 1] ? t[(i + 1) * (m + 1) + j]
                                                                         : t[i * (m + 1) + j + 1]);
    r = t[0];
    free(t);
    return r;
}

/* valid -- the script walks a and b in order, keeps only equal lines, and keeps `keep` */
static int valid(const struct ops *o, const struct line *a, size_t n, const struct line *b,
                 size_t m, size_t keep)
{
    size_t i = 0, j = 0, kept = 0;

    for (size_t k = 0; k < o->n; k++) {
        const struct op *p = &o->v[k];
        if (p->kind == ' ') {
            if (p->a != i || p->b != j || !line_eq(&a[i], &b[j]))
                return 0;
            i++, j++, kept++;
        } else if (p->kind == '-') {
            if (p->a != i)
                return 0;
            i++;
        } else {
            if (p->b != j)
                return 0;
            j++;
        }
    }
    return i == n && j == m && kept == keep;
}

static void test_script_is_shortest(void)
{
    static const char *words[] = {"a", "b", "c", "d"};
    unsigned seed = 12345;

    for (int round = 0; round < 400; round++) {
        struct line a[40], b[40];
        size_t n, m;
        struct ops o = {0};
        seed = seed * 1103515245u + 12345u;
        n = (seed >> 16) % 30;
        seed = seed * 1103515245u + 12345u;
        m = (seed >> 16) % 30;
        for (size_t i = 0; i < n + m; i++) {
            seed = seed * 1103515245u + 12345u;
            const char *w = words[(seed >> 16) % (round % 3 + 2)];
            if (i < n)
                a[i] = (struct line){w, 1};
            else
                b[i - n] = (struct line){w, 1};
        }
        REQUIRE(script(a, n, b, m, &o) == 0);
        if (!valid(&o, a, n, b, m, lcs(a, n, b, m))) {
            fprintf(stderr, "  round %d: n %zu m %zu\n", round, n, m);
            CHECK(0);
            free(o.v);
            return;
        }
        free(o.v);
    }
}

static void test_bound_falls_back_whole(void)
{
    /* 3,000 lines against 3,000 others: Myers would keep ~36M cells; the middle between
     * the common head and tail is shown removed and added whole */
    size_t n = 3000;
    struct line *a = calloc(n + 2, sizeof(*a)), *b = calloc(n + 2, sizeof(*b));
    char(*ta)[16] = calloc(n, 16), (*tb_)[16] = calloc(n, 16);
    struct ops o = {0};
    size_t minus = 0, plus = 0, same = 0;

    REQUIRE(a && b && ta && tb_);
    a[0] = b[0] = (struct line){"head", 4};
    for (size_t i = 0; i < n; i++) {
        snprintf(ta[i], 16, "a%zu", i);
        snprintf(tb_[i], 16, "b%zu", i);
        a[i + 1] = (struct line){ta[i], strlen(ta[i])};
        b[i + 1] = (struct line){tb_[i], strlen(tb_[i])};
    }
    a[n + 1] = b[n + 1] = (struct line){"tail", 4};
    CHECK_EQ_INT(myers(a + 1, n, b + 1, n, 1, 1, &o), 1);
    CHECK_EQ_INT(o.n, 0);
    REQUIRE(script(a, n + 2, b, n + 2, &o) == 0);
    CHECK(valid(&o, a, n + 2, b, n + 2, 2));
    for (size_t k = 0; k < o.n; k++) {
        minus += o.v[k].kind == '-';
        plus += o.v[k].kind == '+';
        same += o.v[k].kind == ' ';
    }
    CHECK_EQ_INT(minus, n);
    CHECK_EQ_INT(plus, n);
    CHECK_EQ_INT(same, 2);
    CHECK(o.v[1].kind == '-' && o.v[n + 1].kind == '+');
    free(o.v);
    free(a);
    free(b);
    free(ta);
    free(tb_);
}

/* ---- audit_diff on logs ---- */

static const char *req_meta =
    "{\"id\":\"%s\",\"endpoint\":\"/v1/chat/completions\",\"api\":\"openai\",\"model\":\"m\","
    "\"verdict\":\"%s\",\"rule\":\"mask\",\"provider\":\"oai\",\"route_model\":\"m\"%s,"
    "\"findings\":[%s]}";
static const char *inbound_1 =
    "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"mail alice@example.com\"}]}";
static const char *outbound_1 =
    "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"mail [EMAIL_1_abcdef]\"}]}";
static const char *upstream_1 = "data: {\"c\":\"to [EMAIL_1_abcdef]\"}\n\ndata: [DONE]\n\n";
static const char *client_1 = "data: {\"c\":\"to alice@example.com\"}\n\ndata: [DONE]\n\n";
static const char *plain_2 = "{\"model\":\"m\",\"messages\":[]}";

static int append(struct audit *a, enum audit_rec_type t, const char *meta, const char *n1,
                  const char *d1, const char *n2, const char *d2)
{
    struct audit_blob b[2] = {{n1, d1, strlen(d1)}, {n2, d2, d2 ? strlen(d2) : 0}};
    return audit_append(a, t, meta, b, d2 ? 2 : 1, NULL, NULL);
}

/* a log of three requests: r1 redacted, r2 unchanged, r3 blocked (no outbound) */
static int write_log(struct audit *a)
{
    char m[1024];

    snprintf(m, sizeof(m), req_meta, "r1", "redact", ",\"modified\":\"redacted=email:1\"",
             "{\"detector\":\"email\",\"message\":0,\"start\":56,\"end\":73}");
    if (append(a, AUDIT_REC_REQUEST, m, "inbound", inbound_1, "outbound", outbound_1) != 0)
        return -1;
    snprintf(m, sizeof(m), req_meta, "r2", "allow", "", "");
    if (append(a, AUDIT_REC_REQUEST, m, "inbound", plain_2, "outbound", plain_2) != 0)
        return -1;
    if (append(a, AUDIT_REC_RESPONSE, "{\"id\":\"r1\",\"status\":200,\"model\":\"m-1\"}",
               "upstream", upstream_1, "client", client_1) != 0)
        return -1;
    if (append(a, AUDIT_REC_RESPONSE, "{\"id\":\"r2\",\"status\":200}", "upstream", "{}", "client",
               "{}") != 0)
        return -1;
    snprintf(m, sizeof(m), req_meta, "r3", "block", "", "");
    if (append(a, AUDIT_REC_REQUEST, m, "inbound", plain_2, NULL, NULL) != 0)
        return -1;
    /* metadata from a client (its model name) holding a terminal's escape sequence */
    if (append(a, AUDIT_REC_REQUEST,
               "{\"id\":\"r4\",\"model\":\"x\\u001b[2Jy\",\"verdict\":\"allow\"}", "inbound",
               plain_2, "outbound", plain_2) != 0 ||
        append(a, AUDIT_REC_RESPONSE, "{\"id\":\"r4\",\"status\":502,\"error\":\"e\\u0007\"}",
               "client", "{}", NULL, NULL) != 0)
        return -1;
    return 0;
}

struct texts {
    char all[16384];
    int n;
};

static void collect(void *ud, const char *text)
{
    struct texts *t = ud;
    size_t have = strlen(t->all);

    snprintf(t->all + have, sizeof(t->all) - have, "%s", text);
    t->n++;
}

static void test_diff_log_plain(void)
{
    char *dir = tmp_dir("diff");
    struct config_audit cfg = audit_cfg(dir, CONFIG_SYNC_NONE);
    struct audit *a = NULL;
    struct audit_report rep;
    struct texts t = {0};
    char err[256];

    REQUIRE(dir && audit_open(&cfg, &a, err, sizeof(err)) == 0);
    REQUIRE(write_log(a) == 0);
    audit_close(a);
    REQUIRE(audit_diff(dir, NULL, NULL, collect, &t, &rep, err, sizeof(err)) == 0);
    CHECK_EQ_INT(t.n, 4);
    /* in the order the responses come; r3 has none and comes last */
    CHECK(strstr(t.all, "=== request r1") < strstr(t.all, "=== request r2"));
    CHECK(strstr(t.all, "=== request r2") < strstr(t.all, "=== request r4"));
    CHECK(strstr(t.all, "=== request r4") < strstr(t.all, "=== request r3"));
    /* metadata is shown, never obeyed; a missing field is "?" */
    CHECK(strstr(t.all, "? (?)  model x\\x1b[2Jy  verdict allow  rule ?\n"));
    CHECK(strstr(t.all, "answer: status 502  error \"e\\x07\"\n"));
    CHECK(strstr(t.all, "upstream -> client: no provider answered; made here (client 2 bytes)\n"));
    CHECK(!strchr(t.all, 0x1b) && !strchr(t.all, 0x07));
    CHECK(strstr(t.all, "modified: redacted=email:1\n"));
    CHECK(strstr(t.all, "  email            56..73 (17 bytes)  message 0\n"));
    CHECK(strstr(t.all,
                 "--- inbound (received, 77 bytes)\n+++ outbound (sent upstream, 76 bytes)\n"));
    CHECK(strstr(t.all, "-      \"content\": \"mail alice@example.com\"\n"
                        "+      \"content\": \"mail [EMAIL_1_abcdef]\"\n"));
    /* the stream by its lines, each JSON data line pretty */
    CHECK(strstr(t.all, " data: {\n-  \"c\": \"to [EMAIL_1_abcdef]\"\n"
                        "+  \"c\": \"to alice@example.com\"\n }\n"));
    CHECK(strstr(t.all, "answer: status 200  model m-1\n"));
    CHECK(strstr(t.all, "modified: nothing\n"));
    CHECK(strstr(t.all, "inbound -> outbound: unchanged (27 bytes)\n"));
    CHECK(strstr(t.all, "upstream -> client: unchanged (2 bytes)\n"));
    CHECK(strstr(t.all, "inbound -> outbound: nothing left the network (inbound 27 bytes)\n"));
    CHECK(strstr(t.all, "answer: no response record\n"));
    if (t.n != 4 || !strstr(t.all, "-      \"content\""))
        fprintf(stderr, "%s", t.all);
    /* one id */
    memset(&t, 0, sizeof(t));
    REQUIRE(audit_diff(dir, "r2", NULL, collect, &t, &rep, err, sizeof(err)) == 0);
    CHECK_EQ_INT(t.n, 1);
    CHECK(strstr(t.all, "=== request r2") && !strstr(t.all, "r1"));
    rm_rf(dir);
    free(dir);
}

static void test_diff_log_sealed(void)
{
    char *dir = tmp_dir("diffsealed");
    char logdir[1024], pre[1024], pub[1100], key[1100], err[256];
    struct config_audit cfg;
    struct audit *a = NULL;
    struct audit_report rep;
    struct texts t = {0};

    REQUIRE(dir);
    snprintf(logdir, sizeof(logdir), "%s/log", dir);
    snprintf(pre, sizeof(pre), "%s/auditor", dir);
    REQUIRE(audit_keygen(pre, err, sizeof(err)) == 0);
    snprintf(pub, sizeof(pub), "%s.seal.pub", pre);
    snprintf(key, sizeof(key), "%s.seal.key", pre);
    cfg = audit_cfg(logdir, CONFIG_SYNC_NONE);
    cfg.seal_to = pub;
    REQUIRE(audit_open(&cfg, &a, err, sizeof(err)) == 0);
    REQUIRE(write_log(a) == 0);
    audit_close(a);
    /* without the key: positions and lengths, never a value */
    REQUIRE(audit_diff(logdir, "r1", NULL, collect, &t, &rep, err, sizeof(err)) == 0);
    CHECK_EQ_INT(t.n, 1);
    CHECK(strstr(t.all, "payloads are sealed and no key was given: positions and lengths only\n"));
    CHECK(strstr(t.all, "  email            56..73 (17 bytes)  message 0\n"));
    CHECK(strstr(t.all, "inbound -> outbound: sealed, 77 -> 76 bytes (values need the auditor's "
                        "key)\n"));
    CHECK(strstr(t.all, "upstream -> client: sealed, 49 -> 50 bytes"));
    CHECK(!strstr(t.all, "alice") && !strstr(t.all, "EMAIL_1") && !strstr(t.all, "@@"));
    /* with it: the values */
    memset(&t, 0, sizeof(t));
    REQUIRE(audit_diff(logdir, "r1", key, collect, &t, &rep, err, sizeof(err)) == 0);
    CHECK(strstr(t.all, "-      \"content\": \"mail alice@example.com\"\n"
                        "+      \"content\": \"mail [EMAIL_1_abcdef]\"\n"));
    CHECK(!strstr(t.all, "payloads are sealed"));
    CHECK_EQ_INT(rep.undecryptable, 0);
    rm_rf(logdir);
    rm_rf(dir);
    free(dir);
}

int main(void)
{
    log_set_level(LOG_WARN);
    RUN(test_pretty_keeps_bytes_and_order);
    RUN(test_view_of_a_stream);
    RUN(test_unified_hunks);
    RUN(test_script_is_shortest);
    RUN(test_bound_falls_back_whole);
    RUN(test_diff_log_plain);
    RUN(test_diff_log_sealed);
    return harness_done();
}
