/* fuzz_egress.c -- libFuzzer driver for the egress guarantee (issue 13): a known secret or
 * piece of PII, spelt in one of the evasive encodings, planted in any string value or any
 * member name of a random request body, either makes proxy_decide refuse the request or is
 * absent from the body that leaves (d.outbound), in every spelling.
 *
 * Input (bytes past the end read as 0):
 *
 *   byte 0  bit 0    the client's API (0 OpenAI Chat, 1 Anthropic Messages)
 *           bit 1    the model: 0 "om" (an OpenAI provider), 1 "am" (an Anthropic one), so
 *                    one body in two is translated
 *           bit 2    glue a letter to the value (not to the GitHub token; see below)
 *           bit 3    also write some of the value's characters as JSON \u escapes
 *           bits 4-7 the context around the value in its string (bare, in a sentence, after
 *                    a label, ...)
 *   byte 1  the secret (mod 7) and, in bits 4-7, its spelling (grouped or not)
 *   byte 2  the encoding family (mod ENC_COUNT)
 *   byte 3  density: the chance that each eligible character is encoded (one always is)
 *   bytes 4-7  seed of the generator for the encoding's details and the context words
 *   bytes 8-9  which slot receives the value, counted from the last (mod the number of
 *              slots in the body)
 *   bytes 10-  the body's shape: messages, parts, tool calls and their arguments (a JSON
 *              text in a string), tools and their schemas, metadata, stop sequences,
 *              unknown members, random nesting of objects and arrays; the words of every
 *              other string and member name
 *
 * The body is generated twice from the same bytes: once to count its slots (every string
 * value and every member name, the API's own names and enum values included), once to
 * write it with the value in the chosen slot. The value is always whole inside one string
 * (a value split across two strings is legitimately unreadable).
 *
 * Secrets (rule: block `secrets`): an AWS access key id, a GitHub token, a PEM RSA private
 * key block. PII (rule: redact `pii`, then allow): a Visa card number, an e-mail address, a
 * US phone number, a German IBAN.
 *
 * Encodings: plain; JSON \u escapes; full-width forms; other compatibility forms (small
 * form '@', other scripts' and mathematical digits, super/subscript and circled digits,
 * mathematical letters); invisible characters inserted (ZWSP, ZWNJ, ZWJ, word joiner, soft
 * hyphen, BOM, CGJ, LRM/RLM, Mongolian vowel separator, variation selector, invisible
 * operators); Cyrillic and Greek look-alikes; Unicode space and dash kinds as digit-run
 * separators; other ASCII separators ('/', '.', ',', line break, tab, two spaces); '@'
 * written %40, &#64;, &#064;, &#x40;, &#x0040;, &commat; or a written-out \u0040.
 *
 * Invariant (abort with a report on violation): proxy_decide returned -1 (refused), or the
 * verdict is block, or none of these holds:
 *   - the planted spelling's bytes occur verbatim in d.outbound;
 *   - a canonical ASCII spelling of the value (JSON-escaped) occurs verbatim;
 *   - the value's skeleton (letters, digits and '@', lower case) occurs in the skeleton of
 *     any string or member name of d.outbound parsed with cJSON (and of any string that is
 *     itself a JSON text, e.g. tool-call arguments, parsed again), or of the whole outbound
 *     with its JSON escapes decoded, after a reference normalisation written here,
 *     independent of policy/normalize.c (invisible characters dropped; full-width,
 *     compatibility and look-alike forms mapped to ASCII; escaped '@' decoded);
 *   - a run of at least half the skeleton (and 10 characters) occurs there (a value
 *     partly redacted).
 *
 * Glued letters apply only where a letter cannot change what the value is (card, phone,
 * e-mail, PEM block, AWS key id, IBAN; after an e-mail address also a digit, "-1" or ".x"):
 * a letter glued to this GitHub token makes another token (a glued one must carry its
 * CRC-32, which this made-up one does not).
 *
 * Known product gaps, found by this harness (a leak-* input in fuzz/corpus/egress/ would
 * reproduce one; regress-* inputs are gaps it found that have been fixed since). The
 * harness does not abort on them unless EGRESS_ALL=1, so that it keeps finding new ones;
 * gap_known() recognises exactly these and nothing else (the families it found first --
 * enum-shaped values and "model" at any depth skipping the detectors, escapes inside tool
 * arguments, '@' spelt with escapes or leading zeros, rarer look-alike letters -- are fixed
 * and abort again if they come back):
 * None is left: phone numbers glued to a letter, phone groups split by '/', ',', a tab or
 * a line break, an '@' escaped a third level deep in tool arguments and an e-mail address
 * followed by a one-letter label ("jane.doe@example.com.x") were gaps here, closed since:
 * they abort again if they come back.
 *
 * Environment: EGRESS_STATS=1 prints, at exit, outcomes per secret and encoding and per
 * client/provider API, the known gaps by family, and the first reports of each; EGRESS_ALL=1
 * aborts on known gaps too; EGRESS_DUMP=1 prints every body, its outcome and its outbound;
 * EGRESS_SURVEY[=FILE] never aborts (every leak counts as a gap) and appends one line per
 * leak or refusal to FILE, to survey what fails. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cJSON.h>
#include <sodium.h>

#include "fuzz/fuzz_util.h"
#include "proxy/decide.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char YAML[] =
    "providers:\n"
    "  o: {type: openai, zone: external, base_url: \"https://o.example/v1\"}\n"
    "  a: {type: anthropic, zone: external, base_url: \"https://a.example\"}\n"
    "models:\n"
    "  - {name: om, provider: o, upstream_model: gpt-x}\n"
    "  - {name: am, provider: a}\n"
    "rules:\n"
    "  - name: no-secrets\n"
    "    if: {detected: [secrets]}\n"
    "    then: {action: block}\n"
    "  - name: mask-pii\n"
    "    if: {detected: [pii]}\n"
    "    then: {action: redact, detectors: [pii]}\n"
    "  - name: rest\n"
    "    then: {action: allow}\n";

static struct config *cfg;
static struct policy *pol;

/* ---- the secrets ---- */

enum { S_AWS, S_GHP, S_PEM, S_CARD, S_EMAIL, S_PHONE, S_IBAN, S_COUNT };

#define PEM_BODY                                                                                   \
    "MIIEpAIBAAKCAQEAzFAKE7kq9Wd3Lr2Xv8Tn5Bp1Mc6Hy4Js0GfQeR2tY7uI9oP3aS5dF8gH1jK4lZ6x\n"           \
    "EXAMPLEbV5nQ2wR8tK3pL7xZ9cD1mF4hJ6sA0gY2uI8oE5rT3wQ9vB7nM1kL4jH6gF2dS8aP0oI3uY5t\n"           \
    "R7eW1qA9zX4cV6bN8mK2lJ5hG3fD0sA7pO9iU1yT4rE6wQ8zX2cV5bN7mL3kJ9hG1fD4sA6pO0iU8yT2"

static const struct secret {
    const char *name;
    int is_secret;            /* the `secrets` group: blocked; otherwise `pii`: redacted */
    const char *spellings[3]; /* canonical ASCII spellings; NULL-padded */
    const char *needle;       /* what must not leave: its skeleton is searched for */
    int digits;               /* separators in digit runs apply */
    int gluable;              /* a glued letter leaves the value what it is */
} SECRETS[S_COUNT] = {
    [S_AWS] = {"aws_access_key", 1, {"AKIAQFAKE7EXAMPLE2XY"}, "AKIAQFAKE7EXAMPLE2XY", 0, 1},
    [S_GHP] = {"github_token",
               1,
               {"ghp_FAKEq8Wm2ZtR4vYx7Kp3Ln6Bc9Dj1Hs5Gf0A"},
               "ghp_FAKEq8Wm2ZtR4vYx7Kp3Ln6Bc9Dj1Hs5Gf0A",
               0,
               0},
    [S_PEM] = {"private_key",
               1,
               {"-----BEGIN RSA PRIVATE KEY-----\n" PEM_BODY "\n-----END RSA PRIVATE KEY-----",
                "-----BEGIN PRIVATE KEY-----\n" PEM_BODY "\n-----END PRIVATE KEY-----"},
               PEM_BODY,
               0,
               1},
    [S_CARD] = {"credit_card",
                0,
                {"4111 1111 1111 1111", "4111-1111-1111-1111", "4111111111111111"},
                "4111111111111111",
                1,
                1},
    [S_EMAIL] = {"email", 0, {"jane.doe@example.com"}, "jane.doe@example.com", 0, 1},
    [S_PHONE] = {"phone",
                 0,
                 {"+1 415 555 0132", "+1 415-555-0132", "+1-415-555-0132"},
                 "+1 415 555 0132",
                 1,
                 1},
    [S_IBAN] = {"iban",
                0,
                {"DE89 3704 0044 0532 0130 00", "DE89370400440532013000"},
                "DE89370400440532013000",
                1,
                1},
};

