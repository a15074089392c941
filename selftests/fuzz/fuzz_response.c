/* libFuzzer target: upstream response bytes (1xx interim heads, chunked bodies with
 * extensions and trailers, HEAD/204/304, close-delimited bodies) through sluice's
 * response codec, run the way user/proxy/session.c runs it, for an HTTP/1.1 client
 * (chunked passes through) and an HTTP/1.0 client (de-chunked). Oracle: what the client
 * would receive re-parses, by the strict parser of strict_h1.h, into exactly one final
 * response with the body length the codec counted, and nothing after it.
 *
 * Input: byte 0 picks the client (1.0 or 1.1, keep-alive), HEAD or GET, the read size
 * and the head limit; the rest is what the upstream sends. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/http.h"
#include "fuzz_common.h"
#include "strict_h1.h"

enum body_mode { BM_NONE, BM_RAW, BM_DECHUNK, BM_EOF };

struct up {
	const uint8_t *in;
	size_t len, in_rd; /* upstream bytes and how many were read */
	size_t step;
	char *b; /* the session's uin buffer */
	size_t rd, fwd, parse, wr;
};

struct run {
	int client_minor, client_keep, head_req;
	uint32_t head_limit;
	struct sl_http_parser hp;
	struct sl_head h;
	struct fz_buf out;  /* bytes written to the client */
	struct fz_buf pend; /* queued in this turn, not yet flushed (s->out + uin rd..fwd) */
	int resp_started, resp_head_done, resp_done, interim, keepalive, failed;
	enum body_mode mode;
};

static int upstream_read(struct up *u)
{
	if (u->in_rd == u->len)
		return -1;
	size_t n = u->len - u->in_rd < u->step ? u->len - u->in_rd : u->step;
	memcpy(u->b + u->wr, u->in + u->in_rd, n);
	u->wr += n;
	u->in_rd += n;
	return 0;
}

/* client_flush(): the rendered head, then the body bytes rd..fwd of the buffer */
static void flush(struct run *r, struct up *u)
{
	if (u->fwd > u->rd) {
		fz_put(&r->pend, u->b + u->rd, u->fwd - u->rd);
		u->rd = u->fwd;
	}
	if (r->pend.len) {
		fz_put(&r->out, r->pend.p, r->pend.len);
		r->pend.len = 0;
		r->resp_started = 1;
	}
}

/* send_error() for a 5xx: before any byte went out the client gets sluice's own error
 * (not modelled: none of the upstream bytes reach it); after, the connection closes. */
static void fail(struct run *r, struct up *u)
{
	r->failed = 1;
	r->pend.len = 0;
	u->rd = u->fwd;
}

/* response_head() of session.c */
static int response_head(struct run *r, struct up *u)
{
	struct sl_head *h = &r->h;
	const char *why;
	int st = h->status;
	r->resp_head_done = 1;
	if (u->parse > r->head_limit)
		return -1;
	if (st >= 100 && st < 200 && st != 101) {
		r->interim = 1; /* dropped; not body */
		return 0;
	}
	if (st == 101)
		return -1; /* no upgrade was asked for */
	if (sl_head_analyze(h, u->b, 0, &why))
		return -1;
	if (r->head_req || st == 204 || st == 304)
		r->mode = BM_NONE;
	else if (h->info.chunked)
		r->mode = r->client_minor >= 1 ? BM_RAW : BM_DECHUNK;
	else if (h->info.has_cl)
		r->mode = BM_RAW;
	else
		r->mode = BM_EOF;
	if (r->mode == BM_EOF || r->mode == BM_DECHUNK)
		r->keepalive = 0;
	r->hp.dechunk = r->mode == BM_DECHUNK;
	enum sl_h1_conn conn = !r->keepalive	      ? SL_H1_CLOSE
			       : r->client_minor == 0 ? SL_H1_KEEP_10
						      : SL_H1_KEEP;
	size_t caps[2] = {4096, r->head_limit + 4096};
	for (int i = 0; i < 2; i++) {
		char *p = malloc(caps[i]);
		struct sl_out o;
		sl_out_init(&o, p, caps[i]);
		sl_h1_render_response(&o, st, h, u->b, r->mode == BM_RAW && h->info.chunked, conn);
		if (o.ok)
			fz_put(&r->pend, p, o.len);
		free(p);
		if (o.ok) {
			u->rd = u->fwd = u->parse;
			return 0;
		}
	}
	return -1;
}

