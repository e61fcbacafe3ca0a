/* engine_int.h -- private to engine/: what a loaded model holds (engine.c builds it,
 * server.c serves it). */
#ifndef AIRLOCK_ENGINE_ENGINE_INT_H
#define AIRLOCK_ENGINE_ENGINE_INT_H

#include "engine/chat.h"
#include "engine/engine.h"
#include "engine/forward.h"
#include "engine/gguf.h"
#include "engine/tokenizer.h"

/* engine_set_err -- format a message into a caller's error buffer (err may be NULL) */
void engine_set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

struct engine_model {
    struct gguf_file *gguf;          /* owned; the weights point into its mapping */
    struct engine_weights *w;        /* owned */
    struct tokenizer *tok;           /* owned */
    struct chat_template tmpl;       /* family CHAT_NONE when unusable */
    int tmpl_rc;                     /* 0 or ENGINE_ETEMPLATE */
    char tmpl_err[256];              /* why there is no template (reported at submit) */
    char *name;                      /* owned */
    int n_ctx;                       /* KV length per sequence */
    int n_threads;                   /* forward-pass threads per worker */
};

#endif
