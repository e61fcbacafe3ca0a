/* openai_responses.c -- the OpenAI Responses wire format (see wire.h).
 *
 * Requests (POST /v1/responses): `instructions` (the system prompt), `input` as a string
 * or a list of items -- messages (`role`, `content` a string or input_text / output_text
 * parts), function_call / function_call_output, reasoning, ... -- with tools,
 * max_output_tokens, temperature, top_p, stream. Answers: a `response` object whose
 * `output` holds items (a message with output_text parts, function calls, reasoning) and
 * whose `usage` is {input_tokens, input_tokens_details.cached_tokens, output_tokens,
 * output_tokens_details.reasoning_tokens, total_tokens}. Streams are SSE with `event:`
 * lines, each event's data an object with `type` and `sequence_number`: response.created,
 * response.in_progress, response.output_item.added, response.content_part.added,
 * response.output_text.delta ..., the *.done events, and one of response.completed,
 * response.incomplete or response.failed last (usage arrives there: Responses has no
 * stream_options).
 *
 * POST /v1/responses/compact (the Codex CLI's compaction of a conversation) is the same
 * request grammar answered whole with `{"output":[items]}`: proxy_wire_openai_responses_compact
 * differs only in its path.
 *
 * Relayed from an OpenAI provider to its client, every text an answer carries is restored:
 * deltas through a streaming slot per text (a placeholder split over any number of
 * events), the *.done events and the items and response objects whole. When the gateway
 * has to add an event (what a slot still held when its text ended), the events after it
 * are renumbered so that sequence numbers stay consecutive. Written by the gateway (the
 * built-in engine, or an Anthropic provider's answer translated), the answer is one
 * message item with one output_text part. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "common/json.h"
#include "common/wipe.h"
#include "proxy/outbound.h"
#include "proxy/proxy_int.h"
#include "proxy/wire.h"

/* the restorer's slot for a text restored whole (the streamed texts have slots from 1) */
#define SCRATCH_SLOT (-2)

/* ---- requests ---- */

/* role of a message item in the canonical chat's words; NULL for a role it has not */
static const char *chat_role(const char *rs)
{
    if (strcmp(rs, "system") == 0 || strcmp(rs, "developer") == 0)
        return "system";
    if (strcmp(rs, "assistant") == 0)
        return "assistant";
    if (strcmp(rs, "user") == 0)
        return "user";
    return NULL;
}

/* content -- a message item's content as text: a string, or input_text / output_text
 * parts concatenated; -1 for any other part (images, files, refusals) */
