/* forward.c -- llama/qwen2 forward pass: batched prefill and multi-sequence decode over a persistent thread pool. */
#include "engine/forward.h"
#include "engine/quant.h"

#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

/* KV caches longer than this are refused: it bounds the per-thread score buffer. */
#define ENGINE_MAX_CTX (1 << 18)
#define N_ACT_SLOTS 3
#define SPIN_ITERS 20000

struct engine_kv {
    int n_ctx;
    int len;
    int kv_dim;      /* n_head_kv * head_dim */
    float *k;        /* [n_layer][n_ctx][kv_dim] */
    float *v;        /* [n_layer][n_ctx][kv_dim] */
};

/* ---- thread pool ----
 * A stage is split into n_units small units of work (row chunks, tokens, heads) that
 * threads claim one at a time from a shared counter. `work` holds (generation << 32 |
 * next unit); the caller publishes a stage by storing a new generation and then works
 * through units itself, so a worker that is slow to wake (the machine is shared) costs
 * at most the unit it holds, never the whole stage. Idle workers spin briefly on the
 * generation, then sleep on the condition variable. */

struct pool {
    int n; /* threads including the caller */
    pthread_t *th;
    int started;
    struct engine_ctx *ctx;
    /* claims and completions on separate cache lines: both threads hit each per stage */
    _Alignas(64) _Atomic uint64_t work;
    atomic_int n_units;
    _Alignas(64) atomic_int done;
    atomic_int sleepers;
    atomic_int stop;
    pthread_mutex_t mu; /* guards the sleep/wake hand-over only */
    pthread_cond_t cv;
};

struct worker_arg {
    struct pool *p;
    int ith;
};

enum stage { ST_PREP, ST_MATMUL, ST_ROPE, ST_ATTN };

/* rows per matmul unit: small enough to balance 2..16 threads, large enough to amortise */
#define MM_UNIT_ROWS 32
/* the smallest units, at the end of stages whose rows need no coarser grain (one packed
 * group): the threads then finish within a fraction of a microsecond of each other */
#define MM_TAIL_ROWS 16

struct mm_unit {
    int job, r0, r1;
};

/* attention: the queries of tokens [t0, t0 + nt) (one sequence, consecutive positions) and
 * heads [h0, h0 + nh) of KV head kh, which read each K/V block once for all of them */
struct attn_unit {
    int t0, nt, h0, nh, kh;
};
#define ATTN_TILE_TOK 4   /* tokens per prefill attention unit */
#define ATTN_MAX_Q 32     /* queries per unit */
#define ATTN_SC_MIN 65536
#define ATTN_PREFETCH_ROWS 256 /* cached rows per sequence fetched ahead of attention */ /* per-thread score floats (at least the longest context) */

struct mm_job {
    const struct engine_mat *w;
    int slot;           /* activation slot holding the input rows */
    float *out;         /* [nt][out_stride] */
    size_t out_stride;
};

struct engine_ctx {
    const struct engine_weights *w;
    int n_threads, max_batch;
    struct pool pool;
    struct worker_arg *wargs;
    char err[256];

    /* buffers; B = max_batch */
    float *x;        /* [B][n_embd] residual stream */
    float *xn;       /* [B][n_embd] normed input of a matmul group */
    float *tmp;      /* [B][n_embd] matmul output before the residual add */
    float *q;        /* [B][n_head * head_dim] */
    float *k;        /* [B][kv_dim] */
    float *v;        /* [B][kv_dim] */
    float *att;      /* [B][n_head * head_dim] attention output */
    float *g;        /* [B][n_ff] gate, then silu(gate) * up */
    float *u;        /* [B][n_ff] up */
    uint8_t *act[N_ACT_SLOTS]; /* [B][max_act_bytes] quantized activations, one per format */
    size_t act_stride;
    float *scores;   /* [n_threads][score_len] attention probabilities */
    int score_len;   /* >= the longest context, >= ATTN_SC_MIN */
    struct attn_unit *aunits; /* [B * n_head] */
    float *rope;     /* [B][n_rot] cos, sin pairs per token */

    /* the current batch */
    int nt;
    struct engine_kv **tok_kv; /* [B] */
    int *tok_pos;              /* [B] */
    int layer;

    /* the current stage's parameters */
    enum stage stage;
    const float *prep_src;
    int prep_cols;
    const float *prep_norm; /* NULL: no rms norm */
    uint32_t slot_type[N_ACT_SLOTS];
    int n_slots;
    int prep_t0;            /* first token row to prepare (final norm: only the last rows) */
    struct mm_job mm[3];    /* out holds row prep_t0 first */
    int n_mm;
    int mm_mode;            /* 0 plain, 1 add tmp into x, 2 swiglu (mm[0] gate, mm[1] up) */
    int mm_align;           /* matmul units: row ranges a multiple of this */
    /* Fused stages (fewer barriers per layer): each is done by the units that produce the
     * rows, when the rows a unit owns are whole heads or whole activation blocks. */
    int fuse_rope;          /* QKV units: biases, rope and the cache writes of their rows */
    int att_slot;           /* >= 0: attention units quantize their output rows for wo here */
    int gu_slot;            /* >= 0: gate/up units quantize silu(g) * u for w_down here */
    uint32_t att_wtype, gu_wtype;
    struct mm_unit *units;  /* [max_units] the current matmul stage's row chunks */
    int max_units;
};

