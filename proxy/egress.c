/* egress.c -- the egress proxy's host policy (SPEC §8): CONNECT targets parsed, decided
 * (intercept, tunnel, refuse) and the addresses a tunnel may reach; and the `connect`
 * audit record's metadata. Pure: no I/O, no clock, no allocation but the meta's.
 *
 * Everything here reads bytes a client chose (the CONNECT line), so every rule is written
 * as "accept exactly this shape": a host is letters, digits, '-' and '.' in non-empty
 * labels, or an IP literal in its one canonical spelling (dotted quad, bracketed IPv6). */
#include "proxy/egress.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/jbuf.h"

#define HOST_MAX 253
#define LABEL_MAX 63

static void say(char *why, size_t whylen, const char *msg)
{
    if (why && whylen)
        snprintf(why, whylen, "%s", msg);
}

/* parse_port -- s[0..n) as 1..65535, digits only (no sign, no spaces); -1 otherwise. */
static int parse_port(const char *s, size_t n)
{
    long v = 0;
    if (n == 0 || n > 5)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v >= 1 && v <= 65535 ? (int)v : -1;
}

static int all_digits(const char *s, size_t n)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

/* check_name -- h[0..n) is a host name: labels of [A-Za-z0-9-] (1..63 bytes) joined by
 * single dots. 0, or -1 with a reason. A name whose last label is all digits is an IPv4
 * literal to the resolver, so it must be one here too (the caller checks that). */
static int check_name(const char *h, size_t n, char *why, size_t whylen)
{
    size_t lab = 0;
    for (size_t i = 0; i < n; i++) {
        char c = h[i];
        if (c == '.') {
            if (lab == 0) {
                say(why, whylen, "host has an empty label");
                return -1;
            }
            lab = 0;
            continue;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-')) {
            say(why, whylen, "host may only hold letters, digits, '-' and '.'");
            return -1;
        }
        if (++lab > LABEL_MAX) {
            say(why, whylen, "host has a label longer than 63 bytes");
            return -1;
        }
    }
    if (lab == 0) {
        say(why, whylen, "host has an empty label");
        return -1;
    }
    return 0;
}

int egress_target_parse(const char *target, size_t len, char *host, size_t hostcap, int *port,
                        char *why, size_t whylen)
{
    const char *h, *colon;
    size_t hlen;
    char tmp[HOST_MAX + 1];
    int v6 = 0;

    if (host && hostcap)
        host[0] = '\0';
    *port = 0;
    if (!target || len == 0) {
        say(why, whylen, "empty CONNECT target");
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)target[i];
        if (c == 0) {
            say(why, whylen, "CONNECT target holds a NUL byte");
            return -1;
        }
        if (c <= 0x20 || c >= 0x7f) {
            say(why, whylen, "CONNECT target holds a space or a control or non-ASCII byte");
            return -1;
        }
        if (c == '@') {
            say(why, whylen, "CONNECT target holds userinfo ('@'): it must be host:port");
            return -1;
        }
        if (c == '/' || c == '?' || c == '#' || c == '\\') {
            say(why, whylen, "CONNECT target holds a path: it must be host:port");
            return -1;
        }
    }
    if (target[0] == '[') {
        const char *rb = memchr(target, ']', len);
        if (!rb) {
            say(why, whylen, "IPv6 literal without its closing ']'");
            return -1;
        }
        if ((size_t)(rb + 1 - target) == len) {
            say(why, whylen, "CONNECT target has no port: it must be host:port");
            return -1;
        }
        if (rb[1] != ':') {
            say(why, whylen, "CONNECT target must be [IPv6]:port");
            return -1;
        }
        h = target + 1;
        hlen = (size_t)(rb - h);
        colon = rb + 1;
        v6 = 1;
    } else {
        colon = NULL;
        for (size_t i = len; i > 0; i--)
            if (target[i - 1] == ':') {
                colon = target + i - 1;
                break;
            }
        if (!colon) {
            say(why, whylen, "CONNECT target has no port: it must be host:port");
            return -1;
        }
        h = target;
        hlen = (size_t)(colon - target);
        if (memchr(h, ':', hlen)) {
            say(why, whylen, "an IPv6 literal must be in brackets: [::1]:443");
            return -1;
        }
    }
    size_t plen = len - (size_t)(colon + 1 - target);
    int p = parse_port(colon + 1, plen);
    if (p < 0) {
        say(why, whylen,
            plen == 0 ? "CONNECT target has no port: it must be host:port"
                      : "CONNECT target's port must be 1-65535 in digits");
        return -1;
    }
    if (hlen == 0) {
        say(why, whylen, "CONNECT target has an empty host");
        return -1;
    }
    if (hlen > HOST_MAX) {
        say(why, whylen, "CONNECT target's host is longer than 253 bytes");
        return -1;
    }
    memcpy(tmp, h, hlen);
    tmp[hlen] = '\0';
    for (size_t i = 0; i < hlen; i++)
        if (tmp[i] >= 'A' && tmp[i] <= 'Z')
            tmp[i] = (char)(tmp[i] - 'A' + 'a');
    if (v6) {
        struct in6_addr a6;
        if (inet_pton(AF_INET6, tmp, &a6) != 1) {
            say(why, whylen, "CONNECT target's IPv6 literal is not a valid address");
            return -1;
        }
    } else {
        if (check_name(tmp, hlen, why, whylen) != 0)
            return -1;
        const char *last = strrchr(tmp, '.');
        last = last ? last + 1 : tmp;
        if (all_digits(last, strlen(last))) {
            struct in_addr a4;
            if (inet_pton(AF_INET, tmp, &a4) != 1) {
                say(why, whylen, "CONNECT target's IPv4 literal must be a dotted quad a.b.c.d");
                return -1;
            }
        }
    }
    if (!host || hostcap <= hlen) {
        say(why, whylen, "CONNECT target's host is too long");
        return -1;
    }
    memcpy(host, tmp, hlen + 1);
    *port = p;
    return 0;
}

