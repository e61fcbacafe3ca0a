/* sampler.c -- seeded token sampling and the stop-sequence / UTF-8-safe output text stream. */
#include "engine/sampler.h"

#include "common/grow.h"
#include "common/utf8.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

int sampler_init(struct sampler *s, const struct engine_params *p, int n_vocab)
{
    memset(s, 0, sizeof(*s));
    if (n_vocab <= 0)
        return ENGINE_EINVAL;
    s->n_vocab = n_vocab;
    s->temperature = p ? p->temperature : 0.0f;
    s->top_k = p ? p->top_k : 0;
    s->top_p = p ? p->top_p : 1.0f;
    s->min_p = p ? p->min_p : 0.0f;
    if (!(s->top_p > 0.0f)) /* 0 or NaN from a zeroed struct means "not set" */
        s->top_p = 1.0f;
    s->rng = splitmix64(p ? p->seed : 0);
    if (!s->rng)
        s->rng = 0x2545f4914f6cdd1dull;
    s->cand = malloc(sizeof(*s->cand) * (size_t)n_vocab);
    s->prob = malloc(sizeof(float) * (size_t)n_vocab);
    if (!s->cand || !s->prob) {
        sampler_deinit(s);
        return ENGINE_ENOMEM;
    }
    return 0;
}

void sampler_deinit(struct sampler *s)
{
    free(s->cand);
    free(s->prob);
    s->cand = NULL;
    s->prob = NULL;
}

double sampler_uniform(struct sampler *s)
{
    uint64_t x = s->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    s->rng = x;
    return (double)((x * 0x2545f4914f6cdd1dull) >> 11) * (1.0 / 9007199254740992.0);
}

static int argmax(const float *l, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (l[i] > l[best])
            best = i;
    return best;
}

static int cmp_desc(const void *a, const void *b)
{
    const struct sampler_cand *x = a, *y = b;
    if (x->logit != y->logit)
        return x->logit > y->logit ? -1 : 1;
    return x->id - y->id;
}

int sampler_sample(struct sampler *s, const float *logits)
{
    int n = s->n_vocab;
    if (!(s->temperature > 0.0f) || s->top_k == 1)
        return argmax(logits, n);
    float mx = logits[argmax(logits, n)];
    /* Candidates whose probability is below e^-30 of the best even at this
     * temperature cannot change any draw measurably; dropping them keeps the sort
     * small for 150k-token vocabularies. */
    float cut = mx - 30.0f * (s->temperature > 1.0f ? s->temperature : 1.0f);
    int nc = 0;
    for (int i = 0; i < n; i++) {
        if (logits[i] >= cut) {
            s->cand[nc].logit = logits[i];
            s->cand[nc].id = i;
            nc++;
        }
    }
    qsort(s->cand, (size_t)nc, sizeof(*s->cand), cmp_desc);
    if (s->top_k > 0 && s->top_k < nc)
        nc = s->top_k;
    /* top-p and min-p on the untempered softmax, as llama.cpp's default chain */
    if (s->top_p < 1.0f || s->min_p > 0.0f) {
        double sum = 0;
        for (int i = 0; i < nc; i++) {
            s->prob[i] = expf(s->cand[i].logit - mx);
            sum += s->prob[i];
        }
        if (s->top_p < 1.0f) {
            double cum = 0;
            for (int i = 0; i < nc; i++) {
                cum += s->prob[i] / sum;
                if (cum >= s->top_p) {
                    nc = i + 1;
                    break;
                }
            }
        }
        if (s->min_p > 0.0f) {
            float thr = s->min_p * s->prob[0];
            int k = 1;
            while (k < nc && s->prob[k] >= thr)
                k++;
            nc = k;
        }
    }
    double sum = 0;
    for (int i = 0; i < nc; i++) {
        s->prob[i] = expf((s->cand[i].logit - mx) / s->temperature);
        sum += s->prob[i];
    }
    double r = sampler_uniform(s) * sum, cum = 0;
    for (int i = 0; i < nc; i++) {
        cum += s->prob[i];
        if (r < cum)
            return s->cand[i].id;
    }
    return s->cand[nc - 1].id;
}

