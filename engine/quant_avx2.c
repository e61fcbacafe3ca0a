/* quant_avx2.c -- AVX2/FMA/F16C kernels (selected at run time): activation quantizers and tiled weight x activation dot products. */
#include "engine/quant.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>

#define TGT __attribute__((target("avx2,fma,f16c")))
#define TGT_INLINE __attribute__((target("avx2,fma,f16c"), always_inline)) static inline

TGT_INLINE float hsum_ps(__m256 v)
{
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

TGT_INLINE int hsum_epi32(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

TGT_INLINE float h2f(uint16_t h)
{
    return _cvtsh_ss(h);
}

/* ---- activation quantizers: same values as the scalar ones (see quant.c) ---- */

TGT static void act_q8_0_avx2(const float *x, struct quant_q8_0a *y, int64_t n)
{
    const __m256 signbit = _mm256_set1_ps(-0.0f);
    for (int64_t i = 0; i < n / QK8_0; i++) {
        __m256 v[4];
        __m256 mx = _mm256_setzero_ps();
        for (int k = 0; k < 4; k++) {
            v[k] = _mm256_loadu_ps(x + i * QK8_0 + 8 * k);
            mx = _mm256_max_ps(mx, _mm256_andnot_ps(signbit, v[k]));
        }
        __m128 m4 = _mm_max_ps(_mm256_extractf128_ps(mx, 1), _mm256_castps256_ps128(mx));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        const float amax = _mm_cvtss_f32(m4);
        const float d = amax / 127.f;
        y[i].d = _cvtsh_ss(_cvtss_sh(d, 0));
        const __m256 id = _mm256_set1_ps(amax != 0.0f ? 127.f / amax : 0.0f);
        __m256i q[4];
        for (int k = 0; k < 4; k++)
            q[k] = _mm256_cvtps_epi32(
                _mm256_round_ps(_mm256_mul_ps(v[k], id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        __m256i p01 = _mm256_packs_epi32(q[0], q[1]);
        __m256i p23 = _mm256_packs_epi32(q[2], q[3]);
        __m256i p = _mm256_packs_epi16(p01, p23);
        /* undo the lane interleaving of the packs */
        p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)y[i].qs, p);
        const int sum = hsum_epi32(_mm256_madd_epi16(
            _mm256_maddubs_epi16(_mm256_set1_epi8(1), p), _mm256_set1_epi16(1)));
        y[i].s4 = -sum;
        y[i].s8 = -16 * sum;
        y[i].c4 = -8 * sum;
        y[i].c8 = -128 * sum;
    }
}

TGT void quant_act_row_avx2(uint32_t wtype, const float *x, void *dst, int64_t n)
{
    switch (quant_act_type(wtype)) {
    case GGUF_T_Q8_0:
        act_q8_0_avx2(x, dst, n);
        return;
    case GGUF_T_F16: {
        uint16_t *o = dst;
        int64_t i = 0;
        for (; i + 8 <= n; i += 8)
            _mm_storeu_si128((__m128i *)(o + i),
                             _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
        for (; i < n; i++)
            o[i] = _cvtss_sh(x[i], 0);
        return;
    }
    default: {
        /* Q8_K, BF16, F32: the scalar code is exact and cheap next to the matmul */
        quant_act_row_ref(wtype, x, dst, n);
        return;
    }
    }
}

/* ---- tiled kernels: R weight rows x T activation rows, accumulators in registers ---- */

/* signed int8 x int8 dot of 32 pairs into 8 int32 lanes (as floats) */
TGT_INLINE __m256 dot_i8(__m256i ax, __m256i sx, __m256i y)
{
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i sy = _mm256_sign_epi8(y, sx);
    __m256i d16 = _mm256_maddubs_epi16(ax, sy);
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(d16, ones));
}

TGT_INLINE __m256i load_q4_0(const uint8_t *qs)
{
    __m128i t = _mm_loadu_si128((const __m128i *)qs);
    __m256i b = _mm256_set_m128i(_mm_srli_epi16(t, 4), t);
    b = _mm256_and_si256(b, _mm256_set1_epi8(0x0F));
    return _mm256_sub_epi8(b, _mm256_set1_epi8(8));
}

#define TILE_Q(NAME, WBLOCK, LOADW)                                                                \
    TGT_INLINE void NAME(int R, int T, int64_t nb, const uint8_t *w, size_t ws, const uint8_t *a,   \
                         size_t as, float *out, size_t os)                                         \
    {                                                                                              \
        __m256 acc[4][4];                                                                          \
        _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)                                        \
            _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) acc[r][t] = _mm256_setzero_ps();   \
        for (int64_t i = 0; i < nb; i++) {                                                         \
            __m256i ax[4], sx[4];                                                                  \
            float wd[4];                                                                           \
            _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)                                    \
            {                                                                                      \
                const WBLOCK *b = (const WBLOCK *)(w + (size_t)r * ws) + i;                        \
                __m256i q = LOADW(b->qs);                                                          \
                ax[r] = _mm256_sign_epi8(q, q);                                                    \
                sx[r] = q;                                                                         \
                wd[r] = h2f(b->d);                                                                 \
            }                                                                                      \
            _Pragma("GCC unroll 4") for (int t = 0; t < T; t++)                                    \
            {                                                                                      \
                const struct quant_q8_0a *ab = (const struct quant_q8_0a *)(a + (size_t)t * as) + i; \
                __m256i y = _mm256_loadu_si256((const __m256i *)ab->qs);                           \
                _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)                                \
                {                                                                                  \
                    __m256 p = dot_i8(ax[r], sx[r], y);                                            \
                    acc[r][t] = _mm256_fmadd_ps(_mm256_set1_ps(wd[r] * ab->d), p, acc[r][t]);      \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)                                        \
            _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) out[(size_t)t * os + r] =          \
                hsum_ps(acc[r][t]);                                                                \
    }

#define LOAD_Q8(qs) _mm256_loadu_si256((const __m256i *)(qs))
TILE_Q(tile_q8_0, struct quant_q8_0, LOAD_Q8)
TILE_Q(tile_q4_0, struct quant_q4_0, load_q4_0)

/* Float kernels: weight row converted 8 at a time, activations of the same type. */
TGT_INLINE __m256 ld_f32(const void *p) { return _mm256_loadu_ps(p); }
TGT_INLINE __m256 ld_f16(const void *p) { return _mm256_cvtph_ps(_mm_loadu_si128(p)); }
TGT_INLINE __m256 ld_bf16(const void *p)
{
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(p)), 16));
}

#define TILE_F(NAME, ESZ, LOAD)                                                                    \
    TGT_INLINE void NAME(int R, int T, int64_t n, const uint8_t *w, size_t ws, const uint8_t *a,    \
                         size_t as, float *out, size_t os)                                         \
    {                                                                                              \
        __m256 acc[4][4];                                                                          \
        _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)                                        \
            _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) acc[r][t] = _mm256_setzero_ps();   \
        for (int64_t i = 0; i < n; i += 8) {                                                       \
            __m256 wv[4];                                                                          \
            _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) wv[r] =                            \
                LOAD(w + (size_t)r * ws + (size_t)i * ESZ);                                        \
            _Pragma("GCC unroll 4") for (int t = 0; t < T; t++)                                    \
            {                                                                                      \
                __m256 av = LOAD(a + (size_t)t * as + (size_t)i * ESZ);                            \
                _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) acc[r][t] =                    \
                    _mm256_fmadd_ps(wv[r], av, acc[r][t]);                                         \
            }                                                                                      \
        }                                                                                          \
        _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)                                        \
            _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) out[(size_t)t * os + r] =          \
                hsum_ps(acc[r][t]);                                                                \
    }

