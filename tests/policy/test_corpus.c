/* test_corpus.c -- per-detector recall and false-positive rate of the built-in
 * detectors over the labelled corpus tests/policy/corpus/corpus.jsonl.
 *
 * Each corpus line is one request (see tests/policy/corpus/gen.py for the format).
 * A `text` entry is wrapped here into a one-message body of its API; a `body` entry
 * is used byte for byte. Every entry goes through policy_decide() under a config
 * whose only rule allows everything, so findings are computed and nothing else
 * interferes.
 *
 * Definitions (also in docs/policy.md):
 *  - a labelled occurrence is each place where a label's value, spelt as in the body
 *    (JSON-escaped for `text` entries, the label's `raw` for `body` entries), occurs
 *    in the model-visible string;
 *  - an occurrence is found when a finding of the same detector covers it
 *    ([start, end) of the finding contains the occurrence's byte span in the body);
 *  - recall(D) = found occurrences of D / labelled occurrences of D;
 *  - a finding of D is a false positive when it overlaps no occurrence labelled D (or
 *    labelled with D in its `also` list); FP rate(D) = entries with at least one
 *    false positive of D / all entries.
 * The test fails when any detector's recall < 0.99 or FP rate > 0.01, when the corpus
 * is too small (< 300 entries, < 40% benign, < 10 labels for a detector) or when
 * policy_decide() fails on any entry. Misses and false positives are listed on
 * stderr with the entry id.
 *
 * A found occurrence must also carry the right message index: the number of message
 * objects ({"role":...) before it in the body, or -1 before "messages" (Anthropic's
 * top-level system); the corpus writes bodies compactly, so those markers are exact.
 *
 * A second pass redacts every entry under "redact pii, secrets and ipv4, else allow"
 * and checks, for each: the verdict (redact iff there are findings), that the redacted
 * body is still JSON, that scanning it again finds nothing, and -- where no finding's
 * bytes contain a JSON escape, so that the decoded value is spelt as in the body -- that
 * streaming the redacted body through the restorer in chunks of 1..7 bytes gives back
 * the original body byte for byte. */
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "harness.h"
#include "policy/policy.h"

#define CORPUS_PATH "tests/policy/corpus/corpus.jsonl"
#define MIN_RECALL 0.99
#define MAX_FP_RATE 0.01
#define MIN_ENTRIES 300
#define MIN_BENIGN_FRACTION 0.40
#define MIN_LABELS 10

/* the built-in detectors, in config's table order (config.h) */
#define N_BUILTIN ((size_t)CONFIG_DET_N_BUILTIN)
#define BUILTIN(i) (config_detectors_builtin[i].name)
#define N_DET (N_BUILTIN + 1) /* last slot: a detector name that is no built-in */
#define MAX_CATEGORIES 128

static const char CONFIG_YAML[] =
    "listen:\n"
    "  - address: 127.0.0.1:18080\n"
    "providers:\n"
    "  openai:\n"
    "    type: openai\n"
    "    zone: external\n"
    "    base_url: https://api.openai.com/v1\n"
    "    api_key: corpus-test-not-a-key\n"
    "  anthropic:\n"
    "    type: anthropic\n"
    "    zone: external\n"
    "    base_url: https://api.anthropic.com\n"
    "    api_key: corpus-test-not-a-key\n"
    "models:\n"
    "  - name: gpt-4o\n"
    "    provider: openai\n"
    "    price: {input_per_mtok: 2.5, output_per_mtok: 10}\n"
    "  - name: gpt-4o-mini\n"
    "    provider: openai\n"
    "    price: {input_per_mtok: 0.15, output_per_mtok: 0.6}\n"
    "  - name: claude-3-5-sonnet-latest\n"
    "    provider: anthropic\n"
    "    price: {input_per_mtok: 3, output_per_mtok: 15}\n"
    "rules:\n"
    "  - name: allow-all\n"
    "    then: {action: allow}\n";

static const char REDACT_RULES[] =
    "rules:\n"
    "  - name: redact-everything\n"
    "    if: {detected: [pii, secrets, ipv4]}\n"
    "    then: {action: redact, detectors: [pii, secrets, ipv4]}\n"
    "  - name: default\n"
    "    then: {action: allow}\n";

