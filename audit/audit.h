/* audit.h -- the byte-exact, write-ahead, tamper-evident record.
 *
 * An audit log is a directory of segment files. Records are framed, hash-chained
 * (BLAKE2b) and periodically checkpointed with an Ed25519 signature; payload blobs may
 * be sealed to an auditor's X25519 key. The on-disk format is specified in
 * docs/audit.md.
 *
 * Threading: audit_append*() may be called from any thread. The appending thread
 * frames, chains and writes its record itself (a pwritev into the page cache, under the
 * log's lock; never an fsync). Durability is the syncer thread's: one fdatasync covers
 * every record written before it started (group commit), then it calls the callbacks
 * of the records that waited for it, ON THE SYNCER THREAD, in append order. Callers
 * that live on an event loop must hand such a result back to their loop themselves.
 * audit knows nothing of HTTP.
 * Errors: 0 / -1 (with a message in `err` where one is taken). */
#ifndef AIRLOCK_AUDIT_H
#define AIRLOCK_AUDIT_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "config/config.h"

struct audit;

/* Record types, in one table: the value is the type byte of every record's header (on
 * disk: never renumbered, never reused) and the name is what `audit show` prints as
 * "type". EVENT types are the ones audit_append writes (a meta + blobs body, the ones
 * `audit show --id` matches); the others are the log's own framing, written by the
 * writer alone. Adding a type is one line here; reader, show and cost take it from
 * this table. */
#define AUDIT_REC_TYPES(X)                                                                         \
    X(AUDIT_REC_SEGSTART, 1, "segment-start", 0)                                                   \
    X(AUDIT_REC_REQUEST, 2, "request", 1)                                                          \
    X(AUDIT_REC_RESPONSE, 3, "response", 1)                                                        \
    X(AUDIT_REC_CHECKPOINT, 4, "checkpoint", 0)                                                    \
    X(AUDIT_REC_CONNECT, 5, "connect", 1)

enum audit_rec_type {
#define AUDIT_REC_ENUM_(sym, value, name, event) sym = value,
    AUDIT_REC_TYPES(AUDIT_REC_ENUM_)
#undef AUDIT_REC_ENUM_
};

/* audit_rec_type_name -- "request", "checkpoint", ...; NULL for a value that is no
 * record type (any int is accepted: the decoder asks about bytes from the file). */
const char *audit_rec_type_name(int type);
/* audit_rec_type_is_event -- 1 for a type audit_append takes, 0 otherwise */
int audit_rec_type_is_event(int type);

/* One payload: the bytes exactly as they were. Names used by the gateway:
 * "inbound" (request body as received), "outbound" (as sent upstream),
 * "upstream" (answer as received, SSE framing included), "client" (answer as sent). */
struct audit_blob {
    const char *name;
    const void *data;
    size_t len;
};

/* status: 0 durable (per the sync mode; see AUDIT_WRITTEN), -1 the record could not
 * be made durable (it was cut from the log again). */
typedef void (*audit_done_fn)(void *ud, int status);

/* audit_open -- open (create) the log in cfg->dir, recover a torn tail (moved to a
 * `.broken` file and logged with common/log.h), load or create the signing key, and
 * start the writer thread. */
