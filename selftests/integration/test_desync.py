"""Desync: hostile requests and responses through sluice to a strict recording origin.

Every case checks both ends: what the client got (status, framing, whether its connection
stayed open) and that the origin, parsing with its own strict parser, saw exactly the
requests the client got answers for (same count, targets, body lengths) and no framing
violation (CL+TE, duplicate Content-Length, obs-fold, bare LF, control bytes, Connection
naming a framing header, forbidden trailers, unparseable bytes, unexpected requests).
Issue #8; the cases that failed on main before its fixes say so in their docstring.
"""
import os
import socket
import tempfile
import threading

import pytest

from checks import assert_sluice_error
from client import ConnectionClosed, HTTPClient, build_request, encode_chunked
from daemon import wait_for
from env import SCALE, TIMEOUT
from strict_backend import Reply, StrictBackend

H = b"Host: sluice.test\r\n"
SMUGGLED = b"GET /internal-only HTTP/1.1\r\nHost: sluice.test\r\n\r\n"


@pytest.fixture
def strict():
    """strict(name=None, expect=None) -> a running StrictBackend. Ask for it before
    `sluice` so the daemons stop first."""
    made = []

    def make(name=None, expect=None):
        b = StrictBackend(name, expect)
        made.append(b)
        return b

    yield make
    errors = []
    for b in made:
        b.stop()
        errors += b.errors
    if errors:
        pytest.fail("strict backend script raised: %r" % errors)


def assert_saw(b, expected):
    """The origin saw exactly these (method, target, body_len) requests and nothing else:
    no violation, no unparseable bytes, no request cut short."""
    assert b.settle(), "backend never went quiet:\n" + b.report()
    assert b.summary() == expected, b.report()
    assert not b.violations, b.report()
    assert not b.garbage, b.report()


def assert_saw_no_request(b, head_level=True):
    """Nothing reached the origin (head_level), or at most an incomplete request whose
    head sluice had already streamed (body-level faults): never a complete one."""
    assert b.settle(), "backend never went quiet:\n" + b.report()
    if head_level:
        assert b.saw_nothing(), "bytes reached the backend:\n" + b.report()
    assert not b.requests, "backend got a complete request:\n" + b.report()
    assert not b.violations and not b.garbage, b.report()


def answered(r, method, target, body_len=0):
    """r is the strict origin's JSON answer to exactly this request."""
    assert r.status == 200, r
    j = r.json()
    assert (j["method"], j["target"], j["body_len"]) == (method, target, body_len), j
    return j


def access_entries(sl, n):
    """The access log once it holds n lines (and no more arrive)."""
    sl.wait_access(n, timeout=5 * SCALE)
    assert len(sl.access_lines()) == n, "access log:\n" + "\n".join(sl.access_lines())
    return sl.access_entries()


def assert_proxy_still_clean(sl, b):
    """A fresh connection works and the origin sees exactly that request on top."""
    if b.expected is not None:
        b.expect("/after-check")
    before = b.summary()
    r = sl.client().request("GET", "/after-check")
    answered(r, "GET", "/after-check")
    assert_saw(b, before + [("GET", "/after-check", 0)])


# -- 1. Connection nominating framing headers -------------------------------------------------
def test_connection_naming_content_length_does_not_smuggle(strict, sluice):
    """Failed on main before the fix: Content-Length was dropped as hop-by-hop while the body
    was streamed, so the origin ran GET /internal-only and the access log never showed it."""
    b = strict(expect=["/public", "/after"])
    sl = sluice.proxy(b)
    c = sl.client()
    c.send(b"POST /public HTTP/1.1\r\n" + H + b"Connection: keep-alive, Content-Length\r\n"
           b"Content-Length: %d\r\n\r\n" % len(SMUGGLED) + SMUGGLED)
    answered(c.read_response(), "POST", "/public", len(SMUGGLED))
    answered(c.request("GET", "/after"), "GET", "/after")
    assert c.is_open()
    assert_saw(b, [("POST", "/public", len(SMUGGLED)), ("GET", "/after", 0)])
    post, after = b.requests
    assert post.headers_named("Content-Length") == [str(len(SMUGGLED))], post.headers
    assert post.body == SMUGGLED
    assert post.conn_id == after.conn_id
    e = access_entries(sl, 2)
    assert [(x["method"], x["target"], x["status"]) for x in e] == [
        ("POST", "/public", "200"), ("GET", "/after", "200")], sl.access_lines()


def test_connection_naming_transfer_encoding_does_not_smuggle(strict, sluice):
    """Failed on main before the fix: Transfer-Encoding dropped, chunked body streamed raw."""
    b = strict(expect=["/public", "/after"])
    sl = sluice.proxy(b)
    c = sl.client()
    c.send(b"POST /public HTTP/1.1\r\n" + H + b"Connection: keep-alive, Transfer-Encoding\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n" + encode_chunked(SMUGGLED, 16))
    answered(c.read_response(), "POST", "/public", len(SMUGGLED))
    answered(c.request("GET", "/after"), "GET", "/after")
    assert c.is_open()
    assert_saw(b, [("POST", "/public", len(SMUGGLED)), ("GET", "/after", 0)])
    post = b.requests[0]
    assert post.body == SMUGGLED
    assert post.tokens("Transfer-Encoding") == {"chunked"}, post.headers
    assert access_entries(sl, 2)[0]["target"] == "/public"


@pytest.mark.parametrize("conn_value,closes", [(b"close, Host", True),
                                               (b"keep-alive, Host", False),
                                               (b"Host, Content-Length, Transfer-Encoding",
                                                False)])
def test_connection_naming_host_keeps_host(strict, sluice, conn_value, closes):
    """Failed on main before the fix: `Connection: close, Host` stripped Host."""
    b = strict(expect=["/h", "/after"])
    sl = sluice.proxy(b)
    c = sl.client()
    c.send(b"GET /h HTTP/1.1\r\n" + H + b"Connection: " + conn_value + b"\r\n\r\n")
    answered(c.read_response(), "GET", "/h")
    if closes:
        assert c.wait_closed(), "Connection: close did not close"
        assert_saw(b, [("GET", "/h", 0)])
    else:
        answered(c.request("GET", "/after"), "GET", "/after")
        assert_saw(b, [("GET", "/h", 0), ("GET", "/after", 0)])
    assert b.requests[0].headers_named("Host") == ["sluice.test"], b.requests[0].headers


