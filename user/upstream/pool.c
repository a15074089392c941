/* Per-worker idle upstream connection pool (see pool.h). No locks: one owner thread. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "upstream/pool.h"

static uint32_t addr_hash(const struct sockaddr_storage *a, socklen_t len)
{
	/* FNV-1a over the address bytes; sockaddrs are zero-padded by the config loader */
	const unsigned char *p = (const unsigned char *)a;
	uint32_t h = 2166136261u;
	for (socklen_t i = 0; i < len; i++)
		h = (h ^ p[i]) * 16777619u;
	return h;
}

void sl_pool_init(struct sl_pool *p, unsigned int max_idle)
{
	memset(p, 0, sizeof(*p));
	p->max_idle = max_idle;
}

static struct sl_pool_key *key_find(struct sl_pool *p, const struct sockaddr_storage *a,
				    socklen_t len, uint32_t h, int create)
{
	struct sl_pool_key **b = &p->buckets[h % SL_POOL_BUCKETS];
	for (struct sl_pool_key *k = *b; k; k = k->next)
		if (k->hash == h && k->addrlen == len && !memcmp(&k->addr, a, len))
			return k;
	if (!create)
		return NULL;
	struct sl_pool_key *k = calloc(1, sizeof(*k));
	if (!k)
		return NULL;
	memcpy(&k->addr, a, len);
	k->addrlen = len;
	k->hash = h;
	k->next = *b;
	*b = k;
	return k;
}

int sl_pool_put(struct sl_pool *p, struct sl_upconn *c, unsigned int max_per_peer)
{
	if (p->n_idle >= p->max_idle || max_per_peer == 0)
		return -ENOSPC;
	uint32_t h = addr_hash(&c->peer.addr, c->peer.addrlen);
	struct sl_pool_key *k = key_find(p, &c->peer.addr, c->peer.addrlen, h, 1);
	if (!k || k->count >= max_per_peer)
		return -ENOSPC;
	c->key = k;
	c->prev = NULL;
	c->next = k->top;
	if (k->top)
		k->top->prev = c;
	k->top = c;
	k->count++;
	p->n_idle++;
	return 0;
}

void sl_pool_remove(struct sl_pool *p, struct sl_upconn *c)
{
	struct sl_pool_key *k = c->key;
	if (!k)
		return;
	if (c->prev)
		c->prev->next = c->next;
	else
		k->top = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->prev = c->next = NULL;
	c->key = NULL;
	k->count--;
	p->n_idle--;
}

struct sl_upconn *sl_pool_get(struct sl_pool *p, const struct sl_peer *peer)
{
	if (!p->n_idle)
		return NULL;
	uint32_t h = addr_hash(&peer->addr, peer->addrlen);
	struct sl_pool_key *k = key_find(p, &peer->addr, peer->addrlen, h, 0);
	if (!k || !k->top)
		return NULL;
	struct sl_upconn *c = k->top;
	sl_pool_remove(p, c);
	return c;
}

void sl_pool_drain(struct sl_pool *p, void (*fn)(struct sl_upconn *c))
{
	for (unsigned int i = 0; i < SL_POOL_BUCKETS; i++) {
		struct sl_pool_key *k = p->buckets[i];
		while (k) {
			while (k->top) {
				struct sl_upconn *c = k->top;
				sl_pool_remove(p, c);
				fn(c);
			}
			struct sl_pool_key *next = k->next;
			free(k);
			k = next;
		}
		p->buckets[i] = NULL;
	}
}
