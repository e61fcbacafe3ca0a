/* test_gguf.c -- GGUF parser: every shared model parses with the documented metadata; corrupt copies fail cleanly. */
#include "engine/gguf.h"
#include "harness.h"

#include <stdint.h>
#include <unistd.h>

static char path_buf[1024];

static const char *model_path(const char *name)
{
    snprintf(path_buf, sizeof(path_buf), "%s/models/%s", harness_shared(), name);
    return path_buf;
}

struct expect {
    const char *file;
    const char *arch;
    uint32_t n_layer, n_embd, n_head, n_head_kv, n_ff;
    int n_tensors_min;
};

static const struct expect models[] = {
    {"stories260K.gguf", "llama", 5, 64, 8, 4, 172, 1},
    {"stories260K-q8_0.gguf", "llama", 5, 64, 8, 4, 172, 1},
    {"stories260K-q4_0.gguf", "llama", 5, 64, 8, 4, 172, 1},
    {"tiny-qwen2-f32.gguf", "qwen2", 2, 32, 2, 1, 96, 1},
    {"tiny-qwen2-q8_0.gguf", "qwen2", 2, 32, 2, 1, 96, 1},
    {"tiny-llama3-f32.gguf", "llama", 2, 64, 4, 1, 192, 1},
    {"tiny-llama3-q8_0.gguf", "llama", 2, 64, 4, 1, 192, 1},
    {"tiny-llama3-q4_0.gguf", "llama", 2, 64, 4, 1, 192, 1},
    {"tiny-llama2-tied-f32.gguf", "llama", 4, 64, 2, 1, 192, 1},
    {"tiny-llama2-tied-q8_0.gguf", "llama", 4, 64, 2, 1, 192, 1},
    {"tiny-kq-q4_k_m.gguf", "llama", 2, 256, 4, 2, 768, 22},
    {"tiny-kq-q5_k_m.gguf", "llama", 2, 256, 4, 2, 768, 22},
    {"tiny-kq-q6_k.gguf", "llama", 2, 256, 4, 2, 768, 22},
    {"tiny-kq-bf16.gguf", "llama", 2, 256, 4, 2, 768, 22},
};

static void test_models_parse(void)
{
    for (size_t m = 0; m < sizeof(models) / sizeof(models[0]); m++) {
        const struct expect *e = &models[m];
        struct gguf_file *f = NULL;
        char err[256] = "";
        int rc = gguf_open(model_path(e->file), &f, err, sizeof(err));
        if (rc != 0)
            fprintf(stderr, "  %s: %s\n", e->file, err);
        CHECK_EQ_INT(rc, 0);
        if (rc != 0)
            continue;
        CHECK_EQ_INT(gguf_version(f), 3);
        CHECK_EQ_STR(gguf_get_str(f, "general.architecture", NULL), e->arch);
        char key[128];
        uint32_t v = 0;
        snprintf(key, sizeof(key), "%s.block_count", e->arch);
        CHECK_EQ_INT(gguf_get_u32(f, key, 0, &v), 0);
        CHECK_EQ_INT(v, e->n_layer);
        snprintf(key, sizeof(key), "%s.embedding_length", e->arch);
        CHECK(gguf_get_u32(f, key, 0, &v) == 0 && v == e->n_embd);
        snprintf(key, sizeof(key), "%s.attention.head_count", e->arch);
        CHECK(gguf_get_u32(f, key, 0, &v) == 0 && v == e->n_head);
        snprintf(key, sizeof(key), "%s.attention.head_count_kv", e->arch);
        CHECK(gguf_get_u32(f, key, 0, &v) == 0 && v == e->n_head_kv);
        snprintf(key, sizeof(key), "%s.feed_forward_length", e->arch);
        CHECK(gguf_get_u32(f, key, 0, &v) == 0 && v == e->n_ff);
        CHECK(gguf_n_tensors(f) >= e->n_tensors_min);
        /* wrong-type access is refused, default kept */
        CHECK_EQ_INT(gguf_get_u32(f, "general.architecture", 7, &v), -1);
        CHECK_EQ_INT(v, 7);
        CHECK_EQ_INT(gguf_get_u32(f, "no.such.key", 9, &v), 0);
        CHECK_EQ_INT(v, 9);
        /* token_embd: [n_embd, n_vocab], data inside the file, aligned */
        const struct gguf_tensor *t = gguf_find_tensor(f, "token_embd.weight");
        CHECK(t != NULL);
        if (t) {
            CHECK_EQ_INT(t->ne[0], e->n_embd);
            CHECK_EQ_INT(t->n_dims, 2);
            CHECK(t->offset % gguf_alignment(f) == 0);
            CHECK(t->offset + t->n_bytes <= gguf_size(f));
            CHECK_EQ_INT(t->n_bytes, gguf_row_bytes(t->type, t->ne[0]) * (uint64_t)t->ne[1]);
        }
        /* vocab array size equals the embedding rows */
        int ti = gguf_find_key(f, "tokenizer.ggml.tokens");
        CHECK(ti >= 0);
        CHECK_EQ_INT(gguf_get_arr_type(f, ti), GGUF_TYPE_STRING);
        if (t)
            CHECK_EQ_INT(gguf_get_arr_n(f, ti), t->ne[1]);
        CHECK(gguf_find_tensor(f, "blk.0.attn_q.weight") != NULL);
        CHECK(gguf_find_tensor(f, "nope") == NULL);
        gguf_close(f);
    }
}

