/* engine.h -- the built-in inference engine: GGUF models answered in-process.
 *
 * Two layers. The model layer (engine_model_*) loads a GGUF file (mmap'd,
 * read-only, every field checked) and is immutable afterwards. The serving layer
 * (engine_server_*) owns two threads and a bounded queue of jobs: a prep thread that
 * formats (chat template) and tokenizes each job's prompt, and a decode worker; jobs
 * submitted from any thread are decoded together (continuous batching) and report back
 * through callbacks ON AN ENGINE THREAD (on_done on the prep thread for a job that ends
 * before it is decoded: a refused prompt, a count, a cancel while waiting; else on the
 * worker): the caller hands results to its own event loop. Submitting never formats or
 * tokenizes, so it costs a copy of the prompt and is safe on an event loop.
 *
 * engine knows nothing of HTTP or policy.
 * Errors: 0 or a negative ENGINE_E* code; messages in caller-supplied buffers. */
#ifndef AIRLOCK_ENGINE_H
#define AIRLOCK_ENGINE_H

#include <stddef.h>
#include <stdint.h>

enum {
    ENGINE_OK = 0,
    ENGINE_EINVAL = -1, /* bad argument or bad file */
    ENGINE_ENOMEM = -2,
    ENGINE_EBUSY = -3,    /* queue full */
    ENGINE_ECONTEXT = -4, /* prompt longer than the context */
    ENGINE_ECANCELED = -5,
    ENGINE_ETEMPLATE = -6 /* no known chat template */
};

struct engine_model;
struct engine_server;
struct engine_job;

/* engine_model_open -- load a GGUF. threads: forward-pass threads (0: default);
 * context: KV cache length per sequence (0: the model's, capped at 4096). */
int engine_model_open(const char *path, int threads, int context, struct engine_model **out,
                      char *err, size_t errlen) __attribute__((warn_unused_result));
void engine_model_close(struct engine_model *m);
/* general.name, or the file's base name */
const char *engine_model_name(const struct engine_model *m);
int engine_model_context(const struct engine_model *m);

struct engine_msg {
    const char *role;    /* "system", "user", "assistant" */
    const char *content; /* UTF-8, NUL-terminated */
};

struct engine_params {
    int max_tokens;    /* <= 0: until EOS or context end */
    float temperature; /* 0: greedy */
    int top_k;         /* 0: off */
    float top_p;       /* 1: off */
    float min_p;       /* 0: off */
    uint64_t seed;
    const char *const *stop; /* stop sequences, may be NULL */
    size_t n_stop;
};

struct engine_result {
    int status; /* ENGINE_OK, ENGINE_ECONTEXT, ENGINE_ECANCELED, ... */
    int prompt_tokens;
    int completion_tokens;
    const char *finish_reason; /* "stop" (EOS/stop sequence), "length"; NULL for a count */
    char error[256];           /* one sentence when status != 0 */
    /* 1 when the prompt itself was refused before anything ran (ENGINE_ETEMPLATE,
     * ENGINE_ECONTEXT, ENGINE_EINVAL from formatting or tokenizing it: the request's fault,
     * not the model's); such a job never called on_text. 0 otherwise. */
    int prompt_refused;
};

struct engine_callbacks {
    /* a piece of generated UTF-8 text (never splits a UTF-8 sequence, never
     * contains text of a stop sequence) */
    void (*on_text)(void *ud, const char *text, size_t len);
    /* exactly once per job, last */
    void (*on_done)(void *ud, const struct engine_result *r);
    /* optional (may be NULL): the prompt was tokenized and fits the context, and the job now
     * waits for the decode worker. Called on the prep thread at most once, before any
     * on_text; never for a count or a prompt that was refused. A job may still end with an
     * error or a cancel after it. */
    void (*on_ready)(void *ud, int prompt_tokens);
};

/* engine_server_new -- start the workers for model m (borrowed; must outlive the
 * server). queue_max: jobs waiting beyond those being decoded. */
int engine_server_new(struct engine_model *m, int queue_max, struct engine_server **out)
    __attribute__((warn_unused_result));
/* engine_server_free -- cancel all jobs, whatever their stage (waiting for prep, being
 * prepped, queued for decode, decoding): each gets on_done exactly once, ENGINE_ECANCELED
 * unless it was already ending; then join the threads. */
void engine_server_free(struct engine_server *s);

/* engine_submit -- queue msgs (copied: the job owns them, and wipes them once tokenized)
 * for the prep thread, which formats them with the model's chat template and tokenizes
 * them, then for decoding. Returns at once, without formatting or tokenizing. On success
 * *job holds one reference for the caller (release it with engine_job_release once the
 * caller no longer needs it; callbacks may still run until on_done). Synchronous errors
 * are only ENGINE_EINVAL (bad arguments, more than 64 stop sequences), ENGINE_ENOMEM and
 * ENGINE_EBUSY (the queue is full, or the server is stopping); no callback is called when
 * submit fails. Everything about the prompt comes through on_done, before any on_text, with
 * prompt_refused set: ENGINE_ETEMPLATE (the model has no usable chat template),
 * ENGINE_EINVAL (roles the template cannot place, an empty prompt), ENGINE_ECONTEXT (the
 * prompt does not fit the context; prompt_tokens says how long it is). */
int engine_submit(struct engine_server *s, const struct engine_msg *msgs, size_t n_msgs,
                  const struct engine_params *params, const struct engine_callbacks *cb, void *ud,
                  struct engine_job **job) __attribute__((warn_unused_result));
/* engine_job_cancel -- ask the job to stop; on_done follows with ENGINE_ECANCELED
 * (or its normal end if it was already finishing). A job waiting for prep ends when the
 * prep thread reaches it, without being tokenized; one being tokenized ends when that is
 * done; one queued or decoding at the worker's next step. Safe from any thread while the
 * caller holds its reference. */
void engine_job_cancel(struct engine_job *job);
void engine_job_release(struct engine_job *job);

#endif
