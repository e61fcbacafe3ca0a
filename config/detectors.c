/* detectors.c -- detector names: the built-in detectors and their groups (one table,
 * used by config validation and by policy), and the `detectors` section, the custom
 * detectors a file adds (a regex, a keyword list, or a file of keywords). */
#include "config/config_int.h"

#include <stdlib.h>
#include <string.h>

const struct config_builtin config_detectors_builtin[CONFIG_DET_N_BUILTIN] = {
    [CONFIG_DET_PRIVATE_KEY] = {"private_key", CONFIG_GROUP_SECRETS},
    [CONFIG_DET_ANTHROPIC_KEY] = {"anthropic_key", CONFIG_GROUP_SECRETS},
    [CONFIG_DET_OPENAI_KEY] = {"openai_key", CONFIG_GROUP_SECRETS},
    [CONFIG_DET_GITHUB_TOKEN] = {"github_token", CONFIG_GROUP_SECRETS},
    [CONFIG_DET_AWS_ACCESS_KEY] = {"aws_access_key", CONFIG_GROUP_SECRETS},
    [CONFIG_DET_JWT] = {"jwt", CONFIG_GROUP_SECRETS},
    [CONFIG_DET_CREDENTIAL_URI] = {"credential_uri", CONFIG_GROUP_SECRETS},
    [CONFIG_DET_GENERIC_SECRET] = {"generic_secret", CONFIG_GROUP_SECRETS},
    [CONFIG_DET_IBAN] = {"iban", CONFIG_GROUP_PII},
    [CONFIG_DET_CREDIT_CARD] = {"credit_card", CONFIG_GROUP_PII},
    [CONFIG_DET_US_SSN] = {"us_ssn", CONFIG_GROUP_PII},
    [CONFIG_DET_EMAIL] = {"email", CONFIG_GROUP_PII},
    [CONFIG_DET_PHONE] = {"phone", CONFIG_GROUP_PII},
    [CONFIG_DET_IPV4] = {"ipv4", CONFIG_GROUP_NONE},
};

static const char *const group_names[] = {
    [CONFIG_GROUP_NONE] = NULL,
    [CONFIG_GROUP_PII] = "pii",
    [CONFIG_GROUP_SECRETS] = "secrets",
};

int config_detectors_builtin_find(const char *name)
{
    for (int i = 0; name && i < CONFIG_DET_N_BUILTIN; i++)
        if (strcmp(name, config_detectors_builtin[i].name) == 0)
            return i;
    return -1;
}

enum config_detector_group config_detectors_group(const char *name)
{
    for (size_t g = 1; name && g < sizeof group_names / sizeof *group_names; g++)
        if (strcmp(name, group_names[g]) == 0)
            return (enum config_detector_group)g;
    return CONFIG_GROUP_NONE;
}

int config_detectors_known(const struct config *cfg, const char *name)
{
    if (!name)
        return 0;
    if (config_detectors_builtin_find(name) >= 0 ||
        config_detectors_group(name) != CONFIG_GROUP_NONE)
        return 1;
    for (size_t i = 0; cfg && i < cfg->n_detectors; i++)
        if (cfg->detectors[i].name && strcmp(cfg->detectors[i].name, name) == 0)
            return 1;
    return 0;
}

/* --- the `detectors` section -------------------------------------------------------- */

/* load_keywords_file -- d->keywords from d->keywords_file: one a line, trimmed, blank
 * lines and '#' comments skipped, at least one. 0, or -1 (reported at n). */
