/* fuzz_tokenizer.c -- libFuzzer driver for the tokenizer (engine/tokenizer.c): any text must
 * encode to in-range ids and decode back cleanly, and any model metadata must build a
 * tokenizer or be refused cleanly.
 *
 * Input, one of two kinds:
 *   "GGUF..."  a model file: tokenizer_new_gguf on its metadata and, when that succeeds, a
 *              few fixed texts through encode and decode (a hostile or broken model file);
 *   B TEXT     anything else: byte B picks a built-in vocabulary (bits 0-2: SentencePiece
 *              with and without the space prefix, or byte-level BPE with each pre-tokenizer)
 *              and the flags (bit 3 add_special, 4 parse_special, 5 remove_special, 6
 *              unparse_special); TEXT (any bytes: the prompt a client sent) is encoded, the
 *              ids decoded, every id's piece read, and TEXT read as int32 ids (out-of-range
 *              ones included) decoded too.
 * The built-in vocabularies are GGUFs made in memory on first use: no model file. Seeds:
 * fuzz/corpus/tokenizer/: texts for each vocabulary, and the vocabularies' own GGUFs (see
 * FUZZ_TOKENIZER_SEEDS at the end). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "engine/gguf.h"
#include "engine/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok)
{
    if (!ok)
        abort();
}

/* ---- a GGUF holding only tokenizer metadata ---- */

struct gbuf {
    uint8_t *p;
    size_t n, cap;
};

