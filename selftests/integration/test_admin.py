"""Admin API: HTTP/JSON on a Unix socket (0600) and on a loopback TCP port with a bearer
token; health, readiness, status, per-worker counters, upstreams, Prometheus metrics,
reload, and the debug stall switch."""
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
import uuid

import pytest

from backends import free_port
from client import HTTPClient, build_request
from daemon import wait_for
from env import SCALE, TIMEOUT


def sock_path(tmp_path):
    """A socket path under the test's tmp dir, unless that is too long for sun_path."""
    p = os.path.join(str(tmp_path), "admin.sock")
    if len(p) > 100:
        p = os.path.join(tempfile.mkdtemp(prefix="sl-adm-"), "admin.sock")
    return p


def unix_client(path, timeout=None):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout or TIMEOUT)
    s.connect(path)
    return HTTPClient(0, sock=s, timeout=timeout)


def admin(path, method, target, headers=None, timeout=None):
    """One request on a new connection to the admin socket."""
    c = unix_client(path, timeout)
    try:
        return c.request(method, target, headers=headers, host="localhost")
    finally:
        c.close()


def tcp_admin(port, method, target, headers=None):
    with HTTPClient(port) as c:
        return c.request(method, target, headers=headers, host="localhost")


def get_json(path, target, status=200):
    r = admin(path, "GET", target)
    assert r.status == status, "%s: %r %r" % (target, r, r.body[:500])
    assert r.header("Content-Type") == "application/json", r.headers
    return r.json()


def request_through(sl, target="/", n=1):
    """n requests on new connections through the proxy; their statuses."""
    out = []
    for _ in range(n):
        with HTTPClient(sl.port) as c:
            out.append(c.request("GET", target).status)
    return out


@pytest.fixture
def bpf():
    """A private BPF pin path: the worker state and stats slots /readyz and /workers read
    are pinned maps, which daemons sharing the default pin path would overwrite."""
    path = "/sys/fs/bpf/sluice-test-%d-%s" % (os.getpid(), uuid.uuid4().hex[:6])
    yield {"pin_path": path}
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def adm(bpf, sluice, backend, tmp_path):
    """A proxy to one backend with the admin socket on; (sluice, backend, socket path)."""
    path = sock_path(tmp_path)

    def start(workers=1, **admin_kw):
        b = backend("a")
        cfg = dict({"socket": path}, **admin_kw)
        sl = sluice.proxy(b, workers=workers, admin=cfg, bpf=bpf)
        assert wait_for(lambda: os.path.exists(path), 5 * SCALE), \
            "admin socket never appeared; log:\n" + sl.stderr()[-2000:]
        return sl, b, path
    return start


def test_healthz_404_405(adm):
    sl, _, path = adm()
    assert get_json(path, "/healthz") == {"status": "ok"}
    r = admin(path, "GET", "/no/such/thing")
    assert r.status == 404 and r.header("Content-Type") == "application/json"
    assert "error" in r.json()
    r = admin(path, "POST", "/healthz")
    assert r.status == 405 and "GET" in r.header("Allow", "")
    r = admin(path, "GET", "/reload")
    assert r.status == 405 and r.header("Allow") == "POST"
    # keep-alive: several requests on one admin connection
    c = unix_client(path)
    for _ in range(3):
        assert c.request("GET", "/healthz", host="localhost").status == 200
    c.close()


def test_socket_is_0600_and_removed_at_stop(adm):
    sl, _, path = adm()
    st = os.lstat(path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
    sl.send_signal(signal.SIGTERM)
    assert sl.wait_exit(10 * SCALE) == 0
    assert not os.path.exists(path), "admin socket left behind after exit"


def test_stale_socket_file_is_replaced(bpf, sluice, backend, tmp_path):
    path = sock_path(tmp_path)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)  # leaves the file behind, as a killed daemon would
    s.close()
    sl = sluice.proxy(backend("a"), admin={"socket": path}, bpf=bpf)
    assert wait_for(lambda: _healthy(path), 5 * SCALE), sl.stderr()[-2000:]


def test_regular_file_at_socket_path_is_left_alone(bpf, sluice, backend, tmp_path):
    path = sock_path(tmp_path)
    with open(path, "w") as f:
        f.write("not a socket\n")
    sl = sluice.proxy(backend("a"), admin={"socket": path}, bpf=bpf)
    assert sl.wait_log(lambda ln: "not a socket" in ln), sl.stderr()[-2000:]
    with open(path) as f:
        assert f.read() == "not a socket\n"
    assert request_through(sl) == [200], "proxy must serve without its admin API"


