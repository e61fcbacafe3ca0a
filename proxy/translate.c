/* translate.c -- answering in the caller's format when the target speaks the other.
 *
 * A request may be routed (by policy or by config) to a provider whose API is
 * not the one the client used: an Anthropic SDK call answered by an OpenAI-type
 * internal model server, say. The request is rebuilt in the target's format and
 * the answer -- whole or streamed -- is rebuilt in the client's, so the client's
 * SDK never notices. What translates: system prompts, user/assistant text,
 * max tokens, temperature, top_p, stop sequences, streaming, usage, stop
 * reasons. Tool calls and images do not; such a request is refused with a 400
 * that says so rather than silently dropping parts of it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>
#include <time.h>

#include "proxy/outbound.h"
#include "proxy/proxy_int.h"

int proxy_translating(const struct proxy_req *r)
{
    if (!r->d.prov || r->d.prov->type == CONFIG_PROVIDER_BUILTIN)
        return 0;
    return (r->d.prov->type == CONFIG_PROVIDER_ANTHROPIC) != (r->api == PROXY_API_ANTHROPIC);
}

int proxy_content_text(const cJSON *c, char **out)
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
            free(s);
            return -1;
        }
        n = strlen(text->valuestring);
        ns = realloc(s, len + n + 1);
        if (!ns) {
            free(s);
            return -1;
        }
        s = ns;
        memcpy(s + len, text->valuestring, n + 1);
        len += n;
    }
    *out = s;
    return 0;
}

static void copy_num(cJSON *to, const char *tk, const cJSON *from, const char *fk)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(from, fk);

    if (cJSON_IsNumber(v))
        cJSON_AddNumberToObject(to, tk, v->valuedouble);
}

static int openai_to_anthropic(const cJSON *in, const struct config_model *m, cJSON *o, char *err,
                               size_t errlen)
{
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(in, "messages"), *msg, *v;
    cJSON *out_msgs;
    char *system = NULL;
    size_t sys_len = 0;

    cJSON_AddStringToObject(o, "model", m->upstream_model ? m->upstream_model : m->name);
    v = cJSON_GetObjectItemCaseSensitive(in, "max_completion_tokens");
    if (!cJSON_IsNumber(v))
        v = cJSON_GetObjectItemCaseSensitive(in, "max_tokens");
    cJSON_AddNumberToObject(o, "max_tokens", cJSON_IsNumber(v) ? v->valuedouble : 4096);
    out_msgs = cJSON_CreateArray();
    cJSON_ArrayForEach(msg, msgs)
    {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(msg, "role");
        const char *rs = cJSON_IsString(role) ? role->valuestring : "";
        char *text;
        cJSON *om;

        if (cJSON_GetObjectItemCaseSensitive(msg, "tool_calls") || strcmp(rs, "tool") == 0 ||
            strcmp(rs, "function") == 0 ||
            proxy_content_text(cJSON_GetObjectItemCaseSensitive(msg, "content"), &text) < 0) {
            snprintf(err, errlen,
                     "Only text messages can be translated from the OpenAI to the Anthropic "
                     "format; this request has tool calls or non-text content.");
            cJSON_Delete(out_msgs);
            free(system);
            return -1;
        }
        if (strcmp(rs, "system") == 0 || strcmp(rs, "developer") == 0) {
            size_t n = strlen(text);
            char *ns = realloc(system, sys_len + n + 3);
            if (ns) {
                system = ns;
                if (sys_len) {
                    memcpy(system + sys_len, "\n\n", 2);
                    sys_len += 2;
                }
                memcpy(system + sys_len, text, n + 1);
                sys_len += n;
            }
            free(text);
            continue;
        }
        om = cJSON_CreateObject();
        cJSON_AddStringToObject(om, "role", strcmp(rs, "assistant") == 0 ? "assistant" : "user");
        cJSON_AddStringToObject(om, "content", text);
        cJSON_AddItemToArray(out_msgs, om);
        free(text);
    }
    if (system)
        cJSON_AddStringToObject(o, "system", system);
    free(system);
    cJSON_AddItemToObject(o, "messages", out_msgs);
    copy_num(o, "temperature", in, "temperature");
    copy_num(o, "top_p", in, "top_p");
    v = cJSON_GetObjectItemCaseSensitive(in, "stop");
    if (cJSON_IsString(v)) {
        cJSON *a = cJSON_AddArrayToObject(o, "stop_sequences");
        cJSON_AddItemToArray(a, cJSON_CreateString(v->valuestring));
    } else if (cJSON_IsArray(v)) {
        cJSON_AddItemToObject(o, "stop_sequences", cJSON_Duplicate(v, 1));
    }
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(in, "stream")))
        cJSON_AddTrueToObject(o, "stream");
    return 0;
}

static int anthropic_to_openai(const cJSON *in, const struct config_model *m, cJSON *o, int *flags,
                               char *err, size_t errlen)
{
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(in, "messages"), *msg, *v;
    cJSON *out_msgs = cJSON_CreateArray();
    char *text;

    cJSON_AddStringToObject(o, "model", m->upstream_model ? m->upstream_model : m->name);
    v = cJSON_GetObjectItemCaseSensitive(in, "system");
    if (v) {
        cJSON *om;
        if (proxy_content_text(v, &text) < 0) {
            snprintf(err, errlen,
                     "The system prompt holds non-text blocks, which cannot be "
                     "translated to the OpenAI format.");
            cJSON_Delete(out_msgs);
            return -1;
        }
        om = cJSON_CreateObject();
        cJSON_AddStringToObject(om, "role", "system");
        cJSON_AddStringToObject(om, "content", text);
        cJSON_AddItemToArray(out_msgs, om);
        free(text);
    }
    cJSON_ArrayForEach(msg, msgs)
    {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(msg, "role");
        cJSON *om;

        if (proxy_content_text(cJSON_GetObjectItemCaseSensitive(msg, "content"), &text) < 0) {
            snprintf(err, errlen,
                     "Only text messages can be translated from the Anthropic to the OpenAI "
                     "format; this request has tool use, tool results or non-text blocks.");
            cJSON_Delete(out_msgs);
            return -1;
        }
        om = cJSON_CreateObject();
        cJSON_AddStringToObject(om, "role",
                                cJSON_IsString(role) && strcmp(role->valuestring, "assistant") == 0
                                    ? "assistant"
                                    : "user");
        cJSON_AddStringToObject(om, "content", text);
        cJSON_AddItemToArray(out_msgs, om);
        free(text);
    }
    cJSON_AddItemToObject(o, "messages", out_msgs);
    copy_num(o, "max_tokens", in, "max_tokens");
    copy_num(o, "temperature", in, "temperature");
    copy_num(o, "top_p", in, "top_p");
    v = cJSON_GetObjectItemCaseSensitive(in, "stop_sequences");
    if (cJSON_IsArray(v))
        cJSON_AddItemToObject(o, "stop", cJSON_Duplicate(v, 1));
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(in, "stream"))) {
        cJSON *so;
        cJSON_AddTrueToObject(o, "stream");
        so = cJSON_AddObjectToObject(o, "stream_options");
        cJSON_AddTrueToObject(so, "include_usage");
        *flags |= PROXY_OUTBOUND_ADDED_USAGE;
    }
    return 0;
}

/* a field the other format has no equivalent for: refuse rather than drop it */
static const char *untranslatable(const cJSON *in)
{
    static const char *const keys[] = {"tools",       "functions",  "tool_choice", "function_call",
                                       "mcp_servers", "thinking",   "n",           "logprobs",
                                       "audio",       "modalities", "prediction",  NULL};
    const cJSON *rf = cJSON_GetObjectItemCaseSensitive(in, "response_format");
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(in, "n");
    size_t i;

    for (i = 0; keys[i]; i++) {
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

int proxy_translate_request(const struct config_model *m, int to_anthropic, const cJSON *in,
                            char **out, size_t *out_len, int *flags, char *err, size_t errlen)
{
    cJSON *o;
    const char *bad;
    int rc;

    *out = NULL;
    if (!cJSON_IsObject(in)) {
        snprintf(err, errlen, "The request body is not a JSON object.");
        return -1;
    }
    if ((bad = untranslatable(in)) != NULL) {
        snprintf(err, errlen,
                 "'%s' cannot be translated to the %s format of the model this request is "
                 "routed to, so the request was not sent.",
                 bad, to_anthropic ? "Anthropic" : "OpenAI");
        return -1;
    }
    o = cJSON_CreateObject();
    if (!o) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    rc = to_anthropic ? openai_to_anthropic(in, m, o, err, errlen)
                      : anthropic_to_openai(in, m, o, flags, err, errlen);
    if (rc == 0) {
        *out = cJSON_PrintUnformatted(o);
        if (!*out) {
            snprintf(err, errlen, "out of memory");
            rc = -1;
        } else {
            *out_len = strlen(*out);
        }
    }
    cJSON_Delete(o);
    return rc;
}

/* ---- answers ---- */

char *proxy_restore_piece(struct proxy_req *r, int slot, const char *text, int flush)
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
    if (out)
        sodium_memzero(out, out_len); /* restored originals */
    free(out);
    return z;
}

static const char *stop_to_anthropic(const char *fr)
{
    if (!fr)
        return "end_turn";
    if (strcmp(fr, "length") == 0)
        return "max_tokens";
    if (strcmp(fr, "tool_calls") == 0 || strcmp(fr, "function_call") == 0)
        return "tool_use";
    if (strcmp(fr, "content_filter") == 0)
        return "refusal";
    return "end_turn";
}

static const char *stop_to_openai(const char *sr)
{
    if (!sr)
        return "stop";
    if (strcmp(sr, "max_tokens") == 0)
        return "length";
    if (strcmp(sr, "tool_use") == 0)
        return "tool_calls";
    if (strcmp(sr, "refusal") == 0)
        return "content_filter";
    return "stop";
}

static long num(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

    return cJSON_IsNumber(v) ? (long)v->valuedouble : 0;
}

/* --- to an Anthropic client --- */

static void anth_open(struct proxy_req *r)
{
    cJSON *j, *m, *u, *cb;

    if (r->tr_started)
        return;
    r->tr_started = 1;
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
    proxy_write_event_json(r, "message_start", j);
    cJSON_Delete(j);
    j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "type", "content_block_start");
    cJSON_AddNumberToObject(j, "index", 0);
    cb = cJSON_AddObjectToObject(j, "content_block");
    cJSON_AddStringToObject(cb, "type", "text");
    cJSON_AddStringToObject(cb, "text", "");
    proxy_write_event_json(r, "content_block_start", j);
    cJSON_Delete(j);
    PROXY_WRITE_LIT(r, "event: ping\ndata: {\"type\": \"ping\"}\n\n");
}

