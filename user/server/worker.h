/* Workers: one thread per CPU, pinned, each with its own event_base, listening
 * sockets (SO_REUSEPORT), buffers, upstream pool and access log. */
#ifndef SL_WORKER_H
#define SL_WORKER_H

#include <event2/event.h>
#include <event2/event_struct.h>
#include <pthread.h>
#include <stdatomic.h>

#include "config/config-t.h"
#include "server/control.h"
#include "core/histo.h"
#include "core/list.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/slab.h"
#include "sluice_common.h"
#include "sluice/sluice.h"
#include "upstream/connector.h"

struct sl_session;
struct sl_request;
struct sl_daemon;
struct sl_listen;
struct sl_worker;

/* What a listener's connections are (proxy/session.c: HTTP/1). The worker accepts and
 * ticks and calls these; it knows nothing else of them. */
struct sl_conn_handler {
	void (*init)(struct sl_worker *w); /* the worker starts: its per-worker state */
	void (*accept)(struct sl_worker *w, struct sl_listen *l, int fd,
		       const struct sockaddr_storage *sa, socklen_t salen);
	void (*drain)(struct sl_worker *w);		     /* close idle, finish the rest */
	/* the same for the connections of one listener a reload removed */
	void (*drain_listener)(struct sl_worker *w, struct sl_listen *l);
	void (*expire)(struct sl_worker *w, uint64_t now_ns); /* the tick: idle timeouts */
	void (*trim)(struct sl_worker *w);		     /* quiet: shrink free lists */
	void (*close_all)(struct sl_worker *w);		     /* fast exit, in the thread */
};

/* A worker's hold on one config snapshot: requests count users locally, so the
 * shared refcount moves only when a worker switches snapshots. (This replaces the
 * liburcu QSBR publication of the original design: requests outlive loop turns, so
 * a per-turn grace period could free a snapshot under a running request; see
 * docs/architecture.md.) */
struct sl_conf_hold {
	struct sl_conf *conf;
	unsigned int users;
	struct sl_conf_hold *next;
};

struct sl_listen {
	int fd;		    /* -1 once closed; read by rescuing workers (sl_listen_borrow) */
	unsigned int users; /* other workers accepting on fd right now */
	unsigned int index; /* slot: conf->slot_index[index] is its listener in a snapshot */
	int armed;	    /* ev assigned (the worker took the slot up) */
	/* TLS connections whose handshake is not done yet, oldest first (the handshake
	 * timeout, like the idle lists: expired by the tick, no timer event each) */
	struct sl_list hs;
	struct event ev;
	struct sl_worker *w;
};

