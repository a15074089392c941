/* HTTP/1.1 message heads: collected from llhttp callbacks as offsets into the
 * connection's input buffer (no copies), checked for ambiguous framing, and
 * rewritten (hop-by-hop removal, added headers) into an output buffer. */
#ifndef SL_HTTP_H
#define SL_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "llhttp.h"

#define SL_HDR_MAX 256	      /* hard cap on limits.max_header_count */
#define SL_HDR_EXTRA 16	      /* headers set by filters on top of the received ones */
#define SL_XBUF_SIZE 2048     /* bytes for names/values set by filters */
#define SL_HDR_NAME_MAX 4096  /* a longer header name gets 431 */
#define SL_CHUNK_EXT_MAX 4096 /* bytes of extensions on one chunk-size line */
#define SL_CHUNK_LINE_MAX (SL_CHUNK_EXT_MAX + 64) /* ... with the size, CRLFs, spaces */
#define SL_TRAILER_MAX 16384			  /* bytes of one trailer section */

/* Header flags. */
#define SL_HDR_REMOVED 0x1 /* dropped by a filter or as hop-by-hop */
#define SL_HDR_XBUF 0x2	   /* offsets point into the head's xbuf, not the input */
#define SL_HDR_HOP 0x4	   /* hop-by-hop: never forwarded as is */

/* Every length is 32-bit: no stored length may be narrower than the largest head. */
struct sl_hdr {
	uint32_t name_off;
	uint32_t name_len;
	uint32_t value_off;
	uint32_t value_len;
	uint32_t flags;
};

/* Framing facts and validation outcome, filled by sl_head_analyze(). */
struct sl_head_info {
	uint8_t chunked;  /* Transfer-Encoding ends in chunked */
	uint8_t te_other; /* ... after other codings (gzip, chunked): kept when forwarded */
	uint8_t has_te;
	uint8_t has_cl;
	uint8_t conn_close;	  /* Connection: close */
	uint8_t conn_keepalive;	  /* Connection: keep-alive */
	uint8_t conn_upgrade;	  /* Connection: upgrade */
	uint8_t expect_continue;  /* Expect: 100-continue */
	uint8_t has_upgrade;	  /* an Upgrade header */
	int host_idx;		  /* index of Host, -1 if none */
	int xff_idx;		  /* index of X-Forwarded-For, -1 if none */
	uint8_t n_xff;		  /* how many X-Forwarded-For headers */
	uint8_t has_xfp, has_xfh; /* X-Forwarded-Proto / -Host present */
	int upgrade_idx;
	int te_idx;
};

struct sl_head {
	/* request line or status line */
	uint32_t method_off, method_len;
	uint32_t target_off, target_len;
	uint32_t path_off, path_len;	       /* origin-form part of the target */
	uint32_t authority_off, authority_len; /* absolute-form authority, len 0 if none */
	uint32_t version_off, version_len;     /* "1.1" after "HTTP/" (requests) */
	int status;
	uint8_t http_major, http_minor;
	/* collection state */
	uint8_t in_value;
	uint8_t too_many;
	uint16_t n;
	uint16_t max; /* limits.max_header_count */
	uint32_t target_max;
	int err_status;		   /* set by a callback that refused the head (414, 431) */
	uint8_t ll_chunked, ll_cl; /* how llhttp itself frames it (F_CHUNKED, F_CONTENT_LENGTH) */
	struct sl_hdr h[SL_HDR_MAX + SL_HDR_EXTRA];
	struct sl_head_info info;
	uint32_t xlen;
	char xbuf[SL_XBUF_SIZE];
};

/* Why the parser refused a body (llhttp reports HPE_USER for these). */
enum sl_body_err {
	SL_BODY_OK = 0,
	SL_BODY_EXT_TOO_LONG, /* one chunk's extensions over SL_CHUNK_EXT_MAX */
	SL_BODY_TRAILER_TOO_BIG,
	SL_BODY_BAD_FRAMING, /* a control byte, bare CR or bare LF in chunk framing */
};

/* What llhttp callbacks need: the head being filled and the buffer base the
 * pointers they receive are turned into offsets against. */
