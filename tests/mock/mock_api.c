/* mock_api.c -- the mock provider's answers in OpenAI's and Anthropic's real wire formats.
 *
 * Behaviour is chosen per request by MOCK:<word> tokens in the last user message, so
 * that tests driving unmodified SDKs can pick it (see docs/testing.md for the list).
 * Token counts are deterministic: prompt = received body bytes / 4, completion = the
 * number of whitespace-separated words of the answer, unless MOCK:usage=IN,OUT. */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <cJSON.h>
#include <sodium.h>

#include "tests/mock/mock.h"

enum api { API_OPENAI, API_ANTHROPIC };

enum fault {
    FAULT_NONE,
    FAULT_STALL_BEFORE,
    FAULT_STALL_MID,
    FAULT_RESET_BEFORE,
    FAULT_RESET_MID,
    FAULT_GARBAGE_BEFORE,
    FAULT_GARBAGE_MID,
    FAULT_ERROR_MID,
};

/* The controls found in the last user message. */
struct controls {
    int echo, user_split, slow, eof_body, crlf;
    int echo_key;             /* echo the credential received (401, or a stream's text) */
    int spaced;               /* events as Python's json.dumps spaces them */
    int fragment;             /* > 0: re-cut the body into writes of this many bytes */
    int words;                /* 0: default answer */
    int status;               /* 0: 200 */
    int delay_ms;             /* -1: not given */
    long usage_in, usage_out; /* -1: computed */
    long cached, reasoning;   /* Responses usage details: MOCK:cached=N, MOCK:reasoning=N */
    int fcall;                /* Responses: MOCK:function_call answers with a function call */
    int think;                /* Responses: MOCK:think adds a reasoning item with the summary */
    enum fault fault;
    char *split; /* owned; MOCK:split=<rest of the message> */
    /* Anthropic: MOCK:tool_use=NAME:JSON (no spaces) adds a tool_use block after the text */
    char tool[1024];
};

struct deltas {
    char **items;
    size_t n, cap;
};

int mock_plan_add(struct mock_plan *plan, const char *data, size_t len)
{
    struct mock_piece *np;
    char *copy;

    if (plan->n == plan->cap) {
        size_t cap = plan->cap ? plan->cap * 2 : 16;
        np = realloc(plan->pieces, cap * sizeof(*np));
        if (!np)
            return -1;
        plan->pieces = np;
        plan->cap = cap;
    }
    copy = malloc(len + 1);
    if (!copy)
        return -1;
    memcpy(copy, data, len);
    copy[len] = '\0';
    plan->pieces[plan->n].data = copy;
    plan->pieces[plan->n].len = len;
    plan->n++;
    return 0;
}

void mock_plan_deinit(struct mock_plan *plan)
{
    size_t i;

    for (i = 0; i < plan->n; i++)
        free(plan->pieces[i].data);
    free(plan->pieces);
    memset(plan, 0, sizeof(*plan));
}

static const char *reason_phrase(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 413:
        return "Payload Too Large";
    case 429:
        return "Too Many Requests";
    case 500:
        return "Internal Server Error";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 529:
        return "Site Overloaded";
    default:
        return "Status";
    }
}

/* Status line and headers. content_length < 0: chunked (or close-delimited when
 * eof_body). */
static int add_head(struct mock_plan *plan, enum api api, const struct mock_request *req,
                    int status, const char *ctype, long content_length, int close_after)
{
    char head[1024];
    int n;

    n = snprintf(head, sizeof(head),
                 "HTTP/1.1 %d %s\r\n"
                 "Content-Type: %s\r\n"
                 "%s: req_mock%06lu\r\n"
                 "%s",
                 status, reason_phrase(status), ctype,
                 api == API_OPENAI ? "x-request-id" : "request-id", req ? req->seq : 0UL,
                 api == API_OPENAI ? "openai-processing-ms: 1\r\n"
                                   : "anthropic-organization-id: mock-org\r\n");
    if (n < 0 || (size_t)n >= sizeof(head))
        return -1;
    if (status == 429)
        n += snprintf(head + n, sizeof(head) - (size_t)n, "retry-after: 1\r\n");
    if (content_length >= 0)
        n +=
            snprintf(head + n, sizeof(head) - (size_t)n, "Content-Length: %ld\r\n", content_length);
    else if (plan->chunked)
        n += snprintf(head + n, sizeof(head) - (size_t)n, "Transfer-Encoding: chunked\r\n");
    if (content_length < 0)
        n += snprintf(head + n, sizeof(head) - (size_t)n, "Cache-Control: no-cache\r\n");
    n += snprintf(head + n, sizeof(head) - (size_t)n, "%s\r\n",
                  close_after ? "Connection: close\r\n" : "");
    if (n < 0 || (size_t)n >= sizeof(head))
        return -1;
    return mock_plan_add(plan, head, (size_t)n);
}

int mock_api_simple(struct mock_plan *plan, int status, const char *content_type, const char *body,
                    size_t len, int close_after)
{
    char head[512];
    int n;

    n = snprintf(head, sizeof(head),
                 "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n"
                 "Content-Length: %zu\r\n%s\r\n",
                 status, reason_phrase(status), content_type, len,
                 close_after ? "Connection: close\r\n" : "");
    if (n < 0 || (size_t)n >= sizeof(head))
        return -1;
    if (mock_plan_add(plan, head, (size_t)n) < 0 || mock_plan_add(plan, body, len) < 0)
        return -1;
    plan->end = close_after ? MOCK_END_CLOSE : MOCK_END_DONE;
    return 0;
}

/* The error body each provider really sends for a status. */
static char *error_body(enum api api, int status, const char *message)
{
    cJSON *root = cJSON_CreateObject(), *err = cJSON_CreateObject();
    const char *type, *code = NULL;
    char *out;

    if (api == API_OPENAI) {
        switch (status) {
        case 401:
            type = "invalid_request_error";
            code = "invalid_api_key";
            break;
        case 404:
            type = "invalid_request_error";
            code = "model_not_found";
            break;
        case 429:
            type = "requests";
            code = "rate_limit_exceeded";
            break;
        case 400:
            type = "invalid_request_error";
            break;
        default:
            type = status >= 500 ? "server_error" : "invalid_request_error";
            break;
        }
        cJSON_AddStringToObject(err, "message", message);
        cJSON_AddStringToObject(err, "type", type);
        cJSON_AddNullToObject(err, "param");
        if (code)
            cJSON_AddStringToObject(err, "code", code);
        else
            cJSON_AddNullToObject(err, "code");
        cJSON_AddItemToObject(root, "error", err);
    } else {
        switch (status) {
        case 400:
            type = "invalid_request_error";
            break;
        case 401:
            type = "authentication_error";
            break;
        case 403:
            type = "permission_error";
            break;
        case 404:
            type = "not_found_error";
            break;
        case 413:
            type = "request_too_large";
            break;
        case 429:
            type = "rate_limit_error";
            break;
        case 529:
            type = "overloaded_error";
            break;
        default:
            type = "api_error";
            break;
        }
        cJSON_AddStringToObject(root, "type", "error");
        cJSON_AddStringToObject(err, "type", type);
        cJSON_AddStringToObject(err, "message", message);
        cJSON_AddItemToObject(root, "error", err);
    }
    out = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return out;
}

static int reply_error(struct mock_plan *plan, enum api api, const struct mock_request *req,
                       int status, const char *message)
{
    char *body = error_body(api, status, message);
    int rc;

    if (!body)
        return -1;
    rc = add_head(plan, api, req, status, "application/json", (long)strlen(body), req->want_close);
    if (rc == 0)
        rc = mock_plan_add(plan, body, strlen(body));
    free(body);
    plan->end = req->want_close ? MOCK_END_CLOSE : MOCK_END_DONE;
    return rc;
}

static int deltas_add(struct deltas *d, const char *s, size_t len)
{
    char *copy;

    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 32;
        char **ni = realloc(d->items, cap * sizeof(*ni));
        if (!ni)
            return -1;
        d->items = ni;
        d->cap = cap;
    }
    copy = malloc(len + 1);
    if (!copy)
        return -1;
    memcpy(copy, s, len);
    copy[len] = '\0';
    d->items[d->n++] = copy;
    return 0;
}

static void deltas_free(struct deltas *d)
{
    size_t i;

    for (i = 0; i < d->n; i++)
        free(d->items[i]);
    free(d->items);
}

/* Length of the UTF-8 sequence starting at s (1 for a stray byte), never past end. */
static size_t utf8_len(const unsigned char *s, size_t left)
{
    size_t n = 1;

    if (*s >= 0xF0)
        n = 4;
    else if (*s >= 0xE0)
        n = 3;
    else if (*s >= 0xC0)
        n = 2;
    return n > left ? left : n;
}

/* Split text into pieces of about `size` bytes, never inside a UTF-8 sequence. */
static int deltas_split(struct deltas *d, const char *text, size_t len, size_t size)
{
    size_t at = 0;

    while (at < len) {
        size_t end = at;
        while (end < len && (end == at || end - at < size))
            end += utf8_len((const unsigned char *)text + end, len - end);
        if (deltas_add(d, text + at, end - at) < 0)
            return -1;
        at = end;
    }
    return 0;
}

/* One delta per word, the separating space leading every word but the first. */
static int deltas_words(struct deltas *d, const char *text)
{
    const char *p = text;

    while (*p) {
        const char *start = p;
        while (*p == ' ')
            p++;
        while (*p && *p != ' ')
            p++;
        if (deltas_add(d, start, (size_t)(p - start)) < 0)
            return -1;
    }
    return 0;
}