/* ---- literals ---- */

/* An address as 16 bytes: IPv4 as its v4-mapped IPv6 form, so one comparison serves both
 * (an entry naming 10.0.0.5 allows a socket address ::ffff:10.0.0.5). */
struct addr16 {
    unsigned char b[16];
};

static void map4(const unsigned char v4[4], struct addr16 *a)
{
    memset(a->b, 0, 10);
    a->b[10] = a->b[11] = 0xff;
    memcpy(a->b + 12, v4, 4);
}

/* literal_parse -- s as "a.b.c.d", "[v6]" or "v6" into a. 1 when s is a literal, 0 not. */
static int literal_parse(const char *s, struct addr16 *a)
{
    struct in_addr a4;
    char tmp[64];
    size_t n = strlen(s);

    if (inet_pton(AF_INET, s, &a4) == 1) {
        map4((const unsigned char *)&a4, a);
        return 1;
    }
    if (n >= 2 && s[0] == '[' && s[n - 1] == ']') {
        if (n - 2 >= sizeof tmp)
            return 0;
        memcpy(tmp, s + 1, n - 2);
        tmp[n - 2] = '\0';
        s = tmp;
    }
    return inet_pton(AF_INET6, s, a->b) == 1;
}

/* ---- host policy ---- */

static int label_count(const char *s)
{
    int n = 1;
    for (; *s; s++)
        n += *s == '.';
    return n;
}

/* glob_match -- host against a lower-case glob whose leftmost labels may be '*': k such
 * labels match k or more whole labels, so "*.github.com" matches "api.github.com" and
 * "a.b.github.com", never "github.com" nor "evilgithub.com". No other wildcard. */
static int glob_match(const char *glob, const char *host)
{
    int stars = 0;
    while (glob[0] == '*' && (glob[1] == '.' || glob[1] == '\0')) {
        stars++;
        glob += glob[1] ? 2 : 1;
    }
    if (stars == 0)
        return strcmp(glob, host) == 0;
    if (*glob == '\0') /* "*": any name */
        return label_count(host) >= stars;
    size_t gl = strlen(glob), hl = strlen(host);
    if (hl <= gl + 1 || host[hl - gl - 1] != '.' || strcmp(host + hl - gl, glob) != 0)
        return 0;
    char pre[HOST_MAX + 1];
    size_t pl = hl - gl - 1;
    if (pl > HOST_MAX)
        return 0;
    memcpy(pre, host, pl);
    pre[pl] = '\0';
    return label_count(pre) >= stars;
}

