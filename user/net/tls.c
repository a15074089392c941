/* TLS transport (see tls.h). OpenSSL reads the socket itself through a small BIO
 * (read-ahead: one read() takes every record the kernel has); what OpenSSL writes goes
 * into a buffer that this file sends with one send() per operation. Because that BIO
 * never blocks, SSL_read never asks to write: records OpenSSL produces while reading
 * (handshake flights, alerts, a KeyUpdate answer) are sent at once, and whatever the
 * socket does not take is sent ahead of the next write (wants() asks for EV_WRITE).
 *
 * The send buffer is the worker thread's scratch while a call runs; only ciphertext the
 * socket did not take is copied into memory the connection owns, so a connection whose
 * writes go through holds no output buffer at all. */
#include <errno.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/tls.h"

/* Ciphertext of one writev call (4 records and their overhead) fits the scratch; a
 * bigger handshake flight (a long certificate chain) moves to the heap. */
#define SCRATCH_CAP (SL_TLS_WRITE_MAX + 8192)
/* Ciphertext a connection may hold while its socket refuses it: one writev's records, a
 * handshake flight, and a few records written while reading. A peer that never reads
 * but keeps asking for answers (KeyUpdate, refused renegotiations) fails here instead
 * of growing the buffer without end. */
#define OB_MAX (4 * SCRATCH_CAP)
/* Socket bytes one read or idle check hands OpenSSL. SSL_read goes on past records that
 * are not data (KeyUpdate, NewSessionTicket) for as long as the socket has more: a peer
 * that keeps it full of them would hold the worker in one call. Past this budget the
 * BIO says "would block"; what is left in the socket is announced by the fd. */
#define READ_MAX SCRATCH_CAP

struct sl_tls {
	SSL *ssl;
	int fd;
	char *ob; /* ciphertext to send: the thread's scratch, or own memory (ob_own) */
	size_t ob_off, ob_len, ob_cap;
	uint8_t ob_own;
	uint8_t server;
	uint8_t rd_want_write; /* a handshake step in write() waits for EV_READ */
	uint8_t eof, fatal;    /* seen by a read that returned bytes: report next time */
	uint8_t rd_full;       /* the last read filled the caller's buffer */
	size_t rd_left;	       /* socket bytes a read() of ours may still take (see READ_MAX) */
	int saved_errno;
	int reason; /* OpenSSL reason code of the first failure (ERR_GET_REASON), or 0 */
	size_t inflight; /* plaintext bytes encrypted into ob, not reported yet */
	char why[160];
};

static __thread char scratch[SCRATCH_CAP];
static __thread char flat[SL_TLS_RECORD];

static BIO_METHOD *bio_meth;
static pthread_once_t bio_once = PTHREAD_ONCE_INIT;

/* ---- the output buffer ---- */

static int ob_append(struct sl_tls *t, const char *data, size_t n)
{
	if (!t->ob) {
		t->ob = scratch;
		t->ob_cap = sizeof(scratch);
		t->ob_own = 0;
		t->ob_off = t->ob_len = 0;
	}
	if (t->ob_len - t->ob_off + n > OB_MAX) {
		errno = ENOBUFS;
		return -1;
	}
	if (t->ob_own && t->ob_off && t->ob_len + n > t->ob_cap) {
		memmove(t->ob, t->ob + t->ob_off, t->ob_len - t->ob_off);
		t->ob_len -= t->ob_off;
		t->ob_off = 0;
	}
	if (t->ob_len + n > t->ob_cap) {
		size_t cap = t->ob_cap * 2;
		while (cap < t->ob_len + n)
			cap *= 2;
		char *nb = t->ob_own ? realloc(t->ob, cap) : malloc(cap);
		if (!nb)
			return -1;
		if (!t->ob_own)
			memcpy(nb, t->ob, t->ob_len);
		t->ob = nb;
		t->ob_cap = cap;
		t->ob_own = 1;
	}
	memcpy(t->ob + t->ob_len, data, n);
	t->ob_len += n;
	return 0;
}

static void ob_release(struct sl_tls *t)
{
	if (t->ob_own)
		free(t->ob);
	t->ob = NULL;
	t->ob_own = 0;
	t->ob_off = t->ob_len = t->ob_cap = 0;
}

/* Send the buffered ciphertext: 0 when all of it is out, 1 when the socket is full
 * (what is left moves out of the shared scratch), -1 with errno on a socket error. */
