/* gguf.c -- GGUF v2/v3 reader: mmap, bounds-checked parse of header, metadata and tensor infos. */
#include "engine/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define GGUF_MAGIC "GGUF"
/* Sanity caps: far above any real model, low enough that a hostile count cannot
 * make us allocate absurd tables before the byte checks catch it. */
#define MAX_KV (1u << 20)
#define MAX_TENSORS (1u << 20)
#define MAX_NEST 8
#define MAX_ALIGN (1u << 20)

struct kv {
    char *key;          /* owned, NUL-terminated */
    uint32_t type;      /* enum gguf_type */
    uint32_t arr_type;  /* element type when type == ARRAY */
    uint64_t arr_n;
    const uint8_t *val; /* into the data: scalar value, string bytes, or array payload */
    uint64_t val_len;   /* byte length of val (string: its length) */
    char *str;          /* owned NUL-terminated copy for STRING values */
    uint64_t *str_off;  /* owned, for string arrays: offset of element i's length field */
};

struct gguf_file {
    const uint8_t *base;
    size_t size;
    int mapped;
    uint32_t version;
    uint32_t alignment;
    uint64_t n_kv;
    struct kv *kvs;
    uint64_t n_tensors;
    struct gguf_tensor *tensors;
    char **tensor_names; /* owned */
};

struct rd {
    const uint8_t *p;
    size_t size;
    size_t off;
    char *err;
    size_t errlen;
};

