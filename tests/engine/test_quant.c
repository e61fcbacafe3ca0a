/* test_quant.c -- quant kernels: exact conversions, ggml-exact activation quantizers, dequantization, SIMD == scalar. */
#include "engine/gguf.h"
#include "engine/quant.h"
#include "harness.h"

#include <math.h>
#include <stdint.h>

static uint64_t rng = 88172645463325252ull;
static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}
static float rndf(void) /* roughly N(0,1) */
{
    float s = 0;
    for (int i = 0; i < 4; i++)
        s += (float)(rnd() % 1000000) / 1000000.0f - 0.5f;
    return s * 1.7f;
}

static void test_fp16(void)
{
    CHECK_EQ_INT(quant_fp32_to_fp16(1.0f), 0x3c00);
    CHECK_EQ_INT(quant_fp32_to_fp16(-2.0f), 0xc000);
    CHECK_EQ_INT(quant_fp32_to_fp16(65504.0f), 0x7bff);
    CHECK_EQ_INT(quant_fp32_to_fp16(1e6f), 0x7c00); /* overflow -> inf */
    CHECK_EQ_INT(quant_fp32_to_fp16(1.0f + 0x1p-11f), 0x3c00);       /* tie -> even */
    CHECK_EQ_INT(quant_fp32_to_fp16(1.0f + 3 * 0x1p-11f), 0x3c02);   /* tie -> even (up) */
    CHECK_EQ_INT(quant_fp32_to_fp16(0x1p-24f), 0x0001);              /* smallest subnormal */
    CHECK_EQ_INT(quant_fp32_to_fp16(0x1p-26f), 0x0000);
    CHECK(quant_fp16_to_fp32(0x3555) > 0.333f && quant_fp16_to_fp32(0x3555) < 0.3334f);
    CHECK(quant_fp16_to_fp32(0x0001) == 0x1p-24f);
    CHECK(isinf(quant_fp16_to_fp32(0x7c00)));
    CHECK(isnan(quant_fp16_to_fp32(0x7e00)));
    /* every finite half survives the round trip */
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        if ((h & 0x7c00) == 0x7c00)
            continue;
        if (quant_fp32_to_fp16(quant_fp16_to_fp32((uint16_t)h)) != h)
            bad++;
    }
    CHECK_EQ_INT(bad, 0);
    /* rounding of random floats: the result is the nearest half (checked by neighbours) */
    bad = 0;
    for (int i = 0; i < 100000; i++) {
        float f = rndf() * (float)(1 << (rnd() % 12)) / 64.0f;
        uint16_t h = quant_fp32_to_fp16(f);
        float v = quant_fp16_to_fp32(h);
        float up = quant_fp16_to_fp32((uint16_t)(h + 1)), dn = quant_fp16_to_fp32((uint16_t)(h - 1));
        if ((h & 0x7fff) != 0 && (fabsf(f - v) > fabsf(f - up) || fabsf(f - v) > fabsf(f - dn)))
            bad++;
    }
    CHECK_EQ_INT(bad, 0);
}

static void test_bf16(void)
{
    CHECK_EQ_INT(quant_fp32_to_bf16(1.0f), 0x3f80);
    CHECK_EQ_INT(quant_fp32_to_bf16(1.0f + 0x1p-8f), 0x3f80);     /* tie -> even */
    CHECK_EQ_INT(quant_fp32_to_bf16(1.0f + 3 * 0x1p-8f), 0x3f82); /* tie -> even (up) */
    CHECK_EQ_INT(quant_fp32_to_bf16(1.0f + 0x1p-7f), 0x3f81);
    CHECK(quant_bf16_to_fp32(0x4049) == 3.140625f);
    CHECK(isnan(quant_bf16_to_fp32(quant_fp32_to_bf16(NAN))));
}

