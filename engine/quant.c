/* quant.c -- scalar reference kernels: fp16/bf16, dequantization, ggml-exact activation quantizers, dot products. */
#include "engine/quant.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static int use_simd; /* 0 scalar, 1 AVX2, 2 AVX2 + AVX512-VNNI */
static int max_level = 2;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

/* F16C (leaf 1, ECX bit 29) and AVX512-VNNI (leaf 7, ECX bit 11) from CPUID: clang
 * 14's __builtin_cpu_supports knows neither name. OS support of the AVX-512 state is covered by the
 * avx512vl check beside it. */
static int cpu_has_f16c(void)
{
    unsigned a, b, c, d;

    if (!__get_cpuid(1, &a, &b, &c, &d))
        return 0;
    return (c >> 29) & 1;
}

static int cpu_has_vnni(void)
{
    unsigned a, b, c, d;

    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
        return 0;
    return (c >> 11) & 1;
}
#endif

static void init_impl(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    use_simd = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c();
    if (use_simd && cpu_has_vnni() && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        !getenv("AIRLOCK_NO_VNNI"))
        use_simd = 2;
#endif
}

void quant_init(void)
{
    pthread_once(&init_once, init_impl);
}

int quant_have_simd(void)
{
    quant_init();
    return use_simd < max_level ? use_simd : max_level;
}

void quant_set_max_level(int level)
{
    max_level = level;
}

static inline float from_bits(uint32_t w)
{
    float f;
    memcpy(&f, &w, 4);
    return f;
}

static inline uint32_t to_bits(float f)
{
    uint32_t w;
    memcpy(&w, &f, 4);
    return w;
}

/* Exact IEEE conversions without F16C (the bit tricks of the FP16 library by M. Dukhan):
 * they rely on float arithmetic being exactly rounded float32, true for SSE on x86-64. */
float quant_fp16_to_fp32(uint16_t h)
{
    const uint32_t w = (uint32_t)h << 16;
    const uint32_t sign = w & 0x80000000u;
    const uint32_t two_w = w + w;
    const float normalized = from_bits((two_w >> 4) + (0xE0u << 23)) * 0x1.0p-112f;
    const float denormalized = from_bits((two_w >> 17) | (126u << 23)) - 0.5f;
    const uint32_t r = sign | (two_w < (1u << 27) ? to_bits(denormalized) : to_bits(normalized));
    return from_bits(r);
}

uint16_t quant_fp32_to_fp16(float f)
{
    float base = (fabsf(f) * 0x1.0p+112f) * 0x1.0p-110f;
    const uint32_t w = to_bits(f);
    const uint32_t shl1_w = w + w;
    const uint32_t sign = w & 0x80000000u;
    uint32_t bias = shl1_w & 0xFF000000u;
    if (bias < 0x71000000u)
        bias = 0x71000000u;
    base = from_bits((bias >> 1) + 0x07800000u) + base;
    const uint32_t bits = to_bits(base);
    const uint32_t exp_bits = (bits >> 13) & 0x00007C00u;
    const uint32_t mantissa_bits = bits & 0x00000FFFu;
    const uint32_t nonsign = exp_bits + mantissa_bits;
    return (uint16_t)((sign >> 16) | (shl1_w > 0xFF000000u ? 0x7E00u : nonsign));
}

float quant_bf16_to_fp32(uint16_t h)
{
    return from_bits((uint32_t)h << 16);
}

uint16_t quant_fp32_to_bf16(float f)
{
    uint32_t u = to_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 64); /* quiet NaN, as ggml */
    return (uint16_t)((u + (0x7fffu + ((u >> 16) & 1))) >> 16);
}

int quant_supported(uint32_t t)
{
    switch (t) {
    case GGUF_T_F32:
    case GGUF_T_F16:
    case GGUF_T_BF16:
    case GGUF_T_Q8_0:
    case GGUF_T_Q4_0:
    case GGUF_T_Q4_K:
    case GGUF_T_Q5_K:
    case GGUF_T_Q6_K:
        return 1;
    default:
        return 0;
    }
}

