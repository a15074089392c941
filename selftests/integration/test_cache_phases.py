"""The ops API's cache phases (examples/cache_proxy.c on a real daemon): a custom proxy
turns caching on from the file's routes (sl_route_cache), keys per tenant (cache_key),
forces a revalidation or a bypass on a hit (cache_hit_filter) and keeps responses out of
the cache (response_cache_filter); sl_respond() is refused in those phases, and a hostile
tenant name cannot forge another tenant's key."""
import json
import os

from env import BUILD
from test_cache import CC60, Origin, admin, admin_sock, get, metric

CACHE_PROXY = os.path.join(BUILD, "examples", "cache_proxy")


def start(sluice, origin, tmp_path):
    s = sluice.new("cachep")
    s.binary = CACHE_PROXY
    rc = {"zone": "z", "status_header": "X-Cache", "lock": {"timeout": "5s", "age": "5s"}}
    cfg = sluice.config([{"path": "/c", "upstream": "default", "cache": rc},
                         {"path": "/", "upstream": "default"}],
                        {"default": {"servers": [{"address": origin.address}]}}, sl=s,
                        cache={"zones": {"z": {"max_size": "16m", "max_object_size": "1m",
                                               "shards": 4}}},
                        admin={"socket": admin_sock(tmp_path)})
    s.start(cfg)
    s.admin_path = cfg["admin"]["socket"]
    return s


def test_routes_turn_caching_on(sluice, backend, tmp_path):
    origin = Origin(backend)
    origin.set("/c/a", headers=CC60, body=lambda k, r: b"a%d" % k)
    origin.set("/n/a", headers=CC60, body=lambda k, r: b"n%d" % k)
    sl = start(sluice, origin, tmp_path)
    assert [get(sl, "/c/a").header("X-Cache") for _ in range(2)] == ["MISS", "HIT"]
    assert [get(sl, "/n/a").body for _ in range(2)] == [b"n1", b"n2"]  # no cache: route
    assert origin.n("/c/a") == 1


def test_cache_key_per_tenant_and_purge_by_it(sluice, backend, tmp_path):
    origin = Origin(backend)
    origin.set("/c/t", headers=CC60, body=lambda k, r: b"for %s" %
               (r.header("X-Tenant") or "nobody").encode())
    sl = start(sluice, origin, tmp_path)
    assert get(sl, "/c/t", {"X-Tenant": "acme"}).body == b"for acme"
    assert get(sl, "/c/t", {"X-Tenant": "beta"}).body == b"for beta"
    r = get(sl, "/c/t", {"X-Tenant": "acme"})
    assert (r.body, r.header("X-Cache")) == (b"for acme", "HIT")
    assert get(sl, "/c/t").body == b"for nobody"  # the template's key
    assert origin.n("/c/t") == 3
    # a name with the key's separator could forge another tenant's key: not cached
    for evil in ("acme|sluice.test|/c/t", "a b", "x" * 64):
        r = get(sl, "/c/t", {"X-Tenant": evil})
        assert r.header("X-Cache") in (None, "PASS")
    assert origin.n("/c/t") == 6
    r = admin(sl, "POST", "/cache/purge", json.dumps({"key": "tenant=acme|sluice.test|/c/t"}))
    assert r.json() == {"purged": 1}
    assert get(sl, "/c/t", {"X-Tenant": "acme"}).header("X-Cache") == "MISS"
    assert get(sl, "/c/t", {"X-Tenant": "beta"}).header("X-Cache") == "HIT"


def test_hit_filter_refresh_and_bypass(sluice, backend, tmp_path):
    origin = Origin(backend)
    origin.set("/c/h", headers=CC60 + [("ETag", '"e1"')], body=lambda k, r: b"v%d" % k)
    sl = start(sluice, origin, tmp_path)
    assert get(sl, "/c/h").body == b"v1"
    r = get(sl, "/c/h", {"X-Cache-Bypass": "1"})
    assert (r.body, origin.n("/c/h")) == (b"v2", 2)
    assert get(sl, "/c/h").body == b"v1"  # the bypass left the stored object alone
    # a refresh revalidates with the stored validators; the origin sends a new 200
    r = get(sl, "/c/h", {"X-Cache-Refresh": "1"})
    assert (r.body, r.header("X-Cache")) == (b"v3", "MISS")
    assert origin.seen[-1][1].count(("If-None-Match", '"e1"')) == 1
    r = get(sl, "/c/h")
    assert (r.body, r.header("X-Cache")) == (b"v3", "HIT")
    assert metric(sl, "sluice_cache_requests_total", zone="z", result="pass") == 1


def test_response_filter_keeps_it_out(sluice, backend, tmp_path):
    origin = Origin(backend)
    origin.set("/c/x", headers=CC60 + [("X-Do-Not-Cache", "1")],
               body=lambda k, r: b"x%d" % k)
    sl = start(sluice, origin, tmp_path)
    assert [get(sl, "/c/x").body for _ in range(3)] == [b"x1", b"x2", b"x3"]
    assert metric(sl, "sluice_cache_objects", zone="z") == 0
    # and no background request asks the origin behind the filter's back: a HEAD miss
    # goes to the origin as HEAD
    r = get(sl, "/c/x", method="HEAD")
    assert r.status == 200 and origin.n("/c/x") == 4
    sl.wait_access(4)
    assert {e.get("respond_in_cache_phase") for e in sl.access_entries()} == {"refused"}