static int content_text(const cJSON *c, char **out)
{
    const cJSON *p;
    size_t len = 0;
    char *s;

    *out = NULL;
    if (cJSON_IsString(c)) {
        *out = strdup(c->valuestring);
        return *out ? 0 : -1;
    }
    if (!cJSON_IsArray(c))
        return -1;
    if (!(s = strdup("")))
        return -1;
    cJSON_ArrayForEach(p, c)
    {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(p, "type");
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(p, "text");
        size_t n;
        char *ns;

        if (!cJSON_IsString(type) || !cJSON_IsString(text) ||
            (strcmp(type->valuestring, "input_text") != 0 &&
             strcmp(type->valuestring, "output_text") != 0)) {
            wipe_free(s, len);
            return -1;
        }
        n = strlen(text->valuestring);
        if (!(ns = malloc(len + n + 1))) {
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

/* The canonical chat of a Responses request: instructions as the system message, then the
 * input's messages. Anything else in `input` (function calls and their outputs, reasoning,
 * images) is not text the chat can carry, and neither is state kept by a provider
 * (previous_response_id): -1 with the reason. Tools are the caller's to refuse
 * (proxy_wire_untranslatable), as for Chat. */
static int read_request(const cJSON *in, struct proxy_chat *c, char *err, size_t errlen)
{
    const cJSON *v, *item;
    char *text;
    static const char *const held[] = {"previous_response_id", "conversation", "prompt", NULL};
    int i = 0;

    /* state a provider keeps: the earlier turns, a stored conversation, a stored prompt */
    for (size_t k = 0; held[k]; k++) {
        v = cJSON_GetObjectItemCaseSensitive(in, held[k]);
        if (v && !cJSON_IsNull(v)) {
            snprintf(err, errlen,
                     "'%s' names what a provider stores (a conversation or a prompt), which "
                     "cannot be carried to another.",
                     held[k]);
            return -1;
        }
    }
    v = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(in, "text"), "format"),
        "type");
    if (v && !(cJSON_IsString(v) && strcmp(v->valuestring, "text") == 0)) {
        snprintf(err, errlen,
                 "A structured output format ('text.format') cannot be carried out of the "
                 "Responses format.");
        return -1;
    }
    v = cJSON_GetObjectItemCaseSensitive(in, "instructions");
    if (cJSON_IsString(v) && v->valuestring[0]) {
        if (!(text = strdup(v->valuestring)) || proxy_chat_add(c, "system", text) < 0)
            goto oom;
    }
    v = cJSON_GetObjectItemCaseSensitive(in, "input");
    if (cJSON_IsString(v)) {
        if (!(text = strdup(v->valuestring)) || proxy_chat_add(c, "user", text) < 0)
            goto oom;
    } else {
        cJSON_ArrayForEach(item, v)
        {
            const cJSON *type = cJSON_GetObjectItemCaseSensitive(item, "type");
            const cJSON *role = cJSON_GetObjectItemCaseSensitive(item, "role");
            const char *cr = cJSON_IsString(role) ? chat_role(role->valuestring) : NULL;

            if ((type && (!cJSON_IsString(type) || strcmp(type->valuestring, "message") != 0)) ||
                !cr || content_text(cJSON_GetObjectItemCaseSensitive(item, "content"), &text) < 0) {
                if (cJSON_IsString(type) && strcmp(type->valuestring, "message") != 0)
                    snprintf(err, errlen,
                             "Only text messages can be carried out of the Responses format, and "
                             "input[%d] is a '%.40s' item.",
                             i, type->valuestring);
                else
                    snprintf(err, errlen,
                             "Only text messages can be carried out of the Responses format, and "
                             "input[%d] has content other than text (or no role of a chat).",
                             i);
                return -1;
            }
            if (proxy_chat_add(c, cr, text) < 0)
                goto oom;
            i++;
        }
    }
    if (c->n == 0) {
        snprintf(err, errlen, "There is nothing to answer: no instructions and no 'input'.");
        return -1;
    }
    c->max_tokens = proxy_wire_limit(cJSON_GetObjectItemCaseSensitive(in, "max_output_tokens"));
    if (cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(in, "temperature")))
        c->temperature = v->valuedouble;
    if (cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(in, "top_p")))
        c->top_p = v->valuedouble;
    c->stream = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(in, "stream"));
    return 0;
oom:
    snprintf(err, errlen, "out of memory");
    return -1;
}

/* ---- answers from an OpenAI provider ---- */

/* input_tokens counts cached tokens too (input_tokens_details.cached_tokens), as Chat's
 * prompt_tokens does; output_tokens counts reasoning tokens */
static void read_usage(struct proxy_usage *u, const cJSON *o)
{
    if (!cJSON_IsObject(o))
        return;
    u->seen = 1;
    u->input = proxy_wire_num(o, "input_tokens");
    u->output = proxy_wire_num(o, "output_tokens");
    u->cached = proxy_wire_num(cJSON_GetObjectItemCaseSensitive(o, "input_tokens_details"),
                               "cached_tokens");
}

static enum proxy_stop stop_of(const cJSON *resp)
{
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(resp, "status");
    const cJSON *why = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(resp, "incomplete_details"), "reason");
    const cJSON *it;

    if (cJSON_IsString(st) && strcmp(st->valuestring, "incomplete") == 0)
        return cJSON_IsString(why) && strcmp(why->valuestring, "content_filter") == 0
                   ? PROXY_STOP_FILTER
                   : PROXY_STOP_LENGTH;
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(resp, "output"))
    {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(it, "type");
        if (cJSON_IsString(t) && strcmp(t->valuestring, "function_call") == 0)
            return PROXY_STOP_TOOL;
    }
    return PROXY_STOP_END;
}

/* the text of a response object: its message items' output_text parts (malloc'd) */
static char *output_text(const cJSON *resp)
{
    const cJSON *it, *p;
    size_t len = 0;
    char *s = strdup(""), *ns;

    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(resp, "output"))
    {
        cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(it, "content"))
        {
            const cJSON *t = cJSON_GetObjectItemCaseSensitive(p, "text");
            size_t n;
            if (!s || !cJSON_IsString(t))
                continue;
            n = strlen(t->valuestring);
            if (!(ns = malloc(len + n + 1))) {
                wipe_free(s, len);
                return NULL;
            }
            memcpy(ns, s, len);
            memcpy(ns + len, t->valuestring, n + 1);
            wipe_free(s, len);
            s = ns;
            len += n;
        }
    }
    return s;
}

