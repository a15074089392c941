/* The upstream connector: take local -> shared -> new, the connect stages, the release
 * policy, idle watching and the checks before reuse (see connector.h). */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdio.h>
#include <strings.h>

#include "core/clock.h"
#include "core/log.h"
#include "net/addr.h"
#include "net/tls.h"
#include "upstream/conn_count.h"
#include "upstream/connector.h"
#include "upstream/shared_pool.h"
#include "upstream/tls_client.h"

#define HS_CAP 4096 /* the CONNECT request, then the proxy's answer head */

/* Reuse threshold: a connection idle for less than this was watched by our own loop
 * all along (an EOF would have been seen), so the syscall checks are skipped. */
#define RECHECK_IDLE_NS 1000000000ull

static void rd_cb(evutil_socket_t fd, short what, void *arg);
static void wr_cb(evutil_socket_t fd, short what, void *arg);

void sl_connector_init(struct sl_connector *cn, struct event_base *base,
		       struct sl_worker_stats *st, struct sl_spool *spool)
{
	memset(cn, 0, sizeof(*cn));
	cn->base = base;
	cn->st = st;
	cn->spool = spool;
	sl_pool_init(&cn->pool);
}

const struct timeval *sl_connector_tv(struct sl_connector *cn, unsigned int ms)
{
	for (unsigned int i = 0; i < cn->n_ctv; i++)
		if (cn->ctv[i].ms == ms)
			return cn->ctv[i].tv;
	unsigned int i =
	    cn->n_ctv < 16 ? cn->n_ctv++ : 15; /* more durations than that: reuse the last slot */
	cn->ctv[i].ms = ms;
	cn->ctv[i].raw.tv_sec = ms / 1000;
	cn->ctv[i].raw.tv_usec = (ms % 1000) * 1000;
	const struct timeval *t = event_base_init_common_timeout(cn->base, &cn->ctv[i].raw);
	cn->ctv[i].tv = t ? t : &cn->ctv[i].raw;
	return cn->ctv[i].tv;
}

void sl_upconn_close(struct sl_upconn *c)
{
	free(c->hs);
	if (c->io.fd >= 0) {
		event_del(&c->rev);
		event_del(&c->wev);
		sl_io_close(&c->io);
		if (c->count)
			sl_conn_count_drop(c->count);
	}
	free(c);
}

static struct sl_upconn *upconn_new(struct sl_connector *cn, struct sl_io *io,
				    const struct sl_peer *peer, uint64_t hash)
{
	struct sl_upconn *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->io = *io;
	c->cn = cn;
	c->peer = *peer;
	c->peer_hash = hash;
	event_assign(&c->rev, cn->base, io->fd, EV_READ | EV_PERSIST, rd_cb, c);
	event_assign(&c->wev, cn->base, io->fd, EV_WRITE | EV_PERSIST, wr_cb, c);
	return c;
}

/* Give an idle connection to the shared overflow pool (its watch moves to the keeper). */
static void to_shared(struct sl_connector *cn, struct sl_upconn *c)
{
	/* the shared pool parks bare fds, watched by a keeper that has no TLS state: a TLS
	 * connection cannot travel there (its SSL object would stay behind, and the
	 * keeper would take a NewSessionTicket for stray bytes). It is closed instead,
	 * which also frees its slot for a request waiting on another worker. */
	if (!cn->spool || sl_io_is_tls(&c->io)) {
		sl_upconn_close(c);
		return;
	}
	event_del(&c->rev);
	event_del(&c->wev);
	int fd = c->io.fd;
	c->io.fd = -1;
	sl_spool_put(cn->spool, fd, &c->peer, c->peer_hash, c->requests, c->count);
	sl_upconn_close(c);
}

static void hand_over_cb(struct sl_upconn *c, void *arg)
{
	to_shared(arg, c);
}

void sl_connector_share_waited(struct sl_connector *cn)
{
	struct sl_pool *p = &cn->pool;
	for (unsigned int g = 0; g < p->n_groups; g++) {
		struct sl_link *l = p->groups[g].lru.head;
		while (l) {
			struct sl_link *next = l->next;
			struct sl_upconn *c = sl_container_of(l, struct sl_upconn, lru);
			if (c->count &&
			    atomic_load_explicit(&c->count->waiters, memory_order_relaxed)) {
				sl_pool_remove(p, c);
				to_shared(cn, c);
			}
			l = next;
		}
	}
}

