/* sluicectl upstream: the admin API's /upstreams tree from the command line, over the
 * admin Unix socket. Exit codes: 0 ok, 1 the daemon refused or could not be reached,
 * 2 usage. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <jansson.h>

#include "sluicectl_upstream.h"

#define DEFAULT_SOCKET "/run/sluice/admin.sock"
#define MAX_REPLY (64u << 20)

struct reply {
	int status;
	char *body;
	size_t len;
};

/* Percent-encode one path segment. */
static void seg(char *out, size_t cap, const char *s)
{
	size_t k = 0;
	for (; *s && k + 4 < cap; s++) {
		unsigned char c = (unsigned char)*s;
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    strchr("-._~:[]", c))
			out[k++] = (char)c;
		else
			k += (size_t)snprintf(out + k, cap - k, "%%%02X", c);
	}
	out[k] = 0;
}

static int call(const char *sock, const char *method, const char *path, const char *body,
		struct reply *r)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(sock) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "sluicectl: socket path too long: %s\n", sock);
		return -1;
	}
	memcpy(sa.sun_path, sock, strlen(sock) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		fprintf(stderr, "sluicectl: cannot reach the admin socket %s: %s\n", sock,
			strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	size_t blen = body ? strlen(body) : 0;
	char head[1024];
	int hl = snprintf(head, sizeof(head),
			  "%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
			  "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
			  method, path, blen);
	if (hl < 0 || (size_t)hl >= sizeof(head)) {
		close(fd);
		return -1;
	}
	const char *parts[2] = {head, body};
	size_t lens[2] = {(size_t)hl, blen};
	for (int i = 0; i < 2; i++)
		for (size_t off = 0; off < lens[i];) {
			ssize_t n = write(fd, parts[i] + off, lens[i] - off);
			if (n <= 0) {
				fprintf(stderr, "sluicectl: write to %s: %s\n", sock, strerror(errno));
				close(fd);
				return -1;
			}
			off += (size_t)n;
		}
	size_t cap = 65536, len = 0;
	char *buf = malloc(cap + 1);
	for (;;) {
		if (!buf)
			break;
		if (len == cap) {
			char *nb = cap < MAX_REPLY ? realloc(buf, cap * 2 + 1) : NULL;
			if (!nb) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = nb;
			cap *= 2;
		}
		ssize_t n = read(fd, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	if (!buf)
		return -1;
	buf[len] = 0;
	char *sep = strstr(buf, "\r\n\r\n");
	if (len < 12 || strncmp(buf, "HTTP/1.", 7) || !sep) {
		fprintf(stderr, "sluicectl: not an HTTP reply from %s\n", sock);
		free(buf);
		return -1;
	}
	r->status = atoi(buf + 9);
	r->len = len - (size_t)(sep + 4 - buf);
	r->body = malloc(r->len + 1);
	if (!r->body) {
		free(buf);
		return -1;
	}
	memcpy(r->body, sep + 4, r->len);
	r->body[r->len] = 0;
	free(buf);
	return 0;
}

static void print_server_row(json_t *s)
{
	printf("  %-40s %6lld  %-9s %9lld %12lld %9lld %9lld\n",
	       json_string_value(json_object_get(s, "address")),
	       (long long)json_integer_value(json_object_get(s, "weight")),
	       json_string_value(json_object_get(s, "state")),
	       (long long)json_integer_value(json_object_get(s, "in_flight")),
	       (long long)json_integer_value(json_object_get(s, "requests")),
	       (long long)json_integer_value(json_object_get(s, "connect_failures")),
	       (long long)json_integer_value(json_object_get(s, "responses_5xx")));
}

static void print_upstream(json_t *u)
{
	json_t *srv = json_object_get(u, "servers"), *s;
	size_t i, usable = 0;
	json_array_foreach(srv, i, s) usable +=
	    !strcmp(json_string_value(json_object_get(s, "state")) ?: "", "up");
	printf("%s  balance=%s servers=%zu up=%zu version=%lld\n",
	       json_string_value(json_object_get(u, "name")),
	       json_string_value(json_object_get(u, "balance")), json_array_size(srv), usable,
	       (long long)json_integer_value(json_object_get(u, "version")));
	printf("  %-40s %6s  %-9s %9s %12s %9s %9s\n", "ADDRESS", "WEIGHT", "STATE", "IN_FLIGHT",
	       "REQUESTS", "CONN_FAIL", "5XX");
	json_array_foreach(srv, i, s) print_server_row(s);
}

/* What the daemon said, for a human. */
static int show(const struct reply *r, int as_json, const char *what)
{
	json_error_t e;
	json_t *j = json_loadb(r->body, r->len, 0, &e);
	int ok = r->status >= 200 && r->status < 300;
	if (as_json) {
		fwrite(r->body, 1, r->len, ok ? stdout : stderr);
		json_decref(j);
		return ok ? 0 : 1;
	}
	if (!ok) {
		const char *msg = json_string_value(json_object_get(j, "error"));
		fprintf(stderr, "sluicectl: %s: %s (HTTP %d)\n", what, msg ? msg : "failed",
			r->status);
		json_decref(j);
		return 1;
	}
	if (json_is_array(j)) {
		size_t i;
		json_t *u;
		json_array_foreach(j, i, u) print_upstream(u);
	} else if (json_object_get(j, "servers")) {
		print_upstream(j);
	} else if (json_object_get(j, "address")) {
		printf("%s: %s\n", json_string_value(json_object_get(j, "address")),
		       json_string_value(json_object_get(j, "state")));
	}
	json_decref(j);
	return 0;
}

/* ADDR or ADDR=WEIGHT */
static json_t *server_arg(const char *arg)
{
	char addr[256];
	const char *eq = strrchr(arg, '=');
	size_t n = eq ? (size_t)(eq - arg) : strlen(arg);
	if (!n || n >= sizeof(addr))
		return NULL;
	memcpy(addr, arg, n);
	addr[n] = 0;
	json_t *o = json_pack("{s:s}", "address", addr);
	if (eq) {
		char *end;
		long w = strtol(eq + 1, &end, 10);
		if (!eq[1] || *end || w < 1 || w > 1000) {
			json_decref(o);
			return NULL;
		}
		json_object_set_new(o, "weight", json_integer(w));
	}
	return o;
}

int sl_ctl_upstream(int argc, char **argv)
{
	const char *sock = getenv("SLUICE_ADMIN_SOCKET");
	int as_json = 0, i = 1;
	if (!sock || !*sock)
		sock = DEFAULT_SOCKET;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "--json"))
			as_json = 1;
		else if (!strcmp(argv[i], "--socket") && i + 1 < argc)
			sock = argv[++i];
		else if (!strncmp(argv[i], "--socket=", 9))
			sock = argv[i] + 9;
		else
			return 2;
	}
	/* --json may also follow the subcommand's arguments */
	int n = 0;
	char *args[8];
	for (; i < argc; i++) {
		if (!strcmp(argv[i], "--json"))
			as_json = 1;
		else if (n < 8)
			args[n++] = argv[i];
		else
			return 2;
	}
	if (!n)
		return 2;
	const char *op = args[0];
	char path[1024], name[256] = "", addr[512] = "";
	if (n >= 2)
		seg(name, sizeof(name), args[1]);
	if (n >= 3)
		seg(addr, sizeof(addr), args[2]);
	struct reply r = {0};
	int rc;
	char *body = NULL;
	if (!strcmp(op, "list") && n == 1) {
		rc = call(sock, "GET", "/upstreams", NULL, &r);
	} else if (!strcmp(op, "show") && n == 2) {
		snprintf(path, sizeof(path), "/upstreams/%s", name);
		rc = call(sock, "GET", path, NULL, &r);
	} else if (!strcmp(op, "set") && n >= 3) {
		json_t *arr = json_array();
		for (int k = 2; k < n; k++) {
			json_t *s = server_arg(args[k]);
			if (!s) {
				json_decref(arr);
				fprintf(stderr, "sluicectl: '%s' is not ADDRESS or ADDRESS=WEIGHT\n",
					args[k]);
				return 2;
			}
			json_array_append_new(arr, s);
		}
		json_t *o = json_pack("{s:o}", "servers", arr);
		body = json_dumps(o, JSON_COMPACT);
		json_decref(o);
		snprintf(path, sizeof(path), "/upstreams/%s", name);
		rc = call(sock, "PUT", path, body, &r);
	} else if (!strcmp(op, "add") && (n == 3 || n == 4)) {
		json_t *o = json_pack("{s:s}", "address", args[2]);
		if (n == 4) {
			char *end;
			long w = strtol(args[3], &end, 10);
			if (*end || w < 1 || w > 1000) {
				json_decref(o);
				fprintf(stderr, "sluicectl: weight must be 1..1000\n");
				return 2;
			}
			json_object_set_new(o, "weight", json_integer(w));
		}
		body = json_dumps(o, JSON_COMPACT);
		json_decref(o);
		snprintf(path, sizeof(path), "/upstreams/%s/servers", name);
		rc = call(sock, "POST", path, body, &r);
	} else if (!strcmp(op, "del") && n == 3) {
		snprintf(path, sizeof(path), "/upstreams/%s/servers/%s", name, addr);
		rc = call(sock, "DELETE", path, NULL, &r);
	} else if ((!strcmp(op, "drain") || !strcmp(op, "enable") || !strcmp(op, "disable")) &&
		   n == 3) {
		snprintf(path, sizeof(path), "/upstreams/%s/servers/%s/%s", name, addr, op);
		rc = call(sock, "POST", path, NULL, &r);
	} else {
		return 2;
	}
	free(body);
	if (rc)
		return 1;
	rc = show(&r, as_json, op);
	free(r.body);
	return rc;
}
