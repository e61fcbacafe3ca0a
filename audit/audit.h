/* audit.h -- the byte-exact, write-ahead, tamper-evident record.
 *
 * An audit log is a directory of segment files written by one writer thread.
 * Records are framed, hash-chained (BLAKE2b) and periodically checkpointed with an
 * Ed25519 signature; payload blobs may be sealed to an auditor's X25519 key. The
 * on-disk format is specified in docs/audit.md.
 *
 * Threading: audit_append() may be called from any thread; it only queues. The
 * writer thread writes, fsyncs (per config_sync) and then calls each record's
 * completion callback ON THE WRITER THREAD, in append order (records flagged
 * AUDIT_WRITTEN may be reported ahead of earlier ones in their group). Callers that live on
 * an event loop must hand the result back to their loop themselves.
 * audit knows nothing of HTTP.
 * Errors: 0 / -1 (with a message in `err` where one is taken). */
#ifndef AIRLOCK_AUDIT_H
#define AIRLOCK_AUDIT_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "config/config.h"

struct audit;

/* One payload: the bytes exactly as they were. Names used by the gateway:
 * "inbound" (request body as received), "outbound" (as sent upstream),
 * "upstream" (answer as received, SSE framing included), "client" (answer as sent). */
struct audit_blob {
    const char *name;
    const void *data;
    size_t len;
};

/* status: 0 durable (per the sync mode; see AUDIT_WRITTEN), -1 the record could not
 * be written. */
typedef void (*audit_done_fn)(void *ud, int status);

/* audit_open -- open (create) the log in cfg->dir, recover a torn tail (moved to a
 * `.broken` file and logged with common/log.h), load or create the signing key, and
 * start the writer thread. */
