/* answer.c -- the answer to the client: upstream relay and built-in framing.
 *
 * Format-blind: what an API's answers look like is its wire format's (wire.h; r->wire is
 * the client's, r->up_wire the provider's). Upstream answers are relayed event by event
 * as they arrive (SSE is never buffered whole); when the two formats differ, each event
 * is read in the provider's and written in the client's. Built-in engine output is
 * written in the client's format, streaming or not. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>
#include <time.h>

#include "common/json.h"
#include "common/log.h"
#include "common/wipe.h"
#include "proxy/outbound.h"
#include "proxy/proxy_int.h"
#include "proxy/wire.h"

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

/* One provider event for a client of another API: read in the provider's format, written
 * in the client's. */
static int translate_event(struct proxy_req *r, const char *event, size_t elen, const char *data,
                           size_t dlen)
{
    struct proxy_piece p;
    cJSON *j = cJSON_ParseWithLength(data, dlen);

    r->up_wire->read_event(r, event, elen, data, dlen, j, &p);
    if (p.error) {
        char msg[300];
        snprintf(msg, sizeof(msg), "%s", p.error);
        wipe_cjson_delete(j);
        proxy_req_stream_error(r, msg);
        return 0;
    }
    if (p.open)
        r->wire->stream_open(r);
    if (p.text)
        proxy_stream_text(r, p.text);
    if (p.has_stop)
        r->tr_stop = p.stop;
    wipe_cjson_delete(j);
    if (p.end)
        proxy_stream_close(r);
    return 0;
}

size_t proxy_mask_provider_keys(const struct config *cfg, char *buf, size_t len)
{
    size_t masked = 0;

    for (size_t i = 0; i < cfg->n_providers; i++) {
        const char *k = cfg->providers[i].api_key;
        size_t kl = k ? strlen(k) : 0;
        char *p = buf, *end = buf + len;

        if (kl < PROXY_MIN_MASKED_KEY)
            continue; /* (a key that short would mask ordinary text; config refuses none) */
        while ((size_t)(end - p) >= kl && (p = memmem(p, (size_t)(end - p), k, kl)) != NULL) {
            memset(p, '*', kl);
            p += kl;
            masked++;
        }
    }
    return masked;
}

static int on_sse_event(void *ud, const char *raw, size_t raw_len, const char *event, size_t elen,
                        const char *data, size_t dlen)
{
    struct proxy_req *r = ud;

    /* nothing follows the end the client was given (its terminating or error event):
     * events a provider sends after its own end are dropped */
    if (r->stream_state >= PROXY_STREAM_CLOSED)
        return 0;
    /* a provider key echoed in an event never reaches the client (sse.h: raw and data are
     * the parser's own buffers, changed in place at the same length) */
    if (proxy_mask_provider_keys(r->snap->cfg, (char *)raw, raw_len))
        proxy_mask_provider_keys(r->snap->cfg, (char *)data, dlen);
    if (proxy_translating(r))
        return translate_event(r, event, elen, data, dlen);
    return r->up_wire->relay_event(r, raw, raw_len, event, elen, data, dlen);
}

int proxy_translating(const struct proxy_req *r)
{
    return r->up_wire && r->up_wire != r->wire;
}

void proxy_stream_text(struct proxy_req *r, const char *text)
{
    char *s = proxy_wire_restore(r, 0, text, 0);

    r->wire->stream_text(r, s ? s : "");
    wipe_str_free(s);
}

