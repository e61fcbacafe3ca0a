/* test_weights.c -- weight loader: hand-built GGUF files, each valid but for one defect, are
 * refused with a message that names it; the smallest valid ones load and run. */
#include "engine/engine.h"
#include "engine/forward.h"
#include "engine/gguf.h"
#include "harness.h"

#include <math.h>
#include <stdint.h>
#include <unistd.h>

#include "gguf_build.h"

struct loaded {
    struct gguf_file *f;
    struct engine_weights *w;
};

static void unload(struct loaded *l)
{
    engine_weights_free(l->w);
    gguf_close(l->f);
    l->w = NULL;
    l->f = NULL;
}

/* BROKEN: the file could not be written, or a refusal broke its contract (an object
 * handed out although the call failed) */
enum { LOADED = 0, GGUF_REFUSED = 1, WEIGHTS_REFUSED = 2, BROKEN = 3 };

/* Write m to the temp file, gguf_open it and engine_weights_load it. LOADED: *l holds both
 * (unload it); otherwise err says why and nothing is held. */
static int load(const struct model *m, struct loaded *l, char *err, size_t errlen)
{
    memset(l, 0, sizeof(*l));
    err[0] = '\0';
    if (write_model(m) < 0) {
        snprintf(err, errlen, "cannot write %s", tmp_path);
        return BROKEN;
    }
    if (gguf_open(tmp_path, &l->f, err, errlen) != 0) {
        int rc = l->f == NULL ? GGUF_REFUSED : BROKEN;
        unload(l);
        return rc;
    }
    if (engine_weights_load(l->f, &l->w, err, errlen) != 0) {
        int rc = l->w == NULL ? WEIGHTS_REFUSED : BROKEN;
        unload(l);
        return rc;
    }
    return LOADED;
}

/* Loading m must fail at `stage` with a non-empty message containing every needle
 * (NULL-terminated). */
static int expect_fail_at(int line, const struct model *m, int stage, const char *const *needles)
{
    char err[512];
    struct loaded l;
    int rc = load(m, &l, err, sizeof(err));
    int ok = rc == stage && err[0] != '\0';
    for (const char *const *n = needles; ok && *n; n++)
        ok = strstr(err, *n) != NULL;
    if (!ok) {
        fprintf(stderr, "  line %d: stage %d (expected %d), error \"%s\"; wanted:", line, rc, stage,
                err);
        for (const char *const *n = needles; *n; n++)
            fprintf(stderr, " \"%s\"", *n);
        fprintf(stderr, "\n");
    }
    if (rc == LOADED)
        unload(&l);
    return ok;
}
#define EXPECT_FAIL(m, stage, ...)                                                                 \
    CHECK(expect_fail_at(__LINE__, (m), (stage), (const char *const[]){__VA_ARGS__, NULL}))

/* Prefill 3 tokens, then decode one; the logits must be finite and not all equal. */
static int run_forward(const struct engine_weights *w)
{
    struct engine_kv *kv = NULL;
    struct engine_ctx *ctx = NULL;
    char err[256];
    int ok = 0;
    float *logits = malloc(sizeof(float) * (size_t)w->hp.n_vocab);
    if (!logits || engine_kv_new(w, 16, &kv, err, sizeof(err)) != 0 ||
        engine_ctx_new(w, 2, 4, &ctx, err, sizeof(err)) != 0)
        goto out;
    const int32_t toks[3] = {1, 5, (int32_t)w->hp.n_vocab - 1};
    if (engine_forward_prefill(ctx, kv, toks, 3, logits) != 0)
        goto out;
    int32_t next = 7;
    if (engine_forward_decode(ctx, &kv, &next, 1, logits) != 0 || engine_kv_len(kv) != 4)
        goto out;
    ok = 1;
    int differ = 0;
    for (int i = 0; i < w->hp.n_vocab; i++) {
        if (!isfinite(logits[i]))
            ok = 0;
        if (logits[i] != logits[0])
            differ = 1;
    }
    ok = ok && differ;
out:
    engine_ctx_free(ctx);
    engine_kv_free(kv);
    free(logits);
    return ok;
}

