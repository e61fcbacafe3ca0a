/* audit_test_util.h -- helpers shared by the audit tests: temp dirs, waiting for
 * completions, whole-file read/write. */
#ifndef AIRLOCK_TESTS_AUDIT_UTIL_H
#define AIRLOCK_TESTS_AUDIT_UTIL_H

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit/audit.h"

/* Counts completions; waits until `want` have arrived. */
struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done, ok, failed;
};

static inline void waiter_init(struct waiter *w)
{
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    w->done = w->ok = w->failed = 0;
}

static inline void waiter_cb(void *ud, int status)
{
    struct waiter *w = ud;
    pthread_mutex_lock(&w->mu);
    w->done++;
    if (status == 0)
        w->ok++;
    else
        w->failed++;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static inline void waiter_wait(struct waiter *w, int want)
{
    pthread_mutex_lock(&w->mu);
    while (w->done < want)
        pthread_cond_wait(&w->cv, &w->mu);
    pthread_mutex_unlock(&w->mu);
}

static inline void waiter_deinit(struct waiter *w)
{
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
}

static inline char *tmp_dir(const char *tag)
{
    char buf[256];
    const char *base = getenv("TMPDIR");
    char *p;

    snprintf(buf, sizeof(buf), "%s/airlock-audit-%s-XXXXXX", base && *base ? base : "/tmp", tag);
    p = mkdtemp(buf);
    return p ? strdup(p) : NULL;
}

static inline void rm_rf(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char path[4096];

    if (!d)
        return;
    while ((de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

static inline uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf;
    long n;

    *len = 0;
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc(n > 0 ? (size_t)n : 1);
    if (buf && n > 0 && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *len = (size_t)(n > 0 ? n : 0);
    return buf;
}

static inline int write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    int rc;

    if (!f)
        return -1;
    rc = fwrite(data, 1, len, f) == len ? 0 : -1;
    if (fclose(f) != 0)
        rc = -1;
    return rc;
}

static inline int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static inline struct config_audit audit_cfg(char *dir, enum config_sync sync)
{
    struct config_audit c;
    memset(&c, 0, sizeof(c));
    c.dir = dir;
    c.sync = sync;
    c.on_failure = CONFIG_ON_FAILURE_REFUSE;
    return c;
}

/* append_n -- n request/response records with distinct metadata; waits for all. */
static inline int append_n(struct audit *a, int n, int first_id, size_t blob_len)
{
    struct waiter w;
    char meta[256];
    char *data = malloc(blob_len + 1);
    int i, rc = 0;

    if (!data)
        return -1;
    waiter_init(&w);
    for (i = 0; i < n; i++) {
        struct audit_blob b[2];
        int id = first_id + i;
        memset(data, 'a' + (id % 26), blob_len);
        snprintf(meta, sizeof(meta),
                 i % 2 ? "{\"id\":\"%032d\",\"key\":\"k%d\",\"team\":\"t%d\",\"provider\":\"p\","
                         "\"model\":\"m%d\",\"status\":200,\"usage\":{\"input_tokens\":10,"
                         "\"output_tokens\":5,\"cached_input_tokens\":2},\"cost_usd\":0.25}"
                       : "{\"id\":\"%032d\",\"key\":\"k%d\",\"team\":\"t%d\",\"model\":\"m%d\"}",
                 id / 2, (id / 2) % 3, (id / 2) % 2, (id / 2) % 2);
        b[0].name = i % 2 ? "upstream" : "inbound";
        b[0].data = data;
        b[0].len = blob_len;
        b[1].name = i % 2 ? "client" : "outbound";
        b[1].data = "hello \xe2\x9c\x93";
        b[1].len = 9;
        if (audit_append(a, i % 2 ? AUDIT_REC_RESPONSE : AUDIT_REC_REQUEST, meta, b, 2, waiter_cb,
                         &w) != 0) {
            rc = -1;
            break;
        }
    }
    waiter_wait(&w, i);
    if (w.failed)
        rc = -1;
    waiter_deinit(&w);
    free(data);
    return rc;
}

#endif
