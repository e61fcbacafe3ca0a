/* exempt.c -- the `exempt` section: values a detector finds that are not what the
 * organisation guards (a client's own no-reply address, a vendor's documented example key),
 * so they are no findings at all: nothing fires, nothing is redacted.
 *
 *   exempt:
 *     - {detector: email, values: ["noreply@anthropic.com", "*@users.noreply.github.com"]}
 *
 * `detector` is a built-in or custom detector's name (not a group: an exemption is about one
 * kind of value). Each value is a glob (fnmatch(3), case-insensitive) matched against the
 * whole value as the detector found it. A glob must hold at least EXEMPT_MIN_LITERAL
 * characters other than '*', '?' and '[...]' sets: "*" or "*@*" would switch a detector
 * off, which is a rule's job, not an exemption's. */
#include <string.h>

#include "config/config_int.h"

#define EXEMPT_MIN_LITERAL 4
#define EXEMPT_MAX_VALUE 254

/* literal_chars -- how many characters of glob g match only themselves */
static size_t literal_chars(const char *g)
{
    size_t n = 0;

    for (const char *c = g; *c; c++) {
        if (*c == '*' || *c == '?')
            continue;
        if (*c == '[') { /* a set: skip to its end (a lone '[' is literal) */
            const char *e = strchr(c + 1 + (c[1] == ']'), ']');
            if (e) {
                c = e;
                continue;
            }
        }
        if (*c == '\\' && c[1])
            c++;
        n++;
    }
    return n;
}

static int check_detector(struct config_loader *l, yaml_node_t *v, void *entry)
{
    const struct config_exempt *x = entry;
    const struct config *cfg = l->cfg;

    if (config_detectors_builtin_find(x->detector) >= 0)
        return 0;
    for (size_t i = 0; i < cfg->n_detectors; i++)
        if (cfg->detectors[i].name && strcmp(cfg->detectors[i].name, x->detector) == 0)
            return 0;
    config_err(l, v, "exempt: unknown detector '%.40s' (a built-in or a custom detector's name)",
               x->detector);
    return -1;
}

static int check_values(struct config_loader *l, yaml_node_t *v, void *entry)
{
    const struct config_exempt *x = entry;
    int r = 0;

    for (size_t i = 0; i < x->n_values; i++) {
        const char *g = x->values[i];
        if (strlen(g) > EXEMPT_MAX_VALUE) {
            config_err(l, v, "exempt value '%.40s...' is longer than %d bytes", g,
                       EXEMPT_MAX_VALUE);
            r = -1;
        } else if (literal_chars(g) < EXEMPT_MIN_LITERAL) {
            config_err(l, v,
                       "exempt value '%.60s' matches too much: give at least %d characters "
                       "besides '*', '?' and [sets] (to stop a detector, write a rule)",
                       g, EXEMPT_MIN_LITERAL);
            r = -1;
        }
    }
    return r;
}

static const struct config_field exempt_fields[] = {
    {"detector", FIELD_NAME, .off = offsetof(struct config_exempt, detector), .required = 1,
     .check = check_detector},
    {"values", FIELD_LIST, .off = offsetof(struct config_exempt, values),
     .off_n = offsetof(struct config_exempt, n_values), .required = 1, .check = check_values},
    {.key = NULL},
};

static const struct config_table exempt_table = {.what = "exempt entry", .fields = exempt_fields};

static const struct config_list exempt_list = {
    .name = "exempt",
    .not_a_map = "each exempt entry must be a mapping {detector, values}",
    .size = sizeof(struct config_exempt),
    .pos_off = offsetof(struct config_exempt, pos),
    .table = &exempt_table,
};

void config_exempt_load(struct config_loader *l, yaml_node_t *sec)
{
    struct config *cfg = l->cfg;

    if (!sec)
        return;
    cfg->exempt = config_fields_alloc(l, sec, exempt_list.name, exempt_list.size);
    if (cfg->exempt)
        config_fields_list(l, sec, &exempt_list, cfg->exempt, &cfg->n_exempt);
}
