/* req.c -- one request from complete bytes to finished answer (see req.h).
 *
 * It reads in the order a request happens: proxy_req_handle (the path) → handle_api:
 * authenticate → proxy_decide (decide.c: the body's one reading, policy, route, outbound)
 * → budgets → the request record (write-ahead: durable before a byte leaves) → dispatch
 * to a provider (upstream.c) or the built-in engine → the answer (answer.c) →
 * proxy_req_finish: the response record, metrics, spend → req_complete. Errors, /v1/models
 * and the request object's own functions come last.
 *
 * A request is reference-counted: the connection holds one while it answers, and
 * every piece of asynchronous work (a decision off the loop, audit append, upstream,
 * engine job) holds one until it reports back, so a client that disappears never leaves
 * a callback pointing at freed memory.
 *
 * Deciding off the loop (DESIGN): a body of PROXY_DECIDE_OFFLOOP_BYTES or more is decided
 * on the decider thread (decider.h), because deciding costs time per finding that no
 * limit short of max_body_bytes bounds (docs/security.md, Costs and observations). Only
 * the decision moves: authentication before it and everything after it (count_tokens,
 * forwarded headers, the route's wire, budgets, REQ_DECIDED, the request record) run on
 * the loop, in the same order, in `decided`. While the decider has the request it holds a
 * reference, r->deciding is set and the loop leaves r->d alone; the connection stays busy,
 * so pipelined requests behind it are answered after it, in order. A client that leaves
 * meanwhile is settled once, when the decision is back (decided_loop): its request record
 * and a 499 response record. A reload meanwhile changes nothing for it: it decides and
 * goes on under the snapshot it started on (r->snap). */
#include <assert.h>
#include <ctype.h>
#include <fnmatch.h>
#include <limits.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/grow.h"
#include "common/jbuf.h"
#include "common/json.h"
#include "common/log.h"
#include "common/rand.h"
#include "common/utf8.h"
#include "common/wipe.h"
#include "engine/engine_ext.h"
#include "proxy/outbound.h"
#include "proxy/proxy_int.h"

/* The steps of a request, in the order they happen (each is defined below in this order;
 * the answer itself is answer.c's). */
