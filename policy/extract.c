/* extract.c -- find every string the model reads in an OpenAI or Anthropic body, decoded.
 *
 * Walks the API's shape over the gateway's one strict parse of the body (common/json.h:
 * byte spans kept, names compared decoded, repeated names and NULs already refused), and
 * decodes each string it finds into one text buffer, keeping the escape runs that map any
 * decoded span back to the original body bytes for redaction. */
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sodium.h>

#include "policy/policy_int.h"

#include "common/grow.h"
#include "common/json.h"
#include "common/utf8.h"

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

/* Where the walk is: one frame per open container below the root, the member name (an
 * object's) or the item index (an array's). The path an error names is made from these
 * only when there is an error: formatting it on the way down cost more than the rest of
 * the walk for a body of many small parts. */
struct walk_frame {
    uint32_t key; /* JSON_NONE: an array item */
    int index;
};

struct walk {
    const struct json_doc *p;
    struct pextract *x;
    char *err;
    size_t errlen;
    struct walk_frame frames[JSON_MAX_DEPTH + 2]; /* the parse nests at most JSON_MAX_DEPTH */
    int depth;
    char path[192]; /* filled by walk_path: "messages[2].content[1]" */
    size_t path_len;
    uint32_t top_obj; /* the body's root object */
};

/* path_add -- append to the path; past its room it ends in "..." */
static void path_add(struct walk *w, const char *s, size_t n)
{
    size_t room = sizeof(w->path) - 1 - w->path_len;

    if (n > room) {
        memcpy(w->path + w->path_len, s, room);
        w->path_len = sizeof(w->path) - 1;
        memcpy(w->path + w->path_len - 3, "...", 3);
    } else {
        memcpy(w->path + w->path_len, s, n);
        w->path_len += n;
    }
    w->path[w->path_len] = '\0';
}

/* walk_path -- w->path for the walk's frames: member names as written in the body, items
 * as [i] */
static void walk_path(struct walk *w)
{
    w->path_len = 0;
    w->path[0] = '\0';
    for (int d = 0; d < w->depth; d++) {
        const struct walk_frame *f = &w->frames[d];
        char num[24];

        if (f->key == JSON_NONE) {
            int n = snprintf(num, sizeof(num), "[%d]", f->index);
            path_add(w, num, n > 0 ? (size_t)n : 0);
            continue;
        }
        if (w->path_len)
            path_add(w, ".", 1);
        path_add(w, w->p->body + w->p->nodes[f->key].start,
                 w->p->nodes[f->key].end - w->p->nodes[f->key].start);
    }
}

/* plain -- n bytes of ASCII without '%' or '&': text the normaliser leaves as it is (the
 * common case, copied whole) */
static int plain(const unsigned char *p, size_t n)
{
    const uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;
    size_t i = 0;

    for (; i + 8 <= n; i += 8) {
        uint64_t x, pc, am;
        memcpy(&x, p + i, 8);
        pc = x ^ (ones * '%');
        am = x ^ (ones * '&');
        if ((x & high) || (((pc - ones) & ~pc) & high) || (((am - ones) & ~am) & high))
            return 0;
    }
    for (; i < n; i++)
        if (p[i] >= 0x80 || p[i] == '%' || p[i] == '&')
            return 0;
    return 1;
}

/* the code point of the (validated) escape at b; returns its raw length */
static size_t escape_cp(const unsigned char *b, unsigned *cp)
{
    char o[4];
    size_t dl, ol = json_decode_escape(b, o, &dl);
    const unsigned char *u = (const unsigned char *)o;

    if (dl == 1)
        *cp = u[0];
    else if (dl == 2)
        *cp = (unsigned)(u[0] & 0x1F) << 6 | (u[1] & 0x3F);
    else if (dl == 3)
        *cp = (unsigned)(u[0] & 0x0F) << 12 | (unsigned)(u[1] & 0x3F) << 6 | (u[2] & 0x3F);
    else
        *cp = (unsigned)(u[0] & 0x07) << 18 | (unsigned)(u[1] & 0x3F) << 12 |
              (unsigned)(u[2] & 0x3F) << 6 | (u[3] & 0x3F);
    return ol;
}

static size_t put_cp(unsigned cp, char *o)
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

/* One decoded character of a string: its code point and the raw bytes it came from. */
struct unit {
    unsigned cp;
    size_t off, len;
};

static int hexv(unsigned c)
{
    return c >= '0' && c <= '9'   ? (int)(c - '0')
           : c >= 'a' && c <= 'f' ? (int)(c - 'a' + 10)
           : c >= 'A' && c <= 'F' ? (int)(c - 'A' + 10)
                                  : -1;
}

static size_t unescape_level(struct unit *u, size_t n);

/* the raw string bytes from i as characters, those that start before wend (the string ends
 * at end): JSON escapes decoded, UTF-8 decoded, and an escape written one level down (a
 * backslash in the text followed by `u` and four hex digits, or by one of "\/bfnrt: JSON
 * inside a JSON string, as tool arguments are) decoded too, since whoever reads that text
 * decodes it. Returns the count; u has room for wend-i. */
