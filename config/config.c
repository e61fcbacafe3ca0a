/* config.c -- load and validate the YAML configuration into an immutable snapshot.
 *
 * The file is parsed with libyaml's document API (every node keeps its start mark, so
 * every problem gets a line and column). Sections are then read in a fixed order --
 * listen, keys, providers, models, detectors, rules, audit, limits -- whatever their
 * order in the file, so that later sections can check references to earlier ones.
 * Problems are collected, not fatal: reading goes on to report as many as it can. */
#include "config/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>
#include <yaml.h>

#define CONFIG_MAX_FILE (16u * 1024 * 1024)
#define EXPAND_MAX (1u * 1024 * 1024)
/* entries in one list or mapping: keeps the quadratic duplicate checks cheap */
#define CONFIG_MAX_ITEMS 10000
/* nesting of lists/mappings; the schema needs 5 */
#define CONFIG_MAX_DEPTH 32
/* nodes in the whole file: bounds the loader's memory (~100 bytes a node) */
#define CONFIG_MAX_NODES 200000

/* Kept here rather than asked of policy: config must not depend on policy, and these
 * names are part of the external contract (SPEC §4), so they change rarely. */
static const char *const builtin_detectors[] = {
    "email",         "phone",       "credit_card",    "iban",         "us_ssn",
    "ipv4",          "private_key", "aws_access_key", "github_token", "openai_key",
    "anthropic_key", "jwt",         "generic_secret", NULL,
};
static const char *const detector_groups[] = {"pii", "secrets", NULL};

struct ld {
    yaml_document_t doc;
    struct config_errors *errs;
    struct config *cfg;
    const char *basedir; /* NULL or "": paths stay as written */
};

static void verr(struct ld *l, int line, int col, const char *fmt, va_list ap)
{
    struct config_errors *e = l->errs;
    if (e->n >= CONFIG_MAX_ERRORS) {
        e->dropped++;
        return;
    }
    struct config_error *it = &e->items[e->n++];
    it->line = line;
    it->col = col;
    vsnprintf(it->message, sizeof it->message, fmt, ap);
}

static void __attribute__((format(printf, 3, 4)))
err(struct ld *l, const yaml_node_t *n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (n)
        verr(l, (int)n->start_mark.line + 1, (int)n->start_mark.column + 1, fmt, ap);
    else
        verr(l, 0, 0, fmt, ap);
    va_end(ap);
}

static void __attribute__((format(printf, 3, 4)))
err_pos(struct ld *l, struct config_pos pos, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verr(l, pos.line, pos.col, fmt, ap);
    va_end(ap);
}

static void __attribute__((format(printf, 3, 4)))
verr_at_mark(struct ld *l, yaml_mark_t mark, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verr(l, (int)mark.line + 1, (int)mark.column + 1, fmt, ap);
    va_end(ap);
}

static struct config_pos pos_of(const yaml_node_t *n)
{
    struct config_pos p = {0, 0};
    if (n) {
        p.line = (int)n->start_mark.line + 1;
        p.col = (int)n->start_mark.column + 1;
    }
    return p;
}

static yaml_node_t *node(struct ld *l, int i)
{
    return yaml_document_get_node(&l->doc, i);
}

static int is_map(const yaml_node_t *n)
{
    return n && n->type == YAML_MAPPING_NODE;
}

static int is_seq(const yaml_node_t *n)
{
    return n && n->type == YAML_SEQUENCE_NODE;
}

static int is_scalar(const yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE;
}

static size_t seq_len(const yaml_node_t *n)
{
    return (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
}

static int in_list(const char *s, const char *const *list)
{
    for (size_t i = 0; list[i]; i++)
        if (strcmp(s, list[i]) == 0)
            return 1;
    return 0;
}

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

/* map_check -- every key of mapping m is a scalar, allowed (when `allowed` is not
 * NULL) and unique. `what` names the mapping in messages. */
static void map_check(struct ld *l, yaml_node_t *m, const char *what, const char *const *allowed)
{
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node(l, p->key);
        if (!is_scalar(k)) {
            err(l, k ? k : m, "keys in %s must be plain names", what);
            continue;
        }
        const char *name = (const char *)k->data.scalar.value;
        if (allowed && !in_list(name, allowed)) {
            char list[160];
            join_list(list, sizeof list, allowed);
            err(l, k, "unknown key '%.40s' in %s (allowed: %s)", name, what, list);
            continue;
        }
        for (yaml_node_pair_t *q = m->data.mapping.pairs.start; q < p; q++) {
            yaml_node_t *qk = node(l, q->key);
            if (is_scalar(qk) && strcmp((const char *)qk->data.scalar.value, name) == 0) {
                err(l, k, "duplicate key '%.40s' in %s", name, what);
                break;
            }
        }
    }
}

/* map_get -- the value of the first `key` in mapping m, NULL when absent. */
static yaml_node_t *map_get(struct ld *l, yaml_node_t *m, const char *key)
{
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node(l, p->key);
        if (is_scalar(k) && strcmp((const char *)k->data.scalar.value, key) == 0)
            return node(l, p->value);
    }
    return NULL;
}

/* expand -- a copy of s with every ${NAME} replaced from the environment. NULL on
 * error (reported at n). */
static char *expand(struct ld *l, yaml_node_t *n, const char *s, size_t len)
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
                err(l, n, "unterminated '${' (expected ${NAME})");
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
                err(l, n, "bad environment reference '${%.*s}' (expected ${NAME})",
                    (int)(nlen > 40 ? 40 : nlen), s + i + 2);
                goto fail;
            }
            memcpy(name, s + i + 2, nlen);
            name[nlen] = '\0';
            const char *v = getenv(name);
            if (!v) {
                err(l, n, "environment variable %s is not set", name);
                goto fail;
            }
            add = v;
            addlen = strlen(v);
            i += nlen + 3;
        } else {
            i++;
        }
        if (addlen > EXPAND_MAX || off + addlen >= EXPAND_MAX) {
            err(l, n, "value too long after expanding environment variables");
            goto fail;
        }
        if (off + addlen + 1 > cap) {
            size_t ncap = (off + addlen + 1) * 2;
            char *nb = malloc(ncap);
            if (!nb)
                goto oom;
            memcpy(nb, out, off);
            sodium_memzero(out, cap); /* may hold an expanded secret */
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
    err(l, n, "out of memory");
fail:
    if (out) {
        sodium_memzero(out, cap);
        free(out);
    }
    return NULL;
}

/* str_of -- the expanded text of scalar n (owned by the caller); NULL on error. */
static char *str_of(struct ld *l, yaml_node_t *n, const char *what)
{
    if (!is_scalar(n)) {
        err(l, n, "%s must be a string", what);
        return NULL;
    }
    const char *s = (const char *)n->data.scalar.value;
    size_t len = n->data.scalar.length;
    if (memchr(s, '\0', len)) {
        err(l, n, "%s contains a NUL byte", what);
        return NULL;
    }
    return expand(l, n, s, len);
}

/* name_of -- a required non-empty name. */
static char *name_of(struct ld *l, yaml_node_t *n, const char *what)
{
    char *s = str_of(l, n, what);
    if (s && !*s) {
        err(l, n, "%s must not be empty", what);
        free(s);
        return NULL;
    }
    return s;
}

static char *req_str(struct ld *l, yaml_node_t *m, const char *key, const char *what)
{
    yaml_node_t *v = map_get(l, m, key);
    if (!v) {
        err(l, m, "%s: missing required field '%s'", what, key);
        return NULL;
    }
    return name_of(l, v, key);
}

