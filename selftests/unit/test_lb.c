/* Unit tests for user/lb/: nginx's smooth weighted order, every server of a large
 * upstream picked, weights in proportion per balancer (stated tolerances), maglev and
 * ketama remapping about 1/N of keys when one of N servers leaves, bounded load, the
 * in-flight balancers preferring a fast server, EWMA leaving a fast-failing server,
 * outlier ejection (cap, at least one stays, growing ejection time), server state kept
 * across swaps and reloads, per-worker holds. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>

#include "config/config.h"
#include "lb/lb.h"
#include "lb/lb_int.h"

#define MS 1000000ull

struct fx {
	struct sl_upstream *u;
	struct sl_upset *set;
	struct sl_set_hold hold;
};

static struct sl_lb_policy policy(enum sl_balance b)
{
	struct sl_lb_policy p;
	memset(&p, 0, sizeof(p));
	p.balance = b;
	p.table_size = 65537;
	p.ewma_decay = 10000;
	p.ewma_penalty = 1000;
	p.retries = 1;
	p.outlier.base_ejection_time = 30000;
	p.outlier.max_ejection_time = 300000;
	p.outlier.max_ejection_percent = 10;
	return p;
}

static struct sl_server *mksrv(unsigned int i)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *in = (struct sockaddr_in *)&ss;
	char a[64];
	memset(&ss, 0, sizeof(ss));
	in->sin_family = AF_INET;
	in->sin_addr.s_addr = htonl(0x0a000000u + i / 50000);
	in->sin_port = htons((uint16_t)(1000 + i % 50000));
	snprintf(a, sizeof(a), "10.0.0.%u:%u", i / 50000, 1000 + i % 50000);
	struct sl_server *s = sl_server_new(a, &ss, sizeof(*in));
	assert_non_null(s);
	return s;
}

/* A set of n servers numbered from first (weights cycle through w) on a bare upstream. */
static struct sl_upset *mkset_from(const struct sl_lb_policy *p, unsigned int first,
				   unsigned int n, const unsigned int *w, unsigned int cycle,
				   struct sl_server **reuse)
{
	struct sl_server **srv = calloc(n, sizeof(*srv));
	unsigned int *ws = calloc(n, sizeof(*ws));
	char err[128];
	assert_non_null(srv);
	assert_non_null(ws);
	for (unsigned int i = 0; i < n; i++) {
		srv[i] = reuse ? reuse[first + i] : mksrv(first + i);
		if (reuse)
			atomic_fetch_add(&srv[i]->refcnt, 1);
		ws[i] = w ? w[i % cycle] : 1;
	}
	struct sl_upset *s = sl_upset_build(p, srv, ws, n, err, sizeof(err));
	if (!s)
		fail_msg("build: %s", err);
	for (unsigned int i = 0; i < n; i++)
		sl_server_put(srv[i]);
	free(srv);
	free(ws);
	return s;
}

static void fx_init(struct fx *f, struct sl_upset *s)
{
	memset(f, 0, sizeof(*f));
	f->u = calloc(1, sizeof(*f->u));
	assert_non_null(f->u);
	pthread_mutex_init(&f->u->lock, NULL);
	f->u->name = "test";
	f->set = s;
	f->hold.set = s;
	f->hold.users = 1;
	f->hold.current = 1;
}

static void fx_fini(struct fx *f)
{
	sl_upset_put(f->set);
	pthread_mutex_destroy(&f->u->lock);
	free(f->u);
}

static void req_init(struct fx *f, struct sl_lb_req *q)
{
	memset(q, 0, sizeof(*q));
	q->u = f->u;
	q->hold = &f->hold;
	q->cur = -1;
}

/* One request start to end: the server it got. */
static int one(struct fx *f, uint64_t key, uint64_t now)
{
	struct sl_lb_req q;
	req_init(f, &q);
	int i = sl_lb_pick(&q, key, now);
	sl_lb_attempt_end(&q, SL_LB_RESPONSE, 200, 1 * MS, now);
	return i;
}

static uint64_t key_of(unsigned int k)
{
	return sl_lb_mix(0x1234567ull + k);
}

