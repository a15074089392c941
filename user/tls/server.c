/* Server TLS contexts (see server.h). */
#include <ctype.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tls/server.h"
#include "tls/tickets.h"

/* TLS 1.2: forward secret AEAD only (Mozilla's "intermediate" without DHE). */
#define DEFAULT_CIPHERS                                                                    \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                       \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                       \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
#define DEFAULT_GROUPS "X25519:P-256"

static void ssl_err(char *err, size_t len, const char *what, const char *path)
{
	unsigned long e = ERR_peek_last_error();
	snprintf(err, len, "%s%s%s: %s", what, path ? " " : "", path ? path : "",
		 e ? ERR_reason_error_string(e) : "unknown error");
	ERR_clear_error();
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(((const struct sl_tls_name *)a)->name, ((const struct sl_tls_name *)b)->name);
}

SSL_CTX *sl_tls_srv_pick(const struct sl_tls_srv *srv, const char *name)
{
	char low[256];
	size_t n;
	if (!name || !(n = strlen(name)) || n >= sizeof(low) - 1)
		return srv->dflt;
	for (size_t i = 0; i <= n; i++)
		low[i] = (char)tolower((unsigned char)name[i]);
	if (low[n - 1] == '.') /* "example.com." names the same host */
		low[--n] = 0;
	struct sl_tls_name key = {.name = low}, *hit;
	hit = bsearch(&key, srv->names, srv->n_names, sizeof(key), name_cmp);
	if (hit)
		return hit->ctx;
	char *dot = strchr(low, '.');
	if (dot && dot != low && dot[1]) {
		/* "*.example.com" covers one label: a.example.com, not a.b.example.com */
		char wild[257];
		snprintf(wild, sizeof(wild), "*%s", dot);
		key.name = wild;
		hit = bsearch(&key, srv->names, srv->n_names, sizeof(key), name_cmp);
		if (hit)
			return hit->ctx;
	}
	return srv->dflt;
}

static int sni_cb(SSL *ssl, int *al, void *arg)
{
	const struct sl_tls_srv *srv = arg;
	SSL_CTX *c = sl_tls_srv_pick(srv, SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name));
	if (c != SSL_get_SSL_CTX(ssl))
		SSL_set_SSL_CTX(ssl, c);
	return SSL_TLSEXT_ERR_OK;
}

