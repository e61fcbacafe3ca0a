/* jbuf.c -- compact JSON written by hand into a growable buffer. */
#include "common/jbuf.h"

#include "common/grow.h"
#include "common/utf8.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void jbuf_init(struct jbuf *b)
{
    memset(b, 0, sizeof(*b));
}

void jbuf_free(struct jbuf *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

static int grow(struct jbuf *b, size_t extra)
{
    char *p;

    if (b->oom)
        return -1;
    p = grow_by(b->p, &b->cap, b->len + 1, extra, 1, 1024); /* + 1: the terminating NUL */
    if (!p) {
        b->oom = 1;
        return -1;
    }
    b->p = p;
    return 0;
}

char *jbuf_finish(struct jbuf *b, size_t *len)
{
    char *p;

    if (grow(b, 0) != 0) {
        jbuf_free(b);
        return NULL;
    }
    b->p[b->len] = '\0';
    if (len)
        *len = b->len;
    p = b->p;
    memset(b, 0, sizeof(*b));
    return p;
}

void jbuf_raw(struct jbuf *b, const char *s, size_t n)
{
    if (grow(b, n) != 0)
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void put(struct jbuf *b, char c)
{
    if (grow(b, 1) != 0)
        return;
    b->p[b->len++] = c;
}

/* a value or key that follows a sibling needs a comma */
static void sep(struct jbuf *b)
{
    if (b->len && !b->oom) {
        char last = b->p[b->len - 1];
        if (last != '{' && last != '[' && last != ':')
            put(b, ',');
    }
}

void jbuf_open(struct jbuf *b, char c)
{
    sep(b);
    put(b, c);
}

void jbuf_close(struct jbuf *b, char c)
{
    put(b, c);
}

static void escaped(struct jbuf *b, const char *str, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0, run = 0;

    put(b, '"');
    while (i < n) {
        unsigned char c = s[i];
        size_t l;

        if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
            run++;
            i++;
            continue;
        }
        jbuf_raw(b, (const char *)s + i - run, run);
        run = 0;
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            jbuf_raw(b, e, 2);
            i++;
        } else if (c < 0x20) {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            switch (c) {
            case '\n': jbuf_raw(b, "\\n", 2); break;
            case '\r': jbuf_raw(b, "\\r", 2); break;
            case '\t': jbuf_raw(b, "\\t", 2); break;
            default: jbuf_raw(b, e, 6); break;
            }
            i++;
        } else if ((l = utf8_seq_len(s + i, n - i)) > 0) {
            jbuf_raw(b, (const char *)s + i, l);
            i += l;
        } else {
            jbuf_raw(b, "\\ufffd", 6);
            i++;
        }
    }
    jbuf_raw(b, (const char *)s + i - run, run);
    put(b, '"');
}

void jbuf_key(struct jbuf *b, const char *key)
{
    sep(b);
    escaped(b, key, strlen(key));
    put(b, ':');
}

void jbuf_strn(struct jbuf *b, const char *s, size_t n)
{
    sep(b);
    escaped(b, s, n);
}

void jbuf_str(struct jbuf *b, const char *s)
{
    if (!s) {
        jbuf_null(b);
        return;
    }
    jbuf_strn(b, s, strlen(s));
}

static void digits(struct jbuf *b, uint64_t v)
{
    char tmp[24];
    size_t i = sizeof(tmp);

    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    jbuf_raw(b, tmp + i, sizeof(tmp) - i);
}

void jbuf_u64(struct jbuf *b, uint64_t v)
{
    sep(b);
    digits(b, v);
}

void jbuf_i64(struct jbuf *b, int64_t v)
{
    sep(b);
    if (v < 0) {
        put(b, '-');
        digits(b, (uint64_t)0 - (uint64_t)v);
    } else {
        digits(b, (uint64_t)v);
    }
}

void jbuf_bool(struct jbuf *b, int v)
{
    sep(b);
    if (v)
        jbuf_raw(b, "true", 4);
    else
        jbuf_raw(b, "false", 5);
}

void jbuf_null(struct jbuf *b)
{
    sep(b);
    jbuf_raw(b, "null", 4);
}

void jbuf_num(struct jbuf *b, double v)
{
    char tmp[32];
    int n;

    if (!isfinite(v)) {
        jbuf_null(b);
        return;
    }
    if (v == (double)(int64_t)v && fabs(v) < 9007199254740992.0) {
        jbuf_i64(b, (int64_t)v);
        return;
    }
    n = snprintf(tmp, sizeof(tmp), "%.15g", v);
    if (strtod(tmp, NULL) != v)
        n = snprintf(tmp, sizeof(tmp), "%.17g", v);
    sep(b);
    jbuf_raw(b, tmp, (size_t)n);
}

void jbuf_fixed(struct jbuf *b, double v, int decimals)
{
    static const uint64_t pow10[] = {1, 10, 100, 1000, 10000, 100000, 1000000};
    char tmp[40];
    uint64_t scaled, frac;
    size_t i = sizeof(tmp);
    int neg = v < 0, d;

    if (!isfinite(v) || fabs(v) > 1e12 || decimals < 0 || decimals > 6) {
        jbuf_num(b, v);
        return;
    }
    /* by hand: snprintf's %f is the costliest thing in a record's metadata */
    scaled = (uint64_t)(fabs(v) * (double)pow10[decimals] + 0.5);
    frac = scaled % pow10[decimals];
    scaled /= pow10[decimals];
    for (d = 0; d < decimals; d++) {
        tmp[--i] = (char)('0' + frac % 10);
        frac /= 10;
    }
    if (decimals)
        tmp[--i] = '.';
    do {
        tmp[--i] = (char)('0' + scaled % 10);
        scaled /= 10;
    } while (scaled);
    if (neg)
        tmp[--i] = '-';
    sep(b);
    jbuf_raw(b, tmp + i, sizeof(tmp) - i);
}
