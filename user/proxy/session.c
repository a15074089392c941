/* The proxy data path: client connection -> request head -> phases -> upstream
 * connection -> response streamed back, one request at a time per connection.
 *
 * Syscall discipline: reads happen when the loop says a socket is readable; writes
 * are attempted at once and a write event is armed only on EAGAIN. Read events stay
 * armed for a connection's life and are dropped only for backpressure, so a
 * keep-alive request costs one read and one write on each side. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/log.h"
#include "proxy/session.h"
#include "upstream/conn_count.h"
#include "upstream/shared_pool.h"

#define SL_CONTINUE "HTTP/1.1 100 Continue\r\n\r\n"

static void client_read_cb(evutil_socket_t fd, short what, void *arg);
static void client_write_cb(evutil_socket_t fd, short what, void *arg);
static void timer_cb(evutil_socket_t fd, short what, void *arg);
static void up_read_cb(evutil_socket_t fd, short what, void *arg);
static void up_write_cb(evutil_socket_t fd, short what, void *arg);
static void parse_request_head(struct sl_session *s);
static void pump_request_body(struct sl_session *s);
static void connect_upstream(struct sl_session *s);
static int acquire_connection(struct sl_session *s);
static void queue_wait(struct sl_session *s);
static void queue_unlink(struct sl_session *s);
static void client_flush(struct sl_session *s);
static void up_flush(struct sl_session *s);
static void finish_request(struct sl_session *s);
static void session_close(struct sl_session *s);
static void send_error(struct sl_session *s, int status);

/* ---- small helpers ---- */

/* Every event callback brackets its work with these: a session closed somewhere down
 * the call chain is freed only on the way out, never under a caller's feet. */
#define ENTER(s) ((s)->depth++)
#define LEAVE(s)                                                                                   \
	do {                                                                                       \
		if (--(s)->depth == 0 && (s)->closed)                                              \
			session_free(s);                                                           \
	} while (0)

static void session_free(struct sl_session *s);

static uint64_t ns_since(const struct timespec *t0)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)(t.tv_sec - t0->tv_sec) * 1000000000ull + (uint64_t)t.tv_nsec -
	       (uint64_t)t0->tv_nsec;
}

static const struct sl_conf *sconf(const struct sl_session *s)
{
	return s->hold->conf;
}

static int iob_alloc(struct sl_worker *w, struct sl_iob *b, enum sl_mem_class c)
{
	if (b->data)
		return 0;
	b->data = sl_mem_get(&w->mem, c);
	if (!b->data)
		return -ENOMEM;
	b->cap = (uint32_t)w->mem.size[c];
	b->cls = (uint8_t)c;
	b->rd = b->fwd = b->parse = b->wr = 0;
	return 0;
}

static void iob_free(struct sl_worker *w, struct sl_iob *b)
{
	if (!b->data)
		return;
	sl_mem_put(&w->mem, b->cls, b->data);
	b->data = NULL;
	b->cap = 0;
	b->rd = b->fwd = b->parse = b->wr = 0;
}

/* Move to a bigger buffer class, keeping offsets (heads are stored as offsets). */
static int iob_grow(struct sl_worker *w, struct sl_iob *b)
{
	if (b->cls == SL_MEM_BIG)
		return -ENOSPC;
	char *n = sl_mem_get(&w->mem, SL_MEM_BIG);
	if (!n)
		return -ENOMEM;
	memcpy(n, b->data, b->wr);
	sl_mem_put(&w->mem, b->cls, b->data);
	b->data = n;
	b->cls = SL_MEM_BIG;
	b->cap = (uint32_t)w->mem.size[SL_MEM_BIG];
	return 0;
}

/* Slide unsent and unparsed bytes down to base, dropping the de-chunking gap. */
static void iob_compact(struct sl_iob *b, uint32_t base)
{
	if (b->rd <= base)
		return;
	uint32_t f = b->fwd - b->rd, u = b->wr - b->parse;
	memmove(b->data + base, b->data + b->rd, f);
	memmove(b->data + base + f, b->data + b->parse, u);
	b->rd = base;
	b->fwd = base + f;
	b->parse = b->fwd;
	b->wr = b->parse + u;
}

static void rd_on(struct sl_session *s)
{
	if (!s->rd_on) {
		event_add(&s->rev, NULL);
		s->rd_on = 1;
	}
}

static void rd_off(struct sl_session *s)
{
	if (s->rd_on) {
		event_del(&s->rev);
		s->rd_on = 0;
	}
}

static void arm(struct sl_session *s, enum sl_timer_kind k)
{
	const struct timeval *tv = NULL;
	struct sl_worker *w = s->w;
	switch (k) {
	case ST_NONE:
		if (s->timer != ST_NONE)
			event_del(&s->tev);
		s->timer = ST_NONE;
		return;
	case ST_KEEPALIVE:
		tv = w->ct_keepalive;
		break;
	case ST_HEADER:
		tv = w->ct_header;
		break;
	case ST_BODY:
		tv = w->ct_body;
		break;
	case ST_CONNECT:
		tv = w->ct_connect;
		break;
	case ST_RESPONSE:
		tv = w->ct_resp;
		break;
	case ST_UPIDLE:
		tv = w->ct_upidle;
		break;
	case ST_TUNNEL:
		tv = w->ct_keepalive;
		break;
	case ST_SEND:
		tv = w->ct_body;
		break;
	case ST_QUEUE:
		tv = w->ct_connect;
		break; /* queue_wait() arms its own */
	}
	s->timer = k;
	event_add(&s->tev, tv);
}

