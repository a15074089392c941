"""user:/group:/keep_capabilities: sluiced binds, loads BPF and creates its admin socket
as root, then every thread runs as the user with only the kept capabilities; a user that
does not exist or a drop that fails stops it before any worker runs; sd_notify tells a
service manager READY / RELOADING / STOPPING."""
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile

import pytest

from backends import free_port
from daemon import Sluice, base_config, wait_for
from env import BUILD, SCALE, SLUICED
from test_admin import admin

CTL = os.path.join(BUILD, "sluicectl")
NOBODY = pwd.getpwnam("nobody")
CAP_NET_BIND_SERVICE = 10

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")


@pytest.fixture
def pubdir():
    """A work directory the dropped user can read (pytest's tmp_path is root's 0700):
    the daemon reads its config again on reload, as that user."""
    d = tempfile.mkdtemp(prefix="sl-priv-", dir="/tmp")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def daemons(sluice):
    return sluice.instances  # stopped and checked by the sluice fixture's teardown


def respond(body):
    return [{"respond": {"status": 200, "body": body}}]


def config(d, body="one\n", **kw):
    kw.setdefault("admin", {"socket": os.path.join(d, "admin.sock")})
    return base_config(free_port(), respond(body), workers=2,
                       access_log=os.path.join(d, "access.log"), **kw)


def start(daemons, d, cfg):
    s = Sluice(d)
    daemons.append(s)
    s.start(cfg)
    sock = (cfg.get("admin") or {}).get("socket")
    if sock:
        assert wait_for(lambda: os.path.exists(sock), 5 * SCALE), s.stderr()
    return s


def tasks(pid):
    """{tid: {field: value}} for Uid, Gid, Groups and the Cap* lines of every thread."""
    out = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        f = {}
        with open("/proc/%d/task/%s/status" % (pid, tid)) as fh:
            for ln in fh:
                k, _, v = ln.partition(":")
                if k in ("Uid", "Gid", "Groups") or k.startswith("Cap"):
                    f[k] = v.split()
        out[tid] = f
    return out


def ctl(*args):
    return subprocess.run([CTL] + list(args), capture_output=True, text=True,
                          timeout=20 * SCALE, stdin=subprocess.DEVNULL)


