"""Zero-downtime binary upgrade (SIGUSR2, POST /upgrade, sluicectl upgrade): the running
daemon starts the new binary, hands it its listening sockets over a Unix socket
(SCM_RIGHTS, both peers' credentials checked), the new one joins the reuseport groups,
attaches its steering program, reports ready, and the old one drains and exits 0. A new
binary that fails (bad config, killed midway) leaves the old one serving and steering;
a second upgrade while one runs is refused; a process that is not the successor gets no
socket, and a successor gets none from a process that is not its parent."""
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest

from backends import free_port
from client import HTTPClient
from daemon import wait_for
from env import SCALE


@pytest.fixture(autouse=True)
def no_daemon_left(sluice):
    """Successors are not the test's children: stop any a failing test left running."""
    yield
    for inst in sluice.instances:
        for m in re.findall(r'msg="upgrade: successor started" successor=(\d+)',
                            inst.stderr()):
            if alive(int(m)):
                os.kill(int(m), signal.SIGKILL)


def post(path, target, body=None):
    from test_admin import unix_client
    c = unix_client(path)
    try:
        return c.request("POST", target, body=body.encode() if body else None,
                         headers=[("Content-Type", "application/json")] if body else None,
                         host="localhost")
    finally:
        c.close()


def slow_binary(tmp_path, sl, delay):
    """A new binary that takes `delay` seconds to start (then it is sluiced: exec keeps
    the pid the old daemon started)."""
    w = tmp_path / ("slow-sluiced-%s" % delay)
    w.write_text("#!/bin/sh\nsleep %s\nexec %s \"$@\"\n" % (delay, sl.binary))
    os.chmod(w, 0o755)
    return str(w)


def ctl_path(sl):
    return os.path.join(os.path.dirname(sl.binary), "sluicectl")


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def successor_of(sl, n=1):
    """pid of the n-th successor sl's daemons started (from the shared stderr)."""
    pids = []

    def find():
        pids[:] = [int(m) for m in re.findall(r'msg="upgrade: successor started" successor=(\d+)',
                                              sl.stderr())]
        return len(pids) >= n
    assert wait_for(find, 10 * SCALE), sl.stderr()[-3000:]
    return pids[n - 1]


def took_over(sl, n=1):
    assert wait_for(lambda: sl.stderr().count('msg="upgrade: took over"') >= n, 15 * SCALE), \
        sl.stderr()[-4000:]


def stop_pid(pid, timeout=15):
    if not alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    assert wait_for(lambda: not alive(pid), timeout * SCALE), "pid %d did not stop" % pid


class Load:
    """Keep-alive clients and new-connection clients against port, every outcome counted:
    a request that fails in any way (refused, reset, non-200, wrong body) is a failure."""

    def __init__(self, port, body, keepalive=3, fresh=2):
        self.port, self.body = port, body
        self.stop = threading.Event()
        self.ok = 0
        self.failures = []
        self.refused = 0
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.ka) for _ in range(keepalive)] + \
            [threading.Thread(target=self.fresh) for _ in range(fresh)]

    def count(self, r, err=None):
        with self.lock:
            if err is not None:
                self.failures.append(err)
            elif r.status == 200 and r.body == self.body:
                self.ok += 1
            else:
                self.failures.append((r.status, r.body[:80]))

    def ka(self):
        c = None
        while not self.stop.is_set():
            try:
                if c is None:
                    c = HTTPClient(self.port, timeout=10 * SCALE)
                r = c.request("GET", "/")
                self.count(r)
                if "close" in r.connection_tokens():
                    c.close()
                    c = None
            except ConnectionRefusedError as e:
                with self.lock:
                    self.refused += 1
                self.count(None, repr(e))
                c = None
            except Exception as e:  # noqa: BLE001 - every failure is counted
                self.count(None, repr(e))
                c = None
        if c:
            c.close()

    def fresh(self):
        while not self.stop.is_set():
            try:
                with HTTPClient(self.port, timeout=10 * SCALE) as c:
                    self.count(c.request("GET", "/", headers=[("Connection", "close")]))
            except ConnectionRefusedError as e:
                with self.lock:
                    self.refused += 1
                self.count(None, repr(e))
            except Exception as e:  # noqa: BLE001
                self.count(None, repr(e))

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(20 * SCALE)


