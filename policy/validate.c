/* validate.c -- the checks that turn a pattern hit into a finding: checksums, number
 * plans, structure, entropy. Each validator gets the candidate span the scanner found
 * inside one segment's decoded text and may refine it (extend a token, trim a trailing
 * group); it never looks outside the segment.
 *
 * Choices worth knowing (docs/policy.md repeats them):
 *  - phone: "+"-prefixed numbers with 8-15 digits; NANP (NXX) NXX-XXXX with separators;
 *    trunk-prefixed national numbers (0...) of 9-11 digits in space/dash groups; "00"
 *    international. Bare digit runs without a '+' or separators are not phones, and
 *    dotted groups other than NXX.NXX.XXXX (dates, versions, addresses) never are.
 *  - ipv4: dotted quads with octets <= 255 and no leading zeros; a quad that is part of a
 *    longer dotted run (1.2.3.4.5) or follows "v", "ver" or "version" is a version string.
 *  - generic_secret: a token of >= 16 characters with Shannon entropy >= 3.3 bits/char and
 *    at least two character classes, among the first three tokens after a secret-like
 *    word on the same line (or the whole value of a JSON key that is secret-like).
 *  - boundaries: a letter glued to a value does not hide it where a checksum or a strict
 *    format decides (card: Luhn and a common brand; IBAN: mod-97 and the country's length;
 *    AWS key id: base32 at its exact length; GitHub token: its CRC-32; SSN: the dashes or
 *    its label; a bare number: its label); without one (an unlabelled phone number) the
 *    word boundaries stay. */
#include <math.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "policy/policy_int.h"

static inline int is_digit(int c)
{
    return c >= '0' && c <= '9';
}
static inline int is_upper(int c)
{
    return c >= 'A' && c <= 'Z';
}
static inline int is_lower(int c)
{
    return c >= 'a' && c <= 'z';
}
static inline int is_alpha(int c)
{
    return is_upper(c) || is_lower(c);
}
static inline int is_alnum(int c)
{
    return is_alpha(c) || is_digit(c);
}
static inline int is_tok(int c)
{
    return is_alnum(c) || c == '_' || c == '-';
}
static inline int lower(int c)
{
    return is_upper(c) ? c + 32 : c;
}

static int at(const char *t, size_t n, size_t i)
{
    return i < n ? (unsigned char)t[i] : 0;
}
static int before(const char *t, size_t i)
{
    return i > 0 ? (unsigned char)t[i - 1] : 0;
}

int policy_luhn(const char *d, size_t n)
{
    int sum = 0, dbl = 0;
    for (size_t i = n; i-- > 0;) {
        int v = d[i] - '0';
        if (dbl && (v *= 2) > 9)
            v -= 9;
        sum += v;
        dbl = !dbl;
    }
    return sum % 10 == 0;
}

double policy_entropy(const char *s, size_t n)
{
    size_t cnt[256];
    uint64_t seen[4] = {0}; /* the bytes present: only their counts are read or summed */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!(seen[c >> 6] >> (c & 63) & 1)) {
            seen[c >> 6] |= (uint64_t)1 << (c & 63);
            cnt[c] = 0;
        }
        cnt[c]++;
    }
    double h = 0;
    /* in byte order, as a loop over all 256 would add them (the same sum to the last bit) */
    for (int w = 0; w < 4; w++)
        for (uint64_t m = seen[w]; m; m &= m - 1) {
            int c = w * 64 + __builtin_ctzll(m);
            double p = (double)cnt[c] / (double)n;
            h -= p * log2(p);
        }
    return h;
}

/* ---- email ---- */