void proxy_stream_close(struct proxy_req *r)
{
    if (r->stream_state >= PROXY_STREAM_CLOSED)
        return;
    r->wire->stream_close(r);
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
    if (streaming_relay(r) && r->stream_state != PROXY_STREAM_FAILED) {
        int rc;
        /* the events of this read leave in one write */
        proxy_conn_stream_cork(r, 1);
        rc = proxy_sse_feed(&r->sse, data, len, on_sse_event, r);
        proxy_conn_stream_cork(r, 0);
        if (rc < 0) {
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

/* relay_whole -- a whole answer relayed as received (same API, nothing to restore): only
 * its usage is read, from the strict parse (common/json.h: no tree of allocations; the
 * one `usage` member becomes a cJSON for the format's reader). 0 when the answer does not
 * parse that way: the caller's cJSON path decides. */
static int relay_whole(struct proxy_req *r, const char *body, size_t n)
{
    struct json_doc doc = {0};
    char err[128];
    cJSON *u = NULL;
    uint32_t uv;

    if (json_parse(&doc, body, n, err, sizeof(err)) < 0 || json_type(&doc, doc.root) != JSON_OBJ) {
        json_doc_deinit(&doc);
        return 0;
    }
    uv = json_get(&doc, doc.root, "usage");
    if (uv != JSON_NONE)
        u = json_to_cjson(&doc, uv);
    r->up_wire->read_usage(&r->usage, u);
    cJSON_Delete(u);
    json_doc_deinit(&doc);
    proxy_conn_reply(r, 200, "application/json", body, n);
    proxy_req_finish(r);
    return 1;
}

void proxy_answer_upstream_done(struct proxy_req *r)
{
    size_t n = evbuffer_get_length(r->up_bytes);
    char *body = n ? (char *)evbuffer_pullup(r->up_bytes, -1) : NULL;
    cJSON *j;

    if (n && !body) {
        proxy_req_error(r, 500, NULL, "Out of memory while reading the provider's answer.");
        return;
    }
    if (!body)
        body = (char *)"";
    else /* a provider key it echoes (an upstream 401) reaches neither client nor audit */
        proxy_mask_provider_keys(r->snap->cfg, body, n);

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
    /* a count ({"input_tokens": N}) and embeddings have no text to restore: relayed as
     * received */
    if (!proxy_translating(r) &&
        (!proxy_wire_restoring(r) || r->count_tokens || !r->wire->restore_answer) &&
        relay_whole(r, body, n))
        return;
    j = cJSON_ParseWithLength(body, n);
    if (!j) {
        proxy_req_error(r, 502, NULL, "The provider '%s' sent an answer that is not JSON.",
                        r->d.prov->name);
        return;
    }
    if (proxy_translating(r)) {
        struct proxy_answer a = {0};
        char *restored, *s;
        if (r->up_wire->read_answer(j, &a, &r->usage) < 0) {
            wipe_cjson_delete(j);
            proxy_req_error(r, 500, NULL, "Out of memory while reading the provider's answer.");
            return;
        }
        restored = proxy_wire_restore(r, 0, a.text, 1);
        wipe_str_free(a.text);
        a.text = restored;
        s = r->wire->write_answer(r, &a);
        wipe_str_free(a.text);
        proxy_conn_reply(r, 200, "application/json", s ? s : "", s ? strlen(s) : 0);
        wipe_str_free(s);
    } else {
        r->up_wire->read_usage(&r->usage, cJSON_GetObjectItemCaseSensitive(j, "usage"));
        if (proxy_wire_restoring(r) && r->wire->restore_answer) {
            char *s;
            r->wire->restore_answer(r, j);
            s = cJSON_PrintUnformatted(j);
            proxy_conn_reply(r, 200, "application/json", s ? s : "", s ? strlen(s) : 0);
            wipe_str_free(s);
        } else {
            proxy_conn_reply(r, 200, "application/json", body, n);
        }
    }
    wipe_cjson_delete(j);
    proxy_req_finish(r);
}

void proxy_answer_upstream_failed(struct proxy_req *r, int timeout, const char *why)
{
    if (r->state >= REQ_LOGGED)
        return;
    if (r->state >= REQ_ANSWERING && r->stream_state >= PROXY_STREAM_CLOSED) {
        /* the client already has its whole answer: the provider failing after its end
         * changes nothing the client sees */
        snprintf(r->error, sizeof(r->error),
                 "the provider's connection failed after the end of its stream: %s", why);
        proxy_conn_stream_end(r);
        proxy_req_finish(r);
        return;
    }
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

/* proxy_answer_engine_start -- a stream's head (200 text/event-stream and the format's
 * opening events), once. The job's prompt is formatted and tokenized on the engine's prep
 * thread, which may still refuse it (too long for the context, no chat template), so the
 * head waits until the engine has accepted the prompt (on_ready), or (not called then) for
 * the first piece of text or the end, whichever comes first: a refusal is answered with its own
 * status and the API's error body, as for a whole answer, never as a 200 stream with an error
 * event. */
void proxy_answer_engine_start(struct proxy_req *r)
{
    if (!r->d.stream || r->state >= REQ_ANSWERING)
        return;
    snprintf(r->tr_id, sizeof(r->tr_id), "%s%s", r->wire->id_prefix, r->id);
    snprintf(r->tr_model, sizeof(r->tr_model), "%s", r->d.model->name);
    proxy_conn_stream_start(r, 200, "text/event-stream");
    r->wire->stream_open(r);
}

int proxy_answer_engine_text(struct proxy_req *r, const char *text, size_t len)
{
    if (r->state >= REQ_LOGGED)
        return 0;
    proxy_answer_engine_start(r);
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

    if (r->state >= REQ_LOGGED)
        return;
    if (!res->prompt_refused) { /* (nothing ran for a refused prompt) */
        r->usage.seen = 1;
        r->usage.input = res->prompt_tokens;
        r->usage.output = res->completion_tokens;
    }
    if (res->status != ENGINE_OK) {
        if (res->status == ENGINE_ECANCELED && !r->conn) {
            proxy_req_abandoned(r);
            proxy_req_finish(r);
            return;
        }
        /* before a stream's head (a refused prompt always is) these are plain answers */
        if (res->status == ENGINE_ECONTEXT)
            proxy_req_error(r, 400, NULL, "%s",
                            res->error[0] ? res->error
                                          : "The prompt is longer than the local model's context.");
        else if (res->prompt_refused && res->status == ENGINE_ETEMPLATE)
            proxy_req_error(r, 500, NULL, "The local model cannot format a chat: %s",
                            res->error[0] ? res->error : "no chat template this gateway knows");
        else if (res->prompt_refused && res->status == ENGINE_EINVAL)
            proxy_req_error(r, 400, NULL, "The local model cannot take this request: %s",
                            res->error[0] ? res->error : "invalid request");
        else
            proxy_req_error(r, 500, NULL, "The local model failed: %s",
                            res->error[0] ? res->error : "unknown error");
        return;
    }
    if (r->d.stream) {
        proxy_answer_engine_start(r); /* an answer with no text at all */
        r->tr_stop = strcmp(fin, "length") == 0 ? PROXY_STOP_LENGTH : PROXY_STOP_END;
        proxy_stream_close(r);
        proxy_conn_stream_end(r);
        proxy_req_finish(r);
        return;
    }
    {
        struct proxy_answer a = {.text = r->engine_text,
                                 .stop = strcmp(fin, "length") == 0 ? PROXY_STOP_LENGTH
                                                                    : PROXY_STOP_END};
        char *s;
        snprintf(a.id, sizeof(a.id), "%s%s", r->wire->id_prefix, r->id);
        snprintf(a.model, sizeof(a.model), "%s", r->d.model->name);
        s = r->wire->write_answer(r, &a);
        proxy_conn_reply(r, 200, "application/json", s ? s : "", s ? strlen(s) : 0);
        wipe_str_free(s);
    }
    proxy_req_finish(r);
}
