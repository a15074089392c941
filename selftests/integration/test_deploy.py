"""What ships for deployment works: `make install` lays out a usable tree, the systemd unit
verifies, scores <= 3.0 in `systemd-analyze security` and its ExecReload fails on a config
the daemon rejects; the shipped configs validate."""
import os
import re
import shlex
import shutil
import subprocess

import pytest

from daemon import Sluice, wait_for
from env import BUILD, SCALE, SLUICED

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UNIT = os.path.join(ROOT, "deploy/systemd/sluiced.service")
ANALYZE = shutil.which("systemd-analyze")


def make_install(tmp, **vars):
    args = ["make", "-s", "--no-print-directory", "-C", ROOT, "B=%s" % BUILD, "install"]
    args += ["%s=%s" % kv for kv in vars.items()]
    return subprocess.run(args, capture_output=True, text=True, timeout=600)


def unit_keys(text):
    """[(key, value)] of a unit file, in order (keys may repeat)."""
    out = []
    for ln in text.splitlines():
        ln = ln.strip()
        if ln and not ln.startswith(("#", ";", "[")) and "=" in ln:
            k, v = ln.split("=", 1)
            out.append((k.strip(), v.strip()))
    return out


def with_nobody(text):
    """The shipped config names user sluice, which this test machine does not have."""
    assert re.search(r"^user: sluice$", text, re.M), "the shipped config drops to sluice"
    return re.sub(r"^user: sluice$", "user: nobody", text, flags=re.M)


# ---- make install -------------------------------------------------------------------

def test_make_install_destdir_tree(tmp_path):
    dest = tmp_path / "root"
    r = make_install(tmp_path, DESTDIR=str(dest))
    assert r.returncode == 0, r.stdout + r.stderr
    p = dest / "usr/local"
    want = {
        "sbin/sluiced": 0o755, "bin/sluicectl": 0o755, "lib/libsluice.a": 0o644,
        "include/sluice/sluice.h": 0o644, "share/doc/sluice/operations.md": 0o644,
        "share/doc/sluice/configuration.md": 0o644, "share/doc/sluice/README.md": 0o644,
        "share/doc/sluice/sluiced.txt": 0o644, "share/doc/sluice/sluicectl.txt": 0o644,
        "share/doc/sluice/examples/sluice.yaml": 0o644,
        "lib/systemd/system/sluiced.service": 0o644,
        "lib/sysusers.d/sluice.conf": 0o644, "lib/sysctl.d/60-sluice.conf": 0o644,
    }
    for rel, mode in want.items():
        f = p / rel
        assert f.is_file(), rel
        assert f.stat().st_mode & 0o777 == mode, (rel, oct(f.stat().st_mode))
    assert (dest / "etc/sluice/sluice.yaml").is_file()
    # the installed programs run, and their --help text is what the docs hold
    v = subprocess.run([str(p / "sbin/sluiced"), "-V"], capture_output=True, text=True)
    assert v.returncode == 0 and v.stdout.startswith("sluiced "), v
    assert "usage:" in (p / "share/doc/sluice/sluicectl.txt").read_text()
    # the installed config is valid (with a user this machine has)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(with_nobody((dest / "etc/sluice/sluice.yaml").read_text()))
    t = subprocess.run([str(p / "sbin/sluiced"), "-t", "-c", str(cfg)], capture_output=True,
                       text=True)
    assert t.returncode == 0, t.stderr
    # nothing of the build tree leaks into the unit: its paths are the installed ones
    unit = (p / "lib/systemd/system/sluiced.service").read_text()
    assert "ExecStart=/usr/local/sbin/sluiced -c /etc/sluice/sluice.yaml" in unit
    assert "net.ipv4.tcp_migrate_req = 1" in (p / "lib/sysctl.d/60-sluice.conf").read_text()


def test_make_install_keeps_an_edited_config(tmp_path):
    dest = tmp_path / "root"
    (dest / "etc/sluice").mkdir(parents=True)
    mine = "# the operator's own\n"
    (dest / "etc/sluice/sluice.yaml").write_text(mine)
    r = make_install(tmp_path, DESTDIR=str(dest))
    assert r.returncode == 0, r.stderr
    assert (dest / "etc/sluice/sluice.yaml").read_text() == mine
    assert "keeping" in r.stdout


def test_make_install_prefix_rewrites_the_unit(tmp_path):
    pre = tmp_path / "opt"
    r = make_install(tmp_path, PREFIX=str(pre))
    assert r.returncode == 0, r.stderr
    unit = (pre / "lib/systemd/system/sluiced.service").read_text()
    keys = dict(unit_keys(unit))
    assert keys["ExecStart"] == "%s/sbin/sluiced -c %s/etc/sluice/sluice.yaml" % (pre, pre)
    assert keys["ExecReload"].startswith("%s/bin/sluicectl " % pre)
    assert "/usr/local" not in unit
    assert (pre / "etc/sluice/sluice.yaml").is_file()


