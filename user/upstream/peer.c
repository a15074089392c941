/* Peer identity: what makes two upstream connections interchangeable. */
#include <string.h>

#include "core/hash.h"
#include "sluice/sluice.h"

static uint64_t fnv_str(uint64_t h, const char *s)
{
	return s ? sl_fnv(h, s, strlen(s) + 1) : sl_fnv(h, "", 1);
}

uint64_t sl_peer_hash(const struct sl_peer *p)
{
	uint64_t h = SL_FNV_INIT;
	h = sl_fnv(h, &p->addr, p->addrlen);
	h = sl_fnv(h, &p->tls, 1);
	h = sl_fnv(h, &p->verify, 1);
	h = fnv_str(h, p->sni);
	h = fnv_str(h, p->ca_file);
	h = fnv_str(h, p->client_cert);
	h = fnv_str(h, p->client_key);
	h = sl_fnv(h, &p->proxy, p->proxy_len);
	h = fnv_str(h, p->verify_name);
	h = fnv_str(h, p->connect_target);
	h = fnv_str(h, p->proxy_headers);
	return h;
}

static int str_same(const char *a, const char *b)
{
	return (!a && !b) || (a && b && !strcmp(a, b));
}

int sl_peer_same(const struct sl_peer *a, const struct sl_peer *b)
{
	return a->addrlen == b->addrlen && !memcmp(&a->addr, &b->addr, a->addrlen) &&
	       a->tls == b->tls && a->verify == b->verify && !strcmp(a->sni, b->sni) &&
	       str_same(a->ca_file, b->ca_file) && str_same(a->client_cert, b->client_cert) &&
	       str_same(a->client_key, b->client_key) && a->proxy_len == b->proxy_len &&
	       !memcmp(&a->proxy, &b->proxy, a->proxy_len) &&
	       !strcmp(a->verify_name, b->verify_name) &&
	       !strcmp(a->connect_target, b->connect_target) &&
	       !strcmp(a->proxy_headers, b->proxy_headers);
}
