/* proxy_int.h -- internals shared by the proxy's files; not for other modules.
 *
 * Ownership in one picture:
 *
 *   proxy ──owns── listeners, audit, engine cache, mailbox, current snap (ref)
 *   conn  ──owns── bufferevent, parser, request-in-progress bytes;
 *                  holds one ref on its active req
 *   req   ──refs── snap (config + policy + pools it started on);
 *                  is also held by: a pending audit append, an upstream
 *                  connection, an engine job. Freed when the last ref goes.
 *   upconn ─ belongs to a pool (idle) or to one req (busy).
 */
#ifndef AIRLOCK_PROXY_INT_H
#define AIRLOCK_PROXY_INT_H

#include <http_parser.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include <cJSON.h>

#include "audit/audit.h"
#include "config/config.h"
#include "engine/engine.h"
#include "policy/policy.h"
#include "proxy/decide.h"
#include "proxy/proxy.h"

#define PROXY_MAX_HEADERS 100
#define PROXY_MAX_URL 8192
#define PROXY_MAX_UPSTREAM_BODY (64u << 20)
#define PROXY_MAX_SSE_EVENT (8u << 20)
#define PROXY_DRAIN_MS 15000
#define PROXY_MAX_ENGINES 8
#define PROXY_CLIENT_HIGH_WATER (1u << 20)  /* pause the provider above this much unsent */
#define PROXY_CLIENT_LOW_WATER (256u << 10) /* resume below this */

enum proxy_api { PROXY_API_NONE = -1, PROXY_API_OPENAI = 0, PROXY_API_ANTHROPIC = 1 };

struct proxy_hdr {
    char *name; /* lower-cased */
    char *value;
};

/* ---- SSE (sse.c) ---- */

/* An incremental parser of text/event-stream: bytes in any pieces, whole events out. */
struct proxy_sse {
    char *buf;
    size_t len, cap;
    size_t scanned; /* bytes of buf already searched for an event end */
};

typedef int (*proxy_sse_event_fn)(void *ud, const char *raw, size_t raw_len, const char *event,
                                  size_t event_len, const char *data, size_t data_len);

/* proxy_sse_feed -- append bytes, call fn for each complete event (raw bytes
 * including the blank line; `event:` name; `data:` lines joined by '\n').
 * Returns 0, -1 if an event exceeds PROXY_MAX_SSE_EVENT, or fn's non-zero return. */
int proxy_sse_feed(struct proxy_sse *s, const char *data, size_t len, proxy_sse_event_fn fn,
                   void *ud);
void proxy_sse_deinit(struct proxy_sse *s);

/* ---- metrics (metrics.c) ---- */

#define PROXY_LAT_BUCKETS 14

struct proxy_metric_row {
    char *labels; /* `route="a/b",verdict="allow",status="200"` */
    uint64_t count;
    struct proxy_metric_row *next;
};

struct proxy_metrics {
    struct proxy_metric_row *requests;
    uint64_t bytes_in, bytes_out, upstream_bytes_out, upstream_bytes_in;
    uint64_t tokens_in, tokens_out, tokens_cached;
    double cost_usd;
    uint64_t lat_buckets[PROXY_LAT_BUCKETS + 1]; /* + Inf */
    double lat_sum;
    uint64_t lat_count;
    uint64_t up_lat_buckets[PROXY_LAT_BUCKETS + 1];
    double up_lat_sum;
    uint64_t up_lat_count;
    uint64_t conns_total, upstream_conns_total, upstream_reused;
    uint64_t reloads_ok, reloads_failed;
};

void proxy_metrics_request(struct proxy_metrics *m, const char *route, const char *verdict,
                           int status, double seconds);
void proxy_metrics_upstream_latency(struct proxy_metrics *m, double seconds);
/* proxy_metrics_render -- Prometheus text into buf. */
void proxy_metrics_render(struct proxy *px, struct evbuffer *buf);
void proxy_metrics_deinit(struct proxy_metrics *m);

