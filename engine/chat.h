/* chat.h -- chat templates: recognise a family from tokenizer.chat_template and
 * render a conversation exactly as llama.cpp's jinja renderer does.
 *
 * No jinja interpreter: the families we know (ChatML incl. default system prompts,
 * Llama 3 incl. the 3.1+ dated system header, Llama 2, Zephyr/TinyLlama) are
 * recognised by their markers and formatted by hand. Internal to engine/. */
#ifndef AIRLOCK_ENGINE_CHAT_H
#define AIRLOCK_ENGINE_CHAT_H

#include <stddef.h>

#include "engine/engine.h"

enum chat_family { CHAT_NONE = 0, CHAT_CHATML, CHAT_LLAMA3, CHAT_LLAMA2, CHAT_ZEPHYR };

struct chat_template {
    enum chat_family family;
    char *default_system; /* ChatML: system prompt injected when none is given; owned, or NULL */
    char *bos;            /* bos_token text (owned, "" when unknown) */
    char *eos;            /* eos_token text (owned, "" when unknown) */
    int strip_bos;        /* the tokenizer adds BOS itself: drop a leading BOS text */
    int llama3_dated;     /* Llama 3.1+: system header with "Cutting Knowledge Date" */
    char date[32];        /* "26 Jul 2024" style, for llama3_dated */
};

/* chat_template_init -- recognise tmpl (may be NULL: no template). bos/eos: the
 * texts of the model's BOS/EOS tokens (may be NULL). add_bos: the tokenizer adds
 * BOS. Returns 0, ENGINE_ETEMPLATE (err names the first ~60 characters found) or
 * ENGINE_ENOMEM. On failure t is left deinit-safe. */
int chat_template_init(struct chat_template *t, const char *tmpl, const char *bos,
                       const char *eos, int add_bos, char *err, size_t errlen);
void chat_template_deinit(struct chat_template *t);

/* chat_render -- format msgs; *out is a NUL-terminated malloc'd string the caller
 * frees. Returns 0, ENGINE_EINVAL (bad role/order for the family; err says why),
 * ENGINE_ETEMPLATE (t->family is CHAT_NONE) or ENGINE_ENOMEM. */
int chat_render(const struct chat_template *t, const struct engine_msg *msgs, size_t n_msgs,
                int add_generation_prompt, char **out, char *err, size_t errlen);

#endif