void sl_connector_prune(struct sl_connector *cn, const char *name,
			int (*keep)(const struct sl_peer *p, void *arg), void *arg)
{
	struct sl_pool *p = &cn->pool;
	size_t n = strlen(name);
	for (unsigned int g = 0; g < p->n_groups; g++) {
		struct sl_pool_group *grp = &p->groups[g];
		if (n >= sizeof(grp->name) || grp->len != n || memcmp(grp->name, name, n) ||
		    (p->n_groups == SL_POOL_GROUPS && g == SL_POOL_GROUPS - 1))
			continue;
		struct sl_link *l = grp->lru.head;
		while (l) {
			struct sl_link *next = l->next;
			struct sl_upconn *c = sl_container_of(l, struct sl_upconn, lru);
			if (!keep(&c->peer, arg)) {
				sl_pool_remove(p, c);
				sl_upconn_close(c);
			}
			l = next;
		}
	}
}

void sl_connector_drain(struct sl_connector *cn)
{
	cn->draining = 1;
	sl_pool_drain(&cn->pool, hand_over_cb, cn);
}

static void close_cb(struct sl_upconn *c, void *arg)
{
	sl_upconn_close(c);
}

void sl_connector_destroy(struct sl_connector *cn)
{
	sl_pool_drain(&cn->pool, close_cb, NULL);
	sl_pool_destroy(&cn->pool);
	for (unsigned int i = 0; i < sizeof(cn->sessions) / sizeof(cn->sessions[0]); i++) {
		SSL_SESSION_free(cn->sessions[i].sess);
		cn->sessions[i].sess = NULL;
	}
}

void sl_upconn_release(struct sl_upconn *c, int reusable, const struct sl_conf_upstream *u)
{
	struct sl_connector *cn = c->cn;
	c->owner = NULL;
	c->cbs = NULL;
	sl_upconn_want_write(c, 0);
	const struct sl_conf_pool *pl = u ? &u->pool : NULL;
	if (reusable && pl && pl->max_requests_per_conn && c->requests >= pl->max_requests_per_conn)
		reusable = 0;
	if (!reusable || c->stage != SL_UP_READY) {
		sl_upconn_close(c);
		if (!sl_waitq_empty(&cn->waitq)) /* a slot is free */
			sl_connector_wake(cn);
		return;
	}
	/* Draining, or requests on other workers wait for a connection to this peer (at
	 * max_conns_per_server): the shared pool is where they can get it. */
	if (cn->draining || (c->count && sl_waitq_empty(&cn->waitq) &&
			     atomic_load_explicit(&c->count->waiters, memory_order_relaxed))) {
		to_shared(cn, c);
		return;
	}
	unsigned int g = sl_pool_group(&cn->pool, u ? u->name : "");
	struct sl_upconn *evicted;
	if (sl_pool_put(&cn->pool, c, g, pl ? pl->max_idle_per_worker : 128, &evicted)) {
		to_shared(cn, c);
		return;
	}
	c->idle_since_ns = sl_mono_coarse_ns();
	/* watched while idle: EOF or stray bytes close it; the timeout reaps it */
	event_add(&c->rev, sl_connector_tv(cn, pl ? pl->idle_timeout : 60000));
	c->rd_on = 1;
	if (evicted) {
		cn->st->pool_evicted++;
		to_shared(cn, evicted);
	}
	if (!sl_waitq_empty(&cn->waitq)) /* hand it straight to a waiting request */
		sl_connector_wake(cn);
}

static void idle_event(struct sl_upconn *c, short what)
{
	if (!(what & EV_TIMEOUT) && !sl_io_idle_check(&c->io))
		return;
	/* EOF, error, unexpected bytes or idle timeout: never reuse it */
	c->cn->st->pool_idle_closed++;
	sl_pool_remove(&c->cn->pool, c);
	sl_upconn_close(c);
}

/* Before reusing a connection: nothing pending (no EOF, no stray bytes) and still
 * connected to the peer it was opened for. 0 usable, -1 not. */
