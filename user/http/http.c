/* HTTP/1.1 heads on top of llhttp: collection, framing checks, rewriting. */
#include <ctype.h>
#include <errno.h>
#include <string.h>
#include <strings.h>

#include "http/http.h"

/* Hop-by-hop headers (RFC 9110 7.6.1) are flagged SL_HDR_HOP by sl_head_analyze():
 * Connection and the names it lists, Keep-Alive, Proxy-Connection, TE, Trailer,
 * Transfer-Encoding and Upgrade. The proxy regenerates the ones it needs. */

static struct sl_http_parser *hp_of(llhttp_t *p)
{
	return (struct sl_http_parser *)p;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
	struct sl_http_parser *hp = hp_of(p);
	struct sl_head *h = hp->head;
	if (!h->target_len)
		h->target_off = (uint32_t)(at - hp->base);
	h->target_len += (uint32_t)len;
	if (h->target_len > h->target_max) {
		h->err_status = 414;
		return -1;
	}
	return 0;
}

static int on_method(llhttp_t *p, const char *at, size_t len)
{
	struct sl_http_parser *hp = hp_of(p);
	struct sl_head *h = hp->head;
	if (!h->method_len)
		h->method_off = (uint32_t)(at - hp->base);
	h->method_len += (uint32_t)len;
	return 0;
}

static int on_version(llhttp_t *p, const char *at, size_t len)
{
	struct sl_http_parser *hp = hp_of(p);
	struct sl_head *h = hp->head;
	if (!h->version_len)
		h->version_off = (uint32_t)(at - hp->base);
	h->version_len += (uint32_t)len;
	return 0;
}

/* Trailer fields are not stored in the head (the head has been sent by then); their
 * bytes stay in the buffer for sl_trailer_filter(). Only their size is bounded. */
static int trailer_bytes(struct sl_http_parser *hp, size_t len)
{
	hp->trailer_len += (uint32_t)(len < SL_TRAILER_MAX ? len : SL_TRAILER_MAX);
	if (hp->trailer_len >= SL_TRAILER_MAX) {
		hp->body_err = SL_BODY_TRAILER_TOO_BIG;
		return -1;
	}
	return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
	struct sl_http_parser *hp = hp_of(p);
	struct sl_head *h = hp->head;
	if (hp->headers_done)
		return trailer_bytes(hp, len);
	if (!h->in_value && h->n && h->h[h->n - 1].value_len == 0 &&
	    h->h[h->n - 1].value_off == UINT32_MAX) {
		/* continuation of a name split across two reads */
		struct sl_hdr *x = &h->h[h->n - 1];
		if (x->name_len + len > SL_HDR_NAME_MAX) {
			h->err_status = 431;
			return -1;
		}
		x->name_len += (uint32_t)len;
		return 0;
	}
	if (h->n >= h->max || len > SL_HDR_NAME_MAX) {
		h->err_status = 431;
		return -1;
	}
	struct sl_hdr *x = &h->h[h->n++];
	x->name_off = (uint32_t)(at - hp->base);
	x->name_len = (uint32_t)len;
	x->value_off = UINT32_MAX; /* "name still open" until on_header_field_complete */
	x->value_len = 0;
	x->flags = 0;
	h->in_value = 0;
	return 0;
}

static int on_header_field_complete(llhttp_t *p)
{
	struct sl_http_parser *hp = hp_of(p);
	if (hp->headers_done)
		return 0;
	hp->head->h[hp->head->n - 1].value_off = 0;
	return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
	struct sl_http_parser *hp = hp_of(p);
	struct sl_head *h = hp->head;
	if (hp->headers_done)
		return trailer_bytes(hp, len);
	struct sl_hdr *x = &h->h[h->n - 1];
	uint32_t off = (uint32_t)(at - hp->base);
	if (!h->in_value) {
		x->value_off = off;
		x->value_len = 0;
		h->in_value = 1;
	} else if (off != x->value_off + x->value_len) {
		/* llhttp hands an obs-folded line over as a second, detached span */
		h->err_status = 400;
		return -1;
	}
	x->value_len += (uint32_t)len;
	return 0;
}

static int on_header_value_complete(llhttp_t *p)
{
	hp_of(p)->head->in_value = 0;
	return 0;
}

/* After each chunk-size line. The last chunk pauses the parser so that
 * sl_http_execute() can note where the trailer section starts. */
static int on_chunk_header(llhttp_t *p)
{
	struct sl_http_parser *hp = hp_of(p);
	if (p->content_length == 0) {
		hp->in_trailer = 1;
		hp->mark_trailer = 1;
		return HPE_PAUSED;
	}
	return 0;
}

