/* test_count.c -- engine_count_prompt_tokens on the tiny models: the count of a chat equals
 * llama.cpp's token count of the templated prompt (the goldens' `chat` case), equals the
 * prompt_tokens a job for the same messages reports, needs no context room, and refuses
 * what engine_submit refuses (no chat template, roles the template cannot place).
 * engine_count_submit (the same count on the server's prep thread) gives the same numbers
 * and the same refusals through on_done. */
#include <cJSON.h>
#include <pthread.h>

#include "engine/engine.h"
#include "engine/engine_ext.h"
#include "engine/engine_int.h"
#include "engine/tokenizer.h"
#include "harness.h"

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

/* a job's end, waited for */
struct done {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int n;
    struct engine_result res;
};

static void on_text(void *ud, const char *text, size_t len)
{
    (void)ud;
    (void)text;
    (void)len;
}

static void on_done(void *ud, const struct engine_result *r)
{
    struct done *d = ud;
    pthread_mutex_lock(&d->mu);
    d->res = *r;
    d->n++;
    pthread_cond_broadcast(&d->cv);
    pthread_mutex_unlock(&d->mu);
}

static const struct engine_callbacks cbs = {on_text, on_done, NULL};

/* the prompt_tokens a one-token job for msgs reports, or -1 */
static int job_prompt_tokens(struct engine_server *s, const struct engine_msg *msgs, size_t n)
{
    struct done d = {.n = 0};
    struct engine_params p = {.max_tokens = 1, .temperature = 0.0f, .top_p = 1.0f};
    struct engine_job *job = NULL;
    char err[256] = "";
    int got;

    pthread_mutex_init(&d.mu, NULL);
    pthread_cond_init(&d.cv, NULL);
    if (engine_submit_ex(s, msgs, n, NULL, &p, &cbs, &d, &job, err, sizeof(err)) != 0) {
        fprintf(stderr, "  submit: %s\n", err);
        got = -1;
        goto out;
    }
    pthread_mutex_lock(&d.mu);
    while (!d.n)
        pthread_cond_wait(&d.cv, &d.mu);
    pthread_mutex_unlock(&d.mu);
    engine_job_release(job);
    got = d.res.status == ENGINE_OK ? d.res.prompt_tokens : -1;
out:
    pthread_mutex_destroy(&d.mu);
    pthread_cond_destroy(&d.cv);
    return got;
}

static const char *const chat_models[] = {"tiny-llama3-f32", "tiny-llama3-q8_0",
                                          "tiny-llama2-tied-f32", "tiny-qwen2-f32"};

/* the goldens' chat case: llama_chat_apply_template + llama_tokenize, counted by llama.cpp */
static void test_golden_chat_count(void)
{
    for (size_t mi = 0; mi < sizeof(chat_models) / sizeof(chat_models[0]); mi++) {
        cJSON *g = load_golden(chat_models[mi]);
        struct engine_model *m = open_model(chat_models[mi], 0);
        const cJSON *c, *chat = NULL;
        struct engine_msg msgs[4];
        size_t n = 0;
        int count = -1, want = -1;
        char err[256] = "";

        REQUIRE(g && m);
        cJSON_ArrayForEach(c, cJSON_GetObjectItem(g, "cases"))
        {
            if (cJSON_GetObjectItem(c, "chat")) {
                chat = cJSON_GetObjectItem(c, "chat");
                want = (int)cJSON_GetObjectItem(c, "n_prompt_tokens")->valuedouble;
            }
        }
        REQUIRE(chat);
        cJSON_ArrayForEach(c, cJSON_GetObjectItem(chat, "messages"))
        {
            REQUIRE(n < 4);
            msgs[n].role = cJSON_GetObjectItem(c, "role")->valuestring;
            msgs[n].content = cJSON_GetObjectItem(c, "content")->valuestring;
            n++;
        }
        CHECK_EQ_INT(engine_count_prompt_tokens(m, msgs, n, &count, err, sizeof(err)), 0);
        if (count != want)
            fprintf(stderr, "  %s: counted %d, llama.cpp %d\n", chat_models[mi], count, want);
        CHECK_EQ_INT(count, want);
        engine_model_close(m);
        cJSON_Delete(g);
    }
}