static size_t units_of(const unsigned char *b, size_t i, size_t wend, size_t end, struct unit *u)
{
    size_t n = 0;

    while (i < wend) {
        unsigned char c = b[i];
        unsigned cp;
        size_t ol;

        if (c == '\\') {
            ol = escape_cp(b + i, &cp);
        } else if (c >= 0x80) {
            ol = utf8_seq_len(b + i, end - i);
            if (ol == 2)
                cp = (unsigned)(c & 0x1F) << 6 | (b[i + 1] & 0x3F);
            else if (ol == 3)
                cp = (unsigned)(c & 0x0F) << 12 | (unsigned)(b[i + 1] & 0x3F) << 6 |
                     (b[i + 2] & 0x3F);
            else
                cp = (unsigned)(c & 0x07) << 18 | (unsigned)(b[i + 1] & 0x3F) << 12 |
                     (unsigned)(b[i + 2] & 0x3F) << 6 | (b[i + 3] & 0x3F);
        } else {
            cp = c;
            ol = 1;
        }
        u[n].cp = cp;
        u[n].off = i;
        u[n].len = ol;
        n++;
        i += ol;
    }
    /* deeper levels: a decoded backslash and what follows it, again while that changes
     * something (JSON in a string in tool arguments: "\\\\u0040" is an '@' to whoever
     * decodes twice), at most three times; a unit never spans more than 255 raw bytes */
    for (int level = 0; level < 3; level++) {
        size_t before_n = n;
        n = unescape_level(u, n);
        if (n == before_n)
            break;
    }
    return n;
}

/* one level of escapes over units u[0..n) (units_of); returns the new count */
static size_t unescape_level(struct unit *u, size_t n)
{
    size_t o = 0;
    for (size_t k = 0; k < n; k++) {
        if (u[k].cp == '\\' && k + 1 < n) {
            unsigned e = u[k + 1].cp;
            int h0, h1, h2, h3;
            if (e == 'u' && k + 5 < n && (h0 = hexv(u[k + 2].cp)) >= 0 &&
                (h1 = hexv(u[k + 3].cp)) >= 0 && (h2 = hexv(u[k + 4].cp)) >= 0 &&
                (h3 = hexv(u[k + 5].cp)) >= 0) {
                unsigned v = (unsigned)(h0 << 12 | h1 << 8 | h2 << 4 | h3), lo;
                if (v != 0 && (v < 0xD800 || v > 0xDFFF) &&
                    u[k + 5].off + u[k + 5].len - u[k].off <= 255) {
                    u[o] = (struct unit){v, u[k].off, u[k + 5].off + u[k + 5].len - u[k].off};
                    o++;
                    k += 5;
                    continue;
                }
                /* a surrogate pair written one level down */
                if (v >= 0xD800 && v <= 0xDBFF && k + 11 < n && u[k + 6].cp == '\\' &&
                    u[k + 7].cp == 'u' && (h0 = hexv(u[k + 8].cp)) >= 0 &&
                    (h1 = hexv(u[k + 9].cp)) >= 0 && (h2 = hexv(u[k + 10].cp)) >= 0 &&
                    (h3 = hexv(u[k + 11].cp)) >= 0 &&
                    (lo = (unsigned)(h0 << 12 | h1 << 8 | h2 << 4 | h3)) >= 0xDC00 &&
                    lo <= 0xDFFF && u[k + 11].off + u[k + 11].len - u[k].off <= 255) {
                    u[o] = (struct unit){0x10000 + ((v - 0xD800) << 10) + (lo - 0xDC00), u[k].off,
                                         u[k + 11].off + u[k + 11].len - u[k].off};
                    o++;
                    k += 11;
                    continue;
                }
            }
            const char *from = "\"\\/bfnrt", *to = "\"\\/\b\f\n\r\t", *hit;
            if (e && e < 0x80 && (hit = strchr(from, (int)e)) != NULL &&
                u[k + 1].off + u[k + 1].len - u[k].off <= 255) {
                u[o] = (struct unit){(unsigned char)to[hit - from], u[k].off,
                                     u[k + 1].off + u[k + 1].len - u[k].off};
                o++;
                k += 1;
                continue;
            }
        }
        u[o++] = u[k];
    }
    return o;
}

/* an '@' spelt in several characters at u[k]: `%40`, `&#64;`, `&#x40;` (leading zeros
 * allowed), `&commat;`. Returns how many units it takes, or 0. */
static size_t at_spelling(const struct unit *u, size_t k, size_t n)
{
    static const char commat[] = "&commat;";
    size_t j, v = 0;

    if (u[k].cp == '%')
        return k + 2 < n && u[k + 1].cp == '4' && u[k + 2].cp == '0' ? 3 : 0;
    if (u[k].cp != '&' || k + 1 >= n)
        return 0;
    if (u[k + 1].cp == '#') {
        int hex = k + 2 < n && (u[k + 2].cp == 'x' || u[k + 2].cp == 'X');
        for (j = k + 2 + (size_t)hex; j < n && j < k + 12; j++) {
            int d = hex ? hexv(u[j].cp)
                        : (u[j].cp >= '0' && u[j].cp <= '9' ? (int)(u[j].cp - '0') : -1);
            if (d < 0)
                break;
            v = v * (hex ? 16 : 10) + (size_t)d;
        }
        if (j > k + 2 + (size_t)hex && j < n && u[j].cp == ';' && v == '@')
            return j - k + 1;
        return 0;
    }
    for (j = 0; j < sizeof(commat) - 1; j++)
        if (k + j >= n || u[k + j].cp != (unsigned char)commat[j])
            return 0;
    return j;
}

/* kept_run -- where the stretch of raw bytes from i that detection sees unchanged ends:
 * characters with no escape, no '%' or '&' (an '@' spelt out), and none that the
 * normaliser maps or drops */