static int on_headers_complete(llhttp_t *p)
{
	struct sl_http_parser *hp = hp_of(p);
	struct sl_head *h = hp->head;
	h->http_major = p->http_major;
	h->http_minor = p->http_minor;
	h->status = p->status_code;
	h->ll_chunked = (p->flags & F_CHUNKED) != 0;
	h->ll_cl = (p->flags & F_CONTENT_LENGTH) != 0;
	hp->headers_done = 1;
	/* responses to HEAD, and 1xx, 204 and 304, have no body whatever their
	 * Content-Length says (RFC 9112 6.3); llhttp leaves that to the caller */
	if (hp->skip_body ||
	    (p->type == HTTP_RESPONSE &&
	     ((p->status_code >= 100 && p->status_code < 200 && p->status_code != 101) ||
	      p->status_code == 204 || p->status_code == 304)))
		p->flags |= F_SKIPBODY;
	return HPE_PAUSED;
}

/* Bytes of framing between two pieces of data (or before the first) on one chunk line.
 * 0, or -1 with body_err set when the run is too long. */
static int framing_run(struct sl_http_parser *hp, const char *upto)
{
	/* what is forwarded as is must be clean, whatever llhttp let through: no control
	 * or non-ASCII bytes, CR only before LF, LF only after CR */
	for (const char *q = hp->frame_from; q < upto; q++) {
		unsigned char ch = (unsigned char)*q;
		if (ch == '\n' && hp->frame_cr) {
			hp->frame_cr = 0;
			continue;
		}
		if (hp->frame_cr || ch == '\n' || (ch < ' ' && ch != '\t' && ch != '\r') ||
		    ch >= 0x7f) {
			hp->body_err = SL_BODY_BAD_FRAMING;
			return -1;
		}
		hp->frame_cr = ch == '\r';
	}
	hp->framing += (uint32_t)(upto - hp->frame_from);
	hp->frame_from = upto;
	if (hp->framing > SL_CHUNK_LINE_MAX) {
		hp->body_err = SL_BODY_EXT_TOO_LONG;
		return -1;
	}
	return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
	struct sl_http_parser *hp = hp_of(p);
	if (hp->frame_from && framing_run(hp, at))
		return -1;
	hp->framing = 0;
	hp->frame_from = at + len;
	hp->body_seen += len;
	if (hp->tap)
		hp->tap(hp->tap_ctx, at, len);
	if (hp->dechunk) {
		if (hp->dechunk_wr != at)
			memmove(hp->dechunk_wr, at, len);
		hp->dechunk_wr += len;
	}
	return 0;
}

static int on_message_complete(llhttp_t *p)
{
	hp_of(p)->message_done = 1;
	return HPE_PAUSED;
}

static llhttp_settings_t req_settings, resp_settings;

static void settings_init(llhttp_settings_t *s, int is_request)
{
	llhttp_settings_init(s);
	if (is_request) {
		s->on_url = on_url;
		s->on_method = on_method;
		s->on_version = on_version;
	}
	s->on_chunk_header = on_chunk_header;
	s->on_header_field = on_header_field;
	s->on_header_field_complete = on_header_field_complete;
	s->on_header_value = on_header_value;
	s->on_header_value_complete = on_header_value_complete;
	s->on_headers_complete = on_headers_complete;
	s->on_body = on_body;
	s->on_message_complete = on_message_complete;
}

void sl_http_parser_init(struct sl_http_parser *hp, int is_request, struct sl_head *head)
{
	static int ready;
	if (!__atomic_load_n(&ready, __ATOMIC_ACQUIRE)) {
		/* idempotent: two threads racing here write the same bytes */
		settings_init(&req_settings, 1);
		settings_init(&resp_settings, 0);
		__atomic_store_n(&ready, 1, __ATOMIC_RELEASE);
	}
	llhttp_init(&hp->p, is_request ? HTTP_REQUEST : HTTP_RESPONSE,
		    is_request ? &req_settings : &resp_settings);
	hp->head = head;
	sl_http_parser_next(hp);
}

void sl_http_parser_next(struct sl_http_parser *hp)
{
	hp->body_seen = 0;
	hp->headers_done = 0;
	hp->message_done = 0;
	hp->dechunk = 0;
	hp->skip_body = 0;
	hp->in_trailer = 0;
	hp->body_err = SL_BODY_OK;
	hp->mark_trailer = 0;
	hp->trailer_off = 0;
	hp->trailer_len = 0;
	hp->framing = 0;
	hp->frame_cr = 0;
	hp->frame_from = NULL;
	hp->dechunk_wr = NULL;
	hp->tap = NULL;
}

