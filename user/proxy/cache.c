/* The HTTP cache on the request path (see proxy/cache.h): zones, lookups, the cache
 * lock, teeing origin responses into the store, revalidation, stale answers, and
 * serving stored objects to clients (HEAD, ranges, conditional requests). */
#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cache/key.h"
#include "cache/lock.h"
#include "cache/policy.h"
#include "cache/store.h"
#include "core/clock.h"
#include "core/log.h"
#include "http/route.h"
#include "net/transport.h"
#include "proxy/cache.h"
#include "proxy/session.h"

/* ---- zones: one store and one lock table per name, for the life of the process ---- */

struct sl_pzone {
	char name[64];
	struct sl_cache_zone *z;
	struct sl_clock_tab lock;
	uint64_t max_size, max_object_size; /* as created (a reload cannot resize) */
	unsigned int shards;
	int warned;
	_Atomic uint64_t hits, misses, stale, revalidated, coalesced, lock_timeouts, passes,
	    stale_errors, bg_refreshes, not_stored;
};

#define ZONES_MAX 64
static pthread_mutex_t zones_mu = PTHREAD_MUTEX_INITIALIZER;
static struct sl_pzone *zones[ZONES_MAX];
static atomic_uint n_zones;

static struct sl_pzone *zone_find(const char *name)
{
	unsigned int n = atomic_load_explicit(&n_zones, memory_order_acquire);
	for (unsigned int i = 0; i < n; i++)
		if (!strcmp(zones[i]->name, name))
			return zones[i];
	return NULL;
}

static struct sl_pzone *zone_get(const struct sl_conf_cache_zone *zc)
{
	struct sl_pzone *pz = zone_find(zc->name);
	if (pz) {
		if ((pz->max_size != zc->max_size || pz->max_object_size != zc->max_object_size ||
		     pz->shards != zc->shards) &&
		    !__atomic_exchange_n(&pz->warned, 1, __ATOMIC_RELAXED))
			sl_log(SL_LOG_WARN,
			       "msg=\"cache zone keeps the size it started with; restart to "
			       "resize\" zone=%s max_size=%llu",
			       pz->name, (unsigned long long)pz->max_size);
		return pz;
	}
	pthread_mutex_lock(&zones_mu);
	pz = zone_find(zc->name);
	unsigned int n = atomic_load(&n_zones);
	if (!pz && n < ZONES_MAX && (pz = calloc(1, sizeof(*pz)))) {
		struct sl_cache_zone_params p = {zc->name, zc->max_size, zc->max_object_size,
						 zc->shards, zc->max_variants};
		snprintf(pz->name, sizeof(pz->name), "%s", zc->name);
		pz->max_size = zc->max_size;
		pz->max_object_size = zc->max_object_size;
		pz->shards = zc->shards;
		pz->z = sl_cache_zone_new(&p);
		if (!pz->z || sl_clock_init(&pz->lock, zc->shards)) {
			sl_log(SL_LOG_ERROR, "msg=\"cannot create cache zone\" zone=%s err=%d",
			       zc->name, errno);
			sl_cache_zone_free(pz->z);
			free(pz);
			pz = NULL;
		} else {
			zones[n] = pz;
			atomic_store_explicit(&n_zones, n + 1, memory_order_release);
			sl_log(SL_LOG_INFO, "msg=\"cache zone ready\" zone=%s max_size=%llu shards=%u",
			       pz->name, (unsigned long long)pz->max_size, pz->z->nshards);
		}
	}
	pthread_mutex_unlock(&zones_mu);
	return pz;
}

void sl_pcache_zones(const struct sl_conf *conf)
{
	for (unsigned int i = 0; i < conf->cache.n_zones; i++)
		zone_get(&conf->cache.zones[i]);
}

int sl_pcache_zone_stats(unsigned int i, struct sl_pcache_zone_stats *st)
{
	if (i >= atomic_load_explicit(&n_zones, memory_order_acquire))
		return -ENOENT;
	struct sl_pzone *pz = zones[i];
	struct sl_cache_stats cs;
	sl_cache_zone_stats(pz->z, &cs);
	st->name = pz->name;
	st->max_size = cs.max_bytes;
	st->bytes = cs.bytes;
	st->objects = cs.objects;
	st->entries = cs.entries;
	st->evictions = cs.evictions;
	st->charge_failures = cs.charge_failures;
	st->purged = cs.purged;
	st->hits = atomic_load(&pz->hits);
	st->misses = atomic_load(&pz->misses);
	st->stale = atomic_load(&pz->stale);
	st->revalidated = atomic_load(&pz->revalidated);
	st->coalesced = atomic_load(&pz->coalesced);
	st->lock_timeouts = atomic_load(&pz->lock_timeouts);
	st->passes = atomic_load(&pz->passes);
	st->stale_errors = atomic_load(&pz->stale_errors);
	st->bg_refreshes = atomic_load(&pz->bg_refreshes);
	st->not_stored = atomic_load(&pz->not_stored);
	return 0;
}

long sl_pcache_purge(const char *zone, const char *key, int prefix)
{
	unsigned int n = atomic_load_explicit(&n_zones, memory_order_acquire);
	long total = 0;
	int found = 0;
	for (unsigned int i = 0; i < n; i++) {
		if (zone && strcmp(zones[i]->name, zone))
			continue;
		found = 1;
		total += prefix ? sl_cache_purge_prefix(zones[i]->z, key, strlen(key))
				: sl_cache_purge(zones[i]->z, key, strlen(key));
	}
	return zone && !found ? -ENOENT : total;
}

/* ---- per-worker mailboxes and request state ---- */

static struct sl_xmbox *mboxes[SL_MAX_WORKERS];

static struct sl_xmbox *mbox_of(struct sl_worker *w)
{
	if (w->id >= SL_MAX_WORKERS)
		return NULL;
	if (!mboxes[w->id]) { /* this worker's thread is the only writer of its slot */
		struct sl_xmbox *m = calloc(1, sizeof(*m));
		if (!m || sl_xmbox_init(m, w->base)) {
			free(m);
			return NULL;
		}
		mboxes[w->id] = m;
	}
	return mboxes[w->id];
}

enum cq_mode {
	CQ_NONE = 0,
	CQ_WAIT,   /* parked behind the key's writer */
	CQ_WRITER, /* fetching for the store, holding the lock */
	CQ_NOLOCK, /* fetching, may store, no lock (Authorization, request no-store) */
	CQ_PASS,   /* to the origin uncached */
	CQ_SERVE,  /* answering from a stored object */
};

struct sl_creq {
	struct sl_creq *next_free;
	struct sl_session *s;
	struct sl_pzone *pz;
	const struct sl_conf_route_cache *cc;
	uint8_t mode;
	uint8_t invalidate; /* an unsafe method: a success invalidates the key */
	uint8_t timer_on;
	uint8_t fill_failed;
	uint8_t body;	 /* a body goes out */
	uint8_t chunked; /* framed here: length unknown, HTTP/1.1 client */
	uint8_t final_sent;
	uint8_t done;
	uint8_t head_fill; /* a HEAD miss waiting for the GET it started */
	uint8_t refresh;   /* cache_hit_filter said SL_CACHE_REFRESH: no stored answer */
	struct sl_clock_ticket tk;
	struct sl_xwaiter xw;
	struct event timer;
	uint64_t hash;
	int64_t req_wall;
	struct sl_cobj *stale; /* the stored object being revalidated (also for stale-if-error) */
	struct sl_cobj *fill;  /* the object this writer fills */
	struct sl_cobj *obj;   /* the object being served */
	struct sl_cread rd;
	uint64_t end; /* serve the body up to here; UINT64_MAX: until it completes */
	uint64_t chunk_left;
	char *hbuf;
	uint32_t hlen, hoff;
	uint8_t hcls;
	char cbuf[32];
	uint8_t clen, coff;
	const char *label;
	/* the writer's request edits (writer_headers), undone before it is answered from
	 * the cache: the client's own preconditions apply to what it gets */
	uint8_t rewrote, n_hidden;
	uint16_t hidden[16];
	uint16_t added_from, added_to;
	uint32_t names_len;
	char names[SL_CACHE_VARY_BYTES_MAX];
	uint32_t klen;
	char key[SL_CACHE_KEY_MAX];
};

static void bg_free_all(void);

static __thread struct sl_creq *free_cq;
static __thread unsigned int n_free_cq;
#define CQ_FREE_MAX 64

static struct sl_creq *cq_get(struct sl_session *s)
{
	struct sl_creq *cq = free_cq;
	if (cq) {
		free_cq = cq->next_free;
		n_free_cq--;
	} else if (!(cq = malloc(sizeof(*cq)))) {
		return NULL;
	}
	memset(cq, 0, offsetof(struct sl_creq, names));
	cq->s = s;
	return cq;
}

