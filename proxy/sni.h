/* sni.h -- the TLS ClientHello's server name, read from a tunnel client's first bytes
 * (docs/egress.md "What a tunnel checks"; security.md F7).
 *
 * A tunnel is blind, but its first client bytes are not yet encrypted: when they are a
 * TLS ClientHello, the server_name extension says which host the client means to reach,
 * whatever address or name the CONNECT gave. sni_parse reads exactly that and nothing
 * more; the decision on what it found is egress_check_hello (egress.h).
 *
 * The parser is strict on purpose. Bytes that look like a TLS record (a first byte of a
 * TLS content type, 20..24, then 0x03) must be one whole, well-formed ClientHello in
 * handshake records, or the answer is SNI_BAD: a lenient parser that calls a hello "not
 * TLS" while the far server accepts it would let the name through unchecked.
 *
 * Pure: no I/O, no allocation, no global state; safe on any thread. */
#ifndef AIRLOCK_PROXY_SNI_H
#define AIRLOCK_PROXY_SNI_H

#include <stddef.h>

/* the most the parser reads: one full TLS record (16 KiB) and its header. A ClientHello
 * that needs more (a bigger hello, or one split over so many records that their headers
 * push it past this) is SNI_BAD. */
#define SNI_BUF_MAX (16384 + 5)
#define SNI_NAME_MAX 253

enum sni_kind {
    SNI_MORE,    /* a ClientHello so far: ask again once `need` bytes are there */
    SNI_NOT_TLS, /* the first bytes are not a TLS record: another protocol */
    SNI_HELLO,   /* a whole ClientHello: has_name, name, ip, ech, sslv2 say what it named */
    SNI_BAD,     /* TLS-shaped but not a ClientHello this parser accepts: why, at */
};

struct sni_hello {
    enum sni_kind kind;
    size_t need;  /* SNI_MORE: the length of input at which a parse can go further */
    size_t used;  /* SNI_HELLO: the bytes the hello's records took (what follows is not
                     read: early data, a ChangeCipherSpec) */
    int has_name; /* the server_name extension held a host_name */
    int ip;       /* ... and that host_name is an IPv4 literal (RFC 6066 forbids it; the
                     server then picks its default host, as with no name) */
    int ech;      /* the encrypted_client_hello extension is present: name is the outer
                     (public) name; the inner one is encrypted */
    int sslv2;    /* an SSLv2-format ClientHello (no extensions, so no name) */
    char name[SNI_NAME_MAX + 1]; /* lower-case, without a trailing dot; "" when none */
    char why[120];               /* SNI_BAD: one line */
    size_t at; /* SNI_BAD: the offending byte: in the input (records), in the handshake
                  message, its 4-byte header included (the hello's fields) */
};

/* sni_parse -- read p[0..len) as a tunnel client's first bytes into *h (always filled).
 * Accepts: TLS records of type 22 (legacy version 3.x, 1..16384 bytes each) carrying one
 * handshake message of type 1 (ClientHello) and nothing else, whose body is exactly
 * legacy_version, random, session_id (<= 32), cipher_suites (even, >= 2),
 * compression_methods (>= 1) and, when present, extensions that fill the rest with no
 * type twice; a server_name extension must hold exactly one entry, of type host_name,
 * 1..253 bytes of [A-Za-z0-9-_.] in non-empty labels of <= 63 (one trailing dot allowed
 * and dropped, upper case folded). An SSLv2-format ClientHello is SNI_HELLO without a
 * name once its whole record is there. len beyond SNI_BUF_MAX is not read. Returns 0;
 * -1 only for h == NULL, or p == NULL with len > 0. */
int sni_parse(const unsigned char *p, size_t len, struct sni_hello *h);

#endif
