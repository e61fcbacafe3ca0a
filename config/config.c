/* config.c -- load and validate the YAML configuration into an immutable snapshot.
 *
 * The file is parsed with libyaml's document API (every node keeps its start mark, so
 * every problem gets a line and column), after an event pass that bounds its nesting
 * and size. Sections are then read in a fixed order -- listen, keys, teams, providers,
 * models, detectors, rules, audit, limits, egress -- whatever their order in the file, so that
 * later sections can check references to earlier ones; each section has its own file
 * (config_int.h lists them). Problems are collected, not fatal: reading goes on to
 * report as many as it can, and they are sorted into file order at the end.
 *
 * This file also holds what is not about one section: the problem list, the snapshot's
 * lifetime (reference count, free), look-ups, lint and the embedded default. */
#include "config/config_int.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

/* entries in one list or mapping: keeps the quadratic duplicate checks cheap */
#define CONFIG_MAX_ITEMS 10000
/* nesting of lists/mappings; the schema needs 5 */
#define CONFIG_MAX_DEPTH 32
/* nodes in the whole file: bounds the loader's memory (~100 bytes a node) */
#define CONFIG_MAX_NODES 200000

/* --- problems ----------------------------------------------------------------------- */

static void verr(struct config_loader *l, int line, int col, const char *fmt, va_list ap)
{
    struct config_errors *e = l->errs;
    if (e->n >= CONFIG_MAX_ERRORS) {
        e->dropped++;
        return;
    }
    struct config_error *it = &e->items[e->n++];
    it->line = line;
    it->col = col;
    vsnprintf(it->message, sizeof it->message, fmt, ap);
}

void config_err(struct config_loader *l, const yaml_node_t *n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (n)
        verr(l, (int)n->start_mark.line + 1, (int)n->start_mark.column + 1, fmt, ap);
    else
        verr(l, 0, 0, fmt, ap);
    va_end(ap);
}

void config_err_pos(struct config_loader *l, struct config_pos pos, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verr(l, pos.line, pos.col, fmt, ap);
    va_end(ap);
}

static void __attribute__((format(printf, 3, 4)))
verr_at_mark(struct config_loader *l, yaml_mark_t mark, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verr(l, (int)mark.line + 1, (int)mark.column + 1, fmt, ap);
    va_end(ap);
}

/* --- loading ------------------------------------------------------------------------ */

/* check_graph -- every node is used once (no anchors/aliases: they would let a small
 * file expand into a huge or cyclic tree) and no list or mapping is oversized.
 * 0, or -1 (reported). */
static int check_graph(struct config_loader *l)
{
    size_t n = (size_t)(l->doc.nodes.top - l->doc.nodes.start);
    unsigned char *uses = calloc(n + 2, 1);
    int bad = 0;
    if (!uses) {
        config_err(l, NULL, "out of memory");
        return -1;
    }
    uses[1] = 1; /* the root (node ids are 1-based) */
    for (yaml_node_t *nd = l->doc.nodes.start; nd < l->doc.nodes.top; nd++) {
        int ids[2];
        size_t kids = 0;
        if (nd->type == YAML_SEQUENCE_NODE)
            kids = config_seq_len(nd);
        else if (nd->type == YAML_MAPPING_NODE)
            kids = (size_t)(nd->data.mapping.pairs.top - nd->data.mapping.pairs.start);
        if (kids > CONFIG_MAX_ITEMS) {
            config_err(l, nd, "too many entries (%zu; the limit is %d)", kids, CONFIG_MAX_ITEMS);
            bad = 1;
            continue;
        }
        for (size_t i = 0; i < kids; i++) {
            size_t cnt = 1;
            if (nd->type == YAML_SEQUENCE_NODE) {
                ids[0] = nd->data.sequence.items.start[i];
            } else {
                ids[0] = nd->data.mapping.pairs.start[i].key;
                ids[1] = nd->data.mapping.pairs.start[i].value;
                cnt = 2;
            }
            for (size_t j = 0; j < cnt; j++) {
                if (ids[j] < 1 || (size_t)ids[j] > n)
                    continue;
                if (uses[ids[j]] == 1) {
                    config_err(l, config_node(l, ids[j]),
                               "YAML anchors and aliases (&name, *name) are not supported");
                    bad = 1;
                }
                if (uses[ids[j]] < 2)
                    uses[ids[j]]++;
            }
        }
    }
    free(uses);
    return bad ? -1 : 0;
}

