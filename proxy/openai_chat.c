/* openai_chat.c -- the OpenAI Chat Completions wire format (see wire.h).
 *
 * Requests: `messages` with roles system/developer/user/assistant (text content only for
 * the canonical chat), max_completion_tokens or max_tokens, stop as a string or array.
 * Answers: `chat.completion` objects and `chat.completion.chunk` SSE events ending in
 * `data: [DONE]`; usage in `usage` (prompt_tokens_details.cached_tokens for cache hits),
 * in a final chunk with no choices when stream_options.include_usage is set. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/json.h"
#include "common/wipe.h"
#include "proxy/outbound.h"
#include "proxy/proxy_int.h"
#include "proxy/wire.h"

/* ---- requests ---- */

static int read_request(const cJSON *in, struct proxy_chat *c, char *err, size_t errlen)
{
    const cJSON *msg, *v;

    cJSON_ArrayForEach(msg, cJSON_GetObjectItemCaseSensitive(in, "messages"))
    {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(msg, "role");
        const char *rs = cJSON_IsString(role) ? role->valuestring : "user";
        char *text;

        if (cJSON_GetObjectItemCaseSensitive(msg, "tool_calls") || strcmp(rs, "tool") == 0 ||
            strcmp(rs, "function") == 0 ||
            proxy_wire_content_text(cJSON_GetObjectItemCaseSensitive(msg, "content"), &text) < 0) {
            snprintf(err, errlen,
                     "Only text messages can be carried out of the OpenAI format; this request "
                     "has tool calls or non-text content.");
            return -1;
        }
        if (proxy_chat_add(c,
                           strcmp(rs, "system") == 0 || strcmp(rs, "developer") == 0 ? "system"
                           : strcmp(rs, "assistant") == 0                            ? "assistant"
                                                                                     : "user",
                           text) < 0) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    }
    v = cJSON_GetObjectItemCaseSensitive(in, "max_completion_tokens");
    if (!v || cJSON_IsNull(v))
        v = cJSON_GetObjectItemCaseSensitive(in, "max_tokens");
    c->max_tokens = proxy_wire_limit(v);
    if (cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(in, "temperature")))
        c->temperature = v->valuedouble;
    if (cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(in, "top_p")))
        c->top_p = v->valuedouble;
    if (cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(in, "seed")))
        c->seed = v->valuedouble;
    v = cJSON_GetObjectItemCaseSensitive(in, "stop");
    if (cJSON_IsString(v)) {
        c->stop[c->n_stop++] = v->valuestring;
    } else if (cJSON_IsArray(v)) {
        const cJSON *s;
        cJSON_ArrayForEach(s, v) if (cJSON_IsString(s) && c->n_stop < 4) c->stop[c->n_stop++] =
            s->valuestring;
    }
    c->stream = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(in, "stream"));
    return 0;
}

static int build_request(const struct proxy_chat *c, const struct config_model *m, cJSON *o,
                         int *flags, char *err, size_t errlen)
{
    cJSON *msgs;

    (void)err;
    (void)errlen;
    cJSON_AddStringToObject(o, "model", m->upstream_model ? m->upstream_model : m->name);
    msgs = cJSON_AddArrayToObject(o, "messages");
    for (size_t i = 0; msgs && i < c->n; i++) {
        cJSON *om = cJSON_CreateObject();
        cJSON_AddStringToObject(om, "role", c->msgs[i].role);
        cJSON_AddStringToObject(om, "content", c->msgs[i].text);
        cJSON_AddItemToArray(msgs, om);
    }
    if (c->max_tokens >= 0)
        cJSON_AddNumberToObject(o, "max_tokens", c->max_tokens);
    if (c->temperature >= 0)
        cJSON_AddNumberToObject(o, "temperature", c->temperature);
    if (c->top_p >= 0)
        cJSON_AddNumberToObject(o, "top_p", c->top_p);
    if (c->n_stop) {
        cJSON *a = cJSON_AddArrayToObject(o, "stop");
        for (size_t i = 0; a && i < c->n_stop; i++)
            cJSON_AddItemToArray(a, cJSON_CreateString(c->stop[i]));
    }
    if (c->stream) {
        cJSON *so;
        cJSON_AddTrueToObject(o, "stream");
        so = cJSON_AddObjectToObject(o, "stream_options");
        cJSON_AddTrueToObject(so, "include_usage");
        *flags |= PROXY_OUTBOUND_ADDED_USAGE; /* priced, not relayed */
    }
    return 0;
}

