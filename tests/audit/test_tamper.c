/* test_tamper.c -- audit verify against every tampering SPEC §5 names: a flipped bit
 * anywhere, a removed / inserted / swapped record, a re-chained forgery, a removed or
 * renamed segment, a cut tail. Each must be caught and the first bad record named. */
#include "audit/audit_int.h"
#include "audit_test_util.h"
#include "common/log.h"
#include "harness.h"

#include <sodium.h>

static char *g_dir; /* a pristine log: 3+ segments */
static uint32_t g_nseg;

static void seg_path(char *buf, size_t cap, const char *dir, uint32_t n)
{
    snprintf(buf, cap, "%s/%08u.alog", dir, n);
}

static int copy_file(const char *from, const char *to)
{
    size_t len;
    uint8_t *b = read_file(from, &len);
    int rc;

    if (!b)
        return -1;
    rc = write_file(to, b, len);
    free(b);
    return rc;
}

/* fresh_copy -- a copy of the pristine log to mutate. */
static char *fresh_copy(void)
{
    char *d = tmp_dir("tamper");
    char a[1024], b[1024];
    uint32_t i;

    if (!d)
        return NULL;
    for (i = 1; i <= g_nseg; i++) {
        seg_path(a, sizeof(a), g_dir, i);
        seg_path(b, sizeof(b), d, i);
        if (copy_file(a, b) != 0)
            return NULL;
    }
    snprintf(a, sizeof(a), "%s/audit.sign.pub", g_dir);
    snprintf(b, sizeof(b), "%s/audit.sign.pub", d);
    copy_file(a, b);
    return d;
}

static struct audit_report verify_dir(const char *dir)
{
    struct audit_report rep;
    char err[256];

    memset(&rep, 0, sizeof(rep));
    if (audit_verify(dir, NULL, &rep, err, sizeof(err)) != 0) {
        rep.verdict = -1;
        snprintf(rep.message, sizeof(rep.message), "%s", err);
    }
    return rep;
}

/* Record boundaries of a segment buffer. */
struct recs {
    size_t off[4096];
    size_t len[4096];
    uint8_t type[4096];
    uint64_t seq[4096];
    int n;
};

static void split(const uint8_t *buf, size_t len, struct recs *r)
{
    size_t off = 0;
    r->n = 0;
    while (off < len && r->n < 4096) {
        struct audit_rec rec;
        const char *why;
        if (audit_rec_decode(buf, len, off, &rec, &why) != AUDIT_DEC_OK)
            break;
        r->off[r->n] = off;
        r->len[r->n] = rec.total;
        r->type[r->n] = rec.type;
        r->seq[r->n] = rec.seq;
        r->n++;
        off += rec.total;
    }
}

static void setup(void)
{
    struct config_audit cfg;
    struct audit *a = NULL;
    struct audit_report rep;
    char err[256], p[1024];

    g_dir = tmp_dir("pristine");
    cfg = audit_cfg(g_dir, CONFIG_SYNC_NONE);
    setenv("AIRLOCK_AUDIT_SEGMENT_BYTES", "4096", 1);
    if (audit_open(&cfg, &a, err, sizeof(err)) != 0) {
        fprintf(stderr, "setup: %s\n", err);
        exit(1);
    }
    unsetenv("AIRLOCK_AUDIT_SEGMENT_BYTES");
    if (append_n(a, 24, 0, 200) != 0)
        exit(1);
    audit_close(a);
    rep = verify_dir(g_dir);
    if (rep.verdict != AUDIT_INTACT || rep.segments < 3) {
        fprintf(stderr, "setup: pristine log not intact (%s)\n", rep.message);
        exit(1);
    }
    g_nseg = (uint32_t)rep.segments;
    seg_path(p, sizeof(p), g_dir, g_nseg + 1);
    (void)p;
}

static void test_pristine_intact(void)
{
    struct audit_report rep = verify_dir(g_dir);
    CHECK_EQ_INT(rep.verdict, AUDIT_INTACT);
    CHECK(rep.checkpoints >= g_nseg);
}

/* Flip one bit in every byte of every segment: always caught, and the first bad
 * record named is in that segment at or before the flipped byte. */
