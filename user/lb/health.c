/* Active health checks: the "health" background service, on a thread of its own so that
 * no check ever runs on a worker. Every tick it walks the live upstreams that have a
 * health_check and starts the checks that are due (each server's first one at a random
 * point of its first interval), each a non-blocking connect (tcp) plus one request and
 * the first bytes of the answer (http). A server goes down after `fall` failures in a
 * row and up again after `rise` successes; the state lives in the shared server, so it
 * survives swaps and reloads. */
#include <arpa/inet.h>
#include <errno.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "core/clock.h"
#include "core/log.h"
#include "lb/lb.h"
#include "net/tls.h"
#include "net/transport.h"
#include "sluice/service.h"
#include "sluice/sluice.h"

#define HC_TICK_MS 50
#define HC_MAX_RUNNING 1024 /* checks in flight at once (fds) */
#define HC_BUF 16384	    /* status, headers and body are judged on this much */

enum stage {
	ST_CONNECT,
	ST_PROXY_SEND, /* via_proxy: CONNECT to the server through the proxy, as requests go */
	ST_PROXY_READ,
	ST_HANDSHAKE, /* TLS upstreams: a tcp check is connect + handshake */
	ST_SEND,
	ST_READ,
};

/* What a check of one server needs to speak TLS (copied: the upstream's strings go with
 * the next reload). */
struct hc_tls {
	int on, verify;
	char ca[1024], cert[1024], key[1024];
	int has_ca, has_cert, has_key;
	char sni[128];	 /* tls.sni when sni_set ("" = none); else the server's host name */
	int sni_set;
	char vname[128]; /* tls.verify_hostname, "" = the sni */
};

/* upstreams.NAME.via_proxy, copied for the same reason. */
struct hc_via {
	int on;
	struct sockaddr_storage addr;
	socklen_t addrlen;
	char headers[512];
};

struct check {
	struct check *prev, *next;
	struct sl_server *srv; /* referenced */
	char upstream[64];
	struct event *ev;
	struct sl_io io; /* fd -1 until the socket exists; TLS once connected, if asked */
	int type;	 /* enum sl_hc_type */
	unsigned int rise, fall;
	int status_lo, status_hi;
	char *body; /* substring wanted, owned */
	enum stage stage;
	SSL_CTX *ctx; /* the connector's (process lifetime), NULL for plain text */
	char sni[128], vname[128];
	uint64_t deadline; /* sl_mono_ns(): the whole check, whatever the peer trickles */
	char req[2200];
	size_t req_len, req_off;
	char preq[1024]; /* the CONNECT request (via_proxy) */
	size_t preq_len, preq_off;
	char buf[HC_BUF + 1];
	size_t len;
};

struct health {
	struct event_base *base;
	struct check *running;
	unsigned int n_running;
	uint64_t rng;
	sl_health_tls_ctx_fn tls_ctx;
};

static struct health hs;

static uint64_t rnd(void)
{
	if (!hs.rng)
		hs.rng = sl_mono_ns() | 1;
	hs.rng ^= hs.rng << 13;
	hs.rng ^= hs.rng >> 7;
	hs.rng ^= hs.rng << 17;
	return hs.rng;
}

static void verdict(struct check *c, int ok, const char *why)
{
	struct sl_server *s = c->srv;
	uint64_t now = sl_mono_ns();
	atomic_store(&s->hc_seen, 1);
	if (ok) {
		atomic_fetch_add(&s->hc_ok, 1);
		s->hc_down_streak = 0;
		s->hc_up_streak++;
		if (atomic_load(&s->down) && s->hc_up_streak >= c->rise) {
			atomic_store(&s->ramp_from, now); /* slow start, where the set has one */
			atomic_store(&s->down, 0);
			sl_log(SL_LOG_WARN, "msg=\"server up\" upstream=%s server=%s checks_ok=%u",
			       c->upstream, s->address, s->hc_up_streak);
		}
		return;
	}
	atomic_fetch_add(&s->hc_fail, 1);
	snprintf(s->hc_last, sizeof(s->hc_last), "%s", why);
	s->hc_up_streak = 0;
	s->hc_down_streak++;
	if (!atomic_load(&s->down) && s->hc_down_streak >= c->fall) {
		atomic_store(&s->down, 1);
		sl_log(SL_LOG_WARN,
		       "msg=\"server down\" upstream=%s server=%s checks_failed=%u reason=\"%s\"",
		       c->upstream, s->address, s->hc_down_streak, why);
	}
}