static void do_unit(struct engine_ctx *c, int ith, int u);

/* claim and run units of generation g until none are left (or a new stage began) */
static void run_units(struct pool *p, int ith, uint32_t g)
{
    int mine = 0; /* completions are published once, when this thread runs out of units */
    for (;;) {
        uint64_t w = atomic_load_explicit(&p->work, memory_order_acquire);
        if ((uint32_t)(w >> 32) != g)
            break;
        uint32_t u = (uint32_t)w;
        if (u >= (uint32_t)atomic_load_explicit(&p->n_units, memory_order_relaxed))
            break;
        if (atomic_compare_exchange_weak_explicit(&p->work, &w, w + 1, memory_order_acq_rel,
                                                  memory_order_relaxed)) {
            do_unit(p->ctx, ith, (int)u);
            mine++;
        }
    }
    if (mine)
        atomic_fetch_add_explicit(&p->done, mine, memory_order_release);
}

static void *worker_main(void *vp)
{
    struct worker_arg *wa = vp;
    struct pool *p = wa->p;
    uint32_t seen = 0;
    for (;;) {
        uint32_t g;
        int spins = 0;
        while ((g = (uint32_t)(atomic_load_explicit(&p->work, memory_order_acquire) >> 32)) ==
                   seen &&
               !atomic_load(&p->stop)) {
            if (++spins < SPIN_ITERS) {
                CPU_RELAX();
                continue;
            }
            pthread_mutex_lock(&p->mu);
            atomic_fetch_add(&p->sleepers, 1);
            while ((uint32_t)(atomic_load(&p->work) >> 32) == seen && !atomic_load(&p->stop))
                pthread_cond_wait(&p->cv, &p->mu);
            atomic_fetch_sub(&p->sleepers, 1);
            pthread_mutex_unlock(&p->mu);
            spins = 0;
        }
        if (atomic_load(&p->stop))
            return NULL;
        seen = g;
        run_units(p, wa->ith, g);
    }
}

/* pool_run -- run units 0..n_units-1 of the stage set up in ctx, on all threads */
static void pool_run(struct engine_ctx *ctx, int n_units)
{
    struct pool *p = &ctx->pool;
    if (p->n == 1 || n_units == 1) {
        for (int u = 0; u < n_units; u++)
            do_unit(ctx, 0, u);
        return;
    }
    uint32_t g = (uint32_t)(atomic_load_explicit(&p->work, memory_order_relaxed) >> 32) + 1;
    /* Close the previous stage first (a generation with no claimable unit): a thread that
     * read the old work word could otherwise read the new n_units and claim a phantom unit
     * of the old generation, running it with the new stage's parameters. */
    atomic_store(&p->work, (uint64_t)g << 32 | UINT32_MAX);
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    atomic_store_explicit(&p->n_units, n_units, memory_order_relaxed);
    g++;
    atomic_store(&p->work, (uint64_t)g << 32);
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    run_units(p, 0, g);
    int spins = 0;
    while (atomic_load_explicit(&p->done, memory_order_acquire) != n_units) {
        if (++spins < SPIN_ITERS)
            CPU_RELAX();
        else
            sched_yield();
    }
}

static void pool_stop(struct engine_ctx *ctx)
{
    struct pool *p = &ctx->pool;
    if (!p->started)
        return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, 1);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->started; i++)
        pthread_join(p->th[i], NULL);
    p->started = 0;
}

/* ---- KV cache ---- */

int engine_kv_new(const struct engine_weights *w, int n_ctx, struct engine_kv **out, char *err,
                  size_t errlen)
{
    *out = NULL;
    const struct engine_hparams *hp = &w->hp;
    int lim = hp->n_ctx_train < ENGINE_MAX_CTX ? hp->n_ctx_train : ENGINE_MAX_CTX;
    if (n_ctx < 1 || n_ctx > lim) {
        snprintf(err, errlen, "context %d out of range (1..%d)", n_ctx, lim);
        return -1;
    }
    struct engine_kv *kv = calloc(1, sizeof(*kv));
    if (!kv) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    kv->n_ctx = n_ctx;
    kv->kv_dim = hp->n_head_kv * hp->head_dim;
    size_t n = (size_t)hp->n_layer * (size_t)n_ctx * (size_t)kv->kv_dim;
    kv->k = malloc(n * sizeof(float));
    kv->v = malloc(n * sizeof(float));
    if (!kv->k || !kv->v) {
        snprintf(err, errlen, "out of memory for a KV cache of %d tokens", n_ctx);
        engine_kv_free(kv);
        return -1;
    }
    *out = kv;
    return 0;
}

