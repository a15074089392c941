"""TLS to upstreams and HTTP CONNECT proxies, seen from the wire.

Hostile first: a TLS backend that closes mid-handshake, one that answers the ClientHello
with garbage, a CONNECT proxy that answers 200 and then garbage, one that answers with a
body, one that refuses: each is a 502 with its own log reason and counter, and nothing
crashes. Then what must work: an untrusted certificate is a 502; a certificate verified
by name while the connection goes to an IP is served; an upstream that requires a client
certificate is served with it; the CONNECT proxy path is served, pooled and reused, a
non-2xx from the proxy is a 502; a pooled TLS 1.3 connection that receives a
NewSessionTicket and a KeyUpdate while idle is reused; a new connection resumes the
session of the last one.

Certificates are made at run time with openssl (nothing secret is committed); the TLS
backend is selftests/proxies/tls_backend.c; the CONNECT proxy is a small thread here."""
import os
import select
import socket
import subprocess
import threading

import pytest

from backends import free_port
from client import HTTPClient
from daemon import wait_for
from env import BUILD, SCALE, TIMEOUT
from test_pool import admin_sock, workers, total  # noqa: F401  (fixtures and helpers)

TLS_BACKEND = os.path.join(BUILD, "selftests", "proxies", "tls_backend")


# -- certificates -------------------------------------------------------------------------
def _openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE)


def _ca(d, name):
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-keyout", name + ".key", "-out", name + ".pem", "-days", "2",
             "-subj", "/CN=" + name, cwd=d)
    return os.path.join(d, name + ".pem")


def _leaf(d, ca, name, cn, san=None, client=False):
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + cn, cwd=d)
    ext = os.path.join(d, name + ".ext")
    with open(ext, "w") as f:
        if san:
            f.write("subjectAltName=%s\n" % san)
        f.write("extendedKeyUsage=%s\n" % ("clientAuth" if client else "serverAuth"))
    _openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key",
             "-CAcreateserial", "-out", name + ".pem", "-days", "2", "-extfile", ext, cwd=d)
    return os.path.join(d, name + ".pem"), os.path.join(d, name + ".key")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("pki"))
    ca = _ca(d, "ca")
    other = _ca(d, "other")
    crt, key = _leaf(d, "ca", "api", "api.internal", "DNS:api.internal")
    ocrt, okey = _leaf(d, "other", "rogue", "api.internal", "DNS:api.internal")
    cca = _ca(d, "clientca")
    ccrt, ckey = _leaf(d, "clientca", "client", "sluice-proxy", client=True)
    return dict(dir=d, ca=ca, other_ca=other, cert=crt, key=key, rogue_cert=ocrt,
                rogue_key=okey, client_ca=cca, client_cert=ccrt, client_key=ckey)


# -- the TLS backend (C) -----------------------------------------------------------------
class TLSBackend:
    def __init__(self, cert, key, *args):
        if not os.path.exists(TLS_BACKEND):
            raise AssertionError("not built: %s (make test-proxies)" % TLS_BACKEND)
        self.proc = subprocess.Popen([TLS_BACKEND, "--cert", cert, "--key", key] + list(args),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1)
        self.lines = []
        first = self.next_line()
        assert first.startswith("port "), first
        self.port = int(first.split()[1])
        self.address = "127.0.0.1:%d" % self.port

    def next_line(self, timeout=TIMEOUT):
        r, _, _ = select.select([self.proc.stdout], [], [], timeout)
        assert r, "tls_backend said nothing within %ss (so far: %r)" % (timeout, self.lines)
        line = self.proc.stdout.readline().strip()
        assert line, "tls_backend exited: %s" % self.proc.stderr.read()
        self.lines.append(line)
        return line

    def wait_line(self, prefix):
        for line in self.lines:
            if line.startswith(prefix):
                self.lines.remove(line)
                return line
        while True:
            line = self.next_line()
            if line.startswith(prefix):
                self.lines.remove(line)
                return line

    def poke(self):
        self.proc.stdin.write("poke\n")
        self.proc.stdin.flush()

    def handshakes(self):
        """Handshakes so far: the backend writes each line before it answers on that
        connection, so every handshake behind a response already read is in the pipe."""
        while select.select([self.proc.stdout], [], [], 0)[0]:
            line = self.proc.stdout.readline().strip()
            if not line:
                break
            self.lines.append(line)
        return [ln for ln in self.lines if ln.startswith("handshake ")]

    def stop(self):
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def tls_backend():
    made = []

    def make(cert, key, *args):
        b = TLSBackend(cert, key, *args)
        made.append(b)
        return b

    yield make
    for b in made:
        b.stop()