/* ---- the encodings ---- */

enum {
    ENC_PLAIN,
    ENC_JSON_ESCAPE,
    ENC_FULLWIDTH,
    ENC_COMPAT,
    ENC_INVISIBLE,
    ENC_LOOKALIKE,
    ENC_SEP_UNICODE,
    ENC_SEP_ASCII,
    ENC_AT_ESCAPE,
    ENC_COUNT
};

static const char *const ENC_NAMES[ENC_COUNT] = {"plain",        "json-escape",     "full-width",
                                                 "compat-forms", "invisible",       "look-alike",
                                                 "sep-unicode",  "sep-ascii-other", "at-escape"};

static const uint32_t INVISIBLES[] = {0x200B, 0x200C, 0x200D, 0x2060, 0x00AD, 0xFEFF, 0x034F,
                                      0x200E, 0x200F, 0x180E, 0xFE0F, 0x2061, 0x2062, 0x2063};

static const uint32_t SEP_UNICODE[] = {0x00A0, 0x2009, 0x202F, 0x2007, 0x2002, 0x2003,
                                       0x200A, 0x205F, 0x3000, 0x2013, 0x2014, 0x2212,
                                       0x2010, 0x2011, 0x2012, 0xFE63, 0xFF0D, 0x2015};

static const char *const SEP_ASCII[] = {"/", ".", ",", "\n", "\t", "  ", "\r\n"};

static const char *const AT_ESCAPES[] = {"%40",    "&#64;",    "&#064;",   "&#x40;",
                                         "&#X40;", "&#x0040;", "&commat;", "\\u0040"};

/* Latin letter -> Cyrillic or Greek look-alikes (confusables.txt) */
static const struct {
    char c;
    uint32_t cp[3];
} LOOKALIKES[] = {
    {'A', {0x0410, 0x0391}}, {'B', {0x0412, 0x0392}}, {'C', {0x0421, 0x03F9}},
    {'E', {0x0415, 0x0395}}, {'H', {0x041D, 0x0397}}, {'I', {0x0406, 0x0399, 0x04C0}},
    {'J', {0x0408}},         {'K', {0x041A, 0x039A}}, {'M', {0x041C, 0x039C}},
    {'N', {0x039D}},         {'O', {0x041E, 0x039F}}, {'P', {0x0420, 0x03A1}},
    {'S', {0x0405}},         {'T', {0x0422, 0x03A4}}, {'X', {0x0425, 0x03A7}},
    {'Y', {0x04AE, 0x03A5}}, {'Z', {0x0396}},         {'a', {0x0430}},
    {'c', {0x0441, 0x03F2}}, {'d', {0x0501}},         {'e', {0x0435}},
    {'h', {0x04BB}},         {'i', {0x0456}},         {'j', {0x0458, 0x03F3}},
    {'o', {0x043E, 0x03BF}}, {'p', {0x0440, 0x03C1}}, {'q', {0x051B}},
    {'s', {0x0455}},         {'v', {0x03BD}},         {'w', {0x051D}},
    {'x', {0x0445}},         {'y', {0x0443}},
};

/* look-alikes policy/normalize.c does not map (known gap, see the header) */
static const uint32_t RARE_LOOKALIKES[] = {0x03F2, 0x03F3, 0x03F9, 0x04AE, 0x04C0};

/* ---- small helpers ---- */

struct buf {
    char *p;
    size_t n, cap;
};

static void put(struct buf *b, const void *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (b->n + n + 1 > cap)
            cap *= 2;
        b->p = realloc(b->p, cap);
        if (!b->p)
            abort();
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void puts_(struct buf *b, const char *s)
{
    put(b, s, strlen(s));
}

static void putf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(struct buf *b, const char *fmt, ...)
{
    char tmp[64];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    put(b, tmp, (size_t)n);
}

static void put_utf8(struct buf *b, uint32_t cp)
{
    char o[4];
    size_t n;

    if (cp < 0x80) {
        o[0] = (char)cp, n = 1;
    } else if (cp < 0x800) {
        o[0] = (char)(0xC0 | cp >> 6), o[1] = (char)(0x80 | (cp & 0x3F)), n = 2;
    } else if (cp < 0x10000) {
        o[0] = (char)(0xE0 | cp >> 12), o[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F)), n = 3;
    } else {
        o[0] = (char)(0xF0 | cp >> 18), o[1] = (char)(0x80 | (cp >> 12 & 0x3F));
        o[2] = (char)(0x80 | (cp >> 6 & 0x3F)), o[3] = (char)(0x80 | (cp & 0x3F)), n = 4;
    }
    put(b, o, n);
}

/* a JSON string's contents for UTF-8 text s */
static void put_json_text(struct buf *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            put(b, "\\", 1);
            put(b, &s[i], 1);
        } else if (c == '\n') {
            puts_(b, "\\n");
        } else if (c == '\r') {
            puts_(b, "\\r");
        } else if (c == '\t') {
            puts_(b, "\\t");
        } else if (c < 0x20) {
            putf(b, "\\u%04x", c);
        } else {
            put(b, &s[i], 1);
        }
    }
}

static void *memmem_(const void *h, size_t hn, const void *n, size_t nn)
{
    if (nn == 0 || hn < nn)
        return NULL;
    return memmem(h, hn, n, nn);
}

/* the input's bytes as a stream of choices; 0 past the end, so every loop ends */
struct rd {
    const uint8_t *p;
    size_t n, i;
};

static unsigned rd_byte(struct rd *r)
{
    return r->i < r->n ? r->p[r->i++] : 0;
}

static unsigned rd_pick(struct rd *r, unsigned n)
{
    return rd_byte(r) % n;
}

static uint32_t rng_next(uint32_t *s)
{
    uint32_t x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *s = x;
}

/* ---- the planted value ---- */

#define MAXCP 1024

/* a sequence of code points, each optionally to be written as a JSON \u escape */
struct cps {
    uint32_t cp[MAXCP];
    uint8_t esc[MAXCP]; /* 0 literal, 1 lower-case hex escape, 2 upper-case */
    size_t n;
};

static void cps_add(struct cps *s, uint32_t cp)
{
    if (s->n < MAXCP) {
        s->cp[s->n] = cp;
        s->esc[s->n] = 0;
        s->n++;
    }
}

static void cps_adds(struct cps *s, const char *a)
{
    while (*a)
        cps_add(s, (unsigned char)*a++);
}

static void put_escape(struct buf *b, uint32_t u, int upper)
{
    putf(b, upper ? "\\u%04X" : "\\u%04x", (unsigned)u);
}

/* the JSON string contents for s (no quotes) */
static void put_cps(struct buf *b, const struct cps *s)
{
    for (size_t i = 0; i < s->n; i++) {
        uint32_t cp = s->cp[i];
        int upper = s->esc[i] == 2;
        if (s->esc[i] || cp < 0x20) {
            if (!s->esc[i] && cp == '\n') {
                puts_(b, "\\n");
            } else if (!s->esc[i] && cp == '\t') {
                puts_(b, "\\t");
            } else if (cp >= 0x10000) {
                put_escape(b, 0xD800 + ((cp - 0x10000) >> 10), upper);
                put_escape(b, 0xDC00 + ((cp - 0x10000) & 0x3FF), upper);
            } else {
                put_escape(b, cp, upper);
            }
        } else if (cp == '"' || cp == '\\') {
            put(b, "\\", 1);
            put_utf8(b, cp);
        } else {
            put_utf8(b, cp);
        }
    }
}

/* one input's choices about the value */
struct plant {
    int secret, spelling, enc, glue, escape_too, context;
    unsigned density;
    uint32_t rng;
    int enc_applied;         /* the encoding changed at least one character */
    uint32_t sep_cp;         /* ENC_SEP_UNICODE: the separator */
    const char *sep_ascii;   /* ENC_SEP_ASCII: the separator */
    const char *at;          /* ENC_AT_ESCAPE: how '@' is written */
    int at_escaped;          /* a character of that spelling is written as a \u escape */
    int rare_lookalike;      /* ENC_LOOKALIKE used one of RARE_LOOKALIKES */
    const char *glued_after; /* what is glued after the value, if anything */
    size_t val_from, val_to; /* the value's code points in text */
    char detail[96];         /* e.g. the separator or escape used, for reports */
    struct cps text;         /* the whole string: context and value */
    struct buf spelt;        /* the value's JSON bytes as planted */
};

static int chosen(struct plant *pl)
{
    return (rng_next(&pl->rng) & 0xFF) < pl->density;
}

