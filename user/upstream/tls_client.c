/* Client TLS contexts and interned names (see tls_client.h). The table is small (one
 * entry per distinct trust and identity in the configuration) and looked up once per
 * new upstream connection, under one mutex; reused connections never come here. */
#include <errno.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "upstream/tls_client.h"

#define MAX_CTX 256
#define MAX_NAMES 1024

struct ctx_entry {
	int verify;
	const char *ca, *cert, *key; /* interned */
	SSL_CTX *ctx;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct ctx_entry ctxs[MAX_CTX];
static unsigned int n_ctx;
static char *names[MAX_NAMES];
static unsigned int n_names;

static const char *intern_locked(const char *s)
{
	if (!s)
		return NULL;
	for (unsigned int i = 0; i < n_names; i++)
		if (!strcmp(names[i], s))
			return names[i];
	if (n_names == MAX_NAMES)
		return NULL;
	char *c = strdup(s);
	if (c)
		names[n_names++] = c;
	return c;
}

const char *sl_up_intern(const char *s)
{
	pthread_mutex_lock(&mu);
	const char *r = intern_locked(s);
	pthread_mutex_unlock(&mu);
	return r;
}

static void ssl_err(char *err, size_t len, const char *what, const char *path)
{
	unsigned long e = ERR_get_error();
	snprintf(err, len, "%s%s%s: %s", what, path ? " " : "", path ? path : "",
		 e ? ERR_reason_error_string(e) : "unknown error");
	ERR_clear_error();
}

static SSL_CTX *build(const struct sl_peer *p, int (*new_session)(SSL *, SSL_SESSION *),
		      char *err, size_t len)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx) {
		ssl_err(err, len, "cannot make a TLS context", NULL);
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
	if (p->verify) {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
		int ok = p->ca_file ? SSL_CTX_load_verify_locations(ctx, p->ca_file, NULL)
				    : SSL_CTX_set_default_verify_paths(ctx);
		if (ok != 1) {
			ssl_err(err, len, "cannot load CA certificates", p->ca_file);
			goto fail;
		}
	} else {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	}
	if (p->client_cert || p->client_key) {
		if (!p->client_cert || !p->client_key) {
			snprintf(err, len, "client_cert and client_key go together");
			goto fail;
		}
		if (SSL_CTX_use_certificate_chain_file(ctx, p->client_cert) != 1) {
			ssl_err(err, len, "cannot load client certificate", p->client_cert);
			goto fail;
		}
		if (SSL_CTX_use_PrivateKey_file(ctx, p->client_key, SSL_FILETYPE_PEM) != 1 ||
		    SSL_CTX_check_private_key(ctx) != 1) {
			ssl_err(err, len, "cannot use client key", p->client_key);
			goto fail;
		}
	}
	/* sessions go to the worker's cache (per peer identity), not OpenSSL's shared one */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_sess_set_new_cb(ctx, new_session);
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

static int same(const char *a, const char *b)
{
	return a == b || (a && b && !strcmp(a, b));
}

SSL_CTX *sl_up_tls_ctx(const struct sl_peer *p, int (*new_session)(SSL *, SSL_SESSION *),
		       char *err, size_t len)
{
	SSL_CTX *ctx = NULL;
	pthread_mutex_lock(&mu);
	for (unsigned int i = 0; i < n_ctx; i++) {
		struct ctx_entry *e = &ctxs[i];
		if (e->verify == !!p->verify && same(e->ca, p->ca_file) &&
		    same(e->cert, p->client_cert) && same(e->key, p->client_key)) {
			ctx = e->ctx;
			goto out;
		}
	}
	if (n_ctx == MAX_CTX) {
		snprintf(err, len, "too many distinct upstream TLS identities (%d)", MAX_CTX);
		goto out;
	}
	ctx = build(p, new_session, err, len);
	if (ctx) {
		struct ctx_entry *e = &ctxs[n_ctx++];
		e->verify = !!p->verify;
		e->ca = intern_locked(p->ca_file);
		e->cert = intern_locked(p->client_cert);
		e->key = intern_locked(p->client_key);
		e->ctx = ctx;
	}
out:
	pthread_mutex_unlock(&mu);
	return ctx;
}
