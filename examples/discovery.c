/* discovery: sluiced plus a service that reads a server list from a file every second
 * and swaps it into an upstream with the API the admin endpoint uses (service discovery
 * in a page). File: one "host:port [weight]" per line; '#' starts a comment.
 * Run: build/examples/discovery -c CONFIG, with SL_DISCOVERY_FILE=PATH and
 * SL_DISCOVERY_UPSTREAM=NAME (default "u"). A bad file changes nothing (logged). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/sluice.h"

#define MAX 4096

static char names[MAX][128];
static struct sl_server_spec list[MAX];
static char last[1 << 16]; /* the file as last applied: unchanged files are skipped */

static void poll_file(void *data)
{
	const char *path = getenv("SL_DISCOVERY_FILE"), *up = getenv("SL_DISCOVERY_UPSTREAM");
	char text[sizeof(last)], err[256], *save = NULL;
	FILE *f = path ? fopen(path, "re") : NULL;
	if (!f)
		return;
	size_t len = fread(text, 1, sizeof(text) - 1, f);
	fclose(f);
	text[len] = 0;
	if (!strcmp(text, last))
		return;
	strcpy(last, text);
	unsigned int n = 0;
	for (char *ln = strtok_r(text, "\n", &save); ln && n < MAX; ln = strtok_r(NULL, "\n", &save)) {
		unsigned int w = 1;
		*strchrnul(ln, '#') = 0;
		if (sscanf(ln, "%127s %u", names[n], &w) >= 1)
			list[n] = (struct sl_server_spec){.address = names[n], .weight = w}, n++;
	}
	if (sl_upstream_set_servers(up ? up : "u", list, n, err, sizeof(err)))
		fprintf(stderr, "discovery: %s: %s (kept the old list)\n", path, err);
	else
		fprintf(stderr, "discovery: %s: %u servers applied\n", path, n);
}

int main(int argc, char **argv)
{
	struct sl_service svc = {.name = "discovery", .own_thread = 1, .interval_ms = 1000,
				 .tick = poll_file};
	if (sl_service_add(&svc))
		return 1;
	return sl_main(argc, argv, &sl_conf_proxy_ops);
}