/* what a job reports as its prompt, for conversations of several shapes */
static void test_count_equals_job(void)
{
    static const struct engine_msg one[] = {{"user", "hello"}};
    static const struct engine_msg sys[] = {{"system", "be brief"}, {"user", "hello there"}};
    static const struct engine_msg turns[] = {{"system", "You answer in French."},
                                              {"user", "What is 2 + 2? café, 日本語, 🙂"},
                                              {"assistant", "Quatre."},
                                              {"user", "<|eot_id|> and [INST] are just text?"}};
    static const struct {
        const struct engine_msg *m;
        size_t n;
    } convs[] = {{one, 1}, {sys, 2}, {turns, 4}};

    for (size_t mi = 0; mi < sizeof(chat_models) / sizeof(chat_models[0]); mi++) {
        struct engine_model *m = open_model(chat_models[mi], 512);
        struct engine_server *s = NULL;

        REQUIRE(m);
        REQUIRE(engine_server_new(m, 4, &s) == 0);
        for (size_t k = 0; k < sizeof(convs) / sizeof(convs[0]); k++) {
            int count = -1, job;
            char err[256] = "";
            CHECK_EQ_INT(
                engine_count_prompt_tokens(m, convs[k].m, convs[k].n, &count, err, sizeof(err)), 0);
            job = job_prompt_tokens(s, convs[k].m, convs[k].n);
            if (count != job || count <= 0)
                fprintf(stderr, "  %s conversation %zu: counted %d, the job's prompt %d\n",
                        chat_models[mi], k, count, job);
            CHECK(count > 0);
            CHECK_EQ_INT(count, job);
        }
        engine_server_free(s);
        engine_model_close(m);
    }
}

/* a count needs no room in the context: a prompt a job refuses is still counted */
static void test_count_beyond_context(void)
{
    struct engine_model *m = open_model("tiny-llama3-f32", 64);
    struct engine_server *s = NULL;
    struct engine_job *job = NULL;
    char text[4096], err[256] = "";
    size_t o = 0;
    int count = -1;

    REQUIRE(m);
    REQUIRE(engine_server_new(m, 2, &s) == 0);
    for (int i = 0; i < 200 && o + 16 < sizeof(text); i++)
        o += (size_t)snprintf(text + o, sizeof(text) - o, "word%d ", i);
    struct engine_msg msg = {"user", text};
    CHECK_EQ_INT(engine_count_prompt_tokens(m, &msg, 1, &count, err, sizeof(err)), 0);
    CHECK(count > 64);
    {
        struct done d = {.n = 0};
        pthread_mutex_init(&d.mu, NULL);
        pthread_cond_init(&d.cv, NULL);
        /* the job is taken; the prep thread finds it too long and says so through on_done */
        CHECK_EQ_INT(engine_submit_ex(s, &msg, 1, NULL, NULL, &cbs, &d, &job, err, sizeof(err)), 0);
        pthread_mutex_lock(&d.mu);
        while (job && !d.n)
            pthread_cond_wait(&d.cv, &d.mu);
        pthread_mutex_unlock(&d.mu);
        CHECK_EQ_INT(d.res.status, ENGINE_ECONTEXT);
        CHECK_EQ_INT(d.res.prompt_tokens, count);
        CHECK(strstr(d.res.error, "context holds 64") != NULL);
        engine_job_release(job);
        pthread_mutex_destroy(&d.mu);
        pthread_cond_destroy(&d.cv);
    }
    engine_server_free(s);
    engine_model_close(m);
}