static void test_smooth_weighted_order(void **state)
{
	/* nginx's smooth weighted round robin for weights 5, 1, 1: a a b a c a a */
	const unsigned int w[] = {5, 1, 1};
	struct sl_lb_policy p = policy(SL_BAL_ROUND_ROBIN);
	struct fx f;
	fx_init(&f, mkset_from(&p, 0, 3, w, 3, NULL));
	atomic_store(f.set->cursor, 0); /* sets start at a random place of the cycle */
	const int want[] = {0, 0, 1, 0, 2, 0, 0};
	for (int round = 0; round < 3; round++)
		for (unsigned int k = 0; k < 7; k++)
			assert_int_equal(one(&f, 0, 1), want[k]);
	fx_fini(&f);
}

/* Each new set starts its cycle at a random place: with a swap every request, a cursor
 * at 0 sent every request to the first server of the list. */
static void test_new_sets_start_anywhere(void **state)
{
	struct sl_lb_policy p = policy(SL_BAL_ROUND_ROBIN);
	unsigned int first[2] = {0, 0};
	for (int k = 0; k < 64; k++) {
		struct fx f;
		fx_init(&f, mkset_from(&p, 0, 2, NULL, 1, NULL));
		int i = one(&f, 0, 1);
		assert_true(i == 0 || i == 1);
		first[i]++;
		fx_fini(&f);
	}
	assert_true(first[0] > 0 && first[1] > 0);
}

/* n servers of weight 1: n picks in a row hit each server exactly once. */
static void check_all_picked(unsigned int n)
{
	struct sl_lb_policy p = policy(SL_BAL_ROUND_ROBIN);
	struct fx f;
	fx_init(&f, mkset_from(&p, 0, n, NULL, 1, NULL));
	unsigned int *seen = calloc(n, sizeof(*seen));
	assert_non_null(seen);
	for (unsigned int k = 0; k < n; k++) {
		int i = one(&f, 0, 1);
		assert_true(i >= 0 && (unsigned int)i < n);
		seen[i]++;
	}
	for (unsigned int i = 0; i < n; i++)
		if (seen[i] != 1)
			fail_msg("server %u of %u picked %u times in one cycle", i, n, seen[i]);
	free(seen);
	fx_fini(&f);
}

static void test_every_server_of_10000(void **state)
{
	check_all_picked(10000);
}

static void test_every_server_of_65536(void **state)
{
	check_all_picked(65536); /* SL_CONF_MAX_SERVERS */
}

/* Weights 1 and 3 alternating over many servers: exact over one cycle. */
static void check_weights(unsigned int n)
{
	const unsigned int w[] = {1, 3};
	struct sl_lb_policy p = policy(SL_BAL_ROUND_ROBIN);
	struct fx f;
	fx_init(&f, mkset_from(&p, 0, n, w, 2, NULL));
	unsigned int cycle = (n / 2) * 4, *seen = calloc(n, sizeof(*seen));
	assert_non_null(seen);
	for (unsigned int k = 0; k < cycle; k++)
		seen[one(&f, 0, 1)]++;
	for (unsigned int i = 0; i < n; i++)
		if (seen[i] != w[i % 2])
			fail_msg("server %u (weight %u) picked %u times in a cycle of %u", i,
				 w[i % 2], seen[i], cycle);
	free(seen);
	fx_fini(&f);
}

static void test_weights_on_large_upstreams(void **state)
{
	check_weights(3000);
	check_weights(20000);
}

/* A request skips servers it tried; with 10,000 servers of which one is usable, that one
 * is found, and a request that tried it gets -EAGAIN (no limit of 64 any more). */
static void test_tried_and_unusable_skipped(void **state)
{
	for (int b = SL_BAL_ROUND_ROBIN; b <= SL_BAL_EWMA; b++) {
		struct sl_lb_policy p = policy((enum sl_balance)b);
		struct fx f;
		fx_init(&f, mkset_from(&p, 0, 10000, NULL, 1, NULL));
		for (unsigned int i = 0; i < 10000; i++)
			if (i != 7777)
				atomic_store(&f.set->srv[i].s->admin, SL_SRV_DISABLED);
		struct sl_lb_req q;
		req_init(&f, &q);
		assert_int_equal(sl_lb_pick(&q, key_of(1), 1), 7777);
		assert_int_equal(sl_lb_untried(&q, 1), 0);
		assert_int_equal(sl_lb_pick(&q, key_of(1), 1), -EAGAIN);
		sl_lb_req_end(&q);
		assert_int_equal(atomic_load(&f.set->srv[7777].s->inflight), 0);
		fx_fini(&f);
	}
}