static long count_words(const char *s, size_t len)
{
    long n = 0;
    int in = 0;
    size_t i;

    for (i = 0; i < len; i++) {
        int sp = isspace((unsigned char)s[i]);
        if (!sp && !in)
            n++;
        in = !sp;
    }
    return n;
}

/* Appends the text of a message's content (a string, or text parts/blocks). */
static void content_text(const cJSON *content, char **acc)
{
    const cJSON *part;

    if (cJSON_IsString(content)) {
        size_t old = *acc ? strlen(*acc) : 0, add = strlen(content->valuestring);
        char *n = realloc(*acc, old + add + 2);
        if (!n)
            return;
        if (old)
            n[old++] = '\n';
        memcpy(n + old, content->valuestring, add + 1);
        *acc = n;
        return;
    }
    if (!cJSON_IsArray(content))
        return;
    cJSON_ArrayForEach(part, content)
    {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(part, "text");
        if (cJSON_IsString(type) &&
            (strcmp(type->valuestring, "text") == 0 ||
             strcmp(type->valuestring, "input_text") == 0) &&
            cJSON_IsString(text))
            content_text(text, acc);
    }
}

/* The text of the last message with role "user"; malloc'd, or NULL. */
static char *last_user_text(const cJSON *root)
{
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(root, "messages"), *m, *last = NULL;
    char *acc = NULL;

    cJSON_ArrayForEach(m, msgs)
    {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        if (cJSON_IsString(role) && strcmp(role->valuestring, "user") == 0)
            last = m;
    }
    if (last)
        content_text(cJSON_GetObjectItemCaseSensitive(last, "content"), &acc);
    return acc;
}

static void parse_controls(const char *text, struct controls *c)
{
    const char *p = text;

    memset(c, 0, sizeof(*c));
    c->delay_ms = -1;
    c->usage_in = c->usage_out = -1;
    while (p && (p = strstr(p, "MOCK:")) != NULL) {
        char word[64];
        size_t n = 0;

        p += 5;
        if (strncmp(p, "split=", 6) == 0) {
            free(c->split);
            c->split = strdup(p + 6);
            break;
        }
        if (strncmp(p, "tool_use=", 9) == 0) {
            p += 9;
            while (p[n] && !isspace((unsigned char)p[n]) && n < sizeof(c->tool) - 1) {
                c->tool[n] = p[n];
                n++;
            }
            c->tool[n] = '\0';
            p += n;
            continue;
        }
        while (p[n] && !isspace((unsigned char)p[n]) && n < sizeof(word) - 1) {
            word[n] = p[n];
            n++;
        }
        word[n] = '\0';
        p += n;
        if (strcmp(word, "echo") == 0)
            c->echo = 1;
        else if (strcmp(word, "spaced") == 0)
            c->spaced = 1;
        else if (strcmp(word, "echo_key") == 0)
            c->echo_key = 1;
        else if (strcmp(word, "user_split") == 0)
            c->user_split = 1;
        else if (strcmp(word, "slow") == 0)
            c->slow = 1;
        else if (strcmp(word, "eof_body") == 0)
            c->eof_body = 1;
        else if (strcmp(word, "crlf") == 0)
            c->crlf = 1;
        else if (strncmp(word, "fragment=", 9) == 0)
            c->fragment = atoi(word + 9) > 0 ? atoi(word + 9) : 0;
        else if (strncmp(word, "words=", 6) == 0)
            c->words = atoi(word + 6) > 0 ? (atoi(word + 6) > 100000 ? 100000 : atoi(word + 6)) : 0;
        else if (strncmp(word, "delay=", 6) == 0)
            c->delay_ms = atoi(word + 6) >= 0 ? atoi(word + 6) : 0;
        else if (strncmp(word, "status_", 7) == 0 && atoi(word + 7) >= 200 && atoi(word + 7) <= 599)
            c->status = atoi(word + 7);
        else if (strncmp(word, "cached=", 7) == 0)
            c->cached = atol(word + 7);
        else if (strncmp(word, "reasoning=", 10) == 0)
            c->reasoning = atol(word + 10);
        else if (strcmp(word, "function_call") == 0)
            c->fcall = 1;
        else if (strcmp(word, "think") == 0)
            c->think = 1;
        else if (strncmp(word, "usage=", 6) == 0)
            sscanf(word + 6, "%ld,%ld", &c->usage_in, &c->usage_out);
        else if (strcmp(word, "stall_before") == 0)
            c->fault = FAULT_STALL_BEFORE;
        else if (strcmp(word, "stall_mid") == 0)
            c->fault = FAULT_STALL_MID;
        else if (strcmp(word, "reset_before") == 0)
            c->fault = FAULT_RESET_BEFORE;
        else if (strcmp(word, "reset_mid") == 0)
            c->fault = FAULT_RESET_MID;
        else if (strcmp(word, "garbage_before") == 0)
            c->fault = FAULT_GARBAGE_BEFORE;
        else if (strcmp(word, "garbage_mid") == 0)
            c->fault = FAULT_GARBAGE_MID;
        else if (strcmp(word, "error_mid") == 0)
            c->fault = FAULT_ERROR_MID;
    }
}

/* Adds one SSE event (OpenAI: data only; Anthropic: event + data) for a JSON object,
 * consuming obj. */
/* spaced -- json with a space after every ':' and ',' outside strings (malloc'd) */
static char *spaced(const char *json)
{
    size_t n = strlen(json), o = 0;
    char *s = malloc(2 * n + 1);
    int in_str = 0;

    if (!s)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        s[o++] = json[i];
        if (in_str) {
            if (json[i] == '\\' && i + 1 < n)
                s[o++] = json[++i];
            else if (json[i] == '"')
                in_str = 0;
        } else if (json[i] == '"') {
            in_str = 1;
        } else if (json[i] == ':' || json[i] == ',') {
            s[o++] = ' ';
        }
    }
    s[o] = '\0';
    return s;
}

static int add_event(struct mock_plan *plan, const char *event, cJSON *obj)
{
    char *json = cJSON_PrintUnformatted(obj);
    char *buf;
    size_t cap;
    int n, rc;

    cJSON_Delete(obj);
    if (!json)
        return -1;
    if (plan->spaced) {
        char *sp = spaced(json);
        free(json);
        if (!(json = sp))
            return -1;
    }
    cap = strlen(json) + 64;
    buf = malloc(cap);
    if (!buf) {
        free(json);
        return -1;
    }
    if (event)
        n = snprintf(buf, cap, "event: %s\ndata: %s\n\n", event, json);
    else
        n = snprintf(buf, cap, "data: %s\n\n", json);
    rc = n > 0 ? mock_plan_add(plan, buf, (size_t)n) : -1;
    free(buf);
    free(json);
    return rc;
}

static cJSON *openai_usage(long in, long out)
{
    cJSON *u = cJSON_CreateObject(), *pd = cJSON_CreateObject(), *cd = cJSON_CreateObject();

    cJSON_AddNumberToObject(u, "prompt_tokens", (double)in);
    cJSON_AddNumberToObject(u, "completion_tokens", (double)out);
    cJSON_AddNumberToObject(u, "total_tokens", (double)(in + out));
    cJSON_AddNumberToObject(pd, "cached_tokens", 0);
    cJSON_AddNumberToObject(pd, "audio_tokens", 0);
    cJSON_AddItemToObject(u, "prompt_tokens_details", pd);
    cJSON_AddNumberToObject(cd, "reasoning_tokens", 0);
    cJSON_AddNumberToObject(cd, "audio_tokens", 0);
    cJSON_AddNumberToObject(cd, "accepted_prediction_tokens", 0);
    cJSON_AddNumberToObject(cd, "rejected_prediction_tokens", 0);
    cJSON_AddItemToObject(u, "completion_tokens_details", cd);
    return u;
}

static cJSON *openai_chunk(const char *id, long created, const char *model, cJSON *delta,
                           const char *finish, int with_usage_null)
{
    cJSON *c = cJSON_CreateObject(), *choices = cJSON_CreateArray(), *ch = cJSON_CreateObject();

    cJSON_AddStringToObject(c, "id", id);
    cJSON_AddStringToObject(c, "object", "chat.completion.chunk");
    cJSON_AddNumberToObject(c, "created", (double)created);
    cJSON_AddStringToObject(c, "model", model);
    cJSON_AddStringToObject(c, "service_tier", "default");
    cJSON_AddStringToObject(c, "system_fingerprint", "fp_mock0001");
    cJSON_AddNumberToObject(ch, "index", 0);
    cJSON_AddItemToObject(ch, "delta", delta);
    cJSON_AddNullToObject(ch, "logprobs");
    if (finish)
        cJSON_AddStringToObject(ch, "finish_reason", finish);
    else
        cJSON_AddNullToObject(ch, "finish_reason");
    cJSON_AddItemToArray(choices, ch);
    cJSON_AddItemToObject(c, "choices", choices);
    if (with_usage_null)
        cJSON_AddNullToObject(c, "usage");
    return c;
}

static cJSON *anthropic_usage(long in, long out)
{
    cJSON *u = cJSON_CreateObject();

    cJSON_AddNumberToObject(u, "input_tokens", (double)in);
    cJSON_AddNumberToObject(u, "cache_creation_input_tokens", 0);
    cJSON_AddNumberToObject(u, "cache_read_input_tokens", 0);
    cJSON_AddNumberToObject(u, "output_tokens", (double)out);
    return u;
}

static const char GARBAGE[] =
    "\x01\x02 this is not SSE \xff\xfe {{{ garbage\r\n<html>oops</html>\n";

