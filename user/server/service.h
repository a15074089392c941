/* Background services (the public side is sluice/service.h). */
#ifndef SL_SERVICE_INT_H
#define SL_SERVICE_INT_H

#include <event2/event.h>

#include "sluice/service.h"

/* Start every registered service (main thread, after the workers started; main-thread
 * services join main_base). Failures are logged; the daemon goes on. */
void sl_services_start(struct event_base *main_base);
/* Stop them, in reverse order, and join their threads (main thread). */
void sl_services_stop(void);
/* Services registered so far, and how many run (for /status). */
unsigned int sl_services_count(void);
const char *sl_service_name(unsigned int i, int *running);

#endif
