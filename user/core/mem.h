/* Per-worker free lists of I/O buffers in a few fixed size classes. Owned by one
 * thread: no locks. Keeps malloc out of the request path once warm. */
#ifndef SL_MEM_H
#define SL_MEM_H

#include <stddef.h>
#include <stdint.h>

#include "core/slab.h"

enum sl_mem_class {
	SL_MEM_SMALL = 0, /* 4 KiB: built heads */
	SL_MEM_IO,	  /* 16 KiB: socket reads */
	SL_MEM_BIG,	  /* max_header_bytes + slack: heads that outgrow the others */
	SL_MEM_NCLASS,
};

struct sl_mem_free {
	struct sl_mem_free *next;
};

struct sl_mem {
	size_t size[SL_MEM_NCLASS];
	struct sl_slab slab[SL_MEM_BIG]; /* the fixed classes live in slabs (core/slab.h) */
	struct sl_mem_free *free[SL_MEM_NCLASS];
	unsigned int n_free[SL_MEM_NCLASS];
	unsigned int max_free; /* kept per class; beyond that buffers go back to malloc */
	size_t released;       /* bytes given back to malloc since the last trim */
	uint64_t trimmed_ns;
};

void sl_mem_init(struct sl_mem *m, size_t big_size, unsigned int max_free);
void sl_mem_destroy(struct sl_mem *m);
/* Returns a buffer of class c (of m->size[c] bytes at the time of the call) or NULL. */
void *sl_mem_get(struct sl_mem *m, enum sl_mem_class c);
void sl_mem_put(struct sl_mem *m, enum sl_mem_class c, void *p);
/* Count bytes of other per-worker objects given back to malloc (sessions, requests). */
static inline void sl_mem_note_free(struct sl_mem *m, size_t n)
{
	m->released += n;
}
/* A quiet worker (no request for a while; called once per quiet spell): shrink the
 * free lists to a small reserve and, when enough went back to malloc, have glibc
 * return its free pages to the kernel (otherwise RSS never comes down after a burst). */
void sl_mem_trim(struct sl_mem *m, uint64_t now_ns);
/* Raise class c to size bytes (never shrinks it). Buffers of the old size still in use
 * keep working at the size they were handed out with and are freed when put back. */
void sl_mem_grow(struct sl_mem *m, enum sl_mem_class c, size_t size);

#endif
