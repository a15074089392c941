/* Zero-downtime binary upgrade: both ends of the hand-over (see upgrade.h). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>

#include "bpf/steer.h"
#include "config/config.h"
#include "core/clock.h"
#include "core/log.h"
#include "server/notify.h"
#include "server/upgrade.h"
#include "server/worker.h"

extern char **environ;

#define MAGIC 0x534c5550u /* "SLUP" */
#define VERSION 1u
#define FDS_PER_MSG 250	  /* under the kernel's SCM_MAX_FD (253) */

enum {
	MSG_HELLO = 1, /* successor: its pid; predecessor answers with the rest */
	MSG_LISTENER,  /* fds [first, first + count) of one listener's total */
	MSG_LOCK,      /* the pin-directory lock (one fd) and the saved sysctl */
	MSG_ADMIN,     /* the admin API's TCP listening socket (one fd) */
	MSG_END,       /* n listeners sent */
	MSG_READY,     /* successor: workers run, steering attached */
	MSG_ERR,       /* successor: gives up, text says why */
	MSG_ACK,       /* predecessor: it drains from now on */
	MSG_ADMIN_UNIX, /* the admin API's Unix listening socket (one fd), text: its path */
	MSG_LOG,	/* slot 0 the error log, 1 the access log (one fd), text: its path */
};

struct msg {
	uint32_t magic, version, type;
	int32_t pid;
	uint32_t slot; /* MSG_LISTENER: the predecessor's slot (its socket array's index) */
	uint32_t first, count, total;
	int32_t migrate_saved;
	uint32_t addrlen;
	struct sockaddr_storage addr;
	char text[512];
};

/* The predecessor's side of one upgrade. */
struct up {
	pid_t child;
	int lfd, conn;
	struct event *lev, *cev;
	uint64_t deadline_ms;
	char name[64]; /* abstract socket name, without the leading NUL */
};

struct origin {
	char *exe;
	char **argv;
	int state;
	pid_t pid; /* the last successor */
	char err[512];
	struct up *up;
};

static struct origin origin;

static uint64_t now_ms(void)
{
	return sl_mono_ns() / 1000000;
}

static ssize_t send_msg(int fd, struct msg *m, const int *fds, unsigned int nfds)
{
	m->magic = MAGIC;
	m->version = VERSION;
	struct iovec iov = {.iov_base = m, .iov_len = sizeof(*m)};
	union {
		char buf[CMSG_SPACE(sizeof(int) * FDS_PER_MSG)];
		struct cmsghdr align;
	} u;
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	if (nfds) {
		memset(&u, 0, sizeof(u));
		mh.msg_control = u.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
	}
	ssize_t r;
	do
		r = sendmsg(fd, &mh, MSG_NOSIGNAL);
	while (r < 0 && errno == EINTR);
	return r;
}

/* One message; fds received go to fds[0..*nfds) (at most max; any beyond are closed, as
 * are all of them when fds is NULL). 1 got one, 0 EOF, -errno. */
static int recv_msg(int fd, struct msg *m, int *fds, unsigned int max, unsigned int *nfds)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * FDS_PER_MSG)];
		struct cmsghdr align;
	} u;
	struct iovec iov = {.iov_base = m, .iov_len = sizeof(*m)};
	struct msghdr mh = {
	    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf)};
	ssize_t r;
	do
		r = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
	while (r < 0 && errno == EINTR);
	if (nfds)
		*nfds = 0;
	if (r < 0)
		return -errno;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		unsigned int n = (unsigned int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		int *got = (int *)(void *)CMSG_DATA(c);
		for (unsigned int i = 0; i < n; i++) {
			if (fds && nfds && *nfds < max)
				fds[(*nfds)++] = got[i];
			else
				close(got[i]);
		}
	}
	if (r == 0)
		return 0;
	if ((size_t)r != sizeof(*m) || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) ||
	    m->magic != MAGIC || m->version != VERSION) {
		for (unsigned int i = 0; fds && nfds && i < *nfds; i++)
			close(fds[i]);
		if (nfds)
			*nfds = 0;
		return -EPROTO;
	}
	m->text[sizeof(m->text) - 1] = 0;
	return 1;
}

