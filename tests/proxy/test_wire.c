/* test_wire.c -- the two wire formats (OpenAI Chat Completions, Anthropic Messages) and what
 * they share: reading a request into the canonical chat and building one from it,
 * translation, error shapes and events, usage, whole answers and stream events. The parts
 * that write to a client connection (relay_event, stream_*) are the integration suites'. */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "proxy/outbound.h"
#include "proxy/proxy_int.h"
#include "proxy/wire.h"

static const struct proxy_wire *const oai = &proxy_wire_openai_chat;
static const struct proxy_wire *const ant = &proxy_wire_anthropic_messages;

/* read -- w->read_request of JSON text into c (initialised here); err gets the sentence */
static int read_req(const struct proxy_wire *w, const char *json, cJSON **tree,
                    struct proxy_chat *c, char *err, size_t errlen)
{
    proxy_chat_init(c);
    err[0] = '\0';
    *tree = cJSON_Parse(json);
    if (!*tree)
        return -2;
    return w->read_request(*tree, c, err, errlen);
}

/* build -- w->build_request of c for model (name, upstream) as a parsed object */
static cJSON *build(const struct proxy_wire *w, const struct proxy_chat *c, const char *name,
                    const char *upstream, int *flags)
{
    struct config_model m;
    cJSON *o = cJSON_CreateObject();
    char err[256] = "";

    memset(&m, 0, sizeof(m));
    m.name = (char *)name;
    m.upstream_model = (char *)upstream;
    if (o && w->build_request(c, &m, o, flags, err, sizeof(err)) < 0) {
        fprintf(stderr, "  build_request: %s\n", err);
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static const char *str_at(const cJSON *o, const char *k)
{
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, k));
}

static double num_at(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : -12345;
}

/* ---- the canonical chat ---- */

static void test_chat_init_add_deinit(void)
{
    struct proxy_chat c;

    proxy_chat_init(&c);
    CHECK(c.max_tokens < 0 && c.temperature < 0 && c.top_p < 0 && c.top_k < 0 && c.seed < 0);
    CHECK_EQ_INT(c.n, 0);
    for (int i = 0; i < 20; i++)
        REQUIRE(proxy_chat_add(&c, i % 2 ? "assistant" : "user", strdup("t")) == 0);
    CHECK_EQ_INT(c.n, 20);
    CHECK(c.cap >= 20);
    CHECK_EQ_STR(c.msgs[19].role, "assistant");
    CHECK_EQ_STR(c.msgs[19].text, "t");
    proxy_chat_deinit(&c);
    CHECK(c.msgs == NULL && c.n == 0 && c.max_tokens < 0);
}

static void test_content_text(void)
{
    cJSON *j = cJSON_Parse("[\"s\",null,[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"text\","
                           "\"text\":\"b\"}],[{\"type\":\"image_url\",\"image_url\":{}}],"
                           "[{\"type\":\"text\"}],5,[]]");
    char *s = NULL;

    REQUIRE(j);
    CHECK(proxy_wire_content_text(cJSON_GetArrayItem(j, 0), &s) == 0);
    CHECK_EQ_STR(s, "s");
    free(s);
    CHECK(proxy_wire_content_text(cJSON_GetArrayItem(j, 1), &s) == 0);
    CHECK_EQ_STR(s, "");
    free(s);
    CHECK(proxy_wire_content_text(NULL, &s) == 0);
    CHECK_EQ_STR(s, "");
    free(s);
    CHECK(proxy_wire_content_text(cJSON_GetArrayItem(j, 2), &s) == 0);
    CHECK_EQ_STR(s, "ab");
    free(s);
    s = (char *)1;
    CHECK(proxy_wire_content_text(cJSON_GetArrayItem(j, 3), &s) == -1);
    CHECK(s == NULL);
    CHECK(proxy_wire_content_text(cJSON_GetArrayItem(j, 4), &s) == -1);
    CHECK(proxy_wire_content_text(cJSON_GetArrayItem(j, 5), &s) == -1);
    CHECK(proxy_wire_content_text(cJSON_GetArrayItem(j, 6), &s) == 0);
    CHECK_EQ_STR(s, "");
    free(s);
    cJSON_Delete(j);
}

/* ---- reading requests ---- */

static void test_openai_read_roles_and_parts(void)
{
    struct proxy_chat c;
    cJSON *j;
    char err[256];

    REQUIRE(read_req(oai,
                     "{\"model\":\"m\",\"messages\":["
                     "{\"role\":\"system\",\"content\":\"s1\"},"
                     "{\"role\":\"developer\",\"content\":\"d1\"},"
                     "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},"
                     "{\"type\":\"text\",\"text\":\"b\"}]},"
                     "{\"role\":\"assistant\",\"content\":null},"
                     "{\"role\":\"weird\",\"content\":\"w\"},"
                     "{\"content\":\"norole\"}]}",
                     &j, &c, err, sizeof(err)) == 0);
    REQUIRE(c.n == 6);
    CHECK_EQ_STR(c.msgs[0].role, "system");
    CHECK_EQ_STR(c.msgs[0].text, "s1");
    CHECK_EQ_STR(c.msgs[1].role, "system");
    CHECK_EQ_STR(c.msgs[1].text, "d1");
    CHECK_EQ_STR(c.msgs[2].role, "user");
    CHECK_EQ_STR(c.msgs[2].text, "ab");
    CHECK_EQ_STR(c.msgs[3].role, "assistant");
    CHECK_EQ_STR(c.msgs[3].text, "");
    CHECK_EQ_STR(c.msgs[4].role, "user");
    CHECK_EQ_STR(c.msgs[5].role, "user");
    CHECK(c.max_tokens < 0 && c.temperature < 0 && c.top_p < 0 && c.seed < 0);
    CHECK_EQ_INT(c.n_stop, 0);
    CHECK_EQ_INT(c.stream, 0);
    proxy_chat_deinit(&c);
    cJSON_Delete(j);
}

