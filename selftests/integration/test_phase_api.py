"""The ops API misused from every phase (selftests/proxies/phase_proxy.c, a real daemon):
sl_respond() from each phase followed by each return value, with bodies that live on the
stack, in freed heap memory, or are too big for one write. Whatever the proxy does, a
request is answered exactly once and the kept-alive connection stays in sync; forbidden
phases get -EINVAL and the request carries on; the body is copied; 1xx interim heads are
not body. Under `make asan` the daemon teardown fails on any sanitizer report."""
import errno
import os
import socket

import pytest

from backends import dead_address, raw_handler
from client import HTTPClient, build_request
from daemon import parse_kv, wait_for
from env import BUILD, SCALE, TIMEOUT

PHASE_PROXY = os.path.join(BUILD, "selftests", "proxies", "phase_proxy")

ALLOWED = ["request_filter", "upstream_peer", "upstream_request_filter", "fail_to_connect",
           "error_response"]
FORBIDDEN = ["response_filter", "request_body_filter", "response_body_filter", "logging"]
RETURNS = ["0", "done", "retry", "neg"]
BODY_MODES = ["static", "stack", "heap-freed", "big"]
# phases that only run when connecting fails: their default upstream refuses connections
NEEDS_DEAD = {"fail_to_connect", "error_response"}
STATUS = 203  # phase_proxy's default status for sl_respond()

_patterns = {}


def pattern16(n):
    """phase_proxy's body bytes: the offset of every 16-byte line as "%015x\\n"."""
    if n not in _patterns:
        _patterns[n] = b"".join(b"%015x\n" % i for i in range(0, n, 16))[:n]
    return _patterns[n]


def body_of(mode):
    if mode == "static":
        return b"answered by phase_proxy\n"
    return pattern16((1 << 20) if mode == "big" else 65536)


def body_diff(got, want):
    """None when equal, else a short description (never the megabyte itself)."""
    if got == want:
        return None
    i = next((i for i, (x, y) in enumerate(zip(got, want)) if x != y), min(len(got),
                                                                          len(want)))
    return ("body differs from what sl_respond() was given: %d bytes (want %d), first "
            "difference at offset %d: %r instead of %r" % (len(got), len(want), i,
                                                          got[i:i + 16], want[i:i + 16]))


def start_phase(sluice, address, **kw):
    s = sluice.new("phase")
    s.binary = PHASE_PROXY
    cfg = sluice.config([], {"default": {"servers": [{"address": address}]}}, sl=s, **kw)
    cfg["listeners"][0].pop("routes", None)  # a custom proxy does not use routes
    return s.start(cfg)


