/* Unit tests for user/config/config.c: the documented example, defaults, every rejection
 * with its FILE:LINE:COLUMN, value parsers (durations, sizes, addresses) and refcounting. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config/config.h"

static char err[SL_CONF_ERR_MAX];

static struct sl_conf *parse(const char *yaml)
{
	memset(err, 'x', sizeof(err)); /* so a missing message cannot pass as an old one */
	err[sizeof(err) - 1] = '\0';
	return sl_conf_parse(yaml, strlen(yaml), "t.yaml", err, sizeof(err));
}

static struct sl_conf *parse_ok(const char *yaml)
{
	struct sl_conf *c = parse(yaml);

	if (!c)
		fail_msg("expected a valid config, got: %s\n--- yaml ---\n%s", err, yaml);
	return c;
}

/* The whole message must match: position and reason. */
static void expect_err(const char *yaml, const char *want)
{
	struct sl_conf *c = parse(yaml);

	if (c) {
		sl_conf_put(c);
		fail_msg("expected error \"%s\", config was accepted:\n%s", want, yaml);
	}
	if (strcmp(err, want))
		fail_msg("error mismatch\n  want: %s\n  got:  %s\n--- yaml ---\n%s", want, err,
			 yaml);
}

static char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "r");
	char *buf;
	long n;

	if (!f)
		fail_msg("cannot open %s (tests run from the repo root)", path);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	assert_true(n > 0);
	rewind(f);
	buf = malloc(n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	*len = n;
	return buf;
}

static void assert_in4(const struct sockaddr_storage *ss, socklen_t len, const char *ip,
		       unsigned int port)
{
	const struct sockaddr_in *sin = (const void *)ss;
	char got[INET_ADDRSTRLEN];

	assert_int_equal(ss->ss_family, AF_INET);
	assert_int_equal(len, sizeof(struct sockaddr_in));
	assert_non_null(inet_ntop(AF_INET, &sin->sin_addr, got, sizeof(got)));
	assert_string_equal(got, ip);
	assert_int_equal(ntohs(sin->sin_port), port);
}

static void assert_in6(const struct sockaddr_storage *ss, socklen_t len, const char *ip,
		       unsigned int port)
{
	const struct sockaddr_in6 *sin6 = (const void *)ss;
	char got[INET6_ADDRSTRLEN];

	assert_int_equal(ss->ss_family, AF_INET6);
	assert_int_equal(len, sizeof(struct sockaddr_in6));
	assert_non_null(inet_ntop(AF_INET6, &sin6->sin6_addr, got, sizeof(got)));
	assert_string_equal(got, ip);
	assert_int_equal(ntohs(sin6->sin6_port), port);
}

static const struct sl_conf_upstream *find_upstream(const struct sl_conf *c, const char *name)
{
	unsigned int i;

	for (i = 0; i < c->n_upstreams; i++)
		if (!strcmp(c->upstreams[i].name, name))
			return &c->upstreams[i];
	fail_msg("no upstream named %s", name);
	return NULL;
}

/* The ```yaml block of docs/configuration.md, the contract, parsed as shipped. */
static void test_docs_example(void **state)
{
	static const char api[] = "  api:\n    servers:\n      - address: 127.0.0.1:9003\n";
	const struct sl_conf_upstream *demo, *apiu;
	const struct sl_conf_listener *l;
	const struct sl_conf_route *r;
	char *md, *start, *end, *yaml;
	struct sl_conf *c;
	size_t len;

	md = read_file("docs/configuration.md", &len);
	start = strstr(md, "```yaml\n");
	assert_non_null(start);
	start += strlen("```yaml\n");
	end = strstr(start, "```");
	assert_non_null(end);
	*end = '\0';
	/* The documented example routes to an upstream "api" it never defines; supply one
	 * unless the document has been completed since. */
	yaml = malloc(strlen(start) + sizeof(api));
	assert_non_null(yaml);
	strcpy(yaml, start);
	if (!strstr(start, "\n  api:\n"))
		strcat(yaml, api);

	c = parse_ok(yaml);
	assert_string_equal(c->path, "t.yaml");
	assert_int_equal(c->workers, 0);
	assert_int_equal(c->log.level, SL_LOG_INFO);
	assert_null(c->log.error_log);
	assert_null(c->log.access_log);
	assert_int_equal(c->shutdown_grace, 30000);
	assert_int_equal(c->limits.max_header_count, 100);
	assert_int_equal(c->limits.max_header_bytes, 32768);
	assert_int_equal(c->limits.max_target_length, 8192);
	assert_int_equal(c->limits.max_body_size, 0);
	assert_int_equal(c->limits.max_connections, 0); /* derived from the fd limit */
	assert_int_equal(c->timeouts.client_header, 10000);
	assert_int_equal(c->timeouts.client_keepalive, 60000);
	assert_int_equal(c->timeouts.client_body, 60000);
	assert_int_equal(c->timeouts.upstream_connect, 3000);
	assert_int_equal(c->timeouts.upstream_response_header, 60000);
	assert_int_equal(c->timeouts.upstream_idle, 60000);
	assert_int_equal(c->forwarded.x_forwarded_for, 1);
	assert_int_equal(c->forwarded.x_forwarded_proto, 1);
	assert_int_equal(c->forwarded.x_forwarded_host, 1);

	assert_int_equal(c->n_listeners, 1);
	l = &c->listeners[0];
	assert_string_equal(l->address, ":8080");
	assert_in4(&l->addr, l->addrlen, "0.0.0.0", 8080);
	assert_int_equal(l->n_routes, 3);

	r = &l->routes[0];
	assert_string_equal(r->host, ".example.com");
	assert_int_equal(r->host_wildcard, 1);
	assert_string_equal(r->path, "/api");
	assert_int_equal(r->path_len, 4);
	assert_int_equal(r->action, SL_ROUTE_PROXY);
	assert_string_equal(r->upstream_name, "api");
	assert_non_null(r->upstream);
	assert_string_equal(r->upstream->name, "api");

	r = &l->routes[1];
	assert_null(r->host);
	assert_int_equal(r->host_wildcard, 0);
	assert_string_equal(r->path, "/healthz");
	assert_int_equal(r->path_len, 8);
	assert_int_equal(r->action, SL_ROUTE_RESPOND);
	assert_null(r->upstream_name);
	assert_null(r->upstream);
	assert_int_equal(r->respond.status, 200);
	assert_int_equal(r->respond.n_headers, 1);
	assert_string_equal(r->respond.headers[0].name, "Content-Type");
	assert_string_equal(r->respond.headers[0].value, "text/plain");
	assert_int_equal(r->respond.body_len, 3);
	assert_string_equal(r->respond.body, "ok\n");

	r = &l->routes[2];
	assert_null(r->host);
	assert_string_equal(r->path, "/");
	assert_int_equal(r->path_len, 1);
	assert_int_equal(r->action, SL_ROUTE_PROXY);
	assert_string_equal(r->upstream_name, "demo");

	assert_int_equal(c->n_upstreams, 3);
	const struct sl_conf_upstream *sec = find_upstream(c, "secure");
	assert_true(sec->tls.on && sec->tls.verify);
	assert_string_equal(sec->tls.sni, "api.internal");
	assert_string_equal(sec->tls.verify_hostname, "api.internal");
	assert_string_equal(sec->via.address, "127.0.0.1:3128");
	assert_string_equal(sec->via.headers, "Proxy-Authorization: Basic dTpw\r\n");
	demo = find_upstream(c, "demo");
	apiu = find_upstream(c, "api");
	assert_ptr_equal(r->upstream, demo);
	assert_ptr_equal(l->routes[0].upstream, apiu);
	assert_ptr_equal(&c->upstreams[demo->index], demo);
	assert_ptr_equal(&c->upstreams[apiu->index], apiu);
	assert_int_not_equal(demo->index, apiu->index);
	assert_int_equal(demo->n_servers, 2);
	assert_string_equal(demo->servers[0].address, "127.0.0.1:9001");
	assert_in4(&demo->servers[0].addr, demo->servers[0].addrlen, "127.0.0.1", 9001);
	assert_int_equal(demo->servers[0].weight, 1);
	assert_string_equal(demo->servers[1].address, "127.0.0.1:9002");
	assert_in4(&demo->servers[1].addr, demo->servers[1].addrlen, "127.0.0.1", 9002);
	assert_int_equal(demo->servers[1].weight, 1);
	assert_int_equal(demo->retries, 1);
	assert_int_equal(demo->pool.max_idle_per_worker, 128);
	assert_null(demo->live); /* attached by the daemon, not the parser */
	assert_int_equal(demo->lb.balance, SL_BAL_ROUND_ROBIN);
	assert_int_equal(demo->lb.retry_on, SL_RETRY_CONNECT_FAILURE);
	assert_int_equal(demo->hc.type, SL_HC_NONE);

	sl_conf_put(c);
	free(yaml);
	free(md);
}

