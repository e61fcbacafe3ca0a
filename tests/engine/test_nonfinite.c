/* test_nonfinite.c -- corrupt weights fail closed: a model whose weights hold a NaN or an
 * infinity gives non-finite logits, and the serving layer ends the job with ENGINE_EINVAL and
 * finish reason "error" (at the prompt's logits or at any decode step, each sequence of a
 * batch on its own) instead of streaming whatever token argmax or the sampler picks. The
 * models are hand-built with gguf_build.h; a healthy one of the same shape still completes. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "engine/engine.h"
#include "engine/engine_ext.h"
#include "harness.h"

/* the tokenizer of a loaded model, to name tokens (engine_int.h is private but a white-box
 * test may look) */
#include "engine/engine_int.h"

#include "gguf_build.h"

#define GEN 8 /* tokens a healthy job generates */
#define N_VOCAB 40
#define NONFINITE_MSG "the model produced non-finite logits (NaN or infinity)"

/* ---- models ---- */

/* model_small (llama, n_embd 32, vocab 40: <unk> <s> </s> x3..x39) with an untied
 * output.weight: a bad token_embd row then reaches only the sequences that feed that token
 * in, a bad output.weight row every sequence's logits. */
static void model_untied(struct model *m)
{
    model_small(m, "llama");
    add_tokenizer(m, N_VOCAB);
    add_t(m, "output.weight", GGUF_T_F32, 32, N_VOCAB);
}

static int n_files;

/* Write m to a fresh file in tmp_dir and open it; the file is unlinked at once (the mapping
 * stays valid), so models open together never share a file. NULL on failure (printed). */
static struct engine_model *open_built(const struct model *m)
{
    struct engine_model *em = NULL;
    char err[512] = "";
    snprintf(tmp_path, sizeof(tmp_path), "%s/m%d.gguf", tmp_dir, n_files++);
    if (write_model(m) != 0) {
        fprintf(stderr, "  cannot write %s\n", tmp_path);
        return NULL;
    }
    if (engine_model_open(tmp_path, 1, 0, &em, err, sizeof(err)) != 0)
        fprintf(stderr, "  %s\n", err);
    unlink(tmp_path);
    return em;
}

/* the id whose piece is exactly `piece`, among the normal tokens; -1 if none */
static int token_of(const struct engine_model *em, const char *piece, size_t len)
{
    for (int id = 3; id < N_VOCAB; id++) {
        char buf[32];
        size_t n = tokenizer_piece(em->tok, id, 0, buf, sizeof(buf));
        if (n == len && memcmp(buf, piece, len) == 0)
            return id;
    }
    return -1;
}

/* 1 if the prompt's token ids include id */
static int prompt_has(const struct engine_model *em, const char *prompt, int id)
{
    int32_t *ids = NULL;
    size_t n = 0, i;
    if (tokenizer_encode(em->tok, prompt, strlen(prompt), 1, 1, &ids, &n) != 0)
        abort();
    for (i = 0; i < n && ids[i] != id; i++)
        ;
    free(ids);
    return i < n;
}

/* ---- a job's output ---- */

static atomic_int clock_; /* orders events across jobs */

struct coll {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char text[1024];
    size_t len;
    size_t piece_end[GEN + 1]; /* [k]: text length after on_text number k (from 0) */
    int n_text;
    int n_done;
    int first_text_at, done_at; /* clock_ values */
    struct engine_result res;
    int gate, gate_reached; /* the first on_text waits while gate is set */
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
    if (!c->n_text)
        c->first_text_at = atomic_fetch_add(&clock_, 1) + 1;
    if (c->len + n < sizeof(c->text)) {
        memcpy(c->text + c->len, t, n);
        c->len += n;
        c->text[c->len] = 0;
    }
    if (c->n_text <= GEN)
        c->piece_end[c->n_text] = c->len;
    c->n_text++;
    if (c->gate) {
        c->gate_reached = 1;
        pthread_cond_broadcast(&c->cv);
        while (c->gate)
            pthread_cond_wait(&c->cv, &c->mu);
    }
    pthread_mutex_unlock(&c->mu);
}

