/* Configuration loader: one YAML file (docs/configuration.md) -> one immutable, refcounted
 * struct sl_conf snapshot. Every rejection names its node as FILE:LINE:COLUMN (1-based). */
#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <netdb.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <pwd.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <yaml.h>

#include "cache/key.h" /* templates only: no dependencies */
#include "config/config.h"
#include "sluice_common.h"

/* A configuration is a few KiB; refuse to slurp something absurd by mistake. */
#define CONF_FILE_MAX (16u << 20)

struct parse {
	yaml_document_t *doc;
	const char *name; /* file name for messages */
	char *err;
	size_t errlen;
	struct sl_conf *c;
	char kbuf[256]; /* scratch for "listeners[0].routes[1].path" in messages */
};

static int __attribute__((format(printf, 3, 4)))
fail_at(struct parse *p, yaml_mark_t m, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (!p->err || !p->errlen)
		return -EINVAL;
	/* libyaml marks are 0-based; editors and compilers count from 1. */
	n = snprintf(p->err, p->errlen, "%s:%zu:%zu: ", p->name, m.line + 1, m.column + 1);
	if (n >= 0 && (size_t)n < p->errlen) {
		va_start(ap, fmt);
		vsnprintf(p->err + n, p->errlen - n, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

#define fail(p, node, ...) fail_at(p, (node)->start_mark, __VA_ARGS__)

static int oom(struct parse *p)
{
	if (p->err && p->errlen)
		snprintf(p->err, p->errlen, "%s: out of memory", p->name);
	return -ENOMEM;
}

static const char *kname(struct parse *p, const char *where, const char *key)
{
	snprintf(p->kbuf, sizeof(p->kbuf), "%s%s%s", where, *where ? "." : "", key);
	return p->kbuf;
}

static yaml_node_t *node_at(struct parse *p, int id)
{
	return yaml_document_get_node(p->doc, id);
}

static const char *sval(const yaml_node_t *n)
{
	return (const char *)n->data.scalar.value;
}

/* Next key and value of a mapping; *it starts at 0. */
static bool next_pair(struct parse *p, const yaml_node_t *map, size_t *it, yaml_node_t **k,
		      yaml_node_t **v)
{
	const yaml_node_pair_t *pair = map->data.mapping.pairs.start + *it;

	if (pair >= map->data.mapping.pairs.top)
		return false;
	*k = node_at(p, pair->key);
	*v = node_at(p, pair->value);
	(*it)++;
	return true;
}

#define KEY_IS(k, s) (!strcmp(sval(k), (s)))

static size_t n_pairs(const yaml_node_t *map)
{
	return map->data.mapping.pairs.top - map->data.mapping.pairs.start;
}

static size_t n_items(const yaml_node_t *seq)
{
	return seq->data.sequence.items.top - seq->data.sequence.items.start;
}

static bool is_null(const yaml_node_t *n)
{
	const char *s = sval(n);

	if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") ||
	       !strcmp(s, "NULL");
}

struct key_ref {
	const yaml_node_t *k;
	size_t pos; /* index of the pair in the mapping */
};

static int key_cmp(const void *pa, const void *pb)
{
	const struct key_ref *a = pa, *b = pb;
	size_t la = a->k->data.scalar.length, lb = b->k->data.scalar.length;
	int r;

	if (la != lb)
		return la < lb ? -1 : 1;
	r = memcmp(a->k->data.scalar.value, b->k->data.scalar.value, la);
	if (r)
		return r;
	return a->pos < b->pos ? -1 : a->pos > b->pos;
}

static bool same_key(const yaml_node_t *a, const yaml_node_t *b)
{
	return a->data.scalar.length == b->data.scalar.length &&
	       !memcmp(a->data.scalar.value, b->data.scalar.value, a->data.scalar.length);
}

/* Keys must be strings and unique: libyaml keeps duplicates, and a silent last-one-wins
 * would hide the typo that produced them. The reported duplicate is the first key, in file
 * order, that repeats an earlier one. Large mappings are checked by sorting: comparing every
 * pair made a 100,000-key mapping take over a minute to reject. */
static int want_map(struct parse *p, yaml_node_t *n, const char *what)
{
	yaml_node_pair_t *a, *b;
	size_t cnt, i, first = SIZE_MAX;
	struct key_ref *refs;

	if (n->type != YAML_MAPPING_NODE)
		return fail(p, n, "%s must be a mapping", what);
	cnt = n_pairs(n);
	for (a = n->data.mapping.pairs.start; a < n->data.mapping.pairs.top; a++) {
		yaml_node_t *k = node_at(p, a->key);

		if (k->type != YAML_SCALAR_NODE)
			return fail(p, k, "keys of %s must be strings", what);
		if (cnt > 16)
			continue;
		for (b = n->data.mapping.pairs.start; b < a; b++)
			if (same_key(node_at(p, b->key), k))
				return fail(p, k, "duplicate key '%s' in %s", sval(k), what);
	}
	if (cnt <= 16)
		return 0;
	refs = malloc(cnt * sizeof(*refs));
	if (!refs)
		return oom(p);
	for (i = 0; i < cnt; i++) {
		refs[i].k = node_at(p, n->data.mapping.pairs.start[i].key);
		refs[i].pos = i;
	}
	qsort(refs, cnt, sizeof(*refs), key_cmp);
	/* equal keys sort together by position: every one but the first of a run repeats it */
	for (i = 1; i < cnt; i++)
		if (same_key(refs[i - 1].k, refs[i].k) && refs[i].pos < first)
			first = refs[i].pos;
	free(refs);
	if (first == SIZE_MAX)
		return 0;
	yaml_node_t *k = node_at(p, n->data.mapping.pairs.start[first].key);
	return fail(p, k, "duplicate key '%s' in %s", sval(k), what);
}

static int unknown(struct parse *p, yaml_node_t *k, const char *where)
{
	if (!*where)
		return fail(p, k, "unknown top-level key '%s'", sval(k));
	return fail(p, k, "unknown key '%s' in %s", sval(k), where);
}

/* Everything but a respond body is used as a C string, so an embedded NUL would truncate it. */
static int want_str(struct parse *p, yaml_node_t *n, const char *where, const char *key)
{
	if (n->type != YAML_SCALAR_NODE || is_null(n))
		return fail(p, n, "%s must be a string", kname(p, where, key));
	if (strlen(sval(n)) != n->data.scalar.length)
		return fail(p, n, "%s contains a NUL byte", kname(p, where, key));
	return 0;
}

static int get_str(struct parse *p, yaml_node_t *n, const char *where, const char *key, char **out)
{
	int ret = want_str(p, n, where, key);

	if (ret)
		return ret;
	free(*out);
	*out = strdup(sval(n));
	return *out ? 0 : oom(p);
}

static int get_uint(struct parse *p, yaml_node_t *n, const char *where, const char *key,
		    uint64_t min, uint64_t max, uint64_t *out)
{
	const char *s;
	uint64_t v = 0;

	if (n->type != YAML_SCALAR_NODE || is_null(n))
		goto bad;
	for (s = sval(n); *s; s++) {
		if (*s < '0' || *s > '9')
			goto bad;
		if (v > (UINT64_MAX - (*s - '0')) / 10)
			goto range;
		v = v * 10 + (*s - '0');
	}
	if ((size_t)(s - sval(n)) != n->data.scalar.length)
		goto bad;
	if (v < min || v > max)
		goto range;
	*out = v;
	return 0;
range:
	return fail(p, n, "%s out of range (%llu..%llu)", kname(p, where, key),
		    (unsigned long long)min, (unsigned long long)max);
bad:
	return fail(p, n, "%s must be an integer", kname(p, where, key));
}

static int get_bool(struct parse *p, yaml_node_t *n, const char *where, const char *key, int *out)
{
	static const char *const yes[] = {"true", "yes", "on"}, *const no[] = {"false", "no",
									       "off"};
	size_t i;

	if (n->type == YAML_SCALAR_NODE) {
		for (i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
			if (!strcasecmp(sval(n), yes[i])) {
				*out = 1;
				return 0;
			}
			if (!strcasecmp(sval(n), no[i])) {
				*out = 0;
				return 0;
			}
		}
	}
	return fail(p, n, "%s must be true or false", kname(p, where, key));
}

static int get_duration(struct parse *p, yaml_node_t *n, const char *where, const char *key,
			unsigned int min, unsigned int *out)
{
	unsigned int v;
	int ret = want_str(p, n, where, key);

	if (ret)
		return ret;
	if (sl_parse_duration(sval(n), &v))
		return fail(p, n, "%s: invalid duration '%s' (e.g. 250ms, 10s, 2m, 1h)",
			    kname(p, where, key), sval(n));
	if (v < min)
		return fail(p, n, "%s out of range (at least %ums)", kname(p, where, key), min);
	*out = v;
	return 0;
}

static int get_size(struct parse *p, yaml_node_t *n, const char *where, const char *key,
		    uint64_t min, uint64_t max, const char *range, uint64_t *out)
{
	uint64_t v;
	int ret = want_str(p, n, where, key);

	if (ret)
		return ret;
	if (sl_parse_size(sval(n), &v))
		return fail(p, n, "%s: invalid size '%s' (e.g. 512, 32k, 10m)",
			    kname(p, where, key), sval(n));
	if (v < min || v > max)
		return fail(p, n, "%s out of range (%s)", kname(p, where, key), range);
	*out = v;
	return 0;
}

static int get_addr(struct parse *p, yaml_node_t *n, const char *where, char **text,
		    struct sockaddr_storage *ss, socklen_t *len)
{
	int ret = get_str(p, n, where, "address", text);

	if (ret)
		return ret;
	ret = sl_parse_addr(*text, ss, len);
	if (ret == -ENOENT || ret == -EAGAIN)
		return fail(p, n, "%s: cannot resolve '%s'", kname(p, where, "address"), *text);
	if (ret)
		return fail(p, n, "%s: invalid address '%s' (host:port, :port or [v6]:port)",
			    kname(p, where, "address"), *text);
	return 0;
}

static bool same_sockaddr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return false;
	if (a->ss_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;

		return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	if (a->ss_family == AF_INET6) {
		const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;

		return x->sin6_port == y->sin6_port && x->sin6_scope_id == y->sin6_scope_id &&
		       !memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr));
	}
	return false;
}

static int parse_workers(struct parse *p, yaml_node_t *v)
{
	uint64_t n = 0;
	int ret;

	if (v->type == YAML_SCALAR_NODE && !strcmp(sval(v), "auto")) {
		p->c->workers = 0;
		return 0;
	}
	if (v->type != YAML_SCALAR_NODE || !v->data.scalar.length ||
	    strspn(sval(v), "0123456789") != v->data.scalar.length)
		return fail(p, v, "workers must be 'auto' or a number 1..256");
	ret = get_uint(p, v, "", "workers", 1, 256, &n);
	p->c->workers = n;
	return ret;
}

static int parse_log(struct parse *p, yaml_node_t *n)
{
	static const char *const levels[] = {
	    [SL_LOG_DEBUG] = "debug",
	    [SL_LOG_INFO] = "info",
	    [SL_LOG_WARN] = "warn",
	    [SL_LOG_ERROR] = "error",
	};
	const unsigned int n_levels = sizeof(levels) / sizeof(levels[0]);
	struct sl_conf_log *lg = &p->c->log;
	yaml_node_t *k, *v;
	size_t it;
	unsigned int i;
	int ret = want_map(p, n, "log");

	if (ret)
		return ret;
	for (it = 0; next_pair(p, n, &it, &k, &v);) {
		if (KEY_IS(k, "level")) {
			ret = want_str(p, v, "log", "level");
			if (ret)
				return ret;
			for (i = 0; i < n_levels && strcmp(sval(v), levels[i]); i++)
				;
			if (i == n_levels)
				return fail(p, v, "log.level must be debug, info, warn or error");
			lg->level = i;
		} else if (KEY_IS(k, "error_log")) {
			ret = want_str(p, v, "log", "error_log");
			if (!ret && strcmp(sval(v), "stderr"))
				ret = get_str(p, v, "log", "error_log", &lg->error_log);
		} else if (KEY_IS(k, "access_log")) {
			/* "off" is a YAML 1.1 boolean; take it and its spellings as the keyword. */
			if (v->type == YAML_SCALAR_NODE &&
			    (!strcasecmp(sval(v), "off") || !strcasecmp(sval(v), "false") ||
			     !strcasecmp(sval(v), "no")))
				continue;
			ret = get_str(p, v, "log", "access_log", &lg->access_log);
		} else if (KEY_IS(k, "access_log_format")) {
			char why[SL_CONF_ERR_MAX - 64];
			ret = want_str(p, v, "log", "access_log_format");
			if (!ret &&
			    sl_logfmt_compile(sval(v), &lg->access_log_format, why, sizeof(why)))
				ret = fail(p, v, "log.%s", why);
		} else {
			ret = unknown(p, k, "log");
		}
		if (ret)
			return ret;
	}
	return 0;
}

static int parse_shutdown(struct parse *p, yaml_node_t *n)
{
	yaml_node_t *k, *v;
	size_t it;
	int ret = want_map(p, n, "shutdown");

	if (ret)
		return ret;
	for (it = 0; next_pair(p, n, &it, &k, &v);) {
		if (KEY_IS(k, "grace"))
			ret = get_duration(p, v, "shutdown", "grace", 0, &p->c->shutdown_grace);
		else
			ret = unknown(p, k, "shutdown");
		if (ret)
			return ret;
	}
	return 0;
}

static int parse_limits(struct parse *p, yaml_node_t *n)
{
	struct sl_conf_limits *lim = &p->c->limits;
	yaml_node_t *k, *v;
	size_t it;
	uint64_t x = 0;
	int ret = want_map(p, n, "limits");

	if (ret)
		return ret;
	for (it = 0; next_pair(p, n, &it, &k, &v);) {
		if (KEY_IS(k, "max_header_count")) {
			ret = get_uint(p, v, "limits", "max_header_count", 1, 256, &x);
			lim->max_header_count = x;
		} else if (KEY_IS(k, "max_header_bytes")) {
			ret = get_size(p, v, "limits", "max_header_bytes", 1024, 1024 * 1024,
				       "1k..1m", &x);
			lim->max_header_bytes = x;
		} else if (KEY_IS(k, "max_target_length")) {
			ret = get_size(p, v, "limits", "max_target_length", 256, 1024 * 1024,
				       "256..1m", &x);
			lim->max_target_length = x;
		} else if (KEY_IS(k, "max_body_size")) {
			ret = get_size(p, v, "limits", "max_body_size", 0, UINT64_MAX, "", &x);
			lim->max_body_size = x;
		} else if (KEY_IS(k, "max_connections")) {
			ret = get_uint(p, v, "limits", "max_connections", 1, 10000000, &x);
			lim->max_connections = x;
		} else {
			ret = unknown(p, k, "limits");
		}
		if (ret)
			return ret;
	}
	return 0;
}

static int parse_timeouts(struct parse *p, yaml_node_t *n)
{
	struct sl_conf_timeouts *t = &p->c->timeouts;
	const struct {
		const char *key;
		unsigned int *ms;
	} keys[] = {
	    {"client_header", &t->client_header},
	    {"client_keepalive", &t->client_keepalive},
	    {"client_body", &t->client_body},
	    {"upstream_connect", &t->upstream_connect},
	    {"upstream_response_header", &t->upstream_response_header},
	    {"upstream_idle", &t->upstream_idle},
	};
	const size_t n_keys = sizeof(keys) / sizeof(keys[0]);
	yaml_node_t *k, *v;
	size_t it, i;
	int ret = want_map(p, n, "timeouts");

	if (ret)
		return ret;
	for (it = 0; next_pair(p, n, &it, &k, &v);) {
		for (i = 0; i < n_keys && !KEY_IS(k, keys[i].key); i++)
			;
		/* A zero timeout would fire before the first byte could arrive. */
		if (i < n_keys)
			ret = get_duration(p, v, "timeouts", keys[i].key, 1, keys[i].ms);
		else
			ret = unknown(p, k, "timeouts");
		if (ret)
			return ret;
	}
	return 0;
}

static int parse_forwarded(struct parse *p, yaml_node_t *n)
{
	struct sl_conf_forwarded *f = &p->c->forwarded;
	yaml_node_t *k, *v;
	size_t it;
	int ret = want_map(p, n, "forwarded");

	if (ret)
		return ret;
	for (it = 0; next_pair(p, n, &it, &k, &v);) {
		if (KEY_IS(k, "x_forwarded_for"))
			ret = get_bool(p, v, "forwarded", "x_forwarded_for", &f->x_forwarded_for);
		else if (KEY_IS(k, "x_forwarded_proto"))
			ret =
			    get_bool(p, v, "forwarded", "x_forwarded_proto", &f->x_forwarded_proto);
		else if (KEY_IS(k, "x_forwarded_host"))
			ret = get_bool(p, v, "forwarded", "x_forwarded_host", &f->x_forwarded_host);
		else if (KEY_IS(k, "x_request_id")) {
			static const char *const modes[] = {"off", "keep", "generate"};
			ret = v->type == YAML_SCALAR_NODE ? 0 : -1;
			f->x_request_id = -1;
			for (int i = 0; !ret && i < 3; i++)
				if (!strcasecmp(sval(v), modes[i]) ||
				    (i == 0 &&
				     (!strcasecmp(sval(v), "false") || !strcasecmp(sval(v), "no"))))
					f->x_request_id = i;
			ret = f->x_request_id < 0 ? fail(p, v,
							 "forwarded.x_request_id must be off, "
							 "keep or generate")
						  : 0;
		} else
			ret = unknown(p, k, "forwarded");
		if (ret)
			return ret;
	}
	return 0;
}

static int parse_server(struct parse *p, yaml_node_t *n, const char *where,
			struct sl_conf_server *s)
{
	yaml_node_t *k, *v, *addr = NULL;
	size_t it;
	uint64_t w = 0;
	int ret = want_map(p, n, where);

	if (ret)
		return ret;
	s->weight = 1;
	for (it = 0; next_pair(p, n, &it, &k, &v);) {
		if (KEY_IS(k, "address")) {
			addr = v;
		} else if (KEY_IS(k, "weight")) {
			ret = get_uint(p, v, where, "weight", 1, 1000, &w);
			s->weight = w;
		} else {
			ret = unknown(p, k, where);
		}
		if (ret)
			return ret;
	}
	if (!addr)
		return fail(p, n, "%s has no address", where);
	return get_addr(p, addr, where, &s->address, &s->addr, &s->addrlen);
}

static int parse_pool(struct parse *p, yaml_node_t *n, const char *uwhere,
		      struct sl_conf_upstream *u)
{
	struct sl_conf_pool *pl = &u->pool;
	yaml_node_t *k, *v;
	char where[192];
	uint64_t x = 0;
	size_t it;
	int ret;

	snprintf(where, sizeof(where), "%s.pool", uwhere);
	ret = want_map(p, n, where);
	if (ret)
		return ret;
	for (it = 0; next_pair(p, n, &it, &k, &v);) {
		if (KEY_IS(k, "max_idle_per_worker")) {
			ret = get_uint(p, v, where, "max_idle_per_worker", 0, 65535, &x);
			pl->max_idle_per_worker = (unsigned int)x;
		} else if (KEY_IS(k, "max_idle_shared")) {
			ret = get_uint(p, v, where, "max_idle_shared", 0, 65535, &x);
			pl->max_idle_shared = (unsigned int)x;
		} else if (KEY_IS(k, "idle_timeout")) {
			ret = get_duration(p, v, where, "idle_timeout", 1, &pl->idle_timeout);
		} else if (KEY_IS(k, "max_requests_per_conn")) {
			ret = get_uint(p, v, where, "max_requests_per_conn", 0, 100000000, &x);
			pl->max_requests_per_conn = (unsigned int)x;
		} else if (KEY_IS(k, "max_conns_per_server")) {
			ret = get_uint(p, v, where, "max_conns_per_server", 0, 1000000, &x);
			pl->max_conns_per_server = (unsigned int)x;
		} else if (KEY_IS(k, "queue_timeout")) {
			ret = get_duration(p, v, where, "queue_timeout", 1, &pl->queue_timeout);
		} else {
			ret = unknown(p, k, where);
		}
		if (ret)
			return ret;
	}
	return 0;
}

static int check_dup_servers(struct parse *p, yaml_node_t *servers, struct sl_conf_upstream *u);

static bool is_prime(uint64_t n)
{
	if (n < 2)
		return false;
	for (uint64_t d = 2; d * d <= n; d++)
		if (n % d == 0)
			return false;
	return true;
}

static int parse_balance(struct parse *p, yaml_node_t *v, const char *where,
			 struct sl_lb_policy *pol)
{
	static const struct {
		const char *name;
		enum sl_balance b;
	} names[] = {{"round_robin", SL_BAL_ROUND_ROBIN}, {"least_conn", SL_BAL_LEAST_CONN},
		     {"random_two", SL_BAL_RANDOM_TWO},	  {"maglev", SL_BAL_MAGLEV},
		     {"ketama", SL_BAL_KETAMA},		  {"ewma", SL_BAL_EWMA}};
	int ret = want_str(p, v, where, "balance");

	if (ret)
		return ret;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (!strcmp(sval(v), names[i].name)) {
			pol->balance = names[i].b;
			return 0;
		}
	return fail(p, v,
		    "%s: unknown balancer '%s' (round_robin, least_conn, random_two, maglev, "
		    "ketama, ewma)",
		    kname(p, where, "balance"), sval(v));
}

/* An HTTP token: what a header or cookie name may be made of. */
static bool is_token(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!(isalnum((unsigned char)*s) || strchr("!#$%&'*+-.^_`|~", *s)))
			return false;
	return true;
}

