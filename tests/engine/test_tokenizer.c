/* test_tokenizer.c -- token ids and detokenization match llama.cpp on every golden case
 * (vocab GGUF tokenizer goldens and the prompt_tokens of every model golden). */
#include <cJSON.h>

#include "engine/engine.h"
#include "engine/gguf.h"
#include "engine/tokenizer.c" /* white box: the pre-tokenizer splits */
#include "engine/unicode.h"
#include "harness.h"

static cJSON *load_json(const char *rel)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/models/%s", harness_shared(), rel);
    char *text = harness_read_file(path, NULL);
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    free(text);
    if (!j)
        fprintf(stderr, "  cannot read %s\n", path);
    return j;
}

static struct tokenizer *load_tok(const char *rel, struct gguf_file **gout)
{
    char path[1024], err[256] = "";
    snprintf(path, sizeof(path), "%s/models/%s", harness_shared(), rel);
    struct gguf_file *g = NULL;
    struct tokenizer *t = NULL;
    if (gguf_open(path, &g, err, sizeof(err)) != 0) {
        fprintf(stderr, "  %s: %s\n", path, err);
        return NULL;
    }
    if (tokenizer_new_gguf(g, &t, err, sizeof(err)) != 0)
        fprintf(stderr, "  %s: %s\n", path, err);
    if (gout)
        *gout = g;
    else
        gguf_close(g);
    return t;
}

static void print_ids(const char *what, const int32_t *ids, size_t n)
{
    fprintf(stderr, "   %s:", what);
    for (size_t i = 0; i < n && i < 60; i++)
        fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, "\n");
}

/* compares ids with a JSON array of numbers; 1 when equal */
static int ids_equal(const int32_t *ids, size_t n, const cJSON *arr)
{
    if ((size_t)cJSON_GetArraySize(arr) != n)
        return 0;
    size_t i = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, arr)
    {
        if (ids[i++] != (int32_t)x->valuedouble)
            return 0;
    }
    return 1;
}

static void run_vocab(const char *name)
{
    char rel[256];
    snprintf(rel, sizeof(rel), "golden/ggml-vocab-%s.tokenizer.json", name);
    cJSON *j = load_json(rel);
    REQUIRE(j);
    snprintf(rel, sizeof(rel), "vocab/ggml-vocab-%s.gguf", name);
    struct tokenizer *t = load_tok(rel, NULL);
    if (!t)
        cJSON_Delete(j);
    REQUIRE(t);
    CHECK_EQ_INT(tokenizer_add_bos(t), cJSON_IsTrue(cJSON_GetObjectItem(j, "add_bos")));
    CHECK_EQ_INT(tokenizer_bos(t), cJSON_GetObjectItem(j, "bos_token_id")->valueint);
    int n_cases = 0, bad_ids = 0, bad_detok = 0, bad_special = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(j, "cases"))
    {
        const char *text = cJSON_GetObjectItem(c, "text")->valuestring;
        int add = cJSON_IsTrue(cJSON_GetObjectItem(c, "add_special"));
        int parse = cJSON_IsTrue(cJSON_GetObjectItem(c, "parse_special"));
        int32_t *ids = NULL;
        size_t n = 0;
        n_cases++;
        if (tokenizer_encode(t, text, strlen(text), add, parse, &ids, &n) != 0) {
            bad_ids++;
            continue;
        }
        if (!ids_equal(ids, n, cJSON_GetObjectItem(c, "ids"))) {
            bad_ids++;
            fprintf(stderr, "  %s: ids differ for \"%s\" (parse_special %d)\n", name, text, parse);
            print_ids("got ", ids, n);
            char *want = cJSON_PrintUnformatted(cJSON_GetObjectItem(c, "ids"));
            fprintf(stderr, "   want: %s\n", want);
            free(want);
        }
        /* detokenize the golden ids, not ours, so each check stands alone */
        const cJSON *gids = cJSON_GetObjectItem(c, "ids");
        size_t gn = (size_t)cJSON_GetArraySize(gids), k = 0;
        int32_t *g = malloc((gn ? gn : 1) * sizeof(*g));
        const cJSON *x;
        cJSON_ArrayForEach(x, gids) g[k++] = (int32_t)x->valuedouble;
        char *out = NULL;
        size_t ol = 0;
        if (tokenizer_decode(t, g, gn, 1, 0, &out, &ol) != 0 ||
            strcmp(out, cJSON_GetObjectItem(c, "detok")->valuestring) != 0) {
            bad_detok++;
            fprintf(stderr, "  %s: detok of \"%s\": got \"%s\"\n", name, text, out ? out : "");
        }
        free(out);
        if (tokenizer_decode(t, g, gn, 0, 1, &out, &ol) != 0 ||
            strcmp(out, cJSON_GetObjectItem(c, "detok_special")->valuestring) != 0) {
            bad_special++;
            fprintf(stderr, "  %s: detok_special of \"%s\": got \"%s\"\n", name, text,
                    out ? out : "");
        }
        free(out);
        free(g);
        free(ids);
    }
    CHECK_EQ_INT(n_cases, 54);
    CHECK_EQ_INT(bad_ids, 0);
    CHECK_EQ_INT(bad_detok, 0);
    CHECK_EQ_INT(bad_special, 0);
    tokenizer_free(t);
    cJSON_Delete(j);
}

