/* ca_test_util.h -- certificates for the egress tests (config/egress.c, proxy/mint.c):
 * a P-256 certificate with chosen basicConstraints and keyUsage, self-signed or signed by
 * another, written as PEM with the key at a chosen mode. Test code: exits on failure. */
#ifndef AIRLOCK_TESTS_CA_TEST_UTIL_H
#define AIRLOCK_TESTS_CA_TEST_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#define CAT_NO_BC (-1) /* no basicConstraints at all */

static void cat_die(const char *what)
{
    fprintf(stderr, "ca_test_util: %s failed\n", what);
    exit(2);
}

static void cat_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer ? issuer : x, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (!e || !X509_add_ext(x, e, -1))
        cat_die(value);
    X509_EXTENSION_free(e);
}

/* cat_make -- a certificate for CN `cn`, valid from now-1h for `days` days: ca 1
 * (CA:TRUE), 0 (CA:FALSE) or CAT_NO_BC; ku a keyUsage value ("keyCertSign, cRLSign") or
 * NULL; signed by (issuer, ikey) or self-signed when issuer is NULL. *key_out gets the
 * new key (caller frees) and the certificate is returned (caller frees). */
static X509 *cat_make(const char *cn, int ca, const char *ku, long days, X509 *issuer,
                      EVP_PKEY *ikey, EVP_PKEY **key_out)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    if (!k || !x)
        cat_die("keygen");
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), (long)(rand() & 0x7fffffff) + 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), days * 86400L);
    X509_set_pubkey(x, k);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : n);
    if (ca == 1)
        cat_ext(x, issuer, NID_basic_constraints, "critical,CA:TRUE");
    else if (ca == 0)
        cat_ext(x, issuer, NID_basic_constraints, "critical,CA:FALSE");
    if (ku)
        cat_ext(x, issuer, NID_key_usage, ku);
    cat_ext(x, issuer, NID_subject_key_identifier, "hash");
    if (!X509_sign(x, issuer ? ikey : k, EVP_sha256()))
        cat_die("sign");
    *key_out = k;
    return x;
}

static void cat_write(const char *cert_path, X509 *x, const char *key_path, EVP_PKEY *k,
                      mode_t mode)
{
    FILE *f = fopen(cert_path, "w");
    if (!f || !PEM_write_X509(f, x))
        cat_die(cert_path);
    fclose(f);
    if (key_path) {
        remove(key_path);
        f = fopen(key_path, "w");
        if (!f || !PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL))
            cat_die(key_path);
        fclose(f);
        chmod(key_path, mode);
    }
}

#endif
