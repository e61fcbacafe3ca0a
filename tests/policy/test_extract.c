/* test_extract.c -- the JSON walker: every place the model reads, in both APIs; escapes
 * decoded with spans mapped back to the exact original bytes; malformed input refused. */
#include "harness.h"
#include "policy/policy_int.h"

static int extract(enum policy_api api, const char *body, struct pextract *x, char *err)
{
    memset(x, 0, sizeof(*x));
    return policy_extract(api, body, strlen(body), x, err, 256);
}

/* segment i's decoded text equals want and maps to the body bytes `raw` */
static int seg_is(const struct pextract *x, const char *body, size_t i, int msg, const char *want,
                  const char *raw)
{
    if (i >= x->n_segs)
        return 0;
    const struct pseg *s = &x->segs[i];
    size_t dl = s->dend - s->dstart;
    int ok = s->message == msg && dl == strlen(want) &&
             memcmp(x->text + s->dstart, want, dl) == 0 && s->oend - s->ostart == strlen(raw) &&
             memcmp(body + s->ostart, raw, strlen(raw)) == 0;
    if (!ok)
        fprintf(stderr, "  seg %zu: msg %d '%.*s' raw '%.*s'\n", i, s->message, (int)dl,
                x->text + s->dstart, (int)(s->oend - s->ostart), body + s->ostart);
    return ok;
}

/* the texts of every segment in order, joined by '|', and their message indexes */
static int segs_are(const struct pextract *x, const char *want_texts, const char *want_msgs)
{
    char got[2048] = "", msgs[512] = "";
    size_t o = 0, m = 0;
    for (size_t i = 0; i < x->n_segs && o + 64 < sizeof(got); i++) {
        const struct pseg *s = &x->segs[i];
        o += (size_t)snprintf(got + o, sizeof(got) - o, "%s%.*s", i ? "|" : "",
                              (int)(s->dend - s->dstart), x->text + s->dstart);
        m += (size_t)snprintf(msgs + m, sizeof(msgs) - m, "%s%d", i ? "," : "", s->message);
    }
    int ok = strcmp(got, want_texts) == 0 && strcmp(msgs, want_msgs) == 0;
    if (!ok)
        fprintf(stderr, "  segments: '%s' messages %s\n  wanted:   '%s' messages %s\n", got, msgs,
                want_texts, want_msgs);
    return ok;
}

static void test_openai_locations(void)
{
    const char *b =
        "{\"model\":\"m\",\"messages\":["
        "{\"role\":\"system\",\"content\":\"sys\"},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"part1\"},"
        "{\"type\":\"image_url\",\"image_url\":{\"url\":\"http://"
        "x\"}},{\"type\":\"text\",\"text\":\"part2\"}]},"
        "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c1\",\"type\":"
        "\"function\","
        "\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"q\\\":1}\"}}]},"
        "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"result\"}],\"temperature\":0.5}";
    struct pextract x;
    char err[256];
    /* every string and non-API member name, in body order: the image URL and the tool call
     * ids and names leave too, so they are scanned; the model, the roles and the types are
     * of closed grammar */
    REQUIRE(extract(POLICY_API_OPENAI, b, &x, err) == 0);
    CHECK(segs_are(&x, "sys|part1|http://x|part2|c1|f|{\"q\":1}|c1|result", "0,1,1,1,2,2,2,3,3"));
    CHECK(seg_is(&x, b, 6, 2, "{\"q\":1}", "{\\\"q\\\":1}"));
    policy_extract_deinit(&x);
}

/* Anthropic document blocks: plain-text and content sources and the title/context are
 * read by the model (base64 sources are refused: test_unscannable) */