static int peer_cred(int fd, struct ucred *uc)
{
	socklen_t len = sizeof(*uc);
	return getsockopt(fd, SOL_SOCKET, SO_PEERCRED, uc, &len) ? -errno : 0;
}

/* ================= predecessor ================= */

void sl_upgrade_set_origin(struct sl_daemon *d, int argc, char **argv)
{
	(void)d;
	(void)argc;
	origin.argv = argv;
	char buf[4096];
	ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
	if (n <= 0)
		return;
	buf[n] = 0;
	/* a binary replaced on disk since (the point of upgrading) reads "PATH (deleted)":
	 * the new one is at PATH */
	static const char del[] = " (deleted)";
	size_t l = strlen(buf);
	if (l > sizeof(del) - 1 && !strcmp(buf + l - (sizeof(del) - 1), del))
		buf[l - (sizeof(del) - 1)] = 0;
	free(origin.exe);
	origin.exe = strdup(buf);
}

void sl_upgrade_status(const struct sl_daemon *d, int *state, int *pid, const char **err)
{
	(void)d;
	*state = origin.state;
	*pid = (int)origin.pid;
	*err = origin.err;
}

static void up_free(struct up *u)
{
	if (!u)
		return;
	if (u->lev)
		event_free(u->lev);
	if (u->cev)
		event_free(u->cev);
	if (u->lfd >= 0)
		close(u->lfd);
	if (u->conn >= 0)
		close(u->conn);
	free(u);
}

/* Steering again from this daemon's program: a successor may have attached its own to
 * the groups before it failed, and a dead daemon's program must not steer them. */
static void reattach(struct sl_daemon *d)
{
	if (!d->steering)
		return;
	const struct sl_conf *c = atomic_load(&d->conf);
	unsigned int slots[SL_MAX_LISTENERS], n = 0, nw = d->n_workers;
	int *fds = calloc((size_t)SL_MAX_LISTENERS * nw, sizeof(*fds));
	if (!fds)
		return;
	for (unsigned int s = 0; s < SL_MAX_LISTENERS && s < d->workers[0].n_lsn; s++) {
		if (c->slot_index[s] < 0)
			continue;
		int ok = 1;
		for (unsigned int w = 0; w < nw; w++) {
			fds[n * nw + w] = d->workers[w].lsn[s].fd;
			ok &= fds[n * nw + w] >= 0;
		}
		if (ok)
			slots[n++] = s;
	}
	int err = sl_steer_reattach(slots, n, fds);
	free(fds);
	if (err)
		sl_log(SL_LOG_ERROR, "msg=\"cannot attach the steering program again\" err=\"%s\"",
		       strerror(-err));
}

