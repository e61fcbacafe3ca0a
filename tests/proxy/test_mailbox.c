/* test_mailbox.c -- the worker-to-loop mailbox: embedded nodes that cannot fail, copying
 * posts that can (AIRLOCK_MAILBOX_FAULT_ALLOC), order, threads, reuse, shutdown. */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/thread.h>

#include "harness.h"
#include "proxy/mailbox.c" /* for the spare list's count */

/* what the callbacks saw, in order */
struct seen {
    char log[4096];
    size_t log_len;
    int n;
};

static void seen_add(struct seen *s, const char *what)
{
    size_t n = strlen(what);

    if (s->log_len + n + 1 < sizeof(s->log)) {
        memcpy(s->log + s->log_len, what, n);
        s->log_len += n;
        s->log[s->log_len++] = ';';
        s->log[s->log_len] = '\0';
    }
    s->n++;
}

static struct seen seen;

static void on_data(void *arg, int status, const char *data, size_t len)
{
    char buf[128];

    (void)arg;
    snprintf(buf, sizeof(buf), "d%d:%s", status, data ? data : "(null)");
    CHECK(!data || strlen(data) == len); /* NUL-terminated copy */
    seen_add(&seen, buf);
}

static void on_node(void *arg, int status, const char *data, size_t len)
{
    char buf[128];

    snprintf(buf, sizeof(buf), "n%d:%s", status, (const char *)arg);
    CHECK(data == NULL);
    CHECK_EQ_INT(len, 0);
    seen_add(&seen, buf);
}

/* run what is queued */
static void drain(struct event_base *base)
{
    event_base_loop(base, EVLOOP_NONBLOCK);
}

static void test_order_and_data(void)
{
    struct event_base *base = event_base_new();
    struct proxy_mailbox *mb = proxy_mailbox_new(base);
    struct proxy_mail a = {0}, b = {0};

    REQUIRE(mb);
    memset(&seen, 0, sizeof(seen));
    proxy_mailbox_send(mb, &a, on_node, "a", 7);
    CHECK_EQ_INT(proxy_mailbox_post(mb, on_data, NULL, 1, "hello", 5), 0);
    CHECK_EQ_INT(proxy_mailbox_post(mb, on_data, NULL, 2, NULL, 0), 0);
    proxy_mailbox_send(mb, &b, on_node, "b", -1);
    CHECK_EQ_INT(seen.n, 0); /* nothing runs off the loop */
    drain(base);
    CHECK_EQ_STR(seen.log, "n7:a;d1:hello;d2:(null);n-1:b;");
    /* a node may be sent again once its callback has run */
    proxy_mailbox_send(mb, &a, on_node, "a", 8);
    drain(base);
    CHECK_EQ_STR(seen.log, "n7:a;d1:hello;d2:(null);n-1:b;n8:a;");
    proxy_mailbox_free(mb);
    event_base_free(base);
}

static size_t long_len;
static int long_ok;

static void on_long(void *arg, int status, const char *data, size_t len)
{
    size_t i;

    (void)arg;
    (void)status;
    long_ok = data && len == long_len && data[len] == '\0';
    for (i = 0; long_ok && i < len; i++)
        long_ok = data[i] == (char)('a' + i % 26);
}

/* lengths around the inline buffer, and far past it */
static void test_lengths(void)
{
    struct event_base *base = event_base_new();
    struct proxy_mailbox *mb = proxy_mailbox_new(base);
    size_t lens[] = {0, 1, MAIL_INLINE - 1, MAIL_INLINE, MAIL_INLINE + 1, 100000};
    char *buf = malloc(100000);
    size_t i, k;

    REQUIRE(mb && buf);
    for (i = 0; i < 100000; i++)
        buf[i] = (char)('a' + i % 26);
    for (k = 0; k < sizeof(lens) / sizeof(lens[0]); k++) {
        long_len = lens[k];
        long_ok = 0;
        CHECK_EQ_INT(proxy_mailbox_post(mb, on_long, NULL, 0, buf, long_len), 0);
        drain(base);
        if (!long_ok)
            fprintf(stderr, "  length %zu not delivered intact\n", long_len);
        CHECK(long_ok);
    }
    free(buf);
    proxy_mailbox_free(mb);
    event_base_free(base);
}