void engine_kv_free(struct engine_kv *kv)
{
    if (!kv)
        return;
    free(kv->k);
    free(kv->v);
    free(kv);
}

int engine_kv_len(const struct engine_kv *kv) { return kv->len; }
int engine_kv_n_ctx(const struct engine_kv *kv) { return kv->n_ctx; }
void engine_kv_clear(struct engine_kv *kv) { kv->len = 0; }

void engine_kv_truncate(struct engine_kv *kv, int n)
{
    if (n >= 0 && n < kv->len)
        kv->len = n;
}

static float *kv_k(struct engine_kv *kv, int layer, int pos)
{
    return kv->k + ((size_t)layer * (size_t)kv->n_ctx + (size_t)pos) * (size_t)kv->kv_dim;
}

static float *kv_v(struct engine_kv *kv, int layer, int pos)
{
    return kv->v + ((size_t)layer * (size_t)kv->n_ctx + (size_t)pos) * (size_t)kv->kv_dim;
}

/* ---- context ---- */

static void *xalloc(size_t n, int *fails)
{
    void *p = aligned_alloc(64, (n + 63) / 64 * 64 + 64);
    if (!p)
        (*fails)++;
    return p;
}

int engine_ctx_new(const struct engine_weights *w, int n_threads, int max_batch,
                   struct engine_ctx **out, char *err, size_t errlen)
{
    *out = NULL;
    if (n_threads < 1 || n_threads > 256 || max_batch < 1 || max_batch > 8192) {
        snprintf(err, errlen, "bad thread count %d or batch %d", n_threads, max_batch);
        return -1;
    }
    const struct engine_hparams *hp = &w->hp;
    /* aligned: the pool's atomics sit on their own cache lines */
    struct engine_ctx *c = aligned_alloc(_Alignof(struct engine_ctx), sizeof(*c));
    if (c)
        memset(c, 0, sizeof(*c));
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    c->w = w;
    c->n_threads = n_threads;
    c->mm_align = MM_UNIT_ROWS;
    c->att_slot = c->gu_slot = -1;
    c->max_batch = max_batch;
    size_t B = (size_t)max_batch, F = sizeof(float);
    size_t n_q = (size_t)hp->n_head * (size_t)hp->head_dim;
    size_t kvd = (size_t)hp->n_head_kv * (size_t)hp->head_dim;
    int fails = 0;
    c->x = xalloc(B * (size_t)hp->n_embd * F, &fails);
    c->xn = xalloc(B * (size_t)hp->n_embd * F, &fails);
    c->tmp = xalloc(B * (size_t)hp->n_embd * F, &fails);
    c->q = xalloc(B * n_q * F, &fails);
    c->k = xalloc(B * kvd * F, &fails);
    c->v = xalloc(B * kvd * F, &fails);
    c->att = xalloc(B * n_q * F, &fails);
    c->g = xalloc(B * (size_t)hp->n_ff * F, &fails);
    c->u = xalloc(B * (size_t)hp->n_ff * F, &fails);
    c->act_stride = (w->max_act_bytes + 63) / 64 * 64;
    for (int i = 0; i < N_ACT_SLOTS; i++)
        c->act[i] = xalloc(B * c->act_stride, &fails);
    c->score_len = hp->n_ctx_train < ENGINE_MAX_CTX ? hp->n_ctx_train : ENGINE_MAX_CTX;
    if (c->score_len < ATTN_SC_MIN)
        c->score_len = ATTN_SC_MIN;
    c->aunits = calloc(B * (size_t)hp->n_head, sizeof(*c->aunits));
    c->scores = xalloc((size_t)n_threads * (size_t)c->score_len * F, &fails);
    c->rope = xalloc(B * (size_t)hp->n_rot * F, &fails);
    c->max_units = (int)(((size_t)hp->n_vocab + n_q + 2 * kvd + 2 * (size_t)hp->n_ff +
                          (size_t)hp->n_embd) / MM_TAIL_ROWS + 8);
    c->units = calloc((size_t)c->max_units, sizeof(*c->units));
    c->tok_kv = calloc(B, sizeof(*c->tok_kv));
    c->tok_pos = calloc(B, sizeof(*c->tok_pos));
    if (fails || !c->tok_kv || !c->tok_pos || !c->units || !c->aunits) {
        snprintf(err, errlen, "out of memory for engine buffers (batch %d)", max_batch);
        engine_ctx_free(c);
        return -1;
    }
    struct pool *p = &c->pool;
    p->n = n_threads;
    p->ctx = c;
    atomic_init(&p->work, 0);
    atomic_init(&p->n_units, 0);
    atomic_init(&p->done, 0);
    atomic_init(&p->sleepers, 0);
    atomic_init(&p->stop, 0);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    if (n_threads > 1) {
        p->th = calloc((size_t)n_threads, sizeof(pthread_t));
        c->wargs = calloc((size_t)n_threads, sizeof(*c->wargs));
        if (!p->th || !c->wargs) {
            snprintf(err, errlen, "out of memory");
            engine_ctx_free(c);
            return -1;
        }
        for (int i = 1; i < n_threads; i++) {
            c->wargs[i].p = p;
            c->wargs[i].ith = i;
            if (pthread_create(&p->th[p->started], NULL, worker_main, &c->wargs[i]) != 0) {
                snprintf(err, errlen, "cannot start engine thread");
                p->n = 1 + p->started;
                engine_ctx_free(c);
                return -1;
            }
            p->started++;
        }
    }
    *out = c;
    return 0;
}

