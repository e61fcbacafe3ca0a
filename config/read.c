/* read.c -- reading one YAML value: strings with ${NAME} from the environment, names,
 * paths, integers, numbers, enums, lists of strings; and the checks on a mapping's keys.
 *
 * Each reader reports its own problem at the node it read (config_err) and returns NULL
 * or -1; the caller only decides what to do without the value. Strings are returned
 * malloc'd, owned by the caller. */
#include "config/config_int.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#define EXPAND_MAX (1u * 1024 * 1024)

static int in_list(const char *s, const char *const *list)
{
    for (size_t i = 0; list[i]; i++)
        if (strcmp(s, list[i]) == 0)
            return 1;
    return 0;
}

/* join_list -- "a, b, c" into buf, cut at cap. */
static void join_list(char *buf, size_t cap, const char *const *list)
{
    size_t off = 0;
    buf[0] = '\0';
    for (size_t i = 0; list[i] && off < cap; i++) {
        int w = snprintf(buf + off, cap - off, "%s%s", i ? ", " : "", list[i]);
        if (w < 0)
            break;
        off += (size_t)w;
    }
}

void config_read_map_check(struct config_loader *l, yaml_node_t *m, const char *what,
                           const char *const *allowed)
{
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        yaml_node_t *k = config_node(l, p->key);
        if (!config_is_scalar(k)) {
            config_err(l, k ? k : m, "keys in %s must be plain names", what);
            continue;
        }
        const char *name = (const char *)k->data.scalar.value;
        if (allowed && !in_list(name, allowed)) {
            char list[160];
            join_list(list, sizeof list, allowed);
            config_err(l, k, "unknown key '%.40s' in %s (allowed: %s)", name, what, list);
            continue;
        }
        for (yaml_node_pair_t *q = m->data.mapping.pairs.start; q < p; q++) {
            yaml_node_t *qk = config_node(l, q->key);
            if (config_is_scalar(qk) && strcmp((const char *)qk->data.scalar.value, name) == 0) {
                config_err(l, k, "duplicate key '%.40s' in %s", name, what);
                break;
            }
        }
    }
}

yaml_node_t *config_read_map_get(struct config_loader *l, yaml_node_t *m, const char *key)
{
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        yaml_node_t *k = config_node(l, p->key);
        if (config_is_scalar(k) && strcmp((const char *)k->data.scalar.value, key) == 0)
            return config_node(l, p->value);
    }
    return NULL;
}

/* expand -- a copy of s with every ${NAME} replaced from the environment. NULL on
 * error (reported at n). Buffers that held an expanded value are wiped: it may be a
 * secret. */
static char *expand(struct config_loader *l, yaml_node_t *n, const char *s, size_t len)
{
    size_t cap = len + 1, off = 0;
    char *out = malloc(cap);
    if (!out)
        goto oom;
    for (size_t i = 0; i < len;) {
        const char *add = s + i;
        size_t addlen = 1;
        if (s[i] == '$' && i + 1 < len && s[i + 1] == '{') {
            const char *close = memchr(s + i + 2, '}', len - i - 2);
            if (!close) {
                config_err(l, n, "unterminated '${' (expected ${NAME})");
                goto fail;
            }
            size_t nlen = (size_t)(close - (s + i + 2));
            char name[128];
            int ok = nlen > 0 && nlen < sizeof name && !(s[i + 2] >= '0' && s[i + 2] <= '9');
            for (size_t j = 0; ok && j < nlen; j++) {
                char c = s[i + 2 + j];
                ok = c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                     (c >= '0' && c <= '9');
            }
            if (!ok) {
                config_err(l, n, "bad environment reference '${%.*s}' (expected ${NAME})",
                           (int)(nlen > 40 ? 40 : nlen), s + i + 2);
                goto fail;
            }
            memcpy(name, s + i + 2, nlen);
            name[nlen] = '\0';
            const char *v = getenv(name);
            if (!v) {
                config_err(l, n, "environment variable %s is not set", name);
                goto fail;
            }
            add = v;
            addlen = strlen(v);
            i += nlen + 3;
        } else {
            i++;
        }
        if (addlen > EXPAND_MAX || off + addlen >= EXPAND_MAX) {
            config_err(l, n, "value too long after expanding environment variables");
            goto fail;
        }
        if (off + addlen + 1 > cap) {
            size_t ncap = (off + addlen + 1) * 2;
            char *nb = malloc(ncap);
            if (!nb)
                goto oom;
            memcpy(nb, out, off);
            sodium_memzero(out, cap);
            free(out);
            out = nb;
            cap = ncap;
        }
        memcpy(out + off, add, addlen);
        off += addlen;
    }
    out[off] = '\0';
    return out;
oom:
    config_err(l, n, "out of memory");
fail:
    if (out) {
        sodium_memzero(out, cap);
        free(out);
    }
    return NULL;
}

char *config_read_str(struct config_loader *l, yaml_node_t *n, const char *what)
{
    if (!config_is_scalar(n)) {
        config_err(l, n, "%s must be a string", what);
        return NULL;
    }
    const char *s = (const char *)n->data.scalar.value;
    size_t len = n->data.scalar.length;
    if (memchr(s, '\0', len)) {
        config_err(l, n, "%s contains a NUL byte", what);
        return NULL;
    }
    return expand(l, n, s, len);
}

char *config_read_name(struct config_loader *l, yaml_node_t *n, const char *what)
{
    char *s = config_read_str(l, n, what);
    if (s && !*s) {
        config_err(l, n, "%s must not be empty", what);
        free(s);
        return NULL;
    }
    return s;
}