def client(s):
    """A client with a small receive window and MSS: on loopback sluice's socket would
    otherwise take a 1 MiB body in one write, and a body kept by pointer would never
    be read after sl_respond() returns."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)
    sock.settimeout(TIMEOUT)
    sock.connect((s.host, s.port))
    c = HTTPClient(s.port, s.host, sock=sock)
    s.clients.append(c)
    return c


def entry(s, target):
    """The one access-log entry of target (each request is logged exactly once)."""
    got = wait_for(lambda: [e for e in s.access_entries() if e.get("target") == target],
                   5 * SCALE)
    assert len(got) == 1, "access log entries for %s: %r" % (target, got)
    return got[0]


def reported(s, key, rid="t"):
    """The codes phase_proxy reported on stderr for request rid, one per call."""
    return [kv[key] for kv in (parse_kv(ln) for ln in s.log_lines()
                               if ln.startswith("phase_proxy: "))
            if kv.get("id") == rid and key in kv]


def rc(s, key="rc", rid="t"):
    """The one code of that kind for request rid (as a string, like the log)."""
    got = reported(s, key, rid)
    assert len(got) == 1, "%s reports for %s: %r" % (key, rid, got)
    return got[0]


def error_lines(s, phase):
    return [ln for ln in s.log_lines() if "sl_respond not allowed in %s" % phase in ln]


def phase_headers(phase, ret=None, body=None, rid="t", **extra):
    h = [("X-Phase", phase), ("X-Id", rid)]
    if ret is not None:
        h.append(("X-Return", ret))
    if body is not None:
        h.append(("X-Body", body))
    h += [("X-" + k.capitalize(), v) for k, v in extra.items()]
    return h


def assert_only_response(c, resp, backend=None, local=False):
    """resp was the only answer to its request: the next request on the connection gets
    its own answer and nothing else follows. local=True: the next request is answered
    by phase_proxy itself (the upstream is dead or broken); else it goes to backend."""
    if "close" in resp.connection_tokens():
        assert c.wait_closed(), "Connection: close but the connection stays open"
        assert c.buf == b"", "bytes after a Connection: close response: %r" % c.buf[:200]
        return
    if local:
        r = c.request("GET", "/next", headers=phase_headers("request_filter", "done",
                                                            rid="next", status="202"))
        assert r.status == 202 and r.body == body_of("static"), \
            "second request got %r %r (a queued extra response?)" % (r, r.body[:200])
    else:
        r = c.request("GET", "/next")
        assert r.status == 200, "second request got %r %r" % (r, r.body[:200])
        assert r.json()["target"] == "/next", "second request got another answer: %r" % r.body
        assert [q.target for q in backend.requests][-1:] == ["/next"]
    assert c.is_open(), "connection closed after the second request"
    assert c.buf == b"", "extra bytes after the second response: %r" % c.buf[:200]


def start_for(sluice, backend, phase):
    """A daemon whose upstream suits phase: a dead one for connect-failure phases."""
    if phase in NEEDS_DEAD:
        return start_phase(sluice, dead_address()), None
    b = backend("default")
    return start_phase(sluice, b.address), b


# -- allowed phases ---------------------------------------------------------------------
@pytest.mark.parametrize("body", BODY_MODES)
@pytest.mark.parametrize("ret", RETURNS)
@pytest.mark.parametrize("phase", ALLOWED)
def test_respond_from_allowed_phase(sluice, backend, phase, ret, body):
    s, b = start_for(sluice, backend, phase)
    c = client(s)
    r = c.request("GET", "/t", headers=phase_headers(phase, ret, body))
    assert r.status == STATUS, "%r %r" % (r, r.body[:200])
    diff = body_diff(r.body, body_of(body))
    assert diff is None, diff
    assert_only_response(c, r, b, local=b is None)
    assert rc(s) == "0"
    assert entry(s, "/t").get("status") == str(STATUS)
    if b is not None:
        # answered by the proxy: the request itself never reached the backend
        assert [q.target for q in b.requests] == ["/next"], b.requests


@pytest.mark.parametrize("phase", ALLOWED)
def test_second_respond_is_ealready(sluice, backend, phase):
    s, b = start_for(sluice, backend, phase)
    c = client(s)
    r = c.request("GET", "/t", headers=phase_headers(phase, "done", "stack", twice="1"))
    assert r.status == STATUS, r
    diff = body_diff(r.body, body_of("stack"))
    assert diff is None, diff
    assert_only_response(c, r, b, local=b is None)
    assert (rc(s), rc(s, "rc2")) == ("0", str(-errno.EALREADY))
    entry(s, "/t")


@pytest.mark.parametrize("status", ["99", "199", "600", "1000"])
def test_respond_bad_status_is_einval(sluice, backend, status):
    b = backend("default")
    s = start_phase(sluice, b.address)
    c = client(s)
    # X-Return 0: the refused answer leaves the request to go on upstream
    r = c.request("GET", "/t", headers=phase_headers("request_filter", "0", status=status))
    assert r.status == 200 and r.json()["target"] == "/t", r
    assert_only_response(c, r, b)
    assert rc(s) == str(-errno.EINVAL)
    entry(s, "/t")


def test_respond_content_type_crlf_is_einval(sluice, backend):
    b = backend("default")
    s = start_phase(sluice, b.address)
    c = client(s)
    r = c.request("GET", "/t", headers=phase_headers("request_filter", "0", ctype="bad"))
    assert r.status == 200 and r.json()["target"] == "/t", r
    assert not r.has("X-Injected"), r.headers
    assert_only_response(c, r, b)
    assert rc(s) == str(-errno.EINVAL)
    entry(s, "/t")


def test_respond_null_session_is_einval(sluice, backend):
    b = backend("default")
    s = start_phase(sluice, b.address)
    c = client(s)
    r = c.request("GET", "/t", headers=[("X-Null", "1"), ("X-Id", "t")])
    assert r.status == 200 and r.json()["target"] == "/t", r
    assert_only_response(c, r, b)
    assert rc(s, "rc_null") == str(-errno.EINVAL)
    entry(s, "/t")


def test_filter_cannot_edit_framing_headers(sluice, backend):
    """Found by review: a filter removing Content-Length made the backend read the body as a
    request; setting Transfer-Encoding forwarded it next to Content-Length. Both -EPERM;
    Host may still be rewritten."""
    b = backend("default")
    s = start_phase(sluice, b.address)
    c = client(s)
    smuggled = b"GET /internal HTTP/1.1\r\nHost: x\r\n\r\n"
    r = c.request("POST", "/t", body=smuggled, headers=[("X-Edit-Framing", "1"), ("X-Id", "t")])
    assert r.status == 200 and r.json()["target"] == "/t", r
    assert r.json()["body_len"] == len(smuggled), r.json()
    assert_only_response(c, r, b)
    assert rc(s, "rc_rm_cl") == str(-errno.EPERM)
    assert rc(s, "rc_set_te") == str(-errno.EPERM)
    assert rc(s, "rc_set_host") == "0"
    assert [q.target for q in b.requests] == ["/t", "/next"], b.requests  # no /internal


# -- forbidden phases -------------------------------------------------------------------
@pytest.mark.parametrize("body", BODY_MODES)
@pytest.mark.parametrize("ret", ["0", "done"])
@pytest.mark.parametrize("phase", FORBIDDEN)
def test_respond_from_forbidden_phase(sluice, backend, phase, ret, body):
    b = backend("default")
    s = start_phase(sluice, b.address)
    c = client(s)
    sent = b"request body for the backend\n" * 10
    r = c.request("POST", "/t", headers=phase_headers(phase, ret, body), body=sent)
    assert r.status == 200, "%r %r" % (r, r.body[:200])
    got = r.json()
    assert got["target"] == "/t" and got["body"] == sent.decode(), got
    assert_only_response(c, r, b)
    assert rc(s) == str(-errno.EINVAL)
    e = entry(s, "/t")
    assert e.get("status") == "200", e
    # the filters saw the whole of both bodies, once each
    assert (e.get("qbf_bytes"), e.get("qbf_end")) == (str(len(sent)), "1"), e
    assert (e.get("rbf_bytes"), e.get("rbf_end")) == (str(len(r.body)), "1"), e
    assert len(error_lines(s, phase)) == 1, error_lines(s, phase)


def test_request_body_filter_after_100_continue(sluice, backend):
    """The body arrives after the head (the client waits for 100 Continue)."""
    b = backend("default")
    s = start_phase(sluice, b.address)
    c = client(s)
    sent = b"x" * 5000
    head = ("POST /t HTTP/1.1\r\nHost: sluice.test\r\nContent-Length: %d\r\n"
            "Expect: 100-continue\r\nX-Phase: request_body_filter\r\nX-Body: big\r\n"
            "X-Id: t\r\n\r\n"
            % len(sent)).encode()
    c.send(head)
    interim = c.read_response(skip_1xx=False)
    assert interim.status == 100, interim
    c.send(sent)
    r = c.read_response()
    assert r.status == 200 and r.json()["body_len"] == len(sent), r
    assert_only_response(c, r, b)
    assert rc(s) == str(-errno.EINVAL)
    e = entry(s, "/t")
    assert (e.get("qbf_bytes"), e.get("qbf_end")) == (str(len(sent)), "1"), e


# -- error_response from broken upstreams -------------------------------------------------
BROKEN = {
    "interim-then-garbage": b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nNOT HTTP\r\n\r\n",
    "garbage": b"SPROING 200 OK\r\n\r\n",
}


@pytest.mark.parametrize("body", ["static", "big"])
@pytest.mark.parametrize("ret", RETURNS)
@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_error_response_broken_upstream(sluice, backend, kind, ret, body):
    b = backend("default", handler=raw_handler(BROKEN[kind], after="close"))
    s = start_phase(sluice, b.address)
    c = client(s)
    r = c.request("GET", "/t", headers=phase_headers("error_response", ret, body))
    assert r.status == STATUS, "%r %r" % (r, r.body[:200])
    diff = body_diff(r.body, body_of(body))
    assert diff is None, diff
    assert_only_response(c, r, local=True)
    assert rc(s) == "0"
    assert entry(s, "/t").get("err_status") == "502"


def test_error_response_not_answering_gets_core_error(sluice):
    """error_response that does not answer: the core's own 502, once."""
    s = start_phase(sluice, dead_address())
    c = client(s)
    r = c.request("GET", "/t")
    assert r.status == 502, r
    assert_only_response(c, r, local=True)
    assert entry(s, "/t").get("err_status") == "502"


