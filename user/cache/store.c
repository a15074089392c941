/* The zone store: sharded index, S3-FIFO eviction, byte accounting, bodies readable
 * while they fill (see store.h for the rules). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "cache/store.h"

/* Index entry: one per key, holding its variants. */
struct sl_centry {
	struct sl_centry *hnext;
	struct sl_centry *qprev, *qnext;
	uint64_t hash;
	uint8_t queue;	     /* Q_SMALL / Q_MAIN */
	_Atomic uint8_t freq; /* hits since it last moved, saturating at FREQ_MAX */
	uint16_t n_var;
	uint16_t names_len;
	uint32_t klen;
	size_t bytes;	/* charged for the entry and its variants when they were stored */
	size_t charged; /* the entry allocation itself */
	char *names;	/* normalized Vary names (NUL-separated), NULL when none */
	size_t names_charged;
	struct sl_cobj **var; /* max_variants slots, in the same allocation */
	char *key;	      /* ditto */
};

enum { Q_NONE = 0, Q_SMALL, Q_MAIN };
#define FREQ_MAX 3
#define CHUNK_UNKNOWN (16u << 10) /* chunk size when the length is not known */
#define CHUNK_MAX (256u << 10)
#define CHARGE_TRIES 64 /* evictions one charge may cause before it gives up */

static size_t cost(size_t n)
{
	return n + SL_CACHE_ALLOC_OVERHEAD;
}

/* SipHash-2-4: keys come from clients (their URIs), so the hash is keyed per zone. */
#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                            \
	do {                                                                                \
		v0 += v1;                                                                   \
		v1 = ROTL(v1, 13);                                                          \
		v1 ^= v0;                                                                   \
		v0 = ROTL(v0, 32);                                                          \
		v2 += v3;                                                                   \
		v3 = ROTL(v3, 16);                                                          \
		v3 ^= v2;                                                                   \
		v0 += v3;                                                                   \
		v3 = ROTL(v3, 21);                                                          \
		v3 ^= v0;                                                                   \
		v2 += v1;                                                                   \
		v1 = ROTL(v1, 17);                                                          \
		v1 ^= v2;                                                                   \
		v2 = ROTL(v2, 32);                                                          \
	} while (0)

uint64_t sl_cache_hash(const struct sl_cache_zone *z, const char *key, size_t len)
{
	uint64_t k0 = z->sip[0], k1 = z->sip[1];
	uint64_t v0 = 0x736f6d6570736575ull ^ k0, v1 = 0x646f72616e646f6dull ^ k1;
	uint64_t v2 = 0x6c7967656e657261ull ^ k0, v3 = 0x7465646279746573ull ^ k1;
	const unsigned char *p = (const unsigned char *)key;
	size_t left = len;
	while (left >= 8) {
		uint64_t m;
		memcpy(&m, p, 8);
		v3 ^= m;
		SIPROUND;
		SIPROUND;
		v0 ^= m;
		p += 8;
		left -= 8;
	}
	uint64_t b = (uint64_t)len << 56;
	for (size_t i = 0; i < left; i++)
		b |= (uint64_t)p[i] << (8 * i);
	v3 ^= b;
	SIPROUND;
	SIPROUND;
	v0 ^= b;
	v2 ^= 0xff;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	return v0 ^ v1 ^ v2 ^ v3;
}

static uint32_t pow2_at_least(uint64_t n)
{
	uint32_t p = 1;
	while (p < n && p < (1u << 30))
		p <<= 1;
	return p;
}

