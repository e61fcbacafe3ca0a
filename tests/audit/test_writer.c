/* test_writer.c -- the audit writer: framing, chain, checkpoints, rotation, group
 * commit, torn-tail recovery, disk full, key handling. */
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include "audit/audit_int.h"
#include "audit_test_util.h"
#include "common/log.h"
#include "harness.h"

static void seg_file(char *buf, size_t cap, const char *dir, uint32_t n)
{
    snprintf(buf, cap, "%s/%08u.alog", dir, n);
}

/* Every record in a segment file, decoded with the format functions. */
static int count_records(const char *path, int *types, int max)
{
    size_t len, off = 0;
    uint8_t *buf = read_file(path, &len);
    int n = 0;

    if (!buf)
        return -1;
    while (off < len) {
        struct audit_rec rec;
        const char *why;
        if (audit_all_zero(buf + off, len - off))
            break; /* zeros the writer wrote ahead */
        if (audit_rec_decode(buf, len, off, &rec, &why) != AUDIT_DEC_OK) {
            n = -1;
            break;
        }
        if (n < max)
            types[n] = rec.type;
        n++;
        off += rec.total;
    }
    free(buf);
    return n;
}

static void test_open_append_close_verifies(void)
{
    char *dir = tmp_dir("basic");
    struct config_audit cfg = audit_cfg(dir, CONFIG_SYNC_BATCH);
    struct audit *a = NULL;
    struct audit_report rep;
    char err[256], path[4096];
    int types[64], n;

    REQUIRE(dir);
    REQUIRE(audit_open(&cfg, &a, err, sizeof(err)) == 0);
    CHECK(audit_healthy(a) == 1);
    CHECK(append_n(a, 10, 0, 100) == 0);
    CHECK(audit_queue_depth(a) == 0);
    audit_close(a);

    seg_file(path, sizeof(path), dir, 1);
    n = count_records(path, types, 64);
    CHECK_EQ_INT(n, 12); /* segment-start, 10 records, shutdown checkpoint */
    CHECK_EQ_INT(types[0], AUDIT_REC_SEGSTART);
    CHECK_EQ_INT(types[1], AUDIT_REC_REQUEST);
    CHECK_EQ_INT(types[2], AUDIT_REC_RESPONSE);
    CHECK_EQ_INT(types[11], AUDIT_REC_CHECKPOINT);

    snprintf(path, sizeof(path), "%s/audit.sign.key", dir);
    {
        struct stat st;
        REQUIRE(stat(path, &st) == 0);
        CHECK_EQ_INT(st.st_mode & 0777, 0600);
        REQUIRE(stat(dir, &st) == 0);
        CHECK_EQ_INT(st.st_mode & 0777, 0700);
    }
    REQUIRE(audit_verify(dir, NULL, &rep, err, sizeof(err)) == 0);
    CHECK_EQ_INT(rep.verdict, AUDIT_INTACT);
    CHECK_EQ_INT(rep.records, 12);
    CHECK_EQ_INT(rep.checkpoints, 1);
    CHECK_EQ_INT(rep.last_checkpoint_seq, 11);

    /* reopen: the chain continues in the same segment, still intact */
    REQUIRE(audit_open(&cfg, &a, err, sizeof(err)) == 0);
    CHECK(append_n(a, 4, 100, 10) == 0);
    audit_close(a);
    REQUIRE(audit_verify(dir, NULL, &rep, err, sizeof(err)) == 0);
    CHECK_EQ_INT(rep.verdict, AUDIT_INTACT);
    CHECK_EQ_INT(rep.records, 17);
    CHECK_EQ_INT(rep.segments, 1);
    rm_rf(dir);
    free(dir);
}

static void test_bad_type_and_wrong_pubkey(void)
{
    char *dir = tmp_dir("badtype");
    char *dir2 = tmp_dir("otherkey");
    struct config_audit cfg = audit_cfg(dir, CONFIG_SYNC_NONE);
    struct config_audit cfg2 = audit_cfg(dir2, CONFIG_SYNC_NONE);
    struct audit *a = NULL;
    struct audit_report rep;
    char err[256], pub2[4096];

    REQUIRE(dir && dir2);
    REQUIRE(audit_open(&cfg, &a, err, sizeof(err)) == 0);
    /* only event types are appended: the framing types are the writer's own */
    CHECK(audit_append(a, AUDIT_REC_SEGSTART, "{}", NULL, 0, NULL, NULL) == -1);
    CHECK(audit_append(a, AUDIT_REC_CHECKPOINT, "{}", NULL, 0, NULL, NULL) == -1);
    CHECK(audit_append(a, (enum audit_rec_type)0, "{}", NULL, 0, NULL, NULL) == -1);
    CHECK(audit_append(a, (enum audit_rec_type)99, "{}", NULL, 0, NULL, NULL) == -1);
    CHECK(append_n(a, 2, 0, 10) == 0);
    audit_close(a);
    REQUIRE(audit_open(&cfg2, &a, err, sizeof(err)) == 0);
    audit_close(a);
    /* checkpoints signed by another key do not verify */
    snprintf(pub2, sizeof(pub2), "%s/audit.sign.pub", dir2);
    REQUIRE(audit_verify(dir, pub2, &rep, err, sizeof(err)) == 0);
    CHECK_EQ_INT(rep.verdict, AUDIT_TAMPERED);
    CHECK(strstr(rep.message, "signature") != NULL);
    /* a missing key file is an unusable argument */
    CHECK(audit_verify(dir, "/nonexistent/x.pub", &rep, err, sizeof(err)) == -1);
    rm_rf(dir);
    rm_rf(dir2);
    free(dir);
    free(dir2);
}

static void test_checkpoint_every_1000(void)
{
    char *dir = tmp_dir("ckpt");
    struct config_audit cfg = audit_cfg(dir, CONFIG_SYNC_NONE);
    struct audit *a = NULL;
    struct audit_report rep;
    char err[256];

    REQUIRE(dir);
    REQUIRE(audit_open(&cfg, &a, err, sizeof(err)) == 0);
    CHECK(append_n(a, 2500, 0, 16) == 0);
    audit_close(a);
    REQUIRE(audit_verify(dir, NULL, &rep, err, sizeof(err)) == 0);
    CHECK_EQ_INT(rep.verdict, AUDIT_INTACT);
    /* 1 start + 2500 + 2 periodic + 1 shutdown */
    CHECK_EQ_INT(rep.records, 2504);
    CHECK_EQ_INT(rep.checkpoints, 3);
    rm_rf(dir);
    free(dir);
}

static void test_rotation(void)
{
    char *dir = tmp_dir("rot");
    struct config_audit cfg = audit_cfg(dir, CONFIG_SYNC_BATCH);
    struct audit *a = NULL;
    struct audit_report rep;
    char err[256], path[4096];
    int types[4096], n;

    REQUIRE(dir);
    setenv("AIRLOCK_AUDIT_SEGMENT_BYTES", "8192", 1);
    REQUIRE(audit_open(&cfg, &a, err, sizeof(err)) == 0);
    unsetenv("AIRLOCK_AUDIT_SEGMENT_BYTES");
    /* in waves: a segment rotated away is synced before the next rotation starts, so
     * one burst overruns its segment instead of rotating again */
    for (n = 0; n < 5; n++)
        CHECK(append_n(a, 10, 10 * n, 1000) == 0);
    audit_close(a);
    REQUIRE(audit_verify(dir, NULL, &rep, err, sizeof(err)) == 0);
    CHECK_EQ_INT(rep.verdict, AUDIT_INTACT);
    CHECK(rep.segments >= 5);
    /* every segment but the last ends with a (rotation) checkpoint, starts with a start */
    seg_file(path, sizeof(path), dir, 2);
    n = count_records(path, types, 4096);
    REQUIRE(n >= 3);
    CHECK_EQ_INT(types[0], AUDIT_REC_SEGSTART);
    CHECK_EQ_INT(types[n - 1], AUDIT_REC_CHECKPOINT);
    rm_rf(dir);
    free(dir);
}

