/* test_server.c -- the serving layer on the tiny models: greedy output equals llama.cpp's
 * golden greedy text, batching changes nothing, cancel / queue-full / context errors,
 * shutdown with jobs in flight; submit never formats or tokenizes (the prep thread does,
 * and what it refuses comes through on_done), cancel and free at every stage of a job. */
#include <cJSON.h>
#include <errno.h>
#include <pthread.h>
#include <time.h>

#include "engine/engine.h"
#include "engine/engine_ext.h"
#include "engine/sampler.h"
#include "engine/tokenizer.h"
#include "harness.h"

/* the tokenizer of a loaded model, for building expected texts (engine_int.h is private
 * but a white-box test may look) */
#include "engine/engine_int.h"

static cJSON *load_golden(const char *model)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/models/golden/%s.json", harness_shared(), model);
    char *t = harness_read_file(path, NULL);
    cJSON *j = t ? cJSON_Parse(t) : NULL;
    free(t);
    return j;
}

static struct engine_model *open_model(const char *model, int ctx)
{
    char path[1024], err[256] = "";
    snprintf(path, sizeof(path), "%s/models/%s.gguf", harness_shared(), model);
    struct engine_model *m = NULL;
    if (engine_model_open(path, 1, ctx, &m, err, sizeof(err)) != 0)
        fprintf(stderr, "  %s: %s\n", model, err);
    return m;
}

/* ---- a job's collected output ---- */

#define OUT_MAX 65536

struct coll {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char text[OUT_MAX];
    size_t len;
    int n_text;
    int n_done;
    int split_utf8; /* a piece ended inside a UTF-8 sequence */
    int text_after_done;
    struct engine_result res;
    /* gate: the first on_text waits until opened */
    int gate, gate_reached;
    /* cancel this job from its own n-th on_text */
    struct engine_job *self;
    int cancel_at;
    /* peer: another job's coll whose state on_done notes (both run on the worker) */
    struct coll *peer;
    int peer_done, peer_texts;
    /* on_ready: calls, the tokens it said, text seen before it */
    int n_ready, ready_tokens, text_before_ready;
    /* done_gate: on_done waits until opened (holds the thread that calls it) */
    int done_gate, done_gate_reached;
};

static void coll_init(struct coll *c)
{
    memset(c, 0, sizeof(*c));
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
}

static void coll_deinit(struct coll *c)
{
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
}

static void on_text(void *ud, const char *t, size_t n)
{
    struct coll *c = ud;
    pthread_mutex_lock(&c->mu);
    if (c->n_done)
        c->text_after_done = 1;
    if (!c->n_ready)
        c->text_before_ready = 1;
    if (c->len + n < OUT_MAX) {
        memcpy(c->text + c->len, t, n);
        c->len += n;
        c->text[c->len] = 0;
    }
    if (utf8_incomplete_tail(t, n))
        c->split_utf8 = 1;
    c->n_text++;
    if (c->gate) {
        c->gate_reached = 1;
        pthread_cond_broadcast(&c->cv);
        while (c->gate)
            pthread_cond_wait(&c->cv, &c->mu);
    }
    if (c->cancel_at && c->n_text == c->cancel_at && c->self)
        engine_job_cancel(c->self);
    pthread_mutex_unlock(&c->mu);
}

static void on_done(void *ud, const struct engine_result *r)
{
    struct coll *c = ud;
    pthread_mutex_lock(&c->mu);
    if (c->peer) {
        pthread_mutex_lock(&c->peer->mu);
        c->peer_done = c->peer->n_done;
        c->peer_texts = c->peer->n_text;
        pthread_mutex_unlock(&c->peer->mu);
    }
    c->res = *r;
    c->n_done++;
    pthread_cond_broadcast(&c->cv);
    if (c->done_gate) {
        c->done_gate_reached = 1;
        while (c->done_gate)
            pthread_cond_wait(&c->cv, &c->mu);
    }
    pthread_mutex_unlock(&c->mu);
}

static void on_ready(void *ud, int prompt_tokens)
{
    struct coll *c = ud;
    pthread_mutex_lock(&c->mu);
    c->n_ready++;
    c->ready_tokens = prompt_tokens;
    pthread_mutex_unlock(&c->mu);
}

static const struct engine_callbacks cbs = {on_text, on_done, on_ready};

static void wait_gate(struct coll *c, int done)
{
    pthread_mutex_lock(&c->mu);
    while (!(done ? c->done_gate_reached : c->gate_reached))
        pthread_cond_wait(&c->cv, &c->mu);
    pthread_mutex_unlock(&c->mu);
}

