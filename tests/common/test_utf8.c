/* test_utf8.c -- the strict UTF-8 validator: the RFC 3629 edge cases, every 2- and
 * 3-byte input against a reference decoder written differently (code point first, then
 * ranges), and whole buffers with the bad byte at every offset around the 8-byte
 * ASCII fast path. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "common/utf8.h"
#include "tests/harness.h"

/* reference: decode by bit masks into a code point, then judge the code point */
static size_t ref_len(const unsigned char *s, size_t n)
{
    size_t len, i;
    uint32_t cp;

    if (s[0] < 0x80)
        return 1;
    if ((s[0] & 0xE0) == 0xC0) {
        len = 2;
        cp = s[0] & 0x1Fu;
    } else if ((s[0] & 0xF0) == 0xE0) {
        len = 3;
        cp = s[0] & 0x0Fu;
    } else if ((s[0] & 0xF8) == 0xF0) {
        len = 4;
        cp = s[0] & 0x07u;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3Fu);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000))
        return 0; /* overlong */
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

static void test_edges(void)
{
    static const struct {
        const char *bytes;
        int valid;
    } cases[] = {
        {"", 1},
        {"plain ascii", 1},
        {"\xC3\xA9", 1},         /* U+00E9 */
        {"\xE2\x82\xAC", 1},     /* U+20AC */
        {"\xF0\x9F\x98\x80", 1}, /* U+1F600 */
        {"\xF4\x8F\xBF\xBF", 1}, /* U+10FFFF, the last */
        {"\xEF\xBF\xBF", 1},     /* U+FFFF */
        {"\xED\x9F\xBF", 1},     /* U+D7FF, just below the surrogates */
        {"\xC0\x80", 0},         /* overlong NUL */
        {"\xC1\xBF", 0},         /* overlong */
        {"\xE0\x80\x80", 0},     /* overlong */
        {"\xE0\x9F\xBF", 0},     /* overlong U+07FF */
        {"\xED\xA0\x80", 0},     /* U+D800 */
        {"\xED\xBF\xBF", 0},     /* U+DFFF */
        {"\xF0\x8F\xBF\xBF", 0}, /* overlong U+FFFF */
        {"\xF4\x90\x80\x80", 0}, /* U+110000 */
        {"\xF5\x80\x80\x80", 0},
        {"\xFF", 0},
        {"\x80", 0}, /* a lone continuation byte */
        {"\xC3", 0}, /* cut short */
        {"\xE2\x82", 0},
        {"\xF0\x9F\x98", 0},
        {"\xC3\x28", 0}, /* a lead byte, then no continuation */
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const unsigned char *s = (const unsigned char *)cases[i].bytes;
        size_t n = strlen(cases[i].bytes);
        if (utf8_valid(s, n) != cases[i].valid)
            fprintf(stderr, "  case %zu\n", i);
        CHECK_EQ_INT(utf8_valid(s, n), cases[i].valid);
    }
}

static void test_against_reference(void)
{
    unsigned char s[4];
    unsigned a, b, c, d;
    long mismatches = 0;

    for (a = 0; a < 256; a++) {
        s[0] = (unsigned char)a;
        mismatches += utf8_seq_len(s, 1) != ref_len(s, 1);
        for (b = 0; b < 256; b++) {
            s[1] = (unsigned char)b;
            mismatches += utf8_seq_len(s, 2) != ref_len(s, 2);
            if (a < 0xE0 || a > 0xF4)
                continue;
            for (c = 0; c < 256; c++) {
                s[2] = (unsigned char)c;
                mismatches += utf8_seq_len(s, 3) != ref_len(s, 3);
                if (a < 0xF0)
                    continue;
                for (d = 0x3F; d <= 0xC0; d += 0x40) { /* just outside and inside 80..BF */
                    s[3] = (unsigned char)d;
                    mismatches += utf8_seq_len(s, 4) != ref_len(s, 4);
                }
                s[3] = 0xBF;
                mismatches += utf8_seq_len(s, 4) != ref_len(s, 4);
            }
        }
    }
    CHECK_EQ_INT((int)mismatches, 0);
}

/* a bad or a multi-byte sequence at every offset of a buffer, so the 8-byte ASCII path
 * hands over to the sequence check at every alignment */
static void test_every_offset(void)
{
    static const struct {
        const char *bytes;
        int valid;
    } seqs[] = {{"\xE2\x82\xAC", 1}, {"\xF0\x9F\x98\x80", 1}, {"\xC3\xA9", 1}, {"\x80", 0},
                {"\xC3", 0},         {"\xED\xA0\x80", 0},     {"\xFF", 0}};
    unsigned char buf[64];
    size_t len, off, i, sl;

    for (len = 1; len <= 40; len++) {
        for (off = 0; off < len; off++) {
            for (i = 0; i < sizeof(seqs) / sizeof(seqs[0]); i++) {
                sl = strlen(seqs[i].bytes);
                if (off + sl > len)
                    continue;
                memset(buf, 'a', sizeof(buf));
                memcpy(buf + off, seqs[i].bytes, sl);
                CHECK_EQ_INT(utf8_valid(buf, len), seqs[i].valid);
                /* a valid sequence cut by the buffer's end */
                if (seqs[i].valid && sl > 1 && off + sl == len)
                    CHECK_EQ_INT(utf8_valid(buf, len - 1), 0);
            }
        }
    }
}

/* utf8_sanitize: a provider's message cut mid-character by a bounded copy (what fuzz_answer
 * found) becomes valid UTF-8 with the broken bytes as '?', and valid text is left alone */
static void test_sanitize(void)
{
    char cut[] = "caf\xc3\xa9 \xc3"; /* "café " + half an é */
    char mid[] = "a\xe2\x82"
                 "b\xf0\x9f\x98\x80"; /* a cut € then a whole emoji */
    char ok[] = "na\xc3\xafve \xe2\x82\xac";
    CHECK_EQ_INT(utf8_sanitize(cut), 1);
    CHECK_EQ_STR(cut, "caf\xc3\xa9 ?");
    CHECK_EQ_INT(utf8_sanitize(mid), 2);
    CHECK_EQ_STR(mid, "a??b\xf0\x9f\x98\x80");
    CHECK_EQ_INT(utf8_sanitize(ok), 0);
    CHECK_EQ_STR(ok, "na\xc3\xafve \xe2\x82\xac");
    CHECK(utf8_valid((const unsigned char *)cut, strlen(cut)) &&
          utf8_valid((const unsigned char *)mid, strlen(mid)));
}

int main(void)
{
    RUN(test_edges);
    RUN(test_against_reference);
    RUN(test_every_offset);
    RUN(test_sanitize);
    return harness_done();
}
