/* test_sni.c -- the ClientHello reader (proxy/sni.c): hellos built by hand and by OpenSSL,
 * split over every read boundary and over many records, truncated, over-long, with bad
 * lengths, duplicate or odd server_name extensions, names in every spelling; and what is
 * not TLS at all. */
#include "proxy/sni.h"

#include <stdint.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "tests/harness.h"

#define BIG 70000

/* ---- building hellos by hand ---- */

struct buf {
    unsigned char b[BIG];
    size_t n;
};

static void put(struct buf *o, const void *p, size_t n)
{
    if (o->n + n <= sizeof o->b) {
        memcpy(o->b + o->n, p, n);
        o->n += n;
    }
}

static void put8(struct buf *o, unsigned v)
{
    unsigned char c = (unsigned char)v;
    put(o, &c, 1);
}

static void put16(struct buf *o, unsigned v)
{
    put8(o, v >> 8);
    put8(o, v);
}

/* ext -- one extension: type, then len bytes of body */
static void ext(struct buf *o, unsigned type, const void *body, size_t len)
{
    put16(o, type);
    put16(o, (unsigned)len);
    put(o, body, len);
}

/* sni_body -- a server_name extension's body naming `name` (n bytes) with name_type t */
static void sni_body(struct buf *o, unsigned t, const char *name, size_t n)
{
    put16(o, (unsigned)(n + 3));
    put8(o, t);
    put16(o, (unsigned)n);
    put(o, name, n);
}

/* msg -- a ClientHello handshake message (its 4-byte header included) whose extensions
 * block is exts (none at all when exts is NULL) */
static void msg(struct buf *o, const struct buf *exts)
{
    struct buf body = {.n = 0};
    unsigned char rnd[32];

    memset(rnd, 0x11, sizeof rnd);
    put16(&body, 0x0303);
    put(&body, rnd, 32);
    put8(&body, 32);
    put(&body, rnd, 32); /* a session id */
    put16(&body, 4);
    put16(&body, 0x1301);
    put16(&body, 0xc02f);
    put8(&body, 1);
    put8(&body, 0);
    if (exts) {
        put16(&body, (unsigned)exts->n);
        put(&body, exts->b, exts->n);
    }
    o->n = 0;
    put8(o, 1);
    put8(o, (unsigned)(body.n >> 16));
    put16(o, (unsigned)body.n);
    put(o, body.b, body.n);
}

/* frame -- m as TLS handshake records of at most recsz bytes each, appended to o */
static void frame(struct buf *o, const struct buf *m, size_t recsz)
{
    for (size_t off = 0; off < m->n; off += recsz) {
        size_t k = m->n - off < recsz ? m->n - off : recsz;
        put8(o, 22);
        put16(o, 0x0301);
        put16(o, (unsigned)k);
        put(o, m->b + off, k);
    }
}

/* hello -- records (one per 16 KiB) of a hello whose only extensions are a server_name for
 * name (none when NULL) and a supported_versions */
static void hello(struct buf *o, const char *name)
{
    struct buf e = {.n = 0}, s = {.n = 0}, m;
    static const unsigned char sv[] = {2, 3, 4};

    if (name) {
        sni_body(&s, 0, name, strlen(name));
        ext(&e, 0, s.b, s.n);
    }
    ext(&e, 43, sv, sizeof sv);
    msg(&m, &e);
    o->n = 0;
    frame(o, &m, 16384);
}

static enum sni_kind kind(const struct buf *o, struct sni_hello *h)
{
    CHECK(sni_parse(o->b, o->n, h) == 0);
    return h->kind;
}

/* bad_with -- extensions exts make a hello that is SNI_BAD with a reason containing sub */
static int bad_with(const struct buf *exts, const char *sub)
{
    struct buf m, o = {.n = 0};
    struct sni_hello h;

    msg(&m, exts);
    frame(&o, &m, 16384);
    sni_parse(o.b, o.n, &h);
    if (h.kind != SNI_BAD || !strstr(h.why, sub) || h.has_name || h.name[0]) {
        fprintf(stderr, "  kind %d why '%s' (want '%s') name '%s'\n", h.kind, h.why, sub, h.name);
        return 0;
    }
    return 1;
}

static void test_by_hand(void)
{
    struct buf o;
    struct sni_hello h;

    hello(&o, "example.org");
    CHECK(kind(&o, &h) == SNI_HELLO);
    CHECK(h.has_name && !h.ip && !h.ech && !h.sslv2);
    CHECK_EQ_STR(h.name, "example.org");
    CHECK_EQ_INT(h.used, o.n);

    hello(&o, NULL);
    CHECK(kind(&o, &h) == SNI_HELLO);
    CHECK(!h.has_name && h.name[0] == '\0');

    /* no extensions block at all (TLS 1.2 allows it) */
    struct buf m;
    msg(&m, NULL);
    o.n = 0;
    frame(&o, &m, 16384);
    CHECK(kind(&o, &h) == SNI_HELLO);
    CHECK(!h.has_name);

    /* what follows the hello's records is not read: early data, a ChangeCipherSpec */
    hello(&o, "example.org");
    size_t hl = o.n;
    put(&o, "\x14\x03\x03\x00\x01\x01", 6);
    put(&o, "\x17\x03\x03\x00\x03xyz", 8);
    CHECK(kind(&o, &h) == SNI_HELLO);
    CHECK_EQ_INT(h.used, hl);
    CHECK_EQ_STR(h.name, "example.org");

    /* ECH: the outer name, and the flag */
    struct buf e = {.n = 0}, s = {.n = 0};
    sni_body(&s, 0, "public.example", 14);
    ext(&e, 0xfe0d, "\x00\x01\x02", 3);
    ext(&e, 0, s.b, s.n);
    msg(&m, &e);
    o.n = 0;
    frame(&o, &m, 16384);
    CHECK(kind(&o, &h) == SNI_HELLO);
    CHECK(h.ech && h.has_name);
    CHECK_EQ_STR(h.name, "public.example");
}

