/* test_read.c -- reading the log back: show (JSON lines, text/base64 payloads, --id),
 * sealing round trip (and the wrong key failing), cost report, spend replay. */
#include <cJSON.h>
#include <sys/time.h>

#include "audit/audit_int.h"
#include "audit_test_util.h"
#include "common/log.h"
#include "harness.h"

struct lines {
    char *items[256];
    int n;
};

static void collect(void *ud, const char *json)
{
    struct lines *l = ud;
    if (l->n < 256)
        l->items[l->n++] = strdup(json);
}

static void lines_free(struct lines *l)
{
    int i;
    for (i = 0; i < l->n; i++)
        free(l->items[i]);
    l->n = 0;
}

#define INBOUND "{\"messages\":\"secret \xc3\xa9 prompt\"}"
static const uint8_t BINARY[6] = {0x00, 0xff, 0x10, 0x80, 'x', 0x00};

static void write_sample(const char *dir, const char *seal_to)
{
    struct config_audit cfg = audit_cfg((char *)dir, CONFIG_SYNC_BATCH);
    struct audit *a = NULL;
    struct waiter w;
    char err[256];
    struct audit_blob req[2] = {{"inbound", INBOUND, sizeof(INBOUND) - 1},
                                {"outbound", BINARY, sizeof(BINARY)}};
    struct audit_blob resp[2] = {{"upstream", "data: {\"x\":1}\n\n", 15},
                                 {"client", "answer", 6}};

    cfg.seal_to = (char *)seal_to;
    if (audit_open(&cfg, &a, err, sizeof(err)) != 0) {
        fprintf(stderr, "open: %s\n", err);
        exit(1);
    }
    waiter_init(&w);
    if (audit_append(
            a, AUDIT_REC_REQUEST,
            "{\"id\":\"0123456789abcdef0123456789abcdef\",\"key\":\"alice\",\"team\":\"red\","
            "\"verdict\":\"allow\"}",
            req, 2, waiter_cb, &w) != 0 ||
        audit_append(
            a, AUDIT_REC_RESPONSE,
            "{\"id\":\"0123456789abcdef0123456789abcdef\",\"key\":\"alice\",\"team\":\"red\","
            "\"provider\":\"openai\",\"model\":\"gpt\",\"status\":200,\"usage\":{"
            "\"input_tokens\":100,\"output_tokens\":20,\"cached_input_tokens\":50},"
            "\"cost_usd\":0.5}",
            resp, 2, waiter_cb, &w) != 0 ||
        audit_append(a, AUDIT_REC_REQUEST, "{\"id\":\"ffff\",\"key\":null,\"team\":null}", NULL, 0,
                     waiter_cb, &w) != 0 ||
        audit_append(a, AUDIT_REC_RESPONSE,
                     "{\"id\":\"ffff\",\"key\":null,\"team\":null,\"provider\":\"local\","
                     "\"model\":\"small\",\"status\":403,\"usage\":{\"input_tokens\":0,"
                     "\"output_tokens\":0,\"cached_input_tokens\":0},\"cost_usd\":0}",
                     NULL, 0, waiter_cb, &w) != 0 ||
        audit_append(a, AUDIT_REC_RESPONSE,
                     "{\"id\":\"eeee\",\"key\":\"bob\",\"team\":\"red\",\"provider\":\"openai\","
                     "\"model\":\"gpt\",\"status\":200,\"usage\":{\"input_tokens\":7,"
                     "\"output_tokens\":3,\"cached_input_tokens\":0},\"cost_usd\":0.25}",
                     NULL, 0, waiter_cb, &w) != 0)
        exit(1);
    waiter_wait(&w, 5);
    if (w.ok != 5)
        exit(1);
    waiter_deinit(&w);
    audit_close(a);
}

