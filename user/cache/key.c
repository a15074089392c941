/* Cache key templates (see key.h). */
#include <errno.h>
#include <string.h>

#include "cache/key.h"

static const struct {
	const char *name;
	uint8_t kind;
} vars[] = {
    {"scheme", SL_CKEY_SCHEME}, {"host", SL_CKEY_HOST},	  {"uri", SL_CKEY_URI},
    {"query", SL_CKEY_QUERY},	{"args", SL_CKEY_ARGS},	  {"method", SL_CKEY_METHOD},
};

static int name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_';
}

static int add_part(struct sl_ckey_tpl *t, uint8_t kind, const char *s, size_t len,
		    size_t *used)
{
	if (t->n == SL_CKEY_PARTS_MAX || *used + len > sizeof(t->buf))
		return -1;
	t->p[t->n].kind = kind;
	t->p[t->n].off = (uint16_t)*used;
	t->p[t->n].len = (uint16_t)len;
	memcpy(t->buf + *used, s, len);
	*used += len;
	t->n++;
	return 0;
}

int sl_ckey_compile(const char *tpl, struct sl_ckey_tpl *t, unsigned int *col, const char **why)
{
	memset(t, 0, sizeof(*t));
	size_t used = 0, n = strlen(tpl), i = 0;
	*col = 0;
	if (!n) {
		*why = "empty key template";
		return -EINVAL;
	}
	while (i < n) {
		unsigned char c = (unsigned char)tpl[i];
		if (c < 0x21 || c > 0x7e) {
			*col = (unsigned int)i;
			*why = "key template: only visible ASCII outside variables";
			return -EINVAL;
		}
		if (c != '$') {
			size_t j = i;
			while (j < n && tpl[j] != '$' && (unsigned char)tpl[j] >= 0x21 &&
			       (unsigned char)tpl[j] <= 0x7e)
				j++;
			if (add_part(t, SL_CKEY_LIT, tpl + i, j - i, &used) < 0)
				goto too_long;
			i = j;
			continue;
		}
		size_t j = i + 1;
		while (j < n && name_char(tpl[j]))
			j++;
		size_t vl = j - i - 1;
		const char *v = tpl + i + 1;
		int kind = -1;
		for (size_t k = 0; k < sizeof(vars) / sizeof(vars[0]); k++)
			if (strlen(vars[k].name) == vl && !memcmp(vars[k].name, v, vl))
				kind = vars[k].kind;
		if (kind >= 0) {
			if (add_part(t, (uint8_t)kind, "", 0, &used) < 0)
				goto too_long;
		} else if (vl > 5 && !memcmp(v, "http_", 5)) {
			char name[SL_CKEY_TPL_MAX];
			for (size_t k = 5; k < vl; k++)
				name[k - 5] = v[k] == '_' ? '-' : v[k];
			if (add_part(t, SL_CKEY_HTTP, name, vl - 5, &used) < 0)
				goto too_long;
		} else {
			*col = (unsigned int)i;
			*why = "key template: unknown variable (known: $scheme $host $uri $query "
			       "$args $method $http_NAME)";
			return -EINVAL;
		}
		i = j;
	}
	for (unsigned int k = 0; k < t->n; k++) {
		struct sl_ckey_part *p = &t->p[k];
		if (p->kind == SL_CKEY_LIT)
			continue;
		p->esc['%' >> 3] |= (uint8_t)(1 << ('%' & 7));
		if (k + 1 < t->n && t->p[k + 1].kind == SL_CKEY_LIT)
			for (unsigned int m = 0; m < t->p[k + 1].len; m++) {
				unsigned char c = (unsigned char)t->buf[t->p[k + 1].off + m];
				p->esc[c >> 3] |= (uint8_t)(1 << (c & 7));
			}
	}
	return 0;
too_long:
	*col = (unsigned int)i;
	*why = "key template too long";
	return -EINVAL;
}

struct out {
	char *p;
	size_t len, cap;
	int full;
};

static void put(struct out *o, const char *s, size_t n)
{
	if (o->full || n > o->cap - o->len) {
		o->full = 1;
		return;
	}
	memcpy(o->p + o->len, s, n);
	o->len += n;
}

static void put_esc(struct out *o, const struct sl_ckey_part *t, const char *s, size_t n,
		    int lower)
{
	static const char hex[] = "0123456789ABCDEF";
	for (size_t i = 0; i < n && !o->full; i++) {
		unsigned char c = (unsigned char)s[i];
		if (lower && c >= 'A' && c <= 'Z')
			c = (unsigned char)(c + 32);
		if (c < 0x21 || c > 0x7e || (t->esc[c >> 3] & (1 << (c & 7)))) {
			char e[3] = {'%', hex[c >> 4], hex[c & 15]};
			put(o, e, 3);
		} else {
			put(o, (const char *)&c, 1);
		}
	}
}

/* Host without its port: "[v6]:p" -> "[v6]", "h:p" -> "h". */
static size_t host_len_noport(const char *h, size_t n)
{
	if (n && h[0] == '[') {
		const char *e = memchr(h, ']', n);
		return e ? (size_t)(e - h) + 1 : n;
	}
	const char *c = memchr(h, ':', n);
	return c ? (size_t)(c - h) : n;
}

int sl_ckey_render(const struct sl_ckey_tpl *t, const struct sl_ckey_in *in, char *outp,
		   size_t cap)
{
	struct out o = {outp, 0, cap, 0};
	const char *q = in->target ? memchr(in->target, '?', in->target_len) : NULL;
	size_t path_len = q ? (size_t)(q - in->target) : in->target_len;
	for (unsigned int i = 0; i < t->n; i++) {
		const struct sl_ckey_part *p = &t->p[i];
		switch (p->kind) {
		case SL_CKEY_LIT:
			put(&o, t->buf + p->off, p->len);
			break;
		case SL_CKEY_SCHEME:
			put_esc(&o, p, in->scheme, strlen(in->scheme), 1);
			break;
		case SL_CKEY_HOST:
			if (in->host)
				put_esc(&o, p, in->host, host_len_noport(in->host, in->host_len), 1);
			break;
		case SL_CKEY_URI:
			put_esc(&o, p, in->target, path_len, 0);
			break;
		case SL_CKEY_QUERY:
			if (q)
				put_esc(&o, p, q, in->target_len - path_len, 0);
			break;
		case SL_CKEY_ARGS:
			if (q)
				put_esc(&o, p, q + 1, in->target_len - path_len - 1, 0);
			break;
		case SL_CKEY_METHOD:
			put_esc(&o, p, in->method, in->method_len, 0);
			break;
		case SL_CKEY_HTTP: {
			size_t vl = 0;
			const char *v =
			    in->header ? in->header(in->ctx, t->buf + p->off, p->len, &vl) : NULL;
			if (v)
				put_esc(&o, p, v, vl, 0);
			break;
		}
		}
	}
	if (o.full)
		return -E2BIG;
	return (int)o.len;
}
