/* phase_proxy: a custom proxy that misuses the public ops API on request, for the
 * integration tests (selftests/integration/test_phase_api.py) under the ASan build.
 *
 * Request headers choose what it does; without them it proxies to the upstream named
 * "default" and only observes:
 *   X-Phase: request_filter | upstream_peer | upstream_request_filter | response_filter |
 *            request_body_filter | response_body_filter | fail_to_connect |
 *            error_response | logging
 *            the phase that calls sl_respond() (body filters: on their first call)
 *   X-Return: 0 | done | retry | neg   what that phase returns afterwards (default done)
 *   X-Body: static | stack | heap-freed | big   where the body lives:
 *            static      a string constant
 *            stack       64 KiB on the stack, overwritten right after sl_respond() returns
 *            heap-freed  64 KiB malloc'ed, overwritten and freed after sl_respond()
 *            big         1 MiB malloc'ed, overwritten and freed (the write is short and
 *                        completes later)
 *            The bytes are pattern(n): the offset of every 16-byte line as "%015x\n".
 *   X-Status: N        the status given to sl_respond() (default 203)
 *   X-CType: bad|none  a content type with CR/LF in it, or NULL
 *   X-Twice: 1         call sl_respond() a second time (its code: rc2=)
 *   X-Null: 1          also call sl_respond(NULL, ...) in request_filter (rc_null=)
 *   X-Id: NAME         names the request in the report lines
 *   X-Echo: NAME       request_filter copies sl_req_header(NAME) into X-Echoed (or
 *                      "(none)"), for the upstream to see what a filter read
 *
 * Every sl_respond() call is reported on stderr as one line
 *   phase_proxy: id=NAME phase=PHASE rc=N      (rc2= for X-Twice, rc_null= for X-Null)
 *
 * Access log fields (written in the logging phase, where sl_log_field is meant to be
 * used): phase= rc= rc2= rc_null= err_status= (the status error_response was given),
 * qbf_calls= qbf_bytes= qbf_end= and rbf_calls= rbf_bytes= rbf_end= (request/response
 * body filter calls, bytes and calls with end=1), stale_ctx=N once N phase calls on this
 * worker got the context of a request that had already been logged (it must be fresh). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sluice/sluice.h"

#define SMALL_BODY (64 * 1024)
#define BIG_BODY (1024 * 1024)
#define NO_RC 1000 /* not called */

enum phase {
	P_NONE,
	P_REQUEST_FILTER,
	P_UPSTREAM_PEER,
	P_UPSTREAM_REQUEST_FILTER,
	P_RESPONSE_FILTER,
	P_REQUEST_BODY_FILTER,
	P_RESPONSE_BODY_FILTER,
	P_FAIL_TO_CONNECT,
	P_ERROR_RESPONSE,
	P_LOGGING,
	P_MAX,
};

static const char *const phase_names[P_MAX] = {
    [P_NONE] = "none",
    [P_REQUEST_FILTER] = "request_filter",
    [P_UPSTREAM_PEER] = "upstream_peer",
    [P_UPSTREAM_REQUEST_FILTER] = "upstream_request_filter",
    [P_RESPONSE_FILTER] = "response_filter",
    [P_REQUEST_BODY_FILTER] = "request_body_filter",
    [P_RESPONSE_BODY_FILTER] = "response_body_filter",
    [P_FAIL_TO_CONNECT] = "fail_to_connect",
    [P_ERROR_RESPONSE] = "error_response",
    [P_LOGGING] = "logging",
};

enum body_mode { B_STATIC, B_STACK, B_HEAP_FREED, B_BIG };

struct phase_ctx {
	int parsed; /* request_filter read the headers */
	int logged; /* the logging phase ran: this context is finished */
	int stale;
	enum phase phase;
	int ret; /* what the responding phase returns */
	enum body_mode body;
	int status;
	int ctype; /* 0 text/plain, 1 with CR/LF, 2 NULL */
	int twice, null_s;
	char id[48]; /* X-Id, to name the request in the report lines */
	int called;
	int rc, rc2, rc_null;
	int err_status;
	const struct sl_conf_upstream *up;
	unsigned long qbf_calls, qbf_bytes, qbf_end;
	unsigned long rbf_calls, rbf_bytes, rbf_end;
};

/* Header value as a NUL-terminated string in buf; 0 or -ENOENT. */
static int header(struct sl_session *s, const char *name, char *buf, size_t size)
{
	const char *v;
	size_t len;
	if (sl_req_header(s, name, &v, &len))
		return -ENOENT;
	if (len >= size)
		len = size - 1;
	memcpy(buf, v, len);
	buf[len] = 0;
	return 0;
}

