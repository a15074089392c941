/* The admin API's /upstreams tree: listing with live state, and in-memory changes to
 * server lists (replace, add, remove) and server states (drain, enable, disable). Every
 * change is checked whole before it is published: a bad request changes nothing. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "admin/admin_int.h"
#include "admin/resolver.h"
#include "config/config.h"
#include "core/clock.h"
#include "core/log.h"
#include "lb/lb.h"

static const char *balance_name(enum sl_balance b)
{
	static const char *const n[] = {"round_robin", "least_conn", "random_two",
					"maglev",      "ketama",     "ewma"};
	return (unsigned int)b < sizeof(n) / sizeof(n[0]) ? n[b] : "?";
}

static const struct sl_conf_upstream *conf_upstream(const struct sl_conf *c, const char *name)
{
	for (unsigned int i = 0; i < c->n_upstreams; i++)
		if (!strcmp(c->upstreams[i].name, name))
			return &c->upstreams[i];
	return NULL;
}

static json_t *server_json(const struct sl_set_srv *ss, const struct sl_upset *set, uint64_t now,
			   int checked)
{
	const struct sl_server *s = ss->s;
	uint64_t until = atomic_load(&s->ejected_until);
	json_t *o = json_pack(
	    "{s:s,s:I,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:f}", "address", s->address, "weight",
	    (json_int_t)ss->weight, "state", sl_server_state(s, now), "in_flight",
	    (json_int_t)atomic_load(&s->inflight), "requests", (json_int_t)atomic_load(&s->requests),
	    "connect_failures", (json_int_t)atomic_load(&s->connect_failures), "responses_5xx",
	    (json_int_t)atomic_load(&s->resp_5xx), "ejections", (json_int_t)atomic_load(&s->ejections),
	    "ejected_ms_left", (json_int_t)(until > now ? (until - now) / 1000000 : 0), "ewma_ms",
	    (double)atomic_load(&s->ewma_ns) / 1e6);
	if (o && checked)
		json_object_set_new(
		    o, "health",
		    json_pack("{s:s,s:I,s:I,s:I,s:s}", "status",
			      !atomic_load(&s->hc_seen) ? "unknown"
			      : atomic_load(&s->down)	? "down"
							: "up",
			      "checks_ok", (json_int_t)atomic_load(&s->hc_ok), "checks_failed",
			      (json_int_t)atomic_load(&s->hc_fail), "tls_verify_failures",
			      (json_int_t)atomic_load(&s->hc_tls_fail), "last_failure", s->hc_last));
	return o;
}

static json_t *upstream_json(const struct sl_conf *c, struct sl_upstream *u)
{
	const struct sl_conf_upstream *cu = conf_upstream(c, u->name);
	struct sl_upset *set = sl_upstream_current(u);
	uint64_t now = sl_mono_ns();
	pthread_mutex_lock(&u->lock);
	struct sl_conf_hc hc = u->hc;
	json_t *hcj = hc.type == SL_HC_NONE
			  ? json_null()
			  : json_pack("{s:s,s:I,s:I,s:I,s:I}", "type",
				      hc.type == SL_HC_TCP ? "tcp" : "http", "interval_ms",
				      (json_int_t)hc.interval, "timeout_ms", (json_int_t)hc.timeout,
				      "rise", (json_int_t)hc.rise, "fall", (json_int_t)hc.fall);
	pthread_mutex_unlock(&u->lock);
	json_t *srv = json_array();
	for (unsigned int k = 0; srv && k < set->n; k++)
		if (json_array_append_new(srv, server_json(&set->srv[k], set, now,
							    hc.type != SL_HC_NONE))) {
			json_decref(srv);
			srv = NULL;
		}
	json_t *o = json_pack("{s:s,s:s,s:I,s:I,s:I,s:o*,s:o*}", "name", u->name, "balance",
			      balance_name(set->pol.balance), "version", (json_int_t)set->version,
			      "in_flight", (json_int_t)atomic_load(&u->inflight),
			      "no_usable_server", (json_int_t)atomic_load(&u->nousable),
			      "health_check", hcj, "servers", srv);
	sl_upset_put(set);
	if (o && cu) {
		json_object_set_new(o, "retries", json_integer(cu->retries));
		json_object_set_new(
		    o, "pool",
		    json_pack("{s:I,s:I,s:I,s:I,s:I,s:I}", "max_idle_per_worker",
			      (json_int_t)cu->pool.max_idle_per_worker, "max_idle_shared",
			      (json_int_t)cu->pool.max_idle_shared, "idle_timeout_ms",
			      (json_int_t)cu->pool.idle_timeout, "max_requests_per_conn",
			      (json_int_t)cu->pool.max_requests_per_conn, "max_conns_per_server",
			      (json_int_t)cu->pool.max_conns_per_server, "queue_timeout_ms",
			      (json_int_t)cu->pool.queue_timeout));
	}
	return o;
}

static void list_all(const struct sl_conf *c, struct evhttp_request *req)
{
	unsigned int n;
	struct sl_upstream **v = sl_upstream_all(&n);
	json_t *arr = v ? json_array() : NULL;
	for (unsigned int i = 0; v && i < n; i++) {
		if (arr && json_array_append_new(arr, upstream_json(c, v[i]))) {
			json_decref(arr);
			arr = NULL;
		}
		sl_upstream_put(v[i]);
	}
	free(v);
	sl_admin_send_json(req, 200, arr);
}

/* The request body as JSON: objects with duplicate keys are refused. */
static json_t *body_json(struct evhttp_request *req, char *why, size_t whylen)
{
	struct evbuffer *b = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(b);
	if (!len) {
		snprintf(why, whylen, "a JSON body is required");
		return NULL;
	}
	const char *data = (const char *)evbuffer_pullup(b, -1);
	json_error_t e;
	json_t *j = data ? json_loadb(data, len, JSON_REJECT_DUPLICATES, &e) : NULL;
	if (!j)
		snprintf(why, whylen, "invalid JSON at line %d column %d: %s", e.line, e.column,
			 e.text);
	return j;
}

