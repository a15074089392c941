/* RFC 9111 rules for a shared cache (see policy.h). */
#include <errno.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "cache/policy.h"
#include "cache/store.h"

#define FOR_HDR(hd, base, i, name)                                                          \
	for (unsigned int i = 0; i < (hd)->n; i++)                                           \
		if (!((hd)->h[i].flags & SL_HDR_REMOVED) &&                                  \
		    (hd)->h[i].name_len == sizeof(name) - 1 &&                               \
		    !strncasecmp(sl_hdr_name(hd, base, i), name, sizeof(name) - 1))

static int ows(char c)
{
	return c == ' ' || c == '\t';
}

void sl_cc_init(struct sl_cc *cc)
{
	cc->flags = 0;
	cc->max_age = cc->s_maxage = cc->swr = cc->sie = -1;
}

int sl_delta_seconds(const char *v, size_t n, uint32_t *out)
{
	if (!n)
		return -EINVAL;
	uint64_t x = 0;
	for (size_t i = 0; i < n; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -EINVAL;
		if (x < SL_DELTA_MAX)
			x = x * 10 + (uint64_t)(v[i] - '0');
	}
	*out = x > SL_DELTA_MAX ? SL_DELTA_MAX : (uint32_t)x;
	return 0;
}

/* A freshness directive's value; a repeat with another value, or a bad value, makes
 * the response stale (RFC 9111 4.2.1). */
static void set_delta(struct sl_cc *cc, int64_t *slot, const char *v, size_t n)
{
	if (n >= 2 && v[0] == '"' && v[n - 1] == '"') { /* quoted form: tolerated */
		v++;
		n -= 2;
	}
	uint32_t d;
	if (sl_delta_seconds(v, n, &d) < 0) {
		cc->flags |= SL_CC_CONFLICT;
		return;
	}
	if (*slot >= 0 && *slot != d)
		cc->flags |= SL_CC_CONFLICT;
	if (*slot < 0 || d < *slot)
		*slot = d;
}

void sl_cc_parse(struct sl_cc *cc, const char *v, size_t n)
{
	size_t i = 0;
	while (i < n) {
		while (i < n && (ows(v[i]) || v[i] == ','))
			i++;
		size_t ns = i;
		while (i < n && v[i] != '=' && v[i] != ',' && !ows(v[i]))
			i++;
		size_t nl = i - ns;
		const char *name = v + ns;
		const char *val = NULL;
		size_t vl = 0;
		while (i < n && ows(v[i]))
			i++;
		if (i < n && v[i] == '=') {
			i++;
			while (i < n && ows(v[i]))
				i++;
			size_t vs = i;
			if (i < n && v[i] == '"') {
				i++;
				while (i < n && v[i] != '"')
					i += (v[i] == '\\' && i + 1 < n) ? 2 : 1;
				if (i < n)
					i++;
			} else {
				while (i < n && v[i] != ',' && !ows(v[i]))
					i++;
			}
			val = v + vs;
			vl = i - vs;
		}
		/* no skipping to the next comma: in "max-age=60 private" (a comma missing)
		 * the private still counts, as nginx finds it */
		if (!nl)
			continue;
#define IS(s) (nl == sizeof(s) - 1 && !strncasecmp(name, s, nl))
		if (IS("no-store"))
			cc->flags |= SL_CC_NO_STORE;
		else if (IS("no-cache"))
			cc->flags |= SL_CC_NO_CACHE; /* qualified or not: treated as unqualified */
		else if (IS("private"))
			cc->flags |= SL_CC_PRIVATE;
		else if (IS("public"))
			cc->flags |= SL_CC_PUBLIC;
		else if (IS("must-revalidate"))
			cc->flags |= SL_CC_MUST_REVALIDATE;
		else if (IS("proxy-revalidate"))
			cc->flags |= SL_CC_PROXY_REVALIDATE;
		else if (IS("max-age"))
			set_delta(cc, &cc->max_age, val, val ? vl : 0);
		else if (IS("s-maxage"))
			set_delta(cc, &cc->s_maxage, val, val ? vl : 0);
		else if (IS("stale-while-revalidate"))
			set_delta(cc, &cc->swr, val, val ? vl : 0);
		else if (IS("stale-if-error"))
			set_delta(cc, &cc->sie, val, val ? vl : 0);
#undef IS
	}
}

