/* cmd_policy.c -- `airlock policy test`: decide one request body offline, print the decision.
 *
 * The output is exactly what the gateway would do (SPEC §4): the same policy_decide and the
 * same proxy_outbound_build the request pipeline calls, so `outbound` is byte for byte the
 * body that would leave. Exit 0 when decided (whatever the verdict), 2 on bad input. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "cli/cli.h"
#include "common/log.h"
#include "config/config.h"
#include "policy/policy.h"
#include "proxy/outbound.h"

#define USAGE "policy test -c FILE [--api openai|anthropic] [--key NAME] [REQUEST.json|-]"

/* Read all of f up to max bytes into a malloc'd buffer; -1 when larger or unreadable. */
static int read_all(FILE *f, size_t max, char **out, size_t *out_len)
{
    size_t cap = 64 * 1024, len = 0;
    char *buf = malloc(cap + 1);
    if (!buf)
        return -1;
    for (;;) {
        if (len == cap) {
            if (cap > max) {
                free(buf);
                return -2;
            }
            char *nb = realloc(buf, cap * 2 + 1);
            if (!nb) {
                free(buf);
                return -1;
            }
            buf = nb;
            cap *= 2;
        }
        size_t r = fread(buf + len, 1, cap - len, f);
        len += r;
        if (r == 0)
            break;
    }
    if (ferror(f) || len > max) {
        free(buf);
        return ferror(f) ? -1 : -2;
    }
    buf[len] = 0;
    *out = buf;
    *out_len = len;
    return 0;
}

int cmd_policy(int argc, char **argv)
{
    const char *cfg_path = NULL, *api_s = "openai", *key = NULL, *req = NULL;
    struct config *cfg = NULL;
    struct policy *pol = NULL;
    struct policy_decision d;
    char *body = NULL, *outbound = NULL, *printed = NULL;
    size_t len = 0, out_len = 0;
    cJSON *root = NULL;
    int rc = 2;
    static struct config_errors errs;

    memset(&d, 0, sizeof(d));
    if (argc < 2 || strcmp(argv[1], "test") != 0)
        return cli_usage(USAGE);
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if ((strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) && i + 1 < argc)
            cfg_path = argv[++i];
        else if (strcmp(a, "--api") == 0 && i + 1 < argc)
            api_s = argv[++i];
        else if (strcmp(a, "--key") == 0 && i + 1 < argc)
            key = argv[++i];
        else if ((a[0] != '-' || strcmp(a, "-") == 0) && !req)
            req = a;
        else
            return cli_usage(USAGE);
    }
    if (!cfg_path)
        return cli_usage(USAGE);
    enum policy_api api;
    if (strcmp(api_s, "openai") == 0)
        api = POLICY_API_OPENAI;
    else if (strcmp(api_s, "anthropic") == 0)
        api = POLICY_API_ANTHROPIC;
    else
        return cli_usage(USAGE);

    log_set_level(LOG_WARN);
    memset(&errs, 0, sizeof(errs));
    if (config_load(cfg_path, &cfg, &errs) < 0) {
        char buf[8192];
        config_errors_format(&errs, buf, sizeof(buf));
        fputs(buf, stderr);
        goto done;
    }
    const char *team = NULL;
    if (key) {
        const struct config_key *k = NULL;
        for (size_t i = 0; i < cfg->n_keys; i++)
            if (strcmp(cfg->keys[i].name, key) == 0)
                k = &cfg->keys[i];
        if (!k) {
            fprintf(stderr, "airlock policy: %s has no key named '%s'\n", cfg_path, key);
            goto done;
        }
        team = k->team;
    }
    FILE *f = stdin;
    if (req && strcmp(req, "-") != 0 && !(f = fopen(req, "rb"))) {
        fprintf(stderr, "airlock policy: cannot open %s: %m\n", req);
        goto done;
    }
    int r = read_all(f, cfg->limits.max_body_bytes ? cfg->limits.max_body_bytes : 4u << 20, &body,
                     &len);
    if (f != stdin)
        fclose(f);
    if (r < 0) {
        fprintf(stderr, "airlock policy: %s: %s\n", req && strcmp(req, "-") ? req : "<stdin>",
                r == -2 ? "the request body is larger than limits.max_body_bytes"
                        : "cannot read the request body");
        goto done;
    }
    /* the requested model, as the gateway reads it */
    const char *model = "";
    root = cJSON_ParseWithLength(body, len);
    if (root) {
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(root, "model");
        if (cJSON_IsString(m))
            model = m->valuestring;
    }
    if (policy_new(cfg, &pol, &errs) < 0) {
        char buf[8192];
        config_errors_format(&errs, buf, sizeof(buf));
        fprintf(stderr, "%s", buf[0] ? buf : "airlock policy: cannot compile the policy\n");
        goto done;
    }
    struct policy_input in = {.api = api, .body = body, .len = len, .model = model,
                              .key_name = key, .team = team};
    if (policy_decide(pol, &in, &d) < 0) {
        fprintf(stderr, "airlock policy: %s\n", d.error);
        goto done;
    }
    char err[256] = "";
    if (d.verdict != POLICY_BLOCK &&
        proxy_outbound_build(cfg, api, body, len, &d, &outbound, &out_len, NULL, err,
                             sizeof(err)) < 0) {
        fprintf(stderr, "airlock policy: %s\n", err);
        goto done;
    }

    static const char *const verdicts[] = {[POLICY_BLOCK] = "block", [POLICY_ROUTE] = "route",
                                           [POLICY_REDACT] = "redact", [POLICY_ALLOW] = "allow"};
    cJSON *o = cJSON_CreateObject(), *fa;
    if (!o)
        goto oom;
    cJSON_AddStringToObject(o, "verdict", verdicts[d.verdict]);
    cJSON_AddStringToObject(o, "rule", d.rule);
    if (d.verdict != POLICY_BLOCK && d.provider && d.model) {
        char route[512];
        snprintf(route, sizeof(route), "%s/%s", d.provider, d.model);
        cJSON_AddStringToObject(o, "route", route);
    } else {
        cJSON_AddNullToObject(o, "route");
    }
    fa = cJSON_AddArrayToObject(o, "findings");
    for (size_t i = 0; fa && i < d.n_findings; i++) {
        cJSON *fo = cJSON_CreateObject();
        if (!fo)
            break;
        cJSON_AddStringToObject(fo, "detector", d.findings[i].detector);
        cJSON_AddNumberToObject(fo, "message", d.findings[i].message);
        cJSON_AddNumberToObject(fo, "start", (double)d.findings[i].start);
        cJSON_AddNumberToObject(fo, "end", (double)d.findings[i].end);
        cJSON_AddItemToArray(fa, fo);
    }
    if (outbound) {
        /* cJSON strings end at NUL; a valid JSON body has none */
        char *ob = malloc(out_len + 1);
        if (!ob) {
            cJSON_Delete(o);
            goto oom;
        }
        memcpy(ob, outbound, out_len);
        ob[out_len] = 0;
        cJSON_AddStringToObject(o, "outbound", ob);
        free(ob);
    } else {
        cJSON_AddNullToObject(o, "outbound");
    }
    printed = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!printed)
        goto oom;
    printf("%s\n", printed);
    rc = fflush(stdout) == 0 ? 0 : 2;
    goto done;
oom:
    fprintf(stderr, "airlock policy: out of memory\n");
done:
    free(printed);
    free(outbound);
    cJSON_Delete(root);
    policy_decision_deinit(&d);
    policy_free(pol);
    if (cfg)
        config_unref(cfg);
    free(body);
    return rc;
}