static void test_names(void)
{
    struct buf o;
    struct sni_hello h;
    char n[300];

    hello(&o, "API.OpenAI.COM");
    CHECK(kind(&o, &h) == SNI_HELLO);
    CHECK_EQ_STR(h.name, "api.openai.com");
    hello(&o, "api.openai.com.");
    CHECK(kind(&o, &h) == SNI_HELLO);
    CHECK_EQ_STR(h.name, "api.openai.com");
    hello(&o, "api.openai.com..");
    CHECK(kind(&o, &h) == SNI_BAD && strstr(h.why, "empty label"));
    hello(&o, ".");
    CHECK(kind(&o, &h) == SNI_BAD && strstr(h.why, "empty"));
    hello(&o, ".api.openai.com");
    CHECK(kind(&o, &h) == SNI_BAD && strstr(h.why, "empty label"));
    hello(&o, "xn--bcher-kva.example"); /* an IDN as its A-label */
    CHECK(kind(&o, &h) == SNI_HELLO);
    CHECK_EQ_STR(h.name, "xn--bcher-kva.example");
    hello(&o, "b\xc3\xbc"
              "cher.example"); /* the U-label: refused */
    CHECK(kind(&o, &h) == SNI_BAD && strstr(h.why, "non-ASCII"));
    hello(&o, "_acme.Under_score.example");
    CHECK(kind(&o, &h) == SNI_HELLO);
    CHECK_EQ_STR(h.name, "_acme.under_score.example");
    hello(&o, "a b.example");
    CHECK(kind(&o, &h) == SNI_BAD && strstr(h.why, "other than a letter"));
    hello(&o, "[::1]");
    CHECK(kind(&o, &h) == SNI_BAD);
    hello(&o, "api.openai.com:443");
    CHECK(kind(&o, &h) == SNI_BAD);

    /* a NUL inside the name (api.openai.com\0.evil) */
    struct buf e = {.n = 0}, s = {.n = 0}, m;
    sni_body(&s, 0, "api.openai.com\0.evil", 20);
    ext(&e, 0, s.b, s.n);
    msg(&m, &e);
    o.n = 0;
    frame(&o, &m, 16384);
    CHECK(kind(&o, &h) == SNI_BAD && !h.has_name && h.name[0] == '\0');

    /* IPv4 literals: flagged; a short form is refused */
    hello(&o, "127.0.0.1");
    CHECK(kind(&o, &h) == SNI_HELLO);
    CHECK(h.has_name && h.ip);
    CHECK_EQ_STR(h.name, "127.0.0.1");
    hello(&o, "127.1");
    CHECK(kind(&o, &h) == SNI_BAD && strstr(h.why, "dotted quad"));
    hello(&o, "1e100.net");
    CHECK(kind(&o, &h) == SNI_HELLO && !h.ip);

    /* lengths: 253 is the most, labels of 63 */
    memset(n, 'a', 253);
    n[63] = n[127] = n[191] = '.';
    n[253] = '\0';
    hello(&o, n);
    CHECK(kind(&o, &h) == SNI_HELLO);
    CHECK_EQ_INT(strlen(h.name), 253);
    n[253] = '.'; /* ... and its trailing dot */
    n[254] = '\0';
    hello(&o, n);
    CHECK(kind(&o, &h) == SNI_HELLO);
    n[253] = 'a';
    hello(&o, n);
    CHECK(kind(&o, &h) == SNI_BAD && strstr(h.why, "253"));
    memset(n, 'a', 64);
    memcpy(n + 64, ".com", 5);
    hello(&o, n);
    CHECK(kind(&o, &h) == SNI_BAD && strstr(h.why, "63"));
}