static void detail(struct plant *pl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void detail(struct plant *pl, const char *fmt, ...)
{
    size_t n = strlen(pl->detail);
    va_list ap;

    if (n + 2 >= sizeof(pl->detail))
        return;
    va_start(ap, fmt);
    vsnprintf(pl->detail + n, sizeof(pl->detail) - n, fmt, ap);
    va_end(ap);
}

static int lookalike(char c, uint32_t *cps3)
{
    for (size_t i = 0; i < sizeof(LOOKALIKES) / sizeof(*LOOKALIKES); i++)
        if (LOOKALIKES[i].c == c) {
            memcpy(cps3, LOOKALIKES[i].cp, sizeof(LOOKALIKES[i].cp));
            return 1;
        }
    return 0;
}

/* compat: another code point that stands for ASCII c, or 0 */
static uint32_t compat_form(struct plant *pl, char c)
{
    unsigned k = rng_next(&pl->rng);
    if (c >= '0' && c <= '9') {
        unsigned d = (unsigned)(c - '0');
        static const uint32_t zero[] = {0x0660, 0x06F0, 0x0966, 0x0E50, 0x1D7CE, 0x1D7D8, 0x2080};
        switch (k % 10) {
        case 7: /* superscript */
            return d == 1 ? 0xB9 : d == 2 ? 0xB2 : d == 3 ? 0xB3 : 0x2070 + d;
        case 8: /* circled */
            return d == 0 ? 0x24EA : 0x2460 + d - 1;
        case 9:
            return 0x1D7F6 + d; /* mathematical monospace */
        default:
            return zero[k % 10 % 7] + d;
        }
    }
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')) {
        /* mathematical bold, bold italic, sans-serif, monospace: no holes */
        static const uint32_t style[] = {0x1D400, 0x1D468, 0x1D5A0, 0x1D670};
        unsigned off = c <= 'Z' ? (unsigned)(c - 'A') : 26 + (unsigned)(c - 'a');
        return style[k % 4] + off;
    }
    switch (c) {
    case '@':
        return 0xFE6B;
    case '.':
        return k & 1 ? 0xFE52 : 0x2024;
    case '-':
        return 0xFE63;
    case '+':
        return 0xFE62;
    }
    return 0;
}

/* encode -- the value's code points under the plant's encoding into `out`; records in
 * pl->enc_applied whether anything changed */
static void encode(struct plant *pl, const char *canon, struct cps *out)
{
    const struct secret *s = &SECRETS[pl->secret];
    size_t n = strlen(canon);
    uint32_t sep_cp = 0;
    const char *sep_ascii = NULL, *at = NULL;
    size_t first = out->n, at_from = 0, at_to = 0;

    if (pl->enc == ENC_SEP_UNICODE && s->digits) {
        sep_cp = SEP_UNICODE[rng_next(&pl->rng) % (sizeof(SEP_UNICODE) / sizeof(*SEP_UNICODE))];
        pl->sep_cp = sep_cp;
        detail(pl, "sep U+%04X", (unsigned)sep_cp);
    }
    if (pl->enc == ENC_SEP_ASCII && s->digits) {
        sep_ascii = SEP_ASCII[rng_next(&pl->rng) % (sizeof(SEP_ASCII) / sizeof(*SEP_ASCII))];
        pl->sep_ascii = sep_ascii;
        detail(pl, "sep '%s'",
               sep_ascii[0] == '\n'   ? "\\n"
               : sep_ascii[0] == '\t' ? "\\t"
               : sep_ascii[0] == '\r' ? "\\r\\n"
                                      : sep_ascii);
    }
    if (pl->enc == ENC_AT_ESCAPE) {
        at = AT_ESCAPES[rng_next(&pl->rng) % (sizeof(AT_ESCAPES) / sizeof(*AT_ESCAPES))];
        pl->at = at;
        if (strchr(canon, '@'))
            detail(pl, "'@' as %s", at);
    }

    for (int pass = 0; pass < 2; pass++) {
        /* the second pass forces the first eligible character when the density chose none */
        int forced = pass == 1;
        if (pass == 1 && pl->enc_applied)
            break;
        if (pass == 1)
            out->n = first;
        for (size_t i = 0; i < n; i++) {
            char c = canon[i];
            uint32_t alt[3] = {0};
            int pick = forced || chosen(pl);

            if ((c == ' ' || c == '-') && i > 0 && (sep_cp || sep_ascii) && canon[i - 1] != '-' &&
                canon[i + 1] != '-' && (s->digits)) {
                if (sep_cp)
                    cps_add(out, sep_cp);
                else
                    cps_adds(out, sep_ascii);
                pl->enc_applied = 1;
                continue;
            }
            switch (pl->enc) {
            case ENC_FULLWIDTH:
                if (pick && c > 0x20 && c < 0x7F) {
                    cps_add(out, (uint32_t)c + 0xFEE0);
                    pl->enc_applied = 1, forced = 0;
                    continue;
                }
                if (pick && c == ' ') {
                    cps_add(out, 0x3000);
                    pl->enc_applied = 1, forced = 0;
                    continue;
                }
                break;
            case ENC_COMPAT:
                if (pick && compat_form(pl, c)) {
                    cps_add(out, compat_form(pl, c));
                    pl->enc_applied = 1, forced = 0;
                    continue;
                }
                break;
            case ENC_INVISIBLE:
                if (pick && i > 0) {
                    uint32_t z =
                        INVISIBLES[rng_next(&pl->rng) % (sizeof(INVISIBLES) / sizeof(*INVISIBLES))];
                    cps_add(out, z);
                    if (!strstr(pl->detail, "U+"))
                        detail(pl, "U+%04X", (unsigned)z);
                    pl->enc_applied = 1, forced = 0;
                }
                break;
            case ENC_LOOKALIKE:
                if (pick && lookalike(c, alt)) {
                    unsigned m = alt[2] ? 3 : alt[1] ? 2 : 1;
                    uint32_t l = alt[rng_next(&pl->rng) % m];
                    cps_add(out, l);
                    for (size_t r = 0; r < sizeof(RARE_LOOKALIKES) / sizeof(*RARE_LOOKALIKES); r++)
                        pl->rare_lookalike |= l == RARE_LOOKALIKES[r];
                    if (strlen(pl->detail) < 60)
                        detail(pl, "%c=U+%04X ", c, (unsigned)l);
                    pl->enc_applied = 1, forced = 0;
                    continue;
                }
                break;
            case ENC_AT_ESCAPE:
                if (c == '@') {
                    at_from = out->n;
                    cps_adds(out, at);
                    at_to = out->n;
                    pl->enc_applied = 1;
                    continue;
                }
                break;
            case ENC_JSON_ESCAPE:
                if (pick) {
                    cps_add(out, (unsigned char)c);
                    out->esc[out->n - 1] = (uint8_t)(1 + (rng_next(&pl->rng) & 1));
                    pl->enc_applied = 1, forced = 0;
                    continue;
                }
                break;
            }
            cps_add(out, (unsigned char)c);
        }
        if (pl->enc == ENC_PLAIN || pl->enc == ENC_SEP_UNICODE || pl->enc == ENC_SEP_ASCII ||
            pl->enc == ENC_AT_ESCAPE)
            break; /* nothing to force */
    }
    if (pl->escape_too)
        for (size_t i = first; i < out->n; i++)
            if (chosen(pl)) {
                out->esc[i] = (uint8_t)(1 + (rng_next(&pl->rng) & 1));
                pl->at_escaped |= i >= at_from && i < at_to;
            }
}

/* words around the value: none with digits, '@' or a context label */
static const char *const WORDS[] = {
    "please", "check",  "this",    "value",   "for",         "the",     "team",
    "thanks", "hello",  "note",    "see",     "über",        "données", "日本語",
    "привет", "ok",     "and",     "review",  "draft",       "→",       "émoji 🙂",
    "x",      "a",      "y",       "quote\"", "back\\slash", "tab\tin", "line\nbreak",
    "mañana", "straße", "العربية", "中文"};
#define NWORDS (sizeof(WORDS) / sizeof(*WORDS))

static const char *const BEFORE[] = {" ", "\n", "\t", ": ", "=", "(", "<", "\"", " - ", "'"};
static const char *const AFTER[] = {" ", ".", ",", ")", ">", "\n", ";", "!", "\"", "'"};

