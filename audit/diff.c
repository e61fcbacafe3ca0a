/* diff.c -- `airlock audit show --diff`: what the gateway changed, request by request, as
 * text for a person (docs/audit.md has the format).
 *
 * Built on audit_show: its records, as it prints them (payloads opened with the key when
 * one is given), are paired by id, and for each request two pairs of payloads are
 * compared: the body received against the body that left (inbound, outbound) and the
 * answer received against the answer sent (upstream, client). A JSON body is printed
 * pretty first -- two spaces an indent, members in the body's order, every value as its
 * own bytes (strings as written, escapes and all, broken after each \n escape) -- so that
 * a changed value is a changed line; anything else (SSE streams) is compared by its own
 * lines. The line diff is Myers' (O((N+M)D)), with a unified diff's hunks and three lines
 * of context; past a bound on its work the middle is shown as removed and added whole.
 *
 * A payload sealed to a key that was not given has no value to show: the pair says only
 * the lengths, and the request's findings give the positions (spans of the inbound body).
 * Bytes a terminal would act on are printed as \xNN. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "audit/audit.h"
#include "common/grow.h"
#include "common/json.h"

#define DIFF_CONTEXT 3
/* the most V-array cells the line diff keeps for its way back (ints): about the square of
 * the number of differing lines, so 2,000 or so of them before the middle is shown whole */
#define DIFF_MAX_CELLS ((size_t)4 << 20)

/* ---- text ---- */

struct tb {
    char *s;
    size_t n, cap;
    int oom;
};

static void tb_put(struct tb *b, const char *s, size_t n)
{
    char *ns;

    if (b->oom)
        return;
    ns = grow_by(b->s, &b->cap, b->n, n + 1, 1, 256);
    if (!ns) {
        b->oom = 1;
        return;
    }
    b->s = ns;
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = '\0';
}

static void tb_printf(struct tb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void tb_printf(struct tb *b, const char *fmt, ...)
{
    char small[512], *big;
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = 1;
        return;
    }
    if ((size_t)n < sizeof(small)) {
        tb_put(b, small, (size_t)n);
        return;
    }
    big = malloc((size_t)n + 1);
    if (!big) {
        b->oom = 1;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    tb_put(b, big, (size_t)n);
    free(big);
}

/* tb_safe -- s with control bytes (but tab) and DEL as \xNN, and the C1 controls
 * U+0080..U+009F (UTF-8 C2 80..C2 9F, which a JSON string may hold raw) as \u00NN: a log
 * line, an upstream's answer, can hold escape sequences a terminal would obey (U+009B is
 * CSI to terminals that read C1 controls in UTF-8) */
static void tb_safe(struct tb *b, const char *s, size_t n)
{
    size_t from = 0;

    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            tb_put(b, s + from, i - from);
            tb_printf(b, "\\x%02x", c);
            from = i + 1;
        } else if (c == 0xc2 && i + 1 < n && (unsigned char)s[i + 1] >= 0x80 &&
                   (unsigned char)s[i + 1] <= 0x9f) {
            tb_put(b, s + from, i - from);
            tb_printf(b, "\\u00%02x", (unsigned char)s[i + 1]);
            from = i + 2;
            i++;
        }
    }
    tb_put(b, s + from, n - from);
}

static void tb_indent(struct tb *b, int n)
{
    static const char sp[] = "                                                                ";

    while (n > 0) {
        int k = n < (int)sizeof(sp) - 1 ? n : (int)sizeof(sp) - 1;
        tb_put(b, sp, (size_t)k);
        n -= k;
    }
}

/* ---- pretty JSON ---- */

/* pp_str -- a string node's bytes as written, a line broken after each \n escape that has
 * more of the string after it (continued one indent deeper) */
