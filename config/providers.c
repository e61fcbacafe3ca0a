/* providers.c -- the `providers` section: a mapping of name -> upstream (openai,
 * anthropic, openai-compatible) or builtin (the local engine). Which keys a provider
 * may have depends on its type, so the table takes the keys every type has and the
 * finish reads the rest. An api_key is kept in sodium_malloc'd memory and wiped from
 * every buffer it passed through. */
#include "config/config_int.h"

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

/* parse_base_url -- http(s)://host[:port][/path] into p's fields. 0 or -1. */
static int parse_base_url(struct config_provider *p)
{
    const char *u = p->base_url, *rest;
    if (strncmp(u, "https://", 8) == 0) {
        p->tls = 1;
        p->port = 443;
        rest = u + 8;
    } else if (strncmp(u, "http://", 7) == 0) {
        p->tls = 0;
        p->port = 80;
        rest = u + 7;
    } else {
        return -1;
    }
    for (const char *c = rest; *c; c++)
        if (*c <= ' ' || *c == '?' || *c == '#' || *c == '@' || *c == '\\' || *c == 0x7f)
            return -1;
    const char *hs = rest, *he, *after;
    if (*rest == '[') {
        const char *rb = strchr(rest, ']');
        if (!rb)
            return -1;
        hs = rest + 1;
        he = rb;
        after = rb + 1;
    } else {
        he = rest + strcspn(rest, ":/");
        after = he;
    }
    if (he == hs)
        return -1;
    if (*after == ':') {
        size_t plen = strcspn(after + 1, "/");
        int port = config_read_port(after + 1, plen);
        if (port < 0)
            return -1;
        p->port = port;
        after += 1 + plen;
    } else if (*after != '/' && *after != '\0') {
        return -1;
    }
    p->host = strndup(hs, (size_t)(he - hs));
    size_t plen = strlen(after);
    while (plen > 0 && after[plen - 1] == '/')
        plen--;
    p->path_prefix = strndup(after, plen);
    return p->host && p->path_prefix ? 0 : -1;
}

static int valid_ident(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || *s == '-' || *s == '.'))
            return 0;
    return 1;
}

static void opt_int(struct config_loader *l, yaml_node_t *m, const char *key, long long min,
                    long long max, int *out)
{
    yaml_node_t *v = config_read_map_get(l, m, key);
    long long x;
    if (v && config_read_int(l, v, key, min, max, &x) == 0)
        *out = (int)x;
}

static void finish_builtin(struct config_loader *l, yaml_node_t *m, struct config_provider *p,
                           int zone_given)
{
    const char *pname = p->name;
    yaml_node_t *x;

    if (zone_given && p->zone == CONFIG_ZONE_EXTERNAL)
        config_err(l, config_read_map_get(l, m, "zone"),
                   "provider '%.40s': a builtin provider is always zone internal", pname);
    p->zone = CONFIG_ZONE_INTERNAL;
    static const char *const upstream_only[] = {"base_url", "api_key", "ca_file", NULL};
    for (size_t i = 0; upstream_only[i]; i++)
        if ((x = config_read_map_get(l, m, upstream_only[i])))
            config_err(l, x, "provider '%.40s': %s is not used by a builtin provider", pname,
                       upstream_only[i]);
    if (!(x = config_read_map_get(l, m, "model")))
        config_err(l, m, "provider '%.40s': a builtin provider needs 'model: FILE.gguf'", pname);
    else
        p->model_path = config_read_path(l, x, "model");
    opt_int(l, m, "threads", 0, 1024, &p->threads);
    opt_int(l, m, "context", 0, 1 << 20, &p->context);
    opt_int(l, m, "max_tokens", 0, 1 << 20, &p->max_tokens);
}

static void finish_upstream(struct config_loader *l, yaml_node_t *m, struct config_provider *p)
{
    static const char *const builtin_only[] = {"model", "threads", "context", "max_tokens", NULL};
    const char *pname = p->name;
    yaml_node_t *x;

    for (size_t i = 0; builtin_only[i]; i++)
        if ((x = config_read_map_get(l, m, builtin_only[i])))
            config_err(l, x, "provider '%.40s': %s is only used by a builtin provider", pname,
                       builtin_only[i]);
    if (!(x = config_read_map_get(l, m, "base_url")))
        config_err(l, m, "provider '%.40s': missing required field 'base_url'", pname);
    else if ((p->base_url = config_read_str(l, x, "base_url")) && parse_base_url(p) != 0)
        config_err(l, x, "base_url '%.80s' must be http(s)://HOST[:PORT][/PATH]", p->base_url);
    if ((x = config_read_map_get(l, m, "api_key"))) {
        char *key = config_read_str(l, x, "api_key");
        if (key) {
            size_t klen = strlen(key);
            p->api_key = sodium_malloc(klen + 1);
            if (p->api_key)
                memcpy(p->api_key, key, klen + 1);
            else
                config_err(l, x, "out of memory");
            sodium_memzero(key, klen);
            free(key);
        }
        /* the plaintext also sits in the parsed document */
        if (config_is_scalar(x))
            sodium_memzero(x->data.scalar.value, x->data.scalar.length);
    }
    if ((x = config_read_map_get(l, m, "ca_file"))) {
        p->ca_file = config_read_path(l, x, "ca_file");
        if (p->ca_file)
            config_read_readable(l, x, "ca_file", p->ca_file);
    }
}