struct det_stats {
    size_t labels, found;   /* labelled occurrences, of which covered */
    size_t fp_entries;      /* entries with at least one unexplained finding */
    size_t fp_findings;
};

/* per category (the corpus's families: "ticket", "cred-uri", "phone-forms-benign"...) */
struct cat_stats {
    char name[48];
    size_t entries, benign;
    size_t labels, found; /* labelled occurrences of any detector, of which covered */
    size_t fp_entries;    /* entries with a finding that overlaps no label of its detector */
};

static struct {
    int loaded;
    size_t entries, benign, errors, corpus_errors;
    size_t redact_checked, restore_checked, redact_failures;
    size_t wrong_message;
    struct det_stats d[N_DET];
    struct cat_stats c[MAX_CATEGORIES];
    size_t n_cats;
} S;

/* cat_find -- the stats of category `name`, added on first sight; NULL when full. */
static struct cat_stats *cat_find(const char *name)
{
    for (size_t i = 0; i < S.n_cats; i++)
        if (strcmp(S.c[i].name, name) == 0)
            return &S.c[i];
    if (S.n_cats == MAX_CATEGORIES)
        return NULL;
    struct cat_stats *c = &S.c[S.n_cats++];
    snprintf(c->name, sizeof c->name, "%s", name);
    return c;
}

struct occ {
    size_t start, end;
    size_t det;            /* index into BUILTIN, N_BUILTIN for unknown */
    unsigned also;         /* bit i: BUILTIN(i) may also fire here */
    int found;
    const char *value;
};

static size_t det_index(const char *name)
{
    for (size_t i = 0; i < N_BUILTIN; i++)
        if (strcmp(BUILTIN(i), name) == 0)
            return i;
    return N_BUILTIN;
}

/* json_escape -- the string as cJSON prints it, without the quotes; malloc'd. */
static char *json_escape(const char *s)
{
    cJSON *j = cJSON_CreateString(s);
    char *p = j ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    if (!p)
        return NULL;
    size_t n = strlen(p);
    memmove(p, p + 1, n - 2);
    p[n - 2] = '\0';
    return p;
}

/* build_body -- a one-message request of `api` whose user content is `text`.
 * *content_start and *content_end delimit the escaped text inside the body. */
static char *build_body(const char *api, const char *text, size_t *len, size_t *content_start,
                        size_t *content_end)
{
    const char *pre = strcmp(api, "anthropic") == 0
                          ? "{\"model\":\"claude-3-5-sonnet-latest\",\"max_tokens\":1024,"
                            "\"messages\":[{\"role\":\"user\",\"content\":\""
                          : "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"";
    const char *post = "\"}]}";
    char *esc = json_escape(text);
    if (!esc)
        return NULL;
    size_t lp = strlen(pre), le = strlen(esc), lq = strlen(post);
    char *b = malloc(lp + le + lq + 1);
    if (b) {
        memcpy(b, pre, lp);
        memcpy(b + lp, esc, le);
        memcpy(b + lp + le, post, lq + 1);
        *len = lp + le + lq;
        *content_start = lp;
        *content_end = lp + le;
    }
    free(esc);
    return b;
}

static void print_snippet(const char *body, size_t start, size_t end)
{
    size_t n = end - start;
    fprintf(stderr, "'%.*s%s'", (int)(n > 100 ? 100 : n), body + start, n > 100 ? "..." : "");
}

/* expected_message -- the message index of body offset `off` (see the top of the file). */
static int expected_message(const char *body, size_t off)
{
    const char *msgs = strstr(body, "\"messages\":");
    int idx = -1;
    if (!msgs || (size_t)(msgs - body) > off)
        return -1;
    for (const char *p = msgs; (p = strstr(p, "{\"role\":")) && (size_t)(p - body) < off; p++)
        idx++;
    return idx;
}

/* redact_check -- the second pass for one request (see the top of the file). Returns 0,
 * or -1 after printing what went wrong. */