/* The shipped example above equals the defaults, so also set every key to something else. */
static void test_every_key_non_default(void **state)
{
	const struct sl_conf_route *r;
	const struct sl_conf_upstream *u;
	struct sl_conf *c = parse_ok("workers: 4\n"
				     "log:\n"
				     "  level: debug\n"
				     "  error_log: /var/log/sluice/error.log\n"
				     "  access_log: /var/log/sluice/access.log\n"
				     "shutdown: { grace: 5s }\n"
				     "limits:\n"
				     "  max_header_count: 50\n"
				     "  max_header_bytes: 16KiB\n"
				     "  max_target_length: 2k\n"
				     "  max_body_size: 10m\n"
				     "  max_connections: 5000\n"
				     "timeouts:\n"
				     "  client_header: 1s\n"
				     "  client_keepalive: 2s\n"
				     "  client_body: 3s\n"
				     "  upstream_connect: 250ms\n"
				     "  upstream_response_header: 2m\n"
				     "  upstream_idle: 1h\n"
				     "forwarded:\n"
				     "  x_forwarded_for: false\n"
				     "  x_forwarded_proto: no\n"
				     "  x_forwarded_host: off\n"
				     "upstreams:\n"
				     "  first: { servers: [ { address: \"[::1]:81\" } ] }\n"
				     "  backend:\n"
				     "    servers:\n"
				     "      - { address: \"10.0.0.1:80\", weight: 7 }\n"
				     "    retries: 3\n"
				     "    keepalive: 0\n"
				     "listeners:\n"
				     "  - address: \"[::]:8443\"\n"
				     "    routes:\n"
				     "      - host: WWW.Example.COM\n"
				     "        path: /static/\n"
				     "        upstream: backend\n"
				     "      - host: \"*.Example.org\"\n"
				     "        respond:\n"
				     "          status: 503\n"
				     "          headers:\n"
				     "            Retry-After: 120\n"
				     "            X-A: \"b\"\n"
				     "          body: |\n"
				     "            down\n"
				     "            for now\n");

	assert_int_equal(c->workers, 4);
	assert_int_equal(c->log.level, SL_LOG_DEBUG);
	assert_string_equal(c->log.error_log, "/var/log/sluice/error.log");
	assert_string_equal(c->log.access_log, "/var/log/sluice/access.log");
	assert_int_equal(c->shutdown_grace, 5000);
	assert_int_equal(c->limits.max_header_count, 50);
	assert_int_equal(c->limits.max_header_bytes, 16384);
	assert_int_equal(c->limits.max_target_length, 2048);
	assert_int_equal(c->limits.max_body_size, 10 << 20);
	assert_int_equal(c->limits.max_connections, 5000);
	assert_int_equal(c->timeouts.client_header, 1000);
	assert_int_equal(c->timeouts.client_keepalive, 2000);
	assert_int_equal(c->timeouts.client_body, 3000);
	assert_int_equal(c->timeouts.upstream_connect, 250);
	assert_int_equal(c->timeouts.upstream_response_header, 120000);
	assert_int_equal(c->timeouts.upstream_idle, 3600000);
	assert_int_equal(c->forwarded.x_forwarded_for, 0);
	assert_int_equal(c->forwarded.x_forwarded_proto, 0);
	assert_int_equal(c->forwarded.x_forwarded_host, 0);

	assert_int_equal(c->n_upstreams, 2);
	u = &c->upstreams[0];
	assert_string_equal(u->name, "first");
	assert_int_equal(u->index, 0);
	assert_in6(&u->servers[0].addr, u->servers[0].addrlen, "::1", 81);
	u = &c->upstreams[1];
	assert_string_equal(u->name, "backend");
	assert_int_equal(u->index, 1);
	assert_int_equal(u->n_servers, 1);
	assert_in4(&u->servers[0].addr, u->servers[0].addrlen, "10.0.0.1", 80);
	assert_int_equal(u->servers[0].weight, 7);
	assert_int_equal(u->retries, 3);
	assert_int_equal(u->pool.max_idle_per_worker, 0);

	assert_int_equal(c->n_listeners, 1);
	assert_in6(&c->listeners[0].addr, c->listeners[0].addrlen, "::", 8443);
	assert_int_equal(c->listeners[0].n_routes, 2);
	r = &c->listeners[0].routes[0];
	assert_string_equal(r->host, "www.example.com");
	assert_int_equal(r->host_wildcard, 0);
	assert_string_equal(r->path, "/static/");
	assert_int_equal(r->path_len, 8);
	assert_ptr_equal(r->upstream, &c->upstreams[1]);
	r = &c->listeners[0].routes[1];
	assert_string_equal(r->host, ".example.org");
	assert_int_equal(r->host_wildcard, 1);
	assert_int_equal(r->action, SL_ROUTE_RESPOND);
	assert_int_equal(r->respond.status, 503);
	/* headers keep the file's order */
	assert_int_equal(r->respond.n_headers, 2);
	assert_string_equal(r->respond.headers[0].name, "Retry-After");
	assert_string_equal(r->respond.headers[0].value, "120");
	assert_string_equal(r->respond.headers[1].name, "X-A");
	assert_string_equal(r->respond.headers[1].value, "b");
	assert_string_equal(r->respond.body, "down\nfor now\n");
	assert_int_equal(r->respond.body_len, 13);
	sl_conf_put(c);
}

static void test_defaults(void **state)
{
	const struct sl_conf_route *r;
	const struct sl_conf_upstream *u;
	struct sl_conf *c = parse_ok("listeners:\n"
				     "  - address: 127.0.0.1:8080\n"
				     "    routes:\n"
				     "      - respond: {}\n"
				     "      - upstream: u\n"
				     "upstreams:\n"
				     "  u: { servers: [ { address: \"127.0.0.1:1\" } ] }\n");

	assert_int_equal(atomic_load(&c->refcnt), 1);
	assert_int_equal(c->workers, 0);
	assert_int_equal(c->shutdown_grace, 30000);
	assert_int_equal(c->log.level, SL_LOG_INFO);
	assert_null(c->log.error_log);
	assert_null(c->log.access_log);
	assert_int_equal(c->limits.max_header_count, 100);
	assert_int_equal(c->limits.max_header_bytes, 32 * 1024);
	assert_int_equal(c->limits.max_target_length, 8 * 1024);
	assert_int_equal(c->limits.max_body_size, 0);
	assert_int_equal(c->timeouts.client_header, 10000);
	assert_int_equal(c->timeouts.client_keepalive, 60000);
	assert_int_equal(c->timeouts.client_body, 60000);
	assert_int_equal(c->timeouts.upstream_connect, 3000);
	assert_int_equal(c->timeouts.upstream_response_header, 60000);
	assert_int_equal(c->timeouts.upstream_idle, 60000);
	assert_int_equal(c->forwarded.x_forwarded_for, 1);
	assert_int_equal(c->forwarded.x_forwarded_proto, 1);
	assert_int_equal(c->forwarded.x_forwarded_host, 1);

	r = &c->listeners[0].routes[0];
	assert_null(r->host);
	assert_int_equal(r->host_wildcard, 0);
	assert_string_equal(r->path, "/");
	assert_int_equal(r->path_len, 1);
	assert_int_equal(r->action, SL_ROUTE_RESPOND);
	assert_int_equal(r->respond.status, 200);
	assert_int_equal(r->respond.n_headers, 0);
	assert_null(r->respond.headers);
	assert_non_null(r->respond.body);
	assert_string_equal(r->respond.body, "");
	assert_int_equal(r->respond.body_len, 0);

	u = &c->upstreams[0];
	assert_int_equal(u->retries, 1);
	assert_int_equal(u->pool.max_idle_per_worker, 128);
	assert_int_equal(u->servers[0].weight, 1);
	sl_conf_put(c);

	/* A listener may have no routes at all (everything 404s). */
	c = parse_ok("listeners: [ { address: \":1\" } ]\n");
	assert_int_equal(c->listeners[0].n_routes, 0);
	assert_null(c->listeners[0].routes);
	sl_conf_put(c);
}

/* user/group/keep_capabilities: resolved at load (nobody and nogroup exist on Debian) */
static void test_process(void **state)
{
	static const char L[] = "listeners: [ { address: \":1\" } ]\n";
	char y[512];
	struct sl_conf *c;

	c = parse_ok(L);
	assert_null(c->proc.user);
	assert_int_equal(c->proc.keep_caps, 0);
	sl_conf_put(c);

	snprintf(y, sizeof(y), "user: nobody\n%s", L);
	c = parse_ok(y);
	assert_string_equal(c->proc.user, "nobody");
	assert_int_equal(c->proc.uid, 65534);
	assert_int_equal(c->proc.gid, 65534); /* nobody's primary group */
	assert_int_equal(c->proc.named, 1);
	assert_null(c->proc.group);
	sl_conf_put(c);

	snprintf(y, sizeof(y),
		 "user: nobody\ngroup: \"4242\"\nkeep_capabilities: [net_bind_service, CAP_BPF, "
		 "Net_Admin]\n%s",
		 L);
	c = parse_ok(y);
	assert_int_equal(c->proc.gid, 4242);
	assert_int_equal(c->proc.keep_caps, (1ull << 10) | (1ull << 39) | (1ull << 12));
	assert_string_equal(sl_conf_cap_name(39), "bpf");
	assert_null(sl_conf_cap_name(21)); /* CAP_SYS_ADMIN is never kept */
	sl_conf_put(c);

	/* a bare uid without a passwd entry needs its group */
	snprintf(y, sizeof(y), "user: \"3999999\"\ngroup: \"3999999\"\n%s", L);
	c = parse_ok(y);
	assert_int_equal(c->proc.uid, 3999999);
	assert_int_equal(c->proc.named, 0);
	sl_conf_put(c);

	snprintf(y, sizeof(y), "user: nosuchuser-x\n%s", L);
	expect_err(y, "t.yaml:1:7: user 'nosuchuser-x' does not exist (no such entry in the "
		      "passwd database)");
	snprintf(y, sizeof(y), "user: \"0\"\n%s", L);
	expect_err(y, "t.yaml:1:7: user '0' is root: leave user out to run as root");
	snprintf(y, sizeof(y), "user: \"99999999999\"\ngroup: \"1\"\n%s", L);
	expect_err(y, "t.yaml:1:7: user 99999999999 is out of range");
	snprintf(y, sizeof(y), "user: [nobody]\n%s", L);
	expect_err(y, "t.yaml:1:7: user must be a string");
	snprintf(y, sizeof(y), "user: nobody\ngroup: \"0\"\n%s", L);
	expect_err(y, "t.yaml:2:8: group '0' is root's group: name an unprivileged group");
	snprintf(y, sizeof(y), "user: nobody\nkeep_capabilities: [bpf, [x]]\n%s", L);
	expect_err(y, "t.yaml:2:26: keep_capabilities.entry must be a string");
}

static void test_log_keywords(void **state)
{
	struct sl_conf *c;

	c = parse_ok("log: { access_log: false, error_log: stderr, level: warn }\n"
		     "listeners: [ { address: \":1\" } ]\n");
	assert_null(c->log.access_log);
	assert_null(c->log.error_log);
	assert_int_equal(c->log.level, SL_LOG_WARN);
	sl_conf_put(c);

	c = parse_ok("log: { access_log: stdout, level: error }\n"
		     "listeners: [ { address: \":1\" } ]\n");
	assert_string_equal(c->log.access_log, "stdout");
	assert_int_equal(c->log.level, SL_LOG_ERROR);
	sl_conf_put(c);

	c = parse_ok("workers: 256\nlisteners: [ { address: \":1\" } ]\n");
	assert_int_equal(c->workers, 256);
	sl_conf_put(c);
}