/* group commit: many threads, every callback once, all records present in order of
 * each thread's own appends. */
struct gc_arg {
    struct audit *a;
    int thread;
    struct waiter *w;
    int failed_append;
};

static void *gc_thread(void *p)
{
    struct gc_arg *g = p;
    char meta[128];
    int i;

    for (i = 0; i < 200; i++) {
        struct audit_blob b = {"inbound", meta, 0};
        snprintf(meta, sizeof(meta), "{\"id\":\"t%d-%05d\"}", g->thread, i);
        b.len = strlen(meta);
        if (audit_append(g->a, AUDIT_REC_REQUEST, meta, &b, 1, waiter_cb, g->w) != 0)
            g->failed_append++;
    }
    return NULL;
}

struct order_check {
    int next[8];
    int bad;
    int seen;
};

static int order_cb(void *ud, const struct audit_rec *rec, const struct audit_walk_ctx *ctx)
{
    struct order_check *oc = ud;
    struct audit_body b;
    const char *why;
    int t, i;

    (void)ctx;
    if (rec->type != AUDIT_REC_REQUEST)
        return 0;
    if (audit_body_parse(rec->body, rec->body_len, &b, &why) != 0 ||
        sscanf(b.meta, "{\"id\":\"t%d-%d", &t, &i) != 2 || t < 0 || t >= 8) {
        oc->bad++;
        return 0;
    }
    if (oc->next[t] != i)
        oc->bad++;
    oc->next[t] = i + 1;
    oc->seen++;
    return 0;
}

static void test_group_commit_threads(void)
{
    char *dir = tmp_dir("gc");
    struct config_audit cfg = audit_cfg(dir, CONFIG_SYNC_BATCH);
    struct audit *a = NULL;
    struct audit_report rep;
    struct waiter w;
    struct gc_arg args[8];
    pthread_t th[8];
    struct order_check oc;
    char err[256];
    int i;

    REQUIRE(dir);
    REQUIRE(audit_open(&cfg, &a, err, sizeof(err)) == 0);
    waiter_init(&w);
    for (i = 0; i < 8; i++) {
        args[i].a = a;
        args[i].thread = i;
        args[i].w = &w;
        args[i].failed_append = 0;
        pthread_create(&th[i], NULL, gc_thread, &args[i]);
    }
    for (i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        CHECK_EQ_INT(args[i].failed_append, 0);
    }
    waiter_wait(&w, 1600);
    CHECK_EQ_INT(w.ok, 1600);
    CHECK_EQ_INT(w.failed, 0);
    CHECK_EQ_INT(audit_queue_depth(a), 0);
    /* group commit: records that queued up while a sync ran share the next one */
    CHECK(audit_syncs(a) > 0);
    CHECK(audit_syncs(a) < 1600);
    audit_close(a);
    CHECK_EQ_INT(w.done, 1600); /* no callback twice */
    waiter_deinit(&w);
    memset(&oc, 0, sizeof(oc));
    REQUIRE(audit_walk_dir(dir, NULL, order_cb, &oc, &rep, err, sizeof(err)) == 0);
    CHECK_EQ_INT(rep.verdict, AUDIT_INTACT);
    CHECK_EQ_INT(oc.seen, 1600);
    CHECK_EQ_INT(oc.bad, 0);
    for (i = 0; i < 8; i++)
        CHECK_EQ_INT(oc.next[i], 200);
    rm_rf(dir);
    free(dir);
}

/* A batch larger than one pwritev can take (records of several blobs, borrowed
 * bytes), across rotations: every record is on disk exactly, in order, chained. */
struct big_batch {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int release, done, failed, entered;
};

/* the callback of a record that waits for its sync runs on the syncer thread:
 * blocking in it holds the syncer, so everything written meanwhile waits for one
 * group commit */