TILE_F(tile_f32, 4, ld_f32)
TILE_F(tile_f16, 2, ld_f16)
TILE_F(tile_bf16, 2, ld_bf16)

/* ---- K-quants: one row x one activation at a time ---- */

TGT_INLINE void k_scales(const uint8_t *s, uint8_t sc[8], uint8_t m[8])
{
    for (int j = 0; j < 4; j++) {
        sc[j] = s[j] & 63;
        m[j] = s[j + 4] & 63;
    }
    for (int j = 4; j < 8; j++) {
        sc[j] = (uint8_t)((s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4));
        m[j] = (uint8_t)((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
    }
}

TGT static float dot_q45_k_avx2(int is5, int64_t n, const uint8_t *w, const struct quant_q8_k *a)
{
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m256 acc = _mm256_setzero_ps();
    float corr = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const uint8_t *scales, *qs, *qh = NULL;
        uint16_t dh, mh;
        if (!is5) {
            const struct quant_q4_k *b = (const struct quant_q4_k *)w + i;
            dh = b->d, mh = b->dmin, scales = b->scales, qs = b->qs;
        } else {
            const struct quant_q5_k *b = (const struct quant_q5_k *)w + i;
            dh = b->d, mh = b->dmin, scales = b->scales, qs = b->qs, qh = b->qh;
        }
        uint8_t sc[8], mn[8];
        k_scales(scales, sc, mn);
        const int8_t *aq = a[i].qs;
        __m256i sumi = _mm256_setzero_si256();
        __m256i hbits = qh ? _mm256_loadu_si256((const __m256i *)qh) : _mm256_setzero_si256();
        for (int c = 0; c < 4; c++) {
            __m256i raw = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
            __m256i lo = _mm256_and_si256(raw, m4);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
            if (qh) {
                const __m256i one = _mm256_set1_epi8(1);
                __m256i b0 = _mm256_and_si256(_mm256_srli_epi16(hbits, 2 * c), one);
                __m256i b1 = _mm256_and_si256(_mm256_srli_epi16(hbits, 2 * c + 1), one);
                lo = _mm256_or_si256(lo, _mm256_slli_epi16(b0, 4));
                hi = _mm256_or_si256(hi, _mm256_slli_epi16(b1, 4));
            }
            __m256i p0 = _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)(aq + 64 * c)));
            __m256i p1 =
                _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(aq + 64 * c + 32)));
            p0 = _mm256_madd_epi16(p0, _mm256_set1_epi16(sc[2 * c]));
            p1 = _mm256_madd_epi16(p1, _mm256_set1_epi16(sc[2 * c + 1]));
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p0, p1));
        }
        int summ = 0;
        for (int j = 0; j < 8; j++)
            summ += mn[j] * (a[i].bsums[2 * j] + a[i].bsums[2 * j + 1]);
        const float d = h2f(dh) * a[i].d;
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
        corr += h2f(mh) * a[i].d * (float)summ;
    }
    return hsum_ps(acc) - corr;
}

TGT static float dot_q6_k_avx2(int64_t n, const struct quant_q6_k *w, const struct quant_q8_k *a)
{
    const __m256i m4 = _mm256_set1_epi8(0x0F), m3 = _mm256_set1_epi8(3);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / QK_K; i++) {
        const struct quant_q6_k *b = &w[i];
        const int8_t *aq = a[i].qs;
        __m256i sumi = _mm256_setzero_si256();
        int corr = 0;
        for (int j = 0; j < 16; j++)
            corr += b->scales[j] * a[i].bsums[j];
        for (int h = 0; h < 2; h++) {
            __m256i ql0 = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * h));
            __m256i ql1 = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * h + 32));
            __m256i qh = _mm256_loadu_si256((const __m256i *)(b->qh + 32 * h));
            __m256i q[4];
            q[0] = _mm256_or_si256(_mm256_and_si256(ql0, m4),
                                   _mm256_slli_epi16(_mm256_and_si256(qh, m3), 4));
            q[1] = _mm256_or_si256(_mm256_and_si256(ql1, m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m3), 4));
            q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m3), 4));
            q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), m3), 4));
            for (int k = 0; k < 4; k++) {
                /* unsigned q (0..63) x activations; the -32 offset comes back through bsums */
                __m256i p = _mm256_maddubs_epi16(
                    q[k], _mm256_loadu_si256((const __m256i *)(aq + 128 * h + 32 * k)));
                const int s0 = b->scales[8 * h + 2 * k], s1 = b->scales[8 * h + 2 * k + 1];
                __m256i scv = _mm256_setr_m128i(_mm_set1_epi16((int16_t)s0), _mm_set1_epi16((int16_t)s1));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, scv));
            }
        }
        const float d = h2f(b->d) * a[i].d;
        __m256 s = _mm256_cvtepi32_ps(sumi);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), s, acc);
        acc = _mm256_add_ps(acc, _mm256_setr_ps(-d * 32.f * (float)corr, 0, 0, 0, 0, 0, 0, 0));
    }
    return hsum_ps(acc);
}

#define DISPATCH_TILES(TILE, NB)                                                                   \
    do {                                                                                           \
        int r = 0;                                                                                 \
        if (nt <= 8) {                                                                             \
            for (; r < nr; r++) {                                                                  \
                int t = 0;                                                                         \
                for (; t + 2 <= nt; t += 2)                                                        \
                    TILE(1, 2, NB, wb + (size_t)r * w_stride, w_stride,                            \
                         ab + (size_t)t * act_stride, act_stride, out + (size_t)t * out_stride + r, \
                         out_stride);                                                              \
                for (; t < nt; t++)                                                                \
                    TILE(1, 1, NB, wb + (size_t)r * w_stride, w_stride,                            \
                         ab + (size_t)t * act_stride, act_stride, out + (size_t)t * out_stride + r, \
                         out_stride);                                                              \
            }                                                                                      \
        }                                                                                          \
        for (; r + 4 <= nr; r += 4) {                                                              \
            int t = 0;                                                                             \
            for (; t + 2 <= nt; t += 2)                                                            \
                TILE(4, 2, NB, wb + (size_t)r * w_stride, w_stride, ab + (size_t)t * act_stride,   \
                     act_stride, out + (size_t)t * out_stride + r, out_stride);                    \
            for (; t < nt; t++)                                                                    \
                TILE(4, 1, NB, wb + (size_t)r * w_stride, w_stride, ab + (size_t)t * act_stride,   \
                     act_stride, out + (size_t)t * out_stride + r, out_stride);                    \
        }                                                                                          \
        for (; r < nr; r++)                                                                        \
            for (int t = 0; t < nt; t++)                                                           \
                TILE(1, 1, NB, wb + (size_t)r * w_stride, w_stride, ab + (size_t)t * act_stride,   \
                     act_stride, out + (size_t)t * out_stride + r, out_stride);                    \
    } while (0)

