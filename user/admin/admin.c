/* Admin API (see admin.h): evhttp servers on the main thread's loop, one per
 * transport, answering from a table of routes. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <dirent.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <jansson.h>

#include "admin/admin.h"
#include "admin/admin_int.h"
#include "admin/admin_cache.h"
#include "bpf/steer.h"
#include "core/clock.h"
#include "core/histo.h"
#include "core/log.h"
#include "config/config.h"
#include "server/control.h"
#include "server/service.h"
#include "sluice_common.h"
#include "tls/server.h"

#define ADMIN_MAX_BODY (4 * 1024 * 1024) /* a PUT of 65,536 servers fits */
#define ADMIN_MAX_HEADERS (16 * 1024)
#define ADMIN_TIMEOUT_S 10
#define ADMIN_STALL_MAX_MS 10000
#define ADMIN_BURN_MAX_MS 60000

struct admin;

/* One evhttp per transport: the TCP one asks for the bearer token. */
struct admin_srv {
	struct admin *a;
	struct evhttp *http;
	int tcp;
	struct evconnlistener *lev; /* evhttp's listener, paused after accept errors */
	struct event *resume;
	int quiet; /* handed over: never accepts again */
	uint64_t err_logged_ns;
	unsigned long err_suppressed;
};

struct admin {
	struct sl_daemon *d;
	struct admin_srv unix_srv, tcp_srv;
	char *sock_path; /* the file we bound; removed at stop if it is still ours */
	char *pending;	 /* upgrade successor: bound under this name, renamed at take-over */
	int borrowed;	 /* upgrade successor: serves its predecessor's socket, not ours yet */
	dev_t sock_dev;
	ino_t sock_ino;
	struct timespec started;
};

#define M_GET (EVHTTP_REQ_GET | EVHTTP_REQ_HEAD)
#define M_POST EVHTTP_REQ_POST

struct admin_route {
	const char *path;
	unsigned int methods; /* EVHTTP_REQ_* mask */
	const char *allow;    /* Allow header of a 405 */
	int debug;	      /* exists only with admin.debug: true */
	void (*fn)(struct admin *a, struct evhttp_request *req);
};

/* ---- replies ---- */

static void send_body(struct evhttp_request *req, int code, const char *type, struct evbuffer *b)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	evhttp_add_header(h, "Content-Type", type);
	evhttp_add_header(h, "Cache-Control", "no-store");
	evhttp_send_reply(req, code, NULL, b);
}

/* Takes the reference to j. */
void sl_admin_send_json(struct evhttp_request *req, int code, json_t *j)
{
	struct evbuffer *b = evbuffer_new();
	char *s = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
	json_decref(j);
	if (!b || !s) {
		free(s);
		if (b)
			evbuffer_free(b);
		sl_log(SL_LOG_ERROR,
		       "msg=\"admin reply failed\" reason=\"out of memory or not UTF-8\"");
		evhttp_send_error(req, 500, NULL);
		return;
	}
	evbuffer_add(b, s, strlen(s));
	evbuffer_add(b, "\n", 1);
	free(s);
	send_body(req, code, "application/json", b);
	evbuffer_free(b);
}

void sl_admin_send_error(struct evhttp_request *req, int code, const char *msg)
{
	sl_admin_send_json(req, code, json_pack("{s:s}", "error", msg));
}

#define send_json sl_admin_send_json
#define send_error sl_admin_send_error

/* ---- helpers ---- */

static uint64_t ld(const __u64 *p)
{
	/* written by the worker thread with plain stores: a relaxed load is enough */
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static const char *state_name(unsigned int s)
{
	switch (s) {
	case SL_WORKER_STARTING:
		return "starting";
	case SL_WORKER_READY:
		return "ready";
	case SL_WORKER_DRAINING:
		return "draining";
	default:
		return "empty";
	}
}

/* Constant time in the length of the expected token, whatever was sent. */
static int token_equal(const char *got, const char *want)
{
	size_t gl = strlen(got), wl = strlen(want);
	unsigned char diff = gl != wl;
	for (size_t i = 0; i < wl; i++)
		diff |= (unsigned char)want[i] ^ (unsigned char)(i < gl ? got[i] : 0);
	return diff == 0;
}

static int authorized(const struct sl_conf *c, struct evhttp_request *req)
{
	const char *h = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
	const char *want = c->admin.token;
	if (!h || !want || !want[0] || strncasecmp(h, "Bearer ", 7))
		return 0;
	h += 7;
	while (*h == ' ')
		h++;
	return token_equal(h, want);
}

static int parse_uint(const char *s, unsigned long max, unsigned long *out)
{
	char *end;
	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || *end || v > max)
		return -ERANGE;
	*out = v;
	return 0;
}

/* ---- endpoints ---- */

static void get_healthz(struct admin *a, struct evhttp_request *req)
{
	send_json(req, 200, json_pack("{s:s}", "status", "ok"));
}

static void get_readyz(struct admin *a, struct evhttp_request *req)
{
	struct sl_ctl_worker w;
	const char *why = NULL;
	if (sl_ctl_stopping(a->d))
		why = "stopping";
	for (unsigned int i = 0; !why && !sl_ctl_worker(a->d, i, &w); i++)
		if (w.state != SL_WORKER_READY)
			why = "worker not ready";
	if (why)
		send_json(req, 503, json_pack("{s:s,s:s}", "status", "not ready", "reason", why));
	else
		send_json(req, 200, json_pack("{s:s}", "status", "ready"));
}

static const char *upgrade_state_name(int s)
{
	static const char *const names[] = {"none", "in_progress", "done", "failed"};
	return s >= 0 && s < 4 ? names[s] : "?";
}

