/* sk_reuseport steering and the mmaped per-worker maps (workers, worker_stats):
 * loading, pinning, filling the socket array, attaching to every listener group.
 * Knows nothing of workers beyond what this interface hands it: CPUs and fds. */
#ifndef SL_STEER_H
#define SL_STEER_H

#include <stddef.h>

#include "sluice_common.h"

/* What steering needs to know about the daemon's workers and listeners. */
struct sl_steer_setup {
	const char *pin_path;	  /* NULL = SL_PIN_PATH_DEFAULT */
	unsigned int n_workers;	  /* 1..SL_MAX_WORKERS */
	unsigned int n_listeners; /* 0..SL_MAX_LISTENERS */
	const int *cpus;	  /* [n_workers]: CPU worker i is pinned to, -1 = none */
	/* [n_workers * n_listeners]: fds[i * n_listeners + l] is worker i's socket of
	 * listener l (all sockets of one listener form one SO_REUSEPORT group) */
	const int *fds;
	const char *const *names; /* [n_listeners]: listener addresses, for errors */
	unsigned int stall_ms;	  /* heartbeat older than this: no new connections */
	unsigned int max_conns;	  /* initial per-worker cap in each slot; 0 = none */
	const __u32 *active;	  /* [n_workers]: connections already open, or NULL */
	unsigned int locality;	  /* 1: prefer the SYN's CPU's worker (bpf.locality) */
	unsigned int load_margin; /* percent: "clearly busier" (bpf.load_margin) */
	unsigned int load_signal; /* SL_STEER_LOAD_* (bpf.load_signal) */
	/* An upgrade's successor: fresh maps, nothing pinned until sl_steer_pin() (the
	 * pinned ones are its predecessor's, still serving). */
	int fresh;
	/* keys of the predecessor's pinned socket array holding sockets this daemon takes
	 * over: deleted from it before they go into ours (a socket is in one array only) */
	const __u32 *release_keys;
	unsigned int n_release;
};

/* Load steer.bpf.o, pin its maps under s->pin_path, fill the socket array and attach
 * to each listener group. On success states[i] and stats[i] point at worker i's slots
 * in the mmaped workers and worker_stats maps (zeroed; state STARTING, heartbeat now)
 * and stay valid until sl_steer_fini(). Call after the sockets are bound and before
 * the workers run. Returns 0, or -errno with a reason in why (nothing stays attached
 * and states/stats are untouched). */
int sl_steer_init(const struct sl_steer_setup *s, struct sl_worker_state **states,
		  struct sl_worker_stats **stats, char *why, size_t whylen);
/* A reload added listener slot: its sockets (fds[i] = worker i's, n = the workers)
 * join the socket array and its group gets the program. 0 or -errno with why (nothing
 * of it stays registered). No-op when steering is not loaded. */
int sl_steer_listener_add(unsigned int slot, const int *fds, unsigned int n, const char *name,
			  char *why, size_t whylen);
/* A reload removed listener slot (its sockets still open): forget them. */
void sl_steer_listener_del(unsigned int slot, const int *fds, unsigned int n);
/* A successor failed: attach this daemon's program again to the groups of its slots
 * (fds[i * n_workers + w] = worker w's socket of slots[i]) and put the sockets back in
 * its socket array (the successor may have taken them out). 0 or -errno. */
int sl_steer_reattach(const unsigned int *slots, unsigned int n_slots, const int *fds);
/* Upgrade hand-over: the tcp_migrate_req value to restore, passed to the successor,
 * which restores it instead of this daemon (sl_steer_fini() leaves it alone from now). */
int sl_steer_migrate_saved(void);
void sl_steer_handed_over(void);
/* Successor, once handed over: restore tcp_migrate_req to saved at the end (-1 none). */
void sl_steer_adopt_migrate(int saved);
/* Successor (fresh): pin the maps and the program under the pin path in place of the
 * predecessor's, so that sluicectl and bpftool see the daemon that serves. 0 or -errno. */
int sl_steer_pin(void);
/* Mark every slot empty, restore net.ipv4.tcp_migrate_req, unmap, unload: the slot
 * pointers handed out are dangling afterwards (copy what should outlive it first).
 * The pinned maps stay for sluicectl and bpftool. No-op when steering is not loaded. */
void sl_steer_fini(void);
/* Reload: new locality, load_margin and load_signal for the running program (one map
 * write; a connection being placed sees the old or the new, not a mix of fields that
 * matters). 0, -ENOENT when steering is not loaded, or -errno. */
int sl_steer_set_policy(unsigned int locality, unsigned int load_margin, unsigned int load_signal);
/* Steering decisions by reason since the program was loaded (summed over CPUs), into
 * out[SL_STEER_NR]. 0, or -ENOENT when steering is not loaded. One bpf() syscall per
 * reason: for the admin API, never the request path. */
int sl_steer_read_stats(__u64 *out);
/* The name of a steering reason (sluicectl, /metrics), "?" for none. Inline: the
 * admin API's fuzz harness and sluicectl use it without the loader. */
static inline const char *sl_steer_reason_name(unsigned int reason)
{
	static const char *const names[SL_STEER_NR] = {
	    [SL_STEER_OWN_CPU] = "own_cpu",
	    [SL_STEER_P2C_OVERLOADED] = "p2c_overloaded",
	    [SL_STEER_P2C_STALLED] = "p2c_stalled",
	    [SL_STEER_P2C_DRAINING] = "p2c_draining",
	    [SL_STEER_KERNEL_HASH] = "kernel_hash",
	    [SL_STEER_MIGRATED] = "migrated",
	    [SL_STEER_P2C_LOADED] = "p2c_loaded",
	    [SL_STEER_P2C_NO_LOCAL] = "p2c_no_local",
	};
	return reason < SL_STEER_NR && names[reason] ? names[reason] : "?";
}

#endif
