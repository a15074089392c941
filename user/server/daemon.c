/* sl_main(): command line, config, workers, and the main thread's signal loop
 * (graceful stop, fast stop, reload). */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "admin/admin.h"
#include "admin/resolver.h"

#include "config/config.h"
#include "core/clock.h"
#include "core/log.h"
#include "bpf/pin.h"
#include "bpf/steer.h"
#include "lb/lb.h"
#include "proxy/session.h"
#include "server/claim.h"
#include "server/cpus.h"
#include "server/notify.h"
#include "server/privdrop.h"
#include "upstream/shared_pool.h"
#include "server/service.h"
#include "proxy/cache.h"
#include "server/upgrade.h"
#include "server/worker.h"
#include "tls/server.h"
#include "tls/tickets.h"

#define DEFAULT_CONF "/etc/sluice/sluice.yaml"

static void usage(FILE *f, const char *prog)
{
	fprintf(f,
		"usage: %s [-c FILE] [-t] [-V] [-h]\n"
		"  -c, --config FILE  configuration file (default " DEFAULT_CONF ")\n"
		"  -t, --test         check the configuration and exit (0 valid, 1 not)\n"
		"  -V, --version      print the version and exit\n"
		"  -h, --help         this help\n"
		"signals: TERM graceful stop, INT fast stop, HUP reload the configuration,\n"
		"         USR1 reopen the log files, USR2 upgrade to a new binary\n",
		prog);
}

static int same_addr(const struct sl_conf_listener *a, const struct sl_conf_listener *b)
{
	return a->addrlen == b->addrlen && !memcmp(&a->addr, &b->addr, a->addrlen);
}

/* A reload's listener changes, prepared before anything is committed: the slot of every
 * listener of the new snapshot, and the sockets opened for added ones. */
struct lsn_plan {
	unsigned int n_added;
	unsigned int added[SL_MAX_LISTENERS];	    /* slots */
	int *fds[SL_MAX_LISTENERS];		    /* [n_workers] per added slot */
	unsigned int n_removed;
	unsigned int removed[SL_MAX_LISTENERS]; /* slots */
};

static int slot_free(const struct sl_daemon *d, const struct sl_conf *old, const struct sl_conf *n,
		     unsigned int slot)
{
	if (old->slot_index[slot] >= 0 || n->slot_index[slot] >= 0)
		return 0;
	for (unsigned int w = 0; w < d->n_workers; w++) /* closed by every worker yet */
		if (__atomic_load_n(&d->workers[w].lsn[slot].fd, __ATOMIC_SEQ_CST) >= 0)
			return 0;
	return 1;
}

static void plan_undo(struct sl_daemon *d, struct lsn_plan *p)
{
	for (unsigned int k = 0; k < p->n_added; k++) {
		if (!p->fds[k])
			continue;
		sl_steer_listener_del(p->added[k], p->fds[k], d->n_workers);
		for (unsigned int w = 0; w < d->n_workers; w++)
			if (p->fds[k][w] >= 0)
				close(p->fds[k][w]);
		free(p->fds[k]);
		p->fds[k] = NULL;
	}
	p->n_added = 0;
}

static int check_groups_of(const struct sl_conf_listener *l, const int *fds, size_t n, char *why,
			   size_t len);

/* Give every listener of n a slot: the one it had when the address stays, a free one
 * (with a socket per worker, bound, listening and steered) when it is new. Nothing the
 * old snapshot serves changes here. 0, or -errno with the reason in why (undone). */
static int plan_listeners(struct sl_daemon *d, const struct sl_conf *old, struct sl_conf *n,
			  struct lsn_plan *p, char *why, size_t len)
{
	memset(p, 0, sizeof(*p));
	memset(n->slot_index, -1, sizeof(n->slot_index));
	int err = 0;
	for (unsigned int i = 0; i < n->n_listeners && !err; i++) {
		const struct sl_conf_listener *l = &n->listeners[i];
		int slot = -1;
		for (unsigned int s = 0; s < SL_MAX_LISTENERS && slot < 0; s++)
			if (old->slot_index[s] >= 0 &&
			    same_addr(&old->listeners[old->slot_index[s]], l))
				slot = (int)s;
		if (slot >= 0) {
			n->slot_index[slot] = (int8_t)i;
			continue;
		}
		for (unsigned int s = 0; s < SL_MAX_LISTENERS && slot < 0; s++)
			if (slot_free(d, old, n, s))
				slot = (int)s;
		if (slot < 0) {
			snprintf(why, len,
				 "%s: no free listener slot (removed listeners still closing)",
				 l->address);
			err = -ENOSPC;
			break;
		}
		struct sl_claim_owner o;
		err = sl_claim_probe((const struct sockaddr *)&l->addr, l->addrlen, &o);
		if (err == -EADDRINUSE) {
			char who[96];
			sl_claim_describe(&o, who, sizeof(who));
			snprintf(why, len, "cannot listen on %s: already served by %s", l->address,
				 who);
			break;
		} else if (err) {
			snprintf(why, len, "cannot listen on %s: %s", l->address, strerror(-err));
			break;
		}
		unsigned int k = p->n_added++;
		p->added[k] = (unsigned int)slot;
		n->slot_index[slot] = (int8_t)i;
		p->fds[k] = malloc(d->n_workers * sizeof(int));
		if (!p->fds[k]) {
			snprintf(why, len, "out of memory");
			err = -ENOMEM;
			break;
		}
		for (unsigned int w = 0; w < d->n_workers; w++)
			p->fds[k][w] = -1;
		for (unsigned int w = 0; w < d->n_workers && !err; w++) {
			int fd = sl_listen_open((const struct sockaddr *)&l->addr, l->addrlen,
						l->address);
			if (fd < 0) {
				snprintf(why, len, "cannot listen on %s: %s", l->address,
					 strerror(-fd));
				err = fd;
			} else {
				p->fds[k][w] = fd;
			}
		}
		if (!err)
			err = check_groups_of(l, p->fds[k], d->n_workers, why, len);
		if (!err && d->steering)
			err = sl_steer_listener_add((unsigned int)slot, p->fds[k], d->n_workers,
						    l->address, why, len);
	}
	if (err) {
		plan_undo(d, p);
		return err;
	}
	for (unsigned int s = 0; s < SL_MAX_LISTENERS; s++)
		if (old->slot_index[s] >= 0 && n->slot_index[s] < 0)
			p->removed[p->n_removed++] = s;
	return 0;
}

