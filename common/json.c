/* json.c -- the one strict reading of a client's JSON body (see json.h).
 *
 * A recursive-descent parser over the borrowed bytes into a flat node array. Strings are
 * skipped 16 (SSE2) or 8 bytes at a time until a quote, backslash, control or non-ASCII
 * byte; escapes and UTF-8 are checked as they come. Member names are checked for
 * repeats as each object is read: linearly while an object is small, through a hash of
 * the decoded names once it has more than DUP_LINEAR members. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "common/grow.h"
#include "common/json.h"
#include "common/utf8.h"

#define DUP_LINEAR 16

/* where the parse is, for messages: how each open container was reached */
struct frame {
    uint32_t name; /* the member name leading to it, or JSON_NONE (array item / root) */
    int index;     /* its index in the parent array */
};

struct parser {
    struct json_doc *d;
    const unsigned char *b;
    size_t len, pos;
    char *err;
    size_t errlen;
    struct frame stack[JSON_MAX_DEPTH + 2];
};

static int fail(struct parser *p, const char *what)
{
    snprintf(p->err, p->errlen, "the request body is not valid JSON (%s at byte %zu).", what,
             p->pos);
    return -1;
}

static uint32_t node_new(struct parser *p, int type, size_t start)
{
    struct json_doc *d = p->d;
    struct json_node *nn = grow_room(d->nodes, &d->cap, d->n + 1, sizeof(*nn), 256);
    if (!nn)
        return JSON_NONE;
    d->nodes = nn;
    struct json_node *j = &d->nodes[d->n];
    j->type = (uint8_t)type;
    j->esc = 0;
    j->start = j->end = (uint32_t)start;
    j->child = j->next = JSON_NONE;
    return (uint32_t)d->n++;
}

static void skip_ws(struct parser *p)
{
    while (p->pos < p->len) {
        unsigned char c = p->b[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            break;
        p->pos++;
    }
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int hex4(const unsigned char *s, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(s[i]);
        if (h < 0)
            return -1;
        v = v << 4 | (unsigned)h;
    }
    *out = v;
    return 0;
}

/* Any byte < 0x20, '"', '\\' or >= 0x80 among the 8 bytes of x. */
static inline int swar_special(uint64_t x)
{
    const uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;
    uint64_t lt = (x - ones * 0x20) & ~x;
    uint64_t q = x ^ (ones * '"');
    q = (q - ones) & ~q;
    uint64_t bs = x ^ (ones * '\\');
    bs = (bs - ones) & ~bs;
    return ((lt | q | bs) & high) != 0 || (x & high) != 0;
}

static int parse_string(struct parser *p, uint32_t *out)
{
    p->pos++; /* opening quote */
    uint32_t id = node_new(p, JSON_STR, p->pos);
    if (id == JSON_NONE)
        return fail(p, "out of memory");
    int esc = 0;
    const unsigned char *b = p->b;
    size_t i = p->pos, len = p->len;
    for (;;) {
#ifdef __SSE2__
        /* bytes < 0x20 or >= 0x80 (signed < 0x20), '"' and '\\' stop the skip */
        const __m128i ctl = _mm_set1_epi8(0x20), qu = _mm_set1_epi8('"'), bs = _mm_set1_epi8('\\');
        while (i + 16 <= len) {
            __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(b + i));
            __m128i sp = _mm_or_si128(_mm_cmplt_epi8(v, ctl),
                                      _mm_or_si128(_mm_cmpeq_epi8(v, qu), _mm_cmpeq_epi8(v, bs)));
            int m = _mm_movemask_epi8(sp);
            if (m) {
                i += (size_t)__builtin_ctz((unsigned)m);
                break;
            }
            i += 16;
        }
#endif
        while (i + 8 <= len) {
            uint64_t x;
            memcpy(&x, b + i, 8);
            if (swar_special(x))
                break;
            i += 8;
        }
        if (i >= len) {
            p->pos = i;
            return fail(p, "unterminated string");
        }
        unsigned char c = b[i];
        if (c == '"')
            break;
        if (c < 0x20) {
            p->pos = i;
            return fail(p, c == 0 ? "a NUL byte in a string" : "control character in string");
        }
        if (c == '\\') {
            esc = 1;
            if (i + 1 >= len) {
                p->pos = i;
                return fail(p, "unterminated escape");
            }
            unsigned char e = b[i + 1];
            if (e == 'u') {
                unsigned u, lo;
                if (i + 6 > len || hex4(b + i + 2, &u) < 0) {
                    p->pos = i;
                    return fail(p, "bad \\u escape");
                }
                if (u == 0) {
                    p->pos = i;
                    return fail(p, "\\u0000 (NUL) in a string");
                }
                if (u >= 0xD800 && u <= 0xDBFF) {
                    if (i + 12 > len || b[i + 6] != '\\' || b[i + 7] != 'u' ||
                        hex4(b + i + 8, &lo) < 0 || lo < 0xDC00 || lo > 0xDFFF) {
                        p->pos = i;
                        return fail(p, "unpaired surrogate");
                    }
                    i += 12;
                } else if (u >= 0xDC00 && u <= 0xDFFF) {
                    p->pos = i;
                    return fail(p, "unpaired surrogate");
                } else {
                    i += 6;
                }
                continue;
            }
            if (e == 0 || !strchr("\"\\/bfnrt", e)) {
                p->pos = i;
                return fail(p, "bad escape");
            }
            i += 2;
            continue;
        }
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t ul = utf8_seq_len(b + i, len - i);
        if (!ul) {
            p->pos = i;
            return fail(p, "invalid UTF-8");
        }
        i += ul;
    }
    p->d->nodes[id].end = (uint32_t)i;
    p->d->nodes[id].esc = (uint8_t)esc;
    p->pos = i + 1;
    *out = id;
    return 0;
}