def check(cfg_text, tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text(cfg_text)
    return subprocess.run([SLUICED, "-t", "-c", str(p)], capture_output=True, text=True)


LISTENER = """listeners:
  - address: "127.0.0.1:1"
    routes:
      - respond: {status: 200}
"""


# ---- hostile first: a user that is not there, a group without a user, root -------

def test_unknown_user_is_a_config_error(tmp_path):
    r = check("user: no-such-user-here\n" + LISTENER, tmp_path)
    assert r.returncode == 1, r
    assert "c.yaml:1:7: user 'no-such-user-here' does not exist" in r.stderr, r.stderr


def test_unknown_user_never_starts_a_worker(tmp_path):
    port = free_port()
    p = tmp_path / "c.yaml"
    p.write_text("user: no-such-user-here\nlisteners:\n  - address: \"127.0.0.1:%d\"\n"
                 "    routes:\n      - respond: {status: 200}\n" % port)
    r = subprocess.run([SLUICED, "-c", str(p)], capture_output=True, text=True,
                       timeout=10 * SCALE)
    assert r.returncode == 1, r
    assert "does not exist" in r.stderr


@pytest.mark.parametrize("text,want", [
    ("group: no-such-group-here\nuser: nobody\n", "1:8: group 'no-such-group-here' does not"),
    ("group: nogroup\n", "1:8: group needs user"),
    ("user: root\n", "1:7: user 'root' is root"),
    ("user: nobody\ngroup: root\n", "2:8: group 'root' is root's group"),
    ("user: \"4000000\"\n", "1:7: user 4000000 has no passwd entry: name its group too"),
    ("user: nobody\nkeep_capabilities: [sys_admin]\n",
     "2:21: keep_capabilities: 'sys_admin' is not one of"),
    ("user: nobody\nkeep_capabilities: net_admin\n", "2:20: keep_capabilities must be a seq"),
    ("keep_capabilities: [net_admin]\n", "1:20: keep_capabilities needs user"),
    ("user: \"\"\n", "1:7: user must not be empty"),
])
def test_process_section_refusals(tmp_path, text, want):
    r = check(text + LISTENER, tmp_path)
    assert r.returncode == 1, r
    assert want in r.stderr, r.stderr


def test_numeric_user_with_group_is_accepted(tmp_path):
    r = check("user: \"4000000\"\ngroup: \"4000000\"\nkeep_capabilities: [CAP_NET_BIND_SERVICE]\n"
              + LISTENER, tmp_path)
    assert r.returncode == 0, r.stderr


# ---- the drop itself --------------------------------------------------------------

def test_every_thread_runs_as_the_user_with_no_capability(daemons, pubdir):
    s = start(daemons, pubdir, config(pubdir, user="nobody"))
    assert s.wait_log(lambda ln: 'msg="privileges dropped"' in ln), s.stderr()
    line = s.wait_log(lambda ln: 'msg="privileges dropped"' in ln)
    assert "user=nobody uid=%d gid=%d caps=none bounding=cleared" % (
        NOBODY.pw_uid, NOBODY.pw_gid) in line, line
    # the drop comes after the listeners, BPF and the admin socket, before any worker
    text = s.stderr()
    assert text.index('msg="admin API listening"') < text.index('msg="privileges dropped"')
    assert text.index('msg="privileges dropped"') < text.index('msg="sluiced started"')
    # background services (resolver, health, pool-keeper, ...) start after the workers:
    # every one of their threads must be the user's too
    s.wait_log(lambda ln: 'msg="service started" service=pool-keeper' in ln)
    ts = tasks(s.pid)
    assert len(ts) >= 6, ts  # main, 2 workers, resolver, health, pool-keeper
    for tid, f in ts.items():
        assert f["Uid"] == [str(NOBODY.pw_uid)] * 4, (tid, f)
        assert f["Gid"] == [str(NOBODY.pw_gid)] * 4, (tid, f)
        for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
            assert int(f[k][0], 16) == 0, (tid, k, f)
    with s.client() as c:
        assert c.request("GET", "/").body == b"one\n"


def test_steering_keeps_working_after_the_drop(daemons, pubdir):
    s = start(daemons, pubdir, config(pubdir, user="nobody", bpf={"steering": "required"}))
    assert s.wait_log(lambda ln: 'msg="steering on"' in ln), s.stderr()
    for _ in range(20):
        with s.client() as c:
            assert c.request("GET", "/").status == 200
    # heartbeats still land in the mmaped slots: sluicectl (root) sees every worker ready
    r = wait_for(lambda: (lambda r: r if "2 of 2 workers ready" in r.stdout else None)(
        ctl("--pin-path", s.pin_path, "status")), 5 * SCALE)
    assert r, ctl("--pin-path", s.pin_path, "status").stdout
    # the pins are the user's, so a successor running as the user can open them
    assert os.stat(s.pin_path).st_uid == NOBODY.pw_uid
    for name in os.listdir(s.pin_path):
        assert os.stat(os.path.join(s.pin_path, name)).st_uid == NOBODY.pw_uid, name


def test_kept_capability_is_the_only_one(daemons, pubdir):
    s = start(daemons, pubdir, config(pubdir, user="nobody",
                                      keep_capabilities=["net_bind_service"]))
    line = s.wait_log(lambda ln: 'msg="privileges dropped"' in ln)
    assert "caps=net_bind_service" in line, line
    for tid, f in tasks(s.pid).items():
        assert int(f["CapEff"][0], 16) == 1 << CAP_NET_BIND_SERVICE, (tid, f)
        assert int(f["CapPrm"][0], 16) == 1 << CAP_NET_BIND_SERVICE, (tid, f)
        # inheritable + ambient: an upgrade's new binary starts with the same set
        assert int(f["CapAmb"][0], 16) == 1 << CAP_NET_BIND_SERVICE, (tid, f)
        assert int(f["CapBnd"][0], 16) == 1 << CAP_NET_BIND_SERVICE, (tid, f)
        assert f["Uid"][1] == str(NOBODY.pw_uid)


def test_reload_after_the_drop(daemons, pubdir):
    sock = os.path.join(pubdir, "admin.sock")
    cfg = config(pubdir, user="nobody")
    s = start(daemons, pubdir, cfg)
    s.write_config(dict(cfg, listeners=[dict(cfg["listeners"][0], routes=respond("two\n"))]))
    r = ctl("--socket", sock, "reload")
    assert r.returncode == 0, r
    with s.client() as c:
        assert c.request("GET", "/").body == b"two\n"


def test_reload_cannot_change_the_user(daemons, pubdir):
    sock = os.path.join(pubdir, "admin.sock")
    cfg = config(pubdir, user="nobody")
    s = start(daemons, pubdir, cfg)
    s.write_config(dict(cfg, user="daemon"))
    r = ctl("--socket", sock, "reload")
    assert r.returncode == 1, r
    assert "user, group or keep_capabilities changed; a restart is needed" in r.stderr, r
    s.write_config(dict(cfg, keep_capabilities=["net_admin"]))
    r = ctl("--socket", sock, "reload")
    assert r.returncode == 1, r
    with s.client() as c:
        assert c.request("GET", "/").body == b"one\n"


def test_config_unreadable_by_the_user_is_a_rejected_reload(daemons, pubdir):
    sock = os.path.join(pubdir, "admin.sock")
    cfg = config(pubdir, user="nobody")
    s = start(daemons, pubdir, cfg)
    s.write_config(dict(cfg, listeners=[dict(cfg["listeners"][0], routes=respond("two\n"))]))
    os.chmod(s.config_path, 0o600)  # root's file: the dropped daemon cannot read it
    r = ctl("--socket", sock, "reload")
    assert r.returncode == 1, r
    assert "Permission denied" in r.stderr, r.stderr
    with s.client() as c:
        assert c.request("GET", "/").body == b"one\n"


def test_a_drop_that_cannot_happen_refuses_to_start(pubdir):
    """Started as another unprivileged user, sluiced cannot become `user:`: exit 1 and
    no worker ever accepts (it never serves as the wrong user)."""
    cfg = config(pubdir, user="daemon", admin={}, bpf={"steering": "off"},
                 log={"access_log": "off"})
    path = os.path.join(pubdir, "c.yaml")
    from daemon import to_yaml
    with open(path, "w") as f:
        f.write(to_yaml(cfg))
    os.chmod(path, 0o644)
    port = int(cfg["listeners"][0]["address"].rsplit(":", 1)[1])
    r = subprocess.run(["setpriv", "--reuid", str(NOBODY.pw_uid), "--regid",
                        str(NOBODY.pw_gid), "--clear-groups", SLUICED, "-c", path],
                       capture_output=True, text=True, timeout=20 * SCALE, cwd=pubdir)
    assert r.returncode == 1, r
    assert "cannot start: cannot switch to user daemon" in r.stderr, r.stderr
    assert 'msg="sluiced started"' not in r.stderr
    s = socket.socket()
    assert s.connect_ex(("127.0.0.1", port)) != 0
    s.close()


def test_started_as_the_user_sheds_ambient_capabilities(daemons, pubdir):
    """As systemd's User= + AmbientCapabilities= would start it: the handed-over
    capabilities not in keep_capabilities are gone once the listeners are bound."""
    cfg = config(pubdir, user="nobody", bpf={"steering": "off"}, admin={},
                 log={"access_log": "off"})
    s = Sluice(pubdir)
    daemons.append(s)
    s.write_config(cfg)
    os.chmod(s.config_path, 0o644)
    # Sluice.start runs [binary, -c, path]: the binary is a setpriv wrapper
    wrapper = os.path.join(pubdir, "as-nobody.sh")
    with open(wrapper, "w") as f:
        f.write("#!/bin/sh\nexec setpriv --reuid %d --regid %d --clear-groups "
                "--inh-caps +net_bind_service,+net_admin --ambient-caps "
                "+net_bind_service,+net_admin %s \"$@\"\n" % (NOBODY.pw_uid, NOBODY.pw_gid,
                                                             SLUICED))
    os.chmod(wrapper, 0o755)
    s.binary = wrapper
    s.start()
    line = s.wait_log(lambda ln: 'msg="privileges dropped"' in ln)
    assert line and "caps=none" in line, s.stderr()
    for tid, f in tasks(s.pid).items():
        assert f["Uid"][1] == str(NOBODY.pw_uid)
        for k in ("CapPrm", "CapEff", "CapAmb"):
            assert int(f[k][0], 16) == 0, (tid, k, f)


# ---- sd_notify ----------------------------------------------------------------------

def test_sd_notify_ready_reloading_stopping(daemons, pubdir, monkeypatch):
    path = os.path.join(pubdir, "notify.sock")
    rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    rx.bind(path)
    os.chmod(path, 0o666)  # the daemon sends as nobody after the drop
    rx.settimeout(5 * SCALE)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    cfg = config(pubdir, user="nobody")
    s = start(daemons, pubdir, cfg)

    def msg():
        return dict(ln.split("=", 1) for ln in rx.recv(4096).decode().splitlines())

    m = msg()
    assert m.get("READY") == "1" and "serving, 2 workers" in m.get("STATUS", ""), m
    s.send_signal(signal.SIGHUP)
    m = msg()
    assert m.get("RELOADING") == "1" and int(m["MONOTONIC_USEC"]) > 0, m
    m = msg()
    assert m.get("READY") == "1" and "reloaded" in m["STATUS"], m
    s.write_config("listeners: [\n")  # broken: rejected, still READY with the reason
    assert admin(os.path.join(pubdir, "admin.sock"), "POST", "/reload").status != 200
    assert msg().get("RELOADING") == "1"
    m = msg()
    assert m.get("READY") == "1" and "reload rejected" in m["STATUS"], m
    s.send_signal(signal.SIGTERM)
    m = msg()
    assert m.get("STOPPING") == "1", m
    assert s.wait_exit(15 * SCALE) == 0
    rx.close()


def test_listener_added_by_reload_after_the_drop(daemons, pubdir):
    """Opening a new listener (port above 1024), putting it in steering's socket array
    and attaching the program need no capability once the maps and program are open."""
    sock = os.path.join(pubdir, "admin.sock")
    cfg = config(pubdir, user="nobody", bpf={"steering": "required"})
    s = start(daemons, pubdir, cfg)
    port2 = free_port()
    extra = {"address": "127.0.0.1:%d" % port2, "routes": respond("second\n")}
    s.write_config(dict(cfg, listeners=cfg["listeners"] + [extra]))
    r = ctl("--socket", sock, "reload")
    assert r.returncode == 0, r
    from client import HTTPClient
    for _ in range(10):
        with HTTPClient(port2) as c:
            assert c.request("GET", "/", headers=[("Connection", "close")]).body == \
                b"second\n"
    # both workers listen on it, as nobody
    for tid, f in tasks(s.pid).items():
        assert f["Uid"][1] == str(NOBODY.pw_uid)


def test_reopen_logs_after_the_drop(daemons, pubdir):
    """Rotation as logrotate does it: renamed, and a new file created for the user. A
    directory the user cannot write and no new file: reopen fails with its reason and
    the old file stays in use (no line lost)."""
    sock = os.path.join(pubdir, "admin.sock")
    log = os.path.join(pubdir, "access.log")
    s = start(daemons, pubdir, config(pubdir, user="nobody"))
    from client import HTTPClient

    def hit(target):
        with HTTPClient(s.port) as c:
            assert c.request("GET", target, headers=[("Connection", "close")]).status == 200

    def logged(path, target):
        return wait_for(lambda: os.path.exists(path) and target in open(path).read(),
                        5 * SCALE)

    hit("/before")
    assert logged(log, "/before")
    os.rename(log, log + ".1")
    r = ctl("--socket", sock, "reopen-logs")
    assert r.returncode == 1, r  # root's 0755 directory: nobody cannot create the file
    assert "Permission denied" in r.stderr, r.stderr
    hit("/still-old")
    assert logged(log + ".1", "/still-old")
    with open(log, "w"):
        pass
    os.chown(log, NOBODY.pw_uid, NOBODY.pw_gid)  # logrotate's "create 0640 sluice adm"
    os.chmod(log, 0o640)
    r = ctl("--socket", sock, "reopen-logs")
    assert r.returncode == 0, r
    hit("/after")
    assert logged(log, "/after")
    assert "/after" not in open(log + ".1").read()
