/* scan.c -- one Vectorscan block database per policy; one pass over a request's text.
 *
 * Every detector contributes patterns that find candidates with their leftmost start
 * (HS_FLAG_SOM_LEFTMOST) or just an end; the validators then confirm and refine each
 * distinct (detector, start) once, using the longest end seen inside its segment. Phone,
 * credit card, IBAN and SSN are the exception (and email, found from each '@'): digit
 * character classes are slow in any automaton on digit-dense text, so they come from one
 * hand-written digit-cluster pass (validate.c, policy_scan_digits) over the same text.
 * Patterns are kept short triggers where a detector needs more than a regex (a token is
 * extended by code, an IBAN is cut at its country's length), which keeps the database
 * small and the pass fast. Context words (context.c) are read by the validators, around
 * candidates only.
 *
 * Overlaps: findings are swept by start; of two that overlap, the one whose detector is
 * earlier in the priority order survives (secrets first -- private_key, anthropic_key,
 * openai_key, github_token, aws_access_key, jwt, credential_uri, generic_secret -- then
 * iban, credit_card, us_ssn, email, phone, ipv4, then custom detectors in config order);
 * for the same detector the longer, then the earlier. The result is sorted by start and
 * deterministic. */
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/policy_int.h"

#include "common/grow.h"

#define SOM HS_FLAG_SOM_LEFTMOST

/* Triggers. Only the secret words need a reported start; every other trigger has a
 * fixed or recoverable shape, and the validator finds the start from the end, which
 * keeps start-of-match tracking (and its cost) out of the database. */
static const struct {
    unsigned det;
    const char *re;
    unsigned flags;
} builtin_patterns[] = {
    {DET_PRIVATE_KEY, "PRIVATE KEY-----", 0},
    {DET_PRIVATE_KEY, "PRIVATE KEY BLOCK-----", 0},
    {DET_ANTHROPIC_KEY, "sk-ant-(?:api|admin)[0-9]{2}-[A-Za-z0-9_\\-]{8}", 0},
    {DET_OPENAI_KEY, "sk-[A-Za-z0-9_\\-]{20}", 0},
    {DET_GITHUB_TOKEN, "gh[pousr]_[A-Za-z0-9]{36}", 0},
    {DET_GITHUB_TOKEN, "github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59}", 0},
    {DET_AWS_ACCESS_KEY, "(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}", 0},
    {DET_JWT, "eyJ[A-Za-z0-9_\\-]{4,}\\.[A-Za-z0-9_\\-]{2,}\\.", 0},
    {DET_CREDENTIAL_URI, "://", 0},
    {DET_CREDENTIAL_URI,
     "(?:password|passwd|pwd|accountkey|sharedaccesskey)[ \\t]*=", HS_FLAG_CASELESS},
    /* the secret-like words, also in German, French, Spanish, Japanese, Chinese, Russian
     * and Hindi (UTF-8 bytes): Passwort, Kennwort, mot de passe, contraseña, clave,
     * パスワード, 暗証番号, 密码, пароль (also as "пapoль": its Cyrillic look-alikes of
     * Latin letters mapped, as normalisation may present it), पासवर्ड */
    {DET_GENERIC_SECRET,
     "(?:password|passwd|pwd|secret|token|api[_\\-]?key|auth|credential|private[_\\-]?key|"
     "access[_\\-]?key|passwort|kennwort|mot[ _]de[ _]passe|contrase(?:\\xc3\\xb1|n)a|clave|"
     "\\xe3\\x83\\x91\\xe3\\x82\\xb9\\xe3\\x83\\xaf\\xe3\\x83\\xbc\\xe3\\x83\\x89|"
     "\\xe6\\x9a\\x97\\xe8\\xa8\\xbc\\xe7\\x95\\xaa\\xe5\\x8f\\xb7|\\xe5\\xaf\\x86\\xe7\\xa0\\x81|"
     "\\xd0\\xbf\\xd0\\xb0\\xd1\\x80\\xd0\\xbe\\xd0\\xbb\\xd1\\x8c|"
     "\\xd0\\xbfapo\\xd0\\xbb\\xd1\\x8c|"
     "\\xe0\\xa4\\xaa\\xe0\\xa4\\xbe\\xe0\\xa4\\xb8\\xe0\\xa4\\xb5\\xe0\\xa4\\xb0"
     "\\xe0\\xa5\\x8d\\xe0\\xa4\\xa1)",
     SOM | HS_FLAG_CASELESS},
    {DET_IPV4, "[0-9]\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]", 0},
};
#define N_BUILTIN_PATTERNS (sizeof(builtin_patterns) / sizeof(*builtin_patterns))