void sl_head_reset(struct sl_head *h, unsigned int max_headers, uint32_t target_max)
{
	h->method_off = h->method_len = 0;
	h->target_off = h->target_len = 0;
	h->path_off = h->path_len = 0;
	h->authority_off = h->authority_len = 0;
	h->version_off = h->version_len = 0;
	h->status = 0;
	h->in_value = 0;
	h->too_many = 0;
	h->n = 0;
	h->max = max_headers > SL_HDR_MAX ? SL_HDR_MAX : (uint16_t)max_headers;
	h->target_max = target_max;
	h->err_status = 0;
	h->ll_chunked = h->ll_cl = 0;
	h->xlen = 0;
	memset(&h->info, 0, sizeof(h->info));
}

llhttp_errno_t sl_http_execute(struct sl_http_parser *hp, const char *base, const char *data,
			       size_t len, size_t *used)
{
	size_t done = 0;
	hp->base = base;
	for (;;) {
		/* count framing only in a body: the head's bytes are not framing */
		int in_body = hp->headers_done && !hp->message_done && !hp->in_trailer;
		hp->frame_from = in_body ? data + done : NULL;
		llhttp_errno_t e = llhttp_execute(&hp->p, data + done, len - done);
		if (e == HPE_OK) {
			*used = len;
			if (in_body && hp->frame_from && framing_run(hp, data + len))
				return HPE_USER;
			hp->frame_from = NULL;
			return e;
		}
		if (e != HPE_PAUSED && e != HPE_PAUSED_UPGRADE) {
			*used = done;
			hp->frame_from = NULL;
			return e;
		}
		done = (size_t)(llhttp_get_error_pos(&hp->p) - data);
		if (in_body && hp->frame_from && framing_run(hp, data + done)) {
			*used = done;
			return HPE_USER;
		}
		hp->frame_from = NULL;
		if (e == HPE_PAUSED_UPGRADE) {
			llhttp_resume_after_upgrade(&hp->p);
			*used = done;
			return e;
		}
		llhttp_resume(&hp->p);
		if (!hp->mark_trailer) {
			*used = done;
			return e;
		}
		/* the last chunk: remember where the trailer section starts, go on */
		hp->mark_trailer = 0;
		hp->trailer_off = (uint32_t)(data + done - base);
	}
}

static int name_is(const char *n, size_t nlen, const char *lit, size_t litlen)
{
	return nlen == litlen && !strncasecmp(n, lit, litlen);
}

/* RFC 9110 tchar */
static int is_token(const char *s, size_t n)
{
	static const char ok[256] = {
	    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1, ['+'] = 1,
	    ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1,  ['~'] = 1, ['0'] = 1,
	    ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1,  ['7'] = 1, ['8'] = 1,
	    ['9'] = 1, ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1,  ['F'] = 1, ['G'] = 1,
	    ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1,  ['N'] = 1, ['O'] = 1,
	    ['P'] = 1, ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1,  ['V'] = 1, ['W'] = 1,
	    ['X'] = 1, ['Y'] = 1, ['Z'] = 1, ['a'] = 1, ['b'] = 1, ['c'] = 1,  ['d'] = 1, ['e'] = 1,
	    ['f'] = 1, ['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1,  ['l'] = 1, ['m'] = 1,
	    ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1,  ['t'] = 1, ['u'] = 1,
	    ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1,
	};
	if (!n)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!ok[(unsigned char)s[i]])
			return 0;
	return 1;
}

int sl_token_list_has(const char *v, size_t len, const char *tok, size_t tok_len)
{
	size_t i = 0;
	while (i < len) {
		while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
			i++;
		size_t s = i;
		while (i < len && v[i] != ',')
			i++;
		size_t e = i;
		while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
			e--;
		if (name_is(v + s, e - s, tok, tok_len))
			return 1;
	}
	return 0;
}

/* Last comma-separated coding of a Transfer-Encoding value is "chunked"? */
static int te_ends_chunked(const char *v, size_t len)
{
	while (len && (v[len - 1] == ' ' || v[len - 1] == '\t'))
		len--;
	size_t s = len;
	while (s && v[s - 1] != ',')
		s--;
	while (s < len && (v[s] == ' ' || v[s] == '\t'))
		s++;
	return name_is(v + s, len - s, "chunked", 7);
}

/* Each comma-separated coding of Transfer-Encoding is a token (forwarded as they are
 * when they come before chunked). Empty list elements are allowed (RFC 9110 5.6.1). */
