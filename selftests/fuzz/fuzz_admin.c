/* libFuzzer target: raw bytes on an admin API connection. The admin API's request parsing
 * is libevent's evhttp plus admin.c's routing, method checks, bearer-token check and query
 * parsing (on_request() and the handlers); none of it takes a byte buffer, so the whole
 * evhttp server of admin.c runs here, on abstract Unix sockets, against a fake daemon.
 * admin.c is included so that its static new_http() and routes are the ones fuzzed.
 *
 * Input: byte 0 bit 0 picks the TCP-style server (bearer token required) or the Unix
 * one; the rest is what the client sends before it half-closes.
 *
 * SIGPIPE is ignored as the daemon ignores it (server/daemon.c): evhttp may still write
 * a reply to a client that has closed, and the default action killed the fuzzer with no
 * reproducer and no final stats. RSS climbs for the first ~25k runs to ~450 MB and then
 * stays: that is AddressSanitizer's quarantine of freed memory (256 MB by default; with
 * ASAN_OPTIONS=quarantine_size_mb=0 it is flat at ~45 MB), not memory the harness or the
 * admin API keeps. */
#include "../../user/admin/admin.c"
#include "../../user/admin/admin_cache.c" /* /cache, /cache/purge, the cache metrics */

#include <signal.h>
#include <stdarg.h>
#include <sys/socket.h>

#include "config/config.h"
#include "lb/lb.h"

/* What admin.c calls outside itself: the daemon (server/control.h) and the log. */
enum sl_log_level sl_log_level_cur = SL_LOG_DEBUG;

void sl_log_emit(enum sl_log_level level, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap); /* formats every argument, prints nothing */
	va_end(ap);
}

/* The daemon as admin.c sees it (server/control.h), faked: two ready workers, a
 * reload that is always refused, a stall that is only recorded. */
struct sl_daemon {
	struct event_base *base;
	const struct sl_conf *conf;
	struct sl_worker_stats st[2];
	char reload_err[256];
	unsigned int stall_ms[2];
	void *admin;
};

struct event_base *sl_ctl_base(struct sl_daemon *d)
{
	return d->base;
}

const struct sl_conf *sl_ctl_conf(const struct sl_daemon *d)
{
	return d->conf;
}

int sl_ctl_stopping(const struct sl_daemon *d)
{
	return 0;
}

void sl_ctl_status(const struct sl_daemon *d, struct sl_ctl_status *out)
{
	*out = (struct sl_ctl_status){0};
	out->conf_path = "fuzz.yaml";
	out->workers = 2;
	out->reloads = 0;
	out->reload_err = d->reload_err;
	out->upgrade_state = 0;
	out->upgrade_pid = 0;
	out->upgrade_err = "";
}

/* never starts anything: the fuzzer reaches the parsing and the refusals */
int sl_ctl_upgrade(struct sl_daemon *d, const char *binary, char *why, size_t len)
{
	snprintf(why, len, "fuzz: upgrade refused (%s)", binary ? binary : "own binary");
	return binary ? -EINVAL : -EBUSY;
}

int sl_ctl_admin_takeover(const struct sl_daemon *d)
{
	return 0;
}

int sl_ctl_handed_over(const struct sl_daemon *d)
{
	return 0;
}

int sl_ctl_take_admin_fd(struct sl_daemon *d, const struct sockaddr *addr, socklen_t len)
{
	return -1;
}

int sl_ctl_take_admin_unix_fd(struct sl_daemon *d, const char *path)
{
	return -1;
}

int sl_ctl_worker(const struct sl_daemon *d, unsigned int i, struct sl_ctl_worker *out)
{
	if (i >= 2)
		return -ENOENT;
	*out = (struct sl_ctl_worker){.id = i, .cpu = (int)i, .state = SL_WORKER_READY,
				      .st = &d->st[i]};
	return 0;
}

int sl_ctl_reload(struct sl_daemon *d)
{
	snprintf(d->reload_err, sizeof(d->reload_err), "fuzz: reload refused");
	return -EINVAL;
}

int sl_ctl_reopen_logs(struct sl_daemon *d, const char **why)
{
	*why = "fuzz: reopen refused";
	return -EIO;
}

/* The cache as admin_cache.c sees it (proxy/cache.h), faked: one zone "z". */
int sl_pcache_zone_stats(unsigned int i, struct sl_pcache_zone_stats *st)
{
	if (i)
		return -ENOENT;
	memset(st, 0, sizeof(*st));
	st->name = "z";
	st->max_size = 1 << 20;
	return 0;
}

long sl_pcache_purge(const char *zone, const char *key, int prefix)
{
	if (zone && strcmp(zone, "z"))
		return -ENOENT;
	return (long)(strlen(key) & 1) + prefix; /* reads the key whole */
}

int sl_ctl_stall_worker(struct sl_daemon *d, unsigned int i, unsigned int ms)
{
	if (i >= 2)
		return -ENOENT;
	d->stall_ms[i] = ms;
	return 0;
}

/* POST /tls/rotate-tickets: the fuzzed config has no TLS listener to rotate */
int sl_tls_rotate_tickets(const struct sl_conf *c, char *err, size_t errlen)
{
	(void)c;
	(void)err;
	(void)errlen;
	return 0;
}

int sl_ctl_burn_worker(struct sl_daemon *d, unsigned int i, unsigned int ms)
{
	if (i >= 2)
		return -ENOENT;
	d->stall_ms[i] = ms;
	return 0;
}

