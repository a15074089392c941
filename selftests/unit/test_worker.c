/* Unit tests for user/server/worker.c: config publication (a snapshot moves to a worker
 * with its reference, never as a bare pointer), under a publisher and a worker racing;
 * borrowing another worker's listening socket against its owner closing it; the
 * connection cap's default and its split across workers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <sys/socket.h>
#include <time.h>

#include <cmocka.h>

#include "config/config.h"
#include "server/worker.h"

#define ROUNDS 20000

static struct sl_conf *snapshot(unsigned int serial)
{
	char text[128], err[SL_CONF_ERR_MAX];
	/* the serial rides in shutdown.grace so the worker can tell snapshots apart */
	snprintf(text, sizeof(text),
		 "shutdown: { grace: %ums }\nlisteners: [ { address: \":1\" } ]\n", serial);
	struct sl_conf *c = sl_conf_parse(text, strlen(text), "t.yaml", err, sizeof(err));
	if (!c)
		fail_msg("%s", err);
	return c;
}

static int refs(struct sl_conf *c)
{
	return atomic_load(&c->refcnt);
}

static void test_publish_take(void **state)
{
	struct sl_worker *w = calloc(1, sizeof(*w));
	assert_non_null(w);
	assert_null(sl_worker_take_conf(w));
	struct sl_conf *a = snapshot(1), *b = snapshot(2);
	sl_worker_publish(w, a);
	assert_int_equal(refs(a), 2); /* ours and the one waiting for the worker */
	/* a second publication before the worker looked: a is released, b waits */
	sl_worker_publish(w, b);
	assert_int_equal(refs(a), 1);
	assert_int_equal(refs(b), 2);
	struct sl_conf *got = sl_worker_take_conf(w);
	assert_ptr_equal(got, b);
	assert_int_equal(refs(b), 2); /* the reference moved to the worker, none added */
	assert_null(sl_worker_take_conf(w));
	sl_conf_put(got);
	assert_int_equal(refs(b), 1);
	/* destroy releases what was published and never taken */
	sl_worker_publish(w, a);
	w->ctl_fd = -1;
	w->schedstat_fd = -1;
	sl_worker_destroy(w);
	assert_int_equal(refs(a), 1);
	sl_conf_put(a);
	sl_conf_put(b);
	free(w);
}

struct race {
	struct sl_worker *w;
	struct sl_conf **all; /* NULL: the publisher keeps no reference (frees happen) */
	atomic_int done;
	unsigned int taken, last;
	int disorder;
};

/* The worker: take whatever is there, read it, let it go, as pick_up_conf() does. */
static void *worker_side(void *arg)
{
	struct race *r = arg;
	for (;;) {
		int done = atomic_load(&r->done);
		struct sl_conf *c = sl_worker_take_conf(r->w);
		if (c) {
			/* it is alive and ours: its fields are intact */
			if (refs(c) < 1 || c->n_listeners != 1 || c->shutdown_grace <= r->last)
				r->disorder++;
			r->last = c->shutdown_grace;
			r->taken++;
			sl_conf_put(c);
		} else if (done) {
			return NULL;
		}
	}
}

static void race(struct sl_conf **all)
{
	struct sl_worker *w = calloc(1, sizeof(*w));
	assert_non_null(w);
	struct race r = {.w = w, .all = all};
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, worker_side, &r), 0);
	for (unsigned int i = 1; i <= ROUNDS; i++) {
		struct sl_conf *c = snapshot(i);
		sl_worker_publish(w, c); /* the reload path: publish, then drop our own */
		if (all)		 /* ... or keep it, to count */
			all[i - 1] = c;
		else
			sl_conf_put(c);
	}
	atomic_store(&r.done, 1);
	pthread_join(t, NULL);
	assert_int_equal(r.disorder, 0);
	assert_true(r.taken >= 1);
	/* the last one published is always taken */
	assert_int_equal(r.last, ROUNDS);
	if (all) {
		/* every reference handed to the worker was released exactly once */
		for (unsigned int i = 0; i < ROUNDS; i++) {
			if (refs(all[i]) != 1)
				fail_msg("snapshot %u: refcnt %d, want 1", i + 1, refs(all[i]));
			sl_conf_put(all[i]);
		}
	}
	free(w);
}

