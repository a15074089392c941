/* Cross-worker wait lists: a request on one worker waits for something another worker
 * produces (a cache writer's response head, more body bytes of an object being filled).
 * A waiter sits in a list guarded by a mutex that lives as long as the zone; waking
 * moves it to its own worker's mailbox, and the worker runs it from its event loop.
 * Wakes are therefore never re-entrant and never run on a foreign thread. */
#ifndef SL_CACHE_XWAIT_H
#define SL_CACHE_XWAIT_H

#include <event2/event_struct.h>
#include <pthread.h>
#include <stdint.h>

struct sl_xmbox;
struct sl_xwlist;

enum sl_xw_where {
	SL_XW_NONE = 0,
	SL_XW_LIST, /* in *list, guarded by *mu */
	SL_XW_MBOX, /* posted to mbox, guarded by mbox->mu, not run yet */
};

struct sl_xwaiter {
	struct sl_xwaiter *prev, *next;
	struct sl_xmbox *mbox;	/* the owner worker's mailbox */
	pthread_mutex_t *mu;	/* guards the list while where == SL_XW_LIST */
	struct sl_xwlist *list; /* valid while where == SL_XW_LIST */
	void (*wake)(struct sl_xwaiter *w);
	int where;  /* enum sl_xw_where; changed under mu (LIST->MBOX) or mbox->mu */
	int result; /* set by the poster */
	void *arg;  /* set by the poster (a reference the waiter then owns) */
	uint32_t aux;
};

struct sl_xwlist {
	struct sl_xwaiter *head, *tail;
	unsigned int n;
};

/* One per worker; run by the worker's loop when the eventfd fires. */
struct sl_xmbox {
	pthread_mutex_t mu;
	struct sl_xwaiter *head, *tail;
	int efd;
	int ev_on;
	struct event ev;
	uint64_t kicks; /* eventfd writes (an empty mailbox got its first post) */
	uint64_t runs;	/* waiters run */
};

/* base may be NULL (tests drive sl_xmbox_run themselves). 0 or -errno. */
int sl_xmbox_init(struct sl_xmbox *m, struct event_base *base);
void sl_xmbox_destroy(struct sl_xmbox *m);
/* Run every posted waiter (owner thread); returns how many ran. */
unsigned int sl_xmbox_run(struct sl_xmbox *m);

/* Caller holds mu. mbox and wake are the waiter's own. */
void sl_xw_add(struct sl_xwlist *l, pthread_mutex_t *mu, struct sl_xwaiter *w);
/* Caller holds w->mu and w is in a list: take it out and post it with result/arg. */
void sl_xw_post(struct sl_xwaiter *w, int result, void *arg, uint32_t aux);
/* Caller holds the list's mu: post the oldest waiter, or return NULL. */
struct sl_xwaiter *sl_xw_post_first(struct sl_xwlist *l, int result, void *arg, uint32_t aux);
/* Owner thread: stop waiting, wherever the waiter is. Returns 1 if it had been posted
 * but not run (w->result / w->arg say with what: the caller releases arg), else 0. */
int sl_xw_cancel(struct sl_xwaiter *w);

#endif
