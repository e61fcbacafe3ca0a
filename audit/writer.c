/* writer.c -- the audit writer: queue, writer thread, group commit, rotation,
 * checkpoints, sealing, torn-tail recovery and failure handling. */
#include "audit/audit.h"
#include "audit/audit_int.h"
#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* A queued record. Its body is described as pieces for one pwritev: `pre` holds the
 * meta length, the meta, the blob count and the first blob's header; then each blob's
 * bytes, each followed by the next blob's header. hdr and hash are filled by the writer.
 * With AUDIT_BORROW the blob bytes are the caller's; otherwise they are copied into the
 * item's own allocation (everything lives in one malloc). */
struct item_blob {
    const uint8_t *name; /* inside the item's blob header, not NUL-terminated */
    uint16_t name_len;
    const void *data; /* borrowed (AUDIT_BORROW) or inside the item */
    size_t len;
};

/* iovecs gathered into one pwritev (Linux's IOV_MAX) */
#define AUDIT_BATCH_IOV 1024

struct audit_item {
    struct audit_item *next;
    uint8_t type;
    unsigned flags;
    int probe;
    audit_done_fn done;
    void *ud;
    size_t body_len;
    const uint8_t *meta; /* inside pre */
    size_t meta_len;
    size_t n_blobs;
    struct item_blob *blobs;
    int n_iov;
    struct iovec *iov; /* the body's pieces */
    uint8_t hdr[AUDIT_HDR_LEN];
    uint8_t hash[AUDIT_HASH_LEN];
};

/* Where the chain and the current segment stand. `good` is the last state known to
 * be on disk (synced, or written when sync is none); a failure rolls back to it. */
struct audit_wstate {
    uint64_t seq;
    uint8_t hash[32];
    uint8_t last_type;
    uint8_t last_reason; /* of the last record when it is a checkpoint */
    uint64_t off;        /* end of the last good record in the segment */
    uint32_t segment;
    uint64_t since_cp;   /* records since the last checkpoint */
};

struct audit {
    char *dir;
    enum config_sync sync;
    enum config_on_failure on_failure;
    size_t segment_bytes;
    uint64_t ckpt_every_ns; /* time-based checkpoint interval */
    uint8_t *sign_sk; /* sodium_malloc, crypto_sign_SECRETKEYBYTES */
    uint8_t sign_pk[32];
    int sealed;
    uint8_t seal_pk[32];
    uint8_t *seg_key; /* sodium_malloc, 32: the current segment's blob key */
    uint8_t sealed_key[AUDIT_SEALED_KEY_LEN];

    /* writer-thread state (and audit_open before the thread starts) */
    int fd; /* current segment, -1: the next write starts a new segment */
    struct audit_wstate cur, good;
    uint64_t last_cp_mono;
    uint8_t *scratch;
    size_t scratch_cap;
    /* the batch framed but not yet written: biov covers [boff, cur.off) of the segment */
    struct iovec biov[AUDIT_BATCH_IOV];
    int biov_n;
    uint64_t boff;
    int need_trunc; /* a rollback could not cut the file: cut before the next write */

    /* The queue is a lock-free stack (appenders push, the writer takes it whole and
     * reverses it): an append costs no lock and no contention with the writer. The
     * writer sleeps on cv only after announcing it in `sleeping`; an appender wakes it
     * only when it does (see audit_wake for the ordering that loses no wake-up).
     * mu guards cv's sleep, probe_inflight and last_fail_mono. */
    _Atomic(struct audit_item *) inbox;
    atomic_int sleeping;
    atomic_int stop;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int probe_inflight;
    uint64_t last_fail_mono;
    pthread_t thread;
    int thread_started;

    long fault_sync; /* tests: the Nth fdatasync fails with EIO (0: never) */

    atomic_size_t depth;
    atomic_int healthy;
    atomic_uint_fast64_t syncs;
};

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t audit_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int seg_path(const struct audit *a, uint32_t segment, char *buf, size_t cap)
{
    char name[32];
    audit_seg_name(name, sizeof(name), segment);
    return (size_t)snprintf(buf, cap, "%s/%s", a->dir, name) < cap ? 0 : -1;
}

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc;

    if (fd < 0)
        return -1;
    rc = fsync(fd);
    close(fd);
    return rc;
}

static int ensure_scratch(struct audit *a, size_t need)
{
    uint8_t *p;

    if (need <= a->scratch_cap)
        return 0;
    p = realloc(a->scratch, need);
    if (!p)
        return -1;
    a->scratch = p;
    a->scratch_cap = need;
    return 0;
}