TGT int quant_gemm_avx2(uint32_t wtype, int64_t n, const void *w, size_t w_stride, int nr,
                        const void *act, size_t act_stride, int nt, float *out, size_t out_stride)
{
    const uint8_t *wb = w, *ab = act;
    switch (wtype) {
    case GGUF_T_Q8_0:
        DISPATCH_TILES(tile_q8_0, n / QK8_0);
        return 0;
    case GGUF_T_Q4_0:
        DISPATCH_TILES(tile_q4_0, n / QK4_0);
        return 0;
    case GGUF_T_F32:
        if (n % 8)
            return -1;
        DISPATCH_TILES(tile_f32, n);
        return 0;
    case GGUF_T_F16:
        if (n % 8)
            return -1;
        DISPATCH_TILES(tile_f16, n);
        return 0;
    case GGUF_T_BF16:
        if (n % 8)
            return -1;
        DISPATCH_TILES(tile_bf16, n);
        return 0;
    case GGUF_T_Q4_K:
    case GGUF_T_Q5_K:
    case GGUF_T_Q6_K:
        for (int t = 0; t < nt; t++) {
            const struct quant_q8_k *a = (const struct quant_q8_k *)(ab + (size_t)t * act_stride);
            for (int r = 0; r < nr; r++) {
                const uint8_t *wr = wb + (size_t)r * w_stride;
                out[(size_t)t * out_stride + r] =
                    wtype == GGUF_T_Q6_K ? dot_q6_k_avx2(n, (const struct quant_q6_k *)wr, a)
                                         : dot_q45_k_avx2(wtype == GGUF_T_Q5_K, n, wr, a);
            }
        }
        return 0;
    default:
        return -1;
    }
}

/* ---- F32 helpers for attention ---- */

TGT float quant_dot_f32_avx2(const float *x, const float *y, int n)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), a1);
    }
    for (; i + 8 <= n; i += 8)
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
    float s = hsum_ps(_mm256_add_ps(a0, a1));
    for (; i < n; i++)
        s += x[i] * y[i];
    return s;
}

/* expf for 8 lanes (Cephes-style: x = n ln2 + r, degree-6 polynomial), within 2 ulp of
 * libm; inputs clamped to [-87.3, 88.4], so far negative gives ~1e-38 instead of 0 (a
 * softmax or silu does not see the difference). A scalar expf per element was ~10% of
 * prefill. */
TGT_INLINE __m256 exp8(__m256 x)
{
    x = _mm256_min_ps(x, _mm256_set1_ps(88.3762626647949f));
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.3365478515625f));
    const __m256 fx = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 y = _mm256_set1_ps(1.9875691500e-4f);
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.3981999507e-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073e-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.1665795894e-2f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.6666665459e-1f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.0000001201e-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    const __m256i e = _mm256_slli_epi32(
        _mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

TGT void quant_silu_mul_avx2(float *g, const float *u, int n)
{
    const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 x = _mm256_loadu_ps(g + i);
        const __m256 s = _mm256_div_ps(x, _mm256_add_ps(one, exp8(_mm256_sub_ps(zero, x))));
        _mm256_storeu_ps(g + i, _mm256_mul_ps(s, _mm256_loadu_ps(u + i)));
    }
    for (; i < n; i++)
        g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

TGT void quant_axpy_f32_avx2(float *y, const float *x, float a, int n)
{
    const __m256 av = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++)
        y[i] += a * x[i];
}

/* y = x / sqrt(mean(x^2) + eps) * w: the float squares summed in double (as ggml; four
 * double lanes, so the order differs from a sequential sum only far below float) */
TGT void quant_rms_norm_avx2(const float *x, const float *w, float *y, int n, float eps)
{
    __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        const __m256 sq = _mm256_mul_ps(v, v);
        s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(sq)));
        s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(sq, 1)));
    }
    double part[4];
    _mm256_storeu_pd(part, _mm256_add_pd(s0, s1));
    double sum = (part[0] + part[1]) + (part[2] + part[3]);
    for (; i < n; i++)
        sum += (double)(x[i] * x[i]);
    const float mean = (float)(sum / n);
    const float scale = 1.0f / sqrtf(mean + eps);
    const __m256 sv = _mm256_set1_ps(scale);
    for (i = 0; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), sv),
                                              _mm256_loadu_ps(w + i)));
    for (; i < n; i++)
        y[i] = (x[i] * scale) * w[i];
}

/* Attention over K/V blocks of ATTN_KB positions (K and V of a block stay in L1 while every
 * query of the tile uses them: a prefill tile of 4 tokens x 3 GQA heads used to read each
 * K/V row 12 times from L2/L3, ~45% of prefill). Prefetching runs one block ahead: the
 * rows are short strided runs that the weights streamed through the caches have evicted. */
#define ATTN_KB 64

TGT_INLINE void attn_prefetch(const float *k, const float *v, size_t kv_stride, int p0, int p1,
                              int lines)
{
    for (int pp = p0; pp < p1; pp++)
        for (int l = 0; l < lines; l++) {
            _mm_prefetch((const char *)(k + (size_t)pp * kv_stride) + 64 * l, _MM_HINT_T0);
            _mm_prefetch((const char *)(v + (size_t)pp * kv_stride) + 64 * l, _MM_HINT_T1);
        }
}

/* sc[p] = scale * q.K[p] for p in [p0, p1) (p0 a multiple of 8; p1 <= np): eight positions
 * at a time while p + 8 <= np, so the grouping (and the rounding) depends on np only */
TGT_INLINE void attn_scores(const float *q, const float *k, size_t kv_stride, int p0, int p1,
                            int np, int hd, float scale, float *sc)
{
    int p = p0;
    for (; p + 8 <= p1 && p + 8 <= np; p += 8) {
        __m256 a[8];
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++)
            a[j] = _mm256_setzero_ps();
        for (int d = 0; d < hd; d += 8) {
            const __m256 qv = _mm256_loadu_ps(q + d);
#pragma GCC unroll 8
            for (int j = 0; j < 8; j++)
                a[j] = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k + (size_t)(p + j) * kv_stride + d), a[j]);
        }
        __m256 h01 = _mm256_hadd_ps(a[0], a[1]), h23 = _mm256_hadd_ps(a[2], a[3]);
        __m256 h45 = _mm256_hadd_ps(a[4], a[5]), h67 = _mm256_hadd_ps(a[6], a[7]);
        __m256 h0123 = _mm256_hadd_ps(h01, h23), h4567 = _mm256_hadd_ps(h45, h67);
        /* lanes: [0 1 2 3 | 0 1 2 3] halves of positions p..p+3 and p+4..p+7 */
        __m256 lo = _mm256_permute2f128_ps(h0123, h4567, 0x20);
        __m256 hi = _mm256_permute2f128_ps(h0123, h4567, 0x31);
        __m256 sv = _mm256_mul_ps(_mm256_add_ps(lo, hi), _mm256_set1_ps(scale));
        _mm256_storeu_ps(sc + p, sv);
    }
    for (; p < p1; p++) {
        const float *kp = k + (size_t)p * kv_stride;
        __m256 a = _mm256_setzero_ps();
        for (int d = 0; d < hd; d += 8)
            a = _mm256_fmadd_ps(_mm256_loadu_ps(q + d), _mm256_loadu_ps(kp + d), a);
        sc[p] = hsum_ps(a) * scale;
    }
}