/* spent messages are kept (up to MAILBOX_SPARE_MAX) and taken again */
static void test_spare_reuse(void)
{
    struct event_base *base = event_base_new();
    struct proxy_mailbox *mb = proxy_mailbox_new(base);
    int i;

    REQUIRE(mb);
    memset(&seen, 0, sizeof(seen));
    for (i = 0; i < 10; i++)
        CHECK_EQ_INT(proxy_mailbox_post(mb, on_data, NULL, i, "x", 1), 0);
    CHECK_EQ_INT(mb->n_spare, 0);
    drain(base);
    CHECK_EQ_INT(mb->n_spare, 10);
    for (i = 0; i < 4; i++)
        CHECK_EQ_INT(proxy_mailbox_post(mb, on_data, NULL, i, "y", 1), 0);
    CHECK_EQ_INT(mb->n_spare, 6);
    drain(base);
    CHECK_EQ_INT(mb->n_spare, 10);
    for (i = 0; i < MAILBOX_SPARE_MAX + 50; i++)
        CHECK_EQ_INT(proxy_mailbox_post(mb, on_data, NULL, i, "z", 1), 0);
    drain(base);
    CHECK_EQ_INT(mb->n_spare, MAILBOX_SPARE_MAX);
    CHECK_EQ_INT(seen.n, 10 + 4 + MAILBOX_SPARE_MAX + 50);
    proxy_mailbox_free(mb);
    event_base_free(base);
}

/* AIRLOCK_MAILBOX_FAULT_ALLOC=N fails the Nth post only; N+ every one from the Nth on;
 * an embedded node is delivered whatever the hook says */
static void test_fault_hook(void)
{
    struct event_base *base = event_base_new();
    struct proxy_mailbox *mb;
    struct proxy_mail a = {0};
    int i;

    REQUIRE(base);
    setenv("AIRLOCK_MAILBOX_FAULT_ALLOC", "3", 1);
    mb = proxy_mailbox_new(base);
    REQUIRE(mb);
    memset(&seen, 0, sizeof(seen));
    CHECK_EQ_INT(proxy_mailbox_post(mb, on_data, NULL, 1, "one", 3), 0);
    CHECK_EQ_INT(proxy_mailbox_post(mb, on_data, NULL, 2, "two", 3), 0);
    CHECK_EQ_INT(proxy_mailbox_post(mb, on_data, NULL, 3, "three", 5), -1);
    proxy_mailbox_send(mb, &a, on_node, "a", 0);
    CHECK_EQ_INT(proxy_mailbox_post(mb, on_data, NULL, 4, "four", 4), 0);
    drain(base);
    CHECK_EQ_STR(seen.log, "d1:one;d2:two;n0:a;d4:four;");
    proxy_mailbox_free(mb);

    setenv("AIRLOCK_MAILBOX_FAULT_ALLOC", "2+", 1);
    mb = proxy_mailbox_new(base);
    REQUIRE(mb);
    memset(&seen, 0, sizeof(seen));
    CHECK_EQ_INT(proxy_mailbox_post(mb, on_data, NULL, 1, "one", 3), 0);
    for (i = 0; i < 5; i++)
        CHECK_EQ_INT(proxy_mailbox_post(mb, on_data, NULL, 2, "x", 1), -1);
    proxy_mailbox_send(mb, &a, on_node, "a", 5);
    drain(base);
    CHECK_EQ_STR(seen.log, "d1:one;n5:a;");
    proxy_mailbox_free(mb);

    /* malformed: ignored (with a warning), posts work */
    setenv("AIRLOCK_MAILBOX_FAULT_ALLOC", "0", 1);
    mb = proxy_mailbox_new(base);
    REQUIRE(mb);
    CHECK_EQ_INT(mb->fault_at, 0);
    proxy_mailbox_free(mb);
    setenv("AIRLOCK_MAILBOX_FAULT_ALLOC", "2x", 1);
    mb = proxy_mailbox_new(base);
    REQUIRE(mb);
    CHECK_EQ_INT(mb->fault_at, 0);
    CHECK_EQ_INT(proxy_mailbox_post(mb, on_data, NULL, 1, "one", 3), 0);
    CHECK_EQ_INT(proxy_mailbox_post(mb, on_data, NULL, 2, "two", 3), 0);
    proxy_mailbox_free(mb);
    unsetenv("AIRLOCK_MAILBOX_FAULT_ALLOC");
    event_base_free(base);
}

/* proxy_mailbox_free runs what is still queued (an embedded node's owner may be freed
 * by its callback, as a request's last reference is) */
struct owner {
    struct proxy_mail node;
    int *freed;
};

static void on_owner(void *arg, int status, const char *data, size_t len)
{
    struct owner *o = arg;

    (void)status;
    (void)data;
    (void)len;
    (*o->freed)++;
    free(o);
}

