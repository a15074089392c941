/* Unit tests for user/upstream/pool.c: LIFO per peer, LRU eviction per upstream group,
 * independent groups, peer identity as the key (not the name), bounds, removal from the
 * middle, drain. Connections are built by hand: the local pool never touches their fds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>

#include <cmocka.h>

#include "upstream/connector.h"
#include "upstream/pool.h"

/* Every connection a test makes, freed by teardown. */
#define MAX_CONNS 8192
static struct sl_upconn *made[MAX_CONNS];
static unsigned int n_made;

static struct sl_peer mkpeer(uint16_t port)
{
	struct sl_peer p;
	memset(&p, 0, sizeof(p));
	struct sockaddr_in *sin = (struct sockaddr_in *)&p.addr;
	sin->sin_family = AF_INET;
	sin->sin_port = htons(port);
	sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	p.addrlen = sizeof(*sin);
	snprintf(p.name, sizeof(p.name), "127.0.0.1:%u", port);
	return p;
}

/* An idle connection to peer; id goes into fd (never used as one) to tell them apart. */
static struct sl_upconn *mkconn(const struct sl_peer *peer, int id)
{
	struct sl_upconn *c = calloc(1, sizeof(*c));
	assert_non_null(c);
	assert_true(n_made < MAX_CONNS);
	made[n_made++] = c;
	c->io.fd = id;
	c->peer = *peer;
	c->peer_hash = sl_peer_hash(peer);
	return c;
}

static int setup(void **state)
{
	struct sl_pool *p = malloc(sizeof(*p));
	if (!p)
		return -1;
	sl_pool_init(p);
	*state = p;
	n_made = 0;
	return 0;
}

static int teardown(void **state)
{
	struct sl_pool *p = *state;
	sl_pool_destroy(p);
	free(p);
	for (unsigned int i = 0; i < n_made; i++)
		free(made[i]);
	n_made = 0;
	return 0;
}

/* Every invariant of the structure: key stacks and group LRU lists doubly linked and
 * consistent with their counts, each connection in exactly the key and group it names. */
static void check_consistent(const struct sl_pool *p)
{
	unsigned int total = 0, keys = 0;
	for (unsigned int b = 0; b < SL_POOL_BUCKETS; b++) {
		for (const struct sl_pool_key *k = p->buckets[b]; k; k = k->next) {
			keys++;
			assert_int_equal(k->hash % SL_POOL_BUCKETS, b);
			unsigned int n = 0;
			const struct sl_link *prev = NULL;
			for (const struct sl_link *l = k->stack.head; l; l = l->next) {
				const struct sl_upconn *c = sl_container_of(l, struct sl_upconn, kl);
				assert_ptr_equal(l->prev, prev);
				assert_ptr_equal(c->key, k);
				assert_true(sl_peer_same(&c->peer, &k->peer));
				assert_true(c->group < p->n_groups);
				prev = l;
				n++;
				assert_true(n <= p->n_idle);
			}
			assert_ptr_equal(k->stack.tail, prev);
			assert_int_equal(n, k->count);
			total += n;
		}
	}
	assert_int_equal(keys, p->n_keys);
	assert_int_equal(total, p->n_idle);
	unsigned int gtotal = 0;
	for (unsigned int g = 0; g < p->n_groups; g++) {
		const struct sl_pool_group *gr = &p->groups[g];
		unsigned int n = 0;
		const struct sl_link *prev = NULL;
		for (const struct sl_link *l = gr->lru.head; l; l = l->next) {
			const struct sl_upconn *c = sl_container_of(l, struct sl_upconn, lru);
			assert_ptr_equal(l->prev, prev);
			assert_int_equal(c->group, g);
			assert_non_null(c->key);
			prev = l;
			n++;
			assert_true(n <= p->n_idle);
		}
		assert_ptr_equal(gr->lru.tail, prev);
		assert_int_equal(n, gr->n_idle);
		gtotal += n;
	}
	assert_int_equal(gtotal, p->n_idle);
}

/* A connection out of the pool carries no pool links. */
static void assert_detached(const struct sl_upconn *c)
{
	assert_null(c->key);
	assert_null(c->kl.prev);
	assert_null(c->kl.next);
	assert_null(c->lru.prev);
	assert_null(c->lru.next);
}