struct sl_http_parser {
	llhttp_t p;
	struct sl_head *head;
	const char *base;
	/* body observation (chunked limit checks, de-chunking, filters) */
	uint64_t body_seen;
	uint8_t headers_done;
	uint8_t message_done;
	uint8_t dechunk;    /* on_body moves data down to dechunk_wr (in-place de-chunking) */
	uint8_t skip_body;  /* response to HEAD: tell llhttp there is no body */
	uint8_t in_trailer; /* past the last chunk: trailer_off is where its trailer starts */
	uint8_t body_err;   /* enum sl_body_err */
	uint8_t mark_trailer;
	uint8_t frame_cr;	/* the last framing byte was a CR */
	uint32_t trailer_off;	/* offset from base; the caller shifts it when it moves bytes */
	uint32_t trailer_len;	/* trailer bytes seen, capped at SL_TRAILER_MAX */
	uint32_t framing;	/* body bytes since the last data byte: chunk-size lines,
				 * extensions, CRLFs (llhttp reports no extension callback
				 * for a name-only extension, so the bytes are counted) */
	const char *frame_from; /* where the current framing run started (this call) */
	char *dechunk_wr;
	/* sees every body data byte (no chunk framing) before it is forwarded or moved
	 * (the cache tees responses into its store); reset for each message */
	void (*tap)(void *ctx, const char *at, size_t len);
	void *tap_ctx;
};

void sl_http_parser_init(struct sl_http_parser *hp, int is_request, struct sl_head *head);
/* Start the next message on the same connection. */
void sl_http_parser_next(struct sl_http_parser *hp);
void sl_head_reset(struct sl_head *h, unsigned int max_headers, uint32_t target_max);

/* Run the parser over [data, data+len). base is the start of the buffer that data lies
 * in (offsets are relative to it). Returns llhttp's errno; *used gets bytes consumed.
 * It pauses (HPE_PAUSED) after the head and after the message. */
llhttp_errno_t sl_http_execute(struct sl_http_parser *hp, const char *base, const char *data,
			       size_t len, size_t *used);

/* Check the head for smuggling-prone framing and fill h->info. Connection may not make
 * Content-Length, Transfer-Encoding or Host hop-by-hop: those tokens are ignored, as
 * nginx and HAProxy do. Returns 0, or -EPROTO with a static reason in *why. */
int sl_head_analyze(struct sl_head *h, const char *base, int is_request, const char **why);

/* RFC 9112 section 3 on a parsed request head: one SP between the parts, a target of
 * visible bytes without a fragment, HTTP/1.0 or HTTP/1.1. Returns 0, or the status to
 * answer (400, 505) with a static reason in *why. */
int sl_request_line_check(const struct sl_head *h, const char *base, const char **why);

/* A Host value or an absolute-form authority: host (reg-name, IPv4 or [IPv6]) and an
 * optional port, nothing else (no userinfo, list, path or space). */
int sl_authority_valid(const char *v, size_t n);

/* Split the request target into path and, for absolute-form, a validated authority;
 * asterisk-form only for OPTIONS. 0 or -EPROTO. */
int sl_request_target_split(struct sl_head *h, const char *base, int method);

/* 1 if a field of this name may not appear in a trailer section (RFC 9110 6.5.1):
 * framing, routing, request modifiers, authentication, response control data and
 * payload processing fields. */
int sl_trailer_forbidden(const char *name, size_t len);

/* Rewrite a trailer section (field lines then the final CRLF, as llhttp accepted it) in
 * place, dropping forbidden fields and fields with control bytes. Returns the new
 * length (never more than len; *dropped counts the fields dropped), or SL_TRAILER_BAD
 * when a line does not end in CRLF (llhttp lets a bare LF through there): the message
 * must then be refused, since rewriting it would have to grow it. */
#define SL_TRAILER_BAD ((size_t)-1)
size_t sl_trailer_filter(char *p, size_t len, unsigned int *dropped);
/* The same, also dropping fields named like any of names[0..n) (sl_name_same_gw). */
size_t sl_trailer_filter_names(char *p, size_t len, unsigned int *dropped,
			       const char *const *names, unsigned int n);

static inline const char *sl_hdr_name(const struct sl_head *h, const char *base, unsigned i)
{
	return (h->h[i].flags & SL_HDR_XBUF ? h->xbuf : base) + h->h[i].name_off;
}
static inline const char *sl_hdr_value(const struct sl_head *h, const char *base, unsigned i)
{
	return (h->h[i].flags & SL_HDR_XBUF ? h->xbuf : base) + h->h[i].value_off;
}

