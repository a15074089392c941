// SPDX-License-Identifier: GPL-2.0
/* Worker steering for sluiced's SO_REUSEPORT groups (sk_reuseport/migrate).
 *
 * New connection: the worker pinned to the CPU handling the SYN while it is healthy and
 * its load is not clearly above the least loaded healthy worker's (bpf.load_margin, with
 * hysteresis: once passed over it is taken back only within half the margin); else the
 * less loaded of two random healthy workers; else any healthy one; else no choice, so
 * the kernel's hash places it. Healthy = ready, heartbeat younger than stall_ns, under
 * its cap. Migration (a listener closing with queued requests): the same choice, never
 * the closing worker. A connection is never dropped here. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#include "sluice_common.h"

#define SK_PASS 1

struct {
	__uint(type, BPF_MAP_TYPE_REUSEPORT_SOCKARRAY);
	__uint(max_entries, SL_LISTENERS_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} listeners SEC(".maps");

/* socket cookie of every listening socket -> its listener index */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SL_LISTENERS_SLOTS);
	__type(key, __u64);
	__type(value, __u32);
} listener_ids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, SL_MAX_WORKERS);
	__type(key, __u32);
	__type(value, struct sl_worker_state);
} workers SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, SL_MAX_WORKERS);
	__type(key, __u32);
	__type(value, struct sl_worker_stats);
} worker_stats SEC(".maps");

/* CPU -> worker pinned to it (SL_MAX_WORKERS = none) */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SL_MAX_WORKERS);
	__type(key, __u32);
	__type(value, __u32);
} cpu_worker SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sl_steer_config);
} steer_config SEC(".maps");

/* per worker: connections steered to it since its last heartbeat, hysteresis state */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SL_MAX_WORKERS);
	__type(key, __u32);
	__type(value, struct sl_steer_recent);
} steer_recent SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SL_STEER_NR);
	__type(key, __u32);
	__type(value, __u64);
} steer_stats SEC(".maps");

static __always_inline void count(__u32 reason)
{
	__u64 *v = bpf_map_lookup_elem(&steer_stats, &reason);
	if (v)
		(*v)++;
}

/* The helpers below are global functions: the verifier checks each once on its own,
 * instead of once per path through the caller (inlined, their branches multiplied
 * past its limits). Each looks its worker up itself, so they take scalars only. */

/* 0 healthy, else the steering reason that describes why not */
__noinline int worker_unhealthy(__u32 w, __u64 now, __u64 stall_ns)
{
	struct sl_worker_state *ws = bpf_map_lookup_elem(&workers, &w);
	if (!ws || ws->state != SL_WORKER_READY)
		return SL_STEER_P2C_DRAINING;
	if (now > ws->heartbeat_ns && now - ws->heartbeat_ns > stall_ns)
		return SL_STEER_P2C_STALLED;
	if (ws->max_conns && ws->active >= ws->max_conns)
		return SL_STEER_P2C_OVERLOADED;
	return 0;
}

/* Connections, the load steering compares first: those open plus those in the accept
 * queue, the queue estimated from its length at the last beat, what was sent since and
 * what the worker accepted since (a burst of SYNs between two beats must not all go to
 * one worker, and connections already closed must not count). */
__noinline int worker_conns(__u32 w)
{
	struct sl_worker_state *ws = bpf_map_lookup_elem(&workers, &w);
	if (!ws)
		return 0x7fffffff;
	struct sl_steer_recent *r = bpf_map_lookup_elem(&steer_recent, &w);
	struct sl_worker_stats *st = bpf_map_lookup_elem(&worker_stats, &w);
	__u32 q = ws->queued;
	if (r && r->epoch == ws->heartbeat_ns)
		q += r->count;
	/* unsigned, so a counter that wrapped 2^32 still subtracts right */
	__u32 taken = st ? (__u32)st->accepted - ws->accepted_beat : 0;
	q = q > taken ? q - taken : 0;
	return (ws->active + q) & 0x7fffffff;
}

