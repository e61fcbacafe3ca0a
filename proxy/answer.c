/* answer.c -- the answer to the client: upstream relay and built-in framing.
 *
 * Upstream answers are relayed event by event as they arrive (SSE is never
 * buffered whole). On the way: usage is read from the provider's own fields,
 * redaction placeholders are restored (per choice / content block, across event
 * boundaries), and the usage chunk the gateway asked for on the client's behalf is
 * removed so the client sees what it asked for. Built-in engine output is framed
 * in the caller's API, streaming or not. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>
#include <time.h>

#include "common/log.h"
#include "proxy/outbound.h"
#include "common/wipe.h"
#include "proxy/proxy_int.h"

double proxy_cost(const struct config_model *m, const struct proxy_usage *u)
{
    double cached_price =
        m->cached_input_per_mtok >= 0 ? m->cached_input_per_mtok : m->input_per_mtok;
    long uncached = u->input - u->cached;

    if (uncached < 0)
        uncached = 0;
    return ((double)uncached * m->input_per_mtok + (double)u->cached * cached_price +
            (double)u->output * m->output_per_mtok) /
           1e6;
}

static long num(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

    return cJSON_IsNumber(v) ? (long)v->valuedouble : 0;
}

/* OpenAI `usage` object */
static void usage_openai(struct proxy_req *r, const cJSON *u)
{
    if (!cJSON_IsObject(u))
        return;
    r->usage.seen = 1;
    r->usage.input = num(u, "prompt_tokens");
    r->usage.output = num(u, "completion_tokens");
    r->usage.cached =
        num(cJSON_GetObjectItemCaseSensitive(u, "prompt_tokens_details"), "cached_tokens");
}

/* Anthropic `usage` object; message_delta carries cumulative output_tokens */
static void usage_anthropic(struct proxy_req *r, const cJSON *u)
{
    long in, cr, cw;

    if (!cJSON_IsObject(u))
        return;
    r->usage.seen = 1;
    if (cJSON_GetObjectItemCaseSensitive(u, "input_tokens")) {
        in = num(u, "input_tokens");
        cr = num(u, "cache_read_input_tokens");
        cw = num(u, "cache_creation_input_tokens");
        if (in || cr || cw) {
            r->usage.input = in + cr + cw;
            r->usage.cached = cr;
            r->usage.cache_write = cw;
        }
    }
    if (cJSON_GetObjectItemCaseSensitive(u, "output_tokens"))
        r->usage.output = num(u, "output_tokens");
}

void proxy_write_event_json(struct proxy_req *r, const char *event, const cJSON *obj)
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
    if (b)
        evbuffer_free(b);
    free(s);
}

/* restore one text field in place; `flush` also emits what is held back */
static void restore_field(struct proxy_req *r, cJSON *holder, const char *field, int slot,
                          int flush)
{
    cJSON *t = cJSON_GetObjectItemCaseSensitive(holder, field);
    char *out = NULL;
    size_t out_len = 0;

    if (cJSON_IsString(t))
        policy_restore_feed(r->d.policy.restorer, slot, t->valuestring, strlen(t->valuestring), &out,
                            &out_len);
    if (flush)
        policy_restore_flush(r->d.policy.restorer, slot, &out, &out_len);
    if (cJSON_IsString(t) || out_len) {
        char *z = malloc(out_len + 1);
        if (z) {
            if (out_len)
                memcpy(z, out, out_len);
            z[out_len] = '\0';
            if (cJSON_IsString(t))
                cJSON_SetValuestring(t, z);
            else
                cJSON_AddStringToObject(holder, field, z);
            free(z);
        }
    }
    if (out)
        sodium_memzero(out, out_len); /* restored originals */
    free(out);
}

static int restoring(const struct proxy_req *r)
{
    return r->d.has_policy && r->d.policy.restorer;
}

static void remove_substr(char *s, size_t *len, const char *needle)
{
    size_t nl = strlen(needle);
    char *p;

    while ((p = memmem(s, *len, needle, nl)) != NULL) {
        memmove(p, p + nl, *len - (size_t)(p - s) - nl);
        *len -= nl;
    }
}

