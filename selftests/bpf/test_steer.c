/* Steering program tests with real sockets, in a private network namespace (as the
 * kernel's select_reuseport.c and migrate_reuseport.c do): a reuseport group of two
 * listeners, one per "worker", the program attached, connections made from threads
 * pinned to each CPU. Loads are written into the workers map as a worker publishes
 * them; a fresh heartbeat per write starts a new count of connections sent since. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <net/if.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "sluice_common.h"
#include "steer.skel.h"

#ifndef SO_ATTACH_REUSEPORT_EBPF
#define SO_ATTACH_REUSEPORT_EBPF 52
#endif

#define NW 2

static struct steer_bpf *skel;
static int lfd[NW];
static int ncpu;
static uint16_t port;

static uint64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static void set_worker(uint32_t w, uint32_t state, uint64_t hb, uint32_t active, uint32_t cap)
{
	struct sl_worker_state ws = {.cpu = w,
				     .state = state,
				     .heartbeat_ns = hb,
				     .active = active,
				     .max_conns = cap,
				     .n_workers = NW};
	assert_int_equal(bpf_map_update_elem(bpf_map__fd(skel->maps.workers), &w, &ws, BPF_ANY), 0);
}

/* Ready, beating now, with a published load (a new heartbeat: nothing sent since). */
static void set_load(uint32_t w, uint32_t conn_load, uint32_t busy_pm)
{
	struct sl_worker_state ws = {.cpu = w,
				     .state = SL_WORKER_READY,
				     .heartbeat_ns = now_ns(),
				     .active = conn_load,
				     .busy_pm = busy_pm,
				     .n_workers = NW};
	assert_int_equal(bpf_map_update_elem(bpf_map__fd(skel->maps.workers), &w, &ws, BPF_ANY), 0);
}

static void set_cfg(uint32_t locality, uint32_t margin, uint32_t signal)
{
	struct sl_steer_config cfg = {.n_workers = NW,
				      .n_listeners = 1,
				      .stall_ns = 200000000ull,
				      .locality = locality,
				      .load_margin = margin,
				      .load_signal = signal};
	uint32_t zero = 0;
	assert_int_equal(
	    bpf_map_update_elem(bpf_map__fd(skel->maps.steer_config), &zero, &cfg, BPF_ANY), 0);
}

/* the load-aware policy (bpf.load_margin: 10, load_signal: both); sluiced's defaults
 * (margin 1000, connections) are near-strict locality, test_locality_default below */
static void default_cfg(void)
{
	set_cfg(1, 10, SL_STEER_LOAD_BOTH);
}

static uint32_t away(uint32_t w)
{
	struct sl_steer_recent r;
	assert_int_equal(bpf_map_lookup_elem(bpf_map__fd(skel->maps.steer_recent), &w, &r), 0);
	return r.away;
}

static void all_ready(void)
{
	struct sl_steer_recent zero = {0};
	default_cfg();
	for (uint32_t w = 0; w < NW; w++) {
		set_worker(w, SL_WORKER_READY, now_ns(), 0, 0);
		/* no hysteresis state left over from an earlier test */
		assert_int_equal(
		    bpf_map_update_elem(bpf_map__fd(skel->maps.steer_recent), &w, &zero, BPF_ANY),
		    0);
	}
}

static uint64_t stat_sum(uint32_t reason)
{
	uint64_t vals[512];
	uint64_t sum = 0;
	assert_int_equal(bpf_map_lookup_elem(bpf_map__fd(skel->maps.steer_stats), &reason, vals),
			 0);
	for (int i = 0; i < libbpf_num_possible_cpus(); i++)
		sum += vals[i];
	return sum;
}

struct conn_arg {
	int cpu;
	int fd;
};

static void *connect_on_cpu(void *p)
{
	struct conn_arg *a = p;
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(a->cpu, &set);
	pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a->fd = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(a->fd, (struct sockaddr *)&sa, sizeof(sa))) {
		close(a->fd);
		a->fd = -1;
	}
	return NULL;
}