static int parse_number(struct parser *p, uint32_t *out)
{
    const unsigned char *b = p->b;
    size_t i = p->pos, len = p->len;
    uint32_t id = node_new(p, JSON_NUM, i);
    if (id == JSON_NONE)
        return fail(p, "out of memory");
    if (i < len && b[i] == '-')
        i++;
    if (i < len && b[i] == '0')
        i++;
    else if (i < len && b[i] >= '1' && b[i] <= '9')
        while (i < len && b[i] >= '0' && b[i] <= '9')
            i++;
    else
        return fail(p, "bad number");
    if (i < len && b[i] == '.') {
        i++;
        if (i >= len || b[i] < '0' || b[i] > '9')
            return fail(p, "bad number");
        while (i < len && b[i] >= '0' && b[i] <= '9')
            i++;
    }
    if (i < len && (b[i] == 'e' || b[i] == 'E')) {
        i++;
        if (i < len && (b[i] == '+' || b[i] == '-'))
            i++;
        if (i >= len || b[i] < '0' || b[i] > '9')
            return fail(p, "bad number");
        while (i < len && b[i] >= '0' && b[i] <= '9')
            i++;
    }
    p->d->nodes[id].end = (uint32_t)i;
    p->pos = i;
    *out = id;
    return 0;
}

/* ---- names: decoded comparison and hashing ---- */

size_t json_decode_escape(const unsigned char *b, char *o, size_t *dl)
{
    unsigned u, lo;
    size_t raw = 6;
    switch (b[1]) {
    case 'b':
        o[0] = '\b';
        *dl = 1;
        return 2;
    case 'f':
        o[0] = '\f';
        *dl = 1;
        return 2;
    case 'n':
        o[0] = '\n';
        *dl = 1;
        return 2;
    case 'r':
        o[0] = '\r';
        *dl = 1;
        return 2;
    case 't':
        o[0] = '\t';
        *dl = 1;
        return 2;
    case 'u':
        hex4(b + 2, &u);
        if (u >= 0xD800 && u <= 0xDBFF) {
            hex4(b + 8, &lo);
            u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
            raw = 12;
        }
        if (u < 0x80) {
            o[0] = (char)u;
            *dl = 1;
        } else if (u < 0x800) {
            o[0] = (char)(0xC0 | u >> 6);
            o[1] = (char)(0x80 | (u & 0x3F));
            *dl = 2;
        } else if (u < 0x10000) {
            o[0] = (char)(0xE0 | u >> 12);
            o[1] = (char)(0x80 | (u >> 6 & 0x3F));
            o[2] = (char)(0x80 | (u & 0x3F));
            *dl = 3;
        } else {
            o[0] = (char)(0xF0 | u >> 18);
            o[1] = (char)(0x80 | (u >> 12 & 0x3F));
            o[2] = (char)(0x80 | (u >> 6 & 0x3F));
            o[3] = (char)(0x80 | (u & 0x3F));
            *dl = 4;
        }
        return raw;
    default:
        o[0] = (char)b[1];
        *dl = 1;
        return 2;
    }
}

/* A cursor over a string node's decoded bytes, a unit (one raw byte or one escape) at a
 * time: names are compared and hashed without allocating. */
struct dec {
    const unsigned char *b;
    size_t i, end;
    char buf[4];
    size_t blen, bpos;
};