static void test_example_file(void **state)
{
	const struct sl_conf_listener *l;
	const struct sl_conf_upstream *u;
	struct sl_conf *c = sl_conf_load("examples/sluice.yaml", err, sizeof(err));
	unsigned int i;

	if (!c)
		fail_msg("examples/sluice.yaml: %s", err);
	assert_string_equal(c->path, "examples/sluice.yaml");
	assert_int_equal(c->workers, 0);
	assert_string_equal(c->log.access_log, "stdout");
	assert_int_equal(c->n_upstreams, 1);
	u = &c->upstreams[0];
	assert_string_equal(u->name, "demo");
	assert_int_equal(u->n_servers, 2);
	assert_in4(&u->servers[0].addr, u->servers[0].addrlen, "127.0.0.1", 9001);
	assert_in4(&u->servers[1].addr, u->servers[1].addrlen, "127.0.0.1", 9002);

	assert_int_equal(c->n_listeners, 3);
	l = &c->listeners[0];
	assert_in4(&l->addr, l->addrlen, "0.0.0.0", 8080);
	assert_int_equal(l->n_routes, 1);
	assert_int_equal(l->routes[0].action, SL_ROUTE_PROXY);
	assert_ptr_equal(l->routes[0].upstream, u);
	for (i = 1; i <= 2; i++) {
		char body[32];

		l = &c->listeners[i];
		snprintf(body, sizeof(body), "hello from backend %u\n", i);
		assert_in4(&l->addr, l->addrlen, "127.0.0.1", 9000 + i);
		assert_int_equal(l->n_routes, 1);
		assert_int_equal(l->routes[0].action, SL_ROUTE_RESPOND);
		assert_int_equal(l->routes[0].respond.status, 200);
		assert_int_equal(l->routes[0].respond.n_headers, 1);
		assert_string_equal(l->routes[0].respond.headers[0].name, "Content-Type");
		assert_string_equal(l->routes[0].respond.headers[0].value, "text/plain");
		assert_string_equal(l->routes[0].respond.body, body);
		assert_int_equal(l->routes[0].respond.body_len, strlen(body));
	}
	sl_conf_put(c);
}

static void test_load_errors(void **state)
{
	char path[] = "/tmp/sluice-test-config-XXXXXX";
	static const char bad[] = "listeners:\n  - address: \":8080\"\n    bogus: 1\n";
	struct sl_conf *c;
	char want[128];
	int fd;

	c = sl_conf_load("selftests/unit/data/does-not-exist.yaml", err, sizeof(err));
	assert_null(c);
	assert_string_equal(err, "selftests/unit/data/does-not-exist.yaml: cannot open: "
				 "No such file or directory");

	/* Errors from a file carry its name. */
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, bad, strlen(bad)), (ssize_t)strlen(bad));
	close(fd);
	c = sl_conf_load(path, err, sizeof(err));
	unlink(path);
	assert_null(c);
	snprintf(want, sizeof(want), "%s:3:5: unknown key 'bogus' in listeners[0]", path);
	assert_string_equal(err, want);

	/* A truncated error buffer still holds a terminated prefix. */
	{
		char small[8];

		memset(small, 'x', sizeof(small));
		assert_null(sl_conf_parse("x: 1\n", 5, "t.yaml", small, sizeof(small)));
		assert_string_equal(small, "t.yaml:");
	}
	/* And no buffer at all is allowed. */
	assert_null(sl_conf_parse("x: 1\n", 5, "t.yaml", NULL, 0));
}

static void test_err_unknown_keys(void **state)
{
	expect_err("listeners: [ { address: \":1\" } ]\nfoo: 1\n",
		   "t.yaml:2:1: unknown top-level key 'foo'");
	expect_err("listeners:\n"
		   "  - address: \":8080\"\n"
		   "    rotues: []\n",
		   "t.yaml:3:5: unknown key 'rotues' in listeners[0]");
	expect_err("listeners:\n"
		   "  - address: \":8080\"\n"
		   "    routes:\n"
		   "      - path: /\n"
		   "        respond: { status: 200, bdy: x }\n",
		   "t.yaml:5:33: unknown key 'bdy' in listeners[0].routes[0].respond");
	expect_err("listeners:\n"
		   "  - address: \":8080\"\n"
		   "    routes:\n"
		   "      - respond: {}\n"
		   "      - hots: a.com\n"
		   "        respond: {}\n",
		   "t.yaml:5:9: unknown key 'hots' in listeners[0].routes[1]");
	expect_err("upstreams:\n"
		   "  u:\n"
		   "    servers:\n"
		   "      - address: 127.0.0.1:1\n"
		   "        wieght: 2\n"
		   "listeners: [ { address: \":1\" } ]\n",
		   "t.yaml:5:9: unknown key 'wieght' in upstreams.u.servers[0]");
	expect_err("upstreams:\n"
		   "  u:\n"
		   "    servers: [ { address: 127.0.0.1:1 } ]\n"
		   "    retry: 2\n"
		   "listeners: [ { address: \":1\" } ]\n",
		   "t.yaml:4:5: unknown key 'retry' in upstreams.u");
	expect_err("limits: { max_headers: 1 }\n",
		   "t.yaml:1:11: unknown key 'max_headers' in limits");
	expect_err("timeouts:\n  client_headers: 1s\n",
		   "t.yaml:2:3: unknown key 'client_headers' in timeouts");
	expect_err("log: { format: json }\n", "t.yaml:1:8: unknown key 'format' in log");
	expect_err("shutdown: { timeout: 1s }\n", "t.yaml:1:13: unknown key 'timeout' in shutdown");
	expect_err("forwarded: { forwarded: true }\n",
		   "t.yaml:1:14: unknown key 'forwarded' in forwarded");
	expect_err("workers: 1\nworkers: 2\nlisteners: [ { address: \":1\" } ]\n",
		   "t.yaml:2:1: duplicate key 'workers' in the top level");
}

/* cache.zones and a route's cache: values, defaults, and every refusal at its node. */
#define CZ "cache:\n  zones:\n    z: { max_size: 2m, max_object_size: 1k, shards: 3 }\n" \
	   "upstreams:\n  u: { servers: [ { address: \"127.0.0.1:1\" } ] }\n"
#define CR(x) CZ "listeners:\n  - address: \":1\"\n    routes:\n      - upstream: u\n" \
	      "        cache: " x "\n"

static void test_cache(void **state)
{
	struct sl_conf *c = parse_ok(CR("{ zone: z, key: \"$host|$http_x_t|$uri\", lock: { timeout: "
					"250ms, age: 2s }, stale_while_revalidate: 30s, "
					"stale_if_error: 5m, methods: [GET], status_header: X-C }"));
	assert_int_equal(c->cache.n_zones, 1);
	assert_string_equal(c->cache.zones[0].name, "z");
	assert_int_equal(c->cache.zones[0].max_size, 2 << 20);
	assert_int_equal(c->cache.zones[0].max_object_size, 1024);
	assert_int_equal(c->cache.zones[0].shards, 3);
	assert_int_equal(c->cache.zones[0].max_variants, 8);
	const struct sl_conf_route_cache *rc = c->listeners[0].routes[0].cache;
	assert_non_null(rc);
	assert_ptr_equal(rc->zone, &c->cache.zones[0]);
	assert_string_equal(rc->key, "$host|$http_x_t|$uri");
	assert_non_null(rc->tpl);
	assert_int_equal(rc->lock_timeout, 250);
	assert_int_equal(rc->lock_age, 2000);
	assert_int_equal(rc->swr, 30000);
	assert_int_equal(rc->sie, 300000);
	assert_int_equal(rc->methods, SL_CACHE_M_GET);
	assert_string_equal(rc->status_header, "X-C");
	sl_conf_put(c);
	c = parse_ok(CR("{ zone: z }"));
	rc = c->listeners[0].routes[0].cache;
	assert_string_equal(rc->key, "$scheme://$host$uri$query");
	assert_int_equal(rc->lock_timeout, 5000);
	assert_int_equal(rc->methods, SL_CACHE_M_GET | SL_CACHE_M_HEAD);
	assert_null(rc->status_header);
	sl_conf_put(c);

	expect_err(CR("{ key: \"$uri\" }"), "t.yaml:10:16: listeners[0].routes[0].cache needs a zone");
	expect_err(CR("{ zone: y }"),
		   "t.yaml:10:24: listeners[0].routes[0].cache.zone: undefined cache zone 'y' (see "
		   "cache.zones)");
	expect_err(CR("{ zone: z, key: \"$host$bogus\" }"),
		   "t.yaml:10:38: listeners[0].routes[0].cache.key: key template: unknown variable "
		   "(known: $scheme $host $uri $query $args $method $http_NAME)");
	expect_err(CR("{ zone: z, methods: [POST] }"),
		   "t.yaml:10:37: listeners[0].routes[0].cache.methods: only GET and HEAD are cached "
		   "(other methods invalidate what they change)");
	expect_err(CR("{ zone: z, methods: [HEAD] }"),
		   "t.yaml:10:36: listeners[0].routes[0].cache.methods must include GET (HEAD is "
		   "answered from GET)");
	expect_err(CR("{ zone: z, status_header: \"X Bad\" }"),
		   "t.yaml:10:42: listeners[0].routes[0].cache.status_header must be a header name");
	expect_err(CR("{ zone: z, lock: { wait: 1s } }"),
		   "t.yaml:10:35: unknown key 'wait' in listeners[0].routes[0].cache.lock");
	expect_err(CR("{ zone: z, lock: { timeout: 0s } }"),
		   "t.yaml:10:44: listeners[0].routes[0].cache.lock.timeout out of range (at least 1ms)");
	expect_err(CR("{ zone: z, ttl: 1s }"),
		   "t.yaml:10:27: unknown key 'ttl' in listeners[0].routes[0].cache");
	expect_err("cache:\n  zones:\n    z: { max_size: 1k }\nlisteners: [ { address: \":1\" } ]\n",
		   "t.yaml:3:20: cache.zones.z.max_size out of range (1m..1t)");
	expect_err("cache:\n  zones:\n    z: { max_size: 1m, max_object_size: 2m }\n"
		   "listeners: [ { address: \":1\" } ]\n",
		   "t.yaml:3:8: cache.zones.z: max_object_size is larger than max_size");
	expect_err("cache:\n  zones: {}\nlisteners: [ { address: \":1\" } ]\n",
		   "t.yaml:2:10: cache.zones is empty");
	expect_err("cache:\n  size: 1m\nlisteners: [ { address: \":1\" } ]\n",
		   "t.yaml:2:3: unknown key 'size' in cache");
	expect_err("cache:\n  zones:\n    z: { shards: 300 }\nlisteners: [ { address: \":1\" } ]\n",
		   "t.yaml:3:18: cache.zones.z.shards out of range (1..256)");
	expect_err(CZ "listeners:\n  - address: \":1\"\n    routes:\n      - respond: { status: 200 }\n"
		      "        cache: { zone: z }\n",
		   "t.yaml:10:16: listeners[0].routes[0]: a respond route is not cached");
}

