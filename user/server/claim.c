/* One daemon per listener set: probe binds, the kernel's table of listening sockets
 * (/proc/net/tcp, tcp6) and the owner of a socket or a lock (see claim.h). */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "server/claim.h"

#define TCP_LISTEN 0x0A

static void read_comm(pid_t pid, char *buf, size_t len)
{
	char p[64];
	buf[0] = 0;
	snprintf(p, sizeof(p), "/proc/%d/comm", (int)pid);
	FILE *f = fopen(p, "re");
	if (!f)
		return;
	if (fgets(buf, (int)len, f))
		buf[strcspn(buf, "\n")] = 0;
	fclose(f);
}

/* The process holding socket inode ino open (the first found), 0 if none visible. */
static pid_t socket_pid(unsigned long ino)
{
	char want[48], p[600], link[64];
	snprintf(want, sizeof(want), "socket:[%lu]", ino);
	DIR *proc = opendir("/proc");
	if (!proc)
		return 0;
	pid_t found = 0;
	struct dirent *e;
	while (!found && (e = readdir(proc))) {
		if (!isdigit((unsigned char)e->d_name[0]))
			continue;
		snprintf(p, sizeof(p), "/proc/%s/fd", e->d_name);
		DIR *fds = opendir(p);
		if (!fds)
			continue;
		struct dirent *f;
		while ((f = readdir(fds))) {
			if (f->d_name[0] == '.')
				continue;
			snprintf(p, sizeof(p), "/proc/%s/fd/%s", e->d_name, f->d_name);
			ssize_t n = readlink(p, link, sizeof(link) - 1);
			if (n <= 0)
				continue;
			link[n] = 0;
			if (!strcmp(link, want)) {
				found = (pid_t)atoi(e->d_name);
				break;
			}
		}
		closedir(fds);
	}
	closedir(proc);
	return found;
}

/* One row of /proc/net/tcp{,6}: local address in network byte order, port, state, inode. */
struct row {
	int family;
	unsigned char addr[16];
	unsigned int port, state;
	unsigned long ino;
};

static int parse_hex_words(const char *s, size_t words, unsigned char *out)
{
	for (size_t i = 0; i < words; i++) {
		char w[9];
		memcpy(w, s + i * 8, 8);
		w[8] = 0;
		char *end;
		unsigned long v = strtoul(w, &end, 16);
		if (*end)
			return -1;
		uint32_t u = (uint32_t)v; /* the kernel prints each word in host order */
		memcpy(out + i * 4, &u, 4);
	}
	return 0;
}

static int parse_row(const char *line, int family, struct row *r)
{
	char local[64], remote[64];
	unsigned int st;
	unsigned long ino;
	/* sl local rem st tx:rx tr:when retrnsmt uid timeout inode */
	if (sscanf(line, " %*s %63s %63s %x %*s %*s %*s %*s %*s %lu", local, remote, &st, &ino) !=
	    4)
		return -1;
	char *colon = strchr(local, ':');
	size_t words = family == AF_INET ? 1 : 4;
	if (!colon || (size_t)(colon - local) != words * 8)
		return -1;
	memset(r, 0, sizeof(*r));
	r->family = family;
	if (parse_hex_words(local, words, r->addr))
		return -1;
	r->port = (unsigned int)strtoul(colon + 1, NULL, 16);
	r->state = st;
	r->ino = ino;
	return 0;
}

static void sa_parts(const struct sockaddr *sa, int *family, const unsigned char **addr,
		     unsigned int *port)
{
	*family = sa->sa_family;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)sa;
		*addr = (const unsigned char *)&in->sin_addr;
		*port = ntohs(in->sin_port);
	} else {
		const struct sockaddr_in6 *in6 = (const void *)sa;
		*addr = (const unsigned char *)&in6->sin6_addr;
		*port = ntohs(in6->sin6_port);
	}
}

static int all_zero(const unsigned char *a, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (a[i])
			return 0;
	return 1;
}

/* Call fn for every listening socket on port in both tables; stops when fn returns
 * non-zero and returns that. -errno when neither table can be read. */
static int each_listener(unsigned int port, int (*fn)(const struct row *, void *), void *arg)
{
	static const struct {
		const char *path;
		int family;
	} tabs[] = {{"/proc/net/tcp", AF_INET}, {"/proc/net/tcp6", AF_INET6}};
	int opened = 0, err = -ENOENT;
	for (size_t t = 0; t < 2; t++) {
		FILE *f = fopen(tabs[t].path, "re");
		if (!f) {
			err = -errno;
			continue;
		}
		opened++;
		char line[512];
		int rc = 0;
		if (!fgets(line, sizeof(line), f)) { /* header */
			fclose(f);
			continue;
		}
		while (!rc && fgets(line, sizeof(line), f)) {
			struct row r;
			if (parse_row(line, tabs[t].family, &r) || r.state != TCP_LISTEN ||
			    r.port != port)
				continue;
			rc = fn(&r, arg);
		}
		fclose(f);
		if (rc)
			return rc;
	}
	return opened ? 0 : err;
}

