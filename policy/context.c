/* context.c -- context words: the labels before a candidate that raise or lower the
 * confidence of a validator, and the references and placeholders that hold no value.
 *
 * Like Presidio's context words, but as a table and a backwards walk instead of a
 * model: a validator that has a candidate at t[s] asks for the nearest label that ends
 * shortly before s, and gets its class. Only candidates pay for this (a bare digit run,
 * a finding of the digit pass, a secret's value), never the clean text.
 *
 * Matching: ASCII letters are compared case-insensitively; every other byte (the UTF-8
 * of Japanese, Hindi, accented Latin) bytewise. A keyword that starts or ends with an
 * ASCII letter must not be glued to another ASCII letter there ("tel" is not in "hotel"
 * or "telling"). Between the label and the candidate there may be no digit and no line
 * break or ';' (a label labels the next number, not one further on, nor one in the
 * next clause), and at most the class's gap of bytes (docs/policy.md lists the tables). */
#include <pthread.h>
#include <string.h>
#include <strings.h>

#include "policy/policy_int.h"

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
static inline int is_digit(int c)
{
    return c >= '0' && c <= '9';
}
static inline int lower(int c)
{
    return is_upper(c) ? c + 32 : c;
}

struct ctx_word {
    const char *kw; /* ASCII in lower case; other bytes as UTF-8 */
    enum policy_ctx cls;
};

/* The labels. The nearest one wins, so "Bestellnummer 4711, Tel. 030 1234567" is a
 * phone (the digits of 4711 also end the walk before it reaches Bestellnummer). */