static int parse_hash_key(struct parse *p, yaml_node_t *v, const char *where,
			  struct sl_lb_policy *pol)
{
	int ret = want_str(p, v, where, "hash_key");
	const char *s;

	if (ret)
		return ret;
	s = sval(v);
	if (!strcmp(s, "client_ip")) {
		pol->hash_key = SL_HASH_CLIENT_IP;
		return 0;
	}
	if (!strcmp(s, "uri")) {
		pol->hash_key = SL_HASH_URI;
		return 0;
	}
	if (!strncmp(s, "header:", 7) || !strncmp(s, "cookie:", 7)) {
		if (!is_token(s + 7) || strlen(s + 7) > 64)
			return fail(p, v, "%s: '%s' needs a header or cookie name (a token of 1..64 "
					  "characters)",
				    kname(p, where, "hash_key"), s);
		pol->hash_key = s[0] == 'h' ? SL_HASH_HEADER : SL_HASH_COOKIE;
		free(pol->hash_name);
		pol->hash_name = strdup(s + 7);
		return pol->hash_name ? 0 : oom(p);
	}
	return fail(p, v, "%s: '%s' is not client_ip, uri, header:NAME or cookie:NAME",
		    kname(p, where, "hash_key"), s);
}

static int parse_retry_on(struct parse *p, yaml_node_t *v, const char *where,
			  struct sl_lb_policy *pol)
{
	char w[192];

	if (v->type != YAML_SEQUENCE_NODE)
		return fail(p, v, "%s must be a sequence (e.g. [connect_failure, 502, 503, 504])",
			    kname(p, where, "retry_on"));
	pol->retry_on = 0;
	pol->retry_status[0] = pol->retry_status[1] = 0;
	snprintf(w, sizeof(w), "%s.retry_on", where);
	for (size_t i = 0; i < n_items(v); i++) {
		yaml_node_t *e = node_at(p, v->data.sequence.items.start[i]);
		uint64_t st;
		int ret;

		if (e->type == YAML_SCALAR_NODE && !strcmp(sval(e), "connect_failure")) {
			pol->retry_on |= SL_RETRY_CONNECT_FAILURE;
			continue;
		}
		if (e->type != YAML_SCALAR_NODE || sval(e)[0] < '0' || sval(e)[0] > '9')
			return fail(p, e, "%s: entries are connect_failure or a status 500..599", w);
		ret = get_uint(p, e, w, "status", 500, 599, &st);
		if (ret)
			return ret;
		pol->retry_status[(st - 500) / 64] |= 1ull << ((st - 500) % 64);
	}
	return 0;
}

static int parse_outlier(struct parse *p, yaml_node_t *n, const char *uwhere,
			 struct sl_conf_outlier *o)
{
	yaml_node_t *k, *v;
	char where[192];
	uint64_t x = 0;
	size_t it;
	int ret;

	snprintf(where, sizeof(where), "%s.outlier", uwhere);
	ret = want_map(p, n, where);
	if (ret)
		return ret;
	for (it = 0; next_pair(p, n, &it, &k, &v);) {
		if (KEY_IS(k, "consecutive_5xx")) {
			ret = get_uint(p, v, where, "consecutive_5xx", 0, 1000, &x);
			o->consecutive_5xx = (unsigned int)x;
		} else if (KEY_IS(k, "consecutive_connect_failures")) {
			ret = get_uint(p, v, where, "consecutive_connect_failures", 0, 1000, &x);
			o->consecutive_connect_failures = (unsigned int)x;
		} else if (KEY_IS(k, "base_ejection_time")) {
			ret = get_duration(p, v, where, "base_ejection_time", 1,
					   &o->base_ejection_time);
		} else if (KEY_IS(k, "max_ejection_time")) {
			ret = get_duration(p, v, where, "max_ejection_time", 1,
					   &o->max_ejection_time);
		} else if (KEY_IS(k, "max_ejection_percent")) {
			ret = get_uint(p, v, where, "max_ejection_percent", 0, 100, &x);
			o->max_ejection_percent = (unsigned int)x;
		} else {
			ret = unknown(p, k, where);
		}
		if (ret)
			return ret;
	}
	if (o->max_ejection_time < o->base_ejection_time)
		return fail(p, n, "%s.max_ejection_time is below base_ejection_time", where);
	return 0;
}

static int parse_status_range(struct parse *p, yaml_node_t *v, const char *where,
			      struct sl_conf_hc *hc)
{
	int ret = want_str(p, v, where, "status");
	unsigned int lo, hi;
	char tail;

	if (ret)
		return ret;
	if (sscanf(sval(v), "%3u-%3u%c", &lo, &hi, &tail) == 2 ||
	    (sscanf(sval(v), "%3u%c", &lo, &tail) == 1 && (hi = lo))) {
		if (lo >= 100 && hi <= 599 && lo <= hi && strlen(sval(v)) <= 7) {
			hc->status_lo = (int)lo;
			hc->status_hi = (int)hi;
			return 0;
		}
	}
	return fail(p, v, "%s: '%s' is not a status or a range like 200-399",
		    kname(p, where, "status"), sval(v));
}

