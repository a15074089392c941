/* sd_notify(3) from libsystemd: systemd's Type=notify learns when the listeners serve,
 * when a reload starts and ends, and when a stop begins; STATUS= shows in
 * `systemctl status`. */
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "server/notify.h"

static unsigned long long mono_usec(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000;
}

void sl_notify_ready(unsigned int workers)
{
	sd_notifyf(0, "READY=1\nSTATUS=serving, %u workers", workers);
}

void sl_notify_reloading(void)
{
	/* MONOTONIC_USEC lets systemd 253+ (Type=notify-reload) match the reply */
	sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading the configuration",
		   mono_usec());
}

void sl_notify_reloaded(int ok, const char *reason)
{
	if (ok)
		sd_notify(0, "READY=1\nSTATUS=serving, configuration reloaded");
	else
		sd_notifyf(0, "READY=1\nSTATUS=serving, reload rejected: %.200s", reason);
}

void sl_notify_stopping(const char *how)
{
	sd_notifyf(0, "STOPPING=1\nSTATUS=%s", how);
}

void sl_notify_successor(int pid)
{
	sd_notifyf(0, "MAINPID=%d\nSTATUS=upgrading: pid %d takes over, this one drains", pid,
		   pid);
}

void sl_notify_mainpid(const char *status)
{
	sd_notifyf(0, "MAINPID=%d\nSTATUS=%s", (int)getpid(), status);
}
