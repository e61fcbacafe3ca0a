/* test_mint.c -- host certificates (proxy/mint.c): a minted leaf verifies against the CA
 * as a TLS server certificate for its host (X509_verify_cert with the sslserver purpose,
 * X509_check_host, and `openssl verify`), carries its SAN, stays inside the CA's
 * validity, is cached (and evicted oldest first), and its SSL_CTX negotiates ALPN
 * http/1.1 only and TLS >= 1.2 in a real handshake; a CA that is not one, or a key that
 * does not match, is refused by egress_mint_new. */
#include "proxy/egress.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "tests/config/ca_test_util.h"
#include "tests/harness.h"

static char tmpdir[256];
static char ca_crt[512], ca_key[512];
static X509 *ca_x;

static void paths(const char *name, char *c, char *k)
{
    snprintf(c, 512, "%s/%s.crt", tmpdir, name);
    snprintf(k, 512, "%s/%s.key", tmpdir, name);
}

static void setup(void)
{
    char c[512], k[512];
    EVP_PKEY *k1, *k2, *k3;
    ca_x = cat_make("airlock test CA", 1, "critical,keyCertSign,cRLSign", 3650, NULL, NULL, &k1);
    paths("ca", ca_crt, ca_key);
    cat_write(ca_crt, ca_x, ca_key, k1, 0600);
    X509 *nonca = cat_make("leafish", 0, NULL, 365, NULL, NULL, &k2);
    paths("nonca", c, k);
    cat_write(c, nonca, k, k2, 0600);
    paths("mismatch", c, k);
    cat_write(c, ca_x, k, k2, 0600);
    /* a CA that ends in 10 days: leaves must end with it */
    X509 *shortca = cat_make("short CA", 1, NULL, 10, NULL, NULL, &k3);
    paths("short", c, k);
    cat_write(c, shortca, k, k3, 0600);
    X509_free(nonca);
    X509_free(shortca);
    EVP_PKEY_free(k1);
    EVP_PKEY_free(k2);
    EVP_PKEY_free(k3);
}

static X509 *leaf_of(SSL_CTX *ctx)
{
    return ctx ? SSL_CTX_get0_certificate(ctx) : NULL;
}

/* verify -- leaf against the CA alone, as a TLS server certificate for host: 1 ok */
static int verify(X509 *leaf, X509 *ca, const char *host)
{
    X509_STORE *st = X509_STORE_new();
    X509_STORE_CTX *vc = X509_STORE_CTX_new();
    int ok = 0;
    if (st && vc && X509_STORE_add_cert(st, ca) == 1 &&
        X509_STORE_CTX_init(vc, st, leaf, NULL) == 1) {
        X509_STORE_CTX_set_purpose(vc, X509_PURPOSE_SSL_SERVER);
        X509_VERIFY_PARAM *p = X509_STORE_CTX_get0_param(vc);
        if (strchr(host, ':') || strspn(host, "0123456789.") == strlen(host))
            X509_VERIFY_PARAM_set1_ip_asc(p, host);
        else
            X509_VERIFY_PARAM_set1_host(p, host, 0);
        ok = X509_verify_cert(vc) == 1;
        if (!ok)
            fprintf(stderr, "  verify %s: %s\n", host,
                    X509_verify_cert_error_string(X509_STORE_CTX_get_error(vc)));
    }
    X509_STORE_CTX_free(vc);
    X509_STORE_free(st);
    return ok;
}

