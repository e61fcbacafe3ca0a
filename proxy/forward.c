/* forward.c -- the egress proxy's forward listener (SPEC §8): CONNECT and absolute-form
 * requests, Proxy-Authorization, interception, tunnels, and the `connect` audit record.
 *
 * A connection accepted on a `mode: forward` listener is an ordinary proxy_conn (server.c
 * parses its request head) until its first request is complete; then it becomes one of:
 *
 *   refused      a one-line answer (400, 403, 407, 503 ...), its record, close. Nothing
 *                is resolved or connected for it.
 *   intercepted  "200 Connection established", then TLS with the host's minted
 *                certificate over the same socket (proxy_conn_start_tls); from there on
 *                the connection is a gateway connection: every request inside goes
 *                through proxy_req_handle, which asks proxy_forward_screen and
 *                proxy_forward_key (req.c) what only an intercepted request needs.
 *   tunnel       the name resolved once with evdns (never a blocking lookup), every
 *                address checked (egress_address_allowed: DNS rebinding), a connection to
 *                the checked address, "200" only once it is up, then a blind splice with
 *                backpressure, half-close and an idle timeout. The client's first bytes
 *                wait until hello_check has read them: a TLS ClientHello whose server
 *                name the policy would intercept or deny closes the tunnel before any of
 *                them reaches the far end (the far end's bytes flow meanwhile).
 *   absolute     `GET http://host/path`: the same host policy; a tunnel-allowed host gets
 *                the request (origin-form, Connection: close, Proxy-* headers removed)
 *                and the answer is relayed until the server closes. Intercepted hosts
 *                are refused over plain HTTP (their APIs are HTTPS: send CONNECT).
 *
 * Every CONNECT (and absolute-form request) is recorded once, when it ends, refused ones
 * at once: AUDIT_REC_CONNECT with egress_connect_meta's fields. The record does not wait
 * for the disk (nothing it describes is held back for it); a tunnel is refused with 503
 * while the audit is failed and on_failure is refuse.
 *
 * Everything here runs on the event loop. A proxy_fwd is owned by its connection
 * (c->fwd) and freed by proxy_forward_conn_free from conn_free; a DNS lookup in flight
 * has a small context of its own that outlives a cancelled fwd. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <openssl/ssl.h>
#include <sodium.h>

#include "common/log.h"
#include "common/rand.h"
#include "common/wipe.h"
#include "proxy/proxy_int.h"
#include "proxy/sni.h"

/* a tunnel stops reading one side while the other side's unsent bytes are above
 * FWD_HIGH_WATER, and reads again once they are below FWD_LOW_WATER: with the kernel's
 * socket buffers, that bounds what a slow reader makes the proxy hold */
#define FWD_HIGH_WATER (256u << 10)
#define FWD_LOW_WATER (64u << 10)
#define FWD_HOST_MAX 320 /* a refused target's raw bytes are kept (escaped) up to 300 */

enum fwd_phase {
    FWD_NEW,        /* the request is being decided */
    FWD_RESOLVING,  /* evdns lookup in flight */
    FWD_CONNECTING, /* to the checked address */
    FWD_OPEN,       /* spliced (a tunnel) or relaying an answer (absolute-form) */
    FWD_INTERCEPT,  /* TLS terminated here; requests take the gateway's path */
};

struct proxy_fwd;

/* One direction of a spliced tunnel (splice(2): socket -> pipe -> socket, the bytes never
 * enter user space). The pipe is the direction's buffer: while it holds bytes the source
 * is not read, so a slow reader holds the far end back through TCP. */
struct fwd_pipe {
    struct proxy_fwd *f;
    int src, dst;     /* borrowed from the bufferevents, which own and close them */
    int p[2];         /* read end, write end */
    size_t held;      /* bytes in the pipe */
    int eof, shut;    /* EOF read from src; dst's writing side shut */
    struct event *rd; /* src readable (persistent while not full) */
    struct event *wr; /* dst writable (while the pipe holds bytes) */
    uint64_t *count;  /* f->up or f->down */
    uint64_t *total;  /* the proxy's counter of the direction */
};

/* The context of one evdns lookup: freed by its callback, which always comes (with
 * EVUTIL_EAI_CANCEL after a cancel); f is NULL once the fwd is gone. */
struct fwd_dns {
    struct proxy_fwd *f;
    struct evdns_getaddrinfo_request *req;
};

struct proxy_fwd {
    struct proxy_conn *c;
    struct proxy *px;
    enum fwd_phase phase;
    int http; /* an absolute-form request, not a CONNECT */
    char id[33];
    char host[FWD_HOST_MAX];
    int port;
    enum egress_verdict verdict;
    char reason[480];
    /* Proxy-Authorization: the key's digest (looked up again in each request's snapshot)
     * and, for the record, its name and team at CONNECT time */
    int has_key;
    uint8_t key_sha[32];
    char key[128], team[128];
    /* the tunnel entry that allowed the host (a copy: the snapshot may go) */
    int has_entry;
    struct config_tunnel entry;
    char entry_glob[300];
    struct sockaddr_storage sa;
    socklen_t salen;
    char address[INET6_ADDRSTRLEN + 2];
    uint64_t up, down; /* bytes client -> far end, far end -> client */
    long long started_ms;
    int status; /* the CONNECT's answer (or the relayed answer's status); 0 none yet */
    int recorded;
    int counted;       /* in px->egress.open_tunnels */
    unsigned requests; /* intercepted: requests seen inside */
    struct fwd_dns *dns;
    struct bufferevent *far;
    struct event *timer; /* resolving/connecting: the deadline; open: the idle check */
    int idle_ms;
    struct timeval last;    /* the last byte either way (the loop's cached time) */
    int up_eof, down_eof;   /* EOF read from the client / the far end */
    int up_shut, down_shut; /* our writing side towards far end / client is shut */
    int up_paused, down_paused;
    struct evbuffer *req_out; /* absolute-form: the request to send once connected */
    int spliced;              /* the tunnel runs on splice(2): pipes[] instead of buffers */
    struct fwd_pipe pipes[2]; /* [0] client -> far end, [1] far end -> client */
    /* a CONNECT tunnel holds the client's first bytes (in its input buffer, or hello_in
     * when spliced) until hello_check has read them (a TLS ClientHello's server name
     * against the policy); the far end's bytes flow meanwhile */
    int hello_wait;
    size_t hello_need;         /* the input length at which sni_parse can go further */
    struct event *hello_ev;    /* spliced: the client's socket is readable (while waiting) */
    struct evbuffer *hello_in; /* spliced: the held bytes (a bufferevent's own input
                                  buffer cannot be read into from outside) */
    /* a ClientHello that offers TLS 1.3 may be answered with a HelloRetryRequest, and the
     * client's second ClientHello names the host the server then serves: so after the
     * first one passes, the client's later bytes are held until the server's first bytes
     * say whether it retries (HELLO_SERVER); if it does, the second hello is checked like
     * the first (HELLO_SECOND) */
    int hello_stage;
    size_t hello_go; /* hello_check passed: the bytes at the front of the held ones that go */
    unsigned char srv_head[SNI_SRV_HRR_LEN]; /* the server's first bytes, while HELLO_SERVER */
    size_t srv_n;
    struct event *srv_ev;      /* spliced, HELLO_SERVER: the far end's socket is readable */
    struct sni_http http_head; /* plain HTTP first bytes: the head read so far (sni_http_next) */
};

enum { HELLO_WAIT, HELLO_PASS, HELLO_CLOSED };                /* hello_check's answers */
enum { HELLO_FIRST, HELLO_SERVER, HELLO_SECOND, HELLO_DONE }; /* f->hello_stage */

static void tunnel_start(struct proxy_fwd *f);
static void far_connect(struct proxy_fwd *f);
static int hello_check(struct proxy_fwd *f, struct evbuffer *in, int eof);
static void hello_rd_cb(evutil_socket_t fd, short what, void *arg);
static void srv_rd_cb(evutil_socket_t fd, short what, void *arg);
static void server_said(struct proxy_fwd *f, int hrr);
static void tunnel_open(struct proxy_fwd *f);
static void fwd_end(struct proxy_fwd *f);

