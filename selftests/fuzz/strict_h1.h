/* An independent, strict HTTP/1.1 message parser for the fuzz oracles: it reads what
 * sluice would put on the wire and refuses anything a careful peer could read two ways
 * (RFC 9110, RFC 9112). It shares no code with user/http so that a bug there is not
 * mirrored here. Header-only; every function is static. */
#ifndef SL_FUZZ_STRICT_H1_H
#define SL_FUZZ_STRICT_H1_H

#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* CONTRACT.md #4 caps one chunk extension at 4096 bytes; the codec counts the whole
 * framing run of a chunk line (size, ";", "=", CRLFs) against 4096 + 64, so a name or
 * value a little over 4096 bytes may pass. Past this, it is a violation. */
#define SH_MAX_EXT (4096 + 64)

struct sh_msg {
	int status; /* responses */
	int minor;
	int has_cl, chunked, conn_close;
	uint64_t cl;
	uint64_t body_len; /* decoded body bytes */
	int close_delimited;
	unsigned int n_trailers;
	char method[16]; /* requests: first bytes of the method */
};

/* Violation: the oracle says sluice emitted something it must not. */
#define SH_BAD(...)                                                                                \
	do {                                                                                       \
		fprintf(stderr, "oracle: " __VA_ARGS__);                                           \
		fputc('\n', stderr);                                                               \
		abort();                                                                           \
	} while (0)

/* A violation of a class already reported and not fixed yet: it aborts like SH_BAD unless
 * FUZZ_ORACLE_KNOWN (comma-separated classes) names it, for long runs that must get past
 * it. Then the input is given up (the oracle longjmps to sh_known_jmp). Classes:
 * chunk-crlf (bytes other than CRLF after chunk data), status (outside 100..599),
 * ext (a chunk extension over SH_MAX_EXT), ext-ctl (a control byte such as DEL in a
 * chunk extension, which llhttp's quoted-string accepts), asterisk ("*" as the target
 * of a method other than OPTIONS, RFC 9112 3.2.4), trailer-ctl (a control byte such
 * as NUL in a forwarded trailer field). */
static jmp_buf sh_known_jmp;

static inline int sh_known(const char *cls)
{
	static const char *known;
	if (!known)
		known = getenv("FUZZ_ORACLE_KNOWN") ? getenv("FUZZ_ORACLE_KNOWN") : "";
	size_t n = strlen(cls);
	for (const char *k = known; (k = strstr(k, cls)); k += n)
		if ((k == known || k[-1] == ',') && (k[n] == ',' || k[n] == '\0'))
			return 1;
	return 0;
}

#define SH_KNOWN(cls, ...)                                                                         \
	do {                                                                                       \
		if (sh_known(cls))                                                                 \
			longjmp(sh_known_jmp, 1);                                                  \
		SH_BAD("[" cls "] " __VA_ARGS__);                                                  \
	} while (0)

static inline int sh_tchar(unsigned char c)
{
	if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
		return 1;
	return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* field-value octets: VCHAR, obs-text, SP, HTAB */
static inline int sh_vchar(unsigned char c)
{
	return c == '\t' || c == ' ' || (c > 0x20 && c != 0x7f);
}

static inline int sh_ieq(const uint8_t *a, size_t n, const char *lit)
{
	size_t l = strlen(lit);
	if (n != l)
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char x = a[i], y = (unsigned char)lit[i];
		if (x >= 'A' && x <= 'Z')
			x = (unsigned char)(x + 32);
		if (x != y)
			return 0;
	}
	return 1;
}

/* One line ending in CRLF at b[*off..len): sets *ls, *ll to its content. Returns 1, or 0
 * when the bytes end first. A bare CR or a bare LF anywhere is a violation. */