/* reason -- d->reason, cut to fit (a long host name makes a long line) */
static void __attribute__((format(printf, 2, 3)))
reason(struct egress_decision *d, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->reason, sizeof d->reason, fmt, ap);
    va_end(ap);
}

static void host_port(char *buf, size_t cap, const char *host, int port)
{
    if (strchr(host, ':'))
        snprintf(buf, cap, "[%.60s]:%d", host, port);
    else
        snprintf(buf, cap, "%.80s:%d", host, port);
}

void egress_decide(const struct config_egress *eg, const char *host, int port,
                   struct egress_decision *d)
{
    char hp[100];
    struct addr16 target, ent;
    int lit;

    memset(d, 0, sizeof *d);
    d->verdict = EGRESS_REFUSE;
    host_port(hp, sizeof hp, host ? host : "", port);
    if (!eg || !eg->present || !host) {
        reason(d, "%s: this listener has no egress policy", hp);
        return;
    }
    lit = literal_parse(host, &target);
    for (size_t i = 0; !lit && i < eg->n_intercept; i++) {
        const struct config_intercept *ic = &eg->intercept[i];
        if (ic->port == port && ic->host && strcmp(ic->host, host) == 0) {
            d->verdict = EGRESS_INTERCEPT;
            d->intercept = ic;
            reason(d, "%s is intercepted for provider '%.40s'", hp,
                   ic->provider ? ic->provider : "?");
            return;
        }
    }
    for (size_t i = 0; i < eg->n_tunnel; i++) {
        const struct config_tunnel *t = &eg->tunnel[i];
        int ok;
        if (t->port != port || !t->glob)
            continue;
        if (t->literal)
            ok = lit && literal_parse(t->glob, &ent) && memcmp(ent.b, target.b, 16) == 0;
        else
            ok = !lit && glob_match(t->glob, host);
        if (ok) {
            d->verdict = EGRESS_TUNNEL;
            d->tunnel = t;
            reason(d, "%s is tunnelled by entry '%.80s:%d' (line %d)", hp, t->glob, t->port,
                   t->pos.line);
            return;
        }
    }
    if (eg->dflt == CONFIG_EGRESS_TUNNEL) {
        d->verdict = EGRESS_TUNNEL;
        reason(d, "%s matches no egress entry; default: tunnel", hp);
        return;
    }
    reason(d, "%s is not allowed by the egress policy (default: deny)", hp);
}

void egress_check_hello(const struct config_egress *eg, const char *host, int port,
                        const struct config_tunnel *entry, const struct sni_hello *h,
                        struct egress_decision *d)
{
    struct egress_decision sd;
    struct addr16 a;
    const char *ech = h && h->ech ? " (ECH offered: the inner name is encrypted)" : "";

    memset(d, 0, sizeof *d);
    d->verdict = EGRESS_REFUSE;
    if (!h || !host) {
        reason(d, "nothing to check");
        return;
    }
    switch (h->kind) {
    case SNI_NOT_TLS:
        d->verdict = EGRESS_TUNNEL;
        reason(d, "the client's first bytes are not TLS");
        return;
    case SNI_MORE:
        reason(d, "the client's TLS ClientHello was cut off");
        return;
    case SNI_BAD:
        reason(d,
               "the client's first bytes are TLS but no ClientHello airlock accepts: %s (byte %zu)",
               h->why, h->at);
        return;
    case SNI_HELLO:
        break;
    }
    if (h->has_name && !h->ip) {
        for (size_t i = 0; eg && i < eg->n_intercept; i++) {
            const struct config_intercept *ic = &eg->intercept[i];
            if (ic->host && strcmp(ic->host, h->name) == 0) {
                reason(d,
                       "the TLS server name '%.80s' is an intercepted host (provider '%.40s'): "
                       "CONNECT to it by name to reach it",
                       h->name, ic->provider ? ic->provider : "?");
                return;
            }
        }
        egress_decide(eg, h->name, port, &sd);
        if (sd.verdict != EGRESS_TUNNEL) {
            reason(d, "the TLS server name '%.80s' may not be tunnelled: %.100s", h->name,
                   sd.reason);
            return;
        }
        d->verdict = EGRESS_TUNNEL;
        d->tunnel = sd.tunnel;
        reason(d, "TLS server name '%.80s'%s", h->name, ech);
        return;
    }
    if (literal_parse(host, &a) && !(entry && entry->literal)) {
        reason(d,
               "a TLS ClientHello without a server name%s to an IP address is tunnelled only "
               "when an egress.tunnel entry names that address",
               h->ip ? " (an IP literal as the name)" : "");
        return;
    }
    d->verdict = EGRESS_TUNNEL;
    reason(d, "TLS without a server name%s", ech);
}