static void put_ok(struct sl_pool *p, struct sl_upconn *c, unsigned int g, unsigned int max,
		   struct sl_upconn *expect_evicted)
{
	struct sl_upconn *ev = (struct sl_upconn *)(uintptr_t)1;
	assert_int_equal(sl_pool_put(p, c, g, max, &ev), 0);
	assert_ptr_equal(ev, expect_evicted);
	if (ev)
		assert_detached(ev);
	check_consistent(p);
}

static struct sl_upconn *get(struct sl_pool *p, const struct sl_peer *peer)
{
	struct sl_upconn *c = sl_pool_get(p, peer, sl_peer_hash(peer));
	if (c)
		assert_detached(c);
	check_consistent(p);
	return c;
}

static void test_lifo_per_peer(void **state)
{
	struct sl_pool *p = *state;
	struct sl_peer a = mkpeer(8080);
	unsigned int g = sl_pool_group(p, "u");
	struct sl_upconn *c[5];

	assert_null(get(p, &a));
	for (int i = 0; i < 5; i++) {
		c[i] = mkconn(&a, i);
		put_ok(p, c[i], g, 128, NULL);
	}
	assert_int_equal(p->n_idle, 5);
	/* newest first */
	assert_ptr_equal(get(p, &a), c[4]);
	assert_ptr_equal(get(p, &a), c[3]);
	/* parked again, it is the newest */
	put_ok(p, c[4], g, 128, NULL);
	assert_ptr_equal(get(p, &a), c[4]);
	assert_ptr_equal(get(p, &a), c[2]);
	assert_ptr_equal(get(p, &a), c[1]);
	assert_ptr_equal(get(p, &a), c[0]);
	assert_null(get(p, &a));
	assert_int_equal(p->n_idle, 0);
	assert_int_equal(p->groups[g].n_idle, 0);
}

static void test_lru_eviction_across_peers(void **state)
{
	struct sl_pool *p = *state;
	struct sl_peer a = mkpeer(1001), b = mkpeer(1002), c = mkpeer(1003);
	unsigned int g = sl_pool_group(p, "u");
	struct sl_upconn *a1 = mkconn(&a, 1), *b1 = mkconn(&b, 2), *a2 = mkconn(&a, 3);
	struct sl_upconn *b2 = mkconn(&b, 4), *c1 = mkconn(&c, 5), *c2 = mkconn(&c, 6);

	put_ok(p, a1, g, 3, NULL);
	put_ok(p, b1, g, 3, NULL);
	put_ok(p, a2, g, 3, NULL);
	/* full: the least recently parked (a1) goes, though b has fewer idle than a */
	put_ok(p, b2, g, 3, a1);
	assert_int_equal(p->groups[g].n_idle, 3);
	put_ok(p, c1, g, 3, b1);
	/* a now has one connection left (a2), and it is the oldest of the group */
	put_ok(p, c2, g, 3, a2);
	assert_null(get(p, &a));
	assert_ptr_equal(get(p, &b), b2);
	assert_null(get(p, &b));
	assert_ptr_equal(get(p, &c), c2);
	assert_ptr_equal(get(p, &c), c1);
	assert_int_equal(p->n_idle, 0);
}

static void test_lru_is_refreshed_by_reuse(void **state)
{
	struct sl_pool *p = *state;
	struct sl_peer a = mkpeer(1001), b = mkpeer(1002), c = mkpeer(1003);
	unsigned int g = sl_pool_group(p, "u");
	struct sl_upconn *a1 = mkconn(&a, 1), *b1 = mkconn(&b, 2), *c1 = mkconn(&c, 3);

	put_ok(p, a1, g, 2, NULL);
	put_ok(p, b1, g, 2, NULL);
	/* a1 is used and parked again: b1 is now the least recently parked */
	assert_ptr_equal(get(p, &a), a1);
	put_ok(p, a1, g, 2, NULL);
	put_ok(p, c1, g, 2, b1);
	assert_ptr_equal(get(p, &a), a1);
	assert_ptr_equal(get(p, &c), c1);
}