struct sl_cache_zone *sl_cache_zone_new(const struct sl_cache_zone_params *p)
{
	if (!p->max_size || !p->shards || p->shards > 256 || !p->max_object_size) {
		errno = EINVAL;
		return NULL;
	}
	struct sl_cache_zone *z = calloc(1, sizeof(*z));
	if (!z)
		return NULL;
	z->name = strdup(p->name ? p->name : "");
	z->max_size = p->max_size;
	z->max_object_size = p->max_object_size;
	z->max_variants = p->max_variants ? p->max_variants : 8;
	if (z->max_variants > 64)
		z->max_variants = 64;
	z->nshards = pow2_at_least(p->shards);
	/* buckets: about one per 4 KiB of capacity (chains stay short for objects of
	 * that size and above; smaller ones make longer chains, never more memory) */
	uint64_t per = p->max_size / 4096 / z->nshards;
	uint32_t nb = pow2_at_least(per < 16 ? 16 : per);
	if (nb > (1u << 22))
		nb = 1u << 22;
	z->sh = calloc(z->nshards, sizeof(*z->sh));
	if (!z->name || !z->sh)
		goto fail;
	z->fixed = cost(sizeof(*z)) + cost(z->nshards * sizeof(*z->sh));
	for (unsigned int i = 0; i < z->nshards; i++) {
		struct sl_cache_shard *s = &z->sh[i];
		pthread_mutex_init(&s->mu, NULL);
		s->nb = nb;
		s->ng = nb;
		s->b = calloc(nb, sizeof(*s->b));
		s->ghost = calloc(s->ng, sizeof(*s->ghost));
		if (!s->b || !s->ghost)
			goto fail;
		z->fixed += cost(nb * sizeof(*s->b)) + cost(s->ng * sizeof(*s->ghost));
	}
	if (z->fixed >= z->max_size) {
		errno = EINVAL;
		goto fail;
	}
	atomic_store(&z->bytes, z->fixed);
	if (getrandom(z->sip, sizeof(z->sip), GRND_NONBLOCK) != sizeof(z->sip)) {
		/* no entropy yet (early boot): fall back to addresses and time */
		z->sip[0] = (uint64_t)(uintptr_t)z ^ 0x9e3779b97f4a7c15ull;
		z->sip[1] = (uint64_t)(uintptr_t)&z ^ (uint64_t)time(NULL);
	}
	return z;
fail:
	sl_cache_zone_free(z);
	if (!errno)
		errno = ENOMEM;
	return NULL;
}

static void entry_release(struct sl_cache_zone *z, struct sl_centry *e);

void sl_cache_zone_free(struct sl_cache_zone *z)
{
	if (!z)
		return;
	if (z->sh) {
		for (unsigned int i = 0; i < z->nshards; i++) {
			struct sl_cache_shard *s = &z->sh[i];
			if (s->b)
				for (uint32_t j = 0; j < s->nb; j++)
					while (s->b[j]) {
						struct sl_centry *e = s->b[j];
						s->b[j] = e->hnext;
						entry_release(z, e);
					}
			free(s->b);
			free(s->ghost);
			pthread_mutex_destroy(&s->mu);
		}
	}
	free(z->sh);
	free(z->name);
	free(z);
}

void sl_cache_zone_stats(struct sl_cache_zone *z, struct sl_cache_stats *st)
{
	st->bytes = atomic_load(&z->bytes);
	st->max_bytes = z->max_size;
	st->objects = atomic_load(&z->objects);
	st->entries = atomic_load(&z->entries);
	st->evictions = atomic_load(&z->evictions);
	st->inserts = atomic_load(&z->inserts);
	st->purged = atomic_load(&z->purged);
	st->charge_failures = atomic_load(&z->charge_failures);
}

/* --- queues (shard lock held) --- */

static void q_del(struct sl_cache_shard *s, struct sl_centry *e)
{
	struct sl_centry **head = e->queue == Q_SMALL ? &s->s_head : &s->m_head;
	struct sl_centry **tail = e->queue == Q_SMALL ? &s->s_tail : &s->m_tail;
	if (e->qprev)
		e->qprev->qnext = e->qnext;
	else
		*head = e->qnext;
	if (e->qnext)
		e->qnext->qprev = e->qprev;
	else
		*tail = e->qprev;
	if (e->queue == Q_SMALL)
		s->s_bytes -= e->bytes;
	else
		s->m_bytes -= e->bytes;
	e->qprev = e->qnext = NULL;
	e->queue = Q_NONE;
}

static void q_push(struct sl_cache_shard *s, struct sl_centry *e, int q)
{
	struct sl_centry **head = q == Q_SMALL ? &s->s_head : &s->m_head;
	struct sl_centry **tail = q == Q_SMALL ? &s->s_tail : &s->m_tail;
	e->queue = (uint8_t)q;
	e->qprev = NULL;
	e->qnext = *head;
	if (*head)
		(*head)->qprev = e;
	else
		*tail = e;
	*head = e;
	if (q == Q_SMALL)
		s->s_bytes += e->bytes;
	else
		s->m_bytes += e->bytes;
}

