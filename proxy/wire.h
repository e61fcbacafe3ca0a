/* wire.h -- one API's wire format: everything that differs between the APIs, in one
 * file per API.
 *
 * The gateway speaks each API it serves through one `struct proxy_wire`:
 *
 *   openai_chat.c         OpenAI Chat Completions   (/v1/chat/completions)
 *   anthropic_messages.c  Anthropic Messages        (/v1/messages)
 *   openai_completions.c  OpenAI legacy Completions (/v1/completions)
 *   openai_embeddings.c   OpenAI Embeddings         (/v1/embeddings)
 *   openai_responses.c    OpenAI Responses          (/v1/responses, /v1/responses/compact)
 *
 * and the next surfaces are added as files, not as branches in the request path.
 * Completions and Embeddings are never translated: they go only to a provider of their own
 * API (or, for Completions, the built-in engine), so they have no build_request, their
 * read_event is never called, and they have no canonical-chat reading beyond the engine's
 * prompt.
 * Responses are not translated into either: a Responses client's request goes to an OpenAI
 * provider as it is, or is read into the canonical chat (the engine, an Anthropic provider).
 * A format owns, for its API:
 *
 *   - reading a request into the canonical chat (struct proxy_chat), and building a
 *     request from one (translation between APIs, the built-in engine's prompt);
 *   - its error shape, and the event that ends a broken stream;
 *   - reading usage, text and stop reasons out of its answers and stream events;
 *   - relaying its own stream events to a client of the same API, with placeholders
 *     restored and a usage chunk the client did not ask for removed;
 *   - writing an answer, whole or streamed, from text pieces (the engine's, or another
 *     API's translated).
 *
 * The request path picks two formats per request: the client's (r->wire) and, for a
 * provider, the provider's (r->up_wire). When they differ, the provider's events are read
 * into text pieces (read_event) and written out in the client's (stream_*).
 *
 * Every function runs on the event loop. cJSON trees passed in are borrowed; strings
 * returned are malloc'd and the caller's. Errors: 0 / -1 with a sentence in err where
 * there is one. */
#ifndef AIRLOCK_PROXY_WIRE_H
#define AIRLOCK_PROXY_WIRE_H

#include <stddef.h>

#include <cJSON.h>

struct config_model;
struct proxy_req;
struct proxy_usage;

/* Why an answer stopped, in no API's vocabulary. */
enum proxy_stop { PROXY_STOP_END, PROXY_STOP_LENGTH, PROXY_STOP_TOOL, PROXY_STOP_FILTER };

/* The canonical chat: a text-only conversation and the sampling options every API shares.
 * What a format cannot put here (tools, images, n > 1, ...) it refuses to read. */
struct proxy_chat_msg {
    const char *role; /* "system", "user" or "assistant" (static strings) */
    char *text;       /* owned */
};

struct proxy_chat {
    struct proxy_chat_msg *msgs; /* in order; system messages included where they were */
    size_t n, cap;
    double max_tokens;   /* < 0: absent */
    double temperature;  /* < 0: absent */
    double top_p;        /* < 0: absent */
    double top_k;        /* < 0: absent */
    double seed;         /* < 0: absent */
    const char *stop[4]; /* borrowed from the request's cJSON */
    size_t n_stop;
    int stream;
};

/* A whole answer read from a provider, or made by the engine. */
struct proxy_answer {
    char *text; /* owned */
    enum proxy_stop stop;
    char id[96];     /* the provider's id, or "" */
    char model[128]; /* the model that answered, or "" */
};

/* What one provider stream event said, for a client of another API. */
struct proxy_piece {
    const char *text; /* borrowed from the event's cJSON, or NULL */
    int has_stop;     /* `stop` is set */
    enum proxy_stop stop;
    int open;          /* the stream's first event (id/model may be set in r) */
    int end;           /* the stream's last event */
    const char *error; /* the provider's error message, or NULL */
};

