/* extract.c -- find every string the model reads in an OpenAI or Anthropic body, decoded.
 *
 * Walks the API's shape over the gateway's one strict parse of the body (common/json.h:
 * byte spans kept, names compared decoded, repeated names and NULs already refused), and
 * decodes each string it finds into one text buffer, keeping the escape runs that map any
 * decoded span back to the original body bytes for redaction. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

struct walk {
    const struct json_doc *p;
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
            size_t ol = json_decode_escape(b + i, x->text + x->text_len, &dl);
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

static int key_is(const struct json_doc *p, uint32_t id, const char *name)
{
    return json_name_is(p, id, name, strlen(name));
}

/* The value of the member of object `obj` named `name`, if any (names are unique: the
 * parse refused repeats), as a one-pass loop so the walk reads as before. */
#define FOR_MEMBER(p, obj, name, v)                                                                \
    for (uint32_t v = json_get(p, obj, name), once_##v = 1; once_##v && v != JSON_NONE;            \
         once_##v = 0)

static int add_all_strings(struct walk *w, uint32_t id, int message, uint32_t key)
{
    const struct json_doc *p = w->p;
    const struct json_node *n = &p->nodes[id];
    if (n->type == JSON_STR)
        return add_segment(w, id, message, key);
    if (n->type == JSON_ARR) {
        for (uint32_t c = n->child; c != JSON_NONE; c = p->nodes[c].next)
            if (add_all_strings(w, c, message, key) < 0)
                return -1;
    } else if (n->type == JSON_OBJ) {
        for (uint32_t k = n->child; k != JSON_NONE; k = p->nodes[p->nodes[k].next].next)
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
    const struct json_doc *p = w->p;
    int is_text = 0, is_content = 0;

    if (p->nodes[src].type != JSON_OBJ)
        return 0;
    FOR_MEMBER(p, src, "type", t)
    if (p->nodes[t].type == JSON_STR) {
        is_text |= key_is(p, t, "text");
        is_content |= key_is(p, t, "content");
    }
    if (is_text)
        FOR_MEMBER(p, src, "data", v)
    if (p->nodes[v].type == JSON_STR && add_segment(w, v, message, JSON_NONE) < 0)
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
    const struct json_doc *p = w->p;
    const char *what = NULL;

    FOR_MEMBER(p, id, "type", t)
    if (p->nodes[t].type == JSON_STR) {
        if (key_is(p, t, "file"))
            what = "file";
        else if (key_is(p, t, "input_audio"))
            what = "input_audio";
        else if (key_is(p, t, "document")) {
            FOR_MEMBER(p, id, "source", src)
            if (p->nodes[src].type == JSON_OBJ) {
                FOR_MEMBER(p, src, "type", st)
                if (p->nodes[st].type == JSON_STR && key_is(p, st, "base64"))
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
    const struct json_doc *p = w->p;
    if (p->nodes[id].type == JSON_STR)
        return add_segment(w, id, message, JSON_NONE);
    if (p->nodes[id].type != JSON_OBJ)
        return 0;
    if (unscannable(w, id) < 0)
        return -1;
    static const char *const text_keys[] = {"text", "thinking", "refusal", "title", "context"};
    for (size_t i = 0; i < sizeof(text_keys) / sizeof(*text_keys); i++)
        FOR_MEMBER(p, id, text_keys[i], v)
    if (p->nodes[v].type == JSON_STR && add_segment(w, v, message, JSON_NONE) < 0)
        return -1;
    FOR_MEMBER(p, id, "input", v)
    if (add_all_strings(w, v, message, JSON_NONE) < 0)
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
    const struct json_doc *p = w->p;
    const struct json_node *n = &p->nodes[id];
    if (n->type == JSON_STR)
        return add_segment(w, id, message, JSON_NONE);
    if (n->type == JSON_ARR) {
        int j = 0;
        for (uint32_t c = n->child; c != JSON_NONE; c = p->nodes[c].next, j++) {
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
    const struct json_doc *p = w->p;
    if (p->nodes[fn].type != JSON_OBJ)
        return 0;
    FOR_MEMBER(p, fn, "arguments", v)
    if (p->nodes[v].type == JSON_STR && add_segment(w, v, message, JSON_NONE) < 0)
        return -1;
    return 0;
}

static int add_message(struct walk *w, uint32_t m, int idx)
{
    const struct json_doc *p = w->p;
    if (p->nodes[m].type != JSON_OBJ)
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
        if (p->nodes[v].type != JSON_ARR)
            continue;
        for (uint32_t c = p->nodes[v].child; c != JSON_NONE; c = p->nodes[c].next) {
            if (p->nodes[c].type != JSON_OBJ)
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

int policy_extract_doc(enum policy_api api, const struct json_doc *doc, struct pextract *x,
                       char *err, size_t errlen)
{
    const struct json_doc *p = doc;
    struct walk w = {.p = doc, .x = x, .err = err, .errlen = errlen};
    uint32_t root = doc->root;
    size_t len = doc->len;
    if (len >= POLICY_MAX_BODY) {
        snprintf(err, errlen, "the request body is too large to scan.");
        return -1;
    }
    if (root == JSON_NONE || p->nodes[root].type != JSON_OBJ) {
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
    if (api == POLICY_API_ANTHROPIC) {
        FOR_MEMBER(p, root, "system", v)
        {
            size_t old = path_push(&w, "system", 0);
            int r2 = add_content(&w, v, -1);
            path_pop(&w, old);
            if (r2 < 0)
                return -1;
        }
    }
    /* tool definitions and schemas are read by the model too: every string in them is
     * scanned, outside any message (-1) */
    static const char *const top_keys[] = {"tools", "functions", "response_format"};
    for (size_t i = 0; i < sizeof(top_keys) / sizeof(*top_keys); i++)
        FOR_MEMBER(p, root, top_keys[i], v)
    if (add_all_strings(&w, v, -1, JSON_NONE) < 0)
        return -1;
    FOR_MEMBER(p, root, "messages", v)
    {
        if (p->nodes[v].type != JSON_ARR)
            continue;
        int idx = 0;
        for (uint32_t m = p->nodes[v].child; m != JSON_NONE; m = p->nodes[m].next, idx++)
            if (add_message(&w, m, idx) < 0)
                return -1;
    }
    return 0;
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