static void resize_entry(struct sl_cache_shard *s, struct sl_centry *e, size_t bytes)
{
	if (e->queue == Q_SMALL)
		s->s_bytes = s->s_bytes - e->bytes + bytes;
	else if (e->queue == Q_MAIN)
		s->m_bytes = s->m_bytes - e->bytes + bytes;
	e->bytes = bytes;
}

static uint32_t ghost_fp(uint64_t h)
{
	return (uint32_t)(h >> 32) | 1;
}

static void h_del(struct sl_cache_shard *s, struct sl_centry *e)
{
	struct sl_centry **pp = &s->b[e->hash & (s->nb - 1)];
	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	e->hnext = NULL;
}

/* S3-FIFO victim (lock held): the small queue's tail moves to main if it was hit since
 * insertion, else it is the victim (remembered in the ghost table); main's tail is
 * reinserted while its counter lasts. Terminates: each step lowers a counter or moves
 * an entry from small to main. */
static struct sl_centry *pick_victim(struct sl_cache_shard *s)
{
	for (;;) {
		size_t total = s->s_bytes + s->m_bytes;
		if (s->s_tail && (!s->m_tail || s->s_bytes * 10 >= total)) {
			struct sl_centry *e = s->s_tail;
			q_del(s, e);
			if (atomic_load_explicit(&e->freq, memory_order_relaxed) >= 1) {
				atomic_store_explicit(&e->freq, 0, memory_order_relaxed);
				q_push(s, e, Q_MAIN);
				continue;
			}
			s->ghost[e->hash & (s->ng - 1)] = ghost_fp(e->hash);
			return e;
		}
		if (!s->m_tail)
			return NULL;
		struct sl_centry *e = s->m_tail;
		q_del(s, e);
		uint8_t f = atomic_load_explicit(&e->freq, memory_order_relaxed);
		if (f > 0) {
			atomic_store_explicit(&e->freq, f - 1, memory_order_relaxed);
			q_push(s, e, Q_MAIN);
			continue;
		}
		return e;
	}
}

static int evict_one(struct sl_cache_zone *z, struct sl_cache_shard *s)
{
	pthread_mutex_lock(&s->mu);
	struct sl_centry *e = pick_victim(s);
	if (e)
		h_del(s, e);
	pthread_mutex_unlock(&s->mu);
	if (!e)
		return 0;
	atomic_fetch_add(&z->evictions, 1);
	atomic_fetch_sub(&z->entries, 1);
	entry_release(z, e);
	return 1;
}

int sl_cache_charge(struct sl_cache_zone *z, size_t n)
{
	if (n > z->max_size)
		goto fail;
	unsigned int empty_run = 0;
	for (unsigned int tries = 0;; tries++) {
		size_t cur = atomic_load_explicit(&z->bytes, memory_order_relaxed);
		while (cur + n <= z->max_size) {
			if (atomic_compare_exchange_weak_explicit(&z->bytes, &cur, cur + n,
								  memory_order_relaxed,
								  memory_order_relaxed))
				return 0;
		}
		if (tries >= CHARGE_TRIES || empty_run >= z->nshards)
			break;
		unsigned int i = atomic_fetch_add_explicit(&z->evict_cursor, 1,
							   memory_order_relaxed) &
				 (z->nshards - 1);
		if (evict_one(z, &z->sh[i]))
			empty_run = 0;
		else
			empty_run++;
	}
fail:
	atomic_fetch_add(&z->charge_failures, 1);
	return -ENOSPC;
}

void sl_cache_uncharge(struct sl_cache_zone *z, size_t n)
{
	atomic_fetch_sub_explicit(&z->bytes, n, memory_order_relaxed);
}

/* --- bodies and objects --- */