static void test_act_q8_0(void)
{
    float x[64];
    for (int i = 0; i < 32; i++)
        x[i] = (float)i - 15.5f; /* amax 15.5 */
    for (int i = 32; i < 64; i++)
        x[i] = 0;
    struct quant_q8_0a q[2];
    quant_act_row_ref(GGUF_T_Q8_0, x, q, 64);
    CHECK(q[0].d == quant_fp16_to_fp32(quant_fp32_to_fp16(15.5f / 127.f)));
    CHECK_EQ_INT(q[0].qs[0], -127);
    CHECK_EQ_INT(q[0].qs[31], 127);
    /* -14.5 * 127/15.5 = -118.8 -> -119 */
    CHECK_EQ_INT(q[0].qs[1], -119);
    CHECK(q[1].d == 0.0f && q[1].qs[5] == 0);
    int sum = 0;
    for (int i = 0; i < 32; i++)
        sum += q[0].qs[i];
    CHECK_EQ_INT(q[0].s4 * 8, -8 * sum);
    CHECK_EQ_INT(q[0].s8 * 8, -128 * sum);
    CHECK_EQ_INT(q[0].c4, -8 * sum);
    CHECK_EQ_INT(q[0].c8, -128 * sum);
    /* a half-way product rounds to even: amax 127 -> id 1 */
    float y[32] = {127.0f, 2.5f, 3.5f, -2.5f};
    quant_act_row_ref(GGUF_T_Q8_0, y, q, 32);
    CHECK_EQ_INT(q[0].qs[1], 2);
    CHECK_EQ_INT(q[0].qs[2], 4);
    CHECK_EQ_INT(q[0].qs[3], -2);
}

static void test_act_q8_k(void)
{
    float x[256];
    for (int i = 0; i < 256; i++)
        x[i] = (float)(i % 17) - 3.0f;
    x[100] = -20.0f; /* the element of largest magnitude is negative */
    struct quant_q8_k q;
    quant_act_row_ref(GGUF_T_Q4_K, x, &q, 256);
    /* iscale = -127/-20 = 6.35, d = 1/iscale */
    CHECK(fabsf(q.d - 1.0f / 6.35f) < 1e-7f);
    CHECK_EQ_INT(q.qs[100], -127);
    CHECK_EQ_INT(q.qs[3], 0);
    CHECK_EQ_INT(q.qs[4], (int)lrintf(6.35f));
    int s = 0;
    for (int i = 0; i < 16; i++)
        s += q.qs[16 + i];
    CHECK_EQ_INT(q.bsums[1], s);
    /* dequantized back within half a step */
    int bad = 0;
    for (int i = 0; i < 256; i++)
        if (fabsf(q.d * q.qs[i] - x[i]) > fabsf(q.d) * 0.5001f)
            bad++;
    CHECK_EQ_INT(bad, 0);
}

static void test_dequant_known(void)
{
    struct quant_q8_0 b8;
    b8.d = quant_fp32_to_fp16(0.5f);
    for (int i = 0; i < 32; i++)
        b8.qs[i] = (int8_t)(i - 16);
    float y[256];
    quant_dequant_row(GGUF_T_Q8_0, &b8, y, 32);
    CHECK(y[0] == -8.0f && y[31] == 7.5f);
    struct quant_q4_0 b4;
    b4.d = quant_fp32_to_fp16(2.0f);
    for (int i = 0; i < 16; i++)
        b4.qs[i] = (uint8_t)(i | (15 - i) << 4);
    quant_dequant_row(GGUF_T_Q4_0, &b4, y, 32);
    CHECK(y[0] == -16.0f && y[1] == -14.0f && y[16] == 14.0f && y[31] == -16.0f);
    /* Q6_K: all quants 33 (q - 32 = 1), scales i, d 0.25 -> value = 0.25 * scale */
    struct quant_q6_k b6;
    memset(&b6, 0, sizeof(b6));
    for (int i = 0; i < 128; i++)
        b6.ql[i] = 0x11; /* low 4 bits 1, high 4 bits 1 */
    for (int i = 0; i < 64; i++)
        b6.qh[i] = 0xAA; /* each 2-bit field = 2 -> +32 */
    for (int i = 0; i < 16; i++)
        b6.scales[i] = (int8_t)(i - 8);
    b6.d = quant_fp32_to_fp16(0.25f);
    quant_dequant_row(GGUF_T_Q6_K, &b6, y, 256);
    int bad = 0;
    for (int i = 0; i < 256; i++)
        if (y[i] != 0.25f * (float)(i / 16 - 8))
            bad++;
    CHECK_EQ_INT(bad, 0);
    /* Q4_K: sub-block j gets scale j+1, min 2j (j < 4 uses the plain 6-bit fields) */
    struct quant_q4_k bk;
    memset(&bk, 0, sizeof(bk));
    bk.d = quant_fp32_to_fp16(1.0f);
    bk.dmin = quant_fp32_to_fp16(0.5f);
    for (int j = 0; j < 4; j++) {
        bk.scales[j] = (uint8_t)(j + 1);
        bk.scales[j + 4] = (uint8_t)(2 * j);
    }
    for (int j = 4; j < 8; j++) /* scale j+1 and min 2j in the low/high nibbles */
        bk.scales[j + 4] = (uint8_t)(((j + 1) & 15) | ((2 * j) & 15) << 4);
    for (int i = 0; i < 128; i++)
        bk.qs[i] = 0x53; /* low 3, high 5 */
    quant_dequant_row(GGUF_T_Q4_K, &bk, y, 256);
    bad = 0;
    for (int i = 0; i < 256; i++) {
        int j = i / 32, q = (i % 64) < 32 ? 3 : 5;
        float want = (float)(j + 1) * q - 0.5f * (float)(2 * j);
        if (y[i] != want)
            bad++;
    }
    CHECK_EQ_INT(bad, 0);
}