static void test_openai_read_options(void)
{
    struct proxy_chat c;
    cJSON *j;
    char err[256];

    /* max_completion_tokens wins over the older max_tokens */
    REQUIRE(
        read_req(oai,
                 "{\"messages\":[],\"max_tokens\":10,\"max_completion_tokens\":20,"
                 "\"temperature\":0.5,\"top_p\":0.9,\"seed\":7,\"stop\":\"END\",\"stream\":true}",
                 &j, &c, err, sizeof(err)) == 0);
    CHECK(c.max_tokens == 20);
    CHECK(c.temperature == 0.5);
    CHECK(c.top_p == 0.9);
    CHECK(c.seed == 7);
    REQUIRE(c.n_stop == 1);
    CHECK_EQ_STR(c.stop[0], "END");
    CHECK_EQ_INT(c.stream, 1);
    proxy_chat_deinit(&c);
    cJSON_Delete(j);

    /* max_tokens alone; stop as an array: strings only, at most four */
    REQUIRE(read_req(oai,
                     "{\"messages\":[],\"max_tokens\":10,\"stop\":[\"a\",1,\"b\",\"c\",\"d\","
                     "\"e\"],\"stream\":false}",
                     &j, &c, err, sizeof(err)) == 0);
    CHECK(c.max_tokens == 10);
    REQUIRE(c.n_stop == 4);
    CHECK_EQ_STR(c.stop[0], "a");
    CHECK_EQ_STR(c.stop[1], "b");
    CHECK_EQ_STR(c.stop[3], "d");
    CHECK_EQ_INT(c.stream, 0);
    proxy_chat_deinit(&c);
    cJSON_Delete(j);
}

static void test_openai_read_refuses_tools_and_images(void)
{
    static const char *const bodies[] = {
        "{\"messages\":[{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[]}]}",
        "{\"messages\":[{\"role\":\"tool\",\"tool_call_id\":\"1\",\"content\":\"r\"}]}",
        "{\"messages\":[{\"role\":\"function\",\"name\":\"f\",\"content\":\"r\"}]}",
        "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},"
        "{\"type\":\"image_url\",\"image_url\":{\"url\":\"http://x\"}}]}]}",
        "{\"messages\":[{\"role\":\"user\",\"content\":7}]}",
    };

    for (size_t i = 0; i < sizeof(bodies) / sizeof(*bodies); i++) {
        struct proxy_chat c;
        cJSON *j;
        char err[256];

        CHECK(read_req(oai, bodies[i], &j, &c, err, sizeof(err)) == -1);
        CHECK(strstr(err, "Only text messages can be carried out of the OpenAI format") != NULL);
        CHECK(err[strlen(err) - 1] == '.');
        proxy_chat_deinit(&c);
        cJSON_Delete(j);
    }
}

static void test_anthropic_read(void)
{
    struct proxy_chat c;
    cJSON *j;
    char err[256];

    REQUIRE(read_req(ant,
                     "{\"model\":\"m\",\"max_tokens\":50,\"temperature\":0.2,\"top_p\":0.8,"
                     "\"top_k\":40,\"stop_sequences\":[\"X\",\"Y\"],\"stream\":true,"
                     "\"system\":[{\"type\":\"text\",\"text\":\"s1\"},{\"type\":\"text\","
                     "\"text\":\"s2\"}],\"messages\":["
                     "{\"role\":\"user\",\"content\":\"q\"},"
                     "{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"a\"}]},"
                     "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"x\"},"
                     "{\"type\":\"text\",\"text\":\"y\"}]}]}",
                     &j, &c, err, sizeof(err)) == 0);
    REQUIRE(c.n == 4);
    CHECK_EQ_STR(c.msgs[0].role, "system");
    CHECK_EQ_STR(c.msgs[0].text, "s1s2");
    CHECK_EQ_STR(c.msgs[1].role, "user");
    CHECK_EQ_STR(c.msgs[1].text, "q");
    CHECK_EQ_STR(c.msgs[2].role, "assistant");
    CHECK_EQ_STR(c.msgs[3].text, "xy");
    CHECK(c.max_tokens == 50);
    CHECK(c.temperature == 0.2);
    CHECK(c.top_p == 0.8);
    CHECK(c.top_k == 40);
    REQUIRE(c.n_stop == 2);
    CHECK_EQ_STR(c.stop[1], "Y");
    CHECK_EQ_INT(c.stream, 1);
    proxy_chat_deinit(&c);
    cJSON_Delete(j);

    /* a string system; null system is none */
    REQUIRE(read_req(ant,
                     "{\"system\":\"sys\",\"messages\":[{\"role\":\"user\",\"content\":\"q\"}]}",
                     &j, &c, err, sizeof(err)) == 0);
    REQUIRE(c.n == 2);
    CHECK_EQ_STR(c.msgs[0].role, "system");
    CHECK_EQ_STR(c.msgs[0].text, "sys");
    proxy_chat_deinit(&c);
    cJSON_Delete(j);
    REQUIRE(read_req(ant, "{\"system\":null,\"messages\":[{\"role\":\"user\",\"content\":\"q\"}]}",
                     &j, &c, err, sizeof(err)) == 0);
    CHECK_EQ_INT(c.n, 1);
    proxy_chat_deinit(&c);
    cJSON_Delete(j);
}