/* Connect from a thread pinned to cpu; return the worker whose listener got it. */
static int connect_and_find(int cpu, int *client)
{
	struct conn_arg a = {.cpu = cpu, .fd = -1};
	pthread_t t;
	pthread_create(&t, NULL, connect_on_cpu, &a);
	pthread_join(t, NULL);
	assert_true(a.fd >= 0);
	for (int tries = 0; tries < 200; tries++) {
		for (int w = 0; w < NW; w++) {
			if (lfd[w] < 0)
				continue;
			int c = accept4(lfd[w], NULL, NULL, SOCK_NONBLOCK);
			if (c >= 0) {
				close(c);
				if (client)
					*client = a.fd;
				else
					close(a.fd);
				return w;
			}
		}
		usleep(1000);
	}
	close(a.fd);
	fail_msg("connection from cpu %d was accepted by no listener", cpu);
	return -1;
}

static int make_listener(void)
{
	int one = 1;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, 128)) {
		close(fd);
		return -1;
	}
	if (!port) {
		socklen_t l = sizeof(sa);
		getsockname(fd, (struct sockaddr *)&sa, &l);
		port = ntohs(sa.sin_port);
	}
	return fd;
}

static void write_file(const char *path, const char *v)
{
	int fd = open(path, O_WRONLY);
	if (fd >= 0) {
		ssize_t r = write(fd, v, strlen(v));
		(void)r;
		close(fd);
	}
}

static int setup(void **state)
{
	/* private namespace: our own loopback and sysctls, nothing leaks to the host */
	if (unshare(CLONE_NEWNET)) {
		fprintf(stderr, "unshare(CLONE_NEWNET): %s (needs root)\n", strerror(errno));
		return -1;
	}
	int s = socket(AF_INET, SOCK_DGRAM, 0);
	struct ifreq ifr = {0};
	strcpy(ifr.ifr_name, "lo");
	ioctl(s, SIOCGIFFLAGS, &ifr);
	ifr.ifr_flags |= IFF_UP;
	ioctl(s, SIOCSIFFLAGS, &ifr);
	close(s);
	write_file("/proc/sys/net/ipv4/tcp_migrate_req", "1");

	ncpu = libbpf_num_possible_cpus();
	skel = steer_bpf__open_and_load();
	if (!skel) {
		fprintf(stderr, "cannot load steer.bpf.o: %s\n", strerror(errno));
		return -1;
	}
	port = 0;
	uint32_t none = SL_MAX_WORKERS;
	for (uint32_t c = 0; c < SL_MAX_WORKERS; c++)
		bpf_map_update_elem(bpf_map__fd(skel->maps.cpu_worker), &c, &none, BPF_ANY);
	for (uint32_t w = 0; w < NW; w++) {
		lfd[w] = make_listener();
		if (lfd[w] < 0)
			return -1;
		uint32_t key = w; /* listener 0 */
		uint64_t fd = (uint64_t)lfd[w], cookie;
		socklen_t cl = sizeof(cookie);
		getsockopt(lfd[w], SOL_SOCKET, SO_COOKIE, &cookie, &cl);
		uint32_t lid = 0, cpu = w % (uint32_t)ncpu;
		if (bpf_map_update_elem(bpf_map__fd(skel->maps.listeners), &key, &fd, BPF_ANY) ||
		    bpf_map_update_elem(bpf_map__fd(skel->maps.listener_ids), &cookie, &lid,
					BPF_ANY))
			return -1;
		bpf_map_update_elem(bpf_map__fd(skel->maps.cpu_worker), &cpu, &w, BPF_ANY);
	}
	default_cfg();
	int prog = bpf_program__fd(skel->progs.steer);
	if (setsockopt(lfd[0], SOL_SOCKET, SO_ATTACH_REUSEPORT_EBPF, &prog, sizeof(prog)))
		return -1;
	return 0;
}

static int teardown(void **state)
{
	for (int w = 0; w < NW; w++)
		if (lfd[w] >= 0)
			close(lfd[w]);
	steer_bpf__destroy(skel);
	return 0;
}

