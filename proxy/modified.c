/* modified.c -- what the gateway changed in a request before it left, in one line: the
 * `x-airlock-modified` header, the request record's "modified" and `airlock policy test`'s
 * "modified" (docs/gateway.md has the grammar).
 *
 * The summary names kinds of change and counts, never a value: a detector's name and how
 * many of its findings were replaced, the model's name before and after, the options the
 * gateway added, the APIs a request was translated between. Names come from the client
 * (the requested model) or the config (models, custom detectors), so every byte outside a
 * small safe set is percent-encoded: the line stays one header value, and the separators
 * of the grammar (';', ',', '=', '>', ' ') never occur inside a name. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/grow.h"
#include "proxy/decide.h"
#include "proxy/outbound.h"

struct sbuf {
    char *s;
    size_t n, cap;
    int oom;
};

static void put(struct sbuf *b, const char *s, size_t n)
{
    char *ns;

    if (b->oom)
        return;
    ns = grow_room(b->s, &b->cap, b->n + n + 1, 1, 128);
    if (!ns) {
        b->oom = 1;
        return;
    }
    b->s = ns;
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = '\0';
}

static void puts_(struct sbuf *b, const char *s)
{
    put(b, s, strlen(s));
}

/* name -- s with every byte outside [A-Za-z0-9._~:/@+-] as %XX */
static void name(struct sbuf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";

    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            strchr("._~:/@+-", *p)) {
            put(b, (const char *)p, 1);
        } else {
            char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
            put(b, e, 3);
        }
    }
}

/* item -- open one item of the list: "; " before all but the first */
static void item(struct sbuf *b, const char *key)
{
    if (b->n)
        puts_(b, "; ");
    puts_(b, key);
    puts_(b, "=");
}

const char *proxy_modified_api_name(enum policy_api api, enum proxy_body kind)
{
    if (kind == PROXY_BODY_COMPLETION)
        return "openai-completions";
    if (kind == PROXY_BODY_EMBEDDING)
        return "openai-embeddings";
    if (kind == PROXY_BODY_RESPONSE || kind == PROXY_BODY_COMPACT)
        return "openai-responses";
    return api == POLICY_API_ANTHROPIC ? "anthropic-messages" : "openai-chat";
}

/* the detector of an edit: the finding with its span (redact replaces findings' spans).
 * Both lists are in body order and the edits are some of the findings, so one walk from
 * *from (the finding after the previous edit's) finds it: searching all the findings for
 * each edit was quadratic, seconds on the event loop for a body of 100,000 e-mails. */
static const char *edit_detector(const struct policy_decision *p, const struct policy_edit *e,
                                 size_t *from)
{
    for (size_t k = 0; k < p->n_findings; k++) {
        size_t i = (*from + k) % p->n_findings; /* (the rest only if the order was not so) */
        if (p->findings[i].start == e->start && p->findings[i].end == e->end) {
            *from = i + 1;
            return p->findings[i].detector;
        }
    }
    return "unknown";
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* redacted=DET:N,... -- per detector (sorted by name) the spans replaced by placeholders */
static void redacted(struct sbuf *b, const struct policy_decision *p)
{
    const char **dets;
    size_t n = p->n_edits, from = 0;

    if (!n)
        return;
    dets = malloc(n * sizeof(*dets));
    if (!dets) {
        b->oom = 1;
        return;
    }
    for (size_t i = 0; i < n; i++)
        dets[i] = edit_detector(p, &p->edits[i], &from);
    qsort(dets, n, sizeof(*dets), str_cmp);
    item(b, "redacted");
    for (size_t i = 0, j; i < n; i = j) {
        char cnt[24];
        for (j = i; j < n && strcmp(dets[j], dets[i]) == 0; j++)
            ;
        if (i)
            puts_(b, ",");
        name(b, dets[i]);
        snprintf(cnt, sizeof(cnt), ":%zu", j - i);
        puts_(b, cnt);
    }
    free(dets);
}

int proxy_modified_summary(const struct proxy_decision *d, char **out)
{
    struct sbuf b = {0};
    const char *sent;
    int builtin, to_anthropic;

    *out = NULL;
    if (!d->model || !d->prov || !d->has_policy || d->policy.verdict == POLICY_BLOCK)
        return 0; /* nothing goes on, so nothing was changed on its way */
    builtin = d->prov->type == CONFIG_PROVIDER_BUILTIN;
    to_anthropic = d->prov->type == CONFIG_PROVIDER_ANTHROPIC;
    /* the engine reads the body as received (it stays local): its placeholders are the
     * outbound body's alone */
    if (d->outbound)
        redacted(&b, &d->policy);
    sent = builtin || !d->model->upstream_model ? d->model->name : d->model->upstream_model;
    if (d->model_name && strcmp(d->model_name, sent) != 0) {
        item(&b, "model");
        name(&b, d->model_name);
        puts_(&b, "->");
        name(&b, sent);
    }
    if (d->outbound_flags & PROXY_OUTBOUND_ADDED_USAGE) {
        item(&b, "options");
        puts_(&b, "stream_options.include_usage");
    }
    /* (the routes a kind cannot take were refused: proxy_decide_body's routable) */
    if (builtin || to_anthropic != (d->api == POLICY_API_ANTHROPIC)) {
        item(&b, "translated");
        puts_(&b, proxy_modified_api_name(d->api, d->kind));
        puts_(&b, "->");
        puts_(&b, builtin ? "builtin" : to_anthropic ? "anthropic-messages" : "openai-chat");
    }
    /* a change the list above has no word for (the model's name re-spelt with the same
     * meaning, say) is still a change */
    if (!b.n && d->outbound &&
        (d->outbound_len != d->doc.len || memcmp(d->outbound, d->doc.body, d->doc.len) != 0))
        puts_(&b, "rewritten");
    if (b.oom) {
        free(b.s);
        return -1;
    }
    *out = b.s;
    return 0;
}
