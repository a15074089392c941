/* XDP guard tests through BPF_PROG_TEST_RUN with hand-built frames (as the kernel's
 * tools/testing/selftests/bpf/prog_tests/xdp*.c do): deny lists, the SYN guard, counters,
 * and packets the guard must leave alone. A fresh skeleton per test, so every counter
 * starts at zero. Deny entries and config go through libsluice's sl_xdp_* helpers, the
 * same path sluicectl takes. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "bpf/xdp.h"
#include "sluice_common.h"
#include "xdp_guard.skel.h"

#define XDP_ABORTED_ 0
#define XDP_DROP_ 1
#define XDP_PASS_ 2

#define F_SYN 1
#define F_ACK 2
#define F_RST 4

struct pkt {
	uint8_t b[512];
	uint32_t len;
};

struct fx {
	struct xdp_guard_bpf *skel;
	struct sl_xdp_maps m;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	f->skel = xdp_guard_bpf__open_and_load();
	if (!f->skel) {
		fprintf(stderr, "cannot load xdp_guard.bpf.o: %s (run as root)\n", strerror(errno));
		free(f);
		return -1;
	}
	f->m.stats = bpf_map__fd(f->skel->maps.xdp_stats);
	f->m.deny_v4 = bpf_map__fd(f->skel->maps.deny_v4);
	f->m.deny_v6 = bpf_map__fd(f->skel->maps.deny_v6);
	f->m.syn_guard = bpf_map__fd(f->skel->maps.syn_guard);
	f->m.config = bpf_map__fd(f->skel->maps.xdp_config);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	xdp_guard_bpf__destroy(f->skel); /* closes the map fds too */
	free(f);
	return 0;
}

/* ---- frame builders ----
 * Headers are built in local structs and copied into the byte buffer (never written
 * through a cast pointer: that would break strict aliasing at -O2). */

#define OFF_L3 14 /* untagged frames */

static void put(struct pkt *p, uint32_t off, const void *h, size_t len)
{
	memcpy(p->b + off, h, len);
}

static uint32_t put_eth(struct pkt *p, uint16_t proto, int vlan)
{
	struct ethhdr eth;
	memcpy(eth.h_dest, "\x02\x00\x00\x00\x00\x01", ETH_ALEN);
	memcpy(eth.h_source, "\x02\x00\x00\x00\x00\x02", ETH_ALEN);
	eth.h_proto = htons(vlan ? ETH_P_8021Q : proto);
	put(p, 0, &eth, sizeof(eth));
	if (!vlan)
		return sizeof(eth);
	uint16_t tag[2] = {htons(42), htons(proto)};
	put(p, sizeof(eth), tag, sizeof(tag));
	return sizeof(eth) + sizeof(tag);
}

/* L4 header at off: TCP with flags, UDP, or ICMP (8 bytes); returns its length */
static uint32_t put_l4(struct pkt *p, uint32_t off, int proto, int flags)
{
	if (proto == IPPROTO_TCP) {
		struct tcphdr t;
		memset(&t, 0, sizeof(t));
		t.source = htons(40000);
		t.dest = htons(80);
		t.seq = htonl(1);
		t.doff = 5;
		t.syn = !!(flags & F_SYN);
		t.ack = !!(flags & F_ACK);
		t.rst = !!(flags & F_RST);
		t.window = htons(65535);
		put(p, off, &t, sizeof(t));
		return sizeof(t);
	}
	if (proto == IPPROTO_UDP) {
		struct udphdr u = {.source = htons(5353), .dest = htons(53), .len = htons(8)};
		put(p, off, &u, sizeof(u));
		return sizeof(u);
	}
	uint8_t icmp[8] = {8}; /* echo request */
	put(p, off, icmp, sizeof(icmp));
	return sizeof(icmp);
}