/* The loop's busy ratio, per mille: a worker busy with few connections (a CPU-heavy
 * request, a neighbour on its CPU) is as unable to take more. */
__noinline int worker_busy(__u32 w)
{
	struct sl_worker_state *ws = bpf_map_lookup_elem(&workers, &w);
	if (!ws)
		return 1000;
	return ws->busy_pm > 1000 ? 1000 : ws->busy_pm;
}

/* The load steering compares, in sixteenths of a connection on an idle worker. both:
 * (connections + 1) / (1 - busy), busy capped at 90 %: the work a new connection
 * queues behind, stretched by how much of the CPU the loop gets. The connection count
 * moves with every placement, so bursts spread although the ratio moves only once per
 * heartbeat (busy alone herds: every SYN in between sees the same least busy worker).
 * connections: the count alone; cpu: busy per mille alone. */
__noinline int worker_score(__u32 w, __u32 signal)
{
	if (signal == SL_STEER_LOAD_CPU)
		return worker_busy(w);
	__u64 c = (__u32)worker_conns(w);
	if (signal == SL_STEER_LOAD_CONNECTIONS)
		return (int)((c * 16) & 0x7fffffff);
	__u64 b = (__u32)worker_busy(w);
	if (b > 900)
		b = 900;
	return (int)(((c + 1) * 16000 / (1000 - b)) & 0x7fffffff);
}

/* Place the connection on worker w of listener lid, and count it against w's load
 * until w's next heartbeat publishes it. 0, or the helper's error. */
__noinline int select_worker(struct sk_reuseport_md *md, __u32 lid, __u32 w)
{
	__u32 key = lid * SL_MAX_WORKERS + w;
	if (key >= SL_LISTENERS_SLOTS)
		return -1;
	int err = bpf_sk_select_reuseport(md, &listeners, &key, 0);
	if (err)
		return err;
	struct sl_worker_state *ws = bpf_map_lookup_elem(&workers, &w);
	struct sl_steer_recent *r = bpf_map_lookup_elem(&steer_recent, &w);
	if (!ws || !r)
		return 0;
	__u64 hb = ws->heartbeat_ns;
	if (r->epoch != hb) {
		/* racy with another CPU doing the same: a count lost at a beat is noise */
		r->epoch = hb;
		r->count = 1;
	} else {
		__sync_fetch_and_add(&r->count, 1);
	}
	return 0;
}

/* Own worker w (healthy) against the least loaded healthy one (score min): 1 keep it,
 * 0 pass it over. Clearly busier = above min + margin% + slack (2 connections, or 10 %
 * busy for load_signal cpu); once passed over it stays passed over until back within
 * half of that, so that two workers near the threshold do not swap roles on every
 * connection. */
__noinline int keep_own(__u32 w, __u32 min, __u32 margin, __u32 signal)
{
	__u64 l = (__u32)worker_score(w, signal);
	__u64 over = (__u64)min * margin / 100 +
		     (signal == SL_STEER_LOAD_CPU ? SL_STEER_SLACK_CPU_PM : SL_STEER_SLACK_CONNS * 16);
	struct sl_steer_recent *r = bpf_map_lookup_elem(&steer_recent, &w);
	if (!r)
		return 0;
	if (r->away) {
		if (l > min + over / 2)
			return 0;
		r->away = 0;
		return 1;
	}
	if (l > min + over) {
		r->away = 1;
		return 0;
	}
	return 1;
}

struct scan_ctx {
	struct sk_reuseport_md *md;
	__u64 now, stall_ns;
	__u32 lid, n, start, found;
};

static long scan_one(__u32 i, struct scan_ctx *c)
{
	if (!c->n)
		return 1;
	__u32 w = (c->start + i) % c->n;
	if (worker_unhealthy(w, c->now, c->stall_ns))
		return 0;
	if (select_worker(c->md, c->lid, w) == 0) {
		c->found = 1;
		return 1;
	}
	return 0;
}

