/* metrics.c -- counters and histograms, rendered in Prometheus text format. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/proxy_int.h"

/* latency bucket bounds in seconds */
static const double bounds[PROXY_LAT_BUCKETS] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                 0.1,    0.25,  0.5,    1,     2.5,  5,     10};

static void observe(uint64_t *buckets, double *sum, uint64_t *count, double s)
{
    int i;

    for (i = 0; i < PROXY_LAT_BUCKETS; i++)
        if (s <= bounds[i])
            break;
    buckets[i]++;
    *sum += s;
    (*count)++;
}

void proxy_metrics_request(struct proxy_metrics *m, const char *endpoint, const char *route,
                           const char *verdict, int status, double seconds)
{
    char labels[512];
    struct proxy_metric_row *r;

    snprintf(labels, sizeof(labels), "endpoint=\"%s\",route=\"%s\",verdict=\"%s\",status=\"%d\"",
             endpoint, route, verdict, status);
    for (r = m->requests; r; r = r->next)
        if (strcmp(r->labels, labels) == 0)
            break;
    if (!r) {
        r = calloc(1, sizeof(*r));
        if (r)
            r->labels = strdup(labels);
        if (!r || !r->labels) {
            free(r);
            return;
        }
        r->next = m->requests;
        m->requests = r;
    }
    r->count++;
    observe(m->lat_buckets, &m->lat_sum, &m->lat_count, seconds);
}

void proxy_metrics_upstream_latency(struct proxy_metrics *m, double seconds)
{
    observe(m->up_lat_buckets, &m->up_lat_sum, &m->up_lat_count, seconds);
}

static void histogram(struct evbuffer *b, const char *name, const char *help,
                      const uint64_t *buckets, double sum, uint64_t count)
{
    uint64_t cum = 0;
    int i;

    evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    for (i = 0; i < PROXY_LAT_BUCKETS; i++) {
        cum += buckets[i];
        evbuffer_add_printf(b, "%s_bucket{le=\"%g\"} %llu\n", name, bounds[i],
                            (unsigned long long)cum);
    }
    cum += buckets[PROXY_LAT_BUCKETS];
    evbuffer_add_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name,
                        (unsigned long long)cum, name, sum, name, (unsigned long long)count);
}

#define COUNTER(name, help, v)                                                                     \
    evbuffer_add_printf(b, "# HELP " name " " help "\n# TYPE " name " counter\n" name " %llu\n",   \
                        (unsigned long long)(v))
#define GAUGE(name, help, v)                                                                       \
    evbuffer_add_printf(b, "# HELP " name " " help "\n# TYPE " name " gauge\n" name " %llu\n",     \
                        (unsigned long long)(v))

void proxy_metrics_render(struct proxy *px, struct evbuffer *b)
{
    struct proxy_metrics *m = &px->metrics;
    struct proxy_metric_row *r;

    evbuffer_add_printf(
        b, "# HELP airlock_requests_total Requests by endpoint, route, verdict and status.\n"
           "# TYPE airlock_requests_total counter\n");
    for (r = m->requests; r; r = r->next)
        evbuffer_add_printf(b, "airlock_requests_total{%s} %llu\n", r->labels,
                            (unsigned long long)r->count);
    COUNTER("airlock_client_bytes_received_total", "Request body bytes from clients.", m->bytes_in);
    COUNTER("airlock_client_bytes_sent_total", "Answer body bytes to clients.", m->bytes_out);
    COUNTER("airlock_upstream_bytes_sent_total", "Bytes sent to providers.", m->upstream_bytes_out);
    COUNTER("airlock_upstream_bytes_received_total", "Bytes received from providers.",
            m->upstream_bytes_in);
    COUNTER("airlock_tokens_input_total", "Prompt tokens, as providers report them.", m->tokens_in);
    COUNTER("airlock_tokens_output_total", "Completion tokens.", m->tokens_out);
    COUNTER("airlock_tokens_cached_input_total", "Cached prompt tokens.", m->tokens_cached);
    evbuffer_add_printf(b,
                        "# HELP airlock_cost_usd_total Cost of answered requests in USD.\n"
                        "# TYPE airlock_cost_usd_total counter\nairlock_cost_usd_total %.9f\n",
                        m->cost_usd);
    histogram(b, "airlock_request_duration_seconds", "Time from request to end of answer.",
              m->lat_buckets, m->lat_sum, m->lat_count);
    histogram(b, "airlock_upstream_first_byte_seconds",
              "Time from sending upstream to its headers.", m->up_lat_buckets, m->up_lat_sum,
              m->up_lat_count);
    GAUGE("airlock_connections", "Open client connections.", (uint64_t)px->n_conns);
    GAUGE("airlock_requests_in_flight", "Requests being answered.", (uint64_t)px->n_reqs);
    COUNTER("airlock_connections_total", "Client connections accepted.", m->conns_total);
    COUNTER("airlock_upstream_connections_total", "Upstream connections opened.",
            m->upstream_conns_total);
    COUNTER("airlock_upstream_connections_reused_total", "Requests sent on a pooled connection.",
            m->upstream_reused);
    GAUGE("airlock_audit_queue_depth", "Audit records written and waiting for their fdatasync.",
          (uint64_t)(px->audit ? audit_queue_depth(px->audit) : 0));
    GAUGE("airlock_audit_healthy", "1 while the audit log accepts writes.",
          (uint64_t)(px->audit ? audit_healthy(px->audit) : 0));
    COUNTER("airlock_audit_fsyncs_total",
            "fdatasync calls on the audit log (records per call: the group-commit factor).",
            px->audit ? audit_syncs(px->audit) : 0);
    evbuffer_add_printf(b, "# HELP airlock_egress_connects_total Forward-listener CONNECTs and "
                           "absolute-form requests by decision.\n"
                           "# TYPE airlock_egress_connects_total counter\n");
    evbuffer_add_printf(b, "airlock_egress_connects_total{decision=\"refuse\"} %llu\n",
                        (unsigned long long)px->egress.connects[0]);
    evbuffer_add_printf(b, "airlock_egress_connects_total{decision=\"intercept\"} %llu\n",
                        (unsigned long long)px->egress.connects[1]);
    evbuffer_add_printf(b, "airlock_egress_connects_total{decision=\"tunnel\"} %llu\n",
                        (unsigned long long)px->egress.connects[2]);
    GAUGE("airlock_egress_tunnels_open", "Tunnels resolving, connecting or open.",
          (uint64_t)px->egress.open_tunnels);
    evbuffer_add_printf(b, "# HELP airlock_egress_tunnel_bytes_total Bytes spliced through "
                           "tunnels, by direction.\n"
                           "# TYPE airlock_egress_tunnel_bytes_total counter\n");
    evbuffer_add_printf(b, "airlock_egress_tunnel_bytes_total{direction=\"up\"} %llu\n",
                        (unsigned long long)px->egress.tunnel_bytes_up);
    evbuffer_add_printf(b, "airlock_egress_tunnel_bytes_total{direction=\"down\"} %llu\n",
                        (unsigned long long)px->egress.tunnel_bytes_down);
    COUNTER("airlock_config_reloads_total", "Successful config reloads.", m->reloads_ok);
    COUNTER("airlock_config_reload_failures_total", "Rejected config reloads.", m->reloads_failed);
}

void proxy_metrics_deinit(struct proxy_metrics *m)
{
    while (m->requests) {
        struct proxy_metric_row *r = m->requests;
        m->requests = r->next;
        free(r->labels);
        free(r);
    }
}
