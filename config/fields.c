/* fields.c -- the table-driven reader: a mapping, or a list of mappings, read with one
 * `struct config_field` per key.
 *
 * For each mapping: unknown and duplicate keys are reported at the key, a missing
 * required key at the mapping, a value of the wrong type or out of range at the value;
 * each value read is stored at its field's offset in the entry; then the table's finish
 * does what no single key can. Nothing here knows a section: the sections' files hold
 * the tables (listen.c, keys.c, ...). */
#include "config/config_int.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ENUM fields are stored through an int: every enum a table fills must be int-sized. */
_Static_assert(sizeof(enum config_zone) == sizeof(int), "zone is not int-sized");
_Static_assert(sizeof(enum config_action) == sizeof(int), "action is not int-sized");
_Static_assert(sizeof(enum config_provider_type) == sizeof(int), "type is not int-sized");
_Static_assert(sizeof(enum config_sync) == sizeof(int), "sync is not int-sized");
_Static_assert(sizeof(enum config_on_failure) == sizeof(int), "on_failure is not int-sized");

#define FIELDS_MAX 32 /* the bits of `got` */

static void *at(void *entry, size_t off)
{
    return (char *)entry + off;
}

void config_fields_defaults(const struct config_table *t, void *entry)
{
    for (const struct config_field *f = t->fields; f->key; f++) {
        switch (f->type) {
        case FIELD_INT:
        case FIELD_ENUM:
            *(int *)at(entry, f->off) = (int)f->dflt;
            break;
        case FIELD_SIZE:
            *(size_t *)at(entry, f->off) = (size_t)f->dflt;
            break;
        case FIELD_NUMBER:
            *(double *)at(entry, f->off) = f->dflt;
            break;
        case FIELD_MAP:
            config_fields_defaults(f->sub, entry);
            break;
        default:
            break;
        }
    }
}

/* who -- how problems about key f of entry name it: "rule 'x'" for an entity, the
 * table's `what` otherwise, and for the entity's own `name`. */
static const char *who(const struct config_table *t, const struct config_field *f,
                       const void *entry, char *buf, size_t cap)
{
    if (!t->entity || strcmp(f->key, "name") == 0)
        return t->what;
    const char *name = *(char *const *)((const char *)entry + t->name_off);
    snprintf(buf, cap, "%s '%.40s'", t->entity, name ? name : "?");
    return buf;
}

/* read_field -- value v of field f into entry. 0, or -1 (reported). */
static int read_field(struct config_loader *l, const struct config_table *t,
                      const struct config_field *f, yaml_node_t *v, void *entry)
{
    long long i;
    char *s;
    int e;

    switch (f->type) {
    case FIELD_NAME:
    case FIELD_PATH:
    case FIELD_FILE:
        s = f->type == FIELD_NAME ? config_read_name(l, v, f->key) : config_read_path(l, v, f->key);
        if (!s)
            return -1;
        *(char **)at(entry, f->off) = s;
        if (f->type == FIELD_FILE)
            config_read_readable(l, v, f->hint ? f->hint : f->key, s);
        return 0;
    case FIELD_INT:
    case FIELD_SIZE:
        if (config_read_int(l, v, f->key, (long long)f->min, (long long)f->max, &i) != 0)
            return -1;
        if (f->type == FIELD_INT)
            *(int *)at(entry, f->off) = (int)i;
        else
            *(size_t *)at(entry, f->off) = (size_t)i;
        return 0;
    case FIELD_NUMBER:
        return config_read_number(l, v, f->key, f->min, f->max, at(entry, f->off));
    case FIELD_ENUM:
        e = config_read_enum(l, v, f->key, f->names);
        if (e < 0)
            return -1;
        *(int *)at(entry, f->off) = e;
        return 0;
    case FIELD_LIST:
        return config_read_strv(l, v, f->key, at(entry, f->off), at(entry, f->off_n));
    case FIELD_MAP:
        if (!config_is_map(v)) {
            char buf[80];
            const char *w = who(t, f, entry, buf, sizeof buf), *h = f->hint ? f->hint : "";
            if (t->entity)
                config_err(l, v, "%s: %s must be a mapping%s%s", w, f->key, *h ? " " : "", h);
            else
                config_err(l, v, "%s must be a mapping%s%s", f->key, *h ? " " : "", h);
            return -1;
        }
        config_fields_read(l, v, f->sub, entry);
        return 0;
    case FIELD_NODE:
        return 0;
    }
    return -1;
}

uint32_t config_fields_read(struct config_loader *l, yaml_node_t *m, const struct config_table *t,
                            void *entry)
{
    const char *allowed[FIELDS_MAX + 1];
    uint32_t got = 0;
    size_t n = 0;

    for (; t->fields[n].key; n++) {
        assert(n < FIELDS_MAX);
        allowed[n] = t->fields[n].key;
    }
    allowed[n] = NULL;
    config_read_map_check(l, m, t->what, allowed);
    for (size_t i = 0; i < n; i++) {
        const struct config_field *f = &t->fields[i];
        yaml_node_t *v = config_read_map_get(l, m, f->key);
        if (!v) {
            if (f->required) {
                char buf[80];
                config_err(l, m, "%s: missing required field '%s'",
                           who(t, f, entry, buf, sizeof buf), f->key);
            }
            continue;
        }
        if (read_field(l, t, f, v, entry) != 0)
            continue;
        if (f->check && f->check(l, v, entry) != 0)
            continue;
        got |= (uint32_t)1 << i;
    }
    if (t->finish)
        t->finish(l, m, entry, got);
    return got;
}

void *config_fields_alloc(struct config_loader *l, yaml_node_t *sec, const char *name, size_t size)
{
    void *v;

    if (!config_is_seq(sec)) {
        config_err(l, sec, "%s must be a list", name);
        return NULL;
    }
    v = calloc(config_seq_len(sec) ? config_seq_len(sec) : 1, size);
    if (!v)
        config_err(l, sec, "out of memory");
    return v;
}

void config_fields_list(struct config_loader *l, yaml_node_t *sec, const struct config_list *d,
                        void *items, size_t *n)
{
    for (yaml_node_item_t *it = sec->data.sequence.items.start; it < sec->data.sequence.items.top;
         it++) {
        yaml_node_t *m = config_node(l, *it);
        if (!config_is_map(m)) {
            config_err(l, m, "%s", d->not_a_map);
            continue;
        }
        void *entry = at(items, *n * d->size);
        *(struct config_pos *)at(entry, d->pos_off) = config_pos_of(m);
        config_fields_defaults(d->table, entry);
        config_fields_read(l, m, d->table, entry);
        (*n)++;
    }
}