static struct sl_cbody *body_new(struct sl_cache_zone *z, pthread_mutex_t *mu, uint64_t expect)
{
	size_t c = cost(sizeof(struct sl_cbody));
	if (sl_cache_charge(z, c) < 0)
		return NULL;
	struct sl_cbody *b = calloc(1, sizeof(*b));
	if (!b) {
		sl_cache_uncharge(z, c);
		return NULL;
	}
	atomic_init(&b->ref, 1);
	b->expect = expect;
	b->charged = c;
	b->zone = z;
	b->mu = mu;
	if (expect != UINT64_MAX && expect) {
		/* the whole body now: a fill with a known length never runs out of room
		 * halfway, where readers already streaming it would be cut */
		size_t cc = cost(sizeof(struct sl_cchunk) + expect);
		struct sl_cchunk *ch = NULL;
		if (expect > UINT32_MAX || sl_cache_charge(z, cc) < 0) {
			sl_cache_uncharge(z, c);
			free(b);
			return NULL;
		}
		if (!(ch = malloc(sizeof(*ch) + expect))) {
			sl_cache_uncharge(z, c + cc);
			free(b);
			return NULL;
		}
		ch->next = NULL;
		ch->cap = (uint32_t)expect;
		b->first = b->tail = ch;
		b->charged += cc;
	}
	return b;
}

static void body_put(struct sl_cbody *b)
{
	if (atomic_fetch_sub_explicit(&b->ref, 1, memory_order_acq_rel) != 1)
		return;
	struct sl_cchunk *c = b->first;
	while (c) {
		struct sl_cchunk *n = c->next;
		free(c);
		c = n;
	}
	sl_cache_uncharge(b->zone, b->charged);
	free(b);
}

struct sl_cobj *sl_cobj_new(struct sl_cache_zone *z, uint64_t hash, int status, const char *head,
			    size_t head_len, const char *vary_key, size_t vary_len, uint64_t expect,
			    struct sl_cbody *body)
{
	if (!body && expect != UINT64_MAX && expect > z->max_object_size) {
		errno = EFBIG;
		return NULL;
	}
	if (head_len > UINT32_MAX / 2 || vary_len > SL_CACHE_VARY_KEY_MAX) {
		errno = EFBIG;
		return NULL;
	}
	size_t c = cost(sizeof(struct sl_cobj) + head_len + vary_len + 1);
	if (sl_cache_charge(z, c) < 0) {
		errno = ENOSPC;
		return NULL;
	}
	struct sl_cobj *o = calloc(1, sizeof(*o) + head_len + vary_len + 1);
	if (!o) {
		sl_cache_uncharge(z, c);
		errno = ENOMEM;
		return NULL;
	}
	o->head = (char *)(o + 1);
	o->vary_key = o->head + head_len;
	memcpy(o->head, head, head_len);
	memcpy(o->vary_key, vary_key, vary_len);
	o->head_len = (uint32_t)head_len;
	o->vary_len = (uint32_t)vary_len;
	o->status = status;
	o->zone = z;
	o->charged = c;
	atomic_init(&o->ref, 1);
	if (body) {
		atomic_fetch_add(&body->ref, 1);
		o->body = body;
	} else {
		o->body = body_new(z, &z->sh[hash & (z->nshards - 1)].mu, expect);
		if (!o->body) {
			sl_cache_uncharge(z, c);
			free(o);
			errno = ENOSPC;
			return NULL;
		}
	}
	atomic_fetch_add(&z->objects, 1);
	return o;
}

void sl_cobj_put(struct sl_cobj *o)
{
	if (!o || atomic_fetch_sub_explicit(&o->ref, 1, memory_order_acq_rel) != 1)
		return;
	struct sl_cache_zone *z = o->zone;
	body_put(o->body);
	atomic_fetch_sub(&z->objects, 1);
	sl_cache_uncharge(z, o->charged);
	free(o);
}

static void wake_readers(struct sl_cbody *b)
{
	pthread_mutex_lock(b->mu);
	while (sl_xw_post_first(&b->readers, 0, NULL, 0)) {
	}
	pthread_mutex_unlock(b->mu);
}

