"""Admin API upstream changes (in memory): GET/PUT /upstreams/NAME, POST .../servers,
DELETE .../servers/ADDR, POST .../servers/ADDR/drain|enable|disable. Hostile input first:
every bad request is a 4xx with a JSON error and changes nothing; 10,000 servers; a server
deleted while a request is on it; a swap during a retry; then what a reload does to API
changes, retry_on statuses, the 503 when no server is usable, token_file and allow_remote."""
import json
import os
import signal
import socket
import tempfile
import threading
import time

import pytest

from backends import Backend, Blackhole, free_port, respond
from client import HTTPClient
from daemon import wait_for
from env import SCALE, TIMEOUT


def sock_path(tmp_path):
    p = os.path.join(str(tmp_path), "admin.sock")
    if len(p) > 100:
        p = os.path.join(tempfile.mkdtemp(prefix="sl-ups-"), "admin.sock")
    return p


def api(path, method, target, body=None, raw=None, headers=None, timeout=None):
    """One admin request on a new Unix-socket connection; (status, parsed JSON or None)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout or TIMEOUT)
    s.connect(path)
    c = HTTPClient(0, sock=s, timeout=timeout)
    try:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None
                                            else None)
        h = dict(headers or {})
        if data is not None:
            h.setdefault("Content-Type", "application/json")
        r = c.request(method, target, headers=h, body=data, host="localhost")
        try:
            j = json.loads(r.body) if r.body else None
        except ValueError:
            j = None
        return r.status, j, r
    finally:
        c.close()


def admin_up(path):
    """The socket file appears at bind(), before listen(): wait for an answer."""
    def ok():
        try:
            return api(path, "GET", "/healthz")[0] == 200
        except OSError:
            return False
    return wait_for(ok, 5 * SCALE)


def servers(path, name="u"):
    st, j, _ = api(path, "GET", "/upstreams/" + name)
    assert st == 200, j
    return [(s["address"], s["weight"]) for s in j["servers"]], j["version"]


def backends_hit(sl, n, target="/"):
    """X-Backend of n requests, each on a new connection (so both workers take some)."""
    out = []
    for _ in range(n):
        with HTTPClient(sl.port) as c:
            r = c.request("GET", target)
            assert r.status == 200, r
            out.append(r.header("X-Backend"))
    return out


@pytest.fixture
def ups(sluice, backend, tmp_path):
    """Two backends a, b behind upstream u, 2 workers, admin socket on."""
    def start(*bs, upstream=None, workers=2, **kw):
        path = sock_path(tmp_path)
        bs = bs or (backend("a"), backend("b"))
        sl = sluice.proxy(*bs, workers=workers, admin={"socket": path}, upstream=upstream, **kw)
        assert admin_up(path)
        return sl, bs, path
    return start


BAD_PUTS = [
    (b"", "a JSON body is required"),
    (b"{", "invalid JSON"),
    (b"not json", "invalid JSON"),
    (b"[]", "must be an object"),
    (b"{}", "servers must be a non-empty array"),
    (b'{"servers": []}', "non-empty"),
    (b'{"servers": "127.0.0.1:1"}', "non-empty array"),
    (b'{"servers": [], "extra": 1}', "unknown key"),
    (b'{"servers": [{"address": "127.0.0.1:1"}], "servers": []}', "invalid JSON"),
    (b'{"servers": ["127.0.0.1:1"]}', "must be an object"),
    (b'{"servers": [{}]}', "has no address"),
    (b'{"servers": [{"address": 5}]}', "address must be a string"),
    (b'{"servers": [{"address": "nope"}]}', "invalid address"),
    (b'{"servers": [{"address": "127.0.0.1:0"}]}', "invalid address"),
    (b'{"servers": [{"address": "127.0.0.1:65536"}]}', "invalid address"),
    (b'{"servers": [{"address": "127.0.0.1:1\\u0000x"}]}', "invalid JSON"),
    (b'{"servers": [{"address": "' + b"9" * 300 + b':1"}]}', "invalid address"),
    (b'{"servers": [{"address": "127.0.0.1:1", "weight": 0}]}', "weight"),
    (b'{"servers": [{"address": "127.0.0.1:1", "weight": 1001}]}', "weight"),
    (b'{"servers": [{"address": "127.0.0.1:1", "weight": "2"}]}', "weight"),
    (b'{"servers": [{"address": "127.0.0.1:1", "weight": 1.5}]}', "weight"),
    (b'{"servers": [{"address": "127.0.0.1:1", "weight": -1}]}', "weight"),
    (b'{"servers": [{"address": "127.0.0.1:1", "weight": 18446744073709551617}]}',
     "too big integer"),
    (b'{"servers": [{"address": "127.0.0.1:1", "weight": 4294967297}]}', "weight"),
    (b'{"servers": [{"address": "127.0.0.1:1", "weight": true}]}', "weight"),
    (b'{"servers": [{"address": "127.0.0.1:1", "weight": null}]}', "weight"),
    (b'{"servers": [{"address": "127.0.0.1:1", "port": 1}]}', "unknown key"),
    (b'{"servers": [{"address": "127.0.0.1:1"}, {"address": "127.0.0.1:1"}]}', "duplicate"),
    (b'{"servers": [{"address": "127.0.0.1:7"}, {"address": "[::1]:7"},'
     b' {"address": "127.0.0.1:07"}]}', "duplicate"),
    (b"[" * 100000 + b"]" * 100000, "invalid JSON"),
]


def test_bad_put_changes_nothing(ups):
    sl, (a, b), path = ups()
    before = servers(path)
    for raw, why in BAD_PUTS:
        st, j, r = api(path, "PUT", "/upstreams/u", raw=raw)
        assert st == 400, (raw[:80], st, r.body[:200])
        assert j and why in j["error"], (raw[:80], j)
        assert r.header("Content-Type") == "application/json"
        assert servers(path) == before, raw[:80]
    # traffic still goes to both
    assert set(backends_hit(sl, 6)) == {"a", "b"}


def test_huge_body_refused(ups):
    """Over the admin API's body limit (4 MiB): 413 before any of it is parsed."""
    sl, _, path = ups()
    before = servers(path)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(TIMEOUT)
    s.connect(path)
    s.sendall(b"PUT /upstreams/u HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n" % (5 * 1024 * 1024) + b'{"servers": [' * 1000)
    reply = b""
    try:
        while b"\r\n" not in reply:
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
    finally:
        s.close()
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert servers(path) == before