static void pp_str(struct tb *b, const struct json_doc *d, uint32_t id, int indent)
{
    const struct json_node *n = &d->nodes[id];
    const char *s = d->body + n->start;
    size_t len = n->end - n->start, from = 0;

    tb_put(b, "\"", 1);
    for (size_t i = 0; i + 1 < len; i++) {
        if (s[i] != '\\')
            continue;
        if (s[i + 1] == 'n' && i + 2 < len) {
            tb_put(b, s + from, i + 2 - from);
            tb_put(b, "\n", 1);
            tb_indent(b, indent + 2);
            from = i + 2;
        }
        i++; /* the escaped character is never the start of another escape */
    }
    tb_put(b, s + from, len - from);
    tb_put(b, "\"", 1);
}

static void pp(struct tb *b, const struct json_doc *d, uint32_t id, int indent)
{
    const struct json_node *n = &d->nodes[id];

    switch (n->type) {
    case JSON_OBJ:
        if (n->child == JSON_NONE) {
            tb_put(b, "{}", 2);
            return;
        }
        tb_put(b, "{\n", 2);
        JSON_FOR_MEMBERS(d, id, k, v)
        {
            tb_indent(b, indent + 2);
            pp_str(b, d, k, indent + 2);
            tb_put(b, ": ", 2);
            pp(b, d, v, indent + 2);
            tb_put(b, d->nodes[v].next == JSON_NONE ? "\n" : ",\n",
                   d->nodes[v].next == JSON_NONE ? 1 : 2);
        }
        tb_indent(b, indent);
        tb_put(b, "}", 1);
        return;
    case JSON_ARR:
        if (n->child == JSON_NONE) {
            tb_put(b, "[]", 2);
            return;
        }
        tb_put(b, "[\n", 2);
        JSON_FOR_ITEMS(d, id, v)
        {
            tb_indent(b, indent + 2);
            pp(b, d, v, indent + 2);
            tb_put(b, d->nodes[v].next == JSON_NONE ? "\n" : ",\n",
                   d->nodes[v].next == JSON_NONE ? 1 : 2);
        }
        tb_indent(b, indent);
        tb_put(b, "]", 1);
        return;
    case JSON_STR:
        pp_str(b, d, id, indent);
        return;
    default:
        tb_put(b, d->body + n->start, n->end - n->start);
        return;
    }
}

int audit_diff_pretty(const char *body, size_t len, char **out, size_t *out_len)
{
    struct json_doc d = {0};
    struct tb b = {0};
    char err[128];
    int rc = 1;

    *out = NULL;
    *out_len = 0;
    if (len == 0 || json_parse(&d, body, len, err, sizeof(err)) < 0)
        goto done; /* not JSON (to this parser): the caller diffs its own lines */
    pp(&b, &d, d.root, 0);
    tb_put(&b, "\n", 1);
    if (b.oom) {
        rc = -1;
        goto done;
    }
    *out = b.s;
    *out_len = b.n;
    b.s = NULL;
    rc = 0;
done:
    free(b.s);
    json_doc_deinit(&d);
    return rc;
}

/* ---- the line diff ---- */

struct line {
    const char *s;
    size_t n;
};

/* split -- the lines of text (without their '\n'; a last line without one counts) */
static int split(const char *s, size_t n, struct line **out, size_t *n_out)
{
    struct line *v = NULL;
    size_t cap = 0, k = 0, from = 0;

    for (size_t i = 0; i <= n; i++) {
        if (i < n && s[i] != '\n')
            continue;
        if (i == n && from == n)
            break;
        struct line *nv = grow_room(v, &cap, k + 1, sizeof(*v), 64);
        if (!nv) {
            free(v);
            return -1;
        }
        v = nv;
        v[k++] = (struct line){s + from, i - from};
        from = i + 1;
    }
    *out = v;
    *n_out = k;
    return 0;
}

static int line_eq(const struct line *a, const struct line *b)
{
    return a->n == b->n && memcmp(a->s, b->s, a->n) == 0;
}

/* One step of the edit script: ' ' both lines, '-' a's line only, '+' b's line only. */
struct op {
    char kind;
    size_t a, b; /* line indexes (the one that applies) */
};

struct ops {
    struct op *v;
    size_t n, cap;
};

static int op_add(struct ops *o, char kind, size_t a, size_t b)
{
    struct op *nv = grow_room(o->v, &o->cap, o->n + 1, sizeof(*nv), 64);
    if (!nv)
        return -1;
    o->v = nv;
    o->v[o->n++] = (struct op){kind, a, b};
    return 0;
}

