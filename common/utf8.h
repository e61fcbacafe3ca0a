/* utf8.h -- strict UTF-8 (RFC 3629): the one validator the gateway, the policy
 * extractor, the JSON writer, the audit reader and the engine's text stream share.
 * Overlong forms, UTF-16 surrogates (U+D800..U+DFFF), code points past U+10FFFF and
 * truncated sequences are invalid. */
#ifndef AIRLOCK_UTF8_H
#define AIRLOCK_UTF8_H

#include <stddef.h>

/* utf8_seq_len -- length (1..4) of the valid UTF-8 sequence at s, with n >= 1 bytes
 * left; 0 when the bytes there are not one */
static inline size_t utf8_seq_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0], lo = 0x80, hi = 0xBF;
    size_t need, i;

    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        need = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        if (c == 0xE0)
            lo = 0xA0; /* overlong below U+0800 */
        else if (c == 0xED)
            hi = 0x9F; /* surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        if (c == 0xF0)
            lo = 0x90; /* overlong below U+10000 */
        else if (c == 0xF4)
            hi = 0x8F; /* past U+10FFFF */
    } else {
        return 0; /* a continuation byte, C0/C1 (overlong) or F5..FF */
    }
    if (n < need || s[1] < lo || s[1] > hi)
        return 0;
    for (i = 2; i < need; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    return need;
}

/* utf8_valid -- 1 when s[0..n) is all valid UTF-8 (ASCII runs are checked 8 bytes at
 * a time: request bodies are mostly ASCII) */
int utf8_valid(const unsigned char *s, size_t n);
/* utf8_sanitize -- make the NUL-terminated s valid UTF-8 in place: every byte that does not
 * begin a valid sequence (a multi-byte character cut by a bounded snprintf, say) becomes
 * '?'. Returns how many were replaced. */
size_t utf8_sanitize(char *s);

#endif
