/* test_json.c -- the one strict reading of a body: grammar, the NUL / surrogate / UTF-8
 * rule, repeated member names at any depth (small and hashed objects), decoded names of
 * any length, spans, and the cJSON view built from the same parse. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "tests/harness.h"

static int parse(const char *s, struct json_doc *d, char *err, size_t cap)
{
    memset(d, 0, sizeof(*d));
    return json_parse(d, s, strlen(s), err, cap);
}

/* parse must fail with `want` in the message */
static int refused(const char *s, const char *want)
{
    struct json_doc d;
    char err[256] = "";
    int rc = parse(s, &d, err, sizeof(err));
    json_doc_deinit(&d);
    if (rc == 0 || !strstr(err, want)) {
        fprintf(stderr, "  body %s: rc %d, message '%s', wanted '%s'\n", s, rc, err, want);
        return 0;
    }
    return 1;
}

static void test_grammar(void)
{
    CHECK(refused("{\"a\":1,}", "expected a member name"));
    CHECK(refused("{\"a\":1} x", "trailing data"));
    CHECK(refused("[1,2", "unterminated"));
    CHECK(refused("{\"a\":01}", "expected ',' or '}'"));
    CHECK(refused("{\"a\":tru}", "unexpected character"));
    CHECK(refused("\"\\x\"", "bad escape"));
    char deep[200];
    memset(deep, '[', 65);
    memset(deep + 65, ']', 65);
    deep[130] = 0;
    CHECK(refused(deep, "nesting deeper than 64"));
    struct json_doc d;
    char err[256];
    memset(deep, '[', 64);
    memset(deep + 64, ']', 64);
    deep[128] = 0;
    CHECK(parse(deep, &d, err, sizeof(err)) == 0);
    json_doc_deinit(&d);
}

static void test_nul_surrogates_utf8(void)
{
    CHECK(refused("{\"content\\u0000\":\"x\"}", "NUL"));
    CHECK(refused("{\"a\":\"x\\u0000y\"}", "NUL"));
    static const char raw_nul[] = "{\"a\":\"x\0y\"}";
    struct json_doc d;
    char err[256] = "";
    memset(&d, 0, sizeof(d));
    CHECK(json_parse(&d, raw_nul, sizeof(raw_nul) - 1, err, sizeof(err)) < 0);
    CHECK(strstr(err, "NUL") != NULL);
    json_doc_deinit(&d);
    CHECK(refused("{\"a\":\"\\ud800\"}", "unpaired surrogate"));
    CHECK(refused("{\"a\":\"\\udc00\\ud800\"}", "unpaired surrogate"));
    CHECK(refused("{\"\\ud83d\":1}", "unpaired surrogate"));
    CHECK(refused("{\"a\":\"\xc3\x28\"}", "invalid UTF-8"));
    CHECK(refused("{\"a\":\"\xed\xa0\x80\"}", "invalid UTF-8")); /* a surrogate in UTF-8 */
    CHECK(refused("{\"a\":\"\xc0\xaf\"}", "invalid UTF-8"));     /* overlong */
    /* a paired surrogate is fine and decodes to 4 bytes */
    REQUIRE(parse("{\"a\":\"\\ud83d\\ude00\"}", &d, err, sizeof(err)) == 0);
    size_t n = 0;
    char *s = json_str_dup(&d, json_get(&d, d.root, "a"), &n);
    CHECK(s && n == 4 && memcmp(s, "\xf0\x9f\x98\x80", 4) == 0);
    free(s);
    json_doc_deinit(&d);
}

static void test_repeats(void)
{
    CHECK(refused("{\"model\":\"a\",\"model\":\"b\"}", "\"model\" twice"));
    CHECK(refused("{\"model\":\"a\",\"model\":\"b\"}", "at the top level"));
    /* a name escaped is the same name */
    CHECK(refused("{\"model\":\"a\",\"\\u006dodel\":\"b\"}", "\"model\" twice"));
    CHECK(refused("{\"\\u006d\\u006f\\u0064\\u0065\\u006c\":1,\"model\":2}", "\"model\" twice"));
    /* the path names where the object is */
    CHECK(refused("{\"messages\":[{\"role\":\"user\"},{\"role\":\"user\",\"content\":\"x\","
                  "\"content\":{\"text\":\"y\"}}]}",
                  "in messages[1]"));
    CHECK(refused(
        "{\"tools\":[{\"function\":{\"parameters\":{\"properties\":{\"a\":{},\"a\":{}}}}}]}",
        "in tools[0].function.parameters.properties"));
    /* the same name in different objects is fine */
    struct json_doc d;
    char err[256];
    CHECK(parse("{\"a\":{\"x\":1},\"b\":{\"x\":1},\"c\":[{\"x\":1},{\"x\":2}]}", &d, err,
                sizeof(err)) == 0);
    json_doc_deinit(&d);
    /* prefixes are not repeats */
    CHECK(parse("{\"con\":1,\"content\":2,\"contents\":3}", &d, err, sizeof(err)) == 0);
    json_doc_deinit(&d);
}