static int redact_check(const struct policy *red, const char *id, const struct policy_input *in)
{
    struct policy_decision d, d2;
    char *rest = NULL;
    size_t rlen = 0;
    int bad = 0;
    memset(&d2, 0, sizeof d2);
    if (policy_decide(red, in, &d) != 0) {
        fprintf(stderr, "REDACT %s: policy_decide failed: %s\n", id, d.error);
        policy_decision_deinit(&d);
        return -1;
    }
    S.redact_checked++;
    if (d.n_findings == 0) {
        if (d.verdict != POLICY_ALLOW || d.body) {
            fprintf(stderr, "REDACT %s: no findings but verdict %d\n", id, (int)d.verdict);
            bad = 1;
        }
        goto out;
    }
    if (d.verdict != POLICY_REDACT || !d.body || !d.restorer) {
        fprintf(stderr, "REDACT %s: %zu findings but verdict %d\n", id, d.n_findings,
                (int)d.verdict);
        bad = 1;
        goto out;
    }
    cJSON *pj = cJSON_ParseWithLength(d.body, d.body_len);
    if (!pj) {
        fprintf(stderr, "REDACT %s: the redacted body is not JSON\n", id);
        bad = 1;
    }
    cJSON_Delete(pj);
    struct policy_input again = *in;
    again.body = d.body;
    again.len = d.body_len;
    if (policy_decide(red, &again, &d2) != 0) {
        fprintf(stderr, "REDACT %s: the redacted body cannot be decided: %s\n", id, d2.error);
        bad = 1;
    } else if (d2.n_findings) {
        fprintf(stderr, "REDACT %s: the redacted body still has %zu findings, first %s ", id,
                d2.n_findings, d2.findings[0].detector);
        print_snippet(d.body, d2.findings[0].start, d2.findings[0].end);
        fprintf(stderr, "\n");
        bad = 1;
    }
    int escaped = 0;
    for (size_t k = 0; k < d.n_findings; k++)
        if (memchr(in->body + d.findings[k].start, '\\', d.findings[k].end - d.findings[k].start))
            escaped = 1;
    if (!escaped) {
        size_t pos = 0, step = 1;
        while (pos < d.body_len && !bad) {
            size_t n = d.body_len - pos < step ? d.body_len - pos : step;
            if (policy_restore_feed(d.restorer, 0, d.body + pos, n, &rest, &rlen) != 0)
                bad = 1;
            pos += n;
            step = step % 7 + 1;
        }
        if (!bad && policy_restore_flush(d.restorer, 0, &rest, &rlen) != 0)
            bad = 1;
        if (!bad && (rlen != in->len || memcmp(rest, in->body, rlen) != 0)) {
            fprintf(stderr, "REDACT %s: restoring the redacted body does not give the original\n",
                    id);
            bad = 1;
        }
        S.restore_checked++;
    }
out:
    free(rest);
    policy_decision_deinit(&d);
    policy_decision_deinit(&d2);
    return bad ? -1 : 0;
}

