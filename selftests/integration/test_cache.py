"""HTTP cache: RFC 9111 storage and freshness rules seen on the wire, Vary, revalidation
with 304, HEAD and ranges from a cached GET, HEAD misses filled with a GET, client
conditionals, the cache lock under a 1,000-request stampede through two workers, writer
failure and lock.timeout fallbacks, stale-while-revalidate with one background request,
stale-if-error, purge through the admin API only, unsafe-method invalidation, the zone's
memory bound, and hostile origins and clients (Vary explosion, huge heads, purge during a
fill, the writer's client leaving, bodies shorter or longer than Content-Length)."""
import asyncio
import json
import os
import re
import socket
import tempfile
import threading
import time

import pytest

from backends import pattern, respond
from client import HTTPClient
from daemon import wait_for
from env import ASAN, SCALE, TIMEOUT


class Origin:
    """A backend whose answer per path is set by the test. Counts requests per path and
    the most requests for one path in flight at once."""

    def __init__(self, backend):
        self.routes = {}
        self.lock = threading.Lock()
        self.count = {}
        self.inflight = {}
        self.max_inflight = {}
        self.seen = []  # (path, headers) of every request
        self.b = backend(handler=self.handle)

    @property
    def address(self):
        return self.b.address

    def set(self, path, status=200, headers=(), body=b"", delay=0.0, hold=None, fn=None):
        self.routes[path] = dict(status=status, headers=list(headers), body=body, delay=delay,
                                 hold=hold, fn=fn)

    def n(self, path):
        with self.lock:
            return self.count.get(path, 0)

    def handle(self, conn, req):
        path = req.path
        with self.lock:
            self.count[path] = self.count.get(path, 0) + 1
            k = self.count[path]
            self.inflight[path] = self.inflight.get(path, 0) + 1
            self.max_inflight[path] = max(self.max_inflight.get(path, 0), self.inflight[path])
            self.seen.append((path, list(req.headers)))
        try:
            spec = self.routes.get(path)
            if spec is None:
                respond(conn, 404, body=b"no route\n", close=req.wants_close())
                return None
            if spec["hold"] is not None:
                spec["hold"].wait(30)
            if spec["delay"]:
                time.sleep(spec["delay"])
            if spec["fn"]:
                return spec["fn"](conn, req, k)
            body = spec["body"]
            if callable(body):
                body = body(k, req)
            respond(conn, spec["status"], headers=spec["headers"], body=body,
                    close=req.wants_close(), head=req.method == "HEAD")
            return None
        finally:
            with self.lock:
                self.inflight[path] -= 1


@pytest.fixture
def origin(backend):
    return Origin(backend)


def admin_sock(tmp_path):
    p = os.path.join(str(tmp_path), "adm.sock")
    if len(p) > 100:
        p = os.path.join(tempfile.mkdtemp(prefix="sl-c-"), "adm.sock")
    return p


def cached(sluice, origin, tmp_path=None, workers=1, zone=None, route_cache=None, path="/",
           bpf=None, **kw):
    """A daemon with one cached route to origin; X-Cache on."""
    zone = zone or {"max_size": "16m", "max_object_size": "4m", "shards": 4}
    rc = {"zone": "z", "status_header": "X-Cache", "lock": {"timeout": "5s", "age": "5s"}}
    rc.update(route_cache or {})
    extra = dict(kw)
    extra["cache"] = {"zones": {"z": zone}}
    extra["bpf"] = bpf or {"steering": "off"}
    if tmp_path is not None:
        extra["admin"] = {"socket": admin_sock(tmp_path)}
    s = sluice.new()
    cfg = sluice.config([{"path": path, "upstream": "o", "cache": rc}],
                        {"o": {"servers": [{"address": origin.address}]}}, sl=s,
                        workers=workers, **extra)
    s.start(cfg)
    s.admin_path = extra.get("admin", {}).get("socket")
    return s


def get(sl, target="/", headers=None, method="GET", version="HTTP/1.1"):
    with HTTPClient(sl.port) as c:
        return c.request(method, target, headers=headers, version=version)


def admin(sl, method, target, body=None):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(TIMEOUT)
    s.connect(sl.admin_path)
    c = HTTPClient(0, sock=s)
    try:
        hdrs = {"Content-Type": "application/json"} if body is not None else None
        return c.request(method, target, headers=hdrs, body=body, host="localhost")
    finally:
        c.close()


def metric(sl, name, **labels):
    r = admin(sl, "GET", "/metrics")
    want = ",".join('%s="%s"' % kv for kv in sorted(labels.items()))
    for line in r.body.decode().splitlines():
        m = re.match(r'^(\w+)\{([^}]*)\} (\d+)$', line)
        if m and m.group(1) == name and ",".join(sorted(m.group(2).split(","))) == want:
            return int(m.group(3))
    raise AssertionError("no metric %s{%s}" % (name, want))


CC60 = [("Cache-Control", "max-age=60")]


# ---- hits, Age, the status header, the access log --------------------------------------

def test_miss_then_hit_with_age(sluice, origin):
    origin.set("/a", headers=CC60 + [("ETag", '"v1"')], body=lambda k, r: b"body %d" % k)
    sl = cached(sluice, origin)
    r1 = get(sl, "/a")
    assert (r1.status, r1.body, r1.header("X-Cache")) == (200, b"body 1", "MISS")
    for _ in range(3):
        r = get(sl, "/a")
        assert (r.status, r.body, r.header("X-Cache")) == (200, b"body 1", "HIT")
        assert r.header("Age") is not None and int(r.header("Age")) >= 0
        assert r.header("ETag") == '"v1"' and r.header("Date")
    assert origin.n("/a") == 1
    sl.wait_access(4)
    assert [e.get("cache") for e in sl.access_entries()] == ["MISS", "HIT", "HIT", "HIT"]


def test_origin_age_counts(sluice, origin):
    """An origin Age of 50 with max-age=60: a hit says at least 50 and the object is
    stale once the origin's age passes 60."""
    origin.set("/old", headers=[("Cache-Control", "max-age=60"), ("Age", "59")],
               body=lambda k, r: b"v%d" % k)
    sl = cached(sluice, origin)
    assert get(sl, "/old").body == b"v1"
    r = get(sl, "/old")
    assert r.header("X-Cache") == "HIT" and int(r.header("Age")) >= 59
    time.sleep(1.2)  # past max-age
    r = get(sl, "/old")
    assert r.body == b"v2" and r.header("X-Cache") == "MISS"