def start(sluice, workers=2, body="v1\n", **kw):
    sl = sluice.new()
    sl.start(sluice.config([{"respond": {"status": 200, "body": body}}], sl=sl, workers=workers,
                           **kw))
    assert sl.wait_log(lambda ln: 'msg="steering on"' in ln), sl.stderr()
    return sl


def placed(sl):
    """Connections the pinned steering program placed on a worker (not the kernel's
    hash)."""
    out = subprocess.run([ctl_path(sl), "--pin-path", sl.pin_path, "stats", "--json"],
                         capture_output=True, text=True, timeout=10 * SCALE)
    assert out.returncode == 0, out.stderr
    steer = json.loads(out.stdout)["steer"]
    return sum(v for k, v in steer.items() if k != "kernel_hash")


def status(sl, want=None):
    """sluicectl status; with want, the first output (within a few seconds) that holds
    every string of want: a worker's heartbeat may be late for a moment on a loaded
    machine (more so under ASan), which status reports as not ready."""
    out = [""]

    def get():
        out[0] = subprocess.run([ctl_path(sl), "--pin-path", sl.pin_path, "status"],
                                capture_output=True, text=True, timeout=10 * SCALE).stdout
        return all(w in out[0] for w in want or ())
    if want:
        wait_for(get, 5 * SCALE)
    else:
        get()
    return out[0]


# ---- hostile first ------------------------------------------------------------------

def test_bad_config_leaves_old_serving(sluice):
    sl = start(sluice)
    good = sl.config
    with open(sl.config_path, "w") as f:
        f.write("workers: 2\nlisteners: [\n")  # does not parse
    with Load(sl.port, b"v1\n") as load:
        time.sleep(0.3)
        sl.send_signal(signal.SIGUSR2)
        line = sl.wait_log(lambda ln: "upgrade failed, this daemon keeps serving" in ln,
                           10 * SCALE)
        assert line, sl.stderr()[-3000:]
        assert sl.config_path in line, line  # the successor's FILE:LINE:COL reason
        time.sleep(0.5)
    assert load.failures == [], load.failures[:5]
    assert load.ok > 20
    assert sl.running()
    st = status(sl, ["running: pid %d" % sl.pid, "on (2 of 2 workers ready"])
    assert "running: pid %d" % sl.pid in st and "on (2 of 2 workers ready" in st, st
    # and it can upgrade once the file is fixed
    sl.write_config(good)
    sl.send_signal(signal.SIGUSR2)
    took_over(sl)
    assert sl.wait_exit(15 * SCALE) == 0, sl.stderr()[-3000:]
    stop_pid(successor_of(sl, 2))


def test_missing_binary_is_refused_and_old_serves(sluice, tmp_path):
    from test_admin import admin, sock_path
    path = sock_path(tmp_path)
    sl = start(sluice, admin={"socket": path})
    assert wait_for(lambda: os.path.exists(path), 5 * SCALE)
    r = post(path, "/upgrade", json.dumps({"binary": "/nonexistent/sluiced"}))
    assert r.status == 400, (r, r.body)
    assert "/nonexistent/sluiced" in r.json()["error"], r.body
    # a binary others could have written is not run
    evil = tmp_path / "evil"
    evil.write_text("#!/bin/sh\ntouch %s/ran\n" % tmp_path)
    os.chmod(evil, 0o777)
    r = post(path, "/upgrade", json.dumps({"binary": str(evil)}))
    assert r.status == 400 and "writable" in r.json()["error"], r.body
    r = post(path, "/upgrade", json.dumps({"binary": "relative/sluiced"}))
    assert r.status == 400 and "absolute" in r.json()["error"], r.body
    r = post(path, "/upgrade", "{not json")
    assert r.status == 400, r
    time.sleep(0.3)
    assert not (tmp_path / "ran").exists()
    st = admin(path, "GET", "/status").json()
    assert st["pid"] == sl.pid and st["upgrade"]["state"] == "failed", st
    assert sl.client().request("GET", "/").body == b"v1\n"


