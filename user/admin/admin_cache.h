/* The cache's part of the admin API: GET /cache, POST /cache/purge, /metrics lines. */
#ifndef SL_ADMIN_CACHE_H
#define SL_ADMIN_CACHE_H

struct evbuffer;
struct evhttp_request;

void sl_admin_cache_metrics(struct evbuffer *b);
void sl_admin_cache_get(struct evhttp_request *req);
void sl_admin_cache_purge(struct evhttp_request *req);

#endif