static void test_specific_values(void)
{
    struct gguf_file *f = NULL;
    char err[256];
    REQUIRE(gguf_open(model_path("tiny-llama3-f32.gguf"), &f, err, sizeof(err)) == 0);
    float base = 0;
    CHECK_EQ_INT(gguf_get_f32(f, "llama.rope.freq_base", 0, &base), 0);
    CHECK(base == 500000.0f);
    const struct gguf_tensor *rf = gguf_find_tensor(f, "rope_freqs.weight");
    REQUIRE(rf != NULL);
    CHECK_EQ_INT(rf->type, GGUF_T_F32);
    CHECK_EQ_INT(rf->ne[0], 8);
    float fr[8];
    memcpy(fr, rf->data, sizeof(fr));
    CHECK(fr[0] == 1.0f && fr[5] == 32.0f && fr[4] > 3.29f && fr[4] < 3.30f);
    int ti = gguf_find_key(f, "tokenizer.ggml.tokens");
    size_t len = 0;
    const char *s = gguf_get_arr_str(f, ti, 7936, &len);
    CHECK(s && len == strlen("<|begin_of_text|>") && memcmp(s, "<|begin_of_text|>", len) == 0);
    CHECK(gguf_get_arr_str(f, ti, gguf_get_arr_n(f, ti), &len) == NULL);
    CHECK(gguf_get_arr_data(f, ti) == NULL);
    int add_bos = 0;
    CHECK_EQ_INT(gguf_get_bool(f, "tokenizer.ggml.add_bos_token", 0, &add_bos), 0);
    CHECK_EQ_INT(add_bos, 1);
    int mi = gguf_find_key(f, "tokenizer.ggml.merges");
    CHECK(mi >= 0 && gguf_get_arr_n(f, mi) == 14016);
    gguf_close(f);

    REQUIRE(gguf_open(model_path("tiny-llama2-tied-f32.gguf"), &f, err, sizeof(err)) == 0);
    int si = gguf_find_key(f, "tokenizer.ggml.scores");
    CHECK_EQ_INT(gguf_get_arr_type(f, si), GGUF_TYPE_FLOAT32);
    CHECK_EQ_INT(gguf_get_arr_n(f, si), 32000);
    CHECK(gguf_get_arr_data(f, si) != NULL);
    int tt = gguf_find_key(f, "tokenizer.ggml.token_type");
    CHECK_EQ_INT(gguf_get_arr_type(f, tt), GGUF_TYPE_INT32);
    CHECK(gguf_get_arr_int(f, tt, 1) == 3); /* <s> is CONTROL */
    uint32_t bos = 0;
    CHECK(gguf_get_u32(f, "tokenizer.ggml.bos_token_id", 0, &bos) == 0 && bos == 1);
    CHECK(gguf_find_tensor(f, "output.weight") == NULL); /* tied */
    gguf_close(f);
}

