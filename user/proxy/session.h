/* A client connection and the request it is proxying: the data path of a worker.
 * A session and everything it points to is owned by one worker thread. */
#ifndef SL_SESSION_H
#define SL_SESSION_H

#include <event2/event_struct.h>
#include <netinet/in.h>
#include <stdint.h>
#include <time.h>

#include "http/http.h"
#include "lb/lb.h"
#include "net/addr.h"
#include "server/worker.h"
#include "sluice/sluice.h"
#include "upstream/connector.h"

/* An input buffer read from one side and forwarded to the other:
 *   [0, rd)      done with (for the request: its head, kept until the request ends)
 *   [rd, fwd)    parsed and ready to be written to the other side
 *   [fwd, parse) parsed but not forwarded (chunk framing removed when de-chunking)
 *   [parse, wr)  received, not parsed yet (for the request: maybe the next one)  */
struct sl_iob {
	char *data;
	uint32_t cap;
	uint8_t cls; /* enum sl_mem_class */
	uint32_t rd, fwd, parse, wr;
};

enum sl_sess_state {
	SS_IDLE = 0, /* keep-alive, waiting for a request */
	SS_HEAD,     /* reading a request head */
	SS_PROXY,    /* request accepted: connecting, sending, receiving */
	SS_TUNNEL,   /* after 101 Switching Protocols */
	SS_CLOSING,  /* last bytes of a local response, then close */
	SS_HANDSHAKE, /* TLS listener: the handshake is not done yet */
	SS_LINGER,    /* answered and shut for writing: client bytes read and dropped until
		       * its FIN, so the close does not reset the answer it has not read */
};

enum sl_timer_kind {
	ST_NONE = 0,
	ST_KEEPALIVE,
	ST_HEADER,
	ST_BODY,
	ST_CONNECT,
	ST_RESPONSE,
	ST_UPIDLE,
	ST_TUNNEL,
	ST_QUEUE, /* waiting for a connection slot */
	ST_SEND,  /* response bytes waiting for a client that does not read */
};

enum sl_body_mode {
	BM_NONE = 0, /* no body */
	BM_RAW,	     /* Content-Length or chunked, forwarded byte for byte */
	BM_DECHUNK,  /* chunked response to an HTTP/1.0 client: send the data only */
	BM_EOF,	     /* close-delimited response */
};

/* Which phase callback is running: sl_respond() is allowed in some of them only. */
enum sl_phase {
	PH_NONE = 0,
	PH_REQUEST_FILTER,
	PH_UPSTREAM_PEER,
	PH_UPSTREAM_REQUEST_FILTER,
	PH_RESPONSE_FILTER,
	PH_REQUEST_BODY_FILTER,
	PH_RESPONSE_BODY_FILTER,
	PH_FAIL_TO_CONNECT,
	PH_ERROR_RESPONSE,
	PH_LOGGING,
	PH_CACHE, /* cache_key, cache_hit_filter, response_cache_filter */
};

/* One request and its response: allocated when a request head starts, released as one
 * thing when it ends (recycled through a per-worker free list). Nothing of it survives
 * into the next request on the connection; code that called out to a phase callback
 * checks the session's generation before touching it again (see GONE()). */
struct sl_request {
	struct sl_request *next_free;
	struct sl_session *s; /* the connection it came on */
	struct event wev; /* client writable: armed only while a response waits on it */
	struct event tev; /* the request's timer (between requests: the worker idle lists) */
	uint8_t wr_on;
	struct sl_http_parser rp; /* request parser, fresh for each request */
	struct sl_head req;
	uint32_t head_end;
	uint8_t req_done;    /* whole request read from the client */
	uint8_t req_sent;    /* whole request written upstream */
	uint8_t head_queued; /* request head built in out */
	uint8_t expect_continue, sent_continue;
	uint8_t upgrade_req, is_head_req, idempotent;
	uint8_t has_body;	 /* Content-Length > 0 or chunked */
	uint8_t body_discarded;	 /* some body bytes left the buffer: it cannot be resent */
	uint8_t keepalive;	 /* client connection stays open after this response */
	uint8_t local_resp;	 /* response produced by sluice itself */
	uint8_t interim;	 /* the response head being parsed is a 1xx */
	uint8_t cont_left;	 /* bytes of "100 Continue" still to write */
	uint8_t body_filter_on;	 /* request_filter has run: body bytes go to the filter */
	uint8_t body_filter_end; /* the filter had its end=1 call */
	enum sl_phase phase;
	uint64_t body_wire; /* request body bytes on the wire, framing included */