/* int_of -- an integer in [min, max]; 0 or -1 (reported). */
static int int_of(struct ld *l, yaml_node_t *n, const char *what, long long min, long long max,
                  long long *out)
{
    char *s = str_of(l, n, what);
    if (!s)
        return -1;
    char *end = NULL;
    errno = 0;
    long long v = (s[0] == '-' || (s[0] >= '0' && s[0] <= '9')) ? strtoll(s, &end, 10) : 0;
    int ok = end && end != s && *end == '\0' && errno == 0;
    if (!ok)
        err(l, n, "%s must be an integer, not '%.40s'", what, s);
    else if (v < min || v > max)
        err(l, n, "%s must be between %lld and %lld, not %lld", what, min, max, v);
    free(s);
    if (!ok || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static int num_of(struct ld *l, yaml_node_t *n, const char *what, double min, double max,
                  double *out)
{
    char *s = str_of(l, n, what);
    if (!s)
        return -1;
    char *end = NULL;
    double v = (s[0] == '-' || s[0] == '.' || (s[0] >= '0' && s[0] <= '9')) ? strtod(s, &end) : 0;
    int ok = end && end != s && *end == '\0' && isfinite(v);
    if (!ok)
        err(l, n, "%s must be a number, not '%.40s'", what, s);
    else if (v < min || v > max)
        err(l, n, "%s must be between %g and %g, not %g", what, min, max, v);
    free(s);
    if (!ok || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static void opt_int(struct ld *l, yaml_node_t *m, const char *key, long long min, long long max,
                    int *out)
{
    yaml_node_t *v = map_get(l, m, key);
    long long x;
    if (v && int_of(l, v, key, min, max, &x) == 0)
        *out = (int)x;
}

/* enum_of -- index of the scalar's value in `names`, -1 (reported) if not there. */
static int enum_of(struct ld *l, yaml_node_t *n, const char *what, const char *const *names)
{
    char *s = str_of(l, n, what);
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
    err(l, n, "%s must be one of %s, not '%.40s'", what, list, s);
    free(s);
    return -1;
}

static void free_strv(char **v, size_t n)
{
    if (!v)
        return;
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* str_list -- a scalar or a list of scalars into a new vector. 0 or -1 (reported). */
static int str_list(struct ld *l, yaml_node_t *n, const char *what, char ***out, size_t *nout)
{
    *out = NULL;
    *nout = 0;
    if (is_scalar(n)) {
        char **v = calloc(1, sizeof *v);
        if (!v || !(v[0] = name_of(l, n, what))) {
            free(v);
            return -1;
        }
        *out = v;
        *nout = 1;
        return 0;
    }
    if (!is_seq(n)) {
        err(l, n, "%s must be a list of strings", what);
        return -1;
    }
    size_t cnt = seq_len(n);
    if (cnt == 0) {
        err(l, n, "%s must not be an empty list", what);
        return -1;
    }
    char **v = calloc(cnt, sizeof *v);
    if (!v) {
        err(l, n, "out of memory");
        return -1;
    }
    size_t k = 0;
    int bad = 0;
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
         it++) {
        char *s = name_of(l, node(l, *it), what);
        if (!s)
            bad = 1;
        else
            v[k++] = s;
    }
    if (bad) {
        free_strv(v, k);
        return -1;
    }
    *out = v;
    *nout = k;
    return 0;
}

/* resolve -- path made absolute against the config's directory; consumes p. */
static char *resolve(struct ld *l, char *p)
{
    if (!p || p[0] == '/' || !l->basedir || !*l->basedir || strcmp(l->basedir, ".") == 0)
        return p;
    size_t need = strlen(l->basedir) + 1 + strlen(p) + 1;
    char *r = malloc(need);
    if (!r) {
        err(l, NULL, "out of memory");
        free(p);
        return NULL;
    }
    snprintf(r, need, "%s/%s", l->basedir, p);
    free(p);
    return r;
}

static void check_readable(struct ld *l, yaml_node_t *n, const char *what, const char *path)
{
    char eb[128];
    if (access(path, R_OK) != 0)
        err(l, n, "%s '%.120s' cannot be read: %s", what, path, strerror_r(errno, eb, sizeof eb));
}

/* read_file -- the whole regular file at path, at most `cap` bytes, NUL-terminated.
 * 0, or -1 with a reason in why. */
static int read_file(const char *path, size_t cap, char **out, size_t *len, char *why,
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

/* --- listen ------------------------------------------------------------------------ */

static int host_is_loopback(const char *host)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (strcmp(host, "localhost") == 0)
        return 1;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6);
    return 0;
}

/* parse_port -- "1".."65535" fully consumed; -1 otherwise. */
static int parse_port(const char *s, size_t len)
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

/* split_hostport -- "HOST:PORT" or "[V6]:PORT" into a new host and a port. */
static int split_hostport(const char *a, char **host, int *port)
{
    const char *h, *colon;
    size_t hlen;
    if (a[0] == '[') {
        const char *rb = strchr(a, ']');
        if (!rb || rb[1] != ':')
            return -1;
        h = a + 1;
        hlen = (size_t)(rb - h);
        colon = rb + 1;
    } else {
        colon = strrchr(a, ':');
        if (!colon)
            return -1;
        h = a;
        hlen = (size_t)(colon - a);
        if (memchr(h, ':', hlen))
            return -1; /* an IPv6 address must be bracketed */
    }
    if (hlen == 0)
        return -1;
    int p = parse_port(colon + 1, strlen(colon + 1));
    if (p < 0)
        return -2;
    *host = strndup(h, hlen);
    if (!*host)
        return -3;
    *port = p;
    return 0;
}

static void load_listen(struct ld *l, yaml_node_t *sec)
{
    static const char *const allowed[] = {"address", "tls", NULL};
    static const char *const tls_allowed[] = {"cert", "key", NULL};
    struct config *cfg = l->cfg;
    if (!is_seq(sec)) {
        err(l, sec, "listen must be a list");
        return;
    }
    size_t cnt = seq_len(sec);
    if (cnt == 0) {
        err(l, sec, "listen must have at least one address");
        return;
    }
    cfg->listens = calloc(cnt, sizeof *cfg->listens);
    if (!cfg->listens) {
        err(l, sec, "out of memory");
        return;
    }
    for (yaml_node_item_t *it = sec->data.sequence.items.start; it < sec->data.sequence.items.top;
         it++) {
        yaml_node_t *m = node(l, *it);
        if (!is_map(m)) {
            err(l, m, "each listen entry must be a mapping like {address: 127.0.0.1:8080}");
            continue;
        }
        map_check(l, m, "listen entry", allowed);
        struct config_listen *ls = &cfg->listens[cfg->n_listens++];
        ls->pos = pos_of(m);
        ls->address = req_str(l, m, "address", "listen entry");
        if (ls->address) {
            int r = split_hostport(ls->address, &ls->host, &ls->port);
            if (r == -1)
                err(l, map_get(l, m, "address"),
                    "listen address '%.60s' must be HOST:PORT (IPv6 as [::1]:PORT)", ls->address);
            else if (r == -2)
                err(l, map_get(l, m, "address"), "invalid port in listen address '%.60s' (1-65535)",
                    ls->address);
            else if (r == -3)
                err(l, m, "out of memory");
            else
                ls->loopback = host_is_loopback(ls->host);
        }
        yaml_node_t *tls = map_get(l, m, "tls");
        if (tls) {
            if (!is_map(tls)) {
                err(l, tls, "tls must be a mapping {cert: FILE, key: FILE}");
            } else {
                map_check(l, tls, "tls", tls_allowed);
                ls->tls_cert = resolve(l, req_str(l, tls, "cert", "tls"));
                ls->tls_key = resolve(l, req_str(l, tls, "key", "tls"));
                if (ls->tls_cert)
                    check_readable(l, map_get(l, tls, "cert"), "tls cert", ls->tls_cert);
                if (ls->tls_key)
                    check_readable(l, map_get(l, tls, "key"), "tls key", ls->tls_key);
            }
        } else if (ls->host && !ls->loopback) {
            err(l, m,
                "listen address '%.60s' is not loopback: plain HTTP is only allowed on "
                "loopback; add tls: {cert, key}",
                ls->address);
        }
    }
}

/* --- keys -------------------------------------------------------------------------- */

static int hex_decode32(const char *s, uint8_t out[32])
{
    if (strlen(s) != 64)
        return -1;
    for (size_t i = 0; i < 32; i++) {
        int v = 0;
        for (int j = 0; j < 2; j++) {
            char c = s[2 * i + (size_t)j];
            int d = (c >= '0' && c <= '9')   ? c - '0'
                    : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                    : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                                             : -1;
            if (d < 0)
                return -1;
            v = v * 16 + d;
        }
        out[i] = (uint8_t)v;
    }
    return 0;
}

/* list_alloc -- a section that must be a list: one zeroed element per entry (at least
 * one, so an empty list is still a valid pointer), or NULL with the error reported. */
static void *list_alloc(struct ld *l, yaml_node_t *sec, const char *what, size_t elem)
{
    void *v;

    if (!is_seq(sec)) {
        err(l, sec, "%s must be a list", what);
        return NULL;
    }
    v = calloc(seq_len(sec) ? seq_len(sec) : 1, elem);
    if (!v)
        err(l, sec, "out of memory");
    return v;
}

static void load_keys(struct ld *l, yaml_node_t *sec)
{
    static const char *const allowed[] = {"name", "team", "key", "key_sha256", "budget_usd_per_day",
                                          NULL};
    struct config *cfg = l->cfg;
    cfg->auth = 1;
    cfg->keys = list_alloc(l, sec, "keys", sizeof *cfg->keys);
    if (!cfg->keys)
        return;
    for (yaml_node_item_t *it = sec->data.sequence.items.start; it < sec->data.sequence.items.top;
         it++) {
        yaml_node_t *m = node(l, *it);
        if (!is_map(m)) {
            err(l, m, "each keys entry must be a mapping {name, team, key | key_sha256}");
            continue;
        }
        map_check(l, m, "keys entry", allowed);
        struct config_key *k = &cfg->keys[cfg->n_keys];
        k->pos = pos_of(m);
        k->budget_usd_per_day = -1;
        k->name = req_str(l, m, "name", "keys entry");
        yaml_node_t *tn = map_get(l, m, "team");
        if (tn)
            k->team = name_of(l, tn, "team");
        yaml_node_t *bn = map_get(l, m, "budget_usd_per_day");
        if (bn)
            num_of(l, bn, "budget_usd_per_day", 0, 1e12, &k->budget_usd_per_day);
        yaml_node_t *pn = map_get(l, m, "key"), *hn = map_get(l, m, "key_sha256");
        int have_hash = 0;
        if (pn && hn) {
            err(l, m, "keys entry: give either key or key_sha256, not both");
        } else if (!pn && !hn) {
            err(l, m, "keys entry: missing required field 'key' or 'key_sha256'");
        } else if (pn) {
            char *plain = name_of(l, pn, "key");
            if (plain) {
                crypto_hash_sha256(k->key_sha256, (const unsigned char *)plain, strlen(plain));
                sodium_memzero(plain, strlen(plain));
                free(plain);
                have_hash = 1;
            }
            /* the plaintext also sits in the parsed document */
            if (is_scalar(pn))
                sodium_memzero(pn->data.scalar.value, pn->data.scalar.length);
        } else {
            char *hex = str_of(l, hn, "key_sha256");
            if (hex && hex_decode32(hex, k->key_sha256) != 0)
                err(l, hn, "key_sha256 must be 64 hex characters (the SHA-256 of the key)");
            else if (hex)
                have_hash = 1;
            free(hex);
        }
        if (k->name) {
            for (size_t j = 0; j < cfg->n_keys; j++) {
                if (cfg->keys[j].name && strcmp(cfg->keys[j].name, k->name) == 0) {
                    err(l, m, "duplicate key name '%.40s' (first at line %d)", k->name,
                        cfg->keys[j].pos.line);
                    break;
                }
            }
        }
        if (have_hash) {
            for (size_t j = 0; j < cfg->n_keys; j++) {
                if (sodium_memcmp(cfg->keys[j].key_sha256, k->key_sha256, 32) == 0) {
                    err(l, m, "keys entry has the same key as '%.40s'",
                        cfg->keys[j].name ? cfg->keys[j].name : "?");
                    break;
                }
            }
        }
        cfg->n_keys++;
    }
}

/* --- providers ---------------------------------------------------------------------- */

/* parse_base_url -- http(s)://host[:port][/path] into p's fields. */
static int parse_base_url(struct config_provider *p)
{
    const char *u = p->base_url, *rest;
    if (strncmp(u, "https://", 8) == 0) {
        p->tls = 1;
        p->port = 443;
        rest = u + 8;
    } else if (strncmp(u, "http://", 7) == 0) {
        p->tls = 0;
        p->port = 80;
        rest = u + 7;
    } else {
        return -1;
    }
    for (const char *c = rest; *c; c++)
        if (*c <= ' ' || *c == '?' || *c == '#' || *c == '@' || *c == '\\' || *c == 0x7f)
            return -1;
    const char *hs = rest, *he, *after;
    if (*rest == '[') {
        const char *rb = strchr(rest, ']');
        if (!rb)
            return -1;
        hs = rest + 1;
        he = rb;
        after = rb + 1;
    } else {
        he = rest + strcspn(rest, ":/");
        after = he;
    }
    if (he == hs)
        return -1;
    if (*after == ':') {
        size_t plen = strcspn(after + 1, "/");
        int port = parse_port(after + 1, plen);
        if (port < 0)
            return -1;
        p->port = port;
        after += 1 + plen;
    } else if (*after != '/' && *after != '\0') {
        return -1;
    }
    p->host = strndup(hs, (size_t)(he - hs));
    size_t plen = strlen(after);
    while (plen > 0 && after[plen - 1] == '/')
        plen--;
    p->path_prefix = strndup(after, plen);
    return p->host && p->path_prefix ? 0 : -1;
}

static int valid_ident(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || *s == '-' || *s == '.'))
            return 0;
    return 1;
}

static void load_providers(struct ld *l, yaml_node_t *sec)
{
    static const char *const allowed[] = {"type",       "zone",  "base_url", "api_key", "ca_file",
                                          "timeout_ms", "model", "threads",  "context", NULL};
    static const char *const types[] = {"openai", "anthropic", "openai-compatible", "builtin",
                                        NULL};
    static const char *const zones[] = {"external", "internal", NULL};
    struct config *cfg = l->cfg;
    if (!is_map(sec)) {
        err(l, sec, "providers must be a mapping of name -> {type, ...}");
        return;
    }
    map_check(l, sec, "providers", NULL);
    size_t cnt = (size_t)(sec->data.mapping.pairs.top - sec->data.mapping.pairs.start);
    cfg->providers = calloc(cnt ? cnt : 1, sizeof *cfg->providers);
    if (!cfg->providers) {
        err(l, sec, "out of memory");
        return;
    }
    for (yaml_node_pair_t *pr = sec->data.mapping.pairs.start; pr < sec->data.mapping.pairs.top;
         pr++) {
        yaml_node_t *kn = node(l, pr->key), *m = node(l, pr->value);
        if (!is_scalar(kn))
            continue; /* reported by map_check */
        const char *pname = (const char *)kn->data.scalar.value;
        int dup = 0;
        for (size_t j = 0; j < cfg->n_providers; j++)
            dup |= strcmp(cfg->providers[j].name, pname) == 0;
        if (dup)
            continue; /* reported by map_check */
        if (!valid_ident(pname)) {
            err(l, kn, "provider name '%.40s' may only contain letters, digits, '_', '-', '.'",
                pname);
            continue;
        }
        if (!is_map(m)) {
            err(l, m ? m : kn, "provider '%.40s' must be a mapping {type, ...}", pname);
            continue;
        }
        map_check(l, m, "provider", allowed);
        struct config_provider *p = &cfg->providers[cfg->n_providers];
        p->name = strdup(pname);
        if (!p->name) {
            err(l, kn, "out of memory");
            continue;
        }
        cfg->n_providers++;
        p->pos = pos_of(kn);
        p->zone = CONFIG_ZONE_EXTERNAL;
        yaml_node_t *tn = map_get(l, m, "type");
        int type = -1;
        if (!tn)
            err(l, m, "provider '%.40s': missing required field 'type'", pname);
        else
            type = enum_of(l, tn, "type", types);
        if (type >= 0)
            p->type = (enum config_provider_type)type;
        yaml_node_t *zn = map_get(l, m, "zone");
        int zone = zn ? enum_of(l, zn, "zone", zones) : -1;
        if (zone == 0)
            p->zone = CONFIG_ZONE_EXTERNAL;
        else if (zone == 1)
            p->zone = CONFIG_ZONE_INTERNAL;
        opt_int(l, m, "timeout_ms", 1, 3600000, &p->timeout_ms);
        yaml_node_t *bn = map_get(l, m, "base_url"), *an = map_get(l, m, "api_key"),
                    *cn = map_get(l, m, "ca_file"), *mn = map_get(l, m, "model");
        if (type == CONFIG_PROVIDER_BUILTIN) {
            p->zone = CONFIG_ZONE_INTERNAL;
            if (zone == 0)
                err(l, zn, "provider '%.40s': a builtin provider is always zone internal", pname);
            if (bn)
                err(l, bn, "provider '%.40s': base_url is not used by a builtin provider", pname);
            if (an)
                err(l, an, "provider '%.40s': api_key is not used by a builtin provider", pname);
            if (cn)
                err(l, cn, "provider '%.40s': ca_file is not used by a builtin provider", pname);
            if (!mn)
                err(l, m, "provider '%.40s': a builtin provider needs 'model: FILE.gguf'", pname);
            else
                p->model_path = resolve(l, name_of(l, mn, "model"));
            opt_int(l, m, "threads", 0, 1024, &p->threads);
            opt_int(l, m, "context", 0, 1 << 20, &p->context);
        } else if (type >= 0) {
            static const char *const builtin_only[] = {"model", "threads", "context", NULL};
            for (size_t i = 0; builtin_only[i]; i++) {
                yaml_node_t *x = map_get(l, m, builtin_only[i]);
                if (x)
                    err(l, x, "provider '%.40s': %s is only used by a builtin provider", pname,
                        builtin_only[i]);
            }
            if (!bn) {
                err(l, m, "provider '%.40s': missing required field 'base_url'", pname);
            } else if ((p->base_url = str_of(l, bn, "base_url")) && parse_base_url(p) != 0) {
                err(l, bn, "base_url '%.80s' must be http(s)://HOST[:PORT][/PATH]", p->base_url);
            }
            if (an) {
                char *key = str_of(l, an, "api_key");
                if (key) {
                    size_t klen = strlen(key);
                    p->api_key = sodium_malloc(klen + 1);
                    if (p->api_key)
                        memcpy(p->api_key, key, klen + 1);
                    else
                        err(l, an, "out of memory");
                    sodium_memzero(key, klen);
                    free(key);
                }
                if (is_scalar(an))
                    sodium_memzero(an->data.scalar.value, an->data.scalar.length);
            }
            if (cn) {
                p->ca_file = resolve(l, name_of(l, cn, "ca_file"));
                if (p->ca_file)
                    check_readable(l, cn, "ca_file", p->ca_file);
            }
        }
    }
}

/* --- models ------------------------------------------------------------------------ */

static void load_models(struct ld *l, yaml_node_t *sec)
{
    static const char *const allowed[] = {"name", "provider", "upstream_model", "price", NULL};
    static const char *const price_allowed[] = {"input_per_mtok", "output_per_mtok",
                                                "cached_input_per_mtok", NULL};
    struct config *cfg = l->cfg;
    cfg->models = list_alloc(l, sec, "models", sizeof *cfg->models);
    if (!cfg->models)
        return;
    for (yaml_node_item_t *it = sec->data.sequence.items.start; it < sec->data.sequence.items.top;
         it++) {
        yaml_node_t *m = node(l, *it);
        if (!is_map(m)) {
            err(l, m, "each models entry must be a mapping {name, provider, ...}");
            continue;
        }
        map_check(l, m, "models entry", allowed);
        struct config_model *md = &cfg->models[cfg->n_models];
        md->pos = pos_of(m);
        md->cached_input_per_mtok = -1;
        md->name = req_str(l, m, "name", "models entry");
        md->provider = req_str(l, m, "provider", "models entry");
        yaml_node_t *un = map_get(l, m, "upstream_model");
        md->upstream_model =
            un ? name_of(l, un, "upstream_model") : (md->name ? strdup(md->name) : NULL);
        if (md->provider) {
            const struct config_provider *p = config_provider_find(cfg, md->provider);
            if (!p)
                err(l, map_get(l, m, "provider"), "model '%.40s': unknown provider '%.40s'",
                    md->name ? md->name : "?", md->provider);
            else
                md->provider_index = (size_t)(p - cfg->providers);
        }
        yaml_node_t *pn = map_get(l, m, "price");
        if (pn && !is_map(pn)) {
            err(l, pn, "price must be a mapping {input_per_mtok, output_per_mtok}");
        } else if (pn) {
            map_check(l, pn, "price", price_allowed);
            yaml_node_t *x;
            if ((x = map_get(l, pn, "input_per_mtok")))
                num_of(l, x, "input_per_mtok", 0, 1e9, &md->input_per_mtok);
            if ((x = map_get(l, pn, "output_per_mtok")))
                num_of(l, x, "output_per_mtok", 0, 1e9, &md->output_per_mtok);
            if ((x = map_get(l, pn, "cached_input_per_mtok")))
                num_of(l, x, "cached_input_per_mtok", 0, 1e9, &md->cached_input_per_mtok);
        }
        if (md->name) {
            for (size_t j = 0; j < cfg->n_models; j++) {
                if (cfg->models[j].name && strcmp(cfg->models[j].name, md->name) == 0) {
                    err(l, m, "duplicate model name '%.40s' (first at line %d)", md->name,
                        cfg->models[j].pos.line);
                    break;
                }
            }
        }
        cfg->n_models++;
    }
}

/* --- detectors ---------------------------------------------------------------------- */

static int load_keywords_file(struct ld *l, yaml_node_t *n, struct config_detector *d)
{
    char *buf = NULL, why[200];
    size_t len = 0;
    if (read_file(d->keywords_file, CONFIG_MAX_FILE, &buf, &len, why, sizeof why) != 0) {
        err(l, n, "keywords_file '%.120s': %s", d->keywords_file, why);
        return -1;
    }
    size_t lines = 1;
    for (size_t i = 0; i < len; i++)
        lines += buf[i] == '\n';
    d->keywords = calloc(lines, sizeof *d->keywords);
    if (!d->keywords) {
        free(buf);
        err(l, n, "out of memory");
        return -1;
    }
    char *save = NULL;
    for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        while (*line == ' ' || *line == '\t')
            line++;
        size_t ll = strlen(line);
        while (ll > 0 && (line[ll - 1] == ' ' || line[ll - 1] == '\t' || line[ll - 1] == '\r'))
            line[--ll] = '\0';
        if (ll == 0 || line[0] == '#')
            continue;
        if (memchr(line, '\0', ll)) /* cannot happen after strlen; keeps intent explicit */
            continue;
        if (!(d->keywords[d->n_keywords] = strdup(line))) {
            free(buf);
            err(l, n, "out of memory");
            return -1;
        }
        d->n_keywords++;
    }
    free(buf);
    if (d->n_keywords == 0) {
        err(l, n, "keywords_file '%.120s' has no keywords", d->keywords_file);
        return -1;
    }
    return 0;
}