# -- hostile TLS servers and a CONNECT proxy ----------------------------------------------
class RawServer:
    """Accepts connections and runs fn(sock) on each in a thread."""

    def __init__(self, fn):
        self.fn = fn
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.port = self.lsock.getsockname()[1]
        self.address = "127.0.0.1:%d" % self.port
        self.accepted = 0
        self.stopping = False
        self.t = threading.Thread(target=self._loop, daemon=True)
        self.t.start()

    def _loop(self):
        self.lsock.settimeout(0.2)
        while not self.stopping:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                continue
            self.accepted += 1
            threading.Thread(target=self._run, args=(c,), daemon=True).start()

    def _run(self, c):
        try:
            c.settimeout(TIMEOUT)
            self.fn(c)
        except OSError:
            pass
        finally:
            c.close()

    def stop(self):
        self.stopping = True
        self.lsock.close()


@pytest.fixture
def raw_server():
    made = []

    def make(fn):
        s = RawServer(fn)
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()


def _read_head(c):
    data = b""
    while b"\r\n\r\n" not in data:
        b = c.recv(4096)
        if not b:
            return None, data
        data += b
    head, _, rest = data.partition(b"\r\n\r\n")
    return head.decode("latin-1"), rest


def _pipe(a, b):
    """Copy both ways until either side closes."""
    socks = [a, b]
    while True:
        r, _, _ = select.select(socks, [], [], 30)
        if not r:
            return
        for s in r:
            d = s.recv(65536)
            if not d:
                return
            (b if s is a else a).sendall(d)


class ConnectProxy(RawServer):
    """An HTTP CONNECT proxy: mode "ok" tunnels, others misbehave on purpose."""

    def __init__(self, mode="ok"):
        self.mode = mode
        self.requests = []  # CONNECT request heads
        super().__init__(self._serve)

    def _serve(self, c):
        head, rest = _read_head(c)
        if head is None:
            return
        self.requests.append(head)
        if self.mode == "refuse":
            c.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                      b"Proxy-Authenticate: Basic realm=x\r\nContent-Length: 6\r\n\r\ndenied")
            return
        if self.mode == "garbage":
            c.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            c.sendall(b"\x00garbage that is no TLS record\r\n" * 8)
            return
        if self.mode == "body":
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
            return
        if self.mode == "not-http":
            c.sendall(b"SSH-2.0-OpenSSH_9.0\r\n\r\n")
            return
        target = head.split("\r\n")[0].split()[1]
        host, _, port = target.rpartition(":")
        up = socket.create_connection((host.strip("[]"), int(port)), timeout=TIMEOUT)
        try:
            c.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            if rest:
                up.sendall(rest)
            c.settimeout(None)
            up.settimeout(None)
            _pipe(c, up)
        finally:
            up.close()


@pytest.fixture
def connect_proxy():
    made = []

    def make(mode="ok"):
        p = ConnectProxy(mode)
        made.append(p)
        return p

    yield make
    for p in made:
        p.stop()


# -- helpers ----------------------------------------------------------------------------
def tls_upstream(address, pki, via=None, **tls):
    t = {"ca": pki["ca"], "verify_hostname": "api.internal", "sni": "api.internal"}
    t.update(tls)
    u = {"servers": [{"address": address}], "tls": t}
    if via:
        u["via_proxy"] = via
    return u


def start(sluice, admin, upstream, **kw):
    s = sluice.new()
    cfg = sluice.config([{"upstream": "u"}], {"u": upstream}, sl=s,
                        admin={"socket": admin}, **kw)
    s.start(cfg)
    wait_for(lambda: os.path.exists(admin), TIMEOUT, what="admin socket")
    return s


def get(s, path="/"):
    c = HTTPClient(s.port)
    try:
        return c.request("GET", path)
    finally:
        c.close()


def counter(admin, key):
    return total(workers(admin), key)


# -- hostile ------------------------------------------------------------------------------
def test_backend_closing_mid_handshake_is_502(sluice, raw_server, pki, admin_sock):
    def close_after_hello(c):
        c.recv(4096)  # the ClientHello

    srv = raw_server(close_after_hello)
    s = start(sluice, admin_sock, tls_upstream(srv.address, pki))
    r = get(s)
    assert r.status == 502
    assert srv.accepted >= 1
    s.wait_log(lambda ln: "upstream TLS handshake failed" in ln)
    assert counter(admin_sock, "upstream_tls_handshake_failed") >= 1
    assert get(s).status == 502  # and again: nothing was left behind
    assert s.running()


