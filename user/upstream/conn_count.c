/* Cross-worker connection counts per peer (see conn_count.h). */
#include "upstream/conn_count.h"

#define SLOTS 8192 /* distinct peers; beyond that peers share one slot */

static struct sl_peer_count table[SLOTS];
static struct sl_peer_count overflow;
atomic_uint sl_waiters_total;

struct sl_peer_count *sl_conn_counter(uint64_t peer_hash)
{
	uint64_t key = peer_hash | 1;
	for (unsigned int n = 0, i = (unsigned int)(key % SLOTS); n < SLOTS;
	     n++, i = (i + 1) % SLOTS) {
		uint64_t k = atomic_load_explicit(&table[i].key, memory_order_acquire);
		if (k == key)
			return &table[i];
		if (k == 0) {
			uint64_t zero = 0;
			if (atomic_compare_exchange_strong(&table[i].key, &zero, key) ||
			    zero == key)
				return &table[i];
		}
	}
	return &overflow;
}

int sl_conn_count_take(struct sl_peer_count *c, unsigned int max)
{
	unsigned int v = atomic_load_explicit(&c->conns, memory_order_relaxed);
	do {
		if (max && v >= max)
			return 0;
	} while (!atomic_compare_exchange_weak_explicit(&c->conns, &v, v + 1, memory_order_relaxed,
							memory_order_relaxed));
	return 1;
}

void sl_conn_count_drop(struct sl_peer_count *c)
{
	atomic_fetch_sub_explicit(&c->conns, 1, memory_order_relaxed);
}

void sl_conn_wait_add(struct sl_peer_count *c, int delta)
{
	atomic_fetch_add_explicit(&c->waiters, (unsigned int)delta, memory_order_relaxed);
	atomic_fetch_add_explicit(&sl_waiters_total, (unsigned int)delta, memory_order_relaxed);
}
