// SPDX-License-Identifier: GPL-2.0
/* Node-level XDP guard: per-CPU packet/byte/SYN counters, IPv4/IPv6 source deny lists
 * (LPM tries, written by sluicectl) and a SYN rate guard per source /24 or /64.
 *
 * Only two verdicts are ever taken: XDP_DROP for a denied source or a SYN over its
 * prefix's rate, XDP_PASS for everything else. Anything this program does not fully
 * understand (truncated headers, unknown versions, odd extension chains) passes
 * untouched: the stack is the judge of malformed packets, not the guard. */
#include "vmlinux.h"
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "sluice_common.h"

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8

#define NEXTHDR_HOP 0
#define NEXTHDR_TCP 6
#define NEXTHDR_ROUTING 43
#define NEXTHDR_FRAGMENT 44
#define NEXTHDR_DEST 60

#define MAX_VLAN 2   /* QinQ */
#define MAX_V6_EXT 4 /* extension headers walked before giving up (and passing) */
#define DENY_V4_MAX 16384
#define DENY_V6_MAX 16384
#define SYN_GUARD_MAX 65536

struct vlan_tag {
	__be16 tci;
	__be16 proto;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SL_XDP_NR);
	__type(key, __u32); /* enum sl_xdp_counter */
	__type(value, __u64);
} xdp_stats SEC(".maps");

/* value: packets dropped by this prefix */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, DENY_V4_MAX);
	__type(key, struct sl_lpm_v4);
	__type(value, __u64);
} deny_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, DENY_V6_MAX);
	__type(key, struct sl_lpm_v6);
	__type(value, __u64);
} deny_v6 SEC(".maps");

/* Token buckets. Updated without a lock from several CPUs: a lost update can let a
 * few extra SYNs through, never drop one that was within the rate. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SYN_GUARD_MAX);
	__type(key, struct sl_syn_key);
	__type(value, struct sl_syn_bucket);
} syn_guard SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sl_xdp_config);
} xdp_config SEC(".maps");

static __always_inline void count(__u32 idx, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&xdp_stats, &idx);
	if (v)
		*v += n;
}

static __always_inline int drop(__u32 reason, __u64 *hits)
{
	if (hits)
		__sync_fetch_and_add(hits, 1);
	count(reason, 1);
	return XDP_DROP;
}

/* 1: this SYN is within its prefix's rate (or the guard is off), 0: over it. */
static __always_inline int syn_allowed(const struct sl_syn_key *key)
{
	__u32 zero = 0;
	struct sl_xdp_config *cfg = bpf_map_lookup_elem(&xdp_config, &zero);
	if (!cfg || !cfg->syn_rate)
		return 1;
	__u64 rate = cfg->syn_rate;
	__u64 cap = (__u64)(cfg->syn_burst ? cfg->syn_burst : cfg->syn_rate) * 1000;
	__u64 now = bpf_ktime_get_ns();

	struct sl_syn_bucket *b = bpf_map_lookup_elem(&syn_guard, key);
	if (!b) {
		struct sl_syn_bucket nb = {.tokens_milli = cap - 1000, .last_ns = now};
		bpf_map_update_elem(&syn_guard, key, &nb, BPF_ANY);
		return 1;
	}
	__u64 tokens = b->tokens_milli, last = b->last_ns;
	if (now > last) {
		__u64 us = (now - last) / 1000;
		/* us < 2^32 and rate < 2^32: the product fits in 64 bits */
		__u64 add = us < (1ull << 32) ? us * rate / 1000 : cap;
		if (tokens + add >= cap) {
			tokens = cap;
			last = now;
		} else if (add) {
			/* advance the clock by exactly the time credited, so that a steady
			 * stream of SYNs closer together than one milli-token still refills */
			tokens += add;
			last += add * 1000000 / rate;
		}
	}
	int ok = tokens >= 1000;
	if (ok)
		tokens -= 1000;
	b->tokens_milli = tokens;
	b->last_ns = last;
	return ok;
}

static __always_inline int is_syn(struct tcphdr *tcp, void *end)
{
	return tcp && (void *)(tcp + 1) <= end && tcp->syn && !tcp->ack;
}

/* Order of checks, both families: count the SYN (every SYN that reaches XDP, dropped
 * or not), deny list, then the SYN guard. */
