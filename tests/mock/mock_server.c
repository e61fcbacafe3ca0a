/* mock_server.c -- the mock provider's sockets, TLS and HTTP/1.1 framing, and main().
 *
 *   mock_provider [--port N] [--tls-cert FILE --tls-key FILE] [--record DIR]
 *                 [--openai-key KEY] [--anthropic-key KEY] [--idle-close MS]
 *
 * Listens on 127.0.0.1 (port 0 picks a free one); prints "mock_provider listening on
 * 127.0.0.1:PORT" on stdout once ready. Requests are served in order per connection
 * (pipelining and keep-alive). Besides the provider paths it answers:
 *   GET /mock/stats       JSON counters (requests, connections, closed, aborted, ...)
 *   GET /mock/last_head   the raw request head of the last provider request
 *   GET /mock/last_body   its body bytes, exactly as received (de-chunked)
 *   POST /mock/reset      zero the counters
 * --idle-close MS closes a keep-alive connection left idle for MS after a response, as
 * providers' load balancers do, so tests can check that a gateway's pool copes.
 * With --record DIR every provider request is written as DIR/NNNN.req (the bytes
 * exactly as received, head and body) and DIR/NNNN.body (the decoded body). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "tests/mock/mock.h"

#define MAX_HEAD (64 * 1024)
#define MAX_BODY ((size_t)64 * 1024 * 1024)

struct server {
    struct event_base *base;
    SSL_CTX *ssl;
    const char *record_dir;
    int idle_close_ms; /* 0: keep idle connections open */
    struct mock_settings set;
    unsigned long seq;
    /* counters, see /mock/stats */
    unsigned long requests, openai, anthropic, accepted, connections, closed, aborted, active;
    char *last_head, *last_body;
    size_t last_head_len, last_body_len;
};

struct conn {
    struct server *srv;
    struct bufferevent *bev;
    evutil_socket_t fd;
    int counted;     /* carried a provider request: counts in `connections` */
    int busy;        /* a plan is being played */
    int close_after; /* close once the current response is done */
    int closing;     /* closing once the output has drained */
    int resetting;   /* RST once the output has drained */
    struct mock_plan plan;
    size_t next; /* next piece of the plan */
    struct event *timer;
    struct event *idle_timer; /* --idle-close */
    char *head;               /* copy of the request head being served, NUL-terminated */
};

static struct server g_srv;

const char *mock_header_get(const struct mock_request *req, const char *name)
{
    size_t i;

    for (i = 0; i < req->n_headers; i++)
        if (strcasecmp(req->headers[i].name, name) == 0)
            return req->headers[i].value;
    return NULL;
}

static void conn_free(struct conn *c, int by_peer)
{
    struct server *s = c->srv;

    if (c->counted) {
        s->closed++;
        if (by_peer && c->busy)
            s->aborted++;
    }
    if (c->busy && s->active)
        s->active--;
    if (c->timer)
        event_free(c->timer);
    if (c->idle_timer)
        event_free(c->idle_timer);
    if (c->bev)
        bufferevent_free(c->bev); /* closes the socket */
    mock_plan_deinit(&c->plan);
    free(c->head);
    free(c);
}

/* Abort with a TCP RST: linger 0, then close. */
static void conn_reset(struct conn *c)
{
    struct linger lg = {1, 0};

    if (c->fd >= 0)
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    conn_free(c, 0);
}

static void conn_close_when_drained(struct conn *c)
{
    c->closing = 1;
    bufferevent_disable(c->bev, EV_READ);
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
        conn_free(c, 0);
}

static void process_input(struct conn *c);

static void write_piece(struct conn *c, size_t i)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    const struct mock_piece *p = &c->plan.pieces[i];

    if (c->plan.chunked && i > 0) {
        if (p->len == 0)
            return;
        evbuffer_add_printf(out, "%zx\r\n", p->len);
        evbuffer_add(out, p->data, p->len);
        evbuffer_add(out, "\r\n", 2);
    } else {
        evbuffer_add(out, p->data, p->len);
    }
}

static void idle_cb(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;

    (void)fd;
    (void)what;
    if (!c->busy && !c->closing && !c->resetting)
        conn_close_when_drained(c);
}

