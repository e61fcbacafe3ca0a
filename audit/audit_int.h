/* audit_int.h -- pieces shared inside audit/: key files, segment files, the log walker. */
#ifndef AIRLOCK_AUDIT_INT_H
#define AIRLOCK_AUDIT_INT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "audit/audit.h"
#include "audit/format_int.h"

#define AUDIT_LABEL_SIGN_KEY "airlock-sign-key"
#define AUDIT_LABEL_SIGN_PUB "airlock-sign-pub"
#define AUDIT_LABEL_SEAL_KEY "airlock-seal-key"
#define AUDIT_LABEL_SEAL_PUB "airlock-seal-pub"

#define AUDIT_DEFAULT_SEGMENT_BYTES ((size_t)64 << 20)
#define AUDIT_CKPT_EVERY_RECORDS 1000
#define AUDIT_CKPT_EVERY_NS (10ull * 1000000000ull)

/* audit_key_read -- read a `LABEL HEX` key file of exactly n bytes into out. */
int audit_key_read(const char *path, const char *label, uint8_t *out, size_t n, char *err,
                   size_t errlen);
/* audit_key_write -- create (never overwrite) a key file with `mode`. */
int audit_key_write(const char *path, const char *label, const uint8_t *key, size_t n,
                    mode_t mode, char *err, size_t errlen);

/* audit_seg_list -- the segment numbers in dir (files named exactly NNNNNNNN.alog),
 * sorted ascending, malloc'd into *nums (caller frees). *n_broken counts `.broken`
 * files crash recovery set aside. -1 if dir cannot be read. */
int audit_seg_list(const char *dir, uint32_t **nums, size_t *n, size_t *n_broken, char *err,
                   size_t errlen);
void audit_seg_name(char *buf, size_t cap, uint32_t segment); /* "NNNNNNNN.alog" */

/* A segment file mapped read-only (data NULL when empty). */
struct audit_map {
    uint8_t *data;
    size_t len;
};
int audit_map_open(const char *path, struct audit_map *m, char *err, size_t errlen);
void audit_map_close(struct audit_map *m);

/* The walker: iterates a log across segments checking framing, the chain, segment
 * continuity and (when sign_pub is given) checkpoint signatures. It stops at the
 * first problem and describes it. */
struct audit_walk_ctx {
    const char *segment_name; /* of the record being visited */
    uint32_t segment;
    uint64_t offset;
    const struct audit_segstart *segstart; /* of the current segment */
};

/* Called for every record that passed the checks. Return non-zero to stop (the
 * walk then reports OK so far). */
typedef int (*audit_walk_fn)(void *ud, const struct audit_rec *rec,
                             const struct audit_walk_ctx *ctx);

/* audit_walk_buf -- walk one segment held in memory as if it were the whole log
 * (segment number taken from its own segment-start record): the fuzz entry point. */
int audit_walk_buf(const uint8_t *buf, size_t len, const uint8_t *sign_pub,
                   struct audit_report *rep);
/* audit_walk_dir -- walk the log in dir. -1 (err) only when dir is unusable. */
int audit_walk_dir(const char *dir, const uint8_t *sign_pub, audit_walk_fn fn, void *ud,
                   struct audit_report *rep, char *err, size_t errlen);

/* audit_walk_dir_since -- the same, but segments last modified before `since` are
 * skipped and the chain is taken up where the walk starts: for replaying recent
 * records (budgets) without hashing the whole history. */
int audit_walk_dir_since(const char *dir, time_t since, const uint8_t *sign_pub,
                         audit_walk_fn fn, void *ud, struct audit_report *rep, char *err,
                         size_t errlen);

uint64_t audit_now_ns(void); /* CLOCK_REALTIME in ns */

#endif
