/* json.h -- the one strict reading of a client's JSON body.
 *
 * Every decision the gateway makes about a request body (routing, limits, budget, the
 * policy scan) and every rewrite of it (model rename, usage options, the redaction
 * splice, translation into the other API) reads this parse and nothing else: a second
 * parser with other rules is how a body means one thing to the gateway and another to
 * the provider. So the parse is strict where parsers disagree, and refuses rather than
 * guesses:
 *
 *   - RFC 8259 grammar; no trailing data; nesting at most JSON_MAX_DEPTH.
 *   - UTF-8 checked (common/utf8.h); a \u escape of a lone surrogate is refused.
 *   - U+0000, raw or escaped, is refused anywhere: C strings (cJSON, the engine, log
 *     lines) end at it, so a value or member name holding one reads differently to
 *     different readers.
 *   - A member name repeated in one object is refused at any depth: parsers differ on
 *     which duplicate wins (cJSON the first, the providers the last). Names are compared
 *     decoded, so "\u006dodel" is "model" for every reader.
 *
 * The result is a flat node array with byte spans into the body (which it borrows):
 * strings span the bytes between their quotes, other values their whole text. Objects'
 * children alternate name, value. Lookups compare decoded names of any length.
 *
 * Errors: json_parse returns 0, or -1 with one sentence in the error buffer that names
 * the problem and where it is ("messages[2].content" for a duplicate, the byte offset for
 * grammar). The doc must be released with json_doc_deinit either way. */
#ifndef AIRLOCK_JSON_H
#define AIRLOCK_JSON_H

#include <stddef.h>
#include <stdint.h>

#include <cJSON.h>

#define JSON_MAX_DEPTH 64
#define JSON_NONE UINT32_MAX
#define JSON_MAX_BODY ((size_t)UINT32_MAX - 1) /* spans are 32-bit */

enum json_type { JSON_OBJ, JSON_ARR, JSON_STR, JSON_NUM, JSON_TRUE, JSON_FALSE, JSON_NULL };

struct json_node {
    uint8_t type;         /* enum json_type */
    uint8_t esc;          /* strings: has escapes */
    uint32_t start, end;  /* strings: inside the quotes; others: the whole value */
    uint32_t child, next; /* containers: first child; siblings (objects: name, value, ...) */
};

struct json_doc {
    const char *body; /* borrowed */
    size_t len;
    struct json_node *nodes;
    size_t n, cap;
    uint32_t root;
};

/* json_parse -- parse body[0..len) into d (zeroed by the caller). See the top. */
int json_parse(struct json_doc *d, const char *body, size_t len, char *err, size_t errlen)
    __attribute__((warn_unused_result));
void json_doc_deinit(struct json_doc *d);

static inline const struct json_node *json_node(const struct json_doc *d, uint32_t id)
{
    return &d->nodes[id];
}

static inline int json_type(const struct json_doc *d, uint32_t id)
{
    return id == JSON_NONE ? -1 : d->nodes[id].type;
}

/* json_name_is -- whether string node `id` decodes to name[0..nlen). */
int json_name_is(const struct json_doc *d, uint32_t id, const char *name, size_t nlen);
/* json_get -- the value of member `name` of object `obj`, or JSON_NONE (also when obj is
 * JSON_NONE or not an object). Names are unique, so there is at most one. */
uint32_t json_get(const struct json_doc *d, uint32_t obj, const char *name);
/* json_str_eq -- string node `id` decodes to the NUL-terminated s */
int json_str_eq(const struct json_doc *d, uint32_t id, const char *s);
/* json_str_dup -- the decoded string (malloc'd, NUL-terminated: the parse refused NULs),
 * *len set when len is not NULL; NULL when id is not a string or memory ran out. */
char *json_str_dup(const struct json_doc *d, uint32_t id, size_t *len);
/* json_number -- a number node's value; 0 when id is a number, -1 otherwise */
int json_number(const struct json_doc *d, uint32_t id, double *out);
/* json_decode_escape -- decode the (validated) escape at b into o (4 bytes room);
 * returns the raw length, the decoded length in *dl */
size_t json_decode_escape(const unsigned char *b, char *o, size_t *dl);
/* json_to_cjson -- a cJSON tree of node id, for code that builds from it (translation,
 * the engine's messages): the same values this parse read, not a second parse. NULL
 * when memory runs out. Numbers become cJSON numbers. */
cJSON *json_to_cjson(const struct json_doc *d, uint32_t id);

/* Iterate: k/v are uint32_t node ids. */
#define JSON_FOR_MEMBERS(d, obj, k, v)                                                             \
    for (uint32_t k = (d)->nodes[obj].child, v = k == JSON_NONE ? JSON_NONE : (d)->nodes[k].next;  \
         k != JSON_NONE;                                                                           \
         k = (d)->nodes[v].next, v = k == JSON_NONE ? JSON_NONE : (d)->nodes[k].next)
#define JSON_FOR_ITEMS(d, arr, v)                                                                  \
    for (uint32_t v = (d)->nodes[arr].child; v != JSON_NONE; v = (d)->nodes[v].next)

#endif
