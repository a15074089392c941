/* Per-worker idle upstream connection pool (see pool.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/hash.h"
#include "upstream/connector.h"
#include "upstream/pool.h"

#define MAX_KEYS 4096 /* distinct peers remembered; empty keys beyond that are dropped */

void sl_pool_init(struct sl_pool *p)
{
	memset(p, 0, sizeof(*p));
}

unsigned int sl_pool_group(struct sl_pool *p, const char *name)
{
	if (!name)
		name = "";
	/* names are kept truncated: compare the full length and a hash of the whole name
	 * too, so two long names sharing a prefix stay two groups */
	size_t n = strlen(name);
	uint64_t h = sl_fnv(SL_FNV_INIT, name, n);
	for (unsigned int i = 0; i < p->n_groups; i++)
		if (p->groups[i].hash == h && p->groups[i].len == n &&
		    !strncmp(p->groups[i].name, name, sizeof(p->groups[i].name) - 1))
			return i;
	if (p->n_groups == SL_POOL_GROUPS)
		return SL_POOL_GROUPS - 1;
	unsigned int g = p->n_groups++;
	p->groups[g].hash = h;
	p->groups[g].len = n;
	n = n < sizeof(p->groups[g].name) - 1 ? n : sizeof(p->groups[g].name) - 1;
	memcpy(p->groups[g].name, name, n);
	p->groups[g].name[n] = 0;
	return g;
}

static void drop_empty_keys(struct sl_pool *p)
{
	for (unsigned int i = 0; i < SL_POOL_BUCKETS; i++) {
		struct sl_pool_key **pp = &p->buckets[i];
		while (*pp) {
			struct sl_pool_key *k = *pp;
			if (!k->count) {
				*pp = k->next;
				free(k);
				p->n_keys--;
			} else {
				pp = &k->next;
			}
		}
	}
}

static struct sl_pool_key *key_find(struct sl_pool *p, const struct sl_peer *peer, uint64_t h,
				    int create)
{
	struct sl_pool_key **b = &p->buckets[h % SL_POOL_BUCKETS];
	for (struct sl_pool_key *k = *b; k; k = k->next)
		if (k->hash == h && sl_peer_same(&k->peer, peer))
			return k;
	if (!create)
		return NULL;
	if (p->n_keys >= MAX_KEYS)
		drop_empty_keys(p);
	struct sl_pool_key *k = calloc(1, sizeof(*k));
	if (!k)
		return NULL;
	k->peer = *peer;
	k->hash = h;
	k->next = *b;
	*b = k;
	p->n_keys++;
	return k;
}

void sl_pool_remove(struct sl_pool *p, struct sl_upconn *c)
{
	struct sl_pool_key *k = c->key;
	if (!k)
		return;
	sl_list_del(&k->stack, &c->kl);
	c->key = NULL;
	k->count--;
	struct sl_pool_group *g = &p->groups[c->group];
	sl_list_del(&g->lru, &c->lru);
	g->n_idle--;
	p->n_idle--;
}

int sl_pool_put(struct sl_pool *p, struct sl_upconn *c, unsigned int gi, unsigned int max_idle,
		struct sl_upconn **evicted)
{
	*evicted = NULL;
	if (!max_idle || gi >= SL_POOL_GROUPS)
		return -ENOSPC;
	struct sl_pool_key *k = key_find(p, &c->peer, c->peer_hash, 1);
	if (!k)
		return -ENOSPC;
	struct sl_pool_group *g = &p->groups[gi];
	if (g->n_idle >= max_idle && g->lru.tail) {
		struct sl_upconn *old = sl_list_entry(g->lru.tail, struct sl_upconn, lru);
		sl_pool_remove(p, old);
		*evicted = old;
	}
	c->key = k;
	c->group = (uint16_t)gi;
	sl_list_add_head(&k->stack, &c->kl);
	k->count++;
	sl_list_add_head(&g->lru, &c->lru);
	g->n_idle++;
	p->n_idle++;
	return 0;
}

struct sl_upconn *sl_pool_get(struct sl_pool *p, const struct sl_peer *peer, uint64_t hash)
{
	if (!p->n_idle)
		return NULL;
	struct sl_pool_key *k = key_find(p, peer, hash, 0);
	if (!k || !k->stack.head)
		return NULL;
	struct sl_upconn *c = sl_list_entry(k->stack.head, struct sl_upconn, kl);
	sl_pool_remove(p, c);
	return c;
}

void sl_pool_drain(struct sl_pool *p, void (*fn)(struct sl_upconn *c, void *arg), void *arg)
{
	for (unsigned int g = 0; g < p->n_groups; g++) {
		while (p->groups[g].lru.tail) {
			struct sl_upconn *c =
			    sl_list_entry(p->groups[g].lru.tail, struct sl_upconn, lru);
			sl_pool_remove(p, c);
			fn(c, arg);
		}
	}
}

void sl_pool_destroy(struct sl_pool *p)
{
	for (unsigned int i = 0; i < SL_POOL_BUCKETS; i++) {
		while (p->buckets[i]) {
			struct sl_pool_key *k = p->buckets[i];
			p->buckets[i] = k->next;
			free(k);
		}
	}
	p->n_keys = 0;
}
