/* policy.c -- compile a config's policy; decide one request: extract, scan, rules, redact.
 *
 * Rules are resolved to per-detector flag arrays at compile time, so deciding is a walk
 * over the rules with O(1) detector tests. Redaction rewrites only the spans of the
 * findings inside the raw JSON strings; every other byte of the body is kept. */
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "common/json.h"
#include "policy/policy_int.h"

int policy_detector_known(const struct config *cfg, const char *name)
{
    return config_detectors_known(cfg, name);
}

static int det_index(const struct policy *p, const char *name)
{
    for (size_t i = 0; i < p->n_dets; i++)
        if (strcmp(p->dets[i].name, name) == 0)
            return (int)i;
    return -1;
}

/* Set flags[] for each name (detector or group); -1 on an unknown name. */
static int resolve_names(const struct policy *p, char **names, size_t n, unsigned char *flags,
                         const char **bad)
{
    for (size_t i = 0; i < n; i++) {
        const char *nm = names[i];
        enum config_detector_group g = config_detectors_group(nm);
        if (g != CONFIG_GROUP_NONE) {
            /* the built-ins are dets[0..DET_N_BUILTIN), in config's table order */
            for (size_t k = 0; k < DET_N_BUILTIN; k++)
                if (config_detectors_builtin[k].group == g)
                    flags[k] = 1;
            continue;
        }
        int d = det_index(p, nm);
        if (d < 0) {
            *bad = nm;
            return -1;
        }
        flags[d] = 1;
    }
    return 0;
}

int policy_new(const struct config *cfg, struct policy **out, struct config_errors *errs)
{
    struct policy *p = calloc(1, sizeof(*p));
    *out = NULL;
    if (!p)
        return -1;
    p->cfg = cfg;
    if (pthread_mutex_init(&p->lock, NULL) != 0) {
        free(p);
        return -1;
    }
    if (policy_scan_compile(p, errs) < 0)
        goto fail;
    p->rules = calloc(cfg->n_rules ? cfg->n_rules : 1, sizeof(*p->rules));
    if (!p->rules)
        goto fail;
    for (size_t i = 0; i < cfg->n_rules; i++) {
        const struct config_rule *r = &cfg->rules[i];
        const char *bad = NULL;
        if (r->n_detected) {
            p->rules[i].detected = calloc(p->n_dets, 1);
            if (!p->rules[i].detected ||
                resolve_names(p, r->detected, r->n_detected, p->rules[i].detected, &bad) < 0)
                goto bad_name;
        }
        if (r->action == CONFIG_ACTION_REDACT) {
            p->rules[i].redact = calloc(p->n_dets, 1);
            if (!p->rules[i].redact)
                goto fail;
            if (r->n_redact_detectors) {
                if (resolve_names(p, r->redact_detectors, r->n_redact_detectors, p->rules[i].redact,
                                  &bad) < 0)
                    goto bad_name;
            } else if (r->n_detected) {
                /* no list: redact what the condition named */
                memcpy(p->rules[i].redact, p->rules[i].detected, p->n_dets);
            } else {
                memset(p->rules[i].redact, 1, p->n_dets);
            }
        }
        continue;
    bad_name:
        if (errs && bad && errs->n < CONFIG_MAX_ERRORS) {
            struct config_error *e = &errs->items[errs->n++];
            e->line = r->pos.line;
            e->col = r->pos.col;
            snprintf(e->message, sizeof(e->message), "rule %s: unknown detector %s",
                     r->name ? r->name : "?", bad);
        }
        goto fail;
    }
    *out = p;
    return 0;
fail:
    policy_free(p);
    return -1;
}