static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
				      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
static const char *const wdays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};

static int num(const char *p, size_t n, int *out)
{
	int x = 0;
	for (size_t i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -1;
		x = x * 10 + (p[i] - '0');
	}
	*out = x;
	return 0;
}

static int month(const char *p)
{
	for (int i = 0; i < 12; i++)
		if (!memcmp(p, months[i], 3))
			return i;
	return -1;
}

static int hms(const char *p, struct tm *tm)
{
	if (p[2] != ':' || p[5] != ':' || num(p, 2, &tm->tm_hour) || num(p + 3, 2, &tm->tm_min) ||
	    num(p + 6, 2, &tm->tm_sec))
		return -1;
	return 0;
}

int sl_http_date(const char *v, size_t n, int64_t *t)
{
	struct tm tm = {0};
	const char *c = memchr(v, ',', n);
	if (c && c - v == 3 && n == 29) {
		/* IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" */
		const char *p = c + 1;
		if (p[0] != ' ' || p[3] != ' ' || p[7] != ' ' || p[12] != ' ' || p[21] != ' ' ||
		    memcmp(p + 22, "GMT", 3) || num(p + 1, 2, &tm.tm_mday) ||
		    (tm.tm_mon = month(p + 4)) < 0 || num(p + 8, 4, &tm.tm_year) ||
		    hms(p + 13, &tm))
			return -EINVAL;
		tm.tm_year -= 1900;
	} else if (c) {
		/* RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT" */
		const char *p = c + 1;
		size_t left = n - (size_t)(c - v) - 1;
		if (left != 23 || p[0] != ' ' || p[3] != '-' || p[7] != '-' || p[10] != ' ' ||
		    p[19] != ' ' || memcmp(p + 20, "GMT", 3) || num(p + 1, 2, &tm.tm_mday) ||
		    (tm.tm_mon = month(p + 4)) < 0 || num(p + 8, 2, &tm.tm_year) ||
		    hms(p + 11, &tm))
			return -EINVAL;
		if (tm.tm_year < 70) /* RFC 9110 5.6.7: more than 50 years ahead is the past */
			tm.tm_year += 100;
	} else {
		/* asctime: "Sun Nov  6 08:49:37 1994" */
		if (n != 24 || v[3] != ' ' || v[7] != ' ' || v[10] != ' ' || v[19] != ' ' ||
		    (tm.tm_mon = month(v + 4)) < 0 || hms(v + 11, &tm) ||
		    num(v + 20, 4, &tm.tm_year))
			return -EINVAL;
		char d[2] = {v[8] == ' ' ? '0' : v[8], v[9]};
		if (num(d, 2, &tm.tm_mday))
			return -EINVAL;
		tm.tm_year -= 1900;
	}
	if (tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 || tm.tm_min > 59 ||
	    tm.tm_sec > 60)
		return -EINVAL;
	*t = (int64_t)timegm(&tm);
	return 0;
}

void sl_http_date_fmt(int64_t t, char out[30])
{
	struct tm tm;
	time_t tt = (time_t)t;
	gmtime_r(&tt, &tm);
	static const char d[] = "0123456789";
	char *p = out;
	memcpy(p, wdays[tm.tm_wday], 3);
	p += 3;
	*p++ = ',';
	*p++ = ' ';
	*p++ = d[tm.tm_mday / 10];
	*p++ = d[tm.tm_mday % 10];
	*p++ = ' ';
	memcpy(p, months[tm.tm_mon], 3);
	p += 3;
	*p++ = ' ';
	int y = tm.tm_year + 1900;
	*p++ = d[(y / 1000) % 10];
	*p++ = d[(y / 100) % 10];
	*p++ = d[(y / 10) % 10];
	*p++ = d[y % 10];
	*p++ = ' ';
	*p++ = d[tm.tm_hour / 10];
	*p++ = d[tm.tm_hour % 10];
	*p++ = ':';
	*p++ = d[tm.tm_min / 10];
	*p++ = d[tm.tm_min % 10];
	*p++ = ':';
	*p++ = d[tm.tm_sec / 10];
	*p++ = d[tm.tm_sec % 10];
	memcpy(p, " GMT", 5);
}

