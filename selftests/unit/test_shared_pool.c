/* Unit tests for user/upstream/shared_pool.c on real sockets: round trip, identity,
 * newest first, eviction of the oldest at the bound, the keeper closing connections
 * whose peer closes or sends bytes, idle timeout, stats, free, and concurrent use.
 * A connection the pool closed is recognised from its peer's side (EOF), never by its
 * fd number, which the kernel may already have handed out again. Every wait is bounded. */
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
#include <poll.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <event2/event.h>

#include "sluice/service.h"
#include "upstream/conn_count.h"
#include "upstream/shared_pool.h"

#define WAIT_MS 2000 /* the keeper sweeps at least every SL_SPOOL_SWEEP_MS */

/* The keeper is a background service: here each pool runs its service definition on a
 * thread and loop of the test's own, as server/service.c would (start, tick every
 * interval, stop), so every test below sees the keeper the daemon runs. */
struct kept {
	struct sl_spool *sp;
	struct sl_service svc;
	struct event_base *base;
	struct event *tick, *stop;
	atomic_int stopping;
	pthread_t th;
};
static struct kept kepts[64];

static void kept_tick(evutil_socket_t fd, short what, void *arg)
{
	struct kept *k = arg;
	k->svc.tick(k->svc.data);
}

static void kept_stop(evutil_socket_t fd, short what, void *arg)
{
	struct kept *k = arg;
	if (atomic_load(&k->stopping))
		event_base_loopbreak(k->base);
}

static void *kept_main(void *arg)
{
	struct kept *k = arg;
	event_base_dispatch(k->base);
	k->svc.stop(k->svc.data);
	return NULL;
}

static struct sl_spool *keep_new(unsigned int cap, unsigned int max_idle, unsigned int tmo)
{
	struct sl_spool *sp = sl_spool_new(cap, max_idle, tmo);
	if (!sp)
		return NULL;
	struct kept *k = NULL;
	for (unsigned int i = 0; i < 64 && !k; i++)
		if (!kepts[i].sp)
			k = &kepts[i];
	if (!k)
		abort();
	memset(k, 0, sizeof(*k));
	k->sp = sp;
	sl_spool_keeper(sp, &k->svc);
	k->base = event_base_new();
	struct timeval iv = {k->svc.interval_ms / 1000, (k->svc.interval_ms % 1000) * 1000};
	struct timeval poll = {0, 20 * 1000};
	k->tick = event_new(k->base, -1, EV_PERSIST, kept_tick, k);
	k->stop = event_new(k->base, -1, EV_PERSIST, kept_stop, k);
	if (!k->base || !k->tick || !k->stop || event_add(k->tick, &iv) ||
	    event_add(k->stop, &poll) || k->svc.start(k->base, k->svc.data) ||
	    pthread_create(&k->th, NULL, kept_main, k))
		abort();
	return sp;
}

static void keep_free(struct sl_spool *sp)
{
	for (unsigned int i = 0; sp && i < 64; i++) {
		struct kept *k = &kepts[i];
		if (k->sp != sp)
			continue;
		atomic_store(&k->stopping, 1);
		pthread_join(k->th, NULL);
		event_free(k->tick);
		event_free(k->stop);
		event_base_free(k->base);
		k->sp = NULL;
	}
	sl_spool_free(sp);
}

#define sl_spool_new keep_new
#define sl_spool_free keep_free

static uint64_t now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

static void sleep_ms(unsigned int ms)
{
	struct timespec t = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
	nanosleep(&t, NULL);
}

static struct sl_peer mkpeer(uint16_t port, const char *sni)
{
	struct sl_peer p;
	memset(&p, 0, sizeof(p));
	struct sockaddr_in *sin = (struct sockaddr_in *)&p.addr;
	sin->sin_family = AF_INET;
	sin->sin_port = htons(port);
	sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	p.addrlen = sizeof(*sin);
	if (sni)
		snprintf(p.sni, sizeof(p.sni), "%s", sni);
	snprintf(p.name, sizeof(p.name), "127.0.0.1:%u", port);
	return p;
}

