/* server.c -- client side of the gateway: listeners, TLS, HTTP/1.1 over bufferevents.
 *
 * Requests are parsed with Debian's http-parser. One request per connection is
 * answered at a time: when a request is complete the parser is paused, so that
 * pipelined requests wait in the input buffer and are answered in order once the
 * current answer is written. Limits: header bytes, body bytes, header time,
 * idle time, connection count. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <sodium.h>

#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>

#include "common/log.h"
#include "common/wipe.h"
#include "proxy/proxy_int.h"

static void conn_read_cb(struct bufferevent *bev, void *arg);
static void conn_write_cb(struct bufferevent *bev, void *arg);
static void conn_event_cb(struct bufferevent *bev, short what, void *arg);
static void conn_free(struct proxy_conn *c);
static void conn_process(struct proxy_conn *c);

/* conn_flush -- send what the answer writers staged in c->out. On a plain socket whose
 * bufferevent has nothing queued, the bytes are written directly, from the loop: handing
 * them to the bufferevent would wake its write event, an epoll_ctl to add it and one to
 * delete it once drained, 4 of the 11 system calls of a proxied request
 * (docs/performance.md). (The bufferevent's own output cannot be written from outside: its
 * front is frozen.) Only what the kernel does not take goes to the bufferevent, which then
 * keeps the order, the write timeout and the watermark callback. TLS connections always
 * write through their bufferevent. */
static void conn_flush(struct proxy_conn *c)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);

    if (evbuffer_get_length(c->out) == 0)
        return;
    if (!c->tls && evbuffer_get_length(out) == 0)
        (void)evbuffer_write(c->out, bufferevent_getfd(c->bev)); /* an error: libevent's */
    if (evbuffer_get_length(c->out) > 0)
        evbuffer_add_buffer(out, c->out);
}

static void conn_reset_request(struct proxy_conn *c)
{
    int i;

    for (i = 0; i < c->n_hdrs; i++) {
        free(c->hdrs[i].name);
        free(c->hdrs[i].value);
    }
    c->n_hdrs = 0;
    c->in_value = 0;
    c->header_bytes = 0;
    free(c->url);
    c->url = NULL;
    c->url_len = 0;
    c->body_too_large = 0;
    if (c->body)
        evbuffer_drain(c->body, evbuffer_get_length(c->body));
}

const char *proxy_conn_header(const struct proxy_conn *c, const char *lname)
{
    int i;

    for (i = 0; i < c->n_hdrs; i++)
        if (c->hdrs[i].name && strcmp(c->hdrs[i].name, lname) == 0)
            return c->hdrs[i].value ? c->hdrs[i].value : "";
    return NULL;
}

/* append to a malloc'd string, with a cap */
static int str_append(char **s, size_t *len, const char *at, size_t n, size_t cap)
{
    char *p;

    if (*len + n > cap)
        return -1;
    p = realloc(*s, *len + n + 1);
    if (!p)
        return -1;
    memcpy(p + *len, at, n);
    *len += n;
    p[*len] = '\0';
    *s = p;
    return 0;
}

/* ---- http-parser callbacks ---- */

static int on_message_begin(http_parser *p)
{
    struct proxy_conn *c = p->data;
    struct timeval tv;

    conn_reset_request(c);
    c->state = CONN_READING;
    c->reading_body = 0;
    tv.tv_sec = c->px->snap->cfg->limits.header_timeout_ms / 1000;
    tv.tv_usec = (c->px->snap->cfg->limits.header_timeout_ms % 1000) * 1000;
    evtimer_add(c->header_timer, &tv);
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t n)
{
    struct proxy_conn *c = p->data;

    c->header_bytes += n;
    return str_append(&c->url, &c->url_len, at, n, PROXY_MAX_URL);
}

