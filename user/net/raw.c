/* Raw TCP: the transport is the socket itself. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/transport.h"

static ssize_t raw_read(struct sl_io *io, void *buf, size_t len)
{
	return read(io->fd, buf, len);
}

static ssize_t raw_writev(struct sl_io *io, const struct iovec *iov, int n)
{
	return writev(io->fd, iov, n);
}

static int raw_shutdown_wr(struct sl_io *io)
{
	return shutdown(io->fd, SHUT_WR);
}

static void raw_close(struct sl_io *io)
{
	close(io->fd);
}

static short raw_wants(const struct sl_io *io, short events)
{
	return events;
}

static int raw_idle_check(struct sl_io *io)
{
	char b[1];
	ssize_t n = recv(io->fd, b, sizeof(b), MSG_PEEK | MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return 0;
	return -1; /* EOF, an error, or bytes nobody asked for */
}

static int raw_pending(const struct sl_io *io)
{
	return 0;
}

const struct sl_transport sl_transport_raw = {
    .name = "tcp",
    .read = raw_read,
    .writev = raw_writev,
    .shutdown_wr = raw_shutdown_wr,
    .close = raw_close,
    .wants = raw_wants,
    .idle_check = raw_idle_check,
    .pending = raw_pending,
};

int sl_net_tcp_socket(int family)
{
	int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	sl_net_nodelay(fd);
	return fd;
}

void sl_net_nodelay(int fd)
{
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}