static size_t kept_run(const unsigned char *b, size_t i, size_t end)
{
    while (i < end) {
        unsigned char c = b[i];
        size_t ol;
        unsigned cp;

        if (c < 0x80) {
            if (c == '\\' || c == '%' || c == '&')
                break;
            i++;
            continue;
        }
        ol = utf8_seq_len(b + i, end - i);
        if (ol == 2)
            cp = (unsigned)(c & 0x1F) << 6 | (b[i + 1] & 0x3F);
        else if (ol == 3)
            cp = (unsigned)(c & 0x0F) << 12 | (unsigned)(b[i + 1] & 0x3F) << 6 | (b[i + 2] & 0x3F);
        else
            cp = (unsigned)(c & 0x07) << 18 | (unsigned)(b[i + 1] & 0x3F) << 12 |
                 (unsigned)(b[i + 2] & 0x3F) << 6 | (b[i + 3] & 0x3F);
        if (policy_norm_cp(cp) != POLICY_NORM_KEEP)
            break;
        i += ol;
    }
    return i;
}

/* normalized -- decode raw string bytes [i, end) into the text as detection sees them
 * (normalize.c), one character to at most one byte; every stretch whose text differs from
 * its raw bytes (an escape at either level, a mapped or dropped character, an '@' spelt
 * out) gets a run, so spans map back to the exact original bytes. Never longer than the
 * raw bytes. */
/* put -- one character as detection sees it: cp, spelt in the raw bytes [off, off + ol),
 * mapped or dropped by the normaliser; a run when the text differs from those bytes */
static int put(struct pextract *x, struct pseg *s, const unsigned char *b, unsigned cp, size_t off,
               size_t ol)
{
    int m = policy_norm_cp(cp);
    char out[4];
    size_t dl;
    struct prun *r;

    if (m == POLICY_NORM_DROP)
        dl = 0;
    else if (m >= 0)
        out[0] = (char)m, dl = 1;
    else
        dl = put_cp(cp, out);
    memcpy(x->text + x->text_len, out, dl);
    if (dl == ol && memcmp(out, b + off, dl) == 0) {
        x->text_len += dl;
        return 0;
    }
    if (ol > 255)
        return -1; /* (cannot be: units_of never merges more) */
    if (grow((void **)&x->runs, &x->runs_cap, x->n_runs + 1, sizeof(*x->runs)) < 0)
        return -1;
    r = &x->runs[x->n_runs++];
    r->doff = x->text_len;
    r->ooff = off;
    r->dlen = (uint8_t)dl;
    r->olen = (uint8_t)ol;
    s->n_runs++;
    x->text_len += dl;
    return 0;
}

/* one_char -- the character at raw i when it stands alone: a mapped or dropped character,
 * or a JSON escape whose character starts nothing longer (not a backslash, '%' or '&');
 * its length, or 0 when it needs the unit decoder (units_of) */
static size_t one_char(const unsigned char *b, size_t i, size_t end, unsigned *cp)
{
    size_t ol;

    if (b[i] == '%' || b[i] == '&')
        return 0;
    if (b[i] == '\\') {
        ol = escape_cp(b + i, cp);
        return *cp == '\\' || *cp == '%' || *cp == '&' ? 0 : ol;
    }
    ol = utf8_seq_len(b + i, end - i);
    if (ol == 1)
        *cp = b[i];
    else if (ol == 2)
        *cp = (unsigned)(b[i] & 0x1F) << 6 | (b[i + 1] & 0x3F);
    else if (ol == 3)
        *cp = (unsigned)(b[i] & 0x0F) << 12 | (unsigned)(b[i + 1] & 0x3F) << 6 | (b[i + 2] & 0x3F);
    else
        *cp = (unsigned)(b[i] & 0x07) << 18 | (unsigned)(b[i + 1] & 0x3F) << 12 |
              (unsigned)(b[i + 2] & 0x3F) << 6 | (b[i + 3] & 0x3F);
    return ol;
}

/* normalized -- decode raw string bytes [i, end) into the text as detection sees them
 * (normalize.c), one character to at most one byte; every stretch whose text differs from
 * its raw bytes (an escape at any level, a mapped or dropped character, an '@' spelt out)
 * gets a run, so spans map back to the exact original bytes. Never longer than the raw
 * bytes. Three paths, fastest first: stretches detection sees unchanged are copied;
 * a character that stands alone is put; what may start something longer (a backslash at
 * a deeper level, an '@' spelt out) goes through the unit decoder, NORM_WINDOW raw bytes
 * at a time, the units that start in the last NORM_TAIL of a window (an escape spelt over
 * several levels spans at most 255 bytes) decoded again at the head of the next: the
 * memory is one window's, however long the string. */
static int normalized(struct pextract *x, struct pseg *s, const unsigned char *b, size_t i,
                      size_t end)
{
    enum { NORM_WINDOW = 768, NORM_TAIL = 256 };
    struct unit u[NORM_WINDOW];

    while (i < end) {
        size_t j = kept_run(b, i, end), wend, n, limit, k, ol;
        unsigned cp;

        if (j > i) {
            memcpy(x->text + x->text_len, b + i, j - i);
            x->text_len += j - i;
            i = j;
            continue;
        }
        if ((ol = one_char(b, i, end, &cp)) != 0) {
            if (put(x, s, b, cp, i, ol) < 0)
                return -1;
            i += ol;
            continue;
        }
        wend = end - i > NORM_WINDOW ? i + NORM_WINDOW : end;
        n = units_of(b, i, wend, end, u);
        limit = n;
        if (wend < end)
            for (limit = 0; limit < n && u[limit].off < wend - NORM_TAIL;)
                limit++;
        if (limit == 0)
            limit = n; /* (cannot be: a unit spans at most 255 bytes) */
        for (k = 0; k < limit;) {
            size_t take = at_spelling(u, k, n);

            if (take) {
                ol = u[k + take - 1].off + u[k + take - 1].len - u[k].off;
                if (put(x, s, b, '@', u[k].off, ol) < 0)
                    return -1;
                k += take;
            } else {
                if (put(x, s, b, u[k].cp, u[k].off, u[k].len) < 0)
                    return -1;
                k++;
            }
        }
        i = k < n ? u[k].off : u[n - 1].off + u[n - 1].len;
    }
    return 0;
}

