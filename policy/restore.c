/* restore.c -- put redacted values back into an answer as it streams.
 *
 * Each slot (a choice or content block) holds back at most one incomplete placeholder:
 * text from a '[' that is a proper prefix of a placeholder this request really issued.
 * Anything else -- "[", "[EMAIL", "[EMAIL_9]" when only [EMAIL_1] exists -- goes out
 * unchanged at once, so nothing is held longer than the longest placeholder. The
 * originals live only here and are wiped when the decision is released. */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "policy/policy_int.h"

#include "common/grow.h"

struct rentry {
    char *ph, *val;
    size_t ph_len, val_len;
};

struct rslot {
    int id;
    char *pend; /* capacity max_ph */
    size_t len;
};

struct policy_restorer {
    struct rentry *e;
    size_t n, cap;
    size_t max_ph;
    struct rslot *slots;
    size_t n_slots, slots_cap;
    /* the entries by placeholder (then by insertion), built at the first feed when every
     * placeholder is '[' ... ']' with no other ']' (the policy's are): a '[' in the answer
     * is then looked up, not compared with every entry -- 100,000 redactions and an answer
     * of 10,000 brackets took 3.3 s on the event loop. NULL: compared one by one. */
    size_t *by_ph;
    int indexed; /* by_ph was tried */
};

struct policy_restorer *policy_restorer_new(void)
{
    return calloc(1, sizeof(struct policy_restorer));
}

int policy_restorer_add(struct policy_restorer *r, const char *ph, size_t ph_len, const char *val,
                        size_t val_len)
{
    if (r->n_slots || r->indexed)
        return -1; /* the mapping is fixed before streaming starts (or sealed) */
    struct rentry *ne = grow_room(r->e, &r->cap, r->n + 1, sizeof(*ne), 8);
    if (!ne)
        return -1;
    r->e = ne;
    struct rentry *e = &r->e[r->n];
    e->ph = malloc(ph_len + 1);
    e->val = malloc(val_len + 1);
    if (!e->ph || !e->val) {
        free(e->ph);
        free(e->val);
        return -1;
    }
    memcpy(e->ph, ph, ph_len);
    memcpy(e->val, val, val_len);
    e->ph[ph_len] = e->val[val_len] = 0;
    e->ph_len = ph_len;
    e->val_len = val_len;
    if (ph_len > r->max_ph)
        r->max_ph = ph_len;
    r->n++;
    return 0;
}

void policy_restorer_free(struct policy_restorer *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++) {
        sodium_memzero(r->e[i].val, r->e[i].val_len);
        free(r->e[i].val);
        free(r->e[i].ph);
    }
    for (size_t i = 0; i < r->n_slots; i++) {
        sodium_memzero(r->slots[i].pend, r->max_ph);
        free(r->slots[i].pend);
    }
    free(r->e);
    free(r->slots);
    free(r->by_ph);
    free(r);
}

static void index_build(struct policy_restorer *r);

void policy_restorer_seal(struct policy_restorer *r)
{
    if (r && !r->indexed)
        index_build(r);
}

static struct rslot *slot_get(struct policy_restorer *r, int id)
{
    if (!r->indexed)
        index_build(r); /* (the mapping is fixed from the first feed on) */
    for (size_t i = 0; i < r->n_slots; i++)
        if (r->slots[i].id == id)
            return &r->slots[i];
    struct rslot *ns = grow_room(r->slots, &r->slots_cap, r->n_slots + 1, sizeof(*ns), 4);
    if (!ns)
        return NULL;
    r->slots = ns;
    struct rslot *s = &r->slots[r->n_slots];
    s->id = id;
    s->len = 0;
    s->pend = malloc(r->max_ph ? r->max_ph : 1);
    if (!s->pend)
        return NULL;
    r->n_slots++;
    return s;
}

static int append(char **out, size_t *out_len, const char *s, size_t n)
{
    if (n == 0 && *out)
        return 0;
    char *o = realloc(*out, *out_len + n + 1);
    if (!o)
        return -1;
    memcpy(o + *out_len, s, n);
    *out_len += n;
    o[*out_len] = 0;
    *out = o;
    return 0;
}

/* cmp_bytes -- a[0..an) against b[0..bn), bytes then length */
static int cmp_bytes(const char *a, size_t an, const char *b, size_t bn)
{
    int c = memcmp(a, b, an < bn ? an : bn);
    return c ? c : an < bn ? -1 : an > bn;
}

static int by_ph_cmp(const void *x, const void *y, void *arg)
{
    const struct rentry *e = arg, *a = &e[*(const size_t *)x], *b = &e[*(const size_t *)y];
    int c = cmp_bytes(a->ph, a->ph_len, b->ph, b->ph_len);
    return c ? c : *(const size_t *)x < *(const size_t *)y ? -1 : 1;
}

/* index_build -- r->by_ph, when every placeholder is '[' ... ']' with no other ']' (so the text
 * from a '[' to the first ']' after it is the only placeholder that can start there);
 * left NULL otherwise, or when memory runs out (the lookup is then one by one) */
static void index_build(struct policy_restorer *r)
{
    r->indexed = 1;
    for (size_t i = 0; i < r->n; i++) {
        const struct rentry *x = &r->e[i];
        if (x->ph_len < 2 || x->ph[0] != '[' || x->ph[x->ph_len - 1] != ']' ||
            memchr(x->ph, ']', x->ph_len - 1))
            return;
    }
    r->by_ph = malloc((r->n ? r->n : 1) * sizeof(*r->by_ph));
    if (!r->by_ph)
        return;
    for (size_t i = 0; i < r->n; i++)
        r->by_ph[i] = i;
    qsort_r(r->by_ph, r->n, sizeof(*r->by_ph), by_ph_cmp, r->e);
}