/* myers -- the shortest edit script of a[0..n) into b[0..m) appended to o (indexes offset
 * by ao, bo). 1 when it would take more than DIFF_MAX_CELLS of memory (nothing appended),
 * -1 when memory runs out. trace[d] keeps the furthest x of each diagonal k in -d..d after
 * step d, for the walk back. */
static int myers(const struct line *a, size_t n, const struct line *b, size_t m, size_t ao,
                 size_t bo, struct ops *o)
{
    size_t max = n + m, cells = 0, d_end = 0;
    long *v = NULL, **trace = NULL;
    struct op *rev = NULL;
    size_t n_rev = 0;
    int rc = -1, found = 0;

    v = calloc(2 * max + 3, sizeof(*v));
    trace = calloc(max + 1, sizeof(*trace));
    if (!v || !trace)
        goto done;
    const long off = (long)max + 1;
    for (size_t d = 0; d <= max && !found; d++) {
        long ld = (long)d;
        cells += 2 * d + 1;
        if (cells > DIFF_MAX_CELLS) {
            rc = 1;
            goto done;
        }
        for (long k = -ld; k <= ld; k += 2) {
            long x, y;
            if (k == -ld || (k != ld && v[off + k - 1] < v[off + k + 1]))
                x = v[off + k + 1];
            else
                x = v[off + k - 1] + 1;
            y = x - k;
            while (x < (long)n && y < (long)m && line_eq(&a[x], &b[y]))
                x++, y++;
            v[off + k] = x;
            if (x >= (long)n && y >= (long)m)
                found = 1;
        }
        trace[d] = malloc((2 * d + 1) * sizeof(long));
        if (!trace[d])
            goto done;
        memcpy(trace[d], v + off - ld, (2 * d + 1) * sizeof(long));
        d_end = d;
    }
    /* back from (n, m): each step d came from step d-1 by one edit and a snake */
    rev = malloc((n + m + 1) * sizeof(*rev));
    if (!rev)
        goto done;
    long x = (long)n, y = (long)m;
    for (size_t d = d_end; d > 0; d--) {
        long ld = (long)d, k = x - y, pk, px, py;
        const long *pv = trace[d - 1] + (ld - 1); /* pv[k] for k in -(d-1)..d-1 */
        if (k == -ld || (k != ld && pv[k - 1] < pv[k + 1]))
            pk = k + 1;
        else
            pk = k - 1;
        px = pv[pk];
        py = px - pk;
        while (x > px && y > py) {
            x--, y--;
            rev[n_rev++] = (struct op){' ', (size_t)x, (size_t)y};
        }
        if (x == px)
            rev[n_rev++] = (struct op){'+', (size_t)px, (size_t)py};
        else
            rev[n_rev++] = (struct op){'-', (size_t)px, (size_t)py};
        x = px, y = py;
    }
    while (x > 0 && y > 0) {
        x--, y--;
        rev[n_rev++] = (struct op){' ', (size_t)x, (size_t)y};
    }
    for (size_t i = n_rev; i-- > 0;)
        if (op_add(o, rev[i].kind, rev[i].a + ao, rev[i].b + bo) < 0)
            goto done;
    rc = 0;
done:
    if (trace)
        for (size_t d = 0; d <= max; d++)
            free(trace[d]);
    free(trace);
    free(v);
    free(rev);
    return rc;
}

/* script -- the edit script of a into b: common head and tail, Myers between (or, past
 * its bound, the middle removed and added whole) */