struct match {
	int family;
	const unsigned char *addr;
	int exact;
	const int *mine;
	size_t n_mine;
	unsigned long ino;
};

static int is_mine(const struct match *m, unsigned long ino)
{
	for (size_t i = 0; i < m->n_mine; i++) {
		struct stat st;
		if (!fstat(m->mine[i], &st) && (unsigned long)st.st_ino == ino)
			return 1;
	}
	return 0;
}

static int match_row(const struct row *r, void *arg)
{
	struct match *m = arg;
	size_t alen = m->family == AF_INET ? 4 : 16;
	size_t rlen = r->family == AF_INET ? 4 : 16;
	int hit;
	if (m->exact)
		hit = r->family == m->family && !memcmp(r->addr, m->addr, alen);
	else /* covers: equal, or either side a wildcard (a v6 wildcard may cover v4) */
		hit = (r->family == m->family &&
		       (!memcmp(r->addr, m->addr, alen) || all_zero(m->addr, alen))) ||
		      all_zero(r->addr, rlen);
	if (!hit || is_mine(m, r->ino))
		return 0;
	m->ino = r->ino;
	return 1;
}

static void fill_owner(unsigned long ino, struct sl_claim_owner *o)
{
	o->pid = socket_pid(ino);
	o->comm[0] = 0;
	if (o->pid)
		read_comm(o->pid, o->comm, sizeof(o->comm));
}

int sl_claim_probe(const struct sockaddr *sa, socklen_t len, struct sl_claim_owner *owner)
{
	int one = 1;
	memset(owner, 0, sizeof(*owner));
	int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* SO_REUSEADDR as the real sockets have: connections left from an earlier run
	 * (TIME_WAIT, established) do not count, only a listener does */
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (sa->sa_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	int err = bind(fd, sa, len) ? -errno : 0;
	close(fd);
	if (err != -EADDRINUSE)
		return err;
	struct match m = {0};
	unsigned int port;
	sa_parts(sa, &m.family, &m.addr, &port);
	if (each_listener(port, match_row, &m) == 1)
		fill_owner(m.ino, owner);
	return -EADDRINUSE;
}

int sl_claim_foreign(const struct sockaddr *sa, socklen_t len, const int *mine, size_t n,
		     struct sl_claim_owner *owner)
{
	memset(owner, 0, sizeof(*owner));
	struct match m = {.exact = 1, .mine = mine, .n_mine = n};
	unsigned int port;
	sa_parts(sa, &m.family, &m.addr, &port);
	int r = each_listener(port, match_row, &m);
	if (r == 1)
		fill_owner(m.ino, owner);
	return r;
}

/* The pid holding a flock on dev:ino, from /proc/locks. */
static pid_t lock_holder(dev_t dev, ino_t ino)
{
	FILE *f = fopen("/proc/locks", "re");
	if (!f)
		return 0;
	char line[256], want[64];
	snprintf(want, sizeof(want), "%02x:%02x:%lu", major(dev), minor(dev), (unsigned long)ino);
	pid_t pid = 0;
	while (!pid && fgets(line, sizeof(line), f)) {
		char kind[16], where[64];
		int p;
		/* "1: FLOCK  ADVISORY  WRITE 1234 00:28:56401 0 EOF"; "->" marks waiters */
		if (strstr(line, "->") ||
		    sscanf(line, "%*s %15s %*s %*s %d %63s", kind, &p, where) != 3)
			continue;
		if (!strcmp(kind, "FLOCK") && !strcmp(where, want))
			pid = (pid_t)p;
	}
	fclose(f);
	return pid;
}

int sl_claim_lock_dir(const char *dir, struct sl_claim_owner *owner)
{
	memset(owner, 0, sizeof(*owner));
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (!flock(fd, LOCK_EX | LOCK_NB))
		return fd;
	int err = -errno;
	struct stat st;
	if (err == -EWOULDBLOCK && !fstat(fd, &st)) {
		owner->pid = lock_holder(st.st_dev, st.st_ino);
		if (owner->pid)
			read_comm(owner->pid, owner->comm, sizeof(owner->comm));
	}
	close(fd);
	return err;
}

void sl_claim_describe(const struct sl_claim_owner *o, char *buf, size_t len)
{
	if (!o->pid)
		snprintf(buf, len, "another process (not visible from here)");
	else if (!strcmp(o->comm, "sluiced"))
		snprintf(buf, len, "sluiced pid %d", (int)o->pid);
	else
		snprintf(buf, len, "pid %d (%s)", (int)o->pid, o->comm[0] ? o->comm : "?");
}
