/* test_fields.c -- the table-driven reader (config/fields.c) on a table of its own, one
 * field of each type: values stored, defaults, unknown / duplicate / missing keys and
 * every wrong type reported at FILE:LINE:COL, checks and finish; then each real list
 * section's table through config_load_text, and the detector-name table. */
#include "config/config_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/harness.h"

struct thing {
    char *name;
    char *path;
    int count;
    size_t bytes;
    double ratio;
    enum config_zone zone;
    char **tags;
    size_t n_tags;
    char *inner;
    struct config_pos pos;
    uint32_t got;
    int finished;
};

static int check_count(struct config_loader *l, yaml_node_t *v, void *entry)
{
    struct thing *t = entry;
    if (t->count != 7)
        return 0;
    config_err(l, v, "seven is not allowed");
    return -1;
}

static void finish_thing(struct config_loader *l, yaml_node_t *m, void *entry, uint32_t got)
{
    struct thing *t = entry;
    (void)l;
    (void)m;
    t->got = got;
    t->finished++;
}

static const struct config_field sub_fields[] = {
    {"inner", FIELD_NAME, .off = offsetof(struct thing, inner), .required = 1},
    {.key = NULL},
};
static const struct config_table sub_table = {.what = "sub", .fields = sub_fields};

static const char *const zone_names[] = {"external", "internal", NULL};

enum { B_NAME, B_PATH, B_COUNT, B_BYTES, B_RATIO, B_ZONE, B_TAGS, B_SUB, B_RAW };

static const struct config_field thing_fields[] = {
    [B_NAME] = {"name", FIELD_NAME, .off = offsetof(struct thing, name), .required = 1},
    [B_PATH] = {"path", FIELD_PATH, .off = offsetof(struct thing, path)},
    [B_COUNT] = {"count", FIELD_INT, .off = offsetof(struct thing, count), .min = 1, .max = 10,
                 .dflt = 5, .check = check_count},
    [B_BYTES] = {"bytes", FIELD_SIZE, .off = offsetof(struct thing, bytes), .min = 0,
                 .max = 1 << 20, .dflt = 4096},
    [B_RATIO] = {"ratio", FIELD_NUMBER, .off = offsetof(struct thing, ratio), .min = 0, .max = 1,
                 .dflt = -1},
    [B_ZONE] = {"zone", FIELD_ENUM, .off = offsetof(struct thing, zone), .names = zone_names,
                .dflt = CONFIG_ZONE_ANY},
    [B_TAGS] = {"tags", FIELD_LIST, .off = offsetof(struct thing, tags),
                .off_n = offsetof(struct thing, n_tags)},
    [B_SUB] = {"sub", FIELD_MAP, .sub = &sub_table, .hint = "{inner}"},
    [B_RAW] = {.key = "raw", .type = FIELD_NODE},
    {.key = NULL},
};

static const struct config_table thing_table = {
    .what = "thing", .fields = thing_fields, .finish = finish_thing};

static const struct config_list things_list = {
    .name = "things",
    .not_a_map = "each things entry must be a mapping {name, ...}",
    .size = sizeof(struct thing),
    .pos_off = offsetof(struct thing, pos),
    .table = &thing_table,
};

/* The same table, naming its entries: "thing 'NAME': ...". */
static const struct config_table named_table = {
    .what = "thing",
    .entity = "thing",
    .name_off = offsetof(struct thing, name),
    .fields = thing_fields,
};

static const struct config_list named_list = {
    .name = "things",
    .not_a_map = "each things entry must be a mapping {name, ...}",
    .size = sizeof(struct thing),
    .pos_off = offsetof(struct thing, pos),
    .table = &named_table,
};

struct run {
    struct config_loader l;
    struct config_errors errs;
    struct config cfg;
    struct thing *items;
    size_t n;
    char text[8192]; /* the errors, formatted */
};

/* read_things -- YAML text (a list of things) through config_fields_alloc/list with
 * list d, into r. 0, or -1 when the text is not YAML at all. */