static int reuse_check(struct sl_connector *cn, struct sl_io *io, const struct sl_peer *peer)
{
	if (sl_io_idle_check(io)) {
		cn->st->pool_idle_closed++;
		return -1;
	}
	struct sockaddr_storage sa;
	socklen_t len = sizeof(sa);
	/* through a proxy, the socket's peer is the proxy */
	const struct sockaddr_storage *want = peer->proxy_len ? &peer->proxy : &peer->addr;
	socklen_t want_len = peer->proxy_len ? peer->proxy_len : peer->addrlen;
	if (getpeername(io->fd, (struct sockaddr *)&sa, &len) || len != want_len ||
	    memcmp(&sa, want, len)) {
		cn->st->pool_fd_mismatch++;
		sl_log(SL_LOG_WARN,
		       "msg=\"pooled connection no longer points at its peer, closed\" "
		       "peer=%s",
		       peer->name);
		return -1;
	}
	return 0;
}

static struct sl_upconn *pool_take(struct sl_connector *cn, const struct sl_peer *peer,
				   uint64_t hash)
{
	struct sl_upconn *c;
	while ((c = sl_pool_get(&cn->pool, peer, hash))) {
		if (sl_mono_coarse_ns() - c->idle_since_ns < RECHECK_IDLE_NS ||
		    !reuse_check(cn, &c->io, peer)) {
			cn->st->pool_local++;
			event_add(&c->rev, NULL); /* drop the idle timeout */
			return c;
		}
		sl_upconn_close(c);
	}
	if (!cn->spool)
		return NULL;
	unsigned int requests;
	struct sl_peer_count *count;
	int fd;
	while ((fd = sl_spool_get(cn->spool, peer, hash, &requests, &count)) >= 0) {
		struct sl_io io;
		sl_io_init_raw(&io, fd);
		if (reuse_check(cn, &io, peer) || !(c = upconn_new(cn, &io, peer, hash))) {
			sl_io_close(&io);
			if (count)
				sl_conn_count_drop(count);
			continue;
		}
		c->count = count;
		c->requests = requests;
		c->stage = SL_UP_READY;
		event_add(&c->rev, NULL);
		c->rd_on = 1;
		cn->st->pool_shared++;
		return c;
	}
	return NULL;
}

/* ---- connect stages: TCP -> CONNECT through a proxy -> TLS -> ready ----
 * Each returns 0 when the connection is ready, SL_UP_CONNECTING while it waits for the
 * socket (its events are set), or a negative errno with c->why set and the failure
 * logged and counted. */

static int tls_start(struct sl_upconn *c);
static int tls_step(struct sl_upconn *c);
static int proxy_send(struct sl_upconn *c);

static const char *proxy_str(const struct sl_peer *p, char buf[SL_ADDR_STRLEN])
{
	uint8_t off, len;
	sl_addr_fmt((const struct sockaddr *)&p->proxy, buf, &off, &len);
	return buf;
}

static int proxy_refused(struct sl_upconn *c, int status, const char *why)
{
	char pa[SL_ADDR_STRLEN];
	c->cn->st->up_proxy_refused++;
	sl_log(SL_LOG_WARN,
	       "msg=\"upstream proxy refused CONNECT\" peer=%s proxy=%s status=%d reason=\"%s\"",
	       c->peer.name, proxy_str(&c->peer, pa), status, why);
	c->why = "proxy refused";
	return -ECONNREFUSED;
}

/* What comes after TCP (or after the tunnel). */
static int advance(struct sl_upconn *c)
{
	if (c->stage == SL_UP_TCP && c->peer.proxy_len) {
		c->hs = malloc(HS_CAP);
		if (!c->hs) {
			c->why = "out of memory";
			return -ENOMEM;
		}
		char addr[SL_ADDR_STRLEN];
		const char *target = c->peer.connect_target;
		if (!target[0]) {
			uint8_t off, len;
			sl_addr_fmt((const struct sockaddr *)&c->peer.addr, addr, &off, &len);
			target = addr;
		}
		int n = snprintf(c->hs, HS_CAP, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n%s\r\n", target,
				 target, c->peer.proxy_headers);
		if (n < 0 || n >= HS_CAP)
			return proxy_refused(c, 0, "CONNECT request does not fit");
		c->hs_len = (uint16_t)n;
		c->hs_off = 0;
		c->stage = SL_UP_PROXY_SEND;
		return proxy_send(c);
	}
	if (c->stage < SL_UP_TLS && c->peer.tls)
		return tls_start(c);
	c->stage = SL_UP_READY;
	sl_upconn_want_write(c, 0);
	return 0;
}