static void words(struct plant *pl, struct cps *out, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        if (i)
            cps_add(out, ' ');
        const char *w = WORDS[rng_next(&pl->rng) % NWORDS];
        /* decode the word's UTF-8 */
        const unsigned char *u = (const unsigned char *)w;
        while (*u) {
            uint32_t cp;
            if (*u < 0x80)
                cp = *u++;
            else if (*u < 0xE0)
                cp = (uint32_t)(u[0] & 0x1F) << 6 | (u[1] & 0x3F), u += 2;
            else if (*u < 0xF0)
                cp = (uint32_t)(u[0] & 0x0F) << 12 | (uint32_t)(u[1] & 0x3F) << 6 | (u[2] & 0x3F),
                u += 3;
            else
                cp = (uint32_t)(u[0] & 0x07) << 18 | (uint32_t)(u[1] & 0x3F) << 12 |
                     (uint32_t)(u[2] & 0x3F) << 6 | (u[3] & 0x3F),
                u += 4;
            cps_add(out, cp);
        }
    }
}

static void plant_build(struct plant *pl)
{
    const struct secret *s = &SECRETS[pl->secret];
    unsigned nsp = 0;
    const char *canon;
    struct cps val;

    while (nsp < 3 && s->spellings[nsp])
        nsp++;
    canon = s->spellings[pl->spelling % nsp];
    /* separators need a grouped spelling */
    if ((pl->enc == ENC_SEP_UNICODE || pl->enc == ENC_SEP_ASCII) && !strpbrk(canon + 1, " -"))
        canon = s->spellings[0];
    if (!s->gluable)
        pl->glue = 0;

    memset(&val, 0, sizeof(val));
    encode(pl, canon, &val);
    if (!pl->enc_applied && pl->enc != ENC_PLAIN)
        pl->enc = ENC_PLAIN; /* the family does not apply to this value: count it as plain */
    if (pl->escape_too)
        detail(pl, "+\\u");

    pl->text.n = 0;
    switch (pl->context % 4) {
    case 0: /* bare */
        break;
    case 1: /* in a sentence */
        words(pl, &pl->text, 1 + rng_next(&pl->rng) % 4);
        cps_adds(&pl->text, BEFORE[rng_next(&pl->rng) % (sizeof(BEFORE) / sizeof(*BEFORE))]);
        break;
    case 2: /* after a neutral label */
        cps_adds(&pl->text, "value: ");
        break;
    case 3: /* after one word */
        words(pl, &pl->text, 1);
        cps_add(&pl->text, ' ');
        break;
    }
    if (pl->glue & 1) {
        cps_add(&pl->text, 'q');
        detail(pl, " glued-before");
    }
    pl->val_from = pl->text.n;
    for (size_t i = 0; i < val.n; i++) {
        cps_add(&pl->text, val.cp[i]);
        pl->text.esc[pl->text.n - 1] = val.esc[i];
    }
    pl->val_to = pl->text.n;
    if (pl->glue & 2) {
        /* an e-mail address may also be followed by a digit, "-1" or a one-letter label */
        static const char *const email_tails[] = {"q", "1", "-1", ".x"};
        pl->glued_after = pl->secret == S_EMAIL ? email_tails[rng_next(&pl->rng) % 4] : "q";
        cps_adds(&pl->text, pl->glued_after);
        detail(pl, " glued-after '%s'", pl->glued_after);
    }
    if (pl->context % 4 == 1) {
        unsigned nw = rng_next(&pl->rng) % 4;
        cps_adds(&pl->text, AFTER[rng_next(&pl->rng) % (sizeof(AFTER) / sizeof(*AFTER))]);
        if (nw)
            cps_add(&pl->text, ' ');
        words(pl, &pl->text, nw);
    } else if (pl->context % 4 == 3 && (pl->context & 4)) {
        cps_adds(&pl->text, " ok");
    }
    pl->spelt.n = 0;
    put_cps(&pl->spelt, &val);
}

/* ---- the body ---- */

struct gen {
    struct rd r;
    struct buf *b;
    int emit; /* 0: count slots only; 1: write, planting in slot `target` */
    unsigned nslots, target;
    const char *where; /* the planted slot's kind */
    int inner;         /* inside a JSON text that becomes a string (tool-call arguments) */
    struct plant *pl;
    const char *key;    /* the member name the next value belongs to; NULL in arrays */
    char plant_key[48]; /* the member name of the planted value ("" in an array) */
    int plant_name;     /* the value was planted as a member name */
    int plant_inner;    /* ... inside tool-call arguments */
    char where_buf[96];
};

/* slot -- a string value or member name that may receive the value; `text` is what it
 * holds otherwise (UTF-8) */
static void slot(struct gen *g, const char *text, const char *where)
{
    unsigned k = g->nslots++;

    put(g->b, "\"", 1);
    if (g->emit && k == g->target) {
        put_cps(g->b, &g->pl->text);
        g->where = where;
        snprintf(g->plant_key, sizeof(g->plant_key), "%s", g->key ? g->key : "");
        g->plant_inner = g->inner;
    } else {
        put_json_text(g->b, text, strlen(text));
    }
    put(g->b, "\"", 1);
}

static void name(struct gen *g, const char *text, const char *where)
{
    unsigned k = g->nslots;

    slot(g, text, where);
    put(g->b, ":", 1);
    if (g->emit && k == g->target)
        g->plant_name = 1;
    g->key = text;
}

/* some words from the stream */
static void filler(struct gen *g, char *out, size_t cap)
{
    unsigned n = rd_pick(&g->r, 5);
    size_t len = 0;

    out[0] = '\0';
    for (unsigned i = 0; i < n; i++) {
        const char *w = WORDS[rd_pick(&g->r, NWORDS)];
        size_t wl = strlen(w);
        if (len + wl + 2 >= cap)
            break;
        if (i)
            out[len++] = ' ';
        memcpy(out + len, w, wl + 1);
        len += wl;
    }
}

static void text_slot(struct gen *g, const char *where)
{
    char t[128];
    filler(g, t, sizeof(t));
    slot(g, t, where);
}

/* member names of random objects: some are the APIs' own (a nested "model" or "type"
 * reads as an enum to the scanner) */
static const char *const MEMBERS[] = {"model", "type", "role",   "format",  "detail", "object",
                                      "name",  "id",   "text",   "content", "note",   "data",
                                      "user",  "url",  "source", "value"};
#define NMEMBERS (sizeof(MEMBERS) / sizeof(*MEMBERS))

static void value(struct gen *g, int depth);

static void object(struct gen *g, int depth)
{
    unsigned n = rd_pick(&g->r, 4);
    unsigned used = 0;

    put(g->b, "{", 1);
    for (unsigned i = 0; i < n; i++) {
        unsigned m = rd_pick(&g->r, NMEMBERS + 4);
        char nm[48];
        if (m < NMEMBERS) {
            if (used & 1u << m)
                continue; /* a repeated name is refused: keep bodies valid */
            used |= 1u << m;
            snprintf(nm, sizeof(nm), "%s", MEMBERS[m]);
        } else {
            snprintf(nm, sizeof(nm), "%s_%u_%u", WORDS[rd_pick(&g->r, 8)], depth, i);
        }
        if (g->b->p[g->b->n - 1] != '{')
            put(g->b, ",", 1);
        name(g, nm, "a member name in a nested object");
        value(g, depth + 1);
    }
    put(g->b, "}", 1);
}

static void value(struct gen *g, int depth)
{
    unsigned k = rd_pick(&g->r, depth >= 4 ? 3 : 6);

    switch (k) {
    case 0:
    case 5:
        text_slot(g, "a string value in a nested object or array");
        break;
    case 1:
        putf(g->b, "%u", rd_byte(&g->r));
        break;
    case 2:
        puts_(g->b, rd_byte(&g->r) & 1 ? "true" : "null");
        break;
    case 3:
        object(g, depth);
        break;
    case 4: {
        unsigned n = rd_pick(&g->r, 4);
        put(g->b, "[", 1);
        for (unsigned i = 0; i < n; i++) {
            if (i)
                put(g->b, ",", 1);
            g->key = NULL;
            value(g, depth + 1);
        }
        put(g->b, "]", 1);
        break;
    }
    }
}

/* a JSON text written as a string: tool-call arguments */
static void json_text_slot(struct gen *g)
{
    struct buf inner = {0}, *outer = g->b;
    unsigned before = g->nslots;

    g->b = &inner;
    g->inner++;
    object(g, 2);
    g->inner--;
    g->b = outer;
    /* the arguments string itself is a slot too: planting there replaces it whole */
    if (g->emit && g->target >= before && g->target < g->nslots) {
        /* planted inside: write the inner text as a string */
        put(g->b, "\"", 1);
        put_json_text(g->b, inner.p, inner.n);
        put(g->b, "\"", 1);
        g->nslots++;
        snprintf(g->where_buf, sizeof(g->where_buf), "tool-call arguments (a JSON text): %s",
                 g->where);
        g->where = g->where_buf;
    } else {
        unsigned k = g->nslots;
        g->nslots++;
        if (g->emit && k == g->target) {
            put(g->b, "\"", 1);
            put_cps(g->b, &g->pl->text);
            put(g->b, "\"", 1);
            g->where = "tool-call arguments (the whole string)";
        } else {
            put(g->b, "\"", 1);
            put_json_text(g->b, inner.p ? inner.p : "{}", inner.p ? inner.n : 2);
            put(g->b, "\"", 1);
        }
    }
    free(inner.p);
}