static void test_vocab_llama_spm(void)
{
    run_vocab("llama-spm");
}
static void test_vocab_llama_bpe(void)
{
    run_vocab("llama-bpe");
}
static void test_vocab_qwen2(void)
{
    run_vocab("qwen2");
}

static const char *const models[] = {
    "stories260K",        "stories260K-q8_0",    "stories260K-q4_0",   "tiny-qwen2-f32",
    "tiny-qwen2-q8_0",    "tiny-llama3-f32",     "tiny-llama3-q8_0",   "tiny-llama3-q4_0",
    "tiny-llama2-tied-f32", "tiny-llama2-tied-q8_0", "tiny-kq-q4_k_m",  "tiny-kq-q5_k_m",
    "tiny-kq-q6_k",       "tiny-kq-bf16",
};

/* every model golden: prompt -> prompt_tokens, and the greedy pieces as a stream prints them */
static void test_model_prompts(void)
{
    int checked = 0;
    for (size_t mi = 0; mi < sizeof(models) / sizeof(models[0]); mi++) {
        char rel[256];
        snprintf(rel, sizeof(rel), "golden/%s.json", models[mi]);
        cJSON *j = load_json(rel);
        CHECK(j != NULL);
        if (!j)
            continue;
        snprintf(rel, sizeof(rel), "%s.gguf", models[mi]);
        struct tokenizer *t = load_tok(rel, NULL);
        CHECK(t != NULL);
        if (!t) {
            cJSON_Delete(j);
            continue;
        }
        CHECK_EQ_INT(tokenizer_n_vocab(t), cJSON_GetObjectItem(j, "n_vocab")->valueint);
        const cJSON *c;
        cJSON_ArrayForEach(c, cJSON_GetObjectItem(j, "cases"))
        {
            const char *prompt = cJSON_GetObjectItem(c, "prompt")->valuestring;
            int32_t *ids = NULL;
            size_t n = 0;
            CHECK(tokenizer_encode(t, prompt, strlen(prompt), 1, 1, &ids, &n) == 0);
            int eq = ids_equal(ids, n, cJSON_GetObjectItem(c, "prompt_tokens"));
            if (!eq) {
                fprintf(stderr, "  %s/%s: prompt tokens differ\n", models[mi],
                        cJSON_GetObjectItem(c, "name")->valuestring);
                print_ids("got ", ids, n);
            }
            CHECK(eq);
            free(ids);
            /* pieces with special=true are greedy_pieces_hex; with special=false,
             * concatenated, they are greedy_text_hex */
            const cJSON *gt = cJSON_GetObjectItem(c, "greedy_tokens");
            const cJSON *ph = cJSON_GetObjectItem(c, "greedy_pieces_hex");
            const cJSON *th = cJSON_GetObjectItem(c, "greedy_text_hex");
            if (gt && ph && th) {
                const cJSON *x;
                int i = 0, bad = 0;
                char text[8192] = "";
                size_t tl = 0;
                cJSON_ArrayForEach(x, gt)
                {
                    char piece[256], hex[600] = "";
                    size_t pl = tokenizer_piece(t, (int)x->valuedouble, 1, piece, sizeof(piece));
                    for (size_t k = 0; k < pl && k < sizeof(piece); k++)
                        snprintf(hex + 2 * k, 3, "%02x", (unsigned char)piece[k]);
                    const cJSON *w = cJSON_GetArrayItem(ph, i++);
                    if (!w || strcmp(w->valuestring, hex) != 0)
                        bad++;
                    pl = tokenizer_piece(t, (int)x->valuedouble, 0, piece, sizeof(piece));
                    for (size_t k = 0; k < pl && tl + 3 < sizeof(text); k++, tl += 2)
                        snprintf(text + tl, 3, "%02x", (unsigned char)piece[k]);
                }
                if (strcmp(text, th->valuestring) != 0)
                    bad++;
                if (bad)
                    fprintf(stderr, "  %s/%s: %d pieces differ\n", models[mi],
                            cJSON_GetObjectItem(c, "name")->valuestring, bad);
                CHECK_EQ_INT(bad, 0);
            }
            checked++;
        }
        tokenizer_free(t);
        cJSON_Delete(j);
    }
    CHECK(checked >= 14 * 4);
}

