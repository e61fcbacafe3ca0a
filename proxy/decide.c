/* decide.c -- one decision about one request body (see decide.h).
 *
 * In the order a body is judged: its bytes (UTF-8), its grammar (the one strict parse),
 * its shape (what the API allows where the scanner reads), the fields the gateway acts
 * on (model, stream), the policy, the route, and the body that would leave. Each step
 * refuses with the status and sentence a client should see. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "common/rand.h"
#include "common/utf8.h"
#include "proxy/decide.h"
#include "proxy/outbound.h"

static int refuse(struct proxy_decision *d, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int refuse(struct proxy_decision *d, int status, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(d->error, sizeof(d->error), fmt, ap);
    va_end(ap);
    d->status = status;
    return -1;
}

/* parts -- every item of a content array (or Anthropic's system array) is an object with a
 * string `type`: the scanner reads parts by their shape, so one it cannot place is
 * refused here rather than forwarded unread. `at` names the array for the message. */
static int parts(struct proxy_decision *d, uint32_t arr, const char *at)
{
    const struct json_doc *doc = &d->doc;
    int j = 0;

    JSON_FOR_ITEMS(doc, arr, p)
    {
        if (json_type(doc, p) != JSON_OBJ || json_type(doc, json_get(doc, p, "type")) != JSON_STR)
            return refuse(d, 400, "%s[%d] must be an object with a 'type'.", at, j);
        j++;
    }
    return 0;
}

/* texts -- `prompt` (completions) or `input` (embeddings): a string or a non-empty array of
 * strings. Tokens (an array of integers, or of such arrays) are numbers the scanner cannot
 * read as text without the provider's tokenizer, so they are refused, not forwarded. */
static int texts(struct proxy_decision *d, const char *name)
{
    const struct json_doc *doc = &d->doc;
    uint32_t v = json_get(doc, doc->root, name);
    int t = json_type(doc, v), i = 0;

    if (t == JSON_STR)
        return 0;
    if (t != JSON_ARR || doc->nodes[v].child == JSON_NONE)
        return refuse(d, 400, "The request has no '%s': a string or an array of strings.", name);
    JSON_FOR_ITEMS(doc, v, p)
    {
        int pt = json_type(doc, p);
        if (pt == JSON_NUM || pt == JSON_ARR)
            return refuse(d, 400,
                          "'%s' given as tokens cannot be scanned by the gateway's policy, so it "
                          "was refused; send text.",
                          name);
        if (pt != JSON_STR)
            return refuse(d, 400, "%s[%d] must be a string.", name, i);
        i++;
    }
    return 0;
}

/* chat -- `messages` as the chat APIs have it */
static int chat(struct proxy_decision *d)
{
    const struct json_doc *doc = &d->doc;
    uint32_t root = doc->root, msgs, v;
    char at[64];
    int i = 0;

    msgs = json_get(doc, root, "messages");
    if (json_type(doc, msgs) != JSON_ARR)
        return refuse(d, 400, "The request has no 'messages' array.");
    if (d->api == POLICY_API_ANTHROPIC) {
        v = json_get(doc, root, "system");
        if (v != JSON_NONE && json_type(doc, v) != JSON_STR && json_type(doc, v) != JSON_NULL) {
            if (json_type(doc, v) != JSON_ARR)
                return refuse(d, 400, "'system' must be a string or an array of text blocks.");
            if (parts(d, v, "system") < 0)
                return -1;
        }
    }
    JSON_FOR_ITEMS(doc, msgs, m)
    {
        uint32_t c = json_get(doc, m, "content");
        int ct = json_type(doc, c);

        if (json_type(doc, m) != JSON_OBJ || json_type(doc, json_get(doc, m, "role")) != JSON_STR)
            return refuse(d, 400, "messages[%d] must be an object with a string 'role'.", i);
        if (ct == JSON_ARR) {
            snprintf(at, sizeof(at), "messages[%d].content", i);
            if (parts(d, c, at) < 0)
                return -1;
        } else if (ct != JSON_STR &&
                   !((ct < 0 || ct == JSON_NULL) && d->api == POLICY_API_OPENAI)) {
            /* (OpenAI: an assistant message with tool calls has no content) */
            return refuse(d, 400,
                          "messages[%d].content must be a string or an array of content parts.", i);
        }
        i++;
    }
    return 0;
}

