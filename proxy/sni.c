/* sni.c -- a strict, bounded reader of a TLS ClientHello's server name (sni.h).
 *
 * Formats: RFC 8446 4.1.2 (ClientHello) and 5.1 (records), RFC 6066 3 (server_name),
 * draft-ietf-tls-esni (encrypted_client_hello, 0xfe0d). Everything is read from bytes a
 * client chose: every length is checked against what is there before it is used, and the
 * hello is copied into a fixed buffer (never more than SNI_BUF_MAX bytes are looked at). */
#include "proxy/sni.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define REC_HDR 5
#define REC_MAX 16384 /* a TLSPlaintext fragment's limit */
#define HS_HDR 4
#define HS_CLIENT_HELLO 1
#define CT_HANDSHAKE 22
#define EXT_SERVER_NAME 0x0000
#define EXT_ECH 0xfe0d
#define EXT_SUPPORTED_VERSIONS 43
#define HS_SERVER_HELLO 2
#define NAME_HOST 0

static void bad(struct sni_hello *h, size_t at, const char *why)
{
    h->kind = SNI_BAD;
    h->at = at;
    snprintf(h->why, sizeof h->why, "%s", why);
}

static void more(struct sni_hello *h, size_t need)
{
    h->kind = SNI_MORE;
    h->need = need;
}

static unsigned u16(const unsigned char *p)
{
    return (unsigned)p[0] << 8 | p[1];
}

/* host_name -- s[0..n) as an RFC 6066 HostName into h->name: lower-cased, one trailing dot
 * dropped, labels of [a-z0-9-_] 1..63 bytes, 1..253 in all; an all-digit last label must
 * make a dotted quad (h->ip). -1 with h->why set otherwise. */
static int host_name(struct sni_hello *h, const unsigned char *s, size_t n, size_t at)
{
    size_t lab = 0, last = 0;
    int digits = 1;

    if (n > 0 && s[n - 1] == '.')
        n--;
    if (n == 0 || n > SNI_NAME_MAX) {
        bad(h, at,
            n == 0 ? "the server name is empty" : "the server name is longer than 253 bytes");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (c == '.') {
            if (lab == 0) {
                bad(h, at + i, "the server name has an empty label");
                return -1;
            }
            lab = 0;
            last = i + 1;
            digits = 1;
            h->name[i] = '.';
            continue;
        }
        if (c >= 'A' && c <= 'Z')
            c = (unsigned char)(c - 'A' + 'a');
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_')) {
            bad(h, at + i,
                c >= 0x80 ? "the server name holds a non-ASCII byte (IDNs are sent as xn-- "
                            "A-labels)"
                          : "the server name holds a byte other than a letter, digit, '-', "
                            "'_' or '.'");
            return -1;
        }
        if (++lab > 63) {
            bad(h, at + i, "the server name has a label longer than 63 bytes");
            return -1;
        }
        if (c < '0' || c > '9')
            digits = 0;
        h->name[i] = (char)c;
    }
    if (lab == 0) {
        bad(h, at + n, "the server name has an empty label");
        return -1;
    }
    h->name[n] = '\0';
    if (digits) { /* the resolver would read it as an IPv4 literal: it must be one */
        struct in_addr a4;
        if (inet_pton(AF_INET, h->name, &a4) != 1) {
            bad(h, at + last, "the server name ends in an all-digit label but is no dotted quad");
            h->name[0] = '\0';
            return -1;
        }
        h->ip = 1;
    }
    h->has_name = 1;
    return 0;
}

/* server_name -- the extension's body e[0..n): a ServerNameList of exactly one host_name.
 * OpenSSL and BoringSSL accept no more (RFC 6066 left other types unparseable), so a list
 * this reader would have to skip over is refused rather than guessed at. */
static int server_name(struct sni_hello *h, const unsigned char *e, size_t n, size_t at)
{
    size_t list, nlen;

    if (n < 2 || (list = u16(e)) != n - 2) {
        bad(h, at, "the server_name list's length does not match its extension");
        return -1;
    }
    if (list < 3) {
        bad(h, at, "the server_name list is empty");
        return -1;
    }
    if (e[2] != NAME_HOST) {
        bad(h, at + 2, "a server_name entry of a type other than host_name");
        return -1;
    }
    nlen = u16(e + 3);
    if (3 + nlen > list) {
        bad(h, at + 3, "the host_name's length overruns its list");
        return -1;
    }
    if (3 + nlen < list) {
        bad(h, at + 5 + nlen, "the server_name list holds more than one name");
        return -1;
    }
    return host_name(h, e + 5, nlen, at + 5);
}

