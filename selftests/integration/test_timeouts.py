"""Timeouts, configured short: client header (408), client keep-alive, client body,
upstream response header (504, in test_limits_errors), upstream idle, upstream connect."""
import select
import socket
import time

from checks import assert_sluice_error
from client import ConnectionClosed, build_request
from env import SCALE

SLACK = 6 * SCALE  # generous bound on "about 1 s"


def test_partial_head_gets_408(sluice, backend):
    b = backend("a")
    sl = sluice.proxy(b, timeouts={"client_header": "1s"})
    c = sl.client(timeout=SLACK)
    c.send(b"GET / HTTP/1.1\r\nHost: sluice.test\r\n")
    assert_sluice_error(c.read_response(), 408, c)
    assert b.saw_nothing()


def test_slowloris_head_gets_408(sluice, backend):
    """The whole head must arrive within client_header, however steadily it trickles."""
    b = backend("a")
    sl = sluice.proxy(b, timeouts={"client_header": "1s"})
    c = sl.client(timeout=SLACK)
    data = b"GET / HTTP/1.1\r\nHost: sluice.test\r\n" + b"".join(
        b"X-Drip-%d: %s\r\n" % (i, b"d" * 20) for i in range(200))
    for i in range(min(len(data), 20 * SLACK)):  # one byte every 50 ms, bounded
        if select.select([c.sock], [], [], 0.05)[0]:
            break
        c.send(data[i:i + 1], ignore_errors=True)
    else:
        raise AssertionError("no answer while the head trickled in for %d s" % SLACK)
    assert_sluice_error(c.read_response(), 408, c)
    assert b.saw_nothing()


def test_silent_connection_is_closed(sluice, backend):
    b = backend("a")
    sl = sluice.proxy(b, timeouts={"client_header": "1s"})
    c = sl.client(timeout=SLACK)
    assert c.wait_closed(SLACK), "a connection that sent nothing was never closed"
    if c.buf:  # a 408 is acceptable, nothing else
        assert c.buf.startswith(b"HTTP/1.1 408 "), c.buf


def test_idle_keepalive_connection_is_closed(sluice, backend):
    b = backend("a")
    sl = sluice.proxy(b, timeouts={"client_keepalive": "1s"})
    c = sl.client(timeout=SLACK)
    assert c.request("GET", "/").status == 200
    assert c.wait_closed(SLACK), "idle keep-alive connection never closed"
    if c.buf:
        assert c.buf.startswith(b"HTTP/1.1 408 "), c.buf


def test_keepalive_timeout_not_applied_while_request_in_progress(sluice, backend):
    """client_keepalive is for idle time only: a slow backend answer is still delivered."""
    b = backend("a")
    sl = sluice.proxy(b, timeouts={"client_keepalive": "1s"})
    c = sl.client(timeout=SLACK + 3)
    assert c.request("GET", "/_/slow?ms=2000").status == 200


def test_stalled_request_body_is_dropped(sluice, backend):
    b = backend("a")
    sl = sluice.proxy(b, timeouts={"client_body": "1s"})
    c = sl.client(timeout=SLACK)
    c.send(build_request("POST", "/", headers=[("Content-Length", "100")]) + b"x" * 10)
    assert c.wait_closed(SLACK), "connection with a stalled body never closed"
    if c.buf:
        assert c.buf.split(b" ")[1] in (b"408", b"400", b"502", b"504"), c.buf
    assert not b.requests, "incomplete body delivered as a complete request"


def test_slow_but_steady_body_is_fine(sluice, backend):
    """client_body bounds the gap between reads, not the whole body."""
    b = backend("a")
    sl = sluice.proxy(b, timeouts={"client_body": "1s"})
    c = sl.client(timeout=SLACK)
    c.send(build_request("POST", "/", headers=[("Content-Length", "6")]))
    for ch in b"steady":
        time.sleep(0.3)
        c.send(bytes([ch]))
    r = c.read_response()
    assert r.status == 200 and r.json()["body"] == "steady"


def test_stalled_response_body_closes_client(sluice, backend):
    b = backend("a")
    sl = sluice.proxy(b, timeouts={"upstream_idle": "1s"})
    c = sl.client(timeout=SLACK)
    c.send(build_request("GET", "/_/stall?n=1000&sent=10&s=20"))
    try:
        r = c.read_response()
    except ConnectionClosed:
        pass  # head and part of the body, then closed: the truncation is visible
    else:
        assert r.status in (502, 504), "complete response from a stalled upstream: %r" % r
    assert c.wait_closed()
    b.release.set()


def test_upstream_connect_timeout_moves_to_next_server(sluice, backend, blackhole):
    good = backend("good")
    hole = blackhole()
    sl = sluice.proxy(hole.address, good, workers=1, upstream={"retries": 1},
                      timeouts={"upstream_connect": "500ms"})
    for i in range(4):
        c = sl.client(timeout=SLACK)
        r = c.request("GET", "/t%d" % i)
        assert r.status == 200 and r.header("X-Backend") == "good", r
    assert len(good.requests) == 4


def test_upstream_connect_timeout_single_server(sluice, blackhole):
    hole = blackhole()
    sl = sluice.proxy(hole.address, upstream={"retries": 0},
                      timeouts={"upstream_connect": "500ms"})
    c = sl.client(timeout=SLACK)
    r = c.request("GET", "/")
    assert r.status in (502, 504), r
    assert_sluice_error(r, r.status, c)


def test_client_that_stops_reading_is_dropped(sluice, backend):
    """A client asks for a large response and never reads it: once the socket buffers
    are full sluice gives it timeouts.client_body, then closes both sides."""
    b = backend("a")
    sl = sluice.proxy(b, timeouts={"client_body": "1s", "upstream_idle": "30s"})
    c = sl.client()
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    c.send(build_request("GET", "/_/big?n=%d" % (64 * 1024 * 1024)))
    time.sleep(0.5)
    fds_busy = sl.fd_count()
    # within a few seconds the daemon lets go of the client and the upstream connection
    deadline = time.monotonic() + 10 * SCALE
    while time.monotonic() < deadline and sl.fd_count() >= fds_busy:
        time.sleep(0.2)
    assert sl.fd_count() < fds_busy, "session still open %.0f s after the client stopped " \
        "reading" % (10 * SCALE)
    assert sl.fd_count() <= fds_busy - 2  # client and upstream sockets both closed