/* Round robin: a retry continues from the request's own position and leaves the shared
 * cursor alone, so first attempts keep alternating when every request is retried (they
 * moved in step with the retries: every request started on the same server). */
static void test_rr_retry_keeps_first_attempts_spread(void **state)
{
	struct sl_lb_policy p = policy(SL_BAL_ROUND_ROBIN);
	struct fx f;
	fx_init(&f, mkset_from(&p, 0, 2, NULL, 1, NULL));
	unsigned int first[2] = {0};
	for (int k = 0; k < 100; k++) {
		struct sl_lb_req q;
		req_init(&f, &q);
		int a = sl_lb_pick(&q, 0, 1);
		int b = sl_lb_pick(&q, 0, 1);
		assert_true(a >= 0 && b >= 0 && a != b);
		first[a]++;
		sl_lb_attempt_end(&q, SL_LB_NONE, 0, 0, 1);
	}
	assert_int_equal(first[0], 50);
	assert_int_equal(first[1], 50);
	fx_fini(&f);
}

/* Shares of picks per server over many requests with weights 1,2,3,4 (sequential
 * requests, so in-flight balancers see equal load): round robin exact per cycle; maglev
 * and ketama within 15% of the weight share (table/ring granularity). */
static void check_share(enum sl_balance b, double tol)
{
	const unsigned int w[] = {1, 2, 3, 4};
	struct sl_lb_policy p = policy(b);
	struct fx f;
	fx_init(&f, mkset_from(&p, 0, 4, w, 4, NULL));
	unsigned int seen[4] = {0}, N = 200000;
	for (unsigned int k = 0; k < N; k++)
		seen[one(&f, key_of(k), 1)]++;
	for (unsigned int i = 0; i < 4; i++) {
		double want = N * w[i] / 10.0;
		if (fabs(seen[i] - want) > tol * want)
			fail_msg("balancer %d: server %u (weight %u) got %u, want %.0f +-%.0f%%", b,
				 i, w[i], seen[i], want, tol * 100);
	}
	fx_fini(&f);
}

static void test_weighted_shares(void **state)
{
	check_share(SL_BAL_ROUND_ROBIN, 0.001);
	check_share(SL_BAL_MAGLEV, 0.15);
	check_share(SL_BAL_KETAMA, 0.15);
}

/* Equal weights and concurrent requests (64 in flight, oldest ends first): every
 * in-flight balancer spreads evenly, within 10%. */
static void test_inflight_balancers_even(void **state)
{
	enum sl_balance bs[] = {SL_BAL_LEAST_CONN, SL_BAL_RANDOM_TWO, SL_BAL_EWMA};
	for (unsigned int b = 0; b < 3; b++) {
		struct sl_lb_policy p = policy(bs[b]);
		struct fx f;
		fx_init(&f, mkset_from(&p, 0, 8, NULL, 1, NULL));
		struct sl_lb_req q[64];
		unsigned int seen[8] = {0}, N = 100000;
		for (unsigned int k = 0; k < 64; k++)
			req_init(&f, &q[k]);
		for (unsigned int k = 0; k < N; k++) {
			struct sl_lb_req *r = &q[k % 64];
			uint64_t now = (k + 1) * MS;
			sl_lb_attempt_end(r, SL_LB_RESPONSE, 200, 5 * MS, now);
			req_init(&f, r);
			int i = sl_lb_pick(r, 0, now);
			assert_true(i >= 0);
			seen[i]++;
		}
		for (unsigned int k = 0; k < 64; k++)
			sl_lb_attempt_end(&q[k], SL_LB_NONE, 0, 0, 1);
		for (unsigned int i = 0; i < 8; i++)
			if (fabs(seen[i] - N / 8.0) > 0.10 * N / 8.0)
				fail_msg("balancer %d: server %u got %u of %u", bs[b], i, seen[i], N);
		assert_int_equal(atomic_load(&f.u->inflight), 0);
		fx_fini(&f);
	}
}