static void test_eog_and_specials(void)
{
    struct tokenizer *t = load_tok("tiny-llama3-f32.gguf", NULL);
    REQUIRE(t);
    CHECK(tokenizer_is_eog(t, 7945));  /* <|eot_id|> */
    CHECK(tokenizer_is_eog(t, 7937));  /* <|end_of_text|> */
    CHECK(!tokenizer_is_eog(t, 7942)); /* <|start_header_id|> */
    CHECK(!tokenizer_is_eog(t, 100));
    CHECK_EQ_STR(tokenizer_text(t, 7945), "<|eot_id|>");
    char buf[32];
    CHECK_EQ_INT(tokenizer_piece(t, 7945, 0, buf, sizeof(buf)), 0);
    CHECK_EQ_INT(tokenizer_piece(t, 7945, 1, buf, sizeof(buf)), 10);
    tokenizer_free(t);

    t = load_tok("vocab/ggml-vocab-qwen2.gguf", NULL);
    REQUIRE(t);
    CHECK(tokenizer_is_eog(t, 151645)); /* <|im_end|> */
    CHECK(tokenizer_is_eog(t, 151643)); /* <|endoftext|> */
    CHECK(tokenizer_attr(t, 128247) & TOKENIZER_ATTR_CONTROL); /* </s>, forced */
    tokenizer_free(t);
}

static void test_bad_files(void)
{
    char path[1024], err[256] = "";
    snprintf(path, sizeof(path), "%s/models/stories260K.gguf", harness_shared());
    struct gguf_file *g = NULL;
    REQUIRE(gguf_open(path, &g, err, sizeof(err)) == 0);
    gguf_close(g);
    /* a GGUF without tokenizer keys: build one in memory */
    static const unsigned char empty_gguf[] = {'G', 'G', 'U', 'F', 3, 0, 0, 0, 0, 0, 0, 0,
                                               0,   0,   0,   0,   0, 0, 0, 0, 0, 0, 0, 0};
    if (gguf_open_mem(empty_gguf, sizeof(empty_gguf), &g, err, sizeof(err)) == 0) {
        struct tokenizer *t = (struct tokenizer *)1;
        CHECK_EQ_INT(tokenizer_new_gguf(g, &t, err, sizeof(err)), ENGINE_EINVAL);
        CHECK(t == NULL);
        CHECK(strstr(err, "tokenizer.ggml.model") != NULL);
        gguf_close(g);
    }
}

static void test_unicode_tables(void)
{
    CHECK(unicode_flags('a') & UNICODE_LETTER);
    CHECK(unicode_flags(0x4E2D) & UNICODE_LETTER); /* 中 */
    CHECK(unicode_flags('7') & UNICODE_NUMBER);
    CHECK(unicode_flags(0x0663) & UNICODE_NUMBER); /* Arabic-Indic 3 */
    CHECK(unicode_flags(0x3000) & UNICODE_WHITESPACE);
    CHECK(!(unicode_flags(0x200B) & UNICODE_WHITESPACE)); /* ZWSP is not \s */
    CHECK(unicode_flags(0x1F600) == 0);                   /* emoji: symbol */
    for (int b = 0; b < 256; b++)
        CHECK_EQ_INT(unicode_cp_to_byte(unicode_byte_to_cp((uint8_t)b)), b);
    CHECK_EQ_INT(unicode_byte_to_cp(' '), 0x120); /* Ġ */
}

/* words of pre-tokenizer `pre` over text, joined with '|' */
static void split_words(enum pre_kind pre, const char *text, char *out, size_t cap)
{
    size_t n = strlen(text), nc = 0, w = 0;
    uint32_t cp[256];
    unsigned fl[256];
    for (size_t i = 0; i < n && nc < 256;) {
        cp[nc] = unicode_decode(text, n, &i);
        fl[nc] = unicode_flags(cp[nc]);
        nc++;
    }
    struct segs s = {0};
    out[0] = 0;
    if (pre_split(pre, cp, fl, nc, &s) != 0)
        return;
    size_t pos = 0;
    for (size_t k = 0; k < s.n; k++) {
        if (k && w + 1 < cap)
            out[w++] = '|';
        for (size_t i = pos; i < pos + s.len[k]; i++) {
            char u[4];
            size_t ul = unicode_encode(cp[i], u);
            if (w + ul < cap) {
                memcpy(out + w, u, ul);
                w += ul;
            }
        }
        pos += s.len[k];
    }
    out[w] = 0;
    free(s.len);
}

/* the expressions without golden vocabularies (smollm, gpt-2, default) and the
 * differences between all five on the same inputs */
