"""sluicectl and the XDP guard on real devices.

A pair of private network namespaces joined by a veth: the guard is attached to the
server side with `sluicectl load`, a TCP server runs there, and clients connect from two
addresses on the other side; one is denied and must time out while the other is served,
and xdp_stats must count the drops. Also: refusing a device that already has an XDP
program, auto mode falling back to generic, unload, the CLI's exit codes, and
status/stats/workers against a real sluiced. Every test uses a private pin path and its
own namespaces, removed even when the test fails. Needs root (CI runs it as root)."""
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid

import pytest

from client import HTTPClient
from env import BUILD, SCALE

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SLUICECTL = os.path.join(BUILD, "sluicectl")
BPF_OBJ = os.path.join(BUILD, "bpf", "xdp_guard.bpf.o")
DROP_WAIT = 1.5 * SCALE  # a connect that is not answered within this is dropped

SERVER = r"""
import socket, sys, threading
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(("::", int(sys.argv[1])))
s.listen(64)
print("ready", flush=True)
def serve(c, peer):
    try:
        c.settimeout(5)
        c.recv(4096)
        body = peer[0].replace("::ffff:", "").encode()
        c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    finally:
        c.close()
while True:
    c, peer = s.accept()
    threading.Thread(target=serve, args=(c, peer), daemon=True).start()
"""

CLIENT = r"""
import json, socket, sys
src, dst, port, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
fam = socket.AF_INET6 if ":" in dst else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM)
s.settimeout(timeout)
s.bind((src, 0))
try:
    s.connect((dst, port))
    s.sendall(b"GET / HTTP/1.0\r\n\r\n")
    data = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    print(json.dumps({"result": "ok", "response": data.decode(errors="replace")}))
except socket.timeout:
    print(json.dumps({"result": "timeout"}))
except OSError as e:
    print(json.dumps({"result": "error", "error": str(e)}))
"""


def sh(*cmd, check=True, timeout=30):
    p = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    if check and p.returncode != 0:
        raise AssertionError("%s -> %d\nstdout: %s\nstderr: %s" %
                             (" ".join(cmd), p.returncode, p.stdout, p.stderr))
    return p


class Ctl:
    """sluicectl with a private pin path, optionally inside a network namespace (entered
    with nsenter --net only: `ip netns exec` would hide the host's bpffs)."""

    def __init__(self, pin, netns=None):
        self.pin = pin
        self.netns = netns

    def __call__(self, *args, timeout=20 * SCALE):
        assert os.path.exists(SLUICECTL), "sluicectl not built: %s" % SLUICECTL
        cmd = [SLUICECTL, "--pin-path", self.pin] + list(args)
        if self.netns:
            cmd = ["nsenter", "--net=/run/netns/" + self.netns] + cmd
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL)
        return p.returncode, p.stdout, p.stderr

    def ok(self, *args, **kw):
        rc, out, err = self(*args, **kw)
        assert rc == 0, "sluicectl %s -> %d, expected 0\nstdout: %s\nstderr: %s" % (
            " ".join(args), rc, out, err)
        return out

    def stats(self):
        out = self.ok("stats", "--json")
        lines = [ln for ln in out.splitlines() if ln.strip()]
        assert len(lines) == 1, "stats --json: expected one JSON line, got %r" % out
        return json.loads(lines[0])


@pytest.fixture
def pin():
    """A private pin path; whatever is pinned there is detached and removed afterwards."""
    path = "/sys/fs/bpf/sluice-test-%d-%s" % (os.getpid(), uuid.uuid4().hex[:6])
    yield path
    if os.path.exists(SLUICECTL):
        subprocess.run([SLUICECTL, "--pin-path", path, "unload"], capture_output=True,
                       timeout=30)
    shutil.rmtree(path, ignore_errors=True)


