/* Unit tests for user/cache/policy.c and key.c: RFC 9111 storage and freshness rules,
 * Vary, conditional and range requests, HTTP dates, key templates; hostile inputs
 * (absurd max-age, negative and overflowing Age, bad Expires, huge Vary lists,
 * separators and control bytes smuggled into keys through headers). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cache/key.h"
#include "cache/policy.h"
#include "cache/store.h"

struct msg {
	struct sl_http_parser hp;
	struct sl_head head;
	char buf[65536];
};

static struct msg *parse(struct msg *m, const char *text, int is_request)
{
	memset(m, 0, sizeof(*m));
	size_t len = strlen(text);
	assert_true(len < sizeof(m->buf));
	memcpy(m->buf, text, len);
	sl_http_parser_init(&m->hp, is_request, &m->head);
	sl_head_reset(&m->head, 256, 8192);
	size_t used;
	llhttp_errno_t e = sl_http_execute(&m->hp, m->buf, m->buf, len, &used);
	assert_true(e == HPE_OK || e == HPE_PAUSED);
	assert_true(m->hp.headers_done);
	const char *why;
	assert_int_equal(sl_head_analyze(&m->head, m->buf, is_request, &why), 0);
	return m;
}

static struct msg rq, rs;
#define NOW 1700000000

static struct sl_cache_verdict decide_at(const char *req, const char *resp, int64_t rt,
					 int64_t st)
{
	parse(&rq, req, 1);
	char full[65536];
	snprintf(full, sizeof(full), "%s\r\n", resp);
	parse(&rs, full, 0);
	struct sl_cache_times tm = {.req_wall = rt, .resp_wall = st, .cfg_swr = 30, .cfg_sie = 300};
	struct sl_cache_verdict v;
	sl_cache_decide(&rq.head, rq.buf, &rs.head, rs.buf, &tm, &v);
	return v;
}

static struct sl_cache_verdict decide(const char *resp)
{
	return decide_at("GET / HTTP/1.1\r\nHost: a\r\n\r\n", resp, NOW, NOW);
}

#define DATE "Date: Tue, 14 Nov 2023 22:13:20 GMT\r\n" /* == NOW */

static void test_freshness_sources(void **state)
{
	struct sl_cache_verdict v =
	    decide("HTTP/1.1 200 OK\r\n" DATE "Cache-Control: max-age=60, s-maxage=120\r\n"
		   "Expires: Tue, 14 Nov 2023 23:13:20 GMT\r\nContent-Length: 0\r\n");
	assert_true(v.store);
	assert_int_equal(v.lifetime, 120); /* s-maxage wins in a shared cache */
	assert_true(v.flags & SL_COBJ_NO_STALE); /* ... and implies proxy-revalidate */
	v = decide("HTTP/1.1 200 OK\r\n" DATE "Cache-Control: max-age=60\r\n"
		   "Expires: Tue, 14 Nov 2023 23:13:20 GMT\r\nContent-Length: 0\r\n");
	assert_int_equal(v.lifetime, 60);
	assert_false(v.flags & SL_COBJ_NO_STALE);
	assert_int_equal(v.swr, 30); /* the route's defaults */
	assert_int_equal(v.sie, 300);
	v = decide("HTTP/1.1 200 OK\r\n" DATE "Expires: Tue, 14 Nov 2023 23:13:20 GMT\r\n"
		   "Content-Length: 0\r\n");
	assert_int_equal(v.lifetime, 3600);
	/* the response's own stale windows win over the route's */
	v = decide("HTTP/1.1 200 OK\r\nCache-Control: max-age=1, stale-while-revalidate=5, "
		   "stale-if-error=7\r\nContent-Length: 0\r\n");
	assert_int_equal(v.swr, 5);
	assert_int_equal(v.sie, 7);
}

static void test_heuristic_off_and_validators(void **state)
{
	struct sl_cache_verdict v = decide("HTTP/1.1 200 OK\r\nLast-Modified: Tue, 14 Nov 2023 "
					   "20:00:00 GMT\r\nContent-Length: 0\r\n");
	assert_false(v.store); /* no explicit freshness: heuristic freshness is off */
	assert_false(v.shareable); /* waiters go to the origin themselves */
	v = decide("HTTP/1.1 200 OK\r\nCache-Control: max-age=0\r\nContent-Length: 0\r\n");
	assert_false(v.store); /* stale at once and nothing to revalidate with */
	v = decide("HTTP/1.1 200 OK\r\nCache-Control: max-age=0\r\nETag: \"x\"\r\n"
		   "Content-Length: 0\r\n");
	assert_true(v.store);
	assert_int_equal(v.lifetime, 0);
}

