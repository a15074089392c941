/* The CPU budget: affinity mask and cgroup CPU quota (see cpus.h). */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/cpus.h"

static FILE *open_under(const char *root, const char *path)
{
	char p[4096];
	snprintf(p, sizeof(p), "%s%s", root, path);
	return fopen(p, "re");
}

/* "a,b,c" contains tok as one of its items */
static int has_item(const char *list, const char *tok)
{
	size_t n = strlen(tok);
	for (const char *p = list; p && *p;) {
		const char *e = strchr(p, ',');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		if (len == n && !strncmp(p, tok, n))
			return 1;
		p = e ? e + 1 : NULL;
	}
	return 0;
}

/* This process's cgroup path: v2 ("0::PATH") or v1's cpu controller. 0 or -1. */
static int own_cgroup(const char *root, int v2, char *out, size_t len)
{
	FILE *f = open_under(root, "/proc/self/cgroup");
	if (!f)
		return -1;
	char line[4096];
	int found = -1;
	while (found && fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = 0;
		char *c1 = strchr(line, ':');
		char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
		if (!c2)
			continue;
		*c1 = *c2 = 0;
		int is_v2 = !strcmp(line, "0") && !c1[1];
		if (v2 ? is_v2 : (!is_v2 && has_item(c1 + 1, "cpu"))) {
			snprintf(out, len, "%s", c2 + 1);
			found = 0;
		}
	}
	fclose(f);
	return found;
}

/* Mount point and mount root of the v2 hierarchy, or of the v1 one with the cpu
 * controller, from mountinfo. 0 or -1. */
static int cgroup_mount(const char *root, int v2, char *mnt, size_t mlen, char *mroot, size_t rlen)
{
	FILE *f = open_under(root, "/proc/self/mountinfo");
	if (!f)
		return -1;
	char line[4096];
	int found = -1;
	while (found && fgets(line, sizeof(line), f)) {
		char r[1024], m[1024], fstype[64], super[1024];
		const char *dash = strstr(line, " - ");
		if (!dash || sscanf(line, "%*s %*s %*s %1023s %1023s", r, m) != 2 ||
		    sscanf(dash + 3, "%63s %*s %1023s", fstype, super) != 2)
			continue;
		if (v2 ? strcmp(fstype, "cgroup2")
		       : (strcmp(fstype, "cgroup") || !has_item(super, "cpu")))
			continue;
		snprintf(mnt, mlen, "%s", m);
		snprintf(mroot, rlen, "%s", r);
		found = 0;
	}
	fclose(f);
	return found;
}

/* quota in thousandths of a CPU from one cgroup directory; 0 = no limit there */
static unsigned int dir_quota(const char *root, const char *dir, int v2)
{
	char p[4096];
	long long quota = -1, period = 0;
	if (v2) {
		if (snprintf(p, sizeof(p), "%s/cpu.max", dir) >= (int)sizeof(p))
			return 0;
		FILE *f = open_under(root, p);
		if (!f)
			return 0;
		char q[32];
		if (fscanf(f, "%31s %lld", q, &period) == 2 && strcmp(q, "max"))
			quota = strtoll(q, NULL, 10);
		fclose(f);
	} else {
		if (snprintf(p, sizeof(p), "%s/cpu.cfs_quota_us", dir) >= (int)sizeof(p))
			return 0;
		FILE *f = open_under(root, p);
		if (!f)
			return 0;
		if (fscanf(f, "%lld", &quota) != 1)
			quota = -1;
		fclose(f);
		if (snprintf(p, sizeof(p), "%s/cpu.cfs_period_us", dir) >= (int)sizeof(p))
			return 0;
		f = open_under(root, p);
		if (!f)
			return 0;
		if (fscanf(f, "%lld", &period) != 1)
			period = 0;
		fclose(f);
	}
	if (quota <= 0 || period <= 0)
		return 0;
	unsigned long long m = (unsigned long long)quota * 1000ull / (unsigned long long)period;
	return m ? (m > 1000000000ull ? 1000000000u : (unsigned int)m) : 1;
}

/* The tightest quota from the process's cgroup up to the hierarchy's root. */
static void hierarchy_quota(struct sl_cpu_budget *b, const char *root, int v2)
{
	char cg[2048], mnt[1024], mroot[1024], dir[4096];
	if (own_cgroup(root, v2, cg, sizeof(cg)) ||
	    cgroup_mount(root, v2, mnt, sizeof(mnt), mroot, sizeof(mroot)))
		return;
	/* inside a cgroup namespace or a bind mount the mount shows the hierarchy from
	 * mroot down: the process's path is relative to it */
	const char *rel = cg;
	size_t rl = strlen(mroot);
	if (strcmp(mroot, "/") && !strncmp(cg, mroot, rl) && (cg[rl] == '/' || !cg[rl]))
		rel = cg + rl;
	snprintf(dir, sizeof(dir), "%s%s", mnt, !strcmp(rel, "/") ? "" : rel);
	size_t base = strlen(mnt);
	for (;;) {
		unsigned int q = dir_quota(root, dir, v2);
		if (q && (!b->quota_milli || q < b->quota_milli)) {
			b->quota_milli = q;
			if (snprintf(b->quota_from, sizeof(b->quota_from), "%s/%s", dir,
				     v2 ? "cpu.max" : "cpu.cfs_quota_us") >=
			    (int)sizeof(b->quota_from))
				memcpy(b->quota_from + sizeof(b->quota_from) - 4, "...", 4);
		}
		char *slash = strrchr(dir, '/');
		if (!slash || (size_t)(slash - dir) < base)
			break;
		*slash = 0;
	}
}

void sl_cpu_budget_read(struct sl_cpu_budget *b, const char *root, const cpu_set_t *mask)
{
	memset(b, 0, sizeof(*b));
	cpu_set_t set;
	if (!mask) {
		CPU_ZERO(&set);
		if (sched_getaffinity(0, sizeof(set), &set) == 0)
			mask = &set;
	}
	for (int c = 0; mask && c < CPU_SETSIZE && b->n_cpus < SL_MAX_WORKERS; c++)
		if (CPU_ISSET(c, mask))
			b->cpus[b->n_cpus++] = c;
	if (!b->n_cpus) /* no mask readable: CPU 0 at least exists */
		b->cpus[b->n_cpus++] = 0;
	hierarchy_quota(b, root, 1);
	hierarchy_quota(b, root, 0);
}

unsigned int sl_cpu_auto_workers(const struct sl_cpu_budget *b)
{
	unsigned int n = b->n_cpus;
	if (b->quota_milli) {
		unsigned int q = (b->quota_milli + 999) / 1000;
		if (q < n)
			n = q;
	}
	return n ? n : 1;
}

int sl_cpu_for_worker(const struct sl_cpu_budget *b, unsigned int i)
{
	return b->cpus[i % b->n_cpus];
}
