/* sluicectl: operate a node's sluice. Subcommands come from one table; each has --help.
 * Exit codes: 0 ok, 1 the operation failed, 2 usage.
 *
 * The BPF-facing commands read and write the pinned maps directly (bpffs, default
 * /sys/fs/bpf/sluice, --pin-path DIR), so they work whether or not sluiced runs. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/statfs.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <jansson.h>

#include "bpf/pin.h"
#include "bpf/steer.h"
#include "bpf/xdp.h"
#include "config/config.h"
#include "sluice_common.h"
#include "sluicectl_upstream.h"

struct cmd {
	const char *name;
	const char *args;
	const char *help;
	int (*run)(int argc, char **argv);
};

#define SL_ADMIN_SOCKET_DEFAULT "/run/sluice/admin.sock"

static const char *pin_dir = SL_PIN_PATH_DEFAULT;
static int verbose;

static int libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	if (!verbose || level == LIBBPF_DEBUG)
		return 0;
	return vfprintf(stderr, fmt, ap);
}

static void err_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void err_msg(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("sluicectl: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static int parse_u32(const char *s, unsigned long min, unsigned long max, __u32 *out)
{
	char *end;
	errno = 0;
	if (!isdigit((unsigned char)*s))
		return -EINVAL;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return -EINVAL;
	*out = (__u32)v;
	return 0;
}

static int parse_seconds(const char *s, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || *end || end == s || !(v > 0) || v > 86400)
		return -EINVAL;
	*out = v;
	return 0;
}

/* getopt_long over a subcommand's argv (argv[0] = its name); messages are ours */
static int next_opt(int argc, char **argv, const char *shortopts, const struct option *longopts)
{
	opterr = 0;
	int c = getopt_long(argc, argv, shortopts, longopts, NULL);
	if (c == '?') {
		if (optopt)
			err_msg("%s: bad or incomplete option -%c", argv[0], optopt);
		else
			err_msg("%s: unknown option %s", argv[0], argv[optind - 1]);
	} else if (c == ':') {
		err_msg("%s: option %s needs a value", argv[0], argv[optind - 1]);
		c = '?';
	}
	return c;
}

static void reset_getopt(void)
{
	optind = 0; /* glibc: full re-initialisation */
}

static double now_mono(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static __u64 now_mono_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (__u64)t.tv_sec * 1000000000ull + (__u64)t.tv_nsec;
}

static int bpffs_mounted(void)
{
	struct statfs st;
	return !statfs(SL_PIN_BPFFS, &st) && st.f_type == 0xcafe4a11;
}

/* ---------------------------------------------------------------- daemon */

/* pid runs the sluiced binary: /proc/PID/exe, not the comm a process may set itself */
static int pid_is_sluiced(int pid)
{
	char p[64], exe[PATH_MAX];
	snprintf(p, sizeof(p), "/proc/%d/exe", pid);
	ssize_t n = readlink(p, exe, sizeof(exe) - 1);
	if (n <= 0)
		return 0;
	exe[n] = 0;
	/* a binary replaced on disk (an upgrade) reads "PATH (deleted)" */
	size_t len = (size_t)n;
	if (len > 10 && !strcmp(exe + len - 10, " (deleted)"))
		exe[len -= 10] = 0;
	const char *base = strrchr(exe, '/');
	base = base ? base + 1 : exe;
	return !strcmp(base, "sluiced");
}

/* 1 if process pid holds a BPF program fd of that id (/proc/PID/fdinfo), 0 if not,
 * -1 when its fds cannot be read (not root) */
static int pid_holds_prog(int pid, __u32 id)
{
	char p[300], line[128];
	snprintf(p, sizeof(p), "/proc/%d/fdinfo", pid);
	DIR *d = opendir(p);
	if (!d)
		return -1;
	int found = 0, readable = 0;
	struct dirent *e;
	while (!found && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "/proc/%d/fdinfo/%s", pid, e->d_name);
		FILE *f = fopen(p, "re");
		if (!f)
			continue;
		readable = 1;
		while (fgets(line, sizeof(line), f)) {
			unsigned int v;
			if (sscanf(line, "prog_id: %u", &v) == 1 && v == id) {
				found = 1;
				break;
			}
		}
		fclose(f);
	}
	closedir(d);
	return found ? 1 : readable ? 0 : -1;
}

/* ---------------------------------------------------------------- steering maps */


#define DEFAULT_STALL_NS (200ull * 1000000ull)

/* What the daemon side pinned, read in one go. Absent maps leave have_* at 0. */
struct node {
	int have_workers, have_stats, have_steer_stats, have_steer_cfg, have_steer_prog;
	__u32 steer_prog_id; /* id of the pinned steer_prog, 0 = none or unreadable */
	char bad[256];	     /* a pinned map with another layout, or an error opening one */
	struct sl_worker_state ws[SL_MAX_WORKERS];
	struct sl_worker_stats st[SL_MAX_WORKERS];
	__u64 steer[SL_STEER_NR];
	struct sl_steer_config cfg;
	unsigned int n_slots; /* slots worth showing: [0, n_slots) */
	__u32 pid;	      /* daemon pid from the slots, 0 = none */
	int alive;	      /* that pid is a running sluiced */
	int slots_in_use;     /* slots not SL_WORKER_EMPTY */
};

static int open_node_map(const char *name, __u32 type, __u32 vsize, __u32 entries, struct node *n)
{
	const struct sl_pin_map_spec spec = {type, sizeof(__u32), vsize, entries};
	int fd = sl_pin_open_map(pin_dir, name, &spec);
	if (fd == -ENOENT)
		return -1;
	if (fd < 0 && !n->bad[0])
		snprintf(n->bad, sizeof(n->bad), "%s/%s: %s", pin_dir, name,
			 fd == -EINVAL ? "pinned, but not of the layout this sluicectl knows"
				       : strerror(-fd));
	return fd < 0 ? -1 : fd;
}

static void read_node(struct node *n)
{
	memset(n, 0, sizeof(*n));
	int wfd = open_node_map("workers", BPF_MAP_TYPE_ARRAY, sizeof(struct sl_worker_state),
				SL_MAX_WORKERS, n);
	int sfd = open_node_map("worker_stats", BPF_MAP_TYPE_ARRAY, sizeof(struct sl_worker_stats),
				SL_MAX_WORKERS, n);
	int xfd =
	    open_node_map("steer_stats", BPF_MAP_TYPE_PERCPU_ARRAY, sizeof(__u64), SL_STEER_NR, n);
	int cfd =
	    open_node_map("steer_config", BPF_MAP_TYPE_ARRAY, sizeof(struct sl_steer_config), 1, n);
	n->have_steer_prog = sl_pin_exists(pin_dir, "steer_prog");
	if (n->have_steer_prog) {
		int pfd = sl_pin_open(pin_dir, "steer_prog");
		struct bpf_prog_info pi;
		__u32 pilen = sizeof(pi);
		memset(&pi, 0, sizeof(pi));
		if (pfd >= 0 && !bpf_obj_get_info_by_fd(pfd, &pi, &pilen))
			n->steer_prog_id = pi.id;
		if (pfd >= 0)
			close(pfd);
	}
	if (wfd >= 0) {
		n->have_workers = 1;
		for (__u32 i = 0; i < SL_MAX_WORKERS; i++)
			bpf_map_lookup_elem(wfd, &i, &n->ws[i]);
		close(wfd);
	}
	if (sfd >= 0) {
		n->have_stats = 1;
		for (__u32 i = 0; i < SL_MAX_WORKERS; i++)
			bpf_map_lookup_elem(sfd, &i, &n->st[i]);
		close(sfd);
	}
	if (xfd >= 0) {
		n->have_steer_stats = 1;
		for (__u32 i = 0; i < SL_STEER_NR; i++)
			sl_pin_read_u64_sum(xfd, i, &n->steer[i]);
		close(xfd);
	}
	if (cfd >= 0) {
		__u32 zero = 0;
		n->have_steer_cfg = !bpf_map_lookup_elem(cfd, &zero, &n->cfg);
		close(cfd);
	}
	/* the daemon's slots: n_workers of any slot it wrote (kept after it exits, so the
	 * last counters stay visible), else every slot in use */
	unsigned int nw = 0, last_used = 0;
	for (unsigned int i = 0; i < SL_MAX_WORKERS; i++) {
		const struct sl_worker_state *w = &n->ws[i];
		if (w->n_workers > nw && w->n_workers <= SL_MAX_WORKERS)
			nw = w->n_workers;
		if (w->state != SL_WORKER_EMPTY) {
			n->slots_in_use++;
			last_used = i + 1;
			if (!n->pid)
				n->pid = w->pid;
		}
	}
	n->n_slots = nw > last_used ? nw : last_used;
	if (!n->pid && n->n_slots)
		n->pid = n->ws[0].pid;
	n->alive = n->pid && n->slots_in_use && pid_is_sluiced((int)n->pid);
}

static __u64 stall_ns(const struct node *n)
{
	return n->have_steer_cfg && n->cfg.stall_ns ? n->cfg.stall_ns : DEFAULT_STALL_NS;
}