static int ob_flush(struct sl_tls *t)
{
	while (t->ob && t->ob_off < t->ob_len) {
		ssize_t n = send(t->fd, t->ob + t->ob_off, t->ob_len - t->ob_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			return -1;
		}
		t->ob_off += (size_t)n;
	}
	if (!t->ob || t->ob_off == t->ob_len) {
		ob_release(t);
		return 0;
	}
	if (!t->ob_own) {
		size_t left = t->ob_len - t->ob_off;
		char *nb = malloc(left);
		if (!nb) {
			errno = ENOMEM;
			return -1;
		}
		memcpy(nb, t->ob + t->ob_off, left);
		t->ob = nb;
		t->ob_own = 1;
		t->ob_cap = left;
		t->ob_off = 0;
		t->ob_len = left;
	}
	return 1;
}

/* ---- the BIO ---- */

static int bio_write(BIO *b, const char *data, int len)
{
	struct sl_tls *t = BIO_get_data(b);
	BIO_clear_retry_flags(b);
	if (len <= 0)
		return 0;
	if (ob_append(t, data, (size_t)len))
		return -1;
	return len;
}

static int bio_read(BIO *b, char *buf, int len)
{
	struct sl_tls *t = BIO_get_data(b);
	BIO_clear_retry_flags(b);
	if (!t->rd_left) {
		BIO_set_retry_read(b);
		return -1;
	}
	if ((size_t)len > t->rd_left)
		len = (int)t->rd_left;
	for (;;) {
		ssize_t n = read(t->fd, buf, (size_t)len);
		if (n > 0 && t->rd_left != SIZE_MAX)
			t->rd_left -= (size_t)n;
		if (n >= 0)
			return (int)n;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			BIO_set_retry_read(b);
		return -1;
	}
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	switch (cmd) {
	case BIO_CTRL_FLUSH:
		return 1;
	default:
		return 0;
	}
}

static int bio_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

static void bio_setup(void)
{
	bio_meth = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "sluice-sock");
	if (!bio_meth)
		return;
	BIO_meth_set_write(bio_meth, bio_write);
	BIO_meth_set_read(bio_meth, bio_read);
	BIO_meth_set_ctrl(bio_meth, bio_ctrl);
	BIO_meth_set_create(bio_meth, bio_create);
}

/* ---- errors ---- */

static void info_cb(const SSL *ssl, int where, int ret)
{
	if (!(where & SSL_CB_ALERT))
		return;
	struct sl_tls *t = SSL_get_app_data(ssl);
	if (!t || t->why[0])
		return;
	/* the first alert either way says most: "we refused" or "they refused" */
	char desc[64];
	snprintf(desc, sizeof(desc), "%s", SSL_alert_desc_string_long(ret));
	for (char *p = desc; *p; p++)
		if (*p == ' ')
			*p = '_';
	snprintf(t->why, sizeof(t->why), "tls_alert=%s alert_from=%s", desc,
		 (where & SSL_CB_WRITE) ? "us" : "peer");
}

/* Name the failure from the OpenSSL error queue (emptied: nothing leaks into the next
 * connection's diagnosis) unless an alert already did. */
static void note_error(struct sl_tls *t, int sslerr)
{
	unsigned long e = ERR_get_error();
	size_t n = strlen(t->why);
	if (e) {
		const char *r = ERR_reason_error_string(e);
		if (!t->reason)
			t->reason = ERR_GET_REASON(e);
		if (n < sizeof(t->why) - 1)
			snprintf(t->why + n, sizeof(t->why) - n, "%sreason=\"%s\"", n ? " " : "",
				 r ? r : "unknown");
	} else if (!n) {
		snprintf(t->why, sizeof(t->why), "reason=\"%s\"",
			 sslerr == SSL_ERROR_SYSCALL ? (errno ? strerror(errno) : "peer closed")
						     : "tls error");
	}
	ERR_clear_error();
}

static struct sl_tls *tls_of(const struct sl_io *io)
{
	return io->state;
}

/* ---- the transport ---- */