def test_backend_answering_garbage_is_502(sluice, raw_server, pki, admin_sock):
    def garbage(c):
        c.recv(4096)
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")

    srv = raw_server(garbage)
    s = start(sluice, admin_sock, tls_upstream(srv.address, pki))
    assert get(s).status == 502
    s.wait_log(lambda ln: "upstream TLS handshake failed" in ln)
    assert counter(admin_sock, "upstream_tls_handshake_failed") >= 1


@pytest.mark.parametrize("mode", ["garbage", "body", "not-http"])
def test_proxy_misbehaving_is_502(sluice, connect_proxy, tls_backend, pki, admin_sock, mode):
    b = tls_backend(pki["cert"], pki["key"])
    p = connect_proxy(mode)
    s = start(sluice, admin_sock, tls_upstream(b.address, pki, via={"address": p.address}))
    r = get(s)
    assert r.status == 502
    assert len(p.requests) >= 1
    if mode == "garbage":
        # a 200, then bytes that are no TLS: the handshake over the tunnel fails
        s.wait_log(lambda ln: "upstream TLS handshake failed" in ln or
                   "upstream proxy" in ln)
    else:
        s.wait_log(lambda ln: "upstream proxy refused CONNECT" in ln)
        assert counter(admin_sock, "upstream_proxy_refused") >= 1
    assert not b.handshakes()  # nothing reached the backend
    assert s.running()


def test_proxy_refusal_is_502_with_reason(sluice, connect_proxy, tls_backend, pki, admin_sock):
    b = tls_backend(pki["cert"], pki["key"])
    p = connect_proxy("refuse")
    s = start(sluice, admin_sock, tls_upstream(b.address, pki, via={"address": p.address}))
    assert get(s).status == 502
    line = s.wait_log(lambda ln: "upstream proxy refused CONNECT" in ln)
    assert "status=407" in line
    assert counter(admin_sock, "upstream_proxy_refused") == 1
    assert counter(admin_sock, "upstream_tls_handshake_failed") == 0


# -- verification ---------------------------------------------------------------------------
def test_untrusted_certificate_is_502(sluice, tls_backend, pki, admin_sock):
    b = tls_backend(pki["rogue_cert"], pki["rogue_key"])
    s = start(sluice, admin_sock, tls_upstream(b.address, pki))
    assert get(s).status == 502
    line = s.wait_log(lambda ln: "upstream certificate not verified" in ln)
    assert "verify_error=" in line
    assert counter(admin_sock, "upstream_tls_verify_failed") == 1
    assert counter(admin_sock, "upstream_tls_handshake_failed") == 0


def test_wrong_name_is_502(sluice, tls_backend, pki, admin_sock):
    b = tls_backend(pki["cert"], pki["key"])
    s = start(sluice, admin_sock, tls_upstream(b.address, pki, verify_hostname="other.internal"))
    assert get(s).status == 502
    s.wait_log(lambda ln: "upstream certificate not verified" in ln)


def test_verified_by_name_connected_by_ip(sluice, tls_backend, pki, admin_sock):
    b = tls_backend(pki["cert"], pki["key"])
    s = start(sluice, admin_sock, tls_upstream(b.address, pki))
    r = get(s, "/hello")
    assert r.status == 200, r
    assert r.body == b"ok /hello\n"
    assert r.header("X-Client") == "-"
    # pooled: the next request goes over the same TLS connection
    c = HTTPClient(s.port)
    try:
        conns = {c.request("GET", "/%d" % i).header("X-Conn") for i in range(5)}
    finally:
        c.close()
    assert len(conns) == 1
    assert len(b.handshakes()) <= 2


def test_verify_off_accepts_untrusted(sluice, tls_backend, pki, admin_sock):
    b = tls_backend(pki["rogue_cert"], pki["rogue_key"])
    s = start(sluice, admin_sock, tls_upstream(b.address, pki, verify=False))
    assert get(s).status == 200


def test_client_certificate(sluice, tls_backend, pki, admin_sock):
    b = tls_backend(pki["cert"], pki["key"], "--client-ca", pki["client_ca"])
    # without one: the backend refuses the handshake
    s = start(sluice, admin_sock, tls_upstream(b.address, pki))
    assert get(s).status == 502
    s2 = start(sluice, admin_sock + "2", tls_upstream(b.address, pki,
                                                       client_cert=pki["client_cert"],
                                                       client_key=pki["client_key"]))
    r = get(s2)
    assert r.status == 200, r
    assert "CN=sluice-proxy" in r.header("X-Client")


