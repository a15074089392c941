/* server/control.h over struct sl_daemon. */
#include <errno.h>
#include <stdatomic.h>
#include <string.h>

#include "bpf/steer.h"
#include "server/control.h"
#include "server/upgrade.h"
#include "server/worker.h"

struct event_base *sl_ctl_base(struct sl_daemon *d)
{
	return d->base;
}

const struct sl_conf *sl_ctl_conf(const struct sl_daemon *d)
{
	return atomic_load(&((struct sl_daemon *)d)->conf);
}

int sl_ctl_stopping(const struct sl_daemon *d)
{
	return atomic_load(&((struct sl_daemon *)d)->stop) != 0;
}

void sl_ctl_status(const struct sl_daemon *d, struct sl_ctl_status *out)
{
	out->conf_path = d->conf_path ? d->conf_path : "";
	out->workers = d->n_workers;
	out->reloads = d->reloads;
	out->reload_err = d->reload_err;
	out->reload_failures = d->reload_failures;
	out->last_reload_unix = d->last_reload_unix;
	out->last_reload_ok = d->last_reload_ok;
	out->start_unix = d->start_unix;
	sl_upgrade_status(d, &out->upgrade_state, &out->upgrade_pid, &out->upgrade_err);
}

int sl_ctl_upgrade(struct sl_daemon *d, const char *binary, char *why, size_t len)
{
	return sl_daemon_upgrade(d, binary, why, len);
}

int sl_ctl_admin_takeover(const struct sl_daemon *d)
{
	return d->admin_takeover;
}

int sl_ctl_handed_over(const struct sl_daemon *d)
{
	return d->handed_over;
}

int sl_ctl_take_admin_fd(struct sl_daemon *d, const struct sockaddr *addr, socklen_t len)
{
	if (!d->inherit || d->inherit->admin_fd < 0)
		return -1;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	if (getsockname(d->inherit->admin_fd, (struct sockaddr *)&ss, &sl) || sl != len ||
	    memcmp(&ss, addr, len))
		return -1; /* admin.listen changed: the file's address wins */
	int fd = d->inherit->admin_fd;
	d->inherit->admin_fd = -1;
	return fd;
}

int sl_ctl_take_admin_unix_fd(struct sl_daemon *d, const char *path)
{
	if (!d->inherit || d->inherit->admin_unix_fd < 0 ||
	    strcmp(d->inherit->admin_unix_path, path))
		return -1; /* admin.socket changed: the file's path wins */
	int fd = d->inherit->admin_unix_fd;
	d->inherit->admin_unix_fd = -1;
	return fd;
}

int sl_ctl_worker(const struct sl_daemon *d, unsigned int i, struct sl_ctl_worker *out)
{
	if (i >= d->n_workers)
		return -ENOENT;
	const struct sl_worker *w = &d->workers[i];
	out->id = w->id;
	out->cpu = w->cpu;
	out->state = __atomic_load_n(&w->state->state, __ATOMIC_RELAXED);
	out->conn_load = __atomic_load_n(&w->state->active, __ATOMIC_RELAXED) +
			 __atomic_load_n(&w->state->queued, __ATOMIC_RELAXED);
	out->busy_pm = __atomic_load_n(&w->state->busy_pm, __ATOMIC_RELAXED);
	out->st = w->st;
	out->lat_request = &w->lat_request;
	out->lat_upstream = &w->lat_upstream;
	return 0;
}

int sl_ctl_reload(struct sl_daemon *d)
{
	return sl_daemon_reload(d);
}

int sl_ctl_reopen_logs(struct sl_daemon *d, const char **why)
{
	int err = sl_daemon_reopen_logs(d);
	*why = d->reopen_err;
	return err;
}

int sl_ctl_stall_worker(struct sl_daemon *d, unsigned int i, unsigned int ms)
{
	if (i >= d->n_workers)
		return -ENOENT;
	atomic_store(&d->workers[i].stall_ms, ms);
	sl_worker_poke(&d->workers[i]);
	return 0;
}

int sl_ctl_burn_worker(struct sl_daemon *d, unsigned int i, unsigned int ms)
{
	if (i >= d->n_workers)
		return -ENOENT;
	atomic_store(&d->workers[i].burn_ms, ms);
	sl_worker_poke(&d->workers[i]);
	return 0;
}

int sl_ctl_steer_stats(struct sl_daemon *d, uint64_t *out)
{
	if (!d->steering)
		return -ENOENT;
	return sl_steer_read_stats((__u64 *)out);
}

void **sl_ctl_admin_slot(struct sl_daemon *d)
{
	return &d->admin;
}