# ---- storability ---------------------------------------------------------------------

@pytest.mark.parametrize("headers", [
    [("Cache-Control", "max-age=60, no-store")],
    [("Cache-Control", "max-age=60"), ("Cache-Control", "private")],
    [("Cache-Control", "max-age=60"), ("Set-Cookie", "sid=secret")],
    [("Cache-Control", "max-age=60"), ("Vary", "*")],
    [("Last-Modified", "Tue, 14 Nov 2023 20:00:00 GMT")],  # heuristic freshness is off
    [("Cache-Control", "max-age=0")],  # stale at once, nothing to revalidate with
])
def test_not_stored(sluice, origin, headers):
    origin.set("/p", headers=headers, body=lambda k, r: b"for client %d" % k)
    sl = cached(sluice, origin)
    bodies = [get(sl, "/p").body for _ in range(3)]
    assert bodies == [b"for client 1", b"for client 2", b"for client 3"]
    assert origin.n("/p") == 3


def test_private_and_set_cookie_never_reach_another_client(sluice, origin):
    """Two clients at once with their own cookies: each sees only its own answer, even
    while they were coalesced on the same key."""
    hold = threading.Event()

    def per_client(conn, req, k):
        who = req.header("X-Who")
        respond(conn, 200, headers=[("Cache-Control", "private, max-age=60"),
                                    ("Set-Cookie", "sid=%s" % who)],
                body=("secret of %s" % who).encode(), close=req.wants_close())

    origin.set("/me", fn=per_client, hold=hold)
    sl = cached(sluice, origin)
    out = {}

    def client(who):
        out[who] = get(sl, "/me", headers={"X-Who": who})

    ts = [threading.Thread(target=client, args=(w,)) for w in ("alice", "bob", "carol")]
    for t in ts:
        t.start()
    assert wait_for(lambda: origin.n("/me") >= 1, TIMEOUT)
    time.sleep(0.2)  # let the others queue behind the first
    hold.set()
    for t in ts:
        t.join(TIMEOUT)
    for who in ("alice", "bob", "carol"):
        assert out[who].status == 200
        assert out[who].body == ("secret of %s" % who).encode()
        assert out[who].header("Set-Cookie") == "sid=%s" % who
    assert origin.n("/me") == 3


def test_cacheable_statuses(sluice, origin):
    for code in (404, 410, 301):
        origin.set("/s%d" % code, status=code, headers=CC60 + ([("Location", "/x")] if code == 301
                                                              else []),
                   body=b"s")
    origin.set("/s500", status=500, headers=CC60, body=b"e")
    origin.set("/s206", status=206, headers=CC60 + [("Content-Range", "bytes 0-0/10")], body=b"s")
    origin.set("/s302", status=302, headers=CC60 + [("Location", "/x")], body=b"s")
    sl = cached(sluice, origin)
    for code in (404, 410, 301, 500, 206, 302):
        for _ in range(2):
            assert get(sl, "/s%d" % code).status == code
    assert [origin.n("/s%d" % c) for c in (404, 410, 301)] == [1, 1, 1]
    assert [origin.n("/s%d" % c) for c in (500, 206, 302)] == [2, 2, 2]


def test_freshness_sources(sluice, origin):
    """s-maxage beats max-age beats Expires; Expires in the past (or garbage) is stale."""
    origin.set("/sm", headers=[("Cache-Control", "max-age=0, s-maxage=60"), ("ETag", '"a"')],
               body=b"x")
    origin.set("/ex", headers=[("Expires", "Fri, 31 Dec 9999 23:59:59 GMT")], body=b"x")
    origin.set("/expast", headers=[("Expires", "0"), ("ETag", '"a"')], body=b"x")
    sl = cached(sluice, origin)
    for p in ("/sm", "/ex", "/expast"):
        get(sl, p)
        get(sl, p)
    assert (origin.n("/sm"), origin.n("/ex"), origin.n("/expast")) == (1, 1, 2)


def test_authorization_rule(sluice, origin):
    origin.set("/auth", headers=CC60, body=lambda k, r: b"a%d" % k)
    origin.set("/pub", headers=[("Cache-Control", "public, max-age=60")],
               body=lambda k, r: b"p%d" % k)
    sl = cached(sluice, origin)
    auth = {"Authorization": "Basic dTpw"}
    assert get(sl, "/auth", auth).body == b"a1"
    assert get(sl, "/auth").body == b"a2"  # the authorized answer was not stored
    assert get(sl, "/pub", auth).body == b"p1"
    assert get(sl, "/pub").body == b"p1"  # public: stored


def test_no_cache_revalidates_every_time(sluice, origin):
    def h(conn, req, k):
        if req.header("If-None-Match") == '"v1"':
            respond(conn, 304, headers=[("ETag", '"v1"'), ("Cache-Control", "no-cache")],
                    close=req.wants_close())
        else:
            respond(conn, 200, headers=[("ETag", '"v1"'), ("Cache-Control", "no-cache")],
                    body=b"validated body", close=req.wants_close())

    origin.set("/nc", fn=h)
    sl = cached(sluice, origin)
    r = get(sl, "/nc")
    assert (r.body, r.header("X-Cache")) == (b"validated body", "MISS")
    for _ in range(2):
        r = get(sl, "/nc")
        assert (r.status, r.body, r.header("X-Cache")) == (200, b"validated body",
                                                            "REVALIDATED")
    assert origin.n("/nc") == 3
    inm = [dict((n.lower(), v) for n, v in h)["if-none-match"] for p, h in origin.seen[1:]]
    assert inm == ['"v1"', '"v1"']


