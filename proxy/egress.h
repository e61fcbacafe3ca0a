/* egress.h -- the egress proxy (SPEC §8): the host policy, host certificates, and the
 * forward listener's connections.
 *
 *   egress.c   pure host policy: which CONNECT target (or absolute-form URL host) is
 *              intercepted, tunnelled or refused, and whether a resolved address may be
 *              connected to, and what a tunnel's first bytes may name
 *              (egress_check_hello). No I/O; unit-tested in tests/proxy/test_egress.c.
 *   sni.c      (sni.h) a tunnel client's TLS ClientHello read for its server name.
 *   mint.c     the org CA (loaded once per config), and per-host leaf certificates minted
 *              on first use: ECDSA P-256, the host in subjectAltName, valid no longer than
 *              the CA, cached per process. An SSL_CTX per host (ALPN http/1.1 only).
 *   forward.c  a forward listener's connection: CONNECT and absolute-form requests,
 *              Proxy-Authorization, interception (TLS with a minted certificate, then the
 *              gateway's request path with the host's provider as upstream), tunnels
 *              (evdns, address checks, a blind splice with backpressure and idle
 *              timeouts), and the `connect` audit record.
 *
 * Everything here runs on the event loop except egress_* (pure) and mint (called on the
 * loop; a first mint costs one P-256 key generation and a signature). */
#ifndef AIRLOCK_PROXY_EGRESS_H
#define AIRLOCK_PROXY_EGRESS_H

#include <stddef.h>
#include <sys/socket.h>

#include "config/config.h"
#include "proxy/sni.h"

typedef struct ssl_ctx_st SSL_CTX;

/* ---- host policy (egress.c) ---- */

enum egress_verdict {
    EGRESS_REFUSE,    /* 403 to the CONNECT; no connection is made */
    EGRESS_INTERCEPT, /* TLS ends here; requests take the gateway's path */
    EGRESS_TUNNEL,    /* resolved, checked, spliced blind */
};

struct egress_decision {
    enum egress_verdict verdict;
    const struct config_intercept *intercept; /* EGRESS_INTERCEPT: the entry */
    const struct config_tunnel *tunnel;       /* EGRESS_TUNNEL by an entry; NULL by default */
    char reason[160]; /* one line, for the 403 body and the audit: never a secret */
};

/* egress_target_parse -- a CONNECT request-target "host:port" ("[v6]:port" for IPv6):
 * host lower-cased into host (NUL-terminated), port into *port. -1 with a one-line reason
 * for a missing or bad port, an empty or over-long host (> 253), a host with bytes outside
 * [A-Za-z0-9.-] (names) or not a valid literal (addresses), and a target that is not
 * exactly that shape (userinfo, path, spaces, NUL). An IPv6 literal comes back without
 * its brackets ("::1"): a ':' in host means IPv6. A host whose last label is all digits
 * must be a dotted-quad IPv4 address ("127.1" and "0x7f.0.0.1" are refused). */
int egress_target_parse(const char *target, size_t len, char *host, size_t hostcap, int *port,
                        char *why, size_t whylen);

/* egress_decide -- the verdict for host:port under cfg's egress section: intercept entries
 * first (exact host and port), then tunnel entries in order (glob and port; an IP-literal
 * host matches only an entry naming that literal), then the default. */
void egress_decide(const struct config_egress *eg, const char *host, int port,
                   struct egress_decision *d);

/* egress_address_allowed -- a tunnel to a *name* may connect to address sa only when it is
 * public: loopback, private (RFC 1918, fc00::/7), link-local, CGNAT (100.64/10),
 * unspecified, multicast, and v4-mapped forms of those are refused (DNS rebinding). An
 * entry that names an IP literal (t->literal) allows exactly that address. 1 allowed. */
int egress_address_allowed(const struct config_tunnel *t, const struct sockaddr *sa);

/* egress_check_hello -- may a tunnel that the policy allowed to host:port (by entry, or by
 * the default when entry is NULL) carry a client whose first bytes sni_parse read as h?
 * d->verdict is EGRESS_TUNNEL (go on) or EGRESS_REFUSE (close before any client byte
 * reaches the far end), d->reason one line saying why either way. The rules
 * (docs/egress.md "What a tunnel checks"):
 *   - not TLS: go on (plain protocols in tunnels are legitimate);
 *   - TLS-shaped but not a ClientHello sni_parse accepts, or one cut off: refuse;
 *   - a server name that any intercept entry names (whatever its port): refuse, the API
 *     is reached through interception only;
 *   - a server name that egress_decide would not tunnel at this port: refuse (the name the
 *     far server will serve must itself be allowed, so a CONNECT to an allowed name or
 *     address cannot front for another);
 *   - no server name (or an IP literal as one) to an IP-literal host: only when an entry
 *     names that address (entry->literal), not by the default;
 *   - no server name to a host name: go on (the name was checked; the far server picks
 *     its default host for the address that name resolved to).
 * The outer name of an ECH hello is what is checked; the reason says ECH was offered. */
