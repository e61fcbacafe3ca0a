/* test_forward.c -- forward pass against llama.cpp goldens (every model, every case), batching equivalences, errors. */
#include "engine/forward.h"
#include "engine/gguf.h"
#include "engine/quant.h"
#include "harness.h"

#include <cJSON.h>
#include <math.h>
#include <stdint.h>

static const char *golden_models[] = {
    "stories260K",         "stories260K-q8_0",     "stories260K-q4_0",   "tiny-qwen2-f32",
    "tiny-qwen2-q8_0",     "tiny-llama3-f32",      "tiny-llama3-q8_0",   "tiny-llama3-q4_0",
    "tiny-llama2-tied-f32", "tiny-llama2-tied-q8_0", "tiny-kq-q4_k_m",    "tiny-kq-q5_k_m",
    "tiny-kq-q6_k",        "tiny-kq-bf16",
};

struct model {
    struct gguf_file *f;
    struct engine_weights *w;
};

static int model_open(const char *name, struct model *m)
{
    char p[1024], err[256] = "";
    snprintf(p, sizeof(p), "%s/models/%s.gguf", harness_shared(), name);
    memset(m, 0, sizeof(*m));
    if (gguf_open(p, &m->f, err, sizeof(err)) != 0 ||
        engine_weights_load(m->f, &m->w, err, sizeof(err)) != 0) {
        fprintf(stderr, "  %s: %s\n", name, err);
        gguf_close(m->f);
        return -1;
    }
    return 0;
}

static void model_close(struct model *m)
{
    engine_weights_free(m->w);
    gguf_close(m->f);
}

static int argmax(const float *x, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return best;
}

static void tolerances(const char *name, double *first, double *later)
{
    if (strstr(name, "q8_0") || strstr(name, "q4_0"))
        *first = 2e-2, *later = 3e-2;
    else if (strstr(name, "_k"))
        *first = 2e-2, *later = 5e-2;
    else if (strstr(name, "bf16"))
        *first = 1e-2, *later = 1.5e-2;
    else
        *first = 1e-3, *later = 1e-3;
}

static int n_int_array(const cJSON *a, int32_t *out, int max)
{
    int n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, a)
    {
        if (n < max)
            out[n] = (int32_t)e->valuedouble;
        n++;
    }
    return n;
}