# ---- the systemd unit -----------------------------------------------------------------

def test_unit_hardening_keys():
    keys = unit_keys(open(UNIT).read())
    d = dict(keys)
    assert d["Type"] == "notify"
    assert d["NoNewPrivileges"] == "yes"
    assert d["ProtectSystem"] == "strict"
    assert d["ProtectKernelTunables"] == "yes"
    bounding = set(d["CapabilityBoundingSet"].split())
    assert bounding == {"CAP_BPF", "CAP_NET_BIND_SERVICE", "CAP_SETUID", "CAP_SETGID",
                        "CAP_SETPCAP"}, bounding
    assert "CAP_SYS_ADMIN" not in open(UNIT).read()
    assert d["AmbientCapabilities"] == ""
    assert any(k == "SystemCallFilter" and "@system-service" in v for k, v in keys)
    assert d["ExecStartPre"] == "/usr/local/sbin/sluiced -t -c /etc/sluice/sluice.yaml"
    assert d["ExecStart"] == "/usr/local/sbin/sluiced -c /etc/sluice/sluice.yaml"
    assert "kill" not in d["ExecReload"]  # a signal cannot report a rejected file


@pytest.mark.skipif(not ANALYZE, reason="systemd-analyze not installed")
def test_unit_verifies_clean(tmp_path):
    """systemd-analyze verify on the installed unit (its binaries exist there)."""
    pre = tmp_path / "p"
    r = make_install(tmp_path, PREFIX=str(pre))
    assert r.returncode == 0, r.stderr
    v = subprocess.run([ANALYZE, "verify", str(pre / "lib/systemd/system/sluiced.service")],
                       capture_output=True, text=True, timeout=60)
    assert v.returncode == 0 and not v.stderr.strip() and not v.stdout.strip(), v


@pytest.mark.skipif(not ANALYZE, reason="systemd-analyze not installed")
def test_unit_security_exposure_is_ok():
    s = subprocess.run([ANALYZE, "security", "--offline=true", "--no-pager", UNIT],
                       capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for sluiced\.service: ([0-9.]+) (\w+)", s.stdout)
    assert m, s.stdout + s.stderr
    assert float(m.group(1)) <= 3.0, s.stdout
    assert m.group(2) in ("OK", "SAFE"), m.group(0)


def exec_reload(sock):
    """The unit's ExecReload command line, pointed at this build and this socket."""
    cmd = shlex.split(dict(unit_keys(open(UNIT).read()))["ExecReload"])
    assert cmd[0] == "/usr/local/bin/sluicectl"
    cmd[0] = os.path.join(BUILD, "sluicectl")
    return [sock if a == "/run/sluice/admin.sock" else a for a in cmd]


def test_unit_reload_of_a_broken_config_fails(sluice, tmp_path):
    """Hostile first: systemctl reload runs ExecReload; it must fail (non-zero) when the
    daemon refuses the file, and the old config must keep serving."""
    from test_admin import sock_path
    sock = sock_path(tmp_path)
    sl = sluice.new()
    cfg = sluice.config([{"respond": {"status": 200, "body": "one\n"}}], sl=sl,
                        admin={"socket": sock})
    sl.start(cfg)
    assert wait_for(lambda: os.path.exists(sock), 5 * SCALE)
    cmd = exec_reload(sock)
    sl.write_config("listeners:\n  - address: [\n")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=20 * SCALE)
    assert r.returncode == 1, r
    assert "reload rejected" in r.stderr and "sluice" in r.stderr, r.stderr
    with sl.client() as c:
        assert c.request("GET", "/").body == b"one\n"
    sl.write_config(dict(cfg, listeners=[dict(cfg["listeners"][0],
                                              routes=[{"respond": {"status": 200,
                                                                   "body": "two\n"}}])]))
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=20 * SCALE)
    assert r.returncode == 0, r
    with sl.client() as c:
        assert c.request("GET", "/").body == b"two\n"


def test_unit_reload_without_a_daemon_fails(tmp_path):
    r = subprocess.run(exec_reload(str(tmp_path / "none.sock")), capture_output=True,
                       text=True, timeout=20 * SCALE)
    assert r.returncode == 1, r


def test_shipped_config_validates(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(with_nobody(open(os.path.join(ROOT, "deploy/sluice.yaml")).read()))
    p = subprocess.run([SLUICED, "-t", "-c", str(cfg)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


def test_shipped_config_names_a_user_that_must_exist():
    """Hostile: on a node without the sluice user, `sluiced -t` (the unit's ExecStartPre)
    says so instead of starting as root."""
    if subprocess.run(["getent", "passwd", "sluice"], capture_output=True).returncode == 0:
        pytest.skip("this machine has a sluice user")
    p = subprocess.run([SLUICED, "-t", "-c", os.path.join(ROOT, "deploy/sluice.yaml")],
                       capture_output=True, text=True)
    assert p.returncode == 1
    assert "user 'sluice' does not exist" in p.stderr, p.stderr
