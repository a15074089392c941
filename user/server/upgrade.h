/* Zero-downtime binary upgrade. The running daemon (the predecessor) starts the new
 * binary with SLUICE_UPGRADE naming an abstract Unix socket it listens on; the new
 * daemon (the successor) connects, and each side checks the other's peer credentials
 * (the successor must be the child the predecessor started, the predecessor its parent,
 * both the same uid). The predecessor sends its listening sockets (SCM_RIGHTS, as
 * HAProxy's `-x` / `expose-fd listeners` does) and its lock on the BPF pin directory;
 * the successor joins the reuseport groups with them, attaches its own steering program,
 * reports ready, and the predecessor answers and drains. Until that answer the
 * predecessor serves on: a successor that fails, says why, or dies is the end of the
 * upgrade, not of the service. */
#ifndef SL_UPGRADE_H
#define SL_UPGRADE_H

#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "sluice_common.h"

#define SL_UPGRADE_ENV "SLUICE_UPGRADE"
/* How long a successor has from start to ready before the predecessor gives up on it. */
#define SL_UPGRADE_TIMEOUT_MS 30000

struct sl_daemon;

/* ---- predecessor (main thread) ---- */

enum sl_upgrade_state {
	SL_UPGRADE_IDLE = 0,	 /* none yet */
	SL_UPGRADE_RUNNING = 1, /* successor started, not ready yet */
	SL_UPGRADE_DONE = 2,	 /* successor ready: this daemon drains */
	SL_UPGRADE_FAILED = 3,	 /* the last one failed (reason kept) */
};

/* Start the successor: binary (NULL = the path this daemon was started from) with this
 * daemon's arguments. 0 once it runs (the outcome comes later: sl_upgrade_status()), or
 * -EBUSY (one in progress, or stopping) / -errno with the reason in why. */
int sl_upgrade_start(struct sl_daemon *d, const char *binary, char *why, size_t len);
/* SIGCHLD: reap children; a successor gone before it was ready fails the upgrade. */
void sl_upgrade_reap(struct sl_daemon *d);
/* The main loop's tick: the ready deadline. */
void sl_upgrade_tick(struct sl_daemon *d);
/* Stop: a successor still starting is killed (it would be left without its sockets). */
void sl_upgrade_abort(struct sl_daemon *d);
/* Nonzero while a successor is starting (a reload waits: it could change the sockets
 * being handed over). */
int sl_upgrade_busy(const struct sl_daemon *d);
void sl_upgrade_status(const struct sl_daemon *d, int *state, int *pid, const char **err);
/* Remember where this daemon came from, for sl_upgrade_start() (sl_main, at start). */
void sl_upgrade_set_origin(struct sl_daemon *d, int argc, char **argv);

/* ---- successor ---- */

struct sl_inherited_listener {
	struct sockaddr_storage addr;
	socklen_t addrlen;
	unsigned int n_fds;
	unsigned int pred_slot;	 /* its slot in the predecessor (steering's listener id) */
	int fds[SL_MAX_WORKERS]; /* -1 once taken or closed */
	unsigned char taken[SL_MAX_WORKERS]; /* fds[k] went to a worker of this daemon */
};

struct sl_inherit {
	int conn; /* to the predecessor, -1 = not upgrading */
	pid_t pred;
	unsigned int n;
	struct sl_inherited_listener *l; /* [n] */
	int lock_fd;	   /* the predecessor's flock on the pin directory, or -1 */
	int admin_fd;	   /* its admin API's TCP listening socket, or -1 */
	int admin_unix_fd; /* its admin Unix socket (listening), or -1 */
	char admin_unix_path[512]; /* where that socket is */
	/* its error (0) and access (1) log files, open for appending, or -1: a successor
	 * running as the dropped user may be unable to open them (a root-owned file or log
	 * directory) and writes through these instead */
	int log_fd[2];
	char log_path[2][512];
	int migrate_saved; /* tcp_migrate_req before any sluiced set it, -1 = untouched */
	int ready;	   /* the predecessor acknowledged: it drains */
};

/* When SLUICE_UPGRADE is set: connect, check the peer, fetch the sockets and the lock.
 * 0 with in->conn = -1 when not upgrading; 0 with everything received; or -errno with
 * the reason in why (then exit: the predecessor keeps serving). */
int sl_upgrade_inherit(struct sl_inherit *in, char *why, size_t len);
/* The inherited entry for addr, or NULL. */
struct sl_inherited_listener *sl_upgrade_find(struct sl_inherit *in, const struct sockaddr *sa,
					      socklen_t len);
/* Tell the predecessor why this successor gives up (best effort). */
void sl_upgrade_fail(struct sl_inherit *in, const char *why);
/* Report ready and wait for the predecessor's answer. 0: it drains from now on; -errno
 * with why: it did not take the answer (it gave up on us, or died): stop. */
int sl_upgrade_ready(struct sl_inherit *in, char *why, size_t len);
/* The inherited log file for path (0 error log, 1 access log), now the caller's, or -1. */
int sl_upgrade_take_log(struct sl_inherit *in, int which, const char *path);
/* Close the connection and every inherited socket not taken. */
void sl_upgrade_release(struct sl_inherit *in);

#endif