static void test_flip_every_byte(void)
{
    char *d = fresh_copy();
    char path[1024], name[32];
    uint32_t s;
    int missed = 0, misplaced = 0, tried = 0;

    REQUIRE(d);
    for (s = 1; s <= g_nseg; s++) {
        size_t len, off;
        uint8_t *buf;

        seg_path(path, sizeof(path), d, s);
        snprintf(name, sizeof(name), "%08u.alog", s);
        buf = read_file(path, &len);
        REQUIRE(buf);
        for (off = 0; off < len; off++) {
            struct audit_report rep;
            buf[off] ^= (uint8_t)(1u << (off % 8));
            REQUIRE(write_file(path, buf, len) == 0);
            rep = verify_dir(d);
            tried++;
            if (rep.verdict == AUDIT_INTACT || rep.verdict < 0) {
                if (missed++ < 5)
                    fprintf(stderr, "  missed flip at %s+%zu\n", name, off);
            } else if (strcmp(rep.where_segment, name) != 0 || rep.where_offset > off) {
                if (misplaced++ < 5)
                    fprintf(stderr, "  flip at %s+%zu reported at %s+%llu: %s\n", name, off,
                            rep.where_segment, (unsigned long long)rep.where_offset,
                            rep.message);
            }
            buf[off] ^= (uint8_t)(1u << (off % 8));
        }
        REQUIRE(write_file(path, buf, len) == 0);
        free(buf);
    }
    CHECK(tried > 3000);
    CHECK_EQ_INT(missed, 0);
    CHECK_EQ_INT(misplaced, 0);
    CHECK_EQ_INT(verify_dir(d).verdict, AUDIT_INTACT);
    rm_rf(d);
    free(d);
}

/* Apply an edit to segment 2: drop record i, duplicate it, or swap it with i+1. */
enum edit { EDIT_REMOVE, EDIT_INSERT, EDIT_SWAP };

static struct audit_report edit_segment(enum edit e, int i, size_t *at, uint64_t *seq_at)
{
    char *d = fresh_copy();
    char path[1024];
    struct recs r;
    size_t len, o = 0;
    uint8_t *buf, *out;
    int k;
    struct audit_report rep;

    memset(&rep, 0, sizeof(rep));
    rep.verdict = -1;
    if (!d)
        return rep;
    seg_path(path, sizeof(path), d, 2);
    buf = read_file(path, &len);
    out = malloc(len * 2 + 1);
    if (!buf || !out)
        exit(1);
    split(buf, len, &r);
    for (k = 0; k < r.n; k++) {
        if (k == i) {
            *at = o;
            *seq_at = r.seq[i];
        }
        if (e == EDIT_REMOVE && k == i)
            continue;
        if (e == EDIT_SWAP && k == i) {
            memcpy(out + o, buf + r.off[i + 1], r.len[i + 1]);
            o += r.len[i + 1];
            memcpy(out + o, buf + r.off[i], r.len[i]);
            o += r.len[i];
            k++;
            continue;
        }
        memcpy(out + o, buf + r.off[k], r.len[k]);
        o += r.len[k];
        if (e == EDIT_INSERT && k == i) {
            *at = o;
            *seq_at = r.seq[i] + 1;
            memcpy(out + o, buf + r.off[k], r.len[k]);
            o += r.len[k];
        }
    }
    write_file(path, out, o);
    rep = verify_dir(d);
    free(buf);
    free(out);
    rm_rf(d);
    free(d);
    return rep;
}

static void test_remove_insert_swap(void)
{
    size_t at = 0;
    uint64_t seq = 0;
    struct audit_report rep;
    int i;

    for (i = 1; i <= 3; i++) {
        rep = edit_segment(EDIT_REMOVE, i, &at, &seq);
        CHECK_EQ_INT(rep.verdict, AUDIT_TAMPERED);
        CHECK_EQ_STR(rep.where_segment, "00000002.alog");
        CHECK_EQ_INT(rep.where_offset, at);
        CHECK_EQ_INT(rep.where_seq, seq);

        rep = edit_segment(EDIT_INSERT, i, &at, &seq);
        CHECK_EQ_INT(rep.verdict, AUDIT_TAMPERED);
        CHECK_EQ_INT(rep.where_offset, at);
        CHECK_EQ_INT(rep.where_seq, seq);

        rep = edit_segment(EDIT_SWAP, i, &at, &seq);
        CHECK_EQ_INT(rep.verdict, AUDIT_TAMPERED);
        CHECK_EQ_INT(rep.where_offset, at);
        CHECK_EQ_INT(rep.where_seq, seq);
    }
    /* removing the segment-start or a checkpoint is caught the same way */
    rep = edit_segment(EDIT_REMOVE, 0, &at, &seq);
    CHECK_EQ_INT(rep.verdict, AUDIT_TAMPERED);
    CHECK_EQ_INT(rep.where_offset, 0);
}

