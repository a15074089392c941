"""SIGTERM drains in-flight requests and exits 0; SIGINT exits at once with 0."""
import signal
import socket
import time

from client import ConnectionClosed, HTTPClient, build_request
from daemon import port_open, wait_for
from env import SCALE


def new_connection_served(port):
    """True if a fresh connection still gets an HTTP response."""
    try:
        c = HTTPClient(port, timeout=2)
    except OSError:
        return False
    try:
        c.send(build_request("GET", "/probe"), ignore_errors=True)
        c.read_response()
        return True
    except (ConnectionClosed, AssertionError, OSError):
        return False
    finally:
        c.close()


def test_sigterm_lets_inflight_request_finish(sluice, backend):
    b = backend("a")
    sl = sluice.proxy(b, shutdown={"grace": "20s"})
    c = sl.client(timeout=20)
    c.send(build_request("GET", "/_/hold?s=15"))
    assert b.wait_requests(1), "request never reached the backend"
    sl.send_signal(signal.SIGTERM)
    # while the request is held, new connections are no longer served
    assert wait_for(lambda: not new_connection_served(sl.port), 5 * SCALE), \
        "sluice still serves new connections after SIGTERM"
    assert sl.running(), "sluiced exited with a request in flight"
    b.release.set()
    r = c.read_response()
    assert r.status == 200 and r.body == b"released\n"
    assert c.wait_closed(), "connection kept open after the drained request"
    assert sl.wait_exit(10 * SCALE) == 0, "exit status %r" % sl.returncode
    assert not port_open(sl.port), "listener still accepting after exit"
    assert [q.target for q in b.requests].count("/_/hold?s=15") == 1


def test_sigterm_with_one_second_backend_delay(sluice, backend):
    b = backend("a")
    sl = sluice.proxy(b)
    c = sl.client(timeout=10)
    c.send(build_request("GET", "/_/slow?ms=1000"))
    assert b.wait_requests(1)
    sl.send_signal(signal.SIGTERM)
    r = c.read_response()
    assert r.status == 200
    assert sl.wait_exit(10 * SCALE) == 0
    s = socket.socket()
    s.settimeout(2)
    try:
        refused = s.connect_ex(("127.0.0.1", sl.port)) != 0
    finally:
        s.close()
    assert refused, "connection accepted after shutdown"


def test_sigterm_does_not_wait_for_idle_keepalive_connections(sluice, backend):
    b = backend("a")
    sl = sluice.proxy(b, shutdown={"grace": "30s"})
    c = sl.client()
    assert c.request("GET", "/").status == 200  # now idle, kept alive
    sl.send_signal(signal.SIGTERM)
    assert sl.wait_exit(10 * SCALE) == 0, "idle keep-alive connection held up shutdown"
    assert c.wait_closed()


def test_sigterm_grace_expires(sluice, backend):
    b = backend("a")
    sl = sluice.proxy(b, shutdown={"grace": "1s"})
    c = sl.client(timeout=20)
    c.send(build_request("GET", "/_/hold?s=20"))
    assert b.wait_requests(1)
    t0 = time.monotonic()
    sl.send_signal(signal.SIGTERM)
    rc = sl.wait_exit(10 * SCALE)
    assert rc is not None, "sluiced still running long after shutdown.grace"
    assert rc == 0
    assert time.monotonic() - t0 < 10 * SCALE
    assert c.wait_closed(5), "client connection survived the daemon"
    b.release.set()


def test_sigint_exits_fast_with_0(sluice, backend):
    b = backend("a")
    sl = sluice.proxy(b, shutdown={"grace": "30s"})
    c = sl.client(timeout=20)
    c.send(build_request("GET", "/_/hold?s=20"))
    assert b.wait_requests(1)
    sl.send_signal(signal.SIGINT)
    assert sl.wait_exit(5 * SCALE) == 0, "SIGINT: exit status %r" % sl.returncode
    assert c.wait_closed(5)
    b.release.set()


def test_sigterm_with_many_idle_and_busy_connections(sluice, backend):
    b = backend("a")
    sl = sluice.proxy(b, workers=2, shutdown={"grace": "20s"})
    idle = [sl.client() for _ in range(20)]
    for c in idle[:10]:
        assert c.request("GET", "/").status == 200
    busy = [sl.client(timeout=20) for _ in range(4)]
    for c in busy:
        c.send(build_request("GET", "/_/hold?s=15"))
    assert b.wait_requests(14)
    sl.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    b.release.set()
    for c in busy:
        assert c.read_response().status == 200
    assert sl.wait_exit(10 * SCALE) == 0