static void anth_text(struct proxy_req *r, const char *text)
{
    cJSON *j, *d;

    if (!text || !*text)
        return;
    j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "type", "content_block_delta");
    cJSON_AddNumberToObject(j, "index", 0);
    d = cJSON_AddObjectToObject(j, "delta");
    cJSON_AddStringToObject(d, "type", "text_delta");
    cJSON_AddStringToObject(d, "text", text);
    proxy_write_event_json(r, "content_block_delta", j);
    cJSON_Delete(j);
}

static void anth_close(struct proxy_req *r)
{
    cJSON *j, *d, *u;
    char *rest;

    if (r->tr_finished)
        return;
    anth_open(r);
    r->tr_finished = 1;
    rest = proxy_restore_piece(r, 0, NULL, 1);
    anth_text(r, rest);
    free(rest);
    PROXY_WRITE_LIT(r, "event: content_block_stop\ndata: "
                       "{\"type\":\"content_block_stop\",\"index\":0}\n\n");
    j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "type", "message_delta");
    d = cJSON_AddObjectToObject(j, "delta");
    cJSON_AddStringToObject(d, "stop_reason", r->tr_stop[0] ? r->tr_stop : "end_turn");
    cJSON_AddNullToObject(d, "stop_sequence");
    u = cJSON_AddObjectToObject(j, "usage");
    /* the OpenAI provider reports prompt tokens only at the end */
    cJSON_AddNumberToObject(u, "input_tokens", (double)(r->usage.input - r->usage.cached));
    cJSON_AddNumberToObject(u, "output_tokens", (double)r->usage.output);
    proxy_write_event_json(r, "message_delta", j);
    cJSON_Delete(j);
    PROXY_WRITE_FINAL(r, "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
}

