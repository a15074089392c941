/* The daemon as the admin API (and any other control surface) sees it: one narrow
 * interface, so admin/ never includes the daemon's or the workers' internals.
 * Everything here is called on the main thread, the one that applies reloads. */
#ifndef SL_CONTROL_H
#define SL_CONTROL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* How long accepting stays off after running out of fds or memory (workers and the
 * admin API alike), unless one of the worker's connections closes first. nginx waits
 * 500 ms; closing connections free fds sooner, and they end the pause at once. */
#define SL_ACCEPT_BACKOFF_MS 100

struct sl_daemon;
struct sl_conf;
struct sl_worker_stats;
struct sl_histo;
struct event_base;

/* The main thread's event loop (the admin servers run on it). */
struct event_base *sl_ctl_base(struct sl_daemon *d);

/* The current config snapshot. It is replaced only by sl_ctl_reload() on this same
 * thread, so it stays valid for the whole of one admin handler without a reference. */
const struct sl_conf *sl_ctl_conf(const struct sl_daemon *d);

/* Nonzero once a graceful or fast stop began. */
int sl_ctl_stopping(const struct sl_daemon *d);

struct sl_ctl_status {
	const char *conf_path; /* "" when none */
	unsigned int workers;
	unsigned int reloads;	/* applied since start */
	unsigned int reload_failures; /* rejected since start */
	int64_t last_reload_unix;     /* wall clock of the last reload attempt, 0 = none */
	int last_reload_ok;	      /* 1 when that attempt was applied */
	int64_t start_unix;	      /* wall clock when the daemon started */
	const char *reload_err; /* the last rejected reload's reason, "" when none */
	int upgrade_state;	/* SL_UPGRADE_* (server/upgrade.h) */
	int upgrade_pid;	/* the last successor started, 0 = none */
	const char *upgrade_err; /* why the last upgrade failed, "" */
};
void sl_ctl_status(const struct sl_daemon *d, struct sl_ctl_status *out);

/* Worker i (0 .. workers-1). The stats slot is the worker's mmaped worker_stats entry:
 * the worker writes it with plain stores, read it with relaxed loads. */
struct sl_ctl_worker {
	unsigned int id;
	int cpu;
	unsigned int state; /* SL_WORKER_* (sluice_common.h) */
	unsigned int conn_load; /* connections open, plus queued at its last beat */
	unsigned int busy_pm;	/* loop busy ratio at its last beat, per mille */
	const struct sl_worker_stats *st;
	const struct sl_histo *lat_request, *lat_upstream; /* core/histo.h; may be NULL */
};
/* 0, or -ENOENT when there is no worker i. */
int sl_ctl_worker(const struct sl_daemon *d, unsigned int i, struct sl_ctl_worker *out);

/* Re-read the config file and publish it. 0, or -errno with the reason in
 * sl_ctl_status().reload_err (the old config keeps serving). */
int sl_ctl_reload(struct sl_daemon *d);

/* Start a binary upgrade (SIGUSR2); binary NULL = the daemon's own path. 0 once the
 * new binary runs (sl_ctl_status() follows it), -EBUSY while one is in progress, or
 * -errno; why says what. */
int sl_ctl_upgrade(struct sl_daemon *d, const char *binary, char *why, size_t len);
/* Nonzero in an upgrade's successor: the admin socket file is its predecessor's, to be
 * replaced rather than left to a live daemon. */
int sl_ctl_admin_takeover(const struct sl_daemon *d);
/* Nonzero once this daemon handed over to a successor. */
int sl_ctl_handed_over(const struct sl_daemon *d);
/* Upgrade successor: the predecessor's admin TCP socket when it listens on addr (then it
 * is the caller's), else -1. */
int sl_ctl_take_admin_fd(struct sl_daemon *d, const struct sockaddr *addr, socklen_t len);
/* Upgrade successor: the predecessor's admin Unix socket when it serves path (then it is
 * the caller's), else -1. */
int sl_ctl_take_admin_unix_fd(struct sl_daemon *d, const char *path);

/* Reopen the error and access log files (SIGUSR1). 0, or -errno with the reason in
 * *why (the old files stay in use). */
int sl_ctl_reopen_logs(struct sl_daemon *d, const char **why);

/* Debug: make worker i's loop sleep for ms (test aid for stalled-worker rescue).
 * 0, or -ENOENT. */
int sl_ctl_stall_worker(struct sl_daemon *d, unsigned int i, unsigned int ms);

/* Debug: make worker i's loop spin on its CPU for ms, in short slices between which it
 * serves as usual (a busy worker, not a stalled one). 0, or -ENOENT. */
int sl_ctl_burn_worker(struct sl_daemon *d, unsigned int i, unsigned int ms);

/* Steering decisions by reason (out[SL_STEER_NR]); -ENOENT when steering is off. */
int sl_ctl_steer_stats(struct sl_daemon *d, uint64_t *out);

/* Where the admin API keeps its state between start and stop. */
void **sl_ctl_admin_slot(struct sl_daemon *d);

#endif