/* A value sent in the check's request line or Host header: printable, no spaces. */
static int get_hc_str(struct parse *p, yaml_node_t *v, const char *where, const char *key,
		      char **out, bool spaces)
{
	int ret = get_str(p, v, where, key, out);

	if (ret)
		return ret;
	if (!**out || strlen(*out) > 1024)
		return fail(p, v, "%s must be 1..1024 characters", kname(p, where, key));
	for (const char *c = *out; *c; c++)
		if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f || (*c == ' ' && !spaces))
			return fail(p, v, "%s has a control character%s", kname(p, where, key),
				    spaces ? "" : " or a space");
	return 0;
}

static int parse_health(struct parse *p, yaml_node_t *n, const char *uwhere,
			struct sl_conf_hc *hc)
{
	yaml_node_t *k, *v;
	char where[192];
	uint64_t x = 0;
	size_t it;
	int ret;

	snprintf(where, sizeof(where), "%s.health_check", uwhere);
	ret = want_map(p, n, where);
	if (ret)
		return ret;
	hc->type = SL_HC_TCP;
	for (it = 0; next_pair(p, n, &it, &k, &v);) {
		if (KEY_IS(k, "type")) {
			ret = want_str(p, v, where, "type");
			if (!ret && !strcmp(sval(v), "tcp"))
				hc->type = SL_HC_TCP;
			else if (!ret && !strcmp(sval(v), "http"))
				hc->type = SL_HC_HTTP;
			else if (!ret)
				return fail(p, v, "%s: '%s' is not tcp or http",
					    kname(p, where, "type"), sval(v));
		} else if (KEY_IS(k, "interval")) {
			ret = get_duration(p, v, where, "interval", 10, &hc->interval);
		} else if (KEY_IS(k, "timeout")) {
			ret = get_duration(p, v, where, "timeout", 1, &hc->timeout);
		} else if (KEY_IS(k, "rise")) {
			ret = get_uint(p, v, where, "rise", 1, 100, &x);
			hc->rise = (unsigned int)x;
		} else if (KEY_IS(k, "fall")) {
			ret = get_uint(p, v, where, "fall", 1, 100, &x);
			hc->fall = (unsigned int)x;
		} else if (KEY_IS(k, "method")) {
			ret = get_hc_str(p, v, where, "method", &hc->method, false);
			if (!ret && !is_token(hc->method))
				return fail(p, v, "%s must be a token", kname(p, where, "method"));
		} else if (KEY_IS(k, "path")) {
			ret = get_hc_str(p, v, where, "path", &hc->path, false);
			if (!ret && hc->path[0] != '/')
				return fail(p, v, "%s must start with /", kname(p, where, "path"));
		} else if (KEY_IS(k, "host")) {
			ret = get_hc_str(p, v, where, "host", &hc->host, false);
		} else if (KEY_IS(k, "status")) {
			ret = parse_status_range(p, v, where, hc);
		} else if (KEY_IS(k, "body")) {
			ret = get_hc_str(p, v, where, "body", &hc->body, true);
		} else {
			ret = unknown(p, k, where);
		}
		if (ret)
			return ret;
	}
	if (hc->timeout >= hc->interval)
		return fail(p, n, "%s.timeout must be shorter than interval", where);
	if (hc->type == SL_HC_TCP && (hc->method || hc->path || hc->host || hc->body))
		return fail(p, n, "%s: method, path, host and body need type: http", where);
	return 0;
}

static void upstream_defaults(struct sl_conf_upstream *u)
{
	u->retries = 1;
	u->pool.max_idle_per_worker = 128;
	u->pool.max_idle_shared = 1024;
	u->pool.idle_timeout = 60000;
	u->pool.queue_timeout = 3000;
	u->lb.table_size = 65537;
	u->lb.ewma_decay = 10000;
	u->lb.ewma_penalty = 1000;
	u->lb.retry_on = SL_RETRY_CONNECT_FAILURE;
	u->lb.outlier.consecutive_5xx = 5;
	u->lb.outlier.consecutive_connect_failures = 5;
	u->lb.outlier.base_ejection_time = 30000;
	u->lb.outlier.max_ejection_time = 300000;
	u->lb.outlier.max_ejection_percent = 10;
	u->hc.interval = 5000;
	u->hc.timeout = 2000;
	u->hc.rise = 2;
	u->hc.fall = 3;
	u->hc.status_lo = 200;
	u->hc.status_hi = 399;
}

/* A PEM certificate file (first certificate): loads, and is valid now. */
static int check_cert(struct parse *p, yaml_node_t *n, const char *where, const char *key,
		      const char *path, X509 **out)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return fail(p, n, "%s: cannot open '%s': %s", kname(p, where, key), path,
			    strerror(errno));
	X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	ERR_clear_error();
	if (!x)
		return fail(p, n, "%s: '%s' holds no PEM certificate", kname(p, where, key), path);
	if (X509_cmp_current_time(X509_get0_notAfter(x)) <= 0) {
		X509_free(x);
		return fail(p, n, "%s: the certificate in '%s' has expired", kname(p, where, key),
			    path);
	}
	if (out)
		*out = x;
	else
		X509_free(x);
	return 0;
}

static int parse_up_tls(struct parse *p, yaml_node_t *n, const char *uwhere,
			struct sl_conf_upstream *u)
{
	struct sl_conf_up_tls *t = &u->tls;
	yaml_node_t *k, *v, *cert_n = NULL, *key_n = NULL, *ca_n = NULL;
	char where[192];
	size_t it;
	int ret;

	snprintf(where, sizeof(where), "%s.tls", uwhere);
	t->on = 1;
	t->verify = 1;
	if (is_null(n))
		return 0;
	ret = want_map(p, n, where);
	if (ret)
		return ret;
	for (it = 0; next_pair(p, n, &it, &k, &v);) {
		if (KEY_IS(k, "verify")) {
			ret = get_bool(p, v, where, "verify", &t->verify);
		} else if (KEY_IS(k, "ca")) {
			ca_n = v;
			ret = get_str(p, v, where, "ca", &t->ca);
		} else if (KEY_IS(k, "verify_hostname")) {
			ret = get_str(p, v, where, "verify_hostname", &t->verify_hostname);
			if (!ret && strlen(t->verify_hostname) >= 128)
				ret = fail(p, v, "%s is too long (at most 127 bytes)",
					   kname(p, where, "verify_hostname"));
		} else if (KEY_IS(k, "sni")) {
			ret = is_null(v) ? 0 : get_str(p, v, where, "sni", &t->sni);
			if (!ret && !t->sni)
				t->sni = strdup("");
			if (!ret && !t->sni)
				ret = oom(p);
			if (!ret && (strlen(t->sni) >= 128 || strpbrk(t->sni, " \t\r\n/:")))
				ret = fail(p, v, "%s must be a host name (at most 127 bytes)",
					   kname(p, where, "sni"));
		} else if (KEY_IS(k, "client_cert")) {
			cert_n = v;
			ret = get_str(p, v, where, "client_cert", &t->client_cert);
		} else if (KEY_IS(k, "client_key")) {
			key_n = v;
			ret = get_str(p, v, where, "client_key", &t->client_key);
		} else {
			ret = unknown(p, k, where);
		}
		if (ret)
			return ret;
	}
	if (!cert_n != !key_n)
		return fail(p, cert_n ? cert_n : key_n, "%s: client_cert and client_key go together",
			    where);
	if (ca_n) {
		X509_STORE *st = X509_STORE_new();
		int ok = st && X509_STORE_load_file(st, t->ca) == 1;
		X509_STORE_free(st);
		ERR_clear_error();
		if (!ok)
			return fail(p, ca_n, "%s: cannot load CA certificates from '%s'",
				    kname(p, where, "ca"), t->ca);
	}
	if (cert_n) {
		X509 *x = NULL;
		ret = check_cert(p, cert_n, where, "client_cert", t->client_cert, &x);
		if (ret)
			return ret;
		FILE *f = fopen(t->client_key, "r");
		EVP_PKEY *pk = f ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
		int err = errno;
		if (f)
			fclose(f);
		int match = pk && X509_check_private_key(x, pk) == 1;
		EVP_PKEY_free(pk);
		X509_free(x);
		ERR_clear_error();
		if (!f)
			return fail(p, key_n, "%s: cannot open '%s': %s",
				    kname(p, where, "client_key"), t->client_key, strerror(err));
		if (!pk)
			return fail(p, key_n, "%s: '%s' holds no PEM private key",
				    kname(p, where, "client_key"), t->client_key);
		if (!match)
			return fail(p, key_n, "%s: '%s' does not match the certificate in '%s'",
				    kname(p, where, "client_key"), t->client_key, t->client_cert);
	}
	return 0;
}

static int parse_via_proxy(struct parse *p, yaml_node_t *n, const char *uwhere,
			   struct sl_conf_upstream *u)
{
	struct sl_conf_via_proxy *vp = &u->via;
	yaml_node_t *k, *v, *addr = NULL, *hk, *hv;
	char where[192];
	size_t it, jt, len = 0;
	int ret;

	snprintf(where, sizeof(where), "%s.via_proxy", uwhere);
	ret = want_map(p, n, where);
	if (ret)
		return ret;
	for (it = 0; next_pair(p, n, &it, &k, &v);) {
		if (KEY_IS(k, "address")) {
			addr = v;
		} else if (KEY_IS(k, "headers")) {
			char hwhere[208];
			snprintf(hwhere, sizeof(hwhere), "%s.headers", where);
			ret = want_map(p, v, hwhere);
			for (jt = 0; !ret && next_pair(p, v, &jt, &hk, &hv);) {
				const char *name = sval(hk);
				size_t nl = hk->type == YAML_SCALAR_NODE ? hk->data.scalar.length : 0;
				if (!nl || strspn(name, "!#$%&'*+-.^_`|~0123456789"
							"abcdefghijklmnopqrstuvwxyz"
							"ABCDEFGHIJKLMNOPQRSTUVWXYZ") != nl)
					return fail(p, hk, "%s: '%s' is not a header name", hwhere,
						    name);
				if (hv->type != YAML_SCALAR_NODE ||
				    strlen(sval(hv)) != hv->data.scalar.length ||
				    strpbrk(sval(hv), "\r\n"))
					return fail(p, hv, "%s.%s must be one line of text", hwhere,
						    name);
				size_t vl = hv->data.scalar.length;
				if (len + nl + vl + 4 >= sizeof(vp->headers))
					return fail(p, hk, "%s: too long (at most %zu bytes in all)",
						    hwhere, sizeof(vp->headers) - 1);
				len += (size_t)snprintf(vp->headers + len, sizeof(vp->headers) - len,
							"%s: %s\r\n", name, sval(hv));
			}
		} else {
			ret = unknown(p, k, where);
		}
		if (ret)
			return ret;
	}
	if (!addr)
		return fail(p, n, "%s has no address", where);
	return get_addr(p, addr, where, &vp->address, &vp->addr, &vp->addrlen);
}

static int parse_upstream(struct parse *p, yaml_node_t *name, yaml_node_t *n,
			  struct sl_conf_upstream *u)
{
	yaml_node_t *k, *v, *servers = NULL, *hash_key = NULL, *factor = NULL, *table = NULL;
	char where[160], swhere[192];
	uint64_t x = 0;
	size_t it, i, cnt;
	int ret;