static void load_detectors(struct ld *l, yaml_node_t *sec)
{
    static const char *const allowed[] = {"name", "regex", "keywords", "keywords_file", NULL};
    struct config *cfg = l->cfg;
    cfg->detectors = list_alloc(l, sec, "detectors", sizeof *cfg->detectors);
    if (!cfg->detectors)
        return;
    for (yaml_node_item_t *it = sec->data.sequence.items.start; it < sec->data.sequence.items.top;
         it++) {
        yaml_node_t *m = node(l, *it);
        if (!is_map(m)) {
            err(l, m, "each detectors entry must be a mapping {name, regex | keywords}");
            continue;
        }
        map_check(l, m, "detectors entry", allowed);
        struct config_detector *d = &cfg->detectors[cfg->n_detectors];
        d->pos = pos_of(m);
        d->name = req_str(l, m, "name", "detectors entry");
        yaml_node_t *nn = map_get(l, m, "name");
        if (d->name) {
            int bad = 0;
            for (const char *c = d->name; *c; c++)
                bad |= !((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                         (*c >= '0' && *c <= '9') || *c == '_' || *c == '-');
            if (bad)
                err(l, nn, "detector name '%.40s' may only contain letters, digits, '_', '-'",
                    d->name);
            else if (in_list(d->name, builtin_detectors))
                err(l, nn, "detector name '%.40s' is a built-in detector", d->name);
            else if (in_list(d->name, detector_groups))
                err(l, nn, "detector name '%.40s' is a detector group", d->name);
            for (size_t j = 0; j < cfg->n_detectors; j++) {
                if (cfg->detectors[j].name && strcmp(cfg->detectors[j].name, d->name) == 0) {
                    err(l, nn, "duplicate detector name '%.40s' (first at line %d)", d->name,
                        cfg->detectors[j].pos.line);
                    break;
                }
            }
        }
        yaml_node_t *rn = map_get(l, m, "regex"), *kn = map_get(l, m, "keywords"),
                    *fn = map_get(l, m, "keywords_file");
        int given = !!rn + !!kn + !!fn;
        if (given != 1) {
            err(l, m, "detector '%.40s': give exactly one of regex, keywords, keywords_file",
                d->name ? d->name : "?");
        } else if (rn) {
            d->regex = name_of(l, rn, "regex");
        } else if (kn) {
            str_list(l, kn, "keywords", &d->keywords, &d->n_keywords);
        } else {
            char *f = name_of(l, fn, "keywords_file");
            if (f) {
                d->keywords_file = resolve(l, f);
                if (d->keywords_file)
                    load_keywords_file(l, fn, d);
            }
        }
        cfg->n_detectors++;
    }
}

/* --- rules -------------------------------------------------------------------------- */

static int detector_known(const struct config *cfg, const char *name)
{
    if (in_list(name, builtin_detectors) || in_list(name, detector_groups))
        return 1;
    for (size_t i = 0; i < cfg->n_detectors; i++)
        if (cfg->detectors[i].name && strcmp(cfg->detectors[i].name, name) == 0)
            return 1;
    return 0;
}

static void check_detector_names(struct ld *l, yaml_node_t *n, char **v, size_t cnt)
{
    for (size_t i = 0; i < cnt; i++) {
        if (detector_known(l->cfg, v[i]))
            continue;
        yaml_node_t *at = n;
        if (is_seq(n) && i < seq_len(n))
            at = node(l, n->data.sequence.items.start[i]);
        err(l, at,
            "unknown detector '%.40s' (built-in: email, phone, credit_card, iban, us_ssn, "
            "ipv4, private_key, ...; groups: pii, secrets; or a name from detectors)",
            v[i]);
    }
}

static void load_rule_then(struct ld *l, struct config_rule *r, yaml_node_t *t)
{
    static const char *const allowed[] = {"action", "provider", "model", "detectors", NULL};
    static const char *const actions[] = {"block", "route", "redact", "allow", NULL};
    struct config *cfg = l->cfg;
    const char *rn = r->name ? r->name : "?";
    if (!is_map(t)) {
        err(l, t, "rule '%.40s': then must be a mapping {action, ...}", rn);
        return;
    }
    map_check(l, t, "then", allowed);
    yaml_node_t *an = map_get(l, t, "action");
    int action = -1;
    if (!an)
        err(l, t, "rule '%.40s': missing required field 'action'", rn);
    else
        action = enum_of(l, an, "action", actions);
    if (action < 0)
        return;
    r->action = (enum config_action)action;
    yaml_node_t *pn = map_get(l, t, "provider"), *mn = map_get(l, t, "model"),
                *dn = map_get(l, t, "detectors");
    if (action == CONFIG_ACTION_BLOCK || action == CONFIG_ACTION_ALLOW) {
        yaml_node_t *extra = pn ? pn : mn ? mn : dn;
        if (extra)
            err(l, extra,
                "rule '%.40s': provider, model and detectors are only used by "
                "route and redact",
                rn);
        return;
    }
    if (action == CONFIG_ACTION_ROUTE && dn)
        err(l, dn, "rule '%.40s': detectors is only used by redact", rn);
    if (action == CONFIG_ACTION_ROUTE && !mn)
        err(l, t, "rule '%.40s': route needs 'model' (a name from models)", rn);
    if (pn && (r->provider = name_of(l, pn, "provider")) && !config_provider_find(cfg, r->provider))
        err(l, pn, "rule '%.40s': unknown provider '%.40s'", rn, r->provider);
    if (mn && (r->model = name_of(l, mn, "model"))) {
        const struct config_model *md = config_model_find(cfg, r->model);
        if (!md)
            err(l, mn, "rule '%.40s': unknown model '%.40s'", rn, r->model);
        else if (r->provider && md->provider && strcmp(md->provider, r->provider) != 0)
            err(l, pn, "rule '%.40s': model '%.40s' is served by provider '%.40s', not '%.40s'", rn,
                r->model, md->provider, r->provider);
    }
    if (action == CONFIG_ACTION_REDACT) {
        if (!dn)
            err(l, t, "rule '%.40s': redact needs 'detectors' (names or groups)", rn);
        else if (str_list(l, dn, "detectors", &r->redact_detectors, &r->n_redact_detectors) == 0)
            check_detector_names(l, dn, r->redact_detectors, r->n_redact_detectors);
    }
}

static void load_rules(struct ld *l, yaml_node_t *sec)
{
    static const char *const allowed[] = {"name", "if", "then", NULL};
    static const char *const if_allowed[] = {"detected", "key", "team", "model", "zone", NULL};
    static const char *const zones[] = {"external", "internal", NULL};
    struct config *cfg = l->cfg;
    cfg->rules = list_alloc(l, sec, "rules", sizeof *cfg->rules);
    if (!cfg->rules)
        return;
    for (yaml_node_item_t *it = sec->data.sequence.items.start; it < sec->data.sequence.items.top;
         it++) {
        yaml_node_t *m = node(l, *it);
        if (!is_map(m)) {
            err(l, m, "each rules entry must be a mapping {name, if, then}");
            continue;
        }
        map_check(l, m, "rule", allowed);
        struct config_rule *r = &cfg->rules[cfg->n_rules];
        r->pos = pos_of(m);
        r->zone = CONFIG_ZONE_ANY;
        r->name = req_str(l, m, "name", "rule");
        if (r->name) {
            for (size_t j = 0; j < cfg->n_rules; j++) {
                if (cfg->rules[j].name && strcmp(cfg->rules[j].name, r->name) == 0) {
                    err(l, map_get(l, m, "name"), "duplicate rule name '%.40s' (first at line %d)",
                        r->name, cfg->rules[j].pos.line);
                    break;
                }
            }
        }
        cfg->n_rules++;
        yaml_node_t *in = map_get(l, m, "if");
        if (in && !is_map(in)) {
            err(l, in, "rule '%.40s': if must be a mapping of conditions", r->name ? r->name : "?");
        } else if (in) {
            map_check(l, in, "if", if_allowed);
            yaml_node_t *x;
            if ((x = map_get(l, in, "detected")) &&
                str_list(l, x, "detected", &r->detected, &r->n_detected) == 0)
                check_detector_names(l, x, r->detected, r->n_detected);
            if ((x = map_get(l, in, "key")) && str_list(l, x, "key", &r->keys, &r->n_keys) == 0 &&
                cfg->auth) {
                for (size_t i = 0; i < r->n_keys; i++) {
                    int found = 0;
                    for (size_t j = 0; j < cfg->n_keys; j++)
                        found |= cfg->keys[j].name && strcmp(cfg->keys[j].name, r->keys[i]) == 0;
                    if (!found)
                        err(l, is_seq(x) ? node(l, x->data.sequence.items.start[i]) : x,
                            "rule '%.40s': unknown key name '%.40s'", r->name ? r->name : "?",
                            r->keys[i]);
                }
            }
            if ((x = map_get(l, in, "team")))
                str_list(l, x, "team", &r->teams, &r->n_teams);
            if ((x = map_get(l, in, "model")))
                str_list(l, x, "model", &r->models, &r->n_models);
            if ((x = map_get(l, in, "zone"))) {
                int z = enum_of(l, x, "zone", zones);
                if (z == 0)
                    r->zone = CONFIG_ZONE_EXTERNAL;
                else if (z == 1)
                    r->zone = CONFIG_ZONE_INTERNAL;
            }
        }
        yaml_node_t *tn = map_get(l, m, "then");
        if (!tn)
            err(l, m, "rule '%.40s': missing required field 'then'", r->name ? r->name : "?");
        else
            load_rule_then(l, r, tn);
    }
}

/* --- audit, limits ------------------------------------------------------------------ */

static void load_audit(struct ld *l, yaml_node_t *sec)
{
    static const char *const allowed[] = {"dir",  "signing_key", "seal_to",
                                          "sync", "on_failure",  NULL};
    static const char *const syncs[] = {"batch", "always", "none", NULL};
    static const char *const fails[] = {"refuse", "allow", NULL};
    struct config_audit *a = &l->cfg->audit;
    if (!is_map(sec)) {
        err(l, sec, "audit must be a mapping {dir, ...}");
        return;
    }
    map_check(l, sec, "audit", allowed);
    a->pos = pos_of(sec);
    a->dir = resolve(l, req_str(l, sec, "dir", "audit"));
    yaml_node_t *x;
    if ((x = map_get(l, sec, "signing_key")))
        a->signing_key = resolve(l, name_of(l, x, "signing_key"));
    if ((x = map_get(l, sec, "seal_to"))) {
        a->seal_to = resolve(l, name_of(l, x, "seal_to"));
        if (a->seal_to)
            check_readable(l, x, "seal_to", a->seal_to);
    }
    if ((x = map_get(l, sec, "sync"))) {
        int v = enum_of(l, x, "sync", syncs);
        if (v >= 0)
            a->sync = (enum config_sync)v; /* order of syncs[] matches the enum */
    }
    if ((x = map_get(l, sec, "on_failure"))) {
        int v = enum_of(l, x, "on_failure", fails);
        if (v >= 0)
            a->on_failure = (enum config_on_failure)v;
    }
}

static void load_limits(struct ld *l, yaml_node_t *sec)
{
    static const char *const allowed[] = {
        "max_body_bytes",  "max_header_bytes",    "max_connections", "header_timeout_ms",
        "idle_timeout_ms", "upstream_timeout_ms", "engine_queue",    NULL};
    struct config_limits *lim = &l->cfg->limits;
    if (!is_map(sec)) {
        err(l, sec, "limits must be a mapping");
        return;
    }
    map_check(l, sec, "limits", allowed);
    yaml_node_t *x;
    long long v;
    if ((x = map_get(l, sec, "max_body_bytes")) &&
        int_of(l, x, "max_body_bytes", 1, 1LL << 30, &v) == 0)
        lim->max_body_bytes = (size_t)v;
    if ((x = map_get(l, sec, "max_header_bytes")) &&
        int_of(l, x, "max_header_bytes", 1024, 1 << 20, &v) == 0)
        lim->max_header_bytes = (size_t)v;
    opt_int(l, sec, "max_connections", 1, 1000000, &lim->max_connections);
    opt_int(l, sec, "header_timeout_ms", 1, 86400000, &lim->header_timeout_ms);
    opt_int(l, sec, "idle_timeout_ms", 1, 86400000, &lim->idle_timeout_ms);
    opt_int(l, sec, "upstream_timeout_ms", 1, 86400000, &lim->upstream_timeout_ms);
    opt_int(l, sec, "engine_queue", 1, 100000, &lim->engine_queue);
}

/* --- top level ---------------------------------------------------------------------- */

/* check_graph -- every node is used once (no anchors/aliases: they would let a small
 * file expand into a huge or cyclic tree) and no list or mapping is oversized.
 * 0, or -1 (reported). */
static int check_graph(struct ld *l)
{
    size_t n = (size_t)(l->doc.nodes.top - l->doc.nodes.start);
    unsigned char *uses = calloc(n + 2, 1);
    int bad = 0;
    if (!uses) {
        err(l, NULL, "out of memory");
        return -1;
    }
    uses[1] = 1; /* the root (node ids are 1-based) */
    for (yaml_node_t *nd = l->doc.nodes.start; nd < l->doc.nodes.top; nd++) {
        int ids[2];
        size_t kids = 0;
        if (nd->type == YAML_SEQUENCE_NODE)
            kids = seq_len(nd);
        else if (nd->type == YAML_MAPPING_NODE)
            kids = (size_t)(nd->data.mapping.pairs.top - nd->data.mapping.pairs.start);
        if (kids > CONFIG_MAX_ITEMS) {
            err(l, nd, "too many entries (%zu; the limit is %d)", kids, CONFIG_MAX_ITEMS);
            bad = 1;
            continue;
        }
        for (size_t i = 0; i < kids; i++) {
            size_t cnt = 1;
            if (nd->type == YAML_SEQUENCE_NODE) {
                ids[0] = nd->data.sequence.items.start[i];
            } else {
                ids[0] = nd->data.mapping.pairs.start[i].key;
                ids[1] = nd->data.mapping.pairs.start[i].value;
                cnt = 2;
            }
            for (size_t j = 0; j < cnt; j++) {
                if (ids[j] < 1 || (size_t)ids[j] > n)
                    continue;
                if (uses[ids[j]] == 1) {
                    err(l, node(l, ids[j]),
                        "YAML anchors and aliases (&name, *name) are not supported");
                    bad = 1;
                }
                if (uses[ids[j]] < 2)
                    uses[ids[j]]++;
            }
        }
    }
    free(uses);
    return bad ? -1 : 0;
}

static void load_teams(struct ld *l, yaml_node_t *sec)
{
    static const char *const allowed[] = {"name", "budget_usd_per_day", NULL};
    struct config *cfg = l->cfg;
    cfg->teams = list_alloc(l, sec, "teams", sizeof *cfg->teams);
    if (!cfg->teams)
        return;
    for (yaml_node_item_t *it = sec->data.sequence.items.start; it < sec->data.sequence.items.top;
         it++) {
        yaml_node_t *m = node(l, *it);
        if (!is_map(m)) {
            err(l, m, "each teams entry must be a mapping {name, budget_usd_per_day}");
            continue;
        }
        map_check(l, m, "teams entry", allowed);
        struct config_team *t = &cfg->teams[cfg->n_teams];
        t->pos = pos_of(m);
        t->budget_usd_per_day = -1;
        t->name = req_str(l, m, "name", "teams entry");
        yaml_node_t *bn = map_get(l, m, "budget_usd_per_day");
        if (bn)
            num_of(l, bn, "budget_usd_per_day", 0, 1e12, &t->budget_usd_per_day);
        if (t->name) {
            for (size_t j = 0; j < cfg->n_teams; j++) {
                if (cfg->teams[j].name && strcmp(cfg->teams[j].name, t->name) == 0) {
                    err(l, m, "duplicate team name '%.40s' (first at line %d)", t->name,
                        cfg->teams[j].pos.line);
                    break;
                }
            }
        }
        cfg->n_teams++;
    }
}

static void load_root(struct ld *l, yaml_node_t *root)
{
    static const char *const sections[] = {"listen", "keys",  "teams",  "providers", "models",
                                           "detectors", "rules", "audit", "limits", NULL};
    struct config *cfg = l->cfg;
    if (!is_map(root)) {
        err(l, root, "the configuration must be a mapping of sections (listen, rules, ...)");
        return;
    }
    map_check(l, root, "the configuration", sections);
    yaml_node_t *x;
    if ((x = map_get(l, root, "listen"))) {
        load_listen(l, x);
    } else {
        cfg->listens = calloc(1, sizeof *cfg->listens);
        if (cfg->listens) {
            struct config_listen *ls = &cfg->listens[0];
            ls->address = strdup("127.0.0.1:8080");
            ls->host = strdup("127.0.0.1");
            ls->port = 8080;
            ls->loopback = 1;
            cfg->n_listens = 1;
            if (!ls->address || !ls->host)
                err(l, NULL, "out of memory");
        } else {
            err(l, NULL, "out of memory");
        }
    }
    if ((x = map_get(l, root, "keys")))
        load_keys(l, x);
    if ((x = map_get(l, root, "teams")))
        load_teams(l, x);
    if ((x = map_get(l, root, "providers")))
        load_providers(l, x);
    if ((x = map_get(l, root, "models")))
        load_models(l, x);
    if ((x = map_get(l, root, "detectors")))
        load_detectors(l, x);
    if ((x = map_get(l, root, "rules")))
        load_rules(l, x);
    if ((x = map_get(l, root, "audit")))
        load_audit(l, x);
    if ((x = map_get(l, root, "limits")))
        load_limits(l, x);
    if (!cfg->auth) {
        for (size_t i = 0; i < cfg->n_listens; i++) {
            struct config_listen *ls = &cfg->listens[i];
            if (ls->host && !ls->loopback)
                err_pos(l, ls->pos,
                        "no keys section (authentication off) is only allowed when every "
                        "listener is loopback, but '%.60s' is not",
                        ls->address);
        }
    }
}

/* sort_errors -- file order (stable), problems without a position last: sections are
 * read in a fixed order, which is not the order a reader of the file expects. */
static void sort_errors(struct config_errors *e)
{
    for (size_t i = 1; i < e->n; i++) {
        struct config_error t = e->items[i];
        long long kt = t.line > 0 ? (long long)t.line * 100000 + t.col : LLONG_MAX;
        size_t j = i;
        while (j > 0) {
            const struct config_error *p = &e->items[j - 1];
            long long kp = p->line > 0 ? (long long)p->line * 100000 + p->col : LLONG_MAX;
            if (kp <= kt)
                break;
            e->items[j] = e->items[j - 1];
            j--;
        }
        e->items[j] = t;
    }
}

static void free_cfg(struct config *cfg)
{
    if (!cfg)
        return;
    free(cfg->path);
    for (size_t i = 0; i < cfg->n_listens; i++) {
        struct config_listen *x = &cfg->listens[i];
        free(x->address);
        free(x->host);
        free(x->tls_cert);
        free(x->tls_key);
    }
    free(cfg->listens);
    for (size_t i = 0; i < cfg->n_keys; i++) {
        free(cfg->keys[i].name);
        free(cfg->keys[i].team);
    }
    if (cfg->keys)
        sodium_memzero(cfg->keys, cfg->n_keys * sizeof *cfg->keys);
    free(cfg->keys);
    for (size_t i = 0; i < cfg->n_teams; i++)
        free(cfg->teams[i].name);
    free(cfg->teams);
    for (size_t i = 0; i < cfg->n_providers; i++) {
        struct config_provider *p = &cfg->providers[i];
        free(p->name);
        free(p->base_url);
        free(p->host);
        free(p->path_prefix);
        if (p->api_key) {
            sodium_memzero(p->api_key, strlen(p->api_key));
            sodium_free(p->api_key);
        }
        free(p->ca_file);
        free(p->model_path);
    }
    free(cfg->providers);
    for (size_t i = 0; i < cfg->n_models; i++) {
        free(cfg->models[i].name);
        free(cfg->models[i].provider);
        free(cfg->models[i].upstream_model);
    }
    free(cfg->models);
    for (size_t i = 0; i < cfg->n_detectors; i++) {
        struct config_detector *d = &cfg->detectors[i];
        free(d->name);
        free(d->regex);
        free_strv(d->keywords, d->n_keywords);
        free(d->keywords_file);
    }
    free(cfg->detectors);
    for (size_t i = 0; i < cfg->n_rules; i++) {
        struct config_rule *r = &cfg->rules[i];
        free(r->name);
        free_strv(r->detected, r->n_detected);
        free_strv(r->keys, r->n_keys);
        free_strv(r->teams, r->n_teams);
        free_strv(r->models, r->n_models);
        free(r->provider);
        free(r->model);
        free_strv(r->redact_detectors, r->n_redact_detectors);
    }
    free(cfg->rules);
    free(cfg->audit.dir);
    free(cfg->audit.signing_key);
    free(cfg->audit.seal_to);
    free(cfg);
}

/* yaml_error -- the parser's problem, with its position, as one config error. */
static void yaml_error(struct ld *l, const yaml_parser_t *parser, const char *text, size_t len)
{
    struct config_errors *e = l->errs;
    if (e->n >= CONFIG_MAX_ERRORS) {
        e->dropped++;
        return;
    }
    struct config_error *it = &e->items[e->n++];
    it->line = (int)parser->problem_mark.line + 1;
    it->col = (int)parser->problem_mark.column + 1;
    if (parser->error == YAML_READER_ERROR) {
        /* encoding problems come with a byte offset, not a mark */
        size_t off = parser->problem_offset < len ? parser->problem_offset : len;
        it->line = 1;
        it->col = 1;
        for (size_t i = 0; i < off; i++) {
            if (text[i] == '\n') {
                it->line++;
                it->col = 1;
            } else {
                it->col++;
            }
        }
        if (parser->problem_value >= 0)
            snprintf(it->message, sizeof it->message, "invalid text: %s (0x%02x)",
                     parser->problem ? parser->problem : "unknown problem",
                     (unsigned)parser->problem_value);
        else
            snprintf(it->message, sizeof it->message, "invalid text: %s",
                     parser->problem ? parser->problem : "unknown problem");
        return;
    }
    snprintf(it->message, sizeof it->message, "YAML syntax error: %s%s%s",
             parser->problem ? parser->problem : "unknown problem", parser->context ? " " : "",
             parser->context ? parser->context : "");
}

/* check_depth -- an event pass that stops at CONFIG_MAX_DEPTH nested collections or
 * CONFIG_MAX_NODES values,
 * before libyaml's loader (whose cost grows with depth) sees the text. 0 or -1. */
static int check_depth(struct ld *l, const char *text, size_t len)
{
    yaml_parser_t p;
    yaml_event_t ev;
    int depth = 0, rc = -1;
    size_t nodes = 0;
    if (!yaml_parser_initialize(&p)) {
        err(l, NULL, "out of memory");
        return -1;
    }
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    for (;;) {
        if (!yaml_parser_parse(&p, &ev)) {
            yaml_error(l, &p, text, len);
            break;
        }
        yaml_event_type_t t = ev.type;
        if ((t == YAML_SCALAR_EVENT || t == YAML_ALIAS_EVENT || t == YAML_SEQUENCE_START_EVENT ||
             t == YAML_MAPPING_START_EVENT) &&
            ++nodes > CONFIG_MAX_NODES) {
            verr_at_mark(l, ev.start_mark, "too many values in one file (more than %d)",
                         CONFIG_MAX_NODES);
            yaml_event_delete(&ev);
            break;
        }
        if (t == YAML_SEQUENCE_START_EVENT || t == YAML_MAPPING_START_EVENT) {
            if (++depth > CONFIG_MAX_DEPTH) {
                verr_at_mark(l, ev.start_mark, "nesting too deep (more than %d levels)",
                             CONFIG_MAX_DEPTH);
                yaml_event_delete(&ev);
                break;
            }
        } else if (t == YAML_SEQUENCE_END_EVENT || t == YAML_MAPPING_END_EVENT) {
            depth--;
        }
        yaml_event_delete(&ev);
        if (t == YAML_STREAM_END_EVENT) {
            rc = 0;
            break;
        }
    }
    yaml_parser_delete(&p);
    return rc;
}

int config_load_text(const char *name, const char *text, size_t len, const char *basedir,
                     struct config **out, struct config_errors *errs)
{
    struct ld l;
    yaml_parser_t parser;
    int parser_ok = 0, doc_ok = 0;
    memset(&l, 0, sizeof l);
    memset(errs, 0, sizeof *errs);
    errs->file = name ? name : "<config>";
    *out = NULL;
    l.errs = errs;
    l.basedir = basedir;
    if (sodium_init() < 0) { /* idempotent; sodium_malloc needs it */
        err(&l, NULL, "libsodium failed to initialise");
        return -1;
    }
    if (len > CONFIG_MAX_FILE) {
        err(&l, NULL, "configuration too large (%zu bytes; the limit is %u)", len, CONFIG_MAX_FILE);
        return -1;
    }
    if (!(l.cfg = calloc(1, sizeof *l.cfg)) || !(l.cfg->path = strdup(errs->file))) {
        err(&l, NULL, "out of memory");
        goto fail;
    }
    struct config *cfg = l.cfg;
    cfg->refs = 1;
    cfg->limits.max_body_bytes = 4194304;
    cfg->limits.max_header_bytes = 32768;
    cfg->limits.max_connections = 4096;
    cfg->limits.header_timeout_ms = 10000;
    cfg->limits.idle_timeout_ms = 60000;
    cfg->limits.upstream_timeout_ms = 120000;
    cfg->limits.engine_queue = 64;
    cfg->audit.sync = CONFIG_SYNC_BATCH;
    cfg->audit.on_failure = CONFIG_ON_FAILURE_REFUSE;

    if (check_depth(&l, text, len) != 0)
        goto fail;
    if (!yaml_parser_initialize(&parser)) {
        err(&l, NULL, "out of memory");
        goto fail;
    }
    parser_ok = 1;
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &l.doc)) {
        yaml_error(&l, &parser, text, len);
        goto fail;
    }
    doc_ok = 1;
    yaml_node_t *root = yaml_document_get_root_node(&l.doc);
    if (!root) {
        err(&l, NULL, "empty configuration file");
        goto fail;
    }
    yaml_document_t extra;
    if (!yaml_parser_load(&parser, &extra)) {
        err(&l, NULL, "YAML syntax error after the first document: %s",
            parser.problem ? parser.problem : "unknown problem");
        goto fail;
    }
    int more = yaml_document_get_root_node(&extra) != NULL;
    yaml_document_delete(&extra);
    if (more) {
        err(&l, NULL, "only one YAML document is allowed (found a second '---')");
        goto fail;
    }
    if (check_graph(&l) != 0)
        goto fail;
    load_root(&l, root);
    sort_errors(errs);
    if (errs->n > 0 || errs->dropped > 0)
        goto fail;
    yaml_document_delete(&l.doc);
    yaml_parser_delete(&parser);
    *out = cfg;
    return 0;
