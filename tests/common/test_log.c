/* test_log.c -- common/log: one line per message, UTC timestamp, level, filtering. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "harness.h"

/* run fn with stderr redirected to a temp file; return what it wrote (malloc'd) */
static char *capture(void (*fn)(void))
{
    char path[] = "/tmp/airlock-log-XXXXXX";
    int fd = mkstemp(path), saved = dup(STDERR_FILENO);
    char *buf = calloc(1, 4096);
    ssize_t n;

    if (fd < 0 || saved < 0 || !buf)
        return buf;
    dup2(fd, STDERR_FILENO);
    fn();
    dup2(saved, STDERR_FILENO);
    close(saved);
    lseek(fd, 0, SEEK_SET);
    n = read(fd, buf, 4095);
    if (n < 0)
        n = 0;
    buf[n] = '\0';
    close(fd);
    unlink(path);
    return buf;
}

static void emit_two(void)
{
    log_set_level(LOG_INFO);
    log_info("hello %d", 42);
    log_debug("hidden");
    log_error("bad %s", "thing");
}

static void test_format_and_filter(void)
{
    char *out = capture(emit_two);
    char *second;

    REQUIRE(out);
    /* 2026-11-23T03:41:05.123Z INFO hello 42 */
    CHECK(strlen(out) > 25 && out[4] == '-' && out[10] == 'T' && out[23] == 'Z');
    CHECK(strstr(out, " INFO hello 42\n") != NULL);
    CHECK(strstr(out, "hidden") == NULL);
    second = strchr(out, '\n');
    CHECK(second && strstr(second + 1, " ERROR bad thing\n") == second + 1 + 24);
    free(out);
}

static void emit_long(void)
{
    char big[3000];

    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    log_warn("%s", big);
}

static void test_long_line_truncated_one_line(void)
{
    char *out = capture(emit_long);

    REQUIRE(out);
    CHECK(strlen(out) <= 1024);
    CHECK(out[strlen(out) - 1] == '\n');
    CHECK(strchr(out, '\n') == out + strlen(out) - 1);
    free(out);
}

int main(void)
{
    RUN(test_format_and_filter);
    RUN(test_long_line_truncated_one_line);
    return harness_done();
}
