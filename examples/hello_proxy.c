/* hello_proxy: a custom proxy written against the public sluice API.
 *
 * - the upstream is chosen by the request header "X-Backend: NAME" (an upstream of the
 *   config file); without it, or with an unknown name, the upstream named "default";
 * - every response gets "X-Hello: from hello_proxy";
 * - the access log line gets a custom field "backend=NAME".
 *
 * Build: make examples; run: build/examples/hello_proxy -c CONFIG (same flags as sluiced).
 * The config's listeners are used for accepting; their routes are not consulted. */
#include <errno.h>
#include <string.h>

#include "sluice/sluice.h"

struct hello_ctx {
	const struct sl_conf_upstream *up;
	char name[64];
};

static int hello_request_filter(struct sl_session *s, void *ctx)
{
	struct hello_ctx *c = ctx;
	const char *v;
	size_t len;
	if (sl_req_header(s, "X-Backend", &v, &len) == 0 && len < sizeof(c->name)) {
		memcpy(c->name, v, len);
		c->name[len] = 0;
		c->up = sl_upstream_find(s, c->name);
	}
	if (!c->up) {
		strcpy(c->name, "default");
		c->up = sl_upstream_find(s, "default");
	}
	if (!c->up) {
		static const char msg[] = "no upstream named default\n";
		sl_respond(s, 503, "text/plain", msg, sizeof(msg) - 1);
		return SL_DONE;
	}
	/* the backend does not need to know how we chose it */
	sl_req_header_remove(s, "X-Backend");
	return 0;
}

static int hello_upstream_peer(struct sl_session *s, void *ctx, struct sl_peer *peer)
{
	struct hello_ctx *c = ctx;
	return sl_upstream_pick(s, c->up, peer);
}

static int hello_response_filter(struct sl_session *s, void *ctx)
{
	return sl_resp_header_set(s, "X-Hello", "from hello_proxy");
}

static void hello_logging(struct sl_session *s, void *ctx, int status)
{
	struct hello_ctx *c = ctx;
	sl_log_field(s, "backend", c->name[0] ? c->name : "-");
}

static const struct sl_proxy_ops hello_ops = {
    .ctx_size = sizeof(struct hello_ctx),
    .request_filter = hello_request_filter,
    .upstream_peer = hello_upstream_peer,
    .response_filter = hello_response_filter,
    .logging = hello_logging,
};

int main(int argc, char **argv)
{
	return sl_main(argc, argv, &hello_ops);
}