static void handle_api(struct proxy_req *r);
static int decide(struct proxy_req *r);
static void decide_work(void *arg);
static void decided_loop(void *arg, int status, const char *data, size_t len);
static void decided(struct proxy_req *r, int rc);
static void record_unsent(struct proxy_req *r);
static void refuse(struct proxy_req *r, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void refused_recorded(void *ud, int status);
static void refused_recorded_loop(void *arg, int status, const char *data, size_t len);
static int forwarded_headers(struct proxy_req *r);
static int authenticate(struct proxy_req *r);
static int over_budget(struct proxy_req *r);
static int counted_by_openai(const struct proxy_req *r);
static int countable(struct proxy_req *r);
static char *request_meta(struct proxy_req *r, size_t *len);
static void audit_request_then_dispatch(struct proxy_req *r);
static void audit_request_done(void *ud, int status);
static void audit_request_done_loop(void *arg, int status, const char *data, size_t len);
static void dispatch(struct proxy_req *r);
static void dispatch_engine(struct proxy_req *r);
static void count_engine(struct proxy_req *r);
static void on_engine_text(void *ud, const char *text, size_t len);
static void engine_text_loop(void *arg, int status, const char *data, size_t len);
static void engine_lost_loop(void *arg, int status, const char *data, size_t len);
static void on_engine_done(void *ud, const struct engine_result *res);
static void on_engine_ready(void *ud, int prompt_tokens);
static void engine_ready_loop(void *arg, int status, const char *data, size_t len);
static void engine_done_loop(void *arg, int status, const char *data, size_t len);
/* (proxy_req_finish) */
static void meta_common(struct jbuf *m, const struct proxy_req *r);
static char *response_meta(struct proxy_req *r, size_t *len);
static void response_durable(void *ud, int status);
static void response_durable_loop(void *arg, int status, const char *data, size_t len);
static void req_complete(struct proxy_req *r);
/* errors, /v1/models, the request object */
static void stream_error(struct proxy_req *r, int status, const char *message);
static void handle_models(struct proxy_req *r);
static int model_allowed(struct proxy_req *r, const struct config_model *m);
static double now_s(void);
static void iso_time(char *buf, size_t cap);
static void put_digits(char *p, unsigned v, int n);

void proxy_req_handle(struct proxy_req *r)
{
    struct proxy_conn *c = r->conn;
    const char *url = c->url ? c->url : "/";
    size_t plen = strcspn(url, "?");
    int get = c->parser.method == HTTP_GET, post = c->parser.method == HTTP_POST;

#define PATH_IS(p) (plen == strlen(p) && strncmp(url, (p), plen) == 0)
    if (c->intercept && proxy_forward_screen(r, url, plen))
        return; /* the gateway's own paths and WebSockets on a provider's host */
    if (PATH_IS("/healthz")) {
        snprintf(r->endpoint, sizeof(r->endpoint), "/healthz");
        proxy_conn_reply(r, 200, "text/plain", "ok\n", 3);
        proxy_req_finish(r);
        return;
    }
    if (PATH_IS("/metrics")) {
        struct evbuffer *b = evbuffer_new();
        size_t n;
        snprintf(r->endpoint, sizeof(r->endpoint), "/metrics");
        proxy_metrics_render(r->px, b);
        n = evbuffer_get_length(b);
        proxy_conn_reply(r, 200, "text/plain; version=0.0.4", (const char *)evbuffer_pullup(b, -1),
                         n);
        evbuffer_free(b);
        proxy_req_finish(r);
        return;
    }
    if (PATH_IS("/v1/models")) {
        snprintf(r->endpoint, sizeof(r->endpoint), "/v1/models");
        if (!get) {
            proxy_req_error(r, 405, "invalid_request_error", "Use GET for /v1/models.");
            return;
        }
        if (authenticate(r) < 0)
            return;
        handle_models(r);
        return;
    }
    if (PATH_IS("/v1/chat/completions") || PATH_IS("/chat/completions")) {
        r->api = PROXY_API_OPENAI;
        snprintf(r->endpoint, sizeof(r->endpoint), "/v1/chat/completions");
    } else if (PATH_IS("/v1/messages")) {
        r->api = PROXY_API_ANTHROPIC;
        r->wire = &proxy_wire_anthropic_messages;
        snprintf(r->endpoint, sizeof(r->endpoint), "/v1/messages");
    } else if (PATH_IS("/v1/completions")) {
        r->api = PROXY_API_OPENAI;
        r->wire = &proxy_wire_openai_completions;
        snprintf(r->endpoint, sizeof(r->endpoint), "/v1/completions");
    } else if (PATH_IS("/v1/embeddings")) {
        r->api = PROXY_API_OPENAI;
        r->wire = &proxy_wire_openai_embeddings;
        snprintf(r->endpoint, sizeof(r->endpoint), "/v1/embeddings");
    } else if (PATH_IS("/v1/messages/count_tokens")) {
        r->api = PROXY_API_ANTHROPIC;
        r->wire = &proxy_wire_anthropic_messages;
        r->count_tokens = 1;
        snprintf(r->endpoint, sizeof(r->endpoint), "/v1/messages/count_tokens");
    } else if (PATH_IS("/v1/responses") || PATH_IS("/v1/responses/compact")) {
        const char *up = proxy_conn_header(c, "upgrade");
        int compact = PATH_IS("/v1/responses/compact");
        r->api = PROXY_API_OPENAI;
        r->wire = compact ? &proxy_wire_openai_responses_compact : &proxy_wire_openai_responses;
        snprintf(r->endpoint, sizeof(r->endpoint), "%s",
                 compact ? "/v1/responses/compact" : "/v1/responses");
        if (up && strcasestr(up, "websocket")) {
            /* the Responses API's WebSocket mode: what it carries cannot be decided as one
             * body, so the client is told to fall back to HTTP (and the connection, which
             * asked to change protocols, is closed after the answer) */
            c->keep_alive = 0;
            proxy_req_error(r, 426, "invalid_request_error",
                            "WebSocket mode is not served by this gateway; use HTTP requests "
                            "(POST %s).",
                            r->endpoint);
            return;
        }
    } else if (c->intercept) { /* never tunnelled: what airlock cannot read does not leave */
        proxy_req_error(r, 403, NULL,
                        "The path '%.*s' is not an API airlock can inspect, so it is not "
                        "forwarded.",
                        (int)(plen > 200 ? 200 : plen), url);
        return;
    } else {
        proxy_req_error(r, 404, "invalid_request_error", "Unknown path '%.*s'.",
                        (int)(plen > 200 ? 200 : plen), url);
        return;
    }
#undef PATH_IS
    if (!post) {
        proxy_req_error(r, 405, NULL, "Use POST for %s.", r->endpoint);
        return;
    }
    handle_api(r);
}

static enum proxy_body body_kind(const struct proxy_req *r)
{
    return r->wire == &proxy_wire_openai_completions         ? PROXY_BODY_COMPLETION
           : r->wire == &proxy_wire_openai_embeddings        ? PROXY_BODY_EMBEDDING
           : r->wire == &proxy_wire_openai_responses         ? PROXY_BODY_RESPONSE
           : r->wire == &proxy_wire_openai_responses_compact ? PROXY_BODY_COMPACT
                                                             : PROXY_BODY_CHAT;
}

/* An API request: authenticate, decide (the same proxy_decide as `airlock policy test`),
 * budgets, then the request record and dispatch. A count_tokens body is decided as the
 * same body on /v1/messages would be: it is the same prompt leaving the same way.
 *
 * A body of PROXY_DECIDE_OFFLOOP_BYTES or more is decided on the decider thread
 * (decider.h): its findings cost up to 1 us each, 200 ms for 4 MiB of e-mails under a
 * redact rule, which every other connection would wait for on the loop. The request holds
 * a reference for the decider and goes on in decided_loop; meanwhile the loop leaves r->d
 * alone (r->deciding), and a client that leaves is settled there, once. Smaller bodies
 * decide in microseconds, less than the hand-off's two wake-ups, and stay here. */
static void handle_api(struct proxy_req *r)
{
    if (authenticate(r) < 0)
        return;
    if (r->body_len >= PROXY_DECIDE_OFFLOOP_BYTES && r->px->decider) {
        r->decide_job.work = decide_work;
        r->decide_job.done = decided_loop;
        r->decide_job.arg = r;
        r->deciding = 1;
        proxy_req_ref(r); /* the decider's */
        proxy_decider_submit(r->px->decider, &r->decide_job);
        return;
    }
    decided(r, decide(r));
}

/* decide -- the request's one decision into r->d; on the loop or the decider thread. It
 * reads only what nothing changes while it runs (the body, the key, the API, the snapshot
 * r holds a reference on: its config and policy, whose scanner scratch is a locked pool)
 * and writes only r->d. */
static int decide(struct proxy_req *r)
{
    enum policy_api api = r->api == PROXY_API_ANTHROPIC ? POLICY_API_ANTHROPIC : POLICY_API_OPENAI;

    return proxy_decide_body(r->snap->cfg, r->snap->policy, api, body_kind(r), r->body, r->body_len,
                             r->key ? r->key->name : NULL, r->key ? r->key->team : NULL, &r->d);
}

static void decide_work(void *arg) /* on the decider thread */
{
    struct proxy_req *r = arg;

    r->decide_rc = decide(r);
}

/* The decision of a big body is back (status 0), or was never made because the gateway
 * is stopping (-1). A client that left meanwhile is answered nothing: its request is
 * recorded as one that never left, then its response record says 499. */
static void decided_loop(void *arg, int status, const char *data, size_t len)
{
    struct proxy_req *r = arg;

    (void)data;
    (void)len;
    r->deciding = 0;
    if (!r->conn) {
        record_unsent(r);
        proxy_req_abandoned(r);
        proxy_req_finish(r);
    } else if (status < 0) {
        proxy_req_error(r, 503, NULL, "The gateway is shutting down; the request was not sent.");
    } else {
        decided(r, r->decide_rc);
    }
    proxy_req_unref(r); /* the decider's */
}

/* the rest of handle_api, once r->d holds the decision (rc: proxy_decide_body's) */
static void decided(struct proxy_req *r, int rc)
{
    enum proxy_body kind = body_kind(r);

    /* (a count routed to an OpenAI-type provider is refused for that, whatever its
     * translation would have said) */
    if (rc < 0 && !(r->count_tokens && counted_by_openai(r))) {
        refuse(r, r->d.status, "%s", r->d.error);
        return;
    }
    if (r->count_tokens && countable(r) < 0)
        return;
    if (forwarded_headers(r) < 0)
        return;
    /* (a completion, an embedding or a compaction has only its own API's providers:
     * proxy_decide_body; a response goes to an Anthropic provider as a translated chat) */
    if (r->d.prov->type == CONFIG_PROVIDER_ANTHROPIC &&
        (kind == PROXY_BODY_CHAT || kind == PROXY_BODY_RESPONSE))
        r->up_wire = &proxy_wire_anthropic_messages;
    else if (r->d.prov->type != CONFIG_PROVIDER_BUILTIN)
        r->up_wire = kind != PROXY_BODY_CHAT ? r->wire : &proxy_wire_openai_chat;
    /* counting is free (Anthropic does not bill it, the engine spends no generation), so a
     * spent budget has nothing to protect there: the key's next message gets the 429 */
    if (!r->count_tokens && over_budget(r))
        return;
    proxy_req_advance(r, REQ_DECIDED);
    audit_request_then_dispatch(r);
}

/* A refused request (401, 400, 403, 404, 429) is recorded too (SPEC §5.1): its request
 * record holds the inbound bytes and whatever was decided (verdict, rule, findings). Nothing
 * leaves, so the answer does not wait for the disk (AUDIT_WRITTEN), as for a response
 * record; then the error answer and its response record. */
static void refuse(struct proxy_req *r, int status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    record_unsent(r);
    proxy_req_error(r, status, NULL, "%s", msg);
}

/* record_unsent -- the request record of a request nothing of which leaves (refused, or
 * its client gone before it was sent): the inbound bytes and whatever was decided. Its
 * response record follows from proxy_req_finish. */
static void record_unsent(struct proxy_req *r)
{
    struct audit_blob blob = {"inbound", r->body, r->body_len};
    char *meta;
    size_t meta_len = 0;
    int rc;

    if (r->px->audit && r->api != PROXY_API_NONE) { /* (an API request: its response too) */
        meta = request_meta(r, &meta_len);
        proxy_req_ref(r);
        rc = meta ? audit_append_ex(r->px->audit, AUDIT_REC_REQUEST, meta, meta_len, &blob, 1,
                                    AUDIT_WRITTEN, refused_recorded, r)
                  : -1;
        free(meta);
        if (rc != 0)
            proxy_req_unref(r); /* no callback will come */
        if (rc < 0)
            log_error("request %s: the record of a request not sent could not be written", r->id);
    }
}

static void refused_recorded(void *ud, int status)
{
    struct proxy_req *r = ud;

    proxy_mailbox_send(r->px->mbox, &r->mail_request_rec, refused_recorded_loop, r, status);
}

static void refused_recorded_loop(void *arg, int status, const char *data, size_t len)
{
    struct proxy_req *r = arg;

    (void)data;
    (void)len;
    if (status < 0)
        log_error("request %s: the refused request's record could not be written", r->id);
    proxy_req_unref(r); /* the audit's reference */
}

/* The provider headers a client's request carries on (SPEC §3) leave the network too, so
 * each must fit its grammar, which has no room for a value worth scanning: a date for
 * anthropic-version, a comma-separated list of feature names for anthropic-beta (and
 * openai-beta, whose names may carry a value: "responses=experimental"). Outside
 * it the request is refused, not forwarded unread. */
static int token_list(const char *s, size_t max, int values)
{
    size_t n = strlen(s), tok = 0;

    if (n == 0 || n > max)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (isalnum(c) || c == '-' || c == '_' || c == '.' || (values && c == '=' && tok))
            tok++;
        else if (c == ',' && tok)
            tok = 0;
        else if (c != ' ')
            return 0;
    }
    return tok > 0;
}