static void check_free(struct check *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		hs.running = c->next;
	if (c->next)
		c->next->prev = c->prev;
	hs.n_running--;
	if (c->ev)
		event_free(c->ev);
	sl_io_close(&c->io);
	c->srv->hc_busy = 0;
	sl_server_put(c->srv);
	free(c->body);
	free(c);
}

static void finish(struct check *c, int ok, const char *why)
{
	verdict(c, ok, why);
	check_free(c);
}

/* The answer so far: 1 good, -1 bad (why set), 0 need more. eof: nothing more comes. */
static int judge(struct check *c, int eof, const char **why)
{
	c->buf[c->len] = 0;
	if (c->len < 12) {
		*why = "short or no response";
		return eof ? -1 : 0;
	}
	if (memcmp(c->buf, "HTTP/1.", 7) || (c->buf[7] != '0' && c->buf[7] != '1') ||
	    c->buf[8] != ' ' || c->buf[9] < '1' || c->buf[9] > '5' || c->buf[10] < '0' ||
	    c->buf[10] > '9' || c->buf[11] < '0' || c->buf[11] > '9') {
		*why = "not an HTTP/1 response";
		return -1;
	}
	int st = (c->buf[9] - '0') * 100 + (c->buf[10] - '0') * 10 + (c->buf[11] - '0');
	if (st < c->status_lo || st > c->status_hi) {
		*why = "unexpected status";
		return -1;
	}
	if (!c->body)
		return 1;
	const char *hend = memmem(c->buf, c->len, "\r\n\r\n", 4);
	if (hend && memmem(hend + 4, c->len - (size_t)(hend + 4 - c->buf), c->body,
			   strlen(c->body)))
		return 1;
	*why = "body lacks the expected text";
	return eof || c->len == HC_BUF ? -1 : 0;
}

static void check_cb(evutil_socket_t fd, short what, void *arg);

/* Wait for ev on the socket, within what is left of the check's time. The timeout of a
 * persistent event restarts at each wakeup, so it is recomputed from the deadline every
 * time (a peer sending a byte now and then must not stretch the check). */
static int wait_for(struct check *c, short ev)
{
	uint64_t now = sl_mono_ns();
	if (now >= c->deadline)
		return -ETIMEDOUT;
	uint64_t left = c->deadline - now;
	struct timeval tv = {(time_t)(left / 1000000000ull),
			     (suseconds_t)(left % 1000000000ull / 1000)};
	event_del(c->ev);
	event_assign(c->ev, hs.base, c->io.fd, (short)(ev | EV_PERSIST), check_cb, c);
	return event_add(c->ev, &tv) ? -ENOMEM : 0;
}

static const char *timeout_why(const struct check *c)
{
	switch (c->stage) {
	case ST_CONNECT:
		return "connect timed out";
	case ST_PROXY_SEND:
	case ST_PROXY_READ:
		return "proxy CONNECT timed out";
	case ST_HANDSHAKE:
		return "TLS handshake timed out";
	default:
		return "timed out";
	}
}