static void test_bad_extensions(void)
{
    struct buf e, s, s2;

    /* two server_name extensions */
    e.n = s.n = 0;
    sni_body(&s, 0, "example.org", 11);
    ext(&e, 0, s.b, s.n);
    ext(&e, 0, s.b, s.n);
    CHECK(bad_with(&e, "two server_name"));
    /* two of another type */
    e.n = 0;
    ext(&e, 43, "\x02\x03\x04", 3);
    ext(&e, 0, s.b, s.n);
    ext(&e, 43, "\x02\x03\x04", 3);
    CHECK(bad_with(&e, "twice"));
    /* two names in one list, whatever the second's type */
    e.n = s2.n = 0;
    put16(&s2, 2 * (3 + 11));
    put8(&s2, 0);
    put16(&s2, 11);
    put(&s2, "example.org", 11);
    put8(&s2, 0);
    put16(&s2, 11);
    put(&s2, "api.xyz.com", 11);
    ext(&e, 0, s2.b, s2.n);
    CHECK(bad_with(&e, "more than one name"));
    /* a name type other than host_name */
    e.n = s.n = 0;
    sni_body(&s, 1, "example.org", 11);
    ext(&e, 0, s.b, s.n);
    CHECK(bad_with(&e, "other than host_name"));
    /* an empty extension, an empty list, an empty name */
    e.n = 0;
    ext(&e, 0, "", 0);
    CHECK(bad_with(&e, "length"));
    e.n = 0;
    ext(&e, 0, "\x00\x00", 2);
    CHECK(bad_with(&e, "empty"));
    e.n = s.n = 0;
    sni_body(&s, 0, "", 0);
    ext(&e, 0, s.b, s.n);
    CHECK(bad_with(&e, "empty"));
    /* the list's length disagrees with the extension's, either way */
    e.n = s.n = 0;
    sni_body(&s, 0, "example.org", 11);
    s.b[1]++;
    ext(&e, 0, s.b, s.n);
    CHECK(bad_with(&e, "does not match"));
    e.n = s.n = 0;
    sni_body(&s, 0, "example.org", 11);
    s.b[4]++; /* the name's length overruns the list */
    ext(&e, 0, s.b, s.n);
    CHECK(bad_with(&e, "overruns"));
    /* an extension whose length overruns the hello, or leaves a stray byte */
    e.n = 0;
    ext(&e, 0, s.b, s.n);
    e.b[3] += 5;
    CHECK(bad_with(&e, "overruns"));
    e.n = 0;
    ext(&e, 43, "\x02\x03\x04", 3);
    put8(&e, 0);
    CHECK(bad_with(&e, "cut off"));
}

static void test_bad_framing(void)
{
    struct buf o, m, e = {.n = 0};
    struct sni_hello h;

    hello(&o, "example.org");
    o.b[0] = 23; /* application data first */
    CHECK(kind(&o, &h) == SNI_BAD && h.at == 0);
    hello(&o, "example.org");
    o.b[0] = 21; /* an alert first */
    CHECK(kind(&o, &h) == SNI_BAD);
    hello(&o, "example.org");
    o.b[2] = 9; /* record version 3.9 */
    CHECK(kind(&o, &h) == SNI_BAD && strstr(h.why, "version"));
    hello(&o, "example.org");
    o.b[5] = 2; /* a ServerHello */
    CHECK(kind(&o, &h) == SNI_BAD && strstr(h.why, "not a ClientHello"));
    hello(&o, "example.org");
    o.b[9] = 2; /* body version 2.x */
    CHECK(kind(&o, &h) == SNI_BAD && strstr(h.why, "version"));

    /* an empty record */
    o.n = 0;
    put(&o, "\x16\x03\x01\x00\x00", 5);
    CHECK(kind(&o, &h) == SNI_BAD && strstr(h.why, "empty"));
    /* a record longer than 16 KiB */
    o.n = 0;
    put(&o, "\x16\x03\x01\x40\x01", 5);
    CHECK(kind(&o, &h) == SNI_BAD && strstr(h.why, "16 KiB"));
    /* a hello that says it is longer than 16 KiB */
    o.n = 0;
    put(&o, "\x16\x03\x01\x00\x04\x01\x00\x40\x00", 9);
    CHECK(kind(&o, &h) == SNI_BAD && strstr(h.why, "16 KiB"));

    /* more in the hello's record than the hello */
    hello(&o, "example.org");
    o.b[3] = (unsigned char)((o.n - 5 + 1) >> 8);
    o.b[4] = (unsigned char)(o.n - 5 + 1);
    put8(&o, 0);
    CHECK(kind(&o, &h) == SNI_BAD && strstr(h.why, "after it"));
    /* the handshake length is shorter than the body (a field reads past it) */
    hello(&o, "example.org");
    o.b[8] -= 10;
    CHECK(kind(&o, &h) == SNI_BAD);
    /* an application-data record between two of the hello's records */
    hello(&o, "example.org");
    msg(&m, NULL);
    o.n = 0;
    frame(&o, &m, 20);
    o.b[25] = 23;
    CHECK(kind(&o, &h) == SNI_BAD && strstr(h.why, "other than handshake"));

    /* the fixed fields, one at a time */
    struct buf body = {.n = 0};
    put16(&body, 0x0303);
    for (int i = 0; i < 32; i++)
        put8(&body, 0);
    put8(&body, 33); /* a session id of 33 */
    m.n = 0;
    put8(&m, 1);
    put8(&m, 0);
    put16(&m, (unsigned)body.n + 33 + 5);
    put(&m, body.b, body.n);
    for (int i = 0; i < 38; i++)
        put8(&m, 0);
    o.n = 0;
    frame(&o, &m, 16384);
    CHECK(kind(&o, &h) == SNI_BAD && strstr(h.why, "session id"));
    /* odd cipher-suite length; no compression method */
    msg(&m, &e);
    m.b[4 + 2 + 32 + 1 + 32 + 1] = 3;
    o.n = 0;
    frame(&o, &m, 16384);
    CHECK(kind(&o, &h) == SNI_BAD && strstr(h.why, "cipher"));
    msg(&m, &e);
    m.b[4 + 2 + 32 + 1 + 32 + 2 + 4] = 0;
    o.n = 0;
    frame(&o, &m, 16384);
    CHECK(kind(&o, &h) == SNI_BAD);
}

/* a hello padded to exactly 16 KiB fits in one record; a byte more does not, and neither
 * does the same hello split into two records (their headers push it over the cap) */
