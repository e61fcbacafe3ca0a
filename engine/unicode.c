/* unicode.c -- category lookup (fast table for the BMP), UTF-8 codec, GPT-2 byte map. */
#include "engine/unicode.h"

#include <pthread.h>

static uint8_t bmp_flags[0x10000];
static pthread_once_t bmp_once = PTHREAD_ONCE_INIT;

static const uint32_t whitespace_cps[] = {0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0x85, 0xA0, 0x1680,
                                          0x2000, 0x2001, 0x2002, 0x2003, 0x2004, 0x2005, 0x2006,
                                          0x2007, 0x2008, 0x2009, 0x200A, 0x2028, 0x2029, 0x202F,
                                          0x205F, 0x3000};

static int in_ranges(const uint32_t (*r)[2], size_t n, uint32_t cp)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < r[mid][0])
            hi = mid;
        else if (cp > r[mid][1])
            lo = mid + 1;
        else
            return 1;
    }
    return 0;
}

static unsigned slow_flags(uint32_t cp)
{
    unsigned f = 0;
    if (in_ranges(unicode_letter_ranges, unicode_letter_ranges_n, cp))
        f |= UNICODE_LETTER;
    if (in_ranges(unicode_number_ranges, unicode_number_ranges_n, cp))
        f |= UNICODE_NUMBER;
    if (in_ranges(unicode_punct_ranges, unicode_punct_ranges_n, cp))
        f |= UNICODE_PUNCT;
    for (size_t i = 0; i < sizeof(whitespace_cps) / sizeof(whitespace_cps[0]); i++)
        if (whitespace_cps[i] == cp)
            f |= UNICODE_WHITESPACE;
    return f;
}

static void build_bmp(void)
{
    for (uint32_t cp = 0; cp < 0x10000; cp++)
        bmp_flags[cp] = (uint8_t)slow_flags(cp);
}

unsigned unicode_flags(uint32_t cp)
{
    if (cp < 0x10000) {
        pthread_once(&bmp_once, build_bmp);
        return bmp_flags[cp];
    }
    return cp < 0x110000 ? slow_flags(cp) : 0;
}

size_t unicode_seq_len(unsigned char lead)
{
    static const uint8_t lookup[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return lookup[lead >> 4];
}

uint32_t unicode_decode(const char *str, size_t n, size_t *i)
{
    const unsigned char *s = (const unsigned char *)str + *i;
    size_t left = n - *i;
    unsigned c = s[0];
    if (!(c & 0x80)) {
        *i += 1;
        return c;
    }
    if ((c & 0xE0) == 0xC0 && left >= 2 && (s[1] & 0xC0) == 0x80) {
        *i += 2;
        return ((c & 0x1Fu) << 6) | (s[1] & 0x3Fu);
    }
    if ((c & 0xF0) == 0xE0 && left >= 3 && (s[1] & 0xC0) == 0x80 && (s[2] & 0xC0) == 0x80) {
        *i += 3;
        return ((c & 0x0Fu) << 12) | ((s[1] & 0x3Fu) << 6) | (s[2] & 0x3Fu);
    }
    if ((c & 0xF8) == 0xF0 && left >= 4 && (s[1] & 0xC0) == 0x80 && (s[2] & 0xC0) == 0x80 &&
        (s[3] & 0xC0) == 0x80) {
        *i += 4;
        return ((c & 0x07u) << 18) | ((s[1] & 0x3Fu) << 12) | ((s[2] & 0x3Fu) << 6) |
               (s[3] & 0x3Fu);
    }
    *i += 1;
    return 0xFFFD;
}

size_t unicode_encode(uint32_t cp, char *out)
{
    if (cp <= 0x7F) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp <= 0x7FF) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp <= 0xFFFF) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | ((cp >> 18) & 0x07));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

static int printable_byte(unsigned b)
{
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
}

static uint16_t byte_cp[256];
static pthread_once_t byte_once = PTHREAD_ONCE_INIT;

static void build_byte_cp(void)
{
    /* printable bytes stand for themselves; the others, in order, for 256, 257, ... */
    uint16_t n = 0;
    for (unsigned b = 0; b < 256; b++)
        byte_cp[b] = printable_byte(b) ? (uint16_t)b : (uint16_t)(256 + n++);
}

uint32_t unicode_byte_to_cp(uint8_t b)
{
    pthread_once(&byte_once, build_byte_cp);
    return byte_cp[b];
}

int unicode_cp_to_byte(uint32_t cp)
{
    if (cp < 256)
        return printable_byte(cp) ? (int)cp : -1;
    if (cp >= 256 + 68)
        return -1;
    uint32_t n = 0;
    for (unsigned x = 0; x < 256; x++) {
        if (!printable_byte(x)) {
            if (n == cp - 256)
                return (int)x;
            n++;
        }
    }
    return -1;
}
