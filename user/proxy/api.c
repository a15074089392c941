/* The public session API of sluice.h: what phase callbacks may read and change. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "http/route.h"
#include "lb/lb.h"
#include "proxy/session.h"

const char *sl_req_method(const struct sl_session *s, size_t *len)
{
	const char *m = llhttp_method_name((llhttp_method_t)s->rp.p.method);
	if (len)
		*len = strlen(m);
	return m;
}

const char *sl_req_target(const struct sl_session *s, size_t *len)
{
	*len = s->req.target_len;
	return s->in.data + s->req.target_off;
}

const char *sl_req_path(const struct sl_session *s, size_t *len)
{
	if (!s->req.path_len) {
		*len = 1;
		return "/";
	}
	*len = s->req.path_len;
	return s->in.data + s->req.path_off;
}

const char *sl_req_host(const struct sl_session *s, size_t *len)
{
	const struct sl_head *h = &s->req;
	const char *v;
	size_t n;
	if (h->authority_len) {
		v = s->in.data + h->authority_off;
		n = h->authority_len;
	} else if (h->info.host_idx >= 0) {
		v = sl_hdr_value(h, s->in.data, (unsigned)h->info.host_idx);
		n = h->h[h->info.host_idx].value_len;
	} else {
		*len = 0;
		return NULL;
	}
	*len = sl_host_strip_port(v, n);
	return v;
}

static int head_get(const struct sl_head *h, const char *base, const char *name, const char **val,
		    size_t *len)
{
	int i = sl_head_find(h, base, name, strlen(name));
	if (i < 0)
		return -ENOENT;
	*val = sl_hdr_value(h, base, (unsigned)i);
	*len = h->h[i].value_len;
	return 0;
}

int sl_req_header(const struct sl_session *s, const char *name, const char **val, size_t *len)
{
	return head_get(&s->req, s->in.data, name, val, len);
}

int sl_req_header_set(struct sl_session *s, const char *name, const char *value)
{
	return sl_head_set(&s->req, s->in.data, name, value);
}

int sl_req_header_remove(struct sl_session *s, const char *name)
{
	return sl_head_remove(&s->req, s->in.data, name, strlen(name));
}

int sl_resp_status(const struct sl_session *s)
{
	return s->resp.status;
}

int sl_resp_header(const struct sl_session *s, const char *name, const char **val, size_t *len)
{
	return head_get(&s->resp, s->uin.data, name, val, len);
}

int sl_resp_header_set(struct sl_session *s, const char *name, const char *value)
{
	return sl_head_set(&s->resp, s->uin.data, name, value);
}

int sl_resp_header_remove(struct sl_session *s, const char *name)
{
	return sl_head_remove(&s->resp, s->uin.data, name, strlen(name));
}

int sl_log_field(struct sl_session *s, const char *key, const char *value)
{
	size_t room = sizeof(s->log_extra) - s->log_extra_len;
	int n = snprintf(s->log_extra + s->log_extra_len, room, " %s=%s", key, value);
	if (n < 0 || (size_t)n >= room)
		return -ENOSPC;
	for (int i = 1; i < n; i++) /* keep the line one key=value list */
		if (s->log_extra[s->log_extra_len + (size_t)i] == ' ' ||
		    s->log_extra[s->log_extra_len + (size_t)i] == '\n')
			s->log_extra[s->log_extra_len + (size_t)i] = '_';
	s->log_extra_len += (size_t)n;
	return 0;
}

unsigned int sl_session_tries(const struct sl_session *s)
{
	return s->tries;
}

unsigned int sl_session_worker(const struct sl_session *s)
{
	return s->w->id;
}

const struct sockaddr *sl_session_client(const struct sl_session *s, socklen_t *len)
{
	*len = s->client_len;
	return (const struct sockaddr *)&s->client;
}

void *sl_proxy_data(const struct sl_session *s)
{
	return s->w->d->ops->data;
}

const struct sl_conf_upstream *sl_upstream_find(const struct sl_session *s, const char *name)
{
	const struct sl_conf *c = s->hold->conf;
	for (unsigned int i = 0; i < c->n_upstreams; i++)
		if (!strcmp(c->upstreams[i].name, name))
			return &c->upstreams[i];
	return NULL;
}

int sl_upstream_pick(struct sl_session *s, const struct sl_conf_upstream *u, struct sl_peer *peer)
{
	int i = sl_lb_pick(u, s->w->id, s->tried);
	if (i < 0)
		return i;
	if (i < 64)
		s->tried |= 1ull << i;
	s->upstream = u;
	const struct sl_conf_server *sv = &u->servers[i];
	memset(peer, 0, sizeof(*peer));
	memcpy(&peer->addr, &sv->addr, sv->addrlen);
	peer->addrlen = sv->addrlen;
	size_t n = strlen(sv->address);
	n = n < sizeof(peer->name) - 1 ? n : sizeof(peer->name) - 1;
	memcpy(peer->name, sv->address, n);
	peer->name[n] = 0;
	return 0;
}

int sl_upstream_untried(const struct sl_session *s, const struct sl_conf_upstream *u)
{
	for (unsigned int i = 0; i < u->n_servers && i < 64; i++)
		if (!(s->tried & (1ull << i)))
			return 1;
	return 0;
}