fail:
    if (doc_ok)
        yaml_document_delete(&l.doc);
    if (parser_ok)
        yaml_parser_delete(&parser);
    free_cfg(l.cfg);
    return -1;
}

int config_load(const char *path, struct config **out, struct config_errors *errs)
{
    char *buf = NULL, *dir = NULL, why[200];
    size_t len = 0;
    memset(errs, 0, sizeof *errs);
    errs->file = path;
    *out = NULL;
    if (read_file(path, CONFIG_MAX_FILE, &buf, &len, why, sizeof why) != 0) {
        errs->n = 1;
        errs->items[0].line = errs->items[0].col = 0;
        snprintf(errs->items[0].message, sizeof errs->items[0].message, "%s", why);
        return -1;
    }
    const char *slash = strrchr(path, '/');
    if (slash) {
        dir = strndup(path, slash == path ? 1 : (size_t)(slash - path));
        if (!dir) {
            sodium_memzero(buf, len);
            free(buf);
            errs->n = 1;
            snprintf(errs->items[0].message, sizeof errs->items[0].message, "out of memory");
            return -1;
        }
    }
    int r = config_load_text(path, buf, len, dir, out, errs);
    errs->file = path;
    /* the text may hold plaintext keys */
    sodium_memzero(buf, len);
    free(buf);
    free(dir);
    return r;
}

