/* outbound.c -- the exact body that leaves the gateway (see outbound.h).
 *
 * Changes are made by splicing the original bytes, never by re-serialising the
 * whole body, so that everything the gateway did not mean to change leaves byte
 * for byte as the client sent it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "proxy/outbound.h"
#include "proxy/proxy_int.h"

/* skip one JSON value starting at s[i] (after whitespace); returns index past it
 * or 0 on malformed input. Strings honour escapes; containers nest. */
static size_t skip_ws(const char *s, size_t n, size_t i)
{
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
        i++;
    return i;
}

static size_t skip_string(const char *s, size_t n, size_t i)
{
    if (i >= n || s[i] != '"')
        return 0;
    for (i++; i < n; i++) {
        if (s[i] == '\\')
            i++;
        else if (s[i] == '"')
            return i + 1;
    }
    return 0;
}

static size_t skip_value(const char *s, size_t n, size_t i)
{
    int depth = 0;

    i = skip_ws(s, n, i);
    if (i >= n)
        return 0;
    if (s[i] == '"')
        return skip_string(s, n, i);
    if (s[i] != '{' && s[i] != '[') {
        while (i < n && s[i] != ',' && s[i] != '}' && s[i] != ']' && s[i] != ' ' && s[i] != '\n' &&
               s[i] != '\r' && s[i] != '\t')
            i++;
        return i;
    }
    for (; i < n; i++) {
        if (s[i] == '"') {
            i = skip_string(s, n, i);
            if (!i)
                return 0;
            i--;
        } else if (s[i] == '{' || s[i] == '[') {
            depth++;
        } else if (s[i] == '}' || s[i] == ']') {
            if (--depth == 0)
                return i + 1;
        }
    }
    return 0;
}

/* find a top-level key; *vs..*ve is its value's span. Returns 1 found, 0 not, -1 bad */
static int find_top_key(const char *s, size_t n, const char *key, size_t *vs, size_t *ve)
{
    size_t i = skip_ws(s, n, 0), klen = strlen(key);

    if (i >= n || s[i] != '{')
        return -1;
    i = skip_ws(s, n, i + 1);
    if (i < n && s[i] == '}')
        return 0;
    while (i < n) {
        size_t ks = i, ke = skip_string(s, n, i), v0, v1;
        if (!ke)
            return -1;
        i = skip_ws(s, n, ke);
        if (i >= n || s[i] != ':')
            return -1;
        v0 = skip_ws(s, n, i + 1);
        v1 = skip_value(s, n, v0);
        if (!v1)
            return -1;
        if (ke - ks - 2 == klen && memcmp(s + ks + 1, key, klen) == 0) {
            *vs = v0;
            *ve = v1;
            return 1;
        }
        i = skip_ws(s, n, v1);
        if (i < n && s[i] == ',') {
            i = skip_ws(s, n, i + 1);
            continue;
        }
        if (i < n && s[i] == '}')
            return 0;
        return -1;
    }
    return -1;
}

/* replace s[a..b) with rep; returns new malloc'd buffer */
static char *splice(const char *s, size_t n, size_t a, size_t b, const char *rep, size_t rlen,
                    size_t *out_len)
{
    char *o = malloc(n - (b - a) + rlen + 1);

    if (!o)
        return NULL;
    memcpy(o, s, a);
    memcpy(o + a, rep, rlen);
    memcpy(o + a + rlen, s + b, n - b);
    *out_len = n - (b - a) + rlen;
    o[*out_len] = '\0';
    return o;
}

static char *json_quote(const char *v)
{
    cJSON *s = cJSON_CreateString(v);
    char *q = cJSON_PrintUnformatted(s);

    cJSON_Delete(s);
    return q;
}

int proxy_outbound_build(const struct config *cfg, enum policy_api api, const char *body,
                         size_t len, const struct policy_decision *d, char **out, size_t *out_len,
                         int *flags_out, char *err, size_t errlen)
{
    const struct config_model *m;
    const struct config_provider *p;
    const char *src = d->body ? d->body : body;
    size_t n = d->body ? d->body_len : len, vs, ve;
    char *cur = NULL, *next;
    size_t cur_len = 0;
    int target_anthropic, rc;
    char *q;

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
    target_anthropic = p->type == CONFIG_PROVIDER_ANTHROPIC;
    if (target_anthropic != (api == POLICY_API_ANTHROPIC)) {
        int fl = 0;
        if (proxy_translate_request(m, target_anthropic, src, n, out, out_len, &fl, err, errlen) <
            0)
            return -1;
        if (flags_out)
            *flags_out = fl;
        return 0;
    }
    cur = malloc(n + 1);
    if (!cur)
        goto oom;
    memcpy(cur, src, n);
    cur[n] = '\0';
    cur_len = n;
    /* the model name the provider knows */
    rc = find_top_key(cur, cur_len, "model", &vs, &ve);
    if (rc < 0) {
        snprintf(err, errlen, "The request body is not a JSON object.");
        free(cur);
        return -1;
    }
    q = json_quote(m->upstream_model ? m->upstream_model : m->name);
    if (!q)
        goto oom;
    if (rc == 1) {
        if (ve - vs != strlen(q) || memcmp(cur + vs, q, ve - vs) != 0) {
            next = splice(cur, cur_len, vs, ve, q, strlen(q), &cur_len);
            free(cur);
            cur = next;
        }
    }
    free(q);
    if (!cur)
        goto oom;
    /* OpenAI streams: ask for usage so that cost is known */
    if (!target_anthropic) {
        size_t ss, se, os, oe;
        int stream = find_top_key(cur, cur_len, "stream", &ss, &se) == 1 && se - ss == 4 &&
                     memcmp(cur + ss, "true", 4) == 0;
        if (stream) {
            rc = find_top_key(cur, cur_len, "stream_options", &os, &oe);
            if (rc == 0) {
                size_t at = skip_ws(cur, cur_len, 0) + 1;
                size_t after = skip_ws(cur, cur_len, at);
                const char *ins = after < cur_len && cur[after] == '}'
                                      ? "\"stream_options\":{\"include_usage\":true}"
                                      : "\"stream_options\":{\"include_usage\":true},";
                next = splice(cur, cur_len, at, at, ins, strlen(ins), &cur_len);
                free(cur);
                cur = next;
                if (!cur)
                    goto oom;
                if (flags_out)
                    *flags_out |= PROXY_OUTBOUND_ADDED_USAGE;
            } else if (rc == 1) {
                cJSON *so = cJSON_ParseWithLength(cur + os, oe - os);
                if (cJSON_IsObject(so) &&
                    !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(so, "include_usage"))) {
                    char *s;
                    cJSON_DeleteItemFromObjectCaseSensitive(so, "include_usage");
                    cJSON_AddTrueToObject(so, "include_usage");
                    s = cJSON_PrintUnformatted(so);
                    if (s) {
                        next = splice(cur, cur_len, os, oe, s, strlen(s), &cur_len);
                        free(s);
                        free(cur);
                        cur = next;
                        if (flags_out)
                            *flags_out |= PROXY_OUTBOUND_ADDED_USAGE;
                    }
                }
                cJSON_Delete(so);
                if (!cur)
                    goto oom;
            }
        }
    }
    *out = cur;
    *out_len = cur_len;
    return 0;
oom:
    free(cur);
    snprintf(err, errlen, "out of memory");
    return -1;
}
