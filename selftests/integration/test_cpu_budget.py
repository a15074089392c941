"""workers: auto follows the CPUs the daemon may really use: its affinity mask (taskset)
and its cgroup's CPU quota; workers are pinned only to CPUs of the mask."""
import os
import stat
import uuid

import pytest

from daemon import wait_for
from env import SCALE, SLUICED

NCPU = os.cpu_count() or 1


def wrapper(tmp_path, lines):
    """A start script that execs sluiced (same pid) after lines."""
    p = os.path.join(str(tmp_path), "start-%s.sh" % uuid.uuid4().hex[:6])
    with open(p, "w") as f:
        f.write("#!/bin/sh\n%s\nexec %s \"$@\"\n" % ("\n".join(lines), SLUICED))
    os.chmod(p, os.stat(p).st_mode | stat.S_IXUSR)
    return p


def worker_threads(pid):
    """{worker thread name: Cpus_allowed_list}"""
    out = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        base = "/proc/%d/task/%s/" % (pid, tid)
        try:
            name = open(base + "comm").read().strip()
            if not name.startswith("sluice-w"):
                continue
            allowed = [ln.split()[1] for ln in open(base + "status")
                       if ln.startswith("Cpus_allowed_list:")][0]
        except (OSError, IndexError):
            continue
        out[name] = allowed
    return out


def started_workers(sl):
    line = sl.wait_log(lambda ln: 'msg="sluiced started"' in ln)
    assert line, sl.stderr()
    return int(line.split("workers=")[1].split()[0])


def start_wrapped(sluice, tmp_path, lines, workers="auto"):
    sl = sluice.new()
    sl.binary = wrapper(tmp_path, lines)
    sl.start(sluice.config([{"respond": {"status": 200, "body": "ok\n"}}], sl=sl,
                           workers=workers))
    return sl


def test_auto_under_taskset_one_cpu(sluice, tmp_path):
    cpu = NCPU - 1  # the last CPU: a worker pinned to CPU 0 regardless would show
    sl = start_wrapped(sluice, tmp_path, ["exec taskset -c %d %s \"$@\"" % (cpu, SLUICED)])
    assert started_workers(sl) == 1, sl.stderr()
    threads = wait_for(lambda: worker_threads(sl.pid), 5 * SCALE)
    assert threads == {"sluice-w0": str(cpu)}, threads
    assert sl.client().request("GET", "/").status == 200


def test_explicit_workers_pinned_inside_the_mask(sluice, tmp_path):
    sl = start_wrapped(sluice, tmp_path, ["exec taskset -c 0 %s \"$@\"" % SLUICED], workers=3)
    assert started_workers(sl) == 3
    threads = wait_for(lambda: len(worker_threads(sl.pid)) == 3 and worker_threads(sl.pid),
                       5 * SCALE)
    assert threads == {"sluice-w0": "0", "sluice-w1": "0", "sluice-w2": "0"}, threads


def test_auto_without_limits_is_every_cpu(sluice):
    sl = sluice.start([{"respond": {"status": 200}}], workers="auto")
    assert started_workers(sl) == len(os.sched_getaffinity(0))


def make_quota_cgroup(quota_us, period_us=100000):
    """A cgroup with a CPU quota: v1's cpu controller where it is mounted, else v2.
    Returns (directory, file to write a pid into)."""
    name = "sluice-test-%d-%s" % (os.getpid(), uuid.uuid4().hex[:6])
    for v1 in ("/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"):
        if os.path.exists(os.path.join(v1, "cpu.cfs_period_us")):
            d = os.path.join(v1, name)
            os.mkdir(d)
            with open(os.path.join(d, "cpu.cfs_period_us"), "w") as f:
                f.write(str(period_us))
            with open(os.path.join(d, "cpu.cfs_quota_us"), "w") as f:
                f.write(str(quota_us))
            return d
    root = "/sys/fs/cgroup"
    ctl = os.path.join(root, "cgroup.controllers")
    if os.path.exists(ctl) and "cpu" in open(ctl).read().split():
        with open(os.path.join(root, "cgroup.subtree_control"), "w") as f:
            f.write("+cpu")
        d = os.path.join(root, name)
        os.mkdir(d)
        with open(os.path.join(d, "cpu.max"), "w") as f:
            f.write("%d %d" % (quota_us, period_us))
        return d
    raise AssertionError("no cgroup CPU controller to test the quota with (v1 cpu or v2 "
                         "cpu); this suite runs as root on a host that has one")


def test_auto_capped_by_cgroup_quota(sluice, tmp_path):
    if NCPU < 2:
        pytest.fail("needs 2 CPUs to tell a quota of one CPU from the mask")
    cg = make_quota_cgroup(60000)  # 0.6 CPU: rounded up, 1 worker
    try:
        sl = start_wrapped(sluice, tmp_path, ["echo $$ > %s/cgroup.procs" % cg])
        assert started_workers(sl) == 1, sl.stderr()
        line = sl.wait_log(lambda ln: 'msg="workers"' in ln)
        assert "cpu_quota=0.600" in line and cg in line, line
        assert sl.client().request("GET", "/").status == 200
        assert sl.stop() == []
    finally:
        wait_for(lambda: not open(os.path.join(cg, "cgroup.procs")).read().strip(), 5 * SCALE)
        os.rmdir(cg)