static void test_no_store_private_no_cache(void **state)
{
	struct sl_cache_verdict v =
	    decide("HTTP/1.1 200 OK\r\nCache-Control: max-age=60, no-store\r\nContent-Length: 0\r\n");
	assert_false(v.store);
	assert_false(v.shareable);
	v = decide("HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nCache-Control: private\r\n"
		   "Content-Length: 0\r\n");
	assert_false(v.store); /* a second field counts too */
	assert_string_equal(v.why, "private");
	v = decide("HTTP/1.1 200 OK\r\nCache-Control: PRIVATE=\"x\", max-age=60\r\n"
		   "Content-Length: 0\r\n");
	assert_false(v.store);
	v = decide("HTTP/1.1 200 OK\r\nCache-Control: no-cache, max-age=600\r\nETag: \"v1\"\r\n"
		   "Content-Length: 0\r\n");
	assert_true(v.store);
	assert_true(v.flags & SL_COBJ_NO_CACHE);
	assert_int_equal(v.lifetime, 0);
	assert_int_equal(v.swr, 0); /* never served without revalidation */
	v = decide("HTTP/1.1 200 OK\r\nCache-Control: no-cache=\"set-cookie\", max-age=600\r\n"
		   "Content-Length: 0\r\n");
	assert_false(v.store); /* qualified no-cache as unqualified; no validator */
	v = decide("HTTP/1.1 200 OK\r\nCache-Control: max-age=60, must-revalidate\r\n"
		   "Content-Length: 0\r\n");
	assert_true(v.store);
	assert_true(v.flags & SL_COBJ_NO_STALE);
	assert_int_equal(v.swr, 0);
	assert_int_equal(v.sie, 0);
	v = decide("HTTP/1.1 200 OK\r\nCache-Control: max-age=60, proxy-revalidate, "
		   "stale-if-error=99\r\nContent-Length: 0\r\n");
	assert_true(v.flags & SL_COBJ_NO_STALE);
	assert_int_equal(v.sie, 0);
}

static void test_set_cookie_vary_status(void **state)
{
	struct sl_cache_verdict v =
	    decide("HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nSet-Cookie: s=1\r\n"
		   "Content-Length: 0\r\n");
	assert_false(v.store);
	assert_false(v.shareable);
	v = decide("HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nVary: *\r\nContent-Length: 0\r\n");
	assert_false(v.store);
	static const int ok[] = {200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501};
	for (int s = 100; s < 600; s++) {
		int want = 0;
		for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
			want |= ok[i] == s;
		assert_int_equal(sl_cache_status_ok(s), want);
	}
	v = decide("HTTP/1.1 206 Partial Content\r\nCache-Control: max-age=60\r\n"
		   "Content-Range: bytes 0-0/10\r\nContent-Length: 1\r\n");
	assert_false(v.store);
	v = decide("HTTP/1.1 503 Busy\r\nCache-Control: max-age=60\r\nContent-Length: 0\r\n");
	assert_false(v.store);
	assert_true(v.shareable); /* an error: one waiter retries, not all */
	v = decide("HTTP/1.1 404 Not Found\r\nCache-Control: max-age=60\r\nContent-Length: 0\r\n");
	assert_true(v.store);
}