/* The plan has been fully written: end as it says. Returns 1 when c was freed. */
static int plan_finish(struct conn *c)
{
    enum mock_end end = c->plan.end;
    int chunked = c->plan.chunked && !c->plan.truncated;

    switch (end) {
    case MOCK_END_STALL:
        return 0; /* busy until the peer gives up */
    case MOCK_END_RESET:
        c->resetting = 1;
        if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
            conn_reset(c);
            return 1;
        }
        return 0;
    case MOCK_END_CLOSE:
    case MOCK_END_DONE:
        if (chunked)
            evbuffer_add(bufferevent_get_output(c->bev), "0\r\n\r\n", 5);
        break;
    }
    c->busy = 0;
    if (c->srv->active)
        c->srv->active--;
    mock_plan_deinit(&c->plan);
    free(c->head);
    c->head = NULL;
    if (end == MOCK_END_CLOSE || c->close_after) {
        conn_close_when_drained(c);
        return 1; /* may have been freed */
    }
    if (c->srv->idle_close_ms > 0) {
        struct timeval tv = {c->srv->idle_close_ms / 1000, (c->srv->idle_close_ms % 1000) * 1000};
        if (!c->idle_timer)
            c->idle_timer = evtimer_new(c->srv->base, idle_cb, c);
        if (c->idle_timer)
            evtimer_add(c->idle_timer, &tv);
    }
    return 0;
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;

    (void)fd;
    (void)what;
    if (c->next < c->plan.n) {
        write_piece(c, c->next++);
        if (c->next < c->plan.n) {
            struct timeval tv = {c->plan.delay_ms / 1000, (c->plan.delay_ms % 1000) * 1000};
            evtimer_add(c->timer, &tv);
            return;
        }
    }
    if (plan_finish(c) == 0 && !c->busy)
        process_input(c);
}

/* Plays c->plan. Returns 1 when c may have been freed or is still busy. */
static int plan_start(struct conn *c)
{
    if (c->idle_timer)
        evtimer_del(c->idle_timer);
    c->busy = 1;
    c->srv->active++;
    c->next = 0;
    if (c->plan.delay_ms > 0 && c->plan.n > 1) {
        struct timeval tv = {c->plan.delay_ms / 1000, (c->plan.delay_ms % 1000) * 1000};
        write_piece(c, c->next++);
        if (!c->timer)
            c->timer = evtimer_new(c->srv->base, timer_cb, c);
        if (!c->timer)
            return conn_free(c, 0), 1;
        evtimer_add(c->timer, &tv);
        return 1;
    }
    while (c->next < c->plan.n)
        write_piece(c, c->next++);
    if (plan_finish(c))
        return 1;
    return c->busy;
}

static void record(struct server *s, const struct mock_request *req, const char *raw,
                   size_t raw_len)
{
    char path[4096];
    FILE *f;

    if (!s->record_dir)
        return;
    snprintf(path, sizeof(path), "%s/%04lu.req", s->record_dir, req->seq);
    if ((f = fopen(path, "wb")) != NULL) {
        fwrite(raw, 1, raw_len, f);
        fclose(f);
    }
    snprintf(path, sizeof(path), "%s/%04lu.body", s->record_dir, req->seq);
    if ((f = fopen(path, "wb")) != NULL) {
        fwrite(req->body, 1, req->body_len, f);
        fclose(f);
    }
}

static void remember(char **dst, size_t *dst_len, const char *src, size_t len)
{
    char *n = malloc(len + 1);

    if (!n)
        return;
    memcpy(n, src, len);
    n[len] = '\0';
    free(*dst);
    *dst = n;
    *dst_len = len;
}

static int serve_internal(struct conn *c, const struct mock_request *req)
{
    struct server *s = c->srv;
    char buf[1024];
    int n;

    if (strcmp(req->path, "/mock/stats") == 0) {
        n = snprintf(buf, sizeof(buf),
                     "{\"requests\":%lu,\"openai\":%lu,\"anthropic\":%lu,\"accepted\":%lu,"
                     "\"connections\":%lu,\"closed\":%lu,\"aborted\":%lu,\"active\":%lu}\n",
                     s->requests, s->openai, s->anthropic, s->accepted, s->connections, s->closed,
                     s->aborted, s->active);
        return mock_api_simple(&c->plan, 200, "application/json", buf, (size_t)n, req->want_close);
    }
    if (strcmp(req->path, "/mock/reset") == 0) {
        s->requests = s->openai = s->anthropic = s->accepted = s->connections = 0;
        s->closed = s->aborted = 0;
        return mock_api_simple(&c->plan, 200, "application/json", "{}\n", 3, req->want_close);
    }
    if (strcmp(req->path, "/mock/last_head") == 0)
        return mock_api_simple(&c->plan, 200, "application/octet-stream",
                               s->last_head ? s->last_head : "", s->last_head_len, req->want_close);
    if (strcmp(req->path, "/mock/last_body") == 0)
        return mock_api_simple(&c->plan, 200, "application/octet-stream",
                               s->last_body ? s->last_body : "", s->last_body_len, req->want_close);
    return mock_api_simple(&c->plan, 404, "application/json",
                           "{\"error\":{\"message\":\"unknown mock path\",\"type\":"
                           "\"invalid_request_error\",\"param\":null,\"code\":null}}",
                           87, req->want_close);
}

