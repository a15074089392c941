/* Steering set-up: load, pin, mmap and attach bpf/steer.bpf.c (see steer.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "bpf/pin.h"
#include "bpf/steer.h"
#include "core/clock.h"
#include "core/log.h"
#include "steer.skel.h"

#ifndef SO_ATTACH_REUSEPORT_EBPF
#define SO_ATTACH_REUSEPORT_EBPF 52
#endif

#ifndef SO_DETACH_REUSEPORT_BPF
#define SO_DETACH_REUSEPORT_BPF 68
#endif

#define MIGRATE_SYSCTL "/proc/sys/net/ipv4/tcp_migrate_req"

struct steer {
	struct steer_bpf *skel;
	struct sl_worker_state *states;
	size_t states_len;
	struct sl_worker_stats *stats;
	size_t stats_len;
	unsigned int n_workers;
	int migrate_saved; /* old sysctl value, -1 = untouched */
	int handed_over;   /* a successor restores the sysctl */
	char dir[256];
};

static struct steer steer = {.migrate_saved = -1};

static int libbpf_quiet(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	if (level == LIBBPF_WARN && sl_log_level_cur <= SL_LOG_DEBUG)
		return vfprintf(stderr, fmt, ap);
	return 0;
}

static void *map_mmap(struct bpf_map *m, size_t *len)
{
	long page = sysconf(_SC_PAGESIZE);
	size_t sz = (size_t)bpf_map__value_size(m) * bpf_map__max_entries(m);
	sz = (sz + (size_t)page - 1) & ~((size_t)page - 1);
	void *p = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_SHARED, bpf_map__fd(m), 0);
	if (p == MAP_FAILED)
		return NULL;
	*len = sz;
	return p;
}

static int set_pins(struct steer_bpf *skel, const char *dir)
{
	struct bpf_map *m;
	char path[512];
	bpf_object__for_each_map(m, skel->obj)
	{
		snprintf(path, sizeof(path), "%s/%s", dir, bpf_map__name(m));
		int r = bpf_map__set_pin_path(m, path);
		if (r)
			return r;
	}
	return 0;
}

static void unpin_stale(const char *dir, struct steer_bpf *skel)
{
	struct bpf_map *m;
	char path[512];
	bpf_object__for_each_map(m, skel->obj)
	{
		snprintf(path, sizeof(path), "%s/%s", dir, bpf_map__name(m));
		unlink(path);
	}
}

static int read_int_file(const char *path)
{
	char b[32];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, b, sizeof(b) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	b[n] = 0;
	return atoi(b);
}

static int write_int_file(const char *path, int v)
{
	char b[16];
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int n = snprintf(b, sizeof(b), "%d\n", v);
	ssize_t r = write(fd, b, (size_t)n);
	int err = r < 0 ? -errno : 0;
	close(fd);
	return err;
}

static int socket_cookie(int fd, __u64 *cookie)
{
	socklen_t len = sizeof(*cookie);
	return getsockopt(fd, SOL_SOCKET, SO_COOKIE, cookie, &len) ? -errno : 0;
}

static int check_setup(const struct sl_steer_setup *s, char *why, size_t whylen)
{
	if (!s->n_workers || s->n_workers > SL_MAX_WORKERS || s->n_listeners > SL_MAX_LISTENERS ||
	    !s->cpus || (s->n_listeners && !s->fds)) {
		snprintf(why, whylen, "bad steering set-up: %u workers, %u listeners",
			 s->n_workers, s->n_listeners);
		return -EINVAL;
	}
	return 0;
}

static void detach(const struct sl_steer_setup *s, unsigned int n)
{
	for (unsigned int l = 0; l < n; l++) {
		int unused = 0;
		setsockopt(s->fds[l], SOL_SOCKET, SO_DETACH_REUSEPORT_BPF, &unused,
			   sizeof(unused));
	}
}