/* response -- a Responses body: `instructions` a string, `input` a string or a list of
 * items (objects: messages, function calls and outputs, reasoning, ...), each message's
 * content a string or parts the scanner can place */
static int response(struct proxy_decision *d)
{
    const struct json_doc *doc = &d->doc;
    uint32_t root = doc->root, v = json_get(doc, root, "instructions");
    char at[64];
    int i = 0;

    if (v != JSON_NONE && json_type(doc, v) != JSON_STR && json_type(doc, v) != JSON_NULL)
        return refuse(d, 400, "'instructions' must be a string.");
    v = json_get(doc, root, "input");
    if (v == JSON_NONE || json_type(doc, v) == JSON_STR)
        return 0;
    if (json_type(doc, v) != JSON_ARR)
        return refuse(d, 400, "'input' must be a string or an array of items.");
    JSON_FOR_ITEMS(doc, v, it)
    {
        uint32_t c = json_get(doc, it, "content");
        int ct = json_type(doc, c);

        if (json_type(doc, it) != JSON_OBJ)
            return refuse(d, 400, "input[%d] must be an object.", i);
        if (ct == JSON_ARR) {
            snprintf(at, sizeof(at), "input[%d].content", i);
            if (parts(d, c, at) < 0)
                return -1;
        } else if (c != JSON_NONE && ct != JSON_STR && ct != JSON_NULL) {
            return refuse(d, 400, "input[%d].content must be a string or an array of parts.", i);
        }
        i++;
    }
    return 0;
}

static int shapes(struct proxy_decision *d)
{
    const struct json_doc *doc = &d->doc;
    uint32_t root = doc->root, v;

    if (json_type(doc, root) != JSON_OBJ)
        return refuse(d, 400, "The request body is not a JSON object.");
    v = json_get(doc, root, "model");
    if (json_type(doc, v) != JSON_STR || doc->nodes[v].end == doc->nodes[v].start)
        return refuse(d, 400, "The request has no 'model' string.");
    if ((d->kind == PROXY_BODY_CHAT && chat(d) < 0) ||
        (d->kind == PROXY_BODY_COMPLETION && texts(d, "prompt") < 0) ||
        (d->kind == PROXY_BODY_EMBEDDING && texts(d, "input") < 0) ||
        ((d->kind == PROXY_BODY_RESPONSE || d->kind == PROXY_BODY_COMPACT) && response(d) < 0))
        return -1;
    v = json_get(doc, root, "stream");
    if (v != JSON_NONE && json_type(doc, v) != JSON_TRUE && json_type(doc, v) != JSON_FALSE &&
        json_type(doc, v) != JSON_NULL)
        return refuse(d, 400, "'stream' must be true or false.");
    d->stream = json_type(doc, v) == JSON_TRUE;
    if (d->stream && d->kind == PROXY_BODY_EMBEDDING)
        return refuse(d, 400, "'stream' is not a parameter of /v1/embeddings.");
    if (d->stream && d->kind == PROXY_BODY_COMPACT)
        return refuse(d, 400, "'stream' is not a parameter of /v1/responses/compact.");
    d->include_usage_asked = json_type(doc, json_get(doc, json_get(doc, root, "stream_options"),
                                                     "include_usage")) == JSON_TRUE;
    d->model_name = json_str_dup(doc, json_get(doc, root, "model"), NULL);
    if (!d->model_name)
        return refuse(d, 500, "Out of memory while reading the request.");
    return 0;
}

