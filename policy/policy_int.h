/* policy_int.h -- internals shared by the policy sources: extraction, scanner, validators.
 *
 * Extraction turns a request body into one "text" buffer: the decoded text of every
 * string the model reads, segments separated by '\n', with enough bookkeeping (escape
 * runs) to map any decoded span back to the original body bytes. The scanner runs one
 * Vectorscan pass over that buffer, one hand-written pass over its digit clusters (phone,
 * card, IBAN, SSN) and a memchr for '@' (email); validators confirm and refine each
 * candidate inside its own segment. */
#ifndef AIRLOCK_POLICY_INT_H
#define AIRLOCK_POLICY_INT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <hs.h>

#include "policy/policy.h"

#define POLICY_MAX_DEPTH 64
#define POLICY_MAX_SEGMENTS                                                                        \
    10000000 /* a guard: limits.max_body_values (at most this) bites first */
#define POLICY_MAX_CANDIDATES 200000
#define POLICY_MAX_BODY ((size_t)1 << 31)

/* One string the model reads. dstart/dend index extract.text; ostart/oend are the
 * raw span in the body (between the quotes). Escape runs [run_first, run_first+n_runs)
 * of extract.runs cover this segment's escapes in order. */
struct pseg {
    int message;
    size_t dstart, dend;
    size_t ostart, oend;
    size_t run_first, n_runs;
    size_t key_off, key_len; /* raw bytes of the object key this string is the value of; 0 len: none */
};

/* One JSON escape: decoded bytes [doff, doff+dlen) of text come from body [ooff, ooff+olen). */
struct prun {
    size_t doff, ooff;
    uint8_t dlen, olen;
};

#define PEXTRACT_UNSCANNED_IMAGE 1u /* image data (base64) the scanner cannot read */

struct pextract {
    const char *body; /* borrowed */
    unsigned unscanned; /* PEXTRACT_UNSCANNED_*: content that was not scanned */
    char *text;
    size_t text_len, text_cap;
    struct pseg *segs;
    size_t n_segs, segs_cap;
    struct prun *runs;
    size_t n_runs, runs_cap;
};

/* policy_extract -- fills x (zeroed by the caller) from body. Returns 0, or -1 with a
 * one-sentence reason in err. x must be released with policy_extract_deinit either way. */
struct json_doc;
/* policy_extract_doc -- the same over a body already parsed by json_parse (the gateway's
 * one reading); x borrows doc->body. */
int policy_extract_doc(enum policy_api api, const struct json_doc *doc, struct pextract *x,
                       char *err, size_t errlen);
int policy_extract(enum policy_api api, const char *body, size_t len, struct pextract *x,
                   char *err, size_t errlen);
void policy_extract_deinit(struct pextract *x);
/* policy_norm_cp -- what code point cp stands for when detecting (normalize.c): an ASCII
 * character (>= 0), POLICY_NORM_DROP (invisible: not seen), or POLICY_NORM_KEEP. */
#define POLICY_NORM_DROP (-1)
#define POLICY_NORM_KEEP (-2)
int policy_norm_cp(unsigned cp);

/* policy_extract_original -- the body's raw string bytes [start, end) with their JSON
 * escapes decoded and nothing normalised: a value as the client wrote it (malloc'd,
 * NUL-terminated; *len its length). NULL when memory runs out. */
char *policy_extract_original(const char *body, size_t start, size_t end, size_t *len);

/* Map a decoded span of segment s back to the body: [*os, *oe). */
void policy_extract_map(const struct pextract *x, const struct pseg *s, size_t ds, size_t de,
                        size_t *os, size_t *oe);

/* Built-in detectors: the indices of config's table (config.h, config_detectors_builtin:
 * names and groups), whose order is the tie-break priority for overlapping findings
 * (earlier wins). Custom detectors come after, in config order. */