/* sc[0..np) = softmax(sc), the sum in double as ggml's */
TGT_INLINE void attn_softmax(float *sc, int np)
{
    float mx = -INFINITY;
    int p = 0;
    {
        __m256 m8 = _mm256_set1_ps(-INFINITY);
        for (; p + 8 <= np; p += 8)
            m8 = _mm256_max_ps(m8, _mm256_loadu_ps(sc + p));
        __m128 m4 = _mm_max_ps(_mm256_extractf128_ps(m8, 1), _mm256_castps256_ps128(m8));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        mx = _mm_cvtss_f32(m4);
    }
    for (; p < np; p++)
        mx = sc[p] > mx ? sc[p] : mx;
    double sum = 0;
    p = 0;
    {
        const __m256 mv = _mm256_set1_ps(mx);
        __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
        for (; p + 8 <= np; p += 8) {
            const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(sc + p), mv));
            _mm256_storeu_ps(sc + p, e);
            s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
            s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
        }
        double part[4];
        _mm256_storeu_pd(part, _mm256_add_pd(s0, s1));
        sum = (part[0] + part[1]) + (part[2] + part[3]);
    }
    for (; p < np; p++) {
        const float e = expf(sc[p] - mx);
        sc[p] = e;
        sum += e;
    }
    const float inv = (float)(1.0 / sum);
    const __m256 iv = _mm256_set1_ps(inv);
    for (p = 0; p + 8 <= np; p += 8)
        _mm256_storeu_ps(sc + p, _mm256_mul_ps(_mm256_loadu_ps(sc + p), iv));
    for (; p < np; p++)
        sc[p] *= inv;
}

/* o += sum of sc[p] V[p] for p in [p0, p1), in position order (o zeroed when p0 == 0) */
TGT_INLINE void attn_pv(const float *sc, const float *v, size_t kv_stride, int p0, int p1, int hd,
                        float *o)
{
    if (hd == 64) {
        /* whole output row in registers */
        __m256 acc[8];
#pragma GCC unroll 8
        for (int c8 = 0; c8 < 8; c8++)
            acc[c8] = p0 == 0 ? _mm256_setzero_ps() : _mm256_loadu_ps(o + 8 * c8);
        const float *vp = v + (size_t)p0 * kv_stride;
        for (int p = p0; p < p1; p++, vp += kv_stride) {
            const __m256 pr = _mm256_set1_ps(sc[p]);
#pragma GCC unroll 8
            for (int c8 = 0; c8 < 8; c8++)
                acc[c8] = _mm256_fmadd_ps(pr, _mm256_loadu_ps(vp + 8 * c8), acc[c8]);
        }
#pragma GCC unroll 8
        for (int c8 = 0; c8 < 8; c8++)
            _mm256_storeu_ps(o + 8 * c8, acc[c8]);
        return;
    }
    for (int d = 0; d < hd; d += 8) {
        __m256 acc = p0 == 0 ? _mm256_setzero_ps() : _mm256_loadu_ps(o + d);
        const float *vp = v + (size_t)p0 * kv_stride + d;
        for (int p = p0; p < p1; p++, vp += kv_stride)
            acc = _mm256_fmadd_ps(_mm256_set1_ps(sc[p]), _mm256_loadu_ps(vp), acc);
        _mm256_storeu_ps(o + d, acc);
    }
}

/* see quant_attn_multi; hd a multiple of 8. Each query's arithmetic is the same sequence of
 * operations whatever nq and the blocking, so results do not depend on the tiling. */
TGT void quant_attn_multi_avx2(int nq, const float *const *q, const int *np, const float *k,
                               const float *v, size_t kv_stride, int hd, float scale, float *sc,
                               size_t sc_stride, float *const *o)
{
    int np_max = 0;
    for (int j = 0; j < nq; j++)
        np_max = np[j] > np_max ? np[j] : np_max;
    const int lines = (hd * (int)sizeof(float) + 63) / 64;
    attn_prefetch(k, v, kv_stride, 0, np_max < ATTN_KB ? np_max : ATTN_KB, lines);
    for (int b0 = 0; b0 < np_max; b0 += ATTN_KB) {
        const int b1 = b0 + ATTN_KB < np_max ? b0 + ATTN_KB : np_max;
        attn_prefetch(k, v, kv_stride, b1, b1 + ATTN_KB < np_max ? b1 + ATTN_KB : np_max, lines);
        for (int j = 0; j < nq; j++)
            if (b0 < np[j])
                attn_scores(q[j], k, kv_stride, b0, b1 < np[j] ? b1 : np[j], np[j], hd, scale,
                            sc + (size_t)j * sc_stride);
    }
    for (int j = 0; j < nq; j++)
        attn_softmax(sc + (size_t)j * sc_stride, np[j]);
    for (int b0 = 0; b0 < np_max; b0 += ATTN_KB) {
        const int b1 = b0 + ATTN_KB < np_max ? b0 + ATTN_KB : np_max;
        for (int j = 0; j < nq; j++)
            if (b0 < np[j])
                attn_pv(sc + (size_t)j * sc_stride, v, kv_stride, b0, b1 < np[j] ? b1 : np[j], hd,
                        o[j]);
    }
}

/* ---- AVX512-VNNI (256-bit) kernels for Q8_0 / Q4_0 weights ----
 * vpdpbusd multiplies unsigned weight bytes by signed activation bytes and sums groups of
 * four into int32 without saturation, starting from a broadcast correction: Q4_0 nibbles
 * are q + 8, Q8_0 bytes read as unsigned are w + 128, and the activation block carries
 * the per-lane shares of -8 * sum(y) and -128 * sum(y), so the 8 int32 lanes add up to
 * exactly sum(w * y). */

#define TGTV __attribute__((target("avx512vnni,avx512vl,avx2,fma,f16c")))
#define TGTV_INLINE __attribute__((target("avx512vnni,avx512vl,avx2,fma,f16c"), always_inline)) static inline

TGTV_INLINE float hsum_ps_v(__m256 v)
{
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

TGTV_INLINE __m256i vload_q8_0u(const int8_t *qs)
{
    return _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)qs), _mm256_set1_epi8((char)0x80));
}

TGTV_INLINE __m256i vload_q4_0u(const uint8_t *qs)
{
    __m128i t = _mm_loadu_si128((const __m128i *)qs);
    __m256i b = _mm256_set_m128i(_mm_srli_epi16(t, 4), t);
    return _mm256_and_si256(b, _mm256_set1_epi8(0x0F));
}

/* Software prefetch (multi-row tiles) of the same block PF_ROWS rows further on: a row is
 * only a few cache lines long, too short for the hardware stream prefetcher to train on. */
#ifndef PF_ROWS
#define PF_ROWS 8
#endif

#define TILE_V(NAME, WBLOCK, LOADW, SFIELD)                                                        \
    TGTV_INLINE void NAME(int R, int T, int64_t nb, const uint8_t *w, size_t ws, const uint8_t *a,  \
                          size_t as, float *out, size_t os)                                        \
    {                                                                                              \
        __m256 acc[4][8];                                                                          \
        _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)                                        \
            _Pragma("GCC unroll 8") for (int t = 0; t < T; t++) acc[r][t] = _mm256_setzero_ps();   \
        for (int64_t i = 0; i < nb; i++) {                                                         \
            __m256i wq[4];                                                                         \
            __m256 wd[4];                                                                          \
            _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)                                    \
            {                                                                                      \
                const WBLOCK *b = (const WBLOCK *)(w + (size_t)r * ws) + i;                        \
                if (R > 1)                                                                         \
                    _mm_prefetch((const char *)b + PF_ROWS * ws, _MM_HINT_T0);                     \
                wq[r] = LOADW(b->qs);                                                              \
                wd[r] = _mm256_set1_ps(_cvtsh_ss(b->d));                                           \
            }                                                                                      \
            _Pragma("GCC unroll 8") for (int t = 0; t < T; t++)                                    \
            {                                                                                      \
                const struct quant_q8_0a *ab = (const struct quant_q8_0a *)(a + (size_t)t * as) + i; \
                const __m256i y = _mm256_loadu_si256((const __m256i *)ab->qs);                     \
                const __m256i init = _mm256_set1_epi32(ab->SFIELD);                                \
                const __m256 ad = _mm256_set1_ps(ab->d);                                           \
                _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)                                \
                {                                                                                  \
                    __m256 p = _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(init, wq[r], y));            \
                    acc[r][t] = _mm256_fmadd_ps(wd[r], _mm256_mul_ps(p, ad), acc[r][t]);           \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)                                        \
            _Pragma("GCC unroll 8") for (int t = 0; t < T; t++) out[(size_t)t * os + r] =          \
                hsum_ps_v(acc[r][t]);                                                              \
    }