void egress_check_http(const struct config_egress *eg, int port, const struct sni_http *r,
                       struct egress_decision *d)
{
    struct egress_decision sd;

    memset(d, 0, sizeof *d);
    d->verdict = EGRESS_REFUSE;
    if (!r) {
        reason(d, "nothing to check");
        return;
    }
    switch (r->kind) {
    case SNI_NOT_TLS:
        d->verdict = EGRESS_TUNNEL;
        reason(d, "the client's first bytes are not TLS or an HTTP request");
        return;
    case SNI_MORE:
        reason(d, "the client's HTTP request head was cut off");
        return;
    case SNI_BAD:
        reason(d,
               "the client's first bytes are an HTTP request but no head airlock accepts: %s "
               "(byte %zu)",
               r->why, r->at);
        return;
    case SNI_HELLO:
        break;
    }
    for (int i = 0; i < r->n && i < 2; i++) {
        const struct sni_http_name *nm = &r->names[i];
        const char *what = nm->target ? "request target" : "Host";
        int np = nm->port ? nm->port : port;
        if (nm->ip || !nm->name[0])
            continue;
        for (size_t k = 0; eg && k < eg->n_intercept; k++) {
            const struct config_intercept *ic = &eg->intercept[k];
            if (ic->host && strcmp(ic->host, nm->name) == 0) {
                reason(d,
                       "the plain HTTP %s '%.80s' is an intercepted host (provider '%.40s'): "
                       "CONNECT to it by name to reach it",
                       what, nm->name, ic->provider ? ic->provider : "?");
                return;
            }
        }
        egress_decide(eg, nm->name, np, &sd);
        if (sd.verdict != EGRESS_TUNNEL) {
            reason(d, "the plain HTTP %s '%.80s' may not be tunnelled: %.90s", what, nm->name,
                   sd.reason);
            return;
        }
    }
    d->verdict = EGRESS_TUNNEL;
    if (r->n > 0 && r->names[r->n - 1].name[0])
        reason(d, "plain HTTP to '%.80s'", r->names[r->n - 1].name);
    else
        reason(d, "plain HTTP without a host name");
}

/* v4_public -- a.b.c.d may be reached by name: none of the special-purpose ranges a DNS
 * answer could point inside the organisation (or at airlock itself) with. */
static int v4_public(const unsigned char a[4])
{
    if (a[0] == 0 || a[0] == 10 || a[0] == 127) /* this network, RFC 1918, loopback */
        return 0;
    if (a[0] == 100 && (a[1] & 0xc0) == 64) /* CGNAT 100.64/10 */
        return 0;
    if (a[0] == 169 && a[1] == 254) /* link-local */
        return 0;
    if (a[0] == 172 && (a[1] & 0xf0) == 16) /* RFC 1918 172.16/12 */
        return 0;
    if (a[0] == 192 && a[1] == 168) /* RFC 1918 */
        return 0;
    if (a[0] == 192 && a[1] == 0 && a[2] == 0) /* IETF protocol assignments 192.0.0/24 */
        return 0;
    if (a[0] == 198 && (a[1] & 0xfe) == 18) /* benchmarking 198.18/15 */
        return 0;
    if (a[0] >= 224) /* multicast 224/4, reserved 240/4, broadcast */
        return 0;
    return 1;
}

