/* tokenizer.c -- SentencePiece and byte-level BPE tokenizers reproducing llama.cpp's
 * llama_tokenize / llama_token_to_piece / llama_detokenize on GGUF vocabularies. */
#include "engine/tokenizer.h"
#include "engine/engine_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/grow.h"
#include "engine/engine.h"
#include "engine/gguf.h"
#include "engine/unicode.h"

#define MAX_VOCAB (1 << 22)
#define MAX_MERGES (1 << 23)

enum pre_kind { PRE_DEFAULT, PRE_GPT2, PRE_LLAMA3, PRE_QWEN2, PRE_SMOLLM };

struct tokenizer {
    enum tokenizer_kind kind;
    enum pre_kind pre;
    int n_vocab;
    char *blob;     /* every token text, NUL-terminated, back to back */
    uint32_t *off;  /* [n_vocab] into blob */
    uint32_t *len;  /* [n_vocab] */
    float *score;   /* [n_vocab] */
    uint16_t *attr; /* [n_vocab] TOKENIZER_ATTR_* */
    uint8_t *eog;   /* [n_vocab] */
    int32_t *tok_tab; /* open-addressing hash text -> id, -1 empty */
    size_t tok_mask;
    char *mblob; /* merges "left right", NUL-terminated, back to back */
    uint32_t *moff, *mlen;
    int n_merges;
    int32_t *merge_tab; /* hash merge text -> rank */
    size_t merge_mask;
    int32_t *special; /* CONTROL / USER_DEFINED / UNKNOWN ids, longest text first */
    int n_special;
    int32_t byte_tok[256]; /* SPM byte fallback */
    int bos, eos, unk, eot, eom;
    int add_bos, add_eos, add_space_prefix, ignore_merges, clean_spaces;
};

/* ---- small growable vectors ---- */

struct ivec {
    int32_t *p;
    size_t n, cap;
    int oom;
};

static void iv_push(struct ivec *v, int32_t x)
{
    if (v->oom)
        return;
    int32_t *p = grow_room(v->p, &v->cap, v->n + 1, sizeof(*p), 64);
    if (!p) {
        v->oom = 1;
        return;
    }
    v->p = p;
    v->p[v->n++] = x;
}

struct cbuf {
    char *p;
    size_t n, cap;
    int oom;
};

