/* Internals shared by lb/set.c and lb/lb.c. */
#ifndef SL_LB_INT_H
#define SL_LB_INT_H

#include <stdint.h>

struct sl_upset;

/* A 64-bit finalizer (murmur3's): spreads FNV's low bits for table positions. */
static inline uint64_t sl_lb_mix(uint64_t h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ull;
	h ^= h >> 33;
	return h;
}

/* Balancer tables of a set: schedule, maglev table, ketama ring. 0 or -ENOMEM. */
int sl_lb_tables(struct sl_upset *s);

#endif
