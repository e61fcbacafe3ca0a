/* server.c -- the serving layer: two threads per server. The prep thread formats each job's
 * prompt (chat template) and tokenizes it, so that the submitting thread (the gateway's event
 * loop) never does: a 4 MB prompt takes a few hundred milliseconds to tokenize. The decode
 * worker runs continuous batching (new jobs are prefilled in chunks between decode steps, then
 * decoded together with the others in one pass over the weights), with per-job KV caches,
 * cancellation and reference-counted jobs. Logits are checked before each sample: a job whose
 * logits hold a NaN or an infinity (corrupt weights) ends with an error, not with garbage.
 *
 * A job's life: submit (copies the prompt, queues for prep) -> prep queue -> prep thread
 * (tokens; a refused prompt or a count ends here) -> decode queue -> active -> done. One lock
 * (server->mu) guards both queues and the counters; the admission limit counts jobs in every
 * stage. */
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "common/wipe.h"
#include "engine/engine_ext.h"
#include "engine/engine_int.h"
#include "engine/sampler.h"

#define MAX_ACTIVE 8     /* sequences decoded together */
#define PREFILL_CHUNK 64 /* prompt tokens per prefill call, between decode steps */
#define MAX_BATCH 64     /* >= MAX_ACTIVE and >= PREFILL_CHUNK */
/* The prep queue serves small prompts first: a prompt under PREP_SMALL bytes goes ahead of
 * the big ones waiting (a 4 MB prompt takes a few hundred milliseconds to tokenize; a short
 * one queued behind it would wait that long), but the first big prompt waiting is passed by
 * at most PREP_MAX_PASSED small ones, so a stream of small prompts cannot starve it. Two
 * first-in-first-out queues, small and big, make each step O(1) whatever engine_queue is. */
#define PREP_SMALL (64u << 10)
#define PREP_MAX_PASSED 32

enum job_state {
    JOB_PREP,   /* waiting for the prep thread, or being prepped (prep thread's) */
    JOB_QUEUED, /* tokenized, waiting for the decode worker */
    JOB_PREFILL,
    JOB_DECODE,
    JOB_DONE
};

struct engine_job {
    atomic_int refs;
    atomic_int cancel;
    atomic_int finished;     /* on_done has run: stats are final */
    struct engine_job *next; /* queue link, guarded by server->mu */

    /* the prompt as submitted: owned copies, wiped and freed once tokenized (prep thread) */
    struct engine_msg *msgs; /* role and content strdup'd */
    size_t n_msgs;
    char *raw;      /* a raw prompt (msgs unused), or NULL */
    size_t bytes;   /* of the prompt's text (contents or raw) */
    int count_only; /* engine_count_submit: ends after tokenizing, with prompt_tokens */

    /* set by the prep thread, then read by the worker (the queue's lock orders them) */
    int32_t *prompt; /* owned, wiped on free */
    int n_prompt;

    /* immutable after submit */
    struct engine_params params;
    char **stop; /* owned copies */
    struct engine_callbacks cb;
    void *ud;

    /* worker-only */
    enum job_state state;
    int n_done; /* prompt tokens prefilled */
    struct engine_kv *kv;
    struct sampler smp;
    struct textstream ts;
    int32_t next_tok;
    int n_gen;
    struct engine_result res;
    struct engine_job_stats st;
    double t_submit, t_start, t_first;
};

struct engine_server {
    struct engine_model *m; /* borrowed */
    pthread_t worker, prep;
    int worker_started, prep_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;  /* the worker waits on it */
    pthread_cond_t pcv; /* the prep thread waits on it */
    /* guarded by mu: */
    struct engine_job *shead, *stail; /* waiting for prep: prompts under PREP_SMALL bytes */
    struct engine_job *bhead, *btail; /* waiting for prep: the others */
    int passed;                       /* small prompts prepped while bhead waited */
    int n_prep;                       /* waiting for prep or being prepped */
    struct engine_job *qhead, *qtail; /* tokenized, waiting for the worker */
    int qlen;
    int n_running; /* admitted and not yet finished */
    int stopping;
    int queue_max;
    size_t tok_max_bytes; /* tokenizer_max_bytes of the model's vocabulary */
    /* worker-only: */
    struct engine_ctx *ctx;
    struct engine_job *active[MAX_ACTIVE];
    int n_active;
    float *logits; /* [MAX_ACTIVE][n_vocab] */
    char *piece;   /* scratch for one token's text */
    size_t piece_cap;
    int warned_nonfinite; /* the operator has been told once that the logits are not finite */
};

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* drop_prompt_text -- wipe and free the submitted prompt's copies (they are the client's
 * words; the tokens replace them) */