static void cb_add(struct cbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    char *p = grow_by(b->p, &b->cap, b->n + 1, n, 1, 64); /* + 1: the NUL */
    if (!p) {
        b->oom = 1;
        return;
    }
    b->p = p;
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

/* ---- hashing ---- */

static uint64_t fnv_step(uint64_t h, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

#define FNV_INIT 0xcbf29ce484222325ull

static size_t table_size(size_t n)
{
    size_t sz = 16;
    while (sz < n * 2)
        sz *= 2;
    return sz;
}

static int lookup(const struct tokenizer *t, const char *s, size_t n)
{
    size_t i = fnv_step(FNV_INIT, s, n) & t->tok_mask;
    for (;;) {
        int32_t id = t->tok_tab[i];
        if (id < 0)
            return -1;
        if (t->len[id] == n && memcmp(t->blob + t->off[id], s, n) == 0)
            return id;
        i = (i + 1) & t->tok_mask;
    }
}

static int merge_rank(const struct tokenizer *t, const char *a, size_t an, const char *b,
                      size_t bn)
{
    uint64_t h = fnv_step(fnv_step(fnv_step(FNV_INIT, a, an), " ", 1), b, bn);
    size_t i = h & t->merge_mask;
    for (;;) {
        int32_t r = t->merge_tab[i];
        if (r < 0)
            return -1;
        const char *m = t->mblob + t->moff[r];
        if (t->mlen[r] == an + 1 + bn && memcmp(m, a, an) == 0 && m[an] == ' ' &&
            memcmp(m + an + 1, b, bn) == 0)
            return r;
        i = (i + 1) & t->merge_mask;
    }
}

/* ---- loading ---- */

static const char *const eog_names[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>",
                                        "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>",
                                        "<|end_of_text|>", "<end_of_utterance>", "<|fim_pad|>",
                                        "<fim-pad>", "<fim_pad>", "<PAD>", "<|fim_repo|>",
                                        "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>",
                                        "<|file_sep|>"};
/* FIM markers llama.cpp also forces to CONTROL (but that do not end generation) */
static const char *const fim_names[] = {"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<PRE>",
                                        "\xe2\x96\x81<PRE>", "<|fim_suffix|>", "<fim-suffix>",
                                        "<fim_suffix>", "<SUF>", "\xe2\x96\x81<SUF>",
                                        "<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<MID>",
                                        "\xe2\x96\x81<MID>"};

static int cmp_special(const void *a, const void *b, void *ctx)
{
    const struct tokenizer *t = ctx;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    if (t->len[x] != t->len[y])
        return t->len[x] > t->len[y] ? -1 : 1;
    return x < y ? -1 : x > y;
}

static int get_id(const struct gguf_file *g, const char *key, int def, int n_vocab)
{
    uint32_t v;
    if (def >= n_vocab)
        def = -1;
    if (gguf_find_key(g, key) < 0)
        return def;
    if (gguf_get_u32(g, key, 0, &v) != 0 || v >= (uint32_t)n_vocab)
        return def;
    return (int)v;
}

int tokenizer_new_gguf(const struct gguf_file *g, struct tokenizer **out, char *err,
                       size_t errlen)
{
    struct tokenizer *t = calloc(1, sizeof(*t));
    *out = NULL;
    if (!t)
        goto oom;
    const char *model = gguf_get_str(g, "tokenizer.ggml.model", NULL);
    const char *pre = gguf_get_str(g, "tokenizer.ggml.pre", NULL);
    if (!model) {
        engine_set_err(err, errlen, "the file has no tokenizer (tokenizer.ggml.model missing)");
        goto bad;
    }
    if (strcmp(model, "llama") == 0) {
        t->kind = TOKENIZER_SPM;
        t->add_space_prefix = 1;
        t->add_bos = 1;
    } else if (strcmp(model, "gpt2") == 0) {
        t->kind = TOKENIZER_BPE;
        t->clean_spaces = 1;
        if (!pre || strcmp(pre, "default") == 0) {
            t->pre = PRE_DEFAULT;
        } else if (!strcmp(pre, "llama3") || !strcmp(pre, "llama-v3") ||
                   !strcmp(pre, "llama-bpe") || !strcmp(pre, "falcon3")) {
            t->pre = PRE_LLAMA3;
            t->ignore_merges = 1;
            t->add_bos = 1;
        } else if (!strcmp(pre, "qwen2") || !strcmp(pre, "deepseek-r1-qwen") ||
                   !strcmp(pre, "megrez")) {
            t->pre = PRE_QWEN2;
            t->clean_spaces = strcmp(pre, "megrez") == 0;
        } else if (!strcmp(pre, "smollm")) {
            t->pre = PRE_SMOLLM;
            t->clean_spaces = 0;
        } else if (!strcmp(pre, "starcoder") || !strcmp(pre, "refact") ||
                   !strcmp(pre, "codeshell")) {
            t->pre = PRE_SMOLLM; /* same two expressions as smollm */
        } else if (!strcmp(pre, "gpt-2") || !strcmp(pre, "phi-2") || !strcmp(pre, "mpt") ||
                   !strcmp(pre, "olmo")) {
            t->pre = PRE_GPT2;
        } else {
            engine_set_err(err, errlen, "unsupported pre-tokenizer '%.60s' (tokenizer.ggml.pre)", pre);
            goto bad;
        }
    } else {
        engine_set_err(err, errlen, "unsupported tokenizer '%.60s' (tokenizer.ggml.model; supported: "
                             "llama, gpt2)", model);
        goto bad;
    }
    {
        int b;
        if (gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", t->add_space_prefix, &b) == 0)
            t->add_space_prefix = b;
    }

    int ti = gguf_find_key(g, "tokenizer.ggml.tokens");
    if (ti < 0 || gguf_get_arr_type(g, ti) != GGUF_TYPE_STRING) {
        engine_set_err(err, errlen, "tokenizer.ggml.tokens is missing or not a string array");
        goto bad;
    }
    uint64_t nv = gguf_get_arr_n(g, ti);
    if (nv == 0 || nv > MAX_VOCAB) {
        engine_set_err(err, errlen, "tokenizer.ggml.tokens has %llu entries (1..%d allowed)",
                (unsigned long long)nv, MAX_VOCAB);
        goto bad;
    }
    t->n_vocab = (int)nv;
    int si = gguf_find_key(g, "tokenizer.ggml.scores");
    if (si >= 0 && ((gguf_get_arr_type(g, si) != GGUF_TYPE_FLOAT32 &&
                     gguf_get_arr_type(g, si) != GGUF_TYPE_INT32) ||
                    gguf_get_arr_n(g, si) < nv)) {
        engine_set_err(err, errlen, "tokenizer.ggml.scores is not a number array as long as the vocabulary");
        goto bad;
    }
    int yi = gguf_find_key(g, "tokenizer.ggml.token_type");
    if (yi >= 0 && (gguf_get_arr_type(g, yi) != GGUF_TYPE_INT32 || gguf_get_arr_n(g, yi) < nv)) {
        engine_set_err(err, errlen, "tokenizer.ggml.token_type is not an int32 array as long as the "
                             "vocabulary");
        goto bad;
    }

    /* texts */
    uint64_t total = 0;
    for (uint64_t i = 0; i < nv; i++) {
        size_t l = 0;
        if (!gguf_get_arr_str(g, ti, i, &l))
            goto oom;
        total += (l ? l : 32) + 1;
    }
    if (total > UINT32_MAX) {
        engine_set_err(err, errlen, "tokenizer.ggml.tokens is too large");
        goto bad;
    }
    t->blob = malloc(total);
    t->off = malloc(nv * sizeof(*t->off));
    t->len = malloc(nv * sizeof(*t->len));
    t->score = calloc(nv, sizeof(*t->score));
    t->attr = calloc(nv, sizeof(*t->attr));
    t->eog = calloc(nv, 1);
    size_t tsz = table_size(nv);
    t->tok_tab = malloc(tsz * sizeof(*t->tok_tab));
    if (!t->blob || !t->off || !t->len || !t->score || !t->attr || !t->eog || !t->tok_tab)
        goto oom;
    memset(t->tok_tab, 0xff, tsz * sizeof(*t->tok_tab));
    t->tok_mask = tsz - 1;
    uint32_t pos = 0;
    for (uint64_t i = 0; i < nv; i++) {
        size_t l = 0;
        const char *s = gguf_get_arr_str(g, ti, i, &l);
        t->off[i] = pos;
        if (l == 0) {
            int k = snprintf(t->blob + pos, 33, "[EMPTY_%llu]", (unsigned long long)i);
            l = (size_t)k;
        } else {
            memcpy(t->blob + pos, s, l);
        }
        t->blob[pos + l] = 0;
        t->len[i] = (uint32_t)l;
        pos += (uint32_t)l + 1;
        size_t h = fnv_step(FNV_INIT, t->blob + t->off[i], l) & t->tok_mask;
        while (t->tok_tab[h] >= 0) {
            int32_t o = t->tok_tab[h];
            if (t->len[o] == l && memcmp(t->blob + t->off[o], t->blob + t->off[i], l) == 0) {
                engine_set_err(err, errlen, "duplicate token in the vocabulary: ids %d and %llu", o,
                        (unsigned long long)i);
                goto bad;
            }
            h = (h + 1) & t->tok_mask;
        }
        t->tok_tab[h] = (int32_t)i;
        if (si >= 0)
            t->score[i] = gguf_get_arr_type(g, si) == GGUF_TYPE_FLOAT32
                              ? gguf_get_arr_f32(g, si, i)
                              : (float)gguf_get_arr_int(g, si, i);
        unsigned a = TOKENIZER_ATTR_NORMAL;
        if (yi >= 0) {
            switch (gguf_get_arr_int(g, yi, i)) {
            case 1: a = TOKENIZER_ATTR_NORMAL; break;
            case 2: a = TOKENIZER_ATTR_UNKNOWN; break;
            case 3: a = TOKENIZER_ATTR_CONTROL; break;
            case 4: a = TOKENIZER_ATTR_USER_DEFINED; break;
            case 5: a = TOKENIZER_ATTR_UNUSED; break;
            case 6: a = TOKENIZER_ATTR_BYTE; break;
            default: a = 0; break;
            }
        }
        t->attr[i] = (uint16_t)a;
    }

    /* merges */
    if (t->kind == TOKENIZER_BPE) {
        int mi = gguf_find_key(g, "tokenizer.ggml.merges");
        if (mi < 0 || gguf_get_arr_type(g, mi) != GGUF_TYPE_STRING) {
            engine_set_err(err, errlen, "tokenizer.ggml.merges is missing or not a string array");
            goto bad;
        }
        uint64_t nm = gguf_get_arr_n(g, mi);
        if (nm > MAX_MERGES) {
            engine_set_err(err, errlen, "tokenizer.ggml.merges has too many entries");
            goto bad;
        }
        uint64_t mt = 0;
        for (uint64_t i = 0; i < nm; i++) {
            size_t l = 0;
            gguf_get_arr_str(g, mi, i, &l);
            mt += l + 1;
        }
        if (mt > UINT32_MAX) {
            engine_set_err(err, errlen, "tokenizer.ggml.merges is too large");
            goto bad;
        }
        t->n_merges = (int)nm;
        t->mblob = malloc(mt ? mt : 1);
        t->moff = malloc((nm ? nm : 1) * sizeof(*t->moff));
        t->mlen = malloc((nm ? nm : 1) * sizeof(*t->mlen));
        size_t msz = table_size(nm);
        t->merge_tab = malloc(msz * sizeof(*t->merge_tab));
        if (!t->mblob || !t->moff || !t->mlen || !t->merge_tab)
            goto oom;
        memset(t->merge_tab, 0xff, msz * sizeof(*t->merge_tab));
        t->merge_mask = msz - 1;
        uint32_t mp = 0;
        for (uint64_t i = 0; i < nm; i++) {
            size_t l = 0;
            const char *s = gguf_get_arr_str(g, mi, i, &l);
            memcpy(t->mblob + mp, s, l);
            t->mblob[mp + l] = 0;
            t->moff[i] = mp;
            t->mlen[i] = (uint32_t)l;
            mp += (uint32_t)l + 1;
            /* llama.cpp splits at the first space after the first byte; an entry
             * without one can never match and is left out */
            if (l < 2 || !memchr(s + 1, ' ', l - 1))
                continue;
            size_t h = fnv_step(FNV_INIT, t->mblob + t->moff[i], l) & t->merge_mask;
            int dup = 0;
            while (t->merge_tab[h] >= 0) {
                int32_t o = t->merge_tab[h];
                if (t->mlen[o] == l && memcmp(t->mblob + t->moff[o], s, l) == 0) {
                    dup = 1; /* emplace keeps the first rank */
                    break;
                }
                h = (h + 1) & t->merge_mask;
            }
            if (!dup)
                t->merge_tab[h] = (int32_t)i;
        }
    }

    /* special ids: llama.cpp's defaults, then the file's keys */
    int nvi = t->n_vocab;
    if (t->kind == TOKENIZER_SPM) {
        t->bos = get_id(g, "tokenizer.ggml.bos_token_id", 1, nvi);
        t->eos = get_id(g, "tokenizer.ggml.eos_token_id", 2, nvi);
        t->unk = get_id(g, "tokenizer.ggml.unknown_token_id", 0, nvi);
    } else {
        t->bos = get_id(g, "tokenizer.ggml.bos_token_id", 11, nvi);
        t->eos = get_id(g, "tokenizer.ggml.eos_token_id", 11, nvi);
        t->unk = get_id(g, "tokenizer.ggml.unknown_token_id", -1, nvi);
    }
    t->eot = get_id(g, "tokenizer.ggml.eot_token_id", -1, nvi);
    t->eom = get_id(g, "tokenizer.ggml.eom_token_id", -1, nvi);
    {
        int b;
        if (gguf_get_bool(g, "tokenizer.ggml.add_bos_token", t->add_bos, &b) == 0)
            t->add_bos = b;
        if (gguf_get_bool(g, "tokenizer.ggml.add_eos_token", 0, &b) == 0)
            t->add_eos = b;
    }
    if (t->add_bos && t->bos < 0) {
        engine_set_err(err, errlen, "tokenizer.ggml.add_bos_token is true but there is no BOS token");
        goto bad;
    }
    if (t->add_eos && t->eos < 0)
        t->add_eos = 0;

    /* end-of-generation tokens, found by text as llama.cpp does; they (and the
     * FIM markers) are CONTROL whatever the file says */
    for (size_t k = 0; k < sizeof(eog_names) / sizeof(eog_names[0]); k++) {
        int id = lookup(t, eog_names[k], strlen(eog_names[k]));
        if (id >= 0) {
            t->eog[id] = 1;
            t->attr[id] |= TOKENIZER_ATTR_CONTROL;
            if (t->eot < 0 && k < 11 && strcmp(eog_names[k], "</s>") != 0 &&
                strcmp(eog_names[k], "<|eom_id|>") != 0)
                t->eot = id;
        }
    }
    for (size_t k = 0; k < sizeof(fim_names) / sizeof(fim_names[0]); k++) {
        int id = lookup(t, fim_names[k], strlen(fim_names[k]));
        if (id >= 0)
            t->attr[id] |= TOKENIZER_ATTR_CONTROL;
    }
    if (t->eos >= 0)
        t->eog[t->eos] = 1;
    if (t->eot >= 0)
        t->eog[t->eot] = 1;
    if (t->eom >= 0)
        t->eog[t->eom] = 1;

    /* special-token cache, longest first */
    int ns = 0;
    for (int i = 0; i < nvi; i++)
        if (t->attr[i] & (TOKENIZER_ATTR_CONTROL | TOKENIZER_ATTR_USER_DEFINED |
                          TOKENIZER_ATTR_UNKNOWN))
            ns++;
    t->special = malloc((ns ? (size_t)ns : 1) * sizeof(*t->special));
    if (!t->special)
        goto oom;
    for (int i = 0; i < nvi; i++)
        if (t->attr[i] & (TOKENIZER_ATTR_CONTROL | TOKENIZER_ATTR_USER_DEFINED |
                          TOKENIZER_ATTR_UNKNOWN))
            t->special[t->n_special++] = i;
    qsort_r(t->special, (size_t)t->n_special, sizeof(*t->special), cmp_special, t);

    if (t->kind == TOKENIZER_SPM) {
        for (int b = 0; b < 256; b++) {
            char name[8];
            snprintf(name, sizeof(name), "<0x%02X>", b);
            int id = lookup(t, name, 6);
            if (id < 0) {
                char c = (char)b;
                id = lookup(t, &c, 1);
            }
            t->byte_tok[b] = id >= 0 ? id : t->unk;
        }
    }
    *out = t;
    return 0;
oom:
    engine_set_err(err, errlen, "out of memory while loading the tokenizer");
    tokenizer_free(t);
    return ENGINE_ENOMEM;
bad:
    tokenizer_free(t);
    return ENGINE_EINVAL;
}

void tokenizer_free(struct tokenizer *t)
{
    if (!t)
        return;
    free(t->blob);
    free(t->off);
    free(t->len);
    free(t->score);
    free(t->attr);
    free(t->eog);
    free(t->tok_tab);
    free(t->mblob);
    free(t->moff);
    free(t->mlen);
    free(t->merge_tab);
    free(t->special);
    free(t);
}

int tokenizer_n_vocab(const struct tokenizer *t)
{
    return t->n_vocab;
}

size_t tokenizer_max_bytes(const struct tokenizer *t)
{
    size_t m = 1;

    for (int i = 0; i < t->n_vocab; i++)
        if (t->len[i] > m)
            m = t->len[i];
    return m;
}
enum tokenizer_kind tokenizer_kind(const struct tokenizer *t)
{
    return t->kind;
}
int tokenizer_bos(const struct tokenizer *t)
{
    return t->bos;
}
int tokenizer_eos(const struct tokenizer *t)
{
    return t->eos;
}
int tokenizer_add_bos(const struct tokenizer *t)
{
    return t->add_bos;
}
int tokenizer_is_eog(const struct tokenizer *t, int id)
{
    return id >= 0 && id < t->n_vocab && t->eog[id];
}
unsigned tokenizer_attr(const struct tokenizer *t, int id)
{
    return id >= 0 && id < t->n_vocab ? t->attr[id] : 0;
}
const char *tokenizer_text(const struct tokenizer *t, int id)
{
    return id >= 0 && id < t->n_vocab ? t->blob + t->off[id] : NULL;
}

/* ---- symbol merging shared by SPM and BPE ---- */

struct sym {
    int prev, next;
    size_t start, n;
};

struct bigram {
    double key; /* higher first: SPM score, BPE -rank */
    int left, right;
    size_t size;
};

struct heap {
    struct bigram *p;
    size_t n, cap;
    int oom;
};

static int bg_before(const struct bigram *a, const struct bigram *b)
{
    return a->key > b->key || (a->key == b->key && a->left < b->left);
}

static void heap_push(struct heap *h, struct bigram b)
{
    if (h->oom)
        return;
    struct bigram *p = grow_room(h->p, &h->cap, h->n + 1, sizeof(*p), 64);
    if (!p) {
        h->oom = 1;
        return;
    }
    h->p = p;
    size_t i = h->n++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!bg_before(&b, &h->p[up]))
            break;
        h->p[i] = h->p[up];
        i = up;
    }
    h->p[i] = b;
}

static struct bigram heap_pop(struct heap *h)
{
    struct bigram top = h->p[0], last = h->p[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && bg_before(&h->p[c + 1], &h->p[c]))
            c++;
        if (!bg_before(&h->p[c], &last))
            break;
        h->p[i] = h->p[c];
        i = c;
    }
    if (h->n)
        h->p[i] = last;
    return top;
}