/* {"address": "...", "weight": N} into cs (address borrowed from j). */
static int server_spec(json_t *j, const char *where, struct sl_conf_server *cs, char *why,
		       size_t whylen)
{
	const char *key;
	json_t *v;
	if (!json_is_object(j)) {
		snprintf(why, whylen, "%s must be an object {\"address\": ..., \"weight\": ...}",
			 where);
		return -EINVAL;
	}
	memset(cs, 0, sizeof(*cs));
	cs->weight = 1;
	json_object_foreach(j, key, v)
	{
		if (!strcmp(key, "address")) {
			if (!json_is_string(v)) {
				snprintf(why, whylen, "%s.address must be a string", where);
				return -EINVAL;
			}
			cs->address = (char *)json_string_value(v);
		} else if (!strcmp(key, "weight")) {
			if (!json_is_integer(v) || json_integer_value(v) < 1 ||
			    json_integer_value(v) > 1000) {
				snprintf(why, whylen, "%s.weight must be an integer 1..1000", where);
				return -EINVAL;
			}
			cs->weight = (unsigned int)json_integer_value(v);
		} else {
			snprintf(why, whylen, "%s: unknown key '%.64s' (address, weight)", where, key);
			return -EINVAL;
		}
	}
	if (!cs->address) {
		snprintf(why, whylen, "%s has no address", where);
		return -EINVAL;
	}
	int rc = -EINVAL;
	if (strlen(cs->address) == json_string_length(json_object_get(j, "address")) &&
	    strlen(cs->address) < 64)
		rc = sl_parse_addr_numeric(cs->address, &cs->addr, &cs->addrlen);
	if (rc < 0) {
		snprintf(why, whylen, "%s: invalid address '%.64s' (host:port or [v6]:port)",
			 where, cs->address);
		return -EINVAL;
	}
	if (rc == 1)
		cs->addrlen = 0; /* a host name: resolved off the main loop (see below) */
	return 0;
}

/* ---- changes that name hosts: resolved by the resolver service, applied in order ----
 *
 * The main loop never resolves a name: a PUT or POST naming hosts is parked at the head
 * of a FIFO while the resolver service looks them up, and every change to /upstreams that
 * arrives meanwhile waits behind it (then runs as if it had just arrived), so changes
 * still apply in the order they came. A lookup that takes longer than RESOLVE_TIMEOUT_MS
 * answers 504 and changes nothing; the FIFO goes on. */
#define RESOLVE_TIMEOUT_MS 5000
#define MAX_WAITING 64
/* Lists longer than this are built on the resolver's thread too (maglev and ketama
 * tables of 10,000 servers take the main loop a good part of a second otherwise), with
 * the same FIFO, so the answer and the order are the same as for a short one. */
#define BUILD_OFF_MAIN 256

