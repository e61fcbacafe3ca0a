/* fuzz_util.h -- what several fuzz targets share; each target is one translation unit
 * (scripts/fuzz.sh), so this header defines, once per target:
 *   __ubsan_default_options   undefined behaviour ends the run like a broken invariant
 *   fuzz_zero_random          libsodium's randomness all zeros, so the placeholder suffix
 *                             proxy_decide draws per request is always "aaaaaa"
 *                             ([EMAIL_1_aaaaaa]) and seeds can hold placeholders that restore
 *   fuzz_fail                 print an invariant and the bytes it was judged on, escaped,
 *                             then abort */
#ifndef AIRLOCK_FUZZ_UTIL_H
#define AIRLOCK_FUZZ_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

const char *__ubsan_default_options(void);
const char *__ubsan_default_options(void)
{
    return "halt_on_error=1:print_stacktrace=1";
}

static inline const char *fuzz_zero_name(void)
{
    return "fuzz-zeros";
}

static inline uint32_t fuzz_zero_u32(void)
{
    return 0;
}

static inline uint32_t fuzz_zero_uniform(const uint32_t upper_bound)
{
    (void)upper_bound;
    return 0;
}

static inline void fuzz_zero_buf(void *const buf, const size_t size)
{
    memset(buf, 0, size);
}

/* before sodium_init; aborts if libsodium refuses */
static inline void fuzz_zero_random(void)
{
    static randombytes_implementation zeros = {.implementation_name = fuzz_zero_name,
                                               .random = fuzz_zero_u32,
                                               .uniform = fuzz_zero_uniform,
                                               .buf = fuzz_zero_buf};

    if (randombytes_set_implementation(&zeros) != 0)
        abort();
}

static inline void __attribute__((noreturn))
fuzz_fail(const char *target, const char *what, const char *label, const char *b, size_t n)
{
    fprintf(stderr, "%s: invariant broken: %s\n%s (%zu): \"", target, what, label, n);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)b[i];
        if (c == '\n')
            fputs("\\n", stderr);
        else if (c == '\r')
            fputs("\\r", stderr);
        else if (c == '"' || c == '\\')
            fprintf(stderr, "\\%c", c);
        else if (c < 0x20 || c >= 0x7f)
            fprintf(stderr, "\\x%02x", c);
        else
            fputc(c, stderr);
    }
    fputs("\"\n", stderr);
    abort();
}

#endif