static void test_free_runs_pending(void)
{
    struct event_base *base = event_base_new();
    struct proxy_mailbox *mb = proxy_mailbox_new(base);
    int freed = 0, i;

    REQUIRE(mb);
    memset(&seen, 0, sizeof(seen));
    for (i = 0; i < 3; i++) {
        struct owner *o = calloc(1, sizeof(*o));
        REQUIRE(o);
        o->freed = &freed;
        proxy_mailbox_send(mb, &o->node, on_owner, o, 0);
        CHECK_EQ_INT(proxy_mailbox_post(mb, on_data, NULL, i, "left", 4), 0);
    }
    proxy_mailbox_free(mb);
    CHECK_EQ_INT(freed, 3);
    CHECK_EQ_INT(seen.n, 3);
    event_base_free(base);
}

/* many threads posting and sending at once: everything arrives, each thread's
 * messages in its order */
#define T_THREADS 4
#define T_MSGS 5000

struct producer {
    struct proxy_mailbox *mb;
    int id;
    struct proxy_mail nodes[T_MSGS / 10];
};

static int t_next[T_THREADS];
static int t_nodes[T_THREADS];
static int t_bad, t_total;
static struct event_base *t_base;

static void on_t_data(void *arg, int status, const char *data, size_t len)
{
    int id = status, seq;

    (void)arg;
    if (id < 0 || id >= T_THREADS || !data || sscanf(data, "%d", &seq) != 1 ||
        len != strlen(data) || seq != t_next[id])
        t_bad++;
    else
        t_next[id]++;
    if (++t_total == T_THREADS * (T_MSGS + T_MSGS / 10))
        event_base_loopbreak(t_base);
}

static void on_t_node(void *arg, int status, const char *data, size_t len)
{
    struct producer *p = arg;

    (void)data;
    (void)len;
    if (status != p->id)
        t_bad++;
    t_nodes[p->id]++;
    if (++t_total == T_THREADS * (T_MSGS + T_MSGS / 10))
        event_base_loopbreak(t_base);
}

static void *producer_main(void *arg)
{
    struct producer *p = arg;
    char buf[32];
    int i;

    for (i = 0; i < T_MSGS; i++) {
        int n = snprintf(buf, sizeof(buf), "%d", i);
        while (proxy_mailbox_post(p->mb, on_t_data, NULL, p->id, buf, (size_t)n) != 0)
            ; /* no fault hook here: does not happen */
        if (i % 10 == 0)
            proxy_mailbox_send(p->mb, &p->nodes[i / 10], on_t_node, p, p->id);
    }
    return NULL;
}

static void test_threads(void)
{
    struct proxy_mailbox *mb;
    struct producer *ps = calloc(T_THREADS, sizeof(*ps));
    pthread_t th[T_THREADS];
    struct timeval limit = {30, 0};
    int i;

    REQUIRE(ps);
    t_base = event_base_new();
    REQUIRE(t_base);
    mb = proxy_mailbox_new(t_base);
    REQUIRE(mb);
    for (i = 0; i < T_THREADS; i++) {
        ps[i].mb = mb;
        ps[i].id = i;
        REQUIRE(pthread_create(&th[i], NULL, producer_main, &ps[i]) == 0);
    }
    event_base_loopexit(t_base, &limit);
    event_base_dispatch(t_base);
    for (i = 0; i < T_THREADS; i++)
        pthread_join(th[i], NULL);
    drain(t_base);
    CHECK_EQ_INT(t_bad, 0);
    CHECK_EQ_INT(t_total, T_THREADS * (T_MSGS + T_MSGS / 10));
    for (i = 0; i < T_THREADS; i++) {
        CHECK_EQ_INT(t_next[i], T_MSGS);
        CHECK_EQ_INT(t_nodes[i], T_MSGS / 10);
    }
    proxy_mailbox_free(mb);
    event_base_free(t_base);
    free(ps);
}

/* sending a node that is still queued is a bug in the caller: it aborts rather than
 * corrupting the queue */
static void test_double_send_aborts(void)
{
    pid_t pid = fork();
    int st = 0;

    REQUIRE(pid >= 0);
    if (pid == 0) {
        struct event_base *base = event_base_new();
        struct proxy_mailbox *mb = proxy_mailbox_new(base);
        struct proxy_mail a = {0};
        int fd = open("/dev/null", O_WRONLY);

        if (fd >= 0)
            dup2(fd, 2);
        proxy_mailbox_send(mb, &a, on_node, "a", 0);
        proxy_mailbox_send(mb, &a, on_node, "a", 0);
        _exit(0);
    }
    REQUIRE(waitpid(pid, &st, 0) == pid);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
}

int main(void)
{
    evthread_use_pthreads();
    RUN(test_order_and_data);
    RUN(test_lengths);
    RUN(test_spare_reuse);
    RUN(test_fault_hook);
    RUN(test_free_runs_pending);
    RUN(test_threads);
    RUN(test_double_send_aborts);
    return harness_done();
}
