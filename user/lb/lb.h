/* Load balancing over an upstream's servers: smooth weighted round robin (the
 * order nginx produces), shared by all workers through one atomic cursor so that
 * consecutive requests alternate whichever worker takes them. */
#ifndef SL_LB_H
#define SL_LB_H

#include <stdint.h>

#include "config/config-t.h"

/* Give every upstream of c its schedule. Main thread, before publishing c.
 * The state is one allocation in u->lb, freed with the snapshot. */
int sl_lb_prepare(struct sl_conf *c, unsigned int n_workers);
/* Index of the next server, skipping those in the tried mask; -EAGAIN when every
 * server was tried. Any worker thread. */
int sl_lb_pick(const struct sl_conf_upstream *u, unsigned int worker, uint64_t tried);

#endif
