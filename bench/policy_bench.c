/* policy_bench.c -- how long policy_decide takes and how fast the built-in detectors scan.
 *
 *   policy_bench [--quick]
 *   policy_bench --body FILE [RUNS]
 *                                p50/p99 of policy_decide on one OpenAI chat body over RUNS runs
 *                                (default 5000, after a tenth as many warm-up runs), and of the
 *                                gateway's whole decision (proxy_decide: UTF-8, the parse, the
 *                                shapes, the policy, the outbound body), then exit
 *
 * Measures, single-threaded, with the built-in detectors and a realistic rule set
 * (block secrets, redact e-mail and phone, default allow):
 *  1. decision time of policy_decide() on OpenAI request bodies of 1 KiB, 64 KiB and
 *     4 MiB of mixed text (prose, code, log lines, ids, numbers) carrying a few findings
 *     (an e-mail, a phone number, an IPv4 address): p50 and p99 over many runs;
 *  2. throughput on plain prose without findings (16 MiB in one message), in MB/s
 *     (10^6 bytes per second) on one core: the whole policy_decide(), and its stages
 *     alone -- JSON extraction (policy_extract), the raw Vectorscan pass of the built-in
 *     database (hs_scan with a counting callback), and scan + validation (policy_scan).
 * Each timing is one policy_decide() call, clock_gettime(CLOCK_MONOTONIC) around it,
 * after warm-up runs; the decision is released outside the timed region. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hs.h>

#include "common/json.h"
#include "config/config.h"
#include "policy/policy.h"
#include "proxy/decide.h"
/* Private header, on purpose: the stage timings below (extraction, Vectorscan pass,
 * validation) reach inside the policy; the rest of the bench uses policy.h only. */
#include "policy/policy_int.h"

static const char CONFIG_YAML[] =
    "listen:\n"
    "  - address: 127.0.0.1:18080\n"
    "providers:\n"
    "  openai:\n"
    "    type: openai\n"
    "    zone: external\n"
    "    base_url: https://api.openai.com/v1\n"
    "    api_key: bench-not-a-key\n"
    "models:\n"
    "  - name: gpt-4o\n"
    "    provider: openai\n"
    "    price: {input_per_mtok: 2.5, output_per_mtok: 10}\n"
    /* no cap on values here: --body measures what deciding any body costs (one_body says
     * when the default limits.max_body_values would refuse it first) */
    "limits: {max_body_values: 10000000}\n"
    "rules:\n"
    "  - name: no-secrets-out\n"
    "    if: {detected: [secrets]}\n"
    "    then: {action: block}\n"
    "  - name: mask-contacts\n"
    "    if: {detected: [email, phone]}\n"
    "    then: {action: redact, detectors: [email, phone]}\n"
    "  - name: default\n"
    "    then: {action: allow}\n";

static const char *const PROSE[] = {
    "The service reads its configuration once at start-up and keeps it in memory. ",
    "Each worker handles one queue and reports its progress to the coordinator. ",
    "When a request fails, the client retries with exponential backoff and jitter. ",
    "The dashboard shows latency percentiles, error rates and saturation per region. ",
    "Feature flags let us roll out the change gradually and roll it back quickly. ",
    "Integration tests run against a disposable database created for each build. ",
    "Please summarise the main risks and propose mitigations for each of them. ",
    "Memory usage grows slowly under sustained load, which suggests a leak. ",
    "Rate limits protect the shared cluster from a single noisy tenant. ",
    "The incident review found no single root cause but several contributing factors. ",
};

/* prose in other scripts and with accents: every string takes the normaliser's character
 * path instead of the ASCII copy (the cost of normalisation, issue 13) */
static const char *const INTL[] = {
    "Der Dienst liest seine Konfiguration beim Start und hält sie im Speicher. ",
    "Chaque requête échouée est réessayée avec un délai exponentiel et aléatoire. ",
    "El panel muestra la latencia, la tasa de errores y la saturación por región. ",
    "設定は起動時に一度だけ読み込まれ、メモリに保持されます。 ",
    "हर अनुरोध विफल होने पर क्लाइंट दोबारा कोशिश करता है। ",
    "La revisione dell’incidente non ha trovato un’unica causa principale. ",
};

