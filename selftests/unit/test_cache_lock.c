/* Unit tests for user/cache/lock.c and xwait.c: writer election, waiters handed the
 * object, one new writer at a time after failures, pass, lock.age, leaving at every
 * stage, and 10,000 waiters on four threads with their own event loops woken exactly
 * once each through their mailboxes. */
#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cache/lock.h"
#include "cache/store.h"

struct w {
	struct sl_xwaiter x;
	int woken, result;
	void *arg;
	unsigned int *count;
};

static void on_wake(struct sl_xwaiter *x)
{
	struct w *w = (struct w *)x;
	w->woken++;
	w->result = x->result;
	w->arg = x->arg;
	if (w->count)
		__atomic_fetch_add(w->count, 1, __ATOMIC_RELAXED);
}

static struct sl_clock_tab tab;
static struct sl_xmbox mbox;
static struct sl_cache_zone *z;

static int setup(void **state)
{
	assert_int_equal(sl_clock_init(&tab, 8), 0);
	assert_int_equal(sl_xmbox_init(&mbox, NULL), 0);
	struct sl_cache_zone_params p = {"l", 1 << 20, 1 << 16, 2, 0};
	z = sl_cache_zone_new(&p);
	return z ? 0 : -1;
}

static int teardown(void **state)
{
	assert_int_equal(atomic_load(&tab.live), 0); /* nothing left locked */
	sl_clock_destroy(&tab);
	sl_xmbox_destroy(&mbox);
	sl_cache_zone_free(z);
	return 0;
}

static int acquire(struct w *w, uint64_t now, uint64_t age, struct sl_clock_ticket *tk)
{
	memset(w, 0, sizeof(*w));
	w->x.mbox = &mbox;
	w->x.wake = on_wake;
	return sl_clock_acquire(&tab, 42, "key", 3, now, age, &w->x, tk);
}

static void test_writer_waiters_done(void **state)
{
	struct sl_clock_ticket tk, tk2;
	struct w a, b, c;
	assert_int_equal(acquire(&a, 0, 0, &tk), SL_CLOCK_WRITER);
	assert_int_equal(acquire(&b, 0, 0, &tk2), SL_CLOCK_WAIT);
	assert_int_equal(acquire(&c, 0, 0, &tk2), SL_CLOCK_WAIT);
	/* another key is independent */
	struct w d;
	memset(&d, 0, sizeof(d));
	struct sl_clock_ticket tk3;
	assert_int_equal(sl_clock_acquire(&tab, 43, "other", 5, 0, 0, &d.x, &tk3), SL_CLOCK_WRITER);
	sl_clock_pass(&tab, &tk3);
	struct sl_cobj *o = sl_cobj_new(z, 42, 200, "", 0, "", 0, 0, NULL);
	sl_clock_done(&tab, &tk, o);
	assert_int_equal(b.woken + c.woken, 0); /* woken from the loop, not inside done() */
	assert_int_equal(sl_xmbox_run(&mbox), 2);
	assert_int_equal(b.result, SL_CLOCK_OBJ);
	assert_ptr_equal(b.arg, o);
	assert_ptr_equal(c.arg, o);
	assert_int_equal(atomic_load(&o->ref), 3);
	sl_cobj_put(b.arg);
	sl_cobj_put(c.arg);
	sl_cobj_put(o);
	/* the lock went: the next request writes */
	assert_int_equal(acquire(&a, 0, 0, &tk), SL_CLOCK_WRITER);
	sl_clock_done(&tab, &tk, NULL); /* no object: nobody waits, so nothing to do */
}

/* A failing writer hands over to one waiter at a time, oldest first. */
static void test_fail_promotes_one(void **state)
{
	struct sl_clock_ticket tk, none;
	struct w wr, ws[5];
	assert_int_equal(acquire(&wr, 0, 0, &tk), SL_CLOCK_WRITER);
	for (int i = 0; i < 5; i++)
		assert_int_equal(acquire(&ws[i], 0, 0, &none), SL_CLOCK_WAIT);
	for (int round = 0; round < 5; round++) {
		sl_clock_fail(&tab, &tk, 10);
		assert_int_equal(sl_xmbox_run(&mbox), 1); /* exactly one new writer */
		int writers = 0, idx = -1;
		for (int i = 0; i < 5; i++)
			if (ws[i].woken) {
				assert_int_equal(ws[i].woken, 1);
				assert_int_equal(ws[i].result, SL_CLOCK_WRITER);
				writers++;
				idx = i;
			}
		assert_int_equal(writers, round + 1);
		assert_int_equal(idx, round); /* oldest first */
		tk = sl_clock_ticket_of(&ws[idx].x);
	}
	sl_clock_fail(&tab, &tk, 10); /* nobody left: the lock goes */
	assert_int_equal(sl_xmbox_run(&mbox), 0);
	assert_int_equal(atomic_load(&tab.promoted), 5);
}