/* 6-bit scale and min of sub-block j of a Q4_K/Q5_K block (ggml's get_scale_min_k4) */
static inline void scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m)
{
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4));
    }
}

/* Q6_K value i of a block (-32..31), in the order of dequantize_row_q6_K */
static inline void q6k_unpack(const struct quant_q6_k *b, int8_t *q /* [256] */)
{
    for (int h = 0; h < 2; h++) {
        const uint8_t *ql = b->ql + 64 * h;
        const uint8_t *qh = b->qh + 32 * h;
        int8_t *o = q + 128 * h;
        for (int l = 0; l < 32; l++) {
            o[l] = (int8_t)(((ql[l] & 0xF) | ((qh[l] >> 0 & 3) << 4)) - 32);
            o[l + 32] = (int8_t)(((ql[l + 32] & 0xF) | ((qh[l] >> 2 & 3) << 4)) - 32);
            o[l + 64] = (int8_t)(((ql[l] >> 4) | ((qh[l] >> 4 & 3) << 4)) - 32);
            o[l + 96] = (int8_t)(((ql[l + 32] >> 4) | ((qh[l] >> 6 & 3) << 4)) - 32);
        }
    }
}

/* Q4_K / Q5_K quants (0..15 / 0..31) of a block in value order */
static inline void q4k_unpack(const uint8_t *qs, const uint8_t *qh, uint8_t *q /* [256] */)
{
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++) {
            uint8_t lo = qs[32 * c + l] & 0xF, hi = qs[32 * c + l] >> 4;
            if (qh) {
                lo |= (uint8_t)(((qh[l] >> (2 * c)) & 1) << 4);
                hi |= (uint8_t)(((qh[l] >> (2 * c + 1)) & 1) << 4);
            }
            q[64 * c + l] = lo;
            q[64 * c + 32 + l] = hi;
        }
}

void quant_dequant_row(uint32_t t, const void *vx, float *y, int64_t n)
{
    switch (t) {
    case GGUF_T_F32:
        memcpy(y, vx, (size_t)n * 4);
        break;
    case GGUF_T_F16: {
        const uint8_t *x = vx;
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, x + 2 * i, 2);
            y[i] = quant_fp16_to_fp32(h);
        }
        break;
    }
    case GGUF_T_BF16: {
        const uint8_t *x = vx;
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, x + 2 * i, 2);
            y[i] = quant_bf16_to_fp32(h);
        }
        break;
    }
    case GGUF_T_Q8_0: {
        const struct quant_q8_0 *b = vx;
        for (int64_t i = 0; i < n / QK8_0; i++) {
            float d = quant_fp16_to_fp32(b[i].d);
            for (int j = 0; j < QK8_0; j++)
                y[i * QK8_0 + j] = b[i].qs[j] * d;
        }
        break;
    }
    case GGUF_T_Q4_0: {
        const struct quant_q4_0 *b = vx;
        for (int64_t i = 0; i < n / QK4_0; i++) {
            float d = quant_fp16_to_fp32(b[i].d);
            for (int j = 0; j < QK4_0 / 2; j++) {
                y[i * QK4_0 + j] = ((b[i].qs[j] & 0xF) - 8) * d;
                y[i * QK4_0 + j + 16] = ((b[i].qs[j] >> 4) - 8) * d;
            }
        }
        break;
    }
    case GGUF_T_Q4_K:
    case GGUF_T_Q5_K: {
        for (int64_t i = 0; i < n / QK_K; i++) {
            const uint8_t *scales, *qs, *qh = NULL;
            uint16_t dh, mh;
            if (t == GGUF_T_Q4_K) {
                const struct quant_q4_k *b = (const struct quant_q4_k *)vx + i;
                dh = b->d, mh = b->dmin, scales = b->scales, qs = b->qs;
            } else {
                const struct quant_q5_k *b = (const struct quant_q5_k *)vx + i;
                dh = b->d, mh = b->dmin, scales = b->scales, qs = b->qs, qh = b->qh;
            }
            const float d = quant_fp16_to_fp32(dh), dmin = quant_fp16_to_fp32(mh);
            uint8_t q[QK_K];
            q4k_unpack(qs, qh, q);
            for (int j = 0; j < 8; j++) {
                uint8_t sc, m;
                scale_min_k4(j, scales, &sc, &m);
                const float d1 = d * sc, m1 = dmin * m;
                for (int l = 0; l < 32; l++)
                    y[i * QK_K + 32 * j + l] = d1 * q[32 * j + l] - m1;
            }
        }
        break;
    }
    case GGUF_T_Q6_K: {
        const struct quant_q6_k *b = vx;
        for (int64_t i = 0; i < n / QK_K; i++) {
            const float d = quant_fp16_to_fp32(b[i].d);
            int8_t q[QK_K];
            q6k_unpack(&b[i], q);
            for (int l = 0; l < QK_K; l++)
                y[i * QK_K + l] = d * b[i].scales[l / 16] * q[l];
        }
        break;
    }
    default:
        memset(y, 0, (size_t)n * sizeof(float));
        break;
    }
}

