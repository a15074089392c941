/* Constants and structs shared by BPF programs and user space: map keys and values,
 * states, limits. The only place such a definition lives; BPF includes this file
 * after vmlinux.h, user space after <linux/types.h>. */
#ifndef SLUICE_COMMON_H
#define SLUICE_COMMON_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define SL_MAX_WORKERS 256  /* workers per daemon; also BPF map sizes */
#define SL_MAX_LISTENERS 64 /* listening addresses per daemon */

#define SL_PIN_PATH_DEFAULT "/sys/fs/bpf/sluice"

/* ---- steering (bpf/steer.bpf.c) ---- */

/* listeners map (REUSEPORT_SOCKARRAY): index = listener * SL_MAX_WORKERS + worker */
#define SL_LISTENERS_SLOTS (SL_MAX_LISTENERS * SL_MAX_WORKERS)

enum sl_worker_run_state {
	SL_WORKER_EMPTY = 0, /* no worker in this slot */
	SL_WORKER_STARTING = 1,
	SL_WORKER_READY = 2,
	SL_WORKER_DRAINING = 3,
};

/* workers map (ARRAY, BPF_F_MMAPABLE), one slot per worker, written only by that
 * worker with plain stores; read by steer and sluicectl. One cache line each. */
struct sl_worker_state {
	__u32 cpu;
	__u32 state;	    /* enum sl_worker_run_state */
	__u64 heartbeat_ns; /* CLOCK_MONOTONIC (bpf_ktime_get_ns) of the last beat */
	__u32 active;	    /* client connections open */
	__u32 max_conns;    /* cap; 0 = no cap */
	__u32 pid;	    /* daemon pid, for sluicectl */
	__u32 n_workers;    /* workers in this daemon (same in every slot) */
	/* Load, published at every heartbeat (docs/architecture.md, "Steering on load").
	 * Connections: `active` (live) plus the accept queue, estimated as `queued` (its
	 * length at the beat) + what steer sent here since (steer_recent) - what the
	 * worker accepted since (worker_stats.accepted - accepted_beat, low 32 bits).
	 * busy_pm: the loop thread's run time plus its run-queue wait over the last
	 * heartbeat periods, per mille of wall time (smoothed). */
	__u32 queued;
	__u32 accepted_beat;
	__u32 busy_pm;
	__u32 pad0;
	__u64 pad[2];
} __attribute__((aligned(64)));

/* steer config (ARRAY, one entry), written by sluiced at start */
struct sl_steer_config {
	__u32 n_workers;
	__u32 n_listeners;
	__u64 stall_ns;
	__u32 locality;	   /* 1: prefer the SYN's CPU's worker while not clearly busier */
	__u32 load_margin; /* percent over the least loaded healthy worker that is "clearly" */
	__u32 load_signal; /* SL_STEER_LOAD_* */
	__u32 pad;
};

enum sl_steer_load_signal {
	/* clearly busier on either; power of two choices on connections, ties on busy_pm */
	SL_STEER_LOAD_BOTH = 0,
	SL_STEER_LOAD_CONNECTIONS = 1, /* open + queued (estimated, see sl_worker_state) */
	SL_STEER_LOAD_CPU = 2,	       /* busy_pm */
};

/* Below these absolute differences two loads count as equal whatever the margin: a
 * few connections (or a tenth of a CPU) apart is noise, not a busier worker. */
#define SL_STEER_SLACK_CONNS 2
#define SL_STEER_SLACK_CPU_PM 100

/* steer_recent (ARRAY, one per worker), written by steer only: connections sent to
 * the worker since its heartbeat `epoch`, and the hysteresis state of the worker as
 * an own-CPU choice. */
struct sl_steer_recent {
	__u64 epoch; /* the worker's heartbeat_ns these counts are since */
	__u32 count;
	__u32 away; /* 1: own-CPU choice suspended until its load is back within half the margin */
};

enum sl_steer_reason {
	SL_STEER_OWN_CPU = 0,	 /* the worker of the CPU that took the SYN */
	SL_STEER_P2C_OVERLOADED, /* own worker over its cap: power of two choices */
	SL_STEER_P2C_STALLED,	 /* own worker's heartbeat stale */
	SL_STEER_P2C_DRAINING,	 /* own worker draining or not ready */
	SL_STEER_KERNEL_HASH,	 /* nobody healthy: the kernel's hash decides */
	SL_STEER_MIGRATED,	 /* request moved off a closing listener */
	SL_STEER_P2C_LOADED,	 /* own worker clearly busier than the least loaded one */
	SL_STEER_P2C_NO_LOCAL,	 /* locality off, or no worker pinned to the SYN's CPU */
	SL_STEER_NR,
};

