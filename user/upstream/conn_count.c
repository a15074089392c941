/* Cross-worker connection counts per peer (see conn_count.h). */
#include "upstream/conn_count.h"

#define SLOTS 8192 /* distinct peers; beyond that peers share one unlimited-in-practice slot */

static struct {
	_Atomic uint64_t key; /* peer hash | 1; 0 = free */
	atomic_uint count;
} table[SLOTS];

static atomic_uint overflow;

atomic_uint *sl_conn_counter(uint64_t peer_hash)
{
	uint64_t key = peer_hash | 1;
	for (unsigned int n = 0, i = (unsigned int)(key % SLOTS); n < SLOTS;
	     n++, i = (i + 1) % SLOTS) {
		uint64_t k = atomic_load_explicit(&table[i].key, memory_order_acquire);
		if (k == key)
			return &table[i].count;
		if (k == 0) {
			uint64_t zero = 0;
			if (atomic_compare_exchange_strong(&table[i].key, &zero, key) ||
			    zero == key)
				return &table[i].count;
		}
	}
	return &overflow;
}

int sl_conn_count_take(atomic_uint *c, unsigned int max)
{
	unsigned int v = atomic_load_explicit(c, memory_order_relaxed);
	do {
		if (max && v >= max)
			return 0;
	} while (!atomic_compare_exchange_weak_explicit(c, &v, v + 1, memory_order_relaxed,
							memory_order_relaxed));
	return 1;
}

void sl_conn_count_drop(atomic_uint *c)
{
	atomic_fetch_sub_explicit(c, 1, memory_order_relaxed);
}