static void cq_put(struct sl_creq *cq)
{
	if (n_free_cq >= CQ_FREE_MAX) {
		free(cq);
		return;
	}
	cq->next_free = free_cq;
	free_cq = cq;
	n_free_cq++;
}

void sl_pcache_worker_exit(struct sl_worker *w)
{
	bg_free_all();
	while (free_cq) {
		struct sl_creq *cq = free_cq;
		free_cq = cq->next_free;
		free(cq);
	}
	n_free_cq = 0;
	if (w->id < SL_MAX_WORKERS && mboxes[w->id]) {
		sl_xmbox_destroy(mboxes[w->id]);
		free(mboxes[w->id]);
		mboxes[w->id] = NULL;
	}
}

/* ---- request helpers ---- */

static const char *req_header(void *ctx, const char *name, size_t nlen, size_t *vlen)
{
	struct sl_session *s = ctx;
	int i = sl_head_find(&s->r->req, s->in.data, name, nlen);
	if (i < 0)
		return NULL;
	*vlen = s->r->req.h[i].value_len;
	return sl_hdr_value(&s->r->req, s->in.data, (unsigned)i);
}

static int vary_fn(void *ctx, const char *names, size_t nl, char *out, size_t cap)
{
	struct sl_session *s = ctx;
	int n = sl_cache_vary_key(&s->r->req, s->in.data, names, nl, out, cap);
	return n < 0 ? -1 : n;
}

/* A cache phase of the program's ops (sluice.h): recorded as the phase, so that
 * sl_respond() refuses to run in it; nothing it may call ends the request. */
#define CACHE_PHASE(s, call)                                                                \
	({                                                                                  \
		struct sl_request *r_ = (s)->r;                                             \
		enum sl_phase p_ = r_->phase;                                               \
		r_->phase = PH_CACHE;                                                       \
		(s)->in_phase++;                                                            \
		int rc_ = (call);                                                           \
		(s)->in_phase--;                                                            \
		r_->phase = p_;                                                             \
		rc_;                                                                        \
	})

static const struct sl_proxy_ops *ops_of(const struct sl_session *s)
{
	return s->w->d->ops;
}

/* A stored object may answer this request: 0 serve it, SL_CACHE_REFRESH, SL_CACHE_BYPASS
 * (the program's cache_hit_filter; anything else it returns serves). */
static int hit_filter(struct sl_session *s, struct sl_creq *cq, int fresh)
{
	const struct sl_proxy_ops *ops = ops_of(s);
	if (!ops->cache_hit_filter)
		return 0;
	int rc = CACHE_PHASE(s, ops->cache_hit_filter(s, s->r->ctx, fresh));
	if (rc == SL_CACHE_REFRESH)
		cq->refresh = 1;
	return rc == SL_CACHE_REFRESH || rc == SL_CACHE_BYPASS ? rc : 0;
}

static int render_key(struct sl_session *s, struct sl_creq *cq, const char *method, size_t ml)
{
	struct sl_request *r = s->r;
	const struct sl_proxy_ops *ops = ops_of(s);
	if (ops->cache_key) {
		int n = CACHE_PHASE(s, ops->cache_key(s, r->ctx, cq->key, sizeof(cq->key)));
		if (n < 0)
			return n;
		if (n > (int)sizeof(cq->key))
			return -E2BIG;
		if (n > 0) {
			cq->klen = (uint32_t)n;
			cq->hash = sl_cache_hash(cq->pz->z, cq->key, cq->klen);
			return 0;
		}
	}
	size_t hl = 0;
	const char *host = sl_req_host(s, &hl);
	/* $scheme is the client's: an origin told X-Forwarded-Proto answers plain and TLS
	 * requests differently (a redirect to https), so one zone behind both listeners
	 * must keep them apart */
	struct sl_ckey_in in = {
	    .scheme = s->io.t != &sl_transport_raw ? "https" : "http",
	    .host = host,
	    .host_len = hl,
	    .target = s->in.data + r->req.path_off,
	    .target_len = r->req.path_len,
	    .method = method,
	    .method_len = ml,
	    .header = req_header,
	    .ctx = s,
	};
	int n = sl_ckey_render(cq->cc->tpl, &in, cq->key, sizeof(cq->key));
	if (n < 0)
		return n;
	cq->klen = (uint32_t)n;
	cq->hash = sl_cache_hash(cq->pz->z, cq->key, cq->klen);
	return 0;
}

static void set_label(struct sl_session *s, struct sl_creq *cq, const char *label)
{
	cq->label = label;
	sl_log_field(s, "cache", label);
}

static int obj_fresh(const struct sl_cobj *o, uint64_t now, uint32_t *stale_for)
{
	uint32_t age = sl_cache_age(o->initial_age, o->resp_mono_ns, now);
	if (!(o->flags & SL_COBJ_NO_CACHE) && age < o->lifetime)
		return 1;
	*stale_for = age >= o->lifetime ? age - o->lifetime : 0;
	return 0;
}

static int obj_usable_stale(const struct sl_cobj *o, uint64_t now, int for_error)
{
	uint32_t stale_for = 0;
	if (obj_fresh(o, now, &stale_for))
		return 1;
	if (o->flags & SL_COBJ_NO_STALE)
		return 0;
	return stale_for < (for_error ? o->sie : o->swr);
}

/* ---- serving a stored object ---- */

static const char *const not_modified_keep[] = {"cache-control", "content-location", "date",
						"etag",		 "expires",	     "vary",
						"last-modified"};

static int name_in(const char *n, size_t nl, const char *const *list, size_t cnt)
{
	for (size_t i = 0; i < cnt; i++)
		if (strlen(list[i]) == nl && !strncasecmp(n, list[i], nl))
			return 1;
	return 0;
}

/* Copy the stored fields into o; for a 304 only those RFC 9110 15.4.5 lists. */
static void put_stored_head(struct sl_out *o, const struct sl_cobj *obj, int not_modified)
{
	const char *p = obj->head, *end = obj->head + obj->head_len;
	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		if (!eol)
			break;
		const char *colon = memchr(p, ':', (size_t)(eol - p));
		if (!not_modified ||
		    (colon && name_in(p, (size_t)(colon - p), not_modified_keep,
				      sizeof(not_modified_keep) / sizeof(not_modified_keep[0]))))
			sl_out_put(o, p, (size_t)(eol - p) + 1);
		p = eol + 1;
	}
}

static void release_hbuf(struct sl_session *s, struct sl_creq *cq)
{
	if (cq->hbuf)
		sl_mem_put(&s->w->mem, cq->hcls, cq->hbuf);
	cq->hbuf = NULL;
}

static void restore_client_headers(struct sl_session *s, struct sl_creq *cq);

/* Answer the request from obj (the reference passes to the request). 0, or -1 when the
 * object cannot serve (its fill failed, no memory): the caller goes to the origin. */