static void bad_request(struct conn *c, int status, const char *msg)
{
    char body[256];
    int n = snprintf(body, sizeof(body),
                     "{\"error\":{\"message\":\"%s\",\"type\":\"invalid_request_error\","
                     "\"param\":null,\"code\":null}}",
                     msg);

    mock_plan_deinit(&c->plan);
    if (mock_api_simple(&c->plan, status, "application/json", body, (size_t)n, 1) < 0) {
        conn_free(c, 0);
        return;
    }
    plan_start(c);
}

/* Parses a chunked body starting at p (len bytes available). Returns the number of
 * raw bytes consumed (body complete, decoded into *out), 0 if more is needed, -1 if
 * malformed or too large. */
static long parse_chunked(const char *p, size_t len, char **out, size_t *out_len)
{
    size_t at = 0, total = 0;
    char *dec = NULL;

    for (;;) {
        const char *eol = memmem(p + at, len - at, "\r\n", 2);
        char *end;
        unsigned long sz;

        if (!eol)
            goto more;
        errno = 0;
        sz = strtoul(p + at, &end, 16);
        if (end == p + at || errno || sz > MAX_BODY || total + sz > MAX_BODY)
            goto bad;
        at = (size_t)(eol - p) + 2;
        if (sz == 0) {
            /* trailers until an empty line */
            for (;;) {
                eol = memmem(p + at, len - at, "\r\n", 2);
                if (!eol)
                    goto more;
                if (eol == p + at) {
                    at += 2;
                    *out = dec ? dec : calloc(1, 1);
                    *out_len = total;
                    return *out ? (long)at : -1;
                }
                at = (size_t)(eol - p) + 2;
            }
        }
        if (len - at < sz + 2)
            goto more;
        if (p[at + sz] != '\r' || p[at + sz + 1] != '\n')
            goto bad;
        {
            char *n = realloc(dec, total + sz + 1);
            if (!n)
                goto bad;
            dec = n;
        }
        memcpy(dec + total, p + at, sz);
        total += sz;
        dec[total] = '\0';
        at += sz + 2;
    }
more:
    free(dec);
    return 0;
bad:
    free(dec);
    return -1;
}

