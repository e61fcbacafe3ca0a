/* config_int.h -- internals shared by the config sources; never included outside config/.
 *
 * Loading keeps one `struct config_loader` for the whole file: the parsed YAML document,
 * the snapshot being filled and the problems found so far. A problem never stops
 * loading: it is recorded with config_err (at the YAML node it is about) and reading
 * goes on, so one run reports every problem it can.
 *
 * Most of the file is read by tables (fields.c): one `struct config_field` per key a
 * mapping may hold, saying its type, where its value goes and whether it is required.
 * A table rejects unknown and duplicate keys, reports missing and mistyped values with
 * their position, fills the entry, then calls the section's `finish` for whatever one
 * key cannot say alone (exactly one of two keys, duplicates across entries,
 * references to other sections). Each section has its file: listen.c, keys.c, teams.c,
 * providers.c, models.c, detectors.c, rules.c, audit.c, limits.c, egress.c.
 *
 * Ownership: every string a reader returns is malloc'd and owned by the caller; once
 * stored in the snapshot it is released by config_unref (config.c). */
#ifndef AIRLOCK_CONFIG_INT_H
#define AIRLOCK_CONFIG_INT_H

#include <stddef.h>
#include <stdint.h>

#include <yaml.h>

#include "config/config.h"

#define CONFIG_MAX_FILE (16u * 1024 * 1024)

struct config_loader {
    yaml_document_t doc;
    struct config_errors *errs;
    struct config *cfg;
    const char *basedir; /* NULL or "": paths stay as written */
};

/* --- problems (config.c) ---------------------------------------------------------- */

/* config_err -- record a problem at node n (NULL: no position). Past CONFIG_MAX_ERRORS
 * problems are only counted. */