static void drop_prompt_text(struct engine_job *j)
{
    if (j->msgs) {
        for (size_t i = 0; i < j->n_msgs; i++) {
            free((char *)j->msgs[i].role);
            wipe_str_free((char *)j->msgs[i].content);
        }
        free(j->msgs);
        j->msgs = NULL;
    }
    j->n_msgs = 0;
    wipe_str_free(j->raw);
    j->raw = NULL;
}

static void job_free(struct engine_job *j)
{
    drop_prompt_text(j);
    if (j->stop) {
        for (size_t i = 0; i < j->params.n_stop; i++)
            free(j->stop[i]);
        free(j->stop);
    }
    wipe_free(j->prompt, j->prompt ? (size_t)j->n_prompt * sizeof(*j->prompt) : 0);
    free(j);
}

void engine_job_release(struct engine_job *job)
{
    if (job && atomic_fetch_sub(&job->refs, 1) == 1)
        job_free(job);
}

void engine_job_cancel(struct engine_job *job)
{
    if (job)
        atomic_store(&job->cancel, 1);
}

int engine_job_stats(struct engine_job *job, struct engine_job_stats *st)
{
    if (!job || !atomic_load(&job->finished))
        return -1;
    *st = job->st;
    return 0;
}

/* ---- worker side ---- */

static void emit_text(void *ud, const char *text, size_t len)
{
    struct engine_job *j = ud;
    if (len && j->cb.on_text)
        j->cb.on_text(j->ud, text, len);
}

/* finish -- report the end (flushing held-back text on a normal end) and release the
 * job's worker-side resources. The worker's reference is dropped by the caller once
 * the job has left the active list (step's compaction, or shutdown). */
static void finish(struct engine_server *s, struct engine_job *j, int status, const char *reason,
                   const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void finish(struct engine_server *s, struct engine_job *j, int status, const char *reason,
                   const char *fmt, ...)
{
    double t = now_ms();
    int started = j->state == JOB_PREFILL || j->state == JOB_DECODE;
    int in_prep = j->state == JOB_PREP;
    if (status == ENGINE_OK && started)
        textstream_finish(&j->ts);
    j->res.status = status;
    j->res.prompt_tokens = j->n_prompt;
    j->res.completion_tokens = j->n_gen;
    j->res.finish_reason = reason;
    j->res.error[0] = 0;
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(j->res.error, sizeof(j->res.error), fmt, ap);
        va_end(ap);
    }
    j->st.prompt_tokens = j->n_prompt;
    j->st.completion_tokens = j->n_gen;
    if (j->t_start == 0)
        j->st.queue_ms = t - j->t_submit;
    if (j->t_first > 0)
        j->st.decode_ms = t - j->t_first;
    if (started) {
        textstream_deinit(&j->ts);
        sampler_deinit(&j->smp);
    }
    engine_kv_free(j->kv);
    j->kv = NULL;
    j->state = JOB_DONE;
    atomic_store(&j->finished, 1);
    j->cb.on_done(j->ud, &j->res);
    pthread_mutex_lock(&s->mu);
    if (in_prep)
        s->n_prep--;
    else
        s->n_running--;
    pthread_mutex_unlock(&s->mu);
}

static int start_job(struct engine_server *s, struct engine_job *j)
{
    char why[256] = "";
    int n_vocab = s->m->w->hp.n_vocab;
    long want = (long)j->n_prompt + (j->params.max_tokens > 0 ? j->params.max_tokens : s->m->n_ctx);
    int n_ctx = want < s->m->n_ctx ? (int)want : s->m->n_ctx;
    j->t_start = now_ms();
    j->st.queue_ms = j->t_start - j->t_submit;
    if (engine_kv_new(s->m->w, n_ctx, &j->kv, why, sizeof(why)) != 0) {
        finish(s, j, ENGINE_ENOMEM, "error", "cannot allocate the KV cache: %s", why);
        return -1;
    }
    if (sampler_init(&j->smp, &j->params, n_vocab) != 0) {
        finish(s, j, ENGINE_ENOMEM, "error", "out of memory");
        return -1;
    }
    if (textstream_init(&j->ts, (const char *const *)j->stop, j->params.n_stop, emit_text, j) !=
        0) {
        sampler_deinit(&j->smp);
        finish(s, j, ENGINE_ENOMEM, "error", "out of memory");
        return -1;
    }
    j->state = JOB_PREFILL;
    return 0;
}

