/* The cache lock (see lock.h): a small sharded table of keys being fetched. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cache/lock.h"
#include "cache/store.h"

struct sl_clock_ent {
	struct sl_clock_ent *next;
	uint64_t hash;
	uint64_t since_ns; /* when the current writer got the role */
	uint32_t gen;	   /* bumped with each new writer */
	uint32_t refs;	   /* tickets outstanding (a superseded writer still holds one) */
	uint8_t linked;	   /* in the table */
	uint32_t klen;
	struct sl_clock_shard *sh;
	struct sl_xwlist waiters;
	char key[];
};

int sl_clock_init(struct sl_clock_tab *t, unsigned int shards)
{
	memset(t, 0, sizeof(*t));
	unsigned int n = 1;
	while (n < shards && n < 256)
		n <<= 1;
	t->nshards = n;
	t->sh = calloc(n, sizeof(*t->sh));
	if (!t->sh)
		return -ENOMEM;
	for (unsigned int i = 0; i < n; i++) {
		pthread_mutex_init(&t->sh[i].mu, NULL);
		t->sh[i].nb = 64;
		t->sh[i].b = calloc(64, sizeof(*t->sh[i].b));
		if (!t->sh[i].b) {
			sl_clock_destroy(t);
			return -ENOMEM;
		}
	}
	return 0;
}

void sl_clock_destroy(struct sl_clock_tab *t)
{
	if (!t->sh)
		return;
	for (unsigned int i = 0; i < t->nshards; i++) {
		struct sl_clock_shard *s = &t->sh[i];
		if (s->b)
			for (uint32_t j = 0; j < s->nb; j++)
				while (s->b[j]) {
					struct sl_clock_ent *e = s->b[j];
					s->b[j] = e->next;
					free(e);
				}
		free(s->b);
		pthread_mutex_destroy(&s->mu);
	}
	free(t->sh);
	t->sh = NULL;
}

static struct sl_clock_shard *shard_of(struct sl_clock_tab *t, uint64_t hash)
{
	/* the store shards by the low bits; use others here */
	return &t->sh[(hash >> 40) & (t->nshards - 1)];
}

static void grow(struct sl_clock_shard *s)
{
	uint32_t nb = s->nb * 2;
	struct sl_clock_ent **b = calloc(nb, sizeof(*b));
	if (!b)
		return; /* longer chains, still correct */
	for (uint32_t j = 0; j < s->nb; j++)
		while (s->b[j]) {
			struct sl_clock_ent *e = s->b[j];
			s->b[j] = e->next;
			e->next = b[e->hash & (nb - 1)];
			b[e->hash & (nb - 1)] = e;
		}
	free(s->b);
	s->b = b;
	s->nb = nb;
}

static void unlink_ent(struct sl_clock_tab *t, struct sl_clock_shard *s, struct sl_clock_ent *e)
{
	if (!e->linked)
		return;
	struct sl_clock_ent **pp = &s->b[e->hash & (s->nb - 1)];
	while (*pp != e)
		pp = &(*pp)->next;
	*pp = e->next;
	e->next = NULL;
	e->linked = 0;
	atomic_fetch_sub(&t->live, 1);
}

/* Drop a ticket's reference (lock held); returns 1 if e must be freed by the caller. */
static int unref(struct sl_clock_ent *e)
{
	return --e->refs == 0 && !e->linked && !e->waiters.n;
}

