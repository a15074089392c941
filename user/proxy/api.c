/* The public session API of sluice.h: what phase callbacks may read and change. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/clock.h"
#include "core/hash.h"
#include "http/route.h"
#include "lb/lb.h"
#include "lb/lb_int.h"
#include "proxy/session.h"

/* Accessors answer "nothing" outside a request rather than crash: a careless caller
 * (a timer of its own, a stale pointer kept past the phase) gets NULL or -EINVAL. */
static const struct sl_request *req_of(const struct sl_session *s)
{
	return s && !s->closed ? s->r : NULL;
}

const char *sl_req_method(const struct sl_session *s, size_t *len)
{
	if (!req_of(s)) {
		if (len)
			*len = 0;
		return NULL;
	}
	const char *m = llhttp_method_name((llhttp_method_t)s->r->rp.p.method);
	if (len)
		*len = strlen(m);
	return m;
}

const char *sl_req_target(const struct sl_session *s, size_t *len)
{
	if (!req_of(s)) {
		*len = 0;
		return NULL;
	}
	*len = s->r->req.target_len;
	return s->in.data + s->r->req.target_off;
}

const char *sl_req_path(const struct sl_session *s, size_t *len)
{
	if (!req_of(s)) {
		*len = 0;
		return NULL;
	}
	if (!s->r->req.path_len) {
		*len = 1;
		return "/";
	}
	*len = s->r->req.path_len;
	return s->in.data + s->r->req.path_off;
}

const char *sl_req_host(const struct sl_session *s, size_t *len)
{
	if (!req_of(s)) {
		*len = 0;
		return NULL;
	}
	const struct sl_head *h = &s->r->req;
	const char *v;
	size_t n;
	if (h->authority_len) {
		v = s->in.data + h->authority_off;
		n = h->authority_len;
	} else if (h->info.host_idx >= 0) {
		v = sl_hdr_value(h, s->in.data, (unsigned)h->info.host_idx);
		n = h->h[h->info.host_idx].value_len;
	} else {
		*len = 0;
		return NULL;
	}
	*len = sl_host_strip_port(v, n);
	return v;
}

static int head_get(const struct sl_head *h, const char *base, const char *name, const char **val,
		    size_t *len)
{
	int i = sl_head_find(h, base, name, strlen(name));
	if (i < 0)
		return -ENOENT;
	*val = sl_hdr_value(h, base, (unsigned)i);
	*len = h->h[i].value_len;
	return 0;
}

/* Headers that frame the message or the connection: sluice frames the body from its
 * own parse and writes these itself, so a filter may not touch them (one that removed
 * Content-Length would make the next hop read the body as a request). */