/* the 403's sentence: the rule, and the detectors that made it match (each finding's
 * detector once for a rule without a `detected` condition) */
static int refuse_block(struct proxy_decision *d)
{
    const struct policy_decision *p = &d->policy;
    char dets[256] = "";
    size_t n = 0;

    if (p->because[0])
        return refuse(d, 403, "Refused by policy rule '%s': the prompt contains %s.", p->rule,
                      p->because);
    for (size_t k = 0; k < p->n_findings && n < sizeof(dets); k++) {
        int dup = 0;
        for (size_t j = 0; j < k && !dup; j++)
            dup = strcmp(p->findings[j].detector, p->findings[k].detector) == 0;
        if (!dup)
            n += (size_t)snprintf(dets + n, sizeof(dets) - n, "%s%s", n ? ", " : "",
                                  p->findings[k].detector);
    }
    if (dets[0])
        return refuse(d, 403, "Refused by policy rule '%s': the prompt contains %s.", p->rule,
                      dets);
    return refuse(d, 403, "Refused by policy rule '%s'.", p->rule);
}

/* local -- what a response routed to the built-in engine asks for that only a provider can
 * honour: a conversation the provider keeps (previous_response_id), tools the provider runs
 * (any tool but a function), work it finishes later (background). Answered anyway, the
 * answer would be wrong, so the request is refused with what to change. */
static int local(struct proxy_decision *d)
{
    const struct json_doc *doc = &d->doc;
    uint32_t root = doc->root, v;
    static const char *const held[] = {"previous_response_id", "conversation", "prompt", NULL};
    int i = 0;

    for (size_t k = 0; held[k]; k++) {
        v = json_get(doc, root, held[k]);
        if (v != JSON_NONE && json_type(doc, v) != JSON_NULL)
            return refuse(d, 400,
                          "This request is routed to the local model '%s', which cannot use "
                          "what a provider stores ('%s'); send the whole conversation in "
                          "'input'.",
                          d->model->name, held[k]);
    }
    if (json_type(doc, json_get(doc, root, "background")) == JSON_TRUE)
        return refuse(d, 400,
                      "This request is routed to the local model '%s', which answers in the "
                      "request, not in the background ('background': true).",
                      d->model->name);
    v = json_get(doc, root, "tools");
    if (json_type(doc, v) != JSON_ARR)
        return 0;
    JSON_FOR_ITEMS(doc, v, t)
    {
        uint32_t ty = json_get(doc, t, "type");
        if (!json_str_eq(doc, ty, "function")) {
            char *name = json_type(doc, ty) == JSON_STR ? json_str_dup(doc, ty, NULL) : NULL;
            refuse(d, 400,
                   "This request is routed to the local model '%s', which cannot run the hosted "
                   "tool tools[%d] ('%.64s'); only function tools can be sent to it.",
                   d->model->name, i, name ? name : "?");
            free(name);
            return -1;
        }
        i++;
    }
    return 0;
}

/* routable -- a completion, an embedding or a compaction goes only to a provider of its own
 * API (OpenAI): none has an Anthropic counterpart to translate to; the engine makes no
 * embeddings (it has no pooling: its GGUFs are run as causal language models) and compacts
 * nothing (a compaction is the provider's own summary, in items only it reads back) */
