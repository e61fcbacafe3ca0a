/* cost.c -- spend and cost from the response records: budget replay at start-up
 * (audit_spend_scan) and `airlock audit cost` (audit_cost_report), which also counts
 * the egress proxy's connect records by decision. */
#include "audit/audit.h"
#include "audit/audit_int.h"
#include "common/grow.h"
#include "common/log.h"

#include <cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* event_meta -- the meta JSON of a record of `type` at or after `since`, or NULL
 * (another type, too old, or unparseable). Caller frees with cJSON_Delete. */
static cJSON *event_meta(const struct audit_rec *rec, enum audit_rec_type type, time_t since)
{
    struct audit_body b;
    const char *why;
    cJSON *j;

    if (rec->type != type)
        return NULL;
    if (since > 0 && rec->time_ns / 1000000000ull < (uint64_t)since)
        return NULL;
    if (audit_body_parse(rec->body, rec->body_len, &b, &why) != 0)
        return NULL;
    j = cJSON_ParseWithLength(b.meta, b.meta_len);
    if (j && !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        j = NULL;
    }
    return j;
}

static cJSON *response_meta(const struct audit_rec *rec, time_t since)
{
    return event_meta(rec, AUDIT_REC_RESPONSE, since);
}

static const char *str_field(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static double num_field(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsNumber(v) && isfinite(v->valuedouble) ? v->valuedouble : 0.0;
}

static uint64_t count_field(const cJSON *o, const char *name)
{
    double d = num_field(o, name);
    return d > 0 && d < 1e18 ? (uint64_t)d : 0;
}

struct spend {
    time_t since;
    void (*fn)(void *ud, const char *key, const char *team, double usd);
    void *ud;
};

static int spend_cb(void *ud, const struct audit_rec *rec, const struct audit_walk_ctx *ctx)
{
    struct spend *s = ud;
    cJSON *j = response_meta(rec, s->since);

    (void)ctx;
    if (j) {
        s->fn(s->ud, str_field(j, "key"), str_field(j, "team"), num_field(j, "cost_usd"));
        cJSON_Delete(j);
    }
    return 0;
}

int audit_spend_scan(const char *dir, time_t since,
                     void (*fn)(void *ud, const char *key, const char *team, double usd), void *ud)
{
    struct spend s = {since, fn, ud};
    struct audit_report rep;
    struct stat st;
    char err[256];

    if (stat(dir, &st) != 0 && errno == ENOENT)
        return 0; /* no log yet: nothing spent */
    if (audit_walk_dir_since(dir, since, NULL, spend_cb, &s, &rep, err, sizeof(err)) != 0) {
        log_error("audit: cannot replay spend: %s", err);
        return -1;
    }
    /* An unsigned tail is normal for a log being written; damage is not, but the
     * spend before it still counts. */
    if (rep.verdict == AUDIT_TAMPERED)
        log_warn("audit: spend replay stopped at %s offset %llu: %s", rep.where_segment,
                 (unsigned long long)rep.where_offset, rep.message);
    return 0;
}

struct cost {
    time_t since;
    enum audit_cost_by by;
    struct audit_cost_row *rows;
    size_t n, cap;
    int oom;
};

/* row_for -- the row of group g (made when new), or NULL out of memory */
static struct audit_cost_row *row_for(struct cost *c, const char *g)
{
    size_t i;

    for (i = 0; i < c->n; i++)
        if (strcmp(c->rows[i].group, g) == 0)
            return &c->rows[i];
    struct audit_cost_row *nr = grow_room(c->rows, &c->cap, c->n + 1, sizeof(*nr), 16);
    if (!nr)
        return NULL;
    c->rows = nr;
    memset(&c->rows[i], 0, sizeof(c->rows[i]));
    c->rows[i].group = strdup(g);
    if (!c->rows[i].group)
        return NULL;
    c->n++;
    return &c->rows[i];
}

/* connect_cb -- a connect record (the egress proxy's CONNECT): counted by decision
 * under its key or team; no tokens, no cost. */
static int connect_cb(struct cost *c, const struct audit_rec *rec)
{
    cJSON *j;
    const char *g, *d;
    struct audit_cost_row *r;

    if (c->by != AUDIT_COST_BY_KEY && c->by != AUDIT_COST_BY_TEAM)
        return 0;
    if (!(j = event_meta(rec, AUDIT_REC_CONNECT, c->since)))
        return 0;
    g = str_field(j, c->by == AUDIT_COST_BY_KEY ? "key" : "team");
    if (!(r = row_for(c, g ? g : "-"))) {
        c->oom = 1;
        cJSON_Delete(j);
        return 1;
    }
    d = str_field(j, "decision");
    if (d && strcmp(d, "intercept") == 0)
        r->intercepts++;
    else if (d && strcmp(d, "tunnel") == 0)
        r->tunnels++;
    else
        r->refused++;
    cJSON_Delete(j);
    return 0;
}

static int cost_cb(void *ud, const struct audit_rec *rec, const struct audit_walk_ctx *ctx)
{
    static const char *fields[] = {"key", "team", "provider", "model"};
    struct cost *c = ud;
    const cJSON *usage;
    const char *g;
    struct audit_cost_row *r;

    (void)ctx;
    if (rec->type == AUDIT_REC_CONNECT)
        return connect_cb(c, rec);
    cJSON *j = response_meta(rec, c->since);
    if (!j)
        return 0;
    g = str_field(j, fields[c->by]);
    if (!(r = row_for(c, g ? g : "-"))) {
        c->oom = 1;
        cJSON_Delete(j);
        return 1;
    }
    size_t i = (size_t)(r - c->rows);
    c->rows[i].requests++;
    usage = cJSON_GetObjectItemCaseSensitive(j, "usage");
    if (cJSON_IsObject(usage)) {
        c->rows[i].input_tokens += count_field(usage, "input_tokens");
        c->rows[i].output_tokens += count_field(usage, "output_tokens");
        c->rows[i].cached_tokens += count_field(usage, "cached_input_tokens");
    }
    c->rows[i].usd += num_field(j, "cost_usd");
    cJSON_Delete(j);
    return 0;
}

static int row_cmp(const void *x, const void *y)
{
    const struct audit_cost_row *a = x, *b = y;
    if (a->usd != b->usd)
        return a->usd > b->usd ? -1 : 1;
    return strcmp(a->group, b->group);
}

void audit_cost_rows_free(struct audit_cost_row *rows, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        free(rows[i].group);
    free(rows);
}

int audit_cost_report(const char *dir, enum audit_cost_by by, time_t since,
                      struct audit_cost_row **rows, size_t *n_rows, struct audit_report *rep,
                      char *err, size_t errlen)
{
    struct cost c;

    memset(&c, 0, sizeof(c));
    c.since = since;
    c.by = by;
    *rows = NULL;
    *n_rows = 0;
    if ((int)by < 0 || by > AUDIT_COST_BY_MODEL) {
        snprintf(err, errlen, "unknown grouping");
        return -1;
    }
    if (audit_walk_dir(dir, NULL, cost_cb, &c, rep, err, errlen) != 0 || c.oom) {
        if (c.oom)
            snprintf(err, errlen, "out of memory");
        audit_cost_rows_free(c.rows, c.n);
        return -1;
    }
    if (c.n)
        qsort(c.rows, c.n, sizeof(*c.rows), row_cmp);
    *rows = c.rows;
    *n_rows = c.n;
    return 0;
}
