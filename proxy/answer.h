/* answer.h -- the answer to the client: relaying a provider's, or framing the engine's.
 *
 * Provider answers are relayed as they arrive (SSE event by event); on the way usage is
 * read, placeholders restored, and a usage chunk the client did not ask for removed. */
#ifndef AIRLOCK_PROXY_ANSWER_H
#define AIRLOCK_PROXY_ANSWER_H

#include <stddef.h>

#include <cJSON.h>

#include "engine/engine.h"

struct config_model;
struct proxy_req;
struct proxy_usage;

/* the upstream answered status/headers */
void proxy_answer_upstream_head(struct proxy_req *r, int status, const char *content_type);
/* a piece of upstream body */
void proxy_answer_upstream_body(struct proxy_req *r, const char *data, size_t len);
/* the upstream body is complete */
void proxy_answer_upstream_done(struct proxy_req *r);
/* the upstream failed; `timeout` chooses 504 over 502 */
void proxy_answer_upstream_failed(struct proxy_req *r, int timeout, const char *why);
/* builtin engine */
void proxy_answer_engine_start(struct proxy_req *r);
/* proxy_answer_engine_text -- relay a piece of the local model's answer; -1 when memory
 * ran out (the answer would have a hole: the caller ends the request). */
int proxy_answer_engine_text(struct proxy_req *r, const char *text, size_t len)
    __attribute__((warn_unused_result));
void proxy_answer_engine_done(struct proxy_req *r, const struct engine_result *res);

/* 1 when the request's provider speaks another API than its client */
int proxy_translating(const struct proxy_req *r);
/* a piece of answer text for the client's stream: placeholders restored, then written in
 * the client's format (opening the stream if need be) */
void proxy_stream_text(struct proxy_req *r, const char *text);
/* close the client's stream (its stop reason r->tr_stop, usage r->usage) unless it
 * already failed or was closed */
void proxy_stream_close(struct proxy_req *r);

/* proxy_mask_provider_keys -- overwrite with '*' every occurrence in buf of a configured
 * provider's api_key (PROXY_MIN_MASKED_KEY bytes or longer), in place, same length: a
 * provider that echoes the credential it was sent (an upstream 401's message) must not
 * hand it to the client or the audit. Returns how many were masked. This is the one
 * deliberate change to the byte-exact streams (SPEC §5). */
#define PROXY_MIN_MASKED_KEY 8
struct config;
size_t proxy_mask_provider_keys(const struct config *cfg, char *buf, size_t len);

/* usage -> cost with the model's prices */
double proxy_cost(const struct config_model *m, const struct proxy_usage *u);

#endif
