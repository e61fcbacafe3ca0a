/* test_egress.c -- the `egress` section and `listen.mode` (config/egress.c, listen.c):
 * every field and default, every error with its position (unknown keys, bad globs and
 * ports, unknown or builtin providers, duplicate hosts, a forward listener without the
 * section, intercept without a CA) and the CA checks (not a CA, keyUsage, expired, a
 * key that does not match or that others may read, garbage files). */
#include "config/config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/config/ca_test_util.h"
#include "tests/harness.h"

static char tmpdir[256];

static int load(const char *text, struct config **cfg, struct config_errors *errs)
{
    return config_load_text("t.yaml", text, strlen(text), tmpdir, cfg, errs);
}

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

#define EXPECT_OK(text, cfgp)                                                                      \
    do {                                                                                           \
        struct config_errors e_;                                                                   \
        *(cfgp) = NULL;                                                                            \
        if (load((text), (cfgp), &e_) != 0) {                                                      \
            dump_errs(&e_);                                                                        \
            CHECK(!"config did not load");                                                         \
        }                                                                                          \
    } while (0)

/* the head of every config below: lines 1-9 */
#define HEAD                                                                                       \
    "listen:\n"                                                                                    \
    "  - {address: 127.0.0.1:8080}\n"                                                              \
    "  - {address: 127.0.0.1:3128, mode: forward}\n"                                               \
    "providers:\n"                                                                                 \
    "  openai: {type: openai, base_url: https://api.openai.com/v1}\n"                              \
    "  anthropic: {type: anthropic, base_url: https://api.anthropic.com}\n"                        \
    "  corp: {type: openai-compatible, base_url: http://10.1.1.1:8000/v1}\n"                       \
    "  local: {type: builtin, model: m.gguf}\n"                                                    \
    "egress:\n"

static void make_ca_files(void)
{
    char c[512], k[512];
    EVP_PKEY *k1, *k2, *k3, *k4, *k5, *k6;
    X509 *ca = cat_make("test CA", 1, "critical,keyCertSign,cRLSign", 3650, NULL, NULL, &k1);
    X509 *nonca = cat_make("not a CA", 0, "digitalSignature", 365, NULL, NULL, &k2);
    X509 *nobc = cat_make("no bc", CAT_NO_BC, NULL, 365, NULL, NULL, &k3);
    X509 *noku = cat_make("ca no certsign", 1, "critical,cRLSign", 365, NULL, NULL, &k4);
    X509 *old = cat_make("expired", 1, NULL, -1, NULL, NULL, &k5);
    X509 *other = cat_make("other CA", 1, NULL, 365, NULL, NULL, &k6);
#define W(name, x, key, mode)                                                                      \
    do {                                                                                           \
        snprintf(c, sizeof c, "%s/%s.crt", tmpdir, name);                                          \
        snprintf(k, sizeof k, "%s/%s.key", tmpdir, name);                                          \
        cat_write(c, x, k, key, mode);                                                             \
    } while (0)
    W("ca", ca, k1, 0600);
    W("ca400", ca, k1, 0400);
    W("nonca", nonca, k2, 0600);
    W("nobc", nobc, k3, 0600);
    W("noku", noku, k4, 0600);
    W("old", old, k5, 0600);
    W("mismatch", ca, k6, 0600); /* the CA's certificate, another key */
    W("loose", ca, k1, 0644);
    W("group", ca, k1, 0640);
#undef W
    snprintf(c, sizeof c, "%s/garbage.crt", tmpdir);
    FILE *f = fopen(c, "w");
    fputs("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n", f);
    fclose(f);
    snprintf(k, sizeof k, "%s/garbage.key", tmpdir);
    f = fopen(k, "w");
    fputs("hello\n", f);
    fclose(f);
    chmod(k, 0600);
    snprintf(c, sizeof c, "%s/m.gguf", tmpdir);
    f = fopen(c, "w");
    fputs("x", f);
    fclose(f);
    X509 *all[] = {ca, nonca, nobc, noku, old, other};
    EVP_PKEY *keys[] = {k1, k2, k3, k4, k5, k6};
    for (size_t i = 0; i < 6; i++) {
        X509_free(all[i]);
        EVP_PKEY_free(keys[i]);
    }
}

