/* test_config.c -- config loading: every field, every error class with its position,
 * env expansion, relative paths, refcounts, the embedded default, hostile files. */
#include "config/config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "tests/harness.h"

static char tmpdir[256];

static void write_file(const char *name, const char *text, size_t len)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        exit(2);
    }
    fwrite(text, 1, len, f);
    fclose(f);
}

static int load(const char *text, struct config **cfg, struct config_errors *errs)
{
    return config_load_text("t.yaml", text, strlen(text), tmpdir, cfg, errs);
}

/* has_err -- a problem at line:col (0: any) whose message contains sub. */
static int has_err(const struct config_errors *e, int line, int col, const char *sub)
{
    for (size_t i = 0; i < e->n; i++) {
        const struct config_error *x = &e->items[i];
        if ((line == 0 || x->line == line) && (col == 0 || x->col == col) &&
            strstr(x->message, sub))
            return 1;
    }
    return 0;
}

static void dump_errs(const struct config_errors *e)
{
    char buf[16384];
    config_errors_format(e, buf, sizeof buf);
    fprintf(stderr, "%s", buf);
}

/* expect_err -- text fails to load with a problem at line:col containing sub. */
#define EXPECT_ERR(text, line, col, sub)                                                           \
    do {                                                                                           \
        struct config *c_ = NULL;                                                                  \
        struct config_errors e_;                                                                   \
        CHECK(load((text), &c_, &e_) == -1);                                                       \
        CHECK(c_ == NULL);                                                                         \
        if (!has_err(&e_, (line), (col), (sub))) {                                                 \
            fprintf(stderr, "  expected %d:%d '%s', got:\n", (line), (col), (sub));                \
            dump_errs(&e_);                                                                        \
            CHECK(!"expected error missing");                                                      \
        }                                                                                          \
        config_unref(c_);                                                                          \
    } while (0)

static const char full_cfg[] =
    "listen:\n"
    "  - address: 127.0.0.1:8080\n"
    "  - address: \"[::1]:8443\"\n"
    "    tls: {cert: certs/server.crt, key: certs/server.key}\n"
    "  - address: 0.0.0.0:443\n"
    "    tls: {cert: /CERTDIR/certs/server.crt, key: certs/server.key}\n"
    "keys:\n"
    "  - name: alice\n"
    "    team: research\n"
    "    key: sk-alice-secret\n"
    "    budget_usd_per_day: 12.5\n"
    "  - name: bob\n"
    "    key_sha256: 00112233445566778899AABBCCDDEEFF00112233445566778899aabbccddeeff\n"
    "providers:\n"
    "  openai:\n"
    "    type: openai\n"
    "    base_url: https://api.openai.com/v1/\n"
    "    api_key: ${AIRLOCK_TEST_KEY}\n"
    "    timeout_ms: 30000\n"
    "  corp:\n"
    "    type: openai-compatible\n"
    "    zone: internal\n"
    "    base_url: http://[::1]:9000\n"
    "    ca_file: certs/ca.pem\n"
    "  claude: {type: anthropic, base_url: \"https://api.anthropic.com:8443/x/y\"}\n"
    "  local:\n"
    "    type: builtin\n"
    "    model: models/small.gguf\n"
    "    threads: 4\n"
    "    context: 2048\n"
    "models:\n"
    "  - name: gpt-4o\n"
    "    provider: openai\n"
    "    price: {input_per_mtok: 2.5, output_per_mtok: 10, cached_input_per_mtok: 1.25}\n"
    "  - name: smart\n"
    "    provider: claude\n"
    "    upstream_model: claude-sonnet-4\n"
    "    price: {input_per_mtok: 3, output_per_mtok: 15}\n"
    "  - {name: local-small, provider: local}\n"
    "detectors:\n"
    "  - {name: project_code, regex: \"PRJ-[0-9]{4}\"}\n"
    "  - name: codenames\n"
    "    keywords: [falcon, \"blue heron\"]\n"
    "  - {name: customers, keywords_file: lists/customers.txt}\n"
    "rules:\n"
    "  - name: no-secrets\n"
    "    if: {detected: [secrets, project_code]}\n"
    "    then: {action: block}\n"
    "  - name: stay-home\n"
    "    if: {detected: credit_card, key: [alice], team: research, model: \"gpt-*\", zone: "
    "external}\n"
    "    then: {action: route, provider: local, model: local-small}\n"
    "  - name: mask\n"
    "    if: {detected: [email, customers]}\n"
    "    then: {action: redact, detectors: [email, customers, pii]}\n"
    "  - name: default\n"
    "    then: {action: allow}\n"
    "audit:\n"
    "  dir: data/audit\n"
    "  signing_key: keys/gw.sign.key\n"
    "  seal_to: keys/auditor.seal.pub\n"
    "  sync: always\n"
    "  on_failure: allow\n"
    "limits:\n"
    "  max_body_bytes: 1000000\n"
    "  max_header_bytes: 16384\n"
    "  max_connections: 100\n"
    "  header_timeout_ms: 5000\n"
    "  idle_timeout_ms: 30000\n"
    "  upstream_timeout_ms: 90000\n"
    "  engine_queue: 8\n";

static void make_fixture_files(void)
{
    char p[512];
    snprintf(p, sizeof p, "%s/certs", tmpdir);
    mkdir(p, 0700);
    snprintf(p, sizeof p, "%s/lists", tmpdir);
    mkdir(p, 0700);
    snprintf(p, sizeof p, "%s/keys", tmpdir);
    mkdir(p, 0700);
    write_file("certs/server.crt", "x\n", 2);
    write_file("certs/server.key", "x\n", 2);
    write_file("certs/ca.pem", "x\n", 2);
    write_file("keys/auditor.seal.pub", "x\n", 2);
    const char kw[] = "# customers\nAcme Corp\n\n  Globex  \r\n# end\nInitech";
    write_file("lists/customers.txt", kw, sizeof kw - 1);
}

/* full_text -- full_cfg with /CERTDIR replaced by the temp dir (an absolute path). */
static char *full_text(void)
{
    const char *mark = strstr(full_cfg, "/CERTDIR");
    size_t need = sizeof full_cfg + strlen(tmpdir);
    char *t = malloc(need);
    snprintf(t, need, "%.*s%s%s", (int)(mark - full_cfg), full_cfg, tmpdir, mark + 8);
    return t;
}

