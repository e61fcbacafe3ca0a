/* quant.h -- tensor element formats: fp16/bf16 conversion, dequantization, activation
 * quantization and weight x activation dot products (scalar reference + AVX2).
 *
 * Numerics follow ggml-cpu so the goldens reproduce: before a matmul with weights of
 * type W the activation row is converted to quant_act_type(W):
 *   F32 -> F32, F16 -> F16 (RNE), BF16 -> BF16 (RNE), Q8_0/Q4_0 -> Q8_0 (per 32:
 *   d = fp16(amax/127), q = rne(x * 127/amax)), Q4_K/Q5_K/Q6_K -> Q8_K (per 256:
 *   d = 1/(-127/max) as float32, q = rne(-127/max * x), bsums per 16).
 * and the dot product is integer where both sides are integer. Activation rows use
 * our own layouts (struct quant_q8_0a / quant_q8_k below); weights use ggml's.
 *
 * All functions are pure and thread-safe; quant_init() (idempotent, thread-safe)
 * picks the SIMD kernels once. */
#ifndef AIRLOCK_ENGINE_QUANT_H
#define AIRLOCK_ENGINE_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "engine/gguf.h"

#define QK8_0 32
#define QK4_0 32
#define QK_K 256

/* weight blocks, ggml-common.h layouts (packed, little-endian, fp16 as uint16) */
struct quant_q8_0 {
    uint16_t d;
    int8_t qs[QK8_0];
};
struct quant_q4_0 {
    uint16_t d;
    uint8_t qs[QK4_0 / 2];
};
struct quant_q4_k {
    uint16_t d, dmin;
    uint8_t scales[12];
    uint8_t qs[QK_K / 2];
};
struct quant_q5_k {
    uint16_t d, dmin;
    uint8_t scales[12];
    uint8_t qh[QK_K / 8];
    uint8_t qs[QK_K / 2];
};
struct quant_q6_k {
    uint8_t ql[QK_K / 2];
    uint8_t qh[QK_K / 4];
    int8_t scales[QK_K / 16];
    uint16_t d;
};

/* activation blocks (ours): d already widened to float (its value is the fp16 one
 * for Q8_0) */
struct quant_q8_0a {
    float d;
    /* VNNI kernels start each of their 8 int32 lanes from these, so that the lanes add up
     * to the offset of the unsigned weight bytes: */
    int32_t s4;   /* -sum(qs) = -8 * sum(qs) / 8 (Q4_0 nibbles are q + 8) */
    int32_t s8;   /* -16 * sum(qs) = -128 * sum(qs) / 8 (Q8_0 bytes ^ 0x80 are w + 128) */
    /* the whole offsets, for the repacked 512-bit kernels, whose lanes are rows: loaded
     * with a broadcast, not computed per block and token (a quarter of the vector
     * operations besides the multiply-adds in batched decode) */
    int32_t c4;   /* -8 * sum(qs) */
    int32_t c8;   /* -128 * sum(qs) */
    int8_t qs[QK8_0];
};
struct quant_q8_k {
    float d;
    int8_t qs[QK_K];
    int16_t bsums[QK_K / 16];
};

void quant_init(void);
/* 1 when the AVX2/FMA/F16C kernels are in use; 2 when also AVX512-VNNI/VL */
int quant_have_simd(void);
/* quant_set_max_level -- tests/benchmarks: cap the kernels used by the dispatching entry
 * points (0 scalar, 1 AVX2, 2 VNNI; default 2). Not thread-safe against running kernels. */
void quant_set_max_level(int level);

float quant_fp16_to_fp32(uint16_t h);
uint16_t quant_fp32_to_fp16(float f); /* round to nearest even */
float quant_bf16_to_fp32(uint16_t h);
uint16_t quant_fp32_to_bf16(float f); /* round to nearest even, NaN kept quiet */

/* quant_supported -- 1 if the engine can multiply with / dequantize weights of type t */
int quant_supported(uint32_t t);
/* quant_dequant_row -- n values (a multiple of the type's block) of type t into y */
void quant_dequant_row(uint32_t t, const void *x, float *y, int64_t n);

/* activation format and sizes for weights of type wtype */
uint32_t quant_act_type(uint32_t wtype); /* GGUF_T_F32/F16/BF16/Q8_0/Q8_K */
size_t quant_act_row_bytes(uint32_t wtype, int64_t n);
/* quant_act_row -- convert n floats x into the activation format for wtype at dst */
void quant_act_row(uint32_t wtype, const float *x, void *dst, int64_t n);

void quant_act_row_ref(uint32_t wtype, const float *x, void *dst, int64_t n); /* scalar */

/* quant_gemm -- out[t * out_stride + r] = dot(W row r, activation t) for r < nr, t < nt.
 * w: nr rows of n values of type wtype, w_stride bytes apart; act: nt rows in the format
 * of quant_act_row(wtype), act_stride bytes apart. n must be a multiple of the block. */