static void test_anthropic_read_refuses_non_text(void)
{
    struct proxy_chat c;
    cJSON *j;
    char err[256];

    CHECK(read_req(ant,
                   "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\","
                   "\"tool_use_id\":\"1\",\"content\":\"r\"}]}]}",
                   &j, &c, err, sizeof(err)) == -1);
    CHECK(strstr(err, "Only text messages can be carried out of the Anthropic format") != NULL);
    proxy_chat_deinit(&c);
    cJSON_Delete(j);
    CHECK(read_req(ant,
                   "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image\",\"source\":"
                   "{}}]}]}",
                   &j, &c, err, sizeof(err)) == -1);
    CHECK(strstr(err, "Anthropic format") != NULL);
    proxy_chat_deinit(&c);
    cJSON_Delete(j);
    CHECK(read_req(ant,
                   "{\"system\":[{\"type\":\"image\",\"source\":{}}],\"messages\":[{\"role\":"
                   "\"user\",\"content\":\"q\"}]}",
                   &j, &c, err, sizeof(err)) == -1);
    CHECK(strstr(err, "system prompt holds non-text blocks") != NULL);
    CHECK_EQ_INT(c.n, 0);
    proxy_chat_deinit(&c);
    cJSON_Delete(j);
}

/* ---- building requests ---- */

static void test_anthropic_build_hoists_system(void)
{
    struct proxy_chat c;
    cJSON *o, *m;
    int flags = 0;

    proxy_chat_init(&c);
    REQUIRE(proxy_chat_add(&c, "system", strdup("one")) == 0);
    REQUIRE(proxy_chat_add(&c, "user", strdup("q")) == 0);
    REQUIRE(proxy_chat_add(&c, "system", strdup("two")) == 0);
    REQUIRE(proxy_chat_add(&c, "assistant", strdup("a")) == 0);
    c.stop[c.n_stop++] = "S";
    c.stream = 1;
    c.temperature = 0.3;
    o = build(ant, &c, "claude", "claude-x", &flags);
    REQUIRE(o);
    CHECK_EQ_STR(str_at(o, "model"), "claude-x");
    CHECK_EQ_STR(str_at(o, "system"), "one\n\ntwo");
    CHECK(num_at(o, "max_tokens") == 4096);
    CHECK(num_at(o, "temperature") == 0.3);
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(o, "stream")));
    CHECK(cJSON_GetObjectItem(o, "stream_options") == NULL);
    CHECK_EQ_INT(flags, 0);
    CHECK_EQ_STR(
        cJSON_GetStringValue(cJSON_GetArrayItem(cJSON_GetObjectItem(o, "stop_sequences"), 0)), "S");
    m = cJSON_GetObjectItem(o, "messages");
    REQUIRE(cJSON_GetArraySize(m) == 2);
    CHECK_EQ_STR(str_at(cJSON_GetArrayItem(m, 0), "role"), "user");
    CHECK_EQ_STR(str_at(cJSON_GetArrayItem(m, 1), "role"), "assistant");
    CHECK_EQ_STR(str_at(cJSON_GetArrayItem(m, 1), "content"), "a");
    cJSON_Delete(o);

    /* no system message: no member; max_tokens given; the name when there is no upstream */
    proxy_chat_deinit(&c);
    REQUIRE(proxy_chat_add(&c, "user", strdup("q")) == 0);
    c.max_tokens = 12;
    o = build(ant, &c, "claude", NULL, &flags);
    REQUIRE(o);
    CHECK(cJSON_GetObjectItem(o, "system") == NULL);
    CHECK(num_at(o, "max_tokens") == 12);
    CHECK_EQ_STR(str_at(o, "model"), "claude");
    CHECK(cJSON_GetObjectItem(o, "stream") == NULL);
    cJSON_Delete(o);
    proxy_chat_deinit(&c);
}

static void test_openai_build(void)
{
    struct proxy_chat c;
    cJSON *o, *m;
    int flags = 0;

    proxy_chat_init(&c);
    REQUIRE(proxy_chat_add(&c, "system", strdup("sys")) == 0);
    REQUIRE(proxy_chat_add(&c, "user", strdup("q")) == 0);
    c.max_tokens = 33;
    c.top_p = 0.5;
    c.stop[c.n_stop++] = "A";
    c.stop[c.n_stop++] = "B";
    o = build(oai, &c, "gpt", "gpt-up", &flags);
    REQUIRE(o);
    CHECK_EQ_STR(str_at(o, "model"), "gpt-up");
    m = cJSON_GetObjectItem(o, "messages");
    REQUIRE(cJSON_GetArraySize(m) == 2);
    CHECK_EQ_STR(str_at(cJSON_GetArrayItem(m, 0), "role"), "system");
    CHECK_EQ_STR(str_at(cJSON_GetArrayItem(m, 0), "content"), "sys");
    CHECK(num_at(o, "max_tokens") == 33);
    CHECK(num_at(o, "top_p") == 0.5);
    CHECK(cJSON_GetObjectItem(o, "temperature") == NULL);
    CHECK_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItem(o, "stop")), 2);
    CHECK(cJSON_GetObjectItem(o, "stream") == NULL);
    CHECK(cJSON_GetObjectItem(o, "stream_options") == NULL);
    CHECK_EQ_INT(flags, 0);
    cJSON_Delete(o);

    /* a stream asks for usage, and says it did */
    c.stream = 1;
    o = build(oai, &c, "gpt", NULL, &flags);
    REQUIRE(o);
    CHECK_EQ_STR(str_at(o, "model"), "gpt");
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(o, "stream")));
    CHECK(cJSON_IsTrue(
        cJSON_GetObjectItem(cJSON_GetObjectItem(o, "stream_options"), "include_usage")));
    CHECK(flags & PROXY_OUTBOUND_ADDED_USAGE);
    cJSON_Delete(o);
    proxy_chat_deinit(&c);
}

/* ---- translation ---- */

