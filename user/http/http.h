/* HTTP/1.1 message heads: collected from llhttp callbacks as offsets into the
 * connection's input buffer (no copies), checked for ambiguous framing, and
 * rewritten (hop-by-hop removal, added headers) into an output buffer. */
#ifndef SL_HTTP_H
#define SL_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "llhttp.h"

#define SL_HDR_MAX 256	  /* hard cap on limits.max_header_count */
#define SL_HDR_EXTRA 16	  /* headers set by filters on top of the received ones */
#define SL_XBUF_SIZE 2048 /* bytes for names/values set by filters */

/* Header flags. */
#define SL_HDR_REMOVED 0x1 /* dropped by a filter or as hop-by-hop */
#define SL_HDR_XBUF 0x2	   /* offsets point into the head's xbuf, not the input */
#define SL_HDR_HOP 0x4	   /* hop-by-hop: never forwarded as is */

struct sl_hdr {
	uint32_t name_off;
	uint32_t value_off;
	uint32_t value_len;
	uint16_t name_len;
	uint16_t flags;
};

/* Framing facts and validation outcome, filled by sl_head_analyze(). */
struct sl_head_info {
	uint8_t chunked; /* Transfer-Encoding ends in chunked */
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
	int status;
	uint8_t http_major, http_minor;
	/* collection state */
	uint8_t in_value;
	uint8_t too_many;
	uint16_t n;
	uint16_t max; /* limits.max_header_count */
	uint32_t target_max;
	int err_status; /* set by a callback that refused the head (414, 431) */
	struct sl_hdr h[SL_HDR_MAX + SL_HDR_EXTRA];
	struct sl_head_info info;
	uint32_t xlen;
	char xbuf[SL_XBUF_SIZE];
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
	uint8_t dechunk;   /* on_body moves data down to dechunk_wr (in-place de-chunking) */
	uint8_t skip_body; /* response to HEAD: tell llhttp there is no body */
	char *dechunk_wr;
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

/* Check the head for smuggling-prone framing and fill h->info.
 * Returns 0, or -EPROTO with a static reason in *why. */
int sl_head_analyze(struct sl_head *h, const char *base, int is_request, const char **why);

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

const char *sl_http_reason(int status);

#endif
