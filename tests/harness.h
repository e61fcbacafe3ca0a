/* harness.h -- the tiny unit-test harness every tests/<module>/test_*.c uses.
 *
 * A test is a `static void test_x(void)` run with RUN(test_x). CHECK() records a
 * failure and goes on; REQUIRE() records it and leaves the test. main() ends with
 * `return harness_done();`, which prints the plain closing line `N passed, N failed`
 * and returns non-zero when anything failed. Tests find shared fixtures through
 * harness_shared(), which points at ../shared (or $AIRLOCK_SHARED). */
#ifndef AIRLOCK_TESTS_HARNESS_H
#define AIRLOCK_TESTS_HARNESS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int harness_passed, harness_failed, harness_cur_failed;
static const char *harness_cur;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "  %s:%d: %s: CHECK(%s) failed\n", __FILE__, __LINE__, harness_cur,    \
                    #cond);                                                                        \
            harness_cur_failed = 1;                                                                \
        }                                                                                          \
    } while (0)

#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "  %s:%d: %s: REQUIRE(%s) failed\n", __FILE__, __LINE__, harness_cur,  \
                    #cond);                                                                        \
            harness_cur_failed = 1;                                                                \
            return;                                                                                \
        }                                                                                          \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                                         \
    do {                                                                                           \
        long long _a = (long long)(a), _b = (long long)(b);                                        \
        if (_a != _b) {                                                                            \
            fprintf(stderr, "  %s:%d: %s: %s == %lld, expected %s == %lld\n", __FILE__, __LINE__,  \
                    harness_cur, #a, _a, #b, _b);                                                  \
            harness_cur_failed = 1;                                                                \
        }                                                                                          \
    } while (0)

#define CHECK_EQ_STR(a, b)                                                                         \
    do {                                                                                           \
        const char *_a = (a), *_b = (b);                                                           \
        if (!_a || !_b || strcmp(_a, _b) != 0) {                                                   \
            fprintf(stderr, "  %s:%d: %s: %s == \"%s\", expected \"%s\"\n", __FILE__, __LINE__,    \
                    harness_cur, #a, _a ? _a : "(null)", _b ? _b : "(null)");                      \
            harness_cur_failed = 1;                                                                \
        }                                                                                          \
    } while (0)

#define RUN(fn)                                                                                    \
    do {                                                                                           \
        harness_cur = #fn;                                                                         \
        harness_cur_failed = 0;                                                                    \
        fn();                                                                                      \
        if (harness_cur_failed) {                                                                  \
            harness_failed++;                                                                      \
            printf("FAIL %s\n", #fn);                                                              \
        } else {                                                                                   \
            harness_passed++;                                                                      \
            printf("ok   %s\n", #fn);                                                              \
        }                                                                                          \
        fflush(stdout);                                                                            \
    } while (0)

static inline int harness_done(void)
{
    printf("%d passed, %d failed\n", harness_passed, harness_failed);
    return harness_failed ? 1 : 0;
}

/* harness_shared -- path of ../shared (models, specs); $AIRLOCK_SHARED overrides. */
static inline const char *harness_shared(void)
{
    const char *s = getenv("AIRLOCK_SHARED");
    return s && *s ? s : "../shared";
}

/* harness_read_file -- a whole file, NUL-terminated, malloc'd; NULL if unreadable.
 * *len (when not NULL) gets its length. */
static inline char *harness_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *p = NULL;
    long n;

    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (p = malloc((size_t)n + 1)) != NULL) {
        if (fread(p, 1, (size_t)n, f) != (size_t)n) {
            free(p);
            p = NULL;
        } else {
            p[n] = '\0';
            if (len)
                *len = (size_t)n;
        }
    }
    fclose(f);
    return p;
}

#endif