/* steering counters as if the program were loaded: the /metrics lines get formatted */
int sl_ctl_steer_stats(struct sl_daemon *d, uint64_t *out)
{
	for (unsigned int i = 0; i < SL_STEER_NR; i++)
		out[i] = i;
	return 0;
}

void **sl_ctl_admin_slot(struct sl_daemon *d)
{
	return &d->admin;
}

static const char conf_yaml[] = "listeners:\n"
				"  - address: \"127.0.0.1:1\"\n"
				"    routes:\n"
				"      - upstream: u\n"
				"upstreams:\n"
				"  u:\n"
				"    servers:\n"
				"      - address: 127.0.0.1:2\n"
				"      - address: 127.0.0.1:3\n"
				"admin:\n"
				"  token: fuzz-token\n"
				"  debug: true\n";

static struct {
	struct sl_daemon d;
	struct admin a;
	int lfd[2];
	struct sockaddr_un sa[2];
	socklen_t salen[2];
	int echo;
} g;

struct client {
	int fd;
	const uint8_t *p;
	size_t len, off;
	size_t got; /* reply bytes so far */
	int done, shut;
	struct event *ev, *tmo;
};

static void client_cb(evutil_socket_t fd, short what, void *arg)
{
	struct client *c = arg;
	char buf[16384];
	if (what & EV_TIMEOUT) {
		c->done = 1;
		event_base_loopbreak(g.d.base);
		return;
	}
	if (what & EV_WRITE) {
		if (c->off < c->len) {
			ssize_t n = send(fd, c->p + c->off, c->len - c->off, MSG_NOSIGNAL);
			if (n > 0)
				c->off += (size_t)n;
			else if (n < 0 && errno != EAGAIN && errno != EINTR)
				c->off = c->len; /* the server closed: stop sending */
		}
		if (c->off == c->len) {
			event_del(c->ev);
			event_assign(c->ev, g.d.base, fd, EV_READ | EV_PERSIST, client_cb, c);
			event_add(c->ev, NULL);
		}
	}
	if (what & EV_READ) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		if (n > 0)
			c->got += (size_t)n;
		if (n > 0 && g.echo) /* FUZZ_ADMIN_ECHO=1: show the replies (reproducers) */
			fwrite(buf, 1, (size_t)n, stderr);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
			c->done = 1;
			event_base_loopbreak(g.d.base);
		}
	}
}

static int setup(void)
{
	char err[256];
	struct sl_conf *conf =
	    sl_conf_parse(conf_yaml, sizeof(conf_yaml) - 1, "fuzz", err, sizeof(err));
	if (!conf) {
		fprintf(stderr, "fuzz_admin: config: %s\n", err);
		abort();
	}
	if (sl_lb_attach(conf, 2, err, sizeof(err))) { /* the /upstreams tree edits these */
		fprintf(stderr, "fuzz_admin: upstreams: %s\n", err);
		abort();
	}
	signal(SIGPIPE, SIG_IGN);
	g.echo = getenv("FUZZ_ADMIN_ECHO") != NULL;
	g.d.base = event_base_new();
	g.d.conf = conf;
	g.a.d = &g.d;
	clock_gettime(CLOCK_MONOTONIC, &g.a.started);
	struct admin_srv *srv[2] = {&g.a.unix_srv, &g.a.tcp_srv};
	for (int i = 0; i < 2; i++) {
		if (!new_http(&g.a, srv[i], i))
			abort();
		g.lfd[i] = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		g.sa[i].sun_family = AF_UNIX;
		/* abstract names: nothing on disk, nothing to clean up */
		int n = snprintf(g.sa[i].sun_path + 1, sizeof(g.sa[i].sun_path) - 1,
				 "sluice-fuzz-admin-%d-%d", (int)getpid(), i);
		g.salen[i] = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
		if (g.lfd[i] < 0 || bind(g.lfd[i], (struct sockaddr *)&g.sa[i], g.salen[i]) ||
		    listen(g.lfd[i], 16) || evhttp_accept_socket(srv[i]->http, g.lfd[i]))
			abort();
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int ready;
	if (!ready)
		ready = !setup();
	if (size < 1)
		return 0;
	int i = data[0] & 1;
	struct client c = {.p = data + 1, .len = size - 1};
	c.fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c.fd < 0)
		abort();
	if (connect(c.fd, (struct sockaddr *)&g.sa[i], g.salen[i]) && errno != EAGAIN)
		abort();
	c.ev = event_new(g.d.base, c.fd, EV_WRITE | EV_PERSIST, client_cb, &c);
	c.tmo = evtimer_new(g.d.base, client_cb, &c);
	struct timeval tv = {2, 0}; /* evhttp closes at EOF; this only bounds a hang */
	event_add(c.ev, NULL);
	event_add(c.tmo, &tv);
	/* All sent, the client half-closes only once the server has gone quiet: evhttp
	 * closes at EOF, and pipelined requests behind the first would never be parsed. */
	int idle = 0;
	while (!c.done) {
		if (c.shut || c.off < c.len) {
			event_base_loop(g.d.base, EVLOOP_ONCE);
			continue;
		}
		size_t before = c.got;
		event_base_loop(g.d.base, EVLOOP_NONBLOCK);
		idle = c.got == before ? idle + 1 : 0;
		if (idle >= 4) {
			shutdown(c.fd, SHUT_WR);
			c.shut = 1;
		}
	}
	event_free(c.ev);
	event_free(c.tmo);
	close(c.fd);
	/* let evhttp see the close and free its connection before the next input */
	event_base_loop(g.d.base, EVLOOP_NONBLOCK);
	return 0;
}