static int is_atext(int c)
{
    return is_alnum(c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-';
}
static int is_dtext(int c)
{
    return is_alnum(c) || c == '.' || c == '-';
}

/* File extensions that are no top-level domain (none of these is delegated). */
static int file_ext(const char *x, size_t n)
{
    static const struct {
        const char *s;
        unsigned char n;
    } exts[] = {
#define EXT(e) {e, sizeof(e) - 1}
        EXT("png"), EXT("jpg"), EXT("jpeg"), EXT("gif"),  EXT("webp"), EXT("svg"),  EXT("ico"),
        EXT("bmp"), EXT("tif"), EXT("tiff"), EXT("avif"), EXT("heic"), EXT("heif"), EXT("psd"),
        EXT("pdf"), EXT("txt"), EXT("json"), EXT("yaml"), EXT("yml"),  EXT("html"), EXT("htm"),
        EXT("css"), EXT("js"),  EXT("mjs"),  EXT("tgz"),  EXT("gz"),   EXT("xz"),   EXT("tar"),
        EXT("wav"), EXT("ogg"), EXT("webm"), EXT("woff"), EXT("ttf"),  EXT("otf"),  EXT("lock"),
#undef EXT
    };
    for (size_t i = 0; i < sizeof(exts) / sizeof(*exts); i++)
        if (exts[i].n == n && lower((unsigned char)x[0]) == exts[i].s[0] &&
            strncasecmp(x, exts[i].s, n) == 0)
            return 1;
    return 0;
}

/* The local part at ls is a URI's userinfo ("scheme://user@", "scheme://user:pw@"), a
 * login at a host, not an e-mail address. */
static int uri_userinfo(const char *t, size_t ls)
{
    size_t i = ls;
    if (i > 0 && t[i - 1] == ':')
        for (i--; i > 0 && ls - i < 128 && t[i - 1] != '/' && t[i - 1] > ' ' && t[i - 1] != '@';)
            i--;
    return i >= 3 && memcmp(t + i - 3, "://", 3) == 0;
}

/* A letter outside ASCII that ends at t[i): a two-byte UTF-8 letter of the Latin-1
 * supplement and Latin Extended-A/B (é, ü, ł, ș), a combining accent, Greek or Cyrillic;
 * 0 if none. Part of a local part written in a script other than ASCII ("jürgen.müller"),
 * so that no prefix of it stays in clear text. */
static size_t utf8_letter_before(const char *t, size_t i)
{
    if (i < 2)
        return 0;
    unsigned l = (unsigned char)t[i - 2], c = (unsigned char)t[i - 1];
    if (c < 0x80 || c > 0xBF)
        return 0;
    if (l == 0xC3)
        return c != 0x97 && c != 0xB7 ? 2 : 0; /* not × or ÷ */
    if ((l >= 0xC4 && l <= 0xC9) || (l >= 0xCC && l <= 0xCF) || (l >= 0xD0 && l <= 0xD4))
        return 2;
    return 0;
}

/* The '@' at t[s]. The local part runs back over atext (and letters outside ASCII) as far
 * as it goes: a run glued before a 64-byte local part is reported with it rather than
 * leaving the address in clear; after a ".." (not allowed in an address) it starts again
 * ("a..jane@example.com" is jane@...). The domain's last label is the TLD, letters only: a
 * digit or '-' glued after it ends the address ("jane@example.com-1", "...com2"). */
static int v_email(const char *t, size_t n, size_t s, size_t e, size_t *os, size_t *oe)
{
    const char *a = memchr(t + s, '@', e - s);
    if (!a)
        return 0;
    size_t atp = (size_t)(a - t), ls = atp, de = atp + 1, u;
    for (;;) {
        if (ls > 0 && is_atext(before(t, ls)))
            ls--;
        else if ((u = utf8_letter_before(t, ls)) != 0)
            ls -= u;
        else
            break;
    }
    for (size_t i = atp; i > ls + 1; i--)
        if (t[i - 1] == '.' && t[i - 2] == '.') {
            ls = i; /* after the last ".." */
            break;
        }
    while (ls < atp && (t[ls] == '.' || t[ls] == '-' || t[ls] == '+'))
        ls++; /* "...-bob@" starts at bob */
    if (ls == atp || t[atp - 1] == '.')
        return 0;
    if (uri_userinfo(t, ls))
        return 0; /* postgres://app@db.internal, redis://:pw@cache.internal */
    while (de < n && is_dtext(at(t, n, de)) && de - atp <= 253)
        de++;
    while (de > atp + 1 && (t[de - 1] == '.' || t[de - 1] == '-'))
        de--; /* sentence punctuation */
    /* the TLD: letters, or a punycode label; a digit or '-' after its letters is glued on */
    size_t last = de;
    while (last > atp + 1 && t[last - 1] != '.')
        last--;
    if (!(de - last >= 5 && strncasecmp(t + last, "xn--", 4) == 0)) {
        size_t k = last;
        while (k < de && is_alpha(t[k]))
            k++;
        de = k;
    }
    /* a one-letter last label is no TLD: "jane@example.com.x" is the address with a label
     * glued on after it (a list's ".x", a file name's extension), which ends before it */
    if (de - last < 2 && last > atp + 2) {
        size_t l2 = last - 1, k;
        while (l2 > atp + 1 && t[l2 - 1] != '.')
            l2--;
        if (l2 > atp + 1) {
            for (k = l2; k < last - 1 && is_alpha(t[k]);)
                k++;
            if (k == last - 1) {
                de = last - 1;
                last = l2;
            }
        }
    }
    /* labels */
    size_t lab = atp + 1, nlab = 0;
    for (size_t i = atp + 1; i <= de; i++) {
        if (i == de || t[i] == '.') {
            size_t l = i - lab;
            if (l == 0 || l > 63 || t[lab] == '-' || t[i - 1] == '-')
                return 0;
            nlab++;
            lab = i + 1;
        }
    }
    if (nlab < 2 || de - last < 2)
        return 0;
    if (file_ext(t + last, de - last))
        return 0; /* logo@2x.png, icon@3x.webp, module@1.2.3.tgz: a file name */
    *os = ls;
    *oe = de;
    return 1;
}

/* ---- phone ---- */

/* Classify the number in [s, e) (starts at a digit, '+' or '('; ends at a digit) of
 * t[0..n). */
static int phone_ok(const char *t, size_t n, size_t s, size_t e)
{
    int groups[24], ng = 0, digits = 0, plus = 0, dots = 0, paren = 0, slashes = 0;
    int slash_at = -1, other = 0;
    char dig[24];
    size_t i = s;
    if (t[i] == '+') {
        plus = 1;
        i++;
    }
    int cur = 0;
    for (; i < e; i++) {
        int c = (unsigned char)t[i];
        if (is_digit(c)) {
            if (digits >= 20)
                return 0;
            dig[digits++] = (char)c;
            cur++;
            continue;
        }
        if (cur) {
            if (ng >= 24)
                return 0;
            groups[ng++] = cur;
        }
        cur = 0;
        if (c == '.') {
            dots++;
        } else if (c == '/') {
            slashes++;
            slash_at = ng;
        } else if (c == '(' || c == ')') {
            paren++;
        } else {
            other++;
        }
    }
    if (cur && ng < 24)
        groups[ng++] = cur;
    if (paren != 0 && paren != 2)
        return 0;
    if (slashes) {
        /* area code / subscriber, the German way: 030/1234567, 0171/123 4567 */
        if (slashes != 1 || slash_at != 1 || plus || dots || paren)
            return 0;
        return dig[0] == '0' && dig[1] != '0' && groups[0] >= 3 && groups[0] <= 5 && digits >= 9 &&
               digits <= 12;
    }
    if (plus) {
        if (digits < 8 || digits > 15 || dig[0] == '0')
            return 0;
        if (dig[0] == '1' && digits == 11)
            return dig[1] >= '2' && dig[4] >= '2';
        return 1;
    }
    /* NANP: [1] NXX NXX XXXX */
    int g = 0, off = 0;
    if (ng == 4 && groups[0] == 1 && dig[0] == '1') {
        g = 1;
        off = 1;
    }
    if (ng - g == 3 && groups[g] == 3 && groups[g + 1] == 3 && groups[g + 2] == 4)
        return dig[off] >= '2' && dig[off + 3] >= '2';
    if (dots) {
        /* French, dotted: 01.23.45.67.89; any other dotted groups are dates, versions,
         * addresses */
        if (dots != 4 || other || paren || ng != 5 || dig[0] != '0' || dig[1] == '0')
            return 0;
        for (int k = 0; k < ng; k++)
            if (groups[k] != 2)
                return 0;
        return 1;
    }
    /* Indian mobile, 5 + 5 (98765 43210): only as the whole run, not two groups of a
     * longer sequence */
    if (ng == 2 && groups[0] == 5 && groups[1] == 5 && dig[0] >= '6' && !paren &&
        !(e + 1 < n && (t[e] == ' ' || t[e] == '-') && is_digit(t[e + 1])))
        return 1;
    /* international prefix 00 */
    if (dig[0] == '0' && digits > 1 && dig[1] == '0')
        return digits >= 10 && digits <= 15 && ng >= 2;
    /* trunk-prefixed national number */
    if (ng == 3 && groups[0] == 3 && groups[1] == 2 && groups[2] == 4)
        return 0; /* SSN-shaped */
    if (dig[0] == '0' && digits >= 9 && digits <= 12 && ng >= 2 && ng <= 5) {
        for (int k = 0; k < ng; k++)
            if (groups[k] < 2)
                return 0;
        return 1;
    }
    return 0;
}

/* A bare run of 9-12 digits after a phone label ("Phone: 4155550132", "mobile
 * 9876543210", "電話：09012345678", "móvil 612345678"): the label says it is a number to
 * call; only a run of one digit and a 10-digit run starting with 1 (Unix time in seconds)
 * are refused. */
static int bare_phone_ok(const char *d, size_t n)
{
    size_t same = 1;
    for (size_t i = 1; i < n; i++)
        same += d[i] == d[0];
    if (same == n || (d[0] == '0' && d[1] == '0'))
        return 0;
    return !(n == 10 && d[0] == '1');
}

/* ---- credit card ---- */

static int iin_ok(const char *d, size_t n)
{
    int p2 = (d[0] - '0') * 10 + (d[1] - '0');
    int p3 = p2 * 10 + (d[2] - '0');
    int p4 = p3 * 10 + (d[3] - '0');
    int p6 = p4 * 100 + (d[4] - '0') * 10 + (d[5] - '0');
    if (d[0] == '4')
        return n == 13 || n == 16 || n == 19; /* Visa */
    if ((p2 >= 51 && p2 <= 55) || (p4 >= 2221 && p4 <= 2720))
        return n == 16; /* Mastercard */
    if (p2 == 34 || p2 == 37)
        return n == 15; /* Amex */
    if (p4 == 6011 || (p3 >= 644 && p3 <= 649) || p2 == 65 || (p6 >= 622126 && p6 <= 622925))
        return n >= 16 && n <= 19; /* Discover */
    if ((p3 >= 300 && p3 <= 305) || p2 == 36 || p2 == 38 || p2 == 39)
        return n >= 14 && n <= 19; /* Diners */
    if (p4 >= 3528 && p4 <= 3589)
        return n >= 16 && n <= 19; /* JCB */
    if (p2 == 62)
        return n >= 16 && n <= 19; /* UnionPay */
    if (p2 == 50 || (p2 >= 56 && p2 <= 69))
        return n >= 12 && n <= 19; /* Maestro */
    return 0;
}

/* The separators between the groups of a card or an IBAN. Normalisation has already made
 * every space kind a ' ' and every dash kind a '-'. */
enum { SEP_NONE, SEP_SPACE, SEP_DASH, SEP_SLASH, SEP_DOT, SEP_COMMA, SEP_WS };

static int is_ws(int c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* The separator at t[i] (t ends at n), *len its bytes: one space, dash, '/', '.' or ',', or
 * white space of up to two bytes (a double space, a tab, a line break, CRLF: SEP_WS). */
static int sep_at(const char *t, size_t n, size_t i, size_t *len)
{
    int c = at(t, n, i);
    *len = 1;
    if (is_ws(c)) {
        if (is_ws(at(t, n, i + 1))) {
            *len = 2;
            return SEP_WS;
        }
        return c == ' ' ? SEP_SPACE : SEP_WS;
    }
    return c == '-'   ? SEP_DASH
           : c == '/' ? SEP_SLASH
           : c == '.' ? SEP_DOT
           : c == ',' ? SEP_COMMA
                      : SEP_NONE;
}

/* One kind of separator throughout a number; a single space mixes with other white space (a
 * card wrapped onto the next line). Returns the kind so far, or SEP_NONE on a mix. */
static int sep_merge(int kind, int k)
{
    if (kind == SEP_NONE || kind == k)
        return k;
    if ((kind == SEP_SPACE || kind == SEP_WS) && (k == SEP_SPACE || k == SEP_WS))
        return SEP_WS;
    return SEP_NONE;
}

/* The brands a card glued to letters or written with a list's separators must be: Amex
 * (15 digits), Visa, Mastercard, Discover, JCB or UnionPay (16). Not the long tail of
 * lengths, nor Maestro's wide ranges (50, 56-69), which random ids and lists hit too often. */
static int iin_common(const char *d, size_t n)
{
    int p2 = (d[0] - '0') * 10 + (d[1] - '0');
    int p3 = p2 * 10 + (d[2] - '0');
    int p4 = p3 * 10 + (d[3] - '0');
    if (n == 15)
        return p2 == 34 || p2 == 37;
    return n == 16 &&
           (d[0] == '4' || (p2 >= 51 && p2 <= 55) || (p4 >= 2221 && p4 <= 2720) || p4 == 6011 ||
            (p3 >= 644 && p3 <= 649) || p2 == 65 || (p4 >= 3528 && p4 <= 3589) || p2 == 62);
}

/* [s, e) of t is a card number: 13-19 digits, contiguous or in groups of four (Amex 4-6-5)
 * with one kind of separator, a known IIN for its length (iin_common when glued or
 * separated by commas or white space other than single spaces), Luhn, not one digit
 * repeated. *kind: the separator kind (SEP_NONE: contiguous). */
static int card_digits_ok(const char *t, size_t s, size_t e, int glued, int *kind)
{
    char d[20];
    size_t n = 0, groups[8], ng = 0, cur = 0, len;
    int k = SEP_NONE;
    for (size_t i = s; i < e;) {
        if (is_digit(t[i])) {
            if (n >= 19)
                return 0;
            d[n++] = t[i++];
            cur++;
            continue;
        }
        int sk = sep_at(t, e, i, &len);
        if (!sk || !cur || ng >= 7 || (k = sep_merge(k, sk)) == SEP_NONE)
            return 0;
        groups[ng++] = cur;
        cur = 0;
        i += len;
    }
    groups[ng++] = cur;
    if (n < 13 || n > 19)
        return 0;
    if (ng > 1) {
        int ok = 1;
        for (size_t g = 0; g + 1 < ng; g++)
            if (groups[g] != 4)
                ok = 0;
        if (ng == 3 && groups[0] == 4 && groups[1] == 6 && (groups[2] == 5 || groups[2] == 4))
            ok = 1;
        if (!ok || groups[ng - 1] == 0 || groups[ng - 1] > 4 + (ng == 3 ? 1 : 0))
            return 0;
    }
    size_t same = 1;
    for (size_t i = 1; i < n; i++)
        same += d[i] == d[0];
    if (same == n)
        return 0;
    *kind = k;
    if (glued || k == SEP_COMMA || k == SEP_WS)
        return iin_common(d, n) && policy_luhn(d, n);
    return iin_ok(d, n) && policy_luhn(d, n);
}

/* A value glued to letters at [s, e) that is a window of a hex digest (a sha1, sha256,
 * md5 written in hex, 32+ characters): its digits are the digest's, not a card or an
 * IBAN. */
static int in_hex_blob(const char *t, size_t n, size_t s, size_t e)
{
    size_t a = s, b = e;
    while (a > 0 && s - a < 128 && is_alnum(t[a - 1]))
        a--;
    while (b < n && b - e < 128 && is_alnum(t[b]))
        b++;
    if (b - a < 32)
        return 0;
    for (size_t i = a; i < b; i++)
        if (!is_digit(t[i]) && !((t[i] | 0x20) >= 'a' && (t[i] | 0x20) <= 'f'))
            return 0;
    return 1;
}

/* ---- IBAN ---- */

static const char iban_table[] =
    "AD24AE23AL28AT20AZ28BA20BE16BG22BH22BI27BR29BY28CH21CR22CY28CZ24DE22DJ27DK18DO28EE20"
    "EG29ES24FI18FK18FO18FR27GB22GE22GI23GL18GR27GT28HR21HU28IE22IL23IQ23IS26IT27JO30KW30"
    "KZ20LB28LC32LI21LT20LU20LV21LY25MC27MD24ME22MK19MN20MR27MT31MU30NI28NL18NO15OM23PK24"
    "PL28PS29PT25QA29RO24RS22RU33SA24SC31SD18SE24SI19SK24SM27SO23ST25SV28TL23TN24TR26UA29"
    "VA22VG24XK20YE30";

/* iban_table is sorted by country code: binary search. */
static int iban_len(const char *cc)
{
    size_t lo = 0, hi = (sizeof(iban_table) - 1) / 4;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const char *p = iban_table + mid * 4;
        int c = p[0] != cc[0] ? (unsigned char)p[0] - (unsigned char)cc[0]
                              : (unsigned char)p[1] - (unsigned char)cc[1];
        if (c == 0)
            return (p[2] - '0') * 10 + (p[3] - '0');
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

int policy_iban_check(const char *s, size_t n)
{
    if (n < 15 || n > 34 || iban_len(s) != (int)n)
        return 0;
    unsigned rem = 0;
    for (size_t k = 0; k < n; k++) {
        int c = (unsigned char)s[(k + 4) % n];
        if (is_digit(c))
            rem = (rem * 10 + (unsigned)(c - '0')) % 97;
        else if (is_upper(c))
            rem = (rem * 100 + (unsigned)(c - 'A' + 10)) % 97;
        else
            return 0;
    }
    return rem == 1;
}

/* CC + 2 check digits + BBAN at s, cut at the country's length: contiguous, or in groups
 * of four with one kind of separator (spaces of any kind, double spaces, line breaks,
 * dashes, '/', '.', ','). Letters may be glued on either side ("ibanDE89...x",
 * "IBAN:DE89...BIC:"): the country's length says where the IBAN ends, and mod-97 keeps the
 * precision (with a BBAN of at least half digits, as every country's is). A digit glued on
 * either side makes it a longer number, not this IBAN. */
static int v_iban(const char *t, size_t n, size_t s, size_t e, size_t *os, size_t *oe)
{
    (void)e;
    int L = iban_len(t + s);
    if (!L || is_digit(before(t, s)))
        return 0;
    char buf[40];
    size_t k = 0, i = s, len;
    int kind = SEP_NONE;
    while (k < (size_t)L && i < n) {
        int c = (unsigned char)t[i];
        if (k % 4 == 0 && k > 0 && !is_digit(c) && !is_upper(c)) {
            int sk = sep_at(t, n, i, &len);
            if (!sk || (kind = sep_merge(kind, sk)) == SEP_NONE || !is_alnum(at(t, n, i + len)))
                return 0;
            i += len;
            continue;
        }
        if (!is_digit(c) && !is_upper(c))
            return 0;
        buf[k++] = (char)c;
        i++;
    }
    if (k != (size_t)L || is_digit(at(t, n, i)) || !is_digit(buf[2]) || !is_digit(buf[3]))
        return 0;
    if (!policy_iban_check(buf, k))
        return 0;
    if (is_alnum(before(t, s)) || is_alnum(at(t, n, i))) {
        /* glued: not a window of an upper-case hex digest or of base32/base36 text, whose
         * BBAN-long windows are mostly letters (real BBANs are mostly digits) */
        size_t digits = 0;
        for (size_t j = 4; j < k; j++)
            digits += is_digit(buf[j]) != 0;
        if (2 * digits < k - 4 || (kind == SEP_NONE && in_hex_blob(t, n, s, i)))
            return 0;
    }
    *os = s;
    *oe = i;
    return 1;
}

/* ---- US SSN ---- */

/* Nine digits AAAGGSSSS: area not 000, 666 or 900-999, group not 00, serial not 0000. */
static int ssn_digits_ok(const char *d)
{
    int area = (d[0] - '0') * 100 + (d[1] - '0') * 10 + (d[2] - '0');
    if (area == 0 || area == 666 || area >= 900)
        return 0;
    if (d[3] == '0' && d[4] == '0')
        return 0;
    return memcmp(d + 5, "0000", 4) != 0;
}

/* DDD-DD-DDDD or DDD DD DDDD at s, same separator, area/group/serial rules; not followed by
 * a digit, nor by '-' or '.' and a digit (a longer number). Letters may be glued on either
 * side when the dashes say what it is ("abc123-45-6789", "SSN123-45-6789x"); the spaced
 * form glued to a letter only after an SSN label ("ssn123 45 6789"). glued: a letter is
 * glued before s. */
static int ssn_at(const char *t, size_t n, size_t s, int glued)
{
    if (n - s < 11)
        return 0;
    char sep = t[s + 3];
    if ((sep != '-' && sep != ' ') || t[s + 6] != sep)
        return 0;
    char d[9];
    for (size_t i = 0, k = 0; i < 11; i++) {
        if (i == 3 || i == 6)
            continue;
        if (!is_digit(t[s + i]))
            return 0;
        d[k++] = t[s + i];
    }
    if (!ssn_digits_ok(d))
        return 0;
    int q = at(t, n, s + 11);
    if (is_digit(q) || q == '_' || ((q == '-' || q == '.') && is_digit(at(t, n, s + 12))))
        return 0;
    if ((glued || is_alpha(q)) && sep != '-' && policy_context_label(t, n, s) != POLICY_CTX_SSN)
        return 0;
    return 1;
}

/* ---- IPv4 ---- */

/* The trigger ends inside the last octet of some dotted run; the run as a whole must be a
 * quad (a longer run is a version or an OID). */
static int v_ipv4(const char *t, size_t n, size_t s, size_t e, size_t *os, size_t *oe)
{
    (void)s;
    /* a quad is at most 15 characters: a longer dotted run is not one (and stopping at 16
     * keeps a run of many triggers linear) */
    size_t rs = e, re = e;
    while (rs > 0 && e - rs <= 16 && (is_digit(t[rs - 1]) || t[rs - 1] == '.'))
        rs--;
    while (re < n && re - e <= 16 && (is_digit(t[re]) || t[re] == '.'))
        re++;
    if (re - rs > 17)
        return 0;
    while (re > rs && t[re - 1] == '.')
        re--; /* sentence end */
    while (rs < re && t[rs] == '.')
        rs++;
    size_t i = rs;
    for (int o = 0; o < 4; o++) {
        size_t st = i;
        int v = 0;
        while (i < re && is_digit(t[i]) && i - st < 4)
            v = v * 10 + (t[i++] - '0');
        if (i == st || i - st > 3 || v > 255 || (i - st > 1 && t[st] == '0'))
            return 0;
        if (o < 3) {
            if (i >= re || t[i] != '.')
                return 0;
            i++;
        }
    }
    if (i != re)
        return 0;
    int p = before(t, rs);
    if (is_alnum(p) || p == '_' || p == '.' || is_alnum(at(t, n, re)) || at(t, n, re) == '_')
        return 0;
    /* "v 1.2.3.4", "version 1.2.3.4", "ver. 1.2.3.4" */
    size_t k = rs;
    while (k > 0 && (t[k - 1] == ' ' || t[k - 1] == ':' || t[k - 1] == '.') && rs - k < 3)
        k--;
    size_t w = k;
    while (w > 0 && is_alpha(t[w - 1]) && k - w < 8)
        w--;
    if (k - w == 1 && lower(t[w]) == 'v')
        return 0;
    if ((k - w == 3 && strncasecmp(t + w, "ver", 3) == 0) ||
        (k - w == 7 && strncasecmp(t + w, "version", 7) == 0))
        return 0;
    *os = rs;
    *oe = re;
    return 1;
}

/* ---- private key ---- */

/* The length of a line break at t[i]: LF, CRLF, CR, or one written out as the escapes
 * \n or \r\n (a key inside a JSON string inside the prompt); 0 if none. */
static size_t pem_break(const char *t, size_t n, size_t i)
{
    if (i >= n)
        return 0;
    if (t[i] == '\n')
        return 1;
    if (t[i] == '\r')
        return i + 1 < n && t[i + 1] == '\n' ? 2 : 1;
    if (t[i] == '\\' && i + 1 < n && t[i + 1] == 'n')
        return 2;
    if (t[i] == '\\' && n - i >= 4 && memcmp(t + i, "\\r\\n", 4) == 0)
        return 4;
    return 0;
}

static int is_b64(int c)
{
    return is_alnum(c) || c == '+' || c == '/' || c == '=';
}

/* The armour line that ends at e is followed by a key body: base64 on the next line
 * (after armour headers such as "Proc-Type: ..." or PGP's "Version: ..." and a blank
 * line), or a long base64 run on the same line (a key pasted with its line breaks
 * turned into spaces). A sentence that names the header holds no key. */
static int pem_body(const char *t, size_t n, size_t e)
{
    size_t i = e, sp = 0, br, r;
    while (i < n && (t[i] == ' ' || t[i] == '\t')) {
        i++;
        sp++;
    }
    if (!(br = pem_break(t, n, i))) {
        for (r = i; r < n && is_b64(t[r]);)
            r++;
        return sp > 0 && r - i >= 40;
    }
    i += br;
    for (int line = 0; line < 16 && i < n; line++) {
        while (i < n && (t[i] == ' ' || t[i] == '\t'))
            i++;
        if ((br = pem_break(t, n, i))) {
            i += br; /* a blank line, or the end of a header line */
            continue;
        }
        for (r = i; r < n && is_b64(t[r]);)
            r++;
        if (r > i && (r == n || pem_break(t, n, r) || r - i >= 40 ||
                      (n - r >= 5 && memcmp(t + r, "-----", 5) == 0)))
            return 1;
        size_t h = i;
        while (h < n && (is_alnum(t[h]) || t[h] == '-'))
            h++;
        if (h == i || h >= n || t[h] != ':' || !is_alpha(t[i]))
            return 0;
        while (i < n && !pem_break(t, n, i))
            i++; /* "Name: value" */
    }
    return 0;
}

/* The trigger is "PRIVATE KEY-----" or "PRIVATE KEY BLOCK-----" (OpenPGP); the armour
 * line starts with "-----BEGIN" and has only upper-case words between (RSA, EC, DSA,
 * OPENSSH, ENCRYPTED, PGP, none), and a body follows. */
static int v_private_key(const char *t, size_t n, size_t s, size_t e, size_t *os, size_t *oe)
{
    size_t lab = e >= 22 && memcmp(t + e - 22, "PRIVATE KEY BLOCK-----", 22) == 0 ? e - 22 : e - 16;
    size_t k = lab;
    for (;;) {
        if (k >= 10 && memcmp(t + k - 10, "-----BEGIN", 10) == 0 && (k == lab || t[k] == ' '))
            break;
        if (k == 0 || lab - k >= 48 ||
            !(is_upper(t[k - 1]) || is_digit(t[k - 1]) || t[k - 1] == ' '))
            return 0;
        k--;
    }
    s = k - 10;
    if (!pem_body(t, n, e))
        return 0;
    /* to the END line; a key with no END (truncated) runs to the next BEGIN, or 64 KiB, or
     * the end of the text -- stopping at the next BEGIN keeps repeated armour linear */
    size_t lim = n - e > 65536 ? e + 65536 : n, end = lim, i = e;
    const char *d;
    while (i < lim && (d = memmem(t + i, lim - i, "-----", 5)) != NULL) {
        size_t at5 = (size_t)(d - t);
        if (lim - at5 >= 10 && memcmp(d, "-----BEGIN", 10) == 0) {
            end = at5;
            break;
        }
        if (lim - at5 >= 9 && memcmp(d, "-----END ", 9) == 0) {
            const char *tail = memmem(d, lim - at5, "PRIVATE KEY", 11);
            const char *nl = memchr(d, '\n', lim - at5);
            if (tail && (!nl || tail < nl)) {
                size_t te = (size_t)(tail - t) + 11, rest = lim - te;
                if (rest >= 6 && memcmp(t + te, " BLOCK", 6) == 0) {
                    te += 6;
                    rest -= 6;
                }
                if (rest >= 5 && memcmp(t + te, "-----", 5) == 0) {
                    end = te + 5;
                    break;
                }
            }
        }
        i = at5 + 1;
    }
    *os = s;
    *oe = end;
    return 1;
}

/* ---- tokens with fixed prefixes ---- */

static size_t tok_extend(const char *t, size_t n, size_t e)
{
    while (e < n && is_tok((unsigned char)t[e]))
        e++;
    return e;
}

static int mixed(const char *s, size_t n)
{
    int u = 0, l = 0, d = 0;
    for (size_t i = 0; i < n; i++) {
        u |= is_upper(s[i]);
        l |= is_lower(s[i]);
        d |= is_digit(s[i]);
    }
    return u && l && d;
}

/* AKIA/ASIA/ABIA/ACCA + 16 of [A-Z0-9]: the trigger ends at e, 20 after the prefix. Glued
 * to letters or digits on either side ("xAKIA...x", "AccessKeyIdAKIA...Secret") the id is
 * still split out at its exact length, but its 16 characters must then be what AWS issues,
 * base32 (A-Z, 2-7) with at least one digit, so that an upper-case word or code
 * ("EURASIAPACIFIC2024...") is no key. */
static int v_aws(const char *t, size_t n, size_t s, size_t e, size_t *os, size_t *oe)
{
    s = e - 20;
    size_t same = 0;
    for (size_t i = s + 5; i < e; i++)
        same += t[i] == t[s + 4];
    if (same == e - s - 5)
        return 0;
    if (is_alnum(before(t, s)) || is_alnum(at(t, n, e))) {
        int digit = 0;
        for (size_t i = s + 4; i < e; i++) {
            if (!is_digit(t[i]))
                continue;
            if (t[i] < '2' || t[i] > '7')
                return 0;
            digit = 1;
        }
        if (!digit)
            return 0;
    }
    *os = s;
    *oe = e;
    return 1;
}

/* CRC-32 (IEEE, as zlib's crc32) of s[0..n) */
static uint32_t crc32_ieee(const char *s, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= (unsigned char)s[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
    }
    return c ^ 0xFFFFFFFFu;
}

/* A classic token "ghX_" + 30 random + 6 checksum characters: the checksum is the CRC-32
 * of the 30, in base62 (0-9 A-Z a-z), left-padded with '0' (GitHub's token format of 2021). */
static int github_crc_ok(const char *tok)
{
    static const char b62[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    uint32_t c = crc32_ieee(tok + 4, 30);
    for (int i = 5; i >= 0; i--) {
        if (tok[34 + i] != b62[c % 62])
            return 0;
        c /= 62;
    }
    return c == 0;
}

/* ghX_ + 36, or github_pat_ + 22 + _ + 59: fixed lengths, so a token glued to other token
 * characters is split out where it ends. A fine-grained token's prefix says enough; a
 * classic one glued on ("tokenghp_...x") must carry its checksum, which a longer identifier
 * that happens to hold "ghs_" ("highs_Q3Revenue...") does not. As a whole word the checksum
 * is not asked (older tokens and hand-made examples have none). */
static int v_github(const char *t, size_t n, size_t s, size_t e, size_t *os, size_t *oe)
{
    int pat = e >= 93 && memcmp(t + e - 93, "github_pat_", 11) == 0;
    s = pat ? e - 93 : e - 40;
    if (!pat && (is_tok(at(t, n, e)) || is_tok(before(t, s))) && !github_crc_ok(t + s))
        return 0;
    size_t b = pat ? s + 11 : s + 4;
    int d = 0, a = 0;
    for (size_t i = b; i < e; i++) {
        d |= is_digit(t[i]);
        a |= is_alpha(t[i]);
    }
    if (!d || !a)
        return 0;
    *os = s;
    *oe = e;
    return 1;
}

static int v_openai(const char *t, size_t n, size_t s, size_t e, size_t *os, size_t *oe)
{
    s = e - 23; /* "sk-" + 20 */
    if (n - s >= 7 && memcmp(t + s, "sk-ant-", 7) == 0)
        return 0;
    size_t b = s + 3;
    int typed = 0; /* a project, service-account or admin key's prefix */
    static const char *const pre[] = {"proj-", "svcacct-", "admin-", "None-"};
    for (size_t i = 0; i < 4; i++) {
        size_t l = strlen(pre[i]);
        if (n - b >= l && memcmp(t + b, pre[i], l) == 0) {
            b += l;
            typed = i < 3;
            break;
        }
    }
    size_t end = tok_extend(t, n, b);
    if (end - b < 32 || !mixed(t + b, end - b))
        return 0;
    /* glued on the left ("keysk-proj-...", "x-sk-..."), a "sk-" could be the end of a word
     * ("risk-", "task-"): only a typed prefix or OpenAI's own marker (base64 "OpenAI",
     * inside every key it issues) makes it a key then */
    if (is_tok(before(t, s)) && !typed && !memmem(t + b, end - b, "T3BlbkFJ", 8))
        return 0;
    *os = s;
    *oe = end;
    return 1;
}

static int v_anthropic(const char *t, size_t n, size_t s, size_t e, size_t *os, size_t *oe)
{
    /* trigger: sk-ant-api03- or sk-ant-admin01- then 8 token characters */
    if (e >= 21 && memcmp(t + e - 21, "sk-ant-", 7) == 0)
        s = e - 21;
    else if (e >= 23 && memcmp(t + e - 23, "sk-ant-", 7) == 0)
        s = e - 23;
    else
        return 0;
    /* (glued on the left too: "sk-ant-api03-" is nobody's word ending) */
    const char *dash = memchr(t + s + 7, '-', e - s - 7);
    size_t b = dash ? (size_t)(dash - t) + 1 : e;
    size_t end = tok_extend(t, n, e);
    if (end - b < 32 || !mixed(t + b, end - b))
        return 0;
    *os = s;
    *oe = end;
    return 1;
}

/* ---- JWT ---- */

static int b64url_decode(const char *s, size_t n, char *out, size_t cap, size_t *olen)
{
    unsigned acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i], v;
        if (is_upper(c))
            v = c - 'A';
        else if (is_lower(c))
            v = c - 'a' + 26;
        else if (is_digit(c))
            v = c - '0' + 52;
        else if (c == '-')
            v = 62;
        else if (c == '_')
            v = 63;
        else
            return -1;
        acc = (acc << 6 | (unsigned)v) & 0xFFFFFF;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o >= cap)
                return -1;
            out[o++] = (char)(acc >> bits & 0xFF);
        }
    }
    if (n % 4 == 1)
        return -1;
    *olen = o;
    return 0;
}