static void test_vocab_files(void)
{
    const char *v[] = {"vocab/ggml-vocab-llama-spm.gguf", "vocab/ggml-vocab-llama-bpe.gguf",
                       "vocab/ggml-vocab-qwen2.gguf"};
    const uint64_t nvocab[] = {32000, 128256, 151936};
    for (int i = 0; i < 3; i++) {
        struct gguf_file *f = NULL;
        char err[256] = "";
        int rc = gguf_open(model_path(v[i]), &f, err, sizeof(err));
        if (rc)
            fprintf(stderr, "  %s: %s\n", v[i], err);
        CHECK_EQ_INT(rc, 0);
        if (rc)
            continue;
        CHECK_EQ_INT(gguf_n_tensors(f), 0);
        int ti = gguf_find_key(f, "tokenizer.ggml.tokens");
        CHECK_EQ_INT(gguf_get_arr_n(f, ti), nvocab[i]);
        CHECK(gguf_get_str(f, "tokenizer.ggml.model", NULL) != NULL);
        gguf_close(f);
    }
}

/* Every prefix of a file must be refused (cleanly) or, where tensor data is not
 * needed, parse; never crash. Check many prefixes of a small model. */
static void test_truncation(void)
{
    size_t n = 0;
    unsigned char *b =
        (unsigned char *)harness_read_file(model_path("stories260K-q4_0.gguf"), &n);
    REQUIRE(b != NULL);
    int refused = 0, tried = 0;
    for (size_t cut = 0; cut < n; cut += (cut < 4096 ? 7 : 997)) {
        struct gguf_file *f = NULL;
        char err[256] = "";
        int rc = gguf_open_mem(b, cut, &f, err, sizeof(err));
        tried++;
        if (rc != 0) {
            refused++;
            CHECK(f == NULL);
            CHECK(err[0] != '\0');
        } else {
            gguf_close(f);
        }
    }
    /* the tensor data runs to the end, so every strict prefix must be refused */
    CHECK_EQ_INT(refused, tried);
    /* and the whole file through a temp file on disk too */
    char tmp[] = "/tmp/airlock_gguf_XXXXXX";
    int fd = mkstemp(tmp);
    REQUIRE(fd >= 0);
    CHECK((size_t)write(fd, b, n / 2) == n / 2);
    close(fd);
    struct gguf_file *f = NULL;
    char err[256] = "";
    CHECK_EQ_INT(gguf_open(tmp, &f, err, sizeof(err)), -1);
    CHECK(strstr(err, "truncated") != NULL || strstr(err, "beyond") != NULL);
    unlink(tmp);
    CHECK_EQ_INT(gguf_open("/nonexistent/x.gguf", &f, err, sizeof(err)), -1);
    free(b);
}

static void put_u64(unsigned char *p, uint64_t v) { memcpy(p, &v, 8); }

static int open_bytes(const unsigned char *b, size_t n, char *err, size_t errlen)
{
    struct gguf_file *f = NULL;
    int rc = gguf_open_mem(b, n, &f, err, errlen);
    gguf_close(f);
    return rc;
}

