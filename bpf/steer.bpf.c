// SPDX-License-Identifier: GPL-2.0
/* Worker steering for sluiced's SO_REUSEPORT groups (sk_reuseport/migrate).
 *
 * New connection: the worker pinned to the CPU handling the SYN, if healthy; else the
 * less loaded of two random healthy workers; else no choice, so the kernel's hash
 * places it. Healthy = ready, heartbeat younger than stall_ns, under its cap.
 * Migration (a listener closing with queued requests): same choice, never the
 * closing worker. A connection is never dropped here. */
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

/* 0 healthy, else the steering reason that describes why not */
static __always_inline __u32 unhealthy(const struct sl_worker_state *ws, __u64 now, __u64 stall_ns)
{
	if (ws->state != SL_WORKER_READY)
		return SL_STEER_P2C_DRAINING;
	if (now > ws->heartbeat_ns && now - ws->heartbeat_ns > stall_ns)
		return SL_STEER_P2C_STALLED;
	if (ws->max_conns && ws->active >= ws->max_conns)
		return SL_STEER_P2C_OVERLOADED;
	return 0;
}

static __always_inline int try_select(struct sk_reuseport_md *md, __u32 lid, __u32 w)
{
	__u32 key = lid * SL_MAX_WORKERS + w;
	return bpf_sk_select_reuseport(md, &listeners, &key, 0);
}

struct scan_ctx {
	struct sk_reuseport_md *md;
	__u64 now, stall_ns;
	__u32 lid, n, start, found;
};

static long scan_one(__u32 i, struct scan_ctx *c)
{
	__u32 w = (c->start + i) % c->n;
	struct sl_worker_state *ws = bpf_map_lookup_elem(&workers, &w);
	if (!ws || unhealthy(ws, c->now, c->stall_ns))
		return 0;
	if (try_select(c->md, c->lid, w) == 0) {
		c->found = 1;
		return 1;
	}
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
	__u32 lid = *lidp, n = cfg->n_workers;
	__u64 now = bpf_ktime_get_ns();
	int migrating = md->migrating_sk != NULL;

	/* 1. the worker of this CPU */
	__u32 cpu = bpf_get_smp_processor_id();
	__u32 reason = SL_STEER_P2C_DRAINING;
	__u32 *own = bpf_map_lookup_elem(&cpu_worker, &cpu);
	if (own && *own < n) {
		__u32 w = *own;
		struct sl_worker_state *ws = bpf_map_lookup_elem(&workers, &w);
		if (ws) {
			reason = unhealthy(ws, now, cfg->stall_ns);
			if (!reason && try_select(md, lid, w) == 0) {
				count(migrating ? SL_STEER_MIGRATED : SL_STEER_OWN_CPU);
				return SK_PASS;
			}
			if (!reason)
				reason = SL_STEER_P2C_DRAINING; /* no socket in its slot */
		}
	}

	/* 2. power of two choices among healthy workers */
	__u32 a = bpf_get_prandom_u32() % n, b = bpf_get_prandom_u32() % n;
	struct sl_worker_state *wa = bpf_map_lookup_elem(&workers, &a);
	struct sl_worker_state *wb = bpf_map_lookup_elem(&workers, &b);
	int ok_a = wa && !unhealthy(wa, now, cfg->stall_ns);
	int ok_b = wb && !unhealthy(wb, now, cfg->stall_ns);
	if (ok_a && ok_b && wb->active < wa->active) {
		__u32 t = a;
		a = b;
		b = t;
	} else if (!ok_a && ok_b) {
		a = b;
		ok_a = 1;
	}
	if (ok_a && try_select(md, lid, a) == 0) {
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
