/* writer.c -- appending to the audit log: framing and chaining on the appending
 * thread, group commit on the syncer thread, rotation, checkpoints, sealing, torn-tail
 * recovery and failure handling.
 *
 * Why the appender writes. A record used to be handed to a writer thread and its
 * result handed back: four thread hand-offs per gateway request. On a busy machine each
 * costs a scheduling delay (measured 70-250 us on 2 cores), which was most of what the
 * audit added to a request, even with sync: none. Now audit_append frames, hashes and
 * pwritev()s the record itself, under the log's lock: a write into the page cache,
 * never a wait for the disk. Only the wait for durability (fdatasync) is handed to the
 * syncer thread, which covers every record written since its last sync with one call
 * (group commit) and then calls their callbacks. A record that only needs to be
 * written (sync: none, AUDIT_WRITTEN with batch) is complete when audit_append_ex
 * returns, with no hand-off at all. */
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

/* A record whose `done` waits for the fdatasync that covers it. */
struct waiter {
    struct waiter *next;
    int probe;    /* appended while the log was failed, to find out if it recovered */
    audit_done_fn done;
    void *ud;
};

/* Where the chain and the current segment stand. `good` is the last state known to
 * be on disk (synced, or written when sync is none); a failure rolls back to it. */
struct audit_wstate {
    uint64_t seq;
    uint8_t hash[32];
    enum audit_rec_type last_type; /* 0 before the first record */
    uint8_t last_reason; /* of the last record when it is a checkpoint */
    uint64_t off;        /* end of the last record in the segment */
    uint32_t segment;
    uint64_t since_cp;   /* records since the last checkpoint */
};

/* Zeros are written this far ahead of the records (sync: batch and always), so that a
 * group's fdatasync overwrites allocated blocks inside the file's size and has no
 * metadata to commit: measured on this VM's ext4, 112 us per fdatasync instead of 205
 * (bench/fsync_cost.c; docs/audit.md, Speed). Readers treat an all-zero remainder of a
 * segment as its end; the writer cuts it at rotation, shutdown and recovery. */
#define AUDIT_ZERO_AHEAD ((uint64_t)1 << 20)
/* Bytes written but not yet synced beyond which appends are refused (503), once the
 * current fdatasync has run for AUDIT_SYNC_STALL_NS: a disk that stopped answering must
 * not fill the page cache until writes start to block. */
#define AUDIT_MAX_UNSYNCED ((uint64_t)64 << 20)
#define AUDIT_SYNC_STALL_NS (2ull * 1000000000ull)

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

    /* mu guards everything from here to `thread`; appenders hold it while they frame
     * and write one record, the syncer while it takes a group and settles it (never
     * across an fdatasync). */
    pthread_mutex_t mu;
    pthread_cond_t cv; /* the syncer sleeps on it */
    int fd;            /* current segment, -1: the next write starts a new segment */
    struct audit_wstate cur, good;
    uint64_t zero_end; /* zeros are written ahead up to here in the current segment */
    int zero_failed;   /* writing zeros ahead failed in this segment: no more tries */
    int need_trunc;    /* a cut back failed: cut before the next write */
    /* a segment closed by a rotation whose tail the syncer has not synced yet: it is
     * synced and closed by the syncer; while it is pending, `good` may still lie in it
     * and no second rotation starts */
    int retired_fd;
    int dir_dirty; /* a segment was created since the directory was last synced */
    uint64_t written_bytes, synced_bytes; /* record bytes written, and covered by a sync */
    uint64_t sync_since; /* mono ns when the syncer's current sync began; 0: none */
    uint8_t *scratch;
    size_t scratch_cap;
    struct waiter *wait_head, *wait_tail; /* seq ascending */
    int sleeping;
    int stop;
    int probe_inflight;
    uint64_t last_fail_mono;
    uint64_t last_cp_mono;
    pthread_t thread;
    int thread_started;

    long fault_sync;   /* tests: the Nth fdatasync fails with EIO (0: never) */
    int fault_sync_on; /* ... and every one after it ("N+") */
    uint64_t fault_stall_n;   /* tests: the Nth fdatasync first stalls ... */
    unsigned fault_stall_ms;  /* ... this long (a disk that stops answering) */

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

/* pwritev all of iov at off; -1 with errno on failure (a short write included).
 * iov is consumed. */
