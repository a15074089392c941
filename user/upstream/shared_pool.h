/* The shared overflow pool: idle upstream connections that a worker's local pool had
 * no room for, or that a draining worker left behind. One mutex; the keeper (the
 * "pool-keeper" background service, a thread of its own) watches the parked sockets
 * (EOF, stray bytes, idle timeout) through the pool's own epoll set, so a worker taking a
 * connection only removes it from that set and watches it on its own loop from then on. */
#ifndef SL_SHARED_POOL_H
#define SL_SHARED_POOL_H

#include <stdatomic.h>
#include <stdint.h>

#include "sluice/sluice.h"

struct sl_peer_count;
struct sl_service;

#define SL_SPOOL_SWEEP_MS 500 /* idle timeouts are checked at least this often */

struct sl_spool;

struct sl_spool_stats {
	uint64_t parked, hits, evicted, closed_idle, timed_out;
	unsigned int idle;
};

/* capacity: most connections ever held (later limits are clamped to it). */
struct sl_spool *sl_spool_new(unsigned int capacity, unsigned int max_idle,
			      unsigned int idle_timeout_ms);
/* Close everything (after the keeper service stopped). */
void sl_spool_free(struct sl_spool *sp);
/* The keeper as a background service definition (sl_service_add() it, or run it on a
 * loop of one's own: start(base), tick() every interval_ms, stop()). */
void sl_spool_keeper(struct sl_spool *sp, struct sl_service *svc);
void sl_spool_set_limits(struct sl_spool *sp, unsigned int max_idle, unsigned int idle_timeout_ms);
/* Park fd (ownership passes to the pool in every case). When full, the oldest parked
 * connection makes room. 0 parked, -ENOSPC closed at once (max_idle 0). */
int sl_spool_put(struct sl_spool *sp, int fd, const struct sl_peer *peer, uint64_t hash,
		 unsigned int requests, struct sl_peer_count *count);
/* Newest parked connection to an identical peer: its fd (now the caller's, with its
 * connection count), or -ENOENT. count: dropped by the pool when it closes a parked
 * connection itself; may be NULL. */
int sl_spool_get(struct sl_spool *sp, const struct sl_peer *peer, uint64_t hash,
		 unsigned int *requests, struct sl_peer_count **count);
void sl_spool_get_stats(struct sl_spool *sp, struct sl_spool_stats *st);

#endif