static const char *str_of(cJSON *o, const char *name)
{
    cJSON *v = cJSON_GetObjectItem(o, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static cJSON *blob_named(cJSON *rec, const char *name)
{
    cJSON *b;
    cJSON_ArrayForEach(b, cJSON_GetObjectItem(rec, "blobs"))
    {
        cJSON *n = cJSON_GetObjectItem(b, "name");
        if (cJSON_IsString(n) && strcmp(n->valuestring, name) == 0)
            return b;
    }
    return NULL;
}

/* The type bytes and the names `audit show` prints are the on-disk format (docs/audit.md):
 * logs already written must read the same, so neither may change. */
static void test_rec_types_are_the_format(void)
{
    CHECK_EQ_INT(AUDIT_REC_SEGSTART, 1);
    CHECK_EQ_INT(AUDIT_REC_REQUEST, 2);
    CHECK_EQ_INT(AUDIT_REC_RESPONSE, 3);
    CHECK_EQ_INT(AUDIT_REC_CHECKPOINT, 4);
    CHECK_EQ_STR(audit_rec_type_name(AUDIT_REC_SEGSTART), "segment-start");
    CHECK_EQ_STR(audit_rec_type_name(AUDIT_REC_REQUEST), "request");
    CHECK_EQ_STR(audit_rec_type_name(AUDIT_REC_RESPONSE), "response");
    CHECK_EQ_STR(audit_rec_type_name(AUDIT_REC_CHECKPOINT), "checkpoint");
    CHECK(audit_rec_type_name(0) == NULL);
    CHECK(audit_rec_type_name(-1) == NULL);
    CHECK(audit_rec_type_name(255) == NULL);
    CHECK(audit_rec_type_is_event(AUDIT_REC_REQUEST) &&
          audit_rec_type_is_event(AUDIT_REC_RESPONSE));
    CHECK(!audit_rec_type_is_event(AUDIT_REC_SEGSTART));
    CHECK(!audit_rec_type_is_event(AUDIT_REC_CHECKPOINT));
    CHECK(!audit_rec_type_is_event(0) && !audit_rec_type_is_event(255));
}

static void test_show_plain(void)
{
    char *dir = tmp_dir("show");
    struct lines l = {{0}, 0};
    struct audit_report rep;
    char err[256];
    cJSON *r0, *r1, *b;

    REQUIRE(dir);
    write_sample(dir, NULL);
    REQUIRE(audit_show(dir, NULL, NULL, collect, &l, &rep, err, sizeof(err)) == 0);
    CHECK_EQ_INT(rep.verdict, AUDIT_INTACT);
    CHECK_EQ_INT(l.n, 7); /* start, 5 records, shutdown checkpoint */
    r0 = cJSON_Parse(l.items[0]);
    REQUIRE(r0);
    CHECK_EQ_STR(cJSON_GetObjectItem(r0, "type")->valuestring, "segment-start");
    cJSON_Delete(r0);
    r1 = cJSON_Parse(l.items[1]);
    REQUIRE(r1);
    CHECK_EQ_STR(cJSON_GetObjectItem(r1, "type")->valuestring, "request");
    CHECK_EQ_INT(cJSON_GetObjectItem(r1, "seq")->valuedouble, 2);
    CHECK_EQ_STR(cJSON_GetObjectItem(cJSON_GetObjectItem(r1, "meta"), "key")->valuestring,
                 "alice");
    b = blob_named(r1, "inbound");
    REQUIRE(b);
    CHECK_EQ_STR(str_of(b, "text"), INBOUND);
    CHECK_EQ_INT(cJSON_GetObjectItem(b, "bytes")->valuedouble, sizeof(INBOUND) - 1);
    b = blob_named(r1, "outbound");
    REQUIRE(b);
    CHECK(cJSON_GetObjectItem(b, "text") == NULL);
    CHECK_EQ_STR(str_of(b, "base64"), "AP8QgHgA");
    cJSON_Delete(r1);
    r1 = cJSON_Parse(l.items[6]);
    REQUIRE(r1);
    CHECK_EQ_STR(cJSON_GetObjectItem(r1, "type")->valuestring, "checkpoint");
    CHECK_EQ_STR(cJSON_GetObjectItem(r1, "reason")->valuestring, "shutdown");
    CHECK_EQ_INT(cJSON_GetObjectItem(r1, "signs_seq")->valuedouble, 6);
    cJSON_Delete(r1);
    lines_free(&l);

    /* --id: the request and its response only */
    REQUIRE(audit_show(dir, "0123456789abcdef0123456789abcdef", NULL, collect, &l, &rep, err,
                       sizeof(err)) == 0);
    CHECK_EQ_INT(l.n, 2);
    CHECK(l.n == 2 && strstr(l.items[1], "\"type\":\"response\"") != NULL);
    lines_free(&l);
    REQUIRE(audit_show(dir, "nope", NULL, collect, &l, &rep, err, sizeof(err)) == 0);
    CHECK_EQ_INT(l.n, 0);
    rm_rf(dir);
    free(dir);
}

static void test_seal_round_trip(void)
{
    char *dir = tmp_dir("seal");
    char *kdir = tmp_dir("sealkeys");
    char prefix[512], other[512], pub[1024], key[1024], okey[1024], seg[1024], err[256];
    struct lines l = {{0}, 0};
    struct audit_report rep;
    size_t len, i;
    uint8_t *raw;
    cJSON *r, *b;

    REQUIRE(dir && kdir);
    snprintf(prefix, sizeof(prefix), "%s/auditor", kdir);
    snprintf(other, sizeof(other), "%s/other", kdir);
    REQUIRE(audit_keygen(prefix, err, sizeof(err)) == 0);
    REQUIRE(audit_keygen(other, err, sizeof(err)) == 0);
    snprintf(pub, sizeof(pub), "%s.seal.pub", prefix);
    snprintf(key, sizeof(key), "%s.seal.key", prefix);
    snprintf(okey, sizeof(okey), "%s.seal.key", other);
    write_sample(dir, pub);
    REQUIRE(audit_verify(dir, NULL, &rep, err, sizeof(err)) == 0);
    CHECK_EQ_INT(rep.verdict, AUDIT_INTACT);

    /* payloads are not on disk in clear; metadata is */
    snprintf(seg, sizeof(seg), "%s/00000001.alog", dir);
    raw = read_file(seg, &len);
    REQUIRE(raw);
    for (i = 0; i + 6 <= len; i++) {
        CHECK(memcmp(raw + i, "secret", 6) != 0);
        CHECK(memcmp(raw + i, "answer", 6) != 0);
    }
    CHECK(memmem(raw, len, "\"key\":\"alice\"", 13) != NULL);
    free(raw);

    /* without the key: sealed, with sizes */
    REQUIRE(audit_show(dir, NULL, NULL, collect, &l, &rep, err, sizeof(err)) == 0);
    CHECK_EQ_INT(rep.verdict, AUDIT_INTACT);
    REQUIRE(l.n == 7);
    r = cJSON_Parse(l.items[1]);
    REQUIRE(r);
    b = blob_named(r, "inbound");
    REQUIRE(b);
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(b, "sealed")));
    CHECK_EQ_INT(cJSON_GetObjectItem(b, "bytes")->valuedouble, sizeof(INBOUND) - 1);
    CHECK(cJSON_GetObjectItem(b, "text") == NULL);
    cJSON_Delete(r);
    lines_free(&l);

    /* with the auditor key: the exact bytes */
    REQUIRE(audit_show(dir, NULL, key, collect, &l, &rep, err, sizeof(err)) == 0);
    CHECK_EQ_INT(rep.verdict, AUDIT_INTACT);
    REQUIRE(l.n == 7);
    r = cJSON_Parse(l.items[1]);
    REQUIRE(r);
    b = blob_named(r, "inbound");
    REQUIRE(b);
    CHECK_EQ_STR(str_of(b, "text"), INBOUND);
    b = blob_named(r, "outbound");
    REQUIRE(b);
    CHECK_EQ_STR(str_of(b, "base64"), "AP8QgHgA");
    cJSON_Delete(r);
    r = cJSON_Parse(l.items[2]);
    REQUIRE(r);
    b = blob_named(r, "upstream");
    REQUIRE(b);
    CHECK_EQ_STR(str_of(b, "text"), "data: {\"x\":1}\n\n");
    cJSON_Delete(r);
    lines_free(&l);

    /* another auditor's key opens nothing and says so */
    REQUIRE(audit_show(dir, NULL, okey, collect, &l, &rep, err, sizeof(err)) == 0);
    CHECK_EQ_INT(rep.undecryptable, 4);
    CHECK(l.n == 7 && strstr(l.items[1], "cannot be opened") != NULL);
    CHECK(strstr(l.items[1], "secret") == NULL);
    lines_free(&l);
    /* a signing key is not a seal key */
    snprintf(okey, sizeof(okey), "%s.sign.key", other);
    CHECK(audit_show(dir, NULL, okey, collect, &l, &rep, err, sizeof(err)) == -1);
    lines_free(&l);

    /* reopening a sealed log starts a new segment with a fresh key; all still opens */
    write_sample(dir, pub);
    REQUIRE(audit_verify(dir, NULL, &rep, err, sizeof(err)) == 0);
    CHECK_EQ_INT(rep.verdict, AUDIT_INTACT);
    CHECK_EQ_INT(rep.segments, 2);
    REQUIRE(audit_show(dir, NULL, key, collect, &l, &rep, err, sizeof(err)) == 0);
    CHECK_EQ_INT(rep.verdict, AUDIT_INTACT);
    CHECK(l.n > 10 && strstr(l.items[l.n - 6], "secret") != NULL);
    lines_free(&l);
    rm_rf(dir);
    rm_rf(kdir);
    free(dir);
    free(kdir);
}