static void test_authorization(void **state)
{
	const char *req = "GET / HTTP/1.1\r\nHost: a\r\nAuthorization: Basic eA==\r\n\r\n";
	struct sl_cache_verdict v = decide_at(
	    req, "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 0\r\n", NOW, NOW);
	assert_false(v.store);
	assert_int_equal(sl_cache_request_class(&rq.head, rq.buf), SL_CREQ_NOLOCK);
	v = decide_at(req,
		      "HTTP/1.1 200 OK\r\nCache-Control: max-age=60, public\r\nContent-Length: 0\r\n",
		      NOW, NOW);
	assert_true(v.store);
	v = decide_at(req, "HTTP/1.1 200 OK\r\nCache-Control: s-maxage=60\r\nContent-Length: 0\r\n",
		      NOW, NOW);
	assert_true(v.store);
	v = decide_at(
	    req,
	    "HTTP/1.1 200 OK\r\nCache-Control: max-age=6, must-revalidate\r\nContent-Length: 0\r\n",
	    NOW, NOW);
	assert_true(v.store);
	parse(&rq, "GET / HTTP/1.1\r\nHost: a\r\nIf-Match: \"x\"\r\n\r\n", 1);
	assert_int_equal(sl_cache_request_class(&rq.head, rq.buf), SL_CREQ_BYPASS);
	parse(&rq, "GET / HTTP/1.1\r\nHost: a\r\nCache-Control: no-store\r\n\r\n", 1);
	assert_int_equal(sl_cache_request_class(&rq.head, rq.buf), SL_CREQ_NOLOCK);
}

static void test_age_generation(void **state)
{
	/* Date 100 s before the response arrived, Age 10, 5 s in flight:
	 * apparent 100, corrected 15 -> 100 */
	struct sl_cache_verdict v =
	    decide_at("GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		      "HTTP/1.1 200 OK\r\n" DATE "Age: 10\r\nCache-Control: max-age=600\r\n"
		      "Content-Length: 0\r\n",
		      NOW + 95, NOW + 100);
	assert_int_equal(v.initial_age, 100);
	/* Age beyond the apparent age: corrected = 50 + 5 */
	v = decide_at("GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		      "HTTP/1.1 200 OK\r\n" DATE "Age: 50\r\nCache-Control: max-age=600\r\n"
		      "Content-Length: 0\r\n",
		      NOW - 5, NOW);
	assert_int_equal(v.initial_age, 55);
	/* a Date in the future: apparent age 0, not negative */
	v = decide_at("GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		      "HTTP/1.1 200 OK\r\n" DATE "Cache-Control: max-age=600\r\nContent-Length: 0\r\n",
		      NOW - 1000, NOW - 1000);
	assert_int_equal(v.initial_age, 0);
	assert_int_equal(sl_cache_age(55, 1000000000ull, 11000000000ull), 65);
	assert_int_equal(sl_cache_age(SL_DELTA_MAX, 0, UINT64_MAX), SL_DELTA_MAX);
	assert_int_equal(sl_cache_age(3, 5000000000ull, 1000000000ull), 3); /* clock behind */
}