size_t config_errors_format(const struct config_errors *errs, char *buf, size_t cap)
{
    size_t off = 0;
    if (cap == 0)
        return 0;
    buf[0] = '\0';
    const char *file = errs->file ? errs->file : "<config>";
    for (size_t i = 0; i < errs->n && off < cap - 1; i++) {
        const struct config_error *e = &errs->items[i];
        int w;
        if (e->line > 0)
            w = snprintf(buf + off, cap - off, "%s:%d:%d: %s\n", file, e->line, e->col, e->message);
        else
            w = snprintf(buf + off, cap - off, "%s: %s\n", file, e->message);
        if (w < 0)
            break;
        off += (size_t)w;
    }
    if (errs->dropped > 0 && off < cap - 1) {
        int w =
            snprintf(buf + off, cap - off, "%s: ... and %zu more problems\n", file, errs->dropped);
        if (w > 0)
            off += (size_t)w;
    }
    return off < cap ? off : cap - 1;
}

struct config *config_ref(struct config *cfg)
{
    if (cfg)
        __atomic_add_fetch(&cfg->refs, 1, __ATOMIC_RELAXED);
    return cfg;
}

void config_unref(struct config *cfg)
{
    if (cfg && __atomic_sub_fetch(&cfg->refs, 1, __ATOMIC_ACQ_REL) == 0)
        free_cfg(cfg);
}

