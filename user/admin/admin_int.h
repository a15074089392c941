/* Shared by the admin API's files (admin.c routes, upstreams.c the /upstreams tree). */
#ifndef SL_ADMIN_INT_H
#define SL_ADMIN_INT_H

#include <event2/buffer.h>
#include <event2/http.h>
#include <jansson.h>

struct sl_conf;

/* Takes the reference to j. */
void sl_admin_send_json(struct evhttp_request *req, int code, json_t *j);
/* {"error": msg} */
void sl_admin_send_error(struct evhttp_request *req, int code, const char *msg);

/* /upstreams and everything under it; rest = the path after "/upstreams" ("" or
 * "/NAME..."). c is the snapshot in force (pool settings). */
void sl_admin_upstreams(const struct sl_conf *c, struct evhttp_request *req, const char *rest);
/* Host names in /upstreams changes are resolved by the resolver service and answered
 * from this loop; conf(arg) is the snapshot in force when an answer goes out. Until
 * started, changes naming hosts are refused (503). stop: before the evhttp servers go,
 * after the services stopped: waiting requests are answered 503. */
struct event_base;
void sl_admin_upstreams_start(struct event_base *base, const struct sl_conf *(*conf)(void *arg),
			      void *arg);
void sl_admin_upstreams_stop(void);
/* Prometheus lines for every upstream and server. */
void sl_admin_upstream_metrics(struct evbuffer *b);

#endif