static void test_cost_report(void)
{
    char *dir = tmp_dir("cost");
    struct audit_cost_row *rows = NULL;
    struct audit_report rep;
    size_t n = 0;
    char err[256];

    REQUIRE(dir);
    write_sample(dir, NULL);
    REQUIRE(audit_cost_report(dir, AUDIT_COST_BY_KEY, 0, &rows, &n, &rep, err, sizeof(err)) == 0);
    REQUIRE(n == 3);
    CHECK_EQ_STR(rows[0].group, "alice");
    CHECK_EQ_INT(rows[0].requests, 1);
    CHECK_EQ_INT(rows[0].input_tokens, 100);
    CHECK_EQ_INT(rows[0].output_tokens, 20);
    CHECK_EQ_INT(rows[0].cached_tokens, 50);
    CHECK(rows[0].usd > 0.4999 && rows[0].usd < 0.5001);
    CHECK_EQ_STR(rows[1].group, "bob");
    CHECK_EQ_STR(rows[2].group, "-"); /* no key */
    audit_cost_rows_free(rows, n);

    REQUIRE(audit_cost_report(dir, AUDIT_COST_BY_TEAM, 0, &rows, &n, &rep, err, sizeof(err)) ==
            0);
    REQUIRE(n == 2);
    CHECK_EQ_STR(rows[0].group, "red");
    CHECK_EQ_INT(rows[0].requests, 2);
    CHECK_EQ_INT(rows[0].input_tokens, 107);
    CHECK(rows[0].usd > 0.7499 && rows[0].usd < 0.7501);
    audit_cost_rows_free(rows, n);

    REQUIRE(audit_cost_report(dir, AUDIT_COST_BY_MODEL, 0, &rows, &n, &rep, err, sizeof(err)) ==
            0);
    REQUIRE(n == 2);
    CHECK_EQ_STR(rows[0].group, "gpt");
    CHECK_EQ_STR(rows[1].group, "small");
    audit_cost_rows_free(rows, n);

    REQUIRE(audit_cost_report(dir, AUDIT_COST_BY_PROVIDER, time(NULL) + 86400, &rows, &n, &rep,
                              err, sizeof(err)) == 0);
    CHECK_EQ_INT(n, 0); /* nothing after tomorrow */
    audit_cost_rows_free(rows, n);
    rm_rf(dir);
    free(dir);
}

