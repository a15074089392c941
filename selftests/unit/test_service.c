/* Unit tests for user/server/service.c: registration limits, main-thread and own-thread
 * services started with their loop, ticking, stopped in reverse order, no registration
 * once started. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>

#include "server/service.h"

static atomic_int ticks_main, ticks_own, started, order_pos;
static int stop_order[3];
static struct event_base *own_base_seen;

static int start_main(struct event_base *b, void *d)
{
	atomic_fetch_add(&started, 1);
	return 0;
}

static int start_own(struct event_base *b, void *d)
{
	own_base_seen = b;
	atomic_fetch_add(&started, 1);
	return 0;
}

static int start_fail(struct event_base *b, void *d)
{
	return -EIO;
}

static void tick_main(void *d)
{
	atomic_fetch_add(&ticks_main, 1);
}

static void tick_own(void *d)
{
	atomic_fetch_add(&ticks_own, 1);
}

static void stop_rec(void *d)
{
	stop_order[atomic_fetch_add(&order_pos, 1)] = (int)(intptr_t)d;
}

static void stop_main_loop(evutil_socket_t fd, short w, void *arg)
{
	event_base_loopbreak(arg);
}

static void test_services(void **state)
{
	struct sl_service bad = {.name = "", .tick = tick_main};
	assert_int_equal(sl_service_add(&bad), -EINVAL);
	struct sl_service none = {.name = "x"};
	assert_int_equal(sl_service_add(&none), -EINVAL);
	assert_int_equal(sl_service_add(NULL), -EINVAL);

	struct sl_service m = {.name = "main", .interval_ms = 10, .start = start_main,
			       .tick = tick_main, .stop = stop_rec, .data = (void *)1};
	struct sl_service o = {.name = "own", .own_thread = 1, .interval_ms = 10,
			       .start = start_own, .tick = tick_own, .stop = stop_rec,
			       .data = (void *)2};
	struct sl_service f = {.name = "failing", .start = start_fail, .stop = stop_rec,
			       .data = (void *)3};
	assert_int_equal(sl_service_add(&m), 0);
	assert_int_equal(sl_service_add(&o), 0);
	assert_int_equal(sl_service_add(&f), 0);
	for (unsigned int i = 3; i < SL_SERVICE_MAX; i++)
		assert_int_equal(sl_service_add(&(struct sl_service){.name = "filler",
								      .tick = tick_main}),
				 0);
	assert_int_equal(sl_service_add(&m), -ENOSPC);
	assert_int_equal(sl_services_count(), SL_SERVICE_MAX);

	struct event_base *base = event_base_new();
	assert_non_null(base);
	sl_services_start(base);
	assert_int_equal(atomic_load(&started), 2);
	assert_non_null(own_base_seen);
	assert_ptr_not_equal(own_base_seen, base); /* its own loop */
	int running;
	assert_string_equal(sl_service_name(2, &running), "failing");
	assert_false(running);
	assert_string_equal(sl_service_name(1, &running), "own");
	assert_true(running);
	assert_int_equal(sl_service_add(&m), -EBUSY);

	struct timeval tv = {0, 200 * 1000};
	struct event *t = evtimer_new(base, stop_main_loop, base);
	evtimer_add(t, &tv);
	event_base_dispatch(base);
	for (int i = 0; i < 100 && atomic_load(&ticks_own) < 3; i++)
		usleep(10000);
	assert_true(atomic_load(&ticks_main) >= 3);
	assert_true(atomic_load(&ticks_own) >= 3);

	sl_services_stop();
	/* reverse order; the one that failed to start is not stopped */
	assert_int_equal(atomic_load(&order_pos), 2);
	assert_int_equal(stop_order[0], 2);
	assert_int_equal(stop_order[1], 1);
	int tm = atomic_load(&ticks_main), to = atomic_load(&ticks_own);
	usleep(50000);
	assert_int_equal(atomic_load(&ticks_own), to); /* its thread is gone */
	assert_int_equal(atomic_load(&ticks_main), tm);
	event_free(t);
	event_base_free(base);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_services),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