void policy_free(struct policy *p)
{
    if (!p)
        return;
    if (p->rules)
        for (size_t i = 0; i < p->cfg->n_rules; i++) {
            free(p->rules[i].detected);
            free(p->rules[i].redact);
        }
    free(p->rules);
    policy_scan_free(p);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

static const struct config_model *model_find(const struct config *cfg, const char *name)
{
    for (size_t i = 0; name && i < cfg->n_models; i++)
        if (cfg->models[i].name && strcmp(cfg->models[i].name, name) == 0)
            return &cfg->models[i];
    return NULL;
}

static const struct config_provider *provider_find(const struct config *cfg, const char *name)
{
    for (size_t i = 0; name && i < cfg->n_providers; i++)
        if (cfg->providers[i].name && strcmp(cfg->providers[i].name, name) == 0)
            return &cfg->providers[i];
    return NULL;
}

static int in_list(char **list, size_t n, const char *s)
{
    for (size_t i = 0; s && i < n; i++)
        if (strcmp(list[i], s) == 0)
            return 1;
    return 0;
}

static int rule_matches(const struct policy *p, size_t ri, const struct policy_input *in,
                        const unsigned char *present, unsigned unscanned)
{
    const struct config_rule *r = &p->cfg->rules[ri];
    if (r->n_unscanned) {
        int any = 0;
        for (size_t i = 0; i < r->n_unscanned && !any; i++)
            any = strcmp(r->unscanned[i], "image") == 0 && (unscanned & POLICY_UNSCANNED_IMAGE);
        if (!any)
            return 0;
    }
    if (r->n_detected) {
        int any = 0;
        for (size_t d = 0; d < p->n_dets && !any; d++)
            any = present[d] && p->rules[ri].detected[d];
        if (!any)
            return 0;
    }
    if (r->n_keys && !in_list(r->keys, r->n_keys, in->key_name))
        return 0;
    if (r->n_teams && !in_list(r->teams, r->n_teams, in->team))
        return 0;
    if (r->n_models) {
        int any = 0;
        for (size_t i = 0; i < r->n_models && !any; i++)
            any = fnmatch(r->models[i], in->model ? in->model : "", 0) == 0;
        if (!any)
            return 0;
    }
    if (r->zone != CONFIG_ZONE_ANY) {
        const struct config_model *m = model_find(p->cfg, in->model);
        const struct config_provider *pv = m ? provider_find(p->cfg, m->provider) : NULL;
        if (!pv || pv->zone != r->zone)
            return 0;
    }
    return 1;
}

/* ---- redaction ---- */

struct red {
    size_t f;     /* index into findings / cands */
    size_t group; /* first member's position among redacted findings */
    unsigned num;
};

struct red_sort {
    const struct pextract *x;
    const struct pcand *c;
};

static int red_cmp(const void *a, const void *b, void *arg)
{
    const struct red *x = a, *y = b;
    const struct pextract *sort_x = ((const struct red_sort *)arg)->x;
    const struct pcand *sort_c = ((const struct red_sort *)arg)->c;
    const struct pcand *cx = &sort_c[x->f], *cy = &sort_c[y->f];
    if (cx->det != cy->det)
        return cx->det < cy->det ? -1 : 1;
    size_t lx = cx->e - cx->s, ly = cy->e - cy->s;
    int c = memcmp(sort_x->text + cx->s, sort_x->text + cy->s, lx < ly ? lx : ly);
    if (c)
        return c;
    if (lx != ly)
        return lx < ly ? -1 : 1;
    return x->f < y->f ? -1 : (x->f > y->f);
}

static int red_pos_cmp(const void *a, const void *b)
{
    const struct red *x = a, *y = b;
    return x->f < y->f ? -1 : (x->f > y->f);
}

static int redact(const struct policy *p, const struct policy_input *in, const struct pextract *x,
                  const struct pcand *cv, size_t nc, const unsigned char *which,
                  struct policy_decision *d)
{
    struct red *rv = NULL;
    unsigned *counter = NULL, *nums = NULL;
    size_t m = 0;
    int rc = -1;
    d->restorer = policy_restorer_new();
    if (!d->restorer)
        goto fail;
    rv = calloc(nc ? nc : 1, sizeof(*rv));
    counter = calloc(p->n_dets, sizeof(*counter));
    if (!rv || !counter)
        goto fail;
    int any_custom = 0; /* the rule redacts a custom detector */
    for (size_t k = DET_N_BUILTIN; k < p->n_dets; k++)
        any_custom |= which[k] != 0;
    for (size_t i = 0; i < nc; i++) {
        int take = which[cv[i].det] || (cv[i].n_also > PCAND_ALSO && any_custom);
        for (unsigned k = 0; k < cv[i].n_also && k < PCAND_ALSO && !take; k++)
            take = which[cv[i].also[k]];
        if (take)
            rv[m++].f = i;
    }
    /* same detector and value -> one placeholder, numbered by first appearance */
    if (m > 1) {
        struct red_sort rs = {x, cv};
        qsort_r(rv, m, sizeof(*rv), red_cmp, &rs);
        for (size_t i = 0; i < m; i++) {
            if (i > 0 && cv[rv[i].f].det == cv[rv[i - 1].f].det &&
                cv[rv[i].f].e - cv[rv[i].f].s == cv[rv[i - 1].f].e - cv[rv[i - 1].f].s &&
                memcmp(x->text + cv[rv[i].f].s, x->text + cv[rv[i - 1].f].s,
                       cv[rv[i].f].e - cv[rv[i].f].s) == 0)
                rv[i].group = rv[i - 1].group;
            else
                rv[i].group = rv[i].f;
        }
        qsort(rv, m, sizeof(*rv), red_pos_cmp);
    } else if (m == 1) {
        rv[0].group = rv[0].f;
    }
    size_t cap = in->len + 1, olen = 0, from = 0;
    /* a group's leader is its first member in body order, so it is numbered first */
    nums = calloc(nc ? nc : 1, sizeof(*nums));
    if (!nums)
        goto fail;
    for (size_t i = 0; i < m; i++) {
        const struct pcand *c = &cv[rv[i].f];
        if (rv[i].group == rv[i].f)
            nums[rv[i].f] = ++counter[c->det];
        rv[i].num = nums[rv[i].group];
        cap += strlen(p->dets[c->det].placeholder) + 16;
    }
    d->body = malloc(cap);
    d->edits = calloc(m ? m : 1, sizeof(*d->edits));
    if (!d->body || !d->edits)
        goto fail;
    for (size_t i = 0; i < m; i++) {
        const struct pcand *c = &cv[rv[i].f];
        const struct policy_finding *f = &d->findings[rv[i].f];
        char ph[300];
        int pl = in->nonce ? snprintf(ph, sizeof(ph), "[%.256s_%u_%.8s]",
                                      p->dets[c->det].placeholder, rv[i].num, in->nonce)
                           : snprintf(ph, sizeof(ph), "[%.256s_%u]", p->dets[c->det].placeholder,
                                      rv[i].num);
        if (pl < 0 || (size_t)pl >= sizeof(ph))
            goto fail;
        memcpy(d->body + olen, in->body + from, f->start - from);
        olen += f->start - from;
        memcpy(d->body + olen, ph, (size_t)pl);
        olen += (size_t)pl;
        from = f->end;
        struct policy_edit *ed = &d->edits[d->n_edits];
        ed->text = strndup(ph, (size_t)pl);
        if (!ed->text)
            goto fail;
        ed->start = f->start;
        ed->end = f->end;
        ed->len = (size_t)pl;
        d->n_edits++;
        if (rv[i].group == rv[i].f) {
            /* what comes back is the value as the client wrote it (JSON escapes decoded),
             * not as detection saw it (normalised: policy/normalize.c) */
            size_t vl = 0;
            char *val = policy_extract_original(in->body, f->start, f->end, &vl);
            int rc_add = val ? policy_restorer_add(d->restorer, ph, (size_t)pl, val, vl) : -1;
            if (val) {
                sodium_memzero(val, vl);
                free(val);
            }
            if (rc_add < 0)
                goto fail;
        }
    }
    memcpy(d->body + olen, in->body + from, in->len - from);
    olen += in->len - from;
    d->body[olen] = 0;
    d->body_len = olen;
    policy_restorer_seal(d->restorer);
    rc = 0;
fail:
    free(rv);
    free(counter);
    free(nums);
    return rc;
}

/* Segments are found in walk order, which is not always body order ("content" before
 * "text" in one block), so findings are put in body order, their candidates alongside. */
struct fpair {
    struct policy_finding f;
    struct pcand c;
};

static int fpair_cmp(const void *a, const void *b)
{
    const struct fpair *x = a, *y = b;
    return x->f.start < y->f.start ? -1 : x->f.start > y->f.start;
}

static int sort_by_body(struct policy_finding *f, struct pcand *c, size_t n)
{
    size_t i = 1;
    while (i < n && f[i - 1].start <= f[i].start)
        i++;
    if (i == n)
        return 0;
    struct fpair *v = malloc(n * sizeof(*v));
    if (!v)
        return -1;
    for (i = 0; i < n; i++) {
        v[i].f = f[i];
        v[i].c = c[i];
    }
    qsort(v, n, sizeof(*v), fpair_cmp);
    for (i = 0; i < n; i++) {
        f[i] = v[i].f;
        c[i] = v[i].c;
    }
    free(v);
    return 0;
}

/* ---- values split across text parts ---- */

#define SPLIT_WINDOW 256 /* bytes either side of a junction: longer than any one value */

/* text_part -- whether segment s is the value of a member named "text" (a chat content
 * part, a Responses input_text, an Anthropic text block), however the name is escaped */
static int text_part(const struct pextract *x, const struct pseg *s)
{
    size_t n = 0;
    char *k;
    int yes;

    if (s->key_len == 4)
        return memcmp(x->body + s->key_off, "text", 4) == 0;
    if (s->key_len < 4 || !memchr(x->body + s->key_off, '\\', s->key_len))
        return 0;
    k = policy_extract_original(x->body, s->key_off, s->key_off + s->key_len, &n);
    yes = k && n == 4 && memcmp(k, "text", 4) == 0;
    free(k);
    return yes;
}

/* member_name -- whether segment s is a member name (scanned too, but not text the model
 * reads between two parts): its closing quote is followed by ':'. The body parsed as an
 * object, so a structural character always follows. */
static int member_name(const struct pextract *x, const struct pseg *s)
{
    size_t i = s->oend + 1;

    while (x->body[i] == ' ' || x->body[i] == '\t' || x->body[i] == '\n' || x->body[i] == '\r')
        i++;
    return x->body[i] == ':';
}

/* One junction between two text parts: segment a's tail and segment b's head, each at
 * most SPLIT_WINDOW bytes, side by side in the junctions' own text from `at`. */
struct junction {
    size_t a, b; /* segment indices */
    size_t at, na;
};

/* first_ending_after -- the first of the sorted, disjoint findings cv[0..n) that ends after
 * pos (n when none) */
static size_t first_ending_after(const struct pcand *cv, size_t n, size_t pos)
{
    size_t lo = 0, hi = n;

    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cv[mid].e > pos)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

/* split_scan -- a value split between two consecutive text parts of one message, which
 * the model reads as one text ("key AKIAIOSF" + "ODNN7EXAMPLQ", a card number cut by a
 * document chunker): the detectors run over each junction's neighbourhood on its own, and a
 * match that crosses the junction marks its detector in present[] and split[] and is
 * appended to *cv as the part in the first segment (for the findings). Such a value has no
 * one span in the body, so the caller refuses to redact it. 0, or -1 (err set).
 *
 * The neighbourhoods are put one after another into one text, each its own segment, and
 * scanned in one pass, as the request's text is: a scan per junction cost a scratch, an
 * allocation and the scanner's set-up each, which for a body of thousands of tiny parts was
 * most of the decision. */
static int split_scan(const struct policy *p, const struct pextract *x, unsigned char *present,
                      unsigned char *split, struct pcand **cv, size_t *nc, char *err, size_t errlen)
{
    size_t found = *nc; /* the whole-segment findings (sorted by start, disjoint): a match
                           that overlaps one only extends what was found already
                           ("a@b.com" + "then"), and the findings stay disjoint */
    struct junction *jv = NULL;
    struct pextract w = {0};
    struct pcand *wc = NULL;
    size_t nj = 0, nw = 0, text_len = 0;
    int rc = -1;

    /* the junctions, and the room their text takes */
    for (size_t i = 0; i + 1 < x->n_segs; i++) {
        const struct pseg *a = &x->segs[i], *b;
        size_t bi = i + 1;

        /* the next part's text, past member names ("t\u0065xt" is scanned as a name too) */
        while (bi + 1 < x->n_segs && x->segs[bi].message == a->message &&
               member_name(x, &x->segs[bi]))
            bi++;
        b = &x->segs[bi];
        if (a->message != b->message || a->dend == a->dstart || b->dend == b->dstart ||
            !text_part(x, a) || !text_part(x, b))
            continue;
        if (!jv) {
            jv = malloc((x->n_segs - i) * sizeof(*jv));
            if (!jv)
                goto oom;
        }
        jv[nj].a = i;
        jv[nj].b = bi;
        jv[nj].na = a->dend - a->dstart < SPLIT_WINDOW ? a->dend - a->dstart : SPLIT_WINDOW;
        jv[nj].at = text_len;
        text_len += jv[nj].na +
                    (b->dend - b->dstart < SPLIT_WINDOW ? b->dend - b->dstart : SPLIT_WINDOW) + 1;
        nj++;
    }
    if (nj == 0)
        return 0;
    w.body = x->body;
    w.text = malloc(text_len + 1);
    w.segs = calloc(nj, sizeof(*w.segs));
    if (!w.text || !w.segs)
        goto oom;
    for (size_t j = 0; j < nj; j++) {
        const struct pseg *a = &x->segs[jv[j].a], *b = &x->segs[jv[j].b];
        size_t na = jv[j].na,
               nb = b->dend - b->dstart < SPLIT_WINDOW ? b->dend - b->dstart : SPLIT_WINDOW;
        struct pseg *sg = &w.segs[j];

        memcpy(w.text + jv[j].at, x->text + a->dend - na, na);
        memcpy(w.text + jv[j].at + na, x->text + b->dstart, nb);
        w.text[jv[j].at + na + nb] = '\n';
        sg->message = a->message;
        sg->dstart = jv[j].at;
        sg->dend = jv[j].at + na + nb;
    }
    w.text[text_len] = '\0';
    w.text_len = w.text_cap = text_len;
    w.n_segs = w.segs_cap = nj;
    if (policy_scan_ex(p, &w, &wc, &nw, NULL, err, errlen) < 0)
        goto done;
    for (size_t k = 0; k < nw; k++) {
        const struct junction *jn = &jv[wc[k].seg];
        const struct pseg *a = &x->segs[jn->a];
        size_t junction = jn->at + jn->na, as, be, f;
        struct pcand *grown;

        if (!(wc[k].s < junction && wc[k].e > junction))
            continue;
        as = a->dend - (junction - wc[k].s);
        be = x->segs[jn->b].dstart + (wc[k].e - junction);
        /* a whole-segment finding in a that ends after as, or in b that starts before be:
         * those lie between as and be in the text, and the findings are sorted */
        for (f = first_ending_after(*cv, found, as); f < found && (*cv)[f].s < be; f++)
            if ((*cv)[f].seg == jn->a || (*cv)[f].seg == jn->b)
                break;
        if (f < found && (*cv)[f].s < be)
            continue;
        grown = realloc(*cv, (*nc + 1) * sizeof(**cv));
        if (!grown)
            goto oom;
        *cv = grown;
        (*cv)[*nc].det = wc[k].det;
        (*cv)[*nc].seg = (unsigned)jn->a;
        (*cv)[*nc].s = as;
        (*cv)[*nc].e = a->dend;
        (*nc)++;
        present[wc[k].det] = 1;
        split[wc[k].det] = 1;
    }
    rc = 0;
    goto done;
oom:
    snprintf(err, errlen, "out of memory while deciding the request.");
done:
    free(wc);
    free(jv);
    free(w.segs);
    if (w.text)
        sodium_memzero(w.text, text_len);
    free(w.text);
    return rc;
}

int policy_decide(const struct policy *p, const struct policy_input *in, struct policy_decision *d)
{
    struct pextract x = {0};
    struct json_doc own = {0};
    const struct json_doc *doc = in->doc;
    struct pcand *cv = NULL;
    size_t nc = 0;
    unsigned char *present = NULL, *split = NULL;
    int rc = -1;
    memset(d, 0, sizeof(*d));
    d->verdict = POLICY_BLOCK;
    d->rule = "default-deny";
    if (!in->body && in->len) {
        snprintf(d->error, sizeof(d->error), "the request has no body.");
        goto done;
    }
    if (!in->doc) {
        if (json_parse(&own, in->body ? in->body : "", in->len, d->error, sizeof(d->error)) < 0)
            goto done;
        doc = &own;
    }
    /* (0: a config built by hand, without the loader's default) */
    if (p->cfg->limits.max_body_values > 0 && doc->n > (size_t)p->cfg->limits.max_body_values) {
        snprintf(d->error, sizeof(d->error),
                 "the request body has more than the limit of %d JSON values "
                 "(limits.max_body_values).",
                 p->cfg->limits.max_body_values);
        d->too_large = 1;
        goto done;
    }
    if (policy_extract_doc(in->api, doc, &x, d->error, sizeof(d->error)))
        goto done;
    if (x.unscanned & PEXTRACT_UNSCANNED_IMAGE)
        d->unscanned |= POLICY_UNSCANNED_IMAGE;
    present = calloc(p->n_dets, 1);
    split = calloc(p->n_dets, 1);
    if (!present || !split)
        goto oom;
    if (policy_scan_ex(p, &x, &cv, &nc, present, d->error, sizeof(d->error)) < 0)
        goto done;
    if (split_scan(p, &x, present, split, &cv, &nc, d->error, sizeof(d->error)) < 0)
        goto done;
    if (nc) {
        d->findings = calloc(nc, sizeof(*d->findings));
        if (!d->findings)
            goto oom;
    }
    for (size_t i = 0; i < nc; i++) {
        const struct pseg *sg = &x.segs[cv[i].seg];
        struct policy_finding *f = &d->findings[i];
        f->detector = p->dets[cv[i].det].name;
        f->message = sg->message;
        policy_extract_map(&x, sg, cv[i].s, cv[i].e, &f->start, &f->end);
    }
    d->n_findings = nc;
    if (nc > 1 && sort_by_body(d->findings, cv, nc) < 0)
        goto oom;

    const struct config *cfg = p->cfg;
    size_t ri = 0;
    for (; ri < cfg->n_rules; ri++)
        if (rule_matches(p, ri, in, present, d->unscanned))
            break;
    if (ri == cfg->n_rules) {
        rc = 0; /* default deny */
        goto done;
    }
    const struct config_rule *r = &cfg->rules[ri];
    d->rule = r->name;
    for (size_t k = 0, o = 0; r->n_detected && k < p->n_dets; k++)
        if (present[k] && p->rules[ri].detected[k] && o < sizeof(d->because))
            o += (size_t)snprintf(d->because + o, sizeof(d->because) - o, "%s%s", o ? ", " : "",
                                  p->dets[k].name);
    d->verdict = (enum policy_verdict)r->action;
    if (r->action != CONFIG_ACTION_BLOCK) {
        const struct config_model *req = model_find(cfg, in->model);
        const struct config_model *tm = r->model ? model_find(cfg, r->model) : req;
        d->model = tm ? tm->name : NULL;
        d->provider = r->provider ? r->provider : tm ? tm->provider : NULL;
        if (r->model && !tm)
            d->model = r->model;
    }
    if (r->action == CONFIG_ACTION_REDACT) {
        for (size_t k = 0; k < p->n_dets; k++)
            if (split[k] && p->rules[ri].redact[k]) {
                snprintf(d->error, sizeof(d->error),
                         "what the detector '%s' finds is split across two text parts of one "
                         "message, so it cannot be redacted in place.",
                         p->dets[k].name);
                goto done;
            }
        if (redact(p, in, &x, cv, nc, p->rules[ri].redact, d) < 0)
            goto oom;
    }
    rc = 0;
    goto done;
oom:
    snprintf(d->error, sizeof(d->error), "out of memory while deciding the request.");
done:
    if (rc < 0) {
        d->verdict = POLICY_BLOCK;
        d->provider = d->model = NULL;
    }
    free(present);
    free(split);
    free(cv);
    policy_extract_deinit(&x);
    json_doc_deinit(&own);
    return rc;
}

void policy_decision_deinit(struct policy_decision *d)
{
    if (!d)
        return;
    free(d->findings);
    d->findings = NULL;
    d->n_findings = 0;
    if (d->body) {
        sodium_memzero(d->body, d->body_len);
        free(d->body);
    }
    d->body = NULL;
    d->body_len = 0;
    for (size_t i = 0; i < d->n_edits; i++)
        free(d->edits[i].text);
    free(d->edits);
    d->edits = NULL;
    d->n_edits = 0;
    policy_restorer_free(d->restorer);
    d->restorer = NULL;
}
