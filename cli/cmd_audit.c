/* cmd_audit.c -- `airlock audit verify|show|cost` and `airlock keygen` (SPEC §1, docs/audit.md). */
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "audit/audit.h"
#include "cli/cli.h"

#define USAGE_VERIFY "audit verify DIR [--pubkey FILE]"
#define USAGE_SHOW "audit show DIR [--id REQUEST_ID] [--key FILE] [--diff]"
#define USAGE_COST "audit cost DIR [--by key|team|provider|model] [--since YYYY-MM-DD] [--json]"
#define USAGE_AUDIT                                                                                \
    "audit verify DIR [--pubkey FILE] | show DIR [--id ID] [--key FILE] [--diff] | "               \
    "cost DIR [--by key|team|provider|model] [--since DATE] [--json]"

/* Options are NAME VALUE pairs (or flags) in any order around one positional DIR. */
struct opt {
    const char *name;
    int takes_value;
    const char *value;
    int set;
};

static int parse_args(int argc, char **argv, struct opt *opts, size_t n_opts, const char **dir)
{
    int i;
    size_t k;

    *dir = NULL;
    for (i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] == '-' && a[1]) {
            for (k = 0; k < n_opts; k++)
                if (strcmp(a, opts[k].name) == 0)
                    break;
            if (k == n_opts) {
                fprintf(stderr, "airlock: unknown option %s\n", a);
                return -1;
            }
            if (opts[k].takes_value) {
                if (i + 1 >= argc) {
                    fprintf(stderr, "airlock: %s needs a value\n", a);
                    return -1;
                }
                opts[k].value = argv[++i];
            }
            opts[k].set = 1;
        } else if (!*dir) {
            *dir = a;
        } else {
            fprintf(stderr, "airlock: unexpected argument %s\n", a);
            return -1;
        }
    }
    if (!*dir) {
        fprintf(stderr, "airlock: missing DIR\n");
        return -1;
    }
    return 0;
}

static void print_where(FILE *f, const char *what, const struct audit_report *rep)
{
    if (!rep->where_segment[0] && rep->where_offset == 0 && rep->where_seq == 0) {
        fprintf(f, "%s: %s\n", what, rep->message);
        return;
    }
    fprintf(f, "%s: %s%soffset %llu, seq %llu: %s (%llu records verified before it)\n", what,
            rep->where_segment, rep->where_segment[0] ? " " : "",
            (unsigned long long)rep->where_offset, (unsigned long long)rep->where_seq, rep->message,
            (unsigned long long)rep->records);
}

static int audit_verify_cmd(int argc, char **argv)
{
    struct opt opts[] = {{"--pubkey", 1, NULL, 0}};
    struct audit_report rep;
    const char *dir;
    char err[512];

    if (parse_args(argc, argv, opts, 1, &dir) != 0)
        return cli_usage(USAGE_VERIFY);
    if (audit_verify(dir, opts[0].value, &rep, err, sizeof(err)) != 0) {
        fprintf(stderr, "airlock audit verify: %s\n", err);
        return 2;
    }
    if (rep.verdict == AUDIT_INTACT) {
        printf("ok: %llu records in %llu segments, %llu checkpoints, last checkpoint seq %llu",
               (unsigned long long)rep.records, (unsigned long long)rep.segments,
               (unsigned long long)rep.checkpoints, (unsigned long long)rep.last_checkpoint_seq);
        if (rep.broken_files)
            printf("; %zu .broken file%s set aside by crash recovery", rep.broken_files,
                   rep.broken_files == 1 ? "" : "s");
        printf("\n");
        return 0;
    }
    print_where(stdout, rep.verdict == AUDIT_TAMPERED ? "TAMPERED" : "TRUNCATED", &rep);
    return 1;
}

static void print_line(void *ud, const char *json)
{
    (void)ud;
    fputs(json, stdout);
    fputc('\n', stdout);
}

static void print_text(void *ud, const char *text)
{
    (void)ud;
    fputs(text, stdout);
}

