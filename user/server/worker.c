/* Worker threads: listening sockets, accept, config pick-up, draining. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/log.h"
#include "config/config.h"
#include "server/worker.h"
#include "upstream/conn_count.h"

static void ms_tv(struct timeval *tv, unsigned int ms)
{
	tv->tv_sec = ms / 1000;
	tv->tv_usec = (ms % 1000) * 1000;
}

static const struct timeval *common_tv(struct event_base *b, struct timeval *tv, unsigned int ms)
{
	ms_tv(tv, ms);
	const struct timeval *c = event_base_init_common_timeout(b, tv);
	return c ? c : tv;
}

static void apply_timeouts(struct sl_worker *w, const struct sl_conf *c)
{
	const struct sl_conf_timeouts *t = &c->timeouts;
	w->ct_header = common_tv(w->base, &w->tv_header, t->client_header);
	w->ct_keepalive = common_tv(w->base, &w->tv_keepalive, t->client_keepalive);
	w->ct_body = common_tv(w->base, &w->tv_body, t->client_body);
	w->ct_connect = common_tv(w->base, &w->tv_connect, t->upstream_connect);
	w->ct_resp = common_tv(w->base, &w->tv_resp, t->upstream_response_header);
	w->ct_upidle = common_tv(w->base, &w->tv_upidle, t->upstream_idle);
}

struct sl_conf_hold *sl_worker_conf_get(struct sl_worker *w)
{
	w->hold->users++;
	return w->hold;
}

void sl_worker_conf_put(struct sl_worker *w, struct sl_conf_hold *h)
{
	if (--h->users || h == w->hold)
		return;
	struct sl_conf_hold **pp = &w->old_hold;
	while (*pp && *pp != h)
		pp = &(*pp)->next;
	if (*pp)
		*pp = h->next;
	sl_conf_put(h->conf);
	free(h);
}

static void accept_check_cap(struct sl_worker *w);
static void sync_listeners(struct sl_worker *w, const struct sl_conf *c);

/* This worker's share of limits.max_connections, published where steering reads it so
 * that it sends new connections to workers with room (bpf.max_conns_per_worker, when
 * lower, still applies to steering alone). */
static void apply_conn_cap(struct sl_worker *w, const struct sl_conf *c)
{
	unsigned int total =
	    c->limits.max_connections ? c->limits.max_connections : w->d->auto_max_conns;
	w->max_conns = total ? sl_worker_conn_share(total, w->d->n_workers, w->id) : 0;
	unsigned int steer = c->bpf.max_conns_per_worker;
	if (!steer || (w->max_conns && w->max_conns < steer))
		steer = w->max_conns;
	__atomic_store_n(&w->state->max_conns, steer, __ATOMIC_RELAXED);
	accept_check_cap(w);
}

size_t sl_worker_big_size(const struct sl_conf *c)
{
	return c->limits.max_header_bytes + 8192; /* slack: the body bytes read with a head */
}

/*
 * Publication. Every reference to a snapshot has exactly one owner at any instant: the
 * daemon (d->conf), a worker's pending slot, or a worker's hold. A reference changes
 * owner only through an atomic exchange of the slot, which reads the pointer and takes
 * over its reference in one indivisible step, so no thread ever holds a pointer it owns
 * no reference for. (Loading d->conf and then calling sl_conf_get() left a window in
 * which two reloads could free the snapshot under the worker.) The publisher releases a
 * snapshot a worker never took only after swapping it out of the slot, when the worker
 * can no longer reach it.
 */
void sl_worker_publish(struct sl_worker *w, struct sl_conf *c)
{
	sl_conf_get(c);
	/* acq_rel: the worker's acquire sees the snapshot fully built */
	struct sl_conf *old = atomic_exchange_explicit(&w->pending, c, memory_order_acq_rel);
	if (old)
		sl_conf_put(old);
}

struct sl_conf *sl_worker_take_conf(struct sl_worker *w)
{
	if (!atomic_load_explicit(&w->pending, memory_order_relaxed))
		return NULL; /* the common case on every poke: no RMW */
	return atomic_exchange_explicit(&w->pending, NULL, memory_order_acq_rel);
}