void engine_ctx_free(struct engine_ctx *c)
{
    if (!c)
        return;
    pool_stop(c);
    pthread_mutex_destroy(&c->pool.mu);
    pthread_cond_destroy(&c->pool.cv);
    free(c->pool.th);
    free(c->wargs);
    free(c->x);
    free(c->xn);
    free(c->tmp);
    free(c->q);
    free(c->k);
    free(c->v);
    free(c->att);
    free(c->g);
    free(c->u);
    for (int i = 0; i < N_ACT_SLOTS; i++)
        free(c->act[i]);
    free(c->scores);
    free(c->rope);
    free(c->tok_kv);
    free(c->tok_pos);
    free(c->units);
    free(c->aunits);
    free(c);
}

const char *engine_ctx_error(const struct engine_ctx *ctx)
{
    return ctx->err;
}

static int cfail(struct engine_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int cfail(struct engine_ctx *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof(c->err), fmt, ap);
    va_end(ap);
    return -1;
}

/* ---- stages: each runs as units on the pool (ith: the thread, for its scratch) ---- */

/* unit = one token row: optional rms norm, then the activation formats needed */
static void unit_prep(struct engine_ctx *c, int t)
{
    const int cols = c->prep_cols;
    const float *row = c->prep_src + (size_t)t * (size_t)cols;
    if (c->prep_norm) {
        float *y = c->xn + (size_t)t * (size_t)cols;
        quant_rms_norm(row, c->prep_norm, y, cols, c->w->hp.rms_eps);
        row = y;
    }
    for (int s = 0; s < c->n_slots; s++)
        quant_act_row(c->slot_type[s], row, c->act[s] + (size_t)t * c->act_stride, cols);
}

/* split the rows of the stage's matmuls into units (gate and up share theirs) */
static int mm_plan(struct engine_ctx *c)
{
    int n = 0;
    const int jobs = c->mm_mode == 2 ? 1 : c->n_mm;
    for (int j = 0; j < jobs; j++) {
        const int nr = (int)c->mm[j].w->ne1;
        /* unit rows are always a multiple of QUANT_PACK_ROWS (packed groups) */
        /* guided: units shrink as the rows run out (a share of what is left), so the
         * stage ends on small units and the threads finish together */
        /* rows of fused work (rope by head, SwiGLU quantized by block) keep mm_align; plain
         * and residual matmuls go down to MM_TAIL_ROWS */
        const int al = c->mm_mode == 2 || c->fuse_rope ? c->mm_align : MM_TAIL_ROWS;
        for (int r0 = 0; r0 < nr && n < c->max_units;) {
            int step = (nr - r0) / (2 * c->n_threads);
            step = step < al ? al : (step + al - 1) / al * al;
            c->units[n].job = j;
            c->units[n].r0 = r0;
            c->units[n].r1 = r0 + step < nr ? r0 + step : nr;
            r0 = c->units[n].r1;
            n++;
        }
    }
    return n;
}

/* Token rows per call: a unit's weight rows are reused across a chunk of activation rows
 * that stays in L2 (512 rows of a 1536-wide Q8_0 activation would be 1 MB). */
#define MM_TOKEN_CHUNK 64

