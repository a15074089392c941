/* Admin API (see admin.h). */
#include "admin/admin.h"
#include "server/worker.h"

int sl_admin_start(struct sl_daemon *d)
{
	(void)d;
	return 0;
}

void sl_admin_stop(struct sl_daemon *d)
{
	(void)d;
}
