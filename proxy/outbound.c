/* outbound.c -- the exact body that leaves the gateway (see outbound.h).
 *
 * Changes are made by splicing the original bytes at the spans of the one strict parse
 * (common/json.h) -- the redaction's placeholders, the model's new name, the usage
 * option -- all in one pass, never by re-serialising the whole body, so that everything
 * the gateway did not mean to change leaves byte for byte as the client sent it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>
#include <sodium.h>

#include "common/grow.h"
#include "common/json.h"
#include "proxy/outbound.h"
#include "proxy/proxy_int.h"
#include "proxy/wire.h"

struct edit {
    size_t start, end; /* bytes of the original body replaced */
    const char *text;
    size_t len;
};

struct edits {
    struct edit *v;
    size_t n, cap;
};

static int edit_add(struct edits *e, size_t start, size_t end, const char *text, size_t len)
{
    struct edit *nv = grow_room(e->v, &e->cap, e->n + 1, sizeof(*nv), 16);
    if (!nv)
        return -1;
    e->v = nv;
    e->v[e->n++] = (struct edit){start, end, text, len};
    return 0;
}

static int edit_cmp(const void *a, const void *b)
{
    const struct edit *x = a, *y = b;
    if (x->start != y->start)
        return x->start < y->start ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

/* apply -- the body with every edit made, in one pass; -1 when two edits overlap (a
 * rewrite that would need a second reading of the body) or memory runs out */
static int apply(const char *body, size_t len, struct edits *e, char **out, size_t *out_len)
{
    size_t n = len, from = 0, o = 0;
    char *buf;

    if (e->n > 1)
        qsort(e->v, e->n, sizeof(*e->v), edit_cmp);
    for (size_t i = 0; i < e->n; i++) {
        if (e->v[i].start < from || e->v[i].end > len || e->v[i].end < e->v[i].start)
            return -1;
        from = e->v[i].end;
        n += e->v[i].len;
    }
    buf = malloc(n + 1);
    if (!buf)
        return -1;
    from = 0;
    for (size_t i = 0; i < e->n; i++) {
        memcpy(buf + o, body + from, e->v[i].start - from);
        o += e->v[i].start - from;
        memcpy(buf + o, e->v[i].text, e->v[i].len);
        o += e->v[i].len;
        from = e->v[i].end;
    }
    memcpy(buf + o, body + from, len - from);
    o += len - from;
    buf[o] = '\0';
    *out = buf;
    *out_len = o;
    return 0;
}

static char *json_quote(const char *v)
{
    cJSON *s = cJSON_CreateString(v);
    char *q = s ? cJSON_PrintUnformatted(s) : NULL;

    cJSON_Delete(s);
    return q;
}

/* The request in the other API: redaction applied to the original bytes, that body read
 * by the same strict parser (it is our own splice of the one parse), then rebuilt. */
static int translated(const struct config_model *m, int to_anthropic, enum policy_api api, int as,
                      const struct json_doc *doc, struct edits *e, char **out, size_t *out_len,
                      int *flags, char *err, size_t errlen)
{
    struct json_doc rd = {0};
    char *red = NULL;
    size_t red_len = 0;
    cJSON *in = NULL;
    int rc = -1;

    if (apply(doc->body, doc->len, e, &red, &red_len) < 0) {
        snprintf(err, errlen, "The request could not be rewritten (overlapping changes).");
        return -1;
    }
    if (json_parse(&rd, red, red_len, err, errlen) < 0 || !(in = json_to_cjson(&rd, rd.root))) {
        snprintf(err, errlen, "The redacted request could not be read back (out of memory).");
        goto done;
    }
    rc = proxy_wire_translate_request(as == PROXY_OUTBOUND_RESPONSES ? &proxy_wire_openai_responses
                                      : api == POLICY_API_ANTHROPIC ? &proxy_wire_anthropic_messages
                                                                    : &proxy_wire_openai_chat,
                                      to_anthropic ? &proxy_wire_anthropic_messages
                                                   : &proxy_wire_openai_chat,
                                      m, in, out, out_len, flags, err, errlen);
done:
    cJSON_Delete(in);
    json_doc_deinit(&rd);
    if (red) {
        sodium_memzero(red, red_len);
        free(red);
    }
    return rc;
}

/* OpenAI streams: make the provider report usage (stream_options.include_usage), so that
 * the request is priced and budgets hold; the flag tells the relay to keep that chunk
 * from a client that did not ask for it. */
static int ask_usage(const struct json_doc *doc, struct edits *e, int *flags)
{
    uint32_t root = doc->root, so = json_get(doc, root, "stream_options"), iu;
    static const char whole[] = "\"stream_options\":{\"include_usage\":true},";

    if (json_type(doc, json_get(doc, root, "stream")) != JSON_TRUE)
        return 0;
    if (so == JSON_NONE) {
        *flags |= PROXY_OUTBOUND_ADDED_USAGE;
        /* the root has members (it has a model), so the insertion takes a comma */
        return edit_add(e, doc->nodes[root].start + 1, doc->nodes[root].start + 1, whole,
                        sizeof(whole) - 1);
    }
    if (json_type(doc, so) != JSON_OBJ) {
        *flags |= PROXY_OUTBOUND_ADDED_USAGE;
        return edit_add(e, doc->nodes[so].start, doc->nodes[so].end, "{\"include_usage\":true}",
                        22);
    }
    iu = json_get(doc, so, "include_usage");
    if (json_type(doc, iu) == JSON_TRUE)
        return 0;
    *flags |= PROXY_OUTBOUND_ADDED_USAGE;
    if (iu != JSON_NONE)
        return edit_add(e, doc->nodes[iu].start, doc->nodes[iu].end, "true", 4);
    if (doc->nodes[so].child == JSON_NONE)
        return edit_add(e, doc->nodes[so].start + 1, doc->nodes[so].start + 1,
                        "\"include_usage\":true", 20);
    return edit_add(e, doc->nodes[so].start + 1, doc->nodes[so].start + 1,
                    "\"include_usage\":true,", 21);
}

int proxy_outbound_build(const struct config *cfg, enum policy_api api, const struct json_doc *doc,
                         const struct policy_decision *d, char **out, size_t *out_len,
                         int *flags_out, char *err, size_t errlen)
{
    return proxy_outbound_build_ex(cfg, api, 0, doc, d, out, out_len, flags_out, err, errlen);
}

int proxy_outbound_build_ex(const struct config *cfg, enum policy_api api, int as,
                            const struct json_doc *doc, const struct policy_decision *d, char **out,
                            size_t *out_len, int *flags_out, char *err, size_t errlen)
{
    const struct config_model *m;
    const struct config_provider *p;
    struct edits e = {0};
    char *q = NULL;
    int target_anthropic, flags = 0, rc = -1;

    *out = NULL;
    *out_len = 0;
    if (flags_out)
        *flags_out = 0;
    if (d->verdict == POLICY_BLOCK || !d->model)
        return 0;
    m = config_model_find(cfg, d->model);
    if (!m)
        return 0;
    p = &cfg->providers[m->provider_index];
    if (p->type == CONFIG_PROVIDER_BUILTIN)
        return 0; /* nothing leaves the network */
    if (doc->root == JSON_NONE || doc->nodes[doc->root].type != JSON_OBJ) {
        snprintf(err, errlen, "The request body is not a JSON object.");
        return -1;
    }
    for (size_t i = 0; i < d->n_edits; i++)
        if (edit_add(&e, d->edits[i].start, d->edits[i].end, d->edits[i].text, d->edits[i].len) < 0)
            goto oom;
    target_anthropic = p->type == CONFIG_PROVIDER_ANTHROPIC;
    if (target_anthropic != (api == POLICY_API_ANTHROPIC)) {
        rc = translated(m, target_anthropic, api, as, doc, &e, out, out_len, &flags, err, errlen);
        goto done;
    }
    /* the model name the provider knows, in place of the (one) model member's value */
    uint32_t mv = json_get(doc, doc->root, "model");
    if (mv != JSON_NONE) {
        const struct json_node *n = &doc->nodes[mv];
        size_t vs = n->type == JSON_STR ? n->start - 1 : n->start;
        size_t ve = n->type == JSON_STR ? n->end + 1 : n->end;
        q = json_quote(m->upstream_model ? m->upstream_model : m->name);
        if (!q)
            goto oom;
        if ((ve - vs != strlen(q) || memcmp(doc->body + vs, q, ve - vs) != 0) &&
            edit_add(&e, vs, ve, q, strlen(q)) < 0)
            goto oom;
    }
    if (!target_anthropic && as != PROXY_OUTBOUND_RESPONSES && ask_usage(doc, &e, &flags) < 0)
        goto oom;
    if (apply(doc->body, doc->len, &e, out, out_len) < 0) {
        snprintf(err, errlen, "The request could not be rewritten (overlapping changes).");
        goto done;
    }
    rc = 0;
    goto done;
oom:
    snprintf(err, errlen, "out of memory");
done:
    if (rc == 0 && flags_out)
        *flags_out = flags;
    free(q);
    free(e.v);
    return rc;
}