/* eval_entry -- run one corpus line; updates S. Returns -1 for a corpus problem. */
static int eval_entry(const struct policy *pol, const struct policy *red, const char *line)
{
    int rc = -1;
    cJSON *j = cJSON_Parse(line);
    char *body = NULL, *owned_body = NULL;
    struct occ *occs = NULL;
    size_t n_occ = 0, cap_occ = 0;
    struct policy_decision dec;
    int have_dec = 0;
    memset(&dec, 0, sizeof dec);
    if (!j) {
        fprintf(stderr, "corpus: unparsable line: %.80s\n", line);
        goto out;
    }
    const char *id = cJSON_GetStringValue(cJSON_GetObjectItem(j, "id"));
    const char *category = cJSON_GetStringValue(cJSON_GetObjectItem(j, "category"));
    const char *api = cJSON_GetStringValue(cJSON_GetObjectItem(j, "api"));
    const char *text = cJSON_GetStringValue(cJSON_GetObjectItem(j, "text"));
    const char *rawbody = cJSON_GetStringValue(cJSON_GetObjectItem(j, "body"));
    cJSON *expect = cJSON_GetObjectItem(j, "expect");
    struct cat_stats *cat = category ? cat_find(category) : NULL;
    if (!id || !api || !cat || (!text == !rawbody) || !cJSON_IsArray(expect)) {
        fprintf(stderr, "corpus: malformed entry: %.80s\n", line);
        goto out;
    }
    size_t len, cstart, cend;
    if (text) {
        owned_body = build_body(api, text, &len, &cstart, &cend);
        if (!owned_body)
            goto out;
        body = owned_body;
    } else {
        body = (char *)rawbody;
        len = strlen(rawbody);
        cstart = 0;
        cend = len;
    }

    cJSON *lab;
    cJSON_ArrayForEach(lab, expect)
    {
        const char *det = cJSON_GetStringValue(cJSON_GetObjectItem(lab, "detector"));
        const char *value = cJSON_GetStringValue(cJSON_GetObjectItem(lab, "value"));
        const char *raw = cJSON_GetStringValue(cJSON_GetObjectItem(lab, "raw"));
        if (!det || !value || !*value || det_index(det) == N_BUILTIN) {
            fprintf(stderr, "corpus: %s: malformed label\n", id);
            goto out;
        }
        unsigned also = 0;
        cJSON *a;
        cJSON_ArrayForEach(a, cJSON_GetObjectItem(lab, "also"))
        {
            const char *an = cJSON_GetStringValue(a);
            if (an && det_index(an) < N_BUILTIN)
                also |= 1u << det_index(an);
        }
        char *spelt = text ? json_escape(value) : strdup(raw ? raw : value);
        if (!spelt)
            goto out;
        size_t sl = strlen(spelt), hits = 0;
        for (const char *p = body + cstart; (p = memmem(p, (size_t)(body + cend - p), spelt, sl));
             p += sl) {
            if (n_occ == cap_occ) {
                size_t nc = cap_occ ? cap_occ * 2 : 8;
                struct occ *no = realloc(occs, nc * sizeof *occs);
                if (!no) {
                    free(spelt);
                    goto out;
                }
                occs = no;
                cap_occ = nc;
            }
            occs[n_occ++] = (struct occ){(size_t)(p - body), (size_t)(p - body) + sl,
                                         det_index(det), also, 0, value};
            hits++;
        }
        free(spelt);
        if (hits == 0) {
            fprintf(stderr, "corpus: %s: label value for %s not found in the body\n", id, det);
            goto out;
        }
    }

    struct policy_input in = {
        .api = strcmp(api, "anthropic") == 0 ? POLICY_API_ANTHROPIC : POLICY_API_OPENAI,
        .body = body,
        .len = len,
        .model = strcmp(api, "anthropic") == 0 ? "claude-3-5-sonnet-latest" : "gpt-4o",
        .key_name = NULL,
        .team = NULL,
    };
    S.entries++;
    cat->entries++;
    if (cJSON_GetArraySize(expect) == 0) {
        S.benign++;
        cat->benign++;
    }
    have_dec = 1;
    if (policy_decide(pol, &in, &dec) != 0) {
        fprintf(stderr, "ERROR %s: policy_decide failed: %s\n", id, dec.error);
        S.errors++;
        rc = 0;
        goto out;
    }

    for (size_t i = 0; i < n_occ; i++) {
        S.d[occs[i].det].labels++;
        cat->labels++;
        for (size_t k = 0; k < dec.n_findings; k++) {
            const struct policy_finding *f = &dec.findings[k];
            if (det_index(f->detector) == occs[i].det && f->start <= occs[i].start &&
                f->end >= occs[i].end) {
                occs[i].found = 1;
                int want = expected_message(body, occs[i].start);
                if (f->message != want) {
                    fprintf(stderr, "MSGIDX %s %s: finding in message %d, expected %d\n", id,
                            f->detector, f->message, want);
                    S.wrong_message++;
                }
                break;
            }
        }
        if (occs[i].found) {
            S.d[occs[i].det].found++;
            cat->found++;
        } else {
            fprintf(stderr, "MISS %s %s '%s'", id, BUILTIN(occs[i].det), occs[i].value);
            for (size_t k = 0; k < dec.n_findings; k++) {
                const struct policy_finding *f = &dec.findings[k];
                if (f->start < occs[i].end && occs[i].start < f->end) {
                    fprintf(stderr, " (overlapping %s ", f->detector);
                    print_snippet(body, f->start, f->end);
                    fprintf(stderr, ")");
                }
            }
            fprintf(stderr, "\n");
        }
    }

    int fp_seen[N_DET] = {0}, fp_any = 0;
    for (size_t k = 0; k < dec.n_findings; k++) {
        const struct policy_finding *f = &dec.findings[k];
        size_t d = det_index(f->detector);
        int explained = 0;
        if (f->start > f->end || f->end > len) {
            fprintf(stderr, "BADSPAN %s %s [%zu,%zu) len %zu\n", id, f->detector, f->start, f->end,
                    len);
        } else {
            for (size_t i = 0; i < n_occ && !explained; i++)
                if (f->start < occs[i].end && occs[i].start < f->end &&
                    (occs[i].det == d || (d < N_BUILTIN && (occs[i].also & (1u << d)))))
                    explained = 1;
        }
        if (explained)
            continue;
        S.d[d].fp_findings++;
        if (!fp_any) {
            fp_any = 1;
            cat->fp_entries++;
        }
        if (!fp_seen[d]) {
            fp_seen[d] = 1;
            S.d[d].fp_entries++;
        }
        fprintf(stderr, "FP   %s %s ", id, f->detector);
        if (f->start <= f->end && f->end <= len)
            print_snippet(body, f->start, f->end);
        fprintf(stderr, "\n");
    }
    if (redact_check(red, id, &in) != 0)
        S.redact_failures++;
    rc = 0;
out:
    if (have_dec)
        policy_decision_deinit(&dec);
    free(occs);
    free(owned_body);
    cJSON_Delete(j);
    return rc;
}