static void parse(struct sl_session *s, struct phase_ctx *c)
{
	char v[64];
	c->parsed = 1;
	c->rc = c->rc2 = c->rc_null = NO_RC;
	c->ret = SL_DONE;
	c->status = 203;
	if (!header(s, "X-Phase", v, sizeof(v)))
		for (int i = 1; i < P_MAX; i++)
			if (!strcmp(v, phase_names[i]))
				c->phase = (enum phase)i;
	if (!header(s, "X-Return", v, sizeof(v))) {
		if (!strcmp(v, "0"))
			c->ret = 0;
		else if (!strcmp(v, "retry"))
			c->ret = SL_RETRY;
		else if (!strcmp(v, "neg"))
			c->ret = -EIO;
	}
	if (!header(s, "X-Body", v, sizeof(v))) {
		if (!strcmp(v, "stack"))
			c->body = B_STACK;
		else if (!strcmp(v, "heap-freed"))
			c->body = B_HEAP_FREED;
		else if (!strcmp(v, "big"))
			c->body = B_BIG;
	}
	if (!header(s, "X-Status", v, sizeof(v)))
		c->status = atoi(v);
	if (!header(s, "X-CType", v, sizeof(v)))
		c->ctype = !strcmp(v, "bad") ? 1 : !strcmp(v, "none") ? 2 : 0;
	c->twice = !header(s, "X-Twice", v, sizeof(v)) && !strcmp(v, "1");
	c->null_s = !header(s, "X-Null", v, sizeof(v)) && !strcmp(v, "1");
	if (header(s, "X-Id", c->id, sizeof(c->id)))
		strcpy(c->id, "-");
}

/* One stderr line per sl_respond() outcome. The access log cannot carry it reliably:
 * a request answered at once may be logged inside sl_respond(), before its code is
 * known. One write() so lines of concurrent requests do not interleave. */
static void report(const struct phase_ctx *c, const char *phase, const char *key, int rc)
{
	char line[160];
	int n = snprintf(line, sizeof(line), "phase_proxy: id=%s phase=%s %s=%d\n", c->id, phase,
			 key, rc);
	if (n > 0 && (size_t)n < sizeof(line) && write(STDERR_FILENO, line, (size_t)n) < 0)
		return; /* nothing better to do with a failed report */
}

static void fill_pattern(char *p, size_t n)
{
	char line[32]; /* 16 used: offsets stay below 2^60 */
	for (size_t i = 0; i < n; i += 16) {
		snprintf(line, sizeof(line), "%015zx\n", i);
		memcpy(p + i, line, n - i < 16 ? n - i : 16);
	}
}

/* Overwrite a buffer the compiler would otherwise consider dead. */
static void clobber(char *p, size_t n, int byte)
{
	memset(p, byte, n);
	__asm__ __volatile__("" : : "r"(p) : "memory");
}

static int respond(struct sl_session *s, const struct phase_ctx *c, const char *body, size_t len)
{
	static const char *const ctypes[] = {"text/plain", "text/plain\r\nX-Injected: yes", NULL};
	return sl_respond(s, c->status, ctypes[c->ctype], body, len);
}

/* Answer from the current phase the way the headers asked. */
static void answer(struct sl_session *s, struct phase_ctx *c)
{
	static const char fixed[] = "answered by phase_proxy\n";
	char stack[SMALL_BODY];
	char *heap;
	size_t n;

	c->called = 1;
	switch (c->body) {
	case B_STATIC:
		c->rc = respond(s, c, fixed, sizeof(fixed) - 1);
		if (c->twice)
			c->rc2 = respond(s, c, fixed, sizeof(fixed) - 1);
		break;
	case B_STACK:
		fill_pattern(stack, sizeof(stack));
		c->rc = respond(s, c, stack, sizeof(stack));
		if (c->twice)
			c->rc2 = respond(s, c, stack, sizeof(stack));
		clobber(stack, sizeof(stack), 'X');
		break;
	case B_HEAP_FREED:
	case B_BIG:
		n = c->body == B_BIG ? BIG_BODY : SMALL_BODY;
		heap = malloc(n);
		if (!heap) {
			c->rc = -ENOMEM;
			break;
		}
		fill_pattern(heap, n);
		c->rc = respond(s, c, heap, n);
		if (c->twice)
			c->rc2 = respond(s, c, heap, n);
		clobber(heap, n, 0);
		free(heap);
		break;
	}
	report(c, phase_names[c->phase], "rc", c->rc);
	if (c->twice)
		report(c, phase_names[c->phase], "rc2", c->rc2);
}

/* Phases that got a finished request's context, on this worker. Kept outside the
 * context because the core may zero the context after such a call. */
static __thread unsigned long stale_calls;

/* The context must belong to this request: one whose logging phase ran is stale. */
static int stale(struct phase_ctx *c)
{
	if (c->logged) {
		c->stale = 1;
		stale_calls++;
	}
	return c->stale;
}

static int phase_request_filter(struct sl_session *s, void *ctx)
{
	struct phase_ctx *c = ctx;
	stale(c);
	parse(s, c);
	c->up = sl_upstream_find(s, "default");
	if (c->null_s) {
		static const char b[] = "x";
		c->rc_null = sl_respond(NULL, 200, "text/plain", b, 1);
		report(c, "request_filter", "rc_null", c->rc_null);
	}
	const char *v;
	size_t vl;
	if (sl_req_header(s, "X-Edit-Framing", &v, &vl) == 0) {
		/* careless on purpose: a filter that strips or adds framing headers */
		report(c, "request_filter", "rc_rm_cl", sl_req_header_remove(s, "Content-Length"));
		report(c, "request_filter", "rc_set_te",
		       sl_req_header_set(s, "Transfer-Encoding", "chunked"));
		report(c, "request_filter", "rc_set_host", sl_req_header_set(s, "Host", "edited"));
	}
	char name[64], val[256];
	if (!header(s, "X-Echo", name, sizeof(name)))
		sl_req_header_set(s, "X-Echoed",
				  header(s, name, val, sizeof(val)) ? "(none)" : val);
	if (c->phase == P_REQUEST_FILTER) {
		answer(s, c);
		return c->ret;
	}
	return 0;
}