static void test_own_cpu(void **state)
{
	all_ready();
	uint64_t before = stat_sum(SL_STEER_OWN_CPU);
	for (int round = 0; round < 10; round++)
		for (int cpu = 0; cpu < NW && cpu < ncpu; cpu++) {
			/* a beat before each: the test accepts and closes, but does not count
			 * its accepts in worker_stats as a worker does */
			for (uint32_t w = 0; w < NW; w++)
				set_load(w, 0, 0);
			int w = connect_and_find(cpu, NULL);
			if (w != cpu)
				fail_msg("connection from cpu %d landed on worker %d, expected %d",
					 cpu, w, cpu);
		}
	int n = 10 * (NW < ncpu ? NW : ncpu);
	assert_int_equal(stat_sum(SL_STEER_OWN_CPU) - before, n);
}

static int two_cpus(void)
{
	if (ncpu >= NW)
		return 1;
	fprintf(stderr, "skipped: needs %d CPUs, have %d\n", NW, ncpu);
	return 0;
}

static void test_own_cpu_equal_loads(void **state)
{
	if (!two_cpus())
		return;
	all_ready();
	uint64_t before = stat_sum(SL_STEER_OWN_CPU);
	for (int round = 0; round < 10; round++)
		for (int cpu = 0; cpu < NW; cpu++) {
			set_load(0, 40, 0);
			set_load(1, 40, 0);
			int w = connect_and_find(cpu, NULL);
			if (w != cpu)
				fail_msg("loads equal (40/40): connection from cpu %d landed on "
					 "worker %d, not its own",
					 cpu, w);
		}
	assert_int_equal(stat_sum(SL_STEER_OWN_CPU) - before, 10 * NW);
}

static void test_much_higher_load_loses(void **state)
{
	if (!two_cpus())
		return;
	all_ready();
	uint64_t before = stat_sum(SL_STEER_P2C_LOADED);
	for (int i = 0; i < 10; i++) {
		set_load(0, 100, 0);
		set_load(1, 10, 0);
		int w = connect_and_find(0, NULL);
		if (w != 1)
			fail_msg("worker 0 with load 100 against 10 kept a connection from its "
				 "own CPU (round %d)",
				 i);
	}
	assert_int_equal(stat_sum(SL_STEER_P2C_LOADED) - before, 10);
	assert_int_equal(away(0), 1);
}

/* margin 25 %, slack 2, least loaded 40: passed over above 52, taken back at 46 or less */
static void test_hysteresis(void **state)
{
	if (!two_cpus())
		return;
	all_ready();
	set_cfg(1, 25, SL_STEER_LOAD_BOTH);
	/* inside the margin, never passed over: stays on its own worker */
	for (int i = 0; i < 5; i++) {
		set_load(0, 50, 0);
		set_load(1, 40, 0);
		if (connect_and_find(0, NULL) != 0)
			fail_msg("load 50 against 40 (inside the margin) left its own worker");
	}
	set_load(0, 53, 0);
	set_load(1, 40, 0);
	if (connect_and_find(0, NULL) != 1)
		fail_msg("load 53 against 40 (past min + 25 %% + 2 = 52) kept its own worker");
	/* back inside the margin, but not within half of it: still passed over */
	for (int i = 0; i < 5; i++) {
		set_load(0, 50, 0);
		set_load(1, 40, 0);
		if (connect_and_find(0, NULL) != 1)
			fail_msg("load 50 against 40 after being passed over: taken back too soon "
				 "(round %d)",
				 i);
	}
	assert_int_equal(away(0), 1);
	set_load(0, 47, 0);
	set_load(1, 40, 0);
	if (connect_and_find(0, NULL) != 1)
		fail_msg("load 47 against 40 (above 40 + 6): taken back too soon");
	set_load(0, 46, 0);
	set_load(1, 40, 0);
	if (connect_and_find(0, NULL) != 0)
		fail_msg("load 46 against 40 (within half the margin) not taken back");
	assert_int_equal(away(0), 0);
	default_cfg();
}