static const struct ctx_word words[] = {
    /* phone -- en */
    {"phone", POLICY_CTX_PHONE},
    {"telephone", POLICY_CTX_PHONE},
    {"tel", POLICY_CTX_PHONE},
    {"mobile", POLICY_CTX_PHONE},
    {"mob", POLICY_CTX_PHONE},
    {"cell", POLICY_CTX_PHONE},
    {"cellphone", POLICY_CTX_PHONE},
    {"fax", POLICY_CTX_PHONE},
    {"whatsapp", POLICY_CTX_PHONE},
    {"call me", POLICY_CTX_PHONE},
    {"text me", POLICY_CTX_PHONE},
    {"sms", POLICY_CTX_PHONE},
    {"hotline", POLICY_CTX_PHONE},
    {"landline", POLICY_CTX_PHONE},
    {"contact no", POLICY_CTX_PHONE},
    {"contact number", POLICY_CTX_PHONE},
    /* de */
    {"telefon", POLICY_CTX_PHONE},
    {"telefonnummer", POLICY_CTX_PHONE},
    {"telefonnr", POLICY_CTX_PHONE},
    {"handy", POLICY_CTX_PHONE},
    {"handynummer", POLICY_CTX_PHONE},
    {"mobil", POLICY_CTX_PHONE},
    {"mobilnummer", POLICY_CTX_PHONE},
    {"rufnummer", POLICY_CTX_PHONE},
    {"festnetz", POLICY_CTX_PHONE},
    {"festnetznummer", POLICY_CTX_PHONE},
    /* fr */
    {"t\xc3\xa9l\xc3\xa9phone", POLICY_CTX_PHONE}, /* téléphone */
    {"t\xc3\xa9l", POLICY_CTX_PHONE},              /* tél */
    {"portable", POLICY_CTX_PHONE},
    {"appelez", POLICY_CTX_PHONE},
    /* es, it, pt */
    {"tel\xc3\xa9\x66ono", POLICY_CTX_PHONE}, /* teléfono */
    {"telefono", POLICY_CTX_PHONE},
    {"m\xc3\xb3vil", POLICY_CTX_PHONE}, /* móvil */
    {"movil", POLICY_CTX_PHONE},
    {"celular", POLICY_CTX_PHONE},
    {"ll\xc3\xa1mame", POLICY_CTX_PHONE}, /* llámame */
    {"cellulare", POLICY_CTX_PHONE},
    {"chiamami", POLICY_CTX_PHONE},
    {"telefone", POLICY_CTX_PHONE},
    /* ja, zh */
    {"\xe9\x9b\xbb\xe8\xa9\xb1", POLICY_CTX_PHONE}, /* 電話 */
    {"\xe6\x90\xba\xe5\xb8\xaf", POLICY_CTX_PHONE}, /* 携帯 */
    {"\xe7\x94\xb5\xe8\xaf\x9d", POLICY_CTX_PHONE}, /* 电话 */
    {"\xe6\x89\x8b\xe6\x9c\xba", POLICY_CTX_PHONE}, /* 手机 */
    /* hi and Hinglish */
    {"\xe0\xa4\xab\xe0\xa4\xbc\xe0\xa5\x8b\xe0\xa4\xa8", POLICY_CTX_PHONE}, /* फ़ोन */
    {"\xe0\xa5\x9e\xe0\xa5\x8b\xe0\xa4\xa8", POLICY_CTX_PHONE}, /* फ़ोन, U+095E */
    {"\xe0\xa4\xab\xe0\xa5\x8b\xe0\xa4\xa8", POLICY_CTX_PHONE}, /* फोन */
    {"\xe0\xa4\xae\xe0\xa5\x8b\xe0\xa4\xac\xe0\xa4\xbe\xe0\xa4\x87\xe0\xa4\xb2",
     POLICY_CTX_PHONE}, /* मोबाइल */
    {"\xe0\xa4\xae\xe0\xa5\x87\xe0\xa4\xb0\xe0\xa4\xbe \xe0\xa4\xa8\xe0\xa4\x82\xe0\xa4\xac"
     "\xe0\xa4\xb0",
     POLICY_CTX_PHONE}, /* मेरा नंबर */
    {"mera number", POLICY_CTX_PHONE},
    {"mera no", POLICY_CTX_PHONE},
    {"mera num", POLICY_CTX_PHONE},
    /* ru, ar */
    {"\xd1\x82\xd0\xb5\xd0\xbb\xd0\xb5\xd1\x84\xd0\xbe\xd0\xbd", POLICY_CTX_PHONE}, /* телефон */
    /* the same with its Cyrillic look-alikes of Latin letters mapped (normalisation) */
    {"\xd1\x82"
     "e"
     "\xd0\xbb"
     "e"
     "\xd1\x84"
     "o"
     "\xd0\xbd",
     POLICY_CTX_PHONE},
    {"\xd9\x87\xd8\xa7\xd8\xaa\xd9\x81", POLICY_CTX_PHONE}, /* هاتف */

    /* US social security number, named in several languages */
    {"ssn", POLICY_CTX_SSN},
    {"ss#", POLICY_CTX_SSN},
    {"social security", POLICY_CTX_SSN},
    {"soc sec", POLICY_CTX_SSN},
    {"soc. sec.", POLICY_CTX_SSN},
    {"sozialversicherungsnummer", POLICY_CTX_SSN},
    {"s\xc3\xa9\x63urit\xc3\xa9 sociale", POLICY_CTX_SSN}, /* sécurité sociale */
    {"seguro social", POLICY_CTX_SSN},
    {"previdenza sociale", POLICY_CTX_SSN},
    {"\xe7\xa4\xbe\xe4\xbc\x9a\xe4\xbf\x9d\xe9\x9a\x9c\xe7\x95\xaa\xe5\x8f\xb7",
     POLICY_CTX_SSN}, /* 社会保障番号 */
    {"\xe0\xa4\xb8\xe0\xa4\xbe\xe0\xa4\xae\xe0\xa4\xbe\xe0\xa4\x9c\xe0\xa4\xbf\xe0\xa4\x95 "
     "\xe0\xa4\xb8\xe0\xa5\x81\xe0\xa4\xb0\xe0\xa4\x95\xe0\xa5\x8d\xe0\xa4\xb7\xe0\xa4\xbe",
     POLICY_CTX_SSN}, /* सामाजिक सुरक्षा */

    /* numbers that are documents, orders or accounts of another kind: never a phone,
     * a card or an SSN right after these */
    {"\xe3\x83\x9e\xe3\x82\xa4\xe3\x83\x8a\xe3\x83\xb3\xe3\x83\x90\xe3\x83\xbc",
     POLICY_CTX_DOCNUM}, /* マイナンバー */
    {"\xe5\x80\x8b\xe4\xba\xba\xe7\x95\xaa\xe5\x8f\xb7", POLICY_CTX_DOCNUM}, /* 個人番号 */
    {"\xe5\xb9\xb4\xe9\x87\x91\xe7\x95\xaa\xe5\x8f\xb7", POLICY_CTX_DOCNUM}, /* 年金番号 */
    {"\xe6\x97\x85\xe5\x88\xb8\xe7\x95\xaa\xe5\x8f\xb7", POLICY_CTX_DOCNUM}, /* 旅券番号 */
    {"\xe6\xb3\x95\xe4\xba\xba\xe7\x95\xaa\xe5\x8f\xb7", POLICY_CTX_DOCNUM}, /* 法人番号 */
    {"\xe5\x85\x8d\xe8\xa8\xb1\xe8\xa8\xbc\xe7\x95\xaa\xe5\x8f\xb7",
     POLICY_CTX_DOCNUM}, /* 免許証番号 */
    {"\xe4\xbf\x9d\xe9\x99\xba\xe8\x80\x85\xe7\x95\xaa\xe5\x8f\xb7",
     POLICY_CTX_DOCNUM}, /* 保険者番号 */
    {"\xe4\xbd\x8f\xe6\xb0\x91\xe7\xa5\xa8\xe3\x82\xb3\xe3\x83\xbc\xe3\x83\x89",
     POLICY_CTX_DOCNUM}, /* 住民票コード */
    {"\xe6\xb3\xa8\xe6\x96\x87\xe7\x95\xaa\xe5\x8f\xb7", POLICY_CTX_DOCNUM}, /* 注文番号 */
    {"\xe4\xbc\x9a\xe5\x93\xa1\xe7\x95\xaa\xe5\x8f\xb7", POLICY_CTX_DOCNUM}, /* 会員番号 */
    {"\xe5\x8f\xa3\xe5\xba\xa7\xe7\x95\xaa\xe5\x8f\xb7", POLICY_CTX_DOCNUM}, /* 口座番号 */
    {"\xe8\xae\xa2\xe5\x8d\x95\xe5\x8f\xb7", POLICY_CTX_DOCNUM},             /* 订单号 */
    {"\xe8\xba\xab\xe4\xbb\xbd\xe8\xaf\x81", POLICY_CTX_DOCNUM},             /* 身份证 */
    {"\xe0\xa4\x86\xe0\xa4\xa7\xe0\xa4\xbe\xe0\xa4\xb0", POLICY_CTX_DOCNUM}, /* आधार (Aadhaar) */
    {"aadhaar", POLICY_CTX_DOCNUM},
    {"passport", POLICY_CTX_DOCNUM},
    {"isbn", POLICY_CTX_DOCNUM},
    {"order no", POLICY_CTX_DOCNUM},
    {"order number", POLICY_CTX_DOCNUM},
    {"order #", POLICY_CTX_DOCNUM},
    {"invoice no", POLICY_CTX_DOCNUM},
    {"invoice number", POLICY_CTX_DOCNUM},
    {"tracking number", POLICY_CTX_DOCNUM},
    {"tracking no", POLICY_CTX_DOCNUM},
    {"serial number", POLICY_CTX_DOCNUM},
    {"serial no", POLICY_CTX_DOCNUM},
    {"bestellnummer", POLICY_CTX_DOCNUM},
    {"rechnungsnummer", POLICY_CTX_DOCNUM},
    {"kundennummer", POLICY_CTX_DOCNUM},
    {"sendungsnummer", POLICY_CTX_DOCNUM},
    {"aktenzeichen", POLICY_CTX_DOCNUM},
    {"reisepassnummer", POLICY_CTX_DOCNUM},
    {"steuernummer", POLICY_CTX_DOCNUM},
    {"num\xc3\xa9ro de commande", POLICY_CTX_DOCNUM}, /* numéro de commande */
    {"num\xc3\xa9ro de facture", POLICY_CTX_DOCNUM},  /* numéro de facture */
    {"n\xc2\xb0 de commande", POLICY_CTX_DOCNUM},     /* n° de commande */
    {"n\xc3\xbamero de pedido", POLICY_CTX_DOCNUM},   /* número de pedido */
    {"n\xc3\xbamero de factura", POLICY_CTX_DOCNUM},  /* número de factura */
    {"numero d'ordine", POLICY_CTX_DOCNUM},
    {"numero di fattura", POLICY_CTX_DOCNUM},

    /* labels of other numbers: nearer than a phone or SSN label, they take a bare run
     * away from it ("mobile app build 2024061501"), but do not veto a number that is a
     * phone by its own shape */
    {"build", POLICY_CTX_OTHER},
    {"version", POLICY_CTX_OTHER},
    {"id", POLICY_CTX_OTHER},
    {"order", POLICY_CTX_OTHER},
    {"invoice", POLICY_CTX_OTHER},
    {"ticket", POLICY_CTX_OTHER},
    {"ref", POLICY_CTX_OTHER},
    {"reference", POLICY_CTX_OTHER},
    {"code", POLICY_CTX_OTHER},
    {"pin", POLICY_CTX_OTHER},
    {"otp", POLICY_CTX_OTHER},
    {"serial", POLICY_CTX_OTHER},
    {"zip", POLICY_CTX_OTHER},
    {"account", POLICY_CTX_OTHER},
    {"routing", POLICY_CTX_OTHER},
    {"amount", POLICY_CTX_OTHER},
    {"total", POLICY_CTX_OTHER},
    {"timestamp", POLICY_CTX_OTHER},
    {"epoch", POLICY_CTX_OTHER},
    {"port", POLICY_CTX_OTHER},
    {"pid", POLICY_CTX_OTHER},
    {"data", POLICY_CTX_OTHER},
    {"used", POLICY_CTX_OTHER},
    {"usage", POLICY_CTX_OTHER},
    {"size", POLICY_CTX_OTHER},
    {"count", POLICY_CTX_OTHER},
    {"balance", POLICY_CTX_OTHER},
    {"duration", POLICY_CTX_OTHER},
    {"release", POLICY_CTX_OTHER},
    {"app", POLICY_CTX_OTHER},
    {"plan", POLICY_CTX_OTHER},
    {"update", POLICY_CTX_OTHER},
    {"model", POLICY_CTX_OTHER},
    {"bill", POLICY_CTX_OTHER},
    {"case", POLICY_CTX_OTHER},
    {"battery", POLICY_CTX_OTHER},
    {"firmware", POLICY_CTX_OTHER},
    {"imei", POLICY_CTX_OTHER},
    {"sdk", POLICY_CTX_OTHER},
};
#define N_WORDS (sizeof(words) / sizeof(*words))