static int fail(struct rd *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(struct rd *r, const char *fmt, ...)
{
    if (r->err && r->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->err, r->errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static size_t remaining(const struct rd *r)
{
    return r->size - r->off;
}

static int need(struct rd *r, uint64_t n, const char *what)
{
    if (n > remaining(r))
        return fail(r, "file truncated: %s at offset %zu needs %llu bytes, %zu left", what,
                    r->off, (unsigned long long)n, remaining(r));
    return 0;
}

static int rd_u32(struct rd *r, uint32_t *v, const char *what)
{
    if (need(r, 4, what) < 0)
        return -1;
    memcpy(v, r->p + r->off, 4);
    r->off += 4;
    return 0;
}

static int rd_u64(struct rd *r, uint64_t *v, const char *what)
{
    if (need(r, 8, what) < 0)
        return -1;
    memcpy(v, r->p + r->off, 8);
    r->off += 8;
    return 0;
}

/* A string: u64 length then bytes. Returns the byte pointer (not terminated). */
static int rd_str(struct rd *r, const uint8_t **s, uint64_t *len, const char *what)
{
    if (rd_u64(r, len, what) < 0)
        return -1;
    if (*len > remaining(r))
        return fail(r, "bad %s at offset %zu: string length %llu exceeds the %zu bytes left", what,
                    r->off - 8, (unsigned long long)*len, remaining(r));
    *s = r->p + r->off;
    r->off += (size_t)*len;
    return 0;
}

static char *dup_n(const uint8_t *s, uint64_t n)
{
    char *d = malloc((size_t)n + 1);
    if (!d)
        return NULL;
    memcpy(d, s, (size_t)n);
    d[n] = '\0';
    return d;
}

static int scalar_size(uint32_t t)
{
    switch (t) {
    case GGUF_TYPE_UINT8:
    case GGUF_TYPE_INT8:
    case GGUF_TYPE_BOOL:
        return 1;
    case GGUF_TYPE_UINT16:
    case GGUF_TYPE_INT16:
        return 2;
    case GGUF_TYPE_UINT32:
    case GGUF_TYPE_INT32:
    case GGUF_TYPE_FLOAT32:
        return 4;
    case GGUF_TYPE_UINT64:
    case GGUF_TYPE_INT64:
    case GGUF_TYPE_FLOAT64:
        return 8;
    default:
        return 0;
    }
}

/* Skip over one value of type t (used for nested arrays, which we only validate). */
static int skip_value(struct rd *r, uint32_t t, int depth)
{
    int sz = scalar_size(t);
    if (sz) {
        if (need(r, (uint64_t)sz, "value") < 0)
            return -1;
        r->off += (size_t)sz;
        return 0;
    }
    if (t == GGUF_TYPE_STRING) {
        const uint8_t *s;
        uint64_t len;
        return rd_str(r, &s, &len, "string value");
    }
    if (t == GGUF_TYPE_ARRAY) {
        uint32_t et;
        uint64_t n;
        if (depth >= MAX_NEST)
            return fail(r, "arrays nested deeper than %d at offset %zu", MAX_NEST, r->off);
        if (rd_u32(r, &et, "array type") < 0 || rd_u64(r, &n, "array length") < 0)
            return -1;
        int esz = scalar_size(et);
        if (esz) {
            if (n > remaining(r) / (uint64_t)esz)
                return fail(r, "array of %llu elements of %d bytes at offset %zu exceeds the file",
                            (unsigned long long)n, esz, r->off);
            r->off += (size_t)(n * (uint64_t)esz);
            return 0;
        }
        if (et != GGUF_TYPE_STRING && et != GGUF_TYPE_ARRAY)
            return fail(r, "unknown array element type %u at offset %zu", et, r->off - 12);
        /* each element takes at least 8 (string) or 12 (array) bytes */
        if (n > remaining(r) / 8)
            return fail(r, "array length %llu at offset %zu exceeds the file",
                        (unsigned long long)n, r->off - 8);
        for (uint64_t i = 0; i < n; i++)
            if (skip_value(r, et, depth + 1) < 0)
                return -1;
        return 0;
    }
    return fail(r, "unknown value type %u at offset %zu", t, r->off);
}

static int parse_kv(struct rd *r, struct kv *kv, uint64_t idx)
{
    const uint8_t *ks;
    uint64_t klen;
    if (rd_str(r, &ks, &klen, "metadata key") < 0)
        return -1;
    if (klen == 0 || klen > 65535)
        return fail(r, "metadata key %llu has bad length %llu", (unsigned long long)idx,
                    (unsigned long long)klen);
    if (!(kv->key = dup_n(ks, klen)))
        return fail(r, "out of memory");
    if (strlen(kv->key) != klen)
        return fail(r, "metadata key %llu contains a NUL byte", (unsigned long long)idx);
    if (rd_u32(r, &kv->type, "metadata type") < 0)
        return -1;
    int sz = scalar_size(kv->type);
    if (sz) {
        if (need(r, (uint64_t)sz, "metadata value") < 0)
            return -1;
        kv->val = r->p + r->off;
        kv->val_len = (uint64_t)sz;
        r->off += (size_t)sz;
        return 0;
    }
    if (kv->type == GGUF_TYPE_STRING) {
        if (rd_str(r, &kv->val, &kv->val_len, "string value") < 0)
            return -1;
        if (!(kv->str = dup_n(kv->val, kv->val_len)))
            return fail(r, "out of memory");
        return 0;
    }
    if (kv->type != GGUF_TYPE_ARRAY)
        return fail(r, "metadata key '%s' has unknown type %u", kv->key, kv->type);
    if (rd_u32(r, &kv->arr_type, "array type") < 0 || rd_u64(r, &kv->arr_n, "array length") < 0)
        return -1;
    size_t start = r->off;
    kv->val = r->p + r->off;
    int esz = scalar_size(kv->arr_type);
    if (esz) {
        if (kv->arr_n > remaining(r) / (uint64_t)esz)
            return fail(r, "array '%s' of %llu elements exceeds the file", kv->key,
                        (unsigned long long)kv->arr_n);
        r->off += (size_t)(kv->arr_n * (uint64_t)esz);
    } else if (kv->arr_type == GGUF_TYPE_STRING) {
        if (kv->arr_n > remaining(r) / 8)
            return fail(r, "string array '%s' of %llu elements exceeds the file", kv->key,
                        (unsigned long long)kv->arr_n);
        kv->str_off = malloc((size_t)(kv->arr_n ? kv->arr_n : 1) * sizeof(uint64_t));
        if (!kv->str_off)
            return fail(r, "out of memory");
        for (uint64_t i = 0; i < kv->arr_n; i++) {
            const uint8_t *s;
            uint64_t len;
            kv->str_off[i] = r->off;
            if (rd_str(r, &s, &len, "array string") < 0)
                return -1;
        }
    } else if (kv->arr_type == GGUF_TYPE_ARRAY) {
        if (kv->arr_n > remaining(r) / 12)
            return fail(r, "nested array '%s' of %llu elements exceeds the file", kv->key,
                        (unsigned long long)kv->arr_n);
        for (uint64_t i = 0; i < kv->arr_n; i++)
            if (skip_value(r, GGUF_TYPE_ARRAY, 1) < 0)
                return -1;
    } else {
        return fail(r, "array '%s' has unknown element type %u", kv->key, kv->arr_type);
    }
    kv->val_len = r->off - start;
    return 0;
}

int gguf_type_size(uint32_t type, uint32_t *blck, uint32_t *bytes)
{
    uint32_t b, s;
    switch (type) {
    case GGUF_T_F32: b = 1, s = 4; break;
    case GGUF_T_F16: b = 1, s = 2; break;
    case GGUF_T_BF16: b = 1, s = 2; break;
    case GGUF_T_Q4_0: b = 32, s = 18; break;
    case GGUF_T_Q4_1: b = 32, s = 20; break;
    case GGUF_T_Q5_0: b = 32, s = 22; break;
    case GGUF_T_Q5_1: b = 32, s = 24; break;
    case GGUF_T_Q8_0: b = 32, s = 34; break;
    case GGUF_T_Q8_1: b = 32, s = 36; break;
    case GGUF_T_Q2_K: b = 256, s = 84; break;
    case GGUF_T_Q3_K: b = 256, s = 110; break;
    case GGUF_T_Q4_K: b = 256, s = 144; break;
    case GGUF_T_Q5_K: b = 256, s = 176; break;
    case GGUF_T_Q6_K: b = 256, s = 210; break;
    case GGUF_T_Q8_K: b = 256, s = 292; break;
    case GGUF_T_I8: b = 1, s = 1; break;
    case GGUF_T_I16: b = 1, s = 2; break;
    case GGUF_T_I32: b = 1, s = 4; break;
    case GGUF_T_I64: b = 1, s = 8; break;
    case GGUF_T_F64: b = 1, s = 8; break;
    default: return -1;
    }
    if (blck)
        *blck = b;
    if (bytes)
        *bytes = s;
    return 0;
}

const char *gguf_type_name(uint32_t type)
{
    switch (type) {
    case GGUF_T_F32: return "F32";
    case GGUF_T_F16: return "F16";
    case GGUF_T_BF16: return "BF16";
    case GGUF_T_Q4_0: return "Q4_0";
    case GGUF_T_Q4_1: return "Q4_1";
    case GGUF_T_Q5_0: return "Q5_0";
    case GGUF_T_Q5_1: return "Q5_1";
    case GGUF_T_Q8_0: return "Q8_0";
    case GGUF_T_Q8_1: return "Q8_1";
    case GGUF_T_Q2_K: return "Q2_K";
    case GGUF_T_Q3_K: return "Q3_K";
    case GGUF_T_Q4_K: return "Q4_K";
    case GGUF_T_Q5_K: return "Q5_K";
    case GGUF_T_Q6_K: return "Q6_K";
    case GGUF_T_Q8_K: return "Q8_K";
    case GGUF_T_I8: return "I8";
    case GGUF_T_I16: return "I16";
    case GGUF_T_I32: return "I32";
    case GGUF_T_I64: return "I64";
    case GGUF_T_F64: return "F64";
    default: return "?";
    }
}

uint64_t gguf_row_bytes(uint32_t type, int64_t n)
{
    uint32_t b, s;
    if (gguf_type_size(type, &b, &s) < 0 || n < 0)
        return 0;
    return (uint64_t)n / b * s;
}

static int parse_tensor(struct rd *r, struct gguf_file *f, uint64_t i)
{
    struct gguf_tensor *t = &f->tensors[i];
    const uint8_t *ns;
    uint64_t nlen;
    if (rd_str(r, &ns, &nlen, "tensor name") < 0)
        return -1;
    if (nlen == 0 || nlen > 4096)
        return fail(r, "tensor %llu has bad name length %llu", (unsigned long long)i,
                    (unsigned long long)nlen);
    if (!(f->tensor_names[i] = dup_n(ns, nlen)))
        return fail(r, "out of memory");
    t->name = f->tensor_names[i];
    if (strlen(t->name) != nlen)
        return fail(r, "tensor %llu name contains a NUL byte", (unsigned long long)i);
    if (rd_u32(r, &t->n_dims, "tensor n_dims") < 0)
        return -1;
    if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
        return fail(r, "tensor '%s' has %u dimensions (1..4 allowed)", t->name, t->n_dims);
    for (int d = 0; d < GGUF_MAX_DIMS; d++)
        t->ne[d] = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        uint64_t v;
        if (rd_u64(r, &v, "tensor dimension") < 0)
            return -1;
        if (v == 0 || v > (uint64_t)INT64_MAX)
            return fail(r, "tensor '%s' dimension %u is %llu", t->name, d, (unsigned long long)v);
        t->ne[d] = (int64_t)v;
    }
    if (rd_u32(r, &t->type, "tensor type") < 0)
        return -1;
    uint32_t blck, bsz;
    if (gguf_type_size(t->type, &blck, &bsz) < 0)
        return fail(r, "tensor '%s' has unknown type %u", t->name, t->type);
    if (t->ne[0] % blck != 0)
        return fail(r, "tensor '%s' (%s) row length %lld is not a multiple of %u", t->name,
                    gguf_type_name(t->type), (long long)t->ne[0], blck);
    /* n_bytes = ne0/blck*bsz * ne1*ne2*ne3, overflow-checked against the file size */
    if ((uint64_t)t->ne[0] / blck > (uint64_t)r->size / bsz)
        return fail(r, "tensor '%s' is larger than the file", t->name);
    uint64_t nb = (uint64_t)t->ne[0] / blck * bsz;
    for (int d = 1; d < GGUF_MAX_DIMS; d++) {
        if ((uint64_t)t->ne[d] > (uint64_t)r->size || nb > (uint64_t)r->size / (uint64_t)t->ne[d])
            return fail(r, "tensor '%s' is larger than the file", t->name);
        nb *= (uint64_t)t->ne[d];
    }
    if (nb > (uint64_t)r->size)
        return fail(r, "tensor '%s' is larger than the file", t->name);
    t->n_bytes = nb;
    if (rd_u64(r, &t->offset, "tensor offset") < 0)
        return -1;
    return 0;
}

/* first_duplicate -- a name that occurs twice in names[0..n), NULL if none, (char *)-1 when
 * out of memory. Hash table with linear probing: counts may be large in hostile files. */
static const char *first_duplicate(const char **names, uint64_t n)
{
    if (n < 2)
        return NULL;
    uint64_t cap = 1;
    while (cap < n * 2)
        cap <<= 1;
    int64_t *tab = malloc((size_t)cap * sizeof(int64_t));
    if (!tab)
        return (const char *)-1;
    for (uint64_t k = 0; k < cap; k++)
        tab[k] = -1;
    const char *dup = NULL;
    for (uint64_t i = 0; i < n && !dup; i++) {
        uint64_t h = 1469598103934665603ull;
        for (const char *p = names[i]; *p; p++)
            h = (h ^ (uint8_t)*p) * 1099511628211ull;
        uint64_t k = h & (cap - 1);
        while (tab[k] >= 0 && !dup) {
            if (strcmp(names[tab[k]], names[i]) == 0)
                dup = names[i];
            k = (k + 1) & (cap - 1);
        }
        tab[k] = (int64_t)i;
    }
    free(tab);
    return dup;
}

static void free_contents(struct gguf_file *f)
{
    if (f->kvs) {
        for (uint64_t i = 0; i < f->n_kv; i++) {
            free(f->kvs[i].key);
            free(f->kvs[i].str);
            free(f->kvs[i].str_off);
        }
        free(f->kvs);
    }
    if (f->tensor_names) {
        for (uint64_t i = 0; i < f->n_tensors; i++)
            free(f->tensor_names[i]);
        free(f->tensor_names);
    }
    free(f->tensors);
}

static int parse(struct gguf_file *f, char *err, size_t errlen)
{
    struct rd r = {f->base, f->size, 0, err, errlen};
    if (f->size < 24)
        return fail(&r, "file too small for a GGUF header (%zu bytes)", f->size);
    if (memcmp(f->base, GGUF_MAGIC, 4) != 0)
        return fail(&r, "not a GGUF file (bad magic)");
    r.off = 4;
    if (rd_u32(&r, &f->version, "version") < 0)
        return -1;
    if (f->version != 2 && f->version != 3)
        return fail(&r, "unsupported GGUF version %u (2 or 3 expected)", f->version);
    uint64_t n_tensors, n_kv;
    if (rd_u64(&r, &n_tensors, "tensor count") < 0 || rd_u64(&r, &n_kv, "metadata count") < 0)
        return -1;
    /* a KV takes at least 8+1+4+1 bytes, a tensor info at least 8+1+4+8+4+8 */
    if (n_kv > MAX_KV || n_kv > remaining(&r) / 14)
        return fail(&r, "metadata count %llu is impossible for a %zu-byte file",
                    (unsigned long long)n_kv, f->size);
    if (n_tensors > MAX_TENSORS || n_tensors > remaining(&r) / 33)
        return fail(&r, "tensor count %llu is impossible for a %zu-byte file",
                    (unsigned long long)n_tensors, f->size);
    f->kvs = calloc((size_t)(n_kv ? n_kv : 1), sizeof(*f->kvs));
    f->tensors = calloc((size_t)(n_tensors ? n_tensors : 1), sizeof(*f->tensors));
    f->tensor_names = calloc((size_t)(n_tensors ? n_tensors : 1), sizeof(char *));
    if (!f->kvs || !f->tensors || !f->tensor_names)
        return fail(&r, "out of memory");
    f->n_kv = n_kv;
    f->n_tensors = n_tensors;
    for (uint64_t i = 0; i < n_kv; i++)
        if (parse_kv(&r, &f->kvs[i], i) < 0)
            return -1;
    {
        const char **keys = malloc((size_t)(n_kv ? n_kv : 1) * sizeof(char *));
        if (!keys)
            return fail(&r, "out of memory");
        for (uint64_t i = 0; i < n_kv; i++)
            keys[i] = f->kvs[i].key;
        const char *dup = first_duplicate(keys, n_kv);
        free(keys);
        if (dup == (const char *)-1)
            return fail(&r, "out of memory");
        if (dup)
            return fail(&r, "duplicate metadata key '%s'", dup);
    }

    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    int ai = gguf_find_key(f, "general.alignment");
    if (ai >= 0) {
        uint32_t a;
        if (gguf_get_u32(f, "general.alignment", 0, &a) < 0 || a == 0 || a > MAX_ALIGN ||
            (a & (a - 1)) != 0)
            return fail(&r, "general.alignment must be a power of two up to %u", MAX_ALIGN);
        f->alignment = a;
    }

    for (uint64_t i = 0; i < n_tensors; i++)
        if (parse_tensor(&r, f, i) < 0)
            return -1;

    uint64_t data_start = ((uint64_t)r.off + f->alignment - 1) / f->alignment * f->alignment;
    if (n_tensors > 0 && data_start > f->size)
        return fail(&r, "file truncated: tensor data would start at %llu beyond its %zu bytes",
                    (unsigned long long)data_start, f->size);
    uint64_t data_size = n_tensors > 0 ? f->size - data_start : 0;
    for (uint64_t i = 0; i < n_tensors; i++) {
        struct gguf_tensor *t = &f->tensors[i];
        if (t->offset % f->alignment != 0)
            return fail(&r, "tensor '%s' offset %llu is not aligned to %u", t->name,
                        (unsigned long long)t->offset, f->alignment);
        if (t->offset > data_size || t->n_bytes > data_size - t->offset)
            return fail(&r,
                        "tensor '%s' (%llu bytes at data offset %llu) extends beyond the end of "
                        "the file (truncated?)",
                        t->name, (unsigned long long)t->n_bytes, (unsigned long long)t->offset);
        t->offset += data_start;
        t->data = f->base + t->offset;
    }
    const char **names = malloc((size_t)(n_tensors ? n_tensors : 1) * sizeof(char *));
    if (!names)
        return fail(&r, "out of memory");
    for (uint64_t i = 0; i < n_tensors; i++)
        names[i] = f->tensors[i].name;
    const char *dup = first_duplicate(names, n_tensors);
    free(names);
    if (dup == (const char *)-1)
        return fail(&r, "out of memory");
    if (dup)
        return fail(&r, "duplicate tensor name '%s'", dup);
    return 0;
}

int gguf_open_mem(const void *data, size_t size, struct gguf_file **out, char *err, size_t errlen)
{
    *out = NULL;
    struct gguf_file *f = calloc(1, sizeof(*f));
    if (!f) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    f->base = data;
    f->size = size;
    if (parse(f, err, errlen) < 0) {
        gguf_close(f);
        return -1;
    }
    *out = f;
    return 0;
}

int gguf_open(const char *path, struct gguf_file **out, char *err, size_t errlen)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open: %s", strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "not a regular file");
        close(fd);
        return -1;
    }
    if (st.st_size < 24) {
        snprintf(err, errlen, "file too small for a GGUF header (%lld bytes)",
                 (long long)st.st_size);
        close(fd);
        return -1;
    }
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) {
        snprintf(err, errlen, "mmap failed: %s", strerror(errno));
        return -1;
    }
    struct gguf_file *f = calloc(1, sizeof(*f));
    if (!f) {
        munmap(m, (size_t)st.st_size);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    f->base = m;
    f->size = (size_t)st.st_size;
    f->mapped = 1;
    if (parse(f, err, errlen) < 0) {
        gguf_close(f);
        return -1;
    }
    *out = f;
    return 0;
}