/* A failed handshake: certificate verification apart from the rest (its own counter). */
static void tls_failed(struct check *c)
{
	char why[96];
	long vr = SSL_get_verify_result(sl_tls_ssl(&c->io));
	if (vr != X509_V_OK && SSL_get_verify_mode(sl_tls_ssl(&c->io)) != SSL_VERIFY_NONE) {
		atomic_fetch_add(&c->srv->hc_tls_fail, 1);
		snprintf(why, sizeof(why), "certificate not verified: %s",
			 X509_verify_cert_error_string(vr));
	} else {
		snprintf(why, sizeof(why), "TLS handshake failed: %s", sl_tls_why(&c->io));
	}
	finish(c, 0, why);
}

static void step(struct check *c);

/* A byte stream to the server is open (direct, or through the proxy's tunnel): TLS
 * next when the upstream uses it, then the check proper. */
static void tunnel_ready(struct check *c)
{
	if (c->ctx) {
		int fd = c->io.fd;
		if (sl_tls_io_init(&c->io, fd, c->ctx, 0)) {
			check_free(c); /* our memory, not the server's fault: no verdict */
			return;
		}
		if (sl_tls_client_setup(&c->io, c->sni, c->vname[0] ? c->vname : NULL, NULL)) {
			finish(c, 0, "TLS set-up: bad sni or name");
			return;
		}
		c->stage = ST_HANDSHAKE;
		step(c);
		return;
	}
	if (c->type == SL_HC_TCP) {
		finish(c, 1, NULL);
		return;
	}
	c->stage = ST_SEND;
	step(c);
}

/* One step of the check; returns after arming the next wait or finishing. */
static void step(struct check *c)
{
	const char *why = NULL;
	short want = 0;
	switch (c->stage) {
	case ST_CONNECT: {
		int err = 0;
		socklen_t l = sizeof(err);
		if (getsockopt(c->io.fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0)
			err = errno;
		if (err) {
			finish(c, 0, c->preq_len ? "proxy connect failed" : "connect failed");
			return;
		}
		if (c->preq_len) {
			c->stage = ST_PROXY_SEND;
			step(c);
			return;
		}
		tunnel_ready(c);
		return;
	}
	case ST_PROXY_SEND: {
		struct iovec iov = {c->preq + c->preq_off, c->preq_len - c->preq_off};
		size_t done = 0;
		int rc = sl_io_send(&c->io, &iov, 1, &done);
		c->preq_off += done;
		if (rc < 0) {
			finish(c, 0, "proxy: send failed");
			return;
		}
		if (c->preq_off < c->preq_len) {
			want = EV_WRITE;
			break;
		}
		c->stage = ST_PROXY_READ;
		step(c);
		return;
	}
	case ST_PROXY_READ: {
		ssize_t n;
		do
			n = read(c->io.fd, c->buf + c->len, HC_BUF - c->len);
		while (n < 0 && errno == EINTR);
		if (n < 0 && errno == EAGAIN) {
			want = EV_READ;
			break;
		}
		if (n <= 0) {
			finish(c, 0, "proxy closed before answering");
			return;
		}
		c->len += (size_t)n;
		c->buf[c->len] = 0;
		const char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
		if (!end) {
			if (c->len == HC_BUF || memchr(c->buf, 0, c->len)) {
				finish(c, 0, "proxy: not an HTTP/1 answer");
				return;
			}
			want = EV_READ;
			break;
		}
		if (memcmp(c->buf, "HTTP/1.", 7) || c->len < 13 || c->buf[8] != ' ' ||
		    c->buf[9] != '2' || c->buf[10] < '0' || c->buf[10] > '9' || c->buf[11] < '0' ||
		    c->buf[11] > '9') {
			finish(c, 0, "proxy refused CONNECT");
			return;
		}
		/* as the connector: a 2xx that announces a body opens no tunnel */
		for (const char *l = strstr(c->buf, "\r\n"); l && l < end; l = strstr(l + 2, "\r\n"))
			if (!strncasecmp(l + 2, "content-length:", 15) ||
			    !strncasecmp(l + 2, "transfer-encoding:", 18)) {
				finish(c, 0, "proxy: 2xx answer announcing a body");
				return;
			}
		/* the tunnel's far side speaks second: bytes here are not the server's */
		if ((size_t)(end + 4 - c->buf) != c->len) {
			finish(c, 0, "proxy: bytes after its answer");
			return;
		}
		c->len = 0;
		tunnel_ready(c);
		return;
	}
	case ST_HANDSHAKE: {
		int rc = sl_tls_handshake(&c->io);
		if (rc == SL_TLS_AGAIN) {
			want = sl_io_wants(&c->io, 0);
			break;
		}
		if (rc < 0) {
			tls_failed(c);
			return;
		}
		if (c->type == SL_HC_TCP) {
			finish(c, 1, NULL);
			return;
		}
		c->stage = ST_SEND;
		step(c);
		return;
	}
	case ST_SEND: {
		struct iovec iov = {c->req + c->req_off, c->req_len - c->req_off};
		size_t done = 0;
		int rc = sl_io_send(&c->io, &iov, 1, &done);
		c->req_off += done;
		if (rc < 0) {
			finish(c, 0, "send failed");
			return;
		}
		if (c->req_off < c->req_len) {
			want = sl_io_wants(&c->io, EV_WRITE);
			break;
		}
		c->stage = ST_READ;
		step(c);
		return;
	}
	case ST_READ:
		for (;;) {
			ssize_t n = sl_io_read(&c->io, c->buf + c->len, HC_BUF - c->len);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0 && errno == EAGAIN) {
				want = sl_io_wants(&c->io, EV_READ);
				break;
			}
			int eof = n <= 0;
			if (n > 0)
				c->len += (size_t)n;
			int r = judge(c, eof, &why);
			if (r) {
				finish(c, r > 0, why);
				return;
			}
			if (eof) { /* judge decides at eof; kept for safety */
				finish(c, 0, "short or no response");
				return;
			}
		}
		break;
	}
	int rc = wait_for(c, want ? want : EV_READ);
	if (rc)
		finish(c, 0, rc == -ETIMEDOUT ? timeout_why(c) : "out of memory");
}