TILE_V(vtile_q8_0, struct quant_q8_0, vload_q8_0u, s8)
TILE_V(vtile_q4_0, struct quant_q4_0, vload_q4_0u, s4)

/* Few activation rows (decode): one weight row at a time, so the weights stream from DRAM
 * sequentially (interleaving several short rows defeats the hardware prefetcher, measured
 * 6 vs 18 GB/s); many rows (prefill): 4x4 tiles reuse each weight block four times. */
#define DISPATCH_TILES_V(TILE, NB)                                                                 \
    do {                                                                                           \
        int r = 0;                                                                                 \
        if (nt <= 8) {                                                                             \
            for (; r < nr; r++) {                                                                  \
                int t = 0;                                                                         \
                for (; t + 8 <= nt; t += 8)                                                        \
                    TILE(1, 8, NB, wb + (size_t)r * w_stride, w_stride,                            \
                         ab + (size_t)t * act_stride, act_stride, out + (size_t)t * out_stride + r, \
                         out_stride);                                                              \
                for (; t + 4 <= nt; t += 4)                                                        \
                    TILE(1, 4, NB, wb + (size_t)r * w_stride, w_stride,                            \
                         ab + (size_t)t * act_stride, act_stride, out + (size_t)t * out_stride + r, \
                         out_stride);                                                              \
                for (; t + 2 <= nt; t += 2)                                                        \
                    TILE(1, 2, NB, wb + (size_t)r * w_stride, w_stride,                            \
                         ab + (size_t)t * act_stride, act_stride, out + (size_t)t * out_stride + r, \
                         out_stride);                                                              \
                for (; t < nt; t++)                                                                \
                    TILE(1, 1, NB, wb + (size_t)r * w_stride, w_stride,                            \
                         ab + (size_t)t * act_stride, act_stride, out + (size_t)t * out_stride + r, \
                         out_stride);                                                              \
            }                                                                                      \
        }                                                                                          \
        for (; r + 4 <= nr; r += 4) {                                                              \
            int t = 0;                                                                             \
            for (; t + 4 <= nt; t += 4)                                                            \
                TILE(4, 4, NB, wb + (size_t)r * w_stride, w_stride, ab + (size_t)t * act_stride,   \
                     act_stride, out + (size_t)t * out_stride + r, out_stride);                    \
            for (; t + 2 <= nt; t += 2)                                                            \
                TILE(4, 2, NB, wb + (size_t)r * w_stride, w_stride, ab + (size_t)t * act_stride,   \
                     act_stride, out + (size_t)t * out_stride + r, out_stride);                    \
            for (; t < nt; t++)                                                                    \
                TILE(4, 1, NB, wb + (size_t)r * w_stride, w_stride, ab + (size_t)t * act_stride,   \
                     act_stride, out + (size_t)t * out_stride + r, out_stride);                    \
        }                                                                                          \
        for (; r < nr; r++)                                                                        \
            for (int t = 0; t < nt; t++)                                                           \
                TILE(1, 1, NB, wb + (size_t)r * w_stride, w_stride, ab + (size_t)t * act_stride,   \
                     act_stride, out + (size_t)t * out_stride + r, out_stride);                    \
    } while (0)

TGTV int quant_gemm_vnni(uint32_t wtype, int64_t n, const void *w, size_t w_stride, int nr,
                         const void *act, size_t act_stride, int nt, float *out, size_t out_stride)
{
    const uint8_t *wb = w, *ab = act;
    switch (wtype) {
    case GGUF_T_Q8_0:
        DISPATCH_TILES_V(vtile_q8_0, n / QK8_0);
        return 0;
    case GGUF_T_Q4_0:
        DISPATCH_TILES_V(vtile_q4_0, n / QK4_0);
        return 0;
    default:
        return -1;
    }
}

/* ---- repacked 16-row groups (see quant.h): 512-bit registers, one lane per row ---- */

#define TGTZ __attribute__((target("avx512f,avx512bw,avx512vnni,avx512vl,avx2,fma,f16c")))
#define TGTZ_INLINE                                                                                \
    __attribute__((target("avx512f,avx512bw,avx512vnni,avx512vl,avx2,fma,f16c"), always_inline))   \
    static inline

#define R16_Q8_0_BYTES (32 + 512) /* per group-block: 16 fp16 scales, 8 j x 16 rows x 4 bytes */
#define R16_Q4_0_BYTES (32 + 256) /* 4 j x 16 rows x 4 bytes of nibble pairs */

size_t quant_repack_bytes(uint32_t wtype, int64_t n, int64_t nr)
{
    if (nr % QUANT_PACK_ROWS != 0 || n % 32 != 0)
        return 0;
    if (wtype == GGUF_T_Q8_0)
        return (size_t)(nr / QUANT_PACK_ROWS) * (size_t)(n / 32) * R16_Q8_0_BYTES;
    if (wtype == GGUF_T_Q4_0)
        return (size_t)(nr / QUANT_PACK_ROWS) * (size_t)(n / 32) * R16_Q4_0_BYTES;
    return 0;
}

void quant_repack(uint32_t wtype, const void *w, size_t w_stride, int64_t n, int64_t nr, void *dst)
{
    const int64_t nb = n / 32;
    const int G = QUANT_PACK_ROWS;
    uint8_t *o = dst;
    for (int64_t g = 0; g < nr / G; g++)
        for (int64_t b = 0; b < nb; b++) {
            for (int r = 0; r < G; r++) {
                const uint8_t *row = (const uint8_t *)w + (size_t)(g * G + r) * w_stride;
                if (wtype == GGUF_T_Q8_0) {
                    const struct quant_q8_0 *blk = (const struct quant_q8_0 *)row + b;
                    memcpy(o + 2 * r, &blk->d, 2);
                    for (int j = 0; j < 8; j++)
                        memcpy(o + 2 * G + 4 * G * j + 4 * r, blk->qs + 4 * j, 4);
                } else {
                    const struct quant_q4_0 *blk = (const struct quant_q4_0 *)row + b;
                    memcpy(o + 2 * r, &blk->d, 2);
                    for (int j = 0; j < 4; j++)
                        memcpy(o + 2 * G + 4 * G * j + 4 * r, blk->qs + 4 * j, 4);
                }
            }
            o += wtype == GGUF_T_Q8_0 ? R16_Q8_0_BYTES : R16_Q4_0_BYTES;
        }
}

/* T activation rows against one 16-row group: lanes of acc[t] are the 16 rows. The int32
 * accumulation starts from the block's full offset correction (8 x the per-lane share).
 * Same float operations per row as one row at a time, so results do not depend on the
 * grouping. 512-bit vectors halve the instructions per multiply-add against 256-bit ones
 * (the kernels were bound by instruction issue, not by vpdpbusd throughput). */
/* decode streams the packed weights from DRAM: prefetch this far ahead (pf: few activation
 * rows, any tile width; without it 8 concurrent sequences stalled on every block) */