void gguf_close(struct gguf_file *f)
{
    if (!f)
        return;
    free_contents(f);
    if (f->mapped)
        munmap((void *)f->base, f->size);
    free(f);
}

uint32_t gguf_version(const struct gguf_file *f) { return f->version; }
uint32_t gguf_alignment(const struct gguf_file *f) { return f->alignment; }
size_t gguf_size(const struct gguf_file *f) { return f->size; }
int gguf_n_kv(const struct gguf_file *f) { return (int)f->n_kv; }

const char *gguf_key(const struct gguf_file *f, int idx)
{
    return idx >= 0 && (uint64_t)idx < f->n_kv ? f->kvs[idx].key : NULL;
}

int gguf_kv_type(const struct gguf_file *f, int idx)
{
    return idx >= 0 && (uint64_t)idx < f->n_kv ? (int)f->kvs[idx].type : -1;
}

int gguf_find_key(const struct gguf_file *f, const char *key)
{
    for (uint64_t i = 0; i < f->n_kv; i++)
        if (f->kvs[i].key && strcmp(f->kvs[i].key, key) == 0)
            return (int)i;
    return -1;
}

/* Integer value of a scalar kv; -1 if it is not an integer (or bool) type. */
static int kv_int(const struct kv *kv, int *is_signed, uint64_t *u, int64_t *s)
{
    const uint8_t *p = kv->val;
    switch (kv->type) {
    case GGUF_TYPE_UINT8: *u = p[0]; *is_signed = 0; return 0;
    case GGUF_TYPE_BOOL: *u = p[0]; *is_signed = 0; return 0;
    case GGUF_TYPE_INT8: { int8_t v; memcpy(&v, p, 1); *s = v; *is_signed = 1; return 0; }
    case GGUF_TYPE_UINT16: { uint16_t v; memcpy(&v, p, 2); *u = v; *is_signed = 0; return 0; }
    case GGUF_TYPE_INT16: { int16_t v; memcpy(&v, p, 2); *s = v; *is_signed = 1; return 0; }
    case GGUF_TYPE_UINT32: { uint32_t v; memcpy(&v, p, 4); *u = v; *is_signed = 0; return 0; }
    case GGUF_TYPE_INT32: { int32_t v; memcpy(&v, p, 4); *s = v; *is_signed = 1; return 0; }
    case GGUF_TYPE_UINT64: { uint64_t v; memcpy(&v, p, 8); *u = v; *is_signed = 0; return 0; }
    case GGUF_TYPE_INT64: { int64_t v; memcpy(&v, p, 8); *s = v; *is_signed = 1; return 0; }
    default: return -1;
    }
}