/* a token was sampled for j: stream it and decide whether the job goes on */
static void take_token(struct engine_server *s, struct engine_job *j, int tok)
{
    const struct tokenizer *tk = s->m->tok;
    if (j->t_first == 0)
        j->t_first = now_ms();
    if (tokenizer_is_eog(tk, tok)) {
        finish(s, j, ENGINE_OK, "stop", NULL);
        return;
    }
    j->n_gen++;
    size_t n = tokenizer_piece(tk, tok, 0, s->piece, s->piece_cap);
    if (n > s->piece_cap) {
        char *p = realloc(s->piece, n);
        if (!p) {
            finish(s, j, ENGINE_ENOMEM, "error", "out of memory");
            return;
        }
        s->piece = p;
        s->piece_cap = n;
        tokenizer_piece(tk, tok, 0, s->piece, s->piece_cap);
    }
    int r = textstream_feed(&j->ts, s->piece, n);
    if (r < 0) {
        finish(s, j, ENGINE_ENOMEM, "error", "out of memory");
        return;
    }
    if (r == 1) {
        finish(s, j, ENGINE_OK, "stop", NULL);
        return;
    }
    if (j->params.max_tokens > 0 && j->n_gen >= j->params.max_tokens) {
        finish(s, j, ENGINE_OK, "length", NULL);
        return;
    }
    if (engine_kv_len(j->kv) >= engine_kv_n_ctx(j->kv)) {
        finish(s, j, ENGINE_OK, "length", NULL);
        return;
    }
    j->next_tok = tok;
    j->state = JOB_DECODE;
}

/* logits_finite -- 1 when no element of l[0..n) is a NaN or an infinity, else 0. Compares the
 * bit patterns (exponent all ones), which stays right under -ffast-math where isfinite() may be
 * folded to 1. One pass over n_vocab floats: measured at about 30 us per sampled token for a
 * 49152-token vocabulary (SmolLM2-135M shapes, 2 threads), under 1% of a 4.5-19 ms decode step;
 * about 40 us for 151936 floats. */
static int logits_finite(const float *l, int n)
{
    uint32_t worst = 0;
    for (int i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, l + i, sizeof(u));
        u &= 0x7fffffffu;
        worst = u > worst ? u : worst;
    }
    return worst < 0x7f800000u;
}

/* sample -- j's next token from logits[n_vocab] (borrowed), then take_token. Non-finite
 * logits end j with ENGINE_EINVAL instead: argmax and the sampler would otherwise return an
 * arbitrary valid id and the client would get garbage text with a normal finish. Other
 * sequences of the same batch are unaffected (each row of the batch is its own sequence). */
static void sample(struct engine_server *s, struct engine_job *j, const float *logits)
{
    int n_vocab = s->m->w->hp.n_vocab;
    if (!logits_finite(logits, n_vocab)) {
        if (!s->warned_nonfinite) {
            s->warned_nonfinite = 1;
            log_error("engine: model %s produced non-finite logits (NaN or infinity) after %d "
                      "generated tokens of a request; its weights are likely corrupt, and every "
                      "request that meets them ends with an error (logged once)",
                      s->m->name ? s->m->name : "?", j->n_gen);
        }
        finish(s, j, ENGINE_EINVAL, "error",
               "the model produced non-finite logits (NaN or infinity): its weights are likely "
               "corrupt");
        return;
    }
    take_token(s, j, sampler_sample(&j->smp, logits));
}