/* A burst between two heartbeats: what steer sent counts as load, so the own worker
 * does not take every connection while its published load is still the old one. */
static void test_burst_spreads(void **state)
{
	if (!two_cpus())
		return;
	all_ready();
	set_load(0, 0, 0);
	set_load(1, 0, 0);
	int got[NW] = {0};
	for (int i = 0; i < 40; i++)
		got[connect_and_find(0, NULL)]++;
	if (got[1] < 10 || got[0] < 10)
		fail_msg("40 connections from cpu 0 in one heartbeat: %d on worker 0, %d on "
			 "worker 1 (each should get at least 10)",
			 got[0], got[1]);
}

static void bump_accepted(uint32_t w)
{
	struct sl_worker_stats st;
	int fd = bpf_map__fd(skel->maps.worker_stats);
	assert_int_equal(bpf_map_lookup_elem(fd, &w, &st), 0);
	st.accepted++;
	assert_int_equal(bpf_map_update_elem(fd, &w, &st, BPF_ANY), 0);
}

/* Short connections in one heartbeat, each accepted (worker_stats.accepted) and closed
 * at once: nothing stays queued or open, so the own worker keeps them all. */
static void test_accepted_leave_the_queue(void **state)
{
	if (!two_cpus())
		return;
	all_ready();
	set_load(0, 0, 0);
	set_load(1, 0, 0);
	struct sl_worker_state ws;
	uint32_t w0 = 0;
	assert_int_equal(bpf_map_lookup_elem(bpf_map__fd(skel->maps.workers), &w0, &ws), 0);
	struct sl_worker_stats st;
	assert_int_equal(bpf_map_lookup_elem(bpf_map__fd(skel->maps.worker_stats), &w0, &st), 0);
	ws.accepted_beat = (uint32_t)st.accepted; /* as the worker publishes it at a beat */
	assert_int_equal(bpf_map_update_elem(bpf_map__fd(skel->maps.workers), &w0, &ws, BPF_ANY),
			 0);
	for (int i = 0; i < 30; i++) {
		int w = connect_and_find(0, NULL);
		if (w != 0)
			fail_msg("connection %d went to worker %d although every earlier one was "
				 "accepted and closed",
				 i, w);
		bump_accepted((uint32_t)w);
	}
}

/* sluiced's defaults (margin 1000, connections): near-strict locality, passed over only
 * past 11x the least loaded + 2 (each connection set on a fresh heartbeat) */
static void test_locality_default(void **state)
{
	if (!two_cpus())
		return;
	all_ready();
	set_cfg(1, 1000, SL_STEER_LOAD_CONNECTIONS);
	for (int i = 0; i < 10; i++) {
		set_load(0, 20, 900);
		set_load(1, 2, 0);
		if (connect_and_find(0, NULL) != 0)
			fail_msg("defaults: 20 connections against 2 (busy ignored) left its own worker");
	}
	set_load(0, 100, 0);
	set_load(1, 2, 0);
	if (connect_and_find(0, NULL) != 1)
		fail_msg("defaults: 100 connections against 2 kept its own worker");
	default_cfg();
}

static void test_locality_off(void **state)
{
	if (!two_cpus())
		return;
	all_ready();
	set_cfg(0, 25, SL_STEER_LOAD_CONNECTIONS);
	uint64_t before = stat_sum(SL_STEER_P2C_NO_LOCAL);
	for (int i = 0; i < 10; i++) {
		set_load(0, 5, 0);
		set_load(1, 0, 0);
		if (connect_and_find(0, NULL) != 1)
			fail_msg("locality off: the less loaded worker 1 lost to cpu 0's worker");
	}
	assert_int_equal(stat_sum(SL_STEER_P2C_NO_LOCAL) - before, 10);
	default_cfg();
}

