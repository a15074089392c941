/* libFuzzer target: whole client connections (several pipelined requests) through
 * sluice's request codec, run the way user/proxy/session.c runs it, with a differential
 * oracle: the bytes sluice would forward upstream are re-parsed by an independent strict
 * parser (strict_h1.h), which must find exactly the requests the codec believes it
 * forwarded, with the same body lengths, and nothing ambiguous (CL+TE, repeated CL,
 * obs-fold, control bytes, forbidden trailers, bare CR/LF).
 *
 * Input: byte 0 picks the read size and the limits, the rest is what the client sends. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http/http.h"
#include "fuzz_common.h"
#include "strict_h1.h"

#define MAX_REQS 4096

struct lim {
	size_t step;
	uint32_t head_limit;  /* limits.max_header_bytes */
	uint64_t max_body;    /* limits.max_body_size, 0 = none */
	unsigned int max_hdr; /* limits.max_header_count */
	int xff;	      /* forwarded.* on */
};

/* What the codec believes it forwarded. */
struct seen {
	unsigned int n_done; /* complete requests forwarded */
	int aborted;	     /* the last forwarded request was cut (error or EOF) */
	uint64_t body[MAX_REQS];
};

/* build_upstream_head() of session.c, without the ops call-out: the same codec calls. */
static int upstream_head(struct sl_head *h, const char *base, const struct lim *l, int method,
			 int upgrade, struct fz_buf *out)
{
	static const char client_ip[] = "127.0.0.1";
	if (sl_head_forward(h, base, client_ip, sizeof(client_ip) - 1,
			    l->xff ? SL_FWD_FOR | SL_FWD_PROTO | SL_FWD_HOST : 0))
		return -ENOSPC;
	/* the session renders into a 4 KiB buffer, then into one of max_header_bytes */
	size_t caps[2] = {4096, l->head_limit + 4096};
	for (int i = 0; i < 2; i++) {
		char *p = malloc(caps[i]);
		struct sl_out o;
		sl_out_init(&o, p, caps[i]);
		sl_h1_render_request(&o, llhttp_method_name((llhttp_method_t)method), h, base,
				     upgrade);
		if (o.ok)
			fz_put(out, p, o.len);
		free(p);
		if (o.ok)
			return 0;
	}
	return -ENOSPC;
}

struct conn {
	const uint8_t *in;
	size_t len;
	size_t rd; /* bytes the client has delivered so far (sum of reads) */
	const struct lim *l;
};

/* One more read from the client. 0, or -1 at EOF. */
static int client_read(struct conn *c)
{
	if (c->rd == c->len)
		return -1;
	c->rd = c->len - c->rd < c->l->step ? c->len : c->rd + c->l->step;
	return 0;
}

/* One request starting at connection offset pos, the way the session runs it: the head
 * in reads, checks, the body pump, the upstream head. Returns bytes of the connection
 * the request used, or 0 when the connection ends here (error, EOF, close). */
static size_t one_request(struct conn *c, size_t pos, struct sl_http_parser *hp, struct sl_head *h,
			  struct fz_buf *out, struct seen *sn)
{
	const struct lim *l = c->l;
	size_t cap = c->len - pos;
	char *b = malloc(cap ? cap : 1); /* the session's buffer after the memmove to 0 */
	size_t parse = 0, avail = c->rd - pos, ret = 0;
	memcpy(b, c->in + pos, avail); /* then each read adds its bytes */
	llhttp_errno_t e;
	size_t used;
	const char *why = NULL;

	sl_head_reset(h, l->max_hdr, 8192);
	/* start_request(): a fresh parser per request, nothing learnt from the last one */
	sl_http_parser_init(hp, 1, h);
	/* parse_request_head() */
	for (;;) {
		if (parse == avail) {
			if (client_read(c))
				goto out; /* EOF inside a head: nothing forwarded */
			memcpy(b + avail, c->in + pos + avail, c->rd - pos - avail);
			avail = c->rd - pos;
		}
		e = sl_http_execute(hp, b, b + parse, avail - parse, &used);
		parse += used;
		if (e == HPE_PAUSED && hp->headers_done)
			break;
		if (e != HPE_OK || parse > l->head_limit)
			goto out; /* 400, 414, 431 */
	}
	if (parse > l->head_limit)
		goto out;