static int serve(struct sl_session *s, struct sl_creq *cq, struct sl_cobj *obj, const char *label)
{
	struct sl_request *r = s->r;
	struct sl_cbody *b = obj->body;
	restore_client_headers(s, cq);
	if (atomic_load_explicit(&b->state, memory_order_acquire) == SL_CBODY_ABORTED) {
		sl_cobj_put(obj);
		return -1;
	}
	uint64_t now = sl_mono_ns();
	int complete = atomic_load_explicit(&b->state, memory_order_acquire) == SL_CBODY_COMPLETE;
	uint64_t len = complete ? atomic_load(&b->len) : b->expect; /* UINT64_MAX: unknown */
	const char *etag = obj->etag_len ? obj->head + obj->etag_off : NULL;
	const char *lm = obj->lm_len ? obj->head + obj->lm_off : NULL;
	int status = obj->status;
	uint64_t first = 0, last = 0;
	/* preconditions only for a 2xx (RFC 9110 13.2.1): a 304 for a stored 404 or 301
	 * would tell a client holding an older 200 to keep using it */
	int cond = status >= 200 && status < 300
		       ? sl_cache_cond(&r->req, s->in.data, etag, obj->etag_len, lm, obj->lm_len)
		       : 0;
	if (cond == 304)
		status = 304;
	else if (status == 200 && len != UINT64_MAX) {
		int rg = sl_cache_range(&r->req, s->in.data, len, etag, obj->etag_len, lm,
					obj->lm_len, &first, &last);
		if (rg)
			status = rg;
	}
	enum sl_mem_class cls = SL_MEM_SMALL;
	if (obj->head_len + 512 > s->w->mem.size[SL_MEM_SMALL])
		cls = SL_MEM_BIG;
	if (obj->head_len + 512 > s->w->mem.size[cls]) {
		sl_cobj_put(obj);
		return -1;
	}
	char *hb = sl_mem_get(&s->w->mem, cls);
	if (!hb) {
		sl_cobj_put(obj);
		return -1;
	}
	cq->hbuf = hb;
	cq->hcls = (uint8_t)cls;
	int has_body = !r->is_head_req && status != 304 && status != 204 && status != 416;
	uint64_t blen = status == 206 ? last - first + 1 : status == 416 ? 0 : len;
	r->keepalive = r->keepalive && r->req_done;
	cq->chunked = 0;
	if (has_body && blen == UINT64_MAX) {
		if (r->req.http_minor >= 1)
			cq->chunked = 1;
		else
			r->keepalive = 0; /* HTTP/1.0: the close ends the body */
	}
	struct sl_out o;
	sl_out_init(&o, hb, s->w->mem.size[cls]);
	sl_out_str(&o, "HTTP/1.1 ");
	sl_out_uint(&o, (uint64_t)status);
	sl_out_put(&o, " ", 1);
	sl_out_str(&o, sl_http_reason(status));
	sl_out_str(&o, "\r\n");
	put_stored_head(&o, obj, status == 304);
	sl_out_str(&o, "Age: ");
	sl_out_uint(&o, sl_cache_age(obj->initial_age, obj->resp_mono_ns, now));
	sl_out_str(&o, "\r\n");
	if (cq->cc->status_header) {
		sl_out_str(&o, cq->cc->status_header);
		sl_out_str(&o, ": ");
		sl_out_str(&o, label);
		sl_out_str(&o, "\r\n");
	}
	if (status == 206 || status == 416) {
		sl_out_str(&o, "Content-Range: bytes ");
		if (status == 206) {
			sl_out_uint(&o, first);
			sl_out_put(&o, "-", 1);
			sl_out_uint(&o, last);
		} else {
			sl_out_put(&o, "*", 1);
		}
		sl_out_put(&o, "/", 1);
		sl_out_uint(&o, len);
		sl_out_str(&o, "\r\n");
	}
	if (status != 304 && status != 204) {
		if (blen != UINT64_MAX) {
			sl_out_str(&o, "Content-Length: ");
			sl_out_uint(&o, blen);
			sl_out_str(&o, "\r\n");
		} else if (cq->chunked) {
			sl_out_str(&o, "Transfer-Encoding: chunked\r\n");
		}
	}
	if (!r->keepalive)
		sl_out_str(&o, "Connection: close\r\n");
	else if (r->req.http_minor == 0)
		sl_out_str(&o, "Connection: keep-alive\r\n");
	sl_out_str(&o, "\r\n");
	if (!o.ok) {
		release_hbuf(s, cq);
		sl_cobj_put(obj);
		return -1;
	}
	cq->hlen = (uint32_t)o.len;
	cq->hoff = 0;
	cq->obj = obj;
	cq->body = (uint8_t)has_body;
	cq->end = blen == UINT64_MAX ? UINT64_MAX : first + blen;
	sl_cread_init(&cq->rd, b);
	/* a range that starts further in: the cursor moves there once those bytes are
	 * published (serve_seek); until then chunk_left holds the start */
	cq->chunk_left = has_body ? first : 0;
	cq->clen = cq->coff = 0;
	cq->final_sent = 0;
	cq->done = 0;
	cq->mode = CQ_SERVE;
	set_label(s, cq, label);
	r->status = status;
	r->local_resp = 1; /* sluice answers: errors after this close the connection only */
	r->resp_head_done = 1;
	r->out_to_client = 0;
	return 0;
}

/* A range that starts after the bytes published so far: move the cursor once they are
 * there (cq->chunk_left holds the start until then). */
static int serve_seek(struct sl_creq *cq)
{
	if (cq->chunked || !cq->chunk_left || cq->rd.off)
		return 1;
	struct sl_cbody *b = cq->obj->body;
	if (atomic_load_explicit(&b->len, memory_order_acquire) < cq->chunk_left)
		return 0;
	sl_cread_seek(&cq->rd, b, cq->chunk_left);
	cq->chunk_left = 0;
	return 1;
}

int sl_pcache_iov(struct sl_session *s, struct iovec *iov, int max)
{
	struct sl_creq *cq = s->r->cache;
	if (cq->mode != CQ_SERVE || cq->done || max < 3)
		return 0;
	int n = 0;
	if (cq->hoff < cq->hlen) {
		iov[n].iov_base = cq->hbuf + cq->hoff;
		iov[n++].iov_len = cq->hlen - cq->hoff;
	}
	if (!cq->body)
		return n;
	if (!serve_seek(cq))
		return n;
	struct sl_cbody *b = cq->obj->body;
	const char *p = NULL;
	size_t avail = 0;
	if (cq->rd.off < cq->end)
		avail = sl_cread_peek(&cq->rd, b, &p);
	if (cq->end != UINT64_MAX && avail > cq->end - cq->rd.off)
		avail = (size_t)(cq->end - cq->rd.off);
	if (cq->chunked) {
		if (cq->coff == cq->clen && !cq->chunk_left && !cq->final_sent) {
			int last = atomic_load_explicit(&b->state, memory_order_acquire) ==
				       SL_CBODY_COMPLETE &&
				   !avail && cq->rd.off == atomic_load(&b->len);
			if (avail) {
				cq->clen = (uint8_t)snprintf(cq->cbuf, sizeof(cq->cbuf), "%s%zx\r\n",
							     cq->rd.off ? "\r\n" : "", avail);
				cq->coff = 0;
				cq->chunk_left = avail;
			} else if (last) {
				cq->clen = (uint8_t)snprintf(cq->cbuf, sizeof(cq->cbuf), "%s0\r\n\r\n",
							     cq->rd.off ? "\r\n" : "");
				cq->coff = 0;
				cq->final_sent = 1;
			}
		}
		if (cq->coff < cq->clen) {
			iov[n].iov_base = cq->cbuf + cq->coff;
			iov[n++].iov_len = cq->clen - cq->coff;
		}
		if (avail > cq->chunk_left)
			avail = (size_t)cq->chunk_left;
	}
	if (avail) {
		iov[n].iov_base = (void *)p;
		iov[n++].iov_len = avail;
	}
	return n;
}

size_t sl_pcache_wrote(struct sl_session *s, size_t n)
{
	struct sl_creq *cq = s->r->cache;
	if (cq->mode != CQ_SERVE || cq->done)
		return n;
	size_t k = cq->hlen - cq->hoff;
	k = k < n ? k : n;
	cq->hoff += (uint32_t)k;
	n -= k;
	if (!n || !cq->body)
		return n;
	k = cq->clen - cq->coff;
	k = k < n ? k : n;
	cq->coff += (uint8_t)k;
	n -= k;
	if (!n)
		return 0;
	/* body bytes: the data iovec came from one peek at the cursor */
	sl_cread_skip(&cq->rd, n);
	if (cq->chunked)
		cq->chunk_left -= n;
	return 0;
}

static void body_wake(struct sl_xwaiter *xw)
{
	struct sl_creq *cq = (struct sl_creq *)((char *)xw - offsetof(struct sl_creq, xw));
	sl_session_cache_resume(cq->s, SL_PCACHE_FLUSH);
}

int sl_pcache_more(struct sl_session *s)
{
	struct sl_request *r = s->r;
	struct sl_creq *cq = r->cache;
	if (cq->mode != CQ_SERVE || cq->done)
		return 0;
	if (cq->hoff < cq->hlen || cq->coff < cq->clen)
		return 2;
	if (cq->body) {
		struct sl_cbody *b = cq->obj->body;
		struct sl_cread at = cq->rd;
		if (!serve_seek(cq)) {
			if (atomic_load_explicit(&b->state, memory_order_acquire) != SL_CBODY_FILLING)
				return -1; /* ended before the range's first byte */
			at.off = cq->chunk_left - 1; /* woken once byte `first` is there */
			goto wait;
		}
		at = cq->rd;
		uint64_t len = atomic_load_explicit(&b->len, memory_order_acquire);
		int state = atomic_load_explicit(&b->state, memory_order_acquire);
		if (cq->chunked) {
			if (!cq->final_sent)
				goto more_or_wait;
		} else if (cq->end == UINT64_MAX) {
			if (state != SL_CBODY_COMPLETE || cq->rd.off < len)
				goto more_or_wait;
		} else if (cq->rd.off < cq->end) {
			goto more_or_wait;
		}
		goto done;
more_or_wait:
		if (len > cq->rd.off && cq->rd.off < cq->end)
			return 2;
		if (state == SL_CBODY_ABORTED)
			return -1;
		if (state == SL_CBODY_COMPLETE) {
			if (cq->chunked)
				return 2; /* the last chunk */
			return -1;  /* shorter than announced: the connection must end */
		}
wait:
		cq->xw.mbox = mbox_of(s->w);
		cq->xw.wake = body_wake;
		if (!cq->xw.mbox)
			return -1;
		if (sl_cbody_wait(b, &at, &cq->xw))
			return 2;
		return 1;
	}
done:
	cq->done = 1;
	release_hbuf(s, cq);
	r->resp_done = 1;
	return 0;
}

