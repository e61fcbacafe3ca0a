/* openai_embeddings.c -- the OpenAI Embeddings wire format (see wire.h).
 *
 * Requests: `input`, a string or an array of strings (tokens are refused by decide.c: they
 * cannot be scanned); whatever the policy redacted is what gets embedded. Answers:
 * `{"object":"list","data":[{"object":"embedding","index":i,"embedding":[...]}],"model",
 * "usage":{"prompt_tokens","total_tokens"}}`, relayed as received: vectors hold no text
 * to restore. Never streamed, never translated, never answered by the built-in engine
 * (it makes no embeddings): the functions for those report that they cannot. */
#include <stdio.h>
#include <string.h>

#include "proxy/proxy_int.h"
#include "proxy/wire.h"

static int read_request(const cJSON *in, struct proxy_chat *c, char *err, size_t errlen)
{
    (void)in;
    (void)c;
    snprintf(err, errlen, "An embeddings request is not a chat.");
    return -1;
}

/* usage.prompt_tokens is the input; there is no output */
static void read_usage(struct proxy_usage *u, const cJSON *o)
{
    if (!cJSON_IsObject(o))
        return;
    u->seen = 1;
    u->input = proxy_wire_num(o, "prompt_tokens");
    u->output = 0;
}

static int read_answer(const cJSON *j, struct proxy_answer *a, struct proxy_usage *u)
{
    (void)a;
    read_usage(u, cJSON_GetObjectItemCaseSensitive(j, "usage"));
    return -1;
}

static void read_event(struct proxy_req *r, const char *event, size_t elen, const char *data,
                       size_t dlen, const cJSON *j, struct proxy_piece *p)
{
    (void)r;
    (void)event;
    (void)elen;
    (void)data;
    (void)dlen;
    (void)j;
    memset(p, 0, sizeof(*p));
    p->error = "an embeddings answer is not a stream";
}

static int relay_event(struct proxy_req *r, const char *raw, size_t raw_len, const char *event,
                       size_t elen, const char *data, size_t dlen)
{
    (void)event;
    (void)elen;
    (void)data;
    (void)dlen;
    proxy_conn_stream_write(r, raw, raw_len);
    return 0;
}

static void stream_nothing(struct proxy_req *r)
{
    (void)r;
}

static void stream_text(struct proxy_req *r, const char *text)
{
    (void)r;
    (void)text;
}

static char *write_answer(struct proxy_req *r, const struct proxy_answer *a)
{
    (void)r;
    (void)a;
    return NULL;
}

const struct proxy_wire proxy_wire_openai_embeddings = {
    .name = "openai-embeddings",
    .up_path = "/embeddings",
    .id_prefix = "",
    .read_request = read_request,
    .build_request = NULL, /* nothing is translated into it */
    .error_type = proxy_openai_error_type,
    .error_body = proxy_openai_error_body,
    .error_event = proxy_openai_error_event,
    .read_usage = read_usage,
    .read_answer = read_answer,
    .read_event = read_event,
    .relay_event = relay_event,
    .restore_answer = NULL,
    .stream_open = stream_nothing,
    .stream_text = stream_text,
    .stream_close = stream_nothing,
    .write_answer = write_answer,
};
