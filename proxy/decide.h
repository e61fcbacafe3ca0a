/* decide.h -- one decision about one request body: the gateway's and `airlock policy test`'s.
 *
 * proxy_decide is the whole path from the bytes a client sent to the bytes that would
 * leave: UTF-8, the one strict parse (common/json.h: repeated member names, NULs and lone
 * surrogates refused), the API's shapes, the model and stream options, the policy,
 * routing, and the outbound body. The gateway calls it for every API request and
 * `airlock policy test` calls it for its one body, so the CLI's `outbound` is byte for
 * byte what the gateway sends. Everything the gateway reads about the body afterwards
 * (engine parameters, translation) is read from `doc`, never from another parse.
 *
 * Not here, because they are the gateway's state and not the body's: authentication,
 * budgets, the audit.
 *
 * Pure: no I/O, no globals, so any thread may call it (the gateway decides bodies of
 * PROXY_DECIDE_OFFLOOP_BYTES or more on its decider thread, decider.h). Returns 0 when the
 * request may go on, -1 when it is refused: d->status is the HTTP status (400 malformed or
 * unscannable, 403 refused by policy, 404 unknown model, 413 more JSON values than
 * limits.max_body_values, 500 out of memory) and d->error one sentence for the client. `d`
 * is initialised by the call and must be released with proxy_decision_deinit whatever the
 * return; it borrows `body`, which must outlive it. */
#ifndef AIRLOCK_PROXY_DECIDE_H
#define AIRLOCK_PROXY_DECIDE_H

#include <stddef.h>

#include "common/json.h"
#include "config/config.h"
#include "policy/policy.h"

#define PROXY_NONCE_LEN 6

/* What a body is, by its endpoint: its shape is checked by this, and the routes it may
 * take (a completion or an embedding is never translated to another API). */
enum proxy_body {
    PROXY_BODY_CHAT,       /* /v1/chat/completions, /v1/messages (and count_tokens) */
    PROXY_BODY_COMPLETION, /* /v1/completions: `prompt` */
    PROXY_BODY_EMBEDDING,  /* /v1/embeddings: `input` */
    PROXY_BODY_RESPONSE,   /* /v1/responses: `instructions`, `input` (a string or items) */
    PROXY_BODY_COMPACT,    /* /v1/responses/compact: a Responses body, compacted upstream */
};

struct proxy_decision {
    enum policy_api api;
    enum proxy_body kind;
    struct json_doc doc;     /* the one parse of the body */
    char *model_name;        /* owned: the requested model, decoded */
    int stream;              /* "stream": true */
    int include_usage_asked; /* OpenAI: the client asked for the usage chunk itself */
    int has_policy;          /* the policy ran: `policy` holds its decision */
    struct policy_decision policy;
    const struct config_model *model;   /* borrowed from the config: the target */
    const struct config_provider *prov; /* its provider */
    size_t prov_index;
    char *outbound; /* owned: the body that leaves; NULL when nothing leaves */
    size_t outbound_len;
    int outbound_flags;              /* PROXY_OUTBOUND_* */
    char nonce[PROXY_NONCE_LEN + 1]; /* this request's placeholder suffix (policy.h) */
    char *modified;  /* owned: what was changed on the way out (proxy_modified_summary);
                        NULL when refused or nothing was */
    int status;      /* when refused: the HTTP status */
    char error[512]; /* when refused: why, in one sentence */
};

int proxy_decide(const struct config *cfg, const struct policy *pol, enum policy_api api,
                 const char *body, size_t len, const char *key_name, const char *team,
                 struct proxy_decision *d);
/* proxy_decide_body -- proxy_decide for a body of kind `kind` (proxy_decide: a chat).
 * OpenAI API only for completions, embeddings and responses. Beyond proxy_decide's
 * refusals: 400 for a prompt or input given as tokens (they cannot be scanned), and for a
 * route the body cannot take (an Anthropic provider; an embedding or a compaction to the
 * built-in engine; a response to the built-in engine with what only a provider can honour:
 * previous_response_id, hosted tools, background). */
int proxy_decide_body(const struct config *cfg, const struct policy *pol, enum policy_api api,
                      enum proxy_body kind, const char *body, size_t len, const char *key_name,
                      const char *team, struct proxy_decision *d);
/* the policy's verdict as the audit and metrics name it: "block", ...; "none" before one */
const char *proxy_decision_verdict(const struct proxy_decision *d);
void proxy_decision_deinit(struct proxy_decision *d);

/* modified.c: proxy_modified_summary -- the `x-airlock-modified` line of a decision that
 * goes on (docs/gateway.md: redacted=, model=, options=, translated=, rewritten), names
 * and counts only, never a value; *out malloc'd, NULL when nothing was changed. 0, or -1
 * when memory ran out. proxy_modified_api_name -- "openai-chat", "anthropic-messages", ... */
int proxy_modified_summary(const struct proxy_decision *d, char **out);
const char *proxy_modified_api_name(enum policy_api api, enum proxy_body kind);

#endif
