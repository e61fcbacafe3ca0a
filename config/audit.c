/* audit.c -- the `audit` section: where the signed audit log lives, who it is sealed
 * to, how often it is synced, and what a request meets when it cannot be written.
 * Absent, there is no audit log. */
#include "config/config_int.h"

static const char *const syncs[] = {"batch", "always", "none", NULL}; /* enum config_sync's */
static const char *const on_failures[] = {"refuse", "allow", NULL};   /* enum config_on_failure's */

static const struct config_field audit_fields[] = {
    {"dir", FIELD_PATH, .off = offsetof(struct config_audit, dir), .required = 1},
    {"signing_key", FIELD_PATH, .off = offsetof(struct config_audit, signing_key)},
    {"seal_to", FIELD_FILE, .off = offsetof(struct config_audit, seal_to)},
    {"sync", FIELD_ENUM, .off = offsetof(struct config_audit, sync), .names = syncs,
     .dflt = CONFIG_SYNC_BATCH},
    {"on_failure", FIELD_ENUM, .off = offsetof(struct config_audit, on_failure),
     .names = on_failures, .dflt = CONFIG_ON_FAILURE_REFUSE},
    {.key = NULL},
};

static const struct config_table audit_table = {.what = "audit", .fields = audit_fields};

void config_audit_load(struct config_loader *l, yaml_node_t *sec)
{
    struct config_audit *a = &l->cfg->audit;
    config_fields_defaults(&audit_table, a);
    if (!sec)
        return;
    if (!config_is_map(sec)) {
        config_err(l, sec, "audit must be a mapping {dir, ...}");
        return;
    }
    a->pos = config_pos_of(sec);
    config_fields_read(l, sec, &audit_table, a);
}
