/* Transports: how a connection's bytes move. The session, the upstream pools and the
 * tunnel do all socket I/O through one of these; raw TCP is the first, TLS the next
 * (it reads while it writes, flattens iovecs into records, and tells a TLS record
 * that must be read apart from stray bytes on an idle pooled connection). */
#ifndef SL_TRANSPORT_H
#define SL_TRANSPORT_H

#include <errno.h>
#include <event2/event.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

struct sl_io;

struct sl_transport {
	const char *name;
	/* read/writev: like read(2)/writev(2): bytes, 0 on EOF (read), -1 with errno
	 * (EAGAIN when the loop must wait: see wants) */
	ssize_t (*read)(struct sl_io *io, void *buf, size_t len);
	ssize_t (*writev)(struct sl_io *io, const struct iovec *iov, int iovcnt);
	int (*shutdown_wr)(struct sl_io *io); /* half-close once pending bytes are out */
	void (*close)(struct sl_io *io);
	/* Events to wait for when the caller wants `events` (EV_READ, EV_WRITE): TLS adds
	 * EV_READ to a write blocked on a handshake record, and the reverse. */
	short (*wants)(const struct sl_io *io, short events);
	/* An idle pooled connection became readable, or is about to be reused: 0 while
	 * it is alive and quiet, -1 when it must be closed (EOF, error, stray bytes). */
	int (*idle_check)(struct sl_io *io);
	/* Nonzero when read() has bytes ready that the fd's readiness will not announce
	 * (TLS: records already taken off the socket): read again without waiting. */
	int (*pending)(const struct sl_io *io);
};

/* One connection's transport state. */
struct sl_io {
	int fd;
	const struct sl_transport *t;
	void *state; /* the transport's own (TLS: its session); raw TCP has none */
};

extern const struct sl_transport sl_transport_raw;

static inline void sl_io_init_raw(struct sl_io *io, int fd)
{
	io->fd = fd;
	io->t = &sl_transport_raw;
	io->state = NULL;
}

static inline ssize_t sl_io_read(struct sl_io *io, void *buf, size_t len)
{
	return io->t->read(io, buf, len);
}

static inline ssize_t sl_io_writev(struct sl_io *io, const struct iovec *iov, int n)
{
	return io->t->writev(io, iov, n);
}

static inline int sl_io_shutdown_wr(struct sl_io *io)
{
	return io->t->shutdown_wr(io);
}

static inline void sl_io_close(struct sl_io *io)
{
	if (io->fd >= 0)
		io->t->close(io);
	io->fd = -1;
}

static inline int sl_io_idle_check(struct sl_io *io)
{
	return io->t->idle_check(io);
}

static inline short sl_io_wants(const struct sl_io *io, short events)
{
	return io->t->wants(io, events);
}

static inline int sl_io_pending(const struct sl_io *io)
{
	return io->t->pending(io);
}

/* The one writev loop of both sides: write iov[0..n) once, retrying EINTR. 0 when all of
 * it went out, 1 when the socket is full (short write or EAGAIN: wait for EV_WRITE),
 * -errno on an error; *done = bytes written. */
static inline int sl_io_send(struct sl_io *io, const struct iovec *iov, int n, size_t *done)
{
	size_t total = 0;
	for (int i = 0; i < n; i++)
		total += iov[i].iov_len;
	*done = 0;
	for (;;) {
		ssize_t wr = sl_io_writev(io, iov, n);
		if (wr >= 0) {
			*done = (size_t)wr;
			return (size_t)wr < total;
		}
		if (errno == EINTR)
			continue;
		return errno == EAGAIN ? 1 : -errno;
	}
}

/* After sl_io_send: how much of a piece of len bytes the write took (pieces in iov
 * order), taken off *left. */
static inline size_t sl_iov_took(size_t *left, size_t len)
{
	size_t k = len < *left ? len : *left;
	*left -= k;
	return k;
}

/* The one event toggle of both sides: ev (persistent, no timeout) added or deleted as
 * want says, *on tracking it so nothing is asked of epoll twice. */
static inline void sl_ev_want(struct event *ev, uint8_t *on, int want)
{
	if (want && !*on)
		event_add(ev, NULL);
	else if (!want && *on)
		event_del(ev);
	*on = (uint8_t)!!want;
}

/* Socket helpers. */
/* A non-blocking, close-on-exec TCP socket with TCP_NODELAY; fd or -errno. */
int sl_net_tcp_socket(int family);
void sl_net_nodelay(int fd);

#endif
