/* The proxy data path: client connection -> request head -> phases -> upstream
 * connection -> response streamed back, one request at a time per connection.
 *
 * Syscall discipline: reads happen when the loop says a socket is readable; writes
 * are attempted at once and a write event is armed only on EAGAIN. Read events stay
 * armed for a connection's life and are dropped only for backpressure, so a
 * keep-alive request costs one read and one write on each side.
 *
 * Request state lives in struct sl_request, allocated when a head starts and released
 * whole when the request ends. Anything that calls out to a phase callback (or to code
 * that may finish the request: a local response, an error, a flush) remembers s->gen
 * first and checks GONE(s, gen) after: a request that ended under it is never touched
 * again, whatever the callback did. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/log.h"
#include "proxy/access_log.h"
#include "net/addr.h"
#include "net/tls.h"
#include "proxy/cache.h"
#include "proxy/session.h"
#include "tls/server.h"
#include "upstream/connector.h"

#define SL_CONTINUE "HTTP/1.1 100 Continue\r\n\r\n"
/* Free-list bounds per worker: enough for steady load; a quiet worker keeps only the
 * reserves (sl_session_trim), so memory goes back after a burst (a request object is
 * ~16 KB). Sessions come from the worker's slab; a quiet worker unmaps its empty chunks
 * but one. */
#define SL_FREE_REQUESTS 64
#define SL_RESERVE_REQUESTS 4
#define SL_RESERVE_SESSION_CHUNKS 1

static void client_read_cb(evutil_socket_t fd, short what, void *arg);
static void client_write_cb(evutil_socket_t fd, short what, void *arg);
static void timer_cb(evutil_socket_t fd, short what, void *arg);
static const struct sl_upconn_cbs up_cbs;
static void parse_request_head(struct sl_session *s);
static void pump_request_body(struct sl_session *s);
static int body_filter(struct sl_session *s, uint32_t from);
static void connect_upstream(struct sl_session *s);
static void retry_request(struct sl_session *s);
static int acquire_connection(struct sl_session *s);
static void queue_wait(struct sl_session *s);
static void queue_unlink(struct sl_session *s);
static void client_flush(struct sl_session *s);
static void up_flush(struct sl_session *s);
static void finish_request(struct sl_session *s);
static void session_close(struct sl_session *s);
static void send_error(struct sl_session *s, int status);
static void tls_fail_log(struct sl_session *s, const char *why);
static void client_read_ev(evutil_socket_t fd, short what, void *arg);
static void hs_release(struct sl_session *s);
static void hs_step(struct sl_session *s);

/* ---- small helpers ---- */

/* Every event callback brackets its work with these: a session closed somewhere down
 * the call chain is freed only on the way out, never under a caller's feet. */
#define ENTER(s) ((s)->depth++)
#define LEAVE(s)                                                                                   \
	do {                                                                                       \
		if (--(s)->depth == 0 && (s)->closed)                                              \
			session_free(s);                                                           \
	} while (0)

/* Run a phase callback with the phase recorded (sl_respond() checks it). The phase is
 * restored only while the request is still the same one. */
#define PHASE_CALL(s, ph, call)                                                                    \
	({                                                                                         \
		struct sl_request *r_ = (s)->r;                                                    \
		uint32_t g_ = (s)->gen;                                                            \
		enum sl_phase prev_ = r_->phase;                                                   \
		r_->phase = (ph);                                                                  \
		(s)->in_phase++;                                                                   \
		int rc_ = (call);                                                                  \
		(s)->in_phase--;                                                                   \
		if (!GONE((s), g_))                                                                \
			r_->phase = prev_;                                                         \
		rc_;                                                                               \
	})

static void session_free(struct sl_session *s);