/* header_scanned -- a forwarded header's value (its grammar already checked: letters,
 * digits, "-_.=, ") goes through the policy's detectors as text the model could read
 * would: a token grammar still spells an access key or a hex secret, and the header leaves
 * with the request (red team: `anthropic-beta: AKIA...` reached the provider). A header
 * cannot be redacted, so a finding the rules do not simply allow refuses the request: 403
 * when the rule blocks, 400 otherwise. 0 or -1 (answered). */
static int header_scanned(struct proxy_req *r, const char *name, const char *value)
{
    struct policy_decision pd;
    struct jbuf b;
    size_t len = 0;
    char *body;
    int rc = 0;

    if (r->d.prov && r->d.prov->type == CONFIG_PROVIDER_BUILTIN)
        return 0; /* kept local: no header leaves */
    jbuf_init(&b);
    jbuf_open(&b, '{');
    jbuf_key(&b, "messages");
    jbuf_open(&b, '[');
    jbuf_open(&b, '{');
    jbuf_key(&b, "role");
    jbuf_str(&b, "user");
    jbuf_key(&b, "content");
    jbuf_str(&b, value);
    jbuf_close(&b, '}');
    jbuf_close(&b, ']');
    jbuf_close(&b, '}');
    body = jbuf_finish(&b, &len);
    if (!body) {
        refuse(r, 500, "Out of memory while scanning the %s header.", name);
        return -1;
    }
    struct policy_input in = {.api = POLICY_API_OPENAI,
                              .body = body,
                              .len = len,
                              .model = r->d.model_name ? r->d.model_name : "",
                              .key_name = r->key ? r->key->name : NULL,
                              .team = r->key ? r->key->team : NULL};
    if (policy_decide(r->snap->policy, &in, &pd) < 0) {
        refuse(r, 400, "The %s header could not be scanned, so the request was refused.", name);
        rc = -1;
    } else if (pd.n_findings > 0 && pd.verdict != POLICY_ALLOW) {
        refuse(r, pd.verdict == POLICY_BLOCK ? 403 : 400,
               "The %s header holds what the detector '%s' finds; a header cannot be redacted, "
               "so the request was refused.",
               name, pd.findings[0].detector ? pd.findings[0].detector : "?");
        rc = -1;
    }
    policy_decision_deinit(&pd);
    free(body);
    return rc;
}

static int forwarded_headers(struct proxy_req *r)
{
    const char *v, *b;

    if (r->api == PROXY_API_OPENAI) {
        /* openai-beta: feature names, some with a value ("responses=experimental") */
        b = proxy_conn_header(r->conn, "openai-beta");
        if (b && !token_list(b, sizeof(r->openai_beta) - 1, 1)) {
            refuse(r, 400,
                   "The openai-beta header must be a comma-separated list of feature names "
                   "(name or name=value, at most %zu bytes).",
                   sizeof(r->openai_beta) - 1);
            return -1;
        }
        if (b && header_scanned(r, "openai-beta", b) < 0)
            return -1;
        if (b)
            snprintf(r->openai_beta, sizeof(r->openai_beta), "%s", b);
        return 0;
    }
    if (r->api != PROXY_API_ANTHROPIC)
        return 0;
    v = proxy_conn_header(r->conn, "anthropic-version");
    b = proxy_conn_header(r->conn, "anthropic-beta");
    if (v && *v &&
        !(strlen(v) == 10 && isdigit((unsigned char)v[0]) && isdigit((unsigned char)v[1]) &&
          isdigit((unsigned char)v[2]) && isdigit((unsigned char)v[3]) && v[4] == '-' &&
          isdigit((unsigned char)v[5]) && isdigit((unsigned char)v[6]) && v[7] == '-' &&
          isdigit((unsigned char)v[8]) && isdigit((unsigned char)v[9]))) {
        refuse(r, 400, "The anthropic-version header must be a date (YYYY-MM-DD).");
        return -1;
    }
    if (b && !token_list(b, sizeof(r->anthropic_beta) - 1, 0)) {
        refuse(r, 400,
               "The anthropic-beta header must be a comma-separated list of feature names "
               "(at most %zu bytes).",
               sizeof(r->anthropic_beta) - 1);
        return -1;
    }
    if (b && header_scanned(r, "anthropic-beta", b) < 0)
        return -1;
    snprintf(r->anthropic_version, sizeof(r->anthropic_version), "%s", v && *v ? v : "2023-06-01");
    if (b)
        snprintf(r->anthropic_beta, sizeof(r->anthropic_beta), "%s", b);
    return 0;
}

/* ---- count_tokens ---- */

/* the decision routes the count to an OpenAI-type provider (the policy's verdict allowed
 * it to leave: a blocked request has no route) */
static int counted_by_openai(const struct proxy_req *r)
{
    return r->d.prov && (r->d.prov->type == CONFIG_PROVIDER_OPENAI ||
                         r->d.prov->type == CONFIG_PROVIDER_OPENAI_COMPAT);
}

/* What only a count is refused for, once decided: a route whose provider cannot count
 * Anthropic tokens (an invented number would be worse than none), and `stream`, which the
 * count has not got (Anthropic answers 400 too). 0 when the count may go on. */
static int countable(struct proxy_req *r)
{
    if (counted_by_openai(r)) {
        refuse(r, 400,
               "Tokens cannot be counted for this request: it is routed to '%s/%s', an "
               "OpenAI-type provider, which has no Anthropic token counting.",
               r->d.prov->name, r->d.model ? r->d.model->name : "?");
        return -1;
    }
    if (r->d.stream) {
        refuse(r, 400, "'stream' is not a parameter of /v1/messages/count_tokens.");
        return -1;
    }
    return 0;
}

/* ---- authentication ---- */

static const char *presented_key(const struct proxy_conn *c)
{
    const char *a = proxy_conn_header(c, "authorization");

    if (a && strncasecmp(a, "Bearer ", 7) == 0) {
        a += 7;
        while (*a == ' ')
            a++;
        return a;
    }
    return proxy_conn_header(c, "x-api-key");
}

