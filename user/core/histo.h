/* Latency histograms with fixed buckets, written by one thread (a worker) with plain
 * relaxed stores and read by another (the admin API) with relaxed loads: no lock and
 * no read-modify-write on the request path. */
#ifndef SL_HISTO_H
#define SL_HISTO_H

#include <stdint.h>

/* Upper bounds in microseconds (Prometheus "le"), the last bucket is +Inf. */
#define SL_HISTO_BOUNDS                                                                            \
	{500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000,     \
	 5000000, 10000000}
#define SL_HISTO_N 15 /* 14 bounds + Inf */

struct sl_histo {
	uint64_t b[SL_HISTO_N]; /* per bucket, not cumulative */
	uint64_t count;
	uint64_t sum_ns;
};

static inline unsigned int sl_histo_bucket(uint64_t ns)
{
	static const uint32_t le_us[SL_HISTO_N - 1] = SL_HISTO_BOUNDS;
	uint64_t us = ns / 1000;
	unsigned int i = 0;
	while (i < SL_HISTO_N - 1 && us > le_us[i])
		i++;
	return i;
}

/* Single writer: load + store, never an atomic add. */
static inline void sl_histo_add(struct sl_histo *h, uint64_t ns)
{
	unsigned int i = sl_histo_bucket(ns);
	__atomic_store_n(&h->b[i], __atomic_load_n(&h->b[i], __ATOMIC_RELAXED) + 1,
			 __ATOMIC_RELAXED);
	__atomic_store_n(&h->sum_ns, __atomic_load_n(&h->sum_ns, __ATOMIC_RELAXED) + ns,
			 __ATOMIC_RELAXED);
	__atomic_store_n(&h->count, __atomic_load_n(&h->count, __ATOMIC_RELAXED) + 1,
			 __ATOMIC_RELAXED);
}

#endif
