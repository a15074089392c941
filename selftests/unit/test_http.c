/* Unit tests for user/http/http.c: head collection over llhttp, framing checks,
 * hop-by-hop marking, header edits and the output builder. */
#include <errno.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "http/http.h"

struct parsed {
	struct sl_http_parser hp;
	struct sl_head head;
	char buf[4096];
	size_t len, used;
	llhttp_errno_t e;
	int rc;
	const char *why;
};

/* Parse one message head from text, fed in pieces of `step` bytes (0 = all at once). */
static struct parsed *parse(const char *text, int is_request, size_t step, unsigned max_hdrs)
{
	static struct parsed p;
	memset(&p, 0, sizeof(p));
	p.len = strlen(text);
	memcpy(p.buf, text, p.len);
	sl_http_parser_init(&p.hp, is_request, &p.head);
	sl_head_reset(&p.head, max_hdrs, 8192);
	size_t off = 0;
	p.e = HPE_OK;
	while (off < p.len) {
		size_t n = step ? (p.len - off < step ? p.len - off : step) : p.len - off;
		size_t used;
		p.e = sl_http_execute(&p.hp, p.buf, p.buf + off, n, &used);
		off += used;
		if (p.e != HPE_OK)
			break;
	}
	p.used = off;
	p.rc = p.hp.headers_done ? sl_head_analyze(&p.head, p.buf, is_request, &p.why) : -1;
	return &p;
}

static const char *hdr(struct parsed *p, const char *name, size_t *len)
{
	int i = sl_head_find(&p->head, p->buf, name, strlen(name));
	if (i < 0)
		return NULL;
	*len = p->head.h[i].value_len;
	return sl_hdr_value(&p->head, p->buf, (unsigned)i);
}

static void test_simple_request(void **state)
{
	struct parsed *p =
	    parse("GET /a?b=1 HTTP/1.1\r\nHost: example.com\r\nX-Y: z\r\n\r\n", 1, 0, 100);
	assert_int_equal(p->e, HPE_PAUSED);
	assert_int_equal(p->rc, 0);
	assert_int_equal(p->head.n, 2);
	assert_int_equal(p->head.target_len, 6);
	assert_memory_equal(p->buf + p->head.target_off, "/a?b=1", 6);
	size_t len;
	const char *v = hdr(p, "x-y", &len);
	assert_non_null(v);
	assert_int_equal(len, 1);
	assert_memory_equal(v, "z", 1);
	assert_int_equal(p->head.info.host_idx, 0);
}

static void test_split_across_reads(void **state)
{
	/* byte by byte: names and values arrive in many spans and must be joined */
	struct parsed *p = parse(
	    "GET / HTTP/1.1\r\nHost: example.com\r\nX-Long-Name: some value\r\n\r\n", 1, 1, 100);
	assert_int_equal(p->rc, 0);
	size_t len;
	const char *v = hdr(p, "X-Long-Name", &len);
	assert_non_null(v);
	assert_int_equal(len, 10);
	assert_memory_equal(v, "some value", 10);
}

static void test_framing_rejected(void **state)
{
	static const char *bad[] = {
	    /* CL.TE and TE.CL: llhttp refuses them itself */
	    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
	    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n",
	    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n",
	    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n",
	    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
	    "GET / HTTP/1.1\r\nHost : a\r\n\r\n",
	    "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n",
	    "GET / HTTP/1.1\r\nX-A: b\r\n\r\n",
	    "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
	    "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct parsed *p = parse(bad[i], 1, 0, 100);
		int refused = p->rc != 0 || (p->e != HPE_PAUSED && p->e != HPE_OK);
		if (!refused)
			fail_msg("accepted ambiguous request #%zu: %s", i, bad[i]);
	}
}