int audit_open(const struct config_audit *cfg, struct audit **out, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* audit_close -- drain the queue, write a final checkpoint, join the writer, free. */
void audit_close(struct audit *a);

/* audit_append -- queue one record. `type` is "request" or "response"; meta_json
 * is a JSON object (copied) with the metadata fields listed in docs/audit.md;
 * blobs are copied. `done` (may be NULL) is called once, on the writer thread.
 * Returns -1 without calling `done` if the log is failed and on_failure is refuse,
 * or on allocation failure. */
int audit_append(struct audit *a, const char *type, const char *meta_json,
                 const struct audit_blob *blobs, size_t n_blobs, audit_done_fn done, void *ud)
    __attribute__((warn_unused_result));

/* audit_append_ex -- audit_append with the meta's length given and these flags:
 *   AUDIT_BORROW   the blobs' bytes are not copied: they must stay valid and unchanged
 *                  until `done` has been called (or audit_append_ex returned -1). The
 *                  meta and the blob names are always copied.
 *   AUDIT_WRITTEN  with sync: batch, call `done` as soon as the record is written to
 *                  the segment file, before the fdatasync that makes it durable: a
 *                  process crash can no longer lose it, a power loss still can. With
 *                  always it changes nothing; with none every record is reported
 *                  once written anyway. */
#define AUDIT_BORROW 0x1u
#define AUDIT_WRITTEN 0x2u
/*   AUDIT_NOWAKE   queue only; the caller calls audit_wake() soon (an event loop
 *                  appending many records per iteration wakes the writer once). */
#define AUDIT_NOWAKE 0x4u
int audit_append_ex(struct audit *a, const char *type, const char *meta, size_t meta_len,
                    const struct audit_blob *blobs, size_t n_blobs, unsigned flags,
                    audit_done_fn done, void *ud) __attribute__((warn_unused_result));

/* audit_wake -- wake the writer for records queued with AUDIT_NOWAKE (cheap when it
 * is already awake). */
void audit_wake(struct audit *a);

/* audit_healthy -- 1 while writes succeed, 0 after a write/fsync failure (until
 * one succeeds again). */
int audit_healthy(struct audit *a);
size_t audit_queue_depth(struct audit *a);
/* audit_syncs -- fdatasync calls so far (for metrics: records / syncs is the group
 * commit factor). */
uint64_t audit_syncs(struct audit *a);

/* audit_spend_scan -- replay the log in `dir` and call fn for every response
 * record at or after `since` with its key name, team (NULL when none) and cost in
 * USD. Used to rebuild daily budgets at start-up. */
int audit_spend_scan(const char *dir, time_t since,
                     void (*fn)(void *ud, const char *key, const char *team, double usd),
                     void *ud);

/* ---- reading the log (audit verify / show / cost; reader.c, verify.c, show.c, cost.c) ---- */

enum audit_verdict { AUDIT_INTACT = 0, AUDIT_TAMPERED = 1, AUDIT_TRUNCATED = 2 };

/* What a walk over the log found. On TAMPERED/TRUNCATED, where_* name the first bad
 * record (segment file, byte offset in it, the sequence number expected there) and
 * message says what is wrong. */
struct audit_report {
    int verdict;                  /* enum audit_verdict */
    uint64_t records, segments, checkpoints;
    uint64_t last_checkpoint_seq; /* the seq the last checkpoint signs */
    int have_checkpoint;
    int unsigned_tail;            /* TRUNCATED only because the last records are not yet
                                     signed (a live or crashed writer, or a clean cut) */
    size_t broken_files;          /* `.broken` files crash recovery set aside */
    uint64_t undecryptable;       /* audit_show: sealed payloads the key could not open */
    char where_segment[32];
    uint64_t where_offset, where_seq;
    char message[256];
};

/* audit_verify -- check framing, chain, segment continuity and every checkpoint
 * signature against the Ed25519 public key in pubkey_path (a PREFIX.sign.pub file;
 * NULL: DIR/audit.sign.pub). Returns -1 (err) only when dir or the key is unusable;
 * otherwise 0 with the verdict in *rep. */
int audit_verify(const char *dir, const char *pubkey_path, struct audit_report *rep, char *err,
                 size_t errlen) __attribute__((warn_unused_result));

/* audit_show -- call `line` with one JSON object (NUL-terminated, no newline) per
 * record, in log order; with `id`, only request/response records whose meta.id
 * equals it. seal_key_path (PREFIX.seal.key, may be NULL) decrypts sealed payloads.
 * Framing and chain are checked as records are read (signatures are not: that is
 * audit_verify's job); *rep says whether the walk met damage. Returns -1 (err) when
 * dir or the key file is unusable. The representation is documented in docs/audit.md. */
int audit_show(const char *dir, const char *id, const char *seal_key_path,
               void (*line)(void *ud, const char *json), void *ud, struct audit_report *rep,
               char *err, size_t errlen) __attribute__((warn_unused_result));

enum audit_cost_by { AUDIT_COST_BY_KEY, AUDIT_COST_BY_TEAM, AUDIT_COST_BY_PROVIDER,
                     AUDIT_COST_BY_MODEL };

struct audit_cost_row {
    char *group;                  /* owned; "-" when the record has none */
    uint64_t requests, input_tokens, output_tokens, cached_tokens;
    double usd;
};

/* audit_cost_report -- sum the response records at or after `since` (header time)
 * by the chosen field, sorted by USD descending then group. *rows is malloc'd (free
 * with audit_cost_rows_free). *rep as for audit_show. -1 (err) when dir is unusable. */
int audit_cost_report(const char *dir, enum audit_cost_by by, time_t since,
                      struct audit_cost_row **rows, size_t *n_rows, struct audit_report *rep,
                      char *err, size_t errlen) __attribute__((warn_unused_result));
void audit_cost_rows_free(struct audit_cost_row *rows, size_t n);

/* audit_keygen -- write PREFIX.sign.{key,pub} (Ed25519) and PREFIX.seal.{key,pub}
 * (X25519); secret keys mode 0600. Refuses (-1) if any of the four exists. */
int audit_keygen(const char *prefix, char *err, size_t errlen)
    __attribute__((warn_unused_result));

#endif