static void dec_init(struct dec *c, const struct json_doc *d, uint32_t id)
{
    c->b = (const unsigned char *)d->body;
    c->i = d->nodes[id].start;
    c->end = d->nodes[id].end;
    c->blen = c->bpos = 0;
}

/* next decoded byte, or -1 at the end */
static int dec_next(struct dec *c)
{
    if (c->bpos < c->blen)
        return (unsigned char)c->buf[c->bpos++];
    if (c->i >= c->end)
        return -1;
    if (c->b[c->i] != '\\')
        return c->b[c->i++];
    c->i += json_decode_escape(c->b + c->i, c->buf, &c->blen);
    c->bpos = 1;
    return (unsigned char)c->buf[0];
}

static int names_equal(const struct json_doc *d, uint32_t a, uint32_t b)
{
    const struct json_node *x = &d->nodes[a], *y = &d->nodes[b];
    if (!x->esc && !y->esc)
        return x->end - x->start == y->end - y->start &&
               memcmp(d->body + x->start, d->body + y->start, x->end - x->start) == 0;
    struct dec p, q;
    dec_init(&p, d, a);
    dec_init(&q, d, b);
    for (;;) {
        int u = dec_next(&p), v = dec_next(&q);
        if (u != v)
            return 0;
        if (u < 0)
            return 1;
    }
}

static uint32_t name_hash(const struct json_doc *d, uint32_t id)
{
    struct dec c;
    uint32_t h = 2166136261u;
    int u;
    dec_init(&c, d, id);
    while ((u = dec_next(&c)) >= 0)
        h = (h ^ (uint32_t)u) * 16777619u;
    return h;
}

int json_name_is(const struct json_doc *d, uint32_t id, const char *name, size_t nlen)
{
    const struct json_node *n = &d->nodes[id];
    if (n->type != JSON_STR)
        return 0;
    if (!n->esc)
        return n->end - n->start == nlen && memcmp(d->body + n->start, name, nlen) == 0;
    struct dec c;
    size_t i = 0;
    int u;
    dec_init(&c, d, id);
    while ((u = dec_next(&c)) >= 0)
        if (i >= nlen || (unsigned char)name[i++] != u)
            return 0;
    return i == nlen;
}

int json_str_eq(const struct json_doc *d, uint32_t id, const char *s)
{
    return id != JSON_NONE && json_name_is(d, id, s, strlen(s));
}

uint32_t json_get(const struct json_doc *d, uint32_t obj, const char *name)
{
    size_t nl = strlen(name);
    if (obj == JSON_NONE || d->nodes[obj].type != JSON_OBJ)
        return JSON_NONE;
    JSON_FOR_MEMBERS(d, obj, k, v)
    if (json_name_is(d, k, name, nl))
        return v;
    return JSON_NONE;
}

/* ---- the repeat check ---- */

/* describe where the parser is (the path of open containers) into buf */
static void where(const struct parser *p, int depth, char *buf, size_t cap)
{
    size_t o = 0;
    buf[0] = '\0';
    for (int i = 1; i <= depth && o + 8 < cap; i++) {
        const struct frame *f = &p->stack[i];
        if (f->name == JSON_NONE) {
            int n = snprintf(buf + o, cap - o, "[%d]", f->index);
            o = n > 0 && (size_t)n < cap - o ? o + (size_t)n : cap - 1;
            continue;
        }
        if (o)
            buf[o++] = '.';
        struct dec c;
        int u;
        dec_init(&c, p->d, f->name);
        while ((u = dec_next(&c)) >= 0 && o + 4 < cap)
            buf[o++] = u >= 0x20 && u < 0x7f ? (char)u : '?';
        buf[o] = '\0';
    }
    if (o + 4 >= cap && cap > 4)
        memcpy(buf + cap - 4, "...", 4);
}

static int fail_repeat(struct parser *p, int depth, uint32_t name)
{
    char at[160], nm[72];
    struct dec c;
    size_t o = 0;
    int u;
    dec_init(&c, p->d, name);
    while ((u = dec_next(&c)) >= 0 && o < 64)
        nm[o++] = u >= 0x20 && u < 0x7f ? (char)u : '?';
    nm[o] = '\0';
    where(p, depth, at, sizeof(at));
    snprintf(p->err, p->errlen,
             "the request body names the member \"%s\" twice in one object (%s%s); each member "
             "may appear once.",
             nm, at[0] ? "in " : "at the top level", at);
    return -1;
}

/* The names seen so far in one object. */
struct names {
    uint32_t *slot; /* open addressing over name node ids; NULL while linear */
    size_t cap, n;
};