/* objects past the linear threshold go through the hash: every position of a repeat */
static void test_repeats_hashed(void)
{
    for (int n = 2; n <= 300; n += 37) {
        for (int dup = 0; dup < 2; dup++) {
            char *b = malloc((size_t)n * 32 + 64);
            size_t o = 0;
            b[o++] = '{';
            for (int i = 0; i < n; i++)
                o += (size_t)sprintf(b + o, "%s\"k%d\":%d", i ? "," : "", i, i);
            if (dup) /* repeat the middle one, escaped */
                o += (size_t)sprintf(b + o, ",\"\\u006b%d\":0", n / 2);
            b[o++] = '}';
            b[o] = 0;
            struct json_doc d;
            char err[256] = "";
            int rc = parse(b, &d, err, sizeof(err));
            if (dup) {
                char want[32];
                snprintf(want, sizeof(want), "\"k%d\" twice", n / 2);
                CHECK(rc < 0 && strstr(err, want));
            } else {
                CHECK(rc == 0);
                char nm[16];
                snprintf(nm, sizeof(nm), "k%d", n - 1);
                double v = -1;
                CHECK(json_number(&d, json_get(&d, d.root, nm), &v) == 0 && v == n - 1);
            }
            json_doc_deinit(&d);
            free(b);
        }
    }
}

static void test_names_and_spans(void)
{
    struct json_doc d;
    char err[256];
    const char *b =
        "{\"response_form\\u0061t\":{\"type\":\"json\"}, \"s\" : \"a\\nb\", \"n\":-1.5e2}";
    REQUIRE(parse(b, &d, err, sizeof(err)) == 0);
    uint32_t rf = json_get(&d, d.root, "response_format");
    CHECK(json_type(&d, rf) == JSON_OBJ);
    CHECK(json_str_eq(&d, json_get(&d, rf, "type"), "json"));
    CHECK(!json_str_eq(&d, json_get(&d, rf, "type"), "jso"));
    uint32_t s = json_get(&d, d.root, "s");
    CHECK(json_node(&d, s)->esc == 1);
    CHECK(memcmp(b + json_node(&d, s)->start, "a\\nb", 4) == 0);
    CHECK(json_node(&d, s)->end - json_node(&d, s)->start == 4);
    size_t n;
    char *v = json_str_dup(&d, s, &n);
    CHECK(v && n == 3 && strcmp(v, "a\nb") == 0);
    free(v);
    double x = 0;
    CHECK(json_number(&d, json_get(&d, d.root, "n"), &x) == 0 && x == -150.0);
    CHECK(json_get(&d, d.root, "missing") == JSON_NONE);
    CHECK(json_get(&d, s, "x") == JSON_NONE); /* not an object */
    json_doc_deinit(&d);
}

static void test_cjson_view(void)
{
    struct json_doc d;
    char err[256];
    const char *b = "{\"m\\u0073gs\":[{\"role\":\"user\",\"content\":\"h\\u00e9\"}],\"t\":true,"
                    "\"f\":false,\"z\":null,\"n\":3}";
    REQUIRE(parse(b, &d, err, sizeof(err)) == 0);
    cJSON *j = json_to_cjson(&d, d.root);
    REQUIRE(j != NULL);
    char *out = cJSON_PrintUnformatted(j);
    CHECK_EQ_STR(out, "{\"msgs\":[{\"role\":\"user\",\"content\":\"h\xc3\xa9\"}],\"t\":true,"
                      "\"f\":false,\"z\":null,\"n\":3}");
    free(out);
    cJSON_Delete(j);
    json_doc_deinit(&d);
}

int main(void)
{
    RUN(test_grammar);
    RUN(test_nul_surrogates_utf8);
    RUN(test_repeats);
    RUN(test_repeats_hashed);
    RUN(test_names_and_spans);
    RUN(test_cjson_view);
    return harness_done();
}
