"""Active health checks (tcp, http: status range, body text; a backend that never answers
or answers garbage) and passive outlier ejection (consecutive 5xx / connect failures,
cooldown, max_ejection_percent), seen through /upstreams and /metrics while requests keep
succeeding on the other servers."""
import os
import socket
import threading
import time

import pytest

from backends import Backend, respond
from client import HTTPClient
from daemon import wait_for
from env import SCALE
from test_upstream_api import admin_up, api, sock_path
from test_upstream_tls import connect_proxy, pki, tls_backend  # noqa: F401  (fixtures)


def states(path, name="u"):
    st, j, _ = api(path, "GET", "/upstreams/" + name)
    assert st == 200, j
    return {s["address"]: s for s in j["servers"]}


def state_of(path, addr):
    return states(path)[addr]["state"]


def get_ok(sl, n=1):
    for _ in range(n):
        with HTTPClient(sl.port) as c:
            r = c.request("GET", "/")
            assert r.status == 200, r


class Pounder:
    """GETs on new connections in a thread; every status it saw."""

    def __init__(self, sl):
        self.sl, self.statuses, self.stop = sl, [], False
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stop:
            try:
                with HTTPClient(self.sl.port) as c:
                    self.statuses.append(c.request("GET", "/").status)
            except OSError as e:
                self.statuses.append(repr(e))
            time.sleep(0.01)

    def done(self):
        self.stop = True
        self.t.join(10)
        return self.statuses


@pytest.fixture
def hc(sluice, tmp_path):
    def start(*bs, check=None, upstream=None, workers=2):
        path = sock_path(tmp_path)
        up = {"retries": 1}
        if check is not None:
            up["health_check"] = check
        up.update(upstream or {})
        sl = sluice.proxy(*bs, workers=workers, admin={"socket": path}, upstream=up)
        assert admin_up(path)
        return sl, path
    return start


TCP = {"type": "tcp", "interval": "200ms", "timeout": "100ms", "rise": 2, "fall": 2}


def test_tcp_check_down_and_back(hc, backend):
    """A killed backend goes down after `fall` failed checks and comes back after `rise`
    good ones, while GETs keep succeeding (connect failures retried on the other server).
    Passive ejection is off here so that the state is the checks' alone. The time it takes
    is fall (rise) x interval by construction of the scheduler; the test checks the counts
    the verdicts were made on (timings belong to make bench)."""
    a, b = backend("a"), backend("b")
    sl, path = hc(a, b, check=TCP,
                  upstream={"outlier": {"consecutive_connect_failures": 0, "consecutive_5xx": 0}})
    assert wait_for(lambda: states(path)[a.address]["health"]["checks_ok"] >= 2, 5 * SCALE)
    assert state_of(path, a.address) == "up"
    p = Pounder(sl)
    port = a.port
    a.stop()
    ok = wait_for(lambda: state_of(path, a.address) == "down", 5 * SCALE)
    assert ok, states(path)[a.address]
    ln = sl.wait_log(lambda ln: "server down" in ln and a.address in ln)
    assert "checks_failed=2" in ln, ln
    a2 = Backend("a2", port=port)
    try:
        assert wait_for(lambda: state_of(path, a.address) == "up", 5 * SCALE), \
            states(path)[a.address]
        ln = sl.wait_log(lambda ln: "server up" in ln and a.address in ln)
        assert "checks_ok=2" in ln, ln
        statuses = p.done()
        assert statuses and all(s == 200 for s in statuses), [s for s in statuses if s != 200]
        seen = set()
        for _ in range(10):
            with HTTPClient(sl.port) as c:
                seen.add(c.request("GET", "/").header("X-Backend"))
        assert "a2" in seen
    finally:
        a2.stop()


def health_handler(flags):
    def handler(conn, req):
        if req.path == "/hc":
            if flags.get("mode") == "503":
                respond(conn, 503, body=b"sick\n")
            elif flags.get("mode") == "wrongbody":
                respond(conn, 200, body=b"degraded\n")
            else:
                respond(conn, 200, body=b"status: ok\n")
            return None
        respond(conn, 200, headers=[("X-Backend", conn.backend.name)], body=b"hi\n")
        return None
    return handler