enum change { CH_PUT, CH_POST };

struct waiting {
	struct waiting *next;
	struct evhttp_request *req;
	char *rest; /* queued behind a lookup: the path after /upstreams, to run it later */
	/* the head's lookup */
	int resolving;
	enum change kind;
	char *upstream;
	json_t *j; /* the body: cs[].address points into it */
	struct sl_conf_server *cs;
	unsigned int n;
	unsigned int *idx; /* cs[] entries that name hosts */
	const char **names;
	struct sockaddr_storage *addr;
	socklen_t *len;
	int *rc;
	struct sl_resolve_job job;
	struct event *timer;
	int answered, in_resolver;
	/* built and published on the resolver thread (work) */
	struct sl_upstream *u; /* referenced */
	int applied, apply_rc;
	char apply_why[256];
};

static struct {
	struct event_base *base;
	const struct sl_conf *(*conf)(void *arg);
	void *arg;
	struct waiting *head, **tail;
	unsigned int n;
	struct waiting *zombies; /* answered (timed out), still with the resolver */
	int replaying;
} wq;

static void waiting_free(struct waiting *w)
{
	sl_upstream_put(w->u);
	if (w->timer)
		event_free(w->timer);
	json_decref(w->j);
	free(w->rest);
	free(w->upstream);
	free(w->cs);
	free(w->idx);
	free(w->names);
	free(w->addr);
	free(w->len);
	free(w->rc);
	free(w);
}

static struct waiting *wq_pop(void)
{
	struct waiting *w = wq.head;
	if (w) {
		wq.head = w->next;
		if (!wq.head)
			wq.tail = &wq.head;
		wq.n--;
		w->next = NULL;
	}
	return w;
}

static void replay(void);
static void apply_change(struct sl_upstream *u, const struct sl_conf *c, struct evhttp_request *req,
			 enum change kind, struct sl_conf_server *cs, unsigned int n);
static void answer_change(struct sl_upstream *u, const struct sl_conf *c,
			  struct evhttp_request *req, enum change kind,
			  const struct sl_conf_server *cs, unsigned int n, int rc, const char *why);
static int publish_change(struct sl_upstream *u, enum change kind, struct sl_conf_server *cs,
			  unsigned int n, char *why, size_t whylen);

/* Resolver thread: every name resolved, build and publish (the main loop answers). */
static void build_work(struct sl_resolve_job *job, void *arg)
{
	struct waiting *w = arg;
	for (unsigned int k = 0; k < job->n; k++)
		if (job->rc[k])
			return; /* the main loop says which name failed */
	for (unsigned int k = 0; k < job->n; k++) {
		w->cs[w->idx[k]].addr = job->addr[k];
		w->cs[w->idx[k]].addrlen = job->len[k];
	}
	w->apply_rc = publish_change(w->u, w->kind, w->cs, w->n, w->apply_why,
				     sizeof(w->apply_why));
	w->applied = 1;
}

/* The head's lookup is through: apply its change (or say why not), answer, go on. */
static void lookup_done(struct sl_resolve_job *job, void *arg)
{
	struct waiting *w = arg;
	w->in_resolver = 0;
	if (w->answered) { /* timed out: only the memory was left */
		struct waiting **pp = &wq.zombies;
		while (*pp && *pp != w)
			pp = &(*pp)->next;
		if (*pp)
			*pp = w->next;
		waiting_free(w);
		return;
	}
	if (w->applied) {
		wq_pop();
		answer_change(w->u, wq.conf(wq.arg), w->req, w->kind, w->cs, w->n, w->apply_rc,
			      w->apply_why);
		waiting_free(w);
		replay();
		return;
	}
	char why[256];
	int code = 0;
	for (unsigned int k = 0; k < job->n && !code; k++) {
		struct sl_conf_server *cs = &w->cs[w->idx[k]];
		int rc = job->rc[k];
		if (!rc) {
			cs->addr = job->addr[k];
			cs->addrlen = job->len[k];
			continue;
		}
		/* a name that does not exist is the request's fault; a DNS server that does
		 * not answer is not */
		code = rc == -ENOENT || rc == -EINVAL ? 400 : 503;
		const char *e = rc == -ENOENT	 ? "no such host"
				: rc == -EAGAIN ? "temporary failure in name resolution"
						: strerror(-rc);
		if (w->kind == CH_PUT)
			snprintf(why, sizeof(why),
				 "servers[%u]: cannot resolve '%.64s': %s: nothing changed",
				 w->idx[k], cs->address, e);
		else
			snprintf(why, sizeof(why), "cannot resolve '%.64s': %s: nothing changed",
				 cs->address, e);
	}
	wq_pop(); /* w: a lookup only ever runs at the head */
	if (code) {
		sl_admin_send_error(w->req, code, why);
	} else {
		struct sl_upstream *u = sl_upstream_lookup(w->upstream);
		if (!u) { /* a reload dropped it meanwhile */
			snprintf(why, sizeof(why), "no upstream named '%.64s'", w->upstream);
			sl_admin_send_error(w->req, 404, why);
		} else {
			apply_change(u, wq.conf(wq.arg), w->req, w->kind, w->cs, w->n);
			sl_upstream_put(u);
		}
	}
	waiting_free(w);
	replay();
}