	struct sl_conf_hold *hold;
	const struct sl_conf_listener *listener;
	void *ctx;
	struct sl_peer peer;
	uint64_t peer_hash;
	struct sl_upconn *up;
	struct sl_upwait upw; /* waiting for a connection slot (max_conns_per_server) */
	unsigned int tries;
	struct sl_lb_req lb; /* set held, servers tried, attempt in flight (sl_upstream_pick) */
	uint8_t fresh_only;  /* retrying a stale pooled connection: connect anew */
	int fail_status;	       /* the last attempt's error (502/504), for a failed retry */
	const struct sl_conf_upstream *upstream;
	struct sl_iob uin;
	struct sl_http_parser up_p;
	struct sl_head resp;
	uint8_t resp_head_done, resp_done, resp_started, up_broken, up_eof;
	enum sl_body_mode body_mode;
	int status;

	/* output head: the request head for upstream, later the response head */
	struct sl_iob out;
	uint8_t out_to_client;
	const char *lbody; /* local response body: static, config-owned or lbody_buf */
	size_t lbody_len, lbody_off;
	char *lbody_buf; /* copy of an sl_respond() body that did not fit in out */

	/* HTTP cache (proxy/cache.c): the route's settings, the request's state */
	const struct sl_conf_route_cache *cache_conf;
	struct sl_creq *cache;

	/* accounting */
	uint64_t t_start, t_up; /* sl_mono_ns() */
	uint64_t up_time_ns;
	uint64_t r_in, r_out;
	char log_extra[256];
	size_t log_extra_len;
	char client_str[SL_ADDR_STRLEN]; /* sl_session_client_str(), "" until first asked */
	uint8_t ip_off, ip_len;		 /* the ip alone, inside client_str */
	/* access log: upstream timing (sl_mono_ns()), servers tried, the request id */
	uint64_t t_up0, t_try, t_hdr; /* first attempt, last attempt, response head */
	uint8_t tried_len, req_id_len;
	char tried_names[160]; /* "a:1,b:2": every peer tried, cut with ",..." */
	char req_id[64];
};

/* The request id of s's request (X-Request-Id kept or generated, or generated for the
 * log alone), made on first use. */
const char *sl_session_request_id(struct sl_session *s, size_t *len);

/* A client connection. Owned by its worker thread. */
struct sl_session {
	struct sl_io io; /* the client connection */
	struct event rev;
	struct sl_link idle_link; /* in a worker idle list (no request) */
	uint64_t idle_since;	  /* sl_mono_ns() when it joined the list */
	struct sl_worker *w;
	struct sl_link link; /* worker's live list */
	struct sl_listen *lsn;
	union {
		struct sockaddr sa;
		struct sockaddr_in in;
		struct sockaddr_in6 in6;
	} client;
	socklen_t client_len;

	enum sl_sess_state state;
	uint8_t closed;	 /* torn down; freed when the outermost callback returns */
	uint8_t depth;	 /* event callbacks on the stack */
	uint8_t idle_on; /* 0, or 1 + which list (first byte, keep-alive) */
	enum sl_timer_kind timer;
	uint8_t rd_on;	 /* rev added */
	uint8_t nodelay; /* TCP_NODELAY set (once kept alive) */
	uint8_t client_eof;
	uint8_t linger; /* the request was refused before its end: linger at the close */
	uint8_t in_phase; /* phase callbacks on the stack (they outlive their request) */
	short hs_ev;	  /* TLS handshake: events rev is assigned with besides EV_READ */
	/* TLS handshake: the snapshot whose contexts it runs on (their callbacks read it) */
	struct sl_conf_hold *hs_hold;
	/* verified client certificate: "subject\0fingerprint", made once per connection */
	char *client_id;

	struct sl_iob in;     /* bytes from the client; heads are offsets into it */
	struct sl_request *r; /* the request in progress, NULL between requests */
	uint32_t gen;	      /* bumped each time a request ends */
};

/* After a call-out that may answer, end or close the request: nonzero if the request
 * the caller was working on is gone and nothing of it may be touched. */
#define GONE(s, g) ((s)->closed || (s)->gen != (g))

/* The client's "ip:port" (see session.c). */
const char *sl_session_client_str(const struct sl_session *s);

/* The HTTP/1 connections of a listener (the worker's handler table). */
extern const struct sl_conn_handler sl_http1_handler;
/* 1 while u has a server this request has not tried (the config-driven retry rule). */
int sl_upstream_untried(const struct sl_session *s, const struct sl_conf_upstream *u);
/* 1 when a response with this status should be retried on another server (retry_on,
 * retries left, a server left to try); the caller checks the request can be resent. */
int sl_upstream_retry_status(const struct sl_session *s, int status);
/* The cache's parked request goes on (enum sl_pcache_resume), from the worker loop. */
void sl_session_cache_resume(struct sl_session *s, int how);
/* Answer with a configured fixed response; returns SL_DONE. */
int sl_session_respond_conf(struct sl_session *s, const struct sl_conf_respond *r);

#endif
