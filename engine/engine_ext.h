/* engine_ext.h -- additions to engine.h (same module, same conventions): raw-prompt
 * submission with error messages, per-job statistics, model facts for the CLI.
 * Candidates for merging into engine.h. */
#ifndef AIRLOCK_ENGINE_EXT_H
#define AIRLOCK_ENGINE_EXT_H

#include "engine/engine.h"

/* engine_submit_ex -- engine_submit, plus: when prompt is not NULL it is used as is
 * (msgs ignored; tokenized with the model's BOS rule and special tokens parsed, like
 * llama-completion), and on failure err receives one sentence (ETEMPLATE: what
 * template was found; ECONTEXT: prompt and context sizes; EINVAL: what was wrong). */
int engine_submit_ex(struct engine_server *s, const struct engine_msg *msgs, size_t n_msgs,
                     const char *prompt, const struct engine_params *params,
                     const struct engine_callbacks *cb, void *ud, struct engine_job **job,
                     char *err, size_t errlen) __attribute__((warn_unused_result));

/* engine_count_prompt_tokens -- how many tokens msgs are as the model's prompt: rendered with
 * its chat template (with the assistant's opening, as engine_submit does) and tokenized the
 * same way, so *count equals the prompt_tokens a job for msgs would report. Nothing is
 * queued or run; safe from any thread (the model is immutable). The context length is not
 * checked: a count is an answer even for a prompt too long to be run. Returns 0,
 * ENGINE_ETEMPLATE (no usable chat template), ENGINE_EINVAL (bad arguments, or roles the
 * template cannot place) or ENGINE_ENOMEM, with one sentence in err. */
int engine_count_prompt_tokens(const struct engine_model *m, const struct engine_msg *msgs,
                               size_t n_msgs, int *count, char *err, size_t errlen)
    __attribute__((warn_unused_result));

struct engine_job_stats {
    int prompt_tokens;
    int completion_tokens;
    double queue_ms;   /* submit to start of prefill */
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