static void corpus_run(void)
{
    struct config *cfg = NULL, *rcfg = NULL;
    struct policy *pol = NULL, *red = NULL;
    struct config_errors errs;
    char *rtext = NULL;
    FILE *fp = NULL;
    char *line = NULL;
    size_t cap = 0;
    memset(&errs, 0, sizeof errs);
    memset(&S, 0, sizeof S);
    if (config_load_text("corpus-config", CONFIG_YAML, sizeof CONFIG_YAML - 1, NULL, &cfg, &errs) !=
        0) {
        char buf[2048];
        config_errors_format(&errs, buf, sizeof buf);
        fprintf(stderr, "corpus config rejected:\n%s", buf);
        goto out;
    }
    if (policy_new(cfg, &pol, &errs) != 0) {
        char buf[2048];
        config_errors_format(&errs, buf, sizeof buf);
        fprintf(stderr, "policy_new failed:\n%s", buf);
        goto out;
    }
    /* the same providers and models, the redacting rules */
    size_t head = (size_t)(strstr(CONFIG_YAML, "rules:\n") - CONFIG_YAML);
    rtext = malloc(head + sizeof REDACT_RULES);
    if (!rtext)
        goto out;
    memcpy(rtext, CONFIG_YAML, head);
    memcpy(rtext + head, REDACT_RULES, sizeof REDACT_RULES);
    memset(&errs, 0, sizeof errs);
    if (config_load_text("corpus-redact-config", rtext, strlen(rtext), NULL, &rcfg, &errs) != 0 ||
        policy_new(rcfg, &red, &errs) != 0) {
        char buf[2048];
        config_errors_format(&errs, buf, sizeof buf);
        fprintf(stderr, "redacting config rejected:\n%s", buf);
        goto out;
    }
    fp = fopen(CORPUS_PATH, "r");
    if (!fp) {
        fprintf(stderr, "cannot open %s (run from the repository root)\n", CORPUS_PATH);
        goto out;
    }
    ssize_t n;
    while ((n = getline(&line, &cap, fp)) > 0) {
        if (line[n - 1] == '\n')
            line[n - 1] = '\0';
        if (!line[0])
            continue;
        if (eval_entry(pol, red, line) != 0)
            S.corpus_errors++;
    }
    S.loaded = 1;

    printf("corpus: %zu entries, %zu benign (%.1f%%), %zu decide errors, %zu corpus errors\n",
           S.entries, S.benign, S.entries ? 100.0 * (double)S.benign / (double)S.entries : 0.0,
           S.errors, S.corpus_errors);
    printf("%-16s %7s %7s %8s %9s %8s\n", "detector", "labels", "found", "recall", "FP-entries",
           "FP-rate");
    for (size_t i = 0; i < N_DET; i++) {
        const struct det_stats *d = &S.d[i];
        if (i == N_BUILTIN && d->labels == 0 && d->fp_entries == 0)
            continue;
        printf("%-16s %7zu %7zu %8.3f %9zu %8.4f\n", i < N_BUILTIN ? BUILTIN(i) : "(other)",
               d->labels, d->found, d->labels ? (double)d->found / (double)d->labels : 0.0,
               d->fp_entries, S.entries ? (double)d->fp_entries / (double)S.entries : 0.0);
    }
    printf("recall = found/labels (each labelled occurrence must be covered by a finding of its "
           "detector);\nFP-rate = entries with a finding overlapping no label of that detector / "
           "all entries.\nthresholds: recall >= %.2f, FP-rate <= %.2f\n",
           MIN_RECALL, MAX_FP_RATE);
    printf("\nper family (category): labels and recall over every detector; FP-entries: "
           "entries with any\nunexplained finding; FP-rate = FP-entries / entries of the "
           "family\n");
    printf("%-26s %7s %6s %7s %7s %8s %9s %8s\n", "category", "entries", "benign", "labels",
           "found", "recall", "FP-entries", "FP-rate");
    for (size_t i = 0; i < S.n_cats; i++) {
        const struct cat_stats *c = &S.c[i];
        char recall[16] = "-";
        if (c->labels)
            snprintf(recall, sizeof recall, "%.3f", (double)c->found / (double)c->labels);
        printf("%-26s %7zu %6zu %7zu %7zu %8s %9zu %8.4f\n", c->name, c->entries, c->benign,
               c->labels, c->found, recall, c->fp_entries,
               c->entries ? (double)c->fp_entries / (double)c->entries : 0.0);
    }
    printf("message indices: %zu found occurrences with a wrong index\n", S.wrong_message);
    printf("redaction: %zu entries redacted and re-scanned, %zu restored byte for byte, %zu "
           "failures\n",
           S.redact_checked, S.restore_checked, S.redact_failures);
    fflush(stdout);
out:
    free(line);
    free(rtext);
    if (fp)
        fclose(fp);
    policy_free(pol);
    policy_free(red);
    if (cfg)
        config_unref(cfg);
    if (rcfg)
        config_unref(rcfg);
}

