"""Host names in admin API changes are resolved off the main loop.

The daemon runs in a mount namespace of its own whose /etc/resolv.conf points at a DNS
server of this test (a UDP socket on a loopback address of its own, 127.77.x.y:53): one that never answers, or one
that answers after a delay. While a PUT naming a host waits for its lookup, the admin API
(/metrics, GET /upstreams), a reload and the health checks go on; changes that came after
it wait behind it and apply in order; a name that does not resolve changes nothing; a
client that leaves, or a daemon that stops, while a lookup runs is harmless."""
import os
import random
import shutil
import socket
import struct
import threading
import time

import pytest

from client import HTTPClient
from daemon import wait_for
from env import SCALE, SLUICED
from test_upstream_api import admin_up, api, servers, sock_path

NAME = "backend.sluice-test"


class FakeDNS:
    """delay=None: never answers. Else answers A queries with 127.0.0.1 (AAAA: no
    records) after `delay` seconds; names starting "nowhere." do not exist (NXDOMAIN)."""

    def __init__(self, delay=None):
        self.delay, self.queries, self.stop = delay, [], False
        # a loopback address of its own (port 53 is fixed by resolv.conf): runs in
        # parallel never share a server
        for _ in range(100):
            self.ip = "127.77.%d.%d" % (random.randrange(256), random.randrange(1, 255))
            self.s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                self.s.bind((self.ip, 53))
                break
            except OSError:
                self.s.close()
        else:
            raise AssertionError("no free loopback address for the test DNS server")
        self.s.settimeout(0.2)
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stop:
            try:
                q, peer = self.s.recvfrom(4096)
            except OSError:
                continue
            self.queries.append(q)
            if self.delay is not None:
                threading.Thread(target=self.answer, args=(q, peer), daemon=True).start()

    def answer(self, q, peer):
        time.sleep(self.delay)
        try:
            qid, _flags, qd = struct.unpack("!HHH", q[:6])
            end = 12
            while q[end]:
                end += q[end] + 1
            qname_end = end + 1
            qtype = struct.unpack("!H", q[qname_end:qname_end + 2])[0]
            question = q[12:qname_end + 4]
            nx = q[12:qname_end].startswith(b"\x07nowhere")
            an = 1 if qtype == 1 and not nx else 0
            r = struct.pack("!HHHHHH", qid, 0x8183 if nx else 0x8180, 1, an, 0, 0) + question
            if an:
                r += struct.pack("!HHHIH", 0xc00c, 1, 1, 60, 4) + socket.inet_aton("127.0.0.1")
            self.s.sendto(r, peer)
        except (OSError, IndexError, struct.error):
            pass

    def close(self):
        self.stop = True
        self.t.join(2)
        self.s.close()


def wrapper(tmp_path, timeout_s, dns_ip):
    """sluiced in a mount namespace with our resolv.conf (same pid: unshare and sh exec)."""
    conf = os.path.join(str(tmp_path), "resolv.conf")
    with open(conf, "w") as f:
        f.write("nameserver %s\noptions timeout:%d attempts:1\n" % (dns_ip, timeout_s))
    script = os.path.join(str(tmp_path), "sluiced-ns")
    with open(script, "w") as f:
        f.write("#!/bin/sh\nexec unshare -m /bin/sh -c 'mount --bind %s /etc/resolv.conf && "
                "exec %s \"$@\"' sh \"$@\"\n" % (conf, SLUICED))
    os.chmod(script, 0o755)
    return script


@pytest.fixture
def ns(sluice, backend, tmp_path):
    if not shutil.which("unshare") or os.geteuid() != 0:
        pytest.skip("needs root and unshare for a private /etc/resolv.conf")
    made = []

    def start(delay=None, timeout_s=3, check=None):
        dns = FakeDNS(delay)
        made.append(dns)
        a = backend("a")
        path = sock_path(tmp_path)
        up = {"retries": 1}
        if check:
            up["health_check"] = check
        sl = sluice.new()
        sl.binary = wrapper(tmp_path, timeout_s, dns.ip)
        sl.start(sluice.proxy_config(a, upstream=up, sl=sl, workers=2,
                                     admin={"socket": path}))
        assert admin_up(path)
        return sl, a, path, dns

    yield start
    for d in made:
        d.close()


class Call:
    """An admin request in a thread: (status, json) once done."""

    def __init__(self, path, method, target, body=None):
        self.result, self.error = None, None
        self.t = threading.Thread(target=self.run, args=(path, method, target, body),
                                  daemon=True)
        self.t.start()

    def run(self, *a):
        try:
            self.result = api(*a, timeout=30 * SCALE)[:2]
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = e

    def done(self):
        return not self.t.is_alive()

    def wait(self):
        self.t.join(40 * SCALE)
        assert not self.t.is_alive(), "admin request never answered"
        assert self.error is None, self.error
        return self.result