static void test_count_errors(void)
{
    struct engine_model *m = open_model("stories260K", 0);
    struct engine_msg msg = {"user", "hi"};
    char err[256] = "";
    int count = 7;

    REQUIRE(m);
    CHECK_EQ_INT(engine_count_prompt_tokens(m, &msg, 1, &count, err, sizeof(err)),
                 ENGINE_ETEMPLATE);
    CHECK(strstr(err, "chat template") != NULL);
    CHECK_EQ_INT(count, 0);
    engine_model_close(m);

    m = open_model("tiny-llama2-tied-f32", 0);
    REQUIRE(m);
    /* Llama 2's template needs user and assistant turns to alternate */
    struct engine_msg two[] = {{"user", "a"}, {"user", "b"}};
    err[0] = '\0';
    CHECK_EQ_INT(engine_count_prompt_tokens(m, two, 2, &count, err, sizeof(err)), ENGINE_EINVAL);
    CHECK(strstr(err, "alternating") != NULL);
    CHECK_EQ_INT(engine_count_prompt_tokens(m, NULL, 0, &count, err, sizeof(err)), ENGINE_EINVAL);
    CHECK_EQ_INT(engine_count_prompt_tokens(m, &msg, 1, NULL, err, sizeof(err)), ENGINE_EINVAL);
    CHECK_EQ_INT(engine_count_prompt_tokens(NULL, &msg, 1, &count, err, sizeof(err)),
                 ENGINE_EINVAL);
    engine_model_close(m);
}

/* engine_count_submit, waited for: *count and the result, or -1 when submit failed */
static int count_async(struct engine_server *s, const struct engine_msg *msgs, size_t n,
                       struct engine_result *res, char *err, size_t errlen)
{
    struct done d = {.n = 0};
    struct engine_job *job = NULL;
    int rc;

    pthread_mutex_init(&d.mu, NULL);
    pthread_cond_init(&d.cv, NULL);
    rc = engine_count_submit(s, msgs, n, &cbs, &d, &job, err, errlen);
    if (rc == 0) {
        pthread_mutex_lock(&d.mu);
        while (!d.n)
            pthread_cond_wait(&d.cv, &d.mu);
        pthread_mutex_unlock(&d.mu);
        *res = d.res;
        CHECK_EQ_INT(d.n, 1);
        engine_job_release(job);
    } else {
        CHECK(job == NULL);
    }
    pthread_mutex_destroy(&d.mu);
    pthread_cond_destroy(&d.cv);
    return rc;
}

/* the prep thread's count equals the caller's, beyond the context too; its refusals are the
 * same sentences, through on_done */
