/* gguf_build.h -- a GGUF writer for tiny hand-built models, shared by the engine tests that
 * need a model file with one chosen defect (test_weights.c: loader refusals; test_nonfinite.c:
 * NaN / infinity in a weight).
 *
 * A `struct model` lists metadata and tensors; model_bytes() serializes it (GGUF v3, alignment
 * 32) with deterministic data (norms 1, other weights small noise from a fixed seed, so the same
 * spec always gives the same bytes) and write_model() writes it to tmp_path. The includer
 * creates tmp_dir with mkdtemp and sets tmp_path inside it; it removes both at the end.
 * Every function is static and marked unused so a test that uses only part of it still builds
 * with -Werror. Test code only: it aborts when a fixed table overflows. */
#ifndef AIRLOCK_TESTS_ENGINE_GGUF_BUILD_H
#define AIRLOCK_TESTS_ENGINE_GGUF_BUILD_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/gguf.h"

#define GB_FN static __attribute__((unused))

#define MAX_KV 48
#define MAX_T 96

enum kv_kind { KV_U32, KV_F32, KV_STR, KV_TOKENS, KV_SCORES, KV_TTYPES };

struct kv_spec {
    char key[96];
    int kind;
    uint32_t u; /* KV_U32 value; for the tokenizer arrays, their length */
    float f;
    char s[64];
};

struct t_spec {
    char name[64];
    uint32_t type;
    uint32_t n_dims;
    int64_t ne[4];
    int offset_set; /* write `offset` into the tensor info instead of the real one */
    uint64_t offset;
    /* F32 only: element poison_at (row-major, ne[0] fastest) gets poison_val after the fill,
     * e.g. a NaN or an infinity; see poison_t */
    int poison_set;
    int64_t poison_at;
    float poison_val;
};

struct model {
    char arch[16];
    struct kv_spec kv[MAX_KV];
    int n_kv;
    struct t_spec t[MAX_T];
    int n_t;
    size_t cut; /* bytes dropped from the end of the file */
};

static char tmp_dir[64];
static char tmp_path[128];

GB_FN const char *akey(const struct model *m, const char *name)
{
    static char k[128];
    snprintf(k, sizeof(k), "%s.%s", m->arch, name);
    return k;
}

GB_FN struct kv_spec *kv_slot(struct model *m, const char *key)
{
    for (int i = 0; i < m->n_kv; i++)
        if (strcmp(m->kv[i].key, key) == 0)
            return &m->kv[i];
    if (m->n_kv == MAX_KV)
        abort();
    struct kv_spec *k = &m->kv[m->n_kv++];
    memset(k, 0, sizeof(*k));
    snprintf(k->key, sizeof(k->key), "%s", key);
    return k;
}

GB_FN void set_u32(struct model *m, const char *key, uint32_t v)
{
    struct kv_spec *k = kv_slot(m, key);
    k->kind = KV_U32;
    k->u = v;
}

GB_FN void set_f32(struct model *m, const char *key, float v)
{
    struct kv_spec *k = kv_slot(m, key);
    k->kind = KV_F32;
    k->f = v;
}

GB_FN void set_str(struct model *m, const char *key, const char *v)
{
    struct kv_spec *k = kv_slot(m, key);
    k->kind = KV_STR;
    snprintf(k->s, sizeof(k->s), "%s", v);
}

GB_FN void del_kv(struct model *m, const char *key)
{
    for (int i = 0; i < m->n_kv; i++)
        if (strcmp(m->kv[i].key, key) == 0) {
            m->kv[i] = m->kv[--m->n_kv];
            return;
        }
}

GB_FN struct t_spec *add_t(struct model *m, const char *name, uint32_t type, int64_t ne0,
                           int64_t ne1)
{
    if (m->n_t == MAX_T)
        abort();
    struct t_spec *t = &m->t[m->n_t++];
    memset(t, 0, sizeof(*t));
    snprintf(t->name, sizeof(t->name), "%s", name);
    t->type = type;
    t->n_dims = ne1 > 0 ? 2 : 1;
    t->ne[0] = ne0;
    t->ne[1] = ne1 > 0 ? ne1 : 1;
    t->ne[2] = t->ne[3] = 1;
    return t;
}

GB_FN struct t_spec *find_t(struct model *m, const char *name)
{
    for (int i = 0; i < m->n_t; i++)
        if (strcmp(m->t[i].name, name) == 0)
            return &m->t[i];
    return NULL;
}

