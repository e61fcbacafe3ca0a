/* upstream.c -- the client side towards providers: pooled HTTP/1.1 over TLS.
 *
 * One pool per provider per config snapshot. A connection carries one request
 * at a time and goes back to the pool's idle list when its answer was complete
 * and keep-alive. TLS verifies the certificate chain (system store or the
 * provider's ca_file) and the host name or IP address. Timeouts: connecting,
 * first byte and idle between bytes all use the provider's timeout_ms (or
 * limits.upstream_timeout_ms). A reused connection that turns out closed before
 * any answer byte is retried once on a fresh one. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "common/log.h"
#include "common/wipe.h"
#include "proxy/proxy_int.h"

#define UP_IDLE_MAX 32
#define UP_IDLE_TIMEOUT_S 30

struct proxy_upconn {
    struct proxy_pool *pool;
    struct bufferevent *bev;
    http_parser parser;
    struct proxy_req *req;
    struct proxy_upconn *next;
    int reused;
    int got_bytes;
    int complete;
    int in_parse;
    int dead;
    int paused; /* reading stopped for backpressure */
    char hname[64];
    size_t hname_len;
    int in_value;
    int hdr_is_ctype;
    int hdr_is_coding; /* the value being read is Content-Encoding's */
    int coded;         /* the answer has a Content-Encoding other than identity */
    char coding[16];   /* that value, cut (longer than "identity" is not identity) */
    size_t coding_len;
    char ctype[128];
    size_t ctype_len;
    struct evbuffer *out; /* a request staged for writing (up_send) */
};

static void up_free(struct proxy_upconn *u)
{
    if (u->in_parse) {
        u->dead = 1;
        return;
    }
    if (u->bev)
        bufferevent_free(u->bev);
    wipe_evbuffer_free(u->out); /* (empty between requests; wiped all the same) */
    free(u);
}

static int is_ip(const char *h)
{
    unsigned char b[16];

    return inet_pton(AF_INET, h, b) == 1 || inet_pton(AF_INET6, h, b) == 1;
}

int proxy_pool_init(struct proxy_pool *p, struct proxy *px, const struct config_provider *prov,
                    char *err, size_t errlen)
{
    memset(p, 0, sizeof(*p));
    p->px = px;
    p->prov = prov;
    if (prov->type == CONFIG_PROVIDER_BUILTIN || !prov->tls)
        return 0;
    p->ssl = SSL_CTX_new(TLS_client_method());
    if (!p->ssl) {
        snprintf(err, errlen, "provider %s: cannot create a TLS context", prov->name);
        return -1;
    }
    SSL_CTX_set_min_proto_version(p->ssl, TLS1_2_VERSION);
    SSL_CTX_set_verify(p->ssl, SSL_VERIFY_PEER, NULL);
    if (prov->ca_file) {
        if (SSL_CTX_load_verify_locations(p->ssl, prov->ca_file, NULL) != 1) {
            char e[200];
            ERR_error_string_n(ERR_get_error(), e, sizeof(e));
            snprintf(err, errlen, "provider %s: ca_file %s: %s", prov->name, prov->ca_file, e);
            SSL_CTX_free(p->ssl);
            p->ssl = NULL;
            return -1;
        }
    } else if (SSL_CTX_set_default_verify_paths(p->ssl) != 1) {
        snprintf(err, errlen, "provider %s: cannot load the system trust store", prov->name);
        SSL_CTX_free(p->ssl);
        p->ssl = NULL;
        return -1;
    }
    return 0;
}

void proxy_pool_deinit(struct proxy_pool *p)
{
    while (p->idle) {
        struct proxy_upconn *u = p->idle;
        p->idle = u->next;
        up_free(u);
    }
    p->n_idle = 0;
    if (p->ssl)
        SSL_CTX_free(p->ssl);
    p->ssl = NULL;
}

/* ---- parsing the answer ---- */

static int up_on_status(http_parser *hp, const char *at, size_t n)
{
    (void)hp;
    (void)at;
    (void)n;
    return 0;
}

/* coding_done -- a Content-Encoding value is complete: anything but identity (or empty)
 * marks the answer compressed */
static void coding_done(struct proxy_upconn *u)
{
    if (u->hdr_is_coding && u->coding_len > 0 && strcasecmp(u->coding, "identity") != 0)
        u->coded = 1;
    u->hdr_is_coding = 0;
}

