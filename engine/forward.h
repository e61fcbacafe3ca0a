/* forward.h -- private to engine/: weights, per-sequence KV caches, per-worker contexts and the forward pass.
 *
 * Threading: engine_weights is immutable after load and may be shared by any number
 * of contexts and threads. An engine_ctx (scratch buffers + its own thread pool) and
 * an engine_kv are used by one thread at a time. Everything is allocated by the _new
 * functions; the forward pass allocates nothing.
 *
 * Numerics follow llama.cpp's CPU backend (activations quantized like ggml before each
 * matmul, F32 KV cache, F32 softmax), see quant.h.
 *
 * Memory: weights are read from the mapping, except that on AVX512-VNNI CPUs the Q8_0/Q4_0
 * matmul weights are repacked into one owned copy at load (AIRLOCK_NO_REPACK=1 disables it,
 * AIRLOCK_NO_VNNI=1 forces the AVX2 kernels). A KV cache holds
 * 2 * n_layer * n_ctx * n_head_kv * head_dim floats.
 *
 * Errors: 0 or -1; the _new/_load functions write one sentence into err, the forward
 * functions leave theirs in engine_ctx_error(ctx). */
#ifndef AIRLOCK_ENGINE_FORWARD_H
#define AIRLOCK_ENGINE_FORWARD_H

#include <stddef.h>
#include <stdint.h>

#include "engine/gguf.h"
#include "engine/model_int.h"

struct engine_kv;
struct engine_ctx;

/* engine_weights_load -- check architecture, hyper-parameters and every tensor's type
 * and shape, and build views into f's mapping. f is borrowed and must stay open until
 * engine_weights_free. Supported: arch llama / qwen2; weights F32, F16, BF16, Q8_0,
 * Q4_0, Q4_K, Q5_K, Q6_K. */
int engine_weights_load(const struct gguf_file *f, struct engine_weights **out, char *err,
                        size_t errlen) __attribute__((warn_unused_result));
void engine_weights_free(struct engine_weights *w);

/* engine_kv_new -- F32 KV cache for one sequence of up to n_ctx tokens
 * (1 <= n_ctx <= the model's context_length). Owned by the caller. */
int engine_kv_new(const struct engine_weights *w, int n_ctx, struct engine_kv **out, char *err,
                  size_t errlen) __attribute__((warn_unused_result));
void engine_kv_free(struct engine_kv *kv);
int engine_kv_len(const struct engine_kv *kv); /* tokens already in the cache */
int engine_kv_n_ctx(const struct engine_kv *kv);
void engine_kv_clear(struct engine_kv *kv);    /* forget all tokens (no freeing) */
/* engine_kv_truncate -- keep the first n tokens (n <= len), e.g. to reuse a shared prefix */
void engine_kv_truncate(struct engine_kv *kv, int n);

/* engine_ctx_new -- scratch for batches of up to max_batch tokens (prefill chunks and
 * decode batches) and a pool of n_threads - 1 worker threads (n_threads >= 1; the
 * calling thread is the n-th). Owned by the caller; w is borrowed. */
int engine_ctx_new(const struct engine_weights *w, int n_threads, int max_batch,
                   struct engine_ctx **out, char *err, size_t errlen)
    __attribute__((warn_unused_result));
void engine_ctx_free(struct engine_ctx *ctx);
/* the message of the last failed forward call */
const char *engine_ctx_error(const struct engine_ctx *ctx);

/* engine_forward_prefill -- append n >= 1 tokens to kv (processed max_batch at a time,
 * each chunk one pass over the weights) and write the logits after the last one into
 * logits_last[n_vocab] (may be NULL). -1 if kv lacks room for n more tokens or a token
 * id is out of range; kv is then unchanged. */
int engine_forward_prefill(struct engine_ctx *ctx, struct engine_kv *kv, const int32_t *tokens,
                           int n, float *logits_last) __attribute__((warn_unused_result));

/* engine_forward_decode -- one token for each of n_seq (1..max_batch) distinct sequences
 * in one pass over the weights: tokens[i] is appended to kvs[i], and logits[i * n_vocab ..]
 * receives its next-token logits. -1 (nothing changed) if a cache is full, a kv repeats,
 * or a token id is out of range. */
int engine_forward_decode(struct engine_ctx *ctx, struct engine_kv **kvs, const int32_t *tokens,
                          int n_seq, float *logits) __attribute__((warn_unused_result));

#endif