def test_successor_killed_midway_old_keeps_serving_and_steering(sluice, tmp_path):
    """Killed before it ran (in a slow start), and killed at points along its start-up
    (after it may have taken the sockets and attached its program): the old daemon says
    why, attaches its own program again and keeps serving every request."""
    from test_admin import sock_path
    path = sock_path(tmp_path)
    sl = start(sluice, admin={"socket": path})
    assert wait_for(lambda: os.path.exists(path), 5 * SCALE)
    r = post(path, "/upgrade", json.dumps({"binary": slow_binary(tmp_path, sl, 2)}))
    assert r.status == 202, (r, r.body)
    pid = r.json()["successor_pid"]
    assert pid == successor_of(sl, 1)
    os.kill(pid, signal.SIGKILL)
    line = sl.wait_log(lambda ln: "upgrade failed" in ln and "successor=%d" % pid in ln)
    assert line and "killed by signal 9 before it was ready" in line, sl.stderr()[-2000:]
    # then once it holds the sockets (held there: its access log is a FIFO nobody reads,
    # so it blocks opening it)
    good = sl.config
    fifo = str(tmp_path / "alog.fifo")
    os.mkfifo(fifo)
    for n, point in ((2, "sockets received"),):
        sl.write_config(dict(good, log=dict(good["log"], access_log=fifo)))
        sl.send_signal(signal.SIGUSR2)
        pid = successor_of(sl, n)
        assert wait_for(lambda: sl.stderr().count('msg="upgrade: sockets received"') >= 1,
                        10 * SCALE)
        time.sleep(0.2)  # it is blocked in open(2) now
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        line = sl.wait_log(lambda ln, p=pid: ("upgrade failed" in ln or
                                              "successor ready" in ln) and
                           "successor=%d" % p in ln, 10 * SCALE)
        assert line, sl.stderr()[-3000:]
        assert "upgrade failed" in line, \
            "successor pid %d was ready before the kill (%s): %s" % (pid, point, line)
        for _ in range(20):
            r = HTTPClient(sl.port).request("GET", "/", headers=[("Connection", "close")])
            assert r.status == 200 and r.body == b"v1\n", r
    sl.write_config(good)
    assert sl.running()
    st = status(sl, ["running: pid %d" % sl.pid, "on (2 of 2 workers ready", "held by"])
    assert "running: pid %d" % sl.pid in st, st
    assert "on (2 of 2 workers ready" in st and "held by the daemon" in st, st


def test_successor_that_attached_then_gave_up_leaves_old_steering(sluice):
    """The worst point to fail: the successor took the sockets out of the old daemon's
    socket array, attached its own program and reported ready, but the old daemon never
    answered (stopped here; the successor gives up after 10 s and exits). When the old
    one runs again it must not hand over to the gone successor: it attaches its own
    program again, puts its sockets back in its array, and serves and steers alone."""
    sl = start(sluice)
    sl.send_signal(signal.SIGUSR2)
    pid = successor_of(sl)
    assert sl.wait_log(lambda ln: 'msg="upgrade: sockets received"' in ln, 10 * SCALE)
    os.kill(sl.pid, signal.SIGSTOP)
    try:
        # the successor's own "steering on": its program is attached to the group now
        assert wait_for(lambda: sl.stderr().count('msg="steering on"') >= 2, 10 * SCALE), \
            sl.stderr()[-2000:]
        assert wait_for(lambda: not alive(pid), 20 * SCALE), "successor did not give up"
    finally:
        os.kill(sl.pid, signal.SIGCONT)
    line = sl.wait_log(lambda ln: "upgrade failed, this daemon keeps serving" in ln)
    assert line and "successor=%d" % pid in line, sl.stderr()[-3000:]
    assert "did not take the hand-over" in sl.stderr()
    assert "cannot attach the steering program again" not in sl.stderr()
    before = placed(sl)
    for _ in range(30):
        r = HTTPClient(sl.port).request("GET", "/", headers=[("Connection", "close")])
        assert r.status == 200 and r.body == b"v1\n", r
    st = status(sl, ["running: pid %d" % sl.pid, "on (2 of 2 workers ready", "held by"])
    assert "running: pid %d" % sl.pid in st, st
    assert "on (2 of 2 workers ready" in st and "held by the daemon" in st, st
    # steering really runs ours, on our sockets: each connection was placed by it
    assert placed(sl) - before >= 30