/* Hand the added sockets to the workers and forget the removed ones in steering; the
 * workers open and close accepting when they take the snapshot up. */
static void plan_commit(struct sl_daemon *d, const struct sl_conf *old, const struct sl_conf *n,
			struct lsn_plan *p)
{
	for (unsigned int k = 0; k < p->n_added; k++) {
		unsigned int slot = p->added[k];
		for (unsigned int w = 0; w < d->n_workers; w++)
			sl_listen_set(&d->workers[w], slot, p->fds[k][w]);
		free(p->fds[k]);
		p->fds[k] = NULL;
		sl_log(SL_LOG_INFO, "msg=\"listener added\" address=%s",
		       n->listeners[n->slot_index[slot]].address);
	}
	int *fds = calloc(d->n_workers, sizeof(*fds));
	for (unsigned int k = 0; k < p->n_removed; k++) {
		unsigned int slot = p->removed[k];
		if (fds) {
			for (unsigned int w = 0; w < d->n_workers; w++)
				fds[w] = __atomic_load_n(&d->workers[w].lsn[slot].fd, __ATOMIC_SEQ_CST);
			sl_steer_listener_del(slot, fds, d->n_workers);
		}
		sl_log(SL_LOG_INFO, "msg=\"listener removed\" address=%s",
		       old->listeners[old->slot_index[slot]].address);
	}
	free(fds);
}

/* One shared pool serves every upstream: its bound is the largest max_idle_shared. */
static void spool_limits(const struct sl_conf *c, unsigned int *max_idle, unsigned int *idle_ms)
{
	*max_idle = 0;
	*idle_ms = 1000;
	for (unsigned int i = 0; i < c->n_upstreams; i++) {
		const struct sl_conf_pool *p = &c->upstreams[i].pool;
		if (p->max_idle_shared > *max_idle)
			*max_idle = p->max_idle_shared;
		if (p->idle_timeout > *idle_ms)
			*idle_ms = p->idle_timeout;
	}
}

/* Raise the soft RLIMIT_NOFILE to the hard limit (as nginx's worker_rlimit_nofile and
 * HAProxy do): the default connection cap is derived from it. Returns the limit in force. */
static uint64_t raise_nofile(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl))
		return 1024;
	if (rl.rlim_cur < rl.rlim_max) {
		rlim_t from = rl.rlim_cur;
		rl.rlim_cur = rl.rlim_max;
		if (!setrlimit(RLIMIT_NOFILE, &rl)) {
			sl_log(SL_LOG_INFO, "msg=\"open file limit raised\" from=%llu to=%llu",
			       (unsigned long long)from, (unsigned long long)rl.rlim_cur);
		} else {
			sl_log(SL_LOG_WARN,
			       "msg=\"cannot raise the open file limit\" nofile=%llu hard=%llu "
			       "err=\"%s\"",
			       (unsigned long long)from, (unsigned long long)rl.rlim_max,
			       strerror(errno));
			rl.rlim_cur = from;
		}
	}
	return rl.rlim_cur == RLIM_INFINITY ? (1u << 20) : (uint64_t)rl.rlim_cur;
}

/* One line saying what the connection cap is and where it comes from, and a warning
 * when a configured cap leaves no room under the open file limit. */
static void log_conn_cap(const struct sl_daemon *d, const struct sl_conf *c)
{
	unsigned int set = c->limits.max_connections, total = set ? set : d->auto_max_conns;
	sl_log(SL_LOG_INFO,
	       "msg=\"connection cap\" max_connections=%u per_worker=%u source=%s nofile=%llu",
	       total, sl_worker_conn_share(total, d->n_workers, 0), set ? "config" : "derived",
	       (unsigned long long)d->nofile);
	if (set > d->auto_max_conns)
		sl_log(SL_LOG_WARN,
		       "msg=\"limits.max_connections is above what the open file limit leaves "
		       "room for; accepting will pause at the limit\" max_connections=%u fits=%u "
		       "nofile=%llu",
		       set, d->auto_max_conns, (unsigned long long)d->nofile);
}

/* The process section cannot change without a restart: the daemon gave up the rights
 * that switching user or regaining a capability would need. */
static int same_process(const struct sl_conf *a, const struct sl_conf *b)
{
	return !a->proc.user == !b->proc.user && a->proc.uid == b->proc.uid &&
	       a->proc.gid == b->proc.gid && a->proc.keep_caps == b->proc.keep_caps;
}

static int reload_conf(struct sl_daemon *d);

static unsigned int steer_signal(const struct sl_conf *c)
{
	switch (c->bpf.load_signal) {
	case SL_LOAD_CPU:
		return SL_STEER_LOAD_CPU;
	case SL_LOAD_CONNECTIONS:
		return SL_STEER_LOAD_CONNECTIONS;
	default:
		return SL_STEER_LOAD_BOTH;
	}
}

static const char *signal_name(const struct sl_conf *c)
{
	return c->bpf.load_signal == SL_LOAD_CPU	   ? "cpu"
	       : c->bpf.load_signal == SL_LOAD_CONNECTIONS ? "connections"
							   : "both";
}

int sl_daemon_reload(struct sl_daemon *d)
{
	sl_notify_reloading();
	int err = reload_conf(d);
	d->last_reload_unix = (int64_t)time(NULL);
	d->last_reload_ok = !err;
	if (err)
		d->reload_failures++;
	sl_notify_reloaded(!err, d->reload_err);
	return err;
}

