/* models.c -- the `models` section: the model names clients may ask for, each served by
 * a provider from `providers` (read before this), with its prices. */
#include "config/config_int.h"

#include <stdlib.h>
#include <string.h>

static int check_provider(struct config_loader *l, yaml_node_t *v, void *entry)
{
    struct config *cfg = l->cfg;
    struct config_model *md = entry;
    const struct config_provider *p = config_provider_find(cfg, md->provider);
    if (!p) {
        config_err(l, v, "model '%.40s': unknown provider '%.40s'", md->name ? md->name : "?",
                   md->provider);
        return -1;
    }
    md->provider_index = (size_t)(p - cfg->providers);
    return 0;
}

/* finish_model -- upstream_model defaults to the name; no name used twice. */
static void finish_model(struct config_loader *l, yaml_node_t *m, void *entry, uint32_t got)
{
    struct config *cfg = l->cfg;
    struct config_model *md = entry;
    (void)got;
    if (!md->name)
        return;
    if (!config_read_map_get(l, m, "upstream_model") && !(md->upstream_model = strdup(md->name)))
        config_err(l, m, "out of memory");
    for (size_t j = 0; j < cfg->n_models; j++) {
        if (cfg->models[j].name && strcmp(cfg->models[j].name, md->name) == 0) {
            config_err(l, m, "duplicate model name '%.40s' (first at line %d)", md->name,
                       cfg->models[j].pos.line);
            break;
        }
    }
}

/* USD per million tokens */
static const struct config_field price_fields[] = {
    {"input_per_mtok", FIELD_NUMBER, .off = offsetof(struct config_model, input_per_mtok), .min = 0,
     .max = 1e9},
    {"output_per_mtok", FIELD_NUMBER, .off = offsetof(struct config_model, output_per_mtok),
     .min = 0, .max = 1e9},
    {"cached_input_per_mtok", FIELD_NUMBER,
     .off = offsetof(struct config_model, cached_input_per_mtok), .min = 0, .max = 1e9,
     .dflt = -1}, /* < 0: the input price */
    {.key = NULL},
};

static const struct config_table price_table = {.what = "price", .fields = price_fields};

static const struct config_field model_fields[] = {
    {"name", FIELD_NAME, .off = offsetof(struct config_model, name), .required = 1},
    {"provider", FIELD_NAME, .off = offsetof(struct config_model, provider), .required = 1,
     .check = check_provider},
    {"upstream_model", FIELD_NAME, .off = offsetof(struct config_model, upstream_model)},
    {"price", FIELD_MAP, .sub = &price_table, .hint = "{input_per_mtok, output_per_mtok}"},
    {.key = NULL},
};

static const struct config_table model_table = {
    .what = "models entry", .fields = model_fields, .finish = finish_model};

static const struct config_list models_list = {
    .name = "models",
    .not_a_map = "each models entry must be a mapping {name, provider, ...}",
    .size = sizeof(struct config_model),
    .pos_off = offsetof(struct config_model, pos),
    .table = &model_table,
};

void config_models_load(struct config_loader *l, yaml_node_t *sec)
{
    struct config *cfg = l->cfg;
    if (!sec)
        return;
    cfg->models = config_fields_alloc(l, sec, models_list.name, models_list.size);
    if (cfg->models)
        config_fields_list(l, sec, &models_list, cfg->models, &cfg->n_models);
}
