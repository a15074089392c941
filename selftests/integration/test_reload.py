"""SIGHUP reloads the config file: new routes and upstreams take effect without dropping
established connections; an invalid file is rejected and the old config keeps serving."""
import re
import signal

from client import HTTPClient, build_request
from daemon import to_yaml, wait_for
from env import SCALE


def served_by(port, target="/", host="sluice.test"):
    try:
        with HTTPClient(port, timeout=3) as c:
            r = c.request("GET", target, host=host)
    except (OSError, AssertionError):
        return None
    return r.header("X-Backend") or r.body.decode("latin-1", "replace")


def two_upstream_config(sluice, sl, a, b, which, **kw):
    """Everything to upstream `which` ("a" or "b"), both defined."""
    return sluice.config([{"upstream": which}],
                         {"a": {"servers": [{"address": a.address}]},
                          "b": {"servers": [{"address": b.address}]}}, sl=sl, **kw)


def test_sighup_switches_route_and_keeps_connections(sluice, backend):
    a, b = backend("a"), backend("b")
    sl = sluice.new()
    sl.start(two_upstream_config(sluice, sl, a, b, "a"))
    old = sl.client()
    assert old.request("GET", "/before").header("X-Backend") == "a"
    sl.reload(two_upstream_config(sluice, sl, a, b, "b"))
    assert wait_for(lambda: served_by(sl.port) == "b", 5 * SCALE), \
        "new route never took effect; log:\n" + sl.stderr()[-2000:]
    assert sl.running()
    # the keep-alive connection opened before the reload keeps working
    r = old.request("GET", "/after")
    assert r.status == 200 and r.header("X-Backend") in ("a", "b")
    assert old.request("GET", "/again").status == 200


def test_sighup_changes_upstream_servers(sluice, backend):
    a, b = backend("a"), backend("b")
    sl = sluice.new()
    sl.start(sluice.proxy_config(a, sl=sl))
    assert served_by(sl.port) == "a"
    sl.reload(sluice.proxy_config(b, sl=sl))
    assert wait_for(lambda: served_by(sl.port) == "b", 5 * SCALE)


def test_sighup_changes_respond_body(sluice):
    sl = sluice.new()

    def cfg(body):
        return sluice.config([{"respond": {"status": 200, "body": body}}], sl=sl)
    sl.start(cfg("version one\n"))
    assert served_by(sl.port) == "version one\n"
    sl.reload(cfg("version two\n"))
    assert wait_for(lambda: served_by(sl.port) == "version two\n", 5 * SCALE)


def test_request_in_flight_during_reload_completes(sluice, backend):
    a, b = backend("a"), backend("b")
    sl = sluice.new()
    sl.start(two_upstream_config(sluice, sl, a, b, "a"))
    c = sl.client(timeout=15)
    c.send(build_request("GET", "/_/hold?s=10"))
    assert a.wait_requests(1)
    sl.reload(two_upstream_config(sluice, sl, a, b, "b"))
    assert wait_for(lambda: served_by(sl.port) == "b", 5 * SCALE)
    a.release.set()
    r = c.read_response()
    assert r.status == 200 and r.body == b"released\n"


def test_invalid_reload_keeps_old_config(sluice, backend):
    a, b = backend("a"), backend("b")
    sl = sluice.new()
    good = two_upstream_config(sluice, sl, a, b, "a")
    sl.start(good)
    assert served_by(sl.port) == "a"
    text = to_yaml(two_upstream_config(sluice, sl, a, b, "b"))
    lines = text.splitlines()
    lines.insert(1, "bogus_key: 1")  # line 2, column 1
    sl.write_config("\n".join(lines) + "\n")
    sl.send_signal(signal.SIGHUP)
    where = "%s:2:1:" % sl.config_path
    line = sl.wait_log(lambda ln: "reload" in ln and where in ln)
    assert line, "no reload error naming %s in the log:\n%s" % (where, sl.stderr()[-3000:])
    assert re.search(r"\blevel=(error|warn)\b", line), line
    assert sl.running()
    for _ in range(5):
        assert served_by(sl.port) == "a", "old config stopped serving after a bad reload"
    # a later valid file is taken
    sl.reload(two_upstream_config(sluice, sl, a, b, "b"))
    assert wait_for(lambda: served_by(sl.port) == "b", 5 * SCALE)


def test_reload_with_undefined_upstream_rejected(sluice, backend):
    a = backend("a")
    sl = sluice.new()
    sl.start(sluice.proxy_config(a, sl=sl))
    bad = sluice.config([{"upstream": "missing"}], {"u": {"servers": [{"address": a.address}]}},
                        sl=sl)
    sl.reload(bad)
    assert sl.wait_log(lambda ln: "reload" in ln and sl.config_path + ":" in ln), \
        sl.stderr()[-3000:]
    assert served_by(sl.port) == "a"


def test_many_reloads_under_traffic(sluice, backend):
    a, b = backend("a"), backend("b")
    sl = sluice.new()
    sl.start(two_upstream_config(sluice, sl, a, b, "a", workers=2))
    keep = sl.client()
    for i in range(20):
        sl.reload(two_upstream_config(sluice, sl, a, b, "ab"[i % 2], workers=2))
        assert served_by(sl.port) in ("a", "b")
        assert keep.request("GET", "/k%d" % i).status == 200
    assert sl.running()


def test_reload_that_shortens_keepalive_applies_to_waiting_connections(sluice, backend):
    """Found in review of the idle lists: a connection that went idle before a reload
    shortening client_keepalive (or one after it, queued behind) kept the old timeout."""
    a, b = backend("a"), backend("b")
    sl = sluice.new()
    sl.start(sluice.proxy_config(a, sl=sl, timeouts={"client_keepalive": "60s"}))
    before = HTTPClient(sl.port, timeout=10 * SCALE)
    assert before.request("GET", "/").status == 200  # now idle, 60 s to go
    sl.reload(sluice.proxy_config(b, sl=sl, timeouts={"client_keepalive": "1s"}))
    assert wait_for(lambda: served_by(sl.port) == "b", 5 * SCALE)
    after = HTTPClient(sl.port, timeout=10 * SCALE)
    assert after.request("GET", "/").status == 200
    # both are closed about 1 s after they went idle, not after 60 s
    for c in (before, after):
        c.sock.settimeout(10 * SCALE)
        assert c.sock.recv(1) == b"", "kept-alive connection not closed at the new timeout"
        c.close()
