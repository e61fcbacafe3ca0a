/* test_sse.c -- the incremental SSE parser: events split anywhere come out whole. */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "proxy/proxy_int.h"

struct got {
    char raw[4096];
    size_t raw_len;
    char events[16][64];
    char datas[16][256];
    int n;
};

static int collect(void *ud, const char *raw, size_t raw_len, const char *ev, size_t elen,
                   const char *data, size_t dlen)
{
    struct got *g = ud;

    if (g->n >= 16 || g->raw_len + raw_len > sizeof(g->raw) || elen >= 64 || dlen >= 256)
        return -1;
    memcpy(g->raw + g->raw_len, raw, raw_len);
    g->raw_len += raw_len;
    memcpy(g->events[g->n], ev, elen);
    g->events[g->n][elen] = '\0';
    memcpy(g->datas[g->n], data, dlen);
    g->datas[g->n][dlen] = '\0';
    g->n++;
    return 0;
}

static const char *stream_lf = "event: message_start\ndata: {\"a\":1}\n\n"
                               ": comment\ndata: line1\ndata: line2\n\n"
                               "data: [DONE]\n\n";

static void test_split_everywhere(void)
{
    size_t len = strlen(stream_lf), cut;

    for (cut = 0; cut <= len; cut++) {
        struct proxy_sse s = {0};
        struct got g;
        memset(&g, 0, sizeof(g));
        CHECK(proxy_sse_feed(&s, stream_lf, cut, collect, &g) == 0);
        CHECK(proxy_sse_feed(&s, stream_lf + cut, len - cut, collect, &g) == 0);
        CHECK_EQ_INT(g.n, 3);
        CHECK_EQ_STR(g.events[0], "message_start");
        CHECK_EQ_STR(g.datas[0], "{\"a\":1}");
        CHECK_EQ_STR(g.datas[1], "line1\nline2");
        CHECK_EQ_STR(g.datas[2], "[DONE]");
        /* raw bytes are passed on exactly */
        CHECK(g.raw_len == len && memcmp(g.raw, stream_lf, len) == 0);
        proxy_sse_deinit(&s);
    }
}

static void test_byte_by_byte_crlf(void)
{
    const char *in = "event: ping\r\ndata: {}\r\n\r\ndata: x\r\n\r\n";
    struct proxy_sse s = {0};
    struct got g;
    size_t i;

    memset(&g, 0, sizeof(g));
    for (i = 0; i < strlen(in); i++)
        CHECK(proxy_sse_feed(&s, in + i, 1, collect, &g) == 0);
    CHECK_EQ_INT(g.n, 2);
    CHECK_EQ_STR(g.events[0], "ping");
    CHECK_EQ_STR(g.datas[0], "{}");
    CHECK_EQ_STR(g.datas[1], "x");
    proxy_sse_deinit(&s);
}

/* line ends mixed in one read: LF events (the memchr path) beside CRLF and CR-only ones,
 * a "\n\n" after a '\r' of the same event not taken for its end, split at every byte */
static void test_mixed_line_ends(void)
{
    const char *in = "data: a\n\nevent: e\r\ndata: b\r\n\r\ndata: c\rdata: d\r\r"
                     "data: e\n\r\ndata: f\n\n";
    size_t len = strlen(in), cut;

    for (cut = 0; cut <= len; cut++) {
        struct proxy_sse s = {0};
        struct got g;
        memset(&g, 0, sizeof(g));
        CHECK(proxy_sse_feed(&s, in, cut, collect, &g) == 0);
        CHECK(proxy_sse_feed(&s, in + cut, len - cut, collect, &g) == 0);
        CHECK_EQ_INT(g.n, 5);
        CHECK_EQ_STR(g.datas[0], "a");
        CHECK_EQ_STR(g.events[1], "e");
        CHECK_EQ_STR(g.datas[1], "b");
        CHECK_EQ_STR(g.datas[2], "c\nd");
        CHECK_EQ_STR(g.datas[3], "e");
        CHECK_EQ_STR(g.datas[4], "f");
        CHECK(g.raw_len == len && memcmp(g.raw, in, len) == 0);
        proxy_sse_deinit(&s);
    }
}

static void test_incomplete_event_is_held(void)
{
    struct proxy_sse s = {0};
    struct got g;

    memset(&g, 0, sizeof(g));
    CHECK(proxy_sse_feed(&s, "data: partial\n", 14, collect, &g) == 0);
    CHECK_EQ_INT(g.n, 0);
    CHECK(proxy_sse_feed(&s, "\n", 1, collect, &g) == 0);
    CHECK_EQ_INT(g.n, 1);
    proxy_sse_deinit(&s);
}

static void test_oversized_event_fails(void)
{
    struct proxy_sse s = {0};
    struct got g;
    size_t chunk = 1 << 20, i;
    char *big = malloc(chunk);
    int rc = 0;

    REQUIRE(big);
    memset(big, 'a', chunk);
    memset(&g, 0, sizeof(g));
    for (i = 0; i < 16 && rc == 0; i++)
        rc = proxy_sse_feed(&s, big, chunk, collect, &g);
    CHECK(rc == -1);
    CHECK_EQ_INT(g.n, 0);
    free(big);
    proxy_sse_deinit(&s);
}

int main(void)
{
    RUN(test_split_everywhere);
    RUN(test_byte_by_byte_crlf);
    RUN(test_mixed_line_ends);
    RUN(test_incomplete_event_is_held);
    RUN(test_oversized_event_fails);
    return harness_done();
}