/* The same random-weight source quantized 4 ways: dequantized rows must agree to
 * within the quantization error of each format. */
static void test_dequant_files(void)
{
    const char *files[] = {"tiny-kq-bf16.gguf", "tiny-kq-q6_k.gguf", "tiny-kq-q5_k_m.gguf",
                           "tiny-kq-q4_k_m.gguf"};
    const double tol[] = {0, 0.02, 0.05, 0.12};
    const char *tensors[] = {"token_embd.weight", "blk.0.ffn_down.weight", "output.weight"};
    for (int ti = 0; ti < 3; ti++) {
        float *ref = NULL;
        int64_t n = 0;
        for (int fi = 0; fi < 4; fi++) {
            char p[1024];
            snprintf(p, sizeof(p), "%s/models/%s", harness_shared(), files[fi]);
            struct gguf_file *f = NULL;
            char err[256];
            REQUIRE(gguf_open(p, &f, err, sizeof(err)) == 0);
            const struct gguf_tensor *t = gguf_find_tensor(f, tensors[ti]);
            REQUIRE(t != NULL && quant_supported(t->type));
            n = t->ne[0];
            int rows = 8;
            float *y = malloc(sizeof(float) * (size_t)(n * rows));
            for (int r = 0; r < rows; r++)
                quant_dequant_row(t->type, (const uint8_t *)t->data + gguf_row_bytes(t->type, n) * (uint64_t)(r * 37),
                                  y + r * n, n);
            if (fi == 0) {
                ref = y;
            } else {
                double num = 0, den = 0;
                for (int64_t i = 0; i < n * rows; i++) {
                    num += (y[i] - ref[i]) * (double)(y[i] - ref[i]);
                    den += (double)ref[i] * ref[i];
                }
                double rel = sqrt(num / den);
                if (!(rel < tol[fi]))
                    fprintf(stderr, "  %s %s rel err %g\n", files[fi], tensors[ti], rel);
                CHECK(rel < tol[fi]);
                CHECK(rel > 1e-5); /* really a different format */
                free(y);
            }
            gguf_close(f);
        }
        free(ref);
    }
}

static void fill_weights(uint32_t type, uint8_t *w, size_t bytes, int64_t n, int rows)
{
    for (size_t i = 0; i < bytes; i++)
        w[i] = (uint8_t)rnd();
    size_t rb = gguf_row_bytes(type, n);
    /* keep fp16 scale fields finite and moderate */
    for (int r = 0; r < rows; r++) {
        uint8_t *row = w + rb * (size_t)r;
        if (type == GGUF_T_F16 || type == GGUF_T_BF16) {
            for (int64_t i = 0; i < n; i++) {
                uint16_t h = type == GGUF_T_F16 ? quant_fp32_to_fp16(rndf()) : quant_fp32_to_bf16(rndf());
                memcpy(row + 2 * i, &h, 2);
            }
        } else if (type == GGUF_T_F32) {
            for (int64_t i = 0; i < n; i++) {
                float v = rndf();
                memcpy(row + 4 * i, &v, 4);
            }
        } else if (type == GGUF_T_Q8_0 || type == GGUF_T_Q4_0) {
            size_t bs = type == GGUF_T_Q8_0 ? 34 : 18;
            for (int64_t b = 0; b < n / 32; b++) {
                uint16_t d = quant_fp32_to_fp16(0.01f + (float)(rnd() % 100) / 1000.0f);
                memcpy(row + bs * (size_t)b, &d, 2);
            }
        } else if (type == GGUF_T_Q6_K) {
            for (int64_t b = 0; b < n / 256; b++) {
                uint16_t d = quant_fp32_to_fp16(0.001f + (float)(rnd() % 100) / 10000.0f);
                memcpy(row + 210 * (size_t)b + 208, &d, 2);
            }
        } else { /* Q4_K, Q5_K: d, dmin first */
            size_t bs = type == GGUF_T_Q4_K ? 144 : 176;
            for (int64_t b = 0; b < n / 256; b++) {
                uint16_t d = quant_fp32_to_fp16(0.001f + (float)(rnd() % 100) / 10000.0f);
                uint16_t m = quant_fp32_to_fp16(0.002f);
                memcpy(row + bs * (size_t)b, &d, 2);
                memcpy(row + bs * (size_t)b + 2, &m, 2);
            }
        }
    }
}