static void step(struct engine_server *s)
{
    int n_vocab = s->m->w->hp.n_vocab;
    for (int i = 0; i < s->n_active; i++) {
        struct engine_job *j = s->active[i];
        if (atomic_load(&j->cancel))
            finish(s, j, ENGINE_ECANCELED, "cancelled", "the request was cancelled");
        else if (j->state == JOB_QUEUED)
            start_job(s, j);
    }
    /* one prefill chunk per new job, so a long prompt does not stall the others */
    for (int i = 0; i < s->n_active; i++) {
        struct engine_job *j = s->active[i];
        if (j->state != JOB_PREFILL)
            continue;
        int chunk = j->n_prompt - j->n_done;
        if (chunk > PREFILL_CHUNK)
            chunk = PREFILL_CHUNK;
        int last = j->n_done + chunk == j->n_prompt;
        if (engine_forward_prefill(s->ctx, j->kv, j->prompt + j->n_done, chunk,
                                   last ? s->logits : NULL) != 0) {
            finish(s, j, ENGINE_EINVAL, "error", "prefill failed: %s", engine_ctx_error(s->ctx));
            continue;
        }
        j->n_done += chunk;
        if (last) {
            j->st.prefill_ms = now_ms() - j->t_start;
            sample(s, j, s->logits);
        }
    }
    struct engine_kv *kvs[MAX_ACTIVE];
    int32_t toks[MAX_ACTIVE];
    struct engine_job *who[MAX_ACTIVE];
    int n = 0;
    for (int i = 0; i < s->n_active; i++) {
        struct engine_job *j = s->active[i];
        if (j->state != JOB_DECODE)
            continue;
        kvs[n] = j->kv;
        toks[n] = j->next_tok;
        who[n++] = j;
    }
    if (n > 0) {
        if (engine_forward_decode(s->ctx, kvs, toks, n, s->logits) != 0) {
            for (int k = 0; k < n; k++)
                finish(s, who[k], ENGINE_EINVAL, "error", "decode failed: %s",
                       engine_ctx_error(s->ctx));
        } else {
            for (int k = 0; k < n; k++)
                sample(s, who[k], s->logits + (size_t)k * n_vocab);
        }
    }
    int w = 0;
    for (int i = 0; i < s->n_active; i++) {
        if (s->active[i]->state != JOB_DONE)
            s->active[w++] = s->active[i];
        else
            engine_job_release(s->active[i]);
    }
    s->n_active = w;
}

static void *worker_main(void *arg)
{
    struct engine_server *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->stopping && s->n_active == 0 && !s->qhead)
            pthread_cond_wait(&s->cv, &s->mu);
        if (s->stopping) {
            pthread_mutex_unlock(&s->mu);
            break;
        }
        while (s->n_active < MAX_ACTIVE && s->qhead) {
            struct engine_job *j = s->qhead;
            s->qhead = j->next;
            if (!s->qhead)
                s->qtail = NULL;
            s->qlen--;
            s->n_running++;
            j->next = NULL;
            s->active[s->n_active++] = j;
        }
        pthread_mutex_unlock(&s->mu);
        step(s);
    }
    /* shutting down: everything still here is cancelled */
    for (int i = 0; i < s->n_active; i++) {
        if (s->active[i]->state != JOB_DONE)
            finish(s, s->active[i], ENGINE_ECANCELED, "cancelled", "the engine is shutting down");
        engine_job_release(s->active[i]);
    }
    s->n_active = 0;
    pthread_mutex_lock(&s->mu);
    struct engine_job *q = s->qhead;
    s->qhead = s->qtail = NULL;
    s->n_running += s->qlen;
    s->qlen = 0;
    pthread_mutex_unlock(&s->mu);
    while (q) {
        struct engine_job *next = q->next;
        finish(s, q, ENGINE_ECANCELED, "cancelled", "the engine is shutting down");
        engine_job_release(q);
        q = next;
    }
    return NULL;
}

/* ---- prep thread ---- */

static int prompt_ids(const struct engine_model *m, const struct engine_msg *msgs, size_t n_msgs,
                      const char *prompt, int32_t **ids, size_t *n_ids, char *err, size_t errlen);

/* prep_one -- j's tokens, on the prep thread (which holds the engine's reference to j): a
 * count or a refused prompt (ETEMPLATE, EINVAL, ECONTEXT, ENOMEM) ends here with on_done; a
 * prompt that can run goes to the decode queue, the reference with it. */
