/* show.c -- `airlock audit show`: each record as one JSON object, payloads as text
 * or base64, sealed payloads opened with the auditor's key (docs/audit.md). */
#include "audit/audit.h"
#include "audit/audit_int.h"
#include "common/utf8.h"

#include <cJSON.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

struct show {
    const char *id;
    uint8_t *seal_sk; /* sodium_malloc, 32; NULL without --key */
    uint8_t seal_pk[32];
    uint8_t *seg_key; /* sodium_malloc, 32 */
    uint32_t seg_key_for; /* segment whose key seg_key holds; 0: none */
    int seg_key_ok;
    void (*line)(void *ud, const char *json);
    void *ud;
    int oom;
    uint64_t undecryptable;
};

/* utf8_text -- 1 when data is valid UTF-8 without NUL (so it can be a JSON string). */
static int utf8_text(const uint8_t *s, size_t n)
{
    return !memchr(s, 0, n) && utf8_valid(s, n);
}

static int add_hex(cJSON *o, const char *name, const uint8_t *b, size_t n)
{
    char hex[2 * 64 + 1];

    if (n > 64)
        return -1;
    sodium_bin2hex(hex, sizeof(hex), b, n);
    return cJSON_AddStringToObject(o, name, hex) ? 0 : -1;
}

/* add_payload -- {"name","bytes","text"|"base64"} into arr. */
static int add_payload(cJSON *blob, const uint8_t *data, size_t len)
{
    char *tmp;
    size_t b64;
    int ok;

    if (!cJSON_AddNumberToObject(blob, "bytes", (double)len))
        return -1;
    if (utf8_text(data, len)) {
        tmp = malloc(len + 1);
        if (!tmp)
            return -1;
        memcpy(tmp, data, len);
        tmp[len] = '\0';
        ok = cJSON_AddStringToObject(blob, "text", tmp) != NULL;
        free(tmp);
        return ok ? 0 : -1;
    }
    b64 = sodium_base64_encoded_len(len, sodium_base64_VARIANT_ORIGINAL);
    tmp = malloc(b64);
    if (!tmp)
        return -1;
    sodium_bin2base64(tmp, b64, data, len, sodium_base64_VARIANT_ORIGINAL);
    ok = cJSON_AddStringToObject(blob, "base64", tmp) != NULL;
    free(tmp);
    return ok ? 0 : -1;
}

static int segment_key(struct show *s, const struct audit_walk_ctx *ctx)
{
    if (s->seg_key_for == ctx->segment)
        return s->seg_key_ok ? 0 : -1;
    s->seg_key_for = ctx->segment;
    s->seg_key_ok = 0;
    if (!s->seal_sk || !ctx->segstart->sealed_key)
        return -1;
    if (sodium_memcmp(ctx->segstart->seal_pub, s->seal_pk, 32) != 0)
        return -1; /* sealed to another auditor */
    if (crypto_box_seal_open(s->seg_key, ctx->segstart->sealed_key, AUDIT_SEALED_KEY_LEN,
                             s->seal_pk, s->seal_sk) != 0)
        return -1;
    s->seg_key_ok = 1;
    return 0;
}

static int add_blobs(struct show *s, cJSON *o, const struct audit_rec *rec,
                     const struct audit_body *b, const struct audit_walk_ctx *ctx)
{
    cJSON *arr = cJSON_AddArrayToObject(o, "blobs");
    uint32_t i;

    if (!arr)
        return -1;
    for (i = 0; i < b->n_blobs; i++) {
        const struct audit_body_blob *bl = &b->blobs[i];
        cJSON *blob = cJSON_CreateObject();
        char name[256];
        size_t nl = bl->name_len < sizeof(name) - 1 ? bl->name_len : sizeof(name) - 1;

        if (!blob || !cJSON_AddItemToArray(arr, blob))
            return -1;
        memcpy(name, bl->name, nl);
        name[nl] = '\0';
        if (!utf8_text((const uint8_t *)name, nl))
            snprintf(name, sizeof(name), "?");
        if (!cJSON_AddStringToObject(blob, "name", name))
            return -1;
        if (!(rec->flags & AUDIT_FLAG_SEALED)) {
            if (add_payload(blob, bl->data, (size_t)bl->len) != 0)
                return -1;
            continue;
        }
        {
            size_t plain_len = (size_t)bl->len - AUDIT_NONCE_LEN - AUDIT_TAG_LEN;
            uint8_t *ad = NULL, *plain = NULL;
            unsigned long long pl = 0;
            int ok = 0;

            if (segment_key(s, ctx) == 0) {
                ad = malloc(AUDIT_HDR_LEN + 2 + (size_t)bl->name_len);
                plain = malloc(plain_len + 1);
                if (!ad || !plain) {
                    free(ad);
                    free(plain);
                    return -1;
                }
                memcpy(ad, rec->header, AUDIT_HDR_LEN);
                audit_put16(ad + AUDIT_HDR_LEN, bl->name_len);
                memcpy(ad + AUDIT_HDR_LEN + 2, bl->name, bl->name_len);
                ok = crypto_aead_xchacha20poly1305_ietf_decrypt(
                         plain, &pl, NULL, bl->data + AUDIT_NONCE_LEN,
                         bl->len - AUDIT_NONCE_LEN, ad, AUDIT_HDR_LEN + 2 + (size_t)bl->name_len,
                         bl->data, s->seg_key) == 0;
            }
            if (ok) {
                if (add_payload(blob, plain, (size_t)pl) != 0 ||
                    !cJSON_AddBoolToObject(blob, "sealed", 1)) {
                    free(ad);
                    free(plain);
                    return -1;
                }
            } else {
                if (!cJSON_AddBoolToObject(blob, "sealed", 1) ||
                    !cJSON_AddNumberToObject(blob, "bytes", (double)plain_len))
                    return -1;
                if (s->seal_sk) {
                    s->undecryptable++;
                    if (!cJSON_AddStringToObject(blob, "error",
                                                 "cannot be opened with the given key"))
                        return -1;
                }
            }
            free(ad);
            free(plain);
        }
    }
    return 0;
}

