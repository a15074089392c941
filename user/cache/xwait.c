/* Cross-worker wait lists and per-worker mailboxes (see xwait.h). */
#include <errno.h>
#include <event2/event.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "cache/xwait.h"

static void list_del(struct sl_xwlist *l, struct sl_xwaiter *w)
{
	if (w->prev)
		w->prev->next = w->next;
	else
		l->head = w->next;
	if (w->next)
		w->next->prev = w->prev;
	else
		l->tail = w->prev;
	w->prev = w->next = NULL;
	l->n--;
}

static void on_mbox(evutil_socket_t fd, short what, void *arg)
{
	sl_xmbox_run(arg);
}

int sl_xmbox_init(struct sl_xmbox *m, struct event_base *base)
{
	m->head = m->tail = NULL;
	m->kicks = m->runs = 0;
	m->ev_on = 0;
	m->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (m->efd < 0)
		return -errno;
	pthread_mutex_init(&m->mu, NULL);
	if (base) {
		if (event_assign(&m->ev, base, m->efd, EV_READ | EV_PERSIST, on_mbox, m) < 0 ||
		    event_add(&m->ev, NULL) < 0) {
			close(m->efd);
			m->efd = -1;
			pthread_mutex_destroy(&m->mu);
			return -ENOMEM;
		}
		m->ev_on = 1;
	}
	return 0;
}

void sl_xmbox_destroy(struct sl_xmbox *m)
{
	if (m->efd < 0)
		return;
	if (m->ev_on)
		event_del(&m->ev);
	m->ev_on = 0;
	close(m->efd);
	m->efd = -1;
	pthread_mutex_destroy(&m->mu);
}

unsigned int sl_xmbox_run(struct sl_xmbox *m)
{
	uint64_t v;
	if (read(m->efd, &v, sizeof(v)) < 0) {
		/* EAGAIN: nothing signalled; posts may still be there (tests) */
	}
	unsigned int n = 0;
	/* one at a time: a wake may cancel another posted waiter of this worker */
	for (;;) {
		pthread_mutex_lock(&m->mu);
		struct sl_xwaiter *w = m->head;
		if (w) {
			m->head = w->next;
			if (!m->head)
				m->tail = NULL;
			w->next = w->prev = NULL;
			w->where = SL_XW_NONE;
			m->runs++;
		}
		pthread_mutex_unlock(&m->mu);
		if (!w)
			break;
		n++;
		w->wake(w);
	}
	return n;
}

void sl_xw_add(struct sl_xwlist *l, pthread_mutex_t *mu, struct sl_xwaiter *w)
{
	w->mu = mu;
	w->list = l;
	w->where = SL_XW_LIST;
	w->next = NULL;
	w->prev = l->tail;
	if (l->tail)
		l->tail->next = w;
	else
		l->head = w;
	l->tail = w;
	l->n++;
}

static void mbox_post(struct sl_xmbox *m, struct sl_xwaiter *w)
{
	pthread_mutex_lock(&m->mu);
	int kick = !m->head;
	w->where = SL_XW_MBOX;
	w->next = NULL;
	w->prev = m->tail;
	if (m->tail)
		m->tail->next = w;
	else
		m->head = w;
	m->tail = w;
	if (kick)
		m->kicks++;
	pthread_mutex_unlock(&m->mu);
	if (kick) {
		uint64_t one = 1;
		/* the counter cannot overflow in practice; EAGAIN would mean it is set */
		if (write(m->efd, &one, sizeof(one)) < 0) {
		}
	}
}

void sl_xw_post(struct sl_xwaiter *w, int result, void *arg, uint32_t aux)
{
	list_del(w->list, w);
	w->list = NULL;
	w->result = result;
	w->arg = arg;
	w->aux = aux;
	mbox_post(w->mbox, w);
}

struct sl_xwaiter *sl_xw_post_first(struct sl_xwlist *l, int result, void *arg, uint32_t aux)
{
	struct sl_xwaiter *w = l->head;
	if (w)
		sl_xw_post(w, result, arg, aux);
	return w;
}

int sl_xw_cancel(struct sl_xwaiter *w)
{
	if (w->where == SL_XW_NONE)
		return 0;
	/* LIST -> MBOX happens under w->mu only, MBOX -> NONE on this thread only: with mu
	 * held, where is stable. mu outlives any list it guards (zone lifetime). */
	pthread_mutex_t *mu = w->mu;
	pthread_mutex_lock(mu);
	int posted = 0;
	if (w->where == SL_XW_LIST) {
		list_del(w->list, w);
		w->list = NULL;
		w->where = SL_XW_NONE;
	} else if (w->where == SL_XW_MBOX) {
		struct sl_xmbox *m = w->mbox;
		pthread_mutex_lock(&m->mu);
		if (w->prev)
			w->prev->next = w->next;
		else
			m->head = w->next;
		if (w->next)
			w->next->prev = w->prev;
		else
			m->tail = w->prev;
		w->prev = w->next = NULL;
		w->where = SL_XW_NONE;
		pthread_mutex_unlock(&m->mu);
		posted = 1;
	}
	pthread_mutex_unlock(mu);
	return posted;
}
