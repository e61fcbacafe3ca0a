/* reader.c -- segment files and the log walker that every reader shares: framing,
 * chain, segment continuity, checkpoint signatures, first-bad-record reporting. */
#include "audit/audit_int.h"
#include "common/grow.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

void audit_seg_name(char *buf, size_t cap, uint32_t segment)
{
    snprintf(buf, cap, "%08u.alog", segment);
}

static int cmp_u32(const void *x, const void *y)
{
    uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;
    return a < b ? -1 : a > b;
}

int audit_seg_list(const char *dir, uint32_t **nums, size_t *n, size_t *n_broken, char *err,
                   size_t errlen)
{
    DIR *d;
    struct dirent *de;
    uint32_t *v = NULL, *nv;
    size_t cnt = 0, cap = 0;

    *nums = NULL;
    *n = 0;
    *n_broken = 0;
    d = opendir(dir);
    if (!d) {
        snprintf(err, errlen, "%s: %s", dir, strerror(errno));
        return -1;
    }
    while ((de = readdir(d)) != NULL) {
        const char *s = de->d_name;
        int i, digits = 1;

        if (strstr(s, ".alog.broken"))
            (*n_broken)++;
        if (strlen(s) != 13 || strcmp(s + 8, ".alog") != 0)
            continue;
        for (i = 0; i < 8; i++)
            if (s[i] < '0' || s[i] > '9')
                digits = 0;
        if (!digits)
            continue;
        nv = grow_room(v, &cap, cnt + 1, sizeof(*v), 16);
        if (!nv) {
            free(v);
            closedir(d);
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        v = nv;
        v[cnt++] = (uint32_t)strtoul(s, NULL, 10);
    }
    closedir(d);
    if (cnt)
        qsort(v, cnt, sizeof(*v), cmp_u32);
    *nums = v;
    *n = cnt;
    return 0;
}

int audit_map_open(const char *path, struct audit_map *m, char *err, size_t errlen)
{
    struct stat st;
    int fd;

    m->data = NULL;
    m->len = 0;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    if (st.st_size > 0) {
        m->data = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m->data == MAP_FAILED) {
            m->data = NULL;
            snprintf(err, errlen, "%s: %s", path, strerror(errno));
            close(fd);
            return -1;
        }
        m->len = (size_t)st.st_size;
        madvise(m->data, m->len, MADV_SEQUENTIAL);
    }
    close(fd);
    return 0;
}

void audit_map_close(struct audit_map *m)
{
    if (m->data)
        munmap(m->data, m->len);
    m->data = NULL;
    m->len = 0;
}

/* Chain state carried across segments. */
struct walk {
    const uint8_t *sign_pub;
    audit_walk_fn fn;
    void *ud;
    struct audit_report *rep;
    uint64_t next_seq;
    uint8_t prev_hash[32];
    int adopt;          /* take the chain origin from the first record (fuzzing one file) */
    int stopped;
    enum audit_rec_type last_type; /* 0 before the first record */
    uint8_t last_reason;
    uint64_t since_cp;
    uint32_t last_segment;
    uint64_t seg_end; /* where the last segment walked ends: its length, or its zeros */
};