def test_upgrade_while_one_is_in_progress_is_refused(sluice, tmp_path):
    from test_admin import admin, sock_path
    path = sock_path(tmp_path)
    sl = start(sluice, admin={"socket": path})
    assert wait_for(lambda: os.path.exists(path), 5 * SCALE)
    r = post(path, "/upgrade", json.dumps({"binary": slow_binary(tmp_path, sl, 1)}))
    assert r.status == 202, (r, r.body)
    first = r.json()["successor_pid"]
    sl.send_signal(signal.SIGUSR2)
    line = sl.wait_log(lambda ln: "upgrade not started" in ln)
    assert line and "in progress (successor pid %d)" % first in line, sl.stderr()[-2000:]
    r = post(path, "/upgrade")
    assert r.status == 409 and str(first) in r.json()["error"], (r, r.body)
    st = admin(path, "GET", "/status").json()
    assert st["upgrade"] == {"state": "in_progress", "successor_pid": first, "error": ""}, st
    took_over(sl)
    assert sl.wait_exit(15 * SCALE) == 0, sl.stderr()[-3000:]
    assert sl.stderr().count('msg="upgrade: successor started"') == 1
    assert HTTPClient(sl.port).request("GET", "/").body == b"v1\n"
    stop_pid(first)


SPOOF = r"""
import os, socket, struct, sys, time
name = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.bind("\0" + name)
s.listen(4)
print("ready", flush=True)
c, _ = s.accept()
c.settimeout(5)
try:
    c.recv(4096)  # the victim's hello
except OSError:
    pass
time.sleep(3)
"""


def test_successor_refuses_sockets_from_a_process_not_its_parent(sluice, tmp_path):
    """A process that is not the daemon that started sluiced (here: a sibling of it,
    as another user's program would be) serves the upgrade socket name: the new daemon
    refuses, takes no socket and exits 1; nothing listens on its port."""
    name = "sluice-upgrade/spoof/%d" % os.getpid()
    spoof = subprocess.Popen([sys.executable, "-c", SPOOF, name], stdout=subprocess.PIPE,
                             text=True)
    try:
        assert spoof.stdout.readline().strip() == "ready"
        victim = sluice.new("victim")
        port = free_port()
        victim.write_config(sluice.config([{"respond": {"status": 200}}], port=port,
                                          sl=victim))
        os.environ["SLUICE_UPGRADE"] = name
        try:
            victim.start(wait=False)
        finally:
            del os.environ["SLUICE_UPGRADE"]
        assert victim.wait_exit(10 * SCALE) == 1, victim.stderr()
        err = victim.stderr()
        assert "held by pid %d" % spoof.pid in err and "refused" in err, err
        s = socket.socket()
        try:
            assert s.connect_ex(("127.0.0.1", port)) != 0, "the refused daemon listened"
        finally:
            s.close()
    finally:
        spoof.kill()
        spoof.wait()


def test_predecessor_gives_nothing_to_another_process(sluice, tmp_path):
    """The upgrade socket's name is visible in /proc/net/unix: anyone may connect while
    an upgrade runs. Another process (another uid too) that connects first gets no
    socket; the real successor (slow to start here) still completes."""
    from test_admin import sock_path
    path = sock_path(tmp_path)
    sl = start(sluice, admin={"socket": path})
    assert wait_for(lambda: os.path.exists(path), 5 * SCALE)
    r = post(path, "/upgrade", json.dumps({"binary": slow_binary(tmp_path, sl, 1)}))
    assert r.status == 202, (r, r.body)
    name = None

    def find():
        nonlocal name
        with open("/proc/net/unix") as f:
            for line in f:
                m = re.search(r"@(sluice-upgrade/%d/\S+)" % sl.pid, line)
                if m:
                    name = m.group(1)
                    return True
        return False
    assert wait_for(find, 2 * SCALE, interval=0.01), "no upgrade socket while upgrading"
    probe = r"""
import os, socket, sys
os.setgid(65534); os.setuid(65534)
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.settimeout(3)
try:
    s.connect("\0" + sys.argv[1])
    s.send(b"\0" * 680)
    data, anc, flags, addr = s.recvmsg(4096, 4096)
    print("got %d %d" % (len(data), len(anc)))
except Exception as e:
    print("closed", type(e).__name__)
"""
    out = subprocess.run([sys.executable, "-c", probe, name], capture_output=True, text=True,
                         timeout=10 * SCALE)
    assert out.stdout.startswith("closed") or out.stdout.startswith("got 0 0"), out
    line = sl.wait_log(lambda ln: "refused a peer that is not the successor" in ln)
    assert line and "peer_uid=65534" in line, sl.stderr()[-2000:]
    took_over(sl)
    assert sl.wait_exit(15 * SCALE) == 0, sl.stderr()[-3000:]
    new = successor_of(sl)
    assert HTTPClient(sl.port).request("GET", "/").body == b"v1\n"
    stop_pid(new)


