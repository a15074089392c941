/* RFC 9111 for a shared cache: what may be stored, for how long, what may be served
 * stale, and how a stored response answers conditional and range requests. Pure
 * functions over parsed heads (http.h); the clock is the caller's. */
#ifndef SL_CACHE_POLICY_H
#define SL_CACHE_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "http/http.h"

#define SL_DELTA_MAX 2147483648u /* RFC 9111 1.2.2: delta-seconds saturate at 2^31 */

/* Cache-Control directives of one message, every Cache-Control field merged. */
#define SL_CC_NO_STORE 0x1
#define SL_CC_NO_CACHE 0x2
#define SL_CC_PRIVATE 0x4
#define SL_CC_PUBLIC 0x8
#define SL_CC_MUST_REVALIDATE 0x10
#define SL_CC_PROXY_REVALIDATE 0x20
#define SL_CC_CONFLICT 0x40 /* a freshness directive twice with different or bad values */

struct sl_cc {
	uint32_t flags;
	int64_t max_age, s_maxage, swr, sie; /* -1: absent */
};

void sl_cc_init(struct sl_cc *cc);
/* Merge one Cache-Control field value into cc. */
void sl_cc_parse(struct sl_cc *cc, const char *v, size_t n);
/* delta-seconds: 1*DIGIT, saturating at SL_DELTA_MAX. 0 or -EINVAL. */
int sl_delta_seconds(const char *v, size_t n, uint32_t *out);
/* HTTP-date (IMF-fixdate, RFC 850, asctime) to Unix seconds. 0 or -EINVAL. */
int sl_http_date(const char *v, size_t n, int64_t *t);
/* IMF-fixdate, 29 bytes plus NUL. */
void sl_http_date_fmt(int64_t t, char out[30]);

/* Which statuses a shared cache may store here (206 never: ranges are cut from full
 * objects). */
int sl_cache_status_ok(int status);

/* Request side: 0 may be looked up and coalesced; SL_CREQ_NOLOCK looked up but the miss
 * goes to the origin without the lock (Authorization, Cache-Control: no-store: their
 * responses may not be shareable); SL_CREQ_BYPASS not cached at all (If-Match /
 * If-Unmodified-Since preconditions the cache does not evaluate). */
#define SL_CREQ_NOLOCK 1
#define SL_CREQ_BYPASS 2
int sl_cache_request_class(const struct sl_head *req, const char *base);

/* The storage decision for a response to a GET. */
struct sl_cache_verdict {
	uint8_t store;	   /* may be stored */
	uint8_t shareable; /* when not stored: 0 the response is per-client (waiters go to
			    * the origin themselves), 1 a failure (one waiter retries) */
	uint8_t flags;	   /* SL_COBJ_* */
	const char *why;   /* when not stored */
	uint32_t lifetime, initial_age, swr, sie;
};

struct sl_cache_times {
	int64_t req_wall, resp_wall; /* when the request went out / the head came back */
	uint32_t cfg_swr, cfg_sie;   /* route defaults (seconds) */
};

void sl_cache_decide(const struct sl_head *req, const char *rbase, const struct sl_head *resp,
		     const char *pbase, const struct sl_cache_times *tm,
		     struct sl_cache_verdict *v);

/* Vary: the normalized list of header names (lower case, sorted, unique, each NUL
 * terminated) into out. Returns the length (0: no Vary), -EPERM for "*", -E2BIG past
 * SL_CACHE_VARY_NAMES_MAX names or cap bytes, -EINVAL for a bad token. */
int sl_cache_vary_names(const struct sl_head *resp, const char *base, char *out, size_t cap);
/* A request's values of those headers (combined fields, trimmed), each ended by NUL;
 * an absent header is 0x01. Returns the length or -E2BIG. */
int sl_cache_vary_key(const struct sl_head *req, const char *base, const char *names,
		      size_t names_len, char *out, size_t cap);

/* Age of a stored response now (seconds, saturating). */
uint32_t sl_cache_age(uint32_t initial_age, uint64_t resp_mono_ns, uint64_t now_ns);

/* Client preconditions on a stored response (GET/HEAD): 304 when If-None-Match matches
 * (weak comparison) or, without If-None-Match, If-Modified-Since is not older than
 * Last-Modified; 0 otherwise. */
int sl_cache_cond(const struct sl_head *req, const char *base, const char *etag, size_t etag_len,
		  const char *lm, size_t lm_len);

/* Range on a stored body of len bytes: 0 serve it all (no Range, several ranges, a
 * unit other than bytes, a failed If-Range, a malformed header); 206 with
 * [*first, *last]; 416 unsatisfiable. */
int sl_cache_range(const struct sl_head *req, const char *base, uint64_t len, const char *etag,
		   size_t etag_len, const char *lm, size_t lm_len, uint64_t *first,
		   uint64_t *last);

#endif