/* OpenAI SSE event from an OpenAI provider */
static int relay_openai_event(struct proxy_req *r, const char *raw, size_t raw_len,
                              const char *data, size_t dlen)
{
    cJSON *j;
    int strip_usage = r->d.outbound_flags & PROXY_OUTBOUND_ADDED_USAGE;
    int has_usage = dlen > 0 && memmem(data, dlen, "\"usage\":{", 9) != NULL;

    if (dlen == 6 && memcmp(data, "[DONE]", 6) == 0) {
        proxy_conn_stream_write_final(r, raw, raw_len);
        return 0;
    }
    if (!has_usage && !restoring(r)) {
        if (strip_usage && memmem(raw, raw_len, ",\"usage\":null", 13)) {
            char *copy = malloc(raw_len);
            size_t n = raw_len;
            if (!copy)
                return -1;
            memcpy(copy, raw, raw_len);
            remove_substr(copy, &n, ",\"usage\":null");
            proxy_conn_stream_write(r, copy, n);
            free(copy);
        } else {
            proxy_conn_stream_write(r, raw, raw_len);
        }
        return 0;
    }
    j = cJSON_ParseWithLength(data, dlen);
    if (!j) {
        /* not JSON: relay as is; the client's SDK will report it */
        proxy_conn_stream_write(r, raw, raw_len);
        return 0;
    }
    if (has_usage)
        usage_openai(r, cJSON_GetObjectItemCaseSensitive(j, "usage"));
    if (strip_usage) {
        const cJSON *ch = cJSON_GetObjectItemCaseSensitive(j, "choices");
        if (has_usage && cJSON_IsArray(ch) && cJSON_GetArraySize(ch) == 0) {
            cJSON_Delete(j);
            return 0; /* the chunk the client did not ask for */
        }
        cJSON_DeleteItemFromObjectCaseSensitive(j, "usage");
    }
    if (restoring(r)) {
        cJSON *ch = cJSON_GetObjectItemCaseSensitive(j, "choices"), *c;
        cJSON_ArrayForEach(c, ch)
        {
            cJSON *delta = cJSON_GetObjectItemCaseSensitive(c, "delta");
            const cJSON *fr = cJSON_GetObjectItemCaseSensitive(c, "finish_reason");
            int slot = (int)num(c, "index");
            if (cJSON_IsObject(delta))
                restore_field(r, delta, "content", slot, cJSON_IsString(fr));
        }
        proxy_write_event_json(r, NULL, j);
    } else if (strip_usage) {
        proxy_write_event_json(r, NULL, j);
    } else {
        proxy_conn_stream_write(r, raw, raw_len);
    }
    cJSON_Delete(j);
    return 0;
}

/* Anthropic SSE event from an Anthropic provider */
static int relay_anthropic_event(struct proxy_req *r, const char *raw, size_t raw_len,
                                 const char *event, size_t elen, const char *data, size_t dlen)
{
    cJSON *j;

#define EV(name) (elen == strlen(name) && memcmp(event, name, elen) == 0)
    if (EV("message_start") || EV("message_delta")) {
        j = cJSON_ParseWithLength(data, dlen);
        if (j) {
            const cJSON *msg = cJSON_GetObjectItemCaseSensitive(j, "message");
            usage_anthropic(r, cJSON_GetObjectItemCaseSensitive(msg ? msg : j, "usage"));
            cJSON_Delete(j);
        }
        proxy_conn_stream_write(r, raw, raw_len);
        return 0;
    }
    if (restoring(r) && (EV("content_block_delta") || EV("content_block_stop"))) {
        j = cJSON_ParseWithLength(data, dlen);
        if (!j) {
            proxy_conn_stream_write(r, raw, raw_len);
            return 0;
        }
        if (EV("content_block_delta")) {
            cJSON *delta = cJSON_GetObjectItemCaseSensitive(j, "delta");
            restore_field(r, delta, "text", (int)num(j, "index"), 0);
            proxy_write_event_json(r, "content_block_delta", j);
        } else {
            char *out = NULL;
            size_t out_len = 0;
            int idx = (int)num(j, "index");
            policy_restore_flush(r->d.policy.restorer, idx, &out, &out_len);
            if (out_len) {
                cJSON *d = cJSON_CreateObject(), *dd;
                char *z = malloc(out_len + 1);
                if (z) {
                    memcpy(z, out, out_len);
                    z[out_len] = '\0';
                    cJSON_AddStringToObject(d, "type", "content_block_delta");
                    cJSON_AddNumberToObject(d, "index", idx);
                    dd = cJSON_AddObjectToObject(d, "delta");
                    cJSON_AddStringToObject(dd, "type", "text_delta");
                    cJSON_AddStringToObject(dd, "text", z);
                    proxy_write_event_json(r, "content_block_delta", d);
                    free(z);
                }
                cJSON_Delete(d);
            }
            if (out)
                sodium_memzero(out, out_len);
            free(out);
            proxy_conn_stream_write(r, raw, raw_len);
        }
        cJSON_Delete(j);
        return 0;
    }
    if (EV("message_stop") || EV("error")) {
        proxy_conn_stream_write_final(r, raw, raw_len);
        return 0;
    }
#undef EV
    proxy_conn_stream_write(r, raw, raw_len);
    return 0;
}