/* A connected pair: [0] goes into the pool, [1] plays the upstream server. */
static void unix_pair(int sv[2])
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
}

static void tcp_pair(int sv[2])
{
	int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(l >= 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(l, 1), 0);
	assert_int_equal(getsockname(l, (struct sockaddr *)&a, &len), 0);
	sv[0] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(sv[0] >= 0);
	assert_int_equal(connect(sv[0], (struct sockaddr *)&a, sizeof(a)), 0);
	sv[1] = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	assert_true(sv[1] >= 0);
	close(l);
}

/* The far end of fd's connection closed within ms (EOF or reset on the peer side). */
static int sees_eof(int peer_fd, int ms)
{
	uint64_t deadline = now_ms() + (uint64_t)ms;
	for (;;) {
		struct pollfd p = {.fd = peer_fd, .events = POLLIN | POLLRDHUP};
		int64_t left = (int64_t)(deadline - now_ms());
		int r = poll(&p, 1, left > 0 ? (int)left : 0);
		if (r > 0) {
			char b[64];
			ssize_t n = recv(peer_fd, b, sizeof(b), MSG_DONTWAIT);
			if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
				return 1;
			/* bytes: not what the tests send this way; keep reading */
		}
		if (left <= 0)
			return 0;
	}
}

/* Nothing happened to the connection: no EOF, no reset, no bytes. */
static int still_open(int peer_fd)
{
	struct pollfd p = {.fd = peer_fd, .events = POLLIN | POLLRDHUP};
	return poll(&p, 1, 0) == 0;
}

static struct sl_spool_stats stats(struct sl_spool *sp)
{
	struct sl_spool_stats st;
	sl_spool_get_stats(sp, &st);
	return st;
}

#define WAIT_STATS(sp, cond, ms)                                                                   \
	({                                                                                         \
		uint64_t dl_ = now_ms() + (ms);                                                    \
		struct sl_spool_stats st;                                                          \
		for (;;) {                                                                         \
			st = stats(sp);                                                            \
			if ((cond) || now_ms() > dl_)                                              \
				break;                                                             \
			sleep_ms(10);                                                              \
		}                                                                                  \
		(cond);                                                                            \
	})

static int take(struct sl_spool *sp, const struct sl_peer *p, unsigned int *req,
		struct sl_peer_count **count)
{
	unsigned int r;
	struct sl_peer_count *c = NULL;
	int fd = sl_spool_get(sp, p, sl_peer_hash(p), req ? req : &r, count ? count : &c);
	return fd;
}

static void park(struct sl_spool *sp, int fd, const struct sl_peer *p, unsigned int req,
		 struct sl_peer_count *count)
{
	assert_int_equal(sl_spool_put(sp, fd, p, sl_peer_hash(p), req, count), 0);
}

static void test_round_trip(void **state)
{
	struct sl_spool *sp = sl_spool_new(16, 16, 60000);
	assert_non_null(sp);
	struct sl_peer a = mkpeer(8080, NULL);
	struct sl_peer_count cnt = {.conns = 1};
	int sv[2];
	tcp_pair(sv);

	park(sp, sv[0], &a, 7, &cnt);
	struct sl_spool_stats st = stats(sp);
	assert_int_equal(st.parked, 1);
	assert_int_equal(st.idle, 1);
	assert_int_equal(st.hits, 0);

	unsigned int req = 0;
	struct sl_peer_count *c = NULL;
	assert_int_equal(take(sp, &a, &req, &c), sv[0]);
	assert_int_equal(req, 7);
	assert_ptr_equal(c, &cnt);
	assert_int_equal(atomic_load(&cnt.conns), 1); /* handed over, not dropped */
	st = stats(sp);
	assert_int_equal(st.hits, 1);
	assert_int_equal(st.idle, 0);
	assert_int_equal(take(sp, &a, NULL, NULL), -ENOENT);
	/* the connection works: it is the same socket, untouched */
	assert_int_equal(write(sv[0], "ping", 4), 4);
	char b[8];
	assert_int_equal(read(sv[1], b, sizeof(b)), 4);
	assert_memory_equal(b, "ping", 4);
	/* count may be NULL on both sides */
	park(sp, sv[0], &a, 0, NULL);
	unsigned int r2;
	assert_int_equal(sl_spool_get(sp, &a, sl_peer_hash(&a), &r2, NULL), sv[0]);

	sl_spool_free(sp);
	assert_true(still_open(sv[1])); /* taken back before free: not the pool's to close */
	close(sv[0]);
	close(sv[1]);
}