static void schema(struct gen *g)
{
    unsigned n = rd_pick(&g->r, 4);

    put(g->b, "{", 1);
    name(g, "type", "a member name in a tool schema");
    slot(g, "object", "an enum value in a tool schema");
    put(g->b, ",", 1);
    name(g, "properties", "a member name in a tool schema");
    put(g->b, "{", 1);
    for (unsigned i = 0; i < n; i++) {
        char nm[48];
        snprintf(nm, sizeof(nm), "%s_%u", WORDS[rd_pick(&g->r, 8)], i);
        if (i)
            put(g->b, ",", 1);
        name(g, nm, "a property name in a tool schema");
        put(g->b, "{", 1);
        name(g, "type", "a member name in a tool schema");
        slot(g, "string", "an enum value in a tool schema");
        put(g->b, ",", 1);
        name(g, "description", "a member name in a tool schema");
        text_slot(g, "a property description in a tool schema");
        if (rd_byte(&g->r) & 1) {
            put(g->b, ",", 1);
            name(g, "enum", "a member name in a tool schema");
            put(g->b, "[", 1);
            text_slot(g, "an enum item in a tool schema");
            put(g->b, "]", 1);
        }
        put(g->b, "}", 1);
    }
    put(g->b, "}", 1);
    if (n) {
        put(g->b, ",", 1);
        name(g, "required", "a member name in a tool schema");
        put(g->b, "[", 1);
        slot(g, "x", "a required item in a tool schema");
        put(g->b, "]", 1);
    }
    put(g->b, "}", 1);
}

static void unknown_member(struct gen *g, const char *where_name)
{
    char nm[48];
    snprintf(nm, sizeof(nm), "x_%s", WORDS[rd_pick(&g->r, 8)]);
    put(g->b, ",", 1);
    name(g, nm, where_name);
    value(g, 2);
}

static void openai_message(struct gen *g)
{
    static const char *const roles[] = {"user", "system", "assistant", "developer"};
    unsigned k = rd_byte(&g->r), kind = k >> 2 & 3;
    const char *role = kind == 2 ? "assistant" : kind == 3 ? "tool" : roles[k & 3];

    put(g->b, "{", 1);
    name(g, "role", "the member name 'role'");
    slot(g, role, "a message's role value");
    put(g->b, ",", 1);
    switch (kind) {
    case 0:
        name(g, "content", "the member name 'content'");
        text_slot(g, "a message's content string");
        break;
    case 1: {
        unsigned n = 1 + rd_pick(&g->r, 3);
        name(g, "content", "the member name 'content'");
        put(g->b, "[", 1);
        for (unsigned i = 0; i < n; i++) {
            if (i)
                put(g->b, ",", 1);
            put(g->b, "{", 1);
            name(g, "type", "the member name 'type'");
            if (rd_byte(&g->r) % 4 == 3) {
                slot(g, "image_url", "a part's type value");
                put(g->b, ",", 1);
                name(g, "image_url", "the member name 'image_url'");
                put(g->b, "{", 1);
                name(g, "url", "the member name 'url'");
                slot(g, "https://img.example/a.png", "an image URL");
                put(g->b, "}", 1);
            } else {
                slot(g, "text", "a part's type value");
                put(g->b, ",", 1);
                name(g, "text", "the member name 'text'");
                text_slot(g, "a text part");
                if (rd_byte(&g->r) % 8 == 7)
                    unknown_member(g, "an unknown member's name in a content part");
            }
            put(g->b, "}", 1);
        }
        put(g->b, "]", 1);
        break;
    }
    case 2:
        name(g, "content", "the member name 'content'");
        puts_(g->b, "null,");
        name(g, "tool_calls", "the member name 'tool_calls'");
        put(g->b, "[{", 2);
        name(g, "id", "the member name 'id'");
        slot(g, "call_1", "a tool call id");
        put(g->b, ",", 1);
        name(g, "type", "the member name 'type'");
        slot(g, "function", "a tool call's type value");
        put(g->b, ",", 1);
        name(g, "function", "the member name 'function'");
        put(g->b, "{", 1);
        name(g, "name", "the member name 'name'");
        slot(g, "lookup", "a tool call's function name");
        put(g->b, ",", 1);
        name(g, "arguments", "the member name 'arguments'");
        json_text_slot(g);
        put(g->b, "}}]", 3);
        break;
    case 3:
        name(g, "tool_call_id", "the member name 'tool_call_id'");
        slot(g, "call_1", "a tool message's call id");
        put(g->b, ",", 1);
        name(g, "content", "the member name 'content'");
        text_slot(g, "a tool message's content");
        break;
    }
    if (k & 0x40) {
        put(g->b, ",", 1);
        name(g, "name", "the member name 'name'");
        text_slot(g, "a message's name");
    }
    if (k & 0x80)
        unknown_member(g, "an unknown member's name in a message");
    put(g->b, "}", 1);
}

static void anthropic_text_block(struct gen *g, const char *where)
{
    put(g->b, "{", 1);
    name(g, "type", "the member name 'type'");
    slot(g, "text", "a block's type value");
    put(g->b, ",", 1);
    name(g, "text", "the member name 'text'");
    text_slot(g, where);
    put(g->b, "}", 1);
}

static void anthropic_message(struct gen *g, int i)
{
    unsigned k = rd_byte(&g->r);

    put(g->b, "{", 1);
    name(g, "role", "the member name 'role'");
    slot(g, i & 1 ? "assistant" : "user", "a message's role value");
    put(g->b, ",", 1);
    name(g, "content", "the member name 'content'");
    if ((k & 3) == 0) {
        text_slot(g, "a message's content string");
    } else {
        unsigned n = 1 + rd_pick(&g->r, 3);
        put(g->b, "[", 1);
        for (unsigned j = 0; j < n; j++) {
            unsigned b = rd_pick(&g->r, 5);
            if (j)
                put(g->b, ",", 1);
            if (b <= 1) {
                anthropic_text_block(g, "a text block");
            } else if (b == 2) {
                put(g->b, "{", 1);
                name(g, "type", "the member name 'type'");
                slot(g, "tool_use", "a block's type value");
                put(g->b, ",", 1);
                name(g, "id", "the member name 'id'");
                slot(g, "toolu_1", "a tool_use id");
                put(g->b, ",", 1);
                name(g, "name", "the member name 'name'");
                slot(g, "lookup", "a tool_use name");
                put(g->b, ",", 1);
                name(g, "input", "the member name 'input'");
                object(g, 2);
                put(g->b, "}", 1);
            } else if (b == 3) {
                put(g->b, "{", 1);
                name(g, "type", "the member name 'type'");
                slot(g, "tool_result", "a block's type value");
                put(g->b, ",", 1);
                name(g, "tool_use_id", "the member name 'tool_use_id'");
                slot(g, "toolu_1", "a tool_result's id");
                put(g->b, ",", 1);
                name(g, "content", "the member name 'content'");
                if (rd_byte(&g->r) & 1) {
                    text_slot(g, "a tool_result's content string");
                } else {
                    put(g->b, "[", 1);
                    anthropic_text_block(g, "a text block in a tool_result");
                    put(g->b, "]", 1);
                }
                put(g->b, "}", 1);
            } else {
                put(g->b, "{", 1);
                name(g, "type", "the member name 'type'");
                slot(g, "image", "a block's type value");
                put(g->b, ",", 1);
                name(g, "source", "the member name 'source'");
                put(g->b, "{", 1);
                name(g, "type", "the member name 'type'");
                slot(g, "url", "an image source's type value");
                put(g->b, ",", 1);
                name(g, "url", "the member name 'url'");
                slot(g, "https://img.example/b.png", "an image URL");
                put(g->b, "}}", 2);
            }
        }
        put(g->b, "]", 1);
    }
    if (k & 0x80)
        unknown_member(g, "an unknown member's name in a message");
    put(g->b, "}", 1);
}