static void get_status(struct admin *a, struct evhttp_request *req)
{
	struct sl_ctl_status st;
	struct timespec now;
	sl_ctl_status(a->d, &st);
	clock_gettime(CLOCK_MONOTONIC, &now);
	json_int_t up = (json_int_t)(now.tv_sec - a->started.tv_sec);
	json_t *svcs = json_array();
	for (unsigned int i = 0; svcs && i < sl_services_count(); i++) {
		int running = 0;
		const char *name = sl_service_name(i, &running);
		json_array_append_new(svcs, json_pack("{s:s,s:b}", "name", name, "running", running));
	}
	send_json(req, 200,
		  json_pack("{s:s,s:I,s:I,s:s,s:I,s:I,s:s,s:b,s:o*,s:{s:s,s:I,s:s}}", "version",
			    SL_VERSION, "pid", (json_int_t)getpid(), "uptime_seconds", up, "config",
			    st.conf_path, "workers", (json_int_t)st.workers, "reloads",
			    (json_int_t)st.reloads, "last_reload_error", st.reload_err, "stopping",
			    sl_ctl_stopping(a->d), "services", svcs, "upgrade", "state",
			    upgrade_state_name(st.upgrade_state), "successor_pid",
			    (json_int_t)st.upgrade_pid, "error", st.upgrade_err));
}

/* The transport of the request being handled: a binary path is taken only over the
 * Unix socket (0600, local), never over TCP, however authorized. */
static int cur_tcp;

static void post_upgrade(struct admin *a, struct evhttp_request *req)
{
	if (sl_ctl_stopping(a->d)) {
		send_error(req, 503, "stopping");
		return;
	}
	struct evbuffer *b = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(b);
	const char *binary = NULL;
	json_t *j = NULL;
	char why[512];
	if (len) {
		const char *data = (const char *)evbuffer_pullup(b, -1);
		json_error_t e;
		j = data ? json_loadb(data, len, JSON_REJECT_DUPLICATES, &e) : NULL;
		json_t *v = j ? json_object_get(j, "binary") : NULL;
		if (!j || !json_is_object(j) || (v && !json_is_string(v)) ||
		    json_object_size(j) != (v ? 1u : 0u)) {
			send_error(req, 400, "the body is {\"binary\": \"/absolute/path\"} or empty");
			json_decref(j);
			return;
		}
		if (v && cur_tcp) {
			send_error(req, 403, "binary is accepted over the admin socket only");
			json_decref(j);
			return;
		}
		binary = v ? json_string_value(v) : NULL;
	}
	int err = sl_ctl_upgrade(a->d, binary, why, sizeof(why));
	json_decref(j);
	if (err) {
		send_error(req, err == -EBUSY ? 409 : 400, why);
		return;
	}
	struct sl_ctl_status st;
	sl_ctl_status(a->d, &st);
	send_json(req, 202,
		  json_pack("{s:s,s:I}", "upgrade", "started", "successor_pid",
			    (json_int_t)st.upgrade_pid));
}

#define OFF(f) offsetof(struct sl_worker_stats, f)

static uint64_t stat_at(const struct sl_worker_stats *st, size_t off)
{
	return ld((const __u64 *)(const void *)((const char *)st + off));
}

static const struct {
	const char *name;
	size_t off;
} worker_counters[] = {
    {"active", OFF(active)},
    {"accepted", OFF(accepted)},
    {"requests", OFF(requests)},
    {"bytes_in", OFF(bytes_in)},
    {"bytes_out", OFF(bytes_out)},
    {"upstream_new", OFF(up_new)},
    {"upstream_reused", OFF(up_reused)},
    {"pool_local", OFF(pool_local)},
    {"pool_shared", OFF(pool_shared)},
    {"errors_client", OFF(err_client)},
    {"errors_upstream", OFF(err_upstream)},
    {"pool_evicted", OFF(pool_evicted)},
    {"pool_idle_closed", OFF(pool_idle_closed)},
    {"pool_fd_mismatch", OFF(pool_fd_mismatch)},
    {"pool_stale_retries", OFF(pool_stale_retries)},
    {"queue_waits", OFF(queue_waits)},
    {"queue_timeouts", OFF(queue_timeouts)},
    {"rescued", OFF(rescued)},
    {"trailers_dropped", OFF(trailers_dropped)},
    {"header_timeouts", OFF(header_timeouts)},
    {"send_timeouts", OFF(send_timeouts)},
    {"upstream_tls_handshakes", OFF(up_tls_handshakes)},
    {"upstream_tls_resumed", OFF(up_tls_resumed)},
    {"upstream_tls_handshake_failed", OFF(up_tls_handshake_failed)},
    {"upstream_tls_verify_failed", OFF(up_tls_verify_failed)},
    {"upstream_proxy_refused", OFF(up_proxy_refused)},
    {"tls_handshakes_full", OFF(tls_full)},
    {"tls_handshakes_resumed", OFF(tls_resumed)},
    {"tls_failed_timeout", OFF(tls_fail_timeout)},
    {"tls_failed_closed", OFF(tls_fail_closed)},
    {"tls_failed_plain_http", OFF(tls_fail_http)},
    {"tls_failed_client_cert", OFF(tls_fail_cert)},
    {"tls_failed_protocol", OFF(tls_fail_protocol)},
};