# -- 1xx interim responses are not body ---------------------------------------------------
@pytest.mark.parametrize("code", [103, 100])
def test_interim_response_not_seen_as_body(sluice, backend, code):
    b = backend("default")
    s = start_phase(sluice, b.address)
    c = client(s)
    r = c.request("GET", "/_/early?code=%d" % code)
    assert r.status == 200 and r.json()["target"] == "/_/early?code=%d" % code, r
    assert_only_response(c, r, b)
    e = entry(s, "/_/early?code=%d" % code)
    assert e.get("rbf_bytes") == str(len(r.body)), e
    assert e.get("rbf_end") == "1", e


def test_interim_response_forbidden_respond_in_body_filter(sluice, backend):
    b = backend("default")
    s = start_phase(sluice, b.address)
    c = client(s)
    r = c.request("GET", "/_/early?code=103",
                  headers=phase_headers("response_body_filter", "0", "heap-freed"))
    assert r.status == 200 and r.json()["target"] == "/_/early?code=103", r
    assert_only_response(c, r, b)
    assert rc(s) == str(-errno.EINVAL)
    e = entry(s, "/_/early?code=103")
    assert (e.get("rbf_bytes"), e.get("rbf_end")) == (str(len(r.body)), "1"), e


# -- the context belongs to one request ---------------------------------------------------
def test_bad_request_does_not_get_previous_context(sluice, backend):
    """A head that fails to parse never ran request_filter: error_response must not see
    the finished context of the request before it on the connection."""
    b = backend("default")
    s = start_phase(sluice, b.address)
    c = client(s)
    r = c.request("GET", "/first", headers=phase_headers("error_response", "done"))
    assert r.status == 200 and r.json()["target"] == "/first", r
    c.send(b"GET /bad HTTP/1.1\r\nHost: sluice.test\r\nContent-Length: zz\r\n\r\n")
    r = c.read_response()
    assert r.status == 400, "%r %r" % (r, r.body[:200])
    assert c.wait_closed() and c.buf == b""
    entries = s.wait_access(2)
    assert not [e for e in entries if "stale_ctx" in e], entries