static void body(struct gen *g, int anthropic, int model)
{
    unsigned n = 1 + rd_pick(&g->r, 4), extras = rd_byte(&g->r);

    put(g->b, "{", 1);
    name(g, "model", "the member name 'model'");
    slot(g, model ? "am" : "om", "the model value");
    if (anthropic) {
        put(g->b, ",", 1);
        name(g, "max_tokens", "the member name 'max_tokens'");
        puts_(g->b, "256");
    }
    put(g->b, ",", 1);
    name(g, "messages", "the member name 'messages'");
    put(g->b, "[", 1);
    for (unsigned i = 0; i < n; i++) {
        if (i)
            put(g->b, ",", 1);
        if (anthropic)
            anthropic_message(g, (int)i);
        else
            openai_message(g);
    }
    put(g->b, "]", 1);

    if (extras & 1) { /* tools */
        put(g->b, ",", 1);
        name(g, "tools", "the member name 'tools'");
        put(g->b, "[{", 2);
        if (anthropic) {
            name(g, "name", "the member name 'name'");
            slot(g, "lookup", "a tool's name");
            put(g->b, ",", 1);
            name(g, "description", "the member name 'description'");
            text_slot(g, "a tool's description");
            put(g->b, ",", 1);
            name(g, "input_schema", "the member name 'input_schema'");
            schema(g);
        } else {
            name(g, "type", "the member name 'type'");
            slot(g, "function", "a tool's type value");
            put(g->b, ",", 1);
            name(g, "function", "the member name 'function'");
            put(g->b, "{", 1);
            name(g, "name", "the member name 'name'");
            slot(g, "lookup", "a tool's name");
            put(g->b, ",", 1);
            name(g, "description", "the member name 'description'");
            text_slot(g, "a tool's description");
            put(g->b, ",", 1);
            name(g, "parameters", "the member name 'parameters'");
            schema(g);
            put(g->b, "}", 1);
        }
        put(g->b, "}]", 2);
    }
    if (extras & 2) { /* metadata */
        put(g->b, ",", 1);
        name(g, "metadata", "the member name 'metadata'");
        if (anthropic) {
            put(g->b, "{", 1);
            name(g, "user_id", "the member name 'user_id'");
            text_slot(g, "metadata.user_id");
            put(g->b, "}", 1);
        } else {
            object(g, 1);
        }
    }
    if (extras & 4) { /* stop sequences */
        unsigned m = 1 + rd_pick(&g->r, 2);
        put(g->b, ",", 1);
        name(g, anthropic ? "stop_sequences" : "stop", "the member name 'stop'");
        put(g->b, "[", 1);
        for (unsigned i = 0; i < m; i++) {
            if (i)
                put(g->b, ",", 1);
            text_slot(g, "a stop sequence");
        }
        put(g->b, "]", 1);
    }
    if (extras & 8) {
        put(g->b, ",", 1);
        if (anthropic) {
            name(g, "system", "the member name 'system'");
            if (rd_byte(&g->r) & 1) {
                text_slot(g, "the system string");
            } else {
                put(g->b, "[", 1);
                anthropic_text_block(g, "a system block");
                put(g->b, "]", 1);
            }
        } else {
            name(g, "user", "the member name 'user'");
            text_slot(g, "the 'user' value");
        }
    }
    if (extras & 16) { /* tool choice */
        put(g->b, ",", 1);
        name(g, "tool_choice", "the member name 'tool_choice'");
        put(g->b, "{", 1);
        name(g, "type", "the member name 'type'");
        if (anthropic) {
            slot(g, "tool", "tool_choice's type value");
            put(g->b, ",", 1);
            name(g, "name", "the member name 'name'");
            slot(g, "lookup", "tool_choice's name");
        } else {
            slot(g, "function", "tool_choice's type value");
            put(g->b, ",", 1);
            name(g, "function", "the member name 'function'");
            put(g->b, "{", 1);
            name(g, "name", "the member name 'name'");
            slot(g, "lookup", "tool_choice's name");
            put(g->b, "}", 1);
        }
        put(g->b, "}", 1);
    }
    if (extras & 32 && !anthropic) { /* response format */
        put(g->b, ",", 1);
        name(g, "response_format", "the member name 'response_format'");
        put(g->b, "{", 1);
        name(g, "type", "the member name 'type'");
        slot(g, "json_schema", "response_format's type value");
        put(g->b, ",", 1);
        name(g, "json_schema", "the member name 'json_schema'");
        put(g->b, "{", 1);
        name(g, "name", "the member name 'name'");
        slot(g, "answer", "the schema's name");
        put(g->b, ",", 1);
        name(g, "schema", "the member name 'schema'");
        schema(g);
        put(g->b, "}}", 2);
    }
    if (extras & 64)
        unknown_member(g, "an unknown top-level member's name");
    if (extras & 128) {
        put(g->b, ",", 1);
        name(g, "temperature", "the member name 'temperature'");
        puts_(g->b, "0.5");
    }
    put(g->b, "}", 1);
}

/* ---- the reference normaliser and the search ---- */

/* what code point cp stands for: an ASCII byte, -1 to drop, -2 to keep as not ASCII */
static int ref_map(uint32_t cp)
{
    static const uint32_t drop[] = {0x00AD, 0x034F, 0x180E, 0x200B, 0x200C, 0x200D, 0x200E,
                                    0x200F, 0x2060, 0x2061, 0x2062, 0x2063, 0x2064, 0xFEFF};
    static const uint32_t zeros[] = {0x0660,  0x06F0,  0x0966,  0x0E50,  0x1D7CE,
                                     0x1D7D8, 0x1D7E2, 0x1D7EC, 0x1D7F6, 0x2080};
    uint32_t l3[3];

    if (cp < 0x80)
        return (int)cp;
    for (size_t i = 0; i < sizeof(drop) / sizeof(*drop); i++)
        if (cp == drop[i])
            return -1;
    if ((cp >= 0xFE00 && cp <= 0xFE0F) || (cp >= 0x202A && cp <= 0x202E))
        return -1;
    if (cp >= 0xFF01 && cp <= 0xFF5E)
        return (int)(cp - 0xFEE0);
    if (cp == 0x3000 || cp == 0x00A0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
        cp == 0x202F || cp == 0x205F)
        return ' ';
    if (cp == 0x2028 || cp == 0x2029)
        return '\n';
    if ((cp >= 0x2010 && cp <= 0x2015) || cp == 0x2212 || cp == 0xFE63)
        return '-';
    for (size_t i = 0; i < sizeof(zeros) / sizeof(*zeros); i++)
        if (cp >= zeros[i] && cp <= zeros[i] + 9)
            return '0' + (int)(cp - zeros[i]);
    if (cp == 0xB9)
        return '1';
    if (cp == 0xB2)
        return '2';
    if (cp == 0xB3)
        return '3';
    if (cp == 0x2070 || cp == 0x24EA)
        return '0';
    if (cp >= 0x2074 && cp <= 0x2079)
        return '4' + (int)(cp - 0x2074);
    if (cp >= 0x2460 && cp <= 0x2468)
        return '1' + (int)(cp - 0x2460);
    if (cp >= 0x1D400 && cp <= 0x1D6A3) {
        unsigned k = (cp - 0x1D400) % 52;
        return k < 26 ? 'A' + (int)k : 'a' + (int)k - 26;
    }
    switch (cp) {
    case 0xFE6B:
        return '@';
    case 0xFE52:
    case 0x2024:
        return '.';
    case 0xFE62:
        return '+';
    }
    for (size_t i = 0; i < sizeof(LOOKALIKES) / sizeof(*LOOKALIKES); i++) {
        memcpy(l3, LOOKALIKES[i].cp, sizeof(l3));
        for (int j = 0; j < 3; j++)
            if (l3[j] == cp)
                return LOOKALIKES[i].c;
    }
    return -2;
}

/* the skeleton of UTF-8 text s: its characters mapped, escaped '@'s read, then only
 * letters (lower case), digits and '@' kept. With json set, JSON escapes are decoded. */
