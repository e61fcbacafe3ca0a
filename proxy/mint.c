/* mint.c -- host certificates for the egress proxy's interception (SPEC §8): the org CA
 * loaded once, and a leaf certificate per host minted on first use, each in its own
 * server SSL_CTX, cached.
 *
 * A leaf: ECDSA P-256; subjectAltName DNS:host (IP:addr for a literal); CN=host when it
 * fits (64 bytes); a random 128-bit serial; valid from an hour ago (clock skew) for
 * LEAF_DAYS, never past the CA's notAfter nor before its notBefore; issuer the CA's
 * subject, authorityKeyIdentifier from the CA; basicConstraints CA:FALSE, keyUsage
 * digitalSignature, extendedKeyUsage serverAuth; signed by the CA key with SHA-256.
 *
 * One leaf key pair per mint (per loaded config), shared by every host's certificate:
 * it saves a key generation per host (the first mint of a host costs one signature), and
 * it protects nothing the process does not already hold -- whoever can read this
 * process's memory has the CA key too. A leaf nearing its end (a day left) is minted
 * again on its next use, so a long-running process never serves an expired one.
 *
 * The cache holds at most EGRESS_MINT_MAX hosts: a chained hash on the host, the entries
 * in a ring in minting order, so the oldest is evicted first. An SSL_CTX is reference-
 * counted by OpenSSL: connections made from an evicted one keep it alive until they end.
 *
 * Threading: one lock guards the cache; minting happens under it (the loop calls this). */
#include "proxy/egress.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#define EGRESS_MINT_MAX 10000
#define LEAF_DAYS 90
#define LEAF_RENEW_S 86400 /* mint again when less than a day is left */
#define N_BUCKETS 16384    /* a power of two, > EGRESS_MINT_MAX */

struct mint_entry {
    char *host; /* NULL: free slot */
    SSL_CTX *ctx;
    time_t not_after;
    uint32_t hash;
    int next; /* next entry in the bucket's chain, -1 none */
};

struct egress_mint {
    X509 *ca;
    EVP_PKEY *ca_key;
    EVP_PKEY *leaf_key; /* shared by every leaf (see above) */
    time_t ca_not_before, ca_not_after;
    pthread_mutex_t lock;    /* guards everything below */
    struct mint_entry *ring; /* [limit], oldest at `head` once full */
    size_t limit, used, head;
    int buckets[N_BUCKETS]; /* entry index, -1 none */
    size_t minted;
};

static void say(char *err, size_t errlen, const char *msg)
{
    if (err && errlen)
        snprintf(err, errlen, "%s", msg);
}