uint32_t quant_act_type(uint32_t wtype)
{
    switch (wtype) {
    case GGUF_T_F16: return GGUF_T_F16;
    case GGUF_T_BF16: return GGUF_T_BF16;
    case GGUF_T_Q8_0:
    case GGUF_T_Q4_0: return GGUF_T_Q8_0;
    case GGUF_T_Q4_K:
    case GGUF_T_Q5_K:
    case GGUF_T_Q6_K: return GGUF_T_Q8_K;
    default: return GGUF_T_F32;
    }
}

size_t quant_act_row_bytes(uint32_t wtype, int64_t n)
{
    switch (quant_act_type(wtype)) {
    case GGUF_T_F16:
    case GGUF_T_BF16: return (size_t)n * 2;
    case GGUF_T_Q8_0: return (size_t)(n / QK8_0) * sizeof(struct quant_q8_0a);
    case GGUF_T_Q8_K: return (size_t)(n / QK_K) * sizeof(struct quant_q8_k);
    default: return (size_t)n * 4;
    }
}

/* ggml's nearest_int: round half to even via the 1.5*2^23 trick (|x| < 2^22) */
static inline int nearest_int(float fval)
{
    float val = fval + 12582912.f;
    int i;
    memcpy(&i, &val, sizeof(int));
    return (i & 0x007fffff) - 0x00400000;
}

static void act_q8_0(const float *x, struct quant_q8_0a *y, int64_t n)
{
    for (int64_t i = 0; i < n / QK8_0; i++) {
        float amax = 0.0f;
        for (int j = 0; j < QK8_0; j++)
            amax = fmaxf(amax, fabsf(x[i * QK8_0 + j]));
        const float d = amax / 127.f;
        const float id = amax != 0.0f ? 127.f / amax : 0.0f;
        y[i].d = quant_fp16_to_fp32(quant_fp32_to_fp16(d));
        int sum = 0;
        for (int j = 0; j < QK8_0; j++) {
            y[i].qs[j] = (int8_t)nearbyintf(x[i * QK8_0 + j] * id);
            sum += y[i].qs[j];
        }
        y[i].s4 = -sum;
        y[i].s8 = -16 * sum;
        y[i].c4 = -8 * sum;
        y[i].c8 = -128 * sum;
    }
}

