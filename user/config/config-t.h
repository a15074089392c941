/* Types of the parsed configuration: one immutable snapshot per load.
 * A snapshot is shared read-only by every worker; its lifetime is its refcount. */
#ifndef SL_CONFIG_T_H
#define SL_CONFIG_T_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/log.h"	 /* enum sl_log_level */
#include "core/logfmt.h" /* struct sl_logfmt */
#include "sluice_common.h" /* SL_MAX_LISTENERS */

#define SL_CONF_ERR_MAX 512

struct sl_conf_header {
	char *name;
	char *value;
};

/* A fixed response served by the proxy itself (health endpoints, demo backends). */
struct sl_conf_respond {
	int status;
	struct sl_conf_header *headers;
	unsigned int n_headers;
	char *body;
	size_t body_len;
};

struct sl_conf_server {
	char *address; /* as written: "host:port" or "[v6]:port" */
	struct sockaddr_storage addr;
	socklen_t addrlen;
	unsigned int weight; /* 1..1000, default 1 */
};

struct sl_conf_pool {
	unsigned int max_idle_per_worker;   /* idle kept by each worker, default 128 */
	unsigned int max_idle_shared;	    /* idle kept in the shared overflow pool, 1024 */
	unsigned int idle_timeout;	    /* ms an idle connection is kept, 60s */
	unsigned int max_requests_per_conn; /* 0 = no limit */
	unsigned int
	    max_conns_per_server;   /* open connections per server, all workers; 0 = no limit */
	unsigned int queue_timeout; /* ms a request waits for a connection slot, 3s */
};

enum sl_balance {
	SL_BAL_ROUND_ROBIN = 0, /* smooth weighted round robin (default) */
	SL_BAL_LEAST_CONN,	/* fewest in-flight requests per weight, all workers */
	SL_BAL_RANDOM_TWO,	/* power of two (weighted) random choices on in-flight */
	SL_BAL_MAGLEV,		/* maglev lookup table on hash_key */
	SL_BAL_KETAMA,		/* consistent hash ring on hash_key, optional bounded load */
	SL_BAL_EWMA,		/* peak EWMA of response time x in-flight, failure penalty */
};

enum sl_hash_key {
	SL_HASH_CLIENT_IP = 0,
	SL_HASH_HEADER, /* header:NAME */
	SL_HASH_COOKIE, /* cookie:NAME */
	SL_HASH_URI,	/* the request target as received */
};

/* Passive health (outlier detection). Durations in ms. */
struct sl_conf_outlier {
	unsigned int consecutive_5xx;		   /* 0 = off (default 5) */
	unsigned int consecutive_connect_failures; /* 0 = off (default 5) */
	unsigned int base_ejection_time;	   /* 30s */
	unsigned int max_ejection_time;		   /* 300s */
	unsigned int max_ejection_percent;	   /* 10; at least one server always stays */
};

#define SL_RETRY_CONNECT_FAILURE 1u

/* Everything a server set needs from the config (copied into each set). */
struct sl_lb_policy {
	enum sl_balance balance;
	enum sl_hash_key hash_key;
	char *hash_name;		  /* header or cookie name */
	unsigned int table_size;	  /* maglev, prime, default 65537 */
	unsigned int hash_balance_factor; /* ketama bounded load in %, 0 = off, else > 100 */
	unsigned int slow_start;	  /* ms a recovered or added server ramps up, 0 = off */
	unsigned int ewma_decay;	  /* ms, 10s */
	unsigned int ewma_penalty;	  /* ms recorded for a failure, 1s */
	unsigned int retries;		  /* extra servers tried, default 1 */
	uint32_t retry_on;		  /* SL_RETRY_* */
	uint64_t retry_status[2];	  /* bit s-500 for statuses 500..599 in retry_on */
	struct sl_conf_outlier outlier;
};