static int on_header_field(http_parser *p, const char *at, size_t n)
{
    struct proxy_conn *c = p->data;
    size_t len, i;

    c->header_bytes += n;
    if (c->header_bytes > c->px->snap->cfg->limits.max_header_bytes)
        return -1;
    if (c->in_value || c->n_hdrs == 0) {
        if (c->n_hdrs >= PROXY_MAX_HEADERS)
            return -1;
        c->n_hdrs++;
        c->hdrs[c->n_hdrs - 1].name = NULL;
        c->hdrs[c->n_hdrs - 1].value = NULL;
        c->in_value = 0;
    }
    len = c->hdrs[c->n_hdrs - 1].name ? strlen(c->hdrs[c->n_hdrs - 1].name) : 0;
    if (str_append(&c->hdrs[c->n_hdrs - 1].name, &len, at, n, 1024) < 0)
        return -1;
    for (i = 0; i < len; i++)
        c->hdrs[c->n_hdrs - 1].name[i] =
            (char)tolower((unsigned char)c->hdrs[c->n_hdrs - 1].name[i]);
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t n)
{
    struct proxy_conn *c = p->data;
    size_t len;

    c->header_bytes += n;
    if (c->header_bytes > c->px->snap->cfg->limits.max_header_bytes || c->n_hdrs == 0)
        return -1;
    c->in_value = 1;
    len = c->hdrs[c->n_hdrs - 1].value ? strlen(c->hdrs[c->n_hdrs - 1].value) : 0;
    return str_append(&c->hdrs[c->n_hdrs - 1].value, &len, at, n,
                      c->px->snap->cfg->limits.max_header_bytes);
}

static int on_headers_complete(http_parser *p)
{
    struct proxy_conn *c = p->data;
    int ms = c->px->snap->cfg->limits.body_timeout_ms;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

    /* The body has its own deadline, whatever the drip rate: the idle timeout is reset by
     * every byte, so a body sent a byte a second would otherwise hold its slot forever. */
    evtimer_del(c->header_timer);
    c->reading_body = 1;
    evtimer_add(c->header_timer, &tv);
    if (p->content_length != ULLONG_MAX &&
        p->content_length > (uint64_t)c->px->snap->cfg->limits.max_body_bytes) {
        /* answer 413 now rather than read (and wait for) a body we will refuse */
        c->body_too_large = 1;
        c->keep_alive = 0;
        http_parser_pause(p, 1);
        return 0;
    }
    /* curl and others wait (1 s) for this before sending a larger body */
    {
        const char *e = proxy_conn_header(c, "expect");
        if (e && strcasecmp(e, "100-continue") == 0 && p->http_minor >= 1) {
            evbuffer_add(c->out, "HTTP/1.1 100 Continue\r\n\r\n", 25);
            conn_flush(c);
        }
    }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t n)
{
    struct proxy_conn *c = p->data;

    if (c->body_too_large)
        return 0;
    if (evbuffer_get_length(c->body) + n > c->px->snap->cfg->limits.max_body_bytes) {
        c->body_too_large = 1;
        evbuffer_drain(c->body, evbuffer_get_length(c->body));
        return 0;
    }
    return evbuffer_add(c->body, at, n);
}

static int on_message_complete(http_parser *p)
{
    struct proxy_conn *c = p->data;

    c->keep_alive = http_should_keep_alive(p);
    c->state = CONN_BUSY;
    c->reading_body = 0;
    evtimer_del(c->header_timer);
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ---- responses ---- */

static const char *status_text(int status)
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
    case 405:
        return "Method Not Allowed";
    case 407:
        return "Proxy Authentication Required";
    case 408:
        return "Request Timeout";
    case 413:
        return "Payload Too Large";
    case 426:
        return "Upgrade Required";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return status < 300 ? "OK" : status < 500 ? "Client Error" : "Server Error";
    }
}

static void write_head(struct proxy_req *r, int status, const char *content_type, long length)
{
    struct proxy_conn *c = r->conn;
    struct evbuffer *out = c->out;
    int keep = c->keep_alive && !c->px->draining;

    evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\n", status, status_text(status));
    evbuffer_add_printf(out, "content-type: %s\r\n", content_type);
    if (length >= 0)
        evbuffer_add_printf(out, "content-length: %ld\r\n", length);
    else
        evbuffer_add_printf(out, "transfer-encoding: chunked\r\ncache-control: no-cache\r\n");
    evbuffer_add_printf(out, "x-airlock-request-id: %s\r\n", r->id);
    if (r->d.has_policy && r->d.policy.rule)
        evbuffer_add_printf(out, "x-airlock-rule: %s\r\n", r->d.policy.rule);
    if (r->d.model && r->d.prov && r->d.has_policy && r->d.policy.verdict != POLICY_BLOCK)
        evbuffer_add_printf(out, "x-airlock-route: %s/%s\r\n", r->d.prov->name, r->d.model->name);
    if (r->d.modified && r->dispatched) /* (a request that never left was not changed) */
        evbuffer_add_printf(out, "x-airlock-modified: %s\r\n", r->d.modified);
    if (status == 407) /* an intercepted request with no key (forward.c) */
        evbuffer_add_printf(out, "proxy-authenticate: Basic realm=\"airlock\"\r\n");
    if (!keep)
        evbuffer_add_printf(out, "connection: close\r\n");
    evbuffer_add(out, "\r\n", 2);
    c->keep_alive = keep;
}