/* The streamed answer. n_before_fault: deltas sent before a *_mid fault. */
/* tool_split -- MOCK:tool_use=NAME:JSON as its name and its input (parsed; NULL when the
 * spec is not NAME:JSON-object) */
static cJSON *tool_split(const char *spec, char *name, size_t cap)
{
    const char *colon = strchr(spec, ':');
    cJSON *input;

    if (!colon || (size_t)(colon - spec) >= cap)
        return NULL;
    snprintf(name, cap, "%.*s", (int)(colon - spec), spec);
    input = cJSON_Parse(colon + 1);
    if (!cJSON_IsObject(input)) {
        cJSON_Delete(input);
        return NULL;
    }
    return input;
}

/* The events of a tool_use block at index 1: start (empty input), the input JSON in two
 * input_json_delta pieces, stop. */
static int add_tool_events(struct mock_plan *plan, unsigned long seq, const char *spec)
{
    char name[128], id[64], *json;
    cJSON *input = tool_split(spec, name, sizeof(name)), *ev, *blk, *delta;
    size_t half;
    int rc = 0;

    if (!input)
        return 0;
    json = cJSON_PrintUnformatted(input);
    cJSON_Delete(input);
    if (!json)
        return -1;
    snprintf(id, sizeof(id), "toolu_mock%06lu", seq);
    ev = cJSON_CreateObject();
    blk = cJSON_CreateObject();
    cJSON_AddStringToObject(ev, "type", "content_block_start");
    cJSON_AddNumberToObject(ev, "index", 1);
    cJSON_AddStringToObject(blk, "type", "tool_use");
    cJSON_AddStringToObject(blk, "id", id);
    cJSON_AddStringToObject(blk, "name", name);
    cJSON_AddItemToObject(blk, "input", cJSON_CreateObject());
    cJSON_AddItemToObject(ev, "content_block", blk);
    rc = add_event(plan, "content_block_start", ev);
    half = strlen(json) / 2;
    for (int k = 0; rc == 0 && k < 2; k++) {
        char piece[1024];
        snprintf(piece, sizeof(piece), "%.*s", (int)(k ? strlen(json) - half : half),
                 json + (k ? half : 0));
        ev = cJSON_CreateObject();
        delta = cJSON_CreateObject();
        cJSON_AddStringToObject(ev, "type", "content_block_delta");
        cJSON_AddNumberToObject(ev, "index", 1);
        cJSON_AddStringToObject(delta, "type", "input_json_delta");
        cJSON_AddStringToObject(delta, "partial_json", piece);
        cJSON_AddItemToObject(ev, "delta", delta);
        rc = add_event(plan, "content_block_delta", ev);
    }
    if (rc == 0) {
        ev = cJSON_CreateObject();
        cJSON_AddStringToObject(ev, "type", "content_block_stop");
        cJSON_AddNumberToObject(ev, "index", 1);
        rc = add_event(plan, "content_block_stop", ev);
    }
    free(json);
    return rc;
}

static int stream_reply(struct mock_plan *plan, enum api api, const struct mock_request *req,
                        const struct controls *c, const char *model, struct deltas *d,
                        const char *finish, long in, long out, int include_usage)
{
    char id[64];
    long created = (long)time(NULL);
    size_t i, cut = d->n;
    int mid = c->fault == FAULT_STALL_MID || c->fault == FAULT_RESET_MID ||
              c->fault == FAULT_GARBAGE_MID || c->fault == FAULT_ERROR_MID;
    int close_after = req->want_close || c->eof_body;

    if (mid && cut > 2)
        cut = 2;
    plan->chunked = !req->http10 && !c->eof_body;
    if (add_head(plan, api, req, 200, "text/event-stream; charset=utf-8", -1, close_after) < 0)
        return -1;
    if (api == API_OPENAI) {
        cJSON *delta = cJSON_CreateObject();
        snprintf(id, sizeof(id), "chatcmpl-mock%06lu", req->seq);
        cJSON_AddStringToObject(delta, "role", "assistant");
        cJSON_AddStringToObject(delta, "content", "");
        cJSON_AddNullToObject(delta, "refusal");
        if (add_event(plan, NULL, openai_chunk(id, created, model, delta, NULL, include_usage)) < 0)
            return -1;
        for (i = 0; i < cut; i++) {
            delta = cJSON_CreateObject();
            cJSON_AddStringToObject(delta, "content", d->items[i]);
            if (add_event(plan, NULL,
                          openai_chunk(id, created, model, delta, NULL, include_usage)) < 0)
                return -1;
        }
    } else {
        cJSON *ev = cJSON_CreateObject(), *msg = cJSON_CreateObject(), *blk;
        snprintf(id, sizeof(id), "msg_mock%06lu", req->seq);
        cJSON_AddStringToObject(ev, "type", "message_start");
        cJSON_AddStringToObject(msg, "id", id);
        cJSON_AddStringToObject(msg, "type", "message");
        cJSON_AddStringToObject(msg, "role", "assistant");
        cJSON_AddStringToObject(msg, "model", model);
        cJSON_AddItemToObject(msg, "content", cJSON_CreateArray());
        cJSON_AddNullToObject(msg, "stop_reason");
        cJSON_AddNullToObject(msg, "stop_sequence");
        cJSON_AddItemToObject(msg, "usage", anthropic_usage(in, 1));
        cJSON_AddItemToObject(ev, "message", msg);
        if (add_event(plan, "message_start", ev) < 0)
            return -1;
        ev = cJSON_CreateObject();
        blk = cJSON_CreateObject();
        cJSON_AddStringToObject(ev, "type", "content_block_start");
        cJSON_AddNumberToObject(ev, "index", 0);
        cJSON_AddStringToObject(blk, "type", "text");
        cJSON_AddStringToObject(blk, "text", "");
        cJSON_AddItemToObject(ev, "content_block", blk);
        if (add_event(plan, "content_block_start", ev) < 0)
            return -1;
        if (mock_plan_add(plan, "event: ping\ndata: {\"type\": \"ping\"}\n\n", 36) < 0)
            return -1;
        for (i = 0; i < cut; i++) {
            cJSON *delta = cJSON_CreateObject();
            ev = cJSON_CreateObject();
            cJSON_AddStringToObject(ev, "type", "content_block_delta");
            cJSON_AddNumberToObject(ev, "index", 0);
            cJSON_AddStringToObject(delta, "type", "text_delta");
            cJSON_AddStringToObject(delta, "text", d->items[i]);
            cJSON_AddItemToObject(ev, "delta", delta);
            if (add_event(plan, "content_block_delta", ev) < 0)
                return -1;
        }
    }
    switch (c->fault) {
    case FAULT_STALL_MID:
        plan->end = MOCK_END_STALL;
        return 0;
    case FAULT_RESET_MID:
        plan->end = MOCK_END_RESET;
        return 0;
    case FAULT_GARBAGE_MID:
        plan->end = MOCK_END_CLOSE;
        plan->truncated = 1;
        return mock_plan_add(plan, GARBAGE, sizeof(GARBAGE) - 1);
    case FAULT_ERROR_MID:
        plan->end = close_after ? MOCK_END_CLOSE : MOCK_END_DONE;
        if (api == API_OPENAI) {
            char *b =
                error_body(api, 500, "The server had an error while processing your request.");
            static const char pre[] = "data: ";
            int rc = b ? 0 : -1;
            if (rc == 0) {
                size_t bl = strlen(b);
                char *ev = malloc(bl + 16);
                rc = -1;
                if (ev) {
                    memcpy(ev, pre, 6);
                    memcpy(ev + 6, b, bl);
                    memcpy(ev + 6 + bl, "\n\n", 2);
                    rc = mock_plan_add(plan, ev, bl + 8);
                    free(ev);
                }
            }
            free(b);
            return rc;
        } else {
            char *b = error_body(api, 529, "Overloaded");
            int rc = -1;
            if (b) {
                cJSON *ev = cJSON_Parse(b);
                rc = ev ? add_event(plan, "error", ev) : -1;
            }
            free(b);
            return rc;
        }
    default:
        break;
    }
    if (api == API_OPENAI) {
        if (add_event(
                plan, NULL,
                openai_chunk(id, created, model, cJSON_CreateObject(), finish, include_usage)) < 0)
            return -1;
        if (include_usage) {
            cJSON *u = cJSON_CreateObject();
            cJSON_AddStringToObject(u, "id", id);
            cJSON_AddStringToObject(u, "object", "chat.completion.chunk");
            cJSON_AddNumberToObject(u, "created", (double)created);
            cJSON_AddStringToObject(u, "model", model);
            cJSON_AddStringToObject(u, "service_tier", "default");
            cJSON_AddStringToObject(u, "system_fingerprint", "fp_mock0001");
            cJSON_AddItemToObject(u, "choices", cJSON_CreateArray());
            cJSON_AddItemToObject(u, "usage", openai_usage(in, out));
            if (add_event(plan, NULL, u) < 0)
                return -1;
        }
        if (mock_plan_add(plan, "data: [DONE]\n\n", 14) < 0)
            return -1;
    } else {
        cJSON *ev = cJSON_CreateObject(), *delta = cJSON_CreateObject(), *u;
        cJSON_AddStringToObject(ev, "type", "content_block_stop");
        cJSON_AddNumberToObject(ev, "index", 0);
        if (add_event(plan, "content_block_stop", ev) < 0)
            return -1;
        if (c->tool[0] && add_tool_events(plan, req->seq, c->tool) < 0)
            return -1;
        ev = cJSON_CreateObject();
        cJSON_AddStringToObject(ev, "type", "message_delta");
        cJSON_AddStringToObject(delta, "stop_reason", finish);
        cJSON_AddNullToObject(delta, "stop_sequence");
        cJSON_AddItemToObject(ev, "delta", delta);
        u = cJSON_CreateObject();
        cJSON_AddNumberToObject(u, "output_tokens", (double)out);
        cJSON_AddItemToObject(ev, "usage", u);
        if (add_event(plan, "message_delta", ev) < 0)
            return -1;
        ev = cJSON_CreateObject();
        cJSON_AddStringToObject(ev, "type", "message_stop");
        if (add_event(plan, "message_stop", ev) < 0)
            return -1;
    }
    plan->end = close_after ? MOCK_END_CLOSE : MOCK_END_DONE;
    return 0;
}