static int names_rehash(const struct json_doc *d, struct names *s, uint32_t first, uint32_t stop)
{
    size_t cap = s->cap ? s->cap * 2 : 64;
    uint32_t *t = malloc(cap * sizeof(*t));
    if (!t)
        return -1;
    for (size_t i = 0; i < cap; i++)
        t[i] = JSON_NONE;
    for (uint32_t k = first; k != stop; k = d->nodes[d->nodes[k].next].next) {
        size_t h = name_hash(d, k) & (cap - 1);
        while (t[h] != JSON_NONE)
            h = (h + 1) & (cap - 1);
        t[h] = k;
    }
    free(s->slot);
    s->slot = t;
    s->cap = cap;
    return 0;
}

/* 1: `k` repeats a name of the object whose first name is `first`; 0: new; -1: memory */
static int names_seen(const struct json_doc *d, struct names *s, uint32_t first, uint32_t k)
{
    if (!s->slot && s->n < DUP_LINEAR) {
        for (uint32_t q = first; q != k; q = d->nodes[d->nodes[q].next].next)
            if (names_equal(d, q, k))
                return 1;
        s->n++;
        return 0;
    }
    if ((s->n + 1) * 2 > s->cap && names_rehash(d, s, first, k) < 0)
        return -1;
    size_t h = name_hash(d, k) & (s->cap - 1);
    while (s->slot[h] != JSON_NONE) {
        if (names_equal(d, s->slot[h], k))
            return 1;
        h = (h + 1) & (s->cap - 1);
    }
    s->slot[h] = k;
    s->n++;
    return 0;
}

/* ---- values ---- */

static int parse_value(struct parser *p, int depth, uint32_t *out);

static int parse_container(struct parser *p, int depth, uint32_t *out)
{
    int obj = p->b[p->pos] == '{';
    if (depth >= JSON_MAX_DEPTH)
        return fail(p, "nesting deeper than 64");
    uint32_t id = node_new(p, obj ? JSON_OBJ : JSON_ARR, p->pos);
    if (id == JSON_NONE)
        return fail(p, "out of memory");
    struct names seen = {0};
    int index = 0, rc = -1;
    uint32_t last = JSON_NONE;
    p->pos++;
    skip_ws(p);
    if (p->pos < p->len && p->b[p->pos] == (obj ? '}' : ']')) {
        p->pos++;
        goto done;
    }
    for (;; index++) {
        uint32_t k = JSON_NONE, v;
        skip_ws(p);
        if (obj) {
            if (p->pos >= p->len || p->b[p->pos] != '"') {
                fail(p, "expected a member name");
                goto out;
            }
            if (parse_string(p, &k) < 0)
                goto out;
            /* link the name first, so the repeat check can walk the names */
            if (last == JSON_NONE)
                p->d->nodes[id].child = k;
            else
                p->d->nodes[last].next = k;
            int r = names_seen(p->d, &seen, p->d->nodes[id].child, k);
            if (r < 0) {
                fail(p, "out of memory");
                goto out;
            }
            if (r > 0) {
                fail_repeat(p, depth, k);
                goto out;
            }
            skip_ws(p);
            if (p->pos >= p->len || p->b[p->pos] != ':') {
                fail(p, "expected ':'");
                goto out;
            }
            p->pos++;
            skip_ws(p);
        }
        p->stack[depth + 1].name = k;
        p->stack[depth + 1].index = index;
        if (parse_value(p, depth + 1, &v) < 0)
            goto out;
        if (obj)
            p->d->nodes[k].next = v;
        else if (last == JSON_NONE)
            p->d->nodes[id].child = v;
        else
            p->d->nodes[last].next = v;
        last = v;
        skip_ws(p);
        if (p->pos >= p->len) {
            fail(p, "unterminated container");
            goto out;
        }
        unsigned char c = p->b[p->pos];
        if (c == ',') {
            p->pos++;
            continue;
        }
        if (c == (obj ? '}' : ']')) {
            p->pos++;
            break;
        }
        fail(p, obj ? "expected ',' or '}'" : "expected ',' or ']'");
        goto out;
    }
done:
    p->d->nodes[id].end = (uint32_t)p->pos;
    *out = id;
    rc = 0;
out:
    free(seen.slot);
    return rc;
}