static void test_full(void)
{
    struct config *cfg;
    EXPECT_OK(HEAD "  ca: {cert: ca.crt, key: ca.key}\n"
                   "  intercept:\n"
                   "    - {host: API.OpenAI.com, provider: openai}\n"
                   "    - {host: \"api.anthropic.com:8443\", provider: anthropic}\n"
                   "    - {host: llm.corp.example, provider: corp}\n"
                   "  tunnel: [\"*.GitHub.com\", \"pypi.org:443\", \"10.0.0.5:22\",\n"
                   "           \"[FD00:0::1]:8443\", \"*.*.deep.example:8080\", \"*\", "
                   "\"[::1]\"]\n"
                   "  default: tunnel\n"
                   "  max_tunnels: 50\n"
                   "  tunnel_idle_ms: 60000\n",
              &cfg);
    REQUIRE(cfg);
    CHECK_EQ_INT(cfg->n_listens, 2);
    CHECK(cfg->listens[0].mode == CONFIG_LISTEN_GATEWAY);
    CHECK(cfg->listens[1].mode == CONFIG_LISTEN_FORWARD);
    const struct config_egress *eg = &cfg->egress;
    CHECK(eg->present);
    CHECK_EQ_INT(eg->pos.line, 10);
    char want[512];
    snprintf(want, sizeof want, "%s/ca.crt", tmpdir);
    CHECK_EQ_STR(eg->ca_cert, want);
    snprintf(want, sizeof want, "%s/ca.key", tmpdir);
    CHECK_EQ_STR(eg->ca_key, want);
    REQUIRE(eg->n_intercept == 3);
    CHECK_EQ_STR(eg->intercept[0].host, "api.openai.com");
    CHECK_EQ_INT(eg->intercept[0].port, 443);
    CHECK_EQ_STR(eg->intercept[0].provider, "openai");
    CHECK_EQ_INT(eg->intercept[0].prov_index, 0);
    CHECK_EQ_INT(eg->intercept[0].pos.line, 12);
    CHECK_EQ_STR(eg->intercept[1].host, "api.anthropic.com");
    CHECK_EQ_INT(eg->intercept[1].port, 8443);
    CHECK_EQ_INT(eg->intercept[1].prov_index, 1);
    CHECK_EQ_INT(eg->intercept[2].prov_index, 2);
    REQUIRE(eg->n_tunnel == 7);
    CHECK_EQ_STR(eg->tunnel[0].glob, "*.github.com");
    CHECK_EQ_INT(eg->tunnel[0].port, 443);
    CHECK(!eg->tunnel[0].literal);
    CHECK_EQ_INT(eg->tunnel[0].pos.line, 15);
    CHECK_EQ_STR(eg->tunnel[1].glob, "pypi.org");
    CHECK_EQ_INT(eg->tunnel[1].port, 443);
    CHECK_EQ_STR(eg->tunnel[2].glob, "10.0.0.5");
    CHECK_EQ_INT(eg->tunnel[2].port, 22);
    CHECK(eg->tunnel[2].literal);
    CHECK_EQ_STR(eg->tunnel[3].glob, "[fd00::1]");
    CHECK_EQ_INT(eg->tunnel[3].port, 8443);
    CHECK(eg->tunnel[3].literal);
    CHECK_EQ_STR(eg->tunnel[4].glob, "*.*.deep.example");
    CHECK_EQ_INT(eg->tunnel[4].port, 8080);
    CHECK_EQ_STR(eg->tunnel[5].glob, "*");
    CHECK_EQ_STR(eg->tunnel[6].glob, "[::1]");
    CHECK(eg->tunnel[6].literal);
    CHECK_EQ_INT(eg->tunnel[6].port, 443);
    CHECK(eg->dflt == CONFIG_EGRESS_TUNNEL);
    CHECK_EQ_INT(eg->max_tunnels, 50);
    CHECK_EQ_INT(eg->tunnel_idle_ms, 60000);
    config_unref(cfg);

    /* a key file mode 0400 is fine too */
    EXPECT_OK(HEAD "  ca: {cert: ca400.crt, key: ca400.key}\n", &cfg);
    config_unref(cfg);
}