static int v_jwt(const char *t, size_t n, size_t s, size_t e, size_t *os, size_t *oe)
{
    /* the trigger ends after the second '.': walk back over payload and header */
    s = e - 1;
    while (s > 0 && is_tok(t[s - 1]))
        s--;
    if (s == 0 || t[s - 1] != '.')
        return 0;
    s--;
    while (s > 0 && is_tok(t[s - 1]))
        s--;
    /* a header starts "eyJ" ('{"' in base64url); letters glued on the left ("xeyJ...",
     * "Bearer:eyJ...") are skipped to it: the header must still decode to JSON naming an
     * algorithm, which no word does */
    const char *d1 = memchr(t + s, '.', e - s);
    if (!d1)
        return 0;
    {
        const char *h = memmem(t + s, (size_t)(d1 - (t + s)), "eyJ", 3);
        if (!h)
            return 0;
        s = (size_t)(h - t);
    }
    if (e - s < 3)
        return 0;
    size_t h_end = (size_t)(d1 - t), p_end = e - 1;
    char hdr[512];
    size_t hl;
    if (h_end - s > 680 || b64url_decode(t + s, h_end - s, hdr, sizeof(hdr) - 1, &hl) < 0)
        return 0;
    hdr[hl] = 0;
    cJSON *j = cJSON_ParseWithLength(hdr, hl);
    const cJSON *alg = j ? cJSON_GetObjectItemCaseSensitive(j, "alg") : NULL;
    int ok = cJSON_IsString(alg), none = ok && strcmp(alg->valuestring, "none") == 0;
    cJSON_Delete(j);
    if (!ok)
        return 0;
    /* payload must be base64url; decode in chunks to avoid a big buffer */
    for (size_t i = h_end + 1; i < p_end; i += 512) {
        char tmp[400];
        size_t l = p_end - i < 512 ? p_end - i : 512, tl;
        if (b64url_decode(t + i, l, tmp, sizeof(tmp), &tl) < 0)
            return 0;
    }
    size_t end = tok_extend(t, n, e);
    if (!none && end - e < 16)
        return 0;
    *os = s;
    *oe = end;
    return 1;
}