/* returns 0 when the caller may go on (r->key set, or auth off) */
static int authenticate(struct proxy_req *r)
{
    const struct config *cfg = r->snap->cfg;
    const char *k;
    uint8_t sha[32];

    if (!cfg->auth)
        return 0;
    k = presented_key(r->conn);
    if ((!k || !*k) && r->conn->intercept) {
        /* intercepted: the key its CONNECT presented in Proxy-Authorization (forward.c) */
        r->key = proxy_forward_key(r->conn, cfg);
        if (r->key)
            return 0;
        refuse(r, 407,
               "No airlock key was presented: send it as the API key ('Authorization: Bearer "
               "KEY' or 'x-api-key: KEY') or as the proxy password (Proxy-Authorization: "
               "Basic).");
        return -1;
    }
    if (!k || !*k) {
        refuse(r, 401,
               "No API key was presented: send 'Authorization: Bearer KEY' or "
               "'x-api-key: KEY' with a key issued by this gateway.");
        return -1;
    }
    crypto_hash_sha256(sha, (const unsigned char *)k, strlen(k));
    r->key = config_key_find_sha256(cfg, sha);
    /* intercepted: an SDK that must send some key (a provider's, a placeholder) while the
     * proxy password names the caller; the header's value is never forwarded */
    if (!r->key && r->conn->intercept)
        r->key = proxy_forward_key(r->conn, cfg);
    if (!r->key) {
        refuse(r, 401, "The API key is not known to this gateway.");
        return -1;
    }
    return 0;
}

/* an over-budget key or team: 429 before anything leaves */
static int over_budget(struct proxy_req *r)
{
    const struct config *cfg = r->snap->cfg;
    const struct config_team *t;
    double spent;

    if (!r->key)
        return 0;
    if (r->key->budget_usd_per_day >= 0 &&
        (spent = proxy_spend_get(r->px, "k", r->key->name)) >= r->key->budget_usd_per_day) {
        refuse(r, 429, "The daily budget of key '%s' ($%.2f) is spent ($%.4f).", r->key->name,
               r->key->budget_usd_per_day, spent);
        return 1;
    }
    t = config_team_find(cfg, r->key->team);
    if (t && t->budget_usd_per_day >= 0 &&
        (spent = proxy_spend_get(r->px, "t", t->name)) >= t->budget_usd_per_day) {
        refuse(r, 429, "The daily budget of team '%s' ($%.2f) is spent ($%.4f).", t->name,
               t->budget_usd_per_day, spent);
        return 1;
    }
    return 0;
}

/* ---- the API request ---- */

static char *request_meta(struct proxy_req *r, size_t *len)
{
    struct jbuf m;
    size_t i;

    jbuf_init(&m);
    meta_common(&m, r);
    jbuf_key(&m, "client");
    jbuf_str(&m, r->peer);
    jbuf_key(&m, "api");
    jbuf_str(&m, r->api == PROXY_API_ANTHROPIC ? "anthropic" : "openai");
    jbuf_key(&m, "endpoint");
    jbuf_str(&m, r->endpoint);
    jbuf_key(&m, "model");
    jbuf_str(&m, r->d.model_name ? r->d.model_name : "");
    jbuf_key(&m, "stream");
    jbuf_bool(&m, r->d.stream);
    jbuf_key(&m, "verdict");
    jbuf_str(&m, proxy_decision_verdict(&r->d));
    jbuf_key(&m, "rule");
    jbuf_str(&m, r->d.has_policy && r->d.policy.rule ? r->d.policy.rule : "");
    jbuf_key(&m, "provider");
    jbuf_str(&m, r->d.prov ? r->d.prov->name : NULL);
    jbuf_key(&m, "route_model");
    jbuf_str(&m, r->d.model ? r->d.model->name : NULL);
    jbuf_key(&m, "upstream_model");
    jbuf_str(&m, r->d.model ? r->d.model->upstream_model : NULL);
    if (r->d.modified) { /* what x-airlock-modified says (decide.h) */
        jbuf_key(&m, "modified");
        jbuf_str(&m, r->d.modified);
    }
    if (r->d.has_policy && r->d.policy.unscanned) {
        jbuf_key(&m, "unscanned"); /* content the detectors could not read */
        jbuf_open(&m, '[');
        jbuf_str(&m, "image");
        jbuf_close(&m, ']');
    }
    jbuf_key(&m, "findings");
    jbuf_open(&m, '[');
    for (i = 0; r->d.has_policy && i < r->d.policy.n_findings; i++) {
        jbuf_open(&m, '{');
        jbuf_key(&m, "detector");
        jbuf_str(&m, r->d.policy.findings[i].detector);
        jbuf_key(&m, "message");
        jbuf_i64(&m, r->d.policy.findings[i].message);
        jbuf_key(&m, "start");
        jbuf_u64(&m, (uint64_t)r->d.policy.findings[i].start);
        jbuf_key(&m, "end");
        jbuf_u64(&m, (uint64_t)r->d.policy.findings[i].end);
        jbuf_close(&m, '}');
    }
    jbuf_close(&m, ']');
    jbuf_close(&m, '}');
    return jbuf_finish(&m, len);
}

/* Write the request record and continue in audit_request_done_loop once it is
 * durable; answer 503 at once if the log is failed (fail closed). */
static void audit_request_then_dispatch(struct proxy_req *r)
{
    struct proxy *px = r->px;
    struct audit_blob blobs[2];
    size_t n = 0, meta_len = 0;
    char *meta;
    int rc;

    if (!px->audit) {
        dispatch(r);
        return;
    }
    proxy_req_advance(r, REQ_RECORDING);
    meta = request_meta(r, &meta_len);
    blobs[n].name = "inbound";
    blobs[n].data = r->body;
    blobs[n].len = r->body_len;
    n++;
    if (r->d.outbound) {
        blobs[n].name = "outbound";
        blobs[n].data = r->d.outbound;
        blobs[n].len = r->d.outbound_len;
        n++;
    }
    proxy_req_ref(r);
    rc = meta ? audit_append_ex(px->audit, AUDIT_REC_REQUEST, meta, meta_len, blobs, n, 0,
                                audit_request_done, r)
              : -1;
    free(meta);
    if (rc == 1) { /* sync: none: written is all it asks */
        proxy_req_unref(r);
        dispatch(r);
        return;
    }
    if (rc < 0) {
        proxy_req_unref(r);
        if (r->snap->cfg->audit.on_failure == CONFIG_ON_FAILURE_REFUSE) {
            proxy_req_error(r, 503, NULL,
                            "The audit log cannot be written, so the request was not sent "
                            "(fail closed).");
            return;
        }
        log_warn("request %s: audit unavailable, continuing (on_failure: allow)", r->id);
        dispatch(r);
        return;
    }
}

static void audit_request_done(void *ud, int status)
{
    struct proxy_req *r = ud;

    proxy_mailbox_send(r->px->mbox, &r->mail_request_rec, audit_request_done_loop, r, status);
}

static void audit_request_done_loop(void *arg, int status, const char *data, size_t len)
{
    struct proxy_req *r = arg;

    (void)data;
    (void)len;
    if (status < 0 && r->snap->cfg->audit.on_failure == CONFIG_ON_FAILURE_REFUSE) {
        if (r->conn && r->state < REQ_ANSWERING)
            proxy_req_error(r, 503, NULL,
                            "The audit log cannot be written, so the request was not sent "
                            "(fail closed).");
        else
            proxy_req_finish(r);
    } else if (r->conn) {
        dispatch(r);
    } else {
        proxy_req_abandoned(r);
        proxy_req_finish(r);
    }
    proxy_req_unref(r); /* the audit's reference */
}

