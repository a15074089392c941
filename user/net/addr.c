/* net/addr.h */
#include <stdio.h>
#include <string.h>
#include <netinet/in.h>

#include "net/addr.h"

size_t sl_addr_fmt(const struct sockaddr *sa, char buf[SL_ADDR_STRLEN], uint8_t *ip_off,
		   uint8_t *ip_len)
{
	char ip[INET6_ADDRSTRLEN] = "?";
	unsigned int port = 0;
	int v6 = 0;
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)(const void *)sa;
		v6 = !IN6_IS_ADDR_V4MAPPED(&a->sin6_addr);
		inet_ntop(v6 ? AF_INET6 : AF_INET,
			  v6 ? (const void *)&a->sin6_addr : (const void *)&a->sin6_addr.s6_addr[12],
			  ip, sizeof(ip));
		port = ntohs(a->sin6_port);
	} else if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)(const void *)sa;
		inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
		port = ntohs(a->sin_port);
	}
	int n = snprintf(buf, SL_ADDR_STRLEN, v6 ? "[%s]:%u" : "%s:%u", ip, port);
	*ip_off = (uint8_t)v6;
	*ip_len = (uint8_t)strlen(ip);
	return n > 0 ? (size_t)n : 0;
}