/* The audit's copy of what the client is sent is kept before the client gets it; when
 * memory for it runs out the bytes are not sent either (r->copy_lost), so the audit never
 * holds an answer with bytes missing that the client had. */
/* AIRLOCK_FAULT_COPY=N (tests): the Nth copy kept for the audit fails as if memory ran
 * out (counted over the process; read once). Never set in production. */
static int copy_fault(void)
{
    static long at = -1, n;
    if (at < 0) {
        const char *e = getenv("AIRLOCK_FAULT_COPY");
        at = e && *e ? strtol(e, NULL, 10) : 0;
        if (at > 0)
            log_warn("AIRLOCK_FAULT_COPY=%ld: an audit copy will fail (test hook)", at);
    }
    return at > 0 && ++n == at;
}

static int keep_copy(struct proxy_req *r, const char *data, size_t len)
{
    if (!r->record || r->copy_lost)
        return r->copy_lost ? -1 : 0;
    if (!copy_fault() && evbuffer_add(r->client_bytes, data, len) == 0)
        return 0;
    r->copy_lost = 1;
    snprintf(r->error, sizeof(r->error),
             "the audit's copy of the answer could not be kept (out of memory), so the answer "
             "was not sent");
    return -1;
}

static const char copy_lost_openai[] =
    "{\"error\":{\"message\":\"The gateway could not keep the audit copy of this answer, so it "
    "was not sent.\",\"type\":\"server_error\",\"code\":\"503\"}}";
static const char copy_lost_anthropic[] =
    "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"The gateway "
    "could not keep the audit copy of this answer, so it was not sent.\"}}";

void proxy_conn_reply(struct proxy_req *r, int status, const char *content_type, const char *body,
                      size_t len)
{
    if (r->conn && r->hold != PROXY_HOLD_OFF && r->held &&
        evbuffer_expand(r->held, len + 512) < 0 && !r->copy_lost) {
        r->copy_lost = 1; /* no room to hold it: answered with the short 503 below */
        snprintf(r->error, sizeof(r->error),
                 "the answer could not be held for its record (out of memory), so it was not sent");
    }
    if (keep_copy(r, body, len) < 0) {
        /* fail closed: the client gets a 503 that the audit holds instead */
        status = 503;
        content_type = "application/json";
        body = r->api == PROXY_API_ANTHROPIC ? copy_lost_anthropic : copy_lost_openai;
        len = strlen(body);
        evbuffer_drain(r->client_bytes, evbuffer_get_length(r->client_bytes));
        if (r->record)
            (void)evbuffer_add(r->client_bytes, body, len); /* best effort; flagged above */
    }
    proxy_req_answer_status(r, status);
    proxy_req_advance(r, REQ_ANSWERED);
    if (!r->conn)
        return;
    if (r->hold != PROXY_HOLD_OFF && r->held) {
        r->hold = PROXY_HOLD_REPLY;
        r->held_status = status;
        snprintf(r->held_ctype, sizeof(r->held_ctype), "%s", content_type);
        (void)evbuffer_add(r->held, body, len); /* expanded before the copy was kept */
        return;
    }
    r->conn->chunked = 0;
    write_head(r, status, content_type, (long)len);
    if (r->conn->parser.method != HTTP_HEAD) /* (an answer to HEAD has no body: RFC 9110) */
        evbuffer_add(r->conn->out, body, len);
    conn_flush(r->conn);
    r->conn->px->metrics.bytes_out += len;
}

void proxy_conn_stream_start(struct proxy_req *r, int status, const char *content_type)
{
    proxy_req_answer_status(r, status);
    proxy_req_advance(r, REQ_ANSWERING);
    if (!r->conn)
        return;
    r->conn->chunked = 1;
    write_head(r, status, content_type, -1);
    conn_flush(r->conn);
}

void proxy_conn_stream_write(struct proxy_req *r, const char *data, size_t len)
{
    struct evbuffer *out;

    if (len == 0 || r->state >= REQ_ANSWERED)
        return; /* nothing is written after the end of an answer */
    if (keep_copy(r, data, len) < 0)
        return; /* not sent: the relay sees copy_lost and ends the request */
    if (!r->conn)
        return;
    out = r->conn->out;
    evbuffer_add_printf(out, "%zx\r\n", len);
    evbuffer_add(out, data, len);
    evbuffer_add(out, "\r\n", 2);
    r->conn->px->metrics.bytes_out += len;
    if (r->corked)
        return; /* proxy_conn_stream_cork(r, 0) writes it */
    conn_flush(r->conn);
    out = bufferevent_get_output(r->conn->bev); /* what the kernel did not take */
    /* backpressure: a client that reads slower than the provider writes stops
     * the provider (TCP does the rest) instead of growing our memory */
    if (evbuffer_get_length(out) > PROXY_CLIENT_HIGH_WATER && r->up)
        proxy_upstream_pause(r, 1);
}