int sl_cbody_append(struct sl_cbody *b, const char *data, size_t len)
{
	struct sl_cache_zone *z = b->zone;
	uint64_t have = atomic_load_explicit(&b->len, memory_order_relaxed);
	if (len > z->max_object_size || have + len > z->max_object_size)
		return -EFBIG;
	size_t done = 0;
	while (done < len) {
		if (!b->tail || b->tail_used == b->tail->cap) {
			uint64_t want;
			if (b->expect != UINT64_MAX && b->expect > have + done)
				want = b->expect - (have + done);
			else
				want = CHUNK_UNKNOWN;
			if (want > CHUNK_MAX)
				want = CHUNK_MAX;
			if (want < len - done && b->expect != UINT64_MAX)
				want = len - done; /* more than announced: the parser forbids it */
			size_t c = cost(sizeof(struct sl_cchunk) + want);
			if (sl_cache_charge(z, c) < 0)
				return -ENOSPC;
			struct sl_cchunk *ch = malloc(sizeof(*ch) + want);
			if (!ch) {
				sl_cache_uncharge(z, c);
				return -ENOSPC;
			}
			ch->next = NULL;
			ch->cap = (uint32_t)want;
			b->charged += c;
			if (b->tail)
				b->tail->next = ch;
			else
				b->first = ch;
			b->tail = ch;
			b->tail_used = 0;
		}
		size_t n = b->tail->cap - b->tail_used;
		if (n > len - done)
			n = len - done;
		memcpy(b->tail->data + b->tail_used, data + done, n);
		b->tail_used += (uint32_t)n;
		done += n;
	}
	/* publish: readers see the bytes (and the chunk links) once they see the length */
	atomic_store_explicit(&b->len, have + len, memory_order_release);
	wake_readers(b);
	return 0;
}

void sl_cbody_finish(struct sl_cbody *b)
{
	atomic_store_explicit(&b->state, SL_CBODY_COMPLETE, memory_order_release);
	wake_readers(b);
}

void sl_cbody_abort(struct sl_cbody *b)
{
	atomic_store_explicit(&b->state, SL_CBODY_ABORTED, memory_order_release);
	wake_readers(b);
}

size_t sl_cread_peek(struct sl_cread *r, struct sl_cbody *b, const char **p)
{
	uint64_t avail = atomic_load_explicit(&b->len, memory_order_acquire);
	if (r->off >= avail)
		return 0;
	if (!r->c) {
		r->c = b->first;
		r->coff = 0;
	}
	if (r->coff == r->c->cap) {
		r->c = r->c->next;
		r->coff = 0;
	}
	uint64_t n = r->c->cap - r->coff;
	if (n > avail - r->off)
		n = avail - r->off;
	*p = r->c->data + r->coff;
	return (size_t)n;
}

void sl_cread_skip(struct sl_cread *r, size_t n)
{
	r->coff += (uint32_t)n;
	r->off += n;
}

void sl_cread_seek(struct sl_cread *r, struct sl_cbody *b, uint64_t off)
{
	r->c = b->first;
	r->coff = 0;
	r->off = 0;
	while (r->c && off - r->off >= r->c->cap && r->c->next) {
		r->off += r->c->cap;
		r->c = r->c->next;
	}
	if (r->c) {
		r->coff = (uint32_t)(off - r->off);
		r->off = off;
	}
}

int sl_cbody_wait(struct sl_cbody *b, const struct sl_cread *r, struct sl_xwaiter *w)
{
	pthread_mutex_lock(b->mu);
	int now = atomic_load_explicit(&b->len, memory_order_acquire) > r->off ||
		  atomic_load_explicit(&b->state, memory_order_acquire) != SL_CBODY_FILLING;
	if (!now)
		sl_xw_add(&b->readers, b->mu, w);
	pthread_mutex_unlock(b->mu);
	return now;
}

/* --- index --- */

static struct sl_centry *h_find(struct sl_cache_shard *s, uint64_t hash, const char *key,
				size_t klen)
{
	for (struct sl_centry *e = s->b[hash & (s->nb - 1)]; e; e = e->hnext)
		if (e->hash == hash && e->klen == klen && !memcmp(e->key, key, klen))
			return e;
	return NULL;
}

static void entry_release(struct sl_cache_zone *z, struct sl_centry *e)
{
	for (unsigned int i = 0; i < e->n_var; i++)
		sl_cobj_put(e->var[i]);
	if (e->names) {
		free(e->names);
		sl_cache_uncharge(z, e->names_charged);
	}
	sl_cache_uncharge(z, e->charged);
	free(e);
}