/* supported_versions -- the extension's body e[0..n): a list of 2-byte versions. Any above
 * TLS 1.2 (3.4, a draft, GREASE) may lead the server into TLS 1.3 and so a
 * HelloRetryRequest: h->tls13. A list that does not fill its extension is refused, as a
 * server refuses it. */
static int supported_versions(struct sni_hello *h, const unsigned char *e, size_t n, size_t at)
{
    if (n < 3 || e[0] != n - 1 || e[0] % 2) {
        bad(h, at, "the supported_versions list's length does not match its extension");
        return -1;
    }
    for (size_t i = 1; i + 1 < n; i += 2)
        if (u16(e + i) > 0x0303 || u16(e + i) < 0x0300)
            h->tls13 = 1;
    return 0;
}

/* hello_body -- the ClientHello message m[0..n) (its 4-byte header included): the fixed
 * fields, then the extensions. Offsets in errors are into m. */
static int hello_body(struct sni_hello *h, const unsigned char *m, size_t n)
{
    static const char *trunc = "the ClientHello ends inside a field";
    unsigned char seen[65536 / 8];
    size_t pos = HS_HDR, len, end;

    if (n < pos + 2 + 32 + 1) {
        bad(h, n, trunc);
        return -1;
    }
    if (m[pos] != 3) {
        bad(h, pos, "the ClientHello's version is not 3.x");
        return -1;
    }
    pos += 2 + 32; /* legacy_version, random */
    len = m[pos++];
    if (len > 32 || pos + len > n) {
        bad(h, pos - 1, len > 32 ? "a session id longer than 32 bytes" : trunc);
        return -1;
    }
    pos += len;
    if (pos + 2 > n) {
        bad(h, n, trunc);
        return -1;
    }
    len = u16(m + pos);
    if (len < 2 || len % 2 || pos + 2 + len > n) {
        bad(h, pos, len < 2 || len % 2 ? "the cipher suites' length is not even and >= 2" : trunc);
        return -1;
    }
    pos += 2 + len;
    if (pos + 1 > n) {
        bad(h, n, trunc);
        return -1;
    }
    len = m[pos];
    if (len < 1 || pos + 1 + len > n) {
        bad(h, pos, len < 1 ? "no compression method" : trunc);
        return -1;
    }
    pos += 1 + len;
    if (pos == n) /* no extensions at all (TLS 1.2 allows it): no name */
        return 0;
    if (pos + 2 > n || pos + 2 + u16(m + pos) != n) {
        bad(h, pos, "the extensions' length does not fill the rest of the ClientHello");
        return -1;
    }
    end = n;
    pos += 2;
    memset(seen, 0, sizeof seen);
    while (pos < end) {
        unsigned type, elen;
        if (pos + 4 > end) {
            bad(h, pos, "an extension header is cut off");
            return -1;
        }
        type = u16(m + pos);
        elen = u16(m + pos + 2);
        if (pos + 4 + elen > end) {
            bad(h, pos + 2, "an extension's length overruns the ClientHello");
            return -1;
        }
        if (seen[type >> 3] & (1u << (type & 7))) {
            bad(h, pos,
                type == EXT_SERVER_NAME ? "two server_name extensions"
                                        : "an extension type appears twice");
            return -1;
        }
        seen[type >> 3] |= (unsigned char)(1u << (type & 7));
        if (type == EXT_SERVER_NAME && server_name(h, m + pos + 4, elen, pos + 4) < 0)
            return -1;
        if (type == EXT_ECH)
            h->ech = 1;
        if (type == EXT_SUPPORTED_VERSIONS && supported_versions(h, m + pos + 4, elen, pos + 4) < 0)
            return -1;
        pos += 4 + elen;
    }
    return 0;
}