/* nt activation rows against 11 weight rows: covers the decode tiles (nt <= 8: 1x8, 1x4,
 * 1x2, 1x1) and the prefill tiles (4x4, 4x2, 4x1 and the 1x1 row tail) */
static void simd_equals_scalar(int nt)
{
    if (!quant_have_simd()) {
        fprintf(stderr, "  no AVX2 on this CPU: SIMD kernels not exercised\n");
        return;
    }
    const uint32_t types[] = {GGUF_T_F32, GGUF_T_F16, GGUF_T_BF16, GGUF_T_Q8_0,
                              GGUF_T_Q4_0, GGUF_T_Q4_K, GGUF_T_Q5_K, GGUF_T_Q6_K};
    for (size_t k = 0; k < sizeof(types) / sizeof(types[0]); k++) {
        uint32_t type = types[k];
        const int64_t n = 768;
        const int rows = 11;
        size_t rb = gguf_row_bytes(type, n), ab = quant_act_row_bytes(type, n);
        uint8_t *w = malloc(rb * rows), *a = malloc(ab * nt), *a2 = malloc(ab * nt);
        float *x = malloc(sizeof(float) * (size_t)(n * nt));
        float o1[15 * 11], o2[15 * 11];
        fill_weights(type, w, rb * rows, n, rows);
        for (int64_t i = 0; i < n * nt; i++)
            x[i] = rndf();
        x[5] = 0; /* zeros and a zero block */
        for (int i = 64; i < 96; i++)
            x[i] = 0;
        for (int t = 0; t < nt; t++) {
            quant_act_row(type, x + t * n, a + ab * (size_t)t, n);
            quant_act_row_ref(type, x + t * n, a2 + ab * (size_t)t, n);
        }
        CHECK(memcmp(a, a2, ab * nt) == 0); /* SIMD activation quantizers are bit-exact */
        quant_gemm_ref(type, n, w, rb, rows, a, ab, nt, o2, rows);
        /* every SIMD level (AVX2, VNNI where the CPU has it) against the scalar code: per-block
         * products are exact integers; only the float summation order differs */
        const int top = quant_have_simd();
        for (int level = 1; level <= top; level++) {
            quant_set_max_level(level);
            quant_gemm(type, n, w, rb, rows, a, ab, nt, o1, rows);
            double maxrel = 0, scale = 0;
            for (int j = 0; j < rows * nt; j++)
                scale = fmax(scale, fabs(o2[j]));
            for (int i = 0; i < rows * nt; i++)
                maxrel = fmax(maxrel, fabs(o1[i] - o2[i]) / (scale + 1e-30));
            if (!(maxrel < 2e-5))
                fprintf(stderr, "  %s level %d: max rel diff %g\n", gguf_type_name(type), level,
                        maxrel);
            CHECK(maxrel < 2e-5);
        }
        quant_set_max_level(2);
        quant_gemm(type, n, w, rb, rows, a, ab, nt, o1, rows);
        /* against F32 math on the dequantized operands */
        float *wd = malloc(sizeof(float) * (size_t)n), *ad = malloc(sizeof(float) * (size_t)n);
        const int tt = nt > 2 ? 2 : nt - 1; /* the activation row checked */
        quant_dequant_row(type, w + rb * 3, wd, n);
        uint32_t at = quant_act_type(type);
        if (at == GGUF_T_Q8_0) {
            const struct quant_q8_0a *q = (const void *)(a + ab * (size_t)tt);
            for (int64_t i = 0; i < n; i++)
                ad[i] = q[i / 32].d * q[i / 32].qs[i % 32];
        } else if (at == GGUF_T_Q8_K) {
            const struct quant_q8_k *q = (const void *)(a + ab * (size_t)tt);
            for (int64_t i = 0; i < n; i++)
                ad[i] = q[i / 256].d * q[i / 256].qs[i % 256];
        } else {
            quant_dequant_row(at, a + ab * (size_t)tt, ad, n);
        }
        double s = 0, sa = 0;
        for (int64_t i = 0; i < n; i++) {
            s += (double)wd[i] * ad[i];
            sa += fabs((double)wd[i] * ad[i]);
        }
        CHECK(fabs(s - o1[tt * rows + 3]) <= 1e-5 * sa + 1e-6);
        free(wd);
        free(ad);
        free(w);
        free(a);
        free(a2);
        free(x);
    }
}