static int te_codings_valid(const struct sl_head *h, const char *base)
{
	const struct sl_hdr *x = &h->h[h->info.te_idx];
	const char *v = base + x->value_off;
	size_t i = 0, n = x->value_len;
	while (i < n) {
		while (i < n && (v[i] == ' ' || v[i] == '\t'))
			i++;
		size_t st = i;
		while (i < n && v[i] != ',')
			i++;
		size_t e = i;
		while (e > st && (v[e - 1] == ' ' || v[e - 1] == '\t'))
			e--;
		if (e > st && !is_token(v + st, e - st))
			return 0;
		i++; /* the comma */
	}
	return 1;
}

static int conn_may_nominate(const char *n, size_t nl)
{
	return !name_is(n, nl, "content-length", 14) && !name_is(n, nl, "transfer-encoding", 17) &&
	       !name_is(n, nl, "host", 4);
}

int sl_head_analyze(struct sl_head *h, const char *base, int is_request, const char **why)
{
	struct sl_head_info *in = &h->info;
	const char *cl_val = NULL;
	size_t cl_len = 0;
	memset(in, 0, sizeof(*in));
	in->host_idx = in->xff_idx = in->upgrade_idx = in->te_idx = -1;

	for (unsigned int i = 0; i < h->n; i++) {
		struct sl_hdr *x = &h->h[i];
		const char *n = base + x->name_off;
		const char *v = base + x->value_off;
		size_t nl = x->name_len, vl = x->value_len;

		/* llhttp refuses most control bytes in values; NUL, CR and LF are checked
		 * again here, and names must be tokens ("Host :" is accepted by llhttp). */
		if (memchr(v, '\r', vl) || memchr(v, '\n', vl) || memchr(v, '\0', vl)) {
			*why = "control character in header value";
			return -EPROTO;
		}
		if (!is_token(n, nl)) {
			*why = "invalid header name";
			return -EPROTO;
		}
		switch (nl) {
		case 4:
			if (name_is(n, nl, "host", 4)) {
				if (in->host_idx >= 0) {
					*why = "repeated Host";
					return -EPROTO;
				}
				in->host_idx = (int)i;
			}
			break;
		case 6:
			if (name_is(n, nl, "expect", 6) &&
			    sl_token_list_has(v, vl, "100-continue", 12))
				in->expect_continue = 1;
			break;
		case 7:
			if (name_is(n, nl, "upgrade", 7)) {
				in->has_upgrade = 1;
				in->upgrade_idx = (int)i;
				x->flags |= SL_HDR_HOP;
			} else if (name_is(n, nl, "trailer", 7)) {
				x->flags |= SL_HDR_HOP;
			}
			break;
		case 10:
			if (name_is(n, nl, "connection", 10)) {
				x->flags |= SL_HDR_HOP;
				if (sl_token_list_has(v, vl, "close", 5))
					in->conn_close = 1;
				if (sl_token_list_has(v, vl, "keep-alive", 10))
					in->conn_keepalive = 1;
				if (sl_token_list_has(v, vl, "upgrade", 7))
					in->conn_upgrade = 1;
			} else if (name_is(n, nl, "keep-alive", 10)) {
				x->flags |= SL_HDR_HOP;
			}
			break;
		case 14:
			if (name_is(n, nl, "content-length", 14)) {
				if (in->has_cl && (cl_len != vl || memcmp(cl_val, v, vl))) {
					*why = "differing Content-Length headers";
					return -EPROTO;
				}
				in->has_cl = 1;
				cl_val = v;
				cl_len = vl;
			}
			break;
		case 15:
			if (name_is(n, nl, "x-forwarded-for", 15)) {
				if (in->xff_idx < 0)
					in->xff_idx = (int)i;
				in->n_xff++;
			}
			break;
		case 16:
			if (name_is(n, nl, "proxy-connection", 16))
				x->flags |= SL_HDR_HOP;
			else if (name_is(n, nl, "x-forwarded-host", 16))
				in->has_xfh = 1;
			break;
		case 17:
			if (name_is(n, nl, "x-forwarded-proto", 17))
				in->has_xfp = 1;
			if (name_is(n, nl, "transfer-encoding", 17)) {
				if (in->has_te) {
					*why = "repeated Transfer-Encoding";
					return -EPROTO;
				}
				in->has_te = 1;
				in->te_idx = (int)i;
				in->chunked = te_ends_chunked(v, vl);
				in->te_other = in->chunked && memchr(v, ',', vl) != NULL;
				x->flags |= SL_HDR_HOP;
			}
			break;
		case 2:
			if (name_is(n, nl, "te", 2))
				x->flags |= SL_HDR_HOP;
			break;
		}
	}
	if (!is_request && (h->status < 100 || h->status > 599)) {
		/* llhttp takes "HTTP/1.1 \r\n" and "000" as status codes */
		*why = "status code out of range";
		return -EPROTO;
	}
	if (in->chunked != h->ll_chunked || in->has_cl != h->ll_cl) {
		/* "chunked\t" is chunked to us and not to llhttp: the body would be framed
		 * one way and forwarded as the other */
		*why = "framing headers llhttp reads otherwise";
		return -EPROTO;
	}
	if (in->has_te && in->has_cl) {
		*why = "both Content-Length and Transfer-Encoding";
		return -EPROTO;
	}
	if (in->te_other && !te_codings_valid(h, base)) {
		*why = "Transfer-Encoding coding is not a token";
		return -EPROTO;
	}
	if (in->has_te && !in->chunked) {
		*why = "Transfer-Encoding does not end in chunked";
		return -EPROTO;
	}
	if (in->has_te && h->http_major == 1 && h->http_minor == 0) {
		*why = "Transfer-Encoding in an HTTP/1.0 message";
		return -EPROTO;
	}
	/* Headers named by Connection are hop-by-hop too, except the ones that frame or
	 * route the message: dropping those would make the next hop frame it otherwise. */
	for (unsigned int i = 0; i < h->n; i++) {
		struct sl_hdr *x = &h->h[i];
		if (x->name_len != 10 || !name_is(base + x->name_off, 10, "connection", 10))
			continue;
		for (unsigned int j = 0; j < h->n; j++) {
			struct sl_hdr *y = &h->h[j];
			if (!conn_may_nominate(base + y->name_off, y->name_len))
				continue;
			if (sl_token_list_has(base + x->value_off, x->value_len, base + y->name_off,
					      y->name_len))
				y->flags |= SL_HDR_HOP;
		}
	}
	if (is_request && h->http_major == 1 && h->http_minor >= 1 && in->host_idx < 0) {
		*why = "missing Host";
		return -EPROTO;
	}
	if (is_request && in->host_idx >= 0 &&
	    !sl_authority_valid(base + h->h[in->host_idx].value_off,
				h->h[in->host_idx].value_len)) {
		*why = "invalid Host";
		return -EPROTO;
	}
	return 0;
}