static int read_answer(const cJSON *j, struct proxy_answer *a, struct proxy_usage *u)
{
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(j, "id");
    const cJSON *mo = cJSON_GetObjectItemCaseSensitive(j, "model");

    read_usage(u, cJSON_GetObjectItemCaseSensitive(j, "usage"));
    a->text = output_text(j);
    a->stop = stop_of(j);
    snprintf(a->id, sizeof(a->id), "%s", cJSON_IsString(id) ? id->valuestring : "");
    snprintf(a->model, sizeof(a->model), "%s", cJSON_IsString(mo) ? mo->valuestring : "");
    return a->text ? 0 : -1;
}

static int type_is(const cJSON *j, const char *t)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "type");

    return cJSON_IsString(v) && strcmp(v->valuestring, t) == 0;
}

/* (a Responses provider is only ever relayed to a Responses client; read for completeness) */
static void read_event(struct proxy_req *r, const char *event, size_t elen, const char *data,
                       size_t dlen, const cJSON *j, struct proxy_piece *p)
{
    const cJSON *resp = cJSON_GetObjectItemCaseSensitive(j, "response");
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(j, "delta");

    (void)event;
    (void)elen;
    (void)data;
    (void)dlen;
    memset(p, 0, sizeof(*p));
    if (!j)
        return;
    if (type_is(j, "response.created")) {
        const cJSON *mo = cJSON_GetObjectItemCaseSensitive(resp, "model");
        if (!r->tr_model[0] && cJSON_IsString(mo))
            snprintf(r->tr_model, sizeof(r->tr_model), "%s", mo->valuestring);
        p->open = 1;
    } else if (type_is(j, "response.output_text.delta") && cJSON_IsString(d)) {
        p->text = d->valuestring;
    } else if (type_is(j, "response.completed") || type_is(j, "response.incomplete")) {
        read_usage(&r->usage, cJSON_GetObjectItemCaseSensitive(resp, "usage"));
        p->has_stop = 1;
        p->stop = stop_of(resp);
        p->end = 1;
    } else if (type_is(j, "response.failed") || type_is(j, "error")) {
        const cJSON *e = type_is(j, "error") ? j : cJSON_GetObjectItemCaseSensitive(resp, "error");
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(e, "message");
        p->error = cJSON_IsString(m) ? m->valuestring : "provider error";
    }
}

/* restore_all -- every string under j restored whole (a text the provider sent in one
 * piece: an item, a part, a response object). Placeholders carry the request's nonce, so
 * only what the gateway put there is changed, wherever it is. */
static void restore_all(struct proxy_req *r, cJSON *j)
{
    cJSON *c;

    cJSON_ArrayForEach(c, j)
    {
        if (cJSON_IsString(c) && strchr(c->valuestring, '[')) {
            char *z = proxy_wire_restore(r, SCRATCH_SLOT, c->valuestring, 1);
            if (z && strcmp(z, c->valuestring) != 0) {
                sodium_memzero(c->valuestring, strlen(c->valuestring));
                cJSON_SetValuestring(c, z);
            }
            wipe_str_free(z);
        } else if (cJSON_IsObject(c) || cJSON_IsArray(c)) {
            restore_all(r, c);
        }
    }
}

/* The streamed texts of a response, each with its delta and its done event (and the done
 * event's member holding the whole text), and the index that tells two of a kind apart
 * within one output item. */
static const struct texts {
    const char *delta, *done, *field, *sub;
} texts[] = {
    {"response.output_text.delta", "response.output_text.done", "text", "content_index"},
    {"response.refusal.delta", "response.refusal.done", "refusal", "content_index"},
    {"response.function_call_arguments.delta", "response.function_call_arguments.done", "arguments",
     NULL},
    {"response.reasoning_summary_text.delta", "response.reasoning_summary_text.done", "text",
     "summary_index"},
    {"response.reasoning_text.delta", "response.reasoning_text.done", "text", "content_index"},
    {"response.custom_tool_call_input.delta", "response.custom_tool_call_input.done", "input",
     NULL},
};
#define N_TEXTS (sizeof(texts) / sizeof(*texts))

/* the restorer's slot of one streamed text: its kind, output item and index in the item */
static int text_slot(size_t kind, const cJSON *j, const char *sub)
{
    long oi = proxy_wire_num(j, "output_index"), si = sub ? proxy_wire_num(j, sub) : 0;

    return 1 + (int)(((oi % 100000) * (long)N_TEXTS + (long)kind) * 64 + si % 64);
}

/* the next sequence number written: the provider's, moved on by the events the gateway
 * added before it */