static void gate_cb(void *ud, int status)
{
    struct big_batch *g = ud;

    pthread_mutex_lock(&g->mu);
    if (status != 0)
        g->failed++;
    g->entered = 1;
    pthread_cond_broadcast(&g->cv);
    while (!g->release)
        pthread_cond_wait(&g->cv, &g->mu); /* holds the writer: the queue fills up */
    g->done++;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

static void count_cb(void *ud, int status)
{
    struct big_batch *g = ud;

    pthread_mutex_lock(&g->mu);
    if (status != 0)
        g->failed++;
    g->done++;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

struct blob_check {
    int seen, bad;
};

static int blob_check_cb(void *ud, const struct audit_rec *rec, const struct audit_walk_ctx *ctx)
{
    struct blob_check *bc = ud;
    struct audit_body b;
    const char *why;
    char want[64];
    uint32_t k;

    (void)ctx;
    if (rec->type != AUDIT_REC_REQUEST)
        return 0;
    if (audit_body_parse(rec->body, rec->body_len, &b, &why) != 0) {
        bc->bad++;
        return 0;
    }
    if (strncmp(b.meta, "{\"gate\"", 7) == 0 || strncmp(b.meta, "{\"i\":-1}", 8) == 0)
        return 0; /* the gate, and the records after the held group */
    if (b.n_blobs != 3) {
        bc->bad++;
        return 0;
    }
    /* meta {"i":N}; blob k holds N repeated k+1 times (k = 0, 1, 2; the middle one empty
     * when N is odd) */
    {
        int i = atoi(b.meta + 5);
        if (i != bc->seen)
            bc->bad++;
        for (k = 0; k < 3; k++) {
            size_t want_len = (k == 1 && (i & 1)) ? 0 : (size_t)snprintf(want, sizeof(want), "%d", i) * (k + 1);
            uint64_t j;
            if (b.blobs[k].len != want_len) {
                bc->bad++;
                continue;
            }
            for (j = 0; j < b.blobs[k].len; j++)
                if (b.blobs[k].data[j] != (uint8_t)want[j % strlen(want)])
                    bc->bad++;
        }
    }
    bc->seen++;
    return 0;
}

/* hold the syncer in gate_cb: a request record's callback, on the syncer thread */
static void gate_hold(struct audit *a, struct big_batch *g)
{
    memset(g, 0, sizeof(*g));
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    REQUIRE(audit_append_ex(a, AUDIT_REC_REQUEST, "{\"gate\":1}", 10, NULL, 0, 0, gate_cb, g) == 0);
    pthread_mutex_lock(&g->mu);
    while (!g->entered)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

static void test_group_commit_held_syncer(void)
{
    enum { N = 700 }; /* 700 records of 3 blobs, written while the syncer is held */
    char *dir = tmp_dir("bigbatch");
    struct config_audit cfg = audit_cfg(dir, CONFIG_SYNC_BATCH);
    struct audit *a = NULL;
    struct audit_report rep;
    struct big_batch g;
    struct blob_check bc;
    static char data[N][3][64];
    char err[256];
    uint64_t syncs0;
    int i, k;

    REQUIRE(dir);
    setenv("AIRLOCK_AUDIT_SEGMENT_BYTES", "16384", 1); /* and several rotations */
    REQUIRE(audit_open(&cfg, &a, err, sizeof(err)) == 0);
    unsetenv("AIRLOCK_AUDIT_SEGMENT_BYTES");
    gate_hold(a, &g);
    for (i = 0; i < N; i++) {
        struct audit_blob bl[3];
        char meta[32];
        for (k = 0; k < 3; k++) {
            char one[16];
            int r, len = snprintf(one, sizeof(one), "%d", i);
            data[i][k][0] = '\0';
            for (r = 0; r <= k; r++)
                memcpy(data[i][k] + r * len, one, (size_t)len + 1);
            bl[k].name = k == 0 ? "inbound" : k == 1 ? "middle" : "outbound";
            bl[k].data = data[i][k];
            bl[k].len = (k == 1 && (i & 1)) ? 0 : strlen(data[i][k]);
        }
        snprintf(meta, sizeof(meta), "{\"i\":%d}", i);
        REQUIRE(audit_append_ex(a, AUDIT_REC_REQUEST, meta, strlen(meta), bl, 3, 0, count_cb, &g) ==
                0);
    }
    syncs0 = audit_syncs(a);
    pthread_mutex_lock(&g.mu);
    g.release = 1;
    pthread_cond_broadcast(&g.cv);
    while (g.done < N + 1)
        pthread_cond_wait(&g.cv, &g.mu);
    pthread_mutex_unlock(&g.mu);
    CHECK_EQ_INT(g.failed, 0);
    /* all N were written while the syncer was held: a handful of syncs (the rotation's
     * and the group's own), not one per record */
    CHECK(audit_syncs(a) - syncs0 < 10);
    /* and the log goes on rotating once the held rotation is synced */
    for (i = 0; i < 40; i++) {
        struct audit_blob one = {"inbound", data[0][0], 1};
        REQUIRE(audit_append_ex(a, AUDIT_REC_REQUEST, "{\"i\":-1}", 8, &one, 1, 0, count_cb, &g) ==
                0);
    }
    pthread_mutex_lock(&g.mu);
    while (g.done < N + 41)
        pthread_cond_wait(&g.cv, &g.mu);
    pthread_mutex_unlock(&g.mu);
    audit_close(a);
    memset(&bc, 0, sizeof(bc));
    REQUIRE(audit_walk_dir(dir, NULL, blob_check_cb, &bc, &rep, err, sizeof(err)) == 0);
    CHECK_EQ_INT(rep.verdict, AUDIT_INTACT);
    /* the first rotation happened while the syncer was held; no second one could start
     * until it was synced, so the N records overran segment 2 */
    CHECK(rep.segments >= 3);
    CHECK_EQ_INT(bc.seen, N);
    CHECK_EQ_INT(bc.bad, 0);
    pthread_cond_destroy(&g.cv);
    pthread_mutex_destroy(&g.mu);
    rm_rf(dir);
    free(dir);
}

/* AUDIT_WRITTEN: in one batch, a record so flagged is reported once written, before
 * the batch's fdatasync; the others after it. */
struct written_order {
    struct audit *a;
    pthread_mutex_t mu;
    int order[2];
    uint64_t syncs_at[2];
    int n;
};

static void written_cb_plain(void *ud, int status)
{
    struct written_order *w = ud;

    pthread_mutex_lock(&w->mu);
    w->syncs_at[0] = audit_syncs(w->a);
    w->order[w->n++] = status == 0 ? 1 : -1;
    pthread_mutex_unlock(&w->mu);
}

static void written_cb_early(void *ud, int status)
{
    struct written_order *w = ud;

    pthread_mutex_lock(&w->mu);
    w->syncs_at[1] = audit_syncs(w->a);
    w->order[w->n++] = status == 0 ? 2 : -2;
    pthread_mutex_unlock(&w->mu);
}

static void test_written_before_sync(void)
{
    char *dir = tmp_dir("written");
    struct config_audit cfg = audit_cfg(dir, CONFIG_SYNC_BATCH);
    struct audit *a = NULL;
    struct big_batch g;
    struct written_order w;
    struct audit_blob bl = {"client", "answer", 6};
    char err[256], path[4096];
    int types[16];
    uint64_t syncs0;

    REQUIRE(dir);
    REQUIRE(audit_open(&cfg, &a, err, sizeof(err)) == 0);
    memset(&w, 0, sizeof(w));
    w.a = a;
    pthread_mutex_init(&w.mu, NULL);
    gate_hold(a, &g); /* the syncer is held: nothing is synced until release */
    syncs0 = audit_syncs(a);
    CHECK_EQ_INT(audit_append_ex(a, AUDIT_REC_REQUEST, "{}", 2, &bl, 1, 0, written_cb_plain, &w),
                 0);
    /* complete at return: no callback, and no sync was needed */
    CHECK_EQ_INT(audit_append_ex(a, AUDIT_REC_RESPONSE, "{}", 2, &bl, 1, AUDIT_WRITTEN,
                                 written_cb_early, &w),
                 1);
    CHECK_EQ_INT(audit_syncs(a), syncs0);
    CHECK_EQ_INT(audit_queue_depth(a), 1); /* the request waits */
    pthread_mutex_lock(&w.mu);
    CHECK_EQ_INT(w.n, 0);
    pthread_mutex_unlock(&w.mu);
    /* both are in the segment file already: start, gate, request, response */
    seg_file(path, sizeof(path), dir, 1);
    CHECK_EQ_INT(count_records(path, types, 16), 4);
    CHECK_EQ_INT(types[2], AUDIT_REC_REQUEST);
    CHECK_EQ_INT(types[3], AUDIT_REC_RESPONSE);
    pthread_mutex_lock(&g.mu);
    g.release = 1;
    pthread_cond_broadcast(&g.cv);
    pthread_mutex_unlock(&g.mu);
    audit_close(a); /* settles */
    CHECK_EQ_INT(w.n, 1);
    CHECK_EQ_INT(w.order[0], 1);
    CHECK(w.syncs_at[0] > syncs0); /* the request was reported after a sync */
    pthread_mutex_destroy(&w.mu);
    pthread_cond_destroy(&g.cv);
    pthread_mutex_destroy(&g.mu);
    rm_rf(dir);
    free(dir);
}

/* A failed group commit (AIRLOCK_AUDIT_FAULT_SYNC=3: #1 is the new segment's own
 * sync, #2 the first record's): the records of the failed group are reported failed
 * and cut from the file, every record reported durable is in it, the log turns
 * unhealthy, a later probe record brings it back, and what stays verifies. */
struct id_status {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int status[64];
    int done;
};

struct id_arg {
    struct id_status *st;
    int id;
};

static void id_cb(void *ud, int status)
{
    struct id_arg *ia = ud;

    pthread_mutex_lock(&ia->st->mu);
    ia->st->status[ia->id] = status == 0 ? 1 : -1;
    ia->st->done++;
    pthread_cond_broadcast(&ia->st->cv);
    pthread_mutex_unlock(&ia->st->mu);
}

static void id_wait(struct id_status *st, int want)
{
    pthread_mutex_lock(&st->mu);
    while (st->done < want)
        pthread_cond_wait(&st->cv, &st->mu);
    pthread_mutex_unlock(&st->mu);
}

struct meta_ids {
    int present[64];
};

static int meta_id_cb(void *ud, const struct audit_rec *rec, const struct audit_walk_ctx *ctx)
{
    struct meta_ids *m = ud;
    struct audit_body b;
    const char *why;
    int id;

    (void)ctx;
    if (audit_rec_type_is_event(rec->type) &&
        audit_body_parse(rec->body, rec->body_len, &b, &why) == 0) {
        id = atoi(b.meta + 5); /* {"i":N} */
        if (id >= 0 && id < 64)
            m->present[id]++;
    }
    return 0;
}

static void test_failed_group_commit(void)
{
    char *dir = tmp_dir("syncfail");
    struct config_audit cfg = audit_cfg(dir, CONFIG_SYNC_BATCH);
    struct audit *a = NULL;
    struct audit_report rep;
    struct id_status st;
    struct id_arg args[64];
    struct meta_ids ids;
    char err[256], meta[32];
    int i, rc, tries, failed = 0, refused = 0, written = 0, mismatch = 0;

    REQUIRE(dir);
    log_set_level(LOG_ERROR + 1);
    setenv("AIRLOCK_AUDIT_FAULT_SYNC", "3", 1);
    REQUIRE(audit_open(&cfg, &a, err, sizeof(err)) == 0);
    unsetenv("AIRLOCK_AUDIT_FAULT_SYNC");
    memset(&st, 0, sizeof(st));
    pthread_mutex_init(&st.mu, NULL);
    pthread_cond_init(&st.cv, NULL);
    for (i = 0; i < 64; i++) {
        args[i].st = &st;
        args[i].id = i;
    }
    REQUIRE(audit_append(a, AUDIT_REC_REQUEST, "{\"i\":0}", NULL, 0, id_cb, &args[0]) == 0);
    id_wait(&st, 1); /* durable: fdatasync #2 */
    CHECK_EQ_INT(st.status[0], 1);
    for (i = 1; i <= 10; i++) {
        snprintf(meta, sizeof(meta), "{\"i\":%d}", i);
        /* half of them complete once written (1, no callback): those are cut all the
         * same. Once the failure is known, appends are refused at once (fail fast): no
         * callback either. */
        rc = audit_append_ex(a, i % 2 ? AUDIT_REC_REQUEST : AUDIT_REC_RESPONSE, meta, strlen(meta),
                             NULL, 0, i % 2 ? 0 : AUDIT_WRITTEN, id_cb, &args[i]);
        pthread_mutex_lock(&st.mu);
        if (rc < 0) {
            st.status[i] = -2;
            refused++;
        } else if (rc == 1) {
            st.status[i] = 2;
            written++;
        }
        pthread_mutex_unlock(&st.mu);
    }
    id_wait(&st, 11 - refused - written);
    for (i = 1; i <= 10; i++)
        failed += st.status[i] == -1;
    CHECK(failed >= 1); /* #3 failed: the group with it was reported failed */
    /* (the log is unhealthy now, unless records queued before the failure was known
     * made a later group that succeeded.) Appends are refused for a while, then one
     * probe goes through and heals the log. */
    for (tries = 0; tries < 40; tries++) {
        if (audit_append(a, AUDIT_REC_REQUEST, "{\"i\":42}", NULL, 0, id_cb, &args[42]) == 0)
            break;
        usleep(100000);
    }
    REQUIRE(tries < 40);
    id_wait(&st, 12 - refused - written);
    CHECK_EQ_INT(st.status[42], 1);
    CHECK_EQ_INT(audit_healthy(a), 1);
    audit_close(a);
    memset(&ids, 0, sizeof(ids));
    REQUIRE(audit_walk_dir(dir, NULL, meta_id_cb, &ids, &rep, err, sizeof(err)) == 0);
    CHECK_EQ_INT(rep.verdict, AUDIT_INTACT);
    CHECK_EQ_INT(ids.present[0], 1);
    CHECK_EQ_INT(ids.present[42], 1);
    /* a request record reported durable is in the log; one reported failed is not */
    for (i = 1; i <= 10; i++) {
        if (i % 2 && st.status[i] > 0 && ids.present[i] != 1)
            mismatch++;
        if (st.status[i] < 0 && ids.present[i] != 0)
            mismatch++;
        if (st.status[i] == -1 && i % 2 == 0)
            mismatch++; /* a written response is never reported failed afterwards */
    }
    CHECK_EQ_INT(mismatch, 0);
    REQUIRE(audit_verify(dir, NULL, &rep, err, sizeof(err)) == 0);
    CHECK_EQ_INT(rep.verdict, AUDIT_INTACT);
    pthread_cond_destroy(&st.cv);
    pthread_mutex_destroy(&st.mu);
    log_set_level(LOG_INFO);
    rm_rf(dir);
    free(dir);
}

/* A disk whose every fdatasync fails (AIRLOCK_AUDIT_FAULT_SYNC=2+): records are reported
 * failed and cut, the syncer does not spin on the failure while nothing new comes,
 * appends are refused fast, and closing does not hang. */
static void test_sync_keeps_failing(void)
{
    char *dir = tmp_dir("syncdead");
    struct config_audit cfg = audit_cfg(dir, CONFIG_SYNC_BATCH);
    struct audit *a = NULL;
    struct audit_report rep;
    struct waiter w;
    char err[256];
    uint64_t s0;
    int refused = 0, i;

    REQUIRE(dir);
    log_set_level(LOG_ERROR + 1);
    setenv("AIRLOCK_AUDIT_FAULT_SYNC", "2+", 1); /* #1 is the new segment's own sync */
    REQUIRE(audit_open(&cfg, &a, err, sizeof(err)) == 0);
    unsetenv("AIRLOCK_AUDIT_FAULT_SYNC");
    waiter_init(&w);
    REQUIRE(audit_append(a, AUDIT_REC_REQUEST, "{\"i\":1}", NULL, 0, waiter_cb, &w) == 0);
    waiter_wait(&w, 1);
    CHECK_EQ_INT(w.failed, 1);
    waiter_deinit(&w);
    CHECK_EQ_INT(audit_healthy(a), 0);
    s0 = audit_syncs(a);
    usleep(300000);
    CHECK(audit_syncs(a) - s0 <= 1); /* idle: no retry loop */
    for (i = 0; i < 20; i++)
        refused += audit_append(a, AUDIT_REC_REQUEST, "{\"i\":2}", NULL, 0, NULL, NULL) != 0;
    CHECK(refused >= 19); /* fail fast (one probe a second at most) */
    audit_close(a);
    log_set_level(LOG_INFO);
    /* what is on disk is the segment start, nothing torn */
    REQUIRE(audit_verify(dir, NULL, &rep, err, sizeof(err)) == 0);
    CHECK(rep.verdict == AUDIT_INTACT || (rep.verdict == AUDIT_TRUNCATED && rep.unsigned_tail));
    rm_rf(dir);
    free(dir);
}

/* A disk that stops answering (AIRLOCK_AUDIT_FAULT_SYNC_STALL: one fdatasync takes
 * 3 s): much written behind a sync that is under way is accepted until that sync has
 * run for 2 s (a single large record is not a stall); then appends are refused, the
 * log turns unhealthy, and once the disk answers again the stalled group completes
 * and a probe heals the log. Nothing written is lost: verify passes after close. */
static void test_stalled_disk(void)
{
    char *dir = tmp_dir("stall");
    struct config_audit cfg = audit_cfg(dir, CONFIG_SYNC_BATCH);
    struct audit *a = NULL;
    struct audit_report rep;
    struct waiter w, w2;
    struct audit_blob big;
    char err[256];
    uint8_t *bytes;
    uint64_t t0, s0;
    int i, accepted = 0, rc, tries;
    const size_t chunk = (size_t)10 << 20; /* 8 of them: 80 MiB, past the 64 MiB cap */

    REQUIRE(dir);
    bytes = malloc(chunk);
    REQUIRE(bytes);
    memset(bytes, 'x', chunk);
    big.name = "upstream";
    big.data = bytes;
    big.len = chunk;
    log_set_level(LOG_ERROR + 1);
    REQUIRE(audit_open(&cfg, &a, err, sizeof(err)) == 0);
    /* the open's syncs are done; the next one, for the record below, stalls */
    waiter_init(&w);
    REQUIRE(audit_append(a, AUDIT_REC_REQUEST, "{\"i\":0}", NULL, 0, waiter_cb, &w) == 0);
    waiter_wait(&w, 1);
    CHECK_EQ_INT(w.ok, 1);
    waiter_deinit(&w);
    audit_close(a);
    a = NULL;

    s0 = 0;
    {
        /* count the syncs an open makes, to know which one is the first of the load */
        struct audit *b = NULL;
        REQUIRE(audit_open(&cfg, &b, err, sizeof(err)) == 0);
        s0 = audit_syncs(b);
        audit_close(b);
    }
    {
        char spec[64];
        snprintf(spec, sizeof(spec), "%llu:3000", (unsigned long long)s0 + 1);
        setenv("AIRLOCK_AUDIT_FAULT_SYNC_STALL", spec, 1);
    }
    REQUIRE(audit_open(&cfg, &a, err, sizeof(err)) == 0);
    unsetenv("AIRLOCK_AUDIT_FAULT_SYNC_STALL");
    CHECK(audit_syncs(a) == s0);
    waiter_init(&w);
    REQUIRE(audit_append(a, AUDIT_REC_REQUEST, "{\"i\":1}", NULL, 0, waiter_cb, &w) == 0);
    for (tries = 0; audit_syncs(a) == s0 && tries < 2000; tries++)
        usleep(1000);
    REQUIRE(audit_syncs(a) == s0 + 1); /* the syncer is in the stalled fdatasync */
    t0 = audit_now_ns();
    /* 80 MiB behind a sync that has run for less than 2 s: accepted */
    for (i = 0; i < 8; i++) {
        rc = audit_append_ex(a, AUDIT_REC_RESPONSE, "{\"i\":2}", 7, &big, 1, AUDIT_WRITTEN, NULL,
                             NULL);
        accepted += rc == 1;
    }
    REQUIRE(audit_now_ns() - t0 < 1500000000ull); /* (else the machine is too slow to tell) */
    CHECK_EQ_INT(accepted, 8);
    CHECK_EQ_INT(audit_healthy(a), 1);
    while (audit_now_ns() - t0 < 2200000000ull)
        usleep(10000);
    /* the same sync has now run for over 2 s with 80 MiB behind it: refused, unhealthy */
    rc = audit_append(a, AUDIT_REC_REQUEST, "{\"i\":3}", NULL, 0, NULL, NULL);
    CHECK_EQ_INT(rc, -1);
    CHECK_EQ_INT(audit_healthy(a), 0);
    CHECK_EQ_INT(w.done, 0); /* the first record still waits for its sync */
    /* the disk answers again: the stalled group completes */
    waiter_wait(&w, 1);
    CHECK_EQ_INT(w.ok, 1);
    waiter_deinit(&w);
    /* a probe (at most one a second) is let through and heals the log */
    waiter_init(&w2);
    for (tries = 0; tries < 300; tries++) {
        if (audit_append(a, AUDIT_REC_REQUEST, "{\"i\":4}", NULL, 0, waiter_cb, &w2) == 0)
            break;
        usleep(10000);
    }
    CHECK(tries < 300);
    waiter_wait(&w2, 1);
    CHECK_EQ_INT(w2.ok, 1);
    CHECK_EQ_INT(audit_healthy(a), 1);
    waiter_deinit(&w2);
    audit_close(a);
    log_set_level(LOG_INFO);
    REQUIRE(audit_verify(dir, NULL, &rep, err, sizeof(err)) == 0);
    CHECK_EQ_INT(rep.verdict, AUDIT_INTACT);
    CHECK(rep.records >= 2 + 8 + 1);
    free(bytes);
    rm_rf(dir);
    free(dir);
}

static void test_sync_always(void)
{
    char *dir = tmp_dir("always");
    struct config_audit cfg = audit_cfg(dir, CONFIG_SYNC_ALWAYS);
    struct audit *a = NULL;
    struct audit_report rep;
    char err[256];

    REQUIRE(dir);
    REQUIRE(audit_open(&cfg, &a, err, sizeof(err)) == 0);
    CHECK(append_n(a, 19, 0, 64) == 0);
    CHECK(audit_syncs(a) >= 2);
    /* with always, even a record flagged AUDIT_WRITTEN waits for its sync */
    {
        struct waiter w;
        waiter_init(&w);
        CHECK_EQ_INT(
            audit_append_ex(a, AUDIT_REC_RESPONSE, "{}", 2, NULL, 0, AUDIT_WRITTEN, waiter_cb, &w),
            0);
        waiter_wait(&w, 1);
        CHECK_EQ_INT(w.failed, 0);
        waiter_deinit(&w);
    }
    audit_close(a);
    REQUIRE(audit_verify(dir, NULL, &rep, err, sizeof(err)) == 0);
    CHECK_EQ_INT(rep.verdict, AUDIT_INTACT);
    CHECK_EQ_INT(rep.records, 22);
    rm_rf(dir);
    free(dir);
}

/* A crash mid-write leaves part of a record: reopening cuts it to .broken, keeps
 * everything before it, signs it, and the chain continues. */
static void test_torn_tail_recovery(void)
{
    char *dir = tmp_dir("torn");
    struct config_audit cfg = audit_cfg(dir, CONFIG_SYNC_BATCH);
    struct audit *a = NULL;
    struct audit_report rep;
    char err[256], path[1024], broken[4096];
    uint8_t *buf, *full;
    size_t len, full_len, blen;

    REQUIRE(dir);
    REQUIRE(audit_open(&cfg, &a, err, sizeof(err)) == 0);
    CHECK(append_n(a, 6, 0, 300) == 0);
    audit_close(a);
    seg_file(path, sizeof(path), dir, 1);
    full = read_file(path, &full_len);
    REQUIRE(full);
    /* drop the shutdown checkpoint, then append half of a copy of the last record */
    len = full_len - (AUDIT_REC_OVERHEAD + AUDIT_CKPT_LEN);
    buf = malloc(len + 200);
    REQUIRE(buf);
    memcpy(buf, full, len);
    memcpy(buf + len, full + AUDIT_REC_OVERHEAD + AUDIT_SEGSTART_LEN, 200); /* a record head */
    REQUIRE(write_file(path, buf, len + 200) == 0);

    /* before recovery verify calls it a torn tail: truncation, not tampering */
    REQUIRE(audit_verify(dir, NULL, &rep, err, sizeof(err)) == 0);
    CHECK_EQ_INT(rep.verdict, AUDIT_TRUNCATED);
    CHECK(strstr(rep.message, "torn") != NULL);
    CHECK_EQ_INT(rep.where_offset, len);

    log_set_level(LOG_ERROR);
    REQUIRE(audit_open(&cfg, &a, err, sizeof(err)) == 0);
    log_set_level(LOG_WARN);
    snprintf(broken, sizeof(broken), "%s.broken", path);
    CHECK(file_exists(broken));
    free(read_file(broken, &blen));
    CHECK_EQ_INT(blen, 200);
    CHECK(append_n(a, 2, 50, 10) == 0);
    audit_close(a);
    REQUIRE(audit_verify(dir, NULL, &rep, err, sizeof(err)) == 0);
    CHECK_EQ_INT(rep.verdict, AUDIT_INTACT);
    CHECK_EQ_INT(rep.broken_files, 1);
    /* start + 6 + startup checkpoint + 2 + shutdown checkpoint */
    CHECK_EQ_INT(rep.records, 11);

    /* a second crash gets .broken.1 */
    free(buf);
    buf = read_file(path, &len);
    REQUIRE(buf);
    {
        uint8_t *b2 = malloc(len + 7);
        REQUIRE(b2);
        memcpy(b2, buf, len);
        memcpy(b2 + len, "ALOG\x01\x02\x00", 7);
        REQUIRE(write_file(path, b2, len + 7) == 0);
        free(b2);
    }
    log_set_level(LOG_ERROR);
    REQUIRE(audit_open(&cfg, &a, err, sizeof(err)) == 0);
    log_set_level(LOG_WARN);
    audit_close(a);
    snprintf(broken, sizeof(broken), "%s.broken.1", path);
    CHECK(file_exists(broken));
    REQUIRE(audit_verify(dir, NULL, &rep, err, sizeof(err)) == 0);
    CHECK_EQ_INT(rep.verdict, AUDIT_INTACT);
    free(buf);
    free(full);
    rm_rf(dir);
    free(dir);
}

/* Damage followed by valid records is not a torn tail: the writer refuses to open
 * rather than cut signed records away. */
static void test_mid_file_damage_refuses_open(void)
{
    char *dir = tmp_dir("damage");
    struct config_audit cfg = audit_cfg(dir, CONFIG_SYNC_NONE);
    struct audit *a = NULL;
    char err[256], path[4096];
    uint8_t *buf;
    size_t len;

    REQUIRE(dir);
    REQUIRE(audit_open(&cfg, &a, err, sizeof(err)) == 0);
    CHECK(append_n(a, 6, 0, 100) == 0);
    audit_close(a);
    seg_file(path, sizeof(path), dir, 1);
    buf = read_file(path, &len);
    REQUIRE(buf);
    buf[400] ^= 0x10;
    REQUIRE(write_file(path, buf, len) == 0);
    CHECK(audit_open(&cfg, &a, err, sizeof(err)) == -1);
    CHECK(strstr(err, "damaged") != NULL);
    free(buf);
    rm_rf(dir);
    free(dir);
}

/* Disk full, simulated with RLIMIT_FSIZE in a child: an append past the limit fails
 * at once (the write fails: -1, no callback), the log turns unhealthy, refuse mode then
 * fails appends fast, every record accepted is durable, and no torn record is left:
 * verify passes on what is there. */
static void test_disk_full(void)
{
    char *dir = tmp_dir("full");
    struct config_audit cfg = audit_cfg(dir, CONFIG_SYNC_BATCH);
    struct audit_report rep;
    char err[256];
    pid_t pid;
    int status;

    REQUIRE(dir);
    pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        struct audit *a = NULL;
        struct rlimit rl = {20000, 20000};
        int i, failed = 0, ok = 0, refused = 0;

        signal(SIGXFSZ, SIG_IGN);
        log_set_level(LOG_ERROR + 1);
        if (audit_open(&cfg, &a, err, sizeof(err)) != 0)
            _exit(10);
        if (setrlimit(RLIMIT_FSIZE, &rl) != 0)
            _exit(11);
        for (i = 0; i < 40; i++) {
            struct waiter w;
            struct audit_blob b = {"inbound", err, 0};
            char data[1000];
            memset(data, 'x', sizeof(data));
            b.data = data;
            b.len = sizeof(data);
            waiter_init(&w);
            if (audit_append(a, AUDIT_REC_REQUEST, "{\"id\":\"x\"}", &b, 1, waiter_cb, &w) != 0) {
                refused++;
                waiter_deinit(&w);
                continue;
            }
            waiter_wait(&w, 1);
            if (w.ok)
                ok++;
            else
                failed++;
            waiter_deinit(&w);
        }
        if (ok < 5 || failed != 0 || refused < 1 || audit_healthy(a) != 0)
            _exit(12);
        audit_close(a); /* the shutdown checkpoint may fail too: logged, no torn record */
        _exit(0);
    }
    REQUIRE(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status));
    CHECK_EQ_INT(WEXITSTATUS(status), 0);
    REQUIRE(audit_verify(dir, NULL, &rep, err, sizeof(err)) == 0);
    /* the tail after the last checkpoint is unsigned (no room for a shutdown
     * checkpoint) or intact; never damaged */
    CHECK(rep.verdict == AUDIT_INTACT ||
          (rep.verdict == AUDIT_TRUNCATED && strstr(rep.message, "unsigned")));
    CHECK(rep.records >= 6);

    /* with room again the writer recovers and the log verifies */
    {
        struct audit *a = NULL;
        log_set_level(LOG_ERROR);
        REQUIRE(audit_open(&cfg, &a, err, sizeof(err)) == 0);
        log_set_level(LOG_WARN);
        CHECK(append_n(a, 3, 0, 1000) == 0);
        CHECK(audit_healthy(a) == 1);
        audit_close(a);
        REQUIRE(audit_verify(dir, NULL, &rep, err, sizeof(err)) == 0);
        CHECK_EQ_INT(rep.verdict, AUDIT_INTACT);
    }
    rm_rf(dir);
    free(dir);
}

/* Recovery in the same process: after a failure, a probe append gets through once
 * space is back and the log is healthy again. */
static void test_recovers_after_failure(void)
{
    char *dir = tmp_dir("recover");
    struct config_audit cfg = audit_cfg(dir, CONFIG_SYNC_BATCH);
    pid_t pid;
    int status;

    REQUIRE(dir);
    pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        struct audit *a = NULL;
        struct rlimit rl = {8000, RLIM_INFINITY};
        char err[256];
        int i, ok_after = 0;

        signal(SIGXFSZ, SIG_IGN);
        log_set_level(LOG_ERROR + 1);
        if (audit_open(&cfg, &a, err, sizeof(err)) != 0)
            _exit(10);
        setrlimit(RLIMIT_FSIZE, &rl);
        for (i = 0; i < 20 && audit_healthy(a); i++)
            append_n(a, 1, i, 1000);
        if (audit_healthy(a))
            _exit(11);
        rl.rlim_cur = RLIM_INFINITY;
        setrlimit(RLIMIT_FSIZE, &rl);
        for (i = 0; i < 30 && !ok_after; i++) {
            if (append_n(a, 1, 100 + i, 1000) == 0)
                ok_after = 1;
            else
                usleep(100000);
        }
        if (!ok_after || !audit_healthy(a))
            _exit(12);
        audit_close(a);
        _exit(0);
    }
    REQUIRE(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    {
        struct audit_report rep;
        char err[256];
        REQUIRE(audit_verify(dir, NULL, &rep, err, sizeof(err)) == 0);
        CHECK_EQ_INT(rep.verdict, AUDIT_INTACT);
    }
    rm_rf(dir);
    free(dir);
}

static void test_configured_signing_key(void)
{
    char *dir = tmp_dir("keys");
    char prefix[1024], sk[4096], pub[4096], logdir[4096], err[256];
    struct config_audit cfg;
    struct audit *a = NULL;
    struct audit_report rep;
    struct stat st;

    REQUIRE(dir);
    snprintf(prefix, sizeof(prefix), "%s/k", dir);
    REQUIRE(audit_keygen(prefix, err, sizeof(err)) == 0);
    CHECK(audit_keygen(prefix, err, sizeof(err)) == -1); /* never overwrites */
    snprintf(sk, sizeof(sk), "%s.sign.key", prefix);
    snprintf(pub, sizeof(pub), "%s.sign.pub", prefix);
    REQUIRE(stat(sk, &st) == 0);
    CHECK_EQ_INT(st.st_mode & 0777, 0600);
    snprintf(logdir, sizeof(logdir), "%s/log", dir);
    cfg = audit_cfg(logdir, CONFIG_SYNC_NONE);
    cfg.signing_key = sk;
    REQUIRE(audit_open(&cfg, &a, err, sizeof(err)) == 0);
    CHECK(append_n(a, 3, 0, 10) == 0);
    audit_close(a);
    REQUIRE(audit_verify(logdir, pub, &rep, err, sizeof(err)) == 0);
    CHECK_EQ_INT(rep.verdict, AUDIT_INTACT);
    /* a seal key is not a signing key */
    snprintf(sk, sizeof(sk), "%s.seal.key", prefix);
    cfg.signing_key = sk;
    CHECK(audit_open(&cfg, &a, err, sizeof(err)) == -1);
    CHECK(strstr(err, "airlock-sign-key") != NULL);
    rm_rf(logdir);
    rm_rf(dir);
    free(dir);
}

/* Records are signed within the time interval even when no more arrive. */
static void test_time_checkpoint(void)
{
    char *dir = tmp_dir("timeckpt");
    struct config_audit cfg = audit_cfg(dir, CONFIG_SYNC_BATCH);
    struct audit *a = NULL;
    struct audit_report rep;
    char err[256];
    int i;

    REQUIRE(dir);
    setenv("AIRLOCK_AUDIT_CHECKPOINT_MS", "100", 1);
    REQUIRE(audit_open(&cfg, &a, err, sizeof(err)) == 0);
    unsetenv("AIRLOCK_AUDIT_CHECKPOINT_MS");
    CHECK(append_n(a, 3, 0, 10) == 0);
    /* poll (no timing asserted): the writer must sign the tail by itself */
    for (i = 0; i < 100; i++) {
        REQUIRE(audit_verify(dir, NULL, &rep, err, sizeof(err)) == 0);
        if (rep.verdict == AUDIT_INTACT)
            break;
        usleep(50000);
    }
    CHECK_EQ_INT(rep.verdict, AUDIT_INTACT);
    CHECK_EQ_INT(rep.records, 5);
    CHECK_EQ_INT(rep.last_checkpoint_seq, 4);
    audit_close(a);
    setenv("AIRLOCK_AUDIT_CHECKPOINT_MS", "5", 1);
    CHECK(audit_open(&cfg, &a, err, sizeof(err)) == -1); /* out of range */
    unsetenv("AIRLOCK_AUDIT_CHECKPOINT_MS");
    rm_rf(dir);
    free(dir);
}

/* on_failure: allow -- a failing log tries every record (no fail-fast period): each
 * fails, and the first one after the disk has room again succeeds and heals the log. */
static void test_disk_full_allow(void)
{
    char *dir = tmp_dir("fullallow");
    struct config_audit cfg = audit_cfg(dir, CONFIG_SYNC_BATCH);
    pid_t pid;
    int status;

    REQUIRE(dir);
    cfg.on_failure = CONFIG_ON_FAILURE_ALLOW;
    pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        struct audit *a = NULL;
        struct rlimit rl = {6000, RLIM_INFINITY};
        char err[256];
        int i, refused = 0, failed = 0, rc;

        signal(SIGXFSZ, SIG_IGN);
        log_set_level(LOG_ERROR + 1);
        if (audit_open(&cfg, &a, err, sizeof(err)) != 0)
            _exit(10);
        setrlimit(RLIMIT_FSIZE, &rl);
        for (i = 0; i < 20; i++) {
            struct waiter w;
            struct audit_blob b = {"inbound", err, 0};
            char data[1000];
            memset(data, 'y', sizeof(data));
            b.data = data;
            b.len = sizeof(data);
            waiter_init(&w);
            if (audit_append(a, AUDIT_REC_REQUEST, "{}", &b, 1, waiter_cb, &w) != 0) {
                refused++;
            } else {
                waiter_wait(&w, 1);
                failed += w.failed;
            }
            waiter_deinit(&w);
        }
        if (refused + failed < 10 || audit_healthy(a))
            _exit(12);
        /* with room again, the very next append is written and heals the log: allow
         * mode tries every record (refuse mode would fail appends fast for a second) */
        rl.rlim_cur = RLIM_INFINITY;
        setrlimit(RLIMIT_FSIZE, &rl);
        {
            struct waiter w;
            waiter_init(&w);
            rc = audit_append(a, AUDIT_REC_REQUEST, "{}", NULL, 0, waiter_cb, &w);
            if (rc != 0)
                _exit(13);
            waiter_wait(&w, 1);
            if (w.failed || !audit_healthy(a))
                _exit(14);
            waiter_deinit(&w);
        }
        audit_close(a);
        _exit(0);
    }
    REQUIRE(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    rm_rf(dir);
    free(dir);
}

/* Write-ahead under a crash: a child appends from 4 threads and reports each record
 * whose callback said durable; it is SIGKILLed mid-stream. After reopening, every
 * reported record is in the log and the log verifies. */
struct crash_arg {
    struct audit *a;
    int fd, thread;
};

static void *crash_thread(void *p)
{
    struct crash_arg *c = p;
    char meta[64], blob[700];
    int i;

    memset(blob, 'c', sizeof(blob));
    for (i = 0;; i++) {
        struct waiter w;
        struct audit_blob b = {"outbound", blob, sizeof(blob)};
        uint32_t id = (uint32_t)(c->thread << 20 | i);
        snprintf(meta, sizeof(meta), "{\"id\":\"%08x\"}", id);
        waiter_init(&w);
        if (audit_append(c->a, AUDIT_REC_REQUEST, meta, &b, 1, waiter_cb, &w) != 0)
            _exit(20);
        waiter_wait(&w, 1);
        if (w.ok != 1)
            _exit(21);
        if (write(c->fd, &id, 4) != 4)
            _exit(22);
        waiter_deinit(&w);
    }
    return NULL;
}

struct id_set {
    uint32_t *ids;
    size_t n, cap;
};

static int collect_ids(void *ud, const struct audit_rec *rec, const struct audit_walk_ctx *ctx)
{
    struct id_set *s = ud;
    struct audit_body b;
    const char *why;
    unsigned int id;

    (void)ctx;
    if (rec->type != AUDIT_REC_REQUEST ||
        audit_body_parse(rec->body, rec->body_len, &b, &why) != 0 ||
        sscanf(b.meta, "{\"id\":\"%8x", &id) != 1)
        return 0;
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 1024;
        s->ids = realloc(s->ids, s->cap * sizeof(*s->ids));
    }
    s->ids[s->n++] = id;
    return 0;
}

