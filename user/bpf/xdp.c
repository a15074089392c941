/* XDP guard loader and map operations (see xdp.h).
 *
 * Pins: the maps under their own names, the program as xdp_guard_prog, one bpf_link per
 * device as xdp_link_<ifname>. The link pin is what keeps the program attached after
 * sluicectl exits; unpinning it (plus an explicit detach) is what removes it. */
#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <linux/if_link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "bpf/pin.h"
#include "bpf/xdp.h"
#include "xdp_guard.skel.h"

static const char *const map_names[] = {"xdp_stats", "deny_v4", "deny_v6", "syn_guard",
					"xdp_config"};

static const char *const counter_names[SL_XDP_NR] = {
    [SL_XDP_PACKETS] = "packets",	    [SL_XDP_BYTES] = "bytes",
    [SL_XDP_TCP_SYN] = "tcp_syn",	    [SL_XDP_DROP_DENY_V4] = "drop_deny_v4",
    [SL_XDP_DROP_DENY_V6] = "drop_deny_v6", [SL_XDP_DROP_SYN_RATE] = "drop_syn_rate",
};

int sl_xdp_mode_parse(const char *s, enum sl_xdp_mode *mode)
{
	if (!strcmp(s, "auto"))
		*mode = SL_XDP_AUTO;
	else if (!strcmp(s, "native") || !strcmp(s, "drv"))
		*mode = SL_XDP_NATIVE;
	else if (!strcmp(s, "generic") || !strcmp(s, "skb"))
		*mode = SL_XDP_GENERIC;
	else
		return -EINVAL;
	return 0;
}

const char *sl_xdp_mode_name(enum sl_xdp_mode mode)
{
	switch (mode) {
	case SL_XDP_AUTO:
		return "auto";
	case SL_XDP_NATIVE:
		return "native";
	case SL_XDP_GENERIC:
		return "generic";
	case SL_XDP_OFFLOAD:
		return "offload";
	}
	return "?";
}

const char *sl_xdp_counter_name(unsigned int counter)
{
	return counter < SL_XDP_NR ? counter_names[counter] : NULL;
}

static enum sl_xdp_mode mode_of_attach(__u8 attach_mode)
{
	switch (attach_mode) {
	case XDP_ATTACHED_DRV:
		return SL_XDP_NATIVE;
	case XDP_ATTACHED_SKB:
		return SL_XDP_GENERIC;
	case XDP_ATTACHED_HW:
		return SL_XDP_OFFLOAD;
	default:
		return SL_XDP_AUTO; /* none or several */
	}
}

static void query_opts_init(struct bpf_xdp_query_opts *q)
{
	memset(q, 0, sizeof(*q)); /* padding included: libbpf checks it */
	q->sz = sizeof(*q);
}

static int prog_info(int fd, struct bpf_prog_info *info)
{
	__u32 len = sizeof(*info);
	memset(info, 0, sizeof(*info));
	return bpf_obj_get_info_by_fd(fd, info, &len) ? -errno : 0;
}

static int link_info(int fd, struct bpf_link_info *info)
{
	__u32 len = sizeof(*info);
	memset(info, 0, sizeof(*info));
	return bpf_obj_get_info_by_fd(fd, info, &len) ? -errno : 0;
}

/* name of program id (for messages), "" if unknown */
static void prog_name_of(__u32 id, char *buf, size_t len)
{
	struct bpf_prog_info info;
	int fd = bpf_prog_get_fd_by_id(id);
	buf[0] = 0;
	if (fd < 0)
		return;
	if (!prog_info(fd, &info))
		snprintf(buf, len, "%s", info.name);
	close(fd);
}

/* the XDP bpf_link attached to ifindex, whoever made it: fd or -ENOENT */
static int find_xdp_link(__u32 ifindex)
{
	__u32 id = 0;
	while (!bpf_link_get_next_id(id, &id)) {
		int fd = bpf_link_get_fd_by_id(id);
		if (fd < 0)
			continue;
		struct bpf_link_info li;
		if (!link_info(fd, &li) && li.type == BPF_LINK_TYPE_XDP &&
		    li.xdp.ifindex == ifindex)
			return fd;
		close(fd);
	}
	return -ENOENT;
}

