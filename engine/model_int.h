/* model_int.h -- private to engine/: transformer hyper-parameters and weight views into a GGUF mapping. */
#ifndef AIRLOCK_ENGINE_MODEL_INT_H
#define AIRLOCK_ENGINE_MODEL_INT_H

#include <stddef.h>
#include <stdint.h>

#include "engine/gguf.h"

enum engine_arch { ENGINE_ARCH_LLAMA = 0, ENGINE_ARCH_QWEN2 = 1 };

struct engine_hparams {
    int arch;          /* enum engine_arch */
    int n_vocab;       /* rows of token_embd */
    int n_embd;
    int n_layer;
    int n_head;
    int n_head_kv;     /* divides n_head (GQA) */
    int head_dim;      /* attention.key_length or n_embd / n_head */
    int n_ff;
    int n_rot;         /* rope.dimension_count (<= head_dim, even) */
    int rope_neox;     /* 1: rotate (i, i + n_rot/2) pairs (qwen2); 0: (2i, 2i+1) (llama) */
    float rope_base;   /* rope.freq_base */
    float rope_freq_scale; /* 1 / rope.scaling.factor for linear scaling, else 1 */
    float rms_eps;
    int n_ctx_train;   /* context_length */
};

/* A 2-D weight: ne1 rows of ne0 values of `type`, rows row_bytes apart (borrowed from
 * the mapping). */
struct engine_mat {
    const uint8_t *data;
    uint32_t type;
    int64_t ne0, ne1;
    size_t row_bytes;
    const uint8_t *packed; /* the same rows repacked for the VNNI kernels (quant.h), or NULL */
    size_t group_bytes;    /* bytes per QUANT_PACK_ROWS-row group of packed */
};

struct engine_layer {
    const float *attn_norm;               /* [n_embd] */
    struct engine_mat wq;                 /* [n_head*head_dim rows][n_embd] */
    struct engine_mat wk, wv;             /* [n_head_kv*head_dim rows][n_embd] */
    const float *bq, *bk, *bv;            /* biases or NULL (qwen2 has them) */
    struct engine_mat wo;                 /* [n_embd rows][n_head*head_dim] */
    const float *ffn_norm;                /* [n_embd] */
    struct engine_mat w_gate, w_up;       /* [n_ff rows][n_embd] */
    struct engine_mat w_down;             /* [n_embd rows][n_ff] */
};

struct engine_weights {
    struct engine_hparams hp;
    struct engine_mat token_embd;         /* [n_vocab rows][n_embd] */
    struct engine_mat output;             /* [n_vocab rows][n_embd] (token_embd when tied) */
    const float *output_norm;             /* [n_embd] */
    const float *rope_freqs;              /* [n_rot/2] frequency divisors, or NULL */
    struct engine_layer *layers;          /* [n_layer] */
    float *f32_pool;                      /* owned copies of the 1-D tensors (norms, biases) */
    uint8_t *packed_pool;                 /* owned: repacked matmul weights (see quant.h) */
    size_t max_act_bytes;                 /* largest activation row over all matmuls */
};

#endif