/* ---- the origin side ---- */

static void timer_off(struct sl_creq *cq)
{
	if (cq->timer_on)
		event_del(&cq->timer);
	cq->timer_on = 0;
}

/* Headers of the request that fetches for the store: the client's own preconditions and
 * ranges would make the origin answer for that client only; the stored object's
 * validators take their place when revalidating. */
static void writer_headers(struct sl_session *s, struct sl_creq *cq)
{
	struct sl_head *h = &s->r->req;
	const char *base = s->in.data;
	static const char *const drop[] = {"if-none-match", "if-modified-since", "range",
					   "if-range"};
	if (cq->rewrote)
		return;
	cq->rewrote = 1;
	cq->n_hidden = 0;
	for (unsigned int i = 0; i < h->n; i++) {
		if ((h->h[i].flags & SL_HDR_REMOVED) ||
		    !name_in(sl_hdr_name(h, base, i), h->h[i].name_len, drop,
			     sizeof(drop) / sizeof(drop[0])))
			continue;
		h->h[i].flags |= SL_HDR_REMOVED;
		if (cq->n_hidden < sizeof(cq->hidden) / sizeof(cq->hidden[0]))
			cq->hidden[cq->n_hidden++] = (uint16_t)i;
	}
	cq->added_from = cq->added_to = h->n;
	if (!cq->stale)
		return;
	const struct sl_cobj *o = cq->stale;
	if (o->etag_len)
		sl_head_append(h, "If-None-Match", 13, o->head + o->etag_off, o->etag_len);
	if (o->lm_len)
		sl_head_append(h, "If-Modified-Since", 17, o->head + o->lm_off, o->lm_len);
	cq->added_to = h->n;
}

static void restore_client_headers(struct sl_session *s, struct sl_creq *cq)
{
	struct sl_head *h = &s->r->req;
	if (!cq->rewrote)
		return;
	cq->rewrote = 0;
	for (unsigned int i = 0; i < cq->n_hidden; i++)
		h->h[cq->hidden[i]].flags &= ~SL_HDR_REMOVED;
	for (unsigned int i = cq->added_from; i < cq->added_to && i < h->n; i++)
		h->h[i].flags |= SL_HDR_REMOVED;
}

static void bg_refresh(struct sl_session *s, struct sl_creq *cq);
static int head_fill(struct sl_session *s, struct sl_creq *cq);
static void lock_timeout(evutil_socket_t fd, short what, void *arg);

/* Wait behind the key's writer, at most lock.timeout. */
static void park(struct sl_session *s, struct sl_creq *cq)
{
	const struct sl_conf_route_cache *cc = cq->cc;
	cq->mode = CQ_WAIT;
	evtimer_assign(&cq->timer, s->w->base, lock_timeout, cq);
	struct timeval tv = {cc->lock_timeout / 1000, (cc->lock_timeout % 1000) * 1000};
	evtimer_add(&cq->timer, &tv);
	cq->timer_on = 1;
}

/* The request holds the key's lock: a last look in the store (the previous writer may
 * have inserted between our lookup and the lock), then to the origin. Returns 2 if
 * answered from the store, 1 if it waits (a HEAD behind the GET it started), 0 to go to
 * the origin. */
static int become_writer(struct sl_session *s, struct sl_creq *cq)
{
	struct sl_cobj *o = cq->refresh ? NULL
					: sl_cache_lookup(cq->pz->z, cq->hash, cq->key, cq->klen,
							  vary_fn, s);
	uint32_t sf;
	if (o && obj_fresh(o, sl_mono_ns(), &sf) && !hit_filter(s, cq, 1)) {
		sl_clock_done(&cq->pz->lock, &cq->tk, o);
		if (!serve(s, cq, o, "HIT")) {
			atomic_fetch_add(&cq->pz->hits, 1);
			return 2;
		}
	} else if (o) {
		sl_cobj_put(o);
	}
	if (s->r->is_head_req) {
		set_label(s, cq, "MISS");
		if (cq->head_fill || ops_of(s)->response_cache_filter) {
			/* its GET failed and the role came back: one fetch per HEAD, so a
			 * failing origin does not see a GET after GET; the role goes on (also
			 * for a program that vets responses: no background fetch) */
			if (!cq->head_fill)
				atomic_fetch_add(&cq->pz->misses, 1);
			sl_clock_fail(&cq->pz->lock, &cq->tk, sl_mono_ns());
		} else {
			atomic_fetch_add(&cq->pz->misses, 1);
			if (head_fill(s, cq)) {
				cq->head_fill = 1;
				park(s, cq);
				return 1;
			}
		}
		cq->mode = CQ_PASS; /* to the origin as HEAD, uncached */
		return 0;
	}
	cq->mode = CQ_WRITER;
	set_label(s, cq, "MISS");
	atomic_fetch_add(&cq->pz->misses, 1);
	writer_headers(s, cq);
	return 0;
}

static void lock_wake(struct sl_xwaiter *xw)
{
	struct sl_creq *cq = (struct sl_creq *)((char *)xw - offsetof(struct sl_creq, xw));
	struct sl_session *s = cq->s;
	timer_off(cq);
	int how = SL_PCACHE_ORIGIN;
	if (xw->result == SL_CLOCK_OBJ) {
		struct sl_cobj *o = xw->arg;
		xw->arg = NULL;
		/* a HEAD whose own GET fetched the object was a miss, counted then */
		if (!serve(s, cq, o, cq->head_fill ? "MISS" : "COALESCED")) {
			if (!cq->head_fill)
				atomic_fetch_add(&cq->pz->coalesced, 1);
			how = SL_PCACHE_FLUSH;
		} else {
			cq->mode = CQ_PASS;
			set_label(s, cq, "PASS");
		}
	} else if (xw->result == SL_CLOCK_WRITER) {
		cq->tk = sl_clock_ticket_of(xw);
		int rc = become_writer(s, cq);
		if (rc == 1)
			return; /* a HEAD parked again, behind the GET it started */
		if (rc == 2)
			how = SL_PCACHE_FLUSH;
	} else {
		cq->mode = CQ_PASS;
		atomic_fetch_add(&cq->pz->passes, 1);
		set_label(s, cq, "PASS");
	}
	sl_session_cache_resume(s, how);
}

static void lock_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct sl_creq *cq = arg;
	cq->timer_on = 0;
	if (cq->mode != CQ_WAIT)
		return;
	sl_clock_leave(&cq->pz->lock, &cq->xw, sl_mono_ns());
	atomic_fetch_add(&cq->pz->lock_timeouts, 1);
	cq->mode = CQ_PASS;
	set_label(cq->s, cq, "LOCK_TIMEOUT");
	sl_session_cache_resume(cq->s, SL_PCACHE_ORIGIN);
}