static void test_anthropic_documents(void)
{
    const char *b = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":["
                    "{\"type\":\"document\",\"title\":\"T1\",\"source\":{\"type\":\"text\",\"media_"
                    "type\":\"text/plain\",\"data\":\"D1\"}},"
                    "{\"type\":\"document\",\"source\":{\"type\":\"content\",\"content\":[{"
                    "\"type\":\"text\",\"text\":\"C1\"}]}},"
                    "{\"type\":\"document\",\"source\":{\"type\":\"url\",\"url\":\"https://"
                    "example.com/a.pdf\"}},"
                    "{\"type\":\"text\",\"text\":\"q\"}]}]}";
    struct pextract x = {0};
    char err[256];
    REQUIRE(extract(POLICY_API_ANTHROPIC, b, &x, err) == 0);
    /* the URL source leaves too, so it is scanned */
    CHECK(segs_are(&x, "T1|D1|C1|https://example.com/a.pdf|q", "0,0,0,0,0"));
    policy_extract_deinit(&x);
}

/* parts the model reads but the gateway cannot scan are refused, at any depth, with
 * where they are */
static void test_unscannable(void)
{
    static const struct {
        enum policy_api api;
        const char *body, *want;
    } cases[] = {
        {POLICY_API_OPENAI,
         "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"hi\"},"
         "{\"type\":\"file\",\"file\":{\"file_data\":\"data:application/pdf;base64,QUJD\"}}]}]}",
         "messages[0].content[1] is a 'file' part"},
        {POLICY_API_OPENAI,
         "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"user\",\"content\":["
         "{\"type\":\"input_audio\",\"input_audio\":{\"data\":\"QUJD\",\"format\":\"wav\"}}]}]}",
         "messages[1].content[0] is a 'input_audio' part"},
        {POLICY_API_ANTHROPIC,
         "{\"system\":[{\"type\":\"text\",\"text\":\"s\"},{\"type\":\"document\",\"source\":"
         "{\"type\":\"base64\",\"media_type\":\"application/"
         "pdf\",\"data\":\"QUJD\"}}],\"messages\":[]}",
         "system[1] is a 'document' part"},
        /* nested in a tool result: still refused (the proxy's old check missed this) */
        {POLICY_API_ANTHROPIC,
         "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":"
         "\"t\","
         "\"content\":[{\"type\":\"document\",\"source\":{\"type\":\"base64\",\"data\":\"QUJD\"}}]}"
         "]}]}",
         "messages[0].content[0].content[0] is a 'document' part"},
        /* a key written with an escape is the same key */
        {POLICY_API_OPENAI,
         "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"fil\\u0065\",\"file\":{}}]}]}",
         "messages[0].content[0] is a 'file' part"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct pextract x = {0};
        char err[256] = "";
        CHECK(policy_extract(cases[i].api, cases[i].body, strlen(cases[i].body), &x, err,
                             sizeof(err)) < 0);
        if (!strstr(err, cases[i].want))
            fprintf(stderr, "  case %zu: %s\n", i, err);
        CHECK(strstr(err, cases[i].want) != NULL);
        CHECK(strstr(err, "cannot scan") != NULL);
        policy_extract_deinit(&x);
    }
    /* deeper than the error's path can hold (tool results inside tool results): still
     * refused, the path cut short but the message whole */
    {
        char body[4096], err[512] = "";
        struct pextract x = {0};
        size_t n = 0;
        int d;
        n += (size_t)snprintf(body + n, sizeof(body) - n,
                              "{\"messages\":[{\"role\":\"user\",\"content\":");
        for (d = 0; d < 24; d++)
            n += (size_t)snprintf(body + n, sizeof(body) - n,
                                  "[{\"type\":\"tool_result\",\"tool_use_id\":\"t\",\"content\":");
        n += (size_t)snprintf(
            body + n, sizeof(body) - n,
            "[{\"type\":\"document\",\"source\":{\"type\":\"base64\",\"data\":\"QUJD\"}}]");
        for (d = 0; d < 24; d++)
            n += (size_t)snprintf(body + n, sizeof(body) - n, "}]");
        n += (size_t)snprintf(body + n, sizeof(body) - n, "}]}");
        REQUIRE(n < sizeof(body));
        CHECK(policy_extract(POLICY_API_ANTHROPIC, body, n, &x, err, sizeof(err)) < 0);
        CHECK(strncmp(err, "messages[0].content[0].content[0]", 33) == 0);
        CHECK(strstr(err, "... is a 'document' part, which the gateway cannot scan") != NULL);
        policy_extract_deinit(&x);
    }
}

static void test_anthropic_locations(void)
{
    const char *b =
        "{\"model\":\"m\",\"system\":[{\"type\":\"text\",\"text\":\"S1\"}],\"messages\":["
        "{\"role\":\"user\",\"content\":\"hello\"},"
        "{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"T\"},"
        "{\"type\":\"tool_use\",\"id\":\"t1\",\"name\":\"n\",\"input\":{\"a\":\"A\",\"b\":[\"B\",{"
        "\"c\":\"C\"}],\"n\":3}}]},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"t1\","
        "\"content\":\"R1\"},"
        "{\"type\":\"tool_result\",\"tool_use_id\":\"t1\",\"content\":[{\"type\":\"text\",\"text\":"
        "\"R2\"}]}]}]}";
    struct pextract x;
    char err[256];
    REQUIRE(extract(POLICY_API_ANTHROPIC, b, &x, err) == 0);
    /* tool ids, the tool's name and the member names of its input leave too */
    CHECK(
        segs_are(&x, "S1|hello|T|t1|n|a|A|b|B|c|C|t1|R1|t1|R2", "-1,0,1,1,1,1,1,1,1,1,1,2,2,2,2"));
    /* the key of a tool input value is kept for generic_secret */
    CHECK(x.segs[6].key_len == 1 && b[x.segs[6].key_off] == 'a');
    policy_extract_deinit(&x);

    const char *b2 = "{\"system\":\"plain system\",\"messages\":[]}";
    REQUIRE(extract(POLICY_API_ANTHROPIC, b2, &x, err) == 0);
    CHECK(segs_are(&x, "plain system", "-1"));
    policy_extract_deinit(&x);
    /* in an OpenAI body a top-level "system" is not the API's, but it leaves: scanned too */
    REQUIRE(extract(POLICY_API_OPENAI, b2, &x, err) == 0);
    CHECK(segs_are(&x, "plain system", "-1"));
    policy_extract_deinit(&x);
}

static void test_tool_definitions(void)
{
    const char *b =
        "{\"model\":\"m\",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\","
        "\"description\":\"desc one\"}}],\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    struct pextract x;
    char err[256];
    REQUIRE(extract(POLICY_API_OPENAI, b, &x, err) == 0);
    int found = 0;
    for (size_t i = 0; i < x.n_segs; i++)
        if (x.segs[i].dend - x.segs[i].dstart == 8 &&
            memcmp(x.text + x.segs[i].dstart, "desc one", 8) == 0)
            found = x.segs[i].message == -1;
    CHECK(found);
    CHECK(seg_is(&x, b, x.n_segs - 1, 0, "hi", "hi"));
    policy_extract_deinit(&x);
    const char *a =
        "{\"model\":\"m\",\"tools\":[{\"name\":\"f\",\"description\":\"anthropic tool\","
        "\"input_schema\":{\"type\":\"object\"}}],\"messages\":[]}";
    REQUIRE(extract(POLICY_API_ANTHROPIC, a, &x, err) == 0);
    found = 0;
    for (size_t i = 0; i < x.n_segs; i++)
        found |= x.segs[i].dend - x.segs[i].dstart == 14 &&
                 memcmp(x.text + x.segs[i].dstart, "anthropic tool", 14) == 0;
    CHECK(found);
    policy_extract_deinit(&x);
}

static void test_escapes_and_map(void)
{
    const char *b =
        "{\"messages\":[{\"content\":\"a\\u0040b \\ud83d\\ude00 \\\"q\\\" \\n\\u00e9z\"}]}";
    struct pextract x;
    char err[256];
    REQUIRE(extract(POLICY_API_OPENAI, b, &x, err) == 0);
    REQUIRE(x.n_segs == 1);
    const struct pseg *s = &x.segs[0];
    const char *want = "a@b \xF0\x9F\x98\x80 \"q\" \n\xC3\xA9z";
    CHECK_EQ_INT(s->dend - s->dstart, strlen(want));
    CHECK(memcmp(x.text + s->dstart, want, strlen(want)) == 0);
    /* every decoded prefix/suffix maps to whole raw units */
    size_t os, oe;
    policy_extract_map(&x, s, s->dstart + 1, s->dstart + 2, &os, &oe); /* "@" */
    CHECK(oe - os == 6 && memcmp(b + os, "\\u0040", 6) == 0);
    policy_extract_map(&x, s, s->dstart, s->dstart + 3, &os, &oe); /* "a@b" */
    CHECK(oe - os == 8 && memcmp(b + os, "a\\u0040b", 8) == 0);
    policy_extract_map(&x, s, s->dstart + 4, s->dstart + 8, &os, &oe); /* emoji */
    CHECK(oe - os == 12 && memcmp(b + os, "\\ud83d\\ude00", 12) == 0);
    policy_extract_map(&x, s, s->dstart + 5, s->dstart + 6, &os, &oe); /* inside the pair */
    CHECK(oe - os == 12);
    size_t dl = strlen(want);
    policy_extract_map(&x, s, s->dstart + dl - 3, s->dstart + dl, &os, &oe); /* "éz" */
    CHECK(oe - os == 7 && memcmp(b + os, "\\u00e9z", 7) == 0);
    policy_extract_map(&x, s, s->dstart, s->dstart + dl, &os, &oe);
    CHECK(os == s->ostart && oe == s->oend);
    policy_extract_deinit(&x);
}

/* escapes below the body's own: one level down (tool arguments are JSON in a string) and
 * a third (an escape written as text inside those arguments) are decoded for detection,
 * and the decoded '@' maps back to the whole raw spelling */
static void test_nested_escapes(void)
{
    /* the body holds four backslashes and u0040: JSON-decoded, two backslashes; read as
     * JSON again (tool arguments), one; and once more, an '@' */
    const char *b = "{\"messages\":[{\"content\":\"x a\\\\\\\\u0040b y\"}]}";
    struct pextract x;
    char err[256];
    size_t os, oe;
    REQUIRE(extract(POLICY_API_OPENAI, b, &x, err) == 0);
    REQUIRE(x.n_segs == 1);
    const struct pseg *s = &x.segs[0];
    CHECK_EQ_INT(s->dend - s->dstart, 7);
    CHECK(memcmp(x.text + s->dstart, "x a@b y", 7) == 0);
    policy_extract_map(&x, s, s->dstart + 3, s->dstart + 4, &os, &oe);
    CHECK(oe - os == 9 && memcmp(b + os, "\\\\\\\\u0040", 9) == 0);
    policy_extract_deinit(&x);
    /* a lone backslash pair stays one backslash, whatever the level */
    b = "{\"messages\":[{\"content\":\"C:\\\\\\\\dir\"}]}";
    REQUIRE(extract(POLICY_API_OPENAI, b, &x, err) == 0);
    s = &x.segs[0];
    CHECK_EQ_INT(s->dend - s->dstart, 6);
    CHECK(memcmp(x.text + s->dstart, "C:\\dir", 6) == 0);
    policy_extract_deinit(&x);
}

/* a long string is normalised a window at a time: an escaped '@', a surrogate pair and a
 * three-level escape decode the same at every distance from a window's edge, and their
 * spans map back to the whole raw spelling */
static void test_windows(void)
{
    static const char *const spell[] = {"\\u0040", "\\\\\\\\u0040", "%40", "&#x40;",
                                        "\xef\xbc\xa0" /* full-width */};
    char *b = malloc(8192), want[64];
    int bad = 0;

    REQUIRE(b);
    for (size_t sp = 0; sp < sizeof(spell) / sizeof(*spell); sp++) {
        for (size_t pad = 600; pad < 1800 && !bad; pad++) {
            struct pextract x;
            char err[256];
            size_t os, oe, at, raw_at;
            int n = snprintf(b, 64, "{\"messages\":[{\"content\":\"");
            /* pad with one- and three-byte characters and '%' (which sends the normaliser
             * to its unit decoder, a window at a time, so window edges fall everywhere) */
            for (size_t k = 0; k < pad; k++)
                n += k % 7 == 3   ? snprintf(b + n, 8, "%%")
                     : k % 5 == 1 ? snprintf(b + n, 8, "\xe3\x81\x82")
                                  : snprintf(b + n, 8, "a");
            raw_at = (size_t)n;
            n += snprintf(b + n, 128, " jane%sexample.com \\ud83d\\ude00 tail\"}]}", spell[sp]);
            if (extract(POLICY_API_OPENAI, b, &x, err) != 0) {
                bad = 1;
                break;
            }
            const struct pseg *s = &x.segs[0];
            const char *hit =
                memmem(x.text + s->dstart, s->dend - s->dstart, "jane@example.com", 16);
            snprintf(want, sizeof(want), " jane%sexample.com", spell[sp]);
            at = hit ? (size_t)(hit - x.text) : 0;
            if (hit)
                policy_extract_map(&x, s, at, at + 16, &os, &oe);
            if (!hit || os != raw_at + 1 || oe - os != strlen(want) - 1 ||
                memcmp(b + os, want + 1, oe - os) != 0 ||
                !memmem(x.text + s->dstart, s->dend - s->dstart, "\xf0\x9f\x98\x80 tail", 9)) {
                fprintf(stderr, "  spelling %zu, pad %zu: %s\n", sp, pad,
                        hit ? "maps to the wrong bytes" : "not decoded");
                bad = 1;
            }
            policy_extract_deinit(&x);
        }
    }
    CHECK(!bad);
    free(b);
}

static void test_keys_decoded_and_repeated(void)
{
    /* "\u0063ontent" is "content", and a name of any length is decoded (the walker once
     * gave up on escaped names longer than 13 bytes) */
    const char *b = "{\"messages\":[{\"\\u0063ontent\":\"one\"}],"
                    "\"response_form\\u0061t\":{\"x\":\"two\"}}";
    struct pextract x;
    char err[256];
    REQUIRE(extract(POLICY_API_OPENAI, b, &x, err) == 0);
    /* an escaped name is scanned as the name it decodes to (only plain API names skip) */
    CHECK(segs_are(&x, "content|one|response_format|x|two", "0,0,-1,-1,-1"));
    policy_extract_deinit(&x);
    /* a repeated name, at any depth and however it is escaped, is refused: parsers differ
     * on which one wins */
    const char *rep[] = {
        "{\"messages\":[{\"\\u0063ontent\":\"one\",\"content\":\"two\"}]}",
        "{\"messages\":[{\"content\":\"a\"}],\"messages\":[{\"content\":\"b\"}]}",
        "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\",\"content\":{\"text\":\"x\"}}]}",
    };
    for (size_t i = 0; i < sizeof(rep) / sizeof(*rep); i++) {
        memset(&x, 0, sizeof(x));
        err[0] = 0;
        CHECK(policy_extract(POLICY_API_OPENAI, rep[i], strlen(rep[i]), &x, err, sizeof(err)) < 0);
        CHECK(strstr(err, "twice") != NULL);
        policy_extract_deinit(&x);
    }
}

static int bad(const char *body, size_t len)
{
    struct pextract x = {0};
    char err[256] = "";
    int rc = policy_extract(POLICY_API_OPENAI, body, len, &x, err, sizeof(err));
    policy_extract_deinit(&x);
    if (rc == 0)
        fprintf(stderr, "  accepted: %.*s\n", (int)len, body);
    return rc < 0 && err[0];
}
#define BAD(s) bad(s, sizeof(s) - 1)

static void test_malformed(void)
{
    CHECK(BAD(""));
    CHECK(BAD("{"));
    CHECK(BAD("[]"));
    CHECK(BAD("{\"messages\":[]} x"));
    CHECK(BAD("{\"a\":01}"));
    CHECK(BAD("{\"a\":1.}"));
    CHECK(BAD("{\"a\":tru}"));
    CHECK(BAD("{\"a\":[1,]}"));
    CHECK(BAD("{\"a\":\"\\x\"}"));
    CHECK(BAD("{\"a\":\"\\u12\"}"));
    CHECK(BAD("{\"a\":\"\\ud800\"}"));
    CHECK(BAD("{\"a\":\"\\udc00\\ud800\"}"));
    CHECK(BAD("{\"a\":\"\\ud800\\u0041\"}"));
    CHECK(BAD("{\"a\":\"tab\there\"}"));
    CHECK(BAD("{\"a\":\"\xC0\x80\"}"));         /* overlong */
    CHECK(BAD("{\"a\":\"\xED\xA0\x80\"}"));     /* encoded surrogate */
    CHECK(BAD("{\"a\":\"\xF4\x90\x80\x80\"}")); /* > U+10FFFF */
    CHECK(BAD("{\"a\":\"\xE2\x82\"}"));         /* truncated */
    CHECK(BAD("{\"a\":\"\xFF\"}"));
    CHECK(bad("{\"a\":\"x\0y\"}", 10));
    /* depth: 64 levels are fine, 65 are not */
    char deep[200];
    size_t n = 0;
    deep[n++] = '{';
    memcpy(deep + n, "\"a\":", 4);
    n += 4;
    for (int i = 0; i < 62; i++)
        deep[n++] = '[';
    for (int i = 0; i < 62; i++)
        deep[n++] = ']';
    deep[n++] = '}';
    struct pextract x = {0};
    char err[256];
    CHECK(policy_extract(POLICY_API_OPENAI, deep, n, &x, err, sizeof(err)) == 0);
    policy_extract_deinit(&x);
    n = 0;
    deep[n++] = '{';
    memcpy(deep + n, "\"a\":", 4);
    n += 4;
    for (int i = 0; i < 64; i++)
        deep[n++] = '[';
    for (int i = 0; i < 64; i++)
        deep[n++] = ']';
    deep[n++] = '}';
    CHECK(bad(deep, n));
    /* valid odd JSON is accepted */
    const char *ok =
        " {\"a\":[-0.5e+3,true,false,null,{}],\"b\":\"\\/\\b\\f\\r\\t\xC3\xA9\xF0\x9F\x98\x80\"} ";
    CHECK(policy_extract(POLICY_API_OPENAI, ok, strlen(ok), &x, err, sizeof(err)) == 0);
    policy_extract_deinit(&x);
}

static void test_segment_limit(void)
{
    size_t n = POLICY_MAX_SEGMENTS + 1, cap = n * 20 + 64, len = 0;
    char *b = malloc(cap);
    len += (size_t)sprintf(b, "{\"messages\":[");
    for (size_t i = 0; i < n; i++)
        len += (size_t)sprintf(b + len, "%s{\"content\":\"x\"}", i ? "," : "");
    len += (size_t)sprintf(b + len, "]}");
    struct pextract x = {0};
    char err[256] = "";
    CHECK(policy_extract(POLICY_API_OPENAI, b, len, &x, err, sizeof(err)) < 0);
    CHECK(strstr(err, "segments") != NULL);
    policy_extract_deinit(&x);
    free(b);
}

/* issue 13, family 2: what used to leave unscanned -- every one of these strings and member
 * names is a segment now */
static void test_everything_that_leaves(void)
{
    static const struct {
        enum policy_api api;
        const char *body, *must;
    } cases[] = {
        {POLICY_API_OPENAI,
         "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"name\":\"SECRET1\",\"content\":"
         "\"hi\"}]}",
         "SECRET1|hi"},
        {POLICY_API_OPENAI, "{\"model\":\"m\",\"user\":\"SECRET2\",\"messages\":[]}", "SECRET2"},
        {POLICY_API_OPENAI,
         "{\"model\":\"m\",\"metadata\":{\"SECRET3\":\"SECRET4\"},\"messages\":[]}",
         "SECRET3|SECRET4"},
        {POLICY_API_OPENAI, "{\"model\":\"m\",\"stop\":[\"SECRET5\"],\"messages\":[]}", "SECRET5"},
        {POLICY_API_OPENAI, "{\"model\":\"m\",\"logit_bias\":{\"SECRET6\":1},\"messages\":[]}",
         "SECRET6"},
        {POLICY_API_OPENAI,
         "{\"model\":\"m\",\"prediction\":{\"type\":\"content\",\"content\":\"SECRET7\"},"
         "\"messages\":[]}",
         "SECRET7"},
        {POLICY_API_OPENAI,
         "{\"model\":\"m\",\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":"
         "\"SECRET8\"}},\"messages\":[]}",
         "SECRET8"},
        {POLICY_API_OPENAI,
         "{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"refusal\":\"SECRET9\"}]}",
         "SECRET9"},
        {POLICY_API_OPENAI,
         "{\"model\":\"m\",\"web_search_options\":{\"user_location\":{\"city\":\"SECRETA\"}},"
         "\"messages\":[]}",
         "web_search_options|user_location|city|SECRETA"},
        {POLICY_API_OPENAI, "{\"model\":\"m\",\"unknown_member\":\"SECRETB\",\"messages\":[]}",
         "unknown_member|SECRETB"},
        {POLICY_API_ANTHROPIC,
         "{\"model\":\"m\",\"metadata\":{\"user_id\":\"SECRETC\"},\"messages\":[]}", "SECRETC"},
        {POLICY_API_ANTHROPIC, "{\"model\":\"m\",\"stop_sequences\":[\"SECRETD\"],\"messages\":[]}",
         "SECRETD"},
        {POLICY_API_ANTHROPIC,
         "{\"model\":\"m\",\"mcp_servers\":[{\"type\":\"url\",\"url\":\"https://"
         "x\",\"name\":\"n\",\"authorization_token\":\"SECRETE\"}],\"messages\":[]}",
         "mcp_servers|https://x|n|authorization_token|SECRETE"},
        {POLICY_API_ANTHROPIC,
         "{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"content\":[{\"type\":\"redacted_"
         "thinking\",\"data\":\"SECRETF\"}]}]}",
         "SECRETF"},
        {POLICY_API_ANTHROPIC,
         "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"search_"
         "result\",\"source\":\"SECRETG\",\"title\":\"t\",\"content\":[{\"type\":\"text\",\"text\":"
         "\"x\"}]}]}]}",
         "SECRETG|t|x"},
        {POLICY_API_ANTHROPIC,
         "{\"model\":\"m\",\"tools\":[{\"name\":\"f\",\"input_schema\":{\"type\":\"object\","
         "\"properties\":{\"SECRETH\":{\"type\":\"string\"}}}}],"
         "\"messages\":[]}",
         "f|input_schema|SECRETH"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        struct pextract x = {0};
        char err[256] = "";
        REQUIRE(policy_extract(cases[i].api, cases[i].body, strlen(cases[i].body), &x, err,
                               sizeof(err)) == 0);
        char got[512] = "";
        size_t o = 0;
        for (size_t k = 0; k < x.n_segs && o + 64 < sizeof(got); k++)
            o += (size_t)snprintf(got + o, sizeof(got) - o, "%s%.*s", k ? "|" : "",
                                  (int)(x.segs[k].dend - x.segs[k].dstart),
                                  x.text + x.segs[k].dstart);
        if (strcmp(got, cases[i].must) != 0)
            fprintf(stderr, "  case %zu: segments '%s', wanted '%s'\n", i, got, cases[i].must);
        CHECK(strcmp(got, cases[i].must) == 0);
        policy_extract_deinit(&x);
    }
}

/* issue 13, family 3: a value of another type where text is read is refused, not skipped */
static void test_odd_shapes_refused(void)
{
    static const struct {
        const char *body, *want;
    } cases[] = {
        {"{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":{\"x\":"
         "\"AKIA\"}}]}]}",
         "messages[0].content[0].text must be a string; it is an object"},
        {"{\"messages\":[{\"role\":\"assistant\",\"tool_calls\":{\"id\":\"c\"}}]}",
         "messages[0].tool_calls must be an array; it is an object"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":"
         "\"t\",\"content\":{\"text\":\"x\"}}]}]}",
         "messages[0].content[0].content must be a string or an array of blocks"},
        {"{\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"c\",\"type\":"
         "\"function\",\"function\":{\"name\":\"f\",\"arguments\":{\"a\":1}}}]}]}",
         "messages[0].tool_calls[0].function.arguments must be a string"},
        {"{\"messages\":[{\"role\":\"assistant\",\"content\":[{\"type\":\"tool_use\",\"id\":\"t\","
         "\"name\":\"f\",\"input\":\"str\"}]}]}",
         "messages[0].content[0].input must be an object"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        struct pextract x = {0};
        char err[256] = "";
        CHECK(policy_extract(POLICY_API_ANTHROPIC, cases[i].body, strlen(cases[i].body), &x, err,
                             sizeof(err)) < 0);
        if (!strstr(err, cases[i].want))
            fprintf(stderr, "  case %zu: '%s'\n", i, err);
        CHECK(strstr(err, cases[i].want) != NULL);
        policy_extract_deinit(&x);
    }
}

/* image data is not text: not scanned, and the extraction says the request carries it */
static void test_image_data_unscanned(void)
{
    const char *b =
        "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":["
        "{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64,QUtJQQ==\"}},"
        "{\"type\":\"image\",\"source\":{\"type\":\"base64\",\"media_type\":\"image/"
        "png\",\"data\":\"QUtJQQ==\"}},"
        "{\"type\":\"text\",\"text\":\"what is it\"}]}]}";
    struct pextract x = {0};
    char err[256];
    REQUIRE(policy_extract(POLICY_API_OPENAI, b, strlen(b), &x, err, sizeof(err)) == 0);
    CHECK(segs_are(&x, "what is it", "0"));
    CHECK(x.unscanned & PEXTRACT_UNSCANNED_IMAGE);
    policy_extract_deinit(&x);
    const char *b2 =
        "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\","
        "\"image_url\":{\"url\":\"https://example.com/cat.png\"}}]}]}";
    REQUIRE(policy_extract(POLICY_API_OPENAI, b2, strlen(b2), &x, err, sizeof(err)) == 0);
    CHECK(segs_are(&x, "https://example.com/cat.png", "0")); /* a URL is text: scanned */
    CHECK(!(x.unscanned & PEXTRACT_UNSCANNED_IMAGE));
    policy_extract_deinit(&x);
}

int main(void)
{
    RUN(test_openai_locations);
    RUN(test_anthropic_locations);
    RUN(test_tool_definitions);
    RUN(test_escapes_and_map);
    RUN(test_nested_escapes);
    RUN(test_windows);
    RUN(test_keys_decoded_and_repeated);
    RUN(test_anthropic_documents);
    RUN(test_unscannable);
    RUN(test_malformed);
    RUN(test_segment_limit);
    RUN(test_everything_that_leaves);
    RUN(test_odd_shapes_refused);
    RUN(test_image_data_unscanned);
    return harness_done();
}