static char *placeholder_name(const char *name)
{
    size_t n = strlen(name);
    char *p = malloc(n + 1);
    if (!p)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (c >= 'a' && c <= 'z')
            c = (char)(c - 32);
        else if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')))
            c = '_';
        p[i] = c;
    }
    p[n] = 0;
    return p;
}

/* A keyword as a literal pattern: every non-alphanumeric byte escaped, word boundaries
 * where the keyword starts or ends with a word character. */
static char *keyword_pattern(const char *kw)
{
    size_t n = strlen(kw);
    if (n == 0 || n > 4096)
        return NULL;
    char *p = malloc(n * 4 + 8), *o = p;
    if (!p)
        return NULL;
#define WORDC(c) (((c) >= 'a' && (c) <= 'z') || ((c) >= 'A' && (c) <= 'Z') || ((c) >= '0' && (c) <= '9') || (c) == '_')
    if (WORDC(kw[0]))
        o += sprintf(o, "\\b");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)kw[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
            *o++ = (char)c;
        else
            o += sprintf(o, "\\x%02x", c);
    }
    if (WORDC(kw[n - 1]))
        o += sprintf(o, "\\b");
#undef WORDC
    *o = 0;
    return p;
}

static void err_at(struct config_errors *errs, const struct config_pos *pos, const char *fmt,
                   const char *a, const char *b)
{
    if (!errs)
        return;
    if (errs->n >= CONFIG_MAX_ERRORS) {
        errs->dropped++;
        return;
    }
    struct config_error *e = &errs->items[errs->n++];
    e->line = pos ? pos->line : 0;
    e->col = pos ? pos->col : 0;
    snprintf(e->message, sizeof(e->message), fmt, a, b ? b : "");
}

