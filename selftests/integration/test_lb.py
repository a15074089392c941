"""Load balancing: round robin alternation, weights, and retries on failed servers
(connect failures move on; a sent request is retried only if idempotent, bodiless and
unanswered)."""
from collections import Counter

from backends import dead_address, on_path, raw_handler
from client import HTTPClient


def sequence(sl, n, target="/"):
    out = []
    for i in range(n):
        with HTTPClient(sl.port) as c:
            r = c.request("GET", target)
            assert r.status == 200, "request %d: %r" % (i, r)
            out.append(r.header("X-Backend"))
    return out


def test_round_robin_alternates(sluice, backend):
    a, b = backend("a"), backend("b")
    sl = sluice.proxy(a, b, workers=1)
    seq = sequence(sl, 10)
    assert all(x != y for x, y in zip(seq, seq[1:])), "not alternating: %r" % seq
    assert Counter(seq) == {"a": 5, "b": 5}


def test_round_robin_on_one_keepalive_client_connection(sluice, backend):
    """Balancing is per request, not per client connection."""
    a, b, c3 = backend("a"), backend("b"), backend("c")
    sl = sluice.proxy(a, b, c3, workers=1)
    c = sl.client()
    seq = [c.request("GET", "/").header("X-Backend") for _ in range(9)]
    assert Counter(seq) == {"a": 3, "b": 3, "c": 3}, seq
    assert len(set(seq[:3])) == 3, seq


def test_weights_3_to_1(sluice, backend):
    a, b = backend("a"), backend("b")
    sl = sluice.proxy((a, 3), (b, 1), workers=1)
    seq = sequence(sl, 40)
    assert Counter(seq) == {"a": 30, "b": 10}, seq


def test_weights_1_2_3(sluice, backend):
    bs = [backend("w1"), backend("w2"), backend("w3")]
    sl = sluice.proxy((bs[0], 1), (bs[1], 2), (bs[2], 3), workers=1)
    assert Counter(sequence(sl, 60)) == {"w1": 10, "w2": 20, "w3": 30}


def test_connect_failure_moves_to_next_server(sluice, backend):
    good = backend("good")
    sl = sluice.proxy(dead_address(), good, workers=1)  # retries: default 1
    seq = sequence(sl, 10)
    assert seq == ["good"] * 10
    assert len(good.requests) == 10


def test_retries_2_skips_two_dead_servers(sluice, backend):
    good = backend("good")
    sl = sluice.proxy(dead_address(), dead_address(), good, workers=1,
                      upstream={"retries": 2})
    assert sequence(sl, 9) == ["good"] * 9


def test_retries_0_does_not_retry(sluice, backend):
    good = backend("good")
    sl = sluice.proxy(dead_address(), good, workers=1, upstream={"retries": 0})
    statuses = []
    for _ in range(4):
        with HTTPClient(sl.port) as c:
            statuses.append(c.request("GET", "/").status)
    assert 200 in statuses, statuses
    assert [s for s in statuses if s != 200] and \
        all(s in (502, 503) for s in statuses if s != 200), statuses


def test_unanswered_get_is_retried_on_another_server(sluice, backend):
    dropper = backend("dropper", handler=on_path("/", lambda conn, req: "close"))
    good = backend("good")
    sl = sluice.proxy(dropper, good, workers=1)
    for i in range(4):
        with HTTPClient(sl.port) as c:
            r = c.request("GET", "/")
            assert r.status == 200 and r.header("X-Backend") == "good", (i, r)
    assert dropper.requests, "the dropping server was never tried"
    assert len(good.requests) == 4


def test_post_with_body_is_not_retried_after_sending(sluice, backend):
    dropper = backend("dropper", handler=on_path("/", lambda conn, req: "close"))
    good = backend("good")
    sl = sluice.proxy(dropper, good, workers=1)
    statuses = []
    for i in range(4):
        with HTTPClient(sl.port) as c:
            statuses.append(c.request("POST", "/", body=b"once-%d" % i).status)
    bodies = [r.body for r in dropper.requests + good.requests]
    assert sorted(bodies) == sorted(set(bodies)), "a POST body was delivered twice: %r" % bodies
    assert len(bodies) == 4
    assert statuses.count(502) == len(dropper.requests) >= 1, statuses


def test_get_not_retried_after_response_bytes(sluice, backend):
    partial = backend("partial", handler=on_path(
        "/", raw_handler(b"HTTP/1.1 200 OK\r\nContent-Len", after="close")))
    good = backend("good")
    sl = sluice.proxy(partial, good, workers=1)
    statuses = []
    for _ in range(4):
        with HTTPClient(sl.port) as c:
            try:
                statuses.append(c.request("GET", "/").status)
            except AssertionError:
                raise
            except Exception:
                statuses.append("closed")
    assert len(partial.requests) >= 1
    assert len(partial.requests) + len(good.requests) == 4, \
        "a GET was retried after response bytes arrived: %r %r" % (partial.requests,
                                                                   good.requests)
    assert statuses.count(502) + statuses.count("closed") == len(partial.requests), statuses
