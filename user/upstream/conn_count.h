/* Open upstream connections per peer identity, counted across all workers, for
 * pool.max_conns_per_server, and the requests waiting for one. A fixed table of
 * atomics that is never freed, so a count outlives any configuration snapshot and any
 * connection that refers to it. */
#ifndef SL_CONN_COUNT_H
#define SL_CONN_COUNT_H

#include <stdatomic.h>
#include <stdint.h>

struct sl_peer_count {
	_Atomic uint64_t key; /* peer hash | 1; 0 = free slot */
	atomic_uint conns;    /* open connections, in use or idle in any pool */
	atomic_uint waiters;  /* requests queued for a connection, all workers */
};

/* Requests queued anywhere: workers look for idle connections to give away only
 * while this is non-zero. */
extern atomic_uint sl_waiters_total;

/* The counter for a peer hash (created on first use; any thread). */
struct sl_peer_count *sl_conn_counter(uint64_t peer_hash);
/* Take a slot under max (0 = no limit): 1 taken, 0 at the limit. */
int sl_conn_count_take(struct sl_peer_count *c, unsigned int max);
void sl_conn_count_drop(struct sl_peer_count *c);
void sl_conn_wait_add(struct sl_peer_count *c, int delta);

#endif