/* Serves every complete request waiting in the input, in order, until one is busy. */
static void process_input(struct conn *c)
{
    struct server *s = c->srv;

    while (!c->busy && !c->closing && !c->resetting) {
        struct evbuffer *in = bufferevent_get_input(c->bev);
        struct evbuffer_ptr found;
        struct mock_request req;
        size_t head_len, total = evbuffer_get_length(in), body_raw = 0, clen = 0;
        char *p, *line, *save = NULL, *body = NULL, *dechunked = NULL, *raw;
        const char *te, *cl, *conn_hdr;
        int chunked = 0;

        /* tolerate stray CRLFs between pipelined requests */
        while (total >= 2) {
            unsigned char two[2];
            evbuffer_copyout(in, two, 2);
            if (two[0] != '\r' || two[1] != '\n')
                break;
            evbuffer_drain(in, 2);
            total -= 2;
        }
        if (total == 0)
            return;
        found = evbuffer_search(in, "\r\n\r\n", 4, NULL);
        if (found.pos < 0) {
            if (total > MAX_HEAD)
                bad_request(c, 431, "request head too large");
            return;
        }
        head_len = (size_t)found.pos + 4;
        if (head_len > MAX_HEAD) {
            bad_request(c, 431, "request head too large");
            return;
        }
        raw = (char *)evbuffer_pullup(in, -1);
        if (!raw)
            return;
        free(c->head);
        c->head = malloc(head_len + 1);
        if (!c->head) {
            conn_free(c, 0);
            return;
        }
        memcpy(c->head, raw, head_len);
        c->head[head_len] = '\0';

        memset(&req, 0, sizeof(req));
        line = strtok_r(c->head, "\r\n", &save);
        {
            char *sp1 = line ? strchr(line, ' ') : NULL;
            char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
            char *q;
            if (!sp1 || !sp2 || strncmp(sp2 + 1, "HTTP/1.", 7) != 0) {
                bad_request(c, 400, "malformed request line");
                return;
            }
            *sp1 = *sp2 = '\0';
            req.method = line;
            req.path = sp1 + 1;
            req.http10 = strcmp(sp2 + 1, "HTTP/1.0") == 0;
            if ((q = strchr(sp1 + 1, '?')) != NULL)
                *q = '\0';
        }
        while ((line = strtok_r(NULL, "\r\n", &save)) != NULL) {
            char *colon = strchr(line, ':'), *v;
            if (!colon || colon == line || req.n_headers == MOCK_MAX_HEADERS) {
                bad_request(c, 400, "malformed header");
                return;
            }
            *colon = '\0';
            v = colon + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            for (p = v + strlen(v); p > v && (p[-1] == ' ' || p[-1] == '\t'); p--)
                p[-1] = '\0';
            req.headers[req.n_headers].name = line;
            req.headers[req.n_headers].value = v;
            req.n_headers++;
        }
        te = mock_header_get(&req, "transfer-encoding");
        cl = mock_header_get(&req, "content-length");
        if (te) {
            if (strcasecmp(te, "chunked") != 0) {
                bad_request(c, 400, "unsupported transfer-encoding");
                return;
            }
            chunked = 1;
        } else if (cl) {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(cl, &end, 10);
            if (end == cl || *end || errno || v > MAX_BODY) {
                bad_request(c, v > MAX_BODY ? 413 : 400, "bad content-length");
                return;
            }
            clen = (size_t)v;
        }
        if (chunked) {
            long used = parse_chunked(raw + head_len, total - head_len, &dechunked, &clen);
            if (used < 0) {
                bad_request(c, 400, "malformed chunked body");
                return;
            }
            if (used == 0)
                return; /* wait for more */
            body_raw = (size_t)used;
            body = dechunked;
        } else {
            if (total - head_len < clen)
                return; /* wait for more */
            body_raw = clen;
            body = malloc(clen + 1);
            if (!body) {
                conn_free(c, 0);
                return;
            }
            memcpy(body, raw + head_len, clen);
            body[clen] = '\0';
        }
        req.body = body;
        req.body_len = clen;
        conn_hdr = mock_header_get(&req, "connection");
        req.want_close = conn_hdr ? strcasecmp(conn_hdr, "close") == 0 : req.http10;
        if (req.http10 && conn_hdr && strcasecmp(conn_hdr, "keep-alive") == 0)
            req.want_close = 0;
        c->close_after = req.want_close;

        mock_plan_deinit(&c->plan);
        if (strncmp(req.path, "/mock/", 6) == 0) {
            if (serve_internal(c, &req) < 0) {
                free(body);
                conn_free(c, 0);
                return;
            }
        } else {
            size_t plen = strlen(req.path);
            req.seq = ++s->seq;
            s->requests++;
            if ((plen >= 9 && strcmp(req.path + plen - 9, "/messages") == 0) ||
                (plen >= 22 && strcmp(req.path + plen - 22, "/messages/count_tokens") == 0))
                s->anthropic++;
            else
                s->openai++;
            if (!c->counted) {
                c->counted = 1;
                s->connections++;
            }
            record(s, &req, raw, head_len + body_raw);
            remember(&s->last_head, &s->last_head_len, raw, head_len);
            remember(&s->last_body, &s->last_body_len, body, clen);
            if (mock_api_reply(&s->set, &req, &c->plan) < 0) {
                free(body);
                conn_free(c, 0);
                return;
            }
        }
        free(body);
        evbuffer_drain(in, head_len + body_raw);
        if (plan_start(c))
            return; /* busy, closing or freed */
    }
}

static void read_cb(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;

    (void)bev;
    if (c->busy || c->closing || c->resetting)
        return; /* pipelined input waits until the current response is done */
    process_input(c);
}