static void test_over_long(void)
{
    static struct buf o, m, e, s;
    struct sni_hello h;
    size_t pad;

    e.n = s.n = 0;
    sni_body(&s, 0, "example.org", 11);
    ext(&e, 0, s.b, s.n);
    msg(&m, &e);
    pad = 16384 - m.n - 4; /* a padding extension (21) takes the rest */
    {
        static unsigned char z[16384];
        ext(&e, 21, z, pad);
    }
    msg(&m, &e);
    CHECK_EQ_INT(m.n, 16384);
    o.n = 0;
    frame(&o, &m, 16384);
    CHECK_EQ_INT(o.n, SNI_BUF_MAX);
    CHECK(kind(&o, &h) == SNI_HELLO);
    CHECK_EQ_STR(h.name, "example.org");
    o.n = 0;
    frame(&o, &m, 8192);
    CHECK(kind(&o, &h) == SNI_BAD && strstr(h.why, "16 KiB"));
    /* every prefix of the one-record form asks for more, within the cap */
    o.n = 0;
    frame(&o, &m, 16384);
    CHECK(sni_parse(o.b, o.n - 1, &h) == 0 && h.kind == SNI_MORE && h.need == o.n);
    /* input beyond the cap is not read: the same answer */
    put(&o, "\x17\x03\x03\x00\x01z", 6);
    CHECK(kind(&o, &h) == SNI_HELLO);
}

static void test_not_tls(void)
{
    static const char *const plain[] = {
        "GET / HTTP/1.1\r\n",
        "SSH-2.0-OpenSSH_9.6\r\n",
        "EHLO x\r\n",
        "\x00\x00\x00\x08\x04\xd2\x16\x2f",
        "\x16\x01\x02",         /* a handshake type byte, then not 3.x */
        "\x13\x03",             /* below the TLS content types */
        "\x19\x03",             /* above */
        "\x80\x2e\x02\x03\x01", /* SSLv2 framing, a message type other than CLIENT-HELLO */
        "\x80\x2e\x01\x02\x00", /* an SSLv2-only hello */
    };
    struct sni_hello h;

    for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++) {
        size_t n = i == 3 ? 8 : strlen(plain[i]);
        if (i >= 7)
            n = 5;
        CHECK(sni_parse((const unsigned char *)plain[i], n, &h) == 0);
        if (h.kind != SNI_NOT_TLS)
            fprintf(stderr, "  plain[%zu]: kind %d\n", i, h.kind);
        CHECK(h.kind == SNI_NOT_TLS);
    }
    /* too little to tell */
    CHECK(sni_parse(NULL, 0, &h) == 0 && h.kind == SNI_MORE && h.need == 1);
    CHECK(sni_parse((const unsigned char *)"\x16", 1, &h) == 0 && h.kind == SNI_MORE &&
          h.need == 2);
    CHECK(sni_parse((const unsigned char *)"\x80\x2e", 2, &h) == 0 && h.kind == SNI_MORE &&
          h.need == 5);
    /* an SSLv2-format hello offering TLS: a hello without a name, once all of it is here */
    unsigned char v2[48] = {0x80, 0x2e, 0x01, 0x03, 0x01, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10};
    CHECK(sni_parse(v2, 5, &h) == 0 && h.kind == SNI_MORE && h.need == 48);
    CHECK(sni_parse(v2, 47, &h) == 0 && h.kind == SNI_MORE && h.need == 48);
    CHECK(sni_parse(v2, 48, &h) == 0 && h.kind == SNI_HELLO && h.sslv2 && !h.has_name &&
          h.used == 48);
    CHECK(sni_parse((const unsigned char *)"\xff\xff\x01\x03\x01", 5, &h) == 0 &&
          h.kind == SNI_BAD && strstr(h.why, "16 KiB"));
    CHECK(sni_parse((const unsigned char *)"\x80\x05\x01\x03\x01", 5, &h) == 0 &&
          h.kind == SNI_BAD);
    CHECK(sni_parse(NULL, 5, &h) == -1);
    CHECK(sni_parse((const unsigned char *)"x", 1, NULL) == -1);
}

/* split -- o parsed from every prefix asks for more (need within (k, n]), and whole gives
 * the same answer as `want` */
static int split_ok(const struct buf *o, const struct sni_hello *want)
{
    struct sni_hello h;

    for (size_t k = 0; k < o->n; k++) {
        sni_parse(o->b, k, &h);
        if (h.kind != SNI_MORE || h.need <= k || h.need > o->n) {
            fprintf(stderr, "  prefix %zu of %zu: kind %d need %zu\n", k, o->n, h.kind, h.need);
            return 0;
        }
    }
    sni_parse(o->b, o->n, &h);
    return h.kind == want->kind && h.has_name == want->has_name &&
           strcmp(h.name, want->name) == 0 && h.used == o->n;
}

/* ---- hellos OpenSSL writes ---- */

/* ossl_hello -- the first flight of an OpenSSL client (TLS 1.2..max) naming name (none when
 * NULL); its length, 0 on failure */
static size_t ossl_hello(unsigned char *out, size_t cap, const char *name, int max_version)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = ctx ? SSL_new(ctx) : NULL;
    BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
    size_t n = 0;

    if (!ssl || !rb || !wb) {
        BIO_free(rb);
        BIO_free(wb);
        goto done;
    }
    SSL_set_max_proto_version(ssl, max_version);
    SSL_set_bio(ssl, rb, wb);
    if (name)
        SSL_set_tlsext_host_name(ssl, name);
    SSL_set_connect_state(ssl);
    (void)SSL_do_handshake(ssl);
    n = (size_t)BIO_read(wb, out, (int)cap);
    if ((int)n < 0)
        n = 0;