int sl_pcache_request(struct sl_session *s)
{
	struct sl_request *r = s->r;
	const struct sl_conf_route_cache *cc = r->cache_conf;
	int method = r->rp.p.method;
	int unsafe = method == HTTP_POST || method == HTTP_PUT || method == HTTP_DELETE ||
		     method == HTTP_PATCH;
	if (method != HTTP_GET && method != HTTP_HEAD && !unsafe)
		return 0;
	if (method == HTTP_HEAD && !(cc->methods & SL_CACHE_M_HEAD))
		return 0;
	if (!unsafe && (r->has_body ||
			sl_cache_request_class(&r->req, s->in.data) == SL_CREQ_BYPASS))
		return 0;
	struct sl_pzone *pz = zone_get(cc->zone);
	if (!pz)
		return 0;
	struct sl_creq *cq = cq_get(s);
	if (!cq)
		return 0;
	cq->pz = pz;
	cq->cc = cc;
	cq->req_wall = (int64_t)time(NULL);
	r->cache = cq;
	/* a HEAD is answered from the GET's object and fills it with a GET: its key is the
	 * GET's ($method reads GET), as for nginx's proxy_cache_convert_head */
	const char *mname = unsafe || method == HTTP_HEAD ? "GET" : llhttp_method_name(method);
	if (render_key(s, cq, mname, strlen(mname)) < 0) {
		sl_log(SL_LOG_DEBUG, "msg=\"cache key too long: not cached\" client=%s",
		       sl_session_client_str(s));
		cq->mode = CQ_PASS;
		return 0;
	}
	if (unsafe) {
		cq->invalidate = 1;
		return 0;
	}
	uint64_t now = sl_mono_ns();
	struct sl_cobj *o = sl_cache_lookup(pz->z, cq->hash, cq->key, cq->klen, vary_fn, s);
	int fresh = 0, hf = 0;
	uint32_t stale_for = 0;
	if (o) {
		fresh = obj_fresh(o, now, &stale_for);
		if (fresh || (!(o->flags & SL_COBJ_NO_STALE) && stale_for < o->swr))
			hf = hit_filter(s, cq, fresh);
		if (hf == SL_CACHE_BYPASS) {
			sl_cobj_put(o);
			cq->mode = CQ_PASS;
			set_label(s, cq, "PASS");
			atomic_fetch_add(&pz->passes, 1);
			return 0;
		}
	}
	if (o && !hf) {
		if (fresh) {
			if (!serve(s, cq, o, "HIT")) {
				atomic_fetch_add(&pz->hits, 1);
				return 2;
			}
			o = NULL;
		} else if (!(o->flags & SL_COBJ_NO_STALE) && stale_for < o->swr &&
			   atomic_load(&o->body->state) == SL_CBODY_COMPLETE &&
			   !ops_of(s)->response_cache_filter) {
			cq->stale = sl_cobj_ref(o);
			bg_refresh(s, cq);
			if (!serve(s, cq, o, "STALE")) {
				atomic_fetch_add(&pz->stale, 1);
				return 2;
			}
			o = NULL;
		}
	}
	if (o && !cq->stale)
		cq->stale = o; /* revalidate it, or serve it if the origin fails */
	else if (o)
		sl_cobj_put(o);
	if (sl_cache_request_class(&r->req, s->in.data) == SL_CREQ_NOLOCK && method == HTTP_HEAD) {
		/* fetching for such a request does not take the lock: a HEAD just goes */
		cq->mode = CQ_PASS;
		set_label(s, cq, "MISS");
		atomic_fetch_add(&pz->misses, 1);
		return 0;
	}
	if (sl_cache_request_class(&r->req, s->in.data) == SL_CREQ_NOLOCK) {
		cq->mode = CQ_NOLOCK;
		set_label(s, cq, "MISS");
		atomic_fetch_add(&pz->misses, 1);
		writer_headers(s, cq);
		return 0;
	}
	cq->xw.mbox = mbox_of(s->w);
	cq->xw.wake = lock_wake;
	if (!cq->xw.mbox) {
		cq->mode = CQ_PASS;
		return 0;
	}
	/* the clock read again: the lookup above may have waited on a shard lock */
	int rc = sl_clock_acquire(&pz->lock, cq->hash, cq->key, cq->klen, sl_mono_ns(),
				  (uint64_t)cc->lock_age * 1000000ull, &cq->xw, &cq->tk);
	if (rc == SL_CLOCK_WRITER)
		return become_writer(s, cq);
	if (rc == SL_CLOCK_WAIT) {
		park(s, cq);
		return 1;
	}
	cq->mode = CQ_PASS;
	return 0;
}

/* ---- storing the origin's response ---- */

static const char *const not_stored[] = {"age", "content-length", "transfer-encoding",
					 "connection", "keep-alive", "proxy-connection",
					 "set-cookie"};

/* The fields to store, "Name: value\r\n" each; a Date is added if the origin sent
 * none (RFC 9110 6.6.1). Offsets of ETag and Last-Modified come back. */
static int store_head(const struct sl_head *h, const char *base, const char *skip_name,
		      int64_t now_wall, char *out, size_t cap, uint16_t *etag_off, uint16_t *etag_len,
		      uint32_t *lm_off, uint16_t *lm_len)
{
	struct sl_out o;
	sl_out_init(&o, out, cap);
	int date = 0;
	*etag_len = *lm_len = 0;
	for (unsigned int i = 0; i < h->n; i++) {
		if (h->h[i].flags & (SL_HDR_REMOVED | SL_HDR_HOP))
			continue;
		const char *n = sl_hdr_name(h, base, i);
		size_t nl = h->h[i].name_len;
		if (name_in(n, nl, not_stored, sizeof(not_stored) / sizeof(not_stored[0])) ||
		    (skip_name && strlen(skip_name) == nl && !strncasecmp(n, skip_name, nl)))
			continue;
		size_t vl = h->h[i].value_len;
		sl_out_put(&o, n, nl);
		sl_out_str(&o, ": ");
		size_t voff = o.len;
		sl_out_put(&o, sl_hdr_value(h, base, i), vl);
		sl_out_str(&o, "\r\n");
		if (nl == 4 && !strncasecmp(n, "etag", 4) && !*etag_len && vl < 1024 && voff < 65535) {
			*etag_off = (uint16_t)voff;
			*etag_len = (uint16_t)vl;
		} else if (nl == 13 && !strncasecmp(n, "last-modified", 13) && !*lm_len && vl < 128) {
			*lm_off = (uint32_t)voff;
			*lm_len = (uint16_t)vl;
		} else if (nl == 4 && !strncasecmp(n, "date", 4)) {
			date = 1;
		}
	}
	if (!date) {
		char d[30];
		sl_http_date_fmt(now_wall, d);
		sl_out_str(&o, "Date: ");
		sl_out_str(&o, d);
		sl_out_str(&o, "\r\n");
	}
	return o.ok ? (int)o.len : -E2BIG;
}

static void fill_abort(struct sl_creq *cq)
{
	if (!cq->fill)
		return;
	if (atomic_load(&cq->fill->body->state) == SL_CBODY_FILLING) {
		sl_cbody_abort(cq->fill->body);
		sl_cache_remove_obj(cq->pz->z, cq->hash, cq->key, cq->klen, cq->fill);
	}
	sl_cobj_put(cq->fill);
	cq->fill = NULL;
}

static void tap(void *ctx, const char *at, size_t len)
{
	struct sl_creq *cq = ctx;
	if (!cq->fill || cq->fill_failed)
		return;
	int rc = sl_cbody_append(cq->fill->body, at, len);
	if (rc) {
		cq->fill_failed = 1;
		sl_log(SL_LOG_INFO, "msg=\"cache fill stopped\" zone=%s reason=%s", cq->pz->name,
		       rc == -EFBIG ? "max_object_size" : "no room");
		fill_abort(cq);
	}
}

static void apply_verdict(struct sl_cobj *o, const struct sl_cache_verdict *v, uint64_t mono,
			  int64_t wall)
{
	o->flags = v->flags;
	o->lifetime = v->lifetime;
	o->initial_age = v->initial_age;
	o->swr = v->swr;
	o->sie = v->sie;
	o->resp_mono_ns = mono;
	o->resp_wall = wall;
}

/* What storing a response needs to know, from a client request or a background one. */
struct fctx {
	struct sl_pzone *pz;
	uint64_t hash;
	const char *key;
	uint32_t klen;
	uint32_t swr, sie; /* route defaults, seconds */
	const char *status_header;
	int64_t req_wall;
	const struct sl_head *req;
	const char *req_base;
	char *names; /* SL_CACHE_VARY_BYTES_MAX bytes: the response's Vary names */
	uint32_t *names_len;
};

static void cq_fctx(struct sl_session *s, struct sl_creq *cq, struct fctx *f)
{
	f->pz = cq->pz;
	f->hash = cq->hash;
	f->key = cq->key;
	f->klen = cq->klen;
	f->swr = cq->cc->swr / 1000;
	f->sie = cq->cc->sie / 1000;
	f->status_header = cq->cc->status_header;
	f->req_wall = cq->req_wall;
	f->req = &s->r->req;
	f->req_base = s->in.data;
	f->names = cq->names;
	f->names_len = &cq->names_len;
}

/* A stored object refreshed by a 304 (RFC 9111 4.3.4): its fields, updated with the
 * 304's, and new times; same body. NULL when the result may not be stored. */