static void mm_rows(struct engine_ctx *c, const struct mm_job *m, int r0, int r1)
{
    for (int t0 = c->prep_t0; t0 < c->nt; t0 += MM_TOKEN_CHUNK) {
        const int nt = c->nt - t0 < MM_TOKEN_CHUNK ? c->nt - t0 : MM_TOKEN_CHUNK;
        if (m->w->packed) { /* units are whole groups: MM_UNIT_ROWS, ne1 % QUANT_PACK_ROWS == 0 */
            quant_gemm_packed(m->w->type, m->w->ne0,
                              m->w->packed + (size_t)(r0 / QUANT_PACK_ROWS) * m->w->group_bytes,
                              (r1 - r0) / QUANT_PACK_ROWS,
                              c->act[m->slot] + (size_t)t0 * c->act_stride,
                              c->act_stride, nt,
                              m->out + (size_t)(t0 - c->prep_t0) * m->out_stride + r0, m->out_stride);
            continue;
        }
        quant_gemm(m->w->type, m->w->ne0, m->w->data + (size_t)r0 * m->w->row_bytes,
                   m->w->row_bytes, r1 - r0, c->act[m->slot] + (size_t)t0 * c->act_stride,
                   c->act_stride, nt, m->out + (size_t)(t0 - c->prep_t0) * m->out_stride + r0,
                   m->out_stride);
    }
}

static void rope_apply(float *x, const float *cs, int n_rot, int neox);

/* the QKV stage's rows [r0, r1) of job j (0 q, 1 k, 2 v; whole heads) for every token:
 * biases, rope, and k and v into the token's cache */
static void qkv_finish_rows(struct engine_ctx *c, int j, int r0, int r1)
{
    const struct engine_hparams *hp = &c->w->hp;
    const struct engine_layer *L = &c->w->layers[c->layer];
    const int hd = hp->head_dim;
    const float *bias = j == 0 ? L->bq : j == 1 ? L->bk : L->bv;
    const size_t stride = c->mm[j].out_stride;
    for (int t = 0; t < c->nt; t++) {
        float *row = c->mm[j].out + (size_t)t * stride;
        if (bias)
            for (int i = r0; i < r1; i++)
                row[i] += bias[i];
        if (j < 2) {
            const float *cs = c->rope + (size_t)t * (size_t)hp->n_rot;
            for (int h = r0 / hd; h < r1 / hd; h++)
                rope_apply(row + (size_t)h * (size_t)hd, cs, hp->n_rot, hp->rope_neox);
        }
        if (j > 0) {
            struct engine_kv *kv = c->tok_kv[t];
            float *dst = j == 1 ? kv_k(kv, c->layer, c->tok_pos[t]) : kv_v(kv, c->layer, c->tok_pos[t]);
            memcpy(dst + r0, row + r0, (size_t)(r1 - r0) * sizeof(float));
            /* the attention stage reads this sequence's cached rows next; at a few tokens
             * per sequence (decode) they come from DRAM, after the weights streamed through
             * the caches evicted them: start fetching them into L2 now */
            if (t + 1 == c->nt || c->tok_kv[t + 1] != kv) {
                const int pos = c->tok_pos[t];
                float *base = j == 1 ? kv_k(kv, c->layer, 0) : kv_v(kv, c->layer, 0);
                for (int p = pos > ATTN_PREFETCH_ROWS ? pos - ATTN_PREFETCH_ROWS : 0; p < pos; p++)
                    for (int i = r0; i < r1; i += 16)
                        __builtin_prefetch(base + (size_t)p * (size_t)kv->kv_dim + i, 0, 2);
            }
        }
    }
}

static void unit_matmul(struct engine_ctx *c, int u)
{
    const struct mm_unit *un = &c->units[u];
    const int r0 = un->r0, r1 = un->r1;
    const struct mm_job *m = &c->mm[un->job];
    mm_rows(c, m, r0, r1);
    if (c->mm_mode == 0 && c->fuse_rope) {
        qkv_finish_rows(c, un->job, r0, r1);
    } else if (c->mm_mode == 1) {
        const int n_embd = c->w->hp.n_embd;
        for (int t = 0; t < c->nt; t++) {
            float *x = c->x + (size_t)t * (size_t)n_embd;
            const float *y = m->out + (size_t)t * m->out_stride;
            quant_axpy_f32(x + r0, y + r0, 1.0f, r1 - r0); /* fma(1, y, x) == x + y */
        }
    } else if (c->mm_mode == 2) {
        mm_rows(c, &c->mm[1], r0, r1);
        for (int t = 0; t < c->nt; t++) {
            float *gr = c->g + (size_t)t * m->out_stride;
            const float *ur = c->u + (size_t)t * m->out_stride;
            quant_silu_mul(gr + r0, ur + r0, r1 - r0);
            if (c->gu_slot >= 0) /* whole Q8_0 blocks: r0, r1 multiples of 32 */
                quant_act_row(c->gu_wtype, gr + r0,
                              c->act[c->gu_slot] + (size_t)t * c->act_stride +
                                  (size_t)(r0 / QK8_0) * sizeof(struct quant_q8_0a),
                              r1 - r0);
        }
    }
}