struct sl_cobj *sl_cache_lookup(struct sl_cache_zone *z, uint64_t hash, const char *key,
				size_t klen, sl_cache_vary_fn vary_fn, void *ctx)
{
	struct sl_cache_shard *s = &z->sh[hash & (z->nshards - 1)];
	char vk[SL_CACHE_VARY_KEY_MAX];
	struct sl_cobj *o = NULL;
	pthread_mutex_lock(&s->mu);
	struct sl_centry *e = h_find(s, hash, key, klen);
	if (!e)
		goto out;
	int n = 0;
	if (e->names_len) {
		n = vary_fn ? vary_fn(ctx, e->names, e->names_len, vk, sizeof(vk)) : -1;
		if (n < 0)
			goto out;
	}
	for (unsigned int i = 0; i < e->n_var; i++) {
		struct sl_cobj *v = e->var[i];
		if (v->vary_len == (uint32_t)n && !memcmp(v->vary_key, vk, (size_t)n)) {
			o = sl_cobj_ref(v);
			uint8_t f = atomic_load_explicit(&e->freq, memory_order_relaxed);
			if (f < FREQ_MAX)
				atomic_store_explicit(&e->freq, f + 1, memory_order_relaxed);
			break;
		}
	}
out:
	pthread_mutex_unlock(&s->mu);
	return o;
}

static size_t obj_bytes(const struct sl_cobj *o)
{
	return o->charged + o->body->charged;
}

int sl_cache_insert(struct sl_cache_zone *z, uint64_t hash, const char *key, size_t klen,
		    const char *vary_names, size_t names_len, struct sl_cobj *o)
{
	if (klen > SL_CACHE_KEY_MAX || names_len > SL_CACHE_VARY_BYTES_MAX)
		return -E2BIG;
	struct sl_cache_shard *s = &z->sh[hash & (z->nshards - 1)];
	/* allocate outside the lock what the insert may need; charging may evict */
	size_t esz = sizeof(struct sl_centry) + z->max_variants * sizeof(void *) + klen;
	size_t ec = cost(esz);
	size_t nc = names_len ? cost(names_len) : 0;
	if (sl_cache_charge(z, ec + nc) < 0)
		return -ENOSPC;
	struct sl_centry *ne = calloc(1, esz);
	char *names = names_len ? malloc(names_len) : NULL;
	if (!ne || (names_len && !names)) {
		free(ne);
		free(names);
		sl_cache_uncharge(z, ec + nc);
		return -ENOMEM;
	}
	ne->var = (struct sl_cobj **)(ne + 1);
	ne->key = (char *)(ne->var + z->max_variants);
	if (names)
		memcpy(names, vary_names, names_len);
	struct sl_cobj *drop[64 + 1];
	unsigned int n_drop = 0;
	char *old_names = NULL;
	size_t old_nc = 0;

	pthread_mutex_lock(&s->mu);
	struct sl_centry *e = h_find(s, hash, key, klen);
	int fresh = !e;
	if (fresh) {
		e = ne;
		ne = NULL;
		e->hash = hash;
		e->klen = (uint32_t)klen;
		memcpy(e->key, key, klen);
		e->charged = ec;
		ec = 0;
	}
	if (fresh || e->names_len != names_len ||
	    (names_len && memcmp(e->names, vary_names, names_len))) {
		/* the origin's Vary changed: the old variants were chosen by other headers */
		for (unsigned int i = 0; i < e->n_var; i++)
			drop[n_drop++] = e->var[i];
		e->n_var = 0;
		old_names = e->names;
		old_nc = e->names_charged;
		e->names = names;
		e->names_len = (uint16_t)names_len;
		e->names_charged = nc;
		names = NULL;
		nc = 0;
	}
	int slot = -1;
	for (unsigned int i = 0; i < e->n_var; i++)
		if (e->var[i]->vary_len == o->vary_len &&
		    !memcmp(e->var[i]->vary_key, o->vary_key, o->vary_len)) {
			slot = (int)i;
			break;
		}
	if (slot >= 0) {
		drop[n_drop++] = e->var[slot];
		e->var[slot] = sl_cobj_ref(o);
	} else {
		if (e->n_var == z->max_variants) {
			drop[n_drop++] = e->var[0];
			memmove(e->var, e->var + 1, (e->n_var - 1) * sizeof(*e->var));
			e->n_var--;
		}
		e->var[e->n_var++] = sl_cobj_ref(o);
	}
	size_t bytes = e->charged + e->names_charged;
	for (unsigned int i = 0; i < e->n_var; i++)
		bytes += obj_bytes(e->var[i]);
	if (fresh) {
		e->bytes = bytes;
		e->hnext = s->b[hash & (s->nb - 1)];
		s->b[hash & (s->nb - 1)] = e;
		int ghost = s->ghost[hash & (s->ng - 1)] == ghost_fp(hash);
		if (ghost)
			s->ghost[hash & (s->ng - 1)] = 0;
		q_push(s, e, ghost ? Q_MAIN : Q_SMALL);
		atomic_fetch_add(&z->entries, 1);
	} else {
		resize_entry(s, e, bytes);
	}
	pthread_mutex_unlock(&s->mu);
	atomic_fetch_add(&z->inserts, 1);
	for (unsigned int i = 0; i < n_drop; i++)
		sl_cobj_put(drop[i]);
	free(ne);
	free(names);
	free(old_names);
	if (ec + nc + old_nc)
		sl_cache_uncharge(z, ec + nc + old_nc);
	return 0;
}