static void put(struct gbuf *b, const void *d, size_t n)
{
    if (b->n + n > b->cap) {
        size_t c = b->cap ? b->cap * 2 : 4096;
        while (c < b->n + n)
            c *= 2;
        b->p = realloc(b->p, c);
        check(b->p != NULL);
        b->cap = c;
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}

static void put_u32(struct gbuf *b, uint32_t v)
{
    put(b, &v, 4);
}

static void put_u64(struct gbuf *b, uint64_t v)
{
    put(b, &v, 8);
}

static void put_str(struct gbuf *b, const char *s)
{
    put_u64(b, strlen(s));
    put(b, s, strlen(s));
}

static void kv_str(struct gbuf *b, const char *key, const char *v)
{
    put_str(b, key);
    put_u32(b, GGUF_TYPE_STRING);
    put_str(b, v);
}

static void kv_u32(struct gbuf *b, const char *key, uint32_t v)
{
    put_str(b, key);
    put_u32(b, GGUF_TYPE_UINT32);
    put_u32(b, v);
}

static void kv_bool(struct gbuf *b, const char *key, int v)
{
    uint8_t x = (uint8_t)(v != 0);
    put_str(b, key);
    put_u32(b, GGUF_TYPE_BOOL);
    put(b, &x, 1);
}

static void kv_strs(struct gbuf *b, const char *key, char **v, size_t n)
{
    put_str(b, key);
    put_u32(b, GGUF_TYPE_ARRAY);
    put_u32(b, GGUF_TYPE_STRING);
    put_u64(b, n);
    for (size_t i = 0; i < n; i++)
        put_str(b, v[i]);
}

static void kv_f32s(struct gbuf *b, const char *key, const float *v, size_t n)
{
    put_str(b, key);
    put_u32(b, GGUF_TYPE_ARRAY);
    put_u32(b, GGUF_TYPE_FLOAT32);
    put_u64(b, n);
    put(b, v, n * 4);
}

static void kv_i32s(struct gbuf *b, const char *key, const int32_t *v, size_t n)
{
    put_str(b, key);
    put_u32(b, GGUF_TYPE_ARRAY);
    put_u32(b, GGUF_TYPE_INT32);
    put_u64(b, n);
    put(b, v, n * 4);
}

/* ---- the built-in vocabularies ---- */

#define MAX_TOK 400
enum { T_NORMAL = 1, T_UNKNOWN = 2, T_CONTROL = 3, T_USER = 4, T_BYTE = 6 };

struct vocab {
    char *tok[MAX_TOK];
    float score[MAX_TOK];
    int32_t type[MAX_TOK];
    size_t n;
};

static int add_tok(struct vocab *v, const char *s, int type)
{
    check(v->n < MAX_TOK);
    v->tok[v->n] = strdup(s);
    check(v->tok[v->n] != NULL);
    v->score[v->n] = -(float)v->n;
    v->type[v->n] = type;
    return (int)v->n++;
}

/* add_split -- the sep-separated words of list: as tokens of `type` to v, or (v NULL)
 * strdup'd into out[*n_out] (at most 64) */
static void add_split(struct vocab *v, const char *list, char sep, int type, char **out,
                      size_t *n_out)
{
    char w[64];
    while (*list) {
        const char *e = strchr(list, sep);
        size_t n = e ? (size_t)(e - list) : strlen(list);
        check(n < sizeof(w));
        memcpy(w, list, n);
        w[n] = 0;
        if (v) {
            add_tok(v, w, type);
        } else {
            check(*n_out < 64);
            out[*n_out] = strdup(w);
            check(out[*n_out] != NULL);
            (*n_out)++;
        }
        list += n + (e != NULL);
    }
}

static void vocab_free(struct vocab *v)
{
    for (size_t i = 0; i < v->n; i++)
        free(v->tok[i]);
    v->n = 0;
}

/* the byte-level BPE's stand-ins for space and newline (GPT-2's bytes_to_unicode) and
 * SentencePiece's space marker */
#define G "\xc4\xa0"      /* U+0120 */
#define NL "\xc4\x8a"     /* U+010A */
#define SP "\xe2\x96\x81" /* U+2581 */

static const char *const SPECIALS[] = {"<|im_start|>", "<|im_end|>", "<|eot_id|>",
                                       "<|start_header_id|>", "<|end_header_id|>"};
static const char *const PRE[] = {"default", "llama-bpe", "qwen2", "smollm", "gpt-2", "megrez"};

/* SentencePiece ("llama"): <unk> <s> </s>, the 256 byte tokens, pieces with the "▁" space
 * marker, specials (<tool> user-defined, the rest control). */
static void spm_gguf(struct gbuf *b, int space_prefix)
{
    static const char pieces[] =
        SP " " SP "t he " SP "the " SP "a " SP "hello " SP "world ll o h e "
           "l w r d t a " SP SP " \xc3\xa9 \xe6\x97\xa5 \xe6\x9c\xac " SP
           "\xe6\x97\xa5\xe6\x9c\xac . , ! " SP "( ) 1 12";
    struct vocab v = {0};
    char s[16];
    add_tok(&v, "<unk>", T_UNKNOWN);
    add_tok(&v, "<s>", T_CONTROL);
    add_tok(&v, "</s>", T_CONTROL);
    for (int i = 0; i < 256; i++) {
        snprintf(s, sizeof(s), "<0x%02X>", i);
        add_tok(&v, s, T_BYTE);
    }
    add_split(&v, pieces, ' ', T_NORMAL, NULL, NULL);
    for (size_t i = 0; i < sizeof(SPECIALS) / sizeof(SPECIALS[0]); i++)
        add_tok(&v, SPECIALS[i], T_CONTROL);
    add_tok(&v, "<tool>", T_USER);

    b->n = 0;
    put(b, "GGUF", 4);
    put_u32(b, 3);
    put_u64(b, 0); /* tensors */
    put_u64(b, 8); /* metadata keys */
    kv_str(b, "general.architecture", "llama");
    kv_str(b, "tokenizer.ggml.model", "llama");
    kv_strs(b, "tokenizer.ggml.tokens", v.tok, v.n);
    kv_f32s(b, "tokenizer.ggml.scores", v.score, v.n);
    kv_i32s(b, "tokenizer.ggml.token_type", v.type, v.n);
    kv_u32(b, "tokenizer.ggml.bos_token_id", 1);
    kv_u32(b, "tokenizer.ggml.eos_token_id", 2);
    kv_bool(b, "tokenizer.ggml.add_space_prefix", space_prefix);
    vocab_free(&v);
}

/* GPT-2's bytes_to_unicode: printable bytes stand for themselves, the others for U+0100.. */
static void byte_text(int byte, char *out)
{
    static int map[256], done;
    if (!done) {
        int n = 0;
        for (int c = 0; c < 256; c++)
            map[c] = (c >= 33 && c <= 126) || (c >= 161 && c <= 172) || (c >= 174) ? c : 256 + n++;
        done = 1;
    }
    int cp = map[byte];
    if (cp < 0x80) {
        out[0] = (char)cp;
        out[1] = 0;
    } else {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        out[2] = 0;
    }
}

/* Byte-level BPE ("gpt2"): the 256 byte tokens, merges building a few words ("Ġ" is the
 * space), specials as control tokens and <tool> user-defined. */
static void bpe_gguf(struct gbuf *b, const char *pre)
{
    /* each merge, then the token it makes */
    static const char merges[] =
        G " t|h e|" G "t he|" G " a|l l|he ll|hell o|" G " h|" G "h ello|e ll|ell o|i n|" G
          " w|o r|" G "w or|l d|" G "wor ld|1 2|" G " " G "|" NL " " NL;
    static const char merged[] = G "t he " G "the " G "a ll hell hello " G "h " G "hello ell ello "
                                   "in " G "w or " G "wor ld " G "world 12 " G G " " NL NL;
    struct vocab v = {0};
    char s[8], *m[64];
    size_t n_m = 0;
    int bos, eos;
    for (int i = 0; i < 256; i++) {
        byte_text(i, s);
        add_tok(&v, s, T_NORMAL);
    }
    add_split(&v, merged, ' ', T_NORMAL, NULL, NULL);
    bos = add_tok(&v, "<|begin_of_text|>", T_CONTROL);
    eos = add_tok(&v, "<|endoftext|>", T_CONTROL);
    for (size_t i = 0; i < sizeof(SPECIALS) / sizeof(SPECIALS[0]); i++)
        add_tok(&v, SPECIALS[i], T_CONTROL);
    add_tok(&v, "<tool>", T_USER);

    b->n = 0;
    put(b, "GGUF", 4);
    put_u32(b, 3);
    put_u64(b, 0);
    put_u64(b, 8);
    kv_str(b, "general.architecture", "llama");
    kv_str(b, "tokenizer.ggml.model", "gpt2");
    kv_str(b, "tokenizer.ggml.pre", pre);
    kv_strs(b, "tokenizer.ggml.tokens", v.tok, v.n);
    kv_i32s(b, "tokenizer.ggml.token_type", v.type, v.n);
    add_split(NULL, merges, '|', 0, m, &n_m);
    kv_strs(b, "tokenizer.ggml.merges", m, n_m);
    kv_u32(b, "tokenizer.ggml.bos_token_id", (uint32_t)bos);
    kv_u32(b, "tokenizer.ggml.eos_token_id", (uint32_t)eos);
    vocab_free(&v);
    for (size_t i = 0; i < n_m; i++)
        free(m[i]);
}

#define N_VOCABS 8 /* SPM with and without the space prefix, BPE with each PRE */

static void vocab_gguf(int which, struct gbuf *b)
{
    if (which < 2)
        spm_gguf(b, which == 0);
    else
        bpe_gguf(b, PRE[which - 2]);
}

static struct tokenizer *vocabs[N_VOCABS];

static struct tokenizer *vocab_get(int which)
{
    if (!vocabs[which]) {
        struct gbuf b = {0};
        struct gguf_file *g = NULL;
        char err[256];
        vocab_gguf(which, &b);
        check(gguf_open_mem(b.p, b.n, &g, err, sizeof(err)) == 0);
        check(tokenizer_new_gguf(g, &vocabs[which], err, sizeof(err)) == 0);
        gguf_close(g); /* the tokenizer keeps copies */
        free(b.p);
    }
    return vocabs[which];
}

/* ---- the checks ---- */

static void decode_checked(const struct tokenizer *t, const int32_t *ids, size_t n, int remove,
                           int unparse)
{
    char *out = NULL;
    size_t len = 0;
    if (tokenizer_decode(t, ids, n, remove, unparse, &out, &len) == 0) {
        check(out != NULL && out[len] == 0);
        free(out);
    } else {
        check(out == NULL);
    }
}

static void run_text(const struct tokenizer *t, const uint8_t *text, size_t len, unsigned flags)
{
    int32_t *ids = NULL;
    size_t n = 0, i;
    int nv = tokenizer_n_vocab(t);
    int rc = tokenizer_encode(t, (const char *)text, len, flags & 8, (flags >> 4) & 1, &ids, &n);

    if (rc != 0) {
        check(rc == ENGINE_ENOMEM || rc == ENGINE_EINVAL);
        free(ids);
        return;
    }
    for (i = 0; i < n; i++) {
        char small[4];
        size_t pl, pl2;
        char *big;

        check(ids[i] >= 0 && ids[i] < nv);
        /* a piece longer than the buffer reports its full length; asked again with room
         * for it, it is exactly that long */
        pl = tokenizer_piece(t, ids[i], (flags >> 6) & 1, small, sizeof(small));
        big = malloc(pl + 1);
        check(big != NULL);
        pl2 = tokenizer_piece(t, ids[i], (flags >> 6) & 1, big, pl + 1);
        check(pl2 == pl);
        free(big);
    }
    decode_checked(t, ids, n, (flags >> 5) & 1, (flags >> 6) & 1);
    free(ids);
}

/* the text itself as token ids: what a sampler could hand the decoder, in range or not */
static void run_ids(const struct tokenizer *t, const uint8_t *text, size_t len, unsigned flags)
{
    size_t n = len / 4;
    int32_t *ids = malloc((n ? n : 1) * sizeof(*ids));
    check(ids != NULL);
    memcpy(ids, text, n * 4);
    decode_checked(t, ids, n, (flags >> 5) & 1, (flags >> 6) & 1);
    free(ids);
}

static void run_gguf(const uint8_t *data, size_t size)
{
    static const char *const texts[] = {
        "Hello world",
        " <|im_start|>user\n12 caf\xc3\xa9\n\n",
        "\xff\xfe broken \xe6\x97",
    };
    struct gguf_file *g = NULL;
    struct tokenizer *t = NULL;
    char err[256];

    if (gguf_open_mem(data, size, &g, err, sizeof(err)) != 0)
        return;
    err[0] = 0;
    if (tokenizer_new_gguf(g, &t, err, sizeof(err)) != 0) {
        check(t == NULL);
        gguf_close(g);
        return;
    }
    gguf_close(g);
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        run_text(t, (const uint8_t *)texts[i], strlen(texts[i]), 0);
        run_text(t, (const uint8_t *)texts[i], strlen(texts[i]), 8 | 16 | 32 | 64);
    }
    tokenizer_free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size >= 4 && memcmp(data, "GGUF", 4) == 0) {
        run_gguf(data, size);
        return 0;
    }
    if (size == 0)
        return 0;
    const struct tokenizer *t = vocab_get(data[0] % N_VOCABS);
    run_text(t, data + 1, size - 1, data[0]);
    run_ids(t, data + 1, size - 1, data[0]);
    return 0;
}