static void renumber(struct proxy_req *r, cJSON *j)
{
    cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "sequence_number");

    if (!cJSON_IsNumber(s))
        return;
    if (r->wire_shift)
        cJSON_SetNumberValue(s, (double)(proxy_wire_num(j, "sequence_number") + r->wire_shift));
    r->wire_seq = proxy_wire_num(j, "sequence_number") + 1;
}

static int terminal(const cJSON *j)
{
    return type_is(j, "response.completed") || type_is(j, "response.incomplete") ||
           type_is(j, "response.failed");
}

/* A done event: what the text's slot still holds goes out first, as a delta of its own
 * (the client's deltas then add up to the done text), then the done text restored whole. */
static void restore_done(struct proxy_req *r, cJSON *j, size_t k)
{
    char *rest = proxy_wire_restore(r, text_slot(k, j, texts[k].sub), NULL, 1);

    if (rest && *rest) {
        cJSON *d = cJSON_CreateObject();
        const cJSON *v;
        cJSON_AddStringToObject(d, "type", texts[k].delta);
        if (cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(j, "sequence_number")))
            cJSON_AddNumberToObject(d, "sequence_number",
                                    (double)(proxy_wire_num(j, "sequence_number") + r->wire_shift));
        if ((v = cJSON_GetObjectItemCaseSensitive(j, "item_id")) != NULL)
            cJSON_AddItemToObject(d, "item_id", cJSON_Duplicate(v, 1));
        cJSON_AddNumberToObject(d, "output_index", (double)proxy_wire_num(j, "output_index"));
        if (texts[k].sub)
            cJSON_AddNumberToObject(d, texts[k].sub, (double)proxy_wire_num(j, texts[k].sub));
        cJSON_AddStringToObject(d, "delta", rest);
        proxy_wire_write_event(r, texts[k].delta, d);
        wipe_cjson_delete(d);
        r->wire_shift++;
    }
    wipe_str_free(rest);
    proxy_wire_restore_field(r, j, texts[k].field, SCRATCH_SLOT, 1);
}

/* restore_event -- placeholders restored in one event of the provider's stream */
static void restore_event(struct proxy_req *r, cJSON *j)
{
    for (size_t k = 0; k < N_TEXTS; k++) {
        if (type_is(j, texts[k].delta)) {
            proxy_wire_restore_field(r, j, "delta", text_slot(k, j, texts[k].sub), 0);
            return;
        }
        if (type_is(j, texts[k].done)) {
            restore_done(r, j, k);
            return;
        }
    }
    /* items, parts and the response object carry their texts whole */
    restore_all(r, cJSON_GetObjectItemCaseSensitive(j, "item"));
    restore_all(r, cJSON_GetObjectItemCaseSensitive(j, "part"));
    restore_all(r, cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "response"),
                                                    "output"));
}

/* write one relayed event (its JSON rewritten), holding the last back with the stream's end */
static void relay_write(struct proxy_req *r, const char *name, cJSON *j, int last)
{
    char *s, *ev;
    size_t n = 0;

    if (!last) {
        proxy_wire_write_event(r, name, j);
        return;
    }
    s = cJSON_PrintUnformatted(j);
    ev = s ? proxy_wire_sse(name, s, &n) : NULL;
    if (ev)
        proxy_conn_stream_write_final(r, ev, n);
    wipe_str_free(s);
    wipe_free(ev, n);
    r->stream_state = PROXY_STREAM_CLOSED;
}

#define EV(lit) (elen == sizeof(lit) - 1 && memcmp(event, lit, elen) == 0)

static void copy_str(const struct json_doc *doc, uint32_t v, char *out, size_t cap)
{
    char *s = json_type(doc, v) == JSON_STR ? json_str_dup(doc, v, NULL) : NULL;

    if (s)
        snprintf(out, cap, "%s", s);
    free(s);
}

/* response_fields -- an event with a response object that needs nothing changed: the
 * provider's response id and model, its sequence number, and for the last event its usage,
 * read with the strict parse (no tree of allocations; only `usage` becomes a cJSON) */
