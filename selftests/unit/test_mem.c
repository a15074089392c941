/* Unit tests for user/core/mem.c: free lists per class, the bound on kept buffers, and
 * growing a class while buffers of the old size are still out. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/mem.h"

static void test_recycles_per_class(void **state)
{
	struct sl_mem m;
	sl_mem_init(&m, 40000, 2);
	assert_int_equal(m.size[SL_MEM_BIG], 40000);
	void *a = sl_mem_get(&m, SL_MEM_IO), *b = sl_mem_get(&m, SL_MEM_IO),
	     *c = sl_mem_get(&m, SL_MEM_IO);
	assert_non_null(a);
	assert_true(((uintptr_t)a & 15) == 0);
	memset(a, 1, m.size[SL_MEM_IO]);
	sl_mem_put(&m, SL_MEM_IO, a);
	sl_mem_put(&m, SL_MEM_IO, b);
	sl_mem_put(&m, SL_MEM_IO, c); /* over max_free: freed */
	assert_int_equal(m.n_free[SL_MEM_IO], 2);
	assert_ptr_equal(sl_mem_get(&m, SL_MEM_IO), b); /* LIFO */
	assert_ptr_equal(sl_mem_get(&m, SL_MEM_IO), a);
	sl_mem_put(&m, SL_MEM_IO, a);
	sl_mem_put(&m, SL_MEM_IO, b);
	assert_int_equal(m.n_free[SL_MEM_SMALL], 0);
	sl_mem_destroy(&m);
}

/* A reload raises max_header_bytes: the big class grows; a buffer of the old size that
 * comes back afterwards must not be handed out again as a big one. */
static void test_grow_drops_old_buffers(void **state)
{
	struct sl_mem m;
	sl_mem_init(&m, 20000, 8);
	void *kept = sl_mem_get(&m, SL_MEM_BIG), *out = sl_mem_get(&m, SL_MEM_BIG);
	sl_mem_put(&m, SL_MEM_BIG, kept);
	assert_int_equal(m.n_free[SL_MEM_BIG], 1);
	sl_mem_grow(&m, SL_MEM_BIG, 80000);
	assert_int_equal(m.size[SL_MEM_BIG], 80000);
	assert_int_equal(m.n_free[SL_MEM_BIG], 0); /* the free list held old-size buffers */
	sl_mem_put(&m, SL_MEM_BIG, out);	   /* still out during the grow */
	assert_int_equal(m.n_free[SL_MEM_BIG], 0);
	void *n = sl_mem_get(&m, SL_MEM_BIG);
	assert_non_null(n);
	memset(n, 2, 80000); /* the whole new size is usable (ASan checks) */
	sl_mem_put(&m, SL_MEM_BIG, n);
	assert_int_equal(m.n_free[SL_MEM_BIG], 1);
	assert_ptr_equal(sl_mem_get(&m, SL_MEM_BIG), n);
	sl_mem_put(&m, SL_MEM_BIG, n);
	/* never shrinks */
	sl_mem_grow(&m, SL_MEM_BIG, 30000);
	assert_int_equal(m.size[SL_MEM_BIG], 80000);
	assert_int_equal(m.n_free[SL_MEM_BIG], 1);
	sl_mem_destroy(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_recycles_per_class),
	    cmocka_unit_test(test_grow_drops_old_buffers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