static uint32_t host_hash(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a: hosts are chosen by clients, but a chain walk is
                                 bounded by the cache size and only costs strcmps */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static time_t asn1_time_t(const ASN1_TIME *t)
{
    struct tm tm;
    if (!t || ASN1_TIME_to_tm(t, &tm) != 1)
        return 0;
    return timegm(&tm);
}

struct egress_mint *egress_mint_new(const char *ca_cert, const char *ca_key, char *err,
                                    size_t errlen)
{
    struct egress_mint *m = calloc(1, sizeof *m);
    if (!m) {
        say(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&m->lock, NULL);
    for (size_t i = 0; i < N_BUCKETS; i++)
        m->buckets[i] = -1;
    m->limit = EGRESS_MINT_MAX;
    if (config_egress_ca_load(ca_cert, ca_key, &m->ca, &m->ca_key, err, errlen) != 0)
        goto fail;
    m->ca_not_before = asn1_time_t(X509_get0_notBefore(m->ca));
    m->ca_not_after = asn1_time_t(X509_get0_notAfter(m->ca));
    if (!(m->leaf_key = EVP_EC_gen("P-256"))) {
        say(err, errlen, "could not generate the host certificates' P-256 key");
        goto fail;
    }
    if (!(m->ring = calloc(m->limit, sizeof *m->ring))) {
        say(err, errlen, "out of memory");
        goto fail;
    }
    return m;
fail:
    ERR_clear_error();
    egress_mint_free(m);
    return NULL;
}

static void entry_clear(struct mint_entry *e)
{
    free(e->host);
    SSL_CTX_free(e->ctx);
    e->host = NULL;
    e->ctx = NULL;
}

void egress_mint_free(struct egress_mint *m)
{
    if (!m)
        return;
    for (size_t i = 0; m->ring && i < m->limit; i++)
        entry_clear(&m->ring[i]);
    free(m->ring);
    X509_free(m->ca);
    EVP_PKEY_free(m->ca_key);
    EVP_PKEY_free(m->leaf_key);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

size_t egress_mint_count(const struct egress_mint *m)
{
    size_t n;
    pthread_mutex_lock((pthread_mutex_t *)&m->lock);
    n = m->minted;
    pthread_mutex_unlock((pthread_mutex_t *)&m->lock);
    return n;
}

/* egress_mint_set_limit -- (tests) keep at most max hosts; the cache is emptied. */
int egress_mint_set_limit(struct egress_mint *m, size_t max)
{
    struct mint_entry *r;
    if (max == 0 || max > EGRESS_MINT_MAX || !(r = calloc(max, sizeof *r)))
        return -1;
    pthread_mutex_lock(&m->lock);
    for (size_t i = 0; i < m->limit; i++)
        entry_clear(&m->ring[i]);
    free(m->ring);
    m->ring = r;
    m->limit = max;
    m->used = m->head = 0;
    for (size_t i = 0; i < N_BUCKETS; i++)
        m->buckets[i] = -1;
    pthread_mutex_unlock(&m->lock);
    return 0;
}

/* ---- one leaf ---- */

static int add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (!e)
        return -1;
    int ok = X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
    return ok ? 0 : -1;
}

static int random_serial(X509 *x)
{
    unsigned char b[16];
    BIGNUM *bn = NULL;
    int ok = 0;
    if (RAND_bytes(b, sizeof b) != 1)
        return -1;
    b[0] &= 0x7f; /* positive in DER, and at most 16 bytes */
    b[0] |= 0x40; /* never shorter than 16 bytes: never zero */
    if ((bn = BN_bin2bn(b, sizeof b, NULL)) != NULL)
        ok = BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
    BN_free(bn);
    return ok ? 0 : -1;
}

/* leaf_new -- the certificate for host (a name, or an IPv4/IPv6 literal without
 * brackets), or NULL. *not_after gets its end. */
static X509 *leaf_new(struct egress_mint *m, const char *host, time_t *not_after)
{
    X509 *x = X509_new();
    char san[300];
    unsigned char addr[16];
    time_t now = time(NULL), nb = now - 3600, na = now + (time_t)LEAF_DAYS * 86400;
    int literal = inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;

    if (!x)
        return NULL;
    if (nb < m->ca_not_before)
        nb = m->ca_not_before;
    if (na > m->ca_not_after)
        na = m->ca_not_after;
    snprintf(san, sizeof san, "%s:%s", literal ? "IP" : "DNS", host);
    if (!X509_set_version(x, 2) || random_serial(x) != 0 ||
        !ASN1_TIME_set(X509_getm_notBefore(x), nb) || !ASN1_TIME_set(X509_getm_notAfter(x), na) ||
        !X509_set_pubkey(x, m->leaf_key) || !X509_set_issuer_name(x, X509_get_subject_name(m->ca)))
        goto fail;
    /* CN holds at most 64 bytes (RFC 5280's ub-common-name): longer names go in the SAN
     * alone, which is all clients look at */
    if (strlen(host) <= 64 &&
        !X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                                    (const unsigned char *)host, -1, -1, 0))
        goto fail;
    if (add_ext(x, m->ca, NID_basic_constraints, "critical,CA:FALSE") != 0 ||
        add_ext(x, m->ca, NID_key_usage, "critical,digitalSignature") != 0 ||
        add_ext(x, m->ca, NID_ext_key_usage, "serverAuth") != 0 ||
        add_ext(x, m->ca, NID_subject_alt_name, san) != 0 ||
        add_ext(x, m->ca, NID_subject_key_identifier, "hash") != 0 ||
        add_ext(x, m->ca, NID_authority_key_identifier, "keyid:always") != 0)
        goto fail;
    int kt = EVP_PKEY_get_base_id(m->ca_key);
    const EVP_MD *md = (kt == EVP_PKEY_ED25519 || kt == EVP_PKEY_ED448) ? NULL : EVP_sha256();
    if (!X509_sign(x, m->ca_key, md))
        goto fail;
    *not_after = na;
    return x;
fail:
    X509_free(x);
    return NULL;
}

/* alpn_select -- http/1.1 or nothing: a client that offers only protocols airlock does
 * not speak (h2 alone) fails the handshake with no_application_protocol rather than
 * speaking h2 into an HTTP/1.1 parser; one that offers none gets none. */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl;
    (void)arg;
    for (unsigned int i = 0; i < inlen;) {
        unsigned int n = in[i];
        if (i + 1 + n > inlen)
            break;
        if (n == 8 && memcmp(in + i + 1, "http/1.1", 8) == 0) {
            *out = in + i + 1;
            *outlen = (unsigned char)n;
            return SSL_TLSEXT_ERR_OK;
        }
        i += 1 + n;
    }
    return SSL_TLSEXT_ERR_ALERT_FATAL;
}

