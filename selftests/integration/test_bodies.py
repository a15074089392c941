"""Bodies both ways: Content-Length, chunked, multi-megabyte streams, close-delimited
responses, bodiless statuses, 1xx and Expect: 100-continue."""
import hashlib

import pytest

from backends import pattern
from client import build_request, encode_chunked
from env import TIMEOUT


@pytest.mark.parametrize("size", [0, 1, 1000, 100000])
def test_content_length_body_roundtrip(sluice, backend, size):
    b = backend("a")
    sl = sluice.proxy(b)
    c = sl.client()
    body = pattern(size)
    r = c.request("POST", "/_/echo-body", body=body)
    assert r.status == 200
    assert r.body == body
    req = b.requests[-1]
    assert req.body == body
    assert req.header("Content-Length") == str(size) or (size == 0 and not req.has(
        "Transfer-Encoding")), req.headers


def test_chunked_request_is_forwarded_chunked(sluice, backend):
    b = backend("a")
    sl = sluice.proxy(b)
    c = sl.client()
    r = c.request("POST", "/up", body=b"hello chunked world", chunked=True, chunk_size=4)
    assert r.status == 200
    req = b.requests[-1]
    assert req.tokens("Transfer-Encoding") == {"chunked"}, req.headers
    assert not req.has("Content-Length"), req.headers
    assert req.body == b"hello chunked world"
    assert req.raw_body.endswith(b"0\r\n\r\n")
    assert c.request("GET", "/next").status == 200


def test_chunked_request_with_extensions_and_trailer(sluice, backend):
    b = backend("a")
    sl = sluice.proxy(b)
    c = sl.client()
    c.send(b"POST /ext HTTP/1.1\r\nHost: sluice.test\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n")
    r = c.read_response()
    assert r.status == 200
    assert b.requests[-1].body == b"hello world"
    assert c.request("GET", "/next").status == 200


def test_large_upload_content_length(sluice, backend):
    b = backend("a")
    sl = sluice.proxy(b)
    c = sl.client(timeout=30)
    body = pattern(8 << 20)
    r = c.request("PUT", "/big-up", body=body, timeout=60)
    assert r.status == 200
    j = r.json()
    assert j["body_len"] == len(body)
    assert j["body_sha256"] == hashlib.sha256(body).hexdigest()


def test_large_upload_chunked(sluice, backend):
    b = backend("a")
    sl = sluice.proxy(b)
    c = sl.client(timeout=30)
    body = pattern(4 << 20)
    r = c.request("POST", "/big-up", body=body, chunked=True, chunk_size=65536, timeout=60)
    assert r.status == 200
    j = r.json()
    assert j["body_len"] == len(body)
    assert j["body_sha256"] == hashlib.sha256(body).hexdigest()


def test_large_download_content_length(sluice, backend):
    b = backend("a")
    sl = sluice.proxy(b)
    c = sl.client(timeout=30)
    n = 16 << 20
    r = c.request("GET", "/_/big?n=%d" % n, timeout=60)
    assert r.status == 200
    assert len(r.body) == n and r.body == pattern(n)
    assert c.request("GET", "/after").status == 200


def test_large_download_chunked(sluice, backend):
    b = backend("a")
    sl = sluice.proxy(b)
    c = sl.client(timeout=30)
    n = 8 << 20
    r = c.request("GET", "/_/chunked?n=%d&size=65536" % n, timeout=60)
    assert r.status == 200
    assert r.body == pattern(n)
    assert c.request("GET", "/after").status == 200


def test_chunked_response_with_trailer(sluice, backend):
    b = backend("a")
    sl = sluice.proxy(b)
    c = sl.client()
    r = c.request("GET", "/_/chunked?n=3000&size=1000&trailer=1")
    assert r.status == 200 and r.body == pattern(3000)
    assert c.request("GET", "/after").status == 200


def test_slow_response_body_is_streamed(sluice, backend):
    b = backend("a")
    sl = sluice.proxy(b)
    c = sl.client()
    r = c.request("GET", "/_/slowbody?ms=500&n=200000")
    assert r.status == 200 and r.body == pattern(200000)


def test_close_delimited_response_then_client_closed(sluice, backend):
    b = backend("a")
    sl = sluice.proxy(b)
    c = sl.client()
    r = c.request("GET", "/_/close?n=300000")
    assert r.status == 200
    assert r.body == pattern(300000)
    assert c.wait_closed(), "client connection left open after a close-delimited response"


@pytest.mark.parametrize("code", [204, 304])
def test_bodiless_status_then_next_request(sluice, backend, code):
    b = backend("a")
    sl = sluice.proxy(b)
    c = sl.client()
    r = c.request("GET", "/_/status?code=%d" % code)
    assert r.status == code
    assert not r.has("Transfer-Encoding")
    r = c.request("GET", "/next")
    assert r.status == 200 and r.json()["target"] == "/next"


def test_head_on_chunked_resource(sluice, backend):
    b = backend("a")
    sl = sluice.proxy(b)
    c = sl.client()
    r = c.request("HEAD", "/_/chunked?n=5000")
    assert r.status == 200 and r.body == b""
    r = c.request("GET", "/next")
    assert r.status == 200 and r.json()["target"] == "/next"


@pytest.mark.parametrize("code", [103, 100])
def test_interim_response_from_backend(sluice, backend, code):
    b = backend("a")
    sl = sluice.proxy(b)
    c = sl.client()
    r = c.request("GET", "/_/early?code=%d" % code)
    assert r.status == 200, r
    assert r.json()["target"] == "/_/early?code=%d" % code
    assert all(100 <= i.status < 200 for i in r.informational)
    assert c.request("GET", "/next").status == 200


def test_expect_100_continue(sluice, backend):
    b = backend("a")
    sl = sluice.proxy(b)
    c = sl.client()
    body = b"the body after 100"
    c.send(build_request("POST", "/expect", headers=[("Expect", "100-continue"),
                                                     ("Content-Length", str(len(body)))]))
    interim = c.read_response(skip_1xx=False)
    assert (interim.version, interim.status) == ("HTTP/1.1", 100), interim
    assert interim.raw_head.startswith(b"HTTP/1.1 100 Continue\r\n"), interim.raw_head
    c.send(body)
    r = c.read_response()
    assert r.status == 200
    req = b.requests[-1]
    assert req.body == body
    assert not req.has("Expect"), "Expect forwarded upstream: %r" % req.headers
    assert c.request("GET", "/next").status == 200


def test_expect_100_continue_chunked(sluice, backend):
    b = backend("a")
    sl = sluice.proxy(b)
    c = sl.client()
    c.send(build_request("POST", "/expect", headers=[("Expect", "100-continue")], chunked=True,
                         body=b"")[:-5])  # head only
    interim = c.read_response(skip_1xx=False)
    assert interim.status == 100
    c.send(encode_chunked(b"chunked after continue", 5))
    r = c.read_response()
    assert r.status == 200
    assert b.requests[-1].body == b"chunked after continue"
    assert not b.requests[-1].has("Expect")


def test_body_split_across_many_writes(sluice, backend):
    b = backend("a")
    sl = sluice.proxy(b)
    c = sl.client()
    body = pattern(5000)
    data = build_request("POST", "/_/echo-body", body=body)
    for i in range(0, len(data), 97):
        c.send(data[i:i + 97])
    r = c.read_response(timeout=TIMEOUT)
    assert r.status == 200 and r.body == body