	snprintf(where, sizeof(where), "upstreams.%s", u->name);
	ret = want_map(p, n, where);
	if (ret)
		return ret;
	for (it = 0; next_pair(p, n, &it, &k, &v);) {
		if (KEY_IS(k, "servers")) {
			servers = v;
		} else if (KEY_IS(k, "retries")) {
			ret = get_uint(p, v, where, "retries", 0, 10, &x);
			u->retries = x;
		} else if (KEY_IS(k, "keepalive")) {
			ret = get_uint(p, v, where, "keepalive", 0, 65535, &x);
			u->pool.max_idle_per_worker = x;
		} else if (KEY_IS(k, "pool")) {
			ret = parse_pool(p, v, where, u);
		} else if (KEY_IS(k, "tls")) {
			ret = parse_up_tls(p, v, where, u);
		} else if (KEY_IS(k, "via_proxy")) {
			ret = parse_via_proxy(p, v, where, u);
		} else if (KEY_IS(k, "balance")) {
			ret = parse_balance(p, v, where, &u->lb);
		} else if (KEY_IS(k, "hash_key")) {
			hash_key = v;
			ret = parse_hash_key(p, v, where, &u->lb);
		} else if (KEY_IS(k, "table_size")) {
			table = v;
			ret = get_uint(p, v, where, "table_size", 3, 1000003, &x);
			if (!ret && !is_prime(x))
				return fail(p, v, "%s must be a prime (e.g. 65537)",
					    kname(p, where, "table_size"));
			u->lb.table_size = (unsigned int)x;
		} else if (KEY_IS(k, "hash_balance_factor")) {
			factor = v;
			ret = get_uint(p, v, where, "hash_balance_factor", 101, 10000, &x);
			u->lb.hash_balance_factor = (unsigned int)x;
		} else if (KEY_IS(k, "slow_start")) {
			ret = get_duration(p, v, where, "slow_start", 0, &u->lb.slow_start);
		} else if (KEY_IS(k, "ewma_decay")) {
			ret = get_duration(p, v, where, "ewma_decay", 1, &u->lb.ewma_decay);
		} else if (KEY_IS(k, "ewma_penalty")) {
			ret = get_duration(p, v, where, "ewma_penalty", 1, &u->lb.ewma_penalty);
		} else if (KEY_IS(k, "retry_on")) {
			ret = parse_retry_on(p, v, where, &u->lb);
		} else if (KEY_IS(k, "outlier")) {
			ret = parse_outlier(p, v, where, &u->lb.outlier);
		} else if (KEY_IS(k, "health_check")) {
			ret = parse_health(p, v, where, &u->hc);
		} else {
			ret = unknown(p, k, where);
		}
		if (ret)
			return ret;
	}
	u->lb.retries = u->retries;
	if (hash_key && u->lb.balance != SL_BAL_MAGLEV && u->lb.balance != SL_BAL_KETAMA)
		return fail(p, hash_key, "%s needs balance: maglev or ketama",
			    kname(p, where, "hash_key"));
	if (table && u->lb.balance != SL_BAL_MAGLEV)
		return fail(p, table, "%s needs balance: maglev", kname(p, where, "table_size"));
	if (factor && u->lb.balance != SL_BAL_KETAMA)
		return fail(p, factor, "%s needs balance: ketama",
			    kname(p, where, "hash_balance_factor"));
	if (!servers)
		return fail(p, name, "upstream '%s' has no servers", u->name);
	if (is_null(servers))
		return fail(p, servers, "upstream '%s' has no servers", u->name);
	if (servers->type != YAML_SEQUENCE_NODE)
		return fail(p, servers, "%s must be a sequence", kname(p, where, "servers"));
	cnt = n_items(servers);
	if (!cnt)
		return fail(p, servers, "upstream '%s' has no servers", u->name);
	/* a request records the servers it tried as 16-bit indices */
	if (cnt > SL_CONF_MAX_SERVERS)
		return fail(p, servers, "upstream '%s' has too many servers (%zu, at most %u)",
			    u->name, cnt, SL_CONF_MAX_SERVERS);
	u->servers = calloc(cnt, sizeof(*u->servers));
	if (!u->servers)
		return oom(p);
	u->n_servers = cnt;
	for (i = 0; i < cnt; i++) {
		snprintf(swhere, sizeof(swhere), "%s.servers[%zu]", where, i);
		ret = parse_server(p, node_at(p, servers->data.sequence.items.start[i]), swhere,
				   &u->servers[i]);
		if (ret)
			return ret;
	}
	if (u->lb.balance == SL_BAL_MAGLEV && cnt > u->lb.table_size)
		return fail(p, servers, "upstream '%s' has more servers (%zu) than its maglev "
				      "table_size (%u)",
			    u->name, cnt, u->lb.table_size);
	/* a server is known by its address (health, counters, the admin API) */
	return check_dup_servers(p, servers, u);
}

static int srv_cmp(const void *pa, const void *pb)
{
	const struct sl_conf_server *const *a = pa, *const *b = pb;
	int r = memcmp(&(*a)->addr, &(*b)->addr, sizeof((*a)->addr));

	if (r)
		return r;
	return *a < *b ? -1 : *a > *b;
}

static int check_dup_servers(struct parse *p, yaml_node_t *servers, struct sl_conf_upstream *u)
{
	const struct sl_conf_server **v = malloc(u->n_servers * sizeof(*v));
	size_t first = SIZE_MAX;

	if (!v)
		return oom(p);
	for (unsigned int i = 0; i < u->n_servers; i++)
		v[i] = &u->servers[i];
	qsort(v, u->n_servers, sizeof(*v), srv_cmp);
	for (unsigned int i = 1; i < u->n_servers; i++)
		if (!memcmp(&v[i - 1]->addr, &v[i]->addr, sizeof(v[i]->addr))) {
			size_t at = (size_t)(v[i] - u->servers);
			if (at < first)
				first = at;
		}
	free(v);
	if (first == SIZE_MAX)
		return 0;
	return fail(p, node_at(p, servers->data.sequence.items.start[first]),
		    "upstreams.%s.servers[%zu]: duplicate address '%s'", u->name, first,
		    u->servers[first].address);
}

static int parse_upstreams(struct parse *p, yaml_node_t *n)
{
	struct sl_conf *c = p->c;
	yaml_node_t *k, *v;
	size_t it, i = 0, cnt;
	int ret = want_map(p, n, "upstreams");

	if (ret)
		return ret;
	cnt = n_pairs(n);
	if (!cnt)
		return 0;
	c->upstreams = calloc(cnt, sizeof(*c->upstreams));
	if (!c->upstreams)
		return oom(p);
	c->n_upstreams = cnt;
	for (it = 0; next_pair(p, n, &it, &k, &v);) {
		struct sl_conf_upstream *u = &c->upstreams[i];

		u->index = i++;
		upstream_defaults(u);
		if (!k->data.scalar.length || strlen(sval(k)) != k->data.scalar.length)
			return fail(p, k, "invalid upstream name");
		u->name = strdup(sval(k));
		if (!u->name)
			return oom(p);
		ret = parse_upstream(p, k, v, u);
		if (ret)
			return ret;
	}
	return 0;
}

static int parse_host(struct parse *p, yaml_node_t *v, const char *where, struct sl_conf_route *r)
{
	const char *s, *q;
	char *h;
	int ret = want_str(p, v, where, "host");

	if (ret)
		return ret;
	s = sval(v);
	/* "*.example.com" is kept as ".example.com": a suffix that needs at least one label. */
	if (!strncmp(s, "*.", 2)) {
		r->host_wildcard = 1;
		s++;
	}
	if (!s[r->host_wildcard])
		return fail(p, v, "%s is empty", kname(p, where, "host"));
	for (q = s; *q; q++) {
		unsigned char ch = *q;

		/* A port or any of these could never equal a request's host, so the route would be
		 * dead; say so instead of loading it. */
		if (ch <= ' ' || ch == 0x7f || strchr("*/@?#\\", ch) || (ch == ':' && s[0] != '['))
			return fail(p, v, "%s: invalid host '%s'", kname(p, where, "host"),
				    sval(v));
	}
	r->host = strdup(s);
	if (!r->host)
		return oom(p);
	for (h = r->host; *h; h++)
		if (*h >= 'A' && *h <= 'Z')
			*h += 'a' - 'A';
	return 0;
}

static int parse_path(struct parse *p, yaml_node_t *v, const char *where, struct sl_conf_route *r)
{
	const unsigned char *s;
	int ret = want_str(p, v, where, "path");

	if (ret)
		return ret;
	if (sval(v)[0] != '/')
		return fail(p, v, "%s must start with '/'", kname(p, where, "path"));
	for (s = v->data.scalar.value; *s; s++)
		if (*s <= ' ' || *s == 0x7f)
			return fail(p, v, "%s contains a space or control character",
				    kname(p, where, "path"));
	return get_str(p, v, where, "path", &r->path);
}

