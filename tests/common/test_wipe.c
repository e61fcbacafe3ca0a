/* test_wipe.c -- wipe_evbuffer zeroes the bytes a buffer holds before it lets them go:
 * checked on memory the test owns (evbuffer_add_reference), across several chains and a
 * partly drained first chain. */
#include <string.h>

#include <event2/buffer.h>

#include "common/wipe.h"
#include "tests/harness.h"

static int cleaned;
static void on_cleanup(const void *data, size_t len, void *arg)
{
    (void)data;
    (void)len;
    (void)arg;
    cleaned++;
}

static int all_zero(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return 0;
    return 1;
}

static void test_wipe_evbuffer_zeroes_every_chain(void)
{
    static char a[40], b[5000], c[7];
    struct evbuffer *e = evbuffer_new();

    REQUIRE(e);
    memset(a, 'a', sizeof(a));
    memset(b, 'b', sizeof(b));
    memset(c, 'c', sizeof(c));
    cleaned = 0;
    evbuffer_add_reference(e, a, sizeof(a), on_cleanup, NULL);
    evbuffer_add(e, "copied prompt text", 18); /* a chain of libevent's own */
    evbuffer_add_reference(e, b, sizeof(b), on_cleanup, NULL);
    for (int i = 0; i < 20; i++) /* more chains than one peek returns */
        evbuffer_add_reference(e, c, sizeof(c), on_cleanup, NULL);
    evbuffer_drain(e, 5); /* the first chain partly consumed */
    wipe_evbuffer(e);
    CHECK_EQ_INT(evbuffer_get_length(e), 0);
    CHECK(all_zero(a + 5, sizeof(a) - 5)); /* what it still held */
    CHECK(all_zero(b, sizeof(b)));
    CHECK(all_zero(c, sizeof(c)));
    CHECK_EQ_INT(cleaned, 22); /* every reference released */
    /* still usable */
    CHECK(evbuffer_add(e, "x", 1) == 0 && evbuffer_get_length(e) == 1);
    wipe_evbuffer_free(e);
    wipe_evbuffer(NULL);
    wipe_evbuffer_free(NULL);
    wipe_free(NULL, 3);
    wipe_str_free(NULL);
    wipe_cjson_delete(NULL);
}

int main(void)
{
    RUN(test_wipe_evbuffer_zeroes_every_chain);
    return harness_done();
}