static void open_gates(struct coll *c)
{
    pthread_mutex_lock(&c->mu);
    c->gate = 0;
    c->done_gate = 0;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static int n_done_of(struct coll *c)
{
    pthread_mutex_lock(&c->mu);
    int n = c->n_done;
    pthread_mutex_unlock(&c->mu);
    return n;
}

static void wait_done(struct coll *c)
{
    pthread_mutex_lock(&c->mu);
    while (!c->n_done)
        pthread_cond_wait(&c->cv, &c->mu);
    pthread_mutex_unlock(&c->mu);
}

/* prep_barrier -- return once every job submitted to s before the call has been through the
 * prep thread (prep is first in, first out: a count submitted now ends after them) */
static void prep_barrier(struct engine_server *s)
{
    static const struct engine_msg msg = {"user", "barrier"};
    struct engine_job *job = NULL;
    struct coll *c = malloc(sizeof(*c));
    char err[256] = "";
    if (!c)
        return;
    coll_init(c);
    if (engine_count_submit(s, &msg, 1, &cbs, c, &job, err, sizeof(err)) == 0) {
        wait_done(c);
        engine_job_release(job);
    }
    coll_deinit(c);
    free(c);
}

/* hold_prep -- a count on a model without a chat template: the prep thread refuses it
 * (ETEMPLATE) and calls on_done, where it then waits until c's gates are opened. While it
 * waits, nothing else is prepped: jobs submitted meanwhile are waiting for prep. */
static struct engine_job *hold_prep(struct engine_server *s, struct coll *c)
{
    static const struct engine_msg msg = {"user", "hold the prep thread"};
    struct engine_job *job = NULL;
    char err[256] = "";
    c->done_gate = 1;
    if (engine_count_submit(s, &msg, 1, &cbs, c, &job, err, sizeof(err)) != 0) {
        fprintf(stderr, "  hold_prep: %s\n", err);
        return NULL;
    }
    wait_gate(c, 1);
    return job;
}

/* expected stream for golden ids: pieces through a text stream, stopping at the first
 * end-of-generation token or before the first near tie (where either id is right) */
struct exp {
    char text[OUT_MAX];
    size_t len;
    int n_tokens; /* tokens the expectation covers */
    int exact;    /* no near tie and no EOG: the whole 32-token output is fixed */
};

static void exp_emit(void *ud, const char *t, size_t n)
{
    struct exp *e = ud;
    if (e->len + n < OUT_MAX) {
        memcpy(e->text + e->len, t, n);
        e->len += n;
        e->text[e->len] = 0;
    }
}

static void expected_text(const struct engine_model *m, const cJSON *c, struct exp *e)
{
    memset(e, 0, sizeof(*e));
    struct textstream ts;
    if (textstream_init(&ts, NULL, 0, exp_emit, e) != 0)
        return;
    const cJSON *toks = cJSON_GetObjectItem(c, "greedy_tokens");
    const cJSON *margin = cJSON_GetObjectItem(c, "step_margin");
    const cJSON *maxabs = cJSON_GetObjectItem(c, "step_max_abs_logit");
    int n = cJSON_GetArraySize(toks);
    e->exact = 1;
    for (int i = 0; i < n; i++) {
        double mg = cJSON_GetArrayItem(margin, i)->valuedouble;
        double ma = cJSON_GetArrayItem(maxabs, i)->valuedouble;
        if (mg < 2 * 1e-3 * ma) {
            e->exact = 0;
            break;
        }
        int id = (int)cJSON_GetArrayItem(toks, i)->valuedouble;
        if (tokenizer_is_eog(m->tok, id)) {
            e->exact = 0;
            break;
        }
        char piece[512];
        size_t pl = tokenizer_piece(m->tok, id, 0, piece, sizeof(piece));
        textstream_feed(&ts, piece, pl < sizeof(piece) ? pl : sizeof(piece));
        e->n_tokens++;
    }
    if (e->exact)
        textstream_finish(&ts);
    textstream_deinit(&ts);
}

static int run_case(struct engine_server *s, const struct engine_model *m, const cJSON *c,
                    struct coll *out, struct engine_job **job)
{
    (void)m;
    struct engine_params p = {.max_tokens = 32, .temperature = 0.0f, .top_p = 1.0f};
    const cJSON *chat = cJSON_GetObjectItem(c, "chat");
    char err[256] = "";
    if (chat) {
        struct engine_msg msgs[4];
        size_t nm = 0;
        const cJSON *x;
        cJSON_ArrayForEach(x, cJSON_GetObjectItem(chat, "messages"))
        {
            if (nm < 4) {
                msgs[nm].role = cJSON_GetObjectItem(x, "role")->valuestring;
                msgs[nm].content = cJSON_GetObjectItem(x, "content")->valuestring;
                nm++;
            }
        }
        return engine_submit_ex(s, msgs, nm, NULL, &p, &cbs, out, job, err, sizeof(err));
    }
    return engine_submit_ex(s, NULL, 0, cJSON_GetObjectItem(c, "prompt")->valuestring, &p, &cbs,
                            out, job, err, sizeof(err));
}

static int check_output(const char *model, const cJSON *c, const struct coll *got,
                        const struct exp *e)
{
    const char *name = cJSON_GetObjectItem(c, "name")->valuestring;
    int ok = got->n_done == 1 && got->res.status == ENGINE_OK && !got->split_utf8 &&
             !got->text_after_done;
    if (e->exact)
        ok = ok && got->len == e->len && memcmp(got->text, e->text, e->len) == 0 &&
             got->res.completion_tokens == 32 && strcmp(got->res.finish_reason, "length") == 0;
    else
        ok = ok && got->len >= e->len && memcmp(got->text, e->text, e->len) == 0;
    if (!ok) {
        fprintf(stderr,
                "  %s/%s: status %d done %d exact %d (%d tokens)\n   got  \"%s\"\n   want \"%s\"\n",
                model, name, got->res.status, got->n_done, e->exact, e->n_tokens, got->text,
                e->text);
    }
    return ok;
}

static const char *const f32_models[] = {"stories260K", "tiny-llama3-f32", "tiny-llama2-tied-f32",
                                         "tiny-qwen2-f32"};

/* every case of every F32 model, one job at a time */
static void test_greedy_matches_golden(void)
{
    int n_exact = 0, n_cases = 0;
    for (size_t mi = 0; mi < 4; mi++) {
        cJSON *g = load_golden(f32_models[mi]);
        struct engine_model *m = open_model(f32_models[mi], 512);
        struct engine_server *s = NULL;
        CHECK(g && m);
        if (!g || !m || engine_server_new(m, 4, &s) != 0) {
            cJSON_Delete(g);
            engine_model_close(m);
            CHECK(0);
            continue;
        }
        const cJSON *c;
        cJSON_ArrayForEach(c, cJSON_GetObjectItem(g, "cases"))
        {
            struct coll *out = malloc(sizeof(*out));
            struct exp *e = malloc(sizeof(*e));
            struct engine_job *job = NULL;
            coll_init(out);
            expected_text(m, c, e);
            int rc = run_case(s, m, c, out, &job);
            CHECK_EQ_INT(rc, 0);
            if (rc == 0) {
                wait_done(out);
                CHECK(check_output(f32_models[mi], c, out, e));
                CHECK_EQ_INT(out->res.prompt_tokens,
                             cJSON_GetArraySize(cJSON_GetObjectItem(c, "prompt_tokens")));
                engine_job_release(job);
            }
            n_exact += e->exact;
            n_cases++;
            coll_deinit(out);
            free(out);
            free(e);
        }
        engine_server_free(s);
        engine_model_close(m);
        cJSON_Delete(g);
    }
    CHECK_EQ_INT(n_cases, 16);
    CHECK(n_exact >= 8); /* most cases have no near tie: the comparison is mostly exact */
}

/* all cases of a model submitted at once (batched decode, interleaved prefill) give
 * the same text as one at a time */
static void test_concurrent_equals_alone(void)
{
    const char *model = "tiny-llama3-f32";
    cJSON *g = load_golden(model);
    struct engine_model *m = open_model(model, 512);
    struct engine_server *s = NULL;
    REQUIRE(g && m);
    REQUIRE(engine_server_new(m, 8, &s) == 0);
    int n = cJSON_GetArraySize(cJSON_GetObjectItem(g, "cases"));
    struct coll *outs = calloc((size_t)n * 2, sizeof(*outs));
    struct exp *es = calloc((size_t)n, sizeof(*es));
    struct engine_job **jobs = calloc((size_t)n * 2, sizeof(*jobs));
    REQUIRE(outs && es && jobs);
    /* twice each case, all in flight together */
    for (int k = 0; k < 2 * n; k++) {
        const cJSON *c = cJSON_GetArrayItem(cJSON_GetObjectItem(g, "cases"), k % n);
        coll_init(&outs[k]);
        if (k < n)
            expected_text(m, c, &es[k]);
        CHECK_EQ_INT(run_case(s, m, c, &outs[k], &jobs[k]), 0);
    }
    for (int k = 0; k < 2 * n; k++) {
        const cJSON *c = cJSON_GetArrayItem(cJSON_GetObjectItem(g, "cases"), k % n);
        if (!jobs[k])
            continue;
        wait_done(&outs[k]);
        CHECK(check_output(model, c, &outs[k], &es[k % n]));
        engine_job_release(jobs[k]);
    }
    for (int k = 0; k < n; k++)
        CHECK(outs[k].len == outs[k + n].len &&
              memcmp(outs[k].text, outs[k + n].text, outs[k].len) == 0);
    for (int k = 0; k < 2 * n; k++)
        coll_deinit(&outs[k]);
    free(outs);
    free(es);
    free(jobs);
    engine_server_free(s);
    engine_model_close(m);
    cJSON_Delete(g);
}

/* a job submitted while another is decoding joins it between decode steps instead of
 * waiting for it to finish */
static void test_admitted_between_steps(void)
{
    struct engine_model *m = open_model("stories260K", 0);
    struct engine_server *s = NULL;
    REQUIRE(m);
    REQUIRE(engine_server_new(m, 2, &s) == 0);
    struct coll *a = malloc(sizeof(*a)), *b = malloc(sizeof(*b));
    coll_init(a);
    coll_init(b);
    struct engine_params pa = {.max_tokens = 400, .temperature = 0.0f, .top_p = 1.0f};
    struct engine_params pb = {.max_tokens = 5, .temperature = 0.0f, .top_p = 1.0f};
    struct engine_job *ja = NULL, *jb = NULL;
    char err[256];
    a->gate = 1;
    b->peer = a; /* a's progress when b ends, seen from the worker (a thread switch of the test's
                    own, as under valgrind, cannot inflate it) */
    REQUIRE(engine_submit_ex(s, NULL, 0, "Once upon a time", &pa, &cbs, a, &ja, err, sizeof(err)) ==
            0);
    pthread_mutex_lock(&a->mu);
    while (!a->gate_reached)
        pthread_cond_wait(&a->cv, &a->mu);
    pthread_mutex_unlock(&a->mu);
    REQUIRE(engine_submit_ex(s, NULL, 0, "Lily and Tom", &pb, &cbs, b, &jb, err, sizeof(err)) == 0);
    prep_barrier(s); /* b is tokenized and waits for the worker */
    pthread_mutex_lock(&a->mu);
    a->gate = 0;
    pthread_cond_broadcast(&a->cv);
    pthread_mutex_unlock(&a->mu);
    wait_done(b);
    CHECK_EQ_INT(b->peer_done, 0); /* b finished while a was still generating */
    CHECK(b->peer_texts < 100);
    CHECK_EQ_INT(b->res.completion_tokens, 5);
    engine_job_cancel(ja);
    wait_done(a);
    engine_job_release(ja);
    engine_job_release(jb);
    coll_deinit(a);
    coll_deinit(b);
    free(a);
    free(b);
    engine_server_free(s);
    engine_model_close(m);
}

static void test_cancel(void)
{
    struct engine_model *m = open_model("stories260K", 0);
    struct engine_server *s = NULL;
    REQUIRE(m);
    REQUIRE(engine_server_new(m, 2, &s) == 0);
    struct coll *c = malloc(sizeof(*c));
    coll_init(c);
    struct engine_params p = {.max_tokens = 0, .temperature = 0.8f, .top_p = 1.0f, .seed = 5};
    struct engine_job *job = NULL;
    char err[256];
    /* hold the job at its first text so the cancel lands mid-generation */
    c->gate = 1;
    REQUIRE(engine_submit_ex(s, NULL, 0, "Once upon a time", &p, &cbs, c, &job, err, sizeof(err)) ==
            0);
    pthread_mutex_lock(&c->mu);
    while (!c->gate_reached)
        pthread_cond_wait(&c->cv, &c->mu);
    engine_job_cancel(job);
    c->gate = 0;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    wait_done(c);
    CHECK_EQ_INT(c->res.status, ENGINE_ECANCELED);
    CHECK_EQ_INT(c->n_done, 1);
    CHECK(c->res.completion_tokens < engine_model_context(m) / 2);
    struct engine_job_stats st;
    CHECK_EQ_INT(engine_job_stats(job, &st), 0);
    engine_job_release(job);
    coll_deinit(c);

    /* cancelled while still queued behind a gated job: no text at all */
    struct coll *c2 = malloc(sizeof(*c2));
    coll_init(c);
    coll_init(c2);
    c->gate = 1;
    struct engine_job *j1 = NULL, *j2 = NULL;
    REQUIRE(engine_submit_ex(s, NULL, 0, "Once upon a time", &p, &cbs, c, &j1, err, sizeof(err)) ==
            0);
    pthread_mutex_lock(&c->mu);
    while (!c->gate_reached)
        pthread_cond_wait(&c->cv, &c->mu);
    pthread_mutex_unlock(&c->mu);
    REQUIRE(engine_submit_ex(s, NULL, 0, "Lily", &p, &cbs, c2, &j2, err, sizeof(err)) == 0);
    engine_job_cancel(j2);
    engine_job_cancel(j1);
    pthread_mutex_lock(&c->mu);
    c->gate = 0;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    wait_done(c);
    wait_done(c2);
    CHECK_EQ_INT(c2->res.status, ENGINE_ECANCELED);
    CHECK_EQ_INT(c2->n_text, 0);
    engine_job_release(j1);
    engine_job_release(j2);
    coll_deinit(c);
    coll_deinit(c2);
    free(c);
    free(c2);
    engine_server_free(s);
    engine_model_close(m);
}

static void test_queue_full(void)
{
    struct engine_model *m = open_model("stories260K", 0);
    struct engine_server *s = NULL;
    REQUIRE(m);
    const int queue_max = 2, running = 8; /* MAX_ACTIVE in server.c */
    REQUIRE(engine_server_new(m, queue_max, &s) == 0);
    int total = running + queue_max;
    struct coll *c = calloc((size_t)total + 1, sizeof(*c));
    struct engine_job **jobs = calloc((size_t)total + 1, sizeof(*jobs));
    REQUIRE(c && jobs);
    struct engine_params p = {.max_tokens = 64, .temperature = 0.0f, .top_p = 1.0f};
    char err[256] = "";
    for (int i = 0; i <= total; i++)
        coll_init(&c[i]);
    c[0].gate = 1; /* the worker stops inside job 0's first text: nothing can finish */
    REQUIRE(engine_submit_ex(s, NULL, 0, "Once upon a time", &p, &cbs, &c[0], &jobs[0], err,
                             sizeof(err)) == 0);
    pthread_mutex_lock(&c[0].mu);
    while (!c[0].gate_reached)
        pthread_cond_wait(&c[0].cv, &c[0].mu);
    pthread_mutex_unlock(&c[0].mu);
    for (int i = 1; i < total; i++)
        CHECK_EQ_INT(engine_submit_ex(s, NULL, 0, "Once upon a time", &p, &cbs, &c[i], &jobs[i],
                                      err, sizeof(err)),
                     0);
    CHECK_EQ_INT(engine_submit_ex(s, NULL, 0, "Once upon a time", &p, &cbs, &c[total], &jobs[total],
                                  err, sizeof(err)),
                 ENGINE_EBUSY);
    CHECK(jobs[total] == NULL);
    CHECK(strstr(err, "busy") != NULL);
    {
        /* a count shares the queue and its limit */
        struct engine_msg cm = {"user", "count me"};
        err[0] = '\0';
        CHECK_EQ_INT(
            engine_count_submit(s, &cm, 1, &cbs, &c[total], &jobs[total], err, sizeof(err)),
            ENGINE_EBUSY);
        CHECK(jobs[total] == NULL && strstr(err, "busy") != NULL);
    }
    pthread_mutex_lock(&c[0].mu);
    c[0].gate = 0;
    pthread_cond_broadcast(&c[0].cv);
    pthread_mutex_unlock(&c[0].mu);
    for (int i = 0; i < total; i++) {
        wait_done(&c[i]);
        CHECK_EQ_INT(c[i].res.status, ENGINE_OK);
        CHECK_EQ_INT(c[i].n_done, 1);
        engine_job_release(jobs[i]);
    }
    /* identical greedy requests, batched in various groupings: identical texts */
    for (int i = 1; i < total; i++)
        CHECK(c[i].len == c[0].len && memcmp(c[i].text, c[0].text, c[0].len) == 0);
    CHECK_EQ_INT(c[total].n_done, 0); /* no callback for a refused submit */
    /* room again once they are done */
    struct engine_job *again = NULL;
    coll_init(&c[total]);
    CHECK_EQ_INT(
        engine_submit_ex(s, NULL, 0, "Once", &p, &cbs, &c[total], &again, err, sizeof(err)), 0);
    if (again) {
        wait_done(&c[total]);
        engine_job_release(again);
    }
    for (int i = 0; i <= total; i++)
        coll_deinit(&c[i]);
    free(c);
    free(jobs);
    engine_server_free(s);
    engine_model_close(m);
}

static void test_context_limits(void)
{
    struct engine_model *m = open_model("stories260K", 16);
    struct engine_server *s = NULL;
    REQUIRE(m);
    CHECK_EQ_INT(engine_model_context(m), 16);
    REQUIRE(engine_server_new(m, 2, &s) == 0);
    struct engine_params p = {.max_tokens = 0, .temperature = 0.0f, .top_p = 1.0f};
    char err[256] = "";
    struct engine_job *job = NULL;
    struct coll *c = malloc(sizeof(*c));
    coll_init(c);
    const char *longp = "Lily and Tom were best friends. One day, they went to the park and saw a "
                        "big red ball.";
    /* too long for the context: found on the prep thread, reported through on_done */
    CHECK_EQ_INT(engine_submit_ex(s, NULL, 0, longp, &p, &cbs, c, &job, err, sizeof(err)), 0);
    REQUIRE(job != NULL);
    wait_done(c);
    CHECK_EQ_INT(c->res.status, ENGINE_ECONTEXT);
    CHECK_EQ_INT(c->res.prompt_refused, 1);
    CHECK(strstr(c->res.error, "context holds 16") != NULL);
    CHECK(c->res.prompt_tokens > 16);
    CHECK_EQ_INT(c->n_text, 0);
    CHECK_EQ_INT(c->n_done, 1);
    engine_job_release(job);
    job = NULL;
    coll_deinit(c);
    coll_init(c);
    /* more stop sequences than the engine takes, and missing arguments: refused, no job */
    {
        static const char *const many[65] = {"x"};
        struct engine_params ps = p;
        ps.stop = many;
        ps.n_stop = 65;
        err[0] = '\0';
        CHECK_EQ_INT(engine_submit_ex(s, NULL, 0, "Once", &ps, &cbs, c, &job, err, sizeof(err)),
                     ENGINE_EINVAL);
        CHECK(job == NULL && strstr(err, "at most 64 stop") != NULL);
        CHECK_EQ_INT(engine_submit_ex(s, NULL, 0, NULL, &p, &cbs, c, &job, err, sizeof(err)),
                     ENGINE_EINVAL);
        CHECK(job == NULL && strstr(err, "bad arguments") != NULL);
        CHECK_EQ_INT(c->n_done, 0);
    }
    /* a prompt that fits: generation stops at the end of the context */
    CHECK_EQ_INT(
        engine_submit_ex(s, NULL, 0, "Once upon a time", &p, &cbs, c, &job, err, sizeof(err)), 0);
    if (job) {
        wait_done(c);
        CHECK_EQ_INT(c->res.status, ENGINE_OK);
        CHECK_EQ_STR(c->res.finish_reason, "length");
        /* the last token needs no cache slot: it is sampled from a full context */
        CHECK_EQ_INT(c->res.prompt_tokens + c->res.completion_tokens, 17);
        engine_job_release(job);
    }
    coll_deinit(c);
    free(c);
    engine_server_free(s);
    engine_model_close(m);
}

static void test_stop_sequence(void)
{
    cJSON *g = load_golden("stories260K");
    struct engine_model *m = open_model("stories260K", 0);
    struct engine_server *s = NULL;
    REQUIRE(g && m);
    REQUIRE(engine_server_new(m, 2, &s) == 0);
    /* golden: ", there was a little girl named Lily. She loved to play outside..." */
    const char *stops[] = {"zzz", "Lily."};
    struct engine_params p = {
        .max_tokens = 32, .temperature = 0.0f, .top_p = 1.0f, .stop = stops, .n_stop = 2};
    struct coll *c = malloc(sizeof(*c));
    coll_init(c);
    struct engine_job *job = NULL;
    char err[256];
    REQUIRE(engine_submit_ex(s, NULL, 0, "Once upon a time", &p, &cbs, c, &job, err, sizeof(err)) ==
            0);
    wait_done(c);
    const char *golden =
        cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(g, "cases"), 0), "greedy_text")
            ->valuestring;
    const char *cut = strstr(golden, "Lily.");
    REQUIRE(cut);
    CHECK_EQ_STR(c->res.finish_reason, "stop");
    CHECK_EQ_INT((long)c->len, (long)(cut - golden));
    CHECK(memcmp(c->text, golden, c->len) == 0);
    CHECK(strstr(c->text, "Lily") == NULL);
    engine_job_release(job);
    coll_deinit(c);
    free(c);
    engine_server_free(s);
    engine_model_close(m);
    cJSON_Delete(g);
}