static const struct sl_conf *sconf(const struct sl_session *s)
{
	return s->r->hold->conf;
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

/* Slide unsent and unparsed bytes down to base. The de-chunking gap [fwd, parse) is
 * dropped, unless hp holds a trailer section there (it is kept, and hp->trailer_off
 * follows it). */
static void iob_compact(struct sl_iob *b, uint32_t base, struct sl_http_parser *hp)
{
	if (b->rd <= base)
		return;
	uint32_t f = b->fwd - b->rd, u = b->wr - b->parse;
	if (hp && hp->in_trailer && b->fwd == hp->trailer_off) {
		uint32_t shift = b->rd - base;
		memmove(b->data + base, b->data + b->rd, b->wr - b->rd);
		b->rd = base;
		b->fwd -= shift;
		b->parse -= shift;
		b->wr -= shift;
		hp->trailer_off -= shift;
		return;
	}
	memmove(b->data + base, b->data + b->rd, f);
	memmove(b->data + base + f, b->data + b->parse, u);
	b->rd = base;
	b->fwd = base + f;
	b->parse = b->fwd;
	b->wr = b->parse + u;
}

/* Everything received was parsed and sent on: start over at base. A trailer section
 * that starts here (the last chunk was the last byte) moves with it. */
static void iob_restart(struct sl_iob *b, uint32_t base, struct sl_http_parser *hp)
{
	b->rd = b->fwd = b->parse = b->wr = base;
	if (hp && hp->in_trailer)
		hp->trailer_off = base;
}

static void rd_on(struct sl_session *s)
{
	sl_ev_want(&s->rev, &s->rd_on, 1);
	/* TLS: records already taken off the socket are not announced by it again */
	if (s->io.t != &sl_transport_raw && sl_io_pending(&s->io))
		event_active(&s->rev, EV_READ, 0);
}

static void rd_off(struct sl_session *s)
{
	sl_ev_want(&s->rev, &s->rd_on, 0);
}

enum { IDLE_HEADER = 0, IDLE_KEEPALIVE = 1, IDLE_HANDSHAKE = 2 };

static void idle_unlink(struct sl_session *s)
{
	if (!s->idle_on)
		return;
	if (s->idle_on == IDLE_HANDSHAKE + 1)
		sl_list_del(&s->lsn->hs, &s->idle_link);
	else
		sl_list_del(&s->w->idle[s->idle_on - 1], &s->idle_link);
	s->idle_on = 0;
	s->timer = ST_NONE;
}

/* Between requests a connection waits in one of the worker's idle lists: appending
 * keeps each in the order it went idle, so with one timeout per list (whatever a reload
 * makes it) the head is always the first to expire. Without a request nothing else can
 * be pending (every arm() of another kind runs with a request). */
static void idle_arm(struct sl_session *s, enum sl_timer_kind k)
{
	idle_unlink(s);
	if (k != ST_HEADER && k != ST_KEEPALIVE)
		return; /* nothing else can be pending without a request */
	int i = k == ST_KEEPALIVE;
	s->idle_since = sl_mono_ns();
	sl_list_add_tail(&s->w->idle[i], &s->idle_link);
	s->idle_on = (uint8_t)(i + 1);
	s->timer = k;
}

static void arm(struct sl_session *s, enum sl_timer_kind k)
{
	const struct timeval *tv = NULL;
	struct sl_worker *w = s->w;
	struct sl_request *r = s->r;
	if (!r) {
		idle_arm(s, k);
		return;
	}
	switch (k) {
	case ST_NONE:
		if (s->timer != ST_NONE)
			event_del(&r->tev);
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
	event_add(&r->tev, tv);
}

/* ---- upstream connection (user/upstream/connector.c) ---- */

/* Detach the request's upstream connection: back to a pool or closed. */
static void up_release(struct sl_session *s, int reusable)
{
	struct sl_request *r = s->r;
	struct sl_upconn *c = r->up;
	if (!c)
		return;
	r->up = NULL;
	if (reusable && sl_lb_req_server_gone(&r->lb))
		reusable = 0; /* removed from its upstream meanwhile: its connections go */
	sl_upconn_release(c, reusable, r->upstream);
}

/* ---- output to the client ---- */

static void client_wr(struct sl_session *s, int on)
{
	sl_ev_want(&s->r->wev, &s->r->wr_on, on);
}

/* Write what is pending for the client: the rest of a "100 Continue", out (if it holds
 * the response head), the local body, then the response body bytes from uin. */
static int client_write_pending(struct sl_session *s)
{
	struct sl_request *r = s->r;
	if (!r)
		return 0;
	struct iovec iov[8];
	int n = 0;
	size_t cont = r->cont_left;
	if (cont) {
		iov[n].iov_base = (void *)(SL_CONTINUE + sizeof(SL_CONTINUE) - 1 - cont);
		iov[n++].iov_len = cont;
	}
	if (r->out_to_client && r->out.rd < r->out.wr) {
		iov[n].iov_base = r->out.data + r->out.rd;
		iov[n++].iov_len = r->out.wr - r->out.rd;
	}
	if (r->lbody && r->lbody_off < r->lbody_len) {
		iov[n].iov_base = (void *)(r->lbody + r->lbody_off);
		iov[n++].iov_len = r->lbody_len - r->lbody_off;
	}
	if (r->cache)
		n += sl_pcache_iov(s, iov + n, 7 - n);
	if (r->uin.data && r->uin.rd < r->uin.fwd) {
		iov[n].iov_base = r->uin.data + r->uin.rd;
		iov[n++].iov_len = r->uin.fwd - r->uin.rd;
	}
	if (!n)
		return 0;
	size_t left;
	int rc = sl_io_send(&s->io, iov, n, &left);
	if (rc < 0)
		return rc;
	s->w->st->bytes_out += left;
	if (cont)
		r->cont_left = (uint8_t)(cont - sl_iov_took(&left, cont));
	r->r_out += left;
	if (left)
		r->resp_started = 1;
	if (r->out_to_client && r->out.rd < r->out.wr)
		r->out.rd += (uint32_t)sl_iov_took(&left, r->out.wr - r->out.rd);
	if (r->lbody && r->lbody_off < r->lbody_len)
		r->lbody_off += sl_iov_took(&left, r->lbody_len - r->lbody_off);
	if (left && r->cache)
		left = sl_pcache_wrote(s, left);
	r->uin.rd += (uint32_t)left;
	return rc; /* 1: the socket buffer is full */
}

static void client_flush(struct sl_session *s)
{
	struct sl_request *r = s->r;
again:;
	int rc = client_write_pending(s);
	if (rc < 0) {
		sl_log(SL_LOG_DEBUG, "msg=\"client write failed\" client=%s err=%d",
		       sl_session_client_str(s), -rc);
		if (r && r->up)
			r->up_broken = 1;
		session_close(s);
		return;
	}
	if (rc > 0) {
		client_wr(s, 1);
		/* a client that stops reading must not hold us: once the upstream side is
		 * paused for it (or done), its time is what counts */
		if (s->timer == ST_NONE || (s->timer == ST_UPIDLE && r->up && !r->up->rd_on))
			arm(s, ST_SEND);
		return;
	}
	client_wr(s, 0);
	if (s->timer == ST_SEND)
		arm(s, ST_NONE);
	if (!r)
		return;
	if (r->cache) {
		int more = sl_pcache_more(s);
		if (more < 0) {
			session_close(s); /* the stored body failed mid-response */
			return;
		}
		if (more == 2)
			goto again;
		if (more == 1)
			return;
	}
	struct sl_iob *b = &r->uin;
	if (b->data && b->rd == b->parse && b->parse == b->wr)
		iob_restart(b, 0, &r->up_p);
	if (s->state == SS_CLOSING) {
		session_close(s);
		return;
	}
	if (s->state == SS_TUNNEL) {
		if (r->up_eof) {
			sl_io_shutdown_wr(&s->io);
			if (s->client_eof)
				session_close(s);
		} else if (r->up) {
			sl_upconn_want_read(r->up, 1);
		}
		return;
	}
	if (r->up && !r->up->rd_on && !r->resp_done)
		sl_upconn_want_read(r->up, 1); /* room again in uin */
	if (r->resp_done)
		finish_request(s);
}

/* ---- local responses ---- */

/* Queue a response made by sluice. The body is sent from where it is (static text or
 * config-owned, both outliving the request) unless copy is set: then it is copied into
 * the request's own memory, so a caller's buffer may go away as soon as this returns. */
static int queue_local(struct sl_session *s, int status, const char *ctype,
		       const struct sl_conf_header *hdrs, unsigned int n_hdrs, const char *body,
		       size_t body_len, int close_after, int copy)
{
	struct sl_request *r = s->r;
	struct sl_out o;
	if (iob_alloc(s->w, &r->out, SL_MEM_SMALL)) {
		session_close(s);
		return -ENOMEM;
	}
	int has_body = !(r->is_head_req || status == 204 || status == 304);
	enum sl_h1_conn conn = SL_H1_KEEP;
	if (close_after || !r->keepalive || !r->req_done) {
		r->keepalive = 0;
		conn = SL_H1_CLOSE;
	} else if (r->req.http_minor == 0) {
		conn = SL_H1_KEEP_10;
	}
	for (;;) {
		sl_out_init(&o, r->out.data, r->out.cap);
		sl_h1_render_local(&o, status, ctype, hdrs, n_hdrs, body_len, conn);
		if (o.ok)
			break;
		if (iob_grow(s->w, &r->out)) {
			session_close(s);
			return -ENOSPC;
		}
	}
	r->lbody = NULL;
	r->lbody_len = r->lbody_off = 0;
	if (has_body && body_len) {
		if (!copy) {
			r->lbody = body;
		} else if (o.len + body_len <= r->out.cap) {
			memcpy(r->out.data + o.len, body, body_len);
			o.len += body_len;
		} else {
			free(r->lbody_buf);
			r->lbody_buf = malloc(body_len);
			if (!r->lbody_buf) {
				session_close(s);
				return -ENOMEM;
			}
			memcpy(r->lbody_buf, body, body_len);
			r->lbody = r->lbody_buf;
		}
		r->lbody_len = r->lbody ? body_len : 0;
	}
	r->out.rd = 0;
	r->out.wr = (uint32_t)o.len;
	r->out_to_client = 1;
	r->status = status;
	r->local_resp = 1;
	r->resp_done = 1;
	r->resp_head_done = 1;
	arm(s, ST_NONE);
	client_flush(s);
	return 0;
}

/* An error found by sluice. 404 and 503 keep the connection when the request was
 * read whole; anything else closes it. */
static void send_error(struct sl_session *s, int status)
{
	struct sl_request *r = s->r;
	if (r->local_resp) {
		/* a local response is already on its way: it is the answer; only the
		 * connection cannot be trusted any more */
		r->keepalive = 0;
		return;
	}
	if (status >= 500)
		s->w->st->err_upstream++;
	else
		s->w->st->err_client++;
	if (r->up) {
		r->up_broken = 1;
		up_release(s, 0);
	}
	if (r->cache && !r->resp_started && status >= 500 && sl_pcache_error(s, status)) {
		if (r->uin.data)
			r->uin.rd = r->uin.fwd = r->uin.parse = r->uin.wr = 0;
		arm(s, ST_NONE);
		client_flush(s); /* stale-if-error */
		return;
	}
	if (r->resp_started) {
		/* part of a response is on the wire: the only honest signal left is a close */
		r->status = r->status ? r->status : status;
		r->keepalive = 0;
		finish_request(s);
		return;
	}
	r->out.rd = r->out.wr = 0;
	r->out_to_client = 0;
	if (r->uin.data)
		r->uin.rd = r->uin.fwd = r->uin.parse = r->uin.wr = 0;
	const struct sl_proxy_ops *ops = s->w->d->ops;
	if (ops->error_response && r->phase != PH_ERROR_RESPONSE) {
		uint32_t gen = s->gen;
		r->status = status;
		PHASE_CALL(s, PH_ERROR_RESPONSE, ops->error_response(s, r->ctx, status));
		if (GONE(s, gen) || r->local_resp)
			return; /* it answered (sl_respond), whatever it returned */
	}
	size_t len;
	unsigned int n_hdrs;
	const char *body = sl_error_page(status, &len);
	const struct sl_conf_header *hdrs = sl_error_page_headers(status, &n_hdrs);
	int keep = (status == 404 || status == 503) && r->req_done;
	queue_local(s, status, "text/plain", hdrs, n_hdrs, body, len, !keep, 0);
}

static const char *phase_name(enum sl_phase ph)
{
	static const char *const names[] = {
	    [PH_NONE] = "no phase",
	    [PH_REQUEST_FILTER] = "request_filter",
	    [PH_UPSTREAM_PEER] = "upstream_peer",
	    [PH_UPSTREAM_REQUEST_FILTER] = "upstream_request_filter",
	    [PH_RESPONSE_FILTER] = "response_filter",
	    [PH_REQUEST_BODY_FILTER] = "request_body_filter",
	    [PH_RESPONSE_BODY_FILTER] = "response_body_filter",
	    [PH_FAIL_TO_CONNECT] = "fail_to_connect",
	    [PH_ERROR_RESPONSE] = "error_response",
	    [PH_LOGGING] = "logging",
	    [PH_CACHE] = "a cache phase",
	};
	return names[ph];
}

int sl_respond(struct sl_session *s, int status, const char *content_type, const char *body,
	       size_t body_len)
{
	if (!s)
		return -EINVAL;
	if (s->closed || !s->r) /* inside a phase: its request was answered and ended */
		return s->in_phase ? -EALREADY : -EINVAL;
	struct sl_request *r = s->r;
	switch (r->phase) {
	case PH_REQUEST_FILTER:
	case PH_UPSTREAM_PEER:
	case PH_UPSTREAM_REQUEST_FILTER:
	case PH_FAIL_TO_CONNECT:
	case PH_ERROR_RESPONSE:
		break;
	default:
		/* the response is already decided (or sent) in these phases */
		sl_log(SL_LOG_ERROR, "msg=\"sl_respond not allowed in %s\" client=%s",
		       phase_name(r->phase), sl_session_client_str(s));
		return -EINVAL;
	}
	if (r->resp_started || r->local_resp)
		return -EALREADY;
	if (status < 200 || status > 599 || (body_len && !body) ||
	    (content_type && strpbrk(content_type, "\r\n")))
		return -EINVAL;
	if (r->up) {
		r->up_broken = 1;
		up_release(s, 0);
	}
	r->out.rd = r->out.wr = 0;
	if (r->uin.data)
		r->uin.rd = r->uin.fwd = r->uin.parse = r->uin.wr = 0;
	int rc = queue_local(s, status, content_type, NULL, 0, body, body_len, 0, 1);
	return rc == -ENOMEM || rc == -ENOSPC ? rc : 0;
}

int sl_session_respond_conf(struct sl_session *s, const struct sl_conf_respond *c)
{
	queue_local(s, c->status, NULL, c->headers, c->n_headers, c->body, c->body_len, 0, 0);
	return SL_DONE;
}

/* ---- request head ---- */

static uint32_t head_limit(const struct sl_session *s)
{
	return (uint32_t)sconf(s)->limits.max_header_bytes;
}

/* The client's "ip:port", rendered once per request (the connection keeps only the
 * binary address: an idle connection holds no text). Without a request, a per-thread
 * buffer that the next call overwrites (for a log line). */
const char *sl_session_client_str(const struct sl_session *s)
{
	static __thread char spare[SL_ADDR_STRLEN];
	struct sl_request *r = s->r;
	uint8_t off, len;
	if (!r) {
		sl_addr_fmt(&s->client.sa, spare, &off, &len);
		return spare;
	}
	if (!r->client_str[0])
		sl_addr_fmt(&s->client.sa, r->client_str, &r->ip_off, &r->ip_len);
	return r->client_str;
}

/* The ip alone (not NUL-terminated; s->r->ip_len bytes). */
static const char *client_ip(struct sl_session *s)
{
	return sl_session_client_str(s) + s->r->ip_off;
}

static struct sl_request *request_get(struct sl_worker *w)
{
	size_t ctx_size = w->d->ops->ctx_size;
	struct sl_request *r = w->free_requests;
	if (r) {
		w->free_requests = r->next_free;
		w->n_free_requests--;
	} else {
		r = sl_slab_get(&w->request_slab);
		if (!r)
			return NULL;
	}
	/* the two big heads are reset when used; zero everything around them */
	memset(r, 0, offsetof(struct sl_request, req));
	memset(&r->head_end, 0,
	       offsetof(struct sl_request, resp) - offsetof(struct sl_request, head_end));
	memset(&r->resp_head_done, 0, sizeof(*r) - offsetof(struct sl_request, resp_head_done));
	r->ctx = ctx_size ? (char *)r + ((sizeof(*r) + 15) & ~(size_t)15) : NULL;
	if (ctx_size)
		memset(r->ctx, 0, ctx_size);
	return r;
}

/* The request ends: everything it holds goes back, the session is between requests. */
static void request_release(struct sl_session *s)
{
	struct sl_worker *w = s->w;
	struct sl_request *r = s->r;
	if (!r)
		return;
	if (r->cache)
		sl_pcache_release(s);
	queue_unlink(s);
	if (r->up)
		up_release(s, 0);
	if (r->wr_on)
		event_del(&r->wev);
	if (s->timer != ST_NONE) {
		event_del(&r->tev);
		s->timer = ST_NONE;
	}
	sl_lb_req_end(&r->lb);
	if (r->hold)
		sl_worker_conf_put(w, r->hold);
	iob_free(w, &r->uin);
	iob_free(w, &r->out);
	free(r->lbody_buf);
	s->r = NULL;
	s->gen++;
	if (w->n_free_requests < SL_FREE_REQUESTS) {
		r->next_free = w->free_requests;
		w->free_requests = r;
		w->n_free_requests++;
	} else {
		sl_mem_note_free(&w->mem, sizeof(*r) + w->d->ops->ctx_size);
		sl_slab_put(&w->request_slab, r);
	}
}

static void sl_session_expire_idle(struct sl_worker *w, uint64_t now_ns)
{
	for (int i = 0; i < 2; i++) {
		struct sl_session *s;
		uint64_t t = sl_tv_ns(i == IDLE_HEADER ? &w->tv_header : &w->tv_keepalive);
		if (w->draining && atomic_load_explicit(&w->soft_drain, memory_order_relaxed) &&
		    t > SL_SOFT_DRAIN_IDLE_NS)
			t = SL_SOFT_DRAIN_IDLE_NS;
		while ((s = sl_list_entry(w->idle[i].head, struct sl_session, idle_link)) &&
		       s->idle_since <= now_ns &&
		       now_ns - s->idle_since >= t) {
			if (i == IDLE_HEADER)
				w->st->header_timeouts++; /* not a byte within client_header */
			session_close(s);
		}
	}
	for (unsigned int i = 0; i < w->n_lsn; i++) {
		struct sl_session *s;
		struct sl_listen *l = &w->lsn[i];
		if (sl_list_empty(&l->hs))
			continue;
		const struct sl_conf *c = w->hold->conf;
		int li = c->slot_index[i];
		const struct sl_conf_listener_tls *t = li >= 0 ? c->listeners[li].tls : NULL;
		uint64_t lim = (uint64_t)(t ? t->handshake_timeout : 10000) * 1000000ull;
		while ((s = sl_list_entry(l->hs.head, struct sl_session, idle_link)) &&
		       s->idle_since <= now_ns && now_ns - s->idle_since >= lim) {
			w->st->tls_fail_timeout++;
			tls_fail_log(s, "reason=\"handshake_timeout\"");
			session_close(s);
		}
	}
}

static void sl_session_trim(struct sl_worker *w)
{
	size_t rsize = sizeof(struct sl_request) + w->d->ops->ctx_size;
	while (w->n_free_requests > SL_RESERVE_REQUESTS) {
		struct sl_request *r = w->free_requests;
		w->free_requests = r->next_free;
		w->n_free_requests--;
		sl_mem_note_free(&w->mem, rsize);
		sl_slab_put(&w->request_slab, r);
	}
	sl_slab_trim(&w->request_slab, 0);
	sl_slab_trim(&w->session_slab, SL_RESERVE_SESSION_CHUNKS);
}

static int start_request(struct sl_session *s)
{
	struct sl_worker *w = s->w;
	struct sl_request *r = request_get(w);
	if (!r)
		return -ENOMEM;
	idle_unlink(s);
	s->r = r;
	s->state = SS_HEAD;
	evtimer_assign(&r->tev, w->base, timer_cb, s);
	/* the client write event lives with the request: an idle connection has none */
	event_assign(&r->wev, w->base, s->io.fd, EV_WRITE | EV_PERSIST, client_write_cb, s);
	r->s = s;
	r->t_start = sl_mono_ns();
	r->hold = sl_worker_conf_get(w);
	const struct sl_conf *c = r->hold->conf;
	sl_head_reset(&r->req, c->limits.max_header_count, (uint32_t)c->limits.max_target_length);
	/* a fresh parser for each request, not a continued one: what llhttp learnt from
	 * the last message (a "Connection: close" smuggled into its trailer, say) must
	 * not outlive it */
	sl_http_parser_init(&r->rp, 1, &r->req);
	arm(s, ST_HEADER);
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

/* A request that cannot be read on: answer status and close after it. */
static void refuse_request(struct sl_session *s, int status, const char *why)
{
	sl_log(SL_LOG_DEBUG, "msg=\"bad request\" client=%s status=%d reason=\"%s\"",
	       sl_session_client_str(s), status, why ? why : "");
	s->r->req_done = 1; /* nothing more will be read from this connection */
	s->r->keepalive = 0;
	s->linger = 1; /* the client may still be sending what it started */
	send_error(s, status);
}

static void request_head_done(struct sl_session *s)
{
	struct sl_request *r = s->r;
	struct sl_head *h = &r->req;
	const char *why = NULL;
	struct sl_worker *w = s->w;
	uint32_t gen = s->gen;

	r->head_end = s->in.parse;
	s->in.rd = s->in.fwd = r->head_end;
	s->state = SS_PROXY;
	w->st->requests++;
	r->keepalive = llhttp_should_keep_alive(&s->r->rp.p) && !w->draining;
	/* a reload removed this connection's listener: its idle connections were closed,
	 * but a request already buffered on one (pipelined) has no routes any more */
	int li = sconf(s)->slot_index[s->lsn->index];
	if (li < 0) {
		refuse_request(s, 503, "listener removed by a reload");
		return;
	}
	r->listener = &sconf(s)->listeners[li];
	r->is_head_req = s->r->rp.p.method == HTTP_HEAD;
	r->idempotent = (uint8_t)method_is_idempotent(s->r->rp.p.method);

	int st = sl_request_line_check(h, s->in.data, &why);
	if (st) {
		refuse_request(s, st, why);
		return;
	}
	if (sl_head_analyze(h, s->in.data, 1, &why)) {
		refuse_request(s, 400, why);
		return;
	}
	if (h->info.te_other) {
		/* RFC 9112 6.1: codings other than chunked are not ours to pass on */
		refuse_request(s, 501, "transfer coding other than chunked");
		return;
	}
	if (s->r->rp.p.method == HTTP_CONNECT) {
		/* authority-form is valid HTTP; sluice does not tunnel it */
		refuse_request(s, 405, "CONNECT");
		return;
	}
	if (sl_request_target_split(&s->r->req, s->in.data, s->r->rp.p.method)) {
		refuse_request(s, 400, "bad target");
		return;
	}
	uint64_t max_body = sconf(s)->limits.max_body_size;
	if (max_body && h->info.has_cl && s->r->rp.p.content_length > max_body) {
		refuse_request(s, 413, "Content-Length over max_body_size");
		return;
	}
	r->has_body = h->info.chunked || (h->info.has_cl && s->r->rp.p.content_length > 0);
	r->upgrade_req = s->r->rp.p.upgrade && h->info.has_upgrade && h->info.conn_upgrade;
	r->expect_continue = h->info.expect_continue && h->http_minor >= 1 &&
			     (h->info.chunked || s->r->rp.p.content_length > 0);
	if (h->info.expect_continue)
		sl_head_remove(h, s->in.data, "expect", 6);
	arm(s, (h->info.chunked || s->r->rp.p.content_length) ? ST_BODY : ST_NONE);

	/* Run the parser over what follows the head: completes body-less requests now. */
	pump_request_body(s);
	if (GONE(s, gen) || r->local_resp)
		return;

	const struct sl_proxy_ops *ops = w->d->ops;
	if (ops->request_filter) {
		int rc = PHASE_CALL(s, PH_REQUEST_FILTER, ops->request_filter(s, r->ctx));
		if (GONE(s, gen) || r->local_resp || rc == SL_DONE)
			return;
		if (rc < 0) {
			send_error(s, 500);
			return;
		}
	}
	r->body_filter_on = 1;
	if (body_filter(s, r->head_end) || r->local_resp)
		return;
	if (r->cache_conf) {
		int rc = sl_pcache_request(s); /* a hit, or parked behind the key's writer */
		if (GONE(s, gen))
			return;
		if (rc == 2) {
			arm(s, ST_NONE);
			client_flush(s);
		}
		if (rc)
			return;
	}
	connect_upstream(s);
}

static void parse_request_head(struct sl_session *s)
{
	struct sl_request *r = s->r;
	struct sl_iob *b = &s->in;
	size_t used;
	llhttp_errno_t e =
	    sl_http_execute(&s->r->rp, b->data, b->data + b->parse, b->wr - b->parse, &used);
	b->parse += (uint32_t)used;
	r->r_in += used;
	if (e == HPE_PAUSED && s->r->rp.headers_done) {
		if (b->parse > head_limit(s)) {
			refuse_request(s, 431, "head over max_header_bytes");
			return;
		}
		request_head_done(s);
		return;
	}
	if (e == HPE_OK) {
		if (b->parse > head_limit(s)) {
			refuse_request(s, 431, "head over max_header_bytes");
			return;
		}
		rd_on(s); /* the rest of the head */
		return;
	}
	const char *why = llhttp_get_error_reason(&s->r->rp.p);
	int st = r->req.err_status ? r->req.err_status : 400;
	if (!r->req.err_status && e == HPE_INVALID_VERSION &&
	    !(s->r->rp.p.http_major == 1 && s->r->rp.p.http_minor <= 1))
		st = 505; /* HTTP/1.2, HTTP/3.0, ...: a version, just not ours */
	refuse_request(s, st, why);
}

/* ---- request body and upstream head ---- */

static int is_retryable(const struct sl_session *s)
{
	const struct sl_request *r = s->r;
	if (r->resp_started || r->resp_head_done || (r->uin.data && r->uin.wr))
		return 0; /* a response byte arrived: the upstream acted on it */
	unsigned int max = r->upstream ? r->upstream->retries : 1;
	/* a body can be sent again only while all of it is still in the buffer */
	int body_gone = r->has_body && (!r->req_done || r->body_discarded);
	if (r->up && r->up->reused && r->tries <= max + 1 && !body_gone)
		return 1; /* stale pooled connection: the upstream never saw the request */
	return r->idempotent && !r->has_body && r->tries <= max;
}

/* The message is complete: rewrite its trailer section in place (forbidden fields
 * dropped) and make it forwardable. Returns the new end of forwardable bytes, or
 * UINT32_MAX when the section is malformed. */
static uint32_t trailers_done(struct sl_worker *w, struct sl_iob *b, struct sl_http_parser *hp,
			      const struct sl_conf_listener_tls *t)
{
	unsigned int dropped = 0;
	if (hp->trailer_off > b->parse || hp->trailer_off < b->fwd)
		return UINT32_MAX; /* lost track of it: refuse rather than guess */
	/* a request's trailers must not carry the identity headers either: an upstream
	 * that merges trailers into headers would take the client's word for them */
	const char *ids[2] = {t ? t->subject_header : NULL, t ? t->fingerprint_header : NULL};
	size_t n = sl_trailer_filter_names(b->data + hp->trailer_off, b->parse - hp->trailer_off,
					   &dropped, ids, t ? 2 : 0);
	if (n == SL_TRAILER_BAD)
		return UINT32_MAX;
	if (dropped) {
		w->st->trailers_dropped += dropped;
		sl_log(SL_LOG_DEBUG, "msg=\"trailer fields dropped\" count=%u", dropped);
	}
	hp->in_trailer = 0;
	return hp->trailer_off + (uint32_t)n;
}

/* Where forwardable bytes end after a parser run over a raw (not de-chunked) body:
 * everything parsed, except a trailer section, which waits for its end. UINT32_MAX for
 * a malformed trailer section. */
static uint32_t raw_body_end(struct sl_worker *w, struct sl_iob *b, struct sl_http_parser *hp,
			     const struct sl_conf_listener_tls *t)
{
	if (!hp->in_trailer)
		return b->parse;
	if (hp->message_done)
		return trailers_done(w, b, hp, t);
	return hp->trailer_off;
}

static const char *parse_error(const struct sl_http_parser *hp)
{
	switch (hp->body_err) {
	case SL_BODY_EXT_TOO_LONG:
		return "chunk extension too long";
	case SL_BODY_TRAILER_TOO_BIG:
		return "trailer section too big";
	case SL_BODY_BAD_FRAMING:
		return "control byte or bare CR/LF in chunk framing";
	default:
		return llhttp_get_error_reason(&hp->p);
	}
}

/* Hand body bytes [from, fwd) of the input to request_body_filter. 1 if the request is
 * gone or answered (the caller stops), 0 to go on. */
static int body_filter(struct sl_session *s, uint32_t from)
{
	struct sl_request *r = s->r;
	const struct sl_proxy_ops *ops = s->w->d->ops;
	struct sl_iob *b = &s->in;
	if (!ops->request_body_filter || (b->fwd <= from && !r->req_done) || r->body_filter_end)
		return 0;
	uint32_t gen = s->gen;
	r->body_filter_end = r->req_done;
	int rc = PHASE_CALL(
	    s, PH_REQUEST_BODY_FILTER,
	    ops->request_body_filter(s, r->ctx, b->data + from, b->fwd - from, r->req_done));
	if (GONE(s, gen))
		return 1;
	if (rc < 0) {
		r->keepalive = 0;
		send_error(s, 400);
		return 1;
	}
	return 0;
}

static void pump_request_body(struct sl_session *s)
{
	struct sl_request *r = s->r;
	struct sl_iob *b = &s->in;
	if (!r->req_done) {
		size_t used;
		uint32_t old = b->fwd;
		llhttp_errno_t e = sl_http_execute(&s->r->rp, b->data, b->data + b->parse,
						   b->wr - b->parse, &used);
		b->parse += (uint32_t)used;
		r->r_in += used;
		r->body_wire += used;
		if (e == HPE_PAUSED && s->r->rp.message_done) {
			r->req_done = 1;
		} else if (e != HPE_OK) {
			refuse_request(s, 400, parse_error(&s->r->rp));
			return;
		}
		uint32_t end = raw_body_end(s->w, b, &s->r->rp, r->listener->tls);
		if (end == UINT32_MAX) {
			refuse_request(s, 400, "trailer line without CRLF");
			return;
		}
		b->fwd = end;
		/* every byte of the body counts, chunk framing included */
		uint64_t max = sconf(s)->limits.max_body_size;
		if (max && r->body_wire > max) {
			refuse_request(s, 413, "body over max_body_size");
			return;
		}
		/* the filter sees the body only once request_filter has seen the head */
		if (r->body_filter_on && body_filter(s, old))
			return;
		if (r->req_done) {
			if (s->timer == ST_BODY)
				arm(s, ST_NONE);
		}
	}
	if (r->up && sl_upconn_ready(r->up) && r->head_queued)
		up_flush(s);
}

static int build_upstream_head(struct sl_session *s)
{
	struct sl_request *r = s->r;
	struct sl_head *h = &r->req;
	const char *base = s->in.data;
	const struct sl_conf *c = sconf(s);
	unsigned int fwd = (c->forwarded.x_forwarded_for ? SL_FWD_FOR : 0) |
			   (c->forwarded.x_forwarded_proto ? SL_FWD_PROTO : 0) |
			   (c->forwarded.x_forwarded_host ? SL_FWD_HOST : 0) |
			   (s->io.t != &sl_transport_raw ? SL_FWD_HTTPS : 0);
	const char *ip = client_ip(s); /* renders the address, sets ip_len */
	if (sl_head_forward(h, base, ip, r->ip_len, fwd))
		return -ENOSPC;
	const struct sl_conf_listener_tls *t = r->listener->tls;
	if (t) {
		/* the identity headers say what sluice verified, never what the client
		 * wrote: its copies go first, whatever client_auth is, in any spelling a
		 * gateway reads as the same name (X_Client_Subject) */
		sl_head_remove_gw(h, base, t->subject_header, strlen(t->subject_header));
		sl_head_remove_gw(h, base, t->fingerprint_header, strlen(t->fingerprint_header));
		if (s->client_id) {
			const char *subj = s->client_id, *fp = subj + strlen(subj) + 1;
			if (sl_head_append(h, t->subject_header, strlen(t->subject_header), subj,
					   strlen(subj)) ||
			    sl_head_append(h, t->fingerprint_header, strlen(t->fingerprint_header),
					   fp, strlen(fp)))
				return -ENOSPC;
		}
	}
	if (c->forwarded.x_request_id != SL_REQID_OFF) {
		size_t n;
		const char *id = sl_session_request_id(s, &n);
		if (sl_head_set(h, base, "X-Request-Id", id))
			return -ENOSPC;
	}

	const struct sl_proxy_ops *ops = s->w->d->ops;
	if (ops->upstream_request_filter) {
		uint32_t gen = s->gen;
		int rc = PHASE_CALL(s, PH_UPSTREAM_REQUEST_FILTER,
				    ops->upstream_request_filter(s, r->ctx));
		if (GONE(s, gen) || r->local_resp)
			return SL_DONE;
		if (rc < 0)
			return -ECANCELED;
	}

	if (iob_alloc(s->w, &r->out, SL_MEM_SMALL))
		return -ENOMEM;
	const char *method = llhttp_method_name((llhttp_method_t)s->r->rp.p.method);
	for (;;) {
		struct sl_out o;
		sl_out_init(&o, r->out.data, r->out.cap);
		sl_h1_render_request(&o, method, h, base, r->upgrade_req);
		if (o.ok) {
			r->out.rd = 0;
			r->out.wr = (uint32_t)o.len;
			r->out_to_client = 0;
			r->head_queued = 1;
			return 0;
		}
		if (iob_grow(s->w, &r->out))
			return -ENOSPC;
	}
}

/* ---- upstream connection set-up ---- */

static void up_connected(struct sl_session *s)
{
	struct sl_request *r = s->r;
	struct sl_upconn *c = r->up;
	sl_upconn_want_read(c, 1);
	c->requests++;
	r->t_up = sl_mono_ns();
	sl_http_parser_init(&r->up_p, 0, &r->resp);
	r->up_p.skip_body = r->is_head_req;
	sl_head_reset(&r->resp, SL_HDR_MAX, 0);
	if (r->expect_continue && !r->sent_continue && !r->req_done) {
		/* sluice streams the body, so it may ask for it as soon as it has a peer;
		 * what a short write leaves goes out before anything else for the client */
		r->sent_continue = 1;
		r->cont_left = sizeof(SL_CONTINUE) - 1;
		uint32_t gen = s->gen;
		client_flush(s);
		if (GONE(s, gen))
			return;
	}
	if (r->req_done)
		arm(s, ST_RESPONSE);
	else
		arm(s, ST_BODY);
	up_flush(s);
}

/* A connect failed: 1 when the proxy asked for another try, 0 when an error went out
 * (or the request is gone). */
static int connect_failed(struct sl_session *s, int err, const char *why)
{
	struct sl_request *r = s->r;
	const struct sl_proxy_ops *ops = s->w->d->ops;
	sl_log(SL_LOG_WARN,
	       "msg=\"upstream connect failed\" peer=%s err=\"%s\" stage=\"%s\" try=%u",
	       r->peer.name, strerror(-err), why, r->tries);
	sl_lb_report(&r->lb, SL_LB_CONNECT_FAIL, 0, 0, 0);
	if (r->up) {
		r->up_broken = 1;
		up_release(s, 0);
	}
	r->fail_status = err == -ETIMEDOUT ? 504 : 502;
	if (ops->fail_to_connect) {
		uint32_t gen = s->gen;
		int rc = PHASE_CALL(s, PH_FAIL_TO_CONNECT,
				    ops->fail_to_connect(s, r->ctx, &r->peer, err));
		if (GONE(s, gen) || r->local_resp)
			return 0;
		if (rc == SL_RETRY)
			return 1;
	}
	send_error(s, r->fail_status);
	return 0;
}

/* For the access log: when the attempt began and which server it went to. */
static void note_attempt(struct sl_request *r)
{
	r->t_try = sl_mono_ns();
	r->t_hdr = 0; /* a retry after a 5xx: the head that counts is the next one */
	if (!r->t_up0)
		r->t_up0 = r->t_try;
	size_t n = strnlen(r->peer.name, sizeof(r->peer.name)), room = sizeof(r->tried_names);
	size_t at = r->tried_len, need = (at ? 1 : 0) + n;
	if (at >= 4 && !memcmp(r->tried_names + at - 3, "...", 3))
		return;		    /* already cut */
	if (at + need + 4 > room) { /* keep room for ",..." */
		memcpy(r->tried_names + at, ",...", 4);
		r->tried_len = (uint8_t)(at + 4);
		return;
	}
	if (at)
		r->tried_names[at++] = ',';
	memcpy(r->tried_names + at, r->peer.name, n);
	r->tried_len = (uint8_t)(at + n);
}

/* 128 random bits as 32 hex digits (nginx's $request_id), from a per-thread xorshift
 * seeded once from the kernel. */
static void gen_request_id(char *out)
{
	static __thread uint64_t st[2];
	if (!st[0] && !st[1]) {
		if (getrandom(st, sizeof(st), 0) != sizeof(st)) {
			st[0] = sl_mono_ns() ^ (uint64_t)(uintptr_t)&st;
			st[1] = (uint64_t)getpid() << 32 | 0x9e3779b9u;
		}
		st[0] |= 1;
	}
	static const char hex[] = "0123456789abcdef";
	for (int k = 0; k < 2; k++) {
		uint64_t x = st[0], y = st[1]; /* xorshift128+ */
		st[0] = y;
		x ^= x << 23;
		st[1] = x ^ y ^ (x >> 17) ^ (y >> 26);
		uint64_t v = st[1] + y;
		for (int i = 0; i < 16; i++)
			out[k * 16 + i] = hex[(v >> (60 - 4 * i)) & 15];
	}
}

/* An incoming id worth keeping: 1..63 bytes of letters, digits and ._:- (nothing that
 * would need escaping in a log or a header). */
static int good_request_id(const char *v, size_t n)
{
	if (n == 0 || n >= 64)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char ch = v[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == ':' || ch == '-'))
			return 0;
	}
	return 1;
}

const char *sl_session_request_id(struct sl_session *s, size_t *len)
{
	struct sl_request *r = s->r;
	if (!r->req_id_len) {
		const struct sl_conf *c = sconf(s);
		int i = r->rp.headers_done && c->forwarded.x_request_id == SL_REQID_KEEP
			    ? sl_head_find(&r->req, s->in.data, "x-request-id", 12)
			    : -1;
		const char *v = i >= 0 ? sl_hdr_value(&r->req, s->in.data, (unsigned)i) : NULL;
		size_t n = i >= 0 ? r->req.h[i].value_len : 0;
		if (v && good_request_id(v, n)) {
			memcpy(r->req_id, v, n);
			r->req_id_len = (uint8_t)n;
		} else {
			gen_request_id(r->req_id);
			r->req_id_len = 32;
		}
		r->req_id[r->req_id_len] = 0;
	}
	*len = r->req_id_len;
	return r->req_id;
}

static void connect_upstream(struct sl_session *s)
{
	struct sl_request *r = s->r;
	const struct sl_proxy_ops *ops = s->w->d->ops;
	uint32_t gen = s->gen;
	for (;;) {
		r->tries++;
		memset(&r->peer, 0, sizeof(r->peer));
		int rc = PHASE_CALL(s, PH_UPSTREAM_PEER, ops->upstream_peer(s, r->ctx, &r->peer));
		if (GONE(s, gen) || r->local_resp || rc == SL_DONE)
			return;
		if (rc < 0) {
			/* nothing left to try after a failed attempt: that failure is the
			 * answer, not "no upstream" */
			int st = (rc == -EAGAIN || rc == -ENOENT) ? 503 : 502;
			send_error(s, r->fail_status && st == 503 ? r->fail_status : st);
			return;
		}
		if (!r->head_queued) {
			rc = build_upstream_head(s);
			if (GONE(s, gen) || rc == SL_DONE)
				return;
			if (rc) {
				send_error(s, rc == -ENOSPC ? 431 : 500);
				return;
			}
		}
		r->out.rd = 0;
		r->out_to_client = 0;
		r->up_broken = 0; /* it described the previous attempt's connection */
		if (r->uin.data)
			r->uin.rd = r->uin.fwd = r->uin.parse = r->uin.wr = 0;
		r->peer_hash = sl_peer_hash(&r->peer);
		note_attempt(r);
		if (!acquire_connection(s) || GONE(s, gen))
			return;
	}
}

/* A pooled connection, else a new one, else (at max_conns_per_server) a place in the
 * worker's queue. 0 when the request is on its way (or answered), 1 when the caller
 * should ask for another peer. */
static int acquire_connection(struct sl_session *s)
{
	struct sl_request *r = s->r;
	struct sl_upconn *c;
	int rc = sl_upconn_get(&s->w->up, &r->peer, r->peer_hash, r->upstream, r->fresh_only, s,
			       &up_cbs, &c);
	if (rc == 0) {
		r->up = c;
		up_connected(s);
		return 0;
	}
	if (rc == SL_UP_CONNECTING) {
		r->up = c;
		arm(s, ST_CONNECT);
		return 0;
	}
	if (rc == -EBUSY) {
		queue_wait(s);
		return 0;
	}
	return connect_failed(s, rc, "connect");
}

/* ---- waiting for a connection slot (pool.max_conns_per_server) ---- */

static void queue_unlink(struct sl_session *s)
{
	if (s->r)
		sl_connector_unwait(&s->w->up, &s->r->upw);
}

/* A connection may have come back to the pool or a slot freed: try again. Still at the
 * limit, the request goes back to the tail, its deadline unchanged. */
static void queue_wake(struct sl_upwait *q)
{
	struct sl_session *s = sl_container_of(q, struct sl_request, upw)->s;
	ENTER(s);
	uint32_t gen = s->gen;
	if (acquire_connection(s) && !GONE(s, gen))
		connect_upstream(s);
	LEAVE(s);
}

static void queue_wait(struct sl_session *s)
{
	struct sl_worker *w = s->w;
	struct sl_request *r = s->r;
	sl_connector_wait(&w->up, &r->upw, r->peer_hash, queue_wake);
	if (s->timer != ST_QUEUE) { /* first time in: the deadline does not move on retries */
		w->st->queue_waits++;
		s->timer = ST_QUEUE;
		event_add(&r->tev, sl_connector_tv(&w->up, r->upstream ? r->upstream->pool.queue_timeout
								      : 3000));
	}
}

/* retry_on: a 5xx head, nothing of it sent to the client, a request that can be sent
 * again whole (no body, or all of it still in the buffer): another server gets it. Not
 * only idempotent methods: a status in retry_on is the operator saying that answer means
 * "not done here", and a POST whose body is whole can be sent again as it came. */
static int status_retry(struct sl_session *s)
{
	struct sl_request *r = s->r;
	int body_gone = r->has_body && (!r->req_done || r->body_discarded);
	if (r->resp_started || body_gone || !sl_upstream_retry_status(s, r->status))
		return 0;
	sl_log(SL_LOG_INFO, "msg=\"retrying on another server\" peer=%s status=%d try=%u",
	       r->peer.name, r->status, r->tries);
	r->up_broken = 1;
	up_release(s, 0); /* not a stale pooled connection: it answered */
	r->resp_head_done = 0;
	r->interim = 0;
	r->status = 0;
	retry_request(s);
	return 1;
}

static void retry_request(struct sl_session *s)
{
	struct sl_request *r = s->r;
	if (r->up && r->up->reused) {
		s->w->st->pool_stale_retries++;
		/* the peer is fine, the pooled connection was stale: same choice, new socket */
		sl_lb_untry_last(&r->lb);
		r->fresh_only = 1;
	}
	up_release(s, 0);
	r->up_broken = 0;
	r->req_sent = 0;
	if (r->has_body)
		s->in.rd = r->head_end; /* the whole body is still there (is_retryable) */
	connect_upstream(s);
}

/* ---- request bytes to the upstream ---- */

static void up_write_failed(struct sl_session *s, int err)
{
	struct sl_request *r = s->r;
	sl_log(SL_LOG_DEBUG, "msg=\"upstream write failed\" peer=%s err=%d", r->peer.name, -err);
	r->up_broken = 1;
	r->fail_status = 502;
	if (is_retryable(s)) {
		retry_request(s);
		return;
	}
	if (r->uin.data && r->uin.wr) {
		/* a response is arriving: let the read side finish it */
		r->keepalive = 0;
		sl_upconn_want_write(r->up, 0);
		return;
	}
	send_error(s, 502);
}

static void up_flush(struct sl_session *s)
{
	struct sl_request *r = s->r;
	struct sl_upconn *c = r->up;
	struct sl_iob *b = &s->in;
	if (!c || !sl_upconn_ready(c) || (r->up_broken && s->state != SS_TUNNEL))
		return;
	struct iovec iov[2];
	int n = 0;
	if (!r->out_to_client && r->out.rd < r->out.wr) {
		iov[n].iov_base = r->out.data + r->out.rd;
		iov[n++].iov_len = r->out.wr - r->out.rd;
	}
	if (b->data && b->rd < b->fwd) {
		iov[n].iov_base = b->data + b->rd;
		iov[n++].iov_len = b->fwd - b->rd;
	}
	if (n) {
		size_t left;
		int rc = sl_io_send(&c->io, iov, n, &left);
		if (rc < 0) {
			up_write_failed(s, rc);
			return;
		}
		if (!r->out_to_client && r->out.rd < r->out.wr)
			r->out.rd += (uint32_t)sl_iov_took(&left, r->out.wr - r->out.rd);
		b->rd += (uint32_t)left;
		if (rc) {
			sl_upconn_want_write(c, 1);
			return;
		}
	}
	sl_upconn_want_write(c, 0);
	if (s->state == SS_TUNNEL) {
		if (b->rd == b->wr)
			b->rd = b->fwd = b->parse = b->wr = 0;
		if (s->client_eof) {
			sl_io_shutdown_wr(&c->io);
			if (r->up_eof)
				session_close(s);
			return;
		}
		rd_on(s);
		return;
	}
	if (!r->req_done && b->rd == b->parse && b->parse == b->wr && b->rd > r->head_end) {
		iob_restart(b, r->head_end, &r->rp);
		r->body_discarded = 1;
	}
	if (!r->req_done && !s->client_eof)
		rd_on(s);
	if (r->req_done && !r->req_sent) {
		r->req_sent = 1;
		if (!r->resp_head_done)
			arm(s, ST_RESPONSE);
	}
}

/* ---- response ---- */

/* The upstream's response is unusable: it gets a 502 and its connection is closed. */
static void bad_response(struct sl_session *s, const char *why)
{
	struct sl_request *r = s->r;
	sl_log(SL_LOG_WARN, "msg=\"bad upstream response\" peer=%s reason=\"%s\"", r->peer.name,
	       why);
	r->up_broken = 1;
	send_error(s, 502);
}

static int response_head(struct sl_session *s)
{
	struct sl_request *r = s->r;
	struct sl_head *h = &r->resp;
	struct sl_iob *b = &r->uin;
	const char *why = NULL;
	int st = h->status;
	const struct sl_proxy_ops *ops = s->w->d->ops;
	uint32_t gen = s->gen;

	r->resp_head_done = 1;
	if (b->parse > head_limit(s)) {
		bad_response(s, "response head over max_header_bytes");
		return -1;
	}
	if (st >= 100 && st < 200 && st != 101) {
		r->interim = 1; /* dropped (sluice sent its own 100 Continue); not body */
		return 0;
	}
	if (st == 101 && !r->upgrade_req) {
		bad_response(s, "101 to a request that did not ask for an upgrade");
		return -1;
	}
	if (!r->out_to_client && r->out.rd < r->out.wr) {
		bad_response(s, "response before the request head was sent");
		return -1;
	}
	if (sl_head_analyze(h, b->data, 0, &why)) {
		bad_response(s, why);
		return -1;
	}
	r->status = st;
	r->t_hdr = sl_mono_ns();
	r->up_time_ns = r->t_hdr - r->t_up;
	sl_lb_report(&r->lb, SL_LB_RESPONSE, st, r->up_time_ns, 0);
	if (st >= 500 && status_retry(s))
		return -1;
	if (ops->response_filter) {
		int rc = PHASE_CALL(s, PH_RESPONSE_FILTER, ops->response_filter(s, r->ctx));
		if (GONE(s, gen))
			return -1;
		if (rc < 0) {
			r->up_broken = 1;
			send_error(s, 502);
			return -1;
		}
	}
	if (r->is_head_req || st == 204 || st == 304 || st == 101)
		r->body_mode = BM_NONE;
	else if (h->info.chunked && h->info.te_other && r->req.http_minor == 0) {
		/* de-chunked for HTTP/1.0, the other codings would go unannounced */
		bad_response(s, "transfer coding other than chunked for an HTTP/1.0 client");
		return -1;
	} else if (h->info.chunked)
		r->body_mode = r->req.http_minor >= 1 ? BM_RAW : BM_DECHUNK;
	else if (h->info.has_cl)
		r->body_mode = BM_RAW;
	else
		r->body_mode = BM_EOF;
	if (r->cache && sl_pcache_response(s)) {
		/* a 304 refreshed the stored object, or stale-if-error: answered from it */
		r->up_broken = 1;
		up_release(s, 0);
		b->rd = b->fwd = b->parse = b->wr = 0;
		arm(s, ST_NONE);
		client_flush(s);
		return -1;
	}
	if (r->body_mode == BM_EOF || r->body_mode == BM_DECHUNK || !r->req_done ||
	    (r->upgrade_req && st != 101) || s->w->draining)
		r->keepalive = 0;
	r->up_p.dechunk = r->body_mode == BM_DECHUNK;

	enum sl_h1_conn conn = st == 101		? SL_H1_UPGRADE
			       : !r->keepalive		? SL_H1_CLOSE
			       : r->req.http_minor == 0 ? SL_H1_KEEP_10
							: SL_H1_KEEP;
	for (;;) {
		struct sl_out o;
		sl_out_init(&o, r->out.data, r->out.cap);
		sl_h1_render_response(&o, st, h, b->data, r->body_mode == BM_RAW && h->info.chunked,
				      conn);
		if (o.ok) {
			r->out.rd = 0;
			r->out.wr = (uint32_t)o.len;
			r->out_to_client = 1;
			break;
		}
		if (iob_grow(s->w, &r->out)) {
			bad_response(s, "response head does not fit");
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
	struct sl_request *r = s->r;
	struct sl_iob *b = &r->uin;
	const struct sl_proxy_ops *ops = s->w->d->ops;
	uint32_t gen = s->gen;
	while (!r->resp_done) {
		size_t used;
		uint32_t old_fwd = b->fwd;
		if (r->up_p.dechunk)
			r->up_p.dechunk_wr = b->data + b->fwd;
		llhttp_errno_t e =
		    sl_http_execute(&r->up_p, b->data, b->data + b->parse, b->wr - b->parse, &used);
		b->parse += (uint32_t)used;
		if (e != HPE_OK && e != HPE_PAUSED) {
			bad_response(s, parse_error(&r->up_p));
			return;
		}
		if (r->resp_head_done && !r->interim) {
			if (r->up_p.dechunk) {
				/* an HTTP/1.0 client gets no trailers: the de-chunked
				 * data ends before them, and they are never forwarded */
				b->fwd = (uint32_t)(r->up_p.dechunk_wr - b->data);
			} else {
				uint32_t end = raw_body_end(s->w, b, &r->up_p, NULL);
				if (end == UINT32_MAX) {
					bad_response(s, "trailer line without CRLF");
					return;
				}
				b->fwd = end;
			}
			if (ops->response_body_filter &&
			    (b->fwd > old_fwd || r->up_p.message_done)) {
				int rc = PHASE_CALL(s, PH_RESPONSE_BODY_FILTER,
						    ops->response_body_filter(
							s, r->ctx, b->data + old_fwd,
							b->fwd - old_fwd, r->up_p.message_done));
				if (GONE(s, gen))
					return;
				if (rc < 0) {
					r->up_broken = 1;
					send_error(s, 502);
					return;
				}
			}
		}
		if (e == HPE_OK) {
			if (!r->resp_head_done && b->wr > head_limit(s)) {
				bad_response(s, "response head over max_header_bytes");
				return;
			}
			break;
		}
		if (r->up_p.headers_done && !r->resp_head_done) {
			if (response_head(s))
				return;
			continue;
		}
		if (r->up_p.message_done) {
			if (r->interim) {
				/* interim response consumed: parse the next head from offset 0 */
				uint32_t left = b->wr - b->parse;
				memmove(b->data, b->data + b->parse, left);
				b->rd = b->fwd = b->parse = 0;
				b->wr = left;
				r->resp_head_done = 0;
				r->interim = 0;
				int skip = r->up_p.skip_body;
				sl_http_parser_next(&r->up_p);
				r->up_p.skip_body = (uint8_t)skip;
				sl_head_reset(&r->resp, SL_HDR_MAX, 0);
				continue;
			}
			r->resp_done = 1;
			if (r->cache)
				sl_pcache_origin_done(s);
		}
	}
	if (r->resp_done && r->resp.status == 101) {
		start_tunnel(s);
		return;
	}
	if (r->resp_head_done && !r->resp_done)
		arm(s, ST_UPIDLE);
	else if (r->resp_done && s->timer != ST_NONE)
		arm(s, ST_NONE);
	client_flush(s);
}

static void start_tunnel(struct sl_session *s)
{
	struct sl_request *r = s->r;
	struct sl_iob *b = &r->uin;
	s->state = SS_TUNNEL;
	log_request(s);
	b->parse = b->fwd = b->wr;
	s->in.rd = s->in.parse;
	s->in.parse = s->in.fwd = s->in.wr;
	r->head_end = 0;
	arm(s, ST_TUNNEL);
	rd_on(s);
	uint32_t gen = s->gen;
	client_flush(s);
	if (!GONE(s, gen) && s->state == SS_TUNNEL && r->up)
		up_flush(s);
}

static void up_eof(struct sl_session *s, int err)
{
	struct sl_request *r = s->r;
	struct sl_upconn *c = r->up;
	if (s->state == SS_TUNNEL) {
		r->up_eof = 1;
		sl_upconn_want_read(c, 0);
		if (err) {
			session_close(s);
			return;
		}
		if (r->uin.rd == r->uin.fwd) {
			sl_io_shutdown_wr(&s->io);
			if (s->client_eof)
				session_close(s);
		}
		return;
	}
	r->up_broken = 1;
	sl_upconn_want_read(c, 0);
	if (!err && r->resp_head_done && r->body_mode == BM_EOF) {
		llhttp_finish(&r->up_p.p);
		r->resp_done = 1;
		if (r->cache)
			sl_pcache_origin_done(s);
		arm(s, ST_NONE);
		client_flush(s);
		return;
	}
	int nothing = !r->resp_head_done && !(r->uin.data && r->uin.wr);
	if (nothing)
		r->fail_status = 502;
	if (!r->resp_head_done && is_retryable(s)) {
		sl_log(SL_LOG_WARN,
		       "msg=\"upstream closed before responding\" peer=%s err=%d retry=1",
		       r->peer.name, -err);
		retry_request(s);
		return;
	}
	sl_log(SL_LOG_WARN, "msg=\"%s\" peer=%s err=%d",
	       nothing		    ? "upstream closed before responding"
	       : !r->resp_head_done ? "upstream closed in the response head"
				    : "upstream closed mid-response",
	       r->peer.name, -err);
	if (!r->resp_started) {
		send_error(s, 502);
		return;
	}
	/* the client already has part of the response: close once what we have is out */
	r->keepalive = 0;
	s->state = SS_CLOSING;
	up_release(s, 0);
	client_flush(s);
}

/* ---- event callbacks ---- */

static void up_read_ev(struct sl_session *s)
{
	struct sl_request *r = s->r;
	struct sl_upconn *c = r->up;
	struct sl_iob *b = &r->uin;
	if (iob_alloc(s->w, b, SL_MEM_IO)) {
		send_error(s, 502);
		return;
	}
	if (b->wr == b->cap) {
		if (r->resp_head_done)
			iob_compact(b, 0, &r->up_p);
		if (b->wr == b->cap) {
			if (!r->resp_head_done) {
				if (iob_grow(s->w, b)) {
					bad_response(s, "response head does not fit");
					return;
				}
			} else if (b->rd == b->fwd) {
				/* nothing to send, no room to read: a trailer section or
				 * framing that does not fit the buffer */
				bad_response(s, "response framing does not fit the buffer");
				return;
			} else {
				sl_upconn_want_read(c, 0); /* backpressure: resumed when the client drains */
				if (s->timer == ST_UPIDLE || s->timer == ST_NONE)
					arm(s, ST_SEND); /* now waiting on the client */
				return;
			}
		}
	}
	ssize_t n = sl_io_read(&c->io, b->data + b->wr, b->cap - b->wr);
	if (n > 0) {
		b->wr += (uint32_t)n;
		if (s->state == SS_TUNNEL) {
			/* raw bytes: everything received is forwardable */
			b->parse = b->fwd = b->wr;
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

static void client_eof(struct sl_session *s, int err)
{
	struct sl_request *r = s->r;
	if (err || !r || s->state == SS_IDLE || s->state == SS_HEAD || s->state == SS_CLOSING) {
		session_close(s);
		return;
	}
	if (s->state == SS_TUNNEL) {
		s->client_eof = 1;
		rd_off(s);
		if (s->in.rd == s->in.fwd && r->up) {
			sl_io_shutdown_wr(&r->up->io);
			if (r->up_eof)
				session_close(s);
		}
		return;
	}
	if (!r->req_done) {
		/* gone in the middle of its request body */
		r->up_broken = 1;
		session_close(s);
		return;
	}
	/* half-closed after a whole request: it may still read the response */
	s->client_eof = 1;
	r->keepalive = 0;
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
	if (s->state == SS_LINGER)
		b->wr = 0; /* lingering: what the client sends is dropped */
	if (b->wr == b->cap) {
		if (s->state == SS_IDLE || s->state == SS_HEAD) {
			if (b->rd == b->wr) {
				b->rd = b->fwd = b->parse = b->wr = 0; /* cannot happen; be safe */
			} else if (iob_grow(s->w, b)) {
				if (!s->r && start_request(s)) {
					session_close(s);
					return;
				}
				refuse_request(s, 431, "head does not fit the buffer");
				return;
			}
		} else {
			struct sl_request *r = s->r;
			if (s->state != SS_TUNNEL && b->rd > r->head_end)
				r->body_discarded = 1;
			iob_compact(b, s->state == SS_TUNNEL ? 0 : r->head_end, &s->r->rp);
			if (b->wr == b->cap) {
				if (s->state == SS_PROXY && !r->req_done && b->rd == b->fwd) {
					/* nothing to forward and no room: trailers or framing
					 * that do not fit */
					refuse_request(s, 400, "request framing does not fit");
					return;
				}
				rd_off(s);
				return;
			}
		}
	}
	ssize_t n = sl_io_read(&s->io, b->data + b->wr, b->cap - b->wr);
	if (n <= 0) {
		if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
			if (s->state == SS_IDLE && b->wr > b->parse)
				goto parse; /* pipelined request left from the previous one */
			if ((s->state == SS_IDLE || s->state == SS_LINGER) && !b->wr)
				iob_free(s->w,
					 b); /* nothing yet: a waiting connection holds none */
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
		if (start_request(s)) {
			session_close(s);
			return;
		}
		/* fallthrough */
	case SS_HEAD:
		parse_request_head(s);
		break;
	case SS_PROXY:
		if (!s->r->req_done) {
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
	case SS_HANDSHAKE: /* client_read_cb drives the handshake; never here */
		break;
	case SS_LINGER:
		b->wr = 0;
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
	struct sl_request *r = s->r;
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
		s->w->st->send_timeouts++;
		sl_log(SL_LOG_DEBUG, "msg=\"client stopped reading, closed\" client=%s",
		       sl_session_client_str(s));
		session_close(s);
		break;
	case ST_HEADER:
		s->w->st->header_timeouts++;
		refuse_request(s, 408, "request head not complete within client_header");
		break;
	case ST_BODY:
		refuse_request(s, 408, "request body stalled past client_body");
		break;
	case ST_CONNECT: {
		uint32_t gen = s->gen;
		if (connect_failed(s, -ETIMEDOUT, "connect timeout") && !GONE(s, gen))
			connect_upstream(s);
		break;
	}
	case ST_QUEUE:
		queue_unlink(s);
		s->w->st->queue_timeouts++;
		sl_log(SL_LOG_WARN, "msg=\"no connection slot within queue_timeout\" peer=%s",
		       r->peer.name);
		send_error(s, 503);
		break;
	case ST_RESPONSE:
	case ST_UPIDLE:
		sl_log(SL_LOG_WARN, "msg=\"upstream timed out\" peer=%s", r->peer.name);
		if (!r->resp_head_done)
			sl_lb_report(&r->lb, SL_LB_TIMEOUT, 504, 0, 0);
		r->up_broken = 1;
		if (r->resp_started) {
			r->keepalive = 0;
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

static void log_request(struct sl_session *s)
{
	struct sl_worker *w = s->w;
	struct sl_request *r = s->r;
	int st = r->status;
	uint64_t now = sl_mono_ns();
	sl_histo_add(&w->lat_request, now - r->t_start);
	if (r->t_up0 && r->t_hdr)
		sl_histo_add(&w->lat_upstream, r->t_hdr - r->t_up0);
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
	if (ops->logging) {
		/* nothing a logging callback may call ends the request (sl_respond is
		 * refused), so r stays valid; this also runs from session_close() */
		r->phase = PH_LOGGING;
		ops->logging(s, r->ctx, st);
		r->phase = PH_NONE;
	}
	if (w->alog.fd >= 0)
		sl_access_log_write(&w->alog, s);
}

/* Lingering close (as nginx's lingering_close, RFC 9112 9.6): a connection cut before
 * its request ended (a 408 at client_header, a refused head) still has the client
 * sending. A close() with its bytes unread sends a reset, and a reset that reaches the
 * client before it read the answer discards the answer. So the answer is followed by a
 * FIN, what the client still sends is read and dropped, and the connection closes at
 * the client's FIN, an error, or the keep-alive idle timeout (the idle list's tick). */
static void linger_close(struct sl_session *s)
{
	if (sl_io_shutdown_wr(&s->io)) {
		session_close(s);
		return;
	}
	struct sl_iob *b = &s->in;
	b->rd = b->fwd = b->parse = b->wr = 0;
	s->state = SS_LINGER;
	rd_on(s);
	idle_arm(s, ST_KEEPALIVE);
}

static void finish_request(struct sl_session *s)
{
	struct sl_worker *w = s->w;
	struct sl_request *r = s->r;
	if (r->up) {
		/* a HEAD/204/304 answer announcing a body: a broken upstream may send that
		 * body late, into the next request's response */
		int announced =
		    r->body_mode == BM_NONE && r->resp.status != 101 &&
		    (r->resp.info.chunked || (r->resp.info.has_cl && r->up_p.p.content_length > 0));
		int reuse = !r->up_broken && r->req_sent && r->resp_done && !announced &&
			    r->body_mode != BM_EOF && llhttp_should_keep_alive(&r->up_p.p) &&
			    r->uin.parse == r->uin.wr;
		up_release(s, reuse);
	}
	log_request(s);
	int keep =
	    r->keepalive && r->req_done && !s->client_eof && !w->draining && s->state != SS_CLOSING;
	request_release(s);
	if (!keep && s->linger && !s->client_eof && !s->closed) {
		linger_close(s);
		return;
	}
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
	s->state = SS_IDLE;
	if (!s->nodelay) {
		/* kept alive: small responses must not wait behind Nagle from now on (nginx's
		 * tcp_nodelay does the same); one-request connections never need the call */
		sl_net_nodelay(s->io.fd);
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
	sl_slab_put(&w->session_slab, s);
	sl_worker_session_gone(w);
}

/* Tear the connection down. The memory goes back only when the outermost event
 * callback returns (see ENTER/LEAVE), so code up the stack may test s->closed. */
static void session_close(struct sl_session *s)
{
	struct sl_worker *w = s->w;
	struct sl_request *r = s->r;
	if (s->closed)
		return;
	s->closed = 1; /* first: a logging callback that calls back in finds it closed */
	if (r && s->state != SS_TUNNEL &&
	    (s->r->rp.headers_done || r->req.target_len || r->status)) {
		if (!r->status)
			r->status = 499; /* closed before a response was complete */
		log_request(s);
	}
	request_release(s);
	event_del(&s->rev);
	idle_unlink(s);
	hs_release(s);
	free(s->client_id);
	s->client_id = NULL;
	sl_io_close(&s->io);
	iob_free(w, &s->in);
	sl_list_del(&w->sessions, &s->link);
	w->n_sessions--;
	w->st->active--;
	w->state->active--;
	if (!s->depth)
		session_free(s);
}

/* Event entry points: bracket the work so that a close is finished safely. */
static void client_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sl_session *s = arg;
	ENTER(s);
	if (s->state == SS_HANDSHAKE)
		hs_step(s);
	else
		client_read_ev(fd, what, s);
	/* TLS: a read that filled the buffer may have left whole records in OpenSSL */
	if (!s->closed && s->rd_on && s->io.t != &sl_transport_raw && sl_io_pending(&s->io))
		event_active(&s->rev, EV_READ, 0);
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

/* The upstream connection's events (user/upstream/connector.c calls these). */
static void up_ready_cb(void *owner)
{
	struct sl_session *s = owner;
	ENTER(s);
	up_connected(s);
	LEAVE(s);
}

static void up_failed_cb(void *owner, int err, const char *why)
{
	struct sl_session *s = owner;
	ENTER(s);
	uint32_t gen = s->gen;
	if (connect_failed(s, err, why) && !GONE(s, gen))
		connect_upstream(s);
	LEAVE(s);
}

static void up_readable_cb(void *owner)
{
	struct sl_session *s = owner;
	ENTER(s);
	uint32_t gen = s->gen;
	struct sl_upconn *c = s->r->up;
	up_read_ev(s);
	/* TLS: plaintext OpenSSL already holds is not announced by the socket again */
	if (!GONE(s, gen) && s->r->up == c && c->rd_on && sl_io_pending(&c->io))
		event_active(&c->rev, EV_READ, 0);
	LEAVE(s);
}

static void up_writable_cb(void *owner)
{
	struct sl_session *s = owner;
	ENTER(s);
	up_flush(s);
	LEAVE(s);
}

static const struct sl_upconn_cbs up_cbs = {
    .ready = up_ready_cb,
    .failed = up_failed_cb,
    .readable = up_readable_cb,
    .writable = up_writable_cb,
};

/* ---- TLS termination: the handshake before the HTTP/1 session ---- */

/* Handshake failures: scanners and broken clients make many, so one process-wide budget
 * of lines per second, with the count of lines not written since the last one. */
#define TLS_LOG_PER_SEC 10
static uint64_t tls_log_sec;
static unsigned int tls_log_n;
static unsigned long tls_log_dropped;

static void tls_fail_log(struct sl_session *s, const char *why)
{
	uint64_t sec = sl_mono_ns() / 1000000000ull;
	uint64_t cur = __atomic_load_n(&tls_log_sec, __ATOMIC_RELAXED);
	if (cur != sec && __atomic_compare_exchange_n(&tls_log_sec, &cur, sec, 0,
						      __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		__atomic_store_n(&tls_log_n, 0, __ATOMIC_RELAXED);
	if (__atomic_fetch_add(&tls_log_n, 1, __ATOMIC_RELAXED) >= TLS_LOG_PER_SEC) {
		__atomic_fetch_add(&tls_log_dropped, 1, __ATOMIC_RELAXED);
		return;
	}
	unsigned long dropped = __atomic_exchange_n(&tls_log_dropped, 0, __ATOMIC_RELAXED);
	SSL *ssl = sl_tls_ssl(&s->io);
	const char *sni = ssl ? SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name) : NULL;
	/* the client wrote it: host-name bytes only, bounded */
	char sni_v[72];
	size_t k = 0;
	for (const char *c = sni ? sni : "-"; *c && k < sizeof(sni_v) - 1; c++)
		sni_v[k++] = (isalnum((unsigned char)*c) || strchr(".-_*", *c)) ? *c : '?';
	sni_v[k] = 0;
	const struct sl_conf *c = s->hs_hold ? s->hs_hold->conf : s->w->hold->conf;
	int li = c->slot_index[s->lsn->index];
	sl_log(SL_LOG_INFO,
	       "msg=\"tls handshake failed\" client=%s listener=%s sni=%s %s suppressed=%lu",
	       sl_session_client_str(s), li >= 0 ? c->listeners[li].address : "-", sni_v, why,
	       dropped);
}

/* The events the handshake waits for: rev is EV_READ for the connection's life, and
 * carries EV_WRITE too only while a handshake flight waits for room in the socket. */
static void hs_want(struct sl_session *s, short ev)
{
	short extra = (short)(ev & EV_WRITE);
	if (extra != s->hs_ev) {
		if (s->rd_on)
			event_del(&s->rev);
		event_assign(&s->rev, s->w->base, s->io.fd, (short)(EV_READ | extra | EV_PERSIST),
			     client_read_cb, s);
		s->hs_ev = extra;
		s->rd_on = 0;
	}
	rd_on(s);
}

static void hs_release(struct sl_session *s)
{
	if (s->hs_hold) {
		sl_worker_conf_put(s->w, s->hs_hold);
		s->hs_hold = NULL;
	}
}

/* nginx answers plain HTTP on a TLS port with a 400 that says so; a browser user who
 * typed http:// sees why, and a script gets a status instead of a reset. */
#define PLAIN_HTTP_BODY "The plain HTTP request was sent to HTTPS port\n"
static const char plain_http_400[] =
    "HTTP/1.1 400 Bad Request\r\n"
    "Content-Type: text/plain\r\n"
    "Content-Length: 46\r\n" /* strlen(PLAIN_HTTP_BODY) */
    "Connection: close\r\n"
    "\r\n" PLAIN_HTTP_BODY;
_Static_assert(sizeof(PLAIN_HTTP_BODY) - 1 == 46, "Content-Length of plain_http_400");

static void hs_failed(struct sl_session *s)
{
	struct sl_worker *w = s->w;
	int reason = sl_tls_reason(&s->io);
	switch (reason) {
	case 0: /* no OpenSSL error: the socket ended or failed */
		w->st->tls_fail_closed++;
		if (SL_LOG_DEBUG >= sl_log_level_cur) /* port probes, health checks */
			tls_fail_log(s, sl_tls_why(&s->io));
		break;
	case SSL_R_HTTP_REQUEST:
	case SSL_R_HTTPS_PROXY_REQUEST: {
		w->st->tls_fail_http++;
		/* best effort, one send: the bytes of the request are in OpenSSL's buffer,
		 * not the socket's, so the close that follows does not reset the answer */
		ssize_t n = send(s->io.fd, plain_http_400, sizeof(plain_http_400) - 1,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		(void)n;
		shutdown(s->io.fd, SHUT_WR);
		tls_fail_log(s, "reason=\"plain HTTP request\"");
		break;
	}
	case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
	case SSL_R_CERTIFICATE_VERIFY_FAILED:
	case SSL_R_NO_CERTIFICATES_RETURNED:
		w->st->tls_fail_cert++;
		tls_fail_log(s, sl_tls_why(&s->io));
		break;
	default:
		w->st->tls_fail_protocol++;
		tls_fail_log(s, sl_tls_why(&s->io));
		break;
	}
	session_close(s);
}

/* The client certificate's identity, for the headers sent upstream: made once. */
static void hs_identity(struct sl_session *s)
{
	char subj[512], fp[2 * EVP_MAX_MD_SIZE + 1];
	SSL *ssl = sl_tls_ssl(&s->io);
	if (sl_tls_peer_identity(ssl, subj, sizeof(subj), fp, sizeof(fp)))
		return;
	size_t a = strlen(subj), b = strlen(fp);
	s->client_id = malloc(a + b + 2); /* per mTLS connection, not per request */
	if (!s->client_id)
		return;
	memcpy(s->client_id, subj, a + 1);
	memcpy(s->client_id + a + 1, fp, b + 1);
}

static void hs_step(struct sl_session *s)
{
	int rc = sl_tls_handshake(&s->io);
	if (rc == SL_TLS_AGAIN) {
		hs_want(s, sl_io_wants(&s->io, 0));
		return;
	}
	if (rc < 0) {
		hs_failed(s);
		return;
	}
	struct sl_worker *w = s->w;
	if (sl_tls_resumed(&s->io))
		w->st->tls_resumed++;
	else
		w->st->tls_full++;
	if (SSL_get0_peer_certificate(sl_tls_ssl(&s->io)))
		hs_identity(s);
	hs_release(s);
	s->state = SS_IDLE;
	idle_unlink(s);
	arm(s, ST_HEADER);
	hs_want(s, EV_READ);
	/* the first request often came with the client's Finished */
	client_read_ev(s->io.fd, EV_READ, s);
}

static void tls_accept(struct sl_session *s, const struct sl_conf_listener_tls *t)
{
	struct sl_worker *w = s->w;
	int fd = s->io.fd;
	if (sl_tls_io_init(&s->io, fd, ((struct sl_tls_srv *)t->srv)->dflt, 1)) {
		w->st->tls_fail_protocol++;
		session_close(s);
		return;
	}
	/* handshake flights and then small responses: never wait behind Nagle */
	sl_net_nodelay(fd);
	s->nodelay = 1;
	s->hs_hold = sl_worker_conf_get(w);
	s->state = SS_HANDSHAKE;
	s->idle_since = sl_mono_ns();
	sl_list_add_tail(&s->lsn->hs, &s->idle_link);
	s->idle_on = IDLE_HANDSHAKE + 1;
	/* the ClientHello is usually there already */
	hs_step(s);
}

static void sl_session_accept(struct sl_worker *w, struct sl_listen *l, int fd,
			      const struct sockaddr_storage *sa, socklen_t salen)
{
	struct sl_session *s = sl_slab_get(&w->session_slab);
	if (!s) {
		close(fd);
		return;
	}
	memset(s, 0, sizeof(*s));
	sl_io_init_raw(&s->io, fd);
	s->w = w;
	s->lsn = l;
	memcpy(&s->client, sa, salen < sizeof(s->client) ? salen : sizeof(s->client));
	s->client_len = salen < sizeof(s->client) ? salen : sizeof(s->client);
	event_assign(&s->rev, w->base, fd, EV_READ | EV_PERSIST, client_read_cb, s);
	sl_list_add_head(&w->sessions, &s->link);
	w->n_sessions++;
	w->st->accepted++;
	w->st->active++;
	w->state->active++;
	const struct sl_conf *c = w->hold->conf;
	int li = c->slot_index[l->index];
	const struct sl_conf_listener_tls *t = li >= 0 ? c->listeners[li].tls : NULL;
	ENTER(s);
	if (t && t->srv) {
		tls_accept(s, t);
	} else {
		s->state = SS_IDLE;
		arm(s, ST_HEADER);
		/* The request is usually there already: read it now. The socket joins the
		 * epoll set only when we have to wait for it, so a one-request connection
		 * never does. */
		client_read_ev(fd, EV_READ, s);
	}
	LEAVE(s);
}

/* Worker draining: close idle keep-alive connections, close the rest after their
 * response. */
static void http1_drain(struct sl_worker *w)
{
	/* handed over to a successor: an idle connection may be carrying a request to us
	 * right now; it gets its answer (with Connection: close) and only a connection
	 * that stays quiet is closed, by the tick (sl_session_expire_idle) */
	int soft = atomic_load_explicit(&w->soft_drain, memory_order_relaxed);
	struct sl_link *l = w->sessions.head;
	while (l) {
		struct sl_link *next = l->next;
		struct sl_session *s = sl_container_of(l, struct sl_session, link);
		if (((s->state == SS_IDLE && s->in.wr == 0) || s->state == SS_LINGER) && !soft)
			session_close(s);
		else if (s->r)
			s->r->keepalive = 0;
		l = next;
	}
}

/* A reload removed listener l: its idle connections close, the others close after the
 * request they are in. */
static void http1_drain_listener(struct sl_worker *w, struct sl_listen *lsn)
{
	struct sl_link *l = w->sessions.head;
	while (l) {
		struct sl_link *next = l->next;
		struct sl_session *s = sl_container_of(l, struct sl_session, link);
		if (s->lsn == lsn) {
			if ((s->state == SS_IDLE && s->in.wr == 0) || s->state == SS_LINGER)
				session_close(s);
			else if (s->r)
				s->r->keepalive = 0;
		}
		l = next;
	}
}

/* Close every session now (fast exit) and free the recycled request objects. */
static void http1_close_all(struct sl_worker *w)
{
	while (w->sessions.head)
		session_close(sl_container_of(w->sessions.head, struct sl_session, link));
	while (w->free_requests) {
		struct sl_request *r = w->free_requests;
		w->free_requests = r->next_free;
		sl_slab_put(&w->request_slab, r);
	}
	w->n_free_requests = 0;
	sl_slab_destroy(&w->request_slab);
	sl_pcache_worker_exit(w);
}

/* The cache's mailbox or lock timer resumes a parked request (proxy/cache.c). */
void sl_session_cache_resume(struct sl_session *s, int how)
{
	ENTER(s);
	if (!s->closed && s->r) {
		if (how == SL_PCACHE_FLUSH)
			client_flush(s);
		else
			connect_upstream(s);
	}
	LEAVE(s);
}

/* The worker starts: sessions and request objects come from its slabs. */
static void http1_init(struct sl_worker *w)
{
	sl_slab_init(&w->session_slab, sizeof(struct sl_session), 1);
	sl_slab_init(&w->request_slab, sizeof(struct sl_request) + w->d->ops->ctx_size + 16, 15);
}

const struct sl_conn_handler sl_http1_handler = {
    .init = http1_init,
    .accept = sl_session_accept,
    .drain = http1_drain,
    .drain_listener = http1_drain_listener,
    .expire = sl_session_expire_idle,
    .trim = sl_session_trim,
    .close_all = http1_close_all,
};