/* --- to an OpenAI client --- */

/* one OpenAI chat.completion.chunk event: a delta (role/text/finish, each may be
 * NULL), or with `usage` the final usage chunk (no choices) */
static void proxy_openai_chunk(struct proxy_req *r, const char *id, const char *model,
                               const char *role, const char *text, const char *finish,
                               const struct proxy_usage *usage)
{
    cJSON *j = cJSON_CreateObject(), *chs, *c, *d;

    cJSON_AddStringToObject(j, "id", id);
    cJSON_AddStringToObject(j, "object", "chat.completion.chunk");
    cJSON_AddNumberToObject(j, "created", (double)time(NULL));
    cJSON_AddStringToObject(j, "model", model);
    chs = cJSON_AddArrayToObject(j, "choices");
    if (usage) {
        cJSON *u = cJSON_AddObjectToObject(j, "usage");
        cJSON_AddNumberToObject(u, "prompt_tokens", (double)usage->input);
        cJSON_AddNumberToObject(u, "completion_tokens", (double)usage->output);
        cJSON_AddNumberToObject(u, "total_tokens", (double)(usage->input + usage->output));
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
    proxy_write_event_json(r, NULL, j);
    cJSON_Delete(j);
}

static void oai_chunk(struct proxy_req *r, const char *role, const char *text, const char *finish,
                      int usage_only)
{
    proxy_openai_chunk(r, r->tr_id[0] ? r->tr_id : r->id,
                       r->tr_model[0] ? r->tr_model : r->d.model->name, role, text, finish,
                       usage_only ? &r->usage : NULL);
}

static void oai_open(struct proxy_req *r)
{
    if (r->tr_started)
        return;
    r->tr_started = 1;
    oai_chunk(r, "assistant", "", NULL, 0);
}

static void oai_close(struct proxy_req *r)
{
    char *rest;

    if (r->tr_finished)
        return;
    oai_open(r);
    r->tr_finished = 1;
    rest = proxy_restore_piece(r, 0, NULL, 1);
    if (rest && *rest)
        oai_chunk(r, NULL, rest, NULL, 0);
    free(rest);
    oai_chunk(r, NULL, NULL, r->tr_stop[0] ? r->tr_stop : "stop", 0);
    if (r->d.include_usage_asked)
        oai_chunk(r, NULL, NULL, NULL, 1);
    PROXY_WRITE_FINAL(r, "data: [DONE]\n\n");
}

int proxy_translate_event(struct proxy_req *r, const char *event, size_t elen, const char *data,
                          size_t dlen)
{
    cJSON *j;

    if (r->d.prov->type == CONFIG_PROVIDER_ANTHROPIC) {
        /* Anthropic events → OpenAI chunks */
#define EV(name) (elen == strlen(name) && memcmp(event, name, elen) == 0)
        if (EV("ping") || EV("content_block_start") || EV("content_block_stop"))
            return 0;
        j = cJSON_ParseWithLength(data, dlen);
        if (!j)
            return 0;
        if (EV("message_start")) {
            const cJSON *m = cJSON_GetObjectItemCaseSensitive(j, "message");
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(m, "id");
            const cJSON *mo = cJSON_GetObjectItemCaseSensitive(m, "model");
            const cJSON *u = cJSON_GetObjectItemCaseSensitive(m, "usage");
            if (cJSON_IsString(id))
                snprintf(r->tr_id, sizeof(r->tr_id), "%s", id->valuestring);
            if (cJSON_IsString(mo))
                snprintf(r->tr_model, sizeof(r->tr_model), "%s", mo->valuestring);
            if (u) {
                r->usage.seen = 1;
                r->usage.cached = num(u, "cache_read_input_tokens");
                r->usage.input = num(u, "input_tokens") + r->usage.cached +
                                 num(u, "cache_creation_input_tokens");
            }
            oai_open(r);
        } else if (EV("content_block_delta")) {
            const cJSON *d = cJSON_GetObjectItemCaseSensitive(j, "delta");
            const cJSON *t = cJSON_GetObjectItemCaseSensitive(d, "text");
            if (cJSON_IsString(t))
                proxy_stream_text(r, t->valuestring);
        } else if (EV("message_delta")) {
            const cJSON *d = cJSON_GetObjectItemCaseSensitive(j, "delta");
            const cJSON *sr = cJSON_GetObjectItemCaseSensitive(d, "stop_reason");
            const cJSON *u = cJSON_GetObjectItemCaseSensitive(j, "usage");
            snprintf(r->tr_stop, sizeof(r->tr_stop), "%s",
                     stop_to_openai(cJSON_IsString(sr) ? sr->valuestring : NULL));
            if (cJSON_GetObjectItemCaseSensitive(u, "output_tokens")) {
                r->usage.seen = 1;
                r->usage.output = num(u, "output_tokens");
            }
        } else if (EV("message_stop")) {
            oai_close(r);
        } else if (EV("error")) {
            const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
            const cJSON *m = cJSON_GetObjectItemCaseSensitive(e, "message");
            cJSON_Delete(j);
            proxy_req_stream_error(r, cJSON_IsString(m) ? m->valuestring : "provider error");
            return 0;
        }
#undef EV
        cJSON_Delete(j);
        return 0;
    }
    /* OpenAI chunks → Anthropic events */
    if (dlen == 6 && memcmp(data, "[DONE]", 6) == 0) {
        anth_close(r);
        return 0;
    }
    j = cJSON_ParseWithLength(data, dlen);
    if (!j)
        return 0;
    {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(j, "id");
        const cJSON *mo = cJSON_GetObjectItemCaseSensitive(j, "model");
        const cJSON *u = cJSON_GetObjectItemCaseSensitive(j, "usage");
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
        const cJSON *c;

        if (e) {
            const cJSON *m = cJSON_GetObjectItemCaseSensitive(e, "message");
            proxy_req_stream_error(r, cJSON_IsString(m) ? m->valuestring : "provider error");
            cJSON_Delete(j);
            return 0;
        }
        if (!r->tr_id[0] && cJSON_IsString(id))
            snprintf(r->tr_id, sizeof(r->tr_id), "%s", id->valuestring);
        if (!r->tr_model[0] && cJSON_IsString(mo))
            snprintf(r->tr_model, sizeof(r->tr_model), "%s", mo->valuestring);
        if (cJSON_IsObject(u)) {
            r->usage.seen = 1;
            r->usage.input = num(u, "prompt_tokens");
            r->usage.output = num(u, "completion_tokens");
            r->usage.cached =
                num(cJSON_GetObjectItemCaseSensitive(u, "prompt_tokens_details"), "cached_tokens");
        }
        cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(j, "choices"))
        {
            const cJSON *d = cJSON_GetObjectItemCaseSensitive(c, "delta");
            const cJSON *t = cJSON_GetObjectItemCaseSensitive(d, "content");
            const cJSON *fr = cJSON_GetObjectItemCaseSensitive(c, "finish_reason");
            anth_open(r);
            if (cJSON_IsString(t))
                proxy_stream_text(r, t->valuestring);
            if (cJSON_IsString(fr))
                snprintf(r->tr_stop, sizeof(r->tr_stop), "%s", stop_to_anthropic(fr->valuestring));
        }
    }
    cJSON_Delete(j);
    return 0;
}