static const struct kv *find(const struct gguf_file *f, const char *key)
{
    int i = gguf_find_key(f, key);
    return i < 0 ? NULL : &f->kvs[i];
}

/* get_int -- 1 found and in [lo, hi], 0 absent, -1 wrong type or out of range */
static int get_int(const struct gguf_file *f, const char *key, int64_t lo, uint64_t hi,
                   int64_t *sv, uint64_t *uv)
{
    const struct kv *kv = find(f, key);
    if (!kv)
        return 0;
    if (kv->type == GGUF_TYPE_BOOL)
        return -1;
    int sgn;
    uint64_t u = 0;
    int64_t s = 0;
    if (kv_int(kv, &sgn, &u, &s) < 0)
        return -1;
    if (sgn) {
        if (s < lo || (s > 0 && (uint64_t)s > hi))
            return -1;
        *sv = s;
        *uv = (uint64_t)s;
    } else {
        if (u > hi)
            return -1;
        *uv = u;
        *sv = (int64_t)u;
    }
    return 1;
}

int gguf_get_u32(const struct gguf_file *f, const char *key, uint32_t def, uint32_t *out)
{
    int64_t s;
    uint64_t u;
    int rc = get_int(f, key, 0, UINT32_MAX, &s, &u);
    *out = rc == 1 ? (uint32_t)u : def;
    return rc < 0 ? -1 : 0;
}