/* Teacher-forced comparison of one golden file, plus the greedy path up to a near tie. */
static void check_golden(const char *name)
{
    char p[1024];
    snprintf(p, sizeof(p), "%s/models/golden/%s.json", harness_shared(), name);
    char *js = harness_read_file(p, NULL);
    REQUIRE(js != NULL);
    cJSON *root = cJSON_Parse(js);
    free(js);
    REQUIRE(root != NULL);
    struct model m;
    if (model_open(name, &m) != 0) {
        CHECK(0);
        cJSON_Delete(root);
        return;
    }
    const int n_vocab = m.w->hp.n_vocab;
    CHECK_EQ_INT(n_vocab, cJSON_GetObjectItem(root, "n_vocab")->valueint);
    double tol_first, tol_later;
    tolerances(name, &tol_first, &tol_later);
    struct engine_ctx *ctx = NULL;
    struct engine_kv *kv = NULL;
    char err[256];
    /* batch 64: the long prompts are prefilled in several chunks */
    REQUIRE(engine_ctx_new(m.w, 2, 64, &ctx, err, sizeof(err)) == 0);
    REQUIRE(engine_kv_new(m.w, 512, &kv, err, sizeof(err)) == 0);
    float *logits = malloc(sizeof(float) * (size_t)n_vocab);
    int32_t toks[600], greedy[64];
    const cJSON *c;
    double worst_first = 0, worst_later = 0;
    int greedy_checked = 0, cases = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(root, "cases"))
    {
        const char *cname = cJSON_GetObjectItem(c, "name")->valuestring;
        int np = n_int_array(cJSON_GetObjectItem(c, "prompt_tokens"), toks, 600);
        int ng = n_int_array(cJSON_GetObjectItem(c, "greedy_tokens"), greedy, 64);
        REQUIRE(np <= 600 && ng <= 64 && ng >= 1);
        engine_kv_clear(kv);
        int rc = engine_forward_prefill(ctx, kv, toks, np, logits);
        if (rc)
            fprintf(stderr, "  %s/%s: %s\n", name, cname, engine_ctx_error(ctx));
        REQUIRE(rc == 0);
        cases++;
        const cJSON *fl = cJSON_GetObjectItem(c, "first_logits");
        double scale0 = fmax(fabs(cJSON_GetObjectItem(fl, "max")->valuedouble),
                             fabs(cJSON_GetObjectItem(fl, "min")->valuedouble));
        double lim0 = tol_first * scale0, d0 = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, cJSON_GetObjectItem(fl, "top64"))
        {
            int id = cJSON_GetArrayItem(e, 0)->valueint;
            double v = cJSON_GetArrayItem(e, 1)->valuedouble;
            d0 = fmax(d0, fabs(logits[id] - v));
        }
        const cJSON *full = cJSON_GetObjectItem(fl, "full");
        const cJSON *sampled = cJSON_GetObjectItem(fl, "sampled");
        int stride = full ? 1 : cJSON_GetObjectItem(fl, "sampled_stride")->valueint;
        int i = 0;
        const cJSON *vec = full ? full : sampled;
        cJSON_ArrayForEach(e, vec)
        {
            REQUIRE((long)i * stride < n_vocab);
            d0 = fmax(d0, fabs(logits[i * stride] - e->valuedouble));
            i++;
        }
        CHECK(i > 0);
        worst_first = fmax(worst_first, d0 / scale0);
        if (getenv("AIRLOCK_TEST_VERBOSE"))
            fprintf(stderr, "    %s/%s first %.2e\n", name, cname, d0 / scale0);
        if (!(d0 <= lim0))
            fprintf(stderr, "  %s/%s: first logits off by %g (limit %g)\n", name, cname, d0, lim0);
        CHECK(d0 <= lim0);

        const cJSON *top5 = cJSON_GetObjectItem(c, "step_top5");
        const cJSON *margin = cJSON_GetObjectItem(c, "step_margin");
        const cJSON *maxabs = cJSON_GetObjectItem(c, "step_max_abs_logit");
        int greedy_on = 1;
        for (int s = 0; s < ng; s++) {
            if (s > 0) {
                int32_t tk = greedy[s - 1];
                struct engine_kv *kvs[1] = {kv};
                REQUIRE(engine_forward_decode(ctx, kvs, &tk, 1, logits) == 0);
            }
            double tol = s == 0 ? tol_first : tol_later;
            double sc = cJSON_GetArrayItem(maxabs, s)->valuedouble;
            double ds = 0;
            cJSON_ArrayForEach(e, cJSON_GetArrayItem(top5, s))
            {
                int id = cJSON_GetArrayItem(e, 0)->valueint;
                ds = fmax(ds, fabs(logits[id] - cJSON_GetArrayItem(e, 1)->valuedouble));
            }
            if (s > 0)
                worst_later = fmax(worst_later, ds / sc);
            if (!(ds <= tol * sc))
                fprintf(stderr, "  %s/%s step %d: top5 off by %g (limit %g)\n", name, cname, s,
                        ds, tol * sc);
            CHECK(ds <= tol * sc);
            /* free-running greedy == teacher-forced argmax while every earlier step matched */
            if (greedy_on && cJSON_GetArrayItem(margin, s)->valuedouble < 2 * tol * sc)
                greedy_on = 0;
            if (greedy_on) {
                int am = argmax(logits, n_vocab);
                if (am != greedy[s])
                    fprintf(stderr, "  %s/%s step %d: greedy %d, golden %d\n", name, cname, s, am,
                            greedy[s]);
                CHECK_EQ_INT(am, greedy[s]);
                greedy_checked++;
            }
        }
    }
    fprintf(stderr, "  %-22s %d cases, worst rel diff first %.2e later %.2e, %d greedy ids checked\n",
            name, cases, worst_first, worst_later, greedy_checked);
    CHECK(cases >= 4);
    free(logits);
    engine_kv_free(kv);
    engine_ctx_free(ctx);
    model_close(&m);
    cJSON_Delete(root);
}

static void test_goldens(void)
{
    for (size_t i = 0; i < sizeof(golden_models) / sizeof(golden_models[0]); i++)
        check_golden(golden_models[i]);
}

static double max_diff(const float *a, const float *b, size_t n, double *scale)
{
    double d = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs(a[i] - b[i]));
        s = fmax(s, fabs(b[i]));
    }
    *scale = s;
    return d;
}