/* load_root -- every section in a fixed order (a section may check names from the ones
 * before it), then what needs several sections. */
static void load_root(struct config_loader *l, yaml_node_t *root)
{
    static const char *const sections[] = {"listen", "keys",      "teams",  "providers",
                                           "models", "detectors", "exempt", "rules",
                                           "audit",  "limits",    "egress", NULL};
    struct config *cfg = l->cfg;
    if (!config_is_map(root)) {
        config_err(l, root, "the configuration must be a mapping of sections (listen, rules, ...)");
        return;
    }
    config_read_map_check(l, root, "the configuration", sections);
    config_listen_load(l, config_read_map_get(l, root, "listen"));
    config_keys_load(l, config_read_map_get(l, root, "keys"));
    config_teams_load(l, config_read_map_get(l, root, "teams"));
    config_providers_load(l, config_read_map_get(l, root, "providers"));
    config_models_load(l, config_read_map_get(l, root, "models"));
    config_detectors_load(l, config_read_map_get(l, root, "detectors"));
    config_exempt_load(l, config_read_map_get(l, root, "exempt"));
    config_rules_load(l, config_read_map_get(l, root, "rules"));
    config_audit_load(l, config_read_map_get(l, root, "audit"));
    config_limits_load(l, config_read_map_get(l, root, "limits"));
    config_egress_load(l, config_read_map_get(l, root, "egress"));
    if (!cfg->auth) {
        for (size_t i = 0; i < cfg->n_listens; i++) {
            struct config_listen *ls = &cfg->listens[i];
            if (ls->host && !ls->loopback)
                config_err_pos(l, ls->pos,
                               "no keys section (authentication off) is only allowed when every "
                               "listener is loopback, but '%.60s' is not",
                               ls->address);
        }
    }
}

/* sort_errors -- file order (stable), problems without a position last: sections are
 * read in a fixed order, which is not the order a reader of the file expects. */
static void sort_errors(struct config_errors *e)
{
    for (size_t i = 1; i < e->n; i++) {
        struct config_error t = e->items[i];
        long long kt = t.line > 0 ? (long long)t.line * 100000 + t.col : LLONG_MAX;
        size_t j = i;
        while (j > 0) {
            const struct config_error *p = &e->items[j - 1];
            long long kp = p->line > 0 ? (long long)p->line * 100000 + p->col : LLONG_MAX;
            if (kp <= kt)
                break;
            e->items[j] = e->items[j - 1];
            j--;
        }
        e->items[j] = t;
    }
}