int gguf_get_i32(const struct gguf_file *f, const char *key, int32_t def, int32_t *out)
{
    int64_t s;
    uint64_t u;
    int rc = get_int(f, key, INT32_MIN, INT32_MAX, &s, &u);
    *out = rc == 1 ? (int32_t)s : def;
    return rc < 0 ? -1 : 0;
}

int gguf_get_u64(const struct gguf_file *f, const char *key, uint64_t def, uint64_t *out)
{
    int64_t s;
    uint64_t u;
    int rc = get_int(f, key, 0, UINT64_MAX, &s, &u);
    *out = rc == 1 ? u : def;
    return rc < 0 ? -1 : 0;
}

int gguf_get_f32(const struct gguf_file *f, const char *key, float def, float *out)
{
    const struct kv *kv = find(f, key);
    *out = def;
    if (!kv)
        return 0;
    if (kv->type == GGUF_TYPE_FLOAT32) {
        memcpy(out, kv->val, 4);
        return 0;
    }
    if (kv->type == GGUF_TYPE_FLOAT64) {
        double d;
        memcpy(&d, kv->val, 8);
        *out = (float)d;
        return 0;
    }
    return -1;
}

int gguf_get_bool(const struct gguf_file *f, const char *key, int def, int *out)
{
    const struct kv *kv = find(f, key);
    *out = def;
    if (!kv)
        return 0;
    if (kv->type != GGUF_TYPE_BOOL)
        return -1;
    *out = kv->val[0] != 0;
    return 0;
}