static bool is_tchar(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

static int parse_headers(struct parse *p, yaml_node_t *n, const char *where,
			 struct sl_conf_respond *rs)
{
	yaml_node_t *k, *v;
	const unsigned char *s;
	char hwhere[208];
	size_t it, i = 0, cnt;
	int ret;

	snprintf(hwhere, sizeof(hwhere), "%s.headers", where);
	ret = want_map(p, n, hwhere);
	if (ret)
		return ret;
	cnt = n_pairs(n);
	if (!cnt)
		return 0;
	rs->headers = calloc(cnt, sizeof(*rs->headers));
	if (!rs->headers)
		return oom(p);
	rs->n_headers = cnt;
	for (it = 0; next_pair(p, n, &it, &k, &v);) {
		struct sl_conf_header *h = &rs->headers[i++];

		if (!k->data.scalar.length)
			return fail(p, k, "empty header name");
		for (s = k->data.scalar.value; s < k->data.scalar.value + k->data.scalar.length;
		     s++)
			if (!is_tchar(*s))
				return fail(p, k, "invalid header name '%s'", sval(k));
		/* sluice frames the body itself; a second framing header would desync clients. */
		if (!strcasecmp(sval(k), "content-length") ||
		    !strcasecmp(sval(k), "transfer-encoding"))
			return fail(p, k, "header '%s' is set by sluice from the body", sval(k));
		ret = want_str(p, v, hwhere, sval(k));
		if (ret)
			return ret;
		/* CR or LF here would let a config value inject headers or split the response. */
		for (s = v->data.scalar.value; *s; s++)
			if ((*s < ' ' && *s != '\t') || *s == 0x7f)
				return fail(p, v,
					    "value of header '%s' contains a control character",
					    sval(k));
		h->name = strdup(sval(k));
		h->value = strdup(sval(v));
		if (!h->name || !h->value)
			return oom(p);
	}
	return 0;
}

static int parse_respond(struct parse *p, yaml_node_t *n, const char *route_where,
			 struct sl_conf_respond *rs)
{
	yaml_node_t *k, *v;
	size_t it;
	char where[192];
	uint64_t st = 0;
	int ret;

	snprintf(where, sizeof(where), "%s.respond", route_where);
	rs->status = 200;
	ret = want_map(p, n, where);
	if (ret)
		return ret;
	for (it = 0; next_pair(p, n, &it, &k, &v);) {
		if (KEY_IS(k, "status")) {
			ret = get_uint(p, v, where, "status", 100, 599, &st);
			rs->status = st;
		} else if (KEY_IS(k, "headers")) {
			ret = parse_headers(p, v, where, rs);
		} else if (KEY_IS(k, "body")) {
			/* The one string that may hold any bytes: it is sent with its length. */
			if (v->type != YAML_SCALAR_NODE || is_null(v))
				return fail(p, v, "%s must be a string", kname(p, where, "body"));
			rs->body = malloc(v->data.scalar.length + 1);
			if (!rs->body)
				return oom(p);
			memcpy(rs->body, v->data.scalar.value, v->data.scalar.length + 1);
			rs->body_len = v->data.scalar.length;
		} else {
			ret = unknown(p, k, where);
		}
		if (ret)
			return ret;
	}
	if (!rs->body && !(rs->body = strdup("")))
		return oom(p);
	return 0;
}

/* cache: { zones: { NAME: { max_size, max_object_size, shards, max_variants } } } */
static int parse_cache_zone(struct parse *p, yaml_node_t *name, yaml_node_t *n,
			    struct sl_conf_cache_zone *z)
{
	yaml_node_t *k, *v;
	size_t it;
	char where[96];
	uint64_t u;
	int ret = want_str(p, name, "cache.zones", "name");

	if (ret)
		return ret;
	snprintf(where, sizeof(where), "cache.zones.%.64s", sval(name));
	if (!(z->name = strdup(sval(name))))
		return oom(p);
	z->max_size = 256ull << 20;
	z->max_object_size = 8ull << 20;
	z->shards = 16;
	z->max_variants = 8;
	if (is_null(n))
		return 0;
	ret = want_map(p, n, where);
	if (ret)
		return ret;
	for (it = 0; next_pair(p, n, &it, &k, &v);) {
		if (KEY_IS(k, "max_size"))
			ret = get_size(p, v, where, "max_size", 1ull << 20, 1ull << 40, "1m..1t",
				       &z->max_size);
		else if (KEY_IS(k, "max_object_size"))
			ret = get_size(p, v, where, "max_object_size", 1, 1ull << 31, "1..2g",
				       &z->max_object_size);
		else if (KEY_IS(k, "shards")) {
			ret = get_uint(p, v, where, "shards", 1, 256, &u);
			z->shards = (unsigned int)u;
		} else if (KEY_IS(k, "max_variants")) {
			ret = get_uint(p, v, where, "max_variants", 1, 64, &u);
			z->max_variants = (unsigned int)u;
		} else
			ret = unknown(p, k, where);
		if (ret)
			return ret;
	}
	if (z->max_object_size > z->max_size)
		return fail(p, n, "%s: max_object_size is larger than max_size", where);
	return 0;
}

static int parse_cache(struct parse *p, yaml_node_t *n)
{
	struct sl_conf_cache *cc = &p->c->cache;
	yaml_node_t *k, *v;
	size_t it;
	int ret = want_map(p, n, "cache");

	if (ret)
		return ret;
	for (it = 0; next_pair(p, n, &it, &k, &v);) {
		if (!KEY_IS(k, "zones"))
			return unknown(p, k, "cache");
		ret = want_map(p, v, "cache.zones");
		if (ret)
			return ret;
		if (!n_pairs(v))
			return fail(p, v, "cache.zones is empty");
		if (n_pairs(v) > 64)
			return fail(p, v, "cache.zones: at most 64 zones");
		cc->zones = calloc(n_pairs(v), sizeof(*cc->zones));
		if (!cc->zones)
			return oom(p);
		yaml_node_t *zk, *zv;
		size_t zit;
		for (zit = 0; next_pair(p, v, &zit, &zk, &zv);) {
			ret = parse_cache_zone(p, zk, zv, &cc->zones[cc->n_zones++]);
			if (ret)
				return ret;
		}
	}
	return 0;
}

/* A route's cache: { zone, key, lock: { timeout, age }, stale_while_revalidate,
 * stale_if_error, methods, status_header } */
static int parse_route_cache(struct parse *p, yaml_node_t *n, const char *route_where,
			     struct sl_conf_route *r)
{
	yaml_node_t *k, *v, *zone = NULL;
	size_t it;
	char where[96];
	int ret;

	snprintf(where, sizeof(where), "%s.cache", route_where);
	ret = want_map(p, n, where);
	if (ret)
		return ret;
	struct sl_conf_route_cache *rc = calloc(1, sizeof(*rc));
	if (!rc)
		return oom(p);
	r->cache = rc;
	rc->lock_timeout = 5000;
	rc->lock_age = 5000;
	rc->methods = SL_CACHE_M_GET | SL_CACHE_M_HEAD;
	for (it = 0; next_pair(p, n, &it, &k, &v);) {
		if (KEY_IS(k, "zone")) {
			zone = v;
			ret = get_str(p, v, where, "zone", &rc->zone_name);
		} else if (KEY_IS(k, "key")) {
			ret = get_str(p, v, where, "key", &rc->key);
			if (ret)
				break;
			unsigned int col;
			const char *why;
			if (!(rc->tpl = malloc(sizeof(*rc->tpl))))
				return oom(p);
			if (sl_ckey_compile(rc->key, rc->tpl, &col, &why)) {
				yaml_mark_t m = v->start_mark;
				m.column += col + (v->data.scalar.style == YAML_PLAIN_SCALAR_STYLE ? 0 : 1);
				return fail_at(p, m, "%s: %s", kname(p, where, "key"), why);
			}
		} else if (KEY_IS(k, "lock")) {
			yaml_node_t *lk, *lv;
			size_t lit;
			char lwhere[112];
			snprintf(lwhere, sizeof(lwhere), "%s.lock", where);
			ret = want_map(p, v, lwhere);
			for (lit = 0; !ret && next_pair(p, v, &lit, &lk, &lv);) {
				if (KEY_IS(lk, "timeout"))
					ret = get_duration(p, lv, lwhere, "timeout", 1,
							   &rc->lock_timeout);
				else if (KEY_IS(lk, "age"))
					ret = get_duration(p, lv, lwhere, "age", 1, &rc->lock_age);
				else
					ret = unknown(p, lk, lwhere);
			}
		} else if (KEY_IS(k, "stale_while_revalidate")) {
			ret = get_duration(p, v, where, "stale_while_revalidate", 0, &rc->swr);
		} else if (KEY_IS(k, "stale_if_error")) {
			ret = get_duration(p, v, where, "stale_if_error", 0, &rc->sie);
		} else if (KEY_IS(k, "methods")) {
			if (v->type != YAML_SEQUENCE_NODE || !n_items(v))
				return fail(p, v, "%s must be a list of GET and HEAD",
					    kname(p, where, "methods"));
			rc->methods = 0;
			for (size_t i = 0; i < n_items(v); i++) {
				yaml_node_t *m = node_at(p, v->data.sequence.items.start[i]);
				ret = want_str(p, m, where, "methods");
				if (ret)
					return ret;
				if (!strcmp(sval(m), "GET"))
					rc->methods |= SL_CACHE_M_GET;
				else if (!strcmp(sval(m), "HEAD"))
					rc->methods |= SL_CACHE_M_HEAD;
				else
					return fail(p, m,
						    "%s: only GET and HEAD are cached (other methods "
						    "invalidate what they change)",
						    kname(p, where, "methods"));
			}
			if (!(rc->methods & SL_CACHE_M_GET))
				return fail(p, v, "%s must include GET (HEAD is answered from GET)",
					    kname(p, where, "methods"));
		} else if (KEY_IS(k, "status_header")) {
			ret = get_str(p, v, where, "status_header", &rc->status_header);
			if (!ret) {
				const char *h = rc->status_header;
				if (!*h || strspn(h, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
						     "0123456789-_") != strlen(h) || strlen(h) > 64)
					return fail(p, v, "%s must be a header name",
						    kname(p, where, "status_header"));
			}
		} else {
			ret = unknown(p, k, where);
		}
		if (ret)
			return ret;
	}
	if (!zone)
		return fail(p, n, "%s needs a zone", where);
	for (unsigned int i = 0; i < p->c->cache.n_zones; i++)
		if (!strcmp(p->c->cache.zones[i].name, rc->zone_name))
			rc->zone = &p->c->cache.zones[i];
	if (!rc->zone)
		return fail(p, zone, "%s: undefined cache zone '%s' (see cache.zones)",
			    kname(p, where, "zone"), rc->zone_name);
	if (!rc->key) {
		unsigned int col;
		const char *why;
		if (!(rc->key = strdup("$scheme://$host$uri$query")) ||
		    !(rc->tpl = malloc(sizeof(*rc->tpl))))
			return oom(p);
		sl_ckey_compile(rc->key, rc->tpl, &col, &why);
	}
	return 0;
}

static int parse_route(struct parse *p, yaml_node_t *n, const char *where, struct sl_conf_route *r)
{
	struct sl_conf *c = p->c;
	yaml_node_t *k, *v, *host = NULL, *path = NULL, *up = NULL, *resp = NULL, *cache = NULL;
	size_t it;
	unsigned int i;
	int ret = want_map(p, n, where);

	if (ret)
		return ret;
	for (it = 0; next_pair(p, n, &it, &k, &v);) {
		if (KEY_IS(k, "host"))
			host = v;
		else if (KEY_IS(k, "path"))
			path = v;
		else if (KEY_IS(k, "upstream"))
			up = v;
		else if (KEY_IS(k, "respond"))
			resp = v;
		else if (KEY_IS(k, "cache"))
			cache = v;
		else
			return unknown(p, k, where);
	}
	if (!up == !resp)
		return fail(p, n, "%s needs exactly one of 'upstream' and 'respond'", where);
	if (host) {
		ret = parse_host(p, host, where, r);
		if (ret)
			return ret;
	}
	if (path)
		ret = parse_path(p, path, where, r);
	else if (!(r->path = strdup("/")))
		ret = oom(p);
	if (ret)
		return ret;
	r->path_len = strlen(r->path);
	if (cache && resp)
		return fail(p, cache, "%s: a respond route is not cached", where);
	if (cache) {
		ret = parse_route_cache(p, cache, where, r);
		if (ret)
			return ret;
	}
	if (resp) {
		r->action = SL_ROUTE_RESPOND;
		return parse_respond(p, resp, where, &r->respond);
	}
	r->action = SL_ROUTE_PROXY;
	ret = get_str(p, up, where, "upstream", &r->upstream_name);
	if (ret)
		return ret;
	for (i = 0; i < c->n_upstreams; i++)
		if (!strcmp(c->upstreams[i].name, r->upstream_name))
			r->upstream = &c->upstreams[i];
	if (!r->upstream)
		return fail(p, up, "undefined upstream '%s'", r->upstream_name);
	return 0;
}

/* ---- listeners[].tls ---- */

static int tls_key_check(struct parse *p, yaml_node_t *key_n, const char *where,
			 const char *cert_path, const char *key_path, X509 *x)
{
	FILE *f = fopen(key_path, "r");
	int err = errno;
	EVP_PKEY *pk = f ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
	if (f)
		fclose(f);
	int match = pk && X509_check_private_key(x, pk) == 1;
	EVP_PKEY_free(pk);
	ERR_clear_error();
	if (!f)
		return fail(p, key_n, "%s: cannot open '%s': %s", kname(p, where, "key"), key_path,
			    strerror(err));
	if (!pk)
		return fail(p, key_n, "%s: '%s' holds no PEM private key", kname(p, where, "key"),
			    key_path);
	if (!match)
		return fail(p, key_n, "%s: '%s' does not match the certificate in '%s'",
			    kname(p, where, "key"), key_path, cert_path);
	return 0;
}

/* Every certificate after the leaf in a cert file must parse too: a chain cut by a bad
 * paste would only show up as clients failing to verify. */
static int tls_chain_check(struct parse *p, yaml_node_t *n, const char *where, const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return fail(p, n, "%s: cannot open '%s': %s", kname(p, where, "cert"), path,
			    strerror(errno));
	int count = 0, ret = 0;
	X509 *x;
	while ((x = PEM_read_X509(f, NULL, NULL, NULL))) {
		count++;
		X509_free(x);
	}
	unsigned long e = ERR_peek_last_error();
	ERR_clear_error();
	/* the end of the file reads as "no start line"; anything else is a broken block */
	if (count && e && ERR_GET_REASON(e) != PEM_R_NO_START_LINE)
		ret = fail(p, n, "%s: certificate %d in '%s' does not parse", kname(p, where, "cert"),
			   count + 1, path);
	fclose(f);
	return ret;
}

static int parse_tls_cert(struct parse *p, yaml_node_t *n, const char *where,
			  struct sl_conf_tls_cert *c)
{
	yaml_node_t *k, *v, *cert_n = NULL, *key_n = NULL;
	size_t it;
	int ret = want_map(p, n, where);
	if (ret)
		return ret;
	c->line = (unsigned int)n->start_mark.line + 1;
	c->col = (unsigned int)n->start_mark.column + 1;
	for (it = 0; next_pair(p, n, &it, &k, &v);) {
		if (KEY_IS(k, "cert")) {
			cert_n = v;
			ret = get_str(p, v, where, "cert", &c->cert);
		} else if (KEY_IS(k, "key")) {
			key_n = v;
			ret = get_str(p, v, where, "key", &c->key);
		} else {
			ret = unknown(p, k, where);
		}
		if (ret)
			return ret;
	}
	if (!cert_n || !key_n)
		return fail(p, n, "%s needs cert and key", where);
	X509 *x = NULL;
	ret = check_cert(p, cert_n, where, "cert", c->cert, &x);
	if (!ret)
		ret = tls_chain_check(p, cert_n, where, c->cert);
	if (!ret)
		ret = tls_key_check(p, key_n, where, c->cert, c->key, x);
	X509_free(x);
	return ret;
}

/* An OpenSSL list (ciphers, suites, groups) is checked on a scratch context: a typo must
 * be a config error, not a listener that refuses every client. */
static int tls_list_check(struct parse *p, yaml_node_t *v, const char *where, const char *key,
			  const char *val)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	int ok = 0;
	if (!ctx)
		return oom(p);
	if (!strcmp(key, "ciphers"))
		ok = SSL_CTX_set_cipher_list(ctx, val);
	else if (!strcmp(key, "ciphersuites"))
		ok = SSL_CTX_set_ciphersuites(ctx, val);
	else
		ok = SSL_CTX_set1_groups_list(ctx, val);
	SSL_CTX_free(ctx);
	ERR_clear_error();
	if (!ok)
		return fail(p, v, "%s: '%s' names nothing OpenSSL knows", kname(p, where, key), val);
	return 0;
}

static int parse_tls_tickets(struct parse *p, yaml_node_t *n, const char *twhere,
			     struct sl_conf_listener_tls *t)
{
	yaml_node_t *k, *v, *file_n = NULL;
	char where[96];
	size_t it;
	int ret;
	snprintf(where, sizeof(where), "%s.session_tickets", twhere);
	ret = want_map(p, n, where);
	if (ret)
		return ret;
	for (it = 0; next_pair(p, n, &it, &k, &v);) {
		if (KEY_IS(k, "enabled"))
			ret = get_bool(p, v, where, "enabled", &t->tickets);
		else if (KEY_IS(k, "rotate"))
			ret = get_duration(p, v, where, "rotate", 1000, &t->ticket_rotate);
		else if (KEY_IS(k, "key_file")) {
			file_n = v;
			ret = get_str(p, v, where, "key_file", &t->ticket_key_file);
		} else
			ret = unknown(p, k, where);
		if (ret)
			return ret;
	}
	if (file_n) {
		unsigned char buf[SL_TICKET_FILE_MAX + 1];
		FILE *f = fopen(t->ticket_key_file, "r");
		if (!f)
			return fail(p, file_n, "%s: cannot open '%s': %s",
				    kname(p, where, "key_file"), t->ticket_key_file, strerror(errno));
		size_t len = fread(buf, 1, sizeof(buf), f);
		fclose(f);
		if (!len || len % SL_TICKET_KEY_LEN || len > SL_TICKET_FILE_MAX)
			return fail(p, file_n,
				    "%s: '%s' must hold 1 to %d keys of %d bytes each (e.g. "
				    "openssl rand 80 > FILE), not %zu bytes",
				    kname(p, where, "key_file"), t->ticket_key_file,
				    SL_TICKET_FILE_MAX / SL_TICKET_KEY_LEN, SL_TICKET_KEY_LEN, len);
	}
	return 0;
}

static int parse_tls_client_auth(struct parse *p, yaml_node_t *n, const char *twhere,
				 struct sl_conf_listener_tls *t)
{
	yaml_node_t *k, *v, *ca_n = NULL, *mode_n = NULL;
	char where[96];
	size_t it;
	uint64_t u;
	int ret;
	snprintf(where, sizeof(where), "%s.client_auth", twhere);
	ret = want_map(p, n, where);
	if (ret)
		return ret;
	for (it = 0; next_pair(p, n, &it, &k, &v);) {
		if (KEY_IS(k, "mode")) {
			mode_n = v;
			/* "none"/"off"/"no" read as YAML 1.1 booleans by some; accept them */
			if (v->type == YAML_SCALAR_NODE && (!strcasecmp(sval(v), "none") ||
							     !strcasecmp(sval(v), "false") ||
							     !strcasecmp(sval(v), "off")))
				t->client_auth = SL_CLIENT_AUTH_NONE;
			else if (v->type == YAML_SCALAR_NODE && !strcasecmp(sval(v), "optional"))
				t->client_auth = SL_CLIENT_AUTH_OPTIONAL;
			else if (v->type == YAML_SCALAR_NODE && !strcasecmp(sval(v), "required"))
				t->client_auth = SL_CLIENT_AUTH_REQUIRED;
			else
				ret = fail(p, v, "%s must be none, optional or required",
					   kname(p, where, "mode"));
		} else if (KEY_IS(k, "ca")) {
			ca_n = v;
			ret = get_str(p, v, where, "ca", &t->client_ca);
		} else if (KEY_IS(k, "depth")) {
			ret = get_uint(p, v, where, "depth", 1, 16, &u);
			if (!ret)
				t->client_depth = (unsigned int)u;
		} else if (KEY_IS(k, "subject_header") || KEY_IS(k, "fingerprint_header")) {
			char **dst = KEY_IS(k, "subject_header") ? &t->subject_header
								 : &t->fingerprint_header;
			ret = get_str(p, v, where, sval(k), dst);
			if (!ret && (!is_token(*dst) || strlen(*dst) > 64))
				ret = fail(p, v, "%s must be a header name (at most 64 bytes)",
					   kname(p, where, sval(k)));
		} else {
			ret = unknown(p, k, where);
		}
		if (ret)
			return ret;
	}
	if (t->client_auth != SL_CLIENT_AUTH_NONE && !ca_n)
		return fail(p, mode_n ? mode_n : n, "%s: mode %s needs ca (the CA file client "
			    "certificates are verified against)", where,
			    t->client_auth == SL_CLIENT_AUTH_REQUIRED ? "required" : "optional");
	if (ca_n) {
		STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(t->client_ca);
		int ok = names && sk_X509_NAME_num(names) > 0;
		sk_X509_NAME_pop_free(names, X509_NAME_free);
		ERR_clear_error();
		if (!ok)
			return fail(p, ca_n, "%s: cannot load CA certificates from '%s'",
				    kname(p, where, "ca"), t->client_ca);
	}
	if (!strcasecmp(t->subject_header, t->fingerprint_header))
		return fail(p, n, "%s: subject_header and fingerprint_header must differ", where);
	return 0;
}

