"""Daemon lifecycle under a hostile eye: a binary upgrade seen by a service manager that,
like systemd with NotifyAccess=main, only listens to the main pid; an upgrade to fewer
workers under new-connection load (the sockets the new daemon does not take must lose
no queued connection); a user whose primary or supplementary groups include root's group;
the admin socket and the log files, made as root before the drop, through upgrades."""
import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

from daemon import wait_for
from env import SCALE, SLUICED
from test_binary_upgrade import Load, alive, start, stop_pid, successor_of, took_over


@pytest.fixture(autouse=True)
def no_daemon_left(sluice):
    import re
    yield
    for inst in sluice.instances:
        for m in re.findall(r'msg="upgrade: successor started" successor=(\d+)',
                            inst.stderr()):
            if alive(int(m)):
                os.kill(int(m), signal.SIGKILL)


class NotifyMain:
    """A notification socket read the way systemd reads it for Type=notify with
    NotifyAccess=main: a message counts only when its sender (SCM_CREDENTIALS) is the
    main pid; MAINPID=N from the main pid makes N the main pid."""

    def __init__(self, path):
        self.rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.rx.bind(path)
        os.chmod(path, 0o666)
        self.rx.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.rx.settimeout(0.1)
        self.main = None
        self.accepted = []  # (pid, {k: v})
        self.dropped = []

    def pump(self):
        while True:
            try:
                data, anc, _, _ = self.rx.recvmsg(4096, socket.CMSG_SPACE(12))
            except socket.timeout:
                return
            pid = None
            for lvl, typ, cd in anc:
                if lvl == socket.SOL_SOCKET and typ == socket.SCM_CREDENTIALS:
                    pid = int.from_bytes(cd[0:4], "little")
            fields = dict(ln.split("=", 1) for ln in data.decode().splitlines() if "=" in ln)
            if pid != self.main:
                self.dropped.append((pid, fields))
                continue
            self.accepted.append((pid, fields))
            if "MAINPID" in fields:
                self.main = int(fields["MAINPID"])

    def close(self):
        self.rx.close()


def test_upgrade_moves_the_main_pid_for_a_service_manager(sluice, monkeypatch):
    """systemd (Type=notify, NotifyAccess=main, as deploy/systemd/sluiced.service) takes
    MAINPID= only from the main pid. If the new daemon has to say it itself, systemd drops
    it, and when the old daemon exits the service is over and its cgroup, the new daemon
    included, is killed. The old daemon must name its successor before it exits."""
    d = tempfile.mkdtemp(prefix="sl-notify-", dir="/tmp")
    try:
        nm = NotifyMain(os.path.join(d, "notify.sock"))
        monkeypatch.setenv("NOTIFY_SOCKET", os.path.join(d, "notify.sock"))
        sl = start(sluice)
        nm.main = sl.pid
        assert wait_for(lambda: (nm.pump(), any(f.get("READY") == "1"
                                                for _, f in nm.accepted))[1], 10 * SCALE)
        sl.send_signal(signal.SIGUSR2)
        took_over(sl)
        new = successor_of(sl)
        assert sl.wait_exit(15 * SCALE) == 0, sl.stderr()[-3000:]
        nm.pump()
        assert nm.main == new, ("the service manager still follows pid %s (old %d, new %d); "
                                "dropped: %s" % (nm.main, sl.pid, new, nm.dropped))
        # and the new main pid's READY=1 reached it after the switch
        after = [f for p, f in nm.accepted if p == new]
        assert any(f.get("READY") == "1" for f in after), (nm.accepted, nm.dropped)
        # a reload of the new daemon is seen: RELOADING=1 then READY=1 from the main pid
        os.kill(new, signal.SIGHUP)
        assert wait_for(lambda: (nm.pump(), any(f.get("RELOADING") == "1" for p, f in
                                                nm.accepted if p == new))[1], 10 * SCALE), \
            nm.dropped
        nm.close()
        stop_pid(new)
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("steering", ["required", "off"])
def test_upgrade_to_fewer_workers_loses_no_connection(sluice, steering):
    """2 workers -> 1: the old daemon's second socket of each group is not taken by the new
    one. Connections the kernel queued on it must still be answered, not reset, under a
    steady stream of new connections."""
    sl = sluice.new()
    cfg = sluice.config([{"respond": {"status": 200, "body": "v1\n"}}], sl=sl, workers=2,
                        bpf={"steering": steering})
    sl.start(cfg)
    for rnd in range(3):
        with Load(sl.port, b"v1\n", keepalive=1, fresh=6) as load:
            time.sleep(0.3)
            sl.write_config(dict(cfg, workers=1 if rnd % 2 == 0 else 2))
            pid = sl.pid if rnd == 0 else successor_of(sl, rnd)
            os.kill(pid, signal.SIGUSR2)
            took_over(sl, rnd + 1)
            if rnd == 0:
                assert sl.wait_exit(15 * SCALE) == 0, sl.stderr()[-3000:]
            else:
                assert wait_for(lambda: not alive(pid), 15 * SCALE)
            time.sleep(0.3)
        assert load.failures == [] and load.refused == 0, \
            (rnd, len(load.failures), load.failures[:5])
        assert load.ok > 50
    stop_pid(successor_of(sl, 3))


