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
    int tls13;    /* supported_versions offers a version above TLS 1.2: the server may
                     answer with a HelloRetryRequest, and the client then sends a second
                     ClientHello, which must be read too (sni_server_hrr) */
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

/* ---- a plain HTTP/1.x request as a tunnel's first bytes ---- */

/* The names a plain HTTP request head gives the far end: its Host header (checked at the
 * tunnel's port; a CONNECT's at its target's), and for an absolute-form or CONNECT request
 * (to a proxy at the far end) the target's host at the target's port. */
struct sni_http_name {
    char name[SNI_NAME_MAX + 1]; /* lower-case, without a trailing dot; "" for an IP literal */
    int port;                    /* where it is checked (0: at the tunnel's port) */
    int ip;                      /* an IP literal: no name to check */
    int target;                  /* from the request target, not the Host header */
};

struct sni_http {
    enum sni_kind kind; /* SNI_MORE (need), SNI_NOT_TLS: not an HTTP/1.x request line (another
                           protocol), SNI_HELLO: a whole head (n names), SNI_BAD: an HTTP/1.x
                           request line whose head this reader does not accept (why, at) */
    size_t need;
    int n;
    struct sni_http_name names[2];
    char why[120];
    size_t at;
    /* where sni_http_next goes on after SNI_MORE: the request line's reading (rl_*: its
     * next byte, part, and where its parts start), then the header line not yet ended
     * (at_line), how far it was searched for its end, and what was read before it */
    size_t lead, rl_i, rl_t, rl_tn, rl_d, rl_end, at_line, scanned;
    int rl_phase, rl_k, kept_n, host_seen, connect;
};

/* sni_http_parse -- p[0..len) as the start of an HTTP/1.x request: a request line of a
 * method of token characters (RFC 9110 tchar, any case and length), a target of bytes
 * above 0x20 but DEL and HTTP/d.d (anything else is SNI_NOT_TLS as soon as a byte says
 * so), after any number of empty lines, then header lines to the empty one. The head must
 * be whole within SNI_BUF_MAX bytes (empty lines included); a folded line (leading space
 * or tab), a line without a colon, two Host headers, or a host that is not a name of
 * [A-Za-z0-9-_.] labels or an IP literal is SNI_BAD. Returns 0; -1 for r == NULL, or
 * p == NULL with len > 0. */
int sni_http_parse(const unsigned char *p, size_t len, struct sni_http *r);
/* sni_http_next -- the same answer as sni_http_parse for p[0..len), where *r is its answer
 * for a shorter prefix of the same bytes (or zeroed: the start): after an SNI_MORE it reads
 * on from where that one stopped, so a head that arrives a byte at a time costs its length
 * once, not its length at every byte (quadratic: 16 KiB of 4-byte header lines took 210 ms
 * of the event loop's time). Any other *r is read from the start. */
int sni_http_next(const unsigned char *p, size_t len, struct sni_http *r);

enum sni_server {
    SNI_SRV_MORE,  /* not enough of the server's first bytes yet */
    SNI_SRV_HRR,   /* a TLS 1.3 HelloRetryRequest: the client's next handshake is a second
                      ClientHello, whose server name the server takes as the one it serves */
    SNI_SRV_OTHER, /* anything else: a ServerHello, an alert, not TLS */
};

/* SNI_SRV_HRR_LEN -- the server's first bytes that say whether it sent a HelloRetryRequest:
 * a record header, a handshake header, legacy_version and the 32-byte random */
#define SNI_SRV_HRR_LEN (5 + 4 + 2 + 32)

/* sni_server_hrr -- the far server's first bytes p[0..len) after a ClientHello: is it a
 * HelloRetryRequest (RFC 8446 4.1.3: a ServerHello whose random is SHA-256 of
 * "HelloRetryRequest")? A ServerHello whose first record is too short to hold its random
 * is SNI_SRV_OTHER (servers send it whole). Pure. */
enum sni_server sni_server_hrr(const unsigned char *p, size_t len);

#endif
