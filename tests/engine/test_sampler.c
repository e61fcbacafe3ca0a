/* test_sampler.c -- sampling filters, seeded determinism and the stop-sequence text stream. */
#include "engine/sampler.c"
#include "harness.h"

#define NV 1000

static float logits[NV];

static void make_logits(void)
{
    /* deterministic spread with a clear maximum at 417 */
    for (int i = 0; i < NV; i++)
        logits[i] = (float)((i * 37) % 101) / 25.0f - 2.0f;
    logits[417] = 5.0f;
    logits[3] = 4.5f;
    logits[999] = 4.0f;
}

static void test_greedy(void)
{
    struct sampler s;
    REQUIRE(sampler_init(&s, NULL, NV) == 0);
    CHECK_EQ_INT(sampler_sample(&s, logits), 417);
    sampler_deinit(&s);
    struct engine_params p = {.temperature = 0.0f, .top_p = 1.0f};
    REQUIRE(sampler_init(&s, &p, NV) == 0);
    CHECK_EQ_INT(sampler_sample(&s, logits), 417);
    sampler_deinit(&s);
}

static void test_top_k1_is_greedy(void)
{
    struct engine_params p = {.temperature = 1.5f, .top_k = 1, .top_p = 1.0f, .seed = 9};
    struct sampler s;
    REQUIRE(sampler_init(&s, &p, NV) == 0);
    for (int i = 0; i < 50; i++)
        CHECK_EQ_INT(sampler_sample(&s, logits), 417);
    sampler_deinit(&s);
}

static void draw(uint64_t seed, float temp, int *out, int n)
{
    struct engine_params p = {.temperature = temp, .top_p = 1.0f, .seed = seed};
    struct sampler s;
    if (sampler_init(&s, &p, NV) != 0)
        return;
    for (int i = 0; i < n; i++)
        out[i] = sampler_sample(&s, logits);
    sampler_deinit(&s);
}

static void test_seed_determinism(void)
{
    int a[200], b[200], c[200];
    draw(42, 1.0f, a, 200);
    draw(42, 1.0f, b, 200);
    draw(43, 1.0f, c, 200);
    CHECK(memcmp(a, b, sizeof(a)) == 0);
    CHECK(memcmp(a, c, sizeof(a)) != 0);
    int distinct = 0;
    for (int i = 1; i < 200; i++)
        distinct += a[i] != a[0];
    CHECK(distinct > 10); /* temperature 1 over a flat-ish tail really samples */
}

static void test_low_temperature_picks_max(void)
{
    int a[100];
    draw(7, 0.01f, a, 100);
    for (int i = 0; i < 100; i++)
        CHECK_EQ_INT(a[i], 417);
}

static void test_distribution(void)
{
    /* two tokens, logits differ by ln 3: expect a 3:1 split at temperature 1 */
    float l[4] = {-100.0f, logf(3.0f), 0.0f, -100.0f};
    struct engine_params p = {.temperature = 1.0f, .top_p = 1.0f, .seed = 1};
    struct sampler s;
    REQUIRE(sampler_init(&s, &p, 4) == 0);
    int cnt[4] = {0};
    for (int i = 0; i < 20000; i++)
        cnt[sampler_sample(&s, l)]++;
    sampler_deinit(&s);
    CHECK(cnt[0] == 0 && cnt[3] == 0);
    double frac = cnt[1] / 20000.0;
    CHECK(frac > 0.72 && frac < 0.78);
}

static void test_min_p_and_top_p(void)
{
    /* probabilities 0.5, 0.25, 0.125, 0.125 */
    float l[4] = {logf(4.0f), logf(2.0f), 0.0f, 0.0f};
    struct engine_params p = {.temperature = 1.0f, .top_p = 1.0f, .min_p = 0.4f, .seed = 3};
    struct sampler s;
    REQUIRE(sampler_init(&s, &p, 4) == 0);
    int cnt[4] = {0};
    for (int i = 0; i < 4000; i++)
        cnt[sampler_sample(&s, l)]++;
    sampler_deinit(&s);
    CHECK(cnt[0] > 0 && cnt[1] > 0 && cnt[2] == 0 && cnt[3] == 0); /* 0.125 < 0.4*0.5 */

    struct engine_params q = {.temperature = 1.0f, .top_p = 0.7f, .seed = 3};
    REQUIRE(sampler_init(&s, &q, 4) == 0);
    memset(cnt, 0, sizeof(cnt));
    for (int i = 0; i < 4000; i++)
        cnt[sampler_sample(&s, l)]++;
    sampler_deinit(&s);
    CHECK(cnt[0] > 0 && cnt[1] > 0 && cnt[2] == 0 && cnt[3] == 0); /* 0.5 + 0.25 >= 0.7 */

    struct engine_params k = {.temperature = 1.0f, .top_k = 3, .top_p = 1.0f, .seed = 3};
    REQUIRE(sampler_init(&s, &k, 4) == 0);
    memset(cnt, 0, sizeof(cnt));
    for (int i = 0; i < 4000; i++)
        cnt[sampler_sample(&s, l)]++;
    sampler_deinit(&s);
    CHECK(cnt[0] > 0 && cnt[1] > 0 && cnt[2] > 0 && cnt[3] == 0); /* ties broken by id */
}

