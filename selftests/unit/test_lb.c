/* Unit tests for user/lb/lb.c: nginx's smooth weighted order, every server of a large
 * upstream picked (past the 4,096-entry schedule, up to the 65,536 a config allows), weights kept
 * in proportion on large upstreams, the tried mask. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config/config.h"
#include "lb/lb.h"

/* A snapshot with one upstream of n servers; only weights matter to lb/. */
static struct sl_conf *mkconf(unsigned int n, const unsigned int *weights, unsigned int cycle)
{
	struct sl_conf *c = calloc(1, sizeof(*c));
	assert_non_null(c);
	c->upstreams = calloc(1, sizeof(*c->upstreams));
	assert_non_null(c->upstreams);
	c->n_upstreams = 1;
	struct sl_conf_upstream *u = &c->upstreams[0];
	u->servers = calloc(n, sizeof(*u->servers));
	assert_non_null(u->servers);
	u->n_servers = n;
	for (unsigned int i = 0; i < n; i++)
		u->servers[i].weight = weights ? weights[i % cycle] : 1;
	assert_int_equal(sl_lb_prepare(c, 2), 0);
	return c;
}

static void freeconf(struct sl_conf *c)
{
	free(c->upstreams[0].lb);
	free(c->upstreams[0].servers);
	free(c->upstreams);
	free(c);
}

static void test_smooth_weighted_order(void **state)
{
	/* nginx's smooth weighted round robin for weights 5, 1, 1: a a b a c a a */
	const unsigned int w[] = {5, 1, 1};
	struct sl_conf *c = mkconf(3, w, 3);
	const int want[] = {0, 0, 1, 0, 2, 0, 0};
	for (int round = 0; round < 3; round++)
		for (unsigned int k = 0; k < 7; k++)
			assert_int_equal(sl_lb_pick(&c->upstreams[0], 0, 0), want[k]);
	freeconf(c);
}

/* n servers of weight 1: n picks in a row hit each server exactly once. */
static void check_all_picked(unsigned int n)
{
	struct sl_conf *c = mkconf(n, NULL, 1);
	unsigned int *seen = calloc(n, sizeof(*seen));
	assert_non_null(seen);
	for (unsigned int k = 0; k < n; k++) {
		int i = sl_lb_pick(&c->upstreams[0], k & 1, 0);
		assert_true(i >= 0 && (unsigned int)i < n);
		seen[i]++;
	}
	for (unsigned int i = 0; i < n; i++)
		if (seen[i] != 1)
			fail_msg("server %u of %u picked %u times in one cycle", i, n, seen[i]);
	free(seen);
	freeconf(c);
}

static void test_every_server_of_5000(void **state)
{
	check_all_picked(5000);
}

/* large enough that the schedule is not built by the O(servers) per entry loop */
static void test_every_server_of_65536(void **state)
{
	check_all_picked(65536); /* SL_CONF_MAX_SERVERS */
}

/* Weights 1 and 3 alternating over many servers: over one cycle every server shows up,
 * a weight-3 server three times as often as a weight-1 one. */
static void check_weights(unsigned int n)
{
	const unsigned int w[] = {1, 3};
	struct sl_conf *c = mkconf(n, w, 2);
	unsigned int cycle = (n / 2) * 4, *seen = calloc(n, sizeof(*seen));
	assert_non_null(seen);
	for (unsigned int k = 0; k < cycle; k++) {
		int i = sl_lb_pick(&c->upstreams[0], 0, 0);
		assert_true(i >= 0 && (unsigned int)i < n);
		seen[i]++;
	}
	for (unsigned int i = 0; i < n; i++)
		if (seen[i] != w[i % 2])
			fail_msg("server %u (weight %u) picked %u times in a cycle of %u", i,
				 w[i % 2], seen[i], cycle);
	free(seen);
	freeconf(c);
}

static void test_weights_on_large_upstreams(void **state)
{
	check_weights(3000);
	check_weights(20000);
}

/* A total weight far above the schedule length is scaled down, never a server lost. */
static void test_heavy_weights_scaled(void **state)
{
	const unsigned int w[] = {1000, 1};
	struct sl_conf *c = mkconf(6000, w, 2);
	unsigned int *seen = calloc(6000, sizeof(*seen));
	assert_non_null(seen);
	for (unsigned int k = 0; k < 6000 * 1001; k++)
		seen[sl_lb_pick(&c->upstreams[0], 0, 0)]++;
	for (unsigned int i = 0; i < 6000; i++)
		assert_true(seen[i] > 0);
	/* scaled to fit the schedule (1000:1 becomes 21:1), the heavy servers still get
	 * far more than the light ones */
	assert_true(seen[0] > 15 * seen[1]);
	free(seen);
	freeconf(c);
}

static void test_tried_mask(void **state)
{
	struct sl_conf *c = mkconf(3, NULL, 1);
	const struct sl_conf_upstream *u = &c->upstreams[0];
	for (int k = 0; k < 6; k++)
		assert_int_equal(sl_lb_pick(u, 0, 0x5), 1);
	assert_int_equal(sl_lb_pick(u, 0, 0x7), -EAGAIN);
	freeconf(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_smooth_weighted_order),
	    cmocka_unit_test(test_every_server_of_5000),
	    cmocka_unit_test(test_every_server_of_65536),
	    cmocka_unit_test(test_weights_on_large_upstreams),
	    cmocka_unit_test(test_heavy_weights_scaled),
	    cmocka_unit_test(test_tried_mask),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