static json_t *worker_json(const struct sl_ctl_worker *w)
{
	const struct sl_worker_stats *s = w->st;
	json_t *o = json_pack("{s:I,s:i,s:s,s:I,s:I}", "id", (json_int_t)w->id, "cpu", w->cpu,
			      "state", state_name(w->state), "conn_load",
			      (json_int_t)w->conn_load, "busy_pm", (json_int_t)w->busy_pm);
	for (size_t i = 0; o && i < sizeof(worker_counters) / sizeof(worker_counters[0]); i++)
		if (json_object_set_new(
			o, worker_counters[i].name,
			json_integer((json_int_t)stat_at(s, worker_counters[i].off)))) {
			json_decref(o);
			o = NULL;
		}
	json_t *r =
	    json_pack("{s:I,s:I,s:I,s:I,s:I}", "1xx", (json_int_t)ld(&s->resp_1xx), "2xx",
		      (json_int_t)ld(&s->resp_2xx), "3xx", (json_int_t)ld(&s->resp_3xx), "4xx",
		      (json_int_t)ld(&s->resp_4xx), "5xx", (json_int_t)ld(&s->resp_5xx));
	if (!o || !r) {
		json_decref(o);
		json_decref(r);
		return NULL;
	}
	if (json_object_set_new(o, "responses", r)) { /* takes r, even when it fails */
		json_decref(o);
		return NULL;
	}
	return o;
}

static void get_workers(struct admin *a, struct evhttp_request *req)
{
	struct sl_ctl_worker w;
	json_t *arr = json_array();
	for (unsigned int i = 0; arr && !sl_ctl_worker(a->d, i, &w); i++)
		if (json_array_append_new(arr, worker_json(&w))) {
			json_decref(arr);
			arr = NULL;
		}
	send_json(req, 200, arr);
}

static void post_reload(struct admin *a, struct evhttp_request *req)
{
	struct sl_ctl_status st;
	if (sl_ctl_stopping(a->d)) {
		send_error(req, 503, "stopping");
		return;
	}
	int err = sl_ctl_reload(a->d);
	sl_ctl_status(a->d, &st);
	if (err) {
		send_error(req, 400, st.reload_err[0] ? st.reload_err : "reload failed");
		return;
	}
	send_json(req, 200,
		  json_pack("{s:b,s:I}", "reloaded", 1, "reloads", (json_int_t)st.reloads));
}

/* Rotate every TLS listener's ticket keys now: after a key leak, or to test rotation. */
static void post_tls_rotate(struct admin *a, struct evhttp_request *req)
{
	char err[256];
	int n = sl_tls_rotate_tickets(sl_ctl_conf(a->d), err, sizeof(err));
	if (n < 0) {
		send_error(req, 500, err);
		return;
	}
	sl_log(SL_LOG_INFO, "msg=\"ticket keys rotated\" listeners=%d source=admin", n);
	send_json(req, 200, json_pack("{s:i}", "rotated", n));
}

static void post_reopen_logs(struct admin *a, struct evhttp_request *req)
{
	const char *why;
	if (sl_ctl_reopen_logs(a->d, &why)) {
		send_error(req, 500, why);
		return;
	}
	send_json(req, 200, json_pack("{s:b}", "reopened", 1));
}

/* One metric family: HELP, TYPE, then one sample per worker (and label value). */
struct metric {
	const char *name, *type, *help;
	const char *label; /* extra label name, or NULL */
	const char *values[5];
	size_t off[5]; /* offsetof(struct sl_worker_stats, ...) per label value */
};

static const struct metric metrics[] = {
    {"sluice_requests_total", "counter", "Requests received.", NULL, {NULL}, {OFF(requests)}},
    {"sluice_responses_total",
     "counter",
     "Responses sent, by status class.",
     "class",
     {"1xx", "2xx", "3xx", "4xx", "5xx"},
     {OFF(resp_1xx), OFF(resp_2xx), OFF(resp_3xx), OFF(resp_4xx), OFF(resp_5xx)}},
    {"sluice_connections_accepted_total",
     "counter",
     "Client connections accepted.",
     NULL,
     {NULL},
     {OFF(accepted)}},
    {"sluice_connections_active", "gauge", "Client connections open.", NULL, {NULL}, {OFF(active)}},
    {"sluice_bytes_in_total", "counter", "Bytes read from clients.", NULL, {NULL}, {OFF(bytes_in)}},
    {"sluice_bytes_out_total",
     "counter",
     "Bytes written to clients.",
     NULL,
     {NULL},
     {OFF(bytes_out)}},
    {"sluice_upstream_connections_total",
     "counter",
     "Upstream connections opened (new), or reused from a pool for a request (reused).",
     "kind",
     {"new", "reused"},
     {OFF(up_new), OFF(up_reused)}},
    {"sluice_pool_hits_total",
     "counter",
     "Idle upstream connections taken from the worker's own or the shared pool.",
     "pool",
     {"local", "shared"},
     {OFF(pool_local), OFF(pool_shared)}},
    {"sluice_errors_total",
     "counter",
     "Errors: client (malformed, too large, timeouts) or upstream (connect, response, timeouts).",
     "kind",
     {"client", "upstream"},
     {OFF(err_client), OFF(err_upstream)}},
    {"sluice_pool_events_total",
     "counter",
     "Idle connection events: evicted to the shared pool, closed while idle, fd no longer "
     "pointing at its peer, requests retried after a stale reused connection.",
     "event",
     {"evicted", "idle_closed", "fd_mismatch", "stale_retry"},
     {OFF(pool_evicted), OFF(pool_idle_closed), OFF(pool_fd_mismatch), OFF(pool_stale_retries)}},
    {"sluice_queue_total",
     "counter",
     "Requests that waited for a connection slot (max_conns_per_server), and those that timed out.",
     "outcome",
     {"waited", "timed_out"},
     {OFF(queue_waits), OFF(queue_timeouts)}},
    {"sluice_hostile_total",
     "counter",
     "Hostile or broken input handled: trailer fields dropped (RFC 9110 6.5.1), connections "
     "cut at timeouts.client_header (slow heads) or for leaving a response unread.",
     "event",
     {"trailer_dropped", "header_timeout", "send_timeout"},
     {OFF(trailers_dropped), OFF(header_timeouts), OFF(send_timeouts)}},
    {"sluice_upstream_tls_total",
     "counter",
     "TLS to upstreams: handshakes completed, of which resumed; handshakes failed, "
     "certificates not verified; CONNECT refused by a via_proxy (or answered badly).",
     "event",
     {"handshake", "resumed", "handshake_failed", "verify_failed", "proxy_refused"},
     {OFF(up_tls_handshakes), OFF(up_tls_resumed), OFF(up_tls_handshake_failed),
      OFF(up_tls_verify_failed), OFF(up_proxy_refused)}},
    {"sluice_tls_handshakes_total",
     "counter",
     "Client TLS handshakes completed on TLS listeners: full, and resumed (session ticket or "
     "TLS 1.3 PSK).",
     "kind",
     {"full", "resumed"},
     {OFF(tls_full), OFF(tls_resumed)}},
    {"sluice_tls_handshake_failures_total",
     "counter",
     "Client TLS handshakes that failed, by reason: handshake_timeout, client gone, plain "
     "HTTP to the TLS port, client certificate missing or not verified, anything else.",
     "reason",
     {"timeout", "closed", "plain_http", "client_cert", "protocol"},
     {OFF(tls_fail_timeout), OFF(tls_fail_closed), OFF(tls_fail_http), OFF(tls_fail_cert),
      OFF(tls_fail_protocol)}},
};