static void test_nul_in_value(void **state)
{
	struct parsed p;
	memset(&p, 0, sizeof(p));
	static const char msg[] = "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\0c\r\n\r\n";
	memcpy(p.buf, msg, sizeof(msg) - 1);
	sl_http_parser_init(&p.hp, 1, &p.head);
	sl_head_reset(&p.head, 100, 8192);
	size_t used;
	llhttp_errno_t e = sl_http_execute(&p.hp, p.buf, p.buf, sizeof(msg) - 1, &used);
	int refused = e != HPE_PAUSED || sl_head_analyze(&p.head, p.buf, 1, &p.why) != 0;
	assert_true(refused);
}

static void test_response_te_not_chunked(void **state)
{
	struct parsed *p = parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", 0, 0, 100);
	assert_int_equal(p->e, HPE_PAUSED);
	assert_int_equal(p->rc, -EPROTO);
	assert_string_equal(p->why, "Transfer-Encoding does not end in chunked");
}

static void test_hop_by_hop(void **state)
{
	struct parsed *p = parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Secret\r\n"
				 "Keep-Alive: 5\r\nX-Secret: 1\r\nTE: trailers\r\nUpgrade: h2c\r\n"
				 "Proxy-Connection: x\r\nX-Keep: 2\r\n\r\n",
				 1, 0, 100);
	assert_int_equal(p->rc, 0);
	char out[1024];
	struct sl_out o;
	sl_out_init(&o, out, sizeof(out));
	sl_out_headers(&o, &p->head, p->buf);
	assert_true(o.ok);
	out[o.len] = 0;
	assert_string_equal(out, "Host: a\r\nX-Keep: 2\r\n");
	assert_true(p->head.info.conn_keepalive);
	assert_true(p->head.info.has_upgrade);
	assert_false(p->head.info.conn_upgrade);
}

static void test_header_limit(void **state)
{
	char msg[2048] = "GET / HTTP/1.1\r\nHost: a\r\n";
	for (int i = 0; i < 10; i++)
		sprintf(msg + strlen(msg), "X-%d: v\r\n", i);
	strcat(msg, "\r\n");
	struct parsed *p = parse(msg, 1, 0, 11);
	assert_int_equal(p->e, HPE_PAUSED);
	assert_int_equal(p->head.n, 11);
	p = parse(msg, 1, 0, 10);
	assert_int_equal(p->e, HPE_USER);
	assert_int_equal(p->head.err_status, 431);
}

static void test_target_limit(void **state)
{
	struct parsed p;
	memset(&p, 0, sizeof(p));
	static const char msg[] = "GET /0123456789 HTTP/1.1\r\nHost: a\r\n\r\n";
	memcpy(p.buf, msg, sizeof(msg) - 1);
	sl_http_parser_init(&p.hp, 1, &p.head);
	sl_head_reset(&p.head, 100, 10);
	size_t used;
	llhttp_errno_t e = sl_http_execute(&p.hp, p.buf, p.buf, sizeof(msg) - 1, &used);
	assert_int_equal(e, HPE_USER);
	assert_int_equal(p.head.err_status, 414);
}

static void test_set_remove(void **state)
{
	struct parsed *p =
	    parse("GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\nx-a: 2\r\nX-B: 3\r\n\r\n", 1, 0, 100);
	assert_int_equal(sl_head_set(&p->head, p->buf, "X-A", "new"), 0);
	assert_int_equal(sl_head_remove(&p->head, p->buf, "x-b", 3), 1);
	assert_int_equal(sl_head_set(&p->head, p->buf, "X-Bad", "a\r\nInjected: 1"), -EINVAL);
	char out[1024];
	struct sl_out o;
	sl_out_init(&o, out, sizeof(out));
	sl_out_headers(&o, &p->head, p->buf);
	out[o.len] = 0;
	assert_string_equal(out, "Host: a\r\nX-A: new\r\n");
}

/* Identity headers: a gateway (CGI, WSGI, Rack) reads X_Client_Subject as
 * X-Client-Subject, so every such spelling goes, and only those. */