static void up_failed(struct sl_daemon *d, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void up_failed(struct sl_daemon *d, const char *fmt, ...)
{
	struct up *u = origin.up;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(origin.err, sizeof(origin.err), fmt, ap);
	va_end(ap);
	origin.state = SL_UPGRADE_FAILED;
	/* a successor that is still there must not serve beside us: it may hold our
	 * sockets and have its program attached */
	if (u && u->child > 0 && kill(u->child, 0) == 0)
		kill(u->child, SIGKILL);
	reattach(d);
	sl_log(SL_LOG_ERROR,
	       "msg=\"upgrade failed, this daemon keeps serving\" successor=%d reason=\"%s\"",
	       (int)origin.pid, origin.err);
	origin.up = NULL;
	up_free(u);
}

/* Everything the successor needs: each listener's sockets (all workers'), the lock. */
static int send_all(struct sl_daemon *d, int fd)
{
	const struct sl_conf *c = atomic_load(&d->conf);
	struct msg m;
	int fds[FDS_PER_MSG];
	unsigned int sent = 0;
	for (unsigned int s = 0; s < SL_MAX_LISTENERS; s++) {
		int li = c->slot_index[s];
		if (li < 0)
			continue;
		const struct sl_conf_listener *l = &c->listeners[li];
		unsigned int total = d->n_workers;
		for (unsigned int first = 0; first < total; first += FDS_PER_MSG) {
			unsigned int n = total - first < FDS_PER_MSG ? total - first : FDS_PER_MSG;
			memset(&m, 0, sizeof(m));
			m.type = MSG_LISTENER;
			m.slot = s;
			m.first = first;
			m.count = n;
			m.total = total;
			m.addrlen = (uint32_t)l->addrlen;
			memcpy(&m.addr, &l->addr, l->addrlen);
			snprintf(m.text, sizeof(m.text), "%s", l->address);
			for (unsigned int k = 0; k < n; k++) {
				fds[k] = d->workers[first + k].lsn[s].fd;
				if (fds[k] < 0)
					return -EBADF; /* stopping */
			}
			if (send_msg(fd, &m, fds, n) < 0)
				return -errno;
		}
		sent++;
	}
	memset(&m, 0, sizeof(m));
	m.type = MSG_LOCK;
	m.migrate_saved = sl_steer_migrate_saved();
	int lock = d->pin_lock_fd;
	if (send_msg(fd, &m, &lock, lock >= 0 ? 1 : 0) < 0)
		return -errno;
	int afd = sl_daemon_admin_fd(d);
	if (afd >= 0) {
		memset(&m, 0, sizeof(m));
		m.type = MSG_ADMIN;
		if (send_msg(fd, &m, &afd, 1) < 0)
			return -errno;
	}
	/* the admin socket and the logs were made before the drop, maybe in root's
	 * directories: a successor running as the user could not make them again */
	memset(&m, 0, sizeof(m));
	int ufd = sl_daemon_admin_unix_fd(d, m.text, sizeof(m.text));
	if (ufd >= 0) {
		m.type = MSG_ADMIN_UNIX;
		if (send_msg(fd, &m, &ufd, 1) < 0)
			return -errno;
	}
	for (unsigned int which = 0; which < 2; which++) {
		const char *path = NULL;
		int lfd = which ? d->alog_fd : sl_log_file_fd(&path);
		if (which)
			path = d->alog_path;
		if (lfd <= 2 || !path || strlen(path) >= sizeof(m.text))
			continue;
		memset(&m, 0, sizeof(m));
		m.type = MSG_LOG;
		m.slot = which;
		snprintf(m.text, sizeof(m.text), "%s", path);
		if (send_msg(fd, &m, &lfd, 1) < 0)
			return -errno;
	}
	memset(&m, 0, sizeof(m));
	m.type = MSG_END;
	m.count = sent;
	if (send_msg(fd, &m, NULL, 0) < 0)
		return -errno;
	return 0;
}

static void on_conn(evutil_socket_t fd, short what, void *arg)
{
	struct sl_daemon *d = arg;
	struct up *u = origin.up;
	struct msg m;
	for (;;) {
		int r = recv_msg(fd, &m, NULL, 0, NULL);
		if (r == -EAGAIN || r == -EWOULDBLOCK)
			return;
		if (r == 0) {
			up_failed(d, "successor pid %d closed the upgrade socket before it was ready",
				  (int)u->child);
			return;
		}
		if (r < 0) {
			up_failed(d, "upgrade socket: %s", strerror(-r));
			return;
		}
		switch (m.type) {
		case MSG_HELLO: {
			int err = send_all(d, fd);
			if (err) {
				up_failed(d, "cannot send the listening sockets: %s", strerror(-err));
				return;
			}
			break;
		}
		case MSG_ERR:
			up_failed(d, "successor pid %d: %s", (int)u->child, m.text);
			return;
		case MSG_READY: {
			/* the service manager follows the successor from now on: before the
			 * answer, so the successor's READY=1 comes from the main pid */
			sl_notify_successor((int)u->child);
			struct msg ack;
			memset(&ack, 0, sizeof(ack));
			ack.type = MSG_ACK;
			ack.pid = (int32_t)getpid();
			if (send_msg(fd, &ack, NULL, 0) < 0) {
				int e = errno;
				sl_notify_mainpid("serving, upgrade failed");
				up_failed(d, "cannot answer the successor: %s", strerror(e));
				return;
			}
			origin.state = SL_UPGRADE_DONE;
			origin.err[0] = 0;
			sl_log(SL_LOG_INFO,
			       "msg=\"upgrade: successor ready, draining\" successor=%d grace_ms=%u",
			       (int)u->child, atomic_load(&d->conf)->shutdown_grace);
			origin.up = NULL;
			up_free(u);
			sl_daemon_handed_over(d);
			return;
		}
		default:
			up_failed(d, "upgrade socket: unexpected message %u", m.type);
			return;
		}
	}
}

static void on_accept(evutil_socket_t fd, short what, void *arg)
{
	struct sl_daemon *d = arg;
	struct up *u = origin.up;
	for (;;) {
		int c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (c < 0)
			return;
		struct ucred uc;
		int err = peer_cred(c, &uc);
		/* the name is visible in /proc/net/unix: anyone may connect, only our own
		 * child gets the sockets */
		if (err || uc.pid != u->child || uc.uid != geteuid()) {
			sl_log(SL_LOG_WARN,
			       "msg=\"upgrade socket: refused a peer that is not the successor\" "
			       "peer_pid=%d peer_uid=%d successor=%d",
			       err ? -1 : (int)uc.pid, err ? -1 : (int)uc.uid, (int)u->child);
			close(c);
			continue;
		}
		u->conn = c;
		u->cev = event_new(d->base, c, EV_READ | EV_PERSIST, on_conn, d);
		if (!u->cev || event_add(u->cev, NULL)) {
			up_failed(d, "out of memory");
			return;
		}
		/* one successor, one connection: nobody else gets in from now on */
		event_free(u->lev);
		u->lev = NULL;
		close(u->lfd);
		u->lfd = -1;
		return;
	}
}

/* Only root or this user may write st (a directory: or it is sticky, so nobody else
 * can rename or remove what root or this user put in it). */
static int trusted(const struct stat *st, int dir)
{
	if (st->st_uid != 0 && st->st_uid != geteuid())
		return 0;
	if (!(st->st_mode & (S_IWGRP | S_IWOTH)))
		return 1;
	return dir && (st->st_mode & S_ISVTX);
}

/* The daemon runs the new binary with its own privileges: it must be a file only root
 * or this user can have written, in directories nobody else can change (else another
 * file could be renamed over it between this check and the exec). real gets the path
 * with every symbolic link resolved: that file is the one started. */
static int check_binary(const char *exe, char *real, char *why, size_t len)
{
	struct stat st;
	if (exe[0] != '/') {
		snprintf(why, len, "the binary must be an absolute path: %s", exe);
		return -EINVAL;
	}
	if (!realpath(exe, real)) {
		int err = -errno;
		snprintf(why, len, "cannot run %s: %s", exe, strerror(-err));
		return err;
	}
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s", real);
	for (char *slash = strrchr(dir, '/'); slash; slash = strrchr(dir, '/')) {
		slash[slash == dir ? 1 : 0] = 0; /* the parent; "/" last */
		struct stat ds;
		if (stat(dir, &ds) || !trusted(&ds, 1)) {
			snprintf(why, len,
				 "refusing to run %s: directory %s is writable by group or others, "
				 "or owned by another user",
				 real, dir);
			return -EPERM;
		}
		if (slash == dir)
			break;
	}
	exe = real;
	if (stat(exe, &st) || access(exe, X_OK)) {
		int err = -errno;
		snprintf(why, len, "cannot run %s: %s", exe, strerror(-err));
		return err;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(why, len, "cannot run %s: not a regular file", exe);
		return -EINVAL;
	}
	if (!trusted(&st, 0)) {
		snprintf(why, len,
			 "refusing to run %s: writable by group or others, or owned by another "
			 "user (uid %d)",
			 exe, (int)st.st_uid);
		return -EPERM;
	}
	return 0;
}

int sl_upgrade_start(struct sl_daemon *d, const char *binary, char *why, size_t len)
{
	if (origin.up) {
		snprintf(why, len, "an upgrade is in progress (successor pid %d)",
			 (int)origin.up->child);
		return -EBUSY;
	}
	if (atomic_load(&d->stop) || origin.state == SL_UPGRADE_DONE) {
		snprintf(why, len, "this daemon is stopping");
		return -EBUSY;
	}
	const char *exe = binary ? binary : origin.exe;
	if (!exe || !origin.argv) {
		snprintf(why, len, "the path of this daemon's binary is unknown");
		return -ENOENT;
	}
	char real[PATH_MAX];
	int err = check_binary(exe, real, why, len);
	if (err) {
		origin.state = SL_UPGRADE_FAILED;
		snprintf(origin.err, sizeof(origin.err), "%s", why);
		return err;
	}
	struct up *u = calloc(1, sizeof(*u));
	if (!u) {
		snprintf(why, len, "out of memory");
		return -ENOMEM;
	}
	u->lfd = u->conn = -1;
	unsigned char rnd[8];
	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
		memset(rnd, 0, sizeof(rnd));
	snprintf(u->name, sizeof(u->name), "sluice-upgrade/%d/%02x%02x%02x%02x%02x%02x%02x%02x",
		 (int)getpid(), rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	size_t nl = strlen(u->name);
	memcpy(sa.sun_path + 1, u->name, nl); /* abstract: no file to leave behind */
	socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + nl);
	u->lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (u->lfd < 0 || bind(u->lfd, (struct sockaddr *)&sa, salen) || listen(u->lfd, 8)) {
		err = -errno;
		snprintf(why, len, "cannot create the upgrade socket: %s", strerror(-err));
		goto fail;
	}
	u->lev = event_new(d->base, u->lfd, EV_READ | EV_PERSIST, on_accept, d);
	if (!u->lev || event_add(u->lev, NULL)) {
		err = -ENOMEM;
		snprintf(why, len, "out of memory");
		goto fail;
	}
	/* the environment plus SLUICE_UPGRADE (an older value dropped) */
	size_t ne = 0;
	while (environ[ne])
		ne++;
	char **env = calloc(ne + 2, sizeof(*env));
	char var[128];
	snprintf(var, sizeof(var), "%s=%s", SL_UPGRADE_ENV, u->name);
	if (!env) {
		err = -ENOMEM;
		snprintf(why, len, "out of memory");
		goto fail;
	}
	size_t k = 0;
	for (size_t i = 0; i < ne; i++)
		if (strncmp(environ[i], SL_UPGRADE_ENV "=", sizeof(SL_UPGRADE_ENV)))
			env[k++] = environ[i];
	env[k++] = var;
	env[k] = NULL;
	/* the main thread blocks the signals it reads from a signalfd: the child starts
	 * with none blocked and default handlers, as from a shell */
	posix_spawnattr_t at;
	sigset_t none, all;
	sigemptyset(&none);
	sigfillset(&all);
	posix_spawnattr_init(&at);
	posix_spawnattr_setsigmask(&at, &none);
	posix_spawnattr_setsigdefault(&at, &all);
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	char *const *argv = origin.argv;
	int r = posix_spawn(&u->child, real, NULL, &at, argv, env);
	posix_spawnattr_destroy(&at);
	free(env);
	if (r) {
		err = -r;
		snprintf(why, len, "cannot start %s: %s", exe, strerror(r));
		goto fail;
	}
	u->deadline_ms = now_ms() + SL_UPGRADE_TIMEOUT_MS;
	origin.up = u;
	origin.state = SL_UPGRADE_RUNNING;
	origin.pid = u->child;
	origin.err[0] = 0;
	sl_log(SL_LOG_INFO, "msg=\"upgrade: successor started\" successor=%d binary=%s",
	       (int)u->child, exe);
	return 0;
fail:
	origin.state = SL_UPGRADE_FAILED;
	snprintf(origin.err, sizeof(origin.err), "%s", why);
	up_free(u);
	return err;
}

void sl_upgrade_reap(struct sl_daemon *d)
{
	int st;
	pid_t p;
	while ((p = waitpid(-1, &st, WNOHANG)) > 0) {
		if (!origin.up || p != origin.up->child)
			continue;
		origin.up->child = 0; /* gone: nothing to kill */
		if (WIFEXITED(st))
			up_failed(d, "successor pid %d exited with status %d before it was ready",
				  (int)p, WEXITSTATUS(st));
		else
			up_failed(d, "successor pid %d was killed by signal %d before it was ready",
				  (int)p, WIFSIGNALED(st) ? WTERMSIG(st) : 0);
	}
}

void sl_upgrade_tick(struct sl_daemon *d)
{
	if (origin.up && now_ms() > origin.up->deadline_ms)
		up_failed(d, "successor pid %d was not ready within %u ms", (int)origin.up->child,
			  SL_UPGRADE_TIMEOUT_MS);
}

int sl_upgrade_busy(const struct sl_daemon *d)
{
	(void)d;
	return origin.up != NULL;
}

void sl_upgrade_abort(struct sl_daemon *d)
{
	if (origin.up)
		up_failed(d, "this daemon is stopping");
}

/* ================= successor ================= */

struct sl_inherited_listener *sl_upgrade_find(struct sl_inherit *in, const struct sockaddr *sa,
					      socklen_t len)
{
	for (unsigned int i = 0; in->conn >= 0 && i < in->n; i++)
		if (in->l[i].addrlen == len && !memcmp(&in->l[i].addr, sa, len))
			return &in->l[i];
	return NULL;
}

/* Wait for fd readable up to ms: 1, 0 timeout, -errno. */
static int wait_readable(int fd, int ms)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	int r;
	do
		r = poll(&p, 1, ms);
	while (r < 0 && errno == EINTR);
	return r < 0 ? -errno : r;
}