static int parse_value(struct parser *p, int depth, uint32_t *out)
{
    if (p->pos >= p->len)
        return fail(p, "unexpected end");
    unsigned char c = p->b[p->pos];
    if (c == '{' || c == '[')
        return parse_container(p, depth, out);
    if (c == '"')
        return parse_string(p, out);
    if (c == '-' || (c >= '0' && c <= '9'))
        return parse_number(p, out);
    static const struct {
        const char *text;
        size_t len;
        int type;
    } lits[] = {{"true", 4, JSON_TRUE}, {"false", 5, JSON_FALSE}, {"null", 4, JSON_NULL}};
    for (size_t i = 0; i < sizeof(lits) / sizeof(*lits); i++) {
        if (p->len - p->pos >= lits[i].len &&
            memcmp(p->b + p->pos, lits[i].text, lits[i].len) == 0) {
            uint32_t id = node_new(p, lits[i].type, p->pos);
            if (id == JSON_NONE)
                return fail(p, "out of memory");
            p->pos += lits[i].len;
            p->d->nodes[id].end = (uint32_t)p->pos;
            *out = id;
            return 0;
        }
    }
    return fail(p, "unexpected character");
}

int json_parse(struct json_doc *d, const char *body, size_t len, char *err, size_t errlen)
{
    struct parser p = {
        .d = d, .b = (const unsigned char *)body, .len = len, .err = err, .errlen = errlen};
    d->body = body;
    d->len = len;
    d->root = JSON_NONE;
    if (len > JSON_MAX_BODY) {
        snprintf(err, errlen, "the request body is too large to read.");
        return -1;
    }
    p.stack[0].name = JSON_NONE;
    skip_ws(&p);
    if (parse_value(&p, 0, &d->root) < 0) {
        d->root = JSON_NONE;
        return -1;
    }
    skip_ws(&p);
    if (p.pos != len) {
        d->root = JSON_NONE;
        return fail(&p, "trailing data");
    }
    return 0;
}

void json_doc_deinit(struct json_doc *d)
{
    free(d->nodes);
    memset(d, 0, sizeof(*d));
    d->root = JSON_NONE;
}

char *json_str_dup(const struct json_doc *d, uint32_t id, size_t *len)
{
    if (id == JSON_NONE || d->nodes[id].type != JSON_STR)
        return NULL;
    const struct json_node *n = &d->nodes[id];
    char *s = malloc(n->end - n->start + 1);
    size_t o = 0;
    if (!s)
        return NULL;
    if (!n->esc) {
        memcpy(s, d->body + n->start, n->end - n->start);
        o = n->end - n->start;
    } else {
        struct dec c;
        int u;
        dec_init(&c, d, id);
        while ((u = dec_next(&c)) >= 0)
            s[o++] = (char)u; /* decoded is never longer than raw */
    }
    s[o] = '\0';
    if (len)
        *len = o;
    return s;
}

int json_number(const struct json_doc *d, uint32_t id, double *out)
{
    char buf[64];
    if (id == JSON_NONE || d->nodes[id].type != JSON_NUM)
        return -1;
    size_t n = d->nodes[id].end - d->nodes[id].start;
    if (n >= sizeof(buf)) {
        char *t = strndup(d->body + d->nodes[id].start, n);
        if (!t)
            return -1;
        *out = strtod(t, NULL);
        free(t);
        return 0;
    }
    memcpy(buf, d->body + d->nodes[id].start, n);
    buf[n] = '\0';
    *out = strtod(buf, NULL);
    return 0;
}

cJSON *json_to_cjson(const struct json_doc *d, uint32_t id)
{
    const struct json_node *n = &d->nodes[id];
    cJSON *o = NULL;
    char *s;
    double v;

    switch (n->type) {
    case JSON_OBJ:
        o = cJSON_CreateObject();
        if (!o)
            return NULL;
        JSON_FOR_MEMBERS(d, id, k, val)
        {
            cJSON *c = json_to_cjson(d, val);
            char *name = json_str_dup(d, k, NULL);
            if (!c || !name || !cJSON_AddItemToObject(o, name, c)) {
                cJSON_Delete(c);
                free(name);
                cJSON_Delete(o);
                return NULL;
            }
            free(name);
        }
        return o;
    case JSON_ARR:
        o = cJSON_CreateArray();
        if (!o)
            return NULL;
        JSON_FOR_ITEMS(d, id, val)
        {
            cJSON *c = json_to_cjson(d, val);
            if (!c || !cJSON_AddItemToArray(o, c)) {
                cJSON_Delete(c);
                cJSON_Delete(o);
                return NULL;
            }
        }
        return o;
    case JSON_STR:
        s = json_str_dup(d, id, NULL);
        if (!s)
            return NULL;
        o = cJSON_CreateString(s);
        free(s);
        return o;
    case JSON_NUM:
        json_number(d, id, &v);
        return cJSON_CreateNumber(v);
    case JSON_TRUE:
        return cJSON_CreateTrue();
    case JSON_FALSE:
        return cJSON_CreateFalse();
    default:
        return cJSON_CreateNull();
    }
}