static int show_cb(void *ud, const struct audit_rec *rec, const struct audit_walk_ctx *ctx)
{
    static const char *reasons[] = {"?", "periodic", "rotation", "shutdown", "startup"};
    struct show *s = ud;
    struct audit_body b;
    cJSON *o = NULL, *meta = NULL;
    const char *why;
    char tbuf[96], *out;
    time_t secs = (time_t)(rec->time_ns / 1000000000ull);
    struct tm tm;

    if (audit_rec_type_is_event(rec->type)) {
        if (audit_body_parse(rec->body, rec->body_len, &b, &why) != 0)
            return 0; /* the walker checked it */
        meta = cJSON_ParseWithLength(b.meta, b.meta_len);
        if (s->id) {
            const cJSON *idv = meta ? cJSON_GetObjectItemCaseSensitive(meta, "id") : NULL;
            if (!cJSON_IsString(idv) || strcmp(idv->valuestring, s->id) != 0) {
                cJSON_Delete(meta);
                return 0;
            }
        }
    } else if (s->id) {
        return 0;
    }
    o = cJSON_CreateObject();
    if (!o)
        goto oom;
    gmtime_r(&secs, &tm);
    snprintf(tbuf, sizeof(tbuf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (int)(rec->time_ns / 1000000ull % 1000));
    if (!cJSON_AddNumberToObject(o, "seq", (double)rec->seq) ||
        !cJSON_AddStringToObject(o, "type", audit_rec_type_name(rec->type)) ||
        !cJSON_AddStringToObject(o, "time", tbuf) ||
        !cJSON_AddStringToObject(o, "segment", ctx->segment_name) ||
        !cJSON_AddNumberToObject(o, "offset", (double)ctx->offset) ||
        add_hex(o, "hash", rec->hash, 32) != 0)
        goto oom;
    if (rec->type == AUDIT_REC_SEGSTART) {
        struct audit_segstart ss;
        if (audit_segstart_parse(rec->body, rec->body_len, &ss, &why) == 0) {
            if (!cJSON_AddNumberToObject(o, "prev_seq", (double)ss.prev_seq) ||
                add_hex(o, "prev_hash", ss.prev_hash, 32) != 0 ||
                add_hex(o, "sign_pub", ss.sign_pub, 32) != 0 ||
                !cJSON_AddBoolToObject(o, "sealed", ss.sealed_key != NULL) ||
                (ss.seal_pub && add_hex(o, "seal_pub", ss.seal_pub, 32) != 0))
                goto oom;
        }
    } else if (rec->type == AUDIT_REC_CHECKPOINT) {
        struct audit_ckpt ck;
        if (audit_ckpt_parse(rec->body, rec->body_len, &ck, &why) == 0) {
            if (!cJSON_AddNumberToObject(o, "signs_seq", (double)ck.seq) ||
                add_hex(o, "signs_hash", ck.hash, 32) != 0 ||
                !cJSON_AddStringToObject(o, "reason", reasons[ck.reason]) ||
                add_hex(o, "signature", ck.sig, 64) != 0)
                goto oom;
        }
    } else if (audit_rec_type_is_event(rec->type)) {
        if (meta) {
            cJSON_AddItemToObject(o, "meta", meta);
            meta = NULL;
        } else {
            cJSON *mr = cJSON_AddObjectToObject(o, "meta_raw");
            if (!mr || add_payload(mr, (const uint8_t *)b.meta, b.meta_len) != 0)
                goto oom;
        }
        if (add_blobs(s, o, rec, &b, ctx) != 0)
            goto oom;
    }
    out = cJSON_PrintUnformatted(o);
    if (!out)
        goto oom;
    s->line(s->ud, out);
    free(out);
    cJSON_Delete(o);
    return 0;
oom:
    cJSON_Delete(meta);
    cJSON_Delete(o);
    s->oom = 1;
    return 1;
}

int audit_show(const char *dir, const char *id, const char *seal_key_path,
               void (*line)(void *ud, const char *json), void *ud, struct audit_report *rep,
               char *err, size_t errlen)
{
    struct show s;
    struct stat st;
    int rc = -1;

    memset(&s, 0, sizeof(s));
    s.id = id;
    s.line = line;
    s.ud = ud;
    if (sodium_init() < 0) {
        snprintf(err, errlen, "libsodium failed to initialise");
        return -1;
    }
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "%s: not an audit directory", dir);
        return -1;
    }
    if (seal_key_path) {
        s.seal_sk = sodium_malloc(32);
        s.seg_key = sodium_malloc(32);
        if (!s.seal_sk || !s.seg_key) {
            snprintf(err, errlen, "out of memory");
            goto out;
        }
        if (audit_key_read(seal_key_path, AUDIT_LABEL_SEAL_KEY, s.seal_sk, 32, err, errlen) != 0)
            goto out;
        crypto_scalarmult_base(s.seal_pk, s.seal_sk);
    }
    if (audit_walk_dir(dir, NULL, show_cb, &s, rep, err, errlen) != 0)
        goto out;
    if (s.oom) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    rep->undecryptable = s.undecryptable;
    rc = 0;
out:
    sodium_free(s.seal_sk);
    sodium_free(s.seg_key);
    return rc;
}