static void test_err_types(void **state)
{
	expect_err("- a\n- b\n", "t.yaml:1:1: the top level must be a mapping");
	expect_err("workers: many\n", "t.yaml:1:10: workers must be 'auto' or a number 1..256");
	expect_err("workers: [1]\n", "t.yaml:1:10: workers must be 'auto' or a number 1..256");
	expect_err("log: info\n", "t.yaml:1:6: log must be a mapping");
	expect_err("log: { level: verbose }\n",
		   "t.yaml:1:15: log.level must be debug, info, warn or error");
	expect_err("log: { access_log: [a] }\n", "t.yaml:1:20: log.access_log must be a string");
	expect_err("limits: { max_header_count: lots }\n",
		   "t.yaml:1:29: limits.max_header_count must be an integer");
	expect_err("limits: { max_header_count: -1 }\n",
		   "t.yaml:1:29: limits.max_header_count must be an integer");
	expect_err("limits: { max_body_size: 1.5m }\n",
		   "t.yaml:1:26: limits.max_body_size: invalid size '1.5m' (e.g. 512, 32k, 10m)");
	expect_err("timeouts: { client_header: 10 s }\n",
		   "t.yaml:1:28: timeouts.client_header: invalid duration '10 s' (e.g. 250ms, 10s, "
		   "2m, 1h)");
	expect_err("forwarded: { x_forwarded_for: maybe }\n",
		   "t.yaml:1:31: forwarded.x_forwarded_for must be true or false");
	expect_err("listeners: { address: \":1\" }\n", "t.yaml:1:12: listeners must be a sequence");
	expect_err("listeners: [ \":8080\" ]\n", "t.yaml:1:14: listeners[0] must be a mapping");
	expect_err("listeners: [ { address: \":1\", routes: { path: / } } ]\n",
		   "t.yaml:1:39: listeners[0].routes must be a sequence");
	expect_err("listeners: [ { address: [1] } ]\n",
		   "t.yaml:1:25: listeners[0].address must be a string");
	expect_err("listeners: [ { routes: [] } ]\n", "t.yaml:1:14: listeners[0] has no address");
	expect_err("listeners: [ { address: \":1\", routes: [ { respond: { status: ok } } ] } ]\n",
		   "t.yaml:1:62: listeners[0].routes[0].respond.status must be an integer");
	expect_err("listeners: [ { address: \":1\", routes: [ { respond: { body: [x] } } ] } ]\n",
		   "t.yaml:1:60: listeners[0].routes[0].respond.body must be a string");
	expect_err(
	    "listeners: [ { address: \":1\", routes: [ { respond: { headers: [x] } } ] } ]\n",
	    "t.yaml:1:63: listeners[0].routes[0].respond.headers must be a mapping");
	expect_err("upstreams: [ u ]\n", "t.yaml:1:12: upstreams must be a mapping");
	expect_err("upstreams: { u: { servers: 127.0.0.1:1 } }\n",
		   "t.yaml:1:28: upstreams.u.servers must be a sequence");
	expect_err("upstreams: { u: { servers: [ { weight: 1 } ] } }\n",
		   "t.yaml:1:30: upstreams.u.servers[0] has no address");
	expect_err("upstreams: { ? [a] : {} }\n", "t.yaml:1:16: keys of upstreams must be strings");
}

static void test_err_ranges(void **state)
{
	expect_err("workers: 0\n", "t.yaml:1:10: workers out of range (1..256)");
	expect_err("workers: 257\n", "t.yaml:1:10: workers out of range (1..256)");
	expect_err("limits: { max_header_count: 0 }\n",
		   "t.yaml:1:29: limits.max_header_count out of range (1..256)");
	expect_err("limits: { max_header_count: 257 }\n",
		   "t.yaml:1:29: limits.max_header_count out of range (1..256)");
	expect_err("limits: { max_header_bytes: 1023 }\n",
		   "t.yaml:1:29: limits.max_header_bytes out of range (1k..1m)");
	expect_err("limits: { max_header_bytes: 1025k }\n",
		   "t.yaml:1:29: limits.max_header_bytes out of range (1k..1m)");
	expect_err("limits: { max_target_length: 255 }\n",
		   "t.yaml:1:30: limits.max_target_length out of range (256..1m)");
	expect_err("limits: { max_target_length: 2m }\n",
		   "t.yaml:1:30: limits.max_target_length out of range (256..1m)");
	expect_err("limits: { max_connections: 0 }\n",
		   "t.yaml:1:28: limits.max_connections out of range (1..10000000)");
	expect_err("limits: { max_connections: 10000001 }\n",
		   "t.yaml:1:28: limits.max_connections out of range (1..10000000)");
	expect_err("timeouts: { upstream_connect: 0s }\n",
		   "t.yaml:1:31: timeouts.upstream_connect out of range (at least 1ms)");
	expect_err("upstreams: { u: { servers: [ { address: \"127.0.0.1:1\", weight: 0 } ] } }\n",
		   "t.yaml:1:64: upstreams.u.servers[0].weight out of range (1..1000)");
	expect_err(
	    "upstreams: { u: { servers: [ { address: \"127.0.0.1:1\", weight: 1001 } ] } }\n",
	    "t.yaml:1:64: upstreams.u.servers[0].weight out of range (1..1000)");
	expect_err("upstreams: { u: { retries: 11, servers: [ { address: \"127.0.0.1:1\" } ] } }\n",
		   "t.yaml:1:28: upstreams.u.retries out of range (0..10)");
	/* 2^64 + 1 must not wrap around to 1 and slip into range. */
	expect_err("upstreams: { u: { retries: 18446744073709551617, servers: [ { address: "
		   "\"127.0.0.1:1\" } ] } }\n",
		   "t.yaml:1:28: upstreams.u.retries out of range (0..10)");
	expect_err("workers: 99999999999999999999999\n",
		   "t.yaml:1:10: workers out of range (1..256)");
	expect_err(
	    "upstreams: { u: { keepalive: 65536, servers: [ { address: \"127.0.0.1:1\" } ] } }\n",
	    "t.yaml:1:30: upstreams.u.keepalive out of range (0..65535)");
	expect_err("listeners: [ { address: \":1\", routes: [ { respond: { status: 99 } } ] } ]\n",
		   "t.yaml:1:62: listeners[0].routes[0].respond.status out of range (100..599)");
	expect_err("listeners: [ { address: \":1\", routes: [ { respond: { status: 600 } } ] } ]\n",
		   "t.yaml:1:62: listeners[0].routes[0].respond.status out of range (100..599)");
	expect_err("listeners: [ { address: \":65536\" } ]\n",
		   "t.yaml:1:25: listeners[0].address: invalid address ':65536' (host:port, :port "
		   "or [v6]:port)");
	/* The boundaries themselves are accepted. */
	sl_conf_put(
	    parse_ok("limits:\n"
		     "  max_header_count: 256\n"
		     "  max_header_bytes: 1m\n"
		     "  max_target_length: 256\n"
		     "upstreams: { u: { retries: 10, keepalive: 65535,\n"
		     "  servers: [ { address: \"127.0.0.1:65535\", weight: 1000 } ] } }\n"
		     "listeners: [ { address: \":1\", routes: [ { respond: { status: 599 } },\n"
		     "  { respond: { status: 100 } }, { upstream: u } ] } ]\n"));
}

static void test_err_routes(void **state)
{
	/* Both and neither of upstream/respond point at the route itself. */
	expect_err(
	    "upstreams: { u: { servers: [ { address: \"127.0.0.1:1\" } ] } }\n"
	    "listeners:\n"
	    "  - address: \":8080\"\n"
	    "    routes:\n"
	    "      - path: /a\n"
	    "        upstream: u\n"
	    "        respond: { status: 204 }\n",
	    "t.yaml:5:9: listeners[0].routes[0] needs exactly one of 'upstream' and 'respond'");
	expect_err(
	    "listeners:\n"
	    "  - address: \":8080\"\n"
	    "    routes:\n"
	    "      - respond: {}\n"
	    "      - path: /b\n",
	    "t.yaml:5:9: listeners[0].routes[1] needs exactly one of 'upstream' and 'respond'");
	/* An undefined upstream points at its name, even when upstreams come first. */
	expect_err("upstreams:\n"
		   "  demo: { servers: [ { address: \"127.0.0.1:1\" } ] }\n"
		   "listeners:\n"
		   "  - address: \":8080\"\n"
		   "    routes:\n"
		   "      - upstream: demo\n"
		   "      - path: /api\n"
		   "        upstream: api\n",
		   "t.yaml:8:19: undefined upstream 'api'");
	expect_err("listeners:\n"
		   "  - address: \":8080\"\n"
		   "    routes: [ { upstream: nowhere } ]\n",
		   "t.yaml:3:27: undefined upstream 'nowhere'");
	expect_err("listeners: [ { address: \":1\", routes: [ { path: api, respond: {} } ] } ]\n",
		   "t.yaml:1:49: listeners[0].routes[0].path must start with '/'");
	expect_err(
	    "listeners: [ { address: \":1\", routes: [ { path: \"/a b\", respond: {} } ] } ]\n",
	    "t.yaml:1:49: listeners[0].routes[0].path contains a space or control character");
	expect_err("listeners: [ { address: \":1\", routes: [ { host: \"\", respond: {} } ] } ]\n",
		   "t.yaml:1:49: listeners[0].routes[0].host is empty");
	expect_err(
	    "listeners: [ { address: \":1\", routes: [ { host: \"*.\", respond: {} } ] } ]\n",
	    "t.yaml:1:49: listeners[0].routes[0].host is empty");
	expect_err(
	    "listeners: [ { address: \":1\", routes: [ { host: \"a.*.com\", respond: {} } ] } ]\n",
	    "t.yaml:1:49: listeners[0].routes[0].host: invalid host 'a.*.com'");
	expect_err(
	    "listeners: [ { address: \":1\", routes: [ { host: \"a.com:80\", respond: {} } ] } ]\n",
	    "t.yaml:1:49: listeners[0].routes[0].host: invalid host 'a.com:80'");
	/* A bracketed IPv6 literal is a valid exact host. */
	sl_conf_put(
	    parse_ok("listeners: [ { address: \":1\", routes: [ { host: \"[::1]\", respond: {} } "
		     "] } ]\n"));
}

