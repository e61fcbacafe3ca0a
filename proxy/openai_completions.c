/* openai_completions.c -- the OpenAI legacy Completions wire format (see wire.h).
 *
 * Requests: `prompt`, a string or an array of strings (tokens are refused by decide.c,
 * they cannot be scanned), with max_tokens, temperature, top_p, seed and stop as in Chat.
 * Answers: `text_completion` objects whose choices carry `text`, and SSE chunks of the
 * same object ending in `data: [DONE]`; with stream_options.include_usage a last chunk
 * with no choices carries `usage` (prompt_tokens, completion_tokens).
 *
 * Only ever relayed to an OpenAI-type provider or answered by the built-in engine, never
 * translated: read_request gives the engine its prompt (one raw text, the model continues
 * it), and it has no build_request. Errors are OpenAI's (openai_chat.c's). */
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

/* the engine's view: the prompt as the chat's one "user" text (used raw, no template); one
 * prompt and one choice only, since the engine answers one sequence per request */
static int read_request(const cJSON *in, struct proxy_chat *c, char *err, size_t errlen)
{
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(in, "prompt"), *v;
    char *text;

    if (cJSON_IsArray(p) && cJSON_GetArraySize(p) == 1)
        p = cJSON_GetArrayItem(p, 0);
    if (!cJSON_IsString(p)) {
        snprintf(err, errlen, "it answers one prompt per request, and 'prompt' holds several.");
        return -1;
    }
    v = cJSON_GetObjectItemCaseSensitive(in, "n");
    if (cJSON_IsNumber(v) && v->valuedouble != 1) {
        snprintf(err, errlen, "it gives one choice per request ('n' must be 1).");
        return -1;
    }
    /* what it would silently not do: answered as if asked, the answer would be wrong */
    v = cJSON_GetObjectItemCaseSensitive(in, "suffix");
    if (cJSON_IsString(v) && v->valuestring[0]) {
        snprintf(err, errlen, "it cannot fill in the middle ('suffix').");
        return -1;
    }
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(in, "echo")) ||
        cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(in, "logprobs")) ||
        proxy_wire_num(in, "best_of") > 1) {
        snprintf(err, errlen, "it has no 'echo', 'logprobs' or 'best_of'.");
        return -1;
    }
    text = strdup(p->valuestring);
    if (!text || proxy_chat_add(c, "user", text) < 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    c->max_tokens = proxy_wire_limit(cJSON_GetObjectItemCaseSensitive(in, "max_tokens"));
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
        cJSON_ArrayForEach(s, v)
        {
            if (cJSON_IsString(s) && c->n_stop < 4)
                c->stop[c->n_stop++] = s->valuestring;
        }
    }
    c->stream = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(in, "stream"));
    return 0;
}

/* ---- errors: OpenAI's (proxy_openai_error_*) ---- */

/* ---- answers from an OpenAI provider ---- */

static void read_usage(struct proxy_usage *u, const cJSON *o)
{
    proxy_wire_openai_chat.read_usage(u, o);
}

/* a whole answer: the first choice's text */
static int read_answer(const cJSON *j, struct proxy_answer *a, struct proxy_usage *u)
{
    read_usage(u, cJSON_GetObjectItemCaseSensitive(j, "usage"));
    return proxy_openai_read_answer(j, NULL, "text", a);
}

static void read_event(struct proxy_req *r, const char *event, size_t elen, const char *data,
                       size_t dlen, const cJSON *j, struct proxy_piece *p)
{
    const cJSON *c, *e;

    (void)event;
    (void)elen;
    memset(p, 0, sizeof(*p));
    if (dlen == 6 && memcmp(data, "[DONE]", 6) == 0) {
        p->end = 1;
        return;
    }
    if (!j)
        return;
    if ((e = cJSON_GetObjectItemCaseSensitive(j, "error")) != NULL) {
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(e, "message");
        p->error = cJSON_IsString(m) ? m->valuestring : "provider error";
        return;
    }
    read_usage(&r->usage, cJSON_GetObjectItemCaseSensitive(j, "usage"));
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(j, "choices"))
    {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(c, "text");
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

/* One chunk of an OpenAI provider's Completions stream, for its client: as Chat's, with
 * placeholders restored in each choice's own `text` */
static int relay_event(struct proxy_req *r, const char *raw, size_t raw_len, const char *event,
                       size_t elen, const char *data, size_t dlen)
{
    (void)event;
    (void)elen;
    return proxy_openai_relay(r, raw, raw_len, data, dlen, NULL, "text");
}

static void restore_answer(struct proxy_req *r, cJSON *j)
{
    cJSON *c;

    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(j, "choices"))
        proxy_wire_restore_field(r, c, "text", (int)proxy_wire_num(c, "index"), 1);
}