static void prep_one(struct engine_server *s, struct engine_job *j)
{
    char err[256] = "";
    int32_t *ids = NULL;
    size_t n_ids = 0;
    int rc;

    if (atomic_load(&j->cancel)) {
        finish(s, j, ENGINE_ECANCELED, "cancelled", "the request was cancelled");
        engine_job_release(j);
        return;
    }
    j->st.prep_ms = now_ms();
    if (!j->count_only && j->bytes / s->tok_max_bytes >= (size_t)s->m->n_ctx) {
        /* too long to run whatever its tokens: refused without tokenizing it (a count
         * still tokenizes, its answer is the number). j->bytes counts only what every
         * template keeps as it is (kept_bytes); the rest of the template only adds. */
        rc = ENGINE_ECONTEXT;
        engine_set_err(err, sizeof(err),
                       "the prompt is at least %zu tokens (%zu bytes; no token of this model "
                       "is longer than %zu) but the context holds %d (including the answer)",
                       j->bytes / s->tok_max_bytes, j->bytes, s->tok_max_bytes, s->m->n_ctx);
    } else {
        rc = prompt_ids(s->m, j->msgs, j->n_msgs, j->raw, &ids, &n_ids, err, sizeof(err));
    }
    j->st.prep_ms = now_ms() - j->st.prep_ms;
    drop_prompt_text(j);
    if (rc == 0 && n_ids > (size_t)INT_MAX) {
        rc = ENGINE_EINVAL;
        engine_set_err(err, sizeof(err), "the prompt has more tokens than can be counted");
    }
    if (rc == 0) {
        j->n_prompt = (int)n_ids;
        if (j->count_only) {
            rc = 1; /* done: a count is an answer even for a prompt too long to run */
        } else if (n_ids == 0) {
            rc = ENGINE_EINVAL;
            engine_set_err(err, sizeof(err), "the prompt is empty");
        } else if (n_ids >= (size_t)s->m->n_ctx) {
            rc = ENGINE_ECONTEXT;
            engine_set_err(err, sizeof(err),
                           "the prompt is %zu tokens but the context holds %d (including the "
                           "answer)",
                           n_ids, s->m->n_ctx);
        }
    }
    if (rc != 0) {
        wipe_free(ids, n_ids * sizeof(*ids));
        if (rc == 1) {
            finish(s, j, ENGINE_OK, NULL, NULL);
        } else {
            if (rc != ENGINE_ENOMEM)
                j->res.prompt_refused = 1;
            finish(s, j, rc, "error", "%s", err);
        }
        engine_job_release(j);
        return;
    }
    j->prompt = ids;
    if (atomic_load(&j->cancel)) { /* cancelled while it was tokenized */
        finish(s, j, ENGINE_ECANCELED, "cancelled", "the request was cancelled");
        engine_job_release(j);
        return;
    }
    if (j->cb.on_ready)
        j->cb.on_ready(j->ud, j->n_prompt);
    pthread_mutex_lock(&s->mu);
    if (s->stopping) {
        /* the worker may already have drained its queue: end it here */
        pthread_mutex_unlock(&s->mu);
        finish(s, j, ENGINE_ECANCELED, "cancelled", "the engine is shutting down");
        engine_job_release(j);
        return;
    }
    /* from n_prep to qlen in one step: the admission count stays the same */
    j->state = JOB_QUEUED;
    s->n_prep--;
    if (s->qtail)
        s->qtail->next = j;
    else
        s->qhead = j;
    s->qtail = j;
    s->qlen++;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* prep_queue_take -- the next job to prep (s->mu held, a queue not empty): the first small
 * one, unless the first big one has been passed PREP_MAX_PASSED times */
static struct engine_job *prep_queue_take(struct engine_server *s)
{
    struct engine_job *j;

    if (s->bhead && (!s->shead || s->passed >= PREP_MAX_PASSED)) {
        j = s->bhead;
        if (!(s->bhead = j->next))
            s->btail = NULL;
        s->passed = 0;
    } else {
        j = s->shead;
        if (!(s->shead = j->next))
            s->stail = NULL;
        s->passed += s->bhead != NULL;
    }
    j->next = NULL;
    return j;
}

static void *prep_main(void *arg)
{
    struct engine_server *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->stopping && !s->shead && !s->bhead)
            pthread_cond_wait(&s->pcv, &s->mu);
        if (s->stopping) {
            pthread_mutex_unlock(&s->mu);
            break;
        }
        struct engine_job *j = prep_queue_take(s);
        pthread_mutex_unlock(&s->mu);
        prep_one(s, j);
    }
    /* shutting down: every job still waiting for prep is cancelled */
    pthread_mutex_lock(&s->mu);
    struct engine_job *lists[2] = {s->shead, s->bhead};
    s->shead = s->stail = s->bhead = s->btail = NULL;
    pthread_mutex_unlock(&s->mu);
    for (int k = 0; k < 2; k++) {
        struct engine_job *q = lists[k];
        while (q) {
            struct engine_job *next = q->next;
            q->next = NULL;
            finish(s, q, ENGINE_ECANCELED, "cancelled", "the engine is shutting down");
            engine_job_release(q);
            q = next;
        }
    }
    return NULL;
}