/* Keys that move when one of N servers leaves (the set rebuilt without it). */
static double remapped(enum sl_balance b, unsigned int n)
{
	struct sl_lb_policy p = policy(b);
	struct sl_server **srv = calloc(n, sizeof(*srv));
	assert_non_null(srv);
	for (unsigned int i = 0; i < n; i++)
		srv[i] = mksrv(i);
	struct fx a, c;
	fx_init(&a, mkset_from(&p, 0, n, NULL, 1, srv));
	/* the same servers minus the one in the middle, in the same order */
	struct sl_server **rest = calloc(n - 1, sizeof(*rest));
	assert_non_null(rest);
	for (unsigned int i = 0, k = 0; i < n; i++)
		if (i != n / 2)
			rest[k++] = srv[i];
	fx_init(&c, mkset_from(&p, 0, n - 1, NULL, 1, rest));
	unsigned int moved = 0, K = 100000, lost = 0;
	for (unsigned int k = 0; k < K; k++) {
		int x = one(&a, key_of(k), 1), y = one(&c, key_of(k), 1);
		if ((unsigned int)x == n / 2) {
			lost++;
			continue; /* its keys must move */
		}
		if (a.set->srv[x].s != c.set->srv[y].s)
			moved++;
	}
	/* the removed server's own keys plus any other key that moved */
	double frac = (double)(moved + lost) / K;
	fx_fini(&a);
	fx_fini(&c);
	for (unsigned int i = 0; i < n; i++)
		sl_server_put(srv[i]);
	free(srv);
	free(rest);
	return frac;
}

static void test_consistent_hash_remap(void **state)
{
	unsigned int ns[] = {10, 50};
	for (unsigned int t = 0; t < 2; t++) {
		double n = ns[t];
		/* ketama moves only the leaving server's keys (1/N +- ring variance); maglev
		 * also moves a few others (the paper's ~1-2% at these table sizes) */
		double k = remapped(SL_BAL_KETAMA, ns[t]), m = remapped(SL_BAL_MAGLEV, ns[t]);
		if (k > 1.5 / n)
			fail_msg("ketama, N=%u: %.4f of keys moved, want <= %.4f", ns[t], k, 1.5 / n);
		if (m > 1.0 / n + 0.03)
			fail_msg("maglev, N=%u: %.4f of keys moved, want <= %.4f", ns[t], m,
				 1.0 / n + 0.03);
		if (k < 0.5 / n || m < 0.5 / n)
			fail_msg("N=%u: too few keys moved (ketama %.4f maglev %.4f): the removed "
				 "server owned ~1/N",
				 ns[t], k, m);
	}
}

/* Bounded load: every request carries the same key, 200 stay in flight; no server ever
 * holds more than ceil(factor x (in flight + 1) / N). */
static void test_bounded_load(void **state)
{
	struct sl_lb_policy p = policy(SL_BAL_KETAMA);
	p.hash_balance_factor = 150;
	struct fx f;
	fx_init(&f, mkset_from(&p, 0, 10, NULL, 1, NULL));
	struct sl_lb_req q[200];
	for (unsigned int k = 0; k < 200; k++) {
		req_init(&f, &q[k]);
		assert_true(sl_lb_pick(&q[k], key_of(42), 1) >= 0);
		unsigned int total = atomic_load(&f.u->inflight);
		unsigned int cap = (unsigned int)ceil(1.5 * total / 10.0) + 1;
		for (unsigned int i = 0; i < 10; i++)
			if (atomic_load(&f.set->srv[i].s->inflight) > cap)
				fail_msg("server %u holds %u of %u in flight, cap %u", i,
					 atomic_load(&f.set->srv[i].s->inflight), total, cap);
	}
	/* without the bound they would all be on one server */
	for (unsigned int k = 0; k < 200; k++)
		sl_lb_attempt_end(&q[k], SL_LB_NONE, 0, 0, 1);
	p.hash_balance_factor = 0;
	struct fx g;
	fx_init(&g, mkset_from(&p, 0, 10, NULL, 1, NULL));
	int first = one(&g, key_of(42), 1);
	for (unsigned int k = 0; k < 100; k++)
		assert_int_equal(one(&g, key_of(42), 1), first);
	fx_fini(&f);
	fx_fini(&g);
}