static inline int sh_line(const uint8_t *b, size_t len, size_t *off, size_t *ls, size_t *ll)
{
	size_t i = *off;
	for (; i < len; i++) {
		if (b[i] == '\n')
			SH_BAD("bare LF at offset %zu", i);
		if (b[i] == '\r') {
			if (i + 1 >= len)
				return 0;
			if (b[i + 1] != '\n')
				SH_BAD("bare CR at offset %zu", i);
			*ls = *off;
			*ll = i - *off;
			*off = i + 2;
			return 1;
		}
	}
	return 0;
}

static const char *const sh_forbidden_trailers[] = {"content-length",
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
						    NULL};

static inline int sh_forbidden_trailer(const uint8_t *n, size_t nl)
{
	if (nl >= 6 && sh_ieq(n, 6, "proxy-"))
		return 1;
	if (nl >= 3 && sh_ieq(n, 3, "if-"))
		return 1;
	for (int i = 0; sh_forbidden_trailers[i]; i++)
		if (sh_ieq(n, nl, sh_forbidden_trailers[i]))
			return 1;
	return 0;
}

/* A field line "name: value": strict grammar, no obs-fold, no whitespace before ':'. */
static inline void sh_field(const uint8_t *b, size_t ls, size_t ll, size_t *nl, size_t *vs,
			    size_t *vl)
{
	const uint8_t *p = b + ls;
	size_t i = 0;
	if (ll && (p[0] == ' ' || p[0] == '\t'))
		SH_BAD("obs-fold or leading whitespace in a field line at %zu", ls);
	while (i < ll && sh_tchar(p[i]))
		i++;
	if (i == 0 || i >= ll || p[i] != ':')
		SH_BAD("bad field name at %zu", ls);
	*nl = i++;
	for (size_t j = i; j < ll; j++)
		if (!sh_vchar(p[j]))
			SH_BAD("control byte 0x%02x in field value at %zu", p[j], ls + j);
	while (i < ll && (p[i] == ' ' || p[i] == '\t'))
		i++;
	size_t e = ll;
	while (e > i && (p[e - 1] == ' ' || p[e - 1] == '\t'))
		e--;
	*vs = ls + i;
	*vl = e - i;
}

static inline int sh_token_list_has(const uint8_t *v, size_t n, const char *tok)
{
	size_t i = 0;
	while (i < n) {
		while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
			i++;
		size_t s = i;
		while (i < n && v[i] != ',')
			i++;
		size_t e = i;
		while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
			e--;
		if (e > s && sh_ieq(v + s, e - s, tok))
			return 1;
	}
	return 0;
}

/* Header fields up to the empty line. Returns 1, or 0 when the bytes end first. */
static inline int sh_fields(const uint8_t *b, size_t len, size_t *off, struct sh_msg *m)
{
	size_t ls, ll, nl, vs, vl;
	for (;;) {
		if (!sh_line(b, len, off, &ls, &ll))
			return 0;
		if (ll == 0)
			return 1;
		sh_field(b, ls, ll, &nl, &vs, &vl);
		const uint8_t *n = b + ls, *v = b + vs;
		if (sh_ieq(n, nl, "content-length")) {
			if (m->has_cl)
				SH_BAD("repeated Content-Length");
			if (vl == 0)
				SH_BAD("empty Content-Length value");
			uint64_t x = 0;
			for (size_t i = 0; i < vl; i++) {
				if (v[i] < '0' || v[i] > '9')
					SH_BAD("bad Content-Length value");
				uint64_t d = (uint64_t)(v[i] - '0');
				if (x > UINT64_MAX / 10 || x * 10 > UINT64_MAX - d)
					SH_BAD("Content-Length overflows");
				x = x * 10 + d;
			}
			m->has_cl = 1;
			m->cl = x;
		} else if (sh_ieq(n, nl, "transfer-encoding")) {
			if (m->chunked)
				SH_BAD("repeated Transfer-Encoding");
			/* a list of codings (empty elements are ignored, RFC 9110 5.6.1) whose
			 * last one, and only that one, is chunked */
			int last_chunked = 0, n_chunked = 0;
			for (size_t i = 0; i < vl;) {
				size_t s = i;
				while (i < vl && v[i] != ',')
					i++;
				size_t e = i++;
				while (s < e && (v[s] == ' ' || v[s] == '\t'))
					s++;
				while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
					e--;
				if (s == e)
					continue;
				for (size_t k = s; k < e; k++)
					if (!sh_tchar(v[k]) && v[k] != ';' && v[k] != '=' &&
					    v[k] != ' ')
						SH_BAD("bad Transfer-Encoding coding");
				last_chunked = sh_ieq(v + s, e - s, "chunked");
				n_chunked += last_chunked;
			}
			if (!last_chunked || n_chunked != 1)
				SH_BAD("Transfer-Encoding does not end in one chunked");
			m->chunked = 1;
		} else if (sh_ieq(n, nl, "connection")) {
			if (sh_token_list_has(v, vl, "close"))
				m->conn_close = 1;
		}
	}
}