HTTP = {"type": "http", "path": "/hc", "host": "health.local", "status": "200-299",
        "body": "ok", "interval": "200ms", "timeout": "150ms", "rise": 1, "fall": 2}


def test_http_check_status_and_body(hc, backend):
    flags = {}
    a, b = backend("a", handler=health_handler(flags)), backend("b", handler=health_handler({}))
    sl, path = hc(a, b, check=HTTP)
    assert wait_for(lambda: states(path)[a.address]["health"]["checks_ok"] >= 1, 5 * SCALE)
    req = [r for r in a.requests if r.path == "/hc"][0]
    assert req.method == "GET" and req.header("Host") == "health.local"
    flags["mode"] = "503"
    assert wait_for(lambda: state_of(path, a.address) == "down", 5 * SCALE)
    assert "unexpected status" in states(path)[a.address]["health"]["last_failure"]
    get_ok(sl, 6)  # all on b
    flags["mode"] = None
    assert wait_for(lambda: state_of(path, a.address) == "up", 5 * SCALE)
    flags["mode"] = "wrongbody"
    assert wait_for(lambda: state_of(path, a.address) == "down", 5 * SCALE)
    assert "body lacks" in states(path)[a.address]["health"]["last_failure"]
    # /metrics has the checks
    st, _, r = api(path, "GET", "/metrics")
    text = r.body.decode()
    assert 'sluice_upstream_server_usable{upstream="u",server="%s"} 0' % a.address in text
    assert 'sluice_upstream_server_usable{upstream="u",server="%s"} 1' % b.address in text
    assert 'sluice_upstream_health_checks_total{upstream="u",server="%s",result="failed"}' \
        % a.address in text


class RawServer:
    """Accepts and then either says nothing (silent) or sends garbage."""

    def __init__(self, reply=None):
        self.reply = reply
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(64)
        self.ls.settimeout(0.2)
        self.address = "127.0.0.1:%d" % self.ls.getsockname()[1]
        self.conns, self.stop = [], False
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stop:
            try:
                c, _ = self.ls.accept()
            except OSError:
                continue
            self.conns.append(c)
            if self.reply is not None:
                try:
                    c.recv(4096)
                    c.sendall(self.reply)
                except OSError:
                    pass

    def close(self):
        self.stop = True
        self.t.join(2)
        for c in self.conns:
            c.close()
        self.ls.close()


@pytest.mark.parametrize("reply", [None, b"\x00\xffgarbage\r\n\r\n", b"HTTP/1.1 2",
                                   b"HTTP/1.1 200 OK\r\n" + b"X" * 20000,
                                   b"HTTP/1.1 200 " + b"O" * 100000 + b"\r\n\r\nok",
                                   b"SMTP ready\r\n"],
                         ids=["silent", "binary", "truncated", "endless-head",
                              "huge-status-line", "smtp"])
def test_http_check_silent_or_garbage_backend_is_down(hc, backend, reply):
    raw = RawServer(reply)
    try:
        b = backend("b", handler=health_handler({}))
        sl, path = hc(raw.address, b, check=HTTP, upstream={"retries": 1})
        assert wait_for(lambda: state_of(path, raw.address) == "down", 5 * SCALE)
        why = states(path)[raw.address]["health"]["last_failure"]
        assert why in ("timed out", "not an HTTP/1 response", "short or no response",
                       "body lacks the expected text"), why
        assert state_of(path, b.address) == "up"
    finally:
        raw.close()


def five_oh_two(conn, req):
    respond(conn, 502, headers=[("X-Backend", conn.backend.name)], body=b"bad\n")


def test_passive_ejection_and_cooldown(hc, backend):
    bad, good = backend("bad", handler=five_oh_two), backend("good")
    sl, path = hc(bad, good, workers=1,
                  upstream={"retry_on": ["connect_failure", 502], "retries": 1,
                            "outlier": {"consecutive_5xx": 3, "base_ejection_time": "1s",
                                        "max_ejection_time": "10s",
                                        "max_ejection_percent": 50}})
    get_ok(sl, 10)  # 502s retried on good
    s = states(path)[bad.address]
    assert s["state"] == "ejected" and s["ejections"] == 1 and s["responses_5xx"] == 3
    sl.wait_log(lambda ln: "server ejected" in ln and bad.address in ln)
    n = len(bad.requests)
    get_ok(sl, 10)
    assert len(bad.requests) == n  # out of rotation while ejected
    assert wait_for(lambda: state_of(path, bad.address) == "up", 3 * SCALE)
    get_ok(sl, 10)  # back: 3 more 5xx, ejected again, for twice as long
    s = states(path)[bad.address]
    assert s["state"] == "ejected" and s["ejections"] == 2
    assert s["ejected_ms_left"] > 1000


