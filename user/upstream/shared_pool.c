/* Shared overflow pool of idle upstream connections (see shared_pool.h).
 *
 * Slots live in one array; epoll data carries (generation << 32 | slot), so an event
 * for a connection a worker already took is recognised as stale and ignored. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "core/clock.h"
#include "core/log.h"
#include "upstream/conn_count.h"
#include "upstream/shared_pool.h"
#include "sluice/service.h"

#define NBUCKETS 1024
#define NONE UINT32_MAX

struct slot {
	int fd;
	uint32_t gen;
	uint8_t used;
	unsigned int requests;
	struct sl_peer_count *count;
	uint64_t hash;
	uint64_t since_ns;
	struct sl_peer peer;
	uint32_t b_prev, b_next;     /* bucket chain, newest first */
	uint32_t lru_prev, lru_next; /* all parked, newest first */
};

struct sl_spool {
	pthread_mutex_t mu;
	struct slot *slots;
	uint32_t cap;
	uint32_t free_head;   /* freed slots chained through b_next */
	uint32_t next_unused; /* slots from here on were never used */
	uint32_t buckets[NBUCKETS];
	uint32_t lru_head, lru_tail;
	unsigned int n, max_idle;
	uint64_t idle_timeout_ns;
	struct sl_spool_stats st;
	int epfd;
	struct event *kev; /* the keeper's watch on epfd, on the keeper service's loop */
};

/* unlink slot i from its bucket, the LRU and epoll; the caller owns the fd after */
static void unlink_slot(struct sl_spool *sp, uint32_t i)
{
	struct slot *s = &sp->slots[i];
	uint32_t b = (uint32_t)(s->hash % NBUCKETS);
	if (s->b_prev != NONE)
		sp->slots[s->b_prev].b_next = s->b_next;
	else
		sp->buckets[b] = s->b_next;
	if (s->b_next != NONE)
		sp->slots[s->b_next].b_prev = s->b_prev;
	if (s->lru_prev != NONE)
		sp->slots[s->lru_prev].lru_next = s->lru_next;
	else
		sp->lru_head = s->lru_next;
	if (s->lru_next != NONE)
		sp->slots[s->lru_next].lru_prev = s->lru_prev;
	else
		sp->lru_tail = s->lru_prev;
	epoll_ctl(sp->epfd, EPOLL_CTL_DEL, s->fd, NULL);
	s->used = 0;
	s->gen++;
	s->b_next = sp->free_head;
	sp->free_head = i;
	sp->n--;
}

static void close_slot(struct sl_spool *sp, uint32_t i)
{
	int fd = sp->slots[i].fd;
	struct sl_peer_count *count = sp->slots[i].count;
	unlink_slot(sp, i);
	close(fd);
	if (count)
		sl_conn_count_drop(count);
}

/* Idle timeouts: the oldest parked connections first. With sp->mu held. */
static void sweep_locked(struct sl_spool *sp)
{
	uint64_t now = sl_mono_ns();
	while (sp->lru_tail != NONE && now - sp->slots[sp->lru_tail].since_ns > sp->idle_timeout_ns) {
		close_slot(sp, sp->lru_tail);
		sp->st.timed_out++;
	}
}

/* The keeper (the "pool-keeper" service's thread): a parked socket became readable. */
static void keeper_events(evutil_socket_t fd, short what, void *arg)
{
	struct sl_spool *sp = arg;
	struct epoll_event ev[64];
	int n;
	do {
		n = epoll_wait(sp->epfd, ev, 64, 0);
		pthread_mutex_lock(&sp->mu);
		for (int k = 0; k < n; k++) {
			uint32_t i = (uint32_t)ev[k].data.u64,
				 gen = (uint32_t)(ev[k].data.u64 >> 32);
			if (i < sp->cap && sp->slots[i].used && sp->slots[i].gen == gen) {
				/* EOF, error or bytes nobody asked for: never reusable */
				close_slot(sp, i);
				sp->st.closed_idle++;
			}
		}
		sweep_locked(sp);
		pthread_mutex_unlock(&sp->mu);
	} while (n == 64);
}

static void keeper_tick(void *arg)
{
	struct sl_spool *sp = arg;
	pthread_mutex_lock(&sp->mu);
	sweep_locked(sp);
	pthread_mutex_unlock(&sp->mu);
}

/* The epoll set is itself pollable: the keeper's loop waits on it like on a socket. */
static int keeper_start(struct event_base *base, void *arg)
{
	struct sl_spool *sp = arg;
	sp->kev = event_new(base, sp->epfd, EV_READ | EV_PERSIST, keeper_events, sp);
	if (!sp->kev || event_add(sp->kev, NULL)) {
		if (sp->kev)
			event_free(sp->kev);
		sp->kev = NULL;
		return -ENOMEM;
	}
	return 0;
}

static void keeper_stop(void *arg)
{
	struct sl_spool *sp = arg;
	if (sp->kev)
		event_free(sp->kev);
	sp->kev = NULL;
}

void sl_spool_keeper(struct sl_spool *sp, struct sl_service *svc)
{
	memset(svc, 0, sizeof(*svc));
	svc->name = "pool-keeper";
	svc->own_thread = 1;
	svc->interval_ms = SL_SPOOL_SWEEP_MS;
	svc->start = keeper_start;
	svc->tick = keeper_tick;
	svc->stop = keeper_stop;
	svc->data = sp;
}