static void set_nodelay(int fd)
{
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* ---- upstream connections ---- */

void sl_upconn_close(struct sl_upconn *c)
{
	if (c->fd >= 0) {
		event_del(&c->rev);
		event_del(&c->wev);
		close(c->fd);
		if (c->count)
			sl_conn_count_drop(c->count);
	}
	free(c);
}

static void up_rd_on(struct sl_upconn *c)
{
	if (!c->rd_on) {
		event_add(&c->rev, NULL);
		c->rd_on = 1;
	}
}

static void up_rd_off(struct sl_upconn *c)
{
	if (c->rd_on) {
		event_del(&c->rev);
		c->rd_on = 0;
	}
}

static void up_wr(struct sl_upconn *c, int on)
{
	if (on && !c->wr_on)
		event_add(&c->wev, NULL);
	else if (!on && c->wr_on)
		event_del(&c->wev);
	c->wr_on = (uint8_t)on;
}

/* Give an idle connection to the shared overflow pool (its watch moves to the keeper). */
static void to_shared(struct sl_worker *w, struct sl_upconn *c)
{
	if (!w->d->spool) {
		sl_upconn_close(c);
		return;
	}
	event_del(&c->rev);
	event_del(&c->wev);
	int fd = c->fd;
	c->fd = -1;
	sl_spool_put(w->d->spool, fd, &c->peer, c->peer_hash, c->requests, c->count);
	sl_upconn_close(c);
}

static void hand_over_cb(struct sl_upconn *c, void *arg)
{
	to_shared(arg, c);
}

/* Requests wait somewhere for a peer this worker holds idle connections to: give
 * those to the shared pool. Called from the worker tick while anyone waits. */
void sl_session_pool_share_waited(struct sl_worker *w)
{
	struct sl_pool *p = &w->pool;
	for (unsigned int g = 0; g < p->n_groups; g++) {
		struct sl_upconn *c = p->groups[g].lru_head;
		while (c) {
			struct sl_upconn *next = c->lru_next;
			if (c->count &&
			    atomic_load_explicit(&c->count->waiters, memory_order_relaxed)) {
				sl_pool_remove(p, c);
				to_shared(w, c);
			}
			c = next;
		}
	}
}

/* A draining worker leaves its idle connections to the others. */
void sl_session_pool_hand_over(struct sl_worker *w)
{
	sl_pool_drain(&w->pool, hand_over_cb, w);
}

/* Detach the session's upstream connection: back to the idle pool or closed. */
static void up_release(struct sl_session *s, int reusable)
{
	struct sl_upconn *c = s->up;
	struct sl_worker *w = s->w;
	if (!c)
		return;
	s->up = NULL;
	c->s = NULL;
	up_wr(c, 0);
	const struct sl_conf_pool *pl = s->upstream ? &s->upstream->pool : NULL;
	if (reusable && pl && pl->max_requests_per_conn && c->requests >= pl->max_requests_per_conn)
		reusable = 0;
	if (!reusable) {
		sl_upconn_close(c);
		if (w->wq_head) /* a slot is free */
			sl_session_wake_queue(w);
		return;
	}
	/* Draining, or requests on other workers wait for a connection to this peer (at
	 * max_conns_per_server): the shared pool is where they can get it. */
	if (w->draining || (c->count && !w->wq_head &&
			    atomic_load_explicit(&c->count->waiters, memory_order_relaxed))) {
		to_shared(w, c);
		return;
	}
	unsigned int g = sl_pool_group(&w->pool, s->upstream ? s->upstream->name : "");
	struct sl_upconn *evicted;
	if (sl_pool_put(&w->pool, c, g, pl ? pl->max_idle_per_worker : 128, &evicted)) {
		to_shared(w, c);
		return;
	}
	c->idle_since_ns = sl_mono_coarse_ns();
	/* watched while idle: EOF or stray bytes close it; the timeout reaps it */
	event_add(&c->rev, sl_worker_common_tv(w, pl ? pl->idle_timeout : 60000));
	c->rd_on = 1;
	if (evicted) {
		w->st->pool_evicted++;
		to_shared(w, evicted);
	}
	if (w->wq_head) /* hand it straight to a waiting request */
		sl_session_wake_queue(w);
}

static void idle_conn_event(struct sl_upconn *c, short what)
{
	char b[1];
	if (!(what & EV_TIMEOUT)) {
		ssize_t n = recv(c->fd, b, sizeof(b), MSG_PEEK | MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
	}
	/* EOF, error, unexpected bytes or idle timeout: never reuse it */
	c->w->st->pool_idle_closed++;
	sl_pool_remove(&c->w->pool, c);
	sl_upconn_close(c);
}

/* Before reusing a connection: nothing pending (no EOF, no stray bytes) and still
 * connected to the peer it was opened for. 0 usable, -1 closed it. */
static int reuse_check(struct sl_worker *w, int fd, const struct sl_peer *peer)
{
	char b[1];
	ssize_t n = recv(fd, b, sizeof(b), MSG_PEEK | MSG_DONTWAIT);
	if (n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
		w->st->pool_idle_closed++;
		return -1;
	}
	struct sockaddr_storage sa;
	socklen_t len = sizeof(sa);
	if (getpeername(fd, (struct sockaddr *)&sa, &len) || len != peer->addrlen ||
	    memcmp(&sa, &peer->addr, len)) {
		w->st->pool_fd_mismatch++;
		sl_log(SL_LOG_WARN,
		       "msg=\"pooled connection no longer points at its peer, closed\" "
		       "peer=%s",
		       peer->name);
		return -1;
	}
	return 0;
}

/* Reuse threshold: a connection idle for less than this was watched by our own loop
 * all along (an EOF would have been seen), so the syscall checks are skipped. */
#define RECHECK_IDLE_NS 1000000000ull

static struct sl_upconn *pool_take(struct sl_session *s)
{
	struct sl_worker *w = s->w;
	struct sl_upconn *c;
	while ((c = sl_pool_get(&w->pool, &s->peer, s->peer_hash))) {
		if (sl_mono_coarse_ns() - c->idle_since_ns < RECHECK_IDLE_NS ||
		    !reuse_check(w, c->fd, &s->peer)) {
			w->st->pool_local++;
			event_add(&c->rev, NULL); /* drop the idle timeout */
			return c;
		}
		sl_upconn_close(c);
	}
	if (!w->d->spool)
		return NULL;
	unsigned int requests;
	struct sl_peer_count *count;
	int fd;
	while ((fd = sl_spool_get(w->d->spool, &s->peer, s->peer_hash, &requests, &count)) >= 0) {
		if (reuse_check(w, fd, &s->peer) || !(c = calloc(1, sizeof(*c)))) {
			close(fd);
			if (count)
				sl_conn_count_drop(count);
			continue;
		}
		c->fd = fd;
		c->count = count;
		c->w = w;
		c->peer = s->peer;
		c->peer_hash = s->peer_hash;
		c->requests = requests;
		c->from_shared = 1;
		event_assign(&c->rev, w->base, fd, EV_READ | EV_PERSIST, up_read_cb, c);
		event_assign(&c->wev, w->base, fd, EV_WRITE | EV_PERSIST, up_write_cb, c);
		event_add(&c->rev, NULL);
		c->rd_on = 1;
		w->st->pool_shared++;
		return c;
	}
	return NULL;
}

/* ---- output to the client ---- */

static void client_wr(struct sl_session *s, int on)
{
	if (on && !s->wr_on)
		event_add(&s->wev, NULL);
	else if (!on && s->wr_on)
		event_del(&s->wev);
	s->wr_on = (uint8_t)on;
}

/* Write what is pending for the client: out (if it holds the response head), the
 * local body, then the response body bytes from uin. */
static int client_write_pending(struct sl_session *s)
{
	for (;;) {
		struct iovec iov[3];
		int n = 0;
		size_t total = 0;
		if (s->out_to_client && s->out.rd < s->out.wr) {
			iov[n].iov_base = s->out.data + s->out.rd;
			iov[n++].iov_len = s->out.wr - s->out.rd;
		}
		if (s->lbody && s->lbody_off < s->lbody_len) {
			iov[n].iov_base = (void *)(s->lbody + s->lbody_off);
			iov[n++].iov_len = s->lbody_len - s->lbody_off;
		}
		if (s->uin.data && s->uin.rd < s->uin.fwd) {
			iov[n].iov_base = s->uin.data + s->uin.rd;
			iov[n++].iov_len = s->uin.fwd - s->uin.rd;
		}
		if (!n)
			return 0;
		for (int i = 0; i < n; i++)
			total += iov[i].iov_len;
		ssize_t r = writev(s->fd, iov, n);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return 1;
			return -errno;
		}
		size_t left = (size_t)r;
		s->r_out += left;
		s->w->st->bytes_out += left;
		s->resp_started = 1;
		if (s->out_to_client && s->out.rd < s->out.wr) {
			size_t k = s->out.wr - s->out.rd;
			k = k < left ? k : left;
			s->out.rd += (uint32_t)k;
			left -= k;
		}
		if (s->lbody && s->lbody_off < s->lbody_len) {
			size_t k = s->lbody_len - s->lbody_off;
			k = k < left ? k : left;
			s->lbody_off += k;
			left -= k;
		}
		if (left)
			s->uin.rd += (uint32_t)left;
		if ((size_t)r < total)
			return 1; /* short write: the socket buffer is full */
	}
}

static void client_flush(struct sl_session *s)
{
	int r = client_write_pending(s);
	if (r < 0) {
		sl_log(SL_LOG_DEBUG, "msg=\"client write failed\" client=%s err=%d", s->client_str,
		       -r);
		if (s->up)
			s->up_broken = 1;
		session_close(s);
		return;
	}
	if (r > 0) {
		client_wr(s, 1);
		/* a client that stops reading must not hold us: once the upstream side is
		 * paused for it (or done), its time is what counts */
		if (s->timer == ST_NONE || (s->timer == ST_UPIDLE && s->up && !s->up->rd_on))
			arm(s, ST_SEND);
		return;
	}
	client_wr(s, 0);
	if (s->timer == ST_SEND)
		arm(s, ST_NONE);
	struct sl_iob *b = &s->uin;
	if (b->data && b->rd == b->parse && b->parse == b->wr)
		b->rd = b->fwd = b->parse = b->wr = 0;
	if (s->state == SS_CLOSING) {
		session_close(s);
		return;
	}
	if (s->state == SS_TUNNEL) {
		if (s->up_eof) {
			shutdown(s->fd, SHUT_WR);
			if (s->client_eof)
				session_close(s);
		} else if (s->up) {
			up_rd_on(s->up);
		}
		return;
	}
	if (s->up && !s->up->rd_on && !s->resp_done)
		up_rd_on(s->up); /* room again in uin */
	if (s->resp_done)
		finish_request(s);
}

/* ---- local responses ---- */

static void queue_local(struct sl_session *s, int status, const char *ctype,
			const struct sl_conf_header *hdrs, unsigned int n_hdrs, const char *body,
			size_t body_len, int close_after)
{
	struct sl_out o;
	if (iob_alloc(s->w, &s->out, SL_MEM_SMALL)) {
		session_close(s);
		return;
	}
	sl_out_init(&o, s->out.data, s->out.cap);
	sl_out_str(&o, "HTTP/1.1 ");
	sl_out_uint(&o, (uint64_t)status);
	sl_out_put(&o, " ", 1);
	sl_out_str(&o, sl_http_reason(status));
	sl_out_str(&o, "\r\n");
	if (ctype) {
		sl_out_str(&o, "Content-Type: ");
		sl_out_str(&o, ctype);
		sl_out_str(&o, "\r\n");
	}
	for (unsigned int i = 0; i < n_hdrs; i++) {
		sl_out_str(&o, hdrs[i].name);
		sl_out_str(&o, ": ");
		sl_out_str(&o, hdrs[i].value);
		sl_out_str(&o, "\r\n");
	}
	int has_body = !(s->is_head_req || status == 204 || status == 304);
	if (status != 204 && status != 304) {
		sl_out_str(&o, "Content-Length: ");
		sl_out_uint(&o, body_len);
		sl_out_str(&o, "\r\n");
	}
	if (close_after || !s->keepalive || !s->req_done) {
		s->keepalive = 0;
		sl_out_str(&o, "Connection: close\r\n");
	} else if (s->req.http_minor == 0) {
		sl_out_str(&o, "Connection: keep-alive\r\n");
	}
	sl_out_str(&o, "\r\n");
	if (!o.ok) {
		session_close(s);
		return;
	}
	s->out.rd = 0;
	s->out.wr = (uint32_t)o.len;
	s->out_to_client = 1;
	s->lbody = has_body ? body : NULL;
	s->lbody_len = has_body ? body_len : 0;
	s->lbody_off = 0;
	s->status = status;
	s->local_resp = 1;
	s->resp_done = 1;
	s->resp_head_done = 1;
	arm(s, ST_NONE);
	client_flush(s);
}

static const char *error_body(int status, size_t *len)
{
	static char bodies[600][48];
	static int ready[600];
	if (status < 100 || status >= 600)
		status = 500;
	if (!__atomic_load_n(&ready[status], __ATOMIC_ACQUIRE)) {
		snprintf(bodies[status], sizeof(bodies[status]), "%d %s\n", status,
			 sl_http_reason(status));
		__atomic_store_n(&ready[status], 1, __ATOMIC_RELEASE);
	}
	*len = strlen(bodies[status]);
	return bodies[status];
}

/* An error found by sluice. 404 and 503 keep the connection when the request was
 * read whole; anything else closes it. */
static void send_error(struct sl_session *s, int status)
{
	if (status >= 500)
		s->w->st->err_upstream++;
	else
		s->w->st->err_client++;
	if (s->up) {
		s->up_broken = 1;
		up_release(s, 0);
	}
	if (s->resp_started) {
		/* part of a response is on the wire: the only honest signal left is a close */
		s->status = s->status ? s->status : status;
		s->keepalive = 0;
		finish_request(s);
		return;
	}
	s->out.rd = s->out.wr = 0;
	s->out_to_client = 0;
	if (s->uin.data)
		s->uin.rd = s->uin.fwd = s->uin.parse = s->uin.wr = 0;
	const struct sl_proxy_ops *ops = s->w->d->ops;
	if (ops->error_response && s->hold) {
		s->status = status;
		if (ops->error_response(s, s->ctx, status) == SL_DONE && s->local_resp)
			return;
	}
	size_t len;
	const char *body = error_body(status, &len);
	int keep = (status == 404 || status == 503) && s->req_done;
	queue_local(s, status, "text/plain", NULL, 0, body, len, !keep);
}

int sl_respond(struct sl_session *s, int status, const char *content_type, const char *body,
	       size_t body_len)
{
	if (s->resp_started || s->local_resp)
		return -EALREADY;
	if (s->up) {
		s->up_broken = 1;
		up_release(s, 0);
	}
	queue_local(s, status, content_type, NULL, 0, body, body_len, 0);
	return 0;
}

int sl_session_respond_conf(struct sl_session *s, const struct sl_conf_respond *r)
{
	queue_local(s, r->status, NULL, r->headers, r->n_headers, r->body, r->body_len, 0);
	return SL_DONE;
}

/* ---- request head ---- */

static uint32_t head_limit(const struct sl_session *s)
{
	return (uint32_t)s->w->hold->conf->limits.max_header_bytes;
}

static void start_request(struct sl_session *s)
{
	s->state = SS_HEAD;
	clock_gettime(CLOCK_MONOTONIC, &s->t_start);
	const struct sl_conf *c = s->w->hold->conf;
	sl_head_reset(&s->req, c->limits.max_header_count, (uint32_t)c->limits.max_target_length);
	arm(s, ST_HEADER);
}

/* Split the target into path and, for absolute-form, authority. 0 or -EPROTO. */
static int split_target(struct sl_session *s)
{
	struct sl_head *h = &s->req;
	const char *t = s->in.data + h->target_off;
	uint32_t n = h->target_len;
	if (n && t[0] == '/') {
		h->path_off = h->target_off;
		h->path_len = n;
		return 0;
	}
	if (n == 1 && t[0] == '*') {
		h->path_off = h->target_off;
		h->path_len = 1;
		return 0;
	}
	uint32_t skip = 0;
	if (n > 7 && !strncasecmp(t, "http://", 7))
		skip = 7;
	else if (n > 8 && !strncasecmp(t, "https://", 8))
		skip = 8;
	else
		return -EPROTO;
	uint32_t a = skip;
	while (a < n && t[a] != '/' && t[a] != '?')
		a++;
	if (a == skip)
		return -EPROTO;
	h->authority_off = h->target_off + skip;
	h->authority_len = a - skip;
	if (a < n && t[a] == '/') {
		h->path_off = h->target_off + a;
		h->path_len = n - a;
	} else {
		/* "http://host" or "http://host?q": the path is "/" (+ query) */
		h->path_off = 0;
		h->path_len = 0;
	}
	return 0;
}

static int method_is_idempotent(int m)
{
	switch (m) {
	case HTTP_GET:
	case HTTP_HEAD:
	case HTTP_PUT:
	case HTTP_DELETE:
	case HTTP_OPTIONS:
	case HTTP_TRACE:
		return 1;
	default:
		return 0;
	}
}

static void request_head_done(struct sl_session *s)
{
	struct sl_head *h = &s->req;
	const char *why = NULL;
	struct sl_worker *w = s->w;

	s->head_end = s->in.parse;
	s->in.rd = s->in.fwd = s->head_end;
	s->state = SS_PROXY;
	s->hold = sl_worker_conf_get(w);
	s->listener = &sconf(s)->listeners[s->lsn->index];
	w->st->requests++;
	s->keepalive = llhttp_should_keep_alive(&s->rp.p) && !w->draining;
	s->is_head_req = s->rp.p.method == HTTP_HEAD;
	s->idempotent = (uint8_t)method_is_idempotent(s->rp.p.method);

	if (sl_head_analyze(h, s->in.data, 1, &why) || split_target(s)) {
		sl_log(SL_LOG_DEBUG, "msg=\"bad request\" client=%s reason=\"%s\"", s->client_str,
		       why ? why : "bad target");
		s->req_done = 1; /* nothing more will be read from this connection */
		send_error(s, 400);
		return;
	}
	if (s->rp.p.method == HTTP_CONNECT) {
		s->req_done = 1;
		send_error(s, 405);
		return;
	}
	uint64_t max_body = sconf(s)->limits.max_body_size;
	if (max_body && h->info.has_cl && s->rp.p.content_length > max_body) {
		s->req_done = 1;
		send_error(s, 413);
		return;
	}
	s->has_body = h->info.chunked || (h->info.has_cl && s->rp.p.content_length > 0);
	s->upgrade_req = s->rp.p.upgrade && h->info.has_upgrade && h->info.conn_upgrade;
	s->expect_continue = h->info.expect_continue && h->http_minor >= 1 &&
			     (h->info.chunked || s->rp.p.content_length > 0);
	if (h->info.expect_continue)
		sl_head_remove(h, s->in.data, "expect", 6);
	arm(s, (h->info.chunked || s->rp.p.content_length) ? ST_BODY : ST_NONE);

	/* Run the parser over what follows the head: completes body-less requests now. */
	pump_request_body(s);
	if (s->closed || s->local_resp)
		return;

	const struct sl_proxy_ops *ops = w->d->ops;
	if (ops->ctx_size)
		memset(s->ctx, 0, ops->ctx_size);
	if (ops->request_filter) {
		int r = ops->request_filter(s, s->ctx);
		if (r == SL_DONE || s->local_resp || s->closed)
			return;
		if (r < 0) {
			send_error(s, 500);
			return;
		}
	}
	connect_upstream(s);
}

static void parse_request_head(struct sl_session *s)
{
	struct sl_iob *b = &s->in;
	size_t used;
	llhttp_errno_t e =
	    sl_http_execute(&s->rp, b->data, b->data + b->parse, b->wr - b->parse, &used);
	b->parse += (uint32_t)used;
	s->r_in += used;
	if (e == HPE_PAUSED && s->rp.headers_done) {
		if (b->parse > head_limit(s))
			goto too_big;
		request_head_done(s);
		return;
	}
	if (e == HPE_OK) {
		if (b->parse > head_limit(s))
			goto too_big;
		rd_on(s); /* the rest of the head */
		return;
	}
	s->req_done = 1;
	s->keepalive = 0;
	sl_log(SL_LOG_DEBUG, "msg=\"bad request\" client=%s reason=\"%s\"", s->client_str,
	       llhttp_get_error_reason(&s->rp.p) ? llhttp_get_error_reason(&s->rp.p) : "");
	if (!s->hold)
		s->hold = sl_worker_conf_get(s->w);
	send_error(s, s->req.err_status ? s->req.err_status : 400);
	return;
too_big:
	s->req_done = 1;
	s->keepalive = 0;
	if (!s->hold)
		s->hold = sl_worker_conf_get(s->w);
	send_error(s, 431);
}

/* ---- request body and upstream head ---- */

static int is_retryable(const struct sl_session *s)
{
	if (s->resp_started || s->resp_head_done || (s->uin.data && s->uin.wr))
		return 0; /* a response byte arrived: the upstream acted on it */
	unsigned int max = s->upstream ? s->upstream->retries : 1;
	/* a body can be sent again only while all of it is still in the buffer */
	int body_gone = s->has_body && (!s->req_done || s->body_discarded);
	if (s->up && s->up->reused && s->tries <= max + 1 && !body_gone)
		return 1; /* stale pooled connection: the upstream never saw the request */
	return s->idempotent && !s->has_body && s->tries <= max;
}

static void pump_request_body(struct sl_session *s)
{
	struct sl_iob *b = &s->in;
	const struct sl_proxy_ops *ops = s->w->d->ops;
	if (!s->req_done) {
		size_t used;
		uint32_t old = b->parse;
		llhttp_errno_t e =
		    sl_http_execute(&s->rp, b->data, b->data + b->parse, b->wr - b->parse, &used);
		b->parse += (uint32_t)used;
		b->fwd = b->parse;
		s->r_in += used;
		if (e == HPE_PAUSED && s->rp.message_done)
			s->req_done = 1;
		else if (e != HPE_OK) {
			s->req_done = 1;
			s->keepalive = 0;
			send_error(s, 400);
			return;
		}
		uint64_t max = sconf(s)->limits.max_body_size;
		if (max && s->rp.body_seen > max) {
			s->req_done = 1;
			s->keepalive = 0;
			send_error(s, 413);
			return;
		}
		if (ops->request_body_filter && (b->parse > old || s->req_done) && s->hold &&
		    s->state == SS_PROXY) {
			if (ops->request_body_filter(s, s->ctx, b->data + old, b->parse - old,
						     s->req_done) < 0) {
				s->keepalive = 0;
				send_error(s, 400);
				return;
			}
		}
		if (s->req_done) {
			if (s->timer == ST_BODY)
				arm(s, ST_NONE);
		}
	}
	if (s->up && !s->up->connecting && s->head_queued)
		up_flush(s);
}

static int build_upstream_head(struct sl_session *s)
{
	struct sl_head *h = &s->req;
	const char *base = s->in.data;
	const struct sl_conf *c = sconf(s);
	char tmp[1024];
	const char *host = NULL;
	size_t host_len = 0;

	if (h->authority_len) {
		host = base + h->authority_off;
		host_len = h->authority_len;
	} else if (h->info.host_idx >= 0) {
		host = sl_hdr_value(h, base, (unsigned)h->info.host_idx);
		host_len = h->h[h->info.host_idx].value_len;
	}
	/* The common case (no X-Forwarded-* from the client) appends without scanning. */
	if (c->forwarded.x_forwarded_for) {
		if (h->info.n_xff) {
			struct sl_out o;
			sl_out_init(&o, tmp, sizeof(tmp));
			for (unsigned int i = 0; i < h->n; i++) {
				if ((h->h[i].flags & SL_HDR_REMOVED) || h->h[i].name_len != 15 ||
				    strncasecmp(sl_hdr_name(h, base, i), "x-forwarded-for", 15))
					continue;
				sl_out_put(&o, sl_hdr_value(h, base, i), h->h[i].value_len);
				sl_out_put(&o, ", ", 2);
				h->h[i].flags |= SL_HDR_REMOVED;
			}
			sl_out_str(&o, s->client_ip);
			if (!o.ok || sl_head_append(h, "X-Forwarded-For", 15, tmp, o.len))
				return -ENOSPC;
		} else if (sl_head_append(h, "X-Forwarded-For", 15, s->client_ip,
					  strlen(s->client_ip))) {
			return -ENOSPC;
		}
	}
	if (c->forwarded.x_forwarded_proto) {
		if (h->info.has_xfp)
			sl_head_remove(h, base, "x-forwarded-proto", 17);
		if (sl_head_append(h, "X-Forwarded-Proto", 17, "http", 4))
			return -ENOSPC;
	}
	if (host && c->forwarded.x_forwarded_host) {
		if (h->info.has_xfh)
			sl_head_remove(h, base, "x-forwarded-host", 16);
		if (sl_head_append(h, "X-Forwarded-Host", 16, host, host_len))
			return -ENOSPC;
	}
	if (host && h->authority_len) {
		sl_head_remove(h, base, "host", 4);
		if (sl_head_append(h, "Host", 4, host, host_len))
			return -ENOSPC;
	}

	const struct sl_proxy_ops *ops = s->w->d->ops;
	if (ops->upstream_request_filter && ops->upstream_request_filter(s, s->ctx) < 0)
		return -ECANCELED;

	if (iob_alloc(s->w, &s->out, SL_MEM_SMALL))
		return -ENOMEM;
	for (;;) {
		struct sl_out o;
		sl_out_init(&o, s->out.data, s->out.cap);
		sl_out_str(&o, llhttp_method_name((llhttp_method_t)s->rp.p.method));
		sl_out_put(&o, " ", 1);
		if (h->authority_len && !h->path_len) {
			sl_out_put(&o, "/", 1);
			uint32_t q = h->authority_off + h->authority_len;
			sl_out_put(&o, base + q, h->target_off + h->target_len - q);
		} else {
			sl_out_put(&o, base + h->path_off, h->path_len);
		}
		sl_out_str(&o, " HTTP/1.1\r\n");
		sl_out_headers(&o, h, base);
		if (s->upgrade_req && h->info.upgrade_idx >= 0) {
			sl_out_str(&o, "Connection: upgrade\r\nUpgrade: ");
			sl_out_put(&o, sl_hdr_value(h, base, (unsigned)h->info.upgrade_idx),
				   h->h[h->info.upgrade_idx].value_len);
			sl_out_str(&o, "\r\n");
		}
		if (h->info.chunked)
			sl_out_str(&o, "Transfer-Encoding: chunked\r\n");
		sl_out_str(&o, "\r\n");
		if (o.ok) {
			s->out.rd = 0;
			s->out.wr = (uint32_t)o.len;
			s->out_to_client = 0;
			s->head_queued = 1;
			return 0;
		}
		if (iob_grow(s->w, &s->out))
			return -ENOSPC;
	}
}

/* ---- upstream connection set-up ---- */

static void up_connected(struct sl_session *s)
{
	struct sl_upconn *c = s->up;
	c->connecting = 0;
	up_rd_on(c);
	c->requests++;
	clock_gettime(CLOCK_MONOTONIC, &s->t_up);
	sl_http_parser_init(&s->up_p, 0, &s->resp);
	s->up_p.skip_body = s->is_head_req;
	sl_head_reset(&s->resp, SL_HDR_MAX, 0);
	if (s->expect_continue && !s->sent_continue && !s->req_done) {
		/* sluice streams the body, so it may ask for it as soon as it has a peer */
		ssize_t r = write(s->fd, SL_CONTINUE, sizeof(SL_CONTINUE) - 1);
		(void)r;
		s->sent_continue = 1;
	}
	if (s->req_done)
		arm(s, ST_RESPONSE);
	else
		arm(s, ST_BODY);
	up_flush(s);
}

/* -EBUSY: the peer is at pool.max_conns_per_server (the request queues). */
static int up_connect(struct sl_session *s)
{
	struct sl_worker *w = s->w;
	unsigned int max = s->upstream ? s->upstream->pool.max_conns_per_server : 0;
	struct sl_peer_count *count = sl_conn_counter(s->peer_hash);
	if (!sl_conn_count_take(count, max))
		return -EBUSY;
	int fd = socket(s->peer.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		sl_conn_count_drop(count);
		return -errno;
	}
	set_nodelay(fd);
	struct sl_upconn *c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		sl_conn_count_drop(count);
		return -ENOMEM;
	}
	c->count = count;
	c->fd = fd;
	c->w = w;
	c->s = s;
	c->peer = s->peer;
	c->peer_hash = s->peer_hash;
	event_assign(&c->rev, w->base, fd, EV_READ | EV_PERSIST, up_read_cb, c);
	event_assign(&c->wev, w->base, fd, EV_WRITE | EV_PERSIST, up_write_cb, c);
	s->up = c;
	w->st->up_new++;
	if (connect(fd, (struct sockaddr *)&s->peer.addr, s->peer.addrlen) == 0) {
		up_connected(s);
		return 0;
	}
	if (errno == EINPROGRESS) {
		c->connecting = 1;
		up_wr(c, 1);
		arm(s, ST_CONNECT);
		return 0;
	}
	int err = -errno;
	s->up = NULL;
	sl_upconn_close(c);
	return err;
}