/* ---- generic secret ---- */

static int is_secret_char(int c)
{
    return is_alnum(c) || (c && strchr("+/=_-.~!@#$%^&*", c));
}

int policy_secret_value_ok(const char *v, size_t n)
{
    while (n && v[n - 1] == '.')
        n--;
    if (n < 16 || n > 512)
        return 0;
    int cl = 0, u = 0, l = 0, d = 0, sym = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)v[i];
        if (!is_secret_char(c))
            return 0;
        u |= is_upper(c);
        l |= is_lower(c);
        d |= is_digit(c);
        sym |= !is_alnum(c);
    }
    cl = u + l + d + sym;
    if (cl < 2 || memmem(v, n, "//", 2))
        return 0;
    const char *atp = memchr(v, '@', n);
    if (atp && memchr(atp, '.', n - (size_t)(atp - v)))
        return 0; /* an address or user@host, not a secret */
    if (!d && !(u && l && n >= 20))
        return 0;
    /* UUIDs are identifiers */
    if (n == 36 && v[8] == '-' && v[13] == '-' && v[18] == '-' && v[23] == '-')
        return 0;
    return policy_entropy(v, n) >= 3.3;
}

int policy_secret_value_real(const char *v, size_t n)
{
    return policy_secret_value_ok(v, n) && !policy_value_placeholder(v, n) &&
           !policy_value_reference(v, n);
}