static void test_simd_equals_scalar(void)
{
    const int nts[] = {1, 7, 8, 15};
    for (int i = 0; i < 4; i++)
        simd_equals_scalar(nts[i]);
}

/* repacked QUANT_PACK_ROWS-row groups (VNNI machines) == the scalar reference on the original layout */
static void test_packed(void)
{
    if (quant_have_simd() < 2) {
        fprintf(stderr, "  no AVX512-VNNI: repacked kernels not exercised\n");
        return;
    }
    const uint32_t types[] = {GGUF_T_Q8_0, GGUF_T_Q4_0};
    const int nts[] = {1, 4, 5, 8, 13};
    for (int k = 0; k < 2; k++) {
        const uint32_t type = types[k];
        const int64_t n = 320;
        const int G = QUANT_PACK_ROWS, rows = 3 * QUANT_PACK_ROWS;
        CHECK_EQ_INT(quant_repack_bytes(type, n, G + 4), 0); /* rows not a multiple of G */
        size_t rb = gguf_row_bytes(type, n), ab = quant_act_row_bytes(type, n);
        size_t pb = quant_repack_bytes(type, n, rows);
        REQUIRE(pb > 0);
        uint8_t *w = malloc(rb * rows), *wp = malloc(pb), *a = malloc(ab * 13);
        float *x = malloc(sizeof(float) * (size_t)n * 13);
        float o1[13 * 3 * QUANT_PACK_ROWS], o2[13 * 3 * QUANT_PACK_ROWS];
        fill_weights(type, w, rb * rows, n, rows);
        quant_repack(type, w, rb, n, rows, wp);
        for (int64_t i = 0; i < n * 13; i++)
            x[i] = rndf();
        for (int t = 0; t < 13; t++)
            quant_act_row(type, x + t * n, a + ab * (size_t)t, n);
        for (int c = 0; c < 5; c++) {
            const int nt = nts[c];
            quant_gemm_ref(type, n, w, rb, rows, a, ab, nt, o2, rows);
            /* the last two groups only, as a unit of a larger matmul would call it */
            quant_gemm_packed(type, n, wp, 3, a, ab, nt, o1, rows);
            double maxrel = 0, scale = 0;
            for (int j = 0; j < rows * nt; j++)
                scale = fmax(scale, fabs(o2[j]));
            for (int j = 0; j < rows * nt; j++)
                maxrel = fmax(maxrel, fabs(o1[j] - o2[j]) / scale);
            if (!(maxrel < 2e-5))
                fprintf(stderr, "  %s nt %d: packed max rel diff %g\n", gguf_type_name(type), nt,
                        maxrel);
            CHECK(maxrel < 2e-5);
            size_t gs = quant_repack_bytes(type, n, G);
            quant_gemm_packed(type, n, wp + gs, 2, a, ab, nt, o1, rows);
            int bad = 0;
            for (int t = 0; t < nt; t++)
                for (int r = 0; r < 2 * G; r++)
                    if (fabs(o1[t * rows + r] - o2[t * rows + G + r]) > 2e-5 * scale)
                        bad++;
            CHECK_EQ_INT(bad, 0);
        }
        free(w);
        free(wp);
        free(a);
        free(x);
    }
}

static void test_f32_helpers(void)
{
    float x[37], y[37], z[37];
    for (int i = 0; i < 37; i++)
        x[i] = rndf(), y[i] = rndf(), z[i] = y[i];
    double s = 0;
    for (int i = 0; i < 37; i++)
        s += (double)x[i] * y[i];
    CHECK(fabs(quant_dot_f32(x, y, 37) - s) < 1e-4);
    quant_axpy_f32(z, x, 0.5f, 37);
    int bad = 0;
    for (int i = 0; i < 37; i++)
        if (fabsf(z[i] - (y[i] + 0.5f * x[i])) > 1e-6f)
            bad++;
    CHECK_EQ_INT(bad, 0);
}