static int on_sse_event(void *ud, const char *raw, size_t raw_len, const char *event, size_t elen,
                        const char *data, size_t dlen)
{
    struct proxy_req *r = ud;

    if (proxy_translating(r))
        return proxy_translate_event(r, event, elen, data, dlen);
    if (r->d.prov->type == CONFIG_PROVIDER_ANTHROPIC)
        return relay_anthropic_event(r, raw, raw_len, event, elen, data, dlen);
    return relay_openai_event(r, raw, raw_len, data, dlen);
}

static int streaming_relay(const struct proxy_req *r)
{
    return r->d.stream && r->up_status == 200 && r->state >= REQ_ANSWERING;
}

void proxy_answer_upstream_head(struct proxy_req *r, int status, const char *content_type)
{
    r->up_status = status;
    if (status == 200 && r->d.stream && content_type && strstr(content_type, "text/event-stream"))
        proxy_conn_stream_start(r, 200, "text/event-stream");
}

void proxy_answer_upstream_body(struct proxy_req *r, const char *data, size_t len)
{
    if (r->state >= REQ_LOGGED)
        return; /* its record has the bytes it had; they must not change under the writer */
    if (evbuffer_get_length(r->up_bytes) + len > PROXY_MAX_UPSTREAM_BODY) {
        proxy_upstream_abort(r);
        proxy_answer_upstream_failed(r, 0, "the upstream answer is larger than the limit");
        return;
    }
    /* kept whole for the audit, and as the body of a non-streamed answer: a copy that
     * cannot be kept ends the request (503) rather than leave the record short */
    if ((r->record || !streaming_relay(r)) && evbuffer_add(r->up_bytes, data, len) < 0) {
        proxy_upstream_abort(r);
        snprintf(r->error, sizeof(r->error),
                 "the audit's copy of the provider's answer could not be kept (out of memory)");
        proxy_req_error(r, 503, NULL,
                        "The gateway could not keep the audit copy of the provider's answer, so "
                        "it was not relayed.");
        return;
    }
    r->px->metrics.upstream_bytes_in += len;
    if (streaming_relay(r) && !r->stream_failed) {
        if (proxy_sse_feed(&r->sse, data, len, on_sse_event, r) < 0) {
            proxy_upstream_abort(r);
            proxy_answer_upstream_failed(r, 0, "the upstream sent a malformed event stream");
        } else if (r->copy_lost) {
            proxy_upstream_abort(r);
            proxy_conn_stream_end(r);
            proxy_req_finish(r);
        }
    }
}

/* map a provider error status to ours */
static int map_status(int s)
{
    if (s == 429 || s == 400 || s == 404 || s == 413)
        return s;
    return 502;
}