static struct sl_cobj *refresh(const struct fctx *f, const struct sl_cobj *old,
			       const struct sl_head *h, const char *base)
{
	static __thread char buf[65536];
	struct sl_out o;
	sl_out_init(&o, buf, sizeof(buf));
	sl_out_str(&o, "HTTP/1.1 200 OK\r\n");
	/* stored lines whose name the 304 does not carry */
	const char *p = old->head, *end = old->head + old->head_len;
	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		const char *colon = eol ? memchr(p, ':', (size_t)(eol - p)) : NULL;
		if (!eol)
			break;
		if (colon && sl_head_find(h, base, p, (size_t)(colon - p)) < 0)
			sl_out_put(&o, p, (size_t)(eol - p) + 1);
		p = eol + 1;
	}
	for (unsigned int i = 0; i < h->n; i++) {
		if (h->h[i].flags & (SL_HDR_REMOVED | SL_HDR_HOP))
			continue;
		const char *n = sl_hdr_name(h, base, i);
		size_t nl = h->h[i].name_len;
		if (name_in(n, nl, not_stored, sizeof(not_stored) / sizeof(not_stored[0])) ||
		    (nl > 8 && !strncasecmp(n, "content-", 8)))
			continue;
		sl_out_put(&o, n, nl);
		sl_out_str(&o, ": ");
		sl_out_put(&o, sl_hdr_value(h, base, i), h->h[i].value_len);
		sl_out_str(&o, "\r\n");
	}
	sl_out_str(&o, "\r\n");
	if (!o.ok)
		return NULL;
	/* parse the merged head to decide on it as a whole */
	static __thread struct sl_http_parser hp;
	static __thread struct sl_head mh;
	sl_http_parser_init(&hp, 0, &mh);
	sl_head_reset(&mh, SL_HDR_MAX, 0);
	size_t used;
	llhttp_errno_t e = sl_http_execute(&hp, buf, buf, o.len, &used);
	const char *why;
	if ((e != HPE_OK && e != HPE_PAUSED) || !hp.headers_done ||
	    sl_head_analyze(&mh, buf, 0, &why))
		return NULL;
	mh.status = old->status;
	struct sl_cache_times tm = {f->req_wall, (int64_t)time(NULL), f->swr, f->sie};
	struct sl_cache_verdict v;
	sl_cache_decide(f->req, f->req_base, &mh, buf, &tm, &v);
	if (!v.store)
		return NULL;
	int vn = sl_cache_vary_names(&mh, buf, f->names, SL_CACHE_VARY_BYTES_MAX);
	if (vn < 0)
		return NULL;
	*f->names_len = (uint32_t)vn;
	static __thread char hb[65536];
	uint16_t eo = 0, el = 0, ll = 0;
	uint32_t lo = 0;
	int hl = store_head(&mh, buf, f->status_header, tm.resp_wall, hb, sizeof(hb), &eo, &el, &lo,
			    &ll);
	if (hl < 0)
		return NULL;
	struct sl_cobj *n = sl_cobj_new(f->pz->z, f->hash, old->status, hb, (size_t)hl,
					old->vary_key, old->vary_len, 0, old->body);
	if (!n)
		return NULL;
	n->etag_off = eo;
	n->etag_len = el;
	n->lm_off = lo;
	n->lm_len = ll;
	apply_verdict(n, &v, sl_mono_ns(), tm.resp_wall);
	return n;
}

/* Store the response whose head is h (GET, origin status): the object, inserted, with
 * the tap set on parser hp. NULL if it is not stored; *shareable says what waiters do. */
static struct sl_cobj *store_response(const struct fctx *f, const struct sl_head *h,
				      const char *base, uint64_t content_length, int has_cl,
				      int *shareable)
{
	struct sl_cache_times tm = {f->req_wall, (int64_t)time(NULL), f->swr, f->sie};
	struct sl_cache_verdict v;
	sl_cache_decide(f->req, f->req_base, h, base, &tm, &v);
	*shareable = v.shareable;
	if (!v.store) {
		sl_log(SL_LOG_DEBUG, "msg=\"not cached\" zone=%s reason=\"%s\"", f->pz->name,
		       v.why);
		return NULL;
	}
	int vn = sl_cache_vary_names(h, base, f->names, SL_CACHE_VARY_BYTES_MAX);
	char vk[SL_CACHE_VARY_KEY_MAX];
	int vkl = vn > 0 ? sl_cache_vary_key(f->req, f->req_base, f->names, (size_t)vn, vk,
					     sizeof(vk))
			 : 0;
	if (vn < 0 || vkl < 0) {
		*shareable = 0;
		return NULL;
	}
	if (has_cl && content_length > f->pz->z->max_object_size) {
		*shareable = 0; /* too big to store: the others fetch it themselves */
		return NULL;
	}
	static __thread char hb[65536];
	uint16_t eo = 0, el = 0, ll = 0;
	uint32_t lo = 0;
	int hl = store_head(h, base, f->status_header, tm.resp_wall, hb, sizeof(hb), &eo, &el, &lo,
			    &ll);
	if (hl < 0)
		return NULL;
	struct sl_cobj *o =
	    sl_cobj_new(f->pz->z, f->hash, h->status, hb, (size_t)hl, vk, (size_t)vkl,
			has_cl ? content_length : UINT64_MAX, NULL);
	if (!o) {
		*shareable = 0; /* no room: the others fetch it themselves */
		return NULL;
	}
	o->etag_off = eo;
	o->etag_len = el;
	o->lm_off = lo;
	o->lm_len = ll;
	apply_verdict(o, &v, sl_mono_ns(), tm.resp_wall);
	if (sl_cache_insert(f->pz->z, f->hash, f->key, f->klen, f->names, vn > 0 ? (size_t)vn : 0,
			    o)) {
		sl_cobj_put(o);
		return NULL;
	}
	if (has_cl && !content_length)
		sl_cbody_finish(o->body);
	return o;
}

int sl_pcache_response(struct sl_session *s)
{
	struct sl_request *r = s->r;
	struct sl_creq *cq = r->cache;
	struct sl_head *h = &r->resp;
	const char *base = r->uin.data;
	int st = h->status;
	if (cq->invalidate) {
		/* RFC 9111 4.4: a successful unsafe request invalidates the target */
		if (st >= 200 && st < 400)
			sl_cache_purge(cq->pz->z, cq->key, cq->klen);
		return 0;
	}
	if (cq->mode != CQ_WRITER && cq->mode != CQ_NOLOCK) {
		if (cq->cc->status_header && cq->label)
			sl_head_append(h, cq->cc->status_header, strlen(cq->cc->status_header),
				       cq->label, strlen(cq->label));
		return 0;
	}
	uint64_t now = sl_mono_ns();
	struct fctx f;
	cq_fctx(s, cq, &f);
	const struct sl_proxy_ops *ops = ops_of(s);
	int veto = ops->response_cache_filter && !(st >= 500 && cq->stale) &&
		   CACHE_PHASE(s, ops->response_cache_filter(s, r->ctx)) == SL_CACHE_NO_STORE;
	if (veto && st == 304 && cq->stale) {
		/* the refreshed object is not stored: this request gets it once */
		struct sl_cobj *n = sl_cobj_ref(cq->stale);
		sl_clock_pass(&cq->pz->lock, &cq->tk);
		atomic_fetch_add(&cq->pz->not_stored, 1);
		return serve(s, cq, n, "REVALIDATED") ? 0 : 1;
	}
	if (st == 304 && cq->stale) {
		struct sl_cobj *n = refresh(&f, cq->stale, h, base);
		if (n) {
			sl_cache_insert(cq->pz->z, cq->hash, cq->key, cq->klen, cq->names,
					cq->names_len, n);
		} else {
			n = sl_cobj_ref(cq->stale); /* not storable as refreshed: serve it once */
		}
		sl_clock_done(&cq->pz->lock, &cq->tk, n);
		atomic_fetch_add(&cq->pz->revalidated, 1);
		return serve(s, cq, n, "REVALIDATED") ? 0 : 1;
	}
	if (st >= 500 && cq->stale && obj_usable_stale(cq->stale, now, 1)) {
		sl_clock_done(&cq->pz->lock, &cq->tk, cq->stale);
		atomic_fetch_add(&cq->pz->stale_errors, 1);
		struct sl_cobj *o = cq->stale;
		cq->stale = NULL;
		return serve(s, cq, o, "STALE") ? 0 : 1;
	}
	int shareable = !veto;
	struct sl_cobj *o = NULL;
	if (!r->is_head_req && !veto)
		o = store_response(&f, h, base, r->up_p.p.content_length, h->info.has_cl,
				   &shareable);
	if (o) {
		sl_clock_done(&cq->pz->lock, &cq->tk, o);
		cq->fill = o;
		if (atomic_load(&o->body->state) == SL_CBODY_FILLING) {
			r->up_p.tap = tap;
			r->up_p.tap_ctx = cq;
		}
	} else {
		atomic_fetch_add(&cq->pz->not_stored, 1);
		if (shareable)
			sl_clock_fail(&cq->pz->lock, &cq->tk, now);
		else
			sl_clock_pass(&cq->pz->lock, &cq->tk);
		if (cq->stale && st < 500)
			sl_cache_remove_obj(cq->pz->z, cq->hash, cq->key, cq->klen, cq->stale);
	}
	if (cq->cc->status_header && cq->label)
		sl_head_append(h, cq->cc->status_header, strlen(cq->cc->status_header), cq->label,
			       strlen(cq->label));
	return 0;
}