/* ---- the smallest well-formed models load ---- */

static void test_minimal_llama_loads(void)
{
    struct model m;
    struct loaded l;
    char err[512];
    model_small(&m, "llama");
    int rc = load(&m, &l, err, sizeof(err));
    if (rc)
        fprintf(stderr, "  %s\n", err);
    REQUIRE(rc == LOADED);
    const struct engine_hparams *hp = &l.w->hp;
    CHECK_EQ_INT(hp->arch, ENGINE_ARCH_LLAMA);
    CHECK_EQ_INT(hp->n_vocab, 40);
    CHECK_EQ_INT(hp->n_embd, 32);
    CHECK_EQ_INT(hp->n_layer, 2);
    CHECK_EQ_INT(hp->n_head, 4);
    CHECK_EQ_INT(hp->n_head_kv, 2);
    CHECK_EQ_INT(hp->head_dim, 8);
    CHECK_EQ_INT(hp->n_rot, 8);
    CHECK_EQ_INT(hp->n_ff, 64);
    CHECK_EQ_INT(hp->n_ctx_train, 64);
    CHECK_EQ_INT(hp->rope_neox, 0);
    CHECK(hp->rope_freq_scale == 1.0f);
    CHECK(l.w->output.data == l.w->token_embd.data); /* tied */
    CHECK(l.w->layers[1].bq == NULL && l.w->rope_freqs == NULL);
    CHECK(l.w->layers[1].attn_norm && l.w->layers[1].attn_norm[31] == 1.0f);
    CHECK(run_forward(l.w));
    unload(&l);

    /* untied output, rope_freqs and llama with biases are accepted too */
    add_t(&m, "output.weight", GGUF_T_F32, 32, 40);
    add_t(&m, "rope_freqs.weight", GGUF_T_F32, 4, 0);
    add_t(&m, "blk.0.attn_q.bias", GGUF_T_F32, 32, 0);
    rc = load(&m, &l, err, sizeof(err));
    if (rc)
        fprintf(stderr, "  %s\n", err);
    REQUIRE(rc == LOADED);
    CHECK(l.w->output.data != l.w->token_embd.data);
    CHECK(l.w->rope_freqs != NULL && l.w->rope_freqs[3] == 1.0f);
    CHECK(l.w->layers[0].bq != NULL && l.w->layers[1].bq == NULL);
    CHECK(run_forward(l.w));
    unload(&l);
}

static void test_minimal_qwen2_loads(void)
{
    struct model m;
    struct loaded l;
    char err[512];
    model_small(&m, "qwen2");
    int rc = load(&m, &l, err, sizeof(err));
    if (rc)
        fprintf(stderr, "  %s\n", err);
    REQUIRE(rc == LOADED);
    CHECK_EQ_INT(l.w->hp.arch, ENGINE_ARCH_QWEN2);
    CHECK_EQ_INT(l.w->hp.rope_neox, 1);
    for (int i = 0; i < 2; i++)
        CHECK(l.w->layers[i].bq && l.w->layers[i].bk && l.w->layers[i].bv);
    CHECK(run_forward(l.w));
    unload(&l);
}

/* quantized matrices (Q8_0 / Q4_0: repacked on VNNI machines; 40 output rows are not a
 * whole number of 16-row groups), F16 embeddings, Q8_0 norms */
