/* A wait queue: things waiting for a resource (a connection slot under
 * max_conns_per_server today; a cache entry being filled later), woken oldest first.
 * Owned by one worker thread: no locks. A waiter embeds struct sl_waiter and says in
 * its wake callback what to do; waking is not re-entrant. */
#ifndef SL_WAITQ_H
#define SL_WAITQ_H

#include "core/list.h"

struct sl_waiter {
	struct sl_link link;
	void (*wake)(struct sl_waiter *w);
	unsigned char queued;
};

struct sl_waitq {
	struct sl_list l; /* oldest first */
	int waking;
};

static inline int sl_waitq_empty(const struct sl_waitq *q)
{
	return sl_list_empty(&q->l);
}

static inline struct sl_waiter *sl_waitq_first(const struct sl_waitq *q)
{
	return sl_list_entry(q->l.head, struct sl_waiter, link);
}

static inline void sl_waitq_add(struct sl_waitq *q, struct sl_waiter *w)
{
	if (w->queued)
		return;
	w->queued = 1;
	sl_list_add_tail(&q->l, &w->link);
}

static inline void sl_waitq_remove(struct sl_waitq *q, struct sl_waiter *w)
{
	if (!w->queued)
		return;
	sl_list_del(&q->l, &w->link);
	w->queued = 0;
}

/* Wake up to budget waiters, oldest first; each leaves the queue before its callback
 * (which may queue it again, at the tail). A wake from inside a callback is ignored:
 * the running loop goes on. */
static inline void sl_waitq_wake(struct sl_waitq *q, unsigned int budget)
{
	if (q->waking)
		return;
	q->waking = 1;
	struct sl_waiter *w = sl_waitq_first(q);
	while (w && budget--) {
		struct sl_waiter *next = sl_list_entry(w->link.next, struct sl_waiter, link);
		sl_waitq_remove(q, w);
		w->wake(w);
		w = next;
	}
	q->waking = 0;
}

#endif