#ifndef PACK_PF
#define PACK_PF 4096
#endif
#define TILE_P(NAME, BYTES, BODY)                                                                  \
    TGTZ_INLINE void NAME(int T, int pf, int64_t nb, const uint8_t *wp, const uint8_t *a,          \
                          size_t as, float *out, size_t os)                                        \
    {                                                                                              \
        __m512 acc[8];                                                                             \
        _Pragma("GCC unroll 8") for (int t = 0; t < T; t++) acc[t] = _mm512_setzero_ps();         \
        for (int64_t i = 0; i < nb; i++) {                                                         \
            const uint8_t *gb = wp + (size_t)i * BYTES;                                            \
            if (pf)                                                                                \
                for (int o = 0; o < BYTES; o += 64)                                                \
                    _mm_prefetch((const char *)gb + PACK_PF + o, _MM_HINT_T0);                     \
            const __m512 dv = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)gb));           \
            __m512i isum[8];                                                                       \
            const struct quant_q8_0a *ab[8];                                                       \
            _Pragma("GCC unroll 8") for (int t = 0; t < T; t++)                                    \
            {                                                                                      \
                ab[t] = (const struct quant_q8_0a *)(a + (size_t)t * as) + i;                      \
            }                                                                                      \
            BODY                                                                                   \
            _Pragma("GCC unroll 8") for (int t = 0; t < T; t++)                                    \
            {                                                                                      \
                const __m512 sc = _mm512_mul_ps(dv, _mm512_set1_ps(ab[t]->d));                     \
                acc[t] = _mm512_fmadd_ps(sc, _mm512_cvtepi32_ps(isum[t]), acc[t]);                 \
            }                                                                                      \
        }                                                                                          \
        _Pragma("GCC unroll 8") for (int t = 0; t < T; t++)                                        \
            _mm512_storeu_ps(out + (size_t)t * os, acc[t]);                                        \
    }

/* acc += w (unsigned bytes) . the 4 activation bytes at p broadcast to every lane. The
 * compilers do not fold the broadcast into vpdpbusd's memory operand ({1to16}), which costs a
 * vpbroadcastd per multiply-add; spelled out it saves a third of the kernel's instructions. */
TGTZ_INLINE __m512i dpbusd_bcast(__m512i acc, __m512i w, const int8_t *p)
{
    __asm__("vpdpbusd %2%{1to16%}, %1, %0"
            : "+v"(acc)
            : "v"(w), "m"(*(const int32_t *)(const void *)p));
    return acc;
}

#define BODY_Q8_0                                                                                  \
    _Pragma("GCC unroll 8") for (int t = 0; t < T; t++) isum[t] =                                  \
        _mm512_set1_epi32(ab[t]->c8);                                                          \
    _Pragma("GCC unroll 8") for (int j = 0; j < 8; j++)                                            \
    {                                                                                              \
        const __m512i wj = _mm512_xor_si512(_mm512_loadu_si512(gb + 32 + 64 * j),                  \
                                            _mm512_set1_epi8((char)0x80));                         \
        _Pragma("GCC unroll 8") for (int t = 0; t < T; t++) isum[t] =                              \
            dpbusd_bcast(isum[t], wj, ab[t]->qs + 4 * j);                                          \
    }

#define BODY_Q4_0                                                                                  \
    _Pragma("GCC unroll 8") for (int t = 0; t < T; t++) isum[t] =                                  \
        _mm512_set1_epi32(ab[t]->c4);                                                          \
    _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++)                                            \
    {                                                                                              \
        const __m512i raw = _mm512_loadu_si512(gb + 32 + 64 * j);                                  \
        const __m512i lo = _mm512_and_si512(raw, _mm512_set1_epi8(0x0F));                          \
        const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(raw, 4), _mm512_set1_epi8(0x0F));    \
        _Pragma("GCC unroll 8") for (int t = 0; t < T; t++)                                        \
        {                                                                                          \
            isum[t] = dpbusd_bcast(isum[t], lo, ab[t]->qs + 4 * j);                                \
            isum[t] = dpbusd_bcast(isum[t], hi, ab[t]->qs + 16 + 4 * j);                           \
        }                                                                                          \
    }

TILE_P(ptile_q8_0, R16_Q8_0_BYTES, BODY_Q8_0)
TILE_P(ptile_q4_0, R16_Q4_0_BYTES, BODY_Q4_0)

#define DISPATCH_PACKED(TILE, BYTES)                                                               \
    do {                                                                                           \
        const size_t gs = (size_t)nb * BYTES;                                                      \
        const int pf = nt <= 8;                                                                    \
        for (int g = 0; g < ngroups; g++) {                                                        \
            const uint8_t *wg = (const uint8_t *)wp + (size_t)g * gs;                              \
            float *og = out + (size_t)QUANT_PACK_ROWS * (size_t)g;                                 \
            int t = 0;                                                                             \
            for (; t + 8 <= nt; t += 8)                                                            \
                TILE(8, pf, nb, wg, ab + (size_t)t * act_stride, act_stride,                       \
                     og + (size_t)t * out_stride, out_stride);                                     \
            for (; t + 4 <= nt; t += 4)                                                            \
                TILE(4, pf, nb, wg, ab + (size_t)t * act_stride, act_stride,                       \
                     og + (size_t)t * out_stride, out_stride);                                     \
            for (; t < nt; t++)                                                                    \
                TILE(1, pf, nb, wg, ab + (size_t)t * act_stride, act_stride,                       \
                     og + (size_t)t * out_stride, out_stride);                                     \
        }                                                                                          \
    } while (0)

TGTZ void quant_gemm_packed(uint32_t wtype, int64_t n, const void *wp, int ngroups,
                            const void *act, size_t act_stride, int nt, float *out,
                            size_t out_stride)
{
    const int64_t nb = n / 32;
    const uint8_t *ab = act;
    if (wtype == GGUF_T_Q8_0)
        DISPATCH_PACKED(ptile_q8_0, R16_Q8_0_BYTES);
    else
        DISPATCH_PACKED(ptile_q4_0, R16_Q4_0_BYTES);
}


/* ---- attention with 512-bit vectors (AVX-512 machines, head_dim a multiple of 16) ----
 * Same blocking as quant_attn_multi_avx2; a 512-bit multiply-add covers a quarter of a
 * 64-wide head, and the scores of 16 positions reduce together, so about half the
 * instructions per query and position. */