static const char *worker_state(const struct node *n, unsigned int i, __u64 now)
{
	const struct sl_worker_state *w = &n->ws[i];
	switch (w->state) {
	case SL_WORKER_EMPTY:
		return "stopped";
	case SL_WORKER_STARTING:
		return "starting";
	case SL_WORKER_DRAINING:
		return "draining";
	case SL_WORKER_READY:
		if (!n->alive)
			return "gone";
		if (now > w->heartbeat_ns && now - w->heartbeat_ns > stall_ns(n))
			return "stalled";
		return "ready";
	}
	return "?";
}

/* one line: "running: pid N (K workers)" etc. */
static void describe_daemon(const struct node *n, char *buf, size_t len)
{
	if (n->alive) {
		snprintf(buf, len, "running: pid %u (%u workers)", n->pid, n->n_slots);
		return;
	}
	if (n->have_workers && n->slots_in_use)
		snprintf(buf, len,
			 "not running (pid %u of the worker slots is gone: it did not exit "
			 "cleanly)",
			 n->pid);
	else if (n->have_workers)
		snprintf(buf, len, "not running (no worker slots in use)");
	else
		snprintf(buf, len, "not running");
}

static void describe_steering(const struct node *n, char *buf, size_t len)
{
	if (!n->have_workers) {
		snprintf(buf, len, "off (no pinned maps under %s)", pin_dir);
		return;
	}
	if (!n->alive) {
		snprintf(buf, len, "off (daemon not running; the pinned maps keep its last state)");
		return;
	}
	if (!n->have_steer_prog) {
		snprintf(buf, len, "off (maps pinned but no steer_prog: pid %u runs without it)",
			 n->pid);
		return;
	}
	/* the program the kernel runs for the group is the one the daemon attached, which
	 * it holds open; a pinned program it does not hold is another one's, left stale */
	int holds = n->steer_prog_id ? pid_holds_prog((int)n->pid, n->steer_prog_id) : -1;
	if (holds == 0) {
		snprintf(buf, len,
			 "off: the pinned steer_prog (prog id %u) is not the program of pid %u "
			 "(stale pin; restart the daemon)",
			 n->steer_prog_id, n->pid);
		return;
	}
	__u64 now = now_mono_ns();
	unsigned int ready = 0, stalled = 0, draining = 0, starting = 0;
	for (unsigned int i = 0; i < n->n_slots; i++) {
		const char *s = worker_state(n, i, now);
		ready += !strcmp(s, "ready");
		stalled += !strcmp(s, "stalled");
		draining += !strcmp(s, "draining");
		starting += !strcmp(s, "starting");
	}
	if (!ready)
		snprintf(buf, len,
			 "on, but no worker is ready (%u stalled, %u draining, %u starting): the "
			 "kernel's hash places new connections",
			 stalled, draining, starting);
	else
		snprintf(buf, len, "on (%u of %u workers ready%s), prog id %u%s", ready, n->n_slots,
			 stalled || draining ? "; the others get no new connections" : "",
			 n->steer_prog_id, holds == 1 ? " held by the daemon" : "");
}

/* ---------------------------------------------------------------- load / unload */

static int check_private_bpffs(void)
{
	int r = sl_pin_ensure_bpffs();
	if (r < 0) {
		err_msg("cannot mount bpffs at %s: %s", SL_PIN_BPFFS, strerror(-r));
		return 1;
	}
	if (r == 1 && sl_pin_private_mntns()) {
		err_msg(
		    "bpffs was not mounted at %s in this mount namespace (`ip netns exec` "
		    "does that): pins made here would vanish when sluicectl exits. Enter only "
		    "the network namespace instead: nsenter --net=/run/netns/NAME sluicectl ...",
		    SL_PIN_BPFFS);
		return 1;
	}
	return 0;
}

static void print_syn_guard(const char *prefix, const struct sl_xdp_config *cfg)
{
	if (!cfg->syn_rate)
		printf("%soff\n", prefix);
	else
		printf("%s%u SYN/s per source /24 (IPv4) or /64 (IPv6), burst %u\n", prefix,
		       cfg->syn_rate, cfg->syn_burst ? cfg->syn_burst : cfg->syn_rate);
}

static int cmd_load(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"dev", required_argument, NULL, 'd'},	 {"mode", required_argument, NULL, 'm'},
	    {"force", no_argument, NULL, 'f'},		 {"syn-rate", required_argument, NULL, 'r'},
	    {"syn-burst", required_argument, NULL, 'b'}, {NULL, 0, NULL, 0},
	};
	struct sl_xdp_load_opts o = {.pin_dir = pin_dir, .mode = SL_XDP_AUTO};
	struct sl_xdp_config cfg = {0};
	int have_rate = 0, have_burst = 0, c;
	reset_getopt();
	while ((c = next_opt(argc, argv, ":d:m:fr:b:", opts)) != -1) {
		switch (c) {
		case 'd':
			o.ifname = optarg;
			break;
		case 'f':
			o.force = 1;
			break;
		case 'm':
			if (sl_xdp_mode_parse(optarg, &o.mode)) {
				err_msg("load: --mode must be auto, native or generic");
				return 2;
			}
			break;
		case 'r':
			if (parse_u32(optarg, 0, 10000000, &cfg.syn_rate)) {
				err_msg("load: --syn-rate must be 0 (off) to 10000000 SYNs/s");
				return 2;
			}
			have_rate = 1;
			break;
		case 'b':
			if (parse_u32(optarg, 1, 10000000, &cfg.syn_burst)) {
				err_msg("load: --syn-burst must be 1 to 10000000");
				return 2;
			}
			have_burst = 1;
			break;
		default:
			return 2;
		}
	}
	if (optind < argc || !o.ifname) {
		err_msg("load: %s", o.ifname ? "unexpected argument" : "--dev IFACE is required");
		return 2;
	}
	if (have_burst && !have_rate) {
		err_msg("load: --syn-burst needs --syn-rate");
		return 2;
	}
	if (have_rate)
		o.config = &cfg;
	if (check_private_bpffs())
		return 1;

	struct sl_xdp_load_info info;
	char why[512];
	int err = sl_xdp_load(&o, &info, why, sizeof(why));
	if (err) {
		err_msg("%s", why);
		return 1;
	}
	if (info.note[0])
		printf("note: %s\n", info.note);
	printf("xdp guard attached to %s in %s mode (prog id %u, link id %u)%s\n", o.ifname,
	       sl_xdp_mode_name(info.mode), info.prog_id, info.link_id,
	       info.replaced_prog_id ? " replacing the previous program" : "");
	printf("pinned under %s: %s, %s%s, maps xdp_stats deny_v4 deny_v6 syn_guard "
	       "xdp_config (%s)\n",
	       pin_dir, SL_XDP_PROG_PIN, SL_XDP_LINK_PIN_PREFIX, o.ifname,
	       info.maps_reused ? "reused: deny lists kept" : "new");
	struct sl_xdp_maps m;
	struct sl_xdp_config cur;
	if (!sl_xdp_maps_open(pin_dir, &m, why, sizeof(why))) {
		if (!sl_xdp_get_config(&m, &cur))
			print_syn_guard("syn guard: ", &cur);
		sl_xdp_maps_close(&m);
	}
	return 0;
}

static int cmd_unload(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"dev", required_argument, NULL, 'd'},
	    {NULL, 0, NULL, 0},
	};
	const char *dev = NULL;
	int c;
	reset_getopt();
	while ((c = next_opt(argc, argv, ":d:", opts)) != -1) {
		if (c != 'd')
			return 2;
		dev = optarg;
	}
	if (optind < argc)
		return 2;
	struct sl_xdp_unload_info info;
	char why[512];
	int err = sl_xdp_unload(pin_dir, dev, &info, why, sizeof(why));
	if (err) {
		err_msg("%s", why);
		return 1;
	}
	if (dev)
		printf("xdp guard detached from %s\n", dev);
	else if (info.detached)
		printf("xdp guard detached from %d device%s\n", info.detached,
		       info.detached == 1 ? "" : "s");
	if (info.removed_all)
		printf("unpinned %s and the XDP guard's maps under %s\n", SL_XDP_PROG_PIN, pin_dir);
	if (!info.detached && !info.removed_all)
		printf("nothing to unload: no XDP guard pinned under %s\n", pin_dir);
	return 0;
}

/* ---------------------------------------------------------------- status / workers */

struct deny_count {
	unsigned int v4, v6;
};

static int count_deny(const struct sl_xdp_cidr *c, __u64 hits, void *arg)
{
	struct deny_count *d = arg;
	if (c->family == 4)
		d->v4++;
	else
		d->v6++;
	return 0;
}

/* ---------------------------------------------------------------- JSON output */

#define JSET(o, k, v) json_object_set_new((o), (k), (v))
#define JU(v) json_integer((json_int_t)(v))

/* Every field of struct sl_worker_stats by its C name, so --json carries all of them
 * (selftests compare this list with common/sluice_common.h). */
#define WS(f)                                                                                      \
	{                                                                                          \
#f, offsetof(struct sl_worker_stats, f)                                            \
	}