def test_connect_failures_eject(hc, backend):
    good = backend("good")
    dead = backend("dead")
    dead_addr = dead.address
    dead.stop()
    sl, path = hc(dead_addr, good, workers=1,
                  upstream={"outlier": {"consecutive_connect_failures": 2,
                                        "max_ejection_percent": 50}})
    get_ok(sl, 6)
    s = states(path)[dead_addr]
    assert s["state"] == "ejected" and s["connect_failures"] == 2


def test_max_ejection_percent(hc, backend):
    """Three of four servers fail; 50% caps ejection at two; the third failing one and the
    good one stay in; with every server failing, the last usable one is never ejected."""
    bads = [backend("bad%d" % i, handler=five_oh_two) for i in range(3)]
    good = backend("good")
    sl, path = hc(*bads, good, workers=1,
                  upstream={"retry_on": [502], "retries": 3,
                            "outlier": {"consecutive_5xx": 2, "base_ejection_time": "30s",
                                        "max_ejection_percent": 50}})
    get_ok(sl, 20)
    st = states(path)
    ejected = [a for a, s in st.items() if s["state"] == "ejected"]
    assert len(ejected) == 2, st
    assert st[good.address]["state"] == "up"
    sl.wait_log(lambda ln: "server not ejected" in ln)


class Dripper(RawServer):
    """Answers a check one byte at a time, each byte well within the check's timeout, and
    never finishes: the check must end at its timeout all the same (a persistent event's
    timeout restarts at every byte; the check's deadline must not)."""

    def run(self):
        while not self.stop:
            try:
                c, _ = self.ls.accept()
            except OSError:
                continue
            self.conns.append(c)
            threading.Thread(target=self.drip, args=(c,), daemon=True).start()

    def drip(self, c):
        try:
            c.recv(4096)
            head = b"HTTP/1.1 200 OK\r\nX-Pad: "
            i = 0
            while not self.stop:
                c.sendall(head[i:i + 1] if i < len(head) else b"a")
                i += 1
                time.sleep(0.03)
        except OSError:
            pass


def test_http_check_dripping_backend_times_out(hc, backend):
    drip = Dripper()
    try:
        b = backend("b", handler=health_handler({}))
        # a byte every 30 ms, well within the 400 ms of the check
        sl, path = hc(drip.address, b, check=dict(HTTP, timeout="400ms", interval="500ms"))
        assert wait_for(lambda: state_of(path, drip.address) == "down", 10 * SCALE), \
            states(path)[drip.address]
        h = states(path)[drip.address]["health"]
        # (a health thread starved past the deadline on a loaded machine says "connect")
        assert h["last_failure"] in ("timed out", "connect timed out"), h
        assert h["checks_failed"] >= 2 and h["checks_ok"] == 0, h
    finally:
        drip.close()


# -- checks over TLS: the upstream's own verification settings --------------------------------
def tls_up(pki, **tls):
    t = {"ca": pki["ca"], "verify_hostname": "api.internal", "sni": "api.internal"}
    t.update(tls)
    return {"tls": t, "outlier": {"consecutive_connect_failures": 0, "consecutive_5xx": 0}}


HTTPS = dict(HTTP, body="ok /hc", host="api.internal")