static int routable(struct proxy_decision *d)
{
    const char *what = d->kind == PROXY_BODY_COMPLETION ? "/v1/completions"
                       : d->kind == PROXY_BODY_COMPACT  ? "/v1/responses/compact"
                                                        : "/v1/embeddings";

    if (d->kind == PROXY_BODY_CHAT)
        return 0;
    if (d->kind == PROXY_BODY_RESPONSE)
        return d->prov->type == CONFIG_PROVIDER_BUILTIN ? local(d) : 0;
    if (d->prov->type == CONFIG_PROVIDER_BUILTIN && d->kind == PROXY_BODY_COMPACT)
        return refuse(d, 400,
                      "This request is routed to the local model '%s', and the local model "
                      "cannot compact a conversation (/v1/responses/compact).",
                      d->model->name);
    if (d->prov->type == CONFIG_PROVIDER_ANTHROPIC)
        return refuse(d, 400,
                      "This request is routed to '%s/%s', an Anthropic provider, which has no %s; "
                      "route it to an OpenAI-type provider.",
                      d->prov->name, d->model->name, what);
    if (d->prov->type == CONFIG_PROVIDER_BUILTIN && d->kind == PROXY_BODY_EMBEDDING)
        return refuse(d, 400,
                      "This request is routed to the local model '%s', and the local model cannot "
                      "produce embeddings.",
                      d->model->name);
    return 0;
}

/* count_values -- the JSON values in body[0..len) (every string and member name, number,
 * literal, object and array: for valid JSON, the nodes its parse will have), counted up to
 * `stop` and no further. Read before the parse because the parse is the costliest step for
 * a body of many tiny values (2,000,000 numbers in 4 MiB: 33 ms): a body over the limit is
 * refused for the cost of this count, a memchr per string and a look at each byte between.
 * It decides nothing else: the strict parse reads every body that passes, and its count is
 * checked again (policy_decide). */
static size_t count_values(const char *body, size_t len, size_t stop)
{
    size_t n = 0, i = 0;
    int in_token = 0; /* the previous byte was part of a number or a literal */

    while (i < len && n <= stop) {
        unsigned char c = (unsigned char)body[i];

        if (c == '"') {
            size_t j = i + 1, k, bs;
            const char *q;

            n++;
            for (;;) { /* the closing quote: one not escaped by an odd run of backslashes */
                q = memchr(body + j, '"', len - j);
                if (!q)
                    return n; /* (unterminated: the parse refuses it) */
                k = (size_t)(q - body);
                for (bs = 0; k - bs > i + 1 && body[k - bs - 1] == '\\'; bs++)
                    ;
                if (bs % 2 == 0)
                    break;
                j = k + 1;
            }
            i = k + 1;
            in_token = 0;
            continue;
        }
        if (c == '{' || c == '[') {
            n++;
            in_token = 0;
        } else if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                   c == '-' || c == '+' || c == '.') {
            n += !in_token;
            in_token = 1;
        } else {
            in_token = 0;
        }
        i++;
    }
    return n;
}

/* too_many -- the 413 of a body over limits.max_body_values */
static int too_many(struct proxy_decision *d, size_t limit)
{
    return refuse(d, 413,
                  "The request body has more than the limit of %zu JSON values "
                  "(limits.max_body_values: each string, member name, number, literal, object "
                  "and array counts one).",
                  limit);
}

int proxy_decide(const struct config *cfg, const struct policy *pol, enum policy_api api,
                 const char *body, size_t len, const char *key_name, const char *team,
                 struct proxy_decision *d)
{
    return proxy_decide_body(cfg, pol, api, PROXY_BODY_CHAT, body, len, key_name, team, d);
}