static void test_defaults(void)
{
    struct config *cfg;
    EXPECT_OK(HEAD "  tunnel: [pypi.org]\n", &cfg);
    REQUIRE(cfg);
    CHECK(cfg->egress.present);
    CHECK(cfg->egress.dflt == CONFIG_EGRESS_DENY);
    CHECK_EQ_INT(cfg->egress.max_tunnels, 1024);
    CHECK_EQ_INT(cfg->egress.tunnel_idle_ms, 300000);
    CHECK(cfg->egress.ca_cert == NULL && cfg->egress.n_intercept == 0);
    config_unref(cfg);
    EXPECT_OK(HEAD "  {}\n", &cfg);
    REQUIRE(cfg);
    CHECK(cfg->egress.present && cfg->egress.n_tunnel == 0);
    config_unref(cfg);
    /* no section, no forward listener: nothing present, listeners are gateways */
    EXPECT_OK("listen: [{address: 127.0.0.1:8080}]\n", &cfg);
    REQUIRE(cfg);
    CHECK(!cfg->egress.present);
    CHECK(cfg->listens[0].mode == CONFIG_LISTEN_GATEWAY);
    config_unref(cfg);
    /* no listen section: the default listener is a gateway */
    EXPECT_OK("rules: [{name: a, then: {action: allow}}]\n", &cfg);
    REQUIRE(cfg);
    CHECK(cfg->listens[0].mode == CONFIG_LISTEN_GATEWAY);
    config_unref(cfg);
}

static void test_errors_listen_mode(void)
{
    EXPECT_ERR("listen:\n  - {address: 127.0.0.1:3128, mode: proxy}\n", 2, 37, "mode");
    EXPECT_ERR("listen:\n  - {address: 127.0.0.1:8080}\n  - {address: 127.0.0.1:3128, mode: "
               "forward}\n",
               3, 5, "needs an egress section");
    /* a forward listener off loopback needs TLS like any other */
    EXPECT_ERR("listen:\n  - {address: 0.0.0.0:3128, mode: forward}\nkeys: [{name: a, key: "
               "k}]\negress: {}\n",
               2, 5, "plain HTTP is only allowed on loopback");
}

static void test_errors_section(void)
{
    EXPECT_ERR(HEAD "  tunel: [a.com]\n", 10, 3, "unknown key 'tunel'");
    EXPECT_ERR(HEAD "  default: allow\n", 10, 12, "default");
    EXPECT_ERR(HEAD "  max_tunnels: 0\n", 10, 16, "max_tunnels");
    EXPECT_ERR(HEAD "  tunnel_idle_ms: 5s\n", 10, 19, "tunnel_idle_ms");
    EXPECT_ERR("egress: [a]\n", 1, 9, "egress must be a mapping");
    EXPECT_ERR(HEAD "  ca: ca.crt\n", 10, 7, "ca must be a mapping");
    EXPECT_ERR(HEAD "  ca: {cert: ca.crt, key: ca.key, pass: x}\n", 10, 35, "unknown key 'pass'");
    EXPECT_ERR(HEAD "  ca: {cert: ca.crt}\n", 10, 7, "missing required field 'key'");
    EXPECT_ERR(HEAD "  ca: {cert: nope.crt, key: ca.key}\n", 10, 14, "cannot be read");
}

