/* Unit tests for user/server/cpus.c: the affinity mask and the cgroup CPU quota (v2
 * cpu.max, v1 cfs quota/period; the tightest along the path; a cgroup namespace's
 * mount root), read from a tree of fake /proc and /sys files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <errno.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "server/cpus.h"

static char root[256];

static void put(const char *path, const char *text)
{
	char p[1024];
	snprintf(p, sizeof(p), "%s%s", root, path);
	/* mkdir -p the parent */
	for (char *s = p + strlen(root) + 1; (s = strchr(s, '/')); s++) {
		*s = 0;
		mkdir(p, 0755);
		*s = '/';
	}
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static int setup(void **state)
{
	snprintf(root, sizeof(root), "/tmp/sl-cpus-XXXXXX");
	assert_non_null(mkdtemp(root));
	return 0;
}

static int teardown(void **state)
{
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	assert_int_equal(system(cmd), 0);
	return 0;
}

static cpu_set_t mask_of(const int *cpus, int n)
{
	cpu_set_t m;
	CPU_ZERO(&m);
	for (int i = 0; i < n; i++)
		CPU_SET(cpus[i], &m);
	return m;
}

static const char v2_mounts[] = "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
static const char v1_mounts[] =
    "31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755\n"
    "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
    "33 31 0:30 / /sys/fs/cgroup/cpuset rw - cgroup cgroup rw,cpuset\n";

static void test_mask_only(void **state)
{
	int cpus[] = {2, 5, 7};
	cpu_set_t m = mask_of(cpus, 3);
	struct sl_cpu_budget b;
	sl_cpu_budget_read(&b, root, &m); /* no /proc files at all: no quota */
	assert_int_equal(b.n_cpus, 3);
	assert_int_equal(sl_cpu_auto_workers(&b), 3);
	assert_int_equal(b.quota_milli, 0);
	/* workers pinned only to CPUs of the mask, in turn */
	assert_int_equal(sl_cpu_for_worker(&b, 0), 2);
	assert_int_equal(sl_cpu_for_worker(&b, 1), 5);
	assert_int_equal(sl_cpu_for_worker(&b, 2), 7);
	assert_int_equal(sl_cpu_for_worker(&b, 3), 2);
}

static void test_v2_quota_rounds_up(void **state)
{
	int cpus[] = {0, 1, 2, 3, 4, 5, 6, 7};
	cpu_set_t m = mask_of(cpus, 8);
	put("/proc/self/cgroup", "0::/kubepods/pod1/ctr\n");
	put("/proc/self/mountinfo", v2_mounts);
	put("/sys/fs/cgroup/kubepods/pod1/ctr/cpu.max", "150000 100000\n");
	struct sl_cpu_budget b;
	sl_cpu_budget_read(&b, root, &m);
	assert_int_equal(b.quota_milli, 1500);
	assert_int_equal(sl_cpu_auto_workers(&b), 2);
	assert_non_null(strstr(b.quota_from, "kubepods/pod1/ctr/cpu.max"));
}

static void test_v2_parent_is_tighter(void **state)
{
	int cpus[] = {0, 1, 2, 3};
	cpu_set_t m = mask_of(cpus, 4);
	put("/proc/self/cgroup", "0::/a/b\n");
	put("/proc/self/mountinfo", v2_mounts);
	put("/sys/fs/cgroup/a/b/cpu.max", "max 100000\n");
	put("/sys/fs/cgroup/a/cpu.max", "50000 100000\n");
	struct sl_cpu_budget b;
	sl_cpu_budget_read(&b, root, &m);
	assert_int_equal(b.quota_milli, 500);
	assert_int_equal(sl_cpu_auto_workers(&b), 1);
}

static void test_v2_max_is_no_limit(void **state)
{
	int cpus[] = {0, 1};
	cpu_set_t m = mask_of(cpus, 2);
	put("/proc/self/cgroup", "0::/\n");
	put("/proc/self/mountinfo", v2_mounts);
	put("/sys/fs/cgroup/cpu.max", "max 100000\n");
	struct sl_cpu_budget b;
	sl_cpu_budget_read(&b, root, &m);
	assert_int_equal(b.quota_milli, 0);
	assert_int_equal(sl_cpu_auto_workers(&b), 2);
}