/* ---- mailbox (mailbox.c): other threads → the event loop ---- */

struct proxy_mailbox;
/* runs on the loop; `data` is the posted copy (NUL-terminated), borrowed until fn
 * returns, or NULL for a message without data */
typedef void (*proxy_mail_fn)(void *arg, int status, const char *data, size_t len);

/* A message node embedded in the object it reports about (a request, the proxy), so
 * that reporting needs no memory. One node carries one message at a time: it may be
 * sent again once its callback has started (the callback may send it, or free the
 * object holding it). Zero-initialised before its first use. */
struct proxy_mail {
    proxy_mail_fn fn;
    void *arg;
    struct proxy_mail *next;
    int status;
    int owned;         /* allocated by proxy_mailbox_post, not embedded */
    atomic_int queued; /* sent, its callback not yet started */
};

struct proxy_mailbox *proxy_mailbox_new(struct event_base *base);
/* proxy_mailbox_free -- runs the messages still queued, then frees. No thread may
 * post or send any more. */
void proxy_mailbox_free(struct proxy_mailbox *mb);
/* proxy_mailbox_send -- from any thread; cannot fail: fn(arg, status, NULL, 0) runs on
 * the loop. `node` must stay valid until fn starts and must not be queued already. */
void proxy_mailbox_send(struct proxy_mailbox *mb, struct proxy_mail *node, proxy_mail_fn fn,
                        void *arg, int status);
/* proxy_mailbox_post -- from any thread; `data` (may be NULL) is copied. -1 when memory
 * runs out (or AIRLOCK_MAILBOX_FAULT_ALLOC says so): fn will not run, and what the
 * message would have reported is the caller's to settle. 0: fn runs on the loop. */
int proxy_mailbox_post(struct proxy_mailbox *mb, proxy_mail_fn fn, void *arg, int status,
                       const void *data, size_t len) __attribute__((warn_unused_result));

/* ---- snapshot: one config + what was built from it ---- */

struct proxy_upconn;

struct proxy_pool {
    struct proxy *px;
    const struct config_provider *prov;
    SSL_CTX *ssl;              /* NULL for plain http */
    struct proxy_upconn *idle; /* singly linked idle list */
    int n_idle;
};

struct proxy_engine_slot;

struct proxy_snap {
    int refs;
    struct proxy *px;
    struct config *cfg;
    struct policy *policy;
    struct proxy_pool *pools;       /* [cfg->n_providers] */
    struct engine_server **engines; /* [cfg->n_providers], of the slots below */
    struct engine_model **models;   /* idem */
    struct proxy_engine_slot **slots; /* [cfg->n_providers] engine references held */
};

void proxy_snap_unref(struct proxy_snap *s);

/* ---- budgets ---- */

struct proxy_spend {
    char *name; /* "k:NAME" or "t:TEAM" */
    double usd;
    struct proxy_spend *next;
};

/* ---- the proxy ---- */

/* A loaded local model, shared by the snapshots whose builtin providers name its file:
 * loaded by whichever thread builds the first such snapshot (the reload thread, off the
 * event loop), freed when the last of them is released. */
struct proxy_engine_slot {
    char *path;
    struct engine_model *model;
    struct engine_server *server;
    int refs;                       /* snapshots holding it; guarded by proxy.engines_mu */
    struct proxy_engine_slot *next;
};

struct proxy_conn;