static void free_cfg(struct config *cfg)
{
    if (!cfg)
        return;
    free(cfg->path);
    for (size_t i = 0; i < cfg->n_listens; i++) {
        struct config_listen *x = &cfg->listens[i];
        free(x->address);
        free(x->host);
        free(x->tls_cert);
        free(x->tls_key);
    }
    free(cfg->listens);
    for (size_t i = 0; i < cfg->n_keys; i++) {
        free(cfg->keys[i].name);
        free(cfg->keys[i].team);
    }
    if (cfg->keys)
        sodium_memzero(cfg->keys, cfg->n_keys * sizeof *cfg->keys);
    free(cfg->keys);
    for (size_t i = 0; i < cfg->n_teams; i++)
        free(cfg->teams[i].name);
    free(cfg->teams);
    for (size_t i = 0; i < cfg->n_providers; i++) {
        struct config_provider *p = &cfg->providers[i];
        free(p->name);
        free(p->base_url);
        free(p->host);
        free(p->path_prefix);
        if (p->api_key) {
            sodium_memzero(p->api_key, strlen(p->api_key));
            sodium_free(p->api_key);
        }
        free(p->ca_file);
        free(p->model_path);
    }
    free(cfg->providers);
    for (size_t i = 0; i < cfg->n_models; i++) {
        free(cfg->models[i].name);
        free(cfg->models[i].provider);
        free(cfg->models[i].upstream_model);
    }
    free(cfg->models);
    for (size_t i = 0; i < cfg->n_detectors; i++) {
        struct config_detector *d = &cfg->detectors[i];
        free(d->name);
        free(d->regex);
        config_read_strv_free(d->keywords, d->n_keywords);
        free(d->keywords_file);
    }
    free(cfg->detectors);
    for (size_t i = 0; i < cfg->n_exempt; i++) {
        free(cfg->exempt[i].detector);
        config_read_strv_free(cfg->exempt[i].values, cfg->exempt[i].n_values);
    }
    free(cfg->exempt);
    for (size_t i = 0; i < cfg->n_rules; i++) {
        struct config_rule *r = &cfg->rules[i];
        free(r->name);
        config_read_strv_free(r->detected, r->n_detected);
        config_read_strv_free(r->keys, r->n_keys);
        config_read_strv_free(r->teams, r->n_teams);
        config_read_strv_free(r->models, r->n_models);
        config_read_strv_free(r->unscanned, r->n_unscanned);
        free(r->provider);
        free(r->model);
        config_read_strv_free(r->redact_detectors, r->n_redact_detectors);
    }
    free(cfg->rules);
    free(cfg->audit.dir);
    free(cfg->audit.signing_key);
    free(cfg->audit.seal_to);
    config_egress_free(&cfg->egress);
    free(cfg);
}

/* yaml_error -- the parser's problem, with its position, as one config error. */
static void yaml_error(struct config_loader *l, const yaml_parser_t *parser, const char *text,
                       size_t len)
{
    struct config_errors *e = l->errs;
    if (e->n >= CONFIG_MAX_ERRORS) {
        e->dropped++;
        return;
    }
    struct config_error *it = &e->items[e->n++];
    it->line = (int)parser->problem_mark.line + 1;
    it->col = (int)parser->problem_mark.column + 1;
    if (parser->error == YAML_READER_ERROR) {
        /* encoding problems come with a byte offset, not a mark */
        size_t off = parser->problem_offset < len ? parser->problem_offset : len;
        it->line = 1;
        it->col = 1;
        for (size_t i = 0; i < off; i++) {
            if (text[i] == '\n') {
                it->line++;
                it->col = 1;
            } else {
                it->col++;
            }
        }
        if (parser->problem_value >= 0)
            snprintf(it->message, sizeof it->message, "invalid text: %s (0x%02x)",
                     parser->problem ? parser->problem : "unknown problem",
                     (unsigned)parser->problem_value);
        else
            snprintf(it->message, sizeof it->message, "invalid text: %s",
                     parser->problem ? parser->problem : "unknown problem");
        return;
    }
    snprintf(it->message, sizeof it->message, "YAML syntax error: %s%s%s",
             parser->problem ? parser->problem : "unknown problem", parser->context ? " " : "",
             parser->context ? parser->context : "");
}

/* check_depth -- an event pass that stops at CONFIG_MAX_DEPTH nested collections or
 * CONFIG_MAX_NODES values,
 * before libyaml's loader (whose cost grows with depth) sees the text. 0 or -1. */
static int check_depth(struct config_loader *l, const char *text, size_t len)
{
    yaml_parser_t p;
    yaml_event_t ev;
    int depth = 0, rc = -1;
    size_t nodes = 0;
    if (!yaml_parser_initialize(&p)) {
        config_err(l, NULL, "out of memory");
        return -1;
    }
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    for (;;) {
        if (!yaml_parser_parse(&p, &ev)) {
            yaml_error(l, &p, text, len);
            break;
        }
        yaml_event_type_t t = ev.type;
        if ((t == YAML_SCALAR_EVENT || t == YAML_ALIAS_EVENT || t == YAML_SEQUENCE_START_EVENT ||
             t == YAML_MAPPING_START_EVENT) &&
            ++nodes > CONFIG_MAX_NODES) {
            verr_at_mark(l, ev.start_mark, "too many values in one file (more than %d)",
                         CONFIG_MAX_NODES);
            yaml_event_delete(&ev);
            break;
        }
        if (t == YAML_SEQUENCE_START_EVENT || t == YAML_MAPPING_START_EVENT) {
            if (++depth > CONFIG_MAX_DEPTH) {
                verr_at_mark(l, ev.start_mark, "nesting too deep (more than %d levels)",
                             CONFIG_MAX_DEPTH);
                yaml_event_delete(&ev);
                break;
            }
        } else if (t == YAML_SEQUENCE_END_EVENT || t == YAML_MAPPING_END_EVENT) {
            depth--;
        }
        yaml_event_delete(&ev);
        if (t == YAML_STREAM_END_EVENT) {
            rc = 0;
            break;
        }
    }
    yaml_parser_delete(&p);
    return rc;
}