int sl_cache_status_ok(int status)
{
	switch (status) {
	case 200:
	case 203:
	case 204:
	case 300:
	case 301:
	case 308:
	case 404:
	case 405:
	case 410:
	case 414:
	case 501:
		return 1;
	}
	return 0;
}

int sl_cache_request_class(const struct sl_head *req, const char *base)
{
	int cls = 0;
	FOR_HDR(req, base, i, "if-match") return SL_CREQ_BYPASS;
	FOR_HDR(req, base, i, "if-unmodified-since") return SL_CREQ_BYPASS;
	FOR_HDR(req, base, i, "authorization") cls = SL_CREQ_NOLOCK;
	FOR_HDR(req, base, i, "cache-control")
	{
		struct sl_cc cc;
		sl_cc_init(&cc);
		sl_cc_parse(&cc, sl_hdr_value(req, base, i), req->h[i].value_len);
		if (cc.flags & SL_CC_NO_STORE)
			cls = SL_CREQ_NOLOCK;
	}
	return cls;
}

static uint32_t clamp(int64_t x)
{
	if (x < 0)
		return 0;
	return x > SL_DELTA_MAX ? SL_DELTA_MAX : (uint32_t)x;
}

void sl_cache_decide(const struct sl_head *req, const char *rbase, const struct sl_head *resp,
		     const char *pbase, const struct sl_cache_times *tm,
		     struct sl_cache_verdict *v)
{
	memset(v, 0, sizeof(*v));
	v->shareable = 0;
	struct sl_cc cc;
	sl_cc_init(&cc);
	FOR_HDR(resp, pbase, i, "cache-control")
	sl_cc_parse(&cc, sl_hdr_value(resp, pbase, i), resp->h[i].value_len);

	if (cc.flags & SL_CC_NO_STORE) {
		v->why = "no-store";
		return;
	}
	if (cc.flags & SL_CC_PRIVATE) {
		v->why = "private";
		return;
	}
	FOR_HDR(resp, pbase, i, "set-cookie")
	{
		v->why = "set-cookie";
		return;
	}
	char names[SL_CACHE_VARY_BYTES_MAX];
	if (sl_cache_vary_names(resp, pbase, names, sizeof(names)) < 0) {
		v->why = "vary";
		return;
	}
	if (sl_cache_request_class(req, rbase)) {
		int auth = 0, rq_nostore = 0;
		FOR_HDR(req, rbase, i, "authorization") auth = 1;
		FOR_HDR(req, rbase, i, "cache-control")
		{
			struct sl_cc rc;
			sl_cc_init(&rc);
			sl_cc_parse(&rc, sl_hdr_value(req, rbase, i), req->h[i].value_len);
			if (rc.flags & SL_CC_NO_STORE)
				rq_nostore = 1;
		}
		if (rq_nostore) {
			v->why = "request no-store";
			return;
		}
		/* RFC 9111 3.5 */
		if (auth && !(cc.flags & SL_CC_PUBLIC) && !(cc.flags & SL_CC_MUST_REVALIDATE) &&
		    cc.s_maxage < 0) {
			v->why = "authorization";
			return;
		}
	}
	if (!sl_cache_status_ok(resp->status)) {
		v->why = "status";
		v->shareable = resp->status >= 500; /* an origin in trouble: one retry at a time */
		return;
	}