static int whole_reply(struct mock_plan *plan, enum api api, const struct mock_request *req,
                       const struct controls *c, const char *model, const char *text,
                       const char *finish, long in, long out)
{
    cJSON *root = cJSON_CreateObject();
    char id[64], *body;
    size_t len;
    int close_after = req->want_close || c->eof_body, rc;

    if (api == API_OPENAI) {
        cJSON *choices = cJSON_CreateArray(), *ch = cJSON_CreateObject(),
              *msg = cJSON_CreateObject();
        snprintf(id, sizeof(id), "chatcmpl-mock%06lu", req->seq);
        cJSON_AddStringToObject(root, "id", id);
        cJSON_AddStringToObject(root, "object", "chat.completion");
        cJSON_AddNumberToObject(root, "created", (double)time(NULL));
        cJSON_AddStringToObject(root, "model", model);
        cJSON_AddNumberToObject(ch, "index", 0);
        cJSON_AddStringToObject(msg, "role", "assistant");
        cJSON_AddStringToObject(msg, "content", text);
        cJSON_AddNullToObject(msg, "refusal");
        cJSON_AddItemToObject(msg, "annotations", cJSON_CreateArray());
        cJSON_AddItemToObject(ch, "message", msg);
        cJSON_AddNullToObject(ch, "logprobs");
        cJSON_AddStringToObject(ch, "finish_reason", finish);
        cJSON_AddItemToArray(choices, ch);
        cJSON_AddItemToObject(root, "choices", choices);
        cJSON_AddItemToObject(root, "usage", openai_usage(in, out));
        cJSON_AddStringToObject(root, "service_tier", "default");
        cJSON_AddStringToObject(root, "system_fingerprint", "fp_mock0001");
    } else {
        cJSON *content = cJSON_CreateArray(), *blk = cJSON_CreateObject();
        snprintf(id, sizeof(id), "msg_mock%06lu", req->seq);
        cJSON_AddStringToObject(root, "id", id);
        cJSON_AddStringToObject(root, "type", "message");
        cJSON_AddStringToObject(root, "role", "assistant");
        cJSON_AddStringToObject(root, "model", model);
        cJSON_AddStringToObject(blk, "type", "text");
        cJSON_AddStringToObject(blk, "text", text);
        cJSON_AddItemToArray(content, blk);
        if (c->tool[0]) {
            char name[128], tid[64];
            cJSON *input = tool_split(c->tool, name, sizeof(name));
            if (input) {
                blk = cJSON_CreateObject();
                snprintf(tid, sizeof(tid), "toolu_mock%06lu", req->seq);
                cJSON_AddStringToObject(blk, "type", "tool_use");
                cJSON_AddStringToObject(blk, "id", tid);
                cJSON_AddStringToObject(blk, "name", name);
                cJSON_AddItemToObject(blk, "input", input);
                cJSON_AddItemToArray(content, blk);
            }
        }
        cJSON_AddItemToObject(root, "content", content);
        cJSON_AddStringToObject(root, "stop_reason", finish);
        cJSON_AddNullToObject(root, "stop_sequence");
        cJSON_AddItemToObject(root, "usage", anthropic_usage(in, out));
    }
    body = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!body)
        return -1;
    len = strlen(body);
    if (c->fault == FAULT_GARBAGE_MID) {
        /* right length, wrong bytes: a body that is not JSON */
        memset(body, '#', len);
        memcpy(body, GARBAGE, len < sizeof(GARBAGE) - 1 ? len : sizeof(GARBAGE) - 1);
    }
    plan->chunked = 0;
    rc = add_head(plan, api, req, 200, "application/json", c->eof_body ? -1 : (long)len,
                  close_after);
    if (rc == 0) {
        switch (c->fault) {
        case FAULT_STALL_MID:
            rc = mock_plan_add(plan, body, len / 2);
            plan->end = MOCK_END_STALL;
            break;
        case FAULT_RESET_MID:
            rc = mock_plan_add(plan, body, len / 2);
            plan->end = MOCK_END_RESET;
            break;
        default:
            rc = mock_plan_add(plan, body, len);
            plan->end = close_after ? MOCK_END_CLOSE : MOCK_END_DONE;
            break;
        }
    }
    free(body);
    return rc;
}

/* SSE lines ended by CRLF instead of LF (allowed by the SSE grammar): every "\n" in the
 * pieces after the head becomes "\r\n". */
static int plan_crlf(struct mock_plan *plan)
{
    size_t i, j, n;

    for (i = 1; i < plan->n; i++) {
        struct mock_piece *p = &plan->pieces[i];
        char *q;
        for (n = 0, j = 0; j < p->len; j++)
            n += p->data[j] == '\n';
        q = malloc(p->len + n + 1);
        if (!q)
            return -1;
        for (n = 0, j = 0; j < p->len; j++) {
            if (p->data[j] == '\n')
                q[n++] = '\r';
            q[n++] = p->data[j];
        }
        q[n] = '\0';
        free(p->data);
        p->data = q;
        p->len = n;
    }
    return 0;
}

/* Re-cut everything after the head into pieces of `size` bytes, sent 1 ms apart, so
 * that events and lines arrive split across reads at arbitrary points. */
static int plan_fragment(struct mock_plan *plan, size_t size)
{
    struct mock_plan out = *plan;
    size_t i, total = 0, at;
    char *all;

    if (plan->n < 2)
        return 0;
    for (i = 1; i < plan->n; i++)
        total += plan->pieces[i].len;
    all = malloc(total + 1);
    if (!all)
        return -1;
    for (total = 0, i = 1; i < plan->n; i++) {
        memcpy(all + total, plan->pieces[i].data, plan->pieces[i].len);
        total += plan->pieces[i].len;
    }
    out.pieces = NULL;
    out.n = out.cap = 0;
    if (mock_plan_add(&out, plan->pieces[0].data, plan->pieces[0].len) < 0)
        goto fail;
    for (at = 0; at < total; at += size)
        if (mock_plan_add(&out, all + at, total - at < size ? total - at : size) < 0)
            goto fail;
    if (out.delay_ms == 0)
        out.delay_ms = 1;
    free(all);
    mock_plan_deinit(plan);
    *plan = out;
    return 0;
fail:
    free(all);
    mock_plan_deinit(&out);
    return -1;
}

/* first_placeholder -- the first gateway placeholder in text ([NAME_N] or [NAME_N_nonce]),
 * copied into out; 0 when there is none */
static int first_placeholder(const char *text, char *out, size_t cap)
{
    for (const char *p = text ? strchr(text, '[') : NULL; p; p = strchr(p + 1, '[')) {
        const char *q = p + 1;
        while (isupper((unsigned char)*q) || isdigit((unsigned char)*q) || *q == '_')
            q++;
        if (*q == ']' && q > p + 1 && isdigit((unsigned char)q[-1])) {
            snprintf(out, cap, "%.*s", (int)(q - p + 1), p);
            return 1;
        }
        while (islower((unsigned char)*q) || isdigit((unsigned char)*q))
            q++;
        if (*q == ']' && q > p + 1 && (size_t)(q - p + 1) < cap) {
            snprintf(out, cap, "%.*s", (int)(q - p + 1), p);
            return 1;
        }
    }
    return 0;
}

static int build_answer(const struct controls *c, const struct mock_request *req,
                        const char *user_text, struct deltas *d, int *exact)
{
    *exact = 1;
    if (c->echo)
        return deltas_split(d, req->body, req->body_len, 16);
    if (c->split) {
        /* %PH% stands for the first placeholder the gateway put in the user's message: a
         * model that repeats it, split one character per delta */
        char ph[128], *t = NULL, *hit;
        int rc;
        if (first_placeholder(user_text, ph, sizeof(ph)) && (hit = strstr(c->split, "%PH%"))) {
            size_t n = strlen(c->split), pl = strlen(ph), o = 0;
            t = malloc(n * (pl + 1) + 1);
            if (!t)
                return -1;
            for (const char *s = c->split; *s;) {
                if (strncmp(s, "%PH%", 4) == 0) {
                    memcpy(t + o, ph, pl);
                    o += pl;
                    s += 4;
                } else {
                    t[o++] = *s++;
                }
            }
            t[o] = '\0';
        }
        rc = deltas_split(d, t ? t : c->split, strlen(t ? t : c->split), 1);
        free(t);
        return rc;
    }
    if (c->user_split)
        return deltas_split(d, user_text ? user_text : "", user_text ? strlen(user_text) : 0, 1);
    *exact = 0;
    if (c->words > 0) {
        int i;
        for (i = 1; i <= c->words; i++) {
            char w[32];
            int n = snprintf(w, sizeof(w), "%sword%d", i > 1 ? " " : "", i);
            if (deltas_add(d, w, (size_t)n) < 0)
                return -1;
        }
        return 0;
    }
    return deltas_words(d, "Hello from the mock provider, a deterministic answer.");
}