static int audit_show_cmd(int argc, char **argv)
{
    struct opt opts[] = {{"--id", 1, NULL, 0}, {"--key", 1, NULL, 0}, {"--diff", 0, NULL, 0}};
    struct audit_report rep;
    const char *dir;
    char err[512];
    int rc;

    if (parse_args(argc, argv, opts, 3, &dir) != 0)
        return cli_usage(USAGE_SHOW);
    if (opts[2].set) /* what changed, for a person (audit/diff.c) */
        rc =
            audit_diff(dir, opts[0].value, opts[1].value, print_text, NULL, &rep, err, sizeof(err));
    else
        rc =
            audit_show(dir, opts[0].value, opts[1].value, print_line, NULL, &rep, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "airlock audit show: %s\n", err);
        return 2;
    }
    fflush(stdout);
    if (rep.undecryptable)
        fprintf(stderr,
                "airlock audit show: %llu sealed payloads could not be opened with %s (sealed to "
                "another auditor's key?)\n",
                (unsigned long long)rep.undecryptable, opts[1].value);
    if (rep.verdict == AUDIT_TAMPERED || (rep.verdict == AUDIT_TRUNCATED && !rep.unsigned_tail)) {
        print_where(stderr,
                    rep.verdict == AUDIT_TAMPERED ? "airlock audit show: TAMPERED"
                                                  : "airlock audit show: TRUNCATED",
                    &rep);
        return 1;
    }
    return rep.undecryptable ? 1 : 0;
}

static int parse_date(const char *s, time_t *out)
{
    struct tm tm;
    int y, m, d;
    char tail;

    if (sscanf(s, "%4d-%2d-%2d%c", &y, &m, &d, &tail) != 3 || y < 1970 || m < 1 || m > 12 ||
        d < 1 || d > 31)
        return -1;
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = y - 1900;
    tm.tm_mon = m - 1;
    tm.tm_mday = d;
    *out = timegm(&tm);
    return 0;
}

