/* Privilege drop to the config's user:/group: with only keep_capabilities left. */
#ifndef SL_SERVER_PRIVDROP_H
#define SL_SERVER_PRIVDROP_H

#include <stddef.h>
#include <stdint.h>

struct sl_conf;

/* Switch to c->proc's user and group and keep only its keep_capabilities, then check
 * the result (no uid 0 left, no way back, no other capability). pin_dir (NULL: none) is
 * handed to the user. Call before any thread starts. 0 when done or nothing to do (no
 * user:), else -errno with the reason in why. */
int sl_priv_drop(const struct sl_conf *c, const char *pin_dir, char *why, size_t len);

/* "net_bind_service,net_admin", or "none" */
size_t sl_priv_caps_text(uint64_t mask, char *buf, size_t len);

#endif