static void test_groups_are_independent(void **state)
{
	struct sl_pool *p = *state;
	unsigned int g1 = sl_pool_group(p, "one"), g2 = sl_pool_group(p, "two");
	assert_int_not_equal(g1, g2);
	assert_int_equal(sl_pool_group(p, "one"), g1);
	assert_int_equal(sl_pool_group(p, "two"), g2);
	assert_int_equal(sl_pool_group(p, NULL), sl_pool_group(p, ""));

	struct sl_peer a = mkpeer(2001), b = mkpeer(2002);
	struct sl_upconn *x1 = mkconn(&a, 1), *x2 = mkconn(&a, 2);
	struct sl_upconn *y1 = mkconn(&b, 3), *y2 = mkconn(&b, 4), *y3 = mkconn(&b, 5);
	put_ok(p, x1, g1, 2, NULL);
	put_ok(p, x2, g1, 2, NULL);
	/* group two fills up on its own bound; group one, older, is not touched */
	put_ok(p, y1, g2, 2, NULL);
	put_ok(p, y2, g2, 2, NULL);
	put_ok(p, y3, g2, 2, y1);
	assert_int_equal(p->groups[g1].n_idle, 2);
	assert_int_equal(p->groups[g2].n_idle, 2);
	/* each group has its own bound: group one may hold more than group two */
	struct sl_upconn *x3 = mkconn(&a, 6);
	put_ok(p, x3, g1, 5, NULL);
	assert_int_equal(p->groups[g1].n_idle, 3);
	assert_ptr_equal(get(p, &a), x3);
	assert_ptr_equal(get(p, &a), x2);
	assert_ptr_equal(get(p, &a), x1);
	assert_ptr_equal(get(p, &b), y3);
	assert_ptr_equal(get(p, &b), y2);
	assert_null(get(p, &b));
}

/* One peer reached through two upstreams: one key stack, two groups. Eviction in one
 * group unlinks from the middle of the shared stack. */
static void test_same_peer_in_two_groups(void **state)
{
	struct sl_pool *p = *state;
	unsigned int g1 = sl_pool_group(p, "one"), g2 = sl_pool_group(p, "two");
	struct sl_peer a = mkpeer(3000);
	struct sl_upconn *c1 = mkconn(&a, 1), *c2 = mkconn(&a, 2), *c3 = mkconn(&a, 3);
	struct sl_upconn *c4 = mkconn(&a, 4);

	put_ok(p, c1, g2, 2, NULL);
	put_ok(p, c2, g1, 2, NULL);
	put_ok(p, c3, g2, 2, NULL);
	assert_int_equal(p->n_keys, 1);
	/* group two is full: its oldest (c1, bottom of the stack) goes, c2 of group one stays */
	put_ok(p, c4, g2, 2, c1);
	/* a get serves the peer, whichever group parked it, newest first */
	assert_ptr_equal(get(p, &a), c4);
	assert_ptr_equal(get(p, &a), c3);
	assert_ptr_equal(get(p, &a), c2);
	assert_null(get(p, &a));
	assert_int_equal(p->groups[g1].n_idle, 0);
	assert_int_equal(p->groups[g2].n_idle, 0);
}

static void test_group_overflow_shares_last(void **state)
{
	struct sl_pool *p = *state;
	char name[32];
	for (unsigned int i = 0; i < SL_POOL_GROUPS; i++) {
		snprintf(name, sizeof(name), "u%u", i);
		assert_int_equal(sl_pool_group(p, name), i);
	}
	assert_int_equal(sl_pool_group(p, "one-too-many"), SL_POOL_GROUPS - 1);
	assert_int_equal(sl_pool_group(p, "u0"), 0);
}

/* Upstream names have no length limit in the config; the group table stores 63 bytes.
 * The same long name must still find its one group, or every release opens a new group
 * (no max_idle bound until the table is full, then every later upstream shares the last
 * group's bound); and long names sharing a prefix must stay apart. */