enum {
    DET_PRIVATE_KEY = CONFIG_DET_PRIVATE_KEY,
    DET_ANTHROPIC_KEY = CONFIG_DET_ANTHROPIC_KEY,
    DET_OPENAI_KEY = CONFIG_DET_OPENAI_KEY,
    DET_GITHUB_TOKEN = CONFIG_DET_GITHUB_TOKEN,
    DET_AWS_ACCESS_KEY = CONFIG_DET_AWS_ACCESS_KEY,
    DET_JWT = CONFIG_DET_JWT,
    DET_CREDENTIAL_URI = CONFIG_DET_CREDENTIAL_URI,
    DET_GENERIC_SECRET = CONFIG_DET_GENERIC_SECRET,
    DET_IBAN = CONFIG_DET_IBAN,
    DET_CREDIT_CARD = CONFIG_DET_CREDIT_CARD,
    DET_US_SSN = CONFIG_DET_US_SSN,
    DET_EMAIL = CONFIG_DET_EMAIL,
    DET_PHONE = CONFIG_DET_PHONE,
    DET_IPV4 = CONFIG_DET_IPV4,
    DET_N_BUILTIN = CONFIG_DET_N_BUILTIN
};

/* A validator confirms a candidate [s, e) inside segment text t[0..n) and may refine
 * the span; returns 1 with *os and *oe set when it is a finding. */
typedef int (*policy_validator)(const char *t, size_t n, size_t s, size_t e, size_t *os,
                                size_t *oe);

struct pdetector {
    const char *name;    /* borrowed: static or from the config */
    char *placeholder;   /* owned: upper-case name used in [NAME_N] */
    policy_validator validate; /* NULL: custom, or found by the digit pass (phone, card,
                                  IBAN, SSN) */
    int custom_regex;    /* leftmost-longest, non-overlapping */
    int exempt;          /* an `exempt` entry names it: its values are checked */
};

struct scratch_node {
    hs_scratch_t *s;
    struct scratch_node *next;
};

struct policy {
    const struct config *cfg;
    struct pdetector *dets;
    size_t n_dets;
    hs_database_t *db;
    unsigned *pat_det;   /* pattern id -> detector index */
    unsigned char *pat_som; /* pattern reports its start */
    size_t n_pats;
    hs_scratch_t *proto; /* scratch prototype, cloned per concurrent caller */
    pthread_mutex_t lock; /* guards free_scratch */
    struct scratch_node *free_scratch;
    /* per rule: bitmask-free lists of detector indices for `detected` and redact */
    struct prule *rules;
    unsigned *exempt_det; /* [cfg->n_exempt]: the detector each exempt entry names */
};

struct prule {
    unsigned char *detected; /* n_dets flags; NULL: not a condition */
    unsigned char *redact;   /* n_dets flags (redact action) */
};

/* A finding in decoded coordinates (index into text) before mapping. */
#define PCAND_ALSO 3
struct pcand {
    unsigned det;
    unsigned seg;
    size_t s, e; /* decoded offsets within the whole text */
    /* custom detectors whose overlapping findings this one took the place of (the sweep
     * in policy_scan_ex): a rule that redacts one of them redacts this span, which then
     * also covers theirs. n_also > PCAND_ALSO: more than fit (redacted by any rule that
     * redacts a custom detector). */
    unsigned also[PCAND_ALSO];
    unsigned n_also;
};

int policy_scan_compile(struct policy *p, struct config_errors *errs);
void policy_scan_free(struct policy *p);
/* policy_scan -- findings (decoded coordinates, sorted by start, overlaps resolved)
 * into *out (malloc'd). Returns 0 or -1 with a reason in err. */
/* policy_scan_ex -- the same; `fired` (may be NULL; p->n_dets bytes, zeroed by the
 * caller) is set for every detector with a surviving finding AND for every custom
 * detector whose finding lost an overlap to a built-in one: a custom detector is the
 * operator's explicit intent, so rules on it must see it fire even when a built-in
 * detector claims the same span (e.g. a staff e-mail regex over `email`). */