struct spend_sum {
    double alice, bob, nokey;
    int calls;
};

static void spend_fn(void *ud, const char *key, const char *team, double usd)
{
    struct spend_sum *s = ud;
    s->calls++;
    if (!key)
        s->nokey += usd;
    else if (!strcmp(key, "alice") && team && !strcmp(team, "red"))
        s->alice += usd;
    else if (!strcmp(key, "bob"))
        s->bob += usd;
}

static void test_spend_scan(void)
{
    char *dir = tmp_dir("spend");
    struct spend_sum s;

    REQUIRE(dir);
    write_sample(dir, NULL);
    memset(&s, 0, sizeof(s));
    CHECK(audit_spend_scan(dir, 0, spend_fn, &s) == 0);
    CHECK_EQ_INT(s.calls, 3);
    CHECK(s.alice > 0.4999 && s.alice < 0.5001);
    CHECK(s.bob > 0.2499 && s.bob < 0.2501);
    memset(&s, 0, sizeof(s));
    CHECK(audit_spend_scan(dir, time(NULL) + 3600, spend_fn, &s) == 0);
    CHECK_EQ_INT(s.calls, 0);
    /* a directory that does not exist yet has spent nothing */
    memset(&s, 0, sizeof(s));
    CHECK(audit_spend_scan("/nonexistent/airlock-audit", 0, spend_fn, &s) == 0);
    CHECK_EQ_INT(s.calls, 0);
    rm_rf(dir);
    free(dir);
}