static void test_crash_keeps_acknowledged_records(void)
{
    char *dir = tmp_dir("crash");
    struct config_audit cfg = audit_cfg(dir, CONFIG_SYNC_BATCH);
    struct audit_report rep;
    struct id_set set = {NULL, 0, 0};
    uint32_t acked[20000];
    size_t n_acked = 0, i, j;
    char err[256];
    int pfd[2], status, missing = 0;
    pid_t pid;

    REQUIRE(dir);
    REQUIRE(pipe(pfd) == 0);
    setenv("AIRLOCK_AUDIT_SEGMENT_BYTES", "65536", 1);
    pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        struct audit *a = NULL;
        struct crash_arg args[4];
        pthread_t th[4];
        close(pfd[0]);
        log_set_level(LOG_ERROR + 1);
        if (audit_open(&cfg, &a, err, sizeof(err)) != 0)
            _exit(10);
        for (i = 0; i < 4; i++) {
            args[i].a = a;
            args[i].fd = pfd[1];
            args[i].thread = (int)i;
            pthread_create(&th[i], NULL, crash_thread, &args[i]);
        }
        for (;;)
            pause();
    }
    unsetenv("AIRLOCK_AUDIT_SEGMENT_BYTES");
    close(pfd[1]);
    while (n_acked < 300) {
        uint32_t id;
        if (read(pfd[0], &id, 4) != 4)
            break;
        acked[n_acked++] = id;
    }
    kill(pid, SIGKILL);
    while (n_acked < sizeof(acked) / sizeof(acked[0])) { /* acks in flight when killed */
        uint32_t id;
        if (read(pfd[0], &id, 4) != 4)
            break;
        acked[n_acked++] = id;
    }
    close(pfd[0]);
    REQUIRE(waitpid(pid, &status, 0) == pid);
    CHECK(WIFSIGNALED(status));
    REQUIRE(n_acked >= 300);

    {
        struct audit *a = NULL;
        log_set_level(LOG_ERROR);
        REQUIRE(audit_open(&cfg, &a, err, sizeof(err)) == 0);
        log_set_level(LOG_WARN);
        audit_close(a);
    }
    REQUIRE(audit_verify(dir, NULL, &rep, err, sizeof(err)) == 0);
    CHECK_EQ_INT(rep.verdict, AUDIT_INTACT);
    REQUIRE(audit_walk_dir(dir, NULL, collect_ids, &set, &rep, err, sizeof(err)) == 0);
    for (i = 0; i < n_acked; i++) {
        for (j = 0; j < set.n; j++)
            if (set.ids[j] == acked[i])
                break;
        if (j == set.n)
            missing++;
    }
    CHECK_EQ_INT(missing, 0);
    CHECK(set.n >= n_acked);
    free(set.ids);
    rm_rf(dir);
    free(dir);
}