static void write_cb(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;

    (void)bev;
    if (c->resetting)
        conn_reset(c);
    else if (c->closing)
        conn_free(c, 0);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;

    (void)bev;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        conn_free(c, 1);
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
    struct server *s = arg;
    struct conn *c = calloc(1, sizeof(*c));

    (void)l;
    (void)sa;
    (void)salen;
    if (!c) {
        evutil_closesocket(fd);
        return;
    }
    c->srv = s;
    c->fd = fd;
    if (s->ssl) {
        SSL *ssl = SSL_new(s->ssl);
        if (ssl)
            c->bev = bufferevent_openssl_socket_new(s->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                                    BEV_OPT_CLOSE_ON_FREE);
        if (c->bev)
            bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
    } else {
        c->bev = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE);
    }
    if (!c->bev) {
        evutil_closesocket(fd);
        free(c);
        return;
    }
    s->accepted++;
    bufferevent_setcb(c->bev, read_cb, write_cb, event_cb, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    event_base_loopbreak(arg);
}

static int usage(void)
{
    fprintf(stderr, "usage: mock_provider [--port N] [--tls-cert FILE --tls-key FILE] "
                    "[--record DIR] [--openai-key KEY] [--anthropic-key KEY] "
                    "[--idle-close MS]\n");
    return 2;
}

int main(int argc, char **argv)
{
    struct server *s = &g_srv;
    struct evconnlistener *lis = NULL;
    struct event *sigterm = NULL, *sigint = NULL;
    struct sockaddr_in sin;
    socklen_t slen = sizeof(sin);
    const char *cert = NULL, *key = NULL;
    int port = 0, i, rc = 1;

    signal(SIGPIPE, SIG_IGN);
    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            return usage();
        if (strcmp(a, "--port") == 0)
            port = atoi(v);
        else if (strcmp(a, "--tls-cert") == 0)
            cert = v;
        else if (strcmp(a, "--tls-key") == 0)
            key = v;
        else if (strcmp(a, "--record") == 0)
            s->record_dir = v;
        else if (strcmp(a, "--openai-key") == 0)
            s->set.openai_key = v;
        else if (strcmp(a, "--anthropic-key") == 0)
            s->set.anthropic_key = v;
        else if (strcmp(a, "--idle-close") == 0)
            s->idle_close_ms = atoi(v) > 0 ? atoi(v) : 0;
        else
            return usage();
        i++;
    }
    if ((cert == NULL) != (key == NULL) || port < 0 || port > 65535)
        return usage();
    if (cert) {
        s->ssl = SSL_CTX_new(TLS_server_method());
        if (!s->ssl || SSL_CTX_use_certificate_chain_file(s->ssl, cert) != 1 ||
            SSL_CTX_use_PrivateKey_file(s->ssl, key, SSL_FILETYPE_PEM) != 1) {
            fprintf(stderr, "mock_provider: cannot load TLS certificate/key\n");
            ERR_print_errors_fp(stderr);
            goto out;
        }
    }
    s->base = event_base_new();
    if (!s->base)
        goto out;
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sin.sin_port = htons((uint16_t)port);
    lis = evconnlistener_new_bind(s->base, accept_cb, s, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
                                  1024, (struct sockaddr *)&sin, sizeof(sin));
    if (!lis) {
        fprintf(stderr, "mock_provider: cannot listen on 127.0.0.1:%d: %s\n", port,
                strerror(errno));
        goto out;
    }
    if (getsockname(evconnlistener_get_fd(lis), (struct sockaddr *)&sin, &slen) < 0)
        goto out;
    sigterm = evsignal_new(s->base, SIGTERM, signal_cb, s->base);
    sigint = evsignal_new(s->base, SIGINT, signal_cb, s->base);
    if (!sigterm || !sigint)
        goto out;
    evsignal_add(sigterm, NULL);
    evsignal_add(sigint, NULL);
    printf("mock_provider listening on 127.0.0.1:%d%s\n", ntohs(sin.sin_port),
           s->ssl ? " (tls)" : "");
    fflush(stdout);
    event_base_dispatch(s->base);
    rc = 0;
out:
    if (sigterm)
        event_free(sigterm);
    if (sigint)
        event_free(sigint);
    if (lis)
        evconnlistener_free(lis);
    if (s->base)
        event_base_free(s->base);
    if (s->ssl)
        SSL_CTX_free(s->ssl);
    free(s->last_head);
    free(s->last_body);
    return rc;
}
