/* rules.c -- the `rules` section: an ordered list, first match wins. Each rule has
 * conditions (`if`, all must hold) and an action (`then`). Names in a rule must exist:
 * detectors (built-in, group or custom), keys (when there is a `keys` section), models
 * and providers, all read before this section. */
#include "config/config_int.h"

#include <string.h>

/* check_detectors -- every name in v[0..n) (read from node at) is a detector or a group. */
static int check_detectors(struct config_loader *l, yaml_node_t *at, char **v, size_t n)
{
    int r = 0;
    for (size_t i = 0; i < n; i++) {
        if (config_detectors_known(l->cfg, v[i]))
            continue;
        yaml_node_t *item = at;
        if (config_is_seq(at) && i < config_seq_len(at))
            item = config_node(l, at->data.sequence.items.start[i]);
        config_err(l, item,
                   "unknown detector '%.40s' (built-in: email, phone, credit_card, iban, us_ssn, "
                   "ipv4, private_key, ...; groups: pii, secrets; or a name from detectors)",
                   v[i]);
        r = -1;
    }
    return r;
}

/* check_unscanned -- the kinds of content the scanner cannot read that a request may still
 * carry (files and audio are refused outright: policy/extract.c) */
static int check_unscanned(struct config_loader *l, yaml_node_t *v, void *entry)
{
    struct config_rule *r = entry;
    for (size_t i = 0; i < r->n_unscanned; i++)
        if (strcmp(r->unscanned[i], "image") != 0) {
            config_err(l, v, "unscanned: unknown kind '%.40s' (known: image)", r->unscanned[i]);
            return -1;
        }
    return 0;
}

static int check_detected(struct config_loader *l, yaml_node_t *v, void *entry)
{
    struct config_rule *r = entry;
    return check_detectors(l, v, r->detected, r->n_detected);
}

/* check_keys -- key names must be in `keys`; without a `keys` section there is nothing
 * to check against (and no key a request could carry). */
static int check_keys(struct config_loader *l, yaml_node_t *v, void *entry)
{
    struct config *cfg = l->cfg;
    struct config_rule *r = entry;
    int bad = 0;
    if (!cfg->auth)
        return 0;
    for (size_t i = 0; i < r->n_keys; i++) {
        int found = 0;
        for (size_t j = 0; j < cfg->n_keys; j++)
            found |= cfg->keys[j].name && strcmp(cfg->keys[j].name, r->keys[i]) == 0;
        if (found)
            continue;
        config_err(l, config_is_seq(v) ? config_node(l, v->data.sequence.items.start[i]) : v,
                   "rule '%.40s': unknown key name '%.40s'", r->name ? r->name : "?", r->keys[i]);
        bad = 1;
    }
    return bad ? -1 : 0;
}

static int check_rule_name(struct config_loader *l, yaml_node_t *v, void *entry)
{
    struct config *cfg = l->cfg;
    struct config_rule *r = entry;
    for (size_t j = 0; j < cfg->n_rules; j++) {
        if (cfg->rules[j].name && strcmp(cfg->rules[j].name, r->name) == 0) {
            config_err(l, v, "duplicate rule name '%.40s' (first at line %d)", r->name,
                       cfg->rules[j].pos.line);
            return -1;
        }
    }
    return 0;
}

enum { F_ACTION }; /* its bit in `got` */

/* finish_then -- the keys each action takes: none for block and allow; route needs a
 * model (and may name its provider); redact needs detectors (and may route too). */
