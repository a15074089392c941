"""pool.max_conns_per_server: requests beyond the cap wait for a connection (reusing
it when it comes back) and get 503 after pool.queue_timeout."""
import threading
import time

from client import HTTPClient
from env import SCALE


def slow_pair(port, first_target, second_target, gap=0.2):
    """Send first_target, then second_target on another connection gap s later."""
    out = {}

    def one(key, target):
        with HTTPClient(port, timeout=10 * SCALE) as c:
            t0 = time.monotonic()
            r = c.request("GET", target)
            out[key] = (r.status, time.monotonic() - t0)

    t1 = threading.Thread(target=one, args=("first", first_target))
    t1.start()
    time.sleep(gap)
    t2 = threading.Thread(target=one, args=("second", second_target))
    t2.start()
    t1.join(20 * SCALE)
    t2.join(20 * SCALE)
    return out


def test_waits_for_the_connection_and_reuses_it(sluice, backend):
    b = backend("a")
    sl = sluice.proxy(b, workers=1, upstream={"pool": {"max_conns_per_server": 1,
                                                       "queue_timeout": "5s"}})
    out = slow_pair(sl.port, "/_/slow?ms=800", "/quick")
    assert out["first"][0] == 200 and out["second"][0] == 200, out
    # the second request could only go once the first one's connection came back
    assert out["second"][1] >= 0.4, out
    assert b.accepted == 1, b


def test_queue_timeout_gives_503(sluice, backend):
    b = backend("a")
    sl = sluice.proxy(b, workers=1, upstream={"pool": {"max_conns_per_server": 1,
                                                       "queue_timeout": "300ms"}})
    out = slow_pair(sl.port, "/_/slow?ms=1500", "/quick")
    assert out["first"][0] == 200, out
    assert out["second"][0] == 503, out
    assert out["second"][1] < 1.4 * SCALE, out  # gave up at the queue timeout, not later
    assert b.accepted == 1 and len(b.requests) == 1, b
    # and the proxy serves normally afterwards
    assert sl.client().request("GET", "/after").status == 200


def test_cap_holds_across_workers(sluice, backend):
    b = backend("a")
    sl = sluice.proxy(b, workers=2, upstream={"pool": {"max_conns_per_server": 2,
                                                       "queue_timeout": "10s"}})
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
