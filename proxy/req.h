/* req.h -- one API request, from complete bytes to finished answer (req.c).
 *
 * The request reads top to bottom in req.c: proxy_req_handle (route the path) →
 * authenticate → proxy_decide (decide.h) → budgets → the request record (write-ahead:
 * durable before a byte leaves) → dispatch to a provider (upstream.h) or the built-in
 * engine → the answer (answer.h) → the response record → complete. Its lifecycle is
 * enum proxy_req_state below.
 *
 * A body of PROXY_DECIDE_OFFLOOP_BYTES or more is decided on the decider thread
 * (decider.h) instead of the loop: the request waits in REQ_NEW, holding its connection
 * (pipelined requests behind it wait, as behind any answer), and goes on on the loop
 * where it left off once the decision comes back.
 *
 * Reference-counted: the connection holds one while it answers, and every piece of
 * asynchronous work (a decision off the loop, an audit append, an upstream connection,
 * an engine job) holds one until it reports back, so a client that leaves never leaves a
 * callback pointing at freed memory. Everything in it that held prompt or answer text is
 * wiped when freed. */
#ifndef AIRLOCK_PROXY_REQ_H
#define AIRLOCK_PROXY_REQ_H

#include <stdatomic.h>
#include <stddef.h>
#include <time.h>

#include <cJSON.h>

#include "engine/engine.h"
#include "proxy/decide.h"
#include "proxy/decider.h"
#include "proxy/mailbox.h"
#include "proxy/sse.h"
#include "proxy/wire.h"

enum proxy_api { PROXY_API_NONE = -1, PROXY_API_OPENAI = 0, PROXY_API_ANTHROPIC = 1 };

struct evbuffer;
struct proxy;
struct proxy_conn;
struct proxy_snap;
struct proxy_upconn;
struct engine_job;
struct config_key;

struct proxy_usage {
    long input, output, cached, cache_write;
    int seen;
    int estimated; /* no usage came from a provider that answered 2xx: bytes / 4 (req.c) */
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
/* The stream the gateway writes in the client's format (the engine's answer, or a
 * provider's translated): opened once, then closed by its own end or by an error event.
 * A stream relayed in its own format only ever reaches FAILED (the gateway's error). */
enum proxy_stream_state {
    PROXY_STREAM_NONE,   /* nothing written of our own yet */
    PROXY_STREAM_OPEN,   /* the opening event(s) are out */
    PROXY_STREAM_CLOSED, /* the closing event(s) are out */
    PROXY_STREAM_FAILED, /* ended by an error event: nothing more */
};

/* Write-behind of the answer's end (audit on): what is held until its record is written. */
enum proxy_hold {
    PROXY_HOLD_OFF,        /* nothing is held: bytes go straight out (audit off, or flushed) */
    PROXY_HOLD_ARMED,      /* the final bytes will be held; none yet, or stream bytes only */
    PROXY_HOLD_REPLY,      /* a whole non-streamed reply is held */
    PROXY_HOLD_STREAM_END, /* a stream's last events and its chunked terminator are held */
};

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
    const struct proxy_wire *wire;    /* the client's API (wire.h); OpenAI's until routed */
    const struct proxy_wire *up_wire; /* the provider's API; NULL for the built-in engine */
    char endpoint[32];
    int count_tokens; /* POST /v1/messages/count_tokens: a prompt counted, never answered */
    int dispatched;   /* sent to the provider or the engine: x-airlock-modified applies */
    struct timespec t0;
    double t_upstream_start, t_first_byte; /* seconds since t0, < 0 unset */
    const struct config_key *key;
    char peer[64];
    char *body; /* owned: the body as received (wiped when freed) */
    size_t body_len;
    /* the one decision about body (decide.h): its parse, the policy's verdict, the route,
     * the outbound body. While `deciding`, the decider thread's and not the loop's: the
     * job that carries it there and back is embedded, so the hand-off cannot fail */
    struct proxy_decision d;
    int deciding;
    int decide_rc; /* proxy_decide_body's return, set on the decider thread */
    struct proxy_decider_job decide_job;
    cJSON *json; /* the built-in engine's view of d.doc (json_to_cjson) */
    char anthropic_version[64];
    char anthropic_beta[1024];
    /* answer */
    enum proxy_req_state state; /* moves forward only: proxy_req_advance */
    int status;     /* the status the client is answered with: proxy_req_answer_status only */
    int up_status;  /* the provider's status, once its head arrived */
    int up_written; /* the request went out whole to the provider (upstream.c): billable */
    char error[512];
    struct evbuffer *up_bytes;     /* upstream answer as received (de-chunked body) */
    struct evbuffer *client_bytes; /* answer body as sent to the client */
    struct proxy_upconn *up;
    struct engine_job *job;
    struct proxy_usage usage;
    double cost;
    /* streaming state */
    struct proxy_sse sse;
    char *engine_text; /* builtin, non-streaming: collected text; a Responses stream the
                          gateway writes: the text so far (its done events carry it whole) */
    size_t engine_text_len;
    char *finish_reason;
    /* results that end a piece of work come back through nodes of the request's own
     * (proxy_mailbox_send), so none is lost when memory runs out */
    struct proxy_mail mail_request_rec;  /* the request record is durable (or failed) */
    struct proxy_mail mail_response_rec; /* the response record is written */
    struct proxy_mail mail_engine_done;  /* the engine job ended: engine_res */
    struct proxy_mail mail_engine_lost;  /* a piece of the engine's text was not posted */
    struct proxy_mail mail_engine_ready; /* the engine accepted the prompt: a stream's head */
    struct engine_result engine_res;     /* written by the worker before mail_engine_done */
    atomic_int engine_lost; /* set by the worker at the first text piece it cannot post */
    /* write-behind of the answer's end: the final bytes reach the client only once
     * the response record is durable, so a crash never loses the record of an
     * answer the client received (SPEC §5.2, §5.5) */
    int record;           /* the audit is on: keep the answer's bytes for it */
    int copy_lost;        /* a copy for the audit could not be kept: nothing more is sent */
    enum proxy_hold hold; /* what of the answer's end is held back */
    struct evbuffer *held;
    int held_status; /* HOLD_REPLY: the reply's status and content type */
    char held_ctype[64];
    enum proxy_stream_state stream_state; /* the stream written for the client */
    int corked; /* stream writes staged until proxy_conn_stream_cork(r, 0) (server.h) */
    char tr_id[96];
    char tr_model[128];
    enum proxy_stop tr_stop; /* why the answer stopped (the client's format words it) */
    long wire_seq;           /* Responses: the next event's sequence_number */
    long wire_shift;         /* Responses relay: events the gateway added (later ones renumbered) */
    char openai_beta[256];   /* the client's openai-beta header, forwarded to OpenAI providers */
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

#endif