static int read_things(struct run *r, const char *yaml, const struct config_list *d)
{
    yaml_parser_t p;
    memset(r, 0, sizeof *r);
    r->errs.file = "t.yaml";
    r->l.errs = &r->errs;
    r->l.cfg = &r->cfg;
    r->l.basedir = "/base";
    if (!yaml_parser_initialize(&p))
        return -1;
    yaml_parser_set_input_string(&p, (const unsigned char *)yaml, strlen(yaml));
    int ok = yaml_parser_load(&p, &r->l.doc);
    yaml_parser_delete(&p);
    if (!ok)
        return -1;
    yaml_node_t *root = yaml_document_get_root_node(&r->l.doc);
    r->items = config_fields_alloc(&r->l, root, d->name, d->size);
    if (r->items)
        config_fields_list(&r->l, root, d, r->items, &r->n);
    config_errors_format(&r->errs, r->text, sizeof r->text);
    return 0;
}

static void run_free(struct run *r)
{
    for (size_t i = 0; r->items && i < r->n; i++) {
        struct thing *t = &r->items[i];
        free(t->name);
        free(t->path);
        config_read_strv_free(t->tags, t->n_tags);
        free(t->inner);
    }
    free(r->items);
    yaml_document_delete(&r->l.doc);
}

/* has -- the formatted errors hold `line` (a whole "t.yaml:L:C: message" line). */
static int has(const struct run *r, const char *line)
{
    const char *p = strstr(r->text, line);
    if (!p || (p != r->text && p[-1] != '\n') || p[strlen(line)] != '\n') {
        fprintf(stderr, "  expected line: %s\n  got:\n%s", line, r->text);
        return 0;
    }
    return 1;
}

static void test_values_and_defaults(void)
{
    struct run r;
    REQUIRE(read_things(&r,
                        "- name: a\n"
                        "  path: rel/p\n"
                        "  count: 3\n"
                        "  bytes: 100\n"
                        "  ratio: 0.5\n"
                        "  zone: internal\n"
                        "  tags: [x, y]\n"
                        "  sub: {inner: in}\n"
                        "  raw: [anything, {at: all}]\n"
                        "- {name: b, path: /abs, tags: one}\n",
                        &things_list) == 0);
    CHECK_EQ_INT(r.errs.n, 0);
    REQUIRE(r.n == 2);
    struct thing *a = &r.items[0], *b = &r.items[1];
    CHECK_EQ_STR(a->name, "a");
    CHECK_EQ_STR(a->path, "/base/rel/p");
    CHECK_EQ_INT(a->count, 3);
    CHECK_EQ_INT(a->bytes, 100);
    CHECK(a->ratio == 0.5);
    CHECK_EQ_INT(a->zone, CONFIG_ZONE_INTERNAL);
    REQUIRE(a->n_tags == 2);
    CHECK_EQ_STR(a->tags[1], "y");
    CHECK_EQ_STR(a->inner, "in");
    CHECK_EQ_INT(a->pos.line, 1);
    CHECK_EQ_INT(a->pos.col, 3);
    CHECK_EQ_INT(a->finished, 1);
    CHECK_EQ_INT(a->got, (1u << B_NAME) | (1u << B_PATH) | (1u << B_COUNT) | (1u << B_BYTES) |
                             (1u << B_RATIO) | (1u << B_ZONE) | (1u << B_TAGS) | (1u << B_SUB) |
                             (1u << B_RAW));
    /* absent: the defaults, and no bit */
    CHECK_EQ_STR(b->path, "/abs");
    CHECK_EQ_INT(b->count, 5);
    CHECK_EQ_INT(b->bytes, 4096);
    CHECK(b->ratio == -1);
    CHECK_EQ_INT(b->zone, CONFIG_ZONE_ANY);
    REQUIRE(b->n_tags == 1);
    CHECK_EQ_STR(b->tags[0], "one");
    CHECK(b->inner == NULL);
    CHECK_EQ_INT(b->got, (1u << B_NAME) | (1u << B_PATH) | (1u << B_TAGS));
    CHECK_EQ_INT(b->pos.line, 10);
    run_free(&r);
}