/* The zeros written ahead of the records: a writer that dies leaves them after its
 * last record. Readers take them as the end (an unsigned tail, not damage), and the
 * next start cuts them without setting anything aside as torn. Zeros with records
 * after them are damage. */
static void test_zero_tail(void)
{
    char *dir = tmp_dir("zeros");
    struct config_audit cfg = audit_cfg(dir, CONFIG_SYNC_BATCH);
    struct audit_report rep;
    char err[256], path[4096], broken[4200];
    uint8_t *buf;
    size_t len, end;
    int types[64], n;
    pid_t pid;
    int status;

    REQUIRE(dir);
    pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        struct audit *a = NULL;
        log_set_level(LOG_ERROR + 1);
        if (audit_open(&cfg, &a, err, sizeof(err)) != 0)
            _exit(10);
        if (append_n(a, 6, 0, 200) != 0)
            _exit(11);
        _exit(0); /* no audit_close: as if killed */
    }
    REQUIRE(waitpid(pid, &status, 0) == pid);
    REQUIRE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    seg_file(path, sizeof(path), dir, 1);
    buf = read_file(path, &len);
    REQUIRE(buf);
    n = count_records(path, types, 64);
    CHECK_EQ_INT(n, 7); /* segment start and the six */
    /* the zeros are there, after the last record */
    for (end = 0; end < len;) {
        struct audit_rec rec;
        const char *why;
        if (audit_rec_decode(buf, len, end, &rec, &why) != AUDIT_DEC_OK)
            break;
        end += rec.total;
    }
    CHECK(len > end);
    CHECK(audit_all_zero(buf + end, len - end));
    REQUIRE(audit_verify(dir, NULL, &rep, err, sizeof(err)) == 0);
    CHECK_EQ_INT(rep.verdict, AUDIT_TRUNCATED);
    CHECK_EQ_INT(rep.unsigned_tail, 1);
    CHECK_EQ_INT(rep.records, 7);

    /* a record after zeros is damage, not a tail */
    {
        uint8_t *bad = malloc(len + 4096);
        REQUIRE(bad);
        memcpy(bad, buf, end);
        memset(bad + end, 0, 4096);
        memcpy(bad + end + 4096, buf + end - 300, 300);
        REQUIRE(write_file(path, bad, end + 4096 + 300) == 0);
        REQUIRE(audit_verify(dir, NULL, &rep, err, sizeof(err)) == 0);
        CHECK_EQ_INT(rep.verdict, AUDIT_TAMPERED);
        REQUIRE(write_file(path, buf, len) == 0);
        free(bad);
    }

    /* the next start cuts the zeros, sets nothing aside, signs and goes on */
    {
        struct audit *a = NULL;
        REQUIRE(audit_open(&cfg, &a, err, sizeof(err)) == 0);
        CHECK(append_n(a, 2, 6, 10) == 0);
        audit_close(a);
    }
    snprintf(broken, sizeof(broken), "%s.broken", path);
    CHECK(!file_exists(broken));
    REQUIRE(audit_verify(dir, NULL, &rep, err, sizeof(err)) == 0);
    CHECK_EQ_INT(rep.verdict, AUDIT_INTACT);
    CHECK_EQ_INT(rep.records, 11); /* + startup checkpoint, 2 records, shutdown checkpoint */
    free(buf);
    /* a closed segment has no zeros */
    buf = read_file(path, &len);
    REQUIRE(buf && len > 0);
    CHECK(buf[len - 1] != 0 || !audit_all_zero(buf + len - 32, 32));
    free(buf);
    rm_rf(dir);
    free(dir);
}