int engine_server_new(struct engine_model *m, int queue_max, struct engine_server **out)
{
    char why[256] = "";
    *out = NULL;
    if (!m || queue_max < 0)
        return ENGINE_EINVAL;
    struct engine_server *s = calloc(1, sizeof(*s));
    if (!s)
        return ENGINE_ENOMEM;
    s->m = m;
    s->queue_max = queue_max;
    s->tok_max_bytes = tokenizer_max_bytes(m->tok);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    pthread_cond_init(&s->pcv, NULL);
    s->logits = malloc(sizeof(float) * (size_t)MAX_ACTIVE * (size_t)m->w->hp.n_vocab);
    s->piece_cap = 256;
    s->piece = malloc(s->piece_cap);
    if (!s->logits || !s->piece)
        goto oom;
    if (engine_ctx_new(m->w, m->n_threads, MAX_BATCH, &s->ctx, why, sizeof(why)) != 0) {
        log_error("engine: %s", why);
        goto oom;
    }
    if (pthread_create(&s->worker, NULL, worker_main, s) != 0)
        goto oom;
    s->worker_started = 1;
    if (pthread_create(&s->prep, NULL, prep_main, s) != 0)
        goto oom;
    s->prep_started = 1;
    *out = s;
    return 0;
oom:
    engine_server_free(s);
    return ENGINE_ENOMEM;
}

void engine_server_free(struct engine_server *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    s->stopping = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_cond_broadcast(&s->pcv);
    pthread_mutex_unlock(&s->mu);
    /* the prep thread ends its job in hand and those waiting; the worker those it holds */
    if (s->prep_started)
        pthread_join(s->prep, NULL);
    if (s->worker_started)
        pthread_join(s->worker, NULL);
    if (s->ctx)
        engine_ctx_free(s->ctx);
    free(s->logits);
    free(s->piece);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    pthread_cond_destroy(&s->pcv);
    free(s);
}

/* ---- submit ---- */

/* prompt_ids -- the tokens a job's prompt is: msgs rendered with the model's chat template
 * (with the assistant's opening, as generation needs) unless a raw prompt is given, then
 * tokenized with the model's BOS rule and special tokens parsed. *ids malloc'd. Returns
 * 0, ENGINE_ETEMPLATE / ENGINE_EINVAL (the template's) or ENGINE_ENOMEM, err filled. */
static int prompt_ids(const struct engine_model *m, const struct engine_msg *msgs, size_t n_msgs,
                      const char *prompt, int32_t **ids, size_t *n_ids, char *err, size_t errlen)
{
    char *text = NULL;
    int rc;

    *ids = NULL;
    *n_ids = 0;
    if (!prompt) {
        if (!engine_model_chat_ok(m, err, errlen))
            return ENGINE_ETEMPLATE;
        rc = chat_render(&m->tmpl, msgs, n_msgs, 1, &text, err, errlen);
        if (rc)
            return rc;
        prompt = text;
    }
    rc = tokenizer_encode(m->tok, prompt, strlen(prompt), 1, 1, ids, n_ids);
    wipe_str_free(text);
    if (rc)
        engine_set_err(err, errlen, "out of memory while tokenizing the prompt");
    return rc;
}