/* ---- live statistics (worker_stats: ARRAY, BPF_F_MMAPABLE) ---- */

/* One slot per worker, written only by its worker. Two cache lines. */
struct sl_worker_stats {
	__u64 accepted;
	__u64 active;
	__u64 requests;
	__u64 resp_1xx, resp_2xx, resp_3xx, resp_4xx, resp_5xx;
	__u64 bytes_in, bytes_out;
	__u64 up_new;	    /* upstream connections opened */
	__u64 up_reused;    /* requests sent on a pooled connection */
	__u64 pool_local;   /* hits in the worker's own pool */
	__u64 pool_shared;  /* hits in the shared overflow pool */
	__u64 err_client;   /* malformed, too large, client timeouts */
	__u64 err_upstream; /* connect failures, bad responses, upstream timeouts */
	__u64 pool_evicted; /* idle connections pushed out of the local pool (to the shared one) */
	__u64 pool_idle_closed;	  /* idle connections closed by the peer or timed out */
	__u64 pool_fd_mismatch;	  /* pooled fd no longer connected to its peer: closed */
	__u64 pool_stale_retries; /* requests retried after a reused connection failed */
	__u64 queue_waits;	  /* requests that waited for max_conns_per_server */
	__u64 queue_timeouts;	  /* ... and gave up (503) */
	__u64 rescued;		  /* connections taken from a stalled worker's accept queue */
	__u64 trailers_dropped;	  /* trailer fields RFC 9110 6.5.1 forbids, not forwarded */
	__u64 header_timeouts;	  /* connections cut at timeouts.client_header (slow heads) */
	__u64 send_timeouts;	  /* clients cut for leaving a response unread (slow readers) */
	__u64 up_tls_handshakes;  /* TLS handshakes with upstreams, completed */
	__u64 up_tls_resumed;	  /* ... of which resumed a cached session */
	__u64 up_tls_handshake_failed; /* upstream TLS handshakes that failed (not verification) */
	__u64 up_tls_verify_failed;    /* upstream certificates that did not verify */
	__u64 up_proxy_refused;	       /* CONNECT through a via_proxy refused or malformed */
	__u64 tls_full;		       /* client TLS handshakes completed in full */
	__u64 tls_resumed;	       /* ... completed resuming a session (ticket, TLS 1.3 PSK) */
	__u64 tls_fail_timeout;	       /* handshakes not done within handshake_timeout */
	__u64 tls_fail_closed;	       /* clients gone (EOF, reset) before the handshake ended */
	__u64 tls_fail_http;	       /* plain HTTP sent to a TLS listener (answered 400) */
	__u64 tls_fail_cert;	       /* client certificate missing or not verified */
	__u64 tls_fail_protocol;       /* everything else: versions, ciphers, garbage, alerts */
} __attribute__((aligned(64)));

/* ---- XDP guard (bpf/xdp_guard.bpf.c) ---- */

enum sl_xdp_counter {
	SL_XDP_PACKETS = 0,
	SL_XDP_BYTES,
	SL_XDP_TCP_SYN,
	SL_XDP_DROP_DENY_V4,
	SL_XDP_DROP_DENY_V6,
	SL_XDP_DROP_SYN_RATE,
	SL_XDP_NR,
};

struct sl_lpm_v4 {
	__u32 prefixlen;
	__u8 addr[4];
};

struct sl_lpm_v6 {
	__u32 prefixlen;
	__u8 addr[16];
};

/* syn_guard key: IPv4 /24 or IPv6 /64 source prefix */
struct sl_syn_key {
	__u8 family; /* 4 or 6 */
	__u8 pad[7];
	__u8 prefix[8];
};

struct sl_syn_bucket {
	__u64 tokens_milli; /* tokens * 1000 */
	__u64 last_ns;
};

/* xdp_config (ARRAY, one entry), written by sluicectl */
struct sl_xdp_config {
	__u32 syn_rate;	 /* SYNs per second per source prefix; 0 = guard off */
	__u32 syn_burst; /* bucket size */
};

#endif
