/* cmd_engine.c -- `airlock engine run`: load a GGUF, generate once, stream the text to
 * stdout and the speed to stderr. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "common/log.h"
#include "engine/engine.h"
#include "engine/engine_ext.h"

#define USAGE                                                                                      \
    "engine run -m MODEL.gguf [-p PROMPT] [-n N] [--temp T] [--seed S] [--threads N] "            \
    "[--top-k K] [--top-p P] [--min-p P] [--ctx N] [--chat] [--system TEXT]"

struct run_state {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
    struct engine_result res;
};

static void on_text(void *ud, const char *text, size_t len)
{
    (void)ud;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
}

static void on_done(void *ud, const struct engine_result *r)
{
    struct run_state *st = ud;
    pthread_mutex_lock(&st->mu);
    st->res = *r;
    st->done = 1;
    pthread_cond_signal(&st->cv);
    pthread_mutex_unlock(&st->mu);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int parse_int(const char *s, long lo, long hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

static int parse_float(const char *s, float lo, float hi, float *out)
{
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi))
        return -1;
    *out = v;
    return 0;
}

static int engine_run(int argc, char **argv)
{
    const char *model = NULL, *prompt = "Once upon a time", *system = NULL;
    int n = 128, threads = 0, ctx = 0, chat = 0;
    struct engine_params p = {.max_tokens = 128, .temperature = 0.0f, .top_p = 1.0f};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (strcmp(a, "--chat") == 0) {
            chat = 1;
            continue;
        }
        if (!v)
            return cli_usage(USAGE);
        i++;
        if (strcmp(a, "-m") == 0 || strcmp(a, "--model") == 0)
            model = v;
        else if (strcmp(a, "-p") == 0 || strcmp(a, "--prompt") == 0)
            prompt = v;
        else if (strcmp(a, "--system") == 0)
            system = v;
        else if (strcmp(a, "-n") == 0)
            bad = parse_int(v, -1, INT_MAX, &n);
        else if (strcmp(a, "--temp") == 0)
            bad = parse_float(v, 0.0f, 100.0f, &p.temperature);
        else if (strcmp(a, "--seed") == 0) {
            char *end;
            errno = 0;
            unsigned long long s = strtoull(v, &end, 10);
            bad = errno || end == v || *end ? -1 : 0;
            p.seed = s;
        } else if (strcmp(a, "--threads") == 0 || strcmp(a, "-t") == 0)
            bad = parse_int(v, 1, 512, &threads);
        else if (strcmp(a, "--ctx") == 0 || strcmp(a, "-c") == 0)
            bad = parse_int(v, 1, 1 << 20, &ctx);
        else if (strcmp(a, "--top-k") == 0)
            bad = parse_int(v, 0, INT_MAX, &p.top_k);
        else if (strcmp(a, "--top-p") == 0)
            bad = parse_float(v, 0.0f, 1.0f, &p.top_p);
        else if (strcmp(a, "--min-p") == 0)
            bad = parse_float(v, 0.0f, 1.0f, &p.min_p);
        else
            bad = -1;
        if (bad) {
            fprintf(stderr, "airlock engine run: bad value for %s: '%s'\n", a, v);
            return cli_usage(USAGE);
        }
    }
    if (!model)
        return cli_usage(USAGE);
    p.max_tokens = n < 0 ? 0 : n;
    if (n == 0)
        return 0;

    char err[512] = "";
    struct engine_model *m = NULL;
    struct engine_server *s = NULL;
    struct engine_job *job = NULL;
    log_set_level(LOG_ERROR);
    double t0 = now_ms();
    int rc = engine_model_open(model, threads, ctx, &m, err, sizeof(err));
    if (rc) {
        fprintf(stderr, "airlock engine run: %s\n", err);
        return 1;
    }
    double t_load = now_ms() - t0;
    char desc[512];
    engine_model_desc(m, desc, sizeof(desc));
    fprintf(stderr, "loaded %s in %.0f ms\n", desc, t_load);
    if (engine_server_new(m, 1, &s) != 0) {
        fprintf(stderr, "airlock engine run: cannot start the engine (out of memory?)\n");
        engine_model_close(m);
        return 1;
    }
    struct run_state st = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    struct engine_callbacks cb = {on_text, on_done, NULL};
    struct engine_msg msgs[2];
    size_t nm = 0;
    if (system)
        msgs[nm++] = (struct engine_msg){"system", system};
    msgs[nm++] = (struct engine_msg){"user", prompt};
    rc = engine_submit_ex(s, msgs, nm, chat ? NULL : prompt, &p, &cb, &st, &job, err, sizeof(err));
    if (rc) {
        fprintf(stderr, "airlock engine run: %s\n", err);
        engine_server_free(s);
        engine_model_close(m);
        return 1;
    }
    pthread_mutex_lock(&st.mu);
    while (!st.done)
        pthread_cond_wait(&st.cv, &st.mu);
    pthread_mutex_unlock(&st.mu);
    printf("\n");
    fflush(stdout);
    struct engine_job_stats js;
    int ok = st.res.status == ENGINE_OK;
    if (engine_job_stats(job, &js) == 0) {
        double pre = js.prefill_ms > 0 ? js.prompt_tokens / (js.prefill_ms / 1e3) : 0;
        int steps = js.completion_tokens > 1 ? js.completion_tokens - 1 : 0;
        double dec = js.decode_ms > 0 && steps ? steps / (js.decode_ms / 1e3) : 0;
        fprintf(stderr,
                "prompt: %d tokens, prefill %.1f tok/s (%.1f ms); generated %d tokens, decode "
                "%.1f tok/s (%.1f ms); finish: %s\n",
                js.prompt_tokens, pre, js.prefill_ms, js.completion_tokens, dec, js.decode_ms,
                st.res.finish_reason ? st.res.finish_reason : "?");
    }
    if (!ok)
        fprintf(stderr, "airlock engine run: %s\n", st.res.error);
    engine_job_release(job);
    engine_server_free(s);
    engine_model_close(m);
    return ok ? 0 : 1;
}

int cmd_engine(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "run") != 0)
        return cli_usage(USAGE);
    return engine_run(argc - 1, argv + 1);
}