enum sl_hc_type {
	SL_HC_NONE = 0,
	SL_HC_TCP,
	SL_HC_HTTP,
};

/* Active health checks. Durations in ms. */
struct sl_conf_hc {
	enum sl_hc_type type;
	unsigned int interval; /* 5s */
	unsigned int timeout;  /* 2s */
	unsigned int rise;     /* successes to mark a down server up, 2 */
	unsigned int fall;     /* failures to mark an up server down, 3 */
	char *method;	       /* GET */
	char *path;	       /* / */
	char *host;	       /* Host header; NULL = the server address */
	char *body;	       /* substring the body must hold; NULL = any */
	int status_lo, status_hi; /* expected status range, 200..399 */
};

/* upstreams.NAME.tls: TLS to the servers. Files are checked when the config loads. */
struct sl_conf_up_tls {
	int on;
	int verify;	       /* default true */
	char *ca;	       /* NULL = the system store */
	char *verify_hostname; /* NULL = the sni */
	char *sni;	       /* NULL = host part of each server address if a name; "" = none */
	char *client_cert, *client_key;
};

/* upstreams.NAME.via_proxy: an HTTP CONNECT proxy in front of the servers. */
struct sl_conf_via_proxy {
	char *address; /* NULL = direct */
	struct sockaddr_storage addr;
	socklen_t addrlen;
	char headers[512]; /* "Name: value\r\n" lines sent with CONNECT */
};

struct sl_conf_upstream {
	char *name;
	struct sl_conf_server *servers;
	unsigned int n_servers;
	unsigned int retries; /* extra servers tried after a failed attempt, default 1 */
	struct sl_conf_pool pool;
	struct sl_conf_up_tls tls;
	struct sl_conf_via_proxy via;
	unsigned int index; /* position in sl_conf.upstreams */
	struct sl_lb_policy lb;
	struct sl_conf_hc hc;
	/* live state (lb/: struct sl_upstream), one reference per snapshot */
	void *live;
	void (*live_put)(void *live);
};

/* cache.zones.NAME: one in-memory store, shared by every worker (user/cache/store.h). */
struct sl_conf_cache_zone {
	char *name;
	uint64_t max_size;	  /* bytes, metadata included (default 256m) */
	uint64_t max_object_size; /* body bytes of one object (default 8m) */
	unsigned int shards;	  /* default 16 */
	unsigned int max_variants; /* Vary variants per key (default 8) */
};

struct sl_conf_cache {
	struct sl_conf_cache_zone *zones;
	unsigned int n_zones;
};

struct sl_ckey_tpl; /* cache/key.h */

#define SL_CACHE_M_GET 0x1
#define SL_CACHE_M_HEAD 0x2

/* A route's cache: settings (durations in ms). */
struct sl_conf_route_cache {
	char *zone_name;
	const struct sl_conf_cache_zone *zone;
	char *key; /* template text */
	struct sl_ckey_tpl *tpl;
	unsigned int lock_timeout; /* a waiter's limit, then it goes to the origin (5s) */
	unsigned int lock_age;	   /* a writer's limit, then one more request may write (5s) */
	unsigned int swr, sie;	   /* stale-while-revalidate / stale-if-error (0) */
	unsigned int methods;	   /* SL_CACHE_M_* (GET and HEAD) */
	char *status_header;	   /* e.g. "X-Cache"; NULL = none */
};

enum sl_route_action {
	SL_ROUTE_PROXY = 0,
	SL_ROUTE_RESPOND,
};

struct sl_conf_route {
	char *host;	   /* NULL = any; "example.com" exact; "*.example.com" suffix */
	int host_wildcard; /* host began with "*." : host holds ".example.com" */
	char *path;	   /* prefix, default "/" */
	size_t path_len;
	enum sl_route_action action;
	char *upstream_name;
	struct sl_conf_upstream *upstream; /* resolved from upstream_name */
	struct sl_conf_respond respond;
	struct sl_conf_route_cache *cache; /* NULL: not cached */
};

