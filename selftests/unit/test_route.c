/* Unit tests for user/http/route.c: host (exact, wildcard, case, port stripping), path
 * prefix, first match wins, requests without a host. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "config/config.h"
#include "http/route.h"

/* Routes as the config loader stores them: hosts lower-cased, "*.x" kept as ".x". */
#define ROUTE(h, wild, p)                                                                          \
	{                                                                                          \
		.host = (char *)(h), .host_wildcard = (wild), .path = (char *)(p),                 \
		.path_len = sizeof(p) - 1                                                          \
	}

static const struct sl_conf_route *match(const struct sl_conf_listener *l, const char *host,
					 const char *path)
{
	return sl_route_match(l, host, host ? strlen(host) : 0, path, path ? strlen(path) : 0);
}

static void test_exact_host(void **state)
{
	struct sl_conf_route routes[] = {ROUTE("example.com", 0, "/")};
	struct sl_conf_listener l = {.routes = routes, .n_routes = 1};

	assert_ptr_equal(match(&l, "example.com", "/"), &routes[0]);
	assert_ptr_equal(match(&l, "EXAMPLE.Com", "/x"), &routes[0]);
	assert_null(match(&l, "example.org", "/"));
	assert_null(match(&l, "www.example.com", "/"));
	assert_null(match(&l, "example.co", "/"));
	assert_null(match(&l, "example.comm", "/"));
	assert_null(match(&l, "xexample.com", "/"));
	assert_null(match(&l, "", "/"));
	/* A request without a host only matches host-less routes. */
	assert_null(match(&l, NULL, "/"));
	/* Lengths are honoured, not NUL terminators. */
	assert_ptr_equal(sl_route_match(&l, "example.com.evil", 11, "/", 1), &routes[0]);
	assert_null(sl_route_match(&l, "example.com", 10, "/", 1));
}

static void test_wildcard_host(void **state)
{
	struct sl_conf_route routes[] = {ROUTE(".example.com", 1, "/")};
	struct sl_conf_listener l = {.routes = routes, .n_routes = 1};

	assert_ptr_equal(match(&l, "a.example.com", "/"), &routes[0]);
	assert_ptr_equal(match(&l, "a.b.example.com", "/"), &routes[0]);
	assert_ptr_equal(match(&l, "WWW.Example.COM", "/"), &routes[0]);
	assert_null(match(&l, "example.com", "/"));
	assert_null(match(&l, ".example.com", "/"));
	assert_null(match(&l, "aexample.com", "/"));
	assert_null(match(&l, "a.example.com.evil", "/"));
	assert_null(match(&l, "a.example.org", "/"));
	assert_null(match(&l, NULL, "/"));
	assert_ptr_equal(sl_route_match(&l, "a.example.com:80", 13, "/", 1), &routes[0]);
}

static void test_no_host_route(void **state)
{
	struct sl_conf_route routes[] = {ROUTE(NULL, 0, "/")};
	struct sl_conf_listener l = {.routes = routes, .n_routes = 1};

	assert_ptr_equal(match(&l, NULL, "/"), &routes[0]);
	assert_ptr_equal(sl_route_match(&l, NULL, 0, "/", 1), &routes[0]);
	assert_ptr_equal(match(&l, "", "/"), &routes[0]);
	assert_ptr_equal(match(&l, "anything.example", "/x"), &routes[0]);
}

static void test_path_prefix(void **state)
{
	struct sl_conf_route routes[] = {ROUTE(NULL, 0, "/api")};
	struct sl_conf_listener l = {.routes = routes, .n_routes = 1};

	assert_ptr_equal(match(&l, NULL, "/api"), &routes[0]);
	assert_ptr_equal(match(&l, NULL, "/api/v1/users"), &routes[0]);
	assert_ptr_equal(match(&l, NULL, "/api?x=1"), &routes[0]);
	/* Byte-for-byte prefix, as documented: no segment boundary. */
	assert_ptr_equal(match(&l, NULL, "/apix"), &routes[0]);
	assert_null(match(&l, NULL, "/ap"));
	assert_null(match(&l, NULL, "/API"));
	assert_null(match(&l, NULL, "/"));
	assert_null(match(&l, NULL, "api"));
	assert_null(sl_route_match(&l, NULL, 0, NULL, 0));
	/* Only path_len bytes count. */
	assert_null(sl_route_match(&l, NULL, 0, "/api/v1", 3));
	assert_ptr_equal(sl_route_match(&l, NULL, 0, "/api/v1", 4), &routes[0]);
}