int sl_request_line_check(const struct sl_head *h, const char *base, const char **why)
{
	/* llhttp accepts runs of spaces between the parts and HTTP/0.9 or 2.0 versions */
	if (!h->method_len || !h->target_len ||
	    h->method_off + h->method_len + 1 != h->target_off ||
	    base[h->method_off + h->method_len] != ' ') {
		*why = "request line: one space after the method";
		return 400;
	}
	if (!h->version_len) {
		*why = "request line without a version";
		return 400;
	}
	if (h->target_off + h->target_len + 6 != h->version_off) {
		*why = "request line: one space after the target";
		return 400;
	}
	const unsigned char *t = (const unsigned char *)base + h->target_off;
	for (uint32_t i = 0; i < h->target_len; i++) {
		if (t[i] <= ' ' || t[i] == 0x7f) {
			*why = "control byte or space in the target";
			return 400;
		}
		if (t[i] == '#') { /* a fragment is the client's business, never sent */
			*why = "fragment in the target";
			return 400;
		}
	}
	if (h->http_major != 1 || h->http_minor > 1) {
		*why = "unsupported HTTP version";
		return h->http_major == 0 ? 400 : 505;
	}
	return 0;
}

int sl_request_target_split(struct sl_head *h, const char *base, int method)
{
	const char *t = base + h->target_off;
	uint32_t n = h->target_len;
	if (n && t[0] == '/') {
		h->path_off = h->target_off;
		h->path_len = n;
		return 0;
	}
	if (n == 1 && t[0] == '*' && method == HTTP_OPTIONS) {
		h->path_off = h->target_off;
		h->path_len = 1;
		return 0;
	}
	uint32_t skip = 0;
	if (n > 7 && !strncasecmp(t, "http://", 7))
		skip = 7;
	else if (n > 8 && !strncasecmp(t, "https://", 8))
		skip = 8;
	else
		return -EPROTO;
	uint32_t a = skip;
	while (a < n && t[a] != '/' && t[a] != '?')
		a++;
	if (a == skip || !sl_authority_valid(t + skip, a - skip))
		return -EPROTO; /* no authority, or userinfo, a list, a space... */
	h->authority_off = h->target_off + skip;
	h->authority_len = a - skip;
	if (a < n && t[a] == '/') {
		h->path_off = h->target_off + a;
		h->path_len = n - a;
	} else {
		/* "http://host" or "http://host?q": the path is "/" (+ query) */
		h->path_off = 0;
		h->path_len = 0;
	}
	return 0;
}