static void test_unknown_and_duplicate_keys(void)
{
    struct run r;
    REQUIRE(read_things(&r,
                        "- name: a\n  nmae: b\n  count: 2\n  count: 3\n  sub: {inner: x, y: 1}\n",
                        &things_list) == 0);
    CHECK(has(&r, "t.yaml:2:3: unknown key 'nmae' in thing (allowed: name, path, count, bytes, "
                  "ratio, zone, tags, sub, raw)"));
    CHECK(has(&r, "t.yaml:4:3: duplicate key 'count' in thing"));
    CHECK(has(&r, "t.yaml:5:19: unknown key 'y' in sub (allowed: inner)"));
    CHECK_EQ_INT(r.errs.n, 3);
    /* the entry is still read, the first of a repeated key wins */
    REQUIRE(r.n == 1);
    CHECK_EQ_INT(r.items[0].count, 2);
    CHECK_EQ_STR(r.items[0].inner, "x");
    CHECK_EQ_INT(r.items[0].finished, 1);
    run_free(&r);
}

static void test_missing_required(void)
{
    struct run r;
    REQUIRE(read_things(&r, "- count: 2\n- {name: b, sub: {}}\n", &things_list) == 0);
    CHECK(has(&r, "t.yaml:1:3: thing: missing required field 'name'"));
    CHECK(has(&r, "t.yaml:2:18: sub: missing required field 'inner'"));
    CHECK_EQ_INT(r.errs.n, 2);
    REQUIRE(r.n == 2);
    CHECK(!(r.items[0].got & (1u << B_NAME)));
    CHECK_EQ_INT(r.items[0].finished, 1); /* finish runs on what is there */
    run_free(&r);

    /* an entity names itself in problems about its other keys, '?' before the name */
    REQUIRE(read_things(&r, "- {count: 2, sub: 5}\n- {name: b, sub: 5}\n", &named_list) == 0);
    CHECK(has(&r, "t.yaml:1:3: thing: missing required field 'name'"));
    CHECK(has(&r, "t.yaml:1:19: thing '?': sub must be a mapping {inner}"));
    CHECK(has(&r, "t.yaml:2:18: thing 'b': sub must be a mapping {inner}"));
    run_free(&r);
}

static void test_wrong_types(void)
{
    struct run r;
    REQUIRE(read_things(&r,
                        "- name: [a]\n"
                        "  path: ''\n"
                        "  count: x\n"
                        "  bytes: 1.5\n"
                        "  ratio: lots\n"
                        "  zone: dmz\n"
                        "  tags: {a: 1}\n"
                        "  sub: 5\n"
                        "- name: b\n"
                        "  count: 11\n"
                        "  bytes: -1\n"
                        "  ratio: 2\n"
                        "  zone: [internal]\n"
                        "  tags: []\n"
                        "- {name: c, count: 7, tags: [ok, [no]]}\n"
                        "- just a scalar\n",
                        &things_list) == 0);
    CHECK(has(&r, "t.yaml:1:9: name must be a string"));
    CHECK(has(&r, "t.yaml:2:9: path must not be empty"));
    CHECK(has(&r, "t.yaml:3:10: count must be an integer, not 'x'"));
    CHECK(has(&r, "t.yaml:4:10: bytes must be an integer, not '1.5'"));
    CHECK(has(&r, "t.yaml:5:10: ratio must be a number, not 'lots'"));
    CHECK(has(&r, "t.yaml:6:9: zone must be one of external, internal, not 'dmz'"));
    CHECK(has(&r, "t.yaml:7:9: tags must be a list of strings"));
    CHECK(has(&r, "t.yaml:8:8: sub must be a mapping {inner}"));
    CHECK(has(&r, "t.yaml:10:10: count must be between 1 and 10, not 11"));
    CHECK(has(&r, "t.yaml:11:10: bytes must be between 0 and 1048576, not -1"));
    CHECK(has(&r, "t.yaml:12:10: ratio must be between 0 and 1, not 2"));
    CHECK(has(&r, "t.yaml:13:9: zone must be a string"));
    CHECK(has(&r, "t.yaml:14:9: tags must not be an empty list"));
    CHECK(has(&r, "t.yaml:15:20: seven is not allowed"));
    CHECK(has(&r, "t.yaml:15:34: tags must be a string"));
    CHECK(has(&r, "t.yaml:16:3: each things entry must be a mapping {name, ...}"));
    CHECK_EQ_INT(r.errs.n, 16);
    REQUIRE(r.n == 3); /* the scalar is not an entry */
    /* nothing wrong was stored: the defaults stay, and no bit is set */
    CHECK(r.items[0].name == NULL);
    CHECK_EQ_INT(r.items[0].count, 5);
    CHECK_EQ_INT(r.items[0].got, 0);
    CHECK_EQ_INT(r.items[1].zone, CONFIG_ZONE_ANY);
    CHECK(r.items[1].tags == NULL);
    CHECK_EQ_INT(r.items[1].got, 1u << B_NAME);
    /* a failed check keeps the value but not its bit */
    CHECK_EQ_INT(r.items[2].count, 7);
    CHECK_EQ_INT(r.items[2].got, 1u << B_NAME);
    run_free(&r);

    REQUIRE(read_things(&r, "{name: a}\n", &things_list) == 0);
    CHECK(has(&r, "t.yaml:1:1: things must be a list"));
    CHECK(r.items == NULL);
    run_free(&r);
}

