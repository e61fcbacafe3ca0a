/* extract.c -- find every string the model reads in an OpenAI or Anthropic body, decoded.
 *
 * cJSON gives values but not offsets, and redaction must rewrite the original bytes, so
 * this is a small strict JSON parser (RFC 8259: UTF-8 checked, surrogates paired, depth
 * capped) that builds a flat node tree with raw offsets, then walks the API's shape. Keys
 * are compared decoded ("\u0063ontent" is "content") and repeated keys are all scanned:
 * whatever a provider's parser would pick, we have looked at it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "policy/policy_int.h"

#include "common/grow.h"
#include "common/utf8.h"

enum { J_OBJ, J_ARR, J_STR, J_NUM, J_LIT };
#define J_NONE UINT32_MAX

struct jnode {
    uint8_t type;
    uint8_t esc;          /* string has escapes */
    uint32_t start, end;  /* strings: inside the quotes */
    uint32_t child, next; /* objects: children alternate key, value */
};

struct jparser {
    const unsigned char *b;
    size_t len, pos;
    struct jnode *nodes;
    size_t n, cap;
    char *err;
    size_t errlen;
};

static int jfail(struct jparser *p, const char *what)
{
    snprintf(p->err, p->errlen, "the request body is not valid JSON (%s at byte %zu).", what,
             p->pos);
    return -1;
}

static uint32_t jnew(struct jparser *p, int type)
{
    struct jnode *nn = grow_room(p->nodes, &p->cap, p->n + 1, sizeof(*nn), 256);
    if (!nn)
        return J_NONE;
    p->nodes = nn;
    struct jnode *j = &p->nodes[p->n];
    j->type = (uint8_t)type;
    j->esc = 0;
    j->start = j->end = (uint32_t)p->pos;
    j->child = j->next = J_NONE;
    return (uint32_t)p->n++;
}

static void jws(struct jparser *p)
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

static int jstring(struct jparser *p, uint32_t *out)
{
    p->pos++; /* opening quote */
    uint32_t id = jnew(p, J_STR);
    if (id == J_NONE)
        return jfail(p, "out of memory");
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
            return jfail(p, "unterminated string");
        }
        unsigned char c = b[i];
        if (c == '"')
            break;
        if (c < 0x20) {
            p->pos = i;
            return jfail(p, "control character in string");
        }
        if (c == '\\') {
            esc = 1;
            if (i + 1 >= len) {
                p->pos = i;
                return jfail(p, "unterminated escape");
            }
            unsigned char e = b[i + 1];
            if (e == 'u') {
                unsigned u, lo;
                if (i + 6 > len || hex4(b + i + 2, &u) < 0) {
                    p->pos = i;
                    return jfail(p, "bad \\u escape");
                }
                if (u >= 0xD800 && u <= 0xDBFF) {
                    if (i + 12 > len || b[i + 6] != '\\' || b[i + 7] != 'u' ||
                        hex4(b + i + 8, &lo) < 0 || lo < 0xDC00 || lo > 0xDFFF) {
                        p->pos = i;
                        return jfail(p, "unpaired surrogate");
                    }
                    i += 12;
                } else if (u >= 0xDC00 && u <= 0xDFFF) {
                    p->pos = i;
                    return jfail(p, "unpaired surrogate");
                } else {
                    i += 6;
                }
                continue;
            }
            if (!strchr("\"\\/bfnrt", e) || e == 0) {
                p->pos = i;
                return jfail(p, "bad escape");
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
            return jfail(p, "invalid UTF-8");
        }
        i += ul;
    }
    p->nodes[id].start = (uint32_t)p->pos;
    p->nodes[id].end = (uint32_t)i;
    p->nodes[id].esc = (uint8_t)esc;
    p->pos = i + 1;
    *out = id;
    return 0;
}