static void test_pass_wakes_all(void **state)
{
	struct sl_clock_ticket tk, none;
	struct w wr, ws[3];
	assert_int_equal(acquire(&wr, 0, 0, &tk), SL_CLOCK_WRITER);
	for (int i = 0; i < 3; i++)
		acquire(&ws[i], 0, 0, &none);
	sl_clock_pass(&tab, &tk);
	assert_int_equal(sl_xmbox_run(&mbox), 3);
	for (int i = 0; i < 3; i++)
		assert_int_equal(ws[i].result, SL_CLOCK_PASS);
}

/* lock.age: a writer stuck longer than age lets exactly one more request through; the
 * stuck writer's late failure does not promote anyone. */
static void test_lock_age(void **state)
{
	struct sl_clock_ticket old, nw, none;
	struct w a, b, c, d;
	const uint64_t age = 5000;
	assert_int_equal(acquire(&a, 1000, age, &old), SL_CLOCK_WRITER);
	assert_int_equal(acquire(&b, 5999, age, &none), SL_CLOCK_WAIT);
	assert_int_equal(acquire(&c, 6000, age, &nw), SL_CLOCK_WRITER);
	assert_int_equal(acquire(&d, 6001, age, &none), SL_CLOCK_WAIT); /* the new one is young */
	sl_clock_fail(&tab, &old, 7000);
	assert_int_equal(sl_xmbox_run(&mbox), 0);
	struct sl_cobj *o = sl_cobj_new(z, 42, 200, "", 0, "", 0, 0, NULL);
	sl_clock_done(&tab, &nw, o);
	assert_int_equal(sl_xmbox_run(&mbox), 2);
	assert_int_equal(b.result, SL_CLOCK_OBJ);
	assert_int_equal(d.result, SL_CLOCK_OBJ);
	sl_cobj_put(b.arg);
	sl_cobj_put(d.arg);
	sl_cobj_put(o);
	assert_int_equal(atomic_load(&tab.superseded), 1);
}

/* Callers read their clock before they take the shard lock, so on two workers the
 * request that read the clock first can reach the lock second: its "now" is older than
 * the writer's claim. That is a young writer, not one older than lock.age (the unsigned
 * difference wrapped and let a second writer through: two origin fetches in a
 * stampede). The same holds for a writer promoted after a failure. */
static void test_lock_age_clock_read_before_lock(void **state)
{
	struct sl_clock_ticket tk, none;
	struct w a, b, c, d;
	const uint64_t age = 30000000000ull; /* 30 s */
	assert_int_equal(acquire(&a, 5000000, age, &tk), SL_CLOCK_WRITER);
	assert_int_equal(acquire(&b, 4999999, age, &none), SL_CLOCK_WAIT);
	assert_int_equal(acquire(&c, 1, age, &none), SL_CLOCK_WAIT);
	assert_int_equal(atomic_load(&tab.superseded), 0);
	/* promoted by a failure reported with a later clock than the next arrival's */
	sl_clock_fail(&tab, &tk, 9000000);
	assert_int_equal(sl_xmbox_run(&mbox), 1);
	assert_int_equal(b.result, SL_CLOCK_WRITER);
	struct sl_clock_ticket btk = sl_clock_ticket_of(&b.x);
	assert_int_equal(acquire(&d, 8999999, age, &none), SL_CLOCK_WAIT);
	assert_int_equal(atomic_load(&tab.superseded), 0);
	/* still superseded once the claim really is older than age */
	struct w e;
	struct sl_clock_ticket etk;
	assert_int_equal(acquire(&e, 9000000 + age, age, &etk), SL_CLOCK_WRITER);
	assert_int_equal(atomic_load(&tab.superseded), 1);
	struct sl_cobj *o = sl_cobj_new(z, 42, 200, "", 0, "", 0, 0, NULL);
	sl_clock_done(&tab, &etk, o);
	sl_clock_done(&tab, &btk, o); /* superseded: nothing left to hand out */
	assert_int_equal(sl_xmbox_run(&mbox), 2);
	assert_int_equal(c.result, SL_CLOCK_OBJ);
	assert_int_equal(d.result, SL_CLOCK_OBJ);
	sl_cobj_put(c.arg);
	sl_cobj_put(d.arg);
	sl_cobj_put(o);
}

/* Leaving: while queued; after being promoted but before running (the role passes on);
 * after being handed the object but before running (the reference is dropped). */
