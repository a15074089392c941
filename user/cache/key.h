/* Cache key templates: "$scheme://$host$uri$query" compiled once (at config load) and
 * rendered per request. Variables:
 *   $scheme  http or https             $host  Host (or absolute-form authority),
 *   $uri     path as received, no query        lower-cased, without the port
 *   $query   "?" and the query, or ""  $args  the query without "?"
 *   $method  the request method        $http_NAME  the request header NAME ('_' = '-')
 * Expanded values are escaped: bytes outside 0x21..0x7e, '%', and every byte of the
 * literal text that follows the variable in the template become %XX, so a value can
 * neither contain the separator that ends it nor forge another key (two variables
 * with nothing between them are the template author's ambiguity); a missing header
 * expands to nothing.
 * No dependencies beyond libc: config.c compiles templates to report errors. */
#ifndef SL_CACHE_KEY_H
#define SL_CACHE_KEY_H

#include <stddef.h>
#include <stdint.h>

#define SL_CKEY_PARTS_MAX 32
#define SL_CKEY_TPL_MAX 512

enum sl_ckey_kind {
	SL_CKEY_LIT = 0,
	SL_CKEY_SCHEME,
	SL_CKEY_HOST,
	SL_CKEY_URI,
	SL_CKEY_QUERY,
	SL_CKEY_ARGS,
	SL_CKEY_METHOD,
	SL_CKEY_HTTP,
};

struct sl_ckey_part {
	uint8_t kind;
	uint16_t off, len; /* literal text, or the header name, in buf */
	uint8_t esc[32];   /* bitmap of bytes escaped in this variable's value */
};

struct sl_ckey_tpl {
	struct sl_ckey_part p[SL_CKEY_PARTS_MAX];
	unsigned int n;
	char buf[SL_CKEY_TPL_MAX];
};

/* 0, or -EINVAL with the 0-based column of the problem in *col and a reason in *why. */
int sl_ckey_compile(const char *tpl, struct sl_ckey_tpl *t, unsigned int *col, const char **why);

struct sl_ckey_in {
	const char *scheme;
	const char *host; /* as received: port and case are dealt with here */
	size_t host_len;
	const char *target; /* origin-form path with the query */
	size_t target_len;
	const char *method;
	size_t method_len;
	/* a request header's value (the first of that name), or NULL */
	const char *(*header)(void *ctx, const char *name, size_t nlen, size_t *vlen);
	void *ctx;
};

/* The key's length, or -E2BIG when it does not fit in cap. */
int sl_ckey_render(const struct sl_ckey_tpl *t, const struct sl_ckey_in *in, char *out,
		   size_t cap);

#endif
