/* sse.c -- an incremental text/event-stream parser (WHATWG framing).
 *
 * Bytes arrive in arbitrary pieces; an event ends at a blank line ("\n\n",
 * "\r\n\r\n" or "\r\r"). The raw bytes of each event are handed on untouched so
 * the relay can forward them exactly; `event:` and `data:` fields are extracted
 * for the few events the gateway needs to read. */
#include <stdlib.h>
#include <string.h>

#include "common/wipe.h"
#include "proxy/proxy_int.h"

void proxy_sse_deinit(struct proxy_sse *s)
{
    wipe_free(s->buf, s->cap); /* the answer's events */
    memset(s, 0, sizeof(*s));
}

/* end of the event that starts at buf[0]: index just past its blank line, or 0. Lines that
 * end in "\n" alone (every provider's) are searched a line at a time (memchr): the first
 * "\n\n" is the end unless a '\r' comes before it, which takes the byte-by-byte reading
 * of the three terminators. */
static size_t event_end(const char *b, size_t len, size_t from)
{
    const char *p = b + from, *end = b + len, *nl;
    size_t i;

    while (p < end && (nl = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        if (nl + 1 < end && nl[1] == '\n') {
            if (!memchr(b + from, '\r', (size_t)(nl - (b + from))))
                return (size_t)(nl - b) + 2;
            break;
        }
        p = nl + 1;
    }
    if (!memchr(b + from, '\r', len - from))
        return 0;
    for (i = from; i < len; i++) {
        if (b[i] == '\n') {
            if (i + 1 < len && b[i + 1] == '\n')
                return i + 2;
            if (i + 2 < len && b[i + 1] == '\r' && b[i + 2] == '\n')
                return i + 3;
        } else if (b[i] == '\r') {
            if (i + 1 < len && b[i + 1] == '\r')
                return i + 2;
        }
    }
    return 0;
}

static int dispatch(const char *raw, size_t n, proxy_sse_event_fn fn, void *ud)
{
    const char *ev = NULL, *p = raw, *end = raw + n;
    int crlf = memchr(raw, '\r', n) != NULL;
    size_t ev_len = 0, data_len = 0;
    char *data = NULL;
    int rc;

    while (p < end) {
        const char *eol = p;
        const char *colon, *val;
        size_t flen, vlen;

        if (crlf) {
            while (eol < end && *eol != '\n' && *eol != '\r')
                eol++;
        } else {
            eol = memchr(p, '\n', (size_t)(end - p));
            if (!eol)
                eol = end;
        }
        colon = memchr(p, ':', (size_t)(eol - p));
        flen = colon ? (size_t)(colon - p) : (size_t)(eol - p);
        val = colon ? colon + 1 : eol;
        if (val < eol && *val == ' ')
            val++;
        vlen = (size_t)(eol - val);
        if (flen == 5 && memcmp(p, "event", 5) == 0) {
            ev = val;
            ev_len = vlen;
        } else if (flen == 4 && memcmp(p, "data", 4) == 0) {
            char *nd = realloc(data, data_len + vlen + 2);
            if (!nd) {
                free(data);
                return -1;
            }
            data = nd;
            if (data_len)
                data[data_len++] = '\n';
            memcpy(data + data_len, val, vlen);
            data_len += vlen;
            data[data_len] = '\0';
        }
        p = eol;
        if (p < end && *p == '\r')
            p++;
        if (p < end && *p == '\n')
            p++;
    }
    rc = fn(ud, raw, n, ev ? ev : "", ev_len, data ? data : "", data_len);
    free(data);
    return rc;
}

int proxy_sse_feed(struct proxy_sse *s, const char *data, size_t len, proxy_sse_event_fn fn,
                   void *ud)
{
    size_t start = 0, e;
    int rc;

    if (len == 0)
        return 0;
    if (s->len + len > PROXY_MAX_SSE_EVENT)
        return -1;
    if (s->len + len > s->cap) {
        size_t cap = s->cap ? s->cap : 4096;
        char *nb;
        while (cap < s->len + len)
            cap *= 2;
        nb = realloc(s->buf, cap);
        if (!nb)
            return -1;
        s->buf = nb;
        s->cap = cap;
    }
    memcpy(s->buf + s->len, data, len);
    s->len += len;
    /* rescan a few bytes back: a terminator may straddle two pieces */
    e = s->scanned > 3 ? s->scanned - 3 : 0;
    while ((e = event_end(s->buf + start, s->len - start, e)) != 0) {
        rc = dispatch(s->buf + start, e, fn, ud);
        if (rc)
            return rc;
        start += e;
        e = 0;
    }
    if (start) {
        memmove(s->buf, s->buf + start, s->len - start);
        s->len -= start;
    }
    s->scanned = s->len;
    return 0;
}