static struct pkt v4x(const char *src, int proto, int flags, int vlan)
{
	struct pkt p;
	memset(&p, 0, sizeof(p));
	uint32_t l3 = put_eth(&p, ETH_P_IP, vlan);
	struct iphdr ip;
	memset(&ip, 0, sizeof(ip));
	ip.version = 4;
	ip.ihl = 5;
	ip.ttl = 64;
	ip.protocol = (uint8_t)proto;
	inet_pton(AF_INET, src, &ip.saddr);
	inet_pton(AF_INET, "192.0.2.1", &ip.daddr);
	uint32_t l4 = put_l4(&p, l3 + sizeof(ip), proto, flags);
	ip.tot_len = htons((uint16_t)(sizeof(ip) + l4));
	put(&p, l3, &ip, sizeof(ip));
	p.len = l3 + (uint32_t)sizeof(ip) + l4;
	return p;
}

static struct pkt v4(const char *src, int proto, int flags)
{
	return v4x(src, proto, flags, 0);
}

static struct pkt v4_vlan(const char *src)
{
	return v4x(src, IPPROTO_TCP, F_SYN, 1);
}

/* ext: -1 none, else the extension header type put before the L4 header (0 =
 * hop-by-hop, 44 = fragment with frag_off, anything else as given) */
static struct pkt v6x(const char *src, int proto, int flags, int ext, uint16_t frag_off)
{
	struct pkt p;
	memset(&p, 0, sizeof(p));
	uint32_t l3 = put_eth(&p, ETH_P_IPV6, 0);
	struct ipv6hdr ip6;
	memset(&ip6, 0, sizeof(ip6));
	ip6.version = 6;
	ip6.hop_limit = 64;
	inet_pton(AF_INET6, src, &ip6.saddr);
	inet_pton(AF_INET6, "2001:db8:ffff::1", &ip6.daddr);
	uint32_t off = l3 + (uint32_t)sizeof(ip6), extlen = 0;
	if (ext >= 0) {
		uint8_t h[8] = {(uint8_t)proto, 0}; /* next header, hdrlen 0 = 8 bytes */
		uint16_t fo = htons(frag_off);
		if (ext == 44)
			memcpy(h + 2, &fo, 2);
		ip6.nexthdr = (uint8_t)ext;
		put(&p, off, h, sizeof(h));
		extlen = sizeof(h);
	} else {
		ip6.nexthdr = (uint8_t)proto;
	}
	uint32_t l4 = put_l4(&p, off + extlen, proto, flags);
	ip6.payload_len = htons((uint16_t)(extlen + l4));
	put(&p, l3, &ip6, sizeof(ip6));
	p.len = off + extlen + l4;
	return p;
}

static struct pkt v6(const char *src, int proto, int flags)
{
	return v6x(src, proto, flags, -1, 0);
}

/* ---- running and checking ---- */

static const char *verdict_name(int v)
{
	switch (v) {
	case XDP_ABORTED_:
		return "XDP_ABORTED";
	case XDP_DROP_:
		return "XDP_DROP";
	case XDP_PASS_:
		return "XDP_PASS";
	default:
		return "another verdict";
	}
}

static int run(struct fx *f, const struct pkt *p)
{
	uint8_t out[sizeof(p->b) + 256];
	LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = p->b, .data_size_in = p->len, .data_out = out,
		    .data_size_out = sizeof(out), .repeat = 1);
	int err = bpf_prog_test_run_opts(bpf_program__fd(f->skel->progs.xdp_guard), &o);
	if (err)
		fail_msg("BPF_PROG_TEST_RUN failed: %s", strerror(-err));
	/* XDP_PASS must hand the packet on untouched */
	if (o.retval == XDP_PASS_ && (o.data_size_out != p->len || memcmp(out, p->b, p->len)))
		fail_msg("XDP_PASS changed the packet (%u bytes in, %u out)", p->len,
			 o.data_size_out);
	return (int)o.retval;
}

#define EXPECT_VERDICT(f, frame, want, what)                                                       \
	do {                                                                                       \
		struct pkt p_ = (frame);                                                           \
		int got_ = run((f), &p_);                                                          \
		if (got_ != (want))                                                                \
			fail_msg("%s: expected %s, got %s", (what), verdict_name(want),            \
				 verdict_name(got_));                                              \
	} while (0)