static void test_identity(void **state)
{
	struct sl_spool *sp = sl_spool_new(16, 16, 60000);
	assert_non_null(sp);
	struct sl_peer a = mkpeer(443, "a.example"), b = mkpeer(443, "b.example");
	struct sl_peer tls = a, other_port = mkpeer(444, "a.example"), renamed = a;
	tls.tls = 1;
	snprintf(renamed.name, sizeof(renamed.name), "not-part-of-identity");
	int sv[2];
	unix_pair(sv);
	park(sp, sv[0], &a, 0, NULL);

	unsigned int r;
	assert_int_equal(take(sp, &b, NULL, NULL), -ENOENT);
	assert_int_equal(take(sp, &tls, NULL, NULL), -ENOENT);
	assert_int_equal(take(sp, &other_port, NULL, NULL), -ENOENT);
	/* same hash, other identity (a collision): still not a match */
	assert_int_equal(sl_spool_get(sp, &b, sl_peer_hash(&a), &r, NULL), -ENOENT);
	assert_int_equal(stats(sp).hits, 0);
	assert_int_equal(stats(sp).idle, 1);
	/* the name is for logs only */
	assert_int_equal(take(sp, &renamed, NULL, NULL), sv[0]);
	assert_int_equal(stats(sp).hits, 1);
	sl_spool_free(sp);
	close(sv[0]);
	close(sv[1]);
}

static void test_newest_first(void **state)
{
	struct sl_spool *sp = sl_spool_new(16, 16, 60000);
	assert_non_null(sp);
	struct sl_peer a = mkpeer(80, NULL), b = mkpeer(81, NULL);
	int s[3][2], o[2];
	for (int i = 0; i < 3; i++) {
		unix_pair(s[i]);
		park(sp, s[i][0], &a, (unsigned int)i, NULL);
		if (i == 1) {
			unix_pair(o);
			park(sp, o[0], &b, 9, NULL);
		}
	}
	unsigned int r;
	for (int i = 2; i >= 0; i--) {
		assert_int_equal(take(sp, &a, &r, NULL), s[i][0]);
		assert_int_equal(r, i);
	}
	assert_int_equal(take(sp, &a, NULL, NULL), -ENOENT);
	assert_int_equal(take(sp, &b, &r, NULL), o[0]);
	assert_int_equal(r, 9);
	sl_spool_free(sp);
	for (int i = 0; i < 3; i++) {
		close(s[i][0]);
		close(s[i][1]);
	}
	close(o[0]);
	close(o[1]);
}

/* Full (by capacity or by max_idle): the oldest parked connection, whatever its peer,
 * is closed to make room, and its connection count dropped. */
static void check_evicts_oldest(unsigned int capacity, unsigned int max_idle, unsigned int keep)
{
	struct sl_spool *sp = sl_spool_new(capacity, max_idle, 60000);
	assert_non_null(sp);
	unsigned int n = keep + 2;
	int sv[16][2];
	struct sl_peer_count cnt[16];
	struct sl_peer p[16];
	assert_true(n <= 16);
	for (unsigned int i = 0; i < n; i++) {
		unix_pair(sv[i]);
		p[i] = mkpeer((uint16_t)(9000 + i), NULL);
		atomic_init(&cnt[i].conns, 1);
		park(sp, sv[i][0], &p[i], 0, &cnt[i]);
		assert_true(stats(sp).idle <= keep);
	}
	struct sl_spool_stats st = stats(sp);
	assert_int_equal(st.parked, n);
	assert_int_equal(st.evicted, 2);
	assert_int_equal(st.idle, keep);
	for (unsigned int i = 0; i < 2; i++) {
		assert_true(sees_eof(sv[i][1], WAIT_MS));
		assert_int_equal(atomic_load(&cnt[i].conns), 0);
		assert_int_equal(take(sp, &p[i], NULL, NULL), -ENOENT);
	}
	for (unsigned int i = 2; i < n; i++) {
		assert_true(still_open(sv[i][1]));
		assert_int_equal(atomic_load(&cnt[i].conns), 1);
		assert_int_equal(take(sp, &p[i], NULL, NULL), sv[i][0]);
		close(sv[i][0]);
	}
	sl_spool_free(sp);
	for (unsigned int i = 0; i < n; i++)
		close(sv[i][1]);
}