struct sl_worker {
	unsigned int id;
	int cpu; /* -1 = not pinned */
	pthread_t thread;
	struct sl_daemon *d;
	struct event_base *base;
	int ctl_fd; /* eventfd: the main thread pokes the worker (reload, stop) */
	struct event ctl_ev;
	struct event tick_ev;
	struct sl_listen lsn[SL_MAX_LISTENERS];
	unsigned int n_lsn;
	struct sl_conf_hold *hold;     /* current snapshot */
	struct sl_conf_hold *old_hold; /* older ones still used by requests */
	/* Published snapshot this worker has not switched to yet, with the reference the
	 * publisher took for it: the worker takes pointer and reference in one exchange. */
	_Atomic(struct sl_conf *) pending;
	struct sl_mem mem;
	struct sl_alog alog;
	uint64_t alog_flushed_ns;
	uint64_t rescue_logged_ns[64]; /* last "stalled" log line per peer worker */
	struct sl_connector up; /* upstream connections: pool, wait queue, connects */
	struct sl_slab session_slab; /* client sessions, packed apart from request churn */
	struct sl_slab request_slab; /* request objects (and the proxy's ctx after each) */
	struct sl_request *free_requests; /* request objects, recycled like sessions */
	unsigned int n_free_requests;
	uint64_t trim_requests, trim_active, trim_quiet_since; /* quiet spells, for trims */
	struct sl_list sessions; /* live client connections, for draining */
	/* connections without a request (no first byte yet, or kept alive), each list in
	 * deadline order (one timeout for all): expired by the tick, no timer event each */
	struct sl_list idle[2];
	unsigned int n_sessions;
	/* request time (first byte to response done) and upstream time (first attempt
	 * to response head), for /metrics; written by this worker only */
	struct sl_histo lat_request, lat_upstream;
	/* Accepting: off while the worker holds max_conns client connections (they wait in
	 * the kernel's backlog, steering sends new ones elsewhere) and for a short back-off
	 * after accept4() ran out of fds or memory. */
	unsigned int max_conns;	 /* this worker's share of limits.max_connections */
	unsigned int accept_off; /* SL_ACCEPT_* reasons accepting is paused */
	struct event backoff_ev;
	int draining;
	struct timeval tv_header, tv_keepalive, tv_body, tv_connect, tv_resp, tv_upidle;
	const struct timeval *ct_header, *ct_keepalive, *ct_body, *ct_connect, *ct_resp,
	    *ct_upidle; /* libevent common timeouts: O(1) timer queue inserts */
	/* this worker's slot of the mmaped worker_stats map, or st_local without BPF */
	struct sl_worker_stats *st;
	struct sl_worker_state *state; /* slot of the workers map, or state_local */
	struct sl_worker_stats st_local;
	struct sl_worker_state state_local;
	atomic_uint stall_ms; /* admin /debug/stall: block the loop this long when poked */
	atomic_uint burn_ms;  /* admin /debug/burn: keep the loop busy this long, in slices */
	uint64_t burn_until_ns; /* the burn in progress: loop turns spin until then */
	struct event burn_ev;	/* a zero timeout that re-arms itself while burning */
	/* load publication (publish_load in worker.c) */
	int schedstat_fd;		  /* /proc/thread-self/schedstat of the loop thread, or -1 */
	uint64_t load_ns, run_ns, wait_ns; /* at the last publication */
	unsigned int busy_pm;		  /* smoothed, what the slot holds */
	/* draining after an upgrade's hand-over: idle connections are closed only once
	 * quiet for SL_SOFT_DRAIN_IDLE_NS (set by the main thread before it pokes) */
	atomic_int soft_drain;
};

#define SL_SOFT_DRAIN_IDLE_NS 1000000000ull

enum {
	SL_ACCEPT_FULL = 1,    /* at max_conns */
	SL_ACCEPT_BACKOFF = 2, /* accept4() failed with EMFILE, ENFILE, ENOBUFS or ENOMEM */
};


struct sl_daemon {
	const struct sl_proxy_ops *ops;
	const struct sl_conn_handler *handler; /* of every listener (HTTP/1 today) */
	_Atomic(struct sl_conf *) conf; /* current snapshot (main thread's reference) */
	struct sl_worker *workers;
	unsigned int n_workers;
	atomic_int stop; /* 0 run, 1 graceful, 2 fast */
	atomic_int live; /* workers still running */
	int alog_fd;
	char *alog_path; /* access log file, reopened on SIGUSR1; NULL = stdout or off */
	char reopen_err[256];
	const char *conf_path;
	struct event_base *base; /* main thread's loop: signals, admin API */
	uint64_t deadline_ms;	 /* graceful stop: when the grace period ends */
	unsigned int reloads;
	unsigned int reload_failures;
	int64_t last_reload_unix, start_unix;
	int last_reload_ok;
	char reload_err[SL_CONF_ERR_MAX];
	void *admin;		/* admin API state (admin/) */
	struct sl_spool *spool; /* shared overflow pool of idle upstream connections */
	int steering;		/* the BPF program steers; stalled workers are rescued */
	uint64_t stall_ns;
	uint64_t nofile;	     /* RLIMIT_NOFILE soft limit the daemon runs with */
	unsigned int auto_max_conns; /* limits.max_connections when the config has none */
	int pin_lock_fd;	     /* flock on the pin directory while steering, or -1 */
	struct sl_inherit *inherit;  /* start-up of an upgrade's successor, else NULL */
	int admin_takeover;	     /* the admin socket path is the predecessor's: replace it */
	int handed_over;	     /* a successor serves: this daemon drains */
};