static ssize_t tls_read(struct sl_io *io, void *buf, size_t len)
{
	struct sl_tls *t = tls_of(io);
	size_t got = 0;
	if (t->fatal) {
		errno = t->saved_errno;
		return -1;
	}
	if (t->eof)
		return 0;
	t->rd_left = READ_MAX;
	while (got < len) {
		size_t n = 0;
		ERR_clear_error();
		if (SSL_read_ex(t->ssl, (char *)buf + got, len - got, &n)) {
			got += n;
			/* a record already taken off the socket: take it too; otherwise stop
			 * here (one more SSL_read would be one more read() for EAGAIN) */
			if (!SSL_has_pending(t->ssl))
				break;
			continue;
		}
		int e = SSL_get_error(t->ssl, 0);
		if (e == SSL_ERROR_WANT_READ)
			break;
		if (e == SSL_ERROR_ZERO_RETURN ||
		    (e == SSL_ERROR_SYSCALL && !ERR_peek_error() && errno == 0)) {
			/* close_notify, or the TCP stream ended without one: an end of stream
			 * like raw TCP's; HTTP framing tells a cut message */
			ERR_clear_error();
			t->eof = 1;
			break;
		}
		if (e == SSL_ERROR_SYSCALL && errno && errno != EPIPE) {
			t->saved_errno = errno;
		} else {
			t->saved_errno = EPROTO;
		}
		note_error(t, e);
		t->fatal = 1;
		break;
	}
	t->rd_left = SIZE_MAX;
	t->rd_full = got == len;
	/* what OpenSSL wrote meanwhile (handshake, alert, KeyUpdate answer) goes now */
	if (ob_flush(t) < 0 && !t->fatal) {
		t->saved_errno = errno;
		t->fatal = 1;
	}
	if (got)
		return (ssize_t)got;
	if (t->fatal) {
		errno = t->saved_errno;
		return -1;
	}
	if (t->eof)
		return 0;
	errno = EAGAIN;
	return -1;
}

static int write_fail(struct sl_tls *t, int e)
{
	if (e == SSL_ERROR_SYSCALL && errno && errno != EPROTO)
		t->saved_errno = errno;
	else
		t->saved_errno = EPIPE;
	note_error(t, e);
	t->fatal = 1;
	errno = t->saved_errno;
	return -1;
}

static ssize_t tls_writev(struct sl_io *io, const struct iovec *iov, int iovcnt)
{
	struct sl_tls *t = tls_of(io);
	size_t total = 0, done = 0, enc = 0;
	int i;
	if (t->fatal) {
		errno = t->saved_errno;
		return -1;
	}
	for (i = 0; i < iovcnt; i++)
		total += iov[i].iov_len;
	/* ciphertext from last time: the caller presents those bytes again first (a send
	 * error is named by errno, not by what the thread's error queue held before) */
	ERR_clear_error();
	int rc = ob_flush(t);
	if (rc < 0)
		return write_fail(t, SSL_ERROR_SYSCALL);
	if (t->inflight > total) {
		/* the caller broke the retry rule: its stream lost bytes we already sent */
		t->saved_errno = EINVAL;
		t->fatal = 1;
		errno = EINVAL;
		return -1;
	}
	if (rc > 0) {
		errno = EAGAIN;
		return -1;
	}
	done = t->inflight;
	t->inflight = 0;
	t->rd_want_write = 0;

	/* flatten from offset done: 16 KB records, straight from an iovec that holds a
	 * whole record, copied together from small ones */
	size_t skip = done;
	i = 0;
	while (i < iovcnt && skip >= iov[i].iov_len)
		skip -= iov[i++].iov_len;
	size_t off = skip;
	while (i < iovcnt && enc < SL_TLS_WRITE_MAX) {
		const char *src;
		size_t k, room = SL_TLS_WRITE_MAX - enc;
		if (room > SL_TLS_RECORD)
			room = SL_TLS_RECORD;
		if (iov[i].iov_len - off >= room) {
			src = (const char *)iov[i].iov_base + off;
			k = room;
			off += k;
		} else {
			k = 0;
			while (i < iovcnt && k < room) {
				size_t c = iov[i].iov_len - off;
				if (c > room - k)
					c = room - k;
				memcpy(flat + k, (const char *)iov[i].iov_base + off, c);
				k += c;
				off += c;
				if (off == iov[i].iov_len) {
					i++;
					off = 0;
				}
			}
			src = flat;
		}
		if (i < iovcnt && off == iov[i].iov_len) {
			i++;
			off = 0;
		}
		if (!k)
			continue;
		size_t w = 0;
		ERR_clear_error();
		if (!SSL_write_ex(t->ssl, src, k, &w)) {
			int e = SSL_get_error(t->ssl, 0);
			if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
				/* the handshake is not finished (client mode writing early):
				 * nothing of this record was taken */
				t->rd_want_write = e == SSL_ERROR_WANT_READ;
				break;
			}
			if (enc || done) {
				/* report what went out; the error comes with the next call */
				note_error(t, e);
				t->fatal = 1;
				t->saved_errno = EPIPE;
				break;
			}
			return write_fail(t, e);
		}
		enc += w;
	}
	rc = ob_flush(t);
	if (rc < 0) {
		if (!done)
			return write_fail(t, SSL_ERROR_SYSCALL);
		t->fatal = 1;
		t->saved_errno = errno;
		return (ssize_t)done;
	}
	if (rc > 0)
		t->inflight = enc; /* reported once the socket took all of it */
	else
		done += enc;
	if (done)
		return (ssize_t)done;
	if (iovcnt == 0 && rc == 0)
		return 0;
	errno = EAGAIN;
	return -1;
}