/* Remove every XDP program from the device, link-attached or not. */
static int detach_everything(__u32 ifindex, const struct bpf_xdp_query_opts *q)
{
	const struct {
		__u32 id, flag;
	} att[] = {{q->drv_prog_id, XDP_FLAGS_DRV_MODE},
		   {q->skb_prog_id, XDP_FLAGS_SKB_MODE},
		   {q->hw_prog_id, XDP_FLAGS_HW_MODE}};
	for (size_t i = 0; i < sizeof(att) / sizeof(att[0]); i++) {
		if (!att[i].id)
			continue;
		int lfd = find_xdp_link(ifindex);
		int err;
		if (lfd >= 0) {
			err = bpf_link_detach(lfd) ? -errno : 0;
			close(lfd);
		} else {
			err = bpf_xdp_detach((int)ifindex, att[i].flag, NULL);
		}
		if (err)
			return err;
	}
	return 0;
}

static int link_pin_name(char *buf, size_t len, const char *ifname)
{
	int n = snprintf(buf, len, "%s%s", SL_XDP_LINK_PIN_PREFIX, ifname);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

static int create_link(int prog_fd, __u32 ifindex, __u32 flags)
{
	struct bpf_link_create_opts lo = {.sz = sizeof(lo), .flags = flags};
	int fd = bpf_link_create(prog_fd, (int)ifindex, BPF_XDP, &lo);
	return fd < 0 ? -errno : fd;
}

static int open_skel(const char *dir, struct xdp_guard_bpf **out, int *reused)
{
	struct xdp_guard_bpf *skel = xdp_guard_bpf__open();
	if (!skel)
		return -errno;
	struct bpf_map *m;
	char path[512];
	*reused = 0;
	for (m = bpf_object__next_map(skel->obj, NULL); m; m = bpf_object__next_map(skel->obj, m)) {
		int err = sl_pin_path(path, sizeof(path), dir, bpf_map__name(m));
		if (!err && !access(path, F_OK))
			*reused = 1;
		if (!err)
			err = bpf_map__set_pin_path(m, path);
		if (err) {
			xdp_guard_bpf__destroy(skel);
			return err;
		}
	}
	int err = xdp_guard_bpf__load(skel);
	if (err) {
		xdp_guard_bpf__destroy(skel);
		return err;
	}
	*out = skel;
	return 0;
}

int sl_xdp_load(const struct sl_xdp_load_opts *o, struct sl_xdp_load_info *info, char *why,
		size_t whylen)
{
	struct xdp_guard_bpf *skel = NULL;
	int own_fd = -1, link_fd = -1, err;
	char lname[64];
	struct bpf_link_info li;

	memset(info, 0, sizeof(*info));
	memset(&li, 0, sizeof(li));
	info->ifindex = if_nametoindex(o->ifname);
	if (!info->ifindex) {
		snprintf(why, whylen, "no such device: %s", o->ifname);
		return -ENODEV;
	}
	err = link_pin_name(lname, sizeof(lname), o->ifname);
	if (!err)
		err = sl_pin_prepare(o->pin_dir);
	if (err) {
		snprintf(why, whylen, "cannot prepare pin dir %s: %s", o->pin_dir, strerror(-err));
		return err;
	}

	/* our own pinned link for this device, if it still is attached to it */
	own_fd = sl_pin_open(o->pin_dir, lname);
	if (own_fd >= 0 && (link_info(own_fd, &li) || li.type != BPF_LINK_TYPE_XDP ||
			    li.xdp.ifindex != info->ifindex)) {
		close(own_fd);
		own_fd = -1;
		sl_pin_unlink(o->pin_dir, lname); /* stale: its device went away */
	}

	struct bpf_xdp_query_opts q;
	query_opts_init(&q);
	err = bpf_xdp_query((int)info->ifindex, 0, &q);
	if (err) {
		snprintf(why, whylen, "cannot query XDP on %s: %s", o->ifname, strerror(-err));
		goto out;
	}
	int ours = own_fd >= 0 && q.prog_id && li.prog_id == q.prog_id;
	if (q.prog_id && !o->force) {
		char name[BPF_OBJ_NAME_LEN], named[BPF_OBJ_NAME_LEN + 8] = "";
		const char *mode = sl_xdp_mode_name(mode_of_attach(q.attach_mode));
		if (ours) {
			snprintf(why, whylen,
				 "%s already runs the sluice XDP guard (prog id %u, %s mode); left "
				 "alone: use --force to reload it",
				 o->ifname, q.prog_id, mode);
		} else {
			prog_name_of(q.prog_id, name, sizeof(name));
			if (name[0])
				snprintf(named, sizeof(named), " \"%s\"", name);
			snprintf(why, whylen,
				 "%s already has an XDP program attached (prog id %u%s, %s mode); "
				 "left alone: use --force to replace it",
				 o->ifname, q.prog_id, named, mode);
		}
		err = -EEXIST;
		goto out;
	}

	err = open_skel(o->pin_dir, &skel, &info->maps_reused);
	if (err && o->force && info->maps_reused) {
		/* pinned maps of another layout: --force replaces them */
		for (size_t i = 0; i < sizeof(map_names) / sizeof(map_names[0]); i++)
			sl_pin_unlink(o->pin_dir, map_names[i]);
		err = open_skel(o->pin_dir, &skel, &info->maps_reused);
	}
	if (err) {
		if (info->maps_reused)
			snprintf(why, whylen,
				 "cannot load the XDP guard: %s (maps pinned under %s may have "
				 "another layout: `sluicectl unload` removes them, load --force "
				 "replaces them)",
				 strerror(-err), o->pin_dir);
		else
			snprintf(why, whylen, "cannot load the XDP guard: %s", strerror(-err));
		goto out;
	}
	if (o->config) {
		__u32 zero = 0;
		if (bpf_map_update_elem(bpf_map__fd(skel->maps.xdp_config), &zero, o->config,
					BPF_ANY)) {
			err = -errno;
			snprintf(why, whylen, "cannot write xdp_config: %s", strerror(-err));
			goto out;
		}
	}

	int prog_fd = bpf_program__fd(skel->progs.xdp_guard);
	struct bpf_prog_info pi;
	if (!prog_info(prog_fd, &pi))
		info->prog_id = pi.id;
	info->replaced_prog_id = q.prog_id;

	enum sl_xdp_mode cur = mode_of_attach(q.attach_mode);
	if (ours && (o->mode == SL_XDP_AUTO || o->mode == cur)) {
		/* same device, same mode: swap the program in place, no gap */
		if (bpf_link_update(own_fd, prog_fd, NULL)) {
			err = -errno;
			snprintf(why, whylen, "cannot replace the program on %s: %s", o->ifname,
				 strerror(-err));
			goto out;
		}
		link_fd = own_fd;
		own_fd = -1;
	} else {
		if (q.prog_id) {
			err = detach_everything(info->ifindex, &q);
			if (err) {
				snprintf(why, whylen, "cannot detach prog id %u from %s: %s",
					 q.prog_id, o->ifname, strerror(-err));
				goto out;
			}
			if (own_fd >= 0)
				sl_pin_unlink(o->pin_dir, lname);
		}
		if (o->mode == SL_XDP_GENERIC) {
			link_fd = create_link(prog_fd, info->ifindex, XDP_FLAGS_SKB_MODE);
		} else {
			link_fd = create_link(prog_fd, info->ifindex, XDP_FLAGS_DRV_MODE);
			if (link_fd < 0 && o->mode == SL_XDP_AUTO) {
				snprintf(
				    info->note, sizeof(info->note),
				    "native XDP unavailable on %s (%s); attached in generic mode",
				    o->ifname, strerror(-link_fd));
				link_fd = create_link(prog_fd, info->ifindex, XDP_FLAGS_SKB_MODE);
			}
		}
		if (link_fd < 0) {
			err = link_fd;
			link_fd = -1;
			snprintf(why, whylen, "cannot attach to %s in %s mode: %s", o->ifname,
				 o->mode == SL_XDP_AUTO ? "generic" : sl_xdp_mode_name(o->mode),
				 strerror(-err));
			goto out;
		}
		err = sl_pin_fd(link_fd, o->pin_dir, lname);
		if (err) {
			/* closing the only fd of an unpinned link detaches it */
			snprintf(why, whylen, "cannot pin the link as %s/%s: %s", o->pin_dir, lname,
				 strerror(-err));
			goto out;
		}
	}
	err = sl_pin_fd(prog_fd, o->pin_dir, SL_XDP_PROG_PIN);
	if (err) {
		snprintf(why, whylen, "cannot pin the program as %s/%s: %s", o->pin_dir,
			 SL_XDP_PROG_PIN, strerror(-err));
		goto out;
	}
	if (!link_info(link_fd, &li))
		info->link_id = li.id;
	struct bpf_xdp_query_opts now;
	query_opts_init(&now);
	if (!bpf_xdp_query((int)info->ifindex, 0, &now))
		info->mode = mode_of_attach(now.attach_mode);
	err = 0;
out:
	if (link_fd >= 0)
		close(link_fd);
	if (own_fd >= 0)
		close(own_fd);
	xdp_guard_bpf__destroy(skel);
	return err;
}

/* detach and unpin one link pin; 0 or -errno */
static int drop_link(const char *dir, const char *pin)
{
	int fd = sl_pin_open(dir, pin);
	if (fd >= 0) {
		/* explicit detach: another holder of the link (bpftool, a stray fd) must not
		 * keep the program on the device */
		bpf_link_detach(fd);
		close(fd);
	} else if (fd != -ENOENT) {
		return fd;
	}
	return sl_pin_unlink(dir, pin);
}

/* callback over the xdp_link_* pins of dir; stops on non-zero */
static int foreach_link_pin(const char *dir, int (*fn)(const char *dir, const char *pin, void *),
			    void *arg)
{
	DIR *d = opendir(dir);
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	struct dirent *e;
	int r = 0;
	while (!r && (e = readdir(d))) {
		if (!strncmp(e->d_name, SL_XDP_LINK_PIN_PREFIX, strlen(SL_XDP_LINK_PIN_PREFIX)))
			r = fn(dir, e->d_name, arg);
	}
	closedir(d);
	return r;
}

static int drop_one(const char *dir, const char *pin, void *arg)
{
	int *n = arg;
	int err = drop_link(dir, pin);
	if (!err)
		(*n)++;
	return err;
}

static int count_one(const char *dir, const char *pin, void *arg)
{
	(*(int *)arg)++;
	return 0;
}

int sl_xdp_unload(const char *pin_dir, const char *ifname, struct sl_xdp_unload_info *info,
		  char *why, size_t whylen)
{
	int err, left = 0;
	memset(info, 0, sizeof(*info));
	if (ifname) {
		char lname[64];
		err = link_pin_name(lname, sizeof(lname), ifname);
		if (!err && !sl_pin_exists(pin_dir, lname)) {
			snprintf(why, whylen, "no sluice XDP guard pinned for %s under %s", ifname,
				 pin_dir);
			return -ENOENT;
		}
		if (!err)
			err = drop_link(pin_dir, lname);
		if (!err)
			info->detached = 1;
	} else {
		err = foreach_link_pin(pin_dir, drop_one, &info->detached);
	}
	if (err) {
		snprintf(why, whylen, "cannot detach: %s", strerror(-err));
		return err;
	}
	err = foreach_link_pin(pin_dir, count_one, &left);
	if (err || left)
		return 0;
	/* last attachment gone: the program and the maps go with it */
	int had = sl_pin_exists(pin_dir, SL_XDP_PROG_PIN);
	sl_pin_unlink(pin_dir, SL_XDP_PROG_PIN);
	for (size_t i = 0; i < sizeof(map_names) / sizeof(map_names[0]); i++) {
		had |= sl_pin_exists(pin_dir, map_names[i]);
		sl_pin_unlink(pin_dir, map_names[i]);
	}
	info->removed_all = had;
	sl_pin_rmdir_if_empty(pin_dir);
	return 0;
}

struct list_ctx {
	struct sl_xdp_attachment *out;
	int max, n;
};

static int list_one(const char *dir, const char *pin, void *arg)
{
	struct list_ctx *c = arg;
	struct sl_xdp_attachment a;
	memset(&a, 0, sizeof(a));
	snprintf(a.ifname, sizeof(a.ifname), "%s", pin + strlen(SL_XDP_LINK_PIN_PREFIX));
	int fd = sl_pin_open(dir, pin);
	if (fd >= 0) {
		struct bpf_link_info li;
		if (!link_info(fd, &li) && li.type == BPF_LINK_TYPE_XDP) {
			a.link_id = li.id;
			a.prog_id = li.prog_id;
			a.ifindex = li.xdp.ifindex;
		}
		close(fd);
	}
	/* ifindex is relative to the link's network namespace: the device by that index
	 * here must carry the pin's name and run the link's program, or it is another one */
	struct bpf_xdp_query_opts q;
	char here[IF_NAMESIZE];
	query_opts_init(&q);
	if (a.ifindex && if_indextoname(a.ifindex, here) && !strcmp(here, a.ifname) &&
	    !bpf_xdp_query((int)a.ifindex, 0, &q) && q.prog_id == a.prog_id)
		a.mode = mode_of_attach(q.attach_mode);
	else if (a.ifindex)
		a.other_netns = 1;
	if (c->n < c->max)
		c->out[c->n] = a;
	c->n++;
	return 0;
}

int sl_xdp_list(const char *pin_dir, struct sl_xdp_attachment *out, int max)
{
	struct list_ctx c = {.out = out, .max = max, .n = 0};
	int err = foreach_link_pin(pin_dir, list_one, &c);
	return err ? err : c.n;
}

int sl_xdp_maps_open(const char *pin_dir, struct sl_xdp_maps *m, char *why, size_t whylen)
{
	const struct sl_pin_map_spec spec[] = {
	    {BPF_MAP_TYPE_PERCPU_ARRAY, sizeof(__u32), sizeof(__u64), SL_XDP_NR},
	    {BPF_MAP_TYPE_LPM_TRIE, sizeof(struct sl_lpm_v4), sizeof(__u64), 0},
	    {BPF_MAP_TYPE_LPM_TRIE, sizeof(struct sl_lpm_v6), sizeof(__u64), 0},
	    {BPF_MAP_TYPE_LRU_HASH, sizeof(struct sl_syn_key), sizeof(struct sl_syn_bucket), 0},
	    {BPF_MAP_TYPE_ARRAY, sizeof(__u32), sizeof(struct sl_xdp_config), 1},
	};
	int *fds[] = {&m->stats, &m->deny_v4, &m->deny_v6, &m->syn_guard, &m->config};
	int err = 0, missing = 0;
	for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
		*fds[i] = -1;
	for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++) {
		int fd = sl_pin_open_map(pin_dir, map_names[i], &spec[i]);
		if (fd == -ENOENT) {
			missing++;
			continue;
		}
		if (fd < 0) {
			err = fd;
			snprintf(why, whylen, "%s/%s: %s", pin_dir, map_names[i],
				 fd == -EINVAL ? "not a map of the XDP guard's layout"
					       : strerror(-fd));
			break;
		}
		*fds[i] = fd;
	}
	if (!err && missing) {
		err = -ENOENT;
		snprintf(why, whylen, "the XDP guard is not loaded (no %s maps under %s)",
			 missing == (int)(sizeof(fds) / sizeof(fds[0])) ? "pinned"
									: "complete set of",
			 pin_dir);
	}
	if (err)
		sl_xdp_maps_close(m);
	return err;
}

