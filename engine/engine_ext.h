/* engine_ext.h -- additions to engine.h (same module, same conventions): raw-prompt
 * submission with error messages, per-job statistics, model facts for the CLI.
 * Candidates for merging into engine.h. */
#ifndef AIRLOCK_ENGINE_EXT_H
#define AIRLOCK_ENGINE_EXT_H

#include "engine/engine.h"

/* engine_submit_ex -- engine_submit, plus: when prompt is not NULL it is used as is
 * (copied; msgs ignored; tokenized on the prep thread with the model's BOS rule and
 * special tokens parsed, like llama-completion), and when submit fails err receives one
 * sentence (EINVAL: what was wrong; EBUSY: how full the queue is). The prompt's own
 * errors come through on_done (engine_submit), with the same sentences in the result's
 * error: ETEMPLATE what template was found, ECONTEXT prompt and context sizes. */
int engine_submit_ex(struct engine_server *s, const struct engine_msg *msgs, size_t n_msgs,
                     const char *prompt, const struct engine_params *params,
                     const struct engine_callbacks *cb, void *ud, struct engine_job **job,
                     char *err, size_t errlen) __attribute__((warn_unused_result));

/* engine_count_prompt_tokens -- how many tokens msgs are as the model's prompt: rendered with
 * its chat template (with the assistant's opening, as engine_submit does) and tokenized the
 * same way, so *count equals the prompt_tokens a job for msgs would report. Nothing is
 * queued or run; it runs on the caller's thread (safe from any thread: the model is
 * immutable), so it is for the CLI and tests; an event loop uses engine_count_submit. The
 * context length is not checked: a count is an answer even for a prompt too long to be run.
 * Returns 0, ENGINE_ETEMPLATE (no usable chat template), ENGINE_EINVAL (bad arguments, or
 * roles the template cannot place) or ENGINE_ENOMEM, with one sentence in err. */
int engine_count_prompt_tokens(const struct engine_model *m, const struct engine_msg *msgs,
                               size_t n_msgs, int *count, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* engine_count_submit -- engine_count_prompt_tokens on the server's prep thread: msgs are
 * copied (owned by the job, wiped once tokenized) and queued; submit returns at once. The
 * job shares the server's queue and its limit with the jobs that generate, never reaches
 * the decode worker, and never calls on_text. on_done (on the prep thread) carries the
 * count in prompt_tokens with status ENGINE_OK, or ENGINE_ETEMPLATE / ENGINE_EINVAL /
 * ENGINE_ENOMEM / ENGINE_ECANCELED with the sentence engine_count_prompt_tokens would
 * give. *job and its reference as engine_submit's; engine_job_cancel works as for any job.
 * Synchronous errors: ENGINE_EINVAL (bad arguments, no messages), ENGINE_ENOMEM,
 * ENGINE_EBUSY (the queue is full, or the server is stopping), err filled, no callback. */
int engine_count_submit(struct engine_server *s, const struct engine_msg *msgs, size_t n_msgs,
                        const struct engine_callbacks *cb, void *ud, struct engine_job **job,
                        char *err, size_t errlen) __attribute__((warn_unused_result));

struct engine_job_stats {
    int prompt_tokens;
    int completion_tokens;
    double queue_ms;   /* submit to start of prefill (includes prep_ms) */
    double prep_ms;    /* formatting and tokenizing the prompt (prep thread); 0: never */
    double prefill_ms; /* prompt processing (wall time, shared with other jobs' steps) */
    double decode_ms;  /* first to last generated token */
};

/* engine_job_stats -- valid once on_done has been called (0), -1 before. */
int engine_job_stats(struct engine_job *job, struct engine_job_stats *st);

/* engine_model_chat_ok -- 1 if submit with messages can work, else 0 and (if err)
 * the reason */
int engine_model_chat_ok(const struct engine_model *m, char *err, size_t errlen);
/* engine_model_desc -- one line: architecture, size, tensor type, tokenizer, template */
void engine_model_desc(const struct engine_model *m, char *buf, size_t len);

#endif