static void test_no_template(void)
{
    struct engine_model *m = open_model("stories260K", 0);
    struct engine_server *s = NULL;
    REQUIRE(m);
    REQUIRE(engine_server_new(m, 2, &s) == 0);
    struct engine_msg msg = {"user", "hi"};
    struct engine_job *job = NULL;
    struct coll c;
    coll_init(&c);
    char err[256] = "";
    CHECK(!engine_model_chat_ok(m, err, sizeof(err)));
    /* the template is looked for on the prep thread: submit takes the job, on_done refuses */
    CHECK_EQ_INT(engine_submit(s, &msg, 1, NULL, &cbs, &c, &job), 0);
    REQUIRE(job != NULL);
    wait_done(&c);
    CHECK_EQ_INT(c.res.status, ENGINE_ETEMPLATE);
    CHECK_EQ_INT(c.res.prompt_refused, 1);
    CHECK(strstr(c.res.error, "chat template") != NULL);
    CHECK_EQ_INT(c.n_text, 0);
    engine_job_release(job);
    job = NULL;
    coll_deinit(&c);
    coll_init(&c);
    CHECK_EQ_INT(engine_submit_ex(s, &msg, 1, NULL, NULL, &cbs, &c, &job, err, sizeof(err)), 0);
    REQUIRE(job != NULL);
    wait_done(&c);
    CHECK_EQ_INT(c.res.status, ENGINE_ETEMPLATE);
    CHECK_EQ_STR(c.res.error, err); /* the same sentence engine_model_chat_ok gives */
    engine_job_release(job);
    coll_deinit(&c);
    engine_server_free(s);
    engine_model_close(m);
}