static int path_is(const char *got, const char *rel)
{
    char want[512];
    snprintf(want, sizeof want, "%s/%s", tmpdir, rel);
    return got && strcmp(got, want) == 0;
}

static void test_full_config(void)
{
    setenv("AIRLOCK_TEST_KEY", "sk-test-123", 1);
    char *text = full_text();
    struct config *c = NULL;
    struct config_errors e;
    int r = load(text, &c, &e);
    free(text);
    if (r != 0)
        dump_errs(&e);
    REQUIRE(r == 0 && c);
    CHECK_EQ_STR(c->path, "t.yaml");
    CHECK_EQ_INT(c->refs, 1);

    REQUIRE(c->n_listens == 3);
    CHECK_EQ_STR(c->listens[0].host, "127.0.0.1");
    CHECK_EQ_INT(c->listens[0].port, 8080);
    CHECK(c->listens[0].loopback);
    CHECK(c->listens[0].tls_cert == NULL);
    CHECK_EQ_INT(c->listens[0].pos.line, 2);
    CHECK_EQ_INT(c->listens[0].pos.col, 5);
    CHECK_EQ_STR(c->listens[1].address, "[::1]:8443");
    CHECK_EQ_STR(c->listens[1].host, "::1");
    CHECK_EQ_INT(c->listens[1].port, 8443);
    CHECK(c->listens[1].loopback);
    CHECK(path_is(c->listens[1].tls_cert, "certs/server.crt"));
    CHECK(path_is(c->listens[1].tls_key, "certs/server.key"));
    CHECK_EQ_STR(c->listens[2].host, "0.0.0.0");
    CHECK(!c->listens[2].loopback);
    CHECK(path_is(c->listens[2].tls_cert, "certs/server.crt")); /* absolute stays as is */

    CHECK(c->auth);
    REQUIRE(c->n_keys == 2);
    CHECK_EQ_STR(c->keys[0].name, "alice");
    CHECK_EQ_STR(c->keys[0].team, "research");
    CHECK(c->keys[0].budget_usd_per_day == 12.5);
    uint8_t h[32];
    crypto_hash_sha256(h, (const unsigned char *)"sk-alice-secret", 15);
    CHECK(memcmp(c->keys[0].key_sha256, h, 32) == 0);
    CHECK(config_key_find_sha256(c, h) == &c->keys[0]);
    CHECK_EQ_STR(c->keys[1].name, "bob");
    CHECK(c->keys[1].team == NULL);
    CHECK(c->keys[1].budget_usd_per_day < 0);
    CHECK(c->keys[1].key_sha256[0] == 0x00 && c->keys[1].key_sha256[10] == 0xaa &&
          c->keys[1].key_sha256[31] == 0xff);
    CHECK(config_key_find_sha256(c, c->keys[1].key_sha256) == &c->keys[1]);
    h[0] ^= 1;
    CHECK(config_key_find_sha256(c, h) == NULL);

    REQUIRE(c->n_providers == 4);
    const struct config_provider *p = config_provider_find(c, "openai");
    REQUIRE(p);
    CHECK_EQ_INT(p->type, CONFIG_PROVIDER_OPENAI);
    CHECK_EQ_INT(p->zone, CONFIG_ZONE_EXTERNAL);
    CHECK_EQ_STR(p->base_url, "https://api.openai.com/v1/");
    CHECK(p->tls);
    CHECK_EQ_STR(p->host, "api.openai.com");
    CHECK_EQ_INT(p->port, 443);
    CHECK_EQ_STR(p->path_prefix, "/v1");
    CHECK_EQ_STR(p->api_key, "sk-test-123");
    CHECK_EQ_INT(p->timeout_ms, 30000);
    CHECK(p->ca_file == NULL);
    p = config_provider_find(c, "corp");
    REQUIRE(p);
    CHECK_EQ_INT(p->type, CONFIG_PROVIDER_OPENAI_COMPAT);
    CHECK_EQ_INT(p->zone, CONFIG_ZONE_INTERNAL);
    CHECK(!p->tls);
    CHECK_EQ_STR(p->host, "::1");
    CHECK_EQ_INT(p->port, 9000);
    CHECK_EQ_STR(p->path_prefix, "");
    CHECK(p->api_key == NULL);
    CHECK(path_is(p->ca_file, "certs/ca.pem"));
    CHECK_EQ_INT(p->timeout_ms, 0);
    p = config_provider_find(c, "claude");
    REQUIRE(p);
    CHECK_EQ_INT(p->type, CONFIG_PROVIDER_ANTHROPIC);
    CHECK_EQ_INT(p->port, 8443);
    CHECK_EQ_STR(p->path_prefix, "/x/y");
    p = config_provider_find(c, "local");
    REQUIRE(p);
    CHECK_EQ_INT(p->type, CONFIG_PROVIDER_BUILTIN);
    CHECK_EQ_INT(p->zone, CONFIG_ZONE_INTERNAL);
    CHECK(path_is(p->model_path, "models/small.gguf"));
    CHECK_EQ_INT(p->threads, 4);
    CHECK_EQ_INT(p->context, 2048);
    CHECK(p->base_url == NULL && p->host == NULL);
    CHECK(config_provider_find(c, "nope") == NULL);

    REQUIRE(c->n_models == 3);
    const struct config_model *m = config_model_find(c, "gpt-4o");
    REQUIRE(m);
    CHECK_EQ_STR(m->provider, "openai");
    CHECK_EQ_STR(c->providers[m->provider_index].name, "openai");
    CHECK_EQ_STR(m->upstream_model, "gpt-4o");
    CHECK(m->input_per_mtok == 2.5 && m->output_per_mtok == 10 && m->cached_input_per_mtok == 1.25);
    m = config_model_find(c, "smart");
    REQUIRE(m);
    CHECK_EQ_STR(m->upstream_model, "claude-sonnet-4");
    CHECK_EQ_STR(c->providers[m->provider_index].name, "claude");
    CHECK(m->cached_input_per_mtok < 0);
    m = config_model_find(c, "local-small");
    REQUIRE(m);
    CHECK(m->input_per_mtok == 0 && m->output_per_mtok == 0);
    CHECK_EQ_STR(c->providers[m->provider_index].name, "local");
    CHECK(config_model_find(c, "gpt") == NULL);

    REQUIRE(c->n_detectors == 3);
    CHECK_EQ_STR(c->detectors[0].name, "project_code");
    CHECK_EQ_STR(c->detectors[0].regex, "PRJ-[0-9]{4}");
    CHECK(c->detectors[0].keywords == NULL);
    REQUIRE(c->detectors[1].n_keywords == 2);
    CHECK_EQ_STR(c->detectors[1].keywords[1], "blue heron");
    CHECK(c->detectors[1].regex == NULL);
    REQUIRE(c->detectors[2].n_keywords == 3);
    CHECK_EQ_STR(c->detectors[2].keywords[0], "Acme Corp");
    CHECK_EQ_STR(c->detectors[2].keywords[1], "Globex");
    CHECK_EQ_STR(c->detectors[2].keywords[2], "Initech");
    CHECK(path_is(c->detectors[2].keywords_file, "lists/customers.txt"));

    REQUIRE(c->n_rules == 4);
    struct config_rule *rl = &c->rules[0];
    CHECK_EQ_STR(rl->name, "no-secrets");
    CHECK_EQ_INT(rl->n_detected, 2);
    CHECK_EQ_STR(rl->detected[0], "secrets");
    CHECK_EQ_INT(rl->action, CONFIG_ACTION_BLOCK);
    CHECK_EQ_INT(rl->zone, CONFIG_ZONE_ANY);
    CHECK_EQ_INT(rl->pos.line, 46);
    rl = &c->rules[1];
    REQUIRE(rl->n_detected == 1 && rl->n_keys == 1 && rl->n_teams == 1 && rl->n_models == 1);
    CHECK_EQ_STR(rl->detected[0], "credit_card");
    CHECK_EQ_STR(rl->keys[0], "alice");
    CHECK_EQ_STR(rl->teams[0], "research");
    CHECK_EQ_STR(rl->models[0], "gpt-*");
    CHECK_EQ_INT(rl->zone, CONFIG_ZONE_EXTERNAL);
    CHECK_EQ_INT(rl->action, CONFIG_ACTION_ROUTE);
    CHECK_EQ_STR(rl->provider, "local");
    CHECK_EQ_STR(rl->model, "local-small");
    rl = &c->rules[2];
    CHECK_EQ_INT(rl->action, CONFIG_ACTION_REDACT);
    REQUIRE(rl->n_redact_detectors == 3);
    CHECK_EQ_STR(rl->redact_detectors[2], "pii");
    CHECK(rl->provider == NULL && rl->model == NULL);
    rl = &c->rules[3];
    CHECK_EQ_INT(rl->action, CONFIG_ACTION_ALLOW);
    CHECK(rl->n_detected == 0 && rl->n_keys == 0 && rl->n_models == 0);

    CHECK(path_is(c->audit.dir, "data/audit"));
    CHECK(path_is(c->audit.signing_key, "keys/gw.sign.key"));
    CHECK(path_is(c->audit.seal_to, "keys/auditor.seal.pub"));
    CHECK_EQ_INT(c->audit.sync, CONFIG_SYNC_ALWAYS);
    CHECK_EQ_INT(c->audit.on_failure, CONFIG_ON_FAILURE_ALLOW);

    CHECK_EQ_INT(c->limits.max_body_bytes, 1000000);
    CHECK_EQ_INT(c->limits.max_header_bytes, 16384);
    CHECK_EQ_INT(c->limits.max_connections, 100);
    CHECK_EQ_INT(c->limits.header_timeout_ms, 5000);
    CHECK_EQ_INT(c->limits.idle_timeout_ms, 30000);
    CHECK_EQ_INT(c->limits.upstream_timeout_ms, 90000);
    CHECK_EQ_INT(c->limits.engine_queue, 8);
    config_unref(c);
}

