/* Host-name resolution for the admin API, off the main thread: the "resolver" background
 * service (a thread of its own) runs getaddrinfo() (through sl_parse_addr, the config
 * loader's own parser, so a name means the same in the file and in the API) and hands
 * each finished job back to the main loop through an eventfd. A slow or dead DNS server
 * then delays only the request that named a host, never the admin API, signals, reloads,
 * /metrics or health checks. */
#ifndef SL_ADMIN_RESOLVER_H
#define SL_ADMIN_RESOLVER_H

#include <stdatomic.h>
#include <sys/socket.h>

struct event_base;

#define SL_RESOLVE_CANCELLED 1
#define SL_RESOLVE_WORKING 2

struct sl_resolve_job {
	unsigned int n;
	const char *const *names;      /* "host:port", the submitter's, n of them */
	struct sockaddr_storage *addr; /* results, n of them (the submitter's) */
	socklen_t *len;
	int *rc;	   /* per name: sl_parse_addr()'s 0 or -errno */
	/* 0 running; SL_RESOLVE_CANCELLED: the submitter gave up (names not resolved yet are
	 * skipped, work is not run); SL_RESOLVE_WORKING: work has begun (no giving up now) */
	atomic_int cancel;
	/* Optional, on the resolver thread once every name resolved (also with none): the
	 * part of the job that may take long (building large balancer tables). Runs only
	 * after claiming the job (cancel 0 -> SL_RESOLVE_WORKING). */
	void (*work)(struct sl_resolve_job *j, void *arg);
	/* On the main loop when the job is through (also cancelled ones): the job is the
	 * submitter's again. */
	void (*done)(struct sl_resolve_job *j, void *arg);
	void *arg;
	struct sl_resolve_job *next;
};

/* Register the service (before the daemon starts its services). 0 or -errno. */
int sl_resolver_register(void);
/* Deliver finished jobs on this loop (the main one; before any submit). 0 or -errno. */
int sl_resolver_attach(struct event_base *main_base);
/* Stop delivering (the main loop is ending): jobs not delivered are dropped here, their
 * submitter frees them. */
void sl_resolver_detach(void);
/* Queue j (FIFO). 0; -ENOTCONN when the service is not running or no loop is attached. */
int sl_resolve_submit(struct sl_resolve_job *j);

#endif