/* free with jobs queued and running: every job hears on_done exactly once */
static void test_free_in_flight(void)
{
    struct engine_model *m = open_model("tiny-llama2-tied-f32", 256);
    struct engine_server *s = NULL;
    REQUIRE(m);
    REQUIRE(engine_server_new(m, 16, &s) == 0);
    enum { N = 12 };
    struct coll *c = calloc(N, sizeof(*c));
    struct engine_job *jobs[N] = {0};
    struct engine_params p = {.max_tokens = 0, .temperature = 1.0f, .top_p = 0.9f, .seed = 1};
    char err[256];
    struct engine_msg msg = {"user", "Tell me a long story."};
    for (int i = 0; i < N; i++) {
        coll_init(&c[i]);
        p.seed = (uint64_t)i;
        CHECK_EQ_INT(
            engine_submit_ex(s, &msg, 1, NULL, &p, &cbs, &c[i], &jobs[i], err, sizeof(err)), 0);
        if (i % 3 == 0)
            engine_job_release(jobs[i]); /* the caller may drop its reference early */
    }
    engine_server_free(s);
    for (int i = 0; i < N; i++) {
        CHECK_EQ_INT(c[i].n_done, 1);
        CHECK(c[i].res.status == ENGINE_ECANCELED || c[i].res.status == ENGINE_OK);
        if (i % 3 != 0)
            engine_job_release(jobs[i]);
        coll_deinit(&c[i]);
    }
    free(c);
    engine_model_close(m);
}