# ---- the upgrade itself ---------------------------------------------------------------

def test_upgrade_under_load_zero_failures(sluice):
    """Keep-alive and new connections through three upgrades in a row: no failed request,
    no refused connection; each old daemon exits 0; sluicectl status names the new pid."""
    sl = start(sluice)
    pids = [sl.pid]
    with Load(sl.port, b"v1\n") as load:
        time.sleep(0.3)
        for i in range(1, 4):
            os.kill(pids[-1], signal.SIGUSR2)
            took_over(sl, i)
            new = successor_of(sl, i)
            if i == 1:
                assert sl.wait_exit(15 * SCALE) == 0, sl.stderr()[-3000:]
            else:
                assert wait_for(lambda: not alive(pids[-1]), 15 * SCALE)
            pids.append(new)
            st = status(sl, ["running: pid %d" % new, "on (2 of 2 workers ready", "held by"])
            assert "running: pid %d" % new in st, st
            assert "on (2 of 2 workers ready" in st and "held by the daemon" in st, st
            time.sleep(0.3)
            # the new program, pinned in place of the old one's, places connections
            assert placed(sl) > 0
    assert load.refused == 0
    assert load.failures == [], load.failures[:5]
    assert load.ok > 100, load.ok
    for p in pids[:-1]:
        assert not alive(p)
    assert 'msg="sluiced stopped"' in sl.stderr()
    stop_pid(pids[-1])


def test_upgrade_with_more_workers_and_admin_socket(sluice, tmp_path):
    """The new daemon may run more workers than the old (it opens the extra sockets in
    the old one's group) and takes the admin socket path over; sluicectl upgrade waits
    for the outcome."""
    from test_admin import admin, sock_path
    path = sock_path(tmp_path)
    sl = start(sluice, workers=1, admin={"socket": path})
    assert wait_for(lambda: os.path.exists(path), 5 * SCALE)
    cfg = dict(sl.config, workers=2)
    sl.write_config(cfg)
    with Load(sl.port, b"v1\n", keepalive=2, fresh=1) as load:
        time.sleep(0.2)
        out = subprocess.run([ctl_path(sl), "--socket", path, "upgrade"], capture_output=True,
                             text=True, timeout=30 * SCALE)
        assert out.returncode == 0, (out.stdout, out.stderr, sl.stderr()[-3000:])
        new = successor_of(sl)
        assert "upgraded: pid %d -> pid %d" % (sl.pid, new) in out.stdout, out.stdout
        assert sl.wait_exit(15 * SCALE) == 0
        time.sleep(0.3)
    assert load.failures == [], load.failures[:5]
    st = admin(path, "GET", "/status").json()
    assert st["pid"] == new and st["workers"] == 2, st
    assert "on (2 of 2 workers ready" in status(sl, ["on (2 of 2 workers ready"])
    # an upgrade through sluicectl that fails says why, exit 1
    with open(sl.config_path, "w") as f:
        f.write("bogus: [\n")
    out = subprocess.run([ctl_path(sl), "--socket", path, "upgrade"], capture_output=True,
                         text=True, timeout=30 * SCALE)
    assert out.returncode == 1, out
    assert "upgrade failed" in out.stderr and sl.config_path in out.stderr, out.stderr
    assert admin(path, "GET", "/status").json()["pid"] == new
    stop_pid(new)


def test_in_flight_request_finishes_on_the_old_daemon(sluice, backend):
    b = backend("slow")
    sl = sluice.new()
    sl.start(sluice.proxy_config(b, sl=sl, workers=2, shutdown={"grace": "30s"}))
    c = HTTPClient(sl.port, timeout=30 * SCALE)
    res = {}
    t = threading.Thread(target=lambda: res.update(r=c.request("GET", "/_/slow?ms=6000")))
    t.start()
    time.sleep(0.3)
    sl.send_signal(signal.SIGUSR2)
    took_over(sl)
    assert t.is_alive(), "the request ended before the hand-over: nothing tested"
    t.join(30 * SCALE)
    assert res["r"].status == 200, res
    assert "close" in res["r"].connection_tokens()
    assert sl.wait_exit(15 * SCALE) == 0
    assert HTTPClient(sl.port).request("GET", "/").status == 200
    stop_pid(successor_of(sl))