GB_FN void del_t(struct model *m, const char *name)
{
    for (int i = 0; i < m->n_t; i++)
        if (strcmp(m->t[i].name, name) == 0) {
            memmove(&m->t[i], &m->t[i + 1], sizeof(m->t[0]) * (size_t)(m->n_t - i - 1));
            m->n_t--;
            return;
        }
}

/* poison_t -- the F32 tensor `name` gets v at [row][col] (col < ne[0]); the rest of its data is
 * unchanged, so the model differs from the unpoisoned one in that one float. Aborts when the
 * tensor is missing, not F32, or the index is outside it. */
GB_FN void poison_t(struct model *m, const char *name, int64_t row, int64_t col, float v)
{
    struct t_spec *t = find_t(m, name);
    if (!t || t->type != GGUF_T_F32 || col < 0 || col >= t->ne[0] || row < 0 ||
        row >= t->ne[1] * t->ne[2] * t->ne[3])
        abort();
    t->poison_set = 1;
    t->poison_at = row * t->ne[0] + col;
    t->poison_val = v;
}

/* A model of n_layer layers, heads of n_embd / n_head, all tensors F32, tied embeddings;
 * qwen2 gets q/k/v biases. */
GB_FN void model_init(struct model *m, const char *arch, int n_embd, int n_layer, int n_head,
                      int n_head_kv, int n_ff, int n_vocab)
{
    memset(m, 0, sizeof(*m));
    snprintf(m->arch, sizeof(m->arch), "%s", arch);
    int hd = n_embd / n_head, n_q = n_head * hd, n_kv = n_head_kv * hd;
    set_str(m, "general.architecture", arch);
    set_u32(m, akey(m, "embedding_length"), (uint32_t)n_embd);
    set_u32(m, akey(m, "block_count"), (uint32_t)n_layer);
    set_u32(m, akey(m, "attention.head_count"), (uint32_t)n_head);
    set_u32(m, akey(m, "attention.head_count_kv"), (uint32_t)n_head_kv);
    set_u32(m, akey(m, "feed_forward_length"), (uint32_t)n_ff);
    set_u32(m, akey(m, "context_length"), 64);
    set_f32(m, akey(m, "rope.freq_base"), 10000.0f);
    set_f32(m, akey(m, "attention.layer_norm_rms_epsilon"), 1e-5f);
    add_t(m, "token_embd.weight", GGUF_T_F32, n_embd, n_vocab);
    add_t(m, "output_norm.weight", GGUF_T_F32, n_embd, 0);
    for (int i = 0; i < n_layer; i++) {
        char nm[64];
#define T(s) (snprintf(nm, sizeof(nm), "blk.%d.%s", i, s), nm)
        add_t(m, T("attn_norm.weight"), GGUF_T_F32, n_embd, 0);
        add_t(m, T("attn_q.weight"), GGUF_T_F32, n_embd, n_q);
        add_t(m, T("attn_k.weight"), GGUF_T_F32, n_embd, n_kv);
        add_t(m, T("attn_v.weight"), GGUF_T_F32, n_embd, n_kv);
        if (strcmp(arch, "qwen2") == 0) {
            add_t(m, T("attn_q.bias"), GGUF_T_F32, n_q, 0);
            add_t(m, T("attn_k.bias"), GGUF_T_F32, n_kv, 0);
            add_t(m, T("attn_v.bias"), GGUF_T_F32, n_kv, 0);
        }
        add_t(m, T("attn_output.weight"), GGUF_T_F32, n_q, n_embd);
        add_t(m, T("ffn_norm.weight"), GGUF_T_F32, n_embd, 0);
        add_t(m, T("ffn_gate.weight"), GGUF_T_F32, n_embd, n_ff);
        add_t(m, T("ffn_up.weight"), GGUF_T_F32, n_embd, n_ff);
        add_t(m, T("ffn_down.weight"), GGUF_T_F32, n_ff, n_embd);
#undef T
    }
}

/* the default test model: n_embd 32, 2 layers, 4 heads of 8, 2 kv heads, n_ff 64, vocab 40 */
GB_FN void model_small(struct model *m, const char *arch)
{
    model_init(m, arch, 32, 2, 4, 2, 64, 40);
}

