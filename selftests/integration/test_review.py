"""Regression tests for data-path bugs found in review (user/proxy/session.c)."""
import socket
import time

from backends import respond
from client import build_request
from env import SCALE

SLACK = 6 * SCALE


def test_review_bad_chunk_mid_response_closes_client(sluice, backend):
    """The upstream breaks its chunked framing after part of the body reached the client:
    the only honest signal left is a close. sluice must not keep the client connection
    alive (the client would take the next response as the rest of this body)."""
    def handler(conn, req):
        if req.target == "/next":
            respond(conn, 200, body=b"NEXT")
            return None
        conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        time.sleep(0.3)
        conn.send(b"ZZ\r\n")  # not a chunk size
        return "close"

    b = backend("a", handler)
    sl = sluice.proxy(b)
    c = sl.client(timeout=SLACK)
    c.send(build_request("GET", "/broken"))
    closed = c.wait_closed(timeout=2 * SCALE)
    got = c.buf
    if not closed:
        # show the desync: the next response lands inside the truncated chunked body
        c.send(build_request("GET", "/next"), ignore_errors=True)
        c.wait_closed(timeout=1)
        got = c.buf
    assert closed, "client connection kept alive after a truncated response: %r" % got


def test_review_connect_timeout_kept_when_body_completes_during_connect(sluice, blackhole):
    """The request body finishes while the upstream connect is still in progress: the
    upstream_connect deadline must still apply (a 502/504 after ~0.5 s)."""
    hole = blackhole()
    sl = sluice.proxy(hole.address, upstream={"retries": 0},
                      timeouts={"upstream_connect": "500ms", "client_body": "30s"})
    c = sl.client(timeout=SLACK)
    req = build_request("POST", "/", headers=[("Content-Length", "10")])
    c.send(req[:10])  # head in two reads: the client read event stays armed
    time.sleep(0.2)
    c.send(req[10:] + b"01234")
    time.sleep(0.2)
    c.send(b"56789")
    t0 = time.monotonic()
    r = c.read_response()
    assert r.status in (502, 504), r
    assert time.monotonic() - t0 < 3 * SCALE
