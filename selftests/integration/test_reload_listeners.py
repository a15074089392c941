"""Reloads that add and remove listeners: an added one is opened by every worker and joins
steering, a removed one stops accepting while its in-flight requests finish, and a
listener that cannot be opened (a port another process holds) rejects the whole reload:
the old config keeps running, every listener of it included."""
import os
import socket
import subprocess
import threading
import time

from backends import free_port
from client import HTTPClient
from daemon import wait_for
from env import SCALE


def listening_sockets(port):
    """Inodes of the sockets in LISTEN state on port (IPv4 table)."""
    out = set()
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            if parts[3] == "0A" and int(parts[1].split(":")[1], 16) == port:
                out.add(parts[9])
    return out


def served(port, target="/"):
    try:
        with HTTPClient(port, timeout=3) as c:
            r = c.request("GET", target, headers=[("Connection", "close")])
            return r.status, r.body
    except (OSError, AssertionError):
        return None


def refused(port):
    s = socket.socket()
    s.settimeout(2)
    try:
        s.connect(("127.0.0.1", port))
        return False
    except ConnectionRefusedError:
        return True
    finally:
        s.close()


def two(port_a, body_a, port_b=None, body_b=None, workers=2, **kw):
    lst = [{"address": "127.0.0.1:%d" % port_a,
            "routes": [{"respond": {"status": 200, "body": body_a}}]}]
    if port_b:
        lst.append({"address": "127.0.0.1:%d" % port_b,
                    "routes": [{"respond": {"status": 200, "body": body_b}}]})
    return lst


def config(sluice, sl, listeners, workers=2, **kw):
    cfg = sluice.config([{"respond": {"status": 200}}], sl=sl, workers=workers, **kw)
    cfg["listeners"] = listeners
    return cfg


def reload_ok(sl, n):
    """Wait for the n-th "config reloaded" line."""
    assert wait_for(lambda: sl.stderr().count('msg="config reloaded"') >= n, 10 * SCALE), \
        sl.stderr()[-3000:]


def test_port_held_by_another_process_rejects_the_reload(sluice):
    """Hostile first: the new port is taken by a process that is not sluice (with
    SO_REUSEPORT, so a plain reuseport bind would join its group and share its
    traffic). The reload is refused naming the holder; the old listener set runs on."""
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind(("127.0.0.1", 0))
    holder.listen(8)
    taken = holder.getsockname()[1]
    try:
        pa = free_port()
        sl = sluice.new()
        sl.start(config(sluice, sl, two(pa, "a\n")))
        keep = sl.client()
        assert keep.request("GET", "/").body == b"a\n"
        # change the port of the only listener to the taken one
        sl.reload(config(sluice, sl, two(taken, "moved\n")))
        line = sl.wait_log(lambda ln: "reload rejected" in ln)
        assert line and "127.0.0.1:%d" % taken in line and \
            "already served by pid %d" % os.getpid() in line, sl.stderr()[-2000:]
        assert served(pa) == (200, b"a\n")
        assert keep.request("GET", "/").body == b"a\n"
        # nothing of ours joined the holder's group
        assert len(listening_sockets(taken)) == 1, listening_sockets(taken)
        # an added listener beside a taken one: the added one is not opened either
        pb = free_port()
        sl.reload(config(sluice, sl, two(pa, "a2\n", pb, "b\n") +
                         [{"address": "127.0.0.1:%d" % taken,
                           "routes": [{"respond": {"status": 200}}]}]))
        assert wait_for(lambda: sl.stderr().count("reload rejected") >= 2, 5 * SCALE)
        assert refused(pb), "a listener of a rejected reload was left open"
        assert not listening_sockets(pb)
        assert served(pa) == (200, b"a\n"), "routes of a rejected reload were applied"
    finally:
        holder.close()


def test_reload_rejected_through_admin_names_the_port(sluice, tmp_path):
    from test_admin import admin, sock_path
    path = sock_path(tmp_path)
    other = sluice.start([{"respond": {"status": 200, "body": "other\n"}}])
    pa = free_port()
    sl = sluice.new()
    sl.start(config(sluice, sl, two(pa, "a\n"), admin={"socket": path}))
    assert wait_for(lambda: os.path.exists(path), 5 * SCALE)
    sl.write_config(config(sluice, sl, two(pa, "a\n", other.port, "b\n"),
                           admin={"socket": path}))
    r = admin(path, "POST", "/reload")
    assert r.status == 400, r
    assert "127.0.0.1:%d" % other.port in r.json()["error"], r.body
    assert "sluiced pid %d" % other.pid in r.json()["error"], r.body
    assert served(other.port) == (200, b"other\n")
    assert served(pa) == (200, b"a\n")


