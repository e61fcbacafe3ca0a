/* normalize.c -- the characters detection sees (policy_int.h: policy_norm_cp).
 *
 * A value can be hidden from a detector without changing what a model reads: a
 * full-width or Arabic-Indic digit, a zero-width space or soft hyphen inside a key, a
 * Cyrillic letter in place of a Latin one, an '@' written `%40`, `&#64;` or `﹫`. Before
 * scanning, each code point is mapped here to the ASCII character it stands for, dropped
 * when it is invisible, or kept. The mapping is one code point to at most one byte, so a
 * finding in the normalised text maps back to exact original bytes (policy/extract.c keeps
 * the runs) and redaction removes the whole original value, invisible characters
 * included. This is NFKC where NFKC helps (full-width and small forms, super- and
 * subscript digits, mathematical letters and digits, spaces), plus what NFKC leaves alone
 * but an attacker does not: other scripts' decimal digits, invisible format characters,
 * Latin look-alikes in Cyrillic and Greek, dash and space kinds. */
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "policy/policy_int.h"

struct range {
    unsigned lo, hi;
};

/* invisible: format characters, joiners, variation selectors, tags */
static const struct range invisible[] = {
    {0x00AD, 0x00AD},   {0x034F, 0x034F},   {0x061C, 0x061C}, {0x115F, 0x1160}, {0x17B4, 0x17B5},
    {0x180B, 0x180F},   {0x200B, 0x200F},   {0x202A, 0x202E}, {0x2060, 0x2064}, {0x2066, 0x206F},
    {0x3164, 0x3164},   {0xFE00, 0xFE0F},   {0xFEFF, 0xFEFF}, {0xFFA0, 0xFFA0}, {0x1D173, 0x1D17A},
    {0xE0000, 0xE007F}, {0xE0100, 0xE01EF},
};

/* first code points of runs of ten decimal digits, 0..9, in scripts other than ASCII */
static const unsigned digit_zero[] = {
    0x0660, 0x06F0, 0x07C0, 0x0966, 0x09E6,  0x0A66,  0x0AE6,  0x0B66,  0x0BE6,  0x0C66, 0x0CE6,
    0x0D66, 0x0DE6, 0x0E50, 0x0ED0, 0x0F20,  0x1040,  0x1090,  0x17E0,  0x1810,  0x1946, 0x19D0,
    0x1A80, 0x1A90, 0x1B50, 0x1BB0, 0x1C40,  0x1C50,  0xA620,  0xA8D0,  0xA900,  0xA9D0, 0xA9F0,
    0xAA50, 0xABF0, 0xFF10, 0x2080, 0x1D7CE, 0x1D7D8, 0x1D7E2, 0x1D7EC, 0x1D7F6,
};