static void test_pre_tokenizers(void)
{
    char w[512];
    split_words(PRE_GPT2, "Hello world's 123 abc  def\n", w, sizeof(w));
    CHECK_EQ_STR(w, "Hello| world|'s| 123| abc| | def|\n");
    split_words(PRE_GPT2, "IT'S", w, sizeof(w)); /* contractions are case-sensitive in GPT-2 */
    CHECK_EQ_STR(w, "IT|'|S");
    split_words(PRE_LLAMA3, "IT'S", w, sizeof(w));
    CHECK_EQ_STR(w, "IT|'S");
    split_words(PRE_SMOLLM, "ab12 x3 4", w, sizeof(w)); /* every digit alone */
    CHECK_EQ_STR(w, "ab|1|2| x|3| |4");
    split_words(PRE_GPT2, "ab12 x3 4", w, sizeof(w));
    CHECK_EQ_STR(w, "ab|12| x|3| 4");
    split_words(PRE_LLAMA3, "1234567 hello\n\n  world", w, sizeof(w));
    CHECK_EQ_STR(w, "123|456|7| hello|\n\n| | world");
    split_words(PRE_QWEN2, "1234 x", w, sizeof(w));
    CHECK_EQ_STR(w, "1|2|3|4| x");
    split_words(PRE_DEFAULT, "a+b=c, 1234", w, sizeof(w));
    CHECK_EQ_STR(w, "a|+|b|=|c|,| |123|4");
    split_words(PRE_SMOLLM, "caf\xc3\xa9 \xd9\xa3\xd9\xa4", w, sizeof(w)); /* Arabic-Indic digits are \\p{N} */
    CHECK_EQ_STR(w, "caf\xc3\xa9| |\xd9\xa3|\xd9\xa4");
}

/* tokenizer_max_bytes is a bound the server refuses by (a prompt of n bytes is at least
 * n / max_bytes tokens): on every vocabulary, texts built to need few tokens per byte (runs
 * a merge swallows, the longest token's own text, spaces, digits, emoji, bytes that are not
 * UTF-8) never encode to fewer */
static void test_max_bytes_bound(void)
{
    static const char *const toks[] = {"vocab/ggml-vocab-llama-spm.gguf",
                                       "vocab/ggml-vocab-llama-bpe.gguf",
                                       "vocab/ggml-vocab-qwen2.gguf",
                                       "stories260K.gguf",
                                       "tiny-llama2-tied-f32.gguf",
                                       "tiny-llama3-f32.gguf",
                                       "tiny-qwen2-f32.gguf"};
    static const char *const units[] = {
        "=",  " ",  "\n",           "0", "aa", "the ", "\xf0\x9f\x98\x80", "\xe4\xb8\xad", "\xff",
        "--", "\t", "<|im_start|>", "ab"};
    size_t texts = 0;

    for (size_t ti = 0; ti < sizeof(toks) / sizeof(toks[0]); ti++) {
        struct tokenizer *t = load_tok(toks[ti], NULL);
        REQUIRE(t);
        size_t maxb = tokenizer_max_bytes(t), longest_id = 0;
        CHECK(maxb >= 1 && maxb < 4096);
        for (int i = 0; i < t->n_vocab; i++)
            if (t->len[i] == maxb)
                longest_id = (size_t)i;
        for (size_t ui = 0; ui <= sizeof(units) / sizeof(units[0]); ui++) {
            const char *u = ui < sizeof(units) / sizeof(units[0])
                                ? units[ui]
                                : t->blob + t->off[longest_id]; /* the longest token's text */
            size_t ul = strlen(u), n = 0;
            for (size_t reps = 1; reps <= 4096; reps *= 8) {
                char *text = malloc(ul * reps + 1);
                int32_t *ids = NULL;
                REQUIRE(text);
                for (size_t r = 0; r < reps; r++)
                    memcpy(text + r * ul, u, ul);
                text[ul * reps] = 0;
                if (tokenizer_encode(t, text, ul * reps, 0, 1, &ids, &n) == 0) {
                    texts++;
                    if (n * maxb < ul * reps)
                        fprintf(stderr, "  %s: %zu bytes of '%s' are %zu tokens, max %zu\n",
                                toks[ti], ul * reps, ui < 13 ? u : "(longest)", n, maxb);
                    CHECK(n * maxb >= ul * reps);
                }
                free(ids);
                free(text);
            }
        }
        tokenizer_free(t);
    }
    CHECK(texts >= 7 * 14 * 4);
}

int main(void)
{
    RUN(test_unicode_tables);
    RUN(test_pre_tokenizers);
    RUN(test_max_bytes_bound);
    RUN(test_vocab_llama_spm);
    RUN(test_vocab_llama_bpe);
    RUN(test_vocab_qwen2);
    RUN(test_model_prompts);
    RUN(test_eog_and_specials);
    RUN(test_bad_files);
    return harness_done();
}