/* The most bytes between a label's end and the candidate, per class. Document labels
 * must be right before their number ("旅券番号：", "Order no. "); a phone label may be a
 * few words away ("Phone number on file should be ..."). */
static const size_t max_gap[] = {
    [POLICY_CTX_NONE] = 0,    [POLICY_CTX_PHONE] = 32, [POLICY_CTX_SSN] = 32,
    [POLICY_CTX_DOCNUM] = 12, [POLICY_CTX_OTHER] = 16,
};
#define MAX_GAP 32

/* Keywords indexed by their last byte (lower case): the walk tests only the few
 * keywords that can end at each position. Built once. */
static unsigned char word_len[N_WORDS];
static short by_last[256], next_word[N_WORDS];
static pthread_once_t index_once = PTHREAD_ONCE_INIT;

static void index_build(void)
{
    for (size_t i = 0; i < 256; i++)
        by_last[i] = -1;
    for (size_t i = N_WORDS; i-- > 0;) {
        size_t l = strlen(words[i].kw);
        unsigned char last = (unsigned char)words[i].kw[l - 1];
        word_len[i] = (unsigned char)l;
        next_word[i] = by_last[last];
        by_last[last] = (short)i;
    }
}

/* words[w] ends at t[p) (p exclusive), inside t[lo, ...). */
static int word_at(const char *t, size_t lo, size_t p, size_t w)
{
    size_t l = word_len[w];
    if (p - lo < l)
        return 0;
    const char *kw = words[w].kw;
    const char *b = t + p - l;
    for (size_t i = 0; i < l; i++)
        if (lower((unsigned char)b[i]) != (unsigned char)kw[i])
            return 0;
    if (is_alpha((unsigned char)kw[0]) && p > l && is_alpha((unsigned char)b[-1]))
        return 0;
    return 1;
}