int audit_open(const struct config_audit *cfg, struct audit **out, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* audit_close -- settle every record written, write a final checkpoint, stop the
 * syncer, free. */
void audit_close(struct audit *a);

/* audit_append -- write one record. `type` is an event type (AUDIT_REC_REQUEST,
 * AUDIT_REC_RESPONSE; any other is refused with -1); meta_json is a JSON object with
 * the metadata fields listed in docs/audit.md. Nothing is kept of meta or blobs after
 * the call returns. `done` (may be NULL) is called once, when the record is durable
 * per the sync mode: at once on this thread with sync: none, later on the syncer
 * thread otherwise. Returns -1 without calling `done` when the record was not written
 * (the log is failed and on_failure is refuse, the write failed, memory ran out). */
int audit_append(struct audit *a, enum audit_rec_type type, const char *meta_json,
                 const struct audit_blob *blobs, size_t n_blobs, audit_done_fn done, void *ud)
    __attribute__((warn_unused_result));

/* audit_append_ex -- audit_append with the meta's length given, a flag, and a
 * result that saves a hand-off:
 *    1  the record is complete now (written, which is all sync: none or AUDIT_WRITTEN
 *       asks for); `done` will NOT be called.
 *    0  the record is written and waits for the syncer; `done` will be called.
 *   -1  not written (as for audit_append); `done` will not be called.
 *   AUDIT_WRITTEN  with sync: batch the record is complete once written to the segment
 *                  file, before the fdatasync that makes it durable: a process crash
 *                  can no longer lose it, a power loss still can. With always it
 *                  changes nothing. While the log is failed every record waits for a
 *                  sync, which is how the log finds out that it works again. */
#define AUDIT_WRITTEN 0x2u
int audit_append_ex(struct audit *a, enum audit_rec_type type, const char *meta, size_t meta_len,
                    const struct audit_blob *blobs, size_t n_blobs, unsigned flags,
                    audit_done_fn done, void *ud) __attribute__((warn_unused_result));

/* audit_healthy -- 1 while writes succeed, 0 after a write/fsync failure (until
 * one succeeds again). */
int audit_healthy(struct audit *a);
/* audit_queue_depth -- records written and waiting for their fdatasync */
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
 * record, in log order; with `id`, only event records (request, response, connect)
 * whose meta.id equals it. seal_key_path (PREFIX.seal.key, may be NULL) decrypts sealed payloads.
 * Framing and chain are checked as records are read (signatures are not: that is
 * audit_verify's job); *rep says whether the walk met damage. Returns -1 (err) when
 * dir or the key file is unusable. The representation is documented in docs/audit.md. */
int audit_show(const char *dir, const char *id, const char *seal_key_path,
               void (*line)(void *ud, const char *json), void *ud, struct audit_report *rep,
               char *err, size_t errlen) __attribute__((warn_unused_result));

/* audit_diff -- `audit show --diff`: for each request (with `id`, that one), a text for a
 * person saying what the gateway changed: the request's "modified" and findings, then the
 * body received against the body that left and the answer received against the answer
 * sent, each as a unified line diff (JSON pretty-printed first) or one line when there is
 * nothing to compare (unchanged, nothing left, sealed without the key: lengths only). `out`
 * gets one NUL-terminated text per request, in the order its response record comes (those
 * with none last). Arguments, *rep and the return as for audit_show; docs/audit.md. */
int audit_diff(const char *dir, const char *id, const char *seal_key_path,
               void (*out)(void *ud, const char *text), void *ud, struct audit_report *rep,
               char *err, size_t errlen) __attribute__((warn_unused_result));
/* audit_diff_text -- a unified diff (3 lines of context) of the lines of a and b, under
 * "--- head_a" / "+++ head_b"; no hunks when they are equal. *out malloc'd. 0, -1 (memory). */
int audit_diff_text(const char *a, size_t alen, const char *b, size_t blen, const char *head_a,
                    const char *head_b, char **out, size_t *out_len);
/* audit_diff_pretty -- a JSON body with two-space indents, one value a line, values as
 * their own bytes (docs/audit.md). *out malloc'd. 0; 1 when body is not JSON to the
 * gateway's parser (common/json.h); -1 when memory ran out. */
int audit_diff_pretty(const char *body, size_t len, char **out, size_t *out_len);

enum audit_cost_by { AUDIT_COST_BY_KEY, AUDIT_COST_BY_TEAM, AUDIT_COST_BY_PROVIDER,
                     AUDIT_COST_BY_MODEL };

struct audit_cost_row {
    char *group;                  /* owned; "-" when the record has none */
    uint64_t requests, input_tokens, output_tokens, cached_tokens;
    double usd;
    /* the egress proxy's connect records, by decision (grouped by key or team only: they
       name no provider or model); they cost nothing themselves */
    uint64_t intercepts, tunnels, refused;
};

/* audit_cost_report -- sum the response records at or after `since` (header time)
 * by the chosen field, sorted by USD descending then group; with key or team, count the
 * connect records too. *rows is malloc'd (free with audit_cost_rows_free). *rep as for
 * audit_show. -1 (err) when dir is unusable. */
int audit_cost_report(const char *dir, enum audit_cost_by by, time_t since,
                      struct audit_cost_row **rows, size_t *n_rows, struct audit_report *rep,
                      char *err, size_t errlen) __attribute__((warn_unused_result));
void audit_cost_rows_free(struct audit_cost_row *rows, size_t n);

/* audit_keygen -- write PREFIX.sign.{key,pub} (Ed25519) and PREFIX.seal.{key,pub}
 * (X25519); secret keys mode 0600. Refuses (-1) if any of the four exists. */
int audit_keygen(const char *prefix, char *err, size_t errlen)
    __attribute__((warn_unused_result));

#endif
