/* test_restore.c -- streaming restoration: placeholders split at every position and across
 * any number of feeds, look-alikes passed through and never held past a flush, slots kept
 * apart. */
#include "harness.h"
#include "policy/policy_int.h"

static struct policy_restorer *mk(void)
{
    struct policy_restorer *r = policy_restorer_new();
    if (!r)
        return NULL;
    if (policy_restorer_add(r, "[EMAIL_1]", 9, "a@x.org", 7) < 0 ||
        policy_restorer_add(r, "[EMAIL_2]", 9, "b@y.org", 7) < 0 ||
        policy_restorer_add(r, "[CREDIT_CARD_12]", 16, "4111 1111 1111 1111", 19) < 0) {
        policy_restorer_free(r);
        return NULL;
    }
    return r;
}

static const char *IN = "x[EMAIL_1][[EMAIL_2]] [EMAIL [EMAIL_3] [CREDIT_CARD_12]. [EMAIL_1";
static const char *OUT = "xa@x.org[b@y.org] [EMAIL [EMAIL_3] 4111 1111 1111 1111. [EMAIL_1";

/* Feed `in` cut at the given positions (sorted), then flush; compare. */
static int run_cuts(const size_t *cuts, size_t ncuts)
{
    struct policy_restorer *r = mk();
    char *out = NULL;
    size_t ol = 0, prev = 0, n = strlen(IN);
    int ok = r != NULL;
    for (size_t i = 0; ok && i <= ncuts; i++) {
        size_t c = i < ncuts ? cuts[i] : n;
        ok = policy_restore_feed(r, 0, IN + prev, c - prev, &out, &ol) == 0;
        prev = c;
    }
    ok = ok && policy_restore_flush(r, 0, &out, &ol) == 0;
    ok = ok && ol == strlen(OUT) && memcmp(out, OUT, ol) == 0;
    if (!ok)
        fprintf(stderr, "  cuts[0]=%zu n=%zu: got '%.*s'\n", ncuts ? cuts[0] : 0, ncuts,
                (int)ol, out ? out : "");
    free(out);
    policy_restorer_free(r);
    return ok;
}

static void test_whole(void)
{
    CHECK(run_cuts(NULL, 0));
}

static void test_every_single_cut(void)
{
    size_t n = strlen(IN);
    for (size_t c = 0; c <= n; c++)
        CHECK(run_cuts(&c, 1));
}

static void test_every_pair_of_cuts(void)
{
    size_t n = strlen(IN);
    for (size_t a = 0; a <= n; a++)
        for (size_t b = a; b <= n; b++) {
            size_t cuts[2] = {a, b};
            CHECK(run_cuts(cuts, 2));
        }
}

static void test_byte_by_byte(void)
{
    size_t n = strlen(IN), cuts[256];
    for (size_t i = 0; i < n; i++)
        cuts[i] = i + 1;
    CHECK(run_cuts(cuts, n - 1));
}

static void test_lag_bounded(void)
{
    /* a look-alike is released as soon as it stops being a prefix */
    struct policy_restorer *r = mk();
    REQUIRE(r);
    char *out = NULL;
    size_t ol = 0;
    CHECK(policy_restore_feed(r, 0, "ab[EMA", 6, &out, &ol) == 0);
    CHECK(ol == 2 && memcmp(out, "ab", 2) == 0);
    CHECK(policy_restore_feed(r, 0, "X", 1, &out, &ol) == 0);
    CHECK(ol == 7 && memcmp(out, "ab[EMAX", 7) == 0);
    CHECK(policy_restore_feed(r, 0, "[", 1, &out, &ol) == 0);
    CHECK(ol == 7);
    CHECK(policy_restore_flush(r, 0, &out, &ol) == 0);
    CHECK(ol == 8 && memcmp(out, "ab[EMAX[", 8) == 0);
    /* after a flush nothing is held */
    CHECK(policy_restore_flush(r, 0, &out, &ol) == 0);
    CHECK(ol == 8);
    free(out);
    policy_restorer_free(r);
}

static void test_slots(void)
{
    struct policy_restorer *r = mk();
    REQUIRE(r);
    char *a = NULL, *b = NULL;
    size_t al = 0, bl = 0;
    CHECK(policy_restore_feed(r, 0, "A:[EMA", 6, &a, &al) == 0);
    CHECK(policy_restore_feed(r, 1, "B:[EMAIL_", 9, &b, &bl) == 0);
    CHECK(policy_restore_feed(r, 0, "IL_2]", 5, &a, &al) == 0);
    CHECK(policy_restore_feed(r, 1, "1]", 2, &b, &bl) == 0);
    CHECK(policy_restore_flush(r, 0, &a, &al) == 0);
    CHECK(policy_restore_flush(r, 1, &b, &bl) == 0);
    CHECK_EQ_STR(a, "A:b@y.org");
    CHECK_EQ_STR(b, "B:a@x.org");
    free(a);
    free(b);
    policy_restorer_free(r);
}

static void test_empty_mapping(void)
{
    struct policy_restorer *r = policy_restorer_new();
    REQUIRE(r);
    char *o = NULL;
    size_t ol = 0;
    CHECK(policy_restore_feed(r, 3, "[EMAIL_1] as is", 15, &o, &ol) == 0);
    CHECK(policy_restore_flush(r, 3, &o, &ol) == 0);
    CHECK_EQ_STR(o, "[EMAIL_1] as is");
    free(o);
    policy_restorer_free(r);
}

int main(void)
{
    RUN(test_whole);
    RUN(test_every_single_cut);
    RUN(test_every_pair_of_cuts);
    RUN(test_byte_by_byte);
    RUN(test_lag_bounded);
    RUN(test_slots);
    RUN(test_empty_mapping);
    return harness_done();
}
