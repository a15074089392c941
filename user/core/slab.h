/* A per-thread slab of fixed-size objects in chunks mapped for them alone (a power of
 * two, aligned to their size, so an object finds its chunk by masking its address).
 *
 * Why not malloc: a burst of connections allocates request objects and I/O buffers
 * (kilobytes each) interleaved with the small allocations that outlive it (sessions,
 * libevent's per-fd entries). Freed, the big ones leave holes in the arena whose edge
 * pages stay resident, pinned by the small neighbours, and malloc_trim() cannot give
 * them back: measured, ~200 B per idle connection after 5,000 connections, a third of
 * what the idle connection itself costs. In slabs, the big objects leave the arena's
 * small ones packed; sl_slab_trim() unmaps chunks with nothing in use and hands the
 * pages of free objects in the others back to the kernel. One thread: no locks.
 *
 * Under AddressSanitizer each object is its own malloc, so use-after-free on them is
 * still caught. */
#ifndef SL_SLAB_H
#define SL_SLAB_H

#include <stddef.h>

struct sl_slab_chunk;

struct sl_slab {
	size_t size;  /* object size, rounded up to 16 */
	size_t chunk; /* chunk bytes */
	unsigned int per_chunk;
	struct sl_slab_chunk *partial; /* chunks with room */
	struct sl_slab_chunk *full;
	unsigned int chunks;
	size_t in_use;
};

/* The chunk is the smallest power of two of at least 64 KiB that holds min_per_chunk
 * objects (min_per_chunk >= 1). */
void sl_slab_init(struct sl_slab *sb, size_t size, unsigned int min_per_chunk);
/* Unmap every chunk; the objects must no longer be used. */
void sl_slab_destroy(struct sl_slab *sb);
/* An object of sb->size bytes (contents undefined), or NULL when out of memory. */
void *sl_slab_get(struct sl_slab *sb);
void sl_slab_put(struct sl_slab *sb, void *p);
/* Unmap chunks with nothing in use, keeping up to keep of them, and give the whole
 * pages of free objects in the others back to the kernel (they fault in again when
 * reused). Returns bytes unmapped. */
size_t sl_slab_trim(struct sl_slab *sb, unsigned int keep);

#endif
