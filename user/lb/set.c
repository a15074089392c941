/* Live upstreams, server sets and their publication to workers (see lb.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "core/clock.h"
#include "core/hash.h"
#include "core/log.h"
#include "lb/lb.h"
#include "lb/lb_int.h"
#include "sluice/service.h"

/* ---- servers ---- */

struct sl_server *sl_server_new(const char *address, const struct sockaddr_storage *ss,
				socklen_t len)
{
	struct sl_server *s;
	if (strlen(address) >= sizeof(s->address) || posix_memalign((void **)&s, 64, sizeof(*s)))
		return NULL;
	memset(s, 0, sizeof(*s));
	atomic_init(&s->refcnt, 1);
	memcpy(s->address, address, strlen(address) + 1);
	memcpy(&s->addr, ss, len);
	s->addrlen = len;
	return s;
}

void sl_server_put(struct sl_server *s)
{
	if (s && atomic_fetch_sub_explicit(&s->refcnt, 1, memory_order_acq_rel) == 1)
		free(s);
}

/* ---- sets ---- */

static uint64_t addr_hash(const struct sockaddr_storage *ss, socklen_t len)
{
	return sl_lb_mix(sl_fnv(SL_FNV_INIT, ss, len));
}

int sl_upset_find(const struct sl_upset *s, const struct sockaddr_storage *ss, socklen_t len)
{
	if (!s || !s->addr_idx)
		return -1;
	for (uint64_t h = addr_hash(ss, len);; h++) {
		uint32_t v = s->addr_idx[h & s->addr_mask];
		if (!v)
			return -1;
		const struct sl_server *sv = s->srv[v - 1].s;
		if (sv->addrlen == len && !memcmp(&sv->addr, ss, len))
			return (int)(v - 1);
	}
}

void sl_upset_get(struct sl_upset *s)
{
	atomic_fetch_add_explicit(&s->refcnt, 1, memory_order_relaxed);
}

static void set_free(struct sl_upset *s)
{
	for (unsigned int i = 0; i < s->n; i++)
		sl_server_put(s->srv[i].s);
	free(s->srv);
	free(s->cursor);
	free(s->sched);
	free(s->maglev);
	free(s->ring);
	free(s->addr_idx);
	free(s->hash_name);
	free(s);
}

void sl_upset_put(struct sl_upset *s)
{
	if (s && atomic_fetch_sub_explicit(&s->refcnt, 1, memory_order_acq_rel) == 1)
		set_free(s);
}

struct sl_upset *sl_upset_build(const struct sl_lb_policy *pol, struct sl_server **srv,
				const unsigned int *weights, unsigned int n, char *err,
				size_t errlen)
{
	struct sl_upset *s = calloc(1, sizeof(*s));
	if (!s)
		goto oom;
	atomic_init(&s->refcnt, 1);
	s->pol = *pol;
	s->pol.hash_name = NULL;
	if (pol->hash_name && !(s->hash_name = strdup(pol->hash_name)))
		goto oom;
	s->pol.hash_name = s->hash_name;
	s->srv = calloc(n ? n : 1, sizeof(*s->srv));
	if (!s->srv)
		goto oom;
	for (unsigned int i = 0; i < n; i++) {
		s->srv[i].s = srv[i];
		s->srv[i].weight = weights[i] ? weights[i] : 1;
		atomic_fetch_add_explicit(&srv[i]->refcnt, 1, memory_order_relaxed);
		s->n = i + 1;
		s->weight_sum += s->srv[i].weight;
	}
	unsigned int slots = 4;
	while (slots < 2 * n)
		slots <<= 1;
	s->addr_idx = calloc(slots, sizeof(*s->addr_idx));
	if (!s->addr_idx)
		goto oom;
	s->addr_mask = slots - 1;
	for (unsigned int i = 0; i < n; i++) {
		if (sl_upset_find(s, &srv[i]->addr, srv[i]->addrlen) >= 0) {
			snprintf(err, errlen, "duplicate address '%s'", srv[i]->address);
			sl_upset_put(s);
			return NULL;
		}
		uint64_t h = addr_hash(&srv[i]->addr, srv[i]->addrlen);
		while (s->addr_idx[h & s->addr_mask])
			h++;
		s->addr_idx[h & s->addr_mask] = i + 1;
	}
	if (pol->balance == SL_BAL_MAGLEV && n > pol->table_size) {
		snprintf(err, errlen, "more servers (%u) than the maglev table_size (%u)", n,
			 pol->table_size);
		sl_upset_put(s);
		return NULL;
	}
	if (sl_lb_tables(s))
		goto oom;
	return s;
oom:
	snprintf(err, errlen, "out of memory");
	if (s)
		sl_upset_put(s);
	return NULL;
}