static int proxy_send(struct sl_upconn *c)
{
	while (c->hs_off < c->hs_len) {
		ssize_t n = send(c->io.fd, c->hs + c->hs_off, c->hs_len - c->hs_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			sl_upconn_want_write(c, 1);
			return SL_UP_CONNECTING;
		}
		if (n < 0)
			return proxy_refused(c, 0, strerror(errno));
		c->hs_off += (uint16_t)n;
	}
	c->stage = SL_UP_PROXY_READ;
	c->hs_len = 0;
	sl_upconn_want_write(c, 0);
	sl_upconn_want_read(c, 1);
	return SL_UP_CONNECTING;
}

/* A header line of the answer names a body ("Content-Length", "Transfer-Encoding"). */
static int has_framing(const char *head)
{
	for (const char *l = strstr(head, "\r\n"); l; l = strstr(l + 2, "\r\n")) {
		if (!strncasecmp(l + 2, "content-length:", 15) ||
		    !strncasecmp(l + 2, "transfer-encoding:", 18))
			return 1;
	}
	return 0;
}

static int proxy_read(struct sl_upconn *c)
{
	ssize_t n;
	do
		n = recv(c->io.fd, c->hs + c->hs_len, HS_CAP - 1 - c->hs_len, MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n < 0 && errno == EAGAIN)
		return SL_UP_CONNECTING;
	if (n < 0)
		return proxy_refused(c, 0, strerror(errno));
	if (n == 0)
		return proxy_refused(c, 0, "proxy closed before answering");
	c->hs_len += (uint16_t)n;
	c->hs[c->hs_len] = 0;
	if (memchr(c->hs, 0, c->hs_len))
		return proxy_refused(c, 0, "NUL byte in the answer");
	char *end = strstr(c->hs, "\r\n\r\n");
	if (!end) {
		if (c->hs_len == HS_CAP - 1)
			return proxy_refused(c, 0, "answer head too long");
		return SL_UP_CONNECTING;
	}
	int status = 0;
	if (strncmp(c->hs, "HTTP/1.", 7) || (c->hs[7] != '0' && c->hs[7] != '1') ||
	    c->hs[8] != ' ' || !(c->hs[9] >= '1' && c->hs[9] <= '5') ||
	    !(c->hs[10] >= '0' && c->hs[10] <= '9') || !(c->hs[11] >= '0' && c->hs[11] <= '9') ||
	    (c->hs[12] != ' ' && c->hs[12] != '\r'))
		return proxy_refused(c, 0, "not an HTTP/1 answer");
	status = (c->hs[9] - '0') * 100 + (c->hs[10] - '0') * 10 + (c->hs[11] - '0');
	if (status < 200 || status > 299)
		return proxy_refused(c, status, "not a 2xx answer");
	end[2] = 0; /* the head without its blank line */
	if (has_framing(c->hs))
		return proxy_refused(c, status, "2xx answer announcing a body");
	/* the tunnel's far side speaks second (TLS and HTTP both): anything here already
	 * is not from the peer */
	if ((size_t)(end + 4 - c->hs) != c->hs_len)
		return proxy_refused(c, status, "bytes after the answer head");
	free(c->hs);
	c->hs = NULL;
	if (c->peer.tls)
		return tls_start(c);
	c->stage = SL_UP_READY;
	return 0;
}

static pthread_once_t ex_once = PTHREAD_ONCE_INIT;
static int ex_idx = -1;