static void test_count_submit(void)
{
    static const struct engine_msg sys[] = {{"system", "be brief"}, {"user", "hello there"}};
    static const struct engine_msg two[] = {{"user", "a"}, {"user", "b"}};
    struct engine_result res;
    char text[4096], err[256] = "", err2[256] = "";
    size_t o = 0;
    int count = -1;

    for (size_t mi = 0; mi < sizeof(chat_models) / sizeof(chat_models[0]); mi++) {
        struct engine_model *m = open_model(chat_models[mi], 64);
        struct engine_server *s = NULL;
        REQUIRE(m);
        REQUIRE(engine_server_new(m, 2, &s) == 0);
        memset(&res, 0, sizeof(res));
        CHECK_EQ_INT(engine_count_prompt_tokens(m, sys, 2, &count, err, sizeof(err)), 0);
        CHECK_EQ_INT(count_async(s, sys, 2, &res, err, sizeof(err)), 0);
        CHECK_EQ_INT(res.status, ENGINE_OK);
        CHECK_EQ_INT(res.prompt_tokens, count);
        CHECK_EQ_INT(res.completion_tokens, 0);
        engine_server_free(s);
        engine_model_close(m);
    }

    struct engine_model *m = open_model("tiny-llama2-tied-f32", 64);
    struct engine_server *s = NULL;
    REQUIRE(m);
    REQUIRE(engine_server_new(m, 2, &s) == 0);
    for (int i = 0; i < 200 && o + 16 < sizeof(text); i++)
        o += (size_t)snprintf(text + o, sizeof(text) - o, "word%d ", i);
    struct engine_msg big = {"user", text};
    CHECK_EQ_INT(engine_count_prompt_tokens(m, &big, 1, &count, err, sizeof(err)), 0);
    CHECK(count > 64);
    CHECK_EQ_INT(count_async(s, &big, 1, &res, err, sizeof(err)), 0);
    CHECK_EQ_INT(res.status, ENGINE_OK);
    CHECK_EQ_INT(res.prompt_tokens, count);
    /* roles the template cannot place: EINVAL through on_done, the same sentence */
    CHECK_EQ_INT(engine_count_prompt_tokens(m, two, 2, &count, err, sizeof(err)), ENGINE_EINVAL);
    CHECK_EQ_INT(count_async(s, two, 2, &res, err2, sizeof(err2)), 0);
    CHECK_EQ_INT(res.status, ENGINE_EINVAL);
    CHECK_EQ_INT(res.prompt_refused, 1);
    CHECK_EQ_STR(res.error, err);
    /* bad arguments: refused by submit, no callback */
    CHECK_EQ_INT(count_async(s, NULL, 0, &res, err2, sizeof(err2)), ENGINE_EINVAL);
    CHECK(strstr(err2, "no messages") != NULL);
    CHECK_EQ_INT(engine_count_submit(NULL, two, 2, &cbs, NULL, NULL, err2, sizeof(err2)),
                 ENGINE_EINVAL);
    engine_server_free(s);
    engine_model_close(m);

    /* no chat template */
    m = open_model("stories260K", 0);
    REQUIRE(m);
    REQUIRE(engine_server_new(m, 2, &s) == 0);
    CHECK_EQ_INT(engine_count_prompt_tokens(m, two, 1, &count, err, sizeof(err)), ENGINE_ETEMPLATE);
    CHECK_EQ_INT(count_async(s, two, 1, &res, err2, sizeof(err2)), 0);
    CHECK_EQ_INT(res.status, ENGINE_ETEMPLATE);
    CHECK_EQ_STR(res.error, err);
    engine_server_free(s);
    engine_model_close(m);
}

/* ---- the prep queue: small prompts first, a prompt too long refused untokenized ---- */

struct ordered {
    pthread_mutex_t *mu;
    pthread_cond_t *cv;
    int *seq;  /* the next end's number, shared */
    int ended; /* this job's number + 1, once on_done ran */
    int gate;  /* on_ready waits while set (holds the prep thread) */
    int at_gate;
    struct engine_result res;
};

static void ord_done(void *ud, const struct engine_result *r)
{
    struct ordered *o = ud;
    pthread_mutex_lock(o->mu);
    o->res = *r;
    o->ended = ++*o->seq;
    pthread_cond_broadcast(o->cv);
    pthread_mutex_unlock(o->mu);
}

static void ord_ready(void *ud, int prompt_tokens)
{
    struct ordered *o = ud;
    (void)prompt_tokens;
    pthread_mutex_lock(o->mu);
    o->at_gate = 1;
    pthread_cond_broadcast(o->cv);
    while (o->gate)
        pthread_cond_wait(o->cv, o->mu);
    pthread_mutex_unlock(o->mu);
}

static const struct engine_callbacks ord_cbs = {on_text, ord_done, ord_ready};

static char *repeat_words(size_t bytes)
{
    char *t = malloc(bytes + 1);
    if (!t)
        return NULL;
    for (size_t i = 0; i < bytes; i++)
        t[i] = "lorem ipsum dolor sit amet "[i % 27];
    t[bytes] = 0;
    return t;
}