static int reload_conf(struct sl_daemon *d)
{
	const char *path = d->conf_path;
	char err[SL_CONF_ERR_MAX];
	if (sl_upgrade_busy(d)) {
		snprintf(d->reload_err, sizeof(d->reload_err),
			 "a binary upgrade is in progress; reload after it");
		sl_log(SL_LOG_ERROR,
		       "msg=\"reload rejected, old config keeps serving\" reason=\"%s\"",
		       d->reload_err);
		return -EBUSY;
	}
	struct sl_conf *n = sl_conf_load(path, err, sizeof(err));
	if (!n) {
		sl_log(SL_LOG_ERROR,
		       "msg=\"reload rejected, old config keeps serving\" reason=\"%s\"", err);
		snprintf(d->reload_err, sizeof(d->reload_err), "%s", err);
		return -EINVAL;
	}
	struct sl_conf *old = atomic_load(&d->conf);
	if (!same_process(old, n)) {
		sl_log(SL_LOG_ERROR,
		       "msg=\"reload rejected, old config keeps serving\" "
		       "reason=\"%s: user, group or keep_capabilities changed; a restart is needed "
		       "for that\"",
		       path);
		snprintf(
		    d->reload_err, sizeof(d->reload_err),
		    "%s: user, group or keep_capabilities changed; a restart is needed for that",
		    path);
		sl_conf_put(n);
		return -EINVAL;
	}
	struct lsn_plan plan;
	char lwhy[SL_CONF_ERR_MAX];
	if (plan_listeners(d, old, n, &plan, lwhy, sizeof(lwhy))) {
		sl_log(SL_LOG_ERROR,
		       "msg=\"reload rejected, old config keeps serving\" reason=\"%s: %s\"", path,
		       lwhy);
		int k = snprintf(d->reload_err, sizeof(d->reload_err), "%s: ", path);
		if (k > 0 && (size_t)k < sizeof(d->reload_err))
			snprintf(d->reload_err + k, sizeof(d->reload_err) - (size_t)k, "%.*s",
				 (int)(sizeof(d->reload_err) - (size_t)k - 1), lwhy);
		sl_conf_put(n);
		return -EINVAL;
	}
	if (sl_lb_attach(n, d->n_workers, err, sizeof(err))) {
		plan_undo(d, &plan);
		sl_log(SL_LOG_ERROR,
		       "msg=\"reload rejected, old config keeps serving\" reason=\"%s: %s\"", path,
		       err);
		int k = snprintf(d->reload_err, sizeof(d->reload_err), "%s: ", path);
		if (k > 0 && (size_t)k < sizeof(d->reload_err))
			snprintf(d->reload_err + k, sizeof(d->reload_err) - (size_t)k, "%.*s",
				 (int)(sizeof(d->reload_err) - (size_t)k - 1), err);
		sl_conf_put(n);
		return -EINVAL;
	}
	if (sl_tls_attach(n, err, sizeof(err))) {
		plan_undo(d, &plan);
		sl_log(SL_LOG_ERROR,
		       "msg=\"reload rejected, old config keeps serving\" reason=\"%s: %s\"", path,
		       err);
		snprintf(d->reload_err, sizeof(d->reload_err), "%s: %.*s", path,
			 (int)(sizeof(d->reload_err) - strlen(path) - 3), err);
		sl_conf_put(n);
		return -EINVAL;
	}
	sl_log_level_cur = n->log.level;
	sl_pcache_zones(n); /* new cache zones exist before a request needs them */
	if (d->spool) {
		unsigned int max_idle, idle_ms;
		spool_limits(n, &max_idle, &idle_ms);
		sl_spool_set_limits(d->spool, max_idle, idle_ms);
	}
	if (n->limits.max_connections != old->limits.max_connections)
		log_conn_cap(d, n);
	if (d->steering &&
	    (n->bpf.locality != old->bpf.locality || n->bpf.load_margin != old->bpf.load_margin ||
	     n->bpf.load_signal != old->bpf.load_signal)) {
		int serr = sl_steer_set_policy((unsigned int)n->bpf.locality, n->bpf.load_margin,
					       steer_signal(n));
		if (serr)
			sl_log(SL_LOG_WARN,
			       "msg=\"cannot apply the new steering policy, the old one stays\" "
			       "err=\"%s\"",
			       strerror(-serr));
		else
			sl_log(SL_LOG_INFO,
			       "msg=\"steering policy changed\" locality=%s load_margin=%u "
			       "load_signal=%s",
			       n->bpf.locality ? "prefer" : "off", n->bpf.load_margin,
			       signal_name(n));
	}
	plan_commit(d, old, n, &plan);
	atomic_store_explicit(&d->conf, n, memory_order_release);
	for (unsigned int i = 0; i < d->n_workers; i++) {
		sl_worker_publish(&d->workers[i], n);
		sl_worker_poke(&d->workers[i]);
	}
	sl_conf_put(old); /* workers hold their own references */
	sl_log(SL_LOG_INFO, "msg=\"config reloaded\" file=%s", path);
	d->reload_err[0] = 0;
	d->reloads++;
	return 0;
}

int sl_daemon_reopen_logs(struct sl_daemon *d)
{
	int err = sl_log_reopen(), aerr = 0;
	if (err)
		sl_log(SL_LOG_ERROR,
		       "msg=\"cannot reopen the error log, still writing to the old file\" "
		       "err=\"%s\"",
		       strerror(-err));
	if (d->alog_path && d->alog_fd > 2) {
		aerr = sl_log_reopen_fd(d->alog_fd, d->alog_path);
		if (aerr)
			sl_log(SL_LOG_ERROR,
			       "msg=\"cannot reopen the access log, still writing to the old "
			       "file\" path=%s err=\"%s\"",
			       d->alog_path, strerror(-aerr));
	}
	snprintf(d->reopen_err, sizeof(d->reopen_err), "%s%s%s%s", err ? "error log: " : "",
		 err ? strerror(-err) : "", aerr ? (err ? "; access log: " : "access log: ") : "",
		 aerr ? strerror(-aerr) : "");
	if (!err && !aerr)
		sl_log(SL_LOG_INFO, "msg=\"log files reopened\"");
	return err ? err : aerr;
}