static void ex_setup(void)
{
	ex_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

/* OpenSSL has a session for one of our connections (after a TLS 1.2 handshake, or a
 * TLS 1.3 NewSessionTicket, also one read while the connection sat idle): keep the
 * newest per peer identity for the next connection. Runs on the connection's worker. */
static int new_session(SSL *ssl, SSL_SESSION *sess)
{
	struct sl_upconn *c = SSL_get_ex_data(ssl, ex_idx);
	if (!c)
		return 0;
	unsigned int n = sizeof(c->cn->sessions) / sizeof(c->cn->sessions[0]);
	unsigned int i = (unsigned int)(c->peer_hash % n);
	SSL_SESSION_free(c->cn->sessions[i].sess);
	c->cn->sessions[i].hash = c->peer_hash;
	c->cn->sessions[i].sess = sess;
	return 1; /* the reference is ours */
}

SSL_CTX *sl_connector_tls_ctx(const struct sl_peer *p, char *err, size_t errlen)
{
	pthread_once(&ex_once, ex_setup);
	return sl_up_tls_ctx(p, new_session, err, errlen);
}

static int tls_start(struct sl_upconn *c)
{
	char err[256];
	pthread_once(&ex_once, ex_setup);
	SSL_CTX *ctx = sl_up_tls_ctx(&c->peer, new_session, err, sizeof(err));
	if (!ctx) {
		c->cn->st->up_tls_handshake_failed++;
		sl_log(SL_LOG_ERROR, "msg=\"upstream TLS handshake failed\" peer=%s reason=\"%s\"",
		       c->peer.name, err);
		c->why = "TLS set-up";
		return -EPROTO;
	}
	int fd = c->io.fd;
	if (sl_tls_io_init(&c->io, fd, ctx, 0)) {
		c->why = "out of memory";
		return -ENOMEM;
	}
	SSL_set_ex_data(sl_tls_ssl(&c->io), ex_idx, c);
	const char *vname = NULL;
	if (c->peer.verify)
		vname = c->peer.verify_name[0] ? c->peer.verify_name : c->peer.sni;
	unsigned int n = sizeof(c->cn->sessions) / sizeof(c->cn->sessions[0]);
	unsigned int i = (unsigned int)(c->peer_hash % n);
	SSL_SESSION *resume = c->cn->sessions[i].hash == c->peer_hash &&
				      c->cn->sessions[i].sess &&
				      SSL_SESSION_is_resumable(c->cn->sessions[i].sess)
				  ? c->cn->sessions[i].sess
				  : NULL;
	if (sl_tls_client_setup(&c->io, c->peer.sni, vname, resume)) {
		c->cn->st->up_tls_handshake_failed++;
		sl_log(SL_LOG_ERROR,
		       "msg=\"upstream TLS handshake failed\" peer=%s reason=\"bad sni or name\"",
		       c->peer.name);
		c->why = "TLS set-up";
		return -EPROTO;
	}
	c->stage = SL_UP_TLS;
	return tls_step(c);
}

static int tls_step(struct sl_upconn *c)
{
	int rc = sl_tls_handshake(&c->io);
	if (rc == SL_TLS_AGAIN) {
		short ev = sl_io_wants(&c->io, 0);
		sl_upconn_want_read(c, ev & EV_READ);
		sl_upconn_want_write(c, ev & EV_WRITE);
		return SL_UP_CONNECTING;
	}
	if (rc == 0) {
		c->cn->st->up_tls_handshakes++;
		if (sl_tls_resumed(&c->io))
			c->cn->st->up_tls_resumed++;
		c->stage = SL_UP_READY;
		sl_upconn_want_write(c, 0);
		return 0;
	}
	long vr = SSL_get_verify_result(sl_tls_ssl(&c->io));
	if (c->peer.verify && vr != X509_V_OK) {
		c->cn->st->up_tls_verify_failed++;
		sl_log(SL_LOG_WARN,
		       "msg=\"upstream certificate not verified\" peer=%s sni=\"%s\" "
		       "verify_error=\"%s\"",
		       c->peer.name, c->peer.sni, X509_verify_cert_error_string(vr));
		c->why = "certificate not verified";
	} else {
		c->cn->st->up_tls_handshake_failed++;
		sl_log(SL_LOG_WARN, "msg=\"upstream TLS handshake failed\" peer=%s %s",
		       c->peer.name, sl_tls_why(&c->io));
		c->why = "TLS handshake failed";
	}
	return -EPROTO;
}

int sl_upconn_get(struct sl_connector *cn, const struct sl_peer *peer, uint64_t hash,
		  const struct sl_conf_upstream *u, int fresh, void *owner,
		  const struct sl_upconn_cbs *cbs, struct sl_upconn **out)
{
	struct sl_upconn *c = fresh ? NULL : pool_take(cn, peer, hash);
	if (c) {
		c->owner = owner;
		c->cbs = cbs;
		c->reused = 1;
		cn->st->up_reused++;
		*out = c;
		return 0;
	}
	unsigned int max = u ? u->pool.max_conns_per_server : 0;
	struct sl_peer_count *count = sl_conn_counter(hash);
	if (!sl_conn_count_take(count, max))
		return -EBUSY;
	int fd = sl_net_tcp_socket(peer->proxy_len ? peer->proxy.ss_family : peer->addr.ss_family);
	if (fd < 0) {
		sl_conn_count_drop(count);
		return fd;
	}
	struct sl_io io;
	sl_io_init_raw(&io, fd);
	c = upconn_new(cn, &io, peer, hash);
	if (!c) {
		close(fd);
		sl_conn_count_drop(count);
		return -ENOMEM;
	}
	c->count = count;
	c->owner = owner;
	c->cbs = cbs;
	c->stage = SL_UP_TCP;
	/* the pools keep this peer beyond the request: its file names must outlive the
	 * configuration (or the custom proxy's strings) that named them */
	c->peer.ca_file = sl_up_intern(peer->ca_file);
	c->peer.client_cert = sl_up_intern(peer->client_cert);
	c->peer.client_key = sl_up_intern(peer->client_key);
	cn->st->up_new++;
	const struct sockaddr_storage *to = peer->proxy_len ? &peer->proxy : &peer->addr;
	socklen_t to_len = peer->proxy_len ? peer->proxy_len : peer->addrlen;
	int rc;
	if (connect(fd, (const struct sockaddr *)to, to_len) == 0) {
		rc = advance(c);
		if (rc < 0)
			goto fail;
		*out = c;
		return c->stage == SL_UP_READY ? 0 : SL_UP_CONNECTING;
	}
	if (errno == EINPROGRESS) {
		sl_upconn_want_write(c, 1);
		*out = c;
		return SL_UP_CONNECTING;
	}
	rc = -errno;
fail:
	sl_upconn_close(c);
	return rc;
}

/* An event on a connection still going through its stages. */
static void step(struct sl_upconn *c, short what)
{
	int rc;
	switch (c->stage) {
	case SL_UP_TCP: {
		if (!(what & EV_WRITE))
			return;
		int err = 0;
		socklen_t l = sizeof(err);
		if (getsockopt(c->io.fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0)
			err = errno;
		sl_upconn_want_write(c, 0);
		if (err) {
			c->cbs->failed(c->owner, -err, "connect");
			return;
		}
		rc = advance(c);
		break;
	}
	case SL_UP_PROXY_SEND:
		rc = proxy_send(c);
		break;
	case SL_UP_PROXY_READ:
		rc = proxy_read(c);
		break;
	case SL_UP_TLS:
		rc = tls_step(c);
		break;
	default:
		return;
	}
	if (rc < 0) {
		c->cbs->failed(c->owner, rc, c->why ? c->why : "connect");
		return;
	}
	if (c->stage == SL_UP_READY)
		c->cbs->ready(c->owner);
}

static void rd_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sl_upconn *c = arg;
	if (!c->owner) {
		idle_event(c, what);
		return;
	}
	if (c->stage != SL_UP_READY) {
		step(c, EV_READ);
		return;
	}
	c->cbs->readable(c->owner);
}

static void wr_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sl_upconn *c = arg;
	if (!c->owner) {
		sl_upconn_want_write(c, 0);
		return;
	}
	if (c->stage != SL_UP_READY) {
		step(c, EV_WRITE);
		return;
	}
	c->cbs->writable(c->owner);
}

/* ---- waiting for a connection slot ---- */

static void waiter_wake(struct sl_waiter *wt)
{
	struct sl_upwait *q = sl_container_of(wt, struct sl_upwait, w);
	/* the queue let go of it already; the count goes too (a new wait adds it back) */
	sl_conn_wait_add(q->count, -1);
	q->count = NULL;
	q->wake(q);
}

void sl_connector_wait(struct sl_connector *cn, struct sl_upwait *q, uint64_t hash,
		       void (*wake)(struct sl_upwait *q))
{
	if (q->w.queued)
		return;
	q->count = sl_conn_counter(hash);
	sl_conn_wait_add(q->count, 1);
	q->wake = wake;
	q->w.wake = waiter_wake;
	sl_waitq_add(&cn->waitq, &q->w);
}

void sl_connector_unwait(struct sl_connector *cn, struct sl_upwait *q)
{
	if (!q->w.queued)
		return;
	sl_waitq_remove(&cn->waitq, &q->w);
	sl_conn_wait_add(q->count, -1);
	q->count = NULL;
}

void sl_connector_wake(struct sl_connector *cn)
{
	sl_waitq_wake(&cn->waitq, 64);
}