static int inherit_recv(struct sl_inherit *in, char *why, size_t len)
{
	struct msg m;
	int fds[FDS_PER_MSG];
	unsigned int nfds;
	for (;;) {
		int r = wait_readable(in->conn, 10000);
		if (r <= 0) {
			snprintf(why, len, "upgrade socket: %s",
				 r ? strerror(-r) : "no answer from the predecessor");
			return r ? r : -ETIMEDOUT;
		}
		r = recv_msg(in->conn, &m, fds, FDS_PER_MSG, &nfds);
		if (r <= 0) {
			snprintf(why, len, "upgrade socket: %s",
				 r ? strerror(-r) : "the predecessor closed it");
			return r ? r : -EPIPE;
		}
		if (m.type == MSG_END)
			return 0;
		if (m.type == MSG_ADMIN) {
			if (nfds != 1 || in->admin_fd >= 0)
				goto bad;
			in->admin_fd = fds[0];
			continue;
		}
		if (m.type == MSG_ADMIN_UNIX) {
			if (nfds != 1 || in->admin_unix_fd >= 0 || !m.text[0])
				goto bad;
			in->admin_unix_fd = fds[0];
			snprintf(in->admin_unix_path, sizeof(in->admin_unix_path), "%s", m.text);
			continue;
		}
		if (m.type == MSG_LOG) {
			if (nfds != 1 || m.slot > 1 || in->log_fd[m.slot] >= 0 || !m.text[0])
				goto bad;
			in->log_fd[m.slot] = fds[0];
			snprintf(in->log_path[m.slot], sizeof(in->log_path[m.slot]), "%s", m.text);
			continue;
		}
		if (m.type == MSG_LOCK) {
			if (nfds > 1)
				goto bad;
			in->lock_fd = nfds ? fds[0] : -1;
			in->migrate_saved = m.migrate_saved;
			continue;
		}
		if (m.type != MSG_LISTENER || m.addrlen == 0 || m.addrlen > sizeof(m.addr) ||
		    m.total == 0 || m.total > SL_MAX_WORKERS || m.first >= m.total ||
		    m.slot >= SL_MAX_LISTENERS ||
		    m.count != nfds || m.count > m.total - m.first)
			goto bad;
		struct sl_inherited_listener *l =
		    sl_upgrade_find(in, (struct sockaddr *)&m.addr, (socklen_t)m.addrlen);
		if (!l) {
			if (in->n >= SL_MAX_LISTENERS)
				goto bad;
			l = &in->l[in->n++];
			memcpy(&l->addr, &m.addr, m.addrlen);
			l->addrlen = (socklen_t)m.addrlen;
			for (unsigned int k = 0; k < SL_MAX_WORKERS; k++)
				l->fds[k] = -1;
			l->n_fds = m.total;
			l->pred_slot = m.slot;
		}
		if (l->n_fds != m.total)
			goto bad;
		for (unsigned int k = 0; k < nfds; k++) {
			/* only listening TCP sockets are taken as listeners */
			int type = 0, acc = 0;
			socklen_t tl = sizeof(type), al = sizeof(acc);
			if (getsockopt(fds[k], SOL_SOCKET, SO_TYPE, &type, &tl) ||
			    getsockopt(fds[k], SOL_SOCKET, SO_ACCEPTCONN, &acc, &al) ||
			    type != SOCK_STREAM || !acc || l->fds[m.first + k] >= 0) {
				for (unsigned int j = k; j < nfds; j++)
					close(fds[j]);
				snprintf(why, len, "upgrade socket: %s is not a listening socket",
					 m.text);
				return -EPROTO;
			}
			l->fds[m.first + k] = fds[k];
		}
	}
bad:
	for (unsigned int k = 0; k < nfds; k++)
		close(fds[k]);
	snprintf(why, len, "upgrade socket: malformed message %u", m.type);
	return -EPROTO;
}