/* Each real list section: its table's keys in the unknown-key message, its required key,
 * a wrong type, at their positions. */
static void test_sections(void)
{
    static const struct {
        const char *yaml, *want;
    } cases[] = {
        {"listen: [{address: 127.0.0.1:1, port: 2}]\n",
         "t.yaml:1:33: unknown key 'port' in listen entry (allowed: address, tls, mode)"},
        {"listen: [{tls: {cert: a, key: b}}]\n",
         "t.yaml:1:10: listen entry: missing required field 'address'"},
        {"listen: [{address: 127.0.0.1:1, tls: [a]}]\n",
         "t.yaml:1:38: tls must be a mapping {cert: FILE, key: FILE}"},
        {"keys: [{name: a, key: k, owner: b}]\n",
         "t.yaml:1:26: unknown key 'owner' in keys entry (allowed: name, team, key, key_sha256, "
         "budget_usd_per_day)"},
        {"keys: [{key: k}]\n", "t.yaml:1:8: keys entry: missing required field 'name'"},
        {"keys: [{name: a, key: k, budget_usd_per_day: [1]}]\n",
         "t.yaml:1:46: budget_usd_per_day must be a string"},
        {"teams: [{name: a, cap: 1}]\n",
         "t.yaml:1:19: unknown key 'cap' in teams entry (allowed: name, budget_usd_per_day)"},
        {"teams: [{budget_usd_per_day: 1}]\n",
         "t.yaml:1:9: teams entry: missing required field 'name'"},
        {"models: [{name: m, provider: p, cost: 1}]\n",
         "t.yaml:1:33: unknown key 'cost' in models entry (allowed: name, provider, "
         "upstream_model, price)"},
        {"models: [{name: m}]\n", "t.yaml:1:10: models entry: missing required field 'provider'"},
        {"models: [{name: m, provider: p, price: 3}]\n",
         "t.yaml:1:40: price must be a mapping {input_per_mtok, output_per_mtok}"},
        {"detectors: [{name: d, regex: x, flags: i}]\n",
         "t.yaml:1:33: unknown key 'flags' in detectors entry (allowed: name, regex, keywords, "
         "keywords_file)"},
        {"detectors: [{regex: x}]\n",
         "t.yaml:1:13: detectors entry: missing required field 'name'"},
        {"detectors: [{name: d, keywords: {a: 1}}]\n",
         "t.yaml:1:33: keywords must be a list of strings"},
        {"rules: [{name: r, when: {}, then: {action: allow}}]\n",
         "t.yaml:1:19: unknown key 'when' in rule (allowed: name, if, then)"},
        {"rules: [{then: {action: allow}}]\n", "t.yaml:1:9: rule: missing required field 'name'"},
        {"rules: [{name: r}]\n", "t.yaml:1:9: rule 'r': missing required field 'then'"},
        {"rules: [{name: r, then: {}}]\n",
         "t.yaml:1:25: rule 'r': missing required field 'action'"},
        {"rules: [{name: r, if: [a], then: {action: allow}}]\n",
         "t.yaml:1:23: rule 'r': if must be a mapping of conditions"},
        {"rules: [{name: r, if: {team: {a: b}}, then: {action: allow}}]\n",
         "t.yaml:1:30: team must be a list of strings"},
        {"providers: {p: {type: openai, base_url: 'http://h', timeout: 1}}\n",
         "t.yaml:1:53: unknown key 'timeout' in provider (allowed: type, zone, base_url, api_key, "
         "ca_file, timeout_ms, model, threads, context, max_tokens)"},
        {"providers: {p: {zone: internal}}\n",
         "t.yaml:1:16: provider 'p': missing required field 'type'"},
        {"audit: {dir: d, sync: [always]}\n", "t.yaml:1:23: sync must be a string"},
        {"limits: {engine_queue: {a: 1}}\n", "t.yaml:1:24: engine_queue must be a string"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        struct config *c = NULL;
        struct config_errors e;
        char out[4096];
        CHECK(config_load_text("t.yaml", cases[i].yaml, strlen(cases[i].yaml), NULL, &c, &e) == -1);
        config_unref(c);
        config_errors_format(&e, out, sizeof out);
        const char *p = strstr(out, cases[i].want);
        if (!p || p[strlen(cases[i].want)] != '\n') {
            fprintf(stderr, "  case %zu: expected '%s', got:\n%s", i, cases[i].want, out);
            CHECK(!"error line missing");
        }
    }
}

static void test_detector_table(void)
{
    static const char *const pii[] = {"email", "phone", "credit_card", "iban", "us_ssn"};
    static const char *const secrets[] = {"private_key",   "aws_access_key", "github_token",
                                          "openai_key",    "anthropic_key",  "jwt",
                                          "credential_uri", "generic_secret"};
    size_t n_pii = 0, n_secrets = 0;
    for (size_t i = 0; i < CONFIG_DET_N_BUILTIN; i++) {
        const struct config_builtin *b = &config_detectors_builtin[i];
        REQUIRE(b->name != NULL);
        CHECK_EQ_INT(config_detectors_builtin_find(b->name), (long long)i);
        n_pii += b->group == CONFIG_GROUP_PII;
        n_secrets += b->group == CONFIG_GROUP_SECRETS;
    }
    CHECK_EQ_INT(n_pii, sizeof pii / sizeof *pii);
    CHECK_EQ_INT(n_secrets, sizeof secrets / sizeof *secrets);
    for (size_t i = 0; i < sizeof pii / sizeof *pii; i++)
        CHECK_EQ_INT(config_detectors_builtin[config_detectors_builtin_find(pii[i])].group,
                     CONFIG_GROUP_PII);
    for (size_t i = 0; i < sizeof secrets / sizeof *secrets; i++)
        CHECK_EQ_INT(config_detectors_builtin[config_detectors_builtin_find(secrets[i])].group,
                     CONFIG_GROUP_SECRETS);
    CHECK_EQ_INT(config_detectors_builtin[CONFIG_DET_IPV4].group, CONFIG_GROUP_NONE);
    /* the tie-break order policy relies on: secrets first, IBAN before card */
    CHECK_EQ_STR(config_detectors_builtin[0].name, "private_key");
    CHECK(CONFIG_DET_IBAN < CONFIG_DET_CREDIT_CARD);
    CHECK_EQ_INT(config_detectors_group("pii"), CONFIG_GROUP_PII);
    CHECK_EQ_INT(config_detectors_group("secrets"), CONFIG_GROUP_SECRETS);
    CHECK_EQ_INT(config_detectors_group("email"), CONFIG_GROUP_NONE);
    CHECK_EQ_INT(config_detectors_group(NULL), CONFIG_GROUP_NONE);
    CHECK_EQ_INT(config_detectors_builtin_find("pii"), -1);
    CHECK_EQ_INT(config_detectors_builtin_find(NULL), -1);
    CHECK(config_detectors_known(NULL, "secrets"));
    CHECK(config_detectors_known(NULL, "ipv4"));
    CHECK(!config_detectors_known(NULL, "custom"));
    CHECK(!config_detectors_known(NULL, NULL));

    struct config *c = NULL;
    struct config_errors e;
    const char y[] = "detectors: [{name: custom, regex: x}]\n";
    REQUIRE(config_load_text("t.yaml", y, sizeof y - 1, NULL, &c, &e) == 0);
    CHECK(config_detectors_known(c, "custom"));
    CHECK(!config_detectors_known(c, "custo"));
    config_unref(c);
}

int main(void)
{
    RUN(test_values_and_defaults);
    RUN(test_unknown_and_duplicate_keys);
    RUN(test_missing_required);
    RUN(test_wrong_types);
    RUN(test_sections);
    RUN(test_detector_table);
    return harness_done();
}