static int translate(const struct proxy_wire *from, const struct proxy_wire *to, const char *json,
                     cJSON **out, int *flags, char *err, size_t errlen)
{
    struct config_model m;
    cJSON *in = cJSON_Parse(json);
    char *s = NULL;
    size_t n = 0;
    int rc;

    memset(&m, 0, sizeof(m));
    m.name = (char *)"target";
    m.upstream_model = (char *)"target-up";
    *out = NULL;
    err[0] = '\0';
    if (!in)
        return -2;
    rc = proxy_wire_translate_request(from, to, &m, in, &s, &n, flags, err, errlen);
    if (rc == 0) {
        if (!s || n != strlen(s))
            rc = -3;
        else
            *out = cJSON_Parse(s);
    } else if (s) {
        rc = -4; /* a refusal leaves nothing */
    }
    free(s);
    cJSON_Delete(in);
    return rc;
}

/* a limit that is not one (proxy_wire_limit's 0) is refused before a translated request is
 * built, in either direction; null is "none named"; a whole number and +infinity pass */
static void test_translate_bad_limit(void)
{
    static const char *const bad[] = {"0", "-1", "2.5", "\"5\"", "true", "[]", "{}"};
    cJSON *o = NULL;
    int flags = 0;
    char err[256], body[256];

    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        snprintf(body, sizeof(body),
                 "{\"model\":\"m\",\"max_tokens\":%s,\"messages\":[{\"role\":\"user\","
                 "\"content\":\"q\"}]}",
                 bad[i]);
        CHECK(translate(oai, ant, body, &o, &flags, err, sizeof(err)) == -1);
        CHECK(o == NULL && strstr(err, "max_tokens must be a whole number") != NULL);
        CHECK(translate(ant, oai, body, &o, &flags, err, sizeof(err)) == -1);
        CHECK(o == NULL && strstr(err, "max_tokens must be a whole number") != NULL);
    }
    CHECK(translate(oai, ant,
                    "{\"model\":\"m\",\"max_tokens\":null,\"messages\":[{\"role\":\"user\","
                    "\"content\":\"q\"}]}",
                    &o, &flags, err, sizeof(err)) == 0);
    CHECK(o && cJSON_GetObjectItem(o, "max_tokens")->valuedouble == 4096);
    cJSON_Delete(o);
    o = NULL;
    CHECK(translate(oai, ant,
                    "{\"model\":\"m\",\"max_tokens\":7,\"messages\":[{\"role\":\"user\","
                    "\"content\":\"q\"}]}",
                    &o, &flags, err, sizeof(err)) == 0);
    CHECK(o && cJSON_GetObjectItem(o, "max_tokens")->valuedouble == 7);
    cJSON_Delete(o);
}

static void test_translate_openai_to_anthropic(void)
{
    cJSON *o, *m;
    int flags = 0;
    char err[256];

    REQUIRE(translate(oai, ant,
                      "{\"model\":\"gpt\",\"max_completion_tokens\":64,\"stop\":\"END\","
                      "\"stream\":true,\"seed\":3,\"messages\":["
                      "{\"role\":\"developer\",\"content\":\"d\"},"
                      "{\"role\":\"user\",\"content\":\"q\"},"
                      "{\"role\":\"system\",\"content\":\"s\"}]}",
                      &o, &flags, err, sizeof(err)) == 0);
    REQUIRE(o);
    CHECK_EQ_STR(str_at(o, "model"), "target-up");
    CHECK(num_at(o, "max_tokens") == 64);
    CHECK_EQ_STR(str_at(o, "system"), "d\n\ns");
    CHECK(cJSON_GetObjectItem(o, "max_completion_tokens") == NULL);
    CHECK(cJSON_GetObjectItem(o, "stop") == NULL);
    CHECK(cJSON_GetObjectItem(o, "seed") == NULL);
    CHECK(cJSON_GetObjectItem(o, "stream_options") == NULL);
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(o, "stream")));
    CHECK_EQ_INT(flags, 0);
    m = cJSON_GetObjectItem(o, "messages");
    REQUIRE(cJSON_GetArraySize(m) == 1);
    CHECK_EQ_STR(str_at(cJSON_GetArrayItem(m, 0), "content"), "q");
    CHECK_EQ_STR(
        cJSON_GetStringValue(cJSON_GetArrayItem(cJSON_GetObjectItem(o, "stop_sequences"), 0)),
        "END");
    cJSON_Delete(o);
}

static void test_translate_anthropic_to_openai(void)
{
    cJSON *o, *m;
    int flags = 0;
    char err[256];

    REQUIRE(translate(ant, oai,
                      "{\"model\":\"claude\",\"max_tokens\":9,\"top_k\":5,\"stream\":true,"
                      "\"system\":\"s\",\"stop_sequences\":[\"Z\"],\"messages\":["
                      "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"q\"}]}]}",
                      &o, &flags, err, sizeof(err)) == 0);
    REQUIRE(o);
    CHECK_EQ_STR(str_at(o, "model"), "target-up");
    CHECK(num_at(o, "max_tokens") == 9);
    CHECK(cJSON_GetObjectItem(o, "system") == NULL);
    CHECK(cJSON_GetObjectItem(o, "top_k") == NULL); /* OpenAI has none */
    m = cJSON_GetObjectItem(o, "messages");
    REQUIRE(cJSON_GetArraySize(m) == 2);
    CHECK_EQ_STR(str_at(cJSON_GetArrayItem(m, 0), "role"), "system");
    CHECK_EQ_STR(str_at(cJSON_GetArrayItem(m, 0), "content"), "s");
    CHECK_EQ_STR(str_at(cJSON_GetArrayItem(m, 1), "content"), "q");
    CHECK_EQ_STR(cJSON_GetStringValue(cJSON_GetArrayItem(cJSON_GetObjectItem(o, "stop"), 0)), "Z");
    CHECK(cJSON_IsTrue(
        cJSON_GetObjectItem(cJSON_GetObjectItem(o, "stream_options"), "include_usage")));
    CHECK(flags & PROXY_OUTBOUND_ADDED_USAGE);
    cJSON_Delete(o);
}