/* ---- answers written for a Completions client (the built-in engine's) ---- */

static void add_usage(struct proxy_req *r, cJSON *o)
{
    cJSON *u = cJSON_AddObjectToObject(o, "usage");

    cJSON_AddNumberToObject(u, "prompt_tokens", (double)r->usage.input);
    cJSON_AddNumberToObject(u, "completion_tokens", (double)r->usage.output);
    cJSON_AddNumberToObject(u, "total_tokens", (double)(r->usage.input + r->usage.output));
}

/* a text_completion object: one choice (text and finish, each may be NULL), or with
 * usage_only the final usage chunk (no choices) */
static cJSON *completion(struct proxy_req *r, const char *id, const char *model, const char *text,
                         const char *finish, int usage_only)
{
    cJSON *j = cJSON_CreateObject(), *chs, *c;

    cJSON_AddStringToObject(j, "id", id);
    cJSON_AddStringToObject(j, "object", "text_completion");
    cJSON_AddNumberToObject(j, "created", (double)time(NULL));
    cJSON_AddStringToObject(j, "model", model);
    chs = cJSON_AddArrayToObject(j, "choices");
    if (usage_only) {
        add_usage(r, j);
        return j;
    }
    c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "text", text ? text : "");
    cJSON_AddNumberToObject(c, "index", 0);
    cJSON_AddNullToObject(c, "logprobs");
    if (finish)
        cJSON_AddStringToObject(c, "finish_reason", finish);
    else
        cJSON_AddNullToObject(c, "finish_reason");
    cJSON_AddItemToArray(chs, c);
    return j;
}

static void chunk(struct proxy_req *r, const char *text, const char *finish, int usage_only)
{
    cJSON *j =
        completion(r, r->tr_id[0] ? r->tr_id : r->id,
                   r->tr_model[0] ? r->tr_model : r->d.model->name, text, finish, usage_only);

    proxy_wire_write_event(r, NULL, j);
    wipe_cjson_delete(j);
}

/* a Completions stream has no opening event: its first chunk carries text */
static void stream_open(struct proxy_req *r)
{
    if (r->stream_state == PROXY_STREAM_NONE)
        r->stream_state = PROXY_STREAM_OPEN;
}

static void stream_text(struct proxy_req *r, const char *text)
{
    stream_open(r);
    if (text && *text)
        chunk(r, text, NULL, 0);
}

static void stream_close(struct proxy_req *r)
{
    char *rest;

    if (r->stream_state >= PROXY_STREAM_CLOSED)
        return;
    stream_open(r);
    r->stream_state = PROXY_STREAM_CLOSED;
    rest = proxy_wire_restore(r, 0, NULL, 1);
    chunk(r, rest ? rest : "", proxy_openai_stop_to(r->tr_stop), 0);
    wipe_str_free(rest);
    if (r->d.include_usage_asked)
        chunk(r, NULL, NULL, 1);
    PROXY_WRITE_FINAL(r, "data: [DONE]\n\n");
}

static char *write_answer(struct proxy_req *r, const struct proxy_answer *a)
{
    cJSON *o = completion(r, a->id[0] ? a->id : r->id, a->model[0] ? a->model : r->d.model->name,
                          a->text, proxy_openai_stop_to(a->stop), 0);
    char *s;

    add_usage(r, o);
    s = cJSON_PrintUnformatted(o);
    wipe_cjson_delete(o);
    return s;
}

const struct proxy_wire proxy_wire_openai_completions = {
    .name = "openai-completions",
    .up_path = "/completions",
    .id_prefix = "cmpl-",
    .read_request = read_request,
    .build_request = NULL, /* nothing is translated into it */
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