/* While the prep thread is held (A's on_ready waits), a 1 MB count B and then a short count
 * C are queued: C is counted before B (FIFO would end B first). Then a prompt too long for
 * the context by its bytes alone is refused with ECONTEXT without being tokenized (the
 * message gives the lower bound), while a count of it still tokenizes and gives at least
 * that bound; and one small prompt passes at most PREP_MAX_PASSED (32) big ones: 40 small
 * counts queued behind a held prep thread and one big count end the big one 33rd. */
static void test_prep_order(void)
{
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
    int seq = 0;
    struct ordered a = {&mu, &cv, &seq, 0, 1, 0, {0}}, b = {&mu, &cv, &seq, 0, 0, 0, {0}},
                   c = {&mu, &cv, &seq, 0, 0, 0, {0}};
    struct engine_job *ja = NULL, *jb = NULL, *jc = NULL;
    struct engine_params p = {.max_tokens = 1, .temperature = 0.0f, .top_p = 1.0f};
    char err[256] = "";
    char *big = repeat_words(1 << 20);
    struct engine_msg ma = {"user", "hello"}, mb = {"user", big}, mc = {"user", "hi there"};
    struct engine_model *m = open_model("tiny-llama3-f32", 64);
    struct engine_server *s = NULL;

    REQUIRE(big && m);
    REQUIRE(engine_server_new(m, 64, &s) == 0);
    REQUIRE(engine_submit_ex(s, &ma, 1, NULL, &p, &ord_cbs, &a, &ja, err, sizeof(err)) == 0);
    pthread_mutex_lock(&mu);
    while (!a.at_gate)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    REQUIRE(engine_count_submit(s, &mb, 1, &ord_cbs, &b, &jb, err, sizeof(err)) == 0);
    REQUIRE(engine_count_submit(s, &mc, 1, &ord_cbs, &c, &jc, err, sizeof(err)) == 0);
    pthread_mutex_lock(&mu);
    a.gate = 0;
    pthread_cond_broadcast(&cv);
    while (!a.ended || !b.ended || !c.ended)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    CHECK_EQ_INT(b.res.status, ENGINE_OK);
    CHECK_EQ_INT(c.res.status, ENGINE_OK);
    CHECK(c.ended < b.ended);
    CHECK(b.res.prompt_tokens > 64);
    size_t maxb = tokenizer_max_bytes(m->tok);
    CHECK((size_t)b.res.prompt_tokens >= ((size_t)1 << 20) / maxb);
    engine_job_release(ja);
    engine_job_release(jb);
    engine_job_release(jc);

    /* too long by its bytes: refused before tokenizing, the bound in the message */
    struct ordered d = {&mu, &cv, &seq, 0, 0, 0, {0}};
    struct engine_job *jd = NULL;
    REQUIRE(engine_submit_ex(s, &mb, 1, NULL, &p, &ord_cbs, &d, &jd, err, sizeof(err)) == 0);
    pthread_mutex_lock(&mu);
    while (!d.ended)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    CHECK_EQ_INT(d.res.status, ENGINE_ECONTEXT);
    CHECK(d.res.prompt_refused);
    CHECK(strstr(d.res.error, "at least") != NULL);
    engine_job_release(jd);

    /* bounded passing: 40 small counts behind a held prep thread and one big count */
    struct ordered g = {&mu, &cv, &seq, 0, 1, 0, {0}}, bigc = {&mu, &cv, &seq, 0, 0, 0, {0}};
    struct ordered small[40];
    struct engine_job *jg = NULL, *jbig = NULL, *js[40] = {0};
    REQUIRE(engine_submit_ex(s, &ma, 1, NULL, &p, &ord_cbs, &g, &jg, err, sizeof(err)) == 0);
    pthread_mutex_lock(&mu);
    while (!g.at_gate)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    REQUIRE(engine_count_submit(s, &mb, 1, &ord_cbs, &bigc, &jbig, err, sizeof(err)) == 0);
    for (int i = 0; i < 40; i++) {
        small[i] = (struct ordered){&mu, &cv, &seq, 0, 0, 0, {0}};
        REQUIRE(engine_count_submit(s, &mc, 1, &ord_cbs, &small[i], &js[i], err, sizeof(err)) == 0);
    }
    pthread_mutex_lock(&mu);
    int first = seq;
    g.gate = 0;
    pthread_cond_broadcast(&cv);
    for (;;) {
        int all = g.ended && bigc.ended;
        for (int i = 0; i < 40; i++)
            all = all && small[i].ended;
        if (all)
            break;
        pthread_cond_wait(&cv, &mu);
    }
    pthread_mutex_unlock(&mu);
    /* ends after the gate: g (its one token, any time after), 32 small, the big, 8 small;
     * counted among the counts only */
    int before = 0;
    for (int i = 0; i < 40; i++) {
        before += small[i].ended < bigc.ended;
        if (i > 0)
            CHECK(small[i].ended > small[i - 1].ended); /* small ones keep their order */
    }
    CHECK_EQ_INT(before, 32);
    CHECK(bigc.ended > first);
    engine_job_release(jg);
    engine_job_release(jbig);
    for (int i = 0; i < 40; i++)
        engine_job_release(js[i]);
    engine_server_free(s);
    engine_model_close(m);
    free(big);
}