/* ---- text stream ---- */

size_t utf8_incomplete_tail(const char *p, size_t n)
{
    /* look back over at most 3 bytes for a lead byte whose sequence runs past n */
    for (size_t k = 1; k <= 3 && k <= n; k++) {
        unsigned char c = (unsigned char)p[n - k];
        if ((c & 0xC0) == 0x80)
            continue;
        size_t need = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xC2 && c <= 0xDF ? 2 : 1;
        return need > k ? k : 0;
    }
    return 0;
}

/* emit p[0..n), replacing invalid UTF-8 by U+FFFD */
static void emit_clean(struct textstream *t, const char *p, size_t n)
{
    size_t start = 0, i = 0;
    while (i < n) {
        size_t k = utf8_seq_len((const unsigned char *)p + i, n - i);
        if (k) {
            i += k;
            continue;
        }
        if (i > start)
            t->emit(t->ud, p + start, i - start);
        t->emit(t->ud, "\xEF\xBF\xBD", 3);
        i++;
        start = i;
    }
    if (i > start)
        t->emit(t->ud, p + start, i - start);
}

int textstream_init(struct textstream *t, const char *const *stop, size_t n_stop,
                    textstream_emit_fn emit, void *ud)
{
    memset(t, 0, sizeof(*t));
    t->stop = stop;
    t->n_stop = stop ? n_stop : 0;
    t->emit = emit;
    t->ud = ud;
    for (size_t i = 0; i < t->n_stop; i++) {
        size_t l = t->stop[i] ? strlen(t->stop[i]) : 0;
        if (l > t->max_stop)
            t->max_stop = l;
    }
    t->cap = t->max_stop + 64;
    t->buf = malloc(t->cap);
    return t->buf ? 0 : ENGINE_ENOMEM;
}

void textstream_deinit(struct textstream *t)
{
    free(t->buf);
    t->buf = NULL;
}

int textstream_feed(struct textstream *t, const char *p, size_t n)
{
    if (t->stopped)
        return 1;
    char *b = grow_by(t->buf, &t->cap, t->len, n, 1, 64);
    if (!b)
        return ENGINE_ENOMEM;
    t->buf = b;
    memcpy(t->buf + t->len, p, n);
    t->len += n;

    /* earliest complete stop sequence wins */
    size_t best = (size_t)-1;
    for (size_t i = 0; i < t->n_stop; i++) {
        size_t l = t->stop[i] ? strlen(t->stop[i]) : 0;
        if (!l)
            continue;
        const char *hit = memmem(t->buf, t->len, t->stop[i], l);
        if (hit && (size_t)(hit - t->buf) < best)
            best = (size_t)(hit - t->buf);
    }
    if (best != (size_t)-1) {
        emit_clean(t, t->buf, best);
        t->len = 0;
        t->stopped = 1;
        return 1;
    }
    /* hold back the longest tail that is a prefix of some stop sequence */
    size_t hold = 0;
    for (size_t i = 0; i < t->n_stop; i++) {
        size_t l = t->stop[i] ? strlen(t->stop[i]) : 0;
        for (size_t k = l > t->len ? t->len : l - (l ? 1 : 0); k > hold; k--) {
            if (memcmp(t->buf + t->len - k, t->stop[i], k) == 0) {
                hold = k;
                break;
            }
        }
    }
    size_t emit_n = t->len - hold;
    emit_n -= utf8_incomplete_tail(t->buf, emit_n);
    if (emit_n) {
        emit_clean(t, t->buf, emit_n);
        memmove(t->buf, t->buf + emit_n, t->len - emit_n);
        t->len -= emit_n;
    }
    return 0;
}

void textstream_finish(struct textstream *t)
{
    if (!t->stopped && t->len)
        emit_clean(t, t->buf, t->len);
    t->len = 0;
}
