/* Admin API: HTTP/JSON on a Unix socket (0600) and optionally a loopback TCP port
 * with a bearer token. Runs on the main thread's event loop. */
#ifndef SL_ADMIN_H
#define SL_ADMIN_H

struct sl_daemon;

/* Start serving per the config's admin: section (nothing to do when absent).
 * 0, or -errno (logged). */
int sl_admin_start(struct sl_daemon *d);
void sl_admin_stop(struct sl_daemon *d);
/* Upgrade successor, handed over: its admin socket (bound and listening under a
 * temporary name since start) replaces the predecessor's at the configured path. */
int sl_admin_takeover_commit(struct sl_daemon *d);
/* The admin API's listening TCP socket (admin.listen), or -1: handed to a successor. */
int sl_admin_tcp_fd(struct sl_daemon *d);
/* Handed over: stop accepting on the TCP socket (the successor accepts on it; a probe
 * must not get this draining daemon's "stopping"); requests in progress finish, and the
 * Unix socket serves on until exit for clients that connected before the successor
 * renamed its own over the path. */
void sl_admin_handover(struct sl_daemon *d);

#endif