/* the byte bound counts only what the template keeps: Llama 3 trims each message, so a short
 * question padded with whitespace far beyond context * tokenizer_max_bytes runs (a false
 * ECONTEXT "at least" when the padding was counted), and so does a raw prompt's count */
static void test_bound_trimmed(void)
{
    struct engine_model *m = open_model("tiny-llama3-f32", 64);
    struct engine_server *s = NULL;
    size_t maxb, n;
    char *text;

    REQUIRE(m);
    REQUIRE(engine_server_new(m, 2, &s) == 0);
    maxb = tokenizer_max_bytes(m->tok);
    n = 64 * maxb * 2 + 16;
    text = malloc(n + 1);
    REQUIRE(text);
    memset(text, ' ', n);
    memcpy(text + n / 2, "hi", 2);
    for (size_t i = 0; i < n / 4; i++)
        text[i] = i % 2 ? '\n' : '\t';
    text[n] = '\0';
    struct engine_msg msgs[2] = {{"system", text}, {"user", text}};
    int got = job_prompt_tokens(s, msgs, 2);
    CHECK(got > 0 && got < 64);
    /* what the template keeps still counts: the same words without the padding, past it */
    char *words = repeat_words(64 * maxb + 64);
    REQUIRE(words);
    struct engine_msg w = {"user", words};
    struct done d = {.n = 0};
    struct engine_job *job = NULL;
    char err[256] = "";
    pthread_mutex_init(&d.mu, NULL);
    pthread_cond_init(&d.cv, NULL);
    CHECK_EQ_INT(engine_submit_ex(s, &w, 1, NULL, NULL, &cbs, &d, &job, err, sizeof(err)), 0);
    pthread_mutex_lock(&d.mu);
    while (job && !d.n)
        pthread_cond_wait(&d.cv, &d.mu);
    pthread_mutex_unlock(&d.mu);
    CHECK_EQ_INT(d.res.status, ENGINE_ECONTEXT);
    CHECK(strstr(d.res.error, "at least") != NULL);
    engine_job_release(job);
    pthread_mutex_destroy(&d.mu);
    pthread_cond_destroy(&d.cv);
    free(words);
    free(text);
    engine_server_free(s);
    engine_model_close(m);
}

int main(void)
{
    RUN(test_golden_chat_count);
    RUN(test_count_equals_job);
    RUN(test_count_beyond_context);
    RUN(test_count_errors);
    RUN(test_count_submit);
    RUN(test_prep_order);
    RUN(test_bound_trimmed);
    return harness_done();
}
