/* grow.c -- see grow.h */
#include "common/grow.h"

#include <stdint.h>
#include <stdlib.h>

void *grow_room(void *p, size_t *cap, size_t need, size_t size, size_t first)
{
    size_t c;
    void *np;

    if (need <= *cap)
        return p;
    c = *cap ? *cap : (first ? first : 1);
    while (c < need) {
        if (c > SIZE_MAX / 2)
            return NULL;
        c *= 2;
    }
    if (size == 0 || c > SIZE_MAX / size)
        return NULL;
    np = realloc(p, c * size);
    if (!np)
        return NULL;
    *cap = c;
    return np;
}

void *grow_by(void *p, size_t *cap, size_t have, size_t extra, size_t size, size_t first)
{
    if (extra > SIZE_MAX - have)
        return NULL;
    return grow_room(p, cap, have + extra, size, first);
}
