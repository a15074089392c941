/* The CPU budget a daemon really has: the CPUs of its affinity mask (taskset, cpusets,
 * a container runtime's cpuset) and its cgroup's CPU quota (v2 cpu.max, v1
 * cpu.cfs_quota_us / cpu.cfs_period_us, the tightest along the path to the root).
 * `workers: auto` = CPUs in the mask, capped by the quota rounded up. */
#ifndef SL_CPUS_H
#define SL_CPUS_H

#include <sched.h>

#include "sluice_common.h"

struct sl_cpu_budget {
	int cpus[SL_MAX_WORKERS]; /* CPUs of the affinity mask, ascending */
	unsigned int n_cpus;
	unsigned int quota_milli; /* cgroup quota in thousandths of a CPU; 0 = none */
	char quota_from[160];	  /* file the quota came from, "" when none */
};

/* Fill b. root prefixes every path read (/proc/self/..., the cgroup mounts): "" on a
 * real system, a directory of fake files in tests. mask NULL = sched_getaffinity(). */
void sl_cpu_budget_read(struct sl_cpu_budget *b, const char *root, const cpu_set_t *mask);

/* Workers for `workers: auto`: CPUs in the mask, capped by the quota (rounded up), >= 1. */
unsigned int sl_cpu_auto_workers(const struct sl_cpu_budget *b);

/* The CPU worker i is pinned to: the mask's CPUs in turn. */
int sl_cpu_for_worker(const struct sl_cpu_budget *b, unsigned int i);

#endif