static uint64_t counter(struct fx *f, unsigned int c)
{
	__u64 v[SL_XDP_NR];
	int err = sl_xdp_read_counters(&f->m, v);
	if (err)
		fail_msg("reading xdp_stats: %s", strerror(-err));
	return v[c];
}

#define EXPECT_COUNT(f, c, want, what)                                                             \
	do {                                                                                       \
		uint64_t got_ = counter((f), (c));                                                 \
		if (got_ != (uint64_t)(want))                                                      \
			fail_msg("%s: expected xdp_stats[%s] = %llu, got %llu", (what),            \
				 sl_xdp_counter_name(c), (unsigned long long)(want),               \
				 (unsigned long long)got_);                                        \
	} while (0)

static void deny(struct fx *f, const char *cidr)
{
	struct sl_xdp_cidr c;
	if (sl_xdp_cidr_parse(cidr, &c))
		fail_msg("'%s' should parse as a CIDR", cidr);
	int err = sl_xdp_deny_add(&f->m, &c);
	if (err)
		fail_msg("deny add %s: expected 0, got %s", cidr, strerror(-err));
}

struct hit_find {
	const char *cidr;
	uint64_t hits;
	int found;
};

static int find_hits(const struct sl_xdp_cidr *c, __u64 hits, void *arg)
{
	struct hit_find *h = arg;
	char b[SL_XDP_CIDR_STRLEN];
	sl_xdp_cidr_format(c, b, sizeof(b));
	if (!strcmp(b, h->cidr)) {
		h->hits = hits;
		h->found = 1;
	}
	return 0;
}

static uint64_t deny_hits(struct fx *f, const char *cidr)
{
	struct hit_find h = {cidr, 0, 0};
	assert_int_equal(sl_xdp_deny_foreach(&f->m, find_hits, &h), 0);
	if (!h.found)
		fail_msg("deny list: expected an entry %s, found none", cidr);
	return h.hits;
}

static void syn_rate(struct fx *f, uint32_t rate, uint32_t burst)
{
	struct sl_xdp_config cfg = {.syn_rate = rate, .syn_burst = burst};
	int err = sl_xdp_set_config(&f->m, &cfg);
	if (err)
		fail_msg("setting xdp_config: expected 0, got %s", strerror(-err));
}

/* ---- tests ---- */

static void test_allowed_passes_and_is_counted(void **state)
{
	struct fx *f = *state;
	struct pkt syn = v4("198.51.100.7", IPPROTO_TCP, F_SYN);
	EXPECT_VERDICT(f, syn, XDP_PASS_, "IPv4 SYN from a source on no list");
	EXPECT_VERDICT(f, v6("2001:db8:1::7", IPPROTO_TCP, F_SYN), XDP_PASS_,
		       "IPv6 SYN from a source on no list");
	EXPECT_VERDICT(f, v4("198.51.100.7", IPPROTO_TCP, F_ACK), XDP_PASS_, "IPv4 ACK");
	EXPECT_COUNT(f, SL_XDP_PACKETS, 3, "three packets in");
	EXPECT_COUNT(f, SL_XDP_TCP_SYN, 2, "two SYNs (the ACK is not one)");
	uint64_t bytes = syn.len + v6("2001:db8:1::7", IPPROTO_TCP, F_SYN).len +
			 v4("198.51.100.7", IPPROTO_TCP, F_ACK).len;
	EXPECT_COUNT(f, SL_XDP_BYTES, bytes, "bytes = the three frames' lengths");
	EXPECT_COUNT(f, SL_XDP_DROP_DENY_V4, 0, "no drops");
	EXPECT_COUNT(f, SL_XDP_DROP_SYN_RATE, 0, "no drops");
}