static void test_corruption(void)
{
    size_t n = 0;
    unsigned char *orig =
        (unsigned char *)harness_read_file(model_path("stories260K-q8_0.gguf"), &n);
    REQUIRE(orig != NULL);
    unsigned char *b = malloc(n);
    REQUIRE(b != NULL);
    char err[256];

    memcpy(b, orig, n);
    CHECK_EQ_INT(open_bytes(b, n, err, sizeof(err)), 0);

    memcpy(b, orig, n); b[0] = 'X';
    CHECK_EQ_INT(open_bytes(b, n, err, sizeof(err)), -1);
    memcpy(b, orig, n); b[4] = 1; /* version 1 */
    CHECK_EQ_INT(open_bytes(b, n, err, sizeof(err)), -1);
    memcpy(b, orig, n); b[4] = 9;
    CHECK_EQ_INT(open_bytes(b, n, err, sizeof(err)), -1);
    memcpy(b, orig, n); put_u64(b + 8, UINT64_MAX); /* absurd tensor count */
    CHECK_EQ_INT(open_bytes(b, n, err, sizeof(err)), -1);
    memcpy(b, orig, n); put_u64(b + 16, (uint64_t)1 << 40); /* absurd kv count */
    CHECK_EQ_INT(open_bytes(b, n, err, sizeof(err)), -1);
    memcpy(b, orig, n); put_u64(b + 24, UINT64_MAX - 3); /* first key length */
    CHECK_EQ_INT(open_bytes(b, n, err, sizeof(err)), -1);
    CHECK(strstr(err, "length") != NULL);

    /* flip every byte of the header region (counts, keys, types, lengths) one at a time:
     * must either parse or fail cleanly (ASan/UBSan watch for the rest) */
    size_t hdr = 0;
    {
        struct gguf_file *f = NULL;
        REQUIRE(gguf_open_mem(orig, n, &f, err, sizeof(err)) == 0);
        hdr = (size_t)gguf_tensor_at(f, 0)->offset;
        gguf_close(f);
    }
    int ok = 0, bad = 0;
    for (size_t i = 0; i < hdr && i < n; i += (i < 2048 ? 1 : 3)) {
        memcpy(b, orig, n);
        b[i] ^= 0xff;
        if (open_bytes(b, n, err, sizeof(err)) == 0)
            ok++;
        else
            bad++;
        memcpy(b, orig, n);
        b[i] ^= 0x01;
        if (open_bytes(b, n, err, sizeof(err)) == 0)
            ok++;
        else
            bad++;
    }
    CHECK(bad > 0);
    CHECK(ok > 0); /* flips inside string contents are harmless */

    /* a tensor's type, dims and offset: find the tensor infos by re-reading layout */
    {
        struct gguf_file *f = NULL;
        REQUIRE(gguf_open_mem(orig, n, &f, err, sizeof(err)) == 0);
        const struct gguf_tensor *t = gguf_find_tensor(f, "output_norm.weight");
        REQUIRE(t != NULL);
        gguf_close(f);
        /* locate the name in the header; layout after it: u32 n_dims, u64 ne[n], u32 type, u64 off */
        const char *nm = "output_norm.weight";
        size_t pos = 0;
        for (size_t i = 0; i + strlen(nm) < hdr; i++)
            if (memcmp(orig + i, nm, strlen(nm)) == 0 && orig[i + strlen(nm)] == 1) {
                pos = i + strlen(nm);
                break;
            }
        REQUIRE(pos > 0);
        memcpy(b, orig, n); b[pos] = 5; /* n_dims 5 */
        CHECK_EQ_INT(open_bytes(b, n, err, sizeof(err)), -1);
        memcpy(b, orig, n); b[pos] = 0;
        CHECK_EQ_INT(open_bytes(b, n, err, sizeof(err)), -1);
        memcpy(b, orig, n); put_u64(b + pos + 4, 0); /* dim 0 */
        CHECK_EQ_INT(open_bytes(b, n, err, sizeof(err)), -1);
        memcpy(b, orig, n); put_u64(b + pos + 4, (uint64_t)1 << 62);
        CHECK_EQ_INT(open_bytes(b, n, err, sizeof(err)), -1);
        memcpy(b, orig, n); b[pos + 12] = 99; /* unknown type */
        CHECK_EQ_INT(open_bytes(b, n, err, sizeof(err)), -1);
        CHECK(strstr(err, "type") != NULL);
        memcpy(b, orig, n); b[pos + 12] = GGUF_T_Q4_K; /* row 64 not a multiple of 256 */
        CHECK_EQ_INT(open_bytes(b, n, err, sizeof(err)), -1);
        uint64_t off;
        memcpy(&off, orig + pos + 16, 8);
        memcpy(b, orig, n); put_u64(b + pos + 16, off + 4); /* misaligned */
        CHECK_EQ_INT(open_bytes(b, n, err, sizeof(err)), -1);
        CHECK(strstr(err, "aligned") != NULL);
        memcpy(b, orig, n); put_u64(b + pos + 16, (uint64_t)n); /* beyond the end */
        CHECK_EQ_INT(open_bytes(b, n, err, sizeof(err)), -1);
        memcpy(b, orig, n); put_u64(b + pos + 16, UINT64_MAX - 31);
        CHECK_EQ_INT(open_bytes(b, n, err, sizeof(err)), -1);
    }
    free(b);
    free(orig);
}

/* hand-built files: nested arrays, every scalar type, alignment key */
static size_t w_str(unsigned char *p, const char *s)
{
    put_u64(p, strlen(s));
    memcpy(p + 8, s, strlen(s));
    return 8 + strlen(s);
}
static size_t w_u32(unsigned char *p, uint32_t v) { memcpy(p, &v, 4); return 4; }

