"""Strict framing: smuggling-prone requests get 400 and never reach the backend; the same
shapes from a backend give the client 502 and that upstream connection is not reused."""
import pytest

from backends import on_path, raw_handler
from checks import assert_sluice_error
from client import ConnectionClosed

H = b"Host: sluice.test\r\n"

# (id, raw request, head_level): head_level attacks are visible in the head alone, so not
# one byte may reach the backend. Body-level ones (bad chunk size) may let a streaming
# proxy forward the head first, but the backend must never get a complete request.
REQUEST_ATTACKS = [
    ("cl-te", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 6\r\nTransfer-Encoding: chunked"
     b"\r\n\r\n0\r\n\r\nG", True),
    ("te-cl", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nContent-Length: 3"
     b"\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n", True),
    ("two-differing-cl", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n"
     b"Content-Length: 6\r\n\r\nhello!", True),
    ("cl-list-differing", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5, 6\r\n\r\nhello!",
     True),
    ("cl-not-a-number", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5x\r\n\r\nhello",
     True),
    ("cl-negative", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\nhello", True),
    ("te-xchunked", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: xchunked\r\n\r\n"
     b"5\r\nhello\r\n0\r\n\r\n", True),
    ("te-chunked-identity", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, "
     b"identity\r\n\r\n5\r\nhello\r\n0\r\n\r\n", True),
    ("te-chunked-then-identity-headers", b"POST / HTTP/1.1\r\n" + H +
     b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
     True),
    ("space-before-colon-te", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding : chunked\r\n"
     b"\r\n5\r\nhello\r\n0\r\n\r\n", True),
    ("space-before-colon-cl", b"POST / HTTP/1.1\r\n" + H + b"Content-Length : 5\r\n\r\nhello",
     True),
    ("tab-before-colon", b"GET / HTTP/1.1\r\n" + H + b"X-Foo\t: bar\r\n\r\n", True),
    ("obs-fold", b"GET / HTTP/1.1\r\n" + H + b"X-Foo: a\r\n b\r\n\r\n", True),
    ("obs-fold-tab-te", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: identity\r\n"
     b"\tchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", True),
    ("nul-in-value", b"GET / HTTP/1.1\r\n" + H + b"X-Foo: a\x00b\r\n\r\n", True),
    ("cr-in-value", b"GET / HTTP/1.1\r\n" + H + b"X-Foo: a\rb\r\n\r\n", True),
    ("lf-in-value", b"GET / HTTP/1.1\r\n" + H + b"X-Foo: a\nX-Bar: b\r\n\r\n", True),
    ("missing-host", b"GET / HTTP/1.1\r\nX-Foo: bar\r\n\r\n", True),
    ("bad-chunk-size", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
     b"zz\r\nhello\r\n0\r\n\r\n", False),
    ("bad-chunk-size-later", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
     b"5\r\nhello\r\n5x\r\nworld\r\n0\r\n\r\n", False),
    ("chunk-size-overflow", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
     b"10000000000000005\r\nhello\r\n0\r\n\r\n", False),
    ("chunk-data-too-long", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
     b"3\r\nhello\r\n0\r\n\r\n", False),
]


@pytest.mark.parametrize("raw,head_level", [(r, h) for _, r, h in REQUEST_ATTACKS],
                         ids=[i for i, _, _ in REQUEST_ATTACKS])
def test_request_framing_attack_rejected(sluice, backend, raw, head_level):
    b = backend("a")
    sl = sluice.proxy(b)
    c = sl.client()
    c.send(raw)
    r = c.read_response()
    assert_sluice_error(r, 400, c)
    if head_level:
        assert b.saw_nothing(), "attack reached the backend: %r %r" % (b.requests, b.partial)
    else:
        assert not b.requests, "backend got a complete request: %r" % b.requests[0].raw
    # the proxy still works and the backend sees exactly the next request, unpolluted
    r = sl.client().request("GET", "/after")
    assert r.status == 200 and r.json()["target"] == "/after"
    assert [q.target for q in b.requests] == ["/after"], b.requests
    assert b.requests[0].method == "GET"


def test_request_attack_after_good_request_on_same_connection(sluice, backend):
    b = backend("a")
    sl = sluice.proxy(b)
    c = sl.client()
    assert c.request("GET", "/good").status == 200
    c.send(b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n"
           b"\r\n0\r\n\r\nG")
    assert_sluice_error(c.read_response(), 400, c)
    assert [q.target for q in b.requests] == ["/good"]


def body_shape(head, body):
    return b"HTTP/1.1 200 OK\r\n" + head + b"\r\n" + body


# (id, raw response, body_level): for body-level shapes the head may already be on its way
# to the client, so a truncated response followed by a close is accepted instead of 502.
RESPONSE_ATTACKS = [
    ("cl-te", body_shape(b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
                         b"0\r\n\r\n"), False),
    ("two-differing-cl", body_shape(b"Content-Length: 2\r\nContent-Length: 3\r\n", b"ok!"),
     False),
    ("te-xchunked", body_shape(b"Transfer-Encoding: xchunked\r\n", b"2\r\nok\r\n0\r\n\r\n"),
     False),
    ("te-chunked-identity", body_shape(b"Transfer-Encoding: chunked, identity\r\n",
                                       b"2\r\nok\r\n0\r\n\r\n"), False),
    ("space-before-colon", body_shape(b"Content-Length : 2\r\n", b"ok"), False),
    ("obs-fold", body_shape(b"X-Foo: a\r\n b\r\nContent-Length: 2\r\n", b"ok"), False),
    ("nul-in-value", body_shape(b"X-Foo: a\x00b\r\nContent-Length: 2\r\n", b"ok"), False),
    ("bad-status-line", b"HTTP/1.1 abc OK\r\nContent-Length: 2\r\n\r\nok", False),
    ("not-http", b"hello there\r\n\r\n", False),
    ("bad-chunk-size", body_shape(b"Transfer-Encoding: chunked\r\n", b"zz\r\nok\r\n0\r\n\r\n"),
     True),
]


@pytest.mark.parametrize("raw,body_level", [(r, b) for _, r, b in RESPONSE_ATTACKS],
                         ids=[i for i, _, _ in RESPONSE_ATTACKS])
def test_response_framing_attack_gives_502(sluice, backend, raw, body_level):
    b = backend("a", handler=on_path("/evil", raw_handler(raw)))
    sl = sluice.proxy(b, workers=1, timeouts={"upstream_idle": "2s"})
    c = sl.client()
    c.send(b"GET /evil HTTP/1.1\r\n" + H + b"\r\n")
    try:
        r = c.read_response()
    except ConnectionClosed:
        assert body_level, "connection closed without a 502"
    else:
        assert_sluice_error(r, 502, c)
    assert c.wait_closed()
    # the bad upstream connection (still open on the backend side) must not be reused
    r = sl.client().request("GET", "/after")
    assert r.status == 200, r
    after = [q for q in b.requests if q.target == "/after"]
    evil = [q for q in b.requests if q.target == "/evil"]
    assert len(evil) == 1, "the GET was retried after a response arrived: %r" % b.requests
    assert after and after[0].conn_id != evil[0].conn_id, \
        "upstream connection reused after a malformed response"


def test_response_head_too_big_gives_502(sluice, backend):
    b = backend("a", handler=raw_handler(
        b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 8192 + b"\r\nContent-Length: 2\r\n\r\nok"))
    sl = sluice.proxy(b, limits={"max_header_bytes": "4k"})
    c = sl.client()
    assert_sluice_error(c.request("GET", "/"), 502, c)


def test_response_with_more_headers_than_the_limit_is_not_truncated(sluice, backend):
    """Either refused (502) or passed on whole: never silently cut."""
    b = backend("a", handler=raw_handler(
        b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-H%d: v%d\r\n" % (i, i) for i in range(40))
        + b"Content-Length: 2\r\n\r\nok"))
    sl = sluice.proxy(b, limits={"max_header_count": 20})
    c = sl.client()
    r = c.request("GET", "/")
    if r.status == 502:
        assert_sluice_error(r, 502, c)
    else:
        assert r.status == 200 and r.body == b"ok"
        assert [r.header("X-H%d" % i) for i in range(40)] == ["v%d" % i for i in range(40)]


def test_response_longer_than_content_length_is_not_passed_on(sluice, backend):
    """Extra bytes after a Content-Length body must not become the next response."""
    b = backend("a", handler=on_path("/evil", raw_handler(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nSMUGGLED")))
    sl = sluice.proxy(b, workers=1)
    c = sl.client()
    r = c.request("GET", "/evil")
    assert r.status == 200 and r.body == b"ok"
    r = c.request("GET", "/next")
    assert r.body != b"SMUGGLED", "leftover upstream bytes served as the next response"
    assert r.status == 200 and r.json()["target"] == "/next"