static void test_denied_v4_dropped_and_counted(void **state)
{
	struct fx *f = *state;
	deny(f, "203.0.113.0/24");
	deny(f, "10.9.8.7");
	EXPECT_VERDICT(f, v4("203.0.113.77", IPPROTO_TCP, F_SYN), XDP_DROP_,
		       "SYN from 203.0.113.77, inside denied 203.0.113.0/24");
	EXPECT_VERDICT(f, v4("203.0.113.1", IPPROTO_TCP, F_ACK), XDP_DROP_,
		       "ACK from inside the denied /24 (deny is not SYN-only)");
	EXPECT_VERDICT(f, v4("203.0.113.5", IPPROTO_UDP, 0), XDP_DROP_,
		       "UDP from inside the denied /24 (deny is not TCP-only)");
	EXPECT_VERDICT(f, v4("10.9.8.7", IPPROTO_TCP, F_SYN), XDP_DROP_,
		       "SYN from denied host 10.9.8.7/32");
	EXPECT_VERDICT(f, v4("203.0.114.1", IPPROTO_TCP, F_SYN), XDP_PASS_,
		       "SYN from 203.0.114.1, just outside the denied /24");
	EXPECT_VERDICT(f, v4("10.9.8.6", IPPROTO_TCP, F_SYN), XDP_PASS_,
		       "SYN from 10.9.8.6, next to the denied /32");
	EXPECT_COUNT(f, SL_XDP_DROP_DENY_V4, 4, "four packets from denied IPv4 sources");
	EXPECT_COUNT(f, SL_XDP_DROP_DENY_V6, 0, "no IPv6 drops");
	EXPECT_COUNT(f, SL_XDP_TCP_SYN, 4, "every SYN counted, dropped ones included");
	if (deny_hits(f, "203.0.113.0/24") != 3)
		fail_msg("deny_v4 203.0.113.0/24: expected 3 hits, got %llu",
			 (unsigned long long)deny_hits(f, "203.0.113.0/24"));
	if (deny_hits(f, "10.9.8.7/32") != 1)
		fail_msg("deny_v4 10.9.8.7/32: expected 1 hit");
}

static void test_denied_v6_dropped_and_counted(void **state)
{
	struct fx *f = *state;
	deny(f, "2001:db8:bad::/48");
	EXPECT_VERDICT(f, v6("2001:db8:bad:1::99", IPPROTO_TCP, F_SYN), XDP_DROP_,
		       "IPv6 SYN from inside denied 2001:db8:bad::/48");
	EXPECT_VERDICT(f, v6("2001:db8:bad::1", IPPROTO_UDP, 0), XDP_DROP_,
		       "IPv6 UDP from inside the denied /48");
	EXPECT_VERDICT(f, v6("2001:db8:bae::1", IPPROTO_TCP, F_SYN), XDP_PASS_,
		       "IPv6 SYN from 2001:db8:bae::1, outside the denied /48");
	EXPECT_VERDICT(f, v4("203.0.113.1", IPPROTO_TCP, F_SYN), XDP_PASS_,
		       "IPv4 SYN while only an IPv6 prefix is denied");
	EXPECT_COUNT(f, SL_XDP_DROP_DENY_V6, 2, "two packets from the denied IPv6 prefix");
	EXPECT_COUNT(f, SL_XDP_DROP_DENY_V4, 0, "no IPv4 drops");
	if (deny_hits(f, "2001:db8:bad::/48") != 2)
		fail_msg("deny_v6 2001:db8:bad::/48: expected 2 hits");
}

static void test_deny_del_lets_source_back(void **state)
{
	struct fx *f = *state;
	struct sl_xdp_cidr c;
	deny(f, "203.0.113.0/24");
	EXPECT_VERDICT(f, v4("203.0.113.9", IPPROTO_TCP, F_SYN), XDP_DROP_, "denied before del");
	assert_int_equal(sl_xdp_cidr_parse("203.0.113.0/24", &c), 0);
	if (sl_xdp_deny_add(&f->m, &c) != -EEXIST)
		fail_msg("adding 203.0.113.0/24 twice: expected -EEXIST");
	assert_int_equal(sl_xdp_deny_del(&f->m, &c), 0);
	if (sl_xdp_deny_del(&f->m, &c) != -ENOENT)
		fail_msg("deleting 203.0.113.0/24 twice: expected -ENOENT");
	EXPECT_VERDICT(f, v4("203.0.113.9", IPPROTO_TCP, F_SYN), XDP_PASS_,
		       "the same source after deny del");
}