/* sslv2 -- p[0] has its top bit set: an SSLv2-format ClientHello offering SSL 3 / TLS (2-byte
 * record header, msg_type 1, version 3.x) is a hello without extensions, once its whole
 * record is there; anything else with that first byte is another protocol. */
static void sslv2(struct sni_hello *h, const unsigned char *p, size_t len)
{
    size_t rl;

    if (len < 5) {
        more(h, 5);
        return;
    }
    if (p[2] != HS_CLIENT_HELLO || p[3] != 3) {
        h->kind = SNI_NOT_TLS;
        return;
    }
    rl = (size_t)(p[0] & 0x7f) << 8 | p[1];
    if (rl < 9) { /* msg_type, version, three lengths */
        bad(h, 0, "an SSLv2-format ClientHello shorter than its fixed fields");
        return;
    }
    if (2 + rl > SNI_BUF_MAX) {
        bad(h, 0, "an SSLv2-format ClientHello longer than 16 KiB");
        return;
    }
    if (len < 2 + rl) { /* the whole record, as for TLS: what is judged is all there */
        more(h, 2 + rl);
        return;
    }
    h->kind = SNI_HELLO;
    h->sslv2 = 1;
    h->used = 2 + rl;
}

int sni_parse(const unsigned char *p, size_t len, struct sni_hello *h)
{
    unsigned char msg[REC_MAX]; /* the handshake message, gathered from its records */
    size_t off = 0, have = 0, total = 0;

    if (!h)
        return -1;
    memset(h, 0, sizeof *h);
    if (!p && len > 0)
        return -1;
    if (len > SNI_BUF_MAX)
        len = SNI_BUF_MAX;
    if (len == 0) {
        more(h, 1);
        return 0;
    }
    if (p[0] & 0x80) {
        sslv2(h, p, len);
        return 0;
    }
    if (p[0] < 20 || p[0] > 24) { /* change_cipher_spec .. heartbeat */
        h->kind = SNI_NOT_TLS;
        return 0;
    }
    if (len < 2) {
        more(h, 2);
        return 0;
    }
    if (p[1] != 3) {
        h->kind = SNI_NOT_TLS;
        return 0;
    }
    for (;;) {
        size_t rl;
        if (off + REC_HDR > len) {
            if (off + REC_HDR > SNI_BUF_MAX)
                bad(h, off, "the ClientHello's records are longer than 16 KiB");
            else
                more(h, off + REC_HDR);
            return 0;
        }
        if (p[off] != CT_HANDSHAKE) {
            bad(h, off,
                off == 0 ? "the first TLS record is not a handshake record"
                         : "a TLS record other than handshake inside the ClientHello");
            return 0;
        }
        if (p[off + 1] != 3 || p[off + 2] > 4) {
            bad(h, off + 1, "a TLS record whose version is not 3.0 .. 3.4");
            return 0;
        }
        rl = u16(p + off + 3);
        if (rl == 0 || rl > REC_MAX) {
            bad(h, off + 3, rl ? "a TLS record longer than 16 KiB" : "an empty handshake record");
            return 0;
        }
        if (off + REC_HDR + rl > SNI_BUF_MAX) {
            bad(h, off + 3, "the ClientHello's records are longer than 16 KiB");
            return 0;
        }
        if (off + REC_HDR + rl > len) {
            more(h, off + REC_HDR + rl);
            return 0;
        }
        /* the whole record is here: its bytes join the message (the total is known once
         * the 4-byte handshake header is, and no record may carry bytes beyond it) */
        if (have + rl > sizeof msg || (total && have + rl > total)) {
            bad(h, off + REC_HDR,
                total ? "the ClientHello's records carry bytes after it"
                      : "the ClientHello is longer than 16 KiB");
            return 0;
        }
        memcpy(msg + have, p + off + REC_HDR, rl);
        have += rl;
        off += REC_HDR + rl;
        if (!total && have >= HS_HDR) {
            size_t body = (size_t)msg[1] << 16 | (size_t)msg[2] << 8 | msg[3];
            if (msg[0] != HS_CLIENT_HELLO) {
                bad(h, 0, "the first handshake message is not a ClientHello");
                return 0;
            }
            if (body > sizeof msg - HS_HDR) {
                bad(h, 1, "the ClientHello is longer than 16 KiB");
                return 0;
            }
            total = HS_HDR + body;
            if (have > total) {
                bad(h, total, "the ClientHello's records carry bytes after it");
                return 0;
            }
        }
        if (total && have == total)
            break;
    }
    h->used = off;
    if (hello_body(h, msg, total) < 0) {
        h->has_name = h->ip = 0;
        h->name[0] = '\0';
        return 0;
    }
    h->kind = SNI_HELLO;
    return 0;
}

