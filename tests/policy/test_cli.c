/* test_cli.c -- `airlock policy test` end to end: the binary from $AIRLOCK_BUILD on a config
 * and request files, its one JSON line, and its exit statuses. */
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cJSON.h>

#include "harness.h"

static char dir[256], bin[512];

static void put(const char *name, const char *text)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

/* Run `airlock policy test ARGS` (in dir); stdout into out; returns the exit status. */
static int run(const char *args, char *out, size_t cap)
{
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "cd %s && %s policy test %s 2>stderr.txt", dir, bin, args);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_redact(void)
{
    char out[8192];
    int rc = run("-c cfg.yaml --key alice redact.json", out, sizeof(out));
    CHECK_EQ_INT(rc, 0);
    cJSON *j = cJSON_Parse(out);
    REQUIRE(j);
    CHECK_EQ_STR(cJSON_GetObjectItem(j, "verdict")->valuestring, "redact");
    CHECK_EQ_STR(cJSON_GetObjectItem(j, "rule")->valuestring, "mask-emails");
    CHECK_EQ_STR(cJSON_GetObjectItem(j, "route")->valuestring, "openai/gpt-4o");
    cJSON *f = cJSON_GetObjectItem(j, "findings");
    REQUIRE(cJSON_GetArraySize(f) == 1);
    cJSON *f0 = cJSON_GetArrayItem(f, 0);
    CHECK_EQ_STR(cJSON_GetObjectItem(f0, "detector")->valuestring, "email");
    CHECK_EQ_INT(cJSON_GetObjectItem(f0, "message")->valueint, 0);
    CHECK_EQ_INT(cJSON_GetObjectItem(f0, "start")->valueint, 61);
    CHECK_EQ_INT(cJSON_GetObjectItem(f0, "end")->valueint, 76);
    /* exact key order and shape of the line */
    CHECK(strncmp(out, "{\"verdict\":\"redact\",\"rule\":\"mask-emails\",\"route\":", 49) == 0);
    cJSON *ob = cJSON_GetObjectItem(j, "outbound");
    REQUIRE(cJSON_IsString(ob));
    /* [EMAIL_1_xxxxxx]: the request's unguessable suffix (6 of a-z2-7) */
    const char *ph = strstr(ob->valuestring, "mail [EMAIL_1_");
    CHECK(ph != NULL && strlen(ph) > 21 && strncmp(ph + 20, "] now", 5) == 0);
    CHECK(strstr(ob->valuestring, "bob@example.com") == NULL);
    cJSON *body = cJSON_Parse(ob->valuestring);
    CHECK(body && strcmp(cJSON_GetObjectItem(body, "model")->valuestring, "gpt-4o-2024") == 0);
    cJSON_Delete(body);
    cJSON_Delete(j);
}

static void test_block_route_stdin(void)
{
    char out[8192];
    int rc = run("-c cfg.yaml - < secret.json", out, sizeof(out));
    CHECK_EQ_INT(rc, 0);
    CHECK(strstr(out,
                 "{\"verdict\":\"block\",\"rule\":\"no-secrets-out\",\"route\":null,\"findings\":"
                 "[{\"detector\":\"aws_access_key\"") == out);
    /* what the gateway would answer instead */
    CHECK(strstr(out, "\"outbound\":null,\"modified\":null,\"status\":403,\"error\":\"Refused "
                      "by policy rule 'no-secrets-out'") != NULL);
    rc = run("-c cfg.yaml --api anthropic card.json", out, sizeof(out));
    CHECK_EQ_INT(rc, 0);
    CHECK(strstr(out,
                 "\"verdict\":\"route\",\"rule\":\"cards-home\",\"route\":\"local/local-small\"") !=
          NULL);
    /* builtin: nothing leaves; the engine reads the request as its own prompt */
    CHECK(strstr(out, "\"outbound\":null,\"modified\":\"model=gpt-4o->local-small; "
                      "translated=anthropic-messages->builtin\"}") != NULL);
}

static void test_bad_input(void)
{
    char out[8192];
    CHECK_EQ_INT(run("-c cfg.yaml broken.json", out, sizeof(out)), 2);
    CHECK_EQ_INT(out[0], 0);
    CHECK_EQ_INT(run("-c cfg.yaml --key nobody redact.json", out, sizeof(out)), 2);
    CHECK_EQ_INT(run("-c nonexistent.yaml redact.json", out, sizeof(out)), 2);
    CHECK_EQ_INT(run("-c cfg.yaml --api cobol redact.json", out, sizeof(out)), 2);
    CHECK_EQ_INT(run("-c cfg.yaml missing.json", out, sizeof(out)), 2);
    /* one clear line on stderr */
    char p[512], line[512] = "";
    snprintf(p, sizeof(p), "%s/stderr.txt", dir);
    run("-c cfg.yaml broken.json", out, sizeof(out));
    FILE *f = fopen(p, "r");
    if (f) {
        if (!fgets(line, sizeof(line), f))
            line[0] = 0;
        CHECK(fgetc(f) == EOF);
        fclose(f);
    }
    CHECK(strstr(line, "not valid JSON") != NULL);
}

int main(void)
{
    const char *b = getenv("AIRLOCK_BUILD");
    snprintf(bin, sizeof(bin), "%s/airlock", b && *b ? b : "build");
    if (bin[0] != '/') {
        char cwd[200], tmp[sizeof(bin)];
        memcpy(tmp, bin, sizeof(tmp));
        if (getcwd(cwd, sizeof(cwd)))
            snprintf(bin, sizeof(bin), "%s/%.300s", cwd, tmp);
    }
    if (access(bin, X_OK) != 0) {
        fprintf(stderr, "%s is not built: run `make` first\n", bin);
        printf("0 passed, 1 failed\n");
        return 1;
    }
    snprintf(dir, sizeof(dir), "/tmp/airlock-policy-cli-XXXXXX");
    if (!mkdtemp(dir))
        return 1;
    char cfg[2048];
    snprintf(
        cfg, sizeof(cfg),
        "keys:\n  - {name: alice, team: eng, key: k-alice}\n"
        "providers:\n"
        "  openai: {type: openai, zone: external, base_url: \"https://api.openai.com/v1\", "
        "api_key: x}\n"
        "  local: {type: builtin, model: %s/models/stories260K.gguf}\n"
        "models:\n"
        "  - {name: gpt-4o, provider: openai, upstream_model: gpt-4o-2024, price: {input_per_mtok: "
        "1, output_per_mtok: 2}}\n"
        "  - {name: local-small, provider: local, price: {input_per_mtok: 0, output_per_mtok: 0}}\n"
        "rules:\n"
        "  - {name: no-secrets-out, if: {detected: [secrets]}, then: {action: block}}\n"
        "  - {name: cards-home, if: {detected: [credit_card]}, then: {action: route, model: "
        "local-small}}\n"
        "  - {name: mask-emails, if: {detected: [email]}, then: {action: redact, detectors: "
        "[email]}}\n"
        "  - {name: default, then: {action: allow}}\n",
        harness_shared());
    put("cfg.yaml", cfg);
    put("redact.json", "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"mail "
                       "bob@example.com now\"}]}");
    put("secret.json", "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":"
                       "\"AKIAIOSFODNN7EXAMPLE\"}]}");
    put("card.json", "{\"model\":\"gpt-4o\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\","
                     "\"content\":\"4111 1111 1111 1111\"}]}");
    put("broken.json", "{\"model\":\"gpt-4o\",\"messages\":[");
    RUN(test_redact);
    RUN(test_block_route_stdin);
    RUN(test_bad_input);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    return harness_done();
}
