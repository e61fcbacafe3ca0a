/* rand.c -- unpredictable bytes from a per-thread pool (see rand.h). */
#include <string.h>

#include <sodium.h>

#include "common/rand.h"

#define POOL 4096

void rand_bytes(void *buf, size_t n)
{
    static _Thread_local unsigned char pool[POOL];
    static _Thread_local size_t next = POOL;
    unsigned char *o = buf;

    if (n > POOL / 4) { /* large requests go straight to the source */
        randombytes_buf(buf, n);
        return;
    }
    while (n > 0) {
        size_t take;
        if (next == POOL) {
            randombytes_buf(pool, POOL);
            next = 0;
        }
        take = POOL - next < n ? POOL - next : n;
        memcpy(o, pool + next, take);
        sodium_memzero(pool + next, take);
        next += take;
        o += take;
        n -= take;
    }
}