int policy_secret_key_like(const char *k, size_t n)
{
    static const struct {
        const char *w;
        size_t n;
    } words[] = {{"password", 8}, {"passwd", 6},      {"pwd", 3},          {"secret", 6},
                 {"token", 5},    {"api_key", 7},     {"apikey", 6},       {"api-key", 7},
                 {"auth", 4},     {"credential", 10}, {"private_key", 11}, {"access_key", 10}};
    char buf[64];
    if (n < 3 || n >= sizeof(buf))
        return 0;
    for (size_t i = 0; i < n; i++)
        buf[i] = (char)lower((unsigned char)k[i]);
    if (n >= 6 && memcmp(buf, "author", 6) == 0 && !(n >= 8 && memcmp(buf, "authoriz", 8) == 0))
        return 0;
    /* one pass: every word starts with one of a, c, p, s, t (called for every string that
     * is a member's value, so twelve strstr calls a string were most of a small part's cost) */
    for (size_t i = 0; i + 3 <= n; i++) {
        char c = buf[i];
        if (c != 'a' && c != 'c' && c != 'p' && c != 's' && c != 't')
            continue;
        for (size_t j = 0; j < sizeof(words) / sizeof(*words); j++)
            if (words[j].w[0] == c && words[j].n <= n - i &&
                memcmp(buf + i, words[j].w, words[j].n) == 0)
                return !policy_context_counter_name(k, n); /* not token_count, api_key_file */
    }
    return 0;
}

static int is_number(const char *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!is_digit(v[i]) && v[i] != '.' && v[i] != ',' && v[i] != '_')
            return 0;
    return n > 0;
}

