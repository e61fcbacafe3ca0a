/* clock.h -- what the C benchmarks measure time with: a monotonic clock, and the whole
 * machine's busy CPU time from /proc/stat (every core, all but idle and iowait; the
 * kernel's and the hypervisor's share a process does not see in its own times). */
#ifndef AIRLOCK_BENCH_CLOCK_H
#define AIRLOCK_BENCH_CLOCK_H

#include <stdio.h>
#include <time.h>

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* busy jiffies of all CPUs (everything but idle and iowait) */
static unsigned long long busy_ticks(void)
{
    unsigned long long v[8] = {0}, sum = 0;
    FILE *f = fopen("/proc/stat", "r");
    int i;

    if (!f)
        return 0;
    if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
               &v[4], &v[5], &v[6], &v[7]) != 8)
        v[0] = 0;
    fclose(f);
    for (i = 0; i < 8; i++)
        sum += v[i];
    return sum - v[3] - v[4];
}

#endif
