/* mailbox.c -- hand results from worker threads (audit syncer, engine, reload) to the loop.
 *
 * A mutex-guarded FIFO of messages and one libevent event made active from the
 * posting thread (the base is created after evthread_use_pthreads, so
 * event_active is thread-safe). The loop drains the whole FIFO per wake-up.
 *
 * Two kinds of message share the FIFO. A node the caller embeds in the object it
 * reports about (proxy_mailbox_send) needs no memory, so that hand-off cannot fail:
 * every result that ends a piece of work (an audit record's sync, an engine job's
 * end, a reload's snapshot) travels that way, and nothing is stranded when memory
 * runs out. A message carrying a copy of bytes (proxy_mailbox_post: the engine's
 * text pieces, many per request) is allocated, and can fail; its caller decides
 * what that failure means. */
#include <assert.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "proxy/proxy_int.h"

/* An allocated message: the node, and its bytes inline when they are few (an engine
 * text piece is one token, a few bytes), so a post is one allocation or none. */
#define MAIL_INLINE 48

struct mail {
    struct proxy_mail node; /* first: a node with `owned` set is a struct mail */
    char *data;             /* inline or malloc'd; NUL-terminated; NULL when none */
    size_t len;
    char inline_data[MAIL_INLINE];
};

/* spent messages kept for reuse: the engine posts one per generated piece of text, and
 * a malloc on one thread freed on another is the slow path of every allocator. (The
 * figure behind this is from when the audit writer also posted allocated messages, two
 * per request: sync none, wrk -c32, 6 alternating runs, 14,027 against 13,128 req/s
 * without reuse. Audit results travel in embedded nodes now; the engine's text pieces
 * are the only allocated messages left.) */
#define MAILBOX_SPARE_MAX 1024

struct proxy_mailbox {
    pthread_mutex_t lock; /* guards head, tail, spare, n_spare, n_alloc */
    struct proxy_mail *head, *tail;
    struct mail *spare; /* linked through node.next */
    size_t n_spare;
    struct event *ev;
    /* AIRLOCK_MAILBOX_FAULT_ALLOC=N (tests): the Nth proxy_mailbox_post fails as if
     * memory ran out; N+ : that one and every later one. 0: off. */
    unsigned long fault_at;
    int fault_after;
    unsigned long n_alloc; /* proxy_mailbox_post calls so far, counted while fault_at */
};

static void mail_release(struct mail *m)
{
    if (m->data && m->data != m->inline_data)
        free(m->data);
    m->data = NULL;
}

static void mailbox_cb(evutil_socket_t fd, short what, void *arg)
{
    struct proxy_mailbox *mb = arg;
    struct proxy_mail *p, *next;
    struct mail *keep = NULL, *keep_tail = NULL, *m;
    size_t n_keep = 0;

    (void)fd;
    (void)what;
    pthread_mutex_lock(&mb->lock);
    p = mb->head;
    mb->head = mb->tail = NULL;
    pthread_mutex_unlock(&mb->lock);
    for (; p; p = next) {
        next = p->next;
        if (!p->owned) {
            /* the node belongs to the object it reports about, which fn may free: it
             * is not touched after fn, and may be sent again from fn on */
            atomic_store(&p->queued, 0);
            p->fn(p->arg, p->status, NULL, 0);
            continue;
        }
        m = (struct mail *)p;
        p->fn(p->arg, p->status, m->data, m->len);
        mail_release(m);
        if (n_keep < MAILBOX_SPARE_MAX) {
            m->node.next = keep ? &keep->node : NULL;
            keep = m;
            if (!keep_tail)
                keep_tail = m;
            n_keep++;
        } else {
            free(m);
        }
    }
    if (keep) {
        pthread_mutex_lock(&mb->lock);
        if (mb->n_spare < MAILBOX_SPARE_MAX) {
            keep_tail->node.next = mb->spare ? &mb->spare->node : NULL;
            mb->spare = keep;
            mb->n_spare += n_keep;
            keep = NULL;
        }
        pthread_mutex_unlock(&mb->lock);
        while (keep) {
            m = keep;
            keep = (struct mail *)m->node.next;
            free(m);
        }
    }
}

/* fault_parse -- AIRLOCK_MAILBOX_FAULT_ALLOC: "N" or "N+", N >= 1; anything else is
 * ignored with a warning (a test hook, never set in production) */