static void test_hostile_numbers(void **state)
{
	uint32_t d;
	assert_int_equal(sl_delta_seconds("99999999999999999999999999", 26, &d), 0);
	assert_int_equal(d, SL_DELTA_MAX);
	assert_int_equal(sl_delta_seconds("-5", 2, &d), -EINVAL);
	assert_int_equal(sl_delta_seconds("", 0, &d), -EINVAL);
	assert_int_equal(sl_delta_seconds("1e3", 3, &d), -EINVAL);
	struct sl_cache_verdict v = decide(
	    "HTTP/1.1 200 OK\r\nCache-Control: max-age=99999999999999999999999\r\nContent-Length: 0\r\n");
	assert_true(v.store);
	assert_int_equal(v.lifetime, SL_DELTA_MAX); /* saturates, never wraps to small */
	/* negative / overflowing / repeated-different Age: treated as already old */
	v = decide("HTTP/1.1 200 OK\r\nAge: -5\r\nCache-Control: max-age=60\r\nETag: \"a\"\r\n"
		   "Content-Length: 0\r\n");
	assert_int_equal(v.initial_age, SL_DELTA_MAX);
	v = decide("HTTP/1.1 200 OK\r\nAge: 184467440737095516160\r\nCache-Control: max-age=60\r\n"
		   "Content-Length: 0\r\n");
	assert_int_equal(v.initial_age, SL_DELTA_MAX);
	v = decide("HTTP/1.1 200 OK\r\nAge: 1\r\nAge: 2\r\nCache-Control: max-age=60\r\n"
		   "Content-Length: 0\r\n");
	assert_int_equal(v.initial_age, SL_DELTA_MAX);
	/* conflicting or malformed max-age: stale (RFC 9111 4.2.1) */
	v = decide("HTTP/1.1 200 OK\r\nCache-Control: max-age=60, max-age=6000\r\nETag: \"a\"\r\n"
		   "Content-Length: 0\r\n");
	assert_int_equal(v.lifetime, 0);
	v = decide("HTTP/1.1 200 OK\r\nCache-Control: max-age=abc\r\nETag: \"a\"\r\n"
		   "Content-Length: 0\r\n");
	assert_int_equal(v.lifetime, 0);
	v = decide("HTTP/1.1 200 OK\r\nCache-Control: max-age=\"30\"\r\nContent-Length: 0\r\n");
	assert_int_equal(v.lifetime, 30);
	/* Expires: "0" and garbage are in the past; a year-9999 date saturates */
	v = decide("HTTP/1.1 200 OK\r\n" DATE "Expires: 0\r\nETag: \"a\"\r\nContent-Length: 0\r\n");
	assert_true(v.store);
	assert_int_equal(v.lifetime, 0);
	v = decide("HTTP/1.1 200 OK\r\n" DATE "Expires: Fri, 31 Dec 9999 23:59:59 GMT\r\n"
		   "Content-Length: 0\r\n");
	assert_int_equal(v.lifetime, SL_DELTA_MAX);
	v = decide("HTTP/1.1 200 OK\r\n" DATE "Expires: Thu, 01 Jan 1970 00:00:00 GMT\r\n"
		   "ETag: \"a\"\r\nContent-Length: 0\r\n");
	assert_int_equal(v.lifetime, 0);
	v = decide("HTTP/1.1 200 OK\r\n" DATE "Expires: Tue, 14 Nov 2023 23:13:20 GMT\r\n"
		   "Expires: Tue, 14 Nov 2024 23:13:20 GMT\r\nETag: \"a\"\r\nContent-Length: 0\r\n");
	assert_int_equal(v.lifetime, 0);
	/* a Date that does not parse: the arrival time is used instead */
	v = decide_at("GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		      "HTTP/1.1 200 OK\r\nDate: yesterday\r\nCache-Control: max-age=60\r\n"
		      "Content-Length: 0\r\n",
		      NOW, NOW);
	assert_int_equal(v.initial_age, 0);
}

static void test_dates(void **state)
{
	int64_t t;
	assert_int_equal(sl_http_date("Sun, 06 Nov 1994 08:49:37 GMT", 29, &t), 0);
	assert_int_equal(t, 784111777);
	assert_int_equal(sl_http_date("Sunday, 06-Nov-94 08:49:37 GMT", 30, &t), 0);
	assert_int_equal(t, 784111777);
	assert_int_equal(sl_http_date("Sun Nov  6 08:49:37 1994", 24, &t), 0);
	assert_int_equal(t, 784111777);
	assert_int_equal(sl_http_date("Sun, 06 Nov 1994 08:49:37 UTC", 29, &t), -EINVAL);
	assert_int_equal(sl_http_date("Sun, 36 Nov 1994 08:49:37 GMT", 29, &t), -EINVAL);
	assert_int_equal(sl_http_date("Sun, 06 Nov 1994 28:49:37 GMT", 29, &t), -EINVAL);
	assert_int_equal(sl_http_date("", 0, &t), -EINVAL);
	assert_int_equal(sl_http_date(",", 1, &t), -EINVAL);
	char out[30];
	sl_http_date_fmt(784111777, out);
	assert_string_equal(out, "Sun, 06 Nov 1994 08:49:37 GMT");
}

