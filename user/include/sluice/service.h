/* sluice public API: background services run by the daemon beside its workers.
 *
 * A service is registered before sl_main() (or by the daemon itself: active health
 * checks are one). The daemon starts every service after its workers are running and
 * stops them on shutdown, in reverse order. A service runs either on the main thread's
 * event loop (cheap periodic work; never block there: the admin API and signals share
 * it) or on a thread of its own with its own event loop (anything that may block, such
 * as reading files or resolving names).
 *
 * Calls that a service may make from its thread: sl_upstream_set_servers() and the
 * server state calls below, which are thread-safe. */
#ifndef SLUICE_SERVICE_H
#define SLUICE_SERVICE_H

#include <stddef.h>

struct event_base;

#define SL_SERVICE_MAX 32

struct sl_service {
	const char *name;	  /* for logs */
	int own_thread;		  /* 1: its own thread and event loop; 0: the main thread's */
	unsigned int interval_ms; /* tick() every interval; 0 = no tick */
	/* After the workers started, on the service's thread, with its loop: 0 to run, a
	 * negative errno to give up (logged; the daemon goes on without the service). */
	int (*start)(struct event_base *base, void *data);
	void (*tick)(void *data);
	/* On shutdown, on the service's thread, after its last tick. */
	void (*stop)(void *data);
	void *data;
};

/* Register a service (the struct is copied). 0, -ENOSPC past SL_SERVICE_MAX, -EINVAL
 * without a name or with nothing to run, -EBUSY once the daemon started its services. */
int sl_service_add(const struct sl_service *svc);

/* One server of an upstream, for sl_upstream_set_servers(). */
struct sl_server_spec {
	const char *address; /* "host:port", "[v6]:port" */
	unsigned int weight; /* 1..1000; 0 = 1 */
};

/* Replace the server list of a running upstream (what PUT /upstreams/NAME does): built
 * and checked whole (host names are resolved here, on the caller's thread: call it
 * from an own-thread service, never from the main loop, when addresses are names), then published to the workers at once; servers whose address stays
 * keep their health, state and counters; requests in flight finish on the list they
 * started with. Any thread. 0, or a negative errno with the reason in err (nothing
 * changed): -ENOENT unknown upstream, -EINVAL bad, duplicate or no address. */
int sl_upstream_set_servers(const char *upstream, const struct sl_server_spec *servers,
			    unsigned int n, char *err, size_t errlen);

#endif