int policy_scan_compile(struct policy *p, struct config_errors *errs)
{
    const struct config *cfg = p->cfg;
    size_t n_pats = N_BUILTIN_PATTERNS;
    char **exprs = NULL;
    unsigned *flags = NULL, *ids = NULL;
    int rc = -1;

    p->n_dets = DET_N_BUILTIN + cfg->n_detectors;
    p->dets = calloc(p->n_dets, sizeof(*p->dets));
    if (!p->dets)
        goto oom;
    for (size_t i = 0; i < DET_N_BUILTIN; i++) {
        p->dets[i].name = config_detectors_builtin[i].name;
        p->dets[i].validate = policy_builtin_validators[i];
    }
    for (size_t i = 0; i < cfg->n_detectors; i++) {
        const struct config_detector *d = &cfg->detectors[i];
        p->dets[DET_N_BUILTIN + i].name = d->name;
        p->dets[DET_N_BUILTIN + i].custom_regex = d->regex != NULL;
        n_pats += d->regex ? 1 : d->n_keywords;
    }
    for (size_t i = 0; i < p->n_dets; i++)
        if (!(p->dets[i].placeholder = placeholder_name(p->dets[i].name)))
            goto oom;
    p->exempt_det = calloc(cfg->n_exempt ? cfg->n_exempt : 1, sizeof(*p->exempt_det));
    if (!p->exempt_det)
        goto oom;
    for (size_t i = 0; i < cfg->n_exempt; i++) {
        p->exempt_det[i] = (unsigned)p->n_dets; /* (the loader checked every name) */
        for (size_t k = 0; k < p->n_dets; k++)
            if (strcmp(p->dets[k].name, cfg->exempt[i].detector) == 0) {
                p->exempt_det[i] = (unsigned)k;
                p->dets[k].exempt = 1;
            }
    }

    exprs = calloc(n_pats, sizeof(*exprs));
    flags = calloc(n_pats, sizeof(*flags));
    ids = calloc(n_pats, sizeof(*ids));
    p->pat_det = calloc(n_pats, sizeof(*p->pat_det));
    p->pat_som = calloc(n_pats, 1);
    if (!exprs || !flags || !ids || !p->pat_det || !p->pat_som)
        goto oom;
    size_t k = 0;
    for (; k < N_BUILTIN_PATTERNS; k++) {
        if (!(exprs[k] = strdup(builtin_patterns[k].re)))
            goto oom;
        flags[k] = builtin_patterns[k].flags;
        p->pat_det[k] = builtin_patterns[k].det;
        p->pat_som[k] = (flags[k] & SOM) != 0;
    }
    for (size_t i = 0; i < cfg->n_detectors; i++) {
        const struct config_detector *d = &cfg->detectors[i];
        if (d->regex) {
            if (!(exprs[k] = strdup(d->regex)))
                goto oom;
            flags[k] = SOM;
            p->pat_som[k] = 1;
            p->pat_det[k++] = (unsigned)(DET_N_BUILTIN + i);
            continue;
        }
        for (size_t j = 0; j < d->n_keywords; j++) {
            if (!(exprs[k] = keyword_pattern(d->keywords[j]))) {
                err_at(errs, &d->pos, "detector %s: keyword %zu is empty or too long", d->name,
                       NULL);
                goto fail;
            }
            flags[k] = SOM | HS_FLAG_CASELESS;
            p->pat_som[k] = 1;
            p->pat_det[k++] = (unsigned)(DET_N_BUILTIN + i);
        }
    }
    for (size_t i = 0; i < k; i++)
        ids[i] = (unsigned)i;
    p->n_pats = k;

    hs_compile_error_t *cerr = NULL;
    if (hs_compile_multi((const char *const *)exprs, flags, ids, (unsigned)k, HS_MODE_BLOCK,
                         NULL, &p->db, &cerr) != HS_SUCCESS) {
        int bad = cerr ? cerr->expression : -1;
        if (bad >= (int)N_BUILTIN_PATTERNS) {
            const struct config_detector *d = &cfg->detectors[p->pat_det[bad] - DET_N_BUILTIN];
            err_at(errs, &d->pos, "detector %s: pattern does not compile: %s", d->name,
                   cerr->message);
        } else {
            err_at(errs, NULL, "built-in detectors do not compile: %s",
                   cerr ? cerr->message : "unknown error", NULL);
        }
        hs_free_compile_error(cerr);
        p->db = NULL;
        goto fail;
    }
    if (hs_alloc_scratch(p->db, &p->proto) != HS_SUCCESS) {
        err_at(errs, NULL, "%s", "cannot allocate scanner scratch space", NULL);
        goto fail;
    }
    rc = 0;
    goto done;
oom:
    err_at(errs, NULL, "%s", "out of memory compiling the policy", NULL);
fail:
done:
    if (exprs)
        for (size_t i = 0; i < n_pats; i++)
            free(exprs[i]);
    free(exprs);
    free(flags);
    free(ids);
    return rc;
}

void policy_scan_free(struct policy *p)
{
    while (p->free_scratch) {
        struct scratch_node *n = p->free_scratch;
        p->free_scratch = n->next;
        hs_free_scratch(n->s);
        free(n);
    }
    if (p->proto)
        hs_free_scratch(p->proto);
    if (p->db)
        hs_free_database(p->db);
    if (p->dets)
        for (size_t i = 0; i < p->n_dets; i++)
            free(p->dets[i].placeholder);
    free(p->dets);
    free(p->exempt_det);
    free(p->pat_det);
    free(p->pat_som);
    p->pat_som = NULL;
    p->dets = NULL;
    p->pat_det = NULL;
    p->db = NULL;
    p->proto = NULL;
}

/* ---- scanning ---- */

struct raw {
    unsigned det;
    size_t s, e;
};

struct ctx {
    const struct policy *p;
    struct raw *raw;
    size_t n, cap;
    int overflow;
};

