/* cache_proxy: a custom proxy that caches through the public cache phases of sluice.h.
 *
 * - caching follows the config file's routes: a route with a cache: section caches what
 *   it serves (sl_req_cache(s, sl_route_cache(s))); everything goes to the upstream
 *   named "default";
 * - cache_key: a request with "X-Tenant: NAME" is cached per tenant under the key
 *   "tenant=NAME|HOST|PATH?QUERY" (a tenant name is 1-63 bytes of [A-Za-z0-9_-]; others
 *   are not cached at all); without the header the route's key template applies;
 * - cache_hit_filter: "X-Cache-Refresh: 1" revalidates the stored object with the origin
 *   (SL_CACHE_REFRESH), "X-Cache-Bypass: 1" goes to the origin uncached
 *   (SL_CACHE_BYPASS);
 * - response_cache_filter: a response carrying "X-Do-Not-Cache" is never stored nor shared
 *   (SL_CACHE_NO_STORE), whatever its Cache-Control says;
 * - each cache phase also checks that sl_respond() is refused there (the access log
 *   field respond_in_cache_phase=refused, or =ALLOWED if it ever were).
 *
 * Build: make examples; run: build/examples/cache_proxy -c CONFIG (same flags as sluiced). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "sluice/sluice.h"

struct cache_ctx {
	const struct sl_conf_upstream *up;
	int respond_rc; /* sl_respond() called from a cache phase; 1 = not tried */
};

static int header_is(struct sl_session *s, const char *name, const char *want)
{
	const char *v;
	size_t len;
	return sl_req_header(s, name, &v, &len) == 0 && len == strlen(want) &&
	       !memcmp(v, want, len);
}

/* sl_respond() must be refused in a cache phase: try it once per request. */
static void try_respond(struct sl_session *s, struct cache_ctx *c)
{
	if (c->respond_rc == 1)
		c->respond_rc = sl_respond(s, 200, "text/plain", "no", 2);
}

static int cp_request_filter(struct sl_session *s, void *ctx)
{
	struct cache_ctx *c = ctx;
	c->respond_rc = 1;
	c->up = sl_upstream_find(s, "default");
	if (!c->up) {
		static const char msg[] = "no upstream named default\n";
		sl_respond(s, 503, "text/plain", msg, sizeof(msg) - 1);
		return SL_DONE;
	}
	const struct sl_conf_route_cache *rc = sl_route_cache(s);
	if (rc)
		sl_req_cache(s, rc);
	return 0;
}

static int cp_upstream_peer(struct sl_session *s, void *ctx, struct sl_peer *peer)
{
	struct cache_ctx *c = ctx;
	return sl_upstream_pick(s, c->up, peer);
}

static int cp_cache_key(struct sl_session *s, void *ctx, char *key, size_t cap)
{
	try_respond(s, ctx);
	const char *t, *host, *target;
	size_t tl, hl = 0, pl = 0;
	if (sl_req_header(s, "X-Tenant", &t, &tl))
		return 0; /* the route's template */
	if (!tl || tl > 63)
		return -EINVAL;
	for (size_t i = 0; i < tl; i++) {
		char ch = t[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '_' || ch == '-'))
			return -EINVAL; /* a separator in the name could forge another key */
	}
	host = sl_req_host(s, &hl);
	target = sl_req_target(s, &pl);
	int n = snprintf(key, cap, "tenant=%.*s|%.*s|%.*s", (int)tl, t, (int)hl, host ? host : "",
			 (int)pl, target ? target : "");
	return n < 0 || (size_t)n >= cap ? -E2BIG : n;
}

static int cp_cache_hit_filter(struct sl_session *s, void *ctx, int fresh)
{
	try_respond(s, ctx);
	if (header_is(s, "X-Cache-Bypass", "1"))
		return SL_CACHE_BYPASS;
	if (header_is(s, "X-Cache-Refresh", "1"))
		return SL_CACHE_REFRESH;
	return 0;
}

static int cp_response_cache_filter(struct sl_session *s, void *ctx)
{
	try_respond(s, ctx);
	const char *v;
	size_t len;
	return sl_resp_header(s, "X-Do-Not-Cache", &v, &len) == 0 ? SL_CACHE_NO_STORE : 0;
}

static void cp_logging(struct sl_session *s, void *ctx, int status)
{
	struct cache_ctx *c = ctx;
	if (c->respond_rc != 1)
		sl_log_field(s, "respond_in_cache_phase", c->respond_rc < 0 ? "refused" : "ALLOWED");
}

static const struct sl_proxy_ops cache_ops = {
    .ctx_size = sizeof(struct cache_ctx),
    .request_filter = cp_request_filter,
    .upstream_peer = cp_upstream_peer,
    .logging = cp_logging,
    .cache_key = cp_cache_key,
    .cache_hit_filter = cp_cache_hit_filter,
    .response_cache_filter = cp_response_cache_filter,
};

int main(int argc, char **argv)
{
	return sl_main(argc, argv, &cache_ops);
}