/* rotate pairs of one head vector with the per-token cos/sin cache */
static void rope_apply(float *x, const float *cs, int n_rot, int neox)
{
    if (neox) {
        const int half = n_rot / 2;
        for (int i0 = 0; i0 < n_rot; i0 += 2) {
            const float c0 = cs[i0], s0 = cs[i0 + 1];
            const float x0 = x[i0 / 2], x1 = x[i0 / 2 + half];
            x[i0 / 2] = x0 * c0 - x1 * s0;
            x[i0 / 2 + half] = x0 * s0 + x1 * c0;
        }
    } else {
        for (int i0 = 0; i0 < n_rot; i0 += 2) {
            const float c0 = cs[i0], s0 = cs[i0 + 1];
            const float x0 = x[i0], x1 = x[i0 + 1];
            x[i0] = x0 * c0 - x1 * s0;
            x[i0 + 1] = x0 * s0 + x1 * c0;
        }
    }
}

/* split the batch's attention into units: runs of tokens of one sequence in tiles of up to
 * ATTN_TILE_TOK tokens x the query heads of one KV head (fewer when their scores would not
 * fit the thread's scratch); the largest (latest) tiles first, for balance */
static int attn_plan(struct engine_ctx *c)
{
    const struct engine_hparams *hp = &c->w->hp;
    const int group = hp->n_head / hp->n_head_kv;
    const size_t cap = (size_t)c->score_len;
    int n = 0;
    for (int t = 0; t < c->nt;) {
        int e = t + 1;
        while (e < c->nt && c->tok_kv[e] == c->tok_kv[t] && c->tok_pos[e] == c->tok_pos[e - 1] + 1)
            e++;
        for (int t0 = t; t0 < e;) {
            int tn = e - t0 < ATTN_TILE_TOK ? e - t0 : ATTN_TILE_TOK;
            while (tn > 1 && ((size_t)tn * (size_t)group * ((size_t)c->tok_pos[t0 + tn - 1] + 1) > cap ||
                              tn * group > ATTN_MAX_Q))
                tn--;
            const size_t np = (size_t)c->tok_pos[t0 + tn - 1] + 1;
            int nh = group;
            while (nh > 1 && ((size_t)nh * np > cap || nh > ATTN_MAX_Q))
                nh--;
            for (int kh = 0; kh < hp->n_head_kv; kh++)
                for (int h0 = kh * group; h0 < (kh + 1) * group; h0 += nh) {
                    const int hn = h0 + nh <= (kh + 1) * group ? nh : (kh + 1) * group - h0;
                    c->aunits[n++] = (struct attn_unit){t0, tn, h0, hn, kh};
                }
            t0 += tn;
        }
        t = e;
    }
    for (int i = 0; i < n / 2; i++) {
        struct attn_unit tmp = c->aunits[i];
        c->aunits[i] = c->aunits[n - 1 - i];
        c->aunits[n - 1 - i] = tmp;
    }
    return n;
}

static void unit_attn(struct engine_ctx *c, int ith, int idx)
{
    const struct engine_hparams *hp = &c->w->hp;
    const int hd = hp->head_dim, n_q = hp->n_head * hd, kvd = hp->n_head_kv * hd;
    const float scale = 1.0f / sqrtf((float)hd);
    const struct attn_unit *au = &c->aunits[idx];
    const float *q[ATTN_MAX_Q];
    float *o[ATTN_MAX_Q];
    int np[ATTN_MAX_Q], nq = 0, np_max = 0;
    for (int t = au->t0; t < au->t0 + au->nt; t++)
        for (int h = au->h0; h < au->h0 + au->nh; h++) {
            q[nq] = c->q + (size_t)t * (size_t)n_q + (size_t)h * (size_t)hd;
            o[nq] = c->att + (size_t)t * (size_t)n_q + (size_t)h * (size_t)hd;
            np[nq] = c->tok_pos[t] + 1;
            np_max = np[nq] > np_max ? np[nq] : np_max;
            nq++;
        }
    struct engine_kv *kv = c->tok_kv[au->t0];
    const float *kb = kv_k(kv, c->layer, 0) + (size_t)au->kh * (size_t)hd;
    const float *vb = kv_v(kv, c->layer, 0) + (size_t)au->kh * (size_t)hd;
    float *sc = c->scores + (size_t)ith * (size_t)c->score_len;
    quant_attn_multi(nq, q, np, kb, vb, (size_t)kvd, hd, scale, sc, (size_t)np_max, o);
    if (c->att_slot >= 0) /* each head is whole Q8_0 blocks (head_dim % 32 == 0) */
        for (int t = au->t0, j = 0; t < au->t0 + au->nt; t++)
            for (int h = au->h0; h < au->h0 + au->nh; h++, j++)
                quant_act_row(c->att_wtype, o[j],
                              c->act[c->att_slot] + (size_t)t * c->act_stride +
                                  (size_t)(h * hd / QK8_0) * sizeof(struct quant_q8_0a),
                              hd);
}