/* pwritev all of iov at off; -1 with errno on failure (a short write included). */
static int pwrite_all(int fd, struct iovec *iov, int n, uint64_t off)
{
    while (n > 0) {
        ssize_t w = pwritev(fd, iov, n, (off_t)off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (w == 0) {
            errno = EIO;
            return -1;
        }
        off += (uint64_t)w;
        while (n > 0 && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (uint8_t *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
    return 0;
}

/* advance `cur` past a record just framed */
static void advance(struct audit *a, uint8_t type, const uint8_t *hash, size_t body_len,
                    uint8_t ckpt_reason)
{
    a->cur.seq++;
    memcpy(a->cur.hash, hash, 32);
    a->cur.last_type = type;
    a->cur.off += AUDIT_REC_OVERHEAD + body_len;
    if (type == 4) {
        a->cur.since_cp = 0;
        a->cur.last_reason = ckpt_reason;
    } else {
        a->cur.since_cp++;
    }
}

/* flush -- write the framed batch with as few pwritev calls as it takes. On failure
 * the caller rolls back to `good`. */
static int flush(struct audit *a)
{
    if (a->biov_n == 0)
        return 0;
    if (a->fd < 0) {
        errno = EBADF;
        return -1;
    }
    if (a->need_trunc) {
        /* a shorter record must not leave stale bytes of a failed one behind it */
        if (ftruncate(a->fd, (off_t)a->boff) != 0)
            return -1;
        a->need_trunc = 0;
    }
    if (pwrite_all(a->fd, a->biov, a->biov_n, a->boff) != 0)
        return -1;
    a->biov_n = 0;
    a->boff = a->cur.off;
    return 0;
}

/* emit -- write one record with a contiguous body (segment start, checkpoint, a
 * sealed record) now, after whatever the batch holds. On failure the caller rolls
 * the file back to `good`. */
static int emit(struct audit *a, uint8_t type, uint16_t flags, const uint8_t *hdr_in,
                const uint8_t *body, size_t body_len)
{
    uint8_t hdr[AUDIT_HDR_LEN], hash[AUDIT_HASH_LEN];
    crypto_generichash_state st;

    if (body_len > AUDIT_MAX_BODY) {
        errno = EFBIG;
        return -1;
    }
    if (hdr_in)
        memcpy(hdr, hdr_in, AUDIT_HDR_LEN);
    else
        audit_hdr_encode(hdr, type, flags, (uint32_t)body_len, a->cur.seq + 1, audit_now_ns(),
                         a->cur.hash);
    crypto_generichash_init(&st, NULL, 0, AUDIT_HASH_LEN);
    crypto_generichash_update(&st, hdr, AUDIT_HDR_LEN);
    crypto_generichash_update(&st, body, body_len);
    crypto_generichash_final(&st, hash, AUDIT_HASH_LEN);
    if (a->biov_n + 3 > AUDIT_BATCH_IOV && flush(a) != 0)
        return -1;
    a->biov[a->biov_n].iov_base = hdr;
    a->biov[a->biov_n++].iov_len = AUDIT_HDR_LEN;
    a->biov[a->biov_n].iov_base = (void *)body;
    a->biov[a->biov_n++].iov_len = body_len;
    a->biov[a->biov_n].iov_base = hash;
    a->biov[a->biov_n++].iov_len = AUDIT_HASH_LEN;
    advance(a, type, hash, body_len, type == 4 ? body[48] : 0);
    /* hdr, hash and body live on this frame or in the scratch: write them now */
    return flush(a);
}

/* seal_item -- the item's body with every blob encrypted (XChaCha20-Poly1305 under
 * the segment key; the record header and blob name are associated data), framed
 * and written at once. */
static int seal_item(struct audit *a, struct audit_item *it)
{
    uint8_t hdr[AUDIT_HDR_LEN];
    size_t extra = it->n_blobs * (AUDIT_NONCE_LEN + AUDIT_TAG_LEN), out_len, off, i;

    if (it->body_len > AUDIT_MAX_BODY - extra) {
        errno = EFBIG;
        return -1;
    }
    out_len = it->body_len + extra;
    if (ensure_scratch(a, out_len) != 0) {
        errno = ENOMEM;
        return -1;
    }
    audit_hdr_encode(hdr, it->type, AUDIT_FLAG_SEALED, (uint32_t)out_len, a->cur.seq + 1,
                     audit_now_ns(), a->cur.hash);
    audit_put32(a->scratch, (uint32_t)it->meta_len);
    memcpy(a->scratch + 4, it->meta, it->meta_len);
    off = 4 + it->meta_len;
    audit_put32(a->scratch + off, (uint32_t)it->n_blobs);
    off += 4;
    for (i = 0; i < it->n_blobs; i++) {
        const struct item_blob *bl = &it->blobs[i];
        size_t nl = bl->name_len;
        uint8_t ad[AUDIT_HDR_LEN + 2 + 65535];
        uint8_t *nonce;
        unsigned long long clen = 0;

        audit_put16(a->scratch + off, (uint16_t)nl);
        memcpy(a->scratch + off + 2, bl->name, nl);
        off += 2 + nl;
        audit_put64(a->scratch + off, bl->len + AUDIT_NONCE_LEN + AUDIT_TAG_LEN);
        off += 8;
        nonce = a->scratch + off;
        randombytes_buf(nonce, AUDIT_NONCE_LEN);
        off += AUDIT_NONCE_LEN;
        memcpy(ad, hdr, AUDIT_HDR_LEN);
        audit_put16(ad + AUDIT_HDR_LEN, (uint16_t)nl);
        memcpy(ad + AUDIT_HDR_LEN + 2, bl->name, nl);
        crypto_aead_xchacha20poly1305_ietf_encrypt(a->scratch + off, &clen, bl->data, bl->len, ad,
                                                   AUDIT_HDR_LEN + 2 + nl, NULL, nonce,
                                                   a->seg_key);
        off += (size_t)clen;
    }
    return emit(a, it->type, AUDIT_FLAG_SEALED, hdr, a->scratch, off);
}

/* frame -- chain the item's record and add it to the batch; sealed records are
 * written at once (the scratch they are sealed into is reused). */
static int frame(struct audit *a, struct audit_item *it)
{
    crypto_generichash_state st;
    int i;

    if (a->fd < 0) {
        errno = EBADF;
        return -1;
    }
    if (a->sealed)
        return seal_item(a, it);
    if (it->body_len > AUDIT_MAX_BODY) {
        errno = EFBIG;
        return -1;
    }
    if (a->biov_n + it->n_iov + 2 > AUDIT_BATCH_IOV && flush(a) != 0)
        return -1;
    audit_hdr_encode(it->hdr, it->type, 0, (uint32_t)it->body_len, a->cur.seq + 1,
                     audit_now_ns(), a->cur.hash);
    crypto_generichash_init(&st, NULL, 0, AUDIT_HASH_LEN);
    crypto_generichash_update(&st, it->hdr, AUDIT_HDR_LEN);
    a->biov[a->biov_n].iov_base = it->hdr;
    a->biov[a->biov_n++].iov_len = AUDIT_HDR_LEN;
    for (i = 0; i < it->n_iov; i++) {
        crypto_generichash_update(&st, it->iov[i].iov_base, it->iov[i].iov_len);
        a->biov[a->biov_n++] = it->iov[i];
    }
    crypto_generichash_final(&st, it->hash, AUDIT_HASH_LEN);
    a->biov[a->biov_n].iov_base = it->hash;
    a->biov[a->biov_n++].iov_len = AUDIT_HASH_LEN;
    advance(a, it->type, it->hash, it->body_len, 0);
    return 0;
}

static int emit_checkpoint(struct audit *a, uint8_t reason)
{
    uint8_t body[AUDIT_CKPT_LEN], msg[AUDIT_CKPT_MSG_LEN];
    uint64_t t = audit_now_ns();

    audit_put64(body, a->cur.seq);
    memcpy(body + 8, a->cur.hash, 32);
    audit_put64(body + 40, t);
    body[48] = reason;
    audit_ckpt_message(msg, a->cur.seq, a->cur.hash, t, reason);
    crypto_sign_detached(body + 49, NULL, msg, sizeof(msg), a->sign_sk);
    if (emit(a, 4, 0, NULL, body, sizeof(body)) != 0)
        return -1;
    a->last_cp_mono = mono_ns();
    return 0;
}

static int datasync(struct audit *a)
{
    uint64_t n = atomic_fetch_add(&a->syncs, 1) + 1;

    if (a->fault_sync > 0 && n == (uint64_t)a->fault_sync) {
        errno = EIO;
        return -1;
    }
    return fdatasync(a->fd);
}

static int sync_fd(struct audit *a)
{
    if (a->sync == CONFIG_SYNC_NONE)
        return 0;
    return datasync(a);
}

/* mark_good -- the current state is on disk (per the sync mode). */
static void mark_good(struct audit *a)
{
    a->good = a->cur;
}

/* rollback -- undo everything after `good`: cut the file back so no torn or
 * unsynced record stays behind, and rewind the chain. */
static void rollback(struct audit *a)
{
    if (a->fd >= 0 && a->cur.segment == a->good.segment) {
        if (ftruncate(a->fd, (off_t)a->good.off) != 0) {
            a->need_trunc = 1;
            log_error("audit: cannot cut %08u.alog back to %llu bytes: %s", a->good.segment,
                      (unsigned long long)a->good.off, strerror(errno));
        }
    }
    a->cur = a->good;
    a->biov_n = 0;
    a->boff = a->cur.off;
}

/* start_segment -- create segment `good.segment + 1` with its segment-start record,
 * synced, and make it current. On failure the half-made file is removed and fd is -1. */
static int start_segment(struct audit *a)
{
    uint8_t body[AUDIT_SEGSTART_LEN + AUDIT_SEGSTART_SEALED_EXTRA];
    size_t len = AUDIT_SEGSTART_LEN;
    char path[4096];
    uint32_t n = a->good.segment + 1;
    int e;

    if (seg_path(a, n, path, sizeof(path)) != 0) {
        errno = ENAMETOOLONG;
        return -1;
    }
    /* A file with this number can only be a failed earlier attempt of ours: the
     * segments on disk were listed at open and `good` is past all of them. */
    unlink(path);
    a->fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (a->fd < 0)
        return -1;
    a->need_trunc = 0;
    a->cur.segment = n;
    a->cur.off = 0;
    a->biov_n = 0; /* (rotate wrote the batch into the segment before) */
    a->boff = 0;
    audit_put32(body, n);
    audit_put32(body + 4, a->sealed ? AUDIT_SEG_FLAG_SEALED : 0);
    audit_put64(body + 8, a->cur.seq);
    memcpy(body + 16, a->cur.hash, 32);
    memcpy(body + 48, a->sign_pk, 32);
    if (a->sealed) {
        randombytes_buf(a->seg_key, 32);
        crypto_box_seal(a->sealed_key, a->seg_key, 32, a->seal_pk);
        memcpy(body + AUDIT_SEGSTART_LEN, a->seal_pk, 32);
        memcpy(body + AUDIT_SEGSTART_LEN + 32, a->sealed_key, AUDIT_SEALED_KEY_LEN);
        len += AUDIT_SEGSTART_SEALED_EXTRA;
    }
    /* with sync: none the OS decides here too: a rotation that flushed a whole segment
     * of unsynced records stalled every answer waiting on the writer for 30 ms */
    if (emit(a, 1, 0, NULL, body, len) != 0 ||
        (a->sync != CONFIG_SYNC_NONE && (datasync(a) != 0 || fsync_dir(a->dir) != 0)))
        goto fail;
    mark_good(a);
    return 0;
fail:
    e = errno;
    close(a->fd);
    a->fd = -1;
    unlink(path);
    a->cur = a->good;
    a->biov_n = 0;
    a->boff = a->cur.off;
    errno = e;
    return -1;
}

/* rotate -- checkpoint and close the current segment, start the next. */
static int rotate(struct audit *a)
{
    if (a->fd >= 0) {
        if (emit_checkpoint(a, AUDIT_CKPT_ROTATION) != 0 || sync_fd(a) != 0)
            return -1;
        mark_good(a);
        close(a->fd);
        a->fd = -1;
    }
    return start_segment(a);
}

static void set_healthy(struct audit *a, int ok, int err)
{
    int was = atomic_exchange(&a->healthy, ok);

    if (was && !ok) {
        log_error("audit: cannot write the log in %s: %s; %s", a->dir, strerror(err),
                  a->on_failure == CONFIG_ON_FAILURE_REFUSE ? "refusing requests until it can"
                                                            : "requests continue UNAUDITED");
    } else if (!was && ok) {
        log_info("audit: writing to %s again", a->dir);
    }
}

static void complete(struct audit *a, struct audit_item *it, int status)
{
    if (it->probe) {
        pthread_mutex_lock(&a->mu);
        a->probe_inflight = 0;
        if (status != 0)
            a->last_fail_mono = mono_ns();
        pthread_mutex_unlock(&a->mu);
    }
    /* out of the queue before its owner hears of it, so a caller that waited for every
     * callback sees the depth it expects */
    atomic_fetch_sub(&a->depth, 1);
    if (it->done)
        it->done(it->ud, status);
    free(it);
}

/* write_one -- rotate when due, write the record and any checkpoint due after it. */
static int write_one(struct audit *a, struct audit_item *it)
{
    size_t est = AUDIT_REC_OVERHEAD + it->body_len + 2 * (AUDIT_REC_OVERHEAD + AUDIT_CKPT_LEN);

    if (a->fd < 0) {
        if (start_segment(a) != 0)
            return -1;
    } else if (a->cur.off + est > a->segment_bytes &&
               a->cur.off > AUDIT_REC_OVERHEAD + AUDIT_SEGSTART_LEN + AUDIT_SEGSTART_SEALED_EXTRA) {
        /* (a segment holding only its start record is never rotated: no empty segments) */
        if (rotate(a) != 0)
            return -1;
    }
    if (frame(a, it) != 0)
        return -1;
    if (a->cur.since_cp >= AUDIT_CKPT_EVERY_RECORDS && emit_checkpoint(a, AUDIT_CKPT_PERIODIC) != 0)
        return -1;
    return 0;
}

static void fail_list(struct audit *a, struct audit_item *it)
{
    struct audit_item *next;

    for (; it; it = next) {
        next = it->next;
        complete(a, it, -1);
    }
}

/* process -- write a batch taken from the queue: every record framed and chained,
 * then written with as few pwritev calls as the iovec limit allows. In batch mode
 * one fdatasync covers the whole batch; records appended with AUDIT_WRITTEN are
 * reported as soon as they are written, before it. In always mode each record is
 * written and synced before its callback. A failure rolls the file back to the last
 * good state and fails every record not yet reported. */
static void process(struct audit *a, struct audit_item *list)
{
    struct audit_item *pending = list, *it = list, *next, **link;
    int err = 0, early = 0;

    while (it) {
        next = it->next;
        if (write_one(a, it) != 0 ||
            (a->sync == CONFIG_SYNC_ALWAYS && (flush(a) != 0 || sync_fd(a) != 0))) {
            err = errno ? errno : EIO;
            break;
        }
        if (a->sync == CONFIG_SYNC_ALWAYS) {
            mark_good(a);
            complete(a, it, 0);
            pending = next;
        }
        it = next;
    }
    if (!err && flush(a) != 0)
        err = errno ? errno : EIO;
    if (!err && a->sync == CONFIG_SYNC_BATCH) {
        /* written, not yet synced: a process crash can no longer lose these */
        for (link = &pending; *link;) {
            it = *link;
            if (it->flags & AUDIT_WRITTEN) {
                *link = it->next;
                complete(a, it, 0);
                early++;
            } else {
                link = &it->next;
            }
        }
        if (sync_fd(a) != 0)
            err = errno ? errno : EIO;
    }
    if (err) {
        if (early)
            log_error("audit: %d record(s) written but not made durable (fdatasync failed)",
                      early);
        rollback(a);
        set_healthy(a, 0, err);
        pthread_mutex_lock(&a->mu);
        a->last_fail_mono = mono_ns();
        pthread_mutex_unlock(&a->mu);
        fail_list(a, pending);
        return;
    }
    mark_good(a);
    set_healthy(a, 1, 0);
    for (it = pending; it; it = next) {
        next = it->next;
        complete(a, it, 0);
    }
}

static void periodic_checkpoint(struct audit *a)
{
    if (a->fd < 0 || a->cur.since_cp == 0)
        return;
    if (emit_checkpoint(a, AUDIT_CKPT_PERIODIC) != 0 || sync_fd(a) != 0) {
        int e = errno;
        rollback(a);
        set_healthy(a, 0, e);
        /* try again at the next interval, not in a tight loop */
        a->last_cp_mono = mono_ns();
        return;
    }
    mark_good(a);
}

/* take_inbox -- everything queued so far, oldest first */
static struct audit_item *take_inbox(struct audit *a)
{
    struct audit_item *it = atomic_exchange(&a->inbox, NULL), *rev = NULL, *next;

    for (; it; it = next) {
        next = it->next;
        it->next = rev;
        rev = it;
    }
    return rev;
}

static void *writer_main(void *arg)
{
    struct audit *a = arg;
    struct audit_item *list;
    int stop;

    for (;;) {
        stop = atomic_load(&a->stop);
        list = take_inbox(a);
        if (!list && !stop) {
            pthread_mutex_lock(&a->mu);
            atomic_store(&a->sleeping, 1);
            /* seq_cst: the store above is ordered before this load, and an appender's
             * push before its load of `sleeping`: one of us sees the other */
            while (!atomic_load(&a->inbox) && !atomic_load(&a->stop)) {
                if (a->cur.since_cp > 0) {
                    uint64_t due = a->last_cp_mono + a->ckpt_every_ns, now = mono_ns();
                    struct timespec ts;
                    if (now >= due)
                        break;
                    /* the condvar uses CLOCK_MONOTONIC (see audit_open) */
                    ts.tv_sec = (time_t)(due / 1000000000ull);
                    ts.tv_nsec = (long)(due % 1000000000ull);
                    pthread_cond_timedwait(&a->cv, &a->mu, &ts);
                } else {
                    pthread_cond_wait(&a->cv, &a->mu);
                }
            }
            atomic_store(&a->sleeping, 0);
            pthread_mutex_unlock(&a->mu);
            stop = atomic_load(&a->stop);
            list = take_inbox(a);
        }
        if (list)
            process(a, list);
        if (a->cur.since_cp > 0 && mono_ns() >= a->last_cp_mono + a->ckpt_every_ns)
            periodic_checkpoint(a);
        if (stop && !list)
            break;
    }
    return NULL;
}

/* ---- open: keys, recovery ---- */

static int load_or_create_sign_key(struct audit *a, const struct config_audit *cfg, char *err,
                                   size_t errlen)
{
    char path[4096], pub_path[4096];
    uint8_t pk_file[32];
    char e2[256];

    if ((size_t)snprintf(pub_path, sizeof(pub_path), "%s/audit.sign.pub", a->dir) >=
        sizeof(pub_path)) {
        snprintf(err, errlen, "%s: path too long", a->dir);
        return -1;
    }
    if (cfg->signing_key) {
        if (audit_key_read(cfg->signing_key, AUDIT_LABEL_SIGN_KEY, a->sign_sk,
                           crypto_sign_SECRETKEYBYTES, err, errlen) != 0)
            return -1;
    } else {
        if ((size_t)snprintf(path, sizeof(path), "%s/audit.sign.key", a->dir) >= sizeof(path)) {
            snprintf(err, errlen, "%s: path too long", a->dir);
            return -1;
        }
        if (access(path, F_OK) == 0) {
            if (audit_key_read(path, AUDIT_LABEL_SIGN_KEY, a->sign_sk, crypto_sign_SECRETKEYBYTES,
                               err, errlen) != 0)
                return -1;
        } else {
            uint8_t pk[32];
            crypto_sign_keypair(pk, a->sign_sk);
            if (audit_key_write(path, AUDIT_LABEL_SIGN_KEY, a->sign_sk, crypto_sign_SECRETKEYBYTES,
                                0600, err, errlen) != 0)
                return -1;
            log_info("audit: created signing key %s", path);
        }
    }
    crypto_sign_ed25519_sk_to_pk(a->sign_pk, a->sign_sk);
    /* audit verify DIR checks against DIR/audit.sign.pub by default: keep one there. */
    if (access(pub_path, F_OK) != 0) {
        if (audit_key_write(pub_path, AUDIT_LABEL_SIGN_PUB, a->sign_pk, 32, 0644, err, errlen) !=
            0)
            return -1;
    } else if (audit_key_read(pub_path, AUDIT_LABEL_SIGN_PUB, pk_file, 32, e2, sizeof(e2)) != 0 ||
               memcmp(pk_file, a->sign_pk, 32) != 0) {
        log_warn("audit: %s does not match the signing key in use; new checkpoints will not "
                 "verify against it",
                 pub_path);
    }
    return 0;
}

static int move_to_broken(const char *dir, const char *segname, const uint8_t *data, size_t len,
                          char *out_name, size_t out_cap)
{
    char path[4096];
    int fd = -1, i;

    for (i = 0; i < 1000; i++) {
        if (i == 0)
            snprintf(out_name, out_cap, "%s.broken", segname);
        else
            snprintf(out_name, out_cap, "%s.broken.%d", segname, i);
        if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, out_name) >= sizeof(path))
            return -1;
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd >= 0 || errno != EEXIST)
            break;
    }
    if (fd < 0)
        return -1;
    while (len > 0) {
        ssize_t w = write(fd, data, len);
        if (w <= 0) {
            if (w < 0 && errno == EINTR)
                continue;
            close(fd);
            return -1;
        }
        data += w;
        len -= (size_t)w;
    }
    if (fsync(fd) != 0) {
        close(fd);
        return -1;
    }
    return close(fd);
}

/* recover -- find where the chain stands. The last segment is walked record by
 * record; a tail that holds no complete valid record is torn (a crash mid-write) and
 * is moved to a `.broken` file; damage followed by valid records is not a crash and
 * is refused (audit verify names it). A last segment without one valid record is set
 * aside whole and the one before it is used. */
static int recover(struct audit *a, char *err, size_t errlen)
{
    uint32_t *nums = NULL;
    size_t n = 0, nb = 0;
    int rc = -1;

    memset(&a->cur, 0, sizeof(a->cur));
    a->fd = -1;
    if (audit_seg_list(a->dir, &nums, &n, &nb, err, errlen) != 0)
        return -1;
    while (n > 0) {
        uint32_t segno = nums[n - 1];
        char name[32], path[4096], broken[64];
        struct audit_map m;
        struct audit_rec rec;
        struct audit_wstate st;
        size_t off = 0;
        const char *why = NULL;

        audit_seg_name(name, sizeof(name), segno);
        snprintf(path, sizeof(path), "%s/%s", a->dir, name);
        if (audit_map_open(path, &m, err, errlen) != 0)
            goto fail;
        memset(&st, 0, sizeof(st));
        st.segment = segno;
        while (off < m.len) {
            if (audit_rec_decode(m.data, m.len, off, &rec, &why) != AUDIT_DEC_OK)
                break;
            if (off == 0) {
                struct audit_segstart ss;
                if (rec.type != 1 || audit_segstart_parse(rec.body, rec.body_len, &ss, &why) != 0 ||
                    ss.segment != segno) {
                    why = "first record is not this segment's start";
                    break;
                }
            } else if (rec.seq != st.seq + 1 || memcmp(rec.prev_hash, st.hash, 32) != 0) {
                why = "chain broken";
                break;
            }
            st.seq = rec.seq;
            memcpy(st.hash, rec.hash, 32);
            st.last_type = rec.type;
            st.last_reason = rec.type == 4 && rec.body_len == AUDIT_CKPT_LEN ? rec.body[48] : 0;
            st.since_cp = rec.type == 4 ? 0 : st.since_cp + 1;
            off += rec.total;
        }
        st.off = off;
        if (off < m.len) {
            if (audit_rec_find_valid(m.data, m.len, off + 1)) {
                snprintf(err, errlen,
                         "%s/%s is damaged at offset %zu (%s), and valid records follow: not a "
                         "torn tail; run `airlock audit verify %s` and move the damaged segment "
                         "aside",
                         a->dir, name, off, why ? why : "invalid record", a->dir);
                audit_map_close(&m);
                goto fail;
            }
            if (move_to_broken(a->dir, name, m.data + off, m.len - off, broken, sizeof(broken)) !=
                0) {
                snprintf(err, errlen, "%s/%s: cannot save the torn tail: %s", a->dir, name,
                         strerror(errno));
                audit_map_close(&m);
                goto fail;
            }
            log_warn("audit: %s/%s had a torn tail at offset %zu (%zu bytes, %s): moved to %s",
                     a->dir, name, off, m.len - off, why ? why : "incomplete", broken);
        }
        audit_map_close(&m);
        if (off == 0) {
            /* nothing valid: the whole file went to .broken */
            if (unlink(path) != 0) {
                snprintf(err, errlen, "%s: %s", path, strerror(errno));
                goto fail;
            }
            n--;
            continue;
        }
        a->fd = open(path, O_WRONLY | O_CLOEXEC);
        if (a->fd < 0 || ftruncate(a->fd, (off_t)off) != 0 || fdatasync(a->fd) != 0) {
            snprintf(err, errlen, "%s: %s", path, strerror(errno));
            goto fail;
        }
        a->cur = st;
        break;
    }
    if (n == 0) /* the chain starts here: an empty directory, or nothing valid in it */
        memset(&a->cur, 0, sizeof(a->cur));
    a->good = a->cur;
    rc = 0;
fail:
    free(nums);
    return rc;
}

int audit_open(const struct config_audit *cfg, struct audit **out, char *err, size_t errlen)
{
    struct audit *a = NULL;
    pthread_condattr_t ca;
    const char *env;
    struct stat stt;

    *out = NULL;
    if (!cfg || !cfg->dir) {
        snprintf(err, errlen, "audit: no directory configured");
        return -1;
    }
    if (sodium_init() < 0) {
        snprintf(err, errlen, "audit: libsodium failed to initialise");
        return -1;
    }
    a = calloc(1, sizeof(*a));
    if (!a) {
        snprintf(err, errlen, "audit: out of memory");
        return -1;
    }
    a->fd = -1;
    pthread_mutex_init(&a->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&a->cv, &ca);
    pthread_condattr_destroy(&ca);
    atomic_init(&a->depth, 0);
    atomic_init(&a->inbox, NULL);
    atomic_init(&a->sleeping, 0);
    atomic_init(&a->stop, 0);
    atomic_init(&a->healthy, 1);
    atomic_init(&a->syncs, 0);
    a->sync = cfg->sync;
    a->on_failure = cfg->on_failure;
    a->segment_bytes = AUDIT_DEFAULT_SEGMENT_BYTES;
    env = getenv("AIRLOCK_AUDIT_SEGMENT_BYTES");
    if (env && *env) {
        char *end;
        unsigned long long v = strtoull(env, &end, 10);
        if (*end || v < 4096) {
            snprintf(err, errlen, "AIRLOCK_AUDIT_SEGMENT_BYTES=%s: expected a number >= 4096", env);
            goto fail;
        }
        a->segment_bytes = (size_t)v;
    }
    a->ckpt_every_ns = AUDIT_CKPT_EVERY_NS;
    env = getenv("AIRLOCK_AUDIT_CHECKPOINT_MS"); /* tests: a shorter interval, never longer */
    if (env && *env) {
        char *end;
        unsigned long long v = strtoull(env, &end, 10);
        if (*end || v < 10 || v > AUDIT_CKPT_EVERY_NS / 1000000ull) {
            snprintf(err, errlen, "AIRLOCK_AUDIT_CHECKPOINT_MS=%s: expected 10..10000", env);
            goto fail;
        }
        a->ckpt_every_ns = v * 1000000ull;
    }
    env = getenv("AIRLOCK_AUDIT_FAULT_SYNC"); /* tests: the Nth fdatasync fails (EIO) */
    if (env && *env)
        a->fault_sync = strtol(env, NULL, 10);
    a->dir = strdup(cfg->dir);
    a->sign_sk = sodium_malloc(crypto_sign_SECRETKEYBYTES);
    a->seg_key = sodium_malloc(32);
    if (!a->dir || !a->sign_sk || !a->seg_key) {
        snprintf(err, errlen, "audit: out of memory");
        goto fail;
    }
    if (mkdir(a->dir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "%s: %s", a->dir, strerror(errno));
        goto fail;
    }
    if (stat(a->dir, &stt) != 0 || !S_ISDIR(stt.st_mode)) {
        snprintf(err, errlen, "%s: not a directory", a->dir);
        goto fail;
    }
    if (load_or_create_sign_key(a, cfg, err, errlen) != 0)
        goto fail;
    if (cfg->seal_to) {
        if (audit_key_read(cfg->seal_to, AUDIT_LABEL_SEAL_PUB, a->seal_pk, 32, err, errlen) != 0)
            goto fail;
        a->sealed = 1;
    }
    if (recover(a, err, errlen) != 0)
        goto fail;
    a->boff = a->cur.off;
    /* Start in a consistent place: a fresh segment when there is none, when the last
     * one ended at a rotation, when it is full, or when sealing (the segment key of an
     * old sealed segment is not recoverable here, by design). Otherwise sign what a
     * crash may have left unsigned. */
    if (a->fd < 0 || (a->cur.last_type == 4 && a->cur.last_reason == AUDIT_CKPT_ROTATION)) {
        if (a->fd >= 0) {
            close(a->fd);
            a->fd = -1;
        }
        if (start_segment(a) != 0) {
            snprintf(err, errlen, "%s: cannot start a segment: %s", a->dir, strerror(errno));
            goto fail;
        }
    } else if (a->sealed || a->cur.off >= a->segment_bytes) {
        if (rotate(a) != 0) {
            snprintf(err, errlen, "%s: cannot rotate: %s", a->dir, strerror(errno));
            goto fail;
        }
    } else if (a->cur.last_type != 4) {
        if (emit_checkpoint(a, AUDIT_CKPT_STARTUP) != 0 || fdatasync(a->fd) != 0) {
            snprintf(err, errlen, "%s: cannot write a checkpoint: %s", a->dir, strerror(errno));
            goto fail;
        }
        mark_good(a);
    }
    a->last_cp_mono = mono_ns();
    if (pthread_create(&a->thread, NULL, writer_main, a) != 0) {
        snprintf(err, errlen, "audit: cannot start the writer thread");
        goto fail;
    }
    a->thread_started = 1;
    *out = a;
    return 0;
fail:
    audit_close(a);
    return -1;
}

void audit_close(struct audit *a)
{
    if (!a)
        return;
    if (a->thread_started) {
        struct audit_item *late;
        atomic_store(&a->stop, 1);
        pthread_mutex_lock(&a->mu);
        pthread_cond_signal(&a->cv);
        pthread_mutex_unlock(&a->mu);
        pthread_join(a->thread, NULL);
        /* an append racing with close may have pushed after the writer's last look */
        late = take_inbox(a);
        if (late)
            process(a, late);
        if (a->fd >= 0 && a->cur.last_type != 4) {
            if (emit_checkpoint(a, AUDIT_CKPT_SHUTDOWN) != 0 || fdatasync(a->fd) != 0) {
                log_error("audit: cannot write the shutdown checkpoint: %s", strerror(errno));
                rollback(a);
            }
        }
    }
    if (a->fd >= 0)
        close(a->fd);
    pthread_mutex_destroy(&a->mu);
    pthread_cond_destroy(&a->cv);
    sodium_free(a->sign_sk);
    sodium_free(a->seg_key);
    free(a->scratch);
    free(a->dir);
    free(a);
}

int audit_append(struct audit *a, const char *type, const char *meta_json,
                 const struct audit_blob *blobs, size_t n_blobs, audit_done_fn done, void *ud)
{
    return audit_append_ex(a, type, meta_json, strlen(meta_json), blobs, n_blobs, 0, done, ud);
}

int audit_append_ex(struct audit *a, const char *type, const char *meta, size_t meta_len,
                    const struct audit_blob *blobs, size_t n_blobs, unsigned flags,
                    audit_done_fn done, void *ud)
{
    struct audit_item *it;
    size_t total, i, pre_len, extra_bytes, n_iov, alloc;
    uint8_t *p, *pre;
    uint8_t t;

    if (strcmp(type, "request") == 0)
        t = 2;
    else if (strcmp(type, "response") == 0)
        t = 3;
    else
        return -1;
    if (n_blobs > AUDIT_MAX_BLOBS || meta_len > AUDIT_MAX_BODY)
        return -1;
    /* body = meta length, meta, blob count, then name length, name, length, bytes per blob */
    total = 8 + meta_len;
    pre_len = 8 + meta_len;
    extra_bytes = 0; /* headers of blobs after the first, and copies */
    for (i = 0; i < n_blobs; i++) {
        size_t nl = strlen(blobs[i].name);
        if (nl > 65535 || blobs[i].len > AUDIT_MAX_BODY || total > AUDIT_MAX_BODY)
            return -1;
        total += 10 + nl + blobs[i].len;
        if (i == 0)
            pre_len += 10 + nl;
        else
            extra_bytes += 10 + nl;
        if (!(flags & AUDIT_BORROW))
            extra_bytes += blobs[i].len;
    }
    /* room for sealing overhead, so a record accepted here is never too big later */
    if (total + n_blobs * (AUDIT_NONCE_LEN + AUDIT_TAG_LEN) > AUDIT_MAX_BODY)
        return -1;
    n_iov = n_blobs ? 2 * n_blobs : 1;
    alloc = sizeof(*it) + n_iov * sizeof(struct iovec) + n_blobs * sizeof(struct item_blob) +
            pre_len + extra_bytes;
    it = malloc(alloc);
    if (!it)
        return -1;
    memset(it, 0, sizeof(*it));
    it->type = t;
    it->flags = flags;
    it->done = done;
    it->ud = ud;
    it->body_len = total;
    it->meta_len = meta_len;
    it->n_blobs = n_blobs;
    it->iov = (struct iovec *)(it + 1);
    it->blobs = (struct item_blob *)(it->iov + n_iov);
    pre = (uint8_t *)(it->blobs + n_blobs);
    audit_put32(pre, (uint32_t)meta_len);
    memcpy(pre + 4, meta, meta_len);
    it->meta = pre + 4;
    audit_put32(pre + 4 + meta_len, (uint32_t)n_blobs);
    p = pre + 8 + meta_len;
    it->iov[0].iov_base = pre;
    it->n_iov = 1;
    for (i = 0; i < n_blobs; i++) {
        size_t nl = strlen(blobs[i].name);
        uint8_t *bh = p;

        audit_put16(bh, (uint16_t)nl);
        memcpy(bh + 2, blobs[i].name, nl);
        audit_put64(bh + 2 + nl, blobs[i].len);
        p += 10 + nl;
        if (i == 0) {
            it->iov[0].iov_len = pre_len;
        } else {
            it->iov[it->n_iov].iov_base = bh;
            it->iov[it->n_iov++].iov_len = 10 + nl;
        }
        it->blobs[i].name = bh + 2;
        it->blobs[i].name_len = (uint16_t)nl;
        it->blobs[i].len = blobs[i].len;
        if (flags & AUDIT_BORROW) {
            it->blobs[i].data = blobs[i].data;
        } else {
            if (blobs[i].len)
                memcpy(p, blobs[i].data, blobs[i].len);
            it->blobs[i].data = p;
            p += blobs[i].len;
        }
        it->iov[it->n_iov].iov_base = (void *)it->blobs[i].data;
        it->iov[it->n_iov++].iov_len = blobs[i].len;
    }
    if (n_blobs == 0)
        it->iov[0].iov_len = pre_len;

    if (!atomic_load(&a->healthy) && a->on_failure == CONFIG_ON_FAILURE_REFUSE) {
        /* Fail fast, but let one record through now and then to find out whether the
         * disk has recovered: without appends the writer would never learn it. */
        pthread_mutex_lock(&a->mu);
        if (a->probe_inflight || mono_ns() < a->last_fail_mono + 1000000000ull) {
            pthread_mutex_unlock(&a->mu);
            free(it);
            return -1;
        }
        a->probe_inflight = 1;
        it->probe = 1;
        pthread_mutex_unlock(&a->mu);
    }
    if (atomic_load(&a->stop)) {
        free(it);
        return -1;
    }
    atomic_fetch_add(&a->depth, 1);
    it->next = atomic_load(&a->inbox);
    while (!atomic_compare_exchange_weak(&a->inbox, &it->next, it))
        ;
    if (!(flags & AUDIT_NOWAKE))
        audit_wake(a);
    return 0;
}

void audit_wake(struct audit *a)
{
    if (atomic_load(&a->sleeping)) {
        pthread_mutex_lock(&a->mu);
        pthread_cond_signal(&a->cv);
        pthread_mutex_unlock(&a->mu);
    }
}

int audit_healthy(struct audit *a)
{
    return atomic_load(&a->healthy);
}

uint64_t audit_syncs(struct audit *a)
{
    return (uint64_t)atomic_load(&a->syncs);
}

size_t audit_queue_depth(struct audit *a)
{
    return atomic_load(&a->depth);
}
