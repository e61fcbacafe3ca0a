/* wipe.c -- freeing memory that held prompt or answer text, wiped first (see wipe.h). */
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <sodium.h>

#include "common/wipe.h"

void wipe_free(void *p, size_t len)
{
    if (!p)
        return;
    sodium_memzero(p, len);
    free(p);
}

void wipe_str_free(char *s)
{
    if (s)
        wipe_free(s, strlen(s));
}

static void wipe_cjson(cJSON *j)
{
    for (; j; j = j->next) {
        if (j->valuestring)
            sodium_memzero(j->valuestring, strlen(j->valuestring));
        if (j->string && !(j->type & cJSON_StringIsConst))
            sodium_memzero(j->string, strlen(j->string));
        wipe_cjson(j->child);
    }
}

void wipe_cjson_delete(cJSON *j)
{
    if (!j)
        return;
    wipe_cjson(j);
    cJSON_Delete(j);
}

void wipe_evbuffer(struct evbuffer *b)
{
    struct evbuffer_iovec v[16];
    size_t left;

    if (!b)
        return;
    /* peek a few chains at a time and zero them in place, then drain what was zeroed */
    while ((left = evbuffer_get_length(b)) > 0) {
        int n = evbuffer_peek(b, -1, NULL, v, 16), i;
        size_t done = 0;
        if (n <= 0)
            break;
        if (n > 16)
            n = 16;
        for (i = 0; i < n; i++) {
            sodium_memzero(v[i].iov_base, v[i].iov_len);
            done += v[i].iov_len;
        }
        evbuffer_drain(b, done < left ? done : left);
    }
}

void wipe_evbuffer_free(struct evbuffer *b)
{
    if (!b)
        return;
    wipe_evbuffer(b);
    evbuffer_free(b);
}
