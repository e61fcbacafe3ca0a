/* engine_bench.c -- forward-pass speed: prefill, single-sequence decode and batched decode tokens/s on one GGUF. */
#include "engine/forward.h"
#include "engine/gguf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The machine may be shared: besides wall-clock tok/s we report tokens per CPU-second
 * per thread (process CPU time / threads), which contention inflates far less. */
static double cpu_rate(double tokens, double cpu, int threads)
{
    return tokens / (cpu / threads);
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(double), cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: engine_bench MODEL.gguf THREADS [RUNS] [PREFILL] [DECODE] [ref_pp ref_tg]\n");
        return 2;
    }
    const char *path = argv[1];
    int threads = atoi(argv[2]);
    int runs = argc > 3 ? atoi(argv[3]) : 5;
    int n_pp = argc > 4 ? atoi(argv[4]) : 512;
    int n_tg = argc > 5 ? atoi(argv[5]) : 128;
    double ref_pp = argc > 6 ? atof(argv[6]) : 0, ref_tg = argc > 7 ? atof(argv[7]) : 0;
    char err[256];
    struct gguf_file *f = NULL;
    struct engine_weights *w = NULL;
    struct engine_ctx *ctx = NULL;
    if (gguf_open(path, &f, err, sizeof(err)) || engine_weights_load(f, &w, err, sizeof(err)) ||
        engine_ctx_new(w, threads, 512, &ctx, err, sizeof(err))) {
        fprintf(stderr, "engine_bench: %s: %s\n", path, err);
        return 1;
    }
    const int nv = w->hp.n_vocab;
    float *logits = malloc(sizeof(float) * (size_t)nv * 8);
    int32_t *toks = malloc(sizeof(int32_t) * (size_t)n_pp);
    srand(1);
    for (int i = 0; i < n_pp; i++)
        toks[i] = 3 + rand() % (nv - 3);
    struct engine_kv *kv[8];
    for (int i = 0; i < 8; i++)
        if (engine_kv_new(w, n_pp + n_tg + 8, &kv[i], err, sizeof(err))) {
            fprintf(stderr, "engine_bench: %s\n", err);
            return 1;
        }
    double v[64], vc[64];
    if (runs > 64)
        runs = 64;
    /* warm-up: page the weights in */
    if (engine_forward_prefill(ctx, kv[0], toks, 16, logits))
        return 1;

    /* BENCH_ONLY=pp: prefill only; c8: 8 concurrent sequences only (for profiling) */
    const char *only = getenv("BENCH_ONLY");
    for (int r = 0; r < runs && !(only && strcmp(only, "c8") == 0); r++) {
        engine_kv_clear(kv[0]);
        double t0 = now(), c0 = cpu_now();
        if (engine_forward_prefill(ctx, kv[0], toks, n_pp, logits))
            return 1;
        v[r] = n_pp / (now() - t0);
        vc[r] = cpu_rate(n_pp, cpu_now() - c0, threads);
    }
    double pp = median(v, runs), ppc = median(vc, runs);
    /* BENCH_ONLY=pp: prefill only (for profiling) */
    if (only && strcmp(only, "pp") == 0) {
        printf("prefill %.1f tok/s wall, %.1f per CPU-s/thread\n", pp, ppc);
        return 0;
    }
    for (int r = 0; r < runs && !(only && strcmp(only, "c8") == 0); r++) {
        engine_kv_clear(kv[0]);
        double t0 = now(), c0 = cpu_now();
        int32_t t = 1;
        for (int i = 0; i < n_tg; i++) {
            if (engine_forward_decode(ctx, kv, &t, 1, logits))
                return 1;
            t = 3 + (i * 7919) % (nv - 3);
        }
        v[r] = n_tg / (now() - t0);
        vc[r] = cpu_rate(n_tg, cpu_now() - c0, threads);
    }
    double tg = median(v, runs), tgc = median(vc, runs);
    printf("%-40s threads %d\n", path, threads);
    printf("  prefill %4d tokens : %8.1f tok/s wall (%8.1f per CPU-s/thread)", n_pp, pp, ppc);
    if (ref_pp > 0)
        printf("   llama.cpp %6.0f  ratio %.2fx (%.2fx)", ref_pp, pp / ref_pp, ppc / ref_pp);
    printf("\n  decode  %4d tokens : %8.1f tok/s wall (%8.1f per CPU-s/thread)", n_tg, tg, tgc);
    if (ref_tg > 0)
        printf("   llama.cpp %6.0f  ratio %.2fx (%.2fx)", ref_tg, tg / ref_tg, tgc / ref_tg);
    printf("\n");
    const int seqs[] = {1, 4, 8};
    double one = 0, onec = 0;
    for (int k = 0; k < 3; k++) {
        int ns = seqs[k];
        if (only && strcmp(only, "c8") == 0 && ns != 8) /* BENCH_ONLY=c8: 8 sequences only */
            continue;
        const int steps = 32;
        for (int r = 0; r < runs; r++) {
            for (int i = 0; i < ns; i++) {
                engine_kv_clear(kv[i]);
                if (engine_forward_prefill(ctx, kv[i], toks + i, 8, NULL))
                    return 1;
            }
            int32_t t[8];
            double t0 = now(), c0 = cpu_now();
            for (int s = 0; s < steps; s++) {
                for (int i = 0; i < ns; i++)
                    t[i] = 3 + (s * 131 + i * 17) % (nv - 3);
                if (engine_forward_decode(ctx, kv, t, ns, logits))
                    return 1;
            }
            v[r] = steps * ns / (now() - t0);
            vc[r] = cpu_rate(steps * ns, cpu_now() - c0, threads);
        }
        double agg = median(v, runs), aggc = median(vc, runs);
        if (ns == 1)
            one = agg, onec = aggc;
        printf("  decode %d concurrent : %8.1f tok/s wall (%8.1f per CPU-s/thread) aggregate, "
               "%.2fx (%.2fx) one sequence\n",
               ns, agg, aggc, agg / one, aggc / onec);
    }
    fflush(stdout);
    for (int i = 0; i < 8; i++)
        engine_kv_free(kv[i]);
    free(logits);
    free(toks);
    engine_ctx_free(ctx);
    engine_weights_free(w);
    gguf_close(f);
    return 0;
}