/* A fast server (answers in 1 ms) and a slow one (10 ms), 8 requests started per ms: the
 * in-flight balancers send the fast one at least 3x the slow one's share. */
static void test_fast_server_preferred(void **state)
{
	enum sl_balance bs[] = {SL_BAL_LEAST_CONN, SL_BAL_RANDOM_TWO, SL_BAL_EWMA};
	for (unsigned int b = 0; b < 3; b++) {
		struct sl_lb_policy p = policy(bs[b]);
		struct fx f;
		fx_init(&f, mkset_from(&p, 0, 2, NULL, 1, NULL));
		enum { SLOTS = 256 };
		struct sl_lb_req q[SLOTS];
		uint64_t done_at[SLOTS] = {0};
		unsigned int seen[2] = {0};
		for (unsigned int k = 0; k < SLOTS; k++)
			req_init(&f, &q[k]);
		unsigned int next = 0;
		for (uint64_t t = 1; t <= 5000; t++) {
			uint64_t now = t * MS;
			for (unsigned int k = 0; k < SLOTS; k++)
				if (q[k].cur >= 0 && done_at[k] <= now)
					sl_lb_attempt_end(&q[k], SL_LB_RESPONSE, 200,
							  (q[k].cur ? 10 : 1) * MS, now);
			for (unsigned int n = 0; n < 8; n++) {
				unsigned int k;
				for (k = 0; k < SLOTS && q[(next + k) % SLOTS].cur >= 0; k++)
					;
				assert_true(k < SLOTS);
				struct sl_lb_req *r = &q[(next + k) % SLOTS];
				req_init(&f, r);
				int i = sl_lb_pick(r, 0, now);
				assert_true(i >= 0);
				done_at[(next + k) % SLOTS] = now + (i ? 10 : 1) * MS;
				seen[i]++;
				next = (next + k + 1) % SLOTS;
			}
		}
		if (seen[0] < 3 * seen[1])
			fail_msg("balancer %d: fast server %u requests, slow %u", bs[b], seen[0],
				 seen[1]);
		for (unsigned int k = 0; k < SLOTS; k++)
			sl_lb_attempt_end(&q[k], SL_LB_NONE, 0, 0, 1);
		fx_fini(&f);
	}
}

/* EWMA: a server that fails fast (503 in 0.1 ms) looks slow through the failure penalty;
 * after a warm-up it gets under 5% of the requests, a plain fast/slow measure would give
 * it most of them. */
static void test_ewma_leaves_fast_failing_server(void **state)
{
	struct sl_lb_policy p = policy(SL_BAL_EWMA);
	p.outlier.consecutive_5xx = 0; /* the balancer alone, not ejection */
	struct fx f;
	fx_init(&f, mkset_from(&p, 0, 2, NULL, 1, NULL));
	unsigned int seen[2] = {0};
	for (uint64_t t = 1; t <= 20000; t++) {
		uint64_t now = t * MS;
		struct sl_lb_req q;
		req_init(&f, &q);
		int i = sl_lb_pick(&q, 0, now);
		assert_true(i >= 0);
		if (t > 1000)
			seen[i]++;
		if (i == 0)
			sl_lb_attempt_end(&q, SL_LB_RESPONSE, 503, MS / 10, now);
		else
			sl_lb_attempt_end(&q, SL_LB_RESPONSE, 200, 5 * MS, now);
	}
	if (seen[0] * 20 > seen[0] + seen[1])
		fail_msg("fast-failing server got %u of %u", seen[0], seen[0] + seen[1]);
	fx_fini(&f);
}

/* Outlier ejection: 5 consecutive 5xx eject for base_ejection_time; the next ejection
 * lasts twice as long; max_ejection_percent caps how many are out; at least one stays. */