static void test_leaf(void)
{
    char err[300] = "";
    struct egress_mint *m = egress_mint_new(ca_crt, ca_key, err, sizeof err);
    REQUIRE(m != NULL);
    CHECK_EQ_INT(egress_mint_count(m), 0);
    SSL_CTX *c = egress_mint_ctx(m, "api.openai.com", err, sizeof err);
    REQUIRE(c != NULL);
    X509 *leaf = leaf_of(c);
    REQUIRE(leaf != NULL);
    CHECK(verify(leaf, ca_x, "api.openai.com"));
    CHECK(!verify(leaf, ca_x, "api.anthropic.com"));
    CHECK(X509_check_host(leaf, "api.openai.com", 0, 0, NULL) == 1);
    CHECK(X509_check_host(leaf, "evil.com", 0, 0, NULL) != 1);
    CHECK(X509_check_ca(leaf) == 0);                   /* CA:FALSE */
    CHECK(X509_check_issued(ca_x, leaf) == X509_V_OK); /* issuer name and AKI */
    CHECK(X509_check_purpose(leaf, X509_PURPOSE_SSL_SERVER, 0) == 1);
    CHECK(X509_get_extended_key_usage(leaf) & XKU_SSL_SERVER);
    /* the SAN names the host */
    GENERAL_NAMES *san = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
    REQUIRE(san != NULL);
    CHECK_EQ_INT(sk_GENERAL_NAME_num(san), 1);
    const GENERAL_NAME *g = sk_GENERAL_NAME_value(san, 0);
    CHECK(g->type == GEN_DNS);
    CHECK(ASN1_STRING_length(g->d.dNSName) == 14 &&
          memcmp(ASN1_STRING_get0_data(g->d.dNSName), "api.openai.com", 14) == 0);
    GENERAL_NAMES_free(san);
    /* ECDSA P-256 */
    EVP_PKEY *pk = X509_get0_pubkey(leaf);
    CHECK(EVP_PKEY_get_base_id(pk) == EVP_PKEY_EC);
    char group[32] = "";
    size_t gl = 0;
    EVP_PKEY_get_group_name(pk, group, sizeof group, &gl);
    CHECK_EQ_STR(group, "prime256v1");
    /* inside the CA's validity; started in the past, ends in the future */
    CHECK(ASN1_TIME_compare(X509_get0_notBefore(leaf), X509_get0_notBefore(ca_x)) >= 0);
    CHECK(ASN1_TIME_compare(X509_get0_notAfter(leaf), X509_get0_notAfter(ca_x)) <= 0);
    CHECK(X509_cmp_current_time(X509_get0_notBefore(leaf)) < 0);
    CHECK(X509_cmp_current_time(X509_get0_notAfter(leaf)) > 0);
    /* a 128-bit serial (16 bytes, positive) */
    const ASN1_INTEGER *sn = X509_get0_serialNumber(leaf);
    BIGNUM *bn = ASN1_INTEGER_to_BN(sn, NULL);
    CHECK(bn && BN_num_bits(bn) > 120 && BN_num_bits(bn) <= 127 && !BN_is_negative(bn));
    BN_free(bn);

    /* cached: the same ctx, no second mint */
    CHECK(egress_mint_ctx(m, "api.openai.com", err, sizeof err) == c);
    CHECK_EQ_INT(egress_mint_count(m), 1);
    SSL_CTX *c2 = egress_mint_ctx(m, "api.anthropic.com", err, sizeof err);
    CHECK(c2 != NULL && c2 != c);
    CHECK_EQ_INT(egress_mint_count(m), 2);
    CHECK(verify(leaf_of(c2), ca_x, "api.anthropic.com"));
    /* two leaves, two serials */
    CHECK(ASN1_INTEGER_cmp(X509_get0_serialNumber(leaf_of(c2)), sn) != 0);

    /* `openssl verify` agrees, when the tool is here */
    if (system("command -v openssl >/dev/null 2>&1") == 0) {
        char lp[512], cmd[1600];
        snprintf(lp, sizeof lp, "%s/leaf.pem", tmpdir);
        FILE *f = fopen(lp, "w");
        REQUIRE(f && PEM_write_X509(f, leaf));
        fclose(f);
        snprintf(cmd, sizeof cmd,
                 "openssl verify -x509_strict -purpose sslserver -verify_hostname api.openai.com "
                 "-CAfile '%s' '%s' >/dev/null",
                 ca_crt, lp);
        CHECK(system(cmd) == 0);
        snprintf(cmd, sizeof cmd,
                 "openssl verify -purpose sslserver -verify_hostname other.example -CAfile '%s' "
                 "'%s' >/dev/null 2>&1",
                 ca_crt, lp);
        CHECK(system(cmd) != 0);
    }
    egress_mint_free(m);
}

