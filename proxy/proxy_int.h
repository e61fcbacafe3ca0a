/* proxy_int.h -- the proxy object and its config snapshots; includes the headers of the
 * proxy's parts (server.h, req.h, upstream.h, answer.h, wire.h, sse.h, mailbox.h,
 * metrics.h), each of which states its own contract. Not for other modules.
 *
 * Ownership in one picture:
 *
 *   proxy ──owns── listeners, audit, engine cache, mailbox, decider, current snap (ref)
 *   conn  ──owns── bufferevent, parser, request-in-progress bytes;
 *                  holds one ref on its active req
 *   req   ──refs── snap (config + policy + pools it started on);
 *                  is also held by: a decision on the decider thread, a pending
 *                  audit append, an upstream connection, an engine job. Freed when
 *                  the last ref goes.
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
#include "proxy/answer.h"
#include "proxy/decide.h"
#include "proxy/decider.h"
#include "proxy/egress.h"
#include "proxy/mailbox.h"
#include "proxy/metrics.h"
#include "proxy/proxy.h"
#include "proxy/req.h"
#include "proxy/server.h"
#include "proxy/sse.h"
#include "proxy/upstream.h"
#include "proxy/wire.h"

#define PROXY_DRAIN_MS 15000
#define PROXY_MAX_ENGINES 8

struct proxy_engine_slot;

struct proxy_snap {
    int refs;
    struct proxy *px;
    struct config *cfg;
    struct policy *policy;
    struct proxy_pool *pools;         /* [cfg->n_providers] */
    struct engine_server **engines;   /* [cfg->n_providers], of the slots below */
    struct engine_model **models;     /* idem */
    struct proxy_engine_slot **slots; /* [cfg->n_providers] engine references held */
    struct egress_mint *mint;         /* the org CA of cfg->egress (NULL: no egress section): host
                                         certificates for interception, minted on the loop */
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
    int refs; /* snapshots holding it; guarded by proxy.engines_mu */
    struct proxy_engine_slot *next;
};

struct proxy_conn;

/* The egress proxy's counters (forward.c counts, metrics.c renders). */
struct proxy_egress_stats {
    uint64_t connects[3];     /* by enum egress_verdict: refuse, intercept, tunnel */
    uint64_t tunnel_bytes_up; /* client -> far end, tunnels and absolute-form requests */
    uint64_t tunnel_bytes_down;
    int open_tunnels; /* tunnels resolving, connecting or open (egress.max_tunnels) */
};

struct proxy {
    struct event_base *base;
    struct evdns_base *dns;
    struct proxy_snap *snap;
    char *reload_path;
    struct evconnlistener **listeners;
    SSL_CTX **listen_ssl;
    unsigned char *listen_forward; /* [n_listeners] 1: a `mode: forward` listener */
    size_t n_listeners;
    struct audit *audit;
    int audit_was_healthy;
    struct proxy_mailbox *mbox;
    /* big bodies are decided on this thread (decider.h); NULL: it could not be started,
     * or proxy_free stopped it, and every body is decided on the loop */
    struct proxy_decider *decider;
    struct event *sig_hup, *sig_term, *sig_int, *drain_timer;
    int draining;
    int n_conns;
    struct proxy_conn *conns; /* doubly linked, for draining */
    int n_reqs;               /* requests being handled */
    struct proxy_metrics metrics;
    struct proxy_egress_stats egress;
    struct proxy_spend *spend;
    int spend_day;                     /* days since epoch the spend is for */
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

/* ---- budgets (proxy.c): spend per key and team, today's ---- */

/* proxy_spend_add -- add usd to the key's and its team's spend for today */
void proxy_spend_add(struct proxy *px, const struct config_key *k, double usd);
/* proxy_spend_get -- today's spend of kind "k" (key) or "t" (team) `name` */
double proxy_spend_get(struct proxy *px, const char *kind, const char *name);

#endif