static const struct {
	const char *name;
	size_t off;
} ws_fields[] = {
    WS(accepted),
    WS(active),
    WS(requests),
    WS(resp_1xx),
    WS(resp_2xx),
    WS(resp_3xx),
    WS(resp_4xx),
    WS(resp_5xx),
    WS(bytes_in),
    WS(bytes_out),
    WS(up_new),
    WS(up_reused),
    WS(pool_local),
    WS(pool_shared),
    WS(err_client),
    WS(err_upstream),
    WS(pool_evicted),
    WS(pool_idle_closed),
    WS(pool_fd_mismatch),
    WS(pool_stale_retries),
    WS(queue_waits),
    WS(queue_timeouts),
    WS(rescued),
    WS(trailers_dropped),
    WS(header_timeouts),
    WS(send_timeouts),
    WS(up_tls_handshakes),
    WS(up_tls_resumed),
    WS(up_tls_handshake_failed),
    WS(up_tls_verify_failed),
    WS(up_proxy_refused),
    WS(tls_full),
    WS(tls_resumed),
    WS(tls_fail_timeout),
    WS(tls_fail_closed),
    WS(tls_fail_http),
    WS(tls_fail_cert),
    WS(tls_fail_protocol),
};
#undef WS
/* every field is a __u64 and the table ends at the last one */
_Static_assert(sizeof(ws_fields) / sizeof(ws_fields[0]) * sizeof(__u64) ==
		   offsetof(struct sl_worker_stats, tls_fail_protocol) + sizeof(__u64),
	       "a worker_stats field is missing from ws_fields");

static json_t *worker_counters_json(const struct sl_worker_stats *s)
{
	json_t *o = json_object();
	for (size_t i = 0; i < sizeof(ws_fields) / sizeof(ws_fields[0]); i++)
		JSET(o, ws_fields[i].name,
		     JU(*(const __u64 *)((const char *)s + ws_fields[i].off)));
	return o;
}

/* --json among a read command's arguments: taken out of argv; 1 when it was there */
static int take_json(int *argc, char **argv)
{
	int found = 0, k = 1;
	for (int i = 1; i < *argc; i++) {
		if (!strcmp(argv[i], "--json"))
			found = 1;
		else
			argv[k++] = argv[i];
	}
	*argc = k;
	argv[k] = NULL;
	return found;
}

/* One JSON document on stdout; rc passes through (1 when it could not be written). */
static int put_json(json_t *o, int rc)
{
	char *t = o ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(6)) : NULL;
	json_decref(o);
	if (!t) {
		err_msg("out of memory");
		return 1;
	}
	puts(t);
	free(t);
	return rc;
}

static json_t *syn_guard_json(const struct sl_xdp_config *cfg)
{
	if (!cfg->syn_rate)
		return json_pack("{s:b}", "on", 0);
	return json_pack("{s:b,s:I,s:I}", "on", 1, "rate", (json_int_t)cfg->syn_rate, "burst",
			 (json_int_t)(cfg->syn_burst ? cfg->syn_burst : cfg->syn_rate));
}

static json_t *daemon_json(const struct node *n)
{
	char line[512];
	describe_daemon(n, line, sizeof(line));
	return json_pack("{s:b,s:o,s:I,s:s}", "running", n->alive, "pid",
			 n->pid ? JU(n->pid) : json_null(), "workers", (json_int_t)n->n_slots,
			 "summary", line);
}

static json_t *steering_json(const struct node *n)
{
	char line[512];
	describe_steering(n, line, sizeof(line));
	__u64 now = now_mono_ns();
	unsigned int ready = 0;
	for (unsigned int i = 0; i < n->n_slots; i++)
		ready += !strcmp(worker_state(n, i, now), "ready");
	int holds =
	    n->alive && n->steer_prog_id ? pid_holds_prog((int)n->pid, n->steer_prog_id) : -1;
	return json_pack("{s:b,s:o,s:o,s:I,s:I,s:s}", "on", !strncmp(line, "on", 2), "prog_id",
			 n->steer_prog_id ? JU(n->steer_prog_id) : json_null(), "held_by_daemon",
			 holds < 0 ? json_null() : json_boolean(holds), "workers_ready",
			 (json_int_t)ready, "workers", (json_int_t)n->n_slots, "summary", line);
}

static int status_json(void)
{
	int rc = 0;
	json_t *root = json_object(), *x = json_object(), *atts = json_array();
	JSET(root, "pin_path", json_string(pin_dir));
	JSET(root, "bpffs_mounted", json_boolean(bpffs_mounted()));
	struct sl_xdp_attachment att[64];
	int natt = sl_xdp_list(pin_dir, att, 64);
	if (natt < 0) {
		JSET(x, "error", json_string(strerror(-natt)));
		rc = 1;
		natt = 0;
	}
	struct sl_xdp_maps m;
	char why[512];
	int merr = sl_xdp_maps_open(pin_dir, &m, why, sizeof(why));
	int prog_fd = sl_pin_open(pin_dir, SL_XDP_PROG_PIN);
	struct bpf_prog_info pi;
	__u32 pilen = sizeof(pi);
	memset(&pi, 0, sizeof(pi));
	if (prog_fd >= 0) {
		bpf_obj_get_info_by_fd(prog_fd, &pi, &pilen);
		close(prog_fd);
	}
	JSET(x, "loaded", json_boolean(prog_fd >= 0));
	JSET(x, "prog_id", prog_fd >= 0 ? JU(pi.id) : json_null());
	for (int i = 0; i < natt && i < 64; i++)
		json_array_append_new(
		    atts, json_pack("{s:s,s:b,s:o,s:I,s:I,s:b}", "dev", att[i].ifname, "attached",
				    att[i].ifindex != 0, "mode",
				    att[i].ifindex && !att[i].other_netns
					? json_string(sl_xdp_mode_name(att[i].mode))
					: json_null(),
				    "prog_id", (json_int_t)att[i].prog_id, "link_id",
				    (json_int_t)att[i].link_id, "other_netns", att[i].other_netns));
	JSET(x, "attachments", atts);
	if (!merr) {
		struct deny_count d = {0, 0};
		struct sl_xdp_config cfg = {0};
		sl_xdp_deny_foreach(&m, count_deny, &d);
		sl_xdp_get_config(&m, &cfg);
		JSET(x, "deny_v4", JU(d.v4));
		JSET(x, "deny_v6", JU(d.v6));
		JSET(x, "syn_guard", syn_guard_json(&cfg));
		sl_xdp_maps_close(&m);
	} else if (merr != -ENOENT) {
		JSET(x, "maps_error", json_string(why));
		rc = 1;
	}
	JSET(root, "xdp", x);
	struct node *n = malloc(sizeof(*n));
	if (!n) {
		json_decref(root);
		err_msg("out of memory");
		return 1;
	}
	read_node(n);
	JSET(root, "daemon", daemon_json(n));
	JSET(root, "steering", steering_json(n));
	JSET(root, "problem", n->bad[0] ? json_string(n->bad) : json_null());
	if (n->bad[0])
		rc = 1;
	free(n);
	return put_json(root, rc);
}

static int workers_json(void)
{
	struct node *n = malloc(sizeof(*n));
	if (!n) {
		err_msg("out of memory");
		return 1;
	}
	read_node(n);
	json_t *root = json_object(), *ws = json_array();
	JSET(root, "pin_path", json_string(pin_dir));
	JSET(root, "daemon", daemon_json(n));
	__u64 now = now_mono_ns();
	for (unsigned int i = 0; n->have_workers && i < n->n_slots; i++) {
		const struct sl_worker_state *w = &n->ws[i];
		json_t *o = json_object();
		JSET(o, "worker", JU(i));
		JSET(o, "cpu", JU(w->cpu));
		JSET(o, "state", json_string(worker_state(n, i, now)));
		JSET(o, "active", JU(w->active));
		JSET(o, "max_conns", w->max_conns ? JU(w->max_conns) : json_null());
		JSET(o, "heartbeat_age_ms",
		     w->heartbeat_ns && now >= w->heartbeat_ns
			 ? JU((now - w->heartbeat_ns) / 1000000)
			 : json_null());
		JSET(o, "counters", n->have_stats ? worker_counters_json(&n->st[i]) : json_null());
		json_array_append_new(ws, o);
	}
	JSET(root, "workers", ws);
	JSET(root, "problem", n->bad[0] ? json_string(n->bad) : json_null());
	int rc = n->bad[0] ? 1 : 0;
	free(n);
	return put_json(root, rc);
}

