/* sampler.h -- token sampling (greedy, temperature, top-k, top-p, min-p, seeded RNG)
 * and the output text stream (UTF-8 reassembly, stop sequences). Internal to engine/.
 *
 * One sampler and one stream per job; neither is thread-safe, neither allocates
 * after init. */
#ifndef AIRLOCK_ENGINE_SAMPLER_H
#define AIRLOCK_ENGINE_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

#include "engine/engine.h"

struct sampler_cand {
    float logit;
    int id;
};

struct sampler {
    int n_vocab;
    float temperature; /* <= 0: greedy */
    int top_k;         /* <= 0: off */
    float top_p;       /* >= 1: off */
    float min_p;       /* <= 0: off */
    uint64_t rng;      /* xorshift64* state, never 0 */
    /* scratch [n_vocab] */
    struct sampler_cand *cand;
    float *prob;
};

/* sampler_init -- copy the sampling fields of p (NULL: greedy). Returns 0 or
 * ENGINE_ENOMEM / ENGINE_EINVAL (n_vocab <= 0). */
int sampler_init(struct sampler *s, const struct engine_params *p, int n_vocab);
void sampler_deinit(struct sampler *s);
/* sampler_sample -- pick a token from logits[n_vocab] (not modified). The filters
 * run in llama.cpp's default order: top-k, top-p, min-p on the untempered
 * distribution, then temperature, then a draw from the RNG. */
int sampler_sample(struct sampler *s, const float *logits);
/* the RNG alone: uniform in [0, 1) */
double sampler_uniform(struct sampler *s);

/* Text stream: pieces of detokenized bytes go in, text comes out through emit,
 * never splitting a UTF-8 sequence (invalid bytes become U+FFFD) and never containing
 * a stop sequence or a prefix of one that might still complete. */
typedef void (*textstream_emit_fn)(void *ud, const char *text, size_t len);

struct textstream {
    const char *const *stop; /* borrowed */
    size_t n_stop;
    size_t max_stop; /* longest stop sequence */
    char *buf;       /* held-back bytes */
    size_t len, cap;
    int stopped; /* a stop sequence was seen: nothing more is emitted */
    textstream_emit_fn emit;
    void *ud;
};

/* textstream_init -- stop: n_stop NUL-terminated strings, borrowed until deinit
 * (empty ones are ignored). Returns 0 or ENGINE_ENOMEM. */
int textstream_init(struct textstream *t, const char *const *stop, size_t n_stop,
                    textstream_emit_fn emit, void *ud);
void textstream_deinit(struct textstream *t);
/* textstream_feed -- add bytes; returns 1 once a stop sequence has matched (the
 * text before it was emitted), 0 otherwise, ENGINE_ENOMEM on allocation failure. */
int textstream_feed(struct textstream *t, const char *p, size_t n);
/* textstream_finish -- the generation ended: emit what was held back (an
 * incomplete UTF-8 tail becomes U+FFFD). */
void textstream_finish(struct textstream *t);

/* utf8_incomplete_tail -- bytes at the end of p[0..n) that form an incomplete
 * but so far valid UTF-8 sequence (0..3). */
size_t utf8_incomplete_tail(const char *p, size_t n);

#endif