def _healthy(path):
    try:
        return admin(path, "GET", "/healthz").status == 200
    except OSError:
        return False


def test_readyz(adm):
    sl, b, path = adm(workers=2)
    assert wait_for(lambda: admin(path, "GET", "/readyz").status == 200, 5 * SCALE)
    assert get_json(path, "/readyz") == {"status": "ready"}
    # draining: a held request keeps the daemon alive after SIGTERM
    c = sl.client(timeout=20)
    c.send(build_request("GET", "/_/hold?s=15"))
    assert b.wait_requests(1)
    sl.send_signal(signal.SIGTERM)
    r = admin(path, "GET", "/readyz")
    assert r.status == 503, r
    assert r.json()["reason"] == "stopping"
    st = get_json(path, "/status")
    assert st["stopping"] is True
    b.release.set()
    assert c.read_response().status == 200
    assert sl.wait_exit(10 * SCALE) == 0


def test_status_fields(adm):
    sl, _, path = adm(workers=2)
    st = get_json(path, "/status")
    assert st["version"] and re.match(r"^\d+\.\d+\.\d+", st["version"])
    assert st["pid"] == sl.pid
    assert isinstance(st["uptime_seconds"], int) and 0 <= st["uptime_seconds"] < 60
    assert st["config"] == sl.config_path
    assert st["workers"] == 2
    assert st["reloads"] == 0
    assert st["last_reload_error"] == ""
    assert st["stopping"] is False
    # the daemon's own background services, all running
    names = [x["name"] for x in st["services"]]
    assert {"resolver", "health", "pool-keeper"} <= set(names), st["services"]
    assert len(names) == len(set(names)) and all(x["running"] for x in st["services"]), \
        st["services"]


def test_workers_counters(adm):
    sl, b, path = adm(workers=2)
    n = 12
    assert request_through(sl, "/w", n) == [200] * n
    keep = sl.client()
    for i in range(3):  # keep-alive: reused upstream connections
        assert keep.request("GET", "/k%d" % i).status == 200
    n += 3

    def totals():
        ws = get_json(path, "/workers")
        return ws, {k: sum(w[k] for w in ws) for k in ("requests", "accepted", "bytes_in",
                                                        "bytes_out", "upstream_new",
                                                        "upstream_reused", "errors_client",
                                                        "errors_upstream", "active")}
    assert wait_for(lambda: totals()[1]["requests"] == n and
                    sum(w["responses"]["2xx"] for w in totals()[0]) == n, 5 * SCALE), totals()
    ws, t = totals()
    assert [w["id"] for w in ws] == [0, 1]
    assert all(w["state"] == "ready" for w in ws), ws
    for w in ws:
        assert set(w) >= {"id", "cpu", "state", "active", "accepted", "requests", "responses",
                          "bytes_in", "bytes_out", "upstream_new", "upstream_reused",
                          "pool_local", "pool_shared", "errors_client", "errors_upstream"}
        assert set(w["responses"]) == {"1xx", "2xx", "3xx", "4xx", "5xx"}
    assert t["accepted"] >= n - 2  # the readiness probe's connections count too
    assert t["active"] >= 1  # `keep` is still open
    assert t["bytes_in"] > 0 and t["bytes_out"] > 0
    assert t["upstream_new"] >= 1
    assert t["upstream_new"] + t["upstream_reused"] == n, t
    assert t["errors_client"] == 0 and t["errors_upstream"] == 0
    assert len(b.requests) == n


def test_upstreams_listing(bpf, sluice, backend, tmp_path):
    a, b = backend("a"), backend("b")
    path = sock_path(tmp_path)
    sl = sluice.new()
    cfg = sluice.config([{"path": "/b", "upstream": "two"}, {"upstream": "one"}],
                        {"one": {"servers": [{"address": a.address}]},
                         "two": {"servers": [{"address": a.address, "weight": 3},
                                             {"address": b.address, "weight": 1}],
                                 "retries": 2}},
                        sl=sl, admin={"socket": path}, bpf=bpf)
    sl.start(cfg)
    assert wait_for(lambda: _healthy(path), 5 * SCALE)
    ups = {u["name"]: u for u in get_json(path, "/upstreams")}
    assert set(ups) == {"one", "two"}
    def listed(u):
        return [{"address": s["address"], "weight": s["weight"]} for s in u["servers"]]
    assert listed(ups["one"]) == [{"address": a.address, "weight": 1}]
    assert listed(ups["two"]) == [{"address": a.address, "weight": 3},
                                  {"address": b.address, "weight": 1}]
    # live state beside the list (details: test_upstream_api.py)
    for s in ups["one"]["servers"] + ups["two"]["servers"]:
        assert s["state"] == "up" and s["in_flight"] == 0 and s["requests"] == 0, s
    assert ups["two"]["balance"] == "round_robin" and ups["two"]["health_check"] is None
    assert ups["two"]["retries"] == 2 and ups["one"]["retries"] == 1
    assert ups["one"]["pool"] == {"max_idle_per_worker": 128, "max_idle_shared": 1024,
                                  "idle_timeout_ms": 60000, "max_requests_per_conn": 0,
                                  "max_conns_per_server": 0, "queue_timeout_ms": 3000}


