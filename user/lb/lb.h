/* Live upstream state and load balancing.
 *
 * An upstream's servers live apart from the config snapshot, in three layers:
 *   struct sl_upstream  one per upstream name, kept across reloads while the name exists:
 *                       the published set, health-check settings, per-worker holds;
 *   struct sl_upset     one immutable server list with its balancer tables (what a PUT
 *                       or a reload swaps in), refcounted, freed after its last request;
 *   struct sl_server    one server's shared state (admin state, health, in-flight count,
 *                       ejection, EWMA, counters), refcounted and carried from set to set
 *                       while the address stays, so health and counters survive swaps.
 *
 * Publication copies the config snapshot's scheme: the main thread gives each worker its
 * own reference in a pending slot (atomic exchange); the worker takes it on its next pick
 * and counts requests on a per-worker hold without atomics. A request keeps its set until
 * it ends, retries included. */
#ifndef SL_LB_H
#define SL_LB_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>

#include "config/config-t.h"
#include "sluice_common.h"

enum sl_srv_admin {
	SL_SRV_ENABLED = 0,
	SL_SRV_DRAINING, /* no new requests; in-flight ones and pooled connections finish */
	SL_SRV_DISABLED, /* no new requests, no health checks */
};

struct sl_server {
	atomic_int refcnt;
	char address[64]; /* as written: "host:port" or "[v6]:port" */
	struct sockaddr_storage addr;
	socklen_t addrlen;
	_Atomic int admin;	      /* enum sl_srv_admin */
	_Atomic int down;	      /* the active check says down */
	atomic_uint inflight;	      /* requests on it right now, all workers */
	_Atomic uint64_t ejected_until; /* sl_mono_ns(); passive ejection */
	_Atomic uint64_t ramp_from;	/* slow start began (sl_mono_ns()), 0 = full weight */
	atomic_uint consec_5xx, consec_connect;
	atomic_uint times_ejected;
	_Atomic uint64_t ewma_ns, ewma_at; /* peak EWMA of response time, last update */
	/* counters */
	_Atomic uint64_t requests, connect_failures, resp_5xx, ejections;
	_Atomic uint64_t hc_ok, hc_fail, hc_tls_fail; /* tls_fail: also counted in hc_fail */
	/* health-check progress, written by the health service only */
	unsigned int hc_up_streak, hc_down_streak;
	uint64_t hc_next; /* next check (sl_mono_ns()), 0 = not scheduled yet */
	int hc_busy;	  /* a check is running */
	char hc_last[96]; /* last check failure, for /upstreams */
	_Atomic int hc_seen;  /* the health service checked it at least once */
};

struct sl_set_srv {
	struct sl_server *s;
	unsigned int weight;
};

struct sl_upset {
	atomic_int refcnt;
	struct sl_lb_policy pol; /* copied: a set outlives the snapshot it came from */
	char *hash_name;	 /* pol.hash_name's copy */
	unsigned int n;
	struct sl_set_srv *srv;
	unsigned int weight_sum;
	/* smooth weighted round robin schedule, also the weighted sample for random_two/ewma */
	atomic_uint *cursor; /* own cache line */
	uint32_t *sched;
	unsigned int sched_len;
	int32_t *maglev; /* maglev: table of pol.table_size entries */
	struct sl_ring_pt {
		uint32_t h, i;
	} *ring; /* ketama: sorted points */
	unsigned int ring_len;
	uint32_t *addr_idx; /* open addressing, 2^k >= 2n slots of index + 1: by address */
	unsigned int addr_mask;
	uint64_t version;
};

/* A worker's hold on one set (see the top of this file). */
struct sl_set_hold {
	struct sl_upset *set;
	unsigned int users;
	int current;
	struct sl_set_hold *next;
};

struct sl_ups_slot {
	_Alignas(64) _Atomic(struct sl_upset *) pending;
	struct sl_set_hold *hold; /* current */
	struct sl_set_hold *old;  /* older ones still used by requests */
};

struct sl_upstream {
	atomic_int refcnt;
	char *name;
	pthread_mutex_t pub;  /* serialises publications (admin API, services, reloads) */
	pthread_mutex_t lock; /* cur, hc, file_sig; ejection decisions */
	struct sl_upset *cur; /* the published set (its reference) */
	struct sl_conf_hc hc; /* copied from the latest snapshot (strings owned here) */
	struct sl_conf_up_tls tls; /* the same: health checks speak TLS when requests do */
	struct sl_conf_via_proxy via; /* and go through the CONNECT proxy requests use */
	uint64_t file_sig;    /* the file's server list the last load saw */
	uint64_t version;     /* bumped by each publication */
	unsigned int n_workers;
	atomic_uint inflight; /* all servers, for bounded load */
	_Atomic uint64_t nousable_logged;
	uint64_t noeject_logged; /* under lock: "server not ejected", once a second */
	_Atomic uint64_t nousable; /* requests that found no usable server */
	struct sl_ups_slot w[SL_MAX_WORKERS];
};

/* What ended an attempt on a server (passive health, EWMA). */
enum sl_lb_outcome {
	SL_LB_NONE = 0,	   /* no verdict (retried on a stale pooled connection, cancelled) */
	SL_LB_CONNECT_FAIL, /* connect refused, reset or timed out */
	SL_LB_RESPONSE,	    /* a response head arrived: status and time decide */
	SL_LB_TIMEOUT,	    /* no response within the timeout */
};

#define SL_TRIED_MAX 16 /* servers one request may try */

