/* Route matching: picks the listener route for a request's host and path.
 * Runs once per request, so it reads the config snapshot and allocates nothing. */
#ifndef SL_ROUTE_H
#define SL_ROUTE_H

#include <stddef.h>

#include "config/config-t.h"

/* First route of the listener whose host and path prefix match, or NULL.
 * host: the request's host WITHOUT port, any case (compared case-insensitively); may be
 * NULL/0 when the request had none, which matches only routes without host.
 * path: the path part of the target; a query may follow, the prefix is matched against the
 * bytes given. */
const struct sl_conf_route *sl_route_match(const struct sl_conf_listener *l, const char *host,
					   size_t host_len, const char *path, size_t path_len);

/* Length of host without a ":port" suffix: "[::1]:80" -> "[::1]", "example.com:8080" ->
 * "example.com"; anything without a trailing numeric port comes back whole. */
size_t sl_host_strip_port(const char *host, size_t len);

#endif