static void test_defaults(void)
{
    struct config *c = NULL;
    struct config_errors e;
    REQUIRE(load("rules: []\n", &c, &e) == 0);
    CHECK(!c->auth);
    REQUIRE(c->n_listens == 1);
    CHECK_EQ_STR(c->listens[0].address, "127.0.0.1:8080");
    CHECK(c->listens[0].loopback);
    CHECK_EQ_INT(c->n_rules, 0); /* allowed: everything is denied by default */
    CHECK(c->audit.dir == NULL);
    CHECK_EQ_INT(c->audit.sync, CONFIG_SYNC_BATCH);
    CHECK_EQ_INT(c->audit.on_failure, CONFIG_ON_FAILURE_REFUSE);
    CHECK_EQ_INT(c->limits.max_body_bytes, 4194304);
    CHECK_EQ_INT(c->limits.max_header_bytes, 32768);
    CHECK_EQ_INT(c->limits.max_connections, 4096);
    CHECK_EQ_INT(c->limits.header_timeout_ms, 10000);
    CHECK_EQ_INT(c->limits.idle_timeout_ms, 60000);
    CHECK_EQ_INT(c->limits.upstream_timeout_ms, 120000);
    CHECK_EQ_INT(c->limits.engine_queue, 64);
    config_unref(c);
    REQUIRE(load("listen: [{address: 'localhost:1'}, {address: '127.3.4.5:65535'}]\n", &c, &e) ==
            0);
    CHECK(c->listens[0].loopback && c->listens[1].loopback);
    CHECK_EQ_INT(c->listens[1].port, 65535);
    config_unref(c);
}

static void test_errors_structure(void)
{
    EXPECT_ERR("listen:\n  - address: 127.0.0.1:8080\nlistne: []\n", 3, 1,
               "unknown key 'listne' in the configuration (allowed: listen, keys,");
    EXPECT_ERR("listen:\n  address: 127.0.0.1:8080\n", 2, 3, "listen must be a list");
    EXPECT_ERR("listen:\n  - address: 127.0.0.1:8080\n    port: 1\n", 3, 5,
               "unknown key 'port' in listen entry (allowed: address, tls, mode)");
    EXPECT_ERR("listen:\n  - tls: {cert: a, key: b}\n", 2, 5, "missing required field 'address'");
    EXPECT_ERR("audit: {dir: a, dir: b}\n", 1, 17, "duplicate key 'dir' in audit");
    EXPECT_ERR("rules:\n  - name: x\n    if: {detected: email}\n", 2, 5,
               "rule 'x': missing required field 'then'");
    EXPECT_ERR("rules: {a: 1}\n", 1, 8, "rules must be a list");
    EXPECT_ERR("- a\n- b\n", 1, 1, "must be a mapping of sections");
    EXPECT_ERR("keys: [{name: a, key: k, team: [x]}]\n", 1, 32, "team must be a string");
}

