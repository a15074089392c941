"""Regression tests for data-path bugs found in review (user/proxy/session.c)."""
import os
import threading
import time

from backends import respond
from client import build_request
from daemon import wait_for
from env import SCALE
from test_admin import get_json, sock_path

SLACK = 6 * SCALE


def test_review_bad_chunk_mid_response_closes_client(sluice, backend):
    """The upstream breaks its chunked framing after part of the body reached the client:
    the only honest signal left is a close. sluice must not keep the client connection
    alive (the client would take the next response as the rest of this body)."""
    first_chunk_seen = threading.Event()

    def handler(conn, req):
        if req.target == "/next":
            respond(conn, 200, body=b"NEXT")
            return None
        conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        first_chunk_seen.wait(10 * SCALE)  # the client has part of the body
        conn.send(b"ZZ\r\n")  # not a chunk size
        return "close"

    b = backend("a", handler)
    sl = sluice.proxy(b)
    c = sl.client(timeout=SLACK)
    c.send(build_request("GET", "/broken"))
    deadline = time.monotonic() + SLACK
    while b"hello" not in c.buf:
        assert c._fill(deadline, "first chunk"), "closed before the first chunk: %r" % c.buf
    first_chunk_seen.set()
    closed = c.wait_closed(timeout=2 * SCALE)
    got = c.buf
    if not closed:
        # show the desync: the next response lands inside the truncated chunked body
        c.send(build_request("GET", "/next"), ignore_errors=True)
        c.wait_closed(timeout=1)
        got = c.buf
    assert closed, "client connection kept alive after a truncated response: %r" % got


def bytes_in(path):
    return sum(w["bytes_in"] for w in get_json(path, "/workers"))


def test_review_connect_timeout_kept_when_body_completes_during_connect(sluice, blackhole,
                                                                        tmp_path):
    """The request body finishes while the upstream connect is still in progress: the
    upstream_connect deadline must still apply (a 502/504 after ~0.5 s)."""
    hole = blackhole()
    path = sock_path(tmp_path)
    sl = sluice.proxy(hole.address, upstream={"retries": 0}, admin={"socket": path},
                      timeouts={"upstream_connect": "500ms", "client_body": "30s"})
    assert wait_for(lambda: os.path.exists(path), 5 * SCALE), sl.stderr()[-2000:]
    c = sl.client(timeout=SLACK)
    req = build_request("POST", "/", headers=[("Content-Length", "10")])
    # each piece is read by sluiced (bytes_in) before the next is sent: the head in two
    # reads keeps the client read event armed; the body ends during the connect
    for piece, total in ((req[:10], 10), (req[10:] + b"01234", len(req) + 5)):
        c.send(piece)
        assert wait_for(lambda: bytes_in(path) >= total, 5 * SCALE), (total, bytes_in(path))
    c.send(b"56789")
    t0 = time.monotonic()
    r = c.read_response()
    assert r.status in (502, 504), r
    assert time.monotonic() - t0 < 3 * SCALE
