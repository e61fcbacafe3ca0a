/* grow.h -- room in a growable array: the one piece of realloc-and-double logic behind
 * the many small buffers that build text or lists (JSON metadata, token ids, chat
 * prompts, cost rows). */
#ifndef AIRLOCK_GROW_H
#define AIRLOCK_GROW_H

#include <stddef.h>

/* grow_room -- an array at `p` with room for `*cap` elements of `size` bytes, made to
 * hold at least `need`: returns `p` itself when it already does; otherwise a
 * reallocated array whose capacity (stored in *cap) is `first`, or *cap when it is not
 * zero, doubled until it holds `need`. Returns NULL when memory runs out or the size
 * would overflow; `p` is then still valid and *cap unchanged. `p` may be NULL with
 * *cap 0. */
void *grow_room(void *p, size_t *cap, size_t need, size_t size, size_t first)
    __attribute__((warn_unused_result));

/* grow_by -- grow_room for `have` + `extra` elements, where `extra` comes from outside
 * (bytes appended to a buffer): NULL, as for memory, when the sum would overflow. */
void *grow_by(void *p, size_t *cap, size_t have, size_t extra, size_t size, size_t first)
    __attribute__((warn_unused_result));

#endif