/* ---- live upstreams and the registry ---- */

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sl_upstream **reg;
static unsigned int n_reg;

void sl_upstream_get(struct sl_upstream *u)
{
	atomic_fetch_add_explicit(&u->refcnt, 1, memory_order_relaxed);
}

static void hold_list_free(struct sl_set_hold *h)
{
	while (h) {
		struct sl_set_hold *next = h->next;
		sl_upset_put(h->set);
		free(h);
		h = next;
	}
}

static void hc_free(struct sl_conf_hc *hc)
{
	free(hc->method);
	free(hc->path);
	free(hc->host);
	free(hc->body);
	memset(hc, 0, sizeof(*hc));
}

static void tls_free(struct sl_conf_up_tls *t)
{
	free(t->ca);
	free(t->verify_hostname);
	free(t->sni);
	free(t->client_cert);
	free(t->client_key);
	memset(t, 0, sizeof(*t));
}

static int dup_str(char **dst, const char *src)
{
	*dst = src ? strdup(src) : NULL;
	return src && !*dst ? -ENOMEM : 0;
}

static int tls_copy(struct sl_conf_up_tls *dst, const struct sl_conf_up_tls *src)
{
	*dst = *src;
	int bad = dup_str(&dst->ca, src->ca) | dup_str(&dst->verify_hostname, src->verify_hostname) |
		  dup_str(&dst->sni, src->sni) | dup_str(&dst->client_cert, src->client_cert) |
		  dup_str(&dst->client_key, src->client_key);
	if (bad) {
		tls_free(dst);
		return -ENOMEM;
	}
	return 0;
}

/* The last reference goes when no snapshot, service or request can reach u any more, so
 * no worker touches its slots again. */
void sl_upstream_put(struct sl_upstream *u)
{
	if (!u || atomic_fetch_sub_explicit(&u->refcnt, 1, memory_order_acq_rel) != 1)
		return;
	for (unsigned int i = 0; i < SL_MAX_WORKERS; i++) {
		sl_upset_put(atomic_load(&u->w[i].pending));
		hold_list_free(u->w[i].hold);
		hold_list_free(u->w[i].old);
	}
	sl_upset_put(u->cur);
	hc_free(&u->hc);
	tls_free(&u->tls);
	free(u->via.address);
	pthread_mutex_destroy(&u->lock);
	pthread_mutex_destroy(&u->pub);
	free(u->name);
	free(u);
}

static void live_put(void *live)
{
	sl_upstream_put(live);
}

struct sl_upstream *sl_upstream_lookup(const char *name)
{
	struct sl_upstream *u = NULL;
	pthread_mutex_lock(&reg_lock);
	for (unsigned int i = 0; i < n_reg; i++)
		if (!strcmp(reg[i]->name, name)) {
			u = reg[i];
			sl_upstream_get(u);
			break;
		}
	pthread_mutex_unlock(&reg_lock);
	return u;
}

struct sl_upstream **sl_upstream_all(unsigned int *n)
{
	pthread_mutex_lock(&reg_lock);
	struct sl_upstream **v = calloc(n_reg ? n_reg : 1, sizeof(*v));
	*n = 0;
	if (v) {
		for (unsigned int i = 0; i < n_reg; i++) {
			v[i] = reg[i];
			sl_upstream_get(v[i]);
		}
		*n = n_reg;
	}
	pthread_mutex_unlock(&reg_lock);
	return v;
}

struct sl_upset *sl_upstream_current(struct sl_upstream *u)
{
	pthread_mutex_lock(&u->lock);
	struct sl_upset *s = u->cur;
	sl_upset_get(s);
	pthread_mutex_unlock(&u->lock);
	return s;
}

/* Give every worker its own reference to s (the snapshot scheme: one owner per reference,
 * handed over by exchange), then make it current. With u->pub held: two publishers
 * interleaving their exchanges would leave workers on different sets. */
