/* The in-memory cache store: one per zone, shared by every worker. Bounded in bytes:
 * every allocation the store makes (index entries, stored heads, body chunks, the
 * bucket arrays) is charged to the zone before it is made, with the allocator's
 * per-allocation overhead, and a charge that would take the zone over max_size fails
 * (after evicting what it can), so charged bytes never exceed max_size.
 *
 * Eviction: S3-FIFO per shard (a small FIFO that one-hit wonders leave quickly, a main
 * FIFO with reinsertion for objects hit at least once, a ghost table remembering what
 * the small queue evicted). A hit only bumps a saturating counter: no list moves under
 * the shard lock on the hot path, and a scan of cold keys cannot flush the main queue.
 *
 * Objects are reference counted; a reader (a worker streaming a response) holds one,
 * so eviction, purge or replacement never frees bytes under it. A body can be read
 * while it is being filled: readers wait for more bytes in a cross-worker wait list. */
#ifndef SL_CACHE_STORE_H
#define SL_CACHE_STORE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "cache/xwait.h"

/* What one allocation costs beyond its size (glibc: an 8-byte header, 16-byte rounding). */
#define SL_CACHE_ALLOC_OVERHEAD 16
#define SL_CACHE_KEY_MAX 4096	    /* longer keys are not cached */
#define SL_CACHE_VARY_NAMES_MAX 16  /* header names one Vary may list */
#define SL_CACHE_VARY_BYTES_MAX 512 /* the names, normalized */
#define SL_CACHE_VARY_KEY_MAX 2048  /* a request's values of those headers */

struct sl_cache_zone_params {
	const char *name;
	size_t max_size;	/* bytes, everything included */
	size_t max_object_size; /* body bytes of one object */
	unsigned int shards;	/* rounded up to a power of two, 1..256 */
	unsigned int max_variants; /* Vary variants kept per key (default 8) */
};

enum sl_cbody_state {
	SL_CBODY_FILLING = 0,
	SL_CBODY_COMPLETE,
	SL_CBODY_ABORTED,
};

struct sl_cchunk {
	struct sl_cchunk *next; /* published before the bytes that need it */
	uint32_t cap;
	char data[];
};

/* A response body, shared by the objects a 304 refreshed (same bytes, new head). */
struct sl_cbody {
	atomic_uint ref;
	_Atomic uint64_t len; /* bytes readers may read (release-stored by the writer) */
	_Atomic int state;    /* enum sl_cbody_state */
	uint64_t expect;      /* Content-Length, or UINT64_MAX */
	struct sl_cchunk *first, *tail; /* tail: the writer's */
	uint32_t tail_used;
	size_t charged;
	struct sl_cache_zone *zone;
	pthread_mutex_t *mu; /* the shard's: guards readers */
	struct sl_xwlist readers;
};

/* Flags of a stored response (decided by policy.c when it was stored). */
#define SL_COBJ_NO_CACHE 0x1   /* never served without revalidation */
#define SL_COBJ_NO_STALE 0x2   /* must-revalidate / proxy-revalidate / s-maxage */
#define SL_COBJ_HAS_DATE 0x4

/* One stored response. Immutable once inserted except for the body it points to. */
struct sl_cobj {
	atomic_uint ref;
	struct sl_cache_zone *zone;
	int status;
	uint32_t head_len; /* end-to-end fields "Name: value\r\n"..., no Age/framing */
	char *head;
	uint32_t vary_len; /* this variant's request values (sl_cache_vary_key) */
	char *vary_key;
	uint16_t etag_off, etag_len; /* into head; len 0 = none */
	uint32_t lm_off;
	uint16_t lm_len;
	uint8_t flags;
	uint32_t lifetime;    /* freshness lifetime, seconds */
	uint32_t initial_age; /* corrected initial age, seconds */
	uint32_t swr, sie;    /* stale-while-revalidate / stale-if-error windows, seconds */
	uint64_t resp_mono_ns; /* when the response (or its last 304) arrived */
	int64_t resp_wall;
	struct sl_cbody *body;
	size_t charged;
};

struct sl_centry;

struct sl_cache_shard {
	pthread_mutex_t mu;
	struct sl_centry **b;
	uint32_t nb; /* power of two */
	struct sl_centry *s_head, *s_tail, *m_head, *m_tail; /* small and main FIFOs */
	size_t s_bytes, m_bytes;
	uint32_t *ghost; /* fingerprints of keys the small queue evicted, direct-mapped */
	uint32_t ng;
	uint64_t n_objects;
};

struct sl_cache_stats {
	uint64_t bytes, max_bytes, objects, entries;
	uint64_t evictions, inserts, purged, charge_failures;
};