def test_304_refreshes_the_stored_object(sluice, origin):
    def h(conn, req, k):
        if req.header("If-None-Match") == '"e1"':
            respond(conn, 304, headers=[("ETag", '"e1"'), ("Cache-Control", "max-age=60"),
                                        ("X-Refreshed", "yes")], close=req.wants_close())
        else:
            respond(conn, 200, headers=[("ETag", '"e1"'), ("Cache-Control", "max-age=1"),
                                        ("Content-Type", "text/x-kept")],
                    body=pattern(3000), close=req.wants_close())

    origin.set("/r", fn=h)
    sl = cached(sluice, origin)
    assert get(sl, "/r").body == pattern(3000)
    time.sleep(1.2)
    r = get(sl, "/r")
    assert (r.status, r.body, r.header("X-Cache")) == (200, pattern(3000), "REVALIDATED")
    assert r.header("X-Refreshed") == "yes" and r.header("Content-Type") == "text/x-kept"
    assert r.header("Cache-Control") == "max-age=60"
    r = get(sl, "/r")  # fresh for 60 s now
    assert r.header("X-Cache") == "HIT" and r.header("X-Refreshed") == "yes"
    assert origin.n("/r") == 2


def test_must_revalidate_is_never_served_stale(sluice, origin):
    origin.set("/mr", headers=[("Cache-Control", "max-age=1, must-revalidate"),
                               ("ETag", '"m"')], body=b"m")
    sl = cached(sluice, origin, route_cache={"stale_if_error": "1h",
                                             "stale_while_revalidate": "1h"})
    assert get(sl, "/mr").status == 200
    origin.set("/mr", status=503, headers=[("Retry-After", "1")], body=b"down")
    time.sleep(1.2)
    r = get(sl, "/mr")
    assert r.status == 503 and r.body == b"down"


# ---- Vary ----------------------------------------------------------------------------

def test_vary_variants(sluice, origin):
    origin.set("/v", headers=CC60 + [("Vary", "Accept-Encoding")],
               body=lambda k, r: ("%s #%d" % (r.header("Accept-Encoding", "none"), k)).encode())
    sl = cached(sluice, origin, zone={"max_size": "16m", "max_object_size": "1m",
                                      "max_variants": 3})
    for _ in range(2):
        assert get(sl, "/v", {"Accept-Encoding": "gzip"}).body == b"gzip #1"
        assert get(sl, "/v", {"Accept-Encoding": "br"}).body == b"br #2"
        assert get(sl, "/v").body == b"none #3"
    assert origin.n("/v") == 3
    # a fourth variant pushes the oldest out (max_variants: 3)
    assert get(sl, "/v", {"Accept-Encoding": "zstd"}).body == b"zstd #4"
    assert get(sl, "/v", {"Accept-Encoding": "gzip"}).body == b"gzip #5"
    assert get(sl, "/v", {"Accept-Encoding": "zstd"}).body == b"zstd #4"


def test_huge_vary_list_not_stored(sluice, origin):
    names = ",".join("X-H%d" % i for i in range(200))
    origin.set("/hv", headers=CC60 + [("Vary", names)], body=lambda k, r: b"%d" % k)
    sl = cached(sluice, origin)
    assert [get(sl, "/hv").body for _ in range(2)] == [b"1", b"2"]


# ---- HEAD, ranges, conditionals ------------------------------------------------------

def test_head_range_and_conditionals_from_cache(sluice, origin):
    body = pattern(10000)
    origin.set("/f", headers=CC60 + [("ETag", '"big"'),
                                     ("Last-Modified", "Tue, 14 Nov 2023 20:00:00 GMT")],
               body=body)
    sl = cached(sluice, origin)
    assert get(sl, "/f").body == body
    r = get(sl, "/f", method="HEAD")
    assert (r.status, r.header("Content-Length"), r.header("X-Cache")) == (200, "10000", "HIT")
    r = get(sl, "/f", {"Range": "bytes=100-199"})
    assert r.status == 206 and r.body == body[100:200]
    assert r.header("Content-Range") == "bytes 100-199/10000"
    r = get(sl, "/f", {"Range": "bytes=-10"})
    assert r.status == 206 and r.body == body[-10:]
    r = get(sl, "/f", {"Range": "bytes=20000-"})
    assert r.status == 416 and r.header("Content-Range") == "bytes */10000"
    r = get(sl, "/f", {"Range": "bytes=0-1,5-6"})  # several: the whole object
    assert r.status == 200 and r.body == body
    r = get(sl, "/f", {"Range": "bytes=0-1", "If-Range": '"other"'})
    assert r.status == 200 and r.body == body
    r = get(sl, "/f", {"If-None-Match": '"big"'})
    assert r.status == 304 and r.header("ETag") == '"big"' and not r.header("Content-Length")
    r = get(sl, "/f", {"If-Modified-Since": "Tue, 14 Nov 2023 21:00:00 GMT"})
    assert r.status == 304
    r = get(sl, "/f", {"If-None-Match": '"nope"'})
    assert r.status == 200 and r.body == body
    assert origin.n("/f") == 1
    # HTTP/1.0 client: length known, connection closed as asked
    r = get(sl, "/f", version="HTTP/1.0")
    assert r.status == 200 and r.body == body


def _methods(origin, path):
    """An origin route that records the method of every request it answers."""
    seen = []

    def h(conn, req, k):
        seen.append(req.method)
        spec = h.spec
        respond(conn, spec[0], headers=spec[1], body=spec[2], close=req.wants_close(),
                head=req.method == "HEAD")

    h.spec = (200, CC60, b"0123456789")
    origin.set(path, fn=h)
    return h, seen


def test_head_miss_fetches_get_and_stores(sluice, origin, tmp_path):
    """A HEAD miss fills the cache with a GET of its own (nginx's proxy_cache_convert_head)
    and answers the HEAD from it; the GET and HEAD after it are hits."""
    h, seen = _methods(origin, "/h")
    sl = cached(sluice, origin, tmp_path=tmp_path)
    r = get(sl, "/h", method="HEAD")
    assert (r.status, r.header("Content-Length"), r.body) == (200, "10", b"")
    assert r.header("X-Cache") == "MISS"
    assert seen == ["GET"]
    r = get(sl, "/h")
    assert (r.body, r.header("X-Cache")) == (b"0123456789", "HIT")
    assert get(sl, "/h", method="HEAD").header("X-Cache") == "HIT"
    assert seen == ["GET"]
    assert metric(sl, "sluice_cache_requests_total", zone="z", result="miss") == 1
    assert metric(sl, "sluice_cache_requests_total", zone="z", result="hit") == 2