static void test_first_match_wins(void **state)
{
	struct sl_conf_route routes[] = {
	    ROUTE("a.com", 0, "/x"),	 ROUTE(".a.com", 1, "/"), ROUTE(NULL, 0, "/x"),
	    ROUTE(NULL, 0, "/x/deeper"), /* shadowed by the one before: never chosen */
	    ROUTE("b.com", 0, "/"),
	};
	struct sl_conf_listener l = {.routes = routes, .n_routes = 5};

	assert_ptr_equal(match(&l, "a.com", "/x/y"), &routes[0]);
	assert_ptr_equal(match(&l, "w.a.com", "/x"), &routes[1]);
	assert_ptr_equal(match(&l, "c.com", "/x"), &routes[2]);
	assert_ptr_equal(match(&l, NULL, "/x/deeper/still"), &routes[2]);
	assert_ptr_equal(match(&l, "b.com", "/y"), &routes[4]);
	assert_ptr_equal(match(&l, "B.COM", "/x"), &routes[2]);
	/* No catch-all: a request nothing matches gets NULL (the caller's 404). */
	assert_null(match(&l, "a.com", "/y"));
	assert_null(match(&l, NULL, "/y"));

	l.n_routes = 0;
	assert_null(match(&l, "a.com", "/x"));
}

static void test_strip_port(void **state)
{
	static const struct {
		const char *in;
		size_t want;
	} cases[] = {
	    {"example.com:8080", 11},
	    {"example.com", 11},
	    {"example.com:", 11},
	    {"[::1]:80", 5},
	    {"[::1]", 5},
	    {"[2001:db8::1]:443", 13},
	    {"127.0.0.1:80", 9},
	    {"::1", 3},
	    {"a:1:2", 5},
	    {"example.com:80x", 15},
	    {"example.com:http", 16},
	    {"", 0},
	    {"[::1", 4},
	};
	unsigned int i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t got = sl_host_strip_port(cases[i].in, strlen(cases[i].in));

		if (got != cases[i].want)
			fail_msg("strip_port(\"%s\") = %zu, want %zu", cases[i].in, got,
				 cases[i].want);
	}
	/* Only len bytes are looked at. */
	assert_int_equal(sl_host_strip_port("example.com:8080", 14), 11);
	assert_int_equal(sl_host_strip_port("example.com:8080", 11), 11);
	assert_int_equal(sl_host_strip_port(NULL, 0), 0);
}

/* Host header as received -> strip port -> match, end to end with a loaded config. */
static void test_with_loaded_config(void **state)
{
	static const char yaml[] =
	    "listeners:\n"
	    "  - address: \":8080\"\n"
	    "    routes:\n"
	    "      - { host: \"*.Example.COM\", path: /api, respond: { status: 201 } }\n"
	    "      - { host: WWW.Foo.com, respond: { status: 202 } }\n"
	    "      - { path: /healthz, respond: { status: 203 } }\n";
	char err[SL_CONF_ERR_MAX];
	struct sl_conf *c = sl_conf_parse(yaml, strlen(yaml), "t.yaml", err, sizeof(err));
	const struct sl_conf_listener *l;
	const struct sl_conf_route *r;
	const char *hdr;

	if (!c)
		fail_msg("%s", err);
	l = &c->listeners[0];

	hdr = "Api.EXAMPLE.com:8080";
	r = sl_route_match(l, hdr, sl_host_strip_port(hdr, strlen(hdr)), "/api/x", 6);
	assert_non_null(r);
	assert_int_equal(r->respond.status, 201);

	hdr = "www.foo.COM:80";
	r = sl_route_match(l, hdr, sl_host_strip_port(hdr, strlen(hdr)), "/anything", 9);
	assert_non_null(r);
	assert_int_equal(r->respond.status, 202);

	/* Host-specific routes do not catch a request without a host. */
	r = sl_route_match(l, NULL, 0, "/api/x", 6);
	assert_null(r);
	r = sl_route_match(l, NULL, 0, "/healthz", 8);
	assert_non_null(r);
	assert_int_equal(r->respond.status, 203);

	hdr = "example.com:8080";
	r = sl_route_match(l, hdr, sl_host_strip_port(hdr, strlen(hdr)), "/api", 4);
	assert_null(r);
	sl_conf_put(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_exact_host),	       cmocka_unit_test(test_wildcard_host),
	    cmocka_unit_test(test_no_host_route),      cmocka_unit_test(test_path_prefix),
	    cmocka_unit_test(test_first_match_wins),   cmocka_unit_test(test_strip_port),
	    cmocka_unit_test(test_with_loaded_config),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