static void lookup_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct waiting *w = arg;
	int expect = 0;
	if (!atomic_compare_exchange_strong(&w->job.cancel, &expect, SL_RESOLVE_CANCELLED))
		return; /* being built and published: the answer comes with it */
	w->answered = 1;
	sl_log(SL_LOG_WARN, "msg=\"host names not resolved in time\" upstream=%s timeout_ms=%d",
	       w->upstream, RESOLVE_TIMEOUT_MS);
	sl_admin_send_error(w->req, 504,
			    "resolving the host names (or building the list) took too long: "
			    "nothing changed");
	/* the resolver may still publish nothing for it: the claim above makes it skip */
	wq_pop();
	w->next = wq.zombies; /* the resolver still has it */
	wq.zombies = w;
	replay();
}

/* Park a change naming hosts (or a long list) at the head of the FIFO; the resolver
 * thread resolves the names, then builds and publishes the set. 0, or an answer went
 * out (-errno). Takes j and cs either way. */
static int lookup_start(struct sl_upstream *u, struct evhttp_request *req, enum change kind,
			json_t *j, struct sl_conf_server *cs, unsigned int n)
{
	const char *fail = NULL;
	struct waiting *w = NULL;
	unsigned int m = 0;
	for (unsigned int i = 0; i < n; i++)
		m += cs[i].addrlen == 0;
	if (!wq.base)
		fail = "host names cannot be resolved here (no resolver): use IP addresses";
	else if (wq.n >= MAX_WAITING)
		fail = "too many changes waiting for name resolution";
	else if (!(w = calloc(1, sizeof(*w))) || !(w->upstream = strdup(u->name)) ||
		 !(w->idx = calloc(m ? m : 1, sizeof(*w->idx))) ||
		 !(w->names = calloc(m ? m : 1, sizeof(*w->names))) ||
		 !(w->addr = calloc(m ? m : 1, sizeof(*w->addr))) ||
		 !(w->len = calloc(m ? m : 1, sizeof(*w->len))) ||
		 !(w->rc = calloc(m ? m : 1, sizeof(*w->rc))) ||
		 !(w->timer = evtimer_new(wq.base, lookup_timeout, w)))
		fail = "out of memory";
	if (fail) {
		if (w)
			waiting_free(w);
		json_decref(j);
		free(cs);
		sl_admin_send_error(req, fail[0] == 'o' ? 500 : 503, fail);
		return -EAGAIN;
	}
	w->req = req;
	w->resolving = 1;
	w->kind = kind;
	sl_upstream_get(u);
	w->u = u;
	w->j = j;
	w->cs = cs;
	w->n = n;
	for (unsigned int i = 0, k = 0; i < n; i++)
		if (cs[i].addrlen == 0) {
			w->idx[k] = i;
			w->names[k++] = cs[i].address;
		}
	w->job.n = m;
	w->job.names = w->names;
	w->job.addr = w->addr;
	w->job.len = w->len;
	w->job.rc = w->rc;
	w->job.done = lookup_done;
	w->job.work = build_work;
	w->job.arg = w;
	struct timeval tv = {RESOLVE_TIMEOUT_MS / 1000, (RESOLVE_TIMEOUT_MS % 1000) * 1000};
	if (evtimer_add(w->timer, &tv) || sl_resolve_submit(&w->job)) {
		if (!m) /* only a long list: build it here rather than refuse it */
			apply_change(u, wq.conf(wq.arg), req, kind, cs, n);
		else
			sl_admin_send_error(req, 503, "the resolver service is not running: use "
						      "IP addresses");
		waiting_free(w);
		return -EAGAIN;
	}
	w->in_resolver = 1;
	sl_log(SL_LOG_INFO,
	       "msg=\"upstream change handed to the resolver\" upstream=%s servers=%u names=%u",
	       u->name, n, m);
	/* at the head: changes already queued behind it run after it */
	w->next = wq.head;
	wq.head = w;
	if (wq.tail == &wq.head)
		wq.tail = &w->next;
	wq.n++;
	return 0;
}

