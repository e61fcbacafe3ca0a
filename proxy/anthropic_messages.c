/* anthropic_messages.c -- the Anthropic Messages wire format (see wire.h).
 *
 * Requests: a top-level `system` (string or text blocks), `messages` of user/assistant
 * turns (text blocks only for the canonical chat), a required max_tokens, stop_sequences.
 * Answers: `message` objects and SSE events (message_start, content_block_start/delta/
 * stop, message_delta, message_stop, ping, error), each with an `event:` line; usage in
 * message_start (input, cache reads and writes) and message_delta (cumulative output). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/wipe.h"
#include "proxy/proxy_int.h"
#include "proxy/wire.h"

/* ---- requests ---- */

static int read_request(const cJSON *in, struct proxy_chat *c, char *err, size_t errlen)
{
    const cJSON *msg, *v = cJSON_GetObjectItemCaseSensitive(in, "system");
    char *text;

    if (v && !cJSON_IsNull(v)) {
        if (proxy_wire_content_text(v, &text) < 0) {
            snprintf(err, errlen,
                     "The system prompt holds non-text blocks, which cannot be carried out of "
                     "the Anthropic format.");
            return -1;
        }
        if (proxy_chat_add(c, "system", text) < 0)
            goto oom;
    }
    cJSON_ArrayForEach(msg, cJSON_GetObjectItemCaseSensitive(in, "messages"))
    {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(msg, "role");

        if (proxy_wire_content_text(cJSON_GetObjectItemCaseSensitive(msg, "content"), &text) < 0) {
            snprintf(err, errlen,
                     "Only text messages can be carried out of the Anthropic format; this "
                     "request has tool use, tool results or non-text blocks.");
            return -1;
        }
        if (proxy_chat_add(c,
                           cJSON_IsString(role) && strcmp(role->valuestring, "assistant") == 0
                               ? "assistant"
                               : "user",
                           text) < 0)
            goto oom;
    }
    c->max_tokens = proxy_wire_limit(cJSON_GetObjectItemCaseSensitive(in, "max_tokens"));
    if (cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(in, "temperature")))
        c->temperature = v->valuedouble;
    if (cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(in, "top_p")))
        c->top_p = v->valuedouble;
    if (cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(in, "top_k")))
        c->top_k = v->valuedouble;
    v = cJSON_GetObjectItemCaseSensitive(in, "stop_sequences");
    if (cJSON_IsArray(v)) {
        const cJSON *s;
        cJSON_ArrayForEach(s, v) if (cJSON_IsString(s) && c->n_stop < 4) c->stop[c->n_stop++] =
            s->valuestring;
    }
    c->stream = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(in, "stream"));
    return 0;
oom:
    snprintf(err, errlen, "out of memory");
    return -1;
}

/* System messages wherever they stood become the one top-level `system`, joined by a
 * blank line: the Messages API has no system role. */
static int build_request(const struct proxy_chat *c, const struct config_model *m, cJSON *o,
                         int *flags, char *err, size_t errlen)
{
    cJSON *msgs;
    char *system = NULL;
    size_t sys_len = 0;

    (void)flags;
    cJSON_AddStringToObject(o, "model", m->upstream_model ? m->upstream_model : m->name);
    cJSON_AddNumberToObject(o, "max_tokens", c->max_tokens >= 0 ? c->max_tokens : 4096);
    msgs = cJSON_CreateArray();
    if (!msgs)
        goto oom;
    for (size_t i = 0; i < c->n; i++) {
        if (strcmp(c->msgs[i].role, "system") == 0) {
            size_t n = strlen(c->msgs[i].text);
            char *ns = malloc(sys_len + n + 3);
            if (!ns)
                goto oom;
            if (sys_len) {
                memcpy(ns, system, sys_len);
                memcpy(ns + sys_len, "\n\n", 2);
                sys_len += 2;
            }
            memcpy(ns + sys_len, c->msgs[i].text, n + 1);
            sys_len += n;
            wipe_str_free(system);
            system = ns;
            continue;
        }
        cJSON *om = cJSON_CreateObject();
        cJSON_AddStringToObject(om, "role", c->msgs[i].role);
        cJSON_AddStringToObject(om, "content", c->msgs[i].text);
        cJSON_AddItemToArray(msgs, om);
    }
    if (system)
        cJSON_AddStringToObject(o, "system", system);
    wipe_str_free(system);
    cJSON_AddItemToObject(o, "messages", msgs);
    if (c->temperature >= 0)
        cJSON_AddNumberToObject(o, "temperature", c->temperature);
    if (c->top_p >= 0)
        cJSON_AddNumberToObject(o, "top_p", c->top_p);
    if (c->n_stop) {
        cJSON *a = cJSON_AddArrayToObject(o, "stop_sequences");
        for (size_t i = 0; a && i < c->n_stop; i++)
            cJSON_AddItemToArray(a, cJSON_CreateString(c->stop[i]));
    }
    if (c->stream)
        cJSON_AddTrueToObject(o, "stream");
    return 0;
oom:
    wipe_str_free(system);
    wipe_cjson_delete(msgs);
    snprintf(err, errlen, "out of memory");
    return -1;
}

