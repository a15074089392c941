/* The XDP guard (bpf/xdp_guard.bpf.c) from user space: load and pin it, attach it to a
 * device through a pinned bpf_link, detach, list attachments, and operate its pinned
 * maps (counters, deny lists, SYN guard config). Used by sluicectl. */
#ifndef SL_XDP_H
#define SL_XDP_H

#include <net/if.h>
#include <stddef.h>

#include "sluice_common.h"

/* names under the pin directory; maps keep their names from xdp_guard.bpf.c */
#define SL_XDP_PROG_PIN "xdp_guard_prog"
#define SL_XDP_LINK_PIN_PREFIX "xdp_link_" /* + ifname */

enum sl_xdp_mode {
	SL_XDP_AUTO = 0, /* native, else generic (with a note saying why) */
	SL_XDP_NATIVE,
	SL_XDP_GENERIC,
	SL_XDP_OFFLOAD, /* only reported, never requested */
};

/* "auto", "native", "generic" -> mode. 0 or -EINVAL. */
int sl_xdp_mode_parse(const char *s, enum sl_xdp_mode *mode);
const char *sl_xdp_mode_name(enum sl_xdp_mode mode);
/* "packets", "bytes", "tcp_syn", "drop_deny_v4", ...; NULL past SL_XDP_NR */
const char *sl_xdp_counter_name(unsigned int counter);

struct sl_xdp_load_opts {
	const char *pin_dir;
	const char *ifname;
	enum sl_xdp_mode mode;
	int force; /* replace an XDP program already on the device (ours or not) */
	/* NULL: keep the pinned config (new maps start with the SYN guard off) */
	const struct sl_xdp_config *config;
};

struct sl_xdp_load_info {
	enum sl_xdp_mode mode; /* native or generic: what the device runs now */
	__u32 ifindex, prog_id, link_id;
	__u32 replaced_prog_id; /* program that was on the device before (--force), or 0 */
	int maps_reused;	/* the maps were already pinned (deny lists kept) */
	char note[256];		/* a line worth showing (auto fell back to generic), or "" */
};

/* Load the guard, pin its maps (reusing pinned ones), program and link, and attach it
 * to o->ifname. A device that already has an XDP program is left alone unless
 * o->force: then -EEXIST, with why saying so. Returns 0 or -errno, why filled. */
int sl_xdp_load(const struct sl_xdp_load_opts *o, struct sl_xdp_load_info *info, char *why,
		size_t whylen);

struct sl_xdp_unload_info {
	int detached;	 /* links detached and unpinned */
	int removed_all; /* no attachment left: program and maps unpinned too */
};

/* Detach and unpin the guard of ifname, or of every device when ifname is NULL. When
 * no attachment is left, the program and the maps are unpinned as well.
 * -ENOENT: ifname given and no guard pinned for it. */
int sl_xdp_unload(const char *pin_dir, const char *ifname, struct sl_xdp_unload_info *info,
		  char *why, size_t whylen);

struct sl_xdp_attachment {
	char ifname[IF_NAMESIZE]; /* from the pin name */
	__u32 ifindex;		  /* 0: the device is gone and the link with it */
	__u32 link_id, prog_id;
	enum sl_xdp_mode mode; /* as the device reports it (SL_XDP_AUTO: unknown) */
	int other_netns;       /* attached to a device of another network namespace, whose
				* mode cannot be asked from here */
};

/* Attachments pinned under pin_dir, up to max. Returns how many were found (may be
 * more than max) or -errno. */
int sl_xdp_list(const char *pin_dir, struct sl_xdp_attachment *out, int max);

/* The guard's pinned maps; -1 where absent. */
struct sl_xdp_maps {
	int stats, deny_v4, deny_v6, syn_guard, config;
};

/* Open every pinned map with a layout check. 0; -ENOENT when the guard is not loaded
 * (no maps pinned); -EINVAL when a pinned map has another layout; why says which. */
int sl_xdp_maps_open(const char *pin_dir, struct sl_xdp_maps *m, char *why, size_t whylen);
void sl_xdp_maps_close(struct sl_xdp_maps *m);

/* Per-CPU counters summed over CPUs, indexed by enum sl_xdp_counter. 0 or -errno. */
int sl_xdp_read_counters(const struct sl_xdp_maps *m, __u64 out[SL_XDP_NR]);
int sl_xdp_get_config(const struct sl_xdp_maps *m, struct sl_xdp_config *cfg);
/* syn_rate 0 = guard off; syn_burst 0 = the rate. Resets no bucket: new limits apply
 * as buckets refill. 0 or -errno. */
int sl_xdp_set_config(const struct sl_xdp_maps *m, const struct sl_xdp_config *cfg);

struct sl_xdp_cidr {
	int family; /* 4 or 6 */
	struct sl_lpm_v4 v4;
	struct sl_lpm_v6 v6;
};

/* "10.0.0.0/8", "2001:db8::/32"; a bare address is a /32 or /128. Host bits past the
 * prefix are cleared. 0 or -EINVAL. */
int sl_xdp_cidr_parse(const char *s, struct sl_xdp_cidr *c);
#define SL_XDP_CIDR_STRLEN 52 /* INET6_ADDRSTRLEN + "/128" */
/* "10.0.0.0/8" into buf (SL_XDP_CIDR_STRLEN is enough). */
void sl_xdp_cidr_format(const struct sl_xdp_cidr *c, char *buf, size_t len);

/* 0, or -EEXIST (already there: its hit count is kept), -ENOSPC (list full), -errno. */
int sl_xdp_deny_add(const struct sl_xdp_maps *m, const struct sl_xdp_cidr *c);
/* 0, or -ENOENT (not in the list), -errno. */
int sl_xdp_deny_del(const struct sl_xdp_maps *m, const struct sl_xdp_cidr *c);

/* Every deny entry with the packets it dropped; a callback returning non-zero stops
 * the walk and is returned. */
typedef int (*sl_xdp_deny_cb)(const struct sl_xdp_cidr *c, __u64 hits, void *arg);
int sl_xdp_deny_foreach(const struct sl_xdp_maps *m, sl_xdp_deny_cb cb, void *arg);

#endif
