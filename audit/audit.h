/* audit.h -- the byte-exact, write-ahead, tamper-evident record.
 *
 * An audit log is a directory of segment files written by one writer thread.
 * Records are framed, hash-chained (BLAKE2b) and periodically checkpointed with an
 * Ed25519 signature; payload blobs may be sealed to an auditor's X25519 key. The
 * on-disk format is specified in docs/audit.md.
 *
 * Threading: audit_append() may be called from any thread; it only queues. The
 * writer thread writes, fsyncs (per config_sync) and then calls each record's
 * completion callback ON THE WRITER THREAD, in append order. Callers that live on
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

/* status: 0 durable (per the sync mode), -1 the record could not be written. */
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

/* audit_healthy -- 1 while writes succeed, 0 after a write/fsync failure (until
 * one succeeds again). */
int audit_healthy(struct audit *a);
size_t audit_queue_depth(struct audit *a);

/* audit_spend_scan -- replay the log in `dir` and call fn for every response
 * record at or after `since` with its key name, team (NULL when none) and cost in
 * USD. Used to rebuild daily budgets at start-up. */
int audit_spend_scan(const char *dir, time_t since,
                     void (*fn)(void *ud, const char *key, const char *team, double usd),
                     void *ud);

#endif
