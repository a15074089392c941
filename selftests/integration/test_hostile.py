"""Hostile clients: heads dribbled a byte at a time (slowloris) are cut at
timeouts.client_header with a 408 or a close and counted; clients that never read a
big response are cut at the send timeout (timeouts.client_body); a normal client is
served while they are open, and sluiced's fd table is back to its baseline after.
Functional only: the figures (rps, p99 under attack) come from tools/bench/hostile.py."""
import os
import select
import socket
import threading
import time

from client import HTTPClient
from daemon import wait_for
from env import SCALE
from test_admin import admin, get_json, sock_path
from test_fdleak import fd_listing

N_SLOW = 300
N_READERS = 20
BIG = 10 << 20


def totals(path):
    ws = get_json(path, "/workers")
    return {"active": sum(w["active"] for w in ws),
            "errors_client": sum(w["errors_client"] for w in ws),
            "header_timeouts": sum(w["header_timeouts"] for w in ws),
            "send_timeouts": sum(w["send_timeouts"] for w in ws),
            "4xx": sum(w["responses"]["4xx"] for w in ws)}


def start(sluice, tmp_path, b, timeouts):
    path = sock_path(tmp_path)
    # idle upstream connections close after 1 s, so the fd table can get back to what it
    # was before any request
    sl = sluice.proxy(b, workers=2, admin={"socket": path}, timeouts=timeouts,
                      upstream={"pool": {"idle_timeout": "1s"}})
    assert wait_for(lambda: os.path.exists(path), 5 * SCALE), sl.stderr()[-2000:]
    # the admin socket answers before every worker thread runs, and a worker opens its
    # schedstat file as its thread starts: the baseline is taken once all are ready
    assert sl.wait_log(lambda ln: 'msg="sluiced started"' in ln), sl.stderr()[-2000:]
    assert wait_for(lambda: admin(path, "GET", "/readyz").status == 200, 5 * SCALE), \
        sl.stderr()[-2000:]
    # readiness probes have closed: the baseline is a daemon with no client
    assert wait_for(lambda: totals(path)["active"] == 0, 5 * SCALE), totals(path)
    return sl, path


class Dribbler:
    """Connections that send a request head one byte at a time and never finish it.
    Records, per connection, how it ended: "408", "close" (FIN without a response) or
    "reset"; None while open."""

    def __init__(self, port, n, interval=0.2):
        self.socks = []
        for i in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.%d" % (2 + i % 100), 0))  # spread the 4-tuples
            s.connect(("127.0.0.1", port))
            s.setblocking(False)
            self.socks.append(s)
        self.head = b"GET / HTTP/1.1\r\nHost: sluice.test\r\nX-Slow: " + b"a" * 10000
        self.sent = {s: 0 for s in self.socks}
        self.got = {s: b"" for s in self.socks}
        self.ended = {s: None for s in self.socks}
        self.interval = interval
        self.stop = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _end(self, s, how):
        self.ended[s] = how

    def _run(self):
        next_byte = time.monotonic()
        while not self.stop.is_set():
            live = [s for s in self.socks if self.ended[s] is None]
            if not live:
                return
            if time.monotonic() >= next_byte:
                next_byte += self.interval
                for s in live:
                    k = self.sent[s]
                    try:
                        self.sent[s] += s.send(self.head[k:k + 1])
                    except BlockingIOError:
                        pass
                    except (BrokenPipeError, ConnectionResetError):
                        self._end(s, "reset")
            r, _, _ = select.select([s for s in live if self.ended[s] is None], [], [], 0.05)
            for s in r:
                try:
                    d = s.recv(65536)
                except ConnectionResetError:
                    self._end(s, "408" if self.got[s].startswith(b"HTTP/1.1 408") else "reset")
                    continue
                except BlockingIOError:
                    continue
                if d:
                    self.got[s] += d
                else:
                    self._end(s, "408" if self.got[s].startswith(b"HTTP/1.1 408") else "close")

    def open_count(self):
        return sum(1 for v in self.ended.values() if v is None)

    def close(self):
        self.stop.set()
        self.t.join(5)
        for s in self.socks:
            s.close()


def normal_client_served(sl):
    """A keep-alive client and a few one-request clients all get answers."""
    c = HTTPClient(sl.port, timeout=10 * SCALE)
    try:
        for i in range(20):
            r = c.request("GET", "/normal%d" % i)
            assert r.status == 200 and r.json()["target"] == "/normal%d" % i, r
    finally:
        c.close()
    for i in range(5):
        with HTTPClient(sl.port, timeout=10 * SCALE) as c1:
            assert c1.request("GET", "/fresh%d" % i).status == 200