static int jnumber(struct jparser *p, uint32_t *out)
{
    const unsigned char *b = p->b;
    size_t i = p->pos, len = p->len;
    uint32_t id = jnew(p, J_NUM);
    if (id == J_NONE)
        return jfail(p, "out of memory");
    if (i < len && b[i] == '-')
        i++;
    if (i < len && b[i] == '0')
        i++;
    else if (i < len && b[i] >= '1' && b[i] <= '9')
        while (i < len && b[i] >= '0' && b[i] <= '9')
            i++;
    else
        return jfail(p, "bad number");
    if (i < len && b[i] == '.') {
        i++;
        if (i >= len || b[i] < '0' || b[i] > '9')
            return jfail(p, "bad number");
        while (i < len && b[i] >= '0' && b[i] <= '9')
            i++;
    }
    if (i < len && (b[i] == 'e' || b[i] == 'E')) {
        i++;
        if (i < len && (b[i] == '+' || b[i] == '-'))
            i++;
        if (i >= len || b[i] < '0' || b[i] > '9')
            return jfail(p, "bad number");
        while (i < len && b[i] >= '0' && b[i] <= '9')
            i++;
    }
    p->nodes[id].end = (uint32_t)i;
    p->pos = i;
    *out = id;
    return 0;
}

static int jvalue(struct jparser *p, int depth, uint32_t *out);

static int jcontainer(struct jparser *p, int depth, uint32_t *out)
{
    int obj = p->b[p->pos] == '{';
    if (depth >= POLICY_MAX_DEPTH)
        return jfail(p, "nesting deeper than 64");
    uint32_t id = jnew(p, obj ? J_OBJ : J_ARR);
    if (id == J_NONE)
        return jfail(p, "out of memory");
    p->pos++;
    uint32_t last = J_NONE;
    jws(p);
    if (p->pos < p->len && p->b[p->pos] == (obj ? '}' : ']')) {
        p->pos++;
        p->nodes[id].end = (uint32_t)p->pos;
        *out = id;
        return 0;
    }
    for (;;) {
        uint32_t k = J_NONE, v;
        jws(p);
        if (obj) {
            if (p->pos >= p->len || p->b[p->pos] != '"')
                return jfail(p, "expected a key");
            if (jstring(p, &k) < 0)
                return -1;
            jws(p);
            if (p->pos >= p->len || p->b[p->pos] != ':')
                return jfail(p, "expected ':'");
            p->pos++;
            jws(p);
        }
        if (jvalue(p, depth + 1, &v) < 0)
            return -1;
        if (obj) {
            if (last == J_NONE)
                p->nodes[id].child = k;
            else
                p->nodes[last].next = k;
            p->nodes[k].next = v;
        } else if (last == J_NONE) {
            p->nodes[id].child = v;
        } else {
            p->nodes[last].next = v;
        }
        last = v;
        jws(p);
        if (p->pos >= p->len)
            return jfail(p, "unterminated container");
        unsigned char c = p->b[p->pos];
        if (c == ',') {
            p->pos++;
            continue;
        }
        if (c == (obj ? '}' : ']')) {
            p->pos++;
            break;
        }
        return jfail(p, obj ? "expected ',' or '}'" : "expected ',' or ']'");
    }
    p->nodes[id].end = (uint32_t)p->pos;
    *out = id;
    return 0;
}

static int jvalue(struct jparser *p, int depth, uint32_t *out)
{
    if (p->pos >= p->len)
        return jfail(p, "unexpected end");
    unsigned char c = p->b[p->pos];
    if (c == '{' || c == '[')
        return jcontainer(p, depth, out);
    if (c == '"')
        return jstring(p, out);
    if (c == '-' || (c >= '0' && c <= '9'))
        return jnumber(p, out);
    static const char *const lits[] = {"true", "false", "null"};
    for (int i = 0; i < 3; i++) {
        size_t l = strlen(lits[i]);
        if (p->len - p->pos >= l && memcmp(p->b + p->pos, lits[i], l) == 0) {
            uint32_t id = jnew(p, J_LIT);
            if (id == J_NONE)
                return jfail(p, "out of memory");
            p->pos += l;
            p->nodes[id].end = (uint32_t)p->pos;
            *out = id;
            return 0;
        }
    }
    return jfail(p, "unexpected character");
}

/* ---- decoding into the text buffer ---- */