static void test_cpu_signal(void **state)
{
	if (!two_cpus())
		return;
	all_ready();
	set_cfg(1, 25, SL_STEER_LOAD_CPU);
	for (int i = 0; i < 5; i++) {
		/* many connections, idle CPU: the cpu signal ignores connection counts */
		set_load(0, 500, 100);
		set_load(1, 0, 120);
		if (connect_and_find(0, NULL) != 0)
			fail_msg("cpu signal: busy 100 vs 120 per mille left its own worker");
	}
	for (int i = 0; i < 5; i++) {
		set_load(0, 0, 900);
		set_load(1, 500, 300);
		if (connect_and_find(0, NULL) != 1)
			fail_msg("cpu signal: busy 900 vs 300 per mille kept its own worker");
	}
	default_cfg();
}

/* Both signals (the default, score (connections + 1) / (1 - busy)): equal connections,
 * but the own worker's loop is busy (a CPU-heavy request, a neighbour on its CPU):
 * passed over; equal connections between two others: the less busy wins. */
static void test_busy_own_loses(void **state)
{
	if (!two_cpus())
		return;
	all_ready();
	uint64_t before = stat_sum(SL_STEER_P2C_LOADED);
	for (int i = 0; i < 10; i++) {
		set_load(0, 1, 950);
		set_load(1, 1, 100);
		if (connect_and_find(0, NULL) != 1)
			fail_msg("own worker busy 950 per mille against 100 kept the connection "
				 "(round %d)",
				 i);
	}
	assert_int_equal(stat_sum(SL_STEER_P2C_LOADED) - before, 10);
	/* a little busier (22 % against 10 %): inside the margin, kept */
	all_ready();
	for (int i = 0; i < 5; i++) {
		set_load(0, 1, 220);
		set_load(1, 1, 100);
		if (connect_and_find(0, NULL) != 0)
			fail_msg("own worker busy 220 against 100 (inside the margin) lost");
	}
	/* locality off: the tie on connections goes to the less busy, every time */
	set_cfg(0, 25, SL_STEER_LOAD_BOTH);
	for (int i = 0; i < 10; i++) {
		set_load(0, 3, 100);
		set_load(1, 3, 600);
		if (connect_and_find(1, NULL) != 0)
			fail_msg("equal connections: the busier worker 1 won the tie (round %d)", i);
	}
	default_cfg();
}

/* The least loaded worker does not count when it is not healthy: its load is not the
 * bar the own worker is held to, and it gets nothing. */
static void test_unhealthy_low_load_excluded(void **state)
{
	if (!two_cpus())
		return;
	const char *what[] = {"draining", "stalled", "at its cap"};
	for (int k = 0; k < 3; k++) {
		all_ready();
		for (int i = 0; i < 5; i++) {
			set_load(0, 200, 0);
			if (k == 0)
				set_worker(1, SL_WORKER_DRAINING, now_ns(), 0, 0);
			else if (k == 1)
				set_worker(1, SL_WORKER_READY, now_ns() - 1000000000ull, 0, 0);
			else
				set_worker(1, SL_WORKER_READY, now_ns(), 10, 10);
			for (int cpu = 0; cpu < NW; cpu++)
				if (connect_and_find(cpu, NULL) != 0)
					fail_msg("worker 1 %s (load 0) got a connection from cpu %d "
						 "over worker 0 (load 200)",
						 what[k], cpu);
		}
	}
}

static void test_draining_gets_nothing(void **state)
{
	all_ready();
	set_worker(0, SL_WORKER_DRAINING, now_ns(), 0, 0);
	uint64_t before = stat_sum(SL_STEER_P2C_DRAINING);
	for (int i = 0; i < 10; i++) {
		int w = connect_and_find(0, NULL);
		if (w != 1)
			fail_msg("draining worker 0 got a new connection (round %d)", i);
	}
	assert_int_equal(stat_sum(SL_STEER_P2C_DRAINING) - before, 10);
}