static char *join(const struct deltas *d, size_t n)
{
    size_t i, len = 0;
    char *s;

    for (i = 0; i < n; i++)
        len += strlen(d->items[i]);
    s = malloc(len + 1);
    if (!s)
        return NULL;
    len = 0;
    for (i = 0; i < n; i++) {
        size_t l = strlen(d->items[i]);
        memcpy(s + len, d->items[i], l);
        len += l;
    }
    s[len] = '\0';
    return s;
}

/* POST /v1/messages/count_tokens: {"input_tokens": N}, N = received body bytes / 4 (as
 * the prompt's usage is counted), so a test can tell which body was counted; honours
 * MOCK:usage=IN,.. and MOCK:status_NNN; `stream` and `max_tokens` are refused, as upstream
 * refuses members the count does not take. */
static int count_reply(struct mock_plan *plan, const struct mock_request *req, const cJSON *root)
{
    struct controls c;
    char *user = last_user_text(root), body[64];
    long n;
    int len, rc;

    parse_controls(user, &c);
    free(user);
    free(c.split);
    if (cJSON_GetObjectItemCaseSensitive(root, "stream"))
        return reply_error(plan, API_ANTHROPIC, req, 400, "stream: Extra inputs are not permitted");
    if (cJSON_GetObjectItemCaseSensitive(root, "max_tokens"))
        return reply_error(plan, API_ANTHROPIC, req, 400,
                           "max_tokens: Extra inputs are not permitted");
    if (c.status && c.status != 200)
        return reply_error(plan, API_ANTHROPIC, req, c.status, "The count failed. (mock)");
    n = c.usage_in >= 0 ? c.usage_in : (long)(req->body_len / 4);
    len = snprintf(body, sizeof(body), "{\"input_tokens\":%ld}", n);
    rc = add_head(plan, API_ANTHROPIC, req, 200, "application/json", (long)len, req->want_close);
    if (rc == 0)
        rc = mock_plan_add(plan, body, (size_t)len);
    plan->end = req->want_close ? MOCK_END_CLOSE : MOCK_END_DONE;
    return rc;
}

/* prompt_text -- a Completions `prompt` or an Embeddings `input` as one text (the strings
 * of an array joined by newlines), malloc'd; NULL when it is neither */
static char *prompt_text(const cJSON *p)
{
    const cJSON *s;
    size_t n = 0;
    char *t;

    if (cJSON_IsString(p))
        return strdup(p->valuestring);
    if (!cJSON_IsArray(p))
        return NULL;
    cJSON_ArrayForEach(s, p)
    {
        if (!cJSON_IsString(s))
            return NULL;
        n += strlen(s->valuestring) + 1;
    }
    t = calloc(1, n + 1);
    if (!t)
        return NULL;
    cJSON_ArrayForEach(s, p)
    {
        if (t[0])
            strcat(t, "\n");
        strcat(t, s->valuestring);
    }
    return t;
}

static cJSON *completion_obj(const char *id, long created, const char *model)
{
    cJSON *o = cJSON_CreateObject();

    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "object", "text_completion");
    cJSON_AddNumberToObject(o, "created", (double)created);
    cJSON_AddStringToObject(o, "model", model);
    cJSON_AddStringToObject(o, "system_fingerprint", "fp_mock0001");
    cJSON_AddItemToObject(o, "choices", cJSON_CreateArray());
    return o;
}

static void completion_choice(cJSON *o, int index, const char *text, const char *finish)
{
    cJSON *ch = cJSON_CreateObject();

    cJSON_AddStringToObject(ch, "text", text);
    cJSON_AddNumberToObject(ch, "index", index);
    cJSON_AddNullToObject(ch, "logprobs");
    if (finish)
        cJSON_AddStringToObject(ch, "finish_reason", finish);
    else
        cJSON_AddNullToObject(ch, "finish_reason");
    cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(o, "choices"), ch);
}

/* POST /v1/completions in OpenAI's legacy format: one choice per prompt (each the same
 * answer, chosen by MOCK: controls in the prompt as for chat), `text_completion` objects
 * whole or as SSE chunks ending in [DONE], with a usage chunk (no choices) when
 * stream_options.include_usage is set; MOCK:reset_mid resets a stream after two chunks.
 * Token prompt arrays are refused here as nowhere else: the gateway must not send them. */
static int completion_reply(struct mock_plan *plan, const struct mock_request *req,
                            const cJSON *root, const char *model)
{
    const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(root, "prompt");
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "max_tokens");
    int stream = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "stream"));
    int include_usage = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(root, "stream_options"), "include_usage"));
    int n_prompts = cJSON_IsArray(prompt) ? cJSON_GetArraySize(prompt) : 1, exact, rc = -1;
    char *user = prompt_text(prompt), *text = NULL, id[64];
    const char *finish = "stop";
    long created = (long)time(NULL), in, out;
    struct controls c;
    struct deltas d = {0};
    size_t keep;
    cJSON *o;

    memset(&c, 0, sizeof(c));
    if (!user) {
        rc = reply_error(plan, API_OPENAI, req, 400,
                         "Invalid prompt: tokens are not accepted by this mock.");
        goto done;
    }
    parse_controls(user, &c);
    if (c.status && c.status != 200) {
        rc = reply_error(plan, API_OPENAI, req, c.status, "The server had an error (mock).");
        goto done;
    }
    if (build_answer(&c, req, user, &d, &exact) < 0)
        goto done;
    keep = d.n;
    if (!exact && cJSON_IsNumber(mt) && mt->valuedouble >= 0 && (size_t)mt->valuedouble < d.n) {
        keep = (size_t)mt->valuedouble;
        finish = "length";
    }
    while (d.n > keep)
        free(d.items[--d.n]);
    if (!(text = join(&d, d.n)))
        goto done;
    in = c.usage_in >= 0 ? c.usage_in : (long)(req->body_len / 4);
    out = c.usage_out >= 0 ? c.usage_out : count_words(text, strlen(text)) * n_prompts;
    snprintf(id, sizeof(id), "cmpl-mock%06lu", req->seq);
    if (c.delay_ms >= 0)
        plan->delay_ms = c.delay_ms;
    if (!stream) {
        char *b;
        o = completion_obj(id, created, model);
        for (int i = 0; i < n_prompts; i++)
            completion_choice(o, i, text, finish);
        cJSON_AddItemToObject(o, "usage", openai_usage(in, out));
        b = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        if (!b)
            goto done;
        plan->chunked = 0;
        rc = add_head(plan, API_OPENAI, req, 200, "application/json", (long)strlen(b),
                      req->want_close);
        if (rc == 0)
            rc = mock_plan_add(plan, b, strlen(b));
        free(b);
        plan->end = req->want_close ? MOCK_END_CLOSE : MOCK_END_DONE;
        goto done;
    }
    plan->chunked = !req->http10;
    if (add_head(plan, API_OPENAI, req, 200, "text/event-stream; charset=utf-8", -1,
                 req->want_close) < 0)
        goto done;
    for (int i = 0; i < n_prompts; i++) {
        for (size_t k = 0; k < d.n; k++) {
            o = completion_obj(id, created, model);
            completion_choice(o, i, d.items[k], NULL);
            if (add_event(plan, NULL, o) < 0)
                goto done;
            if (k == 1 && c.fault == FAULT_RESET_MID) { /* MOCK:reset_mid: gone after two */
                plan->end = MOCK_END_RESET;
                rc = 0;
                goto done;
            }
        }
        o = completion_obj(id, created, model);
        completion_choice(o, i, "", finish);
        if (add_event(plan, NULL, o) < 0)
            goto done;
    }
    if (include_usage) {
        o = completion_obj(id, created, model);
        cJSON_AddItemToObject(o, "usage", openai_usage(in, out));
        if (add_event(plan, NULL, o) < 0)
            goto done;
    }
    rc = mock_plan_add(plan, "data: [DONE]\n\n", 14);
    plan->end = req->want_close ? MOCK_END_CLOSE : MOCK_END_DONE;
    if (rc == 0 && c.fragment > 0)
        rc = plan_fragment(plan, (size_t)c.fragment);
done:
    deltas_free(&d);
    free(text);
    free(user);
    free(c.split);
    return rc;
}

static void add_embedding(cJSON *data, int index, const char *text, int b64)
{
    cJSON *e = cJSON_CreateObject();
    const unsigned char *t = (const unsigned char *)text;
    size_t n = strlen(text);
    double v[4] = {(double)n, 0, n ? t[0] : 0, n ? t[n - 1] : 0};

    for (size_t k = 0; k < n; k++)
        v[1] += t[k];
    cJSON_AddStringToObject(e, "object", "embedding");
    cJSON_AddNumberToObject(e, "index", index);
    if (b64) {
        /* encoding_format "base64": the float32 values, little-endian, in base64 */
        unsigned char raw[16];
        char enc[32];
        for (int k = 0; k < 4; k++) {
            float f = (float)v[k];
            uint32_t u;
            memcpy(&u, &f, sizeof(u));
            for (int b = 0; b < 4; b++)
                raw[4 * k + b] = (unsigned char)(u >> (8 * b));
        }
        sodium_bin2base64(enc, sizeof(enc), raw, sizeof(raw), sodium_base64_VARIANT_ORIGINAL);
        cJSON_AddStringToObject(e, "embedding", enc);
    } else {
        cJSON_AddItemToObject(e, "embedding", cJSON_CreateDoubleArray(v, 4));
    }
    cJSON_AddItemToArray(data, e);
}