# -- CONNECT proxy -------------------------------------------------------------------------
def test_via_connect_proxy_pooled_and_reused(sluice, connect_proxy, tls_backend, pki,
                                             admin_sock):
    b = tls_backend(pki["cert"], pki["key"])
    p = connect_proxy("ok")
    s = start(sluice, admin_sock, tls_upstream(
        b.address, pki, via={"address": p.address,
                             "headers": {"Proxy-Authorization": "Basic dTpw"}}))
    for i in range(6):
        r = get(s, "/%d" % i)  # a new client connection each time
        assert r.status == 200, r
        assert r.body == ("ok /%d\n" % i).encode()
    assert len(p.requests) == 1, p.requests  # one tunnel, reused
    req = p.requests[0].split("\r\n")
    assert req[0] == "CONNECT %s HTTP/1.1" % b.address
    assert "Proxy-Authorization: Basic dTpw" in req
    assert any(ln.lower() == "host: %s" % b.address for ln in req)
    assert counter(admin_sock, "upstream_reused") >= 5


def test_plain_http_via_connect_proxy(sluice, connect_proxy, backend, admin_sock):
    b = backend()
    p = connect_proxy("ok")
    s = start(sluice, admin_sock, {"servers": [{"address": b.address}],
                                   "via_proxy": {"address": p.address}})
    assert get(s, "/a").status == 200
    assert get(s, "/b").status == 200
    assert len(p.requests) == 1


# -- idle pooled TLS 1.3 connections ----------------------------------------------------------
def test_ticket_and_key_update_while_idle_keep_connection(sluice, tls_backend, pki, admin_sock):
    b = tls_backend(pki["cert"], pki["key"], "--idle-events")
    s = start(sluice, admin_sock, tls_upstream(b.address, pki))
    r1 = get(s, "/one")
    assert r1.status == 200
    b.poke()  # the backend writes NewSessionTicket + KeyUpdate to the idle connection
    b.wait_line("idle-sent conn=%s" % r1.header("X-Conn"))
    r2 = get(s, "/two")
    assert r2.status == 200, r2
    assert r2.header("X-Conn") == r1.header("X-Conn")  # reused, not dropped
    assert counter(admin_sock, "pool_idle_closed") == 0
    b.poke()
    r3 = get(s, "/three")
    assert r3.status == 200 and r3.header("X-Conn") == r1.header("X-Conn")


def test_session_resumed_on_next_connection(sluice, tls_backend, pki, admin_sock):
    b = tls_backend(pki["cert"], pki["key"])
    s = start(sluice, admin_sock, dict(tls_upstream(b.address, pki),
                                       pool={"max_requests_per_conn": 1}))
    first = get(s, "/1")
    assert first.status == 200 and first.header("X-Resumed") == "0"
    for i in range(3):
        r = get(s, "/r%d" % i)
        assert r.status == 200
        assert r.header("X-Conn") != first.header("X-Conn")
        assert r.header("X-Resumed") == "1", r


# -- the ops API: examples/tls_upstream.c ----------------------------------------------------
def test_example_tls_upstream_chosen_per_request(sluice, tls_backend, pki, monkeypatch):
    a = tls_backend(pki["cert"], pki["key"])
    b = tls_backend(pki["cert"], pki["key"])
    rogue = tls_backend(pki["rogue_cert"], pki["rogue_key"])
    monkeypatch.setenv("SLUICE_EXAMPLE_CA", pki["ca"])
    monkeypatch.setenv("SLUICE_EXAMPLE_SNI", "api.internal")
    s = sluice.new("tls_upstream")
    s.binary = os.path.join(BUILD, "examples", "tls_upstream")
    cfg = sluice.config([], None, sl=s)
    cfg["listeners"][0].pop("routes", None)
    s.start(cfg)
    c = s.client()
    for port, backend in ((a.port, a), (b.port, b), (a.port, a)):
        r = c.request("GET", "/x", headers=[("X-Upstream-Port", str(port))])
        assert r.status == 200, r
        assert r.body == b"ok /x\n"
    assert len(a.handshakes()) == 1 and len(b.handshakes()) == 1  # pooled per peer
    r = c.request("GET", "/y", headers=[("X-Upstream-Port", str(rogue.port))])
    assert r.status == 502  # not signed by SLUICE_EXAMPLE_CA
