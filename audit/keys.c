/* keys.c -- key files: `LABEL HEX\n`, written by `airlock keygen` and audit_open. */
#include "audit/audit.h"
#include "audit/audit_int.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The longest line we accept: label, space, 128 hex digits, newline. */
#define KEY_LINE_MAX 256

int audit_key_read(const char *path, const char *label, uint8_t *out, size_t n, char *err,
                   size_t errlen)
{
    char *line = NULL;
    size_t llen = strlen(label), hexlen;
    ssize_t got;
    size_t bin_len = 0;
    int fd = -1, rc = -1;

    line = sodium_malloc(KEY_LINE_MAX + 1);
    if (!line) {
        snprintf(err, errlen, "%s: out of memory", path);
        return -1;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        goto fail;
    }
    got = read(fd, line, KEY_LINE_MAX + 1);
    if (got < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        goto fail;
    }
    if ((size_t)got > KEY_LINE_MAX) {
        snprintf(err, errlen, "%s: not an airlock %s file (too long)", path, label);
        goto fail;
    }
    line[got] = '\0';
    while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r'))
        line[--got] = '\0';
    if ((size_t)got < llen + 1 || memcmp(line, label, llen) != 0 || line[llen] != ' ') {
        snprintf(err, errlen, "%s: not an airlock %s file", path, label);
        goto fail;
    }
    hexlen = (size_t)got - llen - 1;
    if (hexlen != 2 * n ||
        sodium_hex2bin(out, n, line + llen + 1, hexlen, NULL, &bin_len, NULL) != 0 ||
        bin_len != n) {
        snprintf(err, errlen, "%s: malformed %s (expected %zu hex digits)", path, label, 2 * n);
        goto fail;
    }
    rc = 0;
fail:
    if (fd >= 0)
        close(fd);
    sodium_free(line);
    return rc;
}

int audit_key_write(const char *path, const char *label, const uint8_t *key, size_t n,
                    mode_t mode, char *err, size_t errlen)
{
    char *line = NULL;
    size_t llen = strlen(label), total;
    int fd = -1, rc = -1;

    if (2 * n + llen + 2 > KEY_LINE_MAX) {
        snprintf(err, errlen, "%s: key too long", path);
        return -1;
    }
    line = sodium_malloc(KEY_LINE_MAX + 1);
    if (!line) {
        snprintf(err, errlen, "%s: out of memory", path);
        return -1;
    }
    memcpy(line, label, llen);
    line[llen] = ' ';
    sodium_bin2hex(line + llen + 1, 2 * n + 1, key, n);
    total = llen + 1 + 2 * n;
    line[total++] = '\n';
    /* O_EXCL: never overwrite a key; a lost key is a lost log. */
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        goto fail;
    }
    if (fchmod(fd, mode) != 0 || write(fd, line, total) != (ssize_t)total || fsync(fd) != 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        close(fd);
        fd = -1;
        unlink(path);
        goto fail;
    }
    rc = 0;
fail:
    if (fd >= 0 && close(fd) != 0 && rc == 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        rc = -1;
    }
    sodium_free(line);
    return rc;
}

int audit_keygen(const char *prefix, char *err, size_t errlen)
{
    static const char *suffix[4] = {".sign.key", ".sign.pub", ".seal.key", ".seal.pub"};
    char paths[4][4096];
    uint8_t *sign_sk = NULL, *seal_sk = NULL;
    uint8_t sign_pk[crypto_sign_PUBLICKEYBYTES], seal_pk[crypto_box_PUBLICKEYBYTES];
    struct stat st;
    int i, written = 0, rc = -1;

    if (sodium_init() < 0) {
        snprintf(err, errlen, "libsodium failed to initialise");
        return -1;
    }
    for (i = 0; i < 4; i++) {
        if ((size_t)snprintf(paths[i], sizeof(paths[i]), "%s%s", prefix, suffix[i]) >=
            sizeof(paths[i])) {
            snprintf(err, errlen, "%s: path too long", prefix);
            return -1;
        }
        if (lstat(paths[i], &st) == 0) {
            snprintf(err, errlen, "%s exists; refusing to overwrite a key", paths[i]);
            return -1;
        }
    }
    sign_sk = sodium_malloc(crypto_sign_SECRETKEYBYTES);
    seal_sk = sodium_malloc(crypto_box_SECRETKEYBYTES);
    if (!sign_sk || !seal_sk) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    crypto_sign_keypair(sign_pk, sign_sk);
    crypto_box_keypair(seal_pk, seal_sk);
    if (audit_key_write(paths[0], AUDIT_LABEL_SIGN_KEY, sign_sk, crypto_sign_SECRETKEYBYTES, 0600,
                        err, errlen) != 0)
        goto fail;
    written = 1;
    if (audit_key_write(paths[1], AUDIT_LABEL_SIGN_PUB, sign_pk, sizeof(sign_pk), 0644, err,
                        errlen) != 0)
        goto fail;
    written = 2;
    if (audit_key_write(paths[2], AUDIT_LABEL_SEAL_KEY, seal_sk, crypto_box_SECRETKEYBYTES, 0600,
                        err, errlen) != 0)
        goto fail;
    written = 3;
    if (audit_key_write(paths[3], AUDIT_LABEL_SEAL_PUB, seal_pk, sizeof(seal_pk), 0644, err,
                        errlen) != 0)
        goto fail;
    written = 4;
    rc = 0;
fail:
    if (rc != 0)
        for (i = 0; i < written; i++)
            unlink(paths[i]);
    sodium_free(sign_sk);
    sodium_free(seal_sk);
    return rc;
}