/* Changes that waited behind a lookup run now, in order, until one needs a lookup. */
static void replay(void)
{
	while (wq.head && !wq.head->resolving) {
		struct waiting *w = wq_pop();
		wq.replaying = 1;
		sl_admin_upstreams(wq.conf(wq.arg), w->req, w->rest);
		wq.replaying = 0;
		waiting_free(w);
	}
}

void sl_admin_upstreams_start(struct event_base *base, const struct sl_conf *(*conf)(void *arg),
			      void *arg)
{
	wq.tail = &wq.head;
	if (sl_resolver_attach(base)) {
		sl_log(SL_LOG_WARN, "msg=\"admin API resolves no host names\" reason=\"out of "
				    "memory\"");
		return;
	}
	wq.base = base;
	wq.conf = conf;
	wq.arg = arg;
}

void sl_admin_upstreams_stop(void)
{
	/* the resolver service has stopped: nothing of ours is on its thread any more */
	sl_resolver_detach();
	struct waiting *w;
	while ((w = wq_pop())) {
		/* one being published as the resolver stopped may have gone through: the
		 * daemon is going, and its in-memory lists with it */
		sl_admin_send_error(w->req, 503, "stopping: the change may not have been applied");
		waiting_free(w);
	}
	while ((w = wq.zombies)) {
		wq.zombies = w->next;
		waiting_free(w);
	}
	wq.base = NULL;
}


static int publish_change(struct sl_upstream *u, enum change kind, struct sl_conf_server *cs,
			  unsigned int n, char *why, size_t whylen)
{
	return kind == CH_PUT ? sl_upstream_replace(u, cs, n, why, whylen)
			      : sl_upstream_add_server(u, cs, why, whylen);
}

/* The answer to a change published (rc 0) or refused. */
static void answer_change(struct sl_upstream *u, const struct sl_conf *c,
			  struct evhttp_request *req, enum change kind,
			  const struct sl_conf_server *cs, unsigned int n, int rc, const char *why)
{
	if (rc) {
		sl_admin_send_error(req, rc == -EEXIST ? 409 : rc == -ENOMEM ? 500 : 400, why);
		return;
	}
	if (kind == CH_PUT)
		sl_log(SL_LOG_INFO,
		       "msg=\"upstream servers replaced\" upstream=%s servers=%u via=admin", u->name,
		       n);
	else
		sl_log(SL_LOG_INFO, "msg=\"upstream server added\" upstream=%s server=%s via=admin",
		       u->name, cs->address);
	sl_admin_send_json(req, kind == CH_PUT ? 200 : 201, upstream_json(c, u));
}

/* Publish a parsed (and resolved) change and answer. */
static void apply_change(struct sl_upstream *u, const struct sl_conf *c, struct evhttp_request *req,
			 enum change kind, struct sl_conf_server *cs, unsigned int n)
{
	char why[256] = "";
	int rc = publish_change(u, kind, cs, n, why, sizeof(why));
	answer_change(u, c, req, kind, cs, n, rc, why);
}

static int names_hosts(const struct sl_conf_server *cs, unsigned int n)
{
	for (unsigned int i = 0; i < n; i++)
		if (!cs[i].addrlen)
			return 1;
	return 0;
}