TGTZ_INLINE __m512 exp16(__m512 x)
{
    x = _mm512_min_ps(x, _mm512_set1_ps(88.3762626647949f));
    x = _mm512_max_ps(x, _mm512_set1_ps(-87.3365478515625f));
    const __m512 fx = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                           _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(fx, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(fx, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 y = _mm512_set1_ps(1.9875691500e-4f);
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.3981999507e-3f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(8.3334519073e-3f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(4.1665795894e-2f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.6666665459e-1f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(5.0000001201e-1f));
    y = _mm512_fmadd_ps(y, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    const __m512i e = _mm512_slli_epi32(
        _mm512_add_epi32(_mm512_cvtps_epi32(fx), _mm512_set1_epi32(127)), 23);
    return _mm512_mul_ps(y, _mm512_castsi512_ps(e));
}

/* lane j of the result = the sum of the 16 lanes of a[j] */
TGTZ_INLINE __m512 hsum16x16(const __m512 *a)
{
    __m512 b[8], c[4];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++)
        b[i] = _mm512_add_ps(_mm512_unpacklo_ps(a[2 * i], a[2 * i + 1]),
                             _mm512_unpackhi_ps(a[2 * i], a[2 * i + 1]));
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        const __m512d x = _mm512_castps_pd(b[2 * i]), y = _mm512_castps_pd(b[2 * i + 1]);
        c[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(x, y)),
                             _mm512_castpd_ps(_mm512_unpackhi_pd(x, y)));
    }
    /* c[i]: per 128-bit lane L, lane L's partial sums of a[4i..4i+3] */
    const __m512 e01 = _mm512_add_ps(_mm512_shuffle_f32x4(c[0], c[1], 0x88),
                                     _mm512_shuffle_f32x4(c[0], c[1], 0xDD));
    const __m512 e23 = _mm512_add_ps(_mm512_shuffle_f32x4(c[2], c[3], 0x88),
                                     _mm512_shuffle_f32x4(c[2], c[3], 0xDD));
    return _mm512_add_ps(_mm512_shuffle_f32x4(e01, e23, 0x88), _mm512_shuffle_f32x4(e01, e23, 0xDD));
}

TGTZ_INLINE void attn_scores_z(const float *q, const float *k, size_t kv_stride, int p0, int p1,
                               int np, int hd, float scale, float *sc)
{
    int p = p0;
    const __m512 sv = _mm512_set1_ps(scale);
    for (; p + 16 <= p1 && p + 16 <= np; p += 16) {
        __m512 a[16];
#pragma GCC unroll 16
        for (int j = 0; j < 16; j++)
            a[j] = _mm512_setzero_ps();
        for (int d = 0; d < hd; d += 16) {
            const __m512 qv = _mm512_loadu_ps(q + d);
#pragma GCC unroll 16
            for (int j = 0; j < 16; j++)
                a[j] = _mm512_fmadd_ps(qv, _mm512_loadu_ps(k + (size_t)(p + j) * kv_stride + d), a[j]);
        }
        _mm512_storeu_ps(sc + p, _mm512_mul_ps(hsum16x16(a), sv));
    }
    if (p < p1) {
        /* the last, partial group (p1 == np here): the same reduction, missing rows zero */
        const int rem = p1 - p;
        const float *kr[16];
        __m512 a[16];
#pragma GCC unroll 16
        for (int j = 0; j < 16; j++) {
            /* rows past the end repeat the last one (in bounds); their lanes are not stored */
            kr[j] = k + (size_t)(p + (j < rem ? j : rem - 1)) * kv_stride;
            a[j] = _mm512_setzero_ps();
        }
        for (int d = 0; d < hd; d += 16) {
            const __m512 qv = _mm512_loadu_ps(q + d);
#pragma GCC unroll 16
            for (int j = 0; j < 16; j++)
                a[j] = _mm512_fmadd_ps(qv, _mm512_loadu_ps(kr[j] + d), a[j]);
        }
        _mm512_mask_storeu_ps(sc + p, (__mmask16)((1u << rem) - 1), _mm512_mul_ps(hsum16x16(a), sv));
    }
}

TGTZ_INLINE void attn_softmax_z(float *sc, int np)
{
    int p = 0;
    __m512 m16 = _mm512_set1_ps(-INFINITY);
    for (; p + 16 <= np; p += 16)
        m16 = _mm512_max_ps(m16, _mm512_loadu_ps(sc + p));
    if (p < np)
        m16 = _mm512_max_ps(m16, _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY),
                                                      (__mmask16)((1u << (np - p)) - 1), sc + p));
    const float mx = _mm512_reduce_max_ps(m16);
    const __m512 mv = _mm512_set1_ps(mx);
    __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
    for (p = 0; p < np; p += 16) {
        const __mmask16 m = np - p >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (np - p)) - 1);
        __m512 e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, sc + p), mv));
        e = _mm512_maskz_mov_ps(m, e);
        _mm512_mask_storeu_ps(sc + p, m, e);
        s0 = _mm512_add_pd(s0, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
        s1 = _mm512_add_pd(s1, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1))));
    }
    const double sum = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
    const __m512 iv = _mm512_set1_ps((float)(1.0 / sum));
    for (p = 0; p + 16 <= np; p += 16)
        _mm512_storeu_ps(sc + p, _mm512_mul_ps(_mm512_loadu_ps(sc + p), iv));
    if (p < np) {
        const __mmask16 m = (__mmask16)((1u << (np - p)) - 1);
        _mm512_mask_storeu_ps(sc + p, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, sc + p), iv));
    }
}

TGTZ_INLINE void attn_pv_z(const float *sc, const float *v, size_t kv_stride, int p0, int p1, int hd,
                           float *o)
{
    if (hd == 64) {
        /* the four chains interleaved (one after the other, each waited on its own
         * multiply-add latency at every position) */
        __m512 acc[4];
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++)
            acc[c] = p0 == 0 ? _mm512_setzero_ps() : _mm512_loadu_ps(o + 16 * c);
        const float *vp = v + (size_t)p0 * kv_stride;
        for (int p = p0; p < p1; p++, vp += kv_stride) {
            const __m512 pr = _mm512_set1_ps(sc[p]);
#pragma GCC unroll 4
            for (int c = 0; c < 4; c++)
                acc[c] = _mm512_fmadd_ps(pr, _mm512_loadu_ps(vp + 16 * c), acc[c]);
        }
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++)
            _mm512_storeu_ps(o + 16 * c, acc[c]);
        return;
    }
    for (int d = 0; d < hd; d += 16) {
        __m512 acc = p0 == 0 ? _mm512_setzero_ps() : _mm512_loadu_ps(o + d);
        const float *vp = v + (size_t)p0 * kv_stride + d;
        for (int p = p0; p < p1; p++, vp += kv_stride)
            acc = _mm512_fmadd_ps(_mm512_set1_ps(sc[p]), _mm512_loadu_ps(vp), acc);
        _mm512_storeu_ps(o + d, acc);
    }
}

/* attn_pv_z for two queries of head_dim 64 over the positions [p0, p1) that both attend
 * to: one V load serves both, and eight accumulation chains hide the multiply-add latency
 * (four alone left it latency-bound). Each query's sums run in the same order as alone. */
TGTZ_INLINE void attn_pv2_z64(const float *sa, const float *sb, const float *v, size_t kv_stride,
                              int p0, int p1, float *oa, float *ob)
{
    __m512 a[4], b[4];
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++) {
        a[c] = p0 == 0 ? _mm512_setzero_ps() : _mm512_loadu_ps(oa + 16 * c);
        b[c] = p0 == 0 ? _mm512_setzero_ps() : _mm512_loadu_ps(ob + 16 * c);
    }
    const float *vp = v + (size_t)p0 * kv_stride;
    for (int p = p0; p < p1; p++, vp += kv_stride) {
        const __m512 pa = _mm512_set1_ps(sa[p]), pb = _mm512_set1_ps(sb[p]);
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            const __m512 vv = _mm512_loadu_ps(vp + 16 * c);
            a[c] = _mm512_fmadd_ps(pa, vv, a[c]);
            b[c] = _mm512_fmadd_ps(pb, vv, b[c]);
        }
    }
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++) {
        _mm512_storeu_ps(oa + 16 * c, a[c]);
        _mm512_storeu_ps(ob + 16 * c, b[c]);
    }
}