static int framing_header(const char *name)
{
	static const char *const names[] = {
	    "content-length", "transfer-encoding", "connection",      "keep-alive", "te",
	    "trailer",	      "upgrade",	   "proxy-connection"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (!strcasecmp(name, names[i]))
			return 1;
	return 0;
}

/* A TLS listener's identity header names (client_auth.subject_header and
 * fingerprint_header, in any spelling a gateway reads as the same): 1 subject, 2
 * fingerprint, 0 neither. */
static int identity_name(const struct sl_session *s, const char *name)
{
	const struct sl_conf_listener_tls *t = s->r->listener ? s->r->listener->tls : NULL;
	size_t n = strlen(name);
	if (!t)
		return 0;
	if (sl_name_same_gw(name, n, t->subject_header, strlen(t->subject_header)))
		return 1;
	if (sl_name_same_gw(name, n, t->fingerprint_header, strlen(t->fingerprint_header)))
		return 2;
	return 0;
}

int sl_req_header(const struct sl_session *s, const char *name, const char **val, size_t *len)
{
	if (!req_of(s) || !name)
		return -EINVAL;
	/* what sluice verified, never the client's copy (which is stripped when the head
	 * is built, after the phases): a filter that authorizes on it cannot be fooled */
	int id = identity_name(s, name);
	if (id) {
		if (!s->client_id)
			return -ENOENT;
		*val = id == 1 ? s->client_id : s->client_id + strlen(s->client_id) + 1;
		*len = strlen(*val);
		return 0;
	}
	return head_get(&s->r->req, s->in.data, name, val, len);
}

int sl_req_header_set(struct sl_session *s, const char *name, const char *value)
{
	if (!req_of(s) || !name || !value || s->r->head_queued)
		return -EINVAL; /* once the head is built, an edit would be silently lost */
	if (framing_header(name))
		return -EPERM;
	return sl_head_set(&s->r->req, s->in.data, name, value);
}

int sl_req_header_remove(struct sl_session *s, const char *name)
{
	if (!req_of(s) || !name || s->r->head_queued)
		return -EINVAL;
	if (framing_header(name))
		return -EPERM;
	return sl_head_remove(&s->r->req, s->in.data, name, strlen(name));
}

/* The response head is readable once it arrived, until it is sent on. */
static int resp_ok(const struct sl_session *s)
{
	const struct sl_request *r = req_of(s);
	return r && r->resp_head_done && !r->local_resp && r->uin.data;
}

int sl_resp_status(const struct sl_session *s)
{
	if (!resp_ok(s))
		return -EINVAL;
	return s->r->resp.status;
}

int sl_resp_header(const struct sl_session *s, const char *name, const char **val, size_t *len)
{
	if (!resp_ok(s) || !name)
		return -EINVAL;
	return head_get(&s->r->resp, s->r->uin.data, name, val, len);
}

int sl_resp_header_set(struct sl_session *s, const char *name, const char *value)
{
	if (!resp_ok(s) || !name || !value || s->r->phase != PH_RESPONSE_FILTER)
		return -EINVAL;
	if (framing_header(name))
		return -EPERM;
	return sl_head_set(&s->r->resp, s->r->uin.data, name, value);
}

int sl_resp_header_remove(struct sl_session *s, const char *name)
{
	if (!resp_ok(s) || !name || s->r->phase != PH_RESPONSE_FILTER)
		return -EINVAL;
	if (framing_header(name))
		return -EPERM;
	return sl_head_remove(&s->r->resp, s->r->uin.data, name, strlen(name));
}

int sl_req_cache(struct sl_session *s, const struct sl_conf_route_cache *cache)
{
	if (!req_of(s) || s->r->phase != PH_REQUEST_FILTER)
		return -EINVAL;
	s->r->cache_conf = cache;
	return 0;
}

const struct sl_conf_route_cache *sl_route_cache(const struct sl_session *s)
{
	if (!req_of(s))
		return NULL;
	size_t hl = 0, pl = 0;
	const char *host = sl_req_host(s, &hl);
	const char *path = sl_req_path(s, &pl);
	if (!path)
		return NULL;
	const struct sl_conf_route *rt = sl_route_match(s->r->listener, host, hl, path, pl);
	return rt && rt->action != SL_ROUTE_RESPOND ? rt->cache : NULL;
}

int sl_log_field(struct sl_session *s, const char *key, const char *value)
{
	if (!req_of(s) || !key || !value)
		return -EINVAL;
	struct sl_request *r = s->r;
	size_t room = sizeof(r->log_extra) - r->log_extra_len;
	int n = snprintf(r->log_extra + r->log_extra_len, room, " %s=%s", key, value);
	if (n < 0 || (size_t)n >= room)
		return -ENOSPC;
	for (int i = 1; i < n; i++) { /* keep the line one printable key=value list */
		unsigned char *ch = (unsigned char *)r->log_extra + r->log_extra_len + i;
		if (*ch <= ' ' || *ch >= 0x7f)
			*ch = '_';
	}
	r->log_extra_len += (size_t)n;
	return 0;
}

unsigned int sl_session_tries(const struct sl_session *s)
{
	if (!req_of(s))
		return 0;
	return s->r->tries;
}

unsigned int sl_session_worker(const struct sl_session *s)
{
	return s->w->id;
}

const struct sockaddr *sl_session_client(const struct sl_session *s, socklen_t *len)
{
	*len = s->client_len;
	return (const struct sockaddr *)&s->client;
}

void *sl_proxy_data(const struct sl_session *s)
{
	return s->w->d->ops->data;
}

const struct sl_conf_upstream *sl_upstream_find(const struct sl_session *s, const char *name)
{
	if (!req_of(s) || !name)
		return NULL;
	const struct sl_conf *c = s->r->hold->conf;
	for (unsigned int i = 0; i < c->n_upstreams; i++)
		if (!strcmp(c->upstreams[i].name, name))
			return &c->upstreams[i];
	return NULL;
}

/* The request's hash key for maglev and ketama; a request without the header or cookie
 * gets a random one (spread like round robin). */
static uint64_t cookie_hash(const struct sl_session *s, const char *name)
{
	const struct sl_head *h = &s->r->req;
	size_t nl = strlen(name);
	for (unsigned int k = 0; k < h->n; k++) {
		if (h->h[k].name_len != 6 || strncasecmp(s->in.data + h->h[k].name_off, "cookie", 6))
			continue;
		const char *v = sl_hdr_value(h, s->in.data, k), *end = v + h->h[k].value_len;
		while (v < end) {
			while (v < end && (*v == ' ' || *v == ';'))
				v++;
			const char *pair = v;
			while (v < end && *v != ';')
				v++;
			const char *eq = memchr(pair, '=', (size_t)(v - pair));
			if (eq && (size_t)(eq - pair) == nl && !memcmp(pair, name, nl))
				return sl_fnv(SL_FNV_INIT, eq + 1, (size_t)(v - eq - 1));
		}
	}
	return 0;
}

static uint64_t hash_key(const struct sl_session *s, const struct sl_upset *set)
{
	uint64_t h = 0;
	const char *v;
	size_t n;
	switch (set->pol.hash_key) {
	case SL_HASH_CLIENT_IP:
		if (s->client.sa.sa_family == AF_INET6)
			h = sl_fnv(SL_FNV_INIT, &s->client.in6.sin6_addr, 16);
		else
			h = sl_fnv(SL_FNV_INIT, &s->client.in.sin_addr, 4);
		break;
	case SL_HASH_HEADER:
		if (!sl_req_header(s, set->pol.hash_name, &v, &n))
			h = sl_fnv(SL_FNV_INIT, v, n);
		break;
	case SL_HASH_COOKIE:
		h = cookie_hash(s, set->pol.hash_name);
		break;
	case SL_HASH_URI:
		v = sl_req_target(s, &n);
		h = sl_fnv(SL_FNV_INIT, v, n);
		break;
	}
	if (!h)
		h = sl_mono_ns() * 0x9e3779b97f4a7c15ull;
	return sl_lb_mix(h);
}

/* This worker switched u to a new set: idle pooled connections to servers that left it
 * close now rather than at their idle timeout. Only a group that is u's alone is pruned
 * (names past the pool's group table share its last group). */
static int in_set(const struct sl_peer *p, void *set)
{
	return sl_upset_find(set, &p->addr, p->addrlen) >= 0;
}

static void pool_prune(struct sl_worker *w, const struct sl_upstream *u, const struct sl_upset *set)
{
	sl_connector_prune(&w->up, u->name, in_set, (void *)set);
}

/* The host of "host:port" when it is a name (not an IP address): the default SNI. */
static void server_name(const char *address, char *out, size_t cap)
{
	out[0] = 0;
	const char *colon = strrchr(address, ':');
	size_t n = colon ? (size_t)(colon - address) : strlen(address);
	if (!n || address[0] == '[' || n >= cap)
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

int sl_upstream_pick(struct sl_session *s, const struct sl_conf_upstream *u, struct sl_peer *peer)
{
	if (!req_of(s) || !u || !peer)
		return -EINVAL;
	struct sl_request *r = s->r;
	struct sl_upstream *live = u->live;
	if (!live)
		return -ENOENT;
	if (r->lb.u != live) { /* first pick, or a proxy that moved to another upstream */
		const struct sl_set_hold *before = live->w[s->w->id].hold;
		sl_lb_req_end(&r->lb);
		sl_lb_req_begin(&r->lb, live, s->w->id);
		if (before && r->lb.hold && r->lb.hold != before)
			pool_prune(s->w, live, r->lb.hold->set);
	}
	if (!r->lb.hold)
		return -EAGAIN;
	const struct sl_upset *set = r->lb.hold->set;
	uint64_t now = sl_mono_coarse_ns();
	int hashed = set->pol.balance == SL_BAL_MAGLEV || set->pol.balance == SL_BAL_KETAMA;
	int i = sl_lb_pick(&r->lb, hashed ? hash_key(s, set) : 0, now);
	if (i < 0) {
		if (!r->lb.n_tried)
			sl_lb_log_nousable(live, now);
		return -EAGAIN;
	}
	r->upstream = u;
	const struct sl_server *sv = set->srv[i].s;
	memset(peer, 0, sizeof(*peer));
	memcpy(&peer->addr, &sv->addr, sv->addrlen);
	peer->addrlen = sv->addrlen;
	size_t n = strlen(sv->address);
	n = n < sizeof(peer->name) - 1 ? n : sizeof(peer->name) - 1;
	memcpy(peer->name, sv->address, n);
	peer->name[n] = 0;
	if (u->tls.on) {
		const struct sl_conf_up_tls *t = &u->tls;
		peer->tls = 1;
		peer->verify = (uint8_t)t->verify;
		if (t->sni)
			snprintf(peer->sni, sizeof(peer->sni), "%s", t->sni);
		else
			server_name(sv->address, peer->sni, sizeof(peer->sni));
		if (t->verify_hostname)
			snprintf(peer->verify_name, sizeof(peer->verify_name), "%s",
				 t->verify_hostname);
		peer->ca_file = t->ca;
		peer->client_cert = t->client_cert;
		peer->client_key = t->client_key;
	}
	if (u->via.address) {
		memcpy(&peer->proxy, &u->via.addr, u->via.addrlen);
		peer->proxy_len = u->via.addrlen;
		snprintf(peer->connect_target, sizeof(peer->connect_target), "%s", sv->address);
		memcpy(peer->proxy_headers, u->via.headers, sizeof(peer->proxy_headers));
	}
	return 0;
}

int sl_upstream_untried(const struct sl_session *s, const struct sl_conf_upstream *u)
{
	const struct sl_request *r = req_of(s);
	if (!r || !u || r->lb.u != u->live)
		return 0;
	return sl_lb_untried(&r->lb, sl_mono_coarse_ns()) > 0;
}

int sl_upstream_retry_status(const struct sl_session *s, int status)
{
	const struct sl_request *r = req_of(s);
	if (!r || !r->upstream || !sl_lb_retry_on(&r->lb, status))
		return 0;
	return r->tries <= r->upstream->retries && sl_lb_untried(&r->lb, sl_mono_coarse_ns()) > 0;
}