static void poke_all(struct sl_daemon *d)
{
	for (unsigned int i = 0; i < d->n_workers; i++)
		sl_worker_poke(&d->workers[i]);
}

static void graceful_stop(struct sl_daemon *d)
{
	struct sl_conf *c = atomic_load(&d->conf);
	d->deadline_ms = (sl_mono_ns() / 1000000) + c->shutdown_grace;
	atomic_store(&d->stop, 1);
	poke_all(d);
}

void sl_daemon_handed_over(struct sl_daemon *d)
{
	/* the successor serves the groups and the admin socket from now on; this daemon's
	 * listening sockets stay open in it, so closing ours loses no queued connection */
	d->handed_over = 1;
	sl_steer_handed_over();
	/* no new admin connection on either socket (the successor accepts on the same
	 * ones); those accepted already get their answer: closing them reset a probe */
	sl_admin_handover(d);
	for (unsigned int i = 0; i < d->n_workers; i++)
		atomic_store(&d->workers[i].soft_drain, 1);
	graceful_stop(d);
}

int sl_daemon_admin_fd(struct sl_daemon *d)
{
	return sl_admin_tcp_fd(d);
}

int sl_daemon_admin_unix_fd(struct sl_daemon *d, char *path, size_t len)
{
	return sl_admin_unix_fd(d, path, len);
}

int sl_daemon_upgrade(struct sl_daemon *d, const char *binary, char *why, size_t len)
{
	int err = sl_upgrade_start(d, binary, why, len);
	if (err)
		sl_log(SL_LOG_ERROR, "msg=\"upgrade not started\" reason=\"%s\"", why);
	return err;
}

/* Steering is optional unless the config says required: one log line either way. */
static int start_steering(struct sl_daemon *d, const struct sl_conf *conf)
{
	char why[256];
	if (conf->bpf.steering == SL_BPF_OFF) {
		sl_log(SL_LOG_INFO, "msg=\"steering off\" reason=\"bpf.steering: off\"");
		return 0;
	}
	/* one daemon per set of pinned maps: a second one would reset the first's slots */
	const char *dir = conf->bpf.pin_path ? conf->bpf.pin_path : SL_PIN_PATH_DEFAULT;
	struct sl_claim_owner o;
	int err = sl_pin_prepare(dir);
	int fresh = 0;
	if (!err && d->inherit && d->inherit->lock_fd >= 0) {
		/* the predecessor's lock (one open file, shared): the set is ours together */
		d->pin_lock_fd = d->inherit->lock_fd;
		d->inherit->lock_fd = -1;
		fresh = 1;
	} else if (!err) {
		err = sl_claim_lock_dir(dir, &o);
		if (err >= 0) {
			d->pin_lock_fd = err;
			err = 0;
		} else if (err == -EWOULDBLOCK) {
			char who[96];
			sl_claim_describe(&o, who, sizeof(who));
			snprintf(why, sizeof(why), "pin path %s is in use by %s", dir, who);
		} else {
			snprintf(why, sizeof(why), "cannot lock pin path %s: %s", dir,
				 strerror(-err));
		}
	} else {
		snprintf(why, sizeof(why), "cannot prepare pin dir %s: %s", dir, strerror(-err));
	}
	unsigned int nw = d->n_workers, nl = d->workers[0].n_lsn;
	/* the predecessor's socket-array keys of the sockets taken over */
	__u32 *release = NULL;
	unsigned int n_release = 0;
	if (fresh) {
		release = calloc((size_t)d->inherit->n * SL_MAX_WORKERS, sizeof(*release));
		for (unsigned int i = 0; release && i < d->inherit->n; i++)
			for (unsigned int k = 0; k < d->inherit->l[i].n_fds; k++)
				if (d->inherit->l[i].taken[k])
					release[n_release++] =
					    d->inherit->l[i].pred_slot * SL_MAX_WORKERS + k;
	}
	int *cpus = calloc(nw, sizeof(*cpus));
	int *fds = calloc((size_t)nw * (nl ? nl : 1), sizeof(*fds));
	__u32 *active = calloc(nw, sizeof(*active));
	const char *names[SL_MAX_LISTENERS];
	struct sl_worker_state **states = calloc(nw, sizeof(*states));
	struct sl_worker_stats **stats = calloc(nw, sizeof(*stats));
	if (!err && !(cpus && fds && active && states && stats)) {
		err = -ENOMEM;
		snprintf(why, sizeof(why), "out of memory");
	}
	if (!err) {
		for (unsigned int i = 0; i < nw; i++) {
			const struct sl_worker *w = &d->workers[i];
			cpus[i] = w->cpu;
			active[i] = w->state->active;
			for (unsigned int l = 0; l < nl; l++)
				fds[i * nl + l] = l < w->n_lsn ? w->lsn[l].fd : -1;
		}
		for (unsigned int l = 0; l < nl && l < SL_MAX_LISTENERS; l++)
			names[l] = l < conf->n_listeners ? conf->listeners[l].address : "?";
		struct sl_steer_setup s = {
		    .pin_path = conf->bpf.pin_path,
		    .n_workers = nw,
		    .n_listeners = nl,
		    .cpus = cpus,
		    .fds = fds,
		    .names = names,
		    .stall_ms = conf->bpf.stall_ms,
		    .max_conns = conf->bpf.max_conns_per_worker,
		    .active = active,
		    .locality = (unsigned int)conf->bpf.locality,
		    .load_margin = conf->bpf.load_margin,
		    .load_signal = steer_signal(conf),
		    .fresh = fresh,
		    .release_keys = release,
		    .n_release = n_release,
		};
		err = sl_steer_init(&s, states, stats, why, sizeof(why));
		if (!err)
			for (unsigned int i = 0; i < nw; i++) {
				d->workers[i].state = states[i];
				d->workers[i].st = stats[i];
			}
	}
	free(release);
	free(cpus);
	free(fds);
	free(active);
	free(states);
	free(stats);
	if (!err) {
		d->steering = 1;
		d->stall_ns = (uint64_t)conf->bpf.stall_ms * 1000000ull;
		sl_log(SL_LOG_INFO,
		       "msg=\"steering on\" pin_path=%s stall_ms=%u locality=%s load_margin=%u "
		       "load_signal=%s workers_pin=%s",
		       conf->bpf.pin_path ? conf->bpf.pin_path : SL_PIN_PATH_DEFAULT,
		       conf->bpf.stall_ms, conf->bpf.locality ? "prefer" : "off",
		       conf->bpf.load_margin,
		       signal_name(conf),
		       conf->bpf.workers_pin ? "true" : "false");
		return 0;
	}
	if (d->pin_lock_fd >= 0) {
		close(d->pin_lock_fd);
		d->pin_lock_fd = -1;
	}
	if (conf->bpf.steering == SL_BPF_REQUIRED) {
		sl_log(SL_LOG_ERROR, "msg=\"steering required but unavailable\" reason=\"%s\"",
		       why);
		return err;
	}
	sl_log(SL_LOG_WARN, "msg=\"steering off, serving without it\" reason=\"%s\"", why);
	return 0;
}