static long long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *status_line(int status)
{
    switch (status) {
    case 400:
        return "Bad Request";
    case 403:
        return "Forbidden";
    case 405:
        return "Method Not Allowed";
    case 407:
        return "Proxy Authentication Required";
    case 413:
        return "Payload Too Large";
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
        return status < 500 ? "Client Error" : "Server Error";
    }
}

/* ---- the connect record ---- */

/* record -- write the `connect` record once (refusals at once, the others when they end)
 * and count the decision. Not waited for: what it describes is not held back for it. */
static void record(struct proxy_fwd *f)
{
    struct proxy *px = f->px;
    struct egress_connect_info ci;
    char *meta;
    size_t len = 0;

    if (f->recorded)
        return;
    f->recorded = 1;
    px->egress.connects[f->verdict == EGRESS_INTERCEPT ? 1 : f->verdict == EGRESS_TUNNEL ? 2 : 0]++;
    if (!px->audit)
        return;
    memset(&ci, 0, sizeof(ci));
    ci.id = f->id;
    ci.client = f->c ? f->c->peer : NULL;
    ci.key = f->key[0] ? f->key : NULL;
    ci.team = f->team[0] ? f->team : NULL;
    ci.host = f->host;
    ci.port = f->port;
    ci.decision = f->verdict;
    ci.reason = f->reason;
    ci.address = f->address[0] ? f->address : NULL;
    ci.bytes_up = f->up;
    ci.bytes_down = f->down;
    ci.started_ms = f->started_ms;
    ci.ended_ms = now_ms();
    ci.status = f->status;
    meta = egress_connect_meta(&ci, &len);
    if (!meta || audit_append_ex(px->audit, AUDIT_REC_CONNECT, meta, len, NULL, 0, AUDIT_WRITTEN,
                                 NULL, NULL) < 0)
        log_error("connect %s to %.100s:%d: its audit record could not be written", f->id, f->host,
                  f->port);
    free(meta);
}

static void pipe_deinit(struct fwd_pipe *d);

/* stop_work -- nothing more happens for f: a lookup in flight is cancelled (its callback
 * only frees its context), the pipes, the far end and the timer go, the tunnel slot is
 * given back. Safe to call twice. */
static void stop_work(struct proxy_fwd *f)
{
    if (f->dns) {
        struct fwd_dns *dns = f->dns;
        f->dns = NULL;
        dns->f = NULL;
        if (dns->req)
            evdns_getaddrinfo_cancel(dns->req); /* may free dns before it returns */
    }
    if (f->hello_ev) {
        event_free(f->hello_ev);
        f->hello_ev = NULL;
    }
    if (f->hello_in) {
        evbuffer_free(f->hello_in);
        f->hello_in = NULL;
    }
    if (f->srv_ev) {
        event_free(f->srv_ev);
        f->srv_ev = NULL;
    }
    if (f->spliced) { /* (their events before the sockets they watch are closed) */
        pipe_deinit(&f->pipes[0]);
        pipe_deinit(&f->pipes[1]);
        f->spliced = 0;
    }
    if (f->far) {
        bufferevent_free(f->far);
        f->far = NULL;
    }
    if (f->timer)
        evtimer_del(f->timer);
    if (f->counted) {
        f->px->egress.open_tunnels--;
        f->counted = 0;
    }
}

/* answer -- a one-line text answer to the forward request, its record, and close. The
 * connection (and f) may be freed before this returns: callers return at once. */
static void __attribute__((format(printf, 3, 4)))
answer(struct proxy_fwd *f, int status, const char *fmt, ...)
{
    struct proxy_conn *c = f->c;
    char line[400];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if ((size_t)n > sizeof(line) - 2)
        n = (int)sizeof(line) - 2;
    for (int i = 0; i < n; i++) /* one line, whatever a host name held */
        if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
            line[i] = '?';
    line[n++] = '\n';
    stop_work(f); /* (an answer ends every attempt: a lookup or connect still going) */
    f->status = status;
    /* refused before anything was opened: the line is the reason; a tunnel that failed to
     * open keeps its decision and says why it failed */
    if (f->phase == FWD_NEW || f->verdict == EGRESS_REFUSE) {
        f->verdict = EGRESS_REFUSE;
        snprintf(f->reason, sizeof(f->reason), "%.*s", n - 1, line);
    } else {
        size_t r = strlen(f->reason);
        snprintf(f->reason + r, sizeof(f->reason) - r, "; %.*s", n - 1, line);
    }
    evbuffer_add_printf(c->out,
                        "HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
                        "content-length: %d\r\n%sconnection: close\r\n\r\n",
                        status, status_line(status), n,
                        status == 407 ? "proxy-authenticate: Basic realm=\"airlock\"\r\n" : "");
    evbuffer_add(c->out, line, (size_t)n);
    proxy_conn_flush(c);
    record(f);
    c->keep_alive = 0;
    proxy_conn_close(c);
}

/* ---- the request ---- */

/* keep a target that did not parse, for the record: printable ASCII as is, the rest as
 * \xHH, cut to 300 bytes */
static void raw_target(char *out, size_t cap, const char *s, size_t n)
{
    size_t o = 0;

    for (size_t i = 0; i < n && o + 5 < cap && o < 300; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x21 && ch < 0x7f && ch != '\\')
            out[o++] = (char)ch;
        else
            o += (size_t)snprintf(out + o, cap - o, "\\x%02x", ch);
    }
    out[o] = '\0';
}

/* proxy_auth -- Proxy-Authorization: Basic base64(user:KEY) with an airlock key as the
 * password (the user name is not read). 0: none given or a known key (f->key set); -1: a
 * header that is malformed or names no key of this config. With no `keys` section a
 * header is not read at all. */
static int proxy_auth(struct proxy_fwd *f, const struct config *cfg)
{
    const char *h = proxy_conn_header(f->c, "proxy-authorization");
    unsigned char bin[768];
    size_t binlen = 0, hlen;
    const char *end = NULL;
    const struct config_key *k;
    unsigned char *colon;

    if (!h || !cfg->auth)
        return 0;
    if (strncasecmp(h, "Basic ", 6) != 0)
        return -1;
    h += 6;
    while (*h == ' ')
        h++;
    hlen = strlen(h);
    while (hlen > 0 && h[hlen - 1] == ' ')
        hlen--;
    if (hlen == 0 || hlen > 1000 ||
        sodium_base642bin(bin, sizeof(bin), h, hlen, NULL, &binlen, &end,
                          sodium_base64_VARIANT_ORIGINAL) != 0 ||
        end != h + hlen)
        return -1;
    colon = memchr(bin, ':', binlen);
    if (!colon) {
        sodium_memzero(bin, sizeof(bin));
        return -1;
    }
    crypto_hash_sha256(f->key_sha, colon + 1, binlen - (size_t)(colon + 1 - bin));
    sodium_memzero(bin, sizeof(bin));
    k = config_key_find_sha256(cfg, f->key_sha);
    if (!k)
        return -1;
    f->has_key = 1;
    snprintf(f->key, sizeof(f->key), "%s", k->name);
    snprintf(f->team, sizeof(f->team), "%s", k->team ? k->team : "");
    return 0;
}

static struct proxy_fwd *fwd_new(struct proxy_conn *c)
{
    struct proxy_fwd *f = calloc(1, sizeof(*f));
    unsigned char rnd[16];

    if (!f)
        return NULL;
    f->c = c;
    f->px = c->px;
    f->started_ms = now_ms();
    f->verdict = EGRESS_REFUSE;
    rand_bytes(rnd, sizeof(rnd));
    sodium_bin2hex(f->id, sizeof(f->id), rnd, sizeof(rnd));
    return f;
}