static int v_generic(const char *t, size_t n, size_t s, size_t e, size_t *os, size_t *oe)
{
    if (is_alpha(before(t, s)))
        return 0;
    size_t i = e;
    /* continuation of the word: secret_key, tokens, authorization (not author) */
    size_t cs = i;
    while (i < n && is_tok((unsigned char)t[i]) && i - cs < 24)
        i++;
    if (i - cs >= 2 && lower(t[cs]) == 'o' && lower(t[cs + 1]) == 'r' &&
        !(i - cs >= 4 && lower(t[cs + 2]) == 'i' && lower(t[cs + 3]) == 'z'))
        return 0;
    if (i - cs >= 2 && strncasecmp(t + cs, "iz", 2) == 0)
        return 0; /* tokenizer */
    if (i - cs >= 3 && strncasecmp(t + cs, "ary", 3) == 0)
        return 0; /* secretary */
    /* the whole name the word is part of: a count or a size (token_count, max_tokens,
     * key_count), or a member access (secrets.X, password.length), holds no secret */
    size_t ns = s;
    while (ns > 0 && s - ns < 32 && is_tok((unsigned char)t[ns - 1]))
        ns--;
    if (policy_context_counter_name(t + ns, i - ns))
        return 0;
    if (before(t, ns) == '[' && at(t, n, i) == ']')
        return 0; /* our own placeholder, [PRIVATE_KEY_1], after redaction */
    if (i + 1 < n && t[i] == '.' && (is_alpha(at(t, n, i + 1)) || t[i + 1] == '_'))
        return 0;
    size_t lim = i + 160 < n ? i + 160 : n;
    /* separators between the word and its value: "= ", "\": \"", ":=", "=>" */
    while (i < lim && strchr(" \t\"'`:=>,;({[", t[i]) && t[i])
        i++;
    /* the value is among the next three words on the line; short words (de, la, est, is,
     * the) and the pieces of a non-ASCII word (f|ü|r) do not count, and a word followed by
     * ':' or '=' gives one more ("Kennwort für den Testserver: ...") */
    int budget = 3, bonus = 1;
    for (int k = 0; k < 10 && budget > 0 && i < lim; k++) {
        while (i < lim && !is_secret_char((unsigned char)t[i])) {
            if (t[i] == '\n' || t[i] == ';')
                return 0; /* the value ends with its line or its key=value pair */
            i++;
        }
        size_t ts = i;
        while (i < n && is_secret_char((unsigned char)t[i]))
            i++;
        if (i == ts)
            return 0;
        size_t te = i;
        while (te > ts && t[te - 1] == '.')
            te--;
        if (k == 0 && is_number(t + ts, te - ts))
            return 0; /* the value is a number: max_tokens: 4096 */
        /* ${{ secrets.X }}, process.env.X, os.environ["X"], $VAR: the value is elsewhere */
        if (te > ts && (t[ts] == '$' || policy_value_reference(t + ts, te - ts) ||
                        policy_context_reference(t, ts)))
            continue; /* a fallback literal after it is still a value */
        if (before(t, ts) == '[' && at(t, n, te) == ']')
            continue; /* [PASSWORD], [CREDENTIAL_URI_1] */
        if (policy_secret_value_ok(t + ts, te - ts)) {
            if (policy_value_placeholder(t + ts, te - ts))
                return 0; /* YOUR_API_KEY_HERE_1234 */
            *os = ts;
            *oe = te;
            return 1;
        }
        int letters = 1;
        for (size_t j = ts; j < te && letters; j++)
            letters = is_alpha(t[j]);
        if (letters && (te - ts <= 3 || before(t, ts) >= 0x80 || at(t, n, te) >= 0x80))
            continue;
        budget--;
        if (bonus && (at(t, n, i) == ':' || at(t, n, i) == '=')) {
            bonus = 0;
            budget++;
        }
    }
    return 0;
}

/* ---- credentials in URIs and connection strings ---- */

/* Ends a URI's authority (and so its userinfo) */
static int is_uri_stop(int c)
{
    return c <= ' ' || c == '/' || c == '?' || c == '#' || c == '"' || c == '\'' || c == '`' ||
           c == '<' || c == '>' || c == '\\';
}

/* scheme://[user]:password@host -- the trigger "://" ends at e. The password is what
 * lies between the first ':' and the last '@' of the authority, so an unescaped '@'
 * inside it is kept; a '/' inside it ends the authority early (not found). */
static int uri_password(const char *t, size_t n, size_t e, size_t *os, size_t *oe)
{
    size_t k = e - 3, sc = k;
    while (sc > 0 && k - sc < 32 &&
           (is_alnum(t[sc - 1]) || t[sc - 1] == '+' || t[sc - 1] == '.' || t[sc - 1] == '-'))
        sc--;
    if (k - sc < 2 || !is_alpha(t[sc]))
        return 0;
    size_t lim = n - e > 512 ? e + 512 : n, atp = 0, colon = 0;
    for (size_t i = e; i < lim && !is_uri_stop((unsigned char)t[i]); i++) {
        if (t[i] == '@')
            atp = i;
        else if (t[i] == ':' && !colon && !atp)
            colon = i;
    }
    if (!atp || !colon || colon + 1 == atp)
        return 0;
    int h = at(t, n, atp + 1);
    if (!is_alnum(h) && h != '[')
        return 0;
    if (policy_value_placeholder(t + colon + 1, atp - colon - 1))
        return 0;
    *os = colon + 1;
    *oe = atp;
    return 1;
}

/* Key=value pairs: ADO.NET/ODBC "...;Password=...;" and "Pwd=", Azure "AccountKey=" and
 * "SharedAccessKey=", a URI's query "?password=" / "&pwd=". The trigger ends after the
 * '='. The key must be a pair's own key: after ';', '?' or '&', or first in a string
 * whose value ends in ';' before another pair. Not "DB_PASSWORD=" or "--password=" (the
 * generic detector's, by entropy). */
static int conn_password(const char *t, size_t n, size_t e, size_t *os, size_t *oe)
{
    static const char *const keys[] = {"sharedaccesskey", "accountkey", "password", "passwd",
                                       "pwd"};
    size_t k = e - 1, ks = 0;
    int found = 0;
    while (k > 0 && (t[k - 1] == ' ' || t[k - 1] == '\t'))
        k--;
    for (size_t i = 0; i < sizeof(keys) / sizeof(*keys) && !found; i++) {
        size_t l = strlen(keys[i]);
        if (k >= l && strncasecmp(t + k - l, keys[i], l) == 0) {
            ks = k - l;
            found = 1;
        }
    }
    if (!found)
        return 0;
    size_t b = ks;
    while (b > 0 && (t[b - 1] == ' ' || t[b - 1] == '\t'))
        b--;
    int p = before(t, b), query = p == '?' || p == '&', pair = p == ';';
    if (!query && !pair && (is_alnum(p) || p == '_' || p == '-' || p == '.' || p == '$'))
        return 0;
    size_t v = e, vs, ve, after;
    while (v < n && (t[v] == ' ' || t[v] == '\t'))
        v++;
    if (v < n && (t[v] == '"' || t[v] == '\'' || t[v] == '{')) {
        char close = t[v] == '{' ? '}' : t[v];
        size_t room = n - v - 1 < 256 ? n - v - 1 : 256;
        const char *q = memchr(t + v + 1, close, room);
        if (!q)
            return 0;
        vs = v + 1;
        ve = (size_t)(q - t);
        after = ve + 1;
    } else {
        vs = ve = v;
        while (ve < n && ve - vs < 256) {
            int c = (unsigned char)t[ve];
            if (c == ';' || c <= ' ' || c == '"' || c == '\'' || c == '`' ||
                (query && (c == '&' || c == '#')))
                break;
            ve++;
        }
        after = ve;
    }
    if (!query && !pair) {
        /* first pair of a connection string: "Password=x;Server=y" */
        size_t a = after < n && t[after] == ';' ? after + 1 : n, w;
        while (a < n && t[a] == ' ')
            a++;
        for (w = a; w < n && (is_alnum(t[w]) || t[w] == ' ' || t[w] == '_');)
            w++;
        if (a >= n || w == a || w >= n || t[w] != '=')
            return 0;
    }
    if (ve == vs || policy_value_placeholder(t + vs, ve - vs))
        return 0;
    *os = vs;
    *oe = ve;
    return 1;
}

static int v_credential(const char *t, size_t n, size_t s, size_t e, size_t *os, size_t *oe)
{
    (void)s;
    if (e >= 3 && memcmp(t + e - 3, "://", 3) == 0)
        return uri_password(t, n, e, os, oe);
    return e >= 1 && t[e - 1] == '=' && conn_password(t, n, e, os, oe);
}

/* ---- digit clusters: phone, credit card, IBAN, US SSN ----
 *
 * Character-class patterns like \b[0-9](?:[ -]?[0-9]){12,18} run at a few hundred MB/s in
 * Vectorscan on digit-dense text, so these four are found by one hand-written pass: skip
 * 8 bytes at a time while no byte is a digit, take each cluster of digits and separators,
 * and try the validators on windows that start and end at digit-group boundaries. */

static inline int has_digit8(uint64_t x)
{
    const uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;
    /* bytes b with '0' <= b <= '9': (b + 0x50) sets bit 7 for b >= 0x30 and (b + 0x46) for b >=
     * 0x3A */
    uint64_t low7 = x & ~high;
    uint64_t ge0 = low7 + ones * (0x80 - '0');
    uint64_t gt9 = low7 + ones * (0x80 - '9' - 1);
    return ((ge0 & ~gt9 & ~x) & high) != 0;
}

