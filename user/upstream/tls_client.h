/* Client TLS contexts for upstream connections: one SSL_CTX per trust and identity
 * (verify, CA file, client certificate and key), built on first use, shared by all
 * workers and kept for the process's life; and the interned copies of the file names
 * that pooled connections' peers point at (a peer outlives the configuration snapshot
 * or the request that named them). */
#ifndef SL_TLS_CLIENT_H
#define SL_TLS_CLIENT_H

#include <openssl/ssl.h>

#include "sluice/sluice.h"

/* The context for p (no reference taken: it lives until exit), or NULL with a reason
 * in err. new_session: where the sessions of its connections go (SSL_CTX_sess_set_new_cb
 * semantics; the same for every call). */
SSL_CTX *sl_up_tls_ctx(const struct sl_peer *p, int (*new_session)(SSL *, SSL_SESSION *),
		       char *err, size_t errlen);
/* A copy of s that is never freed (NULL for NULL). */
const char *sl_up_intern(const char *s);

#endif