struct merger {
    const struct tokenizer *t;
    const char *text;
    struct sym *s;
    size_t n, cap;
    struct heap h;
    int bpe;
    int oom;
};

static void add_bigram(struct merger *m, int l, int r)
{
    if (l < 0 || r < 0)
        return;
    const char *a = m->text + m->s[l].start;
    size_t an = m->s[l].n, bn = m->s[r].n;
    struct bigram b = {0, l, r, an + bn};
    if (m->bpe) {
        int rank = merge_rank(m->t, a, an, m->text + m->s[r].start, bn);
        if (rank < 0)
            return;
        b.key = -(double)rank;
    } else {
        int id = lookup(m->t, a, an + bn);
        if (id < 0)
            return;
        b.key = m->t->score[id];
    }
    heap_push(&m->h, b);
}

/* split text[0..n) into UTF-8 characters and merge until no pair applies */
static int merge_run(struct merger *m, const char *text, size_t n)
{
    m->text = text;
    m->n = 0;
    m->h.n = 0;
    if (n > m->cap) {
        struct sym *s = realloc(m->s, n * sizeof(*s));
        if (!s)
            return ENGINE_ENOMEM;
        m->s = s;
        m->cap = n;
    }
    size_t off = 0;
    while (off < n) {
        size_t l = unicode_seq_len((unsigned char)text[off]);
        if (l > n - off)
            l = n - off;
        struct sym *y = &m->s[m->n];
        y->start = off;
        y->n = l;
        off += l;
        y->prev = (int)m->n - 1;
        y->next = off == n ? -1 : (int)m->n + 1;
        m->n++;
    }
    for (size_t i = 1; i < m->n; i++)
        add_bigram(m, (int)i - 1, (int)i);
    while (m->h.n && !m->h.oom) {
        struct bigram b = heap_pop(&m->h);
        struct sym *l = &m->s[b.left], *r = &m->s[b.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size)
            continue;
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0)
            m->s[r->next].prev = b.left;
        add_bigram(m, l->prev, b.left);
        add_bigram(m, b.left, l->next);
    }
    return m->h.oom ? ENGINE_ENOMEM : 0;
}