static void dispatch(struct proxy_req *r)
{
    if (!r->conn) {
        proxy_req_abandoned(r);
        proxy_req_finish(r);
        return;
    }
    proxy_req_advance(r, REQ_DISPATCHED);
    r->dispatched = 1;
    if (r->d.prov->type == CONFIG_PROVIDER_BUILTIN && r->count_tokens)
        count_engine(r);
    else if (r->d.prov->type == CONFIG_PROVIDER_BUILTIN)
        dispatch_engine(r);
    else
        proxy_upstream_send(r);
}

/* engine_prompt -- the engine's messages for the request: the canonical chat of its one
 * parse (its format's read_request; the body as received, which stays local). *msgs is
 * malloc'd and borrows the chat's texts. -1 when the request was answered with an error
 * (the local model is not loaded, non-text content, out of memory). */
static int engine_prompt(struct proxy_req *r, struct proxy_chat *chat, struct engine_msg **msgs)
{
    char eerr[256] = "";

    *msgs = NULL;
    if (!r->snap->engines || !r->snap->engines[r->d.prov_index]) {
        proxy_req_error(r, 503, NULL,
                        "The local model '%s' is not loaded, so local answers are unavailable.",
                        r->d.model->name);
        return -1;
    }
    r->json = json_to_cjson(&r->d.doc, r->d.doc.root);
    if (!r->json) {
        proxy_req_error(r, 500, NULL, "Out of memory while preparing the local model's prompt.");
        return -1;
    }
    if (r->wire->read_request(r->json, chat, eerr, sizeof(eerr)) < 0) {
        if (r->wire == &proxy_wire_openai_completions) /* (its own sentence) */
            proxy_req_error(r, 400, NULL, "The local model '%s' cannot take this request: %s",
                            r->d.model->name, eerr);
        else if (r->wire == &proxy_wire_openai_responses) /* (its own sentences) */
            proxy_req_error(r, 400, NULL, "The local model '%s' cannot take this request. %s",
                            r->d.model->name, eerr);
        else
            proxy_req_error(r, 400, NULL,
                            "The local model '%s' reads text only; this request has tool calls, "
                            "images or other non-text content, so it was not answered.",
                            r->d.model->name);
        return -1;
    }
    *msgs = calloc(chat->n ? chat->n : 1, sizeof(**msgs));
    if (!*msgs) {
        proxy_req_error(r, 500, NULL, "Out of memory while preparing the local model's prompt.");
        return -1;
    }
    for (size_t i = 0; i < chat->n; i++) {
        (*msgs)[i].role = chat->msgs[i].role;
        (*msgs)[i].content = chat->msgs[i].text;
    }
    return 0;
}

/* submit_refused -- the engine refused a job at submit (engine_submit_ex, engine_count_submit;
 * no callback will come): drop the reference taken for it and answer. `verb`: "take" or
 * "count", for the 500's sentence. */
static void submit_refused(struct proxy_req *r, int rc, const char *eerr, const char *verb)
{
    proxy_req_unref(r);
    r->job = NULL;
    if (rc == ENGINE_EBUSY)
        proxy_req_error(r, 429, NULL, "The local model's queue is full; retry shortly.");
    else if (rc == ENGINE_EINVAL)
        proxy_req_error(r, 400, NULL, "The local model cannot take this request: %s",
                        eerr[0] ? eerr : "invalid request");
    else
        proxy_req_error(r, 500, NULL, "The local model could not %s the request (%d).", verb, rc);
}

/* local_max_tokens -- how long a local answer may be: what the client asked for
 * (proxy_wire_limit's reading: < 0 none named, 0 an invalid limit), lowered to the provider's
 * max_tokens when it sets one. Nothing at all runs to the end of the model or of its context
 * (engine: 0), as the providers' APIs do when a request names no limit. -1: the limit is
 * invalid (the engine's 0 would mean no limit). */
static int local_max_tokens(const struct config_provider *prov, double asked)
{
    int cap = prov->max_tokens;

    if (asked < 0)
        return cap;
    if (asked < 1)
        return -1;
    if (asked >= (double)INT_MAX) /* (a huge number: the cap or the context ends it) */
        return cap > 0 ? cap : INT_MAX;
    return cap > 0 && (int)asked > cap ? cap : (int)asked;
}

/* The built-in engine answers the canonical chat of the request (engine_prompt), with the
 * client's sampling options. */
static void dispatch_engine(struct proxy_req *r)
{
    struct engine_server *srv = r->snap->engines ? r->snap->engines[r->d.prov_index] : NULL;
    struct engine_callbacks cb = {on_engine_text, on_engine_done, on_engine_ready};
    struct engine_msg *msgs = NULL;
    struct engine_params p;
    struct proxy_chat chat;
    char eerr[256] = "";
    int rc;

    proxy_chat_init(&chat);
    if (engine_prompt(r, &chat, &msgs) < 0)
        goto done;
    memset(&p, 0, sizeof(p));
    p.max_tokens = local_max_tokens(&r->snap->cfg->providers[r->d.prov_index], chat.max_tokens);
    if (p.max_tokens < 0) {
        proxy_req_error(r, 400, NULL, "max_tokens must be a whole number of at least 1.");
        goto done;
    }
    p.temperature = chat.temperature >= 0 ? (float)chat.temperature : 0.0f;
    p.top_p = chat.top_p >= 0 ? (float)chat.top_p : 1.0f;
    p.top_k = chat.top_k >= 0 ? (int)chat.top_k : 0;
    p.seed = chat.seed >= 0 ? (uint64_t)chat.seed : 0x5eed;
    p.stop = chat.n_stop ? chat.stop : NULL;
    p.n_stop = chat.n_stop;
    proxy_req_ref(r);
    /* a completion's prompt is raw text: the model continues it, no chat template. The
     * engine copies the prompt and returns: formatting and tokenizing it (a 4 MB prompt takes
     * hundreds of milliseconds) happen on its prep thread, and what they refuse (context,
     * template) comes back through on_engine_done (proxy_answer_engine_done answers it) */
    rc = engine_submit_ex(srv, msgs, chat.n,
                          r->wire == &proxy_wire_openai_completions ? chat.msgs[0].text : NULL, &p,
                          &cb, r, &r->job, eerr, sizeof(eerr));
    if (rc != ENGINE_OK)
        submit_refused(r, rc, eerr, "take");
done:
    free(msgs);
    proxy_chat_deinit(&chat);
}

/* count_answer -- the answer to a count once the engine has counted (res), on the loop */
static void count_answer(struct proxy_req *r, const struct engine_result *res)
{
    char body[64];
    int n;

    if (r->state >= REQ_LOGGED)
        return;
    if (res->status == ENGINE_ECANCELED && !r->conn) {
        proxy_req_abandoned(r);
        proxy_req_finish(r);
        return;
    }
    if (res->status == ENGINE_ETEMPLATE)
        proxy_req_error(r, 500, NULL, "The local model cannot format a chat: %s",
                        res->error[0] ? res->error : "no chat template this gateway knows");
    else if (res->status == ENGINE_EINVAL)
        proxy_req_error(r, 400, NULL, "The local model cannot take this request: %s",
                        res->error[0] ? res->error : "invalid request");
    else if (res->status != ENGINE_OK)
        proxy_req_error(r, 500, NULL, "The local model could not count the request: %s",
                        res->error[0] ? res->error : "unknown error");
    if (res->status != ENGINE_OK)
        return;
    n = snprintf(body, sizeof(body), "{\"input_tokens\":%d}", res->prompt_tokens);
    proxy_conn_reply(r, 200, "application/json", body, (size_t)n);
    proxy_req_finish(r);
}

