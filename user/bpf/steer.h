/* sk_reuseport steering and the mmaped per-worker maps (workers, worker_stats):
 * loading, pinning, filling the socket array, attaching to every listener group. */
#ifndef SL_STEER_H
#define SL_STEER_H

#include "config/config-t.h"

struct sl_daemon;

/* Load steer.bpf.o, pin its maps under conf->bpf.pin_path, point every worker's
 * state/stats slot into the mmaped maps, fill the socket array and attach to each
 * listener. Call after the workers' sockets are bound and before they run.
 * Returns 0, or -errno with a reason in why (then workers keep local slots). */
int sl_steer_init(struct sl_daemon *d, const struct sl_conf *conf, char *why, size_t whylen);
/* Mark the slots empty, restore net.ipv4.tcp_migrate_req, unmap, unload.
 * The pinned maps stay for sluicectl and bpftool. */
void sl_steer_fini(struct sl_daemon *d);

#endif