static void test_remove_gw_spellings(void **state)
{
	struct parsed *p = parse("GET / HTTP/1.1\r\nHost: a\r\nX-Client-Subject: 1\r\n"
				 "x_client_subject: 2\r\nX-CLIENT_subject: 3\r\n"
				 "X-Client-Subjects: 4\r\nX-Client.Subject: 5\r\n\r\n",
				 1, 0, 100);
	assert_int_equal(sl_head_remove_gw(&p->head, p->buf, "X-Client-Subject", 16), 3);
	char out[1024];
	struct sl_out o;
	sl_out_init(&o, out, sizeof(out));
	sl_out_headers(&o, &p->head, p->buf);
	out[o.len] = 0;
	assert_string_equal(out, "Host: a\r\nX-Client-Subjects: 4\r\nX-Client.Subject: 5\r\n");
	assert_true(sl_name_same_gw("a-B_c", 5, "A_b-C", 5));
	assert_false(sl_name_same_gw("a-b", 3, "a-bc", 4));
	assert_false(sl_name_same_gw("a.b", 3, "a-b", 3));
	/* and in a trailer section */
	char tr[] = "X-Sum: 1\r\nx_client_SUBJECT: CN=admin\r\nX-Client-Fingerprint: 00\r\n\r\n";
	const char *names[] = {"X-Client-Subject", "X-Client-Fingerprint"};
	unsigned int dropped = 0;
	size_t n = sl_trailer_filter_names(tr, strlen(tr), &dropped, names, 2);
	assert_int_equal(dropped, 2);
	assert_memory_equal(tr, "X-Sum: 1\r\n\r\n", n);
}

static void test_token_list(void **state)
{
	const char *v = " Keep-Alive ,  UPGRADE,close";
	assert_true(sl_token_list_has(v, strlen(v), "keep-alive", 10));
	assert_true(sl_token_list_has(v, strlen(v), "upgrade", 7));
	assert_true(sl_token_list_has(v, strlen(v), "close", 5));
	assert_false(sl_token_list_has(v, strlen(v), "keep", 4));
	assert_false(sl_token_list_has("", 0, "close", 5));
}

static void test_out_overflow(void **state)
{
	char buf[8];
	struct sl_out o;
	sl_out_init(&o, buf, sizeof(buf));
	sl_out_str(&o, "1234");
	sl_out_uint(&o, 5678);
	assert_true(o.ok);
	assert_memory_equal(buf, "12345678", 8);
	sl_out_str(&o, "9");
	assert_false(o.ok);
	assert_int_equal(o.len, 8);
}

static void test_pause_positions(void **state)
{
	/* a pipelined pair: the first pause is after the head, the second after the message */
	struct parsed p;
	memset(&p, 0, sizeof(p));
	static const char msg[] = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET";
	memcpy(p.buf, msg, sizeof(msg) - 1);
	sl_http_parser_init(&p.hp, 1, &p.head);
	sl_head_reset(&p.head, 100, 8192);
	size_t used, off = 0, len = sizeof(msg) - 1;
	assert_int_equal(sl_http_execute(&p.hp, p.buf, p.buf, len, &used), HPE_PAUSED);
	assert_true(p.hp.headers_done);
	off += used;
	assert_int_equal(off, len - 6);
	assert_int_equal(sl_http_execute(&p.hp, p.buf, p.buf + off, len - off, &used), HPE_PAUSED);
	assert_true(p.hp.message_done);
	off += used;
	assert_int_equal(off, len - 3);
	assert_int_equal(p.hp.body_seen, 3);
}