static void act_q8_k(const float *x, struct quant_q8_k *y, int64_t n)
{
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float *xb = x + i * QK_K;
        float amax = 0, max = 0;
        for (int j = 0; j < QK_K; j++) {
            float ax = fabsf(xb[j]);
            if (ax > amax) {
                amax = ax;
                max = xb[j];
            }
        }
        if (amax == 0.0f) {
            memset(&y[i], 0, sizeof(y[i]));
            continue;
        }
        const float iscale = -127.f / max;
        for (int j = 0; j < QK_K; j++) {
            int v = nearest_int(iscale * xb[j]);
            y[i].qs[j] = (int8_t)(v < 127 ? v : 127);
        }
        for (int j = 0; j < QK_K / 16; j++) {
            int s = 0;
            for (int l = 0; l < 16; l++)
                s += y[i].qs[16 * j + l];
            y[i].bsums[j] = (int16_t)s;
        }
        y[i].d = 1 / iscale;
    }
}

void quant_act_row_ref(uint32_t wtype, const float *x, void *dst, int64_t n)
{
    switch (quant_act_type(wtype)) {
    case GGUF_T_F16: {
        uint8_t *o = dst;
        for (int64_t i = 0; i < n; i++) {
            uint16_t h = quant_fp32_to_fp16(x[i]);
            memcpy(o + 2 * i, &h, 2);
        }
        break;
    }
    case GGUF_T_BF16: {
        uint8_t *o = dst;
        for (int64_t i = 0; i < n; i++) {
            uint16_t h = quant_fp32_to_bf16(x[i]);
            memcpy(o + 2 * i, &h, 2);
        }
        break;
    }
    case GGUF_T_Q8_0: act_q8_0(x, dst, n); break;
    case GGUF_T_Q8_K: act_q8_k(x, dst, n); break;
    default: memcpy(dst, x, (size_t)n * 4); break;
    }
}

void quant_act_row(uint32_t wtype, const float *x, void *dst, int64_t n)
{
    if (quant_have_simd() == 2 && quant_act_type(wtype) == GGUF_T_Q8_0)
        quant_act_q8_0_avx512(x, dst, n);
    else if (quant_have_simd())
        quant_act_row_avx2(wtype, x, dst, n);
    else
        quant_act_row_ref(wtype, x, dst, n);
}

/* ---- scalar dot products: one weight row (type-specific) x one activation row ---- */

static float dot_f32(int64_t n, const void *vw, const void *va)
{
    const uint8_t *w = vw, *a = va;
    float s = 0;
    for (int64_t i = 0; i < n; i++) {
        float x, y;
        memcpy(&x, w + 4 * i, 4);
        memcpy(&y, a + 4 * i, 4);
        s += x * y;
    }
    return s;
}

static float dot_f16(int64_t n, const void *vw, const void *va)
{
    const uint8_t *w = vw, *a = va;
    double s = 0; /* ggml's scalar path accumulates f16 dots in double */
    for (int64_t i = 0; i < n; i++) {
        uint16_t x, y;
        memcpy(&x, w + 2 * i, 2);
        memcpy(&y, a + 2 * i, 2);
        s += (double)quant_fp16_to_fp32(x) * quant_fp16_to_fp32(y);
    }
    return (float)s;
}

static float dot_bf16(int64_t n, const void *vw, const void *va)
{
    const uint8_t *w = vw, *a = va;
    double s = 0;
    for (int64_t i = 0; i < n; i++) {
        uint16_t x, y;
        memcpy(&x, w + 2 * i, 2);
        memcpy(&y, a + 2 * i, 2);
        s += (double)quant_bf16_to_fp32(x) * quant_bf16_to_fp32(y);
    }
    return (float)s;
}

static float dot_q8_0(int64_t n, const void *vw, const void *va)
{
    const struct quant_q8_0 *w = vw;
    const struct quant_q8_0a *a = va;
    float s = 0;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        int si = 0;
        for (int j = 0; j < QK8_0; j++)
            si += w[i].qs[j] * a[i].qs[j];
        s += (float)si * (quant_fp16_to_fp32(w[i].d) * a[i].d);
    }
    return s;
}