static void put_servers(struct sl_upstream *u, const struct sl_conf *c, struct evhttp_request *req)
{
	char why[256];
	json_t *j = body_json(req, why, sizeof(why)), *arr, *v;
	struct sl_conf_server *cs = NULL;
	int code = 400;
	const char *key;
	if (!j)
		goto bad;
	if (!json_is_object(j)) {
		snprintf(why, sizeof(why), "the body must be an object {\"servers\": [...]}");
		goto bad;
	}
	json_object_foreach(j, key, v) if (strcmp(key, "servers"))
	{
		snprintf(why, sizeof(why), "unknown key '%.64s' (servers)", key);
		goto bad;
	}
	arr = json_object_get(j, "servers");
	if (!json_is_array(arr) || !json_array_size(arr)) {
		snprintf(why, sizeof(why), "servers must be a non-empty array");
		goto bad;
	}
	size_t n = json_array_size(arr);
	if (n > SL_CONF_MAX_SERVERS) {
		snprintf(why, sizeof(why), "too many servers (%zu, at most %u)", n,
			 SL_CONF_MAX_SERVERS);
		goto bad;
	}
	cs = calloc(n, sizeof(*cs));
	if (!cs) {
		code = 500;
		snprintf(why, sizeof(why), "out of memory");
		goto bad;
	}
	for (size_t i = 0; i < n; i++) {
		char where[32];
		snprintf(where, sizeof(where), "servers[%zu]", i);
		if (server_spec(json_array_get(arr, i), where, &cs[i], why, sizeof(why)))
			goto bad;
	}
	if (names_hosts(cs, (unsigned int)n) || (n > BUILD_OFF_MAIN && wq.base)) {
		lookup_start(u, req, CH_PUT, j, cs, (unsigned int)n); /* answers later */
		return;
	}
	apply_change(u, c, req, CH_PUT, cs, (unsigned int)n);
	free(cs);
	json_decref(j);
	return;
bad:
	free(cs);
	json_decref(j);
	sl_admin_send_error(req, code, why);
}

static void post_server(struct sl_upstream *u, const struct sl_conf *c, struct evhttp_request *req)
{
	char why[256];
	struct sl_conf_server *cs = calloc(1, sizeof(*cs));
	json_t *j = body_json(req, why, sizeof(why));
	if (!cs) {
		json_decref(j);
		sl_admin_send_error(req, 500, "out of memory");
		return;
	}
	if (!j || server_spec(j, "the body", cs, why, sizeof(why))) {
		free(cs);
		json_decref(j);
		sl_admin_send_error(req, 400, why);
		return;
	}
	if (names_hosts(cs, 1)) {
		lookup_start(u, req, CH_POST, j, cs, 1); /* answers later */
		return;
	}
	apply_change(u, c, req, CH_POST, cs, 1);
	free(cs);
	json_decref(j);
}

/* The server of set s written as addr: by parsed address when addr is numeric, else by
 * the name as written (no lookup on the main loop: a server added by name is found by
 * that name or by its address). Index or -1. */
static int find_server(const struct sl_upset *s, const char *addr)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int rc = sl_parse_addr_numeric(addr, &ss, &len);
	if (rc == 0)
		return sl_upset_find(s, &ss, len);
	for (unsigned int k = 0; rc == 1 && k < s->n; k++)
		if (!strcmp(s->srv[k].s->address, addr))
			return (int)k;
	return -1;
}

static void server_op(struct sl_upstream *u, const struct sl_conf *c, struct evhttp_request *req,
		      const char *addr, const char *op)
{
	char why[256];
	struct sockaddr_storage ss;
	socklen_t len;
	enum evhttp_cmd_type m = evhttp_request_get_command(req);
	if (strlen(addr) >= 64 || sl_parse_addr_numeric(addr, &ss, &len) < 0) {
		snprintf(why, sizeof(why), "invalid address '%.64s' (host:port or [v6]:port)", addr);
		sl_admin_send_error(req, 400, why);
		return;
	}
	if (!op) {
		if (m != EVHTTP_REQ_DELETE) {
			evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "DELETE");
			sl_admin_send_error(req, 405, "method not allowed");
			return;
		}
		struct sl_upset *set = sl_upstream_current(u);
		int at = find_server(set, addr);
		if (at >= 0) {
			ss = set->srv[at].s->addr;
			len = set->srv[at].s->addrlen;
		}
		sl_upset_put(set);
		int rc = -ENOENT;
		if (at >= 0)
			rc = sl_upstream_del_server(u, &ss, len, why, sizeof(why));
		else
			snprintf(why, sizeof(why), "no such server in upstream '%s'", u->name);
		if (rc) {
			sl_admin_send_error(req, rc == -ENOENT ? 404 : rc == -ENOTEMPTY ? 409 : 400,
					    why);
			return;
		}
		sl_log(SL_LOG_INFO, "msg=\"upstream server removed\" upstream=%s server=%s "
				    "via=admin",
		       u->name, addr);
		sl_admin_send_json(req, 200, upstream_json(c, u));
		return;
	}
	int state = !strcmp(op, "drain")     ? SL_SRV_DRAINING
		    : !strcmp(op, "disable") ? SL_SRV_DISABLED
		    : !strcmp(op, "enable")  ? SL_SRV_ENABLED
					     : -1;
	if (state < 0) {
		sl_admin_send_error(req, 404, "not found (drain, enable or disable)");
		return;
	}
	if (m != EVHTTP_REQ_POST) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "POST");
		sl_admin_send_error(req, 405, "method not allowed");
		return;
	}
	struct sl_upset *set = sl_upstream_current(u);
	int at = find_server(set, addr);
	if (at < 0) {
		sl_upset_put(set);
		snprintf(why, sizeof(why), "no such server in upstream '%s'", u->name);
		sl_admin_send_error(req, 404, why);
		return;
	}
	struct sl_server *s = set->srv[at].s;
	atomic_store(&s->admin, state);
	sl_log(SL_LOG_INFO, "msg=\"upstream server state\" upstream=%s server=%s state=%s via=admin",
	       u->name, s->address, op);
	json_t *o = server_json(&set->srv[at], set, sl_mono_ns(), 0);
	sl_upset_put(set);
	sl_admin_send_json(req, 200, o);
}