void config_err(struct config_loader *l, const yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void config_err_pos(struct config_loader *l, struct config_pos pos, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* --- nodes ------------------------------------------------------------------------ */

static inline yaml_node_t *config_node(struct config_loader *l, int id)
{
    return yaml_document_get_node(&l->doc, id);
}

static inline int config_is_map(const yaml_node_t *n)
{
    return n && n->type == YAML_MAPPING_NODE;
}

static inline int config_is_seq(const yaml_node_t *n)
{
    return n && n->type == YAML_SEQUENCE_NODE;
}

static inline int config_is_scalar(const yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE;
}

static inline size_t config_seq_len(const yaml_node_t *n)
{
    return (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
}

static inline struct config_pos config_pos_of(const yaml_node_t *n)
{
    struct config_pos p = {0, 0};
    if (n) {
        p.line = (int)n->start_mark.line + 1;
        p.col = (int)n->start_mark.column + 1;
    }
    return p;
}

/* --- reading values (read.c) -------------------------------------------------------
 * `what` names the value in messages ("timeout_ms must be an integer, not '5s'"). Every
 * reader reports its own problem at n and returns NULL or -1. Strings have ${NAME}
 * replaced from the environment. */

/* config_read_map_check -- every key of mapping m is a scalar, in `allowed` (a NULL-ended
 * list; NULL: any name) and not repeated. `what` names the mapping: "in listen entry". */
void config_read_map_check(struct config_loader *l, yaml_node_t *m, const char *what,
                           const char *const *allowed);
/* config_read_map_get -- the value of `key` in mapping m, NULL when absent. */
yaml_node_t *config_read_map_get(struct config_loader *l, yaml_node_t *m, const char *key);

char *config_read_str(struct config_loader *l, yaml_node_t *n, const char *what);
/* config_read_name -- a string that must not be empty. */
char *config_read_name(struct config_loader *l, yaml_node_t *n, const char *what);
/* config_read_path -- a name, as a path resolved against the config file's directory. */
char *config_read_path(struct config_loader *l, yaml_node_t *n, const char *what);
/* config_read_readable -- report (at n) when `path` cannot be read now. */
void config_read_readable(struct config_loader *l, yaml_node_t *n, const char *what,
                          const char *path);
int config_read_int(struct config_loader *l, yaml_node_t *n, const char *what, long long min,
                    long long max, long long *out);
int config_read_number(struct config_loader *l, yaml_node_t *n, const char *what, double min,
                       double max, double *out);
/* config_read_enum -- the index of n's value in the NULL-ended `names`, or -1. */
int config_read_enum(struct config_loader *l, yaml_node_t *n, const char *what,
                     const char *const *names);
/* config_read_strv -- one string or a non-empty list of them, as a new vector. */
int config_read_strv(struct config_loader *l, yaml_node_t *n, const char *what, char ***out,
                     size_t *nout);
void config_read_strv_free(char **v, size_t n);
/* config_read_port -- s[0..len) as a port, "1".."65535" and nothing else; -1 otherwise. */
int config_read_port(const char *s, size_t len);
/* config_read_file -- the whole regular file at path, at most `cap` bytes, NUL-terminated,
 * owned by the caller. 0, or -1 with a reason in why. */
int config_read_file(const char *path, size_t cap, char **out, size_t *len, char *why,
                     size_t whycap);

/* --- tables (fields.c) ------------------------------------------------------------ */

/* A table row gives its key and type first, the rest by name:
 *     {"max_connections", FIELD_INT, .off = offsetof(struct config_limits, max_connections),
 *      .min = 1, .max = 1000000, .dflt = 4096},
 * A row that stores nothing (NODE) names its members: {.key = "regex", .type = FIELD_NODE}. */
enum config_field_type {
    FIELD_NAME,   /* non-empty string -> char * */
    FIELD_PATH,   /* non-empty string, resolved against the file's directory -> char * */
    FIELD_FILE,   /* a PATH that must be readable now -> char * */
    FIELD_INT,    /* integer in [min, max] -> int */
    FIELD_SIZE,   /* integer in [min, max] -> size_t */
    FIELD_NUMBER, /* number in [min, max] -> double */
    FIELD_ENUM,   /* one of `names` -> its index, into an int-sized enum */
    FIELD_LIST,   /* a string or a non-empty list of strings -> char ** at off, the
                     count (size_t) at off_n */
    FIELD_MAP,    /* a mapping read with table `sub` into the same entry */
    FIELD_NODE,   /* allowed here, read by the table's finish: what it means depends on
                     another key */
};

struct config_loader;
struct config_table;

struct config_field {
    const char *key;
    enum config_field_type type;
    size_t off; /* where the value goes in the entry */
    int required;
    double min, max;                /* INT, SIZE, NUMBER */
    double dflt;                    /* INT, SIZE, NUMBER, ENUM: set before reading */
    const char *const *names;       /* ENUM: NULL-ended, index = the enum's value */
    size_t off_n;                   /* LIST: where the count goes */
    const struct config_table *sub; /* MAP */
    const char *hint;               /* MAP: after "KEY must be a mapping "; FILE: the name in
                                       "tls cert 'x' cannot be read" (default: key) */
    /* after a value is read and stored: further checks (a name's characters, a reference
     * to another section); 0, or -1 with the problem reported */
    int (*check)(struct config_loader *l, yaml_node_t *v, void *entry);
};

/* got: bit i set when fields[i] was present and read without a problem. */
typedef void (*config_finish_fn)(struct config_loader *l, yaml_node_t *m, void *entry,
                                 uint32_t got);

struct config_table {
    const char *what; /* "listen entry": "unknown key 'x' in listen entry" */
    /* entity: set for entries with a name ("rule"): problems about any key but `name`
     * then say "rule 'NAME': ..." ("rule '?'" before the name is known) */
    const char *entity;
    size_t name_off;                   /* entity: where the entry's name (char *) is */
    const struct config_field *fields; /* ends with a {NULL} key; at most 32 */
    config_finish_fn finish;           /* NULL: none */
};

/* A list section: a YAML sequence of mappings, each read with `table`. */
struct config_list {
    const char *name;      /* "keys": "keys must be a list" */
    const char *not_a_map; /* "each keys entry must be a mapping {...}" */
    size_t size;           /* of one entry */
    size_t pos_off;        /* where the entry's struct config_pos goes */
    const struct config_table *table;
};

/* config_fields_defaults -- every dflt of t (and of its MAP sub-tables) into entry. */
void config_fields_defaults(const struct config_table *t, void *entry);
/* config_fields_read -- mapping m into entry with t: key check, each field, t->finish.
 * Returns the got bits. */
uint32_t config_fields_read(struct config_loader *l, yaml_node_t *m, const struct config_table *t,
                            void *entry);
/* config_fields_alloc -- for list section sec: one zeroed entry per item (at least one,
 * so an empty list is still a valid pointer), owned by the caller; NULL (reported) when
 * sec is not a list. */
void *config_fields_alloc(struct config_loader *l, yaml_node_t *sec, const char *name, size_t size);
/* config_fields_list -- every item of sec into items[*n], counting *n as it goes, so a
 * finish sees the entries before its own in the snapshot. An item that is not a mapping
 * is reported and skipped. items comes from config_fields_alloc. */
void config_fields_list(struct config_loader *l, yaml_node_t *sec, const struct config_list *d,
                        void *items, size_t *n);

/* --- sections, in the order they are read (config.c) -------------------------------
 * sec is the section's value, or NULL when the file has none. */
void config_listen_load(struct config_loader *l, yaml_node_t *sec);
void config_keys_load(struct config_loader *l, yaml_node_t *sec);
void config_teams_load(struct config_loader *l, yaml_node_t *sec);
void config_providers_load(struct config_loader *l, yaml_node_t *sec);
void config_models_load(struct config_loader *l, yaml_node_t *sec);
void config_detectors_load(struct config_loader *l, yaml_node_t *sec);
void config_exempt_load(struct config_loader *l, yaml_node_t *sec);
void config_rules_load(struct config_loader *l, yaml_node_t *sec);
void config_audit_load(struct config_loader *l, yaml_node_t *sec);
void config_limits_load(struct config_loader *l, yaml_node_t *sec);
/* egress.c: after providers (intercept entries name them) and listen (a forward listener
 * needs the section) */
void config_egress_load(struct config_loader *l, yaml_node_t *sec);
void config_egress_free(struct config_egress *eg);

#endif