int config_load_text(const char *name, const char *text, size_t len, const char *basedir,
                     struct config **out, struct config_errors *errs)
{
    struct config_loader l;
    yaml_parser_t parser;
    int parser_ok = 0, doc_ok = 0;
    memset(&l, 0, sizeof l);
    memset(errs, 0, sizeof *errs);
    errs->file = name ? name : "<config>";
    *out = NULL;
    l.errs = errs;
    l.basedir = basedir;
    if (sodium_init() < 0) { /* idempotent; sodium_malloc needs it */
        config_err(&l, NULL, "libsodium failed to initialise");
        return -1;
    }
    if (len > CONFIG_MAX_FILE) {
        config_err(&l, NULL, "configuration too large (%zu bytes; the limit is %u)", len,
                   CONFIG_MAX_FILE);
        return -1;
    }
    if (!(l.cfg = calloc(1, sizeof *l.cfg)) || !(l.cfg->path = strdup(errs->file))) {
        config_err(&l, NULL, "out of memory");
        goto fail;
    }
    struct config *cfg = l.cfg;
    cfg->refs = 1;

    if (check_depth(&l, text, len) != 0)
        goto fail;
    if (!yaml_parser_initialize(&parser)) {
        config_err(&l, NULL, "out of memory");
        goto fail;
    }
    parser_ok = 1;
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &l.doc)) {
        yaml_error(&l, &parser, text, len);
        goto fail;
    }
    doc_ok = 1;
    yaml_node_t *root = yaml_document_get_root_node(&l.doc);
    if (!root) {
        config_err(&l, NULL, "empty configuration file");
        goto fail;
    }
    yaml_document_t extra;
    if (!yaml_parser_load(&parser, &extra)) {
        config_err(&l, NULL, "YAML syntax error after the first document: %s",
                   parser.problem ? parser.problem : "unknown problem");
        goto fail;
    }
    int more = yaml_document_get_root_node(&extra) != NULL;
    yaml_document_delete(&extra);
    if (more) {
        config_err(&l, NULL, "only one YAML document is allowed (found a second '---')");
        goto fail;
    }
    if (check_graph(&l) != 0)
        goto fail;
    load_root(&l, root);
    sort_errors(errs);
    if (errs->n > 0 || errs->dropped > 0)
        goto fail;
    yaml_document_delete(&l.doc);
    yaml_parser_delete(&parser);
    *out = cfg;
    return 0;
fail:
    if (doc_ok)
        yaml_document_delete(&l.doc);
    if (parser_ok)
        yaml_parser_delete(&parser);
    free_cfg(l.cfg);
    return -1;
}

int config_load(const char *path, struct config **out, struct config_errors *errs)
{
    char *buf = NULL, *dir = NULL, why[200];
    size_t len = 0;
    memset(errs, 0, sizeof *errs);
    errs->file = path;
    *out = NULL;
    if (config_read_file(path, CONFIG_MAX_FILE, &buf, &len, why, sizeof why) != 0) {
        errs->n = 1;
        errs->items[0].line = errs->items[0].col = 0;
        snprintf(errs->items[0].message, sizeof errs->items[0].message, "%s", why);
        return -1;
    }
    const char *slash = strrchr(path, '/');
    if (slash) {
        dir = strndup(path, slash == path ? 1 : (size_t)(slash - path));
        if (!dir) {
            sodium_memzero(buf, len);
            free(buf);
            errs->n = 1;
            snprintf(errs->items[0].message, sizeof errs->items[0].message, "out of memory");
            return -1;
        }
    }
    int r = config_load_text(path, buf, len, dir, out, errs);
    errs->file = path;
    /* the text may hold plaintext keys */
    sodium_memzero(buf, len);
    free(buf);
    free(dir);
    return r;
}