/* One histogram family summed over the workers (a request's latency is the node's,
 * not a worker's: per-worker series would multiply the bucket count for no use). */
static void histo_metric(struct evbuffer *b, struct admin *a, const char *name,
			 const char *help, int upstream)
{
	static const uint32_t le_us[SL_HISTO_N - 1] = SL_HISTO_BOUNDS;
	uint64_t bucket[SL_HISTO_N] = {0}, count = 0, sum_ns = 0;
	struct sl_ctl_worker w;
	for (unsigned int i = 0; !sl_ctl_worker(a->d, i, &w); i++) {
		const struct sl_histo *h = upstream ? w.lat_upstream : w.lat_request;
		if (!h)
			continue;
		for (unsigned int k = 0; k < SL_HISTO_N; k++)
			bucket[k] += __atomic_load_n(&h->b[k], __ATOMIC_RELAXED);
		sum_ns += __atomic_load_n(&h->sum_ns, __ATOMIC_RELAXED);
		count += __atomic_load_n(&h->count, __ATOMIC_RELAXED);
	}
	evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
	uint64_t cum = 0;
	for (unsigned int k = 0; k < SL_HISTO_N - 1; k++) {
		cum += bucket[k];
		evbuffer_add_printf(b, "%s_bucket{le=\"%g\"} %llu\n", name, le_us[k] / 1e6,
				    (unsigned long long)cum);
	}
	cum += bucket[SL_HISTO_N - 1];
	/* +Inf is the sum of the buckets, so a scrape racing a worker's update stays
	 * monotonic across buckets; _count is the worker's own count */
	evbuffer_add_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n",
			    name, (unsigned long long)cum, name, sum_ns / 1e9, name,
			    (unsigned long long)(count > cum ? cum : count));
}

/* The process_* series Prometheus client libraries export, from /proc/self. */
static void process_metrics(struct evbuffer *b, const struct sl_ctl_status *cs)
{
	long tick = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
	unsigned long long ut = 0, st = 0, vsz = 0;
	long long rss = 0;
	char buf[1024];
	FILE *f = fopen("/proc/self/stat", "re");
	if (f) {
		size_t n = fread(buf, 1, sizeof(buf) - 1, f);
		buf[n] = 0;
		fclose(f);
		/* fields after the command name, which may hold spaces and parentheses */
		char *p = strrchr(buf, ')');
		if (p && sscanf(p + 2,
				"%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d "
				"%*d %*d %*d %*u %llu %lld",
				&ut, &st, &vsz, &rss) != 4)
			ut = st = vsz = 0, rss = 0;
	}
	unsigned int fds = 0;
	DIR *dir = opendir("/proc/self/fd");
	if (dir) {
		struct dirent *e;
		while ((e = readdir(dir)))
			fds += e->d_name[0] != '.';
		closedir(dir);
		fds--; /* the directory's own */
	}
	struct rlimit rl = {0};
	getrlimit(RLIMIT_NOFILE, &rl);
	evbuffer_add_printf(b,
			    "# HELP process_cpu_seconds_total User and system CPU time.\n"
			    "# TYPE process_cpu_seconds_total counter\n"
			    "process_cpu_seconds_total %.2f\n"
			    "# HELP process_resident_memory_bytes Resident memory.\n"
			    "# TYPE process_resident_memory_bytes gauge\n"
			    "process_resident_memory_bytes %lld\n"
			    "# HELP process_virtual_memory_bytes Virtual memory.\n"
			    "# TYPE process_virtual_memory_bytes gauge\n"
			    "process_virtual_memory_bytes %llu\n"
			    "# HELP process_open_fds File descriptors open.\n"
			    "# TYPE process_open_fds gauge\n"
			    "process_open_fds %u\n"
			    "# HELP process_max_fds The file descriptor limit.\n"
			    "# TYPE process_max_fds gauge\n"
			    "process_max_fds %llu\n"
			    "# HELP process_start_time_seconds Start time, seconds since the epoch.\n"
			    "# TYPE process_start_time_seconds gauge\n"
			    "process_start_time_seconds %lld\n",
			    tick > 0 ? (double)(ut + st) / (double)tick : 0.0, rss * (long long)page,
			    vsz, fds, (unsigned long long)rl.rlim_cur, (long long)cs->start_unix);
}