static void test_err_respond_headers(void **state)
{
	expect_err("listeners: [ { address: \":1\", routes: [ { respond: { headers: {\n"
		   "  \"Bad Name\": x } } } ] } ]\n",
		   "t.yaml:2:3: invalid header name 'Bad Name'");
	expect_err("listeners: [ { address: \":1\", routes: [ { respond: { headers: {\n"
		   "  X-Evil: \"a\\r\\nSet-Cookie: x\" } } } ] } ]\n",
		   "t.yaml:2:11: value of header 'X-Evil' contains a control character");
	expect_err("listeners: [ { address: \":1\", routes: [ { respond: { headers: {\n"
		   "  content-length: 5 } } } ] } ]\n",
		   "t.yaml:2:3: header 'content-length' is set by sluice from the body");
	expect_err("listeners: [ { address: \":1\", routes: [ { respond: { headers: {\n"
		   "  Transfer-Encoding: chunked } } } ] } ]\n",
		   "t.yaml:2:3: header 'Transfer-Encoding' is set by sluice from the body");
	expect_err("listeners: [ { address: \":1\", routes: [ { respond: { headers: {\n"
		   "  X-Empty: } } } ] } ]\n",
		   "t.yaml:2:12: listeners[0].routes[0].respond.headers.X-Empty must be a string");
}

static void test_err_upstreams(void **state)
{
	/* Missing servers: the upstream's name; empty or null servers: the value (libyaml
	 * places an empty scalar just after its key's colon). */
	expect_err("upstreams:\n"
		   "  demo:\n"
		   "    retries: 1\n"
		   "listeners: [ { address: \":1\" } ]\n",
		   "t.yaml:2:3: upstream 'demo' has no servers");
	expect_err("upstreams:\n"
		   "  demo:\n"
		   "    servers: []\n"
		   "listeners: [ { address: \":1\" } ]\n",
		   "t.yaml:3:14: upstream 'demo' has no servers");
	expect_err("upstreams:\n"
		   "  demo:\n"
		   "    servers:\n"
		   "listeners: [ { address: \":1\" } ]\n",
		   "t.yaml:3:13: upstream 'demo' has no servers");
	expect_err("upstreams:\n  demo:\nlisteners: [ { address: \":1\" } ]\n",
		   "t.yaml:2:8: upstreams.demo must be a mapping");
	expect_err("upstreams:\n"
		   "  demo: { servers: [ { address: \"127.0.0.1\" } ] }\n"
		   "listeners: [ { address: \":1\" } ]\n",
		   "t.yaml:2:33: upstreams.demo.servers[0].address: invalid address '127.0.0.1' "
		   "(host:port, :port or [v6]:port)");
	expect_err("upstreams:\n"
		   "  demo: { servers: [ { address: \"no-such-host.invalid:80\" } ] }\n"
		   "listeners: [ { address: \":1\" } ]\n",
		   "t.yaml:2:33: upstreams.demo.servers[0].address: cannot resolve "
		   "'no-such-host.invalid:80'");
}

/* upstreams.NAME.tls and via_proxy: files checked at load, each error at its value. */
static void test_upstream_tls_and_proxy(void **state)
{
	struct sl_conf *c = parse_ok("upstreams:\n"
				     "  s:\n"
				     "    servers: [ { address: 127.0.0.1:443 } ]\n"
				     "    tls: { sni: api.internal, verify_hostname: x.internal }\n"
				     "    via_proxy:\n"
				     "      address: 127.0.0.1:3128\n"
				     "      headers: { Proxy-Authorization: \"Basic dTpw\", X-A: b }\n"
				     "  p:\n"
				     "    servers: [ { address: 127.0.0.1:80 } ]\n"
				     "    tls: {}\n"
				     "listeners: [ { address: \":1\", routes: [ { upstream: s } ] } ]\n");
	const struct sl_conf_upstream *u = find_upstream(c, "s");
	assert_true(u->tls.on);
	assert_true(u->tls.verify);
	assert_string_equal(u->tls.sni, "api.internal");
	assert_string_equal(u->tls.verify_hostname, "x.internal");
	assert_null(u->tls.ca);
	assert_in4(&u->via.addr, u->via.addrlen, "127.0.0.1", 3128);
	assert_string_equal(u->via.headers, "Proxy-Authorization: Basic dTpw\r\nX-A: b\r\n");
	u = find_upstream(c, "p");
	assert_true(u->tls.on && u->tls.verify);
	assert_null(u->tls.sni);
	assert_null(u->via.address);
	sl_conf_put(c);

	expect_err("upstreams:\n"
		   "  s:\n"
		   "    servers: [ { address: 127.0.0.1:443 } ]\n"
		   "    tls: { ca: /nonexistent/ca.pem }\n"
		   "listeners: [ { address: \":1\" } ]\n",
		   "t.yaml:4:16: upstreams.s.tls.ca: cannot load CA certificates from "
		   "'/nonexistent/ca.pem'");
	expect_err("upstreams:\n"
		   "  s:\n"
		   "    servers: [ { address: 127.0.0.1:443 } ]\n"
		   "    tls: { client_cert: /nonexistent/c.pem }\n"
		   "listeners: [ { address: \":1\" } ]\n",
		   "t.yaml:4:25: upstreams.s.tls: client_cert and client_key go together");
	expect_err("upstreams:\n"
		   "  s:\n"
		   "    servers: [ { address: 127.0.0.1:443 } ]\n"
		   "    tls: { client_cert: /nonexistent/c.pem, client_key: /nonexistent/k.pem }\n"
		   "listeners: [ { address: \":1\" } ]\n",
		   "t.yaml:4:25: upstreams.s.tls.client_cert: cannot open '/nonexistent/c.pem': "
		   "No such file or directory");
	expect_err("upstreams:\n"
		   "  s:\n"
		   "    servers: [ { address: 127.0.0.1:443 } ]\n"
		   "    tls: { sni: \"a b\" }\n"
		   "listeners: [ { address: \":1\" } ]\n",
		   "t.yaml:4:17: upstreams.s.tls.sni must be a host name (at most 127 bytes)");
	expect_err("upstreams:\n"
		   "  s:\n"
		   "    servers: [ { address: 127.0.0.1:443 } ]\n"
		   "    via_proxy: { address: 127.0.0.1:3128, headers: { \"Bad Name\": x } }\n"
		   "listeners: [ { address: \":1\" } ]\n",
		   "t.yaml:4:54: upstreams.s.via_proxy.headers: 'Bad Name' is not a header name");
	expect_err("upstreams:\n"
		   "  s:\n"
		   "    servers: [ { address: 127.0.0.1:443 } ]\n"
		   "    via_proxy: { address: 127.0.0.1:3128, headers: { X-A: \"a\\r\\nX-B: b\" } }\n"
		   "listeners: [ { address: \":1\" } ]\n",
		   "t.yaml:4:59: upstreams.s.via_proxy.headers.X-A must be one line of text");
	expect_err("upstreams:\n"
		   "  s:\n"
		   "    servers: [ { address: 127.0.0.1:443 } ]\n"
		   "    via_proxy: { headers: {} }\n"
		   "listeners: [ { address: \":1\" } ]\n",
		   "t.yaml:4:16: upstreams.s.via_proxy has no address");
}

static void test_err_listeners(void **state)
{
	expect_err("workers: 2\n", "t.yaml:1:1: no listeners defined");
	expect_err("workers: 2\nlisteners: []\n", "t.yaml:2:12: no listeners defined");
	expect_err("workers: 2\nlisteners:\n", "t.yaml:2:11: no listeners defined");
	expect_err("", "t.yaml:1:1: no listeners defined");
	expect_err("# only a comment\n", "t.yaml:1:1: no listeners defined");
	/* Duplicates are found by resolved address, reported at the second one. */
	expect_err("listeners:\n"
		   "  - address: \":8080\"\n"
		   "  - address: \"127.0.0.1:8080\"\n"
		   "  - address: \"0.0.0.0:8080\"\n",
		   "t.yaml:4:14: duplicate listener address '0.0.0.0:8080' (as listeners[0])");
	expect_err("listeners:\n"
		   "  - address: \"[::1]:80\"\n"
		   "  - address: \"[0:0::1]:80\"\n",
		   "t.yaml:3:14: duplicate listener address '[0:0::1]:80' (as listeners[0])");
	/* Same host, different port, is fine. */
	sl_conf_put(parse_ok("listeners: [ { address: \":80\" }, { address: \":81\" } ]\n"));
}

static void test_err_syntax(void **state)
{
	expect_err("listeners:\n"
		   "  - address: \":8080\n"
		   "workers: 1\n",
		   "t.yaml:4:1: found unexpected end of stream (while scanning a quoted scalar at "
		   "2:14)");
	expect_err("workers: auto\nlog: level: info\n",
		   "t.yaml:2:11: mapping values are not allowed in this context");
	expect_err("listeners:\n  - address: \":1\"\n bad\n",
		   "t.yaml:3:2: did not find expected key (while parsing a block mapping at 1:1)");
	expect_err("listeners: [ *nope ]\n", "t.yaml:1:14: found undefined alias");
	expect_err("workers: 1\nlog: { level: \"\xff\" }\n",
		   "t.yaml:2:16: invalid leading UTF-8 octet");
	expect_err("listeners: [ { address: \":1\" } ]\n---\nworkers: 2\n",
		   "t.yaml:2:1: only one YAML document is allowed");
	expect_err("listeners: [ { address: \":1\" } ]\n---\nworkers: [\n",
		   "t.yaml:4:1: did not find expected node content (while parsing a flow node at "
		   "4:1)");
	/* A NUL inside a string must not silently cut it short. */
	expect_err("listeners: [ { address: \":1\\0:2\" } ]\n",
		   "t.yaml:1:25: listeners[0].address contains a NUL byte");
}