static void check_cb(evutil_socket_t fd, short what, void *arg)
{
	struct check *c = arg;
	if ((what & EV_TIMEOUT) || sl_mono_ns() >= c->deadline) {
		finish(c, 0, timeout_why(c));
		return;
	}
	step(c);
}

/* The host of "host:port" when it is a name (not an IP address): the default SNI, as
 * the connector sends it. */
static void server_name(const char *address, char *out, size_t cap)
{
	out[0] = 0;
	const char *colon = strrchr(address, ':');
	size_t n = colon ? (size_t)(colon - address) : strlen(address);
	if (!n || address[0] == '[' || n >= cap || n >= 128)
		return;
	char host[128];
	memcpy(host, address, n);
	host[n] = 0;
	struct in_addr a4;
	struct in6_addr a6;
	if (inet_pton(AF_INET, host, &a4) == 1 || inet_pton(AF_INET6, host, &a6) == 1)
		return;
	memcpy(out, host, n + 1);
}

/* The client context for the upstream's TLS settings, or NULL with why. */
static SSL_CTX *tls_ctx_for(const struct hc_tls *t, char *why, size_t len)
{
	if (!hs.tls_ctx) {
		snprintf(why, len, "TLS set-up: no TLS in this program");
		return NULL;
	}
	struct sl_peer p;
	memset(&p, 0, sizeof(p));
	p.tls = 1;
	p.verify = (uint8_t)t->verify;
	p.ca_file = t->has_ca ? t->ca : NULL;
	p.client_cert = t->has_cert ? t->cert : NULL;
	p.client_key = t->has_key ? t->key : NULL;
	char err[200];
	SSL_CTX *ctx = hs.tls_ctx(&p, err, sizeof(err));
	if (!ctx)
		snprintf(why, len, "TLS set-up: %.80s", err);
	return ctx;
}