/* Batched decode of 3 sequences == each decoded alone; prefill == token-by-token decode. */
static void check_batching(const char *name)
{
    struct model m;
    REQUIRE(model_open(name, &m) == 0);
    const int nv = m.w->hp.n_vocab;
    struct engine_ctx *ctx = NULL;
    char err[256];
    REQUIRE(engine_ctx_new(m.w, 2, 8, &ctx, err, sizeof(err)) == 0);
    struct engine_kv *a[3], *b[3];
    for (int i = 0; i < 3; i++) {
        REQUIRE(engine_kv_new(m.w, 64, &a[i], err, sizeof(err)) == 0);
        REQUIRE(engine_kv_new(m.w, 64, &b[i], err, sizeof(err)) == 0);
    }
    float *la = malloc(sizeof(float) * (size_t)nv * 3), *lb = malloc(sizeof(float) * (size_t)nv * 3);
    const int32_t prompts[3][20] = {
        {1, 5, 9, 13, 17, 21, 25, 29, 33, 37, 41, 45, 49, 53, 57, 61, 65, 69, 73, 77},
        {2, 4, 8, 16, 32, 64, 128, 256, 3, 7},
        {11, 22, 33, 44, 55},
    };
    const int plen[3] = {20, 10, 5};
    double worst = 0, s;
    /* different lengths: prefill a[i] in one go, b[i] one token at a time */
    for (int i = 0; i < 3; i++) {
        REQUIRE(engine_forward_prefill(ctx, a[i], prompts[i], plen[i], la + i * nv) == 0);
        for (int t = 0; t < plen[i]; t++) {
            struct engine_kv *one[1] = {b[i]};
            REQUIRE(engine_forward_decode(ctx, one, &prompts[i][t], 1, lb + i * nv) == 0);
        }
        double d = max_diff(la + i * nv, lb + i * nv, (size_t)nv, &s);
        worst = fmax(worst, d / s);
        CHECK(d <= 1e-4 * s);
        CHECK_EQ_INT(engine_kv_len(a[i]), plen[i]);
    }
    /* then 4 steps: batched for a, sequential for b */
    for (int step = 0; step < 4; step++) {
        int32_t tk[3];
        for (int i = 0; i < 3; i++)
            tk[i] = argmax(la + i * nv, nv);
        REQUIRE(engine_forward_decode(ctx, a, tk, 3, la) == 0);
        for (int i = 0; i < 3; i++) {
            struct engine_kv *one[1] = {b[i]};
            REQUIRE(engine_forward_decode(ctx, one, &tk[i], 1, lb + i * nv) == 0);
        }
        double d = max_diff(la, lb, (size_t)nv * 3, &s);
        worst = fmax(worst, d / s);
        CHECK(d <= 1e-4 * s);
    }
    fprintf(stderr, "  %-22s batched vs sequential: worst rel diff %.2e\n", name, worst);
    for (int i = 0; i < 3; i++) {
        engine_kv_free(a[i]);
        engine_kv_free(b[i]);
    }
    free(la);
    free(lb);
    engine_ctx_free(ctx);
    model_close(&m);
}

static void test_batching(void)
{
    check_batching("tiny-llama3-q4_0");
    check_batching("tiny-qwen2-q8_0");
    check_batching("tiny-kq-q4_k_m");
    check_batching("stories260K");
}

/* Many short stages with varying unit counts on 2 and 4 threads: the pool must neither
 * hang nor run a unit twice (the logits then stop matching the 1-thread result). */
static void test_pool_stress(void)
{
    struct model m;
    REQUIRE(model_open("tiny-llama3-q4_0", &m) == 0);
    const int nv = m.w->hp.n_vocab;
    char err[256];
    struct engine_ctx *ref = NULL;
    REQUIRE(engine_ctx_new(m.w, 1, 8, &ref, err, sizeof(err)) == 0);
    float *l1 = malloc(sizeof(float) * (size_t)nv * 8), *l2 = malloc(sizeof(float) * (size_t)nv * 8);
    const int threads[] = {2, 4};
    for (int ti = 0; ti < 2; ti++) {
        struct engine_ctx *ctx = NULL;
        REQUIRE(engine_ctx_new(m.w, threads[ti], 8, &ctx, err, sizeof(err)) == 0);
        struct engine_kv *a[8], *b[8];
        for (int i = 0; i < 8; i++) {
            REQUIRE(engine_kv_new(m.w, 256, &a[i], err, sizeof(err)) == 0);
            REQUIRE(engine_kv_new(m.w, 256, &b[i], err, sizeof(err)) == 0);
        }
        int bad = 0;
        for (int step = 0; step < 150; step++) {
            const int ns = 1 + (step * 5) % 8;
            int32_t tk[8];
            for (int i = 0; i < ns; i++)
                tk[i] = (int32_t)((step * 31 + i * 7) % nv);
            REQUIRE(engine_forward_decode(ctx, a, tk, ns, l1) == 0);
            REQUIRE(engine_forward_decode(ref, b, tk, ns, l2) == 0);
            if (memcmp(l1, l2, sizeof(float) * (size_t)nv * (size_t)ns) != 0)
                bad++;
        }
        CHECK_EQ_INT(bad, 0);
        for (int i = 0; i < 8; i++) {
            engine_kv_free(a[i]);
            engine_kv_free(b[i]);
        }
        engine_ctx_free(ctx);
    }
    free(l1);
    free(l2);
    engine_ctx_free(ref);
    model_close(&m);
}