/* parse_response() of session.c. 0 when it wants more bytes, 1 done, -1 failed. */
static int parse_response(struct run *r, struct up *u)
{
	struct sl_http_parser *hp = &r->hp;
	while (!r->resp_done) {
		size_t used;
		if (hp->dechunk)
			hp->dechunk_wr = u->b + u->fwd;
		llhttp_errno_t e =
		    sl_http_execute(hp, u->b, u->b + u->parse, u->wr - u->parse, &used);
		u->parse += used;
		if (e != HPE_OK && e != HPE_PAUSED)
			return -1;
		if (r->resp_head_done && !r->interim) {
			if (hp->dechunk) {
				u->fwd = (size_t)(hp->dechunk_wr - u->b);
				hp->in_trailer = 0; /* an HTTP/1.0 client gets no trailers */
			} else {
				/* a trailer section stays back until it is complete and filtered */
				size_t hold = hp->in_trailer ? hp->trailer_off : u->parse;
				if (hp->message_done && hp->in_trailer) {
					unsigned int dropped = 0;
					size_t n =
					    sl_trailer_filter(u->b + hp->trailer_off,
							      u->parse - hp->trailer_off, &dropped);
					if (n == SL_TRAILER_BAD)
						return -1; /* 502, as the session does */
					hold = hp->trailer_off + n;
				}
				if (hold > u->fwd)
					u->fwd = hold;
			}
		}
		if (e == HPE_OK) {
			if (!r->resp_head_done && u->wr > r->head_limit)
				return -1;
			return 0;
		}
		if (hp->headers_done && !r->resp_head_done) {
			if (response_head(r, u))
				return -1;
			continue;
		}
		if (hp->message_done) {
			if (r->interim) {
				size_t left = u->wr - u->parse;
				memmove(u->b, u->b + u->parse, left);
				u->rd = u->fwd = u->parse = 0;
				u->wr = left;
				r->resp_head_done = 0;
				r->interim = 0;
				int skip = hp->skip_body;
				sl_http_parser_next(hp);
				hp->skip_body = (uint8_t)skip;
				sl_head_reset(&r->h, SL_HDR_MAX, 0);
				continue;
			}
			r->resp_done = 1;
		}
	}
	return 1;
}

static void oracle(struct run *r, int complete)
{
	const uint8_t *p = (const uint8_t *)r->out.p;
	size_t off = 0;
	struct sh_msg m;
	int got = sh_response(p, r->out.len, &off, r->head_req, &m);
	if (!r->out.len)
		return;
	if (got && m.status < 200)
		SH_BAD("interim response %d forwarded to the client", m.status);
	if (r->client_minor == 0 && m.chunked)
		SH_BAD("chunked response to an HTTP/1.0 client");
	if (got && m.close_delimited && !m.conn_close)
		SH_BAD("close-delimited body without Connection: close");
	if (!complete) {
		/* cut short: the client must be able to tell, unless the body was
		 * close-delimited anyway (as nginx does for an HTTP/1.0 client) */
		if (got && !m.close_delimited)
			SH_BAD("a response the codec cut short parses as complete");
		return;
	}
	if (!got)
		SH_BAD("the final response does not parse as complete");
	if (off != r->out.len)
		SH_BAD("%zu bytes after the final response", r->out.len - off);
	if (m.body_len != r->hp.body_seen)
		SH_BAD("codec body %llu bytes, strict parser %llu",
		       (unsigned long long)r->hp.body_seen, (unsigned long long)m.body_len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct run r;
	if (size < 1)
		return 0;
	memset(&r.out, 0, sizeof(r.out));
	memset(&r.pend, 0, sizeof(r.pend));
	r.client_minor = data[0] & 1 ? 0 : 1;
	r.client_keep = r.client_minor == 1 || (data[0] & 4);
	r.head_req = !!(data[0] & 2);
	r.head_limit = data[0] & 0x80 ? 128 * 1024 : 32 * 1024;
	r.resp_started = r.resp_head_done = r.resp_done = r.interim = r.failed = 0;
	r.keepalive = r.client_keep;
	r.mode = BM_NONE;
	struct up u = {.in = data + 1, .len = size - 1, .step = fz_step((data[0] >> 3) & 15, size)};
	u.b = malloc(u.len ? u.len : 1);

	sl_http_parser_init(&r.hp, 0, &r.h);
	sl_head_reset(&r.h, SL_HDR_MAX, 0);
	r.hp.skip_body = (uint8_t)r.head_req;
	int complete = 0;
	for (;;) {
		if (upstream_read(&u)) {
			/* up_eof() */
			if (r.resp_head_done && r.mode == BM_EOF) {
				llhttp_finish(&r.hp.p);
				flush(&r, &u);
				complete = 1;
			}
			break;
		}
		int st = parse_response(&r, &u);
		if (st < 0) {
			fail(&r, &u);
			break;
		}
		flush(&r, &u);
		if (st > 0) {
			complete = 1;
			break;
		}
	}
	fz_echo(&r.out, r.failed && !r.resp_started ? "client (replaced by a 502)" : "client");
	if ((r.resp_started || !r.failed) && !setjmp(sh_known_jmp))
		oracle(&r, complete);
	fz_free(&r.out);
	fz_free(&r.pend);
	free(u.b);
	return 0;
}