	/* request_head_done() */
	size_t head_end = parse;
	int keepalive = llhttp_should_keep_alive(&hp->p);
	int method = hp->p.method;
	if (sl_request_line_check(h, b, &why))
		goto out;
	if (sl_head_analyze(h, b, 1, &why))
		goto out;
	if (method == HTTP_CONNECT || sl_request_target_split(h, b, method))
		goto out; /* 405, 400 */
	if (l->max_body && h->info.has_cl && hp->p.content_length > l->max_body)
		goto out;
	int upgrade = hp->p.upgrade && h->info.has_upgrade && h->info.conn_upgrade;
	if (h->info.expect_continue)
		sl_head_remove(h, b, "expect", 6);

	/* pump_request_body(), first with what is buffered, then read by read; the head
	 * goes out once the first pump is through (connect_upstream) */
	int req_done = 0, head_sent = 0;
	uint64_t body_wire = 0; /* every body byte, chunk framing included */
	size_t fwd = parse;
	for (;;) {
		e = sl_http_execute(hp, b, b + parse, avail - parse, &used);
		parse += used;
		if (e == HPE_PAUSED && hp->message_done)
			req_done = 1;
		else if (e != HPE_OK)
			break; /* 400 */
		body_wire += used;
		if (l->max_body && body_wire > l->max_body) {
			req_done = 0; /* 413, even when this read completed it: refused */
			break;
		}
		/* bytes of a trailer section stay back until it is complete and filtered */
		size_t hold = hp->in_trailer ? hp->trailer_off : parse;
		if (req_done && hp->in_trailer) {
			unsigned int dropped = 0;
			size_t n = sl_trailer_filter(b + hp->trailer_off, parse - hp->trailer_off,
						     &dropped);
			if (n == SL_TRAILER_BAD) {
				req_done = 0; /* refused (400): what went out before is cut */
				break;
			}
			hold = hp->trailer_off + n;
		}
		if (hold > fwd)
			fwd = hold;
		if (!head_sent) {
			if (upstream_head(h, b, l, method, upgrade, out))
				goto out; /* 502 before anything went out */
			head_sent = 1;
		}
		if (req_done)
			break;
		if (client_read(c))
			break; /* EOF inside a body */
		memcpy(b + avail, c->in + pos + avail, c->rd - pos - avail);
		avail = c->rd - pos;
	}
	if (head_sent) {
		fz_put(out, b + head_end, fwd - head_end);
		if (req_done) {
			if (sn->n_done < MAX_REQS)
				sn->body[sn->n_done] = hp->body_seen;
			sn->n_done++;
		} else {
			sn->aborted = 1;
		}
	}
	/* finish_request(): another request only on a kept-alive connection */
	if (req_done && keepalive && !upgrade && sn->n_done < MAX_REQS)
		ret = parse;
out:
	free(b);
	return ret;
}

static void oracle(const struct fz_buf *out, const struct seen *sn)
{
	const uint8_t *p = (const uint8_t *)out->p;
	size_t off = 0;
	struct sh_msg m;
	for (unsigned int i = 0; i < sn->n_done; i++) {
		if (!sh_request(p, out->len, &off, &m))
			SH_BAD("codec forwarded %u requests, strict parser completes %u",
			       sn->n_done, i);
		if (m.body_len != sn->body[i])
			SH_BAD("request %u: codec body %llu bytes, strict parser %llu", i,
			       (unsigned long long)sn->body[i], (unsigned long long)m.body_len);
	}
	if (off == out->len)
		return;
	if (!sn->aborted)
		SH_BAD("%zu bytes forwarded after the last request", out->len - off);
	if (sh_request(p, out->len, &off, &m))
		SH_BAD("a request the codec cut short parses as complete");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct sl_http_parser hp;
	static struct sl_head head;
	static struct seen sn;
	if (size < 1)
		return 0;
	struct lim l = {
	    .step = fz_step(data[0] & 15, size),
	    .head_limit = data[0] & 0x10 ? 128 * 1024 : 32 * 1024,
	    .max_body = data[0] & 0x20 ? 1024 : 0,
	    .max_hdr = data[0] & 0x40 ? 256 : 100,
	    .xff = !(data[0] & 0x80),
	};
	struct conn c = {.in = data + 1, .len = size - 1, .rd = 0, .l = &l};
	struct fz_buf out = {0};
	sn.n_done = 0;
	sn.aborted = 0;
	size_t pos = 0;
	for (;;) {
		size_t n = one_request(&c, pos, &hp, &head, &out, &sn);
		if (!n)
			break;
		pos += n;
		if (c.rd < pos)
			c.rd = pos;
	}
	fz_echo(&out, "upstream");
	if (!setjmp(sh_known_jmp)) /* a known, reported violation gives the input up */
		oracle(&out, &sn);
	fz_free(&out);
	return 0;
}