enum sni_server sni_server_hrr(const unsigned char *p, size_t len)
{
    static const unsigned char hrr[32] = {0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11,
                                          0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
                                          0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e,
                                          0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c};

    if (len >= 1 && p[0] != CT_HANDSHAKE)
        return SNI_SRV_OTHER;
    if (len >= 2 && p[1] != 3)
        return SNI_SRV_OTHER;
    if (len >= REC_HDR && u16(p + 3) < SNI_SRV_HRR_LEN - REC_HDR)
        return SNI_SRV_OTHER;
    if (len >= REC_HDR + 1 && p[REC_HDR] != HS_SERVER_HELLO)
        return SNI_SRV_OTHER;
    if (len < SNI_SRV_HRR_LEN)
        return SNI_SRV_MORE;
    return memcmp(p + REC_HDR + HS_HDR + 2, hrr, sizeof hrr) == 0 ? SNI_SRV_HRR : SNI_SRV_OTHER;
}

/* ---- plain HTTP ---- */

static void http_bad(struct sni_http *r, size_t at, const char *why)
{
    r->kind = SNI_BAD;
    r->at = at;
    snprintf(r->why, sizeof r->why, "%s", why);
}

/* http_host -- s[0..n) as host[:port] or [v6][:port] into the next name of r. -1: refused */
static int http_host(struct sni_http *r, const unsigned char *s, size_t n, int target, size_t at)
{
    struct sni_http_name *nm = &r->names[r->n];
    struct sni_hello tmp;
    size_t hl = n;

    memset(nm, 0, sizeof *nm);
    nm->target = target;
    if (n > 0 && s[0] == '[') { /* an IPv6 literal: nothing to check by name */
        const unsigned char *rb = memchr(s, ']', n);
        if (!rb) {
            http_bad(r, at, "an IPv6 host without its ']'");
            return -1;
        }
        nm->ip = 1;
        hl = (size_t)(rb + 1 - s);
    } else {
        for (size_t i = n; i > 0; i--)
            if (s[i - 1] == ':') {
                hl = i - 1;
                break;
            }
    }
    if (hl < n) { /* a port */
        size_t i = hl;
        long v = 0;
        if (s[i] != ':' || i + 1 == n || n - i - 1 > 5) {
            http_bad(r, at + i, "a host's port is not 1-65535 in digits");
            return -1;
        }
        for (i++; i < n; i++) {
            if (s[i] < '0' || s[i] > '9') {
                http_bad(r, at + i, "a host's port is not 1-65535 in digits");
                return -1;
            }
            v = v * 10 + (s[i] - '0');
        }
        if (v < 1 || v > 65535) {
            http_bad(r, at + hl, "a host's port is not 1-65535 in digits");
            return -1;
        }
        if (target)
            nm->port = (int)v;
    }
    if (!nm->ip) {
        memset(&tmp, 0, sizeof tmp);
        if (host_name(&tmp, s, hl, at) < 0) {
            http_bad(r, tmp.at, tmp.why);
            return -1;
        }
        nm->ip = tmp.ip;
        if (!tmp.ip)
            memcpy(nm->name, tmp.name, sizeof nm->name);
    }
    r->n++;
    return 0;
}

/* tchar -- RFC 9110's token characters: what a method may be made of (Go takes any token
 * of any length, nginx upper case with '-' and '_', llhttp M-SEARCH) */
static int tchar(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* the request line's parts, in order (struct sni_http's rl_phase) */
enum {
    RL_LEAD,
    RL_METHOD,
    RL_WS1,
    RL_TARGET,
    RL_WS2,
    RL_VER,
    RL_MAJOR,
    RL_MINOR,
    RL_WS3,
    RL_CR,
    RL_DONE
};