void sl_pcache_origin_done(struct sl_session *s)
{
	struct sl_creq *cq = s->r->cache;
	if (!cq->fill)
		return;
	struct sl_cbody *b = cq->fill->body;
	if (!cq->fill_failed && atomic_load(&b->state) == SL_CBODY_FILLING) {
		if (b->expect != UINT64_MAX && atomic_load(&b->len) != b->expect) {
			fill_abort(cq);
			return;
		}
		sl_cbody_finish(b);
	}
	s->r->up_p.tap = NULL;
	sl_cobj_put(cq->fill);
	cq->fill = NULL;
}

int sl_pcache_error(struct sl_session *s, int status)
{
	struct sl_creq *cq = s->r->cache;
	if (cq->mode == CQ_SERVE || !cq->stale || !obj_usable_stale(cq->stale, sl_mono_ns(), 1))
		return 0;
	if (cq->tk.e)
		sl_clock_done(&cq->pz->lock, &cq->tk, cq->stale);
	atomic_fetch_add(&cq->pz->stale_errors, 1);
	struct sl_cobj *o = cq->stale;
	cq->stale = NULL;
	s->r->up_p.tap = NULL;
	return serve(s, cq, o, "STALE") == 0;
}

void sl_pcache_release(struct sl_session *s)
{
	struct sl_request *r = s->r;
	struct sl_creq *cq = r->cache;
	timer_off(cq);
	uint64_t now = sl_mono_ns();
	if (cq->mode == CQ_WAIT)
		sl_clock_leave(&cq->pz->lock, &cq->xw, now);
	else
		sl_xw_cancel(&cq->xw); /* waiting for more body bytes */
	if (cq->tk.e)
		sl_clock_fail(&cq->pz->lock, &cq->tk, now); /* gone before it had a response */
	r->up_p.tap = NULL;
	fill_abort(cq);
	release_hbuf(s, cq);
	sl_cobj_put(cq->obj);
	sl_cobj_put(cq->stale);
	r->cache = NULL;
	cq_put(cq);
}

/* ---- stale-while-revalidate: one background request per key ----
 *
 * A client got the stale object at once; the refresh is a request of the cache's own,
 * on the same worker: it holds the key's lock (so there is one per key, and a client
 * arriving meanwhile still gets the stale copy), asks the proxy for a peer as the
 * client's request would have, sends the client's end-to-end headers with the stored
 * validators on a new connection (Connection: close), and stores what comes back (a 304
 * refreshes, a storable 200 replaces). It is bounded by lock.age. */

#define BG_IN 65536
#define BG_REQ 16384

struct bgf {
	struct bgf *prev, *next; /* the worker's list (freed at worker exit) */
	struct sl_pzone *pz;
	struct sl_worker *w;
	struct sl_clock_ticket tk;
	struct sl_cobj *stale, *fill;
	int fd;
	struct event ev, tev;
	uint8_t ev_on, connected, head_done, failed;
	uint32_t swr, sie;
	char *status_header;
	int64_t req_wall;
	uint64_t hash;
	uint32_t klen, names_len;
	char names[SL_CACHE_VARY_BYTES_MAX];
	struct sl_http_parser rp, hp;
	struct sl_head rq, head;
	size_t req_len, req_off, in_len, in_parsed;
	char req[BG_REQ];
	char in[BG_IN];
	char key[SL_CACHE_KEY_MAX];
};

static __thread struct bgf *bg_list;

static void bg_fctx(struct bgf *g, struct fctx *f)
{
	f->pz = g->pz;
	f->hash = g->hash;
	f->key = g->key;
	f->klen = g->klen;
	f->swr = g->swr;
	f->sie = g->sie;
	f->status_header = g->status_header;
	f->req_wall = g->req_wall;
	f->req = &g->rq;
	f->req_base = g->req;
	f->names = g->names;
	f->names_len = &g->names_len;
}

static void bg_free(struct bgf *g)
{
	if (g->ev_on)
		event_del(&g->ev);
	event_del(&g->tev);
	if (g->fd >= 0)
		close(g->fd);
	uint64_t now = sl_mono_ns();
	if (g->tk.e)
		sl_clock_fail(&g->pz->lock, &g->tk, now);
	if (g->fill) {
		if (atomic_load(&g->fill->body->state) == SL_CBODY_FILLING) {
			sl_cbody_abort(g->fill->body);
			sl_cache_remove_obj(g->pz->z, g->hash, g->key, g->klen, g->fill);
		}
		sl_cobj_put(g->fill);
	}
	sl_cobj_put(g->stale);
	if (g->prev)
		g->prev->next = g->next;
	else
		bg_list = g->next;
	if (g->next)
		g->next->prev = g->prev;
	free(g->status_header);
	free(g);
}

static void bg_tap(void *ctx, const char *at, size_t len)
{
	struct bgf *g = ctx;
	if (g->fill && !g->failed && sl_cbody_append(g->fill->body, at, len))
		g->failed = 1;
}

/* The response head arrived: 1 to read its body into g->fill, 0 done, -1 failed. */
static int bg_head(struct bgf *g)
{
	struct fctx f;
	bg_fctx(g, &f);
	const char *why;
	if (sl_head_analyze(&g->head, g->in, 0, &why))
		return -1;
	int st = g->head.status;
	if (st == 304) {
		if (!g->stale)
			return -1; /* no validators were sent: an origin that answers 304 anyway */
		struct sl_cobj *n = refresh(&f, g->stale, &g->head, g->in);
		if (!n)
			return -1;
		sl_cache_insert(g->pz->z, g->hash, g->key, g->klen, g->names, g->names_len, n);
		sl_clock_done(&g->pz->lock, &g->tk, n);
		sl_cobj_put(n);
		atomic_fetch_add(&g->pz->revalidated, 1);
		return 0;
	}
	int shareable;
	struct sl_cobj *o = store_response(&f, &g->head, g->in, g->hp.p.content_length,
					   g->head.info.has_cl, &shareable);
	if (!o) {
		/* an error keeps the stale copy (stale-if-error decides later); anything else
		 * the origin says is no longer cacheable removes it */
		if (st < 500 && g->stale)
			sl_cache_remove_obj(g->pz->z, g->hash, g->key, g->klen, g->stale);
		if (!shareable)
			sl_clock_pass(&g->pz->lock, &g->tk); /* waiters go to the origin themselves */
		return st < 500 ? 0 : -1;
	}
	sl_clock_done(&g->pz->lock, &g->tk, o);
	g->fill = o;
	if (atomic_load(&o->body->state) != SL_CBODY_FILLING)
		return 0;
	g->hp.tap = bg_tap;
	g->hp.tap_ctx = g;
	return 1;
}

static void bg_done_ok(struct bgf *g)
{
	if (g->fill && !g->failed && atomic_load(&g->fill->body->state) == SL_CBODY_FILLING) {
		struct sl_cbody *b = g->fill->body;
		if (b->expect == UINT64_MAX || atomic_load(&b->len) == b->expect)
			sl_cbody_finish(b);
	}
	if (g->stale)
		atomic_fetch_add(&g->pz->bg_refreshes, 1);
	bg_free(g);
}

static void bg_event(evutil_socket_t fd, short what, void *arg)
{
	struct bgf *g = arg;
	if (!g->connected) {
		int err = 0;
		socklen_t el = sizeof(err);
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) || err)
			goto fail;
		g->connected = 1;
	}
	if (g->req_off < g->req_len) {
		ssize_t n = send(fd, g->req + g->req_off, g->req_len - g->req_off, MSG_NOSIGNAL);
		if (n < 0 && errno != EAGAIN && errno != EINTR)
			goto fail;
		if (n > 0)
			g->req_off += (size_t)n;
		if (g->req_off < g->req_len)
			return;
		event_del(&g->ev);
		event_assign(&g->ev, g->w->base, fd, EV_READ | EV_PERSIST, bg_event, g);
		event_add(&g->ev, NULL);
		return;
	}
	for (;;) {
		if (g->in_len == sizeof(g->in)) {
			if (!g->head_done)
				goto fail; /* a head that does not fit */
			g->in_len = g->in_parsed = 0;
		}
		ssize_t n = recv(fd, g->in + g->in_len, sizeof(g->in) - g->in_len, 0);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n < 0)
			goto fail;
		if (n == 0) {
			if (g->head_done && !g->hp.message_done && !g->head.info.has_cl &&
			    !g->head.info.chunked) {
				llhttp_finish(&g->hp.p); /* close-delimited */
				bg_done_ok(g);
				return;
			}
			goto fail;
		}
		g->in_len += (size_t)n;
		while (g->in_parsed < g->in_len) {
			size_t used;
			llhttp_errno_t e = sl_http_execute(&g->hp, g->in, g->in + g->in_parsed,
							   g->in_len - g->in_parsed, &used);
			g->in_parsed += used;
			if (e != HPE_OK && e != HPE_PAUSED)
				goto fail;
			if (g->hp.headers_done && !g->head_done) {
				if (g->head.status < 200)
					goto fail; /* 1xx to a plain GET: not worth handling */
				g->head_done = 1;
				int rc = bg_head(g);
				if (rc < 0)
					goto fail;
				if (rc == 0) {
					bg_done_ok(g);
					return;
				}
			}
			if (g->hp.message_done) {
				bg_done_ok(g);
				return;
			}
			if (g->failed)
				goto fail;
			if (e == HPE_OK)
				break;
		}
		if (g->head_done && g->in_parsed == g->in_len)
			g->in_len = g->in_parsed = 0; /* body bytes are in the store already */
	}
