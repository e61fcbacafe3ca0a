/* proxy.h -- the gateway: listeners, HTTP/1.1, the request pipeline, upstreams.
 *
 * proxy is the only module that wires policy, audit and engine together. One
 * event loop (libevent) owns every socket; blocking work (audit fsync, inference)
 * runs on other threads and comes back through a mailbox as events.
 *
 * Threading: proxy_run runs the loop on the calling thread. Everything else is
 * loop-only. Errors: 0 / -1 with a one-line message in err. */
#ifndef AIRLOCK_PROXY_H
#define AIRLOCK_PROXY_H

#include <stddef.h>

#include "config/config.h"

struct proxy;

/* proxy_new -- bind every listener of cfg, compile the policy, open the audit log,
 * load builtin models. Consumes the caller's reference to cfg (also on failure).
 * `reload_path` is the file SIGHUP re-reads (NULL: reload disabled, e.g. the
 * embedded default). */
int proxy_new(struct config *cfg, const char *reload_path, struct proxy **out, char *err,
              size_t errlen) __attribute__((warn_unused_result));

/* proxy_run -- serve until SIGTERM/SIGINT, then drain (in-flight requests finish,
 * bounded) and return 0. */
int proxy_run(struct proxy *px);
void proxy_free(struct proxy *px);

/* proxy_reload -- load `path`, and if valid swap it in for new requests. Returns
 * 0, or -1 with the problems logged; the old config keeps serving. */
int proxy_reload(struct proxy *px, const char *path);

#endif