static int audit_cost_cmd(int argc, char **argv)
{
    static const char *bys[] = {"key", "team", "provider", "model"};
    struct opt opts[] = {{"--by", 1, NULL, 0}, {"--since", 1, NULL, 0}, {"--json", 0, NULL, 0}};
    struct audit_cost_row *rows = NULL, total;
    struct audit_report rep;
    enum audit_cost_by by = AUDIT_COST_BY_KEY;
    time_t since = 0;
    const char *dir;
    char err[512];
    size_t n = 0, i;
    int k;

    if (parse_args(argc, argv, opts, 3, &dir) != 0)
        return cli_usage(USAGE_COST);
    if (opts[0].value) {
        for (k = 0; k < 4; k++)
            if (strcmp(opts[0].value, bys[k]) == 0)
                break;
        if (k == 4) {
            fprintf(stderr, "airlock audit cost: --by %s: expected key, team, provider or model\n",
                    opts[0].value);
            return cli_usage(USAGE_COST);
        }
        by = (enum audit_cost_by)k;
    }
    if (opts[1].value && parse_date(opts[1].value, &since) != 0) {
        fprintf(stderr, "airlock audit cost: --since %s: expected a date YYYY-MM-DD (UTC)\n",
                opts[1].value);
        return cli_usage(USAGE_COST);
    }
    if (audit_cost_report(dir, by, since, &rows, &n, &rep, err, sizeof(err)) != 0) {
        fprintf(stderr, "airlock audit cost: %s\n", err);
        return 2;
    }
    memset(&total, 0, sizeof(total));
    /* the egress proxy's CONNECT counts get columns only in a log that has them */
    int connects = 0;
    for (i = 0; i < n; i++)
        connects |= rows[i].intercepts || rows[i].tunnels || rows[i].refused;
    if (!opts[2].set) {
        printf("%-24s %10s %14s %14s %14s %16s", bys[by], "requests", "input_tokens",
               "output_tokens", "cached_tokens", "usd");
        if (connects)
            printf(" %10s %10s %10s", "intercepts", "tunnels", "refused");
        printf("\n");
    }
    for (i = 0; i < n; i++) {
        struct audit_cost_row *r = &rows[i];
        if (opts[2].set) {
            cJSON *o = cJSON_CreateObject();
            char *line = NULL;
            if (o && cJSON_AddStringToObject(o, bys[by], r->group) &&
                cJSON_AddNumberToObject(o, "requests", (double)r->requests) &&
                cJSON_AddNumberToObject(o, "input_tokens", (double)r->input_tokens) &&
                cJSON_AddNumberToObject(o, "output_tokens", (double)r->output_tokens) &&
                cJSON_AddNumberToObject(o, "cached_tokens", (double)r->cached_tokens) &&
                cJSON_AddNumberToObject(o, "usd", r->usd) &&
                (!connects || (cJSON_AddNumberToObject(o, "intercepts", (double)r->intercepts) &&
                               cJSON_AddNumberToObject(o, "tunnels", (double)r->tunnels) &&
                               cJSON_AddNumberToObject(o, "refused", (double)r->refused))))
                line = cJSON_PrintUnformatted(o);
            if (line)
                printf("%s\n", line);
            free(line);
            cJSON_Delete(o);
        } else {
            printf("%-24s %10llu %14llu %14llu %14llu %16.8f", r->group,
                   (unsigned long long)r->requests, (unsigned long long)r->input_tokens,
                   (unsigned long long)r->output_tokens, (unsigned long long)r->cached_tokens,
                   r->usd);
            if (connects)
                printf(" %10llu %10llu %10llu", (unsigned long long)r->intercepts,
                       (unsigned long long)r->tunnels, (unsigned long long)r->refused);
            printf("\n");
        }
        total.requests += r->requests;
        total.input_tokens += r->input_tokens;
        total.output_tokens += r->output_tokens;
        total.cached_tokens += r->cached_tokens;
        total.usd += r->usd;
        total.intercepts += r->intercepts;
        total.tunnels += r->tunnels;
        total.refused += r->refused;
    }
    if (!opts[2].set) {
        printf("%-24s %10llu %14llu %14llu %14llu %16.8f", "TOTAL",
               (unsigned long long)total.requests, (unsigned long long)total.input_tokens,
               (unsigned long long)total.output_tokens, (unsigned long long)total.cached_tokens,
               total.usd);
        if (connects)
            printf(" %10llu %10llu %10llu", (unsigned long long)total.intercepts,
                   (unsigned long long)total.tunnels, (unsigned long long)total.refused);
        printf("\n");
    }
    audit_cost_rows_free(rows, n);
    fflush(stdout);
    if (rep.verdict == AUDIT_TAMPERED || (rep.verdict == AUDIT_TRUNCATED && !rep.unsigned_tail)) {
        print_where(stderr, "airlock audit cost: stopped at damage", &rep);
        return 1;
    }
    return 0;
}

int cmd_audit(int argc, char **argv)
{
    if (argc < 2)
        return cli_usage(USAGE_AUDIT);
    if (strcmp(argv[1], "verify") == 0)
        return audit_verify_cmd(argc - 2, argv + 2);
    if (strcmp(argv[1], "show") == 0)
        return audit_show_cmd(argc - 2, argv + 2);
    if (strcmp(argv[1], "cost") == 0)
        return audit_cost_cmd(argc - 2, argv + 2);
    fprintf(stderr, "airlock audit: unknown sub-command %s\n", argv[1]);
    return cli_usage(USAGE_AUDIT);
}

int cmd_keygen(int argc, char **argv)
{
    char err[512];

    if (argc != 3 || strcmp(argv[1], "--out") != 0 || !argv[2][0])
        return cli_usage("keygen --out PREFIX");
    if (audit_keygen(argv[2], err, sizeof(err)) != 0) {
        fprintf(stderr, "airlock keygen: %s\n", err);
        return 1;
    }
    printf("wrote %s.sign.key %s.sign.pub (Ed25519: checkpoints; keep .key on the gateway, ship "
           ".pub off-host)\n",
           argv[2], argv[2]);
    printf("wrote %s.seal.key %s.seal.pub (X25519: sealing; .pub to the gateway's seal_to, keep "
           ".key with the auditor)\n",
           argv[2], argv[2]);
    return 0;
}
