"""Upstream faults (docs: CONTRACT "Upstream faults"): a backend killed mid-body, a
refused connect, a reset before any response byte, a hanging backend, a garbage status
line, a response with both Content-Length and Transfer-Encoding. Each gets the client a
clean 502/504 or a closed connection (never a short body on a kept-alive connection),
none of those upstream connections goes back to the pool, and 10,000 of them leave no
fd behind."""
import os
import threading

import pytest

from backends import dead_address, respond
from client import ConnectionClosed, HTTPClient, build_request
from daemon import wait_for
from env import SCALE, TIMEOUT
from test_admin import admin, parse_metrics, sock_path
from test_fdleak import fd_listing


def counters(path):
    """Pool-related counters summed over workers, from the admin /metrics."""
    r = admin(path, "GET", "/metrics")
    assert r.status == 200, r
    m, _ = parse_metrics(r.body.decode())

    def total(name, **labels):
        want = set(labels.items())
        return sum(v for (n, ls), v in m.items() if n == name and want <= set(ls))
    return {"new": total("sluice_upstream_connections_total", kind="new"),
            "reused": total("sluice_upstream_connections_total", kind="reused"),
            "stale_retry": total("sluice_pool_events_total", event="stale_retry")}


def start(sluice, tmp_path, b, workers=1, retries=0, **kw):
    """A proxy to b with the admin socket on; retries=None: the default retries."""
    path = sock_path(tmp_path)
    sl = sluice.proxy(b, workers=workers, admin={"socket": path},
                      upstream={} if retries is None else {"retries": retries}, **kw)
    assert wait_for(lambda: os.path.exists(path), 5 * SCALE), sl.stderr()[-2000:]
    return sl, path


def assert_not_pooled(sl, path, b):
    """The faulty upstream connection is gone from sluice's side: the backend saw every
    connection closed (a pooled one stays open, idle), and the next request opens a new
    connection instead of reusing one."""
    assert wait_for(lambda: all(c.closed for c in b.conns), 5 * SCALE), \
        "sluice kept an upstream connection open after the fault: %r" % b.conns
    before = counters(path)
    accepted = b.accepted
    with HTTPClient(sl.port) as c:
        r = c.request("GET", "/ok")
        assert r.status == 200, r
    after = counters(path)
    assert after["reused"] == before["reused"], (before, after)
    assert after["stale_retry"] == before["stale_retry"], (before, after)
    assert after["new"] == before["new"] + 1, (before, after)
    assert b.accepted == accepted + 1, b


def fault_handler(fault=None):
    """The backend side of each fault, by request path; anything else is a normal 200."""
    def handler(conn, req):
        if req.path == "/f/die":  # Content-Length 10000, 100 bytes, then FIN
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10000\r\n\r\n" + b"x" * 100)
            conn.close(rst=False)
            return "close"
        if req.path == "/f/die-rst":
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10000\r\n\r\n" + b"x" * 100)
            conn.close(rst=True)
            return "close"
        if req.path == "/f/rst":  # request read, reset before any response byte
            conn.close(rst=True)
            return "close"
        if req.path == "/f/fin":  # request read, closed before any response byte
            conn.close()
            return "close"
        if req.path == "/f/garbage":
            conn.send(b"HTTP/1.1 2OO OK\r\nContent-Length: 2\r\n\r\nok")
            return None  # and keep reading: sluice must close it
        if req.path == "/f/clte":
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n"
                      b"\r\n5\r\nhello\r\n0\r\n\r\n")
            return None
        if req.path == "/f/hang":  # never answer; wait for sluice to hang up
            conn.sock.settimeout(30)
            try:
                while conn.sock.recv(65536):
                    pass
            except OSError:
                pass
            fault["hang_closed"].set()
            return "close"
        respond(conn, 200, body=b"fine", close=req.wants_close())
        return None
    return handler


@pytest.mark.parametrize("path", ["/f/die", "/f/die-rst"])
def test_killed_mid_body_closes_client(sluice, backend, tmp_path, path):
    b = backend("a", fault_handler({}))
    sl, adm = start(sluice, tmp_path, b)
    c = sl.client()
    c.send(build_request("GET", path))
    with pytest.raises(ConnectionClosed) as e:
        c.read_response()
    assert len(e.value.partial) < 10000
    assert c.wait_closed(TIMEOUT), "client connection kept after a cut response"
    assert_not_pooled(sl, adm, b)


def test_refused_connect_is_502(sluice, backend, tmp_path):
    b = backend("a", fault_handler({}))
    path = sock_path(tmp_path)
    sl = sluice.start([{"path": "/dead", "upstream": "dead"}, {"upstream": "u"}],
                      {"dead": {"servers": [{"address": dead_address()}], "retries": 0},
                       "u": {"servers": [{"address": b.address}]}}, admin={"socket": path})
    assert wait_for(lambda: os.path.exists(path), 5 * SCALE)
    r = sl.client().request("GET", "/dead")
    assert r.status == 502, r
    assert sl.client().request("GET", "/ok").status == 200