void egress_check_hello(const struct config_egress *eg, const char *host, int port,
                        const struct config_tunnel *entry, const struct sni_hello *h,
                        struct egress_decision *d);

/* egress_check_http -- the same for a tunnel whose first bytes sni_http_parse read as r
 * (they were not TLS): a plain HTTP request's Host header (at the tunnel's port) and an
 * absolute-form or CONNECT target's host (at its own port: a proxy at the far end would
 * connect there) must each be a name no intercept entry names and egress_decide tunnels.
 *   - not an HTTP/1.x request: go on (another protocol);
 *   - an HTTP/1.x request line whose head is cut off or not accepted: refuse;
 *   - no name, or an IP literal: go on (as before this check; the far server picks).
 * Only the first request is read: later ones on the same connection are not. */
void egress_check_http(const struct config_egress *eg, int port, const struct sni_http *r,
                       struct egress_decision *d);

/* ---- the `connect` audit record (egress.c) ---- */

/* What the forward listener knows of one CONNECT (or absolute-form request's host) when
 * it writes its audit record (AUDIT_REC_CONNECT, docs/audit.md). Every pointer is
 * borrowed for the call; NULL strings are written as null. */
struct egress_connect_info {
    const char *id;     /* the record's id (same alphabet as request ids) */
    const char *client; /* the client's "ip:port" */
    const char *key;    /* the airlock key's name, from Proxy-Authorization; NULL none */
    const char *team;   /* that key's team; NULL none */
    const char *host;   /* as egress_target_parse gave it; a target that did not parse:
                           its raw bytes (escaped, cut to 300 bytes), with port 0 */
    int port;
    enum egress_verdict decision;
    const char *reason;             /* egress_decision.reason, or why the target was refused */
    const char *address;            /* the numeric address connected to (tunnels); NULL: none */
    unsigned long long bytes_up;    /* client -> far end, after the CONNECT's answer */
    unsigned long long bytes_down;  /* far end -> client */
    long long started_ms, ended_ms; /* CLOCK_REALTIME in ms since the epoch: the CONNECT
                                       line read, the connection closed (or refused) */
    int status;                     /* the CONNECT's HTTP status: 200, 403, 407, 502, 504 ... */
};

/* egress_connect_meta -- the record's meta JSON (one object, no newline), owned by the
 * caller (free()); *len its length when len is not NULL. NULL on out of memory. */
char *egress_connect_meta(const struct egress_connect_info *ci, size_t *len);

/* egress_verdict_name -- "intercept", "tunnel" or "refuse" */
const char *egress_verdict_name(enum egress_verdict v);

/* ---- host certificates (mint.c) ---- */

struct egress_mint;

/* egress_mint_new -- load the org CA (cert + key, PEM); NULL with a reason when the files
 * cannot be read, the certificate is not a CA (basicConstraints CA:TRUE, keyCertSign), or
 * the key does not match it. */
struct egress_mint *egress_mint_new(const char *ca_cert, const char *ca_key, char *err,
                                    size_t errlen);
/* egress_mint_ctx -- the server SSL_CTX for host (a name, or an IP literal without
 * brackets), cached: minted once per mint (a leaf is minted again only when less than a
 * day of its validity is left). TLS >= 1.2; ALPN selects http/1.1, and a client that
 * offers ALPN without http/1.1 (h2 alone) fails the handshake. Borrowed: the mint owns it
 * and a later call may evict it (at most 10,000 hosts, oldest first), so call SSL_new
 * at once (a connection holds its own reference). NULL with a reason on failure. */
SSL_CTX *egress_mint_ctx(struct egress_mint *m, const char *host, char *err, size_t errlen);
/* egress_mint_set_limit -- (tests) keep at most max hosts (1..10,000); empties the
 * cache. 0, or -1 for a bad max or out of memory. */
int egress_mint_set_limit(struct egress_mint *m, size_t max);
/* how many certificates were minted (for tests and /metrics) */
size_t egress_mint_count(const struct egress_mint *m);
void egress_mint_free(struct egress_mint *m);

/* (the CA files are checked when the config loads -- config/egress.c: not a CA, a key that
 * does not match or is not mode 0600 -- so check-config reports them with FILE:LINE:COL
 * and serve refuses them) */

#endif