static void test_quantized_loads(void)
{
    struct model m;
    struct loaded l;
    char err[512];
    model_small(&m, "llama");
    for (int i = 0; i < m.n_t; i++)
        if (m.t[i].n_dims == 2)
            m.t[i].type = strstr(m.t[i].name, "ffn") ? GGUF_T_Q4_0 : GGUF_T_Q8_0;
    find_t(&m, "token_embd.weight")->type = GGUF_T_F16;
    add_t(&m, "output.weight", GGUF_T_Q8_0, 32, 40);
    find_t(&m, "blk.1.attn_norm.weight")->type = GGUF_T_Q8_0;
    int rc = load(&m, &l, err, sizeof(err));
    if (rc)
        fprintf(stderr, "  %s\n", err);
    REQUIRE(rc == LOADED);
    CHECK_EQ_INT(l.w->layers[0].wq.type, GGUF_T_Q8_0);
    CHECK_EQ_INT(l.w->layers[0].w_up.type, GGUF_T_Q4_0);
    CHECK_EQ_INT(l.w->output.type, GGUF_T_Q8_0);
    CHECK(l.w->layers[1].attn_norm[0] == 1.0f); /* Q8_0 64 * 1/64, dequantized at load */
    CHECK(run_forward(l.w));
    unload(&l);
}

/* with attention.key_length the heads need not divide the embedding */
static void test_key_length_loads(void)
{
    struct model m;
    struct loaded l;
    char err[512];
    model_init(&m, "llama", 32, 1, 6, 2, 64, 40); /* tensors for head_dim 5: replaced below */
    set_u32(&m, akey(&m, "attention.key_length"), 8);
    set_u32(&m, akey(&m, "attention.value_length"), 8);
    find_t(&m, "blk.0.attn_q.weight")->ne[1] = 48;
    find_t(&m, "blk.0.attn_k.weight")->ne[1] = 16;
    find_t(&m, "blk.0.attn_v.weight")->ne[1] = 16;
    find_t(&m, "blk.0.attn_output.weight")->ne[0] = 48;
    int rc = load(&m, &l, err, sizeof(err));
    if (rc)
        fprintf(stderr, "  %s\n", err);
    REQUIRE(rc == LOADED);
    CHECK_EQ_INT(l.w->hp.head_dim, 8);
    CHECK_EQ_INT(l.w->hp.n_head, 6);
    CHECK(run_forward(l.w));
    unload(&l);
}

/* the whole path a user takes: engine_model_open reports the loader's message with the path */
static void test_model_open(void)
{
    struct model m;
    struct engine_model *em = NULL;
    char err[512] = "";
    model_small(&m, "llama");
    add_tokenizer(&m, 40);
    REQUIRE(write_model(&m) == 0);
    int rc = engine_model_open(tmp_path, 1, 0, &em, err, sizeof(err));
    if (rc)
        fprintf(stderr, "  %s\n", err);
    CHECK_EQ_INT(rc, ENGINE_OK);
    if (em)
        CHECK_EQ_INT(engine_model_context(em), 64);
    engine_model_close(em);
    em = NULL;

    find_t(&m, "blk.1.attn_q.weight")->ne[1] = 24;
    REQUIRE(write_model(&m) == 0);
    CHECK_EQ_INT(engine_model_open(tmp_path, 1, 0, &em, err, sizeof(err)), ENGINE_EINVAL);
    CHECK(em == NULL);
    CHECK(strstr(err, tmp_path) != NULL);
    CHECK(strstr(err, "tensor blk.1.attn_q.weight has shape [32, 24], expected [32, 32]"));
}

/* ---- one defect each ---- */