void proxy_conn_stream_cork(struct proxy_req *r, int on)
{
    struct evbuffer *out;

    r->corked = on;
    if (on || !r->conn)
        return;
    conn_flush(r->conn);
    out = bufferevent_get_output(r->conn->bev);
    if (evbuffer_get_length(out) > PROXY_CLIENT_HIGH_WATER && r->up)
        proxy_upstream_pause(r, 1);
}

void proxy_conn_stream_end(struct proxy_req *r)
{
    if (r->state >= REQ_ANSWERED)
        return;
    proxy_req_advance(r, REQ_ANSWERED);
    if (!r->conn)
        return;
    if (r->hold != PROXY_HOLD_OFF && r->held) {
        r->hold = PROXY_HOLD_STREAM_END;
        return;
    }
    evbuffer_add(r->conn->out, "0\r\n\r\n", 5);
    conn_flush(r->conn);
}

void proxy_conn_stream_write_final(struct proxy_req *r, const char *data, size_t len)
{
    if (r->state >= REQ_ANSWERED)
        return;
    if (r->hold == PROXY_HOLD_OFF || !r->held || !r->conn) {
        proxy_conn_stream_write(r, data, len);
        return;
    }
    /* room for the held bytes first, so that what the audit keeps is what will be sent */
    if (evbuffer_expand(r->held, len) < 0) {
        r->copy_lost = 1;
        return;
    }
    if (keep_copy(r, data, len) < 0)
        return;
    (void)evbuffer_add(r->held, data, len); /* cannot fail: expanded above */
}

void proxy_conn_flush_held(struct proxy_req *r)
{
    struct evbuffer *out;
    size_t n;

    enum proxy_hold was = r->hold;

    r->hold = PROXY_HOLD_OFF;
    if (!r->held || !r->conn)
        return;
    n = evbuffer_get_length(r->held);
    out = r->conn->out;
    if (was == PROXY_HOLD_REPLY) {
        r->conn->chunked = 0;
        write_head(r, r->held_status, r->held_ctype, (long)n);
        if (r->conn->parser.method == HTTP_HEAD)
            evbuffer_drain(r->held, n);
        else
            evbuffer_add_buffer(out, r->held);
        r->conn->px->metrics.bytes_out += n;
    } else {
        if (n) {
            evbuffer_add_printf(out, "%zx\r\n", n);
            evbuffer_add_buffer(out, r->held);
            evbuffer_add(out, "\r\n", 2);
            r->conn->px->metrics.bytes_out += n;
        }
        if (was == PROXY_HOLD_STREAM_END)
            evbuffer_add(out, "0\r\n\r\n", 5);
    }
    conn_flush(r->conn);
}

#define PROXY_LINGER_MS 2000

/* conn_close_gracefully -- close once the answer is written. A plain connection
 * first shuts its sending side and keeps reading (and discarding) what the client
 * still sends, for at most PROXY_LINGER_MS, so a client that is still writing a
 * refused body reads our error instead of a TCP reset. */
static void conn_close_gracefully(struct proxy_conn *c)
{
    c->state = CONN_CLOSING;
    evtimer_del(c->header_timer);
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
        conn_write_cb(c->bev, c);
}

void proxy_conn_flush(struct proxy_conn *c)
{
    conn_flush(c);
}

void proxy_conn_close(struct proxy_conn *c)
{
    conn_close_gracefully(c);
}

void proxy_conn_free(struct proxy_conn *c)
{
    conn_free(c);
}

/* A bare error for a request that never became a proxy_req (parse errors,
 * limits before the body): OpenAI's shape, since the API is unknown. */
static void conn_reply_raw_error(struct proxy_conn *c, int status, const char *type,
                                 const char *message)
{
    struct evbuffer *out = c->out;
    char *body = NULL;
    size_t len = 0;
    char id[33];
    unsigned char rnd[16];
    int i;

    randombytes_buf(rnd, sizeof(rnd));
    for (i = 0; i < 16; i++)
        snprintf(id + 2 * i, 3, "%02x", rnd[i]);
    body = proxy_wire_openai_chat.error_body(status, type, message, &len);
    evbuffer_add_printf(out,
                        "HTTP/1.1 %d %s\r\ncontent-type: application/json\r\n"
                        "content-length: %zu\r\nx-airlock-request-id: %s\r\n"
                        "connection: close\r\n\r\n",
                        status, status_text(status), len, id);
    evbuffer_add(out, body, len);
    free(body);
    conn_flush(c);
    conn_close_gracefully(c);
}

