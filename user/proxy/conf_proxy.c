/* The config-driven proxy: routes from the YAML file, round robin over the route's
 * upstream, retries on connect failure. One implementation of sl_proxy_ops. */
#include <errno.h>

#include "http/route.h"
#include "proxy/session.h"

struct conf_ctx {
	const struct sl_conf_route *route;
};

static int conf_request_filter(struct sl_session *s, void *ctx)
{
	struct conf_ctx *c = ctx;
	size_t hl = 0, pl = 0;
	const char *host = sl_req_host(s, &hl);
	const char *path = sl_req_path(s, &pl);
	if (pl == 1 && path[0] == '*') /* OPTIONS *: about the server, routed as "/" */
		path = "/";
	c->route = sl_route_match(s->r->listener, host, hl, path, pl);
	if (!c->route) {
		static const char body[] = "404 Not Found\n";
		sl_respond(s, 404, "text/plain", body, sizeof(body) - 1);
		return SL_DONE;
	}
	if (c->route->action == SL_ROUTE_RESPOND)
		return sl_session_respond_conf(s, &c->route->respond);
	if (c->route->cache)
		sl_req_cache(s, c->route->cache);
	return 0;
}

static int conf_upstream_peer(struct sl_session *s, void *ctx, struct sl_peer *peer)
{
	struct conf_ctx *c = ctx;
	return sl_upstream_pick(s, c->route->upstream, peer);
}

static int conf_fail_to_connect(struct sl_session *s, void *ctx, const struct sl_peer *peer,
				int err)
{
	const struct sl_conf_upstream *u = ((struct conf_ctx *)ctx)->route->upstream;
	if ((u->lb.retry_on & SL_RETRY_CONNECT_FAILURE) && sl_session_tries(s) <= u->retries &&
	    sl_upstream_untried(s, u))
		return SL_RETRY;
	return 0;
}

const struct sl_proxy_ops sl_conf_proxy_ops = {
    .ctx_size = sizeof(struct conf_ctx),
    .request_filter = conf_request_filter,
    .upstream_peer = conf_upstream_peer,
    .fail_to_connect = conf_fail_to_connect,
};