/* submit returns before the prompt is formatted or tokenized: while the prep thread is held,
 * a prompt too long for the context is taken (0), not finished, and its ECONTEXT comes later
 * through on_done; a job cancelled while waiting for prep ends without being tokenized. */
static void test_submit_before_prep(void)
{
    struct engine_model *m = open_model("stories260K", 16);
    struct engine_server *s = NULL;
    REQUIRE(m);
    REQUIRE(engine_server_new(m, 8, &s) == 0);
    struct coll *h = malloc(sizeof(*h)), *c = calloc(3, sizeof(*c));
    struct engine_job *hj, *j[3] = {0};
    struct engine_job_stats st;
    struct engine_params p = {.max_tokens = 4, .temperature = 0.0f, .top_p = 1.0f};
    char err[256] = "";
    REQUIRE(h && c);
    coll_init(h);
    for (int i = 0; i < 3; i++)
        coll_init(&c[i]);
    hj = hold_prep(s, h);
    REQUIRE(hj);
    CHECK_EQ_INT(h->res.status, ENGINE_ETEMPLATE); /* a count's refusal, on the prep thread */
    CHECK_EQ_INT(h->res.prompt_refused, 1);
    CHECK(strstr(h->res.error, "chat template") != NULL);
    /* 0: too long for 16 tokens; 1: cancelled while waiting for prep; 2: runs */
    CHECK_EQ_INT(engine_submit_ex(s, NULL, 0,
                                  "Lily and Tom were best friends. One day, they went to the park "
                                  "and saw a big red ball.",
                                  &p, &cbs, &c[0], &j[0], err, sizeof(err)),
                 0);
    CHECK_EQ_INT(
        engine_submit_ex(s, NULL, 0, "Once upon a time", &p, &cbs, &c[1], &j[1], err, sizeof(err)),
        0);
    CHECK_EQ_INT(engine_submit_ex(s, NULL, 0, "Once", &p, &cbs, &c[2], &j[2], err, sizeof(err)), 0);
    REQUIRE(j[0] && j[1] && j[2]);
    engine_job_cancel(j[1]);
    /* nothing of them has happened yet: the prep thread is still in the count's on_done */
    for (int i = 0; i < 3; i++) {
        CHECK_EQ_INT(n_done_of(&c[i]), 0);
        CHECK_EQ_INT(engine_job_stats(j[i], &st), -1);
    }
    open_gates(h);
    for (int i = 0; i < 3; i++)
        wait_done(&c[i]);
    CHECK_EQ_INT(c[0].res.status, ENGINE_ECONTEXT);
    CHECK_EQ_INT(c[0].res.prompt_refused, 1);
    CHECK(strstr(c[0].res.error, "context holds 16") != NULL);
    CHECK_EQ_INT(c[0].n_text, 0);
    CHECK_EQ_INT(c[0].n_ready, 0); /* refused: never ready */
    CHECK_EQ_INT(c[1].n_ready, 0);
    CHECK_EQ_INT(h->n_ready, 0); /* a count: never ready */
    /* accepted: ready once, before any text, with the prompt's length */
    CHECK_EQ_INT(c[2].n_ready, 1);
    CHECK_EQ_INT(c[2].text_before_ready, 0);
    CHECK_EQ_INT(c[2].ready_tokens, c[2].res.prompt_tokens);
    CHECK_EQ_INT(c[1].res.status, ENGINE_ECANCELED);
    CHECK_EQ_INT(c[1].res.prompt_refused, 0);
    CHECK_EQ_INT(c[1].n_text, 0);
    CHECK_EQ_INT(engine_job_stats(j[1], &st), 0);
    CHECK_EQ_INT(st.prompt_tokens, 0); /* never tokenized */
    CHECK(st.prep_ms == 0);
    CHECK_EQ_INT(c[2].res.status, ENGINE_OK);
    CHECK_EQ_INT(c[2].res.completion_tokens, 4);
    CHECK(c[2].n_text > 0);
    CHECK_EQ_INT(engine_job_stats(j[2], &st), 0);
    CHECK(st.prompt_tokens > 0 && st.prep_ms > 0);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ_INT(c[i].n_done, 1);
        engine_job_release(j[i]);
        coll_deinit(&c[i]);
    }
    engine_job_release(hj);
    coll_deinit(h);
    free(h);
    free(c);
    engine_server_free(s);
    engine_model_close(m);
}