METRIC_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="[^"]*"'
                         r'(,[a-zA-Z_][a-zA-Z0-9_]*="[^"]*")*)?\})? (-?[0-9.e+]+)$')


def parse_metrics(text):
    """{(name, frozenset(labels)): value}; asserts the text format on the way."""
    out, helped, typed = {}, set(), {}
    for ln in text.splitlines():
        if ln.startswith("# HELP "):
            helped.add(ln.split()[2])
            continue
        if ln.startswith("# TYPE "):
            _, _, name, kind = ln.split()
            assert kind in ("counter", "gauge", "histogram"), ln
            typed[name] = kind
            continue
        assert not ln.startswith("#"), ln
        m = METRIC_LINE.match(ln)
        assert m, "not a `name{labels} value` line: %r" % ln
        name = m.group(1)
        family = re.sub(r"_(bucket|sum|count)$", "", name)
        if typed.get(family) == "histogram":
            name_ok = family in helped
        else:
            name_ok = name in helped and name in typed
        assert name_ok, "no HELP/TYPE before %r" % ln
        labels = frozenset(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="([^"]*)"', m.group(3) or ""))
        key = (name, labels)
        assert key not in out, "duplicate sample %r" % ln
        out[key] = float(m.group(5))
    return out, typed


def histogram(samples, name):
    """[(le, cumulative count)], sum, count of one histogram family."""
    buckets = sorted(((float(dict(lab)["le"]), v) for (nm, lab), v in samples.items()
                      if nm == name + "_bucket"), key=lambda b: b[0])
    return buckets, samples[(name + "_sum", frozenset())], samples[(name + "_count", frozenset())]


def test_metrics_latency_process_reload_build(adm, tmp_path):
    """Latency histograms, process_*, reload outcome and build info; promtool lint when
    it is installed."""
    sl, _, path = adm(workers=2)
    n = 7
    assert request_through(sl, "/m", n) == [200] * n

    def scrape():
        r = admin(path, "GET", "/metrics")
        assert r.status == 200
        return r.body.decode()

    assert wait_for(lambda: histogram(parse_metrics(scrape())[0],
                                      "sluice_request_duration_seconds")[2] == n, 5 * SCALE)
    text = scrape()
    s, typed = parse_metrics(text)
    for fam in ("sluice_request_duration_seconds", "sluice_upstream_header_duration_seconds"):
        assert typed[fam] == "histogram"
        buckets, total, count = histogram(s, fam)
        assert count == n, (fam, count)
        assert buckets[-1] == (float("inf"), n), buckets
        les = [le for le, _ in buckets]
        assert les == sorted(les) and len(set(les)) == len(les), les
        counts = [c for _, c in buckets]
        assert counts == sorted(counts), "buckets must be cumulative: %r" % buckets
        assert 0 < total < 5 * SCALE * n, total
    assert s[("sluice_build_info", frozenset({("version", "0.1.0")}))] == 1
    assert s[("process_resident_memory_bytes", frozenset())] > 1 << 20
    assert s[("process_open_fds", frozenset())] > 3
    assert s[("process_max_fds", frozenset())] >= s[("process_open_fds", frozenset())]
    assert abs(s[("process_start_time_seconds", frozenset())] - time.time()) < 600
    assert s[("process_cpu_seconds_total", frozenset())] >= 0
    assert s[("sluice_last_reload_timestamp_seconds", frozenset())] == 0
    assert s[("sluice_last_reload_success", frozenset())] == 1
    # a rejected reload is counted and timestamped; the old config keeps serving
    good = open(sl.config_path).read()
    with open(sl.config_path, "w") as f:
        f.write(good + "\nnot: [valid\n")
    r = admin(path, "POST", "/reload")
    assert r.status >= 400, r.status
    s, _ = parse_metrics(scrape())
    assert s[("sluice_reload_failures_total", frozenset())] == 1
    assert s[("sluice_last_reload_success", frozenset())] == 0
    assert abs(s[("sluice_last_reload_timestamp_seconds", frozenset())] - time.time()) < 60
    with open(sl.config_path, "w") as f:
        f.write(good)
    assert admin(path, "POST", "/reload").status == 200
    s, _ = parse_metrics(scrape())
    assert s[("sluice_last_reload_success", frozenset())] == 1
    assert s[("sluice_reload_failures_total", frozenset())] == 1
    assert request_through(sl, "/m", 1) == [200]
    promtool = shutil.which("promtool")
    if promtool:
        p = subprocess.run([promtool, "check", "metrics"], input=scrape().encode(),
                           capture_output=True, timeout=30)
        assert p.returncode == 0, p.stdout + p.stderr