void proxy_stream_open(struct proxy_req *r)
{
    if (r->api == PROXY_API_ANTHROPIC)
        anth_open(r);
    else
        oai_open(r);
}

void proxy_stream_text(struct proxy_req *r, const char *text)
{
    char *s = proxy_restore_piece(r, 0, text, 0);

    proxy_stream_open(r);
    if (s && *s) {
        if (r->api == PROXY_API_ANTHROPIC)
            anth_text(r, s);
        else
            oai_chunk(r, NULL, s, NULL, 0);
    }
    if (s)
        sodium_memzero(s, strlen(s));
    free(s);
}

void proxy_stream_close(struct proxy_req *r)
{
    if (r->stream_failed || r->tr_finished)
        return;
    if (r->api == PROXY_API_ANTHROPIC)
        anth_close(r);
    else
        oai_close(r);
}

char *proxy_translate_response(struct proxy_req *r, const cJSON *j)
{
    cJSON *o = cJSON_CreateObject();
    char *s;

    if (r->d.prov->type == CONFIG_PROVIDER_ANTHROPIC) {
        /* Anthropic message → OpenAI chat.completion */
        const cJSON *b, *id = cJSON_GetObjectItemCaseSensitive(j, "id");
        const cJSON *mo = cJSON_GetObjectItemCaseSensitive(j, "model");
        const cJSON *sr = cJSON_GetObjectItemCaseSensitive(j, "stop_reason");
        cJSON *chs, *c, *m, *u;
        char *text = strdup(""), *piece;
        size_t len = 0;

        cJSON_ArrayForEach(b, cJSON_GetObjectItemCaseSensitive(j, "content"))
        {
            const cJSON *t = cJSON_GetObjectItemCaseSensitive(b, "text");
            size_t n;
            char *nt;
            if (!cJSON_IsString(t) || !text)
                continue;
            n = strlen(t->valuestring);
            nt = realloc(text, len + n + 1);
            if (!nt)
                continue;
            text = nt;
            memcpy(text + len, t->valuestring, n + 1);
            len += n;
        }
        piece = proxy_restore_piece(r, 0, text, 1);
        free(text);
        cJSON_AddStringToObject(o, "id", cJSON_IsString(id) ? id->valuestring : r->id);
        cJSON_AddStringToObject(o, "object", "chat.completion");
        cJSON_AddNumberToObject(o, "created", (double)time(NULL));
        cJSON_AddStringToObject(o, "model", cJSON_IsString(mo) ? mo->valuestring : r->d.model->name);
        chs = cJSON_AddArrayToObject(o, "choices");
        c = cJSON_CreateObject();
        cJSON_AddNumberToObject(c, "index", 0);
        m = cJSON_AddObjectToObject(c, "message");
        cJSON_AddStringToObject(m, "role", "assistant");
        cJSON_AddStringToObject(m, "content", piece ? piece : "");
        cJSON_AddStringToObject(c, "finish_reason",
                                stop_to_openai(cJSON_IsString(sr) ? sr->valuestring : NULL));
        cJSON_AddItemToArray(chs, c);
        free(piece);
        u = cJSON_AddObjectToObject(o, "usage");
        cJSON_AddNumberToObject(u, "prompt_tokens", (double)r->usage.input);
        cJSON_AddNumberToObject(u, "completion_tokens", (double)r->usage.output);
        cJSON_AddNumberToObject(u, "total_tokens", (double)(r->usage.input + r->usage.output));
    } else {
        /* OpenAI chat.completion → Anthropic message */
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(j, "id");
        const cJSON *mo = cJSON_GetObjectItemCaseSensitive(j, "model");
        const cJSON *c0 = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "choices"), 0);
        const cJSON *msg = cJSON_GetObjectItemCaseSensitive(c0, "message");
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(msg, "content");
        const cJSON *fr = cJSON_GetObjectItemCaseSensitive(c0, "finish_reason");
        cJSON *content, *b, *u;
        char *piece = proxy_restore_piece(r, 0, cJSON_IsString(t) ? t->valuestring : "", 1);

        cJSON_AddStringToObject(o, "id", cJSON_IsString(id) ? id->valuestring : r->id);
        cJSON_AddStringToObject(o, "type", "message");
        cJSON_AddStringToObject(o, "role", "assistant");
        cJSON_AddStringToObject(o, "model", cJSON_IsString(mo) ? mo->valuestring : r->d.model->name);
        content = cJSON_AddArrayToObject(o, "content");
        b = cJSON_CreateObject();
        cJSON_AddStringToObject(b, "type", "text");
        cJSON_AddStringToObject(b, "text", piece ? piece : "");
        cJSON_AddItemToArray(content, b);
        free(piece);
        cJSON_AddStringToObject(o, "stop_reason",
                                stop_to_anthropic(cJSON_IsString(fr) ? fr->valuestring : NULL));
        cJSON_AddNullToObject(o, "stop_sequence");
        u = cJSON_AddObjectToObject(o, "usage");
        cJSON_AddNumberToObject(u, "input_tokens", (double)(r->usage.input - r->usage.cached));
        cJSON_AddNumberToObject(u, "output_tokens", (double)r->usage.output);
        cJSON_AddNumberToObject(u, "cache_read_input_tokens", (double)r->usage.cached);
    }
    s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}