/* text = prefix + n x open + mid + n x close + suffix, on the heap */
static char *nest(const char *prefix, const char *open, unsigned int n, const char *mid,
		  const char *close, const char *suffix)
{
	size_t lo = strlen(open), lc = strlen(close), lp = strlen(prefix), lm = strlen(mid);
	char *t = malloc(lp + n * (lo + lc) + lm + strlen(suffix) + 1), *o = t;

	assert_non_null(t);
	o = stpcpy(o, prefix);
	for (unsigned int i = 0; i < n; i++)
		o = stpcpy(o, open);
	o = stpcpy(o, mid);
	for (unsigned int i = 0; i < n; i++)
		o = stpcpy(o, close);
	strcpy(o, suffix);
	return t;
}

/* Nesting is capped at SL_CONF_MAX_DEPTH (64) levels, the error names the first node too
 * deep, and a hostile depth is rejected at once (100,000 levels took over a minute). */
static void test_err_nesting(void **state)
{
	char *t;

	assert_int_equal(SL_CONF_MAX_DEPTH, 64);
	/* the top-level mapping is level 1: 63 sequences under it are allowed ... */
	t = nest("listeners: ", "[", 63, "", "]", "\n");
	expect_err(t, "t.yaml:1:13: listeners[0] must be a mapping");
	free(t);
	/* ... the 64th is one too many; it starts at column 12 + 63 */
	t = nest("listeners: ", "[", 64, "", "]", "\n");
	expect_err(t, "t.yaml:1:75: nested deeper than 64 levels of mappings and sequences");
	free(t);
	t = nest("listeners: ", "[", 100000, "", "]", "\n");
	expect_err(t, "t.yaml:1:75: nested deeper than 64 levels of mappings and sequences");
	free(t);
	t = nest("listeners: ", "{a: ", 100000, "1", "}", "\n");
	expect_err(t, "t.yaml:1:264: nested deeper than 64 levels of mappings and sequences");
	free(t);
	/* block style, one mapping per line and indent */
	char *b = malloc(70 * 72), *o = b;
	assert_non_null(b);
	for (int i = 0; i < 70; i++)
		o += sprintf(o, "%*sk%d:\n", i, "", i);
	strcpy(o, "\n");
	expect_err(b, "t.yaml:65:65: nested deeper than 64 levels of mappings and sequences");
	free(b);
	/* also when the deep part is in a second document */
	t = nest("listeners: [ { address: \":1\" } ]\n---\n", "[", 65, "", "]", "\n");
	expect_err(t, "t.yaml:3:65: nested deeper than 64 levels of mappings and sequences");
	free(t);
}

/* Duplicate keys in a large mapping: the first key, in file order, that repeats an earlier
 * one; 100,000 distinct keys are read in a moment (a pairwise check took over a minute). */
static void test_err_wide_mappings(void **state)
{
	size_t cap = 100000 * 24 + 256, n;
	char *t = malloc(cap);

	assert_non_null(t);
	n = sprintf(t, "listeners: [ { address: \":1\", routes: [ { respond: { headers: {\n");
	for (int i = 0; i < 100; i++)
		n += sprintf(t + n, "  X-H%d: v,\n", i == 50 ? 10 : i == 80 ? 5 : i);
	strcpy(t + n, "} } } ] } ]\n");
	expect_err(t, "t.yaml:52:3: duplicate key 'X-H10' in "
		      "listeners[0].routes[0].respond.headers");
	n = sprintf(t, "listeners:\n  - address: \":1\"\n    routes:\n      - respond:\n"
		       "          headers:\n");
	for (int i = 0; i < 100000; i++)
		n += sprintf(t + n, "            X-H%d: v\n", i);
	n += sprintf(t + n, "            X-H99999: w\n");
	expect_err(t, "t.yaml:100006:13: duplicate key 'X-H99999' in "
		      "listeners[0].routes[0].respond.headers");
	/* distinct: accepted */
	t[n - strlen("            X-H99999: w\n")] = '\0';
	struct sl_conf *c = parse_ok(t);
	assert_int_equal(c->listeners[0].routes[0].respond.n_headers, 100000);
	sl_conf_put(c);
	free(t);
}

static void test_err_too_many_servers(void **state)
{
	size_t cap = 65537 * 40 + 256, n;
	char *t = malloc(cap);

	assert_non_null(t);
	n = sprintf(t, "listeners: [ { address: \":1\" } ]\nupstreams:\n  u:\n    servers:\n");
	for (int i = 0; i < 65537; i++)
		n += sprintf(t + n, "      - address: 127.0.0.%d:%d\n", 1 + i / 60000,
			     1 + i % 60000);
	expect_err(t, "t.yaml:5:7: upstream 'u' has too many servers (65537, at most 65536)");
	/* the last line dropped: 65536 are fine */
	t[n - strlen("      - address: 127.0.0.2:5537\n")] = '\0';
	struct sl_conf *c = parse_ok(t);
	assert_int_equal(c->upstreams[0].n_servers, 65536);
	sl_conf_put(c);
	free(t);
}

/* Workers keep a fixed array of SL_MAX_LISTENERS listening sockets. */
static void test_err_too_many_listeners(void **state)
{
	char *t = malloc(65 * 32 + 32), *o = t;

	assert_non_null(t);
	o = stpcpy(o, "listeners:\n");
	for (int i = 0; i < 65; i++)
		o += sprintf(o, "  - address: \":%d\"\n", 1000 + i);
	expect_err(t, "t.yaml:2:3: too many listeners (65, at most 64)");
	/* 64 are fine */
	*strstr(t, "  - address: \":1064\"") = '\0';
	struct sl_conf *c = parse_ok(t);
	assert_int_equal(c->n_listeners, 64);
	sl_conf_put(c);
	free(t);
}

static void test_parse_duration(void **state)
{
	static const struct {
		const char *s;
		unsigned int ms;
	} good[] = {
	    {"250ms", 250},
	    {"10s", 10000},
	    {"2m", 120000},
	    {"1h", 3600000},
	    {"7", 7000},
	    {"0", 0},
	    {"0ms", 0},
	    {"1193h", 1193u * 3600000u},
	    {"4294967295ms", 4294967295u},
	};
	static const char *const bad[] = {
	    "",
	    "s",
	    "ms",
	    "10x",
	    "-1",
	    "+1",
	    "1.5s",
	    " 10s",
	    "10s ",
	    "10 s",
	    "1d",
	    "10S",
	    "0x10",
	    "1e3",
	    "1hm",
	    "4294967296ms",
	    "4294968s",
	    "1194h",
	    "99999999999999999999999999",
	};
	unsigned int ms, i;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		ms = 12345;
		if (sl_parse_duration(good[i].s, &ms))
			fail_msg("rejected good duration '%s'", good[i].s);
		if (ms != good[i].ms)
			fail_msg("'%s' -> %u, want %u", good[i].s, ms, good[i].ms);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ms = 12345;
		if (sl_parse_duration(bad[i], &ms) != -EINVAL)
			fail_msg("accepted bad duration '%s'", bad[i]);
		assert_int_equal(ms, 12345);
	}
	assert_int_equal(sl_parse_duration(NULL, &ms), -EINVAL);
}

static void test_parse_size(void **state)
{
	static const struct {
		const char *s;
		uint64_t v;
	} good[] = {
	    {"512", 512},
	    {"0", 0},
	    {"32k", 32768},
	    {"32K", 32768},
	    {"8KiB", 8192},
	    {"8kb", 8192},
	    {"10m", 10485760},
	    {"10MiB", 10485760},
	    {"1g", 1073741824},
	    {"3GiB", 3ull << 30},
	    {"100b", 100},
	    {"18446744073709551615", UINT64_MAX},
	    {"17179869183g", 17179869183ull << 30},
	};
	static const char *const bad[] = {
	    "",
	    "k",
	    "1.5k",
	    "-1",
	    "+1",
	    " 1k",
	    "1k ",
	    "1 k",
	    "1t",
	    "1kk",
	    "0x10",
	    "1kibi",
	    "18446744073709551616",
	    "17179869184g",
	    "18014398509481984k",
	};
	uint64_t v;
	unsigned int i;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		v = 12345;
		if (sl_parse_size(good[i].s, &v))
			fail_msg("rejected good size '%s'", good[i].s);
		if (v != good[i].v)
			fail_msg("'%s' -> %llu, want %llu", good[i].s, (unsigned long long)v,
				 (unsigned long long)good[i].v);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		v = 12345;
		if (sl_parse_size(bad[i], &v) != -EINVAL)
			fail_msg("accepted bad size '%s'", bad[i]);
		assert_int_equal(v, 12345);
	}
	assert_int_equal(sl_parse_size(NULL, &v), -EINVAL);
}