static void response_fields(struct proxy_req *r, const char *data, size_t dlen, int last)
{
    struct json_doc doc = {0};
    char err[64];
    uint32_t resp, v;
    double seq;

    r->wire_seq++;
    if (json_parse(&doc, data, dlen, err, sizeof(err)) < 0 || json_type(&doc, doc.root) != JSON_OBJ)
        goto done;
    if (json_number(&doc, json_get(&doc, doc.root, "sequence_number"), &seq) == 0 && seq >= 0 &&
        seq < (double)PROXY_MAX_COUNT)
        r->wire_seq = (long)seq + 1;
    resp = json_get(&doc, doc.root, "response");
    if (json_type(&doc, resp) != JSON_OBJ)
        goto done;
    copy_str(&doc, json_get(&doc, resp, "id"), r->tr_id, sizeof(r->tr_id));
    copy_str(&doc, json_get(&doc, resp, "model"), r->tr_model, sizeof(r->tr_model));
    v = json_get(&doc, resp, "usage");
    if (last && json_type(&doc, v) == JSON_OBJ) {
        cJSON *u = json_to_cjson(&doc, v);
        read_usage(&r->usage, u);
        cJSON_Delete(u);
    }
done:
    json_doc_deinit(&doc);
}

/* One event of an OpenAI provider's Responses stream, for a Responses client: usage read
 * from the response object of the last event, the provider's response id and model kept
 * (for a failure event of the gateway's own), placeholders restored and sequence numbers
 * moved on past any event the gateway added; byte for byte when none of that changes it
 * (then only the events that matter are parsed, by their `event:` name). The last event
 * (completed, incomplete, failed) ends the client's stream. */
static int relay_event(struct proxy_req *r, const char *raw, size_t raw_len, const char *event,
                       size_t elen, const char *data, size_t dlen)
{
    char name[96];
    cJSON *j;
    const cJSON *resp;
    int last;

    if (!proxy_wire_restoring(r) && r->wire_shift == 0 && elen) {
        last = EV("response.completed") || EV("response.incomplete") || EV("response.failed");
        if (last || EV("response.created")) {
            response_fields(r, data, dlen, last);
        } else {
            r->wire_seq++; /* (the provider numbers its events from 0, one by one) */
        }
        if (last) {
            proxy_conn_stream_write_final(r, raw, raw_len);
            r->stream_state = PROXY_STREAM_CLOSED;
        } else {
            proxy_conn_stream_write(r, raw, raw_len);
        }
        return 0;
    }
    j = cJSON_ParseWithLength(data, dlen);
    if (!j) { /* not JSON: relayed as is, for the client's SDK to report */
        proxy_conn_stream_write(r, raw, raw_len);
        return 0;
    }
    resp = cJSON_GetObjectItemCaseSensitive(j, "response");
    last = terminal(j);
    if (cJSON_IsObject(resp)) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(resp, "id");
        const cJSON *mo = cJSON_GetObjectItemCaseSensitive(resp, "model");
        if (cJSON_IsString(id))
            snprintf(r->tr_id, sizeof(r->tr_id), "%s", id->valuestring);
        if (cJSON_IsString(mo))
            snprintf(r->tr_model, sizeof(r->tr_model), "%s", mo->valuestring);
        if (last)
            read_usage(&r->usage, cJSON_GetObjectItemCaseSensitive(resp, "usage"));
    }
    if (!proxy_wire_restoring(r) && r->wire_shift == 0) {
        renumber(r, j);
        if (last) {
            proxy_conn_stream_write_final(r, raw, raw_len);
            r->stream_state = PROXY_STREAM_CLOSED;
        } else {
            proxy_conn_stream_write(r, raw, raw_len);
        }
        wipe_cjson_delete(j);
        return 0;
    }
    snprintf(name, sizeof(name), "%.*s", (int)(elen < sizeof(name) ? elen : sizeof(name) - 1),
             event);
    if (proxy_wire_restoring(r))
        restore_event(r, j);
    renumber(r, j);
    relay_write(r, elen ? name : NULL, j, last);
    wipe_cjson_delete(j);
    return 0;
}

#undef EV

/* a whole response (or a compaction's {"output":[...]}): every text of its output */
static void restore_answer(struct proxy_req *r, cJSON *j)
{
    restore_all(r, cJSON_GetObjectItemCaseSensitive(j, "output"));
}

/* ---- answers written for a Responses client (the engine's, or translated) ---- */

static void add_usage(struct proxy_req *r, cJSON *o)
{
    cJSON *u = cJSON_AddObjectToObject(o, "usage"), *d;

    cJSON_AddNumberToObject(u, "input_tokens", (double)r->usage.input);
    d = cJSON_AddObjectToObject(u, "input_tokens_details");
    cJSON_AddNumberToObject(d, "cached_tokens", (double)r->usage.cached);
    cJSON_AddNumberToObject(u, "output_tokens", (double)r->usage.output);
    d = cJSON_AddObjectToObject(u, "output_tokens_details");
    cJSON_AddNumberToObject(d, "reasoning_tokens", 0);
    cJSON_AddNumberToObject(u, "total_tokens", (double)(r->usage.input + r->usage.output));
}