/* ---- SPM ---- */

static int spm_tokenize(const struct tokenizer *t, struct merger *m, const char *raw, size_t n,
                        int space_prefix, struct ivec *out)
{
    struct cbuf b = {0};
    if (space_prefix)
        cb_add(&b, "\xe2\x96\x81", 3);
    for (size_t i = 0; i < n; i++) {
        if (raw[i] == ' ')
            cb_add(&b, "\xe2\x96\x81", 3);
        else
            cb_add(&b, raw + i, 1);
    }
    if (b.oom) {
        free(b.p);
        return ENGINE_ENOMEM;
    }
    if (b.n == 0) {
        free(b.p);
        return 0;
    }
    int rc = merge_run(m, b.p, b.n);
    if (rc == 0) {
        for (int i = 0; i != -1; i = m->s[i].next) {
            const struct sym *y = &m->s[i];
            int id = lookup(t, b.p + y->start, y->n);
            if (id >= 0) {
                iv_push(out, id);
                continue;
            }
            for (size_t k = 0; k < y->n; k++)
                iv_push(out, t->byte_tok[(unsigned char)b.p[y->start + k]]);
        }
    }
    free(b.p);
    return rc;
}

/* ---- BPE pre-tokenizer (llama.cpp's unicode_regex_split for our regexes) ---- */