struct min_ctx {
	__u64 now, stall_ns;
	__u32 signal, min; /* min starts at ~0: the own worker is healthy, so it moves */
};

static long min_one(__u32 w, struct min_ctx *c)
{
	if (worker_unhealthy(w, c->now, c->stall_ns))
		return 0;
	/* no counter here: a value that grows each turn keeps the verifier from seeing
	 * the callback's states converge */
	__u32 l = worker_score(w, c->signal);
	if (l < c->min)
		c->min = l;
	return 0;
}

SEC("sk_reuseport/migrate")
int steer(struct sk_reuseport_md *md)
{
	__u32 zero = 0;
	struct sl_steer_config *cfg = bpf_map_lookup_elem(&steer_config, &zero);
	if (!md->sk || !cfg || cfg->n_workers == 0 || cfg->n_workers > SL_MAX_WORKERS)
		goto hash;
	__u64 cookie = bpf_get_socket_cookie(md->sk);
	__u32 *lidp = bpf_map_lookup_elem(&listener_ids, &cookie);
	if (!lidp || *lidp >= SL_MAX_LISTENERS)
		goto hash;
	__u32 lid = *lidp, n = cfg->n_workers, signal = cfg->load_signal;
	__u64 now = bpf_ktime_get_ns();
	int migrating = md->migrating_sk != NULL;

	/* 1. the worker of this CPU, unless clearly busier than the least loaded one */
	__u32 reason = SL_STEER_P2C_NO_LOCAL;
	__u32 cpu = bpf_get_smp_processor_id();
	__u32 *own = cfg->locality ? bpf_map_lookup_elem(&cpu_worker, &cpu) : NULL;
	if (own && *own < n) {
		__u32 w = *own;
		reason = worker_unhealthy(w, now, cfg->stall_ns);
		if (!reason) {
			struct min_ctx m = {.now = now,
					    .stall_ns = cfg->stall_ns,
					    .signal = signal,
					    .min = 0xffffffff};
			bpf_loop(n, min_one, &m, 0);
			if (!keep_own(w, m.min, cfg->load_margin, signal)) {
				reason = SL_STEER_P2C_LOADED;
			} else if (select_worker(md, lid, w) == 0) {
				count(migrating ? SL_STEER_MIGRATED : SL_STEER_OWN_CPU);
				return SK_PASS;
			} else {
				reason = SL_STEER_P2C_DRAINING; /* no socket in its slot */
			}
		}
	}

	/* 2. power of two choices on load among healthy workers (two different ones) */
	__u32 a = bpf_get_prandom_u32() % n, b = a;
	if (n > 1)
		b = (a + 1 + bpf_get_prandom_u32() % (n - 1)) % n;
	int ok_a = !worker_unhealthy(a, now, cfg->stall_ns);
	int ok_b = !worker_unhealthy(b, now, cfg->stall_ns);
	if (ok_b && (!ok_a || worker_score(b, signal) < worker_score(a, signal))) {
		a = b;
		ok_a = 1;
	}
	if (ok_a && select_worker(md, lid, a) == 0) {
		count(migrating ? SL_STEER_MIGRATED : reason);
		return SK_PASS;
	}

	/* 3. any healthy worker, scanning from a random start */
	struct scan_ctx c = {.md = md,
			     .now = now,
			     .stall_ns = cfg->stall_ns,
			     .lid = lid,
			     .n = n,
			     .start = bpf_get_prandom_u32() % n,
			     .found = 0};
	bpf_loop(n, scan_one, &c, 0);
	if (c.found) {
		count(migrating ? SL_STEER_MIGRATED : reason);
		return SK_PASS;
	}
hash:
	/* nobody healthy (or not ours): no selection, the kernel's hash decides */
	count(SL_STEER_KERNEL_HASH);
	return SK_PASS;
}

char LICENSE[] SEC("license") = "GPL";
