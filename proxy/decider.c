/* decider.c -- decide big request bodies on a thread of their own (see decider.h).
 *
 * A mutex-guarded FIFO of jobs embedded in requests, one condition variable, one thread.
 * Why one thread and not a pool: before it, every decision ran on the loop, one at a
 * time, so one decider serves big bodies as fast as the loop did while freeing the loop
 * for everything else; a pool would let a client with many connections of big bodies take
 * every core from the loop (this gateway runs on small machines: 2 cores in our
 * measurements), and the decisions it queues are bounded anyway by the requests in flight
 * (one per connection, limits.max_connections). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "proxy/decider.h"

struct proxy_decider {
    pthread_mutex_t lock; /* guards head, tail, stop */
    pthread_cond_t cv;    /* signalled on a new job and on stop */
    struct proxy_decider_job *head, *tail;
    int stop;
    pthread_t thread;
    struct proxy_mailbox *mb;
    char *hold_path; /* AIRLOCK_DECIDER_FAULT_HOLD (tests); NULL: off */
};

/* hold -- the test hook: wait until hold_path exists or the decider stops, looking every
 * 10 ms (a test hook, never set in production; a condition wait so stop is not delayed) */
static void hold(struct proxy_decider *dc)
{
    struct timespec ts;

    log_info("decider: holding a decision until %s exists (test hook)", dc->hold_path);
    pthread_mutex_lock(&dc->lock);
    while (!dc->stop && access(dc->hold_path, F_OK) != 0) {
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 10 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        (void)pthread_cond_timedwait(&dc->cv, &dc->lock, &ts);
    }
    pthread_mutex_unlock(&dc->lock);
    log_info("decider: released a decision (test hook)");
}

static void *decider_main(void *arg)
{
    struct proxy_decider *dc = arg;
    struct proxy_decider_job *job;

    pthread_mutex_lock(&dc->lock);
    for (;;) {
        while (!dc->head && !dc->stop)
            pthread_cond_wait(&dc->cv, &dc->lock);
        if (dc->stop)
            break;
        job = dc->head;
        dc->head = job->next;
        if (!dc->head)
            dc->tail = NULL;
        pthread_mutex_unlock(&dc->lock);
        if (dc->hold_path)
            hold(dc);
        job->work(job->arg);
        proxy_mailbox_send(dc->mb, &job->mail, job->done, job->arg, 0);
        pthread_mutex_lock(&dc->lock);
    }
    /* stopping: what was not started is reported undone */
    while ((job = dc->head)) {
        dc->head = job->next;
        proxy_mailbox_send(dc->mb, &job->mail, job->done, job->arg, -1);
    }
    dc->tail = NULL;
    pthread_mutex_unlock(&dc->lock);
    return NULL;
}

struct proxy_decider *proxy_decider_new(struct proxy_mailbox *mb)
{
    struct proxy_decider *dc = calloc(1, sizeof(*dc));
    const char *env = getenv("AIRLOCK_DECIDER_FAULT_HOLD");

    if (!dc)
        return NULL;
    dc->mb = mb;
    if (env && *env) {
        if (!(dc->hold_path = strdup(env))) {
            free(dc);
            return NULL;
        }
        log_warn("AIRLOCK_DECIDER_FAULT_HOLD=%s: decisions wait for that file (test hook)", env);
    }
    pthread_mutex_init(&dc->lock, NULL);
    pthread_cond_init(&dc->cv, NULL);
    if (pthread_create(&dc->thread, NULL, decider_main, dc) != 0) {
        pthread_cond_destroy(&dc->cv);
        pthread_mutex_destroy(&dc->lock);
        free(dc->hold_path);
        free(dc);
        return NULL;
    }
    return dc;
}

void proxy_decider_submit(struct proxy_decider *dc, struct proxy_decider_job *job)
{
    job->next = NULL;
    pthread_mutex_lock(&dc->lock);
    if (dc->stop) { /* (not reached: the loop no longer runs once proxy_free stops it) */
        pthread_mutex_unlock(&dc->lock);
        proxy_mailbox_send(dc->mb, &job->mail, job->done, job->arg, -1);
        return;
    }
    if (dc->tail)
        dc->tail->next = job;
    else
        dc->head = job;
    dc->tail = job;
    pthread_cond_signal(&dc->cv);
    pthread_mutex_unlock(&dc->lock);
}

void proxy_decider_free(struct proxy_decider *dc)
{
    if (!dc)
        return;
    pthread_mutex_lock(&dc->lock);
    dc->stop = 1;
    pthread_cond_broadcast(&dc->cv);
    pthread_mutex_unlock(&dc->lock);
    pthread_join(dc->thread, NULL);
    pthread_cond_destroy(&dc->cv);
    pthread_mutex_destroy(&dc->lock);
    free(dc->hold_path);
    free(dc);
}