/* Workers leave the mmaped slots before they are unmapped; the final counters stay
 * readable in each worker's local copy. */
static void stop_steering(struct sl_daemon *d)
{
	if (!d->steering)
		return;
	for (unsigned int i = 0; i < d->n_workers; i++) {
		struct sl_worker *w = &d->workers[i];
		w->st_local = *w->st;
		w->st = &w->st_local;
		w->state = &w->state_local;
	}
	sl_steer_fini();
	d->steering = 0;
}

/* One daemon per listener set (server/claim.h): no listener of c may be an address
 * another process listens on. 0, or -EADDRINUSE / -errno with the reason in why. */
static int claim_listeners(struct sl_daemon *d, const struct sl_conf *c, char *why, size_t len)
{
	for (unsigned int i = 0; i < c->n_listeners; i++) {
		const struct sl_conf_listener *l = &c->listeners[i];
		struct sl_claim_owner o;
		/* the predecessor's groups: its successor is let in */
		if (d->inherit &&
		    sl_upgrade_find(d->inherit, (const struct sockaddr *)&l->addr, l->addrlen))
			continue;
		int err = sl_claim_probe((const struct sockaddr *)&l->addr, l->addrlen, &o);
		if (err == -EADDRINUSE) {
			char who[96];
			sl_claim_describe(&o, who, sizeof(who));
			snprintf(why, len,
				 "%s is already served by %s (one sluiced per listener set: stop "
				 "that one first)",
				 l->address, who);
			return err;
		}
		if (err) {
			snprintf(why, len, "cannot listen on %s: %s", l->address, strerror(-err));
			return err;
		}
	}
	return 0;
}

/* After listen(): the group of l holds only the sockets fds[0..n) (a daemon starting at
 * the same moment passes the probe too; then both refuse rather than share). */
static int check_groups_of(const struct sl_conf_listener *l, const int *fds, size_t n, char *why,
			   size_t len)
{
	struct sl_claim_owner o;
	int r = sl_claim_foreign((const struct sockaddr *)&l->addr, l->addrlen, fds, n, &o);
	if (r != 1)
		return 0;
	char who[96];
	sl_claim_describe(&o, who, sizeof(who));
	snprintf(why, len,
		 "%s is also served by %s, which started at the same time (one sluiced per "
		 "listener set)",
		 l->address, who);
	return -EADDRINUSE;
}

static int check_groups(const struct sl_daemon *d, const struct sl_conf *c, char *why, size_t len)
{
	int *fds = calloc(d->n_workers + SL_MAX_WORKERS, sizeof(*fds));
	if (!fds)
		return -ENOMEM;
	int err = 0;
	for (unsigned int i = 0; i < c->n_listeners && !err; i++) {
		size_t n = 0;
		for (unsigned int k = 0; k < d->n_workers; k++)
			if (i < d->workers[k].n_lsn && d->workers[k].lsn[i].fd >= 0)
				fds[n++] = d->workers[k].lsn[i].fd;
		/* the predecessor's sockets this daemon does not use are the same sockets */
		const struct sl_conf_listener *l = &c->listeners[i];
		struct sl_inherited_listener *h =
		    d->inherit ? sl_upgrade_find(d->inherit, (const struct sockaddr *)&l->addr,
						 l->addrlen)
			       : NULL;
		for (unsigned int k = 0; h && k < h->n_fds; k++)
			if (h->fds[k] >= 0)
				fds[n++] = h->fds[k];
		err = check_groups_of(&c->listeners[i], fds, n, why, len);
	}
	free(fds);
	return err;
}

/* Successor: worker k serves on the predecessor's socket k of each listener both have
 * (the same sockets, so nothing queued on them is lost when the predecessor closes its
 * copies); workers beyond the predecessor's count open their own and join the group. */
static void take_inherited(struct sl_daemon *d, const struct sl_conf *c)
{
	for (unsigned int i = 0; d->inherit && i < c->n_listeners; i++) {
		const struct sl_conf_listener *l = &c->listeners[i];
		struct sl_inherited_listener *h =
		    sl_upgrade_find(d->inherit, (const struct sockaddr *)&l->addr, l->addrlen);
		for (unsigned int k = 0; h && k < d->n_workers && k < h->n_fds; k++) {
			if (h->fds[k] < 0)
				continue;
			sl_listen_set(&d->workers[k], i, h->fds[k]);
			h->fds[k] = -1;
			h->taken[k] = 1;
		}
	}
}