struct proxy {
    struct event_base *base;
    struct evdns_base *dns;
    struct proxy_snap *snap;
    char *reload_path;
    struct evconnlistener **listeners;
    SSL_CTX **listen_ssl;
    size_t n_listeners;
    struct audit *audit;
    int audit_was_healthy;
    struct proxy_mailbox *mbox;
    struct event *sig_hup, *sig_term, *sig_int, *drain_timer;
    int draining;
    int n_conns;
    struct proxy_conn *conns; /* doubly linked, for draining */
    int n_reqs;               /* requests being handled */
    struct proxy_metrics metrics;
    struct proxy_spend *spend;
    int spend_day; /* days since epoch the spend is for */
    struct proxy_engine_slot *engines; /* loaded models, by path */
    size_t n_engines;
    pthread_mutex_t engines_mu; /* guards engines, n_engines, the slots' refs, unload */
    /* SIGHUP: the new snapshot is built on a thread, swapped in on the loop */
    pthread_t reload_thread;
    int reloading, reload_again;
    struct proxy_mail reload_mail; /* the thread's result: reload_snap, or reload_err */
    struct proxy_snap *reload_snap;
    char reload_err[4096];
    int freeing;
    /* Models no snapshot names any more are unloaded on their own thread: joining an
     * engine's workers and unmapping its weights take milliseconds the loop must not
     * spend. Started at the first unload; proxy_free stops and joins it. */
    struct proxy_engine_slot *unload; /* waiting, oldest first; guarded by engines_mu */
    pthread_cond_t unload_cv;         /* signalled on a new slot and on stop */
    pthread_t unloader;
    int unloader_state;   /* UNLOADER_NONE/RUNNING/STOPPED; guarded by engines_mu */
    long unload_delay_ms; /* AIRLOCK_ENGINE_FAULT_UNLOAD_MS (tests): a slow unload */
};

/* ---- client connections (server.c) ---- */

enum proxy_conn_state {
    CONN_IDLE,    /* waiting for a request */
    CONN_READING, /* request started, not complete */
    CONN_BUSY,    /* request complete, being answered */
    CONN_CLOSING, /* flushing the last bytes, then free */
};

struct proxy_req;

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
    int body_too_large;
    int keep_alive;
    int lingering;         /* our side is shut; reading what the client still sends, briefly */
    struct proxy_req *req; /* the request being answered */
    /* response */
    int chunked; /* the current response uses chunked encoding */
};

/* Response writing; every byte of body also goes to req->client_bytes. */
void proxy_conn_reply(struct proxy_req *req, int status, const char *content_type, const char *body,
                      size_t len);
void proxy_conn_stream_start(struct proxy_req *req, int status, const char *content_type);
void proxy_conn_stream_write(struct proxy_req *req, const char *data, size_t len);
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

/* ---- requests (pipeline.c) ---- */

struct proxy_usage {
    long input, output, cached, cache_write;
    int seen;
};

/* A request's lifecycle. It only moves forward; proxy_req_advance asserts so.
 *
 *   REQ_NEW        read whole; nothing decided
 *   REQ_DECIDED    proxy_decide said it may go on (auth, decision, budget passed)
 *   REQ_RECORDING  its request record is being made durable (write-ahead)
 *   REQ_DISPATCHED sent to the provider or queued on the built-in engine
 *   REQ_ANSWERING  the answer's head is out (a stream is being written): status is set
 *   REQ_ANSWERED   the answer's last byte is written or held
 *   REQ_LOGGED     its response record is appended: the bytes it holds may not change
 *
 * A refusal jumps from any state before REQ_ANSWERING to REQ_ANSWERED; a client that
 * leaves skips to REQ_LOGGED with status 499 (proxy_req_abandoned). */
enum proxy_req_state {
    REQ_NEW,
    REQ_DECIDED,
    REQ_RECORDING,
    REQ_DISPATCHED,
    REQ_ANSWERING,
    REQ_ANSWERED,
    REQ_LOGGED,
};