#define IN_RANGE 0x100u

struct segs {
    size_t *len;
    size_t n, cap;
    int oom;
};

static void seg_push(struct segs *s, size_t len)
{
    if (!len || s->oom)
        return;
    size_t *p = grow_room(s->len, &s->cap, s->n + 1, sizeof(*p), 64);
    if (!p) {
        s->oom = 1;
        return;
    }
    s->len = p;
    s->len[s->n++] = len;
}

struct cps {
    const uint32_t *cp;
    const unsigned *fl;
    size_t ini, end;
};

static uint32_t cp_at(const struct cps *c, size_t pos)
{
    return pos >= c->ini && pos < c->end ? c->cp[pos] : 0xFFFFFFFFu;
}

static unsigned fl_at(const struct cps *c, size_t pos)
{
    return pos >= c->ini && pos < c->end ? c->fl[pos] | IN_RANGE : 0;
}

static uint32_t ascii_lower(uint32_t c)
{
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

/* contraction 's 't 're 've 'm 'll 'd at pos (case-insensitive when ci): its length or 0 */
static size_t contraction(const struct cps *c, size_t pos, int ci)
{
    if (cp_at(c, pos) != '\'' || pos + 1 >= c->end)
        return 0;
    uint32_t n1 = cp_at(c, pos + 1);
    if (ci)
        n1 = ascii_lower(n1);
    if (n1 == 's' || n1 == 't' || n1 == 'm' || n1 == 'd')
        return 2;
    if (pos + 2 < c->end) {
        uint32_t n2 = cp_at(c, pos + 2);
        if (ci)
            n2 = ascii_lower(n2);
        if ((n1 == 'r' && n2 == 'e') || (n1 == 'v' && n2 == 'e') || (n1 == 'l' && n2 == 'l'))
            return 3;
    }
    return 0;
}

#define WS UNICODE_WHITESPACE
#define LET UNICODE_LETTER
#define NUM UNICODE_NUMBER

/* (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,maxdig}|
 *  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+   (Llama 3: maxdig 3, Qwen2: 1) */
static void split_llama3(const uint32_t *cp, const unsigned *fl, const struct segs *in,
                         struct segs *out, size_t maxdig)
{
    size_t start = 0;
    for (size_t si = 0; si < in->n; si++) {
        struct cps c = {cp, fl, start, start + in->len[si]};
        start = c.end;
        size_t prev = c.ini;
#define ADD(e) (seg_push(out, (e) - prev), prev = (e))
        for (size_t pos = c.ini; pos < c.end;) {
            uint32_t ch = cp_at(&c, pos);
            unsigned f = fl_at(&c, pos);
            size_t k = contraction(&c, pos, 1);
            if (k) {
                pos += k;
                ADD(pos);
                continue;
            }
            if (!(ch == '\r' || ch == '\n' || (f & NUM))) {
                if ((f & LET) || (fl_at(&c, pos + 1) & LET)) {
                    pos++;
                    while (fl_at(&c, pos) & LET)
                        pos++;
                    ADD(pos);
                    continue;
                }
            }
            if (f & NUM) {
                size_t ini = pos;
                while (fl_at(&c, pos) & NUM) {
                    if (++pos - ini >= maxdig) {
                        ADD(pos);
                        ini = pos;
                    }
                }
                ADD(pos);
                continue;
            }
            unsigned f2 = ch == ' ' ? fl_at(&c, pos + 1) : f;
            if (!(f2 & (WS | LET | NUM)) && f) {
                pos += ch == ' ';
                while (!(f2 & (WS | LET | NUM)) && f2)
                    f2 = fl_at(&c, ++pos);
                uint32_t c2 = cp_at(&c, pos);
                while (c2 == '\r' || c2 == '\n')
                    c2 = cp_at(&c, ++pos);
                ADD(pos);
                continue;
            }
            size_t nws = 0, last_rn = 0;
            while (fl_at(&c, pos + nws) & WS) {
                uint32_t c2 = cp_at(&c, pos + nws);
                if (c2 == '\r' || c2 == '\n')
                    last_rn = pos + nws + 1;
                nws++;
            }
            if (last_rn > 0) {
                pos = last_rn;
                ADD(pos);
                continue;
            }
            if (nws > 1 && cp_at(&c, pos + nws) != 0xFFFFFFFFu) {
                pos += nws - 1;
                ADD(pos);
                continue;
            }
            if (nws > 0) {
                pos += nws;
                ADD(pos);
                continue;
            }
            pos++;
            ADD(pos);
        }
    }
}

/* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static void split_gpt2(const uint32_t *cp, const unsigned *fl, const struct segs *in,
                       struct segs *out)
{
    size_t start = 0;
    for (size_t si = 0; si < in->n; si++) {
        struct cps c = {cp, fl, start, start + in->len[si]};
        start = c.end;
        size_t prev = c.ini;
        for (size_t pos = c.ini; pos < c.end;) {
            uint32_t ch = cp_at(&c, pos);
            unsigned f = fl_at(&c, pos);
            size_t k = contraction(&c, pos, 0);
            if (k) {
                pos += k;
                ADD(pos);
                continue;
            }
            unsigned f2 = ch == ' ' ? fl_at(&c, pos + 1) : f;
            if (f2 & LET) {
                pos += ch == ' ';
                while (f2 & LET)
                    f2 = fl_at(&c, ++pos);
                ADD(pos);
                continue;
            }
            if (f2 & NUM) {
                pos += ch == ' ';
                while (f2 & NUM)
                    f2 = fl_at(&c, ++pos);
                ADD(pos);
                continue;
            }
            if (!(f2 & (WS | LET | NUM)) && f2) {
                pos += ch == ' ';
                while (!(f2 & (WS | LET | NUM)) && f2)
                    f2 = fl_at(&c, ++pos);
                ADD(pos);
                continue;
            }
            size_t nws = 0;
            while (fl_at(&c, pos + nws) & WS)
                nws++;
            if (nws > 1 && cp_at(&c, pos + nws) != 0xFFFFFFFFu) {
                pos += nws - 1;
                ADD(pos);
                continue;
            }
            if (nws > 0) {
                pos += nws;
                ADD(pos);
                continue;
            }
            pos++;
            ADD(pos);
        }
#undef ADD
    }
}

enum run_kind { RUN_NUM_ONE, RUN_NUM, RUN_ASCII3, RUN_PUNCT };

/* length of the match of a simple class expression at pos (0: none) */
static size_t run_match(const struct cps *c, size_t pos, enum run_kind k)
{
    size_t e = pos;
    switch (k) {
    case RUN_NUM_ONE:
        return (fl_at(c, pos) & NUM) ? 1 : 0;
    case RUN_NUM:
        while (fl_at(c, e) & NUM)
            e++;
        return e - pos;
    case RUN_ASCII3:
        for (int i = 0; i < 3; i++) {
            uint32_t ch = cp_at(c, pos + (size_t)i);
            if (ch < '0' || ch > '9')
                return 0;
        }
        return 3;
    case RUN_PUNCT:
        for (;;) {
            uint32_t ch = cp_at(c, e);
            unsigned f = fl_at(c, e);
            if (!f || (f & WS))
                break;
            if (!((f & UNICODE_PUNCT) || (ch < 128 && strchr("$+<=>^~|", (int)ch) && ch)))
                break;
            e++;
        }
        return e - pos;
    }
    return 0;
}

/* a regex used through std::regex in llama.cpp: matches and the gaps between them
 * both become pieces */
static void split_runs(const uint32_t *cp, const unsigned *fl, const struct segs *in,
                       struct segs *out, enum run_kind k)
{
    size_t start = 0;
    for (size_t si = 0; si < in->n; si++) {
        struct cps c = {cp, fl, start, start + in->len[si]};
        start = c.end;
        size_t gap = c.ini;
        for (size_t pos = c.ini; pos < c.end;) {
            size_t m = run_match(&c, pos, k);
            if (m) {
                seg_push(out, pos - gap);
                seg_push(out, m);
                pos += m;
                gap = pos;
            } else {
                pos++;
            }
        }
        seg_push(out, c.end - gap);
    }
}

static int bpe_word(const struct tokenizer *t, struct merger *m, const char *w, size_t n,
                    struct ivec *out)
{
    if (t->ignore_merges) {
        int id = lookup(t, w, n);
        if (id >= 0) {
            iv_push(out, id);
            return 0;
        }
    }
    int rc = merge_run(m, w, n);
    if (rc)
        return rc;
    for (int i = 0; i != -1; i = m->s[i].next) {
        const struct sym *y = &m->s[i];
        if (!y->n)
            continue;
        int id = lookup(t, w + y->start, y->n);
        if (id >= 0) {
            iv_push(out, id);
            continue;
        }
        for (size_t k = 0; k < y->n; k++) {
            int b = lookup(t, w + y->start + k, 1);
            if (b >= 0)
                iv_push(out, b);
        }
    }
    return 0;
}

/* pre_split -- run the pre-tokenizer expressions of `pre` over cp[0..nc) (flags fl);
 * *out receives the word lengths in code points. */
static int pre_split(enum pre_kind pre, const uint32_t *cp, const unsigned *fl, size_t nc,
                     struct segs *out)
{
    static const int stages[][5] = {
        [PRE_DEFAULT] = {4, RUN_PUNCT, -1, RUN_NUM, RUN_ASCII3},
        [PRE_GPT2] = {1, -1},
        [PRE_LLAMA3] = {1, -3},
        [PRE_QWEN2] = {1, -4},
        [PRE_SMOLLM] = {2, RUN_NUM_ONE, -1},
    };
    struct segs a = {0}, b = {0};
    const int *st = stages[pre];
    seg_push(&a, nc);
    for (int s = 1; s <= st[0] && !a.oom; s++) {
        b.n = 0;
        if (st[s] == -1)
            split_gpt2(cp, fl, &a, &b);
        else if (st[s] == -3)
            split_llama3(cp, fl, &a, &b, 3);
        else if (st[s] == -4)
            split_llama3(cp, fl, &a, &b, 1);
        else
            split_runs(cp, fl, &a, &b, (enum run_kind)st[s]);
        struct segs tmp = a;
        a = b;
        b = tmp;
    }
    free(b.len);
    if (a.oom) {
        free(a.len);
        return ENGINE_ENOMEM;
    }
    *out = a;
    return 0;
}

static int bpe_tokenize(const struct tokenizer *t, struct merger *m, const char *raw, size_t n,
                        struct ivec *out)
{
    int rc = ENGINE_ENOMEM;
    uint32_t *cp = malloc((n ? n : 1) * sizeof(*cp));
    unsigned *fl = malloc((n ? n : 1) * sizeof(*fl));
    struct segs a = {0};
    struct cbuf word = {0};
    if (!cp || !fl)
        goto done;
    size_t nc = 0;
    for (size_t i = 0; i < n;) {
        cp[nc] = unicode_decode(raw, n, &i);
        fl[nc] = unicode_flags(cp[nc]);
        nc++;
    }
    if (pre_split(t->pre, cp, fl, nc, &a) != 0)
        goto done;
    size_t pos = 0;
    for (size_t si = 0; si < a.n; si++) {
        word.n = 0;
        for (size_t k = pos; k < pos + a.len[si]; k++) {
            char u[4], v[4];
            size_t ul = unicode_encode(cp[k], u);
            for (size_t j = 0; j < ul; j++) {
                size_t vl = unicode_encode(unicode_byte_to_cp((uint8_t)u[j]), v);
                cb_add(&word, v, vl);
            }
        }
        pos += a.len[si];
        if (word.oom)
            goto done;
        if (word.n && bpe_word(t, m, word.p, word.n, out))
            goto done;
    }
    rc = 0;
done:
    free(cp);
    free(fl);
    free(a.len);
    free(word.p);
    return rc;
}

/* ---- tokenize ---- */

struct frag {
    int tok; /* -1: raw text */
    size_t off, len;
};

struct frags {
    struct frag *p;
    size_t n, cap;
    int oom;
};

static void fr_push(struct frags *f, int tok, size_t off, size_t len)
{
    if (f->oom || (tok < 0 && len == 0))
        return;
    struct frag *p = grow_room(f->p, &f->cap, f->n + 1, sizeof(*p), 16);
    if (!p) {
        f->oom = 1;
        return;
    }
    f->p = p;
    f->p[f->n++] = (struct frag){tok, off, len};
}

int tokenizer_encode(const struct tokenizer *t, const char *text, size_t len, int add_special,
                     int parse_special, int32_t **ids, size_t *n)
{
    struct frags a = {0}, b = {0};
    struct ivec out = {0};
    struct merger m = {.t = t, .bpe = t->kind == TOKENIZER_BPE};
    int rc = ENGINE_ENOMEM;
    *ids = NULL;
    *n = 0;
    fr_push(&a, -1, 0, len);
    for (int si = 0; si < t->n_special && a.n; si++) {
        int id = t->special[si];
        if (!parse_special && (t->attr[id] & (TOKENIZER_ATTR_CONTROL | TOKENIZER_ATTR_UNKNOWN)))
            continue;
        const char *s = t->blob + t->off[id];
        size_t sl = t->len[id];
        if (!sl || !memmem(text, len, s, sl))
            continue;
        b.n = 0;
        for (size_t i = 0; i < a.n; i++) {
            struct frag f = a.p[i];
            if (f.tok >= 0) {
                fr_push(&b, f.tok, 0, 0);
                continue;
            }
            size_t off = f.off, end = f.off + f.len;
            for (;;) {
                const char *hit = memmem(text + off, end - off, s, sl);
                if (!hit)
                    break;
                size_t at = (size_t)(hit - text);
                fr_push(&b, -1, off, at - off);
                fr_push(&b, id, 0, 0);
                off = at + sl;
            }
            fr_push(&b, -1, off, end - off);
        }
        if (b.oom)
            goto done;
        struct frags tmp = a;
        a = b;
        b = tmp;
    }
    if (a.oom)
        goto done;
    if (add_special && t->add_bos)
        iv_push(&out, t->bos);
    int prev_special = 1;
    for (size_t i = 0; i < a.n; i++) {
        const struct frag *f = &a.p[i];
        if (f->tok >= 0) {
            iv_push(&out, f->tok);
            prev_special = 1;
            continue;
        }
        int r = t->kind == TOKENIZER_SPM
                    ? spm_tokenize(t, &m, text + f->off, f->len,
                                   t->add_space_prefix && prev_special, &out)
                    : bpe_tokenize(t, &m, text + f->off, f->len, &out);
        if (r)
            goto done;
        prev_special = 0;
    }
    if (add_special && t->add_eos)
        iv_push(&out, t->eos);
    if (out.oom)
        goto done;
    *ids = out.p;
    *n = out.n;
    out.p = NULL;
    rc = 0;
done:
    free(out.p);
    free(a.p);
    free(b.p);
    free(m.s);
    free(m.h.p);
    return rc;
}

/* ---- detokenize ---- */

static size_t put(char *buf, size_t cap, size_t at, const char *s, size_t n)
{
    if (at < cap)
        memcpy(buf + at, s, at + n <= cap ? n : cap - at);
    return at + n;
}

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                         : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                                                : 0;
}

