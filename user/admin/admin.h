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
/* The admin API's listening Unix socket and its path (into path), or -1: handed to a
 * successor, which may run as a user that cannot bind in the socket's directory. */
int sl_admin_unix_fd(struct sl_daemon *d, char *path, size_t len);
/* Handed over: accept no more connections on either socket (the successor accepts on
 * the same ones; a probe must not get this draining daemon's "stopping"); requests in
 * progress finish; sl_admin_stop() frees the rest at exit. */
void sl_admin_handover(struct sl_daemon *d);

#endif
