/* fuzz_gguf.c -- libFuzzer driver for the GGUF parser: any bytes must parse or fail cleanly. */
#include "engine/gguf.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct gguf_file *f = NULL;
    char err[256];
    if (gguf_open_mem(data, size, &f, err, sizeof(err)) != 0)
        return 0;
    /* walk everything the accessors expose */
    for (int i = 0; i < gguf_n_kv(f); i++) {
        const char *k = gguf_key(f, i);
        size_t len;
        uint32_t u;
        float x;
        (void)gguf_get_u32(f, k, 0, &u);
        (void)gguf_get_f32(f, k, 0, &x);
        (void)gguf_get_str(f, k, &len);
        uint64_t n = gguf_get_arr_n(f, i);
        for (uint64_t j = 0; j < n && j < 64; j++) {
            (void)gguf_get_arr_str(f, i, j, &len);
            (void)gguf_get_arr_int(f, i, j);
            (void)gguf_get_arr_f32(f, i, j);
        }
    }
    volatile uint8_t sink = 0;
    for (int i = 0; i < gguf_n_tensors(f); i++) {
        const struct gguf_tensor *t = gguf_tensor_at(f, i);
        if (t->n_bytes)
            sink ^= ((const uint8_t *)t->data)[t->n_bytes - 1];
    }
    (void)sink;
    gguf_close(f);
    return 0;
}