enum policy_ctx policy_context_label(const char *t, size_t n, size_t s)
{
    pthread_once(&index_once, index_build);
    /* the label may reach back past the gap by its own length (at most 64 bytes) */
    size_t lo = s > MAX_GAP + 64 ? s - MAX_GAP - 64 : 0;
    for (size_t p = s; p > lo && s - p <= MAX_GAP; p--) {
        int c = (unsigned char)t[p - 1];
        if (p < s && (is_digit(c) || c == '\n' || c == '\r' || c == ';'))
            break; /* another number, line or clause */
        for (short w = by_last[lower(c)]; w >= 0; w = next_word[w]) {
            if (s - p > max_gap[words[w].cls] || !word_at(t, lo, p, (size_t)w))
                continue;
            /* not glued to a letter after it ("tel" in "telling"); p < s here or the
             * candidate itself follows */
            if (is_alpha((unsigned char)t[p - 1]) && p < n && is_alpha((unsigned char)t[p]))
                continue;
            return words[w].cls;
        }
    }
    return POLICY_CTX_NONE;
}

/* ---- references and placeholders ---- */

/* has_ci -- whether v[0..n) holds w (lower case) in any case */
static int has_ci(const char *v, size_t n, const char *w)
{
    size_t l = strlen(w);
    unsigned char w0 = (unsigned char)w[0];
    for (size_t i = 0; i + l <= n; i++) {
        size_t k = 1;
        if (lower((unsigned char)v[i]) != w0)
            continue;
        while (k < l && lower((unsigned char)v[i + k]) == (unsigned char)w[k])
            k++;
        if (k == l)
            return 1;
    }
    return 0;
}