static void get_metrics(struct admin *a, struct evhttp_request *req)
{
	struct sl_ctl_status cs;
	struct sl_ctl_worker w;
	struct evbuffer *b = evbuffer_new();
	sl_ctl_status(a->d, &cs);
	if (!b) {
		evhttp_send_error(req, 500, NULL);
		return;
	}
	for (size_t m = 0; m < sizeof(metrics) / sizeof(metrics[0]); m++) {
		const struct metric *mt = &metrics[m];
		evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", mt->name, mt->help, mt->name,
				    mt->type);
		for (unsigned int i = 0; !sl_ctl_worker(a->d, i, &w); i++) {
			const struct sl_worker_stats *st = w.st;
			for (size_t v = 0; v < 5 && (v == 0 || mt->values[v]); v++) {
				uint64_t n = stat_at(st, mt->off[v]);
				if (mt->label)
					evbuffer_add_printf(b, "%s{worker=\"%u\",%s=\"%s\"} %llu\n",
							    mt->name, i, mt->label, mt->values[v],
							    (unsigned long long)n);
				else
					evbuffer_add_printf(b, "%s{worker=\"%u\"} %llu\n", mt->name,
							    i, (unsigned long long)n);
			}
		}
	}
	evbuffer_add_printf(b, "# HELP sluice_worker_up 1 when the worker is ready.\n"
			       "# TYPE sluice_worker_up gauge\n");
	for (unsigned int i = 0; !sl_ctl_worker(a->d, i, &w); i++)
		evbuffer_add_printf(b, "sluice_worker_up{worker=\"%u\"} %d\n", i,
				    w.state == SL_WORKER_READY);
	evbuffer_add_printf(b, "# HELP sluice_worker_load_connections Connections open and queued "
			       "at the worker's last heartbeat (what steering compares).\n"
			       "# TYPE sluice_worker_load_connections gauge\n");
	for (unsigned int i = 0; !sl_ctl_worker(a->d, i, &w); i++)
		evbuffer_add_printf(b, "sluice_worker_load_connections{worker=\"%u\"} %u\n", i,
				    w.conn_load);
	evbuffer_add_printf(b, "# HELP sluice_worker_busy_ratio Share of time the worker's loop "
			       "ran or waited to run, smoothed over its last heartbeats.\n"
			       "# TYPE sluice_worker_busy_ratio gauge\n");
	for (unsigned int i = 0; !sl_ctl_worker(a->d, i, &w); i++)
		evbuffer_add_printf(b, "sluice_worker_busy_ratio{worker=\"%u\"} %.3f\n", i,
				    w.busy_pm / 1000.0);
	uint64_t steer[SL_STEER_NR];
	if (!sl_ctl_steer_stats(a->d, steer)) {
		evbuffer_add_printf(b, "# HELP sluice_steer_total New connections placed by the "
				       "steering program, by reason.\n"
				       "# TYPE sluice_steer_total counter\n");
		for (unsigned int i = 0; i < SL_STEER_NR; i++)
			evbuffer_add_printf(b, "sluice_steer_total{reason=\"%s\"} %llu\n",
					    sl_steer_reason_name(i), (unsigned long long)steer[i]);
	}
	sl_admin_upstream_metrics(b);
	sl_admin_cache_metrics(b);
	histo_metric(b, a, "sluice_request_duration_seconds",
		     "Requests from their first byte to the end of the response.", 0);
	histo_metric(b, a, "sluice_upstream_header_duration_seconds",
		     "Proxied requests from the first upstream attempt to the response head.", 1);
	evbuffer_add_printf(b,
			    "# HELP sluice_reloads_total Configuration reloads applied.\n"
			    "# TYPE sluice_reloads_total counter\n"
			    "sluice_reloads_total %u\n"
			    "# HELP sluice_reload_failures_total Configuration reloads rejected (the "
			    "old configuration kept serving).\n"
			    "# TYPE sluice_reload_failures_total counter\n"
			    "sluice_reload_failures_total %u\n"
			    "# HELP sluice_last_reload_timestamp_seconds When the last reload was "
			    "tried, seconds since the epoch (0: none yet).\n"
			    "# TYPE sluice_last_reload_timestamp_seconds gauge\n"
			    "sluice_last_reload_timestamp_seconds %lld\n"
			    "# HELP sluice_last_reload_success 1 when the last reload was applied (or "
			    "none was tried), 0 when it was rejected.\n"
			    "# TYPE sluice_last_reload_success gauge\n"
			    "sluice_last_reload_success %d\n"
			    "# HELP sluice_build_info The running build; the value is always 1.\n"
			    "# TYPE sluice_build_info gauge\n"
			    "sluice_build_info{version=\"%s\"} 1\n",
			    cs.reloads, cs.reload_failures, (long long)cs.last_reload_unix,
			    cs.last_reload_unix ? cs.last_reload_ok : 1, SL_VERSION);
	process_metrics(b, &cs);
	send_body(req, 200, "text/plain; version=0.0.4; charset=utf-8", b);
	evbuffer_free(b);
}

/* The debug endpoints that hold one worker's loop: /debug/stall sleeps (a stalled
 * worker), /debug/burn spins in short slices between which it serves (a busy one). */
struct debug_op {
	const char *usage, *ms_range, *json_key, *log_msg;
	unsigned long max_ms;
	int (*run)(struct sl_daemon *d, unsigned int worker, unsigned int ms);
};

static const struct debug_op debug_stall = {
    "usage: /debug/stall?worker=N&ms=M", "ms: 1..10000", "stall_ms", "debug: stalling worker",
    ADMIN_STALL_MAX_MS, sl_ctl_stall_worker};
static const struct debug_op debug_burn = {
    "usage: /debug/burn?worker=N&ms=M", "ms: 1..60000", "burn_ms", "debug: burning CPU on worker",
    ADMIN_BURN_MAX_MS, sl_ctl_burn_worker};