void sl_xdp_maps_close(struct sl_xdp_maps *m)
{
	int *fds[] = {&m->stats, &m->deny_v4, &m->deny_v6, &m->syn_guard, &m->config};
	for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++) {
		if (*fds[i] >= 0)
			close(*fds[i]);
		*fds[i] = -1;
	}
}

int sl_xdp_read_counters(const struct sl_xdp_maps *m, __u64 out[SL_XDP_NR])
{
	for (__u32 i = 0; i < SL_XDP_NR; i++) {
		int err = sl_pin_read_u64_sum(m->stats, i, &out[i]);
		if (err)
			return err;
	}
	return 0;
}

int sl_xdp_get_config(const struct sl_xdp_maps *m, struct sl_xdp_config *cfg)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(m->config, &zero, cfg) ? -errno : 0;
}

int sl_xdp_set_config(const struct sl_xdp_maps *m, const struct sl_xdp_config *cfg)
{
	__u32 zero = 0;
	return bpf_map_update_elem(m->config, &zero, cfg, BPF_ANY) ? -errno : 0;
}

static void mask_bits(__u8 *addr, unsigned int nbytes, unsigned int prefixlen)
{
	for (unsigned int i = 0; i < nbytes; i++) {
		unsigned int keep = prefixlen > i * 8 ? prefixlen - i * 8 : 0;
		if (keep < 8)
			addr[i] &= (__u8)(0xff00u >> keep);
	}
}