int engine_count_prompt_tokens(const struct engine_model *m, const struct engine_msg *msgs,
                               size_t n_msgs, int *count, char *err, size_t errlen)
{
    int32_t *ids = NULL;
    size_t n_ids = 0;
    int rc;

    if (count)
        *count = 0;
    if (!m || !count || (n_msgs && !msgs)) {
        engine_set_err(err, errlen, "bad arguments to engine_count_prompt_tokens");
        return ENGINE_EINVAL;
    }
    if (!n_msgs) {
        engine_set_err(err, errlen, "there are no messages to count");
        return ENGINE_EINVAL;
    }
    rc = prompt_ids(m, msgs, n_msgs, NULL, &ids, &n_ids, err, errlen);
    free(ids);
    if (rc)
        return rc;
    if (n_ids > (size_t)INT_MAX) {
        engine_set_err(err, errlen, "the prompt has more tokens than can be counted");
        return ENGINE_EINVAL;
    }
    *count = (int)n_ids;
    return 0;
}

/* kept_bytes -- the bytes of a message's content that the model's chat template copies into
 * the prompt as they are: the Llama 2 and 3 templates drop its leading and trailing ASCII
 * whitespace (chat.c sb_trimmed), Zephyr drops a message whose role is not system, user or
 * assistant. The role's own name is not counted (Llama 2 writes none). A lower bound of what
 * the message adds to the rendered prompt, so j->bytes / tokenizer_max_bytes stays a lower
 * bound of its tokens: counting what a template drops refused prompts that fit. */
static size_t kept_bytes(const struct engine_model *m, const char *role, const char *content)
{
    size_t a = 0, n = strlen(content);

    if (m->tmpl.family == CHAT_ZEPHYR && strcmp(role, "user") != 0 && strcmp(role, "system") != 0 &&
        strcmp(role, "assistant") != 0)
        return 0;
    if (m->tmpl.family != CHAT_LLAMA3 && m->tmpl.family != CHAT_LLAMA2)
        return n;
    while (a < n && strchr(" \t\n\r\f\v", content[a]))
        a++;
    while (n > a && strchr(" \t\n\r\f\v", content[n - 1]))
        n--;
    return n - a;
}

/* copy_prompt -- j's owned copies of msgs, or of the raw prompt. -1: out of memory. */
static int copy_prompt(const struct engine_model *m, struct engine_job *j,
                       const struct engine_msg *msgs, size_t n_msgs, const char *prompt)
{
    if (prompt) {
        j->bytes = strlen(prompt);
        j->raw = strdup(prompt);
        return j->raw ? 0 : -1;
    }
    j->msgs = calloc(n_msgs, sizeof(*j->msgs));
    if (!j->msgs)
        return -1;
    j->n_msgs = n_msgs;
    for (size_t i = 0; i < n_msgs; i++) {
        j->msgs[i].role = strdup(msgs[i].role ? msgs[i].role : "");
        j->msgs[i].content = strdup(msgs[i].content ? msgs[i].content : "");
        if (!j->msgs[i].role || !j->msgs[i].content)
            return -1;
        j->bytes += kept_bytes(m, j->msgs[i].role, j->msgs[i].content);
    }
    return 0;
}

/* prep_queue_add -- j at the end of its queue, small or big (s->mu held) */
static void prep_queue_add(struct engine_server *s, struct engine_job *j)
{
    struct engine_job **head = j->bytes < PREP_SMALL ? &s->shead : &s->bhead,
                      **tail = j->bytes < PREP_SMALL ? &s->stail : &s->btail;

    j->next = NULL;
    if (*tail)
        (*tail)->next = j;
    else
        *head = j;
    *tail = j;
}

/* enqueue -- admit j to the prep queue, or refuse it (EBUSY: full or shutting down; j is
 * freed then). On success the job holds two references: the caller's and the engine's. */
