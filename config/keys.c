/* keys.c -- the `keys` section: the virtual API keys clients present. Only each key's
 * SHA-256 is kept; the plaintext is wiped from every buffer it passed through. A file
 * with a `keys` section has authentication on, even when the list is empty. */
#include "config/config_int.h"

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

static int hex_decode32(const char *s, uint8_t out[32])
{
    if (strlen(s) != 64)
        return -1;
    for (size_t i = 0; i < 32; i++) {
        int v = 0;
        for (int j = 0; j < 2; j++) {
            char c = s[2 * i + (size_t)j];
            int d = (c >= '0' && c <= '9')   ? c - '0'
                    : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                    : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                                             : -1;
            if (d < 0)
                return -1;
            v = v * 16 + d;
        }
        out[i] = (uint8_t)v;
    }
    return 0;
}

/* read_hash -- the entry's SHA-256 from exactly one of `key` (hashed here) and
 * `key_sha256`. 0, or -1 (reported). */
static int read_hash(struct config_loader *l, yaml_node_t *m, struct config_key *k)
{
    yaml_node_t *pn = config_read_map_get(l, m, "key"),
                *hn = config_read_map_get(l, m, "key_sha256");
    int r = -1;
    if (pn && hn) {
        config_err(l, m, "keys entry: give either key or key_sha256, not both");
    } else if (!pn && !hn) {
        config_err(l, m, "keys entry: missing required field 'key' or 'key_sha256'");
    } else if (pn) {
        char *plain = config_read_name(l, pn, "key");
        if (plain) {
            crypto_hash_sha256(k->key_sha256, (const unsigned char *)plain, strlen(plain));
            sodium_memzero(plain, strlen(plain));
            free(plain);
            r = 0;
        }
        /* the plaintext also sits in the parsed document */
        if (config_is_scalar(pn))
            sodium_memzero(pn->data.scalar.value, pn->data.scalar.length);
    } else {
        char *hex = config_read_str(l, hn, "key_sha256");
        if (hex && hex_decode32(hex, k->key_sha256) != 0)
            config_err(l, hn, "key_sha256 must be 64 hex characters (the SHA-256 of the key)");
        else if (hex)
            r = 0;
        free(hex);
    }
    return r;
}

/* finish_key -- the key itself, then no name or key used twice. */
static void finish_key(struct config_loader *l, yaml_node_t *m, void *entry, uint32_t got)
{
    struct config *cfg = l->cfg;
    struct config_key *k = entry;
    int have_hash = read_hash(l, m, k) == 0;
    (void)got;
    if (k->name) {
        for (size_t j = 0; j < cfg->n_keys; j++) {
            if (cfg->keys[j].name && strcmp(cfg->keys[j].name, k->name) == 0) {
                config_err(l, m, "duplicate key name '%.40s' (first at line %d)", k->name,
                           cfg->keys[j].pos.line);
                break;
            }
        }
    }
    if (have_hash) {
        for (size_t j = 0; j < cfg->n_keys; j++) {
            if (sodium_memcmp(cfg->keys[j].key_sha256, k->key_sha256, 32) == 0) {
                config_err(l, m, "keys entry has the same key as '%.40s'",
                           cfg->keys[j].name ? cfg->keys[j].name : "?");
                break;
            }
        }
    }
}

static const struct config_field key_fields[] = {
    {"name", FIELD_NAME, .off = offsetof(struct config_key, name), .required = 1},
    {"team", FIELD_NAME, .off = offsetof(struct config_key, team)},
    {.key = "key", .type = FIELD_NODE},
    {.key = "key_sha256", .type = FIELD_NODE},
    {"budget_usd_per_day", FIELD_NUMBER, .off = offsetof(struct config_key, budget_usd_per_day),
     .min = 0, .max = 1e12, .dflt = -1},
    {.key = NULL},
};

static const struct config_table key_table = {
    .what = "keys entry", .fields = key_fields, .finish = finish_key};

static const struct config_list keys_list = {
    .name = "keys",
    .not_a_map = "each keys entry must be a mapping {name, team, key | key_sha256}",
    .size = sizeof(struct config_key),
    .pos_off = offsetof(struct config_key, pos),
    .table = &key_table,
};

void config_keys_load(struct config_loader *l, yaml_node_t *sec)
{
    struct config *cfg = l->cfg;
    if (!sec)
        return;
    cfg->auth = 1;
    cfg->keys = config_fields_alloc(l, sec, keys_list.name, keys_list.size);
    if (cfg->keys)
        config_fields_list(l, sec, &keys_list, cfg->keys, &cfg->n_keys);
}
