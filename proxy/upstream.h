/* upstream.h -- connections to providers: a keep-alive pool per provider, one request at a time
 * per connection, TLS with verified certificates.
 *
 * proxy_upstream_send writes r->d.outbound with the provider's key (never the client's)
 * and feeds the answer to answer.h as it arrives; stalls, resets and malformed HTTP end
 * the request through proxy_answer_upstream_failed. */
#ifndef AIRLOCK_PROXY_UPSTREAM_H
#define AIRLOCK_PROXY_UPSTREAM_H

#include <stddef.h>

#include <openssl/ssl.h>

#define PROXY_MAX_UPSTREAM_BODY (64u << 20)

struct config_provider;
struct proxy;
struct proxy_req;
struct proxy_upconn;

struct proxy_pool {
    struct proxy *px;
    const struct config_provider *prov;
    SSL_CTX *ssl;              /* NULL for plain http */
    struct proxy_upconn *idle; /* singly linked idle list */
    int n_idle;
};

int proxy_pool_init(struct proxy_pool *p, struct proxy *px, const struct config_provider *prov,
                    char *err, size_t errlen);
void proxy_pool_deinit(struct proxy_pool *p);
/* proxy_upstream_send -- send r->outbound to r->prov over a pooled connection. */
void proxy_upstream_send(struct proxy_req *r);
/* proxy_upstream_pause -- stop (1) or resume (0) reading the provider's answer. */
void proxy_upstream_pause(struct proxy_req *r, int pause);
/* proxy_upstream_abort -- drop the request's upstream connection (not reused). */
void proxy_upstream_abort(struct proxy_req *r);

#endif