done:
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return n;
}

static void test_openssl(void)
{
    static const int versions[] = {TLS1_2_VERSION, TLS1_3_VERSION};
    static struct buf o, m, r;
    struct sni_hello h, want;

    for (size_t v = 0; v < 2; v++) {
        o.n = ossl_hello(o.b, sizeof o.b, "Api.OpenAI.com", versions[v]);
        REQUIRE(o.n > 50);
        CHECK(kind(&o, &h) == SNI_HELLO);
        CHECK_EQ_STR(h.name, "api.openai.com");
        CHECK_EQ_INT(h.used, o.n);
        want = h;
        /* split at every byte boundary (what TCP reads may give) */
        CHECK(split_ok(&o, &want));
        /* the same message re-framed over many records: 1, 2, 3, 7, 100 bytes each */
        m.n = 0;
        put(&m, o.b + 5, o.n - 5);
        static const size_t sizes[] = {1, 2, 3, 7, 100};
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            r.n = 0;
            frame(&r, &m, sizes[i]);
            if (r.n > SNI_BUF_MAX) { /* one byte per record: too many headers */
                CHECK(kind(&r, &h) == SNI_BAD);
                continue;
            }
            CHECK(kind(&r, &h) == SNI_HELLO);
            CHECK_EQ_STR(h.name, "api.openai.com");
            if (sizes[i] >= 3)
                CHECK(split_ok(&r, &want));
        }
        /* truncated: every shorter length field is refused or asks for more, never a name */
        for (size_t k = 0; k + 5 < o.n; k++) {
            struct buf t = o;
            t.b[3] = (unsigned char)((o.n - 5 - k - 1) >> 8);
            t.b[4] = (unsigned char)(o.n - 5 - k - 1);
            t.n = o.n - k - 1;
            sni_parse(t.b, t.n, &h);
            if (h.kind == SNI_HELLO)
                fprintf(stderr, "  cut %zu: a hello\n", k);
            CHECK(h.kind == SNI_MORE || h.kind == SNI_BAD);
        }
        /* without a name */
        o.n = ossl_hello(o.b, sizeof o.b, NULL, versions[v]);
        CHECK(kind(&o, &h) == SNI_HELLO);
        CHECK(!h.has_name);
    }
}

/* every single-byte change of an OpenSSL hello: never a crash, and a name, when one comes
 * out, is always of the allowed bytes and at most 253 long */
static void test_mutations(void)
{
    static struct buf o, t;
    struct sni_hello h;
    static const unsigned char vals[] = {0x00, 0x01, 0x02, 0x03, 0x16,
                                         0x2e, 0x7f, 0x80, 0xfe, 0xff};
    size_t names = 0;

    o.n = ossl_hello(o.b, sizeof o.b, "example.org", TLS1_3_VERSION);
    REQUIRE(o.n > 50);
    for (size_t i = 0; i < o.n; i++)
        for (size_t v = 0; v < sizeof vals; v++) {
            memcpy(t.b, o.b, o.n);
            t.n = o.n;
            t.b[i] = vals[v];
            sni_parse(t.b, t.n, &h);
            if (h.kind == SNI_HELLO && h.has_name) {
                names++;
                size_t l = strlen(h.name);
                CHECK(l >= 1 && l <= 253 &&
                      strspn(h.name, "abcdefghijklmnopqrstuvwxyz0123456789-_.") == l);
            }
            if (h.kind != SNI_HELLO)
                CHECK(!h.has_name && h.name[0] == '\0');
        }
    CHECK(names > 0);
}

/* ---- TLS 1.3 and the HelloRetryRequest ---- */

/* hrr_hello -- a TLS 1.3 hello naming name whose key_share holds no share (so a server
 * answers it with a HelloRetryRequest for x25519), in one record */
static void hrr_hello(struct buf *o, const char *name)
{
    static const unsigned char groups[] = {0, 2, 0, 0x1d}, sigs[] = {0, 4, 4, 3, 8, 4},
                               sv[] = {2, 3, 4}, ks[] = {0, 0};
    struct buf e = {.n = 0}, s = {.n = 0}, m;

    sni_body(&s, 0, name, strlen(name));
    ext(&e, 0, s.b, s.n);
    ext(&e, 10, groups, sizeof groups);
    ext(&e, 13, sigs, sizeof sigs);
    ext(&e, 43, sv, sizeof sv);
    ext(&e, 51, ks, sizeof ks);
    msg(&m, &e);
    o->n = 0;
    frame(o, &m, 16384);
}

/* server_first -- what an OpenSSL server (a fresh P-256 self-signed certificate) sends first
 * in answer to the client bytes c[0..cn): its length in out, 0 on failure */
static size_t server_first(const unsigned char *c, size_t cn, unsigned char *out, size_t cap)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    SSL *ssl = NULL;
    BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
    int n = 0;

    if (!k || !x || !ctx || !rb || !wb || !X509_set_version(x, 2) ||
        !X509_gmtime_adj(X509_getm_notBefore(x), 0) ||
        !X509_gmtime_adj(X509_getm_notAfter(x), 3600) || !X509_set_pubkey(x, k) ||
        !X509_sign(x, k, EVP_sha256()) || SSL_CTX_use_certificate(ctx, x) != 1 ||
        SSL_CTX_use_PrivateKey(ctx, k) != 1 || !(ssl = SSL_new(ctx))) {
        BIO_free(rb);
        BIO_free(wb);
        goto done;
    }
    SSL_set_bio(ssl, rb, wb);
    SSL_set_accept_state(ssl);
    BIO_write(rb, c, (int)cn);
    (void)SSL_do_handshake(ssl);
    n = BIO_read(wb, out, (int)cap);