static void publish(struct sl_upstream *u, struct sl_upset *s)
{
	s->version = ++u->version;
	for (unsigned int i = 0; i < u->n_workers; i++) {
		sl_upset_get(s);
		struct sl_upset *old =
		    atomic_exchange_explicit(&u->w[i].pending, s, memory_order_acq_rel);
		sl_upset_put(old);
	}
	pthread_mutex_lock(&u->lock);
	struct sl_upset *old = u->cur;
	u->cur = s;
	pthread_mutex_unlock(&u->lock);
	sl_upset_put(old);
}

/* Signature of a file's server list: order, addresses and weights. */
static uint64_t file_sig(const struct sl_conf_upstream *cu)
{
	uint64_t h = SL_FNV_INIT;
	for (unsigned int i = 0; i < cu->n_servers; i++) {
		h = sl_fnv(h, cu->servers[i].address, strlen(cu->servers[i].address) + 1);
		h = sl_fnv(h, &cu->servers[i].weight, sizeof(cu->servers[i].weight));
	}
	return h;
}

/* A set for these servers under pol, reusing the state of servers (by address) that the
 * set `prev` has. */
static struct sl_upset *set_from(const struct sl_lb_policy *pol, const struct sl_upset *prev,
				 const struct sl_conf_server *cs, unsigned int n, uint64_t now,
				 char *err, size_t errlen)
{
	struct sl_server **srv = calloc(n ? n : 1, sizeof(*srv));
	unsigned int *w = calloc(n ? n : 1, sizeof(*w));
	struct sl_upset *s = NULL;
	unsigned int made = 0;
	if (!srv || !w) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	for (unsigned int i = 0; i < n; i++) {
		int at = sl_upset_find(prev, &cs[i].addr, cs[i].addrlen);
		if (at >= 0) {
			srv[i] = prev->srv[at].s;
			atomic_fetch_add_explicit(&srv[i]->refcnt, 1, memory_order_relaxed);
		} else {
			srv[i] = sl_server_new(cs[i].address, &cs[i].addr, cs[i].addrlen);
			if (!srv[i]) {
				snprintf(err, errlen, "out of memory or address too long: '%s'",
					 cs[i].address);
				goto out;
			}
			/* a server added to a running upstream ramps up like a recovered one */
			if (prev && pol->slow_start)
				atomic_store(&srv[i]->ramp_from, now);
		}
		made = i + 1;
		w[i] = cs[i].weight;
	}
	s = sl_upset_build(pol, srv, w, n, err, errlen);
out:
	for (unsigned int i = 0; i < made; i++)
		sl_server_put(srv[i]);
	free(srv);
	free(w);
	return s;
}

static struct sl_upstream *upstream_new(const char *name, unsigned int n_workers)
{
	struct sl_upstream *u;
	if (posix_memalign((void **)&u, 64, sizeof(*u)))
		return NULL;
	memset(u, 0, sizeof(*u));
	atomic_init(&u->refcnt, 1);
	u->n_workers = n_workers;
	pthread_mutex_init(&u->lock, NULL);
	pthread_mutex_init(&u->pub, NULL);
	u->name = strdup(name);
	if (!u->name) {
		free(u);
		return NULL;
	}
	return u;
}

static int hc_copy(struct sl_conf_hc *dst, const struct sl_conf_hc *src)
{
	*dst = *src;
	dst->method = src->method ? strdup(src->method) : NULL;
	dst->path = src->path ? strdup(src->path) : NULL;
	dst->host = src->host ? strdup(src->host) : NULL;
	dst->body = src->body ? strdup(src->body) : NULL;
	if ((src->method && !dst->method) || (src->path && !dst->path) ||
	    (src->host && !dst->host) || (src->body && !dst->body)) {
		hc_free(dst);
		return -ENOMEM;
	}
	return 0;
}

