/*
 * bench_util: the small helpers the C benchmark programs share (floor.c,
 * rest_load.c): clocks and CPU pinning. Header-only: each benchmark is one
 * executable built from one .c file.
 */
#ifndef RN_BENCH_UTIL_H
#define RN_BENCH_UTIL_H

#include <sched.h>
#include <stdio.h>
#include <sys/time.h>
#include <time.h>

/* Monotonic seconds. */
static inline double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A getrusage() time in seconds. */
static inline double tv_s(struct timeval tv)
{
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

/* Pins the calling process to cpu (-1: not pinned); a failure only warns. */
static inline void pin(int cpu)
{
    if (cpu < 0)
        return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0)
        perror("sched_setaffinity (not pinned)");
}

#endif
