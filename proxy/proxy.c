/* proxy.c -- the gateway's runtime: snapshots, signals, reload, drain, budgets.
 *
 * A snapshot bundles one config with what is built from it (compiled policy,
 * upstream pools, engine handles). Requests hold a reference on the snapshot
 * they started with; SIGHUP builds a new one and swaps it in, so in-flight
 * requests finish on the old config and new ones use the new config. Engines
 * are expensive, so snapshots share them by model path: a model is loaded by the
 * thread that builds the first snapshot naming it (for SIGHUP, the reload thread) and,
 * once the last snapshot naming it is released, unloaded on the unloader thread. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/dns.h>
#include <event2/thread.h>
#include <sodium.h>

#include "common/log.h"
#include "proxy/proxy_int.h"

static void engine_release(struct proxy *px, struct proxy_engine_slot *e);

void proxy_snap_unref(struct proxy_snap *s)
{
    size_t i;

    if (!s || --s->refs > 0)
        return;
    if (s->pools)
        for (i = 0; i < s->cfg->n_providers; i++)
            proxy_pool_deinit(&s->pools[i]);
    if (s->slots)
        for (i = 0; i < s->cfg->n_providers; i++)
            if (s->slots[i])
                engine_release(s->px, s->slots[i]);
    free(s->slots);
    free(s->pools);
    free(s->engines);
    free(s->models);
    egress_mint_free(s->mint);
    policy_free(s->policy);
    config_unref(s->cfg);
    free(s);
}

static void engine_slot_free(struct proxy_engine_slot *e)
{
    engine_server_free(e->server); /* joins its workers */
    engine_model_close(e->model);
    free(e->path);
    free(e);
}

enum { UNLOADER_NONE, UNLOADER_RUNNING, UNLOADER_STOPPED };