static void post_debug(struct admin *a, struct evhttp_request *req, const struct debug_op *op)
{
	struct sl_ctl_status cs;
	sl_ctl_status(a->d, &cs);
	const char *q = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
	struct evkeyvalq kv = {0}; /* evhttp_parse_query_str initializes it */
	unsigned long worker, ms;
	if (!q || evhttp_parse_query_str(q, &kv)) {
		send_error(req, 400, op->usage);
		goto out;
	}
	if (parse_uint(evhttp_find_header(&kv, "worker"), cs.workers ? cs.workers - 1 : 0,
		       &worker) ||
	    worker >= cs.workers) {
		send_error(req, 400, "worker: a worker id (0..workers-1)");
		goto out;
	}
	if (parse_uint(evhttp_find_header(&kv, "ms"), op->max_ms, &ms) || ms == 0) {
		send_error(req, 400, op->ms_range);
		goto out;
	}
	op->run(a->d, (unsigned int)worker, (unsigned int)ms);
	sl_log(SL_LOG_WARN, "msg=\"%s\" worker=%lu ms=%lu", op->log_msg, worker, ms);
	send_json(req, 200,
		  json_pack("{s:I,s:I}", "worker", (json_int_t)worker, op->json_key, (json_int_t)ms));
out:
	evhttp_clear_headers(&kv);
}

static void post_debug_stall(struct admin *a, struct evhttp_request *req)
{
	post_debug(a, req, &debug_stall);
}

static void post_debug_burn(struct admin *a, struct evhttp_request *req)
{
	post_debug(a, req, &debug_burn);
}

static void get_cache(struct admin *a, struct evhttp_request *req)
{
	sl_admin_cache_get(req);
}

static void post_cache_purge(struct admin *a, struct evhttp_request *req)
{
	sl_admin_cache_purge(req);
}

static const struct admin_route routes[] = {
    {"/healthz", M_GET, "GET, HEAD", 0, get_healthz},
    {"/readyz", M_GET, "GET, HEAD", 0, get_readyz},
    {"/status", M_GET, "GET, HEAD", 0, get_status},
    {"/workers", M_GET, "GET, HEAD", 0, get_workers},
    {"/reload", M_POST, "POST", 0, post_reload},
    {"/upgrade", M_POST, "POST", 0, post_upgrade},
    {"/reopen-logs", M_POST, "POST", 0, post_reopen_logs},
    {"/tls/rotate-tickets", M_POST, "POST", 0, post_tls_rotate},
    {"/metrics", M_GET, "GET, HEAD", 0, get_metrics},
    {"/cache", M_GET, "GET, HEAD", 0, get_cache},
    {"/cache/purge", M_POST, "POST", 0, post_cache_purge},
    {"/debug/stall", M_POST, "POST", 1, post_debug_stall},
    {"/debug/burn", M_POST, "POST", 1, post_debug_burn},
};

static void on_request(struct evhttp_request *req, void *arg)
{
	struct admin_srv *srv = arg;
	struct admin *a = srv->a;
	const struct sl_conf *c = sl_ctl_conf(a->d);

	const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
	if (!path || !path[0])
		path = "/";
	/* Liveness and readiness say nothing but ok / not ready: a kubelet or load balancer
	 * probes them without the token, which would otherwise sit in every pod spec. */
	int probe = !strcmp(path, "/healthz") || !strcmp(path, "/readyz");
	if (srv->tcp && !probe && !authorized(c, req)) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate",
				  "Bearer realm=\"sluice\"");
		send_error(req, 401, "unauthorized: Authorization: Bearer <admin.token> required");
		return;
	}
	if (!strncmp(path, "/upstreams", 10) && (path[10] == '/' || !path[10])) {
		sl_admin_upstreams(c, req, path + 10);
		return;
	}
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		const struct admin_route *r = &routes[i];
		if (strcmp(r->path, path) || (r->debug && !c->admin.debug))
			continue;
		if (!(evhttp_request_get_command(req) & r->methods)) {
			evhttp_add_header(evhttp_request_get_output_headers(req), "Allow",
					  r->allow);
			send_error(req, 405, "method not allowed");
			return;
		}
		cur_tcp = srv->tcp;
		r->fn(a, req);
		return;
	}
	send_error(req, 404, "not found");
}

/* ---- sockets ---- */

static struct evhttp *new_http(struct admin *a, struct admin_srv *srv, int tcp)
{
	srv->a = a;
	srv->tcp = tcp;
	srv->http = evhttp_new(sl_ctl_base(a->d));
	if (!srv->http)
		return NULL;
	/* every method reaches on_request, which answers 405 with an Allow header */
	evhttp_set_allowed_methods(srv->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST |
						  EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
						  EVHTTP_REQ_PATCH | EVHTTP_REQ_OPTIONS);
	evhttp_set_max_body_size(srv->http, ADMIN_MAX_BODY);
	evhttp_set_max_headers_size(srv->http, ADMIN_MAX_HEADERS);
	evhttp_set_timeout(srv->http, ADMIN_TIMEOUT_S);
	evhttp_set_gencb(srv->http, on_request, srv);
	return srv->http;
}

/* At the fd limit accept() fails and the socket stays readable, and libevent's
 * listener retries at once, forever (the main thread spun, logging a warning per try).
 * Pause it instead, as the workers do, with one log line a second. */
static struct admin_srv *err_srvs[2];

static void accept_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct admin_srv *srv = arg;
	if (!srv->quiet)
		evconnlistener_enable(srv->lev);
}

static void accept_error_cb(struct evconnlistener *lev, void *ptr)
{
	int err = EVUTIL_SOCKET_ERROR();
	struct admin_srv *srv = NULL;
	for (unsigned int i = 0; i < 2; i++)
		if (err_srvs[i] && err_srvs[i]->lev == lev)
			srv = err_srvs[i];
	if (!srv)
		return;
	struct timeval tv = {0, SL_ACCEPT_BACKOFF_MS * 1000};
	evconnlistener_disable(lev);
	if (event_add(srv->resume, &tv) && !srv->quiet)
		evconnlistener_enable(lev);
	uint64_t now = sl_mono_ns();
	if (srv->err_logged_ns && now - srv->err_logged_ns < 1000000000ull) {
		srv->err_suppressed++;
		return;
	}
	srv->err_logged_ns = now;
	sl_log(SL_LOG_ERROR,
	       "msg=\"admin accept failed, pausing accept\" err=\"%s\" pause_ms=%u "
	       "suppressed=%lu",
	       strerror(err), SL_ACCEPT_BACKOFF_MS, srv->err_suppressed);
	srv->err_suppressed = 0;
}