static char out[512];
static size_t out_len;
static int n_emits;

static void collect(void *ud, const char *t, size_t n)
{
    (void)ud;
    if (out_len + n < sizeof(out)) {
        memcpy(out + out_len, t, n);
        out_len += n;
        out[out_len] = 0;
    }
    n_emits++;
}

static void reset_out(void)
{
    out_len = 0;
    out[0] = 0;
    n_emits = 0;
}

static void test_stop_split_across_pieces(void)
{
    const char *stops[] = {"</answer>", "STOP"};
    struct textstream t;
    reset_out();
    REQUIRE(textstream_init(&t, stops, 2, collect, NULL) == 0);
    CHECK_EQ_INT(textstream_feed(&t, "The result is 4", 15), 0);
    CHECK_EQ_STR(out, "The result is 4");
    CHECK_EQ_INT(textstream_feed(&t, "</an", 4), 0);
    CHECK_EQ_STR(out, "The result is 4"); /* "</an" held back */
    CHECK_EQ_INT(textstream_feed(&t, "sw", 2), 0);
    CHECK_EQ_INT(textstream_feed(&t, "er> more", 8), 1);
    CHECK_EQ_STR(out, "The result is 4");
    CHECK_EQ_INT(textstream_feed(&t, "x", 1), 1);
    textstream_finish(&t);
    CHECK_EQ_STR(out, "The result is 4");
    textstream_deinit(&t);

    /* a false start is released once it can no longer match */
    reset_out();
    REQUIRE(textstream_init(&t, stops, 2, collect, NULL) == 0);
    CHECK_EQ_INT(textstream_feed(&t, "a </an", 6), 0);
    CHECK_EQ_STR(out, "a ");
    CHECK_EQ_INT(textstream_feed(&t, "t> b ST", 7), 0);
    CHECK_EQ_STR(out, "a </ant> b ");
    textstream_finish(&t);
    CHECK_EQ_STR(out, "a </ant> b ST");
    textstream_deinit(&t);

    /* stop inside one piece: text before it only */
    reset_out();
    REQUIRE(textstream_init(&t, stops, 2, collect, NULL) == 0);
    CHECK_EQ_INT(textstream_feed(&t, "abcSTOPdef", 10), 1);
    CHECK_EQ_STR(out, "abc");
    textstream_deinit(&t);
}

static void test_utf8_never_split(void)
{
    struct textstream t;
    reset_out();
    REQUIRE(textstream_init(&t, NULL, 0, collect, NULL) == 0);
    /* "é" = C3 A9, "😀" = F0 9F 98 80, fed byte by byte as byte-fallback tokens do */
    const char *s = "caf\xC3\xA9 \xF0\x9F\x98\x80!";
    for (size_t i = 0; i < strlen(s); i++) {
        size_t before = out_len;
        CHECK_EQ_INT(textstream_feed(&t, s + i, 1), 0);
        CHECK_EQ_INT(utf8_incomplete_tail(out, out_len), 0);
        (void)before;
    }
    textstream_finish(&t);
    CHECK_EQ_STR(out, s);
    textstream_deinit(&t);

    /* invalid bytes become U+FFFD; a dangling lead byte at the end too */
    reset_out();
    REQUIRE(textstream_init(&t, NULL, 0, collect, NULL) == 0);
    CHECK_EQ_INT(textstream_feed(&t, "a\x80" "b\xE2\x82", 5), 0);
    textstream_finish(&t);
    CHECK_EQ_STR(out, "a\xEF\xBF\xBD" "b\xEF\xBF\xBD\xEF\xBF\xBD");
    textstream_deinit(&t);
}

int main(void)
{
    make_logits();
    RUN(test_greedy);
    RUN(test_top_k1_is_greedy);
    RUN(test_seed_determinism);
    RUN(test_low_temperature_picks_max);
    RUN(test_distribution);
    RUN(test_min_p_and_top_p);
    RUN(test_stop_split_across_pieces);
    RUN(test_utf8_never_split);
    return harness_done();
}