static void test_errors_listen(void)
{
    EXPECT_ERR("listen:\n  - address: 127.0.0.1:0\n", 2, 14, "invalid port");
    EXPECT_ERR("listen:\n  - address: 127.0.0.1:http\n", 2, 14, "invalid port");
    EXPECT_ERR("listen:\n  - address: 127.0.0.1\n", 2, 14, "must be HOST:PORT");
    EXPECT_ERR("listen:\n  - address: ::1:80\n", 2, 14, "IPv6 as [::1]:PORT");
    EXPECT_ERR("keys: [{name: a, key: k}]\nlisten:\n  - address: 0.0.0.0:8080\n", 3, 5,
               "plain HTTP is only allowed on loopback");
    EXPECT_ERR("listen:\n  - address: 192.168.1.1:8443\n    tls: {cert: nocert.pem, key: "
               "nokey.pem}\n",
               3, 17, "tls cert");
    EXPECT_ERR("listen:\n  - address: 192.168.1.1:8443\n    tls: {cert: nocert.pem, key: "
               "nokey.pem}\n",
               3, 34, "tls key");
    /* TLS on a public address but no keys: authentication off is refused */
    EXPECT_ERR("listen:\n  - address: 192.168.1.1:8443\n    tls: {cert: certs/server.crt, key: "
               "certs/server.key}\n",
               2, 5, "no keys section");
}

static void test_errors_keys(void)
{
    EXPECT_ERR("keys:\n  - name: a\n    key_sha256: abcd\n", 3, 17, "64 hex characters");
    EXPECT_ERR("keys:\n  - name: a\n    key_sha256: "
               "zz112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n",
               3, 17, "64 hex characters");
    EXPECT_ERR("keys:\n  - name: a\n    key: k\n    key_sha256: "
               "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n",
               2, 5, "not both");
    EXPECT_ERR("keys:\n  - name: a\n    team: t\n", 2, 5, "'key' or 'key_sha256'");
    EXPECT_ERR("keys:\n  - {name: a, key: k1}\n  - {name: a, key: k2}\n", 3, 5,
               "duplicate key name 'a' (first at line 2)");
    EXPECT_ERR("keys:\n  - {name: a, key: k1}\n  - {name: b, key: k1}\n", 3, 5, "same key as 'a'");
    EXPECT_ERR("keys:\n  - {name: a, key: k1, budget_usd_per_day: lots}\n", 2, 44,
               "budget_usd_per_day must be a number");
    EXPECT_ERR("keys: {a: 1}\n", 1, 7, "keys must be a list");
}

static void test_errors_providers(void)
{
    EXPECT_ERR("providers:\n  p: {type: gemini, base_url: 'https://x'}\n", 2, 13,
               "type must be one of openai, anthropic, openai-compatible, builtin");
    EXPECT_ERR("providers:\n  p: {base_url: 'https://x'}\n", 2, 6, "missing required field 'type'");
    EXPECT_ERR("providers:\n  p: {type: openai}\n", 2, 6, "missing required field 'base_url'");
    EXPECT_ERR("providers:\n  p: {type: openai, base_url: 'api.openai.com'}\n", 2, 31,
               "must be http(s)://HOST[:PORT][/PATH]");
    EXPECT_ERR("providers:\n  p: {type: openai, base_url: 'https://h:99999/'}\n", 2, 31,
               "must be http(s)://");
    EXPECT_ERR("providers:\n  p: {type: openai, base_url: 'https:///v1'}\n", 2, 31,
               "must be http(s)://");
    EXPECT_ERR("providers:\n  p: {type: openai, base_url: 'https://u@h/'}\n", 2, 31,
               "must be http(s)://");
    EXPECT_ERR("providers:\n  p: {type: openai, base_url: 'https://h', zone: dmz}\n", 2, 50,
               "zone must be one of external, internal");
    EXPECT_ERR("providers:\n  p: {type: builtin}\n", 2, 6, "needs 'model: FILE.gguf'");
    EXPECT_ERR("providers:\n  p: {type: builtin, model: m.gguf, zone: external}\n", 2, 43,
               "always zone internal");
    EXPECT_ERR("providers:\n  p: {type: builtin, model: m.gguf, base_url: 'http://h'}\n", 2, 47,
               "base_url is not used by a builtin");
    EXPECT_ERR("providers:\n  p: {type: openai, base_url: 'https://h', threads: 2}\n", 2, 53,
               "threads is only used by a builtin");
    EXPECT_ERR("providers:\n  p: {type: openai, base_url: 'https://h', max_tokens: 64}\n", 2, 56,
               "max_tokens is only used by a builtin");
    EXPECT_ERR("providers:\n  p: {type: builtin, model: m.gguf, max_tokens: -1}\n", 2, 49,
               "max_tokens must be between");
    EXPECT_ERR("providers:\n  p: {type: openai, base_url: 'https://h'}\n  p: {type: openai, "
               "base_url: 'https://h'}\n",
               3, 3, "duplicate key 'p' in providers");
    EXPECT_ERR("providers:\n  p: {type: openai, base_url: 'https://h', timeout_ms: -5}\n", 2, 56,
               "timeout_ms must be between");
    EXPECT_ERR("providers:\n  p: {type: openai, base_url: 'https://h', timeout_ms: 5s}\n", 2, 56,
               "timeout_ms must be an integer");
    EXPECT_ERR("providers:\n  p: {type: openai, base_url: 'https://h', ca_file: none.pem}\n", 2, 53,
               "ca_file");
    EXPECT_ERR("providers: [a]\n", 1, 12, "providers must be a mapping");
    EXPECT_ERR("providers:\n  p: {type: openai, base_url: 'https://h', apikey: x}\n", 2, 44,
               "unknown key 'apikey' in provider (allowed: type, zone, base_url, api_key");
}

