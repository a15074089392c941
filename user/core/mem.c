/* Per-worker buffer free lists (see mem.h). */
#include <malloc.h>
#include <stdlib.h>

#include "core/mem.h"

/* Each buffer carries the size it was allocated with, just before its data: a buffer
 * handed back after its class was resized is freed instead of being handed out again at
 * a size it does not have. Two words keep the data 16-byte aligned. */
struct hdr {
	size_t size;
	size_t pad;
};

static struct hdr *hdr_of(void *p)
{
	return (struct hdr *)p - 1;
}

void sl_mem_init(struct sl_mem *m, size_t big_size, unsigned int max_free)
{
	m->size[SL_MEM_SMALL] = 4096;
	m->size[SL_MEM_IO] = 16384;
	m->size[SL_MEM_BIG] = big_size > 16384 ? big_size : 16384;
	for (int c = 0; c < SL_MEM_BIG; c++)
		sl_slab_init(&m->slab[c], sizeof(struct hdr) + m->size[c], 15);
	for (int c = 0; c < SL_MEM_NCLASS; c++) {
		m->free[c] = NULL;
		m->n_free[c] = 0;
	}
	m->max_free = max_free;
	m->released = 0;
	m->trimmed_ns = 0;
}

static void release(struct sl_mem *m, enum sl_mem_class c, struct hdr *h)
{
	if (c < SL_MEM_BIG)
		sl_slab_put(&m->slab[c], h);
	else
		free(h);
}

static void drain(struct sl_mem *m, enum sl_mem_class c)
{
	while (m->free[c]) {
		struct sl_mem_free *f = m->free[c];
		m->free[c] = f->next;
		release(m, c, hdr_of(f));
	}
	m->n_free[c] = 0;
}

void sl_mem_destroy(struct sl_mem *m)
{
	for (int c = 0; c < SL_MEM_NCLASS; c++)
		drain(m, c);
	for (int c = 0; c < SL_MEM_BIG; c++)
		sl_slab_destroy(&m->slab[c]);
}

void sl_mem_grow(struct sl_mem *m, enum sl_mem_class c, size_t size)
{
	if (c < SL_MEM_BIG || size <= m->size[c]) /* the slab classes have fixed sizes */
		return;
	m->size[c] = size;
	drain(m, c); /* too small now; those still in use are freed as they come back */
}

void *sl_mem_get(struct sl_mem *m, enum sl_mem_class c)
{
	struct sl_mem_free *f = m->free[c];
	if (f) {
		m->free[c] = f->next;
		m->n_free[c]--;
		return f;
	}
	struct hdr *h = c < SL_MEM_BIG ? sl_slab_get(&m->slab[c]) : malloc(sizeof(*h) + m->size[c]);
	if (!h)
		return NULL;
	h->size = m->size[c];
	return h + 1;
}

void sl_mem_put(struct sl_mem *m, enum sl_mem_class c, void *p)
{
	if (!p)
		return;
	if (m->n_free[c] >= m->max_free || hdr_of(p)->size != m->size[c]) {
		m->released += hdr_of(p)->size;
		release(m, c, hdr_of(p));
		return;
	}
	struct sl_mem_free *f = p;
	f->next = m->free[c];
	m->free[c] = f;
	m->n_free[c]++;
}

#define TRIM_BYTES (256u << 10)
#define RESERVE 4 /* buffers per class kept through a quiet spell */

void sl_mem_trim(struct sl_mem *m, uint64_t now_ns)
{
	for (int c = 0; c < SL_MEM_NCLASS; c++) {
		while (m->n_free[c] > RESERVE) {
			struct sl_mem_free *f = m->free[c];
			m->free[c] = f->next;
			m->n_free[c]--;
			m->released += hdr_of(f)->size;
			release(m, c, hdr_of(f));
		}
	}
	for (int c = 0; c < SL_MEM_BIG; c++)
		sl_slab_trim(&m->slab[c], 0);
	/* called once per quiet spell (see the worker tick), so never under load */
	if (m->released < TRIM_BYTES)
		return;
	m->released = 0;
	m->trimmed_ns = now_ns;
	malloc_trim(0);
}