static void test_wrong_shape(void)
{
    struct model m;
    model_small(&m, "llama");
    find_t(&m, "token_embd.weight")->ne[0] = 33;
    EXPECT_FAIL(&m, WEIGHTS_REFUSED,
                "tensor token_embd.weight has shape [33, 40], expected [32, 40]");

    model_small(&m, "llama");
    find_t(&m, "blk.1.attn_q.weight")->ne[1] = 24;
    EXPECT_FAIL(&m, WEIGHTS_REFUSED,
                "tensor blk.1.attn_q.weight has shape [32, 24], expected [32, 32]");

    model_small(&m, "llama"); /* transposed */
    find_t(&m, "blk.0.ffn_down.weight")->ne[0] = 32;
    find_t(&m, "blk.0.ffn_down.weight")->ne[1] = 64;
    EXPECT_FAIL(&m, WEIGHTS_REFUSED,
                "tensor blk.0.ffn_down.weight has shape [32, 64], expected [64, 32]");

    model_small(&m, "llama");
    find_t(&m, "output_norm.weight")->ne[0] = 31;
    EXPECT_FAIL(&m, WEIGHTS_REFUSED,
                "tensor output_norm.weight has shape [31, 1], expected [32, 1]");

    model_small(&m, "llama"); /* a vector stored as a matrix */
    find_t(&m, "blk.0.ffn_norm.weight")->n_dims = 2;
    find_t(&m, "blk.0.ffn_norm.weight")->ne[1] = 2;
    EXPECT_FAIL(&m, WEIGHTS_REFUSED,
                "tensor blk.0.ffn_norm.weight has shape [32, 2], expected [32, 1]");

    model_small(&m, "llama"); /* an untied output of the wrong vocabulary */
    add_t(&m, "output.weight", GGUF_T_F32, 32, 41);
    EXPECT_FAIL(&m, WEIGHTS_REFUSED, "tensor output.weight has shape [32, 41], expected [32, 40]");

    model_small(&m, "llama");
    add_t(&m, "rope_freqs.weight", GGUF_T_F32, 8, 0);
    EXPECT_FAIL(&m, WEIGHTS_REFUSED, "tensor rope_freqs.weight has shape [8, 1], expected [4, 1]");

    /* a third dimension used to be reported as "shape [32, 16], expected [32, 16]" */
    model_small(&m, "llama");
    find_t(&m, "blk.1.attn_k.weight")->n_dims = 3;
    find_t(&m, "blk.1.attn_k.weight")->ne[2] = 2;
    EXPECT_FAIL(&m, WEIGHTS_REFUSED, "tensor blk.1.attn_k.weight has 3 dimensions, expected 2");
}

/* every tensor, one at a time: a row length off by 32 is refused and named */
static void test_every_tensor_shape(void)
{
    const char *arches[] = {"llama", "qwen2"};
    for (int a = 0; a < 2; a++) {
        struct model base, m;
        model_small(&base, arches[a]);
        for (int i = 0; i < base.n_t; i++) {
            m = base;
            m.t[i].ne[0] += 32;
            char want[96];
            snprintf(want, sizeof(want), "tensor %s has shape [%lld", m.t[i].name,
                     (long long)m.t[i].ne[0]);
            EXPECT_FAIL(&m, WEIGHTS_REFUSED, want);
        }
    }
}

static void test_wrong_type(void)
{
    struct model m;
    model_small(&m, "llama");
    find_t(&m, "blk.0.attn_k.weight")->type = GGUF_T_Q4_1; /* a ggml type the engine lacks */
    EXPECT_FAIL(&m, WEIGHTS_REFUSED,
                "tensor blk.0.attn_k.weight has type Q4_1, which the engine does not support");

    model_small(&m, "llama"); /* an integer type where weights belong */
    find_t(&m, "output_norm.weight")->type = GGUF_T_I32;
    EXPECT_FAIL(&m, WEIGHTS_REFUSED,
                "tensor output_norm.weight has type I32, which the engine does not support");

    model_small(&m, "llama");
    find_t(&m, "token_embd.weight")->type = GGUF_T_F64;
    EXPECT_FAIL(&m, WEIGHTS_REFUSED, "tensor token_embd.weight has type F64");

    model_small(&m, "llama"); /* unknown to ggml: the parser refuses it */
    find_t(&m, "blk.1.ffn_up.weight")->type = 99;
    EXPECT_FAIL(&m, GGUF_REFUSED, "tensor 'blk.1.ffn_up.weight' has unknown type 99");

    model_small(&m, "llama"); /* a K-quant needs rows of 256 values; these have 32 */
    find_t(&m, "blk.0.attn_v.weight")->type = GGUF_T_Q4_K;
    EXPECT_FAIL(&m, GGUF_REFUSED, "blk.0.attn_v.weight", "row length 32 is not a multiple of 256");
}