static void test_evicts_oldest_at_capacity(void **state)
{
	check_evicts_oldest(3, 3, 3);
}

static void test_evicts_oldest_at_max_idle(void **state)
{
	check_evicts_oldest(8, 2, 2);
}

static void test_max_idle_clamped_to_capacity(void **state)
{
	check_evicts_oldest(2, 100, 2);
}

static void test_lower_limit_closes_oldest(void **state)
{
	struct sl_spool *sp = sl_spool_new(8, 8, 60000);
	assert_non_null(sp);
	struct sl_peer a = mkpeer(80, NULL);
	int sv[4][2];
	for (int i = 0; i < 4; i++) {
		unix_pair(sv[i]);
		park(sp, sv[i][0], &a, 0, NULL);
	}
	sl_spool_set_limits(sp, 1, 60000);
	struct sl_spool_stats st = stats(sp);
	assert_int_equal(st.evicted, 3);
	assert_int_equal(st.idle, 1);
	for (int i = 0; i < 3; i++)
		assert_true(sees_eof(sv[i][1], WAIT_MS));
	assert_true(still_open(sv[3][1]));
	assert_int_equal(take(sp, &a, NULL, NULL), sv[3][0]);
	/* and the new bound holds for later puts */
	park(sp, sv[3][0], &a, 0, NULL);
	int x[2];
	unix_pair(x);
	park(sp, x[0], &a, 0, NULL);
	assert_true(sees_eof(sv[3][1], WAIT_MS));
	assert_int_equal(take(sp, &a, NULL, NULL), x[0]);
	sl_spool_free(sp);
	for (int i = 0; i < 4; i++)
		close(sv[i][1]);
	close(x[0]);
	close(x[1]);
}

static void test_max_idle_zero(void **state)
{
	struct sl_spool *sp = sl_spool_new(8, 0, 60000);
	assert_non_null(sp);
	struct sl_peer a = mkpeer(80, NULL);
	struct sl_peer_count cnt = {.conns = 1};
	int sv[2];
	unix_pair(sv);
	assert_int_equal(sl_spool_put(sp, sv[0], &a, sl_peer_hash(&a), 0, &cnt), -ENOSPC);
	assert_true(sees_eof(sv[1], WAIT_MS)); /* ownership passed: closed at once */
	assert_int_equal(atomic_load(&cnt.conns), 0);
	assert_int_equal(stats(sp).idle, 0);
	assert_int_equal(take(sp, &a, NULL, NULL), -ENOENT);
	sl_spool_free(sp);
	close(sv[1]);
}

/* An fd epoll cannot watch is not parked, but still closed (ownership passes in every
 * case), with its count dropped. */
static void test_unwatchable_fd(void **state)
{
	struct sl_spool *sp = sl_spool_new(8, 8, 60000);
	assert_non_null(sp);
	struct sl_peer a = mkpeer(80, NULL);
	struct sl_peer_count cnt = {.conns = 1};
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	struct stat before;
	assert_int_equal(fstat(fd, &before), 0);
	assert_true(sl_spool_put(sp, fd, &a, sl_peer_hash(&a), 0, &cnt) < 0);
	struct stat after;
	/* nothing was opened since: the number is free again, or not /dev/null any more */
	assert_true(fstat(fd, &after) < 0 || after.st_ino != before.st_ino);
	assert_int_equal(atomic_load(&cnt.conns), 0);
	assert_int_equal(stats(sp).idle, 0);
	assert_int_equal(take(sp, &a, NULL, NULL), -ENOENT);
	sl_spool_free(sp);
}