static void test_parse_addr(void **state)
{
	static const char *const bad[] = {
	    "",	       "127.0.0.1", "127.0.0.1:", "127.0.0.1:0",  ":0",
	    ":65536",  ":",	    "::1:80",	  "[::1]80",	  "[::1]:",
	    "[]:80",   "[::1",	    "127.1:80",	  "1.2.3.4.5:80", "256.0.0.1:80",
	    "host:8x", "host:+80",  ":-1",	  "[1.2.3.4]:80", "[::g]:80",
	    "a:b:80",  ":080800",
	};
	struct sockaddr_storage ss;
	socklen_t len;
	unsigned int i;
	int ret;

	assert_int_equal(sl_parse_addr("127.0.0.1:80", &ss, &len), 0);
	assert_in4(&ss, len, "127.0.0.1", 80);
	assert_int_equal(sl_parse_addr(":8080", &ss, &len), 0);
	assert_in4(&ss, len, "0.0.0.0", 8080);
	assert_int_equal(sl_parse_addr("10.1.2.3:65535", &ss, &len), 0);
	assert_in4(&ss, len, "10.1.2.3", 65535);
	assert_int_equal(sl_parse_addr("[::1]:80", &ss, &len), 0);
	assert_in6(&ss, len, "::1", 80);
	assert_int_equal(sl_parse_addr("[::]:8080", &ss, &len), 0);
	assert_in6(&ss, len, "::", 8080);
	assert_int_equal(sl_parse_addr("[2001:db8::1]:1", &ss, &len), 0);
	assert_in6(&ss, len, "2001:db8::1", 1);

	/* localhost may resolve to either family first; it must be loopback with the port. */
	assert_int_equal(sl_parse_addr("localhost:9001", &ss, &len), 0);
	if (ss.ss_family == AF_INET)
		assert_in4(&ss, len, "127.0.0.1", 9001);
	else
		assert_in6(&ss, len, "::1", 9001);

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (sl_parse_addr(bad[i], &ss, &len) != -EINVAL)
			fail_msg("accepted or misclassified bad address '%s'", bad[i]);
	assert_int_equal(sl_parse_addr(NULL, &ss, &len), -EINVAL);

	/* Numeric only (the admin API on the main loop): the same parse, names are not
	 * looked up but told apart from malformed input. */
	assert_int_equal(sl_parse_addr_numeric("127.0.0.1:80", &ss, &len), 0);
	assert_in4(&ss, len, "127.0.0.1", 80);
	assert_int_equal(sl_parse_addr_numeric("[2001:db8::1]:1", &ss, &len), 0);
	assert_in6(&ss, len, "2001:db8::1", 1);
	assert_int_equal(sl_parse_addr_numeric("localhost:9001", &ss, &len), 1);
	assert_int_equal(sl_parse_addr_numeric("no-such-host.invalid:80", &ss, &len), 1);
	assert_int_equal(sl_parse_addr_numeric("[not-v6]:80", &ss, &len), -EINVAL);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (sl_parse_addr_numeric(bad[i], &ss, &len) != -EINVAL)
			fail_msg("numeric parse accepted bad address '%s'", bad[i]);

	/* Well-formed but unresolvable: told apart from malformed (the resolver may be down). */
	ret = sl_parse_addr("no-such-host.invalid:80", &ss, &len);
	if (ret != -ENOENT && ret != -EAGAIN)
		fail_msg("unresolvable name gave %d", ret);
}

static void test_refcount(void **state)
{
	static const char yaml[] =
	    "log: { error_log: /tmp/e, access_log: /tmp/a }\n"
	    "upstreams: { u: { servers: [ { address: \"127.0.0.1:1\" }, { address: \"[::1]:2\" } ] "
	    "} }\n"
	    "listeners:\n"
	    "  - address: \":8080\"\n"
	    "    routes:\n"
	    "      - { host: \"*.a.com\", path: /x, upstream: u }\n"
	    "      - respond: { status: 201, headers: { A: b, C: d }, body: hi }\n";
	struct sl_conf *c;

	/* Freeing is observed by the sanitizers: reading c after the early puts is a
	 * use-after-free if they freed, and LeakSanitizer fails the run if the last one did not.
	 * (mallinfo cannot tell: glibc's tcache counts freed chunks as in use.) */
	c = parse_ok(yaml);
	assert_int_equal(atomic_load(&c->refcnt), 1);
	sl_conf_get(c);
	sl_conf_get(c);
	assert_int_equal(atomic_load(&c->refcnt), 3);
	sl_conf_put(c);
	sl_conf_put(c);
	assert_int_equal(atomic_load(&c->refcnt), 1);
	assert_string_equal(c->listeners[0].routes[1].respond.body, "hi");
	assert_string_equal(c->listeners[0].routes[0].upstream->servers[1].address, "[::1]:2");
	sl_conf_put(c);
	sl_conf_put(NULL);
}

/* Parse errors at every depth must release what was built so far (checked under ASan). */
static void test_error_paths_free(void **state)
{
	expect_err("log: { error_log: /a, access_log: /b }\n"
		   "upstreams:\n"
		   "  a: { servers: [ { address: \"127.0.0.1:1\" } ] }\n"
		   "  b: { servers: [ { address: \"127.0.0.1:1\" }, { address: \"bad\" } ] }\n"
		   "listeners: [ { address: \":1\" } ]\n",
		   "t.yaml:4:58: upstreams.b.servers[1].address: invalid address 'bad' (host:port, "
		   ":port or [v6]:port)");
	expect_err("upstreams: { a: { servers: [ { address: \"127.0.0.1:1\" } ] } }\n"
		   "listeners:\n"
		   "  - address: \":1\"\n"
		   "    routes:\n"
		   "      - { host: a.com, upstream: a }\n"
		   "      - respond: { headers: { A: b }, body: x }\n"
		   "      - { host: b.com, path: /p, upstream: b }\n",
		   "t.yaml:7:44: undefined upstream 'b'");
}

/* bpf:, admin: and upstream pool: sections (steering, admin API, connection pools). */
static void test_bpf_admin_pool(void **state)
{
	struct sl_conf *c = parse_ok("listeners: [ { address: \":1\" } ]\n");
	assert_int_equal(c->bpf.steering, SL_BPF_AUTO);
	assert_null(c->bpf.pin_path);
	assert_int_equal(c->bpf.stall_ms, 200);
	assert_int_equal(c->bpf.heartbeat_ms, 10);
	assert_int_equal(c->bpf.locality, 1);
	assert_int_equal(c->bpf.load_margin, 1000);
	assert_int_equal(c->bpf.load_signal, SL_LOAD_CONNECTIONS);
	assert_int_equal(c->bpf.workers_pin, 1);
	assert_null(c->admin.socket);
	assert_false(c->admin.debug);
	sl_conf_put(c);

	c = parse_ok("bpf: { locality: off, load_margin: 50, load_signal: cpu,\n"
		     "       workers_pin: false }\nlisteners: [ { address: \":1\" } ]\n");
	assert_int_equal(c->bpf.locality, 0);
	assert_int_equal(c->bpf.load_margin, 50);
	assert_int_equal(c->bpf.load_signal, SL_LOAD_CPU);
	assert_int_equal(c->bpf.workers_pin, 0);
	sl_conf_put(c);
	c = parse_ok("bpf: { locality: prefer, load_signal: connections }\n"
		     "listeners: [ { address: \":1\" } ]\n");
	assert_int_equal(c->bpf.locality, 1);
	assert_int_equal(c->bpf.load_signal, SL_LOAD_CONNECTIONS);
	sl_conf_put(c);
	c = parse_ok("bpf: { locality: \"off\", load_signal: both }\n"
		     "listeners: [ { address: \":1\" } ]\n");
	assert_int_equal(c->bpf.locality, 0);
	assert_int_equal(c->bpf.load_signal, SL_LOAD_BOTH);
	sl_conf_put(c);
	expect_err("bpf: { locality: always }\n", "t.yaml:1:18: bpf.locality must be prefer or off");
	expect_err("bpf: { locality: [ prefer ] }\n", "t.yaml:1:18: bpf.locality must be a string");
	expect_err("bpf: { load_margin: 0 }\n",
		   "t.yaml:1:21: bpf.load_margin out of range (1..1000)");
	expect_err("bpf: { load_margin: 1001 }\n",
		   "t.yaml:1:21: bpf.load_margin out of range (1..1000)");
	expect_err("bpf: { load_margin: 25% }\n", "t.yaml:1:21: bpf.load_margin must be an integer");
	expect_err("bpf: { load_signal: rps }\n",
		   "t.yaml:1:21: bpf.load_signal must be both, connections or cpu");
	expect_err("bpf: { workers_pin: maybe }\n",
		   "t.yaml:1:21: bpf.workers_pin must be true or false");

	c = parse_ok(
	    "bpf: { steering: required, pin_path: /sys/fs/bpf/x, stall_ms: 300,\n"
	    "       heartbeat_ms: 5, max_conns_per_worker: 1000 }\n"
	    "admin: { socket: /run/a.sock, listen: 127.0.0.1:9180, token: t, debug: true }\n"
	    "upstreams:\n"
	    "  u:\n"
	    "    servers: [ { address: 127.0.0.1:1 } ]\n"
	    "    pool: { max_idle_per_worker: 7, max_idle_shared: 9, idle_timeout: 2s,\n"
	    "            max_requests_per_conn: 100, max_conns_per_server: 3,\n"
	    "            queue_timeout: 250ms }\n"
	    "  v:\n"
	    "    servers: [ { address: 127.0.0.1:2 } ]\n"
	    "    keepalive: 5\n"
	    "listeners: [ { address: \":1\", routes: [ { upstream: u } ] } ]\n");
	assert_int_equal(c->bpf.steering, SL_BPF_REQUIRED);
	assert_string_equal(c->bpf.pin_path, "/sys/fs/bpf/x");
	assert_int_equal(c->bpf.stall_ms, 300);
	assert_int_equal(c->bpf.heartbeat_ms, 5);
	assert_int_equal(c->bpf.max_conns_per_worker, 1000);
	assert_string_equal(c->admin.socket, "/run/a.sock");
	assert_in4(&c->admin.listen_addr, c->admin.listen_addrlen, "127.0.0.1", 9180);
	assert_string_equal(c->admin.token, "t");
	assert_true(c->admin.debug);
	const struct sl_conf_upstream *u = find_upstream(c, "u");
	assert_int_equal(u->pool.max_idle_per_worker, 7);
	assert_int_equal(u->pool.max_idle_shared, 9);
	assert_int_equal(u->pool.idle_timeout, 2000);
	assert_int_equal(u->pool.max_requests_per_conn, 100);
	assert_int_equal(u->pool.max_conns_per_server, 3);
	assert_int_equal(u->pool.queue_timeout, 250);
	const struct sl_conf_upstream *v = find_upstream(c, "v");
	assert_int_equal(v->pool.max_idle_per_worker, 5); /* keepalive: the older spelling */
	assert_int_equal(v->pool.max_idle_shared, 1024);
	assert_int_equal(v->pool.idle_timeout, 60000);
	assert_int_equal(v->pool.queue_timeout, 3000);
	sl_conf_put(c);

	c = parse_ok("bpf: { steering: off }\nlisteners: [ { address: \":1\" } ]\n");
	assert_int_equal(c->bpf.steering, SL_BPF_OFF);
	sl_conf_put(c);

	expect_err("bpf: { steering: maybe }\n",
		   "t.yaml:1:18: bpf.steering must be auto, required or off");
	expect_err("bpf: { stall_ms: 10, heartbeat_ms: 10 }\n",
		   "t.yaml:1:6: bpf.heartbeat_ms (10) must be below bpf.stall_ms (10)");
	expect_err("bpf: { pin_path: sluice }\n",
		   "t.yaml:1:18: bpf.pin_path must be an absolute path");
	expect_err("admin: { listen: 10.1.2.3:9180, token: t }\n",
		   "t.yaml:1:18: admin.listen must be a loopback address (or set "
		   "admin.allow_remote: true)");
	c = parse_ok("admin: { listen: 10.1.2.3:9180, token: t, allow_remote: true }\n"
		     "listeners: [ { address: \":1\" } ]\n");
	assert_true(c->admin.allow_remote);
	sl_conf_put(c);
	expect_err("admin: { listen: 127.0.0.1:9180 }\n",
		   "t.yaml:1:8: admin.listen needs admin.token or admin.token_file (a bearer token)");
	expect_err("admin: { listen: 127.0.0.1:9180, token_file: /nonexistent/t }\n",
		   "t.yaml:1:46: admin.token_file: cannot open '/nonexistent/t': No such file or "
		   "directory");
	expect_err("admin: { token: a, token_file: /etc/hostname }\n",
		   "t.yaml:1:32: admin: token and token_file are exclusive");
	expect_err("admin: { sockt: /x }\n", "t.yaml:1:10: unknown key 'sockt' in admin");
	expect_err("upstreams:\n"
		   "  u:\n"
		   "    servers: [ { address: 127.0.0.1:1 } ]\n"
		   "    pool: { max_idle: 2 }\n"
		   "listeners: [ { address: \":1\" } ]\n",
		   "t.yaml:4:13: unknown key 'max_idle' in upstreams.u.pool");
}

