/* TLS transport: OpenSSL 3 over a non-blocking socket, a second implementation of
 * struct sl_transport. Server and client mode; the SSL_CTX is the caller's (user/tls/
 * builds server contexts; upstream code builds client ones).
 *
 * Writes: iovecs are flattened into records of up to 16 KB (one SSL_write per record,
 * not per iovec), the ciphertext of up to SL_TLS_WRITE_MAX plaintext bytes goes out in
 * one send(). Ciphertext the socket did not take stays with the connection; the
 * plaintext behind it is reported as written only once it is all out, so the contract
 * is raw TCP's: a short write or EAGAIN means "socket full", and the next writev starts
 * with the bytes not reported yet (as OpenSSL's own retry rule asks). */
#ifndef SL_NET_TLS_H
#define SL_NET_TLS_H

#include <openssl/ssl.h>

#include "net/transport.h"

#define SL_TLS_RECORD 16384			/* plaintext bytes per record written */
#define SL_TLS_WRITE_MAX (4 * SL_TLS_RECORD)	/* plaintext encrypted per writev call */

extern const struct sl_transport sl_transport_tls;

/* Wrap fd in TLS from ctx (server: accept state; client: connect state). The io owns
 * the fd from then on (sl_io_close closes both). 0 or -ENOMEM. */
int sl_tls_io_init(struct sl_io *io, int fd, SSL_CTX *ctx, int server);

static inline int sl_io_is_tls(const struct sl_io *io)
{
	return io->t == &sl_transport_tls;
}

/* The connection's SSL (for SNI, verification, sessions, ALPN), or NULL for raw TCP. */
SSL *sl_tls_ssl(const struct sl_io *io);

/* Drive the handshake: 0 when complete, SL_TLS_AGAIN while it waits for the socket
 * (then wait for sl_io_wants(io, 0)), or -1 on failure (sl_tls_why() says why). */
#define SL_TLS_AGAIN 1
int sl_tls_handshake(struct sl_io *io);

/* Why the last operation failed: an alert ("tls_alert=handshake_failure") and/or an
 * OpenSSL reason ("reason=\"no shared cipher\""), as key=value text for a log line. */
const char *sl_tls_why(const struct sl_io *io);
/* The OpenSSL reason code (ERR_GET_REASON: SSL_R_HTTP_REQUEST, ...) of the first failure
 * noted, or 0: for callers that act on the kind of failure. */
int sl_tls_reason(const struct sl_io *io);

/* Client mode, before the handshake: server name sent (NULL or "" = none), the name the
 * certificate must carry (NULL = no name check; verification itself is the CTX's), a
 * session to resume (reference not taken over). 0 or -EINVAL / -ENOMEM. */
int sl_tls_client_setup(struct sl_io *io, const char *sni, const char *verify_name,
			SSL_SESSION *resume);

/* Protocol version ("TLSv1.3"), cipher, ALPN of a finished handshake. */
const char *sl_tls_version(const struct sl_io *io);
const char *sl_tls_cipher(const struct sl_io *io);
/* Selected ALPN protocol (not NUL-terminated) or NULL. */
const unsigned char *sl_tls_alpn(const struct sl_io *io, unsigned int *len);
int sl_tls_resumed(const struct sl_io *io);

/* Ciphertext waiting in the connection's own buffer (the socket was full). */
size_t sl_tls_out_pending(const struct sl_io *io);

#endif