/* decide -- the host policy for f->host:f->port, then what each verdict needs. */
static void decide(struct proxy_fwd *f)
{
    const struct config *cfg = f->px->snap->cfg;
    struct egress_decision d;
    SSL_CTX *ctx;
    SSL *ssl;
    char err[256];

    if (proxy_auth(f, cfg) < 0) {
        answer(f, 407, "The Proxy-Authorization key is not an airlock key of this proxy.");
        return;
    }
    memset(&d, 0, sizeof(d));
    egress_decide(&cfg->egress, f->host, f->port, &d);
    f->verdict = d.verdict;
    snprintf(f->reason, sizeof(f->reason), "%s", d.reason);
    if (d.verdict == EGRESS_REFUSE) {
        answer(f, 403, "Refused by airlock: %s.", d.reason);
        return;
    }
    if (d.verdict == EGRESS_INTERCEPT && f->http) {
        f->verdict = EGRESS_REFUSE;
        answer(f, 403,
               "Refused by airlock: %s:%d is an intercepted API host, reached over HTTPS only "
               "(use CONNECT).",
               f->host, f->port);
        return;
    }
    if (d.verdict == EGRESS_TUNNEL) {
        /* a tunnel is blind: the key can only come with the CONNECT */
        if (cfg->auth && !f->has_key) {
            answer(f, 407,
                   "This proxy needs an airlock key as the Proxy-Authorization password "
                   "(Basic).");
            return;
        }
        if (d.tunnel) {
            f->has_entry = 1;
            f->entry = *d.tunnel;
            snprintf(f->entry_glob, sizeof(f->entry_glob), "%s", d.tunnel->glob);
            f->entry.glob = f->entry_glob;
        }
        tunnel_start(f);
        return;
    }
    /* intercept: TLS ends here, with a certificate for the host */
    if (!f->px->snap->mint) {
        answer(f, 502, "airlock has no CA to intercept %s with.", f->host);
        return;
    }
    ctx = egress_mint_ctx(f->px->snap->mint, f->host, err, sizeof(err));
    ssl = ctx ? SSL_new(ctx) : NULL;
    if (!ssl) {
        log_error("intercept %s: %s", f->host, ctx ? "out of memory" : err);
        answer(f, 502, "airlock cannot make a certificate for %s.", f->host);
        return;
    }
    f->status = 200;
    f->phase = FWD_INTERCEPT;
    evbuffer_add(f->c->out, "HTTP/1.1 200 Connection established\r\n\r\n", 39);
    proxy_conn_flush(f->c);
    f->c->intercept = 1;
    if (proxy_conn_start_tls(f->c, ssl) < 0) {
        snprintf(f->reason, sizeof(f->reason), "%s; TLS could not be set up (out of memory)",
                 d.reason);
        proxy_conn_free(f->c);
    }
}

static void connect_request(struct proxy_fwd *f)
{
    struct proxy_conn *c = f->c;
    char why[160] = "";

    if (egress_target_parse(c->url ? c->url : "", c->url_len, f->host, sizeof(f->host), &f->port,
                            why, sizeof(why)) < 0) {
        raw_target(f->host, sizeof(f->host), c->url ? c->url : "", c->url_len);
        f->port = 0;
        answer(f, 400, "Bad CONNECT target: %s.", why[0] ? why : "not host:port");
        return;
    }
    decide(f);
}

/* absolute_request -- `METHOD http://host[:port]/path HTTP/1.1`: the host policy, then
 * the request in origin-form to the checked address (f->req_out). */
static void absolute_request(struct proxy_fwd *f)
{
    struct proxy_conn *c = f->c;
    struct http_parser_url u;
    const char *url = c->url;
    char target[300], why[160] = "";
    size_t hlen, blen;
    int i;

    http_parser_url_init(&u);
    if (http_parser_parse_url(url, c->url_len, 0, &u) != 0 || !(u.field_set & (1 << UF_SCHEMA)) ||
        !(u.field_set & (1 << UF_HOST))) {
        f->recorded = 1; /* not a proxy request at all: nothing to record */
        answer(f, 400,
               "This is airlock's egress proxy: send CONNECT host:port, or an absolute URL "
               "(http://host/path).");
        return;
    }
    f->http = 1;
    hlen = u.field_data[UF_HOST].len;
    if (u.field_data[UF_SCHEMA].len != 4 ||
        strncasecmp(url + u.field_data[UF_SCHEMA].off, "http", 4) != 0 ||
        (u.field_set & (1 << UF_USERINFO)) || hlen > 260) {
        raw_target(f->host, sizeof(f->host), url, c->url_len);
        answer(f, 400,
               "Only http:// URLs without user info are proxied as requests; send "
               "CONNECT for https.");
        return;
    }
    f->port = (u.field_set & (1 << UF_PORT)) ? u.port : 80;
    if (memchr(url + u.field_data[UF_HOST].off, ':', hlen))
        snprintf(target, sizeof(target), "[%.*s]:%d", (int)hlen, url + u.field_data[UF_HOST].off,
                 f->port);
    else
        snprintf(target, sizeof(target), "%.*s:%d", (int)hlen, url + u.field_data[UF_HOST].off,
                 f->port);
    if (egress_target_parse(target, strlen(target), f->host, sizeof(f->host), &f->port, why,
                            sizeof(why)) < 0) {
        raw_target(f->host, sizeof(f->host), target, strlen(target));
        f->port = 0;
        answer(f, 400, "Bad URL host: %s.", why[0] ? why : "not a host");
        return;
    }
    if (c->body_too_large) {
        answer(f, 413, "The request body is larger than the limit of %zu bytes.",
               c->px->snap->cfg->limits.max_body_bytes);
        return;
    }
    /* the request as the server will get it: origin-form, our own framing */
    f->req_out = evbuffer_new();
    if (!f->req_out) {
        answer(f, 500, "Out of memory.");
        return;
    }
    evbuffer_add_printf(f->req_out, "%s ", http_method_str((enum http_method)c->parser.method));
    if (u.field_set & (1 << UF_PATH))
        evbuffer_add(f->req_out, url + u.field_data[UF_PATH].off, u.field_data[UF_PATH].len);
    else
        evbuffer_add(f->req_out, "/", 1);
    if (u.field_set & (1 << UF_QUERY)) {
        evbuffer_add(f->req_out, "?", 1);
        evbuffer_add(f->req_out, url + u.field_data[UF_QUERY].off, u.field_data[UF_QUERY].len);
    }
    evbuffer_add(f->req_out, " HTTP/1.1\r\n", 11);
    for (i = 0; i < c->n_hdrs; i++) {
        const char *n = c->hdrs[i].name, *v = c->hdrs[i].value ? c->hdrs[i].value : "";
        /* the client's Host is never passed on: the server gets the host the policy
         * decided on (RFC 9112 3.2.2: a proxy replaces Host with the target's authority),
         * so a shared front end cannot route the request to another name it serves */
        if (!n || strncmp(n, "proxy-", 6) == 0 || strcmp(n, "connection") == 0 ||
            strcmp(n, "keep-alive") == 0 || strcmp(n, "transfer-encoding") == 0 ||
            strcmp(n, "content-length") == 0 || strcmp(n, "te") == 0 || strcmp(n, "trailer") == 0 ||
            strcmp(n, "upgrade") == 0 || strcmp(n, "expect") == 0 || strcmp(n, "host") == 0)
            continue;
        evbuffer_add_printf(f->req_out, "%s: %s\r\n", n, v);
    }
    if (f->port == 80)
        evbuffer_add_printf(f->req_out, "host: %s\r\n", strchr(f->host, ':') ? target : f->host);
    else
        evbuffer_add_printf(f->req_out, "host: %s\r\n", target);
    blen = evbuffer_get_length(c->body);
    if (blen || c->parser.method == HTTP_POST || c->parser.method == HTTP_PUT ||
        c->parser.method == HTTP_PATCH)
        evbuffer_add_printf(f->req_out, "content-length: %zu\r\n", blen);
    evbuffer_add(f->req_out, "connection: close\r\n\r\n", 21);
    evbuffer_add_buffer(f->req_out, c->body);
    decide(f);
}