static void start_check(struct sl_upstream *u, const struct sl_conf_hc *hc,
			const struct hc_tls *t, const struct hc_via *via, struct sl_server *s,
			const char *req, size_t req_len)
{
	struct check *c = calloc(1, sizeof(*c));
	if (!c)
		return;
	sl_io_init_raw(&c->io, -1);
	c->srv = s;
	atomic_fetch_add(&s->refcnt, 1);
	s->hc_busy = 1;
	c->next = hs.running;
	if (hs.running)
		hs.running->prev = c;
	hs.running = c;
	hs.n_running++;
	snprintf(c->upstream, sizeof(c->upstream), "%s", u->name);
	c->type = hc->type;
	c->rise = hc->rise;
	c->fall = hc->fall;
	c->status_lo = hc->status_lo;
	c->status_hi = hc->status_hi;
	if (hc->body && !(c->body = strdup(hc->body))) {
		check_free(c);
		return;
	}
	if (req_len > sizeof(c->req)) {
		finish(c, 0, "check request too long");
		return;
	}
	memcpy(c->req, req, req_len);
	c->req_len = req_len;
	if (t->on) {
		char why[96];
		if (!(c->ctx = tls_ctx_for(t, why, sizeof(why)))) {
			finish(c, 0, why);
			return;
		}
		if (t->sni_set)
			snprintf(c->sni, sizeof(c->sni), "%s", t->sni);
		else
			server_name(s->address, c->sni, sizeof(c->sni));
		if (t->verify)
			snprintf(c->vname, sizeof(c->vname), "%s", t->vname[0] ? t->vname : c->sni);
	}
	const struct sockaddr_storage *to = &s->addr;
	socklen_t to_len = s->addrlen;
	if (via->on) {
		int n = snprintf(c->preq, sizeof(c->preq),
				 "CONNECT %s HTTP/1.1\r\nHost: %s\r\n%s\r\n", s->address,
				 s->address, via->headers);
		if (n < 0 || (size_t)n >= sizeof(c->preq)) {
			finish(c, 0, "proxy: CONNECT request too long");
			return;
		}
		c->preq_len = (size_t)n;
		to = &via->addr;
		to_len = via->addrlen;
	}
	int fd = socket(to->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		/* out of fds is our problem, not the server's: no verdict */
		check_free(c);
		return;
	}
	c->io.fd = fd;
	c->stage = ST_CONNECT;
	if (connect(fd, (const struct sockaddr *)to, to_len) && errno != EINPROGRESS) {
		finish(c, 0, c->preq_len ? "proxy connect failed" : "connect failed");
		return;
	}
	c->ev = event_new(hs.base, fd, EV_WRITE | EV_PERSIST, check_cb, c);
	c->deadline = sl_mono_ns() + (uint64_t)hc->timeout * 1000000ull;
	struct timeval tv = {hc->timeout / 1000, (hc->timeout % 1000) * 1000};
	if (!c->ev || event_add(c->ev, &tv)) {
		check_free(c);
		return;
	}
}

/* The request an http check sends, from the upstream's settings. */
static size_t build_request(const struct sl_conf_hc *hc, const struct sl_server *s, char *buf,
			    size_t cap)
{
	if (hc->type != SL_HC_HTTP)
		return 0;
	int n = snprintf(buf, cap,
			 "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: sluice-health-check\r\n"
			 "Accept: */*\r\nConnection: close\r\n\r\n",
			 hc->method ? hc->method : "GET", hc->path ? hc->path : "/",
			 hc->host ? hc->host : s->address);
	return n < 0 ? 0 : (size_t)n;
}

static void copy_opt(char *dst, size_t cap, const char *src, int *has)
{
	*has = src != NULL;
	snprintf(dst, cap, "%s", src ? src : "");
}