/* Move this worker to the snapshot published for it, if any. */
static void pick_up_conf(struct sl_worker *w)
{
	struct sl_conf *c = sl_worker_take_conf(w);
	if (!c)
		return;
	struct sl_conf_hold *h = calloc(1, sizeof(*h));
	if (!h) {
		/* give it back for the next poke, unless a newer one arrived meanwhile */
		struct sl_conf *none = NULL;
		if (!atomic_compare_exchange_strong_explicit(
			&w->pending, &none, c, memory_order_acq_rel, memory_order_acquire))
			sl_conf_put(c);
		return;
	}
	h->conf = c; /* the reference taken from pending */
	struct sl_conf_hold *old = w->hold;
	w->hold = h;
	apply_timeouts(w, c);
	/* heads up to max_header_bytes must fit one buffer: a reload that raises the limit
	 * raises the big class with it (requests already in a buffer keep theirs) */
	sl_mem_grow(&w->mem, SL_MEM_BIG, sl_worker_big_size(c));
	apply_conn_cap(w, c);
	sync_listeners(w, c);
	if (!old)
		return;
	if (old->users == 0) {
		sl_conf_put(old->conf);
		free(old);
	} else {
		old->next = w->old_hold;
		w->old_hold = old;
	}
}

int sl_listen_open(const struct sockaddr *sa, socklen_t len, const char *name)
{
	int one = 1;
	int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
		goto fail;
	if (sa->sa_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, sa, len) < 0)
		goto fail;
	if (listen(fd, 4096) < 0)
		goto fail;
	return fd;
fail:;
	int err = -errno;
	sl_log(SL_LOG_ERROR, "msg=\"cannot listen\" address=%s err=\"%s\"", name, strerror(-err));
	close(fd);
	return err;
}

void sl_listen_set(struct sl_worker *w, unsigned int slot, int fd)
{
	w->lsn[slot].index = slot;
	w->lsn[slot].w = w;
	w->lsn[slot].armed = 0;
	w->lsn[slot].users = 0;
	__atomic_store_n(&w->lsn[slot].fd, fd, __ATOMIC_SEQ_CST);
	if (slot >= w->n_lsn)
		__atomic_store_n(&w->n_lsn, slot + 1, __ATOMIC_RELEASE);
}

int sl_worker_listen(struct sl_worker *w, const struct sl_conf *conf)
{
	for (unsigned int i = 0; i < conf->n_listeners; i++) {
		const struct sl_conf_listener *l = &conf->listeners[i];
		if (w->lsn[i].fd >= 0)
			continue; /* handed over by the daemon this one replaces */
		int fd = sl_listen_open((const struct sockaddr *)&l->addr, l->addrlen, l->address);
		if (fd < 0)
			return fd;
		sl_listen_set(w, i, fd);
	}
	return 0;
}

unsigned int sl_worker_auto_max_conns(uint64_t nofile, unsigned int n_workers,
				      unsigned int n_listeners)
{
	/* stdio, logs, signalfd, admin, shared pool, BPF maps and programs: 64; per worker
	 * its epoll, eventfd and listening sockets */
	uint64_t reserve = 64 + (uint64_t)n_workers * (n_listeners + 2);
	uint64_t n = nofile > reserve ? (nofile - reserve) / 2 : 0;
	if (n > 10000000)
		n = 10000000;
	return n > n_workers ? (unsigned int)n : n_workers;
}

unsigned int sl_worker_conn_share(unsigned int total, unsigned int n_workers, unsigned int i)
{
	unsigned int share = total / n_workers + (i < total % n_workers);
	return share ? share : 1;
}

static void listen_events(struct sl_worker *w, int on)
{
	for (unsigned int i = 0; i < w->n_lsn; i++) {
		if (w->lsn[i].fd < 0 || !w->lsn[i].armed)
			continue;
		if (on)
			event_add(&w->lsn[i].ev, NULL); /* assigned at start: cannot fail */
		else
			event_del(&w->lsn[i].ev);
	}
}

static void accept_pause(struct sl_worker *w, unsigned int why)
{
	if (!w->accept_off)
		listen_events(w, 0);
	w->accept_off |= why;
}

