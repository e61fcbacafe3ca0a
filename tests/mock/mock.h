/* mock.h -- the mock LLM provider used by integration, e2e and bench: shared types.
 *
 * mock_server.c owns sockets, TLS and HTTP/1.1 framing (keep-alive, pipelining,
 * Content-Length and chunked bodies); mock_api.c turns one parsed request into a
 * reply plan that speaks OpenAI's or Anthropic's wire format. A plan is a list of
 * byte pieces sent with an optional delay between them and an end action, which
 * lets tests pick stalls, resets and garbage at exact points of a stream.
 * Single-threaded: everything runs on one libevent loop. */
#ifndef AIRLOCK_TESTS_MOCK_H
#define AIRLOCK_TESTS_MOCK_H

#include <stddef.h>

#define MOCK_MAX_HEADERS 128

struct mock_header {
    const char *name; /* borrowed from the request's head copy, NUL-terminated */
    const char *value;
};

struct mock_request {
    const char *method;
    const char *path; /* without the query string */
    int http10;       /* HTTP/1.0 request */
    int want_close;   /* HTTP/1.0 without keep-alive, or Connection: close */
    struct mock_header headers[MOCK_MAX_HEADERS];
    size_t n_headers;
    const char *body; /* decoded body (chunked bodies de-chunked); NUL-terminated */
    size_t body_len;
    unsigned long seq; /* 1-based request number across the server's life */
};

/* What happens after the last piece of a plan has been written. */
enum mock_end {
    MOCK_END_DONE,  /* response complete; the connection may serve the next request */
    MOCK_END_CLOSE, /* flush, then close the connection (FIN) */
    MOCK_END_STALL, /* send nothing more, keep the connection open until the peer leaves */
    MOCK_END_RESET, /* flush, then abort the connection with a TCP RST */
};

struct mock_piece {
    char *data; /* owned */
    size_t len;
};

struct mock_plan {
    struct mock_piece *pieces; /* owned; the first is normally the status line + headers */
    size_t n, cap;
    int delay_ms;  /* between pieces after the first; 0: all at once */
    int chunked;   /* pieces after the first are sent as HTTP chunks */
    int truncated; /* chunked, but never send the last-chunk: a broken body */
    int spaced;    /* stream events' JSON with a space after each ':' and ',' (json.dumps) */
    enum mock_end end;
};

/* Provider-side settings, from the command line. */
struct mock_settings {
    const char *openai_key;    /* NULL: any bearer token is accepted */
    const char *anthropic_key; /* NULL: any x-api-key is accepted */
};

const char *mock_header_get(const struct mock_request *req, const char *name);

/* mock_plan_add -- append a copy of len bytes. Returns 0 or -1 on allocation failure. */
int mock_plan_add(struct mock_plan *plan, const char *data, size_t len);
void mock_plan_deinit(struct mock_plan *plan);

/* mock_api_reply -- build the plan that answers req (provider paths only). Returns 0,
 * or -1 when out of memory (the caller then closes the connection). */
int mock_api_reply(const struct mock_settings *set, const struct mock_request *req,
                   struct mock_plan *plan);

/* mock_api_simple -- a complete non-streaming response with a JSON body. */
int mock_api_simple(struct mock_plan *plan, int status, const char *content_type, const char *body,
                    size_t len, int close_after);

#endif