def test_body_with_head_context_is_fresh(sluice, backend):
    """A body that arrives with its head is filtered with this request's fresh context,
    not the previous request's (the second request on a connection)."""
    b = backend("default")
    s = start_phase(sluice, b.address)
    c = client(s)
    r = c.request("GET", "/first")
    assert r.status == 200, r
    sent = b"abc" * 100
    r = c.request("POST", "/second", body=sent)
    assert r.status == 200 and r.json()["body_len"] == len(sent), r
    e = entry(s, "/second")
    assert "stale_ctx" not in e, e
    assert (e.get("qbf_bytes"), e.get("qbf_end")) == (str(len(sent)), "1"), e


@pytest.mark.parametrize("body", ["static", "big"])
@pytest.mark.parametrize("ret", RETURNS)
@pytest.mark.parametrize("phase", ["request_filter", "upstream_peer"])
def test_pipelined_requests_answered_in_turn(sluice, backend, phase, ret, body):
    """A request answered at once while the next one is already buffered: each gets its
    own answer, in order, and each phase's code reaches its own request."""
    b = backend("default")
    s = start_phase(sluice, b.address)
    c = client(s)
    c.send(build_request("GET", "/t", phase_headers(phase, ret, body)) +
           build_request("GET", "/u", phase_headers(phase, ret, body, rid="u", status="202")) +
           build_request("GET", "/v"))
    r1, r2, r3 = c.read_responses(3)
    assert (r1.status, r2.status, r3.status) == (STATUS, 202, 200), (r1, r2, r3)
    for r in (r1, r2):
        diff = body_diff(r.body, body_of(body))
        assert diff is None, diff
    assert r3.json()["target"] == "/v", r3.body[:200]
    assert c.is_open() and c.buf == b"", c.buf[:200]
    assert (rc(s), rc(s, rid="u")) == ("0", "0")
    assert [q.target for q in b.requests] == ["/v"], b.requests
    for t in ("/t", "/u", "/v"):
        entry(s, t)