/* ---- errors ---- */

static const char *error_type(int status)
{
    switch (status) {
    case 400:
        return "invalid_request_error";
    case 401:
        return "authentication_error";
    case 403:
        return "permission_error";
    case 404:
        return "not_found_error";
    case 413:
        return "request_too_large";
    case 429:
        return "rate_limit_error";
    case 503:
        return "overloaded_error";
    case 504:
        return "timeout_error";
    default:
        return "api_error";
    }
}

static char *error_body(int status, const char *type, const char *message, size_t *len)
{
    cJSON *root = cJSON_CreateObject(), *e;

    (void)status;
    cJSON_AddStringToObject(root, "type", "error");
    e = cJSON_AddObjectToObject(root, "error");
    cJSON_AddStringToObject(e, "type", type);
    cJSON_AddStringToObject(e, "message", message);
    return proxy_wire_print(root, len);
}

static char *error_event(const char *body, size_t *len)
{
    return proxy_wire_sse("error", body, len);
}

/* ---- answers from an Anthropic provider ---- */

/* message_start carries input (with cache reads and writes); message_delta the
 * cumulative output */
static void read_usage(struct proxy_usage *u, const cJSON *o)
{
    long in, cr, cw;

    if (!cJSON_IsObject(o))
        return;
    u->seen = 1;
    if (cJSON_GetObjectItemCaseSensitive(o, "input_tokens")) {
        in = proxy_wire_num(o, "input_tokens");
        cr = proxy_wire_num(o, "cache_read_input_tokens");
        cw = proxy_wire_num(o, "cache_creation_input_tokens");
        if (in || cr || cw) {
            u->input = in + cr + cw;
            u->cached = cr;
            u->cache_write = cw;
        }
    }
    if (cJSON_GetObjectItemCaseSensitive(o, "output_tokens"))
        u->output = proxy_wire_num(o, "output_tokens");
}

static enum proxy_stop stop_from(const char *sr)
{
    if (!sr)
        return PROXY_STOP_END;
    if (strcmp(sr, "max_tokens") == 0)
        return PROXY_STOP_LENGTH;
    if (strcmp(sr, "tool_use") == 0)
        return PROXY_STOP_TOOL;
    if (strcmp(sr, "refusal") == 0)
        return PROXY_STOP_FILTER;
    return PROXY_STOP_END;
}

static const char *stop_to(enum proxy_stop s)
{
    switch (s) {
    case PROXY_STOP_LENGTH:
        return "max_tokens";
    case PROXY_STOP_TOOL:
        return "tool_use";
    case PROXY_STOP_FILTER:
        return "refusal";
    default:
        return "end_turn";
    }
}

static int read_answer(const cJSON *j, struct proxy_answer *a, struct proxy_usage *u)
{
    const cJSON *b, *id = cJSON_GetObjectItemCaseSensitive(j, "id");
    const cJSON *mo = cJSON_GetObjectItemCaseSensitive(j, "model");
    const cJSON *sr = cJSON_GetObjectItemCaseSensitive(j, "stop_reason");
    size_t len = 0;

    read_usage(u, cJSON_GetObjectItemCaseSensitive(j, "usage"));
    a->text = strdup("");
    cJSON_ArrayForEach(b, cJSON_GetObjectItemCaseSensitive(j, "content"))
    {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(b, "text");
        size_t n;
        char *nt;
        if (!cJSON_IsString(t) || !a->text)
            continue;
        n = strlen(t->valuestring);
        nt = malloc(len + n + 1);
        if (!nt) {
            wipe_free(a->text, len);
            a->text = NULL;
            break;
        }
        memcpy(nt, a->text, len);
        memcpy(nt + len, t->valuestring, n + 1);
        wipe_free(a->text, len);
        a->text = nt;
        len += n;
    }
    a->stop = stop_from(cJSON_IsString(sr) ? sr->valuestring : NULL);
    snprintf(a->id, sizeof(a->id), "%s", cJSON_IsString(id) ? id->valuestring : "");
    snprintf(a->model, sizeof(a->model), "%s", cJSON_IsString(mo) ? mo->valuestring : "");
    return a->text ? 0 : -1;
}

#define EV(name) (elen == sizeof(name) - 1 && memcmp(event, name, elen) == 0)

