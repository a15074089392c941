"""Upstream connection pools seen from the wire: few upstream connections for many
short clients, no error when the backend closes idle connections, restarts or dies
mid-response, no fd leak, overflow through the shared pool between workers,
max_requests_per_conn, and one pool per peer whatever the upstream name.

Counters come from the admin API (GET /workers on its Unix socket): upstream_new,
upstream_reused, pool_local, pool_shared per worker."""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import uuid

import pytest

from backends import default_handler
from client import ConnectionClosed, HTTPClient, build_request, connect
from daemon import wait_for
from env import ASAN, SCALE, TIMEOUT


# -- helpers ------------------------------------------------------------------------------
@pytest.fixture
def bpf():
    """A private BPF pin path: /workers reads per-worker stats from pinned maps, which
    daemons sharing the default pin path would overwrite."""
    path = "/sys/fs/bpf/sluice-pool-%d-%s" % (os.getpid(), uuid.uuid4().hex[:6])
    yield {"pin_path": path}
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def admin_sock(tmp_path):
    p = os.path.join(str(tmp_path), "admin.sock")
    if len(p) > 100:  # sun_path
        p = os.path.join(tempfile.mkdtemp(prefix="sl-pool-"), "admin.sock")
    return p


def workers(path):
    """GET /workers on the admin socket: one dict of counters per worker."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(TIMEOUT)
    s.connect(path)
    c = HTTPClient(0, sock=s)
    try:
        r = c.request("GET", "/workers", host="localhost")
    finally:
        c.close()
    assert r.status == 200, r
    return r.json()


def total(ws, key):
    return sum(w[key] for w in ws)


def start_proxy(sluice, bpf, admin_sock, *backends, **kw):
    """sluice.proxy() with the admin socket on, once the socket answers."""
    sl = sluice.proxy(*backends, admin={"socket": admin_sock}, bpf=bpf, **kw)
    assert wait_for(lambda: os.path.exists(admin_sock), 5 * SCALE), \
        "admin socket never appeared:\n" + sl.stderr()[-2000:]
    return sl


def wait_idle(path):
    """Every client connection is finished: a session releases its upstream connection
    before it closes, so from here on every connection is back in a pool."""
    assert wait_for(lambda: total(workers(path), "active") == 0, 5 * SCALE), workers(path)


def close_get(port, target, host="sluice.test"):
    """One request with Connection: close on a new connection; the whole answer."""
    s = connect(port)
    try:
        s.sendall(build_request("GET", target, host=host, headers=[("Connection", "close")]))
        data = b""
        while True:
            d = s.recv(65536)
            if not d:
                return data
            data += d
    finally:
        s.close()


def restart_on(backend, port, name):
    """A new Backend listening on `port` (an old backend's, now stopped). Backend binds
    an ephemeral port itself, so its listening socket is swapped for one on `port`; the
    ephemeral one is kept open until the backend stops, since its accept thread may
    still be waiting on it for up to 0.2 s."""
    b = backend(name)
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(128)
    ls.settimeout(0.2)
    old, b.lsock, b.port = b.lsock, ls, port
    stop = b.stop

    def stop_both():
        stop()
        old.close()
    b.stop = stop_both
    return b


def pinned_round(sl, b, cpu, k, tag):
    """k concurrent Connection: close requests held by the backend until all k are in,
    from threads pinned to `cpu` (steering sends a connection to the worker of the CPU it
    comes from). Returns the k responses' statuses."""
    before = len(b.requests)
    statuses, errors = [], []

    def one(i):
        try:
            if cpu is not None:
                os.sched_setaffinity(0, {cpu})
            with HTTPClient(sl.port, timeout=10 * SCALE) as c:
                r = c.request("GET", "/_/hold?s=%d&r=%s-%d" % (10 * SCALE, tag, i),
                              headers=[("Connection", "close")])
                statuses.append(r.status)
        except Exception as e:  # noqa: BLE001 - reported by the test thread
            errors.append(e)
    ts = [threading.Thread(target=one, args=(i,)) for i in range(k)]
    for t in ts:
        t.start()
    try:
        assert b.wait_requests(before + k, 5 * SCALE), \
            "only %d of %d held requests reached the backend" % (len(b.requests) - before, k)
    finally:
        b.release.set()
        for t in ts:
            t.join(15 * SCALE)
        b.release.clear()
    assert not errors, errors
    return statuses


# -- many short clients, few upstream connections -----------------------------------------
CLOSE_CLIENT = r"""
import json, socket, sys
port, n, timeout = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
req = b"GET /c HTTP/1.1\r\nHost: sluice.test\r\nConnection: close\r\n\r\n"
out = {}
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(req)
        data = b""
        while True:  # sluice closes first: no TIME_WAIT on this side
            d = s.recv(65536)
            if not d:
                break
            data += d
    except OSError as e:
        data = ("error: %r" % e).encode()
    finally:
        s.close()
    k = data[:12].decode("latin-1")
    out[k] = out.get(k, 0) + 1
print(json.dumps(out))
"""


def test_close_clients_share_a_few_upstream_connections(sluice, backend):
    """10,000 Connection: close clients from P concurrent processes, 2 workers. A worker
    never has more requests in flight than there are clients (P), and the pool gives every
    finished request's connection to the next one, so each worker opens at most P upstream
    connections: at most 2 * P = 8 in all, however many requests go through."""
    procs = 4
    n = 10000  # about 2 s, also under ASan
    b = backend("a")
    sl = sluice.proxy(b, workers=2)
    each = n // procs
    ps = [subprocess.Popen([sys.executable, "-c", CLOSE_CLIENT, str(sl.port), str(each),
                            str(TIMEOUT)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
          for _ in range(procs)]
    results = {}
    try:
        for p in ps:
            out, err = p.communicate(timeout=60 * SCALE)
            assert p.returncode == 0, err.decode(errors="replace")[-2000:]
            for k, v in json.loads(out).items():
                results[k] = results.get(k, 0) + v
    finally:
        for p in ps:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert results == {"HTTP/1.1 200": each * procs}, results
    assert len(b.requests) == each * procs
    assert b.accepted <= 2 * procs, \
        "%d requests opened %d upstream connections (bound %d)" % (each * procs, b.accepted,
                                                                   2 * procs)


# -- stale pooled connections --------------------------------------------------------------
@pytest.mark.parametrize("same_client", [False, True], ids=["new-clients", "keepalive-client"])
def test_backend_idle_close_causes_no_502(sluice, backend, same_client):
    """The backend closes connections idle for 1 s. The next request is sent the moment the
    backend has closed (a poll on the backend's side, no fixed sleep), when the proxy may
    not have seen the FIN yet: it must still get a 200."""
    b = backend("a", idle_close=1.0)
    # retries: 0: only the pool's own stale-connection handling may save the request
    sl = sluice.proxy(b, workers=2, upstream={"retries": 0})
    c = sl.client()
    rounds = 4
    for i in range(rounds):
        if not same_client:
            c.close()
            c = sl.client()
        for j in range(3):
            r = c.request("GET", "/idle%d-%d" % (i, j))
            assert r.status == 200, "round %d request %d: %r" % (i, j, r)
        assert wait_for(lambda: b.conns and all(x.closed for x in b.conns), 5 * SCALE), \
            "backend did not close its idle connections"
    assert b.accepted >= rounds, "backend idle close did not happen (%d connections)" % \
        b.accepted
    assert len(b.requests) == 3 * rounds


def drop_reused(conn, req):
    """Close without answering any request that is not the first on its connection:
    what a keep-alive race with the server's idle close looks like."""
    if req.seq >= 2:
        return "close"
    return default_handler(conn, req)


def test_stale_connection_retried_on_a_fresh_one(sluice, backend, bpf, admin_sock):
    """A request that fails on a reused connection before any response byte goes again on
    a new connection, and the client never sees the failure."""
    b = backend("a", handler=drop_reused)
    sl = start_proxy(sluice, bpf, admin_sock, b, workers=1, upstream={"retries": 0})
    c = sl.client()
    n = 5
    for i in range(n):
        r = c.request("GET", "/s%d" % i)
        assert r.status == 200, "request %d: %r" % (i, r)
        assert r.json()["seq"] == 1
    # every request after the first: reused connection dropped, then a fresh one
    assert b.accepted == n
    assert [q.target for q in b.requests] == \
        ["/s0"] + [t for i in range(1, n) for t in ("/s%d" % i,) * 2]
    ws = workers(admin_sock)
    assert total(ws, "upstream_new") == n, ws
    assert total(ws, "upstream_reused") == n - 1, ws


def test_stale_retry_happens_once(sluice, backend, bpf, admin_sock):
    """If the fresh connection fails too, that is the answer (502): one retry, not a loop
    (retries: 0, so only the stale-connection retry applies)."""
    def handler(conn, req):
        if req.path == "/gone":
            return "close"
        return default_handler(conn, req)
    b = backend("a", handler=handler)
    sl = start_proxy(sluice, bpf, admin_sock, b, workers=1, upstream={"retries": 0})
    c = sl.client()
    assert c.request("GET", "/warm").status == 200  # one idle connection in the pool
    r = c.request("GET", "/gone")
    assert r.status == 502, r
    gone = [q for q in b.requests if q.target == "/gone"]
    assert len(gone) == 2, "expected the reused and one fresh attempt, got %r" % gone
    assert gone[0].conn_id != gone[1].conn_id
    assert b.accepted == 2


@pytest.mark.parametrize("size", [100, 300000], ids=["small-body", "big-body"])
def test_stale_retry_of_a_request_with_a_body(sluice, backend, size):
    """A POST whose reused connection is closed under it (the server read the request and
    closed without answering): either it goes again with its whole body on a fresh
    connection, or the client gets a prompt 502. Never the head alone, which leaves the
    new connection waiting for a body that never comes (a hang until the response
    timeout). 300 KB is more than a request buffer holds, so it cannot be replayed."""
    b = backend("a", handler=drop_reused)
    sl = sluice.proxy(b, workers=1, upstream={"retries": 0})
    c = sl.client(timeout=5 * SCALE)
    assert c.request("GET", "/warm").status == 200
    body = os.urandom(size)
    r = c.request("POST", "/pay", body=body)
    assert r.status in (200, 502), r
    if r.status == 200:
        got = r.json()
        assert got["conn"] == 2 and got["body_len"] == size, got


def test_restarted_backend_causes_no_error(sluice, backend):
    """Pooled connections to a backend that went away are discarded or retried: once a new
    backend listens on the same port, no client sees an error."""
    b1 = backend("one")
    sl = sluice.proxy(b1, workers=2, upstream={"retries": 0})
    keep = [sl.client() for _ in range(3)]
    for i in range(10):
        for c in keep:
            assert c.request("GET", "/k").status == 200
        assert close_get(sl.port, "/w%d" % i).startswith(b"HTTP/1.1 200 ")
    port = b1.port
    b1.stop()
    b2 = restart_on(backend, port, "two")
    # at once: the proxy may not have read every FIN of the old connections yet
    for i in range(20):
        for c in keep:
            r = c.request("GET", "/after%d" % i)
            assert r.status == 200 and r.header("X-Backend") == "two", (i, r)
        data = close_get(sl.port, "/new%d" % i)
        assert data.startswith(b"HTTP/1.1 200 "), (i, data[:300])
    assert len(b2.requests) == 20 * 4
    # one client thread: at most one request in flight, so one connection per worker
    assert 1 <= b2.accepted <= 2, b2.accepted


@pytest.mark.parametrize("rst", [0, 1], ids=["fin", "rst"])
def test_backend_killed_mid_response(sluice, backend, bpf, admin_sock, rst):
    """A truncated response reaches the client as a clean error (502, or a close before the
    announced length; never a hang), and the dead connection never enters a pool: the next
    request opens a new connection (upstream_reused stays 0)."""
    b1 = backend("one")
    sl = start_proxy(sluice, bpf, admin_sock, b1, workers=1)
    c = sl.client()
    c.send(build_request("GET", "/_/die?n=100000&sent=1000&rst=%d" % rst))
    try:
        r = c.read_response()
    except ConnectionClosed:
        pass  # head and part of the body, then closed: the client can tell
    else:
        assert r.status == 502, "complete-looking response from a dead backend: %r" % r
    assert c.wait_closed(), "client connection kept open after a truncated response"
    port = b1.port
    b1.stop()
    b2 = restart_on(backend, port, "two")
    for i in range(3):
        r = sl.client().request("GET", "/next%d" % i)
        assert r.status == 200 and r.header("X-Backend") == "two", r
    assert b2.accepted == 1
    ws = workers(admin_sock)
    assert total(ws, "upstream_new") == 2, ws
    # /next1 and /next2 reuse /next0's connection; nothing reused the dead one
    assert total(ws, "upstream_reused") == 2, ws


def test_response_cut_by_upstream_timeout_never_pooled(sluice, backend):
    """A response cut short by the upstream idle timeout leaves a connection that still
    owes the rest of its body: it looks healthy (no EOF, no bytes), so only the release
    path keeps it out of the pool. Reused, the next request would wait behind the stalled
    response; it must go on a new connection and be answered at once."""
    b = backend("a")
    sl = sluice.proxy(b, workers=1, timeouts={"upstream_idle": "300ms"})
    c = sl.client(timeout=5 * SCALE)
    c.send(build_request("GET", "/_/stall?n=1000&sent=10&s=%d" % (10 * SCALE)))
    try:
        r = c.read_response()
    except ConnectionClosed:
        pass
    else:
        assert r.status == 504, "complete-looking response from a stalled backend: %r" % r
    assert c.wait_closed(), "client connection kept open after a cut response"
    r = sl.client(timeout=3 * SCALE).request("GET", "/next")
    assert r.status == 200 and r.json()["target"] == "/next", r
    assert r.json()["conn"] == 2, "the stalled connection was reused"
    b.release.set()


# -- no fd leak ----------------------------------------------------------------------------
def mixed_traffic(sl, rounds):
    """Keep-alive and close clients, responses that end the upstream connection (close-
    delimited, truncated, dropped) and some that keep it."""
    for i in range(rounds):
        c = sl.client()
        for j in range(8):
            assert c.request("GET", "/ka%d" % j).status == 200
        assert c.request("GET", "/_/chunked?n=3000").status == 200
        assert c.request("GET", "/_/status?code=204").status == 204
        c.close()
        sl.clients.remove(c)
        assert close_get(sl.port, "/c").startswith(b"HTTP/1.1 200 ")
        assert close_get(sl.port, "/_/close?n=500").startswith(b"HTTP/1.1 200 ")
        if i % 4 == 0:
            assert close_get(sl.port, "/_/die?n=10000&sent=10").startswith(b"HTTP/1.1 ")
            assert close_get(sl.port, "/_/drop").startswith(b"HTTP/1.1 502 ")


def test_no_fd_leak(sluice, backend):
    b = backend("a")
    sl = sluice.proxy(b, workers=2, upstream={"retries": 0})
    mixed_traffic(sl, 10)  # warm up: pools, buffers, log files
    before = sl.fd_count()
    rounds = 50 if ASAN else 150  # 14 requests a round
    mixed_traffic(sl, rounds)
    slack = 5
    after = wait_for(lambda: sl.fd_count() <= before + slack and sl.fd_count(), 5 * SCALE) \
        or sl.fd_count()
    assert after <= before + slack, "fd count %d -> %d after %d requests:\n%s" % (
        before, after, rounds * 14, fd_listing(sl))


def fd_listing(sl):
    d = "/proc/%d/fd" % sl.pid
    out = []
    for fd in sorted(os.listdir(d), key=int):
        try:
            out.append("%s -> %s" % (fd, os.readlink(os.path.join(d, fd))))
        except OSError:
            pass
    return "\n".join(out)


# -- the shared overflow pool --------------------------------------------------------------
def test_overflow_goes_through_the_shared_pool(sluice, backend, bpf, admin_sock):
    """2 workers keeping 1 idle connection each (max_idle_per_worker: 1). K requests held
    at once on worker A need K connections; when they finish A keeps one and evicts K-1 to
    the shared pool. K held requests on worker B then take those (pool_shared) instead of
    opening new ones. Steering sends a connection to the worker of the CPU it comes from,
    so the client threads are pinned to A's CPU, then to B's."""
    k = 6
    b = backend("a")
    sl = start_proxy(sluice, bpf, admin_sock, b, workers=2,
                     upstream={"pool": {"max_idle_per_worker": 1}})
    ws = workers(admin_sock)
    cpus = [w["cpu"] for w in ws]
    pin = len(set(cpus)) == 2 and all(c >= 0 for c in cpus) and \
        set(cpus) <= os.sched_getaffinity(0)

    assert pinned_round(sl, b, cpus[0] if pin else None, k, "one") == [200] * k
    wait_idle(admin_sock)
    assert b.accepted == k
    after1 = workers(admin_sock)
    assert pinned_round(sl, b, cpus[1] if pin else None, k, "two") == [200] * k
    wait_idle(admin_sock)
    after2 = workers(admin_sock)

    by_worker = {}
    for e in sl.wait_access(2 * k):
        by_worker.setdefault(e["target"].split("&r=")[1].split("-")[0], set()).add(e["worker"])
    steered = by_worker.get("one") == {"0"} and by_worker.get("two") == {"1"}
    # Whatever the spread: 2 workers hold at most one idle connection each of their own,
    # so at least K-2 of the second round's K connections came from the shared pool, and
    # at most one new connection was needed.
    shared = total(after2, "pool_shared") - total(after1, "pool_shared")
    assert shared >= k - 2, (after1, after2)
    assert b.accepted <= k + 1, b.accepted
    if steered:
        # round one all on worker 0, round two all on worker 1: worker 1 had nothing of its
        # own, so what it took from the shared pool worker 0 had put there
        assert after1[1]["upstream_new"] == 0, after1
        assert after2[1]["pool_shared"] == k - 1, after2
        assert after2[1]["upstream_new"] == 1, after2
        assert after2[0]["pool_shared"] == 0, after2
    # else (no BPF steering): which worker took what is up to the kernel's hash; the
    # bounds above still prove the overflow path


def test_long_upstream_name_keeps_its_bound(sluice, backend, bpf, admin_sock):
    """max_idle_per_worker holds for an upstream whose name is longer than the pool's group
    name field (63 bytes): K connections released at once leave one in the worker's pool
    and K-1 in the shared pool, as for a short name."""
    k = 4
    name = "u" * 80
    b = backend("a")
    sl = sluice.new()
    cfg = sluice.config([{"upstream": name}],
                        {name: {"servers": [{"address": b.address}],
                                "pool": {"max_idle_per_worker": 1}}},
                        sl=sl, workers=1, admin={"socket": admin_sock}, bpf=bpf)
    sl.start(cfg)
    assert wait_for(lambda: os.path.exists(admin_sock), 5 * SCALE)
    assert pinned_round(sl, b, None, k, "one") == [200] * k
    wait_idle(admin_sock)
    assert pinned_round(sl, b, None, k, "two") == [200] * k
    wait_idle(admin_sock)
    ws = workers(admin_sock)
    assert b.accepted == k
    assert (ws[0]["pool_local"], ws[0]["pool_shared"]) == (1, k - 1), ws


# -- limits and identity -------------------------------------------------------------------
def test_max_requests_per_conn(sluice, backend):
    b = backend("a")
    sl = sluice.proxy(b, workers=1, upstream={"pool": {"max_requests_per_conn": 2}})
    c = sl.client()
    conns = []
    for i in range(10):
        r = c.request("GET", "/m%d" % i)
        assert r.status == 200
        conns.append(r.json()["conn"])
    assert conns == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5], conns
    assert b.accepted == 5


def test_two_upstreams_to_one_backend_share_connections(sluice, backend, bpf, admin_sock):
    """The pool key is the peer (address, TLS settings, proxy), not the upstream name: a
    connection parked by one upstream serves the other."""
    b = backend("a")
    sl = sluice.new()
    cfg = sluice.config([{"path": "/one", "upstream": "one"}, {"upstream": "two"}],
                        {"one": {"servers": [{"address": b.address}]},
                         "two": {"servers": [{"address": b.address}]}},
                        sl=sl, workers=1, admin={"socket": admin_sock}, bpf=bpf)
    sl.start(cfg)
    assert wait_for(lambda: os.path.exists(admin_sock), 5 * SCALE)
    c = sl.client()
    for i in range(10):
        r = c.request("GET", "/one/%d" % i if i % 2 else "/two/%d" % i)
        assert r.status == 200
    assert b.accepted == 1, "two upstreams to one backend used %d connections" % b.accepted
    ws = workers(admin_sock)
    assert (ws[0]["upstream_new"], ws[0]["pool_local"]) == (1, 9), ws