static void test_leave(void **state)
{
	struct sl_clock_ticket tk, none;
	struct w wr, a, b, c;
	assert_int_equal(acquire(&wr, 0, 0, &tk), SL_CLOCK_WRITER);
	acquire(&a, 0, 0, &none);
	acquire(&b, 0, 0, &none);
	acquire(&c, 0, 0, &none);
	sl_clock_leave(&tab, &a.x, 0); /* queued */
	assert_int_equal(a.x.where, SL_XW_NONE);
	sl_clock_fail(&tab, &tk, 0); /* promotes b */
	assert_int_equal(b.x.where, SL_XW_MBOX);
	sl_clock_leave(&tab, &b.x, 0); /* b's client left before it ran: c is promoted */
	assert_int_equal(sl_xmbox_run(&mbox), 1);
	assert_int_equal(b.woken, 0);
	assert_int_equal(c.result, SL_CLOCK_WRITER);
	tk = sl_clock_ticket_of(&c.x);
	struct w e;
	acquire(&e, 0, 0, &none);
	struct sl_cobj *o = sl_cobj_new(z, 42, 200, "", 0, "", 0, 0, NULL);
	sl_clock_done(&tab, &tk, o);
	sl_clock_leave(&tab, &e.x, 0);
	assert_int_equal(atomic_load(&o->ref), 1); /* e's reference was dropped */
	assert_int_equal(sl_xmbox_run(&mbox), 0);
	sl_cobj_put(o);
	assert_int_equal(a.woken + b.woken + e.woken, 0);
}

/* --- 10,000 waiters on four event loops --- */

#define N_THREADS 4
#define N_WAITERS 10000

struct loop {
	pthread_t th;
	struct event_base *base;
	struct sl_xmbox mbox;
	struct w *ws;
	unsigned int n, woken;
	struct event check;
};

static pthread_barrier_t bar_queued, bar_done;
static struct loop loops[N_THREADS];

static void loop_check(evutil_socket_t fd, short what, void *arg)
{
	struct loop *l = arg;
	if (__atomic_load_n(&l->woken, __ATOMIC_RELAXED) == l->n)
		event_base_loopbreak(l->base);
}

static void *loop_main(void *arg)
{
	struct loop *l = arg;
	l->base = event_base_new();
	assert_int_equal(sl_xmbox_init(&l->mbox, l->base), 0);
	struct sl_clock_ticket none;
	for (unsigned int i = 0; i < l->n; i++) {
		l->ws[i].x.mbox = &l->mbox;
		l->ws[i].x.wake = on_wake;
		l->ws[i].count = &l->woken;
		int rc = sl_clock_acquire(&tab, 42, "key", 3, 0, 0, &l->ws[i].x, &none);
		assert_int_equal(rc, SL_CLOCK_WAIT);
	}
	pthread_barrier_wait(&bar_queued);
	struct timeval tv = {0, 1000};
	event_assign(&l->check, l->base, -1, EV_PERSIST, loop_check, l);
	event_add(&l->check, &tv);
	event_base_dispatch(l->base);
	event_del(&l->check);
	sl_xmbox_destroy(&l->mbox);
	event_base_free(l->base);
	pthread_barrier_wait(&bar_done);
	return NULL;
}

static void test_ten_thousand_waiters(void **state)
{
	struct sl_clock_ticket tk;
	struct w wr;
	assert_int_equal(acquire(&wr, 0, 0, &tk), SL_CLOCK_WRITER);
	pthread_barrier_init(&bar_queued, NULL, N_THREADS + 1);
	pthread_barrier_init(&bar_done, NULL, N_THREADS + 1);
	struct w *all = calloc(N_WAITERS, sizeof(*all));
	for (int t = 0; t < N_THREADS; t++) {
		loops[t].ws = all + t * (N_WAITERS / N_THREADS);
		loops[t].n = N_WAITERS / N_THREADS;
		loops[t].woken = 0;
		pthread_create(&loops[t].th, NULL, loop_main, &loops[t]);
	}
	pthread_barrier_wait(&bar_queued);
	struct sl_cobj *o = sl_cobj_new(z, 42, 200, "", 0, "", 0, 0, NULL);
	sl_clock_done(&tab, &tk, o); /* from this thread: every wake crosses threads */
	pthread_barrier_wait(&bar_done);
	uint64_t kicks = 0;
	for (int t = 0; t < N_THREADS; t++) {
		pthread_join(loops[t].th, NULL);
		assert_int_equal(loops[t].woken, N_WAITERS / N_THREADS);
		kicks += loops[t].mbox.kicks;
	}
	for (int i = 0; i < N_WAITERS; i++) {
		assert_int_equal(all[i].woken, 1);
		assert_int_equal(all[i].result, SL_CLOCK_OBJ);
		sl_cobj_put(all[i].arg);
	}
	/* an eventfd write only when a mailbox goes from empty to non-empty */
	assert_true(kicks >= N_THREADS && kicks <= N_WAITERS);
	fprintf(stderr, "10000 waiters, %lu eventfd kicks\n", (unsigned long)kicks);
	assert_int_equal(atomic_load(&o->ref), 1);
	sl_cobj_put(o);
	free(all);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_writer_waiters_done, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_fail_promotes_one, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pass_wakes_all, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_lock_age, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_lock_age_clock_read_before_lock, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_leave, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_ten_thousand_waiters, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