static void read_event(struct proxy_req *r, const char *event, size_t elen, const char *data,
                       size_t dlen, const cJSON *j, struct proxy_piece *p)
{
    (void)data;
    (void)dlen;
    memset(p, 0, sizeof(*p));
    if (EV("message_stop")) {
        p->end = 1;
        return;
    }
    if (!j)
        return;
    if (EV("message_start")) {
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(j, "message");
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(m, "id");
        const cJSON *mo = cJSON_GetObjectItemCaseSensitive(m, "model");
        if (cJSON_IsString(id))
            snprintf(r->tr_id, sizeof(r->tr_id), "%s", id->valuestring);
        if (cJSON_IsString(mo))
            snprintf(r->tr_model, sizeof(r->tr_model), "%s", mo->valuestring);
        read_usage(&r->usage, cJSON_GetObjectItemCaseSensitive(m, "usage"));
        p->open = 1;
    } else if (EV("content_block_delta")) {
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(j, "delta");
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(d, "text");
        if (cJSON_IsString(t))
            p->text = t->valuestring;
    } else if (EV("message_delta")) {
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(j, "delta");
        const cJSON *sr = cJSON_GetObjectItemCaseSensitive(d, "stop_reason");
        p->has_stop = 1;
        p->stop = stop_from(cJSON_IsString(sr) ? sr->valuestring : NULL);
        read_usage(&r->usage, cJSON_GetObjectItemCaseSensitive(j, "usage"));
    } else if (EV("error")) {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(e, "message");
        p->error = cJSON_IsString(m) ? m->valuestring : "provider error";
    }
}

static int relay_event(struct proxy_req *r, const char *raw, size_t raw_len, const char *event,
                       size_t elen, const char *data, size_t dlen)
{
    cJSON *j;

    if (EV("message_start") || EV("message_delta")) {
        j = cJSON_ParseWithLength(data, dlen);
        if (j) {
            const cJSON *msg = cJSON_GetObjectItemCaseSensitive(j, "message");
            read_usage(&r->usage, cJSON_GetObjectItemCaseSensitive(msg ? msg : j, "usage"));
            wipe_cjson_delete(j);
        }
        proxy_conn_stream_write(r, raw, raw_len);
        return 0;
    }
    if (proxy_wire_restoring(r) && (EV("content_block_delta") || EV("content_block_stop"))) {
        j = cJSON_ParseWithLength(data, dlen);
        if (!j) {
            proxy_conn_stream_write(r, raw, raw_len);
            return 0;
        }
        int idx = (int)proxy_wire_num(j, "index");
        if (EV("content_block_delta")) {
            proxy_wire_restore_field(r, cJSON_GetObjectItemCaseSensitive(j, "delta"), "text", idx,
                                     0);
            proxy_wire_write_event(r, "content_block_delta", j);
        } else {
            /* the block ends: what the restorer still holds goes out before its stop */
            char *rest = proxy_wire_restore(r, idx, NULL, 1);
            if (rest && *rest) {
                cJSON *d = cJSON_CreateObject(), *dd;
                cJSON_AddStringToObject(d, "type", "content_block_delta");
                cJSON_AddNumberToObject(d, "index", idx);
                dd = cJSON_AddObjectToObject(d, "delta");
                cJSON_AddStringToObject(dd, "type", "text_delta");
                cJSON_AddStringToObject(dd, "text", rest);
                proxy_wire_write_event(r, "content_block_delta", d);
                wipe_cjson_delete(d);
            }
            wipe_str_free(rest);
            proxy_conn_stream_write(r, raw, raw_len);
        }
        wipe_cjson_delete(j);
        return 0;
    }
    if (EV("message_stop") || EV("error")) {
        proxy_conn_stream_write_final(r, raw, raw_len);
        r->stream_state = PROXY_STREAM_CLOSED;
        return 0;
    }
    proxy_conn_stream_write(r, raw, raw_len);
    return 0;
}

#undef EV

static void restore_answer(struct proxy_req *r, cJSON *j)
{
    cJSON *c;

    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(j, "content"))
        proxy_wire_restore_field(r, c, "text", 0, 1);
}

/* ---- answers written for an Anthropic client ---- */

/* Anthropic's input_tokens excludes cache reads */
static long uncached(const struct proxy_usage *u)
{
    return u->input > u->cached ? u->input - u->cached : 0;
}