struct freer {
    struct engine_server *s;
};

static void *free_thread(void *arg)
{
    engine_server_free(((struct freer *)arg)->s);
    return NULL;
}

/* engine_server_free with a job in every stage: one decoding (held in its first on_text),
 * one tokenized and queued for decode, one in the prep thread's hands (held in its on_done),
 * two waiting for prep (one of them cancelled). Every job hears on_done exactly once; those
 * that had not finished are cancelled, and none that was queued produced text. */
static void test_free_every_stage(void)
{
    struct engine_model *m = open_model("stories260K", 0);
    struct engine_server *s = NULL;
    REQUIRE(m);
    REQUIRE(engine_server_new(m, 128, &s) == 0);
    enum { A, B, G, D, E, N = 100 };
    struct coll *c = calloc(N, sizeof(*c));
    struct engine_job *j[N] = {0};
    struct engine_params p = {.max_tokens = 0, .temperature = 0.0f, .top_p = 1.0f};
    char err[256] = "";
    int n = E + 1, stopped = 0;
    REQUIRE(c);
    for (int i = 0; i < N; i++)
        coll_init(&c[i]);
    c[A].gate = 1;
    REQUIRE(engine_submit_ex(s, NULL, 0, "Once upon a time", &p, &cbs, &c[A], &j[A], err,
                             sizeof(err)) == 0);
    wait_gate(&c[A], 0); /* the worker is inside a step */
    REQUIRE(engine_submit_ex(s, NULL, 0, "Lily", &p, &cbs, &c[B], &j[B], err, sizeof(err)) == 0);
    j[G] = hold_prep(s, &c[G]); /* prep is FIFO: B is tokenized and queued for decode by now */
    REQUIRE(j[G]);
    REQUIRE(engine_submit_ex(s, NULL, 0, "Tom", &p, &cbs, &c[D], &j[D], err, sizeof(err)) == 0);
    REQUIRE(engine_submit_ex(s, NULL, 0, "Sue", &p, &cbs, &c[E], &j[E], err, sizeof(err)) == 0);
    engine_job_cancel(j[E]);

    struct freer fr = {s};
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, free_thread, &fr) == 0);
    /* free is under way once submit says the engine is shutting down (until then each probe
     * is one more job waiting for prep) */
    for (int tries = 0; tries < 5000 && !stopped && n < N; tries++) {
        int rc = engine_submit_ex(s, NULL, 0, "probe", &p, &cbs, &c[n], &j[n], err, sizeof(err));
        if (rc == 0) {
            n++;
        } else {
            CHECK_EQ_INT(rc, ENGINE_EBUSY);
            stopped = strstr(err, "shutting down") != NULL;
        }
        if (!stopped) {
            struct timespec ts = {0, 2000000};
            nanosleep(&ts, NULL);
        }
    }
    CHECK(stopped);
    open_gates(&c[A]);
    open_gates(&c[G]);
    pthread_join(t, NULL);
    for (int i = 0; i < n; i++) {
        CHECK_EQ_INT(c[i].n_done, 1);
        CHECK(!c[i].text_after_done);
        if (i == G)
            CHECK_EQ_INT(c[i].res.status, ENGINE_ETEMPLATE);
        else
            CHECK_EQ_INT(c[i].res.status, ENGINE_ECANCELED);
        if (i != A)
            CHECK_EQ_INT(c[i].n_text, 0);
    }
    CHECK(strstr(c[B].res.error, "shutting down") != NULL);
    CHECK(strstr(c[D].res.error, "shutting down") != NULL);
    for (int i = 0; i < n; i++)
        engine_job_release(j[i]);
    for (int i = 0; i < N; i++)
        coll_deinit(&c[i]);
    free(c);
    engine_model_close(m);
}

