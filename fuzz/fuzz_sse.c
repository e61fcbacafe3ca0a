/* fuzz_sse.c -- libFuzzer driver for the SSE parser (proxy/sse.c): arbitrary bytes,
 * fed in pieces whose sizes come from the input, must never crash, and the raw
 * bytes handed out must be exactly a prefix of the input, in order. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/proxy_int.h"

struct seen {
    const uint8_t *in;
    size_t off;
};

static int on_event(void *ud, const char *raw, size_t raw_len, const char *ev, size_t elen,
                    const char *data, size_t dlen)
{
    struct seen *s = ud;

    (void)ev;
    (void)elen;
    (void)data;
    (void)dlen;
    if (memcmp(s->in + s->off, raw, raw_len) != 0)
        abort();
    s->off += raw_len;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct proxy_sse p = {0};
    struct seen s = {data + 1, 0};
    size_t i = 1, step;

    if (size < 1)
        return 0;
    step = (size_t)(data[0] % 17) + 1;
    while (i < size) {
        size_t n = size - i < step ? size - i : step;
        if (proxy_sse_feed(&p, (const char *)data + i, n, on_event, &s) != 0)
            break;
        i += n;
    }
    proxy_sse_deinit(&p);
    return 0;
}