int proxy_decide_body(const struct config *cfg, const struct policy *pol, enum policy_api api,
                      enum proxy_body kind, const char *body, size_t len, const char *key_name,
                      const char *team, struct proxy_decision *d)
{
    char err[256];
    /* (0: a config built by hand, without the loader's default) */
    size_t limit = cfg->limits.max_body_values > 0 ? (size_t)cfg->limits.max_body_values : 0;

    memset(d, 0, sizeof(*d));
    d->doc.root = JSON_NONE;
    d->api = api;
    d->kind = kind;
    if (!utf8_valid((const unsigned char *)body, len))
        return refuse(d, 400, "The request body is not valid UTF-8.");
    /* deciding costs time on the event loop for every value, however small (a body of
     * 100,000 one-letter parts): a body of more than the limit is refused before it is
     * parsed, as one of more than max_body_bytes is before it is read (docs/security.md);
     * the parse's own count is checked too. Every value but the first takes a byte and
     * follows a separator, so a body of fewer than 2 * limit bytes is not counted twice */
    if (limit && len / 2 + 1 > limit && count_values(body, len, limit) > limit)
        return too_many(d, limit);
    if (json_parse(&d->doc, body, len, err, sizeof(err)) < 0) {
        err[0] = (char)(err[0] >= 'a' && err[0] <= 'z' ? err[0] - 'a' + 'A' : err[0]);
        return refuse(d, 400, "%s", err);
    }
    if (limit && d->doc.n > limit)
        return too_many(d, limit);
    if (shapes(d) < 0)
        return -1;

    /* placeholders carry a suffix no client can guess, so one the client types itself is
     * never "restored" to a value redacted elsewhere in its request (a system prompt's) */
    static const char b32[] = "abcdefghijklmnopqrstuvwxyz234567";
    unsigned char rnd[PROXY_NONCE_LEN];
    rand_bytes(rnd, sizeof(rnd));
    for (size_t i = 0; i < PROXY_NONCE_LEN; i++)
        d->nonce[i] = b32[rnd[i] & 31];
    d->nonce[PROXY_NONCE_LEN] = '\0';
    struct policy_input in = {.api = api,
                              .body = body,
                              .len = len,
                              .doc = &d->doc,
                              .model = d->model_name,
                              .key_name = key_name,
                              .team = team,
                              .nonce = d->nonce};
    d->has_policy = 1;
    if (policy_decide(pol, &in, &d->policy) < 0)
        /* fail closed: what could not be scanned does not leave */
        return refuse(d, d->policy.too_large ? 413 : 400,
                      "The request could not be scanned, so it was refused: %s",
                      d->policy.error[0] ? d->policy.error : "scanner error");
    if (d->policy.verdict == POLICY_BLOCK)
        return refuse_block(d);
    d->model = d->policy.model ? config_model_find(cfg, d->policy.model) : NULL;
    if (!d->model)
        return refuse(d, 404, "The model '%s' does not exist on this gateway.", d->model_name);
    d->prov_index = d->model->provider_index;
    d->prov = &cfg->providers[d->prov_index];
    if (routable(d) < 0)
        return -1;
    if (d->prov->type != CONFIG_PROVIDER_BUILTIN &&
        proxy_outbound_build_ex(cfg, api,
                                kind == PROXY_BODY_RESPONSE || kind == PROXY_BODY_COMPACT
                                    ? PROXY_OUTBOUND_RESPONSES
                                    : 0,
                                &d->doc, &d->policy, &d->outbound, &d->outbound_len,
                                &d->outbound_flags, err, sizeof(err)) < 0)
        return refuse(d, 400, "%s", err);
    if (proxy_modified_summary(d, &d->modified) < 0)
        return refuse(d, 500, "Out of memory while deciding the request.");
    return 0;
}

const char *proxy_decision_verdict(const struct proxy_decision *d)
{
    if (!d->has_policy)
        return "none";
    switch (d->policy.verdict) {
    case POLICY_BLOCK:
        return "block";
    case POLICY_ROUTE:
        return "route";
    case POLICY_REDACT:
        return "redact";
    case POLICY_ALLOW:
        return "allow";
    }
    return "none";
}

void proxy_decision_deinit(struct proxy_decision *d)
{
    if (d->has_policy)
        policy_decision_deinit(&d->policy);
    d->has_policy = 0;
    json_doc_deinit(&d->doc);
    free(d->model_name);
    d->model_name = NULL;
    free(d->modified);
    d->modified = NULL;
    if (d->outbound) {
        sodium_memzero(d->outbound, d->outbound_len);
        free(d->outbound);
    }
    d->outbound = NULL;
    d->outbound_len = 0;
}