/* listeners[].tls.certificates[]: a leaf and its chain (PEM) and its key, checked when
 * the config loads (files readable, key matching, leaf not expired). */
struct sl_conf_tls_cert {
	char *cert, *key;
	unsigned int line, col; /* of the entry, for messages about it */
};

enum sl_client_auth {
	SL_CLIENT_AUTH_NONE = 0,
	SL_CLIENT_AUTH_OPTIONAL, /* asked for; a certificate given must verify */
	SL_CLIENT_AUTH_REQUIRED, /* no verified certificate, no handshake */
};

#define SL_TLS_MAX_CERTS 64
/* session ticket keys: 16 bytes name, 32 HMAC-SHA256, 32 AES-256 (nginx's 80-byte form) */
#define SL_TICKET_KEY_LEN 80
#define SL_TICKET_FILE_MAX (8 * SL_TICKET_KEY_LEN)

/* listeners[].tls: TLS termination. The OpenSSL contexts built from it (tls/server.c)
 * hang off srv, one set per snapshot: a reload builds new ones, connections keep theirs. */
struct sl_conf_listener_tls {
	struct sl_conf_tls_cert *certs;
	unsigned int n_certs;
	int min_version;    /* TLS1_2_VERSION (default) or TLS1_3_VERSION */
	char *ciphers;	    /* TLS 1.2 cipher list; NULL = the safe default */
	char *ciphersuites; /* TLS 1.3 suites; NULL = OpenSSL's (all AEAD) */
	char *groups;	    /* key exchange groups; NULL = X25519:P-256 */
	unsigned char alpn[64]; /* wire format (length-prefixed names); default http/1.1 */
	unsigned int alpn_len;
	int tickets;		  /* session_tickets.enabled, default true */
	unsigned int ticket_rotate; /* ms, default 12h */
	char *ticket_key_file;	  /* NULL = keys made in memory */
	enum sl_client_auth client_auth;
	char *client_ca;
	unsigned int client_depth; /* default 3 */
	char *subject_header;	   /* default X-Client-Subject */
	char *fingerprint_header;  /* default X-Client-Fingerprint */
	unsigned int handshake_timeout; /* ms, default 10s */
	void *srv;		  /* struct sl_tls_srv (tls/server.h), owned by this snapshot */
	void (*srv_free)(void *srv);
};

struct sl_conf_listener {
	char *address; /* as written */
	struct sockaddr_storage addr;
	socklen_t addrlen;
	struct sl_conf_route *routes;
	unsigned int n_routes;
	struct sl_conf_listener_tls *tls; /* NULL: plain TCP */
};

struct sl_conf_limits {
	unsigned int max_header_count; /* default 100, at most 256 */
	size_t max_header_bytes;       /* default 32 KiB, at most 1 MiB */
	size_t max_target_length;      /* default 8 KiB */
	uint64_t max_body_size;	       /* 0 = unlimited (default) */
	unsigned int max_connections;  /* client connections per process, split across the
					* workers; 0 = derived from the open file limit */
};

/* All durations in milliseconds. */
struct sl_conf_timeouts {
	unsigned int client_header;	       /* 10s */
	unsigned int client_keepalive;	       /* 60s */
	unsigned int client_body;	       /* 60s between body reads; also the send timeout */
	unsigned int upstream_connect;	       /* 3s */
	unsigned int upstream_response_header; /* 60s */
	unsigned int upstream_idle;	       /* 60s between response reads */
};

struct sl_conf_forwarded {
	int x_forwarded_for;   /* default on */
	int x_forwarded_proto; /* default on */
	int x_forwarded_host;  /* default on */
	int x_request_id;      /* SL_REQID_*: X-Request-Id sent upstream, default off */
};