static int load_keywords_file(struct config_loader *l, yaml_node_t *n, struct config_detector *d)
{
    char *buf = NULL, why[200];
    size_t len = 0;
    if (config_read_file(d->keywords_file, CONFIG_MAX_FILE, &buf, &len, why, sizeof why) != 0) {
        config_err(l, n, "keywords_file '%.120s': %s", d->keywords_file, why);
        return -1;
    }
    size_t lines = 1;
    for (size_t i = 0; i < len; i++)
        lines += buf[i] == '\n';
    d->keywords = calloc(lines, sizeof *d->keywords);
    if (!d->keywords) {
        free(buf);
        config_err(l, n, "out of memory");
        return -1;
    }
    char *save = NULL;
    for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        while (*line == ' ' || *line == '\t')
            line++;
        size_t ll = strlen(line);
        while (ll > 0 && (line[ll - 1] == ' ' || line[ll - 1] == '\t' || line[ll - 1] == '\r'))
            line[--ll] = '\0';
        if (ll == 0 || line[0] == '#')
            continue;
        if (!(d->keywords[d->n_keywords] = strdup(line))) {
            free(buf);
            config_err(l, n, "out of memory");
            return -1;
        }
        d->n_keywords++;
    }
    free(buf);
    if (d->n_keywords == 0) {
        config_err(l, n, "keywords_file '%.120s' has no keywords", d->keywords_file);
        return -1;
    }
    return 0;
}

/* check_name -- letters, digits, '_', '-'; not a built-in or group name (a rule naming
 * it would be ambiguous); not used twice. */
static int check_name(struct config_loader *l, yaml_node_t *v, void *entry)
{
    struct config *cfg = l->cfg;
    struct config_detector *d = entry;
    int bad = 0, r = -1;
    for (const char *c = d->name; *c; c++)
        bad |= !((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
                 *c == '_' || *c == '-');
    if (bad)
        config_err(l, v, "detector name '%.40s' may only contain letters, digits, '_', '-'",
                   d->name);
    else if (config_detectors_builtin_find(d->name) >= 0)
        config_err(l, v, "detector name '%.40s' is a built-in detector", d->name);
    else if (config_detectors_group(d->name) != CONFIG_GROUP_NONE)
        config_err(l, v, "detector name '%.40s' is a detector group", d->name);
    else
        r = 0;
    for (size_t j = 0; j < cfg->n_detectors; j++) {
        if (cfg->detectors[j].name && strcmp(cfg->detectors[j].name, d->name) == 0) {
            config_err(l, v, "duplicate detector name '%.40s' (first at line %d)", d->name,
                       cfg->detectors[j].pos.line);
            r = -1;
            break;
        }
    }
    return r;
}

/* finish_detector -- exactly one of regex, keywords, keywords_file, then that one. */
static void finish_detector(struct config_loader *l, yaml_node_t *m, void *entry, uint32_t got)
{
    struct config_detector *d = entry;
    yaml_node_t *rn = config_read_map_get(l, m, "regex"),
                *kn = config_read_map_get(l, m, "keywords"),
                *fn = config_read_map_get(l, m, "keywords_file");
    (void)got;
    if (!!rn + !!kn + !!fn != 1) {
        config_err(l, m, "detector '%.40s': give exactly one of regex, keywords, keywords_file",
                   d->name ? d->name : "?");
    } else if (rn) {
        d->regex = config_read_name(l, rn, "regex");
    } else if (kn) {
        config_read_strv(l, kn, "keywords", &d->keywords, &d->n_keywords);
    } else if ((d->keywords_file = config_read_path(l, fn, "keywords_file"))) {
        load_keywords_file(l, fn, d);
    }
}

static const struct config_field detector_fields[] = {
    {"name", FIELD_NAME, .off = offsetof(struct config_detector, name), .required = 1,
     .check = check_name},
    {.key = "regex", .type = FIELD_NODE},
    {.key = "keywords", .type = FIELD_NODE},
    {.key = "keywords_file", .type = FIELD_NODE},
    {.key = NULL},
};

static const struct config_table detector_table = {
    .what = "detectors entry", .fields = detector_fields, .finish = finish_detector};

static const struct config_list detectors_list = {
    .name = "detectors",
    .not_a_map = "each detectors entry must be a mapping {name, regex | keywords}",
    .size = sizeof(struct config_detector),
    .pos_off = offsetof(struct config_detector, pos),
    .table = &detector_table,
};

void config_detectors_load(struct config_loader *l, yaml_node_t *sec)
{
    struct config *cfg = l->cfg;
    if (!sec)
        return;
    cfg->detectors = config_fields_alloc(l, sec, detectors_list.name, detectors_list.size);
    if (cfg->detectors)
        config_fields_list(l, sec, &detectors_list, cfg->detectors, &cfg->n_detectors);
}
