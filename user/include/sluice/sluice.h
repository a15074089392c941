/* sluice public API: a proxy is a table of phase callbacks run by the sluice core.
 *
 * The config-driven proxy of sluiced is one implementation of struct sl_proxy_ops;
 * examples/ hold others. A program hands its table to sl_main(), which runs the whole
 * daemon (command line, config file, workers, signals) with it.
 *
 * Phase return values: 0 go on; SL_DONE the phase answered the request itself (with
 * sl_respond()); SL_RETRY (fail_to_connect only) try another peer; a negative errno
 * is an error (the client gets 502, or 503 from upstream_peer with -EAGAIN/-ENOENT).
 *
 * Threading: every callback runs on the worker thread that owns the connection; a
 * session and its ctx are never seen by another thread.
 */
#ifndef SLUICE_H
#define SLUICE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "sluice/service.h"

#define SL_DONE 1
#define SL_RETRY 2
/* Cache phases' answers (see cache_hit_filter and response_cache_filter). */
#define SL_CACHE_REFRESH 3  /* treat the stored object as expired: fetch and store anew */
#define SL_CACHE_BYPASS 4   /* to the origin, uncached; the stored object stays */
#define SL_CACHE_NO_STORE 5 /* do not store this response, nor share it with waiters */

struct sl_session;
struct sl_conf_upstream;

/* Where a request goes. A pooled connection is reused only for a peer whose identity
 * (every field but name) is identical: same IP with another SNI is another pool key.
 * Zero the struct before filling it in. */
struct sl_peer {
	struct sockaddr_storage addr;
	socklen_t addrlen;
	uint8_t tls;	     /* TLS to the upstream */
	uint8_t verify;	     /* verify the upstream certificate (chain, and the name below) */
	char sni[128];	     /* server name sent; "" = none */
	const char *ca_file; /* trust anchors; NULL = the system store */
	const char *client_cert, *client_key; /* mTLS client identity (PEM files) */
	struct sockaddr_storage proxy;	      /* via an HTTP CONNECT proxy; family 0 = direct */
	socklen_t proxy_len;
	char name[64]; /* "ip:port", for logs (not part of the identity) */
	/* name the certificate must carry when verify is set; "" = the sni (no sni either:
	 * the chain alone is checked) */
	char verify_name[128];
	/* via a proxy: the CONNECT target ("host:port"; "" = addr), and extra request header
	 * lines sent with it, each "Name: value\r\n" (e.g. Proxy-Authorization) */
	char connect_target[136];
	char proxy_headers[512];
};

/* Hash of the identity fields, and identity comparison. */
uint64_t sl_peer_hash(const struct sl_peer *p);
int sl_peer_same(const struct sl_peer *a, const struct sl_peer *b);

struct sl_proxy_ops {
	/* Bytes of per-request context, zeroed before request_filter. */
	size_t ctx_size;
	/* Head received. May answer (sl_respond, return SL_DONE) or edit request headers. */
	int (*request_filter)(struct sl_session *s, void *ctx);
	/* Required: choose the peer. Called again for each retry. */
	int (*upstream_peer)(struct sl_session *s, void *ctx, struct sl_peer *peer);
	/* Last chance to edit the request headers sent upstream. */
	int (*upstream_request_filter)(struct sl_session *s, void *ctx);
	/* Response head received: read or edit response headers. */
	int (*response_filter)(struct sl_session *s, void *ctx);
	/* Body observers: called with each piece as it streams through; end=1 on the last
	 * call. They may not change the bytes. A negative return aborts the request. */
	int (*request_body_filter)(struct sl_session *s, void *ctx, const char *data, size_t len,
				   int end);
	int (*response_body_filter)(struct sl_session *s, void *ctx, const char *data, size_t len,
				    int end);
	/* Connect to peer failed with err (negative errno). Return SL_RETRY to call
	 * upstream_peer again, anything else to give up (502). */
	int (*fail_to_connect)(struct sl_session *s, void *ctx, const struct sl_peer *peer,
			       int err);
	/* The core is about to send an error status. Return SL_DONE after sl_respond() to
	 * send your own page instead. */
	int (*error_response)(struct sl_session *s, void *ctx, int status);
	/* Request finished (any outcome), before its access log line is written. */
	void (*logging)(struct sl_session *s, void *ctx, int status);
	/* Cache phases, for requests that sl_req_cache() marked (all optional; none may
	 * call sl_respond()). They run on the request's worker like the others.
	 *
	 * cache_key: the key of this request: write up to cap bytes into key and return its
	 * length, 0 for the route's key template, or a negative errno not to cache the
	 * request at all. Called for POST/PUT/DELETE/PATCH too, to name what they
	 * invalidate: return the GET's key. Keys are what POST /cache/purge takes. */
	int (*cache_key)(struct sl_session *s, void *ctx, char *key, size_t cap);
	/* cache_hit_filter: a stored object can answer (fresh: 1, or stale inside
	 * stale-while-revalidate: 0). Return 0 to serve it, SL_CACHE_REFRESH to fetch it anew
	 * (through the cache lock, as a miss; waiters get the new object), or
	 * SL_CACHE_BYPASS to go to the origin uncached. */
	int (*cache_hit_filter)(struct sl_session *s, void *ctx, int fresh);
	/* response_cache_filter: the origin's head is in (sl_resp_* read it) and the cache
	 * is about to store it if RFC 9111 allows. Return 0 to let the cache decide, or
	 * SL_CACHE_NO_STORE to keep it from being stored and shared: the request's
	 * waiters then go to the origin themselves. It cannot store what the RFC forbids.
	 * A program with this callback gets no background fetches (stale-while-revalidate
	 * refreshes in the foreground, a HEAD miss goes to the origin as HEAD), since a
	 * background answer has no request to ask. */
	int (*response_cache_filter)(struct sl_session *s, void *ctx);
	/* Opaque pointer for the implementation: sl_proxy_data(). */
	void *data;
};