/* a SentencePiece vocabulary of n tokens (<unk>, <s>, </s>, then "x3".."x<n-1>") */
GB_FN void add_tokenizer(struct model *m, uint32_t n)
{
    set_str(m, "tokenizer.ggml.model", "llama");
    kv_slot(m, "tokenizer.ggml.tokens")->kind = KV_TOKENS;
    kv_slot(m, "tokenizer.ggml.tokens")->u = n;
    kv_slot(m, "tokenizer.ggml.scores")->kind = KV_SCORES;
    kv_slot(m, "tokenizer.ggml.scores")->u = n;
    kv_slot(m, "tokenizer.ggml.token_type")->kind = KV_TTYPES;
    kv_slot(m, "tokenizer.ggml.token_type")->u = n;
    set_u32(m, "tokenizer.ggml.bos_token_id", 1);
    set_u32(m, "tokenizer.ggml.eos_token_id", 2);
}

struct buf {
    unsigned char *p;
    size_t n, cap;
};

GB_FN void put(struct buf *b, const void *d, size_t n)
{
    if (b->n + n > b->cap) {
        size_t c = b->cap ? b->cap : 4096;
        while (c < b->n + n)
            c *= 2;
        unsigned char *q = realloc(b->p, c);
        if (!q)
            abort();
        b->p = q;
        b->cap = c;
    }
    if (d)
        memcpy(b->p + b->n, d, n);
    else
        memset(b->p + b->n, 0, n);
    b->n += n;
}

GB_FN void put_u32(struct buf *b, uint32_t v)
{
    put(b, &v, 4);
}
GB_FN void put_u64(struct buf *b, uint64_t v)
{
    put(b, &v, 8);
}
GB_FN void put_str(struct buf *b, const char *s)
{
    put_u64(b, strlen(s));
    put(b, s, strlen(s));
}

static uint32_t rng = 12345;
GB_FN float rnd(void)
{
    rng = rng * 1664525u + 1013904223u;
    return (float)(rng >> 16) / 65536.0f - 0.5f; /* [-0.5, 0.5) */
}

/* float -> fp16 for |x| < 2 (truncating; enough for test data) */
GB_FN uint16_t to_f16(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    int e = (int)((u >> 23) & 0xff) - 127 + 15;
    if (e <= 0)
        return sign;
    return (uint16_t)(sign | (uint32_t)e << 10 | ((u >> 13) & 0x3ff));
}

/* bytes of tensor data as the parser computes them; 64 when the shape is not valid for the
 * type or absurdly large (the file then claims more than it holds) */
GB_FN size_t t_bytes(const struct t_spec *t)
{
    uint32_t blck, bsz;
    if (gguf_type_size(t->type, &blck, &bsz) < 0 || t->ne[0] % blck != 0)
        return 64;
    double nb = (double)gguf_row_bytes(t->type, t->ne[0]) * (double)t->ne[1] * (double)t->ne[2] *
                (double)t->ne[3];
    return nb > (double)(1 << 24) ? 64 : (size_t)nb;
}

/* deterministic data: norms and rope factors 1, other weights small noise */
GB_FN void fill(const struct t_spec *t, unsigned char *p, size_t n)
{
    int ones = strstr(t->name, "norm") != NULL || strstr(t->name, "rope_freqs") != NULL;
    memset(p, 0, n);
    switch (t->type) {
    case GGUF_T_F32:
        for (size_t i = 0; i + 4 <= n; i += 4) {
            float v = ones ? 1.0f : rnd();
            memcpy(p + i, &v, 4);
        }
        break;
    case GGUF_T_F16:
    case GGUF_T_BF16:
        for (size_t i = 0; i + 2 <= n; i += 2) {
            float v = ones ? 1.0f : rnd();
            uint32_t u;
            memcpy(&u, &v, 4);
            uint16_t h = t->type == GGUF_T_F16 ? to_f16(v) : (uint16_t)(u >> 16);
            memcpy(p + i, &h, 2);
        }
        break;
    case GGUF_T_Q8_0:
    case GGUF_T_Q4_0: {
        size_t bs = t->type == GGUF_T_Q8_0 ? 34 : 18;
        uint16_t d = to_f16(ones ? 1.0f / 64 : 1.0f / 256);
        for (size_t i = 0; i + bs <= n; i += bs) {
            memcpy(p + i, &d, 2);
            for (size_t k = 2; k < bs; k++)
                p[i + k] = ones && t->type == GGUF_T_Q8_0 ? 64 : (unsigned char)(rnd() * 256.0f);
        }
        break;
    }
    case GGUF_T_Q4_K:
    case GGUF_T_Q5_K:
    case GGUF_T_Q6_K: {
        /* random quants and scales; fp16 d (and dmin 0) at the block's start, Q6_K's d last */
        size_t bs = t->type == GGUF_T_Q4_K ? 144 : t->type == GGUF_T_Q5_K ? 176 : 210;
        size_t at = t->type == GGUF_T_Q6_K ? 208 : 0;
        uint16_t d = to_f16(1.0f / 1024);
        for (size_t i = 0; i + bs <= n; i += bs) {
            for (size_t k = 0; k < bs; k++)
                p[i + k] = (unsigned char)(rnd() * 256.0f);
            memcpy(p + i + at, &d, 2);
            if (t->type != GGUF_T_Q6_K)
                memset(p + i + 2, 0, 2);
        }
        break;
    }
    default:
        break; /* all-zero blocks are valid in every other type */
    }
}

