/* The access log: one bounded, escaped line per request, from the configured template
 * (key=value by default) or as one JSON object. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/log.h"
#include "net/tls.h"
#include "proxy/access_log.h"
#include "proxy/session.h"

/* Access-log line builder: every append is bounded; a field that does not fit is cut
 * with a "..." marker, and the line always ends in a newline within its room. */
struct logline {
	char *p;
	size_t len, room;
};

static void ll_raw(struct logline *l, const char *s, size_t n)
{
	if (n > l->room - l->len)
		n = l->room - l->len;
	memcpy(l->p + l->len, s, n);
	l->len += n;
}

static void ll_str(struct logline *l, const char *s)
{
	ll_raw(l, s, strlen(s));
}

static void ll_uint(struct logline *l, uint64_t v)
{
	char tmp[24];
	int i = (int)sizeof(tmp);
	do {
		tmp[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	ll_raw(l, tmp + i, sizeof(tmp) - (size_t)i);
}

static void ll_secs(struct logline *l, uint64_t ns)
{
	char tmp[32];
	int n = snprintf(tmp, sizeof(tmp), "%.3f", (double)ns / 1e9);
	ll_raw(l, tmp, n > 0 ? (size_t)n : 0);
}

/* A value: as is when it is a plain token, else quoted with " and \ escaped and other
 * non-printable bytes as \xHH. At most max bytes of output. */
static void ll_val(struct logline *l, const char *v, size_t n, size_t max)
{
	static const char hex[] = "0123456789abcdef";
	size_t room = l->room - l->len;
	if (max > room)
		max = room;
	int quote = n == 0;
	for (size_t i = 0; i < n && !quote; i++)
		if ((unsigned char)v[i] <= ' ' || v[i] == '"' || v[i] == '\\' ||
		    (unsigned char)v[i] >= 0x7f)
			quote = 1;
	if (!quote && n <= max) {
		ll_raw(l, v, n);
		return;
	}
	if (max < 6) /* not even "..." fits */
		return;
	char *p = l->p + l->len;
	size_t o = 0, end = max - 4; /* room for `..."` after the cut */
	p[o++] = '"';
	size_t i = 0;
	for (; i < n; i++) {
		unsigned char ch = (unsigned char)v[i];
		size_t need = (ch == '"' || ch == '\\') ? 2 : (ch < ' ' || ch >= 0x7f) ? 4 : 1;
		if (o + need > end)
			break;
		if (need == 2) {
			p[o++] = '\\';
			p[o++] = (char)ch;
		} else if (need == 4) {
			p[o++] = '\\';
			p[o++] = 'x';
			p[o++] = hex[ch >> 4];
			p[o++] = hex[ch & 15];
		} else {
			p[o++] = (char)ch;
		}
	}
	if (i < n) {
		memcpy(p + o, "...", 3);
		o += 3;
	}
	p[o++] = '"';
	l->len += o;
}

/* A JSON string: " \ and control bytes escaped, bytes >= 0x7f as \u00XX (the line stays
 * ASCII and valid JSON whatever the client sent). At most max bytes of output. */
static void ll_json(struct logline *l, const char *v, size_t n, size_t max)
{
	static const char hex[] = "0123456789abcdef";
	size_t room = l->room - l->len;
	if (max > room)
		max = room;
	if (max < 6)
		return;
	char *p = l->p + l->len;
	size_t o = 0, end = max - 4;
	p[o++] = '"';
	size_t i = 0;
	for (; i < n; i++) {
		unsigned char ch = (unsigned char)v[i];
		size_t need = (ch == '"' || ch == '\\') ? 2 : (ch < ' ' || ch >= 0x7f) ? 6 : 1;
		if (o + need > end)
			break;
		if (need == 2) {
			p[o++] = '\\';
			p[o++] = (char)ch;
		} else if (need == 6) {
			memcpy(p + o, "\\u00", 4);
			p[o + 4] = hex[ch >> 4];
			p[o + 5] = hex[ch & 15];
			o += 6;
		} else {
			p[o++] = (char)ch;
		}
	}
	if (i < n) {
		memcpy(p + o, "...", 3);
		o += 3;
	}
	p[o++] = '"';
	l->len += o;
}

#define SL_ALOG_LINE 4096

enum vkind { V_NONE, V_STR, V_UINT, V_SECS, V_TIME };

struct vval {
	enum vkind kind;
	const char *s;
	size_t n, max; /* string, bytes, most bytes of output */
	uint64_t u;    /* number, or nanoseconds */
};

static void req_header(const struct sl_session *s, const char *name, struct vval *v)
{
	const struct sl_request *r = s->r;
	if (!r->rp.headers_done)
		return;
	int i = sl_head_find(&r->req, s->in.data, name, strlen(name));
	if (i < 0)
		return;
	v->kind = V_STR;
	v->s = sl_hdr_value(&r->req, s->in.data, (unsigned)i);
	v->n = r->req.h[i].value_len;
	v->max = 256;
}

static void get_var(struct sl_session *s, int var, uint64_t now, struct vval *v)
{
	const struct sl_request *r = s->r;
	int have_head = r->req.target_len && r->rp.headers_done;
	memset(v, 0, sizeof(*v));
	switch (var) {
	case SL_LV_TIME:
		v->kind = V_TIME;
		break;
	case SL_LV_WORKER:
		v->kind = V_UINT;
		v->u = s->w->id;
		break;
	case SL_LV_CLIENT:
		v->kind = V_STR;
		v->s = sl_session_client_str(s);
		v->n = strlen(v->s);
		v->max = 64;
		break;
	case SL_LV_METHOD:
		if (have_head) {
			v->kind = V_STR;
			v->s = llhttp_method_name((llhttp_method_t)r->rp.p.method);
			v->n = strlen(v->s);
			v->max = 32;
		}
		break;
	case SL_LV_HOST:
		if (have_head && (v->s = sl_req_host(s, &v->n))) {
			v->kind = V_STR;
			v->max = 256;
		}
		break;
	case SL_LV_TARGET:
		if (have_head) {
			v->kind = V_STR;
			v->s = s->in.data + r->req.target_off;
			v->n = r->req.target_len;
			v->max = 1024;
		}
		break;
	case SL_LV_STATUS:
		v->kind = V_UINT;
		v->u = (uint64_t)(r->status < 0 ? 0 : r->status);
		break;
	case SL_LV_BYTES_IN:
		v->kind = V_UINT;
		v->u = r->r_in;
		break;
	case SL_LV_BYTES_OUT:
		v->kind = V_UINT;
		v->u = r->r_out;
		break;
	case SL_LV_UPSTREAM:
		if (r->peer.name[0]) {
			v->kind = V_STR;
			v->s = r->peer.name;
			v->n = strnlen(r->peer.name, sizeof(r->peer.name));
			v->max = 80;
		}
		break;
	case SL_LV_UPSTREAM_TRIED:
		if (r->tried_len) {
			v->kind = V_STR;
			v->s = r->tried_names;
			v->n = r->tried_len;
			v->max = 200;
		}
		break;
	case SL_LV_UPSTREAM_CONNECT_TIME:
		if (r->t_try && r->t_up >= r->t_try) {
			v->kind = V_SECS;
			v->u = r->t_up - r->t_try;
		}
		break;
	case SL_LV_UPSTREAM_HEADER_TIME:
		if (r->t_up0 && r->t_hdr) {
			v->kind = V_SECS;
			v->u = r->t_hdr - r->t_up0;
		}
		break;
	case SL_LV_UPSTREAM_TIME:
		/* to the response head, or to now for an attempt that never got one (a 504
		 * after the response timeout is logged right when it is sent) */
		if (r->t_up0) {
			v->kind = V_SECS;
			v->u = (r->t_hdr ? r->t_hdr : now) - r->t_up0;
		}
		break;
	case SL_LV_REQUEST_TIME:
		v->kind = V_SECS;
		v->u = now - r->t_start;
		break;
	case SL_LV_REQUEST_ID:
		v->kind = V_STR;
		v->s = sl_session_request_id(s, &v->n);
		v->max = 72;
		break;
	case SL_LV_USER_AGENT:
		req_header(s, "user-agent", v);
		break;
	case SL_LV_REFERER:
		req_header(s, "referer", v);
		break;
	case SL_LV_TLS_VERSION:
	case SL_LV_TLS_CIPHER:
	case SL_LV_TLS_SNI:
	case SL_LV_TLS_RESUMED: {
		SSL *ssl = sl_tls_ssl(&s->io);
		if (!ssl)
			break;
		if (var == SL_LV_TLS_RESUMED) {
			v->kind = V_UINT;
			v->u = (uint64_t)SSL_session_reused(ssl);
			break;
		}
		v->s = var == SL_LV_TLS_VERSION	 ? SSL_get_version(ssl)
		       : var == SL_LV_TLS_CIPHER ? SSL_get_cipher_name(ssl)
						 : SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
		if (v->s) {
			v->kind = V_STR;
			v->n = strlen(v->s);
			v->max = 256; /* the SNI is the client's: escaped like any value */
		}
		break;
	}
	case SL_LV_EXTRA:
		if (r->log_extra_len) {
			v->kind = V_STR;
			v->s = r->log_extra;
			v->n = r->log_extra_len;
			v->max = sizeof(r->log_extra);
		}
		break;
	}
}

static void put_time(struct logline *l)
{
	struct timespec ts;
	char b[40];
	clock_gettime(CLOCK_REALTIME, &ts);
	ll_raw(l, b, sl_fmt_time(b, sizeof(b), &ts));
}

/* A template variable: strings as key=value values (plain, or quoted and escaped);
 * $extra as the phases wrote it (" key=value" pairs, already escaped); "-" when absent. */
static void put_text(struct logline *l, int var, const struct vval *v)
{
	switch (v->kind) {
	case V_NONE:
		if (var != SL_LV_EXTRA) /* no fields added: nothing, not "-" */
			ll_raw(l, "-", 1);
		break;
	case V_TIME:
		put_time(l);
		break;
	case V_UINT:
		ll_uint(l, v->u);
		break;
	case V_SECS:
		ll_secs(l, v->u);
		break;
	case V_STR:
		if (var == SL_LV_EXTRA)
			ll_raw(l, v->s, v->n);
		else
			ll_val(l, v->s, v->n, v->max);
		break;
	}
}

static void put_json(struct logline *l, int var, const struct vval *v)
{
	switch (v->kind) {
	case V_NONE:
		ll_raw(l, "null", 4);
		break;
	case V_TIME:
		ll_raw(l, "\"", 1);
		put_time(l);
		ll_raw(l, "\"", 1);
		break;
	case V_UINT:
		ll_uint(l, v->u);
		break;
	case V_SECS:
		ll_secs(l, v->u);
		break;
	case V_STR: {
		const char *p = v->s;
		size_t n = v->n;
		if (var == SL_LV_EXTRA && n && p[0] == ' ') { /* " k=v k2=v2" -> "k=v k2=v2" */
			p++;
			n--;
		}
		ll_json(l, p, n, v->max + 16);
		break;
	}
	}
}

void sl_access_log_write(struct sl_alog *alog, struct sl_session *s)
{
	const struct sl_request *r = s->r;
	const struct sl_logfmt *f = &r->hold->conf->log.access_log_format;
	struct logline l = {.p = sl_alog_reserve(alog, SL_ALOG_LINE), .room = SL_ALOG_LINE - 1};
	uint64_t now = sl_mono_ns();
	struct vval v;
	if (f->json) {
		ll_raw(&l, "{", 1);
		for (int var = 0; var < SL_LV_NR; var++) {
			if (var)
				ll_raw(&l, ",", 1);
			ll_raw(&l, "\"", 1);
			ll_str(&l, sl_logvar_name(var));
			ll_raw(&l, "\":", 2);
			get_var(s, var, now, &v);
			put_json(&l, var, &v);
		}
		/* a cut line would not parse: the room is sized so that it never is (every
		 * value is bounded), and the closing brace is kept in any case */
		if (l.len == l.room)
			l.len--;
		l.p[l.len++] = '}';
	} else {
		for (unsigned int i = 0; i < f->n; i++) {
			const struct sl_logfmt_tok *t = &f->toks[i];
			if (t->var < 0) {
				ll_raw(&l, f->text + t->off, t->len);
				continue;
			}
			get_var(s, t->var, now, &v);
			put_text(&l, t->var, &v);
		}
	}
	l.p[l.len++] = '\n';
	sl_alog_commit(alog, l.len);
}
