/* Monotonic time for timers, heartbeats and pool ages (CLOCK_MONOTONIC, the clock
 * bpf_ktime_get_ns() reads, so BPF and user space compare the same numbers). */
#ifndef SL_CLOCK_H
#define SL_CLOCK_H

#include <stdint.h>
#include <sys/time.h>
#include <time.h>

static inline uint64_t sl_mono_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

/* Tick-resolution (a few ms), cheaper: for ages where that is plenty. */
static inline uint64_t sl_mono_coarse_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static inline uint64_t sl_tv_ns(const struct timeval *tv)
{
	return (uint64_t)tv->tv_sec * 1000000000ull + (uint64_t)tv->tv_usec * 1000ull;
}

#endif