struct sl_cache_zone {
	char *name;
	size_t max_size, max_object_size;
	unsigned int max_variants;
	_Atomic size_t bytes; /* charged: never above max_size */
	size_t fixed;	      /* the zone's own arrays (charged too) */
	atomic_uint evict_cursor;
	_Atomic uint64_t evictions, inserts, purged, charge_failures, objects, entries;
	uint64_t sip[2]; /* keyed hash: clients pick the keys */
	unsigned int nshards;
	struct sl_cache_shard *sh;
};

/* NULL on bad parameters or no memory (errno set); -EINVAL for a max_size too small
 * for the zone's own arrays. */
struct sl_cache_zone *sl_cache_zone_new(const struct sl_cache_zone_params *p);
/* Frees everything; no reader may hold an object any more. */
void sl_cache_zone_free(struct sl_cache_zone *z);
void sl_cache_zone_stats(struct sl_cache_zone *z, struct sl_cache_stats *st);

uint64_t sl_cache_hash(const struct sl_cache_zone *z, const char *key, size_t len);

/* Charge / uncharge n bytes (allocation overhead is the caller's to add). Charging
 * evicts as needed; 0 or -ENOSPC. */
int sl_cache_charge(struct sl_cache_zone *z, size_t n);
void sl_cache_uncharge(struct sl_cache_zone *z, size_t n);

/* Lookup: the variant of key whose vary values match this request, with a reference.
 * vary_fn builds the request's values for the stored Vary names into out (returns the
 * length, or -1 when they do not fit: no match); it runs under the shard lock and may
 * only read the request. Counts a hit for eviction. */
typedef int (*sl_cache_vary_fn)(void *ctx, const char *names, size_t names_len, char *out,
				size_t cap);
struct sl_cobj *sl_cache_lookup(struct sl_cache_zone *z, uint64_t hash, const char *key,
				size_t klen, sl_cache_vary_fn vary_fn, void *ctx);

/* A new object (status, head copied) with a new body expecting `expect` bytes
 * (UINT64_MAX = unknown), or with `body` (a 304 refresh: shares it). Charged. NULL on
 * -ENOSPC (errno), or -EFBIG when expect is over max_object_size. */
struct sl_cobj *sl_cobj_new(struct sl_cache_zone *z, uint64_t hash, int status, const char *head,
			    size_t head_len, const char *vary_key, size_t vary_len, uint64_t expect,
			    struct sl_cbody *body);
static inline struct sl_cobj *sl_cobj_ref(struct sl_cobj *o)
{
	atomic_fetch_add_explicit(&o->ref, 1, memory_order_relaxed);
	return o;
}
void sl_cobj_put(struct sl_cobj *o);

/* Insert o (the store takes its own reference) under key, as the variant for its
 * vary_key among vary_names ("" for none): replaces an equal variant; a Vary list that
 * changed drops the old variants; past max_variants the oldest goes. 0 or -errno. */
int sl_cache_insert(struct sl_cache_zone *z, uint64_t hash, const char *key, size_t klen,
		    const char *vary_names, size_t names_len, struct sl_cobj *o);
/* Remove o's variant if it is still the stored one (a failed fill). */
void sl_cache_remove_obj(struct sl_cache_zone *z, uint64_t hash, const char *key, size_t klen,
			 struct sl_cobj *o);
/* Purge one key (every variant) / every key starting with prefix. Returns how many. */
unsigned int sl_cache_purge(struct sl_cache_zone *z, const char *key, size_t klen);
unsigned int sl_cache_purge_prefix(struct sl_cache_zone *z, const char *prefix, size_t plen);

/* Writer side of a body. append: 0, -EFBIG past max_object_size, -ENOSPC; after an
 * error the caller aborts the body. finish/abort wake the readers. */
int sl_cbody_append(struct sl_cbody *b, const char *data, size_t len);
void sl_cbody_finish(struct sl_cbody *b);
void sl_cbody_abort(struct sl_cbody *b);

/* Reader side: a cursor into a body. */
struct sl_cread {
	struct sl_cchunk *c;
	uint32_t coff;
	uint64_t off;
};
static inline void sl_cread_init(struct sl_cread *r, const struct sl_cbody *b)
{
	r->c = b->first;
	r->coff = 0;
	r->off = 0;
}
/* Contiguous published bytes at the cursor: returns their count (0 = none now). */
size_t sl_cread_peek(struct sl_cread *r, struct sl_cbody *b, const char **p);
void sl_cread_skip(struct sl_cread *r, size_t n);
/* Move the cursor to off (must be <= published length). */
void sl_cread_seek(struct sl_cread *r, struct sl_cbody *b, uint64_t off);
/* Nothing to read at the cursor: wait for more bytes or the end. Returns 0 if w is now
 * queued (woken through its mailbox), 1 if there is something to do right away. */
int sl_cbody_wait(struct sl_cbody *b, const struct sl_cread *r, struct sl_xwaiter *w);

#endif