/* The pin only lets bpftool and sluicectl find the program; steering works without it,
 * so a failure is worth a warning, not refusing to steer. */
static void pin_prog(struct steer_bpf *skel)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/steer_prog", steer.dir);
	if (unlink(path) && errno != ENOENT)
		sl_log(SL_LOG_WARN,
		       "msg=\"cannot replace the pinned steering program\" path=%s "
		       "err=\"%s\"",
		       path, strerror(errno));
	int err = bpf_program__pin(skel->progs.steer, path);
	if (err)
		sl_log(SL_LOG_WARN, "msg=\"cannot pin the steering program\" path=%s err=\"%s\"",
		       path, strerror(-err));
}

int sl_steer_init(const struct sl_steer_setup *s, struct sl_worker_state **states,
		  struct sl_worker_stats **stats, char *why, size_t whylen)
{
	const char *dir = s->pin_path ? s->pin_path : SL_PIN_PATH_DEFAULT;
	struct steer_bpf *skel = NULL;
	unsigned int attached = 0;
	int err;

	err = check_setup(s, why, whylen);
	if (err)
		return err;
	libbpf_set_print(libbpf_quiet);
	err = sl_pin_prepare(dir);
	if (err) {
		snprintf(why, whylen, "cannot prepare pin dir %s: %s", dir, strerror(-err));
		return err;
	}
	for (int attempt = 0; attempt < 2; attempt++) {
		skel = steer_bpf__open();
		if (!skel) {
			err = -errno;
			snprintf(why, whylen, "cannot open the steering program: %s",
				 strerror(-err));
			return err;
		}
		err = s->fresh ? 0 : set_pins(skel, dir);
		if (!err)
			err = steer_bpf__load(skel);
		if (!err)
			break;
		/* pinned maps of an older layout: replace them once (never a predecessor's:
		 * it still serves from them) */
		if (!s->fresh)
			unpin_stale(dir, skel);
		steer_bpf__destroy(skel);
		skel = NULL;
	}
	if (!skel) {
		snprintf(why, whylen, "cannot load the steering program: %s", strerror(-err));
		return err;
	}

	steer.states = map_mmap(skel->maps.workers, &steer.states_len);
	steer.stats = map_mmap(skel->maps.worker_stats, &steer.stats_len);
	if (!steer.states || !steer.stats) {
		err = -errno;
		snprintf(why, whylen, "cannot mmap the worker maps: %s", strerror(-err));
		goto fail;
	}

	/* fresh slots for this daemon; slots beyond n_workers are marked empty */
	memset(steer.states, 0, sizeof(struct sl_worker_state) * SL_MAX_WORKERS);
	memset(steer.stats, 0, sizeof(struct sl_worker_stats) * SL_MAX_WORKERS);
	/* A map the program reads must hold what we meant: a CPU entry left at a stale
	 * worker, or a config left at zero workers, would misroute every connection. */
	__u32 none = SL_MAX_WORKERS;
	for (__u32 cpu = 0; cpu < SL_MAX_WORKERS; cpu++) {
		if (bpf_map_update_elem(bpf_map__fd(skel->maps.cpu_worker), &cpu, &none, BPF_ANY)) {
			err = -errno;
			snprintf(why, whylen, "cannot reset the cpu_worker map: %s",
				 strerror(-err));
			goto fail;
		}
	}

	/* A socket sits in one socket array at a time: the predecessor's sockets this
	 * daemon takes over leave the predecessor's array first. Its program then finds no
	 * socket in those slots and lets the kernel's hash place the connection (on a
	 * socket both daemons accept from) until ours is attached below. */
	if (s->n_release) {
		char lp[512];
		snprintf(lp, sizeof(lp), "%s/listeners", dir);
		int pfd = bpf_obj_get(lp);
		for (unsigned int k = 0; pfd >= 0 && k < s->n_release; k++)
			bpf_map_delete_elem(pfd, &s->release_keys[k]);
		if (pfd >= 0)
			close(pfd);
	}