def test_response_connection_naming_content_length(strict, sluice):
    """Failed on main before the fix: an upstream `Connection: Content-Length` removed the
    response framing on a kept-alive client connection."""
    b = strict(expect=["/resp", "/after"])
    b.on("/resp", Reply(headers=[("Connection", "Content-Length"), ("Content-Length", "5")],
                        body=b"hello"))
    sl = sluice.proxy(b)
    c = sl.client()
    # pipelined, so a response without framing would swallow the next one
    c.send(build_request("GET", "/resp") + build_request("GET", "/after"))
    r = c.read_response()
    assert (r.status, r.framing, r.body) == (200, "length", b"hello"), r
    assert r.headers_named("Content-Length") == ["5"], r.headers
    answered(c.read_response(), "GET", "/after")
    assert c.is_open()
    assert_saw(b, [("GET", "/resp", 0), ("GET", "/after", 0)])


def test_response_connection_naming_transfer_encoding(strict, sluice):
    b = strict(expect=["/resp", "/after"])
    b.on("/resp", Reply(headers=[("Connection", "keep-alive, Transfer-Encoding")],
                        chunks=[b"hello", b" world"]))
    sl = sluice.proxy(b)
    c = sl.client()
    c.send(build_request("GET", "/resp") + build_request("GET", "/after"))
    r = c.read_response()
    assert (r.status, r.body) == (200, b"hello world"), r
    assert r.framing in ("chunked", "length"), r
    answered(c.read_response(), "GET", "/after")
    assert c.is_open()
    assert_saw(b, [("GET", "/resp", 0), ("GET", "/after", 0)])


# -- 2. header name length --------------------------------------------------------------------
def test_header_name_over_64k_starting_with_content_length(strict, sluice):
    """Failed on main before the fix: the 16-bit name length wrapped, so the origin got
    `Content-Length: 40` for a request sluice framed without a body."""
    b = strict()
    sl = sluice.proxy(b, limits={"max_header_bytes": "256k"})
    c = sl.client()
    name = b"Content-Length" + b"x" * 65536
    c.send(b"POST /long HTTP/1.1\r\n" + H + name + b": 40\r\n\r\n" +
           build_request("GET", "/smuggled-in-body"))
    assert_sluice_error(c.read_response(), 431, c)
    assert_saw_no_request(b)
    assert_proxy_still_clean(sl, b)


def test_header_name_over_4096_bytes_gets_431(strict, sluice):
    b = strict()
    sl = sluice.proxy(b)
    c = sl.client()
    c.send(b"GET /long HTTP/1.1\r\n" + H + b"X-" + b"n" * 4095 + b": v\r\n\r\n")
    assert_sluice_error(c.read_response(), 431, c)
    assert_saw_no_request(b)
    assert_proxy_still_clean(sl, b)


def test_header_name_of_4096_bytes_forwarded_whole(strict, sluice):
    b = strict()
    sl = sluice.proxy(b)
    name = "X-" + "n" * 4094
    answered(sl.client().request("GET", "/long", headers=[(name, "v")]), "GET", "/long")
    assert_saw(b, [("GET", "/long", 0)])
    assert b.requests[0].headers_named(name) == ["v"], [n[:20] for n, _ in b.requests[0].headers]


# -- 3. trailers ------------------------------------------------------------------------------
# Connection: close has a test of its own (it stalled the connection)
FORBIDDEN_IN_TRAILER = [("Content-Length", "50"), ("Host", "evil.test"), ("Set-Cookie", "a=b"),
                        ("Authorization", "Bearer x"), ("If-Match", "*"), ("Proxy-Foo", "y"),
                        ("Content-Type", "text/evil"), ("Cache-Control", "no-store")]


def chunked_with_trailers(body, trailers):
    return (encode_chunked(body, 4)[:-2] +
            b"".join(b"%s: %s\r\n" % (n.encode(), v.encode()) for n, v in trailers) + b"\r\n")


@pytest.mark.parametrize("split", [False, True], ids=["one-write", "head-first"])
def test_request_forbidden_trailers_dropped_allowed_forwarded(strict, sluice, split):
    """Failed on main before the fix: Content-Length, Host... in a trailer were forwarded;
    sent in one write with the head, a trailer Content-Length was even rendered into the
    forwarded head next to Transfer-Encoding (CL+TE at the origin)."""
    b = strict(expect=["/tr", "/after"])
    sl = sluice.proxy(b)
    c = sl.client()
    trailers = [("X-Checksum", "abc")] + FORBIDDEN_IN_TRAILER + [("X-Other", "1")]
    head = b"POST /tr HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
    body = chunked_with_trailers(b"hello world", trailers)
    if split:  # the head is on its way upstream before the trailers exist
        c.send(head + body[:8])
        assert wait_for(lambda: b.bytes_received > 0, TIMEOUT), "head never forwarded"
        c.send(body[8:])
    else:
        c.send(head + body)
    answered(c.read_response(), "POST", "/tr", 11)
    answered(c.request("GET", "/after"), "GET", "/after")
    assert_saw(b, [("POST", "/tr", 11), ("GET", "/after", 0)])
    post = b.requests[0]
    assert post.trailers == [("X-Checksum", "abc"), ("X-Other", "1")], post.trailers
    assert not post.has("Content-Length") and post.headers_named("Host") == ["sluice.test"], \
        post.headers


def admin_get(path, target):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT)
    sock.connect(path)
    with HTTPClient(0, sock=sock) as c:
        r = c.request("GET", target, host="localhost")
    assert r.status == 200, r
    return r.json()


def test_dropped_trailers_are_counted(strict, sluice, tmp_path):
    """CONTRACT: dropped trailer fields are counted in the worker stats (trailers_dropped)."""
    b = strict(expect=["/tr"])
    path = os.path.join(tempfile.mkdtemp(prefix="sl-h3-"), "admin.sock")
    sl = sluice.proxy(b, admin={"socket": path})
    assert wait_for(lambda: os.path.exists(path), 5 * SCALE), sl.stderr()[-2000:]
    c = sl.client()
    c.send(b"POST /tr HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n" +
           chunked_with_trailers(b"hello", [("Content-Length", "5"), ("Host", "x"),
                                            ("X-Ok", "1"), ("Set-Cookie", "a")]))
    answered(c.read_response(), "POST", "/tr", 5)
    assert_saw(b, [("POST", "/tr", 5)])

    def dropped():
        return sum(w.get("trailers_dropped", 0) for w in admin_get(path, "/workers"))
    assert wait_for(lambda: dropped() == 3, 5 * SCALE), admin_get(path, "/workers")


