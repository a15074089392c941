/* Unit tests for user/core/slab.c: objects are distinct, aligned and whole; chunks fill
 * and are unmapped when empty; free objects' pages go back to the kernel on trim. Under
 * AddressSanitizer the slab is plain malloc (so use-after-free stays visible): only the
 * contract is checked there, not the chunk bookkeeping. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/slab.h"

#if defined(__SANITIZE_ADDRESS__)
#define POOLED 0
#else
#define POOLED 1
#endif

static int cmp_ptr(const void *a, const void *b)
{
	uintptr_t x = (uintptr_t)*(void *const *)a, y = (uintptr_t)*(void *const *)b;
	return x < y ? -1 : x > y;
}

static void test_objects_are_distinct_and_whole(void **state)
{
	struct sl_slab sb;
	sl_slab_init(&sb, 344, 1);
	assert_int_equal(sb.size, 352);
	enum { N = 1000 };
	void **o = calloc(N, sizeof(*o));
	for (int i = 0; i < N; i++) {
		o[i] = sl_slab_get(&sb);
		assert_non_null(o[i]);
		assert_int_equal((uintptr_t)o[i] % 16, 0);
		memset(o[i], i & 0xff, sb.size); /* every byte is ours */
	}
	assert_int_equal(sb.in_use, N);
	for (int i = 0; i < N; i++)
		for (size_t k = 0; k < sb.size; k += 37)
			assert_int_equal(((unsigned char *)o[i])[k], i & 0xff);
	qsort(o, N, sizeof(*o), cmp_ptr);
	for (int i = 1; i < N; i++)
		assert_true((uintptr_t)o[i] - (uintptr_t)o[i - 1] >= sb.size);
	if (POOLED)
		assert_int_equal(sb.chunks, (N + sb.per_chunk - 1) / sb.per_chunk);
	for (int i = 0; i < N; i++)
		sl_slab_put(&sb, o[i]);
	assert_int_equal(sb.in_use, 0);
	free(o);
	sl_slab_destroy(&sb);
}

static void test_chunk_size_fits_big_objects(void **state)
{
	struct sl_slab sb;
	sl_slab_init(&sb, 16 * 1024 + 40, 15);
	assert_true(sb.per_chunk >= 15);
	assert_int_equal(sb.chunk & (sb.chunk - 1), 0); /* power of two */
	assert_true(sb.chunk >= 15 * sb.size);
	void *p = sl_slab_get(&sb);
	assert_non_null(p);
	memset(p, 1, sb.size);
	sl_slab_put(&sb, p);
	sl_slab_destroy(&sb);
}

static void test_reuse_and_trim(void **state)
{
	if (!POOLED)
		skip();
	struct sl_slab sb;
	sl_slab_init(&sb, 1000, 1);
	unsigned int n = 3 * sb.per_chunk;
	void **o = calloc(n, sizeof(*o));
	for (unsigned int i = 0; i < n; i++)
		o[i] = sl_slab_get(&sb);
	assert_int_equal(sb.chunks, 3);
	/* put one back: the next get hands the same one out (LIFO, warm) */
	sl_slab_put(&sb, o[5]);
	assert_ptr_equal(sl_slab_get(&sb), o[5]);
	/* empty the first two chunks' worth: trim keeps one empty chunk when asked */
	for (unsigned int i = 0; i < 2 * sb.per_chunk; i++)
		sl_slab_put(&sb, o[i]);
	assert_int_equal(sl_slab_trim(&sb, 1), sb.chunk);
	assert_int_equal(sb.chunks, 2);
	assert_int_equal(sl_slab_trim(&sb, 0), sb.chunk);
	assert_int_equal(sb.chunks, 1);
	/* the remaining objects are untouched and usable */
	for (unsigned int i = 2 * sb.per_chunk; i < n; i++)
		memset(o[i], 7, sb.size);
	for (unsigned int i = 2 * sb.per_chunk; i < n; i++)
		sl_slab_put(&sb, o[i]);
	assert_int_equal(sb.in_use, 0);
	free(o);
	sl_slab_destroy(&sb);
}

/* Pages of a free object in a chunk that stays (others in it are in use) leave RSS. */
static void test_trim_releases_free_object_pages(void **state)
{
	if (!POOLED)
		skip();
	struct sl_slab sb;
	sl_slab_init(&sb, 16 * 1024, 4);
	char *keep = sl_slab_get(&sb), *freed = sl_slab_get(&sb);
	memset(keep, 1, sb.size);
	memset(freed, 2, sb.size);
	sl_slab_put(&sb, freed);
	sl_slab_trim(&sb, 0);
	long pg = sysconf(_SC_PAGESIZE);
	uintptr_t from = ((uintptr_t)freed + 8 + (uintptr_t)pg - 1) & ~((uintptr_t)pg - 1);
	uintptr_t to = ((uintptr_t)freed + sb.size) & ~((uintptr_t)pg - 1);
	assert_true(to - from >= 2 * (uintptr_t)pg);
	unsigned char vec[8] = {0};
	assert_int_equal(mincore((void *)from, to - from, vec), 0);
	for (uintptr_t i = 0; i < (to - from) / (uintptr_t)pg; i++)
		assert_int_equal(vec[i] & 1, 0);
	/* the one in use kept its bytes */
	for (size_t k = 0; k < sb.size; k += 511)
		assert_int_equal(keep[k], 1);
	/* and the freed one is handed out again, writable */
	assert_ptr_equal(sl_slab_get(&sb), freed);
	memset(freed, 3, sb.size);
	sl_slab_put(&sb, freed);
	sl_slab_put(&sb, keep);
	sl_slab_destroy(&sb);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_objects_are_distinct_and_whole),
	    cmocka_unit_test(test_chunk_size_fits_big_objects),
	    cmocka_unit_test(test_reuse_and_trim),
	    cmocka_unit_test(test_trim_releases_free_object_pages),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