int sl_lb_attach(struct sl_conf *c, unsigned int n_workers, char *err, size_t errlen)
{
	unsigned int n = c->n_upstreams;
	struct sl_upstream **live = calloc(n ? n : 1, sizeof(*live));
	struct sl_upset **sets = calloc(n ? n : 1, sizeof(*sets));
	struct sl_conf_hc *hcs = calloc(n ? n : 1, sizeof(*hcs));
	struct sl_conf_up_tls *tlss = calloc(n ? n : 1, sizeof(*tlss));
	struct sl_conf_via_proxy *vias = calloc(n ? n : 1, sizeof(*vias));
	int *fresh = calloc(n ? n : 1, sizeof(*fresh));
	uint64_t now = sl_mono_ns();
	int rc = 0;
	char why[256];
	if (!live || !sets || !hcs || !tlss || !vias || !fresh) {
		snprintf(err, errlen, "out of memory");
		rc = -ENOMEM;
		goto out;
	}
	/* Build everything first: a failure leaves every upstream as it was. */
	for (unsigned int i = 0; i < n && !rc; i++) {
		struct sl_conf_upstream *cu = &c->upstreams[i];
		struct sl_upstream *u = sl_upstream_lookup(cu->name);
		if (!u) {
			u = upstream_new(cu->name, n_workers);
			fresh[i] = 1;
		}
		if (!u) {
			snprintf(err, errlen, "out of memory");
			rc = -ENOMEM;
			break;
		}
		live[i] = u;
		struct sl_upset *prev = fresh[i] ? NULL : sl_upstream_current(u);
		uint64_t sig = file_sig(cu);
		if (prev && sig == u->file_sig) {
			/* the file's list did not change: keep the list in force (API edits) */
			struct sl_conf_server *cs = calloc(prev->n ? prev->n : 1, sizeof(*cs));
			if (cs) {
				for (unsigned int k = 0; k < prev->n; k++) {
					cs[k].address = prev->srv[k].s->address;
					cs[k].addr = prev->srv[k].s->addr;
					cs[k].addrlen = prev->srv[k].s->addrlen;
					cs[k].weight = prev->srv[k].weight;
				}
				sets[i] = set_from(&cu->lb, prev, cs, prev->n, now, why,
						   sizeof(why));
				free(cs);
			}
		} else {
			sets[i] = set_from(&cu->lb, prev, cu->servers, cu->n_servers, now, why,
					   sizeof(why));
		}
		sl_upset_put(prev);
		vias[i] = cu->via;
		vias[i].address = NULL;
		if (!sets[i] || hc_copy(&hcs[i], &cu->hc) || tls_copy(&tlss[i], &cu->tls) ||
		    dup_str(&vias[i].address, cu->via.address)) {
			snprintf(err, errlen, "upstream '%s': %s", cu->name,
				 sets[i] ? "out of memory" : why);
			rc = -EINVAL;
		}
	}
	if (rc)
		goto out;
	/* Commit: nothing below fails. */
	pthread_mutex_lock(&reg_lock);
	struct sl_upstream **nreg = calloc(n ? n : 1, sizeof(*nreg));
	if (!nreg) {
		pthread_mutex_unlock(&reg_lock);
		snprintf(err, errlen, "out of memory");
		rc = -ENOMEM;
		goto out;
	}
	for (unsigned int i = 0; i < n; i++) {
		struct sl_upstream *u = live[i];
		struct sl_conf_upstream *cu = &c->upstreams[i];
		pthread_mutex_lock(&u->lock);
		hc_free(&u->hc);
		u->hc = hcs[i];
		memset(&hcs[i], 0, sizeof(hcs[i]));
		tls_free(&u->tls);
		u->tls = tlss[i];
		memset(&tlss[i], 0, sizeof(tlss[i]));
		free(u->via.address);
		u->via = vias[i];
		vias[i].address = NULL;
		u->file_sig = file_sig(cu);
		pthread_mutex_unlock(&u->lock);
		pthread_mutex_lock(&u->pub);
		publish(u, sets[i]);
		pthread_mutex_unlock(&u->pub);
		sets[i] = NULL;
		nreg[i] = u;
		sl_upstream_get(u); /* the registry's reference */
		cu->live = u;	    /* the snapshot's reference: the lookup's or the new one */
		cu->live_put = live_put;
		live[i] = NULL;
	}
	for (unsigned int i = 0; i < n_reg; i++)
		sl_upstream_put(reg[i]); /* names the file dropped go with their last snapshot */
	free(reg);
	reg = nreg;
	n_reg = n;
	pthread_mutex_unlock(&reg_lock);
out:
	for (unsigned int i = 0; i < n; i++) {
		if (live && live[i])
			sl_upstream_put(live[i]);
		if (sets && sets[i])
			sl_upset_put(sets[i]);
		if (hcs)
			hc_free(&hcs[i]);
		if (tlss)
			tls_free(&tlss[i]);
		if (vias)
			free(vias[i].address);
	}
	free(live);
	free(sets);
	free(hcs);
	free(tlss);
	free(vias);
	free(fresh);
	return rc;
}

