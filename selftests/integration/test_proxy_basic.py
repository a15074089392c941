"""Basic proxying: methods, Host and X-Forwarded-*, hop-by-hop headers, absolute-form,
HTTP/1.0 clients, respond routes, routing and 404, IPv6."""
import os
import socket

import pytest

from backends import pattern, raw_handler
from checks import assert_sluice_error
from client import HTTPClient
from daemon import wait_for
from test_admin import get_json, sock_path


def test_get_is_proxied_unchanged(sluice, backend):
    b = backend("a")
    sl = sluice.proxy(b)
    r = sl.client().request("GET", "/hello/world?x=1&y=%20z", headers=[("X-Custom", "v 1")])
    assert r.status == 200, r
    assert r.header("X-Backend") == "a"
    req = b.requests[-1]
    assert (req.method, req.target, req.version) == ("GET", "/hello/world?x=1&y=%20z",
                                                     "HTTP/1.1")
    assert req.header("Host") == "sluice.test"
    assert req.header("X-Custom") == "v 1"


@pytest.mark.parametrize("method,body", [
    ("GET", None), ("POST", b"post body"), ("PUT", b"put body"), ("DELETE", None),
    ("OPTIONS", None), ("PATCH", b'{"patch": 1}'), ("POST", b""),
])
def test_methods(sluice, backend, method, body):
    b = backend("a")
    sl = sluice.proxy(b)
    c = sl.client()
    r = c.request(method, "/m", body=body)
    assert r.status == 200, r
    j = r.json()
    assert j["method"] == method
    assert j["body"] == (body or b"").decode()
    # the connection stays usable after each method
    assert c.request("GET", "/after").json()["target"] == "/after"


def test_head_response_has_no_body_and_connection_continues(sluice, backend):
    b = backend("a")
    sl = sluice.proxy(b)
    c = sl.client()
    r = c.request("HEAD", "/_/big?n=5000")
    assert r.status == 200
    assert r.header("Content-Length") == "5000"
    assert r.body == b""
    assert b.requests[-1].method == "HEAD"
    r = c.request("GET", "/_/big?n=5000")
    assert r.status == 200 and len(r.body) == 5000


def test_two_workers_serve(sluice, backend, tmp_path):
    """Both workers accept and proxy: per-worker request counters (admin /workers) both
    grow. Steering is off so that the kernel's reuseport hash spreads connections from
    one client CPU over both listeners; new connections until both have served."""
    b = backend("a")
    path = sock_path(tmp_path)
    sl = sluice.proxy(b, workers=2, admin={"socket": path}, bpf={"steering": "off"})
    assert wait_for(lambda: os.path.exists(path), 5), sl.stderr()[-2000:]

    def served():
        return [w["requests"] for w in get_json(path, "/workers")]
    i = 0
    while min(served()) == 0 and i < 200:
        with HTTPClient(sl.port) as c:
            r = c.request("GET", "/w%d" % i)
            assert r.status == 200 and r.json()["target"] == "/w%d" % i
        i += 1
    per_worker = served()
    assert len(per_worker) == 2 and min(per_worker) > 0, \
        "after %d connections one worker served nothing: %r" % (i, per_worker)
    assert sum(per_worker) == i == len(b.requests), (per_worker, i, len(b.requests))


def test_host_passed_unchanged_and_forwarded_headers_added(sluice, backend):
    b = backend("a")
    sl = sluice.proxy(b)
    r = sl.client().request("GET", "/", host="Example.TEST:8080")
    assert r.status == 200
    req = b.requests[-1]
    assert req.headers_named("Host") == ["Example.TEST:8080"]
    assert req.headers_named("X-Forwarded-For") == ["127.0.0.1"]
    assert req.headers_named("X-Forwarded-Proto") == ["http"]
    assert req.headers_named("X-Forwarded-Host") == ["Example.TEST:8080"]


def test_x_forwarded_for_appends_to_existing(sluice, backend):
    b = backend("a")
    sl = sluice.proxy(b)
    r = sl.client().request("GET", "/", headers=[("X-Forwarded-For", "203.0.113.7")])
    assert r.status == 200
    xff = b.requests[-1].headers_named("X-Forwarded-For")
    assert len(xff) == 1 and [p.strip() for p in xff[0].split(",")] == ["203.0.113.7",
                                                                       "127.0.0.1"], xff


@pytest.mark.parametrize("off", ["x_forwarded_for", "x_forwarded_proto", "x_forwarded_host"])
def test_forwarded_headers_can_be_turned_off(sluice, backend, off):
    b = backend("a")
    sl = sluice.proxy(b, forwarded={off: False})
    r = sl.client().request("GET", "/")
    assert r.status == 200
    req = b.requests[-1]
    for key in ("x_forwarded_for", "x_forwarded_proto", "x_forwarded_host"):
        name = key.replace("_", "-")
        if key == off:
            assert not req.has(name), "%s sent although turned off" % name
        else:
            assert req.has(name), "%s missing" % name


