/* wire.c -- what the wire formats share (see wire.h): the canonical chat, text content,
 * request translation, writing events, restoring placeholders. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "common/grow.h"
#include "common/wipe.h"
#include "proxy/proxy_int.h"
#include "proxy/wire.h"

void proxy_chat_init(struct proxy_chat *c)
{
    memset(c, 0, sizeof(*c));
    c->max_tokens = c->temperature = c->top_p = c->top_k = c->seed = -1;
}

int proxy_chat_add(struct proxy_chat *c, const char *role, char *text)
{
    struct proxy_chat_msg *m = grow_room(c->msgs, &c->cap, c->n + 1, sizeof(*m), 8);
    if (!m) {
        wipe_str_free(text);
        return -1;
    }
    c->msgs = m;
    c->msgs[c->n].role = role;
    c->msgs[c->n].text = text;
    c->n++;
    return 0;
}

void proxy_chat_deinit(struct proxy_chat *c)
{
    for (size_t i = 0; i < c->n; i++)
        wipe_str_free(c->msgs[i].text);
    free(c->msgs);
    proxy_chat_init(c);
}

int proxy_wire_content_text(const cJSON *c, char **out)
{
    const cJSON *p;
    size_t len = 0;
    char *s;

    *out = NULL;
    if (!c || cJSON_IsNull(c)) {
        *out = strdup("");
        return *out ? 0 : -1;
    }
    if (cJSON_IsString(c)) {
        *out = strdup(c->valuestring);
        return *out ? 0 : -1;
    }
    if (!cJSON_IsArray(c))
        return -1;
    s = strdup("");
    if (!s)
        return -1;
    cJSON_ArrayForEach(p, c)
    {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(p, "type");
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(p, "text");
        size_t n;
        char *ns;

        if (!cJSON_IsString(type) || strcmp(type->valuestring, "text") != 0 ||
            !cJSON_IsString(text)) {
            wipe_free(s, len);
            return -1;
        }
        n = strlen(text->valuestring);
        ns = malloc(len + n + 1);
        if (!ns) {
            wipe_free(s, len);
            return -1;
        }
        memcpy(ns, s, len);
        memcpy(ns + len, text->valuestring, n + 1);
        wipe_free(s, len);
        s = ns;
        len += n;
    }
    *out = s;
    return 0;
}

const char *proxy_wire_untranslatable(const cJSON *in)
{
    static const char *const keys[] = {"tools",       "functions",  "tool_choice", "function_call",
                                       "mcp_servers", "thinking",   "n",           "logprobs",
                                       "audio",       "modalities", "prediction",  NULL};
    const cJSON *rf = cJSON_GetObjectItemCaseSensitive(in, "response_format");
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(in, "n");

    for (size_t i = 0; keys[i]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(in, keys[i]);
        if (!v || cJSON_IsNull(v) || cJSON_IsFalse(v))
            continue;
        if (cJSON_IsArray(v) && cJSON_GetArraySize(v) == 0)
            continue;
        if (v == n && cJSON_IsNumber(n) && n->valuedouble == 1)
            continue;
        return keys[i];
    }
    if (cJSON_IsObject(rf)) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(rf, "type");
        if (!cJSON_IsString(t) || strcmp(t->valuestring, "text") != 0)
            return "response_format";
    }
    return NULL;
}

int proxy_wire_translate_request(const struct proxy_wire *from, const struct proxy_wire *to,
                                 const struct config_model *m, const cJSON *in, char **out,
                                 size_t *out_len, int *flags, char *err, size_t errlen)
{
    struct proxy_chat c;
    cJSON *o = NULL;
    const char *bad;
    int rc = -1;

    *out = NULL;
    proxy_chat_init(&c);
    if (!cJSON_IsObject(in)) {
        snprintf(err, errlen, "The request body is not a JSON object.");
        return -1;
    }
    if ((bad = proxy_wire_untranslatable(in)) != NULL) {
        snprintf(err, errlen,
                 "'%s' cannot be translated to the %s format of the model this request is "
                 "routed to, so the request was not sent.",
                 bad, to == &proxy_wire_anthropic_messages ? "Anthropic" : "OpenAI");
        return -1;
    }
    if (from->read_request(in, &c, err, errlen) < 0)
        goto done;
    if (c.max_tokens == 0) { /* (proxy_wire_limit: present but not a limit) */
        snprintf(err, errlen, "max_tokens must be a whole number of at least 1.");
        goto done;
    }
    if (!to->build_request) {
        snprintf(err, errlen, "A request cannot be translated into the %s API.", to->name);
        goto done;
    }
    o = cJSON_CreateObject();
    if (!o || to->build_request(&c, m, o, flags, err, errlen) < 0)
        goto done;
    *out = cJSON_PrintUnformatted(o);
    if (!*out) {
        snprintf(err, errlen, "out of memory");
        goto done;
    }
    *out_len = strlen(*out);
    rc = 0;
done:
    if (rc < 0 && err[0] == '\0')
        snprintf(err, errlen, "out of memory");
    wipe_cjson_delete(o);
    proxy_chat_deinit(&c);
    return rc;
}

char *proxy_wire_print(cJSON *root, size_t *len)
{
    char *s = root ? cJSON_PrintUnformatted(root) : NULL;

    cJSON_Delete(root);
    *len = s ? strlen(s) : 0;
    return s;
}