def test_connection_close_trailer_does_not_stall_the_connection(strict, sluice):
    """Found on main: a request trailer `Connection: close` left the client connection open
    (the response did not say close) but sluice never answered the next request on it."""
    b = strict(expect=["/tr", "/after"])
    sl = sluice.proxy(b)
    c = sl.client()
    c.send(b"POST /tr HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n" +
           chunked_with_trailers(b"hello", [("Connection", "close")]))
    r = c.read_response()
    answered(r, "POST", "/tr", 5)
    if "close" in r.connection_tokens():
        assert c.wait_closed()
        assert_saw(b, [("POST", "/tr", 5)])
    else:
        answered(c.request("GET", "/after"), "GET", "/after")
        assert_saw(b, [("POST", "/tr", 5), ("GET", "/after", 0)])


def test_transfer_encoding_in_request_trailer_never_forwarded(strict, sluice):
    """CONTRACT says dropped; llhttp may refuse the message instead (400). Either way the
    origin must never see it, in the head or the trailer."""
    b = strict(expect=["/tr", "/after-check"])
    sl = sluice.proxy(b)
    c = sl.client()
    c.send(b"POST /tr HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n" +
           chunked_with_trailers(b"hello", [("Transfer-Encoding", "chunked"), ("X-T", "1")]))
    r = c.read_response()
    if r.status == 400:
        assert_sluice_error(r, 400, c)
        assert b.settle() and not b.requests, b.report()
    else:
        answered(r, "POST", "/tr", 5)
        assert_saw(b, [("POST", "/tr", 5)])
        assert b.requests[0].trailers == [("X-T", "1")], b.requests[0].trailers
    assert not b.violations and not b.garbage, b.report()
    assert_proxy_still_clean(sl, b)


def test_response_forbidden_trailers_dropped(strict, sluice):
    b = strict(expect=["/rt", "/after"])
    b.on("/rt", Reply(headers=[("Trailer", "X-Checksum")], chunks=[b"hello", b" world"],
                      trailers=[("X-Checksum", "abc")] + FORBIDDEN_IN_TRAILER +
                      [("X-Other", "1")]))
    sl = sluice.proxy(b)
    c = sl.client()
    c.send(build_request("GET", "/rt") + build_request("GET", "/after"))
    r = c.read_response()
    assert (r.status, r.framing, r.body) == (200, "chunked", b"hello world"), r
    assert r.trailers == ["X-Checksum: abc", "X-Other: 1"], r.trailers
    answered(c.read_response(), "GET", "/after")
    assert_saw(b, [("GET", "/rt", 0), ("GET", "/after", 0)])


def test_response_trailers_not_sent_to_http10_client(strict, sluice):
    b = strict(expect=["/rt"])
    b.on("/rt", Reply(headers=[("Trailer", "X-Checksum")], chunks=[b"hello", b" world"],
                      trailers=[("X-Checksum", "abc"), ("Content-Length", "50")]))
    sl = sluice.proxy(b)
    c = sl.client()
    c.send(b"GET /rt HTTP/1.0\r\n" + H + b"\r\n")
    r = c.read_response()
    assert r.status == 200 and r.body == b"hello world", r
    assert r.framing in ("length", "close") and not r.has("Transfer-Encoding"), r
    assert c.wait_closed()
    assert c.buf == b"", "bytes after the response: %r" % c.buf
    assert_saw(b, [("GET", "/rt", 0)])


# -- 4. max_body_size counts every byte of chunked framing ------------------------------------
@pytest.mark.parametrize("limit", [0, 1024])
def test_request_chunk_extension_over_4k_rejected(strict, sluice, limit):
    """400 for the extension; under max_body_size 1024 the same 5000 framing bytes are also
    over the body limit, and CONTRACT does not order the two checks: 400 or 413 there."""
    b = strict()
    sl = sluice.proxy(b, limits={"max_body_size": limit})
    c = sl.client()
    c.send(b"POST /ext HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
           b"5;" + b"e" * 5000 + b"\r\nhello\r\n0\r\n\r\n")
    r = c.read_response()
    assert_sluice_error(r, 400 if limit == 0 or r.status != 413 else 413, c)
    assert_saw_no_request(b, head_level=False)
    assert_proxy_still_clean(sl, b)


def test_many_small_chunk_extensions_over_limit_get_413(strict, sluice):
    """Failed on main before the fix: only decoded bytes counted (100 here)."""
    b = strict()
    sl = sluice.proxy(b, limits={"max_body_size": 1024})
    c = sl.client()
    chunks = b"".join(b"1;" + b"e" * 500 + b"\r\nx\r\n" for _ in range(100))
    c.send(b"POST /ext HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n" + chunks +
           b"0\r\n\r\n", ignore_errors=True)
    assert_sluice_error(c.read_response(), 413, c)
    assert_saw_no_request(b, head_level=False)
    assert_proxy_still_clean(sl, b)


def test_megabytes_of_chunk_extensions_get_413(strict, sluice):
    """The issue's case (8 MB of extensions passed a 1 KiB limit), with each extension
    under the 4 KiB cap and the decoded data (1000 bytes) under the limit: 4 MB on the
    wire. Failed on main before the fix (200)."""
    b = strict()
    sl = sluice.proxy(b, limits={"max_body_size": 1024})
    c = sl.client()
    c.send(b"POST /ext HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n")
    chunk = b"1;" + b"e" * 4000 + b"\r\nx\r\n"
    stop = threading.Event()

    def pump():  # the client keeps sending until sluice stops reading or closes
        s = c.sock.dup()
        s.settimeout(1)
        try:
            for i in range(0, 1000, 50):
                if stop.is_set():
                    break
                s.sendall(chunk * 50)
            s.sendall(b"0\r\n\r\n")
        except OSError:
            pass
        finally:
            s.close()
    t = threading.Thread(target=pump, daemon=True)
    t.start()
    try:
        r = c.read_response(timeout=10 * SCALE)
    finally:
        stop.set()
        t.join(5)
    assert r.status == 413, r
    assert "close" in r.connection_tokens(), r.raw_head
    assert_saw_no_request(b, head_level=False)
    assert_proxy_still_clean(sl, b)


def test_chunked_body_under_limit_with_framing_passes(strict, sluice):
    b = strict()
    sl = sluice.proxy(b, limits={"max_body_size": 1024})
    c = sl.client()
    data = b"d" * 900
    c.send(b"POST /ok HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n" +
           encode_chunked(data, 300))
    answered(c.read_response(), "POST", "/ok", 900)
    assert_saw(b, [("POST", "/ok", 900)])
    assert b.requests[0].body == data


# -- 5. a long chunk extension from the upstream ----------------------------------------------
LONG_EXT_RESPONSE = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;" +
                     b"e" * 100000 + b"\r\nhello\r\n0\r\n\r\n")