def test_put_unknown_upstream_and_methods(ups):
    sl, _, path = ups()
    st, j, _ = api(path, "PUT", "/upstreams/nope", body={"servers": [{"address": "127.0.0.1:1"}]})
    assert st == 404 and "no upstream named 'nope'" in j["error"]
    st, j, r = api(path, "POST", "/upstreams/u")
    assert st == 405 and r.header("Allow") == "GET, HEAD, PUT"
    st, j, r = api(path, "PUT", "/upstreams")
    assert st == 405 and r.header("Allow") == "GET, HEAD"
    st, j, r = api(path, "GET", "/upstreams/u/servers")
    assert st == 405 and r.header("Allow") == "POST"
    for bad in ("/upstreams/u/x", "/upstreams/u/servers/127.0.0.1:1/reboot",
                "/upstreams/u/servers/127.0.0.1:1/drain/now", "/upstreams//servers",
                "/upstreams/u%00/servers"):
        st, j, _ = api(path, "POST", bad)
        assert st == 404 and "error" in j, bad


def test_get_upstream(ups):
    sl, (a, b), path = ups()
    st, j, _ = api(path, "GET", "/upstreams/u")
    assert st == 200
    assert j["name"] == "u" and j["balance"] == "round_robin" and j["health_check"] is None
    assert [s["address"] for s in j["servers"]] == [a.address, b.address]
    for s in j["servers"]:
        assert s["state"] == "up" and s["in_flight"] == 0 and s["weight"] == 1
    backends_hit(sl, 4)
    st, j, _ = api(path, "GET", "/upstreams/u")
    assert sum(s["requests"] for s in j["servers"]) == 4
    st, j, _ = api(path, "GET", "/upstreams/none")
    assert st == 404 and "error" in j
    st, lst, _ = api(path, "GET", "/upstreams")
    assert [u["name"] for u in lst] == ["u"]