/* A connect failed: 1 when the proxy asked for another try, 0 when an error went out. */
static int connect_failed(struct sl_session *s, int err)
{
	const struct sl_proxy_ops *ops = s->w->d->ops;
	sl_log(SL_LOG_WARN, "msg=\"upstream connect failed\" peer=%s err=\"%s\" try=%u",
	       s->peer.name, strerror(-err), s->tries);
	if (s->up) {
		s->up_broken = 1;
		up_release(s, 0);
	}
	if (ops->fail_to_connect && ops->fail_to_connect(s, s->ctx, &s->peer, err) == SL_RETRY)
		return 1;
	send_error(s, err == -ETIMEDOUT ? 504 : 502);
	return 0;
}

static void connect_upstream(struct sl_session *s)
{
	const struct sl_proxy_ops *ops = s->w->d->ops;
	for (;;) {
		s->tries++;
		s->tried_prev = s->tried;
		memset(&s->peer, 0, sizeof(s->peer));
		int r = ops->upstream_peer(s, s->ctx, &s->peer);
		if (r == SL_DONE || s->local_resp || s->closed)
			return;
		if (r < 0) {
			send_error(s, (r == -EAGAIN || r == -ENOENT) ? 503 : 502);
			return;
		}
		if (!s->head_queued) {
			r = build_upstream_head(s);
			if (r) {
				send_error(s, r == -ENOSPC ? 431 : 500);
				return;
			}
		}
		s->out.rd = 0;
		s->out_to_client = 0;
		s->up_broken = 0; /* it described the previous attempt's connection */
		if (s->uin.data)
			s->uin.rd = s->uin.fwd = s->uin.parse = s->uin.wr = 0;
		if (s->peer.tls) {
			sl_log(SL_LOG_ERROR,
			       "msg=\"TLS to upstreams is not supported yet\" peer=%s",
			       s->peer.name);
			send_error(s, 502);
			return;
		}
		s->peer_hash = sl_peer_hash(&s->peer);
		if (!acquire_connection(s))
			return;
	}
}

