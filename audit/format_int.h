/* format_int.h -- the on-disk audit record: framing, encoding, decoding (docs/audit.md).
 *
 * All integers are little-endian. A record is
 *   header (AUDIT_HDR_LEN bytes) | body (body_len bytes) | hash (32 bytes)
 * where hash = BLAKE2b-256(header || body) and header.prev_hash is the hash of the
 * record before it (zeros for the very first record of the log). Nothing here does
 * I/O; the reader, verifier, writer and fuzzer share these functions. */
#ifndef AIRLOCK_AUDIT_FORMAT_INT_H
#define AIRLOCK_AUDIT_FORMAT_INT_H

#include <stddef.h>
#include <stdint.h>

#include "audit/audit.h"

#define AUDIT_MAGIC "ALOG"
#define AUDIT_VERSION 1
#define AUDIT_HDR_LEN 60
#define AUDIT_HASH_LEN 32
#define AUDIT_REC_OVERHEAD (AUDIT_HDR_LEN + AUDIT_HASH_LEN)
/* No record body may exceed this; a larger length in a header is damage. */
#define AUDIT_MAX_BODY ((uint32_t)1 << 30)
#define AUDIT_MAX_BLOBS 64
#define AUDIT_FLAG_SEALED 0x0001

#define AUDIT_SEG_FLAG_SEALED 0x00000001u
#define AUDIT_SEGSTART_LEN 80            /* without the sealed part */
#define AUDIT_SEGSTART_SEALED_EXTRA 112  /* 32 auditor pub + 80 sealed key */
#define AUDIT_SEALED_KEY_LEN 80          /* crypto_box_SEALBYTES + 32 */
#define AUDIT_CKPT_LEN 113               /* seq 8, hash 32, time 8, reason 1, sig 64 */
#define AUDIT_CKPT_CONTEXT "airlock-audit-checkpoint-1"
#define AUDIT_NONCE_LEN 24
#define AUDIT_TAG_LEN 16

enum audit_ckpt_reason {
    AUDIT_CKPT_PERIODIC = 1,
    AUDIT_CKPT_ROTATION = 2,
    AUDIT_CKPT_SHUTDOWN = 3,
    AUDIT_CKPT_STARTUP = 4,
};

/* A decoded record: pointers borrow the buffer it was decoded from. */
struct audit_rec {
    enum audit_rec_type type; /* one of AUDIT_REC_TYPES: the decoder refuses others */
    uint16_t flags;
    uint32_t body_len;
    uint64_t seq;
    uint64_t time_ns;
    const uint8_t *header;     /* AUDIT_HDR_LEN bytes; prev_hash at header + 28 */
    const uint8_t *prev_hash;
    const uint8_t *body;
    const uint8_t *hash;
    size_t total;              /* AUDIT_REC_OVERHEAD + body_len */
};

enum audit_decode_status {
    AUDIT_DEC_OK = 0,
    AUDIT_DEC_TORN = 1, /* the buffer ends inside this record */
    AUDIT_DEC_BAD = 2,  /* complete but wrong: magic, version, length or hash */
};

/* audit_all_zero -- 1 when all n bytes are zero: the writer writes zeros ahead of its
 * records, and a segment whose remainder is zeros ends there (docs/audit.md). */
int audit_all_zero(const uint8_t *p, size_t n);

/* audit_rec_decode -- decode the record at buf[off..len). Checks framing and the
 * record's own hash, not the chain. On BAD/TORN, *why names the reason (static). */
int audit_rec_decode(const uint8_t *buf, size_t len, size_t off, struct audit_rec *rec,
                     const char **why);

/* audit_rec_find_valid -- 1 if a complete record with a matching hash starts at any
 * offset in buf[from..len): the difference between a torn tail and damage. */
int audit_rec_find_valid(const uint8_t *buf, size_t len, size_t from);

/* audit_hdr_encode -- fill hdr[AUDIT_HDR_LEN]. */
void audit_hdr_encode(uint8_t *hdr, enum audit_rec_type type, uint16_t flags, uint32_t body_len,
                      uint64_t seq, uint64_t time_ns, const uint8_t prev_hash[32]);

/* Parsed body of a request/response record; data pointers borrow the body. Sealed
 * blobs (record flag) are nonce || ciphertext || tag as stored. */
struct audit_body_blob {
    const char *name;
    uint16_t name_len;
    const uint8_t *data;
    uint64_t len;
};
struct audit_body {
    const char *meta;
    uint32_t meta_len;
    uint32_t n_blobs;
    struct audit_body_blob blobs[AUDIT_MAX_BLOBS];
};

/* audit_body_parse -- 0 if the body is exactly a meta + blobs layout, -1 otherwise. */
int audit_body_parse(const uint8_t *body, size_t len, struct audit_body *out, const char **why);

struct audit_segstart {
    uint32_t segment;
    uint32_t seg_flags;
    uint64_t prev_seq;
    const uint8_t *prev_hash;  /* 32 */
    const uint8_t *sign_pub;   /* 32 */
    const uint8_t *seal_pub;   /* 32, or NULL when not sealed */
    const uint8_t *sealed_key; /* AUDIT_SEALED_KEY_LEN, or NULL */
};
int audit_segstart_parse(const uint8_t *body, size_t len, struct audit_segstart *out,
                         const char **why);

struct audit_ckpt {
    uint64_t seq;
    const uint8_t *hash;
    uint64_t time_ns;
    uint8_t reason;
    const uint8_t *sig;
};
int audit_ckpt_parse(const uint8_t *body, size_t len, struct audit_ckpt *out, const char **why);

/* audit_ckpt_message -- the 75 bytes an Ed25519 checkpoint signature covers. */
#define AUDIT_CKPT_MSG_LEN (sizeof(AUDIT_CKPT_CONTEXT) - 1 + 49)
void audit_ckpt_message(uint8_t *msg, uint64_t seq, const uint8_t hash[32], uint64_t time_ns,
                        uint8_t reason);

/* Little-endian helpers. */
static inline void audit_put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static inline void audit_put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline void audit_put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint16_t audit_get16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}
static inline uint32_t audit_get32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}
static inline uint64_t audit_get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

#endif