static void ids(struct proxy_req *r, char *resp_id, size_t rn, char *item_id, size_t in)
{
    snprintf(resp_id, rn, "resp_%s", r->id);
    snprintf(item_id, in, "msg_%s", r->id);
}

static const char *answer_model(struct proxy_req *r, const char *model)
{
    if (model && model[0])
        return model;
    return r->tr_model[0] ? r->tr_model : r->d.model->name;
}

static cJSON *text_part(const char *text)
{
    cJSON *p = cJSON_CreateObject();

    cJSON_AddStringToObject(p, "type", "output_text");
    cJSON_AddItemToObject(p, "annotations", cJSON_CreateArray());
    cJSON_AddItemToObject(p, "logprobs", cJSON_CreateArray());
    cJSON_AddStringToObject(p, "text", text);
    return p;
}

/* the answer's one message item: text NULL while it is in progress (no parts yet) */
static cJSON *message_item(struct proxy_req *r, const char *text)
{
    cJSON *it = cJSON_CreateObject(), *c;
    char rid[64], iid[64];

    ids(r, rid, sizeof(rid), iid, sizeof(iid));
    cJSON_AddStringToObject(it, "id", iid);
    cJSON_AddStringToObject(it, "type", "message");
    cJSON_AddStringToObject(it, "status", text ? "completed" : "in_progress");
    c = cJSON_AddArrayToObject(it, "content");
    if (text)
        cJSON_AddItemToArray(c, text_part(text));
    cJSON_AddStringToObject(it, "role", "assistant");
    return it;
}

/* a response object: status "in_progress" (no output, no usage yet), "completed" or
 * "incomplete" (stop), or "failed" (error: the message) */
static cJSON *response_obj(struct proxy_req *r, const char *model, const char *status,
                           const char *text, enum proxy_stop stop, const char *error)
{
    cJSON *o = cJSON_CreateObject(), *out, *v;
    char rid[64], iid[64];
    const cJSON *in = r->json;

    ids(r, rid, sizeof(rid), iid, sizeof(iid));
    cJSON_AddStringToObject(o, "id", rid);
    cJSON_AddStringToObject(o, "object", "response");
    cJSON_AddNumberToObject(o, "created_at", (double)time(NULL));
    cJSON_AddStringToObject(o, "status", status);
    cJSON_AddFalseToObject(o, "background");
    if (error) {
        cJSON *e = cJSON_AddObjectToObject(o, "error");
        cJSON_AddStringToObject(e, "code", "server_error");
        cJSON_AddStringToObject(e, "message", error);
    } else {
        cJSON_AddNullToObject(o, "error");
    }
    if (strcmp(status, "incomplete") == 0) {
        cJSON *d = cJSON_AddObjectToObject(o, "incomplete_details");
        cJSON_AddStringToObject(d, "reason",
                                stop == PROXY_STOP_FILTER ? "content_filter" : "max_output_tokens");
    } else {
        cJSON_AddNullToObject(o, "incomplete_details");
    }
    cJSON_AddNullToObject(o, "instructions");
    v = cJSON_GetObjectItemCaseSensitive(in, "max_output_tokens");
    if (cJSON_IsNumber(v))
        cJSON_AddNumberToObject(o, "max_output_tokens", v->valuedouble);
    else
        cJSON_AddNullToObject(o, "max_output_tokens");
    cJSON_AddStringToObject(o, "model", answer_model(r, model));
    out = cJSON_AddArrayToObject(o, "output");
    if (text)
        cJSON_AddItemToArray(out, message_item(r, text));
    cJSON_AddTrueToObject(o, "parallel_tool_calls");
    cJSON_AddNullToObject(o, "previous_response_id");
    v = cJSON_AddObjectToObject(o, "reasoning");
    cJSON_AddNullToObject(v, "effort");
    cJSON_AddNullToObject(v, "summary");
    cJSON_AddFalseToObject(o, "store");
    v = cJSON_GetObjectItemCaseSensitive(in, "temperature");
    cJSON_AddNumberToObject(o, "temperature", cJSON_IsNumber(v) ? v->valuedouble : 1.0);
    v = cJSON_AddObjectToObject(cJSON_AddObjectToObject(o, "text"), "format");
    cJSON_AddStringToObject(v, "type", "text");
    cJSON_AddStringToObject(o, "tool_choice", "auto");
    cJSON_AddItemToObject(o, "tools", cJSON_CreateArray());
    v = cJSON_GetObjectItemCaseSensitive(in, "top_p");
    cJSON_AddNumberToObject(o, "top_p", cJSON_IsNumber(v) ? v->valuedouble : 1.0);
    cJSON_AddStringToObject(o, "truncation", "disabled");
    if (strcmp(status, "in_progress") == 0)
        cJSON_AddNullToObject(o, "usage");
    else
        add_usage(r, o);
    cJSON_AddItemToObject(o, "metadata", cJSON_CreateObject());
    return o;
}

