/* limits.c -- the `limits` section: sizes and timeouts, each with its range and its
 * default in one table. */
#include "config/config_int.h"

static const struct config_field limits_fields[] = {
    {"max_body_bytes", FIELD_SIZE, .off = offsetof(struct config_limits, max_body_bytes), .min = 1,
     .max = 1 << 30, .dflt = 4194304},
    {"max_header_bytes", FIELD_SIZE, .off = offsetof(struct config_limits, max_header_bytes),
     .min = 1024, .max = 1 << 20, .dflt = 32768},
    {"max_connections", FIELD_INT, .off = offsetof(struct config_limits, max_connections), .min = 1,
     .max = 1000000, .dflt = 4096},
    {"header_timeout_ms", FIELD_INT, .off = offsetof(struct config_limits, header_timeout_ms),
     .min = 1, .max = 86400000, .dflt = 10000},
    {"body_timeout_ms", FIELD_INT, .off = offsetof(struct config_limits, body_timeout_ms), .min = 1,
     .max = 86400000, .dflt = 30000},
    {"idle_timeout_ms", FIELD_INT, .off = offsetof(struct config_limits, idle_timeout_ms), .min = 1,
     .max = 86400000, .dflt = 60000},
    {"upstream_timeout_ms", FIELD_INT, .off = offsetof(struct config_limits, upstream_timeout_ms),
     .min = 1, .max = 86400000, .dflt = 120000},
    {"engine_queue", FIELD_INT, .off = offsetof(struct config_limits, engine_queue), .min = 1,
     .max = 100000, .dflt = 64}, /* builtin requests waiting */
    /* what deciding a body costs grows with its values, whatever their size: the cap keeps
     * the event loop's time for one request to milliseconds (docs/security.md) */
    {"max_body_values", FIELD_INT, .off = offsetof(struct config_limits, max_body_values), .min = 1,
     .max = 10000000, .dflt = 100000},
    {.key = NULL},
};

static const struct config_table limits_table = {.what = "limits", .fields = limits_fields};

void config_limits_load(struct config_loader *l, yaml_node_t *sec)
{
    config_fields_defaults(&limits_table, &l->cfg->limits);
    if (!sec)
        return;
    if (!config_is_map(sec)) {
        config_err(l, sec, "limits must be a mapping");
        return;
    }
    config_fields_read(l, sec, &limits_table, &l->cfg->limits);
}