/* every type id 0..40 in three roles (embedding, matrix, norm) of a model whose rows are
 * 256 long: the 8 supported types load and run, the other ggml types are refused by the
 * loader by name, unknown ids by the parser */
static void test_every_type(void)
{
    const char *roles[] = {"token_embd.weight", "blk.0.ffn_up.weight", "blk.0.attn_norm.weight"};
    const uint32_t supported[] = {GGUF_T_F32,  GGUF_T_F16,  GGUF_T_BF16, GGUF_T_Q8_0,
                                  GGUF_T_Q4_0, GGUF_T_Q4_K, GGUF_T_Q5_K, GGUF_T_Q6_K};
    int n_loaded = 0, n_refused = 0, n_unknown = 0;
    for (int r = 0; r < 3; r++)
        for (uint32_t ty = 0; ty <= 40; ty++) {
            struct model m;
            struct loaded l;
            char err[512];
            model_init(&m, "llama", 256, 1, 4, 2, 256, 20);
            find_t(&m, roles[r])->type = ty;
            int is_sup = 0;
            for (size_t k = 0; k < sizeof(supported) / sizeof(supported[0]); k++)
                is_sup |= supported[k] == ty;
            int rc = load(&m, &l, err, sizeof(err));
            if (is_sup) {
                if (rc != LOADED)
                    fprintf(stderr, "  %s as %s: %s\n", roles[r], gguf_type_name(ty), err);
                CHECK_EQ_INT(rc, LOADED);
                if (rc == LOADED) {
                    CHECK(run_forward(l.w));
                    unload(&l);
                    n_loaded++;
                }
            } else if (gguf_type_size(ty, NULL, NULL) == 0) {
                char want[160];
                snprintf(want, sizeof(want),
                         "tensor %s has type %s, which the engine does not support", roles[r],
                         gguf_type_name(ty));
                CHECK_EQ_INT(rc, WEIGHTS_REFUSED);
                CHECK(strstr(err, want) != NULL);
                n_refused++;
            } else {
                CHECK_EQ_INT(rc, GGUF_REFUSED);
                CHECK(strstr(err, roles[r]) && strstr(err, "unknown type"));
                n_unknown++;
            }
        }
    CHECK_EQ_INT(n_loaded, 3 * 8);
    CHECK_EQ_INT(n_refused, 3 * 12); /* Q4_1 Q5_0 Q5_1 Q8_1 Q2_K Q3_K Q8_K I8 I16 I32 I64 F64 */
    CHECK_EQ_INT(n_unknown, 3 * (41 - 20));
}

static void test_missing_tensor(void)
{
    struct model m;
    model_small(&m, "llama");
    del_t(&m, "blk.1.ffn_down.weight");
    EXPECT_FAIL(&m, WEIGHTS_REFUSED, "missing tensor blk.1.ffn_down.weight");

    model_small(&m, "llama"); /* used to say "missing or oversized token_embd.weight" */
    del_t(&m, "token_embd.weight");
    EXPECT_FAIL(&m, WEIGHTS_REFUSED, "missing tensor token_embd.weight");

    model_small(&m, "llama"); /* a layer that block_count promises but the file lacks */
    set_u32(&m, akey(&m, "block_count"), 3);
    EXPECT_FAIL(&m, WEIGHTS_REFUSED, "missing tensor blk.2.attn_norm.weight");

    /* every required tensor, one at a time (all of the small llama's are required) */
    struct model base;
    model_small(&base, "llama");
    for (int i = 0; i < base.n_t; i++) {
        m = base;
        char want[96];
        snprintf(want, sizeof(want), "missing tensor %s", base.t[i].name);
        del_t(&m, base.t[i].name);
        EXPECT_FAIL(&m, WEIGHTS_REFUSED, want);
    }
}

