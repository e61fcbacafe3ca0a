/* teams.c -- the `teams` section: daily budgets shared by all the keys of a team (keys
 * name their team with `team`). */
#include "config/config_int.h"

#include <string.h>

static void finish_team(struct config_loader *l, yaml_node_t *m, void *entry, uint32_t got)
{
    struct config *cfg = l->cfg;
    struct config_team *t = entry;
    (void)got;
    if (!t->name)
        return;
    for (size_t j = 0; j < cfg->n_teams; j++) {
        if (cfg->teams[j].name && strcmp(cfg->teams[j].name, t->name) == 0) {
            config_err(l, m, "duplicate team name '%.40s' (first at line %d)", t->name,
                       cfg->teams[j].pos.line);
            break;
        }
    }
}

static const struct config_field team_fields[] = {
    {"name", FIELD_NAME, .off = offsetof(struct config_team, name), .required = 1},
    {"budget_usd_per_day", FIELD_NUMBER, .off = offsetof(struct config_team, budget_usd_per_day),
     .min = 0, .max = 1e12, .dflt = -1},
    {.key = NULL},
};

static const struct config_table team_table = {
    .what = "teams entry", .fields = team_fields, .finish = finish_team};

static const struct config_list teams_list = {
    .name = "teams",
    .not_a_map = "each teams entry must be a mapping {name, budget_usd_per_day}",
    .size = sizeof(struct config_team),
    .pos_off = offsetof(struct config_team, pos),
    .table = &team_table,
};

void config_teams_load(struct config_loader *l, yaml_node_t *sec)
{
    struct config *cfg = l->cfg;
    if (!sec)
        return;
    cfg->teams = config_fields_alloc(l, sec, teams_list.name, teams_list.size);
    if (cfg->teams)
        config_fields_list(l, sec, &teams_list, cfg->teams, &cfg->n_teams);
}