fail:
	sl_log(SL_LOG_INFO, "msg=\"background cache refresh failed\" zone=%s", g->pz->name);
	bg_free(g);
}

static void bg_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct bgf *g = arg;
	sl_log(SL_LOG_INFO, "msg=\"background cache refresh timed out\" zone=%s", g->pz->name);
	bg_free(g);
}

static int bg_request(struct bgf *g, struct sl_session *s)
{
	struct sl_request *r = s->r;
	const struct sl_head *h = &r->req;
	const char *base = s->in.data;
	static const char *const skip[] = {"if-none-match", "if-modified-since", "range",
					   "if-range",	    "if-match",		 "if-unmodified-since",
					   "content-length", "expect"};
	struct sl_out o;
	sl_out_init(&o, g->req, sizeof(g->req));
	sl_out_str(&o, "GET ");
	sl_out_put(&o, base + h->path_off, h->path_len);
	sl_out_str(&o, " HTTP/1.1\r\n");
	for (unsigned int i = 0; i < h->n; i++) {
		if (h->h[i].flags & (SL_HDR_REMOVED | SL_HDR_HOP))
			continue;
		const char *n = sl_hdr_name(h, base, i);
		if (name_in(n, h->h[i].name_len, skip, sizeof(skip) / sizeof(skip[0])))
			continue;
		sl_out_put(&o, n, h->h[i].name_len);
		sl_out_str(&o, ": ");
		sl_out_put(&o, sl_hdr_value(h, base, i), h->h[i].value_len);
		sl_out_str(&o, "\r\n");
	}
	const struct sl_cobj *st = g->stale;
	if (st && st->etag_len) {
		sl_out_str(&o, "If-None-Match: ");
		sl_out_put(&o, st->head + st->etag_off, st->etag_len);
		sl_out_str(&o, "\r\n");
	}
	if (st && st->lm_len) {
		sl_out_str(&o, "If-Modified-Since: ");
		sl_out_put(&o, st->head + st->lm_off, st->lm_len);
		sl_out_str(&o, "\r\n");
	}
	sl_out_str(&o, "Connection: close\r\n\r\n");
	if (!o.ok)
		return -1;
	g->req_len = o.len;
	/* parsed back: the policy reads the request it answers (Authorization, Vary) */
	sl_http_parser_init(&g->rp, 1, &g->rq);
	sl_head_reset(&g->rq, SL_HDR_MAX, BG_REQ);
	size_t used;
	llhttp_errno_t e = sl_http_execute(&g->rp, g->req, g->req, g->req_len, &used);
	const char *why;
	if ((e != HPE_OK && e != HPE_PAUSED) || !g->rp.headers_done ||
	    sl_head_analyze(&g->rq, g->req, 1, &why))
		return -1;
	return 0;
}

/* Start a background GET for cq's key holding tk (taken over: the fetch fails, passes or
 * completes it, or it is failed here). 0 once the request is on its way, -1 if it could
 * not start (the ticket has been failed: the role passed on). */
static int bg_start(struct sl_session *s, struct sl_creq *cq, struct sl_clock_ticket tk)
{
	struct sl_request *r = s->r;
	uint64_t now = sl_mono_ns();
	struct sl_peer peer;
	memset(&peer, 0, sizeof(peer));
	const struct sl_proxy_ops *ops = s->w->d->ops;
	struct bgf *g = calloc(1, sizeof(*g));
	int bad = !g || ops->upstream_peer(s, r->ctx, &peer) || peer.tls;
	/* that pick was for the fetch: the request's own (a HEAD whose fetch fails goes to
	 * the origin itself) starts afresh, with nothing counted as tried or in flight */
	sl_lb_req_end(&r->lb);
	if (bad) {
		/* TLS upstreams: the background request speaks plain TCP only */
		free(g);
		sl_clock_fail(&cq->pz->lock, &tk, now);
		return -1;
	}
	g->fd = -1;
	g->pz = cq->pz;
	g->w = s->w;
	g->tk = tk;
	g->stale = cq->stale ? sl_cobj_ref(cq->stale) : NULL;
	g->swr = cq->cc->swr / 1000;
	g->sie = cq->cc->sie / 1000;
	g->status_header = cq->cc->status_header ? strdup(cq->cc->status_header) : NULL;
	g->req_wall = (int64_t)time(NULL);
	g->hash = cq->hash;
	g->klen = cq->klen;
	memcpy(g->key, cq->key, cq->klen);
	g->next = bg_list;
	if (bg_list)
		bg_list->prev = g;
	bg_list = g;
	evtimer_assign(&g->tev, s->w->base, bg_timeout, g);
	sl_http_parser_init(&g->hp, 0, &g->head);
	sl_head_reset(&g->head, SL_HDR_MAX, 0);
	if (bg_request(g, s) < 0)
		goto fail;
	g->fd = sl_net_tcp_socket(peer.addr.ss_family);
	if (g->fd < 0)
		goto fail;
	if (connect(g->fd, (struct sockaddr *)&peer.addr, peer.addrlen) < 0 &&
	    errno != EINPROGRESS)
		goto fail;
	event_assign(&g->ev, s->w->base, g->fd, EV_WRITE | EV_PERSIST, bg_event, g);
	event_add(&g->ev, NULL);
	g->ev_on = 1;
	unsigned int ms = cq->cc->lock_age < 1000 ? 1000 : cq->cc->lock_age;
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	evtimer_add(&g->tev, &tv);
	return 0;
fail:
	bg_free(g);
	return -1;
}

static void bg_refresh(struct sl_session *s, struct sl_creq *cq)
{
	struct sl_clock_ticket tk;
	struct sl_xwaiter probe = {.mbox = mbox_of(s->w), .wake = NULL};
	uint64_t now = sl_mono_ns();
	if (!probe.mbox)
		return;
	int rc = sl_clock_acquire(&cq->pz->lock, cq->hash, cq->key, cq->klen, now,
				  (uint64_t)cq->cc->lock_age * 1000000ull, &probe, &tk);
	if (rc == SL_CLOCK_WAIT) {
		sl_clock_leave(&cq->pz->lock, &probe, now); /* someone refreshes it already */
		return;
	}
	if (rc != SL_CLOCK_WRITER)
		return;
	bg_start(s, cq, tk);
}

/* A HEAD that holds the key's lock (acquired, or promoted after a failed writer): the
 * object is fetched with a GET of the cache's own and stored, as nginx's
 * proxy_cache_convert_head does, and the HEAD waits for it like any waiter. Returns 1
 * if it now waits, 0 if it goes to the origin as HEAD, uncached (the fetch could not
 * start: a TLS upstream, no memory; the lock has passed on). */
static int head_fill(struct sl_session *s, struct sl_creq *cq)
{
	struct sl_clock_ticket tk = cq->tk;
	cq->tk.e = NULL;
	if (bg_start(s, cq, tk) < 0)
		return 0;
	/* the fetch holds the key now and runs on this thread, so it cannot have ended:
	 * this request queues behind it */
	int rc = sl_clock_acquire(&cq->pz->lock, cq->hash, cq->key, cq->klen, sl_mono_ns(),
				  (uint64_t)cq->cc->lock_age * 1000000ull, &cq->xw, &cq->tk);
	if (rc == SL_CLOCK_WAIT)
		return 1;
	if (rc == SL_CLOCK_WRITER)
		sl_clock_fail(&cq->pz->lock, &cq->tk, sl_mono_ns());
	return 0;
}

static void bg_free_all(void)
{
	while (bg_list)
		bg_free(bg_list);
}
