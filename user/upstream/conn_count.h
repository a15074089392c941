/* Open upstream connections per peer identity, counted across all workers, for
 * pool.max_conns_per_server. A fixed table of atomics that is never freed, so a count
 * outlives any configuration snapshot and any connection that refers to it. */
#ifndef SL_CONN_COUNT_H
#define SL_CONN_COUNT_H

#include <stdatomic.h>
#include <stdint.h>

/* The counter for a peer hash (created on first use; any thread). */
atomic_uint *sl_conn_counter(uint64_t peer_hash);
/* Take a slot under max (0 = no limit): 1 taken, 0 at the limit. */
int sl_conn_count_take(atomic_uint *c, unsigned int max);
void sl_conn_count_drop(atomic_uint *c);

#endif