void proxy_forward_dispatch(struct proxy_conn *c)
{
    struct proxy_fwd *f = fwd_new(c);

    if (!f) {
        evbuffer_add_printf(c->out, "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 14\r\n"
                                    "connection: close\r\n\r\nOut of memory\n");
        proxy_conn_flush(c);
        c->keep_alive = 0;
        proxy_conn_close(c);
        return;
    }
    c->fwd = f;
    if (c->parser.method == HTTP_CONNECT) {
        connect_request(f);
        return;
    }
    if (c->url && c->url[0] != '/') {
        absolute_request(f);
        return;
    }
    f->recorded = 1; /* an origin-form request is no proxy request: no record */
    answer(f, 400,
           "This is airlock's egress proxy: send CONNECT host:port, or an absolute URL "
           "(http://host/path); the gateway's API is on its gateway listener.");
}

void proxy_forward_bad_request(struct proxy_conn *c, int status, const char *msg)
{
    struct proxy_fwd *f = c->fwd ? c->fwd : fwd_new(c);

    if (!f) {
        proxy_conn_free(c);
        return;
    }
    c->fwd = f;
    c->state = CONN_FORWARD;
    /* a CONNECT the parser could not read is a refused CONNECT: recorded */
    if (c->parser.method != HTTP_CONNECT)
        f->recorded = 1;
    raw_target(f->host, sizeof(f->host), c->url ? c->url : "", c->url_len);
    answer(f, status, "%s", msg);
}

/* ---- tunnels ---- */

static void dns_cb(int result, struct evutil_addrinfo *res, void *arg);
static void timer_cb(evutil_socket_t fd, short what, void *arg);

static void set_timer(struct proxy_fwd *f, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

    evtimer_add(f->timer, &tv);
}

/* tunnel_start -- a tunnel (or an absolute-form request) allowed by the policy: the
 * limits, then the address (a literal as is, a name through evdns, once). */
static void tunnel_start(struct proxy_fwd *f)
{
    struct proxy *px = f->px;
    const struct config *cfg = px->snap->cfg;
    struct sockaddr_in *s4 = (struct sockaddr_in *)&f->sa;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&f->sa;
    struct evutil_addrinfo hints;
    struct evdns_getaddrinfo_request *req;
    struct fwd_dns *dns;
    char port[16];

    if (px->egress.open_tunnels >= cfg->egress.max_tunnels) {
        answer(f, 503, "Too many open tunnels (%d); try again later.", cfg->egress.max_tunnels);
        return;
    }
    if (px->audit && !audit_healthy(px->audit) &&
        cfg->audit.on_failure == CONFIG_ON_FAILURE_REFUSE) {
        answer(f, 503, "The audit log cannot be written, so no tunnel is opened (fail closed).");
        return;
    }
    f->timer = evtimer_new(px->base, timer_cb, f);
    if (!f->timer) {
        answer(f, 500, "Out of memory.");
        return;
    }
    f->counted = 1;
    px->egress.open_tunnels++;
    f->idle_ms = cfg->egress.tunnel_idle_ms > 0 ? cfg->egress.tunnel_idle_ms : 300000;
    set_timer(f, cfg->limits.upstream_timeout_ms);
    memset(&f->sa, 0, sizeof(f->sa));
    if (inet_pton(AF_INET, f->host, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)f->port);
        f->salen = sizeof(*s4);
    } else if (inet_pton(AF_INET6, f->host, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)f->port);
        f->salen = sizeof(*s6);
    }
    if (f->salen) { /* a literal: the policy matched it to a literal entry (or the default) */
        if (!egress_address_allowed(f->has_entry ? &f->entry : NULL, (struct sockaddr *)&f->sa)) {
            f->verdict = EGRESS_REFUSE;
            answer(f, 403,
                   "Refused by airlock: %.100s is a loopback, private or link-local address no "
                   "entry names.",
                   f->host);
            return;
        }
        far_connect(f);
        return;
    }
    dns = calloc(1, sizeof(*dns));
    if (!dns) {
        answer(f, 500, "Out of memory.");
        return;
    }
    dns->f = f;
    f->dns = dns;
    f->phase = FWD_RESOLVING;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    snprintf(port, sizeof(port), "%d", f->port);
    /* the callback may run before this returns (/etc/hosts, a cached answer): then req is
     * NULL, and f may be gone */
    req = evdns_getaddrinfo(px->dns, f->host, port, &hints, dns_cb, dns);
    if (req)
        dns->req = req;
}

static void dns_cb(int result, struct evutil_addrinfo *res, void *arg)
{
    struct fwd_dns *dns = arg;
    struct proxy_fwd *f = dns->f;
    struct evutil_addrinfo *ai;
    char ip[INET6_ADDRSTRLEN];

    free(dns);
    if (!f) { /* cancelled: the connection is gone */
        if (res)
            evutil_freeaddrinfo(res);
        return;
    }
    f->dns = NULL;
    if (result != 0 || !res) {
        if (res)
            evutil_freeaddrinfo(res);
        answer(f, 502, "airlock cannot resolve %s: %s.", f->host, evutil_gai_strerror(result));
        return;
    }
    /* every address the name has must be allowed, and the one connected to is one of them:
     * a name that points inside the network (now, or in its next answer) gets nothing */
    for (ai = res; ai; ai = ai->ai_next) {
        if (ai->ai_addr && egress_address_allowed(f->has_entry ? &f->entry : NULL, ai->ai_addr))
            continue;
        ip[0] = '\0';
        if (ai->ai_addr && ai->ai_family == AF_INET)
            inet_ntop(AF_INET, &((struct sockaddr_in *)ai->ai_addr)->sin_addr, ip, sizeof(ip));
        else if (ai->ai_addr && ai->ai_family == AF_INET6)
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr, ip, sizeof(ip));
        evutil_freeaddrinfo(res);
        f->verdict = EGRESS_REFUSE;
        answer(f, 403,
               "Refused by airlock: %.100s resolves to %s, a loopback, private or link-local "
               "address (only an entry naming the address allows it).",
               f->host, ip[0] ? ip : "an address");
        return;
    }
    /* connect to an IPv4 address when the name has one (a host without IPv6 routes would
     * fail an AAAA answer), else to the first */
    for (ai = res; ai && ai->ai_family != AF_INET; ai = ai->ai_next)
        ;
    if (!ai)
        ai = res;
    if (ai->ai_addrlen > sizeof(f->sa)) {
        evutil_freeaddrinfo(res);
        answer(f, 502, "airlock cannot use the address of %s.", f->host);
        return;
    }
    memcpy(&f->sa, ai->ai_addr, ai->ai_addrlen);
    f->salen = (socklen_t)ai->ai_addrlen;
    evutil_freeaddrinfo(res);
    far_connect(f);
}

static void far_event_cb(struct bufferevent *bev, short what, void *arg);

static void far_connect(struct proxy_fwd *f)
{
    const struct sockaddr *sa = (const struct sockaddr *)&f->sa;
    char ip[INET6_ADDRSTRLEN];

    ip[0] = '\0';
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, ip, sizeof(ip));
    else
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, ip, sizeof(ip));
    snprintf(f->address, sizeof(f->address), "%s", ip);
    f->phase = FWD_CONNECTING;
    f->far = bufferevent_socket_new(f->px->base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (!f->far) {
        answer(f, 500, "Out of memory.");
        return;
    }
    bufferevent_setcb(f->far, NULL, NULL, far_event_cb, f);
    if (bufferevent_socket_connect(f->far, sa, (int)f->salen) < 0) {
        answer(f, 502, "airlock cannot connect to %s (%s): %s.", f->host, f->address,
               strerror(errno));
        return;
    }
}

static void touch(struct proxy_fwd *f)
{
    event_base_gettimeofday_cached(f->px->base, &f->last);
}

/* shut our writing side towards the client (the far end has said all) once its
 * output is empty */