size_t tokenizer_piece(const struct tokenizer *t, int id, int special, char *buf, size_t cap)
{
    if (id < 0 || id >= t->n_vocab)
        return 0;
    unsigned a = t->attr[id];
    const char *s = t->blob + t->off[id];
    size_t n = t->len[id], w = 0;
    if (!special && (a & (TOKENIZER_ATTR_UNKNOWN | TOKENIZER_ATTR_CONTROL)))
        return 0;
    if (a & (TOKENIZER_ATTR_UNKNOWN | TOKENIZER_ATTR_CONTROL | TOKENIZER_ATTR_USER_DEFINED))
        return put(buf, cap, 0, s, n);
    if (a & TOKENIZER_ATTR_NORMAL) {
        if (t->kind == TOKENIZER_SPM) {
            for (size_t i = 0; i < n;) {
                if (i + 3 <= n && memcmp(s + i, "\xe2\x96\x81", 3) == 0) {
                    w = put(buf, cap, w, " ", 1);
                    i += 3;
                } else {
                    w = put(buf, cap, w, s + i, 1);
                    i++;
                }
            }
            return w;
        }
        for (size_t i = 0; i < n;) {
            size_t i0 = i;
            uint32_t cp = unicode_decode(s, n, &i);
            int b = unicode_cp_to_byte(cp);
            if (b >= 0) {
                char c = (char)b;
                w = put(buf, cap, w, &c, 1);
            } else {
                w = put(buf, cap, w, s + i0, i - i0);
            }
        }
        return w;
    }
    if ((a & TOKENIZER_ATTR_BYTE) && n >= 6) {
        char c = (char)(hexval(s[3]) * 16 + hexval(s[4]));
        return put(buf, cap, 0, &c, 1);
    }
    return 0;
}