static void test_quota_above_mask_keeps_mask(void **state)
{
	int cpus[] = {3};
	cpu_set_t m = mask_of(cpus, 1);
	put("/proc/self/cgroup", "0::/x\n");
	put("/proc/self/mountinfo", v2_mounts);
	put("/sys/fs/cgroup/x/cpu.max", "400000 100000\n");
	struct sl_cpu_budget b;
	sl_cpu_budget_read(&b, root, &m);
	assert_int_equal(sl_cpu_auto_workers(&b), 1);
	assert_int_equal(sl_cpu_for_worker(&b, 0), 3);
}

static void test_v1_cfs_quota(void **state)
{
	int cpus[] = {0, 1, 2, 3};
	cpu_set_t m = mask_of(cpus, 4);
	put("/proc/self/cgroup", "4:memory:/m\n3:cpu,cpuacct:/docker/abc\n0::/\n");
	put("/proc/self/mountinfo", v1_mounts);
	put("/sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "250000\n");
	put("/sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us", "100000\n");
	put("/sys/fs/cgroup/cpu,cpuacct/docker/cpu.cfs_quota_us", "-1\n");
	put("/sys/fs/cgroup/cpu,cpuacct/docker/cpu.cfs_period_us", "100000\n");
	struct sl_cpu_budget b;
	sl_cpu_budget_read(&b, root, &m);
	assert_int_equal(b.quota_milli, 2500);
	assert_int_equal(sl_cpu_auto_workers(&b), 3);
}

static void test_cgroup_namespace_mount_root(void **state)
{
	/* the runtime bind-mounted the container's own cgroup at /sys/fs/cgroup */
	int cpus[] = {0, 1, 2, 3};
	cpu_set_t m = mask_of(cpus, 4);
	put("/proc/self/cgroup", "0::/kubepods/pod9\n");
	put("/proc/self/mountinfo", "30 23 0:26 /kubepods/pod9 /sys/fs/cgroup ro - cgroup2 "
				    "cgroup2 rw\n");
	put("/sys/fs/cgroup/cpu.max", "100000 100000\n");
	struct sl_cpu_budget b;
	sl_cpu_budget_read(&b, root, &m);
	assert_int_equal(b.quota_milli, 1000);
	assert_int_equal(sl_cpu_auto_workers(&b), 1);
}

static void test_garbage_files_mean_no_quota(void **state)
{
	int cpus[] = {0, 1};
	cpu_set_t m = mask_of(cpus, 2);
	put("/proc/self/cgroup", "garbage\n::\n0::\n");
	put("/proc/self/mountinfo", "nonsense line\n - \n");
	put("/sys/fs/cgroup/cpu.max", "-5 0\n");
	struct sl_cpu_budget b;
	sl_cpu_budget_read(&b, root, &m);
	assert_int_equal(b.quota_milli, 0);
	assert_int_equal(sl_cpu_auto_workers(&b), 2);
}

static void test_tiny_quota_is_one_worker(void **state)
{
	int cpus[] = {0, 1};
	cpu_set_t m = mask_of(cpus, 2);
	put("/proc/self/cgroup", "0::/t\n");
	put("/proc/self/mountinfo", v2_mounts);
	put("/sys/fs/cgroup/t/cpu.max", "1000 1000000\n");
	struct sl_cpu_budget b;
	sl_cpu_budget_read(&b, root, &m);
	assert_int_equal(b.quota_milli, 1);
	assert_int_equal(sl_cpu_auto_workers(&b), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_mask_only, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_v2_quota_rounds_up, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_v2_parent_is_tighter, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_v2_max_is_no_limit, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_quota_above_mask_keeps_mask, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_v1_cfs_quota, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_cgroup_namespace_mount_root, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_garbage_files_mean_no_quota, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_tiny_quota_is_one_worker, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
