/* Status lines, reason phrases, and the responses sluice makes itself: error pages
 * and configured fixed responses. */
#include <stdio.h>
#include <string.h>

#include "config/config-t.h"
#include "http/http.h"

void sl_h1_status_line(struct sl_out *o, int status)
{
	sl_out_str(o, "HTTP/1.1 ");
	sl_out_uint(o, (uint64_t)status);
	sl_out_put(o, " ", 1);
	sl_out_str(o, sl_http_reason(status));
	sl_out_str(o, "\r\n");
}

void sl_h1_render_local(struct sl_out *o, int status, const char *ctype,
			const struct sl_conf_header *hdrs, unsigned int n_hdrs, size_t body_len,
			enum sl_h1_conn conn)
{
	sl_h1_status_line(o, status);
	if (ctype) {
		sl_out_str(o, "Content-Type: ");
		sl_out_str(o, ctype);
		sl_out_str(o, "\r\n");
	}
	for (unsigned int i = 0; i < n_hdrs; i++) {
		sl_out_str(o, hdrs[i].name);
		sl_out_str(o, ": ");
		sl_out_str(o, hdrs[i].value);
		sl_out_str(o, "\r\n");
	}
	if (status != 204 && status != 304) {
		sl_out_str(o, "Content-Length: ");
		sl_out_uint(o, body_len);
		sl_out_str(o, "\r\n");
	}
	if (conn == SL_H1_CLOSE)
		sl_out_str(o, "Connection: close\r\n");
	else if (conn == SL_H1_KEEP_10)
		sl_out_str(o, "Connection: keep-alive\r\n");
	sl_out_str(o, "\r\n");
}

const char *sl_error_page(int status, size_t *len)
{
	/* built on first use, by any worker: each is written whole before its flag */
	static char bodies[600][48];
	static int ready[600];
	if (status < 100 || status >= 600)
		status = 500;
	if (!__atomic_load_n(&ready[status], __ATOMIC_ACQUIRE)) {
		snprintf(bodies[status], sizeof(bodies[status]), "%d %s\n", status,
			 sl_http_reason(status));
		__atomic_store_n(&ready[status], 1, __ATOMIC_RELEASE);
	}
	*len = strlen(bodies[status]);
	return bodies[status];
}

static const struct sl_conf_header allow_hdr[] = {
    {.name = "Allow", .value = "GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH"},
};

const struct sl_conf_header *sl_error_page_headers(int status, unsigned int *n)
{
	*n = status == 405;
	return status == 405 ? allow_hdr : NULL;
}

const char *sl_http_reason(int status)
{
	switch (status) {
	case 100:
		return "Continue";
	case 101:
		return "Switching Protocols";
	case 200:
		return "OK";
	case 201:
		return "Created";
	case 202:
		return "Accepted";
	case 204:
		return "No Content";
	case 206:
		return "Partial Content";
	case 301:
		return "Moved Permanently";
	case 302:
		return "Found";
	case 304:
		return "Not Modified";
	case 307:
		return "Temporary Redirect";
	case 308:
		return "Permanent Redirect";
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 408:
		return "Request Timeout";
	case 413:
		return "Content Too Large";
	case 414:
		return "URI Too Long";
	case 417:
		return "Expectation Failed";
	case 505:
		return "HTTP Version Not Supported";
	case 429:
		return "Too Many Requests";
	case 431:
		return "Request Header Fields Too Large";
	case 500:
		return "Internal Server Error";
	case 501:
		return "Not Implemented";
	case 502:
		return "Bad Gateway";
	case 503:
		return "Service Unavailable";
	case 504:
		return "Gateway Timeout";
	default:
		return status < 200   ? "Informational"
		       : status < 300 ? "OK"
		       : status < 400 ? "Redirect"
		       : status < 500 ? "Client Error"
				      : "Server Error";
	}
}