def test_slow_heads_cut_at_client_header(sluice, backend, tmp_path):
    b = backend("a")
    sl, path = start(sluice, tmp_path, b, {"client_header": "3s"})
    baseline = sl.fd_count()
    before = totals(path)
    d = Dribbler(sl.port, N_SLOW)
    try:
        assert wait_for(lambda: totals(path)["active"] >= N_SLOW, 10 * SCALE), totals(path)
        normal_client_served(sl)
        # the slow connections were open all along: the normal client shared the proxy
        # with them (a connection cut at the deadline cannot come back)
        assert d.open_count() == N_SLOW and totals(path)["active"] >= N_SLOW, \
            "slow connections gone before the normal client finished (machine too slow " \
            "for a 3 s client_header?): %d open" % d.open_count()
        assert wait_for(lambda: d.open_count() == 0, 15 * SCALE), \
            "%d slow connections still open long after client_header" % d.open_count()
    finally:
        d.close()
    ends = list(d.ended.values())
    assert all(e in ("408", "close") for e in ends), \
        "slow connections not cut cleanly: %r" % {e: ends.count(e) for e in set(ends)}
    # each one fed a few bytes of its head, no more than the dribble rate allows
    assert all(d.sent[s] >= 2 for s in d.socks), "connections were cut before dribbling"
    after = totals(path)
    n408 = ends.count("408")
    assert after["header_timeouts"] - before["header_timeouts"] == N_SLOW, (before, after)
    assert after["errors_client"] - before["errors_client"] == N_SLOW, (before, after)
    assert after["4xx"] - before["4xx"] == n408, (before, after, n408)
    assert len(b.requests) == 25, "a slow head reached the backend: %r" % b.requests[:5]
    assert wait_for(lambda: totals(path)["active"] == 0, 5 * SCALE), totals(path)
    assert wait_for(lambda: sl.fd_count() <= baseline, 10 * SCALE), \
        "fd count %d -> %d:\n%s" % (baseline, sl.fd_count(), fd_listing(sl))


def test_slow_readers_cut_at_send_timeout(sluice, backend, tmp_path):
    b = backend("a")
    sl, path = start(sluice, tmp_path, b, {"client_body": "2s"})
    baseline = sl.fd_count()
    readers = []
    try:
        for i in range(N_READERS):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)  # no autotuning
            s.connect(("127.0.0.1", sl.port))
            s.sendall(b"GET /_/big?n=%d HTTP/1.1\r\nHost: sluice.test\r\n\r\n" % BIG)
            readers.append(s)
        assert b.wait_requests(N_READERS, 10 * SCALE), b
        normal_client_served(sl)
        assert totals(path)["active"] >= N_READERS, \
            "readers gone before the normal client finished (machine too slow for a 2 s " \
            "send timeout?): %r" % totals(path)
        # cut at the send timeout: sluiced holds none of them any more, and says so
        assert wait_for(lambda: totals(path)["active"] == 0, 15 * SCALE), totals(path)
        assert totals(path)["send_timeouts"] == N_READERS, totals(path)
        got = []
        for s in readers:  # each drains what it was sent: short of the whole body
            s.settimeout(5 * SCALE)
            n = 0
            try:
                while True:
                    chunk = s.recv(1 << 20)
                    if not chunk:
                        break
                    n += len(chunk)
            except ConnectionResetError:
                pass
            got.append(n)
        assert all(0 < n < BIG for n in got), got
    finally:
        for s in readers:
            s.close()
    # the upstream side of each cut response is closed too
    assert wait_for(lambda: all(c.closed for c in b.conns if c.id <= N_READERS), 5 * SCALE)
    assert wait_for(lambda: sl.fd_count() <= baseline, 10 * SCALE), \
        "fd count %d -> %d:\n%s" % (baseline, sl.fd_count(), fd_listing(sl))


def test_refused_head_lingers_not_reset(sluice, backend, tmp_path):
    """A head cut at client_header gets its 408 and a FIN, and what the client still
    sends after that is read and dropped, never answered with a reset: a close() with
    client bytes unread resets the connection, and a reset that arrives before the
    client read the 408 discards it (seen as 'reset' for a few of test_slow_heads')."""
    b = backend("a")
    sl, path = start(sluice, tmp_path, b, {"client_header": "1s"})
    s = socket.create_connection(("127.0.0.1", sl.port))
    try:
        s.sendall(b"GET / HTTP/1.1\r\nHost: sluice.test\r\nX-Slow: a")
        s.settimeout(10 * SCALE)
        got = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            got += d
        assert got.startswith(b"HTTP/1.1 408"), got[:200]
        # still sending after the answer, as a slow client does: no reset comes back
        for i in range(20):
            s.sendall(b"a" * 1000)
            time.sleep(0.02)
        time.sleep(0.3)
        s.sendall(b"a")
        s.setblocking(False)
        try:
            assert s.recv(1) == b""
        except BlockingIOError:
            pass
        assert totals(path)["active"] == 1, totals(path)
    finally:
        s.close()
    # the client's FIN ends the lingering connection
    assert wait_for(lambda: totals(path)["active"] == 0, 5 * SCALE), totals(path)
    assert totals(path)["header_timeouts"] == 1, totals(path)