int sl_authority_valid(const char *v, size_t n)
{
	/* RFC 3986 reg-name / IPv4: unreserved, pct-encoded and the sub-delims but ','
	 * (a list would route one name and deliver another) */
	static const char ok[256] = {
	    ['-'] = 1,	['.'] = 1, ['_'] = 1, ['~'] = 1, ['%'] = 1, ['!'] = 1, ['$'] = 1, ['&'] = 1,
	    ['\''] = 1, ['('] = 1, [')'] = 1, ['*'] = 1, ['+'] = 1, [';'] = 1, ['='] = 1,
	};
	size_t i = 0;
	if (n && v[0] == '[') { /* IP-literal */
		for (i = 1; i < n && v[i] != ']'; i++)
			if (!(isxdigit((unsigned char)v[i]) || v[i] == ':' || v[i] == '.'))
				return 0;
		if (i == n || i == 1)
			return 0;
		i++;
	} else {
		for (; i < n && v[i] != ':'; i++)
			if (!isalnum((unsigned char)v[i]) && !ok[(unsigned char)v[i]])
				return 0;
	}
	if (i == n)
		return 1;
	if (v[i] != ':')
		return 0;
	for (i++; i < n; i++) /* port: digits, maybe none (RFC 3986 allows "host:") */
		if (!isdigit((unsigned char)v[i]))
			return 0;
	return 1;
}

int sl_trailer_forbidden(const char *n, size_t nl)
{
	static const char *const names[] = {
	    "content-length",
	    "transfer-encoding",
	    "host",
	    "connection",
	    "keep-alive",
	    "upgrade",
	    "te",
	    "trailer",
	    "authorization",
	    "cookie",
	    "set-cookie",
	    "expect",
	    "range",
	    "cache-control",
	    "content-encoding",
	    "content-type",
	    "content-range",
	    "max-forwards",
	    "age",
	    "expires",
	    "date",
	    "location",
	    "retry-after",
	    "vary",
	    "warning",
	    "www-authenticate",
	    "pragma",
	    "content-location",
	    "forwarded",
	    "x-forwarded-for",
	    "x-forwarded-host",
	    "x-forwarded-proto",
	};
	if ((nl >= 6 && !strncasecmp(n, "proxy-", 6)) || (nl >= 3 && !strncasecmp(n, "if-", 3)))
		return 1;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (name_is(n, nl, names[i], strlen(names[i])))
			return 1;
	return 0;
}

int sl_name_same_gw(const char *a, size_t alen, const char *b, size_t blen)
{
	if (alen != blen)
		return 0;
	for (size_t i = 0; i < alen; i++) {
		unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
		x = x == '_' ? '-' : (unsigned char)tolower(x);
		y = y == '_' ? '-' : (unsigned char)tolower(y);
		if (x != y)
			return 0;
	}
	return 1;
}

static int named_any(const char *n, size_t nl, const char *const *names, unsigned int k)
{
	for (unsigned int i = 0; i < k; i++)
		if (sl_name_same_gw(n, nl, names[i], strlen(names[i])))
			return 1;
	return 0;
}

size_t sl_trailer_filter(char *p, size_t len, unsigned int *dropped)
{
	return sl_trailer_filter_names(p, len, dropped, NULL, 0);
}

size_t sl_trailer_filter_names(char *p, size_t len, unsigned int *dropped,
			       const char *const *names, unsigned int n_names)
{
	size_t in = 0, out = 0;
	while (in < len) {
		char *eol = memchr(p + in, '\n', len - in);
		if (!eol || eol == p + in || eol[-1] != '\r')
			return SL_TRAILER_BAD; /* bare LF, or no line end at all */
		size_t line = (size_t)(eol - (p + in)) + 1, body = line - 2;
		if (body == 0) { /* the final empty line */
			memmove(p + out, "\r\n", 2);
			return out + 2;
		}
		const char *colon = memchr(p + in, ':', body);
		size_t nl = colon ? (size_t)(colon - (p + in)) : body;
		int ctl = 0;
		for (size_t k = 0; k < body && !ctl; k++) {
			unsigned char ch = (unsigned char)p[in + k];
			ctl = (ch < ' ' && ch != '\t') || ch == 0x7f;
		}
		if (!colon || ctl || !is_token(p + in, nl) || sl_trailer_forbidden(p + in, nl) ||
		    named_any(p + in, nl, names, n_names)) {
			(*dropped)++;
		} else {
			memmove(p + out, p + in, line); /* CRLF included */
			out += line;
		}
		in += line;
	}
	return SL_TRAILER_BAD; /* no final empty line */
}

