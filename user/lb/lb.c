/* Balancers over a server set, passive health (outlier ejection), EWMA and slow start
 * (see lb.h). Picks run on worker threads and touch shared state only through relaxed
 * atomics on the servers (in-flight counts, EWMA, ejection). */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/hash.h"
#include "core/log.h"
#include "lb/lb.h"
#include "lb/lb_int.h"

/* ---- tables ---- */

/* Weights are exact while one cycle fits SCHED_MAX entries; above that they are scaled
 * down, but the schedule always has room for every server once. */
#define SCHED_MAX 65536u
/* nginx's smooth weighted round robin costs O(servers) per entry; past this many steps
 * the schedule is built by sorting instead. */
#define SWRR_BUDGET (4096ull * 8192ull)
/* ketama: ring points per unit of weight (fixed, so that a server leaving moves only
 * its own keys), fewer when the ring would pass RING_MAX points */
#define RING_PER_WEIGHT 256u
#define RING_MAX (1u << 21)

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
	struct slot *s = malloc(sizeof(*s) * (sum ? sum : 1));
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

static int build_sched(struct sl_upset *st)
{
	unsigned int n = st->n, limit = n > SCHED_MAX ? n : SCHED_MAX, sum = 0;
	uint64_t total = st->weight_sum;
	uint64_t div = total > limit ? (total + limit - 1) / limit : 1;
	unsigned int *w = calloc(n ? n : 1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	for (unsigned int i = 0; i < n; i++) {
		w[i] = (unsigned int)(st->srv[i].weight / div);
		if (w[i] < 1)
			w[i] = 1;
		sum += w[i];
	}
	st->sched = malloc(sizeof(uint32_t) * (sum ? sum : 1));
	if (posix_memalign((void **)&st->cursor, 64, 64))
		st->cursor = NULL;
	int err = -ENOMEM;
	if (st->sched && st->cursor) {
		/* a random start: with swaps every few requests, a cursor at 0 in each new set
		 * would send the first picks of every set to the same servers */
		atomic_init(st->cursor, (unsigned int)(sl_lb_mix(sl_mono_ns() ^ (uintptr_t)st) % sum));
		st->sched_len = sum;
		err = (uint64_t)sum * n <= SWRR_BUDGET ? swrr(w, n, sum, st->sched)
						       : spread(w, n, sum, st->sched);
	}
	free(w);
	return err;
}

static uint64_t server_key(const struct sl_server *s)
{
	return sl_lb_mix(sl_fnv(SL_FNV_INIT, &s->addr, s->addrlen));
}

/* Maglev (Eisenbud et al., NSDI 2016): each server fills the table along its own
 * permutation; weights give a server proportionally more turns. */
static int build_maglev(struct sl_upset *st)
{
	unsigned int M = st->pol.table_size, n = st->n;
	uint64_t *off = calloc(n, sizeof(*off)), *skip = calloc(n, sizeof(*skip));
	uint64_t *next = calloc(n, sizeof(*next));
	unsigned int *acc = calloc(n, sizeof(*acc));
	st->maglev = malloc(sizeof(int32_t) * M);
	int err = -ENOMEM;
	if (!off || !skip || !next || !acc || !st->maglev)
		goto out;
	unsigned int wmax = 1;
	for (unsigned int i = 0; i < n; i++) {
		uint64_t h = server_key(st->srv[i].s);
		off[i] = h % M;
		skip[i] = sl_lb_mix(h ^ 0x9e3779b97f4a7c15ull) % (M - 1) + 1;
		if (st->srv[i].weight > wmax)
			wmax = st->srv[i].weight;
	}
	for (unsigned int k = 0; k < M; k++)
		st->maglev[k] = -1;
	unsigned int filled = 0;
	while (filled < M) {
		for (unsigned int i = 0; i < n && filled < M; i++) {
			acc[i] += st->srv[i].weight;
			if (acc[i] < wmax)
				continue;
			acc[i] -= wmax;
			uint64_t c = (off[i] + next[i] * skip[i]) % M;
			while (st->maglev[c] >= 0) {
				next[i]++;
				c = (off[i] + next[i] * skip[i]) % M;
			}
			st->maglev[c] = (int32_t)i;
			next[i]++;
			filled++;
		}
	}
	err = 0;
out:
	free(off);
	free(skip);
	free(next);
	free(acc);
	return err;
}

static int pt_cmp(const void *pa, const void *pb)
{
	const struct sl_ring_pt *a = pa, *b = pb;
	if (a->h != b->h)
		return a->h < b->h ? -1 : 1;
	return a->i < b->i ? -1 : a->i > b->i;
}

/* Ketama: points per server in proportion to weight, sorted by hash. */
static int build_ring(struct sl_upset *st)
{
	unsigned int n = st->n;
	uint64_t per = RING_PER_WEIGHT, total = 0;
	if (per * st->weight_sum > RING_MAX)
		per = RING_MAX / st->weight_sum ? RING_MAX / st->weight_sum : 1;
	unsigned int *pts = calloc(n, sizeof(*pts));
	if (!pts)
		return -ENOMEM;
	for (unsigned int i = 0; i < n; i++) {
		pts[i] = (unsigned int)(per * st->srv[i].weight);
		total += pts[i];
	}
	st->ring = malloc(sizeof(*st->ring) * total);
	if (!st->ring) {
		free(pts);
		return -ENOMEM;
	}
	unsigned int k = 0;
	for (unsigned int i = 0; i < n; i++) {
		uint64_t base = server_key(st->srv[i].s);
		for (unsigned int j = 0; j < pts[i]; j++)
			st->ring[k++] = (struct sl_ring_pt){
			    .h = (uint32_t)(sl_lb_mix(base + 0x9e3779b97f4a7c15ull * (j + 1)) >> 32),
			    .i = i};
	}
	st->ring_len = k;
	qsort(st->ring, k, sizeof(*st->ring), pt_cmp);
	free(pts);
	return 0;
}

int sl_lb_tables(struct sl_upset *s)
{
	if (!s->n)
		return 0;
	int err = build_sched(s);
	if (!err && s->pol.balance == SL_BAL_MAGLEV)
		err = build_maglev(s);
	if (!err && s->pol.balance == SL_BAL_KETAMA)
		err = build_ring(s);
	return err;
}

/* ---- server state ---- */

int sl_server_usable(const struct sl_server *s, uint64_t now)
{
	return atomic_load_explicit(&s->admin, memory_order_relaxed) == SL_SRV_ENABLED &&
	       !atomic_load_explicit(&s->down, memory_order_relaxed) &&
	       atomic_load_explicit(&s->ejected_until, memory_order_relaxed) <= now;
}

const char *sl_server_state(const struct sl_server *s, uint64_t now)
{
	int a = atomic_load(&s->admin);
	if (a == SL_SRV_DISABLED)
		return "disabled";
	if (a == SL_SRV_DRAINING)
		return "draining";
	if (atomic_load(&s->down))
		return "down";
	if (atomic_load(&s->ejected_until) > now)
		return "ejected";
	return "up";
}

/* Per-thread xorshift: random_two, ewma, least_conn tie-breaks, slow start. */
static __thread uint64_t rng;

static uint64_t rnd(void)
{
	if (!rng)
		rng = sl_mono_ns() ^ (uint64_t)(uintptr_t)&rng ^ 0x2545f4914f6cdd1dull;
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* Slow start: the share of its weight a ramping server gets (1 when not ramping). */
static double ramp(const struct sl_upset *set, const struct sl_server *s, uint64_t now)
{
	uint64_t from = atomic_load_explicit(&s->ramp_from, memory_order_relaxed);
	if (!from || !set->pol.slow_start || now <= from)
		return from && set->pol.slow_start && now <= from ? 0.05 : 1.0;
	double f = (double)(now - from) / (set->pol.slow_start * 1e6);
	return f >= 1.0 ? 1.0 : f < 0.05 ? 0.05 : f;
}

/* ---- picking ---- */

static int was_tried(const struct sl_lb_req *q, uint32_t i)
{
	for (unsigned int k = 0; k < q->n_tried; k++)
		if (q->tried[k] == i)
			return 1;
	return 0;
}

static int ok(const struct sl_lb_req *q, const struct sl_upset *set, uint32_t i, uint64_t now)
{
	return sl_server_usable(set->srv[i].s, now) && !was_tried(q, i);
}

/* A ramping server is taken with probability of its ramp share. */
static int admit(const struct sl_upset *set, uint32_t i, uint64_t now)
{
	double f = ramp(set, set->srv[i].s, now);
	return f >= 1.0 || (double)(rnd() >> 11) * 0x1p-53 < f;
}

static int scan_any(const struct sl_lb_req *q, const struct sl_upset *set, uint64_t now)
{
	unsigned int start = set->n ? (unsigned int)(rnd() % set->n) : 0;
	for (unsigned int k = 0; k < set->n; k++) {
		uint32_t i = (start + k) % set->n;
		if (ok(q, set, i, now))
			return (int)i;
	}
	return -EAGAIN;
}

/* A retry goes on from the request's own last position: moving the shared cursor for it
 * too would put every first attempt in step with the retries (with two servers, every
 * request would start on the same one). */
static int pick_rr(struct sl_lb_req *q, const struct sl_upset *set, uint64_t now)
{
	unsigned int at = q->n_tried ? q->rr_at + 1
				     : atomic_fetch_add_explicit(set->cursor, 1, memory_order_relaxed);
	int fallback = -1;
	unsigned int fpos = 0;
	for (unsigned int k = 0; k < set->sched_len; k++) {
		unsigned int pos = (at + k) % set->sched_len;
		uint32_t i = set->sched[pos];
		if (!ok(q, set, i, now))
			continue;
		if (admit(set, i, now)) {
			q->rr_at = pos;
			return (int)i;
		}
		if (fallback < 0) {
			fallback = (int)i;
			fpos = pos;
		}
	}
	if (fallback >= 0)
		q->rr_at = fpos;
	return fallback >= 0 ? fallback : -EAGAIN;
}

static double eff_weight(const struct sl_upset *set, uint32_t i, uint64_t now)
{
	return set->srv[i].weight * ramp(set, set->srv[i].s, now);
}

/* Peak EWMA read at now: the estimate decays toward zero while nothing is observed, so a
 * penalised server is probed again after a while (Finagle's PeakEwma does the same). */
static double ewma_at(const struct sl_upset *set, const struct sl_server *s, uint64_t now)
{
	uint64_t v = atomic_load_explicit(&s->ewma_ns, memory_order_relaxed);
	uint64_t at = atomic_load_explicit(&s->ewma_at, memory_order_relaxed);
	if (!v)
		return 0;
	double dt = now > at ? (double)(now - at) : 0;
	return (double)v * exp(-dt / (set->pol.ewma_decay * 1e6));
}

static double cost(const struct sl_upset *set, uint32_t i, uint64_t now)
{
	const struct sl_server *s = set->srv[i].s;
	double load = atomic_load_explicit(&s->inflight, memory_order_relaxed) + 1.0;
	double c = load / eff_weight(set, i, now);
	if (set->pol.balance == SL_BAL_EWMA)
		c *= ewma_at(set, s, now) + 1.0; /* +1 ns: servers never measured compare by load */
	return c;
}

static int pick_least(const struct sl_lb_req *q, const struct sl_upset *set, uint64_t now)
{
	unsigned int start = (unsigned int)(rnd() % set->n);
	int best = -1;
	double bc = 0;
	for (unsigned int k = 0; k < set->n; k++) {
		uint32_t i = (start + k) % set->n;
		if (!ok(q, set, i, now))
			continue;
		double c = cost(set, i, now);
		if (best < 0 || c < bc) {
			best = (int)i;
			bc = c;
		}
	}
	return best >= 0 ? best : -EAGAIN;
}

/* Power of two choices: two weighted random candidates, the cheaper one wins. */
static int pick_two(const struct sl_lb_req *q, const struct sl_upset *set, uint64_t now)
{
	int a = -1, b = -1;
	for (unsigned int tries = 0; tries < 16 && b < 0; tries++) {
		uint32_t i = set->sched[rnd() % set->sched_len];
		if ((int)i == a || !ok(q, set, i, now))
			continue;
		if (a < 0)
			a = (int)i;
		else
			b = (int)i;
	}
	if (a < 0)
		return scan_any(q, set, now);
	if (b < 0)
		return a;
	return cost(set, (uint32_t)b, now) < cost(set, (uint32_t)a, now) ? b : a;
}

static int pick_maglev(const struct sl_lb_req *q, const struct sl_upset *set, uint64_t key,
		       uint64_t now)
{
	unsigned int M = set->pol.table_size;
	uint64_t pos = key % M;
	int fallback = -1;
	for (unsigned int k = 0; k < M; k++) {
		int32_t i = set->maglev[(pos + k) % M];
		if (i < 0 || !ok(q, set, (uint32_t)i, now))
			continue;
		if (admit(set, (uint32_t)i, now))
			return i;
		if (fallback < 0)
			fallback = i;
	}
	return fallback >= 0 ? fallback : scan_any(q, set, now);
}

static int pick_ketama(const struct sl_lb_req *q, const struct sl_upset *set, uint64_t key,
		       uint64_t now)
{
	uint32_t h = (uint32_t)(key >> 32);
	unsigned int lo = 0, hi = set->ring_len;
	while (lo < hi) {
		unsigned int mid = lo + (hi - lo) / 2;
		if (set->ring[mid].h < h)
			lo = mid + 1;
		else
			hi = mid;
	}
	/* bounded load (Mirrokni et al.): a server takes a key only while it carries less
	 * than factor x the mean load; the walk goes on clockwise */
	uint64_t cap = UINT64_MAX;
	if (set->pol.hash_balance_factor && q->u) {
		uint64_t total = atomic_load_explicit(&q->u->inflight, memory_order_relaxed);
		cap = ((total + 1) * set->pol.hash_balance_factor + 100ull * set->n - 1) /
		      (100ull * set->n);
	}
	int fallback = -1;
	for (unsigned int k = 0; k < set->ring_len; k++) {
		uint32_t i = set->ring[(lo + k) % set->ring_len].i;
		if (!ok(q, set, i, now))
			continue;
		if (fallback < 0)
			fallback = (int)i;
		if (cap != UINT64_MAX &&
		    atomic_load_explicit(&set->srv[i].s->inflight, memory_order_relaxed) + 1 > cap)
			continue;
		if (admit(set, i, now))
			return (int)i;
	}
	return fallback >= 0 ? fallback : scan_any(q, set, now);
}

int sl_lb_pick(struct sl_lb_req *q, uint64_t key, uint64_t now)
{
	sl_lb_attempt_end(q, SL_LB_NONE, 0, 0, now);
	if (!q->hold || q->n_tried >= SL_TRIED_MAX)
		return -EAGAIN;
	const struct sl_upset *set = q->hold->set;
	if (!set->n)
		return -EAGAIN;
	int i;
	switch (set->pol.balance) {
	case SL_BAL_LEAST_CONN:
		i = pick_least(q, set, now);
		break;
	case SL_BAL_RANDOM_TWO:
	case SL_BAL_EWMA:
		i = pick_two(q, set, now);
		break;
	case SL_BAL_MAGLEV:
		i = pick_maglev(q, set, key, now);
		break;
	case SL_BAL_KETAMA:
		i = pick_ketama(q, set, key, now);
		break;
	default:
		i = pick_rr(q, set, now);
		break;
	}
	if (i < 0)
		return i;
	q->n_tried_prev = q->n_tried;
	q->tried[q->n_tried++] = (uint32_t)i;
	q->cur = i;
	q->t_pick = now;
	struct sl_server *s = set->srv[i].s;
	atomic_fetch_add_explicit(&s->inflight, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&q->u->inflight, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&s->requests, 1, memory_order_relaxed);
	return i;
}

void sl_lb_untry_last(struct sl_lb_req *q)
{
	q->n_tried = q->n_tried_prev;
}

unsigned int sl_lb_untried(const struct sl_lb_req *q, uint64_t now)
{
	if (!q->hold || q->n_tried >= SL_TRIED_MAX)
		return 0;
	const struct sl_upset *set = q->hold->set;
	unsigned int n = 0;
	for (unsigned int i = 0; i < set->n && !n; i++)
		n += ok(q, set, i, now);
	return n;
}

int sl_lb_retry_on(const struct sl_lb_req *q, int status)
{
	if (!q->hold || status < 500 || status > 599)
		return 0;
	unsigned int b = (unsigned int)(status - 500);
	return (q->hold->set->pol.retry_status[b / 64] >> (b % 64)) & 1;
}

/* ---- passive health ---- */

void sl_lb_log_nousable(struct sl_upstream *u, uint64_t now)
{
	atomic_fetch_add_explicit(&u->nousable, 1, memory_order_relaxed);
	uint64_t last = atomic_load_explicit(&u->nousable_logged, memory_order_relaxed);
	if (last && now - last < 1000000000ull)
		return;
	if (!atomic_compare_exchange_strong(&u->nousable_logged, &last, now))
		return; /* another worker logs this second */
	sl_log(SL_LOG_WARN, "msg=\"no usable server, answering 503\" upstream=%s", u->name);
}

/* Eject server i for base_ejection_time x times ejected (capped), unless that would take
 * the upstream past max_ejection_percent or leave it with no server. */
static void eject(struct sl_lb_req *q, const struct sl_upset *set, uint32_t i, uint64_t now,
		  const char *why)
{
	const struct sl_conf_outlier *o = &set->pol.outlier;
	struct sl_server *s = set->srv[i].s;
	pthread_mutex_lock(&q->u->lock); /* rare: serialises the count and the decision */
	unsigned int ejected = 0, usable = 0;
	for (unsigned int k = 0; k < set->n; k++) {
		const struct sl_server *x = set->srv[k].s;
		if (atomic_load_explicit(&x->ejected_until, memory_order_relaxed) > now)
			ejected++;
		else if (sl_server_usable(x, now))
			usable++;
	}
	/* never past the cap once this one is out, except that one server may always be
	 * ejected (as Envoy: a 10% cap on a small upstream would otherwise turn ejection
	 * off); testing the share before the ejection let 3 servers at 50% lose 2 */
	int allowed = atomic_load(&s->ejected_until) <= now &&
		      (!ejected ||
		       (uint64_t)(ejected + 1) * 100 <= (uint64_t)o->max_ejection_percent * set->n) &&
		      usable > 1;
	uint64_t t = 0;
	unsigned int times = 0;
	if (allowed) {
		uint64_t last = atomic_load(&s->ejected_until);
		times = atomic_load(&s->times_ejected);
		/* served without ejection for max_ejection_time: the count starts over */
		if (last && now - last > (uint64_t)o->max_ejection_time * 1000000ull)
			times = 0;
		times++;
		uint64_t ms = (uint64_t)o->base_ejection_time * times;
		if (ms > o->max_ejection_time)
			ms = o->max_ejection_time;
		t = ms;
		atomic_store(&s->times_ejected, times);
		atomic_store(&s->ejected_until, now + ms * 1000000ull);
		if (set->pol.slow_start)
			atomic_store(&s->ramp_from, now + ms * 1000000ull);
		atomic_fetch_add(&s->ejections, 1);
	}
	atomic_store(&s->consec_5xx, 0);
	atomic_store(&s->consec_connect, 0);
	/* refusals repeat with every failure of a server kept in: one line a second */
	int say = allowed || !q->u->noeject_logged || now - q->u->noeject_logged >= 1000000000ull;
	if (!allowed && say)
		q->u->noeject_logged = now;
	pthread_mutex_unlock(&q->u->lock);
	if (!say)
		return;
	if (allowed)
		sl_log(SL_LOG_WARN,
		       "msg=\"server ejected\" upstream=%s server=%s reason=%s times=%u "
		       "ejection_ms=%llu",
		       q->u->name, s->address, why, times, (unsigned long long)t);
	else
		sl_log(SL_LOG_INFO,
		       "msg=\"server not ejected\" upstream=%s server=%s reason=%s "
		       "why=\"max_ejection_percent or last usable server\"",
		       q->u->name, s->address, why);
}

static void ewma_observe(const struct sl_upset *set, struct sl_server *s, double rtt,
			 uint64_t now)
{
	double prev = ewma_at(set, s, now), v;
	if (!atomic_load_explicit(&s->ewma_ns, memory_order_relaxed) || rtt > prev)
		v = rtt; /* peak: a slow response counts at once */
	else {
		uint64_t at = atomic_load_explicit(&s->ewma_at, memory_order_relaxed);
		double w = exp(-(double)(now > at ? now - at : 0) / (set->pol.ewma_decay * 1e6));
		v = prev * w + rtt * (1 - w);
	}
	atomic_store_explicit(&s->ewma_ns, v < 1 ? 1 : (uint64_t)v, memory_order_relaxed);
	atomic_store_explicit(&s->ewma_at, now, memory_order_relaxed);
}

void sl_lb_report(struct sl_lb_req *q, enum sl_lb_outcome o, int status, uint64_t rtt_ns,
		  uint64_t now)
{
	if (q->cur < 0 || !q->hold || o == SL_LB_NONE)
		return;
	if (!now)
		now = sl_mono_ns();
	const struct sl_upset *set = q->hold->set;
	struct sl_server *s = set->srv[q->cur].s;
	const struct sl_conf_outlier *ol = &set->pol.outlier;
	double penalty = set->pol.ewma_penalty * 1e6;
	if (o == SL_LB_CONNECT_FAIL) {
		atomic_fetch_add(&s->connect_failures, 1);
		ewma_observe(set, s, penalty, now);
		unsigned int c = atomic_fetch_add(&s->consec_connect, 1) + 1;
		if (ol->consecutive_connect_failures && c >= ol->consecutive_connect_failures)
			eject(q, set, (uint32_t)q->cur, now, "connect_failure");
		return;
	}
	if (o == SL_LB_TIMEOUT || status >= 500) {
		if (o != SL_LB_TIMEOUT)
			atomic_fetch_add(&s->resp_5xx, 1);
		double rtt = (double)rtt_ns;
		ewma_observe(set, s, rtt > penalty ? rtt : penalty, now);
		unsigned int c = atomic_fetch_add(&s->consec_5xx, 1) + 1;
		if (ol->consecutive_5xx && c >= ol->consecutive_5xx)
			eject(q, set, (uint32_t)q->cur, now, o == SL_LB_TIMEOUT ? "timeout" : "5xx");
		return;
	}
	ewma_observe(set, s, (double)rtt_ns, now);
	if (atomic_load_explicit(&s->consec_5xx, memory_order_relaxed))
		atomic_store_explicit(&s->consec_5xx, 0, memory_order_relaxed);
	if (atomic_load_explicit(&s->consec_connect, memory_order_relaxed))
		atomic_store_explicit(&s->consec_connect, 0, memory_order_relaxed);
}

void sl_lb_attempt_end(struct sl_lb_req *q, enum sl_lb_outcome o, int status, uint64_t rtt_ns,
		       uint64_t now)
{
	if (q->cur < 0 || !q->hold)
		return;
	sl_lb_report(q, o, status, rtt_ns, now);
	struct sl_server *s = q->hold->set->srv[q->cur].s;
	atomic_fetch_sub_explicit(&s->inflight, 1, memory_order_relaxed);
	atomic_fetch_sub_explicit(&q->u->inflight, 1, memory_order_relaxed);
	q->cur = -1;
}