def test_head_miss_not_shareable_goes_to_origin_as_head(sluice, origin):
    """The GET a HEAD started comes back private: nothing is stored, and the HEAD goes to
    the origin itself, as HEAD; nobody gets the private body."""
    h, seen = _methods(origin, "/hp")
    h.spec = (200, [("Cache-Control", "private, max-age=60")], b"secret")
    sl = cached(sluice, origin)
    r = get(sl, "/hp", method="HEAD")
    assert (r.status, r.header("Content-Length"), r.body) == (200, "6", b"")
    assert seen == ["GET", "HEAD"]
    assert get(sl, "/hp").header("X-Cache") == "MISS"
    assert seen == ["GET", "HEAD", "GET"]


def test_head_miss_failing_origin_one_get_per_head(sluice, origin):
    """The origin fails the GET a HEAD started: the HEAD goes to the origin as HEAD once,
    it does not start GET after GET."""
    h, seen = _methods(origin, "/hf")
    h.spec = (500, [], b"boom")
    sl = cached(sluice, origin)
    r = get(sl, "/hf", method="HEAD")
    assert r.status == 500 and r.body == b""
    assert seen == ["GET", "HEAD"]


def test_head_miss_client_gone_fill_goes_on(sluice, origin):
    """The HEAD's client leaves while its GET is on the way: the object is still stored."""
    hold = threading.Event()
    origin.set("/hg", headers=CC60, body=b"kept", hold=hold)
    sl = cached(sluice, origin)
    c = HTTPClient(sl.port)
    c.send(b"HEAD /hg HTTP/1.1\r\nHost: sluice.test\r\n\r\n")
    assert wait_for(lambda: origin.n("/hg") == 1, TIMEOUT)
    c.close()
    hold.set()
    assert wait_for(lambda: get(sl, "/hg").header("X-Cache") == "HIT", TIMEOUT)
    assert origin.n("/hg") == 1


def test_head_and_get_stampede_one_origin_fetch(sluice, origin):
    """HEADs and GETs at once on a cold key, two workers: one origin request (a GET),
    every GET gets the body, every HEAD the length and no body."""
    body = pattern(5000)
    origin.set("/hs", headers=CC60, body=body, delay=0.2)
    sl = cached(sluice, origin, workers=2, route_cache={"lock": {"timeout": "30s",
                                                                 "age": "30s"}})
    n = 200
    out = [None] * n

    async def one(i):
        method = b"HEAD" if i % 2 else b"GET"
        r, w = await asyncio.open_connection("127.0.0.1", sl.port)
        w.write(b"%s /hs HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" % method)
        await w.drain()
        out[i] = await r.read()
        w.close()

    async def run():
        await asyncio.wait_for(asyncio.gather(*[one(i) for i in range(n)]), 30 * SCALE)

    asyncio.run(run())
    assert origin.n("/hs") == 1
    for i, raw in enumerate(out):
        head, b = body_of(raw)
        assert head.startswith(b"HTTP/1.1 200"), raw[:200]
        assert b == (b"" if i % 2 else body)
        assert b"Content-Length: 5000" in head


def test_client_conditional_on_miss_still_fills(sluice, origin):
    """The writer's client sent If-None-Match: it is not forwarded (the origin would
    answer that client only) and the full object is stored."""
    origin.set("/cm", headers=CC60 + [("ETag", '"x"')], body=b"full")
    sl = cached(sluice, origin)
    r = get(sl, "/cm", {"If-None-Match": '"x"', "Range": "bytes=0-1"})
    assert r.status == 200 and r.body == b"full"
    hdrs = dict((n.lower(), v) for n, v in origin.seen[0][1])
    assert "if-none-match" not in hdrs and "range" not in hdrs
    assert get(sl, "/cm", {"If-None-Match": '"x"'}).status == 304


# ---- streaming while filling ---------------------------------------------------------