/* The strongest forgery without the signing key: remove a record and recompute every
 * header and hash after it (the hash chain alone is unkeyed). Only the checkpoint
 * signatures can catch this, and they do. */
static void test_rechained_forgery(void)
{
    char *d = fresh_copy();
    char path[1024];
    struct recs r;
    size_t len, o = 0;
    uint8_t *buf, *out, prev[32];
    uint64_t seq = 0;
    int k, first = 1;
    struct audit_report rep;

    REQUIRE(d);
    seg_path(path, sizeof(path), d, 2);
    buf = read_file(path, &len);
    REQUIRE(buf);
    out = malloc(len);
    REQUIRE(out);
    split(buf, len, &r);
    REQUIRE(r.n > 4);
    for (k = 0; k < r.n; k++) {
        uint8_t *p = out + o;
        crypto_generichash_state st;
        uint32_t blen;

        if (k == 2)
            continue; /* the record the forger wants gone */
        memcpy(p, buf + r.off[k], r.len[k]);
        if (first) {
            seq = audit_get64(p + 12);
            memcpy(prev, p + 28, 32);
            first = 0;
        }
        blen = audit_get32(p + 8);
        audit_put64(p + 12, seq);
        memcpy(p + 28, prev, 32);
        if (p[5] == 4) { /* make the checkpoint body claim the new chain */
            audit_put64(p + AUDIT_HDR_LEN, seq - 1);
            memcpy(p + AUDIT_HDR_LEN + 8, prev, 32);
        }
        crypto_generichash_init(&st, NULL, 0, 32);
        crypto_generichash_update(&st, p, AUDIT_HDR_LEN + blen);
        crypto_generichash_final(&st, p + AUDIT_HDR_LEN + blen, 32);
        memcpy(prev, p + AUDIT_HDR_LEN + blen, 32);
        seq++;
        o += r.len[k];
    }
    REQUIRE(write_file(path, out, o) == 0);
    rep = verify_dir(d);
    CHECK_EQ_INT(rep.verdict, AUDIT_TAMPERED);
    CHECK_EQ_STR(rep.where_segment, "00000002.alog");
    CHECK(strstr(rep.message, "signature") != NULL);
    free(buf);
    free(out);
    rm_rf(d);
    free(d);
}

static void test_remove_segment(void)
{
    char path[1024], path2[1024];
    struct audit_report rep;
    char *d;

    d = fresh_copy(); /* middle */
    REQUIRE(d);
    seg_path(path, sizeof(path), d, 2);
    unlink(path);
    rep = verify_dir(d);
    CHECK_EQ_INT(rep.verdict, AUDIT_TAMPERED);
    CHECK_EQ_STR(rep.where_segment, "00000002.alog");
    CHECK(strstr(rep.message, "missing") != NULL);
    rm_rf(d);
    free(d);

    d = fresh_copy(); /* first */
    REQUIRE(d);
    seg_path(path, sizeof(path), d, 1);
    unlink(path);
    rep = verify_dir(d);
    CHECK_EQ_INT(rep.verdict, AUDIT_TAMPERED);
    CHECK_EQ_STR(rep.where_segment, "00000001.alog");
    rm_rf(d);
    free(d);

    d = fresh_copy(); /* last: the log then ends at a rotation checkpoint */
    REQUIRE(d);
    seg_path(path, sizeof(path), d, g_nseg);
    unlink(path);
    rep = verify_dir(d);
    CHECK_EQ_INT(rep.verdict, AUDIT_TRUNCATED);
    CHECK(strstr(rep.message, "missing") != NULL);
    rm_rf(d);
    free(d);

    d = fresh_copy(); /* the middle one removed and the later ones renumbered */
    REQUIRE(d);
    seg_path(path, sizeof(path), d, 2);
    seg_path(path2, sizeof(path2), d, 3);
    unlink(path);
    rename(path2, path);
    rep = verify_dir(d);
    CHECK_EQ_INT(rep.verdict, AUDIT_TAMPERED);
    CHECK_EQ_STR(rep.where_segment, "00000002.alog");
    rm_rf(d);
    free(d);
}