@pytest.mark.parametrize("version", ["HTTP/1.0", "HTTP/1.1"])
def test_upstream_100k_chunk_extension_gets_502_at_once(strict, sluice, version):
    """Failed on main before the fix (HTTP/1.0): stalled until client_body, then truncated.
    The client waits TIMEOUT seconds, far below the 60 s client_body/upstream_idle."""
    b = strict(expect=["/ext", "/after-check"])
    b.on("/ext", Reply(raw=LONG_EXT_RESPONSE))
    sl = sluice.proxy(b, timeouts={"client_body": "60s", "upstream_idle": "60s"})
    c = sl.client()
    c.send(b"GET /ext %s\r\n" % version.encode() + H + b"\r\n")
    try:
        r = c.read_response()
    except ConnectionClosed as e:
        raise AssertionError("connection closed without a 502: %r" % e.partial[:200])
    assert_sluice_error(r, 502, c)
    assert_saw(b, [("GET", "/ext", 0)])
    assert_proxy_still_clean(sl, b)
    assert b.requests[-1].conn_id != b.requests[0].conn_id, "bad upstream connection pooled"


# -- 6. access log bounds ---------------------------------------------------------------------
def access_line(sl):
    with open(sl.access_log, "rb") as f:
        raw = f.read()
    lines = raw.split(b"\n")
    assert lines[-1] == b"", "access log does not end in a newline: %r" % raw[-100:]
    lines = lines[:-1]
    assert len(lines) == 1, lines
    line = lines[0]
    assert len(line) + 1 <= 4096, "access log line of %d bytes" % (len(line) + 1)
    assert b"\0" not in line, line
    assert all(0x20 <= ch < 0x7f for ch in line), "non-printable byte in %r" % line[:300]
    return line


@pytest.mark.parametrize("n", [1000, 5000])
def test_access_log_line_bounded_for_0xff_target(strict, sluice, n):
    """Failed on main before the fix: the line overran its 4096-byte reservation. A target
    of 0xff bytes is not HTTP (RFC 9112 3.2: visible ASCII): strict llhttp refuses it with
    400 before the target is known, as HAProxy does; the line must still be clean."""
    b = strict()
    sl = sluice.proxy(b)
    target = b"/" + b"\xff" * n
    c = sl.client()
    c.send(b"GET " + target + b" HTTP/1.1\r\n" + H + b"\r\n")
    r = c.read_response()
    assert_sluice_error(r, 400, c)
    assert_saw_no_request(b)
    sl.wait_access(1, timeout=5 * SCALE)
    line = access_line(sl)
    e = sl.access_entries()[0]
    assert e.get("status") == "400" and "time" in e, line
    assert b"\xff" not in line, line  # raw bytes never reach the log
    answered(sl.client().request("GET", "/next"), "GET", "/next")
    assert sl.wait_access(2)[-1].get("target") == "/next"