GB_FN void put_kv(struct buf *b, const struct kv_spec *k)
{
    put_str(b, k->key);
    switch (k->kind) {
    case KV_U32:
        put_u32(b, GGUF_TYPE_UINT32);
        put_u32(b, k->u);
        break;
    case KV_F32:
        put_u32(b, GGUF_TYPE_FLOAT32);
        put(b, &k->f, 4);
        break;
    case KV_STR:
        put_u32(b, GGUF_TYPE_STRING);
        put_str(b, k->s);
        break;
    case KV_TOKENS:
        put_u32(b, GGUF_TYPE_ARRAY);
        put_u32(b, GGUF_TYPE_STRING);
        put_u64(b, k->u);
        for (uint32_t i = 0; i < k->u; i++) {
            char s[16];
            if (i < 3)
                snprintf(s, sizeof(s), "%s", i == 0 ? "<unk>" : i == 1 ? "<s>" : "</s>");
            else
                snprintf(s, sizeof(s), "x%u", i);
            put_str(b, s);
        }
        break;
    case KV_SCORES:
        put_u32(b, GGUF_TYPE_ARRAY);
        put_u32(b, GGUF_TYPE_FLOAT32);
        put_u64(b, k->u);
        for (uint32_t i = 0; i < k->u; i++) {
            float s = -(float)i;
            put(b, &s, 4);
        }
        break;
    case KV_TTYPES:
        put_u32(b, GGUF_TYPE_ARRAY);
        put_u32(b, GGUF_TYPE_INT32);
        put_u64(b, k->u);
        for (uint32_t i = 0; i < k->u; i++)
            put_u32(b, i == 0 ? 2 : i < 3 ? 3 : 1); /* unknown, control, normal */
        break;
    default:
        abort();
    }
}

/* Serialize m (GGUF v3, alignment 32) into b. */
GB_FN void model_bytes(const struct model *m, struct buf *b)
{
    b->n = 0;
    rng = 12345;
    put(b, "GGUF", 4);
    put_u32(b, 3);
    put_u64(b, (uint64_t)m->n_t);
    put_u64(b, (uint64_t)m->n_kv);
    for (int i = 0; i < m->n_kv; i++)
        put_kv(b, &m->kv[i]);
    uint64_t off = 0;
    for (int i = 0; i < m->n_t; i++) {
        const struct t_spec *t = &m->t[i];
        put_str(b, t->name);
        put_u32(b, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++)
            put_u64(b, (uint64_t)t->ne[d]);
        put_u32(b, t->type);
        put_u64(b, t->offset_set ? t->offset : off);
        off += (t_bytes(t) + 31) / 32 * 32;
    }
    put(b, NULL, (32 - b->n % 32) % 32);
    for (int i = 0; i < m->n_t; i++) {
        size_t n = t_bytes(&m->t[i]), start = b->n;
        put(b, NULL, (n + 31) / 32 * 32);
        fill(&m->t[i], b->p + start, n);
        const struct t_spec *t = &m->t[i];
        if (t->poison_set && t->type == GGUF_T_F32 && t->poison_at >= 0 &&
            (size_t)t->poison_at < n / 4)
            memcpy(b->p + start + (size_t)t->poison_at * 4, &t->poison_val, 4);
    }
    b->n = m->cut < b->n ? b->n - m->cut : 0;
}

GB_FN int write_model(const struct model *m)
{
    struct buf b = {0};
    model_bytes(m, &b);
    FILE *fp = fopen(tmp_path, "wb");
    int ok = fp && fwrite(b.p, 1, b.n, fp) == b.n;
    if (fp && fclose(fp) != 0)
        ok = 0;
    free(b.p);
    return ok ? 0 : -1;
}

#endif