static void test_outlier_ejection(void **state)
{
	struct sl_lb_policy p = policy(SL_BAL_ROUND_ROBIN);
	p.outlier.consecutive_5xx = 5;
	p.outlier.consecutive_connect_failures = 3;
	p.outlier.base_ejection_time = 1000;
	p.outlier.max_ejection_time = 3000;
	p.outlier.max_ejection_percent = 50;
	struct fx f;
	fx_init(&f, mkset_from(&p, 0, 4, NULL, 1, NULL));
	struct sl_server *s0 = f.set->srv[0].s;
	uint64_t now = 1000 * MS;
	for (int k = 0; k < 5; k++) {
		struct sl_lb_req q;
		req_init(&f, &q);
		q.tried[0] = 1, q.tried[1] = 2, q.tried[2] = 3, q.n_tried = 3; /* force server 0 */
		assert_int_equal(sl_lb_pick(&q, 0, now), 0);
		assert_int_equal(sl_lb_untried(&q, now), 0);
		sl_lb_attempt_end(&q, SL_LB_RESPONSE, 502, MS, now);
	}
	assert_true(atomic_load(&s0->ejected_until) == now + 1000 * MS);
	assert_false(sl_server_usable(s0, now + 999 * MS));
	assert_true(sl_server_usable(s0, now + 1000 * MS));
	assert_string_equal(sl_server_state(s0, now), "ejected");
	/* second ejection after it came back: twice as long */
	now += 1500 * MS;
	for (int k = 0; k < 5; k++) {
		struct sl_lb_req q;
		req_init(&f, &q);
		q.tried[0] = 1, q.tried[1] = 2, q.tried[2] = 3, q.n_tried = 3;
		assert_int_equal(sl_lb_pick(&q, 0, now), 0);
		sl_lb_attempt_end(&q, SL_LB_RESPONSE, 500, MS, now);
	}
	assert_true(atomic_load(&s0->ejected_until) == now + 2000 * MS);
	assert_int_equal(atomic_load(&s0->times_ejected), 2);
	/* connect failures eject server 1 (2 of 4 out = the 50% cap) */
	for (int k = 0; k < 3; k++) {
		struct sl_lb_req q;
		req_init(&f, &q);
		q.tried[0] = 2, q.tried[1] = 3, q.n_tried = 2;
		assert_int_equal(sl_lb_pick(&q, 0, now), 1);
		sl_lb_attempt_end(&q, SL_LB_CONNECT_FAIL, 0, 0, now);
	}
	assert_false(sl_server_usable(f.set->srv[1].s, now));
	/* a third one is over the cap: server 2 stays in whatever it does */
	for (int k = 0; k < 10; k++) {
		struct sl_lb_req q;
		req_init(&f, &q);
		q.tried[0] = 3, q.n_tried = 1;
		assert_int_equal(sl_lb_pick(&q, 0, now), 2);
		sl_lb_attempt_end(&q, SL_LB_CONNECT_FAIL, 0, 0, now);
	}
	assert_true(sl_server_usable(f.set->srv[2].s, now));
	assert_int_equal(atomic_load(&f.set->srv[2].s->ejections), 0);
	fx_fini(&f);

	/* three servers at 50%: one out is 33%, a second would be 67%: only one goes, however
	 * all three fail (the share was tested before the ejection: two went) */
	p.outlier.max_ejection_percent = 50;
	p.outlier.consecutive_connect_failures = 1;
	fx_init(&f, mkset_from(&p, 20, 3, NULL, 1, NULL));
	for (int k = 0; k < 30; k++) {
		struct sl_lb_req q;
		req_init(&f, &q);
		int i = sl_lb_pick(&q, 0, now);
		assert_true(i >= 0);
		sl_lb_attempt_end(&q, SL_LB_CONNECT_FAIL, 0, 0, now);
	}
	unsigned int out = 0;
	for (unsigned int i = 0; i < 3; i++)
		out += !sl_server_usable(f.set->srv[i].s, now);
	assert_int_equal(out, 1);
	fx_fini(&f);

	/* ten servers at 10%: exactly one (10%) may be out */
	p.outlier.max_ejection_percent = 10;
	fx_init(&f, mkset_from(&p, 30, 10, NULL, 1, NULL));
	for (int k = 0; k < 100; k++) {
		struct sl_lb_req q;
		req_init(&f, &q);
		int i = sl_lb_pick(&q, 0, now);
		assert_true(i >= 0);
		sl_lb_attempt_end(&q, SL_LB_CONNECT_FAIL, 0, 0, now);
	}
	out = 0;
	for (unsigned int i = 0; i < 10; i++)
		out += !sl_server_usable(f.set->srv[i].s, now);
	assert_int_equal(out, 1);
	fx_fini(&f);

	/* two servers, 100%: the last usable one is never ejected */
	p.outlier.max_ejection_percent = 100;
	fx_init(&f, mkset_from(&p, 10, 2, NULL, 1, NULL));
	for (int k = 0; k < 20; k++) {
		struct sl_lb_req q;
		req_init(&f, &q);
		int i = sl_lb_pick(&q, 0, now);
		assert_true(i >= 0);
		sl_lb_attempt_end(&q, SL_LB_RESPONSE, 503, MS, now);
	}
	assert_true(sl_server_usable(f.set->srv[0].s, now) || sl_server_usable(f.set->srv[1].s, now));
	fx_fini(&f);
}