/* A pooled connection, else a new one, else (at max_conns_per_server) a place in the
 * worker's queue. 0 when the request is on its way (or answered), 1 when the caller
 * should ask for another peer. */
static int acquire_connection(struct sl_session *s)
{
	struct sl_upconn *c = s->fresh_only ? NULL : pool_take(s);
	if (c) {
		c->s = s;
		c->reused = 1;
		s->up = c;
		s->w->st->up_reused++;
		up_connected(s);
		return 0;
	}
	int r = up_connect(s);
	if (r == -EBUSY) {
		queue_wait(s);
		return 0;
	}
	return r && connect_failed(s, r);
}

/* ---- waiting for a connection slot (pool.max_conns_per_server) ---- */

static void queue_unlink(struct sl_session *s)
{
	struct sl_worker *w = s->w;
	if (!s->queued)
		return;
	if (s->wq_prev)
		s->wq_prev->wq_next = s->wq_next;
	else
		w->wq_head = s->wq_next;
	if (s->wq_next)
		s->wq_next->wq_prev = s->wq_prev;
	else
		w->wq_tail = s->wq_prev;
	s->wq_prev = s->wq_next = NULL;
	s->queued = 0;
	sl_conn_wait_add(s->wait_count, -1);
}

static void queue_wait(struct sl_session *s)
{
	struct sl_worker *w = s->w;
	if (!s->queued) {
		s->queued = 1;
		s->wait_count = sl_conn_counter(s->peer_hash);
		sl_conn_wait_add(s->wait_count, 1);
		s->wq_next = NULL;
		s->wq_prev = w->wq_tail;
		if (w->wq_tail)
			w->wq_tail->wq_next = s;
		else
			w->wq_head = s;
		w->wq_tail = s;
	}
	if (s->timer != ST_QUEUE) { /* first time in: the deadline does not move on retries */
		w->st->queue_waits++;
		s->timer = ST_QUEUE;
		event_add(&s->tev, sl_worker_common_tv(
				       w, s->upstream ? s->upstream->pool.queue_timeout : 3000));
	}
}

