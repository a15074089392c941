/* FNV-1a, 64-bit: the one hash for pool keys and peer identities (short keys, no
 * adversary picks them: peers and upstream names come from the configuration). */
#ifndef SL_HASH_H
#define SL_HASH_H

#include <stddef.h>
#include <stdint.h>

#define SL_FNV_INIT 14695981039346656037ull

static inline uint64_t sl_fnv(uint64_t h, const void *p, size_t n)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 1099511628211ull;
	return h;
}

#endif