/* Slow start: a server added to a running upstream gets a small share at first and its
 * full share once slow_start has passed. */
static void test_slow_start(void **state)
{
	struct sl_lb_policy p = policy(SL_BAL_ROUND_ROBIN);
	p.slow_start = 10000;
	struct fx f;
	fx_init(&f, mkset_from(&p, 0, 2, NULL, 1, NULL));
	uint64_t t0 = 100000 * MS;
	atomic_store(&f.set->srv[1].s->ramp_from, t0);
	unsigned int early = 0, late = 0;
	for (int k = 0; k < 10000; k++)
		early += one(&f, 0, t0 + 1000 * MS) == 1; /* 10% into the ramp */
	for (int k = 0; k < 10000; k++)
		late += one(&f, 0, t0 + 11000 * MS) == 1;
	if (early > 1000 || early < 200) /* about 10% of its half */
		fail_msg("10%% into slow start the new server got %u of 10000", early);
	assert_int_equal(late, 5000);
	fx_fini(&f);
}

/* Reload and API swaps through the registry: servers that stay keep their state; the
 * API list survives a reload whose file list did not change, the file wins when it did;
 * a worker's requests finish on the set they started with. */
static const char *conf_a = "listeners:\n"
			    "  - address: 127.0.0.1:1\n"
			    "    routes:\n"
			    "      - upstream: u\n"
			    "upstreams:\n"
			    "  u:\n"
			    "    servers:\n"
			    "      - address: 127.0.0.1:9001\n"
			    "      - address: 127.0.0.1:9002\n";
static const char *conf_b = "listeners:\n"
			    "  - address: 127.0.0.1:1\n"
			    "    routes:\n"
			    "      - upstream: u\n"
			    "upstreams:\n"
			    "  u:\n"
			    "    balance: least_conn\n"
			    "    servers:\n"
			    "      - address: 127.0.0.1:9002\n"
			    "      - address: 127.0.0.1:9003\n";

static struct sl_conf *load(const char *text)
{
	char err[256];
	struct sl_conf *c = sl_conf_parse(text, strlen(text), "t.yaml", err, sizeof(err));
	if (!c)
		fail_msg("%s", err);
	assert_int_equal(sl_lb_attach(c, 2, err, sizeof(err)), 0);
	return c;
}