@pytest.mark.parametrize("method,path,retries", [
    ("POST", "/f/rst", None), ("POST", "/f/fin", None),  # a body: never retried
    ("GET", "/f/rst", 0), ("GET", "/f/fin", 0),
    ("GET", "/f/rst", None), ("GET", "/f/fin", None),  # retried, but one server only
])
def test_closed_before_any_byte_is_502(sluice, backend, tmp_path, method, path, retries):
    """Accepted, request read, then reset (or FIN) before any response byte: 502 with an
    accurate reason, not 503 (there is a server, it failed)."""
    b = backend("a", fault_handler({}))
    sl, adm = start(sluice, tmp_path, b, retries=retries)
    c = sl.client()
    r = c.request(method, path, body=b"payload" if method == "POST" else None)
    assert r.status == 502, r
    if method == "POST":
        assert len(b.requests) == 1, "POST sent upstream more than once: %r" % b.requests
    assert sl.wait_log(lambda ln: "upstream closed before responding" in ln), \
        sl.stderr()[-2000:]
    if "close" not in r.connection_tokens():
        assert c.request("GET", "/ok").status == 200  # a kept connection still works
    assert_not_pooled(sl, adm, b)


def test_hanging_backend_is_504(sluice, backend, tmp_path):
    fault = {"hang_closed": threading.Event()}
    b = backend("a", fault_handler(fault))
    sl, adm = start(sluice, tmp_path, b, timeouts={"upstream_response_header": "500ms"})
    r = sl.client(timeout=10 * SCALE).request("GET", "/f/hang")
    assert r.status == 504, r
    assert fault["hang_closed"].wait(5 * SCALE), "sluice kept the hanging connection open"
    assert_not_pooled(sl, adm, b)


@pytest.mark.parametrize("path", ["/f/garbage", "/f/clte"])
def test_bad_response_is_502_and_not_pooled(sluice, backend, tmp_path, path):
    b = backend("a", fault_handler({}))
    sl, adm = start(sluice, tmp_path, b)
    c = sl.client()
    r = c.request("GET", path)
    assert r.status == 502, r
    assert b"hello" not in r.body and b"ok" != r.body, r.body
    assert_not_pooled(sl, adm, b)


# (path, what the client gets): a status, or "closed" for a response cut mid-body
MIX = [("/ok", 200), ("/f/die", "closed"), ("/f/die-rst", "closed"), ("/f/rst", 502),
       ("/f/fin", 502), ("/f/garbage", 502), ("/f/clte", 502), ("/dead", 502)]


def test_10k_mixed_faults_no_fd_leak(sluice, backend, tmp_path):
    b = backend("a", fault_handler({"hang_closed": threading.Event()}))
    path = sock_path(tmp_path)
    sl = sluice.start([{"path": "/dead", "upstream": "dead"}, {"upstream": "u"}],
                      {"dead": {"servers": [{"address": dead_address()}], "retries": 0},
                       "u": {"servers": [{"address": b.address}], "retries": 0,
                             "pool": {"idle_timeout": "1s"}}},
                      admin={"socket": path},
                      timeouts={"upstream_response_header": "300ms"})
    assert wait_for(lambda: os.path.exists(path), 5 * SCALE)
    # the admin socket exists before the workers and services start (it is created
    # before the privilege drop): take the baseline once the main loop answers
    assert sl.wait_log(lambda ln: 'msg="sluiced started"' in ln), sl.stderr()
    assert wait_for(lambda: admin(path, "GET", "/readyz").status == 200, 5 * SCALE)
    baseline = wait_for(lambda: sl.fd_count(), 1)
    n_threads, per_thread = 4, 2500
    bad = []

    def run(t):
        c = None
        for i in range(per_thread):
            target, want = MIX[(i + t) % len(MIX)]
            if i % 500 == 499:
                target, want = "/f/hang", 504  # a few: each costs the 300 ms timeout
            if c is None:
                c = HTTPClient(sl.port, timeout=10 * SCALE)
            c.send(build_request("GET", target))
            try:
                r = c.read_response()
                got = r.status
                if got == 200 and r.body != b"fine":
                    got = "short body %r" % r.body[:50]
                if "close" in r.connection_tokens():
                    c.close()
                    c = None
            except ConnectionClosed:
                got = "closed"
                c.close()
                c = None
            if got != want:
                bad.append((target, want, got))
                if c is not None:
                    c.close()
                    c = None
        if c is not None:
            c.close()

    threads = [threading.Thread(target=run, args=(t,)) for t in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600 * SCALE)
    assert not any(t.is_alive() for t in threads), "client threads hung"
    assert not bad, "%d unexpected answers, first ones: %r" % (len(bad), bad[:10])
    # sluiced still serves, and once idle pooled connections time out (idle_timeout 1s)
    # its fd table is back to what it was before any request
    assert sl.client().request("GET", "/ok").status == 200
    for c in sl.clients:
        c.close()
    after = wait_for(lambda: sl.fd_count() <= baseline, 10 * SCALE)
    assert after, "fd count %d -> %d after 10,000 faults:\n%s" % (baseline, sl.fd_count(),
                                                                 fd_listing(sl))