struct proxy_req {
    struct proxy *px;
    struct proxy_conn *conn; /* NULL once the client is gone */
    struct proxy_snap *snap;
    int refs;
    char id[33];
    enum proxy_api api;
    char endpoint[32];
    struct timespec t0;
    double t_upstream_start, t_first_byte; /* seconds since t0, < 0 unset */
    const struct config_key *key;
    char peer[64];
    char *body; /* owned: the body as received (wiped when freed) */
    size_t body_len;
    struct proxy_decision d; /* the one decision about body (decide.h): its parse, the
                                policy's verdict, the route, the outbound body */
    cJSON *json;             /* the built-in engine's view of d.doc (json_to_cjson) */
    char anthropic_version[64];
    char anthropic_beta[256];
    /* answer */
    enum proxy_req_state state; /* moves forward only: proxy_req_advance */
    int status;    /* the status the client is answered with: proxy_req_answer_status only */
    int up_status; /* the provider's status, once its head arrived */
    char error[512];
    struct evbuffer *up_bytes;     /* upstream answer as received (de-chunked body) */
    struct evbuffer *client_bytes; /* answer body as sent to the client */
    struct proxy_upconn *up;
    struct engine_job *job;
    struct proxy_usage usage;
    double cost;
    /* streaming state */
    struct proxy_sse sse;
    int stream_failed;
    char *engine_text; /* builtin, non-streaming: collected text */
    size_t engine_text_len;
    char *finish_reason;
    /* results that end a piece of work come back through nodes of the request's own
     * (proxy_mailbox_send), so none is lost when memory runs out */
    struct proxy_mail mail_request_rec;  /* the request record is durable (or failed) */
    struct proxy_mail mail_response_rec; /* the response record is written */
    struct proxy_mail mail_engine_done;  /* the engine job ended: engine_res */
    struct proxy_mail mail_engine_lost;  /* a piece of the engine's text was not posted */
    struct engine_result engine_res;     /* written by the worker before mail_engine_done */
    atomic_int engine_lost; /* set by the worker at the first text piece it cannot post */
    /* write-behind of the answer's end: the final bytes reach the client only once
     * the response record is durable, so a crash never loses the record of an
     * answer the client received (SPEC §5.2, §5.5) */
    int record; /* the audit is on: keep the answer's bytes for it */
    int copy_lost; /* a copy for the audit could not be kept: nothing more is sent */
    int hold;   /* hold the final bytes (audit on) */
    struct evbuffer *held;
    int held_reply; /* a whole non-streamed reply is held */
    int held_status;
    char held_ctype[64];
    int held_end; /* the chunked terminator is held */
    /* answering across formats (translate.c) */
    int tr_started;  /* the client's opening event(s) were sent */
    int tr_finished; /* the client's closing event(s) were sent */
    char tr_id[96];
    char tr_model[128];
    char tr_stop[32]; /* finish/stop reason in the CLIENT's vocabulary */
};

struct proxy_req *proxy_req_new(struct proxy_conn *c);
void proxy_req_ref(struct proxy_req *r);
/* proxy_req_advance -- move the lifecycle forward to `to` (never back) */
void proxy_req_advance(struct proxy_req *r, enum proxy_req_state to);
/* proxy_req_answer_status -- the one writer of r->status: the status of the answer the
 * client is given, set as its head is written (never after REQ_ANSWERED) */
