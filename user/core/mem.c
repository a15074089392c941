/* Per-worker buffer free lists (see mem.h). */
#include <stdlib.h>

#include "core/mem.h"

void sl_mem_init(struct sl_mem *m, size_t big_size, unsigned int max_free)
{
	m->size[SL_MEM_SMALL] = 4096;
	m->size[SL_MEM_IO] = 16384;
	m->size[SL_MEM_BIG] = big_size > 16384 ? big_size : 16384;
	for (int c = 0; c < SL_MEM_NCLASS; c++) {
		m->free[c] = NULL;
		m->n_free[c] = 0;
	}
	m->max_free = max_free;
}

void sl_mem_destroy(struct sl_mem *m)
{
	for (int c = 0; c < SL_MEM_NCLASS; c++) {
		while (m->free[c]) {
			struct sl_mem_free *f = m->free[c];
			m->free[c] = f->next;
			free(f);
		}
		m->n_free[c] = 0;
	}
}

void *sl_mem_get(struct sl_mem *m, enum sl_mem_class c)
{
	struct sl_mem_free *f = m->free[c];
	if (f) {
		m->free[c] = f->next;
		m->n_free[c]--;
		return f;
	}
	return malloc(m->size[c]);
}

void sl_mem_put(struct sl_mem *m, enum sl_mem_class c, void *p)
{
	if (!p)
		return;
	if (m->n_free[c] >= m->max_free) {
		free(p);
		return;
	}
	struct sl_mem_free *f = p;
	f->next = m->free[c];
	m->free[c] = f;
	m->n_free[c]++;
}