struct proxy_wire {
    const char *name;      /* "openai-chat", "anthropic-messages", ... */
    const char *up_path;   /* an OpenAI-type provider's path after its prefix, or NULL */
    const char *id_prefix; /* the id of an answer the gateway writes: "chatcmpl-", ... */

    /* -- requests -- */
    /* read_request -- the canonical chat of request `in`; -1 (err) when it holds what the
     * chat cannot carry. The chat borrows strings from `in` (stop) and owns its texts. */
    int (*read_request)(const cJSON *in, struct proxy_chat *c, char *err, size_t errlen);
    /* build_request -- this API's request for model m from chat c, into object o; flags get
     * PROXY_OUTBOUND_* bits (a usage option the client did not ask for). NULL for an API
     * no request is translated into (Completions, Embeddings, Responses). */
    int (*build_request)(const struct proxy_chat *c, const struct config_model *m, cJSON *o,
                         int *flags, char *err, size_t errlen);

    /* -- errors -- */
    const char *(*error_type)(int status);
    /* error_body -- `{"error":...}` in this API's shape (malloc'd) */
    char *(*error_body)(int status, const char *type, const char *message, size_t *len);
    /* error_event -- the stream event that carries that body (malloc'd) */
    char *(*error_event)(const char *body, size_t *len);

    /* -- answers from a provider of this API -- */
    /* read_usage -- fold the usage object of an answer or event into u */
    void (*read_usage)(struct proxy_usage *u, const cJSON *usage);
    /* read_answer -- a whole answer's text, stop reason, id and model; usage into u */
    int (*read_answer)(const cJSON *j, struct proxy_answer *a, struct proxy_usage *u);
    /* read_event -- one stream event (`event` may be empty); fills p, folds usage into
     * r->usage and id/model into r->tr_id/tr_model; the cJSON `j` is the event's data
     * (NULL when it is not JSON, e.g. OpenAI's [DONE]) */
    void (*read_event)(struct proxy_req *r, const char *event, size_t elen, const char *data,
                       size_t dlen, const cJSON *j, struct proxy_piece *p);
    /* relay_event -- relay one event to a client of this same API: usage read,
     * placeholders restored, the gateway's own usage chunk removed. -1: out of memory */
    int (*relay_event)(struct proxy_req *r, const char *raw, size_t raw_len, const char *event,
                       size_t elen, const char *data, size_t dlen);
    /* restore_answer -- restore placeholders in a whole answer of this API, in place; NULL
     * when its answers hold no text (embeddings): relayed as received */
    void (*restore_answer)(struct proxy_req *r, cJSON *j);

    /* -- answers written in this API to a client -- */
    void (*stream_open)(struct proxy_req *r);
    void (*stream_text)(struct proxy_req *r, const char *text); /* restored already */
    void (*stream_close)(struct proxy_req *r);                  /* uses r->tr_stop, r->usage */
    /* stream_fail -- end a started stream with this API's failure event(s) (NULL: the
     * error_event of error_body is written) */
    void (*stream_fail)(struct proxy_req *r, int status, const char *message);
    /* write_answer -- a whole answer (malloc'd JSON) from text (restored already) */
    char *(*write_answer)(struct proxy_req *r, const struct proxy_answer *a);
};

extern const struct proxy_wire proxy_wire_openai_chat;
extern const struct proxy_wire proxy_wire_anthropic_messages;
extern const struct proxy_wire proxy_wire_openai_completions;
extern const struct proxy_wire proxy_wire_openai_embeddings;
extern const struct proxy_wire proxy_wire_openai_responses;
extern const struct proxy_wire proxy_wire_openai_responses_compact;

/* ---- shared by the formats (wire.c) ---- */

/* proxy_chat_add -- append a message (text consumed: owned by the chat, or freed) */
int proxy_chat_add(struct proxy_chat *c, const char *role, char *text);
void proxy_chat_init(struct proxy_chat *c);
void proxy_chat_deinit(struct proxy_chat *c); /* texts wiped */
/* proxy_wire_content_text -- a message content as text: a string, null (""), or an array
 * of text parts/blocks concatenated; -1 when it holds anything else. *out malloc'd. */
