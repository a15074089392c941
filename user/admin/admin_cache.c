/* Admin API for the HTTP cache: zone statistics as JSON and Prometheus text, and purge
 * by key or prefix (the only way to purge: the data port never accepts it). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>

#include "admin/admin_cache.h"
#include "core/log.h"
#include "proxy/cache.h"

#define PURGE_BODY_MAX 8192

static void reply(struct evhttp_request *req, int code, json_t *j)
{
	struct evbuffer *b = evbuffer_new();
	char *s = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
	json_decref(j);
	if (!b || !s) {
		free(s);
		if (b)
			evbuffer_free(b);
		evhttp_send_error(req, 500, NULL);
		return;
	}
	evbuffer_add(b, s, strlen(s));
	evbuffer_add(b, "\n", 1);
	free(s);
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	evhttp_add_header(h, "Content-Type", "application/json");
	evhttp_add_header(h, "Cache-Control", "no-store");
	evhttp_send_reply(req, code, NULL, b);
	evbuffer_free(b);
}

static void reply_error(struct evhttp_request *req, int code, const char *msg)
{
	reply(req, code, json_pack("{s:s}", "error", msg));
}

void sl_admin_cache_get(struct evhttp_request *req)
{
	json_t *zones = json_array();
	struct sl_pcache_zone_stats st;
	for (unsigned int i = 0; zones && !sl_pcache_zone_stats(i, &st); i++)
		json_array_append_new(
		    zones,
		    json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:"
			      "I}",
			      "zone", st.name, "max_size", (json_int_t)st.max_size, "bytes",
			      (json_int_t)st.bytes, "objects", (json_int_t)st.objects, "keys",
			      (json_int_t)st.entries, "hits", (json_int_t)st.hits, "misses",
			      (json_int_t)st.misses, "stale", (json_int_t)st.stale, "revalidated",
			      (json_int_t)st.revalidated, "coalesced", (json_int_t)st.coalesced,
			      "lock_timeouts", (json_int_t)st.lock_timeouts, "passes",
			      (json_int_t)st.passes, "stale_if_error", (json_int_t)st.stale_errors,
			      "background_refreshes", (json_int_t)st.bg_refreshes, "not_stored",
			      (json_int_t)st.not_stored, "evictions", (json_int_t)st.evictions,
			      "purged", (json_int_t)st.purged, "store_refused",
			      (json_int_t)st.charge_failures));
	reply(req, 200, json_pack("{s:o}", "zones", zones));
}

static void purge(struct evhttp_request *req, const char *zone, const char *key,
		  const char *prefix)
{
	long got = sl_pcache_purge(zone, key ? key : prefix, !key);
	if (got == -ENOENT) {
		reply_error(req, 404, "no such cache zone");
		return;
	}
	sl_log(SL_LOG_INFO, "msg=\"cache purge\" zone=%s %s=\"%s\" purged=%ld", zone ? zone : "*",
	       key ? "key" : "prefix", key ? key : prefix, got);
	reply(req, 200, json_pack("{s:I}", "purged", (json_int_t)got));
}

#define PURGE_USAGE                                                                          \
	"body {\"key\": \"...\"} or {\"prefix\": \"...\"}, optionally \"zone\"; or the query "   \
	"?key=...|prefix=...[&zone=...]"

/* POST /cache/purge with {"zone": "default", "key": "..."} or {"prefix": "..."} (zone
 * optional: every zone), or the same as query parameters. */
