/* fsync_cost.c -- what one group commit costs on this disk: wall time and machine CPU
 * time (all cores, from /proc/stat) per write + fdatasync, when the write grows the
 * file (append) and when it overwrites zeros written ahead (what the audit writer does).
 * The CPU figure is the kernel's I/O path, interrupts and the hypervisor exits a VM pays;
 * it is what a gateway doing one group commit per few requests spends per group.
 *
 *   fsync_cost [DIR] [N]      (default: $TMPDIR or /tmp, 2000 rounds)
 * Other load on the machine inflates the CPU figure: run it on a quiet machine. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"

static int run(const char *path, int prefill, int n, double *wall_us, double *cpu_us)
{
    static char rec[2600]; /* about a gateway request's two records */
    unsigned long long b0, b1;
    double t0, t1;
    int fd, i;

    memset(rec, 'x', sizeof(rec));
    fd = open(path, O_CREAT | O_TRUNC | O_RDWR, 0600);
    if (fd < 0)
        return -1;
    if (prefill) {
        char *z = calloc(1, 1 << 20);
        size_t need = (size_t)n * sizeof(rec) + (1 << 20);
        for (size_t done = 0; z && done < need; done += 1 << 20)
            if (write(fd, z, 1 << 20) != 1 << 20)
                break;
        free(z);
        if (fsync(fd) != 0)
            return -1;
    }
    b0 = busy_ticks();
    t0 = now_s();
    for (i = 0; i < n; i++) {
        if (pwrite(fd, rec, sizeof(rec), (off_t)i * (off_t)sizeof(rec)) != (ssize_t)sizeof(rec) ||
            fdatasync(fd) != 0) {
            close(fd);
            return -1;
        }
    }
    t1 = now_s();
    b1 = busy_ticks();
    close(fd);
    unlink(path);
    *wall_us = (t1 - t0) / n * 1e6;
    *cpu_us = (double)(b1 - b0) / (double)sysconf(_SC_CLK_TCK) / n * 1e6;
    return 0;
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    int n = argc > 2 ? atoi(argv[2]) : 2000;
    char path[4096];
    double w, c;

    if (n <= 0)
        n = 2000;
    snprintf(path, sizeof(path), "%s/airlock-fsync-cost.%d", dir, (int)getpid());
    if (run(path, 0, n, &w, &c) != 0) {
        perror(path);
        return 1;
    }
    printf("  append 2.6 KB + fdatasync:          %6.1f us wall, %6.1f us machine CPU per sync\n", w,
           c);
    if (run(path, 1, n, &w, &c) != 0) {
        perror(path);
        return 1;
    }
    printf("  overwrite zeros 2.6 KB + fdatasync: %6.1f us wall, %6.1f us machine CPU per sync\n", w,
           c);
    return 0;
}
