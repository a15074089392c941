/* Socket addresses as text, for logs and forwarding headers. */
#ifndef SL_NET_ADDR_H
#define SL_NET_ADDR_H

#include <arpa/inet.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Room for "[v6 address]:65535" and its NUL. */
#define SL_ADDR_STRLEN (INET6_ADDRSTRLEN + 8)

/* "ip:port" for IPv4 (and IPv4-mapped IPv6), "[ip]:port" for IPv6, "?:0" for anything
 * else; buf has SL_ADDR_STRLEN bytes. *ip_off and *ip_len locate the ip alone inside
 * buf (for X-Forwarded-For). Returns the length written. */
size_t sl_addr_fmt(const struct sockaddr *sa, char buf[SL_ADDR_STRLEN], uint8_t *ip_off,
		   uint8_t *ip_len);

#endif