/* eq_ci -- a[0..n) is b[0..n) in any case (ASCII): strncasecmp without the locale, which
 * was a tenth of deciding a body of many secret-like members */
static int eq_ci(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (lower((unsigned char)a[i]) != lower((unsigned char)b[i]))
            return 0;
    return 1;
}

static int starts(const char *v, size_t n, const char *w)
{
    size_t l = strlen(w);
    return n >= l && memcmp(v, w, l) == 0;
}

int policy_value_placeholder(const char *v, size_t n)
{
    /* whole values that name the field instead of filling it */
    static const char *const names[] = {"password",   "passwd", "pass",   "pwd",     "pw", "secret",
                                        "mypassword", "token",  "apikey", "api_key", "key"};
    /* inside a value: a template's or a tutorial's placeholder */
    static const char *const marks[] = {
        "your",  "placeholder", "changeme", "change_me", "change-me", "replace", "redacted",
        "dummy", "xxxx",        "****",     "<",         ">",         "{{",      "${"};
    if (n == 0)
        return 1;
    if (v[0] == '$' || v[0] == '{' || v[0] == '<')
        return 1; /* $VAR, ${VAR}, {password}, <password> */
    if (v[0] == '[' && v[n - 1] == ']')
        return 1; /* [PASSWORD], and our own [GITHUB_TOKEN_1] after redaction */
    if (v[0] == '%' && n >= 2 && (v[1] == 's' || v[1] == '('))
        return 1; /* %s, %(password)s -- but %40 is an escaped '@' in a real password */
    for (size_t i = 0; n <= 10 && i < sizeof(names) / sizeof(*names); i++)
        if (strlen(names[i]) == n && has_ci(v, n, names[i]))
            return 1; /* (none is longer than 10) */
    for (size_t i = 0; i < sizeof(marks) / sizeof(*marks); i++)
        if (has_ci(v, n, marks[i]))
            return 1;
    size_t same = 0;
    for (size_t i = 0; i < n; i++)
        same += v[i] == '*' || v[i] == '.' || v[i] == 'x' || v[i] == 'X' || v[i] == '#';
    return same == n;
}

