/* libFuzzer target: HTTP/1.1 heads through llhttp and sl_head_* (collection, framing
 * checks, hop-by-hop marking, edits, rewriting), fed in random splits the way reads
 * arrive. The first input byte picks request/response and the split size. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/http.h"

static void run(const uint8_t *data, size_t size, int is_request, size_t step)
{
	static struct sl_http_parser hp;
	static struct sl_head head;
	char *buf = malloc(size ? size : 1);
	memcpy(buf, data, size);
	sl_http_parser_init(&hp, is_request, &head);
	sl_head_reset(&head, 100, 8192);
	size_t off = 0;
	llhttp_errno_t e = HPE_OK;
	while (off < size) {
		size_t n = size - off < step ? size - off : step, used;
		e = sl_http_execute(&hp, buf, buf + off, n, &used);
		off += used;
		if (e != HPE_OK)
			break;
	}
	if (hp.headers_done) {
		const char *why;
		if (sl_head_analyze(&head, buf, is_request, &why) == 0) {
			char out[4096];
			struct sl_out o;
			sl_head_set(&head, buf, "X-Forwarded-For", "127.0.0.1");
			sl_head_remove(&head, buf, "x-a", 3);
			sl_out_init(&o, out, sizeof(out));
			sl_out_headers(&o, &head, buf);
			/* what sluice forwards must itself parse as one clean head */
			if (o.ok && o.len + 2 < sizeof(out) && head.n) {
				for (size_t i = 0; i < o.len; i++)
					if (out[i] == '\0')
						abort();
			}
		}
		/* the body after the head: run until the end or an error */
		if (e == HPE_PAUSED && off < size) {
			size_t used;
			sl_http_execute(&hp, buf, buf + off, size - off, &used);
		}
	}
	free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	int is_request = !(data[0] & 0x80);
	size_t step = (size_t)(data[0] & 0x7f) + 1;
	run(data + 1, size - 1, is_request, step);
	return 0;
}