def test_readers_stream_while_the_body_arrives(sluice, origin):
    """A second client gets the bytes already stored at once, before the origin sends
    the rest: the body is streamed from the filling object, not after it completes."""
    gate = threading.Event()

    def h(conn, req, k):
        conn.send(b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        gate.wait(30)
        conn.send(b"6\r\nsecond\r\n0\r\n\r\n")

    origin.set("/st", fn=h)
    sl = cached(sluice, origin, workers=2)
    c1 = HTTPClient(sl.port)
    c1.send(b"GET /st HTTP/1.1\r\nHost: t\r\n\r\n")
    assert wait_for(lambda: origin.n("/st") == 1, TIMEOUT)
    c2 = HTTPClient(sl.port)
    c2.send(b"GET /st HTTP/1.1\r\nHost: t\r\n\r\n")
    got = b""
    deadline = time.monotonic() + TIMEOUT
    while b"first" not in got and time.monotonic() < deadline:
        got += c2.sock.recv(4096)
    assert b"first" in got and b"second" not in got
    gate.set()
    r1 = c1.read_response()
    assert r1.body == b"firstsecond"
    c2.buf = got[got.index(b"\r\n\r\n") + 4:]
    rest = c2._read_chunked(time.monotonic() + TIMEOUT)[0]
    assert rest == b"firstsecond"
    c1.close()
    c2.close()
    assert origin.n("/st") == 1


# ---- the cache lock ------------------------------------------------------------------

async def _one(port, target, out, i, headers=b""):
    for attempt in range(50):
        try:
            r, w = await asyncio.open_connection("127.0.0.1", port)
            break
        except OSError:
            await asyncio.sleep(0.05)
    else:
        out[i] = None
        return
    w.write(b"GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n%s\r\n" %
            (target.encode(), headers))
    await w.drain()
    data = await r.read()
    w.close()
    out[i] = data


def stampede(port, target, n, timeout):
    out = [None] * n

    async def run():
        await asyncio.wait_for(asyncio.gather(*[_one(port, target, out, i) for i in range(n)]),
                               timeout)

    asyncio.run(run())
    return out


def body_of(raw):
    head, _, body = raw.partition(b"\r\n\r\n")
    return head, body


def test_stampede_1000_one_origin_fetch(sluice, origin, tmp_path):
    """1,000 concurrent first requests for one key through two workers: one origin
    request; every client gets the whole body."""
    body = pattern(20000)
    origin.set("/hot", headers=CC60, body=body, delay=0.2)
    sl = cached(sluice, origin, workers=2, tmp_path=tmp_path,
                route_cache={"lock": {"timeout": "30s", "age": "30s"}},
                limits={"max_connections": 4096})
    out = stampede(sl.port, "/hot", 1000, 60 * SCALE)
    assert origin.n("/hot") == 1
    bad = [i for i, raw in enumerate(out) if not raw or body_of(raw)[1] != body]
    assert not bad, "%d clients without the full body (first: %r)" % (
        len(bad), out[bad[0]][:300] if out[bad[0]] else None)
    coalesced = metric(sl, "sluice_cache_requests_total", zone="z", result="coalesced")
    hits = metric(sl, "sluice_cache_requests_total", zone="z", result="hit")
    assert coalesced + hits == 999 and coalesced > 0


def test_expired_popular_object_one_fetch(sluice, origin):
    """1,000 concurrent requests for an object that just expired: one revalidation. The
    new version is fresh for a minute: a stampede slower than a second on a loaded
    machine must not see it expire too (that third fetch would be right)."""
    def h(conn, req, k):
        time.sleep(0.2)
        respond(conn, 200, headers=[("Cache-Control", "max-age=%d" % (1 if k == 1 else 60)),
                                    ("ETag", '"p%d"' % k)],
                body=b"version %d" % k, close=req.wants_close())

    origin.set("/pop", fn=h)
    sl = cached(sluice, origin, workers=2, route_cache={"lock": {"timeout": "30s",
                                                                 "age": "30s"}},
                limits={"max_connections": 4096})
    assert get(sl, "/pop").body == b"version 1"
    time.sleep(1.2)
    out = stampede(sl.port, "/pop", 1000, 60 * SCALE)
    assert origin.n("/pop") == 2
    assert all(raw and body_of(raw)[1] == b"version 2" for raw in out)


def test_writer_failure_one_new_writer_at_a_time(sluice, origin):
    """The writer's origin request fails (500, then a dropped connection): a waiter
    takes over, one at a time, never several at once; everyone ends with the body."""
    def h(conn, req, k):
        time.sleep(0.1)
        if k == 1:
            respond(conn, 500, body=b"boom", close=req.wants_close())
            return None
        if k == 2:
            return "close"  # drop without answering
        respond(conn, 200, headers=CC60, body=b"finally", close=req.wants_close())
        return None

    origin.set("/wf", fn=h)
    sl = cached(sluice, origin, workers=2, route_cache={"lock": {"timeout": "30s",
                                                                 "age": "30s"}})
    out = stampede(sl.port, "/wf", 50, 30 * SCALE)
    assert origin.max_inflight["/wf"] == 1
    assert origin.n("/wf") == 3
    statuses = sorted(int(body_of(raw)[0].split(b" ")[1]) for raw in out)
    assert statuses.count(200) >= 48 and statuses.count(500) == 1
    assert sum(1 for raw in out if body_of(raw)[1] == b"finally") == statuses.count(200)


def test_lock_timeout_goes_to_origin_uncached(sluice, origin, tmp_path):
    hold = threading.Event()
    origin.set("/slow", headers=CC60, body=b"slow body", hold=hold)
    origin.set("/slow2", headers=CC60, body=b"x")
    sl = cached(sluice, origin, tmp_path=tmp_path,
                route_cache={"lock": {"timeout": "300ms", "age": "30s"}})
    c1 = HTTPClient(sl.port)
    c1.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
    assert wait_for(lambda: origin.n("/slow") == 1, TIMEOUT)
    # the second waits 300 ms for the writer, then goes to the origin itself (and
    # waits there, behind the same hold)
    c2 = HTTPClient(sl.port)
    c2.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
    assert wait_for(lambda: origin.n("/slow") == 2, TIMEOUT)
    hold.set()
    assert c1.read_response().body == b"slow body"
    r2 = c2.read_response()
    assert r2.body == b"slow body" and r2.header("X-Cache") == "LOCK_TIMEOUT"
    c1.close()
    c2.close()
    assert metric(sl, "sluice_cache_requests_total", zone="z", result="lock_timeout") == 1


def test_lock_age_lets_one_more_through(sluice, origin):
    hold = threading.Event()
    origin.set("/stuck", headers=CC60, body=b"s", hold=hold)
    sl = cached(sluice, origin, route_cache={"lock": {"timeout": "30s", "age": "200ms"}})
    cs = [HTTPClient(sl.port) for _ in range(5)]
    cs[0].send(b"GET /stuck HTTP/1.1\r\nHost: t\r\n\r\n")
    assert wait_for(lambda: origin.n("/stuck") == 1, TIMEOUT)
    time.sleep(0.3)  # past lock.age: the next request writes too, the others wait
    for c in cs[1:]:
        c.send(b"GET /stuck HTTP/1.1\r\nHost: t\r\n\r\n")
    assert wait_for(lambda: origin.n("/stuck") == 2, TIMEOUT)
    time.sleep(0.1)
    assert origin.n("/stuck") == 2
    hold.set()
    for c in cs:
        assert c.read_response().body == b"s"
        c.close()


# ---- stale-while-revalidate, stale-if-error ------------------------------------------

def test_stale_while_revalidate_one_background_request(sluice, origin):
    release = threading.Event()

    def h(conn, req, k):
        if k > 1:
            release.wait(30)
        respond(conn, 200, headers=[("Cache-Control", "max-age=1"), ("ETag", '"s%d"' % k)],
                body=b"gen %d" % k, close=req.wants_close())

    origin.set("/swr", fn=h)
    sl = cached(sluice, origin, workers=2, route_cache={"stale_while_revalidate": "30s"})
    assert get(sl, "/swr").body == b"gen 1"
    time.sleep(1.2)
    for _ in range(20):  # all answered at once with the stale copy
        r = get(sl, "/swr")
        assert (r.body, r.header("X-Cache")) == (b"gen 1", "STALE")
    assert wait_for(lambda: origin.n("/swr") == 2, TIMEOUT)
    bg = origin.seen[-1][1]
    assert dict((n.lower(), v) for n, v in bg).get("if-none-match") == '"s1"'
    release.set()
    assert wait_for(lambda: get(sl, "/swr").body == b"gen 2", TIMEOUT)
    assert origin.n("/swr") == 2
    assert get(sl, "/swr").header("X-Cache") == "HIT"


def test_stale_if_error(sluice, origin, backend):
    origin.set("/sie", headers=[("Cache-Control", "max-age=1")], body=b"kept")
    origin.set("/sie5", headers=[("Cache-Control", "max-age=1, stale-if-error=600")],
               body=b"kept5")
    sl = cached(sluice, origin, route_cache={"stale_if_error": "10m"})
    assert get(sl, "/sie").body == b"kept"
    assert get(sl, "/sie5").body == b"kept5"
    time.sleep(1.2)
    origin.set("/sie5", status=502, body=b"bad gateway")
    r = get(sl, "/sie5")
    assert (r.status, r.body, r.header("X-Cache")) == (200, b"kept5", "STALE")
    origin.b.stop()  # the origin is gone: connect fails
    r = get(sl, "/sie")
    assert (r.status, r.body, r.header("X-Cache")) == (200, b"kept", "STALE")


# ---- purge, invalidation ----------------------------------------------------------------

def test_purge_through_admin_only(sluice, origin, tmp_path):
    origin.set("/pg/a", headers=CC60, body=lambda k, r: b"a%d" % k)
    origin.set("/pg/b", headers=CC60, body=lambda k, r: b"b%d" % k)
    sl = cached(sluice, origin, tmp_path=tmp_path)
    assert get(sl, "/pg/a").body == b"a1" and get(sl, "/pg/b").body == b"b1"
    # PURGE on the data port is not a purge (it goes to the origin like any method,
    # which counts it as its request 2)
    get(sl, "/pg/a", method="PURGE")
    assert origin.n("/pg/a") == 2
    assert get(sl, "/pg/a").body == b"a1"
    r = admin(sl, "POST", "/cache/purge",
              json.dumps({"zone": "z", "key": "http://sluice.test/pg/a"}))
    assert r.status == 200 and r.json() == {"purged": 1}
    assert get(sl, "/pg/a").body == b"a3" and get(sl, "/pg/b").body == b"b1"
    r = admin(sl, "POST", "/cache/purge", json.dumps({"prefix": "http://sluice.test/pg/"}))
    assert r.json() == {"purged": 2}
    assert get(sl, "/pg/b").body == b"b2"
    assert admin(sl, "POST", "/cache/purge", json.dumps({"zone": "nope", "key": "x"})).status \
        == 404
    for bad in ("", "[]", '{"key": 1}', '{"key": "a", "prefix": "b"}', '{"kee": "a"}'):
        assert admin(sl, "POST", "/cache/purge", bad).status == 400
    st = admin(sl, "GET", "/cache").json()["zones"][0]
    assert st["zone"] == "z" and st["purged"] == 3 and st["bytes"] <= st["max_size"]


def test_sluicectl_cache(sluice, origin, tmp_path):
    import subprocess
    from env import BUILD
    origin.set("/ctl", headers=CC60, body=lambda k, r: b"c%d" % k)
    sl = cached(sluice, origin, tmp_path=tmp_path)
    get(sl, "/ctl")
    ctl = os.path.join(BUILD, "sluicectl")
    def run(*args):
        return subprocess.run([ctl, "--socket", sl.admin_path, "cache"] + list(args),
                              capture_output=True, text=True, timeout=TIMEOUT)

    p = run("stats")
    assert p.returncode == 0 and json.loads(p.stdout)["zones"][0]["misses"] == 1
    p = run("purge", "--key", "http://sluice.test/ctl", "--zone", "z")
    assert p.returncode == 0 and json.loads(p.stdout) == {"purged": 1}, p.stderr
    assert get(sl, "/ctl").body == b"c2"
    p = run("purge", "--prefix", "http://sluice.test/c t&x=1")  # escaped, nothing matches
    assert p.returncode == 0 and json.loads(p.stdout) == {"purged": 0}, p.stderr
    assert run("purge", "--key", "k", "--zone", "nope").returncode == 1
    assert run("purge").returncode == 2


def test_unsafe_method_invalidates(sluice, origin):
    origin.set("/doc", headers=CC60, body=lambda k, r: b"d%d" % k)
    sl = cached(sluice, origin)
    assert get(sl, "/doc").body == b"d1"
    with HTTPClient(sl.port) as c:
        assert c.request("POST", "/doc", body=b"change").status == 200
    assert get(sl, "/doc").body == b"d3"


# ---- the memory bound ----------------------------------------------------------------

def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_memory_bound_and_evictions(sluice, origin, tmp_path):
    """Ten times max_size of distinct objects: the zone's bytes stay under max_size,
    evictions are counted, and the daemon's RSS grows by no more than max_size plus a
    stated overhead (buffers, allocator slack: 16 MiB)."""
    obj = pattern(100 * 1024)
    origin.set("/m", headers=CC60, body=obj)

    def h(conn, req, k):
        respond(conn, 200, headers=CC60, body=obj, close=req.wants_close())

    for i in range(400):
        origin.set("/m/%d" % i, fn=h)
    sl = cached(sluice, origin, tmp_path=tmp_path, path="/",
                zone={"max_size": "4m", "max_object_size": "1m", "shards": 4})
    get(sl, "/m/0")
    base = rss_kb(sl.pid)
    with HTTPClient(sl.port) as c:
        for i in range(400):  # 40 MB of distinct objects through a 4 MB zone
            r = c.request("GET", "/m/%d" % i)
            assert r.status == 200 and r.body == obj
            if i % 50 == 0:
                assert metric(sl, "sluice_cache_bytes", zone="z") <= 4 << 20
    assert metric(sl, "sluice_cache_bytes", zone="z") <= 4 << 20
    assert metric(sl, "sluice_cache_evictions_total", zone="z") >= 300
    if ASAN:
        return  # ASan's quarantine keeps freed memory mapped: RSS says nothing there
    growth = rss_kb(sl.pid) - base
    assert growth <= (4 << 10) + (16 << 10), "RSS grew %d KiB" % growth


# ---- hostile origins and clients ------------------------------------------------------

def test_vary_explosion_is_bounded(sluice, origin, tmp_path):
    """An origin that varies on a header every client sets differently: one variant per
    value, at most max_variants kept for the key (the oldest goes), nothing else grows."""
    origin.set("/vx", headers=CC60 + [("Vary", "X-V")], body=lambda k, r: b"v%d" % k)
    sl = cached(sluice, origin, tmp_path=tmp_path,
                zone={"max_size": "16m", "max_object_size": "4m", "shards": 4,
                      "max_variants": 4})
    for i in range(40):
        assert get(sl, "/vx", {"X-V": "value-%d" % i}).body == b"v%d" % (i + 1)
    assert metric(sl, "sluice_cache_objects", zone="z") == 4
    assert metric(sl, "sluice_cache_keys", zone="z") == 1
    # the newest four answer from the cache, the first is gone
    for i in range(36, 40):
        r = get(sl, "/vx", {"X-V": "value-%d" % i})
        assert (r.body, r.header("X-Cache")) == (b"v%d" % (i + 1), "HIT")
    r = get(sl, "/vx", {"X-V": "value-0"})
    assert r.header("X-Cache") == "MISS" and origin.n("/vx") == 41


def test_huge_response_head_cached_and_served_whole(sluice, origin):
    """A response head near the 32 KiB limit is stored and served with every field; one
    over it is a 502 each time and nothing is stored."""
    big = [("X-Pad-%d" % i, "p" * 1000) for i in range(30)]
    origin.set("/hh", headers=CC60 + big, body=b"small body")
    over = [("X-Pad-%d" % i, "p" * 1000) for i in range(40)]
    origin.set("/hx", headers=CC60 + over, body=b"never")
    sl = cached(sluice, origin)
    for want in ("MISS", "HIT"):
        r = get(sl, "/hh")
        assert (r.status, r.body, r.header("X-Cache")) == (200, b"small body", want)
        assert [r.header("X-Pad-%d" % i) for i in range(30)] == ["p" * 1000] * 30
    assert origin.n("/hh") == 1
    for _ in range(2):
        assert get(sl, "/hx").status == 502
    assert origin.n("/hx") == 2


def _streaming(origin, path, head, first, gate, rest, close_after=False):
    """An origin route that sends head and first, waits for gate, then sends rest."""
    def h(conn, req, k):
        conn.send(head + first)
        gate.wait(30)
        if rest:
            conn.send(rest)
        return "close" if close_after else None

    origin.set(path, fn=h)


def test_purge_of_a_key_being_written(sluice, origin, tmp_path):
    """A purge while the writer is still filling: the writer's client still gets the whole
    body, the next request does not get the purged object, and the fill does not bring
    it back."""
    gate = threading.Event()
    _streaming(origin, "/pw", b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\n"
               b"Content-Length: 10\r\n\r\n", b"01234", gate, b"56789")
    sl = cached(sluice, origin, tmp_path=tmp_path)
    c = HTTPClient(sl.port)
    c.send(b"GET /pw HTTP/1.1\r\nHost: sluice.test\r\n\r\n")
    assert wait_for(lambda: origin.n("/pw") == 1, TIMEOUT)
    time.sleep(0.2)
    r = admin(sl, "POST", "/cache/purge", json.dumps({"key": "http://sluice.test/pw"}))
    assert r.json() == {"purged": 1}
    gate.set()
    r1 = c.read_response()
    assert r1.body == b"0123456789"
    c.close()
    r2 = get(sl, "/pw")
    assert r2.header("X-Cache") == "MISS" and r2.body == b"0123456789"
    assert origin.n("/pw") == 2


def test_writer_client_gone_mid_body(sluice, origin, tmp_path):
    """The writer's client leaves after the head, while another client streams the same
    fill: that client gets all of the body or a cut connection, never a short body in a
    complete-looking response, and a later request never gets a truncated object."""
    gate = threading.Event()
    body = b"a" * 5000 + b"b" * 5000
    _streaming(origin, "/wa", b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\n"
               b"Content-Length: 10000\r\n\r\n", body[:5000], gate, body[5000:])
    sl = cached(sluice, origin, tmp_path=tmp_path)
    w = HTTPClient(sl.port)
    w.send(b"GET /wa HTTP/1.1\r\nHost: sluice.test\r\n\r\n")
    assert wait_for(lambda: origin.n("/wa") == 1, TIMEOUT)
    time.sleep(0.2)
    c2 = socket.create_connection(("127.0.0.1", sl.port), timeout=TIMEOUT)
    c2.sendall(b"GET /wa HTTP/1.1\r\nHost: sluice.test\r\nConnection: close\r\n\r\n")
    time.sleep(0.2)
    w.close()  # the writer's client leaves mid-body
    time.sleep(0.2)
    gate.set()
    got = b""
    while True:
        try:
            d = c2.recv(65536)
        except OSError:
            break
        if not d:
            break
        got += d
    c2.close()
    head, _, b2 = got.partition(b"\r\n\r\n")
    assert b"Content-Length: 10000" in head
    assert b2 == body or len(b2) < len(body)  # whole, or cut (the length shows it)
    r = get(sl, "/wa")
    assert r.status == 200 and r.body == body


def test_origin_body_shorter_than_content_length(sluice, origin):
    """The origin announces 10,000 bytes, sends 4,000 and closes: the client's connection
    is cut (never a short body presented as whole) and nothing is stored."""
    gate = threading.Event()
    gate.set()
    _streaming(origin, "/short", b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\n"
               b"Content-Length: 10000\r\n\r\n", b"x" * 4000, gate, b"", close_after=True)
    sl = cached(sluice, origin)
    for _ in range(2):
        c = socket.create_connection(("127.0.0.1", sl.port), timeout=TIMEOUT)
        c.sendall(b"GET /short HTTP/1.1\r\nHost: sluice.test\r\n\r\n")
        got = b""
        while True:
            d = c.recv(65536)
            if not d:
                break
            got += d
        c.close()
        head, _, b = got.partition(b"\r\n\r\n")
        assert len(b) < 10000
    assert origin.n("/short") == 2


def test_origin_body_longer_than_content_length(sluice, origin):
    """The origin sends more bytes than its Content-Length: the stored object is the
    announced bytes only, and the extra bytes never reach the next request (the upstream
    connection is not reused)."""
    def h(conn, req, k):
        if req.path == "/long":
            conn.send(b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\n"
                         b"Content-Length: 5\r\n\r\nhelloHTTP/1.1 200 OK\r\n"
                         b"Content-Length: 8\r\n\r\nsmuggled")
            return None
        respond(conn, 200, headers=CC60, body=b"other", close=req.wants_close())
        return None

    origin.set("/long", fn=h)
    origin.set("/other", fn=h)
    sl = cached(sluice, origin)
    r = get(sl, "/long")
    assert (r.status, r.body) == (200, b"hello")
    r = get(sl, "/other")
    assert (r.status, r.body) == (200, b"other")
    r = get(sl, "/long")
    assert (r.body, r.header("X-Cache")) == (b"hello", "HIT")


# ---- the key: one object per scheme ---------------------------------------------------

def test_plain_and_tls_listeners_do_not_share_objects(sluice, origin, tmp_path):
    """One zone behind a plain listener and a TLS one: the origin sees X-Forwarded-Proto
    and answers plain requests with a cacheable redirect to https (a common setup). The
    TLS client must get the https answer, not the stored redirect ($scheme is https)."""
    import ssl
    import subprocess
    d = str(tmp_path)
    crt, key = os.path.join(d, "c.pem"), os.path.join(d, "k.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", crt,
                    "-days", "2", "-subj", "/CN=site.test", "-addext",
                    "subjectAltName=DNS:site.test"], check=True, capture_output=True)

    def fn(conn, req, k):
        if req.header("X-Forwarded-Proto") == "https":
            respond(conn, 200, headers=CC60, body=b"secure page", close=req.wants_close())
        else:
            respond(conn, 301, headers=CC60 + [("Location", "https://site.test/p")],
                    body=b"", close=req.wants_close())
    origin.set("/p", fn=fn)
    rc = {"zone": "z", "status_header": "X-Cache"}
    s = sluice.new()
    cfg = sluice.config([{"path": "/", "upstream": "o", "cache": rc}],
                        {"o": {"servers": [{"address": origin.address}]}}, sl=s,
                        cache={"zones": {"z": {"max_size": "16m"}}},
                        bpf={"steering": "off"})
    tls_port = socket.socket()
    tls_port.bind(("127.0.0.1", 0))
    tp = tls_port.getsockname()[1]
    tls_port.close()
    cfg["listeners"].append({"address": "127.0.0.1:%d" % tp, "routes": cfg["listeners"][0]["routes"],
                             "tls": {"certificates": [{"cert": crt, "key": key}]}})
    s.start(cfg)
    r = get(s, "/p", headers={"Host": "site.test"})
    assert (r.status, r.header("X-Cache")) == (301, "MISS")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(crt)
    for want in ("MISS", "HIT"):
        raw = socket.create_connection(("127.0.0.1", tp), timeout=TIMEOUT)
        t = ctx.wrap_socket(raw, server_hostname="site.test")
        c = HTTPClient(0, sock=t)
        try:
            r = c.request("GET", "/p", host="site.test")
        finally:
            c.close()
        assert (r.status, r.body, r.header("X-Cache")) == (200, b"secure page", want)
    r = get(s, "/p", headers={"Host": "site.test"})
    assert (r.status, r.header("X-Cache")) == (301, "HIT")
    assert origin.n("/p") == 2