def test_upgrade_without_steering_zero_failures(sluice):
    sl = sluice.new()
    sl.start(sluice.config([{"respond": {"status": 200, "body": "v1\n"}}], sl=sl, workers=2,
                           bpf={"steering": "off"}))
    with Load(sl.port, b"v1\n") as load:
        time.sleep(0.3)
        sl.send_signal(signal.SIGUSR2)
        took_over(sl)
        assert sl.wait_exit(15 * SCALE) == 0, sl.stderr()[-3000:]
        time.sleep(0.3)
    assert load.refused == 0 and load.failures == [], load.failures[:5]
    stop_pid(successor_of(sl))


def test_upgrade_with_a_new_listener_set(sluice):
    """The new binary reads the file again: a listener it adds is opened (and probed like
    any other), one it drops is gone once the old daemon has drained; a reload is
    refused while the upgrade runs (it could change the sockets being handed over)."""
    pa, pb, pc = free_port(), free_port(), free_port()
    sl = sluice.new()

    def cfg(ports):
        c = sluice.config([{"respond": {"status": 200}}], sl=sl, workers=2)
        c["listeners"] = [{"address": "127.0.0.1:%d" % p,
                           "routes": [{"respond": {"status": 200, "body": "%d\n" % p}}]}
                          for p in ports]
        return c
    sl.start(cfg([pa, pb]))
    sl.write_config(cfg([pa, pc]))
    with Load(pa, b"%d\n" % pa) as load:
        time.sleep(0.2)
        sl.send_signal(signal.SIGUSR2)
        successor_of(sl)
        sl.send_signal(signal.SIGHUP)
        took_over(sl)
        assert sl.wait_exit(15 * SCALE) == 0, sl.stderr()[-3000:]
        time.sleep(0.2)
    assert load.failures == [], load.failures[:5]
    # refused while upgrading, or ignored once draining: never applied half-way
    assert 'msg="config reloaded"' not in sl.stderr()
    assert HTTPClient(pc).request("GET", "/").body == b"%d\n" % pc
    s = socket.socket()
    try:
        assert s.connect_ex(("127.0.0.1", pb)) != 0, "a listener the new file dropped"
    finally:
        s.close()
    stop_pid(successor_of(sl))


def test_admin_tcp_port_is_handed_over(sluice):
    """admin.listen (probes and /metrics in a pod) is the old daemon's socket, handed
    over like the listeners: a probe polling it through the upgrade never fails, and it
    answers with the new pid afterwards."""
    aport = free_port()
    auth = [("Authorization", "Bearer s3cret")]
    sl = start(sluice, admin={"listen": "127.0.0.1:%d" % aport, "token": "s3cret"})
    assert wait_for(lambda: port_answers(aport), 5 * SCALE)
    stop = threading.Event()
    bad = []

    def probe():
        while not stop.is_set():
            try:
                with HTTPClient(aport, timeout=5 * SCALE) as c:
                    r = c.request("GET", "/healthz", headers=auth + [("Connection", "close")],
                                  host="localhost")
                    if r.status != 200:
                        bad.append(r.status)
            except Exception as e:  # noqa: BLE001
                bad.append(repr(e))
    t = threading.Thread(target=probe)
    t.start()
    try:
        time.sleep(0.2)
        sl.send_signal(signal.SIGUSR2)
        took_over(sl)
        assert sl.wait_exit(15 * SCALE) == 0, sl.stderr()[-3000:]
        time.sleep(0.3)
    finally:
        stop.set()
        t.join(10)
    new = successor_of(sl)
    assert bad == [], bad[:5]
    assert "cannot bind admin listener" not in sl.stderr()
    with HTTPClient(aport) as c:
        st = c.request("GET", "/status", headers=auth, host="localhost").json()
    assert st["pid"] == new, st
    stop_pid(new)


def port_answers(port):
    s = socket.socket()
    try:
        return s.connect_ex(("127.0.0.1", port)) == 0
    finally:
        s.close()