const struct config_provider *config_provider_find(const struct config *cfg, const char *name)
{
    for (size_t i = 0; name && i < cfg->n_providers; i++)
        if (strcmp(cfg->providers[i].name, name) == 0)
            return &cfg->providers[i];
    return NULL;
}

const struct config_model *config_model_find(const struct config *cfg, const char *name)
{
    for (size_t i = 0; name && i < cfg->n_models; i++)
        if (cfg->models[i].name && strcmp(cfg->models[i].name, name) == 0)
            return &cfg->models[i];
    return NULL;
}

const struct config_key *config_key_find_sha256(const struct config *cfg, const uint8_t sha[32])
{
    const struct config_key *found = NULL;
    /* walk every key so the time taken does not say which one matched */
    for (size_t i = 0; i < cfg->n_keys; i++)
        if (sodium_memcmp(cfg->keys[i].key_sha256, sha, 32) == 0 && !found)
            found = &cfg->keys[i];
    return found;
}

/* yaml_quote -- s as a double-quoted YAML scalar into a new string. */
static char *yaml_quote(const char *s)
{
    size_t n = strlen(s);
    if (n > (SIZE_MAX - 3) / 4)
        return NULL;
    char *q = malloc(n * 4 + 3), *o = q;
    if (!q)
        return NULL;
    *o++ = '"';
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\') {
            *o++ = '\\';
            *o++ = (char)*c;
        } else if (*c < 0x20 || *c == 0x7f) {
            o += sprintf(o, "\\x%02x", *c);
        } else {
            *o++ = (char)*c;
        }
    }
    *o++ = '"';
    *o = '\0';
    return q;
}