static int bad(struct walk *w, int verdict, const char *seg, uint64_t off, uint64_t seq,
               const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static int bad(struct walk *w, int verdict, const char *seg, uint64_t off, uint64_t seq,
               const char *fmt, ...)
{
    va_list ap;

    w->rep->verdict = verdict;
    snprintf(w->rep->where_segment, sizeof(w->rep->where_segment), "%s", seg);
    w->rep->where_offset = off;
    w->rep->where_seq = seq;
    va_start(ap, fmt);
    vsnprintf(w->rep->message, sizeof(w->rep->message), fmt, ap);
    va_end(ap);
    return -1;
}

/* walk_segment -- returns 0 to go on, -1 when the walk is over (damage or stop). */
static int walk_segment(struct walk *w, const uint8_t *buf, size_t len, uint32_t segno,
                        const char *segname, int is_last)
{
    struct audit_segstart ss;
    struct audit_walk_ctx ctx;
    size_t off = 0;
    int have_ss = 0;

    memset(&ss, 0, sizeof(ss));
    if (len == 0)
        return bad(w, is_last ? AUDIT_TRUNCATED : AUDIT_TAMPERED, segname, 0, w->next_seq,
                   "segment file is empty");
    while (off < len) {
        struct audit_rec rec;
        const char *why = NULL;
        int st;

        /* zeros the writer wrote ahead: the segment ends here (a live or crashed
         * writer). A segment closed by its rotation or shutdown checkpoint has none:
         * the writer cuts them before it writes that checkpoint. */
        if (off > 0 && audit_all_zero(buf + off, len - off)) {
            if (w->last_type == AUDIT_REC_CHECKPOINT &&
                (w->last_reason == AUDIT_CKPT_ROTATION || w->last_reason == AUDIT_CKPT_SHUTDOWN))
                return bad(w, AUDIT_TAMPERED, segname, off, w->next_seq,
                           "%zu bytes after the segment's closing checkpoint", len - off);
            len = off;
            break;
        }
        st = audit_rec_decode(buf, len, off, &rec, &why);

        if (st == AUDIT_DEC_TORN) {
            if (is_last && !audit_rec_find_valid(buf, len, off + 1))
                return bad(w, AUDIT_TRUNCATED, segname, off, w->next_seq,
                           "torn record at the end of the log (%s; %zu bytes): a crash or a cut "
                           "mid-record",
                           why, len - off);
            return bad(w, AUDIT_TAMPERED, segname, off, w->next_seq, "%s", why);
        }
        if (st == AUDIT_DEC_BAD)
            return bad(w, AUDIT_TAMPERED, segname, off, w->next_seq, "%s", why);
        if (w->adopt) {
            w->next_seq = rec.seq;
            memcpy(w->prev_hash, rec.prev_hash, 32);
            w->adopt = 0;
        }
        if (rec.seq != w->next_seq)
            return bad(w, AUDIT_TAMPERED, segname, off, w->next_seq,
                       "sequence number %llu where %llu was expected (a record removed, inserted "
                       "or reordered)",
                       (unsigned long long)rec.seq, (unsigned long long)w->next_seq);
        if (sodium_memcmp(rec.prev_hash, w->prev_hash, 32) != 0)
            return bad(w, AUDIT_TAMPERED, segname, off, w->next_seq,
                       "chain broken: the previous-record hash does not match the record before "
                       "(a record removed, inserted, reordered or rewritten)");
        if (off == 0) {
            if (rec.type != AUDIT_REC_SEGSTART)
                return bad(w, AUDIT_TAMPERED, segname, off, rec.seq,
                           "segment does not begin with a segment-start record");
            if (audit_segstart_parse(rec.body, rec.body_len, &ss, &why) != 0)
                return bad(w, AUDIT_TAMPERED, segname, off, rec.seq, "%s", why);
            if (segno == 0)
                segno = ss.segment;
            if (ss.segment != segno)
                return bad(w, AUDIT_TAMPERED, segname, off, rec.seq,
                           "segment-start names segment %u in file %s (segment renamed or "
                           "replaced)",
                           ss.segment, segname);
            if (ss.prev_seq != rec.seq - 1 || sodium_memcmp(ss.prev_hash, rec.prev_hash, 32) != 0)
                return bad(w, AUDIT_TAMPERED, segname, off, rec.seq,
                           "segment-start does not name the previous segment's last record");
            if (rec.flags != 0)
                return bad(w, AUDIT_TAMPERED, segname, off, rec.seq, "unexpected record flags");
            have_ss = 1;
        } else if (rec.type == AUDIT_REC_SEGSTART) {
            return bad(w, AUDIT_TAMPERED, segname, off, rec.seq,
                       "segment-start record in the middle of a segment");
        } else if (rec.type == AUDIT_REC_CHECKPOINT) {
            struct audit_ckpt ck;
            uint8_t msg[AUDIT_CKPT_MSG_LEN];

            if (rec.flags != 0)
                return bad(w, AUDIT_TAMPERED, segname, off, rec.seq, "unexpected record flags");
            if (audit_ckpt_parse(rec.body, rec.body_len, &ck, &why) != 0)
                return bad(w, AUDIT_TAMPERED, segname, off, rec.seq, "%s", why);
            if (ck.seq != rec.seq - 1 || sodium_memcmp(ck.hash, rec.prev_hash, 32) != 0)
                return bad(w, AUDIT_TAMPERED, segname, off, rec.seq,
                           "checkpoint does not sign the record before it");
            audit_ckpt_message(msg, ck.seq, ck.hash, ck.time_ns, ck.reason);
            if (w->sign_pub &&
                crypto_sign_verify_detached(ck.sig, msg, sizeof(msg), w->sign_pub) != 0)
                return bad(w, AUDIT_TAMPERED, segname, off, rec.seq,
                           "checkpoint signature does not verify with the given public key");
            w->rep->checkpoints++;
            w->rep->last_checkpoint_seq = ck.seq;
            w->rep->have_checkpoint = 1;
            w->last_reason = ck.reason;
        } else { /* an event record: the decoder refused types not in AUDIT_REC_TYPES */
            struct audit_body b;
            uint32_t i;

            if (audit_body_parse(rec.body, rec.body_len, &b, &why) != 0)
                return bad(w, AUDIT_TAMPERED, segname, off, rec.seq, "%s", why);
            if (rec.flags & ~AUDIT_FLAG_SEALED)
                return bad(w, AUDIT_TAMPERED, segname, off, rec.seq, "unexpected record flags");
            if (rec.flags & AUDIT_FLAG_SEALED) {
                if (!ss.sealed_key)
                    return bad(w, AUDIT_TAMPERED, segname, off, rec.seq,
                               "sealed record in a segment without a sealed key");
                for (i = 0; i < b.n_blobs; i++)
                    if (b.blobs[i].len < AUDIT_NONCE_LEN + AUDIT_TAG_LEN)
                        return bad(w, AUDIT_TAMPERED, segname, off, rec.seq,
                                   "sealed payload too short");
            }
        }
        (void)have_ss;
        w->rep->records++;
        w->last_type = rec.type;
        w->since_cp = rec.type == AUDIT_REC_CHECKPOINT ? 0 : w->since_cp + 1;
        w->next_seq = rec.seq + 1;
        memcpy(w->prev_hash, rec.hash, 32);
        w->last_segment = segno;
        if (w->fn) {
            ctx.segment_name = segname;
            ctx.segment = segno;
            ctx.offset = off;
            ctx.segstart = &ss;
            if (w->fn(w->ud, &rec, &ctx) != 0) {
                w->stopped = 1;
                return -1;
            }
        }
        off += rec.total;
    }
    w->seg_end = len;
    return 0;
}

/* finish -- what the end of the log says: a log that stops after unsigned records,
 * or at a rotation checkpoint (the next segment is gone), lost its tail. */
static void finish(struct walk *w, const char *segname, uint64_t end_off)
{
    char next[32];

    if (w->rep->records == 0) {
        bad(w, AUDIT_TRUNCATED, segname, 0, w->next_seq, "the log holds no records");
    } else if (w->last_type != AUDIT_REC_CHECKPOINT) {
        w->rep->unsigned_tail = 1;
        if (w->rep->have_checkpoint)
            bad(w, AUDIT_TRUNCATED, segname, end_off, w->next_seq,
                "the log ends %llu records after its last checkpoint (seq %llu): that tail is "
                "unsigned (cut, a crash, or a writer still running)",
                (unsigned long long)w->since_cp, (unsigned long long)w->rep->last_checkpoint_seq);
        else
            bad(w, AUDIT_TRUNCATED, segname, end_off, w->next_seq,
                "the log has no checkpoint: its %llu records are unsigned",
                (unsigned long long)w->since_cp);
    } else if (w->last_reason == AUDIT_CKPT_ROTATION) {
        audit_seg_name(next, sizeof(next), w->last_segment + 1);
        bad(w, AUDIT_TRUNCATED, next, 0, w->next_seq,
            "the log ends at a rotation checkpoint: segment %s is missing", next);
    }
}

int audit_walk_buf(const uint8_t *buf, size_t len, const uint8_t *sign_pub,
                   struct audit_report *rep)
{
    struct walk w;

    memset(rep, 0, sizeof(*rep));
    memset(&w, 0, sizeof(w));
    w.sign_pub = sign_pub;
    w.rep = rep;
    w.adopt = 1;
    rep->segments = 1;
    if (walk_segment(&w, buf, len, 0, "<buffer>", 1) == 0)
        finish(&w, "<buffer>", w.seg_end);
    return 0;
}

int audit_walk_dir(const char *dir, const uint8_t *sign_pub, audit_walk_fn fn, void *ud,
                   struct audit_report *rep, char *err, size_t errlen)
{
    return audit_walk_dir_since(dir, 0, sign_pub, fn, ud, rep, err, errlen);
}

int audit_walk_dir_since(const char *dir, time_t since, const uint8_t *sign_pub, audit_walk_fn fn,
                         void *ud, struct audit_report *rep, char *err, size_t errlen)
{
    uint32_t *nums = NULL;
    size_t n = 0, i, first = 0;
    struct walk w;
    char name[32] = "", path[4096];
    uint64_t end_off = 0;
    int rc = -1;

    memset(rep, 0, sizeof(*rep));
    memset(&w, 0, sizeof(w));
    w.sign_pub = sign_pub;
    w.fn = fn;
    w.ud = ud;
    w.rep = rep;
    w.next_seq = 1;
    if (sodium_init() < 0) {
        snprintf(err, errlen, "libsodium failed to initialise");
        return -1;
    }
    if (audit_seg_list(dir, &nums, &n, &rep->broken_files, err, errlen) != 0)
        return -1;
    if (n == 0) {
        bad(&w, AUDIT_TRUNCATED, "", 0, 1, "no segment files (NNNNNNNN.alog) in %s", dir);
        rc = 0;
        goto out;
    }
    if (since > 0) {
        /* A segment last modified before `since` holds no record written after it
         * (a record's time is taken before it is written). */
        while (first + 1 < n) {
            struct stat st;
            audit_seg_name(name, sizeof(name), nums[first]);
            if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path) ||
                stat(path, &st) != 0 || st.st_mtime >= since)
                break;
            first++;
        }
        if (first > 0)
            w.adopt = 1;
    }
    for (i = first; i < n; i++) {
        struct audit_map m;
        int r;
        uint32_t want = first > 0 ? nums[first] + (uint32_t)(i - first) : (uint32_t)(i + 1);

        audit_seg_name(name, sizeof(name), nums[i]);
        if (nums[i] != want) {
            char missing[32];
            audit_seg_name(missing, sizeof(missing), want);
            bad(&w, AUDIT_TAMPERED, missing, 0, w.next_seq, "segment %s is missing", missing);
            rc = 0;
            goto out;
        }
        if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path)) {
            snprintf(err, errlen, "%s: path too long", dir);
            goto out;
        }
        if (audit_map_open(path, &m, err, errlen) != 0)
            goto out;
        rep->segments++;
        r = walk_segment(&w, m.data, m.len, nums[i], name, i + 1 == n);
        end_off = w.seg_end;
        audit_map_close(&m);
        if (r != 0) {
            if (w.stopped)
                rep->verdict = AUDIT_INTACT;
            rc = 0;
            goto out;
        }
    }
    finish(&w, name, end_off);
    rc = 0;
out:
    free(nums);
    return rc;
}
