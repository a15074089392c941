"""One sluiced per listener set: a second daemon on a port the first serves refuses to
start (exit 1, naming the first's pid) and the first keeps serving and steering; a port
held by a non-sluice process is named too; two daemons on different ports cannot share a
pin path's maps."""
import os
import socket
import subprocess

from daemon import wait_for
from env import SCALE


def second_on_same_port(sluice, first, **kw):
    s2 = sluice.new("second")
    cfg = sluice.config([{"respond": {"status": 200, "body": "second\n"}}], port=first.port,
                        name="second", **kw)
    s2.write_config(cfg)
    return s2


def test_second_daemon_on_same_port_is_refused(sluice):
    first = sluice.start([{"respond": {"status": 200, "body": "first\n"}}], workers=2)
    assert first.wait_log(lambda ln: 'msg="steering on"' in ln), first.stderr()
    s2 = second_on_same_port(sluice, first, workers=2)
    s2.start(wait=False)
    rc = s2.wait_exit(10 * SCALE)
    assert rc == 1, "second sluiced on a served port: exit %r\n%s" % (rc, s2.stderr())
    err = s2.stderr()
    assert "already served by sluiced pid %d" % first.pid in err, err
    # the first keeps every connection and its steering
    for _ in range(16):
        r = first.client().request("GET", "/", headers=[("Connection", "close")])
        assert r.status == 200 and r.body == b"first\n", r
    assert 'msg="steering on"' not in s2.stderr()
    assert first.running()


def test_refused_second_leaves_first_steering(sluice):
    """The refused daemon attached nothing and reset no pinned slot: the first's worker
    slots still say ready with its pid."""
    first = sluice.start([{"respond": {"status": 200, "body": "first\n"}}], workers=2)
    assert first.wait_log(lambda ln: 'msg="steering on"' in ln), first.stderr()
    # same pin path as the first: the strongest case (the maps the first serves from)
    s2 = second_on_same_port(sluice, first, workers=2, bpf={"pin_path": first.pin_path})
    s2.start(wait=False)
    assert s2.wait_exit(10 * SCALE) == 1, s2.stderr()
    ctl = os.path.join(os.path.dirname(first.binary), "sluicectl")
    out = subprocess.run([ctl, "--pin-path", first.pin_path, "workers"], capture_output=True,
                         text=True, timeout=10 * SCALE)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("ready") == 2, out.stdout
    st = subprocess.run([ctl, "--pin-path", first.pin_path, "status"], capture_output=True,
                        text=True, timeout=10 * SCALE)
    assert "running: pid %d" % first.pid in st.stdout, st.stdout
    assert "on (2 of 2 workers ready" in st.stdout, st.stdout
    for _ in range(8):
        r = first.client().request("GET", "/", headers=[("Connection", "close")])
        assert r.body == b"first\n", r


def test_port_held_by_another_program_is_named(sluice):
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind(("127.0.0.1", 0))
    holder.listen(8)
    port = holder.getsockname()[1]
    try:
        s = sluice.new()
        s.write_config(sluice.config([{"respond": {"status": 200}}], port=port, sl=s))
        s.start(wait=False)
        assert s.wait_exit(10 * SCALE) == 1, s.stderr()
        assert "127.0.0.1:%d is already served by pid %d" % (port, os.getpid()) in s.stderr(), \
            s.stderr()
    finally:
        holder.close()


def test_wildcard_listener_covers_a_specific_address(sluice):
    first = sluice.start([{"respond": {"status": 200, "body": "first\n"}}], host="0.0.0.0")
    s2 = sluice.new("second")
    s2.write_config(sluice.config([{"respond": {"status": 200}}], port=first.port,
                                  name="second"))
    s2.start(wait=False)
    assert s2.wait_exit(10 * SCALE) == 1, s2.stderr()
    assert "sluiced pid %d" % first.pid in s2.stderr(), s2.stderr()


def test_same_pin_path_other_ports_runs_without_steering(sluice):
    first = sluice.start([{"respond": {"status": 200, "body": "first\n"}}], workers=2)
    assert first.wait_log(lambda ln: 'msg="steering on"' in ln), first.stderr()
    s2 = sluice.new("second")
    s2.start(sluice.config([{"respond": {"status": 200, "body": "second\n"}}], name="second",
                           bpf={"pin_path": first.pin_path}))
    line = s2.wait_log(lambda ln: "steering off" in ln)
    assert line and "in use by sluiced pid %d" % first.pid in line, s2.stderr()
    assert s2.client().request("GET", "/").body == b"second\n"
    # and the first's slots were not reset by the second
    ctl = os.path.join(os.path.dirname(first.binary), "sluicectl")
    out = subprocess.run([ctl, "--pin-path", first.pin_path, "workers"], capture_output=True,
                         text=True, timeout=10 * SCALE)
    assert out.stdout.count("ready") == 2, out.stdout


def test_same_pin_path_required_steering_refuses(sluice):
    first = sluice.start([{"respond": {"status": 200}}])
    assert first.wait_log(lambda ln: 'msg="steering on"' in ln), first.stderr()
    s2 = sluice.new("second")
    s2.write_config(sluice.config([{"respond": {"status": 200}}], name="second",
                                  bpf={"pin_path": first.pin_path, "steering": "required"}))
    s2.start(wait=False)
    assert s2.wait_exit(10 * SCALE) == 1, s2.stderr()
    assert "in use by sluiced pid %d" % first.pid in s2.stderr(), s2.stderr()


def test_restart_after_stop_takes_the_port(sluice):
    """The check is about a live listener: a stopped daemon's port (with connections
    left in TIME_WAIT) is free for the next one."""
    first = sluice.start([{"respond": {"status": 200, "body": "first\n"}}])
    for _ in range(4):
        first.client().request("GET", "/", headers=[("Connection", "close")])
    port = first.port
    assert first.stop() == []
    s2 = sluice.new("second")
    s2.start(sluice.config([{"respond": {"status": 200, "body": "second\n"}}], port=port,
                           name="second"))
    assert wait_for(lambda: s2.client().request("GET", "/").body == b"second\n", 5 * SCALE)


def test_admin_socket_of_a_live_daemon_is_not_taken_over(sluice, tmp_path):
    from test_admin import admin, sock_path
    path = sock_path(tmp_path)
    first = sluice.start([{"respond": {"status": 200}}], admin={"socket": path})
    assert wait_for(lambda: os.path.exists(path), 5 * SCALE)
    s2 = sluice.new("second")
    s2.start(sluice.config([{"respond": {"status": 200}}], name="second",
                           admin={"socket": path}))
    assert s2.wait_log(lambda ln: "admin socket is served by another live process" in ln), \
        s2.stderr()
    st = admin(path, "GET", "/status").json()
    assert st["pid"] == first.pid, st