static float dot_q4_0(int64_t n, const void *vw, const void *va)
{
    const struct quant_q4_0 *w = vw;
    const struct quant_q8_0a *a = va;
    float s = 0;
    for (int64_t i = 0; i < n / QK4_0; i++) {
        int si = 0;
        for (int j = 0; j < QK4_0 / 2; j++) {
            si += ((w[i].qs[j] & 0xF) - 8) * a[i].qs[j];
            si += ((w[i].qs[j] >> 4) - 8) * a[i].qs[j + 16];
        }
        s += (float)si * (quant_fp16_to_fp32(w[i].d) * a[i].d);
    }
    return s;
}

static float dot_q45_k(int is5, int64_t n, const void *vw, const void *va)
{
    const struct quant_q8_k *a = va;
    float s = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const uint8_t *scales, *qs, *qh = NULL;
        uint16_t dh, mh;
        if (!is5) {
            const struct quant_q4_k *b = (const struct quant_q4_k *)vw + i;
            dh = b->d, mh = b->dmin, scales = b->scales, qs = b->qs;
        } else {
            const struct quant_q5_k *b = (const struct quant_q5_k *)vw + i;
            dh = b->d, mh = b->dmin, scales = b->scales, qs = b->qs, qh = b->qh;
        }
        uint8_t q[QK_K];
        q4k_unpack(qs, qh, q);
        int sumi = 0, summ = 0;
        for (int j = 0; j < 8; j++) {
            uint8_t sc, m;
            scale_min_k4(j, scales, &sc, &m);
            int sj = 0;
            for (int l = 0; l < 32; l++)
                sj += q[32 * j + l] * a[i].qs[32 * j + l];
            sumi += sc * sj;
            summ += m * (a[i].bsums[2 * j] + a[i].bsums[2 * j + 1]);
        }
        const float d = quant_fp16_to_fp32(dh) * a[i].d;
        const float dmin = quant_fp16_to_fp32(mh) * a[i].d;
        s += d * (float)sumi - dmin * (float)summ;
    }
    return s;
}

static float dot_q6_k(int64_t n, const void *vw, const void *va)
{
    const struct quant_q6_k *w = vw;
    const struct quant_q8_k *a = va;
    float s = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int8_t q[QK_K];
        q6k_unpack(&w[i], q);
        int sumi = 0;
        for (int j = 0; j < 16; j++) {
            int sj = 0;
            for (int l = 0; l < 16; l++)
                sj += q[16 * j + l] * a[i].qs[16 * j + l];
            sumi += w[i].scales[j] * sj;
        }
        s += quant_fp16_to_fp32(w[i].d) * a[i].d * (float)sumi;
    }
    return s;
}

void quant_gemm_ref(uint32_t wtype, int64_t n, const void *w, size_t w_stride, int nr,
                    const void *act, size_t act_stride, int nt, float *out, size_t out_stride)
{
    for (int t = 0; t < nt; t++) {
        const void *a = (const uint8_t *)act + (size_t)t * act_stride;
        for (int r = 0; r < nr; r++) {
            const void *wr = (const uint8_t *)w + (size_t)r * w_stride;
            float v;
            switch (wtype) {
            case GGUF_T_F32: v = dot_f32(n, wr, a); break;
            case GGUF_T_F16: v = dot_f16(n, wr, a); break;
            case GGUF_T_BF16: v = dot_bf16(n, wr, a); break;
            case GGUF_T_Q8_0: v = dot_q8_0(n, wr, a); break;
            case GGUF_T_Q4_0: v = dot_q4_0(n, wr, a); break;
            case GGUF_T_Q4_K: v = dot_q45_k(0, n, wr, a); break;
            case GGUF_T_Q5_K: v = dot_q45_k(1, n, wr, a); break;
            case GGUF_T_Q6_K: v = dot_q6_k(n, wr, a); break;
            default: v = 0; break;
            }
            out[(size_t)t * out_stride + r] = v;
        }
    }
}

