/* unicode.h -- the few Unicode facts the tokenizers need: UTF-8 decoding as llama.cpp does
 * it, general-category classes for the pre-tokenizer regexes, GPT-2's byte<->char map.
 * Internal to engine/. All functions are thread-safe. */
#ifndef AIRLOCK_ENGINE_UNICODE_H
#define AIRLOCK_ENGINE_UNICODE_H

#include <stddef.h>
#include <stdint.h>

enum {
    UNICODE_LETTER = 1,     /* \p{L} */
    UNICODE_NUMBER = 2,     /* \p{N} */
    UNICODE_PUNCT = 4,      /* \p{P} */
    UNICODE_WHITESPACE = 8, /* \s as llama.cpp defines it */
};

extern const uint32_t unicode_letter_ranges[][2];
extern const size_t unicode_letter_ranges_n;
extern const uint32_t unicode_number_ranges[][2];
extern const size_t unicode_number_ranges_n;
extern const uint32_t unicode_punct_ranges[][2];
extern const size_t unicode_punct_ranges_n;

/* unicode_flags -- UNICODE_* bits of code point cp (0 for none) */
unsigned unicode_flags(uint32_t cp);

/* unicode_decode -- the code point at s[*i] (n bytes total); advances *i. Invalid or
 * truncated sequences give U+FFFD and advance one byte (llama.cpp's
 * unicode_cpts_from_utf8). */
uint32_t unicode_decode(const char *s, size_t n, size_t *i);
/* unicode_encode -- UTF-8 of cp into out[4]; returns its length (1..4) */
size_t unicode_encode(uint32_t cp, char *out);
/* unicode_seq_len -- llama.cpp's unicode_len_utf8: length implied by a lead byte */
size_t unicode_seq_len(unsigned char lead);

/* GPT-2 byte-level BPE: each byte is shown as one printable code point */
uint32_t unicode_byte_to_cp(uint8_t b);
/* the byte a code point stands for, or -1 if it stands for none */
int unicode_cp_to_byte(uint32_t cp);

#endif
