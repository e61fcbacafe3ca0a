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
        fprintf(stderr, "  cuts[0]=%zu n=%zu: got '%.*s'\n", ncuts ? cuts[0] : 0, ncuts, (int)ol,
                out ? out : "");
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

/* reference -- what restoring `in` must give for placeholders ph[i] -> val[i] of the form
 * '[' ... ']': at each '[', the text up to the first ']' after it is replaced when it is a
 * placeholder (the first one added, when two are the same), else the '[' goes out as is */
static char *reference(const char *in, char **ph, char **val, size_t n)
{
    size_t len = strlen(in), o = 0;
    char *out = malloc(len * 8 + 1);
    for (size_t i = 0; out && i < len;) {
        const char *q = in[i] == '[' ? strchr(in + i + 1, ']') : NULL;
        size_t k = n;
        if (q)
            for (k = 0; k < n; k++)
                if (strlen(ph[k]) == (size_t)(q - in - i) + 1 &&
                    memcmp(ph[k], in + i, strlen(ph[k])) == 0)
                    break;
        if (q && k < n) {
            memcpy(out + o, val[k], strlen(val[k]));
            o += strlen(val[k]);
            i += strlen(ph[k]);
        } else {
            out[o++] = in[i++];
        }
    }
    if (out)
        out[o] = '\0';
    return out;
}

/* restore_in_pieces -- `in` fed to r in pieces of 1, 2, ... 13 bytes by turns, flushed */
static char *restore_in_pieces(struct policy_restorer *r, const char *in)
{
    char *out = NULL;
    size_t ol = 0, len = strlen(in), at = 0, step = 1;
    while (at < len) {
        size_t k = len - at < step ? len - at : step;
        if (policy_restore_feed(r, 0, in + at, k, &out, &ol) < 0) {
            free(out);
            return NULL;
        }
        at += k;
        step = step % 13 + 1;
    }
    if (policy_restore_flush(r, 0, &out, &ol) < 0) {
        free(out);
        return NULL;
    }
    return out ? out : strdup("");
}

/* thousands of placeholders (they are looked up, not compared one by one): an answer of
 * brackets, whole and partial placeholders, real and not, restores as the reference says,
 * fed in pieces */
static void test_many_placeholders(void)
{
    enum { N = 3000 };
    char **ph = calloc(N + 2, sizeof(*ph)), **val = calloc(N + 2, sizeof(*val));
    char *in = malloc(200000), *want = NULL, *got = NULL;
    struct policy_restorer *r = policy_restorer_new();
    size_t n = 0, o = 0;
    unsigned seed = 7;
    REQUIRE(ph && val && in && r);
    for (; n < N; n++) {
        char p[64], v[64];
        snprintf(p, sizeof(p), "[EMAIL_%zu_abcdef]", n + 1);
        snprintf(v, sizeof(v), "user%zu@example.org", n + 1);
        ph[n] = strdup(p);
        val[n] = strdup(v);
        REQUIRE(ph[n] && val[n]);
        REQUIRE(policy_restorer_add(r, p, strlen(p), v, strlen(v)) == 0);
    }
    /* a second [EMAIL_7_abcdef]: the first one added is the one restored */
    REQUIRE(policy_restorer_add(r, "[EMAIL_7_abcdef]", 16, "second", 6) == 0);
    ph[n] = strdup("[EMAIL_7_abcdef]");
    val[n++] = strdup("second");
    while (o < 190000) {
        seed = seed * 1103515245u + 12345u;
        unsigned x = seed >> 16, id = x % (N + 40);
        switch (x % 7) {
        case 0:
        case 1: /* a placeholder, issued or not (0, N+1 ...) */
            o += (size_t)sprintf(in + o, "[EMAIL_%u_abcdef]", id);
            break;
        case 2: /* its head only */
            o += (size_t)sprintf(in + o, "[EMAIL_%u_ab", id);
            break;
        case 3:
            o += (size_t)sprintf(in + o, "[[x]");
            break;
        case 4:
            o += (size_t)sprintf(in + o, "] [");
            break;
        default:
            o += (size_t)sprintf(in + o, " text %u ", id);
        }
    }
    in[o] = '\0';
    want = reference(in, ph, val, n);
    got = restore_in_pieces(r, in);
    CHECK(want && got && strcmp(want, got) == 0);
    if (want && got && strcmp(want, got) != 0) {
        size_t i = 0;
        while (want[i] == got[i])
            i++;
        fprintf(stderr, "  differs at %zu: want '%.40s' got '%.40s'\n", i, want + i, got + i);
    }
    free(want);
    free(got);
    policy_restorer_free(r);
    for (size_t i = 0; i < n; i++) {
        free(ph[i]);
        free(val[i]);
    }
    free(ph);
    free(val);
    free(in);
}

/* a placeholder with a ']' inside is still restored (then they are compared one by one) */
static void test_odd_placeholders(void)
{
    struct policy_restorer *r = policy_restorer_new();
    REQUIRE(r);
    REQUIRE(policy_restorer_add(r, "[A]B]", 5, "one", 3) == 0);
    REQUIRE(policy_restorer_add(r, "[A]", 3, "two", 3) == 0);
    REQUIRE(policy_restorer_add(r, "[C]", 3, "three", 5) == 0);
    char *got = restore_in_pieces(r, "x[A]B] [A] [C] [A]C [B]");
    CHECK_EQ_STR(got, "xone two three twoC [B]");
    free(got);
    policy_restorer_free(r);
}

/* a sealed restorer (policy_decide seals it on the deciding thread) restores the same and
 * takes no more placeholders */
static void test_sealed(void)
{
    struct policy_restorer *r = mk();
    char *out = NULL;
    size_t ol = 0;

    REQUIRE(r);
    policy_restorer_seal(r);
    policy_restorer_seal(r); /* twice: nothing more happens */
    CHECK(policy_restorer_add(r, "[EMAIL_3]", 9, "c@z.org", 7) < 0);
    CHECK(policy_restore_feed(r, 0, IN, strlen(IN), &out, &ol) == 0);
    CHECK(policy_restore_flush(r, 0, &out, &ol) == 0);
    CHECK(out && ol == strlen(OUT) && memcmp(out, OUT, ol) == 0);
    free(out);
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
    RUN(test_many_placeholders);
    RUN(test_odd_placeholders);
    RUN(test_sealed);
    return harness_done();
}