int sl_xdp_cidr_parse(const char *s, struct sl_xdp_cidr *c)
{
	char buf[INET6_ADDRSTRLEN + 8];
	if (snprintf(buf, sizeof(buf), "%s", s) >= (int)sizeof(buf))
		return -EINVAL;
	memset(c, 0, sizeof(*c));
	char *slash = strchr(buf, '/');
	long plen = -1;
	if (slash) {
		*slash = 0;
		char *end;
		errno = 0;
		plen = strtol(slash + 1, &end, 10);
		if (!isdigit((unsigned char)slash[1]) || *end || errno)
			return -EINVAL;
	}
	if (inet_pton(AF_INET, buf, c->v4.addr) == 1) {
		if (plen > 32)
			return -EINVAL;
		c->family = 4;
		c->v4.prefixlen = plen < 0 ? 32 : (__u32)plen;
		mask_bits(c->v4.addr, 4, c->v4.prefixlen);
		return 0;
	}
	if (inet_pton(AF_INET6, buf, c->v6.addr) == 1) {
		if (plen > 128)
			return -EINVAL;
		c->family = 6;
		c->v6.prefixlen = plen < 0 ? 128 : (__u32)plen;
		mask_bits(c->v6.addr, 16, c->v6.prefixlen);
		return 0;
	}
	return -EINVAL;
}