void sl_lb_registry_clear(void)
{
	pthread_mutex_lock(&reg_lock);
	for (unsigned int i = 0; i < n_reg; i++)
		sl_upstream_put(reg[i]);
	free(reg);
	reg = NULL;
	n_reg = 0;
	pthread_mutex_unlock(&reg_lock);
}

int sl_upstream_replace(struct sl_upstream *u, const struct sl_conf_server *servers,
			unsigned int n, char *err, size_t errlen)
{
	if (!n) {
		snprintf(err, errlen, "an upstream needs at least one server");
		return -EINVAL;
	}
	if (n > SL_CONF_MAX_SERVERS) {
		snprintf(err, errlen, "too many servers (%u, at most %u)", n, SL_CONF_MAX_SERVERS);
		return -EINVAL;
	}
	pthread_mutex_lock(&u->pub);
	struct sl_upset *prev = sl_upstream_current(u);
	struct sl_upset *s = set_from(&prev->pol, prev, servers, n, sl_mono_ns(), err, errlen);
	sl_upset_put(prev);
	if (s)
		publish(u, s);
	pthread_mutex_unlock(&u->pub);
	return s ? 0 : -EINVAL;
}

/* The current list as config servers (addresses borrowed from the set), plus room for
 * one more. */
static struct sl_conf_server *list_of(const struct sl_upset *s)
{
	struct sl_conf_server *cs = calloc(s->n + 1, sizeof(*cs));
	for (unsigned int k = 0; cs && k < s->n; k++) {
		cs[k].address = s->srv[k].s->address;
		cs[k].addr = s->srv[k].s->addr;
		cs[k].addrlen = s->srv[k].s->addrlen;
		cs[k].weight = s->srv[k].weight;
	}
	return cs;
}

static int edit(struct sl_upstream *u, const struct sl_conf_server *add,
		const struct sockaddr_storage *del, socklen_t del_len, char *err, size_t errlen)
{
	pthread_mutex_lock(&u->pub);
	struct sl_upset *prev = sl_upstream_current(u), *s = NULL;
	struct sl_conf_server *cs = list_of(prev);
	unsigned int n = prev->n;
	int rc = 0;
	if (!cs) {
		snprintf(err, errlen, "out of memory");
		rc = -ENOMEM;
	} else if (add) {
		if (sl_upset_find(prev, &add->addr, add->addrlen) >= 0) {
			snprintf(err, errlen, "server '%s' is already in upstream '%s'", add->address,
				 u->name);
			rc = -EEXIST;
		} else if (n >= SL_CONF_MAX_SERVERS) {
			snprintf(err, errlen, "too many servers (at most %u)", SL_CONF_MAX_SERVERS);
			rc = -EINVAL;
		} else {
			cs[n++] = *add;
		}
	} else {
		int at = sl_upset_find(prev, del, del_len);
		if (at < 0) {
			snprintf(err, errlen, "no such server in upstream '%s'", u->name);
			rc = -ENOENT;
		} else if (n == 1) {
			snprintf(err, errlen, "cannot remove the last server of upstream '%s'",
				 u->name);
			rc = -ENOTEMPTY;
		} else {
			memmove(&cs[at], &cs[at + 1], (n - (unsigned int)at - 1) * sizeof(*cs));
			n--;
		}
	}
	if (!rc) {
		s = set_from(&prev->pol, prev, cs, n, sl_mono_ns(), err, errlen);
		if (s)
			publish(u, s);
		else
			rc = -EINVAL;
	}
	free(cs);
	sl_upset_put(prev);
	pthread_mutex_unlock(&u->pub);
	return rc;
}

int sl_upstream_add_server(struct sl_upstream *u, const struct sl_conf_server *cs, char *err,
			   size_t errlen)
{
	return edit(u, cs, NULL, 0, err, errlen);
}

int sl_upstream_del_server(struct sl_upstream *u, const struct sockaddr_storage *ss,
			   socklen_t len, char *err, size_t errlen)
{
	return edit(u, NULL, ss, len, err, errlen);
}