void proxy_req_answer_status(struct proxy_req *r, int status);
/* proxy_req_abandoned -- the client left before an answer: status 499 unless one was set */
void proxy_req_abandoned(struct proxy_req *r);
void proxy_req_unref(struct proxy_req *r);
/* proxy_req_handle -- the request is complete on its connection: go. */
void proxy_req_handle(struct proxy_req *r);
/* proxy_req_client_gone -- the client closed: cancel upstream/engine work. */
void proxy_req_client_gone(struct proxy_req *r);
/* proxy_req_error -- answer with an error in the request's API shape, finish. */
void proxy_req_error(struct proxy_req *r, int status, const char *type, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* proxy_req_finish -- the answer is complete (or abandoned): audit, metrics, detach. */
void proxy_req_finish(struct proxy_req *r);
double proxy_req_elapsed(const struct proxy_req *r);
/* proxy_req_stream_error -- end a started stream with a well-formed error event (a
 * provider's failure: code 502; proxy_req_error on a started stream uses its own). */
void proxy_req_stream_error(struct proxy_req *r, const char *message);

/* ---- upstream (upstream.c) ---- */

int proxy_pool_init(struct proxy_pool *p, struct proxy *px, const struct config_provider *prov,
                    char *err, size_t errlen);
void proxy_pool_deinit(struct proxy_pool *p);
/* proxy_upstream_send -- send r->outbound to r->prov over a pooled connection. */
void proxy_upstream_send(struct proxy_req *r);
/* proxy_upstream_pause -- stop (1) or resume (0) reading the provider's answer. */
void proxy_upstream_pause(struct proxy_req *r, int pause);
/* proxy_upstream_abort -- drop the request's upstream connection (not reused). */
void proxy_upstream_abort(struct proxy_req *r);

/* ---- answers (answer.c): relaying and framing in the caller's API ---- */

/* the upstream answered status/headers */
void proxy_answer_upstream_head(struct proxy_req *r, int status, const char *content_type);
/* a piece of upstream body */
void proxy_answer_upstream_body(struct proxy_req *r, const char *data, size_t len);
/* the upstream body is complete */
void proxy_answer_upstream_done(struct proxy_req *r);
/* the upstream failed; `timeout` chooses 504 over 502 */
void proxy_answer_upstream_failed(struct proxy_req *r, int timeout, const char *why);
/* builtin engine */
void proxy_answer_engine_start(struct proxy_req *r);
/* proxy_answer_engine_text -- relay a piece of the local model's answer; -1 when memory
 * ran out (the answer would have a hole: the caller ends the request). */
int proxy_answer_engine_text(struct proxy_req *r, const char *text, size_t len)
    __attribute__((warn_unused_result));
void proxy_answer_engine_done(struct proxy_req *r, const struct engine_result *res);

/* ---- translation between the OpenAI and Anthropic formats (translate.c) ---- */

/* proxy_content_text -- the text of a message content: a string, null (""), or an
 * array of text parts/blocks, concatenated; *out is malloc'd. -1 (and *out NULL) when
 * the content holds anything but text (tool calls, images, ...) or memory runs out. */
int proxy_content_text(const cJSON *c, char **out);
/* 1 when the request's API differs from its target provider's */
int proxy_translating(const struct proxy_req *r);
/* the request in the other format, from a cJSON view of the one strict parse
 * (json_to_cjson); flags as proxy_outbound_build */
int proxy_translate_request(const struct config_model *m, int to_anthropic, const cJSON *in,
                            char **out, size_t *out_len, int *flags, char *err, size_t errlen);
/* one upstream SSE event in the provider's format → the client's events */
int proxy_translate_event(struct proxy_req *r, const char *event, size_t elen, const char *data,
                          size_t dlen);
/* A stream written in the client's API from text pieces (translated provider streams
 * and the built-in engine): open (idempotent) with r->tr_id / r->tr_model, text
 * (placeholders restored), close with r->tr_stop and r->usage -- unless the stream
 * already failed or was closed. */
void proxy_stream_open(struct proxy_req *r);
void proxy_stream_text(struct proxy_req *r, const char *text);
void proxy_stream_close(struct proxy_req *r);
/* a whole upstream JSON answer → the client's JSON answer (malloc'd) */
char *proxy_translate_response(struct proxy_req *r, const cJSON *j);
/* restore placeholders in a piece of text for `slot` (flush: end of the slot);
 * returns a malloc'd string (the input copied when not redacting) */
char *proxy_restore_piece(struct proxy_req *r, int slot, const char *text, int flush);
void proxy_write_event_json(struct proxy_req *r, const char *event, const cJSON *obj);

/* usage → cost with the model's prices */
double proxy_cost(const struct config_model *m, const struct proxy_usage *u);

/* JSON helpers */
void proxy_json_error_body(enum proxy_api api, int status, const char *type, const char *message,
                           char **out, size_t *len);

#endif