void quant_gemm(uint32_t wtype, int64_t n, const void *w, size_t w_stride, int nr,
                const void *act, size_t act_stride, int nt, float *out, size_t out_stride);
/* the scalar reference of the same (what tests compare against) */
void quant_gemm_ref(uint32_t wtype, int64_t n, const void *w, size_t w_stride, int nr,
                    const void *act, size_t act_stride, int nt, float *out, size_t out_stride);

/* quant_rms_norm -- y = x / sqrt(mean(x^2) + eps) * w (ggml's: float squares summed in
 * double) */
void quant_rms_norm(const float *x, const float *w, float *y, int n, float eps);
void quant_rms_norm_avx2(const float *x, const float *w, float *y, int n, float eps);

/* F32 helpers for attention: dot product and y += a * x (SIMD when available) */
float quant_dot_f32(const float *x, const float *y, int n);
void quant_axpy_f32(float *y, const float *x, float a, int n);
/* quant_silu_mul -- g[i] = silu(g[i]) * u[i] (SwiGLU) */
void quant_silu_mul(float *g, const float *u, int n);

/* quant_attn_head -- o[hd] = softmax(scale * K q) V for one head and one query over np
 * cached positions (K, V rows kv_stride floats apart); sc[np] is scratch */
void quant_attn_head(const float *q, const float *k, const float *v, size_t kv_stride, int np,
                     int hd, float scale, float *sc, float *o);
/* quant_attn_multi -- quant_attn_head for nq queries that share one K/V head (the query
 * heads of a GQA group, consecutive tokens of one sequence): query j (q[j]) attends to the
 * first np[j] positions, into o[j]; sc: scratch of nq rows sc_stride >= max np[j] floats
 * apart. Each query's result is bitwise that of quant_attn_head; the K/V rows are read
 * once per block of positions for all queries. */
void quant_attn_multi(int nq, const float *const *q, const int *np, const float *k,
                      const float *v, size_t kv_stride, int hd, float scale, float *sc,
                      size_t sc_stride, float *const *o);
void quant_attn_multi_avx2(int nq, const float *const *q, const int *np, const float *k,
                           const float *v, size_t kv_stride, int hd, float scale, float *sc,
                           size_t sc_stride, float *const *o);
void quant_attn_multi_avx512(int nq, const float *const *q, const int *np, const float *k,
                             const float *v, size_t kv_stride, int hd, float scale, float *sc,
                             size_t sc_stride, float *const *o);

/* Repacked weights (VNNI machines, Q8_0 / Q4_0, row count a multiple of QUANT_PACK_ROWS):
 * groups of 16 rows stored block-interleaved so that one 512-bit vpdpbusd computes 4
 * products for each of the 16 rows and the int32 lanes are the rows themselves (no
 * horizontal sums, one float scale per block and group). Per group and block: d of the 16
 * rows (16 x fp16), then for each group of four values j, the 16 rows' 4 bytes (Q8_0: 8 j x
 * 64 bytes; Q4_0: 4 j x 64 bytes of nibble pairs: low nibbles values 4j.., high nibbles
 * values 16+4j..).
 * quant_repack_bytes: size of the repacked n x nr matrix, 0 when not repackable here. */
size_t quant_repack_bytes(uint32_t wtype, int64_t n, int64_t nr);
void quant_repack(uint32_t wtype, const void *w, size_t w_stride, int64_t n, int64_t nr, void *dst);
#define QUANT_PACK_ROWS 16
/* quant_gemm_packed -- as quant_gemm for ngroups * QUANT_PACK_ROWS rows of a repacked
 * matrix, wp pointing at the first group (group stride quant_repack_bytes(wtype, n,
 * QUANT_PACK_ROWS)) */
void quant_gemm_packed(uint32_t wtype, int64_t n, const void *wp, int ngroups, const void *act,
                       size_t act_stride, int nt, float *out, size_t out_stride);

/* internal: SIMD implementation; returns -1 when it has no kernel for wtype */
int quant_gemm_vnni(uint32_t wtype, int64_t n, const void *w, size_t w_stride, int nr,
                    const void *act, size_t act_stride, int nt, float *out, size_t out_stride);
float quant_dot_f32_avx2(const float *x, const float *y, int n);
void quant_axpy_f32_avx2(float *y, const float *x, float a, int n);
void quant_silu_mul_avx2(float *g, const float *u, int n);
void quant_silu_mul_avx512(float *g, const float *u, int n);
int quant_gemm_avx2(uint32_t wtype, int64_t n, const void *w, size_t w_stride, int nr,
                    const void *act, size_t act_stride, int nt, float *out, size_t out_stride);
void quant_act_row_avx2(uint32_t wtype, const float *x, void *dst, int64_t n);
void quant_act_q8_0_avx512(const float *x, void *dst, int64_t n);

#endif