	uint64_t now = sl_mono_ns();
	for (unsigned int i = 0; i < s->n_workers; i++) {
		struct sl_worker_state *ws = &steer.states[i];
		int wcpu = s->cpus[i];
		ws->cpu = (__u32)wcpu;
		ws->state = SL_WORKER_STARTING;
		ws->heartbeat_ns = now;
		ws->max_conns = s->max_conns;
		ws->pid = (__u32)getpid();
		ws->n_workers = s->n_workers;
		ws->active = s->active ? s->active[i] : 0;
		if (wcpu >= 0 && wcpu < SL_MAX_WORKERS) {
			__u32 cpu = (__u32)wcpu, cur;
			/* first worker pinned to a CPU owns it */
			if (!bpf_map_lookup_elem(bpf_map__fd(skel->maps.cpu_worker), &cpu, &cur) &&
			    cur == SL_MAX_WORKERS &&
			    bpf_map_update_elem(bpf_map__fd(skel->maps.cpu_worker), &cpu, &i,
						BPF_ANY)) {
				err = -errno;
				snprintf(why, whylen, "cannot set the worker of cpu %u: %s", cpu,
					 strerror(-err));
				goto fail;
			}
		}
		for (unsigned int l = 0; l < s->n_listeners; l++) {
			__u32 key = l * SL_MAX_WORKERS + i;
			int lfd = s->fds[i * s->n_listeners + l];
			__u64 fd = (__u64)lfd;
			__u64 cookie;
			err = bpf_map_update_elem(bpf_map__fd(skel->maps.listeners), &key, &fd,
						  BPF_ANY);
			if (!err)
				err = socket_cookie(lfd, &cookie);
			if (!err)
				err = bpf_map_update_elem(bpf_map__fd(skel->maps.listener_ids),
							  &cookie, &l, BPF_ANY);
			if (err) {
				err = err < 0 ? err : -errno;
				snprintf(why, whylen, "cannot register listener socket: %s",
					 strerror(-err));
				goto fail;
			}
		}
	}
	struct sl_steer_config cfg = {
	    .n_workers = s->n_workers,
	    .n_listeners = s->n_listeners,
	    .stall_ns = (__u64)s->stall_ms * 1000000ull,
	    .locality = s->locality,
	    .load_margin = s->load_margin,
	    .load_signal = s->load_signal,
	};
	__u32 zero = 0;
	if (bpf_map_update_elem(bpf_map__fd(skel->maps.steer_config), &zero, &cfg, BPF_ANY)) {
		err = -errno;
		snprintf(why, whylen, "cannot write the steer_config map: %s", strerror(-err));
		goto fail;
	}

	/* one attach per listener group: any member socket carries it for the group
	 * (worker 0's sockets are fds[0 .. n_listeners-1]) */
	int prog_fd = bpf_program__fd(skel->progs.steer);
	for (; attached < s->n_listeners; attached++) {
		unsigned int l = attached;
		if (setsockopt(s->fds[l], SOL_SOCKET, SO_ATTACH_REUSEPORT_EBPF, &prog_fd,
			       sizeof(prog_fd))) {
			err = -errno;
			snprintf(why, whylen, "cannot attach to listener %s: %s",
				 s->names ? s->names[l] : "?", strerror(-err));
			goto fail;
		}
	}
	snprintf(steer.dir, sizeof(steer.dir), "%s", dir);
	if (!s->fresh)
		pin_prog(skel);
	err = 0;