@pytest.mark.parametrize("n", [1000, 5000])
def test_access_log_line_bounded_for_escaped_target(strict, sluice, n):
    """The escaping path: a target of quotes and backslashes (visible, accepted by llhttp)
    doubles when escaped; it is cut at 1 KiB with a marker and the line stays bounded."""
    b = strict()
    sl = sluice.proxy(b, limits={"max_target_length": "16k"})
    target = b"/" + b'"\\' * (n // 2)
    c = sl.client()
    c.send(b"GET " + target + b" HTTP/1.1\r\n" + H + b"\r\n")
    r = c.read_response()
    sl.wait_access(1, timeout=5 * SCALE)
    line = access_line(sl)
    e = sl.access_entries()[0]
    assert e.get("status") == str(r.status), line
    assert e.get("method") == "GET" and "time" in e, line
    assert b'target="/\\"\\\\' in line, line[:200]
    assert b'..." status=' in line, "truncated target without a marker: %r" % line[:200]
    answered(sl.client().request("GET", "/next"), "GET", "/next")
    assert sl.wait_access(2)[-1].get("target") == "/next"


# -- request-line grammar (RFC 9112 section 3) ------------------------------------------------
REQUEST_LINES = [
    ("two-sp-after-method", b"GET  / HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("two-sp-before-version", b"GET /  HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("tab-separator", b"GET\t/ HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("http09-no-version", b"GET /\r\n" + H + b"\r\n", 400),
    ("http2", b"GET / HTTP/2.0\r\n" + H + b"\r\n", 505),
    ("http12", b"GET / HTTP/1.2\r\n" + H + b"\r\n", 505),
    ("http3", b"GET / HTTP/3.0\r\n" + H + b"\r\n", 505),
]


@pytest.mark.parametrize("raw,status", [(r, s) for _, r, s in REQUEST_LINES],
                         ids=[i for i, _, _ in REQUEST_LINES])
def test_request_line_grammar(strict, sluice, raw, status):
    b = strict()
    sl = sluice.proxy(b)
    c = sl.client()
    c.send(raw)
    assert_sluice_error(c.read_response(), status, c)
    assert_saw_no_request(b)
    assert_proxy_still_clean(sl, b)


def test_connect_gets_405_with_allow(strict, sluice):
    b = strict()
    sl = sluice.proxy(b)
    c = sl.client()
    c.send(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
    r = c.read_response()
    assert r.status == 405, r
    allow = {t.strip() for t in r.header("Allow", "").split(",") if t.strip()}
    assert {"GET", "HEAD", "POST"} <= allow and "CONNECT" not in allow, r.headers
    if "close" in r.connection_tokens():
        assert c.wait_closed()
        assert_saw_no_request(b)
    else:  # kept: the next request on it is the first the origin sees
        answered(c.request("GET", "/same-conn"), "GET", "/same-conn")
        assert_saw(b, [("GET", "/same-conn", 0)])
    assert_proxy_still_clean(sl, b)


def test_options_asterisk_forwarded(strict, sluice):
    b = strict()
    sl = sluice.proxy(b)
    c = sl.client()
    c.send(b"OPTIONS * HTTP/1.1\r\n" + H + b"\r\n")
    answered(c.read_response(), "OPTIONS", "*")
    assert_saw(b, [("OPTIONS", "*", 0)])
    assert b.requests[0].request_line == b"OPTIONS * HTTP/1.1"
    assert c.is_open()


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
def test_asterisk_form_only_for_options(strict, sluice, method):
    """RFC 9112 3.2.4: asterisk-form is only for OPTIONS; `GET *` and `POST *` were
    forwarded on main."""
    b = strict()
    sl = sluice.proxy(b)
    c = sl.client()
    c.send(b"%s * HTTP/1.1\r\n" % method.encode() + H + b"Content-Length: 0\r\n\r\n")
    assert_sluice_error(c.read_response(), 400, c)
    assert_saw_no_request(b)
    assert_proxy_still_clean(sl, b)


def test_absolute_form_authority_wins_over_host(strict, sluice):
    """RFC 9112 3.2.2 and docs/configuration.md (routing): with an absolute-form target the
    authority is the host. The route is chosen by it and the origin gets it as Host, never
    the Host header the client sent alongside."""
    a = strict(expect=["/x"])
    o = strict(expect=["/x"])
    sl = sluice.start([{"host": "other.test", "upstream": "o"}, {"upstream": "u"}],
                      {"u": {"servers": [{"address": a.address}]},
                       "o": {"servers": [{"address": o.address}]}})
    c = sl.client()
    c.send(b"GET http://other.test/x HTTP/1.1\r\nHost: sluice.test\r\n\r\n")
    answered(c.read_response(), "GET", "/x")
    assert_saw(o, [("GET", "/x", 0)])
    assert_saw(a, [])
    assert o.requests[0].headers_named("Host") == ["other.test"], o.requests[0].headers


def test_absolute_form_with_userinfo_rejected(strict, sluice):
    """Found on main: `GET http://a@other.test/x` was routed as host "a@other.test" (not
    other.test, so a host route was bypassed) and forwarded with `Host: a@other.test`, which
    an origin that drops userinfo reads as other.test. RFC 9110 4.2.4: treat userinfo in an
    http(s) URI as an error."""
    a = strict()
    sl = sluice.start([{"host": "other.test", "respond": {"status": 403, "body": "no\n"}},
                       {"upstream": "u"}], {"u": {"servers": [{"address": a.address}]}})
    c = sl.client()
    c.send(b"GET http://a@other.test/x HTTP/1.1\r\nHost: other.test\r\n\r\n")
    assert_sluice_error(c.read_response(), 400, c)
    assert_saw_no_request(a)


@pytest.mark.parametrize("host", [b"sluice.test, other.test", b"sluice .test", b"a@other.test",
                                  b"other.test/x"],
                         ids=["list", "space", "userinfo", "slash"])
def test_invalid_host_value_rejected(strict, sluice, host):
    """Found on main: forwarded as is, and routed by the whole value (so a host route for
    other.test is bypassed) while an origin may pick other.test out of it. RFC 9112 3.2: a
    Host field with an invalid value gets 400."""
    a = strict()
    sl = sluice.start([{"host": "other.test", "respond": {"status": 403, "body": "no\n"}},
                       {"upstream": "u"}], {"u": {"servers": [{"address": a.address}]}})
    c = sl.client()
    c.send(b"GET /x HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
    assert_sluice_error(c.read_response(), 400, c)
    assert_saw_no_request(a)


def test_unknown_transfer_coding_not_dropped(strict, sluice):
    """Found on main: `Transfer-Encoding: gzip, chunked` was forwarded as `chunked` alone, so
    the origin took gzip bytes for the body. Either refuse it (501/400, RFC 9112 6.1) or
    forward the codings sluice did not remove."""
    b = strict(expect=["/gz", "/after-check"])
    sl = sluice.proxy(b)
    c = sl.client()
    c.send(b"POST /gz HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip, chunked\r\n\r\n"
           b"5\r\nhello\r\n0\r\n\r\n")
    r = c.read_response()
    if r.status in (400, 501):
        assert_sluice_error(r, r.status, c)
        assert_saw_no_request(b)
    else:
        answered(r, "POST", "/gz", 5)
        b.settle()
        te = [t.strip().lower() for v in b.requests[0].headers_named("Transfer-Encoding")
              for t in v.split(",")]
        assert te == ["gzip", "chunked"], b.requests[0].headers
    assert_proxy_still_clean(sl, b)


def test_unknown_transfer_coding_in_response_not_dropped(strict, sluice):
    """Found on main: an upstream `Transfer-Encoding: gzip, chunked` reached the client as
    `chunked` alone (gzip bytes presented as the body). 502, or the codings kept."""
    b = strict(expect=["/gz", "/after-check"])
    b.on("/gz", Reply(raw=b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                         b"5\r\nhello\r\n0\r\n\r\n"))
    sl = sluice.proxy(b)
    c = sl.client()
    r = c.request("GET", "/gz")
    if r.status == 502:
        assert_sluice_error(r, 502, c)
    else:
        te = [t.strip().lower() for v in r.headers_named("Transfer-Encoding")
              for t in v.split(",")]
        assert te == ["gzip", "chunked"], r.raw_head
    assert_saw(b, [("GET", "/gz", 0)])
    assert_proxy_still_clean(sl, b)


def test_fragment_in_request_target_not_forwarded(strict, sluice):
    """RFC 9112 3.2: a request target has no fragment; found forwarded as `GET /a#frag`."""
    b = strict(expect=["/a", "/after-check"])
    sl = sluice.proxy(b)
    c = sl.client()
    c.send(b"GET /a#frag HTTP/1.1\r\n" + H + b"\r\n")
    r = c.read_response()
    if r.status == 400:
        assert_sluice_error(r, 400, c)
        assert_saw_no_request(b)
    else:
        answered(r, "GET", "/a")
        assert_saw(b, [("GET", "/a", 0)])
    assert_proxy_still_clean(sl, b)


# -- pipelines mixing the above ---------------------------------------------------------------
def pipeline_in_sync(strict, sluice, parts):
    """Send every (method, target, body_len, raw) in one write; each answer must be the
    origin's answer to that very request, in order, on one upstream connection."""
    b = strict(expect=[t for _, t, _, _ in parts])
    sl = sluice.proxy(b)
    c = sl.client()
    c.send(b"".join(raw for _, _, _, raw in parts))
    sent = [(m, t, n) for m, t, n, _ in parts]
    for m, t, n in sent:
        answered(c.read_response(), m, t, n)
    assert c.is_open()
    assert_saw(b, sent)
    assert len({r.conn_id for r in b.requests}) == 1
    e = access_entries(sl, len(sent))
    assert [(x["method"], x["target"]) for x in e] == [(m, t) for m, t, _ in sent]


HOSTILE_BUT_VALID = [
    ("GET", "/p1", 0, build_request("GET", "/p1")),
    ("POST", "/public", len(SMUGGLED), b"POST /public HTTP/1.1\r\n" + H +
     b"Connection: Content-Length\r\nContent-Length: %d\r\n\r\n" % len(SMUGGLED) + SMUGGLED),
    ("POST", "/te", len(SMUGGLED), b"POST /te HTTP/1.1\r\n" + H +
     b"Connection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n" +
     encode_chunked(SMUGGLED, 7)),
    ("POST", "/tr", 11, b"POST /tr HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n" +
     chunked_with_trailers(b"hello world", [("Content-Length", "5"), ("X-T", "1")])),
    ("GET", "/h", 0, b"GET /h HTTP/1.1\r\n" + H + b"Connection: Host\r\n\r\n"),
    ("GET", "/p2", 0, build_request("GET", "/p2")),
]


def test_pipeline_of_hostile_but_valid_requests_stays_in_sync(strict, sluice):
    pipeline_in_sync(strict, sluice, HOSTILE_BUT_VALID)


def test_pipeline_with_options_asterisk_stays_in_sync(strict, sluice):
    parts = list(HOSTILE_BUT_VALID)
    parts.insert(2, ("OPTIONS", "*", 0, b"OPTIONS * HTTP/1.1\r\n" + H + b"\r\n"))
    pipeline_in_sync(strict, sluice, parts)


def test_long_mixed_pipeline_stays_in_sync(strict, sluice):
    """300 requests in one write (Content-Length, chunked with trailers, Connection naming
    framing headers), so requests straddle sluice's reads at every offset."""
    parts = []
    for i in range(300):
        body = bytes([0x41 + i % 26]) * (i * 37 % 700)
        k = i % 4
        if k == 0:
            parts.append(("GET", "/g%d" % i, 0, build_request("GET", "/g%d" % i)))
        elif k == 1:
            parts.append(("POST", "/c%d" % i, len(body), build_request(
                "POST", "/c%d" % i, headers=[("Connection", "Content-Length")], body=body)))
        elif k == 2:
            parts.append(("POST", "/t%d" % i, len(body),
                          b"POST /t%d HTTP/1.1\r\n" % i + H +
                          b"Connection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n" +
                          chunked_with_trailers(body, [("X-I", str(i)), ("Host", "x")])))
        else:
            parts.append(("GET", "/h%d" % i, 0, b"GET /h%d HTTP/1.1\r\n" % i + H +
                          b"Connection: keep-alive, Host\r\n\r\n"))
    pipeline_in_sync(strict, sluice, parts)


@pytest.mark.parametrize("first", [
    build_request("GET", "/p1", headers=[("Connection", "close")]),
    build_request("GET", "/p1", version="HTTP/1.0"),
    build_request("GET", "/p1", headers=[("Connection", "close, Content-Length")]),
], ids=["close", "http10", "close-naming-cl"])
def test_pipeline_after_close_not_forwarded(strict, sluice, first):
    """Bytes after a request that closes the connection are never forwarded."""
    b = strict(expect=["/p1"])
    sl = sluice.proxy(b)
    c = sl.client()
    c.send(first + build_request("GET", "/never") + build_request("GET", "/never2"))
    answered(c.read_response(), "GET", "/p1")
    assert c.wait_closed(), "connection kept after Connection: close"
    assert c.buf == b"", c.buf[:200]
    assert_saw(b, [("GET", "/p1", 0)])


PIPELINE_STOPPERS = [
    ("then-cl-te", b"POST /x HTTP/1.1\r\n" + H + b"Content-Length: 6\r\nTransfer-Encoding: chunked"
     b"\r\n\r\n0\r\n\r\nG", 400),
    ("then-two-sp", b"GET  /x HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("then-http2", b"GET /x HTTP/2.0\r\n" + H + b"\r\n", 505),
    ("then-long-name", b"GET /x HTTP/1.1\r\n" + H + b"X-" + b"n" * 5000 + b": v\r\n\r\n", 431),
]


@pytest.mark.parametrize("bad,status", [(r, s) for _, r, s in PIPELINE_STOPPERS],
                         ids=[i for i, _, _ in PIPELINE_STOPPERS])
def test_pipeline_stops_at_the_hostile_request(strict, sluice, bad, status):
    b = strict(expect=["/p1", "/p2"])
    sl = sluice.proxy(b)
    c = sl.client()
    c.send(build_request("GET", "/p1") + build_request("GET", "/p2") + bad +
           build_request("GET", "/never"))
    answered(c.read_response(), "GET", "/p1")
    answered(c.read_response(), "GET", "/p2")
    assert_sluice_error(c.read_response(), status, c)
    assert_saw(b, [("GET", "/p1", 0), ("GET", "/p2", 0)])


# -- the framing rejections that already worked stay ------------------------------------------
EXISTING = [
    ("cl-te", b"POST /x HTTP/1.1\r\n" + H + b"Content-Length: 6\r\nTransfer-Encoding: chunked"
     b"\r\n\r\n0\r\n\r\nG", True),
    ("differing-cl", b"POST /x HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nContent-Length: 6"
     b"\r\n\r\nhello!", True),
    ("obs-fold", b"GET /x HTTP/1.1\r\n" + H + b"X-Foo: a\r\n b\r\n\r\n", True),
    ("space-before-colon", b"POST /x HTTP/1.1\r\n" + H + b"Content-Length : 5\r\n\r\nhello",
     True),
    ("bad-chunk-size", b"POST /x HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
     b"zz\r\nhello\r\n0\r\n\r\n", False),
]


@pytest.mark.parametrize("raw,head_level", [(r, h) for _, r, h in EXISTING],
                         ids=[i for i, _, _ in EXISTING])
def test_existing_framing_rejections_stay(strict, sluice, raw, head_level):
    b = strict(expect=["/good", "/after-check"])
    sl = sluice.proxy(b)
    c = sl.client()
    answered(c.request("GET", "/good"), "GET", "/good")
    c.send(raw)
    assert_sluice_error(c.read_response(), 400, c)
    assert b.settle()
    assert b.summary() == [("GET", "/good", 0)], b.report()
    assert not b.violations and not b.garbage, b.report()
    if head_level:
        assert not b.partial, b.report()
    assert_proxy_still_clean(sl, b)


LENIENT_OR_REJECTED = [
    ("bare-lf-request-line", b"GET /x HTTP/1.1\n" + H + b"\r\n"),
    ("bare-lf-end-of-head", b"GET /x HTTP/1.1\r\n" + H + b"\n"),
    ("bare-lf-header", b"GET /x HTTP/1.1\r\n" + H + b"X-A: 1\nX-B: 2\r\n\r\n"),
    ("bare-lf-chunk-size", b"POST /x HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
     b"5\nhello\r\n0\r\n\r\n"),
    ("bare-lf-last-chunk", b"POST /x HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
     b"5\r\nhello\r\n0\n\n"),
    ("ctl-in-chunk-ext", b"POST /x HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
     b"5;a=\x01\r\nhello\r\n0\r\n\r\n"),
    ("bare-lf-trailer", b"POST /x HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
     b"5\r\nhello\r\n0\r\nX-T: 1\nX-U: 2\r\n\r\n"),
    ("bare-lf-ending-trailers", b"POST /x HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked"
     b"\r\n\r\n5\r\nhello\r\n0\r\nContent:6440\xff\xff x\r\n\n"),
    ("ctl-in-trailer", b"POST /x HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
     b"5\r\nhello\r\n0\r\nX-T: a\x00b\r\n\r\n"),
    ("obs-fold-trailer", b"POST /x HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
     b"5\r\nhello\r\n0\r\nX-T: 1\r\n 2\r\n\r\n"),
    ("leading-crlf", b"\r\nGET /x HTTP/1.1\r\n" + H + b"\r\n"),
    ("cl-trailing-space", b"POST /x HTTP/1.1\r\n" + H + b"Content-Length: 5 \r\n\r\nhello"),
    ("del-in-value", b"GET /x HTTP/1.1\r\n" + H + b"X-A: a\x7fb\r\n\r\n"),
]


@pytest.mark.parametrize("raw", [r for _, r in LENIENT_OR_REJECTED],
                         ids=[i for i, _ in LENIENT_OR_REJECTED])
def test_lenient_input_is_rejected_or_normalised(strict, sluice, raw):
    """RFC 9112 lets a recipient accept some of these; what it forwards must then be
    clean HTTP/1.1 (the strict origin flags bare LF, obs-fold, control bytes)."""
    b = strict(expect=["/x", "/after-check"])
    sl = sluice.proxy(b)
    c = sl.client()
    c.send(raw)
    r = c.read_response()
    if r.status == 400:
        assert_sluice_error(r, 400, c)
        assert b.settle() and not b.requests, b.report()
        assert not b.violations and not b.garbage, b.report()
    else:
        body_len = len(b"hello") if raw.startswith(b"POST") else 0
        answered(r, raw.split(b" ")[0].strip().decode(), "/x", body_len)
        assert_saw(b, [(raw.split(b" ")[0].strip().decode(), "/x", body_len)])
    assert_proxy_still_clean(sl, b)


@pytest.mark.parametrize("end", [b"0\r\nX-T: 1\r\n\n", b"0\r\n\n"], ids=["field", "empty"])
def test_bare_lf_ending_trailers_leaves_next_request_intact(strict, sluice, end):
    """Found on the tree at d0dc6ab: the trailer filter rewrote the final bare LF as CRLF one
    byte past the trailer section, over the first byte of the pipelined next request (which
    then got 400); at the end of the buffer it is the fuzzers' heap overflow."""
    b = strict(expect=["/x", "/next", "/after-check"])
    sl = sluice.proxy(b)
    c = sl.client()
    c.send(b"POST /x HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n" +
           end + build_request("GET", "/next"))
    r = c.read_response()
    if r.status == 400:
        assert_sluice_error(r, 400, c)
        assert b.settle() and not b.requests, b.report()
    else:
        answered(r, "POST", "/x", 5)
        answered(c.read_response(), "GET", "/next")
        assert_saw(b, [("POST", "/x", 5), ("GET", "/next", 0)])
    assert_proxy_still_clean(sl, b)


def test_identical_duplicate_content_length_never_forwarded_twice(strict, sluice):
    b = strict(expect=["/x", "/after-check"])
    sl = sluice.proxy(b)
    c = sl.client()
    c.send(b"POST /x HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello")
    r = c.read_response()
    if r.status == 400:
        assert_sluice_error(r, 400, c)
        assert_saw_no_request(b)
    else:
        answered(r, "POST", "/x", 5)
        assert_saw(b, [("POST", "/x", 5)])  # a duplicate CL forwarded is a violation
    assert_proxy_still_clean(sl, b)


@pytest.mark.parametrize("raw", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok!",
    b"HTTP/1.1 200 OK\r\nX-Foo: a\r\n b\r\nContent-Length: 2\r\n\r\nok",
], ids=["cl-te", "differing-cl", "obs-fold"])
def test_existing_response_rejections_stay(strict, sluice, raw):
    b = strict(expect=["/evil", "/after-check"])
    b.on("/evil", Reply(raw=raw))
    sl = sluice.proxy(b)
    c = sl.client()
    c.send(build_request("GET", "/evil"))
    assert_sluice_error(c.read_response(), 502, c)
    assert_saw(b, [("GET", "/evil", 0)])
    assert_proxy_still_clean(sl, b)
    assert b.requests[-1].conn_id != b.requests[0].conn_id, "bad upstream connection pooled"


# -- the oracle itself: the strict origin must catch what it is here to catch ------------------
ORACLE = [
    (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
     "both Content-Length and Transfer-Encoding"),
    (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1\r\nContent-Length: 1\r\n\r\nx",
     "duplicate Content-Length"),
    (b"GET / HTTP/1.1\r\n" + H + b"X-A: 1\r\n 2\r\n\r\n", "obs-fold"),
    (b"GET / HTTP/1.1\n" + H + b"\r\n", "bare LF"),
    (b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x01b\r\n\r\n", "control byte"),
    (b"GET / HTTP/1.1\r\n" + H + b"Connection: keep-alive, Content-Length\r\n\r\n",
     "Connection names content-length"),
    (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n0\r\nHost: x\r\n\r\n",
     "forbidden trailer field Host"),
    (b"GET  / HTTP/1.1\r\n" + H + b"\r\n", "bad request line"),
    (b"GET / HTTP/1.1\r\n" + H + b"\r\n" + SMUGGLED, "unexpected request"),
    (b"hello\r\n\r\n", "bad request line"),
]


@pytest.mark.parametrize("raw,want", ORACLE, ids=[w for _, w in ORACLE])
def test_strict_backend_flags(strict, raw, want):
    b = strict(expect=["/"])
    with HTTPClient(b.port) as c:
        c.send(raw)
        assert wait_for(lambda: b.violations, TIMEOUT), b.report()
    assert b.settle()
    assert any(want in v for _, _, v in b.violations), b.report()


# -- a broken origin: what sluice passes on is clean, and a connection that said too much dies --
BROKEN_RESPONSES = [
    # (id, method, raw response, the upstream connection is spoiled by bytes past the response)
    ("head-with-body", "HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", True),
    ("204-with-body", "GET", b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello", True),
    ("304-chunked-body", "GET", b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"5\r\nhello\r\n0\r\n\r\n", True),
    ("bytes-after-chunked", "GET", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"2\r\nok\r\n0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nSMUGGLED", True),
    ("trailer-obs-fold", "GET", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"5\r\nhello\r\n0\r\nX-T: 1\r\n 2\r\n\r\n", False),
    ("trailer-bare-lf", "GET", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"5\r\nhello\r\n0\r\nX-T: 1\nX-U: 2\r\n\r\n", False),
    ("trailer-nul", "GET", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"5\r\nhello\r\n0\r\nX-T: a\x00b\r\n\r\n", False),
    ("trailers-end-bare-lf", "GET", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"5\r\nhello\r\n0\r\nX-T: 1\r\n\n", False),
    ("trailer-ctl", "GET", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"5\r\nhello\r\n0\r\nX-T: a\x01b\r\n\r\n", False),
    ("chunk-size-bare-lf", "GET", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"5\nhello\r\n0\r\n\r\n", False),
    ("chunk-ext-ctl", "GET", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"5;a=\x01\r\nhello\r\n0\r\n\r\n", False),
    ("connection-close-content-length", "GET", b"HTTP/1.1 200 OK\r\nConnection: close, "
     b"Content-Length\r\nContent-Length: 5\r\n\r\nhello", True),
]


@pytest.mark.parametrize("method,raw,spoiled", [(m, r, s) for _, m, r, s in BROKEN_RESPONSES],
                         ids=[i for i, _, _, _ in BROKEN_RESPONSES])
def test_broken_origin_response_passed_on_clean_or_502(strict, sluice, method, raw, spoiled):
    b = strict(expect=["/bad", "/after", "/after-check"])
    b.on("/bad", Reply(raw=raw))
    sl = sluice.proxy(b)
    c = sl.client()
    c.send(build_request(method, "/bad"))
    r = c.read_response(method=method)
    if r.status == 502:
        assert_sluice_error(r, 502, c)
    else:
        assert r.status == int(raw[9:12]), r
        for t in r.trailers:  # client.py checks heads; trailers are checked here
            assert t[:1] not in (" ", "\t") and not any(ord(ch) < 0x20 for ch in t), r.trailers
        if r.status not in (204, 304) and method != "HEAD":
            assert r.body == (b"ok" if b"\n2\r\nok" in raw else b"hello"), r
        answered(c.request("GET", "/after"), "GET", "/after")
        assert_saw(b, [("GET" if method == "GET" else "HEAD", "/bad", 0), ("GET", "/after", 0)])
        if spoiled:
            assert b.requests[1].conn_id != b.requests[0].conn_id, \
                "upstream connection reused after bytes past its response"
    assert_proxy_still_clean(sl, b)


# -- found by the adversarial review of the landing ------------------------------------------
def test_request_trailer_after_a_pause_at_the_last_chunk(strict, sluice):
    """Failed before the fix: the last chunk ending a read let the input buffer restart
    under a held trailer offset; the trailer's CRLF then made sluice scan and forward stale
    or unmapped memory (SEGV under ASan, smuggled requests, another client's headers)."""
    b = strict(expect=["/t", "/after"])
    sl = sluice.proxy(b)
    c = sl.client()
    body = b"30\r\nGET /admin?smuggled HTTP/1.1\r\nHost: internal\r\n\r\n\r\n0\r\n"
    c.send(b"POST /t HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n" + body)
    assert wait_for(lambda: b.bytes_received >= len(body), TIMEOUT), "body never forwarded"
    c.send(b"\r\n")
    answered(c.read_response(), "POST", "/t", 0x30)
    answered(c.request("GET", "/after"), "GET", "/after")
    assert_saw(b, [("POST", "/t", 0x30), ("GET", "/after", 0)])


def test_response_trailer_after_a_pause_at_the_last_chunk(sluice):
    """Failed before the fix (SIGSEGV): the same with an upstream that pauses after 0\\r\\n."""
    lsn = socket.socket()
    lsn.bind(("127.0.0.1", 0))
    lsn.listen(4)
    go = threading.Event()

    def origin():
        conn, _ = lsn.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n")
            go.wait(TIMEOUT)
            conn.sendall(b"X-Sum: 1\r\nContent-Length: 9\r\n\r\n")
            conn.recv(65536)
    t = threading.Thread(target=origin, daemon=True)
    t.start()
    sl = sluice.start([{"upstream": "u"}],
                      {"u": {"servers": [{"address": "127.0.0.1:%d" % lsn.getsockname()[1]}]}})
    c = socket.create_connection(("127.0.0.1", sl.port), timeout=TIMEOUT)
    c.sendall(b"GET /r HTTP/1.1\r\n" + H + b"\r\n")
    got = b""
    while not got.endswith(b"0\r\n"):  # sluice forwarded the last chunk and waits
        data = c.recv(65536)
        assert data, got
        got += data
    go.set()
    while not got.endswith(b"\r\n\r\n"):
        data = c.recv(65536)
        assert data, got
        got += data
    assert got.endswith(b"5\r\nhello\r\n0\r\nX-Sum: 1\r\n\r\n"), got
    c.sendall(b"GET /again HTTP/1.1\r\n" + H + b"\r\n")  # still in sync: answered or closed
    c.close()
    lsn.close()


@pytest.mark.parametrize("te", [b"chunked\t", b"chunked \t", b"gzip,chunked\t"])
def test_transfer_encoding_llhttp_reads_otherwise(strict, sluice, te):
    """Failed before the fix: `chunked<TAB>` was chunked to sluice's checks and not to
    llhttp, which read the response to the close; an injected second response reached the
    client. Request: 400; response: 502."""
    b = strict(expect=["/te", "/after-check"])
    b.on("/te", Reply(raw=b"HTTP/1.1 200 OK\r\nTransfer-Encoding: " + te + b"\r\n\r\n"
                          b"2\r\nhi\r\n0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 8\r\n"
                          b"X-Injected: 1\r\n\r\npoisoned", close=True))
    sl = sluice.proxy(b)
    c = sl.client()
    r = c.request("GET", "/te")
    assert_sluice_error(r, 502, c)
    c = sl.client()
    c.send(b"POST /te HTTP/1.1\r\n" + H + b"Transfer-Encoding: " + te + b"\r\n\r\n0\r\n\r\n")
    assert r.header("X-Injected") is None
    assert_sluice_error(c.read_response(), 400, c)


def test_bodiless_answer_announcing_a_body_is_not_pooled(strict, sluice):
    """Failed before the fix: the connection that answered HEAD with Content-Length: 44 was
    pooled, and the late 44 bytes became another client's response."""
    b = strict(expect=["/h", "/v"])
    b.on("/h", Reply(raw=b"HTTP/1.1 200 OK\r\nContent-Length: 44\r\n\r\n"))
    sl = sluice.proxy(b)
    r = sl.client().request("HEAD", "/h")
    assert r.status == 200 and r.body == b"", r
    r = sl.client().request("GET", "/v")
    answered(r, "GET", "/v")
    assert wait_for(lambda: len(b.conns) == 2, TIMEOUT), "HEAD's connection was reused"