static double ms_since(const struct timespec *t0)
{
    struct timespec t1;

    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) * 1e3 + (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

/* engine_unload -- free a slot no snapshot holds, and say so */
static void engine_unload(struct proxy *px, struct proxy_engine_slot *e)
{
    struct timespec t0;
    char *path = e->path;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (px->unload_delay_ms > 0) {
        struct timespec d = {px->unload_delay_ms / 1000, (px->unload_delay_ms % 1000) * 1000000};
        while (nanosleep(&d, &d) != 0 && errno == EINTR)
            ;
    }
    e->path = NULL;
    engine_slot_free(e);
    log_info("unloaded %s in %.0f ms", path, ms_since(&t0));
    free(path);
}

/* The unloader thread: frees the slots engine_release queues, oldest first, until
 * proxy_free stops it; what is queued when it is stopped is still freed. */
static void *unloader_main(void *arg)
{
    struct proxy *px = arg;
    struct proxy_engine_slot *e;

    pthread_mutex_lock(&px->engines_mu);
    for (;;) {
        while (!px->unload && px->unloader_state == UNLOADER_RUNNING)
            pthread_cond_wait(&px->unload_cv, &px->engines_mu);
        e = px->unload;
        if (!e)
            break;
        px->unload = e->next;
        pthread_mutex_unlock(&px->engines_mu);
        engine_unload(px, e);
        pthread_mutex_lock(&px->engines_mu);
    }
    pthread_mutex_unlock(&px->engines_mu);
    return NULL;
}

/* engine_release -- drop a snapshot's reference (from any thread: no request uses the
 * engine any more, requests hold their snapshot). The last one hands the slot to the
 * unloader thread, started here the first time; while none can run (it cannot be
 * started, or proxy_free has stopped it) the caller unloads it itself. */
static void engine_release(struct proxy *px, struct proxy_engine_slot *e)
{
    struct proxy_engine_slot **pp;
    int inline_free = 0;

    pthread_mutex_lock(&px->engines_mu);
    if (--e->refs > 0) {
        pthread_mutex_unlock(&px->engines_mu);
        return;
    }
    for (pp = &px->engines; *pp && *pp != e; pp = &(*pp)->next)
        ;
    if (*pp)
        *pp = e->next;
    px->n_engines--;
    e->next = NULL;
    /* said here, under the lock: once queued, e is the unloader's */
    log_info("unloading %s: no provider names it any more", e->path);
    if (px->unloader_state == UNLOADER_NONE) {
        if (pthread_create(&px->unloader, NULL, unloader_main, px) == 0)
            px->unloader_state = UNLOADER_RUNNING;
        else
            log_warn("cannot start the unloader thread; unloading %s on the caller's thread",
                     e->path);
    }
    if (px->unloader_state == UNLOADER_RUNNING) {
        for (pp = &px->unload; *pp; pp = &(*pp)->next)
            ;
        *pp = e;
        pthread_cond_signal(&px->unload_cv);
    } else {
        inline_free = 1;
    }
    pthread_mutex_unlock(&px->engines_mu);
    if (inline_free)
        engine_unload(px, e);
}

/* unloader_stop -- from proxy_free: the unloader frees what is queued and exits;
 * later releases unload on their own thread */
static void unloader_stop(struct proxy *px)
{
    int running;

    pthread_mutex_lock(&px->engines_mu);
    running = px->unloader_state == UNLOADER_RUNNING;
    px->unloader_state = UNLOADER_STOPPED;
    pthread_cond_signal(&px->unload_cv);
    pthread_mutex_unlock(&px->engines_mu);
    if (running)
        pthread_join(px->unloader, NULL);
}

/* engine_ref_loaded -- under the lock: a new reference on the engine already loaded
 * from prov's model file (*have), else, when `fresh` is given, add fresh to the list
 * (*have NULL). -1 when there is no room for another distinct model. */
static int engine_ref_loaded(struct proxy *px, const struct config_provider *prov,
                             struct proxy_engine_slot *fresh, struct proxy_engine_slot **have,
                             char *err, size_t errlen)
{
    struct proxy_engine_slot *e;
    int rc = 0;

    pthread_mutex_lock(&px->engines_mu);
    for (e = px->engines; e; e = e->next)
        if (strcmp(e->path, prov->model_path) == 0)
            break;
    if (e) {
        e->refs++;
    } else if (px->n_engines >= PROXY_MAX_ENGINES) {
        snprintf(err, errlen, "provider %s: too many distinct local models", prov->name);
        rc = -1;
    } else if (fresh) {
        fresh->next = px->engines;
        px->engines = fresh;
        px->n_engines++;
    }
    pthread_mutex_unlock(&px->engines_mu);
    *have = e;
    return rc;
}

/* engine_acquire -- a reference on the engine for a builtin provider, loading the model
 * if no snapshot has it. Thread-safe: the reload thread loads off the event loop; the
 * lock is not held while loading. */
static int engine_acquire(struct proxy *px, const struct config_provider *prov, int queue,
                          struct proxy_engine_slot **out, char *err, size_t errlen)
{
    struct proxy_engine_slot *e, *have;
    char merr[256];
    struct timespec t0, t1;

    *out = NULL;
    if (engine_ref_loaded(px, prov, NULL, &have, err, errlen) != 0)
        return -1;
    if (have) {
        *out = have;
        return 0;
    }
    e = calloc(1, sizeof(*e));
    if (!e || !(e->path = strdup(prov->model_path))) {
        free(e);
        snprintf(err, errlen, "provider %s: out of memory", prov->name);
        return -1;
    }
    e->refs = 1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (engine_model_open(prov->model_path, prov->threads, prov->context, &e->model, merr,
                          sizeof(merr)) != 0) {
        snprintf(err, errlen, "provider %s: %s", prov->name, merr);
        engine_slot_free(e);
        return -1;
    }
    if (engine_server_new(e->model, queue, &e->server) != 0) {
        snprintf(err, errlen, "provider %s: cannot start the engine workers", prov->name);
        engine_slot_free(e);
        return -1;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    /* another thread may have loaded the same file meanwhile: keep one */
    if (engine_ref_loaded(px, prov, e, &have, err, errlen) != 0) {
        engine_slot_free(e);
        return -1;
    }
    if (have) {
        engine_slot_free(e);
        *out = have;
        return 0;
    }
    log_info("provider %s: loaded %s (%s) in %.0f ms", prov->name, prov->model_path,
             engine_model_name(e->model),
             (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
    *out = e;
    return 0;
}

/* snap_new -- build a snapshot from cfg (consumes the reference): the compiled policy,
 * the upstream pools and the engines of its builtin providers (loading models no
 * snapshot has yet). Thread-safe, so the reload thread calls it and a new model loads
 * off the event loop. */
static struct proxy_snap *snap_new(struct proxy *px, struct config *cfg, char *err, size_t errlen)
{
    struct proxy_snap *s = calloc(1, sizeof(*s));
    struct config_errors errs;
    size_t i;

    if (!s) {
        config_unref(cfg);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->refs = 1;
    s->px = px;
    s->cfg = cfg;
    memset(&errs, 0, sizeof(errs));
    errs.file = cfg->path;
    if (policy_new(cfg, &s->policy, &errs) != 0) {
        char buf[2048];
        config_errors_format(&errs, buf, sizeof(buf));
        snprintf(err, errlen, "policy: %s", buf[0] ? buf : "cannot compile the detectors");
        goto fail;
    }
    s->pools = calloc(cfg->n_providers ? cfg->n_providers : 1, sizeof(*s->pools));
    s->engines = calloc(cfg->n_providers ? cfg->n_providers : 1, sizeof(*s->engines));
    s->models = calloc(cfg->n_providers ? cfg->n_providers : 1, sizeof(*s->models));
    s->slots = calloc(cfg->n_providers ? cfg->n_providers : 1, sizeof(*s->slots));
    if (!s->pools || !s->engines || !s->models || !s->slots) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    for (i = 0; i < cfg->n_providers; i++)
        if (proxy_pool_init(&s->pools[i], px, &cfg->providers[i], err, errlen) < 0)
            goto fail;
    if (cfg->egress.present && cfg->egress.ca_cert && cfg->egress.ca_key) {
        char merr[512];
        s->mint = egress_mint_new(cfg->egress.ca_cert, cfg->egress.ca_key, merr, sizeof(merr));
        if (!s->mint) {
            snprintf(err, errlen, "egress: %s", merr);
            goto fail;
        }
    }
    for (i = 0; i < cfg->n_providers; i++) {
        const struct config_provider *p = &cfg->providers[i];
        char eerr[512];
        if (p->type != CONFIG_PROVIDER_BUILTIN)
            continue;
        if (engine_acquire(px, p, cfg->limits.engine_queue, &s->slots[i], eerr, sizeof(eerr)) < 0) {
            /* a missing local model must not take the gateway down: its requests get a
             * clear 503 */
            log_error("%s; local answers from it are unavailable", eerr);
            continue;
        }
        s->engines[i] = s->slots[i]->server;
        s->models[i] = s->slots[i]->model;
    }
    return s;
fail:
    proxy_snap_unref(s);
    return NULL;
}

/* ---- budgets: spend per key and team for the current UTC day ---- */

static int today(void)
{
    return (int)(time(NULL) / 86400);
}

static void spend_roll(struct proxy *px)
{
    int d = today();

    if (d == px->spend_day)
        return;
    while (px->spend) {
        struct proxy_spend *s = px->spend;
        px->spend = s->next;
        free(s->name);
        free(s);
    }
    px->spend_day = d;
}

static void spend_add_name(struct proxy *px, const char *kind, const char *name, double usd)
{
    struct proxy_spend *s;
    char key[300];

    snprintf(key, sizeof(key), "%s:%s", kind, name);
    for (s = px->spend; s; s = s->next)
        if (strcmp(s->name, key) == 0)
            break;
    if (!s) {
        s = calloc(1, sizeof(*s));
        if (!s)
            return;
        s->name = strdup(key);
        if (!s->name) {
            free(s);
            return;
        }
        s->next = px->spend;
        px->spend = s;
    }
    s->usd += usd;
}

void proxy_spend_add(struct proxy *px, const struct config_key *k, double usd)
{
    spend_roll(px);
    spend_add_name(px, "k", k->name, usd);
    if (k->team)
        spend_add_name(px, "t", k->team, usd);
}

double proxy_spend_get(struct proxy *px, const char *kind, const char *name)
{
    struct proxy_spend *s;
    char key[300];

    spend_roll(px);
    snprintf(key, sizeof(key), "%s:%s", kind, name);
    for (s = px->spend; s; s = s->next)
        if (strcmp(s->name, key) == 0)
            return s->usd;
    return 0;
}

static void spend_replay(void *ud, const char *key, const char *team, double usd)
{
    struct proxy *px = ud;

    if (key)
        spend_add_name(px, "k", key, usd);
    if (team)
        spend_add_name(px, "t", team, usd);
}

/* ---- signals ---- */

static void drain_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct proxy *px = arg;

    (void)fd;
    (void)what;
    log_warn("drain: %d request(s) still in flight after %d ms; closing them", px->n_reqs,
             PROXY_DRAIN_MS);
    event_base_loopexit(px->base, NULL);
}

static void on_term(evutil_socket_t sig, short what, void *arg)
{
    struct proxy *px = arg;
    struct timeval tv = {PROXY_DRAIN_MS / 1000, (PROXY_DRAIN_MS % 1000) * 1000};

    (void)what;
    if (px->draining) {
        log_warn("second signal: exiting now");
        event_base_loopexit(px->base, NULL);
        return;
    }
    log_info("%s: draining (%d request(s) in flight)", sig == SIGINT ? "SIGINT" : "SIGTERM",
             px->n_reqs);
    px->draining = 1;
    proxy_listeners_close(px);
    proxy_conns_drain(px);
    if (px->n_reqs == 0 && px->n_conns == 0) {
        event_base_loopexit(px->base, NULL);
        return;
    }
    px->drain_timer = evtimer_new(px->base, drain_timeout_cb, px);
    if (px->drain_timer)
        evtimer_add(px->drain_timer, &tv);
}

static void lint_log(void *ud, struct config_pos pos, const char *msg)
{
    log_warn("config %s:%d: %s", (const char *)ud, pos.line, msg);
}

/* snap_load -- read `path` and build its snapshot; thread-safe. */
static struct proxy_snap *snap_load(struct proxy *px, const char *path, char *err, size_t errlen)
{
    struct config *cfg = NULL;
    struct config_errors errs;

    memset(&errs, 0, sizeof(errs));
    if (config_load(path, &cfg, &errs) != 0) {
        config_errors_format(&errs, err, errlen);
        return NULL;
    }
    config_lint(cfg, lint_log, (void *)path);
    return snap_new(px, cfg, err, errlen);
}

static void snap_swap(struct proxy *px, struct proxy_snap *s, const char *path);
static void reload_start(struct proxy *px);

/* The loop's half of a reload: swap in the snapshot the thread built (or log why
 * there is none), then start the next reload if SIGHUP came again meanwhile. */
static void reload_done_loop(void *arg, int status, const char *data, size_t len)
{
    struct proxy *px = arg;
    struct proxy_snap *s = px->reload_snap;

    (void)status;
    (void)data;
    (void)len;
    px->reload_snap = NULL;
    if (px->reloading) /* proxy_free joins it itself */
        pthread_join(px->reload_thread, NULL);
    px->reloading = 0;
    if (px->freeing) {
        proxy_snap_unref(s);
        return;
    }
    if (s) {
        snap_swap(px, s, px->reload_path);
    } else {
        log_error("reload rejected, the running config stays: %s",
                  px->reload_err[0] ? px->reload_err : "unknown error");
        px->metrics.reloads_failed++;
    }
    if (px->reload_again) {
        px->reload_again = 0;
        reload_start(px);
    }
}

/* The thread's half: parsing YAML and compiling the detectors take tens to
 * hundreds of milliseconds, and loading a new local model up to seconds, which the
 * loop must not spend. Its result goes in px and back through px->reload_mail, which
 * cannot fail: a lost result would leave px->reloading set and refuse every later
 * reload. */
static void *reload_thread_main(void *arg)
{
    struct proxy *px = arg;

    px->reload_err[0] = '\0';
    px->reload_snap = snap_load(px, px->reload_path, px->reload_err, sizeof(px->reload_err));
    proxy_mailbox_send(px->mbox, &px->reload_mail, reload_done_loop, px, px->reload_snap ? 0 : -1);
    return NULL;
}

static void reload_start(struct proxy *px)
{
    if (px->reloading) {
        px->reload_again = 1;
        return;
    }
    px->reloading = 1;
    if (pthread_create(&px->reload_thread, NULL, reload_thread_main, px) != 0) {
        px->reloading = 0;
        log_error("reload: cannot start a thread; reloading on the loop");
        proxy_reload(px, px->reload_path);
    }
}

static void on_hup(evutil_socket_t sig, short what, void *arg)
{
    struct proxy *px = arg;

    (void)sig;
    (void)what;
    if (!px->reload_path) {
        log_warn("SIGHUP: no config file to reload (serving the embedded default)");
        return;
    }
    reload_start(px);
}

int proxy_reload(struct proxy *px, const char *path)
{
    struct proxy_snap *s;
    char err[4096];

    s = snap_load(px, path, err, sizeof(err));
    if (!s) {
        log_error("reload rejected, the running config stays: %s", err);
        px->metrics.reloads_failed++;
        return -1;
    }
    snap_swap(px, s, path);
    return 0;
}

static void snap_swap(struct proxy *px, struct proxy_snap *s, const char *path)
{
    if (s->cfg->n_listens != px->snap->cfg->n_listens)
        log_warn("reload: listener changes take effect at the next restart");
    if ((s->cfg->audit.dir == NULL) != (px->snap->cfg->audit.dir == NULL) ||
        (s->cfg->audit.dir && strcmp(s->cfg->audit.dir, px->snap->cfg->audit.dir) != 0))
        log_warn("reload: audit changes take effect at the next restart");
    proxy_snap_unref(px->snap);
    px->snap = s;
    px->metrics.reloads_ok++;
    log_info("reloaded %s: %zu provider(s), %zu model(s), %zu rule(s)", path, s->cfg->n_providers,
             s->cfg->n_models, s->cfg->n_rules);
}

/* ---- lifecycle ---- */

int proxy_new(struct config *cfg, const char *reload_path, struct proxy **out, char *err,
              size_t errlen)
{
    struct proxy *px;
    char aerr[512];
    const char *env;

    *out = NULL;
    if (sodium_init() < 0) {
        config_unref(cfg);
        snprintf(err, errlen, "libsodium failed to initialise");
        return -1;
    }
    evthread_use_pthreads();
    signal(SIGPIPE, SIG_IGN);
    px = calloc(1, sizeof(*px));
    if (!px) {
        config_unref(cfg);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    pthread_mutex_init(&px->engines_mu, NULL);
    pthread_cond_init(&px->unload_cv, NULL);
    env = getenv("AIRLOCK_ENGINE_FAULT_UNLOAD_MS"); /* tests: a slow unload */
    if (env && *env)
        px->unload_delay_ms = strtol(env, NULL, 10);
    px->spend_day = today();
    px->base = event_base_new();
    if (!px->base) {
        config_unref(cfg);
        snprintf(err, errlen, "cannot create the event loop");
        goto fail;
    }
    px->dns = evdns_base_new(px->base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
    if (!px->dns) { /* no usable resolv.conf: names from /etc/hosts only */
        px->dns = evdns_base_new(px->base, 0);
        if (px->dns)
            (void)evdns_base_load_hosts(px->dns, NULL);
    }
    px->mbox = proxy_mailbox_new(px->base);
    if (!px->mbox) {
        config_unref(cfg);
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    /* (without it, every body is decided on the loop, as before there was one) */
    px->decider = proxy_decider_new(px->mbox);
    if (!px->decider)
        log_warn("cannot start the decider thread; big bodies are decided on the event loop");
    if (reload_path)
        px->reload_path = strdup(reload_path);
    px->snap = snap_new(px, cfg, err, errlen);
    if (!px->snap)
        goto fail;
    if (px->snap->cfg->audit.dir) {
        if (audit_open(&px->snap->cfg->audit, &px->audit, aerr, sizeof(aerr)) != 0) {
            snprintf(err, errlen, "audit: %s", aerr);
            goto fail;
        }
        if (audit_spend_scan(px->snap->cfg->audit.dir, (time_t)today() * 86400, spend_replay, px) !=
            0)
            log_warn("audit: could not replay today's spend; budgets start from zero");
    }
    if (proxy_listeners_open(px, err, errlen) < 0)
        goto fail;
    px->sig_hup = evsignal_new(px->base, SIGHUP, on_hup, px);
    px->sig_term = evsignal_new(px->base, SIGTERM, on_term, px);
    px->sig_int = evsignal_new(px->base, SIGINT, on_term, px);
    if (!px->sig_hup || !px->sig_term || !px->sig_int) {
        snprintf(err, errlen, "cannot install signal handlers");
        goto fail;
    }
    event_add(px->sig_hup, NULL);
    event_add(px->sig_term, NULL);
    event_add(px->sig_int, NULL);
    *out = px;
    return 0;
fail:
    proxy_free(px);
    return -1;
}

int proxy_run(struct proxy *px)
{
    event_base_dispatch(px->base);
    return 0;
}

void proxy_free(struct proxy *px)
{
    struct proxy_engine_slot *e;

    if (!px)
        return;
    px->freeing = 1;
    if (px->reloading)
        pthread_join(px->reload_thread, NULL); /* its result is freed by the mailbox */
    px->reloading = 0;
    unloader_stop(px); /* from here on, the last release of an engine unloads it inline */
    proxy_listeners_close(px);
    if (px->base)
        proxy_conns_close_all(px);
    /* a decision in progress finishes; its request, and those queued, report through the
     * mailbox, run now: their clients are gone (closed above), so each is recorded as a
     * request not sent and a 499, which needs the audit log, closed below */
    proxy_decider_free(px->decider);
    px->decider = NULL;
    proxy_mailbox_drain(px->mbox);
    /* engines first: cancelled jobs report through the mailbox (the models stay until
     * the snapshots holding them are released below) */
    for (e = px->engines; e; e = e->next) {
        engine_server_free(e->server);
        e->server = NULL;
    }
    if (px->audit)
        audit_close(px->audit); /* final checkpoint; callbacks go to the mailbox */
    px->audit = NULL;
    if (px->mbox)
        proxy_mailbox_free(px->mbox); /* runs what is left */
    proxy_snap_unref(px->snap);
    if (px->sig_hup)
        event_free(px->sig_hup);
    if (px->sig_term)
        event_free(px->sig_term);
    if (px->sig_int)
        event_free(px->sig_int);
    if (px->drain_timer)
        event_free(px->drain_timer);
    free(px->listeners);
    free(px->listen_ssl);
    free(px->listen_forward);
    if (px->dns)
        evdns_base_free(px->dns, 0);
    if (px->base)
        event_base_free(px->base);
    while (px->spend) {
        struct proxy_spend *s = px->spend;
        px->spend = s->next;
        free(s->name);
        free(s);
    }
    proxy_metrics_deinit(&px->metrics);
    /* every snapshot is released by now; anything left was leaked by one */
    while ((e = px->engines)) {
        px->engines = e->next;
        engine_slot_free(e);
    }
    pthread_cond_destroy(&px->unload_cv);
    pthread_mutex_destroy(&px->engines_mu);
    free(px->reload_path);
    free(px);
}