/* Chunked body. Returns 1, or 0 when the bytes end first. */
static inline int sh_chunked(const uint8_t *b, size_t len, size_t *off, struct sh_msg *m)
{
	size_t ls, ll;
	for (;;) {
		if (!sh_line(b, len, off, &ls, &ll))
			return 0;
		const uint8_t *p = b + ls;
		size_t i = 0;
		uint64_t sz = 0;
		while (i < ll && ((p[i] >= '0' && p[i] <= '9') ||
				  ((p[i] | 0x20) >= 'a' && (p[i] | 0x20) <= 'f'))) {
			if (sz >> 60)
				SH_BAD("chunk size overflows");
			unsigned char c = p[i];
			sz = sz * 16 + (uint64_t)(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
			i++;
		}
		if (i == 0)
			SH_BAD("bad chunk size line at %zu", ls);
		/* Extensions: the framing needs only that the line holds no control byte and
		 * starts them with ";". Their finer grammar (empty names, token"quoted" runs)
		 * is llhttp's to judge: a peer skips them whole. Name and value lengths are
		 * capped (CONTRACT.md #4). */
		while (i < ll && (p[i] == ' ' || p[i] == '\t'))
			i++;
		if (i < ll && p[i] != ';')
			SH_BAD("bad byte 0x%02x after chunk size at %zu", p[i], ls + i);
		while (i < ll) {
			size_t s = ++i, eq = 0; /* past the ';' */
			int quoted = 0;
			for (; i < ll && (quoted || p[i] != ';'); i++) {
				if (!sh_vchar(p[i]))
					SH_KNOWN("ext-ctl",
						 "control byte 0x%02x in chunk extension", p[i]);
				if (p[i] == '"')
					quoted = !quoted;
				else if (quoted && p[i] == '\\')
					i++;
				else if (!quoted && !eq && p[i] == '=')
					eq = i;
			}
			size_t nlen = (eq ? eq : i) - s, vlen = eq ? i - eq - 1 : 0;
			if (nlen > SH_MAX_EXT)
				SH_KNOWN("ext", "chunk extension name of %zu bytes forwarded",
					 nlen);
			if (vlen > SH_MAX_EXT)
				SH_KNOWN("ext", "chunk extension value of %zu bytes forwarded",
					 vlen);
		}
		if (sz == 0)
			break;
		if (len - *off < sz + 2)
			return 0;
		*off += sz;
		m->body_len += sz;
		if (b[*off] != '\r' || b[*off + 1] != '\n')
			SH_KNOWN("chunk-crlf", "chunk data not followed by CRLF at %zu", *off);
		*off += 2;
	}
	/* trailer section */
	size_t nl, vs, vl;
	for (;;) {
		if (!sh_line(b, len, off, &ls, &ll))
			return 0;
		if (ll == 0)
			return 1;
		for (size_t i = ls; i < ls + ll; i++)
			if (!sh_vchar(b[i]))
				SH_KNOWN("trailer-ctl", "control byte 0x%02x in a trailer field",
					 b[i]);
		sh_field(b, ls, ll, &nl, &vs, &vl);
		if (sh_forbidden_trailer(b + ls, nl))
			SH_BAD("forbidden trailer field %.*s", (int)nl, (const char *)b + ls);
		m->n_trailers++;
	}
}

/* One request at b[*off..len). Returns 1 complete, 0 when the bytes end first. */
static inline int sh_request(const uint8_t *b, size_t len, size_t *off, struct sh_msg *m)
{
	size_t ls, ll;
	memset(m, 0, sizeof(*m));
	if (!sh_line(b, len, off, &ls, &ll))
		return 0;
	const uint8_t *p = b + ls;
	size_t i = 0;
	while (i < ll && sh_tchar(p[i]))
		i++;
	if (i == 0 || i >= ll || p[i] != ' ')
		SH_BAD("bad method in request line at %zu", ls);
	memcpy(m->method, p, i < sizeof(m->method) - 1 ? i : sizeof(m->method) - 1);
	size_t t = ++i;
	while (i < ll && p[i] > 0x20 && p[i] != 0x7f)
		i++;
	if (i == t || i >= ll || p[i] != ' ')
		SH_BAD("bad request target at %zu", ls + i);
	if (!(p[t] == '/' || (i - t == 1 && p[t] == '*')))
		SH_BAD("request target not in origin or asterisk form");
	if (p[t] == '*' && strcmp(m->method, "OPTIONS"))
		SH_KNOWN("asterisk", "asterisk form with a method other than OPTIONS");
	i++;
	if (ll - i != 8 || memcmp(p + i, "HTTP/1.1", 8))
		SH_BAD("request line version is not HTTP/1.1");
	m->minor = 1;
	if (!sh_fields(b, len, off, m))
		return 0;
	if (m->has_cl && m->chunked)
		SH_BAD("both Content-Length and Transfer-Encoding");
	if (m->chunked)
		return sh_chunked(b, len, off, m);
	if (m->has_cl) {
		if (len - *off < m->cl)
			return 0;
		*off += m->cl;
		m->body_len = m->cl;
	}
	return 1;
}

/* One response at b[*off..len) to a request (head_req: it was HEAD). A body delimited
 * by the end of the bytes counts as complete. Returns 1 complete, 0 bytes ended first. */
static inline int sh_response(const uint8_t *b, size_t len, size_t *off, int head_req,
			      struct sh_msg *m)
{
	size_t ls, ll;
	memset(m, 0, sizeof(*m));
	if (!sh_line(b, len, off, &ls, &ll))
		return 0;
	const uint8_t *p = b + ls;
	if (ll < 9 || memcmp(p, "HTTP/1.1 ", 9))
		SH_BAD("bad status line");
	size_t d = 9;
	int st = 0;
	while (d < ll && d < 13 && p[d] >= '0' && p[d] <= '9')
		st = st * 10 + (p[d++] - '0');
	/* status-code = 3DIGIT, and only 100..599 mean anything (RFC 9110 15) */
	if (d != 12 || st < 100 || st > 599)
		SH_KNOWN("status", "status code \"%.*s\" forwarded", (int)(d - 9),
			 (const char *)p + 9);
	if (ll > 12 && p[12] != ' ')
		SH_BAD("bad status line");
	for (size_t i = 13; i < ll; i++)
		if (!sh_vchar(p[i]))
			SH_BAD("control byte in reason phrase");
	m->minor = 1;
	m->status = st;
	if (!sh_fields(b, len, off, m))
		return 0;
	if (m->has_cl && m->chunked)
		SH_BAD("both Content-Length and Transfer-Encoding");
	if (head_req || m->status < 200 || m->status == 204 || m->status == 304)
		return 1;
	if (m->chunked)
		return sh_chunked(b, len, off, m);
	if (m->has_cl) {
		if (len - *off < m->cl)
			return 0;
		*off += m->cl;
		m->body_len = m->cl;
		return 1;
	}
	m->close_delimited = 1;
	m->body_len = len - *off;
	*off = len;
	return 1;
}

#endif