/* The request's answer is complete: go on with the next pipelined request, or
 * close. Called by proxy_req_finish. */
void proxy_conn_request_done(struct proxy_conn *c)
{
    c->req = NULL;
    conn_reset_request(c);
    if (!c->keep_alive || c->px->draining) {
        conn_close_gracefully(c);
        return;
    }
    c->state = CONN_IDLE;
    http_parser_pause(&c->parser, 0);
    /* pipelined bytes may already be waiting */
    if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
        conn_process(c);
}

/* ---- connection lifecycle ---- */

static void conn_dispatch(struct proxy_conn *c)
{
    struct proxy_req *r;

    if (c->forward && !c->intercept) {
        c->state = CONN_FORWARD;
        proxy_forward_dispatch(c);
        return;
    }
    if (c->body_too_large) {
        char msg[128];
        snprintf(msg, sizeof(msg), "The request body is larger than the limit of %zu bytes.",
                 c->px->snap->cfg->limits.max_body_bytes);
        conn_reply_raw_error(c, 413, "invalid_request_error", msg);
        return;
    }
    r = proxy_req_new(c);
    if (!r) {
        conn_reply_raw_error(c, 500, "server_error", "The gateway is out of memory.");
        return;
    }
    c->req = r;
    proxy_req_handle(r);
}

static void conn_process(struct proxy_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);

    while (c->state == CONN_IDLE || c->state == CONN_READING) {
        size_t avail = evbuffer_get_length(in), n;
        struct evbuffer_iovec v;

        if (avail == 0)
            return;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            return;
        n = http_parser_execute(&c->parser, &parser_settings, v.iov_base, v.iov_len);
        evbuffer_drain(in, n);
        if (HTTP_PARSER_ERRNO(&c->parser) == HPE_PAUSED) {
            conn_dispatch(c);
            return;
        }
        if (HTTP_PARSER_ERRNO(&c->parser) != HPE_OK) {
            enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
            if (c->forward && !c->intercept) {
                char msg[160];
                snprintf(msg, sizeof(msg), "Malformed proxy request: %s.",
                         http_errno_description(e));
                proxy_forward_bad_request(c, e == HPE_HEADER_OVERFLOW ? 431 : 400, msg);
                return;
            }
            if (c->header_bytes > c->px->snap->cfg->limits.max_header_bytes ||
                c->n_hdrs >= PROXY_MAX_HEADERS || e == HPE_HEADER_OVERFLOW)
                conn_reply_raw_error(c, 431, "invalid_request_error",
                                     "The request headers are larger than the limit.");
            else {
                char msg[160];
                snprintf(msg, sizeof(msg), "Malformed HTTP request: %s.",
                         http_errno_description(e));
                conn_reply_raw_error(c, 400, "invalid_request_error", msg);
            }
            return;
        }
        if (n == 0)
            return;
    }
}

static void conn_read_cb(struct bufferevent *bev, void *arg)
{
    struct proxy_conn *c = arg;

    (void)bev;
    if (c->state == CONN_IDLE || c->state == CONN_READING)
        conn_process(c);
    else if (c->state == CONN_CLOSING)
        evbuffer_drain(bufferevent_get_input(c->bev),
                       evbuffer_get_length(bufferevent_get_input(c->bev)));
}

/* A closing TLS filter's last records wait in the socket's own bufferevent (an
 * intercepted connection, proxy_conn_start_tls): its callbacks are taken from the filter,
 * which writes nothing more, and the connection is freed once they are out. */
static void under_flushed_cb(struct bufferevent *under, void *arg)
{
    if (evbuffer_get_length(bufferevent_get_output(under)) == 0)
        conn_free(arg);
}

static void under_event_cb(struct bufferevent *under, short what, void *arg)
{
    (void)under;
    (void)what;
    conn_free(arg);
}

