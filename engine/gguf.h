/* gguf.h -- read-only GGUF (v2/v3) parser: metadata and tensor directory of a model file.
 *
 * gguf_open mmaps the file read-only and checks every count, length, type, tensor
 * shape and tensor extent against the file size before anything is used; a
 * truncated or corrupt file gives -1 and one sentence in err, never a crash.
 * Afterwards the struct is immutable: any number of threads may read it.
 *
 * Ownership: every pointer returned by a getter points into the gguf_file (into the
 * mapping or into memory it owns) and stays valid until gguf_close. Strings inside
 * arrays are NOT NUL-terminated (the file does not terminate them): they come back
 * as pointer + length. Keys and scalar string values are NUL-terminated copies.
 * Numeric array data and tensor data are little-endian and may be unaligned for
 * their type: read them with memcpy (or gguf_get_arr_int/f32). */
#ifndef AIRLOCK_ENGINE_GGUF_H
#define AIRLOCK_ENGINE_GGUF_H

#include <stddef.h>
#include <stdint.h>

/* metadata value types (the file's numbering) */
enum gguf_type {
    GGUF_TYPE_UINT8 = 0,
    GGUF_TYPE_INT8 = 1,
    GGUF_TYPE_UINT16 = 2,
    GGUF_TYPE_INT16 = 3,
    GGUF_TYPE_UINT32 = 4,
    GGUF_TYPE_INT32 = 5,
    GGUF_TYPE_FLOAT32 = 6,
    GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8,
    GGUF_TYPE_ARRAY = 9,
    GGUF_TYPE_UINT64 = 10,
    GGUF_TYPE_INT64 = 11,
    GGUF_TYPE_FLOAT64 = 12,
};

/* tensor element types (ggml's numbering); only those gguf_type_size knows are accepted */
enum gguf_tensor_type {
    GGUF_T_F32 = 0,
    GGUF_T_F16 = 1,
    GGUF_T_Q4_0 = 2,
    GGUF_T_Q4_1 = 3,
    GGUF_T_Q5_0 = 6,
    GGUF_T_Q5_1 = 7,
    GGUF_T_Q8_0 = 8,
    GGUF_T_Q8_1 = 9,
    GGUF_T_Q2_K = 10,
    GGUF_T_Q3_K = 11,
    GGUF_T_Q4_K = 12,
    GGUF_T_Q5_K = 13,
    GGUF_T_Q6_K = 14,
    GGUF_T_Q8_K = 15,
    GGUF_T_I8 = 24,
    GGUF_T_I16 = 25,
    GGUF_T_I32 = 26,
    GGUF_T_I64 = 27,
    GGUF_T_F64 = 28,
    GGUF_T_BF16 = 30,
};

#define GGUF_MAX_DIMS 4
#define GGUF_DEFAULT_ALIGNMENT 32

struct gguf_file;

struct gguf_tensor {
    const char *name;      /* NUL-terminated */
    uint32_t type;         /* enum gguf_tensor_type */
    uint32_t n_dims;       /* 1..4 */
    int64_t ne[GGUF_MAX_DIMS]; /* ne[0] = row length (contiguous); unused dims are 1 */
    const void *data;      /* into the mapping; aligned to general.alignment in the file */
    uint64_t n_bytes;
    uint64_t offset;       /* from the start of the file */
};

/* gguf_open -- mmap and parse path. On success *out is owned by the caller (gguf_close).
 * On failure returns -1, *out = NULL, err holds one sentence (without the path). */
int gguf_open(const char *path, struct gguf_file **out, char *err, size_t errlen)
    __attribute__((warn_unused_result));
/* gguf_open_mem -- the same over a caller's buffer (borrowed: must outlive the result). */
int gguf_open_mem(const void *data, size_t size, struct gguf_file **out, char *err,
                  size_t errlen) __attribute__((warn_unused_result));
void gguf_close(struct gguf_file *f);

uint32_t gguf_version(const struct gguf_file *f);
uint32_t gguf_alignment(const struct gguf_file *f);
size_t gguf_size(const struct gguf_file *f);

/* metadata by index */
int gguf_n_kv(const struct gguf_file *f);
const char *gguf_key(const struct gguf_file *f, int idx);        /* NULL if out of range */
int gguf_kv_type(const struct gguf_file *f, int idx);            /* enum gguf_type, -1 if bad idx */
/* gguf_find_key -- index of key, or -1 if absent */
int gguf_find_key(const struct gguf_file *f, const char *key);

/* Typed scalar getters. Absent key: *out = def, return 0. Present but of a type that
 * does not convert exactly (any integer type converts when the value fits; f32 reads
 * F32 or F64): *out = def, return -1. */
int gguf_get_u32(const struct gguf_file *f, const char *key, uint32_t def, uint32_t *out);
int gguf_get_i32(const struct gguf_file *f, const char *key, int32_t def, int32_t *out);
int gguf_get_u64(const struct gguf_file *f, const char *key, uint64_t def, uint64_t *out);
int gguf_get_f32(const struct gguf_file *f, const char *key, float def, float *out);
int gguf_get_bool(const struct gguf_file *f, const char *key, int def, int *out);
/* gguf_get_str -- NUL-terminated value of a STRING key (len without the NUL, may be NULL);
 * NULL when absent or not a string. The value itself may contain NUL bytes: use len. */
const char *gguf_get_str(const struct gguf_file *f, const char *key, size_t *len);

/* Arrays, by key index (from gguf_find_key). */
int gguf_get_arr_type(const struct gguf_file *f, int idx);   /* element type; -1 if not an array */
uint64_t gguf_get_arr_n(const struct gguf_file *f, int idx); /* 0 if not an array */
/* element i of a STRING array (not NUL-terminated), NULL if not a string array or i out of range */
const char *gguf_get_arr_str(const struct gguf_file *f, int idx, uint64_t i, size_t *len);
/* raw little-endian data of a numeric/bool array (possibly unaligned); NULL for string or
 * nested arrays */
const void *gguf_get_arr_data(const struct gguf_file *f, int idx);
/* element i of an integer/bool array as int64 (-1 on bad type/index: check the type first),
 * of a FLOAT32/FLOAT64 array as float (0 on bad type/index) */
int64_t gguf_get_arr_int(const struct gguf_file *f, int idx, uint64_t i);
float gguf_get_arr_f32(const struct gguf_file *f, int idx, uint64_t i);

/* Tensors. */
int gguf_n_tensors(const struct gguf_file *f);
const struct gguf_tensor *gguf_tensor_at(const struct gguf_file *f, int i); /* NULL if out of range */
const struct gguf_tensor *gguf_find_tensor(const struct gguf_file *f, const char *name);

/* gguf_type_size -- block length (values) and block size (bytes) of a tensor type;
 * -1 for a type this parser does not know. */
int gguf_type_size(uint32_t type, uint32_t *blck, uint32_t *bytes);
const char *gguf_type_name(uint32_t type); /* "Q8_0", ...; "?" if unknown */
/* gguf_row_bytes -- bytes of a row of n values (n a multiple of the block length) */
uint64_t gguf_row_bytes(uint32_t type, int64_t n);

#endif