	/* A network-namespace sysctl: in a pod on the host network, or under systemd's
	 * ProtectKernelTunables, /proc/sys is read-only and the node sets it (sysctl.d, an
	 * init container). Say so once; restore at exit only what this daemon changed (a
	 * successor finds it set by its predecessor and takes the duty over from it). */
	int was = read_int_file(MIGRATE_SYSCTL), werr = 0;
	steer.migrate_saved = -1;
	if (was != 1 && (werr = write_int_file(MIGRATE_SYSCTL, 1)))
		sl_log(SL_LOG_WARN,
		       "msg=\"net.ipv4.tcp_migrate_req is not 1 and cannot be set here; queued "
		       "connections of a closing worker will not move (set it for the node: "
		       "sysctl.d or an init container)\" value=%d err=\"%s\"",
		       was, strerror(-werr));
	else if (was != 1)
		steer.migrate_saved = was;
	steer.skel = skel;
	steer.n_workers = s->n_workers;
	for (unsigned int i = 0; i < s->n_workers; i++) {
		states[i] = &steer.states[i];
		stats[i] = &steer.stats[i];
	}
	return 0;
fail:
	/* groups already steered would keep running the program on maps nobody updates */
	detach(s, attached);
	if (steer.states)
		munmap(steer.states, steer.states_len);
	if (steer.stats)
		munmap(steer.stats, steer.stats_len);
	steer.states = NULL;
	steer.stats = NULL;
	steer_bpf__destroy(skel);
	return err ? err : -EINVAL;
}

int sl_steer_set_policy(unsigned int locality, unsigned int load_margin, unsigned int load_signal)
{
	if (!steer.skel)
		return -ENOENT;
	int fd = bpf_map__fd(steer.skel->maps.steer_config);
	__u32 zero = 0;
	struct sl_steer_config cfg;
	if (bpf_map_lookup_elem(fd, &zero, &cfg))
		return -errno;
	cfg.locality = locality;
	cfg.load_margin = load_margin;
	cfg.load_signal = load_signal;
	return bpf_map_update_elem(fd, &zero, &cfg, BPF_ANY) ? -errno : 0;
}

int sl_steer_read_stats(__u64 *out)
{
	if (!steer.skel)
		return -ENOENT;
	int fd = bpf_map__fd(steer.skel->maps.steer_stats);
	for (__u32 i = 0; i < SL_STEER_NR; i++)
		if (sl_pin_read_u64_sum(fd, i, &out[i]))
			out[i] = 0;
	return 0;
}

void sl_steer_fini(void)
{
	if (!steer.skel)
		return;
	for (unsigned int i = 0; i < steer.n_workers; i++) {
		steer.states[i].state = SL_WORKER_EMPTY;
		steer.states[i].active = 0;
	}
	if (!steer.handed_over && steer.migrate_saved >= 0)
		write_int_file(MIGRATE_SYSCTL, steer.migrate_saved);
	munmap(steer.states, steer.states_len);
	munmap(steer.stats, steer.stats_len);
	steer.states = NULL;
	steer.stats = NULL;
	steer_bpf__destroy(steer.skel);
	steer.skel = NULL;
	steer.n_workers = 0;
}

int sl_steer_listener_add(unsigned int slot, const int *fds, unsigned int n, const char *name,
			  char *why, size_t whylen)
{
	if (!steer.skel)
		return 0;
	if (slot >= SL_MAX_LISTENERS || n != steer.n_workers) {
		snprintf(why, whylen, "bad steering slot %u for %u sockets", slot, n);
		return -EINVAL;
	}
	int err = 0;
	unsigned int i;
	for (i = 0; i < n && !err; i++) {
		__u32 key = slot * SL_MAX_WORKERS + i, lid = slot;
		__u64 fd = (__u64)fds[i], cookie;
		err = bpf_map_update_elem(bpf_map__fd(steer.skel->maps.listeners), &key, &fd,
					  BPF_ANY);
		if (!err)
			err = socket_cookie(fds[i], &cookie);
		if (!err)
			err = bpf_map_update_elem(bpf_map__fd(steer.skel->maps.listener_ids),
						  &cookie, &lid, BPF_ANY);
		if (err)
			err = err < 0 ? err : -errno;
	}
	int prog_fd = bpf_program__fd(steer.skel->progs.steer);
	if (!err && setsockopt(fds[0], SOL_SOCKET, SO_ATTACH_REUSEPORT_EBPF, &prog_fd,
			       sizeof(prog_fd)))
		err = -errno;
	if (err) {
		snprintf(why, whylen, "cannot steer listener %s: %s", name ? name : "?",
			 strerror(-err));
		sl_steer_listener_del(slot, fds, n);
	}
	return err;
}

