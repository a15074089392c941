/* sluicectl: operate a node's sluice. Subcommands come from one table; each has --help.
 * Exit codes: 0 ok, 1 the operation failed, 2 usage. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"

struct cmd {
	const char *name;
	const char *args;
	const char *help;
	int (*run)(int argc, char **argv);
};

/* pids of running sluiced processes (by /proc/PID/comm) */
static int find_daemons(int *pids, int max)
{
	DIR *d = opendir("/proc");
	int n = 0;
	if (!d)
		return 0;
	struct dirent *e;
	while ((e = readdir(d)) && n < max) {
		if (!isdigit((unsigned char)e->d_name[0]))
			continue;
		char p[300], comm[32] = "";
		snprintf(p, sizeof(p), "/proc/%s/comm", e->d_name);
		FILE *f = fopen(p, "r");
		if (!f)
			continue;
		if (fgets(comm, sizeof(comm), f) && !strcmp(comm, "sluiced\n"))
			pids[n++] = atoi(e->d_name);
		fclose(f);
	}
	closedir(d);
	return n;
}

static int cmd_reload(int argc, char **argv)
{
	int pids[64], n;
	if (argc == 3 && !strcmp(argv[1], "--pid")) {
		pids[0] = atoi(argv[2]);
		n = pids[0] > 0 ? 1 : 0;
		if (!n)
			return 2;
	} else if (argc == 1) {
		n = find_daemons(pids, 64);
	} else {
		return 2;
	}
	if (!n) {
		fprintf(stderr, "sluicectl: no running sluiced found\n");
		return 1;
	}
	for (int i = 0; i < n; i++) {
		if (kill(pids[i], SIGHUP)) {
			fprintf(stderr, "sluicectl: pid %d: %s\n", pids[i], strerror(errno));
			return 1;
		}
		printf("reload requested: pid %d (the daemon's error log says whether it applied)\n",
		       pids[i]);
	}
	return 0;
}

static int cmd_check(int argc, char **argv)
{
	if (argc != 2)
		return 2;
	char err[SL_CONF_ERR_MAX];
	struct sl_conf *c = sl_conf_load(argv[1], err, sizeof(err));
	if (!c) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	printf("%s: configuration ok (%u listeners, %u upstreams)\n", argv[1], c->n_listeners,
	       c->n_upstreams);
	sl_conf_put(c);
	return 0;
}

static int cmd_version(int argc, char **argv)
{
	if (argc != 1)
		return 2;
	printf("sluicectl %s\n", SL_VERSION);
	return 0;
}

static const struct cmd cmds[] = {
	{ "reload", "[--pid PID]", "ask running sluiced (or PID) to reload its config (SIGHUP)",
	  cmd_reload },
	{ "check", "FILE", "validate a configuration file", cmd_check },
	{ "version", "", "print the version", cmd_version },
};

static void usage(FILE *f)
{
	fprintf(f, "usage: sluicectl COMMAND [ARGS]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		fprintf(f, "  %-8s %-14s %s\n", cmds[i].name, cmds[i].args, cmds[i].help);
}

int main(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		if (strcmp(argv[1], cmds[i].name))
			continue;
		if (argc > 2 && (!strcmp(argv[2], "--help") || !strcmp(argv[2], "-h"))) {
			printf("usage: sluicectl %s %s\n  %s\n", cmds[i].name, cmds[i].args,
			       cmds[i].help);
			return 0;
		}
		int rc = cmds[i].run(argc - 1, argv + 1);
		if (rc == 2)
			fprintf(stderr, "usage: sluicectl %s %s\n", cmds[i].name, cmds[i].args);
		return rc;
	}
	fprintf(stderr, "sluicectl: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}
