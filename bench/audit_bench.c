/* audit_bench.c -- audit throughput: records/s and MB/s appended by concurrent
 * writers per sync mode (each writer waits for its record to be durable, as the
 * gateway does), and audit verify MB/s over the written log.
 *
 *   audit_bench [--threads N] [--record BYTES] [--seconds S] [--verify-mb MB] [--dir DIR]
 *
 * Logs are written under DIR (default $TMPDIR or /tmp): the file system there decides
 * what an fdatasync costs. */
#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "audit/audit.h"
#include "common/log.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct done_wait {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done, status;
};

static void on_done(void *ud, int status)
{
    struct done_wait *w = ud;
    pthread_mutex_lock(&w->mu);
    w->done = 1;
    w->status = status;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

struct worker {
    struct audit *a;
    size_t record;
    double until;
    uint64_t n, failed;
    int id;
};

static void *worker_main(void *p)
{
    struct worker *wk = p;
    struct done_wait w;
    char meta[256];
    char *blob = malloc(wk->record);

    if (!blob)
        return NULL;
    memset(blob, 'x', wk->record);
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    while (now_s() < wk->until) {
        struct audit_blob b[2] = {{"inbound", blob, wk->record / 2},
                                  {"outbound", blob, wk->record - wk->record / 2}};
        snprintf(meta, sizeof(meta),
                 "{\"id\":\"%08x%024llx\",\"key\":\"bench\",\"team\":null,\"api\":\"openai\","
                 "\"verdict\":\"allow\",\"rule\":\"default\"}",
                 wk->id, (unsigned long long)wk->n);
        w.done = 0;
        if (audit_append(wk->a, AUDIT_REC_REQUEST, meta, b, 2, on_done, &w) != 0) {
            wk->failed++;
            continue;
        }
        pthread_mutex_lock(&w.mu);
        while (!w.done)
            pthread_cond_wait(&w.cv, &w.mu);
        pthread_mutex_unlock(&w.mu);
        if (w.status == 0)
            wk->n++;
        else
            wk->failed++;
    }
    pthread_mutex_destroy(&w.mu);
    pthread_cond_destroy(&w.cv);
    free(blob);
    return NULL;
}

static uint64_t dir_bytes(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    uint64_t total = 0;
    char path[4096];
    struct stat st;

    if (!d)
        return 0;
    while ((de = readdir(d)) != NULL) {
        if (!strstr(de->d_name, ".alog"))
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        if (stat(path, &st) == 0)
            total += (uint64_t)st.st_size;
    }
    closedir(d);
    return total;
}

static void rm_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char path[4096];

    if (!d)
        return;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

static int run_append(const char *base, enum config_sync sync, const char *name, int threads,
                      size_t record, double seconds)
{
    char dir[1024], err[256];
    struct config_audit cfg;
    struct audit *a = NULL;
    struct worker *wk = calloc((size_t)threads, sizeof(*wk));
    pthread_t *th = calloc((size_t)threads, sizeof(*th));
    uint64_t n = 0, failed = 0, bytes, syncs;
    double t0, t1;
    int i;

    if (!wk || !th)
        return -1;
    snprintf(dir, sizeof(dir), "%s/airlock-audit-bench-%s-%d", base, name, (int)getpid());
    memset(&cfg, 0, sizeof(cfg));
    cfg.dir = dir;
    cfg.sync = sync;
    cfg.on_failure = CONFIG_ON_FAILURE_REFUSE;
    if (audit_open(&cfg, &a, err, sizeof(err)) != 0) {
        fprintf(stderr, "audit_bench: %s\n", err);
        return -1;
    }
    t0 = now_s();
    for (i = 0; i < threads; i++) {
        wk[i].a = a;
        wk[i].record = record;
        wk[i].until = t0 + seconds;
        wk[i].id = i;
        pthread_create(&th[i], NULL, worker_main, &wk[i]);
    }
    for (i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        n += wk[i].n;
        failed += wk[i].failed;
    }
    t1 = now_s();
    syncs = audit_syncs(a);
    audit_close(a);
    bytes = dir_bytes(dir);
    {
        char per[64];
        if (syncs)
            snprintf(per, sizeof(per), "%.1f records per fdatasync", (double)n / (double)syncs);
        else
            snprintf(per, sizeof(per), "no fdatasync");
        printf("  sync %-6s %d writers, %zu-byte payloads: %9.0f records/s  %7.1f MB/s on disk"
               "  (%llu records, %.1f s, %s%s)\n",
               name, threads, record, (double)n / (t1 - t0), (double)bytes / 1e6 / (t1 - t0),
               (unsigned long long)n, t1 - t0, per, failed ? ", FAILURES" : "");
    }
    rm_dir(dir);
    free(wk);
    free(th);
    return failed ? -1 : 0;
}

static int run_verify(const char *base, size_t record, double mb)
{
    char dir[1024], err[256];
    struct config_audit cfg;
    struct audit *a = NULL;
    struct audit_report rep;
    uint64_t bytes, i, n;
    double t0, t1, best = 1e9;
    char *blob = malloc(record);
    int r;

    if (!blob)
        return -1;
    memset(blob, 'v', record);
    snprintf(dir, sizeof(dir), "%s/airlock-audit-bench-verify-%d", base, (int)getpid());
    memset(&cfg, 0, sizeof(cfg));
    cfg.dir = dir;
    cfg.sync = CONFIG_SYNC_NONE;
    if (audit_open(&cfg, &a, err, sizeof(err)) != 0) {
        fprintf(stderr, "audit_bench: %s\n", err);
        return -1;
    }
    n = (uint64_t)(mb * 1e6 / (double)record);
    for (i = 0; i < n; i++) {
        struct audit_blob b = {"inbound", blob, record};
        while (audit_queue_depth(a) > 4096)
            usleep(1000);
        if (audit_append(a, AUDIT_REC_REQUEST, "{\"id\":\"v\",\"key\":\"bench\"}", &b, 1, NULL,
                         NULL) != 0) {
            fprintf(stderr, "audit_bench: append failed\n");
            return -1;
        }
    }
    audit_close(a);
    bytes = dir_bytes(dir);
    for (r = 0; r < 3; r++) { /* best of 3: the first run may read from disk, later from cache */
        t0 = now_s();
        if (audit_verify(dir, NULL, &rep, err, sizeof(err)) != 0 || rep.verdict != AUDIT_INTACT) {
            fprintf(stderr, "audit_bench: verify failed: %s %s\n", err, rep.message);
            return -1;
        }
        t1 = now_s();
        if (t1 - t0 < best)
            best = t1 - t0;
    }
    printf("  audit verify: %.1f MB in %llu records, %llu segments: %.0f MB/s (best of 3, page "
           "cache warm; target >= 200 MB/s: %s)\n",
           (double)bytes / 1e6, (unsigned long long)rep.records,
           (unsigned long long)rep.segments, (double)bytes / 1e6 / best,
           (double)bytes / 1e6 / best >= 200 ? "met" : "NOT met");
    rm_dir(dir);
    free(blob);
    return 0;
}

int main(int argc, char **argv)
{
    int threads = 8, i;
    size_t record = 4096;
    double seconds = 3, verify_mb = 256;
    const char *base = getenv("TMPDIR");

    if (!base || !*base)
        base = "/tmp";
    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--record") && i + 1 < argc)
            record = (size_t)atol(argv[++i]);
        else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
            seconds = atof(argv[++i]);
        else if (!strcmp(argv[i], "--verify-mb") && i + 1 < argc)
            verify_mb = atof(argv[++i]);
        else if (!strcmp(argv[i], "--dir") && i + 1 < argc)
            base = argv[++i];
        else {
            fprintf(stderr, "usage: audit_bench [--threads N] [--record BYTES] [--seconds S] "
                            "[--verify-mb MB] [--dir DIR]\n");
            return 2;
        }
    }
    if (threads < 1 || threads > 256 || record < 16 || seconds <= 0) {
        fprintf(stderr, "audit_bench: bad arguments\n");
        return 2;
    }
    log_set_level(LOG_WARN);
    printf("append (each writer waits for its record's done callback, as the gateway does; "
           "logs in %s):\n",
           base);
    if (run_append(base, CONFIG_SYNC_BATCH, "batch", threads, record, seconds) != 0 ||
        run_append(base, CONFIG_SYNC_NONE, "none", threads, record, seconds) != 0 ||
        run_append(base, CONFIG_SYNC_ALWAYS, "always", threads, record, seconds) != 0 ||
        run_append(base, CONFIG_SYNC_BATCH, "batch", 1, record, seconds) != 0)
        return 1;
    return run_verify(base, record, verify_mb) != 0;
}