static int tls_shutdown_wr(struct sl_io *io)
{
	struct sl_tls *t = tls_of(io);
	if (!t->fatal && SSL_is_init_finished(t->ssl)) {
		/* once only: a second SSL_shutdown waits for the peer's close_notify and
		 * discards the application data it reads meanwhile */
		if (!(SSL_get_shutdown(t->ssl) & SSL_SENT_SHUTDOWN)) {
			ERR_clear_error();
			SSL_shutdown(t->ssl); /* close_notify into ob */
			ERR_clear_error();
		}
		if (ob_flush(t) > 0) {
			/* the socket is full: the alert and what is before it stay queued;
			 * a FIN now would cut them */
			return 0;
		}
	}
	return shutdown(t->fd, SHUT_WR);
}

static void tls_free(struct sl_tls *t)
{
	SSL_free(t->ssl);
	ob_release(t);
	free(t);
}

static void tls_close(struct sl_io *io)
{
	struct sl_tls *t = tls_of(io);
	if (!t->fatal && SSL_is_init_finished(t->ssl) && !(SSL_get_shutdown(t->ssl) & SSL_SENT_SHUTDOWN)) {
		/* close_notify, best effort: one send, never waited for */
		ERR_clear_error();
		SSL_shutdown(t->ssl);
		ob_flush(t);
	}
	ERR_clear_error();
	close(t->fd);
	tls_free(t);
	io->state = NULL;
}

static short tls_wants(const struct sl_io *io, short events)
{
	const struct sl_tls *t = tls_of(io);
	short r = 0;
	if (events & EV_READ)
		r |= EV_READ;
	if (events & EV_WRITE) /* a read may have finished that handshake meanwhile */
		r |= t->rd_want_write && !SSL_is_init_finished(t->ssl) ? EV_READ : EV_WRITE;
	if (t->ob && t->ob_off < t->ob_len)
		r |= EV_WRITE;
	if (!events && !SSL_is_init_finished(t->ssl) && !(r & EV_WRITE))
		r |= EV_READ; /* a handshake waits for the peer unless it has bytes to send */
	return r;
}

/* An idle connection: records that may come while nobody asked (TLS 1.3
 * NewSessionTicket, KeyUpdate) are read and processed; application data, an alert, a
 * close_notify or EOF mean the connection cannot be reused. */
static int tls_idle_check(struct sl_io *io)
{
	struct sl_tls *t = tls_of(io);
	char b[1];
	size_t n = 0;
	if (t->fatal || t->eof || t->inflight)
		return -1;
	ERR_clear_error();
	t->rd_left = READ_MAX;
	int got = SSL_read_ex(t->ssl, b, sizeof(b), &n);
	t->rd_left = SIZE_MAX;
	if (got)
		return -1; /* application bytes nobody asked for */
	int e = SSL_get_error(t->ssl, 0);
	ERR_clear_error();
	if (e != SSL_ERROR_WANT_READ || SSL_has_pending(t->ssl))
		return -1; /* a partial record: its rest would answer the next request */
	return ob_flush(t) < 0 ? -1 : 0; /* e.g. our KeyUpdate answer */
}

static int tls_pending(const struct sl_io *io)
{
	const struct sl_tls *t = tls_of(io);
	/* after a read that stopped on WANT_READ, what is buffered is at most the start of
	 * a record whose rest the socket will announce: no busy loop on it */
	return t->eof || t->fatal || SSL_pending(t->ssl) > 0 ||
	       (t->rd_full && SSL_has_pending(t->ssl));
}

const struct sl_transport sl_transport_tls = {
    .name = "tls",
    .read = tls_read,
    .writev = tls_writev,
    .shutdown_wr = tls_shutdown_wr,
    .close = tls_close,
    .wants = tls_wants,
    .idle_check = tls_idle_check,
    .pending = tls_pending,
};