static int add_segment(struct walk *w, uint32_t id, int message, uint32_t key)
{
    const struct json_node *n = &w->p->nodes[id];
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
    s->key_off = key != JSON_NONE ? w->p->nodes[key].start : 0;
    s->key_len = key != JSON_NONE ? w->p->nodes[key].end - w->p->nodes[key].start : 0;
    const unsigned char *b = (const unsigned char *)w->p->body;
    if (!n->esc && plain(b + n->start, rawlen)) {
        memcpy(x->text + x->text_len, b + n->start, rawlen);
        x->text_len += rawlen;
    } else if (normalized(x, s, b, n->start, n->end) < 0) {
        goto oom;
    }
    s->dend = x->text_len;
    x->text[x->text_len++] = '\n';
    x->n_segs++;
    return 0;
oom:
    snprintf(w->err, w->errlen, "out of memory while reading the request.");
    return -1;
}

static int key_is(const struct json_doc *p, uint32_t id, const char *name)
{
    return json_name_is(p, id, name, strlen(name));
}

/* The members of one object that the walk's checks read (the object's `type`, `text`, ...),
 * found in one pass over its names: JSON_NONE where absent. Names are unique (the parse
 * refused repeats), so each slot has at most one. */
enum slot {
    SLOT_TYPE,
    SLOT_TOOL_CALLS,
    SLOT_ARGUMENTS,
    SLOT_TEXT,
    SLOT_CONTENT,
    SLOT_INPUT,
    SLOT_SOURCE,
    SLOT_FILE_DATA,
    SLOT_MEDIA_TYPE,
    SLOT_NONE
};

struct shape {
    uint32_t v[SLOT_NONE];
};

/* A part whose content the model reads but the gateway cannot: a file (PDF, ...), audio,
 * a base64 document. Its text would leave unscanned, so the request is refused (fail
 * closed), at any depth. Images are let through (docs/policy.md says so). */
static int unscannable(struct walk *w, const struct shape *sh)
{
    const struct json_doc *p = w->p;
    const char *what = NULL;
    uint32_t t = sh->v[SLOT_TYPE], src = sh->v[SLOT_SOURCE];

    if (json_type(p, t) == JSON_STR) {
        if (key_is(p, t, "file"))
            what = "file";
        else if (key_is(p, t, "input_audio"))
            what = "input_audio";
        else if (key_is(p, t, "input_file") && sh->v[SLOT_FILE_DATA] != JSON_NONE)
            what = "input_file"; /* (Responses: a document's bytes, base64) */
        else if (key_is(p, t, "document") && json_type(p, src) == JSON_OBJ &&
                 json_str_eq(p, json_get(p, src, "type"), "base64"))
            what = "document";
    }
    if (!what)
        return 0;
    walk_path(w);
    snprintf(w->err, w->errlen,
             "%s is a '%s' part, which the gateway cannot scan (send the text itself instead).",
             w->path, what);
    return -1;
}

/* ---- what may skip the detectors ---- */

/* What a member name is to the walk, in one table (sorted for bsearch):
 *  NAME_API: the APIs' own member names. A name with this flag is the grammar's, not the
 *    client's words, so it is not scanned as text. Any other name is (tool schemas, tool
 *    inputs, metadata: a name can carry a value as well as a string can).
 *  NAME_ENUM: an enum member (`role`, `type`, `tool_choice`, `detail`, `media_type`, ...),
 *    whose value may be the APIs' vocabulary (closed_value).
 *  NAME_MODEL, NAME_URL, NAME_DATA: where a model name or image data may be.
 *  NAME_MESSAGES: at the top level, an array whose items are the messages.
 * and the shape slot the member fills. */
#define NAME_API 1u
#define NAME_ENUM 2u
#define NAME_MODEL 4u
#define NAME_URL 8u
#define NAME_DATA 16u
#define NAME_MESSAGES 32u