size_t config_errors_format(const struct config_errors *errs, char *buf, size_t cap)
{
    size_t off = 0;
    if (cap == 0)
        return 0;
    buf[0] = '\0';
    const char *file = errs->file ? errs->file : "<config>";
    for (size_t i = 0; i < errs->n && off < cap - 1; i++) {
        const struct config_error *e = &errs->items[i];
        int w;
        if (e->line > 0)
            w = snprintf(buf + off, cap - off, "%s:%d:%d: %s\n", file, e->line, e->col, e->message);
        else
            w = snprintf(buf + off, cap - off, "%s: %s\n", file, e->message);
        if (w < 0)
            break;
        off += (size_t)w;
    }
    if (errs->dropped > 0 && off < cap - 1) {
        int w =
            snprintf(buf + off, cap - off, "%s: ... and %zu more problems\n", file, errs->dropped);
        if (w > 0)
            off += (size_t)w;
    }
    return off < cap ? off : cap - 1;
}

struct config *config_ref(struct config *cfg)
{
    if (cfg)
        __atomic_add_fetch(&cfg->refs, 1, __ATOMIC_RELAXED);
    return cfg;
}

void config_unref(struct config *cfg)
{
    if (cfg && __atomic_sub_fetch(&cfg->refs, 1, __ATOMIC_ACQ_REL) == 0)
        free_cfg(cfg);
}

const struct config_provider *config_provider_find(const struct config *cfg, const char *name)
{
    for (size_t i = 0; name && i < cfg->n_providers; i++)
        if (strcmp(cfg->providers[i].name, name) == 0)
            return &cfg->providers[i];
    return NULL;
}

const struct config_model *config_model_find(const struct config *cfg, const char *name)
{
    for (size_t i = 0; name && i < cfg->n_models; i++)
        if (cfg->models[i].name && strcmp(cfg->models[i].name, name) == 0)
            return &cfg->models[i];
    return NULL;
}

const struct config_key *config_key_find_sha256(const struct config *cfg, const uint8_t sha[32])
{
    const struct config_key *found = NULL;
    /* walk every key so the time taken does not say which one matched */
    for (size_t i = 0; i < cfg->n_keys; i++)
        if (sodium_memcmp(cfg->keys[i].key_sha256, sha, 32) == 0 && !found)
            found = &cfg->keys[i];
    return found;
}

/* yaml_quote -- s as a double-quoted YAML scalar into a new string. */
static char *yaml_quote(const char *s)
{
    size_t n = strlen(s);
    if (n > (SIZE_MAX - 3) / 4)
        return NULL;
    char *q = malloc(n * 4 + 3), *o = q;
    if (!q)
        return NULL;
    *o++ = '"';
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\') {
            *o++ = '\\';
            *o++ = (char)*c;
        } else if (*c < 0x20 || *c == 0x7f) {
            o += sprintf(o, "\\x%02x", *c);
        } else {
            *o++ = (char)*c;
        }
    }
    *o++ = '"';
    *o = '\0';
    return q;
}

static const char default_no_model[] =
    "# airlock embedded default (SPEC section 6), no local model\n"
    "listen:\n"
    "  - address: 127.0.0.1:8080\n"
    "rules:\n"
    "  - name: no-secrets\n"
    "    if: {detected: [secrets]}\n"
    "    then: {action: block}\n"
    "  - name: allow\n"
    "    then: {action: allow}\n"
    "audit:\n"
    "  dir: ./airlock-data/audit\n";

