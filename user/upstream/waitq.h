/* A wait queue: things waiting for a resource (a connection slot under
 * max_conns_per_server today; a cache entry being filled later), woken oldest first.
 * Owned by one worker thread: no locks. A waiter embeds struct sl_waiter and says in
 * its wake callback what to do; waking is not re-entrant. */
#ifndef SL_WAITQ_H
#define SL_WAITQ_H

#include <stddef.h>

struct sl_waiter {
	struct sl_waiter *prev, *next;
	void (*wake)(struct sl_waiter *w);
	unsigned char queued;
};

struct sl_waitq {
	struct sl_waiter *head, *tail;
	int waking;
};

static inline int sl_waitq_empty(const struct sl_waitq *q)
{
	return !q->head;
}

static inline void sl_waitq_add(struct sl_waitq *q, struct sl_waiter *w)
{
	if (w->queued)
		return;
	w->queued = 1;
	w->next = NULL;
	w->prev = q->tail;
	if (q->tail)
		q->tail->next = w;
	else
		q->head = w;
	q->tail = w;
}

static inline void sl_waitq_remove(struct sl_waitq *q, struct sl_waiter *w)
{
	if (!w->queued)
		return;
	if (w->prev)
		w->prev->next = w->next;
	else
		q->head = w->next;
	if (w->next)
		w->next->prev = w->prev;
	else
		q->tail = w->prev;
	w->prev = w->next = NULL;
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
	struct sl_waiter *w = q->head;
	while (w && budget--) {
		struct sl_waiter *next = w->next;
		sl_waitq_remove(q, w);
		w->wake(w);
		w = next;
	}
	q->waking = 0;
}

#endif