static void test_vary(void **state)
{
	char names[SL_CACHE_VARY_BYTES_MAX];
	parse(&rs, "HTTP/1.1 200 OK\r\nVary: Accept-Encoding, accept-language\r\n"
		   "Vary: ACCEPT-encoding\r\nContent-Length: 0\r\n\r\n", 0);
	int n = sl_cache_vary_names(&rs.head, rs.buf, names, sizeof(names));
	assert_int_equal(n, (int)sizeof("accept-encoding\0accept-language"));
	assert_memory_equal(names, "accept-encoding\0accept-language", (size_t)n);
	parse(&rs, "HTTP/1.1 200 OK\r\nVary: a, *\r\nContent-Length: 0\r\n\r\n", 0);
	assert_int_equal(sl_cache_vary_names(&rs.head, rs.buf, names, sizeof(names)), -EPERM);
	parse(&rs, "HTTP/1.1 200 OK\r\nVary: a b\r\nContent-Length: 0\r\n\r\n", 0);
	assert_int_equal(sl_cache_vary_names(&rs.head, rs.buf, names, sizeof(names)), -EINVAL);
	/* hostile: a thousand names */
	static char big[32768];
	size_t o = (size_t)snprintf(big, sizeof(big), "HTTP/1.1 200 OK\r\nVary: ");
	for (int i = 0; i < 1000; i++)
		o += (size_t)snprintf(big + o, sizeof(big) - o, "h%d,", i);
	snprintf(big + o, sizeof(big) - o, "x\r\nCache-Control: max-age=60\r\nContent-Length: 0\r\n\r\n");
	parse(&rs, big, 0);
	assert_int_equal(sl_cache_vary_names(&rs.head, rs.buf, names, sizeof(names)), -E2BIG);
	struct sl_cache_verdict v;
	struct sl_cache_times tm = {NOW, NOW, 0, 0};
	parse(&rq, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 1);
	sl_cache_decide(&rq.head, rq.buf, &rs.head, rs.buf, &tm, &v);
	assert_false(v.store);
	/* one very long name */
	memset(big, 0, sizeof(big));
	o = (size_t)snprintf(big, sizeof(big), "HTTP/1.1 200 OK\r\nVary: ");
	memset(big + o, 'a', 3000);
	strcpy(big + o + 3000, "\r\nContent-Length: 0\r\n\r\n");
	parse(&rs, big, 0);
	assert_int_equal(sl_cache_vary_names(&rs.head, rs.buf, names, sizeof(names)), -E2BIG);

	/* request values: absent and empty differ, fields combine, OWS trimmed */
	char k1[256], k2[256], k3[256];
	const char nm[] = "accept-encoding\0x-a";
	parse(&rq, "GET / HTTP/1.1\r\nHost: a\r\nAccept-Encoding:  gzip \r\nX-A: 1\r\nX-A: 2\r\n\r\n",
	      1);
	int l1 = sl_cache_vary_key(&rq.head, rq.buf, nm, sizeof(nm), k1, sizeof(k1));
	assert_int_equal(l1, (int)sizeof("gzip\0001,2"));
	assert_memory_equal(k1, "gzip\0001,2", (size_t)l1);
	parse(&rq, "GET / HTTP/1.1\r\nHost: a\r\nAccept-Encoding:\r\n\r\n", 1);
	int l2 = sl_cache_vary_key(&rq.head, rq.buf, nm, sizeof(nm), k2, sizeof(k2));
	parse(&rq, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 1);
	int l3 = sl_cache_vary_key(&rq.head, rq.buf, nm, sizeof(nm), k3, sizeof(k3));
	assert_false(l2 == l3 && !memcmp(k2, k3, (size_t)l2));
	assert_int_equal(sl_cache_vary_key(&rq.head, rq.buf, nm, sizeof(nm), k3, 2), -E2BIG);
}

static void test_conditional(void **state)
{
	const char *lm = "Tue, 14 Nov 2023 20:00:00 GMT";
	parse(&rq, "GET / HTTP/1.1\r\nHost: a\r\nIf-None-Match: \"a\", W/\"v1\"\r\n\r\n", 1);
	assert_int_equal(sl_cache_cond(&rq.head, rq.buf, "\"v1\"", 4, lm, 29), 304);
	assert_int_equal(sl_cache_cond(&rq.head, rq.buf, "\"v2\"", 4, lm, 29), 0);
	parse(&rq, "GET / HTTP/1.1\r\nHost: a\r\nIf-None-Match: *\r\n\r\n", 1);
	assert_int_equal(sl_cache_cond(&rq.head, rq.buf, "\"v2\"", 4, NULL, 0), 304);
	/* If-None-Match present and not matching: If-Modified-Since is ignored */
	parse(&rq, "GET / HTTP/1.1\r\nHost: a\r\nIf-None-Match: \"zz\"\r\n"
		   "If-Modified-Since: Tue, 14 Nov 2023 21:00:00 GMT\r\n\r\n", 1);
	assert_int_equal(sl_cache_cond(&rq.head, rq.buf, "\"v2\"", 4, lm, 29), 0);
	parse(&rq, "GET / HTTP/1.1\r\nHost: a\r\nIf-Modified-Since: Tue, 14 Nov 2023 21:00:00 GMT\r\n\r\n",
	      1);
	assert_int_equal(sl_cache_cond(&rq.head, rq.buf, NULL, 0, lm, 29), 304);
	parse(&rq, "GET / HTTP/1.1\r\nHost: a\r\nIf-Modified-Since: Tue, 14 Nov 2023 19:00:00 GMT\r\n\r\n",
	      1);
	assert_int_equal(sl_cache_cond(&rq.head, rq.buf, NULL, 0, lm, 29), 0);
	parse(&rq, "GET / HTTP/1.1\r\nHost: a\r\nIf-Modified-Since: garbage\r\n\r\n", 1);
	assert_int_equal(sl_cache_cond(&rq.head, rq.buf, NULL, 0, lm, 29), 0);
}