static void conn_write_cb(struct bufferevent *bev, void *arg)
{
    struct proxy_conn *c = arg;

    (void)bev;
    if (c->state == CONN_CLOSING) {
        struct timeval tv = {PROXY_LINGER_MS / 1000, (PROXY_LINGER_MS % 1000) * 1000};
        struct bufferevent *under = c->tls ? bufferevent_get_underlying(c->bev) : NULL;
        if (evbuffer_get_length(bufferevent_get_output(c->bev)) != 0 || c->lingering)
            return;
        if (under && evbuffer_get_length(bufferevent_get_output(under)) != 0) {
            bufferevent_setwatermark(under, EV_WRITE, 0, 0);
            bufferevent_setcb(under, NULL, under_flushed_cb, under_event_cb, c);
            bufferevent_enable(under, EV_WRITE);
            return;
        }
        if (c->tls || c->px->draining || shutdown(bufferevent_getfd(c->bev), SHUT_WR) != 0) {
            conn_free(c);
            return;
        }
        c->lingering = 1;
        evbuffer_drain(bufferevent_get_input(c->bev),
                       evbuffer_get_length(bufferevent_get_input(c->bev)));
        bufferevent_enable(c->bev, EV_READ);
        evtimer_add(c->header_timer, &tv);
        return;
    }
    /* drained below the low-water mark: let the provider go on */
    if (c->req && c->req->up)
        proxy_upstream_pause(c->req, 0);
}

static void conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct proxy_conn *c = arg;

    (void)bev;
    if (what & BEV_EVENT_TIMEOUT) {
        if ((what & BEV_EVENT_READING) && (c->state == CONN_BUSY || c->state == CONN_FORWARD)) {
            /* not reading is fine while we answer: keep watching for EOF */
            bufferevent_enable(c->bev, EV_READ);
            return;
        }
        /* idle keep-alive, a stalled body, or a client that stopped reading its
         * answer for idle_timeout_ms: close (cancels the upstream) */
        if (what & BEV_EVENT_WRITING)
            log_info("closing %s: the client stopped reading for %d ms", c->peer,
                     c->px->snap->cfg->limits.idle_timeout_ms);
        conn_free(c);
        return;
    }
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        if (c->req) {
            struct proxy_req *r = c->req;
            c->req = NULL;
            r->conn = NULL;
            proxy_req_client_gone(r);
            proxy_req_unref(r);
        }
        conn_free(c);
    }
}

static void header_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct proxy_conn *c = arg;

    (void)fd;
    (void)what;
    if (c->lingering) {
        conn_free(c);
        return;
    }
    if (c->state == CONN_IDLE) {
        /* connected (or half-handshaken) and silent since */
        log_info("closing %s: no request within %d ms of connecting", c->peer,
                 c->px->snap->cfg->limits.header_timeout_ms);
        conn_free(c);
        return;
    }
    if (c->state == CONN_READING && c->reading_body) {
        log_info("closing %s: request body not complete within %d ms", c->peer,
                 c->px->snap->cfg->limits.body_timeout_ms);
        conn_reply_raw_error(c, 408, "timeout", "The request body took too long to arrive.");
        return;
    }
    if (c->state == CONN_READING) {
        log_info("closing %s: request headers not complete within %d ms", c->peer,
                 c->px->snap->cfg->limits.header_timeout_ms);
        conn_reply_raw_error(c, 408, "timeout", "The request headers took too long to arrive.");
    }
}