static const char prov[] = "providers:\n"
                           "  p: {type: openai, base_url: 'https://h/v1'}\n"
                           "  loc: {type: builtin, model: m.gguf}\n"
                           "models:\n"
                           "  - {name: m1, provider: p}\n"
                           "  - {name: m2, provider: loc}\n";

static void expect_after_prov(const char *tail, int line, int col, const char *sub)
{
    char text[4096];
    snprintf(text, sizeof text, "%s%s", prov, tail);
    EXPECT_ERR(text, line, col, sub);
}

static void test_errors_models_rules(void)
{
    expect_after_prov("  - {name: m3, provider: nope}\n", 7, 26,
                      "model 'm3': unknown provider 'nope'");
    expect_after_prov("  - {name: m1, provider: p}\n", 7, 5,
                      "duplicate model name 'm1' (first at line 5)");
    expect_after_prov("  - {name: m3}\n", 7, 5, "missing required field 'provider'");
    expect_after_prov("  - {name: m3, provider: p, price: {input_per_mtok: -1}}\n", 7, 53,
                      "input_per_mtok must be between 0");
    expect_after_prov("  - {name: m3, provider: p, price: {input: 1}}\n", 7, 37,
                      "unknown key 'input' in price");
    expect_after_prov("rules:\n  - name: r\n    then: {action: route, model: nope}\n", 9, 34,
                      "rule 'r': unknown model 'nope'");
    expect_after_prov("rules:\n  - name: r\n    then: {action: route, provider: p}\n", 9, 11,
                      "route needs 'model'");
    expect_after_prov("rules:\n  - name: r\n    then: {action: route, provider: zz, model: m1}\n",
                      9, 37, "unknown provider 'zz'");
    expect_after_prov("rules:\n  - name: r\n    then: {action: route, provider: loc, model: m1}\n",
                      9, 37, "model 'm1' is served by provider 'p', not 'loc'");
    expect_after_prov("rules:\n  - name: r\n    then: {action: redact}\n", 9, 11,
                      "redact needs 'detectors'");
    expect_after_prov("rules:\n  - name: r\n    then: {action: redact, detectors: [email, "
                      "passport]}\n",
                      9, 47, "unknown detector 'passport'");
    expect_after_prov("rules:\n  - name: r\n    if: {detected: [pii, secret]}\n    then: "
                      "{action: block}\n",
                      9, 26, "unknown detector 'secret'");
    expect_after_prov("rules:\n  - name: r\n    if: {detected: creditcard}\n    then: "
                      "{action: block}\n",
                      9, 20, "unknown detector 'creditcard'");
    expect_after_prov("rules:\n  - name: r\n    then: {action: deny}\n", 9, 20,
                      "action must be one of block, route, redact, allow");
    expect_after_prov("rules:\n  - name: r\n    then: {provider: p}\n", 9, 11,
                      "missing required field 'action'");
    expect_after_prov("rules:\n  - name: r\n    if: {zone: everywhere}\n    then: {action: "
                      "block}\n",
                      9, 16, "zone must be one of external, internal");
    expect_after_prov("rules:\n  - name: r\n    if: {user: x}\n    then: {action: block}\n", 9, 10,
                      "unknown key 'user' in if (allowed: detected, key, team, model, zone, unscanned)");
    expect_after_prov("rules:\n  - {name: r, then: {action: allow}}\n  - {name: r, then: "
                      "{action: allow}}\n",
                      9, 12, "duplicate rule name 'r' (first at line 8)");
    expect_after_prov("rules:\n  - name: r\n    then: {action: block, model: m1}\n", 9, 34,
                      "only used by route and redact");
    expect_after_prov("keys: [{name: alice, key: k}]\nrules:\n  - name: r\n    if: {key: [alice, "
                      "mallory]}\n    then: {action: block}\n",
                      10, 23, "unknown key name 'mallory'");
    expect_after_prov("rules:\n  - name: r\n    if: {detected: []}\n    then: {action: block}\n", 9,
                      20, "must not be an empty list");
    /* a valid route and redact with provider and group names load */
    char text[2048];
    snprintf(text, sizeof text,
             "%srules:\n  - {name: a, then: {action: route, provider: loc, model: m2}}\n"
             "  - {name: b, then: {action: redact, model: m1, detectors: secrets}}\n",
             prov);
    struct config *c = NULL;
    struct config_errors e;
    int r = load(text, &c, &e);
    if (r)
        dump_errs(&e);
    REQUIRE(r == 0);
    CHECK_EQ_INT(c->models[1].provider_index, 1);
    CHECK_EQ_INT(c->rules[1].n_redact_detectors, 1);
    CHECK_EQ_STR(c->rules[1].model, "m1");
    config_unref(c);
}