static void test_vlan_tagged_denied(void **state)
{
	struct fx *f = *state;
	deny(f, "203.0.113.0/24");
	EXPECT_VERDICT(f, v4_vlan("203.0.113.3"), XDP_DROP_,
		       "802.1Q-tagged SYN from the denied /24");
	EXPECT_VERDICT(f, v4_vlan("198.51.100.3"), XDP_PASS_, "802.1Q-tagged SYN, allowed source");
	EXPECT_COUNT(f, SL_XDP_TCP_SYN, 2, "tagged SYNs counted");
}

static void test_syn_guard_off_by_default(void **state)
{
	struct fx *f = *state;
	for (int i = 0; i < 200; i++) {
		char src[32];
		snprintf(src, sizeof(src), "198.51.100.%d", i % 250);
		EXPECT_VERDICT(f, v4(src, IPPROTO_TCP, F_SYN), XDP_PASS_,
			       "SYN burst with the guard off (xdp_config all zero)");
	}
	EXPECT_COUNT(f, SL_XDP_TCP_SYN, 200, "200 SYNs seen");
	EXPECT_COUNT(f, SL_XDP_DROP_SYN_RATE, 0, "no SYN-rate drops while the guard is off");
}

static void test_syn_burst_over_rate_dropped(void **state)
{
	struct fx *f = *state;
	syn_rate(f, 1, 5); /* 1 SYN/s, bucket of 5: a burst of 20 lets exactly 5 through */
	int passed = 0, dropped = 0;
	for (int i = 0; i < 20; i++) {
		char src[32];
		/* different hosts, one /24: they share a bucket */
		snprintf(src, sizeof(src), "198.51.100.%d", 10 + i);
		struct pkt p = v4(src, IPPROTO_TCP, F_SYN);
		int v = run(f, &p);
		passed += v == XDP_PASS_;
		dropped += v == XDP_DROP_;
	}
	if (passed != 5 || dropped != 15)
		fail_msg("burst of 20 SYNs from one /24 at 1/s burst 5: expected 5 passed and 15 "
			 "dropped, got %d and %d",
			 passed, dropped);
	EXPECT_COUNT(f, SL_XDP_DROP_SYN_RATE, 15, "15 SYN-rate drops");
	EXPECT_COUNT(f, SL_XDP_TCP_SYN, 20, "20 SYNs seen");
	EXPECT_VERDICT(f, v4("198.51.101.10", IPPROTO_TCP, F_SYN), XDP_PASS_,
		       "SYN from the next /24 (its own bucket)");
	EXPECT_VERDICT(f, v4("198.51.100.10", IPPROTO_TCP, F_ACK), XDP_PASS_,
		       "ACK from the limited /24 (only SYNs are rate limited)");
	EXPECT_VERDICT(f, v4("198.51.100.10", IPPROTO_TCP, F_SYN | F_ACK), XDP_PASS_,
		       "SYN-ACK from the limited /24 (not a connection request)");
	EXPECT_VERDICT(f, v4("198.51.100.10", IPPROTO_UDP, 0), XDP_PASS_,
		       "UDP from the limited /24");
}

