/* The cache lock: one writer per key fetches from the origin while the other requests
 * for that key wait (on any worker, without blocking it) and are handed the object as
 * soon as the writer has its head. At most one new writer per key at a time: a
 * failed writer passes the role to the oldest waiter, never to all of them; a writer
 * older than lock.age lets one more request through. Waiters bound their own wait
 * (lock.timeout) with their request timer and then go to the origin uncached. */
#ifndef SL_CACHE_LOCK_H
#define SL_CACHE_LOCK_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "cache/xwait.h"

struct sl_cobj;
struct sl_clock_ent;

/* What a waiter is told (sl_xwaiter.result). */
enum sl_clock_result {
	SL_CLOCK_WAIT = 0, /* (acquire) queued */
	SL_CLOCK_WRITER,   /* you write: fetch from the origin (acquire, or promoted) */
	SL_CLOCK_OBJ,	   /* the object is there: arg holds a reference to it */
	SL_CLOCK_PASS,	   /* the response is not shareable: go to the origin uncached */
};

/* A writer's claim; pass it back to done/fail/pass. */
struct sl_clock_ticket {
	struct sl_clock_ent *e;
	uint32_t gen;
};

struct sl_clock_shard {
	pthread_mutex_t mu;
	struct sl_clock_ent **b;
	uint32_t nb;
};

struct sl_clock_tab {
	unsigned int nshards;
	struct sl_clock_shard *sh;
	_Atomic uint64_t writers, waits, promoted, superseded, passes;
	atomic_uint live; /* entries */
};

int sl_clock_init(struct sl_clock_tab *t, unsigned int shards);
void sl_clock_destroy(struct sl_clock_tab *t);

/* Ask to write key. Returns SL_CLOCK_WRITER with *tk filled, SL_CLOCK_WAIT with w
 * queued (w->mbox and w->wake set by the caller), or -ENOMEM. A writer whose claim is
 * older than age_ns (0 = never) is superseded by this caller. now_ns may be older than
 * the claim (read on another worker before the shard lock): that writer is young. */
int sl_clock_acquire(struct sl_clock_tab *t, uint64_t hash, const char *key, size_t klen,
		     uint64_t now_ns, uint64_t age_ns, struct sl_xwaiter *w,
		     struct sl_clock_ticket *tk);

/* The writer has a response head worth sharing: every waiter gets a reference to o
 * (SL_CLOCK_OBJ) and the lock goes. Done by a superseded writer too: the first object
 * wins. */
void sl_clock_done(struct sl_clock_tab *t, struct sl_clock_ticket *tk, struct sl_cobj *o);
/* The writer failed (origin error, 5xx, timeout, its client gone before the head): the
 * oldest waiter becomes the writer (SL_CLOCK_WRITER, with a ticket through
 * sl_clock_ticket_of()); the others keep waiting. Ignored for a superseded ticket. */
void sl_clock_fail(struct sl_clock_tab *t, struct sl_clock_ticket *tk, uint64_t now_ns);
/* The response may not be shared (private, no-store, Set-Cookie, Vary: *): every
 * waiter is told SL_CLOCK_PASS and the lock goes. */
void sl_clock_pass(struct sl_clock_tab *t, struct sl_clock_ticket *tk);

/* A waiter woken with SL_CLOCK_WRITER: its ticket. */
static inline struct sl_clock_ticket sl_clock_ticket_of(const struct sl_xwaiter *w)
{
	struct sl_clock_ticket tk = {(struct sl_clock_ent *)w->arg, w->aux};
	return tk;
}

/* A waiter gives up (timeout, its client left): leaves the queue; if it had been
 * promoted or handed an object it did not run yet, that is undone (the writer role
 * passes on, the object reference is dropped). */
void sl_clock_leave(struct sl_clock_tab *t, struct sl_xwaiter *w, uint64_t now_ns);

#endif