@pytest.fixture
def user_in_root_group():
    """A throwaway system user whose supplementary groups include gid 0."""
    name = "sltestrootgrp"
    subprocess.run(["userdel", name], capture_output=True)
    r = subprocess.run(["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin",
                        "-G", grp.getgrgid(0).gr_name, name], capture_output=True, text=True)
    if r.returncode:
        pytest.skip("cannot add a user: %s" % r.stderr)
    yield name
    subprocess.run(["userdel", name], capture_output=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
def test_user_with_root_as_supplementary_group_is_refused(sluice, user_in_root_group):
    """group: root is refused as root's group; the same gid arriving as a supplementary
    group of the named user must be refused as well (sluiced -t and at start), not kept
    silently by initgroups."""
    assert 0 in os.getgrouplist(user_in_root_group, pwd.getpwnam(user_in_root_group).pw_gid)
    sl = sluice.new()
    cfg = sluice.config([{"respond": {"status": 200, "body": "x\n"}}], sl=sl, workers=1,
                        user=user_in_root_group)
    sl.write_config(cfg)
    t = subprocess.run([SLUICED, "-t", "-c", sl.config_path], capture_output=True, text=True,
                       timeout=20 * SCALE)
    assert t.returncode == 1, (t.stdout, t.stderr)
    assert "root" in t.stderr and "supplementary" in t.stderr, t.stderr
    assert sl.config_path + ":" in t.stderr, t.stderr  # FILE:LINE:COL


@pytest.fixture
def user_with_root_primary_group():
    name = "sltestrootpri"
    subprocess.run(["userdel", name], capture_output=True)
    r = subprocess.run(["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin",
                        "-g", "0", name], capture_output=True, text=True)
    if r.returncode:
        pytest.skip("cannot add a user: %s" % r.stderr)
    yield name
    subprocess.run(["userdel", name], capture_output=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
def test_user_with_root_as_primary_group_needs_a_group(sluice, user_with_root_primary_group):
    """A user whose passwd entry has gid 0 and no group: would run with root's group."""
    sl = sluice.new()
    cfg = sluice.config([{"respond": {"status": 200, "body": "x\n"}}], sl=sl, workers=1,
                        user=user_with_root_primary_group)
    sl.write_config(cfg)
    t = subprocess.run([SLUICED, "-t", "-c", sl.config_path], capture_output=True, text=True,
                       timeout=20 * SCALE)
    assert t.returncode == 1 and "root's group (gid 0)" in t.stderr, (t.stdout, t.stderr)
    # with an unprivileged group: accepted (the user is not in root's group otherwise)
    sl.write_config(dict(cfg, group="nogroup"))
    t = subprocess.run([SLUICED, "-t", "-c", sl.config_path], capture_output=True, text=True,
                       timeout=20 * SCALE)
    assert t.returncode == 0, (t.stdout, t.stderr)


@pytest.fixture
def pubdir():
    """A root-owned 0755 directory, as /run/sluice is (RuntimeDirectory= of a unit without
    User=): the dropped user reads in it but cannot create a file there."""
    d = tempfile.mkdtemp(prefix="sl-life-", dir="/tmp")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
def test_admin_socket_survives_an_upgrade_after_the_drop(sluice, pubdir):
    """The first daemon creates its admin socket as root in a root-owned directory, then
    drops to an unprivileged user; its successor starts as that user and cannot bind a
    socket there. It must serve the same socket (passed over, as the listeners are):
    `sluicectl upgrade` (and ExecReload=sluicectl reload) go on working through it."""
    from daemon import Sluice
    from test_binary_upgrade import ctl_path
    sock = os.path.join(pubdir, "admin.sock")
    s = Sluice(pubdir)
    sluice.instances.append(s)
    from backends import free_port
    from daemon import base_config
    cfg = base_config(free_port(), [{"respond": {"status": 200, "body": "v1\n"}}], workers=2,
                      user="nobody", admin={"socket": sock},
                      access_log=os.path.join(pubdir, "access.log"))
    s.start(cfg)
    assert wait_for(lambda: os.path.exists(sock), 5 * SCALE), s.stderr()
    ctl = ctl_path(s)
    for rnd in range(2):
        r = subprocess.run([ctl, "--socket", sock, "upgrade"], capture_output=True, text=True,
                           timeout=60 * SCALE)
        assert r.returncode == 0, (r.stdout, r.stderr, s.stderr()[-3000:])
        assert "upgraded: pid" in r.stdout, r.stdout
        new = successor_of(s, rnd + 1)
        assert 'cannot bind admin socket' not in s.stderr(), s.stderr()[-3000:]
        from test_admin import admin
        r = admin(sock, "GET", "/status")
        assert r.status == 200 and r.json()["pid"] == new, (r.status, r.body[:300])
        rl = subprocess.run([ctl, "--socket", sock, "reload"], capture_output=True, text=True,
                            timeout=20 * SCALE)
        assert rl.returncode == 0, (rl.stdout, rl.stderr)
    assert s.wait_exit(15 * SCALE) == 0
    # the access log is root's file (nobody may open it): the successors write through
    # the predecessor's open file
    alog = os.path.join(pubdir, "access.log")
    before = open(alog).read().count("\n")
    from client import HTTPClient
    for _ in range(5):
        with HTTPClient(s.port) as c:
            assert c.request("GET", "/", headers=[("Connection", "close")]).body == b"v1\n"
    assert wait_for(lambda: open(alog).read().count("\n") >= before + 5, 10 * SCALE), \
        open(alog).read()[-500:]
    stop_pid(new)


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
def test_error_log_file_survives_an_upgrade_after_the_drop(sluice, pubdir):
    """log.error_log is a file root created before the drop (0644 in a root-owned
    directory): the successor, started as the user, cannot open it and must not fail the
    upgrade for that: it logs through the predecessor's open file."""
    from backends import free_port
    from daemon import Sluice, base_config
    elog = os.path.join(pubdir, "error.log")
    s = Sluice(pubdir)
    sluice.instances.append(s)
    cfg = base_config(free_port(), [{"respond": {"status": 200, "body": "v1\n"}}], workers=1,
                      user="nobody", log={"error_log": elog})
    s.start(cfg)
    assert os.stat(elog).st_uid == 0
    s.send_signal(signal.SIGUSR2)
    assert s.wait_exit(20 * SCALE) == 0, open(elog).read()[-3000:]
    text = open(elog).read()
    assert 'msg="upgrade: took over"' in text, text[-3000:]
    import re
    new = int(re.findall(r'msg="upgrade: successor started" successor=(\d+)', text)[-1])
    from client import HTTPClient
    with HTTPClient(s.port) as c:
        assert c.request("GET", "/", headers=[("Connection", "close")]).body == b"v1\n"
    os.kill(new, signal.SIGUSR1)  # reopening fails (root's file), the fd stays in use
    assert wait_for(lambda: "cannot reopen the error log" in open(elog).read(), 10 * SCALE)
    stop_pid(new)
    assert 'msg="sluiced stopped"' in open(elog).read()[len(text):]


def test_upgrade_binary_in_a_directory_others_may_write_is_refused(sluice, tmp_path):
    """The binary itself is root's and 0755, but it sits in a directory anyone may write
    (no sticky bit): anyone could rename another file over it between the check and the
    exec, and the daemon would run that with its privileges. Refused, nothing run; a
    symlink to it is judged by where it points."""
    from test_admin import sock_path
    from test_binary_upgrade import post
    import json
    path = sock_path(tmp_path)
    sl = start(sluice, admin={"socket": path})
    assert wait_for(lambda: os.path.exists(path), 5 * SCALE)
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    os.chmod(open_dir, 0o777)
    binary = open_dir / "sluiced"
    shutil.copy(sl.binary, binary)
    os.chmod(binary, 0o755)
    r = post(path, "/upgrade", json.dumps({"binary": str(binary)}))
    assert r.status in (400, 403), (r.status, r.body)
    assert str(open_dir) in r.json()["error"], r.body
    link = tmp_path / "link-sluiced"
    os.symlink(binary, link)
    r = post(path, "/upgrade", json.dumps({"binary": str(link)}))
    assert r.status in (400, 403), (r.status, r.body)
    assert 'successor started' not in sl.stderr()
    # the same file from a directory only root writes is run
    safe = tmp_path / "safe"
    safe.mkdir()
    os.chmod(safe, 0o755)
    shutil.copy(sl.binary, safe / "sluiced")
    r = post(path, "/upgrade", json.dumps({"binary": str(safe / "sluiced")}))
    assert r.status == 202, (r.status, r.body)
    took_over(sl)
    assert sl.wait_exit(15 * SCALE) == 0, sl.stderr()[-3000:]
    stop_pid(successor_of(sl))