def test_added_listener_on_every_worker_and_old_connections_kept(sluice):
    pa, pb = free_port(), free_port()
    sl = sluice.new()
    sl.start(config(sluice, sl, two(pa, "a\n")))
    assert sl.wait_log(lambda ln: 'msg="steering on"' in ln), sl.stderr()
    keep = sl.client()
    assert keep.request("GET", "/").body == b"a\n"
    assert refused(pb)
    sl.reload(config(sluice, sl, two(pa, "a\n", pb, "b\n")))
    reload_ok(sl, 1)
    assert sl.wait_log(lambda ln: 'msg="listener added"' in ln and str(pb) in ln)
    assert wait_for(lambda: served(pb) == (200, b"b\n"), 5 * SCALE)
    # one socket per worker, the group steered like the first
    assert len(listening_sockets(pb)) == 2, listening_sockets(pb)
    for _ in range(20):
        assert served(pb) == (200, b"b\n")
        assert served(pa) == (200, b"a\n")
    assert keep.request("GET", "/").body == b"a\n"
    ctl = os.path.join(os.path.dirname(sl.binary), "sluicectl")
    st = subprocess.run([ctl, "--pin-path", sl.pin_path, "status"], capture_output=True,
                        text=True, timeout=10 * SCALE)
    assert "on (2 of 2 workers ready" in st.stdout, st.stdout


def test_reordered_listeners_keep_their_routes(sluice):
    """Listeners are matched by address, not position: swapping their order in the file
    must not swap their routes."""
    pa, pb = free_port(), free_port()
    sl = sluice.new()
    sl.start(config(sluice, sl, two(pa, "a\n", pb, "b\n")))
    sl.reload(config(sluice, sl, two(pb, "b2\n", pa, "a2\n")))
    reload_ok(sl, 1)
    assert wait_for(lambda: served(pa) == (200, b"a2\n"), 5 * SCALE), served(pa)
    assert served(pb) == (200, b"b2\n")


def test_removed_listener_finishes_in_flight_and_closes_idle(sluice, backend):
    b = backend("slow")
    pa, pb = free_port(), free_port()
    sl = sluice.new()
    ups = {"u": {"servers": [{"address": b.address}]}}

    def cfg(with_b):
        lst = [{"address": "127.0.0.1:%d" % pa, "routes": [{"upstream": "u"}]}]
        if with_b:
            lst.append({"address": "127.0.0.1:%d" % pb, "routes": [{"upstream": "u"}]})
        return config(sluice, sl, lst, upstreams=ups)
    sl.start(cfg(True))
    idle = HTTPClient(pb)
    assert idle.request("GET", "/").status == 200
    busy = HTTPClient(pb, timeout=10 * SCALE)
    result = {}

    def slow():
        result["r"] = busy.request("GET", "/_/slow?ms=1500")
    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.4)  # the slow request is with the backend
    sl.reload(cfg(False))
    reload_ok(sl, 1)
    assert sl.wait_log(lambda ln: 'msg="listener removed"' in ln and str(pb) in ln)
    assert wait_for(lambda: refused(pb), 5 * SCALE), "removed listener still accepts"
    assert not listening_sockets(pb)
    t.join(10 * SCALE)
    r = result.get("r")
    assert r is not None and r.status == 200, r
    assert "close" in r.connection_tokens(), r.headers
    assert idle.wait_closed(), "idle keep-alive connection of a removed listener left open"
    assert served(pa)[0] == 200
    # and it can come back in a later reload
    sl.reload(cfg(True))
    reload_ok(sl, 2)
    assert wait_for(lambda: served(pb) is not None and served(pb)[0] == 200, 5 * SCALE), \
        sl.stderr()[-2000:]
    assert len(listening_sockets(pb)) == 2


def test_add_and_remove_under_load_no_failure_on_kept_listener(sluice):
    pa = free_port()
    extra = [free_port() for _ in range(3)]
    sl = sluice.new()
    sl.start(config(sluice, sl, two(pa, "a\n")))
    stop = threading.Event()
    counts = {"ok": 0, "bad": []}

    def load():
        c = HTTPClient(pa)
        while not stop.is_set():
            try:
                r = c.request("GET", "/")
                if r.status == 200 and r.body == b"a\n":
                    counts["ok"] += 1
                else:
                    counts["bad"].append(r.status)
                if "close" in r.connection_tokens():
                    c.close()
                    c = HTTPClient(pa)
            except Exception as e:  # noqa: BLE001 - every failure is counted
                counts["bad"].append(repr(e))
                c = HTTPClient(pa)
        c.close()

    def fresh():
        while not stop.is_set():
            s = served(pa)
            if s == (200, b"a\n"):
                counts["ok"] += 1
            else:
                counts["bad"].append(s)
    threads = [threading.Thread(target=load), threading.Thread(target=fresh)]
    for t in threads:
        t.start()
    try:
        for i in range(6):
            lst = two(pa, "a\n")
            for p in extra[:(i % 3) + 1] if i % 2 == 0 else extra[:1]:
                lst.append({"address": "127.0.0.1:%d" % p,
                            "routes": [{"respond": {"status": 200, "body": "x\n"}}]})
            sl.reload(config(sluice, sl, lst))
            reload_ok(sl, i + 1)
            time.sleep(0.2)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert counts["bad"] == [], counts["bad"][:10]
    assert counts["ok"] > 50, counts
    assert "reload rejected" not in sl.stderr()
