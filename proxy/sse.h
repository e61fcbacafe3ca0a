/* sse.h -- an incremental parser of text/event-stream (server-sent events).
 *
 * Bytes go in as they arrive, in any pieces; each complete event comes out once, with its
 * raw bytes (for relaying unchanged) and its parsed `event:` name and joined `data:` lines.
 * An event larger than PROXY_MAX_SSE_EVENT is an error, never buffered without bound.
 * The raw bytes and the data handed to the callback are the parser's own buffers: the
 * callback may change them in place (same length), e.g. to mask a secret before relaying. */
#ifndef AIRLOCK_PROXY_SSE_H
#define AIRLOCK_PROXY_SSE_H

#include <stddef.h>

#define PROXY_MAX_SSE_EVENT (8u << 20)

/* An incremental parser of text/event-stream: bytes in any pieces, whole events out. */
struct proxy_sse {
    char *buf;
    size_t len, cap;
    size_t scanned; /* bytes of buf already searched for an event end */
};

typedef int (*proxy_sse_event_fn)(void *ud, const char *raw, size_t raw_len, const char *event,
                                  size_t event_len, const char *data, size_t data_len);

/* proxy_sse_feed -- append bytes, call fn for each complete event (raw bytes
 * including the blank line; `event:` name; `data:` lines joined by '\n').
 * Returns 0, -1 if an event exceeds PROXY_MAX_SSE_EVENT, or fn's non-zero return. */
int proxy_sse_feed(struct proxy_sse *s, const char *data, size_t len, proxy_sse_event_fn fn,
                   void *ud);
void proxy_sse_deinit(struct proxy_sse *s);

#endif