/* ph_lower_bound -- the first position in by_ph whose placeholder is not below b[0..n) */
static size_t ph_lower_bound(const struct policy_restorer *r, const char *b, size_t n)
{
    size_t lo = 0, hi = r->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const struct rentry *x = &r->e[r->by_ph[mid]];
        if (cmp_bytes(x->ph, x->ph_len, b, n) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* At buf[j] == '[': 1 and *e for a whole placeholder, 2 for a proper prefix of one, 0.
 * (The first entry added wins when two have the same placeholder.) */
static int match_at(const struct policy_restorer *r, const char *b, size_t rem,
                    const struct rentry **e)
{
    int prefix = 0;
    if (r->by_ph) {
        size_t look = rem < r->max_ph ? rem : r->max_ph, k;
        const char *q = look > 1 ? memchr(b + 1, ']', look - 1) : NULL;
        if (q) { /* only b[0..q] can be whole; nothing is longer than it with this head */
            size_t n = (size_t)(q - b) + 1;
            k = ph_lower_bound(r, b, n);
            if (k < r->n && cmp_bytes(r->e[r->by_ph[k]].ph, r->e[r->by_ph[k]].ph_len, b, n) == 0) {
                *e = &r->e[r->by_ph[k]];
                return 1;
            }
            return 0;
        }
        if (rem >= r->max_ph)
            return 0;                  /* no ']' where any placeholder would end */
        k = ph_lower_bound(r, b, rem); /* the first placeholder from b[0..rem) up */
        return k < r->n && r->e[r->by_ph[k]].ph_len > rem &&
                       memcmp(r->e[r->by_ph[k]].ph, b, rem) == 0
                   ? 2
                   : 0;
    }
    for (size_t i = 0; i < r->n; i++) {
        const struct rentry *x = &r->e[i];
        if (x->ph_len <= rem) {
            if (memcmp(b, x->ph, x->ph_len) == 0) {
                *e = x;
                return 1;
            }
        } else if (memcmp(b, x->ph, rem) == 0) {
            prefix = 1;
        }
    }
    return prefix ? 2 : 0;
}

static int process(struct policy_restorer *r, struct rslot *s, const char *b, size_t n, char **out,
                   size_t *out_len)
{
    size_t i = 0, from = 0;
    while (i < n) {
        const char *lb = memchr(b + i, '[', n - i);
        if (!lb)
            break;
        size_t j = (size_t)(lb - b);
        const struct rentry *e = NULL;
        int m = match_at(r, b + j, n - j, &e);
        if (m == 1) {
            if (append(out, out_len, b + from, j - from) < 0 ||
                append(out, out_len, e->val, e->val_len) < 0)
                return -1;
            i = from = j + e->ph_len;
        } else if (m == 2) {
            if (append(out, out_len, b + from, j - from) < 0)
                return -1;
            memmove(s->pend, b + j, n - j); /* n - j < max_ph */
            s->len = n - j;
            return 0;
        } else {
            i = j + 1;
        }
    }
    s->len = 0;
    return append(out, out_len, b + from, n - from);
}

int policy_restore_feed(struct policy_restorer *r, int slot, const char *in, size_t len, char **out,
                        size_t *out_len)
{
    if (r->n == 0)
        return append(out, out_len, in, len);
    struct rslot *s = slot_get(r, slot);
    if (!s)
        return -1;
    if (s->len == 0)
        return process(r, s, in, len, out, out_len);
    /* join the held-back prefix with just enough new text to decide it */
    size_t take = len < r->max_ph ? len : r->max_ph;
    char tmp[2 * 256];
    char *buf = s->len + take <= sizeof(tmp) ? tmp : malloc(s->len + take);
    if (!buf)
        return -1;
    memcpy(buf, s->pend, s->len);
    memcpy(buf + s->len, in, take);
    size_t held = s->len, blen = held + take;
    const struct rentry *e = NULL;
    int m = match_at(r, buf, blen, &e);
    int rc;
    if (m == 2) {
        /* still a prefix: all of `in` fit (take == len) */
        memcpy(s->pend, buf, blen);
        s->len = blen;
        rc = 0;
    } else if (m == 1) {
        s->len = 0;
        rc = append(out, out_len, e->val, e->val_len);
        if (rc == 0)
            rc = process(r, s, in + (e->ph_len - held), len - (e->ph_len - held), out, out_len);
    } else {
        /* not a placeholder: the '[' goes out; the rest of the held text is re-examined */
        rc = append(out, out_len, buf, 1);
        if (rc == 0) {
            size_t rest = held - 1;
            s->len = 0;
            char *re = malloc(rest + len + 1);
            if (!re) {
                rc = -1;
            } else {
                memcpy(re, buf + 1, rest);
                memcpy(re + rest, in, len);
                rc = process(r, s, re, rest + len, out, out_len);
                free(re);
            }
        }
    }
    if (buf != tmp) {
        sodium_memzero(buf, blen);
        free(buf);
    }
    return rc;
}

int policy_restore_flush(struct policy_restorer *r, int slot, char **out, size_t *out_len)
{
    if (r->n == 0)
        return append(out, out_len, "", 0);
    struct rslot *s = slot_get(r, slot);
    if (!s)
        return -1;
    size_t n = s->len;
    s->len = 0;
    return append(out, out_len, s->pend, n);
}