const char *gguf_get_str(const struct gguf_file *f, const char *key, size_t *len)
{
    const struct kv *kv = find(f, key);
    if (!kv || kv->type != GGUF_TYPE_STRING)
        return NULL;
    if (len)
        *len = (size_t)kv->val_len;
    return kv->str;
}

static const struct kv *arr(const struct gguf_file *f, int idx)
{
    if (idx < 0 || (uint64_t)idx >= f->n_kv || f->kvs[idx].type != GGUF_TYPE_ARRAY)
        return NULL;
    return &f->kvs[idx];
}

int gguf_get_arr_type(const struct gguf_file *f, int idx)
{
    const struct kv *kv = arr(f, idx);
    return kv ? (int)kv->arr_type : -1;
}

uint64_t gguf_get_arr_n(const struct gguf_file *f, int idx)
{
    const struct kv *kv = arr(f, idx);
    return kv ? kv->arr_n : 0;
}

const char *gguf_get_arr_str(const struct gguf_file *f, int idx, uint64_t i, size_t *len)
{
    const struct kv *kv = arr(f, idx);
    if (!kv || kv->arr_type != GGUF_TYPE_STRING || i >= kv->arr_n)
        return NULL;
    uint64_t n;
    memcpy(&n, f->base + kv->str_off[i], 8);
    if (len)
        *len = (size_t)n;
    return (const char *)f->base + kv->str_off[i] + 8;
}