static void test_head_counts(void)
{
    struct model m;
    model_small(&m, "llama");
    set_u32(&m, akey(&m, "attention.head_count_kv"), 3);
    EXPECT_FAIL(&m, WEIGHTS_REFUSED, "head_count 4 is not a multiple of head_count_kv 3");

    model_small(&m, "llama");
    set_u32(&m, akey(&m, "attention.head_count_kv"), 8);
    EXPECT_FAIL(&m, WEIGHTS_REFUSED, "head_count 4 is not a multiple of head_count_kv 8");

    model_small(&m, "llama");
    set_u32(&m, akey(&m, "attention.head_count_kv"), 0);
    EXPECT_FAIL(&m, WEIGHTS_REFUSED,
                "llama.attention.head_count_kv is not an integer in [1, 4096]");

    model_small(&m, "llama");
    set_u32(&m, akey(&m, "attention.head_count"), 0);
    EXPECT_FAIL(&m, WEIGHTS_REFUSED, "llama.attention.head_count is not an integer in [1, 4096]");

    /* 32 / 5 used to be rounded down to heads of 6 (and a file shaped for that loaded) */
    model_init(&m, "llama", 32, 2, 5, 5, 64, 40);
    EXPECT_FAIL(&m, WEIGHTS_REFUSED, "embedding_length 32 is not a multiple of head_count 5");

    model_small(&m, "llama"); /* more heads than embedding values */
    set_u32(&m, akey(&m, "attention.head_count"), 64);
    set_u32(&m, akey(&m, "attention.head_count_kv"), 64);
    EXPECT_FAIL(&m, WEIGHTS_REFUSED, "embedding_length 32 is not a multiple of head_count 64");

    model_small(&m, "llama");
    set_u32(&m, akey(&m, "attention.key_length"), 1);
    EXPECT_FAIL(&m, WEIGHTS_REFUSED, "bad attention geometry (4 heads of 1)");

    model_small(&m, "llama");
    set_u32(&m, akey(&m, "attention.key_length"), 8);
    set_u32(&m, akey(&m, "attention.value_length"), 16);
    EXPECT_FAIL(&m, WEIGHTS_REFUSED, "attention.value_length 16 differs from key_length 8");

    model_small(&m, "llama"); /* the shapes follow key_length, and here they do not */
    set_u32(&m, akey(&m, "attention.key_length"), 16);
    EXPECT_FAIL(&m, WEIGHTS_REFUSED,
                "tensor blk.0.attn_q.weight has shape [32, 32], expected [32, 64]");

    model_small(&m, "llama");
    set_u32(&m, akey(&m, "rope.dimension_count"), 16);
    EXPECT_FAIL(&m, WEIGHTS_REFUSED, "llama.rope.dimension_count is not an integer in [2, 8]");

    model_small(&m, "llama");
    set_u32(&m, akey(&m, "rope.dimension_count"), 5);
    EXPECT_FAIL(&m, WEIGHTS_REFUSED, "rope.dimension_count 5 is odd");
}

static float rope_scale_of(struct model *m, char *err, size_t errlen)
{
    struct loaded l;
    if (load(m, &l, err, errlen) != LOADED)
        return -1.0f;
    float s = l.w->hp.rope_freq_scale;
    unload(&l);
    return s;
}