/* The error returned is epoll's, not whatever the clean-up after it left in errno: an
 * epoll fd with 4 epoll levels under it makes EPOLL_CTL_ADD fail with ELOOP, and the EPOLL_CTL_DEL
 * that unlinking the slot does then fails with ENOENT. */
static void test_put_error_is_epolls(void **state)
{
	struct sl_spool *sp = sl_spool_new(8, 8, 60000);
	assert_non_null(sp);
	struct sl_peer a = mkpeer(80, NULL);
	struct sl_peer_count cnt = {.conns = 1};
	int chain[5];
	for (int i = 0; i < 5; i++) {
		chain[i] = epoll_create1(EPOLL_CLOEXEC);
		assert_true(chain[i] >= 0);
		if (i) {
			struct epoll_event e = {.events = EPOLLIN};
			assert_int_equal(epoll_ctl(chain[i], EPOLL_CTL_ADD, chain[i - 1], &e), 0);
		}
	}
	assert_int_equal(sl_spool_put(sp, chain[4], &a, sl_peer_hash(&a), 0, &cnt), -ELOOP);
	assert_int_equal(atomic_load(&cnt.conns), 0);
	assert_int_equal(stats(sp).idle, 0);
	for (int i = 0; i < 4; i++)
		close(chain[i]);
	sl_spool_free(sp);
}

static void test_keeper_closes_when_peer_closes(void **state)
{
	struct sl_spool *sp = sl_spool_new(8, 8, 60000);
	assert_non_null(sp);
	struct sl_peer a = mkpeer(80, NULL), b = mkpeer(81, NULL);
	struct sl_peer_count ca = {.conns = 1}, cb = {.conns = 1};
	int x[2], y[2];
	tcp_pair(x);
	tcp_pair(y);
	park(sp, x[0], &a, 3, &ca);
	park(sp, y[0], &b, 3, &cb);
	/* the upstream server closes one of them */
	close(x[1]);
	assert_true(WAIT_STATS(sp, st.closed_idle == 1 && st.idle == 1, WAIT_MS));
	assert_int_equal(atomic_load(&ca.conns), 0);
	assert_int_equal(take(sp, &a, NULL, NULL), -ENOENT);
	/* the other one is untouched */
	assert_int_equal(atomic_load(&cb.conns), 1);
	assert_true(still_open(y[1]));
	assert_int_equal(take(sp, &b, NULL, NULL), y[0]);
	struct sl_spool_stats st = stats(sp);
	assert_int_equal(st.closed_idle, 1);
	assert_int_equal(st.timed_out, 0);
	assert_int_equal(st.evicted, 0);
	sl_spool_free(sp);
	close(y[0]);
	close(y[1]);
}

static void test_keeper_closes_on_stray_bytes(void **state)
{
	struct sl_spool *sp = sl_spool_new(8, 8, 60000);
	assert_non_null(sp);
	struct sl_peer a = mkpeer(80, NULL);
	int sv[2];
	unix_pair(sv);
	park(sp, sv[0], &a, 0, NULL);
	/* bytes nobody asked for (a late response, a 408): the connection is out of sync */
	assert_int_equal(write(sv[1], "HTTP/1.1 408", 12), 12);
	assert_true(WAIT_STATS(sp, st.closed_idle == 1 && st.idle == 0, WAIT_MS));
	assert_true(sees_eof(sv[1], WAIT_MS));
	assert_int_equal(take(sp, &a, NULL, NULL), -ENOENT);
	sl_spool_free(sp);
	close(sv[1]);
}

