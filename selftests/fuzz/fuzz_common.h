/* Shared by the framing fuzz targets: a growing output buffer and the read-size table
 * that models how bytes arrive from a socket. */
#ifndef SL_FUZZ_COMMON_H
#define SL_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bytes a read() may return, picked by the input's first byte. */
static const size_t fz_steps[16] = {1,	 2,    3,    5,	   8,	  13,	 64,	 100,
				    511, 1000, 4096, 8192, 16384, 65536, 131072, 1 << 20};

/* Read size for an input of len bytes: at most 512 reads, so that one-byte reads of a
 * 128 KiB input do not cost a second per run. */
static inline size_t fz_step(unsigned int idx, size_t len)
{
	size_t s = fz_steps[idx & 15];
	return s < len / 512 ? len / 512 : s;
}

struct fz_buf {
	char *p;
	size_t len, cap;
};

static inline void fz_put(struct fz_buf *b, const void *s, size_t n)
{
	if (b->len + n > b->cap) {
		size_t c = b->cap ? b->cap : 4096;
		while (c < b->len + n)
			c *= 2;
		b->p = realloc(b->p, c);
		if (!b->p)
			abort();
		b->cap = c;
	}
	if (n)
		memcpy(b->p + b->len, s, n);
	b->len += n;
}

static inline void fz_free(struct fz_buf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

/* FUZZ_ECHO=1: print what the codec would send, to read a reproducer. */
static inline void fz_echo(const struct fz_buf *b, const char *to)
{
	static int on = -1;
	if (on < 0)
		on = getenv("FUZZ_ECHO") != NULL;
	if (!on)
		return;
	fprintf(stderr, "---- to %s: %zu bytes\n", to, b->len);
	fwrite(b->p, 1, b->len, stderr);
	fprintf(stderr, "\n----\n");
}

#endif
