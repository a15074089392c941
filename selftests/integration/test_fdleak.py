"""No file descriptor leaks: the daemon's fd count is back where it was after 10,000
short client connections, and after a mix of error paths."""
import os

from backends import dead_address
from client import HTTPClient, build_request, connect
from daemon import wait_for
from env import SCALE

SLACK = 5


def settle(sl, before):
    """fd count once it is back within slack (closes can lag a little)."""
    return wait_for(lambda: sl.fd_count() <= before + SLACK and sl.fd_count(), 5 * SCALE) \
        or sl.fd_count()


def test_no_fd_leak_after_10k_connections(sluice, backend):
    b = backend("a")
    sl = sluice.proxy(b, workers=1)
    req = build_request("GET", "/", headers=[("Connection", "close")])
    for _ in range(50):  # warm up: upstream pool, buffers, log files
        with HTTPClient(sl.port) as c:
            c.send(req)
            assert c.read_response().status == 200
    before = sl.fd_count()
    for i in range(10000):
        s = connect(sl.port)
        try:
            s.sendall(req)
            data = b""
            while True:  # sluice closes first (Connection: close): no TIME_WAIT here
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            assert data.startswith(b"HTTP/1.1 200 "), (i, data[:200])
        finally:
            s.close()
    after = settle(sl, before)
    assert after <= before + SLACK, "fd count %d -> %d after 10,000 connections:\n%s" % (
        before, after, fd_listing(sl))
    assert b.accepted < 100, "upstream keep-alive not used: %d connections" % b.accepted


def test_no_fd_leak_on_error_paths(sluice, backend):
    b = backend("a")
    dead = dead_address()
    sl = sluice.start(
        [{"path": "/dead", "upstream": "dead"},
         {"path": "/r", "respond": {"status": 200, "body": "r"}},
         {"host": "sluice.test", "upstream": "ok"}],
        {"dead": {"servers": [{"address": dead}], "retries": 0},
         "ok": {"servers": [{"address": b.address}]}}, workers=1)
    for _ in range(20):
        with HTTPClient(sl.port) as c:
            c.request("GET", "/ok")
    before = sl.fd_count()
    shapes = [
        b"GARBAGE\r\n\r\n",                                   # 400
        build_request("GET", "/", host="nowhere.test"),       # 404
        build_request("GET", "/dead"),                        # 502
        build_request("GET", "/r"),                           # respond
        b"GET /ok HTTP/1.1\r\nHost: x",                       # client gives up mid-head
        build_request("POST", "/ok", headers=[("Content-Length", "100")]) + b"abc",  # mid-body
        build_request("GET", "/_/die?n=10000&sent=10"),       # upstream dies
        b"",                                                  # connect and leave
    ]
    for i in range(100):
        for raw in shapes:
            s = connect(sl.port)
            try:
                if raw:
                    s.sendall(raw)
                if raw.endswith(b"\r\n\r\n"):
                    s.settimeout(5 * SCALE)
                    try:
                        s.recv(65536)
                    except OSError:
                        pass
            finally:
                s.close()
    with HTTPClient(sl.port) as c:
        assert c.request("GET", "/ok").status == 200
    after = settle(sl, before)
    assert after <= before + SLACK, "fd count %d -> %d after error paths:\n%s" % (
        before, after, fd_listing(sl))


def fd_listing(sl):
    out = []
    d = "/proc/%d/fd" % sl.pid
    for fd in sorted(os.listdir(d), key=int):
        try:
            out.append("%s -> %s" % (fd, os.readlink(os.path.join(d, fd))))
        except OSError:
            pass
    return "\n".join(out)