/* Give waiting requests another go, oldest first: a connection may have come back to
 * the pool or a slot freed (here or on another worker). Called from the worker tick
 * and whenever this worker releases a connection. */
void sl_session_wake_queue(struct sl_worker *w)
{
	/* not re-entrant: a release deep inside acquire_connection() would otherwise walk
	 * (and maybe free) the sessions this loop is holding on to */
	if (w->waking)
		return;
	w->waking = 1;
	struct sl_session *s = w->wq_head;
	unsigned int budget = 64;
	while (s && budget--) {
		struct sl_session *next = s->wq_next;
		queue_unlink(s);
		ENTER(s);
		/* still at the limit: it goes back to the tail, its deadline unchanged */
		if (acquire_connection(s) && !s->closed)
			connect_upstream(s);
		LEAVE(s);
		s = next;
	}
	w->waking = 0;
}

static void retry_request(struct sl_session *s)
{
	if (s->up && s->up->reused) {
		s->w->st->pool_stale_retries++;
		/* the peer is fine, the pooled connection was stale: same choice, new socket */
		s->tried = s->tried_prev;
		s->fresh_only = 1;
	}
	up_release(s, 0);
	s->up_broken = 0;
	s->req_sent = 0;
	if (s->has_body)
		s->in.rd = s->head_end; /* the whole body is still there (is_retryable) */
	connect_upstream(s);
}

/* ---- request bytes to the upstream ---- */

static void up_write_failed(struct sl_session *s, int err)
{
	sl_log(SL_LOG_DEBUG, "msg=\"upstream write failed\" peer=%s err=%d", s->peer.name, -err);
	s->up_broken = 1;
	if (is_retryable(s)) {
		retry_request(s);
		return;
	}
	if (s->uin.data && s->uin.wr) {
		/* a response is arriving: let the read side finish it */
		s->keepalive = 0;
		up_wr(s->up, 0);
		return;
	}
	send_error(s, 502);
}

static void up_flush(struct sl_session *s)
{
	struct sl_upconn *c = s->up;
	struct sl_iob *b = &s->in;
	if (!c || c->connecting || (s->up_broken && s->state != SS_TUNNEL))
		return;
	for (;;) {
		struct iovec iov[2];
		int n = 0;
		size_t total = 0;
		if (!s->out_to_client && s->out.rd < s->out.wr) {
			iov[n].iov_base = s->out.data + s->out.rd;
			iov[n++].iov_len = s->out.wr - s->out.rd;
		}
		if (b->data && b->rd < b->fwd) {
			iov[n].iov_base = b->data + b->rd;
			iov[n++].iov_len = b->fwd - b->rd;
		}
		if (!n)
			break;
		for (int i = 0; i < n; i++)
			total += iov[i].iov_len;
		ssize_t r = writev(c->fd, iov, n);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				up_wr(c, 1);
				return;
			}
			up_write_failed(s, -errno);
			return;
		}
		size_t left = (size_t)r;
		if (!s->out_to_client && s->out.rd < s->out.wr) {
			size_t k = s->out.wr - s->out.rd;
			k = k < left ? k : left;
			s->out.rd += (uint32_t)k;
			left -= k;
		}
		b->rd += (uint32_t)left;
		if ((size_t)r < total) {
			up_wr(c, 1);
			return;
		}
	}
	up_wr(c, 0);
	if (s->state == SS_TUNNEL) {
		if (b->rd == b->wr)
			b->rd = b->fwd = b->parse = b->wr = 0;
		if (s->client_eof) {
			shutdown(c->fd, SHUT_WR);
			if (s->up_eof)
				session_close(s);
			return;
		}
		rd_on(s);
		return;
	}
	if (!s->req_done && b->rd == b->parse && b->parse == b->wr && b->rd > s->head_end) {
		b->rd = b->fwd = b->parse = b->wr = s->head_end;
		s->body_discarded = 1;
	}
	if (!s->req_done && !s->client_eof)
		rd_on(s);
	if (s->req_done && !s->req_sent) {
		s->req_sent = 1;
		if (!s->resp_head_done)
			arm(s, ST_RESPONSE);
	}
}

/* ---- response ---- */