def test_put_swaps_traffic_on_every_worker(ups, backend):
    c = backend("c")
    sl, (a, b), path = ups()
    st, j, _ = api(path, "PUT", "/upstreams/u", body={"servers": [{"address": c.address}]})
    assert st == 200 and [s["address"] for s in j["servers"]] == [c.address]
    assert set(backends_hit(sl, 20)) == {"c"}
    st, j, _ = api(path, "PUT", "/upstreams/u",
                   body={"servers": [{"address": a.address, "weight": 3},
                                     {"address": c.address}]})
    assert st == 200
    hits = backends_hit(sl, 40)
    assert set(hits) == {"a", "c"} and hits.count("a") > hits.count("c")


def test_servers_kept_across_swaps(ups):
    sl, (a, b), path = ups()
    backends_hit(sl, 10)
    st, j, _ = api(path, "GET", "/upstreams/u")
    req_a = [s for s in j["servers"] if s["address"] == a.address][0]["requests"]
    assert req_a == 5
    api(path, "POST", "/upstreams/u/servers/%s/drain" % a.address)
    st, j, _ = api(path, "PUT", "/upstreams/u",
                   body={"servers": [{"address": a.address}, {"address": "127.0.0.1:1"}]})
    sa = [s for s in j["servers"] if s["address"] == a.address][0]
    assert sa["requests"] == 5 and sa["state"] == "draining"  # same server object


def test_add_delete_server(ups, backend):
    c = backend("c")
    sl, (a, b), path = ups()
    st, j, _ = api(path, "POST", "/upstreams/u/servers", body={"address": c.address, "weight": 2})
    assert st == 201 and (c.address, 2) in [(s["address"], s["weight"]) for s in j["servers"]]
    assert "c" in backends_hit(sl, 8)
    before = servers(path)
    # hostile: already there (also under another spelling), bad bodies
    for body, code in (({"address": c.address}, 409),
                       ({"address": "localhost:%d" % c.port}, 409),
                       ({"address": "x"}, 400), ({"weight": 1}, 400),
                       ({"address": c.address, "extra": 1}, 400), ([], 400), ("s", 400)):
        st, j, _ = api(path, "POST", "/upstreams/u/servers", body=body)
        assert st == code and "error" in j, (body, st, j)
        assert servers(path) == before
    st, j, _ = api(path, "POST", "/upstreams/u/servers", raw=b"{bad")
    assert st == 400
    st, j, _ = api(path, "DELETE", "/upstreams/u/servers/" + c.address)
    assert st == 200 and c.address not in [s["address"] for s in j["servers"]]
    assert "c" not in backends_hit(sl, 8)
    before = servers(path)
    for target, code in (("/upstreams/u/servers/" + c.address, 404),
                         ("/upstreams/u/servers/not-an-address", 400),
                         ("/upstreams/u/servers/127.0.0.1:99999", 400),
                         ("/upstreams/x/servers/" + a.address, 404)):
        st, j, _ = api(path, "DELETE", target)
        assert st == code and "error" in j, (target, st, j)
        assert servers(path) == before
    # IPv6 addresses, percent-encoded in the path
    st, j, _ = api(path, "POST", "/upstreams/u/servers", body={"address": "[::1]:9"})
    assert st == 201
    st, j, _ = api(path, "DELETE", "/upstreams/u/servers/%5B%3A%3A1%5D%3A9")
    assert st == 200
    # the last server cannot go
    assert api(path, "DELETE", "/upstreams/u/servers/" + a.address)[0] == 200
    st, j, _ = api(path, "DELETE", "/upstreams/u/servers/" + b.address)
    assert st == 409 and "last server" in j["error"]
    assert servers(path)[0] == [(b.address, 1)]