static int alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
		   const unsigned char *in, unsigned int inlen, void *arg)
{
	const struct sl_tls_srv *srv = arg;
	unsigned char *sel;
	if (SSL_select_next_proto(&sel, outlen, srv->conf->alpn, srv->conf->alpn_len, in,
				  inlen) != OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_ALERT_FATAL; /* RFC 7301: no_application_protocol */
	*out = sel;
	return SSL_TLSEXT_ERR_OK;
}

static int ticket_cb(SSL *ssl, unsigned char key_name[16], unsigned char *iv,
		     EVP_CIPHER_CTX *ectx, EVP_MAC_CTX *hctx, int enc)
{
	const struct sl_tls_srv *srv = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
	if (!srv)
		return -1;
	int rc = sl_tickets_cb(srv->lsn, key_name, iv, ectx, hctx, enc);
	/* TLS 1.3: OpenSSL sends a resumed client a new ticket only when asked to renew,
	 * and clients use a ticket once (RFC 8446 C.4): without a new one, every other
	 * reconnect was a full handshake */
	if (!enc && rc == 1 && SSL_version(ssl) == TLS1_3_VERSION)
		rc = 2;
	return rc;
}

/* A ticket carries the client certificate verified by the full handshake it came from,
 * and resuming skips the verification: a certificate that has expired since (or is not
 * valid yet) gets a full handshake instead, which verifies it again and fails. */
static SSL_TICKET_RETURN ticket_dec_cb(SSL *ssl, SSL_SESSION *ss, const unsigned char *name,
				       size_t name_len, SSL_TICKET_STATUS status, void *arg)
{
	switch (status) {
	case SSL_TICKET_SUCCESS:
	case SSL_TICKET_SUCCESS_RENEW:
		break;
	case SSL_TICKET_EMPTY:
	case SSL_TICKET_NO_DECRYPT:
		return SSL_TICKET_RETURN_IGNORE_RENEW; /* as OpenSSL does without a callback */
	default:
		return SSL_TICKET_RETURN_ABORT;
	}
	X509 *peer = ss ? SSL_SESSION_get0_peer(ss) : NULL;
	if (peer && (X509_cmp_current_time(X509_get0_notAfter(peer)) <= 0 ||
		     X509_cmp_current_time(X509_get0_notBefore(peer)) >= 0)) {
		ERR_clear_error();
		return SSL_TICKET_RETURN_IGNORE_RENEW;
	}
	return status == SSL_TICKET_SUCCESS ? SSL_TICKET_RETURN_USE : SSL_TICKET_RETURN_USE_RENEW;
}

/* The names a certificate serves: its DNS subjectAltNames, or its CN without any. */
static int cert_names(X509 *x, char (**out)[256])
{
	int n = 0, max;
	GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	max = gens ? sk_GENERAL_NAME_num(gens) : 0;
	char (*names)[256] = calloc(max > 0 ? (size_t)max : 1, sizeof(*names));
	*out = names;
	if (!names) {
		GENERAL_NAMES_free(gens);
		return -1;
	}
	for (int i = 0; gens && i < sk_GENERAL_NAME_num(gens) && n < max; i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
		if (g->type != GEN_DNS)
			continue;
		const unsigned char *s = ASN1_STRING_get0_data(g->d.dNSName);
		int len = ASN1_STRING_length(g->d.dNSName);
		if (len <= 0 || len >= 256 || memchr(s, 0, (size_t)len))
			continue;
		for (int j = 0; j < len; j++)
			names[n][j] = (char)tolower(s[j]);
		names[n++][len] = 0;
	}
	GENERAL_NAMES_free(gens);
	if (n)
		return n;
	X509_NAME *subj = X509_get_subject_name(x);
	int len = X509_NAME_get_text_by_NID(subj, NID_commonName, names[0], 256);
	if (len > 0 && len < 256) {
		for (int j = 0; j < len; j++)
			names[0][j] = (char)tolower((unsigned char)names[0][j]);
		n = 1;
	}
	return n;
}

struct cert_info {
	int type; /* EVP_PKEY_RSA, EVP_PKEY_EC, ... */
	int n_names;
	char (*names)[256]; /* every DNS name it carries (a multi-domain certificate: many) */
};

static int load_info(const struct sl_conf_tls_cert *c, struct cert_info *ci, char *err,
		     size_t len)
{
	FILE *f = fopen(c->cert, "re");
	X509 *x = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
	if (f)
		fclose(f);
	if (!x) {
		ssl_err(err, len, "cannot read certificate", c->cert);
		return -EINVAL;
	}
	EVP_PKEY *pk = X509_get0_pubkey(x);
	ci->type = pk ? EVP_PKEY_get_base_id(pk) : 0;
	ci->n_names = cert_names(x, &ci->names);
	X509_free(x);
	if (ci->n_names < 0) {
		snprintf(err, len, "out of memory");
		return -ENOMEM;
	}
	return 0;
}

/* One context for the certificates in mask (at most one per key type). */
static SSL_CTX *build_ctx(struct sl_tls_srv *srv, uint64_t mask, const unsigned char *sid,
			  char *err, size_t len)
{
	const struct sl_conf_listener_tls *t = srv->conf;
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx) {
		ssl_err(err, len, "cannot make a TLS context", NULL);
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, t->min_version);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
				     SSL_OP_CIPHER_SERVER_PREFERENCE |
				     (t->tickets ? 0 : SSL_OP_NO_TICKET));
	/* one read() takes every record the kernel has (the transport bounds it) */
	SSL_CTX_set_read_ahead(ctx, 1);
	/* resumption only by tickets: no server-side cache, so no cache lock per handshake
	 * and nothing that lives in one worker's memory */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_num_tickets(ctx, t->tickets ? 1 : 0);
	if (SSL_CTX_set_cipher_list(ctx, t->ciphers ? t->ciphers : DEFAULT_CIPHERS) != 1 ||
	    (t->ciphersuites && SSL_CTX_set_ciphersuites(ctx, t->ciphersuites) != 1) ||
	    SSL_CTX_set1_groups_list(ctx, t->groups ? t->groups : DEFAULT_GROUPS) != 1) {
		ssl_err(err, len, "bad cipher or group list", NULL);
		goto fail;
	}
	for (unsigned int i = 0; i < t->n_certs; i++) {
		if (!(mask & (1ull << i)))
			continue;
		const struct sl_conf_tls_cert *c = &t->certs[i];
		/* leaf and chain: the chain goes with this key type's certificate */
		if (SSL_CTX_use_certificate_chain_file(ctx, c->cert) != 1) {
			ssl_err(err, len, "cannot load certificate", c->cert);
			goto fail;
		}
		if (SSL_CTX_use_PrivateKey_file(ctx, c->key, SSL_FILETYPE_PEM) != 1 ||
		    SSL_CTX_check_private_key(ctx) != 1) {
			ssl_err(err, len, "cannot use key", c->key);
			goto fail;
		}
	}
	SSL_CTX_set_alpn_select_cb(ctx, alpn_cb, srv);
	SSL_CTX_set_tlsext_servername_callback(ctx, sni_cb);
	SSL_CTX_set_tlsext_servername_arg(ctx, srv);
	if (t->tickets) {
		SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_cb);
		SSL_CTX_set_session_ticket_cb(ctx, NULL, ticket_dec_cb, NULL);
	}
	SSL_CTX_set_app_data(ctx, srv);
	/* the same for every context of this listener (SNI may switch between them), and
	 * different for other client_auth settings: a ticket from a listener without client
	 * authentication never resumes on one that asks for it (should they share keys) */
	SSL_CTX_set_session_id_context(ctx, sid, SSL_MAX_SID_CTX_LENGTH);
	if (t->client_auth != SL_CLIENT_AUTH_NONE) {
		int mode = SSL_VERIFY_PEER;
		if (t->client_auth == SL_CLIENT_AUTH_REQUIRED)
			mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
		SSL_CTX_set_verify(ctx, mode, NULL);
		SSL_CTX_set_verify_depth(ctx, (int)t->client_depth);
		STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(t->client_ca);
		if (SSL_CTX_load_verify_locations(ctx, t->client_ca, NULL) != 1 || !names) {
			sk_X509_NAME_pop_free(names, X509_NAME_free);
			ssl_err(err, len, "cannot load client CA", t->client_ca);
			goto fail;
		}
		SSL_CTX_set_client_CA_list(ctx, names);
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

static void srv_free(void *p)
{
	struct sl_tls_srv *srv = p;
	if (!srv)
		return;
	for (unsigned int i = 0; i < srv->n_ctxs; i++)
		SSL_CTX_free(srv->ctxs[i]);
	for (unsigned int i = 0; i < srv->n_names; i++)
		free(srv->names[i].name);
	free(srv->names);
	free(srv);
}

/* The certificates a name is served with: the first of each key type that carries it
 * (exact entry, or the same wildcard). */
static uint64_t mask_for(const struct cert_info *ci, unsigned int n, const char *name)
{
	uint64_t mask = 0;
	int types[SL_TLS_MAX_CERTS];
	unsigned int nt = 0;
	for (unsigned int i = 0; i < n; i++) {
		int has = 0;
		for (int j = 0; j < ci[i].n_names && !has; j++)
			has = !strcmp(ci[i].names[j], name);
		if (!has)
			continue;
		unsigned int k = 0;
		while (k < nt && types[k] != ci[i].type)
			k++;
		if (k < nt)
			continue; /* that key type has its certificate already */
		types[nt++] = ci[i].type;
		mask |= 1ull << i;
	}
	return mask;
}

static SSL_CTX *ctx_for(struct sl_tls_srv *srv, uint64_t *masks, uint64_t mask,
			const unsigned char *sid, char *err, size_t len)
{
	for (unsigned int i = 0; i < srv->n_ctxs; i++)
		if (masks[i] == mask)
			return srv->ctxs[i];
	if (srv->n_ctxs == SL_TLS_MAX_CERTS) {
		snprintf(err, len, "too many certificate combinations");
		return NULL;
	}
	SSL_CTX *c = build_ctx(srv, mask, sid, err, len);
	if (!c)
		return NULL;
	masks[srv->n_ctxs] = mask;
	srv->ctxs[srv->n_ctxs++] = c;
	return c;
}

static void ci_free(struct cert_info *ci, unsigned int n)
{
	for (unsigned int i = 0; ci && i < n; i++)
		free(ci[i].names);
	free(ci);
}

/* SHA-256 over the session id context's text and the client CA file's bytes. */
static int ca_digest(const struct sl_conf_listener_tls *t, const char *text, unsigned char *md,
		     unsigned int *mdlen)
{
	EVP_MD_CTX *mc = EVP_MD_CTX_new();
	int ok = mc && EVP_DigestInit_ex(mc, EVP_sha256(), NULL) == 1 &&
		 EVP_DigestUpdate(mc, text, strlen(text)) == 1;
	if (ok && t->client_auth != SL_CLIENT_AUTH_NONE && t->client_ca) {
		FILE *f = fopen(t->client_ca, "re");
		unsigned char buf[4096];
		size_t n;
		ok = f != NULL;
		while (ok && (n = fread(buf, 1, sizeof(buf), f)) > 0)
			ok = EVP_DigestUpdate(mc, buf, n) == 1;
		if (f) {
			ok = ok && !ferror(f);
			fclose(f);
		}
	}
	ok = ok && EVP_DigestFinal_ex(mc, md, mdlen) == 1;
	EVP_MD_CTX_free(mc);
	ERR_clear_error();
	return ok ? 0 : -EIO;
}

static struct sl_tls_srv *srv_build(const struct sl_conf_listener *l, unsigned int idx,
				    char *err, size_t len)
{
	const struct sl_conf_listener_tls *t = l->tls;
	struct cert_info *ci = calloc(t->n_certs, sizeof(*ci));
	struct sl_tls_srv *srv = calloc(1, sizeof(*srv));
	uint64_t masks[SL_TLS_MAX_CERTS];
	unsigned char sid[SSL_MAX_SID_CTX_LENGTH];
	char sidsrc[1024];
	unsigned int total = 0, mdlen = 0;
	if (!ci || !srv) {
		snprintf(err, len, "out of memory");
		goto fail;
	}
	srv->lsn = idx;
	srv->conf = t;
	/* what a resumed session skips: the client certificate check. Not the address:
	 * nodes sharing a key_file resume each other's tickets. The CA file's content, not
	 * only its name: a CA replaced under the same path (one compromised, say) must not
	 * go on admitting its certificates through their tickets */
	snprintf(sidsrc, sizeof(sidsrc), "sluice|%d|%s|%u", (int)t->client_auth,
		 t->client_ca ? t->client_ca : "", t->client_depth);
	unsigned char md[EVP_MAX_MD_SIZE];
	if (ca_digest(t, sidsrc, md, &mdlen)) {
		snprintf(err, len, "cannot read client CA '%s'", t->client_ca);
		goto fail;
	}
	memcpy(sid, md, sizeof(sid));
	for (unsigned int i = 0; i < t->n_certs; i++) {
		if (load_info(&t->certs[i], &ci[i], err, len))
			goto fail;
		total += (unsigned int)ci[i].n_names;
	}
	srv->names = calloc(total ? total : 1, sizeof(*srv->names));
	if (!srv->names) {
		snprintf(err, len, "out of memory");
		goto fail;
	}
	/* the default: the first certificate, with those of other key types that carry its
	 * first name */
	uint64_t dmask = ci[0].n_names ? mask_for(ci, t->n_certs, ci[0].names[0]) : 1;
	if (!(dmask & 1))
		dmask = 1;
	srv->dflt = ctx_for(srv, masks, dmask, sid, err, len);
	if (!srv->dflt)
		goto fail;
	for (unsigned int i = 0; i < t->n_certs; i++) {
		for (int j = 0; j < ci[i].n_names; j++) {
			const char *name = ci[i].names[j];
			int dup = 0;
			for (unsigned int k = 0; k < srv->n_names && !dup; k++)
				dup = !strcmp(srv->names[k].name, name);
			if (dup)
				continue; /* the first certificate that names it wins */
			SSL_CTX *c = ctx_for(srv, masks, mask_for(ci, t->n_certs, name), sid, err, len);
			if (!c)
				goto fail;
			srv->names[srv->n_names].name = strdup(name);
			if (!srv->names[srv->n_names].name) {
				snprintf(err, len, "out of memory");
				goto fail;
			}
			srv->names[srv->n_names++].ctx = c;
		}
	}
	qsort(srv->names, srv->n_names, sizeof(*srv->names), name_cmp);
	ci_free(ci, t->n_certs);
	return srv;
fail:
	ci_free(ci, t ? t->n_certs : 0);
	srv_free(srv);
	return NULL;
}

int sl_tls_attach(struct sl_conf *c, char *err, size_t errlen)
{
	char why[400];
	/* by slot, not by position: a slot keeps its address across reloads (its ticket
	 * keys with it), positions change when the file is reordered */
	for (unsigned int s = 0; s < SL_MAX_LISTENERS; s++) {
		int i = c->slot_index[s];
		if (i < 0 || (unsigned int)i >= c->n_listeners)
			continue;
		struct sl_conf_listener *l = &c->listeners[i];
		if (!l->tls || l->tls->srv)
			continue;
		struct sl_tls_srv *srv = srv_build(l, s, why, sizeof(why));
		if (!srv) {
			snprintf(err, errlen, "listeners[%d].tls: %s", i, why);
			return -EINVAL;
		}
		l->tls->srv = srv;
		l->tls->srv_free = srv_free;
	}
	/* rings last: a snapshot that fails above leaves the running keys alone */
	for (unsigned int s = 0; s < SL_MAX_LISTENERS; s++) {
		int i = c->slot_index[s];
		if (i < 0 || (unsigned int)i >= c->n_listeners)
			continue;
		struct sl_conf_listener *l = &c->listeners[i];
		if (l->tls && l->tls->tickets && sl_tickets_setup(s, l->tls, why, sizeof(why))) {
			snprintf(err, errlen, "listeners[%d].tls.session_tickets: %s", i, why);
			return -EINVAL;
		}
	}
	return 0;
}

int sl_tls_rotate_tickets(const struct sl_conf *c, char *err, size_t errlen)
{
	int n = 0;
	for (unsigned int s = 0; s < SL_MAX_LISTENERS; s++) {
		int i = c->slot_index[s];
		if (i < 0 || (unsigned int)i >= c->n_listeners)
			continue;
		const struct sl_conf_listener *l = &c->listeners[i];
		if (!l->tls || !l->tls->tickets)
			continue;
		int rc = sl_tickets_rotate(s, err, errlen);
		if (rc)
			return rc;
		n++;
	}
	return n;
}

int sl_tls_peer_identity(SSL *ssl, char *subject, size_t slen, char *fp, size_t flen)
{
	X509 *x = SSL_get0_peer_certificate(ssl);
	if (!x || SSL_get_verify_result(ssl) != X509_V_OK)
		return -ENOENT;
	BIO *b = BIO_new(BIO_s_mem());
	if (!b)
		return -ENOMEM;
	X509_NAME_print_ex(b, X509_get_subject_name(x), 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
	int n = BIO_read(b, subject, (int)slen - 1);
	BIO_free(b);
	subject[n > 0 ? n : 0] = 0;
	/* a header value: no control bytes, whatever the certificate holds */
	for (char *p = subject; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	if (!X509_digest(x, EVP_sha256(), md, &mdlen) || flen < 2 * mdlen + 1) {
		ERR_clear_error();
		return -EINVAL;
	}
	for (unsigned int i = 0; i < mdlen; i++)
		snprintf(fp + 2 * i, 3, "%02x", md[i]);
	return 0;
}
