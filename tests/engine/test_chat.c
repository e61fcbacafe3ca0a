/* test_chat.c -- chat templates render byte-for-byte as llama.cpp's jinja (golden/chat_templates.json). */
#include <cJSON.h>

#include "engine/chat.c"
#include "harness.h"

static cJSON *golden;

static cJSON *find_template(const char *name)
{
    cJSON *t;
    cJSON_ArrayForEach(t, cJSON_GetObjectItem(golden, "templates"))
    {
        if (strcmp(cJSON_GetObjectItem(t, "name")->valuestring, name) == 0)
            return t;
    }
    return NULL;
}

static void test_golden_jinja(void)
{
    cJSON *c;
    int n = 0;
    REQUIRE(golden);
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(golden, "cases"))
    {
        const char *tname = cJSON_GetObjectItem(c, "template")->valuestring;
        cJSON *t = find_template(tname);
        REQUIRE(t);
        struct chat_template ct;
        char err[256] = "";
        int rc = chat_template_init(&ct, cJSON_GetObjectItem(t, "template")->valuestring,
                                    cJSON_GetObjectItem(t, "bos_token")->valuestring,
                                    cJSON_GetObjectItem(t, "eos_token")->valuestring,
                                    cJSON_IsTrue(cJSON_GetObjectItem(t, "add_bos")), err,
                                    sizeof(err));
        CHECK_EQ_INT(rc, 0);
        struct engine_msg msgs[8];
        size_t nm = 0;
        cJSON *m;
        cJSON_ArrayForEach(m, cJSON_GetObjectItem(c, "messages"))
        {
            REQUIRE(nm < 8);
            msgs[nm].role = cJSON_GetObjectItem(m, "role")->valuestring;
            msgs[nm].content = cJSON_GetObjectItem(m, "content")->valuestring;
            nm++;
        }
        char *out = NULL;
        rc = chat_render(&ct, msgs, nm, cJSON_IsTrue(cJSON_GetObjectItem(c, "add_generation_prompt")),
                         &out, err, sizeof(err));
        CHECK_EQ_INT(rc, 0);
        const char *want = cJSON_GetObjectItem(c, "jinja")->valuestring;
        if (!out || strcmp(out, want) != 0)
            fprintf(stderr, "  %s/%s:\n   got  %s\n   want %s\n", tname,
                    cJSON_GetObjectItem(c, "conversation")->valuestring, out ? out : "(null)", want);
        CHECK(out && strcmp(out, want) == 0);
        free(out);
        chat_template_deinit(&ct);
        n++;
    }
    CHECK_EQ_INT(n, 20);
}

static void test_unknown_template(void)
{
    struct chat_template ct;
    char err[256] = "";
    int rc = chat_template_init(&ct, "{% for m in messages %}### {{ m.role }}: {{ m.content }}\n"
                                     "{% endfor %}### Response:", "<s>", "</s>", 1, err, sizeof(err));
    CHECK_EQ_INT(rc, ENGINE_ETEMPLATE);
    CHECK(strstr(err, "{% for m in messages %}### {{ m.role }}") != NULL);
    char *out = (char *)1;
    struct engine_msg msg = {"user", "hi"};
    CHECK_EQ_INT(chat_render(&ct, &msg, 1, 1, &out, err, sizeof(err)), ENGINE_ETEMPLATE);
    CHECK(out == NULL);
    chat_template_deinit(&ct);

    rc = chat_template_init(&ct, NULL, NULL, NULL, 0, err, sizeof(err));
    CHECK_EQ_INT(rc, ENGINE_ETEMPLATE);
    CHECK(strstr(err, "no chat template") != NULL);
    chat_template_deinit(&ct);
}

static void test_llama2_order(void)
{
    cJSON *t = find_template("llama2");
    REQUIRE(t);
    struct chat_template ct;
    char err[256] = "";
    REQUIRE(chat_template_init(&ct, cJSON_GetObjectItem(t, "template")->valuestring, "<s>", "</s>",
                               1, err, sizeof(err)) == 0);
    struct engine_msg msgs[2] = {{"assistant", "hi"}, {"user", "x"}};
    char *out = NULL;
    CHECK_EQ_INT(chat_render(&ct, msgs, 2, 1, &out, err, sizeof(err)), ENGINE_EINVAL);
    CHECK(strstr(err, "alternating") != NULL);
    chat_template_deinit(&ct);
}

/* Qwen2.5 writes its default system prompt with a jinja "\n" escape, inside an
 * if/else whose other branch concatenates the system message. */
static void test_qwen25_default_system(void)
{
    const char *tmpl =
        "{%- if messages[0]['role'] == 'system' %}\n"
        "        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n"
        "    {%- else %}\n"
        "        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a "
        "helpful assistant.<|im_end|>\\n' }}\n"
        "    {%- endif %}";
    struct chat_template ct;
    char err[256] = "";
    REQUIRE(chat_template_init(&ct, tmpl, "<|endoftext|>", "<|im_end|>", 0, err, sizeof(err)) == 0);
    CHECK_EQ_INT(ct.family, CHAT_CHATML);
    CHECK_EQ_STR(ct.default_system,
                 "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.");
    chat_template_deinit(&ct);
}

static void test_llama32_dated(void)
{
    const char *tmpl = "{{- bos_token }}{%- set date_string = \"26 Jul 2024\" %}"
                       "{{- \"<|start_header_id|>system<|end_header_id|>\\n\\n\" }}"
                       "{{- \"Cutting Knowledge Date: December 2023\\n\" }}<|eot_id|>";
    struct chat_template ct;
    char err[256] = "";
    REQUIRE(chat_template_init(&ct, tmpl, "<|begin_of_text|>", "<|eot_id|>", 1, err,
                               sizeof(err)) == 0);
    CHECK_EQ_INT(ct.family, CHAT_LLAMA3);
    CHECK_EQ_STR(ct.date, "26 Jul 2024"); /* Llama 3.1: no strftime_now, the fixed default */
    struct engine_msg msgs[2] = {{"system", " Be brief. "}, {"user", "Hi"}};
    char *out = NULL;
    REQUIRE(chat_render(&ct, msgs, 2, 1, &out, err, sizeof(err)) == 0);
    CHECK_EQ_STR(out, "<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: "
                      "December 2023\nToday Date: 26 Jul 2024\n\nBe brief.<|eot_id|>"
                      "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                      "<|start_header_id|>assistant<|end_header_id|>\n\n");
    free(out);
    chat_template_deinit(&ct);

    /* Llama 3.2 asks for today's date */
    char today[32];
    time_t now = time(NULL);
    struct tm tm;
    REQUIRE(localtime_r(&now, &tm));
    strftime(today, sizeof(today), "%d %b %Y", &tm);
    REQUIRE(chat_template_init(&ct, "{%- set date_string = strftime_now(\"%d %b %Y\") %}"
                                    "<|start_header_id|>Cutting Knowledge Date<|eot_id|>",
                               "<|begin_of_text|>", "<|eot_id|>", 1, err, sizeof(err)) == 0);
    CHECK_EQ_STR(ct.date, today);
    chat_template_deinit(&ct);
}

int main(void)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/models/golden/chat_templates.json", harness_shared());
    char *text = harness_read_file(path, NULL);
    golden = text ? cJSON_Parse(text) : NULL;
    free(text);
    RUN(test_golden_jinja);
    RUN(test_unknown_template);
    RUN(test_llama2_order);
    RUN(test_qwen25_default_system);
    RUN(test_llama32_dated);
    cJSON_Delete(golden);
    return harness_done();
}