struct sl_spool *sl_spool_new(unsigned int capacity, unsigned int max_idle,
			      unsigned int idle_timeout_ms)
{
	struct sl_spool *sp = calloc(1, sizeof(*sp));
	if (!sp)
		return NULL;
	if (capacity < 1)
		capacity = 1;
	sp->slots = calloc(capacity, sizeof(*sp->slots));
	sp->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (!sp->slots || sp->epfd < 0)
		goto fail;
	sp->cap = capacity;
	/* slots are handed out in order and recycled through free_head, so untouched
	 * capacity costs no memory */
	sp->free_head = NONE;
	sp->next_unused = 0;
	for (uint32_t b = 0; b < NBUCKETS; b++)
		sp->buckets[b] = NONE;
	sp->lru_head = sp->lru_tail = NONE;
	pthread_mutex_init(&sp->mu, NULL);
	sl_spool_set_limits(sp, max_idle, idle_timeout_ms);
	return sp;
fail:
	if (sp->epfd >= 0)
		close(sp->epfd);
	free(sp->slots);
	free(sp);
	return NULL;
}

void sl_spool_set_limits(struct sl_spool *sp, unsigned int max_idle, unsigned int idle_timeout_ms)
{
	pthread_mutex_lock(&sp->mu);
	sp->max_idle = max_idle < sp->cap ? max_idle : sp->cap;
	sp->idle_timeout_ns = (uint64_t)idle_timeout_ms * 1000000ull;
	while (sp->n > sp->max_idle && sp->lru_tail != NONE) {
		close_slot(sp, sp->lru_tail);
		sp->st.evicted++;
	}
	pthread_mutex_unlock(&sp->mu);
}

void sl_spool_free(struct sl_spool *sp)
{
	if (!sp)
		return;
	while (sp->lru_head != NONE)
		close_slot(sp, sp->lru_head);
	close(sp->epfd);
	pthread_mutex_destroy(&sp->mu);
	free(sp->slots);
	free(sp);
}

int sl_spool_put(struct sl_spool *sp, int fd, const struct sl_peer *peer, uint64_t hash,
		 unsigned int requests, struct sl_peer_count *count)
{
	pthread_mutex_lock(&sp->mu);
	if (!sp->max_idle) {
		pthread_mutex_unlock(&sp->mu);
		close(fd);
		if (count)
			sl_conn_count_drop(count);
		return -ENOSPC;
	}
	if (sp->n >= sp->max_idle || (sp->free_head == NONE && sp->next_unused == sp->cap)) {
		close_slot(sp, sp->lru_tail);
		sp->st.evicted++;
	}
	uint32_t i;
	if (sp->free_head != NONE) {
		i = sp->free_head;
		sp->free_head = sp->slots[i].b_next;
	} else {
		i = sp->next_unused++;
	}
	struct slot *s = &sp->slots[i];
	s->fd = fd;
	s->used = 1;
	s->requests = requests;
	s->count = count;
	s->hash = hash;
	s->since_ns = sl_mono_ns();
	s->peer = *peer;
	uint32_t b = (uint32_t)(hash % NBUCKETS);
	s->b_prev = NONE;
	s->b_next = sp->buckets[b];
	if (s->b_next != NONE)
		sp->slots[s->b_next].b_prev = i;
	sp->buckets[b] = i;
	s->lru_prev = NONE;
	s->lru_next = sp->lru_head;
	if (s->lru_next != NONE)
		sp->slots[s->lru_next].lru_prev = i;
	sp->lru_head = i;
	if (sp->lru_tail == NONE)
		sp->lru_tail = i;
	sp->n++;
	sp->st.parked++;
	struct epoll_event e = {.events = EPOLLIN | EPOLLRDHUP,
				.data.u64 = ((uint64_t)s->gen << 32) | i};
	if (epoll_ctl(sp->epfd, EPOLL_CTL_ADD, fd, &e)) {
		/* saved first: close_slot's own epoll_ctl and close() overwrite errno */
		int err = -errno;
		close_slot(sp, i);
		pthread_mutex_unlock(&sp->mu);
		return err;
	}
	pthread_mutex_unlock(&sp->mu);
	return 0;
}

int sl_spool_get(struct sl_spool *sp, const struct sl_peer *peer, uint64_t hash,
		 unsigned int *requests, struct sl_peer_count **count)
{
	int fd = -ENOENT;
	pthread_mutex_lock(&sp->mu);
	for (uint32_t i = sp->buckets[hash % NBUCKETS]; i != NONE; i = sp->slots[i].b_next) {
		struct slot *s = &sp->slots[i];
		if (s->hash != hash || !sl_peer_same(&s->peer, peer))
			continue;
		fd = s->fd;
		*requests = s->requests;
		if (count)
			*count = s->count;
		unlink_slot(sp, i);
		sp->st.hits++;
		break;
	}
	pthread_mutex_unlock(&sp->mu);
	return fd;
}

void sl_spool_get_stats(struct sl_spool *sp, struct sl_spool_stats *st)
{
	pthread_mutex_lock(&sp->mu);
	*st = sp->st;
	st->idle = sp->n;
	pthread_mutex_unlock(&sp->mu);
}