#define WS(c) ((c) == ' ' || (c) == '\t')

/* request_line -- p[0..len): the request line's method, target and version, read on from
 * where r left off (rl_i, rl_phase), as leniently as the most lenient servers (nginx skips
 * empty lines before it and runs of spaces and tabs between the parts and after the
 * version, and takes any HTTP/d.d; Go any token as the method; nginx and llhttp bytes
 * above 0x7f in the target): a reader stricter than the far server would call its request
 * "not HTTP" and pass its Host unread. 1: whole (rl_end its length with the line end,
 * rl_t/rl_tn the target, connect for CONNECT), 0: more bytes may still make one, -1: it is
 * not one (r->kind set). */
static int request_line(struct sni_http *r, const unsigned char *p, size_t len)
{
    static const char ver[] = "HTTP/";
    size_t i;

    for (i = r->rl_i; i < len; i++) {
        unsigned char c = p[i];
        switch (r->rl_phase) {
        case RL_LEAD:
            if (c == '\r' || c == '\n')
                continue;
            r->lead = i;
            r->rl_phase = RL_METHOD;
            /* fall through */
        case RL_METHOD:
            if (tchar(c))
                continue;
            if (i == r->lead || !WS(c))
                goto not_http;
            r->connect = i - r->lead == 7 && memcmp(p + r->lead, "CONNECT", 7) == 0;
            r->rl_phase = RL_WS1;
            continue;
        case RL_WS1:
            if (WS(c))
                continue;
            r->rl_t = i;
            r->rl_phase = RL_TARGET;
            /* fall through */
        case RL_TARGET:
            if (c > 0x20 && c != 0x7f)
                continue;
            if (i == r->rl_t || !WS(c))
                goto not_http;
            r->rl_tn = i - r->rl_t;
            r->rl_phase = RL_WS2;
            continue;
        case RL_WS2:
            if (WS(c))
                continue;
            r->rl_k = 0;
            r->rl_phase = RL_VER;
            /* fall through */
        case RL_VER:
            if (c != (unsigned char)ver[r->rl_k])
                goto not_http;
            if (++r->rl_k == sizeof ver - 1) {
                r->rl_phase = RL_MAJOR;
                r->rl_d = i + 1;
            }
            continue;
        case RL_MAJOR:
            if (c >= '0' && c <= '9' && i - r->rl_d < 3)
                continue;
            if (i == r->rl_d || c != '.')
                goto not_http;
            r->rl_phase = RL_MINOR;
            r->rl_d = i + 1;
            continue;
        case RL_MINOR:
            if (c >= '0' && c <= '9' && i - r->rl_d < 3)
                continue;
            if (i == r->rl_d)
                goto not_http;
            r->rl_phase = RL_WS3;
            /* fall through */
        case RL_WS3:
            if (WS(c))
                continue;
            if (c == '\r') {
                r->rl_phase = RL_CR;
                continue;
            }
            /* fall through */
        case RL_CR:
            if (c != '\n')
                goto not_http;
            r->rl_end = i + 1;
            r->rl_i = i + 1;
            r->rl_phase = RL_DONE;
            return 1;
        default:
            return 1;
        }
    }
    r->rl_i = len;
    return 0;
not_http:
    r->kind = SNI_NOT_TLS;
    return -1;
}

/* head_lines -- the header lines of p[0..len) from r->at_line (the start of a line) to the
 * empty one, with what was read before it in r (names, host_seen, connect); SNI_MORE keeps
 * where to go on (at_line, and scanned: how far no '\n' was found in the line there) */