def test_metrics(adm):
    sl, _, path = adm(workers=2)
    n = 9
    assert request_through(sl, "/m", n) == [200] * n

    def scrape():
        r = admin(path, "GET", "/metrics")
        assert r.status == 200
        assert r.header("Content-Type").startswith("text/plain; version=0.0.4"), r.headers
        return parse_metrics(r.body.decode())

    def total(samples, name, **want):
        return sum(v for (nm, lab), v in samples.items()
                   if nm == name and all((k, w) in lab for k, w in want.items()))
    assert wait_for(lambda: total(scrape()[0], "sluice_responses_total", **{"class": "2xx"})
                    == n, 5 * SCALE)
    s, typed = scrape()
    assert total(s, "sluice_requests_total") == n
    assert total(s, "sluice_upstream_connections_total", kind="new") >= 1
    assert total(s, "sluice_upstream_connections_total") == n
    assert total(s, "sluice_connections_accepted_total") >= n
    assert total(s, "sluice_bytes_in_total") > 0 and total(s, "sluice_bytes_out_total") > 0
    for name in ("sluice_requests_total", "sluice_responses_total",
                 "sluice_connections_accepted_total", "sluice_bytes_in_total",
                 "sluice_bytes_out_total", "sluice_upstream_connections_total",
                 "sluice_pool_hits_total", "sluice_errors_total"):
        assert typed.get(name) == "counter", name
    assert typed["sluice_connections_active"] == "gauge"
    assert typed["sluice_worker_up"] == "gauge"
    for w in ("0", "1"):
        assert s[("sluice_worker_up", frozenset({("worker", w)}))] == 1
        for kind in ("client", "upstream"):
            assert ("sluice_errors_total", frozenset({("worker", w), ("kind", kind)})) in s
        for pool in ("local", "shared"):
            assert ("sluice_pool_hits_total", frozenset({("worker", w), ("pool", pool)})) in s
        for cls in ("1xx", "2xx", "3xx", "4xx", "5xx"):
            assert ("sluice_responses_total", frozenset({("worker", w), ("class", cls)})) in s


def served(sl):
    try:
        with HTTPClient(sl.port, timeout=3) as c:
            return c.request("GET", "/").body.decode("latin-1")
    except (OSError, AssertionError):
        return None


def test_reload(bpf, sluice, tmp_path):
    path = sock_path(tmp_path)
    sl = sluice.new()

    def cfg(body):
        return sluice.config([{"respond": {"status": 200, "body": body}}], sl=sl,
                             admin={"socket": path}, bpf=bpf)
    sl.start(cfg("one\n"))
    assert wait_for(lambda: _healthy(path), 5 * SCALE)
    assert served(sl) == "one\n"

    sl.write_config(cfg("two\n"))
    r = admin(path, "POST", "/reload")
    assert r.status == 200, r.body
    assert r.json()["reloaded"] is True
    assert get_json(path, "/status")["reloads"] == 1
    assert wait_for(lambda: served(sl) == "two\n", 5 * SCALE)

    # a broken file: 400 naming file:line:column; the running config keeps serving
    text = open(sl.config_path).read().splitlines()
    text.insert(1, "bogus_key: 1")  # line 2, column 1
    sl.write_config("\n".join(text) + "\n")
    r = admin(path, "POST", "/reload")
    assert r.status == 400, r
    err = r.json()["error"]
    assert "%s:2:1:" % sl.config_path in err, err
    st = get_json(path, "/status")
    assert st["reloads"] == 1 and st["last_reload_error"] == err
    for _ in range(3):
        assert served(sl) == "two\n"
    assert sl.running()