/* Index of the first live header named name (any case), or -1. */
int sl_head_find(const struct sl_head *h, const char *base, const char *name, size_t name_len);
/* Mark every header of that name removed; returns how many. */
int sl_head_remove(struct sl_head *h, const char *base, const char *name, size_t name_len);
/* The same name for a gateway that maps header names to variables (CGI, WSGI, Rack,
 * FastCGI: X-Client-Subject and X_Client_Subject are both HTTP_X_CLIENT_SUBJECT): any
 * case, '-' and '_' alike. */
int sl_name_same_gw(const char *a, size_t alen, const char *b, size_t blen);
/* sl_head_remove by sl_name_same_gw: for names an upstream trusts (identity headers). */
int sl_head_remove_gw(struct sl_head *h, const char *base, const char *name, size_t name_len);
/* Replace every header of that name by one with value. 0 or -ENOSPC. */
int sl_head_set(struct sl_head *h, const char *base, const char *name, const char *value);

/* Append a header without looking for others of that name (the caller knows there are
 * none, or removed them). name/value need not be NUL-terminated. 0 or -ENOSPC. */
int sl_head_append(struct sl_head *h, const char *name, size_t nl, const char *value, size_t vl);

/* Case-insensitive token search in a comma-separated header value. */
int sl_token_list_has(const char *v, size_t len, const char *tok, size_t tok_len);

/* Output builder: appends while there is room; ok stays 0 once anything did not fit. */
struct sl_out {
	char *p;
	size_t len, cap;
	int ok;
};

static inline void sl_out_init(struct sl_out *o, char *p, size_t cap)
{
	o->p = p;
	o->len = 0;
	o->cap = cap;
	o->ok = 1;
}
void sl_out_put(struct sl_out *o, const char *s, size_t n);
static inline void sl_out_str(struct sl_out *o, const char *s)
{
	sl_out_put(o, s, __builtin_strlen(s));
}
void sl_out_uint(struct sl_out *o, uint64_t v);
/* Append every live header that is not hop-by-hop, as "Name: value\r\n". */
void sl_out_headers(struct sl_out *o, const struct sl_head *h, const char *base);

/* Forwarding headers for a request head about to go upstream: X-Forwarded-For (the
 * client's list, if any, with client_ip appended), X-Forwarded-Proto and
 * X-Forwarded-Host (replacing the client's), as flags ask; and Host from an
 * absolute-form authority. 0 or -ENOSPC. */
#define SL_FWD_FOR 0x1
#define SL_FWD_PROTO 0x2
#define SL_FWD_HOST 0x4
#define SL_FWD_HTTPS 0x8 /* with SL_FWD_PROTO: the client came over TLS */
int sl_head_forward(struct sl_head *h, const char *base, const char *client_ip, size_t ip_len,
		    unsigned int flags);

/* The request head sent upstream: "METHOD path HTTP/1.1", the live end-to-end headers,
 * the Connection/Upgrade pair of an upgrade, and Transfer-Encoding for a chunked body. */
void sl_h1_render_request(struct sl_out *o, const char *method, const struct sl_head *h,
			  const char *base, int upgrade);

/* How the client connection goes on after a response. */
enum sl_h1_conn {
	SL_H1_KEEP = 0, /* HTTP/1.1 client kept alive: nothing said */
	SL_H1_KEEP_10,	/* HTTP/1.0 client kept alive: "Connection: keep-alive" */
	SL_H1_CLOSE,	/* "Connection: close" */
	SL_H1_UPGRADE,	/* 101: "Connection: upgrade" and the Upgrade header */
};

/* The response head sent to the client: status line, live end-to-end headers,
 * Transfer-Encoding when the body stays chunked (the upstream's codings, unchanged),
 * and the connection headers. */
void sl_h1_render_response(struct sl_out *o, int status, const struct sl_head *h, const char *base,
			   int chunked, enum sl_h1_conn conn);

const char *sl_http_reason(int status);

/* status.c: status lines and the responses sluice makes itself. */
void sl_h1_status_line(struct sl_out *o, int status);
/* A local response head: status line, Content-Type (if any), hdrs, Content-Length
 * (but for 204/304), the Connection header conn asks for (KEEP, KEEP_10 or CLOSE). */
struct sl_conf_header;
void sl_h1_render_local(struct sl_out *o, int status, const char *ctype,
			const struct sl_conf_header *hdrs, unsigned int n_hdrs, size_t body_len,
			enum sl_h1_conn conn);
/* The body of an error page ("502 Bad Gateway\n"), static. */
const char *sl_error_page(int status, size_t *len);
/* The headers an error page carries (Allow for 405), static; *n of them. */
const struct sl_conf_header *sl_error_page_headers(int status, unsigned int *n);

#endif
