/* chat.c -- chat-template recognition and hand-written renderers matching llama.cpp's jinja output. */
#include "engine/chat.h"
#include "engine/engine_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/grow.h"

struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
};

static void sb_add(struct sbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    char *p = grow_by(b->p, &b->cap, b->len + 1, n, 1, 256); /* + 1: the NUL */
    if (!p) {
        b->oom = 1;
        return;
    }
    b->p = p;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void sb_str(struct sbuf *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

static int is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* jinja's trim / Python's str.strip() on ASCII whitespace */
static void sb_trimmed(struct sbuf *b, const char *s)
{
    size_t n = strlen(s);
    while (n && is_ws(*s)) {
        s++;
        n--;
    }
    while (n && is_ws(s[n - 1]))
        n--;
    sb_add(b, s, n);
}

/* The text between "<|im_start|>system\n" and "<|im_end|>" in a string literal of
 * the template, when it is a literal (no quote, no expression inside): the prompt
 * the template injects when the conversation has no system message. Handles the
 * template's newline both as a raw byte and as a jinja "\n" escape. */
static char *chatml_default_system(const char *tmpl)
{
    static const char open[] = "<|im_start|>system";
    const char *p = tmpl;
    while ((p = strstr(p, open)) != NULL) {
        p += sizeof(open) - 1;
        const char *s = p;
        if (*s == '\n')
            s++;
        else if (s[0] == '\\' && s[1] == 'n')
            s += 2;
        else
            continue;
        const char *e = strstr(s, "<|im_end|>");
        if (!e)
            return NULL;
        if (memchr(s, '\'', (size_t)(e - s)) || memchr(s, '"', (size_t)(e - s)) ||
            memchr(s, '{', (size_t)(e - s)) || e == s)
            continue;
        char *out = malloc((size_t)(e - s) + 1);
        if (!out)
            return NULL;
        size_t n = 0;
        for (const char *q = s; q < e; q++) {
            if (q[0] == '\\' && q + 1 < e) {
                q++;
                out[n++] = *q == 'n' ? '\n' : *q == 't' ? '\t' : *q;
            } else {
                out[n++] = *q;
            }
        }
        out[n] = 0;
        return out;
    }
    return NULL;
}

int chat_template_init(struct chat_template *t, const char *tmpl, const char *bos,
                       const char *eos, int add_bos, char *err, size_t errlen)
{
    memset(t, 0, sizeof(*t));
    t->bos = strdup(bos ? bos : "");
    t->eos = strdup(eos ? eos : "");
    t->strip_bos = add_bos;
    if (!t->bos || !t->eos)
        goto oom;
    if (!tmpl || !*tmpl) {
        engine_set_err(err, errlen, "the model has no chat template (tokenizer.chat_template)");
        return ENGINE_ETEMPLATE;
    }
    if (strstr(tmpl, "<|im_start|>")) {
        t->family = CHAT_CHATML;
        if (strstr(tmpl, "!= 'system'") || strstr(tmpl, "== 'system'") ||
            strstr(tmpl, "!= \"system\"") || strstr(tmpl, "== \"system\"")) {
            t->default_system = chatml_default_system(tmpl);
        }
    } else if (strstr(tmpl, "<|start_header_id|>") && strstr(tmpl, "<|eot_id|>")) {
        t->family = CHAT_LLAMA3;
        if (strstr(tmpl, "Cutting Knowledge Date")) {
            /* Llama 3.2 prints strftime_now("%d %b %Y"), which llama.cpp provides;
             * Llama 3.1 only knows its fixed default */
            time_t now = time(NULL);
            struct tm tm;
            t->llama3_dated = 1;
            if (strstr(tmpl, "strftime_now") && localtime_r(&now, &tm))
                strftime(t->date, sizeof(t->date), "%d %b %Y", &tm);
            else
                snprintf(t->date, sizeof(t->date), "26 Jul 2024");
        }
    } else if (strstr(tmpl, "[INST]") && strstr(tmpl, "<<SYS>>")) {
        t->family = CHAT_LLAMA2;
    } else if (strstr(tmpl, "<|user|>") && strstr(tmpl, "<|assistant|>")) {
        t->family = CHAT_ZEPHYR;
    } else {
        char head[64];
        size_t n = 0;
        for (const char *p = tmpl; *p && n < 60; p++)
            head[n++] = (*p == '\n' || *p == '\r' || *p == '\t') ? ' ' : *p;
        head[n] = 0;
        engine_set_err(err, errlen, "unsupported chat template (known: ChatML, Llama 3, Llama 2, Zephyr): "
                "\"%s%s\"", head, strlen(tmpl) > 60 ? "..." : "");
        return ENGINE_ETEMPLATE;
    }
    return 0;
oom:
    chat_template_deinit(t);
    engine_set_err(err, errlen, "out of memory");
    return ENGINE_ENOMEM;
}

void chat_template_deinit(struct chat_template *t)
{
    free(t->default_system);
    free(t->bos);
    free(t->eos);
    t->default_system = t->bos = t->eos = NULL;
    t->family = CHAT_NONE;
}

static int role_is(const struct engine_msg *m, const char *r)
{
    return m->role && strcmp(m->role, r) == 0;
}

static int render_chatml(const struct chat_template *t, const struct engine_msg *msgs,
                         size_t n, int add_gen, struct sbuf *b)
{
    if (t->default_system && (n == 0 || !role_is(&msgs[0], "system"))) {
        sb_str(b, "<|im_start|>system\n");
        sb_str(b, t->default_system);
        sb_str(b, "<|im_end|>\n");
    }
    for (size_t i = 0; i < n; i++) {
        sb_str(b, "<|im_start|>");
        sb_str(b, msgs[i].role);
        sb_str(b, "\n");
        sb_str(b, msgs[i].content);
        sb_str(b, "<|im_end|>\n");
    }
    if (add_gen)
        sb_str(b, "<|im_start|>assistant\n");
    return 0;
}

static int render_llama3(const struct chat_template *t, const struct engine_msg *msgs,
                         size_t n, int add_gen, struct sbuf *b)
{
    size_t i = 0;
    if (!t->strip_bos)
        sb_str(b, t->bos);
    if (t->llama3_dated) {
        sb_str(b, "<|start_header_id|>system<|end_header_id|>\n\n"
                  "Cutting Knowledge Date: December 2023\nToday Date: ");
        sb_str(b, t->date);
        sb_str(b, "\n\n");
        if (n && role_is(&msgs[0], "system")) {
            sb_trimmed(b, msgs[0].content);
            i = 1;
        }
        sb_str(b, "<|eot_id|>");
    }
    for (; i < n; i++) {
        sb_str(b, "<|start_header_id|>");
        sb_str(b, msgs[i].role);
        sb_str(b, "<|end_header_id|>\n\n");
        sb_trimmed(b, msgs[i].content);
        sb_str(b, "<|eot_id|>");
    }
    if (add_gen)
        sb_str(b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
    return 0;
}

static int render_llama2(const struct chat_template *t, const struct engine_msg *msgs,
                         size_t n, struct sbuf *b, char *err, size_t errlen)
{
    const char *sys = NULL;
    size_t start = 0;
    if (n && role_is(&msgs[0], "system")) {
        sys = msgs[0].content;
        start = 1;
    }
    for (size_t i = start; i < n; i++) {
        size_t k = i - start;
        int user = role_is(&msgs[i], "user");
        if (user != (k % 2 == 0) || (!user && !role_is(&msgs[i], "assistant"))) {
            engine_set_err(err, errlen, "Llama 2 chat needs alternating user/assistant messages "
                                 "(after an optional system message)");
            return ENGINE_EINVAL;
        }
        if (user) {
            if (!(t->strip_bos && b->len == 0))
                sb_str(b, t->bos);
            sb_str(b, "[INST] ");
            if (k == 0 && sys) {
                struct sbuf c = {0};
                sb_str(&c, "<<SYS>>\n");
                sb_str(&c, sys);
                sb_str(&c, "\n<</SYS>>\n\n");
                sb_str(&c, msgs[i].content);
                if (c.oom)
                    b->oom = 1;
                else
                    sb_trimmed(b, c.p);
                free(c.p);
            } else {
                sb_trimmed(b, msgs[i].content);
            }
            sb_str(b, " [/INST]");
        } else {
            sb_str(b, " ");
            sb_trimmed(b, msgs[i].content);
            sb_str(b, " ");
            sb_str(b, t->eos);
        }
    }
    return 0;
}

static int render_zephyr(const struct chat_template *t, const struct engine_msg *msgs,
                         size_t n, int add_gen, struct sbuf *b)
{
    for (size_t i = 0; i < n; i++) {
        const char *tag = role_is(&msgs[i], "user")        ? "<|user|>\n"
                          : role_is(&msgs[i], "system")    ? "<|system|>\n"
                          : role_is(&msgs[i], "assistant") ? "<|assistant|>\n"
                                                           : NULL;
        if (tag) {
            sb_str(b, tag);
            sb_str(b, msgs[i].content);
            sb_str(b, t->eos);
            sb_str(b, "\n");
        }
        if (i + 1 == n && add_gen)
            sb_str(b, "<|assistant|>\n");
    }
    return 0;
}

int chat_render(const struct chat_template *t, const struct engine_msg *msgs, size_t n_msgs,
                int add_generation_prompt, char **out, char *err, size_t errlen)
{
    struct sbuf b = {0};
    int rc;
    *out = NULL;
    for (size_t i = 0; i < n_msgs; i++) {
        if (!msgs[i].role || !msgs[i].content) {
            engine_set_err(err, errlen, "message %zu has no role or content", i);
            return ENGINE_EINVAL;
        }
    }
    switch (t->family) {
    case CHAT_CHATML:
        rc = render_chatml(t, msgs, n_msgs, add_generation_prompt, &b);
        break;
    case CHAT_LLAMA3:
        rc = render_llama3(t, msgs, n_msgs, add_generation_prompt, &b);
        break;
    case CHAT_LLAMA2:
        rc = render_llama2(t, msgs, n_msgs, &b, err, errlen);
        break;
    case CHAT_ZEPHYR:
        rc = render_zephyr(t, msgs, n_msgs, add_generation_prompt, &b);
        break;
    default:
        engine_set_err(err, errlen, "the model has no usable chat template");
        return ENGINE_ETEMPLATE;
    }
    sb_add(&b, "", 0);
    if (rc == 0 && b.oom) {
        engine_set_err(err, errlen, "out of memory");
        rc = ENGINE_ENOMEM;
    }
    if (rc) {
        free(b.p);
        return rc;
    }
    *out = b.p;
    return 0;
}
