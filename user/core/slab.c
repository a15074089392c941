/* core/slab.h */
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "core/slab.h"

struct sl_slab_free {
	struct sl_slab_free *next;
};

struct sl_slab_chunk {
	struct sl_slab_chunk *prev, *next;
	struct sl_slab_free *free; /* objects put back */
	unsigned int used;	   /* objects handed out */
	unsigned int carved;	   /* objects ever handed out (the rest was never touched) */
	unsigned int on_full;
};

#define HDR ((sizeof(struct sl_slab_chunk) + 15) & ~(size_t)15)

#if defined(__SANITIZE_ADDRESS__)
#define SL_SLAB_MALLOC 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SL_SLAB_MALLOC 1
#endif
#endif

void sl_slab_init(struct sl_slab *sb, size_t size, unsigned int min_per_chunk)
{
	*sb = (struct sl_slab){0};
	sb->size = (size + 15) & ~(size_t)15;
	sb->chunk = 64 * 1024;
	while ((sb->chunk - HDR) / sb->size < (min_per_chunk ? min_per_chunk : 1))
		sb->chunk *= 2;
	sb->per_chunk = (unsigned int)((sb->chunk - HDR) / sb->size);
}

static void unlink_chunk(struct sl_slab_chunk **head, struct sl_slab_chunk *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		*head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->prev = c->next = NULL;
}

#ifndef SL_SLAB_MALLOC /* the chunk machinery; under ASan objects are plain malloc */
static void push_chunk(struct sl_slab_chunk **head, struct sl_slab_chunk *c)
{
	c->prev = NULL;
	c->next = *head;
	if (*head)
		(*head)->prev = c;
	*head = c;
}

/* A chunk-aligned mapping, so an object finds its chunk by masking its address. */
static struct sl_slab_chunk *chunk_new(size_t chunk)
{
	size_t len = 2 * chunk;
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	uintptr_t a = ((uintptr_t)p + chunk - 1) & ~(uintptr_t)(chunk - 1);
	size_t head = a - (uintptr_t)p, tail = len - head - chunk;
	if (head)
		munmap(p, head);
	if (tail)
		munmap((char *)a + chunk, tail);
	struct sl_slab_chunk *c = (struct sl_slab_chunk *)a;
	*c = (struct sl_slab_chunk){0};
	return c;
}

static struct sl_slab_chunk *chunk_of(const struct sl_slab *sb, const void *p)
{
	return (struct sl_slab_chunk *)((uintptr_t)p & ~(uintptr_t)(sb->chunk - 1));
}
#endif

void *sl_slab_get(struct sl_slab *sb)
{
#ifdef SL_SLAB_MALLOC
	void *o = malloc(sb->size);
	sb->in_use += o != NULL;
	return o;
#else
	struct sl_slab_chunk *c = sb->partial;
	if (!c) {
		c = chunk_new(sb->chunk);
		if (!c)
			return NULL;
		push_chunk(&sb->partial, c);
		sb->chunks++;
	}
	void *o;
	if (c->free) {
		o = c->free;
		c->free = c->free->next;
	} else {
		o = (char *)c + HDR + (size_t)c->carved * sb->size;
		c->carved++;
	}
	c->used++;
	sb->in_use++;
	if (c->used == sb->per_chunk) {
		unlink_chunk(&sb->partial, c);
		push_chunk(&sb->full, c);
		c->on_full = 1;
	}
	return o;
#endif
}

void sl_slab_put(struct sl_slab *sb, void *p)
{
	if (!p)
		return;
	sb->in_use--;
#ifdef SL_SLAB_MALLOC
	free(p);
#else
	struct sl_slab_chunk *c = chunk_of(sb, p);
	struct sl_slab_free *f = p;
	f->next = c->free;
	c->free = f;
	c->used--;
	if (c->on_full) {
		unlink_chunk(&sb->full, c);
		push_chunk(&sb->partial, c);
		c->on_full = 0;
	}
#endif
}

/* The whole pages of a free object past its first page (which holds the free-list
 * link) go back to the kernel. */
static void release_pages(const struct sl_slab *sb, struct sl_slab_chunk *c)
{
	const uintptr_t pg = 4096;
	if (sb->size < 2 * pg)
		return;
	for (struct sl_slab_free *f = c->free; f; f = f->next) {
		uintptr_t from = ((uintptr_t)f + sizeof(*f) + pg - 1) & ~(pg - 1);
		uintptr_t to = ((uintptr_t)f + sb->size) & ~(pg - 1);
		if (to > from)
			madvise((void *)from, to - from, MADV_DONTNEED);
	}
}

size_t sl_slab_trim(struct sl_slab *sb, unsigned int keep)
{
	size_t n = 0;
	unsigned int kept = 0;
	struct sl_slab_chunk *c = sb->partial;
	while (c) {
		struct sl_slab_chunk *next = c->next;
		if (c->used == 0 && kept++ >= keep) {
			unlink_chunk(&sb->partial, c);
			munmap(c, sb->chunk);
			sb->chunks--;
			n += sb->chunk;
		} else {
			release_pages(sb, c);
		}
		c = next;
	}
	return n;
}

void sl_slab_destroy(struct sl_slab *sb)
{
	struct sl_slab_chunk *lists[2] = {sb->partial, sb->full};
	for (int i = 0; i < 2; i++)
		while (lists[i]) {
			struct sl_slab_chunk *next = lists[i]->next;
			munmap(lists[i], sb->chunk);
			lists[i] = next;
		}
	*sb = (struct sl_slab){.size = sb->size, .chunk = sb->chunk, .per_chunk = sb->per_chunk};
}