static int parse_listener_tls(struct parse *p, yaml_node_t *n, const char *lwhere,
			      struct sl_conf_listener *l)
{
	yaml_node_t *k, *v, *certs = NULL;
	char where[64], cwhere[96];
	size_t it;
	unsigned int i;
	int ret;

	snprintf(where, sizeof(where), "%s.tls", lwhere);
	struct sl_conf_listener_tls *t = calloc(1, sizeof(*t));
	if (!t)
		return oom(p);
	l->tls = t;
	t->min_version = TLS1_2_VERSION;
	t->tickets = 1;
	t->ticket_rotate = 12 * 3600 * 1000;
	t->client_depth = 3;
	t->handshake_timeout = 10000;
	t->subject_header = strdup("X-Client-Subject");
	t->fingerprint_header = strdup("X-Client-Fingerprint");
	if (!t->subject_header || !t->fingerprint_header)
		return oom(p);
	memcpy(t->alpn, "\x08http/1.1", 9);
	t->alpn_len = 9;
	ret = want_map(p, n, where);
	if (ret)
		return ret;
	for (it = 0; next_pair(p, n, &it, &k, &v);) {
		if (KEY_IS(k, "certificates")) {
			certs = v;
		} else if (KEY_IS(k, "min_version")) {
			const char *s = v->type == YAML_SCALAR_NODE ? sval(v) : "";
			if (!strcmp(s, "1.2"))
				t->min_version = TLS1_2_VERSION;
			else if (!strcmp(s, "1.3"))
				t->min_version = TLS1_3_VERSION;
			else if (!strcmp(s, "1.0") || !strcmp(s, "1.1") || !strcmp(s, "1"))
				ret = fail(p, v, "%s: TLS %s is not offered (broken; RFC 8996), use "
					   "\"1.2\" or \"1.3\"", kname(p, where, "min_version"), s);
			else
				ret = fail(p, v, "%s must be \"1.2\" or \"1.3\"",
					   kname(p, where, "min_version"));
		} else if (KEY_IS(k, "ciphers") || KEY_IS(k, "ciphersuites") ||
			   KEY_IS(k, "groups")) {
			char **dst = KEY_IS(k, "ciphers")	 ? &t->ciphers
				     : KEY_IS(k, "ciphersuites") ? &t->ciphersuites
								 : &t->groups;
			ret = get_str(p, v, where, sval(k), dst);
			if (!ret)
				ret = tls_list_check(p, v, where, sval(k), *dst);
		} else if (KEY_IS(k, "alpn")) {
			if (v->type != YAML_SEQUENCE_NODE || !n_items(v)) {
				ret = fail(p, v, "%s must be a list of protocol names",
					   kname(p, where, "alpn"));
			} else {
				t->alpn_len = 0;
				for (i = 0; !ret && i < n_items(v); i++) {
					yaml_node_t *a = node_at(p, v->data.sequence.items.start[i]);
					ret = want_str(p, a, where, "alpn");
					/* what the HTTP/1 session speaks; h2 waits for its codec */
					if (!ret && strcmp(sval(a), "http/1.1"))
						ret = fail(p, a, "%s: '%s' is not spoken here (only "
							   "http/1.1 so far)", kname(p, where, "alpn"),
							   sval(a));
					if (!ret) {
						size_t len = strlen(sval(a));
						if (t->alpn_len + 1 + len > sizeof(t->alpn))
							ret = fail(p, a, "%s: too many names",
								   kname(p, where, "alpn"));
						else {
							t->alpn[t->alpn_len++] = (unsigned char)len;
							memcpy(t->alpn + t->alpn_len, sval(a), len);
							t->alpn_len += (unsigned int)len;
						}
					}
				}
			}
		} else if (KEY_IS(k, "session_tickets")) {
			ret = parse_tls_tickets(p, v, where, t);
		} else if (KEY_IS(k, "client_auth")) {
			ret = parse_tls_client_auth(p, v, where, t);
		} else if (KEY_IS(k, "handshake_timeout")) {
			ret = get_duration(p, v, where, "handshake_timeout", 100,
					   &t->handshake_timeout);
		} else {
			ret = unknown(p, k, where);
		}
		if (ret)
			return ret;
	}
	if (!certs)
		return fail(p, n, "%s needs certificates", where);
	if (certs->type != YAML_SEQUENCE_NODE || !n_items(certs))
		return fail(p, certs, "%s must be a list of {cert, key}",
			    kname(p, where, "certificates"));
	if (n_items(certs) > SL_TLS_MAX_CERTS)
		return fail(p, certs, "%s: at most %d", kname(p, where, "certificates"),
			    SL_TLS_MAX_CERTS);
	t->certs = calloc(n_items(certs), sizeof(*t->certs));
	if (!t->certs)
		return oom(p);
	t->n_certs = (unsigned int)n_items(certs);
	for (i = 0; i < t->n_certs; i++) {
		snprintf(cwhere, sizeof(cwhere), "%s.certificates[%u]", where, i);
		ret = parse_tls_cert(p, node_at(p, certs->data.sequence.items.start[i]), cwhere,
				     &t->certs[i]);
		if (ret)
			return ret;
	}
	return 0;
}

static void listener_tls_free(struct sl_conf_listener_tls *t)
{
	if (!t)
		return;
	if (t->srv && t->srv_free)
		t->srv_free(t->srv);
	for (unsigned int i = 0; i < t->n_certs; i++) {
		free(t->certs[i].cert);
		free(t->certs[i].key);
	}
	free(t->certs);
	free(t->ciphers);
	free(t->ciphersuites);
	free(t->groups);
	free(t->ticket_key_file);
	free(t->client_ca);
	free(t->subject_header);
	free(t->fingerprint_header);
	free(t);
}

static int parse_listener(struct parse *p, yaml_node_t *n, unsigned int idx)
{
	struct sl_conf_listener *l = &p->c->listeners[idx];
	yaml_node_t *k, *v, *addr = NULL, *routes = NULL, *tls = NULL;
	size_t it;
	char where[32], rwhere[64];
	unsigned int i;
	int ret;

	snprintf(where, sizeof(where), "listeners[%u]", idx);
	ret = want_map(p, n, where);
	if (ret)
		return ret;
	for (it = 0; next_pair(p, n, &it, &k, &v);) {
		if (KEY_IS(k, "address"))
			addr = v;
		else if (KEY_IS(k, "routes"))
			routes = v;
		else if (KEY_IS(k, "tls"))
			tls = v;
		else
			return unknown(p, k, where);
	}
	if (!addr)
		return fail(p, n, "%s has no address", where);
	if (tls) {
		ret = parse_listener_tls(p, tls, where, l);
		if (ret)
			return ret;
	}
	ret = get_addr(p, addr, where, &l->address, &l->addr, &l->addrlen);
	if (ret)
		return ret;
	/* Compared resolved, so ":8080" and "0.0.0.0:8080" are caught as the same socket. */
	for (i = 0; i < idx; i++)
		if (same_sockaddr(&p->c->listeners[i].addr, &l->addr))
			return fail(p, addr, "duplicate listener address '%s' (as listeners[%u])",
				    l->address, i);
	/* No routes is legal: every request gets 404. */
	if (!routes)
		return 0;
	if (routes->type != YAML_SEQUENCE_NODE)
		return fail(p, routes, "%s must be a sequence", kname(p, where, "routes"));
	if (!n_items(routes))
		return 0;
	l->routes = calloc(n_items(routes), sizeof(*l->routes));
	if (!l->routes)
		return oom(p);
	l->n_routes = n_items(routes);
	for (i = 0; i < l->n_routes; i++) {
		snprintf(rwhere, sizeof(rwhere), "%s.routes[%u]", where, i);
		ret = parse_route(p, node_at(p, routes->data.sequence.items.start[i]), rwhere,
				  &l->routes[i]);
		if (ret)
			return ret;
	}
	return 0;
}

static int parse_listeners(struct parse *p, yaml_node_t *n)
{
	struct sl_conf *c = p->c;
	unsigned int i;
	int ret;

	if (is_null(n))
		return fail(p, n, "no listeners defined");
	if (n->type != YAML_SEQUENCE_NODE)
		return fail(p, n, "listeners must be a sequence");
	if (!n_items(n))
		return fail(p, n, "no listeners defined");
	/* workers keep one listening socket per listener in a fixed array */
	if (n_items(n) > SL_MAX_LISTENERS)
		return fail(p, n, "too many listeners (%zu, at most %u)", n_items(n),
			    SL_MAX_LISTENERS);
	c->listeners = calloc(n_items(n), sizeof(*c->listeners));
	if (!c->listeners)
		return oom(p);
	c->n_listeners = n_items(n);
	for (i = 0; i < SL_MAX_LISTENERS; i++)
		c->slot_index[i] = (int8_t)(i < c->n_listeners ? (int)i : -1);
	for (i = 0; i < c->n_listeners; i++) {
		ret = parse_listener(p, node_at(p, n->data.sequence.items.start[i]), i);
		if (ret)
			return ret;
	}
	return 0;
}

static int parse_bpf(struct parse *p, yaml_node_t *n)
{
	static const char *const modes[] = {
	    [SL_BPF_AUTO] = "auto",
	    [SL_BPF_REQUIRED] = "required",
	    [SL_BPF_OFF] = "off",
	};
	struct sl_conf_bpf *b = &p->c->bpf;
	yaml_node_t *k, *v;
	size_t it;
	uint64_t u;
	unsigned int i;
	int ret = want_map(p, n, "bpf");

	if (ret)
		return ret;
	for (it = 0; next_pair(p, n, &it, &k, &v);) {
		if (KEY_IS(k, "steering")) {
			/* "off" is a YAML 1.1 boolean: accept its spellings as the keyword */
			if (v->type == YAML_SCALAR_NODE &&
			    (!strcasecmp(sval(v), "false") || !strcasecmp(sval(v), "no"))) {
				b->steering = SL_BPF_OFF;
				continue;
			}
			ret = want_str(p, v, "bpf", "steering");
			if (ret)
				return ret;
			for (i = 0; i < 3 && strcasecmp(sval(v), modes[i]); i++)
				;
			if (i == 3)
				return fail(p, v, "bpf.steering must be auto, required or off");
			b->steering = i;
		} else if (KEY_IS(k, "pin_path")) {
			ret = want_str(p, v, "bpf", "pin_path");
			if (!ret && sval(v)[0] != '/')
				return fail(p, v, "bpf.pin_path must be an absolute path");
			if (!ret) {
				free(b->pin_path);
				b->pin_path = NULL;
				ret = get_str(p, v, "bpf", "pin_path", &b->pin_path);
			}
		} else if (KEY_IS(k, "stall_ms")) {
			ret = get_uint(p, v, "bpf", "stall_ms", 1, 60000, &u);
			b->stall_ms = (unsigned int)u;
		} else if (KEY_IS(k, "heartbeat_ms")) {
			ret = get_uint(p, v, "bpf", "heartbeat_ms", 1, 10000, &u);
			b->heartbeat_ms = (unsigned int)u;
		} else if (KEY_IS(k, "max_conns_per_worker")) {
			ret = get_uint(p, v, "bpf", "max_conns_per_worker", 0, 10000000, &u);
			b->max_conns_per_worker = (unsigned int)u;
		} else if (KEY_IS(k, "locality")) {
			/* "off" is a YAML 1.1 boolean too */
			if (v->type == YAML_SCALAR_NODE &&
			    (!strcasecmp(sval(v), "false") || !strcasecmp(sval(v), "no") ||
			     !strcasecmp(sval(v), "off"))) {
				b->locality = 0;
				continue;
			}
			ret = want_str(p, v, "bpf", "locality");
			if (ret)
				return ret;
			if (strcasecmp(sval(v), "prefer"))
				return fail(p, v, "bpf.locality must be prefer or off");
			b->locality = 1;
		} else if (KEY_IS(k, "load_margin")) {
			ret = get_uint(p, v, "bpf", "load_margin", 1, 1000, &u);
			b->load_margin = (unsigned int)u;
		} else if (KEY_IS(k, "load_signal")) {
			ret = want_str(p, v, "bpf", "load_signal");
			if (ret)
				return ret;
			if (!strcasecmp(sval(v), "both"))
				b->load_signal = SL_LOAD_BOTH;
			else if (!strcasecmp(sval(v), "connections"))
				b->load_signal = SL_LOAD_CONNECTIONS;
			else if (!strcasecmp(sval(v), "cpu"))
				b->load_signal = SL_LOAD_CPU;
			else
				return fail(p, v, "bpf.load_signal must be both, connections or cpu");
		} else if (KEY_IS(k, "workers_pin")) {
			ret = get_bool(p, v, "bpf", "workers_pin", &b->workers_pin);
		} else {
			ret = unknown(p, k, "bpf");
		}
		if (ret)
			return ret;
	}
	if (b->heartbeat_ms >= b->stall_ms)
		return fail(p, n, "bpf.heartbeat_ms (%u) must be below bpf.stall_ms (%u)",
			    b->heartbeat_ms, b->stall_ms);
	return 0;
}