int sl_head_find(const struct sl_head *h, const char *base, const char *name, size_t name_len)
{
	for (unsigned int i = 0; i < h->n; i++) {
		if (h->h[i].flags & SL_HDR_REMOVED)
			continue;
		if (name_is(sl_hdr_name(h, base, i), h->h[i].name_len, name, name_len))
			return (int)i;
	}
	return -1;
}

int sl_head_remove(struct sl_head *h, const char *base, const char *name, size_t name_len)
{
	int n = 0;
	for (unsigned int i = 0; i < h->n; i++) {
		if (h->h[i].flags & SL_HDR_REMOVED)
			continue;
		if (name_is(sl_hdr_name(h, base, i), h->h[i].name_len, name, name_len)) {
			h->h[i].flags |= SL_HDR_REMOVED;
			n++;
		}
	}
	return n;
}

int sl_head_remove_gw(struct sl_head *h, const char *base, const char *name, size_t name_len)
{
	int n = 0;
	for (unsigned int i = 0; i < h->n; i++) {
		if (h->h[i].flags & SL_HDR_REMOVED)
			continue;
		if (sl_name_same_gw(sl_hdr_name(h, base, i), h->h[i].name_len, name, name_len)) {
			h->h[i].flags |= SL_HDR_REMOVED;
			n++;
		}
	}
	return n;
}

int sl_head_append(struct sl_head *h, const char *name, size_t nl, const char *value, size_t vl)
{
	if (nl == 0 || nl > SL_HDR_NAME_MAX || h->n >= SL_HDR_MAX + SL_HDR_EXTRA ||
	    h->xlen + nl + vl > SL_XBUF_SIZE)
		return -ENOSPC;
	struct sl_hdr *x = &h->h[h->n++];
	memcpy(h->xbuf + h->xlen, name, nl);
	x->name_off = h->xlen;
	x->name_len = (uint32_t)nl;
	h->xlen += (uint32_t)nl;
	memcpy(h->xbuf + h->xlen, value, vl);
	x->value_off = h->xlen;
	x->value_len = (uint32_t)vl;
	h->xlen += (uint32_t)vl;
	x->flags = SL_HDR_XBUF;
	return 0;
}

int sl_head_set(struct sl_head *h, const char *base, const char *name, const char *value)
{
	size_t nl = strlen(name), vl = strlen(value);
	if (nl == 0 || nl > SL_HDR_NAME_MAX || h->n >= SL_HDR_MAX + SL_HDR_EXTRA ||
	    h->xlen + nl + vl > SL_XBUF_SIZE)
		return -ENOSPC;
	if (strpbrk(value, "\r\n") || strpbrk(name, "\r\n: \t"))
		return -EINVAL;
	sl_head_remove(h, base, name, nl);
	return sl_head_append(h, name, nl, value, vl);
}

void sl_out_put(struct sl_out *o, const char *s, size_t n)
{
	if (!o->ok || o->len + n > o->cap) {
		o->ok = 0;
		return;
	}
	memcpy(o->p + o->len, s, n);
	o->len += n;
}