TGTZ void quant_attn_multi_avx512(int nq, const float *const *q, const int *np, const float *k,
                                  const float *v, size_t kv_stride, int hd, float scale, float *sc,
                                  size_t sc_stride, float *const *o)
{
    int np_max = 0;
    for (int j = 0; j < nq; j++)
        np_max = np[j] > np_max ? np[j] : np_max;
    const int lines = (hd * (int)sizeof(float) + 63) / 64;
    attn_prefetch(k, v, kv_stride, 0, np_max < ATTN_KB ? np_max : ATTN_KB, lines);
    for (int b0 = 0; b0 < np_max; b0 += ATTN_KB) {
        const int b1 = b0 + ATTN_KB < np_max ? b0 + ATTN_KB : np_max;
        attn_prefetch(k, v, kv_stride, b1, b1 + ATTN_KB < np_max ? b1 + ATTN_KB : np_max, lines);
        for (int j = 0; j < nq; j++)
            if (b0 < np[j])
                attn_scores_z(q[j], k, kv_stride, b0, b1 < np[j] ? b1 : np[j], np[j], hd, scale,
                              sc + (size_t)j * sc_stride);
    }
    for (int j = 0; j < nq; j++)
        attn_softmax_z(sc + (size_t)j * sc_stride, np[j]);
    for (int b0 = 0; b0 < np_max; b0 += ATTN_KB) {
        const int b1 = b0 + ATTN_KB < np_max ? b0 + ATTN_KB : np_max;
        int j = 0;
        if (hd == 64)
            for (; j + 2 <= nq; j += 2) {
                const float *sa = sc + (size_t)j * sc_stride, *sb = sa + sc_stride;
                const int ea = b1 < np[j] ? b1 : np[j], eb = b1 < np[j + 1] ? b1 : np[j + 1];
                const int e = ea < eb ? ea : eb;
                if (b0 < e)
                    attn_pv2_z64(sa, sb, v, kv_stride, b0, e, o[j], o[j + 1]);
                /* the rest of the longer one continues its own chain */
                if ((b0 < e ? e : b0) < ea)
                    attn_pv_z(sa, v, kv_stride, b0 < e ? e : b0, ea, hd, o[j]);
                if ((b0 < e ? e : b0) < eb)
                    attn_pv_z(sb, v, kv_stride, b0 < e ? e : b0, eb, hd, o[j + 1]);
            }
        for (; j < nq; j++)
            if (b0 < np[j])
                attn_pv_z(sc + (size_t)j * sc_stride, v, kv_stride, b0, b1 < np[j] ? b1 : np[j], hd,
                          o[j]);
    }
}

/* Q8_0 activation blocks with 512-bit vectors: the same values as act_q8_0_avx2 (same
 * amax, d, 127/amax and round-to-nearest-even), without its pack and permute steps */
TGTZ void quant_act_q8_0_avx512(const float *x, void *dst, int64_t n)
{
    struct quant_q8_0a *y = dst;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        const __m512 v0 = _mm512_loadu_ps(x + i * QK8_0), v1 = _mm512_loadu_ps(x + i * QK8_0 + 16);
        const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
        const float d = amax / 127.f;
        y[i].d = _cvtsh_ss(_cvtss_sh(d, 0));
        const __m512 id = _mm512_set1_ps(amax != 0.0f ? 127.f / amax : 0.0f);
        const __m512i q0 = _mm512_cvtps_epi32(_mm512_roundscale_ps(
            _mm512_mul_ps(v0, id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        const __m512i q1 = _mm512_cvtps_epi32(_mm512_roundscale_ps(
            _mm512_mul_ps(v1, id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        _mm_storeu_si128((__m128i *)y[i].qs, _mm512_cvtsepi32_epi8(q0));
        _mm_storeu_si128((__m128i *)(y[i].qs + 16), _mm512_cvtsepi32_epi8(q1));
        const int sum = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
        y[i].s4 = -sum;
        y[i].s8 = -16 * sum;
        y[i].c4 = -8 * sum;
        y[i].c8 = -128 * sum;
    }
}

/* SwiGLU with 512-bit vectors: lane for lane the operations of quant_silu_mul_avx2 */
TGTZ void quant_silu_mul_avx512(float *g, const float *u, int n)
{
    const __m512 one = _mm512_set1_ps(1.0f), zero = _mm512_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 x = _mm512_loadu_ps(g + i);
        const __m512 s = _mm512_div_ps(x, _mm512_add_ps(one, exp16(_mm512_sub_ps(zero, x))));
        _mm512_storeu_ps(g + i, _mm512_mul_ps(s, _mm512_loadu_ps(u + i)));
    }
    if (i < n)
        quant_silu_mul_avx2(g + i, u + i, n - i);
}

#else /* not x86-64: no SIMD kernels */

size_t quant_repack_bytes(uint32_t wtype, int64_t n, int64_t nr)
{
    (void)wtype, (void)n, (void)nr;
    return 0;
}

void quant_repack(uint32_t wtype, const void *w, size_t w_stride, int64_t n, int64_t nr, void *dst)
{
    (void)wtype, (void)w, (void)w_stride, (void)n, (void)nr, (void)dst;
}

void quant_gemm_packed(uint32_t wtype, int64_t n, const void *wp, int ngroups, const void *act,
                       size_t act_stride, int nt, float *out, size_t out_stride)
{
    (void)wtype, (void)n, (void)wp, (void)ngroups, (void)act, (void)act_stride, (void)nt;
    (void)out, (void)out_stride;
}


int quant_gemm_vnni(uint32_t wtype, int64_t n, const void *w, size_t w_stride, int nr,
                    const void *act, size_t act_stride, int nt, float *out, size_t out_stride)
{
    (void)wtype, (void)n, (void)w, (void)w_stride, (void)nr, (void)act, (void)act_stride;
    (void)nt, (void)out, (void)out_stride;
    return -1;
}

float quant_dot_f32_avx2(const float *x, const float *y, int n)
{
    float s = 0;
    for (int i = 0; i < n; i++)
        s += x[i] * y[i];
    return s;
}

void quant_axpy_f32_avx2(float *y, const float *x, float a, int n)
{
    for (int i = 0; i < n; i++)
        y[i] += a * x[i];
}

void quant_silu_mul_avx2(float *g, const float *u, int n)
{
    for (int i = 0; i < n; i++)
        g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

void quant_attn_multi_avx2(int nq, const float *const *q, const int *np, const float *k,
                           const float *v, size_t kv_stride, int hd, float scale, float *sc,
                           size_t sc_stride, float *const *o)
{
    (void)nq, (void)q, (void)np, (void)k, (void)v, (void)kv_stride, (void)hd, (void)scale;
    (void)sc, (void)sc_stride, (void)o;
}

void quant_act_q8_0_avx512(const float *x, void *dst, int64_t n)
{
    quant_act_row_ref(GGUF_T_Q8_0, x, dst, n);
}

void quant_rms_norm_avx2(const float *x, const float *w, float *y, int n, float eps)
{
    (void)x, (void)w, (void)y, (void)n, (void)eps;
}

void quant_silu_mul_avx512(float *g, const float *u, int n)
{
    (void)g, (void)u, (void)n;
}

void quant_attn_multi_avx512(int nq, const float *const *q, const int *np, const float *k,
                             const float *v, size_t kv_stride, int hd, float scale, float *sc,
                             size_t sc_stride, float *const *o)
{
    (void)nq, (void)q, (void)np, (void)k, (void)v, (void)kv_stride, (void)hd, (void)scale;
    (void)sc, (void)sc_stride, (void)o;
}


int quant_gemm_avx2(uint32_t wtype, int64_t n, const void *w, size_t w_stride, int nr,
                    const void *act, size_t act_stride, int nt, float *out, size_t out_stride)
{
    (void)wtype, (void)n, (void)w, (void)w_stride, (void)nr, (void)act, (void)act_stride;
    (void)nt, (void)out, (void)out_stride;
    return -1;
}

void quant_act_row_avx2(uint32_t wtype, const float *x, void *dst, int64_t n)
{
    quant_act_row_ref(wtype, x, dst, n);
}
#endif