static int script(const struct line *a, size_t n, const struct line *b, size_t m, struct ops *o)
{
    size_t pre = 0, suf = 0;
    int rc;

    while (pre < n && pre < m && line_eq(&a[pre], &b[pre]))
        pre++;
    while (suf < n - pre && suf < m - pre && line_eq(&a[n - 1 - suf], &b[m - 1 - suf]))
        suf++;
    for (size_t i = 0; i < pre; i++)
        if (op_add(o, ' ', i, i) < 0)
            return -1;
    rc = myers(a + pre, n - pre - suf, b + pre, m - pre - suf, pre, pre, o);
    if (rc < 0)
        return -1;
    if (rc > 0) {
        for (size_t i = pre; i < n - suf; i++)
            if (op_add(o, '-', i, pre) < 0)
                return -1;
        for (size_t j = pre; j < m - suf; j++)
            if (op_add(o, '+', n - suf, j) < 0)
                return -1;
    }
    for (size_t i = 0; i < suf; i++)
        if (op_add(o, ' ', n - suf + i, m - suf + i) < 0)
            return -1;
    return 0;
}

/* hunks -- the script as a unified diff's hunks (lines only; the caller wrote the ---/+++) */
static void hunks(struct tb *t, const struct line *a, const struct line *b, const struct ops *o)
{
    size_t i = 0;

    while (i < o->n) {
        size_t first, last, end, ac = 0, bc = 0, as, bs;
        while (i < o->n && o->v[i].kind == ' ')
            i++;
        if (i == o->n)
            break;
        /* a hunk: from DIFF_CONTEXT lines before this change to DIFF_CONTEXT after the
         * last change that is no more than 2 * DIFF_CONTEXT equal lines from the next */
        first = i > DIFF_CONTEXT ? i - DIFF_CONTEXT : 0;
        last = i;
        for (size_t j = i; j < o->n; j++) {
            if (o->v[j].kind != ' ')
                last = j;
            else if (j - last > 2 * DIFF_CONTEXT)
                break;
        }
        end = last + DIFF_CONTEXT + 1 < o->n ? last + DIFF_CONTEXT + 1 : o->n;
        for (size_t j = first; j < end; j++) {
            ac += o->v[j].kind != '+';
            bc += o->v[j].kind != '-';
        }
        as = o->v[first].a; /* ('+': the next line of a; '-': of b) */
        bs = o->v[first].b;
        /* (a range of no lines names the line before it, as diff -u does) */
        tb_printf(t, "@@ -%zu,%zu +%zu,%zu @@\n", ac ? as + 1 : as, ac, bc ? bs + 1 : bs, bc);
        for (size_t j = first; j < end; j++) {
            const struct line *l = o->v[j].kind == '+' ? &b[o->v[j].b] : &a[o->v[j].a];
            tb_put(t, &o->v[j].kind, 1);
            tb_safe(t, l->s, l->n);
            tb_put(t, "\n", 1);
        }
        i = end;
    }
}

int audit_diff_text(const char *a, size_t alen, const char *b, size_t blen, const char *head_a,
                    const char *head_b, char **out, size_t *out_len)
{
    struct line *la = NULL, *lb = NULL;
    size_t na = 0, nb = 0;
    struct ops o = {0};
    struct tb t = {0};
    int rc = -1;

    *out = NULL;
    *out_len = 0;
    if (split(a, alen, &la, &na) < 0 || split(b, blen, &lb, &nb) < 0 ||
        script(la, na, lb, nb, &o) < 0)
        goto done;
    tb_printf(&t, "--- %s\n+++ %s\n", head_a, head_b);
    hunks(&t, la, lb, &o);
    if (t.oom)
        goto done;
    *out = t.s;
    *out_len = t.n;
    t.s = NULL;
    rc = 0;
done:
    free(t.s);
    free(o.v);
    free(la);
    free(lb);
    return rc;
}

/* ---- records ---- */

/* What audit_show printed about one payload. */
struct payload {
    int present;
    int sealed;       /* sealed in the log */
    int shown;        /* text or base64 present (not sealed, or opened with the key) */
    int binary;       /* base64 */
    const char *data; /* text or base64, borrowed from the record's cJSON */
    size_t bytes;     /* the payload's length */
};

static struct payload payload(const cJSON *rec, const char *name)
{
    struct payload p = {0};
    const cJSON *bl;

    const cJSON *blobs = rec ? cJSON_GetObjectItemCaseSensitive(rec, "blobs") : NULL;