done:
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    X509_free(x);
    EVP_PKEY_free(k);
    ERR_clear_error();
    return n > 0 ? (size_t)n : 0;
}

/* tls13: set by a supported_versions list offering more than TLS 1.2 (OpenSSL's own
 * hellos too); sni_server_hrr tells OpenSSL's HelloRetryRequest from its ServerHello, at
 * every length it may be read in, and nothing else is one */
static void test_hrr(void)
{
    static struct buf o, e;
    static unsigned char srv[16384];
    struct sni_hello h;
    size_t n;

    o.n = ossl_hello(o.b, sizeof o.b, "example.org", TLS1_2_VERSION);
    CHECK(kind(&o, &h) == SNI_HELLO && !h.tls13);
    o.n = ossl_hello(o.b, sizeof o.b, "example.org", TLS1_3_VERSION);
    CHECK(kind(&o, &h) == SNI_HELLO && h.tls13);
    {
        static const unsigned char only12[] = {4, 3, 3, 3, 2}, grease[] = {4, 0x3a, 0x3a, 3, 3},
                                   odd[] = {3, 3, 4, 3}, empty[] = {0};
        e.n = 0;
        ext(&e, 43, only12, sizeof only12);
        msg(&o, &e);
        e = o;
        o.n = 0;
        frame(&o, &e, 16384);
        CHECK(kind(&o, &h) == SNI_HELLO && !h.tls13);
        e.n = 0;
        ext(&e, 43, grease, sizeof grease);
        msg(&o, &e);
        e = o;
        o.n = 0;
        frame(&o, &e, 16384);
        CHECK(kind(&o, &h) == SNI_HELLO && h.tls13);
        e.n = 0;
        ext(&e, 43, odd, sizeof odd);
        CHECK(bad_with(&e, "supported_versions"));
        e.n = 0;
        ext(&e, 43, empty, sizeof empty);
        CHECK(bad_with(&e, "supported_versions"));
    }

    /* OpenSSL answers a hello without a key share with a HelloRetryRequest */
    hrr_hello(&o, "harmless.example");
    CHECK(kind(&o, &h) == SNI_HELLO && h.tls13);
    n = server_first(o.b, o.n, srv, sizeof srv);
    REQUIRE(n >= SNI_SRV_HRR_LEN);
    CHECK_EQ_INT(sni_server_hrr(srv, n), SNI_SRV_HRR);
    for (size_t k = 0; k < SNI_SRV_HRR_LEN; k++)
        CHECK_EQ_INT(sni_server_hrr(srv, k), SNI_SRV_MORE);
    /* ... and an OpenSSL client's own hello with a ServerHello */
    o.n = ossl_hello(o.b, sizeof o.b, "example.org", TLS1_3_VERSION);
    n = server_first(o.b, o.n, srv, sizeof srv);
    REQUIRE(n >= SNI_SRV_HRR_LEN);
    CHECK_EQ_INT(sni_server_hrr(srv, n), SNI_SRV_OTHER);
    CHECK_EQ_INT(sni_server_hrr(srv, SNI_SRV_HRR_LEN), SNI_SRV_OTHER);
    o.n = ossl_hello(o.b, sizeof o.b, "example.org", TLS1_2_VERSION);
    n = server_first(o.b, o.n, srv, sizeof srv);
    REQUIRE(n >= SNI_SRV_HRR_LEN);
    CHECK_EQ_INT(sni_server_hrr(srv, n), SNI_SRV_OTHER);
    /* an alert, plain text, a ServerHello record too short to hold its random */
    CHECK_EQ_INT(sni_server_hrr((const unsigned char *)"\x15\x03\x03\x00\x02\x02\x28", 7),
                 SNI_SRV_OTHER);
    CHECK_EQ_INT(sni_server_hrr((const unsigned char *)"SSH-2.0-OpenSSH", 15), SNI_SRV_OTHER);
    CHECK_EQ_INT(sni_server_hrr((const unsigned char *)"\x16\x03\x03\x00\x20\x02", 6),
                 SNI_SRV_OTHER);
}

/* ---- plain HTTP ---- */

static enum sni_kind http_kind(const char *t, struct sni_http *r)
{
    CHECK(sni_http_parse((const unsigned char *)t, strlen(t), r) == 0);
    return r->kind;
}

/* the Host and the target's host of requests spelled as lenient servers still read them;
 * other protocols are not HTTP; heads this reader does not accept are refused; every
 * prefix of a head asks for more */