/* one event the gateway writes: `type` and the next sequence number first, then the
 * event's members (consumed); `final` holds it back with the stream's end */
static void emit(struct proxy_req *r, const char *type, cJSON *members, int final)
{
    cJSON *e = cJSON_CreateObject(), *m;

    cJSON_AddStringToObject(e, "type", type);
    cJSON_AddNumberToObject(e, "sequence_number", (double)r->wire_seq++);
    while (members && (m = members->child) != NULL) {
        cJSON_DetachItemViaPointer(members, m);
        cJSON_AddItemToObject(e, m->string, m);
    }
    wipe_cjson_delete(members);
    if (final) {
        char *s = cJSON_PrintUnformatted(e);
        size_t n = 0;
        char *ev = s ? proxy_wire_sse(type, s, &n) : NULL;
        if (ev)
            proxy_conn_stream_write_final(r, ev, n);
        wipe_str_free(s);
        wipe_free(ev, n);
    } else {
        proxy_wire_write_event(r, type, e);
    }
    wipe_cjson_delete(e);
}

/* the members that place an event in the answer's one message and its one part */
static cJSON *at_part(struct proxy_req *r)
{
    cJSON *m = cJSON_CreateObject();
    char rid[64], iid[64];

    ids(r, rid, sizeof(rid), iid, sizeof(iid));
    cJSON_AddStringToObject(m, "item_id", iid);
    cJSON_AddNumberToObject(m, "output_index", 0);
    cJSON_AddNumberToObject(m, "content_index", 0);
    return m;
}

static void stream_open(struct proxy_req *r)
{
    cJSON *m;

    if (r->stream_state != PROXY_STREAM_NONE)
        return;
    r->stream_state = PROXY_STREAM_OPEN;
    m = cJSON_CreateObject();
    cJSON_AddItemToObject(m, "response",
                          response_obj(r, NULL, "in_progress", NULL, PROXY_STOP_END, NULL));
    emit(r, "response.created", m, 0);
    m = cJSON_CreateObject();
    cJSON_AddItemToObject(m, "response",
                          response_obj(r, NULL, "in_progress", NULL, PROXY_STOP_END, NULL));
    emit(r, "response.in_progress", m, 0);
    m = cJSON_CreateObject();
    cJSON_AddNumberToObject(m, "output_index", 0);
    cJSON_AddItemToObject(m, "item", message_item(r, NULL));
    emit(r, "response.output_item.added", m, 0);
    m = at_part(r);
    cJSON_AddItemToObject(m, "part", text_part(""));
    emit(r, "response.content_part.added", m, 0);
}

/* the text so far is kept (r->engine_text) for the done events, which carry it whole */
static int keep_text(struct proxy_req *r, const char *text)
{
    size_t n = strlen(text);
    char *p = realloc(r->engine_text, r->engine_text_len + n + 1);

    if (!p)
        return -1;
    memcpy(p + r->engine_text_len, text, n + 1);
    r->engine_text = p;
    r->engine_text_len += n;
    return 0;
}

static void delta(struct proxy_req *r, const char *text)
{
    cJSON *m = at_part(r);

    cJSON_AddStringToObject(m, "delta", text);
    cJSON_AddItemToObject(m, "logprobs", cJSON_CreateArray());
    emit(r, "response.output_text.delta", m, 0);
}

static void stream_text(struct proxy_req *r, const char *text)
{
    stream_open(r);
    if (!text || !*text)
        return;
    if (keep_text(r, text) < 0) {
        r->copy_lost = 1; /* (the answer would have a hole: the request ends) */
        return;
    }
    delta(r, text);
}

