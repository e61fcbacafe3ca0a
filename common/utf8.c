/* utf8.c -- see utf8.h */
#include "common/utf8.h"

#include <stdint.h>
#include <string.h>

int utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0, k;

    while (i < n) {
        while (n - i >= 8) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (w & 0x8080808080808080ull)
                break;
            i += 8;
        }
        while (i < n && s[i] < 0x80)
            i++;
        if (i == n)
            break;
        if (!(k = utf8_seq_len(s + i, n - i)))
            return 0;
        i += k;
    }
    return 1;
}

size_t utf8_sanitize(char *s)
{
    size_t n = strlen(s), i = 0, bad = 0;

    while (i < n) {
        size_t l = utf8_seq_len((const unsigned char *)s + i, n - i);
        if (l == 0) {
            s[i++] = '?';
            bad++;
        } else {
            i += l;
        }
    }
    return bad;
}