static void test_long_group_name(void **state)
{
	struct sl_pool *p = *state;
	char longname[100];
	memset(longname, 'x', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = 0;
	unsigned int g = sl_pool_group(p, longname);
	assert_int_equal(sl_pool_group(p, longname), g);
	assert_int_equal(p->n_groups, 1);
	/* names that differ only beyond what is stored, or in length, are other upstreams */
	char other[100], shorter[90];
	memcpy(other, longname, sizeof(other));
	other[sizeof(other) - 2] = 'y';
	memcpy(shorter, longname, sizeof(shorter) - 1);
	shorter[sizeof(shorter) - 1] = 0;
	unsigned int g2 = sl_pool_group(p, other), g3 = sl_pool_group(p, shorter);
	assert_int_not_equal(g2, g);
	assert_int_not_equal(g3, g);
	assert_int_not_equal(g3, g2);
	assert_int_equal(sl_pool_group(p, other), g2);
	assert_int_equal(sl_pool_group(p, shorter), g3);
	assert_int_equal(sl_pool_group(p, longname), g);
	assert_int_equal(p->n_groups, 3);
	/* so the bound holds for it */
	struct sl_peer a = mkpeer(9000);
	struct sl_upconn *c1 = mkconn(&a, 1), *c2 = mkconn(&a, 2);
	put_ok(p, c1, sl_pool_group(p, longname), 1, NULL);
	put_ok(p, c2, sl_pool_group(p, longname), 1, c1);
	assert_int_equal(p->n_idle, 1);
}

/* Fields that make a connection a different one. Applied to a copy of a base peer. */
static const char ca1[] = "/etc/ca-one.pem", ca2[] = "/etc/ca-two.pem";
static const char cert1[] = "/etc/cert-one.pem", cert2[] = "/etc/cert-two.pem";

static void vary(struct sl_peer *p, int how)
{
	switch (how) {
	case 0: /* base */
		break;
	case 1:
		snprintf(p->sni, sizeof(p->sni), "other.example");
		break;
	case 2:
		p->tls = !p->tls;
		break;
	case 3:
		p->verify = !p->verify;
		break;
	case 4:
		p->ca_file = ca2;
		break;
	case 5:
		p->ca_file = NULL;
		break;
	case 6:
		p->client_cert = cert2;
		break;
	case 7:
		p->client_key = cert2;
		break;
	case 8: { /* via a CONNECT proxy */
		struct sockaddr_in *px = (struct sockaddr_in *)&p->proxy;
		px->sin_family = AF_INET;
		px->sin_port = htons(3128);
		px->sin_addr.s_addr = htonl(0x7f000002);
		p->proxy_len = sizeof(*px);
		break;
	}
	case 9: { /* via another proxy */
		struct sockaddr_in *px = (struct sockaddr_in *)&p->proxy;
		px->sin_family = AF_INET;
		px->sin_port = htons(3129);
		px->sin_addr.s_addr = htonl(0x7f000002);
		p->proxy_len = sizeof(*px);
		break;
	}
	case 10: /* same address, another port */
		((struct sockaddr_in *)&p->addr)->sin_port = htons(4431);
		break;
	case 11: { /* same port, another address */
		((struct sockaddr_in *)&p->addr)->sin_addr.s_addr = htonl(0x7f000003);
		break;
	}
	}
}
#define N_VARIANTS 12

static struct sl_peer base_peer(void)
{
	struct sl_peer p = mkpeer(443);
	p.tls = 1;
	p.verify = 1;
	snprintf(p.sni, sizeof(p.sni), "api.example");
	p.ca_file = ca1;
	p.client_cert = cert1;
	p.client_key = cert1;
	/* the CONNECT proxy in case 9 differs from case 8 only in its port */
	return p;
}

static void test_key_separation(void **state)
{
	struct sl_pool *p = *state;
	unsigned int g = sl_pool_group(p, "u");
	struct sl_peer peers[N_VARIANTS];
	struct sl_upconn *c[N_VARIANTS][2];

	for (int i = 0; i < N_VARIANTS; i++) {
		peers[i] = base_peer();
		vary(&peers[i], i);
		for (int j = 0; j < i; j++)
			assert_false(sl_peer_same(&peers[i], &peers[j]));
	}
	for (int n = 0; n < 2; n++)
		for (int i = 0; i < N_VARIANTS; i++) {
			c[i][n] = mkconn(&peers[i], i * 10 + n);
			put_ok(p, c[i][n], g, 128, NULL);
		}
	assert_int_equal(p->n_keys, N_VARIANTS);
	/* each peer gets its own two back, newest first, and never another's */
	for (int i = N_VARIANTS - 1; i >= 0; i--) {
		assert_ptr_equal(get(p, &peers[i]), c[i][1]);
		assert_ptr_equal(get(p, &peers[i]), c[i][0]);
		assert_null(get(p, &peers[i]));
	}
	assert_int_equal(p->n_idle, 0);
}

/* A hash collision must not hand out another peer's connection: identity is compared,
 * not just hashed. */
static void test_hash_collision_is_not_identity(void **state)
{
	struct sl_pool *p = *state;
	unsigned int g = sl_pool_group(p, "u");
	struct sl_peer a = base_peer(), b = base_peer();
	vary(&b, 1); /* other SNI */
	struct sl_upconn *cb = mkconn(&b, 1);
	cb->peer_hash = sl_peer_hash(&a); /* forced collision */
	put_ok(p, cb, g, 128, NULL);
	assert_null(sl_pool_get(p, &a, sl_peer_hash(&a)));
	assert_ptr_equal(sl_pool_get(p, &b, sl_peer_hash(&a)), cb);
	check_consistent(p);
}

static void test_name_is_not_identity(void **state)
{
	struct sl_pool *p = *state;
	unsigned int g = sl_pool_group(p, "u");
	struct sl_peer a = base_peer(), b = base_peer();
	snprintf(b.name, sizeof(b.name), "another-name-for-it");
	/* equal strings in other buffers are the same trust anchors and identity */
	static const char ca1_copy[] = "/etc/ca-one.pem";
	b.ca_file = ca1_copy;
	assert_true(sl_peer_same(&a, &b));
	assert_int_equal(sl_peer_hash(&a), sl_peer_hash(&b));
	struct sl_upconn *ca = mkconn(&a, 1);
	put_ok(p, ca, g, 128, NULL);
	assert_ptr_equal(get(p, &b), ca);
	assert_int_equal(p->n_keys, 1);
}

static void test_bounds(void **state)
{
	struct sl_pool *p = *state;
	unsigned int g = sl_pool_group(p, "u");
	struct sl_peer a = mkpeer(5000);
	struct sl_upconn *c1 = mkconn(&a, 1), *c2 = mkconn(&a, 2);
	struct sl_upconn *ev = (struct sl_upconn *)(uintptr_t)1;

	/* max_idle 0: nothing can be parked; the caller keeps c1 */
	assert_int_equal(sl_pool_put(p, c1, g, 0, &ev), -ENOSPC);
	assert_null(ev);
	assert_detached(c1);
	assert_int_equal(p->n_idle, 0);
	assert_null(get(p, &a));
	/* a group index beyond the table */
	ev = (struct sl_upconn *)(uintptr_t)1;
	assert_int_equal(sl_pool_put(p, c1, SL_POOL_GROUPS, 10, &ev), -ENOSPC);
	assert_null(ev);
	assert_int_equal(p->n_idle, 0);
	check_consistent(p);
	/* max_idle 1: each put replaces the previous one */
	put_ok(p, c1, g, 1, NULL);
	put_ok(p, c2, g, 1, c1);
	put_ok(p, c1, g, 1, c2);
	assert_int_equal(p->n_idle, 1);
	assert_ptr_equal(get(p, &a), c1);
	assert_null(get(p, &a));
}

static void test_remove_from_middle(void **state)
{
	struct sl_pool *p = *state;
	unsigned int g = sl_pool_group(p, "u");
	struct sl_peer a = mkpeer(6001), b = mkpeer(6002);
	struct sl_upconn *c[5], *d[3];

	for (int i = 0; i < 5; i++) {
		c[i] = mkconn(&a, i);
		put_ok(p, c[i], g, 100, NULL);
		if (i < 3) {
			d[i] = mkconn(&b, 100 + i);
			put_ok(p, d[i], g, 100, NULL);
		}
	}
	/* LRU (newest first): c4 c3 d2 c2 d1 c1 d0 c0 */
	sl_pool_remove(p, c[2]); /* middle of a's stack and of the LRU */
	assert_detached(c[2]);
	check_consistent(p);
	sl_pool_remove(p, c[2]); /* no longer pooled: a no-op */
	check_consistent(p);
	sl_pool_remove(p, c[4]); /* top of a's stack, head of the LRU */
	assert_detached(c[4]);
	check_consistent(p);
	sl_pool_remove(p, c[0]); /* bottom of a's stack, tail of the LRU */
	assert_detached(c[0]);
	check_consistent(p);
	assert_int_equal(p->n_idle, 5);
	assert_int_equal(p->groups[g].n_idle, 5);
	assert_ptr_equal(p->groups[g].lru.tail, &d[0]->lru);
	assert_ptr_equal(p->groups[g].lru.head, &c[3]->lru);
	/* eviction order still follows the LRU: d0, c1, d1 */
	struct sl_upconn *e1 = mkconn(&b, 200), *e2 = mkconn(&b, 201), *e3 = mkconn(&b, 202);
	put_ok(p, e1, g, 5, d[0]);
	put_ok(p, e2, g, 5, c[1]);
	put_ok(p, e3, g, 5, d[1]);
	/* a: c3 only; b: e3 e2 e1 d2 */
	assert_ptr_equal(get(p, &a), c[3]);
	assert_null(get(p, &a));
	assert_ptr_equal(get(p, &b), e3);
	assert_ptr_equal(get(p, &b), e2);
	assert_ptr_equal(get(p, &b), e1);
	assert_ptr_equal(get(p, &b), d[2]);
	assert_null(get(p, &b));
	assert_null(p->groups[g].lru.head);
	assert_null(p->groups[g].lru.tail);
}

struct drain_log {
	struct sl_upconn *seen[256];
	unsigned int n;
};

static void drain_cb(struct sl_upconn *c, void *arg)
{
	struct drain_log *l = arg;
	assert_detached(c);
	assert_true(l->n < 256);
	l->seen[l->n++] = c;
}

static void test_drain_visits_everything(void **state)
{
	struct sl_pool *p = *state;
	unsigned int g[3] = {sl_pool_group(p, "a"), sl_pool_group(p, "b"), sl_pool_group(p, "")};
	struct sl_upconn *all[60];
	for (int i = 0; i < 60; i++) {
		struct sl_peer peer = mkpeer((uint16_t)(7000 + i % 7));
		all[i] = mkconn(&peer, i);
		put_ok(p, all[i], g[i % 3], 1000, NULL);
	}
	struct drain_log log = {.n = 0};
	sl_pool_drain(p, drain_cb, &log);
	assert_int_equal(log.n, 60);
	for (int i = 0; i < 60; i++) {
		int found = 0;
		for (unsigned int j = 0; j < log.n; j++)
			found += log.seen[j] == all[i];
		assert_int_equal(found, 1);
	}
	/* oldest first within a group */
	int last[3] = {-1, -1, -1};
	for (unsigned int j = 0; j < log.n; j++) {
		int id = log.seen[j]->io.fd;
		assert_true(id > last[id % 3]);
		last[id % 3] = id;
	}
	assert_int_equal(p->n_idle, 0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(p->groups[g[i]].n_idle, 0);
	check_consistent(p);
	for (int port = 7000; port < 7007; port++) {
		struct sl_peer peer = mkpeer((uint16_t)port);
		assert_null(get(p, &peer));
	}
	/* the pool is usable after a drain */
	struct sl_peer peer = mkpeer(7000);
	put_ok(p, all[0], g[0], 10, NULL);
	assert_ptr_equal(get(p, &peer), all[0]);
}

/* Many distinct peers over time: empty keys are dropped, so the key table stays bounded
 * while every peer still finds its connection. */
static void test_key_table_bounded(void **state)
{
	struct sl_pool *p = *state;
	unsigned int g = sl_pool_group(p, "u");
	struct sl_upconn *c = NULL;
	for (unsigned int i = 0; i < 6000; i++) {
		struct sl_peer peer = mkpeer((uint16_t)(10000 + i));
		if (!c)
			c = mkconn(&peer, 0);
		c->peer = peer;
		c->peer_hash = sl_peer_hash(&peer);
		struct sl_upconn *ev;
		assert_int_equal(sl_pool_put(p, c, g, 10, &ev), 0);
		assert_null(ev);
		assert_ptr_equal(sl_pool_get(p, &peer, c->peer_hash), c);
		assert_true(p->n_keys <= 4096);
	}
	check_consistent(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_lifo_per_peer, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_lru_eviction_across_peers, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_lru_is_refreshed_by_reuse, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_groups_are_independent, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_same_peer_in_two_groups, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_group_overflow_shares_last, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_long_group_name, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_key_separation, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_hash_collision_is_not_identity, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_name_is_not_identity, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bounds, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_remove_from_middle, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_drain_visits_everything, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_key_table_bounded, setup, teardown),
	};
	return cmocka_run_group_tests_name("pool", tests, NULL, NULL);
}
