/* format.c -- encode and decode audit records (layout in format_int.h, docs/audit.md). */
#include "audit/format_int.h"

#include <sodium.h>
#include <string.h>

/* The types' names and kinds, indexed by the type byte (AUDIT_REC_TYPES, audit.h). */
static const struct {
    const char *name;
    int event;
} rec_types[] = {
#define REC_TYPE_ROW(sym, value, name, event) [sym] = {name, event},
    AUDIT_REC_TYPES(REC_TYPE_ROW)
#undef REC_TYPE_ROW
};

const char *audit_rec_type_name(int type)
{
    if (type < 0 || (size_t)type >= sizeof(rec_types) / sizeof(rec_types[0]))
        return NULL;
    return rec_types[type].name;
}

int audit_rec_type_is_event(int type)
{
    return audit_rec_type_name(type) != NULL && rec_types[type].event;
}

void audit_hdr_encode(uint8_t *hdr, enum audit_rec_type type, uint16_t flags, uint32_t body_len,
                      uint64_t seq, uint64_t time_ns, const uint8_t prev_hash[32])
{
    memcpy(hdr, AUDIT_MAGIC, 4);
    hdr[4] = AUDIT_VERSION;
    hdr[5] = (uint8_t)type;
    audit_put16(hdr + 6, flags);
    audit_put32(hdr + 8, body_len);
    audit_put64(hdr + 12, seq);
    audit_put64(hdr + 20, time_ns);
    memcpy(hdr + 28, prev_hash, 32);
}

/* The framing checks are ordered so that a buffer that simply ends early is TORN
 * and anything that cannot be a record we wrote is BAD. */
int audit_all_zero(const uint8_t *p, size_t n)
{
    uint64_t acc = 0;
    size_t i = 0;

    /* 8 bytes at a time: recovery and verify run this over up to a megabyte */
    for (; i + 8 <= n; i += 8) {
        uint64_t v;
        memcpy(&v, p + i, 8);
        acc |= v;
        if (acc)
            return 0;
    }
    for (; i < n; i++)
        acc |= p[i];
    return acc == 0;
}

int audit_rec_decode(const uint8_t *buf, size_t len, size_t off, struct audit_rec *rec,
                     const char **why)
{
    uint8_t h[AUDIT_HASH_LEN];
    crypto_generichash_state st;
    const uint8_t *p;
    size_t avail;

    *why = NULL;
    if (off >= len) {
        *why = "end of data";
        return AUDIT_DEC_TORN;
    }
    avail = len - off;
    p = buf + off;
    if (memcmp(p, AUDIT_MAGIC, avail < 4 ? avail : 4) != 0) {
        *why = "bad magic";
        return AUDIT_DEC_BAD;
    }
    if (avail < AUDIT_HDR_LEN) {
        *why = "record header cut short";
        return AUDIT_DEC_TORN;
    }
    if (p[4] != AUDIT_VERSION) {
        *why = "unknown format version";
        return AUDIT_DEC_BAD;
    }
    if (!audit_rec_type_name(p[5])) {
        *why = "unknown record type";
        return AUDIT_DEC_BAD;
    }
    rec->type = (enum audit_rec_type)p[5];
    rec->flags = audit_get16(p + 6);
    rec->body_len = audit_get32(p + 8);
    rec->seq = audit_get64(p + 12);
    rec->time_ns = audit_get64(p + 20);
    rec->header = p;
    rec->prev_hash = p + 28;
    rec->body = p + AUDIT_HDR_LEN;
    if (rec->body_len > AUDIT_MAX_BODY) {
        *why = "record length out of range";
        return AUDIT_DEC_BAD;
    }
    rec->total = (size_t)AUDIT_REC_OVERHEAD + rec->body_len;
    rec->hash = p + AUDIT_HDR_LEN + rec->body_len;
    if (avail < rec->total) {
        *why = "record cut short";
        return AUDIT_DEC_TORN;
    }
    crypto_generichash_init(&st, NULL, 0, AUDIT_HASH_LEN);
    crypto_generichash_update(&st, p, AUDIT_HDR_LEN + (size_t)rec->body_len);
    crypto_generichash_final(&st, h, AUDIT_HASH_LEN);
    if (sodium_memcmp(h, rec->hash, AUDIT_HASH_LEN) != 0) {
        *why = "record hash does not match its contents";
        return AUDIT_DEC_BAD;
    }
    return AUDIT_DEC_OK;
}