static void accept_resume(struct sl_worker *w, unsigned int why)
{
	if (!(w->accept_off & why))
		return;
	w->accept_off &= ~why;
	if (!w->accept_off && !w->draining)
		listen_events(w, 1);
}

/* Resume accepting once below the cap (a connection closed, or a reload raised it). */
static void accept_check_cap(struct sl_worker *w)
{
	if ((w->accept_off & SL_ACCEPT_FULL) && w->n_sessions < w->max_conns)
		accept_resume(w, SL_ACCEPT_FULL);
}

static void backoff_cb(evutil_socket_t fd, short what, void *arg)
{
	accept_resume(arg, SL_ACCEPT_BACKOFF);
}

/* One line per second for the whole process, however many workers fail how often,
 * with the count of failures not logged since the last line. */
static uint64_t accept_err_logged_ns;
static unsigned long accept_err_suppressed;

static void log_accept_error(struct sl_worker *w, int err)
{
	uint64_t now = sl_mono_ns();
	uint64_t last = __atomic_load_n(&accept_err_logged_ns, __ATOMIC_RELAXED);
	if ((last && now - last < 1000000000ull) ||
	    !__atomic_compare_exchange_n(&accept_err_logged_ns, &last, now, 0, __ATOMIC_RELAXED,
					 __ATOMIC_RELAXED)) {
		__atomic_fetch_add(&accept_err_suppressed, 1, __ATOMIC_RELAXED);
		return;
	}
	unsigned long n = __atomic_exchange_n(&accept_err_suppressed, 0, __ATOMIC_RELAXED);
	sl_log(SL_LOG_ERROR,
	       "msg=\"accept failed, pausing accept\" worker=%u err=\"%s\" pause_ms=%u "
	       "open=%u suppressed=%lu",
	       w->id, strerror(err), SL_ACCEPT_BACKOFF_MS, w->n_sessions, n);
}

/* 0 go on accepting, -1 stop this batch. */
static int accept_failed(struct sl_worker *w, int err)
{
	switch (err) {
	case EMFILE:
	case ENFILE:
	case ENOBUFS:
	case ENOMEM:
		/* The connection stays queued and the socket stays readable: accepting again
		 * at once would spin. Pause; a connection of ours closing ends it early. */
		log_accept_error(w, err);
		accept_pause(w, SL_ACCEPT_BACKOFF);
		struct timeval tv = {0, SL_ACCEPT_BACKOFF_MS * 1000};
		if (evtimer_add(&w->backoff_ev, &tv))
			accept_resume(w, SL_ACCEPT_BACKOFF); /* never stay off for good */
		return -1;
	case EINTR:
	case ECONNABORTED: /* that connection is gone; the next may be fine */
	case EPROTO:
	case EPERM:
		return 0;
	default: /* EAGAIN: the queue is empty */
		return -1;
	}
}

static void accept_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sl_listen *l = arg;
	struct sl_worker *w = l->w;
	/* bounded batch: other connections get their turn on the loop */
	for (int i = 0; i < 64 && !w->draining; i++) {
		if (w->max_conns && w->n_sessions >= w->max_conns) {
			/* refuse before the fd limit: the rest wait in the backlog */
			accept_pause(w, SL_ACCEPT_FULL);
			return;
		}
		struct sockaddr_storage sa;
		socklen_t len = sizeof(sa);
		int c = accept4(fd, (struct sockaddr *)&sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (c < 0) {
			if (accept_failed(w, errno))
				return;
			continue;
		}
		w->d->handler->accept(w, l, c, &sa, len);
	}
}

/*
 * A healthy worker accepts from a stalled one's listening socket while the owner may
 * be closing it. Reading the fd and then calling accept4() let the owner's close() fall
 * in between, and the number could by then name another socket. So a borrower announces
 * itself (users++) before reading fd, and the owner publishes -1 before reading users and
 * waits for them to leave before close(). All four are sequentially consistent: if the
 * owner reads users == 0, the borrower's increment comes later in the single total order,
 * so its read of fd comes after the -1 and it never touches the socket.
 */