static void tick_upstream(struct sl_upstream *u, uint64_t now)
{
	struct sl_conf_hc hc;
	struct hc_tls t;
	int has;
	char body[1100] = "", method[1100] = "", path[1100] = "", host[1100] = "";
	pthread_mutex_lock(&u->lock);
	hc = u->hc;
	/* the strings go with the next reload: copy them while locked */
	if (hc.body)
		snprintf(body, sizeof(body), "%s", hc.body);
	if (hc.method)
		snprintf(method, sizeof(method), "%s", hc.method);
	if (hc.path)
		snprintf(path, sizeof(path), "%s", hc.path);
	if (hc.host)
		snprintf(host, sizeof(host), "%s", hc.host);
	memset(&t, 0, sizeof(t));
	t.on = u->tls.on;
	t.verify = u->tls.verify;
	if (t.on) {
		copy_opt(t.ca, sizeof(t.ca), u->tls.ca, &t.has_ca);
		copy_opt(t.cert, sizeof(t.cert), u->tls.client_cert, &t.has_cert);
		copy_opt(t.key, sizeof(t.key), u->tls.client_key, &t.has_key);
		copy_opt(t.sni, sizeof(t.sni), u->tls.sni, &t.sni_set);
		copy_opt(t.vname, sizeof(t.vname), u->tls.verify_hostname, &has);
	}
	struct hc_via via;
	memset(&via, 0, sizeof(via));
	if (u->via.address) {
		via.on = 1;
		via.addr = u->via.addr;
		via.addrlen = u->via.addrlen;
		memcpy(via.headers, u->via.headers, sizeof(via.headers));
		via.headers[sizeof(via.headers) - 1] = 0;
	}
	struct sl_upset *set = u->cur;
	if (set)
		sl_upset_get(set);
	pthread_mutex_unlock(&u->lock);
	hc.body = hc.body ? body : NULL;
	hc.method = hc.method ? method : NULL;
	hc.path = hc.path ? path : NULL;
	hc.host = hc.host ? host : NULL;
	if (!set)
		return;
	for (unsigned int i = 0; i < set->n; i++) {
		struct sl_server *s = set->srv[i].s;
		if (hc.type == SL_HC_NONE) {
			/* checks turned off by a reload: what they found no longer holds */
			if (atomic_load(&s->down)) {
				atomic_store(&s->down, 0);
				s->hc_next = 0;
			}
			continue;
		}
		if (s->hc_busy || atomic_load(&s->admin) == SL_SRV_DISABLED)
			continue;
		if (!s->hc_next) { /* jittered start: spread over the first interval */
			s->hc_next = now + (rnd() % ((uint64_t)hc.interval * 1000000ull));
			continue;
		}
		if (now < s->hc_next || hs.n_running >= HC_MAX_RUNNING)
			continue;
		s->hc_next = now + (uint64_t)hc.interval * 1000000ull;
		char req[2200];
		size_t len = build_request(&hc, s, req, sizeof(req));
		start_check(u, &hc, &t, &via, s, req, len);
	}
	sl_upset_put(set);
}

static void health_tick(void *data)
{
	unsigned int n;
	struct sl_upstream **v = sl_upstream_all(&n);
	uint64_t now = sl_mono_ns();
	for (unsigned int i = 0; v && i < n; i++) {
		tick_upstream(v[i], now);
		sl_upstream_put(v[i]);
	}
	free(v);
}

static int health_start(struct event_base *base, void *data)
{
	hs.base = base;
	return 0;
}

static void health_stop(void *data)
{
	while (hs.running)
		check_free(hs.running);
}

int sl_health_register(sl_health_tls_ctx_fn tls_ctx)
{
	hs.tls_ctx = tls_ctx;
	struct sl_service svc = {
	    .name = "health",
	    .own_thread = 1,
	    .interval_ms = HC_TICK_MS,
	    .start = health_start,
	    .tick = health_tick,
	    .stop = health_stop,
	};
	return sl_service_add(&svc);
}