def test_dead_dns_stalls_nothing_else(ns, backend):
    """A PUT naming a host whose DNS server never answers: meanwhile /metrics, GET
    /upstreams, a reload and health checks are served; a PUT that came after it waits
    and then applies (order kept); the first one ends in a 5xx and changes nothing."""
    tcp = {"type": "tcp", "interval": "150ms", "timeout": "100ms", "rise": 1, "fall": 1}
    sl, a, path, dns = ns(timeout_s=min(30, int(3 * SCALE)), check=tcp)
    b = backend("b")
    before = servers(path)[0]
    slow = Call(path, "PUT", "/upstreams/u", {"servers": [{"address": "%s:%d" % (NAME, b.port)}]})
    assert wait_for(lambda: dns.queries, 5 * SCALE), "the daemon never asked the DNS server"
    # the main loop answers while the lookup hangs
    st, _, r = api(path, "GET", "/metrics")
    assert st == 200 and b"sluice_upstream_server_usable" in r.body
    ok0 = api(path, "GET", "/upstreams/u")[1]["servers"][0]["health"]["checks_ok"]
    st, j, _ = api(path, "POST", "/reload")
    assert st == 200, j
    assert wait_for(lambda: api(path, "GET", "/upstreams/u")[1]["servers"][0]["health"]
                    ["checks_ok"] > ok0 + 2, 5 * SCALE), "health checks stalled"
    later = Call(path, "PUT", "/upstreams/u", {"servers": [{"address": b.address}]})
    time.sleep(0.2)
    assert not slow.done(), "the lookup did not hang: the test proves nothing"
    assert not later.done(), "a change overtook an earlier one still resolving"
    assert servers(path)[0] == before
    st, j = slow.wait()
    assert st in (503, 504), (st, j)
    assert "nothing changed" in j["error"], j
    st, j = later.wait()
    assert st == 200, j
    assert [s["address"] for s in j["servers"]] == [b.address]
    with HTTPClient(sl.port) as c:
        assert c.request("GET", "/").header("X-Backend") == "b"


def test_slow_dns_resolves_and_names_work(ns, backend):
    """A DNS server that answers after a while: the PUT waits, then the named server is
    in (listed by its name, traffic to its address); POST adds by name; drain and DELETE
    find it by its name, without a lookup."""
    sl, a, path, dns = ns(delay=0.5)
    b = backend("b")
    named = "%s:%d" % (NAME, b.port)
    st, j = Call(path, "PUT", "/upstreams/u", {"servers": [{"address": named}]}).wait()
    assert st == 200, j
    assert [s["address"] for s in j["servers"]] == [named]
    for _ in range(4):
        with HTTPClient(sl.port) as c:
            assert c.request("GET", "/").header("X-Backend") == "b"
    st, j = Call(path, "POST", "/upstreams/u/servers", {"address": a.address}).wait()
    assert st == 201, j
    # the same address under a name and a number is one server
    st, j = Call(path, "POST", "/upstreams/u/servers",
                 {"address": "127.0.0.1:%d" % b.port}).wait()
    assert st == 409, j
    n = len(dns.queries)
    st, j, _ = api(path, "POST", "/upstreams/u/servers/%s/drain" % named)
    assert st == 200 and j["state"] == "draining", j
    st, j, _ = api(path, "DELETE", "/upstreams/u/servers/%s" % named)
    assert st == 200, j
    assert [s["address"] for s in j["servers"]] == [a.address]
    assert len(dns.queries) == n, "drain or delete looked a name up"


def test_unknown_name_or_duplicate_changes_nothing(ns):
    """A name that does not exist (NXDOMAIN), and a name that resolves to a server already
    in the list: each a 400 naming the server, nothing changed."""
    sl, a, path, dns = ns(delay=0.1)
    before = servers(path)
    st, j = Call(path, "PUT", "/upstreams/u",
                 {"servers": [{"address": a.address},
                              {"address": "nowhere.sluice-test:80"}]}).wait()
    assert st == 400 and "servers[1]: cannot resolve 'nowhere.sluice-test:80': no such host" \
        in j["error"], (st, j)
    assert servers(path) == before
    st, j = Call(path, "POST", "/upstreams/u/servers",
                 {"address": "nowhere.sluice-test:80"}).wait()
    assert st == 400 and "no such host" in j["error"], (st, j)
    st, j = Call(path, "PUT", "/upstreams/u",
                 {"servers": [{"address": a.address},
                              {"address": "%s:%d" % (NAME, a.port)}]}).wait()
    assert st == 400 and "duplicate" in j["error"], (st, j)
    assert servers(path) == before


def test_client_gone_and_stop_while_resolving(ns):
    """The client leaves while its lookup hangs; then the daemon is stopped while another
    hangs: no crash, a clean exit."""
    sl, a, path, dns = ns(timeout_s=2)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    body = b'{"servers": [{"address": "%s:80"}]}' % NAME.encode()
    s.sendall(b"PUT /upstreams/u HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    assert wait_for(lambda: dns.queries, 5 * SCALE)
    s.close()
    time.sleep(3)  # the lookup ends (timeout:2) with nobody to answer
    assert api(path, "GET", "/healthz")[0] == 200
    pending = Call(path, "PUT", "/upstreams/u", {"servers": [{"address": "%s:81" % NAME}]})
    n = len(dns.queries)
    assert wait_for(lambda: len(dns.queries) > n, 5 * SCALE)
    # the stop waits for the lookup in progress (timeout:2), then exits cleanly; the
    # waiting client is answered 503 or sees the connection close
    assert sl.stop() == []
    pending.t.join(10)
    assert pending.error is not None or pending.result[0] == 503, pending.result


def test_localhost_resolves_through_the_resolver(sluice, backend, tmp_path):
    """Without any namespace: a name from /etc/hosts goes through the same path."""
    a, b = backend("a"), backend("b")
    path = sock_path(tmp_path)
    sl = sluice.proxy(a, workers=1, admin={"socket": path})
    assert admin_up(path)
    st, j, _ = api(path, "PUT", "/upstreams/u",
                   {"servers": [{"address": "localhost:%d" % b.port}]})
    if st == 503 and "temporary" in j.get("error", ""):
        pytest.skip("localhost does not resolve on this machine")
    assert st == 200, j
    with HTTPClient(sl.port) as c:
        assert c.request("GET", "/").header("X-Backend") == "b"