static void test_304_with_length_has_no_body(void **state)
{
	/* regression: llhttp waited for a Content-Length body after 304 */
	struct parsed p;
	memset(&p, 0, sizeof(p));
	static const char msg[] = "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n";
	memcpy(p.buf, msg, sizeof(msg) - 1);
	sl_http_parser_init(&p.hp, 0, &p.head);
	sl_head_reset(&p.head, 100, 0);
	size_t used, len = sizeof(msg) - 1;
	assert_int_equal(sl_http_execute(&p.hp, p.buf, p.buf, len, &used), HPE_PAUSED);
	assert_true(p.hp.headers_done);
	assert_int_equal(sl_http_execute(&p.hp, p.buf, p.buf + used, len - used, &used),
			 HPE_PAUSED);
	assert_true(p.hp.message_done);
}

/* Connection may not strip what frames or routes the message (request smuggling). */
static void test_connection_cannot_nominate_framing(void **state)
{
	struct parsed *p = parse("POST /public HTTP/1.1\r\nHost: a\r\n"
				 "Connection: keep-alive, Content-Length, Host, X-Gone\r\n"
				 "Content-Length: 5\r\nX-Gone: 1\r\n\r\n",
				 1, 0, 100);
	assert_int_equal(p->rc, 0);
	char out[512];
	struct sl_out o;
	sl_out_init(&o, out, sizeof(out));
	sl_out_headers(&o, &p->head, p->buf);
	out[o.len] = 0;
	assert_non_null(strstr(out, "Content-Length: 5\r\n"));
	assert_non_null(strstr(out, "Host: a\r\n"));
	assert_null(strstr(out, "X-Gone"));
	p = parse("HTTP/1.1 200 OK\r\nConnection: Content-Length\r\nContent-Length: 2\r\n\r\n", 0,
		  0, 100);
	assert_int_equal(p->rc, 0);
	sl_out_init(&o, out, sizeof(out));
	sl_out_headers(&o, &p->head, p->buf);
	out[o.len] = 0;
	assert_non_null(strstr(out, "Content-Length: 2\r\n"));
}

/* A name over SL_HDR_NAME_MAX is refused whole (it used to be cut to 16 bits). */
/* llhttp accepts an empty or 000 status code: sluice must not forward it. */
static void test_status_out_of_range(void **state)
{
	struct parsed *p = parse("HTTP/1.1 \r\nContent-Length: 0\r\n\r\n", 0, 0, 100);
	assert_int_not_equal(p->rc, 0);
	p = parse("HTTP/1.1 000 X\r\nContent-Length: 0\r\n\r\n", 0, 0, 100);
	assert_int_not_equal(p->rc, 0);
	p = parse("HTTP/1.1 099 X\r\nContent-Length: 0\r\n\r\n", 0, 0, 100);
	assert_int_not_equal(p->rc, 0);
	p = parse("HTTP/1.1 599 X\r\nContent-Length: 0\r\n\r\n", 0, 0, 100);
	assert_int_equal(p->rc, 0);
}

static void test_long_header_name(void **state)
{
	static char text[70000];
	int n = snprintf(text, sizeof(text), "GET / HTTP/1.1\r\nHost: a\r\nContent-Length");
	memset(text + n, 'x', 65536);
	n += 65536;
	n += snprintf(text + n, sizeof(text) - (size_t)n, ": 5\r\n\r\n");
	static struct sl_http_parser hp;
	static struct sl_head h;
	sl_http_parser_init(&hp, 1, &h);
	sl_head_reset(&h, 100, 8192);
	size_t used;
	llhttp_errno_t e = sl_http_execute(&hp, text, text, (size_t)n, &used);
	assert_int_not_equal(e, HPE_OK);
	assert_int_not_equal(e, HPE_PAUSED);
	assert_int_equal(h.err_status, 431);
	/* the same name split over many reads */
	sl_http_parser_init(&hp, 1, &h);
	sl_head_reset(&h, 100, 8192);
	size_t off = 0;
	while (off < (size_t)n) {
		size_t k = (size_t)n - off < 1000 ? (size_t)n - off : 1000;
		e = sl_http_execute(&hp, text, text + off, k, &used);
		off += used;
		if (e != HPE_OK)
			break;
	}
	assert_int_equal(h.err_status, 431);
}