static void stream_close(struct proxy_req *r)
{
    const char *text;
    char *rest;
    cJSON *m;
    int done = r->tr_stop != PROXY_STOP_LENGTH && r->tr_stop != PROXY_STOP_FILTER;

    if (r->stream_state >= PROXY_STREAM_CLOSED)
        return;
    stream_open(r);
    r->stream_state = PROXY_STREAM_CLOSED;
    rest = proxy_wire_restore(r, 0, NULL, 1);
    if (rest && *rest && keep_text(r, rest) == 0)
        delta(r, rest);
    wipe_str_free(rest);
    text = r->engine_text ? r->engine_text : "";
    m = at_part(r);
    cJSON_AddStringToObject(m, "text", text);
    cJSON_AddItemToObject(m, "logprobs", cJSON_CreateArray());
    emit(r, "response.output_text.done", m, 0);
    m = at_part(r);
    cJSON_AddItemToObject(m, "part", text_part(text));
    emit(r, "response.content_part.done", m, 0);
    m = cJSON_CreateObject();
    cJSON_AddNumberToObject(m, "output_index", 0);
    cJSON_AddItemToObject(m, "item", message_item(r, text));
    emit(r, "response.output_item.done", m, 0);
    m = cJSON_CreateObject();
    cJSON_AddItemToObject(
        m, "response",
        response_obj(r, NULL, done ? "completed" : "incomplete", text, r->tr_stop, NULL));
    emit(r, done ? "response.completed" : "response.incomplete", m, 1);
}

/* A stream that fails once started ends with response.failed (what the Codex CLI reads a
 * failure from: response.error's code and message), numbered after what went before: the
 * gateway's own events, or the provider's it relayed. */
static void stream_fail(struct proxy_req *r, int status, const char *message)
{
    cJSON *m = cJSON_CreateObject(), *resp;
    char rid[64], iid[64];

    (void)status;
    ids(r, rid, sizeof(rid), iid, sizeof(iid));
    resp = response_obj(r, NULL, "failed", NULL, PROXY_STOP_END, message);
    if (r->up_wire == r->wire && r->tr_id[0]) /* relayed: the provider's response */
        cJSON_ReplaceItemInObjectCaseSensitive(resp, "id", cJSON_CreateString(r->tr_id));
    cJSON_AddItemToObject(m, "response", resp);
    emit(r, "response.failed", m, 1);
}

static char *write_answer(struct proxy_req *r, const struct proxy_answer *a)
{
    int done = a->stop != PROXY_STOP_LENGTH && a->stop != PROXY_STOP_FILTER;
    cJSON *o = response_obj(r, a->model, done ? "completed" : "incomplete", a->text ? a->text : "",
                            a->stop, NULL);
    char *s = cJSON_PrintUnformatted(o);

    wipe_cjson_delete(o);
    return s;
}

/* ---- errors: OpenAI's; a started stream's: response.failed (stream_fail) ---- */

static char *error_event(const char *body, size_t *len)
{
    cJSON *b = cJSON_Parse(body), *e = cJSON_CreateObject();
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(b, "error");
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(err, "message");
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(err, "code");
    char *s, *ev;

    cJSON_AddStringToObject(e, "type", "error");
    cJSON_AddStringToObject(e, "code", cJSON_IsString(code) ? code->valuestring : "500");
    cJSON_AddStringToObject(e, "message", cJSON_IsString(msg) ? msg->valuestring : "error");
    cJSON_AddNullToObject(e, "param");
    cJSON_AddNumberToObject(e, "sequence_number", 0);
    cJSON_Delete(b);
    s = proxy_wire_print(e, len);
    ev = s ? proxy_wire_sse("error", s, len) : NULL;
    free(s);
    return ev;
}

const struct proxy_wire proxy_wire_openai_responses = {
    .name = "openai-responses",
    .up_path = "/responses",
    .id_prefix = "resp_",
    .read_request = read_request,
    .build_request = NULL, /* nothing is translated into it */
    .error_type = proxy_openai_error_type,
    .error_body = proxy_openai_error_body,
    .error_event = error_event,
    .read_usage = read_usage,
    .read_answer = read_answer,
    .read_event = read_event,
    .relay_event = relay_event,
    .restore_answer = restore_answer,
    .stream_open = stream_open,
    .stream_text = stream_text,
    .stream_close = stream_close,
    .stream_fail = stream_fail,
    .write_answer = write_answer,
};

const struct proxy_wire proxy_wire_openai_responses_compact = {
    .name = "openai-responses-compact",
    .up_path = "/responses/compact",
    .id_prefix = "resp_",
    .read_request = read_request,
    .build_request = NULL, /* nothing is translated into it */
    .error_type = proxy_openai_error_type,
    .error_body = proxy_openai_error_body,
    .error_event = error_event,
    .read_usage = read_usage,
    .read_answer = read_answer,
    .read_event = read_event,
    .relay_event = relay_event,
    .restore_answer = restore_answer,
    .stream_open = stream_open,
    .stream_text = stream_text,
    .stream_close = stream_close,
    .stream_fail = stream_fail,
    .write_answer = write_answer,
};