static int phase_upstream_peer(struct sl_session *s, void *ctx, struct sl_peer *peer)
{
	struct phase_ctx *c = ctx;
	if (stale(c) || !c->up)
		return -ENOENT;
	/* careless on purpose: the peer is filled in before answering */
	int r = sl_upstream_pick(s, c->up, peer);
	if (c->phase == P_UPSTREAM_PEER && !c->called) {
		answer(s, c);
		return c->ret;
	}
	return r;
}

static int phase_upstream_request_filter(struct sl_session *s, void *ctx)
{
	struct phase_ctx *c = ctx;
	if (!stale(c) && c->phase == P_UPSTREAM_REQUEST_FILTER && !c->called) {
		answer(s, c);
		return c->ret;
	}
	return 0;
}

static int phase_response_filter(struct sl_session *s, void *ctx)
{
	struct phase_ctx *c = ctx;
	if (!stale(c) && c->phase == P_RESPONSE_FILTER && !c->called) {
		answer(s, c);
		return c->ret;
	}
	return 0;
}

static int phase_request_body_filter(struct sl_session *s, void *ctx, const char *data, size_t len,
				     int end)
{
	struct phase_ctx *c = ctx;
	stale(c);
	c->qbf_calls++;
	c->qbf_bytes += len;
	c->qbf_end += end != 0;
	if (c->phase == P_REQUEST_BODY_FILTER && !c->called) {
		answer(s, c);
		return c->ret;
	}
	return 0;
}

static int phase_response_body_filter(struct sl_session *s, void *ctx, const char *data, size_t len,
				      int end)
{
	struct phase_ctx *c = ctx;
	stale(c);
	c->rbf_calls++;
	c->rbf_bytes += len;
	c->rbf_end += end != 0;
	if (c->phase == P_RESPONSE_BODY_FILTER && !c->called) {
		answer(s, c);
		return c->ret;
	}
	return 0;
}

static int phase_fail_to_connect(struct sl_session *s, void *ctx, const struct sl_peer *peer,
				 int err)
{
	struct phase_ctx *c = ctx;
	if (!stale(c) && c->phase == P_FAIL_TO_CONNECT && !c->called) {
		answer(s, c);
		return c->ret;
	}
	return 0;
}

static int phase_error_response(struct sl_session *s, void *ctx, int status)
{
	struct phase_ctx *c = ctx;
	if (stale(c))
		return 0;
	c->err_status = status;
	if (c->phase == P_ERROR_RESPONSE && !c->called) {
		answer(s, c);
		return c->ret;
	}
	return 0;
}

static void log_int(struct sl_session *s, const char *key, long v)
{
	char buf[24];
	snprintf(buf, sizeof(buf), "%ld", v);
	sl_log_field(s, key, buf);
}

static void phase_logging(struct sl_session *s, void *ctx, int status)
{
	struct phase_ctx *c = ctx;
	stale(c);
	if (c->phase == P_LOGGING && !c->called)
		answer(s, c);
	sl_log_field(s, "phase", phase_names[c->phase]);
	if (c->rc != NO_RC)
		log_int(s, "rc", c->rc);
	if (c->rc2 != NO_RC)
		log_int(s, "rc2", c->rc2);
	if (c->rc_null != NO_RC)
		log_int(s, "rc_null", c->rc_null);
	if (c->err_status)
		log_int(s, "err_status", c->err_status);
	if (c->stale || stale_calls)
		log_int(s, "stale_ctx", (long)stale_calls);
	log_int(s, "qbf_calls", (long)c->qbf_calls);
	log_int(s, "qbf_bytes", (long)c->qbf_bytes);
	log_int(s, "qbf_end", (long)c->qbf_end);
	log_int(s, "rbf_calls", (long)c->rbf_calls);
	log_int(s, "rbf_bytes", (long)c->rbf_bytes);
	log_int(s, "rbf_end", (long)c->rbf_end);
	c->logged = 1;
}

static const struct sl_proxy_ops phase_ops = {
    .ctx_size = sizeof(struct phase_ctx),
    .request_filter = phase_request_filter,
    .upstream_peer = phase_upstream_peer,
    .upstream_request_filter = phase_upstream_request_filter,
    .response_filter = phase_response_filter,
    .request_body_filter = phase_request_body_filter,
    .response_body_filter = phase_response_body_filter,
    .fail_to_connect = phase_fail_to_connect,
    .error_response = phase_error_response,
    .logging = phase_logging,
};

int main(int argc, char **argv)
{
	return sl_main(argc, argv, &phase_ops);
}
