/* tokenizer.h -- llama.cpp-compatible tokenizers built from GGUF metadata:
 * SentencePiece-style ("llama": scores, <0xNN> byte fallback, "▁" space prefix) and
 * byte-level BPE ("gpt2": merge ranks, pre-tokenizer per tokenizer.ggml.pre:
 * llama-bpe / qwen2 / smollm / gpt-2 / default). Special tokens (CONTROL,
 * USER_DEFINED) are matched before the model's tokenizer runs.
 *
 * Internal to engine/. A tokenizer is immutable after tokenizer_new_gguf and owns
 * copies of everything it needs (the GGUF may be closed); any number of threads may
 * use it at once. Errors: 0 or a negative ENGINE_E* code, one sentence in err. */
#ifndef AIRLOCK_ENGINE_TOKENIZER_H
#define AIRLOCK_ENGINE_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

struct gguf_file;
struct tokenizer;

/* token attributes (bit flags, as llama.cpp's llama_token_attr) */
enum {
    TOKENIZER_ATTR_UNKNOWN = 1 << 1,
    TOKENIZER_ATTR_UNUSED = 1 << 2,
    TOKENIZER_ATTR_NORMAL = 1 << 3,
    TOKENIZER_ATTR_CONTROL = 1 << 4,
    TOKENIZER_ATTR_USER_DEFINED = 1 << 5,
    TOKENIZER_ATTR_BYTE = 1 << 6,
};

enum tokenizer_kind { TOKENIZER_SPM = 1, TOKENIZER_BPE = 2 };

/* tokenizer_new_gguf -- build from tokenizer.ggml.* keys. Unsupported model/pre,
 * missing or inconsistent arrays: ENGINE_EINVAL with err saying which key. */
int tokenizer_new_gguf(const struct gguf_file *g, struct tokenizer **out, char *err,
                       size_t errlen) __attribute__((warn_unused_result));
void tokenizer_free(struct tokenizer *t);

int tokenizer_n_vocab(const struct tokenizer *t);
/* the longest token text in bytes (special tokens included; at least 1). No token covers
 * more bytes of its input than its text has (byte-level BPE writes each byte as one or two,
 * SentencePiece a space as three, a fallback byte as six), so a text of n bytes is at least
 * n / tokenizer_max_bytes tokens: a prompt can be known too long without tokenizing it. */
size_t tokenizer_max_bytes(const struct tokenizer *t);
enum tokenizer_kind tokenizer_kind(const struct tokenizer *t);
int tokenizer_bos(const struct tokenizer *t); /* -1 when none */
int tokenizer_eos(const struct tokenizer *t); /* -1 when none */
int tokenizer_add_bos(const struct tokenizer *t);
/* tokenizer_is_eog -- the token ends generation (EOS, EOT, <|im_end|>, <|eot_id|>, ...) */
int tokenizer_is_eog(const struct tokenizer *t, int id);
unsigned tokenizer_attr(const struct tokenizer *t, int id);
/* the token's text as stored in the vocabulary (NUL-terminated), NULL if out of range */
const char *tokenizer_text(const struct tokenizer *t, int id);

/* tokenizer_encode -- llama_tokenize(text, add_special, parse_special). *ids is
 * malloc'd (caller frees), *n its length. Returns 0 or ENGINE_ENOMEM / ENGINE_EINVAL. */
int tokenizer_encode(const struct tokenizer *t, const char *text, size_t len, int add_special,
                     int parse_special, int32_t **ids, size_t *n);

/* tokenizer_piece -- llama_token_to_piece(id, lstrip 0, special): the bytes of one
 * token as a stream prints them (CONTROL/UNKNOWN tokens are empty unless special).
 * Writes at most cap bytes; returns the full length (call again with more room when
 * it exceeds cap). Out-of-range ids give 0. */
size_t tokenizer_piece(const struct tokenizer *t, int id, int special, char *buf, size_t cap);

/* tokenizer_decode -- llama_detokenize(ids, remove_special, unparse_special),
 * including the leading-space and clean-up rules. *out is malloc'd and
 * NUL-terminated, *len its length. Returns 0 or ENGINE_ENOMEM. */
int tokenizer_decode(const struct tokenizer *t, const int32_t *ids, size_t n, int remove_special,
                     int unparse_special, char **out, size_t *len);

#endif
