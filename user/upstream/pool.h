/* Per-worker pool of idle upstream connections: per peer a LIFO stack (the warmest
 * connection is reused first, the coldest time out). Owned by one worker thread. */
#ifndef SL_POOL_H
#define SL_POOL_H

#include <event2/event_struct.h>
#include <stdint.h>
#include <sys/socket.h>

#include "sluice/sluice.h"

struct sl_session;
struct sl_worker;
struct sl_pool_key;

/* One upstream connection, in use by a session or idle in the pool. */
struct sl_upconn {
	int fd;
	struct event rev, wev;
	struct sl_worker *w;
	struct sl_session *s; /* owner while in use; NULL while idle */
	struct sl_peer peer;
	struct sl_pool_key *key; /* while idle */
	struct sl_upconn *prev, *next;
	unsigned int requests;
	uint8_t connecting;
	uint8_t reused;
	uint8_t rd_on; /* rev is added */
	uint8_t wr_on;
};

struct sl_pool_key {
	struct sockaddr_storage addr;
	socklen_t addrlen;
	uint32_t hash;
	unsigned int count;
	struct sl_upconn *top; /* newest idle first */
	struct sl_pool_key *next;
};

#define SL_POOL_BUCKETS 64

struct sl_pool {
	struct sl_pool_key *buckets[SL_POOL_BUCKETS];
	unsigned int n_idle;
	unsigned int max_idle; /* across all peers */
};

void sl_pool_init(struct sl_pool *p, unsigned int max_idle);
/* Park c (its session already detached). 0, or -ENOSPC: the caller closes it. */
int sl_pool_put(struct sl_pool *p, struct sl_upconn *c, unsigned int max_per_peer);
/* Newest idle connection to peer, removed from the pool, or NULL. */
struct sl_upconn *sl_pool_get(struct sl_pool *p, const struct sl_peer *peer);
/* Take an idle connection out (closed by the peer, timed out). */
void sl_pool_remove(struct sl_pool *p, struct sl_upconn *c);
/* Every idle connection, for shutdown: calls fn on each after removing it. */
void sl_pool_drain(struct sl_pool *p, void (*fn)(struct sl_upconn *c));

#endif