static void shut_client(struct proxy_fwd *f)
{
    struct proxy_conn *c = f->c;

    if (f->down_shut || evbuffer_get_length(bufferevent_get_output(c->bev)) > 0)
        return;
    f->down_shut = 1;
    if (!c->tls)
        (void)shutdown(bufferevent_getfd(c->bev), SHUT_WR);
}

static void shut_far(struct proxy_fwd *f)
{
    if (f->up_shut || evbuffer_get_length(bufferevent_get_output(f->far)) > 0)
        return;
    f->up_shut = 1;
    (void)shutdown(bufferevent_getfd(f->far), SHUT_WR);
}

/* both ways said all and delivered it (an absolute-form request: the answer did) */
static int finished(const struct proxy_fwd *f)
{
    return f->down_eof && f->down_shut && (f->http || (f->up_eof && f->up_shut));
}

static void client_read_cb(struct bufferevent *bev, void *arg)
{
    struct proxy_fwd *f = arg;
    struct evbuffer *in = bufferevent_get_input(bev), *out;
    size_t n = evbuffer_get_length(in);

    if (f->http) { /* one request, already sent: what follows is not forwarded */
        evbuffer_drain(in, n);
        return;
    }
    if (n == 0)
        return;
    if (f->hello_wait) {
        if (hello_check(f, in, 0) != HELLO_PASS)
            return;
        n = f->hello_go; /* the rest waits for the server's first bytes */
    }
    out = bufferevent_get_output(f->far);
    evbuffer_remove_buffer(in, out, n);
    f->up += n;
    f->px->egress.tunnel_bytes_up += n;
    touch(f);
    if (evbuffer_get_length(out) >= FWD_HIGH_WATER && !f->up_paused) {
        f->up_paused = 1;
        bufferevent_disable(bev, EV_READ);
    }
}

static void far_read_cb(struct bufferevent *bev, void *arg)
{
    struct proxy_fwd *f = arg;
    struct evbuffer *in = bufferevent_get_input(bev), *out;
    size_t n = evbuffer_get_length(in);

    if (n == 0)
        return;
    if (f->http && f->status == 0) { /* the relayed answer's status, for the record */
        char head[13];
        if (evbuffer_copyout(in, head, 12) == 12 && memcmp(head, "HTTP/1.", 7) == 0) {
            head[12] = '\0';
            f->status = atoi(head + 9);
        }
    }
    if (f->hello_stage == HELLO_SERVER) { /* a HelloRetryRequest? (the bytes go on at once) */
        size_t k = n < sizeof(f->srv_head) - f->srv_n ? n : sizeof(f->srv_head) - f->srv_n;
        enum sni_server v;
        evbuffer_copyout(in, f->srv_head + f->srv_n, k);
        f->srv_n += k;
        v = sni_server_hrr(f->srv_head, f->srv_n);
        if (v != SNI_SRV_MORE)
            server_said(f, v == SNI_SRV_HRR);
    }
    out = bufferevent_get_output(f->c->bev);
    evbuffer_add_buffer(out, in);
    f->down += n;
    f->px->egress.tunnel_bytes_down += n;
    touch(f);
    if (evbuffer_get_length(out) >= FWD_HIGH_WATER && !f->down_paused) {
        f->down_paused = 1;
        bufferevent_disable(bev, EV_READ);
    }
}

/* the far end took what was queued for it (below the low-water mark): read the client
 * again; after the client's EOF, shut the far end's side once all is delivered */
static void far_write_cb(struct bufferevent *bev, void *arg)
{
    struct proxy_fwd *f = arg;

    if (f->up_eof) {
        shut_far(f);
        if (finished(f))
            fwd_end(f);
        return;
    }
    if (f->up_paused) {
        f->up_paused = 0;
        bufferevent_enable(f->c->bev, EV_READ);
    }
    (void)bev;
}

static void client_write_cb(struct bufferevent *bev, void *arg)
{
    struct proxy_fwd *f = arg;

    if (f->down_eof) {
        shut_client(f);
        if (finished(f))
            fwd_end(f);
        return;
    }
    if (f->down_paused) {
        f->down_paused = 0;
        bufferevent_enable(f->far, EV_READ);
    }
    (void)bev;
}

static void client_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct proxy_fwd *f = arg;

    if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR) && !f->http) {
        if (f->hello_wait && hello_check(f, bufferevent_get_input(bev), 1) != HELLO_PASS)
            return;
        client_read_cb(bev, f); /* what came with the EOF */
        f->up_eof = 1;
        bufferevent_disable(bev, EV_READ);
        /* the write callback says when the last byte left */
        bufferevent_setwatermark(f->far, EV_WRITE, 0, 0);
        shut_far(f);
        if (finished(f))
            fwd_end(f);
        return;
    }
    fwd_end(f); /* an error, or the client of an absolute-form request left */
}

static void far_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct proxy_fwd *f = arg;

    if (f->phase == FWD_CONNECTING) {
        if (what & BEV_EVENT_CONNECTED) {
            tunnel_open(f);
            return;
        }
        {
            int e = EVUTIL_SOCKET_ERROR();
            answer(f, 502, "airlock could not connect to %s (%s): %s.", f->host, f->address,
                   e ? evutil_socket_error_to_string(e) : "connection failed");
        }
        return;
    }
    if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR)) {
        far_read_cb(bev, f);
        if (f->hello_stage == HELLO_SERVER) /* it ended without a HelloRetryRequest */
            server_said(f, 0);
        f->down_eof = 1;
        bufferevent_disable(bev, EV_READ);
        bufferevent_setwatermark(f->c->bev, EV_WRITE, 0, 0);
        shut_client(f);
        if (finished(f))
            fwd_end(f);
        return;
    }
    fwd_end(f);
}

/* ---- the splice(2) path: a plain client and the far end, both sockets ---- */

#define FWD_PIPE_SIZE (256 << 10)

static void pipe_rd_cb(evutil_socket_t fd, short what, void *arg);
static void pipe_wr_cb(evutil_socket_t fd, short what, void *arg);

static int pipe_init(struct proxy_fwd *f, struct fwd_pipe *d, int src, int dst, uint64_t *count,
                     uint64_t *total)
{
    d->f = f;
    d->src = src;
    d->dst = dst;
    d->count = count;
    d->total = total;
    if (pipe2(d->p, O_NONBLOCK | O_CLOEXEC) != 0) {
        d->p[0] = d->p[1] = -1;
        return -1;
    }
    (void)fcntl(d->p[1], F_SETPIPE_SZ, FWD_PIPE_SIZE); /* the default 64 KiB if refused */
    d->rd = event_new(f->px->base, src, EV_READ | EV_PERSIST, pipe_rd_cb, d);
    d->wr = event_new(f->px->base, dst, EV_WRITE | EV_PERSIST, pipe_wr_cb, d);
    return d->rd && d->wr ? 0 : -1;
}

static void pipe_deinit(struct fwd_pipe *d)
{
    if (d->rd)
        event_free(d->rd);
    if (d->wr)
        event_free(d->wr);
    if (d->p[0] >= 0 && d->f)
        close(d->p[0]);
    if (d->p[1] >= 0 && d->f)
        close(d->p[1]);
    memset(d, 0, sizeof(*d));
}

static int spliced_finished(const struct proxy_fwd *f)
{
    return f->pipes[0].shut && f->pipes[1].shut;
}

/* drain -- move what the pipe holds to dst; once src said EOF and all is out, shut dst's
 * writing side. -1: dst failed. */
static int pipe_drain(struct fwd_pipe *d)
{
    while (d->held > 0) {
        ssize_t n = splice(d->p[0], NULL, d->dst, NULL, d->held, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n > 0) {
            d->held -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            event_add(d->wr, NULL);
            return 0;
        }
        return -1;
    }
    event_del(d->wr);
    if (d->eof && !d->shut) {
        d->shut = 1;
        (void)shutdown(d->dst, SHUT_WR);
    } else if (!d->eof && !(d == &d->f->pipes[0] && d->f->hello_wait) &&
               !(d == &d->f->pipes[1] && d->f->srv_ev)) {
        event_add(d->rd, NULL); /* room again: read the source (unless a hello check reads it) */
    }
    return 0;
}