int sl_tls_io_init(struct sl_io *io, int fd, SSL_CTX *ctx, int server)
{
	pthread_once(&bio_once, bio_setup);
	if (!bio_meth)
		return -ENOMEM;
	struct sl_tls *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->fd = fd;
	t->rd_left = SIZE_MAX;
	t->server = (uint8_t)server;
	t->ssl = SSL_new(ctx);
	BIO *b = t->ssl ? BIO_new(bio_meth) : NULL;
	if (!b) {
		SSL_free(t->ssl);
		free(t);
		ERR_clear_error();
		return -ENOMEM;
	}
	BIO_set_data(b, t);
	SSL_set_bio(t->ssl, b, b);
	SSL_set_app_data(t->ssl, t);
	SSL_set_info_callback(t->ssl, info_cb);
	SSL_set_mode(t->ssl, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
	/* whatever the context says: an upstream's HelloRequest would start a handshake on
	 * a pooled connection that idle_check then calls quiet */
	SSL_set_options(t->ssl, SSL_OP_NO_RENEGOTIATION);
	if (server)
		SSL_set_accept_state(t->ssl);
	else
		SSL_set_connect_state(t->ssl);
	io->fd = fd;
	io->t = &sl_transport_tls;
	io->state = t;
	return 0;
}

SSL *sl_tls_ssl(const struct sl_io *io)
{
	return sl_io_is_tls(io) ? tls_of(io)->ssl : NULL;
}

int sl_tls_handshake(struct sl_io *io)
{
	struct sl_tls *t = tls_of(io);
	if (t->fatal)
		return -1;
	ERR_clear_error();
	int rc = SSL_do_handshake(t->ssl);
	int e = rc == 1 ? SSL_ERROR_NONE : SSL_get_error(t->ssl, rc);
	int f = ob_flush(t);
	if (f < 0) {
		if (!t->why[0])
			snprintf(t->why, sizeof(t->why), "reason=\"%s\"", strerror(errno));
		t->saved_errno = errno;
		t->fatal = 1;
		ERR_clear_error();
		return -1;
	}
	if (rc == 1) {
		/* read-ahead may have taken whole records behind the peer's Finished (a
		 * client's first request): pending() must announce them */
		t->rd_full = 1;
		return f ? SL_TLS_AGAIN : 0; /* done; the last flight may still be queued */
	}
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
		return SL_TLS_AGAIN;
	if (e == SSL_ERROR_SYSCALL && !ERR_peek_error() && !t->why[0])
		snprintf(t->why, sizeof(t->why), "reason=\"%s\"",
			 errno ? strerror(errno) : "peer closed during the handshake");
	note_error(t, e);
	t->saved_errno = EPROTO;
	t->fatal = 1;
	return -1;
}

int sl_tls_reason(const struct sl_io *io)
{
	return tls_of(io)->reason;
}

const char *sl_tls_why(const struct sl_io *io)
{
	const struct sl_tls *t = tls_of(io);
	return t->why[0] ? t->why : "reason=\"unknown\"";
}

int sl_tls_client_setup(struct sl_io *io, const char *sni, const char *verify_name,
			SSL_SESSION *resume)
{
	SSL *ssl = tls_of(io)->ssl;
	int ok = 1;
	if (sni && *sni)
		ok &= SSL_set_tlsext_host_name(ssl, sni);
	if (verify_name && *verify_name)
		ok &= SSL_set1_host(ssl, verify_name);
	if (resume)
		ok &= SSL_set_session(ssl, resume);
	ERR_clear_error();
	return ok ? 0 : -EINVAL;
}

const char *sl_tls_version(const struct sl_io *io)
{
	return SSL_get_version(tls_of(io)->ssl);
}

const char *sl_tls_cipher(const struct sl_io *io)
{
	return SSL_get_cipher_name(tls_of(io)->ssl);
}

const unsigned char *sl_tls_alpn(const struct sl_io *io, unsigned int *len)
{
	const unsigned char *p = NULL;
	SSL_get0_alpn_selected(tls_of(io)->ssl, &p, len);
	return *len ? p : NULL;
}

int sl_tls_resumed(const struct sl_io *io)
{
	return SSL_session_reused(tls_of(io)->ssl);
}

size_t sl_tls_out_pending(const struct sl_io *io)
{
	const struct sl_tls *t = tls_of(io);
	return t->ob ? t->ob_len - t->ob_off : 0;
}