static void head_lines(const unsigned char *p, size_t len, struct sni_http *r)
{
    for (size_t pos = r->at_line;;) {
        size_t from = r->scanned > pos ? r->scanned : pos;
        const unsigned char *nl = memchr(p + from, '\n', len - from), *c;
        size_t e, ne, vs, ve;
        if (!nl) {
            if (len >= SNI_BUF_MAX) {
                http_bad(r, pos, "an HTTP request head longer than 16 KiB");
            } else {
                r->kind = SNI_MORE;
                r->need = len + 1;
                r->at_line = pos;
                r->scanned = len;
                r->kept_n = r->n;
                r->n = 0; /* names only with the whole head */
            }
            return;
        }
        e = (size_t)(nl - p);
        ne = e > pos && p[e - 1] == '\r' ? e - 1 : e;
        if (ne == pos) /* the empty line: the head is whole */
            break;
        if (p[pos] == ' ' || p[pos] == '\t') {
            http_bad(r, pos, "a folded HTTP header line");
            return;
        }
        c = memchr(p + pos, ':', ne - pos);
        if (!c) {
            http_bad(r, pos, "an HTTP header line without a colon");
            return;
        }
        vs = (size_t)(c - p);
        while (vs > pos && (p[vs - 1] == ' ' || p[vs - 1] == '\t'))
            vs--;
        if (vs - pos == 4 && strncasecmp((const char *)p + pos, "host", 4) == 0) {
            if (r->host_seen) {
                http_bad(r, pos, "two Host headers");
                return;
            }
            r->host_seen = 1;
            vs = (size_t)(c - p) + 1;
            ve = ne;
            while (vs < ve && (p[vs] == ' ' || p[vs] == '\t'))
                vs++;
            while (ve > vs && (p[ve - 1] == ' ' || p[ve - 1] == '\t'))
                ve--;
            if (ve > vs && http_host(r, p + vs, ve - vs, 0, vs) < 0)
                return;
            if (ve > vs && r->connect) /* a proxy reads only the target: at its port */
                r->names[r->n - 1].port = r->names[0].port;
        }
        pos = e + 1;
        r->scanned = 0;
    }
    r->kind = SNI_HELLO;
}

int sni_http_parse(const unsigned char *p, size_t len, struct sni_http *r)
{
    if (!r)
        return -1;
    memset(r, 0, sizeof *r);
    return sni_http_next(p, len, r);
}

int sni_http_next(const unsigned char *p, size_t len, struct sni_http *r)
{
    const unsigned char *t;
    size_t tn;
    int rc;

    if (!r)
        return -1;
    if (!p && len > 0) {
        memset(r, 0, sizeof *r);
        return -1;
    }
    if (len > SNI_BUF_MAX)
        len = SNI_BUF_MAX;
    if (r->kind != SNI_MORE || len < r->rl_i || len < r->scanned) /* (not the same bytes) */
        memset(r, 0, sizeof *r);
    if (r->rl_phase == RL_DONE) { /* a head cut off after its request line: read on */
        r->n = r->kept_n;
        head_lines(p, len, r);
        return 0;
    }
    rc = request_line(r, p, len);
    if (rc < 0)
        return 0;
    if (rc == 0) {
        if (len >= SNI_BUF_MAX)
            http_bad(r, 0,
                     r->rl_phase == RL_LEAD ? "16 KiB of empty lines before an HTTP request line"
                                            : "an HTTP request line longer than 16 KiB");
        else {
            r->kind = SNI_MORE;
            r->need = len + 1;
        }
        return 0;
    }
    t = p + r->rl_t;
    tn = r->rl_tn;
    /* the target's host: CONNECT's authority, or an absolute-form URL's */
    if (r->connect) {
        if (http_host(r, t, tn, 1, (size_t)(t - p)) < 0)
            return 0;
        if (r->names[0].port == 0) {
            http_bad(r, (size_t)(t - p), "a CONNECT target without a port");
            return 0;
        }
    } else if (tn > 7 && (strncasecmp((const char *)t, "http://", 7) == 0 ||
                          (tn > 8 && strncasecmp((const char *)t, "https://", 8) == 0))) {
        size_t s = t[4] == ':' ? 7 : 8, e = s, a;
        while (e < tn && t[e] != '/' && t[e] != '?' && t[e] != '#')
            e++;
        for (a = e; a > s; a--) /* user info: the host is after its last '@' */
            if (t[a - 1] == '@')
                break;
        if (a > s)
            s = a;
        if (http_host(r, t + s, e - s, 1, (size_t)(t - p) + s) < 0)
            return 0;
        if (r->names[0].port == 0)
            r->names[0].port = t[4] == ':' ? 80 : 443;
    }
    r->at_line = r->rl_end;
    head_lines(p, len, r);
    return 0;
}