static void test_errors_tunnel(void)
{
    static const struct {
        const char *entry, *sub;
    } bad[] = {
        {"\"a*.com\"", "whole leftmost labels"},
        {"\"*foo.com\"", "whole leftmost labels"},
        {"\"foo.*.com\"", "whole leftmost labels"},
        {"\"foo.*\"", "whole leftmost labels"},
        {"\"**.com\"", "whole leftmost labels"},
        {"\"a?.com\"", "letters, digits"},
        {"a_b.com", "letters, digits"},
        {"\"a..b.com\"", "empty label"},
        {"\".a.com\"", "empty label"},
        {"\"a.com:0\"", "invalid port"},
        {"\"a.com:70000\"", "invalid port"},
        {"\"a.com:ssh\"", "invalid port"},
        {"\"a.com:\"", "invalid port"},
        {"\"fd00::1\"", "must be in brackets"},
        {"\"fd00::1:443\"", "must be in brackets"},
        {"\"[fd00::1\"", "HOST:PORT"},
        {"\"[fd00::1]x\"", "HOST:PORT"},
        {"\"[zz::1]:443\"", "not a valid IPv6"},
        {"\"[]:443\"", "not a valid IPv6"},
        {"\"1.2.3\"", "not an IPv4"},
        {"\"127.1\"", "not an IPv4"},
        {"\"*.10\"", "not an IPv4"},
        {"\"256.1.1.1\"", "not an IPv4"},
        {"\"\"", "empty"},
        {"[a.com]", "must be a string"},
    };
    char text[1024];
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        snprintf(text, sizeof text, HEAD "  tunnel: [x.com, %s]\n", bad[i].entry);
        EXPECT_ERR(text, 10, 19, bad[i].sub);
    }
    EXPECT_ERR(HEAD "  tunnel: a.com\n", 10, 11, "must be a list");
    char big[400];
    memset(big, 'a', 254);
    big[254] = '\0';
    for (int i = 50; i < 254; i += 50)
        big[i] = '.';
    snprintf(text, sizeof text, HEAD "  tunnel: [x.com, %s]\n", big);
    EXPECT_ERR(text, 10, 19, "longer than 253");
    memset(big, 'a', 64);
    memcpy(big + 64, ".com", 5);
    snprintf(text, sizeof text, HEAD "  tunnel: [x.com, %s]\n", big);
    EXPECT_ERR(text, 10, 19, "longer than 63");
}

static void test_errors_intercept(void)
{
    const char *ca = "  ca: {cert: ca.crt, key: ca.key}\n";
    char text[1024];
#define T(body) (snprintf(text, sizeof text, HEAD "%s%s", ca, body), text)
    EXPECT_ERR(T("  intercept:\n    - {host: api.x.com, provider: nope}\n"), 12, 35,
               "unknown provider 'nope'");
    EXPECT_ERR(T("  intercept:\n    - {host: api.x.com, provider: local}\n"), 12, 35, "is builtin");
    EXPECT_ERR(T("  intercept:\n    - {host: api.x.com}\n"), 12, 7,
               "missing required field 'provider'");
    EXPECT_ERR(T("  intercept:\n    - {host: api.x.com, provider: openai, port: 1}\n"), 12, 43,
               "unknown key 'port'");
    EXPECT_ERR(T("  intercept:\n    - {host: api.openai.com, provider: openai}\n"
                 "    - {host: \"API.OPENAI.COM:443\", provider: corp}\n"),
               13, 7, "duplicate egress intercept host 'api.openai.com:443' (first at line 12)");
    /* the same host on another port is not a duplicate */
    struct config *cfg;
    EXPECT_OK(T("  intercept:\n    - {host: api.openai.com, provider: openai}\n"
                "    - {host: \"api.openai.com:8443\", provider: corp}\n"),
              &cfg);
    config_unref(cfg);
    EXPECT_ERR(T("  intercept:\n    - {host: \"*.openai.com\", provider: openai}\n"), 12, 14,
               "may not hold '*'");
    EXPECT_ERR(T("  intercept:\n    - {host: \"10.0.0.1\", provider: openai}\n"), 12, 14,
               "not an address");
    EXPECT_ERR(T("  intercept:\n    - {host: \"[::1]:443\", provider: openai}\n"), 12, 14,
               "must be a host name");
    EXPECT_ERR(T("  intercept:\n    - {host: \"a.com:0\", provider: openai}\n"), 12, 14,
               "invalid port");
    EXPECT_ERR(T("  intercept:\n    - api.openai.com\n"), 12, 7, "must be a mapping");
    EXPECT_ERR(T("  intercept: {host: a.com, provider: openai}\n"), 11, 14, "must be a list");
#undef T
    /* intercept entries need a CA */
    EXPECT_ERR(HEAD "  intercept:\n    - {host: api.openai.com, provider: openai}\n", 11, 5,
               "needs a CA");
}