static const struct name_info {
    const char *name;
    unsigned char flags;
    unsigned char slot; /* enum slot */
} names[] = {
    {"action", NAME_API, SLOT_NONE},
    {"additionalProperties", NAME_API, SLOT_NONE},
    {"annotations", NAME_API, SLOT_NONE},
    {"anyOf", NAME_API, SLOT_NONE},
    {"arguments", NAME_API, SLOT_ARGUMENTS},
    {"assistant", NAME_API, SLOT_NONE},
    {"audio", NAME_API, SLOT_NONE},
    {"background", NAME_API, SLOT_NONE},
    {"cache_control", NAME_API, SLOT_NONE},
    {"call_id", NAME_API, SLOT_NONE},
    {"citations", NAME_API, SLOT_NONE},
    {"content", NAME_API, SLOT_CONTENT},
    {"conversation", NAME_API, SLOT_NONE},
    {"data", NAME_API | NAME_DATA, SLOT_NONE},
    {"default", NAME_API, SLOT_NONE},
    {"description", NAME_API, SLOT_NONE},
    {"detail", NAME_API | NAME_ENUM, SLOT_NONE},
    {"developer", NAME_API, SLOT_NONE},
    {"effort", NAME_API | NAME_ENUM, SLOT_NONE},
    {"encrypted_content", NAME_API, SLOT_NONE},
    {"enum", NAME_API, SLOT_NONE},
    {"file", NAME_API, SLOT_NONE},
    {"file_data", NAME_API, SLOT_FILE_DATA},
    {"file_id", NAME_API, SLOT_NONE},
    {"file_url", NAME_API, SLOT_NONE},
    {"filename", NAME_API, SLOT_NONE},
    {"finish_reason", NAME_ENUM, SLOT_NONE},
    {"format", NAME_API | NAME_ENUM, SLOT_NONE},
    {"frequency_penalty", NAME_API, SLOT_NONE},
    {"function", NAME_API, SLOT_NONE},
    {"function_call", NAME_API, SLOT_NONE},
    {"functions", NAME_API, SLOT_NONE},
    {"id", NAME_API, SLOT_NONE},
    {"image", NAME_API, SLOT_NONE},
    {"image_url", NAME_API | NAME_URL, SLOT_NONE},
    {"include", NAME_API, SLOT_NONE},
    {"include_usage", NAME_API, SLOT_NONE},
    {"index", NAME_API, SLOT_NONE},
    {"input", NAME_API | NAME_MESSAGES, SLOT_INPUT},
    {"input_audio", NAME_API, SLOT_NONE},
    {"instructions", NAME_API, SLOT_NONE},
    {"items", NAME_API, SLOT_NONE},
    {"logit_bias", NAME_API, SLOT_NONE},
    {"logprobs", NAME_API, SLOT_NONE},
    {"max_completion_tokens", NAME_API, SLOT_NONE},
    {"max_output_tokens", NAME_API, SLOT_NONE},
    {"max_tokens", NAME_API, SLOT_NONE},
    {"max_tool_calls", NAME_API, SLOT_NONE},
    {"media_type", NAME_API | NAME_ENUM, SLOT_MEDIA_TYPE},
    {"messages", NAME_API | NAME_MESSAGES, SLOT_NONE},
    {"metadata", NAME_API, SLOT_NONE},
    {"modalities", NAME_API, SLOT_NONE},
    {"model", NAME_API | NAME_MODEL, SLOT_NONE},
    {"n", NAME_API, SLOT_NONE},
    {"name", NAME_API, SLOT_NONE},
    {"object", NAME_ENUM, SLOT_NONE},
    {"output", NAME_API, SLOT_NONE},
    {"parallel_tool_calls", NAME_API, SLOT_NONE},
    {"parameters", NAME_API, SLOT_NONE},
    {"prediction", NAME_API, SLOT_NONE},
    {"presence_penalty", NAME_API, SLOT_NONE},
    {"previous_response_id", NAME_API, SLOT_NONE},
    {"prompt_cache_key", NAME_API, SLOT_NONE},
    {"properties", NAME_API, SLOT_NONE},
    {"reasoning", NAME_API, SLOT_NONE},
    {"reasoning_effort", NAME_API | NAME_ENUM, SLOT_NONE},
    {"refusal", NAME_API, SLOT_NONE},
    {"required", NAME_API, SLOT_NONE},
    {"response_format", NAME_API, SLOT_NONE},
    {"role", NAME_API | NAME_ENUM, SLOT_NONE},
    {"safety_identifier", NAME_API, SLOT_NONE},
    {"schema", NAME_API, SLOT_NONE},
    {"seed", NAME_API, SLOT_NONE},
    {"service_tier", NAME_API | NAME_ENUM, SLOT_NONE},
    {"source", NAME_API, SLOT_SOURCE},
    {"status", NAME_API | NAME_ENUM, SLOT_NONE},
    {"stop", NAME_API, SLOT_NONE},
    {"stop_reason", NAME_ENUM, SLOT_NONE},
    {"stop_sequences", NAME_API, SLOT_NONE},
    {"store", NAME_API, SLOT_NONE},
    {"stream", NAME_API, SLOT_NONE},
    {"stream_options", NAME_API, SLOT_NONE},
    {"strict", NAME_API, SLOT_NONE},
    {"summary", NAME_API | NAME_ENUM, SLOT_NONE},
    {"system", NAME_API, SLOT_NONE},
    {"temperature", NAME_API, SLOT_NONE},
    {"text", NAME_API, SLOT_TEXT},
    {"thinking", NAME_API, SLOT_NONE},
    {"title", NAME_API, SLOT_NONE},
    {"tool_call_id", NAME_API, SLOT_NONE},
    {"tool_calls", NAME_API, SLOT_TOOL_CALLS},
    {"tool_choice", NAME_API | NAME_ENUM, SLOT_NONE},
    {"tool_result", NAME_API, SLOT_NONE},
    {"tool_use", NAME_API, SLOT_NONE},
    {"tool_use_id", NAME_API, SLOT_NONE},
    {"tools", NAME_API, SLOT_NONE},
    {"top_k", NAME_API, SLOT_NONE},
    {"top_logprobs", NAME_API, SLOT_NONE},
    {"top_p", NAME_API, SLOT_NONE},
    {"truncation", NAME_API | NAME_ENUM, SLOT_NONE},
    {"type", NAME_API | NAME_ENUM, SLOT_TYPE},
    {"url", NAME_API | NAME_URL, SLOT_NONE},
    {"user", NAME_API, SLOT_NONE},
    {"user_id", NAME_API, SLOT_NONE},
    {"verbosity", NAME_API | NAME_ENUM, SLOT_NONE},
};

/* name_order -- s[0..n) against the NUL-terminated t, in strcmp's order (enum_vocab is
 * sorted so); byte by byte, since a call per comparison cost more than the search */
static int name_order(const char *s, size_t n, const char *t)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)t[i], k = (unsigned char)s[i];
        if (k != c)
            return c == 0 || k > c ? 1 : -1;
    }
    return t[n] ? -1 : 0;
}