static int line_check(const char *text)
{
	struct parsed *p = parse(text, 1, 0, 100);
	if (!p->hp.headers_done)
		return -(int)p->e;
	const char *why = NULL;
	return sl_request_line_check(&p->head, p->buf, &why);
}

static void test_request_line_grammar(void **state)
{
	assert_int_equal(line_check("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
	assert_int_equal(line_check("GET /a?b HTTP/1.0\r\n\r\n"), 0);
	assert_int_equal(line_check("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
	assert_int_equal(line_check("CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
	assert_int_equal(line_check("GET  / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
	assert_int_equal(line_check("GET /  HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
	assert_int_equal(line_check("GET /\r\n\r\n"), 400);
	assert_int_equal(line_check("GET / HTTP/0.9\r\nHost: a\r\n\r\n"), 400);
	assert_int_equal(line_check("GET / HTTP/2.0\r\nHost: a\r\n\r\n"), 505);
	assert_int_equal(line_check("GET /a#frag HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
	/* llhttp itself (built strict) refuses these; sl_request_line_check() would too */
	assert_true(line_check("GET /\tx HTTP/1.1\r\nHost: a\r\n\r\n") < 0);
	assert_true(line_check("GET / HTTP/1.2\r\nHost: a\r\n\r\n") < 0);
	assert_true(line_check("GET / HTTP/1.1 \r\nHost: a\r\n\r\n") < 0);
}

/* Parse a whole chunked request; returns the trailer section after filtering. */
static size_t chunked(char *buf, size_t len, struct sl_http_parser *hp, unsigned *dropped)
{
	static struct sl_head h;
	sl_http_parser_init(hp, 1, &h);
	sl_head_reset(&h, 100, 8192);
	size_t off = 0, used;
	while (off < len) {
		llhttp_errno_t e = sl_http_execute(hp, buf, buf + off, len - off, &used);
		off += used;
		if (e != HPE_PAUSED || hp->message_done)
			break;
	}
	if (!hp->message_done)
		return 0;
	return sl_trailer_filter(buf + hp->trailer_off, off - hp->trailer_off, dropped);
}

static void test_trailers_filtered(void **state)
{
	char buf[512];
	const char *text = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
			   "5\r\nhello\r\n0\r\nContent-Length: 99\r\nX-Sum: abc\r\nhost: b\r\n"
			   "Proxy-Foo: 1\r\n\r\n";
	size_t len = strlen(text);
	memcpy(buf, text, len);
	struct sl_http_parser hp;
	unsigned dropped = 0;
	size_t n = chunked(buf, len, &hp, &dropped);
	assert_true(hp.message_done);
	assert_int_equal(dropped, 3);
	assert_int_equal(n, strlen("X-Sum: abc\r\n\r\n"));
	assert_memory_equal(buf + hp.trailer_off, "X-Sum: abc\r\n\r\n", n);
	assert_memory_equal(buf + hp.trailer_off - 3, "0\r\n", 3);
	/* a trailer line ending in a bare LF cannot be rewritten in place: refused */
	char lf[] = "X-Sum: abc\n\r\n";
	dropped = 0;
	assert_true(sl_trailer_filter(lf, strlen(lf), &dropped) == SL_TRAILER_BAD);
	char nul[] = "X-A: 1\r\nX-B: a\0b\r\n\r\n";
	dropped = 0;
	n = sl_trailer_filter(nul, sizeof(nul) - 1, &dropped);
	assert_int_equal(dropped, 1);
	assert_memory_equal(nul, "X-A: 1\r\n\r\n", n);
	/* no trailer at all */
	text = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
	len = strlen(text);
	memcpy(buf, text, len);
	dropped = 0;
	n = chunked(buf, len, &hp, &dropped);
	assert_true(hp.message_done);
	assert_int_equal(dropped, 0);
	assert_int_equal(n, 2);
	assert_int_equal(hp.trailer_off, len - 2);
}

static void test_chunk_extension_limit(void **state)
{
	static char buf[20000];
	int n = snprintf(buf, sizeof(buf),
			 "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;a=");
	memset(buf + n, 'b', 5000);
	n += 5000;
	n += snprintf(buf + n, sizeof(buf) - (size_t)n, "\r\nhello\r\n0\r\n\r\n");
	struct sl_http_parser hp;
	unsigned dropped = 0;
	assert_int_equal(chunked(buf, (size_t)n, &hp, &dropped), 0);
	assert_false(hp.message_done);
	assert_int_equal(hp.body_err, SL_BODY_EXT_TOO_LONG);
	/* a name-only extension: llhttp 8 calls no extension callback for it */
	n = snprintf(buf, sizeof(buf),
		     "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;");
	memset(buf + n, 'e', 5000);
	n += 5000;
	n += snprintf(buf + n, sizeof(buf) - (size_t)n, "\r\nhello\r\n0\r\n\r\n");
	dropped = 0;
	assert_int_equal(chunked(buf, (size_t)n, &hp, &dropped), 0);
	assert_false(hp.message_done);
	assert_int_equal(hp.body_err, SL_BODY_EXT_TOO_LONG);
	/* leading zeros are framing too */
	n = snprintf(buf, sizeof(buf),
		     "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
	memset(buf + n, '0', 5000);
	n += 5000;
	n += snprintf(buf + n, sizeof(buf) - (size_t)n, "5\r\nhello\r\n0\r\n\r\n");
	assert_int_equal(chunked(buf, (size_t)n, &hp, &dropped), 0);
	assert_int_equal(hp.body_err, SL_BODY_EXT_TOO_LONG);
	/* forwarded as is, so it must be clean: DEL in an extension, a bare CR or LF */
	const char *dirty[] = {"5;a\x7f\r\nhello\r\n0\r\n\r\n", "5\rX\r\nhello\r\n0\r\n\r\n",
			       "5\nhello\r\n0\r\n\r\n", "5\r\nhello\n0\r\n\r\n"};
	for (unsigned i = 0; i < sizeof(dirty) / sizeof(dirty[0]); i++) {
		n = snprintf(buf, sizeof(buf),
			     "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n%s",
			     dirty[i]);
		chunked(buf, (size_t)n, &hp, &dropped);
		assert_false(hp.message_done);
	}
	/* a short one passes */
	n = snprintf(buf, sizeof(buf),
		     "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: "
		     "chunked\r\n\r\n5;a=b\r\nhello\r\n0\r\n\r\n");
	chunked(buf, (size_t)n, &hp, &dropped);
	assert_true(hp.message_done);
	assert_int_equal(hp.body_err, SL_BODY_OK);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_simple_request),
	    cmocka_unit_test(test_connection_cannot_nominate_framing),
	    cmocka_unit_test(test_long_header_name),
	    cmocka_unit_test(test_status_out_of_range),
	    cmocka_unit_test(test_request_line_grammar),
	    cmocka_unit_test(test_trailers_filtered),
	    cmocka_unit_test(test_chunk_extension_limit),
	    cmocka_unit_test(test_split_across_reads),
	    cmocka_unit_test(test_framing_rejected),
	    cmocka_unit_test(test_nul_in_value),
	    cmocka_unit_test(test_response_te_not_chunked),
	    cmocka_unit_test(test_hop_by_hop),
	    cmocka_unit_test(test_header_limit),
	    cmocka_unit_test(test_target_limit),
	    cmocka_unit_test(test_set_remove),
	    cmocka_unit_test(test_remove_gw_spellings),
	    cmocka_unit_test(test_token_list),
	    cmocka_unit_test(test_out_overflow),
	    cmocka_unit_test(test_pause_positions),
	    cmocka_unit_test(test_304_with_length_has_no_body),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