static void test_errors_ca(void)
{
    static const struct {
        const char *name, *sub;
    } bad[] = {
        {"nonca", "is not a CA certificate"},
        {"nobc", "is not a CA certificate"},
        {"noku", "keyCertSign"},
        {"old", "has expired"},
        {"mismatch", "does not match the certificate"},
        {"loose", "mode 0644"},
        {"group", "mode 0640"},
    };
    char text[1024];
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        snprintf(text, sizeof text, HEAD "  ca: {cert: %s.crt, key: %s.key}\n", bad[i].name,
                 bad[i].name);
        EXPECT_ERR(text, 10, 7, bad[i].sub);
    }
    EXPECT_ERR(HEAD "  ca: {cert: garbage.crt, key: ca.key}\n", 10, 7, "not a PEM certificate");
    EXPECT_ERR(HEAD "  ca: {cert: ca.crt, key: garbage.key}\n", 10, 7,
               "not an unencrypted PEM private key");
    EXPECT_ERR(HEAD "  ca: {cert: ca.key, key: ca.key}\n", 10, 7, "not a PEM certificate");
    /* the message is one sentence, no newline, and names the file */
    struct config *c = NULL;
    struct config_errors e;
    CHECK(load(HEAD "  ca: {cert: loose.crt, key: loose.key}\n", &c, &e) == -1);
    REQUIRE(e.n == 1);
    CHECK(strchr(e.items[0].message, '\n') == NULL);
    CHECK(strstr(e.items[0].message, "loose.key") != NULL);
}

static void test_ca_load(void)
{
    char c[512], k[512], why[300];
    X509 *x = NULL;
    EVP_PKEY *pk = NULL;
    snprintf(c, sizeof c, "%s/ca.crt", tmpdir);
    snprintf(k, sizeof k, "%s/ca.key", tmpdir);
    CHECK(config_egress_ca_load(c, k, &x, &pk, why, sizeof why) == 0);
    CHECK(x != NULL && pk != NULL);
    CHECK(X509_check_private_key(x, pk) == 1);
    X509_free(x);
    EVP_PKEY_free(pk);
    snprintf(k, sizeof k, "%s/mismatch.key", tmpdir);
    x = (X509 *)1;
    CHECK(config_egress_ca_load(c, k, &x, NULL, why, sizeof why) == -1);
    CHECK(x == NULL);
    snprintf(k, sizeof k, "%s/none.key", tmpdir);
    CHECK(config_egress_ca_load(c, k, NULL, NULL, why, sizeof why) == -1);
    CHECK(strstr(why, "cannot be read") != NULL);
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
        snprintf(l->msg[l->n], sizeof l->msg[0], "%s", msg);
    }
    l->n++;
}

static void test_lint(void)
{
    struct config *cfg;
    struct lint_seen l;
    /* a tunnel entry shadowed by an intercept entry (same host and port) */
    EXPECT_OK(HEAD "  ca: {cert: ca.crt, key: ca.key}\n"
                   "  intercept: [{host: api.openai.com, provider: openai}]\n"
                   "  tunnel: [\"api.openai.com\", \"api.openai.com:8443\", pypi.org]\n",
              &cfg);
    REQUIRE(cfg);
    memset(&l, 0, sizeof l);
    CHECK_EQ_INT(config_lint(cfg, lint_cb, &l), 1);
    CHECK_EQ_INT(l.line[0], 12);
    CHECK(strstr(l.msg[0], "'api.openai.com:443' never applies") != NULL);
    CHECK(strstr(l.msg[0], "(line 11)") != NULL);
    config_unref(cfg);
    /* an egress section and no forward listener */
    EXPECT_OK("listen: [{address: 127.0.0.1:8080}]\negress:\n  tunnel: [pypi.org]\n", &cfg);
    REQUIRE(cfg);
    memset(&l, 0, sizeof l);
    CHECK_EQ_INT(config_lint(cfg, lint_cb, &l), 1);
    CHECK_EQ_INT(l.line[0], 3);
    CHECK(strstr(l.msg[0], "no listener has mode: forward") != NULL);
    config_unref(cfg);
    /* a clean one says nothing */
    EXPECT_OK(HEAD "  tunnel: [pypi.org]\n", &cfg);
    REQUIRE(cfg);
    memset(&l, 0, sizeof l);
    CHECK_EQ_INT(config_lint(cfg, lint_cb, &l), 0);
    config_unref(cfg);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/airlock-egress-config-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 2;
    }
    make_ca_files();
    RUN(test_full);
    RUN(test_defaults);
    RUN(test_errors_listen_mode);
    RUN(test_errors_section);
    RUN(test_errors_tunnel);
    RUN(test_errors_intercept);
    RUN(test_errors_ca);
    RUN(test_ca_load);
    RUN(test_lint);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
    return harness_done();
}
