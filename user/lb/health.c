/* Active health checks: the "health" background service, on a thread of its own so that
 * no check ever runs on a worker. Every tick it walks the live upstreams that have a
 * health_check and starts the checks that are due (each server's first one at a random
 * point of its first interval), each a non-blocking connect (tcp) plus one request and
 * the first bytes of the answer (http). A server goes down after `fall` failures in a
 * row and up again after `rise` successes; the state lives in the shared server, so it
 * survives swaps and reloads. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "core/clock.h"
#include "core/log.h"
#include "lb/lb.h"
#include "sluice/service.h"

#define HC_TICK_MS 50
#define HC_MAX_RUNNING 1024 /* checks in flight at once (fds) */
#define HC_BUF 16384	    /* status, headers and body are judged on this much */

struct check {
	struct check *prev, *next;
	struct sl_server *srv; /* referenced */
	char upstream[64];
	struct event *ev;
	int fd;
	int type; /* enum sl_hc_type */
	unsigned int rise, fall;
	int status_lo, status_hi;
	char *body; /* substring wanted, owned */
	int connecting;
	uint64_t deadline; /* sl_mono_ns() */
	char req[2200];
	size_t req_len, req_off;
	char buf[HC_BUF + 1];
	size_t len;
};

struct health {
	struct event_base *base;
	struct check *running;
	unsigned int n_running;
	uint64_t rng;
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
	if (c->fd >= 0)
		close(c->fd);
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

static void check_cb(evutil_socket_t fd, short what, void *arg)
{
	struct check *c = arg;
	const char *why = NULL;
	if (what & EV_TIMEOUT) {
		finish(c, 0, c->connecting ? "connect timed out" : "timed out");
		return;
	}
	if (c->connecting) {
		int err = 0;
		socklen_t l = sizeof(err);
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0)
			err = errno;
		if (err) {
			finish(c, 0, "connect failed");
			return;
		}
		c->connecting = 0;
		if (c->type == SL_HC_TCP) {
			finish(c, 1, NULL);
			return;
		}
	}
	if (c->req_off < c->req_len) {
		ssize_t n = send(fd, c->req + c->req_off, c->req_len - c->req_off, MSG_NOSIGNAL);
		if (n < 0 && errno != EAGAIN && errno != EINTR) {
			finish(c, 0, "send failed");
			return;
		}
		if (n > 0)
			c->req_off += (size_t)n;
		if (c->req_off < c->req_len)
			return; /* still writable-armed */
		/* all sent: wait for the answer only, within what is left of the timeout */
		uint64_t now = sl_mono_ns();
		if (now >= c->deadline) {
			finish(c, 0, "timed out");
			return;
		}
		uint64_t left = c->deadline - now;
		struct timeval tv = {(time_t)(left / 1000000000ull),
				     (suseconds_t)(left % 1000000000ull / 1000)};
		event_del(c->ev);
		event_assign(c->ev, hs.base, fd, EV_READ | EV_PERSIST, check_cb, c);
		if (event_add(c->ev, &tv))
			finish(c, 0, "out of memory");
		return;
	}
	for (;;) {
		ssize_t n = read(fd, c->buf + c->len, HC_BUF - c->len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		int eof = n <= 0;
		if (n > 0)
			c->len += (size_t)n;
		int r = judge(c, eof, &why);
		if (r) {
			finish(c, r > 0, why);
			return;
		}
		if (eof)
			return;
	}
}

static void start_check(struct sl_upstream *u, const struct sl_conf_hc *hc, struct sl_server *s,
			const char *req, size_t req_len)
{
	struct check *c = calloc(1, sizeof(*c));
	if (!c)
		return;
	c->fd = -1;
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
	c->fd = socket(s->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		/* out of fds is our problem, not the server's: no verdict */
		check_free(c);
		return;
	}
	c->connecting = 1;
	if (connect(c->fd, (struct sockaddr *)&s->addr, s->addrlen) && errno != EINPROGRESS) {
		finish(c, 0, "connect failed");
		return;
	}
	c->ev = event_new(hs.base, c->fd, EV_WRITE | EV_PERSIST, check_cb, c);
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

static void tick_upstream(struct sl_upstream *u, uint64_t now)
{
	struct sl_conf_hc hc;
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
		start_check(u, &hc, s, req, len);
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

int sl_health_register(void)
{
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