static const char default_no_model[] =
    "# airlock embedded default (SPEC section 6), no local model\n"
    "listen:\n"
    "  - address: 127.0.0.1:8080\n"
    "rules:\n"
    "  - name: no-secrets\n"
    "    if: {detected: [secrets]}\n"
    "    then: {action: block}\n"
    "  - name: allow\n"
    "    then: {action: allow}\n"
    "audit:\n"
    "  dir: ./airlock-data/audit\n";

const char *config_embedded_default(const char *model_path, char **buf)
{
    *buf = NULL;
    if (!model_path)
        return default_no_model;
    char *q = yaml_quote(model_path);
    if (!q)
        return NULL;
    char *text = NULL;
    int r = asprintf(&text,
                     "# airlock embedded default (SPEC section 6)\n"
                     "listen:\n"
                     "  - address: 127.0.0.1:8080\n"
                     "providers:\n"
                     "  local:\n"
                     "    type: builtin\n"
                     "    model: %s\n"
                     "models:\n"
                     "  - name: local\n"
                     "    provider: local\n"
                     "rules:\n"
                     "  - name: no-secrets\n"
                     "    if: {detected: [secrets]}\n"
                     "    then: {action: block}\n"
                     "  - name: local-only\n"
                     "    then: {action: route, provider: local, model: local}\n"
                     "audit:\n"
                     "  dir: ./airlock-data/audit\n",
                     q);
    free(q);
    if (r < 0)
        return NULL;
    *buf = text;
    return text;
}