static void test_translate_refusals(void)
{
    cJSON *o;
    int flags = 0;
    char err[256];

    CHECK(translate(oai, ant, "[1]", &o, &flags, err, sizeof(err)) == -1);
    CHECK(strstr(err, "not a JSON object") != NULL);
    CHECK(translate(oai, ant,
                    "{\"tools\":[{\"type\":\"function\"}],\"messages\":[{\"role\":\"user\","
                    "\"content\":\"q\"}]}",
                    &o, &flags, err, sizeof(err)) == -1);
    CHECK(strstr(err, "'tools' cannot be translated to the Anthropic format") != NULL);
    CHECK(translate(ant, oai,
                    "{\"thinking\":{\"type\":\"enabled\"},\"messages\":[{\"role\":\"user\","
                    "\"content\":\"q\"}]}",
                    &o, &flags, err, sizeof(err)) == -1);
    CHECK(strstr(err, "'thinking' cannot be translated to the OpenAI format") != NULL);
    /* read_request's sentence comes through */
    CHECK(translate(oai, ant, "{\"messages\":[{\"role\":\"tool\",\"content\":\"r\"}]}", &o, &flags,
                    err, sizeof(err)) == -1);
    CHECK(strstr(err, "Only text messages") != NULL);
    CHECK(o == NULL);
}

static void test_untranslatable(void)
{
    static const struct {
        const char *json, *want;
    } cases[] = {
        {"{\"messages\":[]}", NULL},
        {"{\"tools\":[{\"type\":\"function\"}]}", "tools"},
        {"{\"tools\":[]}", NULL},
        {"{\"tools\":null,\"tool_choice\":null}", NULL},
        {"{\"tool_choice\":\"auto\"}", "tool_choice"},
        {"{\"functions\":[{}]}", "functions"},
        {"{\"n\":2}", "n"},
        {"{\"n\":1}", NULL},
        {"{\"logprobs\":false}", NULL},
        {"{\"logprobs\":true}", "logprobs"},
        {"{\"thinking\":{\"type\":\"enabled\",\"budget_tokens\":10}}", "thinking"},
        {"{\"mcp_servers\":[{}]}", "mcp_servers"},
        {"{\"modalities\":[\"text\",\"audio\"]}", "modalities"},
        {"{\"response_format\":{\"type\":\"json_object\"}}", "response_format"},
        {"{\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{}}}", "response_format"},
        {"{\"response_format\":{}}", "response_format"},
        {"{\"response_format\":{\"type\":\"text\"}}", NULL},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        cJSON *j = cJSON_Parse(cases[i].json);
        const char *got;

        REQUIRE(j);
        got = proxy_wire_untranslatable(j);
        if (cases[i].want)
            CHECK_EQ_STR(got, cases[i].want);
        else if (got)
            CHECK_EQ_STR(cases[i].json, "(translatable)");
        cJSON_Delete(j);
    }
}

/* ---- errors ---- */

static void test_error_types(void)
{
    CHECK_EQ_STR(oai->error_type(400), "invalid_request_error");
    CHECK_EQ_STR(oai->error_type(404), "invalid_request_error");
    CHECK_EQ_STR(oai->error_type(413), "invalid_request_error");
    CHECK_EQ_STR(oai->error_type(401), "authentication_error");
    CHECK_EQ_STR(oai->error_type(403), "permission_denied");
    CHECK_EQ_STR(oai->error_type(429), "rate_limit_exceeded");
    CHECK_EQ_STR(oai->error_type(504), "timeout");
    CHECK_EQ_STR(oai->error_type(500), "server_error");
    CHECK_EQ_STR(oai->error_type(502), "server_error");

    CHECK_EQ_STR(ant->error_type(400), "invalid_request_error");
    CHECK_EQ_STR(ant->error_type(401), "authentication_error");
    CHECK_EQ_STR(ant->error_type(403), "permission_error");
    CHECK_EQ_STR(ant->error_type(404), "not_found_error");
    CHECK_EQ_STR(ant->error_type(413), "request_too_large");
    CHECK_EQ_STR(ant->error_type(429), "rate_limit_error");
    CHECK_EQ_STR(ant->error_type(503), "overloaded_error");
    CHECK_EQ_STR(ant->error_type(504), "timeout_error");
    CHECK_EQ_STR(ant->error_type(500), "api_error");
    CHECK_EQ_STR(ant->error_type(502), "api_error");
}

static void test_error_bodies(void)
{
    const char *msg = "Refused by \"rule\" 'x'.\n";
    size_t n = 0;
    char *s;
    cJSON *j, *e;

    s = oai->error_body(403, "permission_denied", msg, &n);
    REQUIRE(s);
    CHECK_EQ_INT(n, strlen(s));
    j = cJSON_Parse(s);
    REQUIRE(j);
    e = cJSON_GetObjectItem(j, "error");
    CHECK_EQ_INT(cJSON_GetArraySize(j), 1);
    CHECK_EQ_STR(str_at(e, "message"), msg);
    CHECK_EQ_STR(str_at(e, "type"), "permission_denied");
    CHECK_EQ_STR(str_at(e, "code"), "403");
    cJSON_Delete(j);
    free(s);

    s = ant->error_body(404, "not_found_error", msg, &n);
    REQUIRE(s);
    CHECK_EQ_INT(n, strlen(s));
    j = cJSON_Parse(s);
    REQUIRE(j);
    CHECK_EQ_STR(str_at(j, "type"), "error");
    e = cJSON_GetObjectItem(j, "error");
    CHECK_EQ_STR(str_at(e, "type"), "not_found_error");
    CHECK_EQ_STR(str_at(e, "message"), msg);
    CHECK(cJSON_GetObjectItem(e, "code") == NULL);
    cJSON_Delete(j);
    free(s);
}