static void do_unit(struct engine_ctx *c, int ith, int u)
{
    switch (c->stage) {
    case ST_PREP: unit_prep(c, c->prep_t0 + u); break;
    case ST_MATMUL: unit_matmul(c, u); break;
    /* heads not in whole quantization blocks: QKV rows finished after the matmul, one
     * unit per job (q, k, v) */
    case ST_ROPE: qkv_finish_rows(c, u, 0, (int)c->mm[u].w->ne1); break;
    case ST_ATTN: unit_attn(c, ith, u); break;
    }
}

/* prepare activations of src for the matmuls ms[0..n) (one slot per distinct format) */
static void do_prep(struct engine_ctx *c, const float *src, int cols, const float *norm,
                    const struct engine_mat *const *ms, int n, int *slots)
{
    c->n_slots = 0;
    for (int i = 0; i < n; i++) {
        uint32_t at = quant_act_type(ms[i]->type);
        int s = -1;
        for (int j = 0; j < c->n_slots; j++)
            if (quant_act_type(c->slot_type[j]) == at)
                s = j;
        if (s < 0) {
            s = c->n_slots++;
            c->slot_type[s] = ms[i]->type;
        }
        slots[i] = s;
    }
    c->stage = ST_PREP;
    c->prep_src = src;
    c->prep_cols = cols;
    c->prep_norm = norm;
    pool_run(c, c->nt - c->prep_t0);
}

static void do_matmul(struct engine_ctx *c)
{
    c->stage = ST_MATMUL;
    pool_run(c, mm_plan(c));
}

/* ggml's rope cache: theta advanced by repeated float multiplication, divided by the
 * frequency factor of the pair */
static void rope_cache(const struct engine_weights *w, int pos, float *cs)
{
    const struct engine_hparams *hp = &w->hp;
    const float theta_scale = powf(hp->rope_base, -2.0f / (float)hp->n_rot);
    float theta = (float)pos;
    for (int i0 = 0; i0 < hp->n_rot; i0 += 2) {
        const float ff = w->rope_freqs ? w->rope_freqs[i0 / 2] : 1.0f;
        const float th = hp->rope_freq_scale * (theta / ff);
        cs[i0] = cosf(th);
        cs[i0 + 1] = sinf(th);
        theta *= theta_scale;
    }
}

/* forward -- c->nt tokens (ids tokens, caches c->tok_kv, positions c->tok_pos, already
 * validated); logits of rows [logit_t0, nt) into logits[(t - logit_t0) * n_vocab]. */