/* Run the sluiced daemon with these ops. Returns the process exit status. */
int sl_main(int argc, char **argv, const struct sl_proxy_ops *ops);

/* The ops table and upstream picking of the config-driven proxy, for reuse. */
extern const struct sl_proxy_ops sl_conf_proxy_ops;

/* --- request (valid from request_filter until the response head is sent) --- */
const char *sl_req_method(const struct sl_session *s, size_t *len);
const char *sl_req_target(const struct sl_session *s, size_t *len); /* as received */
const char *sl_req_path(const struct sl_session *s, size_t *len);   /* origin-form */
const char *sl_req_host(const struct sl_session *s, size_t *len);   /* no port; NULL if none */
/* First header of that name (any case): 0 with val and len set, or -ENOENT. On a TLS
 * listener its identity headers (client_auth.subject_header, fingerprint_header, in any
 * spelling) give what sluice verified, or -ENOENT: never the client's copy. */
int sl_req_header(const struct sl_session *s, const char *name, const char **val, size_t *len);
/* Replace every header of that name by one with this value (adds it if absent). */
int sl_req_header_set(struct sl_session *s, const char *name, const char *value);
int sl_req_header_remove(struct sl_session *s, const char *name);

/* --- response (valid in response_filter) --- */
int sl_resp_status(const struct sl_session *s);
int sl_resp_header(const struct sl_session *s, const char *name, const char **val, size_t *len);
int sl_resp_header_set(struct sl_session *s, const char *name, const char *value);
int sl_resp_header_remove(struct sl_session *s, const char *name);

/* Cache this request's response per a route's cache settings (request_filter only;
 * the config-driven proxy does it for routes with a cache: section). */
struct sl_conf_route_cache;
int sl_req_cache(struct sl_session *s, const struct sl_conf_route_cache *cache);
/* The cache: settings of the config file's route that matches this request (host and
 * path, as the config-driven proxy routes), or NULL: sl_req_cache(s, sl_route_cache(s)). */
const struct sl_conf_route_cache *sl_route_cache(const struct sl_session *s);

/* Answer the request from the proxy (request_filter or error_response). */
int sl_respond(struct sl_session *s, int status, const char *content_type, const char *body,
	       size_t body_len);

/* --- session --- */
/* Append key=value to this request's access log line. */
int sl_log_field(struct sl_session *s, const char *key, const char *value);
unsigned int sl_session_tries(const struct sl_session *s); /* upstream_peer calls so far */
unsigned int sl_session_worker(const struct sl_session *s);
const struct sockaddr *sl_session_client(const struct sl_session *s, socklen_t *len);
void *sl_proxy_data(const struct sl_session *s);

/* --- upstreams of the running configuration --- */
const struct sl_conf_upstream *sl_upstream_find(const struct sl_session *s, const char *name);
/* Load-balance over u's servers (skipping those already tried by this request). */
int sl_upstream_pick(struct sl_session *s, const struct sl_conf_upstream *u, struct sl_peer *peer);

#endif