static void test_syn_guard_refills(void **state)
{
	struct fx *f = *state;
	syn_rate(f, 20, 1); /* one token, back after 50 ms */
	EXPECT_VERDICT(f, v4("198.51.100.1", IPPROTO_TCP, F_SYN), XDP_PASS_,
		       "first SYN takes the only token");
	EXPECT_VERDICT(f, v4("198.51.100.2", IPPROTO_TCP, F_SYN), XDP_DROP_,
		       "second SYN at once: bucket empty");
	usleep(120 * 1000);
	EXPECT_VERDICT(f, v4("198.51.100.3", IPPROTO_TCP, F_SYN), XDP_PASS_,
		       "SYN 120 ms later: the bucket refilled at 20/s");
	/* guard off again: everything passes */
	syn_rate(f, 0, 0);
	for (int i = 0; i < 5; i++)
		EXPECT_VERDICT(f, v4("198.51.100.4", IPPROTO_TCP, F_SYN), XDP_PASS_,
			       "SYNs after setting syn_rate back to 0");
}

static void test_syn_guard_v6_per_64(void **state)
{
	struct fx *f = *state;
	syn_rate(f, 1, 2);
	EXPECT_VERDICT(f, v6("2001:db8:1:2::1", IPPROTO_TCP, F_SYN), XDP_PASS_, "1st SYN of a /64");
	EXPECT_VERDICT(f, v6("2001:db8:1:2::2", IPPROTO_TCP, F_SYN), XDP_PASS_,
		       "2nd SYN of the same /64, other host");
	EXPECT_VERDICT(f, v6("2001:db8:1:2:ffff::3", IPPROTO_TCP, F_SYN), XDP_DROP_,
		       "3rd SYN of the same /64: over burst 2");
	EXPECT_VERDICT(f, v6("2001:db8:1:3::1", IPPROTO_TCP, F_SYN), XDP_PASS_,
		       "SYN of the neighbouring /64 (its own bucket)");
	EXPECT_VERDICT(f, v6x("2001:db8:1:2::1", IPPROTO_TCP, F_SYN, 0, 0), XDP_DROP_,
		       "SYN behind a hop-by-hop header, same /64: still limited");
	EXPECT_COUNT(f, SL_XDP_DROP_SYN_RATE, 2, "two IPv6 SYN-rate drops");
	EXPECT_COUNT(f, SL_XDP_TCP_SYN, 5, "five IPv6 SYNs seen");
}