int sl_upgrade_inherit(struct sl_inherit *in, char *why, size_t len)
{
	memset(in, 0, sizeof(*in));
	in->conn = -1;
	in->lock_fd = -1;
	in->admin_fd = -1;
	in->admin_unix_fd = -1;
	in->log_fd[0] = in->log_fd[1] = -1;
	in->migrate_saved = -1;
	const char *name = getenv(SL_UPGRADE_ENV);
	if (!name)
		return 0;
	char nm[64];
	snprintf(nm, sizeof(nm), "%s", name);
	unsetenv(SL_UPGRADE_ENV); /* not for our own successor, nor any other child */
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	size_t nl = strlen(nm);
	if (nl == 0 || nl >= sizeof(sa.sun_path) - 1) {
		snprintf(why, len, "%s: bad socket name", SL_UPGRADE_ENV);
		return -EINVAL;
	}
	memcpy(sa.sun_path + 1, nm, nl);
	socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + nl);
	in->l = calloc(SL_MAX_LISTENERS, sizeof(*in->l));
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (!in->l || fd < 0) {
		snprintf(why, len, "upgrade socket: %s", fd < 0 ? strerror(errno) : "out of memory");
		if (fd >= 0)
			close(fd);
		return -ENOMEM;
	}
	if (connect(fd, (struct sockaddr *)&sa, salen)) {
		int err = -errno;
		snprintf(why, len, "cannot connect to the upgrade socket %s: %s", nm,
			 strerror(-err));
		close(fd);
		return err;
	}
	/* the sockets must come from the daemon that started us, as our own user: a name
	 * taken by another process (it is visible in /proc/net/unix) hands us nothing */
	struct ucred uc;
	int err = peer_cred(fd, &uc);
	if (err || uc.pid != getppid() || uc.uid != geteuid()) {
		snprintf(why, len,
			 "upgrade socket %s is held by pid %d uid %d, not by the daemon that "
			 "started this one (pid %d uid %d): refused",
			 nm, err ? -1 : (int)uc.pid, err ? -1 : (int)uc.uid, (int)getppid(),
			 (int)geteuid());
		close(fd);
		return -EPERM;
	}
	in->conn = fd;
	in->pred = uc.pid;
	struct msg m;
	memset(&m, 0, sizeof(m));
	m.type = MSG_HELLO;
	m.pid = (int32_t)getpid();
	if (send_msg(fd, &m, NULL, 0) < 0) {
		err = -errno;
		snprintf(why, len, "upgrade socket: %s", strerror(-err));
		sl_upgrade_release(in);
		return err;
	}
	err = inherit_recv(in, why, len);
	if (err) {
		sl_upgrade_release(in);
		return err;
	}
	sl_log(SL_LOG_INFO, "msg=\"upgrade: sockets received\" predecessor=%d listeners=%u",
	       (int)in->pred, in->n);
	return 0;
}