static int cmd_status(int argc, char **argv)
{
	if (take_json(&argc, argv)) {
		if (argc != 1)
			return 2;
		return status_json();
	}
	if (argc != 1)
		return 2;
	int rc = 0;
	printf("%-11s%s%s\n", "pin path", pin_dir,
	       bpffs_mounted() ? "" : " (bpffs is not mounted at " SL_PIN_BPFFS " here)");

	struct sl_xdp_attachment att[64];
	int natt = sl_xdp_list(pin_dir, att, 64);
	if (natt < 0) {
		printf("%-11scannot read %s: %s\n", "xdp guard", pin_dir, strerror(-natt));
		rc = 1;
		natt = 0;
	}
	struct sl_xdp_maps m;
	char why[512];
	int merr = sl_xdp_maps_open(pin_dir, &m, why, sizeof(why));
	int prog_fd = sl_pin_open(pin_dir, SL_XDP_PROG_PIN);
	struct bpf_prog_info pi;
	__u32 pilen = sizeof(pi);
	memset(&pi, 0, sizeof(pi));
	if (prog_fd >= 0) {
		bpf_obj_get_info_by_fd(prog_fd, &pi, &pilen);
		close(prog_fd);
	}
	if (natt == 0 && prog_fd < 0 && merr == -ENOENT) {
		printf("%-11snot loaded (nothing pinned under %s)\n", "xdp guard", pin_dir);
	} else {
		int attached = 0;
		for (int i = 0; i < natt && i < 64; i++)
			attached += att[i].ifindex != 0;
		if (prog_fd >= 0)
			printf("%-11sloaded: prog id %u pinned as %s, attached to %d device%s\n",
			       "xdp guard", pi.id, SL_XDP_PROG_PIN, attached,
			       attached == 1 ? "" : "s");
		else
			printf("%-11spartly pinned: no %s, %d link%s\n", "xdp guard",
			       SL_XDP_PROG_PIN, natt, natt == 1 ? "" : "s");
		for (int i = 0; i < natt && i < 64; i++) {
			if (att[i].ifindex && att[i].other_netns)
				printf(
				    "%-11s%-12s %-8s prog %u  link %u  (device in another network "
				    "namespace: run status there for its mode)\n",
				    "", att[i].ifname, "-", att[i].prog_id, att[i].link_id);
			else if (att[i].ifindex)
				printf("%-11s%-12s %-8s prog %u  link %u\n", "", att[i].ifname,
				       sl_xdp_mode_name(att[i].mode), att[i].prog_id,
				       att[i].link_id);
			else
				printf("%-11s%-12s detached (device gone): `sluicectl unload --dev "
				       "%s` removes the pin\n",
				       "", att[i].ifname, att[i].ifname);
		}
		if (!merr) {
			struct deny_count d = {0, 0};
			struct sl_xdp_config cfg = {0};
			sl_xdp_deny_foreach(&m, count_deny, &d);
			sl_xdp_get_config(&m, &cfg);
			printf("%-11sdeny lists: %u IPv4, %u IPv6 prefix%s\n", "", d.v4, d.v6,
			       d.v4 + d.v6 == 1 ? "" : "es");
			print_syn_guard("           syn guard: ", &cfg);
		} else {
			printf("%-11smaps: %s\n", "", why);
			if (merr != -ENOENT)
				rc = 1;
		}
	}
	if (!merr)
		sl_xdp_maps_close(&m);

	struct node *n = malloc(sizeof(*n));
	if (!n) {
		err_msg("out of memory");
		return 1;
	}
	read_node(n);
	char line[512];
	describe_daemon(n, line, sizeof(line));
	printf("%-11s%s\n", "daemon", line);
	describe_steering(n, line, sizeof(line));
	printf("%-11s%s\n", "steering", line);
	if (n->bad[0]) {
		printf("%-11s%s\n", "problem", n->bad);
		rc = 1;
	}
	free(n);
	return rc;
}

static int cmd_workers(int argc, char **argv)
{
	int json = take_json(&argc, argv);
	if (argc != 1)
		return 2;
	if (json)
		return workers_json();
	struct node *n = malloc(sizeof(*n));
	if (!n) {
		err_msg("out of memory");
		return 1;
	}
	read_node(n);
	int rc = 0;
	char line[512];
	if (n->bad[0]) {
		err_msg("%s", n->bad);
		rc = 1;
	}
	if (!n->have_workers) {
		printf("no workers map pinned under %s (sluiced not running with steering, or "
		       "another pin path)\n",
		       pin_dir);
		free(n);
		return rc;
	}
	describe_daemon(n, line, sizeof(line));
	printf("daemon %s\n", line);
	if (!n->n_slots) {
		printf("no worker slots in use\n");
		free(n);
		return rc;
	}
	printf("%-7s %-4s %-9s %8s %8s %12s\n", "WORKER", "CPU", "STATE", "ACTIVE", "CAP",
	       "HEARTBEAT");
	__u64 now = now_mono_ns();
	for (unsigned int i = 0; i < n->n_slots; i++) {
		const struct sl_worker_state *w = &n->ws[i];
		char cap[16] = "-", hb[32] = "-";
		if (w->max_conns)
			snprintf(cap, sizeof(cap), "%u", w->max_conns);
		if (w->heartbeat_ns && now >= w->heartbeat_ns)
			snprintf(hb, sizeof(hb), "%llu ms ago",
				 (unsigned long long)((now - w->heartbeat_ns) / 1000000));
		printf("%-7u %-4u %-9s %8u %8s %12s\n", i, w->cpu, worker_state(n, i, now),
		       w->active, cap, hb);
	}
	free(n);
	return rc;
}

/* ---------------------------------------------------------------- stats */

struct sample {
	double t;
	struct node node;
	int have_xdp;
	__u64 xdp[SL_XDP_NR];
};

static void take_sample(struct sample *s)
{
	s->t = now_mono();
	read_node(&s->node);
	struct sl_xdp_maps m;
	char why[256];
	s->have_xdp = !sl_xdp_maps_open(pin_dir, &m, why, sizeof(why));
	if (s->have_xdp) {
		s->have_xdp = !sl_xdp_read_counters(&m, s->xdp);
		sl_xdp_maps_close(&m);
	}
}

static volatile sig_atomic_t stop_watch;

static void on_stop(int sig)
{
	stop_watch = 1;
}

/* sleep that ends early on Ctrl-C */
static void nap(double seconds)
{
	double end = now_mono() + seconds;
	while (!stop_watch) {
		double left = end - now_mono();
		if (left <= 0)
			break;
		struct timespec ts = {(time_t)left, (long)((left - (double)(time_t)left) * 1e9)};
		nanosleep(&ts, NULL);
	}
}

static void fmt_bytes(__u64 v, char *buf, size_t len)
{
	static const char units[] = "KMGTPE";
	if (v < 1024) {
		snprintf(buf, len, "%llu", (unsigned long long)v);
		return;
	}
	double d = (double)v;
	int u = -1;
	while (d >= 1024 && u < 5) {
		d /= 1024;
		u++;
	}
	snprintf(buf, len, "%.1f%c", d, units[u]);
}

static double rate(__u64 now, __u64 prev, double dt)
{
	return dt > 0 && now >= prev ? (double)(now - prev) / dt : 0;
}

/* reuse %: requests sent on a pooled connection among all upstream requests; -1 = none */
static double reuse_pct(const struct sl_worker_stats *s)
{
	__u64 all = s->up_new + s->up_reused;
	return all ? 100.0 * (double)s->up_reused / (double)all : -1;
}

static void add_stats(struct sl_worker_stats *t, const struct sl_worker_stats *s)
{
	const __u64 *a = (const __u64 *)s;
	__u64 *b = (__u64 *)t;
	for (size_t i = 0; i < sizeof(*s) / sizeof(__u64); i++)
		b[i] += a[i];
}

static void print_stats_row(const char *w, const char *cpu, const char *state, __u64 conns,
			    double rps, const struct sl_worker_stats *s)
{
	char in[16], out[16], reuse[16] = "-";
	fmt_bytes(s->bytes_in, in, sizeof(in));
	fmt_bytes(s->bytes_out, out, sizeof(out));
	double r = reuse_pct(s);
	if (r >= 0)
		snprintf(reuse, sizeof(reuse), "%.1f", r);
	printf("%-6s %-4s %-8s %6llu %9.1f %10llu %6llu %8llu %6llu %6llu %6llu %8s %8s %6s\n", w,
	       cpu, state, (unsigned long long)conns, rps, (unsigned long long)s->requests,
	       (unsigned long long)s->resp_1xx, (unsigned long long)s->resp_2xx,
	       (unsigned long long)s->resp_3xx, (unsigned long long)s->resp_4xx,
	       (unsigned long long)s->resp_5xx, in, out, reuse);
}