static int on_match(unsigned id, unsigned long long from, unsigned long long to, unsigned fl,
                    void *arg)
{
    (void)fl;
    struct ctx *c = arg;
    if (c->n + 1 > POLICY_MAX_CANDIDATES) {
        c->overflow = 1;
        return 1;
    }
    struct raw *r = grow_room(c->raw, &c->cap, c->n + 1, sizeof(*r), 64);
    if (!r) {
        c->overflow = 2;
        return 1;
    }
    c->raw = r;
    c->raw[c->n].det = c->p->pat_det[id];
    c->raw[c->n].s = c->p->pat_som[id] ? (size_t)from : (size_t)to;
    c->raw[c->n].e = (size_t)to;
    c->n++;
    return 0;
}

static int raw_cmp(const void *a, const void *b)
{
    const struct raw *x = a, *y = b;
    if (x->det != y->det)
        return x->det < y->det ? -1 : 1;
    if (x->s != y->s)
        return x->s < y->s ? -1 : 1;
    if (x->e != y->e)
        return x->e > y->e ? -1 : 1;
    return 0;
}

static int cand_cmp(const void *a, const void *b)
{
    const struct pcand *x = a, *y = b;
    if (x->s != y->s)
        return x->s < y->s ? -1 : 1;
    if (x->e != y->e)
        return x->e > y->e ? -1 : 1;
    if (x->det != y->det)
        return x->det < y->det ? -1 : 1;
    return 0;
}