def test_tcp_listen_needs_token(bpf, sluice, backend, tmp_path):
    path = sock_path(tmp_path)
    port = free_port()
    token = "s3cret-token-%d" % port
    sl = sluice.proxy(backend("a"), admin={"socket": path, "listen": "127.0.0.1:%d" % port,
                                           "token": token}, bpf=bpf)
    assert wait_for(lambda: _healthy(path), 5 * SCALE)
    r = tcp_admin(port, "GET", "/status")
    assert r.status == 401, r
    assert r.header("WWW-Authenticate", "").startswith("Bearer")
    assert "error" in r.json()
    # everything but the two probes needs the token, /metrics included
    for target in ("/metrics", "/workers", "/upstreams", "/healthz/", "/readyz/x",
                   "/healthz/../status", "/HEALTHZ"):
        assert tcp_admin(port, "GET", target).status == 401, target
    assert tcp_admin(port, "POST", "/reload").status == 401
    # liveness and readiness answer without it (kubelet and load-balancer probes)
    assert tcp_admin(port, "GET", "/healthz").status == 200
    # readiness itself may be 503 for a moment on a loaded machine (a late heartbeat);
    # what matters here is that it is answered, not refused
    r = tcp_admin(port, "GET", "/readyz?full=1")
    assert r.status in (200, 503) and r.json()["status"] in ("ready", "not ready"), r
    assert tcp_admin(port, "HEAD", "/readyz").status in (200, 503)
    for bad in ("Bearer wrong", "Bearer " + token + "x", "Bearer " + token[:-1], "Basic " + token,
                token, "Bearer "):
        assert tcp_admin(port, "GET", "/status", {"Authorization": bad}).status == 401, bad
    # 401 comes before routing: unknown paths do not leak through either
    assert tcp_admin(port, "GET", "/nope").status == 401
    r = tcp_admin(port, "GET", "/status", {"Authorization": "Bearer " + token})
    assert r.status == 200 and r.json()["pid"] == sl.pid
    assert tcp_admin(port, "GET", "/healthz", {"Authorization": "bearer " + token}).status == 200
    # the Unix socket needs no token (its file mode is the access control)
    assert admin(path, "GET", "/status").status == 200


def test_debug_off_is_404(adm):
    sl, _, path = adm()
    r = admin(path, "POST", "/debug/stall?worker=0&ms=100")
    assert r.status == 404, r


def test_debug_burn_args_and_worker_keeps_serving(adm):
    sl, _, path = adm(workers=1, debug=True)
    for bad in ("", "?worker=0", "?worker=1&ms=100", "?worker=0&ms=0", "?worker=0&ms=60001",
                "?worker=x&ms=10", "?worker=0&ms=-5", "?worker=0&ms=99999999999999999999"):
        r = admin(path, "POST", "/debug/burn" + bad)
        assert r.status == 400, (bad, r)
    assert admin(path, "GET", "/debug/burn?worker=0&ms=100").status == 405
    r = admin(path, "POST", "/debug/burn?worker=0&ms=1500")
    assert r.status == 200 and r.json() == {"worker": 0, "burn_ms": 1500}
    # busy, not stalled: it serves between its slices, and publishes a high busy ratio
    t0 = time.monotonic()
    assert request_through(sl, n=5) == [200] * 5
    assert time.monotonic() - t0 < 1.0, "a burning worker served like a stalled one"
    assert wait_for(lambda: get_json(path, "/workers")[0]["busy_pm"] >= 700, 1.2), \
        get_json(path, "/workers")
    assert admin(path, "GET", "/readyz").status == 200
    # and it ends: the ratio decays once the burn is over
    assert wait_for(lambda: get_json(path, "/workers")[0]["busy_pm"] < 300, 5 * SCALE), \
        get_json(path, "/workers")


def test_debug_stall_blocks_worker(adm):
    sl, _, path = adm(workers=1, debug=True)
    for bad in ("", "?worker=0", "?worker=1&ms=100", "?worker=0&ms=0", "?worker=0&ms=10001",
                "?worker=x&ms=10", "?worker=0&ms=-5"):
        r = admin(path, "POST", "/debug/stall" + bad)
        assert r.status == 400, (bad, r)
    assert admin(path, "GET", "/debug/stall?worker=0&ms=100").status == 405
    assert request_through(sl) == [200]

    r = admin(path, "POST", "/debug/stall?worker=0&ms=1000")
    assert r.status == 200 and r.json() == {"worker": 0, "stall_ms": 1000}
    t0 = time.monotonic()
    assert request_through(sl) == [200]
    took = time.monotonic() - t0
    assert took >= 0.8, "request answered in %.3fs during a 1000 ms stall" % took
    # the admin API (main thread) is not blocked by a worker stall, and the worker recovers
    assert get_json(path, "/healthz") == {"status": "ok"}
    assert request_through(sl, n=5) == [200] * 5
    assert admin(path, "GET", "/readyz").status == 200