static bool is_loopback(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr) >> 24) == 127;
	if (ss->ss_family == AF_INET6)
		return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)ss)->sin6_addr);
	return false;
}

/* The token file: one line (a final newline is not part of it), printable, at most 4 KiB.
 * Read at every load, so a reload picks up a rotated token. */
static int read_token(struct parse *p, yaml_node_t *v, struct sl_conf_admin *a)
{
	char buf[4098];
	size_t n;
	FILE *f = fopen(a->token_file, "re");

	if (!f)
		return fail(p, v, "admin.token_file: cannot open '%s': %s", a->token_file,
			    strerror(errno));
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	if (n && buf[n - 1] == '\n')
		buf[--n] = 0;
	if (n && buf[n - 1] == '\r')
		buf[--n] = 0;
	if (n > 4096)
		return fail(p, v, "admin.token_file: '%s' is over 4096 bytes", a->token_file);
	if (!n)
		return fail(p, v, "admin.token_file: '%s' is empty", a->token_file);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)buf[i] <= ' ' || (unsigned char)buf[i] >= 0x7f)
			return fail(p, v, "admin.token_file: '%s' holds a space or control "
					  "character (one line of printable characters expected)",
				    a->token_file);
	free(a->token);
	a->token = strdup(buf);
	return a->token ? 0 : oom(p);
}

static int parse_admin(struct parse *p, yaml_node_t *n)
{
	struct sl_conf_admin *a = &p->c->admin;
	yaml_node_t *k, *v, *listen = NULL, *token = NULL, *token_file = NULL;
	size_t it;
	int ret = want_map(p, n, "admin");

	if (ret)
		return ret;
	for (it = 0; next_pair(p, n, &it, &k, &v);) {
		if (KEY_IS(k, "socket")) {
			ret = want_str(p, v, "admin", "socket");
			if (!ret && sval(v)[0] != '/')
				return fail(p, v, "admin.socket must be an absolute path");
			if (!ret && strlen(sval(v)) >= 108)
				return fail(p, v, "admin.socket path too long (at most 107 bytes)");
			if (!ret)
				ret = get_str(p, v, "admin", "socket", &a->socket);
		} else if (KEY_IS(k, "listen")) {
			listen = v;
			ret = get_addr(p, v, "admin.listen", &a->listen, &a->listen_addr,
				       &a->listen_addrlen);
		} else if (KEY_IS(k, "token")) {
			token = v;
			ret = get_str(p, v, "admin", "token", &a->token);
		} else if (KEY_IS(k, "token_file")) {
			token_file = v;
			ret = get_str(p, v, "admin", "token_file", &a->token_file);
		} else if (KEY_IS(k, "allow_remote")) {
			ret = get_bool(p, v, "admin", "allow_remote", &a->allow_remote);
		} else if (KEY_IS(k, "debug")) {
			ret = get_bool(p, v, "admin", "debug", &a->debug);
		} else {
			ret = unknown(p, k, "admin");
		}
		if (ret)
			return ret;
	}
	if (token && token_file)
		return fail(p, token_file, "admin: token and token_file are exclusive");
	if (token_file) {
		ret = read_token(p, token_file, a);
		if (ret)
			return ret;
	}
	if (listen && !a->allow_remote && !is_loopback(&a->listen_addr))
		return fail(p, listen, "admin.listen must be a loopback address (or set "
				       "admin.allow_remote: true)");
	if (a->listen && (!a->token || !a->token[0]))
		return fail(p, n, "admin.listen needs admin.token or admin.token_file (a bearer "
				  "token)");
	return 0;
}

/* ---- process: user, group, keep_capabilities ---- */

/* The capabilities worth keeping after the drop, by their config name (lower case, no
 * CAP_ prefix, as capabilities(7) and systemd spell them without it). */
static const struct {
	const char *name;
	int cap;
} cap_names[] = {
    {"net_bind_service", CAP_NET_BIND_SERVICE},
    {"net_admin", CAP_NET_ADMIN},
    {"bpf", CAP_BPF},
    {"perfmon", CAP_PERFMON},
    {"sys_resource", CAP_SYS_RESOURCE},
};

const char *sl_conf_cap_name(int cap)
{
	for (size_t i = 0; i < sizeof(cap_names) / sizeof(cap_names[0]); i++)
		if (cap_names[i].cap == cap)
			return cap_names[i].name;
	return NULL;
}

static int all_digits(const char *s)
{
	return *s && strspn(s, "0123456789") == strlen(s);
}

static int parse_user(struct parse *p, yaml_node_t *v, int *named)
{
	struct sl_conf_process *pr = &p->c->proc;
	char buf[4096];
	struct passwd pw, *res = NULL;
	int ret = get_str(p, v, "", "user", &pr->user);

	if (ret)
		return ret;
	if (!pr->user[0])
		return fail(p, v, "user must not be empty");
	if (all_digits(pr->user)) {
		unsigned long long u = strtoull(pr->user, NULL, 10);
		if (strlen(pr->user) > 10 || u >= 0xffffffffULL)
			return fail(p, v, "user %s is out of range", pr->user);
		pr->uid = (unsigned int)u;
		*named = 0;
		if (!getpwuid_r((uid_t)u, &pw, buf, sizeof(buf), &res) && res) {
			pr->gid = (unsigned int)pw.pw_gid;
			*named = 1;
		}
	} else {
		int e = getpwnam_r(pr->user, &pw, buf, sizeof(buf), &res);
		if (e || !res)
			return fail(p, v, "user '%s' does not exist%s%s", pr->user,
				    e ? ": " : " (no such entry in the passwd database)",
				    e ? strerror(e) : "");
		pr->uid = (unsigned int)pw.pw_uid;
		pr->gid = (unsigned int)pw.pw_gid;
		*named = 1;
	}
	if (pr->uid == 0)
		return fail(p, v, "user '%s' is root: leave user out to run as root", pr->user);
	return 0;
}

/* 1 when the passwd entry of uid lists gid 0 among the groups initgroups() would give
 * it with primary group gid (its supplementary groups from the group database), 0 when
 * not, -errno when they cannot be read. */
static int in_root_group(unsigned int uid, unsigned int gid)
{
	char buf[4096];
	struct passwd pw, *res = NULL;
	if (getpwuid_r((uid_t)uid, &pw, buf, sizeof(buf), &res) || !res)
		return 0; /* a bare uid gets no supplementary group */
	int n = 64, r = 0;
	for (int tries = 0; tries < 8; tries++) {
		gid_t *g = malloc((size_t)n * sizeof(*g));
		if (!g)
			return -ENOMEM;
		int want = n;
		if (getgrouplist(pw.pw_name, (gid_t)gid, g, &want) >= 0) {
			for (int i = 0; i < want && !r; i++)
				r = g[i] == 0;
			free(g);
			return r;
		}
		free(g);
		n = want > n ? want : n * 2;
	}
	return -E2BIG;
}

static int parse_group(struct parse *p, yaml_node_t *v)
{
	struct sl_conf_process *pr = &p->c->proc;
	char buf[4096];
	struct group gr, *res = NULL;
	int ret = get_str(p, v, "", "group", &pr->group);

	if (ret)
		return ret;
	if (all_digits(pr->group)) {
		unsigned long long g = strtoull(pr->group, NULL, 10);
		if (strlen(pr->group) > 10 || g >= 0xffffffffULL)
			return fail(p, v, "group %s is out of range", pr->group);
		pr->gid = (unsigned int)g;
	} else {
		int e = getgrnam_r(pr->group, &gr, buf, sizeof(buf), &res);
		if (e || !res)
			return fail(p, v, "group '%s' does not exist%s%s", pr->group,
				    e ? ": " : " (no such entry in the group database)",
				    e ? strerror(e) : "");
		pr->gid = (unsigned int)gr.gr_gid;
	}
	if (pr->gid == 0)
		return fail(p, v, "group '%s' is root's group: name an unprivileged group",
			    pr->group);
	return 0;
}

static int parse_keep_caps(struct parse *p, yaml_node_t *v)
{
	struct sl_conf_process *pr = &p->c->proc;

	if (v->type != YAML_SEQUENCE_NODE)
		return fail(p, v, "keep_capabilities must be a sequence (e.g. [net_bind_service])");
	pr->keep_caps = 0;
	for (size_t i = 0; i < n_items(v); i++) {
		yaml_node_t *e = node_at(p, v->data.sequence.items.start[i]);
		size_t k, n = sizeof(cap_names) / sizeof(cap_names[0]);
		int ret = want_str(p, e, "keep_capabilities", "entry");

		if (ret)
			return ret;
		const char *s = sval(e);
		if (!strncasecmp(s, "cap_", 4))
			s += 4;
		for (k = 0; k < n && strcasecmp(s, cap_names[k].name); k++)
			;
		if (k == n)
			return fail(p, e,
				    "keep_capabilities: '%s' is not one of net_bind_service, "
				    "net_admin, bpf, perfmon, sys_resource",
				    sval(e));
		pr->keep_caps |= 1ull << cap_names[k].cap;
	}
	return 0;
}

static int parse_root(struct parse *p)
{
	yaml_node_t *root = yaml_document_get_root_node(p->doc), *k, *v, *listeners = NULL;
	yaml_node_t *user = NULL, *group = NULL, *keep = NULL;
	int named = 0;
	size_t it;
	yaml_mark_t start = {0};
	int ret;

	if (!root)
		return fail_at(p, start, "no listeners defined");
	ret = want_map(p, root, "the top level");
	if (ret)
		return ret;
	for (it = 0; next_pair(p, root, &it, &k, &v);) {
		if (KEY_IS(k, "workers"))
			ret = parse_workers(p, v);
		else if (KEY_IS(k, "log"))
			ret = parse_log(p, v);
		else if (KEY_IS(k, "shutdown"))
			ret = parse_shutdown(p, v);
		else if (KEY_IS(k, "limits"))
			ret = parse_limits(p, v);
		else if (KEY_IS(k, "timeouts"))
			ret = parse_timeouts(p, v);
		else if (KEY_IS(k, "forwarded"))
			ret = parse_forwarded(p, v);
		else if (KEY_IS(k, "bpf"))
			ret = parse_bpf(p, v);
		else if (KEY_IS(k, "admin"))
			ret = parse_admin(p, v);
		else if (KEY_IS(k, "upstreams"))
			ret = parse_upstreams(p, v);
		else if (KEY_IS(k, "cache"))
			ret = parse_cache(p, v);
		else if (KEY_IS(k, "listeners"))
			listeners = v; /* routes name upstreams, which may come later in the file */
		else if (KEY_IS(k, "user"))
			ret = parse_user(p, (user = v), &named);
		else if (KEY_IS(k, "group"))
			group = v; /* after user: it overrides the user's primary group */
		else if (KEY_IS(k, "keep_capabilities"))
			ret = parse_keep_caps(p, (keep = v));
		else
			ret = unknown(p, k, "");
		if (ret)
			return ret;
	}
	if (group) {
		if (!user)
			return fail(p, group, "group needs user (the user to run as)");
		ret = parse_group(p, group);
		if (ret)
			return ret;
	} else if (user && !named) {
		return fail(p, user, "user %s has no passwd entry: name its group too (group:)",
			    p->c->proc.user);
	}
	p->c->proc.named = named;
	if (user && !group && p->c->proc.gid == 0)
		return fail(p, user,
			    "user '%s' has root's group (gid 0) as its primary group: name an "
			    "unprivileged group (group:)",
			    p->c->proc.user);
	if (user && named) {
		/* initgroups() would hand the user its supplementary groups: root's among
		 * them is root's group, refused as group: root is */
		int r = in_root_group(p->c->proc.uid, p->c->proc.gid);
		if (r > 0)
			return fail(p, user,
				    "user '%s' is a member of root's group (gid 0) as a "
				    "supplementary group: remove it from that group",
				    p->c->proc.user);
		if (r < 0)
			return fail(p, user, "cannot read the groups of user '%s': %s",
				    p->c->proc.user, strerror(-r));
	}
	if (keep && !user)
		return fail(p, keep, "keep_capabilities needs user (capabilities are dropped "
				     "only when switching to it)");
	if (!listeners)
		return fail(p, root, "no listeners defined");
	return parse_listeners(p, listeners);
}

