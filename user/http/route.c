/* Route matching: first route of a listener whose host and path prefix fit the request.
 * Per request, so no allocation and no locale-dependent case folding. */
#include <string.h>

#include "http/route.h"

static inline unsigned char lower(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

/* pat is stored lower-cased by the config loader; only the request side needs folding. */
static int host_eq(const char *s, const char *pat, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (lower(s[i]) != (unsigned char)pat[i])
			return 0;
	return 1;
}

static int host_matches(const struct sl_conf_route *r, const char *host, size_t host_len)
{
	size_t n = strlen(r->host);

	if (!host || !host_len)
		return 0;
	/* ".example.com" needs at least one byte of label before it: not "example.com"
	 * (shorter) and not ".example.com" itself (equal length). */
	if (r->host_wildcard)
		return host_len > n && host_eq(host + host_len - n, r->host, n);
	return host_len == n && host_eq(host, r->host, n);
}

const struct sl_conf_route *sl_route_match(const struct sl_conf_listener *l, const char *host,
					   size_t host_len, const char *path, size_t path_len)
{
	unsigned int i;

	for (i = 0; i < l->n_routes; i++) {
		const struct sl_conf_route *r = &l->routes[i];

		if (r->host && !host_matches(r, host, host_len))
			continue;
		if (path_len < r->path_len || (r->path_len && memcmp(path, r->path, r->path_len)))
			continue;
		return r;
	}
	return NULL;
}

size_t sl_host_strip_port(const char *host, size_t len)
{
	const char *colon;
	size_t i;

	if (!host || !len)
		return 0;
	if (host[0] == '[') {
		colon = memchr(host, ']', len);
		return colon ? (size_t)(colon - host) + 1 : len;
	}
	colon = memchr(host, ':', len);
	if (!colon)
		return len;
	/* A second colon means an unbracketed IPv6 literal: there is no port to strip. */
	for (i = colon - host + 1; i < len; i++)
		if (host[i] < '0' || host[i] > '9')
			return len;
	return colon - host;
}
