/* Background services: a table filled before start, each entry on the main loop or on a
 * thread of its own (see sluice/service.h). */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "server/service.h"

struct svc {
	struct sl_service def;
	char name[64];
	int running;
	struct event_base *base; /* own thread's loop */
	struct event *tick_ev, *stop_ev;
	pthread_t thread;
	atomic_int stopping;
	pthread_mutex_t start_lock;
	pthread_cond_t started;
	int start_done, start_rc;
};

static struct svc svcs[SL_SERVICE_MAX];
static unsigned int n_svcs;
static atomic_int frozen; /* services started: no more registrations */
static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;

int sl_service_add(const struct sl_service *def)
{
	if (!def || !def->name || !def->name[0] || (!def->start && !def->tick))
		return -EINVAL;
	pthread_mutex_lock(&reg_lock);
	int rc = 0;
	if (atomic_load(&frozen))
		rc = -EBUSY;
	else if (n_svcs == SL_SERVICE_MAX)
		rc = -ENOSPC;
	if (!rc) {
		struct svc *s = &svcs[n_svcs++];
		memset(s, 0, sizeof(*s));
		s->def = *def;
		strncpy(s->name, def->name, sizeof(s->name) - 1);
		s->def.name = s->name;
	}
	pthread_mutex_unlock(&reg_lock);
	return rc;
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct svc *s = arg;
	if (s->def.tick && !atomic_load(&s->stopping))
		s->def.tick(s->def.data);
}

/* Own-thread services: stop is noticed by this short poll (a libevent base is not
 * thread-safe without evthread locking, which the workers do not need). */
static void stop_cb(evutil_socket_t fd, short what, void *arg)
{
	struct svc *s = arg;
	if (atomic_load(&s->stopping))
		event_base_loopbreak(s->base);
}

static int arm(struct svc *s, struct event_base *base)
{
	if (!s->def.interval_ms || !s->def.tick)
		return 0;
	s->tick_ev = event_new(base, -1, EV_PERSIST, tick_cb, s);
	struct timeval tv = {s->def.interval_ms / 1000, (s->def.interval_ms % 1000) * 1000};
	if (!s->tick_ev || event_add(s->tick_ev, &tv))
		return -ENOMEM;
	return 0;
}

static void *svc_main(void *arg)
{
	struct svc *s = arg;
	int rc = -ENOMEM;
	s->base = event_base_new();
	if (s->base) {
		s->stop_ev = event_new(s->base, -1, EV_PERSIST, stop_cb, s);
		struct timeval tv = {0, 50 * 1000};
		if (s->stop_ev && !event_add(s->stop_ev, &tv))
			rc = s->def.start ? s->def.start(s->base, s->def.data) : 0;
		if (!rc)
			rc = arm(s, s->base);
	}
	pthread_mutex_lock(&s->start_lock);
	s->start_rc = rc;
	s->start_done = 1;
	pthread_cond_signal(&s->started);
	pthread_mutex_unlock(&s->start_lock);
	if (!rc) {
		event_base_dispatch(s->base);
		if (s->def.stop)
			s->def.stop(s->def.data);
	}
	if (s->tick_ev)
		event_free(s->tick_ev);
	if (s->stop_ev)
		event_free(s->stop_ev);
	if (s->base)
		event_base_free(s->base);
	s->tick_ev = s->stop_ev = NULL;
	s->base = NULL;
	return NULL;
}

void sl_services_start(struct event_base *main_base)
{
	atomic_store(&frozen, 1);
	for (unsigned int i = 0; i < n_svcs; i++) {
		struct svc *s = &svcs[i];
		int rc;
		if (s->def.own_thread) {
			pthread_mutex_init(&s->start_lock, NULL);
			pthread_cond_init(&s->started, NULL);
			rc = pthread_create(&s->thread, NULL, svc_main, s) ? -EAGAIN : 0;
			if (!rc) {
				pthread_mutex_lock(&s->start_lock);
				while (!s->start_done)
					pthread_cond_wait(&s->started, &s->start_lock);
				rc = s->start_rc;
				pthread_mutex_unlock(&s->start_lock);
				if (rc)
					pthread_join(s->thread, NULL);
			}
		} else {
			rc = s->def.start ? s->def.start(main_base, s->def.data) : 0;
			if (!rc)
				rc = arm(s, main_base);
			if (rc && s->tick_ev) {
				event_free(s->tick_ev);
				s->tick_ev = NULL;
			}
		}
		s->running = !rc;
		if (rc)
			sl_log(SL_LOG_ERROR, "msg=\"service did not start\" service=%s err=%d",
			       s->name, rc);
		else
			sl_log(SL_LOG_INFO, "msg=\"service started\" service=%s thread=%s", s->name,
			       s->def.own_thread ? "own" : "main");
	}
}

void sl_services_stop(void)
{
	for (unsigned int k = n_svcs; k-- > 0;) {
		struct svc *s = &svcs[k];
		if (!s->running)
			continue;
		atomic_store(&s->stopping, 1);
		if (s->def.own_thread) {
			pthread_join(s->thread, NULL);
		} else {
			if (s->tick_ev)
				event_free(s->tick_ev);
			s->tick_ev = NULL;
			if (s->def.stop)
				s->def.stop(s->def.data);
		}
		s->running = 0;
		sl_log(SL_LOG_INFO, "msg=\"service stopped\" service=%s", s->name);
	}
}

unsigned int sl_services_count(void)
{
	return n_svcs;
}

const char *sl_service_name(unsigned int i, int *running)
{
	if (i >= n_svcs)
		return NULL;
	*running = svcs[i].running;
	return svcs[i].name;
}