static int up_on_header_field(http_parser *hp, const char *at, size_t n)
{
    struct proxy_upconn *u = hp->data;

    if (u->in_value) {
        coding_done(u);
        u->hname_len = 0;
        u->in_value = 0;
    }
    if (u->hname_len + n < sizeof(u->hname)) {
        memcpy(u->hname + u->hname_len, at, n);
        u->hname_len += n;
        u->hname[u->hname_len] = '\0';
    }
    return 0;
}

static int up_on_header_value(http_parser *hp, const char *at, size_t n)
{
    struct proxy_upconn *u = hp->data;

    if (!u->in_value) {
        u->in_value = 1;
        u->hdr_is_ctype = strcasecmp(u->hname, "content-type") == 0;
        u->hdr_is_coding = strcasecmp(u->hname, "content-encoding") == 0;
        if (u->hdr_is_ctype)
            u->ctype_len = 0;
        u->coding_len = 0;
    }
    /* a compressed answer cannot be restored, masked (the provider's key) or priced: it is
     * refused at the end of the head (up_on_headers_complete), whatever the accept-encoding:
     * identity this gateway sent said */
    for (size_t i = 0; u->hdr_is_coding && i < n; i++)
        if (at[i] != ' ' && at[i] != '\t') {
            if (u->coding_len + 1 >= sizeof(u->coding)) {
                u->coded = 1;
                break;
            }
            u->coding[u->coding_len++] = at[i];
            u->coding[u->coding_len] = '\0';
        }
    if (u->hdr_is_ctype && u->ctype_len + n < sizeof(u->ctype)) {
        memcpy(u->ctype + u->ctype_len, at, n);
        u->ctype_len += n;
        u->ctype[u->ctype_len] = '\0';
    }
    return 0;
}

static int up_on_headers_complete(http_parser *hp)
{
    struct proxy_upconn *u = hp->data;
    struct proxy_req *r = u->req;

    coding_done(u);
    if (u->dead || !r || u->coded)
        return -1;
    r->t_first_byte = proxy_req_elapsed(r);
    proxy_metrics_upstream_latency(&r->px->metrics, r->t_first_byte - r->t_upstream_start);
    proxy_answer_upstream_head(r, hp->status_code, u->ctype);
    return u->dead ? -1 : 0;
}

static int up_on_body(http_parser *hp, const char *at, size_t n)
{
    struct proxy_upconn *u = hp->data;

    if (u->dead || !u->req)
        return -1;
    proxy_answer_upstream_body(u->req, at, n);
    return u->dead ? -1 : 0;
}

static int up_on_message_complete(http_parser *hp)
{
    struct proxy_upconn *u = hp->data;

    u->complete = 1;
    http_parser_pause(hp, 1);
    return 0;
}

static const http_parser_settings up_settings = {
    .on_status = up_on_status,
    .on_header_field = up_on_header_field,
    .on_header_value = up_on_header_value,
    .on_headers_complete = up_on_headers_complete,
    .on_body = up_on_body,
    .on_message_complete = up_on_message_complete,
};

static void idle_read_cb(struct bufferevent *bev, void *arg);
static void idle_event_cb(struct bufferevent *bev, short what, void *arg);

static void pool_remove(struct proxy_pool *p, struct proxy_upconn *u)
{
    struct proxy_upconn **pp;

    for (pp = &p->idle; *pp; pp = &(*pp)->next)
        if (*pp == u) {
            *pp = u->next;
            p->n_idle--;
            return;
        }
}

/* detach from the request; back to the pool if the answer was complete */
static void up_release(struct proxy_upconn *u, int reusable)
{
    struct proxy_pool *p = u->pool;
    struct proxy_req *r = u->req;
    struct timeval tv = {UP_IDLE_TIMEOUT_S, 0};

    u->req = NULL;
    if (r) {
        r->up = NULL;
        proxy_req_unref(r);
    }
    if (!reusable || p->n_idle >= UP_IDLE_MAX || p->px->draining) {
        up_free(u);
        return;
    }
    u->reused = 1;
    u->complete = 0;
    u->got_bytes = 0;
    bufferevent_setcb(u->bev, idle_read_cb, NULL, idle_event_cb, u);
    bufferevent_set_timeouts(u->bev, &tv, NULL);
    bufferevent_enable(u->bev, EV_READ);
    u->next = p->idle;
    p->idle = u;
    p->n_idle++;
}

