/* Server TLS contexts for listeners[].tls: built on the main thread when a snapshot is
 * attached (start, reload), read-only afterwards and shared by every worker; a reload
 * builds new ones and connections keep the context they started with (SSL holds a
 * reference). SNI picks the context: exact name, then "*.suffix" (one label), else the
 * first certificate. Certificates of different key types for the same names (RSA and
 * ECDSA) share one context, so OpenSSL gives each client the one it can verify. */
#ifndef SL_TLS_SERVER_H
#define SL_TLS_SERVER_H

#include <openssl/ssl.h>
#include <stddef.h>

#include "config/config-t.h"

struct sl_tls_name {
	char *name; /* lowercase; "*.example.com" for a wildcard */
	SSL_CTX *ctx;
};

struct sl_tls_srv {
	unsigned int lsn; /* listener slot (stable across reloads): its ticket ring */
	SSL_CTX *dflt;	  /* no SNI, or a name no certificate carries */
	SSL_CTX *ctxs[SL_TLS_MAX_CERTS];
	unsigned int n_ctxs;
	struct sl_tls_name *names; /* sorted by name */
	unsigned int n_names;
	const struct sl_conf_listener_tls *conf;
};

/* Main thread: build the contexts of every TLS listener of c (and set up their ticket
 * rings). 0, or -errno with a reason in err (nothing attached). */
int sl_tls_attach(struct sl_conf *c, char *err, size_t errlen);

/* The context SNI name picks (NULL = no SNI: the default). */
SSL_CTX *sl_tls_srv_pick(const struct sl_tls_srv *srv, const char *name);

/* After a handshake: the verified client certificate's subject (RFC 2253) and SHA-256
 * fingerprint (64 lowercase hex digits). 0, or -ENOENT when there is none. */
int sl_tls_peer_identity(SSL *ssl, char *subject, size_t slen, char *fp, size_t flen);

/* Main thread: rotate every TLS listener's ticket keys now (admin API). Listeners
 * rotated, or -errno with a reason in err. */
int sl_tls_rotate_tickets(const struct sl_conf *c, char *err, size_t errlen);

#endif