void sl_upgrade_fail(struct sl_inherit *in, const char *why)
{
	if (in->conn < 0 || in->ready)
		return;
	struct msg m;
	memset(&m, 0, sizeof(m));
	m.type = MSG_ERR;
	snprintf(m.text, sizeof(m.text), "%s", why);
	send_msg(in->conn, &m, NULL, 0);
}

int sl_upgrade_ready(struct sl_inherit *in, char *why, size_t len)
{
	struct msg m;
	memset(&m, 0, sizeof(m));
	m.type = MSG_READY;
	m.pid = (int32_t)getpid();
	if (send_msg(in->conn, &m, NULL, 0) < 0) {
		snprintf(why, len, "cannot report ready: %s", strerror(errno));
		return -EPIPE;
	}
	const char *what = "no answer within 10 s";
	int r = wait_readable(in->conn, 10000);
	if (r > 0) {
		r = recv_msg(in->conn, &m, NULL, 0, NULL);
		what = r == 0 ? "it closed the socket" : "unexpected answer";
	}
	if (r <= 0 || m.type != MSG_ACK) {
		snprintf(why, len, "the predecessor pid %d did not take the hand-over (%s)",
			 (int)in->pred, r < 0 ? strerror(-r) : what);
		return -EPIPE;
	}
	in->ready = 1;
	return 0;
}