void sl_out_uint(struct sl_out *o, uint64_t v)
{
	char tmp[24];
	int i = (int)sizeof(tmp);
	do {
		tmp[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	sl_out_put(o, tmp + i, sizeof(tmp) - (size_t)i);
}

void sl_out_headers(struct sl_out *o, const struct sl_head *h, const char *base)
{
	for (unsigned int i = 0; i < h->n; i++) {
		const struct sl_hdr *x = &h->h[i];
		if (x->flags & (SL_HDR_REMOVED | SL_HDR_HOP))
			continue;
		sl_out_put(o, sl_hdr_name(h, base, i), x->name_len);
		sl_out_put(o, ": ", 2);
		sl_out_put(o, sl_hdr_value(h, base, i), x->value_len);
		sl_out_put(o, "\r\n", 2);
	}
}

int sl_head_forward(struct sl_head *h, const char *base, const char *client_ip, size_t ip_len,
		    unsigned int flags)
{
	const char *host = NULL;
	size_t host_len = 0;
	if (h->authority_len) {
		host = base + h->authority_off;
		host_len = h->authority_len;
	} else if (h->info.host_idx >= 0) {
		host = sl_hdr_value(h, base, (unsigned)h->info.host_idx);
		host_len = h->h[h->info.host_idx].value_len;
	}
	/* The common case (no X-Forwarded-* from the client) appends without scanning. */
	if ((flags & SL_FWD_FOR) && h->info.n_xff) {
		char tmp[1024];
		struct sl_out o;
		sl_out_init(&o, tmp, sizeof(tmp));
		for (unsigned int i = 0; i < h->n; i++) {
			if ((h->h[i].flags & SL_HDR_REMOVED) || h->h[i].name_len != 15 ||
			    strncasecmp(sl_hdr_name(h, base, i), "x-forwarded-for", 15))
				continue;
			sl_out_put(&o, sl_hdr_value(h, base, i), h->h[i].value_len);
			sl_out_put(&o, ", ", 2);
			h->h[i].flags |= SL_HDR_REMOVED;
		}
		sl_out_put(&o, client_ip, ip_len);
		if (!o.ok || sl_head_append(h, "X-Forwarded-For", 15, tmp, o.len))
			return -ENOSPC;
	} else if ((flags & SL_FWD_FOR) &&
		   sl_head_append(h, "X-Forwarded-For", 15, client_ip, ip_len)) {
		return -ENOSPC;
	}
	if (flags & SL_FWD_PROTO) {
		if (h->info.has_xfp)
			sl_head_remove(h, base, "x-forwarded-proto", 17);
		int tls = (flags & SL_FWD_HTTPS) != 0;
		if (sl_head_append(h, "X-Forwarded-Proto", 17, tls ? "https" : "http", 4u + tls))
			return -ENOSPC;
	}
	if (host && (flags & SL_FWD_HOST)) {
		if (h->info.has_xfh)
			sl_head_remove(h, base, "x-forwarded-host", 16);
		if (sl_head_append(h, "X-Forwarded-Host", 16, host, host_len))
			return -ENOSPC;
	}
	if (host && h->authority_len) {
		sl_head_remove(h, base, "host", 4);
		if (sl_head_append(h, "Host", 4, host, host_len))
			return -ENOSPC;
	}
	return 0;
}

void sl_h1_render_request(struct sl_out *o, const char *method, const struct sl_head *h,
			  const char *base, int upgrade)
{
	sl_out_str(o, method);
	sl_out_put(o, " ", 1);
	if (h->authority_len && !h->path_len) {
		/* "http://host" or "http://host?q": the path is "/" (+ query) */
		sl_out_put(o, "/", 1);
		uint32_t q = h->authority_off + h->authority_len;
		sl_out_put(o, base + q, h->target_off + h->target_len - q);
	} else {
		sl_out_put(o, base + h->path_off, h->path_len);
	}
	sl_out_str(o, " HTTP/1.1\r\n");
	sl_out_headers(o, h, base);
	if (upgrade && h->info.upgrade_idx >= 0) {
		sl_out_str(o, "Connection: upgrade\r\nUpgrade: ");
		sl_out_put(o, sl_hdr_value(h, base, (unsigned)h->info.upgrade_idx),
			   h->h[h->info.upgrade_idx].value_len);
		sl_out_str(o, "\r\n");
	}
	if (h->info.chunked)
		sl_out_str(o, "Transfer-Encoding: chunked\r\n");
	sl_out_str(o, "\r\n");
}

void sl_h1_render_response(struct sl_out *o, int status, const struct sl_head *h, const char *base,
			   int chunked, enum sl_h1_conn conn)
{
	sl_h1_status_line(o, status);
	sl_out_headers(o, h, base);
	if (chunked && h->info.te_other && h->info.te_idx >= 0) {
		sl_out_str(o, "Transfer-Encoding: ");
		sl_out_put(o, sl_hdr_value(h, base, (unsigned)h->info.te_idx),
			   h->h[h->info.te_idx].value_len);
		sl_out_str(o, "\r\n");
	} else if (chunked) {
		sl_out_str(o, "Transfer-Encoding: chunked\r\n");
	}
	switch (conn) {
	case SL_H1_KEEP:
		break;
	case SL_H1_KEEP_10:
		sl_out_str(o, "Connection: keep-alive\r\n");
		break;
	case SL_H1_CLOSE:
		sl_out_str(o, "Connection: close\r\n");
		break;
	case SL_H1_UPGRADE:
		sl_out_str(o, "Connection: upgrade\r\n");
		if (h->info.upgrade_idx >= 0) {
			sl_out_str(o, "Upgrade: ");
			sl_out_put(o, sl_hdr_value(h, base, (unsigned)h->info.upgrade_idx),
				   h->h[h->info.upgrade_idx].value_len);
			sl_out_str(o, "\r\n");
		}
		break;
	}
	sl_out_str(o, "\r\n");
}