/* free while a large prompt is (most likely) being tokenized, and a count of the same text
 * queued behind it: each ends once, cancelled or refused, never decoded */
static void test_free_while_tokenizing(void)
{
    struct engine_model *m = open_model("tiny-llama3-f32", 64);
    struct engine_server *s = NULL;
    REQUIRE(m);
    REQUIRE(engine_server_new(m, 4, &s) == 0);
    size_t len = 1u << 20;
    char *big = malloc(len + 1);
    struct coll *c = calloc(2, sizeof(*c));
    struct engine_job *j[2] = {0};
    struct engine_params p = {.max_tokens = 4, .temperature = 0.0f, .top_p = 1.0f};
    char err[256] = "";
    REQUIRE(big && c);
    for (size_t i = 0; i < len; i++)
        big[i] = "the quick brown fox jumps over a lazy dog. "[i % 43];
    big[len] = '\0';
    struct engine_msg msg = {"user", big};
    coll_init(&c[0]);
    coll_init(&c[1]);
    REQUIRE(engine_submit_ex(s, &msg, 1, NULL, &p, &cbs, &c[0], &j[0], err, sizeof(err)) == 0);
    REQUIRE(engine_count_submit(s, &msg, 1, &cbs, &c[1], &j[1], err, sizeof(err)) == 0);
    memset(big, 'x', len); /* the jobs own copies */
    free(big);
    engine_server_free(s);
    for (int i = 0; i < 2; i++) {
        CHECK_EQ_INT(c[i].n_done, 1);
        CHECK_EQ_INT(c[i].n_text, 0);
        engine_job_release(j[i]);
        coll_deinit(&c[i]);
    }
    CHECK(c[0].res.status == ENGINE_ECANCELED || c[0].res.status == ENGINE_ECONTEXT);
    /* the count is behind it: cancelled, or (if prep was that quick) counted */
    CHECK(c[1].res.status == ENGINE_ECANCELED ||
          (c[1].res.status == ENGINE_OK && c[1].res.prompt_tokens > 100000));
    free(c);
    engine_model_close(m);
}