static void test_swaps_keep_state(void **state)
{
	struct sl_conf *c1 = load(conf_a);
	struct sl_upstream *u = sl_upstream_lookup("u");
	assert_non_null(u);
	assert_ptr_equal(u, c1->upstreams[0].live);
	struct sl_upset *s1 = sl_upstream_current(u);
	struct sl_server *keep = s1->srv[1].s; /* 9002 */
	atomic_store(&keep->down, 1);
	atomic_store(&keep->requests, 77);

	/* a worker request begins on set 1 */
	struct sl_lb_req q;
	memset(&q, 0, sizeof(q));
	sl_lb_req_begin(&q, u, 0);
	assert_ptr_equal(q.hold->set, s1);

	/* API: replace with 9002 + 9009 */
	struct sl_conf_server cs[2];
	char err[128];
	memset(cs, 0, sizeof(cs));
	cs[0].address = "127.0.0.1:9002";
	cs[1].address = "127.0.0.1:9009";
	for (int i = 0; i < 2; i++) {
		assert_int_equal(sl_parse_addr(cs[i].address, &cs[i].addr, &cs[i].addrlen), 0);
		cs[i].weight = 1;
	}
	assert_int_equal(sl_upstream_replace(u, cs, 2, err, sizeof(err)), 0);
	struct sl_upset *s2 = sl_upstream_current(u);
	assert_ptr_not_equal(s1, s2);
	assert_ptr_equal(s2->srv[0].s, keep);
	assert_int_equal(atomic_load(&keep->requests), 77);
	/* duplicates are refused and change nothing */
	cs[1].address = "127.0.0.1:9002";
	assert_int_equal(sl_parse_addr(cs[1].address, &cs[1].addr, &cs[1].addrlen), 0);
	assert_int_equal(sl_upstream_replace(u, cs, 2, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "duplicate"));
	struct sl_upset *s2b = sl_upstream_current(u);
	assert_ptr_equal(s2b, s2);
	sl_upset_put(s2b);

	/* the running request still holds set 1; a new one on the same worker gets set 2 */
	struct sl_lb_req q2;
	memset(&q2, 0, sizeof(q2));
	sl_lb_req_begin(&q2, u, 0);
	assert_ptr_equal(q2.hold->set, s2);
	assert_ptr_equal(q.hold->set, s1);
	assert_int_equal(sl_lb_pick(&q, 0, 1), 0); /* 9001 (9002 is down) */
	assert_true(sl_lb_req_server_gone(&q));	   /* 9001 is not in set 2 */
	sl_lb_req_end(&q);
	sl_lb_req_end(&q2);

	/* reload with the same file list: the API list stays */
	struct sl_conf *c2 = load(conf_a);
	struct sl_upset *s3 = sl_upstream_current(u);
	assert_int_equal(s3->n, 2);
	assert_string_equal(s3->srv[1].s->address, "127.0.0.1:9009");
	sl_upset_put(s3);
	/* reload with a changed file list: the file wins, 9002 keeps its state, the new
	 * balancer applies */
	struct sl_conf *c3 = load(conf_b);
	struct sl_upset *s4 = sl_upstream_current(u);
	assert_int_equal(s4->pol.balance, SL_BAL_LEAST_CONN);
	assert_ptr_equal(s4->srv[0].s, keep);
	assert_true(atomic_load(&keep->down));
	assert_string_equal(s4->srv[1].s->address, "127.0.0.1:9003");
	sl_upset_put(s4);

	sl_upset_put(s1);
	sl_upset_put(s2);
	sl_upstream_put(u);
	sl_conf_put(c1);
	sl_conf_put(c2);
	sl_conf_put(c3);
	sl_lb_registry_clear();
	assert_null(sl_upstream_lookup("u"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_smooth_weighted_order),
	    cmocka_unit_test(test_new_sets_start_anywhere),
	    cmocka_unit_test(test_every_server_of_10000),
	    cmocka_unit_test(test_every_server_of_65536),
	    cmocka_unit_test(test_weights_on_large_upstreams),
	    cmocka_unit_test(test_tried_and_unusable_skipped),
	    cmocka_unit_test(test_rr_retry_keeps_first_attempts_spread),
	    cmocka_unit_test(test_weighted_shares),
	    cmocka_unit_test(test_inflight_balancers_even),
	    cmocka_unit_test(test_consistent_hash_remap),
	    cmocka_unit_test(test_bounded_load),
	    cmocka_unit_test(test_fast_server_preferred),
	    cmocka_unit_test(test_ewma_leaves_fast_failing_server),
	    cmocka_unit_test(test_outlier_ejection),
	    cmocka_unit_test(test_slow_start),
	    cmocka_unit_test(test_swaps_keep_state),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