static void test_idle_timeout(void **state)
{
	struct sl_spool *sp = sl_spool_new(8, 8, 200);
	assert_non_null(sp);
	struct sl_peer a = mkpeer(80, NULL);
	struct sl_peer_count cnt = {.conns = 1};
	int sv[2];
	unix_pair(sv);
	park(sp, sv[0], &a, 0, &cnt);
	/* well before the timeout it is there */
	assert_int_equal(take(sp, &a, NULL, NULL), sv[0]);
	uint64_t t0 = now_ms();
	park(sp, sv[0], &a, 0, &cnt);
	/* Not before its time: wake the keeper (which scans for timeouts on every wakeup)
	 * with short-lived connections whose peer closes, for 150 ms. */
	struct sl_peer other = mkpeer(81, NULL);
	unsigned int wakeups = 0;
	while (now_ms() - t0 < 150) {
		int w[2];
		unix_pair(w);
		park(sp, w[0], &other, 0, NULL);
		close(w[1]);
		wakeups++;
		assert_true(WAIT_STATS(sp, st.closed_idle == wakeups, WAIT_MS));
		sleep_ms(10);
	}
	if (now_ms() - t0 < 190) {
		assert_int_equal(stats(sp).timed_out, 0);
		assert_true(still_open(sv[1]));
	}
	assert_true(WAIT_STATS(sp, st.timed_out == 1 && st.idle == 0, WAIT_MS));
	uint64_t took = now_ms() - t0;
	assert_true(took >= 200);
	assert_true(sees_eof(sv[1], WAIT_MS));
	assert_int_equal(atomic_load(&cnt.conns), 0);
	assert_int_equal(take(sp, &a, NULL, NULL), -ENOENT);
	struct sl_spool_stats st = stats(sp);
	assert_int_equal(st.closed_idle, wakeups);
	assert_int_equal(st.parked, 2 + wakeups);
	assert_int_equal(st.hits, 1);
	sl_spool_free(sp);
	close(sv[1]);
}

/* Once taken, a connection is the worker's: the keeper no longer watches or closes it,
 * even when its peer closes. */
static void test_taken_connection_left_alone(void **state)
{
	struct sl_spool *sp = sl_spool_new(8, 8, 60000);
	assert_non_null(sp);
	struct sl_peer a = mkpeer(80, NULL), b = mkpeer(81, NULL);
	int x[2], canary[2];
	tcp_pair(x);
	tcp_pair(canary);
	park(sp, x[0], &a, 0, NULL);
	assert_int_equal(take(sp, &a, NULL, NULL), x[0]);
	struct stat before;
	assert_int_equal(fstat(x[0], &before), 0);
	park(sp, canary[0], &b, 0, NULL);
	close(x[1]);
	close(canary[1]);
	/* the keeper has seen the canary's EOF, which came after x's */
	assert_true(WAIT_STATS(sp, st.closed_idle >= 1, WAIT_MS));
	struct stat after;
	assert_int_equal(fstat(x[0], &after), 0);
	assert_int_equal(after.st_ino, before.st_ino);
	assert_int_equal(stats(sp).closed_idle, 1);
	char c;
	assert_int_equal(recv(x[0], &c, 1, MSG_DONTWAIT), 0); /* ours to see the EOF */
	sl_spool_free(sp);
	close(x[0]);
}

static void test_free_closes_everything(void **state)
{
	struct sl_spool *sp = sl_spool_new(8, 8, 60000);
	assert_non_null(sp);
	int sv[5][2];
	struct sl_peer_count cnt[5];
	for (int i = 0; i < 5; i++) {
		struct sl_peer p = mkpeer((uint16_t)(80 + i % 2), NULL);
		(i % 2 ? tcp_pair : unix_pair)(sv[i]);
		atomic_init(&cnt[i].conns, 1);
		park(sp, sv[i][0], &p, 0, &cnt[i]);
	}
	assert_int_equal(stats(sp).idle, 5);
	sl_spool_free(sp);
	for (int i = 0; i < 5; i++) {
		assert_true(sees_eof(sv[i][1], WAIT_MS));
		assert_int_equal(atomic_load(&cnt[i].conns), 0);
		close(sv[i][1]);
	}
	sl_spool_free(NULL);
}

/* Workers park and take concurrently while the keeper runs: every take returns one of
 * the taker's own connections, none is lost or handed out twice. Hashes are chosen to
 * share one bucket chain. */
