/* Upstream connections: the connector that makes them (a small state machine: TCP
 * connect, then the stages a peer asks for), the pool policy that keeps them (local
 * pool, shared overflow pool, max_conns_per_server and its wait queue), and the
 * events that watch them. Owned by one worker thread; nothing here knows what a
 * session or a request is: a connection in use has an owner pointer and callbacks. */
#ifndef SL_CONNECTOR_H
#define SL_CONNECTOR_H

#include <event2/event.h>
#include <event2/event_struct.h>
#include <stdint.h>

#include "config/config-t.h"
#include "core/list.h"
#include "net/transport.h"
#include "sluice/sluice.h"
#include "sluice_common.h"
#include "upstream/pool.h"
#include "upstream/waitq.h"

struct sl_peer_count;
struct sl_spool;
struct sl_upconn;

/* What the owner of a connection in use is told. Each runs from the connection's own
 * events, so the owner brackets its work there (it may release c inside). */
struct sl_upconn_cbs {
	/* The connection is ready for a request (every connect stage done). Not called
	 * when sl_upconn_get() returned 0: the caller goes on itself. */
	void (*ready)(void *owner);
	/* A connect stage failed: err (negative errno), why (a short reason for the log).
	 * The owner still holds c and releases it. */
	void (*failed)(void *owner, int err, const char *why);
	void (*readable)(void *owner);
	void (*writable)(void *owner);
};

/* Connect stages, in order; a peer skips those it does not ask for. */
enum sl_up_stage {
	SL_UP_TCP = 0,	  /* connect(2) in progress (to the peer, or to its proxy) */
	SL_UP_PROXY_SEND, /* writing "CONNECT target" to the proxy */
	SL_UP_PROXY_READ, /* reading the proxy's answer head */
	SL_UP_TLS,	  /* TLS handshake with the peer (through the tunnel, if any) */
	SL_UP_READY,	  /* usable: the owner's callbacks get the events */
};

/* One upstream connection, in use by an owner or idle in a pool. */
struct sl_upconn {
	struct sl_io io;
	struct event rev, wev;
	struct sl_connector *cn;
	void *owner; /* while in use; NULL while idle */
	const struct sl_upconn_cbs *cbs;
	struct sl_peer peer;
	uint64_t peer_hash;
	struct sl_peer_count *count; /* open connections to this peer, all workers (conn_count.h) */
	/* while idle in the local pool (pool.c) */
	struct sl_pool_key *key;
	struct sl_link kl;  /* the key's LIFO stack */
	struct sl_link lru; /* the group's LRU list */
	uint16_t group;
	uint64_t idle_since_ns;
	unsigned int requests;
	char *hs; /* while connecting through a proxy: the CONNECT request, then the answer */
	uint16_t hs_len, hs_off;
	const char *why; /* the failed stage, for the owner's log line */
	uint8_t stage;	 /* enum sl_up_stage */
	uint8_t reused;
	uint8_t rd_on; /* rev is added */
	uint8_t wr_on;
};

/* A request waiting for a connection slot (max_conns_per_server). */
struct sl_upwait {
	struct sl_waiter w;
	struct sl_peer_count *count; /* whose waiter count includes this one */
	void (*wake)(struct sl_upwait *q);
};

/* A worker's connector: its local pool, its wait queue, its events and counters. */
struct sl_connector {
	struct event_base *base;
	struct sl_worker_stats *st;
	struct sl_spool *spool; /* shared overflow pool, or NULL */
	struct sl_pool pool;
	struct sl_waitq waitq;
	uint8_t draining; /* idle connections go to the shared pool, not the local one */
	/* TLS sessions to resume, per peer identity (direct-mapped by peer hash) */
	struct {
		uint64_t hash;
		void *sess; /* SSL_SESSION */
	} sessions[64];
	struct {
		unsigned int ms;
		const struct timeval *tv;
		struct timeval raw;
	} ctv[16]; /* libevent common timeouts by duration (pool idle and queue timeouts) */
	unsigned int n_ctv;
};

void sl_connector_init(struct sl_connector *cn, struct event_base *base,
		       struct sl_worker_stats *st, struct sl_spool *spool);
/* Close every idle connection and free the pool (the worker exits). */
void sl_connector_destroy(struct sl_connector *cn);
/* A libevent common timeout for ms on this connector's base (cached). */
const struct timeval *sl_connector_tv(struct sl_connector *cn, unsigned int ms);

#define SL_UP_CONNECTING 1

/* A connection to peer for owner: a pooled one (unless fresh), else a new one.
 *   0                 *out is ready now (pooled, or connected at once): go on
 *   SL_UP_CONNECTING  *out is connecting: cbs->ready or cbs->failed follows
 *   -EBUSY            the peer is at u's max_conns_per_server: wait (sl_connector_wait)
 *   -errno            nothing was made */
int sl_upconn_get(struct sl_connector *cn, const struct sl_peer *peer, uint64_t hash,
		  const struct sl_conf_upstream *u, int fresh, void *owner,
		  const struct sl_upconn_cbs *cbs, struct sl_upconn **out);
/* The owner is done with c: back to a pool when reusable (and u's pool policy allows
 * it), else closed. Either way c is no longer the caller's. */
void sl_upconn_release(struct sl_upconn *c, int reusable, const struct sl_conf_upstream *u);
/* Close c now (it is in no pool). */
void sl_upconn_close(struct sl_upconn *c);

/* Read and write interest of a connection in use. */
static inline void sl_upconn_want_read(struct sl_upconn *c, int on)
{
	sl_ev_want(&c->rev, &c->rd_on, on);
}

static inline void sl_upconn_want_write(struct sl_upconn *c, int on)
{
	sl_ev_want(&c->wev, &c->wr_on, on);
}

static inline int sl_upconn_ready(const struct sl_upconn *c)
{
	return c->stage == SL_UP_READY;
}

/* Wait for a connection to the peer of hash (the caller keeps its own deadline);
 * q->wake runs when a connection came back or a slot freed, out of the queue: the
 * waiter tries sl_upconn_get() again and waits again if still at the limit. */
void sl_connector_wait(struct sl_connector *cn, struct sl_upwait *q, uint64_t hash,
		       void (*wake)(struct sl_upwait *q));
void sl_connector_unwait(struct sl_connector *cn, struct sl_upwait *q);
static inline int sl_upwait_queued(const struct sl_upwait *q)
{
	return q->w.queued;
}
/* Give waiting requests another go, oldest first (not re-entrant). */
void sl_connector_wake(struct sl_connector *cn);
/* Idle connections that other workers' waiting requests want go to the shared pool
 * (the worker tick, while anyone waits). */
void sl_connector_share_waited(struct sl_connector *cn);
/* Close the idle connections of upstream group name whose peer keep() refuses (a set
 * that lost servers). Only a group that is name's alone is pruned (names past the
 * pool's group table share its last group). */
void sl_connector_prune(struct sl_connector *cn, const char *name,
			int (*keep)(const struct sl_peer *p, void *arg), void *arg);
/* The worker drains: idle connections go to the shared pool, now and from now on. */
void sl_connector_drain(struct sl_connector *cn);
/* The client TLS context the connector uses for p's trust and identity (built on first
 * use, kept for the process's life), or NULL with err: active health checks use it too,
 * so that a check verifies exactly as a request does. Any thread. */
struct ssl_ctx_st *sl_connector_tls_ctx(const struct sl_peer *p, char *err, size_t errlen);

#endif
