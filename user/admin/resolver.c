/* The "resolver" background service (see resolver.h): one thread, one FIFO of jobs in,
 * one of finished jobs out to the main loop. One thread keeps jobs in order (admin
 * changes apply in the order they came) and bounds what a dead DNS server can tie up;
 * the admin side gives up on a job after its own deadline. */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <event2/event.h>

#include "admin/resolver.h"
#include "config/config.h"
#include "core/log.h"
#include "sluice/service.h"

static struct {
	pthread_mutex_t mu;
	struct sl_resolve_job *todo, **todo_tail; /* guarded by mu */
	struct sl_resolve_job *done, **done_tail; /* guarded by mu */
	int running;				  /* guarded by mu: the thread takes jobs */
	int wake_fd;				  /* jobs queued (the resolver's loop) */
	int done_fd;				  /* jobs finished (the main loop) */
	struct event *wake_ev, *done_ev;
} rs = {.mu = PTHREAD_MUTEX_INITIALIZER, .wake_fd = -1, .done_fd = -1};

static void kick(int fd)
{
	uint64_t one = 1;
	ssize_t r = write(fd, &one, sizeof(one));
	(void)r; /* an eventfd only fails when its counter is full: it is readable then */
}

static void drain_fd(int fd)
{
	uint64_t v;
	ssize_t r = read(fd, &v, sizeof(v));
	(void)r;
}

/* Resolver thread: take jobs one at a time, resolve their names (this blocks; it is
 * what the thread is for), hand them to the main loop. */
static void on_wake(evutil_socket_t fd, short what, void *arg)
{
	drain_fd(fd);
	for (;;) {
		pthread_mutex_lock(&rs.mu);
		struct sl_resolve_job *j = rs.todo;
		if (j) {
			rs.todo = j->next;
			if (!rs.todo)
				rs.todo_tail = &rs.todo;
		}
		pthread_mutex_unlock(&rs.mu);
		if (!j)
			return;
		for (unsigned int i = 0; i < j->n; i++) {
			if (atomic_load(&j->cancel) == SL_RESOLVE_CANCELLED) {
				j->rc[i] = -ECANCELED;
				continue;
			}
			j->rc[i] = sl_parse_addr(j->names[i], &j->addr[i], &j->len[i]);
		}
		int expect = 0;
		if (j->work && atomic_compare_exchange_strong(&j->cancel, &expect, SL_RESOLVE_WORKING))
			j->work(j, j->arg);
		pthread_mutex_lock(&rs.mu);
		j->next = NULL;
		*rs.done_tail = j;
		rs.done_tail = &j->next;
		int fdone = rs.done_fd;
		pthread_mutex_unlock(&rs.mu);
		if (fdone >= 0)
			kick(fdone);
	}
}

/* Main loop: finished jobs back to their submitters, in order. */
static void on_done(evutil_socket_t fd, short what, void *arg)
{
	drain_fd(fd);
	pthread_mutex_lock(&rs.mu);
	struct sl_resolve_job *j = rs.done;
	rs.done = NULL;
	rs.done_tail = &rs.done;
	pthread_mutex_unlock(&rs.mu);
	while (j) {
		struct sl_resolve_job *next = j->next;
		j->next = NULL;
		j->done(j, j->arg);
		j = next;
	}
}

static int svc_start(struct event_base *base, void *data)
{
	if (rs.wake_fd < 0)
		rs.wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (rs.wake_fd < 0)
		return -errno;
	rs.wake_ev = event_new(base, rs.wake_fd, EV_READ | EV_PERSIST, on_wake, NULL);
	if (!rs.wake_ev || event_add(rs.wake_ev, NULL))
		return -ENOMEM;
	pthread_mutex_lock(&rs.mu);
	rs.running = 1;
	int queued = rs.todo != NULL;
	pthread_mutex_unlock(&rs.mu);
	if (queued)
		kick(rs.wake_fd);
	return 0;
}

static void svc_stop(void *data)
{
	pthread_mutex_lock(&rs.mu);
	rs.running = 0;
	rs.todo = NULL; /* their submitters free them (sl_resolver_detach) */
	rs.todo_tail = &rs.todo;
	pthread_mutex_unlock(&rs.mu);
	if (rs.wake_ev)
		event_free(rs.wake_ev);
	rs.wake_ev = NULL;
}

int sl_resolver_register(void)
{
	rs.todo_tail = &rs.todo;
	rs.done_tail = &rs.done;
	struct sl_service svc = {
	    .name = "resolver",
	    .own_thread = 1,
	    .start = svc_start,
	    .stop = svc_stop,
	};
	return sl_service_add(&svc);
}

int sl_resolver_attach(struct event_base *main_base)
{
	if (rs.done_fd < 0)
		rs.done_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (rs.done_fd < 0)
		return -errno;
	if (!rs.todo_tail)
		rs.todo_tail = &rs.todo;
	if (!rs.done_tail)
		rs.done_tail = &rs.done;
	rs.done_ev = event_new(main_base, rs.done_fd, EV_READ | EV_PERSIST, on_done, NULL);
	if (!rs.done_ev || event_add(rs.done_ev, NULL)) {
		if (rs.done_ev)
			event_free(rs.done_ev);
		rs.done_ev = NULL;
		return -ENOMEM;
	}
	return 0;
}

void sl_resolver_detach(void)
{
	if (rs.done_ev)
		event_free(rs.done_ev);
	rs.done_ev = NULL;
	pthread_mutex_lock(&rs.mu);
	rs.done = NULL;
	rs.done_tail = &rs.done;
	pthread_mutex_unlock(&rs.mu);
}

int sl_resolve_submit(struct sl_resolve_job *j)
{
	pthread_mutex_lock(&rs.mu);
	int ok = rs.running && rs.done_ev && rs.todo_tail;
	if (ok) {
		j->next = NULL;
		*rs.todo_tail = j;
		rs.todo_tail = &j->next;
	}
	pthread_mutex_unlock(&rs.mu);
	if (!ok)
		return -ENOTCONN;
	kick(rs.wake_fd);
	return 0;
}