/* ---- errors ---- */

const char *proxy_openai_error_type(int status)
{
    switch (status) {
    case 400:
    case 404:
    case 413:
        return "invalid_request_error";
    case 401:
        return "authentication_error";
    case 403:
        return "permission_denied";
    case 429:
        return "rate_limit_exceeded";
    case 504:
        return "timeout";
    default:
        return "server_error";
    }
}

char *proxy_openai_error_body(int status, const char *type, const char *message, size_t *len)
{
    cJSON *root = cJSON_CreateObject(), *e;
    char code[32];

    snprintf(code, sizeof(code), "%d", status);
    e = cJSON_AddObjectToObject(root, "error");
    cJSON_AddStringToObject(e, "message", message);
    cJSON_AddStringToObject(e, "type", type);
    cJSON_AddStringToObject(e, "code", code);
    return proxy_wire_print(root, len);
}

char *proxy_openai_error_event(const char *body, size_t *len)
{
    return proxy_wire_sse(NULL, body, len);
}

/* ---- answers from an OpenAI provider ---- */

static void read_usage(struct proxy_usage *u, const cJSON *o)
{
    if (!cJSON_IsObject(o))
        return;
    u->seen = 1;
    u->input = proxy_wire_num(o, "prompt_tokens");
    u->output = proxy_wire_num(o, "completion_tokens");
    u->cached = proxy_wire_num(cJSON_GetObjectItemCaseSensitive(o, "prompt_tokens_details"),
                               "cached_tokens");
}

/* a whole answer: the first choice's message.content */
static int read_answer(const cJSON *j, struct proxy_answer *a, struct proxy_usage *u)
{
    read_usage(u, cJSON_GetObjectItemCaseSensitive(j, "usage"));
    return proxy_openai_read_answer(j, "message", "content", a);
}

static void read_event(struct proxy_req *r, const char *event, size_t elen, const char *data,
                       size_t dlen, const cJSON *j, struct proxy_piece *p)
{
    const cJSON *c;

    (void)event;
    (void)elen;
    memset(p, 0, sizeof(*p));
    if (dlen == 6 && memcmp(data, "[DONE]", 6) == 0) {
        p->end = 1;
        return;
    }
    if (!j)
        return;
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(j, "id");
    const cJSON *mo = cJSON_GetObjectItemCaseSensitive(j, "model");
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
    if (e) {
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(e, "message");
        p->error = cJSON_IsString(m) ? m->valuestring : "provider error";
        return;
    }
    if (!r->tr_id[0] && cJSON_IsString(id))
        snprintf(r->tr_id, sizeof(r->tr_id), "%s", id->valuestring);
    if (!r->tr_model[0] && cJSON_IsString(mo))
        snprintf(r->tr_model, sizeof(r->tr_model), "%s", mo->valuestring);
    read_usage(&r->usage, cJSON_GetObjectItemCaseSensitive(j, "usage"));
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(j, "choices"))
    {
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(c, "delta");
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(d, "content");
        const cJSON *fr = cJSON_GetObjectItemCaseSensitive(c, "finish_reason");
        p->open = 1;
        if (cJSON_IsString(t))
            p->text = t->valuestring;
        if (cJSON_IsString(fr)) {
            p->has_stop = 1;
            p->stop = proxy_openai_stop_from(fr->valuestring);
        }
    }
}

/* One chunk of an OpenAI provider's stream, for an OpenAI client. Every chunk is read
 * (the strict parse: no allocations), so usage is found however it is spelt or spaced and
 * the stream is priced; what the client did not ask for is taken out (the usage chunk the
 * gateway asked for, and `usage` members in other chunks); placeholders are restored.
 * A chunk that needs none of that is relayed byte for byte. */