static void test_errors_detectors_audit_limits(void)
{
    EXPECT_ERR("detectors:\n  - {name: iban, regex: x}\n", 2, 12, "is a built-in detector");
    EXPECT_ERR("detectors:\n  - {name: pii, regex: x}\n", 2, 12, "is a detector group");
    EXPECT_ERR("detectors:\n  - {name: d, regex: x}\n  - {name: d, keywords: [y]}\n", 3, 12,
               "duplicate detector name 'd'");
    EXPECT_ERR("detectors:\n  - {name: d}\n", 2, 5, "exactly one of regex, keywords");
    EXPECT_ERR("detectors:\n  - {name: d, regex: x, keywords: [y]}\n", 2, 5, "exactly one of");
    EXPECT_ERR("detectors:\n  - {name: d, keywords_file: missing.txt}\n", 2, 30, "keywords_file");
    EXPECT_ERR("detectors:\n  - {name: 'a b', regex: x}\n", 2, 12, "may only contain");
    EXPECT_ERR("exempt:\n  - {detector: mail, values: [x@example.com]}\n", 2, 16,
               "exempt: unknown detector 'mail'");
    EXPECT_ERR("exempt:\n  - {detector: pii, values: [x@example.com]}\n", 2, 16,
               "unknown detector 'pii'");
    EXPECT_ERR("exempt:\n  - {detector: email, values: ['*@*']}\n", 2, 31, "matches too much");
    EXPECT_ERR("exempt:\n  - {detector: email, values: ['*.[a-z]?[!x]*']}\n", 2, 31,
               "matches too much");
    EXPECT_ERR("exempt:\n  - {detector: email}\n", 2, 5, "values");
    {
        char y[400];
        snprintf(y, sizeof(y), "exempt:\n  - {detector: email, values: ['%0255d@x.org']}\n", 0);
        EXPECT_ERR(y, 2, 31, "longer than 254 bytes");
    }
    EXPECT_ERR("exempt:\n  - {detector: email, values: [a@b.c], value: x}\n", 2, 40,
               "unknown key 'value'");
    EXPECT_ERR("exempt: {detector: email}\n", 1, 9, "exempt must be a list");
    write_file("empty_kw.txt", "# nothing\n\n", 11);
    EXPECT_ERR("detectors:\n  - {name: d, keywords_file: empty_kw.txt}\n", 2, 30,
               "has no keywords");
    EXPECT_ERR("audit: {sync: batch}\n", 1, 8, "missing required field 'dir'");
    EXPECT_ERR("audit: {dir: a, sync: sometimes}\n", 1, 23, "sync must be one of batch, always");
    EXPECT_ERR("audit: {dir: a, on_failure: ignore}\n", 1, 29,
               "on_failure must be one of refuse, allow");
    EXPECT_ERR("audit: {dir: a, seal_to: no.pub}\n", 1, 26, "seal_to");
    EXPECT_ERR("limits: {max_body_bytes: 0}\n", 1, 26, "max_body_bytes must be between 1");
    EXPECT_ERR("limits:\n  max_connections: 1.5\n", 2, 20, "must be an integer");
    EXPECT_ERR("limits:\n  max_header_bytes: 99999999999999999999999\n", 2, 21,
               "must be an integer");
    EXPECT_ERR("limits:\n  engine_queue: ' 5'\n", 2, 17, "must be an integer");
    EXPECT_ERR("limits: {max_bytes: 5}\n", 1, 10, "unknown key 'max_bytes' in limits");
}

static void test_env_expansion(void)
{
    setenv("AIRLOCK_T_HOST", "api.example.com", 1);
    setenv("AIRLOCK_T_PORT", "8443", 1);
    unsetenv("AIRLOCK_T_UNSET");
    struct config *c = NULL;
    struct config_errors e;
    int r = load("providers:\n  p:\n    type: openai\n    base_url: "
                 "https://${AIRLOCK_T_HOST}:${AIRLOCK_T_PORT}/v1\n    api_key: "
                 "\"k-${AIRLOCK_T_PORT}-$x\"\n",
                 &c, &e);
    if (r)
        dump_errs(&e);
    REQUIRE(r == 0);
    CHECK_EQ_STR(c->providers[0].host, "api.example.com");
    CHECK_EQ_INT(c->providers[0].port, 8443);
    CHECK_EQ_STR(c->providers[0].api_key, "k-8443-$x");
    config_unref(c);
    EXPECT_ERR("providers:\n  p:\n    type: openai\n    base_url: https://h\n    api_key: "
               "${AIRLOCK_T_UNSET}\n",
               5, 14, "environment variable AIRLOCK_T_UNSET is not set");
    EXPECT_ERR("audit: {dir: '${AIRLOCK_T_HOST'}\n", 1, 14, "unterminated");
    EXPECT_ERR("audit: {dir: '${1BAD}'}\n", 1, 14, "bad environment reference");
    /* an expanded number is still checked */
    setenv("AIRLOCK_T_PORT", "x", 1);
    EXPECT_ERR("limits: {engine_queue: '${AIRLOCK_T_PORT}'}\n", 1, 24, "must be an integer");
}

static void test_relative_paths(void)
{
    char sub[512], path[600];
    snprintf(sub, sizeof sub, "%s/sub", tmpdir);
    mkdir(sub, 0700);
    snprintf(path, sizeof path, "%s/airlock.yaml", sub);
    write_file("sub/kw.txt", "alpha\n", 6);
    const char yml[] = "providers:\n  l: {type: builtin, model: ../m.gguf}\n"
                       "detectors: [{name: k, keywords_file: kw.txt}]\naudit: {dir: data}\n";
    write_file("sub/airlock.yaml", yml, sizeof yml - 1);
    struct config *c = NULL;
    struct config_errors e;
    int r = config_load(path, &c, &e);
    if (r)
        dump_errs(&e);
    REQUIRE(r == 0);
    char want[700];
    snprintf(want, sizeof want, "%s/../m.gguf", sub);
    CHECK_EQ_STR(c->providers[0].model_path, want);
    snprintf(want, sizeof want, "%s/data", sub);
    CHECK_EQ_STR(c->audit.dir, want);
    REQUIRE(c->n_detectors == 1 && c->detectors[0].n_keywords == 1);
    CHECK_EQ_STR(c->detectors[0].keywords[0], "alpha");
    CHECK_EQ_STR(c->path, path);
    config_unref(c);
    /* with no base directory paths stay as written */
    r = config_load_text("x", "audit: {dir: ./d}\n", 18, NULL, &c, &e);
    REQUIRE(r == 0);
    CHECK_EQ_STR(c->audit.dir, "./d");
    config_unref(c);
}

static void test_teams(void)
{
    struct config *c = NULL;
    struct config_errors e;
    REQUIRE(load("teams:\n  - {name: red, budget_usd_per_day: 12.5}\n  - {name: blue}\n"
                 "rules: [{name: a, then: {action: allow}}]\n",
                 &c, &e) == 0);
    CHECK_EQ_INT(c->n_teams, 2);
    CHECK(config_team_find(c, "red") && config_team_find(c, "red")->budget_usd_per_day == 12.5);
    CHECK(config_team_find(c, "blue") && config_team_find(c, "blue")->budget_usd_per_day < 0);
    CHECK(config_team_find(c, "green") == NULL);
    config_unref(c);
    c = NULL;
    CHECK(load("teams:\n  - {name: red}\n  - {name: red, budget: 3}\n", &c, &e) != 0);
    CHECK(has_err(&e, 3, 5, "duplicate team name 'red'"));
    CHECK(has_err(&e, 3, 0, "budget"));
}

struct lint_seen {
    int n, line[8];
    char msg[8][256];
};

