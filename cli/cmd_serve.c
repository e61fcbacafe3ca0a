/* cmd_serve.c -- `airlock serve` and `airlock check-config`. */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "common/log.h"
#include "config/config.h"
#include "proxy/proxy.h"

/* the first *.gguf in ./models (sorted), or NULL */
static char *find_default_model(void)
{
    const char *env = getenv("AIRLOCK_MODEL");
    struct dirent **names = NULL;
    char *found = NULL;
    int n, i;

    if (env && *env)
        return strdup(env);
    n = scandir("models", &names, NULL, alphasort);
    for (i = 0; i < n; i++) {
        size_t l = strlen(names[i]->d_name);
        if (!found && l > 5 && strcmp(names[i]->d_name + l - 5, ".gguf") == 0) {
            found = malloc(l + 8);
            if (found)
                snprintf(found, l + 8, "models/%s", names[i]->d_name);
        }
        free(names[i]);
    }
    free(names);
    return found;
}

static void print_errors(const struct config_errors *errs)
{
    char buf[16384];

    config_errors_format(errs, buf, sizeof(buf));
    fputs(buf, stderr);
}

static void print_banner(const struct config *cfg, const char *model_path, int embedded)
{
    size_t i;
    const char *host = "127.0.0.1";
    int port = 8080, tls = 0;

    for (i = 0; i < cfg->n_listens; i++) {
        fprintf(stderr, "airlock: listening on %s://%s\n",
                cfg->listens[i].tls_cert ? "https" : "http", cfg->listens[i].address);
        if (i == 0) {
            host = cfg->listens[i].host;
            port = cfg->listens[i].port;
            tls = cfg->listens[i].tls_cert != NULL;
        }
    }
    if (embedded) {
        if (model_path)
            fprintf(stderr, "airlock: local model: %s (served as model \"local\")\n", model_path);
        else
            fprintf(
                stderr,
                "airlock: no local model found, so local answers are unavailable.\n"
                "         Add one: `make model` (downloads SmolLM2-135M-Instruct), or put a\n"
                "         *.gguf file in ./models/, or set AIRLOCK_MODEL=/path/to/model.gguf\n");
        fprintf(stderr, "airlock: audit log: %s\n", cfg->audit.dir ? cfg->audit.dir : "(off)");
    }
    fprintf(stderr,
            "airlock: try it:\n  curl -s %s://%s:%d/v1/chat/completions -H 'content-type: "
            "application/json' \\\n    -d '{\"model\":\"%s\",\"messages\":[{\"role\":\"user\","
            "\"content\":\"Say hello\"}]}'\n",
            tls ? "https" : "http", strchr(host, ':') ? "[::1]" : host, port,
            cfg->n_models ? cfg->models[0].name : "local");
}

struct lint_ctx {
    const char *file;
    int to_log;
};

static void lint_line(void *ud, struct config_pos pos, const char *msg)
{
    const struct lint_ctx *c = ud;

    if (c->to_log)
        log_warn("config %s:%d: %s", c->file, pos.line, msg);
    else
        printf("%s:%d:%d: warning: %s\n", c->file, pos.line, pos.col, msg);
}

int cmd_serve(int argc, char **argv)
{
    const char *file = NULL;
    struct config *cfg = NULL;
    struct config_errors errs;
    struct proxy *px = NULL;
    char err[2048];
    char *model = NULL, *text_buf = NULL;
    int i, rc;

    for (i = 1; i < argc; i++) {
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc)
            file = argv[++i];
        else
            return cli_usage("serve [-c FILE]");
    }
    /* a SIGHUP during start-up (the audit replay can take seconds) must not kill us;
     * the loop installs the real handler once it runs */
    signal(SIGHUP, SIG_IGN);
    memset(&errs, 0, sizeof(errs));
    if (file) {
        if (config_load(file, &cfg, &errs) != 0) {
            print_errors(&errs);
            return 2;
        }
    } else {
        const char *text;
        model = find_default_model();
        text = config_embedded_default(model, &text_buf);
        if (!text || config_load_text("<embedded>", text, strlen(text), NULL, &cfg, &errs) != 0) {
            print_errors(&errs);
            free(text_buf);
            free(model);
            return 2;
        }
        free(text_buf);
        /* the embedded default keeps its state under ./airlock-data */
        if (mkdir("airlock-data", 0700) != 0 && errno != EEXIST) {
            fprintf(stderr, "airlock: cannot create ./airlock-data: %s\n", strerror(errno));
            config_unref(cfg);
            free(model);
            return 2;
        }
    }
    {
        struct lint_ctx lc = {file ? file : "<embedded>", 1};
        config_lint(cfg, lint_line, &lc);
    }
    print_banner(cfg, model, file == NULL);
    if (proxy_new(cfg, file, &px, err, sizeof(err)) != 0) {
        fprintf(stderr, "airlock: %s\n", err);
        free(model);
        return 2;
    }
    log_info("airlock: ready");
    rc = proxy_run(px);
    proxy_free(px);
    free(model);
    log_info("airlock: stopped");
    return rc;
}

int cmd_check_config(int argc, char **argv)
{
    struct lint_ctx lc;
    size_t n_warn;
    const char *file = NULL;
    struct config *cfg = NULL;
    struct config_errors errs;
    int i;

    for (i = 1; i < argc; i++) {
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc)
            file = argv[++i];
        else if (!file && argv[i][0] != '-')
            file = argv[i];
        else
            return cli_usage("check-config -c FILE");
    }
    if (!file)
        return cli_usage("check-config -c FILE");
    memset(&errs, 0, sizeof(errs));
    if (config_load(file, &cfg, &errs) != 0) {
        print_errors(&errs);
        return 2;
    }
    lc.file = file;
    lc.to_log = 0;
    n_warn = config_lint(cfg, lint_line, &lc);
    printf("%s: ok (%zu listener(s), %zu key(s), %zu provider(s), %zu model(s), %zu rule(s)",
           file, cfg->n_listens, cfg->n_keys, cfg->n_providers, cfg->n_models, cfg->n_rules);
    if (n_warn)
        printf(", %zu warning(s)", n_warn);
    printf(")\n");
    config_unref(cfg);
    return 0;
}