/* Separators inside a phone number (and an SSN) */
static int is_csep(int c)
{
    return c == ' ' || c == '-' || c == '.' || c == '(' || c == ')' || c == '/';
}

/* ... and also inside a card number or an IBAN */
static int is_wsep(int c)
{
    return is_csep(c) || c == ',' || c == '\t' || c == '\n' || c == '\r';
}

/* A letter is glued before t[i]: "tel4155550132", or an abbreviation's dot after a letter,
 * "Tel.4155550132". */
static int glued_before(const char *t, size_t i)
{
    int p = before(t, i);
    return is_alpha(p) || (p == '.' && i >= 2 && is_alpha(before(t, i - 1)));
}

/* The class of the label before the cluster at cs, asked once per cluster (*memo: -1 not
 * asked yet). */
static enum policy_ctx cluster_label(const char *t, size_t n, size_t cs, int *memo)
{
    if (*memo < 0)
        *memo = (int)policy_context_label(t, n, cs);
    return (enum policy_ctx) * memo;
}

/* The number of digit groups in [s, e) when each separator between them is one or two
 * spaces, dashes or dots ("+1 415 555 0132", "+1 415-555-0132", "+49.30.1234567",
 * "+1  415  555  0132"), else 0: the
 * grouping a person gives a number to read it out, which a glued letter does not make less
 * of a phone number. */
static int read_out_groups(const char *t, size_t s, size_t e)
{
    int groups = 0;
    for (size_t i = s; i < e;) {
        if (!is_digit(t[i]))
            return 0;
        while (i < e && is_digit(t[i]))
            i++;
        groups++;
        if (i == e)
            break;
        for (int k = 0; k < 2 && i < e && (t[i] == ' ' || t[i] == '-' || t[i] == '.'); k++)
            i++;
        if (i >= e || !is_digit(t[i]))
            return 0;
    }
    return groups;
}

/* A '+'-prefixed number whose groups are split by '/', ',', a tab or a line break (one
 * kind throughout): "+1/415/555/0132", "+44,20,7946,0958", a number spread over lines. A
 * list's separators as often as a phone's, so the shape must be an international number's:
 * a 1-3 digit country code, then 2-4 digit groups, 8-15 digits in all (+1: NANP's). The
 * cluster [cs, ce) is a wide one (policy_scan_digits); the '+' is right before cs. */
static int try_wide_phone(const char *t, size_t n, size_t cs, size_t ce, policy_emit emit,
                          void *arg)
{
    char sep[3] = {0}, dig[16];
    int groups[8], ng = 0, digits = 0;
    size_t i = cs, end = cs;
    int p;

    if (cs == 0 || t[cs - 1] != '+')
        return 0;
    p = before(t, cs - 1);
    if (is_digit(p) || p == '+' || p == '_')
        return 0;
    while (i < ce && ng < 8) {
        size_t g = i, sl;
        while (i < ce && is_digit(t[i])) {
            if (digits < 16)
                dig[digits] = t[i];
            digits++;
            i++;
        }
        if (i == g)
            break;
        groups[ng++] = (int)(i - g);
        end = i;
        for (sl = 0; i + sl < ce && sl < 2 && !is_digit(t[i + sl]); sl++)
            ;
        if (sl == 0 || i + sl >= ce)
            break;
        if (!sep[0]) {
            if (!((sl == 1 && t[i] && strchr("/,\t\n\r", t[i])) ||
                  (sl == 2 && t[i] == '\r' && t[i + 1] == '\n')))
                return 0;
            memcpy(sep, t + i, sl);
        } else if (strlen(sep) != sl || memcmp(sep, t + i, sl) != 0) {
            break;
        }
        i += sl;
    }
    if (!sep[0] || ng < 3 || digits < 8 || digits > 15 || dig[0] == '0' || groups[0] > 3 ||
        is_digit(at(t, n, end)))
        return 0;
    for (int k = 1; k < ng; k++)
        if (groups[k] < 2 || groups[k] > 4)
            return 0;
    if (dig[0] == '1' && !(digits == 11 && ng == 4 && groups[0] == 1 && groups[1] == 3 &&
                           groups[2] == 3 && dig[1] >= '2' && dig[4] >= '2'))
        return 0;
    return emit(arg, DET_PHONE, cs - 1, end);
}

static int try_phones(const char *t, size_t n, size_t cs, size_t ce, int *cs_label,
                      policy_emit emit, void *arg)
{
    size_t covered = cs;
    for (size_t gs = cs; gs < ce; gs++) {
        if (!is_digit(t[gs]) || (gs > cs && is_digit(t[gs - 1])) || gs < covered)
            continue;
        size_t st = gs;
        int p = before(t, gs), paren = 0, glued = 0;
        if ((p == '+' || p == '(') && gs > 0) {
            st = gs - 1;
            paren = p == '(';
            p = before(t, st);
            if (is_digit(p) || p == '_' || (t[st] == '+' && p == '+'))
                continue;
            glued = is_alpha(p);
        } else if (gs == cs) {
            glued = glued_before(t, gs);
            if (!glued && (is_digit(p) || p == '_' || p == '.' || p == '-' || p == '/'))
                continue;
        } else {
            continue; /* later groups only from a '+' or '(': digits glued to others are not */
        }
        /* from the '(' of "(030) 1234567", else from the digit: "(030/1234567)" */
        for (int tries = paren ? 2 : 1; tries-- > 0; st = gs) {
            size_t ge = ce - st > 24 ? st + 24 : ce;
            for (; ge > gs; ge--) {
                if (!is_digit(t[ge - 1]) || (ge < ce && is_digit(t[ge])))
                    continue;
                int a = at(t, n, ge);
                if (is_digit(a) || a == '_' ||
                    ((a == '.' || a == '-' || a == '/') && is_digit(at(t, n, ge + 1))) ||
                    !phone_ok(t, n, st, ge))
                    continue;
                /* glued to letters, a number is one only right after a phone label:
                 * "tel4155550132x", "Tel.+49 30 1234567" (asked last: it costs a walk) */
                /* ... unless it is an international number grouped to be read out,
                 * "q+1 415 555 0132": a glued letter does not make that anything else */
                if ((glued || is_alpha(a)) &&
                    !(t[st] == '+' && read_out_groups(t, st + 1, ge) >= 3) &&
                    (st == cs ? cluster_label(t, n, cs, cs_label)
                              : policy_context_label(t, n, st)) != POLICY_CTX_PHONE)
                    continue;
                break;
            }
            if (ge > gs) {
                if (emit(arg, DET_PHONE, st, ge) < 0)
                    return -1;
                covered = ge;
                break;
            }
        }
    }
    return 0;
}

/* Another group of digits next to a card at [s, e), over at most two separator bytes: the
 * card is then one entry of a list or a table, not a number of its own. */
static int digit_group_near(const char *t, size_t n, size_t s, size_t e)
{
    size_t i = s;
    for (int k = 0; k < 2 && i > 0 && is_wsep((unsigned char)t[i - 1]); k++)
        i--;
    if (i < s && is_digit(before(t, i)))
        return 1;
    i = e;
    for (int k = 0; k < 2 && i < n && is_wsep((unsigned char)t[i]); k++)
        i++;
    return i > e && is_digit(at(t, n, i));
}

/* Card numbers in the cluster [cs, ce) (digits and is_wsep separators). A card starts at
 * the cluster's start or after white space or a ','; starts before `from` are not tried
 * (the digits of an IBAN-shaped token). Letters glued on either side do not hide a card
 * ("cardx4111111111111111x"), but then it is of a common brand and length (iin_common: an
 * EAN-13 product code or a 19-digit id is no card) and no window of a hex digest.
 * Separators other than one space, dash, '/' or '.' (a comma, a tab, a line break, a
 * double space) are a list's as often as a card's: the card must then be the whole list,
 * and of a common brand. */
