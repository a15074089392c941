/* Access-log formats: a template of literal text and $variables, compiled once when the
 * config loads (an unknown $name is a config error) and rendered per request by
 * proxy/access_log.c. The variables are named here so the config can check them. */
#ifndef SL_LOGFMT_H
#define SL_LOGFMT_H

#include <stddef.h>
#include <stdint.h>

enum sl_logvar {
	SL_LV_TIME = 0,		     /* 2026-12-02T08:00:00.123Z */
	SL_LV_WORKER,		     /* worker id */
	SL_LV_CLIENT,		     /* client ip:port */
	SL_LV_METHOD,		     /* GET */
	SL_LV_HOST,		     /* Host (or the absolute-form authority), port stripped */
	SL_LV_TARGET,		     /* request target as received */
	SL_LV_STATUS,		     /* response status (499: the client went away) */
	SL_LV_BYTES_IN,		     /* bytes read from the client for this request */
	SL_LV_BYTES_OUT,	     /* bytes written to the client */
	SL_LV_UPSTREAM,		     /* the server that answered (or was tried last) */
	SL_LV_UPSTREAM_TRIED,	     /* every server tried, in order, comma-separated */
	SL_LV_UPSTREAM_CONNECT_TIME, /* last attempt: connect started -> connected (0 reused) */
	SL_LV_UPSTREAM_HEADER_TIME,  /* first attempt started -> response head */
	SL_LV_UPSTREAM_TIME,	     /* first attempt started -> response head or failure */
	SL_LV_REQUEST_TIME,	     /* first request byte -> last response byte */
	SL_LV_REQUEST_ID,	     /* X-Request-Id: kept from the client or generated */
	SL_LV_USER_AGENT,	     /* User-Agent */
	SL_LV_REFERER,		     /* Referer */
	SL_LV_TLS_VERSION,	     /* TLSv1.3 on a TLS listener, else absent */
	SL_LV_TLS_CIPHER,	     /* TLS_AES_128_GCM_SHA256 */
	SL_LV_TLS_SNI,		     /* the server name the client asked for */
	SL_LV_TLS_RESUMED,	     /* 1 resumed session, 0 full handshake */
	SL_LV_EXTRA,		     /* fields added by the proxy's phases (sl_log_field) */
	SL_LV_NR,
};

#define SL_LOGFMT_MAX_TOKENS 64

/* One piece of a template: literal text (var < 0) or a variable. */
struct sl_logfmt_tok {
	int var;	   /* enum sl_logvar, or -1 for literal text */
	uint16_t off, len; /* the literal: bytes of sl_logfmt.text */
};

struct sl_logfmt {
	int json; /* one JSON object per line with every variable; toks unused */
	unsigned int n;
	struct sl_logfmt_tok toks[SL_LOGFMT_MAX_TOKENS];
	char text[1024];   /* the template as written */
	unsigned int uses; /* bit per variable the template names (all with json) */
};

/* The default: today's key=value line. */
extern const char sl_logfmt_default[];

/* Compile s ("json", or a template with $name / ${name}; "$$" is a literal $).
 * 0, or -EINVAL with a reason in err (an unknown variable is named). */
int sl_logfmt_compile(const char *s, struct sl_logfmt *f, char *err, size_t errlen);

/* Name of variable v (for JSON keys and errors). */
const char *sl_logvar_name(enum sl_logvar v);

#endif