static void test_stalled_skipped_then_back(void **state)
{
	all_ready();
	set_worker(0, SL_WORKER_READY, now_ns() - 1000000000ull, 0, 0); /* beat 1 s ago */
	uint64_t before = stat_sum(SL_STEER_P2C_STALLED);
	for (int i = 0; i < 10; i++)
		if (connect_and_find(0, NULL) != 1)
			fail_msg("stalled worker 0 got a new connection (round %d)", i);
	assert_int_equal(stat_sum(SL_STEER_P2C_STALLED) - before, 10);
	set_worker(0, SL_WORKER_READY, now_ns(), 0, 0); /* it beats again */
	if (connect_and_find(0, NULL) != 0)
		fail_msg("worker 0 beat again but was not taken back");
}

static void test_overloaded_skipped(void **state)
{
	all_ready();
	set_worker(0, SL_WORKER_READY, now_ns(), 100, 100); /* at its cap */
	uint64_t before = stat_sum(SL_STEER_P2C_OVERLOADED);
	for (int i = 0; i < 5; i++)
		if (connect_and_find(0, NULL) != 1)
			fail_msg("worker 0 at its cap got a new connection (round %d)", i);
	assert_int_equal(stat_sum(SL_STEER_P2C_OVERLOADED) - before, 5);
}

static void test_all_unhealthy_still_accepted(void **state)
{
	for (uint32_t w = 0; w < NW; w++)
		set_worker(w, SL_WORKER_DRAINING, now_ns(), 0, 0);
	uint64_t before = stat_sum(SL_STEER_KERNEL_HASH);
	for (int i = 0; i < 10; i++) {
		int w = connect_and_find(i % ncpu, NULL);
		assert_true(w >= 0 && w < NW);
	}
	assert_int_equal(stat_sum(SL_STEER_KERNEL_HASH) - before, 10);
}

static void test_migrate_on_close(void **state)
{
	all_ready();
	/* queue connections on worker 0 without accepting them */
	struct conn_arg a[4];
	pthread_t t;
	for (int i = 0; i < 4; i++) {
		/* a beat before each: what was sent since the last one would make the
		 * fourth look like a burst, and it would go to worker 1 directly */
		set_load(0, 0, 0);
		set_load(1, 0, 0);
		a[i].cpu = 0;
		a[i].fd = -1;
		pthread_create(&t, NULL, connect_on_cpu, &a[i]);
		pthread_join(t, NULL);
		assert_true(a[i].fd >= 0);
	}
	usleep(20000);
	uint64_t before = stat_sum(SL_STEER_MIGRATED);
	set_worker(0, SL_WORKER_DRAINING, now_ns(), 0, 0);
	close(lfd[0]);
	lfd[0] = -1;
	int got = 0;
	for (int tries = 0; tries < 200 && got < 4; tries++) {
		int c = accept4(lfd[1], NULL, NULL, SOCK_NONBLOCK);
		if (c >= 0) {
			got++;
			close(c);
		} else {
			usleep(1000);
		}
	}
	for (int i = 0; i < 4; i++)
		close(a[i].fd);
	if (got != 4)
		fail_msg("%d of 4 queued connections reached worker 1 after worker 0 closed", got);
	assert_int_equal(stat_sum(SL_STEER_MIGRATED) - before, 4);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_own_cpu),
	    cmocka_unit_test(test_own_cpu_equal_loads),
	    cmocka_unit_test(test_much_higher_load_loses),
	    cmocka_unit_test(test_hysteresis),
	    cmocka_unit_test(test_burst_spreads),
	    cmocka_unit_test(test_accepted_leave_the_queue),
	    cmocka_unit_test(test_locality_default),
	    cmocka_unit_test(test_locality_off),
	    cmocka_unit_test(test_cpu_signal),
	    cmocka_unit_test(test_busy_own_loses),
	    cmocka_unit_test(test_unhealthy_low_load_excluded),
	    cmocka_unit_test(test_draining_gets_nothing),
	    cmocka_unit_test(test_stalled_skipped_then_back),
	    cmocka_unit_test(test_overloaded_skipped),
	    cmocka_unit_test(test_all_unhealthy_still_accepted),
	    cmocka_unit_test(test_migrate_on_close), /* last: closes worker 0's listener */
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