def test_https_check_up_and_cert_failure_is_down(hc, tls_backend, pki):
    """An http check of a TLS upstream is sent over TLS, verified as requests are: the
    good server is up (the backend saw the handshakes), the one with a certificate from
    another CA is down with the reason in /upstreams, counted there and in /metrics, and
    requests keep going to the good one."""
    good = tls_backend(pki["cert"], pki["key"])
    rogue = tls_backend(pki["rogue_cert"], pki["rogue_key"])
    sl, path = hc(good.address, rogue.address, check=HTTPS, upstream=tls_up(pki))
    assert wait_for(lambda: states(path)[good.address]["health"]["checks_ok"] >= 2, 5 * SCALE), \
        states(path)[good.address]
    assert good.handshakes(), "the check did not speak TLS"
    assert wait_for(lambda: state_of(path, rogue.address) == "down", 5 * SCALE), \
        states(path)[rogue.address]
    h = states(path)[rogue.address]["health"]
    assert h["last_failure"].startswith("certificate not verified"), h
    assert h["tls_verify_failures"] >= 2 and h["checks_ok"] == 0, h
    assert states(path)[good.address]["health"]["tls_verify_failures"] == 0
    assert state_of(path, good.address) == "up"
    sl.wait_log(lambda ln: "server down" in ln and rogue.address in ln and
                "certificate not verified" in ln)
    for _ in range(6):
        with HTTPClient(sl.port) as c:
            r = c.request("GET", "/x")
            assert r.status == 200 and r.body == b"ok /x\n", r
    _, _, r = api(path, "GET", "/metrics")
    text = r.body.decode()
    line = [ln for ln in text.splitlines() if ln.startswith(
        'sluice_upstream_health_check_tls_verify_failures_total{upstream="u",server="%s"}'
        % rogue.address)]
    assert line and int(line[0].split()[-1]) >= 2, line


def test_https_check_wrong_name_is_down(hc, tls_backend, pki):
    b = tls_backend(pki["cert"], pki["key"])
    sl, path = hc(b.address, check=HTTPS, upstream=tls_up(pki, verify_hostname="other.internal"))
    assert wait_for(lambda: state_of(path, b.address) == "down", 5 * SCALE), states(path)
    assert states(path)[b.address]["health"]["last_failure"].startswith(
        "certificate not verified")


def test_https_check_verify_off_accepts_untrusted(hc, tls_backend, pki):
    rogue = tls_backend(pki["rogue_cert"], pki["rogue_key"])
    sl, path = hc(rogue.address, check=HTTPS, upstream=tls_up(pki, verify=False))
    assert wait_for(lambda: states(path)[rogue.address]["health"]["checks_ok"] >= 2, 5 * SCALE), \
        states(path)[rogue.address]
    assert state_of(path, rogue.address) == "up"


def test_tcp_check_of_tls_upstream_does_the_handshake(hc, tls_backend, pki):
    """A plain connect would pass on the rogue server: the tcp check of a TLS upstream is
    connect plus a verified handshake."""
    good = tls_backend(pki["cert"], pki["key"])
    rogue = tls_backend(pki["rogue_cert"], pki["rogue_key"])
    sl, path = hc(good.address, rogue.address, check=TCP, upstream=tls_up(pki))
    assert wait_for(lambda: state_of(path, rogue.address) == "down", 5 * SCALE), states(path)
    assert states(path)[rogue.address]["health"]["last_failure"].startswith(
        "certificate not verified")
    assert wait_for(lambda: states(path)[good.address]["health"]["checks_ok"] >= 2, 5 * SCALE)
    assert state_of(path, good.address) == "up"


@pytest.mark.parametrize("with_cert", [False, True], ids=["without", "with"])
def test_tls_check_client_certificate(hc, tls_backend, pki, with_cert):
    """A backend that wants a client certificate: down without one, up with the
    upstream's client_cert/client_key."""
    b = tls_backend(pki["cert"], pki["key"], "--client-ca", pki["client_ca"])
    extra = dict(client_cert=pki["client_cert"], client_key=pki["client_key"]) \
        if with_cert else {}
    sl, path = hc(b.address, check=HTTPS, upstream=tls_up(pki, **extra))
    if with_cert:
        assert wait_for(lambda: states(path)[b.address]["health"]["checks_ok"] >= 2,
                        5 * SCALE), states(path)[b.address]
        assert state_of(path, b.address) == "up"
        return
    assert wait_for(lambda: state_of(path, b.address) == "down", 5 * SCALE), states(path)
    why = states(path)[b.address]["health"]["last_failure"]
    # TLS 1.3: the server's refusal may come after the client's Finished, with the request
    assert why.startswith("TLS handshake failed") or why in ("short or no response",
                                                             "send failed"), why
    assert states(path)[b.address]["health"]["checks_ok"] == 0