static void stream_open(struct proxy_req *r)
{
    cJSON *j, *m, *u, *cb;

    if (r->stream_state != PROXY_STREAM_NONE)
        return;
    r->stream_state = PROXY_STREAM_OPEN;
    j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "type", "message_start");
    m = cJSON_AddObjectToObject(j, "message");
    cJSON_AddStringToObject(m, "id", r->tr_id[0] ? r->tr_id : r->id);
    cJSON_AddStringToObject(m, "type", "message");
    cJSON_AddStringToObject(m, "role", "assistant");
    cJSON_AddArrayToObject(m, "content");
    cJSON_AddStringToObject(m, "model", r->tr_model[0] ? r->tr_model : r->d.model->name);
    cJSON_AddNullToObject(m, "stop_reason");
    cJSON_AddNullToObject(m, "stop_sequence");
    u = cJSON_AddObjectToObject(m, "usage");
    cJSON_AddNumberToObject(u, "input_tokens", (double)r->usage.input);
    cJSON_AddNumberToObject(u, "output_tokens", 0);
    proxy_wire_write_event(r, "message_start", j);
    cJSON_Delete(j);
    j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "type", "content_block_start");
    cJSON_AddNumberToObject(j, "index", 0);
    cb = cJSON_AddObjectToObject(j, "content_block");
    cJSON_AddStringToObject(cb, "type", "text");
    cJSON_AddStringToObject(cb, "text", "");
    proxy_wire_write_event(r, "content_block_start", j);
    cJSON_Delete(j);
    PROXY_WRITE_LIT(r, "event: ping\ndata: {\"type\": \"ping\"}\n\n");
}

static void stream_text(struct proxy_req *r, const char *text)
{
    cJSON *j, *d;

    stream_open(r);
    if (!text || !*text)
        return;
    j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "type", "content_block_delta");
    cJSON_AddNumberToObject(j, "index", 0);
    d = cJSON_AddObjectToObject(j, "delta");
    cJSON_AddStringToObject(d, "type", "text_delta");
    cJSON_AddStringToObject(d, "text", text);
    proxy_wire_write_event(r, "content_block_delta", j);
    wipe_cjson_delete(j);
}

static void stream_close(struct proxy_req *r)
{
    cJSON *j, *d, *u;
    char *rest;

    if (r->stream_state >= PROXY_STREAM_CLOSED)
        return;
    stream_open(r);
    r->stream_state = PROXY_STREAM_CLOSED;
    rest = proxy_wire_restore(r, 0, NULL, 1);
    stream_text(r, rest);
    wipe_str_free(rest);
    PROXY_WRITE_LIT(r, "event: content_block_stop\ndata: "
                       "{\"type\":\"content_block_stop\",\"index\":0}\n\n");
    j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "type", "message_delta");
    d = cJSON_AddObjectToObject(j, "delta");
    cJSON_AddStringToObject(d, "stop_reason", stop_to(r->tr_stop));
    cJSON_AddNullToObject(d, "stop_sequence");
    u = cJSON_AddObjectToObject(j, "usage");
    /* an OpenAI provider reports prompt tokens only at the end */
    cJSON_AddNumberToObject(u, "input_tokens", (double)uncached(&r->usage));
    cJSON_AddNumberToObject(u, "output_tokens", (double)r->usage.output);
    proxy_wire_write_event(r, "message_delta", j);
    cJSON_Delete(j);
    PROXY_WRITE_FINAL(r, "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
}

static char *write_answer(struct proxy_req *r, const struct proxy_answer *a)
{
    cJSON *o = cJSON_CreateObject(), *content, *b, *u;
    char *s;

    cJSON_AddStringToObject(o, "id", a->id[0] ? a->id : r->id);
    cJSON_AddStringToObject(o, "type", "message");
    cJSON_AddStringToObject(o, "role", "assistant");
    cJSON_AddStringToObject(o, "model", a->model[0] ? a->model : r->d.model->name);
    content = cJSON_AddArrayToObject(o, "content");
    b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "type", "text");
    cJSON_AddStringToObject(b, "text", a->text ? a->text : "");
    cJSON_AddItemToArray(content, b);
    cJSON_AddStringToObject(o, "stop_reason", stop_to(a->stop));
    cJSON_AddNullToObject(o, "stop_sequence");
    u = cJSON_AddObjectToObject(o, "usage");
    cJSON_AddNumberToObject(u, "input_tokens", (double)uncached(&r->usage));
    cJSON_AddNumberToObject(u, "output_tokens", (double)r->usage.output);
    if (r->usage.cached)
        cJSON_AddNumberToObject(u, "cache_read_input_tokens", (double)r->usage.cached);
    s = cJSON_PrintUnformatted(o);
    wipe_cjson_delete(o);
    return s;
}

const struct proxy_wire proxy_wire_anthropic_messages = {
    .name = "anthropic-messages",
    .id_prefix = "msg_",
    .read_request = read_request,
    .build_request = build_request,
    .error_type = error_type,
    .error_body = error_body,
    .error_event = error_event,
    .read_usage = read_usage,
    .read_answer = read_answer,
    .read_event = read_event,
    .relay_event = relay_event,
    .restore_answer = restore_answer,
    .stream_open = stream_open,
    .stream_text = stream_text,
    .stream_close = stream_close,
    .write_answer = write_answer,
};