/* Successor, workers running and steering attached: tell the predecessor, which drains
 * once it answers; then the pins and the admin socket become this daemon's. */
/* Until every worker's loop runs (its slot says ready, so steering may pick it):
 * readiness told to anyone (a service manager, a predecessor) means serving. */
static int wait_workers_ready(struct sl_daemon *d, char *why, size_t len)
{
	uint64_t until = sl_mono_ns() + 5000000000ull;
	for (unsigned int i = 0; i < d->n_workers; i++)
		while (__atomic_load_n(&d->workers[i].state->state, __ATOMIC_RELAXED) !=
		       SL_WORKER_READY) {
			if (sl_mono_ns() > until) {
				snprintf(why, len, "worker %u did not start", i);
				return -ETIMEDOUT;
			}
			usleep(1000);
		}
	return 0;
}

static int take_over(struct sl_daemon *d, char *why, size_t len)
{
	int err = wait_workers_ready(d, why, len);
	if (err)
		return err;
	err = sl_upgrade_ready(d->inherit, why, len);
	if (err)
		return err;
	if (d->steering) {
		sl_steer_adopt_migrate(d->inherit->migrate_saved);
		err = sl_steer_pin();
		if (err)
			sl_log(SL_LOG_WARN,
			       "msg=\"cannot pin the steering maps in place of the predecessor's\" "
			       "err=\"%s\"",
			       strerror(-err));
	} else {
		/* the predecessor's program must not outlive it on groups we serve */
		const struct sl_conf *c = atomic_load(&d->conf);
		for (unsigned int i = 0; i < c->n_listeners; i++) {
			int unused = 0;
			if (d->workers[0].lsn[i].fd >= 0)
				setsockopt(d->workers[0].lsn[i].fd, SOL_SOCKET, 68 /* DETACH_BPF */,
					   &unused, sizeof(unused));
		}
	}
	sl_admin_takeover_commit(d);
	sl_notify_mainpid("serving, upgraded");
	sl_log(SL_LOG_INFO, "msg=\"upgrade: took over\" predecessor=%d", (int)d->inherit->pred);
	return 0;
}

/* The main thread's loop: signals (through a signalfd), the grace-period deadline,
 * worker exits, and the admin API when configured. */
static void on_signal(evutil_socket_t fd, short what, void *arg)
{
	struct sl_daemon *d = arg;
	struct signalfd_siginfo si;
	while (read(fd, &si, sizeof(si)) == sizeof(si)) {
		int sig = (int)si.ssi_signo;
		if (sig == SIGHUP && !atomic_load(&d->stop)) {
			sl_daemon_reload(d);
		} else if (sig == SIGUSR2) {
			char why[256];
			sl_daemon_upgrade(d, NULL, why, sizeof(why));
		} else if (sig == SIGCHLD) {
			sl_upgrade_reap(d);
		} else if (sig == SIGUSR1) {
			sl_daemon_reopen_logs(d);
		} else if (sig == SIGTERM && !atomic_load(&d->stop)) {
			struct sl_conf *c = atomic_load(&d->conf);
			sl_log(SL_LOG_INFO, "msg=\"graceful stop\" grace_ms=%u", c->shutdown_grace);
			sl_notify_stopping("stopping: in-flight requests finish");
			sl_upgrade_abort(d);
			graceful_stop(d);
		} else if (sig == SIGINT || (sig == SIGTERM && atomic_load(&d->stop))) {
			sl_log(SL_LOG_INFO, "msg=\"fast stop\"");
			sl_notify_stopping("stopping now");
			sl_upgrade_abort(d);
			atomic_store(&d->stop, 2);
			poke_all(d);
		}
	}
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct sl_daemon *d = arg;
	sl_upgrade_tick(d);
	if (d->deadline_ms && (sl_mono_ns() / 1000000) > d->deadline_ms &&
	    atomic_load(&d->stop) == 1) {
		sl_log(SL_LOG_WARN, "msg=\"grace period over, closing remaining connections\"");
		atomic_store(&d->stop, 2);
		poke_all(d);
	}
	if (atomic_load(&d->live) == 0)
		event_base_loopbreak(d->base);
}