char *proxy_wire_sse(const char *name, const char *data, size_t *len)
{
    size_t n = strlen(data) + (name ? strlen(name) : 0) + sizeof("event: \ndata: \n\n");
    char *s = malloc(n);
    int w;

    if (!s) {
        *len = 0;
        return NULL;
    }
    w = name ? snprintf(s, n, "event: %s\ndata: %s\n\n", name, data)
             : snprintf(s, n, "data: %s\n\n", data);
    *len = w > 0 ? (size_t)w : 0;
    return s;
}

void proxy_wire_write_event(struct proxy_req *r, const char *event, const cJSON *obj)
{
    char *s = cJSON_PrintUnformatted(obj);
    struct evbuffer *b = evbuffer_new();

    if (s && b) {
        if (event)
            evbuffer_add_printf(b, "event: %s\ndata: %s\n\n", event, s);
        else
            evbuffer_add_printf(b, "data: %s\n\n", s);
        proxy_conn_stream_write(r, (const char *)evbuffer_pullup(b, -1), evbuffer_get_length(b));
    }
    wipe_evbuffer_free(b);
    wipe_str_free(s);
}

char *proxy_wire_restore(struct proxy_req *r, int slot, const char *text, int flush)
{
    char *out = NULL, *z;
    size_t out_len = 0;

    if (!r->d.has_policy || !r->d.policy.restorer)
        return strdup(text ? text : "");
    if (text)
        policy_restore_feed(r->d.policy.restorer, slot, text, strlen(text), &out, &out_len);
    if (flush)
        policy_restore_flush(r->d.policy.restorer, slot, &out, &out_len);
    z = malloc(out_len + 1);
    if (z) {
        if (out_len)
            memcpy(z, out, out_len);
        z[out_len] = '\0';
    }
    wipe_free(out, out_len); /* restored originals */
    return z;
}

void proxy_wire_restore_field(struct proxy_req *r, cJSON *holder, const char *field, int slot,
                              int flush)
{
    cJSON *t = cJSON_GetObjectItemCaseSensitive(holder, field);
    char *z;

    if (!cJSON_IsString(t) && !flush)
        return;
    z = proxy_wire_restore(r, slot, cJSON_IsString(t) ? t->valuestring : NULL, flush);
    if (!z)
        return;
    if (cJSON_IsString(t)) {
        sodium_memzero(t->valuestring, strlen(t->valuestring));
        cJSON_SetValuestring(t, z);
    } else if (*z) {
        cJSON_AddStringToObject(holder, field, z);
    }
    wipe_str_free(z);
}

int proxy_wire_restoring(const struct proxy_req *r)
{
    return r->d.has_policy && r->d.policy.restorer;
}

enum proxy_stop proxy_openai_stop_from(const char *fr)
{
    if (!fr)
        return PROXY_STOP_END;
    if (strcmp(fr, "length") == 0)
        return PROXY_STOP_LENGTH;
    if (strcmp(fr, "tool_calls") == 0 || strcmp(fr, "function_call") == 0)
        return PROXY_STOP_TOOL;
    if (strcmp(fr, "content_filter") == 0)
        return PROXY_STOP_FILTER;
    return PROXY_STOP_END;
}

const char *proxy_openai_stop_to(enum proxy_stop s)
{
    switch (s) {
    case PROXY_STOP_LENGTH:
        return "length";
    case PROXY_STOP_TOOL:
        return "tool_calls";
    case PROXY_STOP_FILTER:
        return "content_filter";
    default:
        return "stop";
    }
}

int proxy_openai_read_answer(const cJSON *j, const char *holder, const char *field,
                             struct proxy_answer *a)
{
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(j, "id");
    const cJSON *mo = cJSON_GetObjectItemCaseSensitive(j, "model");
    const cJSON *c0 = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "choices"), 0);
    const cJSON *h = holder ? cJSON_GetObjectItemCaseSensitive(c0, holder) : c0;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(h, field);
    const cJSON *fr = cJSON_GetObjectItemCaseSensitive(c0, "finish_reason");

    a->text = strdup(cJSON_IsString(t) ? t->valuestring : "");
    a->stop = proxy_openai_stop_from(cJSON_IsString(fr) ? fr->valuestring : NULL);
    snprintf(a->id, sizeof(a->id), "%s", cJSON_IsString(id) ? id->valuestring : "");
    snprintf(a->model, sizeof(a->model), "%s", cJSON_IsString(mo) ? mo->valuestring : "");
    return a->text ? 0 : -1;
}

double proxy_wire_limit(const cJSON *v)
{
    if (!v || cJSON_IsNull(v))
        return -1;
    if (cJSON_IsNumber(v) && v->valuedouble >= 1 &&
        (isinf(v->valuedouble) || v->valuedouble == floor(v->valuedouble)))
        return v->valuedouble;
    return 0;
}

long proxy_wire_num(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

    /* a count a provider reports: 0 .. PROXY_MAX_COUNT, whatever it sent (negative, huge,
     * not a number), so sums and prices of counts cannot overflow */
    if (!cJSON_IsNumber(v) || !(v->valuedouble > 0))
        return 0;
    return v->valuedouble >= (double)PROXY_MAX_COUNT ? PROXY_MAX_COUNT : (long)v->valuedouble;
}