void sl_xdp_cidr_format(const struct sl_xdp_cidr *c, char *buf, size_t len)
{
	char a[INET6_ADDRSTRLEN] = "?";
	if (c->family == 4) {
		inet_ntop(AF_INET, c->v4.addr, a, sizeof(a));
		snprintf(buf, len, "%s/%u", a, c->v4.prefixlen);
	} else {
		inet_ntop(AF_INET6, c->v6.addr, a, sizeof(a));
		snprintf(buf, len, "%s/%u", a, c->v6.prefixlen);
	}
}

static int deny_fd(const struct sl_xdp_maps *m, const struct sl_xdp_cidr *c, const void **key)
{
	*key = c->family == 4 ? (const void *)&c->v4 : (const void *)&c->v6;
	return c->family == 4 ? m->deny_v4 : m->deny_v6;
}

int sl_xdp_deny_add(const struct sl_xdp_maps *m, const struct sl_xdp_cidr *c)
{
	const void *key;
	int fd = deny_fd(m, c, &key);
	__u64 zero = 0;
	if (!bpf_map_update_elem(fd, key, &zero, BPF_NOEXIST))
		return 0;
	return errno == E2BIG ? -ENOSPC : -errno;
}

int sl_xdp_deny_del(const struct sl_xdp_maps *m, const struct sl_xdp_cidr *c)
{
	const void *key;
	int fd = deny_fd(m, c, &key);
	return bpf_map_delete_elem(fd, key) ? -errno : 0;
}

static int walk_trie(int fd, int family, sl_xdp_deny_cb cb, void *arg)
{
	struct sl_xdp_cidr c;
	memset(&c, 0, sizeof(c));
	c.family = family;
	void *key = family == 4 ? (void *)&c.v4 : (void *)&c.v6;
	size_t ksz = family == 4 ? sizeof(c.v4) : sizeof(c.v6);
	unsigned char prev[sizeof(struct sl_lpm_v6)];
	const void *pk = NULL;
	while (!bpf_map_get_next_key(fd, pk, key)) {
		__u64 hits = 0;
		if (!bpf_map_lookup_elem(fd, key, &hits)) {
			int r = cb(&c, hits, arg);
			if (r)
				return r;
		}
		memcpy(prev, key, ksz);
		pk = prev;
	}
	return errno == ENOENT ? 0 : -errno;
}

int sl_xdp_deny_foreach(const struct sl_xdp_maps *m, sl_xdp_deny_cb cb, void *arg)
{
	int r = walk_trie(m->deny_v4, 4, cb, arg);
	return r ? r : walk_trie(m->deny_v6, 6, cb, arg);
}
