/* test_jbuf.c -- the hand-written JSON writer: structure, escaping, UTF-8 repair and
 * numbers, each checked by parsing the output back with cJSON. */
#include <cJSON.h>
#include <math.h>

#include "common/jbuf.h"
#include "tests/harness.h"

static char *finish(struct jbuf *b)
{
    return jbuf_finish(b, NULL);
}

static void test_structure(void)
{
    struct jbuf b;
    char *s;
    cJSON *j, *a;

    jbuf_init(&b);
    jbuf_open(&b, '{');
    jbuf_key(&b, "id");
    jbuf_str(&b, "abc");
    jbuf_key(&b, "none");
    jbuf_str(&b, NULL);
    jbuf_key(&b, "n");
    jbuf_i64(&b, -42);
    jbuf_key(&b, "arr");
    jbuf_open(&b, '[');
    jbuf_u64(&b, 1);
    jbuf_i64(&b, -2);
    jbuf_open(&b, '{');
    jbuf_key(&b, "x");
    jbuf_bool(&b, 1);
    jbuf_close(&b, '}');
    jbuf_bool(&b, 0);
    jbuf_close(&b, ']');
    jbuf_key(&b, "u");
    jbuf_u64(&b, UINT64_MAX);
    jbuf_close(&b, '}');
    s = finish(&b);
    REQUIRE(s);
    CHECK(strcmp(s, "{\"id\":\"abc\",\"none\":null,\"n\":-42,\"arr\":[1,-2,{\"x\":true},false],"
                    "\"u\":18446744073709551615}") == 0);
    j = cJSON_Parse(s);
    REQUIRE(j);
    a = cJSON_GetObjectItem(j, "arr");
    CHECK(cJSON_GetArraySize(a) == 4);
    CHECK(cJSON_IsNull(cJSON_GetObjectItem(j, "none")));
    cJSON_Delete(j);
    free(s);
}

static void test_escaping(void)
{
    /* quotes, backslash, every control character, valid multi-byte UTF-8 kept as is */
    char in[64];
    struct jbuf b;
    char *s;
    cJSON *j;
    int i;

    for (i = 0; i < 32; i++)
        in[i] = (char)(i + 1 == 32 ? '"' : i + 1);
    strcpy(in + 32, "\\caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
    jbuf_init(&b);
    jbuf_str(&b, in);
    s = finish(&b);
    REQUIRE(s);
    for (i = 0; s[i]; i++)
        CHECK((unsigned char)s[i] >= 0x20);
    j = cJSON_Parse(s);
    REQUIRE(j);
    CHECK(cJSON_IsString(j) && strcmp(j->valuestring, in) == 0);
    CHECK(strstr(s, "\\n") && strstr(s, "\\t") && strstr(s, "\\u0001") && strstr(s, "\\\""));
    cJSON_Delete(j);
    free(s);
}

static void test_invalid_utf8(void)
{
    /* lone continuation, truncated sequence, overlong '/', a surrogate, > U+10FFFF */
    static const char *bad[] = {"a\x80z", "a\xe2\x82", "a\xc0\xafz", "a\xed\xa0\x80z",
                                "a\xf4\x90\x80\x80z", "\xff"};
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct jbuf b;
        char *s;
        const char *p;

        jbuf_init(&b);
        jbuf_str(&b, bad[i]);
        s = finish(&b);
        REQUIRE(s);
        for (p = s; *p; p++)
            CHECK((unsigned char)*p < 0x80); /* every bad byte became \ufffd */
        CHECK(strstr(s, "\\ufffd") != NULL);
        free(s);
    }
}

static void test_numbers(void)
{
    static const double v[] = {0.0, 1.5, -2.25, 0.1, 1e-9, 123456.789, 0.000153, 3e300, 7.0};
    struct jbuf b;
    char *s;
    cJSON *j;
    size_t i;

    jbuf_init(&b);
    jbuf_open(&b, '[');
    for (i = 0; i < sizeof(v) / sizeof(v[0]); i++)
        jbuf_num(&b, v[i]);
    jbuf_num(&b, NAN);
    jbuf_fixed(&b, 12.34567, 3);
    jbuf_fixed(&b, -0.5, 2);
    jbuf_fixed(&b, 7.0, 0);
    jbuf_fixed(&b, 0.0004, 3);
    jbuf_close(&b, ']');
    s = finish(&b);
    REQUIRE(s);
    j = cJSON_Parse(s);
    REQUIRE(j);
    for (i = 0; i < sizeof(v) / sizeof(v[0]); i++)
        CHECK(cJSON_GetArrayItem(j, (int)i)->valuedouble == v[i]); /* exact round trip */
    CHECK(cJSON_IsNull(cJSON_GetArrayItem(j, (int)i)));
    CHECK(strstr(s, ",12.346,-0.50,7,0.000]") != NULL);
    CHECK(strstr(s, "[0,1.5,") == s);
    cJSON_Delete(j);
    free(s);
}

static void test_large(void)
{
    /* growth across many reallocations keeps every byte */
    struct jbuf b;
    size_t len = 0, i;
    char *s;
    cJSON *j;

    jbuf_init(&b);
    jbuf_open(&b, '[');
    for (i = 0; i < 20000; i++)
        jbuf_u64(&b, i);
    jbuf_close(&b, ']');
    s = jbuf_finish(&b, &len);
    REQUIRE(s);
    CHECK(strlen(s) == len);
    j = cJSON_Parse(s);
    REQUIRE(j);
    CHECK(cJSON_GetArraySize(j) == 20000);
    CHECK(cJSON_GetArrayItem(j, 19999)->valuedouble == 19999);
    cJSON_Delete(j);
    free(s);
}

int main(void)
{
    RUN(test_structure);
    RUN(test_escaping);
    RUN(test_invalid_utf8);
    RUN(test_numbers);
    RUN(test_large);
    return harness_done();
}