/* the event that ends a broken stream: exactly its text, its length without a NUL */
static void test_error_events(void)
{
    const char *body = "{\"error\":{\"message\":\"m\"}}";
    size_t n = 0;
    char *s;

    s = oai->error_event(body, &n);
    REQUIRE(s);
    CHECK_EQ_STR(s, "data: {\"error\":{\"message\":\"m\"}}\n\n");
    CHECK_EQ_INT(n, strlen(s));
    free(s);

    s = ant->error_event(body, &n);
    REQUIRE(s);
    CHECK_EQ_STR(s, "event: error\ndata: {\"error\":{\"message\":\"m\"}}\n\n");
    /* the length written to the client: one more would send the terminating NUL */
    CHECK_EQ_INT(n, strlen(s));
    free(s);
}

/* ---- answers: usage, whole answers, stream events ---- */

static void test_openai_read_usage(void)
{
    struct proxy_usage u;
    cJSON *j = cJSON_Parse("[{\"prompt_tokens\":100,\"completion_tokens\":20,\"total_tokens\":120,"
                           "\"prompt_tokens_details\":{\"cached_tokens\":60}},"
                           "{\"prompt_tokens\":5,\"completion_tokens\":1},null]");

    REQUIRE(j);
    memset(&u, 0, sizeof(u));
    oai->read_usage(&u, cJSON_GetArrayItem(j, 2)); /* "usage":null in a chunk */
    CHECK_EQ_INT(u.seen, 0);
    oai->read_usage(&u, cJSON_GetArrayItem(j, 0));
    CHECK_EQ_INT(u.seen, 1);
    CHECK_EQ_INT(u.input, 100);
    CHECK_EQ_INT(u.output, 20);
    CHECK_EQ_INT(u.cached, 60);
    oai->read_usage(&u, cJSON_GetArrayItem(j, 1));
    CHECK_EQ_INT(u.input, 5);
    CHECK_EQ_INT(u.cached, 0);
    cJSON_Delete(j);
}

static void test_anthropic_read_usage(void)
{
    struct proxy_usage u;
    cJSON *j = cJSON_Parse("[{\"input_tokens\":10,\"cache_read_input_tokens\":5,"
                           "\"cache_creation_input_tokens\":3,\"output_tokens\":1},"
                           "{\"output_tokens\":42},"
                           "{\"input_tokens\":0,\"output_tokens\":50}]");

    REQUIRE(j);
    memset(&u, 0, sizeof(u));
    ant->read_usage(&u, NULL);
    CHECK_EQ_INT(u.seen, 0);
    /* message_start: input counts cache reads and writes */
    ant->read_usage(&u, cJSON_GetArrayItem(j, 0));
    CHECK_EQ_INT(u.seen, 1);
    CHECK_EQ_INT(u.input, 18);
    CHECK_EQ_INT(u.cached, 5);
    CHECK_EQ_INT(u.cache_write, 3);
    CHECK_EQ_INT(u.output, 1);
    /* message_delta: the cumulative output, input kept */
    ant->read_usage(&u, cJSON_GetArrayItem(j, 1));
    CHECK_EQ_INT(u.output, 42);
    CHECK_EQ_INT(u.input, 18);
    /* a zero input in a later event does not erase what message_start said */
    ant->read_usage(&u, cJSON_GetArrayItem(j, 2));
    CHECK_EQ_INT(u.output, 50);
    CHECK_EQ_INT(u.input, 18);
    CHECK_EQ_INT(u.cached, 5);
    cJSON_Delete(j);
}

static void test_openai_read_answer(void)
{
    static const struct {
        const char *fr;
        enum proxy_stop want;
    } stops[] = {{"\"stop\"", PROXY_STOP_END},
                 {"\"length\"", PROXY_STOP_LENGTH},
                 {"\"tool_calls\"", PROXY_STOP_TOOL},
                 {"\"function_call\"", PROXY_STOP_TOOL},
                 {"\"content_filter\"", PROXY_STOP_FILTER},
                 {"null", PROXY_STOP_END}};
    char json[512];

    for (size_t i = 0; i < sizeof(stops) / sizeof(*stops); i++) {
        struct proxy_answer a;
        struct proxy_usage u;
        cJSON *j;

        snprintf(json, sizeof(json),
                 "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"model\":\"gpt-x\","
                 "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":"
                 "\"hello\"},\"finish_reason\":%s}],\"usage\":{\"prompt_tokens\":7,"
                 "\"completion_tokens\":2}}",
                 stops[i].fr);
        j = cJSON_Parse(json);
        REQUIRE(j);
        memset(&a, 0, sizeof(a));
        memset(&u, 0, sizeof(u));
        CHECK(oai->read_answer(j, &a, &u) == 0);
        CHECK_EQ_STR(a.text, "hello");
        CHECK_EQ_INT(a.stop, stops[i].want);
        CHECK_EQ_STR(a.id, "chatcmpl-1");
        CHECK_EQ_STR(a.model, "gpt-x");
        CHECK_EQ_INT(u.input, 7);
        CHECK_EQ_INT(u.output, 2);
        free(a.text);
        cJSON_Delete(j);
    }
}