static void print_stats_human(const struct sample *cur, const struct sample *prev, double dt)
{
	const struct node *n = &cur->node;
	char line[512];
	time_t wall = time(NULL);
	struct tm tm;
	char ts[32];
	strftime(ts, sizeof(ts), "%Y-%m-%d %H:%M:%S", localtime_r(&wall, &tm));
	describe_daemon(n, line, sizeof(line));
	printf("%s  daemon %s\n", ts, line);
	if (!n->have_workers || !n->have_stats) {
		printf("workers: no pinned workers/worker_stats maps under %s\n", pin_dir);
	} else if (!n->n_slots) {
		printf("workers: no worker slots in use\n");
	} else {
		printf("%-6s %-4s %-8s %6s %9s %10s %6s %8s %6s %6s %6s %8s %8s %6s\n", "WORKER",
		       "CPU", "STATE", "CONNS", "REQ/S", "REQUESTS", "1xx", "2xx", "3xx", "4xx",
		       "5xx", "IN", "OUT", "REUSE%");
		struct sl_worker_stats tot;
		memset(&tot, 0, sizeof(tot));
		__u64 conns = 0, now = now_mono_ns();
		double rps_tot = 0;
		for (unsigned int i = 0; i < n->n_slots; i++) {
			char w[16], cpu[16];
			double rps = rate(n->st[i].requests, prev->node.st[i].requests, dt);
			snprintf(w, sizeof(w), "%u", i);
			snprintf(cpu, sizeof(cpu), "%u", n->ws[i].cpu);
			print_stats_row(w, cpu, worker_state(n, i, now), n->ws[i].active, rps,
					&n->st[i]);
			add_stats(&tot, &n->st[i]);
			conns += n->ws[i].active;
			rps_tot += rps;
		}
		print_stats_row("total", "", "", conns, rps_tot, &tot);
	}
	if (n->have_steer_stats) {
		printf("steering:");
		for (int i = 0; i < SL_STEER_NR; i++)
			printf(" %s %llu", sl_steer_reason_name(i), (unsigned long long)n->steer[i]);
		printf("\n");
	} else {
		printf("steering: no pinned steer_stats under %s\n", pin_dir);
	}
	if (cur->have_xdp) {
		char b[16];
		printf("xdp:");
		for (unsigned int i = 0; i < SL_XDP_NR; i++) {
			if (i == SL_XDP_BYTES) {
				fmt_bytes(cur->xdp[i], b, sizeof(b));
				printf(" bytes %s", b);
			} else {
				printf(" %s %llu", sl_xdp_counter_name(i),
				       (unsigned long long)cur->xdp[i]);
			}
		}
		if (prev->have_xdp && dt >= 0.05)
			printf(" (%.0f pkt/s)",
			       rate(cur->xdp[SL_XDP_PACKETS], prev->xdp[SL_XDP_PACKETS], dt));
		printf("\n");
	} else {
		printf("xdp: guard not loaded (no pinned maps under %s)\n", pin_dir);
	}
}

static json_t *stats_json(const struct sample *cur, const struct sample *prev, double dt)
{
	const struct node *n = &cur->node;
	json_t *root = json_object();
	json_t *d = json_object();
	JSET(root, "time", JU(time(NULL)));
	JSET(root, "pin_path", json_string(pin_dir));
	JSET(root, "interval_s", json_real(round(dt * 1000) / 1000));
	JSET(d, "running", json_boolean(n->alive));
	JSET(d, "pid", n->pid ? JU(n->pid) : json_null());
	JSET(root, "daemon", d);

	json_t *ws = json_array();
	__u64 now = now_mono_ns();
	for (unsigned int i = 0; n->have_workers && n->have_stats && i < n->n_slots; i++) {
		const struct sl_worker_stats *s = &n->st[i];
		json_t *w = json_object(), *resp = json_object();
		JSET(w, "worker", JU(i));
		JSET(w, "cpu", JU(n->ws[i].cpu));
		JSET(w, "state", json_string(worker_state(n, i, now)));
		JSET(w, "connections", JU(n->ws[i].active));
		JSET(w, "max_conns", JU(n->ws[i].max_conns));
		JSET(w, "conn_load", JU(n->ws[i].active + n->ws[i].queued));
		JSET(w, "busy_pm", JU(n->ws[i].busy_pm));
		JSET(w, "accepted", JU(s->accepted));
		JSET(w, "requests", JU(s->requests));
		JSET(w, "requests_per_s",
		     json_real(rate(s->requests, prev->node.st[i].requests, dt)));
		JSET(resp, "1xx", JU(s->resp_1xx));
		JSET(resp, "2xx", JU(s->resp_2xx));
		JSET(resp, "3xx", JU(s->resp_3xx));
		JSET(resp, "4xx", JU(s->resp_4xx));
		JSET(resp, "5xx", JU(s->resp_5xx));
		JSET(w, "responses", resp);
		JSET(w, "bytes_in", JU(s->bytes_in));
		JSET(w, "bytes_out", JU(s->bytes_out));
		JSET(w, "upstream_new", JU(s->up_new));
		JSET(w, "upstream_reused", JU(s->up_reused));
		double r = reuse_pct(s);
		JSET(w, "reuse_pct", r >= 0 ? json_real(r) : json_null());
		JSET(w, "pool_local", JU(s->pool_local));
		JSET(w, "pool_shared", JU(s->pool_shared));
		JSET(w, "errors_client", JU(s->err_client));
		JSET(w, "errors_upstream", JU(s->err_upstream));
		JSET(w, "counters", worker_counters_json(s)); /* every field, by its C name */
		json_array_append_new(ws, w);
	}
	JSET(root, "workers", ws);

	json_t *st = json_object();
	for (int i = 0; n->have_steer_stats && i < SL_STEER_NR; i++)
		JSET(st, sl_steer_reason_name(i), JU(n->steer[i]));
	JSET(root, "steer", st);

	json_t *x = json_object();
	for (unsigned int i = 0; cur->have_xdp && i < SL_XDP_NR; i++)
		JSET(x, sl_xdp_counter_name(i), JU(cur->xdp[i]));
	JSET(root, "xdp", x);
	return root;
}

static int cmd_stats(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"watch", required_argument, NULL, 'w'},
	    {"count", required_argument, NULL, 'c'},
	    {"json", no_argument, NULL, 'j'},
	    {NULL, 0, NULL, 0},
	};
	double watch = 0;
	__u32 count = 0;
	int json = 0, c;
	reset_getopt();
	while ((c = next_opt(argc, argv, ":w:c:j", opts)) != -1) {
		switch (c) {
		case 'w':
			if (parse_seconds(optarg, &watch)) {
				err_msg("stats: --watch takes a number of seconds above 0");
				return 2;
			}
			break;
		case 'c':
			if (parse_u32(optarg, 1, UINT_MAX, &count)) {
				err_msg("stats: --count takes a number of rounds above 0");
				return 2;
			}
			break;
		case 'j':
			json = 1;
			break;
		default:
			return 2;
		}
	}
	if (optind < argc)
		return 2;
	if (!watch)
		watch = count > 1 ? 1 : 0;
	if (!watch)
		count = 1;

	struct sample *cur = calloc(1, sizeof(*cur)), *prev = calloc(1, sizeof(*prev));
	if (!cur || !prev) {
		free(cur);
		free(prev);
		err_msg("out of memory");
		return 1;
	}
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop; /* no SA_RESTART: nanosleep returns at once */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	/* the first round's rates come from a pre-sample a second earlier (less with a
	 * shorter --watch), taken when something live can move the counters */
	take_sample(prev);
	if (prev->node.alive || prev->have_xdp)
		nap(watch > 0 && watch < 1 ? watch : 1);
	int rc = 0;
	for (__u32 round = 0; !stop_watch && (!count || round < count); round++) {
		if (round)
			nap(watch);
		if (stop_watch)
			break;
		take_sample(cur);
		double dt = cur->t - prev->t;
		if (json) {
			json_t *o = stats_json(cur, prev, dt);
			char *s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(6));
			if (s)
				printf("%s\n", s);
			free(s);
			json_decref(o);
		} else {
			if (round)
				printf("\n");
			print_stats_human(cur, prev, dt);
		}
		if (cur->node.bad[0]) {
			err_msg("%s", cur->node.bad);
			rc = 1;
		}
		fflush(stdout);
		struct sample *t = prev;
		prev = cur;
		cur = t;
	}
	free(cur);
	free(prev);
	return rc;
}

/* ---------------------------------------------------------------- deny / syn-guard */

static int open_xdp_maps(struct sl_xdp_maps *m)
{
	char why[512];
	int err = sl_xdp_maps_open(pin_dir, m, why, sizeof(why));
	if (err == -ENOENT)
		err_msg("%s; run `sluicectl load --dev IFACE` first", why);
	else if (err)
		err_msg("%s", why);
	return err;
}

struct deny_list {
	struct sl_xdp_cidr *v;
	__u64 *hits;
	size_t n, cap;
};

static int collect_deny(const struct sl_xdp_cidr *c, __u64 hits, void *arg)
{
	struct deny_list *l = arg;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		struct sl_xdp_cidr *v = realloc(l->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		l->v = v;
		__u64 *h = realloc(l->hits, cap * sizeof(*h));
		if (!h)
			return -ENOMEM;
		l->hits = h;
		l->cap = cap;
	}
	l->v[l->n] = *c;
	l->hits[l->n++] = hits;
	return 0;
}

static int cidr_cmp(const struct sl_xdp_cidr *a, const struct sl_xdp_cidr *b)
{
	if (a->family != b->family)
		return a->family - b->family;
	int r =
	    a->family == 4 ? memcmp(a->v4.addr, b->v4.addr, 4) : memcmp(a->v6.addr, b->v6.addr, 16);
	if (r)
		return r;
	__u32 pa = a->family == 4 ? a->v4.prefixlen : a->v6.prefixlen;
	__u32 pb = b->family == 4 ? b->v4.prefixlen : b->v6.prefixlen;
	return (pa > pb) - (pa < pb);
}

