/* policy.h -- what may leave the network: detectors, rules, decisions, redaction.
 *
 * A `struct policy` is compiled once per config snapshot (Vectorscan database for
 * the built-in and custom detectors, resolved rules) and is then immutable: any
 * thread may call policy_decide() on it concurrently (scratch space is per call
 * or per thread, never shared unlocked).
 *
 * policy_decide() is pure: no I/O, no globals, the same input gives the same
 * decision. It finds every text the model would read in the request body (system
 * prompt, every message, text content parts, tool-call arguments, tool results;
 * JSON escapes decoded, spans mapped back to the original body bytes), scans it,
 * evaluates the rules in order (first match wins; none matching is a block by the
 * implicit rule "default-deny") and, for redact, builds the rewritten body.
 *
 * Its cost grows with the body's bytes and with its JSON values (every string, member
 * name, number, literal, object and array), so a body of more values than the config's
 * limits.max_body_values is refused before it is walked.
 *
 * policy knows nothing of HTTP or sockets.
 * Errors: 0 / -1. A -1 from policy_decide means the request could not be scanned
 * (malformed body, a limit, a scanner error): the caller must refuse it (fail
 * closed); out->error says why in one sentence. */
#ifndef AIRLOCK_POLICY_H
#define AIRLOCK_POLICY_H

#include <stddef.h>

#include "config/config.h"

struct policy;
struct policy_restorer;
struct json_doc;

enum policy_api { POLICY_API_OPENAI, POLICY_API_ANTHROPIC };

enum policy_verdict {
    POLICY_BLOCK = CONFIG_ACTION_BLOCK,
    POLICY_ROUTE = CONFIG_ACTION_ROUTE,
    POLICY_REDACT = CONFIG_ACTION_REDACT,
    POLICY_ALLOW = CONFIG_ACTION_ALLOW,
};

struct policy_input {
    enum policy_api api;
    const char *body; /* the request body exactly as received */
    size_t len;
    const struct json_doc *doc; /* the body's parse (common/json.h), or NULL: parsed here,
                                   by the same parser */
    const char *model;          /* requested model name ("" if absent) */
    const char *key_name;       /* principal; NULL when auth is off */
    const char *team;           /* NULL when none */
    const char *nonce;          /* the request's placeholder suffix ([EMAIL_1_k3f9qa]): 6 of
                                   a-z2-7, unguessable, fresh per request (the gateway's
                                   proxy_decide draws it); NULL: none (deterministic
                                   output for tests) */
};

struct policy_finding {
    const char *detector; /* borrowed from the policy (stable name) */
    int message;          /* index in messages[] (input[] for Responses and Embeddings);
                             -1 for a top-level system prompt or anything else */
    size_t start, end;    /* byte span in the original body, [start, end) */
};

/* One replacement of the original body's bytes [start, end) by text (redaction). */
struct policy_edit {
    size_t start, end;
    char *text; /* owned, NUL-terminated */
    size_t len;
};

#define POLICY_UNSCANNED_IMAGE 1u /* image data (base64) */

struct policy_decision {
    enum policy_verdict verdict;
    const char *rule;     /* borrowed: rule name, or "default-deny" */
    const char *provider; /* borrowed: target provider name; NULL for block */
    const char *model;    /* borrowed: target model name (a `models` entry); NULL for block */
    struct policy_finding *findings; /* owned, sorted by start */
    size_t n_findings;
    char *body; /* owned: the redacted body for redact; NULL otherwise
                   (the body as received is what goes on) */
    size_t body_len;
    struct policy_edit *edits; /* owned: for redact, the splices that make `body` from the
                                  original, in body order (the gateway applies them to its
                                  one parse together with its own rewrites) */
    size_t n_edits;
    struct policy_restorer *restorer; /* owned: non-NULL for redact */
    unsigned unscanned;               /* POLICY_UNSCANNED_*: content the request carries that the
                                         detectors could not read (rules: `unscanned`) */
    char because[128]; /* the detectors that made the rule's `detected` condition true, in
                          detector order, ", "-separated ("" without such a condition):
                          a custom detector is named even when a built-in one's finding
                          took its span (findings then name only the built-in) */
    int too_large;     /* with a -1: the body holds more JSON values than the config's
                          limits.max_body_values (the caller answers 413, not 400) */
    char error[256];   /* when policy_decide returns -1 */
};

/* policy_new -- compile the detectors and rules of cfg. The policy borrows cfg,
 * which must outlive it. Returns 0, or -1 with a message (and position when it is
 * a config problem, e.g. a custom regex that does not compile) in errs. */
int policy_new(const struct config *cfg, struct policy **out, struct config_errors *errs)
    __attribute__((warn_unused_result));
void policy_free(struct policy *p);

/* policy_decide -- see the top of this file. `out` is initialised by the call and
 * must be released with policy_decision_deinit() whatever the return. */
int policy_decide(const struct policy *p, const struct policy_input *in,
                  struct policy_decision *out) __attribute__((warn_unused_result));
void policy_decision_deinit(struct policy_decision *d);

/* policy_detector_known -- whether `name` is a built-in detector, a group or a
 * custom detector of cfg (used by config validation of rules). */
int policy_detector_known(const struct config *cfg, const char *name);

/* Restoring redacted values in an answer. Text is fed per stream (`slot`: the
 * choice index or content block index; 0 for a plain body) in the order it
 * arrives; a placeholder split across feeds is held back until complete, so the
 * output may lag the input by at most one placeholder's length. The restorer is
 * owned by the decision; its mapping is wiped when the decision is deinit'ed.
 *
 * policy_restore_feed appends the restored text for `in` to *out (realloc'd;
 * *out_len updated); policy_restore_flush appends what is held back for `slot`.
 * Both return 0 or -1 on allocation failure. */
int policy_restore_feed(struct policy_restorer *r, int slot, const char *in, size_t len, char **out,
                        size_t *out_len);
int policy_restore_flush(struct policy_restorer *r, int slot, char **out, size_t *out_len);

#endif