static int pwrite_all(int fd, struct iovec *iov, int n, uint64_t off)
{
    while (n > 0) {
        ssize_t w = pwritev(fd, iov, n > IOV_MAX ? IOV_MAX : n, (off_t)off);
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

static int datasync_fd(struct audit *a, int fd)
{
    uint64_t n = atomic_fetch_add(&a->syncs, 1) + 1;

    if (a->fault_sync > 0 &&
        (n == (uint64_t)a->fault_sync || (a->fault_sync_on && n > (uint64_t)a->fault_sync))) {
        errno = EIO;
        return -1;
    }
    if (a->fault_stall_ms && n == a->fault_stall_n) {
        struct timespec ts = {(time_t)(a->fault_stall_ms / 1000),
                              (long)(a->fault_stall_ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
    }
    return fdatasync(fd);
}

/* cut_to -- the current segment ends at `off` again (a failed or undone write) */
static void cut_to(struct audit *a, uint64_t off)
{
    if (ftruncate(a->fd, (off_t)off) != 0) {
        a->need_trunc = 1;
        log_error("audit: cannot cut %08u.alog back to %llu bytes: %s", a->cur.segment,
                  (unsigned long long)off, strerror(errno));
    } else {
        a->need_trunc = 0;
    }
    if (a->zero_end > off)
        a->zero_end = off;
}

/* write_rec -- frame (header | body pieces | hash), chain and write one record at the
 * end of the current segment. On failure nothing is left of it: the file is cut back
 * and the chain is where it was. */
static int write_rec(struct audit *a, enum audit_rec_type type, uint16_t flags,
                     const uint8_t *hdr_in, struct iovec *body, int n_body, size_t body_len,
                     uint8_t ckpt_reason)
{
    uint8_t hdr[AUDIT_HDR_LEN], hash[AUDIT_HASH_LEN];
    struct iovec stackv[16], *iov = stackv;
    crypto_generichash_state st;
    int i, rc;

    if (a->fd < 0) {
        errno = EBADF;
        return -1;
    }
    if (body_len > AUDIT_MAX_BODY) {
        errno = EFBIG;
        return -1;
    }
    if (a->need_trunc) {
        /* a shorter record must not leave stale bytes of a failed one behind it */
        if (ftruncate(a->fd, (off_t)a->cur.off) != 0)
            return -1;
        a->need_trunc = 0;
        if (a->zero_end > a->cur.off)
            a->zero_end = a->cur.off;
    }
    if (hdr_in)
        memcpy(hdr, hdr_in, AUDIT_HDR_LEN);
    else
        audit_hdr_encode(hdr, type, flags, (uint32_t)body_len, a->cur.seq + 1, audit_now_ns(),
                         a->cur.hash);
    if (n_body + 2 > (int)(sizeof(stackv) / sizeof(stackv[0]))) {
        iov = malloc((size_t)(n_body + 2) * sizeof(*iov));
        if (!iov) {
            errno = ENOMEM;
            return -1;
        }
    }
    crypto_generichash_init(&st, NULL, 0, AUDIT_HASH_LEN);
    crypto_generichash_update(&st, hdr, AUDIT_HDR_LEN);
    iov[0].iov_base = hdr;
    iov[0].iov_len = AUDIT_HDR_LEN;
    for (i = 0; i < n_body; i++) {
        crypto_generichash_update(&st, body[i].iov_base, body[i].iov_len);
        iov[i + 1] = body[i];
    }
    crypto_generichash_final(&st, hash, AUDIT_HASH_LEN);
    iov[n_body + 1].iov_base = hash;
    iov[n_body + 1].iov_len = AUDIT_HASH_LEN;
    rc = pwrite_all(a->fd, iov, n_body + 2, a->cur.off);
    if (iov != stackv)
        free(iov);
    if (rc != 0) {
        int e = errno;
        cut_to(a, a->cur.off);
        errno = e;
        return -1;
    }
    a->written_bytes += AUDIT_REC_OVERHEAD + body_len;
    a->cur.seq++;
    memcpy(a->cur.hash, hash, 32);
    a->cur.last_type = type;
    a->cur.off += AUDIT_REC_OVERHEAD + body_len;
    if (type == AUDIT_REC_CHECKPOINT) {
        a->cur.since_cp = 0;
        a->cur.last_reason = ckpt_reason;
    } else {
        a->cur.since_cp++;
    }
    return 0;
}

/* emit -- write one record with a contiguous body (segment start, checkpoint, a
 * sealed record) */
static int emit(struct audit *a, enum audit_rec_type type, uint16_t flags, const uint8_t *hdr_in,
                const uint8_t *body, size_t body_len)
{
    struct iovec v = {(void *)body, body_len};

    return write_rec(a, type, flags, hdr_in, &v, 1, body_len,
                     type == AUDIT_REC_CHECKPOINT ? body[48] : 0);
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
    if (emit(a, AUDIT_REC_CHECKPOINT, 0, NULL, body, sizeof(body)) != 0)
        return -1;
    a->last_cp_mono = mono_ns();
    return 0;
}

/* A record as audit_append_ex lays it out: `pre` holds the meta length, the blob count
 * and the blob headers; the pieces point into it, at the caller's meta and at the
 * caller's blob bytes. */
struct rec_src {
    enum audit_rec_type type;
    const char *meta;
    size_t meta_len;
    const struct audit_blob *blobs;
    size_t n_blobs;
    size_t body_len;
};

/* write_sealed -- the record's body with every blob encrypted (XChaCha20-Poly1305
 * under the segment key; the record header and blob name are associated data). */
static int write_sealed(struct audit *a, const struct rec_src *s)
{
    uint8_t hdr[AUDIT_HDR_LEN];
    size_t extra = s->n_blobs * (AUDIT_NONCE_LEN + AUDIT_TAG_LEN), out_len, off, i;

    if (s->body_len > AUDIT_MAX_BODY - extra) {
        errno = EFBIG;
        return -1;
    }
    out_len = s->body_len + extra;
    if (ensure_scratch(a, out_len) != 0) {
        errno = ENOMEM;
        return -1;
    }
    audit_hdr_encode(hdr, s->type, AUDIT_FLAG_SEALED, (uint32_t)out_len, a->cur.seq + 1,
                     audit_now_ns(), a->cur.hash);
    audit_put32(a->scratch, (uint32_t)s->meta_len);
    memcpy(a->scratch + 4, s->meta, s->meta_len);
    off = 4 + s->meta_len;
    audit_put32(a->scratch + off, (uint32_t)s->n_blobs);
    off += 4;
    for (i = 0; i < s->n_blobs; i++) {
        const struct audit_blob *bl = &s->blobs[i];
        size_t nl = strlen(bl->name);
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
        crypto_aead_xchacha20poly1305_ietf_encrypt(a->scratch + off, &clen, bl->data, bl->len,
                                                   ad, AUDIT_HDR_LEN + 2 + nl, NULL, nonce,
                                                   a->seg_key);
        off += (size_t)clen;
    }
    return emit(a, s->type, AUDIT_FLAG_SEALED, hdr, a->scratch, off);
}

/* write_plain -- the record's body as pieces for one pwritev, nothing copied but the
 * few length and name headers */
static int write_plain(struct audit *a, const struct rec_src *s)
{
    struct iovec stackv[3 + 2 * 8], *v = stackv;
    uint8_t stackh[8 + 8 * 64], *h = stackh, *p;
    size_t hlen = 8, i;
    int n = 0, rc;

    for (i = 0; i < s->n_blobs; i++)
        hlen += 10 + strlen(s->blobs[i].name);
    if (s->n_blobs > 8 || hlen > sizeof(stackh)) {
        v = malloc((3 + 2 * s->n_blobs) * sizeof(*v));
        h = malloc(hlen);
        if (!v || !h) {
            if (v != stackv)
                free(v);
            if (h != stackh)
                free(h);
            errno = ENOMEM;
            return -1;
        }
    }
    p = h;
    audit_put32(p, (uint32_t)s->meta_len);
    v[n].iov_base = p;
    v[n++].iov_len = 4;
    p += 4;
    v[n].iov_base = (void *)s->meta;
    v[n++].iov_len = s->meta_len;
    audit_put32(p, (uint32_t)s->n_blobs);
    v[n].iov_base = p;
    v[n++].iov_len = 4;
    p += 4;
    for (i = 0; i < s->n_blobs; i++) {
        size_t nl = strlen(s->blobs[i].name);
        audit_put16(p, (uint16_t)nl);
        memcpy(p + 2, s->blobs[i].name, nl);
        audit_put64(p + 2 + nl, s->blobs[i].len);
        v[n].iov_base = p;
        v[n++].iov_len = 10 + nl;
        p += 10 + nl;
        if (s->blobs[i].len) {
            v[n].iov_base = (void *)s->blobs[i].data;
            v[n++].iov_len = s->blobs[i].len;
        }
    }
    rc = write_rec(a, s->type, 0, NULL, v, n, s->body_len, 0);
    if (v != stackv)
        free(v);
    if (h != stackh)
        free(h);
    return rc;
}

/* open_segment -- create segment `cur.segment + 1`, write its segment-start record and make it current. Nothing is synced here. On failure the
 * half-made file is removed, fd is -1 and cur is unchanged. */
static int open_segment(struct audit *a)
{
    uint8_t body[AUDIT_SEGSTART_LEN + AUDIT_SEGSTART_SEALED_EXTRA];
    size_t len = AUDIT_SEGSTART_LEN;
    struct audit_wstate saved = a->cur;
    char path[4096];
    uint32_t n = a->cur.segment + 1;
    int e;

    if (seg_path(a, n, path, sizeof(path)) != 0) {
        errno = ENAMETOOLONG;
        return -1;
    }
    /* A file with this number can only be a failed earlier attempt of ours: the
     * segments on disk were listed at open and `cur` is past all of them. */
    unlink(path);
    a->fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (a->fd < 0)
        return -1;
    a->need_trunc = 0;
    a->zero_end = 0;
    a->zero_failed = 0;
    a->cur.segment = n;
    a->cur.off = 0;
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
    if (emit(a, AUDIT_REC_SEGSTART, 0, NULL, body, len) != 0) {
        e = errno;
        close(a->fd);
        a->fd = -1;
        unlink(path);
        a->cur = saved;
        errno = e;
        return -1;
    }
    a->dir_dirty = 1;
    return 0;
}

/* rotate_inline -- close the current segment with a rotation checkpoint and start
 * the next; the old one's tail is left to the syncer (retired_fd). Without a syncer
 * (audit_open, audit_close) the caller syncs. */
static int rotate_inline(struct audit *a)
{
    struct audit_wstate saved = a->cur;
    int old = a->fd;

    /* the closing checkpoint is the segment's last byte: cut the zeros first */
    if (a->zero_end > a->cur.off) {
        cut_to(a, a->cur.off);
        if (a->need_trunc)
            return -1;
    }
    if (emit_checkpoint(a, AUDIT_CKPT_ROTATION) != 0)
        return -1;
    a->retired_fd = old;
    a->fd = -1;
    if (open_segment(a) != 0) {
        int e = errno;
        /* stay in the old segment, without the rotation checkpoint */
        a->fd = old;
        a->retired_fd = -1;
        a->cur = saved;
        cut_to(a, saved.off);
        errno = e;
        return -1;
    }
    if (a->sync == CONFIG_SYNC_NONE) {
        /* nothing to sync and no zeros to cut: done with it */
        close(old);
        a->retired_fd = -1;
    }
    return 0;
}

/* zero_ahead -- keep AUDIT_ZERO_AHEAD of written zeros past the last record */
static void zero_ahead(struct audit *a)
{
    static const uint8_t zeros[64 << 10];
    struct iovec v[AUDIT_ZERO_AHEAD / sizeof(zeros)];
    uint64_t from, to;
    int n = 0;

    if (a->fd < 0 || a->sync == CONFIG_SYNC_NONE || a->need_trunc || a->zero_failed ||
        a->cur.off + AUDIT_ZERO_AHEAD / 2 <= a->zero_end)
        return;
    from = a->zero_end > a->cur.off ? a->zero_end : a->cur.off;
    to = a->cur.off + AUDIT_ZERO_AHEAD;
    for (; from + n * sizeof(zeros) < to; n++) {
        v[n].iov_base = (void *)zeros;
        v[n].iov_len = sizeof(zeros);
    }
    if (pwrite_all(a->fd, v, n, from) != 0) {
        /* only a speed-up, and the records do not depend on it; on a full disk the
         * zeros would take the room records need: give it the room back, and stop
         * until the next segment */
        a->zero_failed = 1;
        cut_to(a, from);
        return;
    }
    a->zero_end = from + n * sizeof(zeros);
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

/* rollback -- a sync failed: undo everything after `good` (cut the file, and drop a
 * segment started since), rewind the chain. Returns the waiters, all now failed. */
static struct waiter *rollback(struct audit *a)
{
    struct waiter *w = a->wait_head;

    if (a->retired_fd >= 0) {
        /* good lies in the retired segment: the new one goes */
        char path[4096];
        if (a->fd >= 0)
            close(a->fd);
        if (seg_path(a, a->cur.segment, path, sizeof(path)) == 0)
            unlink(path);
        a->fd = a->retired_fd;
        a->retired_fd = -1;
    }
    a->cur = a->good;
    a->written_bytes = a->synced_bytes;
    if (a->fd >= 0)
        cut_to(a, a->good.off);
    a->zero_end = a->good.off;
    a->wait_head = a->wait_tail = NULL;
    return w;
}

static void complete_list(struct audit *a, struct waiter *w, int status)
{
    struct waiter *next;

    for (; w; w = next) {
        next = w->next;
        /* out of the queue before its owner hears of it, so a caller that waited for
         * every callback sees the depth it expects */
        atomic_fetch_sub(&a->depth, 1);
        if (w->done)
            w->done(w->ud, status);
        free(w);
    }
}

/* sync_group -- with mu held: make everything written so far durable (unlocking
 * across the fdatasync calls), then settle the waiters it covers. Returns with mu
 * held. */
static void sync_group(struct audit *a)
{
    struct audit_wstate target = a->cur;
    struct waiter *w = a->wait_head, *last = NULL, *done_list, *failed = NULL;
    int fd = a->fd, retired = a->retired_fd, dirty = a->dir_dirty, rc = 0, e = 0, probe = 0;
    uint64_t target_written = a->written_bytes;

    /* the waiters this sync covers: every one written so far */
    for (; w; w = w->next)
        last = w;
    done_list = a->wait_head;
    if (last) {
        a->wait_head = NULL;
        a->wait_tail = NULL;
    }
    a->dir_dirty = 0;
    a->sync_since = mono_ns();
    pthread_mutex_unlock(&a->mu);

    if (retired >= 0 && a->sync != CONFIG_SYNC_NONE)
        rc = datasync_fd(a, retired);
    if (rc == 0 && dirty && a->sync != CONFIG_SYNC_NONE)
        rc = fsync_dir(a->dir);
    if (rc == 0 && fd >= 0 && a->sync != CONFIG_SYNC_NONE)
        rc = datasync_fd(a, fd);
    if (rc != 0)
        e = errno ? errno : EIO;

    pthread_mutex_lock(&a->mu);
    a->sync_since = 0;
    for (w = done_list; w; w = w->next)
        probe |= w->probe;
    if (rc == 0) {
        a->good = target;
        if (retired >= 0) {
            close(retired);
            a->retired_fd = -1;
        }
        a->synced_bytes = target_written;
        if (probe) {
            /* a record appended while the log was failed is durable: it works again */
            set_healthy(a, 1, 0);
            a->probe_inflight = 0;
        }
        zero_ahead(a);
        pthread_mutex_unlock(&a->mu);
        complete_list(a, done_list, 0);
    } else {
        /* everything after good goes, records written during the sync included (and
         * a segment an appender started meanwhile: good is then in the retired one) */
        uint64_t lost = a->cur.seq - a->good.seq, good_seq = a->good.seq;
        /* a segment file created since may be removed now: the directory is synced
         * again with the next group (not at once: a failing disk must not spin us) */
        a->dir_dirty |= dirty || a->retired_fd >= 0;
        failed = rollback(a);
        set_healthy(a, 0, e);
        a->last_fail_mono = mono_ns();
        a->probe_inflight = 0;
        pthread_mutex_unlock(&a->mu);
        log_error("audit: fdatasync failed (%s): the %llu record(s) after seq %llu were cut "
                  "from the log; their requests fail or, if already answered, lost their record",
                  strerror(e), (unsigned long long)lost, (unsigned long long)good_seq);
        complete_list(a, done_list, -1);
        complete_list(a, failed, -1);
    }
    pthread_mutex_lock(&a->mu);
}

static void *syncer_main(void *arg)
{
    struct audit *a = arg;

    pthread_mutex_lock(&a->mu);
    for (;;) {
        /* something to make durable: waiters, a retired segment, or (batch, always)
         * records written since the last sync; a directory sync alone waits for them */
        int pending = a->wait_head || a->retired_fd >= 0 ||
                      (a->sync != CONFIG_SYNC_NONE && a->cur.seq != a->good.seq);
        uint64_t now;

        if (!pending && a->fd >= 0 && a->cur.since_cp > 0 &&
            (now = mono_ns()) >= a->last_cp_mono + a->ckpt_every_ns) {
            /* time-based checkpoint: signs what came since the last one */
            if (emit_checkpoint(a, AUDIT_CKPT_PERIODIC) != 0) {
                set_healthy(a, 0, errno);
                a->last_cp_mono = now; /* again at the next interval, not in a loop */
            }
            pending = 1;
        }
        if (pending) {
            sync_group(a);
            continue;
        }
        if (a->stop)
            break;
        a->sleeping = 1;
        if (a->fd >= 0 && a->cur.since_cp > 0) {
            uint64_t due = a->last_cp_mono + a->ckpt_every_ns;
            struct timespec ts;
            /* the condvar uses CLOCK_MONOTONIC (see audit_open) */
            ts.tv_sec = (time_t)(due / 1000000000ull);
            ts.tv_nsec = (long)(due % 1000000000ull);
            pthread_cond_timedwait(&a->cv, &a->mu, &ts);
        } else {
            pthread_cond_wait(&a->cv, &a->mu);
        }
        a->sleeping = 0;
    }
    pthread_mutex_unlock(&a->mu);
    return NULL;
}

/* settle_now -- without the syncer (open, close): make everything written durable
 * (per the sync mode) and close a retired segment. */
static int settle_now(struct audit *a)
{
    if (a->retired_fd >= 0) {
        if (a->sync != CONFIG_SYNC_NONE && datasync_fd(a, a->retired_fd) != 0)
            return -1;
        close(a->retired_fd);
        a->retired_fd = -1;
    }
    if (a->dir_dirty && a->sync != CONFIG_SYNC_NONE && fsync_dir(a->dir) != 0)
        return -1;
    a->dir_dirty = 0;
    if (a->fd >= 0 && a->sync != CONFIG_SYNC_NONE && datasync_fd(a, a->fd) != 0)
        return -1;
    a->good = a->cur;
    a->synced_bytes = a->written_bytes;
    return 0;
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
            if (audit_all_zero(m.data + off, m.len - off))
                break; /* zeros written ahead (see AUDIT_ZERO_AHEAD): the end */
            if (audit_rec_decode(m.data, m.len, off, &rec, &why) != AUDIT_DEC_OK)
                break;
            if (off == 0) {
                struct audit_segstart ss;
                if (rec.type != AUDIT_REC_SEGSTART ||
                    audit_segstart_parse(rec.body, rec.body_len, &ss, &why) != 0 ||
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
            st.last_reason = rec.type == AUDIT_REC_CHECKPOINT && rec.body_len == AUDIT_CKPT_LEN
                                 ? rec.body[48]
                                 : 0;
            st.since_cp = rec.type == AUDIT_REC_CHECKPOINT ? 0 : st.since_cp + 1;
            off += rec.total;
        }
        st.off = off;
        if (off < m.len && !audit_all_zero(m.data + off, m.len - off)) {
            /* the torn bytes, without the zeros written ahead after them */
            size_t blen = m.len - off;
            while (blen > 1 && m.data[off + blen - 1] == 0)
                blen--;
            if (audit_rec_find_valid(m.data, m.len, off + 1)) {
                snprintf(err, errlen,
                         "%s/%s is damaged at offset %zu (%s), and valid records follow: not a "
                         "torn tail; run `airlock audit verify %s` and move the damaged segment "
                         "aside",
                         a->dir, name, off, why ? why : "invalid record", a->dir);
                audit_map_close(&m);
                goto fail;
            }
            if (move_to_broken(a->dir, name, m.data + off, blen, broken, sizeof(broken)) != 0) {
                snprintf(err, errlen, "%s/%s: cannot save the torn tail: %s", a->dir, name,
                         strerror(errno));
                audit_map_close(&m);
                goto fail;
            }
            log_warn("audit: %s/%s had a torn tail at offset %zu (%zu bytes, %s): moved to %s",
                     a->dir, name, off, blen, why ? why : "incomplete", broken);
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
    a->retired_fd = -1;
    pthread_mutex_init(&a->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&a->cv, &ca);
    pthread_condattr_destroy(&ca);
    atomic_init(&a->depth, 0);
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
    env = getenv("AIRLOCK_AUDIT_FAULT_SYNC"); /* tests: the Nth fdatasync fails (EIO); N+: from it on */
    if (env && *env) {
        char *end;
        a->fault_sync = strtol(env, &end, 10);
        a->fault_sync_on = *end == '+';
    }
    env = getenv("AIRLOCK_AUDIT_FAULT_SYNC_STALL"); /* tests: "N:MS": the Nth fdatasync stalls MS ms */
    if (env && *env) {
        char *end;
        a->fault_stall_n = strtoull(env, &end, 10);
        a->fault_stall_ms = *end == ':' ? (unsigned)strtoul(end + 1, NULL, 10) : 0;
    }
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
    a->zero_end = a->cur.off; /* recovery cut the zeros */
    /* Start in a consistent place: a fresh segment when there is none, when the last
     * one ended at a rotation, when it is full, or when sealing (the segment key of an
     * old sealed segment is not recoverable here, by design). Otherwise sign what a
     * crash may have left unsigned. Synced here, whatever the sync mode. */
    if (a->fd < 0 ||
        (a->cur.last_type == AUDIT_REC_CHECKPOINT && a->cur.last_reason == AUDIT_CKPT_ROTATION)) {
        if (a->fd >= 0) {
            close(a->fd);
            a->fd = -1;
        }
        if (open_segment(a) != 0 || settle_now(a) != 0) {
            snprintf(err, errlen, "%s: cannot start a segment: %s", a->dir, strerror(errno));
            goto fail;
        }
    } else if (a->sealed || a->cur.off >= a->segment_bytes) {
        if (rotate_inline(a) != 0 || settle_now(a) != 0) {
            snprintf(err, errlen, "%s: cannot rotate: %s", a->dir, strerror(errno));
            goto fail;
        }
    } else if (a->cur.last_type != AUDIT_REC_CHECKPOINT) {
        if (emit_checkpoint(a, AUDIT_CKPT_STARTUP) != 0 || settle_now(a) != 0) {
            snprintf(err, errlen, "%s: cannot write a checkpoint: %s", a->dir, strerror(errno));
            goto fail;
        }
    }
    a->last_cp_mono = mono_ns();
    if (pthread_create(&a->thread, NULL, syncer_main, a) != 0) {
        snprintf(err, errlen, "audit: cannot start the syncer thread");
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
        /* the syncer settles everything written, then stops; appends are refused */
        pthread_mutex_lock(&a->mu);
        a->stop = 1;
        pthread_cond_signal(&a->cv);
        pthread_mutex_unlock(&a->mu);
        pthread_join(a->thread, NULL);
        /* the zeros go first, so the shutdown checkpoint is the last byte */
        if (a->fd >= 0 && a->zero_end > a->cur.off)
            cut_to(a, a->cur.off);
        if (a->fd >= 0 && a->cur.last_type != AUDIT_REC_CHECKPOINT && !a->need_trunc) {
            if (emit_checkpoint(a, AUDIT_CKPT_SHUTDOWN) != 0)
                log_error("audit: cannot write the shutdown checkpoint: %s", strerror(errno));
        }
        if (settle_now(a) != 0)
            log_error("audit: cannot sync the log at shutdown: %s", strerror(errno));
    }
    if (a->retired_fd >= 0)
        close(a->retired_fd);
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

int audit_append(struct audit *a, enum audit_rec_type type, const char *meta_json,
                 const struct audit_blob *blobs, size_t n_blobs, audit_done_fn done, void *ud)
{
    int rc = audit_append_ex(a, type, meta_json, strlen(meta_json), blobs, n_blobs, 0, done, ud);

    if (rc == 1 && done)
        done(ud, 0);
    return rc < 0 ? -1 : 0;
}

int audit_append_ex(struct audit *a, enum audit_rec_type type, const char *meta, size_t meta_len,
                    const struct audit_blob *blobs, size_t n_blobs, unsigned flags,
                    audit_done_fn done, void *ud)
{
    struct rec_src s;
    struct waiter *w = NULL;
    size_t i, est;
    int wait, probe = 0, rotated = 0, e;

    if (!audit_rec_type_is_event((int)type))
        return -1;
    s.type = type;
    if (n_blobs > AUDIT_MAX_BLOBS || meta_len > AUDIT_MAX_BODY)
        return -1;
    /* body = meta length, meta, blob count, then name length, name, length, bytes per blob */
    s.body_len = 8 + meta_len;
    for (i = 0; i < n_blobs; i++) {
        size_t nl = strlen(blobs[i].name);
        if (nl > 65535 || blobs[i].len > AUDIT_MAX_BODY || s.body_len > AUDIT_MAX_BODY)
            return -1;
        s.body_len += 10 + nl + blobs[i].len;
    }
    /* room for sealing overhead, so a record accepted here is never too big later */
    if (s.body_len + n_blobs * (AUDIT_NONCE_LEN + AUDIT_TAG_LEN) > AUDIT_MAX_BODY)
        return -1;
    s.meta = meta;
    s.meta_len = meta_len;
    s.blobs = blobs;
    s.n_blobs = n_blobs;
    wait = a->sync == CONFIG_SYNC_ALWAYS ||
           (a->sync == CONFIG_SYNC_BATCH && !(flags & AUDIT_WRITTEN));
    if (wait && !(w = malloc(sizeof(*w))))
        return -1;

    pthread_mutex_lock(&a->mu);
    if (a->stop)
        goto refuse;
    if (!atomic_load(&a->healthy)) {
        if (a->on_failure == CONFIG_ON_FAILURE_REFUSE) {
            /* Fail fast, but let one record through now and then to find out whether
             * the disk has recovered: nothing else would tell. */
            if (a->probe_inflight || mono_ns() < a->last_fail_mono + 1000000000ull)
                goto refuse;
            a->probe_inflight = 1;
        }
        probe = 1;
        if (a->sync != CONFIG_SYNC_NONE && !w) {
            wait = 1; /* health comes back with a durable record, not a written one */
            if (!(w = malloc(sizeof(*w))))
                goto fail;
        }
    }
    if (a->sync != CONFIG_SYNC_NONE && a->written_bytes - a->synced_bytes > AUDIT_MAX_UNSYNCED &&
        a->sync_since && mono_ns() - a->sync_since > AUDIT_SYNC_STALL_NS) {
        /* the disk stopped answering (one fdatasync for seconds, with much written behind
         * it): do not fill memory with records it may never take. (Much written alone
         * is only a large record, e.g. a 64 MiB answer, and its sync under way.) */
        errno = ETIMEDOUT;
        goto fail;
    }
    est = AUDIT_REC_OVERHEAD + s.body_len + 2 * (AUDIT_REC_OVERHEAD + AUDIT_CKPT_LEN);
    if (a->fd < 0) {
        if (open_segment(a) != 0)
            goto fail;
        rotated = 1;
    } else if (a->cur.off + est > a->segment_bytes && a->retired_fd < 0 &&
               a->cur.off > AUDIT_REC_OVERHEAD + AUDIT_SEGSTART_LEN + AUDIT_SEGSTART_SEALED_EXTRA) {
        /* (a segment holding only its start record is never rotated: no empty segments;
         * while the last rotation is not yet synced this segment runs over a little) */
        if (rotate_inline(a) != 0)
            goto fail;
        rotated = 1;
    }
    if ((a->sealed ? write_sealed(a, &s) : write_plain(a, &s)) != 0)
        goto fail;
    if (a->cur.since_cp >= AUDIT_CKPT_EVERY_RECORDS && emit_checkpoint(a, AUDIT_CKPT_PERIODIC) != 0)
        log_warn("audit: cannot write a checkpoint: %s (trying again with the next record)",
                 strerror(errno));
    if (a->sync == CONFIG_SYNC_NONE) {
        a->good = a->cur;
        if (probe) {
            set_healthy(a, 1, 0);
            a->probe_inflight = 0;
        }
    }
    if (a->sleeping && (a->sync != CONFIG_SYNC_NONE || rotated || a->cur.since_cp == 1))
        pthread_cond_signal(&a->cv);
    if (!wait) {
        pthread_mutex_unlock(&a->mu);
        return 1;
    }
    w->next = NULL;
    w->probe = probe;
    w->done = done;
    w->ud = ud;
    if (a->wait_tail)
        a->wait_tail->next = w;
    else
        a->wait_head = w;
    a->wait_tail = w;
    atomic_fetch_add(&a->depth, 1);
    pthread_mutex_unlock(&a->mu);
    return 0;
fail:
    e = errno ? errno : EIO;
    if (probe)
        a->probe_inflight = 0;
    set_healthy(a, 0, e);
    a->last_fail_mono = mono_ns();
refuse:
    pthread_mutex_unlock(&a->mu);
    free(w);
    return -1;
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