static void conn_free(struct proxy_conn *c)
{
    struct proxy *px = c->px;

    if (c->req) {
        struct proxy_req *r = c->req;
        c->req = NULL;
        r->conn = NULL;
        proxy_req_client_gone(r);
        proxy_req_unref(r);
    }
    if (c->fwd)
        proxy_forward_conn_free(c); /* its record, its tunnel (before the bufferevent goes) */
    conn_reset_request(c);
    if (c->header_timer)
        event_free(c->header_timer);
    if (c->body)
        wipe_evbuffer_free(c->body);
    wipe_evbuffer_free(c->out);
    if (c->bev)
        bufferevent_free(c->bev);
    if (c->prev)
        c->prev->next = c->next;
    else
        px->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    px->n_conns--;
    free(c);
    if (px->draining && px->n_reqs == 0 && px->n_conns == 0)
        event_base_loopexit(px->base, NULL);
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int slen,
                      void *arg)
{
    struct proxy *px = evconnlistener_get_base(l) ? arg : arg;
    struct proxy_conn *c;
    size_t li;
    SSL *ssl = NULL;
    struct timeval idle;
    int one = 1;

    (void)slen;
    if (px->draining || px->n_conns >= px->snap->cfg->limits.max_connections) {
        if (!px->draining)
            log_warn("connection limit (%d) reached: refusing a connection",
                     px->snap->cfg->limits.max_connections);
        evutil_closesocket(fd);
        return;
    }
    for (li = 0; li < px->n_listeners; li++)
        if (px->listeners[li] == l)
            break;
    c = calloc(1, sizeof(*c));
    if (!c) {
        evutil_closesocket(fd);
        return;
    }
    c->px = px;
    c->forward = li < px->n_listeners && px->listen_forward[li];
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (sa->sa_family == AF_INET) {
        struct sockaddr_in *s4 = (struct sockaddr_in *)sa;
        char ip[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
        snprintf(c->peer, sizeof(c->peer), "%s:%d", ip, ntohs(s4->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)sa;
        char ip[INET6_ADDRSTRLEN];
        inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
        snprintf(c->peer, sizeof(c->peer), "[%s]:%d", ip, ntohs(s6->sin6_port));
    }
    if (li < px->n_listeners && px->listen_ssl[li]) {
        ssl = SSL_new(px->listen_ssl[li]);
        if (!ssl) {
            evutil_closesocket(fd);
            free(c);
            return;
        }
        c->tls = 1;
        c->bev = bufferevent_openssl_socket_new(px->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                                BEV_OPT_CLOSE_ON_FREE);
    } else {
        c->bev = bufferevent_socket_new(px->base, fd, BEV_OPT_CLOSE_ON_FREE);
    }
    c->body = evbuffer_new();
    c->out = evbuffer_new();
    c->header_timer = evtimer_new(px->base, header_timeout_cb, c);
    if (!c->bev || !c->body || !c->out || !c->header_timer) {
        if (!c->bev)
            evutil_closesocket(fd);
        if (c->bev)
            bufferevent_free(c->bev);
        if (c->body)
            evbuffer_free(c->body);
        if (c->out)
            evbuffer_free(c->out);
        if (c->header_timer)
            event_free(c->header_timer);
        free(c);
        return;
    }
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    c->state = CONN_IDLE;
    c->next = px->conns;
    if (px->conns)
        px->conns->prev = c;
    px->conns = c;
    px->n_conns++;
    px->metrics.conns_total++;
    bufferevent_setcb(c->bev, conn_read_cb, conn_write_cb, conn_event_cb, c);
    idle.tv_sec = px->snap->cfg->limits.idle_timeout_ms / 1000;
    idle.tv_usec = (px->snap->cfg->limits.idle_timeout_ms % 1000) * 1000;
    bufferevent_set_timeouts(c->bev, &idle, &idle);
    bufferevent_setwatermark(c->bev, EV_WRITE, PROXY_CLIENT_LOW_WATER, 0);
    /* cap what a pipelining client can queue while we answer */
    bufferevent_setwatermark(c->bev, EV_READ, 0,
                             px->snap->cfg->limits.max_body_bytes +
                                 px->snap->cfg->limits.max_header_bytes + 4096);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    /* a new connection (TLS handshake included) must deliver its first request head
     * within header_timeout_ms, or it is closed: silent sockets cannot hold slots */
    {
        struct timeval ht = {px->snap->cfg->limits.header_timeout_ms / 1000,
                             (px->snap->cfg->limits.header_timeout_ms % 1000) * 1000};
        evtimer_add(c->header_timer, &ht);
    }
}

int proxy_conn_start_tls(struct proxy_conn *c, SSL *ssl)
{
    struct proxy *px = c->px;
    struct bufferevent *tls;
    struct timeval ht = {px->snap->cfg->limits.header_timeout_ms / 1000,
                         (px->snap->cfg->limits.header_timeout_ms % 1000) * 1000};
    struct timeval idle = {px->snap->cfg->limits.idle_timeout_ms / 1000,
                           (px->snap->cfg->limits.idle_timeout_ms % 1000) * 1000};

    tls = bufferevent_openssl_filter_new(px->base, c->bev, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                         BEV_OPT_CLOSE_ON_FREE);
    if (!tls) {
        SSL_free(ssl);
        return -1;
    }
    /* (the filter owns the socket's bufferevent now: freeing it frees both) */
    c->bev = tls;
    c->tls = 1;
    bufferevent_openssl_set_allow_dirty_shutdown(tls, 1);
    bufferevent_setcb(tls, conn_read_cb, conn_write_cb, conn_event_cb, c);
    bufferevent_set_timeouts(tls, &idle, &idle);
    bufferevent_setwatermark(tls, EV_WRITE, PROXY_CLIENT_LOW_WATER, 0);
    bufferevent_setwatermark(tls, EV_READ, 0,
                             px->snap->cfg->limits.max_body_bytes +
                                 px->snap->cfg->limits.max_header_bytes + 4096);
    bufferevent_enable(tls, EV_READ | EV_WRITE);
    conn_reset_request(c);
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    c->state = CONN_IDLE;
    c->keep_alive = 1;
    evtimer_add(c->header_timer, &ht);
    /* a ClientHello sent with the CONNECT is already in the socket's input: libevent
     * 2.1's filter reads it when its handshake starts (egress_test checks that it is
     * answered); the trigger makes sure of it should a version wait for new bytes */
    {
        struct bufferevent *under = bufferevent_get_underlying(tls);
        if (under && evbuffer_get_length(bufferevent_get_input(under)) > 0)
            bufferevent_trigger(under, EV_READ, BEV_TRIG_IGNORE_WATERMARKS);
    }
    return 0;
}

static void listener_error_cb(struct evconnlistener *l, void *arg)
{
    int err = EVUTIL_SOCKET_ERROR();

    (void)l;
    (void)arg;
    log_warn("accept failed: %s", evutil_socket_error_to_string(err));
}

/* proxy_listeners_open -- bind every listener of cfg. */
int proxy_listeners_open(struct proxy *px, char *err, size_t errlen)
{
    const struct config *cfg = px->snap->cfg;
    size_t i;

    px->listeners = calloc(cfg->n_listens ? cfg->n_listens : 1, sizeof(*px->listeners));
    px->listen_ssl = calloc(cfg->n_listens ? cfg->n_listens : 1, sizeof(*px->listen_ssl));
    px->listen_forward = calloc(cfg->n_listens ? cfg->n_listens : 1, 1);
    if (!px->listeners || !px->listen_ssl || !px->listen_forward) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (i = 0; i < cfg->n_listens; i++) {
        const struct config_listen *ln = &cfg->listens[i];
        struct evutil_addrinfo hints, *ai = NULL;
        char port[16];
        int rc;

        px->listen_forward[i] = ln->mode == CONFIG_LISTEN_FORWARD;
        memset(&hints, 0, sizeof(hints));
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = EVUTIL_AI_PASSIVE | EVUTIL_AI_NUMERICSERV;
        snprintf(port, sizeof(port), "%d", ln->port);
        rc = evutil_getaddrinfo(ln->host, port, &hints, &ai);
        if (rc != 0 || !ai) {
            snprintf(err, errlen, "listen %s: cannot resolve '%s': %s", ln->address, ln->host,
                     evutil_gai_strerror(rc));
            return -1;
        }
        if (ln->tls_cert) {
            SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
            if (!ctx || SSL_CTX_use_certificate_chain_file(ctx, ln->tls_cert) != 1 ||
                SSL_CTX_use_PrivateKey_file(ctx, ln->tls_key, SSL_FILETYPE_PEM) != 1 ||
                SSL_CTX_check_private_key(ctx) != 1) {
                char e[200];
                ERR_error_string_n(ERR_get_error(), e, sizeof(e));
                snprintf(err, errlen, "listen %s: TLS certificate/key: %s", ln->address, e);
                SSL_CTX_free(ctx);
                evutil_freeaddrinfo(ai);
                return -1;
            }
            SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
            px->listen_ssl[i] = ctx;
        }
        px->listeners[i] = evconnlistener_new_bind(px->base, accept_cb, px,
                                                   LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
                                                       LEV_OPT_CLOSE_ON_EXEC,
                                                   1024, ai->ai_addr, (int)ai->ai_addrlen);
        evutil_freeaddrinfo(ai);
        px->n_listeners = i + 1;
        if (!px->listeners[i]) {
            snprintf(err, errlen, "listen %s: %s", ln->address, strerror(errno));
            return -1;
        }
        evconnlistener_set_error_cb(px->listeners[i], listener_error_cb);
    }
    return 0;
}

void proxy_listeners_close(struct proxy *px)
{
    size_t i;

    for (i = 0; i < px->n_listeners; i++) {
        if (px->listeners[i])
            evconnlistener_free(px->listeners[i]);
        px->listeners[i] = NULL;
        if (px->listen_ssl[i])
            SSL_CTX_free(px->listen_ssl[i]);
        px->listen_ssl[i] = NULL;
    }
}

/* proxy_conns_drain -- close idle connections; busy ones close after their answer. */
void proxy_conns_drain(struct proxy *px)
{
    struct proxy_conn *c = px->conns, *next;

    for (; c; c = next) {
        next = c->next;
        if (c->state == CONN_IDLE)
            conn_free(c);
    }
}

void proxy_conns_close_all(struct proxy *px)
{
    while (px->conns)
        conn_free(px->conns);
}