static void test_handmade(void)
{
    unsigned char b[1024];
    memset(b, 0, sizeof(b));
    size_t o = 0;
    memcpy(b, "GGUF", 4); o = 4;
    o += w_u32(b + o, 3);
    put_u64(b + o, 1); o += 8; /* tensors */
    put_u64(b + o, 4); o += 8; /* kvs */
    o += w_str(b + o, "general.alignment");
    o += w_u32(b + o, GGUF_TYPE_UINT32);
    o += w_u32(b + o, 64);
    o += w_str(b + o, "nested");
    o += w_u32(b + o, GGUF_TYPE_ARRAY);
    o += w_u32(b + o, GGUF_TYPE_ARRAY);
    put_u64(b + o, 2); o += 8;
    for (int k = 0; k < 2; k++) {
        o += w_u32(b + o, GGUF_TYPE_INT16);
        put_u64(b + o, 3); o += 8;
        o += 6;
    }
    o += w_str(b + o, "neg");
    o += w_u32(b + o, GGUF_TYPE_INT32);
    o += w_u32(b + o, (uint32_t)-5);
    o += w_str(b + o, "f64");
    o += w_u32(b + o, GGUF_TYPE_FLOAT64);
    double d = 2.5;
    memcpy(b + o, &d, 8); o += 8;
    o += w_str(b + o, "t");
    o += w_u32(b + o, 1);
    put_u64(b + o, 16); o += 8;
    o += w_u32(b + o, GGUF_T_F32);
    put_u64(b + o, 0); o += 8;
    size_t data = (o + 63) / 64 * 64;
    size_t total = data + 64;
    REQUIRE(total <= sizeof(b));
    struct gguf_file *f = NULL;
    char err[256] = "";
    int rc = gguf_open_mem(b, total, &f, err, sizeof(err));
    if (rc)
        fprintf(stderr, "  %s\n", err);
    REQUIRE(rc == 0);
    CHECK_EQ_INT(gguf_alignment(f), 64);
    int ni = gguf_find_key(f, "nested");
    CHECK_EQ_INT(gguf_get_arr_type(f, ni), GGUF_TYPE_ARRAY);
    CHECK_EQ_INT(gguf_get_arr_n(f, ni), 2);
    CHECK(gguf_get_arr_data(f, ni) == NULL);
    int32_t iv = 0;
    uint32_t uv = 0;
    CHECK(gguf_get_i32(f, "neg", 0, &iv) == 0 && iv == -5);
    CHECK_EQ_INT(gguf_get_u32(f, "neg", 1, &uv), -1); /* negative does not fit u32 */
    float fv = 0;
    CHECK(gguf_get_f32(f, "f64", 0, &fv) == 0 && fv == 2.5f);
    const struct gguf_tensor *t = gguf_find_tensor(f, "t");
    CHECK(t && t->offset == data && t->n_bytes == 64);
    gguf_close(f);
    /* one byte short of the tensor data */
    CHECK_EQ_INT(gguf_open_mem(b, total - 1, &f, err, sizeof(err)), -1);
    /* alignment that is not a power of two */
    unsigned char c[1024];
    memcpy(c, b, sizeof(c));
    size_t apos = 24 + 8 + strlen("general.alignment") + 4;
    w_u32(c + apos, 48);
    CHECK_EQ_INT(gguf_open_mem(c, total, &f, err, sizeof(err)), -1);
    /* duplicate key: rename "neg" to "f64" */
    memcpy(c, b, sizeof(c));
    for (size_t i = 0; i + 3 < total; i++)
        if (memcmp(c + i, "neg", 3) == 0) {
            memcpy(c + i, "f64", 3);
            break;
        }
    CHECK_EQ_INT(gguf_open_mem(c, total, &f, err, sizeof(err)), -1);
    CHECK(strstr(err, "duplicate") != NULL);
}

int main(void)
{
    RUN(test_models_parse);
    RUN(test_specific_values);
    RUN(test_vocab_files);
    RUN(test_truncation);
    RUN(test_corruption);
    RUN(test_handmade);
    return harness_done();
}