/* POST /v1/embeddings in OpenAI's format: one 4-number vector per input string, made from
 * the string (its length, its bytes' sum, its first and last byte) so that a test can tell
 * which text was embedded (as float32 in base64 when encoding_format is "base64", the
 * official SDKs' default); usage prompt_tokens = received body bytes / 4 (or
 * MOCK:usage=IN,..). Token inputs are refused here: the gateway must not send them. */
static int embedding_reply(struct mock_plan *plan, const struct mock_request *req,
                           const cJSON *root, const char *model)
{
    const cJSON *input = cJSON_GetObjectItemCaseSensitive(root, "input"), *s;
    cJSON *o, *data, *u;
    char *all = prompt_text(input), *b;
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(root, "encoding_format");
    int b64 = cJSON_IsString(fmt) && strcmp(fmt->valuestring, "base64") == 0;
    struct controls c;
    long in;
    int i = 0, rc;

    if (!all)
        return reply_error(plan, API_OPENAI, req, 400,
                           "Invalid input: tokens are not accepted by this mock.");
    parse_controls(all, &c);
    free(all);
    free(c.split);
    if (c.status && c.status != 200)
        return reply_error(plan, API_OPENAI, req, c.status, "The server had an error (mock).");
    o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "list");
    data = cJSON_AddArrayToObject(o, "data");
    if (cJSON_IsString(input))
        add_embedding(data, i++, input->valuestring, b64);
    else
        cJSON_ArrayForEach(s, input) add_embedding(data, i++, s->valuestring, b64);
    cJSON_AddStringToObject(o, "model", model);
    in = c.usage_in >= 0 ? c.usage_in : (long)(req->body_len / 4);
    u = cJSON_AddObjectToObject(o, "usage");
    cJSON_AddNumberToObject(u, "prompt_tokens", (double)in);
    cJSON_AddNumberToObject(u, "total_tokens", (double)in);
    b = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!b)
        return -1;
    plan->chunked = 0;
    rc = add_head(plan, API_OPENAI, req, 200, "application/json", (long)strlen(b), req->want_close);
    if (rc == 0)
        rc = mock_plan_add(plan, b, strlen(b));
    free(b);
    plan->end = req->want_close ? MOCK_END_CLOSE : MOCK_END_DONE;
    return rc;
}

/* ---- the Responses API ---- */

/* the text of a Responses body's last user message: `input` as a string, or the last item
 * with role "user" (content a string or input_text parts); malloc'd or NULL */
static char *responses_user_text(const cJSON *root)
{
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(root, "input"), *it, *last = NULL;
    char *acc = NULL;

    if (cJSON_IsString(in))
        return strdup(in->valuestring);
    cJSON_ArrayForEach(it, in)
    {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(it, "role");
        if (cJSON_IsString(role) && strcmp(role->valuestring, "user") == 0)
            last = it;
    }
    if (last)
        content_text(cJSON_GetObjectItemCaseSensitive(last, "content"), &acc);
    return acc;
}

static cJSON *responses_usage(long in, long out, const struct controls *c)
{
    cJSON *u = cJSON_CreateObject(), *d;

    cJSON_AddNumberToObject(u, "input_tokens", (double)in);
    d = cJSON_AddObjectToObject(u, "input_tokens_details");
    cJSON_AddNumberToObject(d, "cached_tokens", (double)c->cached);
    cJSON_AddNumberToObject(u, "output_tokens", (double)out);
    d = cJSON_AddObjectToObject(u, "output_tokens_details");
    cJSON_AddNumberToObject(d, "reasoning_tokens", (double)c->reasoning);
    cJSON_AddNumberToObject(u, "total_tokens", (double)(in + out));
    return u;
}

/* a response object as OpenAI writes it; output and usage added by the caller */
static cJSON *responses_obj(const char *id, long created, const char *model, const char *status)
{
    cJSON *o = cJSON_CreateObject(), *v;

    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "object", "response");
    cJSON_AddNumberToObject(o, "created_at", (double)created);
    cJSON_AddStringToObject(o, "status", status);
    cJSON_AddFalseToObject(o, "background");
    cJSON_AddNullToObject(o, "error");
    cJSON_AddNullToObject(o, "incomplete_details");
    cJSON_AddNullToObject(o, "instructions");
    cJSON_AddNullToObject(o, "max_output_tokens");
    cJSON_AddStringToObject(o, "model", model);
    cJSON_AddItemToObject(o, "output", cJSON_CreateArray());
    cJSON_AddTrueToObject(o, "parallel_tool_calls");
    cJSON_AddNullToObject(o, "previous_response_id");
    v = cJSON_AddObjectToObject(o, "reasoning");
    cJSON_AddNullToObject(v, "effort");
    cJSON_AddNullToObject(v, "summary");
    cJSON_AddStringToObject(o, "service_tier", "default");
    cJSON_AddFalseToObject(o, "store");
    cJSON_AddNumberToObject(o, "temperature", 1);
    v = cJSON_AddObjectToObject(cJSON_AddObjectToObject(o, "text"), "format");
    cJSON_AddStringToObject(v, "type", "text");
    cJSON_AddStringToObject(o, "tool_choice", "auto");
    cJSON_AddItemToObject(o, "tools", cJSON_CreateArray());
    cJSON_AddNumberToObject(o, "top_p", 1);
    cJSON_AddStringToObject(o, "truncation", "disabled");
    cJSON_AddNullToObject(o, "usage");
    cJSON_AddItemToObject(o, "metadata", cJSON_CreateObject());
    return o;
}

/* the output items of an answer: kind 'r' a reasoning item (its summary the text), 'f' a
 * function call (its arguments), 'm' a message (one output_text part); text NULL while in
 * progress */
static cJSON *responses_item(int kind, unsigned long seq, const char *text)
{
    cJSON *it = cJSON_CreateObject(), *a, *p;
    char id[64];

    snprintf(id, sizeof(id), "%s_mock%06lu",
             kind == 'r'   ? "rs"
             : kind == 'f' ? "fc"
             : kind == 'c' ? "cmp"
                           : "msg",
             seq);
    cJSON_AddStringToObject(it, "id", id);
    if (kind == 'c') {
        /* a compaction item: the provider's own opaque summary of the conversation */
        cJSON_AddStringToObject(it, "type", "compaction");
        cJSON_AddStringToObject(it, "encrypted_content", text ? text : "");
        return it;
    }
    if (kind == 'r') {
        cJSON_AddStringToObject(it, "type", "reasoning");
        a = cJSON_AddArrayToObject(it, "summary");
        if (text) {
            p = cJSON_CreateObject();
            cJSON_AddStringToObject(p, "type", "summary_text");
            cJSON_AddStringToObject(p, "text", text);
            cJSON_AddItemToArray(a, p);
        }
        return it;
    }
    if (kind == 'f') {
        cJSON_AddStringToObject(it, "type", "function_call");
        cJSON_AddStringToObject(it, "status", text ? "completed" : "in_progress");
        cJSON_AddStringToObject(it, "arguments", text ? text : "");
        snprintf(id, sizeof(id), "call_mock%06lu", seq);
        cJSON_AddStringToObject(it, "call_id", id);
        cJSON_AddStringToObject(it, "name", "lookup");
        return it;
    }
    cJSON_AddStringToObject(it, "type", "message");
    cJSON_AddStringToObject(it, "status", text ? "completed" : "in_progress");
    a = cJSON_AddArrayToObject(it, "content");
    if (text) {
        p = cJSON_CreateObject();
        cJSON_AddStringToObject(p, "type", "output_text");
        cJSON_AddItemToObject(p, "annotations", cJSON_CreateArray());
        cJSON_AddItemToObject(p, "logprobs", cJSON_CreateArray());
        cJSON_AddStringToObject(p, "text", text);
        cJSON_AddItemToArray(a, p);
    }
    cJSON_AddStringToObject(it, "role", "assistant");
    return it;
}

/* one Responses stream event: `type` and `sequence_number` first, then members (consumed) */
static int responses_event(struct mock_plan *plan, long *seq, const char *type, cJSON *members)
{
    cJSON *e = cJSON_CreateObject(), *m;

    cJSON_AddStringToObject(e, "type", type);
    cJSON_AddNumberToObject(e, "sequence_number", (double)(*seq)++);
    while (members && (m = members->child) != NULL) {
        cJSON_DetachItemViaPointer(members, m);
        cJSON_AddItemToObject(e, m->string, m);
    }
    cJSON_Delete(members);
    return add_event(plan, type, e);
}

static cJSON *at_item(const cJSON *item, int oi, const char *sub, int si)
{
    cJSON *m = cJSON_CreateObject();

    cJSON_AddStringToObject(m, "item_id",
                            cJSON_GetObjectItemCaseSensitive(item, "id")->valuestring);
    cJSON_AddNumberToObject(m, "output_index", oi);
    if (sub)
        cJSON_AddNumberToObject(m, sub, si);
    return m;
}

/* The streamed events of one output item (index oi) whose text arrives as deltas d, as
 * OpenAI orders them; *cut: deltas to send before stopping (a *_mid fault), -1 all. */