@pytest.mark.parametrize("reply", [None, b"HTTP/1.1 400 Bad Request\r\n\r\n",
                                   b"\x16\x03\x03\x00\x02\x02\x28" + b"\x00" * 50],
                         ids=["silent", "plain-http", "garbage-record"])
def test_tls_check_of_a_broken_tls_server_is_down(hc, tls_backend, pki, reply):
    """A server that never answers the ClientHello, a plain HTTP server on a TLS
    upstream, one that sends a malformed record: down, each with a TLS reason."""
    raw = RawServer(reply)
    try:
        good = tls_backend(pki["cert"], pki["key"])
        sl, path = hc(raw.address, good.address, check=HTTPS, upstream=tls_up(pki))
        assert wait_for(lambda: state_of(path, raw.address) == "down", 5 * SCALE), \
            states(path)[raw.address]
        why = states(path)[raw.address]["health"]["last_failure"]
        assert why.startswith("TLS handshake") or why == "connect failed", why
        assert states(path)[raw.address]["health"]["tls_verify_failures"] == 0
        assert wait_for(lambda: state_of(path, good.address) == "up", 5 * SCALE)
    finally:
        raw.close()


# -- checks through the upstream's CONNECT proxy -------------------------------------------
def test_checks_go_through_via_proxy(hc, backend, connect_proxy):
    """Requests to this upstream go through the proxy: so do its checks, with the
    proxy headers (every check is a CONNECT the proxy saw)."""
    b = backend("b", handler=health_handler({}))
    p = connect_proxy("ok")
    sl, path = hc(b, check=HTTP,
                  upstream={"via_proxy": {"address": p.address,
                                          "headers": {"Proxy-Authorization": "Basic dTpw"}}})
    assert wait_for(lambda: states(path)[b.address]["health"]["checks_ok"] >= 2, 5 * SCALE), \
        states(path)[b.address]
    heads = list(p.requests)
    assert len(heads) >= 2, heads
    assert all(h.startswith("CONNECT %s HTTP/1.1" % b.address) for h in heads), heads
    assert all("Proxy-Authorization: Basic dTpw" in h for h in heads), heads
    assert [r for r in b.requests if r.path == "/hc"]


@pytest.mark.parametrize("mode,why", [
    ("refuse", ("proxy refused CONNECT",)),
    ("body", ("proxy: 2xx answer announcing a body",)),
    # the garbage may come with the answer or just after it (then it reads as the server's)
    ("garbage", ("proxy: bytes after its answer", "not an HTTP/1 response")),
    ("not-http", ("proxy refused CONNECT",))])
def test_misbehaving_via_proxy_fails_checks(hc, backend, connect_proxy, mode, why):
    b = backend("b", handler=health_handler({}))
    p = connect_proxy(mode)
    sl, path = hc(b, check=HTTP, upstream={"via_proxy": {"address": p.address}})
    assert wait_for(lambda: state_of(path, b.address) == "down", 5 * SCALE), states(path)
    assert states(path)[b.address]["health"]["last_failure"] in why
    assert not [r for r in b.requests if r.path == "/hc"]


def test_tls_check_through_via_proxy(hc, tls_backend, connect_proxy, pki):
    """TLS through the tunnel, verified as the server's: good is up, rogue is down."""
    good = tls_backend(pki["cert"], pki["key"])
    rogue = tls_backend(pki["rogue_cert"], pki["rogue_key"])
    p = connect_proxy("ok")
    up = tls_up(pki)
    up["via_proxy"] = {"address": p.address}
    sl, path = hc(good.address, rogue.address, check=HTTPS, upstream=up)
    assert wait_for(lambda: state_of(path, rogue.address) == "down", 5 * SCALE), states(path)
    assert states(path)[rogue.address]["health"]["last_failure"].startswith(
        "certificate not verified")
    assert wait_for(lambda: states(path)[good.address]["health"]["checks_ok"] >= 2, 5 * SCALE)
    assert any(h.startswith("CONNECT %s " % good.address) for h in p.requests)