static SSL_CTX *ctx_new(struct egress_mint *m, X509 *leaf)
{
    static const unsigned char sid[] = "airlock-egress";
    SSL_CTX *c = SSL_CTX_new(TLS_server_method());
    if (!c)
        return NULL;
    if (!SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION) ||
        SSL_CTX_use_certificate(c, leaf) != 1 || SSL_CTX_use_PrivateKey(c, m->leaf_key) != 1 ||
        SSL_CTX_check_private_key(c) != 1 ||
        !SSL_CTX_set_session_id_context(c, sid, sizeof sid - 1)) {
        SSL_CTX_free(c);
        return NULL;
    }
    SSL_CTX_set_options(c, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                               SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_alpn_select_cb(c, alpn_select, NULL);
    return c;
}

/* ---- the cache ---- */

static int find(struct egress_mint *m, const char *host, uint32_t h)
{
    for (int i = m->buckets[h & (N_BUCKETS - 1)]; i >= 0; i = m->ring[i].next)
        if (m->ring[i].hash == h && strcmp(m->ring[i].host, host) == 0)
            return i;
    return -1;
}

static void unlink_entry(struct egress_mint *m, int idx)
{
    int *p = &m->buckets[m->ring[idx].hash & (N_BUCKETS - 1)];
    while (*p >= 0 && *p != idx)
        p = &m->ring[*p].next;
    if (*p == idx)
        *p = m->ring[idx].next;
}

SSL_CTX *egress_mint_ctx(struct egress_mint *m, const char *host, char *err, size_t errlen)
{
    SSL_CTX *ctx = NULL;
    X509 *leaf = NULL;
    time_t na = 0;
    int idx;

    if (!host || !*host || strlen(host) > 253) {
        say(err, errlen, "no host to mint a certificate for");
        return NULL;
    }
    uint32_t h = host_hash(host);
    pthread_mutex_lock(&m->lock);
    idx = find(m, host, h);
    if (idx >= 0 && m->ring[idx].not_after - time(NULL) > LEAF_RENEW_S) {
        ctx = m->ring[idx].ctx;
        goto out;
    }
    if (!(leaf = leaf_new(m, host, &na)) || !(ctx = ctx_new(m, leaf))) {
        say(err, errlen, "could not mint a certificate for the host");
        ctx = NULL;
        goto out;
    }
    m->minted++;
    if (idx >= 0) { /* renewed in place */
        SSL_CTX_free(m->ring[idx].ctx);
        m->ring[idx].ctx = ctx;
        m->ring[idx].not_after = na;
        goto out;
    }
    char *dup = strdup(host);
    if (!dup) {
        say(err, errlen, "out of memory");
        SSL_CTX_free(ctx);
        ctx = NULL;
        goto out;
    }
    if (m->used < m->limit) {
        idx = (int)m->used++;
    } else { /* full: the oldest goes */
        idx = (int)m->head;
        m->head = (m->head + 1) % m->limit;
        unlink_entry(m, idx);
        entry_clear(&m->ring[idx]);
    }
    struct mint_entry *e = &m->ring[idx];
    e->host = dup;
    e->ctx = ctx;
    e->not_after = na;
    e->hash = h;
    e->next = m->buckets[h & (N_BUCKETS - 1)];
    m->buckets[h & (N_BUCKETS - 1)] = idx;
out:
    pthread_mutex_unlock(&m->lock);
    X509_free(leaf);
    ERR_clear_error();
    return ctx;
}