int sl_listen_borrow(struct sl_listen *l)
{
	__atomic_fetch_add(&l->users, 1, __ATOMIC_SEQ_CST);
	int fd = __atomic_load_n(&l->fd, __ATOMIC_SEQ_CST);
	if (fd < 0)
		__atomic_fetch_sub(&l->users, 1, __ATOMIC_SEQ_CST);
	return fd;
}

void sl_listen_return(struct sl_listen *l)
{
	__atomic_fetch_sub(&l->users, 1, __ATOMIC_SEQ_CST);
}

void sl_listen_close(struct sl_listen *l)
{
	int fd = l->fd; /* only the owner writes it */
	if (fd < 0)
		return;
	__atomic_store_n(&l->fd, -1, __ATOMIC_SEQ_CST);
	/* a borrower holds it for at most one batch of non-blocking accept4() calls */
	while (__atomic_load_n(&l->users, __ATOMIC_SEQ_CST))
		sched_yield();
	close(fd);
}

static void stop_listening(struct sl_worker *w)
{
	for (unsigned int i = 0; i < w->n_lsn; i++) {
		if (w->lsn[i].fd < 0)
			continue;
		if (w->lsn[i].armed)
			event_del(&w->lsn[i].ev);
		w->lsn[i].armed = 0;
		sl_listen_close(&w->lsn[i]);
	}
}

/* Worker thread, on a new snapshot: accept on the slots it serves that this worker has
 * not taken up yet (a reload added them), stop and close the ones it no longer serves
 * (their connections finish their request). */
static void sync_listeners(struct sl_worker *w, const struct sl_conf *c)
{
	for (unsigned int i = 0; i < w->n_lsn; i++) {
		struct sl_listen *l = &w->lsn[i];
		if (l->fd < 0)
			continue;
		if (c->slot_index[i] >= 0) {
			if (l->armed || w->draining)
				continue;
			event_assign(&l->ev, w->base, l->fd, EV_READ | EV_PERSIST, accept_cb, l);
			l->armed = 1;
			if (!w->accept_off && event_add(&l->ev, NULL))
				sl_log(SL_LOG_ERROR, "msg=\"cannot accept on listener\" worker=%u slot=%u",
				       w->id, i);
			continue;
		}
		if (l->armed)
			event_del(&l->ev);
		l->armed = 0;
		sl_listen_close(l);
		if (w->d->handler->drain_listener)
			w->d->handler->drain_listener(w, l);
	}
}

void sl_worker_session_gone(struct sl_worker *w)
{
	if (w->draining && w->n_sessions == 0)
		event_base_loopbreak(w->base);
	if (!w->accept_off)
		return;
	accept_check_cap(w);
	if (w->accept_off & SL_ACCEPT_BACKOFF) { /* an fd was freed: try again now */
		event_del(&w->backoff_ev);
		accept_resume(w, SL_ACCEPT_BACKOFF);
	}
}

static void check_control(struct sl_worker *w)
{
	int stop = atomic_load(&w->d->stop);
	pick_up_conf(w);
	if (stop == 2) {
		w->draining = 1;
		w->state->state = SL_WORKER_DRAINING;
		stop_listening(w);
		event_base_loopbreak(w->base);
	} else if (stop == 1 && !w->draining) {
		w->draining = 1;
		w->state->state = SL_WORKER_DRAINING;
		stop_listening(w);
		w->d->handler->drain(w);
		sl_connector_drain(&w->up);
		if (w->n_sessions == 0)
			event_base_loopbreak(w->base);
	}
}

static void burn_next(struct sl_worker *w);

static void ctl_cb(evutil_socket_t fd, short what, void *arg)
{
	uint64_t v;
	ssize_t r = read(fd, &v, sizeof(v));
	(void)r;
	struct sl_worker *w = arg;
	unsigned ms = atomic_exchange(&w->stall_ms, 0);
	if (ms)
		usleep(ms * 1000);
	ms = atomic_exchange(&w->burn_ms, 0);
	if (ms) {
		w->burn_until_ns = sl_mono_ns() + (uint64_t)ms * 1000000ull;
		burn_next(w);
	}
	check_control(arg);
}

