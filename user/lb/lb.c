/* Smooth weighted round robin over a precomputed schedule (see lb.h). */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "lb/lb.h"

/* Weights are exact while one cycle fits SCHED_MAX entries; above that they are scaled
 * down, but the schedule always has room for every server once (it is never cut short,
 * which would leave the servers at the end of a large upstream unpicked). */
#define SCHED_MAX 65536u
/* nginx's smooth weighted round robin costs O(servers) per entry; past this many
 * steps (tens of ms) the schedule is built by sorting instead. */
#define SWRR_BUDGET (4096ull * 8192ull)

struct lb_state {
	_Alignas(64) atomic_uint cursor; /* alone in its cache line: the one shared write */
	char pad[64 - sizeof(atomic_uint)];
	unsigned int len;
	uint32_t sched[];
};

/* nginx's smooth weighted round robin: each server appears w[i] times, spread out. */
static int swrr(const unsigned int *w, unsigned int n, unsigned int sum, uint32_t *out)
{
	int64_t *cur = calloc(n ? n : 1, sizeof(*cur));
	if (!cur)
		return -ENOMEM;
	for (unsigned int k = 0; k < sum; k++) {
		unsigned int best = 0;
		for (unsigned int i = 0; i < n; i++) {
			cur[i] += w[i];
			if (cur[i] > cur[best])
				best = i;
		}
		cur[best] -= sum;
		out[k] = best;
	}
	free(cur);
	return 0;
}

struct slot {
	uint32_t server, nth;
	unsigned int w;
};

/* Occurrence nth of server i sits at (2 nth + 1) / (2 w): the midpoints of w equal
 * slices of the cycle, so each server is spread evenly; ties go to the lower index. */
static int slot_cmp(const void *pa, const void *pb)
{
	const struct slot *a = pa, *b = pb;
	uint64_t x = (2ull * a->nth + 1) * b->w, y = (2ull * b->nth + 1) * a->w;
	if (x != y)
		return x < y ? -1 : 1;
	return a->server < b->server ? -1 : a->server > b->server;
}

static int spread(const unsigned int *w, unsigned int n, unsigned int sum, uint32_t *out)
{
	struct slot *s = malloc(sizeof(*s) * sum);
	if (!s)
		return -ENOMEM;
	unsigned int k = 0;
	for (unsigned int i = 0; i < n; i++)
		for (unsigned int j = 0; j < w[i]; j++)
			s[k++] = (struct slot){.server = i, .nth = j, .w = w[i]};
	qsort(s, sum, sizeof(*s), slot_cmp);
	for (k = 0; k < sum; k++)
		out[k] = s[k].server;
	free(s);
	return 0;
}

static int prepare_one(struct sl_conf_upstream *u)
{
	unsigned int n = u->n_servers, limit = n > SCHED_MAX ? n : SCHED_MAX, sum = 0;
	uint64_t total = 0;
	for (unsigned int i = 0; i < n; i++)
		total += u->servers[i].weight;
	uint64_t div = total > limit ? (total + limit - 1) / limit : 1;
	unsigned int *w = calloc(n ? n : 1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	/* sum <= total / div + n <= 2 * limit: no overflow */
	for (unsigned int i = 0; i < n; i++) {
		w[i] = (unsigned int)(u->servers[i].weight / div);
		if (w[i] < 1)
			w[i] = 1;
		sum += w[i];
	}
	struct lb_state *st;
	if (posix_memalign((void **)&st, 64, sizeof(*st) + sizeof(uint32_t) * (sum ? sum : 1))) {
		free(w);
		return -ENOMEM;
	}
	atomic_init(&st->cursor, 0);
	st->len = sum;
	int err = 0;
	if ((uint64_t)sum * n <= SWRR_BUDGET)
		err = swrr(w, n, sum, st->sched);
	else
		err = spread(w, n, sum, st->sched);
	free(w);
	if (err) {
		free(st);
		return err;
	}
	free(u->lb);
	u->lb = st;
	return 0;
}

int sl_lb_prepare(struct sl_conf *c, unsigned int n_workers)
{
	(void)n_workers;
	for (unsigned int i = 0; i < c->n_upstreams; i++) {
		int err = prepare_one(&c->upstreams[i]);
		if (err)
			return err;
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
		uint32_t i = st->sched[(at + k) % st->len];
		if (i >= 64 || !(tried & (1ull << i)))
			return (int)i;
	}
	return -EAGAIN;
}