static void forward(struct engine_ctx *c, const int32_t *tokens, int logit_t0, float *logits)
{
    const struct engine_weights *w = c->w;
    const struct engine_hparams *hp = &w->hp;
    const int n_embd = hp->n_embd;
    const size_t n_q = (size_t)hp->n_head * (size_t)hp->head_dim;
    const size_t kvd = (size_t)hp->n_head_kv * (size_t)hp->head_dim;

    for (int t = 0; t < c->nt; t++) {
        quant_dequant_row(w->token_embd.type, w->token_embd.data + (size_t)tokens[t] * w->token_embd.row_bytes,
                          c->x + (size_t)t * (size_t)n_embd, n_embd);
        rope_cache(w, c->tok_pos[t], c->rope + (size_t)t * (size_t)hp->n_rot);
    }
    c->prep_t0 = 0;
    for (int l = 0; l < hp->n_layer; l++) {
        const struct engine_layer *L = &w->layers[l];
        c->layer = l;
        int slots[3];

        const int hd = hp->head_dim;
        const int fuse_heads = hd % QK8_0 == 0;

        const struct engine_mat *qkv[3] = {&L->wq, &L->wk, &L->wv};
        do_prep(c, c->x, n_embd, L->attn_norm, qkv, 3, slots);
        c->mm_mode = 0;
        c->n_mm = 3;
        c->mm[0] = (struct mm_job){&L->wq, slots[0], c->q, n_q};
        c->mm[1] = (struct mm_job){&L->wk, slots[1], c->k, kvd};
        c->mm[2] = (struct mm_job){&L->wv, slots[2], c->v, kvd};
        c->fuse_rope = fuse_heads;
        c->mm_align = fuse_heads ? hd : MM_UNIT_ROWS; /* hd % 32 == 0: also whole groups */
        do_matmul(c);
        c->fuse_rope = 0;
        c->mm_align = MM_UNIT_ROWS;
        if (!fuse_heads) {
            c->stage = ST_ROPE;
            pool_run(c, 3);
        }

        /* the attention output goes straight into slot 0 (the QKV input is spent) */
        c->att_slot = fuse_heads && quant_act_type(L->wo.type) == GGUF_T_Q8_0 ? 0 : -1;
        c->att_wtype = L->wo.type;
        c->stage = ST_ATTN;
        pool_run(c, attn_plan(c));
        if (c->att_slot >= 0) {
            slots[0] = c->att_slot;
            c->att_slot = -1;
        } else {
            const struct engine_mat *o[1] = {&L->wo};
            do_prep(c, c->att, (int)n_q, NULL, o, 1, slots);
        }
        c->mm_mode = 1;
        c->n_mm = 1;
        c->mm[0] = (struct mm_job){&L->wo, slots[0], c->tmp, (size_t)n_embd};
        do_matmul(c);

        const struct engine_mat *gu[2] = {&L->w_gate, &L->w_up};
        do_prep(c, c->x, n_embd, L->ffn_norm, gu, 2, slots);
        c->mm_mode = 2;
        c->n_mm = 2;
        c->mm[0] = (struct mm_job){&L->w_gate, slots[0], c->g, (size_t)hp->n_ff};
        c->mm[1] = (struct mm_job){&L->w_up, slots[1], c->u, (size_t)hp->n_ff};
        /* silu(g) * u quantized by the units into a slot the gate/up input does not use */
        c->gu_slot = quant_act_type(L->w_down.type) == GGUF_T_Q8_0 && hp->n_ff % QK8_0 == 0 &&
                             slots[0] != 2 && slots[1] != 2
                         ? 2
                         : -1;
        c->gu_wtype = L->w_down.type;
        do_matmul(c);
        if (c->gu_slot >= 0) {
            slots[0] = c->gu_slot;
            c->gu_slot = -1;
        } else {
            const struct engine_mat *dn[1] = {&L->w_down};
            do_prep(c, c->g, hp->n_ff, NULL, dn, 1, slots);
        }
        c->mm_mode = 1;
        c->n_mm = 1;
        c->mm[0] = (struct mm_job){&L->w_down, slots[0], c->tmp, (size_t)n_embd};
        do_matmul(c);
    }
    /* final norm and vocabulary projection, only for the rows that need logits */
    if (!logits || logit_t0 >= c->nt)
        return;
    c->prep_t0 = logit_t0;
    const struct engine_mat *out[1] = {&w->output};
    int slot;
    do_prep(c, c->x, n_embd, w->output_norm, out, 1, &slot);
    c->mm_mode = 0;
    c->n_mm = 1;
    c->mm[0] = (struct mm_job){&w->output, slot, logits, (size_t)hp->n_vocab};
    do_matmul(c);
    c->prep_t0 = 0;
}

static int check_tokens(struct engine_ctx *c, const int32_t *tokens, int n)
{
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= c->w->hp.n_vocab)
            return cfail(c, "token id %d out of range (vocabulary %d)", tokens[i],
                         c->w->hp.n_vocab);
    return 0;
}

int engine_forward_prefill(struct engine_ctx *c, struct engine_kv *kv, const int32_t *tokens,
                           int n, float *logits_last)
{
    c->err[0] = '\0';
    if (n < 1)
        return cfail(c, "empty prompt");
    if (n > kv->n_ctx - kv->len)
        return cfail(c, "context full: %d tokens do not fit (%d of %d used)", n, kv->len,
                     kv->n_ctx);
    if (check_tokens(c, tokens, n) < 0)
        return -1;
    for (int done = 0; done < n;) {
        int chunk = n - done < c->max_batch ? n - done : c->max_batch;
        c->nt = chunk;
        for (int t = 0; t < chunk; t++) {
            c->tok_kv[t] = kv;
            c->tok_pos[t] = kv->len + t;
        }
        const int last = done + chunk == n;
        /* logits only for the last token of the last chunk */
        forward(c, tokens + done, chunk - 1, last ? logits_last : NULL);
        kv->len += chunk;
        done += chunk;
    }
    return 0;
}

int engine_forward_decode(struct engine_ctx *c, struct engine_kv **kvs, const int32_t *tokens,
                          int n_seq, float *logits)
{
    c->err[0] = '\0';
    if (n_seq < 1 || n_seq > c->max_batch)
        return cfail(c, "decode batch of %d sequences (1..%d)", n_seq, c->max_batch);
    if (check_tokens(c, tokens, n_seq) < 0)
        return -1;
    for (int i = 0; i < n_seq; i++) {
        if (kvs[i]->len >= kvs[i]->n_ctx)
            return cfail(c, "context full (%d tokens)", kvs[i]->n_ctx);
        for (int j = 0; j < i; j++)
            if (kvs[j] == kvs[i])
                return cfail(c, "the same sequence twice in one decode batch");
    }
    c->nt = n_seq;
    for (int i = 0; i < n_seq; i++) {
        c->tok_kv[i] = kvs[i];
        c->tok_pos[i] = kvs[i]->len;
    }
    forward(c, tokens, 0, logits);
    for (int i = 0; i < n_seq; i++)
        kvs[i]->len++;
    return 0;
}