static int try_cards(const char *t, size_t n, size_t cs, size_t ce, size_t from, policy_emit emit,
                     void *arg)
{
    size_t covered = from;
    for (size_t gs = cs, next; gs < ce; gs = next) {
        /* gs starts a group of digits; next is where the following group starts */
        size_t g0 = gs;
        while (g0 < ce && is_digit(t[g0]))
            g0++;
        for (next = g0; next < ce && !is_digit(t[next]);)
            next++;
        g0 -= gs;
        if (gs < covered || (g0 != 4 && (g0 < 13 || g0 > 19)))
            continue; /* a card starts with a group of four or is one run */
        int p = before(t, gs);
        if (gs == cs ? (p == '.' || p == '+') : !(is_ws(p) || p == ','))
            continue; /* "+4915..." is a phone number, "0.4111..." a fraction */
        int glued = is_alpha(p) || p == '_';
        /* group ends within reach, with the digit count up to each */
        size_t top = ce - gs > 32 ? gs + 32 : ce, ends[16], k = gs;
        int cnt[16], ne = 0, d = 0;
        while (k < top && ne < 16) {
            if (is_digit(t[k])) {
                d++;
                k++;
                if (k == ce || !is_digit(t[k])) {
                    ends[ne] = k;
                    cnt[ne++] = d;
                }
            } else {
                k++;
            }
        }
        for (int q = ne - 1; q >= 0; q--) {
            size_t ge = ends[q];
            int kind;
            if (cnt[q] < 13 || cnt[q] > 19)
                continue;
            int a = at(t, n, ge), g = glued || is_alpha(a) || a == '_';
            if ((a == '.' || a == '-') && is_digit(at(t, n, ge + 1)))
                continue;
            if (!card_digits_ok(t, gs, ge, g, &kind) ||
                ((kind == SEP_COMMA || kind == SEP_WS) && digit_group_near(t, n, gs, ge)) ||
                (g && kind == SEP_NONE && in_hex_blob(t, n, gs, ge)))
                continue;
            if (emit(arg, DET_CREDIT_CARD, gs, ge) < 0)
                return -1;
            covered = ge;
            break;
        }
    }
    return 0;
}

/* The cluster at cs continues a token that starts like an IBAN, "XY12 4111 1111 ..." or
 * "GB82 WEST 1234 ...": its digits are that account number's (valid or not), never a
 * card, a phone or an SSN of their own. Letters glued before the country code
 * ("ibanXY12 4111 ...") do not change that when the check digits stand as a group. */
static int iban_shaped(const char *t, size_t n, size_t cs)
{
    size_t i = cs, len;
    if (i >= 2 && is_upper(t[i - 1]) && is_upper(t[i - 2]) &&
        (!is_alnum(before(t, i - 2)) ||
         (is_digit(at(t, n, i)) && is_digit(at(t, n, i + 1)) && sep_at(t, n, i + 2, &len) &&
          is_alnum(at(t, n, i + 2 + len)))))
        return 1;
    for (int k = 0; k < 9 && i >= 5 && t[i - 1] == ' '; k++) {
        size_t g = i - 5;
        for (size_t j = g; j < g + 4; j++)
            if (!is_upper(t[j]) && !is_digit(t[j]))
                return 0;
        if (is_upper(t[g]) && is_upper(t[g + 1]) && is_digit(t[g + 2]) && is_digit(t[g + 3]))
            return 1;
        i = g;
    }
    return 0;
}

/* What the digit pass emits goes through here: a number right after a document label
 * ("マイナンバー", "旅券番号", "Order no.") is that document's, so no phone, card or SSN. */
struct digit_emit {
    policy_emit emit;
    void *arg;
    const char *t;
    size_t n;
    unsigned emitted;
};

static int digit_emit(void *arg, unsigned det, size_t s, size_t e)
{
    struct digit_emit *de = arg;
    if (det != DET_IBAN && policy_context_label(de->t, de->n, s) == POLICY_CTX_DOCNUM)
        return 0;
    de->emitted++;
    return de->emit(de->arg, det, s, e);
}

/* Phones, SSNs and IBANs in one phone-style cluster [cs, last) of ndig digits (digits and
 * is_csep separators, at most two in a row). *card_from is moved past the cluster when it
 * belongs to an IBAN-shaped token. */
static int scan_cluster(const char *t, size_t n, size_t cs, size_t last, size_t ndig,
                        size_t *card_from, struct digit_emit *de)
{
    if (cs >= 2 && is_upper(t[cs - 1]) && is_upper(t[cs - 2])) {
        size_t os, oe;
        if (v_iban(t, n, cs - 2, last, &os, &oe) && de->emit(de->arg, DET_IBAN, os, oe) < 0)
            return -1;
    }
    if (ndig < 7)
        return 0;
    if (iban_shaped(t, n, cs)) {
        *card_from = last;
        return 0;
    }
    de->emitted = 0;
    int label = -1;
    if (ndig >= 9) {
        for (size_t gs = cs; gs + 11 <= last; gs++) {
            int p = before(t, gs);
            if (!is_digit(t[gs]) || is_digit(p) ||
                (gs == cs ? (p == '_' || p == '.' || p == '-') : p != ' '))
                continue;
            if (ssn_at(t, n, gs, gs == cs && is_alpha(p)) &&
                digit_emit(de, DET_US_SSN, gs, gs + 11) < 0)
                return -1;
        }
    }
    if (try_phones(t, n, cs, last, &label, digit_emit, de) < 0)
        return -1;
    /* a bare run (no separators) is a phone or an SSN only after its label; letters glued
     * on either side do not hide it there ("tel4155550132x", "ssn536220873") */
    if (de->emitted || last - cs != ndig || ndig < 9 || ndig > 12)
        return 0;
    int p = before(t, cs), a = at(t, n, last);
    if ((!glued_before(t, cs) && (p == '_' || p == '.' || p == '-' || p == '+' || p == '/')) ||
        a == '_' || ((a == '.' || a == '-' || a == '/') && is_digit(at(t, n, last + 1))))
        return 0;
    enum policy_ctx cx = cluster_label(t, n, cs, &label);
    if (cx == POLICY_CTX_SSN && ndig == 9 && ssn_digits_ok(t + cs)) {
        if (de->emit(de->arg, DET_US_SSN, cs, last) < 0)
            return -1;
    } else if (cx == POLICY_CTX_PHONE && bare_phone_ok(t + cs, ndig)) {
        if (de->emit(de->arg, DET_PHONE, cs, last) < 0)
            return -1;
    }
    return 0;
}

/* Each digit starts a phone-style cluster: digits and is_csep separators, at most two in a
 * row. Clusters joined by at most two separators of a card or an IBAN (is_wsep: also ',',
 * tab, line breaks) form a wide cluster; each cluster is scanned for phones, SSNs and
 * IBANs, each wide cluster as a whole for cards. One pass over the digits. */
int policy_scan_digits(const char *t, size_t n, policy_emit emit, void *arg)
{
    struct digit_emit de = {emit, arg, t, n, 0};
    size_t i = 0;
    while (i < n) {
#ifdef __SSE2__
        {
            const __m128i lo = _mm_set1_epi8('0' - 1), hi = _mm_set1_epi8('9' + 1);
            while (i + 16 <= n) {
                __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(t + i));
                int m =
                    _mm_movemask_epi8(_mm_and_si128(_mm_cmpgt_epi8(v, lo), _mm_cmplt_epi8(v, hi)));
                if (m) {
                    i += (size_t)__builtin_ctz((unsigned)m);
                    break;
                }
                i += 16;
            }
        }
#endif
        while (i + 8 <= n) {
            uint64_t x;
            memcpy(&x, t + i, 8);
            if (has_digit8(x))
                break;
            i += 8;
        }
        size_t lim = i + 8 < n ? i + 8 : n;
        while (i < lim && !is_digit(t[i]))
            i++;
        if (i >= lim)
            continue;
        size_t wcs = i, wdig = 0, card_from = i, last;
        for (;;) {
            size_t cs = i, ndig = 0;
            int nsep = 0;
            last = i;
            while (i < n) {
                int c = (unsigned char)t[i];
                if (is_digit(c)) {
                    ndig++;
                    last = ++i;
                    nsep = 0;
                } else if (is_csep(c) && ++nsep <= 2) {
                    i++;
                } else {
                    break;
                }
            }
            if (scan_cluster(t, n, cs, last, ndig, &card_from, &de) < 0)
                return -1;
            wdig += ndig;
            /* joined to the next cluster by at most two separators of a card or an IBAN */
            size_t j = last;
            while (j < n && j - last < 2 && is_wsep((unsigned char)t[j]))
                j++;
            if (j == last || j >= n || !is_digit(t[j]))
                break;
            i = j;
        }
        if (wdig >= 13 && try_cards(t, n, wcs, last, card_from, digit_emit, &de) < 0)
            return -1;
        if (wdig >= 8 && try_wide_phone(t, n, wcs, last, digit_emit, &de) < 0)
            return -1;
        i = last;
    }
    return 0;
}

const policy_validator policy_builtin_validators[DET_N_BUILTIN] = {
    [DET_PRIVATE_KEY] = v_private_key,
    [DET_ANTHROPIC_KEY] = v_anthropic,
    [DET_OPENAI_KEY] = v_openai,
    [DET_GITHUB_TOKEN] = v_github,
    [DET_AWS_ACCESS_KEY] = v_aws,
    [DET_JWT] = v_jwt,
    [DET_CREDENTIAL_URI] = v_credential,
    [DET_GENERIC_SECRET] = v_generic,
    [DET_CREDIT_CARD] = NULL, /* policy_scan_digits */
    [DET_IBAN] = NULL,
    [DET_US_SSN] = NULL,
    [DET_EMAIL] = v_email,
    [DET_PHONE] = NULL,
    [DET_IPV4] = v_ipv4,
};