static void test_literals_and_long(void)
{
    char err[300];
    struct egress_mint *m = egress_mint_new(ca_crt, ca_key, err, sizeof err);
    REQUIRE(m != NULL);
    SSL_CTX *c = egress_mint_ctx(m, "10.0.0.5", err, sizeof err);
    REQUIRE(c != NULL);
    CHECK(X509_check_ip_asc(leaf_of(c), "10.0.0.5", 0) == 1);
    CHECK(X509_check_ip_asc(leaf_of(c), "10.0.0.6", 0) != 1);
    CHECK(verify(leaf_of(c), ca_x, "10.0.0.5"));
    c = egress_mint_ctx(m, "fd00::1", err, sizeof err);
    REQUIRE(c != NULL);
    CHECK(X509_check_ip_asc(leaf_of(c), "fd00::1", 0) == 1);
    /* a 253-byte name: no CN (64 at most), the SAN alone */
    char big[254];
    memset(big, 'a', 253);
    big[253] = '\0';
    big[63] = big[127] = big[191] = '.';
    c = egress_mint_ctx(m, big, err, sizeof err);
    REQUIRE(c != NULL);
    CHECK(X509_check_host(leaf_of(c), big, 0, 0, NULL) == 1);
    CHECK(verify(leaf_of(c), ca_x, big));
    CHECK(egress_mint_ctx(m, "", err, sizeof err) == NULL);
    egress_mint_free(m);
}

static void test_short_ca(void)
{
    char c[512], k[512], err[300];
    paths("short", c, k);
    struct egress_mint *m = egress_mint_new(c, k, err, sizeof err);
    REQUIRE(m != NULL);
    FILE *f = fopen(c, "r");
    REQUIRE(f);
    X509 *ca = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    REQUIRE(ca);
    SSL_CTX *ctx = egress_mint_ctx(m, "a.example", err, sizeof err);
    REQUIRE(ctx != NULL);
    /* the leaf ends when the CA does, not 90 days on */
    CHECK(ASN1_TIME_compare(X509_get0_notAfter(leaf_of(ctx)), X509_get0_notAfter(ca)) == 0);
    CHECK(verify(leaf_of(ctx), ca, "a.example"));
    X509_free(ca);
    egress_mint_free(m);
}

static void test_refused(void)
{
    char c[512], k[512], err[300] = "";
    paths("nonca", c, k);
    CHECK(egress_mint_new(c, k, err, sizeof err) == NULL);
    CHECK(strstr(err, "not a CA") != NULL);
    paths("mismatch", c, k);
    CHECK(egress_mint_new(c, k, err, sizeof err) == NULL);
    CHECK(strstr(err, "does not match") != NULL);
    snprintf(c, sizeof c, "%s/none.crt", tmpdir);
    CHECK(egress_mint_new(c, ca_key, err, sizeof err) == NULL);
    CHECK(strstr(err, "cannot be read") != NULL);
    chmod(ca_key, 0644);
    CHECK(egress_mint_new(ca_crt, ca_key, err, sizeof err) == NULL);
    CHECK(strstr(err, "0600") != NULL);
    chmod(ca_key, 0600);
}

static void test_eviction(void)
{
    char err[300];
    struct egress_mint *m = egress_mint_new(ca_crt, ca_key, err, sizeof err);
    REQUIRE(m != NULL);
    CHECK(egress_mint_set_limit(m, 0) == -1);
    REQUIRE(egress_mint_set_limit(m, 3) == 0);
    const char *h[] = {"a.example", "b.example", "c.example", "d.example"};
    for (int i = 0; i < 4; i++)
        CHECK(egress_mint_ctx(m, h[i], err, sizeof err) != NULL);
    CHECK_EQ_INT(egress_mint_count(m), 4);
    /* b, c, d cached; a was the oldest and went */
    for (int i = 1; i < 4; i++)
        CHECK(egress_mint_ctx(m, h[i], err, sizeof err) != NULL);
    CHECK_EQ_INT(egress_mint_count(m), 4);
    SSL_CTX *a = egress_mint_ctx(m, "a.example", err, sizeof err);
    CHECK(a != NULL);
    CHECK_EQ_INT(egress_mint_count(m), 5);
    CHECK(X509_check_host(leaf_of(a), "a.example", 0, 0, NULL) == 1);
    /* now b went (the oldest) and c, d, a stay */
    CHECK(egress_mint_ctx(m, "c.example", err, sizeof err) != NULL);
    CHECK(egress_mint_ctx(m, "a.example", err, sizeof err) == a);
    CHECK_EQ_INT(egress_mint_count(m), 5);
    CHECK(egress_mint_ctx(m, "b.example", err, sizeof err) != NULL);
    CHECK_EQ_INT(egress_mint_count(m), 6);
    egress_mint_free(m);
}