static void idle_read_cb(struct bufferevent *bev, void *arg)
{
    struct proxy_upconn *u = arg;

    (void)bev;
    /* bytes on an idle connection: the server is confused; drop it */
    pool_remove(u->pool, u);
    up_free(u);
}

static void idle_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct proxy_upconn *u = arg;

    (void)bev;
    (void)what;
    pool_remove(u->pool, u);
    up_free(u);
}

static void up_send(struct proxy_req *r, struct proxy_upconn *u);

static void up_fail(struct proxy_upconn *u, int timeout, const char *why)
{
    struct proxy_req *r = u->req;

    if (!r) {
        up_free(u);
        return;
    }
    /* a pooled connection the server had closed: try once more on a fresh one */
    if (u->reused && !u->got_bytes && !timeout && r->conn) {
        proxy_req_ref(r);
        up_release(u, 0);
        r->px->metrics.upstream_reused--;
        proxy_upstream_send(r);
        proxy_req_unref(r);
        return;
    }
    proxy_req_ref(r);
    up_release(u, 0);
    proxy_answer_upstream_failed(r, timeout, why);
    proxy_req_unref(r);
}

static void up_parse(struct proxy_upconn *u, const char *data, size_t len)
{
    size_t n;
    struct proxy_req *r;

    u->in_parse = 1;
    n = http_parser_execute(&u->parser, &up_settings, data, len);
    u->in_parse = 0;
    if (u->dead) {
        up_free(u);
        return;
    }
    (void)n;
    if (u->complete) {
        int keep = http_should_keep_alive(&u->parser) && n == len;
        r = u->req;
        proxy_req_ref(r);
        up_release(u, keep);
        proxy_answer_upstream_done(r);
        proxy_req_unref(r);
        return;
    }
    if (HTTP_PARSER_ERRNO(&u->parser) != HPE_OK) {
        up_fail(u, 0,
                u->coded ? "the provider sent a compressed answer (Content-Encoding), which the "
                           "gateway cannot restore, mask or price"
                         : "the provider sent a malformed HTTP answer");
        return;
    }
}

/* up_write_cb -- the request is out whole: from here on the provider may bill for it, so
 * an answer without usage is charged an estimate (proxy_req_finish) */
static void up_write_cb(struct bufferevent *bev, void *arg)
{
    struct proxy_upconn *u = arg;

    if (u->req && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        u->req->up_written = 1;
}

static void up_read_cb(struct bufferevent *bev, void *arg)
{
    struct proxy_upconn *u = arg;
    struct evbuffer *in = bufferevent_get_input(bev);

    while (evbuffer_get_length(in) > 0 && u->req) {
        struct evbuffer_iovec v;
        size_t len;
        char *copy;

        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        len = v.iov_len;
        u->got_bytes = 1;
        /* copy: parser callbacks may free the bufferevent under us */
        copy = malloc(len);
        if (!copy) {
            up_fail(u, 0, "out of memory");
            return;
        }
        memcpy(copy, v.iov_base, len);
        evbuffer_drain(in, len);
        {
            struct proxy_req *r = u->req;
            proxy_req_ref(r);
            up_parse(u, copy, len);
            free(copy);
            if (r->up != u) { /* released, failed or freed */
                proxy_req_unref(r);
                return;
            }
            proxy_req_unref(r);
        }
    }
}

static const char *ssl_error_text(struct proxy_upconn *u, char *buf, size_t cap)
{
    unsigned long e;
    SSL *ssl = bufferevent_openssl_get_ssl(u->bev);

    buf[0] = '\0';
    if (ssl) {
        long vr = SSL_get_verify_result(ssl);
        if (vr != X509_V_OK) {
            snprintf(buf, cap, "TLS certificate verification failed: %s",
                     X509_verify_cert_error_string(vr));
            return buf;
        }
    }
    while ((e = bufferevent_get_openssl_error(u->bev)) != 0)
        ERR_error_string_n(e, buf, cap);
    return buf[0] ? buf : NULL;
}

static void up_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct proxy_upconn *u = arg;
    char ebuf[256];
    const char *why;

    (void)bev;
    if (what & BEV_EVENT_CONNECTED)
        return;
    if (what & BEV_EVENT_TIMEOUT) {
        up_fail(u, 1,
                u->got_bytes ? "the stream stalled" : "no answer within the provider's timeout");
        return;
    }
    if (what & BEV_EVENT_EOF) {
        /* read-until-close bodies end here */
        if (u->req && u->got_bytes) {
            u->in_parse = 1;
            http_parser_execute(&u->parser, &up_settings, NULL, 0);
            u->in_parse = 0;
            if (u->dead) {
                up_free(u);
                return;
            }
            if (u->complete) {
                struct proxy_req *r = u->req;
                proxy_req_ref(r);
                up_release(u, 0);
                proxy_answer_upstream_done(r);
                proxy_req_unref(r);
                return;
            }
        }
        up_fail(u, 0,
                u->got_bytes ? "the connection closed mid-answer"
                             : "the connection closed before an answer");
        return;
    }
    if (what & BEV_EVENT_ERROR) {
        int se = EVUTIL_SOCKET_ERROR();
        int dns = bufferevent_socket_get_dns_error(u->bev);
        why = u->pool->ssl ? ssl_error_text(u, ebuf, sizeof(ebuf)) : NULL;
        if (dns)
            snprintf(ebuf, sizeof(ebuf), "cannot resolve %s: %s", u->pool->prov->host,
                     evutil_gai_strerror(dns));
        else if (!why)
            snprintf(ebuf, sizeof(ebuf), "%s",
                     se ? evutil_socket_error_to_string(se) : "connection error");
        up_fail(u, 0, ebuf);
    }
}