/* Counting: the test keeps an extra reference to every snapshot, so at the end each one
 * must be back at exactly the references the test took (one leaked or dropped twice by
 * the hand-over would show). */
static void test_race_counts(void **state)
{
	struct sl_conf **all = calloc(ROUNDS, sizeof(*all));
	assert_non_null(all);
	race(all);
	free(all);
}

/* Freeing: the publisher drops its reference at once, as a reload does; a snapshot
 * freed under the worker is a use-after-free that the ASan build (make asan) reports. */
static void test_race_frees(void **state)
{
	race(NULL);
}

static int listening_socket(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(fd, 8), 0);
	return fd;
}

static void *closer(void *arg)
{
	sl_listen_close(arg);
	return NULL;
}

/* rescue_stalled() accepts on another worker's listening socket: while it has it
 * borrowed, the owner's close waits; once closed, borrowing fails. */
static void test_listen_borrow_holds_off_close(void **state)
{
	struct sl_listen l = {.fd = listening_socket()};
	int fd = l.fd;
	assert_int_equal(sl_listen_borrow(&l), fd);
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, closer, &l), 0);
	while (__atomic_load_n(&l.fd, __ATOMIC_SEQ_CST) >= 0)
		sched_yield(); /* the owner has begun closing */
	/* it may not finish while the socket is borrowed (the wait proves a negative) */
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_nsec += 200 * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	assert_int_equal(pthread_timedjoin_np(t, NULL, &until), ETIMEDOUT);
	/* still our listening socket: accept says "nothing queued", not EBADF */
	assert_int_equal(accept4(fd, NULL, NULL, SOCK_NONBLOCK), -1);
	assert_int_equal(errno, EAGAIN);
	assert_int_equal(sl_listen_borrow(&l), -1); /* new borrowers are turned away */
	sl_listen_return(&l);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(fcntl(fd, F_GETFD), -1);
	assert_int_equal(errno, EBADF);
	assert_int_equal(sl_listen_borrow(&l), -1);
	assert_int_equal(l.users, 0);
	sl_listen_close(&l); /* closing twice is a no-op */
}

/* The default cap leaves room for an upstream connection per client and a reserve;
 * shares add up to the total and never leave a worker at 0 (which would mean no cap). */
static void test_connection_cap(void **state)
{
	assert_int_equal(sl_worker_auto_max_conns(256, 2, 1), (256 - 64 - 2 * 3) / 2);
	assert_int_equal(sl_worker_auto_max_conns(1024, 2, 1), (1024 - 64 - 2 * 3) / 2);
	assert_int_equal(sl_worker_auto_max_conns(1048576, 8, 2), (1048576 - 64 - 8 * 4) / 2);
	/* tiny limits: at least one connection per worker */
	assert_int_equal(sl_worker_auto_max_conns(16, 4, 1), 4);
	unsigned int total = 0;
	for (unsigned int i = 0; i < 3; i++)
		total += sl_worker_conn_share(11, 3, i);
	assert_int_equal(total, 11);
	assert_int_equal(sl_worker_conn_share(11, 3, 0), 4);
	assert_int_equal(sl_worker_conn_share(11, 3, 2), 3);
	assert_int_equal(sl_worker_conn_share(2, 4, 3), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_publish_take),
	    cmocka_unit_test(test_race_counts),
	    cmocka_unit_test(test_race_frees),
	    cmocka_unit_test(test_listen_borrow_holds_off_close),
	    cmocka_unit_test(test_connection_cap),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