int audit_rec_find_valid(const uint8_t *buf, size_t len, size_t from)
{
    struct audit_rec rec;
    const char *why;
    const uint8_t *p;
    size_t off = from;

    while (off + AUDIT_REC_OVERHEAD <= len) {
        p = memchr(buf + off, AUDIT_MAGIC[0], len - off);
        if (!p)
            return 0;
        off = (size_t)(p - buf);
        if (audit_rec_decode(buf, len, off, &rec, &why) == AUDIT_DEC_OK)
            return 1;
        off++;
    }
    return 0;
}

int audit_body_parse(const uint8_t *body, size_t len, struct audit_body *out, const char **why)
{
    size_t off = 0;
    uint32_t i;

    if (len < 8) {
        *why = "record body too short";
        return -1;
    }
    out->meta_len = audit_get32(body);
    off = 4;
    if (out->meta_len > len - off || len - off - out->meta_len < 4) {
        *why = "metadata length out of range";
        return -1;
    }
    out->meta = (const char *)body + off;
    off += out->meta_len;
    out->n_blobs = audit_get32(body + off);
    off += 4;
    if (out->n_blobs > AUDIT_MAX_BLOBS) {
        *why = "too many payloads";
        return -1;
    }
    for (i = 0; i < out->n_blobs; i++) {
        struct audit_body_blob *b = &out->blobs[i];
        if (len - off < 2) {
            *why = "payload name length out of range";
            return -1;
        }
        b->name_len = audit_get16(body + off);
        off += 2;
        if (b->name_len > len - off || len - off - b->name_len < 8) {
            *why = "payload name out of range";
            return -1;
        }
        b->name = (const char *)body + off;
        off += b->name_len;
        b->len = audit_get64(body + off);
        off += 8;
        if (b->len > len - off) {
            *why = "payload length out of range";
            return -1;
        }
        b->data = body + off;
        off += (size_t)b->len;
    }
    if (off != len) {
        *why = "trailing bytes after the last payload";
        return -1;
    }
    return 0;
}

int audit_segstart_parse(const uint8_t *body, size_t len, struct audit_segstart *out,
                         const char **why)
{
    if (len < AUDIT_SEGSTART_LEN) {
        *why = "segment-start record too short";
        return -1;
    }
    out->segment = audit_get32(body);
    out->seg_flags = audit_get32(body + 4);
    out->prev_seq = audit_get64(body + 8);
    out->prev_hash = body + 16;
    out->sign_pub = body + 48;
    out->seal_pub = NULL;
    out->sealed_key = NULL;
    if (out->seg_flags & ~AUDIT_SEG_FLAG_SEALED) {
        *why = "segment-start record has unknown flags";
        return -1;
    }
    if (out->seg_flags & AUDIT_SEG_FLAG_SEALED) {
        if (len != AUDIT_SEGSTART_LEN + AUDIT_SEGSTART_SEALED_EXTRA) {
            *why = "sealed segment-start record has the wrong length";
            return -1;
        }
        out->seal_pub = body + AUDIT_SEGSTART_LEN;
        out->sealed_key = body + AUDIT_SEGSTART_LEN + 32;
    } else if (len != AUDIT_SEGSTART_LEN) {
        *why = "segment-start record has the wrong length";
        return -1;
    }
    return 0;
}

int audit_ckpt_parse(const uint8_t *body, size_t len, struct audit_ckpt *out, const char **why)
{
    if (len != AUDIT_CKPT_LEN) {
        *why = "checkpoint record has the wrong length";
        return -1;
    }
    out->seq = audit_get64(body);
    out->hash = body + 8;
    out->time_ns = audit_get64(body + 40);
    out->reason = body[48];
    out->sig = body + 49;
    if (out->reason < AUDIT_CKPT_PERIODIC || out->reason > AUDIT_CKPT_STARTUP) {
        *why = "checkpoint record has an unknown reason";
        return -1;
    }
    return 0;
}

void audit_ckpt_message(uint8_t *msg, uint64_t seq, const uint8_t hash[32], uint64_t time_ns,
                        uint8_t reason)
{
    size_t n = sizeof(AUDIT_CKPT_CONTEXT) - 1;

    memcpy(msg, AUDIT_CKPT_CONTEXT, n);
    audit_put64(msg + n, seq);
    memcpy(msg + n + 8, hash, 32);
    audit_put64(msg + n + 40, time_ns);
    msg[n + 48] = reason;
}