	/* ages (RFC 9111 4.2.3) */
	int64_t date = tm->resp_wall;
	int have_date = 0;
	FOR_HDR(resp, pbase, i, "date")
	{
		int64_t d;
		if (!have_date && !sl_http_date(sl_hdr_value(resp, pbase, i), resp->h[i].value_len,
						&d)) {
			date = d;
			have_date = 1;
		}
	}
	uint32_t age_value = 0;
	int n_age = 0;
	FOR_HDR(resp, pbase, i, "age")
	{
		uint32_t a;
		if (sl_delta_seconds(sl_hdr_value(resp, pbase, i), resp->h[i].value_len, &a) < 0 ||
		    (n_age && a != age_value))
			a = SL_DELTA_MAX; /* unusable Age: treat the response as already old */
		age_value = a;
		n_age++;
	}
	int64_t apparent = tm->resp_wall - date;
	if (apparent < 0)
		apparent = 0;
	int64_t delay = tm->resp_wall - tm->req_wall;
	if (delay < 0)
		delay = 0;
	int64_t corrected = (int64_t)age_value + delay;
	v->initial_age = clamp(apparent > corrected ? apparent : corrected);

	/* freshness lifetime (RFC 9111 4.2.1); heuristic freshness off */
	int explicit_fresh = 1;
	int64_t life = 0;
	if (cc.flags & SL_CC_CONFLICT)
		life = 0;
	else if (cc.s_maxage >= 0)
		life = cc.s_maxage;
	else if (cc.max_age >= 0)
		life = cc.max_age;
	else {
		int n_exp = 0;
		FOR_HDR(resp, pbase, i, "expires")
		{
			int64_t e;
			if (n_exp++ ||
			    sl_http_date(sl_hdr_value(resp, pbase, i), resp->h[i].value_len, &e) < 0)
				life = 0; /* invalid or repeated: already expired (5.3) */
			else
				life = e - date;
		}
		if (!n_exp)
			explicit_fresh = 0;
	}
	v->lifetime = clamp(life);

	int validator = 0;
	FOR_HDR(resp, pbase, i, "etag") validator = 1;
	FOR_HDR(resp, pbase, i, "last-modified") validator = 1;

	if (cc.flags & SL_CC_NO_CACHE) {
		if (!validator) {
			v->why = "no-cache without a validator";
			return;
		}
		v->flags |= SL_COBJ_NO_CACHE | SL_COBJ_NO_STALE;
		v->lifetime = 0;
	} else if (!explicit_fresh && !(cc.flags & SL_CC_PUBLIC)) {
		v->why = "no explicit freshness";
		return;
	} else if ((!explicit_fresh || !v->lifetime) && !validator) {
		v->why = "stale on arrival without a validator";
		return;
	}
	if (cc.flags & (SL_CC_MUST_REVALIDATE | SL_CC_PROXY_REVALIDATE) || cc.s_maxage >= 0)
		v->flags |= SL_COBJ_NO_STALE; /* s-maxage implies proxy-revalidate (5.2.2.10) */
	if (have_date)
		v->flags |= SL_COBJ_HAS_DATE;
	if (!(v->flags & SL_COBJ_NO_STALE)) {
		v->swr = cc.swr >= 0 ? clamp(cc.swr) : tm->cfg_swr;
		v->sie = cc.sie >= 0 ? clamp(cc.sie) : tm->cfg_sie;
	}
	v->store = 1;
	v->shareable = 1;
}