static void test_open_errors(void)
{
    struct engine_model *m = (struct engine_model *)1;
    char err[256] = "", path[1024];
    CHECK_EQ_INT(engine_model_open("/nonexistent/model.gguf", 1, 0, &m, err, sizeof(err)),
                 ENGINE_EINVAL);
    CHECK(m == NULL);
    CHECK(strstr(err, "/nonexistent/model.gguf") && strstr(err, "No such file"));
    snprintf(path, sizeof(path), "%s/models/golden/stories260K.json", harness_shared());
    CHECK_EQ_INT(engine_model_open(path, 1, 0, &m, err, sizeof(err)), ENGINE_EINVAL);
    CHECK(strstr(err, "stories260K.json") != NULL);
    snprintf(path, sizeof(path), "%s/models/vocab/ggml-vocab-qwen2.gguf", harness_shared());
    CHECK_EQ_INT(engine_model_open(path, 1, 0, &m, err, sizeof(err)), ENGINE_EINVAL);
    CHECK(strlen(err) > 20);
    m = open_model("tiny-qwen2-f32", 0);
    REQUIRE(m);
    CHECK_EQ_INT(engine_model_context(m), 4096); /* 32768 in the file, capped */
    CHECK(engine_model_chat_ok(m, NULL, 0));
    CHECK(strlen(engine_model_name(m)) > 0);
    engine_model_close(m);
}

int main(void)
{
    RUN(test_open_errors);
    RUN(test_greedy_matches_golden);
    RUN(test_concurrent_equals_alone);
    RUN(test_admitted_between_steps);
    RUN(test_cancel);
    RUN(test_queue_full);
    RUN(test_context_limits);
    RUN(test_stop_sequence);
    RUN(test_no_template);
    RUN(test_free_in_flight);
    RUN(test_submit_before_prep);
    RUN(test_free_every_stage);
    RUN(test_free_while_tokenizing);
    return harness_done();
}