/* A count kept local: the tokens of the prompt the engine would run for this request (its
 * chat template applied), without running it. The template and tokenizer run on the
 * engine's prep thread (engine_count_submit), never here on the loop; the request is
 * referenced until the count comes back through on_engine_done (count_answer). Nothing is
 * generated, so no usage is recorded and nothing is charged. */
static void count_engine(struct proxy_req *r)
{
    struct engine_server *srv = r->snap->engines ? r->snap->engines[r->d.prov_index] : NULL;
    struct engine_callbacks cb = {NULL, on_engine_done, NULL};
    struct engine_msg *msgs = NULL;
    struct proxy_chat chat;
    char eerr[256] = "";
    int rc;

    proxy_chat_init(&chat);
    if (engine_prompt(r, &chat, &msgs) < 0)
        goto done;
    proxy_req_ref(r);
    rc = engine_count_submit(srv, msgs, chat.n, &cb, r, &r->job, eerr, sizeof(eerr));
    if (rc != ENGINE_OK)
        submit_refused(r, rc, eerr, "count");
done:
    free(msgs);
    proxy_chat_deinit(&chat);
}

/* on the engine's prep thread: the prompt is accepted, so a stream's head goes out now
 * rather than with the first piece (which waits for the queue and the prefill). Through a
 * node of the request's own (on_ready comes at most once per job), so it cannot be lost;
 * the mailbox keeps order, so it runs before any piece or the end. */
static void on_engine_ready(void *ud, int prompt_tokens)
{
    struct proxy_req *r = ud;

    (void)prompt_tokens;
    if (r->d.stream)
        proxy_mailbox_send(r->px->mbox, &r->mail_engine_ready, engine_ready_loop, r, 0);
}

static void engine_ready_loop(void *arg, int status, const char *data, size_t len)
{
    struct proxy_req *r = arg;

    (void)status;
    (void)data;
    (void)len;
    if (r->state >= REQ_LOGGED)
        return;
    /* (even when the worker has already lost a piece: the head was due before it, and the
     * loss, which follows in the mailbox, ends the stream with its error event) */
    proxy_answer_engine_start(r);
}

/* on a worker thread: the first piece that cannot be posted stops the relaying of
 * this answer (a later piece must not follow a hole) and reports through a node of
 * the request's own, which cannot fail */
static void on_engine_text(void *ud, const char *text, size_t len)
{
    struct proxy_req *r = ud;

    if (atomic_load(&r->engine_lost))
        return;
    if (proxy_mailbox_post(r->px->mbox, engine_text_loop, r, 0, text, len) == 0)
        return;
    if (atomic_exchange(&r->engine_lost, 1) == 0)
        proxy_mailbox_send(r->px->mbox, &r->mail_engine_lost, engine_lost_loop, r, 0);
}

static void engine_text_loop(void *arg, int status, const char *data, size_t len)
{
    struct proxy_req *r = arg;

    (void)status;
    if (atomic_load(&r->engine_lost))
        return; /* nothing may follow a hole */
    if (proxy_answer_engine_text(r, data, len) < 0) {
        atomic_store(&r->engine_lost, 1); /* the worker stops posting */
        engine_lost_loop(r, 0, NULL, 0);
    }
}

/* A piece of the answer could not be handed to the loop (or relayed by it), so what the
 * client would get has a hole: end the request with an error now and stop the job (its
 * end still comes through engine_done_loop, which finds the request finished). */
static void engine_lost_loop(void *arg, int status, const char *data, size_t len)
{
    struct proxy_req *r = arg;

    (void)status;
    (void)data;
    (void)len;
    if (r->job)
        engine_job_cancel(r->job);
    if (r->state >= REQ_LOGGED)
        return;
    log_error("request %s: a piece of the local model's answer was lost (out of memory)", r->id);
    proxy_req_error(r, 500, NULL,
                    "The gateway ran out of memory while relaying the local model's answer, so "
                    "the answer was cut short.");
}

/* on a worker thread, once per job and last: the result goes in the request (the
 * mailbox's lock orders it before the loop reads it) */
static void on_engine_done(void *ud, const struct engine_result *res)
{
    struct proxy_req *r = ud;

    r->engine_res = *res;
    r->engine_res.finish_reason = NULL; /* the job's static strings, but keep it plain */
    if (res->finish_reason)
        r->engine_res.finish_reason = strcmp(res->finish_reason, "length") == 0 ? "length" : "stop";
    proxy_mailbox_send(r->px->mbox, &r->mail_engine_done, engine_done_loop, r, 0);
}

static void engine_done_loop(void *arg, int status, const char *data, size_t len)
{
    struct proxy_req *r = arg;

    (void)status;
    (void)data;
    (void)len;
    if (r->count_tokens)
        count_answer(r, &r->engine_res);
    else
        proxy_answer_engine_done(r, &r->engine_res);
    proxy_req_unref(r); /* the engine's reference */
}

