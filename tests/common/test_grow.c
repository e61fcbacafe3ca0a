/* test_grow.c -- grow_room: capacities, contents kept, overflow refused without harm. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/grow.h"
#include "tests/harness.h"

static void test_first_and_doubling(void)
{
    size_t cap = 0, i;
    int *p = NULL, *q;

    q = grow_room(p, &cap, 1, sizeof(*p), 16);
    REQUIRE(q);
    CHECK_EQ_INT((int)cap, 16);
    p = q;
    for (i = 0; i < 16; i++)
        p[i] = (int)i;
    /* room enough: the same array, capacity unchanged */
    q = grow_room(p, &cap, 16, sizeof(*p), 16);
    CHECK(q == p);
    CHECK_EQ_INT((int)cap, 16);
    /* doubled until it holds the need, contents kept */
    q = grow_room(p, &cap, 100, sizeof(*p), 16);
    REQUIRE(q);
    p = q;
    CHECK_EQ_INT((int)cap, 128);
    for (i = 0; i < 16; i++)
        CHECK_EQ_INT(p[i], (int)i);
    free(p);
}

static void test_overflow_refused(void)
{
    size_t cap = 8;
    uint64_t *p = calloc(cap, sizeof(*p)), *q;

    REQUIRE(p);
    p[7] = 77;
    /* elements times size past SIZE_MAX */
    q = grow_room(p, &cap, SIZE_MAX / 4, sizeof(*p), 8);
    CHECK(q == NULL);
    CHECK_EQ_INT((int)cap, 8);
    /* a need the doubling cannot reach */
    q = grow_room(p, &cap, SIZE_MAX, 1, 8);
    CHECK(q == NULL);
    CHECK_EQ_INT((int)cap, 8);
    CHECK(p[7] == 77); /* still the caller's, intact */
    free(p);
}

/* grow_by: the sum of what is there and what is added, overflow refused */
static void test_grow_by(void)
{
    size_t cap = 0;
    char *p = NULL, *q;

    q = grow_by(p, &cap, 10, 100, 1, 64);
    REQUIRE(q);
    CHECK_EQ_INT((int)cap, 128);
    p = q;
    memset(p, 'a', 110);
    q = grow_by(p, &cap, 110, SIZE_MAX - 50, 1, 64); /* 110 + that wraps around */
    CHECK(q == NULL);
    CHECK_EQ_INT((int)cap, 128);
    CHECK(p[109] == 'a');
    free(p);
}

int main(void)
{
    RUN(test_first_and_doubling);
    RUN(test_overflow_refused);
    RUN(test_grow_by);
    return harness_done();
}