/* names[] by hash, built once: every member name of a body is looked up (twice), so the
 * lookup is one hash and usually one comparison rather than a binary search */
#define NAME_SLOTS 256                      /* a power of two, over twice the names */
static unsigned char name_slot[NAME_SLOTS]; /* index + 1 into names[]; 0: empty */
static uint32_t name_lens[256]; /* by first byte: bit n set when a name of n bytes starts so */
static pthread_once_t name_once = PTHREAD_ONCE_INIT;

static size_t name_hash(const char *s, size_t n)
{
    uint32_t h = 2166136261u;

    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h & (NAME_SLOTS - 1);
}

static void name_build(void)
{
    for (size_t i = 0; i < sizeof(names) / sizeof(*names); i++) {
        size_t n = strlen(names[i].name), h = name_hash(names[i].name, n);
        name_lens[(unsigned char)names[i].name[0]] |= (uint32_t)1 << n; /* (n < 32) */
        while (name_slot[h])
            h = (h + 1) & (NAME_SLOTS - 1);
        name_slot[h] = (unsigned char)(i + 1);
    }
}

/* find_name -- the entry of names[] spelt s[0..n), or NULL */
static const struct name_info *find_name(const char *s, size_t n)
{
    pthread_once(&name_once, name_build);
    if (n == 0 || n >= 32 || !(name_lens[(unsigned char)s[0]] >> n & 1))
        return NULL; /* most of a client's names: metadata keys, schema properties */
    for (size_t h = name_hash(s, n); name_slot[h]; h = (h + 1) & (NAME_SLOTS - 1)) {
        const struct name_info *e = &names[name_slot[h] - 1];
        if (name_order(s, n, e->name) == 0)
            return e;
    }
    return NULL;
}

/* name_of -- what member name `k` is (decoded, as json_get compares names), or NULL for a
 * name the walk has no use for. An escaped spelling of an API name is the same member to
 * every reader, but is scanned like a client's name: rare, and never the grammar's own. */
static const struct name_info *name_of(const struct json_doc *p, uint32_t k, unsigned *flags)
{
    const struct json_node *n = &p->nodes[k];
    const unsigned char *b = (const unsigned char *)p->body;
    char buf[40];
    const char *key = p->body + n->start;
    size_t len = n->end - n->start;
    const struct name_info *hit;

    *flags = 0;
    if (len == 0 || len > 256)
        return NULL;
    if (n->esc) {
        size_t o = 0, dl;

        for (size_t i = n->start; i < n->end && o < 32;) {
            if (b[i] == '\\') {
                i += json_decode_escape(b + i, buf + o, &dl);
                o += dl;
            } else {
                buf[o++] = (char)b[i++];
            }
        }
        if (o >= 32)
            return NULL;
        key = buf;
        len = o;
    } else if (len >= 32) {
        return NULL;
    }
    hit = find_name(key, len);
    if (hit)
        *flags = n->esc ? hit->flags & ~NAME_API : hit->flags;
    return hit;
}

/* The values of API enums, in the APIs' own vocabulary: a value of an enum member (`role`,
 * `type`, `tool_choice`, `detail`, `media_type`, ...) that is one of these skips the
 * detectors. Any other value is scanned, at any depth -- an early version skipped every
 * enum-shaped value (lower case, digits, `-./`), and `"role":"4111-1111-1111-1111"` left.
 * Sorted for bsearch. */
static const char *const enum_vocab[] = {
    "any",
    "application/pdf",
    "array",
    "assistant",
    "auto",
    "base64",
    "boolean",
    "chat.completion",
    "code_interpreter",
    "code_interpreter_call",
    "compaction",
    "compaction_trigger",
    "completed",
    "computer_call",
    "computer_call_output",
    "computer_use_preview",
    "concise",
    "content",
    "content_filter",
    "custom",
    "custom_tool_call",
    "custom_tool_call_output",
    "default",
    "detailed",
    "developer",
    "disabled",
    "document",
    "end_turn",
    "ephemeral",
    "file",
    "file_search",
    "file_search_call",
    "flex",
    "function",
    "function_call",
    "function_call_output",
    "high",
    "image",
    "image/gif",
    "image/jpeg",
    "image/png",
    "image/webp",
    "image_generation",
    "image_generation_call",
    "image_url",
    "in_progress",
    "incomplete",
    "input_audio",
    "input_file",
    "input_image",
    "input_text",
    "integer",
    "item_reference",
    "json_object",
    "json_schema",
    "length",
    "local_shell",
    "local_shell_call",
    "local_shell_call_output",
    "low",
    "max_tokens",
    "mcp",
    "mcp_approval_request",
    "mcp_approval_response",
    "mcp_call",
    "mcp_list_tools",
    "medium",
    "message",
    "minimal",
    "mp3",
    "none",
    "null",
    "number",
    "object",
    "output_text",
    "pause_turn",
    "priority",
    "reasoning",
    "reasoning_text",
    "redacted_thinking",
    "refusal",
    "required",
    "response",
    "search_result",
    "stop",
    "stop_sequence",
    "string",
    "summary_text",
    "system",
    "text",
    "text/plain",
    "thinking",
    "tool",
    "tool_calls",
    "tool_result",
    "tool_use",
    "url",
    "user",
    "wav",
    "web_search",
    "web_search_call",
    "web_search_preview",
};

/* What may skip the detectors: the top-level "model" when it is a model-name token (the
 * gateway routes only configured names, 404 otherwise, and what leaves is the configured
 * name; a "model" member deeper down is the client's text like any other), and an enum
 * member's value from the vocabulary above. */