void proxy_req_finish(struct proxy_req *r)
{
    struct proxy *px = r->px;
    char route[256];
    int appended = 0, rc;

    assert(!r->deciding && "r->d is the decider's until decided_loop");
    if (r->state >= REQ_LOGGED)
        return;
    proxy_req_advance(r, REQ_LOGGED);
    /* A provider that answered 2xx, or got the whole request and has not answered yet, bills
     * what it read and what it wrote even when its usage never comes (the client left before
     * the last event or before the head, the stream broke, the answer timed out): the budget
     * is charged an estimate, a token for every 4 bytes of the body that left and of the
     * answer the client got, marked "estimated" (red team: a client that dropped each stream
     * before its usage event, or each request before its answer, spent nothing). */
    if (r->d.model && !r->usage.seen && !r->count_tokens && r->d.outbound_len > 0 &&
        ((r->up_status >= 200 && r->up_status < 300) || (r->up_status == 0 && r->up_written))) {
        size_t out = r->client_bytes ? evbuffer_get_length(r->client_bytes) : 0;
        r->usage.input = (long)((r->d.outbound_len + 3) / 4);
        r->usage.output = (long)((out + 3) / 4);
        r->usage.seen = r->usage.estimated = 1;
    }
    if (r->d.model && r->usage.seen && r->cost == 0)
        r->cost = proxy_cost(r->d.model, &r->usage);
    if (r->key && r->cost > 0)
        proxy_spend_add(px, r->key, r->cost);
    px->metrics.tokens_in += (uint64_t)r->usage.input;
    px->metrics.tokens_out += (uint64_t)r->usage.output;
    px->metrics.tokens_cached += (uint64_t)r->usage.cached;
    px->metrics.cost_usd += r->cost;
    if (r->api != PROXY_API_NONE && px->audit) {
        size_t meta_len = 0;
        char *meta;
        struct audit_blob blobs[2];
        size_t n = 0;

        /* The end of the answer waits only until the record is written
         * (AUDIT_WRITTEN), which audit_append_ex does before it returns (1): a crash
         * of the process then cannot lose the record of an answer the client got,
         * without making every answer wait for a second fdatasync. With sync: always,
         * or while the log is failed, it waits for the syncer (0). */
        blobs[n].name = "upstream";
        blobs[n].len = evbuffer_get_length(r->up_bytes);
        blobs[n].data =
            blobs[n].len ? (const void *)evbuffer_pullup(r->up_bytes, -1) : (const void *)"";
        if (blobs[n].len && blobs[n].data) /* a provider key never reaches the audit either */
            proxy_mask_provider_keys(r->snap->cfg, (char *)blobs[n].data, blobs[n].len);
        n++;
        blobs[n].name = "client";
        blobs[n].len = evbuffer_get_length(r->client_bytes);
        blobs[n].data =
            blobs[n].len ? (const void *)evbuffer_pullup(r->client_bytes, -1) : (const void *)"";
        n++;
        if (!blobs[0].data || !blobs[1].data) {
            /* no memory to make a copy whole: the record says so instead of holding part */
            blobs[0].data = blobs[1].data = "";
            blobs[0].len = blobs[1].len = 0;
            r->copy_lost = 1;
            snprintf(r->error, sizeof(r->error),
                     "the audit's copies of the answer could not be assembled (out of memory)");
        }
        meta = response_meta(r, &meta_len);
        r->record = 0;
        proxy_req_ref(r);
        rc = meta ? audit_append_ex(px->audit, AUDIT_REC_RESPONSE, meta, meta_len, blobs, n,
                                    AUDIT_WRITTEN, response_durable, r)
                  : -1;
        if (rc != 0)
            proxy_req_unref(r); /* no callback will come */
        if (rc < 0)
            log_error("request %s: the response record could not be written to the audit log",
                      r->id);
        else if (rc == 0)
            appended = 1; /* req_complete when the syncer reports back */
        free(meta);
    }
    if (r->d.prov && r->d.model)
        snprintf(route, sizeof(route), "%s/%s", r->d.prov->name, r->d.model->name);
    else
        snprintf(route, sizeof(route), "none");
    if (r->api != PROXY_API_NONE || r->status != 200)
        proxy_metrics_request(&px->metrics, r->endpoint[0] ? r->endpoint : "none", route,
                              proxy_decision_verdict(&r->d), r->status, proxy_req_elapsed(r));
    if (!appended)
        req_complete(r);
}

/* ---- finishing ---- */

/* the fields every audit record's metadata starts with (written by hand: a cJSON
 * tree per record cost more than the rest of the audit's work on the loop) */
static void meta_common(struct jbuf *m, const struct proxy_req *r)
{
    char ts[96];

    iso_time(ts, sizeof(ts));
    jbuf_open(m, '{');
    jbuf_key(m, "id");
    jbuf_str(m, r->id);
    jbuf_key(m, "time");
    jbuf_str(m, ts);
    jbuf_key(m, "key");
    jbuf_str(m, r->key ? r->key->name : NULL);
    jbuf_key(m, "team");
    jbuf_str(m, r->key ? r->key->team : NULL);
}

static char *response_meta(struct proxy_req *r, size_t *len)
{
    struct jbuf m;

    jbuf_init(&m);
    meta_common(&m, r);
    jbuf_key(&m, "provider");
    jbuf_str(&m, r->d.prov ? r->d.prov->name : NULL);
    jbuf_key(&m, "model");
    jbuf_str(&m, r->d.model ? r->d.model->name : NULL);
    jbuf_key(&m, "status");
    jbuf_i64(&m, r->status);
    jbuf_key(&m, "usage");
    jbuf_open(&m, '{');
    jbuf_key(&m, "input_tokens");
    jbuf_i64(&m, (int64_t)r->usage.input);
    jbuf_key(&m, "output_tokens");
    jbuf_i64(&m, (int64_t)r->usage.output);
    jbuf_key(&m, "cached_input_tokens");
    jbuf_i64(&m, (int64_t)r->usage.cached);
    if (r->usage.cache_write) {
        jbuf_key(&m, "cache_creation_input_tokens");
        jbuf_i64(&m, (int64_t)r->usage.cache_write);
    }
    if (r->usage.estimated) {
        jbuf_key(&m, "estimated");
        jbuf_bool(&m, 1);
    }
    jbuf_close(&m, '}');
    jbuf_key(&m, "cost_usd");
    jbuf_num(&m, r->cost);
    jbuf_key(&m, "timings");
    jbuf_open(&m, '{');
    jbuf_key(&m, "total_ms");
    jbuf_fixed(&m, proxy_req_elapsed(r) * 1000.0, 3);
    if (r->t_first_byte >= 0) {
        jbuf_key(&m, "upstream_first_byte_ms");
        jbuf_fixed(&m, (r->t_first_byte - r->t_upstream_start) * 1000.0, 3);
    }
    jbuf_close(&m, '}');
    if (r->error[0]) {
        jbuf_key(&m, "error");
        jbuf_str(&m, r->error);
    }
    if (r->copy_lost) { /* the payloads are not the whole exchange: say so, never silently */
        jbuf_key(&m, "payload_incomplete");
        jbuf_bool(&m, 1);
    }
    jbuf_close(&m, '}');
    return jbuf_finish(&m, len);
}

static void response_durable(void *ud, int status)
{
    struct proxy_req *r = ud;

    proxy_mailbox_send(r->px->mbox, &r->mail_response_rec, response_durable_loop, r, status);
}

static void response_durable_loop(void *arg, int status, const char *data, size_t len)
{
    struct proxy_req *r = arg;

    (void)data;
    (void)len;
    if (status < 0)
        log_error("request %s: the response record could not be written to the audit log", r->id);
    req_complete(r);
    proxy_req_unref(r); /* the audit's reference */
}

/* the answer's record is durable (or there is none): let the client have the
 * end of its answer and go on with the connection's next request */
static void req_complete(struct proxy_req *r)
{
    struct proxy_conn *c = r->conn;

    proxy_conn_flush_held(r);
    if (c) {
        c->req = NULL;
        r->conn = NULL;
        proxy_conn_request_done(c);
        proxy_req_unref(r); /* the connection's reference */
    }
}

void proxy_req_client_gone(struct proxy_req *r)
{
    if (r->up)
        proxy_upstream_abort(r);
    if (r->job)
        engine_job_cancel(r->job);
    if (r->state < REQ_ANSWERED && !r->error[0])
        snprintf(r->error, sizeof(r->error), "the client closed the connection");
    /* the response record is written when the abandoned work reports back, or now
     * if nothing is pending */
    if (!r->up && !r->job && !r->deciding && r->refs <= 1 && r->state < REQ_LOGGED) {
        proxy_req_abandoned(r);
        proxy_req_finish(r);
    }
}

void proxy_req_error(struct proxy_req *r, int status, const char *type, const char *fmt, ...)
{
    char msg[512];
    char *body = NULL;
    size_t len = 0;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    utf8_sanitize(msg); /* a provider's message cut by a bounded copy stays valid UTF-8 */
    snprintf(r->error, sizeof(r->error), "%s", msg);
    if (r->state >= REQ_ANSWERING) {
        stream_error(r, status, msg);
        proxy_req_finish(r);
        return;
    }
    body = r->wire->error_body(status, type ? type : r->wire->error_type(status), msg, &len);
    proxy_conn_reply(r, status, "application/json", body ? body : "", len);
    free(body);
    proxy_req_finish(r);
}

void proxy_req_stream_error(struct proxy_req *r, const char *message)
{
    char msg[512];

    snprintf(msg, sizeof(msg), "%s", message);
    utf8_sanitize(msg);
    message = msg;
    stream_error(r, 502, message);
}