static int tchar(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

int sl_cache_vary_names(const struct sl_head *resp, const char *base, char *out, size_t cap)
{
	/* collect, lower-cased, then sort and dedupe */
	char tmp[SL_CACHE_VARY_NAMES_MAX][64];
	size_t tl[SL_CACHE_VARY_NAMES_MAX];
	unsigned int n = 0;
	FOR_HDR(resp, base, i, "vary")
	{
		const char *v = sl_hdr_value(resp, base, i);
		size_t len = resp->h[i].value_len, j = 0;
		while (j < len) {
			while (j < len && (ows(v[j]) || v[j] == ','))
				j++;
			size_t s = j;
			while (j < len && v[j] != ',' && !ows(v[j]))
				j++;
			size_t l = j - s;
			while (j < len && ows(v[j]))
				j++;
			if (j < len && v[j] != ',')
				return -EINVAL;
			if (!l)
				continue;
			if (l == 1 && v[s] == '*')
				return -EPERM;
			if (l >= sizeof(tmp[0]))
				return -E2BIG;
			for (size_t k = 0; k < l; k++) {
				unsigned char c = (unsigned char)v[s + k];
				if (!tchar(c))
					return -EINVAL;
				tmp[n][k] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
			}
			tl[n] = l;
			int dup = 0;
			for (unsigned int k = 0; k < n; k++)
				if (tl[k] == l && !memcmp(tmp[k], tmp[n], l))
					dup = 1;
			if (dup)
				continue;
			if (++n == SL_CACHE_VARY_NAMES_MAX)
				return -E2BIG;
		}
	}
	/* insertion sort: at most SL_CACHE_VARY_NAMES_MAX names */
	unsigned int ord[SL_CACHE_VARY_NAMES_MAX];
	for (unsigned int i = 0; i < n; i++) {
		unsigned int j = i;
		while (j > 0) {
			unsigned int a = ord[j - 1];
			size_t m = tl[a] < tl[i] ? tl[a] : tl[i];
			int c = memcmp(tmp[a], tmp[i], m);
			if (c < 0 || (c == 0 && tl[a] < tl[i]))
				break;
			ord[j] = ord[j - 1];
			j--;
		}
		ord[j] = i;
	}
	size_t len = 0;
	for (unsigned int i = 0; i < n; i++) {
		unsigned int k = ord[i];
		if (len + tl[k] + 1 > cap)
			return -E2BIG;
		memcpy(out + len, tmp[k], tl[k]);
		len += tl[k];
		out[len++] = '\0';
	}
	return (int)len;
}

int sl_cache_vary_key(const struct sl_head *req, const char *base, const char *names,
		      size_t names_len, char *out, size_t cap)
{
	size_t len = 0, pos = 0;
	while (pos < names_len) {
		const char *name = names + pos;
		size_t nl = strnlen(name, names_len - pos);
		pos += nl + 1;
		int seen = 0;
		for (unsigned int i = 0; i < req->n; i++) {
			if ((req->h[i].flags & SL_HDR_REMOVED) || req->h[i].name_len != nl ||
			    strncasecmp(sl_hdr_name(req, base, i), name, nl))
				continue;
			const char *v = sl_hdr_value(req, base, i);
			size_t vl = req->h[i].value_len;
			while (vl && ows(*v)) {
				v++;
				vl--;
			}
			while (vl && ows(v[vl - 1]))
				vl--;
			if (len + vl + 1 > cap)
				return -E2BIG;
			if (seen)
				out[len++] = ',';
			memcpy(out + len, v, vl);
			len += vl;
			seen = 1;
		}
		if (!seen) {
			if (len + 1 > cap)
				return -E2BIG;
			out[len++] = '\x01';
		}
		if (len + 1 > cap)
			return -E2BIG;
		out[len++] = '\0';
	}
	return (int)len;
}

uint32_t sl_cache_age(uint32_t initial_age, uint64_t resp_mono_ns, uint64_t now_ns)
{
	uint64_t resident = now_ns > resp_mono_ns ? (now_ns - resp_mono_ns) / 1000000000ull : 0;
	uint64_t a = (uint64_t)initial_age + resident;
	return a > SL_DELTA_MAX ? SL_DELTA_MAX : (uint32_t)a;
}

/* Weak comparison (RFC 9110 8.8.3.2): opaque tags equal, W/ ignored. */
static int etag_weak_eq(const char *a, size_t al, const char *b, size_t bl)
{
	if (al >= 2 && a[0] == 'W' && a[1] == '/') {
		a += 2;
		al -= 2;
	}
	if (bl >= 2 && b[0] == 'W' && b[1] == '/') {
		b += 2;
		bl -= 2;
	}
	return al == bl && al >= 2 && !memcmp(a, b, al);
}

static int inm_matches(const char *v, size_t n, const char *etag, size_t el)
{
	size_t i = 0;
	while (i < n) {
		while (i < n && (ows(v[i]) || v[i] == ','))
			i++;
		size_t s = i;
		if (i < n && v[i] == '*')
			return el > 0;
		if (i + 1 < n && v[i] == 'W' && v[i + 1] == '/')
			i += 2;
		if (i < n && v[i] == '"') {
			i++;
			while (i < n && v[i] != '"')
				i++;
			if (i < n)
				i++;
		} else {
			while (i < n && v[i] != ',')
				i++;
		}
		if (el && etag_weak_eq(v + s, i - s, etag, el))
			return 1;
		while (i < n && v[i] != ',')
			i++;
	}
	return 0;
}

int sl_cache_cond(const struct sl_head *req, const char *base, const char *etag, size_t etag_len,
		  const char *lm, size_t lm_len)
{
	int have_inm = 0;
	FOR_HDR(req, base, i, "if-none-match")
	{
		have_inm = 1;
		if (inm_matches(sl_hdr_value(req, base, i), req->h[i].value_len, etag, etag_len))
			return 304;
	}
	if (have_inm || !lm_len)
		return 0;
	int64_t lmt, ims;
	if (sl_http_date(lm, lm_len, &lmt) < 0)
		return 0;
	FOR_HDR(req, base, i, "if-modified-since")
	{
		if (!sl_http_date(sl_hdr_value(req, base, i), req->h[i].value_len, &ims) &&
		    lmt <= ims)
			return 304;
		return 0;
	}
	return 0;
}

static int parse_u64(const char *p, size_t n, uint64_t *out)
{
	if (!n || n > 19)
		return -1;
	uint64_t x = 0;
	for (size_t i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -1;
		x = x * 10 + (uint64_t)(p[i] - '0');
	}
	*out = x;
	return 0;
}

int sl_cache_range(const struct sl_head *req, const char *base, uint64_t len, const char *etag,
		   size_t etag_len, const char *lm, size_t lm_len, uint64_t *first,
		   uint64_t *last)
{
	int idx = -1, n_range = 0;
	FOR_HDR(req, base, i, "range")
	{
		idx = (int)i;
		n_range++;
	}
	if (idx < 0 || n_range > 1)
		return 0;
	/* If-Range: a strong entity-tag equal to ours, or a date equal to Last-Modified */
	FOR_HDR(req, base, i, "if-range")
	{
		const char *v = sl_hdr_value(req, base, i);
		size_t vl = req->h[i].value_len;
		if (vl && (v[0] == '"' || v[0] == 'W')) {
			if (v[0] == 'W' || !etag_len || etag[0] == 'W' || vl != etag_len ||
			    memcmp(v, etag, vl))
				return 0;
		} else {
			int64_t a, b;
			if (!lm_len || sl_http_date(v, vl, &a) < 0 || sl_http_date(lm, lm_len, &b) < 0 ||
			    a != b)
				return 0;
		}
	}
	const char *v = sl_hdr_value(req, base, (unsigned)idx);
	size_t n = req->h[idx].value_len;
	while (n && ows(v[n - 1]))
		n--;
	if (n < 7 || strncasecmp(v, "bytes=", 6))
		return 0;
	v += 6;
	n -= 6;
	while (n && ows(*v)) {
		v++;
		n--;
	}
	if (memchr(v, ',', n))
		return 0; /* several ranges: the whole object (RFC 9110 14.2 allows it) */
	const char *dash = memchr(v, '-', n);
	if (!dash)
		return 0;
	size_t al = (size_t)(dash - v), bl = n - al - 1;
	uint64_t a, b;
	if (!al) { /* suffix: the last b bytes */
		if (parse_u64(dash + 1, bl, &b) < 0)
			return 0;
		if (!b || !len)
			return 416;
		*first = b >= len ? 0 : len - b;
		*last = len - 1;
		return 206;
	}
	if (parse_u64(v, al, &a) < 0)
		return 0;
	if (bl) {
		if (parse_u64(dash + 1, bl, &b) < 0 || b < a)
			return 0;
	} else {
		b = UINT64_MAX;
	}
	if (a >= len)
		return 416;
	*first = a;
	*last = b >= len ? len - 1 : b;
	return 206;
}