static void test_anthropic_read_answer(void)
{
    static const struct {
        const char *sr;
        enum proxy_stop want;
    } stops[] = {{"\"end_turn\"", PROXY_STOP_END},
                 {"\"max_tokens\"", PROXY_STOP_LENGTH},
                 {"\"tool_use\"", PROXY_STOP_TOOL},
                 {"\"refusal\"", PROXY_STOP_FILTER},
                 {"\"stop_sequence\"", PROXY_STOP_END}};
    char json[768];

    for (size_t i = 0; i < sizeof(stops) / sizeof(*stops); i++) {
        struct proxy_answer a;
        struct proxy_usage u;
        cJSON *j;

        snprintf(json, sizeof(json),
                 "{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":"
                 "\"claude-x\",\"content\":[{\"type\":\"text\",\"text\":\"Hel\"},{\"type\":"
                 "\"tool_use\",\"id\":\"t\",\"name\":\"f\",\"input\":{}},{\"type\":\"text\","
                 "\"text\":\"lo\"}],\"stop_reason\":%s,\"usage\":{\"input_tokens\":4,"
                 "\"cache_read_input_tokens\":6,\"output_tokens\":3}}",
                 stops[i].sr);
        j = cJSON_Parse(json);
        REQUIRE(j);
        memset(&a, 0, sizeof(a));
        memset(&u, 0, sizeof(u));
        CHECK(ant->read_answer(j, &a, &u) == 0);
        CHECK_EQ_STR(a.text, "Hello");
        CHECK_EQ_INT(a.stop, stops[i].want);
        CHECK_EQ_STR(a.id, "msg_1");
        CHECK_EQ_STR(a.model, "claude-x");
        CHECK_EQ_INT(u.input, 10);
        CHECK_EQ_INT(u.cached, 6);
        CHECK_EQ_INT(u.output, 3);
        free(a.text);
        cJSON_Delete(j);
    }
}

/* an answer with no text: "" rather than NULL, and no id or model */
static void test_read_answer_empty(void)
{
    struct proxy_answer a;
    struct proxy_usage u;
    cJSON *j = cJSON_Parse("{}");

    REQUIRE(j);
    memset(&a, 0, sizeof(a));
    memset(&u, 0, sizeof(u));
    CHECK(oai->read_answer(j, &a, &u) == 0);
    CHECK_EQ_STR(a.text, "");
    CHECK_EQ_STR(a.id, "");
    CHECK_EQ_INT(a.stop, PROXY_STOP_END);
    CHECK_EQ_INT(u.seen, 0);
    free(a.text);
    memset(&a, 0, sizeof(a));
    CHECK(ant->read_answer(j, &a, &u) == 0);
    CHECK_EQ_STR(a.text, "");
    CHECK_EQ_STR(a.model, "");
    free(a.text);
    cJSON_Delete(j);
}

/* read_event only reads and writes the request's tr_id, tr_model and usage, so a zeroed
 * request stands in for one */
static void event(const struct proxy_wire *w, struct proxy_req *r, const char *ev, const char *data,
                  cJSON **j, struct proxy_piece *p)
{
    *j = cJSON_Parse(data);
    w->read_event(r, ev, strlen(ev), data, strlen(data), *j, p);
}

static void test_openai_read_event(void)
{
    struct proxy_req *r = calloc(1, sizeof(*r));
    struct proxy_piece p;
    cJSON *j;

    REQUIRE(r);
    event(oai, r, "",
          "{\"id\":\"c1\",\"model\":\"gpt-x\",\"choices\":[{\"index\":0,\"delta\":{\"role\":"
          "\"assistant\",\"content\":\"Hi\"},\"finish_reason\":null}]}",
          &j, &p);
    CHECK(p.open);
    CHECK_EQ_STR(p.text, "Hi");
    CHECK(!p.has_stop && !p.end && !p.error);
    CHECK_EQ_STR(r->tr_id, "c1");
    CHECK_EQ_STR(r->tr_model, "gpt-x");
    cJSON_Delete(j);
    /* the first id stays */
    event(oai, r, "",
          "{\"id\":\"c2\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"length\"}]}",
          &j, &p);
    CHECK(p.has_stop);
    CHECK_EQ_INT(p.stop, PROXY_STOP_LENGTH);
    CHECK(p.text == NULL);
    CHECK_EQ_STR(r->tr_id, "c1");
    cJSON_Delete(j);
    event(oai, r, "",
          "{\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":"
          "4}}",
          &j, &p);
    CHECK_EQ_INT(r->usage.input, 11);
    CHECK_EQ_INT(r->usage.output, 4);
    CHECK(!p.open);
    cJSON_Delete(j);
    event(oai, r, "", "{\"error\":{\"message\":\"overloaded\"}}", &j, &p);
    CHECK_EQ_STR(p.error, "overloaded");
    cJSON_Delete(j);
    event(oai, r, "", "[DONE]", &j, &p);
    CHECK(j == NULL);
    CHECK(p.end);
    free(r);
}

static void test_anthropic_read_event(void)
{
    struct proxy_req *r = calloc(1, sizeof(*r));
    struct proxy_piece p;
    cJSON *j;

    REQUIRE(r);
    event(ant, r, "message_start",
          "{\"type\":\"message_start\",\"message\":{\"id\":\"msg_9\",\"model\":\"claude-x\","
          "\"usage\":{\"input_tokens\":20,\"cache_read_input_tokens\":2,\"output_tokens\":1}}}",
          &j, &p);
    CHECK(p.open);
    CHECK_EQ_STR(r->tr_id, "msg_9");
    CHECK_EQ_STR(r->tr_model, "claude-x");
    CHECK_EQ_INT(r->usage.input, 22);
    cJSON_Delete(j);
    event(ant, r, "ping", "{\"type\":\"ping\"}", &j, &p);
    CHECK(!p.open && !p.text && !p.has_stop && !p.end && !p.error);
    cJSON_Delete(j);
    event(ant, r, "content_block_delta",
          "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\","
          "\"text\":\"yo\"}}",
          &j, &p);
    CHECK_EQ_STR(p.text, "yo");
    CHECK(!p.open);
    cJSON_Delete(j);
    event(ant, r, "message_delta",
          "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"max_tokens\"},\"usage\":"
          "{\"output_tokens\":15}}",
          &j, &p);
    CHECK(p.has_stop);
    CHECK_EQ_INT(p.stop, PROXY_STOP_LENGTH);
    CHECK_EQ_INT(r->usage.output, 15);
    CHECK_EQ_INT(r->usage.input, 22);
    cJSON_Delete(j);
    event(ant, r, "error", "{\"type\":\"error\",\"error\":{\"message\":\"busy\"}}", &j, &p);
    CHECK_EQ_STR(p.error, "busy");
    cJSON_Delete(j);
    event(ant, r, "message_stop", "{\"type\":\"message_stop\"}", &j, &p);
    CHECK(p.end);
    cJSON_Delete(j);
    free(r);
}

