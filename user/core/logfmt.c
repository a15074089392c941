/* Access-log templates: compile "$name" templates into tokens (see logfmt.h). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/logfmt.h"

static const char *const names[SL_LV_NR] = {
    [SL_LV_TIME] = "time",
    [SL_LV_WORKER] = "worker",
    [SL_LV_CLIENT] = "client",
    [SL_LV_METHOD] = "method",
    [SL_LV_HOST] = "host",
    [SL_LV_TARGET] = "target",
    [SL_LV_STATUS] = "status",
    [SL_LV_BYTES_IN] = "bytes_in",
    [SL_LV_BYTES_OUT] = "bytes_out",
    [SL_LV_UPSTREAM] = "upstream",
    [SL_LV_UPSTREAM_TRIED] = "upstream_tried",
    [SL_LV_UPSTREAM_CONNECT_TIME] = "upstream_connect_time",
    [SL_LV_UPSTREAM_HEADER_TIME] = "upstream_header_time",
    [SL_LV_UPSTREAM_TIME] = "upstream_time",
    [SL_LV_REQUEST_TIME] = "request_time",
    [SL_LV_REQUEST_ID] = "request_id",
    [SL_LV_USER_AGENT] = "user_agent",
    [SL_LV_REFERER] = "referer",
    [SL_LV_TLS_VERSION] = "tls_version",
    [SL_LV_TLS_CIPHER] = "tls_cipher",
    [SL_LV_TLS_SNI] = "tls_sni",
    [SL_LV_TLS_RESUMED] = "tls_resumed",
    [SL_LV_EXTRA] = "extra",
};

const char sl_logfmt_default[] =
    "ts=$time worker=$worker client=$client method=$method target=$target status=$status "
    "in=$bytes_in out=$bytes_out upstream=$upstream upstream_time=$upstream_time "
    "time=$request_time$extra";

const char *sl_logvar_name(enum sl_logvar v)
{
	return (unsigned)v < SL_LV_NR ? names[v] : "?";
}

static int is_name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
}

static int add_tok(struct sl_logfmt *f, int var, size_t off, size_t len, char *err, size_t errlen)
{
	if (var < 0 && len == 0)
		return 0;
	if (f->n == SL_LOGFMT_MAX_TOKENS) {
		snprintf(err, errlen, "access_log_format has more than %d pieces",
			 SL_LOGFMT_MAX_TOKENS);
		return -EINVAL;
	}
	f->toks[f->n].var = var;
	f->toks[f->n].off = (uint16_t)off;
	f->toks[f->n].len = (uint16_t)len;
	f->n++;
	if (var >= 0)
		f->uses |= 1u << var;
	return 0;
}

int sl_logfmt_compile(const char *s, struct sl_logfmt *f, char *err, size_t errlen)
{
	memset(f, 0, sizeof(*f));
	if (!strcmp(s, "json")) {
		f->json = 1;
		f->uses = (1u << SL_LV_NR) - 1;
		return 0;
	}
	size_t n = strlen(s);
	if (n >= sizeof(f->text)) {
		snprintf(err, errlen, "access_log_format is longer than %zu bytes",
			 sizeof(f->text) - 1);
		return -EINVAL;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c == 0x7f) {
			snprintf(err, errlen,
				 "access_log_format has a control character at byte %zu (a log "
				 "line is one line)",
				 i + 1);
			return -EINVAL;
		}
	}
	memcpy(f->text, s, n + 1);
	size_t lit = 0; /* start of the literal being collected */
	for (size_t i = 0; i < n;) {
		if (s[i] != '$') {
			i++;
			continue;
		}
		if (add_tok(f, -1, lit, i - lit, err, errlen))
			return -EINVAL;
		if (s[i + 1] == '$') { /* "$$": a literal $, kept as the second one */
			lit = i + 1;
			i += 2;
			continue;
		}
		int braced = s[i + 1] == '{';
		size_t a = i + 1 + (size_t)braced, b = a;
		while (b < n && is_name_char(s[b]))
			b++;
		if (b == a || (braced && s[b] != '}')) {
			snprintf(err, errlen,
				 "access_log_format: '$' at byte %zu is not followed by a variable "
				 "name (write $$ for a dollar sign)",
				 i + 1);
			return -EINVAL;
		}
		int var = -1;
		for (int v = 0; v < SL_LV_NR; v++)
			if (strlen(names[v]) == b - a && !memcmp(names[v], s + a, b - a))
				var = v;
		if (var < 0) {
			snprintf(err, errlen,
				 "access_log_format: unknown variable $%.*s (known: time, worker, "
				 "client, method, host, target, status, bytes_in, bytes_out, "
				 "upstream, upstream_tried, upstream_connect_time, "
				 "upstream_header_time, upstream_time, request_time, request_id, "
				 "user_agent, referer, extra)",
				 (int)(b - a > 40 ? 40 : b - a), s + a);
			return -EINVAL;
		}
		if (add_tok(f, var, 0, 0, err, errlen))
			return -EINVAL;
		i = b + (size_t)braced;
		lit = i;
	}
	return add_tok(f, -1, lit, n - lit, err, errlen);
}
