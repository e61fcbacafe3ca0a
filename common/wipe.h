/* wipe.h -- freeing memory that held prompt or answer text, wiped first.
 *
 * A request's bodies, its parse, the decoded text the policy scanned, the originals that
 * redaction restores and the answer's copies all hold what the policy exists to protect;
 * freed without wiping, they linger in the heap for whatever reads it next (a core dump,
 * a later bug). These helpers zero the bytes (sodium_memzero, which the compiler may not
 * drop) before handing them back. Each accepts NULL. */
#ifndef AIRLOCK_WIPE_H
#define AIRLOCK_WIPE_H

#include <stddef.h>

#include <cJSON.h>

struct evbuffer;

/* wipe_free -- zero len bytes at p, then free(p) */
void wipe_free(void *p, size_t len);
/* wipe_str_free -- the same for a NUL-terminated string */
void wipe_str_free(char *s);
/* wipe_cjson_delete -- zero every string value and member name of the tree, then delete */
void wipe_cjson_delete(cJSON *j);
/* wipe_evbuffer -- zero every byte the buffer holds, then drain it (the buffer stays) */
void wipe_evbuffer(struct evbuffer *b);
/* wipe_evbuffer_free -- wipe_evbuffer, then evbuffer_free */
void wipe_evbuffer_free(struct evbuffer *b);

#endif