void sl_steer_listener_del(unsigned int slot, const int *fds, unsigned int n)
{
	if (!steer.skel || slot >= SL_MAX_LISTENERS)
		return;
	for (unsigned int i = 0; i < n && i < SL_MAX_WORKERS; i++) {
		__u32 key = slot * SL_MAX_WORKERS + i;
		__u64 cookie;
		bpf_map_delete_elem(bpf_map__fd(steer.skel->maps.listeners), &key);
		if (fds[i] >= 0 && !socket_cookie(fds[i], &cookie))
			bpf_map_delete_elem(bpf_map__fd(steer.skel->maps.listener_ids), &cookie);
	}
}

int sl_steer_reattach(const unsigned int *slots, unsigned int n_slots, const int *fds)
{
	if (!steer.skel)
		return 0;
	int prog_fd = bpf_program__fd(steer.skel->progs.steer), err = 0;
	unsigned int nw = steer.n_workers;
	/* our program first: the successor's goes, and its socket array with it (freed
	 * by the kernel a little later: until then our sockets are busy in it) */
	for (unsigned int i = 0; i < n_slots; i++)
		if (setsockopt(fds[i * nw], SOL_SOCKET, SO_ATTACH_REUSEPORT_EBPF, &prog_fd,
			       sizeof(prog_fd)) &&
		    !err)
			err = -errno;
	for (unsigned int i = 0; i < n_slots; i++)
		for (unsigned int w = 0; w < nw; w++) {
			__u32 key = slots[i] * SL_MAX_WORKERS + w;
			__u64 fd = (__u64)fds[i * nw + w], have, cookie;
			/* still in its place (the successor never took it out) */
			if (!bpf_map_lookup_elem(bpf_map__fd(steer.skel->maps.listeners), &key,
						 &have) &&
			    !socket_cookie(fds[i * nw + w], &cookie) && have == cookie)
				continue;
			int r = -EBUSY;
			for (int t = 0; t < 2000 && r == -EBUSY; t++) {
				r = bpf_map_update_elem(bpf_map__fd(steer.skel->maps.listeners),
							&key, &fd, BPF_ANY)
					? -errno
					: 0;
				if (r == -EBUSY)
					usleep(1000);
			}
			if (r && !err)
				err = r;
		}
	int perr = sl_steer_pin(); /* the pins too: a successor may have replaced them */
	return err ? err : perr;
}

int sl_steer_migrate_saved(void)
{
	return steer.skel ? steer.migrate_saved : -1;
}

void sl_steer_handed_over(void)
{
	steer.handed_over = 1;
}

void sl_steer_adopt_migrate(int saved)
{
	steer.migrate_saved = saved;
}

int sl_steer_pin(void)
{
	if (!steer.skel)
		return 0;
	struct bpf_map *m;
	char path[512];
	int err = 0;
	bpf_object__for_each_map(m, steer.skel->obj)
	{
		if (bpf_map__is_internal(m))
			continue;
		snprintf(path, sizeof(path), "%s/%s", steer.dir, bpf_map__name(m));
		/* the predecessor's map goes from the directory, not from the kernel: it keeps
		 * its own reference while it drains */
		if (unlink(path) && errno != ENOENT && !err)
			err = -errno;
		int fd = bpf_map__fd(m);
		if (bpf_obj_pin(fd, path) && !err)
			err = -errno;
	}
	pin_prog(steer.skel);
	return err;
}