static void lint_cb(void *ud, struct config_pos pos, const char *msg)
{
    struct lint_seen *l = ud;
    if (l->n < 8) {
        l->line[l->n] = pos.line;
        snprintf(l->msg[l->n], sizeof(l->msg[0]), "%s", msg);
    }
    l->n++;
}

/* valid but probably a typo: warned, not refused */
static void test_lint(void)
{
    struct config *c = NULL;
    struct config_errors e;
    struct lint_seen l;

    REQUIRE(load("teams:\n  - {name: red, budget_usd_per_day: 5}\n"
                 "keys:\n"
                 "  - {name: a, key: k1, team: red}\n"
                 "  - {name: b, key: k2, team: rde}\n"
                 "  - {name: c, key: k3}\n"
                 "rules:\n"
                 "  - {name: for-red, if: {team: [red]}, then: {action: allow}}\n"
                 "  - {name: for-ops, if: {team: [ops]}, then: {action: block}}\n",
                 &c, &e) == 0);
    memset(&l, 0, sizeof(l));
    CHECK_EQ_INT(config_lint(c, lint_cb, &l), 2);
    REQUIRE(l.n == 2);
    CHECK_EQ_INT(l.line[0], 5);
    CHECK(strstr(l.msg[0], "key 'b'") && strstr(l.msg[0], "'rde'") &&
          strstr(l.msg[0], "no budget"));
    CHECK_EQ_INT(l.line[1], 9);
    CHECK(strstr(l.msg[1], "rule 'for-ops'") && strstr(l.msg[1], "'ops'") &&
          strstr(l.msg[1], "never matches"));
    config_unref(c);

    /* no `teams` list at all: teams are labels for rules and reports, no warning */
    c = NULL;
    REQUIRE(load("keys:\n  - {name: a, key: k1, team: red}\n"
                 "rules:\n  - {name: r, if: {team: [red]}, then: {action: allow}}\n",
                 &c, &e) == 0);
    memset(&l, 0, sizeof(l));
    CHECK_EQ_INT(config_lint(c, lint_cb, &l), 0);
    CHECK_EQ_INT(l.n, 0);
    config_unref(c);
}

static void test_refcount(void)
{
    struct config *c = NULL;
    struct config_errors e;
    REQUIRE(load("rules: [{name: a, then: {action: allow}}]\n", &c, &e) == 0);
    CHECK_EQ_INT(c->refs, 1);
    CHECK(config_ref(c) == c);
    CHECK(config_ref(c) == c);
    CHECK_EQ_INT(c->refs, 3);
    config_unref(c);
    config_unref(c);
    CHECK_EQ_INT(c->refs, 1);
    CHECK_EQ_STR(c->rules[0].name, "a"); /* still alive; ASan catches a premature free */
    config_unref(c);
    config_unref(NULL);
    CHECK(config_ref(NULL) == NULL);
}

static void test_embedded_default(void)
{
    char *buf = NULL;
    const char *t = config_embedded_default(NULL, &buf);
    REQUIRE(t);
    CHECK(buf == NULL);
    struct config *c = NULL;
    struct config_errors e;
    int r = config_load_text("<embedded>", t, strlen(t), NULL, &c, &e);
    if (r)
        dump_errs(&e);
    REQUIRE(r == 0);
    CHECK(!c->auth);
    CHECK_EQ_INT(c->n_providers, 0);
    CHECK_EQ_INT(c->n_models, 0);
    REQUIRE(c->n_rules == 2);
    CHECK_EQ_INT(c->rules[0].action, CONFIG_ACTION_BLOCK);
    CHECK_EQ_STR(c->rules[0].detected[0], "secrets");
    CHECK_EQ_INT(c->rules[1].action, CONFIG_ACTION_ALLOW);
    CHECK_EQ_STR(c->listens[0].address, "127.0.0.1:8080");
    CHECK_EQ_STR(c->audit.dir, "./airlock-data/audit");
    config_unref(c);

    const char *mp = "/tmp/we\"ird \\ dir: #x/model.gguf";
    t = config_embedded_default(mp, &buf);
    REQUIRE(t && buf == t);
    r = config_load_text("<embedded>", t, strlen(t), NULL, &c, &e);
    if (r)
        dump_errs(&e);
    REQUIRE(r == 0);
    const struct config_provider *p = config_provider_find(c, "local");
    REQUIRE(p);
    CHECK_EQ_INT(p->type, CONFIG_PROVIDER_BUILTIN);
    CHECK_EQ_STR(p->model_path, mp);
    CHECK_EQ_INT(p->max_tokens, 1024); /* a demo's answer is bounded */
    REQUIRE(c->n_rules == 2);
    CHECK_EQ_STR(c->rules[0].name, "no-secrets");
    CHECK_EQ_INT(c->rules[1].action, CONFIG_ACTION_ROUTE);
    CHECK_EQ_STR(c->rules[1].model, "local");
    CHECK_EQ_STR(c->rules[1].provider, "local");
    CHECK(config_model_find(c, "local") != NULL);
    config_unref(c);
    free(buf);
}