static void finish_then(struct config_loader *l, yaml_node_t *t, void *entry, uint32_t got)
{
    struct config *cfg = l->cfg;
    struct config_rule *r = entry;
    const char *rn = r->name ? r->name : "?";
    if (!(got & (1u << F_ACTION)))
        return; /* without an action, no telling which keys belong */
    yaml_node_t *pn = config_read_map_get(l, t, "provider"),
                *mn = config_read_map_get(l, t, "model"),
                *dn = config_read_map_get(l, t, "detectors");
    if (r->action == CONFIG_ACTION_BLOCK || r->action == CONFIG_ACTION_ALLOW) {
        yaml_node_t *extra = pn ? pn : mn ? mn : dn;
        if (extra)
            config_err(l, extra,
                       "rule '%.40s': provider, model and detectors are only used by "
                       "route and redact",
                       rn);
        return;
    }
    if (r->action == CONFIG_ACTION_ROUTE && dn)
        config_err(l, dn, "rule '%.40s': detectors is only used by redact", rn);
    if (r->action == CONFIG_ACTION_ROUTE && !mn)
        config_err(l, t, "rule '%.40s': route needs 'model' (a name from models)", rn);
    if (pn && (r->provider = config_read_name(l, pn, "provider")) &&
        !config_provider_find(cfg, r->provider))
        config_err(l, pn, "rule '%.40s': unknown provider '%.40s'", rn, r->provider);
    if (mn && (r->model = config_read_name(l, mn, "model"))) {
        const struct config_model *md = config_model_find(cfg, r->model);
        if (!md)
            config_err(l, mn, "rule '%.40s': unknown model '%.40s'", rn, r->model);
        else if (r->provider && md->provider && strcmp(md->provider, r->provider) != 0)
            config_err(l, pn,
                       "rule '%.40s': model '%.40s' is served by provider '%.40s', not '%.40s'", rn,
                       r->model, md->provider, r->provider);
    }
    if (r->action == CONFIG_ACTION_REDACT) {
        if (!dn)
            config_err(l, t, "rule '%.40s': redact needs 'detectors' (names or groups)", rn);
        else if (config_read_strv(l, dn, "detectors", &r->redact_detectors,
                                  &r->n_redact_detectors) == 0)
            check_detectors(l, dn, r->redact_detectors, r->n_redact_detectors);
    }
}

static const char *const zones[] = {"external", "internal", NULL}; /* enum config_zone's */
static const char *const actions[] = {"block", "route", "redact", "allow",
                                      NULL}; /* enum config_action's order */

static const struct config_field if_fields[] = {
    {"detected", FIELD_LIST, .off = offsetof(struct config_rule, detected),
     .off_n = offsetof(struct config_rule, n_detected), .check = check_detected},
    {"key", FIELD_LIST, .off = offsetof(struct config_rule, keys),
     .off_n = offsetof(struct config_rule, n_keys), .check = check_keys},
    {"team", FIELD_LIST, .off = offsetof(struct config_rule, teams),
     .off_n = offsetof(struct config_rule, n_teams)},
    {"model", FIELD_LIST, .off = offsetof(struct config_rule, models),
     .off_n = offsetof(struct config_rule, n_models)},
    {"zone", FIELD_ENUM, .off = offsetof(struct config_rule, zone), .names = zones,
     .dflt = CONFIG_ZONE_ANY},
    {"unscanned", FIELD_LIST, .off = offsetof(struct config_rule, unscanned),
     .off_n = offsetof(struct config_rule, n_unscanned), .check = check_unscanned},
    {.key = NULL},
};

static const struct config_table if_table = {.what = "if", .fields = if_fields};

static const struct config_field then_fields[] = {
    [F_ACTION] = {"action", FIELD_ENUM, .off = offsetof(struct config_rule, action), .required = 1,
                  .names = actions},
    {.key = "provider", .type = FIELD_NODE},
    {.key = "model", .type = FIELD_NODE},
    {.key = "detectors", .type = FIELD_NODE},
    {.key = NULL},
};

static const struct config_table then_table = {
    .what = "then",
    .entity = "rule",
    .name_off = offsetof(struct config_rule, name),
    .fields = then_fields,
    .finish = finish_then,
};

static const struct config_field rule_fields[] = {
    {"name", FIELD_NAME, .off = offsetof(struct config_rule, name), .required = 1,
     .check = check_rule_name},
    {"if", FIELD_MAP, .sub = &if_table, .hint = "of conditions"},
    {"then", FIELD_MAP, .required = 1, .sub = &then_table, .hint = "{action, ...}"},
    {.key = NULL},
};

static const struct config_table rule_table = {
    .what = "rule",
    .entity = "rule",
    .name_off = offsetof(struct config_rule, name),
    .fields = rule_fields,
};

static const struct config_list rules_list = {
    .name = "rules",
    .not_a_map = "each rules entry must be a mapping {name, if, then}",
    .size = sizeof(struct config_rule),
    .pos_off = offsetof(struct config_rule, pos),
    .table = &rule_table,
};

void config_rules_load(struct config_loader *l, yaml_node_t *sec)
{
    struct config *cfg = l->cfg;
    if (!sec)
        return;
    cfg->rules = config_fields_alloc(l, sec, rules_list.name, rules_list.size);
    if (cfg->rules)
        config_fields_list(l, sec, &rules_list, cfg->rules, &cfg->n_rules);
}