/* admin /debug/burn: spin on the CPU in 2 ms slices between which the loop runs as
 * usual (it beats, accepts, serves): a worker that is busy, not stalled. */
static void burn_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sl_worker *w = arg;
	uint64_t now = sl_mono_ns(), end = now + 2000000ull;
	if (end > w->burn_until_ns)
		end = w->burn_until_ns;
	while (now < end)
		now = sl_mono_ns();
	if (now < w->burn_until_ns)
		burn_next(w);
}

/* A zero timeout, not event_active(): timers run after the next poll, so the loop
 * serves its sockets between two slices instead of running this callback forever. */
static void burn_next(struct sl_worker *w)
{
	static const struct timeval zero = {0, 0};
	if (evtimer_add(&w->burn_ev, &zero))
		w->burn_until_ns = 0;
}

/* Every heartbeat_ms: the heartbeat steering reads (a plain store into this worker's
 * mmaped slot, no syscall), and at most every 100 ms the access log. A loop that is
 * blocked stops beating, which is the point. */
/* Steering keeps new connections off a stalled worker once its heartbeat is stall_ms
 * old, but those that reached its accept queue before that would wait for it to wake.
 * A healthy worker takes them: accept(2) on the stalled worker's listening socket is
 * as good as on its own. The same for a worker at its connection cap: a burst steered
 * to it before it filled up would wait in its queue while another has room. */
static void rescue_stalled(struct sl_worker *w, uint64_t now)
{
	struct sl_daemon *d = w->d;
	for (unsigned int j = 0; j < d->n_workers; j++) {
		struct sl_worker *o = &d->workers[j];
		if (o == w)
			continue;
		uint64_t hb = __atomic_load_n(&o->state->heartbeat_ns, __ATOMIC_RELAXED);
		if (__atomic_load_n(&o->state->state, __ATOMIC_RELAXED) != SL_WORKER_READY)
			continue;
		int stalled = now >= hb && now - hb > d->stall_ns;
		/* a full worker's queue too: a burst steered to one worker before it
		 * filled up waits there otherwise, while this one has room */
		unsigned int omax = __atomic_load_n(&o->state->max_conns, __ATOMIC_RELAXED);
		int full = omax && __atomic_load_n(&o->state->active, __ATOMIC_RELAXED) >= omax;
		if (!stalled && !full)
			continue;
		unsigned int got = 0;
		for (unsigned int l = 0; l < w->n_lsn && l < o->n_lsn && !w->accept_off; l++) {
			struct {
				int fd;
				socklen_t len;
				struct sockaddr_storage sa;
			} acc[64];
			int n = 0;
			int lfd = sl_listen_borrow(&o->lsn[l]);
			if (lfd < 0)
				continue;
			/* only accept4() while borrowed: the owner may be waiting to close; and
			 * no more than this worker's own cap leaves room for */
			unsigned int room = !w->max_conns ? 64
					    : w->n_sessions >= w->max_conns
						? 0
						: w->max_conns - w->n_sessions;
			int err = 0;
			for (; n < 64 && (unsigned int)n < room; n++) {
				acc[n].len = sizeof(acc[n].sa);
				acc[n].fd = accept4(lfd, (struct sockaddr *)&acc[n].sa, &acc[n].len,
						    SOCK_NONBLOCK | SOCK_CLOEXEC);
				if (acc[n].fd < 0) {
					err = errno;
					break;
				}
			}
			sl_listen_return(&o->lsn[l]);
			if (err)
				accept_failed(w, err);
			for (int k = 0; k < n; k++) {
				got++;
				w->st->rescued++;
				w->d->handler->accept(w, &w->lsn[l], acc[k].fd, &acc[k].sa, acc[k].len);
			}
		}
		if (got && j < 64 && now - w->rescue_logged_ns[j] > 1000000000ull) {
			w->rescue_logged_ns[j] = now;
			sl_log(SL_LOG_WARN,
			       "msg=\"worker stalled, serving its queued connections\" stalled=%u "
			       "by=%u heartbeat_age_ms=%llu",
			       j, w->id, (unsigned long long)((now - hb) / 1000000));
		}
	}
}