static int range(const char *hdrs, uint64_t len, uint64_t *a, uint64_t *b)
{
	char req[1024];
	snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: a\r\n%s\r\n", hdrs);
	parse(&rq, req, 1);
	return sl_cache_range(&rq.head, rq.buf, len, "\"e\"", 3, "Tue, 14 Nov 2023 20:00:00 GMT",
			      29, a, b);
}

static void test_range(void **state)
{
	uint64_t a = 0, b = 0;
	assert_int_equal(range("", 100, &a, &b), 0);
	assert_int_equal(range("Range: bytes=0-9\r\n", 100, &a, &b), 206);
	assert_true(a == 0 && b == 9);
	assert_int_equal(range("Range: bytes=90-\r\n", 100, &a, &b), 206);
	assert_true(a == 90 && b == 99);
	assert_int_equal(range("Range: bytes=-10\r\n", 100, &a, &b), 206);
	assert_true(a == 90 && b == 99);
	assert_int_equal(range("Range: bytes=-1000\r\n", 100, &a, &b), 206);
	assert_true(a == 0 && b == 99);
	assert_int_equal(range("Range: bytes=50-5000\r\n", 100, &a, &b), 206);
	assert_true(a == 50 && b == 99);
	assert_int_equal(range("Range: bytes=100-\r\n", 100, &a, &b), 416);
	assert_int_equal(range("Range: bytes=-0\r\n", 100, &a, &b), 416);
	assert_int_equal(range("Range: bytes=0-1,5-6\r\n", 100, &a, &b), 0);
	assert_int_equal(range("Range: items=0-1\r\n", 100, &a, &b), 0);
	assert_int_equal(range("Range: bytes=9-1\r\n", 100, &a, &b), 0);
	assert_int_equal(range("Range: bytes=99999999999999999999-\r\n", 100, &a, &b), 0);
	assert_int_equal(range("Range: bytes=0-1\r\nRange: bytes=2-3\r\n", 100, &a, &b), 0);
	assert_int_equal(range("Range: bytes=0-1\r\nIf-Range: \"e\"\r\n", 100, &a, &b), 206);
	assert_int_equal(range("Range: bytes=0-1\r\nIf-Range: \"f\"\r\n", 100, &a, &b), 0);
	assert_int_equal(range("Range: bytes=0-1\r\nIf-Range: W/\"e\"\r\n", 100, &a, &b), 0);
	assert_int_equal(
	    range("Range: bytes=0-1\r\nIf-Range: Tue, 14 Nov 2023 20:00:00 GMT\r\n", 100, &a, &b),
	    206);
	assert_int_equal(
	    range("Range: bytes=0-1\r\nIf-Range: Tue, 14 Nov 2023 20:00:01 GMT\r\n", 100, &a, &b), 0);
}

static const char *hdr_cb(void *ctx, const char *name, size_t nlen, size_t *vlen)
{
	struct msg *m = ctx;
	int i = sl_head_find(&m->head, m->buf, name, nlen);
	if (i < 0)
		return NULL;
	*vlen = m->head.h[i].value_len;
	return sl_hdr_value(&m->head, m->buf, (unsigned)i);
}

