/* handoff_cost.c -- what this machine charges for the three things a write-ahead audit
 * with a writer thread cannot avoid, per operation, in wall time and in machine CPU time
 * (all cores, from /proc/stat):
 *
 *   - a system call (getppid: the entry and exit alone);
 *   - a round trip to another thread and back (mutex + condition variable, the way an
 *     event loop hands a group to a syncer thread and hears back), with no work done;
 *   - a 2.6 KB overwrite of zeros written ahead + fdatasync, called inline, and the
 *     same with the fdatasync done by a second thread while the first waits for it.
 *
 * On a typical bare-metal Linux machine the first two cost about 0.1 and 5 us; the
 * point of printing them is to see what they cost on the machine the gateway benchmark
 * runs on (docs/audit.md, Speed).
 *
 *   handoff_cost [DIR] [N]      (default: $TMPDIR or /tmp, 2000 rounds)
 * Other load on the machine inflates the CPU figures: run it on a quiet machine. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"

/* the second thread: on each request, optionally fdatasync, then answer */
static struct {
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    int want, answered, stop, sync, fd, err;
} peer = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER,
          0, 0, 0, 0, -1, 0};

static void *peer_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&peer.mu);
    for (;;) {
        while (!peer.want && !peer.stop)
            pthread_cond_wait(&peer.go, &peer.mu);
        if (peer.stop)
            break;
        peer.want = 0;
        if (peer.sync) {
            pthread_mutex_unlock(&peer.mu);
            if (fdatasync(peer.fd) != 0)
                peer.err = 1;
            pthread_mutex_lock(&peer.mu);
        }
        peer.answered = 1;
        pthread_cond_signal(&peer.done);
    }
    pthread_mutex_unlock(&peer.mu);
    return NULL;
}

static void round_trip(void)
{
    pthread_mutex_lock(&peer.mu);
    peer.want = 1;
    peer.answered = 0;
    pthread_cond_signal(&peer.go);
    while (!peer.answered)
        pthread_cond_wait(&peer.done, &peer.mu);
    pthread_mutex_unlock(&peer.mu);
}

enum what { SYSCALL, HANDOFF, SYNC_INLINE, SYNC_THREAD };

static int measure(enum what w, int fd, int n, double *wall_us, double *cpu_us)
{
    static char rec[2600]; /* about a gateway request's two records */
    unsigned long long b0, b1;
    double t0, t1;
    int i;

    memset(rec, 'x', sizeof(rec));
    peer.sync = w == SYNC_THREAD;
    b0 = busy_ticks();
    t0 = now_s();
    for (i = 0; i < n; i++) {
        switch (w) {
        case SYSCALL:
            syscall(SYS_getppid);
            break;
        case HANDOFF:
            round_trip();
            break;
        case SYNC_INLINE:
        case SYNC_THREAD:
            if (pwrite(fd, rec, sizeof(rec), (off_t)i * (off_t)sizeof(rec)) != (ssize_t)sizeof(rec))
                return -1;
            if (w == SYNC_INLINE ? fdatasync(fd) != 0 : (round_trip(), peer.err != 0))
                return -1;
            break;
        }
    }
    t1 = now_s();
    b1 = busy_ticks();
    *wall_us = (t1 - t0) / n * 1e6;
    *cpu_us = (double)(b1 - b0) / (double)sysconf(_SC_CLK_TCK) / n * 1e6;
    return 0;
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : (getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    int n = argc > 2 ? atoi(argv[2]) : 2000, fd, rc = 0, started = 0;
    char path[4096];
    pthread_t th;
    static const struct {
        enum what w;
        int scale; /* rounds per n: the cheap operations run more often to be measurable */
        const char *name;
    } rows[] = {
        {SYSCALL, 200, "system call (getppid)"},
        {HANDOFF, 10, "round trip to another thread"},
        {SYNC_INLINE, 1, "2.6 KB overwrite + fdatasync, inline"},
        {SYNC_THREAD, 1, "the same, fdatasync on another thread"},
    };
    size_t i;

    if (n <= 0) {
        fprintf(stderr, "usage: handoff_cost [DIR] [N]\n");
        return 2;
    }
    snprintf(path, sizeof(path), "%s/handoff_cost.%d", dir, (int)getpid());
    fd = open(path, O_CREAT | O_TRUNC | O_RDWR, 0600);
    if (fd < 0) {
        perror(path);
        return 1;
    }
    { /* zeros written ahead and synced, as the audit writer keeps them: without them
       * the rounds would append, and measure something else */
        char *z = calloc(1, 1 << 20);
        size_t need = (size_t)n * 2600 + (1 << 20), done = 0;
        while (z && done < need && write(fd, z, 1 << 20) == 1 << 20)
            done += 1 << 20;
        free(z);
        if (done < need || fsync(fd) != 0) {
            perror("handoff_cost: writing the zeros ahead");
            rc = 1;
        }
    }
    peer.fd = fd;
    if (rc == 0) {
        started = pthread_create(&th, NULL, peer_main, NULL) == 0;
        if (!started) {
            fprintf(stderr, "handoff_cost: cannot start a thread\n");
            rc = 1;
        }
    }
    for (i = 0; rc == 0 && i < sizeof(rows) / sizeof(rows[0]); i++) {
        double wall, cpu;
        if (measure(rows[i].w, fd, n * rows[i].scale, &wall, &cpu) != 0) {
            perror(rows[i].name);
            rc = 1;
            break;
        }
        printf("  %-40s %8.2f us wall, %8.2f us machine CPU\n", rows[i].name, wall, cpu);
    }
    if (started) { /* a failed round leaves the peer idle, waiting for `go` */
        pthread_mutex_lock(&peer.mu);
        peer.stop = 1;
        pthread_cond_signal(&peer.go);
        pthread_mutex_unlock(&peer.mu);
        pthread_join(th, NULL);
    }
    close(fd);
    unlink(path);
    return rc;
}