int sl_clock_acquire(struct sl_clock_tab *t, uint64_t hash, const char *key, size_t klen,
		     uint64_t now_ns, uint64_t age_ns, struct sl_xwaiter *w,
		     struct sl_clock_ticket *tk)
{
	struct sl_clock_shard *s = shard_of(t, hash);
	/* allocated before the lock (freed again if the key is already locked) */
	struct sl_clock_ent *ne = malloc(sizeof(*ne) + klen);
	pthread_mutex_lock(&s->mu);
	struct sl_clock_ent *e = s->b[hash & (s->nb - 1)];
	while (e && !(e->hash == hash && e->klen == klen && !memcmp(e->key, key, klen)))
		e = e->next;
	int rc;
	if (!e) {
		if (!ne) {
			pthread_mutex_unlock(&s->mu);
			return -ENOMEM;
		}
		e = ne;
		ne = NULL;
		memset(e, 0, sizeof(*e));
		e->hash = hash;
		e->klen = (uint32_t)klen;
		memcpy(e->key, key, klen);
		e->sh = s;
		e->since_ns = now_ns;
		e->refs = 1;
		e->linked = 1;
		e->next = s->b[hash & (s->nb - 1)];
		s->b[hash & (s->nb - 1)] = e;
		if (atomic_fetch_add(&t->live, 1) > s->nb * 4 * t->nshards)
			grow(s);
		tk->e = e;
		tk->gen = e->gen;
		atomic_fetch_add(&t->writers, 1);
		rc = SL_CLOCK_WRITER;
	} else if (age_ns && now_ns > e->since_ns && now_ns - e->since_ns >= age_ns) {
		/* now_ns <= since_ns: the caller read its clock before another worker took
		 * the role (callers read it before the shard lock); a young writer */
		/* a stuck writer: one more request goes through */
		e->gen++;
		e->since_ns = now_ns;
		e->refs++;
		tk->e = e;
		tk->gen = e->gen;
		atomic_fetch_add(&t->superseded, 1);
		atomic_fetch_add(&t->writers, 1);
		rc = SL_CLOCK_WRITER;
	} else {
		sl_xw_add(&e->waiters, &s->mu, w);
		atomic_fetch_add(&t->waits, 1);
		rc = SL_CLOCK_WAIT;
	}
	pthread_mutex_unlock(&s->mu);
	free(ne);
	return rc;
}

void sl_clock_done(struct sl_clock_tab *t, struct sl_clock_ticket *tk, struct sl_cobj *o)
{
	struct sl_clock_ent *e = tk->e;
	if (!e)
		return;
	struct sl_clock_shard *s = e->sh;
	pthread_mutex_lock(&s->mu);
	unlink_ent(t, s, e);
	while (e->waiters.head)
		sl_xw_post_first(&e->waiters, o ? SL_CLOCK_OBJ : SL_CLOCK_PASS, o ? sl_cobj_ref(o) : NULL, 0);
	int f = unref(e);
	pthread_mutex_unlock(&s->mu);
	if (f)
		free(e);
	tk->e = NULL;
}

void sl_clock_pass(struct sl_clock_tab *t, struct sl_clock_ticket *tk)
{
	struct sl_clock_ent *e = tk->e;
	if (!e)
		return;
	struct sl_clock_shard *s = e->sh;
	pthread_mutex_lock(&s->mu);
	if (e->linked)
		atomic_fetch_add(&t->passes, 1);
	unlink_ent(t, s, e);
	while (e->waiters.head)
		sl_xw_post_first(&e->waiters, SL_CLOCK_PASS, NULL, 0);
	int f = unref(e);
	pthread_mutex_unlock(&s->mu);
	if (f)
		free(e);
	tk->e = NULL;
}

/* lock held */
static void fail_locked(struct sl_clock_tab *t, struct sl_clock_ent *e, uint32_t gen,
			uint64_t now_ns)
{
	if (!e->linked || gen != e->gen)
		return; /* superseded, or the lock already went */
	if (e->waiters.head) {
		e->gen++;
		if (now_ns > e->since_ns) /* a clock read before the lock may lag */
			e->since_ns = now_ns;
		e->refs++;
		sl_xw_post_first(&e->waiters, SL_CLOCK_WRITER, e, e->gen);
		atomic_fetch_add(&t->promoted, 1);
	} else {
		unlink_ent(t, e->sh, e);
	}
}

void sl_clock_fail(struct sl_clock_tab *t, struct sl_clock_ticket *tk, uint64_t now_ns)
{
	struct sl_clock_ent *e = tk->e;
	if (!e)
		return;
	struct sl_clock_shard *s = e->sh;
	pthread_mutex_lock(&s->mu);
	fail_locked(t, e, tk->gen, now_ns);
	int f = unref(e);
	pthread_mutex_unlock(&s->mu);
	if (f)
		free(e);
	tk->e = NULL;
}

void sl_clock_leave(struct sl_clock_tab *t, struct sl_xwaiter *w, uint64_t now_ns)
{
	if (!sl_xw_cancel(w))
		return;
	if (w->result == SL_CLOCK_WRITER) {
		struct sl_clock_ticket tk = sl_clock_ticket_of(w);
		sl_clock_fail(t, &tk, now_ns);
	} else if (w->result == SL_CLOCK_OBJ) {
		sl_cobj_put(w->arg);
	}
	w->arg = NULL;
}