int proxy_wire_content_text(const cJSON *c, char **out);
/* proxy_wire_untranslatable -- the first member of request `in` that the canonical chat
 * cannot carry (tools, n > 1, a JSON response format, ...), or NULL */
const char *proxy_wire_untranslatable(const cJSON *in);
/* proxy_wire_translate_request -- request `in` (API `from`) as API `to` for model m:
 * *out malloc'd JSON. Flags as build_request. */
int proxy_wire_translate_request(const struct proxy_wire *from, const struct proxy_wire *to,
                                 const struct config_model *m, const cJSON *in, char **out,
                                 size_t *out_len, int *flags, char *err, size_t errlen);
/* proxy_wire_print -- root printed unformatted (malloc'd, *len its length; NULL and 0 when
 * memory runs out); root is deleted either way */
char *proxy_wire_print(cJSON *root, size_t *len);
/* proxy_wire_sse -- the bytes of one SSE event: an `event: NAME` line when name is not
 * NULL, then `data: DATA` and the blank line (malloc'd; *len its length) */
char *proxy_wire_sse(const char *name, const char *data, size_t *len);
/* proxy_wire_write_event -- one SSE event (`event:` line when event is not NULL) of obj,
 * to the client */
void proxy_wire_write_event(struct proxy_req *r, const char *event, const cJSON *obj);
/* proxy_wire_restore -- restore placeholders in a piece of text for `slot` (flush: the
 * slot's end): malloc'd (the text copied when the request redacted nothing) */
char *proxy_wire_restore(struct proxy_req *r, int slot, const char *text, int flush);
/* proxy_wire_restore_field -- restore the string member `field` of holder in place */
void proxy_wire_restore_field(struct proxy_req *r, cJSON *holder, const char *field, int slot,
                              int flush);
/* proxy_wire_restoring -- the request redacted something, so answers are restored */
int proxy_wire_restoring(const struct proxy_req *r);
/* proxy_openai_relay -- one event of an OpenAI provider's stream (Chat or Completions) for
 * a client of the same API: usage read from every chunk (the strict parse), the usage chunk
 * the gateway asked for taken out, placeholders restored in each choice's `field` (inside
 * its `holder` object, or on the choice itself when holder is NULL), byte for byte when
 * nothing changes. -1: out of memory */
int proxy_openai_relay(struct proxy_req *r, const char *raw, size_t raw_len, const char *data,
                       size_t dlen, const char *holder, const char *field);
/* OpenAI's finish_reason to and from the canonical stop reason (Chat and Completions) */
enum proxy_stop proxy_openai_stop_from(const char *finish_reason); /* NULL: END */
const char *proxy_openai_stop_to(enum proxy_stop s);
/* proxy_openai_read_answer -- a whole Chat or Completions answer's text (the first choice's
 * `field`, inside its `holder` object or on the choice itself when holder is NULL), stop
 * reason, id and model; -1 out of memory. Usage is the format's own to read. */
int proxy_openai_read_answer(const cJSON *j, const char *holder, const char *field,
                             struct proxy_answer *a);
/* OpenAI's error shape and error event, shared by its three wire formats */
const char *proxy_openai_error_type(int status);
char *proxy_openai_error_body(int status, const char *type, const char *message, size_t *len);
char *proxy_openai_error_event(const char *body, size_t *len);
/* proxy_wire_num -- a count member as long, clamped to 0 .. PROXY_MAX_COUNT (0 when absent
 * or not a number) */
#define PROXY_MAX_COUNT 1000000000000L
long proxy_wire_num(const cJSON *o, const char *k);
/* proxy_wire_limit -- a request's length limit (max_tokens, max_output_tokens, ...) for the
 * canonical chat: -1 when absent or null; the number when it is a whole number of at least 1
 * (or +infinity); 0 for anything else (-1, 2.5, "5", true, []), which no request may ask
 * for: the built-in engine and proxy_wire_translate_request refuse it with a 400. */
double proxy_wire_limit(const cJSON *v);

#endif