static int closed_value(const struct json_doc *p, uint32_t parent, unsigned kflags, uint32_t v)
{
    const struct json_node *n = &p->nodes[v];
    size_t len = n->end - n->start;

    if (!(kflags & (NAME_MODEL | NAME_ENUM)) || n->esc || len == 0 || len > 128)
        return 0;
    if (kflags & NAME_MODEL) {
        if (parent != p->root)
            return 0;
        for (size_t i = n->start; i < n->end; i++) {
            unsigned char c = (unsigned char)p->body[i];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '_' || c == '.' || c == ':' || c == '/'))
                return 0;
        }
        return 1;
    }
    if (len >= 32)
        return 0;
    for (size_t lo = 0, hi = sizeof(enum_vocab) / sizeof(*enum_vocab); lo < hi;) {
        size_t mid = (lo + hi) / 2;
        int c = name_order(p->body + n->start, len, enum_vocab[mid]);
        if (c == 0)
            return 1;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return 0;
}

/* ---- the walk: every string and member name, odd shapes refused ---- */

static const char *type_name(int t)
{
    switch (t) {
    case JSON_OBJ:
        return "an object";
    case JSON_ARR:
        return "an array";
    case JSON_STR:
        return "a string";
    case JSON_NUM:
        return "a number";
    case JSON_NULL:
        return "null";
    default:
        return "a boolean";
    }
}

/* A member where the model reads text must hold text: a value of another type is one the
 * gateway would read one way and a provider another, so it is refused, not skipped. */
static int odd_shape(struct walk *w, const struct shape *sh)
{
    const struct json_doc *p = w->p;
    uint32_t t = sh->v[SLOT_TYPE], v;
    const char *want = NULL, *member = NULL;
    int got = 0;

    if ((v = sh->v[SLOT_TOOL_CALLS]) != JSON_NONE && json_type(p, v) != JSON_ARR &&
        json_type(p, v) != JSON_NULL)
        member = "tool_calls", want = "an array", got = json_type(p, v);
    else if ((v = sh->v[SLOT_ARGUMENTS]) != JSON_NONE && json_type(p, v) != JSON_STR)
        member = "arguments", want = "a string", got = json_type(p, v);
    else if (json_str_eq(p, t, "text") && (v = sh->v[SLOT_TEXT]) != JSON_NONE &&
             json_type(p, v) != JSON_STR)
        member = "text", want = "a string", got = json_type(p, v);
    else if (json_str_eq(p, t, "tool_result") && (v = sh->v[SLOT_CONTENT]) != JSON_NONE &&
             json_type(p, v) != JSON_STR && json_type(p, v) != JSON_ARR)
        member = "content", want = "a string or an array of blocks", got = json_type(p, v);
    else if (json_str_eq(p, t, "tool_use") && (v = sh->v[SLOT_INPUT]) != JSON_NONE &&
             json_type(p, v) != JSON_OBJ)
        member = "input", want = "an object", got = json_type(p, v);
    if (!member)
        return 0;
    walk_path(w);
    snprintf(w->err, w->errlen, "%s%s%s must be %s; it is %s, which the gateway will not guess at.",
             w->path, w->path_len ? "." : "", member, want, got < 0 ? "missing" : type_name(got));
    return -1;
}

/* b64_image_url -- s[0..n), a string's raw bytes, is `data:image/TYPE;base64,PAYLOAD` with the
 * payload in the base64 alphabet ("\/" is '/': some encoders escape it). Anything else
 * under a `url` -- `data:,text`, `data:text/plain,...`, an image type whose payload holds
 * other bytes -- is text, and is scanned (red team: `"metadata": {"url": "data:,SECRET"}`
 * left unscanned). */
static int b64_image_url(const char *s, size_t n)
{
    size_t i = 11;

    if (n < 11 || strncasecmp(s, "data:image/", 11) != 0)
        return 0;
    for (; i < n && s[i] != ','; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '+' || s[i] == '-' || s[i] == '.' ||
              s[i] == ';' || s[i] == '=' || (s[i] == '\\' && i + 1 < n && s[++i] == '/')))
            return 0;
    if (i >= n || i < 19 || strncasecmp(s + i - 7, ";base64", 7) != 0)
        return 0;
    for (i++; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '+' || s[i] == '/' || s[i] == '=' ||
              (s[i] == '\\' && i + 1 < n && s[++i] == '/')))
            return 0;
    return 1;
}

/* Image data the scanner cannot read (base64 in a data:image/ URL or an Anthropic image
 * source whose media_type is image/...): not text, so not scanned; the decision records
 * that the request carries it (PEXTRACT_UNSCANNED_IMAGE) for rules to match. `psh`: the
 * shape of the object v is a member of (NULL for an array item or the root). */
static int image_data(const struct json_doc *p, const struct shape *psh, unsigned kflags,
                      uint32_t v)
{
    const struct json_node *n = &p->nodes[v];

    if (!psh)
        return 0;
    if ((kflags & NAME_URL) && b64_image_url(p->body + n->start, n->end - n->start))
        return 1; /* (Responses' input_image has the URL as image_url's string) */
    if ((kflags & NAME_DATA) && json_str_eq(p, psh->v[SLOT_TYPE], "base64")) {
        /* (a base64 document was refused before: unscannable) */
        uint32_t mt = psh->v[SLOT_MEDIA_TYPE];
        size_t ml = 0;
        char *m = json_type(p, mt) == JSON_STR ? json_str_dup(p, mt, &ml) : NULL;
        int image = m && ml > 6 && strncasecmp(m, "image/", 6) == 0;
        free(m);
        return image;
    }
    return 0;
}

/* walk -- node `id`, reached as the member `key` (flags kflags: name_of) of an object whose
 * shape is psh, or as an item of an array (key JSON_NONE, psh NULL) of `parent` */