def test_forwarded_off_passes_client_header_through(sluice, backend):
    b = backend("a")
    sl = sluice.proxy(b, forwarded={"x_forwarded_for": False, "x_forwarded_proto": False,
                                   "x_forwarded_host": False})
    r = sl.client().request("GET", "/", headers=[("X-Forwarded-For", "203.0.113.7")])
    assert r.status == 200
    req = b.requests[-1]
    assert req.headers_named("X-Forwarded-For") == ["203.0.113.7"]
    assert not req.has("X-Forwarded-Proto") and not req.has("X-Forwarded-Host")


HOP_REQ = ["X-Private", "X-Also-Private", "Keep-Alive", "TE", "Trailer", "Proxy-Connection",
           "Upgrade"]


def test_hop_by_hop_request_headers_removed(sluice, backend):
    b = backend("a")
    sl = sluice.proxy(b)
    r = sl.client().request("GET", "/", headers=[
        ("Connection", "keep-alive, X-Private"),
        ("Connection", "X-Also-Private"),
        ("X-Private", "secret"),
        ("X-Also-Private", "secret2"),
        ("Keep-Alive", "timeout=5"),
        ("TE", "trailers"),
        ("Trailer", "X-Checksum"),
        ("Proxy-Connection", "keep-alive"),
        ("Upgrade", "h2c"),
        ("X-End-To-End", "kept"),
    ])
    assert r.status == 200
    req = b.requests[-1]
    leaked = [h for h in HOP_REQ if req.has(h)]
    assert not leaked, "hop-by-hop headers forwarded upstream: %r" % req.headers
    assert not (req.tokens("Connection") & {"x-private", "x-also-private"}), req.headers
    assert req.header("X-End-To-End") == "kept"


def test_hop_by_hop_response_headers_removed(sluice, backend):
    b = backend("a", handler=raw_handler(
        b"HTTP/1.1 200 OK\r\n"
        b"Connection: X-Secret, keep-alive\r\n"
        b"Connection: X-Secret-2\r\n"
        b"X-Secret: 1\r\n"
        b"X-Secret-2: 2\r\n"
        b"Keep-Alive: timeout=5, max=100\r\n"
        b"Proxy-Connection: keep-alive\r\n"
        b"Upgrade: h2c\r\n"
        b"Trailer: X-Foo\r\n"
        b"TE: trailers\r\n"
        b"X-End-To-End: kept\r\n"
        b"Content-Length: 2\r\n\r\nok"))
    sl = sluice.proxy(b)
    c = sl.client()
    r = c.request("GET", "/")
    assert r.status == 200 and r.body == b"ok"
    leaked = [h for h in ("X-Secret", "X-Secret-2", "Keep-Alive", "Proxy-Connection", "Upgrade",
                          "Trailer", "TE") if r.has(h)]
    assert not leaked, "hop-by-hop headers forwarded to the client: %r" % r.headers
    assert not (r.connection_tokens() & {"x-secret", "x-secret-2"}), r.headers
    assert r.header("X-End-To-End") == "kept"
    assert c.request("GET", "/").status == 200


@pytest.mark.parametrize("target,origin", [
    ("http://abs.test/p/q?x=1", "/p/q?x=1"),
    ("http://abs.test:8080/p", "/p"),
    ("http://ABS.Test/", "/"),
    ("http://abs.test", "/"),
])
def test_absolute_form_target(sluice, backend, target, origin):
    a, other = backend("abs"), backend("other")
    sl = sluice.start(
        [{"host": "abs.test", "upstream": "a"}, {"upstream": "o"}],
        {"a": {"servers": [{"address": a.address}]},
         "o": {"servers": [{"address": other.address}]}})
    c = sl.client()
    # routing follows the absolute-form authority, not the Host header
    r = c.request("GET", target, host="other.test")
    assert r.status == 200, r
    assert r.header("X-Backend") == "abs", "routed by Host instead of the absolute URI"
    assert a.requests[-1].target == origin
    assert not other.requests


def test_http10_client_gets_response_then_close(sluice, backend):
    b = backend("a")
    sl = sluice.proxy(b)
    c = sl.client()
    c.send(b"GET /ten HTTP/1.0\r\n\r\n")
    r = c.read_response()
    assert r.status == 200, r
    assert r.json()["target"] == "/ten"
    assert c.wait_closed(), "HTTP/1.0 connection without keep-alive left open"


def test_http10_client_with_keepalive(sluice, backend):
    b = backend("a")
    sl = sluice.proxy(b)
    c = sl.client()
    for i in range(3):
        c.send(b"GET /ka%d HTTP/1.0\r\nHost: sluice.test\r\nConnection: keep-alive\r\n\r\n" % i)
        r = c.read_response()
        assert r.status == 200
        assert r.framing == "length", "a 1.0 keep-alive response needs Content-Length"
        assert "keep-alive" in r.connection_tokens(), \
            "HTTP/1.0 keep-alive response must say Connection: keep-alive: %r" % r.headers
        assert r.json()["target"] == "/ka%d" % i