static int responses_stream_item(struct mock_plan *plan, long *seq, int kind, int oi,
                                 unsigned long rseq, const struct deltas *d, const char *text,
                                 size_t cut)
{
    cJSON *item = responses_item(kind, rseq, NULL), *m;
    const char *dt = kind == 'r'   ? "response.reasoning_summary_text.delta"
                     : kind == 'f' ? "response.function_call_arguments.delta"
                                   : "response.output_text.delta";
    const char *sub = kind == 'r' ? "summary_index" : kind == 'f' ? NULL : "content_index";
    int rc = -1;

    m = cJSON_CreateObject();
    cJSON_AddNumberToObject(m, "output_index", oi);
    cJSON_AddItemToObject(m, "item", cJSON_Duplicate(item, 1));
    if (responses_event(plan, seq, "response.output_item.added", m) < 0)
        goto done;
    if (kind == 'c')
        goto item_done; /* a compaction item comes whole: added, then done */
    if (kind != 'f') {
        cJSON *p = cJSON_CreateObject();
        m = at_item(item, oi, sub, 0);
        cJSON_AddStringToObject(p, "type", kind == 'r' ? "summary_text" : "output_text");
        if (kind == 'm') {
            cJSON_AddItemToObject(p, "annotations", cJSON_CreateArray());
            cJSON_AddItemToObject(p, "logprobs", cJSON_CreateArray());
        }
        cJSON_AddStringToObject(p, "text", "");
        cJSON_AddItemToObject(m, "part", p);
        if (responses_event(plan, seq,
                            kind == 'r' ? "response.reasoning_summary_part.added"
                                        : "response.content_part.added",
                            m) < 0)
            goto done;
    }
    for (size_t i = 0; i < d->n && i < cut; i++) {
        m = at_item(item, oi, sub, 0);
        cJSON_AddStringToObject(m, "delta", d->items[i]);
        if (kind == 'm')
            cJSON_AddItemToObject(m, "logprobs", cJSON_CreateArray());
        if (responses_event(plan, seq, dt, m) < 0)
            goto done;
    }
    rc = 0;
    if (cut < d->n)
        goto done; /* the stream breaks off here */
    rc = -1;
    m = at_item(item, oi, sub, 0);
    cJSON_AddStringToObject(m, kind == 'f' ? "arguments" : "text", text);
    if (kind == 'm')
        cJSON_AddItemToObject(m, "logprobs", cJSON_CreateArray());
    if (responses_event(plan, seq,
                        kind == 'r'   ? "response.reasoning_summary_text.done"
                        : kind == 'f' ? "response.function_call_arguments.done"
                                      : "response.output_text.done",
                        m) < 0)
        goto done;
    if (kind != 'f') {
        cJSON *done_item = responses_item(kind, rseq, text);
        const cJSON *parts =
            cJSON_GetObjectItemCaseSensitive(done_item, kind == 'r' ? "summary" : "content");
        m = at_item(item, oi, sub, 0);
        cJSON_AddItemToObject(m, "part", cJSON_Duplicate(cJSON_GetArrayItem(parts, 0), 1));
        cJSON_Delete(done_item);
        if (responses_event(plan, seq,
                            kind == 'r' ? "response.reasoning_summary_part.done"
                                        : "response.content_part.done",
                            m) < 0)
            goto done;
    }
item_done:
    m = cJSON_CreateObject();
    cJSON_AddNumberToObject(m, "output_index", oi);
    cJSON_AddItemToObject(m, "item", responses_item(kind, rseq, text));
    rc = responses_event(plan, seq, "response.output_item.done", m);
done:
    cJSON_Delete(item);
    return rc;
}

/* whether the last input item is {"type": "compaction_trigger"} (the Codex CLI's remote
 * compaction: it expects exactly one compaction item back) */
static int compaction_triggered(const cJSON *root)
{
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(root, "input");
    const cJSON *type;
    int n = cJSON_IsArray(in) ? cJSON_GetArraySize(in) : 0;

    type = n ? cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(in, n - 1), "type") : NULL;
    return cJSON_IsString(type) && strcmp(type->valuestring, "compaction_trigger") == 0;
}

/* POST /v1/responses (and /v1/responses/compact) in OpenAI's format. The answer is chosen
 * by MOCK: controls in the last user message as for chat (echo, split=, user_split,
 * words=, usage=, status_NNN); MOCK:function_call answers with a function call whose
 * arguments are that text, MOCK:think with a reasoning item (summary: the text) before the
 * message; MOCK:cached=N and MOCK:reasoning=N fill usage's details. Streams are SSE with
 * `event:` lines, response.created ... response.completed (usage there);
 * MOCK:error_mid ends one after two deltas with an `error` event and response.failed,
 * MOCK:reset_mid resets it there. A compaction is answered whole: {"output": [a user
 * message holding the text]} with usage. `stream_options` is refused, as upstream. A
 * request whose last input item is a `compaction_trigger` (Codex's remote compaction) is
 * answered with one `compaction` item whose encrypted_content is the answer's text. */
static int responses_reply(struct mock_plan *plan, const struct mock_request *req,
                           const cJSON *root, const char *model, int compact)
{
    int stream = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "stream")), exact, rc = -1;
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "max_output_tokens");
    char *user = responses_user_text(root), *text = NULL, id[64];
    long created = (long)time(NULL), in, out, seq = 0;
    const char *status = "completed";
    struct controls c;
    struct deltas d = {0};
    size_t keep, cut;
    cJSON *o, *m;
    int kind;

    parse_controls(user, &c);
    plan->spaced = c.spaced;
    if (cJSON_GetObjectItemCaseSensitive(root, "stream_options")) {
        rc = reply_error(plan, API_OPENAI, req, 400, "Unknown parameter: 'stream_options'.");
        goto done;
    }
    if (c.status && c.status != 200) {
        rc = reply_error(plan, API_OPENAI, req, c.status, "The server had an error (mock).");
        goto done;
    }
    if (build_answer(&c, req, user, &d, &exact) < 0)
        goto done;
    keep = d.n;
    if (!exact && cJSON_IsNumber(mt) && mt->valuedouble >= 0 && (size_t)mt->valuedouble < d.n) {
        keep = (size_t)mt->valuedouble;
        status = "incomplete";
    }
    while (d.n > keep)
        free(d.items[--d.n]);
    if (!(text = join(&d, d.n)))
        goto done;
    in = c.usage_in >= 0 ? c.usage_in : (long)(req->body_len / 4);
    out = c.usage_out >= 0 ? c.usage_out : count_words(text, strlen(text)) + c.reasoning;
    kind = compaction_triggered(root) ? 'c' : c.fcall ? 'f' : 'm';
    snprintf(id, sizeof(id), "resp_mock%06lu", req->seq);
    if (c.delay_ms >= 0)
        plan->delay_ms = c.delay_ms;
    if (compact || !stream) {
        char *b;
        o = responses_obj(id, created, model, status);
        if (compact) {
            cJSON *it = cJSON_CreateObject(), *p = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "object", "response.compaction");
            cJSON_AddStringToObject(it, "type", "message");
            cJSON_AddStringToObject(it, "role", "user");
            cJSON_AddStringToObject(p, "type", "input_text");
            cJSON_AddStringToObject(p, "text", text);
            cJSON_AddItemToArray(cJSON_AddArrayToObject(it, "content"), p);
            cJSON_ReplaceItemInObjectCaseSensitive(o, "output", cJSON_CreateArray());
            cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(o, "output"), it);
        } else {
            cJSON *out_arr = cJSON_GetObjectItemCaseSensitive(o, "output");
            if (c.think)
                cJSON_AddItemToArray(out_arr, responses_item('r', req->seq, text));
            cJSON_AddItemToArray(out_arr, responses_item(kind, req->seq, text));
        }
        if (strcmp(status, "incomplete") == 0) {
            m = cJSON_CreateObject();
            cJSON_AddStringToObject(m, "reason", "max_output_tokens");
            cJSON_ReplaceItemInObjectCaseSensitive(o, "incomplete_details", m);
        }
        cJSON_ReplaceItemInObjectCaseSensitive(o, "usage", responses_usage(in, out, &c));
        b = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        if (!b)
            goto done;
        plan->chunked = 0;
        rc = add_head(plan, API_OPENAI, req, 200, "application/json", (long)strlen(b),
                      req->want_close);
        if (rc == 0)
            rc = mock_plan_add(plan, b, strlen(b));
        free(b);
        plan->end = req->want_close ? MOCK_END_CLOSE : MOCK_END_DONE;
        goto done;
    }
    plan->chunked = !req->http10;
    if (add_head(plan, API_OPENAI, req, 200, "text/event-stream; charset=utf-8", -1,
                 req->want_close) < 0)
        goto done;
    m = cJSON_CreateObject();
    cJSON_AddItemToObject(m, "response", responses_obj(id, created, model, "in_progress"));
    if (responses_event(plan, &seq, "response.created", m) < 0)
        goto done;
    m = cJSON_CreateObject();
    cJSON_AddItemToObject(m, "response", responses_obj(id, created, model, "in_progress"));
    if (responses_event(plan, &seq, "response.in_progress", m) < 0)
        goto done;
    cut = c.fault == FAULT_ERROR_MID || c.fault == FAULT_RESET_MID ? 2 : (size_t)-1;
    if (c.think && responses_stream_item(plan, &seq, 'r', 0, req->seq, &d, text, (size_t)-1) < 0)
        goto done;
    if (responses_stream_item(plan, &seq, kind, c.think ? 1 : 0, req->seq, &d, text, cut) < 0)
        goto done;
    if (c.fault == FAULT_RESET_MID && d.n > 2) {
        plan->end = MOCK_END_RESET;
        rc = 0;
        goto done;
    }
    if (c.fault == FAULT_ERROR_MID && d.n > 2) {
        cJSON *e;
        m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "code", "server_error");
        cJSON_AddStringToObject(m, "message",
                                "The server had an error while processing your request.");
        cJSON_AddNullToObject(m, "param");
        if (responses_event(plan, &seq, "error", m) < 0)
            goto done;
        o = responses_obj(id, created, model, "failed");
        e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "code", "server_error");
        cJSON_AddStringToObject(e, "message",
                                "The server had an error while processing your request.");
        cJSON_ReplaceItemInObjectCaseSensitive(o, "error", e);
        m = cJSON_CreateObject();
        cJSON_AddItemToObject(m, "response", o);
        rc = responses_event(plan, &seq, "response.failed", m);
        plan->end = req->want_close ? MOCK_END_CLOSE : MOCK_END_DONE;
        goto done;
    }
    o = responses_obj(id, created, model, status);
    if (c.think)
        cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(o, "output"),
                             responses_item('r', req->seq, text));
    cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(o, "output"),
                         responses_item(kind, req->seq, text));
    if (strcmp(status, "incomplete") == 0) {
        m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "reason", "max_output_tokens");
        cJSON_ReplaceItemInObjectCaseSensitive(o, "incomplete_details", m);
    }
    cJSON_ReplaceItemInObjectCaseSensitive(o, "usage", responses_usage(in, out, &c));
    m = cJSON_CreateObject();
    cJSON_AddItemToObject(m, "response", o);
    rc = responses_event(
        plan, &seq,
        strcmp(status, "incomplete") == 0 ? "response.incomplete" : "response.completed", m);
    plan->end = req->want_close ? MOCK_END_CLOSE : MOCK_END_DONE;
    if (rc == 0 && c.fragment > 0)
        rc = plan_fragment(plan, (size_t)c.fragment);