static struct proxy_upconn *up_new(struct proxy_pool *p)
{
    struct proxy *px = p->px;
    const struct config_provider *prov = p->prov;
    struct proxy_upconn *u = calloc(1, sizeof(*u));

    if (!u)
        return NULL;
    u->pool = p;
    if (p->ssl) {
        SSL *ssl = SSL_new(p->ssl);
        if (!ssl) {
            free(u);
            return NULL;
        }
        if (is_ip(prov->host)) {
            X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), prov->host);
        } else {
            SSL_set_tlsext_host_name(ssl, prov->host);
            SSL_set1_host(ssl, prov->host);
        }
        u->bev = bufferevent_openssl_socket_new(px->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                                BEV_OPT_CLOSE_ON_FREE);
        if (u->bev)
            bufferevent_openssl_set_allow_dirty_shutdown(u->bev, 1);
    } else {
        u->bev = bufferevent_socket_new(px->base, -1, BEV_OPT_CLOSE_ON_FREE);
    }
    u->out = evbuffer_new();
    if (!u->bev || !u->out) {
        if (u->bev)
            bufferevent_free(u->bev);
        if (u->out)
            evbuffer_free(u->out);
        free(u);
        return NULL;
    }
    if (bufferevent_socket_connect_hostname(u->bev, px->dns, AF_UNSPEC, prov->host, prov->port) <
        0) {
        bufferevent_free(u->bev);
        evbuffer_free(u->out);
        free(u);
        return NULL;
    }
    px->metrics.upstream_conns_total++;
    return u;
}