static void test_http(void)
{
    static const struct {
        const char *req, *name;
        int port, target;
    } ok[] = {
        {"GET / HTTP/1.1\r\nHost: API.OpenAI.com.\r\n\r\n", "api.openai.com", 0, 0},
        {"GET / HTTP/1.1\nhost:api.openai.com:8080\n\n", "api.openai.com", 0, 0},
        {"\r\n\r\nPOST  \t/v1/chat   HTTP/1.1 \r\nX: y\r\nHOST : api.openai.com \r\n\r\nbody",
         "api.openai.com", 0, 0},
        {"GET / HTTP/9.99\r\nHost: a.example\r\n\r\n", "a.example", 0, 0},
        {"CONNECT api.openai.com:443 HTTP/1.1\r\n\r\n", "api.openai.com", 443, 1},
        {"GET http://u:p@api.openai.com/v1 HTTP/1.1\r\n\r\n", "api.openai.com", 80, 1},
        {"GET HTTPS://api.openai.com:8443?x HTTP/1.0\r\n\r\n", "api.openai.com", 8443, 1},
    };
    static const char *const not_http[] = {"EHLO x\r\n",
                                           "SSH-2.0-OpenSSH_9.6\r\n",
                                           "GET /\r\n",
                                           "GET / HTTPS/1.1\r\n",
                                           "GET / HTTP/1.x\r\n",
                                           "\x01GET",
                                           "PING\r\n"};
    static const char *const bad[] = {
        "GET / HTTP/1.1\r\nHost: a.example\r\nHost: api.openai.com\r\n\r\n",
        "GET / HTTP/1.1\r\nX: a\r\n Host: api.openai.com\r\n\r\n",
        "GET / HTTP/1.1\r\nHost api.openai.com\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: api.openai.com\x01x\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: api.openai.com:99999\r\n\r\n",
        "CONNECT api.openai.com HTTP/1.1\r\n\r\n",
        "GET http:///x HTTP/1.1\r\n\r\n"};
    struct sni_http r;
    static unsigned char big[SNI_BUF_MAX + 10];

    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        CHECK(http_kind(ok[i].req, &r) == SNI_HELLO);
        CHECK_EQ_INT(r.n, 1);
        CHECK_EQ_STR(r.names[0].name, ok[i].name);
        CHECK_EQ_INT(r.names[0].port, ok[i].port);
        CHECK_EQ_INT(r.names[0].target, ok[i].target);
        /* every prefix that ends before the empty line asks for more */
        const char *end = strstr(ok[i].req, "\r\n\r\n");
        size_t whole = end ? (size_t)(end - ok[i].req) + 4
                           : (size_t)(strstr(ok[i].req, "\n\n") - ok[i].req) + 2;
        for (size_t k = 0; k + 1 < whole; k++) {
            sni_http_parse((const unsigned char *)ok[i].req, k, &r);
            if (r.kind != SNI_MORE)
                fprintf(stderr, "  %zu: prefix %zu kind %d\n", i, k, r.kind);
            CHECK(r.kind == SNI_MORE);
        }
    }
    CHECK(http_kind("GET http://a.example/ HTTP/1.1\r\nHost: api.openai.com\r\n\r\n", &r) ==
          SNI_HELLO);
    CHECK(r.n == 2 && strcmp(r.names[0].name, "a.example") == 0 &&
          strcmp(r.names[1].name, "api.openai.com") == 0);
    CHECK(http_kind("GET / HTTP/1.0\r\n\r\n", &r) == SNI_HELLO && r.n == 0);
    CHECK(http_kind("GET / HTTP/1.1\r\nHost: 10.0.0.5:80\r\n\r\n", &r) == SNI_HELLO && r.n == 1 &&
          r.names[0].ip);
    CHECK(http_kind("GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", &r) == SNI_HELLO && r.n == 1 &&
          r.names[0].ip);
    CHECK(http_kind("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", &r) == SNI_HELLO && r.n == 0);
    for (size_t i = 0; i < sizeof not_http / sizeof not_http[0]; i++)
        CHECK(http_kind(not_http[i], &r) == SNI_NOT_TLS);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (http_kind(bad[i], &r) != SNI_BAD)
            fprintf(stderr, "  bad %zu: kind %d\n", i, r.kind);
        CHECK(r.kind == SNI_BAD);
    }
    {
        static const char nul[] = "GET / HTTP/1.1\r\nHost: api.openai.com\0x\r\n\r\n";
        CHECK(sni_http_parse((const unsigned char *)nul, sizeof nul - 1, &r) == 0 &&
              r.kind == SNI_BAD);
    }
    /* request lines the far server reads as HTTP though this reader once did not, so
     * their Host went through unread: a method of other token characters (nginx takes
     * '-' and '_', llhttp M-SEARCH, Go any token, of any length, lower case too), a
     * target with bytes above 0x7f (nginx, llhttp) */
    {
        static const char *const odd[] = {
            "M-SEARCH * HTTP/1.1\r\nHost: api.openai.com\r\n\r\n",
            "X_Y / HTTP/1.1\r\nHost: api.openai.com\r\n\r\n",
            "get / HTTP/1.1\r\nHost: api.openai.com\r\n\r\n",
            "ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEFGH / HTTP/1.1\r\nHost: api.openai.com\r\n\r\n",
            "GET /\xc3\xa9 HTTP/1.1\r\nHost: api.openai.com\r\n\r\n",
        };
        for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
            if (http_kind(odd[i], &r) != SNI_HELLO)
                fprintf(stderr, "  odd %zu: kind %d\n", i, r.kind);
            CHECK(r.kind == SNI_HELLO && r.n == 1 &&
                  strcmp(r.names[0].name, "api.openai.com") == 0);
        }
    }
    /* 16 KiB of empty lines (servers skip any number of them) and then a request: not
     * "another protocol", whose bytes would go on unread */
    memset(big, '\n', sizeof big);
    CHECK(sni_http_parse(big, sizeof big, &r) == 0 && r.kind == SNI_BAD);
    CHECK(sni_http_parse(big, 100, &r) == 0 && r.kind == SNI_MORE);
    /* a head that is not whole within 16 KiB */
    memset(big, 'a', sizeof big);
    memcpy(big, "GET /", 5);
    CHECK(sni_http_parse(big, sizeof big, &r) == 0 && r.kind == SNI_BAD);
    memcpy(big, "GET / HTTP/1.1\r\nX: ", 20);
    CHECK(sni_http_parse(big, sizeof big, &r) == 0 && r.kind == SNI_BAD);
    CHECK(sni_http_parse(big, 100, &r) == 0 && r.kind == SNI_MORE);
}