done:
    deltas_free(&d);
    free(text);
    free(user);
    free(c.split);
    return rc;
}

int mock_api_reply(const struct mock_settings *set, const struct mock_request *req,
                   struct mock_plan *plan)
{
    enum api api;
    cJSON *root = NULL;
    const cJSON *model, *stream, *so, *mt;
    struct controls c;
    struct deltas d = {0};
    char *user = NULL, *text = NULL;
    const char *finish;
    size_t plen = strlen(req->path), keep;
    long in, out, max_tokens = -1;
    int exact, include_usage = 0, count = 0, kind = 0,
               rc = -1; /* kind: 1 completion, 2 embedding, 3 response, 4 compaction */
    const char *got_key = "";

    memset(&c, 0, sizeof(c));
    if (plen >= 17 && strcmp(req->path + plen - 17, "/chat/completions") == 0)
        api = API_OPENAI;
    else if (plen >= 9 && strcmp(req->path + plen - 9, "/messages") == 0)
        api = API_ANTHROPIC;
    else if (plen >= 15 && strcmp(req->path + plen - 15, "/v1/completions") == 0) {
        api = API_OPENAI;
        kind = 1;
    } else if (plen >= 14 && strcmp(req->path + plen - 14, "/v1/embeddings") == 0) {
        api = API_OPENAI;
        kind = 2;
    } else if (plen >= 22 && strcmp(req->path + plen - 22, "/messages/count_tokens") == 0) {
        api = API_ANTHROPIC;
        count = 1;
    } else if (plen >= 13 && strcmp(req->path + plen - 13, "/v1/responses") == 0) {
        api = API_OPENAI;
        kind = 3;
    } else if (plen >= 21 && strcmp(req->path + plen - 21, "/v1/responses/compact") == 0) {
        api = API_OPENAI;
        kind = 4;
    } else
        return reply_error(plan, API_OPENAI, req, 404, "Unknown request URL.");
    if (strcmp(req->method, "POST") != 0)
        return reply_error(plan, api, req, 404, "Unknown request URL (use POST).");

    if (api == API_OPENAI) {
        const char *auth = mock_header_get(req, "authorization");
        if (!auth || strncmp(auth, "Bearer ", 7) != 0)
            return reply_error(plan, api, req, 401,
                               "You didn't provide an API key. You need to provide your API "
                               "key in an Authorization header using Bearer auth.");
        if (set->openai_key && strcmp(auth + 7, set->openai_key) != 0)
            return reply_error(plan, api, req, 401, "Incorrect API key provided.");
        got_key = auth + 7;
    } else {
        /* the classic x-api-key, or Bearer as Anthropic's newer SDKs send it */
        const char *key = mock_header_get(req, "x-api-key");
        const char *auth = mock_header_get(req, "authorization");
        if (!key && auth && strncmp(auth, "Bearer ", 7) == 0)
            key = auth + 7;
        if (!key || (set->anthropic_key && strcmp(key, set->anthropic_key) != 0))
            return reply_error(plan, api, req, 401, "invalid x-api-key");
        got_key = key;
        if (!mock_header_get(req, "anthropic-version"))
            return reply_error(plan, api, req, 400, "anthropic-version: header is required");
    }

    root = cJSON_ParseWithLength(req->body, req->body_len);
    if (!cJSON_IsObject(root)) {
        rc =
            reply_error(plan, api, req, 400,
                        api == API_OPENAI ? "We could not parse the JSON body of your request."
                                          : "There was an error parsing the body of your request.");
        goto done;
    }
    model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!cJSON_IsString(model) || !model->valuestring[0]) {
        rc = reply_error(plan, api, req, 400,
                         api == API_OPENAI ? "you must provide a model parameter"
                                           : "model: Field required");
        goto done;
    }
    if (kind) {
        rc = kind == 1   ? completion_reply(plan, req, root, model->valuestring)
             : kind == 2 ? embedding_reply(plan, req, root, model->valuestring)
                         : responses_reply(plan, req, root, model->valuestring, kind == 4);
        goto done;
    }
    if (!cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(root, "messages"))) {
        rc = reply_error(plan, api, req, 400,
                         api == API_OPENAI ? "Missing required parameter: 'messages'."
                                           : "messages: Field required");
        goto done;
    }
    if (count) {
        rc = count_reply(plan, req, root);
        goto done;
    }
    mt = cJSON_GetObjectItemCaseSensitive(root, "max_tokens");
    if (api == API_OPENAI && !mt)
        mt = cJSON_GetObjectItemCaseSensitive(root, "max_completion_tokens");
    if (cJSON_IsNumber(mt))
        max_tokens = (long)mt->valuedouble;
    else if (api == API_ANTHROPIC) {
        rc = reply_error(plan, api, req, 400, "max_tokens: Field required");
        goto done;
    }
    stream = cJSON_GetObjectItemCaseSensitive(root, "stream");
    so = cJSON_GetObjectItemCaseSensitive(root, "stream_options");
    include_usage = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(so, "include_usage"));

    user = last_user_text(root);
    parse_controls(user, &c);
    plan->spaced = c.spaced;
    if (c.echo_key && !cJSON_IsTrue(stream)) {
        /* what OpenAI's 401 does: the key it was sent, in the message */
        char msg[512];
        snprintf(msg, sizeof(msg), "Incorrect API key provided: %s. (mock)", got_key);
        rc = reply_error(plan, api, req, 401, msg);
        goto done;
    }
    if (c.status && c.status != 200) {
        rc = reply_error(plan, api, req, c.status,
                         c.status == 429 ? "Rate limit reached for requests (mock)."
                                         : "The server had an error while processing your "
                                           "request. (mock)");
        goto done;
    }
    switch (c.fault) {
    case FAULT_STALL_BEFORE:
        plan->end = MOCK_END_STALL;
        rc = 0;
        goto done;
    case FAULT_RESET_BEFORE:
        plan->end = MOCK_END_RESET;
        rc = 0;
        goto done;
    case FAULT_GARBAGE_BEFORE:
        plan->end = MOCK_END_CLOSE;
        rc = mock_plan_add(plan, GARBAGE, sizeof(GARBAGE) - 1);
        goto done;
    default:
        break;
    }
    if (c.echo_key) {
        char t[512];
        int tn = snprintf(t, sizeof(t), "the key I got is %s, see", got_key);
        if (deltas_add(&d, t, (size_t)tn) < 0)
            goto done;
        exact = 1;
    } else if (build_answer(&c, req, user, &d, &exact) < 0)
        goto done;
    keep = d.n;
    finish = api == API_OPENAI ? "stop" : c.tool[0] ? "tool_use" : "end_turn";
    if (!exact && max_tokens >= 0 && (size_t)max_tokens < d.n) {
        keep = (size_t)max_tokens;
        finish = api == API_OPENAI ? "length" : "max_tokens";
    }
    while (d.n > keep)
        free(d.items[--d.n]);
    text = join(&d, d.n);
    if (!text)
        goto done;
    in = c.usage_in >= 0 ? c.usage_in : (long)(req->body_len / 4);
    out = c.usage_out >= 0 ? c.usage_out : count_words(text, strlen(text));
    if (c.delay_ms >= 0)
        plan->delay_ms = c.delay_ms;
    else if (c.slow)
        plan->delay_ms = 50;
    if (cJSON_IsTrue(stream))
        rc = stream_reply(plan, api, req, &c, model->valuestring, &d, finish, in, out,
                          api == API_OPENAI && include_usage);
    else
        rc = whole_reply(plan, api, req, &c, model->valuestring, text, finish, in, out);
    if (rc == 0 && c.crlf)
        rc = plan_crlf(plan);
    if (rc == 0 && c.fragment > 0)
        rc = plan_fragment(plan, (size_t)c.fragment);
done:
    deltas_free(&d);
    free(text);
    free(user);
    free(c.split);
    cJSON_Delete(root);
    return rc;
}