/* Next path segment of *p (after its '/'), percent-decoded, or NULL at the end. */
static char *segment(const char **p, int *bad)
{
	if (**p != '/')
		return NULL;
	const char *s = *p + 1, *e = strchr(s, '/');
	size_t n = e ? (size_t)(e - s) : strlen(s);
	*p = s + n;
	char *raw = strndup(s, n), *dec = NULL;
	size_t dlen = 0;
	if (raw)
		dec = evhttp_uridecode(raw, 0, &dlen);
	free(raw);
	if (!dec || !dlen || strlen(dec) != dlen) {
		free(dec);
		*bad = 1;
		return NULL;
	}
	return dec;
}

void sl_admin_upstreams(const struct sl_conf *c, struct evhttp_request *req, const char *rest)
{
	enum evhttp_cmd_type m = evhttp_request_get_command(req);
	int get = m == EVHTTP_REQ_GET || m == EVHTTP_REQ_HEAD, bad = 0;
	char *name = NULL, *sub = NULL, *addr = NULL, *op = NULL, *extra = NULL;
	struct sl_upstream *u = NULL;
	if (!*rest || !strcmp(rest, "/")) {
		if (!get) {
			evhttp_add_header(evhttp_request_get_output_headers(req), "Allow",
					  "GET, HEAD");
			sl_admin_send_error(req, 405, "method not allowed");
			return;
		}
		list_all(c, req);
		return;
	}
	if (!get && wq.head && !wq.replaying) {
		/* a lookup is running for an earlier change: this one goes after it */
		struct waiting *w = wq.n < MAX_WAITING ? calloc(1, sizeof(*w)) : NULL;
		if (w && !(w->rest = strdup(rest))) {
			free(w);
			w = NULL;
		}
		if (!w) {
			sl_admin_send_error(req, 503, "too many changes waiting for name resolution");
			return;
		}
		w->req = req;
		*wq.tail = w;
		wq.tail = &w->next;
		wq.n++;
		return;
	}
	name = segment(&rest, &bad);
	if (!bad && name)
		sub = segment(&rest, &bad);
	if (!bad && sub)
		addr = segment(&rest, &bad);
	if (!bad && addr)
		op = segment(&rest, &bad);
	if (!bad && op)
		extra = segment(&rest, &bad);
	if (bad || !name || extra || (sub && strcmp(sub, "servers"))) {
		sl_admin_send_error(req, 404, "not found");
		goto out;
	}
	u = sl_upstream_lookup(name);
	if (!u) {
		char why[160];
		snprintf(why, sizeof(why), "no upstream named '%.64s'", name);
		sl_admin_send_error(req, 404, why);
		goto out;
	}
	if (!sub) {
		if (get)
			sl_admin_send_json(req, 200, upstream_json(c, u));
		else if (m == EVHTTP_REQ_PUT)
			put_servers(u, c, req);
		else {
			evhttp_add_header(evhttp_request_get_output_headers(req), "Allow",
					  "GET, HEAD, PUT");
			sl_admin_send_error(req, 405, "method not allowed");
		}
		goto out;
	}
	if (!addr) {
		if (m == EVHTTP_REQ_POST)
			post_server(u, c, req);
		else {
			evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "POST");
			sl_admin_send_error(req, 405, "method not allowed");
		}
		goto out;
	}
	server_op(u, c, req, addr, op);