static int response_head(struct sl_session *s)
{
	struct sl_head *h = &s->resp;
	struct sl_iob *b = &s->uin;
	const char *why = NULL;
	int st = h->status;
	const struct sl_proxy_ops *ops = s->w->d->ops;

	s->resp_head_done = 1;
	if (b->parse > head_limit(s)) {
		sl_log(SL_LOG_WARN, "msg=\"upstream response head too big\" peer=%s bytes=%u",
		       s->peer.name, b->parse);
		s->up_broken = 1;
		send_error(s, 502);
		return -1;
	}
	if (st >= 100 && st < 200 && st != 101)
		return 0; /* interim: dropped (sluice sent its own 100 Continue) */
	if ((st == 101 && !s->upgrade_req) || (!s->out_to_client && s->out.rd < s->out.wr)) {
		s->up_broken = 1;
		send_error(s, 502);
		return -1;
	}
	if (sl_head_analyze(h, b->data, 0, &why)) {
		sl_log(SL_LOG_WARN, "msg=\"bad upstream response\" peer=%s reason=\"%s\"",
		       s->peer.name, why);
		s->up_broken = 1;
		send_error(s, 502);
		return -1;
	}
	s->status = st;
	s->up_time_ns = ns_since(&s->t_up);
	if (ops->response_filter && ops->response_filter(s, s->ctx) < 0) {
		s->up_broken = 1;
		send_error(s, 502);
		return -1;
	}
	if (s->is_head_req || st == 204 || st == 304 || st == 101)
		s->body_mode = BM_NONE;
	else if (h->info.chunked)
		s->body_mode = s->req.http_minor >= 1 ? BM_RAW : BM_DECHUNK;
	else if (h->info.has_cl)
		s->body_mode = BM_RAW;
	else
		s->body_mode = BM_EOF;
	if (s->body_mode == BM_EOF || s->body_mode == BM_DECHUNK || !s->req_done ||
	    (s->upgrade_req && st != 101) || s->w->draining)
		s->keepalive = 0;
	s->up_p.dechunk = s->body_mode == BM_DECHUNK;

	for (;;) {
		struct sl_out o;
		sl_out_init(&o, s->out.data, s->out.cap);
		sl_out_str(&o, "HTTP/1.1 ");
		sl_out_uint(&o, (uint64_t)st);
		sl_out_put(&o, " ", 1);
		sl_out_str(&o, sl_http_reason(st));
		sl_out_str(&o, "\r\n");
		sl_out_headers(&o, h, b->data);
		if (s->body_mode == BM_RAW && h->info.chunked)
			sl_out_str(&o, "Transfer-Encoding: chunked\r\n");
		if (st == 101) {
			sl_out_str(&o, "Connection: upgrade\r\n");
			if (h->info.upgrade_idx >= 0) {
				sl_out_str(&o, "Upgrade: ");
				sl_out_put(&o,
					   sl_hdr_value(h, b->data, (unsigned)h->info.upgrade_idx),
					   h->h[h->info.upgrade_idx].value_len);
				sl_out_str(&o, "\r\n");
			}
		} else if (!s->keepalive) {
			sl_out_str(&o, "Connection: close\r\n");
		} else if (s->req.http_minor == 0) {
			sl_out_str(&o, "Connection: keep-alive\r\n");
		}
		sl_out_str(&o, "\r\n");
		if (o.ok) {
			s->out.rd = 0;
			s->out.wr = (uint32_t)o.len;
			s->out_to_client = 1;
			break;
		}
		if (iob_grow(s->w, &s->out)) {
			s->up_broken = 1;
			send_error(s, 502);
			return -1;
		}
	}
	b->rd = b->fwd = b->parse;
	return 0;
}

static void start_tunnel(struct sl_session *s);
static void log_request(struct sl_session *s);

static void parse_response(struct sl_session *s)
{
	struct sl_iob *b = &s->uin;
	const struct sl_proxy_ops *ops = s->w->d->ops;
	while (!s->resp_done) {
		size_t used;
		uint32_t old_fwd = b->fwd;
		if (s->up_p.dechunk)
			s->up_p.dechunk_wr = b->data + b->fwd;
		llhttp_errno_t e =
		    sl_http_execute(&s->up_p, b->data, b->data + b->parse, b->wr - b->parse, &used);
		b->parse += (uint32_t)used;
		if (s->resp_head_done) {
			b->fwd =
			    s->up_p.dechunk ? (uint32_t)(s->up_p.dechunk_wr - b->data) : b->parse;
			if (ops->response_body_filter &&
			    (b->fwd > old_fwd || s->up_p.message_done) &&
			    ops->response_body_filter(s, s->ctx, b->data + old_fwd,
						      b->fwd - old_fwd, s->up_p.message_done) < 0) {
				s->up_broken = 1;
				send_error(s, 502);
				return;
			}
		}
		if (e == HPE_OK) {
			if (!s->resp_head_done && b->wr > head_limit(s)) {
				s->up_broken = 1;
				send_error(s, 502);
				return;
			}
			break;
		}
		if (e != HPE_PAUSED) {
			sl_log(SL_LOG_WARN, "msg=\"bad upstream response\" peer=%s reason=\"%s\"",
			       s->peer.name, llhttp_get_error_reason(&s->up_p.p));
			s->up_broken = 1;
			send_error(s, 502);
			return;
		}
		if (s->up_p.headers_done && !s->resp_head_done) {
			if (response_head(s))
				return;
			continue;
		}
		if (s->up_p.message_done) {
			int st = s->resp.status;
			if (st >= 100 && st < 200 && st != 101) {
				/* interim response consumed: parse the next head from offset 0 */
				uint32_t left = b->wr - b->parse;
				memmove(b->data, b->data + b->parse, left);
				b->rd = b->fwd = b->parse = 0;
				b->wr = left;
				s->resp_head_done = 0;
				int skip = s->up_p.skip_body;
				sl_http_parser_next(&s->up_p);
				s->up_p.skip_body = (uint8_t)skip;
				sl_head_reset(&s->resp, SL_HDR_MAX, 0);
				continue;
			}
			s->resp_done = 1;
		}
	}
	if (s->resp_done && s->resp.status == 101) {
		start_tunnel(s);
		return;
	}
	if (s->resp_head_done && !s->resp_done)
		arm(s, ST_UPIDLE);
	else if (s->resp_done && s->timer != ST_NONE)
		arm(s, ST_NONE);
	client_flush(s);
}

static void start_tunnel(struct sl_session *s)
{
	struct sl_iob *b = &s->uin;
	s->state = SS_TUNNEL;
	log_request(s);
	b->parse = b->fwd = b->wr;
	s->in.rd = s->in.parse;
	s->in.parse = s->in.fwd = s->in.wr;
	s->head_end = 0;
	arm(s, ST_TUNNEL);
	rd_on(s);
	client_flush(s);
	if (!s->closed && s->state == SS_TUNNEL && s->up)
		up_flush(s);
}

static void up_eof(struct sl_session *s, int err)
{
	struct sl_upconn *c = s->up;
	if (s->state == SS_TUNNEL) {
		s->up_eof = 1;
		up_rd_off(c);
		if (err) {
			session_close(s);
			return;
		}
		if (s->uin.rd == s->uin.fwd) {
			shutdown(s->fd, SHUT_WR);
			if (s->client_eof)
				session_close(s);
		}
		return;
	}
	s->up_broken = 1;
	up_rd_off(c);
	if (!err && s->resp_head_done && s->body_mode == BM_EOF) {
		llhttp_finish(&s->up_p.p);
		s->resp_done = 1;
		arm(s, ST_NONE);
		client_flush(s);
		return;
	}
	if (!s->resp_head_done && is_retryable(s)) {
		sl_log(SL_LOG_DEBUG, "msg=\"upstream closed before responding, retrying\" peer=%s",
		       s->peer.name);
		retry_request(s);
		return;
	}
	sl_log(SL_LOG_WARN, "msg=\"upstream closed mid-response\" peer=%s err=%d", s->peer.name,
	       -err);
	if (!s->resp_started) {
		send_error(s, 502);
		return;
	}
	/* the client already has part of the response: close once what we have is out */
	s->keepalive = 0;
	s->state = SS_CLOSING;
	up_release(s, 0);
	client_flush(s);
}

/* ---- event callbacks ---- */

static void up_read_ev(evutil_socket_t fd, short what, void *arg)
{
	struct sl_upconn *c = arg;
	struct sl_session *s = c->s;
	if (!s) {
		idle_conn_event(c, what);
		return;
	}
	struct sl_iob *b = &s->uin;
	if (iob_alloc(s->w, b, SL_MEM_IO)) {
		send_error(s, 502);
		return;
	}
	if (b->wr == b->cap) {
		if (s->resp_head_done)
			iob_compact(b, 0);
		if (b->wr == b->cap) {
			if (!s->resp_head_done) {
				if (iob_grow(s->w, b)) {
					s->up_broken = 1;
					send_error(s, 502);
					return;
				}
			} else {
				up_rd_off(c); /* backpressure: resumed when the client drains */
				if (s->timer == ST_UPIDLE || s->timer == ST_NONE)
					arm(s, ST_SEND); /* now waiting on the client */
				return;
			}
		}
	}
	ssize_t n = read(fd, b->data + b->wr, b->cap - b->wr);
	if (n > 0) {
		b->wr += (uint32_t)n;
		if (s->state == SS_TUNNEL) {
			b->parse = b->fwd =
			    b->wr; /* raw bytes: everything received is forwardable */
			arm(s, ST_TUNNEL);
			client_flush(s);
			return;
		}
		if (s->state == SS_CLOSING)
			return;
		parse_response(s);
		return;
	}
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	up_eof(s, n == 0 ? 0 : -errno);
}