/* single code points and what they stand for */
static const struct {
    unsigned cp;
    char c;
} single[] = {
    /* spaces and line breaks */
    {0x00A0, ' '},
    {0x1680, ' '},
    {0x202F, ' '},
    {0x205F, ' '},
    {0x3000, ' '},
    {0x2028, '\n'},
    {0x2029, '\n'},
    {0x0085, '\n'},
    /* dashes and minus signs */
    {0x2010, '-'},
    {0x2011, '-'},
    {0x2012, '-'},
    {0x2013, '-'},
    {0x2014, '-'},
    {0x2015, '-'},
    {0x2043, '-'},
    {0x2212, '-'},
    {0xFE58, '-'},
    {0xFE63, '-'},
    {0x00AF, '-'},
    /* small form variants (NFKC) */
    {0xFE50, ','},
    {0xFE51, ','},
    {0xFE52, '.'},
    {0xFE54, ';'},
    {0xFE55, ':'},
    {0xFE56, '?'},
    {0xFE57, '!'},
    {0xFE59, '('},
    {0xFE5A, ')'},
    {0xFE5B, '{'},
    {0xFE5C, '}'},
    {0xFE5F, '#'},
    {0xFE60, '&'},
    {0xFE61, '*'},
    {0xFE62, '+'},
    {0xFE64, '<'},
    {0xFE65, '>'},
    {0xFE66, '='},
    {0xFE68, '\\'},
    {0xFE69, '$'},
    {0xFE6A, '%'},
    {0xFE6B, '@'},
    /* super- and subscript digits, circled digits */
    {0x00B9, '1'},
    {0x00B2, '2'},
    {0x00B3, '3'},
    {0x2070, '0'},
    {0x2074, '4'},
    {0x2075, '5'},
    {0x2076, '6'},
    {0x2077, '7'},
    {0x2078, '8'},
    {0x2079, '9'},
    {0x24EA, '0'},
    /* other '@' and '.' look-alikes */
    {0x2024, '.'},
    {0x3002, '.'},
    {0xFF61, '.'},
    {0x2219, '.'},
    /* Cyrillic look-alikes of Latin letters */
    {0x0410, 'A'},
    {0x0412, 'B'},
    {0x0415, 'E'},
    {0x041A, 'K'},
    {0x041C, 'M'},
    {0x041D, 'H'},
    {0x041E, 'O'},
    {0x0420, 'P'},
    {0x0421, 'C'},
    {0x0422, 'T'},
    {0x0423, 'Y'},
    {0x0425, 'X'},
    {0x0405, 'S'},
    {0x0406, 'I'},
    {0x0408, 'J'},
    {0x0430, 'a'},
    {0x0435, 'e'},
    {0x043E, 'o'},
    {0x0440, 'p'},
    {0x0441, 'c'},
    {0x0443, 'y'},
    {0x0445, 'x'},
    {0x0455, 's'},
    {0x0456, 'i'},
    {0x0458, 'j'},
    {0x0501, 'd'},
    {0x051B, 'q'},
    {0x051D, 'w'},
    {0x04BB, 'h'},
    {0x0432, 'b'},
    /* Greek look-alikes */
    {0x0391, 'A'},
    {0x0392, 'B'},
    {0x0395, 'E'},
    {0x0396, 'Z'},
    {0x0397, 'H'},
    {0x0399, 'I'},
    {0x039A, 'K'},
    {0x039C, 'M'},
    {0x039D, 'N'},
    {0x039F, 'O'},
    {0x03A1, 'P'},
    {0x03A4, 'T'},
    {0x03A5, 'Y'},
    {0x03A7, 'X'},
    {0x03BF, 'o'},
    {0x03BD, 'v'},
    {0x03C1, 'p'},
    {0x03B9, 'i'},
    {0x03BA, 'k'},
    {0x03F2, 'c'},
    {0x03F3, 'j'},
    {0x03F9, 'C'},
    {0x03D2, 'Y'},
    {0x04AE, 'Y'},
    {0x04AF, 'y'},
    {0x04C0, 'I'},
    {0x04CF, 'l'},
    {0x051C, 'W'},
};

static int norm_slow(unsigned cp)
{
    for (size_t i = 0; i < sizeof(invisible) / sizeof(*invisible); i++)
        if (cp >= invisible[i].lo && cp <= invisible[i].hi)
            return POLICY_NORM_DROP;
    if (cp >= 0xFF01 && cp <= 0xFF5E) /* full-width ASCII */
        return (int)(cp - 0xFEE0);
    if (cp >= 0x2000 && cp <= 0x200A) /* en quad .. hair space */
        return ' ';
    for (size_t i = 0; i < sizeof(digit_zero) / sizeof(*digit_zero); i++)
        if (cp >= digit_zero[i] && cp <= digit_zero[i] + 9)
            return '0' + (int)(cp - digit_zero[i]);
    if (cp >= 0x2460 && cp <= 0x2468) /* circled 1..9 */
        return '1' + (int)(cp - 0x2460);
    if (cp >= 0x1D400 && cp <= 0x1D6A3) { /* mathematical letters: 52 per style */
        unsigned k = (cp - 0x1D400) % 52;
        return k < 26 ? 'A' + (int)k : 'a' + (int)(k - 26);
    }
    for (size_t i = 0; i < sizeof(single) / sizeof(*single); i++)
        if (single[i].cp == cp)
            return (unsigned char)single[i].c;
    return POLICY_NORM_KEEP;
}

/* The Basic Multilingual Plane, looked up once: text in other scripts has every character
 * normalised, and the tables above cost a hundred comparisons per character. One byte a
 * code point (64 KiB, built on first use): the ASCII byte, BMP_KEEP or BMP_DROP. */
enum { BMP_KEEP = 0, BMP_DROP = 0xFF };
static uint8_t bmp[0x10000];
static pthread_once_t bmp_once = PTHREAD_ONCE_INIT;

static void bmp_build(void)
{
    for (unsigned cp = 0x80; cp < 0x10000; cp++) {
        int m = norm_slow(cp);
        bmp[cp] = m == POLICY_NORM_DROP ? BMP_DROP : m == POLICY_NORM_KEEP ? BMP_KEEP : (uint8_t)m;
    }
}

int policy_norm_cp(unsigned cp)
{
    if (cp < 0x80)
        return (int)cp;
    if (cp >= 0x10000)
        return norm_slow(cp);
    pthread_once(&bmp_once, bmp_build);
    return bmp[cp] == BMP_KEEP   ? POLICY_NORM_KEEP
           : bmp[cp] == BMP_DROP ? POLICY_NORM_DROP
                                 : bmp[cp];
}