def test_drain_enable_disable(ups):
    sl, (a, b), path = ups()
    st, j, _ = api(path, "POST", "/upstreams/u/servers/%s/drain" % a.address)
    assert st == 200 and j == dict(j, address=a.address, state="draining")
    assert set(backends_hit(sl, 10)) == {"b"}
    st, j, _ = api(path, "POST", "/upstreams/u/servers/%s/enable" % a.address)
    assert st == 200 and j["state"] == "up"
    assert set(backends_hit(sl, 10)) == {"a", "b"}
    st, j, _ = api(path, "POST", "/upstreams/u/servers/%s/disable" % b.address)
    assert j["state"] == "disabled"
    assert set(backends_hit(sl, 10)) == {"a"}
    for target, method, code in (("/upstreams/u/servers/127.0.0.1:1/drain", "POST", 404),
                                 ("/upstreams/u/servers/%s/drain" % a.address, "GET", 405),
                                 ("/upstreams/u/servers/%s/pause" % a.address, "POST", 404),
                                 ("/upstreams/v/servers/%s/drain" % a.address, "POST", 404)):
        st, j, _ = api(path, method, target)
        assert st == code and "error" in j, (target, st)


def test_no_usable_server_is_503_logged_once_a_second(ups):
    sl, (a, b), path = ups()
    for x in (a, b):
        api(path, "POST", "/upstreams/u/servers/%s/disable" % x.address)
    t0 = time.monotonic()
    for _ in range(30):
        with HTTPClient(sl.port) as c:
            assert c.request("GET", "/").status == 503
    elapsed = time.monotonic() - t0
    sl.wait_log(lambda ln: "no usable server" in ln)
    lines = [ln for ln in sl.log_lines() if "no usable server" in ln and "upstream=u" in ln]
    assert 1 <= len(lines) <= 1 + int(elapsed) + 1, lines
    st, j, _ = api(path, "GET", "/upstreams/u")
    assert j["no_usable_server"] == 30