static int render(const char *tpl, const char *req, char *out, size_t cap)
{
	struct sl_ckey_tpl t;
	unsigned int col;
	const char *why;
	assert_int_equal(sl_ckey_compile(tpl, &t, &col, &why), 0);
	parse(&rq, req, 1);
	int h = sl_head_find(&rq.head, rq.buf, "host", 4);
	struct sl_ckey_in in = {
	    .scheme = "http",
	    .host = h >= 0 ? sl_hdr_value(&rq.head, rq.buf, (unsigned)h) : NULL,
	    .host_len = h >= 0 ? rq.head.h[h].value_len : 0,
	    .target = rq.buf + rq.head.target_off,
	    .target_len = rq.head.target_len,
	    .method = rq.buf + rq.head.method_off,
	    .method_len = rq.head.method_len,
	    .header = hdr_cb,
	    .ctx = &rq,
	};
	int n = sl_ckey_render(&t, &in, out, cap);
	if (n >= 0)
		out[n] = 0;
	return n;
}

static void test_key_template(void **state)
{
	char out[SL_CACHE_KEY_MAX + 1];
	assert_true(render("$scheme://$host$uri$query",
			   "GET /a/b?x=1 HTTP/1.1\r\nHost: Example.COM:8080\r\n\r\n", out,
			   sizeof(out)) > 0);
	assert_string_equal(out, "http://example.com/a/b?x=1");
	render("$method|$host|$uri|$args", "GET /a HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", out,
	       sizeof(out));
	assert_string_equal(out, "GET|[::1]|/a|");
	/* a header value cannot forge the separator, nor carry spaces or controls */
	render("$host|$http_x_tenant|$uri",
	       "GET /a HTTP/1.1\r\nHost: h\r\nX-Tenant: t1|/b\tq%\r\n\r\n", out, sizeof(out));
	assert_string_equal(out, "h|t1%7C/b%09q%25|/a");
	render("$host|$http_x_tenant|$uri", "GET /a HTTP/1.1\r\nHost: h\r\n\r\n", out, sizeof(out));
	assert_string_equal(out, "h||/a");
	/* non-ASCII and the bytes of a header line are escaped */
	render("k:$http_x", "GET / HTTP/1.1\r\nHost: h\r\nX: \xff:\r\n\r\n", out, sizeof(out));
	assert_string_equal(out, "k:%FF:");
	render("$http_x:k", "GET / HTTP/1.1\r\nHost: h\r\nX: \xff:\r\n\r\n", out, sizeof(out));
	assert_string_equal(out, "%FF%3A:k"); /* the separator after it is escaped */
	/* too long for the buffer: refused, not truncated */
	static char big[9000];
	int o = snprintf(big, sizeof(big), "GET /");
	memset(big + o, 'a', 5000);
	strcpy(big + o + 5000, " HTTP/1.1\r\nHost: h\r\n\r\n");
	assert_int_equal(render("$uri", big, out, sizeof(out)), -E2BIG);

	struct sl_ckey_tpl t;
	unsigned int col = 0;
	const char *why = NULL;
	assert_int_equal(sl_ckey_compile("$host$nope", &t, &col, &why), -EINVAL);
	assert_int_equal(col, 5);
	assert_non_null(why);
	assert_int_equal(sl_ckey_compile("a b", &t, &col, &why), -EINVAL);
	assert_int_equal(col, 1);
	assert_int_equal(sl_ckey_compile("", &t, &col, &why), -EINVAL);
	assert_int_equal(sl_ckey_compile("$", &t, &col, &why), -EINVAL);
	char many[400] = "";
	for (int i = 0; i < 40; i++)
		strcat(many, "$uri-");
	assert_int_equal(sl_ckey_compile(many, &t, &col, &why), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_freshness_sources),
	    cmocka_unit_test(test_heuristic_off_and_validators),
	    cmocka_unit_test(test_no_store_private_no_cache),
	    cmocka_unit_test(test_set_cookie_vary_status),
	    cmocka_unit_test(test_authorization),
	    cmocka_unit_test(test_age_generation),
	    cmocka_unit_test(test_hostile_numbers),
	    cmocka_unit_test(test_dates),
	    cmocka_unit_test(test_vary),
	    cmocka_unit_test(test_conditional),
	    cmocka_unit_test(test_range),
	    cmocka_unit_test(test_key_template),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