static void up_write_ev(evutil_socket_t fd, short what, void *arg)
{
	struct sl_upconn *c = arg;
	struct sl_session *s = c->s;
	if (!s) {
		up_wr(c, 0);
		return;
	}
	if (c->connecting) {
		int err = 0;
		socklen_t l = sizeof(err);
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0)
			err = errno;
		up_wr(c, 0);
		if (err) {
			if (connect_failed(s, -err))
				connect_upstream(s);
			return;
		}
		up_connected(s);
		return;
	}
	up_flush(s);
}

static void client_eof(struct sl_session *s, int err)
{
	if (err || s->state == SS_IDLE || s->state == SS_HEAD || s->state == SS_CLOSING) {
		session_close(s);
		return;
	}
	if (s->state == SS_TUNNEL) {
		s->client_eof = 1;
		rd_off(s);
		if (s->in.rd == s->in.fwd && s->up) {
			shutdown(s->up->fd, SHUT_WR);
			if (s->up_eof)
				session_close(s);
		}
		return;
	}
	if (!s->req_done) {
		/* gone in the middle of its request body */
		s->up_broken = 1;
		session_close(s);
		return;
	}
	/* half-closed after a whole request: it may still read the response */
	s->client_eof = 1;
	s->keepalive = 0;
	rd_off(s);
}

static void client_read_ev(evutil_socket_t fd, short what, void *arg)
{
	struct sl_session *s = arg;
	struct sl_iob *b = &s->in;
	if (iob_alloc(s->w, b, SL_MEM_IO)) {
		session_close(s);
		return;
	}
	if (b->wr == b->cap) {
		if (s->state == SS_IDLE || s->state == SS_HEAD) {
			if (b->rd == b->wr) {
				b->rd = b->fwd = b->parse = b->wr = 0; /* cannot happen; be safe */
			} else if (iob_grow(s->w, b)) {
				if (!s->hold)
					s->hold = sl_worker_conf_get(s->w);
				s->req_done = 1;
				s->keepalive = 0;
				send_error(s, 431);
				return;
			}
		} else {
			if (s->state != SS_TUNNEL && b->rd > s->head_end)
				s->body_discarded = 1;
			iob_compact(b, s->state == SS_TUNNEL ? 0 : s->head_end);
			if (b->wr == b->cap) {
				rd_off(s);
				return;
			}
		}
	}
	ssize_t n = read(fd, b->data + b->wr, b->cap - b->wr);
	if (n <= 0) {
		if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
			if (s->state == SS_IDLE && b->wr > b->parse)
				goto parse; /* pipelined request left from the previous one */
			rd_on(s);
			return;
		}
		client_eof(s, n == 0 ? 0 : -errno);
		return;
	}
	b->wr += (uint32_t)n;
	s->w->st->bytes_in += (uint64_t)n;
parse:
	switch (s->state) {
	case SS_IDLE:
		start_request(s);
		/* fallthrough */
	case SS_HEAD:
		parse_request_head(s);
		break;
	case SS_PROXY:
		if (!s->req_done) {
			/* the body timer restarts on each read, but never replaces an upstream
			 * timer (connect, queue, response) that is already running */
			if (s->timer == ST_NONE || s->timer == ST_BODY)
				arm(s, ST_BODY);
			pump_request_body(s);
		} else if (b->wr == b->cap) {
			rd_off(s);
		}
		break;
	case SS_TUNNEL:
		b->parse = b->fwd = b->wr;
		arm(s, ST_TUNNEL);
		up_flush(s);
		break;
	case SS_CLOSING:
		b->rd = b->fwd = b->parse = b->wr = 0;
		break;
	}
}

static void client_write_ev(evutil_socket_t fd, short what, void *arg)
{
	client_flush(arg);
}

static void timer_ev(evutil_socket_t fd, short what, void *arg)
{
	struct sl_session *s = arg;
	enum sl_timer_kind k = s->timer;
	s->timer = ST_NONE;
	switch (k) {
	case ST_NONE:
		break;
	case ST_KEEPALIVE:
	case ST_TUNNEL:
		session_close(s);
		break;
	case ST_SEND:
		sl_log(SL_LOG_DEBUG, "msg=\"client stopped reading, closed\" client=%s",
		       s->client_str);
		session_close(s);
		break;
	case ST_HEADER:
		if (s->state == SS_IDLE) {
			session_close(s);
			break;
		}
		if (!s->hold)
			s->hold = sl_worker_conf_get(s->w);
		s->req_done = 1;
		s->keepalive = 0;
		send_error(s, 408);
		break;
	case ST_BODY:
		s->keepalive = 0;
		s->req_done = 1;
		send_error(s, 408);
		break;
	case ST_CONNECT:
		if (connect_failed(s, -ETIMEDOUT))
			connect_upstream(s);
		break;
	case ST_QUEUE:
		queue_unlink(s);
		s->w->st->queue_timeouts++;
		sl_log(SL_LOG_WARN, "msg=\"no connection slot within queue_timeout\" peer=%s",
		       s->peer.name);
		send_error(s, 503);
		break;
	case ST_RESPONSE:
	case ST_UPIDLE:
		sl_log(SL_LOG_WARN, "msg=\"upstream timed out\" peer=%s", s->peer.name);
		s->up_broken = 1;
		if (s->resp_started) {
			s->keepalive = 0;
			s->state = SS_CLOSING;
			up_release(s, 0);
			client_flush(s);
			break;
		}
		send_error(s, 504);
		break;
	}
}

/* ---- request end, logging, session life ---- */

static size_t put_val(char *p, size_t room, const char *v, size_t n)
{
	int quote = n == 0;
	for (size_t i = 0; i < n && !quote; i++)
		if (v[i] <= ' ' || v[i] == '"' || v[i] == '\\' || (unsigned char)v[i] >= 0x7f)
			quote = 1;
	if (!quote) {
		n = n < room ? n : room;
		memcpy(p, v, n);
		return n;
	}
	size_t o = 0;
	if (room < 2)
		return 0;
	p[o++] = '"';
	for (size_t i = 0; i < n && o + 5 < room; i++) {
		unsigned char ch = (unsigned char)v[i];
		if (ch == '"' || ch == '\\') {
			p[o++] = '\\';
			p[o++] = (char)ch;
		} else if (ch < ' ' || ch >= 0x7f) {
			o += (size_t)snprintf(p + o, room - o, "\\x%02x", ch);
		} else {
			p[o++] = (char)ch;
		}
	}
	p[o++] = '"';
	return o;
}

static void log_request(struct sl_session *s)
{
	struct sl_worker *w = s->w;
	int st = s->status;
	switch (st / 100) {
	case 1:
		w->st->resp_1xx++;
		break;
	case 2:
		w->st->resp_2xx++;
		break;
	case 3:
		w->st->resp_3xx++;
		break;
	case 4:
		w->st->resp_4xx++;
		break;
	default:
		w->st->resp_5xx++;
		break;
	}
	const struct sl_proxy_ops *ops = w->d->ops;
	if (ops->logging && s->hold)
		ops->logging(s, s->ctx, st);
	if (w->alog.fd < 0)
		return;
	char *p = sl_alog_reserve(&w->alog, 4096);
	size_t room = 4096 - 1, o = 0;
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	o += (size_t)snprintf(p + o, room - o, "ts=");
	o += sl_fmt_time(p + o, room - o, &now);
	o +=
	    (size_t)snprintf(p + o, room - o, " worker=%u client=%s method=", w->id, s->client_str);
	if (s->req.target_len && s->hold) {
		const char *m = llhttp_method_name((llhttp_method_t)s->rp.p.method);
		o += put_val(p + o, room - o, m, strlen(m));
		o += (size_t)snprintf(p + o, room - o, " target=");
		uint32_t tl = s->req.target_len > 1024 ? 1024 : s->req.target_len;
		o += put_val(p + o, room - o, s->in.data + s->req.target_off, tl);
	} else {
		o += (size_t)snprintf(p + o, room - o, "- target=-");
	}
	uint64_t total = ns_since(&s->t_start);
	o += (size_t)snprintf(
	    p + o, room - o, " status=%d in=%llu out=%llu upstream=%s upstream_time=%.3f time=%.3f",
	    st, (unsigned long long)s->r_in, (unsigned long long)s->r_out,
	    s->peer.name[0] ? s->peer.name : "-", (double)s->up_time_ns / 1e9, (double)total / 1e9);
	if (s->log_extra_len && o + s->log_extra_len < room) {
		memcpy(p + o, s->log_extra, s->log_extra_len);
		o += s->log_extra_len;
	}
	p[o++] = '\n';
	sl_alog_commit(&w->alog, o);
}