int proxy_openai_relay(struct proxy_req *r, const char *raw, size_t raw_len, const char *data,
                       size_t dlen, const char *holder, const char *field)
{
    int strip_usage = r->d.outbound_flags & PROXY_OUTBOUND_ADDED_USAGE;
    struct json_doc doc = {0};
    char err[128];
    uint32_t uv = JSON_NONE, ch = JSON_NONE;
    cJSON *j = NULL;
    int rc = 0;

    if (dlen == 6 && memcmp(data, "[DONE]", 6) == 0) {
        proxy_conn_stream_write_final(r, raw, raw_len);
        r->stream_state = PROXY_STREAM_CLOSED;
        return 0;
    }
    if (json_parse(&doc, data, dlen, err, sizeof(err)) == 0 &&
        json_type(&doc, doc.root) == JSON_OBJ) {
        uv = json_get(&doc, doc.root, "usage");
        ch = json_get(&doc, doc.root, "choices");
        if (json_type(&doc, uv) == JSON_OBJ) {
            cJSON *u = json_to_cjson(&doc, uv);
            read_usage(&r->usage, u);
            cJSON_Delete(u);
        }
        if (strip_usage && json_type(&doc, uv) == JSON_OBJ && json_type(&doc, ch) == JSON_ARR &&
            doc.nodes[ch].child == JSON_NONE)
            goto done; /* the usage chunk the client did not ask for */
        if (!proxy_wire_restoring(r) && !(strip_usage && uv != JSON_NONE)) {
            proxy_conn_stream_write(r, raw, raw_len);
            goto done;
        }
        j = json_to_cjson(&doc, doc.root);
    } else {
        /* not strict JSON: cJSON's reading decides; not JSON at all: relayed as is, for
         * the client's SDK to report */
        j = cJSON_ParseWithLength(data, dlen);
        if (!j) {
            proxy_conn_stream_write(r, raw, raw_len);
            goto done;
        }
        read_usage(&r->usage, cJSON_GetObjectItemCaseSensitive(j, "usage"));
    }
    if (!j) {
        rc = -1;
        goto done;
    }
    if (strip_usage)
        cJSON_DeleteItemFromObjectCaseSensitive(j, "usage");
    if (proxy_wire_restoring(r)) {
        cJSON *c;
        cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(j, "choices"))
        {
            cJSON *h = holder ? cJSON_GetObjectItemCaseSensitive(c, holder) : c;
            const cJSON *fr = cJSON_GetObjectItemCaseSensitive(c, "finish_reason");
            if (cJSON_IsObject(h))
                proxy_wire_restore_field(r, h, field, (int)proxy_wire_num(c, "index"),
                                         cJSON_IsString(fr));
        }
    }
    proxy_wire_write_event(r, NULL, j);
done:
    wipe_cjson_delete(j);
    json_doc_deinit(&doc);
    return rc;
}

static int relay_event(struct proxy_req *r, const char *raw, size_t raw_len, const char *event,
                       size_t elen, const char *data, size_t dlen)
{
    (void)event;
    (void)elen;
    return proxy_openai_relay(r, raw, raw_len, data, dlen, "delta", "content");
}

static void restore_answer(struct proxy_req *r, cJSON *j)
{
    cJSON *c;

    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(j, "choices"))
        proxy_wire_restore_field(r, cJSON_GetObjectItemCaseSensitive(c, "message"), "content",
                                 (int)proxy_wire_num(c, "index"), 1);
}

/* ---- answers written for an OpenAI client ---- */

/* one chat.completion.chunk: a delta (role/text/finish, each may be NULL), or with
 * `usage` the final usage chunk (no choices) */