static size_t seg_of(const struct pextract *x, size_t pos)
{
    size_t lo = 0, hi = x->n_segs;
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (x->segs[mid].dstart <= pos)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

static hs_scratch_t *scratch_get(const struct policy *cp)
{
    struct policy *p = (struct policy *)cp; /* only the locked free list changes */
    hs_scratch_t *s = NULL;
    pthread_mutex_lock(&p->lock);
    struct scratch_node *n = p->free_scratch;
    if (n)
        p->free_scratch = n->next;
    pthread_mutex_unlock(&p->lock);
    if (n) {
        s = n->s;
        free(n);
        return s;
    }
    if (hs_clone_scratch(p->proto, &s) != HS_SUCCESS)
        return NULL;
    return s;
}

static void scratch_put(const struct policy *cp, hs_scratch_t *s)
{
    struct policy *p = (struct policy *)cp;
    struct scratch_node *n = malloc(sizeof(*n));
    if (!n) {
        hs_free_scratch(s);
        return;
    }
    n->s = s;
    pthread_mutex_lock(&p->lock);
    n->next = p->free_scratch;
    p->free_scratch = n;
    pthread_mutex_unlock(&p->lock);
}

/* take_over -- w, the winner of an overlap, takes the lost custom finding l's place: its
 * span grows to cover both (same segment: a span never crosses one) and l's detector, and
 * those l had taken over, go into w->also */
static void take_over(struct pcand *w, const struct pcand *l)
{
    unsigned dets[PCAND_ALSO + 1];
    size_t nd = 0;

    if (l->seg == w->seg) {
        if (l->s < w->s)
            w->s = l->s;
        if (l->e > w->e)
            w->e = l->e;
    }
    dets[nd++] = l->det;
    for (unsigned k = 0; k < l->n_also && k < PCAND_ALSO; k++)
        dets[nd++] = l->also[k];
    if (l->n_also > PCAND_ALSO)
        w->n_also = PCAND_ALSO + 1;
    for (size_t k = 0; k < nd; k++) {
        int have = dets[k] == w->det;
        for (unsigned j = 0; j < w->n_also && j < PCAND_ALSO && !have; j++)
            have = w->also[j] == dets[k];
        if (have)
            continue;
        if (w->n_also < PCAND_ALSO)
            w->also[w->n_also++] = dets[k];
        else
            w->n_also = PCAND_ALSO + 1;
    }
}

/* exempt -- whether the value of candidate c is one the config exempts for its detector:
 * the whole value (as found, after normalisation) against each glob, case-insensitive */
static int exempt(const struct policy *p, const struct pextract *x, const struct pcand *c)
{
    const struct config *cfg = p->cfg;
    char v[256];
    size_t n = c->e - c->s;

    if (n >= sizeof(v))
        return 0; /* longer than any exempt value may be */
    memcpy(v, x->text + c->s, n);
    v[n] = '\0';
    if (memchr(v, '\0', n))
        return 0;
    for (size_t i = 0; i < cfg->n_exempt; i++) {
        if (p->exempt_det[i] != c->det)
            continue;
        for (size_t k = 0; k < cfg->exempt[i].n_values; k++)
            if (fnmatch(cfg->exempt[i].values[k], v, FNM_CASEFOLD) == 0)
                return 1;
    }
    return 0;
}

static int push_cand(struct pcand **v, size_t *n, size_t *cap, struct pcand c)
{
    struct pcand *nv = grow_room(*v, cap, *n + 1, sizeof(*nv), 16);
    if (!nv)
        return -1;
    *v = nv;
    (*v)[(*n)++] = c;
    return 0;
}

struct emit_ctx {
    struct pcand **v;
    size_t *n, *cap;
    unsigned seg;
    size_t base;
};

static int emit_cand(void *arg, unsigned det, size_t s, size_t e)
{
    struct emit_ctx *c = arg;
    struct pcand cd = {.det = det, .seg = c->seg, .s = c->base + s, .e = c->base + e};
    return push_cand(c->v, c->n, c->cap, cd);
}

int policy_scan(const struct policy *p, const struct pextract *x, struct pcand **out,
                size_t *n_out, char *err, size_t errlen)
{
    return policy_scan_ex(p, x, out, n_out, NULL, err, errlen);
}

int policy_scan_ex(const struct policy *p, const struct pextract *x, struct pcand **out,
                   size_t *n_out, unsigned char *fired, char *err, size_t errlen)
{
    struct ctx c = {.p = p};
    struct pcand *cv = NULL;
    size_t nc = 0, capc = 0;
    *out = NULL;
    *n_out = 0;
    if (x->n_segs == 0)
        return 0;
    hs_scratch_t *s = scratch_get(p);
    if (!s) {
        snprintf(err, errlen, "the scanner could not allocate scratch space.");
        return -1;
    }
    hs_error_t he = hs_scan(p->db, x->text, (unsigned)x->text_len, 0, s, on_match, &c);
    scratch_put(p, s);
    if (c.overflow) {
        snprintf(err, errlen, c.overflow == 1 ? "the request has too many detector candidates to scan."
                                              : "out of memory while scanning the request.");
        goto fail;
    }
    if (he != HS_SUCCESS) {
        snprintf(err, errlen, "the scanner failed (error %d).", (int)he);
        goto fail;
    }
    if (c.n > 1)
        qsort(c.raw, c.n, sizeof(*c.raw), raw_cmp);
    for (size_t i = 0; i < c.n;) {
        size_t j = i;
        while (j < c.n && c.raw[j].det == c.raw[i].det && c.raw[j].s == c.raw[i].s)
            j++;
        size_t si = seg_of(x, c.raw[i].s);
        const struct pseg *sg = &x->segs[si];
        size_t e = 0;
        int inside = 0;
        for (size_t k = i; k < j && !inside; k++)
            if (c.raw[k].e <= sg->dend) {
                e = c.raw[k].e;
                inside = 1;
            }
        unsigned det = c.raw[i].det;
        size_t st = c.raw[i].s;
        i = j;
        if (!inside)
            continue; /* every end crossed into the next segment */
        struct pcand cd = {.det = det, .seg = (unsigned)si, .s = st, .e = e};
        const struct pdetector *d = &p->dets[det];
        if (d->validate) {
            size_t os, oe;
            if (!d->validate(x->text + sg->dstart, sg->dend - sg->dstart, st - sg->dstart,
                             e - sg->dstart, &os, &oe))
                continue;
            cd.s = os + sg->dstart;
            cd.e = oe + sg->dstart;
        }
        if (push_cand(&cv, &nc, &capc, cd) < 0)
            goto oom;
    }
    /* phone, credit card, IBAN: the digit-cluster pass, per segment */
    struct emit_ctx ec = {&cv, &nc, &capc, 0, 0};
    for (size_t i = 0; i < x->n_segs; i++) {
        const struct pseg *sg = &x->segs[i];
        ec.seg = (unsigned)i;
        ec.base = sg->dstart;
        if (policy_scan_digits(x->text + sg->dstart, sg->dend - sg->dstart, emit_cand, &ec) < 0)
            goto oom;
    }
    /* email: from every '@' (memchr is faster than any automaton for one byte) */
    for (size_t i = 0; i < x->n_segs; i++) {
        const struct pseg *sg = &x->segs[i];
        const char *t = x->text + sg->dstart;
        size_t n = sg->dend - sg->dstart, at = 0, os, oe;
        const char *q;
        while (at < n && (q = memchr(t + at, '@', n - at)) != NULL) {
            at = (size_t)(q - t);
            if (policy_builtin_validators[DET_EMAIL](t, n, at, at + 1, &os, &oe)) {
                struct pcand cd = {.det = DET_EMAIL, .seg = (unsigned)i, .s = sg->dstart + os,
                                   .e = sg->dstart + oe};
                if (push_cand(&cv, &nc, &capc, cd) < 0)
                    goto oom;
            }
            at++;
        }
    }
    /* a string that is the value of a secret-like JSON key is a secret if it looks like one */
    for (size_t i = 0; i < x->n_segs; i++) {
        const struct pseg *sg = &x->segs[i];
        if (!sg->key_len || !policy_secret_key_like(x->body + sg->key_off, sg->key_len))
            continue;
        size_t a = sg->dstart, b = sg->dend;
        while (a < b && (x->text[a] == ' ' || x->text[a] == '\t'))
            a++;
        while (b > a && (x->text[b - 1] == ' ' || x->text[b - 1] == '\t'))
            b--;
        if (!policy_secret_value_real(x->text + a, b - a))
            continue;
        struct pcand cd = {.det = DET_GENERIC_SECRET, .seg = (unsigned)i, .s = a, .e = b};
        if (push_cand(&cv, &nc, &capc, cd) < 0)
            goto oom;
    }
    /* exempt values are no findings: they neither fire nor take a span from another */
    if (p->cfg->n_exempt) {
        size_t kept = 0;
        for (size_t i = 0; i < nc; i++)
            if (!p->dets[cv[i].det].exempt || !exempt(p, x, &cv[i]))
                cv[kept++] = cv[i];
        nc = kept;
    }
    if (nc > 1)
        qsort(cv, nc, sizeof(*cv), cand_cmp);
    /* sweep: of two overlapping, the higher-priority detector survives (a token inside
     * a URL's user@host is a token, not an email); same detector: the longer. A custom
     * detector's finding that loses still fires for the rules (`fired`), and the winner
     * takes its span too and remembers it (`also`), so a rule redacting the custom
     * detector redacts the value, not nothing (red team: `redact: [staff_email]` let
     * jane.doe@acme.example out because the span was the built-in email's). */
    size_t w = 0;
    for (size_t i = 0; i < nc; i++) {
        if (w > 0 && cv[i].s < cv[w - 1].e) {
            struct pcand *cur = &cv[w - 1], lost;
            size_t lc = cur->e - cur->s, li = cv[i].e - cv[i].s;
            if (cv[i].det < cur->det || (cv[i].det == cur->det && li > lc)) {
                lost = *cur;
                *cur = cv[i];
            } else {
                lost = cv[i];
            }
            if (lost.det >= DET_N_BUILTIN && lost.det != cur->det) {
                if (fired)
                    fired[lost.det] = 1;
                take_over(cur, &lost);
            }
            continue;
        }
        cv[w++] = cv[i];
    }
    for (size_t i = 0; fired && i < w; i++)
        fired[cv[i].det] = 1;
    free(c.raw);
    *out = cv;
    *n_out = w;
    return 0;
oom:
    snprintf(err, errlen, "out of memory while scanning the request.");
fail:
    free(c.raw);
    free(cv);
    return -1;
}