static void test_errors(void)
{
    struct model m;
    REQUIRE(model_open("tiny-llama3-q8_0", &m) == 0);
    struct engine_ctx *ctx = NULL;
    struct engine_kv *kv = NULL;
    char err[256];
    CHECK_EQ_INT(engine_kv_new(m.w, 0, &kv, err, sizeof(err)), -1);
    CHECK_EQ_INT(engine_kv_new(m.w, m.w->hp.n_ctx_train + 1, &kv, err, sizeof(err)), -1);
    CHECK_EQ_INT(engine_ctx_new(m.w, 0, 4, &ctx, err, sizeof(err)), -1);
    REQUIRE(engine_ctx_new(m.w, 1, 4, &ctx, err, sizeof(err)) == 0);
    REQUIRE(engine_kv_new(m.w, 8, &kv, err, sizeof(err)) == 0);
    float *lg = malloc(sizeof(float) * (size_t)m.w->hp.n_vocab * 2);
    int32_t toks[9] = {7936, 1, 2, 3, 4, 5, 6, 7, 8};
    CHECK_EQ_INT(engine_forward_prefill(ctx, kv, toks, 9, lg), -1); /* 9 > 8 */
    CHECK(strstr(engine_ctx_error(ctx), "context") != NULL);
    CHECK_EQ_INT(engine_kv_len(kv), 0);
    int32_t bad = m.w->hp.n_vocab;
    CHECK_EQ_INT(engine_forward_prefill(ctx, kv, &bad, 1, lg), -1);
    bad = -1;
    CHECK_EQ_INT(engine_forward_prefill(ctx, kv, &bad, 1, lg), -1);
    CHECK_EQ_INT(engine_forward_prefill(ctx, kv, toks, 0, lg), -1);
    /* prefill with chunking (batch 4 < 7 tokens) and the decode reaching the end */
    REQUIRE(engine_forward_prefill(ctx, kv, toks, 7, lg) == 0);
    CHECK_EQ_INT(engine_kv_len(kv), 7);
    struct engine_kv *kvs[2] = {kv, kv};
    CHECK_EQ_INT(engine_forward_decode(ctx, kvs, toks, 2, lg), -1); /* same kv twice */
    CHECK_EQ_INT(engine_forward_decode(ctx, kvs, toks, 1, lg), 0);
    CHECK_EQ_INT(engine_kv_len(kv), 8);
    CHECK_EQ_INT(engine_forward_decode(ctx, kvs, toks, 1, lg), -1); /* full */
    CHECK_EQ_INT(engine_forward_decode(ctx, kvs, toks, 5, lg), -1); /* over max_batch */
    /* truncate then redo the last token: same logits as before */
    float *l2 = malloc(sizeof(float) * (size_t)m.w->hp.n_vocab);
    memcpy(l2, lg, sizeof(float) * (size_t)m.w->hp.n_vocab);
    engine_kv_truncate(kv, 7);
    CHECK_EQ_INT(engine_kv_len(kv), 7);
    CHECK_EQ_INT(engine_forward_decode(ctx, kvs, toks, 1, lg), 0);
    CHECK(memcmp(l2, lg, sizeof(float) * (size_t)m.w->hp.n_vocab) == 0);
    free(l2);
    free(lg);
    engine_kv_free(kv);
    engine_ctx_free(ctx);
    model_close(&m);
}

/* A model file whose tensors do not match its metadata is refused with a message. */
static void test_bad_model(void)
{
    char p[1024], err[256] = "";
    snprintf(p, sizeof(p), "%s/models/vocab/ggml-vocab-qwen2.gguf", harness_shared());
    struct gguf_file *f = NULL;
    struct engine_weights *w = NULL;
    REQUIRE(gguf_open(p, &f, err, sizeof(err)) == 0);
    CHECK_EQ_INT(engine_weights_load(f, &w, err, sizeof(err)), -1);
    CHECK(err[0] != '\0');
    CHECK(w == NULL);
    gguf_close(f);
}

int main(void)
{
    RUN(test_goldens);
    RUN(test_batching);
    RUN(test_pool_stress);
    RUN(test_errors);
    RUN(test_bad_model);
    return harness_done();
}