static void test_hostile_input(void)
{
    struct config *c = NULL;
    struct config_errors e;
    EXPECT_ERR("", 0, 0, "empty configuration file");
    EXPECT_ERR("# only a comment\n", 0, 0, "empty configuration file");
    EXPECT_ERR("listen: [\n", 2, 1, "YAML syntax error");
    EXPECT_ERR("a: b\n c: d\n  e\n", 2, 3, "YAML syntax error");
    EXPECT_ERR("listen:\n\t- x\n", 2, 1, "YAML syntax error");
    EXPECT_ERR("just a scalar\n", 1, 1, "must be a mapping of sections");
    /* binary with NUL bytes */
    const char bin[] = "listen:\0\x01\xff\xfe garbage";
    CHECK(config_load_text("b", bin, sizeof bin, NULL, &c, &e) == -1 && c == NULL);
    CHECK(e.n >= 1);
    /* a recursive alias must not loop */
    EXPECT_ERR("rules: &a [*a]\n", 1, 8, "aliases");
    /* aliases would let a small file expand into a huge tree */
    EXPECT_ERR("detectors:\n  - {name: a, keywords: &k [x, y]}\n  - {name: b, keywords: *k}\n", 2,
               25, "anchors and aliases");
    EXPECT_ERR("rules: []\n---\nrules: []\n", 0, 0, "only one YAML document");
    EXPECT_ERR("rules: []\n---\n[\n", 4, 1, "YAML syntax error");
    /* encoding problems are placed by their byte offset */
    EXPECT_ERR("rules: []\nlimits: {engine_queue: 5\xff}\n", 2, 25,
               "invalid text: invalid leading UTF-8 octet (0xff)");
    EXPECT_ERR("rules: []\n\x01\n", 2, 1, "invalid text: control characters are not allowed");
    /* millions of tiny values are refused before the loader allocates a node each */
    {
        size_t cnt = 4u << 20;
        char *t = malloc(cnt * 2 + 16);
        REQUIRE(t);
        t[0] = '[';
        for (size_t i = 0; i < cnt; i++) {
            t[1 + 2 * i] = '1';
            t[2 + 2 * i] = ',';
        }
        memcpy(t + 1 + 2 * cnt, "]\n", 3);
        EXPECT_ERR(t, 1, 400000, "too many values in one file (more than 200000)");
        free(t);
    }
    /* deep nesting stops early, without libyaml's cost that grows with depth */
    {
        size_t depth = 1u << 20;
        char *t = malloc(depth + 1);
        REQUIRE(t);
        memset(t, '[', depth);
        t[depth] = '\0';
        EXPECT_ERR(t, 1, 33, "nesting too deep (more than 32 levels)");
        free(t);
    }
    /* oversized list */
    {
        size_t cap = 10001 * 4 + 64, o = 0;
        char *t = malloc(cap);
        REQUIRE(t);
        o += (size_t)snprintf(t + o, cap - o, "rules: [");
        for (int i = 0; i < 10001; i++)
            o += (size_t)snprintf(t + o, cap - o, "%s1", i ? "," : "");
        snprintf(t + o, cap - o, "]\n");
        EXPECT_ERR(t, 1, 8, "too many entries (10001; the limit is 10000)");
        free(t);
    }
    /* a FIFO must not hang the loader */
    {
        char fifo[512];
        snprintf(fifo, sizeof fifo, "%s/fifo.yaml", tmpdir);
        REQUIRE(mkfifo(fifo, 0600) == 0);
        CHECK(config_load(fifo, &c, &e) == -1 && c == NULL);
        CHECK(has_err(&e, 0, 0, "not a regular file"));
        unlink(fifo);
    }
    /* 10 MB of random bytes */
    size_t n = 10u << 20;
    unsigned char *junk = malloc(n);
    REQUIRE(junk);
    randombytes_buf(junk, n);
    CHECK(config_load_text("junk", (const char *)junk, n, NULL, &c, &e) == -1 && c == NULL);
    CHECK(e.n >= 1);
    /* 10 MB of valid-looking but wrong YAML */
    memset(junk, 'a', n);
    junk[n - 1] = '\n';
    CHECK(config_load_text("junk", (const char *)junk, n, NULL, &c, &e) == -1 && c == NULL);
    free(junk);
    /* over the 16 MiB cap, as a file */
    char path[512];
    snprintf(path, sizeof path, "%s/huge.yaml", tmpdir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    REQUIRE(fd >= 0);
    CHECK(ftruncate(fd, (17 << 20)) == 0);
    close(fd);
    CHECK(config_load(path, &c, &e) == -1 && c == NULL);
    CHECK(has_err(&e, 0, 0, "file too large"));
    unlink(path);
    CHECK(config_load("/nonexistent/airlock.yaml", &c, &e) == -1);
    CHECK(has_err(&e, 0, 0, "No such file"));
    CHECK(config_load(tmpdir, &c, &e) == -1);
    CHECK(has_err(&e, 0, 0, "not a regular file"));
    /* many problems: capped, with the rest counted */
    char big[20000];
    size_t off = (size_t)snprintf(big, sizeof big, "limits:\n");
    for (int i = 0; i < 100; i++)
        off += (size_t)snprintf(big + off, sizeof big - off, "  k%d: 1\n", i);
    CHECK(load(big, &c, &e) == -1);
    CHECK_EQ_INT(e.n, CONFIG_MAX_ERRORS);
    CHECK_EQ_INT(e.dropped, 100 - CONFIG_MAX_ERRORS);
    char out[65536];
    config_errors_format(&e, out, sizeof out);
    CHECK(strstr(out, "t.yaml:2:3: unknown key 'k0' in limits") != NULL);
    CHECK(strstr(out, "t.yaml: ... and 36 more problems\n") != NULL);
}

static void test_errors_format(void)
{
    struct config_errors e;
    memset(&e, 0, sizeof e);
    e.file = "a.yaml";
    e.n = 2;
    e.items[0].line = 3;
    e.items[0].col = 7;
    snprintf(e.items[0].message, sizeof e.items[0].message, "bad thing");
    snprintf(e.items[1].message, sizeof e.items[1].message, "no position");
    char buf[256];
    size_t n = config_errors_format(&e, buf, sizeof buf);
    CHECK_EQ_STR(buf, "a.yaml:3:7: bad thing\na.yaml: no position\n");
    CHECK_EQ_INT(n, strlen(buf));
    n = config_errors_format(&e, buf, 10);
    CHECK_EQ_INT(n, 9);
    CHECK_EQ_STR(buf, "a.yaml:3:");
    /* errors come back in file order */
    struct config *c = NULL;
    CHECK(load("limits: {engine_queue: x}\nlisten: {}\n", &c, &e) == -1);
    REQUIRE(e.n == 2);
    CHECK_EQ_INT(e.items[0].line, 1);
    CHECK_EQ_INT(e.items[1].line, 2);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/airlock-config-test-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 2;
    }
    make_fixture_files();
    RUN(test_full_config);
    RUN(test_defaults);
    RUN(test_errors_structure);
    RUN(test_errors_listen);
    RUN(test_errors_keys);
    RUN(test_errors_providers);
    RUN(test_errors_models_rules);
    RUN(test_errors_detectors_audit_limits);
    RUN(test_env_expansion);
    RUN(test_relative_paths);
    RUN(test_teams);
    RUN(test_lint);
    RUN(test_refcount);
    RUN(test_embedded_default);
    RUN(test_hostile_input);
    RUN(test_errors_format);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
    return harness_done();
}