def test_http10_client_never_gets_chunked(sluice, backend):
    b = backend("a")
    sl = sluice.proxy(b)
    c = sl.client()
    c.send(b"GET /_/chunked?n=20000&size=1000 HTTP/1.0\r\nHost: sluice.test\r\n\r\n")
    r = c.read_response()
    assert r.status == 200
    assert r.framing != "chunked", "chunked response sent to an HTTP/1.0 client"
    assert r.body == pattern(20000)


def test_respond_route(sluice, backend):
    b = backend("a")
    sl = sluice.start(
        [{"path": "/healthz", "respond": {"status": 200,
                                          "headers": {"Content-Type": "text/plain",
                                                      "X-Respond": "yes"},
                                          "body": "ok\n"}},
         {"path": "/gone", "respond": {"status": 410, "body": "gone for good\n"}},
         {"upstream": "u"}],
        {"u": {"servers": [{"address": b.address}]}})
    c = sl.client()
    r = c.request("GET", "/healthz")
    assert r.status == 200 and r.body == b"ok\n"
    assert r.header("Content-Type") == "text/plain"
    assert r.header("X-Respond") == "yes"
    assert r.header("Content-Length") == "3"
    r = c.request("GET", "/gone")
    assert r.status == 410 and r.body == b"gone for good\n"
    assert b.saw_nothing(), "respond route reached the backend"
    r = c.request("GET", "/other")
    assert r.status == 200 and r.header("X-Backend") == "a"


def test_no_route_404_keeps_connection(sluice, backend):
    b = backend("a")
    sl = sluice.start([{"host": "only.test", "upstream": "u"}],
                      {"u": {"servers": [{"address": b.address}]}})
    c = sl.client()
    r = c.request("GET", "/", host="other.test")
    assert_sluice_error(r, 404, c)
    assert b.saw_nothing()
    r = c.request("GET", "/", host="only.test")
    assert r.status == 200 and r.header("X-Backend") == "a"


ROUTES = [
    {"host": "exact.test", "path": "/api", "upstream": "api"},
    {"host": "exact.test", "upstream": "exact"},
    {"host": "*.wild.test", "upstream": "wild"},
    {"path": "/static", "upstream": "static"},
    {"upstream": "default"},
]


@pytest.mark.parametrize("host,path,expect", [
    ("exact.test", "/api/v1", "api"),
    ("EXACT.Test", "/api", "api"),
    ("exact.test:8080", "/apix", "api"),  # prefix compared byte for byte
    ("exact.test", "/API", "exact"),  # paths are case-sensitive
    ("exact.test", "/", "exact"),
    ("a.wild.test", "/", "wild"),
    ("a.b.wild.test", "/static", "wild"),
    ("wild.test", "/", "default"),  # *.wild.test does not match wild.test
    ("xwild.test", "/", "default"),
    ("other.test", "/static/app.css", "static"),
    ("other.test", "/stat", "default"),
    ("other.test", "/x?p=/static", "default"),  # the query is not part of the path
])
def test_routing(sluice, backend, host, path, expect):
    names = ["api", "exact", "wild", "static", "default"]
    bs = {n: backend(n) for n in names}
    sl = sluice.start(ROUTES, {n: {"servers": [{"address": bs[n].address}]} for n in names})
    r = sl.client().request("GET", path, host=host)
    assert r.status == 200, r
    assert r.header("X-Backend") == expect, "Host %s path %s went to %s" % (
        host, path, r.header("X-Backend"))


def ipv6_loopback():
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.bind(("::1", 0))
        s.close()
        return True
    except OSError:
        return False


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback in this environment")
def test_ipv6_listener_and_upstream(sluice, backend):
    b = backend("v6", host="::1")
    sl = sluice.new()
    sl.start(sluice.proxy_config(b, host="::1", sl=sl))
    c = sl.client()
    r = c.request("GET", "/v6", host="[::1]")
    assert r.status == 200 and r.header("X-Backend") == "v6"
    assert b.requests[-1].header("X-Forwarded-For") == "::1"


def test_request_bytes_are_not_reordered_across_headers(sluice, backend):
    """Many headers with repeated names arrive upstream in order, values intact."""
    b = backend("a")
    sl = sluice.proxy(b)
    hdrs = [("X-Multi", "v%d" % i) for i in range(20)] + [("Cookie", "a=1"), ("Cookie", "b=2")]
    r = sl.client().request("GET", "/", headers=hdrs)
    assert r.status == 200
    req = b.requests[-1]
    assert req.headers_named("X-Multi") == ["v%d" % i for i in range(20)]
    assert req.headers_named("Cookie") == ["a=1", "b=2"]
