/* test_limits.c -- limits.max_body_values: its default, a value read from a file, and a
 * value out of range or of the wrong type reported as FILE:LINE:COL. */
#include "config/config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/harness.h"

static char dir[] = "/tmp/airlock-test-limits-XXXXXX";

static const char base[] = "listen: [{address: \"127.0.0.1:18080\"}]\n"
                           "providers:\n"
                           "  oai: {type: openai, base_url: \"https://api.openai.com/v1\", "
                           "api_key: k}\n"
                           "models:\n"
                           "  - {name: m, provider: oai}\n"
                           "rules:\n"
                           "  - {name: default, then: {action: allow}}\n";

/* load -- base, then `limits` (NULL: none), from a file named limits.yaml; the formatted
 * errors into msg */
static int load(const char *limits, struct config **c, char *msg, size_t cap)
{
    char path[128];
    struct config_errors errs;
    FILE *f;
    int rc;

    memset(&errs, 0, sizeof(errs));
    snprintf(path, sizeof(path), "%s/limits.yaml", dir);
    f = fopen(path, "w");
    if (!f)
        return -2;
    fputs(base, f);
    if (limits)
        fputs(limits, f);
    fclose(f);
    *c = NULL;
    rc = config_load(path, c, &errs);
    msg[0] = '\0';
    config_errors_format(&errs, msg, cap);
    unlink(path);
    return rc;
}

static void test_default(void)
{
    struct config *c;
    char msg[2048];
    REQUIRE(load(NULL, &c, msg, sizeof(msg)) == 0);
    CHECK_EQ_INT(c->limits.max_body_values, 100000);
    config_unref(c);
    REQUIRE(load("limits: {max_body_bytes: 1000000}\n", &c, msg, sizeof(msg)) == 0);
    CHECK_EQ_INT(c->limits.max_body_values, 100000);
    config_unref(c);
}

static void test_read(void)
{
    struct config *c;
    char msg[2048];
    REQUIRE(load("limits:\n  max_body_values: 250000\n", &c, msg, sizeof(msg)) == 0);
    CHECK_EQ_INT(c->limits.max_body_values, 250000);
    config_unref(c);
    REQUIRE(load("limits: {max_body_values: 1}\n", &c, msg, sizeof(msg)) == 0);
    CHECK_EQ_INT(c->limits.max_body_values, 1);
    config_unref(c);
    REQUIRE(load("limits: {max_body_values: 10000000}\n", &c, msg, sizeof(msg)) == 0);
    CHECK_EQ_INT(c->limits.max_body_values, 10000000);
    config_unref(c);
}

/* the line of `limits` is the base's last + 1 */
static void test_bad_values(void)
{
    static const struct {
        const char *text, *want;
    } bad[] = {
        {"limits:\n  max_body_values: 0\n", "limits.yaml:9:20: "},
        {"limits:\n  max_body_values: 10000001\n", "limits.yaml:9:20: "},
        {"limits:\n  max_body_values: -5\n", "limits.yaml:9:20: "},
        {"limits:\n  max_body_values: lots\n", "limits.yaml:9:20: "},
        {"limits: {max_body_bytes: 4194304, max_body_values: 0}\n", "limits.yaml:8:52: "},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        struct config *c;
        char msg[2048];
        CHECK(load(bad[i].text, &c, msg, sizeof(msg)) == -1);
        CHECK(c == NULL);
        if (!strstr(msg, bad[i].want) || !strstr(msg, "max_body_values")) {
            fprintf(stderr, "  %s: expected %s..., got: %s", bad[i].text, bad[i].want, msg);
            CHECK(!"error position");
        }
        config_unref(c);
    }
    /* the range is in the message */
    struct config *c;
    char msg[2048];
    CHECK(load("limits:\n  max_body_values: 0\n", &c, msg, sizeof(msg)) == -1);
    CHECK(strstr(msg, "max_body_values must be between 1 and 10000000") != NULL);
    config_unref(c);
}

int main(void)
{
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 2;
    }
    RUN(test_default);
    RUN(test_read);
    RUN(test_bad_values);
    rmdir(dir);
    return harness_done();
}