/* Connections waiting in this worker's accept queues: for a listening socket TCP_INFO's
 * tcpi_unacked is its accept backlog. */
static unsigned int queued_conns(const struct sl_worker *w)
{
	unsigned int n = 0;
	for (unsigned int i = 0; i < w->n_lsn; i++) {
		struct tcp_info ti;
		socklen_t len = sizeof(ti);
		if (w->lsn[i].fd >= 0 &&
		    !getsockopt(w->lsn[i].fd, IPPROTO_TCP, TCP_INFO, &ti, &len))
			n += ti.tcpi_unacked;
	}
	return n;
}

/* Run time and run-queue wait of the loop thread (ns), from schedstat. 0 or -1. */
static int read_schedstat(int fd, uint64_t *run, uint64_t *wait)
{
	char b[96];
	ssize_t n = pread(fd, b, sizeof(b) - 1, 0);
	if (n <= 0)
		return -1;
	b[n] = 0;
	char *e;
	*run = strtoull(b, &e, 10);
	if (e == b)
		return -1;
	*wait = strtoull(e, NULL, 10);
	return 0;
}

/* Every heartbeat, before the beat itself: the load steering compares (sluice_common.h,
 * struct sl_worker_state), with plain stores into the slot. Queue length and accepted
 * count first: the beat starts a new count of connections steered here, so the
 * snapshot it is added to must already hold the queued ones. busy_pm is the share of wall time the loop thread ran or waited
 * to run (waiting counts: a loop that shares its CPU with a busy client is as unable to
 * take more work as one that runs), smoothed over about four periods. */
static void publish_load(struct sl_worker *w, uint64_t now)
{
	__atomic_store_n(&w->state->queued, queued_conns(w), __ATOMIC_RELAXED);
	__atomic_store_n(&w->state->accepted_beat, (uint32_t)w->st->accepted, __ATOMIC_RELAXED);
	uint64_t run, wait;
	if (w->schedstat_fd < 0 || read_schedstat(w->schedstat_fd, &run, &wait))
		return;
	if (w->load_ns && now > w->load_ns) {
		uint64_t busy = (run - w->run_ns) + (wait - w->wait_ns), wall = now - w->load_ns;
		unsigned int pm = busy >= wall ? 1000 : (unsigned int)(busy * 1000 / wall);
		w->busy_pm = (w->busy_pm * 3 + pm + 3) / 4;
		__atomic_store_n(&w->state->busy_pm, w->busy_pm, __ATOMIC_RELAXED);
	}
	w->load_ns = now;
	w->run_ns = run;
	w->wait_ns = wait;
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sl_worker *w = arg;
	uint64_t now = sl_mono_ns();
	publish_load(w, now);
	__atomic_store_n(&w->state->heartbeat_ns, now, __ATOMIC_RELAXED);
	if (w->accept_off & SL_ACCEPT_FULL) /* closes are noticed at once; this is a net */
		accept_check_cap(w);
	if (w->d->steering && !w->draining && w->d->n_workers > 1)
		rescue_stalled(w, now);
	if (atomic_load_explicit(&sl_waiters_total, memory_order_relaxed)) {
		sl_connector_share_waited(&w->up);
		if (!sl_waitq_empty(&w->up.waitq)) /* slots freed elsewhere are noticed here */
			sl_connector_wake(&w->up);
	}
	w->d->handler->expire(w, now);
	/* quiet for 100 ms after a burst (of requests, or of connections coming and
	 * going): give its memory back */
	if (w->st->requests != w->trim_requests || w->st->active != w->trim_active) {
		w->trim_requests = w->st->requests;
		w->trim_active = w->st->active;
		w->trim_quiet_since = now;
	} else if (w->trim_quiet_since && now - w->trim_quiet_since >= 100000000ull) {
		w->trim_quiet_since = 0;
		w->d->handler->trim(w);
		sl_mem_trim(&w->mem, now);
	}
	if (w->alog.len && now - w->alog_flushed_ns >= 100000000ull) {
		sl_alog_flush(&w->alog);
		w->alog_flushed_ns = now;
	}
}

