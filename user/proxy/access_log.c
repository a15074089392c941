/* The access log: one bounded, escaped key=value line per request. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/log.h"
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

#define SL_ALOG_LINE 4096

void sl_access_log_write(struct sl_alog *alog, const struct sl_session *s)
{
	const struct sl_request *r = s->r;
	int st = r->status;
	struct logline l = {.p = sl_alog_reserve(alog, SL_ALOG_LINE), .room = SL_ALOG_LINE - 1};
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	ll_str(&l, "ts=");
	l.len += sl_fmt_time(l.p + l.len, l.room - l.len, &now);
	ll_str(&l, " worker=");
	ll_uint(&l, s->w->id);
	ll_str(&l, " client=");
	ll_str(&l, sl_session_client_str(s));
	ll_str(&l, " method=");
	if (r->req.target_len && r->rp.headers_done) {
		const char *m = llhttp_method_name((llhttp_method_t)r->rp.p.method);
		ll_val(&l, m, strlen(m), 32);
		ll_str(&l, " target=");
		ll_val(&l, s->in.data + r->req.target_off, r->req.target_len, 1024);
	} else {
		ll_str(&l, "- target=-");
	}
	/* the fixed tail must fit whatever came before: it is at most ~200 bytes */
	ll_str(&l, " status=");
	ll_uint(&l, (uint64_t)(st < 0 ? 0 : st));
	ll_str(&l, " in=");
	ll_uint(&l, r->r_in);
	ll_str(&l, " out=");
	ll_uint(&l, r->r_out);
	ll_str(&l, " upstream=");
	const char *peer = r->peer.name[0] ? r->peer.name : "-";
	ll_val(&l, peer, strnlen(peer, sizeof(r->peer.name)), 80);
	ll_str(&l, " upstream_time=");
	ll_secs(&l, r->up_time_ns);
	ll_str(&l, " time=");
	ll_secs(&l, sl_mono_ns() - r->t_start);
	if (r->log_extra_len && l.len + r->log_extra_len < l.room)
		ll_raw(&l, r->log_extra, r->log_extra_len);
	l.p[l.len++] = '\n';
	sl_alog_commit(alog, l.len);
}