void sl_cache_remove_obj(struct sl_cache_zone *z, uint64_t hash, const char *key, size_t klen,
			 struct sl_cobj *o)
{
	struct sl_cache_shard *s = &z->sh[hash & (z->nshards - 1)];
	struct sl_cobj *drop = NULL;
	struct sl_centry *gone = NULL;
	pthread_mutex_lock(&s->mu);
	struct sl_centry *e = h_find(s, hash, key, klen);
	if (e)
		for (unsigned int i = 0; i < e->n_var; i++)
			if (e->var[i] == o) {
				drop = o;
				memmove(e->var + i, e->var + i + 1,
					(e->n_var - i - 1) * sizeof(*e->var));
				e->n_var--;
				break;
			}
	if (e && !e->n_var) {
		h_del(s, e);
		q_del(s, e);
		gone = e;
	}
	pthread_mutex_unlock(&s->mu);
	if (drop)
		sl_cobj_put(drop);
	if (gone) {
		atomic_fetch_sub(&z->entries, 1);
		entry_release(z, gone);
	}
}

unsigned int sl_cache_purge(struct sl_cache_zone *z, const char *key, size_t klen)
{
	uint64_t hash = sl_cache_hash(z, key, klen);
	struct sl_cache_shard *s = &z->sh[hash & (z->nshards - 1)];
	pthread_mutex_lock(&s->mu);
	struct sl_centry *e = h_find(s, hash, key, klen);
	if (e) {
		h_del(s, e);
		q_del(s, e);
	}
	pthread_mutex_unlock(&s->mu);
	if (!e)
		return 0;
	atomic_fetch_sub(&z->entries, 1);
	atomic_fetch_add(&z->purged, 1);
	entry_release(z, e);
	return 1;
}

unsigned int sl_cache_purge_prefix(struct sl_cache_zone *z, const char *prefix, size_t plen)
{
	unsigned int n = 0;
	for (unsigned int i = 0; i < z->nshards; i++) {
		struct sl_cache_shard *s = &z->sh[i];
		struct sl_centry *gone = NULL;
		/* bucket by bucket: the lock is dropped between buckets */
		for (uint32_t j = 0; j < s->nb; j++) {
			pthread_mutex_lock(&s->mu);
			struct sl_centry **pp = &s->b[j];
			while (*pp) {
				struct sl_centry *e = *pp;
				if (e->klen >= plen && !memcmp(e->key, prefix, plen)) {
					*pp = e->hnext;
					q_del(s, e);
					e->hnext = gone;
					gone = e;
				} else {
					pp = &e->hnext;
				}
			}
			pthread_mutex_unlock(&s->mu);
		}
		while (gone) {
			struct sl_centry *e = gone;
			gone = e->hnext;
			atomic_fetch_sub(&z->entries, 1);
			atomic_fetch_add(&z->purged, 1);
			entry_release(z, e);
			n++;
		}
	}
	return n;
}