static int deny_list(const struct sl_xdp_maps *m, int json)
{
	struct deny_list l = {0};
	int err = sl_xdp_deny_foreach(m, collect_deny, &l);
	if (err) {
		err_msg("deny list: %s", strerror(-err));
		free(l.v);
		free(l.hits);
		return 1;
	}
	/* insertion sort: lists are short and this keeps the hit counts paired */
	for (size_t i = 1; i < l.n; i++) {
		for (size_t j = i; j > 0 && cidr_cmp(&l.v[j - 1], &l.v[j]) > 0; j--) {
			struct sl_xdp_cidr t = l.v[j];
			__u64 h = l.hits[j];
			l.v[j] = l.v[j - 1];
			l.hits[j] = l.hits[j - 1];
			l.v[j - 1] = t;
			l.hits[j - 1] = h;
		}
	}
	if (json) {
		json_t *a = json_array();
		for (size_t i = 0; i < l.n; i++) {
			char b[SL_XDP_CIDR_STRLEN];
			sl_xdp_cidr_format(&l.v[i], b, sizeof(b));
			json_array_append_new(a, json_pack("{s:s,s:I}", "prefix", b, "dropped",
							   (json_int_t)l.hits[i]));
		}
		free(l.v);
		free(l.hits);
		return put_json(json_pack("{s:s,s:o}", "pin_path", pin_dir, "deny", a), 0);
	}
	if (!l.n) {
		printf("deny list is empty\n");
	} else {
		printf("%-44s %12s\n", "PREFIX", "DROPPED");
		for (size_t i = 0; i < l.n; i++) {
			char b[SL_XDP_CIDR_STRLEN];
			sl_xdp_cidr_format(&l.v[i], b, sizeof(b));
			printf("%-44s %12llu\n", b, (unsigned long long)l.hits[i]);
		}
	}
	free(l.v);
	free(l.hits);
	return 0;
}

static int cmd_deny(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	int json = take_json(&argc, argv);
	if (argc < 2)
		return 2;
	const char *op = argv[1];
	int add = !strcmp(op, "add"), del = !strcmp(op, "del"), list = !strcmp(op, "list");
	if (json && !list) {
		err_msg("deny: --json goes with list");
		return 2;
	}
	if (!add && !del && !list) {
		err_msg("deny: unknown operation '%s' (add, del or list)", op);
		return 2;
	}
	if (list ? argc != 2 : argc < 3)
		return 2;
	struct sl_xdp_cidr *cs = calloc((size_t)argc, sizeof(*cs));
	if (!cs)
		return 1;
	for (int i = 2; i < argc; i++) {
		if (sl_xdp_cidr_parse(argv[i], &cs[i])) {
			err_msg("deny %s: '%s' is not an IPv4 or IPv6 address or CIDR prefix", op,
				argv[i]);
			free(cs);
			return 2;
		}
	}
	struct sl_xdp_maps m;
	if (open_xdp_maps(&m)) {
		free(cs);
		return 1;
	}
	int rc = 0;
	if (list)
		rc = deny_list(&m, json);
	for (int i = 2; i < argc; i++) {
		char b[SL_XDP_CIDR_STRLEN];
		sl_xdp_cidr_format(&cs[i], b, sizeof(b));
		int err = add ? sl_xdp_deny_add(&m, &cs[i]) : sl_xdp_deny_del(&m, &cs[i]);
		int normalized = strchr(argv[i], '/') && strcmp(b, argv[i]);
		if (add && !err)
			printf("denied %s%s%s%s\n", b, normalized ? " (normalized from " : "",
			       normalized ? argv[i] : "", normalized ? ")" : "");
		else if (add && err == -EEXIST)
			printf("%s already denied\n", b);
		else if (del && !err)
			printf("removed %s\n", b);
		else if (del && err == -ENOENT) {
			err_msg("deny del: %s is not in the deny list", b);
			rc = 1;
		} else {
			err_msg("deny %s %s: %s", op, b,
				err == -ENOSPC ? "the deny list is full" : strerror(-err));
			rc = 1;
		}
	}
	sl_xdp_maps_close(&m);
	free(cs);
	return rc;
}

static int syn_guard_tracked(const struct sl_xdp_maps *m)
{
	struct sl_syn_key k, prev;
	int n = 0;
	const void *pk = NULL;
	while (!bpf_map_get_next_key(m->syn_guard, pk, &k)) {
		n++;
		prev = k;
		pk = &prev;
	}
	return n;
}

static int cmd_syn_guard(int argc, char **argv)
{
	struct sl_xdp_config cfg = {0};
	int json = take_json(&argc, argv);
	const char *op = argc > 1 ? argv[1] : "show";
	if (!strcmp(op, "set")) {
		if (argc < 3 || argc > 4 || parse_u32(argv[2], 1, 10000000, &cfg.syn_rate) ||
		    (argc == 4 && parse_u32(argv[3], 1, 10000000, &cfg.syn_burst))) {
			err_msg("syn-guard set: RATE and BURST are 1 to 10000000");
			return 2;
		}
	} else if (strcmp(op, "off") && strcmp(op, "show")) {
		err_msg("syn-guard: unknown operation '%s' (show, set or off)", op);
		return 2;
	} else if (argc > 2) {
		return 2;
	}
	struct sl_xdp_maps m;
	if (open_xdp_maps(&m))
		return 1;
	int err = 0;
	if (strcmp(op, "show"))
		err = sl_xdp_set_config(&m, &cfg);
	if (!err)
		err = sl_xdp_get_config(&m, &cfg);
	if (err) {
		err_msg("syn-guard: %s", strerror(-err));
		sl_xdp_maps_close(&m);
		return 1;
	}
	if (json) {
		json_t *o = syn_guard_json(&cfg);
		JSET(o, "tracked_prefixes", JU(syn_guard_tracked(&m)));
		sl_xdp_maps_close(&m);
		return put_json(o, 0);
	}
	print_syn_guard("syn guard: ", &cfg);
	if (!strcmp(op, "show"))
		printf("source prefixes tracked: %d\n", syn_guard_tracked(&m));
	sl_xdp_maps_close(&m);
	return 0;
}

/* ---------------------------------------------------------------- daemon commands */

/* The admin socket: --socket PATH, else admin.socket of --config FILE, else the
 * default path when it exists. NULL when there is none. */
static const char *admin_socket;
static const char *admin_conf;
static char admin_sock_buf[108];

static const char *find_admin_socket(void)
{
	if (admin_socket)
		return admin_socket;
	if (admin_conf) {
		char err[SL_CONF_ERR_MAX];
		struct sl_conf *c = sl_conf_load(admin_conf, err, sizeof(err));
		if (!c) {
			err_msg("%s", err);
			return NULL;
		}
		if (c->admin.socket)
			snprintf(admin_sock_buf, sizeof(admin_sock_buf), "%s", c->admin.socket);
		else
			err_msg("%s has no admin.socket", admin_conf);
		sl_conf_put(c);
		return admin_sock_buf[0] ? admin_sock_buf : NULL;
	}
	return access(SL_ADMIN_SOCKET_DEFAULT, F_OK) ? NULL : SL_ADMIN_SOCKET_DEFAULT;
}

/* One request on the admin socket. Returns the HTTP status (body parsed into *json, or
 * NULL when not JSON), or -errno with a reason in why. */
static int admin_call_body(const char *path, const char *method, const char *target,
			   const char *content, json_t **json, char *why, size_t whylen)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	*json = NULL;
	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(why, whylen, "admin socket path too long: %s", path);
		return -ENAMETOOLONG;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(why, whylen, "socket: %s", strerror(errno));
		return -errno;
	}
	struct timeval tv = {30, 0}; /* a reload loads and checks the whole file */
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		int err = -errno;
		snprintf(why, whylen, "cannot reach the daemon at %s: %s", path, strerror(-err));
		close(fd);
		return err;
	}
	char req[PATH_MAX + 1024];
	size_t cl = content ? strlen(content) : 0;
	int n = snprintf(req, sizeof(req),
			 "%s %s HTTP/1.1\r\nHost: localhost\r\nContent-Length: %zu\r\n%s"
			 "Connection: close\r\n\r\n%s",
			 method, target, cl, cl ? "Content-Type: application/json\r\n" : "",
			 cl ? content : "");
	if (n < 0 || (size_t)n >= sizeof(req)) {
		snprintf(why, whylen, "request too large");
		close(fd);
		return -E2BIG;
	}
	if (write(fd, req, (size_t)n) != n) {
		int err = errno ? -errno : -EIO;
		snprintf(why, whylen, "%s: write: %s", path, strerror(-err));
		close(fd);
		return err;
	}
	size_t cap = 65536, len = 0;
	char *buf = malloc(cap + 1);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	for (;;) {
		if (len == cap) {
			char *nb = cap < (16u << 20) ? realloc(buf, cap * 2 + 1) : NULL;
			if (!nb) {
				free(buf);
				close(fd);
				snprintf(why, whylen, "%s: answer too large", path);
				return -E2BIG;
			}
			buf = nb;
			cap *= 2;
		}
		ssize_t r = read(fd, buf + len, cap - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int err = -errno;
			snprintf(why, whylen, "%s: read: %s", path,
				 err == -EAGAIN ? "no answer within 30 s" : strerror(-err));
			free(buf);
			close(fd);
			return err;
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
	close(fd);
	buf[len] = 0;
	int status = 0;
	char *body = strstr(buf, "\r\n\r\n");
	if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1 || !body || status < 100 || status > 599) {
		snprintf(why, whylen, "%s: not an HTTP answer", path);
		free(buf);
		return -EPROTO;
	}
	*json = json_loads(body + 4, 0, NULL);
	free(buf);
	return status;
}

