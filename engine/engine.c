/* engine.c -- loading a model: GGUF, weights, tokenizer and chat template, with one
 * clear sentence for whatever is wrong. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "engine/engine_ext.h"
#include "engine/engine_int.h"

#define DEFAULT_CTX_CAP 4096

void engine_set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (!err || !errlen)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static int default_threads(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1)
        n = 1;
    return n > 16 ? 16 : (int)n;
}

int engine_model_open(const char *path, int threads, int context, struct engine_model **out,
                      char *err, size_t errlen)
{
    char why[256] = "";
    struct stat st;
    struct engine_model *m = NULL;
    *out = NULL;
    if (!path || !*path) {
        engine_set_err(err, errlen, "no model file given");
        return ENGINE_EINVAL;
    }
    if (stat(path, &st) != 0) {
        engine_set_err(err, errlen, "model %s: %s", path, strerror(errno));
        return ENGINE_EINVAL;
    }
    if (!S_ISREG(st.st_mode)) {
        engine_set_err(err, errlen, "model %s: not a regular file", path);
        return ENGINE_EINVAL;
    }
    if (threads < 0 || context < 0) {
        engine_set_err(err, errlen, "model %s: threads and context must not be negative", path);
        return ENGINE_EINVAL;
    }
    m = calloc(1, sizeof(*m));
    if (!m)
        goto oom;
    if (gguf_open(path, &m->gguf, why, sizeof(why)) != 0) {
        engine_set_err(err, errlen, "model %s: %s", path, why);
        goto fail;
    }
    if (engine_weights_load(m->gguf, &m->w, why, sizeof(why)) != 0) {
        engine_set_err(err, errlen, "model %s: %s", path, why);
        goto fail;
    }
    int rc = tokenizer_new_gguf(m->gguf, &m->tok, why, sizeof(why));
    if (rc != 0) {
        engine_set_err(err, errlen, "model %s: %s", path, why);
        if (rc == ENGINE_ENOMEM) {
            engine_model_close(m);
            return ENGINE_ENOMEM;
        }
        goto fail;
    }
    if (tokenizer_n_vocab(m->tok) != m->w->hp.n_vocab) {
        engine_set_err(err, errlen, "model %s: the tokenizer has %d tokens but token_embd has %d rows",
                path, tokenizer_n_vocab(m->tok), m->w->hp.n_vocab);
        goto fail;
    }
    /* a missing or unknown template only matters to chat requests: remember why */
    const char *tmpl = gguf_get_str(m->gguf, "tokenizer.chat_template", NULL);
    m->tmpl_rc = chat_template_init(&m->tmpl, tmpl, tokenizer_text(m->tok, tokenizer_bos(m->tok)),
                                    tokenizer_text(m->tok, tokenizer_eos(m->tok)),
                                    tokenizer_add_bos(m->tok), m->tmpl_err, sizeof(m->tmpl_err));
    if (m->tmpl_rc == ENGINE_ENOMEM)
        goto oom;
    if (m->tmpl_rc != 0)
        log_warn("model %s: %s; chat requests will be refused", base_name(path), m->tmpl_err);

    const char *gname = gguf_get_str(m->gguf, "general.name", NULL);
    if (gname && *gname) {
        m->name = strdup(gname);
    } else {
        const char *b = base_name(path);
        size_t n = strlen(b);
        if (n > 5 && strcmp(b + n - 5, ".gguf") == 0)
            n -= 5;
        m->name = strndup(b, n);
    }
    if (!m->name)
        goto oom;
    int train = m->w->hp.n_ctx_train > 0 ? m->w->hp.n_ctx_train : DEFAULT_CTX_CAP;
    if (context == 0)
        m->n_ctx = train < DEFAULT_CTX_CAP ? train : DEFAULT_CTX_CAP;
    else
        m->n_ctx = context < train ? context : train;
    m->n_threads = threads ? threads : default_threads();
    *out = m;
    return 0;
oom:
    engine_set_err(err, errlen, "model %s: out of memory", path);
    engine_model_close(m);
    return ENGINE_ENOMEM;
fail:
    engine_model_close(m);
    return ENGINE_EINVAL;
}

void engine_model_close(struct engine_model *m)
{
    if (!m)
        return;
    chat_template_deinit(&m->tmpl);
    tokenizer_free(m->tok);
    if (m->w)
        engine_weights_free(m->w);
    gguf_close(m->gguf);
    free(m->name);
    free(m);
}

const char *engine_model_name(const struct engine_model *m)
{
    return m->name;
}

int engine_model_context(const struct engine_model *m)
{
    return m->n_ctx;
}

int engine_model_chat_ok(const struct engine_model *m, char *err, size_t errlen)
{
    if (m->tmpl.family != CHAT_NONE)
        return 1;
    engine_set_err(err, errlen, "%s", m->tmpl_err[0] ? m->tmpl_err : "the model has no chat template");
    return 0;
}

void engine_model_desc(const struct engine_model *m, char *buf, size_t len)
{
    static const char *const fam[] = {"none", "ChatML", "Llama 3", "Llama 2", "Zephyr"};
    const struct engine_hparams *hp = &m->w->hp;
    snprintf(buf, len, "%s: %s, %d layers, n_embd %d, vocab %d (%s), weights %s, context %d, "
             "chat template %s",
             m->name, hp->arch == ENGINE_ARCH_QWEN2 ? "qwen2" : "llama", hp->n_layer, hp->n_embd,
             hp->n_vocab, tokenizer_kind(m->tok) == TOKENIZER_SPM ? "SentencePiece" : "BPE",
             hp->n_layer > 0 ? gguf_type_name(m->w->layers[0].wq.type) : "?", m->n_ctx, fam[m->tmpl.family]);
}