void sl_worker_poke(struct sl_worker *w)
{
	uint64_t one = 1;
	ssize_t r = write(w->ctl_fd, &one, sizeof(one));
	(void)r;
}

static void *worker_main(void *arg)
{
	struct sl_worker *w = arg;
	if (w->cpu >= 0) {
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(w->cpu, &set);
		if (pthread_setaffinity_np(pthread_self(), sizeof(set), &set))
			sl_log(SL_LOG_WARN, "msg=\"cannot pin worker\" worker=%u cpu=%d", w->id,
			       w->cpu);
	}
	char name[16];
	snprintf(name, sizeof(name), "sluice-w%u", w->id);
	pthread_setname_np(pthread_self(), name);
	/* this thread's own file: read every heartbeat for the busy ratio */
	w->schedstat_fd = open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);

	check_control(w);
	if (!w->draining) {
		w->state->heartbeat_ns = sl_mono_ns();
		w->state->state = SL_WORKER_READY;
		event_base_dispatch(w->base);
	}

	w->d->handler->close_all(w);
	sl_connector_destroy(&w->up);
	stop_listening(w);
	if (w->alog.len)
		sl_alog_flush(&w->alog);
	atomic_fetch_sub(&w->d->live, 1);
	return NULL;
}

int sl_worker_start(struct sl_worker *w)
{
	w->d->handler->init(w);
	struct event_config *cfg = event_config_new();
	if (!cfg)
		return -ENOMEM;
	/* one thread per base: no libevent locking */
	event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK);
	w->base = event_base_new_with_config(cfg);
	event_config_free(cfg);
	if (!w->base)
		return -ENOMEM;
	sl_connector_init(&w->up, w->base, w->st, w->d->spool);
	w->ctl_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (w->ctl_fd < 0)
		return -errno;
	evtimer_assign(&w->backoff_ev, w->base, backoff_cb, w);
	evtimer_assign(&w->burn_ev, w->base, burn_cb, w);
	pick_up_conf(w);
	/* A worker missing one of these would never be stopped, never beat, or never
	 * accept: refuse to start it. */
	event_assign(&w->ctl_ev, w->base, w->ctl_fd, EV_READ | EV_PERSIST, ctl_cb, w);
	if (event_add(&w->ctl_ev, NULL))
		return -ENOMEM;
	unsigned int hb = w->hold ? w->hold->conf->bpf.heartbeat_ms : 10;
	struct timeval tick = {hb / 1000, (hb % 1000) * 1000};
	event_assign(&w->tick_ev, w->base, -1, EV_PERSIST, tick_cb, w);
	if (event_add(&w->tick_ev, &tick))
		return -ENOMEM;
	for (unsigned int i = 0; i < w->n_lsn; i++) /* pick_up_conf armed them */
		if (w->lsn[i].fd >= 0 && w->hold && w->hold->conf->slot_index[i] >= 0 &&
		    !w->lsn[i].armed)
			return -ENOMEM;
	atomic_fetch_add(&w->d->live, 1);
	int r = pthread_create(&w->thread, NULL, worker_main, w);
	if (r) {
		atomic_fetch_sub(&w->d->live, 1);
		return -r;
	}
	return 0;
}

void sl_worker_destroy(struct sl_worker *w)
{
	sl_conf_put(atomic_exchange(&w->pending, NULL));
	while (w->old_hold) {
		struct sl_conf_hold *h = w->old_hold;
		w->old_hold = h->next;
		sl_conf_put(h->conf);
		free(h);
	}
	if (w->hold) {
		sl_conf_put(w->hold->conf);
		free(w->hold);
		w->hold = NULL;
	}
	sl_slab_destroy(&w->session_slab);
	if (w->base) {
		event_del(&w->ctl_ev);
		event_del(&w->tick_ev);
		event_del(&w->backoff_ev);
		event_del(&w->burn_ev);
		event_base_free(w->base);
	}
	if (w->ctl_fd >= 0)
		close(w->ctl_fd);
	if (w->schedstat_fd >= 0)
		close(w->schedstat_fd);
	sl_mem_destroy(&w->mem);
}