static const char *const MIXED[] = {
    "2025-03-14T09:21:07Z INFO worker: job 8f14e45f-ceea-467f-a8b6-7e6c2a1b9d3e finished in "
    "412ms\n",
    "    for (size_t i = 0; i < n; i++) total += weights[i] * values[i];\n",
    "Order #48213907 shipped on 2025-03-12; invoice INV-2025-00417, total 1,284.50 EUR.\n",
    "git checkout 3f2a9c1e7b4d5a6f8e9d0c1b2a3f4e5d6c7b8a9f && make -j4 test\n",
    "SELECT id, created_at FROM orders WHERE total > 1000 ORDER BY created_at DESC;\n",
    "version 2.14.1 fixed the retry loop; see ticket 58321 and build 20250314.7.\n",
    "| region | p50 ms | p99 ms |\n| eu-west | 12.4 | 88.1 |\n",
};

static const char *const FINDINGS[] = {
    "Please forward the report to maria.lopez@example.com before Friday. ",
    "If the pager is silent, call the on-call phone +1 415-555-0132. ",
    "The bastion host at 10.20.30.40 refused the connection. ",
};

struct buf {
    char *p;
    size_t n, cap;
};

static void buf_add(struct buf *b, const char *s)
{
    size_t l = strlen(s);
    if (b->n + l + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (b->n + l + 1 > cap)
            cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) {
            fprintf(stderr, "policy_bench: out of memory\n");
            exit(1);
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, l + 1);
    b->n += l;
}

/* body_make -- an OpenAI body whose one user message is `target` bytes of text:
 * mixed prose/code/logs with the FINDINGS spread through it when `findings` is 1, prose in
 * other scripts (INTL) when it is 2, else plain prose. Newlines are written as the JSON
 * escape \n. */