/* the source is readable: move what it has into the pipe and on to the destination, a
 * few rounds per wake-up while the destination keeps up */
static void pipe_rd_cb(evutil_socket_t fd, short what, void *arg)
{
    struct fwd_pipe *d = arg;
    struct proxy_fwd *f = d->f;
    ssize_t n;

    (void)fd;
    (void)what;
    for (int round = 0; round < 8; round++) {
        n = splice(d->src, NULL, d->p[1], NULL, FWD_PIPE_SIZE, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            /* nothing more now, or the pipe is full: then wait for the destination */
            if (d->held > 0) {
                event_del(d->rd);
                event_add(d->wr, NULL);
            }
            return;
        }
        if (n < 0) {
            fwd_end(f);
            return;
        }
        if (n == 0) {
            d->eof = 1;
            event_del(d->rd);
        } else {
            d->held += (size_t)n;
            *d->count += (uint64_t)n;
            *d->total += (uint64_t)n;
            touch(f);
        }
        if (pipe_drain(d) < 0 || spliced_finished(f)) {
            fwd_end(f);
            return;
        }
        if (d->held > 0) { /* the destination is slow: stop reading until it takes this */
            event_del(d->rd);
            return;
        }
        if (d->eof)
            return;
    }
}

static void pipe_wr_cb(evutil_socket_t fd, short what, void *arg)
{
    struct fwd_pipe *d = arg;
    struct proxy_fwd *f = d->f;

    (void)fd;
    (void)what;
    if (pipe_drain(d) < 0 || spliced_finished(f))
        fwd_end(f);
}

/* splice_start -- run the open tunnel on splice(2) when both sides are plain sockets and
 * nothing is buffered in user space any more (the 200 is out, the bytes sent with the
 * CONNECT were written to the far end). While f->hello_wait, the far end's direction is
 * spliced at once and the client's socket is read by hello_rd_cb until its first bytes
 * are checked (the bytes sent with the CONNECT wait for that too). 0: spliced; -1: stay
 * on bufferevents. */
/* AIRLOCK_FORWARD_NO_SPLICE=1 (tests): tunnels stay on bufferevents, so that path is
 * tested too (read once). */
static int no_splice(void)
{
    static int v = -1;

    if (v < 0) {
        const char *e = getenv("AIRLOCK_FORWARD_NO_SPLICE");
        v = e && *e == '1';
        if (v)
            log_warn("AIRLOCK_FORWARD_NO_SPLICE=1: tunnels are not spliced (test hook)");
    }
    return v;
}

static int splice_start(struct proxy_fwd *f)
{
    struct proxy_conn *c = f->c;
    struct evbuffer *cin = bufferevent_get_input(c->bev);
    int cfd = bufferevent_getfd(c->bev), ffd = bufferevent_getfd(f->far);
    size_t n = evbuffer_get_length(cin);

    if (no_splice() || c->tls || f->http || cfd < 0 || ffd < 0 ||
        evbuffer_get_length(bufferevent_get_output(c->bev)) > 0 ||
        evbuffer_get_length(bufferevent_get_output(f->far)) > 0)
        return -1;
    if (n > 0 && !f->hello_wait) { /* a ClientHello that came with the CONNECT: small */
        unsigned char *p = evbuffer_pullup(cin, -1);
        ssize_t w = p ? send(ffd, p, n, MSG_NOSIGNAL) : -1;
        if (w < 0 || (size_t)w != n) {
            if (w > 0) {
                evbuffer_drain(cin, (size_t)w);
                f->up += (uint64_t)w;
                f->px->egress.tunnel_bytes_up += (uint64_t)w;
            }
            return -1;
        }
        evbuffer_drain(cin, n);
        f->up += n;
        f->px->egress.tunnel_bytes_up += n;
    }
    if (pipe_init(f, &f->pipes[0], cfd, ffd, &f->up, &f->px->egress.tunnel_bytes_up) < 0 ||
        pipe_init(f, &f->pipes[1], ffd, cfd, &f->down, &f->px->egress.tunnel_bytes_down) < 0 ||
        (f->hello_wait &&
         (!(f->hello_in = evbuffer_new()) || evbuffer_add_buffer(f->hello_in, cin) < 0 ||
          !(f->hello_ev = event_new(f->px->base, cfd, EV_READ | EV_PERSIST, hello_rd_cb, f))))) {
        pipe_deinit(&f->pipes[0]);
        pipe_deinit(&f->pipes[1]);
        if (f->hello_in) { /* what moved goes back (its end is frozen: to the front) */
            evbuffer_prepend_buffer(cin, f->hello_in);
            evbuffer_free(f->hello_in);
            f->hello_in = NULL;
        }
        return -1;
    }
    /* the bufferevents keep only their sockets (closed when they are freed) */
    bufferevent_disable(c->bev, EV_READ | EV_WRITE);
    bufferevent_disable(f->far, EV_READ | EV_WRITE);
    bufferevent_setcb(c->bev, NULL, NULL, NULL, NULL);
    bufferevent_setcb(f->far, NULL, NULL, NULL, NULL);
    f->spliced = 1;
    if (f->hello_ev) {
        event_add(f->hello_ev, NULL);
        if (n > 0) /* what came with the CONNECT is checked on the next turn of the loop */
            event_active(f->hello_ev, EV_READ, 0);
    } else {
        event_add(f->pipes[0].rd, NULL);
    }
    event_add(f->pipes[1].rd, NULL);
    return 0;
}

/* ---- a tunnel's first client bytes (sni.h, egress_check_hello) ---- */

/* hrr_watch_start -- the first ClientHello passed and offers TLS 1.3: the server's first
 * bytes are read for a HelloRetryRequest (spliced: by srv_rd_cb instead of the splice, which
 * takes over once they are judged; on bufferevents far_read_cb looks at them on their way).
 * -1: out of memory. */
static int hrr_watch_start(struct proxy_fwd *f)
{
    f->srv_n = 0;
    f->hello_stage = HELLO_SERVER;
    if (!f->spliced)
        return 0;
    f->srv_ev = event_new(f->px->base, f->pipes[1].src, EV_READ | EV_PERSIST, srv_rd_cb, f);
    if (!f->srv_ev)
        return -1;
    event_del(f->pipes[1].rd);
    event_add(f->srv_ev, NULL);
    return 0;
}

/* server_said -- the server's first bytes are judged: a HelloRetryRequest (the client's next
 * handshake, a second ClientHello, is checked like the first) or not (the held bytes go
 * on). The held bytes are looked at again on the next turn of the loop. */