static void skeleton(const char *s, size_t n, int json, struct buf *out)
{
    struct buf a = {0};
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;

    while (i < n) {
        uint32_t cp;
        if (json && u[i] == '\\' && i + 1 < n) {
            char e = (char)u[i + 1];
            if (e == 'u' && i + 5 < n) {
                char hex[5] = {(char)u[i + 2], (char)u[i + 3], (char)u[i + 4], (char)u[i + 5], 0};
                cp = (uint32_t)strtoul(hex, NULL, 16);
                i += 6;
                if (cp >= 0xD800 && cp < 0xDC00 && i + 5 < n && u[i] == '\\' && u[i + 1] == 'u') {
                    char lo[5] = {(char)u[i + 2], (char)u[i + 3], (char)u[i + 4], (char)u[i + 5],
                                  0};
                    uint32_t l = (uint32_t)strtoul(lo, NULL, 16);
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (l - 0xDC00);
                    i += 6;
                }
            } else {
                cp = e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : (unsigned char)e;
                i += 2;
            }
        } else if (u[i] < 0x80) {
            cp = u[i++];
        } else if (u[i] < 0xE0 && i + 1 < n) {
            cp = (uint32_t)(u[i] & 0x1F) << 6 | (u[i + 1] & 0x3F), i += 2;
        } else if (u[i] < 0xF0 && i + 2 < n) {
            cp = (uint32_t)(u[i] & 0x0F) << 12 | (uint32_t)(u[i + 1] & 0x3F) << 6 |
                 (u[i + 2] & 0x3F),
            i += 3;
        } else if (i + 3 < n) {
            cp = (uint32_t)(u[i] & 0x07) << 18 | (uint32_t)(u[i + 1] & 0x3F) << 12 |
                 (uint32_t)(u[i + 2] & 0x3F) << 6 | (u[i + 3] & 0x3F),
            i += 4;
        } else {
            i++;
            continue;
        }
        int m = ref_map(cp);
        if (m >= 0) {
            char c = (char)m;
            put(&a, &c, 1);
        }
    }
    /* escaped '@': %40, &#64; (any zeros), &#x40;, &commat;, a written-out \u0040 */
    for (size_t k = 0; k < a.n;) {
        const char *p = a.p + k;
        size_t left = a.n - k, used = 0;
        if (left >= 3 && memcmp(p, "%40", 3) == 0) {
            used = 3;
        } else if (left >= 8 && strncasecmp(p, "&commat;", 8) == 0) {
            used = 8;
        } else if (left >= 6 && p[0] == '\\' && (p[1] == 'u' || p[1] == 'U') &&
                   memcmp(p + 2, "0040", 4) == 0) {
            used = 6;
        } else if (left >= 4 && p[0] == '&' && p[1] == '#') {
            int hex = p[2] == 'x' || p[2] == 'X';
            size_t j = 2 + (size_t)hex;
            unsigned long v = 0;
            size_t digits = 0;
            while (j < left && digits < 8 &&
                   (hex ? strchr("0123456789abcdefABCDEF", p[j]) != NULL
                        : p[j] >= '0' && p[j] <= '9') &&
                   p[j]) {
                v = v * (hex ? 16 : 10) +
                    (unsigned long)(p[j] <= '9' ? p[j] - '0' : (p[j] | 0x20) - 'a' + 10);
                j++, digits++;
            }
            if (digits && j < left && p[j] == ';' && v == 0x40)
                used = j + 1;
        }
        char c;
        if (used) {
            c = '@';
            k += used;
        } else {
            c = *p;
            k++;
        }
        if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '@')
            put(out, &c, 1);
        else if (c >= 'A' && c <= 'Z') {
            c = (char)(c | 0x20);
            put(out, &c, 1);
        }
    }
    free(a.p);
}

/* ---- the check ---- */

struct leak {
    const char *how;
    char where[160];
};

struct needle {
    struct buf skel; /* the value's skeleton */
    size_t part;     /* the length of a run that counts as a partial leak */
    int any_part;    /* this pass looks for such runs (after none found the whole value) */
};

static int skel_hit(const struct needle *nd, const struct buf *hay, int *partial)
{
    if (memmem_(hay->p, hay->n, nd->skel.p, nd->skel.n))
        return 1;
    for (size_t i = 0; nd->any_part && i + nd->part <= nd->skel.n; i++)
        if (memmem_(hay->p, hay->n, nd->skel.p + i, nd->part)) {
            *partial = 1;
            return 1;
        }
    return 0;
}

static int walk(const cJSON *j, const struct needle *nd, struct leak *lk, int depth, int *partial);

static int check_string(const char *s, const struct needle *nd, struct leak *lk, int depth,
                        int *partial, const char *what)
{
    struct buf sk = {0};
    int hit;

    skeleton(s, strlen(s), 0, &sk);
    hit = sk.n && skel_hit(nd, &sk, partial);
    free(sk.p);
    if (hit) {
        snprintf(lk->where, sizeof(lk->where), "%s \"%.100s\"", what, s);
        return 1;
    }
    /* a string that is itself a JSON text (tool-call arguments) is read again */
    if (depth < 3 && (s[0] == '{' || s[0] == '[')) {
        cJSON *in = cJSON_Parse(s);
        if (in) {
            hit = walk(in, nd, lk, depth + 1, partial);
            cJSON_Delete(in);
            if (hit)
                return 1;
        }
    }
    return 0;
}

static int walk(const cJSON *j, const struct needle *nd, struct leak *lk, int depth, int *partial)
{
    for (; j; j = j->next) {
        if (j->string && check_string(j->string, nd, lk, depth, partial,
                                      depth ? "a nested JSON's member name" : "a member name"))
            return 1;
        if (cJSON_IsString(j) && j->valuestring &&
            check_string(j->valuestring, nd, lk, depth, partial,
                         depth ? "a nested JSON's string" : "a string"))
            return 1;
        if (j->child && walk(j->child, nd, lk, depth, partial))
            return 1;
    }
    return 0;
}

/* leaked -- whether the outbound holds the value in any spelling; fills lk */
static int leaked(const struct plant *pl, const char *out, size_t n, struct leak *lk, int *partial)
{
    const struct secret *s = &SECRETS[pl->secret];
    struct needle nd = {{0}, 0, 0};
    struct buf sk = {0};
    int hit = 0;

    *partial = 0;
    if (pl->spelt.n && memmem_(out, n, pl->spelt.p, pl->spelt.n)) {
        lk->how = "the planted spelling, verbatim";
        snprintf(lk->where, sizeof(lk->where), "%.100s", pl->spelt.p);
        return 1;
    }
    for (int i = 0; i < 3 && s->spellings[i]; i++) {
        struct buf c = {0};
        put_json_text(&c, s->spellings[i], strlen(s->spellings[i]));
        hit = memmem_(out, n, c.p, c.n) != NULL;
        if (hit) {
            lk->how = "a canonical ASCII spelling, verbatim";
            snprintf(lk->where, sizeof(lk->where), "%.100s", c.p);
        }
        free(c.p);
        if (hit)
            return 1;
    }
    skeleton(s->needle, strlen(s->needle), 0, &nd.skel);
    nd.part = nd.skel.n / 2 > 10 ? nd.skel.n / 2 : 10;
    cJSON *root = cJSON_ParseWithLength(out, n);
    skeleton(out, n, 1, &sk);
    /* the whole value anywhere first, then runs of it */
    for (nd.any_part = 0; nd.any_part < 2 && !hit; nd.any_part++) {
        if (root && (hit = walk(root, &nd, lk, 0, partial)) != 0)
            lk->how = *partial ? "part of the value, after decoding and normalising (cJSON)"
                               : "the value, after decoding and normalising (cJSON)";
        if (!hit && (hit = skel_hit(&nd, &sk, partial)) != 0) {
            lk->how = *partial ? "part of the value, in the whole outbound with escapes decoded"
                               : "the value, in the whole outbound with escapes decoded";
            snprintf(lk->where, sizeof(lk->where), "(across the body's strings)");
        }
    }
    cJSON_Delete(root);
    free(sk.p);
    free(nd.skel.p);
    return hit;
}

/* ---- known gaps: counted and reported, not asserted unless EGRESS_ALL=1 ---- */

enum {
    GAP_NONE,
    GAP_GLUE,
    GAP_SEPARATOR,
    GAP_LOOKALIKE,
    GAP_AT_ESCAPE,
    GAP_CLOSED_GRAMMAR,
    GAP_NESTED_ESCAPE,
    GAP_N
};
static const char *const GAP_NAMES[GAP_N] = {
    "none",           "glued-letter",       "separator", "rare-look-alike", "escaped-@-spelling",
    "closed-grammar", "escape-in-arguments"};

/* gap_known -- which known product gap explains a leak, or GAP_NONE (see the header) */
static int gap_known(const struct gen *g)
{
    (void)g; /* (none is left; see the header) */
    return GAP_NONE;
}

/* ---- statistics (EGRESS_STATS=1 prints them at exit) ---- */

enum {
    O_REFUSED400,
    O_REFUSED403,
    O_REFUSED_OTHER,
    O_REDACT,
    O_ALLOW,
    O_LEAK,
    O_PARTIAL,
    O_GAP,
    O_N
};
static const char *const O_NAMES[O_N] = {"400",   "403",  "other",   "redact",
                                         "allow", "LEAK", "PARTIAL", "gap"};
static unsigned long stats[S_COUNT][ENC_COUNT][O_N];
static int stats_on, assert_all, dump, survey;
static FILE *survey_log;
static unsigned shown[S_COUNT][ENC_COUNT];
static unsigned long gaps[GAP_N];
static unsigned long routes[2][2][O_N]; /* [client API][provider API][outcome] */