static void on_done(void *ud, const struct engine_result *r)
{
    struct coll *c = ud;
    pthread_mutex_lock(&c->mu);
    c->res = *r;
    c->n_done++;
    c->done_at = atomic_fetch_add(&clock_, 1) + 1;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static const struct engine_callbacks cbs = {on_text, on_done, NULL};

static void wait_done(struct coll *c)
{
    pthread_mutex_lock(&c->mu);
    while (!c->n_done)
        pthread_cond_wait(&c->cv, &c->mu);
    pthread_mutex_unlock(&c->mu);
}

static void wait_gate(struct coll *c)
{
    pthread_mutex_lock(&c->mu);
    while (!c->gate_reached && !c->n_done)
        pthread_cond_wait(&c->cv, &c->mu);
    pthread_mutex_unlock(&c->mu);
}

static void open_gate(struct coll *c)
{
    pthread_mutex_lock(&c->mu);
    c->gate = 0;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static const struct engine_params greedy = {.max_tokens = GEN, .temperature = 0.0f, .top_p = 1.0f};

static int submit(struct engine_server *s, const char *prompt, const struct engine_params *p,
                  struct coll *c, struct engine_job **job)
{
    char err[256] = "";
    int rc = engine_submit_ex(s, NULL, 0, prompt, p, &cbs, c, job, err, sizeof(err));
    if (rc)
        fprintf(stderr, "  submit \"%s\": %s\n", prompt, err);
    return rc;
}

/* run one job to its end; 0 or the submit error */
static int run(struct engine_server *s, const char *prompt, const struct engine_params *p,
               struct coll *c)
{
    struct engine_job *job = NULL;
    coll_init(c);
    int rc = submit(s, prompt, p, c, &job);
    if (rc == 0) {
        wait_done(c);
        engine_job_release(job);
    }
    return rc;
}

/* c ended as a job that met non-finite logits after n_gen tokens */
static int ended_nonfinite(const struct coll *c, int n_gen)
{
    int ok = c->n_done == 1 && c->res.status == ENGINE_EINVAL && c->res.finish_reason &&
             strcmp(c->res.finish_reason, "error") == 0 && strstr(c->res.error, NONFINITE_MSG) &&
             strstr(c->res.error, "corrupt") && c->res.completion_tokens == n_gen &&
             c->n_text == n_gen;
    if (!ok)
        fprintf(stderr, "  status %d reason %s completion %d (want %d) texts %d error \"%s\"\n",
                c->res.status, c->res.finish_reason ? c->res.finish_reason : "(null)",
                c->res.completion_tokens, n_gen, c->n_text, c->res.error);
    return ok;
}

/* c ended normally: after GEN tokens, or (when may_stop: sampling can draw </s>) at </s> */
static int ended_ok(const struct coll *c, int may_stop)
{
    int len = c->res.finish_reason && strcmp(c->res.finish_reason, "length") == 0;
    int stop = c->res.finish_reason && strcmp(c->res.finish_reason, "stop") == 0;
    int ok = c->n_done == 1 && c->res.status == ENGINE_OK && c->res.error[0] == 0 &&
             ((len && c->res.completion_tokens == GEN && c->len > 0) ||
              (may_stop && stop && c->res.completion_tokens < GEN));
    if (!ok)
        fprintf(stderr, "  status %d reason %s completion %d error \"%s\"\n", c->res.status,
                c->res.finish_reason ? c->res.finish_reason : "(null)", c->res.completion_tokens,
                c->res.error);
    return ok;
}

/* ---- tests ---- */

static const char *const prompts[] = {"x7", "x3x4", "x5", "x9", "x6x8", "x4x5x6"};
#define N_PROMPTS (int)(sizeof(prompts) / sizeof(prompts[0]))

/* the model the poisoned ones are copies of completes every prompt normally, greedy (all GEN
 * tokens: no prompt meets </s> that soon) and sampled */
static void test_healthy_completes(void)
{
    struct model m;
    model_untied(&m);
    struct engine_model *em = open_built(&m);
    struct engine_server *s = NULL;
    REQUIRE(em);
    REQUIRE(engine_server_new(em, 8, &s) == 0);
    struct engine_params sampled = greedy;
    sampled.temperature = 0.8f;
    sampled.seed = 7;
    for (int i = 0; i < N_PROMPTS; i++) {
        struct coll c;
        CHECK_EQ_INT(run(s, prompts[i], i % 2 ? &sampled : &greedy, &c), 0);
        CHECK(ended_ok(&c, i % 2));
        coll_deinit(&c);
    }
    engine_server_free(s);
    engine_model_close(em);
}

/* One bad float in output.weight makes that logit non-finite for every sequence: every job,
 * greedy or sampled, submitted together, ends with the error at its prompt's logits and
 * streams nothing. */
static void check_output_poisoned(float bad)
{
    struct model m;
    model_untied(&m);
    poison_t(&m, "output.weight", 11, 5, bad);
    struct engine_model *em = open_built(&m);
    struct engine_server *s = NULL;
    REQUIRE(em);
    REQUIRE(engine_server_new(em, 8, &s) == 0);
    struct coll c[N_PROMPTS];
    struct engine_job *jobs[N_PROMPTS] = {0};
    for (int i = 0; i < N_PROMPTS; i++) {
        struct engine_params p = greedy;
        if (i % 2) {
            p.temperature = 1.0f;
            p.top_k = 20;
            p.seed = (uint64_t)i;
        }
        coll_init(&c[i]);
        CHECK_EQ_INT(submit(s, prompts[i], &p, &c[i], &jobs[i]), 0);
    }
    for (int i = 0; i < N_PROMPTS; i++) {
        if (!jobs[i])
            continue;
        wait_done(&c[i]);
        CHECK(ended_nonfinite(&c[i], 0));
        CHECK_EQ_INT(c[i].len, 0);
        engine_job_release(jobs[i]);
        coll_deinit(&c[i]);
    }
    /* the server is still usable: the next job meets the same error */
    struct coll again;
    CHECK_EQ_INT(run(s, "x9", &greedy, &again), 0);
    CHECK(ended_nonfinite(&again, 0));
    coll_deinit(&again);
    engine_server_free(s);
    engine_model_close(em);
}

static void test_nan_in_output_weight(void)
{
    check_output_poisoned(NAN);
}

static void test_inf_in_output_weight(void)
{
    check_output_poisoned(INFINITY);
}

/* an infinity in the embedding of a prompt token: the normalization turns it into NaN, which
 * reaches the logits through every layer */
static void test_inf_in_token_embd(void)
{
    struct model m;
    model_untied(&m);
    struct engine_model *healthy = open_built(&m);
    REQUIRE(healthy);
    int x7 = token_of(healthy, "x7", 2);
    engine_model_close(healthy);
    REQUIRE(x7 > 0);
    poison_t(&m, "token_embd.weight", x7, 0, INFINITY);
    struct engine_model *em = open_built(&m);
    struct engine_server *s = NULL;
    REQUIRE(em);
    REQUIRE(engine_server_new(em, 8, &s) == 0);
    struct coll c;
    CHECK_EQ_INT(run(s, "x7", &greedy, &c), 0);
    CHECK(ended_nonfinite(&c, 0));
    coll_deinit(&c);
    engine_server_free(s);
    engine_model_close(em);
}

/* A NaN in the embedding row of a token a job generates (not in its prompt) leaves its prompt's
 * logits finite; the decode step that feeds the token in gives NaN logits. Job A ends there,
 * after the tokens it already streamed, while job B, decoded in the same batch and never
 * feeding that token in, completes exactly as on the healthy model. */
static void test_nan_at_decode_one_of_a_batch(void)
{
    struct model m;
    model_untied(&m);
    struct engine_model *hm = open_built(&m);
    struct engine_server *hs = NULL;
    REQUIRE(hm);
    REQUIRE(engine_server_new(hm, 8, &hs) == 0);

    /* healthy runs: each prompt's GEN greedy tokens */
    struct coll h[N_PROMPTS];
    for (int i = 0; i < N_PROMPTS; i++) {
        CHECK_EQ_INT(run(hs, prompts[i], &greedy, &h[i]), 0);
        CHECK(ended_ok(&h[i], 0) && h[i].n_text == GEN);
    }
    /* A: a prompt whose second generated token is new (neither in its prompt nor its first) */
    int a = -1, bad = -1;
    for (int i = 0; i < N_PROMPTS && a < 0; i++) {
        int t1 = token_of(hm, h[i].text, h[i].piece_end[0]);
        int t2 = token_of(hm, h[i].text + h[i].piece_end[0], h[i].piece_end[1] - h[i].piece_end[0]);
        if (t1 > 0 && t2 > 0 && t2 != t1 && !prompt_has(hm, prompts[i], t2)) {
            a = i;
            bad = t2;
        }
    }
    engine_server_free(hs);
    if (a < 0)
        fprintf(stderr, "  no prompt has a new second token: the builder's data changed?\n");
    REQUIRE(a >= 0);

    poison_t(&m, "token_embd.weight", bad, 3, NAN);
    struct engine_model *pm = open_built(&m);
    struct engine_server *ps = NULL;
    REQUIRE(pm);
    REQUIRE(engine_server_new(pm, 8, &ps) == 0);

    /* alone: A streams its first token, then ends at the decode step that feeds in the second */
    struct coll ca;
    CHECK_EQ_INT(run(ps, prompts[a], &greedy, &ca), 0);
    CHECK(ended_nonfinite(&ca, 2));
    CHECK(ca.len == h[a].piece_end[1] && memcmp(ca.text, h[a].text, ca.len) == 0);
    coll_deinit(&ca);

    /* B: a prompt that, alone on the poisoned model, still gives its healthy text */
    int b = -1;
    for (int i = 0; i < N_PROMPTS && b < 0; i++) {
        if (i == a || prompt_has(pm, prompts[i], bad))
            continue;
        struct coll cb;
        CHECK_EQ_INT(run(ps, prompts[i], &greedy, &cb), 0);
        if (cb.res.status == ENGINE_OK && cb.len == h[i].len &&
            memcmp(cb.text, h[i].text, cb.len) == 0)
            b = i;
        coll_deinit(&cb);
    }
    if (b < 0)
        fprintf(stderr, "  every other prompt generates token %d: the builder's data changed?\n",
                bad);
    REQUIRE(b >= 0);

    /* together: A is held in its first token's callback (its prefill step goes on to decode
     * its second token alone) while B is submitted; in the next step B is prefilled and both
     * are decoded in one batch, where A's logits are NaN and B's are not */
    struct coll *ja = malloc(sizeof(*ja)), *jb = malloc(sizeof(*jb));
    struct engine_job *job_a = NULL, *job_b = NULL;
    REQUIRE(ja && jb);
    coll_init(ja);
    coll_init(jb);
    struct engine_params pa = greedy;
    pa.max_tokens = 64; /* A would go on if its logits were finite */
    ja->gate = 1;
    CHECK_EQ_INT(submit(ps, prompts[a], &pa, ja, &job_a), 0);
    wait_gate(ja);
    CHECK_EQ_INT(submit(ps, prompts[b], &greedy, jb, &job_b), 0);
    /* B is tokenized on the prep thread, which takes jobs in order: once a count submitted
     * after it has ended (here with an error: this model has no chat template), B is in the
     * decode queue, so the step after A's gate takes it */
    {
        struct coll *jc = malloc(sizeof(*jc));
        struct engine_job *job_c = NULL;
        struct engine_msg msg = {"user", "x"};
        char err[256];
        REQUIRE(jc);
        coll_init(jc);
        CHECK_EQ_INT(engine_count_submit(ps, &msg, 1, &cbs, jc, &job_c, err, sizeof(err)), 0);
        if (job_c) {
            wait_done(jc);
            engine_job_release(job_c);
        }
        coll_deinit(jc);
        free(jc);
    }
    open_gate(ja);
    if (job_a) {
        wait_done(ja);
        CHECK(ended_nonfinite(ja, 2));
        engine_job_release(job_a);
    }
    if (job_b) {
        wait_done(jb);
        CHECK(ended_ok(jb, 0));
        CHECK(jb->len == h[b].len && memcmp(jb->text, h[b].text, jb->len) == 0);
        /* B had streamed its first token (it was decoding) before A's error */
        CHECK(jb->first_text_at > 0 && jb->first_text_at < ja->done_at);
        engine_job_release(job_b);
    }
    coll_deinit(ja);
    coll_deinit(jb);
    free(ja);
    free(jb);
    for (int i = 0; i < N_PROMPTS; i++)
        coll_deinit(&h[i]);
    engine_server_free(ps);
    engine_model_close(pm);
    engine_model_close(hm);
}

int main(void)
{
    snprintf(tmp_dir, sizeof(tmp_dir), "/tmp/airlock_nonfinite_XXXXXX");
    if (!mkdtemp(tmp_dir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_healthy_completes);
    RUN(test_nan_in_output_weight);
    RUN(test_inf_in_output_weight);
    RUN(test_inf_in_token_embd);
    RUN(test_nan_at_decode_one_of_a_batch);
    rmdir(tmp_dir);
    return harness_done();
}