def test_10000_servers(sluice, tmp_path):
    """10,001 distinct addresses (127.x.y.z, all reaching one backend on 0.0.0.0): the PUT
    is taken, every request succeeds, the round robin spreads over distinct servers."""
    b = Backend("wide", host="0.0.0.0")
    try:
        path = sock_path(tmp_path)
        sl = sluice.proxy("127.0.0.1:%d" % b.port, workers=2, admin={"socket": path})
        assert admin_up(path)
        addrs = ["127.%d.%d.%d:%d" % (1 + i // 65536, (i // 256) % 256, i % 256 or 1, b.port)
                 for i in range(10050)]
        addrs = list(dict.fromkeys(addrs))[:10001]
        assert len(addrs) == 10001
        st, j, _ = api(path, "PUT", "/upstreams/u",
                       body={"servers": [{"address": x} for x in addrs]}, timeout=30 * SCALE)
        assert st == 200 and len(j["servers"]) == len(addrs)
        c = HTTPClient(sl.port)
        for _ in range(300):
            assert c.request("GET", "/").status == 200
        c.close()
        st, j, _ = api(path, "GET", "/upstreams/u", timeout=30 * SCALE)
        used = [s for s in j["servers"] if s["requests"]]
        assert len(used) >= 250 and max(s["requests"] for s in used) <= 2
    finally:
        b.stop()


def test_large_put_built_off_the_main_loop(sluice, tmp_path):
    """A PUT of 10,001 servers on a ketama upstream (a ring of two million points): the
    set is built on the resolver's thread, so an admin request sent after the whole PUT
    went out is answered before the PUT is (on the main loop it waited behind the
    build)."""
    import select
    b = Backend("wide", host="0.0.0.0")
    try:
        path = sock_path(tmp_path)
        sl = sluice.proxy("127.0.0.1:%d" % b.port, workers=2, admin={"socket": path},
                          upstream={"balance": "ketama"})
        assert admin_up(path)
        addrs = ["127.%d.%d.%d:%d" % (1 + i // 65536, (i // 256) % 256, i % 256 or 1, b.port)
                 for i in range(10050)]
        addrs = list(dict.fromkeys(addrs))[:10001]
        body = json.dumps({"servers": [{"address": x} for x in addrs]}).encode()
        put = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        put.settimeout(60 * SCALE)
        put.connect(path)
        put.sendall(b"PUT /upstreams/u HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                    b"\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        # the main loop has parsed the PUT and handed the build over
        assert sl.wait_log(lambda ln: "upstream change handed to the resolver" in ln and
                           "servers=10001 names=0" in ln, 30 * SCALE)
        st, j, _ = api(path, "GET", "/healthz")
        assert st == 200
        assert not select.select([put], [], [], 0)[0], "the PUT was done before /healthz"
        put.settimeout(60 * SCALE)
        resp = b""
        while b"\r\n\r\n" not in resp:
            resp += put.recv(65536)
        assert resp.startswith(b"HTTP/1.1 200"), resp[:200]
        put.close()
        st, j, _ = api(path, "GET", "/upstreams/u", timeout=30 * SCALE)
        assert len(j["servers"]) == 10001
        with HTTPClient(sl.port) as c:
            assert c.request("GET", "/").status == 200
    finally:
        b.stop()


def test_too_many_servers_changes_nothing(ups):
    """65,537 servers, one over the limit: a 400 and nothing changed (the body is well
    under the 4 MiB cap, so it is the count that refuses it)."""
    sl, _, path = ups()
    before = servers(path)
    addrs = ["127.%d.%d.%d:%d" % (1 + i // 65536, (i // 256) % 256, i % 256, 1000 + i % 7)
             for i in range(65537)]
    body = json.dumps({"servers": [{"address": x} for x in addrs]}).encode()
    assert len(body) < 4 << 20
    st, j, _ = api(path, "PUT", "/upstreams/u", raw=body, timeout=30 * SCALE)
    assert st == 400 and "too many servers" in j["error"], (st, j)
    assert servers(path) == before


def test_drain_the_last_server(ups, backend):
    """Draining (or disabling) every server is allowed: requests get the 503 of no usable
    server, logged once a second, until one is enabled again; nothing else breaks."""
    a = backend("a")
    sl, _, path = ups(a, workers=1)
    st, j, _ = api(path, "POST", "/upstreams/u/servers/%s/drain" % a.address)
    assert st == 200 and j["state"] == "draining"
    for _ in range(3):
        with HTTPClient(sl.port) as c:
            assert c.request("GET", "/").status == 503
    sl.wait_log(lambda ln: "no usable server" in ln and "upstream=u" in ln)
    st, j, _ = api(path, "GET", "/upstreams/u")
    assert j["no_usable_server"] >= 3, j
    st, j, _ = api(path, "POST", "/upstreams/u/servers/%s/enable" % a.address)
    assert st == 200 and j["state"] == "up"
    with HTTPClient(sl.port) as c:
        assert c.request("GET", "/").status == 200


def test_delete_server_with_request_in_flight(ups):
    sl, (a, b), path = ups(workers=1)
    # a request held on a
    api(path, "POST", "/upstreams/u/servers/%s/drain" % b.address)
    c = HTTPClient(sl.port)
    c.send(b"GET /_/hold HTTP/1.1\r\nHost: x\r\n\r\n")
    assert a.wait_requests(1)
    api(path, "POST", "/upstreams/u/servers/%s/enable" % b.address)
    st, j, _ = api(path, "DELETE", "/upstreams/u/servers/" + a.address)
    assert st == 200
    st, j, _ = api(path, "GET", "/upstreams/u")
    assert [s["address"] for s in j["servers"]] == [b.address]
    assert set(backends_hit(sl, 6)) == {"b"}
    a.release.set()
    r = c.read_response()
    assert r.status == 200 and r.header("X-Backend") == "a"
    # its connection was not pooled: a never sees another request
    n = len(a.requests)
    assert set(backends_hit(sl, 6)) == {"b"}
    assert len(a.requests) == n
    c.close()


def test_swap_during_retry(sluice, backend, tmp_path):
    """A request connecting to a server that never answers the SYN; the list is replaced
    meanwhile; the connect times out and the retry goes to the next server of the list the
    request started with. New requests use the new list."""
    a, c = backend("a"), backend("c")
    hole = Blackhole()
    try:
        path = sock_path(tmp_path)
        sl = sluice.proxy(hole.address, a, workers=1, admin={"socket": path},
                          timeouts={"upstream_connect": "1s"})
        assert admin_up(path)
        cl = HTTPClient(sl.port, timeout=10 * SCALE)
        cl.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # round robin: the hole first
        time.sleep(0.1)
        st, _, _ = api(path, "PUT", "/upstreams/u", body={"servers": [{"address": c.address}]})
        assert st == 200
        r = cl.read_response()
        assert r.status == 200 and r.header("X-Backend") == "a", r
        cl.close()
        assert set(backends_hit(sl, 4)) == {"c"}
    finally:
        hole.close()


def test_reload_keeps_api_list_until_the_file_changes(ups, backend):
    c = backend("c")
    sl, (a, b), path = ups()
    api(path, "PUT", "/upstreams/u", body={"servers": [{"address": c.address}]})
    sl.send_signal(signal.SIGHUP)  # same file
    assert sl.wait_log(lambda ln: "config reloaded" in ln)
    assert servers(path)[0] == [(c.address, 1)]
    assert set(backends_hit(sl, 4)) == {"c"}
    cfg = dict(sl.config)
    cfg["upstreams"] = {"u": {"servers": [{"address": a.address}]}}
    n = len([ln for ln in sl.log_lines() if "config reloaded" in ln])
    sl.reload(cfg)
    assert wait_for(lambda: len([ln for ln in sl.log_lines() if "config reloaded" in ln]) > n,
                    5 * SCALE)
    assert servers(path)[0] == [(a.address, 1)]
    assert set(backends_hit(sl, 4)) == {"a"}


def five_oh_three(conn, req):
    respond(conn, 503, headers=[("X-Backend", conn.backend.name)], body=b"busy\n")


def test_retry_on_status(ups, backend):
    bad, good = backend("bad", handler=five_oh_three), backend("good")
    sl, _, path = ups(bad, good, workers=1,
                      upstream={"retry_on": ["connect_failure", 503], "retries": 1,
                                "outlier": {"consecutive_5xx": 0}})
    for _ in range(6):
        with HTTPClient(sl.port) as c:
            r = c.request("GET", "/")
            assert r.status == 200 and r.header("X-Backend") == "good", r
    # first attempts alternate (a retry does not move the shared cursor)
    assert len(bad.requests) == 3
    # a POST whose body is whole in the buffer is retried too: good gets each body once
    n_bad, n_good = len(bad.requests), len(good.requests)
    for i in range(4):
        with HTTPClient(sl.port) as c:
            r = c.request("POST", "/", body=b"post-%d" % i)
            assert r.status == 200 and r.header("X-Backend") == "good", r
    got = [q.body for q in good.requests[n_good:]]
    assert sorted(got) == [b"post-%d" % i for i in range(4)], got
    assert len(bad.requests) - n_bad == 2  # first attempts still alternate
    # a body too big to stay in the buffer has been streamed away: the 503 goes through,
    # the body was sent once
    big = b"B" * (2 << 20)
    statuses = []
    n_good = len(good.requests)
    for _ in range(2):
        with HTTPClient(sl.port) as c:
            statuses.append(c.request("POST", "/big", body=big).status)
    assert sorted(statuses) == [200, 503], statuses
    assert len(good.requests) - n_good == 1


def test_no_retry_on_status_by_default(ups, backend):
    bad, good = backend("bad", handler=five_oh_three), backend("good")
    sl, _, path = ups(bad, good, workers=1, upstream={"outlier": {"consecutive_5xx": 0}})
    statuses = []
    for _ in range(4):
        with HTTPClient(sl.port) as c:
            statuses.append(c.request("GET", "/").status)
    assert sorted(statuses) == [200, 200, 503, 503]


def test_token_file_and_rotation(sluice, backend, tmp_path):
    path = sock_path(tmp_path)
    tok = os.path.join(str(tmp_path), "token")
    with open(tok, "w") as f:
        f.write("first-token\n")
    port = free_port()
    sl = sluice.proxy(backend("a"), admin={"socket": path, "listen": "127.0.0.1:%d" % port,
                                           "token_file": tok})
    assert admin_up(path)

    def tcp(auth):
        with HTTPClient(port) as c:
            h = {"Authorization": auth} if auth is not None else {}
            return c.request("GET", "/upstreams/u", headers=h, host="localhost").status
    assert tcp(None) == 401
    assert tcp("Bearer wrong") == 401
    assert tcp("Bearer first-token") == 200
    with open(tok, "w") as f:
        f.write("second-token")
    sl.send_signal(signal.SIGHUP)
    assert wait_for(lambda: tcp("Bearer second-token") == 200, 5 * SCALE)
    assert tcp("Bearer first-token") == 401


@pytest.mark.parametrize("content", ["", "\n", "two words\n", "a\nb\n", "x" * 5000])
def test_bad_token_file_refused(sluice, backend, tmp_path, content):
    tok = os.path.join(str(tmp_path), "token")
    with open(tok, "w") as f:
        f.write(content)
    sl = sluice.new()
    cfg = sluice.proxy_config(backend("a"), sl=sl,
                              admin={"listen": "127.0.0.1:%d" % free_port(), "token_file": tok})
    sl.write_config(cfg)
    import subprocess
    from daemon import SLUICED
    p = subprocess.run([SLUICED, "-t", "-c", sl.config_path], capture_output=True, text=True)
    assert p.returncode == 1 and "admin.token_file" in p.stderr, p.stderr


def test_remote_listen_needs_allow_remote(sluice, backend, tmp_path):
    import subprocess
    from daemon import SLUICED
    sl = sluice.new()
    port = free_port()
    cfg = sluice.proxy_config(backend("a"), sl=sl,
                              admin={"listen": "0.0.0.0:%d" % port, "token": "t0ken"})
    sl.write_config(cfg)
    p = subprocess.run([SLUICED, "-t", "-c", sl.config_path], capture_output=True, text=True)
    assert p.returncode == 1 and "allow_remote" in p.stderr, p.stderr
    cfg["admin"]["allow_remote"] = True
    sl.start(cfg)
    assert wait_for(lambda: _tcp_status(port, "Bearer t0ken") == 200, 5 * SCALE)
    # /healthz and /readyz answer probes without the token; everything else wants it
    assert _tcp_status(port, None) == 401
    assert _tcp_status(port, None, "/upstreams/u") == 401
    assert _tcp_status(port, None, "/healthz") == 200


def _tcp_status(port, auth, target="/status"):
    try:
        with HTTPClient(port) as c:
            h = {"Authorization": auth} if auth else {}
            return c.request("GET", target, headers=h, host="localhost").status
    except OSError:
        return None