char *config_read_path(struct config_loader *l, yaml_node_t *n, const char *what)
{
    char *p = config_read_name(l, n, what);
    if (!p || p[0] == '/' || !l->basedir || !*l->basedir || strcmp(l->basedir, ".") == 0)
        return p;
    size_t need = strlen(l->basedir) + 1 + strlen(p) + 1;
    char *r = malloc(need);
    if (!r) {
        config_err(l, n, "out of memory");
        free(p);
        return NULL;
    }
    snprintf(r, need, "%s/%s", l->basedir, p);
    free(p);
    return r;
}

void config_read_readable(struct config_loader *l, yaml_node_t *n, const char *what,
                          const char *path)
{
    char eb[128];
    if (access(path, R_OK) != 0)
        config_err(l, n, "%s '%.120s' cannot be read: %s", what, path,
                   strerror_r(errno, eb, sizeof eb));
}

/* config_read_int -- plain decimal digits with an optional '-', nothing else: "5s",
 * "1.5" and " 5" are refused rather than read as 5, 1 and 5. */
int config_read_int(struct config_loader *l, yaml_node_t *n, const char *what, long long min,
                    long long max, long long *out)
{
    char *s = config_read_str(l, n, what);
    if (!s)
        return -1;
    char *end = NULL;
    errno = 0;
    long long v = (s[0] == '-' || (s[0] >= '0' && s[0] <= '9')) ? strtoll(s, &end, 10) : 0;
    int ok = end && end != s && *end == '\0' && errno == 0;
    if (!ok)
        config_err(l, n, "%s must be an integer, not '%.40s'", what, s);
    else if (v < min || v > max)
        config_err(l, n, "%s must be between %lld and %lld, not %lld", what, min, max, v);
    free(s);
    if (!ok || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

int config_read_number(struct config_loader *l, yaml_node_t *n, const char *what, double min,
                       double max, double *out)
{
    char *s = config_read_str(l, n, what);
    if (!s)
        return -1;
    char *end = NULL;
    double v = (s[0] == '-' || s[0] == '.' || (s[0] >= '0' && s[0] <= '9')) ? strtod(s, &end) : 0;
    int ok = end && end != s && *end == '\0' && isfinite(v);
    if (!ok)
        config_err(l, n, "%s must be a number, not '%.40s'", what, s);
    else if (v < min || v > max)
        config_err(l, n, "%s must be between %g and %g, not %g", what, min, max, v);
    free(s);
    if (!ok || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

int config_read_enum(struct config_loader *l, yaml_node_t *n, const char *what,
                     const char *const *names)
{
    char *s = config_read_str(l, n, what);
    if (!s)
        return -1;
    for (int i = 0; names[i]; i++) {
        if (strcmp(s, names[i]) == 0) {
            free(s);
            return i;
        }
    }
    char list[160];
    join_list(list, sizeof list, names);
    config_err(l, n, "%s must be one of %s, not '%.40s'", what, list, s);
    free(s);
    return -1;
}

int config_read_port(const char *s, size_t len)
{
    if (len == 0 || len > 5)
        return -1;
    int v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v >= 1 && v <= 65535 ? v : -1;
}

void config_read_strv_free(char **v, size_t n)
{
    if (!v)
        return;
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

int config_read_strv(struct config_loader *l, yaml_node_t *n, const char *what, char ***out,
                     size_t *nout)
{
    *out = NULL;
    *nout = 0;
    if (config_is_scalar(n)) {
        char **v = calloc(1, sizeof *v);
        if (!v || !(v[0] = config_read_name(l, n, what))) {
            free(v);
            return -1;
        }
        *out = v;
        *nout = 1;
        return 0;
    }
    if (!config_is_seq(n)) {
        config_err(l, n, "%s must be a list of strings", what);
        return -1;
    }
    size_t cnt = config_seq_len(n);
    if (cnt == 0) {
        config_err(l, n, "%s must not be an empty list", what);
        return -1;
    }
    char **v = calloc(cnt, sizeof *v);
    if (!v) {
        config_err(l, n, "out of memory");
        return -1;
    }
    size_t k = 0;
    int bad = 0;
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
         it++) {
        char *s = config_read_name(l, config_node(l, *it), what);
        if (!s)
            bad = 1;
        else
            v[k++] = s;
    }
    if (bad) {
        config_read_strv_free(v, k);
        return -1;
    }
    *out = v;
    *nout = k;
    return 0;
}

int config_read_file(const char *path, size_t cap, char **out, size_t *len, char *why,
                     size_t whycap)
{
    char eb[128];
    struct stat st;
    char *buf = NULL;
    /* O_NONBLOCK: a FIFO named as a config must not hang the loader */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0 || fstat(fd, &st) != 0) {
        snprintf(why, whycap, "cannot read: %s", strerror_r(errno, eb, sizeof eb));
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(why, whycap, "not a regular file");
        goto fail;
    }
    if ((unsigned long long)st.st_size > cap) {
        snprintf(why, whycap, "file too large (%lld bytes; the limit is %zu)",
                 (long long)st.st_size, cap);
        goto fail;
    }
    size_t size = (size_t)st.st_size, got = 0;
    buf = malloc(size + 1);
    if (!buf) {
        snprintf(why, whycap, "out of memory");
        goto fail;
    }
    while (got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            snprintf(why, whycap, "cannot read: %s", strerror_r(errno, eb, sizeof eb));
            goto fail;
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    buf[got] = '\0';
    close(fd);
    *out = buf;
    *len = got;
    return 0;
fail:
    free(buf);
    if (fd >= 0)
        close(fd);
    return -1;
}
