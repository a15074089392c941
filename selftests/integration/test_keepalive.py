"""Keep-alive on both sides, pipelining, upstream connection reuse, backends that close
idle connections or die mid-response."""
import time

import pytest

from backends import pattern
from client import ConnectionClosed, HTTPClient, build_request


def test_many_requests_on_one_client_connection(sluice, backend):
    b = backend("a")
    sl = sluice.proxy(b)
    c = sl.client()
    for i in range(20):
        r = c.request("GET", "/r%d" % i)
        assert r.status == 200 and r.json()["target"] == "/r%d" % i
        assert "close" not in r.connection_tokens()


def test_three_pipelined_requests_in_one_write(sluice, backend):
    b = backend("a")
    sl = sluice.proxy(b)
    c = sl.client()
    c.send(build_request("GET", "/one") + build_request("POST", "/two", body=b"second body")
           + build_request("GET", "/three"))
    rs = c.read_responses(3)
    assert [r.status for r in rs] == [200, 200, 200]
    assert [r.json()["target"] for r in rs] == ["/one", "/two", "/three"]
    assert rs[1].json()["body"] == "second body"
    assert c.request("GET", "/four").json()["target"] == "/four"


def test_pipelined_responses_keep_order_when_first_is_slow(sluice, backend):
    b = backend("a")
    sl = sluice.proxy(b)
    c = sl.client()
    c.send(build_request("GET", "/_/slow?ms=500") + build_request("GET", "/fast1")
           + build_request("GET", "/fast2"))
    rs = c.read_responses(3)
    assert [r.json()["target"] for r in rs] == ["/_/slow?ms=500", "/fast1", "/fast2"]


def test_pipelined_head_chunked_and_bodiless(sluice, backend):
    b = backend("a")
    sl = sluice.proxy(b)
    c = sl.client()
    c.send(build_request("HEAD", "/_/big?n=777") + build_request("GET", "/_/chunked?n=3000")
           + build_request("GET", "/_/status?code=204") + build_request("GET", "/last"))
    rs = c.read_responses(4, methods=["HEAD", "GET", "GET", "GET"])
    assert [r.status for r in rs] == [200, 200, 204, 200]
    assert rs[0].body == b"" and rs[0].header("Content-Length") == "777"
    assert rs[1].body == pattern(3000)
    assert rs[3].json()["target"] == "/last"


def test_pipelined_with_connection_close_last(sluice, backend):
    b = backend("a")
    sl = sluice.proxy(b)
    c = sl.client()
    c.send(build_request("GET", "/a") + build_request("GET", "/b",
                                                      headers=[("Connection", "close")]))
    rs = c.read_responses(2)
    assert [r.json()["target"] for r in rs] == ["/a", "/b"]
    assert "close" in rs[1].connection_tokens()
    assert c.wait_closed()


def test_connection_close_request(sluice, backend):
    b = backend("a")
    sl = sluice.proxy(b)
    c = sl.client()
    r = c.request("GET", "/", headers=[("Connection", "close")])
    assert r.status == 200
    assert "close" in r.connection_tokens()
    assert c.wait_closed()


def test_upstream_keepalive_reuse_one_client(sluice, backend):
    b = backend("a")
    sl = sluice.proxy(b, workers=1)
    c = sl.client()
    for i in range(100):
        assert c.request("GET", "/k%d" % i).status == 200
    assert len(b.requests) == 100
    assert b.accepted <= 5, "100 sequential requests used %d upstream connections" % b.accepted


def test_upstream_keepalive_reuse_across_clients(sluice, backend):
    b = backend("a")
    sl = sluice.proxy(b, workers=1)
    for i in range(100):
        with HTTPClient(sl.port) as c:
            assert c.request("GET", "/k%d" % i).status == 200
    assert len(b.requests) == 100
    assert b.accepted <= 10, "100 sequential requests used %d upstream connections" % b.accepted


@pytest.mark.parametrize("same_client", [False, True], ids=["new-client", "same-client"])
def test_backend_closing_idle_connections_causes_no_502(sluice, backend, same_client):
    b = backend("a", idle_close=1.0)
    sl = sluice.proxy(b, workers=1)
    c = sl.client()
    for i in range(3):
        if not same_client:
            c.close()
            c = sl.client()
        r = c.request("GET", "/idle%d" % i)
        assert r.status == 200, "request %d after the backend closed its idle side: %r" % (i, r)
        time.sleep(1.5)
    assert b.accepted >= 2, "backend idle close did not happen (%d connections)" % b.accepted


@pytest.mark.parametrize("rst", [0, 1], ids=["fin", "rst"])
def test_backend_dies_mid_response(sluice, backend, rst):
    b = backend("a")
    sl = sluice.proxy(b)
    c = sl.client()
    c.send(build_request("GET", "/_/die?n=100000&sent=1000&rst=%d" % rst))
    try:
        r = c.read_response()
    except ConnectionClosed:
        pass  # truncated body, then closed: the client can tell
    else:
        assert r.status == 502, "complete-looking response from a dead backend: %r" % r
    assert c.wait_closed(), "client connection kept open after a truncated response"
    accepted = b.accepted
    r = sl.client().request("GET", "/next")
    assert r.status == 200 and r.json()["target"] == "/next"
    assert b.accepted == accepted + 1, "next request did not use a fresh upstream connection"


def test_client_abort_mid_response_does_not_break_proxy(sluice, backend):
    b = backend("a")
    sl = sluice.proxy(b, workers=1)
    for _ in range(5):
        c = sl.client()
        c.send(build_request("GET", "/_/big?n=%d" % (4 << 20)))
        c.sock.recv(1000)
        c.close()
    r = sl.client().request("GET", "/after")
    assert r.status == 200 and r.json()["target"] == "/after"


def test_client_abort_mid_request_body(sluice, backend):
    b = backend("a")
    sl = sluice.proxy(b, workers=1)
    for _ in range(5):
        c = sl.client()
        c.send(build_request("POST", "/partial", headers=[("Content-Length", "100000")])
               + b"x" * 1000)
        time.sleep(0.05)
        c.close()
    r = sl.client().request("GET", "/after")
    assert r.status == 200 and r.json()["target"] == "/after"
    assert not [q for q in b.requests if q.target == "/partial"], \
        "a truncated request body was delivered as complete"
