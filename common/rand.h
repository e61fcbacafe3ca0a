/* rand.h -- unpredictable bytes without a system call each time.
 *
 * libsodium's randombytes_buf is a getrandom(2) call per use; the gateway draws 16 bytes
 * for every request id and 6 for every request's placeholder suffix. rand_bytes hands them
 * out of a per-thread pool of 4 KiB filled by one randombytes_buf, wiping what it hands out
 * (so the pool never holds a byte that was already given away). Thread-safe: each thread
 * has its own pool. */
#ifndef AIRLOCK_RAND_H
#define AIRLOCK_RAND_H

#include <stddef.h>

/* rand_bytes -- n unpredictable bytes into buf */
void rand_bytes(void *buf, size_t n);

#endif
