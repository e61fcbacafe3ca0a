/* mailbox.h -- the one way other threads (audit syncer, engine workers, the reload thread)
 * report to the event loop.
 *
 * A message runs its callback on the loop, in the order sent. proxy_mailbox_send uses a
 * node the sender embeds in its own object and cannot fail; proxy_mailbox_post copies
 * data and can (out of memory), which its caller must settle. */
#ifndef AIRLOCK_PROXY_MAILBOX_H
#define AIRLOCK_PROXY_MAILBOX_H

#include <stdatomic.h>
#include <stddef.h>

struct event_base;

struct proxy_mailbox;
/* runs on the loop; `data` is the posted copy (NUL-terminated), borrowed until fn
 * returns, or NULL for a message without data */
typedef void (*proxy_mail_fn)(void *arg, int status, const char *data, size_t len);

/* A message node embedded in the object it reports about (a request, the proxy), so
 * that reporting needs no memory. One node carries one message at a time: it may be
 * sent again once its callback has started (the callback may send it, or free the
 * object holding it). Zero-initialised before its first use. */
struct proxy_mail {
    proxy_mail_fn fn;
    void *arg;
    struct proxy_mail *next;
    int status;
    int owned;         /* allocated by proxy_mailbox_post, not embedded */
    atomic_int queued; /* sent, its callback not yet started */
};

struct proxy_mailbox *proxy_mailbox_new(struct event_base *base);
/* proxy_mailbox_free -- runs the messages still queued, then frees. No thread may
 * post or send any more. */
void proxy_mailbox_free(struct proxy_mailbox *mb);
/* proxy_mailbox_drain -- on the loop's thread: run the messages queued now, as the loop's
 * next turn would (proxy_free: what the stopped decider reported, while the audit log it
 * records into is still open). */
void proxy_mailbox_drain(struct proxy_mailbox *mb);
/* proxy_mailbox_send -- from any thread; cannot fail: fn(arg, status, NULL, 0) runs on
 * the loop. `node` must stay valid until fn starts and must not be queued already. */
void proxy_mailbox_send(struct proxy_mailbox *mb, struct proxy_mail *node, proxy_mail_fn fn,
                        void *arg, int status);
/* proxy_mailbox_post -- from any thread; `data` (may be NULL) is copied. -1 when memory
 * runs out (or AIRLOCK_MAILBOX_FAULT_ALLOC says so): fn will not run, and what the
 * message would have reported is the caller's to settle. 0: fn runs on the loop. */
int proxy_mailbox_post(struct proxy_mailbox *mb, proxy_mail_fn fn, void *arg, int status,
                       const void *data, size_t len) __attribute__((warn_unused_result));

#endif
