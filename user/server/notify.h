/* Service-manager readiness (sd_notify): READY, RELOADING, STOPPING and a status line.
 * Without $NOTIFY_SOCKET (not started by systemd) every call does nothing. */
#ifndef SL_SERVER_NOTIFY_H
#define SL_SERVER_NOTIFY_H

void sl_notify_ready(unsigned int workers);
void sl_notify_reloading(void);
/* after a reload: ok or the reason it was rejected, and READY=1 again either way */
void sl_notify_reloaded(int ok, const char *reason);
void sl_notify_stopping(const char *how);
/* an upgrade's successor took over: it is the service's main process from now on (the
 * unit needs NotifyAccess=all for systemd to take this from a process it did not start) */
void sl_notify_mainpid(void);

#endif
