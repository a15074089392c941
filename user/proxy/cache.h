/* The HTTP cache on the request path: the few calls the session makes (hits, the
 * cache lock, teeing a response into the store, revalidation, stale answers) and the
 * zones, stats and purge for the admin API. Everything here runs on the worker that
 * owns the session, except the zone functions marked otherwise. */
#ifndef SL_PROXY_CACHE_H
#define SL_PROXY_CACHE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

struct sl_session;
struct sl_worker;
struct sl_creq;
struct sl_conf_route_cache;

/* How sl_session_cache_resume() goes on with a parked request. */
enum sl_pcache_resume {
	SL_PCACHE_FLUSH = 1, /* the cache prepared a response: write it */
	SL_PCACHE_ORIGIN,    /* go to the origin (as writer, or uncached) */
};

/* Request head read and request_filter run (the route asked for caching). 0: go to the
 * origin (the request may now be the key's writer); 1: answered from the cache or
 * parked until the key's writer has a response. */
int sl_pcache_request(struct sl_session *s);
/* Response head from the origin (before it is rendered). 0: forward it (maybe teed
 * into the store); 1: the answer comes from the cache instead (a 304 that refreshed the
 * stored object, or stale-if-error): the caller drops the upstream and flushes. */
int sl_pcache_response(struct sl_session *s);
/* The origin's response is complete. */
void sl_pcache_origin_done(struct sl_session *s);
/* The core is about to answer status (a failed origin): 1 if the cache answers instead
 * (stale-if-error); the caller flushes. */
int sl_pcache_error(struct sl_session *s, int status);
/* Client output of a response served from the cache: iovecs after the core's own, and
 * how many written bytes were the cache's (the rest are returned). */
int sl_pcache_iov(struct sl_session *s, struct iovec *iov, int max);
size_t sl_pcache_wrote(struct sl_session *s, size_t n);
/* Everything queued was written: 0 done (or not serving), 1 wait (woken later), 2 more
 * is ready now, -1 the stored body failed (close the connection). */
int sl_pcache_more(struct sl_session *s);
/* The request ends, however it ends. */
void sl_pcache_release(struct sl_session *s);
/* Worker thread exit: its mailbox goes. */
void sl_pcache_worker_exit(struct sl_worker *w);

/* Zones (any thread). Create the stores of conf's zones that do not exist yet. */
struct sl_conf;
void sl_pcache_zones(const struct sl_conf *conf);
struct sl_pcache_zone_stats {
	const char *name;
	uint64_t max_size, bytes, objects, entries, evictions, charge_failures;
	uint64_t hits, misses, stale, revalidated, coalesced, lock_timeouts, passes, stale_errors,
	    purged, bg_refreshes, not_stored;
};
/* i-th zone created so far; -ENOENT past the last. */
int sl_pcache_zone_stats(unsigned int i, struct sl_pcache_zone_stats *st);
/* Purge key (exact) or everything starting with prefix, in zone (NULL = all zones).
 * Returns how many keys went, or -ENOENT for an unknown zone. */
long sl_pcache_purge(const char *zone, const char *key, int prefix);

#endif