int sl_upgrade_take_log(struct sl_inherit *in, int which, const char *path)
{
	if (!path || which < 0 || which > 1 || in->log_fd[which] < 0 ||
	    strcmp(in->log_path[which], path))
		return -1;
	int fd = in->log_fd[which];
	in->log_fd[which] = -1;
	return fd;
}

void sl_upgrade_release(struct sl_inherit *in)
{
	for (unsigned int i = 0; in->l && i < in->n; i++)
		for (unsigned int k = 0; k < in->l[i].n_fds && k < SL_MAX_WORKERS; k++)
			if (in->l[i].fds[k] >= 0) {
				close(in->l[i].fds[k]);
				in->l[i].fds[k] = -1;
			}
	if (in->conn >= 0)
		close(in->conn);
	in->conn = -1;
	if (in->lock_fd >= 0) /* not steering: the lock is not ours to keep */
		close(in->lock_fd);
	in->lock_fd = -1;
	if (in->admin_fd >= 0) /* no admin.listen (or another one) in our file */
		close(in->admin_fd);
	in->admin_fd = -1;
	if (in->admin_unix_fd >= 0) /* another admin.socket in our file, or none */
		close(in->admin_unix_fd);
	in->admin_unix_fd = -1;
	for (unsigned int i = 0; i < 2; i++) {
		if (in->log_fd[i] >= 0) /* we could open the file ourselves, or log elsewhere */
			close(in->log_fd[i]);
		in->log_fd[i] = -1;
	}
	free(in->l);
	in->l = NULL;
	in->n = 0;
}