/* Per request: the hold on its set, the servers tried, the open attempt. */
struct sl_lb_req {
	struct sl_upstream *u;
	struct sl_set_hold *hold;
	unsigned int worker;
	int cur; /* server index (in hold->set) of the attempt counted in flight, -1 none */
	uint8_t n_tried, n_tried_prev;
	uint32_t tried[SL_TRIED_MAX]; /* a small set: at most SL_TRIED_MAX picks a request */
	uint32_t rr_at; /* round robin: schedule position of the last pick (retries go on
			 * from there without moving the shared cursor) */
	uint64_t t_pick;
};

/* ---- registry and publication (main thread unless said otherwise) ---- */

/* Attach the upstreams of snapshot c to their live objects (creating those of new names,
 * dropping names c no longer has) and publish their sets. A name's server list follows
 * the file when the file's list changed since the last load; otherwise the list in force
 * (maybe changed through the admin API) stays, with c's balancer settings. Servers whose
 * address stays keep their state. 0, or -errno with the reason in err (nothing changed). */
int sl_lb_attach(struct sl_conf *c, unsigned int n_workers, char *err, size_t errlen);
/* Release every live upstream (daemon exit). */
void sl_lb_registry_clear(void);
/* The live upstream of that name, with a reference (sl_upstream_put), or NULL. Any thread. */
struct sl_upstream *sl_upstream_lookup(const char *name);
/* Every live upstream, referenced; *n set. Free the array after putting each. */
struct sl_upstream **sl_upstream_all(unsigned int *n);
void sl_upstream_get(struct sl_upstream *u);
void sl_upstream_put(struct sl_upstream *u);

/* A new server list for u, built with the policy of its current set. servers[] entries
 * whose address is in the current set reuse its state. 0, or -errno with err (nothing
 * changed): duplicate or invalid address, none at all, over SL_CONF_MAX_SERVERS. */
int sl_upstream_replace(struct sl_upstream *u, const struct sl_conf_server *servers,
			unsigned int n, char *err, size_t errlen);
/* Add one server / remove one (by parsed address) under the publication lock, so a
 * concurrent replace cannot be lost. 0; -EEXIST already there; -ENOENT not there;
 * -ENOTEMPTY it is the last one; -EINVAL (err says why). */
int sl_upstream_add_server(struct sl_upstream *u, const struct sl_conf_server *cs, char *err,
			   size_t errlen);
int sl_upstream_del_server(struct sl_upstream *u, const struct sockaddr_storage *ss,
			   socklen_t len, char *err, size_t errlen);
/* The current set, referenced (sl_upset_put). Any thread. */
struct sl_upset *sl_upstream_current(struct sl_upstream *u);
void sl_upset_get(struct sl_upset *s);
void sl_upset_put(struct sl_upset *s);
/* Index of the server at that address in s, or -1 (parsed address compared). */
int sl_upset_find(const struct sl_upset *s, const struct sockaddr_storage *ss, socklen_t len);

/* Build a set (exported for tests and the health service): servers referenced, balancer
 * tables computed. NULL with err on failure. */
struct sl_upset *sl_upset_build(const struct sl_lb_policy *pol, struct sl_server **srv,
				const unsigned int *weights, unsigned int n, char *err,
				size_t errlen);
struct sl_server *sl_server_new(const char *address, const struct sockaddr_storage *ss,
				socklen_t len);
void sl_server_put(struct sl_server *s);

/* ---- worker side ---- */

/* Take the request's hold on u's set (worker thread). */
void sl_lb_req_begin(struct sl_lb_req *q, struct sl_upstream *u, unsigned int worker);
/* Pick a server for the request (skipping tried and unusable ones); key is the request's
 * hash key (used by maglev and ketama). The previous attempt, if still counted, ends with
 * no verdict. Index in q->hold->set, or -EAGAIN when no usable server is left. */
int sl_lb_pick(struct sl_lb_req *q, uint64_t key, uint64_t now);
/* The open attempt ended: in-flight count drops, outcome feeds passive health and EWMA. */
void sl_lb_attempt_end(struct sl_lb_req *q, enum sl_lb_outcome o, int status, uint64_t rtt_ns,
		       uint64_t now);
/* Record an outcome without ending the attempt (the response head arrived; the body
 * still streams on the server). */
void sl_lb_report(struct sl_lb_req *q, enum sl_lb_outcome o, int status, uint64_t rtt_ns,
		  uint64_t now);
/* The last pick is forgotten (a stale pooled connection: same server, new socket). */
void sl_lb_untry_last(struct sl_lb_req *q);
/* Usable servers this request has not tried. */
unsigned int sl_lb_untried(const struct sl_lb_req *q, uint64_t now);
/* The request ends: attempt closed, hold released. */
void sl_lb_req_end(struct sl_lb_req *q);
/* 1 when the request's server is no longer in its upstream's current set (its
 * connection should not be pooled). */
int sl_lb_req_server_gone(const struct sl_lb_req *q);
/* 1 when the status is in the policy's retry_on. */
int sl_lb_retry_on(const struct sl_lb_req *q, int status);

/* A server can take new requests now. */
int sl_server_usable(const struct sl_server *s, uint64_t now);
const char *sl_server_state(const struct sl_server *s, uint64_t now);

/* Rate-limited (once a second per upstream) "no usable server" log line. */
void sl_lb_log_nousable(struct sl_upstream *u, uint64_t now);

/* ---- active health checks (lb/health.c): the "health" background service ---- */
struct sl_peer;
struct ssl_ctx_st;
/* The client TLS context for a peer's trust and identity, or NULL with err: the upstream
 * connector's (so checks and requests verify alike); lb/ sits below upstream/ and is
 * handed it. NULL: TLS upstreams are checked with the handshake failing "no TLS". */
typedef struct ssl_ctx_st *(*sl_health_tls_ctx_fn)(const struct sl_peer *p, char *err,
						    size_t errlen);
int sl_health_register(sl_health_tls_ctx_fn tls_ctx);

#endif