static void test_rope_scaling(void)
{
    struct model m;
    char err[512];
    model_small(&m, "llama");
    set_str(&m, akey(&m, "rope.scaling.type"), "yarn");
    set_f32(&m, akey(&m, "rope.scaling.factor"), 4.0f);
    EXPECT_FAIL(&m, WEIGHTS_REFUSED, "rope scaling 'yarn' is not supported");

    set_str(&m, akey(&m, "rope.scaling.type"), "longrope");
    EXPECT_FAIL(&m, WEIGHTS_REFUSED, "rope scaling 'longrope' is not supported");

    set_u32(&m, akey(&m, "rope.scaling.type"), 1); /* used to be ignored: not a string */
    EXPECT_FAIL(&m, WEIGHTS_REFUSED, "metadata llama.rope.scaling.type is not a string");

    set_str(&m, akey(&m, "rope.scaling.type"), "linear");
    CHECK(rope_scale_of(&m, err, sizeof(err)) == 0.25f);
    set_f32(&m, akey(&m, "rope.scaling.factor"), 0.5f);
    EXPECT_FAIL(&m, WEIGHTS_REFUSED, "llama.rope.scaling.factor is 0.5");
    set_u32(&m, akey(&m, "rope.scaling.factor"), 4);
    EXPECT_FAIL(&m, WEIGHTS_REFUSED, "metadata llama.rope.scaling.factor is not a float");
    set_f32(&m, akey(&m, "rope.scaling.factor"), 0.0f); /* 0: no scaling, as llama.cpp */
    CHECK(rope_scale_of(&m, err, sizeof(err)) == 1.0f);

    /* as llama.cpp: "none" never scales; an absent type is linear, so a bare factor
     * (which used to be ignored) applies, as does the older rope.scale_linear */
    set_f32(&m, akey(&m, "rope.scaling.factor"), 4.0f);
    set_str(&m, akey(&m, "rope.scaling.type"), "none");
    CHECK(rope_scale_of(&m, err, sizeof(err)) == 1.0f);
    del_kv(&m, akey(&m, "rope.scaling.type"));
    CHECK(rope_scale_of(&m, err, sizeof(err)) == 0.25f);
    del_kv(&m, akey(&m, "rope.scaling.factor"));
    set_f32(&m, akey(&m, "rope.scale_linear"), 2.0f);
    CHECK(rope_scale_of(&m, err, sizeof(err)) == 0.5f);
    struct loaded l;
    REQUIRE(load(&m, &l, err, sizeof(err)) == LOADED);
    CHECK(run_forward(l.w));
    unload(&l);
}

static void test_qwen2_biases(void)
{
    struct model m;
    const char *b[] = {"attn_q.bias", "attn_k.bias", "attn_v.bias"};
    for (int layer = 0; layer < 2; layer++)
        for (int k = 0; k < 3; k++) {
            char name[64], want[128];
            snprintf(name, sizeof(name), "blk.%d.%s", layer, b[k]);
            snprintf(want, sizeof(want), "missing tensor %s (qwen2 needs the q, k and v biases)",
                     name);
            model_small(&m, "qwen2");
            del_t(&m, name);
            EXPECT_FAIL(&m, WEIGHTS_REFUSED, want);
        }

    model_small(&m, "qwen2");
    find_t(&m, "blk.0.attn_v.bias")->ne[0] = 8;
    EXPECT_FAIL(&m, WEIGHTS_REFUSED, "tensor blk.0.attn_v.bias has shape [8, 1], expected [16, 1]");

    model_small(&m, "qwen2"); /* the k bias sized like q's */
    find_t(&m, "blk.1.attn_k.bias")->ne[0] = 32;
    EXPECT_FAIL(&m, WEIGHTS_REFUSED,
                "tensor blk.1.attn_k.bias has shape [32, 1], expected [16, 1]");

    model_small(&m, "qwen2");
    find_t(&m, "blk.1.attn_q.bias")->type = GGUF_T_I16;
    EXPECT_FAIL(&m, WEIGHTS_REFUSED, "tensor blk.1.attn_q.bias has type I16");
}

