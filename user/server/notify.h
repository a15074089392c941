/* Service-manager readiness (sd_notify): READY, RELOADING, STOPPING and a status line.
 * Without $NOTIFY_SOCKET (not started by systemd) every call does nothing. */
#ifndef SL_SERVER_NOTIFY_H
#define SL_SERVER_NOTIFY_H

void sl_notify_ready(unsigned int workers);
void sl_notify_reloading(void);
/* after a reload: ok or the reason it was rejected, and READY=1 again either way */
void sl_notify_reloaded(int ok, const char *reason);
void sl_notify_stopping(const char *how);
/* Predecessor, its successor ready: MAINPID= names the successor before this daemon
 * drains and exits. systemd (NotifyAccess=main) takes MAINPID= only from the main pid, so
 * the main pid must say it: otherwise its exit ends the service and the cgroup, the new
 * daemon included, is killed. */
void sl_notify_successor(int pid);
/* This process is the main one: a successor once it took over (seen with
 * NotifyAccess=all; with main, sl_notify_successor() already moved it), or a predecessor
 * whose successor could not be answered after all. */
void sl_notify_mainpid(const char *status);

#endif