void proxy_answer_upstream_done(struct proxy_req *r)
{
    size_t n = evbuffer_get_length(r->up_bytes);
    const char *body = n ? (const char *)evbuffer_pullup(r->up_bytes, -1) : "";
    cJSON *j;

    if (r->state >= REQ_ANSWERED) {
        proxy_req_finish(r);
        return;
    }
    if (streaming_relay(r)) {
        /* an event without its blank line at EOF is incomplete: drop it */
        if (proxy_translating(r))
            proxy_stream_close(r);
        proxy_conn_stream_end(r);
        proxy_req_finish(r);
        return;
    }
    if (r->up_status != 200) {
        j = cJSON_ParseWithLength(body, n);
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(e, "message");
        char msg[300];
        int st = r->up_status;
        snprintf(msg, sizeof(msg), "%s", cJSON_IsString(m) ? m->valuestring : "no message");
        cJSON_Delete(j);
        if (st == 401 || st == 403)
            proxy_req_error(r, 502, NULL,
                            "The provider '%s' rejected the gateway's credentials (%d): %s",
                            r->d.prov->name, st, msg);
        else
            proxy_req_error(r, map_status(st), NULL, "The provider '%s' answered %d: %s",
                            r->d.prov->name, st, msg);
        return;
    }
    j = cJSON_ParseWithLength(body, n);
    if (!j) {
        proxy_req_error(r, 502, NULL, "The provider '%s' sent an answer that is not JSON.",
                        r->d.prov->name);
        return;
    }
    if (r->d.prov->type == CONFIG_PROVIDER_ANTHROPIC)
        usage_anthropic(r, cJSON_GetObjectItemCaseSensitive(j, "usage"));
    else
        usage_openai(r, cJSON_GetObjectItemCaseSensitive(j, "usage"));
    if (proxy_translating(r)) {
        char *s = proxy_translate_response(r, j);
        proxy_conn_reply(r, 200, "application/json", s ? s : "", s ? strlen(s) : 0);
        free(s);
    } else if (restoring(r)) {
        cJSON *c;
        char *s;
        if (r->d.prov->type == CONFIG_PROVIDER_ANTHROPIC) {
            cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(j, "content"))
                restore_field(r, c, "text", 0, 1);
        } else {
            cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(j, "choices"))
                restore_field(r, cJSON_GetObjectItemCaseSensitive(c, "message"), "content",
                              (int)num(c, "index"), 1);
        }
        s = cJSON_PrintUnformatted(j);
        proxy_conn_reply(r, 200, "application/json", s ? s : "", s ? strlen(s) : 0);
        free(s);
    } else {
        proxy_conn_reply(r, 200, "application/json", body, n);
    }
    cJSON_Delete(j);
    proxy_req_finish(r);
}

void proxy_answer_upstream_failed(struct proxy_req *r, int timeout, const char *why)
{
    if (r->state >= REQ_LOGGED)
        return;
    if (r->state >= REQ_ANSWERING) {
        char msg[300];
        snprintf(msg, sizeof(msg), "The provider's stream broke off: %s.", why);
        snprintf(r->error, sizeof(r->error), "%s", msg);
        proxy_req_stream_error(r, msg);
        proxy_req_finish(r);
        return;
    }
    if (timeout)
        proxy_req_error(r, 504, NULL, "The provider '%s' did not answer in time (%s).",
                        r->d.prov ? r->d.prov->name : "?", why);
    else
        proxy_req_error(r, 502, NULL, "The provider '%s' failed: %s.",
                        r->d.prov ? r->d.prov->name : "?", why);
}

/* ---- built-in engine ---- */

void proxy_answer_engine_start(struct proxy_req *r)
{
    if (!r->d.stream)
        return;
    snprintf(r->tr_id, sizeof(r->tr_id), "%s%s",
             r->api == PROXY_API_ANTHROPIC ? "msg_" : "chatcmpl-", r->id);
    snprintf(r->tr_model, sizeof(r->tr_model), "%s", r->d.model->name);
    proxy_conn_stream_start(r, 200, "text/event-stream");
    proxy_stream_open(r);
}

int proxy_answer_engine_text(struct proxy_req *r, const char *text, size_t len)
{
    if (r->state >= REQ_LOGGED)
        return 0;
    if (!r->d.stream) {
        char *p = realloc(r->engine_text, r->engine_text_len + len + 1);
        if (!p)
            return -1;
        memcpy(p + r->engine_text_len, text, len);
        r->engine_text_len += len;
        p[r->engine_text_len] = '\0';
        r->engine_text = p;
        return 0;
    }
    {
        char *z = strndup(text, len);
        if (!z)
            return -1;
        proxy_stream_text(r, z);
        wipe_free(z, len);
    }
    return r->copy_lost ? -1 : 0;
}