static void test_cut_tail(void)
{
    char path[1024];
    struct recs r;
    size_t len;
    uint8_t *buf;
    struct audit_report rep;
    char *d;

    d = fresh_copy();
    REQUIRE(d);
    seg_path(path, sizeof(path), d, g_nseg);
    buf = read_file(path, &len);
    REQUIRE(buf);
    split(buf, len, &r);
    REQUIRE(r.n >= 3);
    REQUIRE(r.type[r.n - 1] == 4);

    /* cut cleanly at a record boundary: the final checkpoint goes */
    REQUIRE(write_file(path, buf, r.off[r.n - 1]) == 0);
    rep = verify_dir(d);
    CHECK_EQ_INT(rep.verdict, AUDIT_TRUNCATED);
    CHECK(rep.unsigned_tail);
    CHECK(strstr(rep.message, "after its last checkpoint") != NULL);

    /* cut two records */
    REQUIRE(write_file(path, buf, r.off[r.n - 2]) == 0);
    rep = verify_dir(d);
    CHECK_EQ_INT(rep.verdict, AUDIT_TRUNCATED);

    /* cut mid-record: a torn tail */
    REQUIRE(write_file(path, buf, r.off[r.n - 2] + 30) == 0);
    rep = verify_dir(d);
    CHECK_EQ_INT(rep.verdict, AUDIT_TRUNCATED);
    CHECK(!rep.unsigned_tail);
    CHECK(strstr(rep.message, "torn") != NULL);
    CHECK_EQ_INT(rep.where_offset, r.off[r.n - 2]);

    /* bytes appended after the closing checkpoint are not a clean log, zeros included
     * (the writer's zeros ahead never follow a rotation or shutdown checkpoint) */
    REQUIRE(write_file(path, buf, len) == 0);
    {
        uint8_t *b2 = malloc(len + 10);
        REQUIRE(b2);
        memcpy(b2, buf, len);
        memset(b2 + len, 0, 10);
        REQUIRE(write_file(path, b2, len + 10) == 0);
        free(b2);
    }
    rep = verify_dir(d);
    CHECK_EQ_INT(rep.verdict, AUDIT_TAMPERED);
    CHECK(strstr(rep.message, "after the segment's closing checkpoint") != NULL);
    free(buf);
    rm_rf(d);
    free(d);
}

static void test_swap_segments(void)
{
    char p1[1024], p2[1024], tmp[1100];
    char *d = fresh_copy();
    struct audit_report rep;

    REQUIRE(d);
    seg_path(p1, sizeof(p1), d, 1);
    seg_path(p2, sizeof(p2), d, 2);
    snprintf(tmp, sizeof(tmp), "%s.x", p1);
    rename(p1, tmp);
    rename(p2, p1);
    rename(tmp, p2);
    rep = verify_dir(d);
    CHECK_EQ_INT(rep.verdict, AUDIT_TAMPERED);
    CHECK_EQ_STR(rep.where_segment, "00000001.alog");
    rm_rf(d);
    free(d);
}

/* The fuzz entry point on the pristine segments and on truncations of them. */
static void test_walk_buf(void)
{
    char path[1024];
    size_t len, cut;
    uint8_t *buf;
    struct audit_report rep;

    seg_path(path, sizeof(path), g_dir, 2);
    buf = read_file(path, &len);
    REQUIRE(buf);
    audit_walk_buf(buf, len, NULL, &rep);
    CHECK_EQ_INT(rep.verdict, AUDIT_TRUNCATED); /* ends at a rotation checkpoint */
    CHECK(rep.records > 2);
    for (cut = 0; cut < len; cut += 13) {
        audit_walk_buf(buf, cut, NULL, &rep);
        CHECK(rep.verdict != AUDIT_INTACT);
    }
    free(buf);
}

int main(void)
{
    log_set_level(LOG_WARN);
    if (sodium_init() < 0)
        return 1;
    setup();
    RUN(test_pristine_intact);
    RUN(test_flip_every_byte);
    RUN(test_remove_insert_swap);
    RUN(test_rechained_forgery);
    RUN(test_remove_segment);
    RUN(test_cut_tail);
    RUN(test_swap_segments);
    RUN(test_walk_buf);
    rm_rf(g_dir);
    free(g_dir);
    return harness_done();
}