static char *body_make(size_t target, int findings, size_t *len)
{
    struct buf b = {0};
    unsigned seed = 12345;
    size_t next_finding = 0;
    buf_add(&b, "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"system\",\"content\":\"You are a "
                "careful assistant.\"},{\"role\":\"user\",\"content\":\"");
    size_t start = b.n;
    while (b.n - start < target) {
        seed = seed * 1103515245u + 12345u;
        unsigned r = seed >> 16;
        size_t pos = b.n - start;
        if (findings == 1 && next_finding < 3 && pos >= target * (next_finding + 1) / 4) {
            buf_add(&b, FINDINGS[next_finding++]);
            continue;
        }
        if (findings == 1 && r % 3 == 0) {
            const char *m = MIXED[r / 3 % (sizeof MIXED / sizeof *MIXED)];
            /* JSON-escape the newlines */
            for (const char *p = m; *p; p++)
                buf_add(&b, *p == '\n' ? "\\n" : (char[]){*p, 0});
        } else if (findings == 2) {
            buf_add(&b, INTL[r % (sizeof INTL / sizeof *INTL)]);
        } else {
            buf_add(&b, PROSE[r % (sizeof PROSE / sizeof *PROSE)]);
        }
    }
    buf_add(&b, "\"}]}");
    *len = b.n;
    return b.p;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int count_match(unsigned id, unsigned long long from, unsigned long long to, unsigned flags,
                       void *ctx)
{
    (void)id, (void)from, (void)to, (void)flags;
    (*(size_t *)ctx)++;
    return 0;
}

/* stages -- median seconds of extraction, raw hs_scan and policy_scan over `body`, and the
 * fastest hs_scan (on a shared machine the best run is the closest to the scanner's speed). */
static int stages(const struct policy *pol, const char *body, size_t len, int runs, double *t_ext,
                  double *t_hs, double *t_scan, double *best_hs, size_t *text_len,
                  size_t *raw_matches)
{
    double *t = malloc(sizeof(double) * (size_t)runs * 3);
    hs_scratch_t *scr = NULL;
    int rc = -1;
    char err[256];
    if (!t || hs_clone_scratch(pol->proto, &scr) != HS_SUCCESS)
        goto out;
    for (int i = 0; i < runs; i++) {
        struct pextract x;
        struct pcand *c = NULL;
        size_t nc = 0, m = 0;
        memset(&x, 0, sizeof x);
        double t0 = now_s();
        if (policy_extract(POLICY_API_OPENAI, body, len, &x, err, sizeof err) != 0) {
            policy_extract_deinit(&x);
            goto out;
        }
        double t1 = now_s();
        hs_error_t he = hs_scan(pol->db, x.text, (unsigned)x.text_len, 0, scr, count_match, &m);
        double t2 = now_s();
        int sr = policy_scan(pol, &x, &c, &nc, err, sizeof err);
        double t3 = now_s();
        free(c);
        *text_len = x.text_len;
        *raw_matches = m;
        policy_extract_deinit(&x);
        if (he != HS_SUCCESS || sr != 0)
            goto out;
        t[i] = t1 - t0;
        t[runs + i] = t2 - t1;
        t[2 * runs + i] = t3 - t2;
    }
    for (int k = 0; k < 3; k++)
        qsort(t + k * runs, (size_t)runs, sizeof *t, cmp_double);
    *t_ext = t[runs / 2];
    *t_hs = t[runs + runs / 2];
    *t_scan = t[2 * runs + runs / 2];
    *best_hs = t[runs];
    rc = 0;
out:
    hs_free_scratch(scr);
    free(t);
    return rc;
}

static const char *VERDICT[] = {"block", "route", "redact", "allow"};

/* time_decide -- runs policy_decide `runs` times after `warm` warm-up calls; fills
 * sorted per-call seconds into t. Returns 0, or -1 if a call failed. */
static int time_decide(const struct policy *pol, const char *body, size_t len, int warm, int runs,
                       double *t, struct policy_decision *last)
{
    struct policy_input in = {
        .api = POLICY_API_OPENAI, .body = body, .len = len, .model = "gpt-4o"};
    for (int i = 0; i < warm + runs; i++) {
        struct policy_decision d;
        double t0 = now_s();
        int rc = policy_decide(pol, &in, &d);
        double t1 = now_s();
        if (rc != 0) {
            fprintf(stderr, "policy_bench: policy_decide failed: %s\n", d.error);
            policy_decision_deinit(&d);
            return -1;
        }
        if (i >= warm)
            t[i - warm] = t1 - t0;
        if (i == warm + runs - 1)
            *last = d;
        else
            policy_decision_deinit(&d);
    }
    qsort(t, (size_t)runs, sizeof *t, cmp_double);
    return 0;
}

static double pct(const double *t, int n, double p)
{
    int i = (int)(p * (double)(n - 1) + 0.5);
    return t[i < n ? i : n - 1];
}

/* time_gateway -- the same as time_decide for proxy_decide (the gateway's whole decision);
 * *status gets the last call's: 0 when it went on, else the HTTP status of the refusal. */
static int time_gateway(const struct config *cfg, const struct policy *pol, const char *body,
                        size_t len, int warm, int runs, double *t, int *status)
{
    for (int i = 0; i < warm + runs; i++) {
        struct proxy_decision d;
        double t0 = now_s();
        int rc = proxy_decide(cfg, pol, POLICY_API_OPENAI, body, len, NULL, NULL, &d);
        double t1 = now_s();
        if (i >= warm)
            t[i - warm] = t1 - t0;
        if (i == warm + runs - 1) {
            *status = rc == 0 ? 0 : d.status;
            if (rc != 0)
                printf("proxy_decide refused it: %d %s\n", d.status, d.error);
        }
        proxy_decision_deinit(&d);
    }
    qsort(t, (size_t)runs, sizeof *t, cmp_double);
    return 0;
}

/* one_body -- p50/p99 of policy_decide and of proxy_decide on the OpenAI body in `path`,
 * over `runs` runs each. */
static int one_body(const struct config *cfg, const struct policy *pol, const char *path, int runs,
                    const struct config *deflt, const struct policy *dpol)
{
    FILE *f = fopen(path, "rb");
    struct buf b = {0};
    char chunk[4096];
    size_t r;
    if (!f) {
        fprintf(stderr, "policy_bench: cannot open %s\n", path);
        return -1;
    }
    buf_add(&b, "");
    while ((r = fread(chunk, 1, sizeof chunk - 1, f)) > 0) {
        chunk[r] = 0;
        buf_add(&b, chunk);
    }
    fclose(f);
    double *t = malloc(sizeof(double) * (size_t)runs);
    struct policy_decision d;
    int status = 0;
    if (!t || time_decide(pol, b.p, b.n, runs / 10, runs, t, &d) != 0) {
        if (t && time_gateway(cfg, pol, b.p, b.n, runs / 10, runs, t, &status) == 0)
            printf("%zu-byte body: proxy_decide p50 %.1f us, p99 %.1f us (%d runs)\n", b.n,
                   pct(t, runs, 0.5) * 1e6, pct(t, runs, 0.99) * 1e6, runs);
        free(t);
        free(b.p);
        return -1;
    }
    printf("%zu-byte body: verdict %s, %zu findings, policy_decide p50 %.1f us, p99 %.1f us "
           "(%d runs)\n",
           b.n, (unsigned)d.verdict < 4 ? VERDICT[d.verdict] : "?", d.n_findings,
           pct(t, runs, 0.5) * 1e6, pct(t, runs, 0.99) * 1e6, runs);
    policy_decision_deinit(&d);
    time_gateway(cfg, pol, b.p, b.n, runs / 10, runs, t, &status);
    struct json_doc doc = {0};
    char err[256];
    if (json_parse(&doc, b.p, b.n, err, sizeof err) == 0)
        printf("%zu-byte body: %zu JSON values%s\n", b.n, doc.n,
               doc.n > 100000 ? " (over the default limits.max_body_values, 100000: the "
                                "gateway answers 413 before deciding)"
                              : "");
    json_doc_deinit(&doc);
    printf("%zu-byte body: proxy_decide (UTF-8, parse, shapes, policy, outbound) p50 %.1f us, "
           "p99 %.1f us (%d runs)%s\n",
           b.n, pct(t, runs, 0.5) * 1e6, pct(t, runs, 0.99) * 1e6, runs, status ? ", refused" : "");
    if (deflt) {
        /* the same with the default limit, which may refuse it (count_values, the parse) */
        int st = 0;
        time_gateway(deflt, dpol, b.p, b.n, runs / 10, runs, t, &st);
        printf("%zu-byte body: proxy_decide with the default limits p50 %.1f us, p99 %.1f us "
               "(%d runs)%s\n",
               b.n, pct(t, runs, 0.5) * 1e6, pct(t, runs, 0.99) * 1e6, runs, st ? ", refused" : "");
    }
    free(t);
    free(b.p);
    return 0;
}

int main(int argc, char **argv)
{
    int quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    const char *body_path = argc > 2 && strcmp(argv[1], "--body") == 0 ? argv[2] : NULL;
    int body_runs = body_path && argc > 3 ? atoi(argv[3]) : 5000;
    struct config *cfg = NULL, *dcfg = NULL;
    struct policy *pol = NULL, *dpol = NULL;
    struct config_errors errs;
    int rc = 1;
    memset(&errs, 0, sizeof errs);
    if (body_path) {
        /* the bench's config as loaded with the default limits (without its limits line) */
        char yaml[sizeof CONFIG_YAML];
        const char *lim = strstr(CONFIG_YAML, "limits:"), *eol = lim ? strchr(lim, '\n') : NULL;
        if (lim && eol) {
            size_t a = (size_t)(lim - CONFIG_YAML);
            memcpy(yaml, CONFIG_YAML, a);
            strcpy(yaml + a, eol + 1);
            if (config_load_text("bench-default", yaml, strlen(yaml), NULL, &dcfg, &errs) != 0 ||
                policy_new(dcfg, &dpol, &errs) != 0) {
                fprintf(stderr, "policy_bench: cannot build the default-limits policy\n");
                goto out;
            }
        }
    }
    if (config_load_text("bench", CONFIG_YAML, sizeof CONFIG_YAML - 1, NULL, &cfg, &errs) != 0 ||
        policy_new(cfg, &pol, &errs) != 0) {
        char msg[2048];
        config_errors_format(&errs, msg, sizeof msg);
        fprintf(stderr, "policy_bench: cannot build the policy:\n%s", msg);
        goto out;
    }
    if (body_path) {
        if (body_runs < 1 || body_runs > 1000000) {
            fprintf(stderr, "policy_bench: RUNS must be 1..1000000\n");
            goto out;
        }
        rc = one_body(cfg, pol, body_path, body_runs, dcfg, dpol) == 0 ? 0 : 1;
        goto out;
    }

    printf("policy_bench: single thread, built-in detectors, rules: block secrets / redact "
           "email+phone / allow\n");
    printf("decision time = one policy_decide() call on an OpenAI body (system + user message "
           "of mixed prose, code,\nlog lines, ids and numbers with 3 findings: email, phone, "
           "ipv4), CLOCK_MONOTONIC around the call.\n\n");
    printf("%-8s %10s %6s %8s %12s %12s %10s  %s\n", "prompt", "body bytes", "runs", "verdict",
           "p50", "p99", "MB/s(p50)", "findings");
    static const struct {
        const char *name;
        size_t size;
        int runs, warm;
    } sizes[] = {{"1 KiB", 1024, 20000, 2000},
                 {"64 KiB", 64 * 1024, 2000, 100},
                 {"4 MiB", 4 * 1024 * 1024, 40, 3}};
    double p99_1k = -1;
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        size_t len;
        char *body = body_make(sizes[s].size, 1, &len);
        int runs = quick ? sizes[s].runs / 10 : sizes[s].runs;
        if (runs < 5)
            runs = 5;
        double *t = malloc(sizeof(double) * (size_t)runs);
        struct policy_decision d;
        if (!body || !t || time_decide(pol, body, len, sizes[s].warm, runs, t, &d) != 0) {
            free(body);
            free(t);
            goto out;
        }
        double p50 = pct(t, runs, 0.50), p99 = pct(t, runs, 0.99);
        if (s == 0)
            p99_1k = p99;
        char fbuf[128] = "";
        for (size_t k = 0; k < d.n_findings && strlen(fbuf) < 100; k++)
            snprintf(fbuf + strlen(fbuf), sizeof fbuf - strlen(fbuf), "%s%s", k ? "," : "",
                     d.findings[k].detector);
        printf("%-8s %10zu %6d %8s %9.1f us %9.1f us %10.1f  %s\n", sizes[s].name, len, runs,
               (unsigned)d.verdict < 4 ? VERDICT[d.verdict] : "?", p50 * 1e6, p99 * 1e6,
               (double)len / p50 / 1e6, fbuf);
        policy_decision_deinit(&d);
        free(body);
        free(t);
    }

    /* plain text throughput */
    size_t plen;
    char *plain = body_make(16 * 1024 * 1024, 0, &plen);
    int pruns = quick ? 3 : 10;
    double *pt = malloc(sizeof(double) * (size_t)pruns);
    struct policy_decision pd;
    if (!plain || !pt || time_decide(pol, plain, plen, 1, pruns, pt, &pd) != 0) {
        free(plain);
        free(pt);
        goto out;
    }
    double dec_mbps = (double)plen / pct(pt, pruns, 0.5) / 1e6;
    double t_ext, t_hs, t_scan, best_hs;
    size_t tlen = 0, raw = 0;
    if (stages(pol, plain, plen, pruns, &t_ext, &t_hs, &t_scan, &best_hs, &tlen, &raw) != 0) {
        fprintf(stderr, "policy_bench: stage timing failed\n");
        policy_decision_deinit(&pd);
        free(plain);
        free(pt);
        goto out;
    }
    double mbps = (double)tlen / t_hs / 1e6;
    printf("\nplain prose, %zu-byte body (%zu bytes of model-visible text), %zu findings, "
           "median of %d runs, one core:\n",
           plen, tlen, pd.n_findings, pruns);
    printf("  policy_decide (whole)           %8.1f ms  %7.0f MB/s of body\n",
           pct(pt, pruns, 0.5) * 1e3, dec_mbps);
    printf("  extraction (policy_extract)     %8.1f ms  %7.0f MB/s of body\n", t_ext * 1e3,
           (double)plen / t_ext / 1e6);
    printf("  raw Vectorscan pass (hs_scan)   %8.1f ms  %7.0f MB/s of text  (%zu raw pattern "
           "matches)\n",
           t_hs * 1e3, mbps, raw);
    printf("  scan + validate (policy_scan)   %8.1f ms  %7.0f MB/s of text\n", t_scan * 1e3,
           (double)tlen / t_scan / 1e6);
    printf("  raw Vectorscan pass, best run   %8.1f ms  %7.0f MB/s of text\n", best_hs * 1e3,
           (double)tlen / best_hs / 1e6);
    policy_decision_deinit(&pd);
    free(plain);

    /* the cost of normalisation: the same stages on prose that is not ASCII, where every
     * character goes through policy_norm_cp instead of the copy fast path */
    double i_ext, i_hs, i_scan, i_best;
    size_t ilen, itlen = 0, iraw = 0;
    char *intl = body_make(16 * 1024 * 1024, 2, &ilen);
    if (!intl || time_decide(pol, intl, ilen, 1, pruns, pt, &pd) != 0 ||
        stages(pol, intl, ilen, pruns, &i_ext, &i_hs, &i_scan, &i_best, &itlen, &iraw) != 0) {
        fprintf(stderr, "policy_bench: normalisation timing failed\n");
        free(intl);
        free(pt);
        goto out;
    }
    printf("\nnormalisation: the same on %zu bytes of prose in other scripts (German, French, "
           "Spanish, Italian, Japanese, Hindi; every character normalised), median of %d:\n",
           ilen, pruns);
    printf("  policy_decide (whole)           %8.1f ms  %7.0f MB/s of body\n",
           pct(pt, pruns, 0.5) * 1e3, (double)ilen / pct(pt, pruns, 0.5) / 1e6);
    printf("  extraction (policy_extract)     %8.1f ms  %7.0f MB/s of body  (ASCII prose: %.0f "
           "MB/s; normalising costs %.1f ns per body byte more)\n",
           i_ext * 1e3, (double)ilen / i_ext / 1e6, (double)plen / t_ext / 1e6,
           (i_ext / (double)ilen - t_ext / (double)plen) * 1e9);
    printf("  scan + validate (policy_scan)   %8.1f ms  %7.0f MB/s of text\n", i_scan * 1e3,
           (double)itlen / i_scan / 1e6);
    policy_decision_deinit(&pd);
    free(intl);
    free(pt);

    double best_mbps = (double)tlen / best_hs / 1e6;
    printf("\ntargets: raw scan >= 1000 MB/s per core on plain text: %s (median %.0f MB/s, best "
           "%.0f MB/s; whole policy_decide %.0f MB/s)\n         p99 <= 100 us for 1 KiB: %s "
           "(%.1f us)\n",
           mbps >= 1000 ? "met" : "NOT met", mbps, best_mbps, dec_mbps,
           p99_1k <= 100e-6 ? "met" : "NOT met", p99_1k * 1e6);
    rc = 0;
out:
    policy_free(pol);
    policy_free(dpol);
    if (cfg)
        config_unref(cfg);
    if (dcfg)
        config_unref(dcfg);
    return rc;
}
