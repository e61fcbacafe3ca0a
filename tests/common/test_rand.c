/* test_rand.c -- the per-thread pool of random bytes: draws differ, draws across a refill
 * are whole, and the bytes look uniform (a coarse check that a wiped, zeroed or repeated
 * pool would fail). */
#include <pthread.h>
#include <string.h>

#include "common/rand.h"
#include "tests/harness.h"

static void test_draws_differ_and_cross_refills(void)
{
    unsigned char a[16], b[16], zero[16] = {0};
    unsigned counts[256] = {0};
    size_t total = 0;

    rand_bytes(a, sizeof(a));
    rand_bytes(b, sizeof(b));
    CHECK(memcmp(a, b, 16) != 0);
    CHECK(memcmp(a, zero, 16) != 0);
    /* 5 pools' worth in odd sizes: every refill boundary is crossed mid-draw */
    for (int i = 0; i < 1000; i++) {
        unsigned char buf[23];
        rand_bytes(buf, sizeof(buf));
        for (size_t k = 0; k < sizeof(buf); k++)
            counts[buf[k]]++;
        total += sizeof(buf);
    }
    /* 23,000 bytes over 256 values: about 90 each; a stuck or zeroed source is far off */
    unsigned lo = ~0u, hi = 0;
    for (int v = 0; v < 256; v++) {
        lo = counts[v] < lo ? counts[v] : lo;
        hi = counts[v] > hi ? counts[v] : hi;
    }
    CHECK(total == 23000 && lo > 30 && hi < 170);
    /* a large draw goes to the source directly */
    unsigned char big[2048], big2[2048];
    rand_bytes(big, sizeof(big));
    rand_bytes(big2, sizeof(big2));
    CHECK(memcmp(big, big2, sizeof(big)) != 0);
}

static void *draw(void *arg)
{
    rand_bytes(arg, 16);
    return NULL;
}

static void test_threads_have_their_own_pool(void)
{
    unsigned char x[16], y[16];
    pthread_t t1, t2;
    REQUIRE(pthread_create(&t1, NULL, draw, x) == 0);
    REQUIRE(pthread_create(&t2, NULL, draw, y) == 0);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    CHECK(memcmp(x, y, 16) != 0);
}

int main(void)
{
    RUN(test_draws_differ_and_cross_refills);
    RUN(test_threads_have_their_own_pool);
    return harness_done();
}