#define T_THREADS 4
#define T_CONNS 4
#define T_ROUNDS 3000

struct tctx {
	struct sl_spool *sp;
	int id;
	int fds[T_CONNS][2];
	int errors;
};

static void *worker(void *arg)
{
	struct tctx *t = arg;
	struct sl_peer p = mkpeer((uint16_t)(20000 + t->id), NULL);
	uint64_t hash = 5 + 1024ull * (uint64_t)(t->id + 1);
	int in_pool[T_CONNS] = {0};
	for (int r = 0; r < T_ROUNDS; r++) {
		int i = r % T_CONNS;
		if (!in_pool[i]) {
			if (sl_spool_put(t->sp, t->fds[i][0], &p, hash, (unsigned int)i, NULL))
				t->errors++;
			in_pool[i] = 1;
		}
		if (r % 3 == 2) {
			unsigned int req;
			int fd = sl_spool_get(t->sp, &p, hash, &req, NULL);
			int j;
			for (j = 0; j < T_CONNS && !(in_pool[j] && t->fds[j][0] == fd); j++)
				;
			if (j == T_CONNS || req != (unsigned int)j)
				t->errors++;
			else
				in_pool[j] = 0;
		}
	}
	for (;;) {
		unsigned int req;
		int fd = sl_spool_get(t->sp, &p, hash, &req, NULL);
		if (fd < 0)
			break;
		if (req >= T_CONNS || t->fds[req][0] != fd || !in_pool[req])
			t->errors++;
		else
			in_pool[req] = 0;
	}
	for (int j = 0; j < T_CONNS; j++)
		if (in_pool[j])
			t->errors++;
	return NULL;
}

static void test_concurrent_workers(void **state)
{
	struct sl_spool *sp = sl_spool_new(T_THREADS * T_CONNS, T_THREADS * T_CONNS, 60000);
	assert_non_null(sp);
	struct tctx t[T_THREADS];
	pthread_t th[T_THREADS];
	for (int i = 0; i < T_THREADS; i++) {
		t[i].sp = sp;
		t[i].id = i;
		t[i].errors = 0;
		for (int j = 0; j < T_CONNS; j++)
			unix_pair(t[i].fds[j]);
		assert_int_equal(pthread_create(&th[i], NULL, worker, &t[i]), 0);
	}
	for (int i = 0; i < T_THREADS; i++) {
		assert_int_equal(pthread_join(th[i], NULL), 0);
		assert_int_equal(t[i].errors, 0);
	}
	struct sl_spool_stats st = stats(sp);
	assert_int_equal(st.idle, 0);
	assert_int_equal(st.evicted, 0);
	assert_int_equal(st.closed_idle, 0);
	assert_int_equal(st.parked, st.hits);
	sl_spool_free(sp);
	for (int i = 0; i < T_THREADS; i++)
		for (int j = 0; j < T_CONNS; j++) {
			assert_true(still_open(t[i].fds[j][1]));
			close(t[i].fds[j][0]);
			close(t[i].fds[j][1]);
		}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_round_trip),
	    cmocka_unit_test(test_identity),
	    cmocka_unit_test(test_newest_first),
	    cmocka_unit_test(test_evicts_oldest_at_capacity),
	    cmocka_unit_test(test_evicts_oldest_at_max_idle),
	    cmocka_unit_test(test_max_idle_clamped_to_capacity),
	    cmocka_unit_test(test_lower_limit_closes_oldest),
	    cmocka_unit_test(test_max_idle_zero),
	    cmocka_unit_test(test_unwatchable_fd),
	    cmocka_unit_test(test_put_error_is_epolls),
	    cmocka_unit_test(test_keeper_closes_when_peer_closes),
	    cmocka_unit_test(test_keeper_closes_on_stray_bytes),
	    cmocka_unit_test(test_idle_timeout),
	    cmocka_unit_test(test_taken_connection_left_alone),
	    cmocka_unit_test(test_free_closes_everything),
	    cmocka_unit_test(test_concurrent_workers),
	};
	return cmocka_run_group_tests_name("shared_pool", tests, NULL, NULL);
}