static void fault_parse(struct proxy_mailbox *mb)
{
    const char *env = getenv("AIRLOCK_MAILBOX_FAULT_ALLOC");
    char *end;
    unsigned long v;

    if (!env || !*env)
        return;
    v = strtoul(env, &end, 10);
    if (v == 0 || end == env || (*end && strcmp(end, "+") != 0)) {
        log_warn("AIRLOCK_MAILBOX_FAULT_ALLOC=%s: expected N or N+ (N >= 1); ignored", env);
        return;
    }
    mb->fault_at = v;
    mb->fault_after = *end == '+';
    log_warn("AIRLOCK_MAILBOX_FAULT_ALLOC=%s: mailbox posts will fail (test hook)", env);
}

struct proxy_mailbox *proxy_mailbox_new(struct event_base *base)
{
    struct proxy_mailbox *mb = calloc(1, sizeof(*mb));

    if (!mb)
        return NULL;
    pthread_mutex_init(&mb->lock, NULL);
    mb->ev = event_new(base, -1, 0, mailbox_cb, mb);
    if (!mb->ev) {
        pthread_mutex_destroy(&mb->lock);
        free(mb);
        return NULL;
    }
    fault_parse(mb);
    return mb;
}

void proxy_mailbox_drain(struct proxy_mailbox *mb)
{
    if (mb)
        mailbox_cb(-1, 0, mb);
}

void proxy_mailbox_free(struct proxy_mailbox *mb)
{
    struct mail *m;

    if (!mb)
        return;
    mailbox_cb(-1, 0, mb);
    while ((m = mb->spare)) {
        mb->spare = (struct mail *)m->node.next;
        free(m);
    }
    event_free(mb->ev);
    pthread_mutex_destroy(&mb->lock);
    free(mb);
}

/* enqueue -- append p and wake the loop if the queue was empty */
static void enqueue(struct proxy_mailbox *mb, struct proxy_mail *p)
{
    int wake;

    p->next = NULL;
    pthread_mutex_lock(&mb->lock);
    /* wake the loop only for the first message of a batch: it drains the whole
     * queue per wake-up, and each wake-up is a syscall and a context switch */
    wake = mb->head == NULL;
    if (mb->tail)
        mb->tail->next = p;
    else
        mb->head = p;
    mb->tail = p;
    pthread_mutex_unlock(&mb->lock);
    if (wake)
        event_active(mb->ev, EV_READ, 0);
}

void proxy_mailbox_send(struct proxy_mailbox *mb, struct proxy_mail *node, proxy_mail_fn fn,
                        void *arg, int status)
{
    /* a node queued twice would lose the first message and corrupt the FIFO */
    int was_queued = atomic_exchange(&node->queued, 1);

    assert(!was_queued);
    (void)was_queued;
    node->fn = fn;
    node->arg = arg;
    node->status = status;
    node->owned = 0;
    enqueue(mb, node);
}

int proxy_mailbox_post(struct proxy_mailbox *mb, proxy_mail_fn fn, void *arg, int status,
                       const void *data, size_t len)
{
    struct mail *m = NULL;
    int fault = 0;

    pthread_mutex_lock(&mb->lock);
    if (mb->fault_at) {
        mb->n_alloc++;
        fault = mb->n_alloc == mb->fault_at || (mb->fault_after && mb->n_alloc > mb->fault_at);
    }
    if (!fault && mb->spare) {
        m = mb->spare;
        mb->spare = (struct mail *)m->node.next;
        mb->n_spare--;
    }
    pthread_mutex_unlock(&mb->lock);
    if (fault)
        return -1;
    if (!m && !(m = malloc(sizeof(*m))))
        return -1;
    m->data = NULL;
    m->len = 0;
    if (data) {
        if (len < sizeof(m->inline_data)) {
            m->data = m->inline_data;
        } else if (len == SIZE_MAX || !(m->data = malloc(len + 1))) {
            free(m); /* not worth a lock to give back */
            return -1;
        }
        memcpy(m->data, data, len);
        m->data[len] = '\0';
        m->len = len;
    }
    m->node.fn = fn;
    m->node.arg = arg;
    m->node.status = status;
    m->node.owned = 1;
    enqueue(mb, &m->node);
    return 0;
}