class Net:
    """Two namespaces joined by a veth: srv (10.99.0.1, fd00:5c::1) and cli (.2 and .3)."""

    SRV4, CLI4_A, CLI4_B = "10.99.0.1", "10.99.0.2", "10.99.0.3"
    SRV6, CLI6_A, CLI6_B = "fd00:5c::1", "fd00:5c::2", "fd00:5c::3"
    PORT = 8080

    def __init__(self):
        tag = uuid.uuid4().hex[:6]
        self.srv, self.cli = "slx-s-" + tag, "slx-c-" + tag
        self.vsrv, self.vcli = "slxs" + tag, "slxc" + tag
        self.server = None
        sh("ip", "netns", "add", self.srv)
        sh("ip", "netns", "add", self.cli)
        sh("ip", "link", "add", self.vsrv, "netns", self.srv, "type", "veth", "peer", "name",
           self.vcli, "netns", self.cli)
        for ns, dev, addrs in ((self.srv, self.vsrv, [self.SRV4, self.SRV6]),
                               (self.cli, self.vcli, [self.CLI4_A, self.CLI4_B,
                                                      self.CLI6_A, self.CLI6_B])):
            for a in addrs:
                if ":" in a:
                    sh("ip", "-n", ns, "addr", "add", a + "/64", "dev", dev, "nodad")
                else:
                    sh("ip", "-n", ns, "addr", "add", a + "/24", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")

    def start_server(self):
        self.server = subprocess.Popen(
            ["ip", "netns", "exec", self.srv, sys.executable, "-u", "-c", SERVER, str(self.PORT)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
            text=True)
        line = self.server.stdout.readline()
        assert line.strip() == "ready", "test server did not start: %r %s" % (
            line, self.server.stderr.read() if self.server.poll() is not None else "")

    def connect(self, src, timeout=DROP_WAIT):
        """Connect from src (an address of cli) to the server: ok/timeout/error."""
        dst = self.SRV6 if ":" in src else self.SRV4
        p = sh("ip", "netns", "exec", self.cli, sys.executable, "-c", CLIENT, src, dst,
               str(self.PORT), str(timeout), timeout=timeout + 20)
        return json.loads(p.stdout)

    def served(self, src):
        r = self.connect(src, timeout=5 * SCALE)
        assert r["result"] == "ok", "connect from %s: expected to be served, got %r" % (src, r)
        assert r["response"].startswith("HTTP/1.0 200"), r
        assert r["response"].endswith(src), "server saw another source: %r" % r
        return r

    def dropped(self, src):
        r = self.connect(src)
        assert r["result"] == "timeout", (
            "connect from denied %s: expected no answer (SYN dropped at XDP), got %r" % (src, r))

    def xdp_prog_id(self, dev=None):
        """id of the XDP program on dev (server side veth by default), 0 if none."""
        p = sh("ip", "-n", self.srv, "-d", "-j", "link", "show", "dev", dev or self.vsrv)
        info = json.loads(p.stdout)[0]
        xdp = info.get("xdp") or {}
        if "prog" in xdp:
            return xdp["prog"].get("id", 0)
        for a in xdp.get("attached", []):
            return a.get("prog", {}).get("id", 0)
        return 0

    def close(self):
        if self.server is not None:
            self.server.kill()
            self.server.wait(10)
        for ns in (self.srv, self.cli):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


@pytest.fixture
def net():
    n = Net()
    try:
        yield n
    finally:
        n.close()


# ---------------------------------------------------------------- the guard on a veth

def test_denied_source_dropped_other_served(pin, net):
    ctl = Ctl(pin, net.srv)
    out = ctl.ok("load", "--dev", net.vsrv, "--mode", "native")
    assert "attached to %s in native mode" % net.vsrv in out, out
    assert net.xdp_prog_id() != 0, "no XDP program on %s after load" % net.vsrv
    net.start_server()
    net.served(net.CLI4_A)
    net.served(net.CLI4_B)
    before = ctl.stats()["xdp"]
    assert before["drop_deny_v4"] == 0, before

    out = ctl.ok("deny", "add", net.CLI4_B + "/32")
    assert "denied %s/32" % net.CLI4_B in out, out
    net.dropped(net.CLI4_B)
    net.served(net.CLI4_A)

    xdp = ctl.stats()["xdp"]
    assert xdp["drop_deny_v4"] >= 1, "xdp_stats: expected the denied SYNs counted, got %r" % xdp
    assert xdp["packets"] > before["packets"] and xdp["tcp_syn"] > before["tcp_syn"], xdp
    listing = ctl.ok("deny", "list")
    m = re.search(r"^%s/32\s+(\d+)$" % re.escape(net.CLI4_B), listing, re.M)
    assert m and int(m.group(1)) >= 1, "deny list: expected hits on %s/32: %r" % (
        net.CLI4_B, listing)

    # bpftool reads the same pinned map, with per-CPU values
    p = sh("bpftool", "-j", "map", "dump", "pinned", pin + "/xdp_stats")
    dump = {e["formatted"]["key"]: sum(v["value"] for v in e["formatted"]["values"])
            for e in json.loads(p.stdout)}
    assert dump[3] == ctl.stats()["xdp"]["drop_deny_v4"], dump  # SL_XDP_DROP_DENY_V4

    out = ctl.ok("deny", "del", net.CLI4_B + "/32")
    assert "removed" in out, out
    net.served(net.CLI4_B)


def test_denied_ipv6_source_dropped_other_served(pin, net):
    ctl = Ctl(pin, net.srv)
    ctl.ok("load", "--dev", net.vsrv, "--mode", "native")
    net.start_server()
    # served first: neighbour discovery is settled before a source is denied
    net.served(net.CLI6_A)
    net.served(net.CLI6_B)
    out = ctl.ok("deny", "add", net.CLI6_B)
    assert "denied %s/128" % net.CLI6_B in out, out
    net.dropped(net.CLI6_B)
    net.served(net.CLI6_A)
    net.served(net.CLI4_B)  # an IPv6 entry does not touch IPv4
    xdp = ctl.stats()["xdp"]
    assert xdp["drop_deny_v6"] >= 1 and xdp["drop_deny_v4"] == 0, xdp


def test_syn_guard_drops_a_connection_burst(pin, net):
    """1 SYN/s, burst 3 per /24: of ten quick connections from one /24 at most a few get
    their first SYN through; the over-rate ones are counted."""
    ctl = Ctl(pin, net.srv)
    out = ctl.ok("load", "--dev", net.vsrv, "--syn-rate", "1", "--syn-burst", "3")
    assert "syn guard: 1 SYN/s" in out and "burst 3" in out, out
    net.start_server()
    # 0.5 s, unscaled: shorter than the 1 s SYN retransmit, which the refilled bucket
    # (1/s) would let through
    results = [net.connect(net.CLI4_A if i % 2 else net.CLI4_B, timeout=0.5)["result"]
               for i in range(10)]
    xdp = ctl.stats()["xdp"]
    assert xdp["drop_syn_rate"] >= 1, "expected SYN-rate drops, got %r (results %r)" % (
        xdp, results)
    assert "timeout" in results, results
    out = ctl.ok("syn-guard", "off")
    assert "syn guard: off" in out, out
    net.served(net.CLI4_A)


def test_existing_xdp_program_left_alone_without_force(pin, net):
    ctl = Ctl(pin, net.srv)
    foreign = pin + "-foreign"
    try:
        sh("bpftool", "prog", "load", BPF_OBJ, foreign)
        sh("nsenter", "--net=/run/netns/" + net.srv, "bpftool", "net", "attach", "xdp",
           "pinned", foreign, "dev", net.vsrv)
        theirs = net.xdp_prog_id()
        assert theirs
        rc, out, err = ctl("load", "--dev", net.vsrv)
        assert rc == 1, "load over another XDP program: expected exit 1, got %d (%s%s)" % (
            rc, out, err)
        assert "already has an XDP program" in err and "left alone" in err and \
            "--force" in err and str(theirs) in err, err
        assert net.xdp_prog_id() == theirs, "the other program was replaced without --force"

        out = ctl.ok("load", "--dev", net.vsrv, "--force")
        assert "replacing the previous program" in out, out
        ours = net.xdp_prog_id()
        assert ours and ours != theirs, (ours, theirs)

        # our own guard is not reloaded silently either
        rc, out, err = ctl("load", "--dev", net.vsrv)
        assert rc == 1 and "already runs the sluice XDP guard" in err, (rc, out, err)
        ctl.ok("load", "--dev", net.vsrv, "--force")
        assert net.xdp_prog_id() not in (0, theirs)
    finally:
        if os.path.exists(foreign):
            os.unlink(foreign)


def test_auto_mode_falls_back_to_generic_on_lo(pin, net):
    ctl = Ctl(pin, net.srv)
    out = ctl.ok("load", "--dev", "lo")
    assert "native XDP unavailable on lo" in out and "generic mode" in out, out
    status = ctl.ok("status")
    assert re.search(r"^\s+lo\s+generic\s+prog \d+", status, re.M), status


def test_load_survives_sluicectl_exit_and_unload_detaches(pin, net):
    ctl = Ctl(pin, net.srv)
    ctl.ok("load", "--dev", net.vsrv, "--mode", "generic")
    assert net.xdp_prog_id(), "the guard did not stay attached after sluicectl exited"
    for name in ("xdp_guard_prog", "xdp_link_" + net.vsrv, "xdp_stats", "deny_v4", "deny_v6",
                 "syn_guard", "xdp_config"):
        assert os.path.exists(os.path.join(pin, name)), "%s/%s not pinned" % (pin, name)
    status = ctl.ok("status")
    assert re.search(r"^\s+%s\s+generic\s+prog \d+\s+link \d+" % net.vsrv, status, re.M), status
    # from the host's namespace the ifindex means another device: no mode is made up
    status = Ctl(pin).ok("status")
    assert re.search(r"^\s+%s\s+-\s+prog \d+\s+link \d+\s+\(device in another network "
                     r"namespace" % net.vsrv, status, re.M), status

    rc, out, err = ctl("unload", "--dev", "nosuchdev0")
    assert rc == 1 and "no sluice XDP guard pinned for nosuchdev0" in err, (rc, out, err)
    out = ctl.ok("unload", "--dev", net.vsrv)
    assert "detached from %s" % net.vsrv in out, out
    assert net.xdp_prog_id() == 0, "XDP program still attached after unload"
    assert not os.path.exists(os.path.join(pin, "xdp_stats")), "maps still pinned after unload"
    assert "not loaded" in ctl.ok("status")
    assert "nothing to unload" in ctl.ok("unload")


def test_ip_netns_exec_refused_with_advice(pin, net):
    """ip netns exec hides the host's bpffs; pins made there would vanish at exit."""
    p = sh("ip", "netns", "exec", net.srv, SLUICECTL, "--pin-path", pin, "load", "--dev",
           net.vsrv, check=False)
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    assert "nsenter --net=" in p.stderr, p.stderr
    assert net.xdp_prog_id() == 0


# ---------------------------------------------------------------- CLI

CMDS = ["load", "unload", "status", "stats", "workers", "deny", "syn-guard", "reload",
        "check", "version"]


@pytest.mark.parametrize("cmd", CMDS)
def test_every_command_has_help(cmd):
    p = sh(SLUICECTL, cmd, "--help")
    assert p.stdout.startswith("usage: sluicectl %s" % cmd), p.stdout


@pytest.mark.parametrize("args", [
    [], ["nosuch"], ["--pin-path"], ["--pin-path", "relative/dir", "status"],
    ["load"], ["load", "--dev", "lo", "--mode", "turbo"], ["load", "--dev", "lo", "--bogus"],
    ["load", "--dev", "lo", "--syn-burst", "5"], ["unload", "extra"], ["status", "extra"],
    ["stats", "--watch", "0"], ["stats", "--count", "0"], ["stats", "--watch"],
    ["deny"], ["deny", "add"], ["deny", "add", "10.0.0.0/33"], ["deny", "add", "nope"],
    ["deny", "flush"], ["deny", "list", "10.0.0.1"], ["syn-guard", "set", "0"],
    ["syn-guard", "set", "10", "0"], ["syn-guard", "sometimes"], ["workers", "x"],
], ids=lambda a: " ".join(a) or "no-args")
def test_usage_errors_exit_2(pin, args):
    p = sh(SLUICECTL, "--pin-path", pin, *args, check=False) if args[:1] != ["--pin-path"] \
        else sh(SLUICECTL, *args, check=False)
    assert p.returncode == 2, "sluicectl %s -> %d, expected 2 (stderr %r)" % (
        " ".join(args), p.returncode, p.stderr)
    assert "usage" in p.stderr.lower() or "sluicectl:" in p.stderr, p.stderr


def test_nothing_pinned(pin):
    ctl = Ctl(pin)
    out = ctl.ok("status")
    assert re.search(r"^xdp guard\s+not loaded", out, re.M), out
    assert re.search(r"^steering\s+off \(no pinned maps under %s\)" % re.escape(pin), out,
                     re.M), out
    assert re.search(r"^daemon\s+", out, re.M), out
    s = ctl.stats()
    assert s["workers"] == [] and s["steer"] == {} and s["xdp"] == {}, s
    assert "no workers map pinned" in ctl.ok("workers")
    rc, out, err = ctl("deny", "list")
    assert rc == 1 and "not loaded" in err, (rc, err)
    rc, out, err = ctl("syn-guard", "set", "100")
    assert rc == 1 and "not loaded" in err, (rc, err)
    assert not os.path.exists(pin), "read-only commands created the pin dir"


# ---------------------------------------------------------------- with a real sluiced

def test_status_stats_workers_with_daemon(pin, sluice, backend):
    b = backend("a")
    sl = sluice.proxy(b, workers=2, bpf={"pin_path": pin})
    ctl = Ctl(pin)
    for _ in range(10):
        with HTTPClient(sl.port) as c:
            assert c.request("GET", "/x").status == 200

    status = ctl.ok("status")
    assert re.search(r"^daemon\s+running: pid %d \(2 workers\)" % sl.pid, status, re.M), status
    assert re.search(r"^steering\s+on \(2 of 2 workers ready\)", status, re.M), status

    workers = ctl.ok("workers")
    rows = [ln.split() for ln in workers.splitlines() if re.match(r"^\d+\s", ln)]
    assert [r[0] for r in rows] == ["0", "1"] and all(r[2] == "ready" for r in rows), workers

    s = ctl.stats()
    assert s["daemon"] == {"running": True, "pid": sl.pid}, s["daemon"]
    assert len(s["workers"]) == 2, s
    assert sum(w["requests"] for w in s["workers"]) >= 10, s["workers"]
    assert sum(w["responses"]["2xx"] for w in s["workers"]) >= 10, s["workers"]
    # connections made while the daemon is still attaching the program get no reason
    assert set(s["steer"]) >= {"own_cpu", "kernel_hash", "migrated"} and \
        sum(s["steer"].values()) >= 1, "steer_stats: expected reasons counted: %r" % s["steer"]
    assert s["xdp"] == {}, "no XDP guard loaded, yet xdp counters: %r" % s["xdp"]
    human = ctl.ok("stats")
    assert re.search(r"^WORKER\s+CPU\s+STATE\s+CONNS\s+REQ/S", human, re.M), human
    assert re.search(r"^total\s", human, re.M) and "steering: own_cpu" in human, human

    # requests/s from deltas while load runs
    stop = threading.Event()

    def load():
        while not stop.is_set():
            with HTTPClient(sl.port) as c:
                c.request("GET", "/load")

    t = threading.Thread(target=load, daemon=True)
    t.start()
    try:
        out = ctl.ok("stats", "--watch", "0.3", "--count", "3", "--json")
    finally:
        stop.set()
        t.join(10)
    rounds = [json.loads(ln) for ln in out.splitlines() if ln.strip()]
    assert len(rounds) == 3, out
    rps = [sum(w["requests_per_s"] for w in r["workers"]) for r in rounds]
    assert all(x > 0 for x in rps), "requests/s under load: expected > 0 each round, got %r" % rps
    assert all(0.2 <= r["interval_s"] <= 2 for r in rounds), [r["interval_s"] for r in rounds]

    for p in sl.stop():
        pytest.fail(p)
    status = ctl.ok("status")
    assert re.search(r"^steering\s+off \(daemon not running", status, re.M), status
    assert not re.search(r"^daemon\s+running: pid %d " % sl.pid, status, re.M), status
    assert len(ctl.stats()["workers"]) == 2, "the last counters stay readable after exit"


# ---------------------------------------------------------------- --json on read commands

def worker_stats_fields():
    """Field names of struct sl_worker_stats, read from the header BPF and sluicectl share."""
    text = open(os.path.join(ROOT, "common", "sluice_common.h")).read()
    body = text[text.index("struct sl_worker_stats {"):]
    body = body[:body.index("}")]
    names = []
    for ln in body.splitlines()[1:]:
        ln = ln.split("/*")[0].strip()
        if ln.startswith("__u64"):
            names += [n.strip() for n in ln[len("__u64"):].rstrip(";").split(",")]
    return names


def one_json(out):
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert len(lines) == 1, "expected one JSON document, got %r" % out
    return json.loads(lines[0])


def test_json_status_workers_with_daemon(pin, sluice, backend):
    sl = sluice.proxy(backend("a"), workers=2, bpf={"pin_path": pin})
    ctl = Ctl(pin)
    for _ in range(5):
        with HTTPClient(sl.port) as c:
            assert c.request("GET", "/x").status == 200
    st = one_json(ctl.ok("status", "--json"))
    assert st["pin_path"] == pin and st["problem"] is None
    assert st["daemon"]["running"] is True and st["daemon"]["pid"] == sl.pid, st
    assert st["daemon"]["workers"] == 2
    s = st["steering"]
    assert s["on"] is True and s["workers_ready"] == 2 and s["held_by_daemon"] is True, s
    assert isinstance(s["prog_id"], int) and s["prog_id"] > 0
    assert st["xdp"]["loaded"] is False and st["xdp"]["attachments"] == []

    fields = worker_stats_fields()
    assert len(fields) > 30 and "tls_fail_protocol" in fields  # the parse found them
    ws = one_json(ctl.ok("workers", "--json"))
    assert [w["worker"] for w in ws["workers"]] == [0, 1]
    for w in ws["workers"]:
        assert w["state"] == "ready" and isinstance(w["heartbeat_age_ms"], int), w
        assert sorted(w["counters"]) == sorted(fields), \
            "workers --json misses %s" % (set(fields) - set(w["counters"]))
    assert sum(w["counters"]["requests"] for w in ws["workers"]) >= 5
    for w in one_json(ctl.ok("stats", "--json"))["workers"]:
        assert sorted(w["counters"]) == sorted(fields)
    # the text output is unchanged without the flag
    assert not ctl.ok("status").lstrip().startswith("{")
    for p in sl.stop():
        pytest.fail(p)
    st = one_json(ctl.ok("status", "--json"))
    assert st["daemon"]["running"] is False and st["steering"]["on"] is False, st


def test_json_nothing_pinned(pin):
    ctl = Ctl(pin)
    rc, out, err = ctl("status", "--json")
    assert rc == 0, err
    st = one_json(out)
    assert st["daemon"]["running"] is False and st["steering"]["on"] is False
    assert "no pinned maps" in st["steering"]["summary"]
    ws = one_json(ctl.ok("workers", "--json"))
    assert ws["workers"] == []
    rc, out, err = ctl("deny", "list", "--json")
    assert rc == 1 and out == "" and "not loaded" in err, (rc, out, err)
    assert not os.path.exists(pin)


@pytest.mark.parametrize("args", [("deny", "add", "10.0.0.1", "--json"),
                                  ("status", "--json", "extra"), ("workers", "--json", "x")])
def test_json_usage_errors(pin, args):
    rc, out, err = Ctl(pin)(*args)
    assert rc == 2, (args, rc, out, err)


def test_json_deny_list_and_syn_guard(pin, net):
    ctl = Ctl(pin, net.srv)
    ctl.ok("load", "--dev", net.vsrv, "--mode", "generic", "--syn-rate", "50")
    ctl.ok("deny", "add", "10.99.0.3", "fd00:5c::3/128", "192.0.2.0/24")
    d = one_json(ctl.ok("deny", "list", "--json"))
    assert sorted(x["prefix"] for x in d["deny"]) == ["10.99.0.3/32", "192.0.2.0/24",
                                                      "fd00:5c::3/128"], d
    assert all(x["dropped"] == 0 for x in d["deny"])
    g = one_json(ctl.ok("syn-guard", "--json"))
    assert g == {"on": True, "rate": 50, "burst": 50, "tracked_prefixes": 0}, g
    g = one_json(ctl.ok("syn-guard", "off", "--json"))
    assert g["on"] is False
    st = one_json(ctl.ok("status", "--json"))
    x = st["xdp"]
    assert x["loaded"] is True and x["deny_v4"] == 2 and x["deny_v6"] == 1, x
    (a,) = x["attachments"]
    assert a["dev"] == net.vsrv and a["attached"] is True and a["prog_id"] > 0, a