int policy_value_reference(const char *v, size_t n)
{
    /* where a program reads the value from, not the value */
    static const char *const heads[] = {
        "process.env",  "os.environ",      "os.getenv", "getenv", "System.getenv",
        "Environment.", "import.meta.env", "Deno.env",  "ENV[",   "env.",
        "secrets.",     "vars.",           "inputs.",   "steps.", "needs.",
        "var.",         "local.",          "data.",     "module."};
    if (n && v[0] == '.')
        return 1; /* the tail of a member access: "secrets.X" cut after the word */
    for (size_t i = 0; i < sizeof(heads) / sizeof(*heads); i++)
        if (starts(v, n, heads[i]))
            return 1;
    /* an identifier path: config.stripeSecretKey, settings.API_TOKEN_V2. Its head is a
     * word of 3+ letters, which a secret with a dot in it (a JWT, "ya29.") is not */
    size_t i = 0;
    while (i < n && is_alpha((unsigned char)v[i]))
        i++;
    if (i < 3 || i == n || v[i] != '.')
        return 0;
    while (i < n) {
        if (v[i++] != '.' || i == n || !(is_alpha((unsigned char)v[i]) || v[i] == '_'))
            return 0;
        while (i < n &&
               (is_alpha((unsigned char)v[i]) || is_digit((unsigned char)v[i]) || v[i] == '_'))
            i++;
    }
    return 1;
}

int policy_context_reference(const char *t, size_t vs)
{
    /* "${{ secrets.X }}", "{{ .Values.password }}", "${DB_PASSWORD}", "<password>",
     * "os.environ[\"X\"]", "getenv(\"X\")": what comes just before the value says it is
     * a name to look up */
    size_t i = vs, lim = vs > 24 ? vs - 24 : 0;
    while (i > lim && (t[i - 1] == ' ' || t[i - 1] == '"' || t[i - 1] == '\''))
        i--;
    if (i == lim)
        return 0;
    int c = (unsigned char)t[i - 1];
    if (c == '<')
        return 1;
    if (i - lim >= 2 && (memcmp(t + i - 2, "{{", 2) == 0 || memcmp(t + i - 2, "${", 2) == 0 ||
                         memcmp(t + i - 2, "$(", 2) == 0))
        return 1;
    if (c == '[' || c == '(') {
        size_t w = i - 1;
        while (w > lim && (is_alpha((unsigned char)t[w - 1]) || t[w - 1] == '.' || t[w - 1] == '_'))
            w--;
        return has_ci(t + w, i - 1 - w, "env"); /* environ[, getenv(, ENV[, env( */
    }
    return 0;
}

/* A word and its length, so that tables are compared without strlen. */
struct lword {
    const char *s;
    unsigned char n;
};
#define LW(w)                                                                                      \
    {                                                                                              \
        w, sizeof(w) - 1                                                                           \
    }

int policy_context_counter_name(const char *name, size_t n)
{
    /* a name part that makes a secret-like word a count, a size or a pointer to the
     * value: token_count, max_tokens, key_count, secret_ttl, api_key_file */
    static const struct lword parts[] = {
        LW("count"),   LW("counts"),   LW("cnt"),     LW("num"),        LW("limit"),
        LW("limits"),  LW("len"),      LW("length"),  LW("size"),       LW("max"),
        LW("min"),     LW("total"),    LW("budget"),  LW("usage"),      LW("used"),
        LW("ttl"),     LW("expiry"),   LW("expires"), LW("expiration"), LW("lifetime"),
        LW("timeout"), LW("type"),     LW("file"),    LW("path"),       LW("id"),
        LW("ids"),     LW("index"),    LW("idx"),     LW("prompt"),     LW("completion"),
        LW("input"),   LW("output"),   LW("cached"),  LW("reasoning"),  LW("rate"),
        LW("per"),     LW("version"),  LW("name"),    LW("arn"),        LW("url"),
        LW("uri"),     LW("endpoint"), LW("latency"), LW("attempts"),   LW("duration"),
        LW("header"),  LW("field"),    LW("param")};
    size_t i = 0;
    while (i < n) {
        while (i < n && (name[i] == '_' || name[i] == '-'))
            i++;
        size_t b = i;
        /* parts split at '_', '-' and at a lower-to-upper step (tokenCount) */
        while (i < n && name[i] != '_' && name[i] != '-' &&
               !(i > b && is_upper((unsigned char)name[i]) && is_lower((unsigned char)name[i - 1])))
            i++;
        size_t l = i - b;
        for (size_t k = 0; l && k < sizeof(parts) / sizeof(*parts); k++)
            if (parts[k].n == l && eq_ci(name + b, parts[k].s, l))
                return 1;
        if (i == b)
            i++;
    }
    return 0;
}
