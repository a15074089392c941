"""pool.max_conns_per_server: requests beyond the cap wait for a connection (reusing
it when it comes back) and get 503 after pool.queue_timeout."""
import os
import threading
import time

from client import HTTPClient
from daemon import wait_for
from env import SCALE
from test_admin import get_json, sock_path


def queue_counters(path):
    ws = get_json(path, "/workers")
    return {k: sum(w[k] for w in ws) for k in ("queue_waits", "queue_timeouts")}


def capped(sluice, b, tmp_path, workers, **pool):
    path = sock_path(tmp_path)
    sl = sluice.proxy(b, workers=workers, admin={"socket": path}, upstream={"pool": pool})
    assert wait_for(lambda: os.path.exists(path), 5 * SCALE), sl.stderr()[-2000:]
    return sl, path


def slow_pair(sl, path, b, first_target, second_target):
    """Send first_target; once the backend holds it (the one connection is busy), send
    second_target on another client connection, once that one waits in the queue."""
    out = {}

    def one(key, target):
        with HTTPClient(sl.port, timeout=10 * SCALE) as c:
            t0 = time.monotonic()
            r = c.request("GET", target)
            out[key] = (r.status, time.monotonic() - t0)

    t1 = threading.Thread(target=one, args=("first", first_target))
    t1.start()
    assert b.wait_requests(1, 10 * SCALE), "first request never reached the backend"
    waits = queue_counters(path)["queue_waits"]
    t2 = threading.Thread(target=one, args=("second", second_target))
    t2.start()
    out["queued"] = wait_for(lambda: queue_counters(path)["queue_waits"] > waits, 5 * SCALE)
    t1.join(20 * SCALE)
    t2.join(20 * SCALE)
    return out


def test_waits_for_the_connection_and_reuses_it(sluice, backend, tmp_path):
    b = backend("a")
    sl, path = capped(sluice, b, tmp_path, 1, max_conns_per_server=1, queue_timeout="5s")
    out = slow_pair(sl, path, b, "/_/slow?ms=800", "/quick")
    assert out["first"][0] == 200 and out["second"][0] == 200, out
    # the second request waited for the slot, then went on the first one's connection
    assert out["queued"], "second request never waited for the connection slot"
    assert b.accepted == 1, b
    assert [(r.target, r.conn_id, r.seq) for r in b.requests] == \
        [("/_/slow?ms=800", 1, 1), ("/quick", 1, 2)], b.requests
    assert queue_counters(path)["queue_timeouts"] == 0


def test_queue_timeout_gives_503(sluice, backend, tmp_path):
    b = backend("a")
    sl, path = capped(sluice, b, tmp_path, 1, max_conns_per_server=1, queue_timeout="300ms")
    out = slow_pair(sl, path, b, "/_/slow?ms=1500", "/quick")
    assert out["first"][0] == 200, out
    assert out["second"][0] == 503, out
    assert out["queued"], out
    assert out["second"][1] < 1.4 * SCALE, out  # gave up at the queue timeout, not later
    assert queue_counters(path)["queue_timeouts"] == 1
    assert b.accepted == 1 and len(b.requests) == 1, b
    # and the proxy serves normally afterwards
    assert sl.client().request("GET", "/after").status == 200


def test_cap_holds_across_workers(sluice, backend, tmp_path):
    b = backend("a")
    sl, _ = capped(sluice, b, tmp_path, 2, max_conns_per_server=2, queue_timeout="10s")
    results = []

    def client(i):
        with HTTPClient(sl.port, timeout=20 * SCALE) as c:
            for _ in range(5):
                results.append(c.request("GET", "/_/slow?ms=20").status)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60 * SCALE)
    assert results == [200] * 40, results
    assert b.accepted <= 2, b