static int admin_call(const char *path, const char *method, const char *target, json_t **json,
		      char *why, size_t whylen)
{
	return admin_call_body(path, method, target, NULL, json, why, whylen);
}

/* ---------------------------------------------------------------- cache (admin API) */

/* Percent-encode v for a query string into out (cap bytes); -1 if it does not fit. */
static int query_escape(const char *v, char *out, size_t cap)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = 0;
	for (; *v; v++) {
		unsigned char c = (unsigned char)*v;
		if (n + 4 > cap)
			return -1;
		if (isalnum(c) || strchr("-._~/:", c)) {
			out[n++] = (char)c;
		} else {
			out[n++] = '%';
			out[n++] = hex[c >> 4];
			out[n++] = hex[c & 15];
		}
	}
	out[n] = 0;
	return 0;
}

/* sluicectl [--socket PATH | --config FILE] cache stats | purge (--key K | --prefix P)
 * [--zone Z] */
static int cmd_cache(int argc, char **argv)
{
	const char *zone = NULL, *key = NULL, *prefix = NULL;
	if (argc < 2)
		return 2;
	const char *op = argv[1];
	for (int i = 2; i < argc; i += 2) {
		if (i + 1 >= argc)
			return 2;
		if (!strcmp(argv[i], "--zone"))
			zone = argv[i + 1];
		else if (!strcmp(argv[i], "--key"))
			key = argv[i + 1];
		else if (!strcmp(argv[i], "--prefix"))
			prefix = argv[i + 1];
		else
			return 2;
	}
	char target[4 * 4096 + 256], ek[3 * 4096 + 4], ez[3 * 64 + 4];
	if (!strcmp(op, "stats")) {
		if (zone || key || prefix)
			return 2;
		snprintf(target, sizeof(target), "/cache");
	} else if (!strcmp(op, "purge") && !key != !prefix) {
		if (query_escape(key ? key : prefix, ek, sizeof(ek)) ||
		    (zone && query_escape(zone, ez, sizeof(ez)))) {
			err_msg("cache purge: key, prefix or zone too long");
			return 2;
		}
		snprintf(target, sizeof(target), "/cache/purge?%s=%s%s%s", key ? "key" : "prefix", ek,
			 zone ? "&zone=" : "", zone ? ez : "");
	} else {
		err_msg("cache: 'stats', or 'purge' with exactly one of --key and --prefix");
		return 2;
	}
	const char *sock = find_admin_socket();
	if (!sock) {
		err_msg("cache: no admin socket (--socket PATH or --config FILE)");
		return 1;
	}
	char why[256];
	json_t *j = NULL;
	int st = admin_call(sock, strcmp(op, "stats") ? "POST" : "GET", target, &j, why,
			    sizeof(why));
	if (st < 0) {
		err_msg("cache: %s", why);
		return 1;
	}
	char *text = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
	json_decref(j);
	if (st / 100 != 2) {
		fprintf(stderr, "sluicectl: cache: %d %s\n", st, text ? text : "");
		free(text);
		return 1;
	}
	printf("%s\n", text ? text : "{}");
	free(text);
	return 0;
}

/* PID as written: digits only, 2..INT_MAX (pid 1 is init, never a daemon we signal). */
static int parse_pid(const char *s, int *pid)
{
	__u32 v;
	if (parse_u32(s, 2, INT_MAX, &v))
		return -EINVAL;
	*pid = (int)v;
	return 0;
}

/* The daemon behind the admin socket (GET /status): its pid, or -errno with why. */
static int admin_pid(const char *sock, char *why, size_t whylen)
{
	json_t *j;
	int st = admin_call(sock, "GET", "/status", &j, why, whylen);
	if (st < 0)
		return st;
	json_t *p = json_object_get(j, "pid");
	int pid = st == 200 && json_is_integer(p) ? (int)json_integer_value(p) : -EPROTO;
	if (pid < 0)
		snprintf(why, whylen, "%s: GET /status answered %d without a pid", sock, st);
	json_decref(j);
	return pid;
}

/* --pid PID of a daemon command: parsed strictly and checked to be a sluiced before
 * anything is sent to it. 0 no --pid, 1 pid set, 2 usage; an error exits 1. */
static int daemon_target(int argc, char **argv, int *pid)
{
	*pid = 0;
	if (argc == 1)
		return 0;
	if (argc != 3 || strcmp(argv[1], "--pid")) {
		err_msg("%s: %s", argv[0],
			argc == 2 && !strcmp(argv[1], "--pid") ? "--pid needs a value"
							       : "unexpected argument");
		return 2;
	}
	if (parse_pid(argv[2], pid)) {
		err_msg("%s: --pid '%s' is not a process id (digits only, 2 or more)", argv[0],
			argv[2]);
		return 2;
	}
	return 1;
}

static int verify_sluiced(int pid)
{
	char p[64], exe[PATH_MAX] = "?";
	if (pid_is_sluiced(pid))
		return 0;
	snprintf(p, sizeof(p), "/proc/%d/exe", pid);
	ssize_t n = readlink(p, exe, sizeof(exe) - 1);
	if (n > 0)
		exe[n] = 0;
	if (kill(pid, 0) && errno == ESRCH)
		err_msg("pid %d: no such process", pid);
	else
		err_msg("pid %d is not a sluiced (its program is %s); nothing sent", pid,
			n > 0 ? exe : "unreadable");
	return -1;
}

/* A daemon operation: POST target on the admin socket (the outcome comes back), or,
 * without a socket, sig to a --pid verified to be a sluiced. */
static int daemon_op(int argc, char **argv, const char *target, int sig, const char *done)
{
	int pid;
	int r = daemon_target(argc, argv, &pid);
	if (r == 2)
		return 2;
	if (pid && verify_sluiced(pid))
		return 1;
	char why[512];
	const char *sock = find_admin_socket();
	if (!sock && admin_conf)
		return 1;
	if (sock) {
		int apid = admin_pid(sock, why, sizeof(why));
		if (apid < 0 && !pid) {
			err_msg("%s", why);
			return 1;
		}
		if (apid > 0 && pid && apid != pid) {
			err_msg("admin socket %s belongs to pid %d, not %d; nothing sent", sock,
				apid, pid);
			return 1;
		}
		if (apid > 0) {
			json_t *j;
			int st = admin_call(sock, "POST", target, &j, why, sizeof(why));
			if (st < 0) {
				err_msg("%s", why);
				return 1;
			}
			const char *e = json_string_value(json_object_get(j, "error"));
			if (st != 200) {
				err_msg("%s rejected (pid %d): %s", argv[0], apid,
					e ? e : "no reason given");
				json_decref(j);
				return 1;
			}
			json_decref(j);
			printf("%s: pid %d\n", done, apid);
			return 0;
		}
		/* the socket is dead but the pid was verified: fall back to the signal */
	}
	if (!pid) {
		err_msg("no admin socket to reach the daemon (--socket PATH, --config FILE, or "
			"admin.socket at " SL_ADMIN_SOCKET_DEFAULT ") and no --pid");
		return 1;
	}
	if (kill(pid, sig)) {
		err_msg("pid %d: %s", pid, strerror(errno));
		return 1;
	}
	printf("%s requested: pid %d (signal %s; without the admin socket the outcome is in "
	       "its error log)\n",
	       argv[0], pid, strsignal(sig));
	return 0;
}

static int cmd_reload(int argc, char **argv)
{
	return daemon_op(argc, argv, "/reload", SIGHUP, "config reloaded");
}

static int cmd_reopen_logs(int argc, char **argv)
{
	return daemon_op(argc, argv, "/reopen-logs", SIGUSR1, "log files reopened");
}

/* The status of the daemon serving sock: its pid and its last upgrade's state and error
 * (copied into err). -errno when it does not answer. */
static int upgrade_poll(const char *sock, char *state, size_t slen, int *succ, char *err,
			size_t elen)
{
	json_t *j;
	char why[256];
	int st = admin_call(sock, "GET", "/status", &j, why, sizeof(why));
	if (st != 200) {
		json_decref(j);
		return st < 0 ? st : -EPROTO;
	}
	json_t *u = json_object_get(j, "upgrade");
	int pid = (int)json_integer_value(json_object_get(j, "pid"));
	snprintf(state, slen, "%s", json_string_value(json_object_get(u, "state")) ?: "");
	snprintf(err, elen, "%s", json_string_value(json_object_get(u, "error")) ?: "");
	*succ = (int)json_integer_value(json_object_get(u, "successor_pid"));
	json_decref(j);
	return pid;
}

/* POST /upgrade, then follow it: done once the admin socket is served by the successor
 * (it takes the path over when the old daemon hands over), failed when the old one says
 * so. */