static void syntax_error(struct parse *p, const yaml_parser_t *ps, const char *text, size_t len)
{
	const char *problem = ps->problem ? ps->problem : "syntax error";
	yaml_mark_t m = ps->problem_mark;
	size_t i;

	if (ps->error == YAML_MEMORY_ERROR) {
		oom(p);
		return;
	}
	if (ps->error == YAML_READER_ERROR) {
		/* Encoding errors carry a byte offset, not a mark. */
		memset(&m, 0, sizeof(m));
		for (i = 0; i < ps->problem_offset && i < len; i++) {
			if (text[i] == '\n') {
				m.line++;
				m.column = 0;
			} else {
				m.column++;
			}
		}
	}
	if (ps->context)
		fail_at(p, m, "%s (%s at %zu:%zu)", problem, ps->context, ps->context_mark.line + 1,
			ps->context_mark.column + 1);
	else
		fail_at(p, m, "%s", problem);
}

/* libyaml has no nesting limit, and its scanner and composer slow down with depth (a
 * flow sequence nested 100,000 deep took over a minute to reject). An event pass that
 * stops at the first node too deep bounds that work before anything is built; sluice's
 * own schema needs 6 levels. */
static int check_depth(struct parse *p, const char *text, size_t len)
{
	yaml_parser_t ps;
	yaml_event_t ev;
	unsigned int depth = 0;
	int ret = 0, done = 0;

	if (!yaml_parser_initialize(&ps))
		return oom(p);
	yaml_parser_set_input_string(&ps, (const unsigned char *)text, len);
	while (!done && !ret) {
		if (!yaml_parser_parse(&ps, &ev)) {
			syntax_error(p, &ps, text, len);
			ret = -EINVAL;
			break;
		}
		switch (ev.type) {
		case YAML_SEQUENCE_START_EVENT:
		case YAML_MAPPING_START_EVENT:
			if (++depth > SL_CONF_MAX_DEPTH)
				ret = fail_at(
				    p, ev.start_mark,
				    "nested deeper than %u levels of mappings and sequences",
				    SL_CONF_MAX_DEPTH);
			break;
		case YAML_SEQUENCE_END_EVENT:
		case YAML_MAPPING_END_EVENT:
			depth--;
			break;
		case YAML_STREAM_END_EVENT:
			done = 1;
			break;
		default:
			break;
		}
		yaml_event_delete(&ev);
	}
	yaml_parser_delete(&ps);
	return ret;
}

static void conf_free(struct sl_conf *c)
{
	unsigned int i, j, h;

	for (i = 0; i < c->n_listeners; i++) {
		struct sl_conf_listener *l = &c->listeners[i];

		for (j = 0; j < l->n_routes; j++) {
			struct sl_conf_route *r = &l->routes[j];

			free(r->host);
			free(r->path);
			free(r->upstream_name);
			for (h = 0; h < r->respond.n_headers; h++) {
				free(r->respond.headers[h].name);
				free(r->respond.headers[h].value);
			}
			free(r->respond.headers);
			free(r->respond.body);
			if (r->cache) {
				free(r->cache->zone_name);
				free(r->cache->key);
				free(r->cache->tpl);
				free(r->cache->status_header);
				free(r->cache);
			}
		}
		free(l->routes);
		free(l->address);
		listener_tls_free(l->tls);
	}
	free(c->listeners);
	for (i = 0; i < c->n_upstreams; i++) {
		struct sl_conf_upstream *u = &c->upstreams[i];

		for (j = 0; j < u->n_servers; j++)
			free(u->servers[j].address);
		free(u->servers);
		free(u->name);
		free(u->tls.ca);
		free(u->tls.verify_hostname);
		free(u->tls.sni);
		free(u->tls.client_cert);
		free(u->tls.client_key);
		free(u->via.address);
		free(u->lb.hash_name);
		free(u->hc.method);
		free(u->hc.path);
		free(u->hc.host);
		free(u->hc.body);
		if (u->live_put)
			u->live_put(u->live); /* lb/'s live upstream, one reference per snapshot */
	}
	free(c->upstreams);
	for (i = 0; i < c->cache.n_zones; i++)
		free(c->cache.zones[i].name);
	free(c->cache.zones);
	free(c->bpf.pin_path);
	free(c->admin.socket);
	free(c->admin.listen);
	free(c->admin.token);
	free(c->admin.token_file);
	free(c->proc.user);
	free(c->proc.group);
	free(c->log.error_log);
	free(c->log.access_log);
	free(c->path);
	free(c);
}

static void set_defaults(struct sl_conf *c)
{
	atomic_init(&c->refcnt, 1);
	c->workers = 0;
	c->shutdown_grace = 30000;
	c->log.level = SL_LOG_INFO;
	c->limits.max_header_count = 100;
	c->limits.max_header_bytes = 32 * 1024;
	c->limits.max_target_length = 8 * 1024;
	c->limits.max_body_size = 0;
	c->timeouts.client_header = 10000;
	c->timeouts.client_keepalive = 60000;
	c->timeouts.client_body = 60000;
	c->timeouts.upstream_connect = 3000;
	c->timeouts.upstream_response_header = 60000;
	c->timeouts.upstream_idle = 60000;
	c->bpf.steering = SL_BPF_AUTO;
	c->bpf.stall_ms = 200;
	c->bpf.heartbeat_ms = 10;
	c->bpf.locality = 1;
	/* near-strict locality: measured better on a shared 2-CPU node (docs/architecture.md) */
	c->bpf.load_margin = 1000;
	c->bpf.load_signal = SL_LOAD_CONNECTIONS;
	c->bpf.workers_pin = 1;
	c->forwarded.x_forwarded_for = 1;
	c->forwarded.x_forwarded_proto = 1;
	c->forwarded.x_forwarded_host = 1;
	{
		char why[128];
		sl_logfmt_compile(sl_logfmt_default, &c->log.access_log_format, why, sizeof(why));
	}
}

struct sl_conf *sl_conf_parse(const char *text, size_t len, const char *name, char *err,
			      size_t errlen)
{
	struct parse p = {.name = name ? name : "<config>", .err = err, .errlen = errlen};
	yaml_parser_t parser;
	yaml_document_t doc, extra;
	int ret = -EINVAL;

	if (err && errlen)
		err[0] = '\0';
	p.c = calloc(1, sizeof(*p.c));
	if (!p.c) {
		oom(&p);
		return NULL;
	}
	set_defaults(p.c);
	p.c->path = strdup(p.name);
	if (!p.c->path || !yaml_parser_initialize(&parser)) {
		oom(&p);
		conf_free(p.c);
		return NULL;
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	if (check_depth(&p, text, len))
		goto out;
	if (!yaml_parser_load(&parser, &doc)) {
		syntax_error(&p, &parser, text, len);
		goto out;
	}
	p.doc = &doc;
	ret = parse_root(&p);
	yaml_document_delete(&doc);
	if (ret)
		goto out;
	/* A second document would be silently ignored; an operator who wrote one meant it. */
	if (!yaml_parser_load(&parser, &extra)) {
		syntax_error(&p, &parser, text, len);
		ret = -EINVAL;
		goto out;
	}
	if (yaml_document_get_root_node(&extra))
		ret = fail_at(&p, extra.start_mark, "only one YAML document is allowed");
	yaml_document_delete(&extra);
out:
	yaml_parser_delete(&parser);
	if (ret) {
		conf_free(p.c);
		return NULL;
	}
	return p.c;
}

struct sl_conf *sl_conf_load(const char *path, char *err, size_t errlen)
{
	struct sl_conf *c = NULL;
	size_t len = 0, cap = 0;
	char *buf = NULL, *nb;
	FILE *f;

	f = fopen(path, "re");
	if (!f) {
		if (err && errlen)
			snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
		return NULL;
	}
	for (;;) {
		size_t n;

		if (len == cap) {
			cap = cap ? cap * 2 : 8192;
			if (cap > CONF_FILE_MAX + 1)
				cap = CONF_FILE_MAX + 1;
			nb = len < cap ? realloc(buf, cap) : NULL;
			if (!nb) {
				if (err && errlen)
					snprintf(err, errlen, "%s: %s", path,
						 len < cap ? "out of memory" : "file too large");
				goto out;
			}
			buf = nb;
		}
		n = fread(buf + len, 1, cap - len, f);
		len += n;
		if (n)
			continue;
		if (ferror(f)) {
			if (err && errlen)
				snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
			goto out;
		}
		break;
	}
	c = sl_conf_parse(buf ? buf : "", len, path, err, errlen);
out:
	free(buf);
	fclose(f);
	return c;
}

void sl_conf_get(struct sl_conf *c)
{
	atomic_fetch_add_explicit(&c->refcnt, 1, memory_order_relaxed);
}

void sl_conf_put(struct sl_conf *c)
{
	if (!c)
		return;
	/* acq_rel: every holder's reads happen before the free by whoever drops the last one. */
	if (atomic_fetch_sub_explicit(&c->refcnt, 1, memory_order_acq_rel) == 1)
		conf_free(c);
}

/* Decimal digits only: strtoul would take signs, spaces and hex, none of which belong here. */
static const char *parse_digits(const char *s, uint64_t *v)
{
	const char *d = s;

	*v = 0;
	for (; *s >= '0' && *s <= '9'; s++) {
		if (*v > (UINT64_MAX - (*s - '0')) / 10)
			return NULL;
		*v = *v * 10 + (*s - '0');
	}
	return s == d ? NULL : s;
}

int sl_parse_duration(const char *s, unsigned int *ms)
{
	uint64_t v, mul;

	if (!s || !(s = parse_digits(s, &v)))
		return -EINVAL;
	if (!*s || !strcmp(s, "s"))
		mul = 1000;
	else if (!strcmp(s, "ms"))
		mul = 1;
	else if (!strcmp(s, "m"))
		mul = 60 * 1000;
	else if (!strcmp(s, "h"))
		mul = 3600 * 1000;
	else
		return -EINVAL;
	if (v > UINT32_MAX / mul)
		return -EINVAL;
	*ms = v * mul;
	return 0;
}

int sl_parse_size(const char *s, uint64_t *out)
{
	static const struct {
		const char *suffix;
		unsigned int shift;
	} units[] = {
	    {"", 0},	{"b", 0},    {"k", 10}, {"kb", 10}, {"kib", 10}, {"m", 20},
	    {"mb", 20}, {"mib", 20}, {"g", 30}, {"gb", 30}, {"gib", 30},
	};
	uint64_t v;
	size_t i;

	if (!s || !(s = parse_digits(s, &v)))
		return -EINVAL;
	for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcasecmp(s, units[i].suffix))
			continue;
		if (v > UINT64_MAX >> units[i].shift)
			return -EINVAL;
		*out = v << units[i].shift;
		return 0;
	}
	return -EINVAL;
}

static int parse_addr(const char *s, struct sockaddr_storage *ss, socklen_t *len,
		      int numeric_only)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	const char *port, *end;
	char host[256];
	uint64_t pnum;
	size_t hl;
	int ret;

	if (!s)
		return -EINVAL;
	if (s[0] == '[') {
		end = strchr(s, ']');
		if (!end || end[1] != ':')
			return -EINVAL;
		hl = end - s - 1;
		if (!hl || hl >= sizeof(host))
			return -EINVAL;
		memcpy(host, s + 1, hl);
		port = end + 2;
		hints.ai_family = AF_INET6;
		hints.ai_flags = AI_NUMERICHOST;
	} else {
		end = strrchr(s, ':');
		if (!end)
			return -EINVAL;
		hl = end - s;
		/* A bare IPv6 address is ambiguous with its port: brackets are required. */
		if (hl >= sizeof(host) || memchr(s, ':', hl))
			return -EINVAL;
		memcpy(host, s, hl);
		port = end + 1;
		hints.ai_family = AF_UNSPEC;
	}
	host[hl] = '\0';
	end = parse_digits(port, &pnum);
	if (!end || *end || pnum < 1 || pnum > 65535)
		return -EINVAL;

	memset(ss, 0, sizeof(*ss));
	if (!hl) {
		sin->sin_family = AF_INET;
		sin->sin_addr.s_addr = htonl(INADDR_ANY);
		sin->sin_port = htons(pnum);
		*len = sizeof(*sin);
		return 0;
	}
	/* getaddrinfo takes inet_aton's "127.1"; a dotted number must be a full dotted quad. */
	if (hints.ai_family == AF_UNSPEC && strspn(host, "0123456789.") == hl) {
		sin->sin_family = AF_INET;
		if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
			return -EINVAL;
		sin->sin_port = htons(pnum);
		*len = sizeof(*sin);
		return 0;
	}
	if (numeric_only && !(hints.ai_flags & AI_NUMERICHOST))
		return 1; /* a host name: resolving it may block (sl_parse_addr does) */
	ret = getaddrinfo(host, NULL, &hints, &res);
	if (ret == EAI_AGAIN)
		return -EAGAIN;
	if (ret == EAI_MEMORY)
		return -ENOMEM;
	if (ret)
		return hints.ai_flags & AI_NUMERICHOST ? -EINVAL : -ENOENT;
	if (res->ai_addrlen > sizeof(*ss) ||
	    (res->ai_family != AF_INET && res->ai_family != AF_INET6)) {
		freeaddrinfo(res);
		return -EINVAL;
	}
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*len = res->ai_addrlen;
	freeaddrinfo(res);
	if (ss->ss_family == AF_INET)
		sin->sin_port = htons(pnum);
	else
		((struct sockaddr_in6 *)ss)->sin6_port = htons(pnum);
	return 0;
}

int sl_parse_addr(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
	return parse_addr(s, ss, len, 0);
}

int sl_parse_addr_numeric(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
	return parse_addr(s, ss, len, 1);
}
