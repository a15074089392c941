/* tls_upstream: a custom proxy that sends each request to a TLS upstream it chooses
 * itself, the way Pingora's hello-world proxies to 1.1.1.1:443 with the SNI
 * "one.one.one.one" — here to a local server:
 *
 * - "X-Upstream-Port: N" picks 127.0.0.1:N (default 8443), connected by IP;
 * - the certificate is verified against SLUICE_EXAMPLE_CA (a PEM file; unset: the system
 *   store) and must carry the name SLUICE_EXAMPLE_SNI (default "localhost"), which is
 *   also the SNI sent;
 * - connections are pooled per peer (port, SNI, CA), TLS sessions resumed.
 *
 * Build: make examples; run: SLUICE_EXAMPLE_CA=ca.pem build/examples/tls_upstream -c
 * CONFIG (same flags as sluiced; the config's listeners are used, not its routes). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/sluice.h"

static int tls_upstream_peer(struct sl_session *s, void *ctx, struct sl_peer *peer)
{
	unsigned long port = 8443;
	const char *v;
	size_t len;
	if (sl_req_header(s, "X-Upstream-Port", &v, &len) == 0) {
		char buf[8];
		char *end;
		if (!len || len >= sizeof(buf))
			return -EINVAL;
		memcpy(buf, v, len);
		buf[len] = 0;
		port = strtoul(buf, &end, 10);
		if (*end || !port || port > 65535)
			return -EINVAL;
	}
	const char *name = getenv("SLUICE_EXAMPLE_SNI");
	if (!name || !*name)
		name = "localhost";
	struct sockaddr_in *a = (struct sockaddr_in *)&peer->addr;
	a->sin_family = AF_INET;
	a->sin_port = htons((uint16_t)port);
	a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	peer->addrlen = sizeof(*a);
	snprintf(peer->name, sizeof(peer->name), "127.0.0.1:%lu", port);
	peer->tls = 1;
	peer->verify = 1;
	snprintf(peer->sni, sizeof(peer->sni), "%s", name);
	peer->ca_file = getenv("SLUICE_EXAMPLE_CA"); /* NULL: the system store */
	return 0;
}

static const struct sl_proxy_ops tls_upstream_ops = {
    .upstream_peer = tls_upstream_peer,
};

int main(int argc, char **argv)
{
	return sl_main(argc, argv, &tls_upstream_ops);
}