/* the error event carries the status the same failure gets before a stream starts
 * (500 for the gateway's or the local model's failure, 502 for a provider's) */
static void stream_error(struct proxy_req *r, int status, const char *message)
{
    char *body, *ev;
    size_t len = 0, n = 0;

    if (r->state >= REQ_ANSWERED)
        return;
    if (r->wire->stream_fail) {
        r->wire->stream_fail(r, status, message);
        r->stream_state = PROXY_STREAM_FAILED;
        proxy_conn_stream_end(r);
        return;
    }
    r->stream_state = PROXY_STREAM_FAILED;
    body = r->wire->error_body(status, r->wire->error_type(status), message, &len);
    ev = body ? r->wire->error_event(body, &n) : NULL;
    if (ev)
        proxy_conn_stream_write_final(r, ev, n);
    proxy_conn_stream_end(r);
    free(ev);
    free(body);
}

static void handle_models(struct proxy_req *r)
{
    const struct config *cfg = r->snap->cfg;
    cJSON *root = cJSON_CreateObject(), *data;
    char *s;
    size_t i;

    cJSON_AddStringToObject(root, "object", "list");
    data = cJSON_AddArrayToObject(root, "data");
    for (i = 0; i < cfg->n_models; i++) {
        const struct config_model *m = &cfg->models[i];
        cJSON *o;

        if (!model_allowed(r, m))
            continue;
        o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "id", m->name);
        cJSON_AddStringToObject(o, "object", "model");
        cJSON_AddNumberToObject(o, "created", 0);
        cJSON_AddStringToObject(o, "owned_by", m->provider);
        cJSON_AddItemToArray(data, o);
    }
    s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    proxy_conn_reply(r, 200, "application/json", s ? s : "{}", s ? strlen(s) : 2);
    free(s);
    proxy_req_finish(r);
}

/* ---- /v1/models ---- */

static int model_allowed(struct proxy_req *r, const struct config_model *m)
{
    struct policy_input in;
    struct policy_decision d;
    char body[512];
    int ok;

    snprintf(body, sizeof(body), "{\"model\":\"x\",\"messages\":[]}");
    memset(&in, 0, sizeof(in));
    in.api = POLICY_API_OPENAI;
    in.body = body;
    in.len = strlen(body);
    in.model = m->name;
    in.key_name = r->key ? r->key->name : NULL;
    in.team = r->key ? r->key->team : NULL;
    if (policy_decide(r->snap->policy, &in, &d) < 0) {
        policy_decision_deinit(&d);
        return 0;
    }
    ok = d.verdict != POLICY_BLOCK;
    policy_decision_deinit(&d);
    return ok;
}

struct proxy_req *proxy_req_new(struct proxy_conn *c)
{
    struct proxy_req *r = calloc(1, sizeof(*r));
    unsigned char rnd[16];
    size_t len;

    if (!r)
        return NULL;
    r->px = c->px;
    r->conn = c;
    r->refs = 1;
    r->snap = c->px->snap;
    r->snap->refs++;
    r->api = PROXY_API_NONE;
    r->wire = &proxy_wire_openai_chat; /* errors before routing use OpenAI's shape */
    r->t_upstream_start = r->t_first_byte = -1;
    clock_gettime(CLOCK_MONOTONIC, &r->t0);
    rand_bytes(rnd, sizeof(rnd)); /* (a pool: not a system call per request) */
    sodium_bin2hex(r->id, sizeof(r->id), rnd, sizeof(rnd));
    snprintf(r->peer, sizeof(r->peer), "%s", c->peer);
    r->up_bytes = evbuffer_new();
    r->client_bytes = evbuffer_new();
    r->held = evbuffer_new();
    r->record = c->px->audit != NULL;
    r->hold = r->record ? PROXY_HOLD_ARMED : PROXY_HOLD_OFF;
    len = evbuffer_get_length(c->body);
    r->body = malloc(len + 1);
    if (!r->up_bytes || !r->client_bytes || !r->held || !r->body) {
        proxy_req_unref(r);
        return NULL;
    }
    evbuffer_copyout(c->body, r->body, len);
    wipe_evbuffer(c->body); /* the connection's copy of the prompt */
    r->body[len] = '\0';
    r->body_len = len;
    c->px->metrics.bytes_in += len;
    c->px->n_reqs++;
    return r;
}

void proxy_req_ref(struct proxy_req *r)
{
    r->refs++;
}

void proxy_req_unref(struct proxy_req *r)
{
    struct proxy *px;

    if (--r->refs > 0)
        return;
    px = r->px;
    if (r->job)
        engine_job_release(r->job);
    /* everything that held prompt or answer text is wiped as it is freed */
    proxy_decision_deinit(&r->d);
    wipe_cjson_delete(r->json);
    wipe_free(r->body, r->body_len);
    wipe_free(r->engine_text, r->engine_text_len);
    free(r->finish_reason);
    proxy_sse_deinit(&r->sse);
    wipe_evbuffer_free(r->up_bytes);
    wipe_evbuffer_free(r->client_bytes);
    wipe_evbuffer_free(r->held);
    if (r->snap)
        proxy_snap_unref(r->snap);
    free(r);
    px->n_reqs--;
    if (px->draining && px->n_reqs == 0 && px->n_conns == 0)
        event_base_loopexit(px->base, NULL);
}

void proxy_req_advance(struct proxy_req *r, enum proxy_req_state to)
{
    assert(to >= r->state && "a request's lifecycle only moves forward");
    r->state = to;
}

void proxy_req_answer_status(struct proxy_req *r, int status)
{
    assert(r->state < REQ_ANSWERED && "the status is set before the answer is done");
    r->status = status;
}

void proxy_req_abandoned(struct proxy_req *r)
{
    if (!r->status)
        r->status = 499; /* nginx's "client closed request": nothing was answered */
}

double proxy_req_elapsed(const struct proxy_req *r)
{
    return now_s() - ((double)r->t0.tv_sec + (double)r->t0.tv_nsec / 1e9);
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* iso_time -- "YYYY-MM-DDTHH:MM:SS.mmmZ" (UTC), 24 bytes and a NUL; by hand, as it
 * is written into every audit record */
static void iso_time(char *buf, size_t cap)
{
    struct timespec ts;
    struct tm tm;

    if (cap < 25) {
        if (cap)
            buf[0] = '\0';
        return;
    }
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    put_digits(buf, (unsigned)(tm.tm_year + 1900) % 10000, 4);
    buf[4] = '-';
    put_digits(buf + 5, (unsigned)tm.tm_mon + 1, 2);
    buf[7] = '-';
    put_digits(buf + 8, (unsigned)tm.tm_mday, 2);
    buf[10] = 'T';
    put_digits(buf + 11, (unsigned)tm.tm_hour, 2);
    buf[13] = ':';
    put_digits(buf + 14, (unsigned)tm.tm_min, 2);
    buf[16] = ':';
    put_digits(buf + 17, (unsigned)tm.tm_sec, 2);
    buf[19] = '.';
    put_digits(buf + 20, (unsigned)(ts.tv_nsec / 1000000) % 1000, 3);
    buf[23] = 'Z';
    buf[24] = '\0';
}

static void put_digits(char *p, unsigned v, int n)
{
    while (n-- > 0) {
        p[n] = (char)('0' + v % 10);
        v /= 10;
    }
}

/* ---- errors ---- */
