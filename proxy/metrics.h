/* metrics.h -- the gateway's counters and histograms, rendered for Prometheus.
 *
 * Owned by the proxy and touched only on the event loop (no locks). Rendering reads the
 * proxy (audit queue depth, connections) as well as these counters. */
#ifndef AIRLOCK_PROXY_METRICS_H
#define AIRLOCK_PROXY_METRICS_H

#include <stdint.h>

struct evbuffer;
struct proxy;

#define PROXY_LAT_BUCKETS 14

struct proxy_metric_row {
    char *labels; /* `endpoint="/v1/messages",route="a/b",verdict="allow",status="200"` */
    uint64_t count;
    struct proxy_metric_row *next;
};

struct proxy_metrics {
    struct proxy_metric_row *requests;
    uint64_t bytes_in, bytes_out, upstream_bytes_out, upstream_bytes_in;
    uint64_t tokens_in, tokens_out, tokens_cached;
    double cost_usd;
    uint64_t lat_buckets[PROXY_LAT_BUCKETS + 1]; /* + Inf */
    double lat_sum;
    uint64_t lat_count;
    uint64_t up_lat_buckets[PROXY_LAT_BUCKETS + 1];
    double up_lat_sum;
    uint64_t up_lat_count;
    uint64_t conns_total, upstream_conns_total, upstream_reused;
    uint64_t reloads_ok, reloads_failed;
};

/* proxy_metrics_request -- count a finished request: endpoint is the API path it was
 * routed as (query string never included: a fixed set of names), "none" for an unknown one */
void proxy_metrics_request(struct proxy_metrics *m, const char *endpoint, const char *route,
                           const char *verdict, int status, double seconds);
void proxy_metrics_upstream_latency(struct proxy_metrics *m, double seconds);
/* proxy_metrics_render -- Prometheus text into buf. */
void proxy_metrics_render(struct proxy *px, struct evbuffer *buf);
void proxy_metrics_deinit(struct proxy_metrics *m);

#endif
