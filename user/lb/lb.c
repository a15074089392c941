/* Smooth weighted round robin over a precomputed schedule (see lb.h). */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "lb/lb.h"

#define SCHED_MAX 4096

struct lb_state {
	_Alignas(64) atomic_uint cursor; /* alone in its cache line: the one shared write */
	char pad[64 - sizeof(atomic_uint)];
	unsigned int len;
	uint16_t sched[];
};

/* One cycle of nginx's smooth weighted round robin: each server appears weight
 * times, spread out. Weights are scaled down if one cycle would be too long. */
static unsigned int build_schedule(const struct sl_conf_upstream *u, uint16_t *out)
{
	unsigned int total = 0, n = u->n_servers;
	for (unsigned int i = 0; i < n; i++)
		total += u->servers[i].weight;
	unsigned int div = total > SCHED_MAX ? (total + SCHED_MAX - 1) / SCHED_MAX : 1;
	int *w = calloc(n, sizeof(int)), *cur = calloc(n, sizeof(int));
	unsigned int len = 0;
	int sum = 0;
	if (!w || !cur)
		goto out;
	for (unsigned int i = 0; i < n; i++) {
		w[i] = (int)(u->servers[i].weight / div);
		if (w[i] < 1)
			w[i] = 1;
		sum += w[i];
	}
	for (int k = 0; k < sum && len < SCHED_MAX; k++) {
		unsigned int best = 0;
		for (unsigned int i = 0; i < n; i++) {
			cur[i] += w[i];
			if (cur[i] > cur[best])
				best = i;
		}
		cur[best] -= sum;
		out[len++] = (uint16_t)best;
	}
out:
	free(w);
	free(cur);
	return len;
}

int sl_lb_prepare(struct sl_conf *c, unsigned int n_workers)
{
	(void)n_workers;
	for (unsigned int i = 0; i < c->n_upstreams; i++) {
		struct sl_conf_upstream *u = &c->upstreams[i];
		struct lb_state *st;
		if (posix_memalign((void **)&st, 64, sizeof(*st) + sizeof(uint16_t) * SCHED_MAX))
			return -ENOMEM;
		atomic_init(&st->cursor, 0);
		st->len = build_schedule(u, st->sched);
		free(u->lb);
		u->lb = st;
	}
	return 0;
}

int sl_lb_pick(const struct sl_conf_upstream *u, unsigned int worker, uint64_t tried)
{
	struct lb_state *st = u->lb;
	(void)worker;
	if (!st || !st->len)
		return -EAGAIN;
	unsigned int at = atomic_fetch_add_explicit(&st->cursor, 1, memory_order_relaxed);
	for (unsigned int k = 0; k < st->len; k++) {
		unsigned int i = st->sched[(at + k) % st->len];
		if (i >= 64 || !(tried & (1ull << i)))
			return (int)i;
	}
	return -EAGAIN;
}