const char *config_embedded_default(const char *model_path, char **buf)
{
    *buf = NULL;
    if (!model_path)
        return default_no_model;
    char *q = yaml_quote(model_path);
    if (!q)
        return NULL;
    char *text = NULL;
    int r = asprintf(&text,
                     "# airlock embedded default (SPEC section 6)\n"
                     "listen:\n"
                     "  - address: 127.0.0.1:8080\n"
                     "providers:\n"
                     "  local:\n"
                     "    type: builtin\n"
                     "    model: %s\n"
                     "    max_tokens: 1024  # the most one answer may have\n"
                     "models:\n"
                     "  - name: local\n"
                     "    provider: local\n"
                     "rules:\n"
                     "  - name: no-secrets\n"
                     "    if: {detected: [secrets]}\n"
                     "    then: {action: block}\n"
                     "  - name: local-only\n"
                     "    then: {action: route, provider: local, model: local}\n"
                     "audit:\n"
                     "  dir: ./airlock-data/audit\n",
                     q);
    free(q);
    if (r < 0)
        return NULL;
    *buf = text;
    return text;
}

static int some_key_in_team(const struct config *cfg, const char *team)
{
    for (size_t i = 0; i < cfg->n_keys; i++)
        if (cfg->keys[i].team && strcmp(cfg->keys[i].team, team) == 0)
            return 1;
    return 0;
}

/* lint_egress -- an egress section no listener uses, and a tunnel entry an intercept
 * entry shadows (intercept is decided first, so the tunnel never applies). */
static size_t lint_egress(const struct config *cfg,
                          void (*fn)(void *ud, struct config_pos pos, const char *msg), void *ud)
{
    const struct config_egress *eg = &cfg->egress;
    char msg[256];
    size_t n = 0;
    int forward = 0;

    if (!eg->present)
        return 0;
    for (size_t i = 0; i < cfg->n_listens; i++)
        forward |= cfg->listens[i].mode == CONFIG_LISTEN_FORWARD;
    if (!forward) {
        fn(ud, eg->pos, "the egress section is not used: no listener has mode: forward");
        n++;
    }
    for (size_t i = 0; i < eg->n_tunnel; i++) {
        const struct config_tunnel *t = &eg->tunnel[i];
        for (size_t j = 0; j < eg->n_intercept; j++) {
            const struct config_intercept *ic = &eg->intercept[j];
            if (t->port != ic->port || !t->glob || !ic->host || strcmp(t->glob, ic->host) != 0)
                continue;
            snprintf(msg, sizeof(msg),
                     "egress tunnel entry '%.80s:%d' never applies: that host is intercepted "
                     "(line %d), which is decided first",
                     t->glob, t->port, ic->pos.line);
            fn(ud, t->pos, msg);
            n++;
            break;
        }
    }
    return n;
}

size_t config_lint(const struct config *cfg,
                   void (*fn)(void *ud, struct config_pos pos, const char *msg), void *ud)
{
    char msg[256];
    size_t n = 0;

    for (size_t i = 0; cfg->n_teams > 0 && i < cfg->n_keys; i++) {
        const struct config_key *k = &cfg->keys[i];
        if (!k->team || config_team_find(cfg, k->team))
            continue;
        snprintf(msg, sizeof(msg),
                 "key '%.40s' names team '%.40s', which is not in `teams`: that team has no "
                 "budget",
                 k->name ? k->name : "?", k->team);
        fn(ud, k->pos, msg);
        n++;
    }
    for (size_t i = 0; i < cfg->n_rules; i++) {
        const struct config_rule *r = &cfg->rules[i];
        for (size_t j = 0; j < r->n_teams; j++) {
            if (some_key_in_team(cfg, r->teams[j]))
                continue;
            snprintf(msg, sizeof(msg),
                     "rule '%.40s': no key belongs to team '%.40s', so this condition never "
                     "matches",
                     r->name ? r->name : "?", r->teams[j]);
            fn(ud, r->pos, msg);
            n++;
        }
    }
    n += lint_egress(cfg, fn, ud);
    return n;
}

const struct config_team *config_team_find(const struct config *cfg, const char *name)
{
    if (!name)
        return NULL;
    for (size_t i = 0; i < cfg->n_teams; i++)
        if (cfg->teams[i].name && strcmp(cfg->teams[i].name, name) == 0)
            return &cfg->teams[i];
    return NULL;
}