out:
	sl_upstream_put(u);
	free(name);
	free(sub);
	free(addr);
	free(op);
	free(extra);
}

/* Label values: backslash, quote and newline escaped (text format 0.0.4). */
static void label(struct evbuffer *b, const char *v)
{
	for (; *v; v++) {
		if (*v == '\\' || *v == '"')
			evbuffer_add_printf(b, "\\%c", *v);
		else if (*v == '\n')
			evbuffer_add(b, "\\n", 2);
		else
			evbuffer_add(b, v, 1);
	}
}

static void sample(struct evbuffer *b, const char *name, const char *u, const char *s,
		   const char *k, const char *kv, unsigned long long v)
{
	evbuffer_add_printf(b, "%s{upstream=\"", name);
	label(b, u);
	if (s) {
		evbuffer_add(b, "\",server=\"", 10);
		label(b, s);
	}
	if (k)
		evbuffer_add_printf(b, "\",%s=\"%s", k, kv);
	evbuffer_add_printf(b, "\"} %llu\n", v);
}

void sl_admin_upstream_metrics(struct evbuffer *b)
{
	static const struct {
		const char *name, *type, *help;
	} fam[] = {
	    {"sluice_upstream_server_usable", "gauge",
	     "1 when the server takes new requests (enabled, not down, not ejected)."},
	    {"sluice_upstream_server_in_flight", "gauge", "Requests on the server now."},
	    {"sluice_upstream_server_requests_total", "counter", "Requests sent to the server."},
	    {"sluice_upstream_server_failures_total", "counter",
	     "Failed attempts: connect failures, 5xx responses."},
	    {"sluice_upstream_server_ejections_total", "counter",
	     "Passive health (outlier) ejections."},
	    {"sluice_upstream_health_checks_total", "counter", "Active health checks by result."},
	    {"sluice_upstream_no_usable_server_total", "counter",
	     "Requests answered 503 because no server was usable."},
	    {"sluice_upstream_health_check_tls_verify_failures_total", "counter",
	     "Active health checks failed because the certificate was not verified (also in "
	     "the failed checks)."},
	};
	unsigned int n;
	struct sl_upstream **v = sl_upstream_all(&n);
	struct sl_upset **sets = calloc(n ? n : 1, sizeof(*sets));
	uint64_t now = sl_mono_ns();
	if (!v || !sets)
		goto out;
	for (unsigned int i = 0; i < n; i++)
		sets[i] = sl_upstream_current(v[i]);
	for (unsigned int f = 0; f < sizeof(fam) / sizeof(fam[0]); f++) {
		evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", fam[f].name, fam[f].help,
				    fam[f].name, fam[f].type);
		for (unsigned int i = 0; i < n; i++) {
			if (f == 6) {
				sample(b, fam[f].name, v[i]->name, NULL, NULL, NULL,
				       atomic_load(&v[i]->nousable));
				continue;
			}
			for (unsigned int k = 0; k < sets[i]->n; k++) {
				const struct sl_server *s = sets[i]->srv[k].s;
				const char *un = v[i]->name, *sn = s->address, *nm = fam[f].name;
				switch (f) {
				case 0:
					sample(b, nm, un, sn, NULL, NULL, sl_server_usable(s, now));
					break;
				case 1:
					sample(b, nm, un, sn, NULL, NULL, atomic_load(&s->inflight));
					break;
				case 2:
					sample(b, nm, un, sn, NULL, NULL, atomic_load(&s->requests));
					break;
				case 3:
					sample(b, nm, un, sn, "kind", "connect",
					       atomic_load(&s->connect_failures));
					sample(b, nm, un, sn, "kind", "5xx", atomic_load(&s->resp_5xx));
					break;
				case 4:
					sample(b, nm, un, sn, NULL, NULL, atomic_load(&s->ejections));
					break;
				case 5:
					sample(b, nm, un, sn, "result", "ok", atomic_load(&s->hc_ok));
					sample(b, nm, un, sn, "result", "failed", atomic_load(&s->hc_fail));
					break;
				case 7:
					sample(b, nm, un, sn, NULL, NULL, atomic_load(&s->hc_tls_fail));
					break;
				}
			}
		}
	}
out:
	for (unsigned int i = 0; v && sets && i < n; i++) {
		sl_upset_put(sets[i]);
		sl_upstream_put(v[i]);
	}
	free(sets);
	free(v);
}