static void print_stats(void)
{
    fprintf(stderr, "\nfuzz_egress: outcomes per secret and encoding\n%-15s %-16s", "secret",
            "encoding");
    for (int o = 0; o < O_N; o++)
        fprintf(stderr, " %8s", O_NAMES[o]);
    fputc('\n', stderr);
    for (int s = 0; s < S_COUNT; s++)
        for (int e = 0; e < ENC_COUNT; e++) {
            unsigned long tot = 0;
            for (int o = 0; o < O_N; o++)
                tot += stats[s][e][o];
            if (!tot)
                continue;
            fprintf(stderr, "%-15s %-16s", SECRETS[s].name, ENC_NAMES[e]);
            for (int o = 0; o < O_N; o++)
                fprintf(stderr, " %8lu", stats[s][e][o]);
            fputc('\n', stderr);
        }
    for (int a = 0; a < 2; a++)
        for (int m = 0; m < 2; m++) {
            fprintf(stderr, "%-15s %-16s", a ? "Anthropic" : "OpenAI",
                    m ? "-> Anthropic" : "-> OpenAI");
            for (int o = 0; o < O_N; o++)
                fprintf(stderr, " %8lu", routes[a][m][o]);
            fputc('\n', stderr);
        }
    fprintf(stderr, "known gaps:");
    for (int k = 1; k < GAP_N; k++)
        fprintf(stderr, " %s %lu", GAP_NAMES[k], gaps[k]);
    fprintf(stderr, "; unexplained %lu\n", gaps[0]);
}

static void print_bytes(const char *label, const char *p, size_t n)
{
    fprintf(stderr, "%s (%zu bytes): ", label, n);
    fwrite(p, 1, n, stderr);
    fputc('\n', stderr);
}

static void report(const struct plant *pl, const char *where, int api, int model,
                   const struct proxy_decision *d, const char *body, size_t len,
                   const struct leak *lk, int partial, int fatal)
{
    fprintf(stderr,
            "fuzz_egress: %s: %s (%s) encoded %s [%s] planted in %s, %s client to %s provider, "
            "verdict %s, left the gateway as %s: %s\n",
            fatal ? (partial ? "PARTIAL LEAK" : "LEAK") : "known gap", SECRETS[pl->secret].name,
            SECRETS[pl->secret].is_secret ? "secrets: block" : "pii: redact", ENC_NAMES[pl->enc],
            pl->detail, where ? where : "(no slot)", api ? "Anthropic" : "OpenAI",
            model ? "an Anthropic" : "an OpenAI", proxy_decision_verdict(d), lk->how, lk->where);
    for (size_t i = 0; i < d->policy.n_findings; i++)
        fprintf(stderr, "  finding %s [%zu, %zu)\n", d->policy.findings[i].detector,
                (size_t)d->policy.findings[i].start, (size_t)d->policy.findings[i].end);
    print_bytes("planted", pl->spelt.p, pl->spelt.n);
    print_bytes("body", body, len);
    print_bytes("outbound", d->outbound, d->outbound_len);
}

static void setup(void)
{
    struct config_errors errs;

    if (sodium_init() < 0)
        abort();
    memset(&errs, 0, sizeof(errs));
    if (config_load_text("fuzz.yaml", YAML, sizeof(YAML) - 1, NULL, &cfg, &errs) < 0 ||
        policy_new(cfg, &pol, &errs) < 0)
        abort();
    /* cfg and pol live for the whole run */
    stats_on = getenv("EGRESS_STATS") != NULL;
    assert_all = getenv("EGRESS_ALL") != NULL;
    dump = getenv("EGRESS_DUMP") != NULL;
    survey = getenv("EGRESS_SURVEY") != NULL;
    if (survey && getenv("EGRESS_SURVEY")[0]) /* a file: one line per input */
        survey_log = fopen(getenv("EGRESS_SURVEY"), "a");
    if (stats_on)
        atexit(print_stats);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t hdr[10] = {0};
    struct plant *pl;
    struct buf b = {0};
    struct gen g;
    struct proxy_decision d;
    int api, model, rc, outcome;

    if (!cfg)
        setup();
    if (size > 4096)
        return 0;
    memcpy(hdr, data, size < sizeof(hdr) ? size : sizeof(hdr));
    api = hdr[0] & 1;
    model = hdr[0] >> 1 & 1;

    pl = calloc(1, sizeof(*pl));
    if (!pl)
        abort();
    pl->secret = hdr[1] % S_COUNT;
    pl->spelling = hdr[1] >> 4;
    pl->enc = hdr[2] % ENC_COUNT;
    pl->glue = hdr[0] >> 2 & 1 ? 1 + (hdr[4] & 1) + ((hdr[4] & 2) ? 1 : 0) : 0;
    pl->escape_too = hdr[0] >> 3 & 1;
    pl->context = hdr[0] >> 4;
    pl->density = hdr[3];
    pl->rng = ((uint32_t)hdr[4] | (uint32_t)hdr[5] << 8 | (uint32_t)hdr[6] << 16 |
               (uint32_t)hdr[7] << 24) |
              1;
    plant_build(pl);

    /* pass 1: count the slots; pass 2: write the body with the value in one */
    memset(&g, 0, sizeof(g));
    g.r.p = data + (size < 10 ? size : 10);
    g.r.n = size < 10 ? 0 : size - 10;
    g.b = &b;
    g.pl = pl;
    body(&g, api, model);
    /* counted from the end, so that 0 picks the last string rather than the name "model" */
    g.target = g.nslots - 1 - ((unsigned)hdr[8] | (unsigned)hdr[9] << 8) % g.nslots;
    g.nslots = 0;
    g.r.i = 0;
    g.emit = 1;
    b.n = 0;
    body(&g, api, model);

    rc = proxy_decide(cfg, pol, api ? POLICY_API_ANTHROPIC : POLICY_API_OPENAI, b.p, b.n, "k", "t",
                      &d);
    if (rc < 0)
        outcome = d.status == 400 ? O_REFUSED400 : d.status == 403 ? O_REFUSED403 : O_REFUSED_OTHER;
    else if (d.has_policy && d.policy.verdict == POLICY_BLOCK)
        outcome = O_REFUSED403;
    else if (!d.outbound)
        outcome = O_REFUSED_OTHER; /* nothing leaves (a built-in engine; none configured) */
    else {
        struct leak lk = {0};
        int partial = 0;
        outcome = d.policy.verdict == POLICY_REDACT ? O_REDACT : O_ALLOW;
        if (leaked(pl, d.outbound, d.outbound_len, &lk, &partial)) {
            if (survey_log)
                fprintf(survey_log, "G\t%s\t%s\t%s\t%s\t%d%d\t%s\t%s\t%s\t%s\t%s\n",
                        SECRETS[pl->secret].name, ENC_NAMES[pl->enc], pl->detail, g.where, api,
                        model, proxy_decision_verdict(&d), lk.how, lk.where,
                        GAP_NAMES[gap_known(&g)], g.plant_key);
            int gap = gap_known(&g);
            int known = survey || gap != GAP_NONE;
            gaps[gap]++;
            outcome = known ? O_GAP : partial ? O_PARTIAL : O_LEAK;
            if (!known || assert_all) {
                report(pl, g.where, api, model, &d, b.p, b.n, &lk, partial, 1);
                abort();
            }
            if (survey && gap == GAP_NONE)
                fprintf(stderr, "fuzz_egress: survey: a leak no known gap explains:\n");
            if ((stats_on && shown[pl->secret][pl->enc]++ < 2) || (survey && gap == GAP_NONE))
                report(pl, g.where, api, model, &d, b.p, b.n, &lk, partial, 0);
        }
    }
    stats[pl->secret][pl->enc][outcome]++;
    routes[api][model][outcome]++;
    if (survey_log && rc < 0)
        fprintf(survey_log, "R\t%s\t%s\t%s\t%s\t%d%d\t%d\t%s\n", SECRETS[pl->secret].name,
                ENC_NAMES[pl->enc], pl->detail, g.where, api, model, d.status, d.error);
    if (dump) {
        fprintf(stderr, "fuzz_egress: %s %s [%s] in %s: %s (%s)\n", SECRETS[pl->secret].name,
                ENC_NAMES[pl->enc], pl->detail, g.where ? g.where : "(no slot)", O_NAMES[outcome],
                rc < 0 ? d.error : proxy_decision_verdict(&d));
        print_bytes("body", b.p, b.n);
        if (d.outbound)
            print_bytes("outbound", d.outbound, d.outbound_len);
    }
    proxy_decision_deinit(&d);
    free(b.p);
    free(pl->spelt.p);
    free(pl);
    return 0;
}