    cJSON_ArrayForEach(bl, blobs)
    {
        const cJSON *nm = cJSON_GetObjectItemCaseSensitive(bl, "name");
        const cJSON *tx = cJSON_GetObjectItemCaseSensitive(bl, "text");
        const cJSON *b64 = cJSON_GetObjectItemCaseSensitive(bl, "base64");
        const cJSON *by = cJSON_GetObjectItemCaseSensitive(bl, "bytes");
        if (!cJSON_IsString(nm) || strcmp(nm->valuestring, name) != 0)
            continue;
        p.present = 1;
        p.sealed = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(bl, "sealed"));
        p.bytes = cJSON_IsNumber(by) && by->valuedouble >= 0 ? (size_t)by->valuedouble : 0;
        if (cJSON_IsString(tx)) {
            p.shown = 1;
            p.data = tx->valuestring;
        } else if (cJSON_IsString(b64)) {
            p.shown = p.binary = 1;
            p.data = b64->valuestring;
        }
        break;
    }
    return p;
}

static const char *mstr(const cJSON *meta, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(meta, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* view -- the text a payload is compared by: a JSON body pretty-printed; an SSE stream
 * line by line, each `data:` line that is JSON pretty-printed after its "data: "; anything
 * else its own lines. *out malloc'd. 0, -1 when memory ran out. */
static int view(const char *s, size_t n, char **out, size_t *out_len)
{
    struct tb t = {0};
    size_t from = 0;
    int rc;

    rc = audit_diff_pretty(s, n, out, out_len);
    if (rc <= 0)
        return rc;
    while (from < n) {
        const char *nl = memchr(s + from, '\n', n - from);
        size_t end = nl ? (size_t)(nl - s) : n, ds = from + 5;
        char *p = NULL;
        size_t pl = 0;

        if (end - from > 5 && memcmp(s + from, "data:", 5) == 0) {
            ds += s[ds] == ' ';
            if ((s[ds] == '{' || s[ds] == '[') &&
                (rc = audit_diff_pretty(s + ds, end - ds, &p, &pl)) < 0)
                break;
        }
        if (p) {
            tb_put(&t, "data: ", 6);
            tb_put(&t, p, pl);
            free(p);
        } else {
            tb_put(&t, s + from, end - from);
            tb_put(&t, "\n", 1);
        }
        from = end + 1;
    }
    if (rc < 0 || t.oom) {
        free(t.s);
        return -1;
    }
    *out = t.s ? t.s : strdup("");
    *out_len = t.n;
    return *out ? 0 : -1;
}

/* pair -- one comparison: a line when there is nothing to show, else the diff */
static int pair(struct tb *t, const char *an, const char *adesc, const struct payload *a,
                const char *bn, const char *bdesc, const struct payload *b)
{
    char ha[128], hb[128], *pa = NULL, *pb = NULL, *d = NULL;
    size_t la = 0, lb = 0, dl = 0;
    int rc = -1;

    if (!a->shown || !b->shown || a->binary || b->binary) {
        if ((a->sealed && !a->shown) || (b->sealed && !b->shown))
            tb_printf(t, "%s -> %s: sealed, %zu -> %zu bytes (values need the auditor's key)\n", an,
                      bn, a->bytes, b->bytes);
        else if (a->binary && b->binary && a->bytes == b->bytes && !strcmp(a->data, b->data))
            tb_printf(t, "%s -> %s: unchanged (%zu bytes, binary)\n", an, bn, a->bytes);
        else
            tb_printf(t, "%s -> %s: binary, %zu -> %zu bytes (not compared)\n", an, bn, a->bytes,
                      b->bytes);
        return 0;
    }
    if (strcmp(a->data, b->data) == 0) {
        tb_printf(t, "%s -> %s: unchanged (%zu bytes)\n", an, bn, a->bytes);
        return 0;
    }
    snprintf(ha, sizeof(ha), "%s (%s, %zu bytes)", an, adesc, a->bytes);
    snprintf(hb, sizeof(hb), "%s (%s, %zu bytes)", bn, bdesc, b->bytes);
    if (view(a->data, strlen(a->data), &pa, &la) < 0 ||
        view(b->data, strlen(b->data), &pb, &lb) < 0)
        goto done;
    if (la == lb && memcmp(pa, pb, la) == 0)
        tb_printf(t, "%s -> %s: the same values, spaced differently (%zu -> %zu bytes)\n", an, bn,
                  a->bytes, b->bytes);
    else if (audit_diff_text(pa, la, pb, lb, ha, hb, &d, &dl) < 0)
        goto done;
    else
        tb_put(t, d, dl);
    rc = 0;
done:
    free(d);
    free(pa);
    free(pb);
    return rc;
}

/* field -- `before` then a metadata value (NULL: "?"), made safe for a terminal */
static void field(struct tb *t, const char *before, const char *value)
{
    tb_put(t, before, strlen(before));
    if (!value)
        value = "?";
    tb_safe(t, value, strlen(value));
}

static int render(struct tb *t, const cJSON *req, const cJSON *resp)
{
    const cJSON *rm = req ? cJSON_GetObjectItemCaseSensitive(req, "meta") : NULL;
    const cJSON *sm = resp ? cJSON_GetObjectItemCaseSensitive(resp, "meta") : NULL;
    const char *id = mstr(rm, "id") ? mstr(rm, "id") : mstr(sm, "id");
    const cJSON *f, *st, *tm;
    struct payload in, ob, up, cl;
    int any_sealed;

    tm = cJSON_GetObjectItemCaseSensitive(req ? req : resp, "time");
    field(t, "=== request ", id);
    if (cJSON_IsString(tm))
        field(t, "  ", tm->valuestring);
    tb_put(t, "\n", 1);
    if (rm) {
        const char *prov = mstr(rm, "provider"), *rmod = mstr(rm, "route_model");
        field(t, "", mstr(rm, "endpoint"));
        field(t, " (", mstr(rm, "api"));
        field(t, ")  model ", mstr(rm, "model"));
        field(t, "  verdict ", mstr(rm, "verdict"));
        field(t, "  rule ", mstr(rm, "rule"));
        if (prov && rmod) {
            field(t, "  route ", prov);
            field(t, "/", rmod);
        }
        tb_put(t, "\n", 1);
        field(t, "modified: ", mstr(rm, "modified") ? mstr(rm, "modified") : "nothing");
        tb_put(t, "\n", 1);
        f = cJSON_GetObjectItemCaseSensitive(rm, "findings");
        if (cJSON_GetArraySize(f) > 0) {
            const cJSON *x;
            tb_printf(t, "findings (byte spans of the inbound body):\n");
            cJSON_ArrayForEach(x, f)
            {
                const cJSON *msg = cJSON_GetObjectItemCaseSensitive(x, "message");
                const char *det = mstr(x, "detector");
                double s = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(x, "start"));
                double e = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(x, "end"));
                char span[96];
                field(t, "  ", det);
                snprintf(span, sizeof(span), " %.0f..%.0f (%.0f bytes)", s, e, e - s);
                tb_indent(t, det && strlen(det) < 16 ? 16 - (int)strlen(det) : 0);
                tb_put(t, span, strlen(span));
                if (cJSON_IsNumber(msg) && msg->valuedouble >= 0)
                    tb_printf(t, "  message %.0f", msg->valuedouble);
                else if (cJSON_IsNumber(msg))
                    tb_printf(t, "  system prompt");
                tb_put(t, "\n", 1);
            }
        }
    } else {
        tb_printf(t, "(no request record)\n");
    }
    if (sm) {
        st = cJSON_GetObjectItemCaseSensitive(sm, "status");
        tb_printf(t, "answer: status %.0f", cJSON_IsNumber(st) ? st->valuedouble : 0.0);
        if (mstr(sm, "model"))
            field(t, "  model ", mstr(sm, "model"));
        if (mstr(sm, "error")) {
            field(t, "  error \"", mstr(sm, "error"));
            tb_put(t, "\"", 1);
        }
        tb_put(t, "\n", 1);
    } else {
        tb_printf(t, "answer: no response record\n");
    }
    in = payload(req, "inbound");
    ob = payload(req, "outbound");
    up = payload(resp, "upstream");
    cl = payload(resp, "client");
    any_sealed = (in.sealed && !in.shown) || (ob.sealed && !ob.shown) || (up.sealed && !up.shown) ||
                 (cl.sealed && !cl.shown);
    if (any_sealed)
        tb_printf(t, "payloads are sealed and no key was given: positions and lengths only\n");
    tb_put(t, "\n", 1);
    if (!rm)
        ;
    else if (!ob.present)
        tb_printf(t, "inbound -> outbound: nothing left the network (inbound %zu bytes)\n",
                  in.bytes);
    else if (pair(t, "inbound", "received", &in, "outbound", "sent upstream", &ob) < 0)
        return -1;
    if (!sm)
        ;
    else if (!up.present)
        tb_printf(t, "upstream -> client: no provider answered; made here (client %zu bytes)\n",
                  cl.bytes);
    else if (pair(t, "upstream", "received", &up, "client", "sent to the client", &cl) < 0)
        return -1;
    tb_put(t, "\n", 1);
    return t->oom ? -1 : 0;
}