static int some_key_in_team(const struct config *cfg, const char *team)
{
    for (size_t i = 0; i < cfg->n_keys; i++)
        if (cfg->keys[i].team && strcmp(cfg->keys[i].team, team) == 0)
            return 1;
    return 0;
}

size_t config_lint(const struct config *cfg,
                   void (*fn)(void *ud, struct config_pos pos, const char *msg), void *ud)
{
    char msg[256];
    size_t n = 0;

    for (size_t i = 0; cfg->n_teams > 0 && i < cfg->n_keys; i++) {
        const struct config_key *k = &cfg->keys[i];
        if (!k->team || config_team_find(cfg, k->team))
            continue;
        snprintf(msg, sizeof(msg),
                 "key '%.40s' names team '%.40s', which is not in `teams`: that team has no "
                 "budget",
                 k->name ? k->name : "?", k->team);
        fn(ud, k->pos, msg);
        n++;
    }
    for (size_t i = 0; i < cfg->n_rules; i++) {
        const struct config_rule *r = &cfg->rules[i];
        for (size_t j = 0; j < r->n_teams; j++) {
            if (some_key_in_team(cfg, r->teams[j]))
                continue;
            snprintf(msg, sizeof(msg),
                     "rule '%.40s': no key belongs to team '%.40s', so this condition never "
                     "matches",
                     r->name ? r->name : "?", r->teams[j]);
            fn(ud, r->pos, msg);
            n++;
        }
    }
    return n;
}

const struct config_team *config_team_find(const struct config *cfg, const char *name)
{
    if (!name)
        return NULL;
    for (size_t i = 0; i < cfg->n_teams; i++)
        if (cfg->teams[i].name && strcmp(cfg->teams[i].name, name) == 0)
            return &cfg->teams[i];
    return NULL;
}
