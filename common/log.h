/* log.h -- one-line operational logging to stderr (or a sink set by main).
 *
 * Every module may log; only main.c and cli/ print to stdout. A line is
 * "2026-11-23T03:41:05.123Z LEVEL message". Thread-safe (one write(2) per line).
 * log_quiet(1) suppresses info lines (tests, CLI commands). */
#ifndef AIRLOCK_LOG_H
#define AIRLOCK_LOG_H

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_set_level(enum log_level min);

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