static void test_corpus_loads(void)
{
    corpus_run();
    REQUIRE(S.loaded);
    CHECK_EQ_INT(S.corpus_errors, 0);
    CHECK_EQ_INT(S.errors, 0);
    CHECK(S.entries >= MIN_ENTRIES);
    CHECK((double)S.benign >= MIN_BENIGN_FRACTION * (double)S.entries);
    for (size_t i = 0; i < N_BUILTIN; i++)
        if (S.d[i].labels < MIN_LABELS) {
            fprintf(stderr, "  %s has only %zu labels\n", BUILTIN(i), S.d[i].labels);
            CHECK(S.d[i].labels >= MIN_LABELS);
        }
}

static void test_recall(void)
{
    REQUIRE(S.loaded);
    CHECK_EQ_INT(S.wrong_message, 0);
    for (size_t i = 0; i < N_BUILTIN; i++) {
        const struct det_stats *d = &S.d[i];
        double r = d->labels ? (double)d->found / (double)d->labels : 0.0;
        if (r < MIN_RECALL) {
            fprintf(stderr, "  %s: recall %.3f < %.2f\n", BUILTIN(i), r, MIN_RECALL);
            CHECK(r >= MIN_RECALL);
        }
    }
}

static void test_false_positives(void)
{
    REQUIRE(S.loaded);
    REQUIRE(S.entries > 0);
    for (size_t i = 0; i < N_DET; i++) {
        double r = (double)S.d[i].fp_entries / (double)S.entries;
        if (r > MAX_FP_RATE) {
            fprintf(stderr, "  %s: FP rate %.4f > %.2f\n", i < N_BUILTIN ? BUILTIN(i) : "(other)",
                    r, MAX_FP_RATE);
            CHECK(r <= MAX_FP_RATE);
        }
    }
}

static void test_redaction(void)
{
    REQUIRE(S.loaded);
    CHECK_EQ_INT(S.redact_checked, S.entries - S.errors);
    CHECK_EQ_INT(S.redact_failures, 0);
    /* most entries with findings have no escape inside a finding */
    CHECK(S.restore_checked >= (S.entries - S.benign) / 2);
}

int main(void)
{
    RUN(test_corpus_loads);
    RUN(test_recall);
    RUN(test_false_positives);
    RUN(test_redaction);
    return harness_done();
}