static void watch_accept_errors(struct admin_srv *srv, struct evhttp_bound_socket *bs)
{
	srv->lev = evhttp_bound_socket_get_listener(bs);
	srv->resume = evtimer_new(sl_ctl_base(srv->a->d), accept_resume_cb, srv);
	if (!srv->lev || !srv->resume) {
		sl_log(SL_LOG_WARN, "msg=\"admin accept errors not watched\" reason=\"out of "
				    "memory\"");
		return;
	}
	err_srvs[srv->tcp] = srv;
	evconnlistener_set_error_cb(srv->lev, accept_error_cb);
}

static int unix_listen(struct admin *a, const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct stat st;
	int fd = -1, err;

	/* bound under a temporary name and renamed once listening: a client that sees the
	 * file can connect (it appeared at bind() before, and refused until listen()) */
	char tmp[sizeof(sa.sun_path)];
	if (strlen(path) >= sizeof(sa.sun_path)) {
		sl_log(SL_LOG_ERROR, "msg=\"admin socket path too long\" path=%s", path);
		return -ENAMETOOLONG;
	}
	/* an upgrade's successor serves on its predecessor's socket, as on its listeners:
	 * it may run as a user that cannot bind in that directory (root's /run/sluice),
	 * and a client queued on it at the hand-over is answered */
	fd = sl_ctl_take_admin_unix_fd(a->d, path);
	if (fd >= 0 && stat(path, &st) == 0) {
		a->borrowed = 1;
		goto serve;
	}
	if (fd >= 0)
		close(fd);
	fd = -1;
	int tl = snprintf(tmp, sizeof(tmp), "%s.%d", path, (int)getpid());
	if (tl < 0 || (size_t)tl >= sizeof(tmp))
		tl = snprintf(tmp, sizeof(tmp), "%s", path); /* no room: bound in place */
	memcpy(sa.sun_path, tmp, (size_t)tl + 1);
	if (strcmp(tmp, path) && lstat(tmp, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(tmp); /* left by a run that died between bind and rename */
	/* A socket file left by a previous run is stale; anything else is not ours. An
	 * upgrade's successor replaces its predecessor's by the rename below (the
	 * predecessor leaves its file in place when it hands over). */
	int takeover = sl_ctl_admin_takeover(a->d);
	if (!takeover && lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			sl_log(SL_LOG_ERROR,
			       "msg=\"admin socket path exists and is not a socket\" path=%s",
			       path);
			return -EEXIST;
		}
		/* a socket someone still accepts on belongs to a live daemon: leave it */
		struct sockaddr_un at = {.sun_family = AF_UNIX};
		memcpy(at.sun_path, path, strlen(path) + 1); /* sa holds the temporary name */
		int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		int live = probe >= 0 &&
			   (!connect(probe, (struct sockaddr *)&at, sizeof(at)) || errno == EAGAIN);
		if (probe >= 0)
			close(probe);
		if (live) {
			sl_log(SL_LOG_ERROR,
			       "msg=\"admin socket is served by another live process; not "
			       "replacing it\" path=%s",
			       path);
			return -EADDRINUSE;
		}
		if (unlink(path) && errno != ENOENT) {
			err = -errno;
			sl_log(SL_LOG_ERROR,
			       "msg=\"cannot remove stale admin socket\" path=%s err=\"%s\"", path,
			       strerror(-err));
			return err;
		}
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		err = -errno;
		sl_log(SL_LOG_ERROR, "msg=\"cannot create admin socket\" err=\"%s\"",
		       strerror(-err));
		return err;
	}
	/* The umask keeps the file private between bind and chmod (workers create no files). */
	mode_t old = umask(0177);
	int r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	err = r ? -errno : 0;
	umask(old);
	if (err) {
		sl_log(SL_LOG_ERROR, "msg=\"cannot bind admin socket\" path=%s err=\"%s\"", path,
		       strerror(-err));
		goto fail;
	}
	if (chmod(tmp, 0600) || listen(fd, 64) ||
	    (!takeover && strcmp(tmp, path) && rename(tmp, path)) ||
	    stat(takeover ? tmp : path, &st) || (takeover && !(a->pending = strdup(tmp)))) {
		err = -errno;
		sl_log(SL_LOG_ERROR, "msg=\"cannot listen on admin socket\" path=%s err=\"%s\"",
		       path, strerror(-err));
		unlink(tmp);
		goto fail;
	}
serve:
	a->sock_dev = st.st_dev;
	a->sock_ino = st.st_ino;
	a->sock_path = strdup(path);
	struct evhttp_bound_socket *bs = NULL;
	if (!a->sock_path || !new_http(a, &a->unix_srv, 0) ||
	    !(bs = evhttp_accept_socket_with_handle(a->unix_srv.http, fd))) {
		err = -ENOMEM;
		sl_log(SL_LOG_ERROR, "msg=\"cannot serve admin socket\" path=%s", path);
		if (!a->borrowed) /* the predecessor's file stays its own */
			unlink(path);
		free(a->sock_path);
		a->sock_path = NULL;
		goto fail;
	}
	watch_accept_errors(&a->unix_srv, bs);
	return 0;
fail:
	close(fd);
	return err;
}

static int tcp_listen(struct admin *a, const struct sl_conf_admin *ca)
{
	int one = 1, err;
	/* an upgrade's successor serves on its predecessor's socket (both accept on it until
	 * the hand-over): a probe on the admin port never sees it closed */
	int fd = sl_ctl_take_admin_fd(a->d, (const struct sockaddr *)&ca->listen_addr,
				      ca->listen_addrlen);
	if (fd >= 0)
		goto serve;
	fd = socket(ca->listen_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		err = -errno;
		sl_log(SL_LOG_ERROR, "msg=\"cannot create admin listener\" err=\"%s\"",
		       strerror(-err));
		return err;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)&ca->listen_addr, ca->listen_addrlen) ||
	    listen(fd, 64)) {
		err = -errno;
		sl_log(SL_LOG_ERROR, "msg=\"cannot bind admin listener\" address=%s err=\"%s\"",
		       ca->listen, strerror(-err));
		close(fd);
		return err;
	}
