/* Unit tests for user/upstream/waitq.h: order, removal, re-queueing from a wake, the
 * budget, and no re-entrant wake. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "upstream/waitq.h"

struct item {
	struct sl_waiter w;
	int id, woken, requeue;
};

static struct sl_waitq q;
static int order[16], n_order;

static void wake(struct sl_waiter *w)
{
	struct item *it = (struct item *)w;
	it->woken++;
	order[n_order++] = it->id;
	sl_waitq_wake(&q, 64); /* nested: ignored */
	if (it->requeue) {
		it->requeue--;
		sl_waitq_add(&q, w);
	}
}

static void test_fifo_remove_requeue_budget(void **state)
{
	struct item it[4] = {0};
	q = (struct sl_waitq){0};
	n_order = 0;
	for (int i = 0; i < 4; i++) {
		it[i].id = i;
		it[i].w.wake = wake;
		sl_waitq_add(&q, &it[i].w);
		sl_waitq_add(&q, &it[i].w); /* twice: queued once */
	}
	sl_waitq_remove(&q, &it[2].w);
	assert_false(it[2].w.queued);
	it[0].requeue = 1; /* still waiting: back to the tail */
	sl_waitq_wake(&q, 3);
	assert_int_equal(n_order, 3);
	assert_int_equal(order[0], 0);
	assert_int_equal(order[1], 1);
	assert_int_equal(order[2], 3);
	assert_false(sl_waitq_empty(&q)); /* item 0, re-queued, waits for the next round */
	assert_ptr_equal(sl_waitq_first(&q), &it[0].w);
	assert_ptr_equal(q.l.tail, &it[0].w.link);
	sl_waitq_wake(&q, 64);
	assert_int_equal(it[0].woken, 2);
	assert_true(sl_waitq_empty(&q));
	assert_int_equal(it[2].woken, 0);
	assert_null(q.l.tail);
	assert_null(q.l.head);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_fifo_remove_requeue_budget),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
