"""examples/hello_proxy.c: a custom proxy on the public API (sluice.h) runs as a real
daemon: upstream chosen by a request header, a response header added, a custom access
log field."""
import os

from env import BUILD

HELLO = os.path.join(BUILD, "examples", "hello_proxy")


def start_hello(sluice, backends):
    s = sluice.new("hello")
    s.binary = HELLO
    upstreams = {name: {"servers": [{"address": b.address}]} for name, b in backends.items()}
    cfg = sluice.config([], upstreams, sl=s)
    cfg["listeners"][0].pop("routes", None)  # a custom proxy does not use routes
    return s.start(cfg)


def test_header_selects_upstream(sluice, backend):
    default, other = backend("default"), backend("other")
    s = start_hello(sluice, {"default": default, "other": other})
    c = s.client()
    r = c.request("GET", "/a", headers=[("X-Backend", "other")])
    assert r.status == 200 and r.header("X-Backend") == "other"
    r = c.request("GET", "/b")
    assert r.status == 200 and r.header("X-Backend") == "default"
    r = c.request("GET", "/c", headers=[("X-Backend", "no-such-upstream")])
    assert r.status == 200 and r.header("X-Backend") == "default"
    assert len(other.requests) == 1 and len(default.requests) == 2
    # the choosing header is removed before the request goes upstream
    assert other.requests[0].header("X-Backend") is None


def test_response_header_added(sluice, backend):
    s = start_hello(sluice, {"default": backend("default")})
    r = s.client().request("GET", "/")
    assert r.status == 200
    assert r.header("X-Hello") == "from hello_proxy"


def test_custom_log_field(sluice, backend):
    s = start_hello(sluice, {"default": backend("default"), "other": backend("other")})
    c = s.client()
    c.request("GET", "/1", headers=[("X-Backend", "other")])
    c.request("GET", "/2")
    s.wait_access(2)
    got = {e["target"]: e.get("backend") for e in s.access_entries()}
    assert got == {"/1": "other", "/2": "default"}, got


def test_no_default_upstream_is_503(sluice, backend):
    s = start_hello(sluice, {"other": backend("other")})
    r = s.client().request("GET", "/")
    assert r.status == 503
    assert b"no upstream named default" in r.body


DISCOVERY = os.path.join(BUILD, "examples", "discovery")


def test_discovery_swaps_in_the_file_list(sluice, backend, tmp_path, monkeypatch):
    """examples/discovery.c: a background service reads a server list file and swaps it
    in (sl_upstream_set_servers); a bad file changes nothing."""
    from client import HTTPClient
    from daemon import wait_for
    from env import SCALE
    a, b = backend("a"), backend("b")
    lst = os.path.join(str(tmp_path), "servers.txt")
    with open(lst, "w") as f:
        f.write("# the list\n%s\n" % b.address)
    monkeypatch.setenv("SL_DISCOVERY_FILE", lst)
    monkeypatch.setenv("SL_DISCOVERY_UPSTREAM", "u")
    s = sluice.new("disc")
    s.binary = DISCOVERY
    s.start(sluice.proxy_config(a, sl=s))

    def hits():
        with HTTPClient(s.port) as c:
            return c.request("GET", "/").header("X-Backend")
    assert wait_for(lambda: hits() == "b", 5 * SCALE)
    assert all(hits() == "b" for _ in range(5))
    with open(lst + ".tmp", "w") as f:
        f.write("%s 1\n%s 1\nnot-an-address\n" % (a.address, b.address))
    os.replace(lst + ".tmp", lst)
    assert s.wait_log(lambda ln: "kept the old list" in ln and "not-an-address" in ln)
    assert all(hits() == "b" for _ in range(5))
    with open(lst + ".tmp", "w") as f:
        f.write("%s 1\n%s 1\n" % (a.address, b.address))
    os.replace(lst + ".tmp", lst)
    assert wait_for(lambda: {hits() for _ in range(4)} == {"a", "b"}, 5 * SCALE)