/* The budget replay skips segments last modified before `since` without reading
 * them (damage there does not matter to it), and still counts the later ones. */
static void test_spend_scan_skips_old_segments(void)
{
    char *dir = tmp_dir("spendskip");
    struct config_audit cfg = audit_cfg(dir, CONFIG_SYNC_NONE);
    struct audit *a = NULL;
    struct spend_sum s;
    char err[256], seg1[1024];
    size_t len, off = 0;
    uint8_t *buf;
    int in_seg1 = 0;
    struct timeval tv[2];

    REQUIRE(dir);
    setenv("AIRLOCK_AUDIT_SEGMENT_BYTES", "4096", 1);
    REQUIRE(audit_open(&cfg, &a, err, sizeof(err)) == 0);
    unsetenv("AIRLOCK_AUDIT_SEGMENT_BYTES");
    REQUIRE(append_n(a, 40, 0, 300) == 0);
    audit_close(a);
    snprintf(seg1, sizeof(seg1), "%s/00000001.alog", dir);
    buf = read_file(seg1, &len);
    REQUIRE(buf);
    while (off < len) {
        struct audit_rec rec;
        const char *why;
        REQUIRE(audit_rec_decode(buf, len, off, &rec, &why) == AUDIT_DEC_OK);
        in_seg1 += rec.type == AUDIT_REC_RESPONSE;
        off += rec.total;
    }
    REQUIRE(in_seg1 > 0);
    buf[100] ^= 0xff; /* damage the old segment */
    REQUIRE(write_file(seg1, buf, len) == 0);
    free(buf);
    tv[0].tv_sec = tv[1].tv_sec = time(NULL) - 2 * 86400;
    tv[0].tv_usec = tv[1].tv_usec = 0;
    REQUIRE(utimes(seg1, tv) == 0);
    memset(&s, 0, sizeof(s));
    CHECK(audit_spend_scan(dir, time(NULL) - 3600, spend_fn, &s) == 0);
    CHECK_EQ_INT(s.calls, 20 - in_seg1);
    rm_rf(dir);
    free(dir);
}

int main(void)
{
    log_set_level(LOG_WARN);
    RUN(test_rec_types_are_the_format);
    RUN(test_show_plain);
    RUN(test_seal_round_trip);
    RUN(test_cost_report);
    RUN(test_spend_scan);
    RUN(test_spend_scan_skips_old_segments);
    return harness_done();
}