/* ---- the walk ---- */

struct pending {
    char *id;
    cJSON *req;
};

struct walk {
    struct pending *v;
    size_t n, cap;
    void (*out)(void *ud, const char *text);
    void *ud;
    int oom;
};

static void emit(struct walk *w, const cJSON *req, const cJSON *resp)
{
    struct tb t = {0};

    if (render(&t, req, resp) < 0 || t.oom) {
        w->oom = 1;
        free(t.s);
        return;
    }
    w->out(w->ud, t.s);
    free(t.s);
}

static void diff_line(void *ud, const char *json)
{
    struct walk *w = ud;
    cJSON *rec;
    const cJSON *ty;
    const char *id;

    if (w->oom)
        return;
    rec = cJSON_Parse(json);
    if (!rec) {
        w->oom = 1;
        return;
    }
    ty = cJSON_GetObjectItemCaseSensitive(rec, "type");
    id = mstr(cJSON_GetObjectItemCaseSensitive(rec, "meta"), "id");
    if (!cJSON_IsString(ty) || !id) {
        cJSON_Delete(rec);
        return;
    }
    if (strcmp(ty->valuestring, "request") == 0) {
        struct pending *nv = grow_room(w->v, &w->cap, w->n + 1, sizeof(*nv), 8);
        char *idc = strdup(id);
        if (!nv || !idc) {
            if (nv)
                w->v = nv;
            free(idc);
            cJSON_Delete(rec);
            w->oom = 1;
            return;
        }
        w->v = nv;
        w->v[w->n++] = (struct pending){idc, rec};
        return;
    }
    if (strcmp(ty->valuestring, "response") == 0) {
        size_t i;
        for (i = 0; i < w->n && strcmp(w->v[i].id, id) != 0; i++)
            ;
        emit(w, i < w->n ? w->v[i].req : NULL, rec);
        if (i < w->n) {
            free(w->v[i].id);
            cJSON_Delete(w->v[i].req);
            memmove(&w->v[i], &w->v[i + 1], (w->n - i - 1) * sizeof(*w->v));
            w->n--;
        }
    }
    cJSON_Delete(rec);
}

int audit_diff(const char *dir, const char *id, const char *seal_key_path,
               void (*out)(void *ud, const char *text), void *ud, struct audit_report *rep,
               char *err, size_t errlen)
{
    struct walk w = {.out = out, .ud = ud};
    int rc;

    rc = audit_show(dir, id, seal_key_path, diff_line, &w, rep, err, errlen);
    /* requests without a response record (in flight, or cut by a crash) come last */
    for (size_t i = 0; i < w.n; i++) {
        if (rc == 0 && !w.oom)
            emit(&w, w.v[i].req, NULL);
        free(w.v[i].id);
        cJSON_Delete(w.v[i].req);
    }
    free(w.v);
    if (rc == 0 && w.oom) {
        snprintf(err, errlen, "out of memory");
        rc = -1;
    }
    return rc;
}
