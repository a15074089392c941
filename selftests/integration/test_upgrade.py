"""Upgrade: websocket through sluice: the handshake is forwarded and after 101 the
connection is a raw bidirectional tunnel (frames echoed by the backend)."""
import base64
import os
import threading
import time

from backends import on_path, respond, ws_accept, ws_frame, ws_read_frame
from client import build_request


def ws_handshake(c, target="/_/ws", extra=()):
    key = base64.b64encode(os.urandom(16)).decode()
    c.send(build_request("GET", target, headers=[
        ("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Key", key),
        ("Sec-WebSocket-Version", "13")] + list(extra)))
    return key, c.read_response()


def reader(c):
    def read_exact(n):
        return c._read_exact(n, time.monotonic() + c.timeout, "websocket frame")
    return read_exact


def test_websocket_echo_through_tunnel(sluice, backend):
    b = backend("ws")
    sl = sluice.proxy(b)
    c = sl.client()
    key, r = ws_handshake(c)
    assert r.status == 101, r
    assert r.header("Sec-WebSocket-Accept") == ws_accept(key)
    assert "websocket" in r.header("Upgrade", "").lower()
    assert "upgrade" in r.connection_tokens()
    req = b.requests[-1]
    assert "websocket" in req.tokens("Upgrade"), req.headers
    assert "upgrade" in req.tokens("Connection"), req.headers
    assert req.header("Sec-WebSocket-Key") == key
    rd = reader(c)
    for op, msg in [(0x1, b"hello"), (0x1, b"x" * 300), (0x2, os.urandom(70000))]:
        c.send(ws_frame(op, msg, mask=os.urandom(4)))
        fin, rop, payload = ws_read_frame(rd)
        assert (fin, rop, payload) == (True, op, msg)
    c.send(ws_frame(0x9, b"ping!", mask=os.urandom(4)))
    assert ws_read_frame(rd) == (True, 0xA, b"ping!")
    c.send(ws_frame(0x8, b"\x03\xe8", mask=os.urandom(4)))
    assert ws_read_frame(rd) == (True, 0x8, b"\x03\xe8")
    assert c.wait_closed(), "tunnel not closed after the backend closed"


def test_websocket_large_bidirectional_stream(sluice, backend):
    """Client writes while the echo streams back: no deadlock in the tunnel."""
    b = backend("ws")
    sl = sluice.proxy(b)
    c = sl.client(timeout=30)
    _, r = ws_handshake(c)
    assert r.status == 101
    msgs = [os.urandom(65536) for _ in range(64)]  # 4 MiB each way

    def write():
        for m in msgs:
            c.send(ws_frame(0x2, m, mask=b"\x01\x02\x03\x04"), ignore_errors=True)
    t = threading.Thread(target=write, daemon=True)
    t.start()
    rd = reader(c)
    for m in msgs:
        assert ws_read_frame(rd) == (True, 0x2, m)
    t.join(10)


def test_two_tunnels_at_once(sluice, backend):
    b = backend("ws")
    sl = sluice.proxy(b)
    c1, c2 = sl.client(), sl.client()
    assert ws_handshake(c1)[1].status == 101
    assert ws_handshake(c2)[1].status == 101
    for i in range(5):
        c1.send(ws_frame(0x1, b"one-%d" % i, mask=b"abcd"))
        c2.send(ws_frame(0x1, b"two-%d" % i, mask=b"efgh"))
        assert ws_read_frame(reader(c2))[2] == b"two-%d" % i
        assert ws_read_frame(reader(c1))[2] == b"one-%d" % i


def test_upgrade_declined_by_backend_stays_http(sluice, backend):
    b = backend("plain", handler=on_path("/_/ws", lambda conn, req: respond(
        conn, 200, headers=[("X-Declined", "1")], body=b"no upgrade here")))
    sl = sluice.proxy(b)
    c = sl.client()
    _, r = ws_handshake(c)
    assert r.status == 200 and r.body == b"no upgrade here"
    if "close" in r.connection_tokens():  # sluice may decline to go on, but must say so
        assert c.wait_closed()
        c = sl.client()
    r = c.request("GET", "/next")
    assert r.status == 200 and r.json()["target"] == "/next"


def test_upgrade_without_connection_upgrade_is_not_forwarded(sluice, backend):
    b = backend("a")
    sl = sluice.proxy(b)
    c = sl.client()
    r = c.request("GET", "/", headers=[("Upgrade", "websocket")])
    assert r.status == 200
    assert not b.requests[-1].has("Upgrade"), b.requests[-1].headers


def test_tunnel_client_close_closes_backend_side(sluice, backend):
    b = backend("ws")
    sl = sluice.proxy(b)
    c = sl.client()
    assert ws_handshake(c)[1].status == 101
    c.send(ws_frame(0x1, b"bye", mask=b"abcd"))
    assert ws_read_frame(reader(c))[2] == b"bye"
    c.close()
    # the backend's echo loop ends when its side of the tunnel closes
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not all(conn.closed for conn in b.conns):
        time.sleep(0.05)
    assert all(conn.closed for conn in b.conns), "backend side of the tunnel left open"
    r = sl.client().request("GET", "/after")
    assert r.status == 200