/* handshake -- a client trusting the CA, offering alpn (wire format, may be NULL) and at
 * most TLS version maxv, against a server SSL from ctx, over memory BIOs. 1 done, 0
 * failed; *proto gets the ALPN chosen ("" none). */
static int handshake(SSL_CTX *sctx, const char *sni, const unsigned char *alpn, unsigned alen,
                     int maxv, char *proto, size_t cap)
{
    SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
    SSL *c = NULL, *s = NULL;
    BIO *cb = NULL, *sb = NULL;
    int done = 0;
    proto[0] = '\0';
    if (!cctx)
        return 0;
    X509_STORE_add_cert(SSL_CTX_get_cert_store(cctx), ca_x);
    SSL_CTX_set_verify(cctx, SSL_VERIFY_PEER, NULL);
    if (maxv)
        SSL_CTX_set_max_proto_version(cctx, maxv);
    if (alpn)
        SSL_CTX_set_alpn_protos(cctx, alpn, alen);
    c = SSL_new(cctx);
    s = SSL_new(sctx);
    BIO_new_bio_pair(&cb, 0, &sb, 0);
    SSL_set_bio(c, cb, cb);
    SSL_set_bio(s, sb, sb);
    SSL_set_tlsext_host_name(c, sni);
    SSL_set1_host(c, sni);
    SSL_set_connect_state(c);
    SSL_set_accept_state(s);
    for (int i = 0; i < 20 && !done; i++) {
        int rc = SSL_do_handshake(c), rs = SSL_do_handshake(s);
        if (rc == 1 && rs == 1)
            done = 1;
        else if ((rc <= 0 && SSL_get_error(c, rc) != SSL_ERROR_WANT_READ) ||
                 (rs <= 0 && SSL_get_error(s, rs) != SSL_ERROR_WANT_READ))
            break;
    }
    if (done) {
        const unsigned char *p;
        unsigned n;
        SSL_get0_alpn_selected(c, &p, &n);
        snprintf(proto, cap, "%.*s", (int)n, (const char *)p);
    }
    SSL_free(c);
    SSL_free(s);
    SSL_CTX_free(cctx);
    ERR_clear_error();
    return done;
}

static void test_handshake_alpn(void)
{
    char err[300], proto[32];
    struct egress_mint *m = egress_mint_new(ca_crt, ca_key, err, sizeof err);
    REQUIRE(m != NULL);
    SSL_CTX *ctx = egress_mint_ctx(m, "api.openai.com", err, sizeof err);
    REQUIRE(ctx != NULL);
    static const unsigned char both[] = "\x02h2\x08http/1.1";
    static const unsigned char h2[] = "\x02h2";
    static const unsigned char h11[] = "\x08http/1.1";
    /* what curl and browsers offer: h2 first; http/1.1 is chosen */
    CHECK(handshake(ctx, "api.openai.com", both, sizeof both - 1, 0, proto, sizeof proto));
    CHECK_EQ_STR(proto, "http/1.1");
    CHECK(handshake(ctx, "api.openai.com", h11, sizeof h11 - 1, 0, proto, sizeof proto));
    CHECK_EQ_STR(proto, "http/1.1");
    /* no ALPN at all: fine, none */
    CHECK(handshake(ctx, "api.openai.com", NULL, 0, 0, proto, sizeof proto));
    CHECK_EQ_STR(proto, "");
    /* h2 alone: the handshake fails (no_application_protocol), no h2 spoken at us */
    CHECK(!handshake(ctx, "api.openai.com", h2, sizeof h2 - 1, 0, proto, sizeof proto));
    /* TLS 1.2 works, 1.1 does not */
    CHECK(
        handshake(ctx, "api.openai.com", h11, sizeof h11 - 1, TLS1_2_VERSION, proto, sizeof proto));
    CHECK(!handshake(ctx, "api.openai.com", h11, sizeof h11 - 1, TLS1_1_VERSION, proto,
                     sizeof proto));
    /* the client checks the name: this certificate is not for another host */
    CHECK(!handshake(ctx, "api.anthropic.com", h11, sizeof h11 - 1, 0, proto, sizeof proto));
    egress_mint_free(m);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/airlock-mint-test-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 2;
    }
    setup();
    RUN(test_leaf);
    RUN(test_literals_and_long);
    RUN(test_short_ca);
    RUN(test_refused);
    RUN(test_eviction);
    RUN(test_handshake_alpn);
    X509_free(ca_x);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
    return harness_done();
}