/* SwiGLU with the vector exp: within a few ulp of libm's expf, across the clamp range */
static void test_silu_mul(void)
{
    float g[45], u[45], want[45];
    for (int i = 0; i < 45; i++) {
        g[i] = i < 40 ? (float)(i - 20) * 0.9f + rndf() : (float)((i % 2 ? 1 : -1) * 95 * (i - 39));
        u[i] = rndf() + 1.5f;
        want[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
    }
    quant_silu_mul(g, u, 45);
    int bad = 0;
    for (int i = 0; i < 45; i++)
        if (!(fabsf(g[i] - want[i]) <= 1e-6f * fabsf(want[i]) + 1e-30f))
            bad++;
    CHECK_EQ_INT(bad, 0);
    /* the attention kernel's softmax weights match a double-precision softmax */
    float q[8] = {1, -2, 0.5f, 3, 0, 1, -1, 2}, kv[40 * 8], sc[40], o[8];
    for (int i = 0; i < 40 * 8; i++)
        kv[i] = rndf() * 4;
    for (int i = 0; i < 8; i++)
        kv[39 * 8 + i] = 0; /* V row 39 is zero: o depends on the others only */
    quant_attn_head(q, kv, kv, 8, 40, 8, 0.35f, sc, o);
    double ref[40], mx = -1e30, sum = 0;
    for (int p = 0; p < 40; p++) {
        ref[p] = 0;
        for (int i = 0; i < 8; i++)
            ref[p] += (double)q[i] * kv[p * 8 + i];
        ref[p] *= 0.35;
        mx = ref[p] > mx ? ref[p] : mx;
    }
    for (int p = 0; p < 40; p++)
        sum += ref[p] = exp(ref[p] - mx);
    bad = 0;
    for (int p = 0; p < 40; p++)
        if (fabs(sc[p] - ref[p] / sum) > 1e-5)
            bad++;
    CHECK_EQ_INT(bad, 0);
}

/* multi-query attention (head_dim 64, GQA-like K/V stride, causal lengths that end inside
 * and across the kernel's blocks): every query equals a double-precision reference, and
 * equals the same query computed alone bit for bit (batched answers must not depend on
 * which other queries share the tile) */
static void test_attn_multi(void)
{
    enum { HD = 64, STRIDE = 192, NPOS = 150, NQ = 7 };
    static float k[NPOS * STRIDE], v[NPOS * STRIDE], q[NQ][HD], o[NQ][HD], o1[HD];
    static float sc[NQ * NPOS];
    for (int i = 0; i < NPOS * STRIDE; i++) {
        k[i] = rndf() * 2;
        v[i] = rndf() * 3;
    }
    const int np[NQ] = {150, 149, 1, 17, 64, 65, 130};
    const float *qp[NQ];
    float *op[NQ];
    for (int j = 0; j < NQ; j++) {
        for (int i = 0; i < HD; i++)
            q[j][i] = rndf();
        qp[j] = q[j];
        op[j] = o[j];
    }
    const float *kb = k + 64, *vb = v + 64; /* the second KV head */
    quant_attn_multi(NQ, qp, np, kb, vb, STRIDE, HD, 0.125f, sc, NPOS, op);
    int bad = 0, diff = 0;
    for (int j = 0; j < NQ; j++) {
        static double w[NPOS];
        double mx = -1e30, sum = 0;
        for (int p = 0; p < np[j]; p++) {
            w[p] = 0;
            for (int i = 0; i < HD; i++)
                w[p] += (double)q[j][i] * kb[p * STRIDE + i];
            w[p] *= 0.125;
            mx = w[p] > mx ? w[p] : mx;
        }
        for (int p = 0; p < np[j]; p++)
            sum += w[p] = exp(w[p] - mx);
        for (int i = 0; i < HD; i++) {
            double r = 0;
            for (int p = 0; p < np[j]; p++)
                r += w[p] / sum * vb[p * STRIDE + i];
            if (fabs(o[j][i] - r) > 1e-4 * (fabs(r) + 1))
                bad++;
        }
        quant_attn_head(q[j], kb, vb, STRIDE, np[j], HD, 0.125f, sc, o1);
        diff += memcmp(o1, o[j], sizeof(o1)) != 0;
    }
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(diff, 0);
}

int main(void)
{
    quant_init();
    RUN(test_fp16);
    RUN(test_bf16);
    RUN(test_act_q8_0);
    RUN(test_act_q8_k);
    RUN(test_dequant_known);
    RUN(test_dequant_files);
    RUN(test_simd_equals_scalar);
    RUN(test_f32_helpers);
    RUN(test_packed);
    RUN(test_silu_mul);
    RUN(test_attn_multi);
    return harness_done();
}