serve:;
	struct evhttp_bound_socket *bs = NULL;
	if (!new_http(a, &a->tcp_srv, 1) ||
	    !(bs = evhttp_accept_socket_with_handle(a->tcp_srv.http, fd))) {
		sl_log(SL_LOG_ERROR, "msg=\"cannot serve admin listener\" address=%s", ca->listen);
		close(fd);
		return -ENOMEM;
	}
	watch_accept_errors(&a->tcp_srv, bs);
	return 0;
}

static const struct sl_conf *conf_now(void *arg)
{
	return sl_ctl_conf(arg);
}

int sl_admin_start(struct sl_daemon *d)
{
	const struct sl_conf *c = sl_ctl_conf(d);
	const struct sl_conf_admin *ca = &c->admin;
	int err = 0, r;

	if (!ca->socket && !ca->listen)
		return 0;
	struct admin *a = calloc(1, sizeof(*a));
	if (!a) {
		sl_log(SL_LOG_ERROR, "msg=\"admin API not started\" reason=\"out of memory\"");
		return -ENOMEM;
	}
	a->d = d;
	clock_gettime(CLOCK_MONOTONIC, &a->started);
	*sl_ctl_admin_slot(d) = a;
	sl_admin_upstreams_start(sl_ctl_base(d), conf_now, d);
	/* Each transport stands alone: one that cannot bind does not take the other down. */
	if (ca->socket) {
		r = unix_listen(a, ca->socket);
		if (!r)
			sl_log(SL_LOG_INFO, "msg=\"admin API listening\" socket=%s", ca->socket);
		err = err ? err : r;
	}
	if (ca->listen) {
		r = tcp_listen(a, ca);
		if (!r)
			sl_log(SL_LOG_INFO, "msg=\"admin API listening\" address=%s", ca->listen);
		err = err ? err : r;
	}
	return err;
}

int sl_admin_tcp_fd(struct sl_daemon *d)
{
	struct admin *a = *sl_ctl_admin_slot(d);
	return a && a->tcp_srv.lev ? evconnlistener_get_fd(a->tcp_srv.lev) : -1;
}

int sl_admin_unix_fd(struct sl_daemon *d, char *path, size_t len)
{
	struct admin *a = *sl_ctl_admin_slot(d);
	if (!a || !a->unix_srv.lev || !a->sock_path || a->pending ||
	    strlen(a->sock_path) >= len)
		return -1;
	snprintf(path, len, "%s", a->sock_path);
	return evconnlistener_get_fd(a->unix_srv.lev);
}

void sl_admin_handover(struct sl_daemon *d)
{
	struct admin *a = *sl_ctl_admin_slot(d);
	for (unsigned int i = 0; a && i < 2; i++) {
		struct admin_srv *srv = i ? &a->tcp_srv : &a->unix_srv;
		srv->quiet = 1;
		if (srv->resume)
			event_del(srv->resume);
		if (srv->lev)
			evconnlistener_disable(srv->lev);
	}
}

int sl_admin_takeover_commit(struct sl_daemon *d)
{
	struct admin *a = *sl_ctl_admin_slot(d);
	if (a)
		a->borrowed = 0; /* the predecessor drains: the socket file is ours */
	if (!a || !a->pending)
		return 0;
	int err = rename(a->pending, a->sock_path) ? -errno : 0;
	if (err)
		sl_log(SL_LOG_ERROR, "msg=\"cannot take the admin socket over\" path=%s err=\"%s\"",
		       a->sock_path, strerror(-err));
	else
		sl_log(SL_LOG_INFO, "msg=\"admin API listening\" socket=%s", a->sock_path);
	if (err)
		unlink(a->pending);
	free(a->pending);
	a->pending = NULL;
	return err;
}

void sl_admin_stop(struct sl_daemon *d)
{
	struct admin *a = *sl_ctl_admin_slot(d);
	struct stat st;

	if (!a)
		return;
	sl_admin_upstreams_stop(); /* answers what waits, while the servers still exist */
	if (a->unix_srv.http)
		evhttp_free(a->unix_srv.http);
	if (a->tcp_srv.http)
		evhttp_free(a->tcp_srv.http);
	for (unsigned int i = 0; i < 2; i++) {
		struct admin_srv *srv = i ? &a->tcp_srv : &a->unix_srv;
		if (srv->resume)
			event_free(srv->resume);
		err_srvs[i] = NULL;
	}
	/* Another process may have taken the path since: remove only our own file, and not
	 * after an upgrade's hand-over (the successor renames its socket over it). A
	 * successor that never took over removes only its temporary name. */
	if (a->pending) {
		unlink(a->pending);
		free(a->pending);
		a->pending = NULL;
	} else if (a->sock_path && !a->borrowed && !sl_ctl_handed_over(d) &&
		   lstat(a->sock_path, &st) == 0 &&
	    st.st_dev == a->sock_dev &&
	    st.st_ino == a->sock_ino)
		unlink(a->sock_path);
	free(a->sock_path);
	free(a);
	*sl_ctl_admin_slot(d) = NULL;
}
