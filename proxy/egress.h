/* egress.h -- the egress proxy (SPEC §8): the host policy, host certificates, and the
 * forward listener's connections.
 *
 *   egress.c   pure host policy: which CONNECT target (or absolute-form URL host) is
 *              intercepted, tunnelled or refused, and whether a resolved address may be
 *              connected to. No I/O; unit-tested in tests/proxy/test_egress.c.
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
 * exactly that shape (userinfo, path, spaces, NUL). */
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

/* ---- host certificates (mint.c) ---- */

struct egress_mint;

/* egress_mint_new -- load the org CA (cert + key, PEM); NULL with a reason when the files
 * cannot be read, the certificate is not a CA (basicConstraints CA:TRUE, keyCertSign), or
 * the key does not match it. */
struct egress_mint *egress_mint_new(const char *ca_cert, const char *ca_key, char *err,
                                    size_t errlen);
/* egress_mint_ctx -- the server SSL_CTX for host (cached: minted once per process; the
 * mint owns it). NULL with a reason on failure. */
SSL_CTX *egress_mint_ctx(struct egress_mint *m, const char *host, char *err, size_t errlen);
/* how many certificates were minted (for tests and /metrics) */
size_t egress_mint_count(const struct egress_mint *m);
void egress_mint_free(struct egress_mint *m);

/* (the CA files are checked when the config loads -- config/egress.c: not a CA, a key that
 * does not match or is not mode 0600 -- so check-config reports them with FILE:LINE:COL
 * and serve refuses them) */

#endif