/* write_answer reads the request's id, usage and (with no model in the answer) its
 * decision's model; a zeroed request with an id stands in */
static void test_write_answer(void)
{
    struct proxy_req *r = calloc(1, sizeof(*r));
    struct proxy_answer a;
    cJSON *j, *c;
    char *s;

    REQUIRE(r);
    snprintf(r->id, sizeof(r->id), "req-1");
    r->usage.input = 30;
    r->usage.output = 5;
    r->usage.cached = 10;
    memset(&a, 0, sizeof(a));
    a.text = "the answer";
    a.stop = PROXY_STOP_LENGTH;
    snprintf(a.model, sizeof(a.model), "m-1");

    s = oai->write_answer(r, &a);
    REQUIRE(s);
    j = cJSON_Parse(s);
    free(s);
    REQUIRE(j);
    CHECK_EQ_STR(str_at(j, "id"), "req-1");
    CHECK_EQ_STR(str_at(j, "object"), "chat.completion");
    CHECK_EQ_STR(str_at(j, "model"), "m-1");
    c = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 0);
    CHECK_EQ_STR(str_at(cJSON_GetObjectItem(c, "message"), "content"), "the answer");
    CHECK_EQ_STR(str_at(c, "finish_reason"), "length");
    CHECK(num_at(cJSON_GetObjectItem(j, "usage"), "total_tokens") == 35);
    cJSON_Delete(j);

    snprintf(a.id, sizeof(a.id), "msg_x");
    a.stop = PROXY_STOP_TOOL;
    s = ant->write_answer(r, &a);
    REQUIRE(s);
    j = cJSON_Parse(s);
    free(s);
    REQUIRE(j);
    CHECK_EQ_STR(str_at(j, "id"), "msg_x");
    CHECK_EQ_STR(str_at(j, "type"), "message");
    CHECK_EQ_STR(str_at(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "content"), 0), "text"),
                 "the answer");
    CHECK_EQ_STR(str_at(j, "stop_reason"), "tool_use");
    /* Anthropic's input_tokens leaves the cache reads out */
    CHECK(num_at(cJSON_GetObjectItem(j, "usage"), "input_tokens") == 20);
    CHECK(num_at(cJSON_GetObjectItem(j, "usage"), "cache_read_input_tokens") == 10);
    cJSON_Delete(j);
    free(r);
}

/* token counts a provider reports are clamped (fuzz_answer: 1e300 was undefined behaviour
 * converted to long, huge or negative sums overflowed): 0 .. PROXY_MAX_COUNT */
static void test_counts_clamped(void)
{
    cJSON *o = cJSON_Parse("{\"a\":1e300,\"b\":-5,\"c\":9e18,\"d\":\"7\",\"e\":12.9,\"f\":1e12}");
    struct proxy_usage u = {0};
    REQUIRE(o);
    CHECK_EQ_INT(proxy_wire_num(o, "a"), PROXY_MAX_COUNT);
    CHECK_EQ_INT(proxy_wire_num(o, "b"), 0);
    CHECK_EQ_INT(proxy_wire_num(o, "c"), PROXY_MAX_COUNT);
    CHECK_EQ_INT(proxy_wire_num(o, "d"), 0); /* not a number */
    CHECK_EQ_INT(proxy_wire_num(o, "e"), 12);
    CHECK_EQ_INT(proxy_wire_num(o, "f"), PROXY_MAX_COUNT);
    CHECK_EQ_INT(proxy_wire_num(o, "missing"), 0);
    cJSON_Delete(o);
    /* an Anthropic usage of huge parts sums without overflow */
    o = cJSON_Parse("{\"input_tokens\":9e18,\"cache_read_input_tokens\":9e18,"
                    "\"cache_creation_input_tokens\":9e18,\"output_tokens\":-1}");
    REQUIRE(o);
    proxy_wire_anthropic_messages.read_usage(&u, o);
    CHECK_EQ_INT(u.input, 3 * PROXY_MAX_COUNT);
    CHECK_EQ_INT(u.output, 0);
    cJSON_Delete(o);
}

int main(void)
{
    RUN(test_chat_init_add_deinit);
    RUN(test_content_text);
    RUN(test_openai_read_roles_and_parts);
    RUN(test_openai_read_options);
    RUN(test_openai_read_refuses_tools_and_images);
    RUN(test_anthropic_read);
    RUN(test_anthropic_read_refuses_non_text);
    RUN(test_anthropic_build_hoists_system);
    RUN(test_openai_build);
    RUN(test_translate_openai_to_anthropic);
    RUN(test_translate_anthropic_to_openai);
    RUN(test_translate_refusals);
    RUN(test_untranslatable);
    RUN(test_error_types);
    RUN(test_error_bodies);
    RUN(test_error_events);
    RUN(test_openai_read_usage);
    RUN(test_anthropic_read_usage);
    RUN(test_openai_read_answer);
    RUN(test_anthropic_read_answer);
    RUN(test_read_answer_empty);
    RUN(test_openai_read_event);
    RUN(test_anthropic_read_event);
    RUN(test_write_answer);
    RUN(test_counts_clamped);
    RUN(test_translate_bad_limit);
    return harness_done();
}