/* same_answer -- sni_http_next's answer is sni_http_parse's for the same bytes */
static int same_answer(const struct sni_http *a, const struct sni_http *b)
{
    if (a->kind != b->kind || a->n != b->n)
        return 0;
    if (a->kind == SNI_MORE && a->need != b->need)
        return 0;
    if (a->kind == SNI_BAD && (a->at != b->at || strcmp(a->why, b->why) != 0))
        return 0;
    for (int i = 0; i < a->n; i++)
        if (strcmp(a->names[i].name, b->names[i].name) != 0 ||
            a->names[i].port != b->names[i].port || a->names[i].ip != b->names[i].ip ||
            a->names[i].target != b->names[i].target)
            return 0;
    return 1;
}

/* sni_http_next, fed a head in pieces (1 byte, then 1..7), says at every length what
 * sni_http_parse says of the whole prefix (the tunnel reads on from where it stopped: a head
 * trickled a byte at a time cost its length at every byte, quadratic, before) */
static void test_http_next(void)
{
    static const char *const heads[] = {
        "GET / HTTP/1.1\r\nHost: API.OpenAI.com.\r\n\r\n",
        "\r\n\n\r\nPOST  \t/v1/chat   HTTP/1.1 \r\nX: y\r\nHOST : api.openai.com \r\n\r\nbody",
        "CONNECT api.openai.com:443 HTTP/1.1\r\nHost: api.openai.com:443\r\n\r\n",
        "GET http://u:p@a.example:8080/v1 HTTP/1.1\nhost: api.openai.com\n\n",
        "M-SEARCH * HTTP/1.1\r\nX:\r\nHost: a.example\r\nHost: b.example\r\n\r\n",
        "GET / HTTP/1.1\r\nX: a\r\n folded\r\n\r\n",
        "GET / HTTP/1.1\r\nno colon\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
        "GET / HTTP/1.10\r\n\r\n",
        "GET /\x01 HTTP/1.1\r\n\r\n",
        "CONNECT a.example HTTP/1.1\r\n\r\n",
        "SSH-2.0-OpenSSH_9.6\r\n",
        "GET / HTTP/1.1\r\r\n",
    };
    static unsigned char big[SNI_BUF_MAX + 64];
    struct sni_http whole, step;
    size_t n;

    for (size_t v = 0; v < sizeof heads / sizeof heads[0] + 3; v++) {
        const unsigned char *p = big;
        if (v < sizeof heads / sizeof heads[0]) {
            n = strlen(heads[v]);
            p = (const unsigned char *)heads[v];
        } else if (v == sizeof heads / sizeof heads[0]) { /* 4-byte lines past 16 KiB */
            n = (size_t)sprintf((char *)big, "GET / HTTP/1.1\r\n");
            while (n + 4 <= sizeof big) {
                memcpy(big + n, "a:b\n", 4);
                n += 4;
            }
        } else if (v == sizeof heads / sizeof heads[0] + 1) { /* a long target, a Host */
            n = (size_t)sprintf((char *)big, "GET /");
            memset(big + n, 'x', 9000);
            n += 9000;
            n += (size_t)sprintf((char *)big + n, " HTTP/1.1\r\nHost: api.openai.com\r\n\r\n");
        } else { /* empty lines past 16 KiB */
            memset(big, '\n', sizeof big);
            n = sizeof big;
        }
        for (int chunked = 0; chunked < 2; chunked++) {
            int fails = 0;
            memset(&step, 0, sizeof step);
            for (size_t k = 0, d = 1; k <= n; k += d, d = chunked ? 1 + k % 7 : 1) {
                CHECK(sni_http_parse(p, k, &whole) == 0);
                CHECK(sni_http_next(p, k, &step) == 0);
                if (!same_answer(&whole, &step) && fails++ < 3)
                    fprintf(stderr, "  head %zu, length %zu: kind %d/%d n %d/%d\n", v, k,
                            whole.kind, step.kind, whole.n, step.n);
            }
            CHECK_EQ_INT(fails, 0);
        }
    }
    /* a shorter input than the state read: read from the start */
    CHECK(sni_http_next((const unsigned char *)heads[0], strlen(heads[0]) - 3, &step) == 0);
    CHECK(sni_http_next((const unsigned char *)heads[0], 5, &step) == 0 && step.kind == SNI_MORE &&
          step.need == 6);
}

int main(void)
{
    RUN(test_by_hand);
    RUN(test_names);
    RUN(test_bad_extensions);
    RUN(test_bad_framing);
    RUN(test_over_long);
    RUN(test_not_tls);
    RUN(test_openssl);
    RUN(test_mutations);
    RUN(test_hrr);
    RUN(test_http);
    RUN(test_http_next);
    return harness_done();
}