const void *gguf_get_arr_data(const struct gguf_file *f, int idx)
{
    const struct kv *kv = arr(f, idx);
    if (!kv || !scalar_size(kv->arr_type))
        return NULL;
    return kv->val;
}

int64_t gguf_get_arr_int(const struct gguf_file *f, int idx, uint64_t i)
{
    const struct kv *kv = arr(f, idx);
    if (!kv || i >= kv->arr_n)
        return -1;
    struct kv one = {0};
    one.type = kv->arr_type;
    one.val = kv->val + i * (uint64_t)scalar_size(kv->arr_type);
    int sgn;
    uint64_t u = 0;
    int64_t s = 0;
    if (!scalar_size(kv->arr_type) || kv_int(&one, &sgn, &u, &s) < 0)
        return -1;
    return sgn ? s : (int64_t)u;
}

float gguf_get_arr_f32(const struct gguf_file *f, int idx, uint64_t i)
{
    const struct kv *kv = arr(f, idx);
    if (!kv || i >= kv->arr_n)
        return 0.0f;
    if (kv->arr_type == GGUF_TYPE_FLOAT32) {
        float v;
        memcpy(&v, kv->val + 4 * i, 4);
        return v;
    }
    if (kv->arr_type == GGUF_TYPE_FLOAT64) {
        double v;
        memcpy(&v, kv->val + 8 * i, 8);
        return (float)v;
    }
    return 0.0f;
}

int gguf_n_tensors(const struct gguf_file *f) { return (int)f->n_tensors; }

const struct gguf_tensor *gguf_tensor_at(const struct gguf_file *f, int i)
{
    return i >= 0 && (uint64_t)i < f->n_tensors ? &f->tensors[i] : NULL;
}

const struct gguf_tensor *gguf_find_tensor(const struct gguf_file *f, const char *name)
{
    for (uint64_t i = 0; i < f->n_tensors; i++)
        if (strcmp(f->tensors[i].name, name) == 0)
            return &f->tensors[i];
    return NULL;
}