#ifdef FUZZ_TOKENIZER_SEEDS
/* Built with -DFUZZ_TOKENIZER_SEEDS and without libFuzzer, this writes the built-in
 * vocabularies into DIR as GGUF seeds; fuzz/corpus/tokenizer/vocab-*.gguf were made with
 *   cc -std=c11 -D_GNU_SOURCE -I. -DFUZZ_TOKENIZER_SEEDS -o seeds fuzz/fuzz_tokenizer.c \
 *      build/libairlock.a $(pkg-config --libs ...) -lhttp_parser -pthread -lm
 *   ./seeds fuzz/corpus/tokenizer */
int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    for (int i = 0; i < N_VOCABS; i++) {
        struct gbuf b = {0};
        char path[4096];
        FILE *f;
        vocab_gguf(i, &b);
        snprintf(path, sizeof(path), "%s/vocab-%s.gguf", argv[1],
                 i == 0   ? "spm"
                 : i == 1 ? "spm-noprefix"
                          : PRE[i - 2]);
        f = fopen(path, "wb");
        if (!f || fwrite(b.p, 1, b.n, f) != b.n || fclose(f) != 0) {
            fprintf(stderr, "%s: cannot write\n", path);
            return 1;
        }
        free(b.p);
    }
    return 0;
}
#endif