def test_conditionals_ignored_on_a_stored_error(sluice, origin):
    """A stored 404 (or 301, 410) with an ETag: If-None-Match or If-Modified-Since from a
    client holding an older 200 must not get 304 (RFC 9110 13.2.1: preconditions are
    ignored when the answer would not be 2xx), or it keeps using a page that is gone."""
    origin.set("/gone", status=404, headers=CC60 + [
        ("ETag", '"same"'), ("Last-Modified", "Mon, 01 Jan 2024 00:00:00 GMT")],
        body=b"not here")
    sl = cached(sluice, origin)
    assert get(sl, "/gone").status == 404
    r = get(sl, "/gone", {"If-None-Match": '"same"'})
    assert (r.status, r.body, r.header("X-Cache")) == (404, b"not here", "HIT")
    r = get(sl, "/gone", {"If-Modified-Since": "Tue, 02 Jan 2024 00:00:00 GMT"})
    assert (r.status, r.body, r.header("X-Cache")) == (404, b"not here", "HIT")
    assert origin.n("/gone") == 1


def test_absolute_form_and_host_header_are_one_host(sluice, origin):
    """GET http://victim.test/x with Host: evil.test: the key names victim.test, so the
    origin must be asked for victim.test too (RFC 9112 3.2.2), or a client stores the
    page of a host of its choosing under another host's key."""
    origin.set("/x", headers=CC60, body=lambda k, r: r.header("Host").encode())
    sl = cached(sluice, origin)
    with HTTPClient(sl.port) as c:
        r = c.request("GET", "http://victim.test/x", host="evil.test")
    assert r.status == 200 and r.body == b"victim.test", r.body
    r = get(sl, "/x", {"Host": "victim.test"})
    assert (r.status, r.body, r.header("X-Cache")) == (200, b"victim.test", "HIT")


def test_private_after_a_missing_comma_is_still_private(sluice, origin):
    """A careless origin writes 'max-age=60 private' (no comma): the private must still
    count (nginx finds it too), or one user's page is stored and served to the next."""
    for i, cc in enumerate(("max-age=60 private", "max-age=60 no-store",
                            'max-age="60" private')):
        origin.set("/u%d" % i, headers=[("Cache-Control", cc)],
                   body=lambda k, r: b"user %d" % k)
    sl = cached(sluice, origin)
    for i in range(3):
        get(sl, "/u%d" % i)
        r = get(sl, "/u%d" % i)
        assert (r.body, r.header("X-Cache")) == (b"user 2", "MISS"), i
