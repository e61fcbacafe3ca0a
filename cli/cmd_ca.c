/* cmd_ca.c -- `airlock ca init --out PREFIX` and `airlock ca bundle --ca FILE` (SPEC §1):
 * the organisation CA the egress proxy mints host certificates with (SPEC §8).
 *
 * init writes PREFIX.key (PEM, created 0600 with O_EXCL) and PREFIX.crt (PEM): a
 * self-signed ECDSA P-256 CA, basicConstraints critical CA:TRUE pathlen:0, keyUsage
 * critical keyCertSign cRLSign, subject/authority key identifiers, a random 128-bit
 * serial, valid from an hour ago for ten years, CN "airlock egress CA HOST DATE". It
 * refuses to overwrite either file. bundle prints the system's trusted roots followed by
 * the CA: the file for clients that replace their trust store (SSL_CERT_FILE). Every
 * failure is one line on stderr and exit 2. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "cli/cli.h"

#define CA_USAGE "ca init --out PREFIX | ca bundle --ca FILE"
#define CA_DAYS 3650

static int add_ext(X509 *x, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (!e)
        return -1;
    int ok = X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
    return ok ? 0 : -1;
}

/* ca_new -- a fresh self-signed CA and its key, or -1. */
static int ca_new(X509 **out, EVP_PKEY **kout)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    BIGNUM *bn = NULL;
    unsigned char serial[16];
    char host[256] = "", cn[65], day[16];
    time_t now = time(NULL);
    struct tm tm;

    if (!k || !x || RAND_bytes(serial, sizeof serial) != 1)
        goto fail;
    serial[0] = (unsigned char)((serial[0] & 0x7f) | 0x40); /* positive, 16 bytes */
    if (!(bn = BN_bin2bn(serial, sizeof serial, NULL)) ||
        !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)))
        goto fail;
    if (gethostname(host, sizeof host - 1) != 0 || !host[0])
        snprintf(host, sizeof host, "%s", "localhost");
    gmtime_r(&now, &tm);
    strftime(day, sizeof day, "%Y-%m-%d", &tm);
    snprintf(cn, sizeof cn, "airlock egress CA %.30s %s", host, day); /* CN <= 64 bytes */
    X509_NAME *name = X509_get_subject_name(x);
    if (!X509_set_version(x, 2) || !ASN1_TIME_set(X509_getm_notBefore(x), now - 3600) ||
        !ASN1_TIME_set(X509_getm_notAfter(x), now + (time_t)CA_DAYS * 86400) ||
        !X509_set_pubkey(x, k) ||
        !X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"airlock", -1,
                                    -1, 0) ||
        !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1,
                                    0) ||
        !X509_set_issuer_name(x, name))
        goto fail;
    if (add_ext(x, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") != 0 ||
        add_ext(x, NID_key_usage, "critical,keyCertSign,cRLSign") != 0 ||
        add_ext(x, NID_subject_key_identifier, "hash") != 0 ||
        add_ext(x, NID_authority_key_identifier, "keyid:always") != 0 ||
        !X509_sign(x, k, EVP_sha256()))
        goto fail;
    BN_free(bn);
    *out = x;
    *kout = k;
    return 0;
fail:
    BN_free(bn);
    X509_free(x);
    EVP_PKEY_free(k);
    return -1;
}

/* write_new -- the PEM in b into a file that must not exist yet, created with mode. 0, or
 * -1 with errno. */
static int write_new(const char *path, BIO *b, mode_t mode)
{
    char *p;
    long n = BIO_get_mem_data(b, &p);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0)
        return -1;
    if (fchmod(fd, mode) != 0) /* the umask may only have narrowed it; say it exactly */
        goto fail;
    for (long off = 0; off < n;) {
        ssize_t w = write(fd, p + off, (size_t)(n - off));
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            goto fail;
        off += w;
    }
    if (fsync(fd) != 0)
        goto fail;
    return close(fd);
fail : {
    int e = errno;
    close(fd);
    unlink(path);
    errno = e;
    return -1;
}
}