static __always_inline int guard_v4(struct iphdr *ip, void *end)
{
	if ((void *)(ip + 1) > end || ip->version != 4 || ip->ihl < 5)
		return XDP_PASS;

	/* SYNs live in unfragmented packets or first fragments */
	struct tcphdr *tcp = NULL;
	if (ip->protocol == IPPROTO_TCP && !(ip->frag_off & bpf_htons(0x1fff)))
		tcp = (void *)ip + ip->ihl * 4;
	int syn = is_syn(tcp, end);
	if (syn)
		count(SL_XDP_TCP_SYN, 1);

	struct sl_lpm_v4 k;
	k.prefixlen = 32;
	__builtin_memcpy(k.addr, &ip->saddr, sizeof(k.addr));
	__u64 *hits = bpf_map_lookup_elem(&deny_v4, &k);
	if (hits)
		return drop(SL_XDP_DROP_DENY_V4, hits);
	if (!syn)
		return XDP_PASS;

	struct sl_syn_key sk;
	__builtin_memset(&sk, 0, sizeof(sk));
	sk.family = 4;
	__builtin_memcpy(sk.prefix, &ip->saddr, 3); /* /24 */
	if (!syn_allowed(&sk))
		return drop(SL_XDP_DROP_SYN_RATE, NULL);
	return XDP_PASS;
}

/* the TCP header behind the extension headers a SYN may legitimately carry, or NULL */
static __always_inline struct tcphdr *tcp_of_v6(struct ipv6hdr *ip6, void *end)
{
	__u8 nh = ip6->nexthdr;
	void *p = ip6 + 1;
	for (int i = 0; i < MAX_V6_EXT; i++) {
		if (nh == NEXTHDR_TCP)
			break;
		if (nh == NEXTHDR_HOP || nh == NEXTHDR_ROUTING || nh == NEXTHDR_DEST) {
			struct ipv6_opt_hdr *oh = p;
			if ((void *)(oh + 1) > end)
				return NULL;
			nh = oh->nexthdr;
			p += ((__u32)oh->hdrlen + 1) * 8;
		} else if (nh == NEXTHDR_FRAGMENT) {
			struct frag_hdr *fh = p;
			if ((void *)(fh + 1) > end || (fh->frag_off & bpf_htons(0xfff8)))
				return NULL; /* not the first fragment: no TCP header here */
			nh = fh->nexthdr;
			p = fh + 1;
		} else {
			return NULL;
		}
	}
	return nh == NEXTHDR_TCP ? p : NULL;
}

static __always_inline int guard_v6(struct ipv6hdr *ip6, void *end)
{
	if ((void *)(ip6 + 1) > end || ip6->version != 6)
		return XDP_PASS;

	int syn = is_syn(tcp_of_v6(ip6, end), end);
	if (syn)
		count(SL_XDP_TCP_SYN, 1);

	struct sl_lpm_v6 k;
	k.prefixlen = 128;
	__builtin_memcpy(k.addr, &ip6->saddr, sizeof(k.addr));
	__u64 *hits = bpf_map_lookup_elem(&deny_v6, &k);
	if (hits)
		return drop(SL_XDP_DROP_DENY_V6, hits);
	if (!syn)
		return XDP_PASS;

	struct sl_syn_key sk;
	__builtin_memset(&sk, 0, sizeof(sk));
	sk.family = 6;
	__builtin_memcpy(sk.prefix, &ip6->saddr, sizeof(sk.prefix)); /* /64 */
	if (!syn_allowed(&sk))
		return drop(SL_XDP_DROP_SYN_RATE, NULL);
	return XDP_PASS;
}

SEC("xdp")
int xdp_guard(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;

	count(SL_XDP_PACKETS, 1);
	count(SL_XDP_BYTES, (__u64)(end - data));

	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return XDP_PASS;
	__be16 proto = eth->h_proto;
	void *l3 = eth + 1;
#pragma unroll
	for (int i = 0; i < MAX_VLAN; i++) {
		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		struct vlan_tag *v = l3;
		if ((void *)(v + 1) > end)
			return XDP_PASS;
		proto = v->proto;
		l3 = v + 1;
	}
	if (proto == bpf_htons(ETH_P_IP))
		return guard_v4(l3, end);
	if (proto == bpf_htons(ETH_P_IPV6))
		return guard_v6(l3, end);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
