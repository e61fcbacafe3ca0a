/* server.h -- the HTTP/1.1 server: listeners, client connections, writing answers.
 *
 * Our own HTTP on bufferevents and http-parser (docs/design-notes.md says why). A
 * connection reads one request at a time (pipelined requests wait), hands it to
 * proxy_req_handle once whole, and writes its answer: a whole reply or a chunked stream.
 * Every byte of an answer's body is first kept for the audit (req->client_bytes); a copy
 * that cannot be kept is not sent (req->copy_lost). Limits (header bytes and time, body
 * size, URL length, connections) are answered with the API's error shape. */
#ifndef AIRLOCK_PROXY_SERVER_H
#define AIRLOCK_PROXY_SERVER_H

#include <stddef.h>

#include <http_parser.h>

#include "proxy/proxy.h"

#define PROXY_MAX_HEADERS 100
#define PROXY_MAX_URL 8192
#define PROXY_CLIENT_HIGH_WATER (1u << 20)  /* pause the provider above this much unsent */
#define PROXY_CLIENT_LOW_WATER (256u << 10) /* resume below this */

struct bufferevent;
struct event;
struct evbuffer;
struct proxy;

struct proxy_hdr {
    char *name; /* lower-cased */
    char *value;
};

enum proxy_conn_state {
    CONN_IDLE,    /* waiting for a request */
    CONN_READING, /* request started, not complete */
    CONN_BUSY,    /* request complete, being answered */
    CONN_CLOSING, /* flushing the last bytes, then free */
    CONN_FORWARD, /* forward listener: a CONNECT or absolute-form request is being
                     resolved, connected or tunnelled (forward.c owns the bufferevent's
                     callbacks while it tunnels) */
};

struct proxy_req;
struct proxy_fwd;
struct config;
struct config_key;
typedef struct ssl_st SSL;

struct proxy_conn {
    struct proxy *px;
    struct bufferevent *bev;
    http_parser parser;
    char peer[64];
    int tls;
    enum proxy_conn_state state;
    struct proxy_conn *prev, *next;
    struct event *header_timer;
    /* request being read */
    char *url;
    size_t url_len;
    struct proxy_hdr hdrs[PROXY_MAX_HEADERS];
    int n_hdrs;
    int in_value; /* last callback was a header value */
    size_t header_bytes;
    struct evbuffer *body;
    struct evbuffer *out; /* an answer's bytes staged for conn_flush (server.c) */
    int body_too_large;
    int reading_body; /* the headers are in; header_timer is the body's deadline */
    int keep_alive;
    int lingering;         /* our side is shut; reading what the client still sends, briefly */
    struct proxy_req *req; /* the request being answered */
    /* response */
    int chunked; /* the current response uses chunked encoding */
    /* the egress proxy (forward.c): accepted on a `mode: forward` listener */
    int forward;
    int intercept;         /* TLS was terminated for an intercept entry: every request
                              inside takes the gateway's path (req.c screens it) */
    struct proxy_fwd *fwd; /* the CONNECT's state (host, decision, tunnel); owned */
};

/* Response writing; every byte of body also goes to req->client_bytes. */
void proxy_conn_reply(struct proxy_req *req, int status, const char *content_type, const char *body,
                      size_t len);
void proxy_conn_stream_start(struct proxy_req *req, int status, const char *content_type);
void proxy_conn_stream_write(struct proxy_req *req, const char *data, size_t len);
/* proxy_conn_stream_cork -- on: stream writes are staged, not flushed; off: what was staged
 * goes out in one write. Around the events of one upstream read, so that a stream costs
 * a write per read instead of one per event (and no event waits for a later read). */
void proxy_conn_stream_cork(struct proxy_req *req, int on);
void proxy_conn_stream_end(struct proxy_req *req);
/* a string literal as stream bytes */
#define PROXY_WRITE_LIT(r, lit) proxy_conn_stream_write((r), (lit), sizeof(lit) - 1)
#define PROXY_WRITE_FINAL(r, lit) proxy_conn_stream_write_final((r), (lit), sizeof(lit) - 1)
/* the last event(s) of a stream ([DONE], message_stop, an error event): held
 * until the response record is durable */
void proxy_conn_stream_write_final(struct proxy_req *req, const char *data, size_t len);
/* write what was held (the record is durable, or there is none) */
void proxy_conn_flush_held(struct proxy_req *req);
const char *proxy_conn_header(const struct proxy_conn *c, const char *lname);

/* The connection's request is finished (answered and recorded): go on with the next
 * pipelined request, or close. Called by the request when it completes. */
void proxy_conn_request_done(struct proxy_conn *c);

/* For forward.c: write what is staged in c->out; close once written (gracefully); free
 * now (the request, if any, is told its client is gone). */
void proxy_conn_flush(struct proxy_conn *c);
void proxy_conn_close(struct proxy_conn *c);
void proxy_conn_free(struct proxy_conn *c);
/* proxy_conn_start_tls -- layer a TLS server (ssl, consumed) over the connection's
 * bufferevent and serve gateway requests inside: the parser restarts, the handshake and
 * the first request head must arrive within header_timeout_ms. Bytes the client already
 * sent stay and are read as TLS. -1 (ssl freed) when the filter cannot be made. */
int proxy_conn_start_tls(struct proxy_conn *c, SSL *ssl);

/* ---- the forward listener (forward.c, SPEC §8) ---- */

/* proxy_forward_dispatch -- a complete request on a forward listener's connection that is
 * not intercepting: CONNECT host:port, an absolute-form http:// request, or a 400. */
void proxy_forward_dispatch(struct proxy_conn *c);
/* proxy_forward_bad_request -- the parser refused what the client sent: a one-line
 * answer (and a `connect` record when it was a CONNECT), then close. */
void proxy_forward_bad_request(struct proxy_conn *c, int status, const char *msg);
/* proxy_forward_conn_free -- from conn_free: end the tunnel or interception, write its
 * `connect` record, free c->fwd. */
void proxy_forward_conn_free(struct proxy_conn *c);
/* proxy_forward_screen -- an intercepted connection's request, before its path is routed:
 * answers (and returns 1) what the gateway must not serve on the provider's host: its own
 * /healthz and /metrics (403) and a WebSocket upgrade (426). 0: go on. */
int proxy_forward_screen(struct proxy_req *r, const char *path, size_t plen);
/* proxy_forward_key -- the key an intercepted connection's CONNECT presented in
 * Proxy-Authorization, looked up in cfg (the request's snapshot); NULL when none. */
const struct config_key *proxy_forward_key(const struct proxy_conn *c, const struct config *cfg);

/* listeners and the connections they accept (proxy.c drives them) */
int proxy_listeners_open(struct proxy *px, char *err, size_t errlen);
void proxy_listeners_close(struct proxy *px);
/* drain: stop keeping connections alive; idle ones close now */
void proxy_conns_drain(struct proxy *px);
void proxy_conns_close_all(struct proxy *px);

#endif
