/* mailbox.c -- hand results from worker threads (audit writer, engine) to the loop.
 *
 * A mutex-guarded FIFO of messages and one libevent event made active from the
 * posting thread (the base is created after evthread_use_pthreads, so
 * event_active is thread-safe). The loop drains the whole FIFO per wake-up. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/proxy_int.h"

struct mail {
    proxy_mail_fn fn;
    void *arg;
    int status;
    char *data;
    size_t len;
    struct mail *next;
};

struct proxy_mailbox {
    pthread_mutex_t lock; /* guards head, tail */
    struct mail *head, *tail;
    struct event *ev;
};

static void mailbox_cb(evutil_socket_t fd, short what, void *arg)
{
    struct proxy_mailbox *mb = arg;
    struct mail *m, *next;

    (void)fd;
    (void)what;
    pthread_mutex_lock(&mb->lock);
    m = mb->head;
    mb->head = mb->tail = NULL;
    pthread_mutex_unlock(&mb->lock);
    for (; m; m = next) {
        next = m->next;
        m->fn(m->arg, m->status, m->data, m->len);
        free(m);
    }
}

struct proxy_mailbox *proxy_mailbox_new(struct event_base *base)
{
    struct proxy_mailbox *mb = calloc(1, sizeof(*mb));

    if (!mb)
        return NULL;
    pthread_mutex_init(&mb->lock, NULL);
    mb->ev = event_new(base, -1, 0, mailbox_cb, mb);
    if (!mb->ev) {
        free(mb);
        return NULL;
    }
    return mb;
}

void proxy_mailbox_free(struct proxy_mailbox *mb)
{
    if (!mb)
        return;
    mailbox_cb(-1, 0, mb);
    event_free(mb->ev);
    pthread_mutex_destroy(&mb->lock);
    free(mb);
}

int proxy_mailbox_post(struct proxy_mailbox *mb, proxy_mail_fn fn, void *arg, int status,
                       const void *data, size_t len)
{
    struct mail *m = calloc(1, sizeof(*m));
    int wake;

    if (!m)
        return -1;
    m->fn = fn;
    m->arg = arg;
    m->status = status;
    if (data) {
        m->data = malloc(len + 1);
        if (!m->data) {
            free(m);
            return -1;
        }
        memcpy(m->data, data, len);
        m->data[len] = '\0';
        m->len = len;
    }
    pthread_mutex_lock(&mb->lock);
    /* wake the loop only for the first message of a batch: it drains the whole
     * queue per wake-up, and each wake-up is a syscall and a context switch */
    wake = mb->head == NULL;
    if (mb->tail)
        mb->tail->next = m;
    else
        mb->head = m;
    mb->tail = m;
    pthread_mutex_unlock(&mb->lock);
    if (wake)
        event_active(mb->ev, EV_READ, 0);
    return 0;
}