/* A crash while rotating leaves a new segment with a partial start record (or none):
 * it is set aside and the segment is made again, chained to the previous one. */
static void test_crash_during_rotation(void)
{
    char *dir = tmp_dir("rotcrash");
    struct config_audit cfg = audit_cfg(dir, CONFIG_SYNC_NONE);
    struct audit *a = NULL;
    struct audit_report rep;
    char err[256], p3[1024], p2[1024], broken[1100];
    uint8_t *buf;
    size_t len;
    int nseg;

    REQUIRE(dir);
    setenv("AIRLOCK_AUDIT_SEGMENT_BYTES", "4096", 1);
    REQUIRE(audit_open(&cfg, &a, err, sizeof(err)) == 0);
    CHECK(append_n(a, 20, 0, 300) == 0);
    audit_close(a);
    REQUIRE(audit_verify(dir, NULL, &rep, err, sizeof(err)) == 0);
    REQUIRE(rep.segments >= 3);
    nseg = (int)rep.segments;
    /* make the last segment look like a rotation that died after 30 bytes */
    seg_file(p3, sizeof(p3), dir, (uint32_t)nseg);
    buf = read_file(p3, &len);
    REQUIRE(buf && len > 30);
    REQUIRE(write_file(p3, buf, 30) == 0);
    /* and the one before it ends at its rotation checkpoint, as a rotation leaves it */
    seg_file(p2, sizeof(p2), dir, (uint32_t)nseg - 1);
    log_set_level(LOG_ERROR);
    REQUIRE(audit_open(&cfg, &a, err, sizeof(err)) == 0);
    log_set_level(LOG_WARN);
    CHECK(append_n(a, 2, 100, 10) == 0);
    audit_close(a);
    unsetenv("AIRLOCK_AUDIT_SEGMENT_BYTES");
    snprintf(broken, sizeof(broken), "%s.broken", p3);
    CHECK(file_exists(broken));
    CHECK(file_exists(p3));
    REQUIRE(audit_verify(dir, NULL, &rep, err, sizeof(err)) == 0);
    CHECK_EQ_INT(rep.verdict, AUDIT_INTACT);
    CHECK_EQ_INT(rep.segments, nseg);
    free(buf);
    rm_rf(dir);
    free(dir);
}

int main(void)
{
    log_set_level(LOG_WARN);
    RUN(test_open_append_close_verifies);
    RUN(test_bad_type_and_wrong_pubkey);
    RUN(test_checkpoint_every_1000);
    RUN(test_rotation);
    RUN(test_group_commit_threads);
    RUN(test_group_commit_held_syncer);
    RUN(test_written_before_sync);
    RUN(test_failed_group_commit);
    RUN(test_sync_keeps_failing);
    RUN(test_stalled_disk);
    RUN(test_sync_always);
    RUN(test_torn_tail_recovery);
    RUN(test_mid_file_damage_refuses_open);
    RUN(test_disk_full);
    RUN(test_recovers_after_failure);
    RUN(test_configured_signing_key);
    RUN(test_time_checkpoint);
    RUN(test_disk_full_allow);
    RUN(test_crash_keeps_acknowledged_records);
    RUN(test_crash_during_rotation);
    RUN(test_zero_tail);
    return harness_done();
}