int sl_upstream_set_servers(const char *upstream, const struct sl_server_spec *servers,
			    unsigned int n, char *err, size_t errlen)
{
	struct sl_upstream *u = upstream ? sl_upstream_lookup(upstream) : NULL;
	if (!u) {
		snprintf(err, errlen, "no upstream named '%s'", upstream ? upstream : "");
		return -ENOENT;
	}
	int rc = 0;
	struct sl_conf_server *cs = NULL;
	if (n > SL_CONF_MAX_SERVERS) {
		snprintf(err, errlen, "too many servers (%u, at most %u)", n, SL_CONF_MAX_SERVERS);
		rc = -EINVAL;
		goto out;
	}
	cs = calloc(n ? n : 1, sizeof(*cs));
	if (!cs) {
		snprintf(err, errlen, "out of memory");
		rc = -ENOMEM;
		goto out;
	}
	for (unsigned int i = 0; i < n && !rc; i++) {
		const char *a = servers[i].address;
		if (!a || strlen(a) >= sizeof(((struct sl_server *)0)->address) ||
		    sl_parse_addr(a, &cs[i].addr, &cs[i].addrlen)) {
			snprintf(err, errlen, "servers[%u]: invalid address '%.64s' (host:port or "
					      "[v6]:port)",
				 i, a ? a : "");
			rc = -EINVAL;
		} else if (servers[i].weight > 1000) {
			snprintf(err, errlen, "servers[%u]: weight %u out of range (1..1000)", i,
				 servers[i].weight);
			rc = -EINVAL;
		}
		cs[i].address = (char *)a;
		cs[i].weight = servers[i].weight ? servers[i].weight : 1;
	}
	if (!rc)
		rc = sl_upstream_replace(u, cs, n, err, errlen);
out:
	free(cs);
	sl_upstream_put(u);
	return rc;
}

/* ---- worker holds ---- */

/* Switch the worker's slot to the set published for it, if any. Worker thread. */
static void take_pending(struct sl_ups_slot *sl)
{
	if (!atomic_load_explicit(&sl->pending, memory_order_relaxed))
		return;
	struct sl_set_hold *h = calloc(1, sizeof(*h));
	if (!h)
		return; /* stays pending: the next pick tries again */
	struct sl_upset *s = atomic_exchange_explicit(&sl->pending, NULL, memory_order_acq_rel);
	if (!s) {
		free(h);
		return;
	}
	h->set = s;
	h->current = 1;
	struct sl_set_hold *old = sl->hold;
	sl->hold = h;
	if (!old)
		return;
	old->current = 0;
	if (!old->users) {
		sl_upset_put(old->set);
		free(old);
	} else {
		old->next = sl->old;
		sl->old = old;
	}
}

void sl_lb_req_begin(struct sl_lb_req *q, struct sl_upstream *u, unsigned int worker)
{
	struct sl_ups_slot *sl = &u->w[worker];
	take_pending(sl);
	q->u = u;
	q->worker = worker;
	q->cur = -1;
	q->n_tried = q->n_tried_prev = 0;
	q->hold = sl->hold;
	if (q->hold)
		q->hold->users++;
}

static void hold_put(struct sl_upstream *u, unsigned int worker, struct sl_set_hold *h)
{
	if (--h->users || h->current)
		return;
	struct sl_set_hold **pp = &u->w[worker].old;
	while (*pp && *pp != h)
		pp = &(*pp)->next;
	if (*pp)
		*pp = h->next;
	sl_upset_put(h->set);
	free(h);
}

void sl_lb_req_end(struct sl_lb_req *q)
{
	if (!q->u)
		return;
	sl_lb_attempt_end(q, SL_LB_NONE, 0, 0, 0);
	if (q->hold)
		hold_put(q->u, q->worker, q->hold);
	q->hold = NULL;
	q->u = NULL;
}

int sl_lb_req_server_gone(const struct sl_lb_req *q)
{
	if (!q->u || !q->hold || q->hold->current || q->n_tried == 0)
		return 0;
	const struct sl_upset *mine = q->hold->set;
	const struct sl_server *sv = mine->srv[q->tried[q->n_tried - 1]].s;
	const struct sl_set_hold *now = q->u->w[q->worker].hold;
	return !now || sl_upset_find(now->set, &sv->addr, sv->addrlen) < 0;
}