int tokenizer_decode(const struct tokenizer *t, const int32_t *ids, size_t n, int remove_special,
                     int unparse_special, char **out, size_t *len)
{
    struct cbuf b = {0};
    char small[256];
    int remove_space = t->add_space_prefix;
    *out = NULL;
    *len = 0;
    if (remove_special && t->add_bos && n > 0 && ids[0] == t->bos) {
        remove_space = 0;
        ids++;
        n--;
    }
    if (remove_special && t->add_eos && n > 0 && ids[n - 1] == t->eos)
        n--;
    cb_add(&b, "", 0);
    for (size_t i = 0; i < n; i++) {
        size_t pl = tokenizer_piece(t, ids[i], unparse_special, small, sizeof(small));
        const char *p = small;
        char *big = NULL;
        if (pl > sizeof(small)) {
            big = malloc(pl);
            if (!big) {
                free(b.p);
                return ENGINE_ENOMEM;
            }
            tokenizer_piece(t, ids[i], unparse_special, big, pl);
            p = big;
        }
        if (remove_space && pl && p[0] == ' ') {
            p++;
            pl--;
        }
        remove_space = 0;
        cb_add(&b, p, pl);
        free(big);
    }
    if (b.oom) {
        free(b.p);
        return ENGINE_ENOMEM;
    }
    size_t total = b.n;
    char *x = b.p;
    if (t->clean_spaces && total) {
        /* llama.cpp's three passes: " ?", " !", " .", " ,"; " ' "; " 's", " 'm", " 're", " 've" */
        size_t t1 = total, w = 1;
        for (size_t i = 1; i < t1; i++) {
            char c = x[i];
            if (x[i - 1] == ' ' && (c == '?' || c == '!' || c == '.' || c == ','))
                w--;
            x[w++] = c;
        }
        size_t t2 = w;
        w = 1;
        for (size_t i = 1; i < t2; i++) {
            char c = x[i];
            if (c == '\'' && i + 1 < t2 && x[i - 1] == ' ' && x[i + 1] == ' ') {
                w--;
                x[++i] = 0;
            }
            x[w++] = c;
        }
        size_t t3 = w;
        w = 1;
        for (size_t i = 1; i < t3; i++) {
            char c = x[i];
            if (x[i - 1] == ' ' && c == '\'' && i + 1 < t3) {
                char c1 = x[i + 1];
                if (c1 == 's' || c1 == 'm')
                    w--;
                else if (i + 2 < t3 && ((c1 == 'r' && x[i + 2] == 'e') ||
                                        (c1 == 'v' && x[i + 2] == 'e')))
                    w--;
            }
            x[w++] = c;
        }
        total = w;
        x[total] = 0;
    }
    *out = x;
    *len = total;
    return 0;
}