static void server_said(struct proxy_fwd *f, int hrr)
{
    struct evbuffer *held = f->hello_in ? f->hello_in : bufferevent_get_input(f->c->bev);
    size_t r = strlen(f->reason);

    f->hello_stage = hrr ? HELLO_SECOND : HELLO_DONE;
    f->hello_need = 0;
    if (hrr)
        snprintf(f->reason + r, sizeof(f->reason) - r, "; the server sent a HelloRetryRequest");
    if (f->hello_ev) {
        event_active(f->hello_ev, EV_READ, 0);
    } else if (!hrr && evbuffer_get_length(held) == 0) {
        f->hello_wait = 0;
    } else {
        bufferevent_trigger(f->c->bev, EV_READ,
                            BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
    }
}

/* hello_check -- the first bytes the client sent into its tunnel, held in `in` (never
 * more than SNI_BUF_MAX of them are read), against the host policy: a TLS ClientHello's
 * server name must be one the policy tunnels, and not an intercepted host. eof: the
 * client sends nothing more. HELLO_WAIT: not enough bytes yet (never with eof, nor once
 * SNI_BUF_MAX are there); HELLO_PASS: the first f->hello_go bytes of `in` may go on, and
 * f->hello_wait is cleared unless the rest must wait: after a first ClientHello that
 * offers TLS 1.3, the bytes that follow it are held until the server's first bytes say
 * whether it asks for a second one (HELLO_SERVER), and a second one is checked like the
 * first (HELLO_SECOND: after the ChangeCipherSpec and rejected early-data records the
 * server skips); HELLO_CLOSED: refused, recorded as such, and f is gone. */
static int hello_check(struct proxy_fwd *f, struct evbuffer *in, int eof)
{
    static const unsigned char alert[7] = {21, 3, 3, 0, 2, 2, 49}; /* fatal access_denied */
    size_t n = evbuffer_get_length(in), m = n < SNI_BUF_MAX ? n : SNI_BUF_MAX, off = 0;
    const unsigned char *p = NULL;
    struct sni_hello h;
    struct egress_decision d;
    size_t r = strlen(f->reason);
    int second = f->hello_stage == HELLO_SECOND, http = 0;

    f->hello_go = n;
    if (f->hello_stage == HELLO_DONE || (f->hello_stage == HELLO_SERVER && eof)) {
        f->hello_stage = HELLO_DONE; /* no (further) hello can come */
        f->hello_wait = 0;
        return HELLO_PASS;
    }
    if (f->hello_stage == HELLO_SERVER) {
        if (n < SNI_BUF_MAX)
            return HELLO_WAIT;
        memset(&h, 0, sizeof h);
        h.kind = SNI_BAD;
        snprintf(d.reason, sizeof d.reason,
                 "more than 16 KiB after the ClientHello before the server answered it");
        goto refuse;
    }
    if (!eof && (n == 0 || n < f->hello_need))
        return HELLO_WAIT;
    if (m > 0 && !(p = evbuffer_pullup(in, (ev_ssize_t)m))) {
        snprintf(f->reason + r, sizeof(f->reason) - r, "; out of memory");
        fwd_end(f);
        return HELLO_CLOSED;
    }
    /* before a second hello, the records a server skips: ChangeCipherSpec, early data */
    while (second && off + 5 <= m && (p[off] == 20 || p[off] == 23) && p[off + 1] == 3) {
        size_t rl = (size_t)p[off + 3] << 8 | p[off + 4];
        if (off + 5 + rl > m) {
            if (!eof && m < SNI_BUF_MAX) {
                f->hello_need = off + 5 + rl;
                return HELLO_WAIT;
            }
            break;
        }
        off += 5 + rl;
    }
    (void)sni_parse(p + off, m - off, &h);
    if (h.kind == SNI_MORE && !eof && m < SNI_BUF_MAX) {
        f->hello_need = off + h.need;
        return HELLO_WAIT;
    }
    if (n == 0) { /* the client closed without a byte: nothing to pass on but its EOF */
        f->hello_stage = HELLO_DONE;
        f->hello_wait = 0;
        return HELLO_PASS;
    }
    if (!second && h.kind == SNI_NOT_TLS) { /* plain HTTP: its Host (and target) too */
        struct sni_http *hrp = &f->http_head, hr;
        (void)sni_http_next(p, m, hrp); /* (from where the last look stopped) */
        hr = *hrp;
        if (hr.kind == SNI_MORE && !eof && m < SNI_BUF_MAX) {
            f->hello_need = hr.need;
            return HELLO_WAIT;
        }
        /* the client ended inside what could only have been a request line ("ping" and an
         * EOF): no header follows, so nothing names a host (another protocol's bytes); a
         * head cut off after its request line is still refused */
        if (hr.kind == SNI_MORE && eof) {
            size_t lead = 0;
            while (lead < m && (p[lead] == '\r' || p[lead] == '\n'))
                lead++;
            if (!memchr(p + lead, '\n', m - lead))
                hr.kind = SNI_NOT_TLS;
        }
        egress_check_http(&f->px->snap->cfg->egress, f->port, &hr, &d);
        http = hr.kind != SNI_NOT_TLS;
    } else {
        egress_check_hello(&f->px->snap->cfg->egress, f->host, f->port,
                           f->has_entry ? &f->entry : NULL, &h, &d);
    }
    if (second && h.kind == SNI_NOT_TLS) { /* the server waits for a ClientHello */
        d.verdict = EGRESS_REFUSE;
        snprintf(d.reason, sizeof d.reason,
                 "after a HelloRetryRequest, the client's next bytes are no ClientHello");
    }
    if (d.verdict == EGRESS_TUNNEL) {
        snprintf(f->reason + r, sizeof(f->reason) - r, "; %s%s",
                 second ? "second ClientHello: " : "", d.reason);
        if (!second && h.kind == SNI_HELLO && h.tls13 && !eof && f->down == 0) {
            if (hrr_watch_start(f) < 0) {
                snprintf(f->reason + strlen(f->reason), sizeof(f->reason) - strlen(f->reason),
                         "; out of memory");
                fwd_end(f);
                return HELLO_CLOSED;
            }
            f->hello_go = h.used; /* what follows the hello waits for the server */
            f->hello_need = 0;
            return HELLO_PASS;
        }
        f->hello_stage = HELLO_DONE;
        f->hello_wait = 0;
        return HELLO_PASS;
    }
refuse:
    f->verdict = EGRESS_REFUSE;
    snprintf(f->reason + r, sizeof(f->reason) - r, "; closed before %s reached the far end: %s%s",
             f->up ? "the rest of the client's bytes" : "any client byte",
             second ? "second ClientHello: " : "", d.reason);
    /* a TLS client learns why from an alert (best effort: only while nothing of the far
     * end's is on its way to the client, and only on a plain socket) */
    if (h.kind != SNI_NOT_TLS && !h.sslv2 && !f->c->tls && f->down == 0 &&
        evbuffer_get_length(bufferevent_get_output(f->c->bev)) == 0)
        (void)send(bufferevent_getfd(f->c->bev), alert, sizeof(alert), MSG_NOSIGNAL | MSG_DONTWAIT);
    /* ... and an HTTP client from a 403 (the same terms) */
    if (http && !f->c->tls && f->down == 0 &&
        evbuffer_get_length(bufferevent_get_output(f->c->bev)) == 0) {
        char msg[400];
        int k =
            snprintf(msg, sizeof msg,
                     "HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain; charset=utf-8\r\n"
                     "content-length: %zu\r\nconnection: close\r\n\r\nRefused by airlock: %s.\n",
                     strlen(d.reason) + 22, d.reason);
        if (k > 0 && (size_t)k < sizeof msg)
            (void)send(bufferevent_getfd(f->c->bev), msg, (size_t)k, MSG_NOSIGNAL | MSG_DONTWAIT);
    }
    fwd_end(f);
    return HELLO_CLOSED;
}

/* the held bytes go into the client's pipe in one write each time: a first hello, then
 * at most SNI_BUF_MAX more (the bytes held after it, a second hello) */
_Static_assert(FWD_PIPE_SIZE >= 2 * SNI_BUF_MAX, "a pipe holds two whole ClientHellos");

/* hello_rd_cb -- spliced, waiting for the first bytes: read them into f->hello_in; once
 * hello_check passes them, they go into the client's pipe ahead of everything the splice
 * moves after them. */
static void hello_rd_cb(evutil_socket_t fd, short what, void *arg)
{
    struct proxy_fwd *f = arg;
    struct evbuffer *in = f->hello_in;
    struct fwd_pipe *d = &f->pipes[0];
    size_t n = evbuffer_get_length(in);
    int eof = 0;

    (void)what;
    if (n < SNI_BUF_MAX) {
        int got = evbuffer_read(in, fd, (int)(SNI_BUF_MAX - n));
        if (got == 0) {
            eof = 1;
        } else if (got > 0) {
            touch(f);
        } else if (errno != EAGAIN && errno != EINTR) {
            fwd_end(f);
            return;
        }
    }
    if (hello_check(f, in, eof) != HELLO_PASS)
        return;
    n = f->hello_go;
    for (size_t left = n; left > 0;) { /* into a pipe with room for it: at once */
        int w = evbuffer_write_atmost(in, d->p[1], (ev_ssize_t)left);
        if (w <= 0) {
            fwd_end(f);
            return;
        }
        left -= (size_t)w;
    }
    d->held += n;
    *d->count += n;
    *d->total += n;
    if (f->hello_wait) { /* the rest waits for the server's first bytes */
        if (pipe_drain(d) < 0)
            fwd_end(f);
        return;
    }
    event_free(f->hello_ev);
    f->hello_ev = NULL;
    evbuffer_free(f->hello_in);
    f->hello_in = NULL;
    d->eof = eof;
    if (pipe_drain(d) < 0 || spliced_finished(f))
        fwd_end(f);
}

/* srv_rd_cb -- spliced, HELLO_SERVER: the far end's first bytes, read until they say whether
 * they are a HelloRetryRequest; then they go into the far end's (empty) pipe and the splice
 * takes over (it reads an EOF or error again). */
static void srv_rd_cb(evutil_socket_t fd, short what, void *arg)
{
    struct proxy_fwd *f = arg;
    struct fwd_pipe *d = &f->pipes[1];
    ssize_t got = recv(fd, f->srv_head + f->srv_n, sizeof(f->srv_head) - f->srv_n, 0);
    enum sni_server v = SNI_SRV_OTHER;

    (void)what;
    if (got < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (got > 0) {
        f->srv_n += (size_t)got;
        touch(f);
        v = sni_server_hrr(f->srv_head, f->srv_n);
        if (v == SNI_SRV_MORE)
            return;
    }
    event_free(f->srv_ev);
    f->srv_ev = NULL;
    if (f->srv_n > 0) {
        if (write(d->p[1], f->srv_head, f->srv_n) != (ssize_t)f->srv_n) {
            fwd_end(f);
            return;
        }
        d->held += f->srv_n;
        *d->count += f->srv_n;
        *d->total += f->srv_n;
    }
    event_add(d->rd, NULL);
    server_said(f, v == SNI_SRV_HRR);
    if (pipe_drain(d) < 0 || spliced_finished(f))
        fwd_end(f);
}

/* tunnel_open -- connected to the checked address: answer 200 (a CONNECT) or send the
 * request (absolute-form), then splice. The bytes the client sent after its CONNECT head
 * (a ClientHello that did not wait) are waiting in its input and go first. */
static void tunnel_open(struct proxy_fwd *f)
{
    struct proxy_conn *c = f->c;
    int one = 1;

    evtimer_del(f->timer);
    f->phase = FWD_OPEN;
    setsockopt(bufferevent_getfd(f->far), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (f->http) {
        bufferevent_write_buffer(f->far, f->req_out);
    } else {
        f->status = 200;
        evbuffer_add(c->out, "HTTP/1.1 200 Connection established\r\n\r\n", 39);
        proxy_conn_flush(c);
    }
    bufferevent_set_timeouts(c->bev, NULL, NULL); /* the idle check is the tunnel's own */
    touch(f);
    set_timer(f, f->idle_ms);
    f->hello_wait = !f->http;
    if (!f->http && splice_start(f) == 0)
        return;
    bufferevent_setwatermark(c->bev, EV_READ, 0, 0);
    bufferevent_setwatermark(c->bev, EV_WRITE, FWD_LOW_WATER, 0);
    bufferevent_setwatermark(f->far, EV_WRITE, FWD_LOW_WATER, 0);
    /* a splice moves big reads: libevent's default of 16 KiB per read and write costs a
     * system call (and a FIONREAD) every 16 KiB */
    bufferevent_set_max_single_read(c->bev, FWD_HIGH_WATER);
    bufferevent_set_max_single_write(c->bev, FWD_HIGH_WATER);
    bufferevent_set_max_single_read(f->far, FWD_HIGH_WATER);
    bufferevent_set_max_single_write(f->far, FWD_HIGH_WATER);
    bufferevent_setcb(c->bev, client_read_cb, client_write_cb, client_event_cb, f);
    bufferevent_setcb(f->far, far_read_cb, far_write_cb, far_event_cb, f);
    bufferevent_enable(f->far, EV_READ | EV_WRITE);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    touch(f);
    set_timer(f, f->idle_ms);
    if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
        client_read_cb(c->bev, f);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct proxy_fwd *f = arg;
    struct timeval now;
    long idle;

    (void)fd;
    (void)what;
    if (f->phase == FWD_RESOLVING || f->phase == FWD_CONNECTING) {
        answer(f, 504, "airlock got no connection to %s:%d within %d ms.", f->host, f->port,
               f->px->snap->cfg->limits.upstream_timeout_ms);
        return;
    }
    event_base_gettimeofday_cached(f->px->base, &now);
    idle =
        (long)(now.tv_sec - f->last.tv_sec) * 1000 + (long)(now.tv_usec - f->last.tv_usec) / 1000;
    if (idle >= f->idle_ms) {
        snprintf(f->reason + strlen(f->reason), sizeof(f->reason) - strlen(f->reason),
                 "; closed idle after %d ms%s", f->idle_ms,
                 f->hello_wait &&
                         evbuffer_get_length(f->hello_in ? f->hello_in
                                                         : bufferevent_get_input(f->c->bev)) > 0
                     ? " with its first bytes unchecked (an unfinished TLS ClientHello or HTTP "
                       "request head): none reached the far end"
                     : "");
        fwd_end(f);
        return;
    }
    set_timer(f, f->idle_ms - (int)idle);
}

/* fwd_end -- the tunnel is over: free the connection (which records it and frees f) */
static void fwd_end(struct proxy_fwd *f)
{
    proxy_conn_free(f->c);
}

/* ---- interception ---- */

int proxy_forward_screen(struct proxy_req *r, const char *path, size_t plen)
{
    struct proxy_conn *c = r->conn;
    const char *up;

#define SCREEN_IS(p) (plen == strlen(p) && strncmp(path, (p), plen) == 0)
    if (c->fwd)
        c->fwd->requests++;
    if (SCREEN_IS("/healthz") || SCREEN_IS("/metrics")) {
        proxy_req_error(r, 403, NULL,
                        "'%.*s' is airlock's own path, not an API of %s, so it is not served "
                        "here.",
                        (int)plen, path, c->fwd ? c->fwd->host : "this host");
        return 1;
    }
#undef SCREEN_IS
    up = proxy_conn_header(c, "upgrade");
    if (up && strcasestr(up, "websocket")) {
        c->keep_alive = 0; /* the parser stopped at the upgrade: nothing after it is read */
        proxy_req_error(r, 426, NULL,
                        "WebSockets cannot be inspected by airlock; use the API over HTTP "
                        "(streaming with server-sent events).");
        return 1;
    }
    return 0;
}

const struct config_key *proxy_forward_key(const struct proxy_conn *c, const struct config *cfg)
{
    if (!c->fwd || !c->fwd->has_key)
        return NULL;
    return config_key_find_sha256(cfg, c->fwd->key_sha);
}

void proxy_forward_conn_free(struct proxy_conn *c)
{
    struct proxy_fwd *f = c->fwd;

    if (!f)
        return;
    if (f->phase == FWD_INTERCEPT && c->bev) {
        SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
        size_t n = strlen(f->reason);
        if (ssl) {
            f->up = BIO_number_read(SSL_get_rbio(ssl));
            f->down = BIO_number_written(SSL_get_wbio(ssl));
        }
        if (!ssl || !SSL_is_init_finished(ssl))
            snprintf(f->reason + n, sizeof(f->reason) - n,
                     "; the client did not complete the TLS handshake (does it trust the CA, "
                     "or pin certificates?)");
        else
            snprintf(f->reason + n, sizeof(f->reason) - n, "; %u request(s)", f->requests);
    } else if ((f->phase == FWD_RESOLVING || f->phase == FWD_CONNECTING) && !f->recorded) {
        size_t n = strlen(f->reason);
        snprintf(f->reason + n, sizeof(f->reason) - n, "; the client left before it opened");
    }
    stop_work(f);
    record(f);
    if (f->timer)
        event_free(f->timer);
    if (f->req_out)
        wipe_evbuffer_free(f->req_out);
    c->fwd = NULL;
    free(f);
}