static void reset_request(struct sl_session *s)
{
	struct sl_worker *w = s->w;
	queue_unlink(s);
	if (s->hold) {
		sl_worker_conf_put(w, s->hold);
		s->hold = NULL;
	}
	iob_free(w, &s->uin);
	iob_free(w, &s->out);
	s->listener = NULL;
	s->upstream = NULL;
	s->head_end = 0;
	s->req_done = s->req_sent = s->head_queued = 0;
	s->expect_continue = s->sent_continue = 0;
	s->upgrade_req = s->is_head_req = s->idempotent = 0;
	s->has_body = s->body_discarded = 0;
	s->local_resp = 0;
	s->resp_head_done = s->resp_done = s->resp_started = s->up_broken = s->up_eof = 0;
	s->body_mode = BM_NONE;
	s->status = 0;
	s->tries = 0;
	s->tried = s->tried_prev = 0;
	s->fresh_only = 0;
	s->peer.name[0] = 0;
	s->out_to_client = 0;
	s->lbody = NULL;
	s->lbody_len = s->lbody_off = 0;
	s->up_time_ns = 0;
	s->r_in = s->r_out = 0;
	s->log_extra_len = 0;
	s->req.target_len = 0;
}

static void finish_request(struct sl_session *s)
{
	struct sl_worker *w = s->w;
	if (s->up) {
		int reuse = !s->up_broken && s->req_sent && s->resp_done &&
			    s->body_mode != BM_EOF && llhttp_should_keep_alive(&s->up_p.p) &&
			    s->uin.parse == s->uin.wr;
		up_release(s, reuse);
	}
	log_request(s);
	int keep =
	    s->keepalive && s->req_done && !s->client_eof && !w->draining && s->state != SS_CLOSING;
	reset_request(s);
	if (!keep) {
		session_close(s);
		return;
	}
	struct sl_iob *b = &s->in;
	uint32_t left = b->wr - b->parse;
	if (left)
		memmove(b->data, b->data + b->parse, left);
	b->rd = b->fwd = b->parse = 0;
	b->wr = left;
	sl_http_parser_next(&s->rp);
	s->state = SS_IDLE;
	if (!s->nodelay) {
		/* kept alive: small responses must not wait behind Nagle from now on (nginx's
		 * tcp_nodelay does the same); one-request connections never need the call */
		set_nodelay(s->fd);
		s->nodelay = 1;
	}
	rd_on(s);
	if (left) {
		/* pipelined request: handled on the next loop turn, which bounds recursion */
		arm(s, ST_HEADER);
		event_active(&s->rev, EV_READ, 0);
	} else {
		iob_free(w, b);
		arm(s, ST_KEEPALIVE);
	}
}

static void session_free(struct sl_session *s)
{
	struct sl_worker *w = s->w;
	if (w->n_free_sessions < 1024) {
		s->next = w->free_sessions;
		w->free_sessions = s;
		w->n_free_sessions++;
	} else {
		free(s);
	}
	sl_worker_session_gone(w);
}

/* Tear the connection down. The memory goes back only when the outermost event
 * callback returns (see ENTER/LEAVE), so code up the stack may test s->closed. */
static void session_close(struct sl_session *s)
{
	struct sl_worker *w = s->w;
	if (s->closed)
		return;
	if (s->hold && s->state != SS_TUNNEL && (s->req.target_len || s->status)) {
		if (!s->status)
			s->status = 499; /* closed before a response was complete */
		log_request(s);
	}
	if (s->up)
		up_release(s, 0);
	reset_request(s);
	event_del(&s->rev);
	event_del(&s->wev);
	event_del(&s->tev);
	close(s->fd);
	iob_free(w, &s->in);
	if (s->prev)
		s->prev->next = s->next;
	else
		w->sessions = s->next;
	if (s->next)
		s->next->prev = s->prev;
	w->n_sessions--;
	w->st->active--;
	w->state->active--;
	s->closed = 1;
	if (!s->depth)
		session_free(s);
}

/* Event entry points: bracket the work so that a close is finished safely. */
static void client_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sl_session *s = arg;
	ENTER(s);
	client_read_ev(fd, what, s);
	LEAVE(s);
}

static void client_write_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sl_session *s = arg;
	ENTER(s);
	client_write_ev(fd, what, s);
	LEAVE(s);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sl_session *s = arg;
	ENTER(s);
	timer_ev(fd, what, s);
	LEAVE(s);
}

static void up_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sl_upconn *c = arg;
	struct sl_session *s = c->s;
	if (!s) {
		idle_conn_event(c, what);
		return;
	}
	ENTER(s);
	up_read_ev(fd, what, c);
	LEAVE(s);
}

static void up_write_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sl_upconn *c = arg;
	struct sl_session *s = c->s;
	if (!s) {
		up_wr(c, 0);
		return;
	}
	ENTER(s);
	up_write_ev(fd, what, c);
	LEAVE(s);
}

void sl_session_accept(struct sl_worker *w, struct sl_listen *l, int fd,
		       const struct sockaddr_storage *sa, socklen_t salen)
{
	struct sl_session *s = w->free_sessions;
	size_t ctx_size = w->d->ops->ctx_size;
	if (s) {
		w->free_sessions = s->next;
		w->n_free_sessions--;
	} else {
		s = malloc(sizeof(*s) + ctx_size + 16);
		if (!s) {
			close(fd);
			return;
		}
	}
	/* the two big heads are reset when used; zero everything around them */
	memset(s, 0, offsetof(struct sl_session, req));
	memset(&s->head_end, 0,
	       offsetof(struct sl_session, resp) - offsetof(struct sl_session, head_end));
	memset(&s->resp_head_done, 0, sizeof(*s) - offsetof(struct sl_session, resp_head_done));
	s->ctx = ctx_size ? (char *)s + ((sizeof(*s) + 15) & ~(size_t)15) : NULL;
	s->fd = fd;
	s->w = w;
	s->lsn = l;
	memcpy(&s->client, sa, salen);
	s->client_len = salen;
	uint16_t port = 0;
	if (sa->ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
		if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr))
			inet_ntop(AF_INET, &a->sin6_addr.s6_addr[12], s->client_ip,
				  sizeof(s->client_ip));
		else
			inet_ntop(AF_INET6, &a->sin6_addr, s->client_ip, sizeof(s->client_ip));
		port = ntohs(a->sin6_port);
	} else {
		const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &a->sin_addr, s->client_ip, sizeof(s->client_ip));
		port = ntohs(a->sin_port);
	}
	snprintf(s->client_str, sizeof(s->client_str),
		 sa->ss_family == AF_INET6 ? "[%s]:%u" : "%s:%u", s->client_ip, port);
	event_assign(&s->rev, w->base, fd, EV_READ | EV_PERSIST, client_read_cb, s);
	event_assign(&s->wev, w->base, fd, EV_WRITE | EV_PERSIST, client_write_cb, s);
	evtimer_assign(&s->tev, w->base, timer_cb, s);
	sl_http_parser_init(&s->rp, 1, &s->req);
	s->req.target_len = 0;
	s->next = w->sessions;
	if (w->sessions)
		w->sessions->prev = s;
	w->sessions = s;
	w->n_sessions++;
	w->st->accepted++;
	w->st->active++;
	w->state->active++;
	s->state = SS_IDLE;
	arm(s, ST_HEADER);
	/* The request is usually there already: read it now. The socket joins the epoll
	 * set only when we have to wait for it, so a one-request connection never does. */
	ENTER(s);
	client_read_ev(fd, EV_READ, s);
	LEAVE(s);
}

void sl_session_drain_all(struct sl_worker *w)
{
	struct sl_session *s = w->sessions;
	while (s) {
		struct sl_session *next = s->next;
		if (s->state == SS_IDLE && s->in.wr == 0)
			session_close(s);
		else
			s->keepalive = 0;
		s = next;
	}
}

static void close_cb(struct sl_upconn *c, void *arg)
{
	sl_upconn_close(c);
}

void sl_session_close_all(struct sl_worker *w)
{
	while (w->sessions)
		session_close(w->sessions);
	sl_pool_drain(&w->pool, close_cb, NULL);
	sl_pool_destroy(&w->pool);
}