static int grow(void **ptr, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t nc = *cap ? *cap : 64;
    while (nc < need) {
        if (nc > SIZE_MAX / 2 / elem)
            return -1;
        nc *= 2;
    }
    void *n = realloc(*ptr, nc * elem);
    if (!n)
        return -1;
    *ptr = n;
    *cap = nc;
    return 0;
}

static size_t put_utf8(unsigned cp, char *o)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | cp >> 6);
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | cp >> 12);
        o[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | cp >> 18);
    o[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    o[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Decode one escape at b (already validated); returns raw length, decoded into o/dl. */
static size_t decode_escape(const unsigned char *b, char *o, size_t *dl)
{
    unsigned u, lo;
    switch (b[1]) {
    case 'b': o[0] = '\b'; *dl = 1; return 2;
    case 'f': o[0] = '\f'; *dl = 1; return 2;
    case 'n': o[0] = '\n'; *dl = 1; return 2;
    case 'r': o[0] = '\r'; *dl = 1; return 2;
    case 't': o[0] = '\t'; *dl = 1; return 2;
    case 'u':
        hex4(b + 2, &u);
        if (u >= 0xD800 && u <= 0xDBFF) {
            hex4(b + 8, &lo);
            *dl = put_utf8(0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00), o);
            return 12;
        }
        *dl = put_utf8(u, o);
        return 6;
    default: o[0] = (char)b[1]; *dl = 1; return 2;
    }
}

struct walk {
    const struct jparser *p;
    struct pextract *x;
    char *err;
    size_t errlen;
    char path[192]; /* where the walk is, for errors: "messages[2].content[1]" */
    size_t path_len;
};

/* path_push -- append to the walk's path; returns the length to restore */
static size_t path_push(struct walk *w, const char *fmt, int i)
{
    size_t old = w->path_len;
    int n = snprintf(w->path + old, sizeof(w->path) - old, fmt, i);
    if (n > 0 && old + (size_t)n < sizeof(w->path)) {
        w->path_len = old + (size_t)n;
    } else if (n > 0) {
        /* too deep to name whole: the path ends in "..." */
        w->path_len = sizeof(w->path) - 1;
        memcpy(w->path + w->path_len - 3, "...", 3);
    }
    return old;
}

static void path_pop(struct walk *w, size_t old)
{
    w->path_len = old;
    w->path[old] = '\0';
}

static int add_segment(struct walk *w, uint32_t id, int message, uint32_t key)
{
    const struct jnode *n = &w->p->nodes[id];
    struct pextract *x = w->x;
    size_t rawlen = n->end - n->start;
    if (rawlen == 0)
        return 0;
    if (x->n_segs >= POLICY_MAX_SEGMENTS) {
        snprintf(w->err, w->errlen, "the request has more than %d text segments.",
                 POLICY_MAX_SEGMENTS);
        return -1;
    }
    if (grow((void **)&x->segs, &x->segs_cap, x->n_segs + 1, sizeof(*x->segs)) < 0 ||
        grow((void **)&x->text, &x->text_cap, x->text_len + rawlen + 1, 1) < 0)
        goto oom;
    struct pseg *s = &x->segs[x->n_segs];
    s->message = message;
    s->ostart = n->start;
    s->oend = n->end;
    s->dstart = x->text_len;
    s->run_first = x->n_runs;
    s->n_runs = 0;
    s->key_off = key != J_NONE ? w->p->nodes[key].start : 0;
    s->key_len = key != J_NONE ? w->p->nodes[key].end - w->p->nodes[key].start : 0;
    const unsigned char *b = w->p->b;
    if (!n->esc) {
        memcpy(x->text + x->text_len, b + n->start, rawlen);
        x->text_len += rawlen;
    } else {
        size_t i = n->start;
        while (i < n->end) {
            const unsigned char *bs = memchr(b + i, '\\', n->end - i);
            size_t lit = bs ? (size_t)(bs - b) - i : n->end - i;
            memcpy(x->text + x->text_len, b + i, lit);
            x->text_len += lit;
            i += lit;
            if (!bs)
                break;
            if (grow((void **)&x->runs, &x->runs_cap, x->n_runs + 1, sizeof(*x->runs)) < 0)
                goto oom;
            size_t dl;
            size_t ol = decode_escape(b + i, x->text + x->text_len, &dl);
            struct prun *r = &x->runs[x->n_runs++];
            r->doff = x->text_len;
            r->ooff = i;
            r->dlen = (uint8_t)dl;
            r->olen = (uint8_t)ol;
            x->text_len += dl;
            i += ol;
            s->n_runs++;
        }
    }
    s->dend = x->text_len;
    x->text[x->text_len++] = '\n';
    x->n_segs++;
    return 0;
oom:
    snprintf(w->err, w->errlen, "out of memory while reading the request.");
    return -1;
}

/* Whether string node id decodes to exactly the NUL-terminated name. */
static int key_is(const struct jparser *p, uint32_t id, const char *name)
{
    const struct jnode *n = &p->nodes[id];
    size_t nl = strlen(name);
    if (!n->esc)
        return n->end - n->start == nl && memcmp(p->b + n->start, name, nl) == 0;
    char buf[16];
    size_t o = 0, i = n->start;
    while (i < n->end) {
        if (o + 4 > sizeof(buf))
            return 0;
        if (p->b[i] == '\\') {
            size_t dl;
            i += decode_escape(p->b + i, buf + o, &dl);
            o += dl;
        } else {
            buf[o++] = (char)p->b[i++];
        }
    }
    return o == nl && memcmp(buf, name, nl) == 0;
}

/* Iterate the values of every member of object `obj` named `name`. */
#define FOR_MEMBER(p, obj, name, v)                                                               \
    for (uint32_t k_##v = (p)->nodes[obj].child, v = J_NONE; k_##v != J_NONE;                     \
         k_##v = (p)->nodes[(p)->nodes[k_##v].next].next)                                         \
        if ((v = (p)->nodes[k_##v].next), key_is(p, k_##v, name))

static int add_all_strings(struct walk *w, uint32_t id, int message, uint32_t key)
{
    const struct jparser *p = w->p;
    const struct jnode *n = &p->nodes[id];
    if (n->type == J_STR)
        return add_segment(w, id, message, key);
    if (n->type == J_ARR) {
        for (uint32_t c = n->child; c != J_NONE; c = p->nodes[c].next)
            if (add_all_strings(w, c, message, key) < 0)
                return -1;
    } else if (n->type == J_OBJ) {
        for (uint32_t k = n->child; k != J_NONE; k = p->nodes[p->nodes[k].next].next)
            if (add_all_strings(w, p->nodes[k].next, message, k) < 0)
                return -1;
    }
    return 0;
}

/* Content: a string, or an array of parts/blocks. Any block's text, thinking, tool input,
 * nested content (tool results) and function arguments are read, whatever its type says:
 * a provider that reads an odd block we skipped would be a leak. */
static int add_content(struct walk *w, uint32_t id, int message);

/* A document block's source (Anthropic): plain-text data and content blocks are text
 * the model reads; base64 (PDF) and URL sources are not text the gateway can read and
 * are documented as not scanned. */
static int add_source(struct walk *w, uint32_t src, int message)
{
    const struct jparser *p = w->p;
    int is_text = 0, is_content = 0;

    if (p->nodes[src].type != J_OBJ)
        return 0;
    FOR_MEMBER(p, src, "type", t)
    if (p->nodes[t].type == J_STR) {
        is_text |= key_is(p, t, "text");
        is_content |= key_is(p, t, "content");
    }
    if (is_text)
        FOR_MEMBER(p, src, "data", v)
        if (p->nodes[v].type == J_STR && add_segment(w, v, message, J_NONE) < 0)
            return -1;
    if (is_content)
        FOR_MEMBER(p, src, "content", v)
        {
            size_t old = path_push(w, ".source.content", 0);
            int rc = add_content(w, v, message);
            path_pop(w, old);
            if (rc < 0)
                return -1;
        }
    return 0;
}

/* A part whose content the model reads but the gateway cannot: a file (PDF, ...), audio,
 * a base64 document. Its text would leave unscanned, so the request is refused (fail
 * closed), at any depth. Images are let through (docs/policy.md says so). */
static int unscannable(struct walk *w, uint32_t id)
{
    const struct jparser *p = w->p;
    const char *what = NULL;

    FOR_MEMBER(p, id, "type", t)
    if (p->nodes[t].type == J_STR) {
        if (key_is(p, t, "file"))
            what = "file";
        else if (key_is(p, t, "input_audio"))
            what = "input_audio";
        else if (key_is(p, t, "document")) {
            FOR_MEMBER(p, id, "source", src)
            if (p->nodes[src].type == J_OBJ) {
                FOR_MEMBER(p, src, "type", st)
                if (p->nodes[st].type == J_STR && key_is(p, st, "base64"))
                    what = "document";
            }
        }
    }
    if (!what)
        return 0;
    snprintf(w->err, w->errlen,
             "%s is a '%s' part, which the gateway cannot scan (send the text itself instead).",
             w->path, what);
    return -1;
}

static int add_block(struct walk *w, uint32_t id, int message)
{
    const struct jparser *p = w->p;
    if (p->nodes[id].type == J_STR)
        return add_segment(w, id, message, J_NONE);
    if (p->nodes[id].type != J_OBJ)
        return 0;
    if (unscannable(w, id) < 0)
        return -1;
    static const char *const text_keys[] = {"text", "thinking", "refusal", "title", "context"};
    for (size_t i = 0; i < sizeof(text_keys) / sizeof(*text_keys); i++)
        FOR_MEMBER(p, id, text_keys[i], v)
        if (p->nodes[v].type == J_STR && add_segment(w, v, message, J_NONE) < 0)
            return -1;
    FOR_MEMBER(p, id, "input", v)
    if (add_all_strings(w, v, message, J_NONE) < 0)
        return -1;
    FOR_MEMBER(p, id, "content", v)
    {
        size_t old = path_push(w, ".content", 0);
        int rc = add_content(w, v, message);
        path_pop(w, old);
        if (rc < 0)
            return -1;
    }
    FOR_MEMBER(p, id, "source", v)
    if (add_source(w, v, message) < 0)
        return -1;
    return 0;
}

static int add_content(struct walk *w, uint32_t id, int message)
{
    const struct jparser *p = w->p;
    const struct jnode *n = &p->nodes[id];
    if (n->type == J_STR)
        return add_segment(w, id, message, J_NONE);
    if (n->type == J_ARR) {
        int j = 0;
        for (uint32_t c = n->child; c != J_NONE; c = p->nodes[c].next, j++) {
            size_t old = path_push(w, "[%d]", j);
            int rc = add_block(w, c, message);
            path_pop(w, old);
            if (rc < 0)
                return -1;
        }
    }
    return 0;
}

static int add_arguments(struct walk *w, uint32_t fn, int message)
{
    const struct jparser *p = w->p;
    if (p->nodes[fn].type != J_OBJ)
        return 0;
    FOR_MEMBER(p, fn, "arguments", v)
    if (p->nodes[v].type == J_STR && add_segment(w, v, message, J_NONE) < 0)
        return -1;
    return 0;
}

static int add_message(struct walk *w, uint32_t m, int idx)
{
    const struct jparser *p = w->p;
    if (p->nodes[m].type != J_OBJ)
        return 0;
    FOR_MEMBER(p, m, "content", v)
    {
        size_t old = path_push(w, "messages[%d].content", idx);
        int rc = add_content(w, v, idx);
        path_pop(w, old);
        if (rc < 0)
            return -1;
    }
    FOR_MEMBER(p, m, "tool_calls", v)
    {
        if (p->nodes[v].type != J_ARR)
            continue;
        for (uint32_t c = p->nodes[v].child; c != J_NONE; c = p->nodes[c].next) {
            if (p->nodes[c].type != J_OBJ)
                continue;
            FOR_MEMBER(p, c, "function", f)
            if (add_arguments(w, f, idx) < 0)
                return -1;
        }
    }
    FOR_MEMBER(p, m, "function_call", v)
    if (add_arguments(w, v, idx) < 0)
        return -1;
    return 0;
}

int policy_extract(enum policy_api api, const char *body, size_t len, struct pextract *x,
                   char *err, size_t errlen)
{
    struct jparser p = {.b = (const unsigned char *)body, .len = len, .err = err,
                        .errlen = errlen};
    struct walk w = {.p = &p, .x = x, .err = err, .errlen = errlen};
    uint32_t root;
    int rc = -1;
    if (len >= POLICY_MAX_BODY) {
        snprintf(err, errlen, "the request body is too large to scan.");
        return -1;
    }
    x->body = body;
    /* decoded text is never longer than the body (each string gives up two quotes for its
     * separator), so one allocation holds it: no growth copies on the hot path */
    x->text = malloc(len + 1);
    if (!x->text) {
        snprintf(err, errlen, "out of memory while reading the request.");
        return -1;
    }
    x->text_cap = len + 1;
    jws(&p);
    if (jvalue(&p, 0, &root) < 0)
        goto done;
    jws(&p);
    if (p.pos != len) {
        jfail(&p, "trailing data");
        goto done;
    }
    if (p.nodes[root].type != J_OBJ) {
        snprintf(err, errlen, "the request body is not a JSON object.");
        goto done;
    }
    if (api == POLICY_API_ANTHROPIC) {
        FOR_MEMBER(&p, root, "system", v)
        {
            size_t old = path_push(&w, "system", 0);
            int r2 = add_content(&w, v, -1);
            path_pop(&w, old);
            if (r2 < 0)
                goto done;
        }
    }
    /* tool definitions and schemas are read by the model too: every string in them is
     * scanned, outside any message (-1) */
    static const char *const top_keys[] = {"tools", "functions", "response_format"};
    for (size_t i = 0; i < sizeof(top_keys) / sizeof(*top_keys); i++)
        FOR_MEMBER(&p, root, top_keys[i], v)
        if (add_all_strings(&w, v, -1, J_NONE) < 0)
            goto done;
    FOR_MEMBER(&p, root, "messages", v)
    {
        if (p.nodes[v].type != J_ARR)
            continue;
        int idx = 0;
        for (uint32_t m = p.nodes[v].child; m != J_NONE; m = p.nodes[m].next, idx++)
            if (add_message(&w, m, idx) < 0)
                goto done;
    }
    rc = 0;
done:
    free(p.nodes);
    return rc;
}

void policy_extract_deinit(struct pextract *x)
{
    if (x->text)
        sodium_memzero(x->text, x->text_len);
    free(x->text);
    free(x->segs);
    free(x->runs);
    memset(x, 0, sizeof(*x));
}

/* Map decoded position `d` (inside segment s) to the body: for a start, the first raw byte
 * of the unit producing d; for an end (d is the last byte + 1), one past the raw unit. */
static size_t map_pos(const struct pextract *x, const struct pseg *s, size_t d, int is_end)
{
    size_t q = is_end ? d - 1 : d;
    if (s->n_runs == 0)
        return s->ostart + (q - s->dstart) + (is_end ? 1 : 0);
    size_t lo = 0, hi = s->n_runs; /* first run with doff > q */
    const struct prun *r = x->runs + s->run_first;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (r[mid].doff <= q)
            lo = mid + 1;
        else
            hi = mid;
    }
    size_t base_d = s->dstart, base_o = s->ostart;
    if (lo > 0) {
        const struct prun *u = &r[lo - 1];
        if (q < u->doff + u->dlen)
            return is_end ? u->ooff + u->olen : u->ooff;
        base_d = u->doff + u->dlen;
        base_o = u->ooff + u->olen;
    }
    return base_o + (q - base_d) + (is_end ? 1 : 0);
}

void policy_extract_map(const struct pextract *x, const struct pseg *s, size_t ds, size_t de,
                        size_t *os, size_t *oe)
{
    *os = map_pos(x, s, ds, 0);
    *oe = de > ds ? map_pos(x, s, de, 1) : *os;
}