int sl_worker_start(struct sl_worker *w);
/* Main thread: re-read the config file and publish it. 0, or -errno with the reason
 * in d->reload_err (the old config keeps serving). */
int sl_daemon_reload(struct sl_daemon *d);
/* Main thread: reopen the error and access log files at their paths (SIGUSR1). 0, or
 * -errno with the reason in d->reopen_err (the old files stay in use). */
int sl_daemon_reopen_logs(struct sl_daemon *d);
/* Main thread: start a binary upgrade (SIGUSR2, POST /upgrade); binary NULL = this
 * daemon's own path. 0 once the successor runs, or -errno with why (logged). */
int sl_daemon_upgrade(struct sl_daemon *d, const char *binary, char *why, size_t len);
/* Main thread: the successor is ready; stop serving and drain (server/upgrade.c). */
void sl_daemon_handed_over(struct sl_daemon *d);
/* The admin API's TCP listening socket, or -1 (for the hand-over). */
int sl_daemon_admin_fd(struct sl_daemon *d);
/* The admin API's Unix listening socket and its path (into path), or -1. */
int sl_daemon_admin_unix_fd(struct sl_daemon *d, char *path, size_t len);
/* Free what the worker owns once its thread has been joined. */
void sl_worker_destroy(struct sl_worker *w);
/* Ask a worker to look at d->stop and its pending config again (any thread). */
void sl_worker_poke(struct sl_worker *w);
/* Open the listening sockets of conf for one worker (SO_REUSEPORT) in slots 0..n-1,
 * except the slots that already hold a socket (handed over by a predecessor). */
int sl_worker_listen(struct sl_worker *w, const struct sl_conf *conf);
/* One listening socket (SO_REUSEPORT, backlog 4096, non-blocking): fd or -errno (logged
 * with name). */
int sl_listen_open(const struct sockaddr *sa, socklen_t len, const char *name);
/* Main thread, before the snapshot serving it is published: slot of w gets fd. */
void sl_listen_set(struct sl_worker *w, unsigned int slot, int fd);

/* Main thread: hand c to worker w (takes a reference for it; a snapshot w never picked
 * up is released). Poke the worker afterwards. */
void sl_worker_publish(struct sl_worker *w, struct sl_conf *c);
/* Worker thread: the snapshot published since the last call, with its reference (now
 * the caller's), or NULL. */
struct sl_conf *sl_worker_take_conf(struct sl_worker *w);

/* Another worker's listening socket, for accepting from its queue: its fd, open until
 * sl_listen_return(), or -1 once its owner closed it (then do not return it). */
int sl_listen_borrow(struct sl_listen *l);
void sl_listen_return(struct sl_listen *l);
/* Owner: close the listening socket, after any borrower is done with it. */
void sl_listen_close(struct sl_listen *l);

/* limits.max_connections derived from an open file limit: room for each client
 * connection's upstream connection and a reserve for listeners, logs, epoll and BPF. */
unsigned int sl_worker_auto_max_conns(uint64_t nofile, unsigned int n_workers,
				      unsigned int n_listeners);
/* Worker i's share of a process-wide connection cap (at least 1). */
unsigned int sl_worker_conn_share(unsigned int total, unsigned int n_workers, unsigned int i);

/* Size of the big buffer class that c's max_header_bytes needs. */
size_t sl_worker_big_size(const struct sl_conf *c);

/* Request-scope config: take the current snapshot / let it go. */
struct sl_conf_hold *sl_worker_conf_get(struct sl_worker *w);
void sl_worker_conf_put(struct sl_worker *w, struct sl_conf_hold *h);

/* Called by sessions when they end (drain bookkeeping). */
void sl_worker_session_gone(struct sl_worker *w);

#endif