static void chunk(struct proxy_req *r, const char *role, const char *text, const char *finish,
                  int usage_only)
{
    cJSON *j = cJSON_CreateObject(), *chs, *c, *d;

    cJSON_AddStringToObject(j, "id", r->tr_id[0] ? r->tr_id : r->id);
    cJSON_AddStringToObject(j, "object", "chat.completion.chunk");
    cJSON_AddNumberToObject(j, "created", (double)time(NULL));
    cJSON_AddStringToObject(j, "model", r->tr_model[0] ? r->tr_model : r->d.model->name);
    chs = cJSON_AddArrayToObject(j, "choices");
    if (usage_only) {
        cJSON *u = cJSON_AddObjectToObject(j, "usage");
        cJSON_AddNumberToObject(u, "prompt_tokens", (double)r->usage.input);
        cJSON_AddNumberToObject(u, "completion_tokens", (double)r->usage.output);
        cJSON_AddNumberToObject(u, "total_tokens", (double)(r->usage.input + r->usage.output));
    } else {
        c = cJSON_CreateObject();
        cJSON_AddNumberToObject(c, "index", 0);
        d = cJSON_AddObjectToObject(c, "delta");
        if (role)
            cJSON_AddStringToObject(d, "role", role);
        if (text)
            cJSON_AddStringToObject(d, "content", text);
        if (finish)
            cJSON_AddStringToObject(c, "finish_reason", finish);
        else
            cJSON_AddNullToObject(c, "finish_reason");
        cJSON_AddItemToArray(chs, c);
    }
    proxy_wire_write_event(r, NULL, j);
    wipe_cjson_delete(j);
}

static void stream_open(struct proxy_req *r)
{
    if (r->stream_state != PROXY_STREAM_NONE)
        return;
    r->stream_state = PROXY_STREAM_OPEN;
    chunk(r, "assistant", "", NULL, 0);
}

static void stream_text(struct proxy_req *r, const char *text)
{
    stream_open(r);
    if (text && *text)
        chunk(r, NULL, text, NULL, 0);
}

static void stream_close(struct proxy_req *r)
{
    char *rest;

    if (r->stream_state >= PROXY_STREAM_CLOSED)
        return;
    stream_open(r);
    r->stream_state = PROXY_STREAM_CLOSED;
    rest = proxy_wire_restore(r, 0, NULL, 1);
    if (rest && *rest)
        chunk(r, NULL, rest, NULL, 0);
    wipe_str_free(rest);
    chunk(r, NULL, NULL, proxy_openai_stop_to(r->tr_stop), 0);
    if (r->d.include_usage_asked)
        chunk(r, NULL, NULL, NULL, 1);
    PROXY_WRITE_FINAL(r, "data: [DONE]\n\n");
}

static char *write_answer(struct proxy_req *r, const struct proxy_answer *a)
{
    cJSON *o = cJSON_CreateObject(), *chs, *c, *m, *u;
    char *s;

    cJSON_AddStringToObject(o, "id", a->id[0] ? a->id : r->id);
    cJSON_AddStringToObject(o, "object", "chat.completion");
    cJSON_AddNumberToObject(o, "created", (double)time(NULL));
    cJSON_AddStringToObject(o, "model", a->model[0] ? a->model : r->d.model->name);
    chs = cJSON_AddArrayToObject(o, "choices");
    c = cJSON_CreateObject();
    cJSON_AddNumberToObject(c, "index", 0);
    m = cJSON_AddObjectToObject(c, "message");
    cJSON_AddStringToObject(m, "role", "assistant");
    cJSON_AddStringToObject(m, "content", a->text ? a->text : "");
    cJSON_AddStringToObject(c, "finish_reason", proxy_openai_stop_to(a->stop));
    cJSON_AddItemToArray(chs, c);
    u = cJSON_AddObjectToObject(o, "usage");
    cJSON_AddNumberToObject(u, "prompt_tokens", (double)r->usage.input);
    cJSON_AddNumberToObject(u, "completion_tokens", (double)r->usage.output);
    cJSON_AddNumberToObject(u, "total_tokens", (double)(r->usage.input + r->usage.output));
    s = cJSON_PrintUnformatted(o);
    wipe_cjson_delete(o);
    return s;
}

const struct proxy_wire proxy_wire_openai_chat = {
    .name = "openai-chat",
    .up_path = "/chat/completions",
    .id_prefix = "chatcmpl-",
    .read_request = read_request,
    .build_request = build_request,
    .error_type = proxy_openai_error_type,
    .error_body = proxy_openai_error_body,
    .error_event = proxy_openai_error_event,
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
