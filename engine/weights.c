/* weights.c -- model hyper-parameters and weight views from a GGUF file, every shape and type checked. */
#include "engine/forward.h"
#include "engine/quant.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Limits far beyond the models we serve; they bound every allocation derived from
 * header values. */
#define MAX_DIM (1 << 17)
#define MAX_LAYERS 1024
#define MAX_VOCAB (1 << 22)

struct loader {
    const struct gguf_file *f;
    const char *arch;
    char *err;
    size_t errlen;
    float *pool;
    size_t pool_used, pool_cap;
};

static int lfail(struct loader *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int lfail(struct loader *l, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(l->err, l->errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static int hp_present(struct loader *l, const char *name)
{
    char key[160];
    snprintf(key, sizeof(key), "%s.%s", l->arch, name);
    return gguf_find_key(l->f, key) >= 0;
}

/* hparam "<arch>.<name>" as a u32 in [lo, hi]; def when absent (def < 0: required) */
static int hp_u32(struct loader *l, const char *name, long def, long lo, long hi, int *out)
{
    char key[160];
    snprintf(key, sizeof(key), "%s.%s", l->arch, name);
    if (gguf_find_key(l->f, key) < 0) {
        if (def < 0)
            return lfail(l, "missing metadata key %s", key);
        *out = (int)def;
        return 0;
    }
    uint32_t v;
    if (gguf_get_u32(l->f, key, 0, &v) < 0 || (long)v < lo || (long)v > hi)
        return lfail(l, "metadata %s is not an integer in [%ld, %ld]", key, lo, hi);
    *out = (int)v;
    return 0;
}

static int hp_f32(struct loader *l, const char *name, float def, float *out)
{
    char key[160];
    snprintf(key, sizeof(key), "%s.%s", l->arch, name);
    if (gguf_get_f32(l->f, key, def, out) < 0)
        return lfail(l, "metadata %s is not a float", key);
    return 0;
}

static int get_mat(struct loader *l, const char *name, int64_t ne0, int64_t ne1, int optional,
                   struct engine_mat *m)
{
    const struct gguf_tensor *t = gguf_find_tensor(l->f, name);
    memset(m, 0, sizeof(*m));
    if (!t)
        return optional ? 0 : lfail(l, "missing tensor %s", name);
    if (t->n_dims > 2)
        return lfail(l, "tensor %s has %u dimensions, expected %d", name, t->n_dims,
                     ne1 == 1 ? 1 : 2);
    if (t->ne[0] != ne0 || t->ne[1] != ne1)
        return lfail(l, "tensor %s has shape [%lld, %lld], expected [%lld, %lld]", name,
                     (long long)t->ne[0], (long long)t->ne[1], (long long)ne0, (long long)ne1);
    if (!quant_supported(t->type))
        return lfail(l, "tensor %s has type %s, which the engine does not support", name,
                     gguf_type_name(t->type));
    m->data = t->data;
    m->type = t->type;
    m->ne0 = ne0;
    m->ne1 = ne1;
    m->row_bytes = (size_t)gguf_row_bytes(t->type, ne0);
    return 0;
}

/* A 1-D tensor of n values, converted to an owned F32 copy. */
static int get_vec(struct loader *l, const char *name, int64_t n, int optional, const float **out)
{
    struct engine_mat m;
    *out = NULL;
    if (get_mat(l, name, n, 1, optional, &m) < 0)
        return -1;
    if (!m.data)
        return 0;
    if (l->pool_used + (size_t)n > l->pool_cap)
        return lfail(l, "internal: vector pool too small for %s", name);
    float *dst = l->pool + l->pool_used;
    quant_dequant_row(m.type, m.data, dst, n);
    l->pool_used += (size_t)n;
    *out = dst;
    return 0;
}

/* On VNNI machines copy the Q8_0/Q4_0 matmul weights into 16-row interleaved groups
 * (quant.h): about 2-3x fewer instructions per multiply-add than the row layout. Costs one
 * more copy of those weights in memory (the mapping's pages stay in the page cache, where
 * the kernel may drop them). AIRLOCK_NO_REPACK=1 turns it off. */
static int repack(struct engine_weights *w)
{
    if (quant_have_simd() < 2 || getenv("AIRLOCK_NO_REPACK"))
        return 0;
    struct engine_mat **ms = malloc(sizeof(*ms) * (size_t)(7 * w->hp.n_layer + 1));
    if (!ms)
        return -1;
    int n = 0;
    for (int i = 0; i < w->hp.n_layer; i++) {
        struct engine_layer *L = &w->layers[i];
        struct engine_mat *lm[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (int k = 0; k < 7; k++)
            ms[n++] = lm[k];
    }
    ms[n++] = &w->output;
    size_t total = 0;
    for (int k = 0; k < n; k++)
        total += (quant_repack_bytes(ms[k]->type, ms[k]->ne0, ms[k]->ne1) + 63) / 64 * 64;
    if (total == 0) {
        free(ms);
        return 0;
    }
    w->packed_pool = aligned_alloc(64, total);
    if (!w->packed_pool) {
        free(ms);
        return -1;
    }
    size_t off = 0;
    for (int k = 0; k < n; k++) {
        struct engine_mat *m = ms[k];
        size_t b = quant_repack_bytes(m->type, m->ne0, m->ne1);
        if (!b)
            continue;
        quant_repack(m->type, m->data, m->row_bytes, m->ne0, m->ne1, w->packed_pool + off);
        m->packed = w->packed_pool + off;
        m->group_bytes = quant_repack_bytes(m->type, m->ne0, QUANT_PACK_ROWS);
        off += (b + 63) / 64 * 64;
    }
    free(ms);
    return 0;
}

int engine_weights_load(const struct gguf_file *f, struct engine_weights **out, char *err,
                        size_t errlen)
{
    struct engine_weights *w = NULL;
    struct loader l = {f, NULL, err, errlen, NULL, 0, 0};
    *out = NULL;
    quant_init();
    w = calloc(1, sizeof(*w));
    if (!w) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    struct engine_hparams *hp = &w->hp;
    l.arch = gguf_get_str(f, "general.architecture", NULL);
    if (!l.arch) {
        lfail(&l, "missing general.architecture");
        goto fail;
    }
    if (strcmp(l.arch, "llama") == 0) {
        hp->arch = ENGINE_ARCH_LLAMA;
    } else if (strcmp(l.arch, "qwen2") == 0) {
        hp->arch = ENGINE_ARCH_QWEN2;
    } else {
        lfail(&l, "architecture '%.64s' is not supported (llama, qwen2)", l.arch);
        goto fail;
    }
    if (hp_u32(&l, "embedding_length", -1, 1, MAX_DIM, &hp->n_embd) < 0 ||
        hp_u32(&l, "block_count", -1, 1, MAX_LAYERS, &hp->n_layer) < 0 ||
        hp_u32(&l, "attention.head_count", -1, 1, 4096, &hp->n_head) < 0 ||
        hp_u32(&l, "attention.head_count_kv", hp->n_head, 1, 4096, &hp->n_head_kv) < 0 ||
        hp_u32(&l, "feed_forward_length", -1, 1, 4 * MAX_DIM, &hp->n_ff) < 0 ||
        hp_u32(&l, "context_length", 2048, 1, 1 << 24, &hp->n_ctx_train) < 0)
        goto fail;
    if (hp->n_head % hp->n_head_kv != 0) {
        lfail(&l, "head_count %d is not a multiple of head_count_kv %d", hp->n_head,
              hp->n_head_kv);
        goto fail;
    }
    /* without key_length the head size is n_embd / n_head: refuse rather than round it down */
    if (!hp_present(&l, "attention.key_length") && hp->n_embd % hp->n_head != 0) {
        lfail(&l, "embedding_length %d is not a multiple of head_count %d", hp->n_embd, hp->n_head);
        goto fail;
    }
    if (hp_u32(&l, "attention.key_length", hp->n_embd / hp->n_head, 1, 4096, &hp->head_dim) < 0)
        goto fail;
    {
        int vlen;
        if (hp_u32(&l, "attention.value_length", hp->head_dim, 1, 4096, &vlen) < 0)
            goto fail;
        if (vlen != hp->head_dim) {
            lfail(&l, "attention.value_length %d differs from key_length %d (not supported)", vlen,
                  hp->head_dim);
            goto fail;
        }
    }
    if (hp->head_dim * hp->n_head > 4 * MAX_DIM || hp->head_dim < 2) {
        lfail(&l, "bad attention geometry (%d heads of %d)", hp->n_head, hp->head_dim);
        goto fail;
    }
    if (hp_u32(&l, "rope.dimension_count", hp->head_dim, 2, hp->head_dim, &hp->n_rot) < 0)
        goto fail;
    if (hp->n_rot % 2) {
        lfail(&l, "rope.dimension_count %d is odd", hp->n_rot);
        goto fail;
    }
    hp->rope_neox = hp->arch == ENGINE_ARCH_QWEN2;
    if (hp_f32(&l, "rope.freq_base", 10000.0f, &hp->rope_base) < 0 ||
        hp_f32(&l, "attention.layer_norm_rms_epsilon",
               hp->arch == ENGINE_ARCH_QWEN2 ? 1e-6f : 1e-5f, &hp->rms_eps) < 0)
        goto fail;
    if (!(hp->rope_base > 0) || !(hp->rms_eps >= 0)) {
        lfail(&l, "bad rope.freq_base or rms epsilon");
        goto fail;
    }
    /* As llama.cpp: rope.scaling.type defaults to linear, whose factor (rope.scaling.factor,
     * else the older rope.scale_linear; 0 or absent: none) divides every rope angle; "none"
     * never scales. yarn and longrope change more than the angle: refused. */
    hp->rope_freq_scale = 1.0f;
    {
        char key[160];
        snprintf(key, sizeof(key), "%s.rope.scaling.type", l.arch);
        const char *st = gguf_get_str(f, key, NULL);
        if (!st && gguf_find_key(f, key) >= 0) {
            lfail(&l, "metadata %s is not a string", key);
            goto fail;
        }
        if (st && strcmp(st, "none") != 0 && strcmp(st, "linear") != 0) {
            lfail(&l, "rope scaling '%.32s' is not supported (none, linear)", st);
            goto fail;
        }
        float factor = 0;
        const char *fk =
            hp_present(&l, "rope.scaling.factor") ? "rope.scaling.factor" : "rope.scale_linear";
        if (hp_f32(&l, fk, 0.0f, &factor) < 0)
            goto fail;
        if (factor != 0.0f && !(factor >= 1.0f && factor <= 1e6f)) {
            lfail(&l, "metadata %s.%s is %g, expected 0 or a factor in [1, 1e6]", l.arch, fk,
                  (double)factor);
            goto fail;
        }
        if (factor != 0.0f && (!st || strcmp(st, "linear") == 0))
            hp->rope_freq_scale = 1.0f / factor;
    }

    const struct gguf_tensor *te = gguf_find_tensor(f, "token_embd.weight");
    if (!te) {
        lfail(&l, "missing tensor token_embd.weight");
        goto fail;
    }
    if (te->ne[1] > MAX_VOCAB) {
        lfail(&l, "tensor token_embd.weight has %lld rows (vocabulary), more than %d",
              (long long)te->ne[1], MAX_VOCAB);
        goto fail;
    }
    hp->n_vocab = (int)te->ne[1];
    const int64_t n_embd = hp->n_embd, n_q = (int64_t)hp->n_head * hp->head_dim,
                  n_kv = (int64_t)hp->n_head_kv * hp->head_dim, n_ff = hp->n_ff;

    /* pool of F32 vectors: per layer 2 norms + up to 3 biases, plus output_norm, rope_freqs */
    l.pool_cap = (size_t)hp->n_layer * (size_t)(2 * n_embd + n_q + 2 * n_kv) + (size_t)n_embd +
                 (size_t)hp->n_rot;
    /* The file must hold every layer's matrices (>= 0.56 bytes per value in any supported
     * type), at least as many values as the pool: refuse header values that claim more
     * before allocating for them. */
    if (l.pool_cap / 2 > gguf_size(f)) {
        lfail(&l,
              "hyper-parameters (%d layers, embedding %d, %d heads of %d) describe a model "
              "larger than the %zu-byte file",
              hp->n_layer, hp->n_embd, hp->n_head, hp->head_dim, gguf_size(f));
        goto fail;
    }
    l.pool = malloc(l.pool_cap * sizeof(float));
    w->layers = calloc((size_t)hp->n_layer, sizeof(*w->layers));
    if (!l.pool || !w->layers) {
        lfail(&l, "out of memory");
        goto fail;
    }
    w->f32_pool = l.pool;

    if (get_mat(&l, "token_embd.weight", n_embd, hp->n_vocab, 0, &w->token_embd) < 0 ||
        get_mat(&l, "output.weight", n_embd, hp->n_vocab, 1, &w->output) < 0 ||
        get_vec(&l, "output_norm.weight", n_embd, 0, &w->output_norm) < 0 ||
        get_vec(&l, "rope_freqs.weight", hp->n_rot / 2, 1, &w->rope_freqs) < 0)
        goto fail;
    if (!w->output.data)
        w->output = w->token_embd; /* tied embeddings */

    for (int i = 0; i < hp->n_layer; i++) {
        struct engine_layer *L = &w->layers[i];
        char nm[96];
#define T(s) (snprintf(nm, sizeof(nm), "blk.%d.%s", i, s), nm)
        if (get_vec(&l, T("attn_norm.weight"), n_embd, 0, &L->attn_norm) < 0 ||
            get_mat(&l, T("attn_q.weight"), n_embd, n_q, 0, &L->wq) < 0 ||
            get_mat(&l, T("attn_k.weight"), n_embd, n_kv, 0, &L->wk) < 0 ||
            get_mat(&l, T("attn_v.weight"), n_embd, n_kv, 0, &L->wv) < 0 ||
            get_vec(&l, T("attn_q.bias"), n_q, 1, &L->bq) < 0 ||
            get_vec(&l, T("attn_k.bias"), n_kv, 1, &L->bk) < 0 ||
            get_vec(&l, T("attn_v.bias"), n_kv, 1, &L->bv) < 0 ||
            get_mat(&l, T("attn_output.weight"), n_q, n_embd, 0, &L->wo) < 0 ||
            get_vec(&l, T("ffn_norm.weight"), n_embd, 0, &L->ffn_norm) < 0 ||
            get_mat(&l, T("ffn_gate.weight"), n_embd, n_ff, 0, &L->w_gate) < 0 ||
            get_mat(&l, T("ffn_up.weight"), n_embd, n_ff, 0, &L->w_up) < 0 ||
            get_mat(&l, T("ffn_down.weight"), n_ff, n_embd, 0, &L->w_down) < 0)
            goto fail;
#undef T
        if (hp->arch == ENGINE_ARCH_QWEN2 && (!L->bq || !L->bk || !L->bv)) {
            lfail(&l, "missing tensor blk.%d.%s (qwen2 needs the q, k and v biases)", i,
                  !L->bq ? "attn_q.bias" : !L->bk ? "attn_k.bias" : "attn_v.bias");
            goto fail;
        }
        const struct engine_mat *ms[] = {&L->wq, &L->wk, &L->wv, &L->wo,
                                         &L->w_gate, &L->w_up, &L->w_down};
        for (size_t k = 0; k < sizeof(ms) / sizeof(ms[0]); k++) {
            size_t b = quant_act_row_bytes(ms[k]->type, ms[k]->ne0);
            if (b > w->max_act_bytes)
                w->max_act_bytes = b;
        }
    }
    {
        size_t b = quant_act_row_bytes(w->output.type, n_embd);
        if (b > w->max_act_bytes)
            w->max_act_bytes = b;
    }
    if (repack(w) < 0) {
        lfail(&l, "out of memory for repacked weights");
        goto fail;
    }
    *out = w;
    return 0;
fail:
    engine_weights_free(w);
    return -1;
}

void engine_weights_free(struct engine_weights *w)
{
    if (!w)
        return;
    free(w->layers);
    free(w->f32_pool);
    free(w->packed_pool);
    free(w);
}
