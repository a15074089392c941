/* Loading, validating and releasing configuration snapshots (YAML). */
#ifndef SL_CONFIG_H
#define SL_CONFIG_H

#include "config-t.h"

/* Mappings and sequences nested deeper than this are rejected (FILE:LINE:COLUMN of the
 * first one too deep) before the document is built. */
#define SL_CONF_MAX_DEPTH 64
/* Servers in one upstream. */
#define SL_CONF_MAX_SERVERS 65536

/* Parse and validate a file. On failure returns NULL and writes
 * "FILE:LINE:COLUMN: reason" into err. The snapshot starts with refcnt 1. */
struct sl_conf *sl_conf_load(const char *path, char *err, size_t errlen);

/* Same, from memory; name is used in error messages. */
struct sl_conf *sl_conf_parse(const char *text, size_t len, const char *name, char *err,
			      size_t errlen);

void sl_conf_get(struct sl_conf *c);
/* Drops one reference; the last one frees the snapshot. Safe from any thread. */
void sl_conf_put(struct sl_conf *c);

/* "250ms", "10s", "2m", "1h", or a bare number of seconds. 0 on success, -EINVAL otherwise. */
int sl_parse_duration(const char *s, unsigned int *ms);
/* "512", "32k", "8KiB", "10m", "1g" (binary multiples). */
int sl_parse_size(const char *s, uint64_t *out);
/* "127.0.0.1:80", "[::1]:80", ":8080" (any IPv4), "[::]:8080", "localhost:80". */
int sl_parse_addr(const char *s, struct sockaddr_storage *ss, socklen_t *len);
/* The same without name resolution (never blocks): 0 parsed, 1 well-formed but the host
 * is a name (resolve it with sl_parse_addr, off the main thread), -EINVAL malformed. */
int sl_parse_addr_numeric(const char *s, struct sockaddr_storage *ss, socklen_t *len);

/* "net_admin" for CAP_NET_ADMIN, NULL for a capability keep_capabilities does not take */
const char *sl_conf_cap_name(int cap);

#endif
