/* Per-worker pool of idle upstream connections. Touched only by its worker thread:
 * no locks, no atomics.
 *
 * Per peer identity (sl_peer_hash/sl_peer_same) a LIFO stack: the warmest connection
 * is reused first and the coldest ones age out. Connections are grouped by upstream;
 * each group is bounded (max_idle_per_worker) with LRU eviction across its peers, and
 * what a full group evicts goes to the shared overflow pool (shared_pool.h). */
#ifndef SL_POOL_H
#define SL_POOL_H

#include <stdint.h>

#include "core/list.h"
#include "sluice/sluice.h"

struct sl_upconn; /* upstream/connector.h */

struct sl_pool_key {
	struct sl_peer peer;
	uint64_t hash;
	unsigned int count;
	struct sl_list stack; /* idle connections (sl_upconn.kl), newest first */
	struct sl_pool_key *next;
};

#define SL_POOL_BUCKETS 256
#define SL_POOL_GROUPS 64

struct sl_pool_group {
	char name[64]; /* upstream name (truncated); "" = peers chosen outside any upstream */
	uint64_t hash; /* of the whole name */
	size_t len;
	unsigned int n_idle;
	struct sl_list lru; /* idle connections (sl_upconn.lru), most recently parked first */
};

struct sl_pool {
	struct sl_pool_key *buckets[SL_POOL_BUCKETS];
	struct sl_pool_group groups[SL_POOL_GROUPS];
	unsigned int n_groups;
	unsigned int n_idle;
	unsigned int n_keys;
};

void sl_pool_init(struct sl_pool *p);
/* Group index for an upstream name (created on first use); the last group is shared
 * by names beyond SL_POOL_GROUPS. */
unsigned int sl_pool_group(struct sl_pool *p, const char *name);
/* Park c (its owner already detached) in group g bounded by max_idle. Returns 0 and,
 * when the group overflowed, its least recently used connection in *evicted (already
 * out of the pool: the caller hands it to the shared pool or closes it); -ENOSPC when
 * it cannot be parked at all (max_idle 0): the caller disposes of c. */
int sl_pool_put(struct sl_pool *p, struct sl_upconn *c, unsigned int g, unsigned int max_idle,
		struct sl_upconn **evicted);
/* Newest idle connection to an identical peer, out of the pool, or NULL. */
struct sl_upconn *sl_pool_get(struct sl_pool *p, const struct sl_peer *peer, uint64_t hash);
/* Take an idle connection out (closed by the peer, timed out). */
void sl_pool_remove(struct sl_pool *p, struct sl_upconn *c);
/* Every idle connection, oldest first per group, for shutdown or handing over. */
void sl_pool_drain(struct sl_pool *p, void (*fn)(struct sl_upconn *c, void *arg), void *arg);
/* Free the key table (after draining). */
void sl_pool_destroy(struct sl_pool *p);

#endif
