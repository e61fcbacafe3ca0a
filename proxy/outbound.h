/* outbound.h -- build the exact body that leaves the gateway for a decision.
 *
 * Pure and shared by the request pipeline and `airlock policy test`, so that the
 * CLI prints byte for byte what the gateway would send. Starting from the body as
 * received (or the redacted body of the decision), it renames the model to the
 * target's upstream name, translates between the OpenAI and Anthropic formats when
 * the target provider speaks the other one, and for OpenAI streams asks for usage
 * (stream_options.include_usage). A decision that sends nothing (block, builtin
 * engine) has no outbound body: *out is NULL and 0 is returned. */
#ifndef AIRLOCK_PROXY_OUTBOUND_H
#define AIRLOCK_PROXY_OUTBOUND_H

#include <stddef.h>

#include "config/config.h"
#include "policy/policy.h"

/* proxy_outbound_build -- *out is malloc'd (caller frees) or NULL. flags_out
 * (may be NULL) gets PROXY_OUTBOUND_* bits. Returns 0, or -1 with a one-sentence
 * reason in err when the body cannot be rebuilt (malformed JSON). */
#define PROXY_OUTBOUND_ADDED_USAGE 1 /* include_usage was added: strip the usage chunk */

struct json_doc;
/* proxy_outbound_build_ex -- as proxy_outbound_build, for a body of the Responses API when
 * `as` is PROXY_OUTBOUND_RESPONSES: no stream_options (usage comes in response.completed),
 * and a translation to Anthropic reads it as a response (openai_responses.c) */
#define PROXY_OUTBOUND_RESPONSES 1
int proxy_outbound_build_ex(const struct config *cfg, enum policy_api api, int as,
                            const struct json_doc *doc, const struct policy_decision *d, char **out,
                            size_t *out_len, int *flags_out, char *err, size_t errlen);
int proxy_outbound_build(const struct config *cfg, enum policy_api api, const struct json_doc *doc,
                         const struct policy_decision *d, char **out, size_t *out_len,
                         int *flags_out, char *err, size_t errlen);

#endif