static int ca_init(const char *prefix)
{
    char crt[4096], key[4096];
    struct stat st;
    X509 *x = NULL;
    EVP_PKEY *k = NULL;
    BIO *kb = NULL, *cb = NULL;
    int rc = 2;

    if (snprintf(crt, sizeof crt, "%s.crt", prefix) >= (int)sizeof crt ||
        snprintf(key, sizeof key, "%s.key", prefix) >= (int)sizeof key) {
        fprintf(stderr, "airlock ca init: the prefix is too long\n");
        return 2;
    }
    if (lstat(crt, &st) == 0 || lstat(key, &st) == 0) {
        fprintf(stderr, "airlock ca init: %s exists; refusing to overwrite it\n",
                lstat(crt, &st) == 0 ? crt : key);
        return 2;
    }
    if (ca_new(&x, &k) != 0) {
        fprintf(stderr, "airlock ca init: could not make the CA certificate\n");
        goto out;
    }
    if (!(kb = BIO_new(BIO_s_secmem())) || !(cb = BIO_new(BIO_s_mem())) ||
        !PEM_write_bio_PrivateKey(kb, k, NULL, NULL, 0, NULL, NULL) || !PEM_write_bio_X509(cb, x)) {
        fprintf(stderr, "airlock ca init: out of memory\n");
        goto out;
    }
    if (write_new(key, kb, 0600) != 0) {
        fprintf(stderr, "airlock ca init: cannot create %s: %s\n", key, strerror(errno));
        goto out;
    }
    if (write_new(crt, cb, 0644) != 0) {
        fprintf(stderr, "airlock ca init: cannot create %s: %s\n", crt, strerror(errno));
        unlink(key);
        goto out;
    }
    printf("wrote %s (the CA certificate: give it to clients) and %s (mode 0600: keep it on "
           "the proxy host)\n",
           crt, key);
    rc = 0;
out:
    BIO_free(kb);
    BIO_free(cb);
    X509_free(x);
    EVP_PKEY_free(k);
    ERR_clear_error();
    return rc;
}

/* roots_path -- the system's trusted roots as one PEM file: OpenSSL's default, then the
 * usual distribution places. NULL when none can be read. */
static const char *roots_path(void)
{
    static const char *const known[] = {
        "/etc/ssl/certs/ca-certificates.crt", /* Debian, Ubuntu, Alpine */
        "/etc/pki/tls/certs/ca-bundle.crt",   /* Fedora, RHEL */
        "/etc/ssl/cert.pem",                  /* macOS, BSDs */
        NULL,
    };
    const char *d = X509_get_default_cert_file();
    if (d && access(d, R_OK) == 0)
        return d;
    for (size_t i = 0; known[i]; i++)
        if (access(known[i], R_OK) == 0)
            return known[i];
    return NULL;
}

static int ca_bundle(const char *path)
{
    X509 *x = NULL;
    FILE *f = fopen(path, "r");
    char buf[65536];
    size_t n;
    int last = '\n', rc = 2;

    if (!f) {
        fprintf(stderr, "airlock ca bundle: cannot read %s: %s\n", path, strerror(errno));
        return 2;
    }
    x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (!x) {
        fprintf(stderr, "airlock ca bundle: %s is not a PEM certificate\n", path);
        goto out;
    }
    uint32_t xf = X509_get_extension_flags(x);
    if (!(xf & EXFLAG_CA) ||
        ((xf & EXFLAG_KUSAGE) && !(X509_get_key_usage(x) & KU_KEY_CERT_SIGN))) {
        fprintf(stderr,
                "airlock ca bundle: %s is not a CA certificate (make one with `airlock ca "
                "init`)\n",
                path);
        goto out;
    }
    const char *roots = roots_path();
    if (!roots || !(f = fopen(roots, "r"))) {
        fprintf(stderr, "airlock ca bundle: no system trust store found (%s)\n",
                roots ? roots
                      : "looked for OpenSSL's default and /etc/ssl/certs/ca-certificates.crt");
        goto out;
    }
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
        if (fwrite(buf, 1, n, stdout) != n)
            break;
        last = (unsigned char)buf[n - 1];
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        fprintf(stderr, "airlock ca bundle: cannot read %s\n", roots);
        goto out;
    }
    if (last != '\n')
        putchar('\n');
    if (!PEM_write_X509(stdout, x) || fflush(stdout) != 0) {
        fprintf(stderr, "airlock ca bundle: cannot write the bundle: %s\n", strerror(errno));
        goto out;
    }
    rc = 0;
out:
    X509_free(x);
    ERR_clear_error();
    return rc;
}

int cmd_ca(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "init") == 0 && strcmp(argv[2], "--out") == 0 && argv[3][0])
        return ca_init(argv[3]);
    if (argc == 4 && strcmp(argv[1], "bundle") == 0 && strcmp(argv[2], "--ca") == 0 && argv[3][0])
        return ca_bundle(argv[3]);
    return cli_usage(CA_USAGE);
}