static int main_loop(struct sl_daemon *d, const sigset_t *set)
{
	int sfd = signalfd(-1, set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (sfd < 0)
		return -errno;
	/* Without these events nothing would ever stop the daemon: fail instead. */
	int err = 0;
	struct event *sev = event_new(d->base, sfd, EV_READ | EV_PERSIST, on_signal, d);
	struct event *tev = event_new(d->base, -1, EV_PERSIST, on_tick, d);
	struct timeval tick = {0, 20 * 1000};
	if (!sev || !tev || event_add(sev, NULL) || event_add(tev, &tick)) {
		sl_log(SL_LOG_ERROR, "msg=\"cannot set up the main loop\" reason=\"%s\"",
		       !sev || !tev ? "event_new failed" : "event_add failed");
		err = -ENOMEM;
		goto out;
	}
	sl_services_start(d->base); /* the workers run already */
	event_base_dispatch(d->base);
	sl_services_stop();
	sl_admin_stop(d);
out:
	if (sev)
		event_free(sev);
	if (tev)
		event_free(tev);
	event_base_free(d->base);
	d->base = NULL;
	close(sfd);
	return err;
}

/* The main loop's base and the admin API come before the privilege drop (the admin
 * socket's directory may be root's, as HAProxy binds its stats socket); they serve
 * once main_loop() dispatches. */
static int main_prepare(struct sl_daemon *d)
{
	d->base = event_base_new();
	if (!d->base)
		return -ENOMEM;
	if (sl_admin_start(d))
		sl_log(SL_LOG_WARN, "msg=\"admin API not started\"");
	return 0;
}

int sl_main(int argc, char **argv, const struct sl_proxy_ops *ops)
{
	static const struct option opts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"test", no_argument, NULL, 't'},
	    {"version", no_argument, NULL, 'V'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *path = DEFAULT_CONF;
	int test = 0, opt;
	while ((opt = getopt_long(argc, argv, "c:tVh", opts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			path = optarg;
			break;
		case 't':
			test = 1;
			break;
		case 'V':
			printf("sluiced %s\n", SL_VERSION);
			return 0;
		case 'h':
			usage(stdout, argv[0]);
			return 0;
		default:
			usage(stderr, argv[0]);
			return 2;
		}
	}
	if (optind < argc) {
		usage(stderr, argv[0]);
		return 2;
	}
	if (!ops || !ops->upstream_peer) {
		fprintf(stderr, "%s: the proxy has no upstream_peer phase\n", argv[0]);
		return 1;
	}

	char err[SL_CONF_ERR_MAX];
	/* started by a running daemon to take over from it (server/upgrade.h) */
	static struct sl_inherit in;
	if (!test && sl_upgrade_inherit(&in, err, sizeof(err))) {
		fprintf(stderr, "%s: upgrade: %s\n", argv[0], err);
		return 1;
	}
	struct sl_conf *conf = sl_conf_load(path, err, sizeof(err));
	if (!conf) {
		fprintf(stderr, "%s\n", err);
		sl_upgrade_fail(&in, err);
		return 1;
	}
	if (test && sl_tls_attach(conf, err, sizeof(err))) {
		fprintf(stderr, "%s: %s\n", path, err);
		sl_conf_put(conf);
		return 1;
	}
	if (test) {
		printf("%s: configuration ok\n", path);
		sl_conf_put(conf);
		return 0;
	}
	int rc = sl_log_open(conf->log.error_log, conf->log.level);
	if (rc == -EACCES || rc == -EPERM) {
		/* a successor running as the dropped user, the file or its directory root's:
		 * the predecessor's open file is the same log */
		int lfd = sl_upgrade_take_log(&in, 0, conf->log.error_log);
		if (lfd >= 0) {
			sl_log_adopt(lfd, conf->log.error_log, conf->log.level);
			rc = 0;
		}
	}
	if (rc) {
		fprintf(stderr, "%s: cannot open error log %s: %s\n", path, conf->log.error_log,
			strerror(-rc));
		snprintf(err, sizeof(err), "cannot open error log %s: %s", conf->log.error_log,
			 strerror(-rc));
		sl_upgrade_fail(&in, err);
		sl_conf_put(conf);
		return 1;
	}

	struct sl_daemon d;
	memset(&d, 0, sizeof(d));
	d.ops = ops;
	d.handler = &sl_http1_handler;
	d.conf_path = path;
	d.start_unix = (int64_t)time(NULL);
	d.pin_lock_fd = -1;
	d.inherit = in.conn >= 0 ? &in : NULL;
	d.admin_takeover = d.inherit != NULL;
	sl_upgrade_set_origin(&d, argc, argv);
	/* workers: auto = the CPUs this process may run on, capped by its cgroup's quota */
	struct sl_cpu_budget cpus;
	sl_cpu_budget_read(&cpus, "", NULL);
	d.n_workers = conf->workers > 0 ? (unsigned int)conf->workers : sl_cpu_auto_workers(&cpus);
	if (d.n_workers > SL_MAX_WORKERS)
		d.n_workers = SL_MAX_WORKERS;
	d.nofile = raise_nofile();
	d.auto_max_conns = sl_worker_auto_max_conns(d.nofile, d.n_workers, conf->n_listeners);
	log_conn_cap(&d, conf);
	sl_log(SL_LOG_INFO,
	       "msg=\"workers\" workers=%u source=%s cpus_in_mask=%u cpu_quota=%u.%03u "
	       "quota_file=%s",
	       d.n_workers, conf->workers > 0 ? "config" : "auto", cpus.n_cpus,
	       cpus.quota_milli / 1000, cpus.quota_milli % 1000,
	       cpus.quota_from[0] ? cpus.quota_from : "-");
	d.alog_fd = sl_alog_open(conf->log.access_log);
	if (d.alog_fd == -EACCES || d.alog_fd == -EPERM) { /* as the error log above */
		int lfd = sl_upgrade_take_log(&in, 1, conf->log.access_log);
		if (lfd >= 0)
			d.alog_fd = lfd;
	}
	if (conf->log.access_log && strcmp(conf->log.access_log, "stdout"))
		d.alog_path = strdup(conf->log.access_log); /* reopened from there on SIGUSR1 */
	if (conf->log.access_log && d.alog_fd < 0) {
		fprintf(stderr, "%s: cannot open access log %s: %s\n", path, conf->log.access_log,
			strerror(-d.alog_fd));
		snprintf(err, sizeof(err), "cannot open access log %s: %s", conf->log.access_log,
			 strerror(-d.alog_fd));
		sl_upgrade_fail(&in, err);
		sl_conf_put(conf);
		return 1;
	}
	if (sl_resolver_register())
		sl_log(SL_LOG_WARN, "msg=\"admin API resolves no host names\" reason=\"no "
				    "service slot\"");
	if (sl_health_register(sl_connector_tls_ctx))
		sl_log(SL_LOG_WARN, "msg=\"no active health checks\" reason=\"no service slot\"");
	if (sl_lb_attach(conf, d.n_workers, err, sizeof(err)) ||
	    sl_tls_attach(conf, err, sizeof(err))) {
		fprintf(stderr, "%s: %s\n", path, err);
		sl_upgrade_fail(&in, err);
		sl_conf_put(conf);
		return 1;
	}
	if (sl_tls_tickets_register())
		sl_log(SL_LOG_WARN, "msg=\"no ticket key rotation\" reason=\"no service slot\"");
	atomic_store(&d.conf, conf);

	/* Signals go to the main thread only: workers inherit this mask. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGUSR2);
	sigaddset(&set, SIGCHLD);
	pthread_sigmask(SIG_BLOCK, &set, NULL); /* read through a signalfd by the main loop */
	signal(SIGPIPE, SIG_IGN);

	d.workers = calloc(d.n_workers, sizeof(*d.workers));
	if (!d.workers)
		return 1;
	size_t big = sl_worker_big_size(conf);
	int started = 0;
	rc = 0;
	for (unsigned int i = 0; i < d.n_workers; i++) {
		struct sl_worker *w = &d.workers[i];
		w->id = i;
		/* only CPUs of the affinity mask; unpinned workers run where the scheduler
		 * puts them (and steering has no own-CPU worker to prefer) */
		w->cpu = conf->bpf.workers_pin ? sl_cpu_for_worker(&cpus, i) : -1;
		w->d = &d;
		w->ctl_fd = -1;
		w->schedstat_fd = -1;
		w->alog.fd = d.alog_fd;
		w->st = &w->st_local;
		w->state = &w->state_local;
		sl_mem_init(&w->mem, big, 64); /* trimmed to a reserve when the worker is quiet */
		for (unsigned int k = 0; k < SL_MAX_LISTENERS; k++)
			w->lsn[k].fd = -1;
	}
	sl_pcache_zones(conf);
	for (unsigned int i = 0; i < d.n_workers; i++)
		sl_worker_publish(&d.workers[i], conf);
	char why[SL_CONF_ERR_MAX + 128];
	why[0] = 0;
	rc = claim_listeners(&d, conf, why, sizeof(why));
	if (!rc)
		take_inherited(&d, conf);
	for (unsigned int i = 0; i < d.n_workers && !rc; i++)
		rc = sl_worker_listen(&d.workers[i], conf);
	if (!rc)
		rc = check_groups(&d, conf, why, sizeof(why));
	if (!rc)
		rc = start_steering(&d, conf);
	if (!rc)
		rc = main_prepare(&d);
	/* no thread exists yet: the drop covers the whole process, and a failed one never
	 * leaves workers running as root */
	if (!rc)
		rc = sl_priv_drop(
		    conf,
		    d.steering ? (conf->bpf.pin_path ? conf->bpf.pin_path : SL_PIN_PATH_DEFAULT)
			       : NULL,
		    why, sizeof(why));
	if (!rc) {
		unsigned int sp_max, sp_idle;
		spool_limits(conf, &sp_max, &sp_idle);
		d.spool = sl_spool_new(65536, sp_max, sp_idle);
		struct sl_service keeper;
		if (d.spool) {
			sl_spool_keeper(d.spool, &keeper); /* starts with the other services */
			if (sl_service_add(&keeper)) {
				sl_log(SL_LOG_WARN, "msg=\"no shared connection pool\" reason=\"no "
						    "service slot for its keeper\"");
				sl_spool_free(d.spool);
				d.spool = NULL;
			}
		} else {
			sl_log(SL_LOG_WARN,
			       "msg=\"no shared connection pool\" reason=\"out of memory\"");
		}
	}
	for (unsigned int i = 0; i < d.n_workers && !rc; i++) {
		rc = sl_worker_start(&d.workers[i]);
		if (!rc)
			started++;
	}
	if (!rc && d.inherit)
		rc = take_over(&d, why, sizeof(why));
	if (rc) {
		if (!why[0])
			snprintf(why, sizeof(why), "%s", strerror(-rc));
		if (conf->log.error_log) /* stderr gets it below */
			sl_log(SL_LOG_ERROR, "msg=\"cannot start\" reason=\"%s\"", why);
		fprintf(stderr, "%s: cannot start: %s\n", argv[0], why);
		sl_upgrade_fail(&in, why);
		/* a successor whose workers ran may hold connections from the shared
		 * sockets: those finish */
		atomic_store(&d.stop, started == (int)d.n_workers && d.inherit ? 1 : 2);
		poke_all(&d);
	} else {
		char late[64] = "";
		if (!d.inherit && wait_workers_ready(&d, late, sizeof(late)))
			sl_log(SL_LOG_WARN, "msg=\"%s within 5 s; serving with the others\"", late);
		sl_log(SL_LOG_INFO, "msg=\"sluiced started\" version=%s workers=%u config=%s",
		       SL_VERSION, d.n_workers, path);
		sl_notify_ready(d.n_workers);
	}
	sl_upgrade_release(&in); /* sockets of the predecessor not taken: it closes its own */
	d.inherit = NULL;

	if (!rc) {
		rc = main_loop(&d, &set);
		if (rc) { /* the workers would never be told to stop otherwise */
			atomic_store(&d.stop, 2);
			poke_all(&d);
		}
	} else if (d.base) {
		sl_admin_stop(&d);
		event_base_free(d.base);
		d.base = NULL;
	}
	for (unsigned int i = 0; i < d.n_workers; i++) {
		if (i < (unsigned int)started)
			pthread_join(d.workers[i].thread, NULL);
		for (unsigned int k = 0; k < d.workers[i].n_lsn; k++)
			if (d.workers[i].lsn[k].fd >= 0)
				close(d.workers[i].lsn[k].fd);
		sl_worker_destroy(&d.workers[i]);
	}
	stop_steering(&d);
	if (d.pin_lock_fd >= 0)
		close(d.pin_lock_fd);
	sl_spool_free(d.spool);
	free(d.workers);
	sl_conf_put(atomic_load(&d.conf));
	sl_lb_registry_clear();
	if (d.alog_fd > 2)
		close(d.alog_fd);
	free(d.alog_path);
	if (!rc)
		sl_log(SL_LOG_INFO, "msg=\"sluiced stopped\"");
	return rc ? 1 : 0;
}