static int walk(struct walk *w, uint32_t id, int message, uint32_t parent, uint32_t key,
                unsigned kflags, const struct shape *psh)
{
    const struct json_doc *p = w->p;
    const struct json_node *n = &p->nodes[id];
    struct walk_frame *f;
    int i = 0;

    switch (n->type) {
    case JSON_STR:
        if (closed_value(p, parent, kflags, id))
            return 0;
        if (image_data(p, psh, kflags, id)) {
            w->x->unscanned |= PEXTRACT_UNSCANNED_IMAGE;
            return 0;
        }
        return add_segment(w, id, message, key);
    case JSON_ARR: {
        /* the items of the top-level messages array are the messages (and those of
         * `input`: a Responses conversation's items, or the texts an embedding gets) */
        int top = parent == w->top_obj && (kflags & NAME_MESSAGES);

        if (w->depth >= (int)(sizeof(w->frames) / sizeof(*w->frames)))
            return -1; /* (cannot be: the parse nests at most JSON_MAX_DEPTH) */
        f = &w->frames[w->depth++];
        f->key = JSON_NONE;
        JSON_FOR_ITEMS(p, id, v)
        {
            f->index = i;
            if (walk(w, v, top ? i : message, id, JSON_NONE, 0, NULL) < 0)
                return -1;
            i++;
        }
        w->depth--;
        return 0;
    }
    case JSON_OBJ: {
        struct shape sh;
        const struct name_info *ni;
        unsigned fl;
        unsigned char seen[16], *many = NULL; /* the members' flags, for the second pass */
        size_t m = 0, n_members = 0;
        int rc = -1;

        for (size_t s = 0; s < SLOT_NONE; s++)
            sh.v[s] = JSON_NONE;
        JSON_FOR_MEMBERS(p, id, k, v)
        n_members++;
        if (n_members > sizeof(seen))
            many = malloc(n_members); /* (NULL: the names are looked up again) */
        JSON_FOR_MEMBERS(p, id, k, v)
        {
            if ((ni = name_of(p, k, &fl)) != NULL && ni->slot != SLOT_NONE)
                sh.v[ni->slot] = v;
            if (many)
                many[m] = (unsigned char)fl;
            else if (m < sizeof(seen))
                seen[m] = (unsigned char)fl;
            m++;
        }
        if (unscannable(w, &sh) < 0 || odd_shape(w, &sh) < 0)
            goto obj_done;
        if (w->depth >= (int)(sizeof(w->frames) / sizeof(*w->frames)))
            goto obj_done; /* (cannot be, as above) */
        f = &w->frames[w->depth++];
        m = 0;
        JSON_FOR_MEMBERS(p, id, k, v)
        {
            if (many)
                fl = many[m];
            else if (m < sizeof(seen))
                fl = seen[m];
            else
                name_of(p, k, &fl);
            m++;
            if (!(fl & NAME_API) && add_segment(w, k, message, JSON_NONE) < 0)
                goto obj_done;
            f->key = k;
            if (walk(w, v, message, id, k, fl, &sh) < 0)
                goto obj_done;
        }
        w->depth--;
        rc = 0;
    obj_done:
        free(many);
        return rc;
    }
    default:
        return 0; /* numbers, true, false, null: closed grammar */
    }
}

/* Every string value and every member name of the body is text that leaves, so every one
 * is scanned, whatever the API's shape says the model reads (a provider may read more than
 * we think, and an attacker writes where we do not look); only the APIs' own member names
 * and enum values of closed grammar skip the detectors. Findings inside messages[i] carry
 * message i; anywhere else -1. */
int policy_extract_doc(enum policy_api api, const struct json_doc *doc, struct pextract *x,
                       char *err, size_t errlen)
{
    struct walk w = {.p = doc, .x = x, .err = err, .errlen = errlen};
    size_t len = doc->len;

    (void)api;
    if (len >= POLICY_MAX_BODY) {
        snprintf(err, errlen, "the request body is too large to scan.");
        return -1;
    }
    if (doc->root == JSON_NONE || doc->nodes[doc->root].type != JSON_OBJ) {
        snprintf(err, errlen, "the request body is not a JSON object.");
        return -1;
    }
    x->body = doc->body;
    /* decoded text is never longer than the body (each string gives up two quotes for its
     * separator), so one allocation holds it: no growth copies on the hot path */
    x->text = malloc(len + 1);
    if (!x->text) {
        snprintf(err, errlen, "out of memory while reading the request.");
        return -1;
    }
    x->text_cap = len + 1;
    w.top_obj = doc->root;
    return walk(&w, doc->root, -1, JSON_NONE, JSON_NONE, 0, NULL);
}

int policy_extract(enum policy_api api, const char *body, size_t len, struct pextract *x, char *err,
                   size_t errlen)
{
    struct json_doc d = {0};
    int rc = json_parse(&d, body, len, err, errlen);
    if (rc == 0)
        rc = policy_extract_doc(api, &d, x, err, errlen);
    json_doc_deinit(&d);
    return rc;
}

char *policy_extract_original(const char *body, size_t start, size_t end, size_t *len)
{
    const unsigned char *b = (const unsigned char *)body;
    char *o = malloc(end - start + 1);
    size_t n = 0, i = start;

    if (!o)
        return NULL;
    while (i < end) {
        if (b[i] == '\\') {
            size_t dl;
            i += json_decode_escape(b + i, o + n, &dl);
            n += dl;
        } else {
            o[n++] = (char)b[i++];
        }
    }
    o[n] = '\0';
    *len = n;
    return o;
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
