/* translate.h -- answering in the caller's format when the target speaks the other. */
#ifndef AIRLOCK_PROXY_TRANSLATE_H
#define AIRLOCK_PROXY_TRANSLATE_H

#include <stddef.h>

#include <cJSON.h>

struct config_model;
struct proxy_req;

/* proxy_content_text -- the text of a message content: a string, null (""), or an
 * array of text parts/blocks, concatenated; *out is malloc'd. -1 (and *out NULL) when
 * the content holds anything but text (tool calls, images, ...) or memory runs out. */
int proxy_content_text(const cJSON *c, char **out);
/* 1 when the request's API differs from its target provider's */
int proxy_translating(const struct proxy_req *r);
/* the request in the other format, from a cJSON view of the one strict parse
 * (json_to_cjson); flags as proxy_outbound_build */
int proxy_translate_request(const struct config_model *m, int to_anthropic, const cJSON *in,
                            char **out, size_t *out_len, int *flags, char *err, size_t errlen);
/* one upstream SSE event in the provider's format → the client's events */
int proxy_translate_event(struct proxy_req *r, const char *event, size_t elen, const char *data,
                          size_t dlen);
/* A stream written in the client's API from text pieces (translated provider streams
 * and the built-in engine): open (idempotent) with r->tr_id / r->tr_model, text
 * (placeholders restored), close with r->tr_stop and r->usage -- unless the stream
 * already failed or was closed. */
void proxy_stream_open(struct proxy_req *r);
void proxy_stream_text(struct proxy_req *r, const char *text);
void proxy_stream_close(struct proxy_req *r);
/* a whole upstream JSON answer → the client's JSON answer (malloc'd) */
char *proxy_translate_response(struct proxy_req *r, const cJSON *j);
/* restore placeholders in a piece of text for `slot` (flush: end of the slot);
 * returns a malloc'd string (the input copied when not redacting) */
char *proxy_restore_piece(struct proxy_req *r, int slot, const char *text, int flush);
void proxy_write_event_json(struct proxy_req *r, const char *event, const cJSON *obj);

/* usage → cost with the model's prices */
double proxy_cost(const struct config_model *m, const struct proxy_usage *u);

/* JSON helpers */
void proxy_json_error_body(enum proxy_api api, int status, const char *type, const char *message,
                           char **out, size_t *len);

#endif