static void up_send(struct proxy_req *r, struct proxy_upconn *u)
{
    const struct config_provider *prov = r->d.prov;
    struct evbuffer *bout = bufferevent_get_output(u->bev);
    struct evbuffer *out = u->out;
    int ms = prov->timeout_ms > 0 ? prov->timeout_ms : r->snap->cfg->limits.upstream_timeout_ms;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    int default_port = prov->tls ? 443 : 80;

    u->req = r;
    proxy_req_ref(r);
    r->up = u;
    http_parser_init(&u->parser, HTTP_RESPONSE);
    u->parser.data = u;
    u->complete = 0;
    u->paused = 0;
    u->in_value = 0;
    u->hname_len = 0;
    u->ctype_len = 0;
    u->ctype[0] = '\0';
    u->coded = u->hdr_is_coding = 0;
    bufferevent_setcb(u->bev, up_read_cb, up_write_cb, up_event_cb, u);
    bufferevent_set_timeouts(u->bev, &tv, &tv);
    if (prov->type == CONFIG_PROVIDER_ANTHROPIC)
        evbuffer_add_printf(out, "POST %s/v1/messages%s HTTP/1.1\r\n", prov->path_prefix,
                            r->count_tokens ? "/count_tokens" : "");
    else
        evbuffer_add_printf(out, "POST %s%s HTTP/1.1\r\n", prov->path_prefix, r->up_wire->up_path);
    if (prov->port == default_port)
        evbuffer_add_printf(out, "host: %s\r\n", prov->host);
    else if (strchr(prov->host, ':'))
        evbuffer_add_printf(out, "host: [%s]:%d\r\n", prov->host, prov->port);
    else
        evbuffer_add_printf(out, "host: %s:%d\r\n", prov->host, prov->port);
    evbuffer_add_printf(out,
                        "user-agent: airlock/0.1\r\ncontent-type: application/json\r\n"
                        "accept: %s\r\naccept-encoding: identity\r\ncontent-length: %zu\r\n",
                        r->d.stream ? "text/event-stream" : "application/json", r->d.outbound_len);
    if (prov->type == CONFIG_PROVIDER_ANTHROPIC) {
        if (prov->api_key)
            evbuffer_add_printf(out, "x-api-key: %s\r\n", prov->api_key);
        evbuffer_add_printf(out, "anthropic-version: %s\r\n",
                            r->anthropic_version[0] ? r->anthropic_version : "2023-06-01");
        if (r->anthropic_beta[0])
            evbuffer_add_printf(out, "anthropic-beta: %s\r\n", r->anthropic_beta);
    } else {
        if (prov->api_key)
            evbuffer_add_printf(out, "authorization: Bearer %s\r\n", prov->api_key);
        if (r->openai_beta[0])
            evbuffer_add_printf(out, "openai-beta: %s\r\n", r->openai_beta);
    }
    evbuffer_add(out, "\r\n", 2);
    evbuffer_add(out, r->d.outbound, r->d.outbound_len);
    r->px->metrics.upstream_bytes_out += r->d.outbound_len;
    /* The request was staged in u->out. A kept-alive plain connection is written directly,
     * from the loop, sparing the write event's two epoll_ctl calls (as conn_flush does for
     * clients; the bufferevent's own output cannot be written from outside); what the
     * kernel does not take, a new connection (still connecting) and TLS go through the
     * bufferevent. Its write side stays enabled: enabling it again would wake the write
     * event even with nothing to write. */
    if (u->reused && !prov->tls && evbuffer_get_length(bout) == 0)
        (void)evbuffer_write(out, bufferevent_getfd(u->bev)); /* an error: libevent's */
    if (evbuffer_get_length(out) > 0)
        evbuffer_add_buffer(bout, out);
    else
        r->up_written = 1; /* (written directly: no write callback comes) */
    if ((bufferevent_get_enabled(u->bev) & (EV_READ | EV_WRITE)) != (EV_READ | EV_WRITE))
        bufferevent_enable(u->bev, EV_READ | EV_WRITE);
}

void proxy_upstream_send(struct proxy_req *r)
{
    struct proxy_pool *p = &r->snap->pools[r->d.prov_index];
    struct proxy_upconn *u = p->idle;

    if (r->t_upstream_start < 0)
        r->t_upstream_start = proxy_req_elapsed(r);
    if (u) {
        p->idle = u->next;
        p->n_idle--;
        u->next = NULL;
        r->px->metrics.upstream_reused++;
    } else {
        u = up_new(p);
        if (!u) {
            proxy_answer_upstream_failed(r, 0, "cannot open a connection");
            return;
        }
    }
    up_send(r, u);
}

void proxy_upstream_pause(struct proxy_req *r, int pause)
{
    struct proxy_upconn *u = r->up;

    if (!u || u->paused == pause)
        return;
    u->paused = pause;
    if (pause)
        bufferevent_disable(u->bev, EV_READ);
    else
        bufferevent_enable(u->bev, EV_READ);
}

void proxy_upstream_abort(struct proxy_req *r)
{
    struct proxy_upconn *u = r->up;

    if (!u)
        return;
    u->req = NULL;
    r->up = NULL;
    up_free(u);
    proxy_req_unref(r);
}