static void test_data_past_end(void)
{
    struct model m;
    model_small(&m, "llama");
    struct t_spec *t = find_t(&m, "blk.0.ffn_gate.weight");
    t->offset_set = 1;
    t->offset = (uint64_t)1 << 20; /* the data section is about 40 KB */
    EXPECT_FAIL(&m, GGUF_REFUSED, "tensor 'blk.0.ffn_gate.weight'", "at data offset 1048576",
                "extends beyond the end of the file");

    t->offset = UINT64_MAX - 31; /* offset + size wraps around */
    EXPECT_FAIL(&m, GGUF_REFUSED, "tensor 'blk.0.ffn_gate.weight'", "beyond the end of the file");

    t->offset = 16;
    EXPECT_FAIL(&m, GGUF_REFUSED, "tensor 'blk.0.ffn_gate.weight' offset 16 is not aligned to 32");

    model_small(&m, "llama"); /* the last tensor's data cut short by one byte */
    m.cut = 1;
    EXPECT_FAIL(&m, GGUF_REFUSED, "tensor 'blk.1.ffn_down.weight'", "extends beyond the end");

    model_small(&m, "llama"); /* a shape whose data would be far larger than the file */
    find_t(&m, "blk.1.ffn_up.weight")->ne[1] = (int64_t)1 << 40;
    EXPECT_FAIL(&m, GGUF_REFUSED, "tensor 'blk.1.ffn_up.weight' is larger than the file");

    model_small(&m, "llama"); /* the whole data section missing */
    struct buf b = {0};
    model_bytes(&m, &b);
    size_t data = b.n;
    for (int i = 0; i < m.n_t; i++)
        data -= (t_bytes(&m.t[i]) + 31) / 32 * 32;
    free(b.p);
    m.cut = b.n - data;
    EXPECT_FAIL(&m, GGUF_REFUSED, "tensor 'token_embd.weight' is larger than the file");
}

/* hyper-parameters that are impossible or absurd for the file */
static void test_bad_metadata(void)
{
    struct model m;
    model_small(&m, "llama");
    set_str(&m, "general.architecture", "gpt2");
    EXPECT_FAIL(&m, WEIGHTS_REFUSED, "architecture 'gpt2' is not supported");

    model_small(&m, "llama");
    del_kv(&m, "general.architecture");
    EXPECT_FAIL(&m, WEIGHTS_REFUSED, "missing general.architecture");

    model_small(&m, "llama");
    del_kv(&m, akey(&m, "embedding_length"));
    EXPECT_FAIL(&m, WEIGHTS_REFUSED, "missing metadata key llama.embedding_length");

    model_small(&m, "llama");
    set_str(&m, akey(&m, "block_count"), "2");
    EXPECT_FAIL(&m, WEIGHTS_REFUSED, "metadata llama.block_count is not an integer in [1, 1024]");

    model_small(&m, "llama");
    set_f32(&m, akey(&m, "rope.freq_base"), -1.0f);
    EXPECT_FAIL(&m, WEIGHTS_REFUSED, "bad rope.freq_base or rms epsilon");

    model_small(&m, "llama");
    set_u32(&m, akey(&m, "context_length"), 0);
    EXPECT_FAIL(&m, WEIGHTS_REFUSED, "llama.context_length is not an integer");

    /* a 40 KB file whose header claims 1024 layers of 4096 heads: refused before the loader
     * allocates gigabytes for them */
    model_small(&m, "llama");
    set_u32(&m, akey(&m, "block_count"), 1024);
    set_u32(&m, akey(&m, "attention.head_count"), 4096);
    set_u32(&m, akey(&m, "attention.head_count_kv"), 4096);
    set_u32(&m, akey(&m, "attention.key_length"), 128);
    EXPECT_FAIL(&m, WEIGHTS_REFUSED, "describe a model larger than the", "-byte file");
}

int main(void)
{
    snprintf(tmp_dir, sizeof(tmp_dir), "/tmp/airlock_weights_XXXXXX");
    if (!mkdtemp(tmp_dir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(tmp_path, sizeof(tmp_path), "%s/model.gguf", tmp_dir);
    RUN(test_minimal_llama_loads);
    RUN(test_minimal_qwen2_loads);
    RUN(test_quantized_loads);
    RUN(test_key_length_loads);
    RUN(test_model_open);
    RUN(test_wrong_shape);
    RUN(test_every_tensor_shape);
    RUN(test_wrong_type);
    RUN(test_every_type);
    RUN(test_missing_tensor);
    RUN(test_head_counts);
    RUN(test_rope_scaling);
    RUN(test_qwen2_biases);
    RUN(test_data_past_end);
    RUN(test_bad_metadata);
    unlink(tmp_path);
    rmdir(tmp_dir);
    return harness_done();
}
