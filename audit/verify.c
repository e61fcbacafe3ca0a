/* verify.c -- `audit verify`: the whole log against the signing public key. */
#include "audit/audit.h"
#include "audit/audit_int.h"

#include <sodium.h>
#include <stdio.h>
#include <sys/stat.h>

int audit_verify(const char *dir, const char *pubkey_path, struct audit_report *rep, char *err,
                 size_t errlen)
{
    uint8_t pk[crypto_sign_PUBLICKEYBYTES];
    char path[4096];
    struct stat st;

    if (sodium_init() < 0) {
        snprintf(err, errlen, "libsodium failed to initialise");
        return -1;
    }
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "%s: not an audit directory", dir);
        return -1;
    }
    if (!pubkey_path) {
        if ((size_t)snprintf(path, sizeof(path), "%s/audit.sign.pub", dir) >= sizeof(path)) {
            snprintf(err, errlen, "%s: path too long", dir);
            return -1;
        }
        if (stat(path, &st) != 0) {
            snprintf(err, errlen, "%s: no audit.sign.pub in the directory; pass --pubkey FILE",
                     dir);
            return -1;
        }
        pubkey_path = path;
    }
    if (audit_key_read(pubkey_path, AUDIT_LABEL_SIGN_PUB, pk, sizeof(pk), err, errlen) != 0)
        return -1;
    return audit_walk_dir(dir, pk, NULL, NULL, rep, err, errlen);
}
