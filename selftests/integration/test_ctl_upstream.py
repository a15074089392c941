"""sluicectl upstream list|show|set|add|del|drain|enable|disable over the admin socket:
human and --json output, exit codes 0 (done), 1 (refused or unreachable), 2 (usage)."""
import json
import os
import subprocess

from env import BUILD
from test_upstream_api import admin_up, sock_path

CTL = os.path.join(BUILD, "sluicectl")


def ctl(path, *args):
    p = subprocess.run([CTL, "upstream", "--socket", path] + list(args), capture_output=True,
                       text=True, timeout=30)
    return p.returncode, p.stdout, p.stderr


def test_sluicectl_upstream(sluice, backend, tmp_path):
    a, b, c = backend("a"), backend("b"), backend("c")
    path = sock_path(tmp_path)
    sluice.proxy(a, b, workers=1, admin={"socket": path})
    assert admin_up(path)
    rc, out, err = ctl(path, "list")
    assert rc == 0 and "u  balance=round_robin servers=2 up=2" in out and a.address in out, out
    rc, out, _ = ctl(path, "--json", "show", "u")
    assert rc == 0 and [s["address"] for s in json.loads(out)["servers"]] == [a.address,
                                                                             b.address]
    rc, out, _ = ctl(path, "set", "u", c.address + "=3", a.address, "--json")
    assert rc == 0
    assert [(s["address"], s["weight"]) for s in json.loads(out)["servers"]] == \
        [(c.address, 3), (a.address, 1)]
    rc, out, _ = ctl(path, "add", "u", b.address, "2")
    assert rc == 0 and b.address in out
    rc, out, err = ctl(path, "add", "u", b.address)
    assert rc == 1 and "already in upstream" in err and "409" in err
    rc, out, _ = ctl(path, "drain", "u", b.address)
    assert rc == 0 and "draining" in out
    rc, out, _ = ctl(path, "disable", "u", b.address)
    assert rc == 0 and "disabled" in out
    rc, out, _ = ctl(path, "enable", "u", b.address)
    assert rc == 0 and "up" in out
    rc, out, _ = ctl(path, "del", "u", b.address)
    assert rc == 0 and b.address not in out
    rc, out, err = ctl(path, "del", "u", b.address)
    assert rc == 1 and "no such server" in err
    rc, out, err = ctl(path, "show", "nope")
    assert rc == 1 and "no upstream named 'nope'" in err
    rc, out, err = ctl(path, "--json", "show", "nope")
    assert rc == 1 and json.loads(err)["error"]
    # usage
    for args in ([], ["show"], ["set", "u"], ["add", "u"], ["frobnicate", "u"],
                 ["set", "u", "x=0"], ["set", "u", "x=abc"], ["add", "u", a.address, "1001"],
                 ["--bogus", "list"]):
        rc, out, err = ctl(path, *args)
        assert rc == 2, (args, rc, err)
    # unreachable
    rc, out, err = ctl(os.path.join(str(tmp_path), "none.sock"), "list")
    assert rc == 1 and "cannot reach" in err