int policy_scan_ex(const struct policy *p, const struct pextract *x, struct pcand **out,
                   size_t *n_out, unsigned char *fired, char *err, size_t errlen);
int policy_scan(const struct policy *p, const struct pextract *x, struct pcand **out,
                size_t *n_out, char *err, size_t errlen);

/* Validators (validate.c), exposed for unit tests. */
int policy_luhn(const char *digits, size_t n);
int policy_iban_check(const char *s, size_t n); /* s: IBAN without spaces */
double policy_entropy(const char *s, size_t n);
extern const policy_validator policy_builtin_validators[DET_N_BUILTIN];
/* Phone, credit card, IBAN and SSN: one pass over a segment's digit clusters; emit returns -1
 * to stop (out of memory). */
typedef int (*policy_emit)(void *arg, unsigned det, size_t s, size_t e);
int policy_scan_digits(const char *t, size_t n, policy_emit emit, void *arg);
/* generic_secret for a string whose JSON key is secret-like: the whole value. */
int policy_secret_key_like(const char *k, size_t n);
int policy_secret_value_ok(const char *v, size_t n);

/* Context words (context.c): labels shortly before a candidate, and values that are
 * references or placeholders. Tables and rules: docs/policy.md, "Context words". */
enum policy_ctx {
    POLICY_CTX_NONE,
    POLICY_CTX_PHONE,  /* "Phone:", "Tel.", "mobile", "Handy", "電話", "मोबाइल", "mera number" */
    POLICY_CTX_SSN,    /* "SSN", "social security number", "Sozialversicherungsnummer" */
    POLICY_CTX_DOCNUM, /* "マイナンバー", "旅券番号", "passport", "Order no.": not a phone/card/SSN */
    POLICY_CTX_OTHER,  /* "build", "order", "id", "routing": some other number (neutral) */
};
/* policy_context_label -- the class of the nearest label that ends shortly before t[s]
 * (t[0..n) is one segment's text) with no digit or line break between; NONE if none. */
enum policy_ctx policy_context_label(const char *t, size_t n, size_t s);
/* policy_context_reference -- 1 when what precedes the value at t[vs] says the value is
 * a name to look up ("${{ ", "${", "{{ ", "<", "os.environ[\"", "getenv(\""). */
int policy_context_reference(const char *t, size_t vs);
/* policy_value_reference -- 1 when v[0..n) is a reference, not a value: process.env.X,
 * secrets.X, os.environ, an identifier path without digits (config.stripeSecretKey). */
int policy_value_reference(const char *v, size_t n);
/* policy_value_placeholder -- 1 when v[0..n) is a placeholder: YOUR_API_KEY..., <...>,
 * ${VAR}, $VAR, %s, xxxx, ****, or the field's own name (password, secret). */
int policy_value_placeholder(const char *v, size_t n);
/* policy_context_counter_name -- 1 when an identifier holding a secret-like word names a
 * count, a size or a pointer to the value (token_count, max_tokens, api_key_file). */
int policy_context_counter_name(const char *name, size_t n);
/* policy_secret_value_real -- policy_secret_value_ok and neither a placeholder nor a
 * reference. */
int policy_secret_value_real(const char *v, size_t n);

/* The restorer (restore.c). */
struct policy_restorer *policy_restorer_new(void);
int policy_restorer_add(struct policy_restorer *r, const char *ph, size_t ph_len,
                        const char *val, size_t val_len);
void policy_restorer_free(struct policy_restorer *r);
/* policy_restorer_seal -- the mapping is complete: build its lookup now (a sort of every
 * placeholder) on the thread that decides, so that the first piece of the answer, on the
 * event loop, does not pay for it (100,000 placeholders: ~10 ms). Adding is refused
 * after it, as after the first feed. */
void policy_restorer_seal(struct policy_restorer *r);

#endif