void sl_admin_cache_purge(struct evhttp_request *req)
{
	const char *q = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t n = evbuffer_get_length(in);
	if (q && *q) {
		struct evkeyvalq kv = {0};
		if (n || evhttp_parse_query_str(q, &kv)) {
			evhttp_clear_headers(&kv);
			reply_error(req, 400, PURGE_USAGE);
			return;
		}
		const char *zone = NULL, *key = NULL, *prefix = NULL;
		int bad = 0;
		for (struct evkeyval *e = kv.tqh_first; e; e = e->next.tqe_next) {
			const char **slot = !strcmp(e->key, "zone")	? &zone
					    : !strcmp(e->key, "key")	? &key
					    : !strcmp(e->key, "prefix") ? &prefix
									: NULL;
			if (!slot || *slot)
				bad = 1;
			else
				*slot = e->value;
		}
		if (bad || !key == !prefix)
			reply_error(req, 400, PURGE_USAGE);
		else
			purge(req, zone, key, prefix);
		evhttp_clear_headers(&kv);
		return;
	}
	if (!n || n > PURGE_BODY_MAX) {
		reply_error(req, 400, PURGE_USAGE);
		return;
	}
	char *text = malloc(n + 1);
	if (!text) {
		reply_error(req, 500, "out of memory");
		return;
	}
	evbuffer_copyout(in, text, n);
	text[n] = 0;
	json_error_t jerr;
	json_t *j = json_loadb(text, n, JSON_REJECT_DUPLICATES, &jerr);
	free(text);
	const char *zone = NULL, *key = NULL, *prefix = NULL;
	if (!j || !json_is_object(j) ||
	    json_unpack_ex(j, &jerr, JSON_STRICT, "{s?s,s?s,s?s}", "zone", &zone, "key", &key,
			   "prefix", &prefix) ||
	    !key == !prefix) {
		json_decref(j);
		reply_error(req, 400, PURGE_USAGE);
		return;
	}
	purge(req, zone, key, prefix);
	json_decref(j);
}

void sl_admin_cache_metrics(struct evbuffer *b)
{
	struct sl_pcache_zone_stats st;
	if (sl_pcache_zone_stats(0, &st))
		return;
	static const char *const results[] = {"hit",	    "miss",	      "stale",
					      "revalidated", "coalesced",    "pass",
					      "lock_timeout", "stale_if_error"};
	evbuffer_add_printf(b, "# HELP sluice_cache_requests_total Cached-route requests by "
			       "outcome.\n# TYPE sluice_cache_requests_total counter\n");
	for (unsigned int i = 0; !sl_pcache_zone_stats(i, &st); i++) {
		uint64_t v[] = {st.hits,      st.misses, st.stale,	   st.revalidated,
				st.coalesced, st.passes, st.lock_timeouts, st.stale_errors};
		for (size_t k = 0; k < sizeof(v) / sizeof(v[0]); k++)
			evbuffer_add_printf(b,
					    "sluice_cache_requests_total{zone=\"%s\",result=\"%s\"} "
					    "%llu\n",
					    st.name, results[k], (unsigned long long)v[k]);
	}
	static const struct {
		const char *name, *type, *help;
		size_t off;
	} m[] = {
	    {"sluice_cache_bytes", "gauge",
	     "Bytes charged to the zone (objects, metadata, index), never above max.",
	     offsetof(struct sl_pcache_zone_stats, bytes)},
	    {"sluice_cache_max_bytes", "gauge", "The zone's max_size.",
	     offsetof(struct sl_pcache_zone_stats, max_size)},
	    {"sluice_cache_objects", "gauge", "Stored responses (variants included).",
	     offsetof(struct sl_pcache_zone_stats, objects)},
	    {"sluice_cache_keys", "gauge", "Keys in the index.",
	     offsetof(struct sl_pcache_zone_stats, entries)},
	    {"sluice_cache_evictions_total", "counter", "Keys evicted to make room.",
	     offsetof(struct sl_pcache_zone_stats, evictions)},
	    {"sluice_cache_purged_total", "counter", "Keys removed by purge.",
	     offsetof(struct sl_pcache_zone_stats, purged)},
	    {"sluice_cache_not_stored_total", "counter",
	     "Origin responses not stored (policy, size, room).",
	     offsetof(struct sl_pcache_zone_stats, not_stored)},
	    {"sluice_cache_background_refreshes_total", "counter",
	     "Stale-while-revalidate refreshes completed.",
	     offsetof(struct sl_pcache_zone_stats, bg_refreshes)},
	    {"sluice_cache_store_refused_total", "counter",
	     "Allocations refused at the zone's bound after eviction.",
	     offsetof(struct sl_pcache_zone_stats, charge_failures)},
	};
	for (size_t k = 0; k < sizeof(m) / sizeof(m[0]); k++) {
		evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", m[k].name, m[k].help,
				    m[k].name, m[k].type);
		for (unsigned int i = 0; !sl_pcache_zone_stats(i, &st); i++)
			evbuffer_add_printf(b, "%s{zone=\"%s\"} %llu\n", m[k].name, st.name,
					    (unsigned long long)*(const uint64_t *)((const char *)&st +
										    m[k].off));
	}
}
