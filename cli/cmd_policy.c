/* cmd_policy.c -- `airlock policy test`: decide one request body offline, print the decision.
 *
 * The output is exactly what the gateway would do (SPEC §4): the same proxy_decide the
 * request pipeline calls (validation, the one strict parse, shapes, policy, routing and the
 * outbound body), so `outbound` is byte for byte the body that would leave. Exit 0 when decided
 * (whatever the verdict), 2 on bad input. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "cli/cli.h"
#include "common/log.h"
#include "config/config.h"
#include "policy/policy.h"
#include "proxy/decide.h"

#define USAGE                                                                                      \
    "policy test -c FILE [--api openai|anthropic|completions|embeddings|responses|compact] "       \
    "[--key NAME] [REQUEST.json|-]"

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
    struct proxy_decision pd;
    char *body = NULL, *printed = NULL;
    size_t len = 0;
    int rc = 2;
    static struct config_errors errs;

    memset(&pd, 0, sizeof(pd));
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
    enum policy_api api = POLICY_API_OPENAI;
    enum proxy_body kind = PROXY_BODY_CHAT;
    if (strcmp(api_s, "anthropic") == 0)
        api = POLICY_API_ANTHROPIC;
    else if (strcmp(api_s, "completions") == 0) /* OpenAI's /v1/completions */
        kind = PROXY_BODY_COMPLETION;
    else if (strcmp(api_s, "embeddings") == 0) /* OpenAI's /v1/embeddings */
        kind = PROXY_BODY_EMBEDDING;
    else if (strcmp(api_s, "responses") == 0) /* OpenAI's /v1/responses */
        kind = PROXY_BODY_RESPONSE;
    else if (strcmp(api_s, "compact") == 0) /* OpenAI's /v1/responses/compact */
        kind = PROXY_BODY_COMPACT;
    else if (strcmp(api_s, "openai") != 0)
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
    if (policy_new(cfg, &pol, &errs) < 0) {
        char buf[8192];
        config_errors_format(&errs, buf, sizeof(buf));
        fprintf(stderr, "%s", buf[0] ? buf : "airlock policy: cannot compile the policy\n");
        goto done;
    }
    /* the gateway's own path: a body it would answer 400 (or 500) is bad input here; a
     * refusal by policy (403) or an unknown model (404) is a decision, printed */
    if (proxy_decide_body(cfg, pol, api, kind, body, len, key, team, &pd) < 0 && pd.status != 403 &&
        pd.status != 404) {
        fprintf(stderr, "airlock policy: %s\n", pd.error);
        goto done;
    }
    const struct policy_decision *dp = &pd.policy;
    const char *outbound = pd.outbound;
    size_t out_len = pd.outbound_len;

    static const char *const verdicts[] = {[POLICY_BLOCK] = "block",
                                           [POLICY_ROUTE] = "route",
                                           [POLICY_REDACT] = "redact",
                                           [POLICY_ALLOW] = "allow"};
    cJSON *o = cJSON_CreateObject(), *fa;
    if (!o)
        goto oom;
    cJSON_AddStringToObject(o, "verdict", verdicts[dp->verdict]);
    cJSON_AddStringToObject(o, "rule", dp->rule);
    if (dp->verdict != POLICY_BLOCK && dp->provider && dp->model) {
        char route[512];
        snprintf(route, sizeof(route), "%s/%s", dp->provider, dp->model);
        cJSON_AddStringToObject(o, "route", route);
    } else {
        cJSON_AddNullToObject(o, "route");
    }
    fa = cJSON_AddArrayToObject(o, "findings");
    for (size_t i = 0; fa && i < dp->n_findings; i++) {
        cJSON *fo = cJSON_CreateObject();
        if (!fo)
            break;
        cJSON_AddStringToObject(fo, "detector", dp->findings[i].detector);
        cJSON_AddNumberToObject(fo, "message", dp->findings[i].message);
        cJSON_AddNumberToObject(fo, "start", (double)dp->findings[i].start);
        cJSON_AddNumberToObject(fo, "end", (double)dp->findings[i].end);
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
    if (pd.modified) /* the gateway's x-airlock-modified */
        cJSON_AddStringToObject(o, "modified", pd.modified);
    else
        cJSON_AddNullToObject(o, "modified");
    if (pd.status) { /* what the gateway would answer instead of sending it */
        cJSON_AddNumberToObject(o, "status", pd.status);
        cJSON_AddStringToObject(o, "error", pd.error);
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
    proxy_decision_deinit(&pd);
    policy_free(pol);
    if (cfg)
        config_unref(cfg);
    free(body);
    return rc;
}