static int cmd_upgrade(int argc, char **argv)
{
	const char *binary = NULL;
	if (argc == 3 && !strcmp(argv[1], "--binary"))
		binary = argv[2];
	else if (argc != 1) {
		err_msg("%s: %s", argv[0],
			argc == 2 && !strcmp(argv[1], "--binary") ? "--binary needs a path"
								  : "unexpected argument");
		return 2;
	}
	char why[512], body[PATH_MAX + 32] = "";
	if (binary) {
		json_t *b = json_pack("{s:s}", "binary", binary);
		char *t = b ? json_dumps(b, JSON_COMPACT) : NULL;
		json_decref(b);
		if (!t || strlen(t) >= sizeof(body)) {
			free(t);
			err_msg("%s: binary path too long", argv[0]);
			return 2;
		}
		snprintf(body, sizeof(body), "%s", t);
		free(t);
	}
	const char *sock = find_admin_socket();
	if (!sock) {
		err_msg("no admin socket to reach the daemon (--socket PATH, --config FILE, or "
			"admin.socket at " SL_ADMIN_SOCKET_DEFAULT ")");
		return 1;
	}
	int old = admin_pid(sock, why, sizeof(why));
	if (old < 0) {
		err_msg("%s", why);
		return 1;
	}
	json_t *j;
	int st = admin_call_body(sock, "POST", "/upgrade", binary ? body : NULL, &j, why,
				 sizeof(why));
	if (st < 0) {
		err_msg("%s", why);
		return 1;
	}
	const char *e = json_string_value(json_object_get(j, "error"));
	int succ = (int)json_integer_value(json_object_get(j, "successor_pid"));
	if (st != 202) {
		err_msg("upgrade refused (pid %d): %s", old, e ? e : "no reason given");
		json_decref(j);
		return 1;
	}
	json_decref(j);
	/* a little beyond the daemon's own deadline for a successor (30 s) */
	for (int i = 0; i < 400; i++) {
		char state[32], err[512];
		int s2, pid = upgrade_poll(sock, state, sizeof(state), &s2, err, sizeof(err));
		if (pid == succ) {
			printf("upgraded: pid %d -> pid %d\n", old, succ);
			return 0;
		}
		if (pid == old && !strcmp(state, "failed") && s2 == succ) {
			err_msg("upgrade failed, pid %d keeps serving: %s", old, err);
			return 1;
		}
		usleep(100000);
	}
	err_msg("upgrade of pid %d to pid %d: no outcome within 40 s", old, succ);
	return 1;
}

static int cmd_check(int argc, char **argv)
{
	if (argc != 2)
		return 2;
	char err[SL_CONF_ERR_MAX];
	struct sl_conf *c = sl_conf_load(argv[1], err, sizeof(err));
	if (!c) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	printf("%s: configuration ok (%u listeners, %u upstreams)\n", argv[1], c->n_listeners,
	       c->n_upstreams);
	sl_conf_put(c);
	return 0;
}

static int cmd_version(int argc, char **argv)
{
	if (argc != 1)
		return 2;
	printf("sluicectl %s\n", SL_VERSION);
	return 0;
}

static const struct cmd cmds[] = {
    {"load", "--dev IFACE [--mode auto|native|generic] [--force] [--syn-rate N [--syn-burst N]]",
     "load the XDP guard, pin it and attach it to IFACE (auto: native, else generic); a "
     "device that already has an XDP program is left alone unless --force",
     cmd_load},
    {"unload", "[--dev IFACE]",
     "detach the XDP guard from IFACE (default: every device); with the last one, unpin "
     "the program and its maps",
     cmd_unload},
    {"status", "[--json]",
     "what is pinned and attached, daemon alive or not, steering on or off and why", cmd_status},
    {"stats", "[--watch SECONDS [--count K]] [--json]",
     "per-worker connections, requests/s, status classes, bytes, upstream reuse; steering "
     "reasons; XDP counters (--json: one object per round)",
     cmd_stats},
    {"workers", "[--json]",
     "worker slots: CPU, state, connections, cap, heartbeat age (--json: with every counter)",
     cmd_workers},
    {"deny", "add|del CIDR... | list [--json]",
     "source prefixes the XDP guard drops (a bare address is a /32 or /128)", cmd_deny},
    {"syn-guard", "[show | set RATE [BURST] | off] [--json]",
     "SYN rate limit per source /24 (IPv4) or /64 (IPv6); BURST defaults to RATE", cmd_syn_guard},
    {"reload", "[--pid PID]",
     "reload the daemon's config through its admin socket and report the outcome (exit 1 "
     "with the FILE:LINE:COL reason when rejected); without a socket, SIGHUP to PID once it "
     "is verified to be a sluiced",
     cmd_reload},
    {"upgrade", "[--binary PATH]",
     "zero-downtime binary upgrade through the admin socket: the daemon starts PATH (default: "
     "its own binary's path) with its arguments, hands it the listening sockets, and drains "
     "once the new one is ready; exit 0 with both pids, or 1 with the reason the old one "
     "keeps serving",
     cmd_upgrade},
    {"reopen-logs", "[--pid PID]",
     "reopen the error and access log files (after rotation), through the admin socket or "
     "SIGUSR1 to a verified PID",
     cmd_reopen_logs},
    {"upstream",
     "[--socket PATH] [--json] list | show NAME | set NAME ADDR[=WEIGHT]... | add NAME ADDR "
     "[WEIGHT] | del NAME ADDR | drain|enable|disable NAME ADDR",
     "upstreams of the running daemon through its admin socket (--socket, else "
     "$SLUICE_ADMIN_SOCKET, else /run/sluice/admin.sock): list them with live server "
     "states, replace a server list, add or remove one server, drain, enable or disable one "
     "(in memory: docs/operations.md says how a reload treats it)",
     sl_ctl_upstream},
    {"cache", "stats | purge (--key KEY | --prefix PREFIX) [--zone ZONE]",
     "cache zone counters, or drop one key (every Vary variant) or every key under a "
     "prefix, through the admin socket",
     cmd_cache},
    {"check", "FILE", "validate a configuration file", cmd_check},
    {"version", "", "print the version", cmd_version},
};

/* text word-wrapped to 80 columns, each line indented */
static void print_wrapped(FILE *f, const char *indent, const char *text)
{
	const size_t width = 80 - strlen(indent);
	while (*text) {
		size_t n = strlen(text);
		if (n > width) {
			n = width;
			while (n > 0 && text[n] != ' ')
				n--;
			if (!n)
				n = strcspn(text, " ");
		}
		fprintf(f, "%s%.*s\n", indent, (int)n, text);
		text += n;
		while (*text == ' ')
			text++;
	}
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: sluicectl [--pin-path DIR] [--socket PATH | --config FILE] [-v] COMMAND "
		"[ARGS]\n\n"
		"  --pin-path DIR  where the BPF objects are pinned (default " SL_PIN_PATH_DEFAULT
		")\n"
		"  --socket PATH   the daemon's admin socket (default " SL_ADMIN_SOCKET_DEFAULT
		" when it exists)\n"
		"  --config FILE   take the admin socket from FILE's admin.socket\n"
		"  -v, --verbose   show libbpf's warnings\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		fprintf(f, "  %s %s\n", cmds[i].name, cmds[i].args);
		print_wrapped(f, "      ", cmds[i].help);
	}
	fprintf(f, "\n`sluicectl COMMAND --help` describes one command. Exit codes: 0 ok, 1 the "
		   "operation failed, 2 usage.\n");
}

int main(int argc, char **argv)
{
	int i = 1;
	/* global options come before the command */
	while (i < argc && argv[i][0] == '-') {
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			usage(stdout);
			return 0;
		} else if (!strcmp(argv[i], "-v") || !strcmp(argv[i], "--verbose")) {
			verbose = 1;
			i++;
		} else if (!strcmp(argv[i], "--socket") && i + 1 < argc && argv[i + 1][0]) {
			admin_socket = argv[i + 1];
			i += 2;
		} else if (!strcmp(argv[i], "--config") && i + 1 < argc && argv[i + 1][0]) {
			admin_conf = argv[i + 1];
			i += 2;
		} else if (!strcmp(argv[i], "--pin-path") && i + 1 < argc && argv[i + 1][0]) {
			pin_dir = argv[i + 1];
			i += 2;
		} else if (!strncmp(argv[i], "--pin-path=", 11) && argv[i][11]) {
			pin_dir = argv[i] + 11;
			i++;
		} else {
			err_msg("unknown or incomplete option '%s'", argv[i]);
			usage(stderr);
			return 2;
		}
	}
	if (i >= argc) {
		usage(stderr);
		return 2;
	}
	if (pin_dir[0] != '/') {
		err_msg("--pin-path must be an absolute path");
		return 2;
	}
	libbpf_set_print(libbpf_print);
	for (size_t k = 0; k < sizeof(cmds) / sizeof(cmds[0]); k++) {
		if (strcmp(argv[i], cmds[k].name))
			continue;
		for (int j = i + 1; j < argc; j++) {
			if (!strcmp(argv[j], "--help") || !strcmp(argv[j], "-h")) {
				printf("usage: sluicectl %s %s\n", cmds[k].name, cmds[k].args);
				print_wrapped(stdout, "  ", cmds[k].help);
				return 0;
			}
		}
		int rc = cmds[k].run(argc - i, argv + i);
		if (rc == 2)
			fprintf(stderr, "usage: sluicectl %s %s\n", cmds[k].name, cmds[k].args);
		return rc;
	}
	err_msg("unknown command '%s'", argv[i]);
	usage(stderr);
	return 2;
}
