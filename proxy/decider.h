/* decider.h -- the thread that decides big request bodies off the event loop (decider.c).
 *
 * Deciding a body (decide.h: the parse, the detectors, the rules, the outbound rewrite) is
 * pure CPU work that grows with the body's findings: a 4 MiB string of e-mails under a
 * redact rule takes about 200 ms, during which a loop that decided it could serve no other
 * connection. A request whose body is at least PROXY_DECIDE_OFFLOOP_BYTES is therefore
 * handed to this thread (req.c), and its decision comes back to the loop through the
 * mailbox; smaller bodies, nearly all, are still decided on the loop, where they cost
 * microseconds and no hand-off.
 *
 * One thread, started by proxy_new and joined by proxy_free. Jobs run one at a time in the
 * order submitted. A job is embedded in the object it decides (a request), so submitting
 * needs no memory and cannot fail, and its end travels in the job's own mailbox node.
 *
 * The job's `work` runs on the decider thread and must touch only what the loop leaves
 * alone until `done` runs (req.c: the body, the snapshot the request holds a reference
 * on, and the decision it fills in). `done` runs on the loop. The caller holds whatever
 * reference keeps the object alive from submit until `done`. */
#ifndef AIRLOCK_PROXY_DECIDER_H
#define AIRLOCK_PROXY_DECIDER_H

#include "proxy/mailbox.h"

/* Bodies of this many bytes or more are decided on the decider thread. Measured with
 * `policy_bench --body` (docs/security.md, Costs and observations): the densest body, a
 * string of e-mails under a redact rule, decides in about 0.6 ms at 16 KiB and 2.7 ms at
 * 64 KiB; 16 KiB of prose in 7 us, so below it a hand-off (two thread wake-ups) would
 * cost more than the decision. A constant: nothing about a deployment moves it. */
#define PROXY_DECIDE_OFFLOOP_BYTES (16 * 1024)

struct proxy_decider;

struct proxy_decider_job {
    void (*work)(void *arg); /* on the decider thread */
    proxy_mail_fn done;      /* on the loop: status 0 when work ran, -1 when it did not
                                (the decider was stopping) */
    void *arg;
    struct proxy_mail mail;
    struct proxy_decider_job *next; /* the decider's queue */
};

/* proxy_decider_new -- start the thread; its results go to `mb`. NULL when the thread or
 * memory cannot be had (the caller decides on the loop instead). Reads the test hook
 * AIRLOCK_DECIDER_FAULT_HOLD=PATH: each job waits before its work until PATH exists (or
 * the decider stops), so a test can see what the loop does while a body is decided. */
struct proxy_decider *proxy_decider_new(struct proxy_mailbox *mb);
/* proxy_decider_submit -- from the loop: queue `job` (its work, done and arg filled in).
 * Cannot fail: `done` runs on the loop exactly once, after `work` (status 0), or without
 * it when the decider stopped first (status -1). `job` must stay valid until `done`. */
void proxy_decider_submit(struct proxy_decider *dc, struct proxy_decider_job *job);
/* proxy_decider_free -- stop and join the thread: the job being worked on finishes, the
 * jobs still queued are reported with status -1 (through the mailbox, which must still
 * exist: their `done` runs when the mailbox is next drained or freed). NULL is a no-op. */
void proxy_decider_free(struct proxy_decider *dc);

#endif