static int enqueue(struct engine_server *s, struct engine_job *j, struct engine_job **job,
                   char *err, size_t errlen)
{
    j->state = JOB_PREP;
    j->t_submit = now_ms();
    atomic_init(&j->refs, 2); /* the caller's and the engine's (prep, then worker) */
    atomic_init(&j->cancel, 0);
    atomic_init(&j->finished, 0);

    pthread_mutex_lock(&s->mu);
    if (s->stopping) {
        pthread_mutex_unlock(&s->mu);
        job_free(j);
        engine_set_err(err, errlen, "the engine is shutting down");
        return ENGINE_EBUSY;
    }
    if (s->n_running + s->qlen + s->n_prep >= MAX_ACTIVE + s->queue_max) {
        int waiting = s->qlen + s->n_prep;
        pthread_mutex_unlock(&s->mu);
        job_free(j);
        engine_set_err(err, errlen, "the engine is busy (%d requests running, %d waiting)",
                       MAX_ACTIVE, waiting);
        return ENGINE_EBUSY;
    }
    prep_queue_add(s, j);
    s->n_prep++;
    pthread_cond_signal(&s->pcv);
    pthread_mutex_unlock(&s->mu);
    *job = j;
    return 0;
}

int engine_submit_ex(struct engine_server *s, const struct engine_msg *msgs, size_t n_msgs,
                     const char *prompt, const struct engine_params *params,
                     const struct engine_callbacks *cb, void *ud, struct engine_job **job,
                     char *err, size_t errlen)
{
    struct engine_job *j = NULL;
    if (job)
        *job = NULL;
    if (!s || !cb || !cb->on_done || !job || (!prompt && (!msgs || !n_msgs))) {
        engine_set_err(err, errlen, "bad arguments to engine_submit");
        return ENGINE_EINVAL;
    }
    if (params && params->stop && params->n_stop > 64) {
        engine_set_err(err, errlen, "at most 64 stop sequences");
        return ENGINE_EINVAL;
    }
    j = calloc(1, sizeof(*j));
    if (!j)
        goto oom;
    if (params)
        j->params = *params;
    else
        j->params.top_p = 1.0f;
    j->params.stop = NULL;
    if (params && params->stop && params->n_stop) {
        j->stop = calloc(params->n_stop, sizeof(char *));
        if (!j->stop)
            goto oom;
        for (size_t i = 0; i < params->n_stop; i++) {
            j->stop[i] = strdup(params->stop[i] ? params->stop[i] : "");
            if (!j->stop[i])
                goto oom;
        }
        j->params.stop = (const char *const *)j->stop;
    } else {
        j->params.n_stop = 0;
    }
    if (copy_prompt(s->m, j, msgs, n_msgs, prompt) < 0)
        goto oom;
    j->cb = *cb;
    j->ud = ud;
    return enqueue(s, j, job, err, errlen);
oom:
    if (j)
        job_free(j);
    engine_set_err(err, errlen, "out of memory");
    return ENGINE_ENOMEM;
}

int engine_count_submit(struct engine_server *s, const struct engine_msg *msgs, size_t n_msgs,
                        const struct engine_callbacks *cb, void *ud, struct engine_job **job,
                        char *err, size_t errlen)
{
    struct engine_job *j = NULL;
    if (job)
        *job = NULL;
    if (!s || !cb || !cb->on_done || !job || (n_msgs && !msgs)) {
        engine_set_err(err, errlen, "bad arguments to engine_count_submit");
        return ENGINE_EINVAL;
    }
    if (!n_msgs) {
        engine_set_err(err, errlen, "there are no messages to count");
        return ENGINE_EINVAL;
    }
    j = calloc(1, sizeof(*j));
    if (!j || copy_prompt(s->m, j, msgs, n_msgs, NULL) < 0) {
        if (j)
            job_free(j);
        engine_set_err(err, errlen, "out of memory");
        return ENGINE_ENOMEM;
    }
    j->count_only = 1;
    j->params.top_p = 1.0f;
    j->cb = *cb;
    j->cb.on_text = NULL; /* a count generates nothing */
    j->cb.on_ready = NULL;
    j->ud = ud;
    return enqueue(s, j, job, err, errlen);
}

int engine_submit(struct engine_server *s, const struct engine_msg *msgs, size_t n_msgs,
                  const struct engine_params *params, const struct engine_callbacks *cb, void *ud,
                  struct engine_job **job)
{
    char err[256];
    int rc = engine_submit_ex(s, msgs, n_msgs, NULL, params, cb, ud, job, err, sizeof(err));
    if (rc && rc != ENGINE_EBUSY)
        log_warn("engine: request refused: %s", err);
    return rc;
}
