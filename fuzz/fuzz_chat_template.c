/* fuzz_chat_template.c -- libFuzzer driver for the chat-template renderer (engine/chat.c): any
 * template text (from a model file) and any conversation (from a client) must be recognised
 * or refused, and rendered or refused, cleanly.
 *
 * Input: NUL-separated fields
 *   TEMPLATE \0 BOS \0 EOS \0 FLAGS \0 ROLE \0 CONTENT \0 ROLE \0 CONTENT ...
 * FLAGS' first byte: bit 0 the tokenizer adds BOS, bit 1 add_generation_prompt. A missing
 * field is NULL for TEMPLATE/BOS/EOS (as when a model lacks the key) and ends the messages
 * otherwise; a role without its content is dropped. Seeds: fuzz/corpus/chat_template/, one per
 * family and conversation shape of golden/chat_templates.json. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/chat.h"
#include "engine/engine.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_FIELDS 35 /* template, bos, eos, flags and 16 messages, with room to spare */
#define MAX_MSGS 16

static void check(int ok)
{
    if (!ok)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy, *field[MAX_FIELDS], *out = NULL, err[256];
    struct engine_msg msgs[MAX_MSGS];
    struct chat_template t;
    size_t n_fields = 0, n_msgs = 0, i, at = 0;
    int flags, rc;

    /* one NUL-terminated copy, cut at every NUL into the fields */
    copy = malloc(size + 1);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    copy[size] = 0;
    while (n_fields < MAX_FIELDS && at <= size) {
        field[n_fields++] = copy + at;
        at += strlen(copy + at) + 1;
    }
    flags = n_fields > 3 ? (unsigned char)field[3][0] : 0;
    for (i = 4; i + 1 < n_fields && n_msgs < MAX_MSGS; i += 2) {
        msgs[n_msgs].role = field[i];
        msgs[n_msgs].content = field[i + 1];
        n_msgs++;
    }

    err[0] = 0;
    rc = chat_template_init(&t, field[0], n_fields > 1 ? field[1] : NULL,
                            n_fields > 2 ? field[2] : NULL, flags & 1, err, sizeof(err));
    if (rc != 0) {
        check(rc == ENGINE_ETEMPLATE || rc == ENGINE_ENOMEM);
        check(rc != ENGINE_ETEMPLATE || err[0] != 0);
        chat_template_deinit(&t); /* deinit-safe after a failure */
        free(copy);
        return 0;
    }
    check(t.family != CHAT_NONE && t.bos && t.eos);
    rc = chat_render(&t, msgs, n_msgs, (flags >> 1) & 1, &out, err, sizeof(err));
    if (rc == 0) {
        check(out != NULL);
        free(out);
    } else {
        check(rc == ENGINE_EINVAL || rc == ENGINE_ENOMEM);
        check(out == NULL && (rc != ENGINE_EINVAL || err[0] != 0));
    }
    chat_template_deinit(&t);
    free(copy);
    return 0;
}