static void test_odd_packets_pass(void **state)
{
	struct fx *f = *state;
	deny(f, "203.0.113.0/24");
	deny(f, "2001:db8:bad::/48");
	syn_rate(f, 1, 1);
	struct pkt p;

	EXPECT_VERDICT(f, v4("198.51.100.1", IPPROTO_ICMP, 0), XDP_PASS_, "ICMP echo");
	EXPECT_VERDICT(f, v4("198.51.100.1", IPPROTO_UDP, 0), XDP_PASS_, "UDP datagram");

	/* ARP: not IP at all */
	memset(&p, 0, sizeof(p));
	p.len = put_eth(&p, ETH_P_ARP, 0) + 28;
	EXPECT_VERDICT(f, p, XDP_PASS_, "ARP frame");

	/* bare Ethernet header claiming IPv4 (the minimum BPF_PROG_TEST_RUN accepts) */
	p = v4("203.0.113.1", IPPROTO_TCP, F_SYN);
	p.len = 14;
	EXPECT_VERDICT(f, p, XDP_PASS_, "Ethernet header only, IPv4 header missing");

	/* IPv4 header cut short before the source address is complete */
	p = v4("203.0.113.1", IPPROTO_TCP, F_SYN);
	p.len = OFF_L3 + 14;
	EXPECT_VERDICT(f, p, XDP_PASS_, "IPv4 header truncated at 14 of 20 bytes (denied source)");

	/* TCP header truncated: the guard cannot tell a SYN */
	p = v4("198.51.100.1", IPPROTO_TCP, F_SYN);
	p.len = OFF_L3 + 20 + 10;
	EXPECT_VERDICT(f, p, XDP_PASS_, "IPv4 SYN with a 10-byte TCP header");
	p = v4("198.51.100.1", IPPROTO_TCP, F_SYN);
	p.len = OFF_L3 + 20 + 10;
	EXPECT_VERDICT(f, p, XDP_PASS_, "the same truncated SYN again (bucket of 1 not used)");

	/* malformed IPv4: ihl below 5, wrong version */
	p = v4("203.0.113.1", IPPROTO_TCP, F_SYN);
	p.b[OFF_L3] = 0x43; /* version 4, ihl 3 */
	EXPECT_VERDICT(f, p, XDP_PASS_, "IPv4 with ihl 3 (denied source)");
	p = v4("203.0.113.1", IPPROTO_TCP, F_SYN);
	p.b[OFF_L3] = 0x55; /* version 5, ihl 5 */
	EXPECT_VERDICT(f, p, XDP_PASS_, "ethertype IPv4 carrying version 5 (denied source)");

	/* ihl pointing past the end of the frame */
	p = v4("198.51.100.2", IPPROTO_TCP, F_SYN);
	p.b[OFF_L3] = 0x4f; /* ihl 15: 60 bytes of header in a 54-byte frame */
	EXPECT_VERDICT(f, p, XDP_PASS_, "IPv4 options claimed past the frame end");

	/* later fragment: bytes where a TCP header would be are payload */
	p = v4("198.51.100.3", IPPROTO_TCP, F_SYN);
	p.b[OFF_L3 + 6] = 0; /* frag_off: offset 100 (x 8 bytes) */
	p.b[OFF_L3 + 7] = 100;
	EXPECT_VERDICT(f, p, XDP_PASS_, "non-first IPv4 fragment looking like a SYN");
	p = v4("198.51.100.3", IPPROTO_TCP, F_SYN);
	p.b[OFF_L3 + 6] = 0; /* frag_off: offset 100 (x 8 bytes) */
	p.b[OFF_L3 + 7] = 100;
	EXPECT_VERDICT(f, p, XDP_PASS_, "the same fragment again (not rate limited)");

	/* IPv6: truncated, wrong version, unknown extension, non-first fragment */
	p = v6("2001:db8:bad::1", IPPROTO_TCP, F_SYN);
	p.len = OFF_L3 + 20;
	EXPECT_VERDICT(f, p, XDP_PASS_, "IPv6 header truncated at 20 of 40 bytes (denied source)");
	p = v6("2001:db8:bad::1", IPPROTO_TCP, F_SYN);
	p.b[OFF_L3] = (uint8_t)((p.b[OFF_L3] & 0x0f) | 0x40); /* version 4 */
	EXPECT_VERDICT(f, p, XDP_PASS_, "ethertype IPv6 carrying version 4 (denied source)");
	EXPECT_VERDICT(f, v6x("2001:db8:2::1", IPPROTO_TCP, F_SYN, 44, 8 << 3), XDP_PASS_,
		       "non-first IPv6 fragment looking like a SYN");
	EXPECT_VERDICT(f, v6x("2001:db8:2::1", IPPROTO_TCP, F_SYN, 44, 8 << 3), XDP_PASS_,
		       "the same IPv6 fragment again (not rate limited)");
	EXPECT_VERDICT(f, v6x("2001:db8:3::1", IPPROTO_TCP, F_SYN, 135, 0), XDP_PASS_,
		       "IPv6 SYN behind an unknown extension header");
	EXPECT_VERDICT(f, v6x("2001:db8:3::1", IPPROTO_TCP, F_SYN, 135, 0), XDP_PASS_,
		       "the same again (not rate limited)");
	p = v6x("2001:db8:4::1", IPPROTO_TCP, F_SYN, 0, 0);
	p.b[OFF_L3 + 40 + 1] = 200; /* hop-by-hop header claims 1608 bytes */
	EXPECT_VERDICT(f, p, XDP_PASS_, "IPv6 hop-by-hop header longer than the frame");

	/* an odd frame from a denied source whose address is readable is still denied */
	p = v4("203.0.113.1", IPPROTO_TCP, F_SYN);
	p.len = OFF_L3 + 20 + 4;
	EXPECT_VERDICT(f, p, XDP_DROP_, "denied source, TCP header truncated (address readable)");

	EXPECT_COUNT(f, SL_XDP_DROP_SYN_RATE, 0, "no SYN-rate drops among odd packets");
	EXPECT_COUNT(f, SL_XDP_DROP_DENY_V4, 1, "one deny drop: the readable denied source");
	EXPECT_COUNT(f, SL_XDP_DROP_DENY_V6, 0, "no IPv6 deny drops among odd packets");
	EXPECT_COUNT(f, SL_XDP_PACKETS, 20, "every frame counted");
}