float quant_dot_f32(const float *x, const float *y, int n)
{
    if (quant_have_simd())
        return quant_dot_f32_avx2(x, y, n);
    float s = 0;
    for (int i = 0; i < n; i++)
        s += x[i] * y[i];
    return s;
}

void quant_rms_norm(const float *x, const float *w, float *y, int n, float eps)
{
    if (quant_have_simd()) {
        quant_rms_norm_avx2(x, w, y, n, eps);
        return;
    }
    double sum = 0.0;
    for (int i = 0; i < n; i++)
        sum += (double)(x[i] * x[i]);
    const float mean = (float)(sum / n);
    const float scale = 1.0f / sqrtf(mean + eps);
    for (int i = 0; i < n; i++)
        y[i] = (x[i] * scale) * w[i];
}

void quant_axpy_f32(float *y, const float *x, float a, int n)
{
    if (quant_have_simd()) {
        quant_axpy_f32_avx2(y, x, a, n);
        return;
    }
    for (int i = 0; i < n; i++)
        y[i] += a * x[i];
}

void quant_silu_mul(float *g, const float *u, int n)
{
    if (quant_have_simd() == 2) {
        quant_silu_mul_avx512(g, u, n);
        return;
    }
    if (quant_have_simd()) {
        quant_silu_mul_avx2(g, u, n);
        return;
    }
    for (int i = 0; i < n; i++)
        g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

void quant_attn_head(const float *q, const float *k, const float *v, size_t kv_stride, int np,
                     int hd, float scale, float *sc, float *o)
{
    if (quant_have_simd() && hd % 8 == 0) {
        /* the kernel serving batches, so that one query alone gives the same bits */
        quant_attn_multi(1, &q, &np, k, v, kv_stride, hd, scale, sc, 0, &o);
        return;
    }
    float mx = -INFINITY;
    for (int p = 0; p < np; p++) {
        const float s = quant_dot_f32(q, k + (size_t)p * kv_stride, hd) * scale;
        sc[p] = s;
        mx = s > mx ? s : mx;
    }
    double sum = 0;
    for (int p = 0; p < np; p++) {
        const float e = expf(sc[p] - mx);
        sc[p] = e;
        sum += e;
    }
    const float inv = (float)(1.0 / sum);
    memset(o, 0, (size_t)hd * sizeof(float));
    for (int p = 0; p < np; p++)
        quant_axpy_f32(o, v + (size_t)p * kv_stride, sc[p] * inv, hd);
}

void quant_attn_multi(int nq, const float *const *q, const int *np, const float *k,
                      const float *v, size_t kv_stride, int hd, float scale, float *sc,
                      size_t sc_stride, float *const *o)
{
    if (quant_have_simd() == 2 && hd % 16 == 0) {
        quant_attn_multi_avx512(nq, q, np, k, v, kv_stride, hd, scale, sc, sc_stride, o);
        return;
    }
    if (quant_have_simd() && hd % 8 == 0) {
        quant_attn_multi_avx2(nq, q, np, k, v, kv_stride, hd, scale, sc, sc_stride, o);
        return;
    }
    for (int j = 0; j < nq; j++)
        quant_attn_head(q[j], k, v, kv_stride, np[j], hd, scale, sc + (size_t)j * sc_stride, o[j]);
}

void quant_gemm(uint32_t wtype, int64_t n, const void *w, size_t w_stride, int nr,
                const void *act, size_t act_stride, int nt, float *out, size_t out_stride)
{
    if (quant_have_simd() == 2 &&
        quant_gemm_vnni(wtype, n, w, w_stride, nr, act, act_stride, nt, out, out_stride) == 0)
        return;
    if (quant_have_simd() &&
        quant_gemm_avx2(wtype, n, w, w_stride, nr, act, act_stride, nt, out, out_stride) == 0)
        return;
    quant_gemm_ref(wtype, n, w, w_stride, nr, act, act_stride, nt, out, out_stride);
}