void proxy_answer_engine_done(struct proxy_req *r, const struct engine_result *res)
{
    const char *fin = res->finish_reason ? res->finish_reason : "stop";
    cJSON *j;
    char *s;
    char id[64];

    if (r->state >= REQ_LOGGED)
        return;
    r->usage.seen = 1;
    r->usage.input = res->prompt_tokens;
    r->usage.output = res->completion_tokens;
    if (res->status != ENGINE_OK) {
        if (res->status == ENGINE_ECANCELED && !r->conn) {
            proxy_req_abandoned(r);
            proxy_req_finish(r);
            return;
        }
        if (res->status == ENGINE_ECONTEXT)
            proxy_req_error(r, 400, NULL, "%s",
                            res->error[0] ? res->error
                                          : "The prompt is longer than the local model's context.");
        else
            proxy_req_error(r, 500, NULL, "The local model failed: %s",
                            res->error[0] ? res->error : "unknown error");
        return;
    }
    if (r->d.stream) {
        if (r->api == PROXY_API_ANTHROPIC)
            snprintf(r->tr_stop, sizeof(r->tr_stop), "%s",
                     strcmp(fin, "length") == 0 ? "max_tokens" : "end_turn");
        else
            snprintf(r->tr_stop, sizeof(r->tr_stop), "%s", fin);
        proxy_stream_close(r);
        proxy_conn_stream_end(r);
        proxy_req_finish(r);
        return;
    }
    j = cJSON_CreateObject();
    if (r->api == PROXY_API_ANTHROPIC) {
        cJSON *c, *b, *u;
        snprintf(id, sizeof(id), "msg_%s", r->id);
        cJSON_AddStringToObject(j, "id", id);
        cJSON_AddStringToObject(j, "type", "message");
        cJSON_AddStringToObject(j, "role", "assistant");
        cJSON_AddStringToObject(j, "model", r->d.model->name);
        c = cJSON_AddArrayToObject(j, "content");
        b = cJSON_CreateObject();
        cJSON_AddStringToObject(b, "type", "text");
        cJSON_AddStringToObject(b, "text", r->engine_text ? r->engine_text : "");
        cJSON_AddItemToArray(c, b);
        cJSON_AddStringToObject(j, "stop_reason",
                                strcmp(fin, "length") == 0 ? "max_tokens" : "end_turn");
        cJSON_AddNullToObject(j, "stop_sequence");
        u = cJSON_AddObjectToObject(j, "usage");
        cJSON_AddNumberToObject(u, "input_tokens", res->prompt_tokens);
        cJSON_AddNumberToObject(u, "output_tokens", res->completion_tokens);
    } else {
        cJSON *chs, *c, *m, *u;
        snprintf(id, sizeof(id), "chatcmpl-%s", r->id);
        cJSON_AddStringToObject(j, "id", id);
        cJSON_AddStringToObject(j, "object", "chat.completion");
        cJSON_AddNumberToObject(j, "created", (double)time(NULL));
        cJSON_AddStringToObject(j, "model", r->d.model->name);
        chs = cJSON_AddArrayToObject(j, "choices");
        c = cJSON_CreateObject();
        cJSON_AddNumberToObject(c, "index", 0);
        m = cJSON_AddObjectToObject(c, "message");
        cJSON_AddStringToObject(m, "role", "assistant");
        cJSON_AddStringToObject(m, "content", r->engine_text ? r->engine_text : "");
        cJSON_AddStringToObject(c, "finish_reason", fin);
        cJSON_AddItemToArray(chs, c);
        u = cJSON_AddObjectToObject(j, "usage");
        cJSON_AddNumberToObject(u, "prompt_tokens", res->prompt_tokens);
        cJSON_AddNumberToObject(u, "completion_tokens", res->completion_tokens);
        cJSON_AddNumberToObject(u, "total_tokens", res->prompt_tokens + res->completion_tokens);
    }
    s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    proxy_conn_reply(r, 200, "application/json", s ? s : "", s ? strlen(s) : 0);
    free(s);
    proxy_req_finish(r);
}