/* Balancer, hashing, retry_on, outlier and health_check keys: values, defaults, errors. */
static void test_upstream_lb_keys(void **state)
{
	struct sl_conf *c = parse_ok("upstreams:\n"
				     "  u:\n"
				     "    balance: ketama\n"
				     "    hash_key: cookie:sid\n"
				     "    hash_balance_factor: 150\n"
				     "    slow_start: 30s\n"
				     "    retry_on: [connect_failure, 502, 503, 504]\n"
				     "    outlier: { consecutive_5xx: 3, base_ejection_time: 10s,\n"
				     "               max_ejection_time: 1m, max_ejection_percent: 50 }\n"
				     "    health_check: { type: http, path: /hc, host: h.example,\n"
				     "                    status: 200-299, body: ok, interval: 1s,\n"
				     "                    timeout: 500ms, rise: 1, fall: 2 }\n"
				     "    servers: [ { address: 127.0.0.1:1 }, { address: 127.0.0.1:2 } ]\n"
				     "listeners: [ { address: \":1\", routes: [ { upstream: u } ] } ]\n");
	const struct sl_conf_upstream *u = &c->upstreams[0];
	assert_int_equal(u->lb.balance, SL_BAL_KETAMA);
	assert_int_equal(u->lb.hash_key, SL_HASH_COOKIE);
	assert_string_equal(u->lb.hash_name, "sid");
	assert_int_equal(u->lb.hash_balance_factor, 150);
	assert_int_equal(u->lb.slow_start, 30000);
	assert_int_equal(u->lb.retry_on, SL_RETRY_CONNECT_FAILURE);
	assert_int_equal(u->lb.retry_status[0], (1ull << 2) | (1ull << 3) | (1ull << 4));
	assert_int_equal(u->lb.outlier.consecutive_5xx, 3);
	assert_int_equal(u->lb.outlier.consecutive_connect_failures, 5);
	assert_int_equal(u->lb.outlier.base_ejection_time, 10000);
	assert_int_equal(u->lb.outlier.max_ejection_time, 60000);
	assert_int_equal(u->lb.outlier.max_ejection_percent, 50);
	assert_int_equal(u->hc.type, SL_HC_HTTP);
	assert_string_equal(u->hc.path, "/hc");
	assert_string_equal(u->hc.host, "h.example");
	assert_string_equal(u->hc.body, "ok");
	assert_int_equal(u->hc.status_lo, 200);
	assert_int_equal(u->hc.status_hi, 299);
	assert_int_equal(u->hc.interval, 1000);
	assert_int_equal(u->hc.timeout, 500);
	assert_int_equal(u->hc.rise, 1);
	assert_int_equal(u->hc.fall, 2);
	sl_conf_put(c);

#define UP(x) "upstreams:\n  u:\n    servers: [ { address: 127.0.0.1:1 } ]\n" x \
	      "listeners: [ { address: \":1\" } ]\n"
	expect_err(UP("    balance: fastest\n"),
		   "t.yaml:4:14: upstreams.u.balance: unknown balancer 'fastest' (round_robin, "
		   "least_conn, random_two, maglev, ketama, ewma)");
	expect_err(UP("    hash_key: client_ip\n"),
		   "t.yaml:4:15: upstreams.u.hash_key needs balance: maglev or ketama");
	expect_err(UP("    balance: maglev\n    hash_key: \"header:\"\n"),
		   "t.yaml:5:15: upstreams.u.hash_key: 'header:' needs a header or cookie name (a "
		   "token of 1..64 characters)");
	expect_err(UP("    balance: maglev\n    hash_key: body\n"),
		   "t.yaml:5:15: upstreams.u.hash_key: 'body' is not client_ip, uri, header:NAME or "
		   "cookie:NAME");
	expect_err(UP("    balance: maglev\n    table_size: 65536\n"),
		   "t.yaml:5:17: upstreams.u.table_size must be a prime (e.g. 65537)");
	expect_err("upstreams:\n  u:\n    balance: maglev\n    table_size: 3\n"
		   "    servers: [ { address: 127.0.0.1:1 }, { address: 127.0.0.1:2 },\n"
		   "               { address: 127.0.0.1:3 }, { address: 127.0.0.1:4 } ]\n"
		   "listeners: [ { address: \":1\" } ]\n",
		   "t.yaml:5:14: upstream 'u' has more servers (4) than its maglev table_size (3)");
	expect_err(UP("    hash_balance_factor: 150\n"),
		   "t.yaml:4:26: upstreams.u.hash_balance_factor needs balance: ketama");
	expect_err(UP("    balance: ketama\n    hash_balance_factor: 100\n"),
		   "t.yaml:5:26: upstreams.u.hash_balance_factor out of range (101..10000)");
	expect_err(UP("    retry_on: [502, 404]\n"),
		   "t.yaml:4:21: upstreams.u.retry_on.status out of range (500..599)");
	expect_err(UP("    retry_on: [timeout]\n"),
		   "t.yaml:4:16: upstreams.u.retry_on: entries are connect_failure or a status "
		   "500..599");
	expect_err(UP("    retry_on: 502\n"),
		   "t.yaml:4:15: upstreams.u.retry_on must be a sequence (e.g. [connect_failure, "
		   "502, 503, 504])");
	expect_err(UP("    outlier: { base_ejection_time: 10s, max_ejection_time: 1s }\n"),
		   "t.yaml:4:14: upstreams.u.outlier.max_ejection_time is below base_ejection_time");
	expect_err(UP("    outlier: { max_ejection_percent: 101 }\n"),
		   "t.yaml:4:38: upstreams.u.outlier.max_ejection_percent out of range (0..100)");
	expect_err(UP("    health_check: { type: udp }\n"),
		   "t.yaml:4:27: upstreams.u.health_check.type: 'udp' is not tcp or http");
	expect_err(UP("    health_check: { interval: 1s, timeout: 1s }\n"),
		   "t.yaml:4:19: upstreams.u.health_check.timeout must be shorter than interval");
	expect_err(UP("    health_check: { path: /x }\n"),
		   "t.yaml:4:19: upstreams.u.health_check: method, path, host and body need type: "
		   "http");
	expect_err(UP("    health_check: { type: http, path: x }\n"),
		   "t.yaml:4:39: upstreams.u.health_check.path must start with /");
	expect_err(UP("    health_check: { type: http, path: \"/a b\" }\n"),
		   "t.yaml:4:39: upstreams.u.health_check.path has a control character or a space");
	expect_err(UP("    health_check: { type: http, status: 200-100 }\n"),
		   "t.yaml:4:41: upstreams.u.health_check.status: '200-100' is not a status or a "
		   "range like 200-399");
	expect_err(UP("    health_check: { type: http, status: 99 }\n"),
		   "t.yaml:4:41: upstreams.u.health_check.status: '99' is not a status or a range "
		   "like 200-399");
	expect_err("upstreams:\n  u:\n    servers: [ { address: 127.0.0.1:1 },\n"
		   "      { address: 127.0.0.1:2 }, { address: 127.0.0.1:1 } ]\n"
		   "listeners: [ { address: \":1\" } ]\n",
		   "t.yaml:4:33: upstreams.u.servers[2]: duplicate address '127.0.0.1:1'");
#undef UP
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_docs_example),
	    cmocka_unit_test(test_every_key_non_default),
	    cmocka_unit_test(test_defaults),
	    cmocka_unit_test(test_log_keywords),
	    cmocka_unit_test(test_example_file),
	    cmocka_unit_test(test_load_errors),
	    cmocka_unit_test(test_err_unknown_keys),
	    cmocka_unit_test(test_err_types),
	    cmocka_unit_test(test_cache),
	    cmocka_unit_test(test_process),
	    cmocka_unit_test(test_err_ranges),
	    cmocka_unit_test(test_err_routes),
	    cmocka_unit_test(test_err_respond_headers),
	    cmocka_unit_test(test_err_upstreams),
	    cmocka_unit_test(test_upstream_tls_and_proxy),
	    cmocka_unit_test(test_err_listeners),
	    cmocka_unit_test(test_err_syntax),
	    cmocka_unit_test(test_err_nesting),
	    cmocka_unit_test(test_err_wide_mappings),
	    cmocka_unit_test(test_err_too_many_listeners),
	    cmocka_unit_test(test_err_too_many_servers),
	    cmocka_unit_test(test_parse_duration),
	    cmocka_unit_test(test_parse_size),
	    cmocka_unit_test(test_parse_addr),
	    cmocka_unit_test(test_refcount),
	    cmocka_unit_test(test_error_paths_free),
	    cmocka_unit_test(test_bpf_admin_pool),
	    cmocka_unit_test(test_upstream_lb_keys),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