static int v6_public(const unsigned char b[16])
{
    static const unsigned char zero[16];
    /* forms that carry an IPv4 address: judged by it */
    if (memcmp(b, zero, 10) == 0 && b[10] == 0xff && b[11] == 0xff) /* ::ffff:a.b.c.d */
        return v4_public(b + 12);
    if (memcmp(b, zero, 12) == 0) /* ::, ::1 and v4-compatible ::a.b.c.d */
        return (b[12] | b[13] | b[14]) != 0 && v4_public(b + 12);
    if (b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b &&
        memcmp(b + 4, zero, 8) == 0) /* NAT64 64:ff9b::/96 */
        return v4_public(b + 12);
    if (b[0] == 0x20 && b[1] == 0x02) /* 6to4 2002:a.b.c.d::/48 */
        return v4_public(b + 2);
    if (b[0] == 0xff) /* multicast */
        return 0;
    if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) /* link-local fe80::/10 */
        return 0;
    if (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0) /* site-local fec0::/10 (deprecated) */
        return 0;
    if ((b[0] & 0xfe) == 0xfc) /* unique local fc00::/7 */
        return 0;
    return 1;
}

int egress_address_allowed(const struct config_tunnel *t, const struct sockaddr *sa)
{
    struct addr16 a, ent;

    if (!sa)
        return 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        map4((const unsigned char *)&s4->sin_addr, &a);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        memcpy(a.b, &s6->sin6_addr, 16);
    } else {
        return 0;
    }
    if (t && t->literal)
        return t->glob && literal_parse(t->glob, &ent) && memcmp(ent.b, a.b, 16) == 0;
    return v6_public(a.b);
}

/* ---- the connect record ---- */

const char *egress_verdict_name(enum egress_verdict v)
{
    switch (v) {
    case EGRESS_INTERCEPT:
        return "intercept";
    case EGRESS_TUNNEL:
        return "tunnel";
    case EGRESS_REFUSE:
        break;
    }
    return "refuse";
}

/* iso_ms -- ms since the epoch as "YYYY-MM-DDTHH:MM:SS.mmmZ" (the request records'
 * `time` format); "" for a time before the epoch. */
static void iso_ms(char *buf, size_t cap, long long ms)
{
    struct tm tm;
    time_t s;

    if (ms < 0) {
        snprintf(buf, cap, "%s", "");
        return;
    }
    s = (time_t)(ms / 1000);
    if (!gmtime_r(&s, &tm)) {
        snprintf(buf, cap, "%s", "");
        return;
    }
    snprintf(buf, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", (tm.tm_year + 1900) % 10000,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

char *egress_connect_meta(const struct egress_connect_info *ci, size_t *len)
{
    struct jbuf m;
    char started[40], ended[40];
    long long dur;

    iso_ms(started, sizeof started, ci->started_ms);
    iso_ms(ended, sizeof ended, ci->ended_ms);
    dur = ci->ended_ms >= ci->started_ms ? ci->ended_ms - ci->started_ms : 0;
    jbuf_init(&m);
    jbuf_open(&m, '{');
    jbuf_key(&m, "id");
    jbuf_str(&m, ci->id);
    jbuf_key(&m, "time");
    jbuf_str(&m, ended);
    jbuf_key(&m, "client");
    jbuf_str(&m, ci->client);
    jbuf_key(&m, "key");
    jbuf_str(&m, ci->key);
    jbuf_key(&m, "team");
    jbuf_str(&m, ci->team);
    jbuf_key(&m, "host");
    if (ci->host)
        jbuf_strn(&m, ci->host, strnlen(ci->host, 300));
    else
        jbuf_null(&m);
    jbuf_key(&m, "port");
    jbuf_i64(&m, ci->port);
    jbuf_key(&m, "decision");
    jbuf_str(&m, egress_verdict_name(ci->decision));
    jbuf_key(&m, "reason");
    jbuf_str(&m, ci->reason);
    jbuf_key(&m, "address");
    jbuf_str(&m, ci->address);
    jbuf_key(&m, "bytes_up");
    jbuf_u64(&m, ci->bytes_up);
    jbuf_key(&m, "bytes_down");
    jbuf_u64(&m, ci->bytes_down);
    jbuf_key(&m, "started");
    jbuf_str(&m, started);
    jbuf_key(&m, "ended");
    jbuf_str(&m, ended);
    jbuf_key(&m, "duration_ms");
    jbuf_i64(&m, dur);
    jbuf_key(&m, "status");
    jbuf_i64(&m, ci->status);
    jbuf_close(&m, '}');
    return jbuf_finish(&m, len);
}