enum { F_TYPE, F_ZONE }; /* their bits in `got` */

static void finish_provider(struct config_loader *l, yaml_node_t *m, void *entry, uint32_t got)
{
    struct config_provider *p = entry;
    if (!(got & (1u << F_TYPE)))
        return; /* without a type, no telling which keys belong */
    if (p->type == CONFIG_PROVIDER_BUILTIN)
        finish_builtin(l, m, p, (got & (1u << F_ZONE)) != 0);
    else
        finish_upstream(l, m, p);
}

static const char *const provider_types[] = {"openai", "anthropic", "openai-compatible", "builtin",
                                             NULL}; /* enum config_provider_type's order */
static const char *const zones[] = {"external", "internal", NULL}; /* enum config_zone's */

static const struct config_field provider_fields[] = {
    [F_TYPE] = {"type", FIELD_ENUM, .off = offsetof(struct config_provider, type), .required = 1,
                .names = provider_types},
    [F_ZONE] = {"zone", FIELD_ENUM, .off = offsetof(struct config_provider, zone), .names = zones,
                .dflt = CONFIG_ZONE_EXTERNAL},
    {.key = "base_url", .type = FIELD_NODE},
    {.key = "api_key", .type = FIELD_NODE},
    {.key = "ca_file", .type = FIELD_NODE},
    {"timeout_ms", FIELD_INT, .off = offsetof(struct config_provider, timeout_ms), .min = 1,
     .max = 3600000},
    {.key = "model", .type = FIELD_NODE},
    {.key = "threads", .type = FIELD_NODE},
    {.key = "context", .type = FIELD_NODE},
    {.key = "max_tokens", .type = FIELD_NODE},
    {.key = NULL},
};

static const struct config_table provider_table = {
    .what = "provider",
    .entity = "provider",
    .name_off = offsetof(struct config_provider, name),
    .fields = provider_fields,
    .finish = finish_provider,
};

void config_providers_load(struct config_loader *l, yaml_node_t *sec)
{
    struct config *cfg = l->cfg;
    if (!sec)
        return;
    if (!config_is_map(sec)) {
        config_err(l, sec, "providers must be a mapping of name -> {type, ...}");
        return;
    }
    config_read_map_check(l, sec, "providers", NULL);
    size_t cnt = (size_t)(sec->data.mapping.pairs.top - sec->data.mapping.pairs.start);
    cfg->providers = calloc(cnt ? cnt : 1, sizeof *cfg->providers);
    if (!cfg->providers) {
        config_err(l, sec, "out of memory");
        return;
    }
    for (yaml_node_pair_t *pr = sec->data.mapping.pairs.start; pr < sec->data.mapping.pairs.top;
         pr++) {
        yaml_node_t *kn = config_node(l, pr->key), *m = config_node(l, pr->value);
        if (!config_is_scalar(kn))
            continue; /* reported by config_read_map_check */
        const char *pname = (const char *)kn->data.scalar.value;
        if (config_provider_find(cfg, pname))
            continue; /* a duplicate: reported by config_read_map_check */
        if (!valid_ident(pname)) {
            config_err(l, kn,
                       "provider name '%.40s' may only contain letters, digits, '_', '-', '.'",
                       pname);
            continue;
        }
        if (!config_is_map(m)) {
            config_err(l, m ? m : kn, "provider '%.40s' must be a mapping {type, ...}", pname);
            continue;
        }
        struct config_provider *p = &cfg->providers[cfg->n_providers];
        p->name = strdup(pname);
        if (!p->name) {
            config_err(l, kn, "out of memory");
            continue;
        }
        cfg->n_providers++;
        p->pos = config_pos_of(kn);
        config_fields_defaults(&provider_table, p);
        config_fields_read(l, m, &provider_table, p);
    }
}