enum {
	SL_REQID_OFF = 0,  /* nothing forwarded ($request_id is still generated for logs) */
	SL_REQID_KEEP,	   /* a well-formed incoming X-Request-Id is kept, else generated */
	SL_REQID_GENERATE, /* always a new one, replacing the client's */
};

struct sl_conf_log {
	enum sl_log_level level;	    /* default info */
	char *error_log;		    /* path, or NULL = stderr */
	char *access_log;		    /* path, "stdout", or NULL = off */
	struct sl_logfmt access_log_format; /* compiled; default sl_logfmt_default */
};

enum sl_bpf_mode {
	SL_BPF_AUTO = 0, /* use it when it loads; one log line and carry on when it does not */
	SL_BPF_REQUIRED, /* refuse to start without it */
	SL_BPF_OFF,
};

enum sl_load_signal {
	SL_LOAD_BOTH = 0,    /* connections, and the loop's busy ratio */
	SL_LOAD_CONNECTIONS, /* open + queued + steered since the last beat */
	SL_LOAD_CPU,	     /* loop thread run + runqueue wait time, per mille */
};

struct sl_conf_bpf {
	enum sl_bpf_mode steering;	   /* default auto */
	char *pin_path;			   /* default /sys/fs/bpf/sluice */
	unsigned int stall_ms;		   /* heartbeat older than this: no new connections (200) */
	unsigned int heartbeat_ms;	   /* 10 */
	unsigned int max_conns_per_worker; /* 0 = no cap */
	int locality;			   /* 1 prefer the SYN's CPU's worker (default), 0 off */
	unsigned int load_margin;	   /* percent above the least loaded: too busy (1000) */
	enum sl_load_signal load_signal;   /* what "load" is (connections) */
	int workers_pin;		   /* pin worker i to the i-th CPU (default true) */
};

struct sl_conf_admin {
	char *socket; /* Unix socket path (mode 0600); NULL = none */
	char *listen; /* "127.0.0.1:9180" loopback TCP; NULL = none */
	struct sockaddr_storage listen_addr;
	socklen_t listen_addrlen;
	char *token;	  /* bearer token, required with listen (inline or from token_file) */
	char *token_file; /* where token was read from, at each load */
	int allow_remote; /* listen may be a non-loopback address */
	int debug;   /* enables /debug/ endpoints (e.g. stalling a worker) */
};

/* Who the daemon runs as once it has bound its listeners and loaded BPF
 * (server/privdrop.c). Resolved at load, so `sluiced -t` refuses an unknown user. */
struct sl_conf_process {
	char *user;	       /* NULL = stay as started (no drop) */
	char *group;	       /* NULL = the user's primary group */
	unsigned int uid, gid; /* resolved from user / group */
	int named;	       /* the user has a passwd entry (supplementary groups) */
	uint64_t keep_caps;    /* bit CAP_x: capabilities kept after the drop (default none) */
};

struct sl_conf {
	atomic_int refcnt;
	char *path;		     /* file it came from */
	int workers;		     /* 0 = auto: one per online CPU */
	unsigned int shutdown_grace; /* ms, default 30s */
	struct sl_conf_log log;
	struct sl_conf_limits limits;
	struct sl_conf_timeouts timeouts;
	struct sl_conf_forwarded forwarded;
	struct sl_conf_bpf bpf;
	struct sl_conf_admin admin;
	struct sl_conf_process proc;
	struct sl_conf_listener *listeners;
	unsigned int n_listeners;
	/* Workers keep their listening sockets in fixed slots that outlive snapshots (a
	 * reload may add and remove listeners): slot_index[slot] is the listener of this
	 * snapshot served on that slot, -1 = none. Identity when loaded; the daemon
	 * rewrites it before it publishes a reloaded snapshot. */
	int8_t slot_index[SL_MAX_LISTENERS];
	struct sl_conf_upstream *upstreams;
	unsigned int n_upstreams;
	struct sl_conf_cache cache;
};

#endif
