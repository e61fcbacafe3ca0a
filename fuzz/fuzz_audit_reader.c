/* fuzz_audit_reader.c -- libFuzzer driver for the audit reader: any bytes, taken as a
 * segment file, must be walked (framing, chain, checkpoint signatures) or rejected
 * cleanly, and every body parser must stay inside its buffer. */
#include "audit/audit_int.h"

#include <sodium.h>
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
    static const uint8_t seed[crypto_sign_SEEDBYTES] = {1};
    static int init;
    struct audit_report rep;
    struct audit_body body;
    struct audit_segstart ss;
    struct audit_ckpt ck;
    const char *why;

    if (!init) {
        if (sodium_init() < 0)
            return 0;
        /* a fixed key: signatures in fuzzed input will not verify, but the path runs */
        crypto_sign_seed_keypair(pk, sk, seed);
        init = 1;
    }
    audit_walk_buf(data, size, pk, &rep);
    audit_walk_buf(data, size, NULL, &rep);
    (void)audit_rec_find_valid(data, size, 0);
    (void)audit_body_parse(data, size, &body, &why);
    (void)audit_segstart_parse(data, size, &ss, &why);
    (void)audit_ckpt_parse(data, size, &ck, &why);
    return 0;
}
