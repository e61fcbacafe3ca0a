/* fuzz_config.c -- libFuzzer driver for the config loader: any bytes, read as a YAML
 * configuration, must load or be refused cleanly. A refusal has problems, in file order,
 * each with a sane position; a loaded snapshot holds the references the rest of airlock
 * trusts without checking (a model's provider, a rule's model, a listener's host).
 * Relative paths resolve into a scratch directory holding one readable file, `f`. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char basedir[64];

static void check(int ok)
{
    if (!ok)
        abort();
}

static void on_lint(void *ud, struct config_pos pos, const char *msg)
{
    (void)ud;
    check(pos.line >= 0 && pos.col >= 0 && msg && strlen(msg) < 256);
}

static void check_errors(const struct config_errors *e)
{
    long long prev = 0;
    char buf[512];

    check(e->n > 0 || e->dropped > 0);
    check(e->n <= CONFIG_MAX_ERRORS);
    for (size_t i = 0; i < e->n; i++) {
        const struct config_error *it = &e->items[i];
        check(it->line >= 0 && it->col >= 0 && (it->line == 0) == (it->col == 0));
        check(memchr(it->message, '\0', sizeof it->message) != NULL && it->message[0]);
        /* file order, problems without a position last */
        long long key = it->line > 0 ? (long long)it->line * 100000 + it->col : INT64_MAX;
        check(key >= prev);
        prev = key;
    }
    size_t n = config_errors_format(e, buf, sizeof buf);
    check(n < sizeof buf && strlen(buf) == n);
}

static void check_snapshot(const struct config *c)
{
    check(c->refs == 1 && c->n_listens >= 1);
    for (size_t i = 0; i < c->n_listens; i++)
        check(c->listens[i].host && c->listens[i].port >= 1 && c->listens[i].port <= 65535 &&
              (c->listens[i].loopback || c->listens[i].tls_cert));
    for (size_t i = 0; i < c->n_keys; i++)
        check(c->keys[i].name != NULL);
    for (size_t i = 0; i < c->n_providers; i++) {
        const struct config_provider *p = &c->providers[i];
        check(p->name && config_provider_find(c, p->name) == p);
        if (p->type == CONFIG_PROVIDER_BUILTIN)
            check(p->model_path && !p->base_url && p->zone == CONFIG_ZONE_INTERNAL);
        else
            check(p->base_url && p->host && p->path_prefix);
    }
    for (size_t i = 0; i < c->n_models; i++) {
        const struct config_model *m = &c->models[i];
        check(m->name && m->upstream_model && m->provider_index < c->n_providers);
        check(strcmp(c->providers[m->provider_index].name, m->provider) == 0);
        check(config_model_find(c, m->name) == m);
    }
    for (size_t i = 0; i < c->n_detectors; i++) {
        const struct config_detector *d = &c->detectors[i];
        check(d->name && (d->regex != NULL) != (d->keywords != NULL) &&
              (!d->keywords || d->n_keywords > 0));
    }
    for (size_t i = 0; i < c->n_rules; i++) {
        const struct config_rule *r = &c->rules[i];
        check(r->name != NULL);
        for (size_t j = 0; j < r->n_detected; j++)
            check(config_detectors_known(c, r->detected[j]));
        for (size_t j = 0; j < r->n_redact_detectors; j++)
            check(config_detectors_known(c, r->redact_detectors[j]));
        if (r->action == CONFIG_ACTION_ROUTE)
            check(r->model != NULL);
        if (r->model)
            check(config_model_find(c, r->model) != NULL);
        if (r->provider)
            check(config_provider_find(c, r->provider) != NULL);
    }
    check(c->limits.max_body_bytes >= 1 && c->limits.max_header_bytes >= 1024 &&
          c->limits.engine_queue >= 1);
    config_lint(c, on_lint, NULL);
}

static int setup(void)
{
    char path[96];
    FILE *f;

    snprintf(basedir, sizeof basedir, "/tmp/airlock-fuzz-config-XXXXXX");
    if (!mkdtemp(basedir))
        return -1;
    snprintf(path, sizeof path, "%s/f", basedir);
    f = fopen(path, "w");
    if (!f)
        return -1;
    fputs("# a keyword list, a certificate, a key: whatever the input names\nfalcon\n", f);
    fclose(f);
    setenv("AIRLOCK_FUZZ", "value", 1);
    unsetenv("AIRLOCK_FUZZ_UNSET");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    struct config *c = NULL;
    struct config_errors e;

    if (!ready) {
        if (setup() != 0)
            abort();
        ready = 1;
    }
    int r = config_load_text("fuzz.yaml", (const char *)data, size, basedir, &c, &e);
    if (r == 0) {
        check(c != NULL && e.n == 0 && e.dropped == 0);
        check_snapshot(c);
        check(config_ref(c) == c);
        config_unref(c);
        config_unref(c);
    } else {
        check(r == -1 && c == NULL);
        check_errors(&e);
    }
    return 0;
}