/* ---- user-space helpers sluicectl relies on ---- */

static void expect_cidr(const char *in, const char *want)
{
	struct sl_xdp_cidr c;
	char b[SL_XDP_CIDR_STRLEN];
	int err = sl_xdp_cidr_parse(in, &c);
	if (!want) {
		if (err != -EINVAL)
			fail_msg("'%s': expected -EINVAL, got %d", in, err);
		return;
	}
	if (err)
		fail_msg("'%s': expected to parse, got %s", in, strerror(-err));
	sl_xdp_cidr_format(&c, b, sizeof(b));
	if (strcmp(b, want))
		fail_msg("'%s': expected %s, got %s", in, want, b);
}

static void test_cidr_parse(void **state)
{
	expect_cidr("10.0.0.1", "10.0.0.1/32");
	expect_cidr("10.1.2.3/8", "10.0.0.0/8");
	expect_cidr("10.1.2.3/0", "0.0.0.0/0");
	expect_cidr("192.168.1.255/23", "192.168.0.0/23");
	expect_cidr("2001:db8::1", "2001:db8::1/128");
	expect_cidr("2001:db8:abcd:1234::1/36", "2001:db8:a000::/36");
	expect_cidr("::/0", "::/0");
	expect_cidr("10.0.0.0/33", NULL);
	expect_cidr("2001:db8::/129", NULL);
	expect_cidr("10.0.0.0/", NULL);
	expect_cidr("10.0.0.0/-1", NULL);
	expect_cidr("10.0.0.0/+8", NULL);
	expect_cidr("10.0.0.0/8x", NULL);
	expect_cidr("10.0.0", NULL);
	expect_cidr("example.com", NULL);
	expect_cidr("", NULL);
	expect_cidr("10.0.0.0/24/8", NULL);
	expect_cidr("1111:2222:3333:4444:5555:6666:7777:8888:9999/64", NULL);
}

static void test_mode_names(void **state)
{
	enum sl_xdp_mode m;
	assert_int_equal(sl_xdp_mode_parse("native", &m), 0);
	assert_int_equal(m, SL_XDP_NATIVE);
	assert_int_equal(sl_xdp_mode_parse("generic", &m), 0);
	assert_int_equal(m, SL_XDP_GENERIC);
	assert_int_equal(sl_xdp_mode_parse("auto", &m), 0);
	assert_int_equal(m, SL_XDP_AUTO);
	assert_int_equal(sl_xdp_mode_parse("offload", &m), -EINVAL);
	for (unsigned int i = 0; i < SL_XDP_NR; i++)
		assert_non_null(sl_xdp_counter_name(i));
	assert_null(sl_xdp_counter_name(SL_XDP_NR));
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	libbpf_set_strict_mode(LIBBPF_STRICT_ALL);
	const struct CMUnitTest tests[] = {
	    T(test_allowed_passes_and_is_counted),
	    T(test_denied_v4_dropped_and_counted),
	    T(test_denied_v6_dropped_and_counted),
	    T(test_deny_del_lets_source_back),
	    T(test_vlan_tagged_denied),
	    T(test_syn_guard_off_by_default),
	    T(test_syn_burst_over_rate_dropped),
	    T(test_syn_guard_refills),
	    T(test_syn_guard_v6_per_64),
	    T(test_odd_packets_pass),
	    cmocka_unit_test(test_cidr_parse),
	    cmocka_unit_test(test_mode_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
